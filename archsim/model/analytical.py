"""The analytical model: a closed form over each fusion group's loop nest. Specs in, `Result` out.

Follows the method of Timeloop/Accelergy as the FuseMax artifact uses it (Nayak et al., MICRO'24,
`src/accel/cascade.py`), and TeAAL's "max within a block, sum over blocks" (MICRO'23). Assumptions:

Compute
- An Einsum runs on the unit it is bound to. Its spatial loops on that unit, over ranks it iterates, set the
  PEs it uses (`lanes_used`); the others idle. Its compute cycles = sum over op types of
  count x the unit's cycles per op / lanes_used. Op counts come from the cascade analysis (masked points free).
- A unit's spatial loops take its dimensions in the order written (`{spatial: array2d, ranks: {P: 256,
  M0: 256}}`: P along the first, M0 along the second); loops beyond its last dimension share that one. A
  product of factors along a dimension above its PEs makes the group infeasible (the Result says which loop,
  unit and sizes), so a point never uses PEs the array lacks.
- A group's compute cycles follow its overlap policy (see `archsim.mapping.spec`): `sequential` sums the
  Einsums, `max` takes the busiest unit, a pipeline expression combines Einsum cycles with `+` and `max`. An
  expression that overlaps a unit's Einsums beyond its PEs (max(A, B), A and B on one unit, each using most
  of it) makes the group infeasible: a unit's busy PE-cycles never exceed its PEs x the group's cycles, so
  utilization never exceeds 1.

Memory
- Traffic per tensor per level boundary from `archsim.model.reuse` (loop-order reuse, no halos, perfect
  multicast of one tile to all PEs that share it). Reads flow from the tensor's home level inward to every
  level that keeps it; writes of an Einsum's output flow outward to its home.
- A tensor's home: DRAM (the outermost level) for inputs, outputs and intermediates that cross groups; for
  any other intermediate the outermost level that keeps it in this group, or the PEs (no memory traffic) if
  none does.
- Transfers overlap compute (double buffering): group time = max(compute cycles / clock, each level's
  transfer time = bytes through its inner boundary / its bandwidth). Levels without a bandwidth never stall.
  Total time = sum over groups.
- Footprint at a level: the tiles it keeps (twice if double-buffered; tensors written in place over another
  take no room), plus one tile per hand-off of a kept intermediate between two units (the larger of the two
  units' spatial tiles), which the consumer works on while the producer fills the next.
- A group is infeasible when its footprint exceeds a level's capacity; the Result says which level, which
  tensors it keeps and both sizes. Unless the
  overflowing tensors are marked `spill`: then the overflow's share of their tiles lives one level out, and each
  access to a spilled element goes there: one write per Einsum producing the storage's tensors, one read per
  Einsum consuming them, except reads streamed from a producer on the same unit in the same pass.

Energy (Accelergy's method): actions x energy per action. Compute: op counts x the unit's energy per op.
Memory: a transfer of b bytes is b*8/access_bits reads at the sending level and as many writes at the receiving
one (widths per level). Transfers into the PEs count one read of the innermost holder per tile fetched (the
multicast tile), shared by the Einsums that read it, except for a storage on chip written over in place
(`in_place`, FLAT's score block): each pass over it is its own access, so each Einsum producing or consuming it
reads or writes every element, except a read streamed from its producer (see `_storage_accesses`; fusemax-energy.md
s5: 4 reads and 3 writes per score). Per-operand register-file accesses are not modelled (the FuseMax artifact
prices them per PE instance: under 0.25 pJ per score). Leakage: every level's leak energy per cycle x instances x
cycles. Area: the architecture's.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from archsim.arch.spec import Architecture
from archsim.cascade import syntax as S
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.cascade.passes import refs_of
from archsim.mapping.overlap import parse_pipeline
from archsim.mapping.resolve import check_bindings, group_ranks, resolve_group
from archsim.mapping.spec import Group, Mapping
from archsim.model.result import EinsumResult, Result
from archsim.model.reuse import refetches, tile_elems


def evaluate(binding: Binding, analysis: Analysis, arch: Architecture, mapping: Mapping,
             only_group: int | None = None) -> Result:
    """Evaluate `mapping` of the bound cascade on `arch`. Raises SpecError only for a mapping that cannot run;
    a mapping that runs but does not fit is returned as an infeasible Result. With `only_group`, only that group
    is evaluated (the mapper scores one group at a time; the others may still hold `search` factors), but which
    tensors cross groups, and so live in DRAM, still follows the whole mapping."""
    check_bindings(binding, mapping)
    used_in = defaultdict(set)
    for g in mapping.groups:
        for e in g.einsums:
            for t in _tensors_of(binding, e):
                used_in[t].add(g.name)
    groups = [resolve_group(binding, arch, g, mapping.source, f"groups[{i}]") for i, g in enumerate(mapping.groups)
              if only_group is None or i == only_group]
    parts = [_group(binding, analysis, arch, g, used_in) for g in groups]

    seconds = sum(p.seconds for p in parts)
    cycles = seconds * arch.clock_hz
    traffic: dict[str, dict[str, float]] = {m.name: {} for m in arch.memories}
    energy: Counter[tuple[str, str]] = Counter()
    busy: Counter[str] = Counter()
    memory_s: Counter[str] = Counter()
    footprint: dict[str, float] = {}
    reasons = []
    for p in parts:
        for level, per_tensor in p.traffic.items():
            for t, b in per_tensor.items():
                traffic[level][t] = traffic[level].get(t, 0.0) + b
        energy.update(p.energy)
        busy.update(p.busy)
        memory_s.update(p.memory_s)
        for level, b in p.footprint.items():
            footprint[level] = max(footprint.get(level, 0.0), b)
        reasons += p.reasons
    for m in arch.memories:
        leak = m.energy.actions_pj.get("leak", 0.0)
        if leak:
            energy[(m.name, "leak")] += leak * m.instances * cycles
    return Result(
        cascade=binding.cascade.name, architecture=arch.name, mapping=mapping.name,
        params=dict(binding.params), feasible=not reasons, reason="; ".join(reasons),
        latency_s=seconds, compute_cycles=sum(p.compute_cycles for p in parts),
        memory_s=dict(memory_s), traffic_bytes=traffic,
        energy_pj=sum(energy.values()), energy_by=dict(energy),
        utilization={u.name: busy[u.name] / (u.lanes * cycles) if cycles else 0.0 for u in arch.units},
        footprint_bytes=footprint, area_um2=arch.area_um2(),
        einsums=tuple(e for p in parts for e in p.einsums),
    )


@dataclass
class _GroupResult:
    seconds: float
    compute_cycles: float
    memory_s: dict[str, float]
    traffic: dict[str, dict[str, float]]
    energy: Counter
    busy: Counter  # unit -> busy lane-cycles
    footprint: dict[str, float]
    reasons: list[str]
    einsums: list[EinsumResult]


def _tensors_of(binding: Binding, einsum_name: str) -> set[str]:
    einsum = binding.cascade.einsum(einsum_name)
    return {r.tensor for r in refs_of(einsum)} | {einsum.output.tensor}


def _group(binding: Binding, analysis: Analysis, arch: Architecture, group: Group,
           used_in: dict[str, set[str]]) -> _GroupResult:
    cascade = binding.cascade
    levels = [m.name for m in arch.memories]
    level_of = {name: i for i, name in enumerate(levels)}
    compute_level = len(levels)
    space = group_ranks(binding, group)
    energy: Counter[tuple[str, str]] = Counter()
    busy: Counter[str] = Counter()

    einsums = []
    for e in group.einsums:
        unit = arch.unit(group.binding[e])
        lanes = 1
        for lp in group.loops:
            if lp.spatial == unit.name and lp.rank in space[e]:
                lanes *= lp.factor
        ops = analysis.ops[e]
        if e in group.pipelined:
            lane_cycles = max(n for n in ops.values()) * max(unit.op_cycles[op] for op in ops)
        else:
            lane_cycles = sum(n * unit.op_cycles[op] for op, n in ops.items())
        e_energy = sum(n * unit.energy.actions_pj[op] for op, n in ops.items())
        for op, n in ops.items():
            energy[(unit.name, op)] += n * unit.energy.actions_pj[op]
        busy[unit.name] += lane_cycles
        einsums.append(EinsumResult(e, group.name, unit.name, dict(ops), lanes, lane_cycles / lanes, e_energy))
    cycles = {r.name: r.compute_cycles for r in einsums}
    compute_cycles = _overlap(group, cycles, {r.name: r.unit for r in einsums}, binding.rank_sizes)
    reasons = _fanout_reasons(arch, group) or _overlap_reasons(arch, group, einsums, compute_cycles)

    reads = {e: {r.tensor for r in refs_of(cascade.einsum(e))} for e in group.einsums}
    over = {alias: owner for owner, aliases in group.in_place.items() for alias in aliases}
    # Residency chain of every tensor the group touches: its home level, then the inner levels keeping it.
    traffic: dict[str, dict[str, float]] = defaultdict(dict)
    footprint: Counter[str] = Counter()
    kept_at: dict[str, list[str]] = defaultdict(list)  # level -> tensors whose tiles it holds
    spillable: Counter[str] = Counter()
    word = binding.word_bytes
    parent_of: dict[str, int] = {}  # level -> the level above it in the chain of a spillable tensor
    for t in sorted(set().union(*(_tensors_of(binding, e) for e in group.einsums)) - set(over)):
        decl = cascade.tensors[t]
        kept = sorted(level_of[lv] for lv, ts in group.keep.items() if t in ts)
        if decl.kind != "intermediate" or used_in[t] - {group.name}:
            chain = [0, *[k for k in kept if k > 0]]  # lives in DRAM
        elif kept:
            chain = kept
        else:
            continue  # produced and consumed inside the PEs
        for i, c in enumerate(chain):
            if c == 0:
                continue
            copies = 2 if t in group.double_buffered else 1
            tile_bytes = copies * tile_elems(group.loops, level_of, c, decl.leaf_ranks, decl.iterative) * word
            footprint[levels[c]] += tile_bytes
            kept_at[levels[c]].append(t)
            if t in group.spill:
                spillable[levels[c]] += tile_bytes
                parent_of[levels[c]] = chain[i - 1] if i else c - 1
        if chain[-1] > 0:
            footprint[levels[chain[-1]]] += _handoff_elems(binding, arch, group, space, t) * word
        for parent, child in zip(chain, [*chain[1:], compute_level], strict=True):
            read, written = _moved_elems(binding, group, space, level_of, t, child, reads)
            if t in group.in_place and chain[0] > 0 and child == compute_level:
                # A storage on chip written over in place pass after pass: every Einsum producing or consuming it
                # (or a tensor written over it) accesses it, except reads streamed from their producer.
                n_reads, n_writes = _storage_accesses(binding, analysis, group, t, reads)
                per_access = max(read, written)
                read, written = per_access * n_reads, per_access * n_writes
            traffic[levels[parent]][t] = (read + written) * word
            _transfer_energy(energy, arch, parent, child, read * word * 8, inward=True)
            _transfer_energy(energy, arch, parent, child, written * word * 8, inward=False)

    for m in arch.memories:
        overflow = footprint.get(m.name, 0.0) - (m.capacity_bytes if m.capacity_bytes is not None else math.inf)
        if overflow <= 0:
            continue
        if overflow > spillable[m.name]:
            reasons.append(f"group {group.name}: {m.name} holds {footprint[m.name]:.0f} B of tiles "
                           f"({', '.join(kept_at[m.name]) or 'hand-offs between units'}), "
                           f"over its capacity of {m.capacity_bytes} B")
            continue
        # The part of the spillable tiles that does not fit lives one level out; each access to it goes there.
        fraction = overflow / spillable[m.name]
        parent = parent_of[m.name]
        for t in group.spill:
            if t in group.keep.get(m.name, ()):
                n_reads, n_writes = _storage_accesses(binding, analysis, group, t, reads)
                elems = math.prod(binding.leaf_shape(t)) * fraction
                traffic[levels[parent]][t] = traffic[levels[parent]].get(t, 0.0) + elems * (n_reads + n_writes) * word
                _transfer_energy(energy, arch, parent, compute_level, elems * n_reads * word * 8, inward=True)
                _transfer_energy(energy, arch, parent, compute_level, elems * n_writes * word * 8, inward=False)

    memory_s = {}
    for m in arch.memories:
        moved = sum(traffic.get(m.name, {}).values())
        if m.bandwidth_bytes_per_s and moved:
            memory_s[m.name] = moved / m.bandwidth_bytes_per_s
    seconds = max([compute_cycles / arch.clock_hz, *memory_s.values()])
    return _GroupResult(seconds, compute_cycles, memory_s, dict(traffic), energy, busy, dict(footprint), reasons,
                        einsums)


def _fanout_reasons(arch: Architecture, group: Group) -> list[str]:
    """Why the group's spatial loops need more PEs than a unit has, along one of its dimensions (see the module
    docstring for which loops go along which dimension)."""
    reasons = []
    for unit in arch.units:
        loops = [(i, lp) for i, lp in enumerate(group.loops) if lp.spatial == unit.name]
        last = len(unit.shape) - 1
        for d, pes in enumerate(unit.shape):
            along = loops[d:d + 1] if d < last else loops[last:]
            fanout = math.prod(lp.factor for _, lp in along)
            if fanout > pes:
                named = " x ".join(f"{lp.origin or f'loops[{i}] rank {lp.rank}'} = {lp.factor}" for i, lp in along)
                reasons.append(f"group {group.name}: {named} spreads {fanout} over unit {unit.name}, which has "
                               f"{pes} PEs along dimension {d} (shape {' x '.join(map(str, unit.shape))})")
    return reasons


def _overlap_reasons(arch: Architecture, group: Group, einsums: list[EinsumResult], compute_cycles: float) -> list[str]:
    """Why the group's overlap expression runs a unit's Einsums side by side beyond its PEs."""
    reasons = []
    for unit in arch.units:
        mine = [r for r in einsums if r.unit == unit.name]
        busy = sum(r.compute_cycles * r.lanes_used for r in mine)
        if busy > unit.lanes * compute_cycles * (1 + 1e-9):
            reasons.append(f"group {group.name}: its overlap runs {', '.join(r.name for r in mine)} side by side on "
                           f"unit {unit.name} in {compute_cycles:.0f} cycles, but their {busy:.0f} PE-cycles need "
                           f"{busy / unit.lanes:.0f} cycles of its {unit.lanes} PEs")
    return reasons


def _handoff_elems(binding: Binding, arch: Architecture, group: Group, space: dict[str, set[str]],
                   owner: str) -> int:
    """Room for tiles handed between units through the level that keeps `owner` (or a tensor written over it):
    one tile of the larger of the two units' spatial extents per hand-off, which the consumer works on while the
    producer fills the next (FLAT's QK tile from the 2-D to the 1-D array and its A tile back)."""
    total = 0
    for t in (owner, *group.in_place.get(owner, ())):
        producers = [e for e in group.einsums if binding.cascade.einsum(e).output.tensor == t]
        if not producers:
            continue
        unit = group.binding[producers[0]]
        ranks = binding.cascade.tensors[t].leaf_ranks
        for e in group.einsums:
            reads = {r.tensor for r in refs_of(binding.cascade.einsum(e))}
            if t in reads and group.binding[e] != unit:
                total += max(_spatial_tile(group, unit, ranks), _spatial_tile(group, group.binding[e], ranks))
                break
    return total


def _spatial_tile(group: Group, unit: str, ranks: tuple[str, ...]) -> int:
    return math.prod(lp.factor for lp in group.loops if lp.spatial == unit and lp.rank in ranks)


def _storage_accesses(binding: Binding, analysis: Analysis, group: Group, owner: str,
                      reads: dict[str, set[str]]) -> tuple[int, int]:
    """(reads, writes) of each element of `owner`'s storage over the group: one write per Einsum producing it
    or a tensor written over it, one read per Einsum consuming one of them, except a read streamed from a
    producer on the same unit in the same pass (FLAT's sum taking the numerator as the exp unit makes it)."""
    n_reads = n_writes = 0
    for t in (owner, *group.in_place.get(owner, ())):
        producer = next((e for e in group.einsums if binding.cascade.einsum(e).output.tensor == t), None)
        n_writes += producer is not None
        for e in group.einsums:
            if t in reads[e] and not (producer and group.binding[e] == group.binding[producer]
                                      and _same_pass(analysis, producer, e)):
                n_reads += 1
    return n_reads, n_writes


def _same_pass(analysis: Analysis, a: str, b: str) -> bool:
    """Whether Einsums a and b run in the same pass over every rank both iterate."""
    return all(by_einsum[a] == by_einsum[b] for by_einsum in analysis.passes.einsum_pass.values()
               if a in by_einsum and b in by_einsum)


def _moved_elems(binding: Binding, group: Group, space: dict[str, set[str]], level_of: dict[str, int],
                 tensor: str, child: int, reads: dict[str, set[str]]) -> tuple[int, int]:
    """Elements of `tensor` read into level `child` and written out of it. Readers share the resident tile,
    so the largest reader count is taken; the writer is the Einsum whose output it is."""
    decl = binding.cascade.tensors[tensor]
    tile = tile_elems(group.loops, level_of, child, decl.leaf_ranks, decl.iterative)
    read = written = 0
    for e in group.einsums:
        writes = binding.cascade.einsum(e).output.tensor == tensor
        if not writes and tensor not in reads[e]:
            continue
        moved = tile * refetches(group.loops, level_of, child, decl.leaf_ranks, space[e])
        if writes:
            written = max(written, moved)
        if tensor in reads[e]:
            read = max(read, moved)
    return read, written


def _transfer_energy(energy: Counter, arch: Architecture, parent: int, child: int, bits: float,
                     inward: bool) -> None:
    """A transfer reads at the sending level and writes at the receiving one (the PEs are no memory)."""
    if not bits:
        return
    sender, receiver = (parent, child) if inward else (child, parent)
    for index, action in ((sender, "read"), (receiver, "write")):
        if index < len(arch.memories):
            m = arch.memories[index]
            energy[(m.name, action)] += bits / m.access_bits * m.energy.actions_pj[action]


def _overlap(group: Group, cycles: dict[str, float], unit_of: dict[str, str], rank_sizes: dict[str, int]) -> float:
    if group.overlap == "sequential":
        return sum(cycles.values())
    if group.overlap == "max":
        per_unit: Counter[str] = Counter()
        for e, c in cycles.items():
            per_unit[unit_of[e]] += c
        return max(per_unit.values())
    return pipeline_cycles(parse_pipeline(group.overlap), {**rank_sizes, **cycles})


def pipeline_cycles(node: S.Expr, cycles: dict[str, float]) -> float:
    """Value of a group's pipeline expression (`+`, `*`, `max` over Einsum names and rank sizes) given each
    name's cycles; shared with the event model so both read an expression alike."""
    match node:
        case S.Name(name=name):
            return cycles[name]  # an Einsum's compute cycles, or a rank size (+Arch's stall of LM x M0 cycles)
        case S.Num(value=value):
            return value
        case S.BinOp(op="+", lhs=lhs, rhs=rhs):
            return pipeline_cycles(lhs, cycles) + pipeline_cycles(rhs, cycles)
        case S.BinOp(op="*", lhs=lhs, rhs=rhs):
            return pipeline_cycles(lhs, cycles) * pipeline_cycles(rhs, cycles)
        case S.Call(fn="max", args=args):
            return max(pipeline_cycles(a, cycles) for a in args)
    raise ValueError(f"not a pipeline expression: {node!r}")
