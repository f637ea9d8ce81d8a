"""The structural half of the analytical model (`archsim.model.analytical`): what a fusion group's evaluation
computes from the bound cascade, its analysis, the resolved group and the architecture's level names alone, and
so is the same for every evaluation of that mapping, whatever the architecture's numbers (clock, bandwidths,
capacities, energies, PE counts). `analytical.evaluate` builds a group's plan once per binding, analysis,
architecture and mapping (`archsim.memo.identity_cache`) and applies the numbers on every call.

The plan holds, per group: each Einsum's unit, lanes used and op counts; the tile footprint per level (which
tensors it keeps, how much of it may spill and where to); the bytes moved per level and tensor; and every
transfer's read and write actions in the order the model prices them, so a float is summed in the same order as
when it was computed per call. The modelling assumptions are in `archsim.model.analytical`'s docstring.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.cascade.ir import Cascade, Einsum, Var
from archsim.cascade.passes import refs_of
from archsim.cascade.syntax import walk
from archsim.mapping.overlap import (
    POLICIES,
    Cycles,
    compile_pipeline,
    delay_names,
    parse_pipeline,
    side_by_side,
)
from archsim.mapping.resolve import group_ranks
from archsim.mapping.spec import Group, Loop
from archsim.mapping.spec import Mapping as MappingSpec
from archsim.memo import identity_cache
from archsim.model.reuse import instance_loops, live_tiles, masked_refetches, refetches, tile_elems

EinsumIO = tuple[frozenset[str], str]  # (the tensors an Einsum reads, the tensor it writes)
Action = tuple[tuple[str, str], int, str, float]  # ((level, "read" or "write"), level index, the same action, bits)


@dataclass(frozen=True)
class EinsumPlan:
    """One Einsum of a group's plan: its unit, the lanes it gets there, its op counts (and the energy slots that price
    them), and whether its op chain is pipelined (the mapping's `pipelined`: one point per cycle)."""

    name: str
    unit: str
    lanes: int  # PEs the group's spatial loops give it on its unit
    ops: dict[str, int]  # op type -> count (the analysis')
    op_counts: tuple[tuple[str, int], ...]  # the items of `ops`
    priced: tuple[tuple[int, str, int], ...]  # (slot of (unit, op) in the group's `energy_keys`, op, count) per op
    pipelined: bool
    most_ops: int  # the largest op count (a pipelined Einsum issues one point per cycle of its slowest op)


@dataclass(frozen=True)
class SpillPlan:
    """A tensor that may spill from a level: where its spilled share lives, and the elements of it the level moves
    over the group, as its traffic counts them (each is the level's work for the share that stays)."""

    tensor: str
    parent: int  # index of the level its spilled share lives in
    served: tuple[int, int]  # (elements read into the level or PEs below, written back from them), through the
    # level's inner boundary: each reuse, partial sums read back and in-place passes included
    filled: tuple[int, int]  # (elements read in from `parent`, written out to it); none where the level is its home


@dataclass(frozen=True)
class GroupPlan:
    """What a fusion group's evaluation needs whatever the architecture's numbers (module docstring): per Einsum and
    unit, per level and tensor, the footprint, traffic, spills and priced actions, the overlap, and why its loop nest
    cannot run, if it cannot."""

    group: Group  # resolved: every factor an int
    einsums: tuple[EinsumPlan, ...]
    fanouts: tuple[tuple[str, int, int, tuple[tuple[int, Loop], ...]], ...]  # (unit, dimension of its shape,
    # product of the factors spread along it, those loops (index, loop)), units in order; see `analytical`
    footprint_bytes: dict[str, float]  # level -> bytes of the tiles it keeps (and hand-offs)
    held: tuple[int, ...]  # indices of the levels in `footprint_bytes`, outermost first
    kept_at: dict[str, tuple[str, ...]]  # level -> tensors whose tiles it holds
    spillable: dict[str, float]  # level -> bytes of its tiles that may spill
    spills: dict[str, tuple[SpillPlan, ...]]  # level -> its spill tensors (kept there)
    traffic: dict[str, dict[str, float]]  # level -> tensor -> bytes through its inner boundary (before spills)
    moved: dict[str, float]  # level -> sum of its traffic (before spills)
    actions: tuple[tuple[int, int, str, float], ...]  # memory actions of every transfer, in the order the model
    # prices them: (slot of (level, action) in `energy_keys`, level index, action, bits)
    energy_keys: tuple[tuple[str, str], ...]  # (component, action) priced by the group, in the order first priced
    pipeline: Cycles | None  # the overlap expression's cycles (None: a policy)
    windows: tuple[tuple[str, Cycles, frozenset[str]], ...]  # each max(...) of the expression: its text, its
    # cycles and the Einsums its arguments run (`archsim.mapping.overlap.side_by_side`)
    delay_sizes: dict[str, int]  # the rank sizes its delay terms read
    by_unit: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]  # unit -> its (Einsum, lanes), units in order
    reasons: tuple[str, ...]  # why its loop nest cannot run, whatever the numbers (an unkept tensor's live tiles)


def used_in(binding: Binding, mapping: MappingSpec) -> dict[str, set[str]]:
    """Tensor -> the groups whose Einsums touch it (a tensor in more than one crosses groups, so lives in DRAM)."""
    out: dict[str, set[str]] = defaultdict(set)
    io = einsum_io(binding.cascade)
    for g in mapping.groups:
        for e in g.einsums:
            for t in (*io[e][0], io[e][1]):
                out[t].add(g.name)
    return out


@identity_cache(maxsize=64)
def einsum_io(cascade: Cascade) -> dict[str, EinsumIO]:
    """Einsum -> (the tensors it reads, the tensor it writes), read once per cascade object."""
    return {e.name: (frozenset(r.tensor for r in refs_of(e)), e.output.tensor) for e in cascade.einsums}


@functools.lru_cache(maxsize=256)
def _delays(overlap: str, einsums: tuple[str, ...]) -> tuple[str, ...]:
    """The rank sizes an overlap expression's delay terms read, sorted."""
    return tuple(sorted(delay_names(overlap, einsums)))


def transfer_actions(levels: tuple[str, ...], parent: int, child: int, bits: float, inward: bool) -> list[Action]:
    """A transfer reads at the sending level and writes at the receiving one (the PEs, index len(levels), are no
    memory); none for no bits."""
    if not bits:
        return []
    sender, receiver = (parent, child) if inward else (child, parent)
    return [((levels[index], action), index, action, bits)
            for index, action in ((sender, "read"), (receiver, "write")) if index < len(levels)]


def plan_group(binding: Binding, analysis: Analysis, group: Group, levels: tuple[str, ...],
               unit_dims: tuple[tuple[str, int], ...], used: dict[str, set[str]],
               per_pe: tuple[str | None, ...]) -> GroupPlan:
    """The plan of resolved `group` on an architecture whose memory levels are `levels` (outermost first) and
    whose units have `unit_dims` (name, number of dimensions of its shape). `per_pe`: for each level, the unit it
    has one instance per PE of (`per_pe_of`), None for a shared level. A per-PE
    level's footprint is one instance's: its tile and hand-off room less every spatial loop over a rank its unit
    spreads, any unit's view of that split (`reuse.instance_loops`: each PE holds its own share; Timeloop's
    per-instance tile; a shared level holds the union of its PEs' tiles); a tile spilled from a per-PE
    level that is the first to keep it goes to the shared level above it, not to a sibling per-PE level listed
    before it."""
    cascade = binding.cascade
    level_of = {name: i for i, name in enumerate(levels)}
    compute_level = len(levels)
    space = group_ranks(binding, group)
    slots: dict[tuple[str, str], int] = {}  # energy key -> its slot, in the order first priced
    einsums = _einsum_plans(analysis, group, space, slots)
    fanouts = _fanouts(group, unit_dims)

    io = einsum_io(cascade)
    over = {alias: owner for owner, aliases in group.in_place.items() for alias in aliases}
    # Residency chain of every tensor the group touches: its home level, then the inner levels keeping it.
    traffic: dict[str, dict[str, float]] = defaultdict(dict)
    footprint: Counter[str] = Counter()
    kept_at: dict[str, list[str]] = defaultdict(list)
    spillable: Counter[str] = Counter()
    word = binding.word_bytes
    spill_above: dict[tuple[int, str], int] = {}  # (level, spill tensor) -> the level its spilled share lives in
    actions: list[Action] = []
    tiles: dict[tuple, int] = {}  # (level index, ranks, iterative rank) -> tile elements (tensors share shapes)
    reasons: list[str] = []  # why the loop nest cannot run, whatever the architecture's numbers
    moves: dict[tuple[int, str], tuple[int, int]] = {}  # (level, tensor) -> elements (read, written) below it

    def tile(child: int, ranks: tuple[str, ...], iterative: str | None, instance: bool = False) -> int:
        """The tile at level `child`; `instance`: one instance's (a per-PE level's: `reuse.instance_loops`)."""
        unit = per_pe[child] if instance and child < compute_level else None
        key = (child, ranks, iterative, unit)
        if key not in tiles:
            loops = group.loops if unit is None else instance_loops(group.loops, unit)
            tiles[key] = tile_elems(loops, level_of, child, ranks, iterative)
        return tiles[key]

    for t in sorted({t for e in group.einsums for t in (*io[e][0], io[e][1])} - set(over)):
        decl = cascade.tensors[t]
        kept = sorted(level_of[lv] for lv, ts in group.keep.items() if t in ts)
        if decl.kind != "intermediate" or used[t] - {group.name}:
            chain = [0, *[k for k in kept if k > 0]]  # lives in DRAM
        elif kept:
            chain = kept
        else:  # produced and consumed inside the PEs (their registers, whose capacity is not checked)
            lifetime, passes = _lifetime(binding, analysis, space, io, group, t)
            live, spanning = live_tiles(group.loops, level_of, compute_level, decl.leaf_ranks, lifetime, passes)
            if live > 1:  # FuseMax's per-query state across the key loop; a score row waiting for its row sum
                reasons.append(f"group {group.name}: {t} is kept at no level (keep:), but {live} of its tiles live "
                               f"at once across loop {spanning.rank} at {spanning.level} "
                               f"({_why_live(decl.iterative, spanning.rank, passes)}): keep {t} at a level that "
                               "holds them")
            continue
        live = 1 if chain[0] == 0 else live_tiles(group.loops, level_of, chain[0], decl.leaf_ranks,
                                                   *_lifetime(binding, analysis, space, io, group, t))[0]
        for i, c in enumerate(chain):
            if c == 0:
                continue
            copies = 2 if t in group.double_buffered else 1
            tile_bytes = (copies * tile(c, decl.leaf_ranks, decl.iterative, instance=True)
                          * (live if c == chain[0] else 1) * word)
            footprint[levels[c]] += tile_bytes
            kept_at[levels[c]].append(t)
            if t in group.spill:
                spillable[levels[c]] += tile_bytes
                spill_above[c, t] = chain[i - 1] if i else _shared_above(per_pe, c)
        if chain[-1] > 0:
            footprint[levels[chain[-1]]] += _handoff_elems(binding, group, t, io, per_pe[chain[-1]]) * word
        unread = all(_fill_unread(cascade, a) for a in (t, *group.in_place.get(t, ())))  # its storage's tensors
        for parent, child in zip(chain, [*chain[1:], compute_level], strict=True):
            resident = child < compute_level and _stays_at(binding, analysis, space, io, group, level_of, t, child)
            read, written, most, reentered = _moved_elems(
                binding, analysis, group, space, level_of, t, child, io, tile(child, decl.leaf_ranks, decl.iterative),
                resident, unread, child == compute_level)
            if t in group.in_place and chain[0] > 0 and child == compute_level:
                # A storage on chip written over in place pass after pass: every Einsum producing or consuming it
                # (or a tensor written over it) accesses each element once, except reads streamed from their
                # producer; the writer's partial sums re-entered (a reduction loop above its tiles' loops) are its own.
                n_reads, n_writes = storage_accesses(analysis, group, t, io)
                read, written = most * n_reads + reentered, most * n_writes + reentered
            moves[parent, t] = read, written
            traffic[levels[parent]][t] = (read + written) * word
            actions += transfer_actions(levels, parent, child, read * word * 8, True)
            actions += transfer_actions(levels, parent, child, written * word * 8, False)
    spills: dict[str, list[SpillPlan]] = defaultdict(list)
    for (c, t), above in spill_above.items():
        spills[levels[c]].append(SpillPlan(t, above, moves[c, t], moves.get((above, t), (0, 0))))
    slotted = tuple((slots.setdefault(key, len(slots)), index, action, bits) for key, index, action, bits in actions)
    by_unit = tuple((unit, mine) for unit, _ in unit_dims
                    if (mine := tuple((ep.name, ep.lanes) for ep in einsums if ep.unit == unit)))
    return GroupPlan(group, tuple(einsums), tuple(fanouts), dict(footprint),
                     tuple(i for i, level in enumerate(levels) if level in footprint),
                     {lv: tuple(ts) for lv, ts in kept_at.items()}, dict(spillable),
                     {lv: tuple(s) for lv, s in spills.items()},
                     dict(traffic), {lv: sum(per.values()) for lv, per in traffic.items()}, slotted, tuple(slots),
                     None if group.overlap in POLICIES else compile_pipeline(parse_pipeline(group.overlap)),
                     tuple((text, compile_pipeline(node), frozenset(names))
                           for node, text, names in side_by_side(group.overlap)),
                     {n: binding.rank_sizes[n] for n in _delays(group.overlap, tuple(group.einsums))}, by_unit,
                     tuple(reasons))


def _shared_above(per_pe: tuple[str | None, ...], level: int) -> int:
    """The innermost shared level above `level` (per-PE levels follow the shared ones, siblings in any order:
    `archsim.arch.load`); the level above it where none is shared."""
    return next((i for i in range(level - 1, -1, -1) if per_pe[i] is None), level - 1)


def _einsum_plans(analysis: Analysis, group: Group, space: Mapping[str, set[str]],
                  slots: dict[tuple[str, str], int]) -> list[EinsumPlan]:
    """Each Einsum of `group`: its unit, its lanes (the spatial factors of its unit over its ranks), its op counts
    and their energy slots (`slots`, (unit, op) -> slot, filled in the order first priced)."""
    einsums = []
    for e in group.einsums:
        unit = group.binding[e]
        lanes = 1
        for lp in group.loops:
            if lp.spatial == unit and lp.rank in space[e]:
                lanes *= lp.factor
        ops = analysis.ops[e]
        einsums.append(EinsumPlan(e, unit, lanes, ops, tuple(ops.items()),
                                  tuple((slots.setdefault((unit, op), len(slots)), op, n) for op, n in ops.items()),
                                  e in group.pipelined, max(n for n in ops.values()) if ops else 0))
    return einsums


def _fanouts(group: Group, unit_dims: tuple[tuple[str, int], ...]) -> list[tuple]:
    """The fan-out of each unit along each dimension of its shape: (unit, dimension, factor, its (index, loop)s);
    a unit's spatial loops map one to a dimension in order, the last dimension taking the rest."""
    fanouts = []
    for unit, dims in unit_dims:
        loops = [(i, lp) for i, lp in enumerate(group.loops) if lp.spatial == unit]
        along = [loops[d:d + 1] if d < dims - 1 else loops[dims - 1:] for d in range(dims)]
        fanouts += [(unit, d, math.prod(lp.factor for _, lp in a), tuple(a)) for d, a in enumerate(along)]
    return fanouts


def _lifetime(binding: Binding, analysis: Analysis, space: Mapping[str, set[str]], io: Mapping[str, EinsumIO],
              group: Group, tensor: str) -> tuple[set[str], set[str]]:
    """(lifetime ranks, pass ranks) of `tensor`'s tiles (`archsim.model.reuse.live_tiles`): the ranks the group's
    Einsums that touch it iterate but it does not index, and its recurrence rank; and the leaves of each rank over
    which a reader of it runs in a later pass than its writer (it waits for a reduction over that rank)."""
    cascade = binding.cascade
    decl = cascade.tensors[tensor]
    touching = [e for e in group.einsums if tensor in io[e][0] or io[e][1] == tensor]
    lifetime = set().union(*(space[e] for e in touching)) - set(decl.leaf_ranks)
    lifetime |= {decl.iterative} if decl.iterative else set()
    writer = next((e for e in touching if io[e][1] == tensor), None)
    passes = set()
    for rank, by_einsum in analysis.passes.einsum_pass.items():
        if writer in by_einsum and any(by_einsum.get(e, by_einsum[writer]) != by_einsum[writer] for e in touching):
            passes |= set(cascade.leaves(rank))
    return lifetime, passes


def _why_live(iterative: str | None, rank: str, pass_ranks: set[str]) -> str:
    """Why an intermediate's tiles live across a loop over `rank` (`_lifetime`), in words for a reason."""
    if rank == iterative:
        return "a running state lives from the first step to the last"
    if rank in pass_ranks:
        return f"a later pass reads them again after a reduction over {rank}"
    return f"they live across {rank}, which they are not indexed by"


def _stays_at(binding: Binding, analysis: Analysis, space: Mapping[str, set[str]], io: Mapping[str, EinsumIO],
             group: Group, level_of: Mapping[str, int], tensor: str, child: int) -> bool:
    """Whether the group writes `tensor` and each of its tiles at memory level `child` stays there from its write
    to its last read in the group: one tile is live at once across its lifetime (`_lifetime`, `live_tiles`), so
    its readers here read what the producer left at `child` (SD reading SN's row in the global buffer)."""
    if not any(io[e][1] == tensor for e in group.einsums):
        return False
    decl = binding.cascade.tensors[tensor]
    return live_tiles(group.loops, level_of, child, decl.leaf_ranks,
                      *_lifetime(binding, analysis, space, io, group, tensor))[0] == 1


def _handoff_elems(binding: Binding, group: Group, owner: str, io: Mapping[str, EinsumIO],
                   instance_of: str | None = None) -> int:
    """Room for tiles handed between units through the level that keeps `owner` (or a tensor written over it):
    one tile of the larger of the two units' spatial extents per hand-off, which the consumer works on while the
    producer fills the next (FLAT's QK tile from the 2-D to the 1-D array and its A tile back). At a level with one
    instance per PE of unit `instance_of`, one instance's share: the extents as its PE sees them
    (`reuse.instance_loops`; FuseMax's running max kept in a 1-D lane's registers hands over one word, not the
    256 of the whole array's query rows)."""
    loops = group.loops if instance_of is None else instance_loops(group.loops, instance_of)
    total = 0
    for t in (owner, *group.in_place.get(owner, ())):
        producers = [e for e in group.einsums if io[e][1] == t]
        if not producers:
            continue
        unit = group.binding[producers[0]]
        ranks = binding.cascade.tensors[t].leaf_ranks
        for e in group.einsums:
            if t in io[e][0] and group.binding[e] != unit:
                total += max(_spatial_tile(loops, unit, ranks), _spatial_tile(loops, group.binding[e], ranks))
                break
    return total


def _spatial_tile(loops: tuple[Loop, ...], unit: str, ranks: tuple[str, ...]) -> int:
    """The elements of a tile over `ranks` that `unit`'s spatial loops (of `loops`) spread."""
    return math.prod(lp.factor for lp in loops if lp.spatial == unit and lp.rank in ranks)


def storage_accesses(analysis: Analysis, group: Group, owner: str, io: Mapping[str, EinsumIO]) -> tuple[int, int]:
    """(reads, writes) of each element of `owner`'s storage over the group: one write per Einsum producing it
    or a tensor written over it, one read per Einsum consuming one of them, except a read streamed from a
    producer on the same unit in the same pass (FLAT's sum taking the numerator as the exp unit makes it)."""
    n_reads = n_writes = 0
    for t in (owner, *group.in_place.get(owner, ())):
        producer = next((e for e in group.einsums if io[e][1] == t), None)
        n_writes += producer is not None
        for e in group.einsums:
            if t in io[e][0] and not (producer and group.binding[e] == group.binding[producer]
                                      and _same_pass(analysis, producer, e)):
                n_reads += 1
    return n_reads, n_writes


def _same_pass(analysis: Analysis, a: str, b: str) -> bool:
    """Whether Einsums a and b run in the same pass over every rank both iterate."""
    return all(by_einsum[a] == by_einsum[b] for by_einsum in analysis.passes.einsum_pass.values()
               if a in by_einsum and b in by_einsum)


def _fill_unread(cascade: Cascade, tensor: str) -> bool:
    """Whether no Einsum ever reads a point of intermediate `tensor` that its writer's static mask drops: every
    reader applies the writer's mask predicate (the same expression, over the same index variables), reads the
    tensor at the writer's own index terms, and the predicate reads no variable those terms leave out (so it keeps
    the same points of the tensor for every reader). Then the masked points' fill is never read, and a tile holding
    no kept point need not be written. Conservative: another mask, even one keeping a subset of the points, a
    data-dependent mask, a tensor with no reader in the cascade, or an output (read beyond it) is False."""
    decl = cascade.tensors[tensor]
    writer = next((e for e in cascade.einsums if e.output.tensor == tensor), None)
    if decl.kind != "intermediate" or writer is None or writer.mask is None or writer.mask.data_dependent:
        return False
    terms = writer.output.terms
    indexed = {leaf for term in terms if term.var is not None for leaf in cascade.var_leaves[term.var]}
    if not {leaf for node in walk(writer.mask.predicate) if isinstance(node, Var)
            for leaf in cascade.var_leaves[node.name]} <= indexed:
        return False
    readers = [e for e in cascade.einsums if any(r.tensor == tensor for r in e.refs)]
    return bool(readers) and all(
        e.mask is not None and not e.mask.data_dependent and e.mask.predicate == writer.mask.predicate
        and all(r.terms == terms for r in e.refs if r.tensor == tensor) for e in readers)


def _moved_elems(binding: Binding, analysis: Analysis, group: Group, space: dict[str, set[str]],
                 level_of: dict[str, int], tensor: str, child: int, io: Mapping[str, EinsumIO], tile: int,
                 resident: bool, fill_unread: bool, into_pes: bool) -> tuple[int, int, int, int]:
    """Elements of `tensor` read into level `child` and written out of it, the most one Einsum touching it moves
    in one pass over it (an access of each element its tiles reach: the writer's re-entries left out), and the
    elements the writer re-enters (each read back, then written again); its tile at `child` holds `tile` elements
    (`into_pes`: `child` is the PEs).

    The writer is the Einsum whose output it is. Each of its moves writes the tile out; a move re-entering a tile
    it already visited (a reduction loop above one indexing the output) first reads the partial result back
    (`_output_moves`). A masked Einsum moves no tile it keeps no point of (`masked_refetches`); a masked
    recurrence writes no other (its skipped steps leave the state in place), nor does a masked Einsum where no
    reader reads its masked points (`fill_unread`, `_fill_unread`: FLAT's causal scores); else a tile holding no
    kept point is written once, its fill, which an unmasked reader may read.
    Readers read the tile in (`_read_moves`), none when the group's writer leaves each tile at `child` for its
    readers (`resident`, `_stays_at`): only its writes move."""
    decl = binding.cascade.tensors[tensor]
    touching = [e for e in group.einsums if io[e][1] == tensor or tensor in io[e][0]]
    moves = {e: masked_refetches(binding, binding.cascade.einsum(e), group.loops, level_of, child, decl.leaf_ranks,
                                 space[e]) for e in touching}
    writer = next((e for e in touching if io[e][1] == tensor), None)
    written = read_back = 0
    if writer is not None:
        einsum = binding.cascade.einsum(writer)
        written, read_back = _output_moves(binding, einsum, group.loops, level_of, child, decl.leaf_ranks,
                                           space[writer], moves[writer], not (einsum.is_step or fill_unread))
    read = 0 if resident else _read_moves(binding, analysis, group, space, level_of, tensor, child, io, moves,
                                          writer, into_pes)
    most = max([written - read_back, *(moves[e] for e in touching if e != writer)])  # the writer's first visits
    return tile * (read + read_back), tile * written, tile * most, tile * read_back


def _output_moves(binding: Binding, einsum: Einsum, loops: tuple[Loop, ...], level_of: Mapping[str, int],
                  child: int, ranks: tuple[str, ...], space_ranks: set[str], kept_moves: int,
                  fill_written: bool) -> tuple[int, int]:
    """(Moves writing the writer's output tile out of level `child`, moves reading a partial result back in).
    Of its `kept_moves` (those holding a point its mask keeps), the first onto each tile (`refetches` over the
    ranks the output is indexed by, masked) finds it new and each later one reads back what the last left;
    `fill_written` adds one write of each tile holding no kept point (its fill)."""
    indexing = space_ranks & set(ranks)
    kept_tiles = masked_refetches(binding, einsum, loops, level_of, child, ranks, indexing)
    fill_tiles = refetches(loops, level_of, child, ranks, indexing) - kept_tiles if fill_written else 0
    return kept_moves + fill_tiles, kept_moves - kept_tiles


def _read_moves(binding: Binding, analysis: Analysis, group: Group, space: Mapping[str, set[str]],
                level_of: Mapping[str, int], tensor: str, child: int, io: Mapping[str, EinsumIO],
                moves: Mapping[str, int], writer: str | None, into_pes: bool) -> int:
    """Moves of `tensor`'s tile into level `child` by its readers (`moves`: each Einsum's, masked).

    Readers in one pass share the tile they find at `child`: the most any of them moves is read. Readers in
    different passes (SN's pass reads QK after GM's reduced over M) each read it again, unless no loop above
    `child` over a rank separating their passes walks more than one of its tiles (`live_tiles`): then every pass
    runs inside one residency of the tile (a query row of QK kept whole in the global buffer). A reader streams
    what the writer leaves at `child` in the writer's own pass (`_streams`): it reads only the moves beyond the
    writer's (re-entries across a rank the writer does not iterate)."""
    readers = [e for e in group.einsums if tensor in io[e][0]]
    passes: list[list[str]] = []
    for e in readers:
        same = next((p for p in passes if all(_same_pass(analysis, e, other) for other in p)), None)
        if same is None:
            passes.append([e])
        else:
            same.append(e)
    cascade = binding.cascade
    separating = {leaf for rank, by_einsum in analysis.passes.einsum_pass.items()
                  if len({by_einsum[e] for e in readers if e in by_einsum}) > 1 for leaf in cascade.leaves(rank)}
    if len(passes) > 1 and live_tiles(group.loops, level_of, child, cascade.tensors[tensor].leaf_ranks, set(),
                                      separating)[0] == 1:
        passes = [readers]

    def read(e: str) -> int:
        streamed = writer is not None and _streams(binding, analysis, group, space, writer, e, tensor, into_pes)
        return max(0, moves[e] - moves[writer]) if streamed else moves[e]

    return sum(max(read(e) for e in p) for p in passes)


def _streams(binding: Binding, analysis: Analysis, group: Group, space: Mapping[str, set[str]], writer: str,
             reader: str, tensor: str, into_pes: bool) -> bool:
    """Whether `reader` takes `tensor` as `writer` leaves it, in the same iteration of every loop: it runs in the
    writer's pass over every rank, iterates every rank of `tensor` the writer does (not AV reading the last slot
    of a recurrence's state), reads no recurrence state of the step before (a carried reference), and, at the
    PEs, runs on the writer's unit (else the tile is handed over through the level above, as `storage_accesses`
    counts)."""
    indexed = space[writer] & set(binding.cascade.tensors[tensor].leaf_ranks)
    return (reader != writer and _same_pass(analysis, writer, reader) and indexed <= space[reader]
            and not any(r.carried for r in binding.cascade.einsum(reader).refs if r.tensor == tensor)
            and (not into_pes or group.binding[reader] == group.binding[writer]))
