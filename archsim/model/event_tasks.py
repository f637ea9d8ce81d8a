"""Building the event model's tile tasks (`archsim.model.event`) from a mapping: the group's outer loops unrolled
into chunks, each Einsum's compute on its unit and its transfers on the memory channels per chunk, the
dependencies from the cascade's DAG and the buffers, and the group's overlap policy as a step schedule. The
assumptions are stated in `archsim.model.event`'s docstring; this module only builds, `event` runs and collects.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from archsim.arch.spec import Architecture, Memory
from archsim.cascade import syntax as S
from archsim.cascade.analysis import dependency_dag
from archsim.cascade.bind import Binding
from archsim.cascade.ir import Cascade
from archsim.cascade.passes import refs_of
from archsim.errors import SpecError
from archsim.mapping.resolve import group_ranks, resolve_group
from archsim.mapping.spec import Group, Loop, Mapping
from archsim.model.analytical import pipeline_cycles
from archsim.model.result import Result

READ, WRITE = "read", "write"
_END_S = attrgetter("end_s")


@dataclass(eq=False, slots=True)
class Task:
    """A tile task while the simulation builds and runs it (mutable timing, internal to the engine)."""

    name: str
    resource: str | None  # None: a marker that only joins dependencies
    source: str  # what a unit waiting on this task waits on
    duration_s: float
    deps: list[Task]
    args: dict[str, Any] = field(default_factory=dict)
    ready_s: float = 0.0
    start_s: float = 0.0
    end_s: float = 0.0
    blocker: Task | None = None  # the task that held the resource while this one waited for it
    age: int = 0  # position in the run's task list: a unit serves the oldest waiting task first
    waited: int = 0  # dependencies passed so far
    waiters: list[Task] | None = None  # tasks waiting on this one's end; None once its done event is processed
    held: Any = None  # the engine's resource it holds (None: a marker, a stall or a channel-less level)

    @property
    def last(self) -> Task | None:
        """The dependency that finished last (the first of them on a tie): once the task has run, the one it
        waited for."""
        return max(self.deps, key=_END_S, default=None)


@dataclass(frozen=True)
class _Nest:
    """The unrolled outer loops of a group and their chunks: chunk c is iterations bounds[c] .. bounds[c+1]-1;
    `inner`: the temporal loops inside them, not unrolled (each chunk runs them whole)."""

    loops: tuple[Loop, ...]
    bounds: np.ndarray
    inner: tuple[Loop, ...]

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1


def tile_tasks(binding: Binding, arch: Architecture, mapping: Mapping, parts: Sequence[Result], max_tasks: int,
               buffers: int) -> list[Task]:
    """Every group's tile tasks in order (`parts`: the analytical model's result of each group alone); each
    group's first tasks wait for the previous group's end."""
    tasks: list[Task] = []
    previous: Task | None = None
    for i, (g, part) in enumerate(zip(mapping.groups, parts, strict=True)):
        group = resolve_group(binding, arch, g, mapping.source, f"groups[{i}]")
        where = (mapping.source, f"groups[{i}].overlap")
        built = group_tasks(binding, arch, group, part, max(1, max_tasks // len(mapping.groups)), buffers, previous,
                            where)
        tasks += built
        previous = built[-1]
    return tasks


def group_tasks(binding: Binding, arch: Architecture, group: Group, part: Result, task_budget: int, buffers: int,
                 previous: Task | None, where: tuple[str, str]) -> list[Task]:
    """The tile tasks of one group, chunk by chunk (step by step under a pipeline expression), ending with the
    marker of the group's end."""
    levels = [m.name for m in arch.memories]
    level_of = {name: i for i, name in enumerate(levels)}
    channels = [m for m in arch.memories if m.bandwidth_bytes_per_s]
    space = group_ranks(binding, group)
    preds, carried = _group_edges(binding, group)
    streams = _transfer_streams(binding, group, part, level_of, channels)
    per_chunk = len(group.einsums) + len(streams)
    cascade = binding.cascade
    even = frozenset.intersection(*(frozenset(space[e]) & frozenset(cascade.tensors[cascade.einsum(e).output.tensor]
                                                                    .leaf_ranks) for e in group.einsums))
    nest = _outer_nest(group.loops, level_of, max(1, task_budget // per_chunk), even_ranks=even)
    cycles = {e.name: e.compute_cycles for e in part.einsums}
    compute_s = {e: cycles[e] * _shares(nest, _exec_fixed(nest, space, preds, e)) / arch.clock_hz
                 for e in group.einsums}
    shares = {key: [(mv, _shares(nest, _move_fixed(nest, space, preds, level_of, mv))) for mv in moves]
              for key, moves in streams.items()}
    moved = {key: sum(mv.bytes_ * share for mv, share in per_move) for key, per_move in shares.items()}
    after_writes = _reads_after_writes(shares, preds)
    position = {e.name: i for i, e in enumerate(binding.cascade.einsums)}
    order = sorted(group.einsums, key=position.__getitem__)  # producers before consumers
    consumers = {e: [x for x in order if e in preds[x]] for e in order}
    reads_of = {e: _read_plan(nest.chunks, channels, {key: per for key, per in after_writes.items() if key[0] == e},
                              buffers) for e in order}
    handoffs = {e: _handoffs(nest.chunks, e, moved, [compute_s[x] for x in consumers[e]]) for e in order}
    plan = _overlap_plan(group, order, preds, carried, where)
    skew = plan.skew if plan else dict.fromkeys(order, 0)

    chunks, clock_hz = nest.chunks, arch.clock_hz
    compute: dict[str, list[Task]] = {}  # Einsum -> its compute task per chunk
    for e in order:
        seconds = compute_s[e].tolist()
        cycles_per_chunk = (compute_s[e] * clock_hz).tolist()
        unit, source = group.binding[e], f"waiting on {e}"
        compute[e] = [Task(f"{e}[{c}]", unit, source, s, [], {"group": group.name, "einsum": e, "chunk": c,
                                                               "cycles": cycles_c})
                      for c, (s, cycles_c) in enumerate(zip(seconds, cycles_per_chunk, strict=True))]
    writes_of = {e: [(m, moved[(e, m.name, WRITE)].tolist()) for m in channels[::-1] if (e, m.name, WRITE) in moved]
                 for e in order}
    tasks: list[Task] = []
    written_to: dict[str, dict[int, dict[str, Task]]] = {e: {} for e in order}  # Einsum -> chunk -> level -> write
    barrier = [previous] if previous is not None else []
    steps = chunks + max(skew.values())
    # Per Einsum, what its chunks look up (lists, not arrays: the loop below runs once per task).
    plans = [(e, skew[e], compute[e], reads_of[e], writes_of[e],
              [compute[p] for p in preds[e]], [compute[w] for w in (e, *carried[e])],
              {c: i for i, c in enumerate(handoffs[e].tolist())}, handoffs[e].tolist(),
              {}, [compute[x] for x in consumers[e]], written_to[e]) for e in order]
    for step in range(steps):
        for e, lag, own, reads_at, writes_at, fed_by, carried_from, handed_at, handed, written, fed, out in plans:
            c = step - lag
            if not 0 <= c < chunks:
                continue
            task = own[c]
            deps = task.deps
            # Double buffering: e's input buffer of a tensor takes a tile once e has used the tile `buffers` tiles
            # back (the tensors a chunk frees alike read as one chain); a tile of a tensor the group writes is read
            # once its producer has written it there.
            for free, moves, waits in reads_at[c]:
                reads = _transfers(moves, group.name, e, c, READ, [own[free]] if free >= 0 else barrier)
                if waits:
                    _wait_for_writes(reads, waits, written_to)
                tasks += reads
                deps += reads[-1:]
            for p in fed_by:
                deps.append(p[c])
            if c:
                for w in carried_from:
                    deps.append(w[c - 1])
            # ... and its output buffer takes a tile once the hand-off `buffers` hand-offs back has been written
            # out and read by its consumers.
            i = handed_at.get(c, -1)
            if i >= buffers:
                old = handed[i - buffers]
                deps.append(written[old])
                for x in fed:
                    deps.append(x[old])
            if not deps:
                task.deps = list(barrier)
            tasks.append(task)
            writes = _transfers([(m, per_chunk[c]) for m, per_chunk in writes_at], group.name, e, c, WRITE,
                                [task]) if writes_at else []
            written[c] = writes[-1] if writes else task
            if writes:
                out[c] = {w.resource: w for w in writes}
            tasks += writes
    if plan:
        tasks += _order_steps(plan, group, compute, compute_s, nest.chunks, steps, arch.clock_hz, previous,
                              binding.rank_sizes)
    tasks.append(Task(f"{group.name} done", None, "", 0.0, list(tasks)))
    return tasks


def _read_plan(chunks: int, channels: Sequence[Memory],
               read_shares: dict[tuple[str, str, str], list[tuple[_Move, np.ndarray, dict[str, np.ndarray]]]],
               buffers: int) -> list[list[tuple[int, list[tuple[Memory, float]], list[tuple[str, str, int]]]]]:
    """Chunk -> an Einsum's reads there (`read_shares`: its read streams, each move with its share of each chunk
    and the writes it waits for, `_reads_after_writes`): chains of (the chunk whose compute frees their input
    buffer, -1 if one is free from the start; the bytes per channel, outermost first; the writes the chain waits
    for, (level, producer, chunk)). Each tensor has its own `buffers` buffers (`_read_free`), so a tensor kept
    across many chunks (FuseMax's Q, held for a whole head group) is fetched as soon as its own buffer frees, not
    when the key tile read beside it may be; the tensors that the same chunk frees and that wait for the same
    writes (none, for the cascade's inputs) read as one chain."""
    position = {m.name: i for i, m in enumerate(channels)}
    tensors: dict[str, list[tuple[Memory, _Move, np.ndarray, dict[str, np.ndarray]]]] = defaultdict(list)
    for (_, level, _), per_move in read_shares.items():
        for mv, share, waits in per_move:
            tensors[mv.tensor].append((channels[position[level]], mv, share, waits))
    plan: list[dict[tuple[int, tuple[tuple[str, str, int], ...]], dict[int, float]]] = [{} for _ in range(chunks)]
    for moves in tensors.values():
        free = _read_free(chunks, [share for _, _, share, _ in moves], buffers).tolist()
        waits_at: list[set[tuple[str, str, int]]] = [set() for _ in range(chunks)]
        for m, _, _, waits in moves:
            for producer, chunk in waits.items():
                for c in np.flatnonzero(chunk >= 0).tolist():
                    waits_at[c].add((m.name, producer, int(chunk[c])))
        for m, mv, share, _ in moves:
            level = position[m.name]
            for c in np.flatnonzero(share > 0).tolist():
                at = plan[c].setdefault((free[c], tuple(sorted(waits_at[c]))), {})
                at[level] = at.get(level, 0.0) + mv.bytes_ * float(share[c])
    return [[(free, [(channels[level], at[level]) for level in sorted(at)], list(waits))
             for (free, waits), at in sorted(chunk.items())] for chunk in plan]


def _reads_after_writes(shares: dict[tuple[str, str, str], list[tuple[_Move, np.ndarray]]],
                        preds: dict[str, list[str]]
                        ) -> dict[tuple[str, str, str], list[tuple[_Move, np.ndarray, dict[str, np.ndarray]]]]:
    """The read streams of `shares`, each move with its share of each chunk and, per producer in the group of the
    tensor it reads there, chunk -> the chunk of that producer's write of the tensor to that level that the read
    waits for (-1: none). A tensor the group's Einsums write (an intermediate spilled, or written over in place,
    at a level with a bandwidth) is read after it is written: the shares match in order (`_matched_writes`), and
    a read that the reuse rule puts in a chunk before the write of its share (read at the first index of a loop
    the chunks cut, written at the last: flat-offchip's QK tile, staged in the global buffer over 4 row tiles)
    moves to that write's chunk (`_read_after`). The cascade's inputs, and tensors only a previous group writes,
    wait for nothing here (the group's start waits for the previous group's end)."""
    after: dict[tuple[str, str, str], list[tuple[_Move, np.ndarray, dict[str, np.ndarray]]]] = {}
    for (e, level, direction), per_move in shares.items():
        if direction != READ:
            continue
        moves = []
        for mv, share in per_move:
            matched = {}
            for producer in mv.written_by:
                written = [s for w, s in shares.get((producer, level, WRITE), ()) if w.tensor == mv.tensor]
                if producer in preds[e] and written and written[0].sum() > 0:
                    matched[producer] = _matched_writes(share, written[0])
            moves.append((mv, *_read_after(share, matched)))
        after[(e, level, direction)] = moves
    return after


def _matched_writes(read_share: np.ndarray, write_share: np.ndarray) -> np.ndarray:
    """Chunk -> the chunk whose write completes what the reads there need, -1 where nothing is read: the reads up
    to the end of chunk c need the same fraction of the tensor written (the k-th tile read after the k-th tile
    written), so the first chunk where the writes' running share reaches the reads' (1e-9 absorbs the rounding of
    the shares)."""
    written = np.cumsum(write_share)
    needed = np.minimum(np.cumsum(read_share), written[-1]) - 1e-9
    chunk = np.minimum(np.searchsorted(written, needed, side="left"), len(write_share) - 1)
    return np.where(read_share > 0, chunk, -1)


def _read_after(read_share: np.ndarray, matched: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A read's shares moved to no chunk before the writes they need (`matched`: producer -> chunk -> its write's
    chunk, -1 where nothing is read), and per producer, chunk -> the chunk of its write the read there waits for
    (the latest of those moved there; -1: none). Without producers the shares stay as they are."""
    if not matched:
        return read_share, {}
    reading = np.flatnonzero(read_share > 0)
    lands = reading.copy()
    for chunk in matched.values():
        lands = np.maximum(lands, chunk[reading])
    moved = np.zeros_like(read_share)
    np.add.at(moved, lands, read_share[reading])
    waits = {}
    for producer, chunk in matched.items():
        waits[producer] = np.full(len(read_share), -1, dtype=np.int64)
        np.maximum.at(waits[producer], lands, chunk[reading])
    return moved, waits


def _wait_for_writes(reads: list[Task], waits: list[tuple[str, str, int]],
                     written_to: dict[str, dict[int, dict[str, Task]]]) -> None:
    """Make each read of the chain (`reads`, one per level) wait for the writes to its level in `waits` (level,
    producer, chunk; `written_to`: producer -> chunk -> level -> its write task there)."""
    at = {task.resource: task for task in reads}
    for level, producer, chunk in waits:
        write = written_to[producer].get(chunk, {}).get(level)
        if write is not None and level in at:
            at[level].deps = [*at[level].deps, write]  # a new list: the first read's deps may be the group barrier


def _read_free(chunks: int, read_shares: list[np.ndarray], buffers: int) -> np.ndarray:
    """Chunk -> the chunk whose compute frees the input buffer its reads fill (-1: a buffer is free from the
    start). A tile read at chunk r_k is used until the next read r_{k+1}; with `buffers` buffers the read of tile
    k waits for the last use of tile k - buffers, the chunk before r_{k-buffers+1}. Reads in every chunk: c -
    buffers."""
    free = np.full(chunks, -1, dtype=np.int64)
    for share in read_shares:
        reads = np.flatnonzero(share > 0)
        back = np.arange(len(reads)) - (buffers - 1)
        freed = np.where(back >= 0, reads[np.maximum(back, 0)] - 1, -1)
        free[reads] = np.maximum(free[reads], freed)
    return free


def _handoffs(chunks: int, einsum: str, moved: dict[tuple[str, str, str], np.ndarray],
              consumer_s: list[np.ndarray]) -> np.ndarray:
    """The chunks where `einsum` hands a tile of its output on: writes it out, or a consumer in the group runs.
    In the other chunks it accumulates partial results where the analytical model keeps them."""
    out = np.zeros(chunks, dtype=bool)
    for (e, _, direction), bytes_ in moved.items():
        if e == einsum and direction == WRITE:
            out |= bytes_ > 0
    for seconds in consumer_s:
        out |= seconds > 0
    return np.flatnonzero(out)


def _transfers(moves: list[tuple[Memory, float]], group: str, einsum: str, chunk: int, direction: str,
               deps: list[Task]) -> list[Task]:
    """An Einsum's reads (or writes) of one chunk, level by level in the order of `moves` (each channel with the
    bytes it moves in the chunk), each after the last."""
    chain: list[Task] = []
    for m, moved_bytes in moves:
        if moved_bytes > 0:
            chain.append(Task(f"{direction} {einsum}[{chunk}]", m.name, f"{m.name} bandwidth",
                               moved_bytes / m.bandwidth_bytes_per_s, chain[-1:] or deps,
                               {"group": group, "einsum": einsum, "chunk": chunk, "bytes": moved_bytes}))
    return chain


def _group_edges(binding: Binding, group: Group) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Einsum -> the group's Einsums it reads from within an iteration, and those whose previous state it reads
    (loop-carried), from the cascade's dependency DAG."""
    cascade = binding.cascade
    producer = {cascade.einsum(e).output.tensor: e for e in group.einsums}
    dag = dependency_dag(cascade)
    preds = {e: [producer[t] for t in dag.predecessors(e) if t in producer and producer[t] != e]
             for e in group.einsums}
    carried: dict[str, list[str]] = {e: [] for e in group.einsums}
    for tensor, reader in dag.graph["carried"]:
        if reader in carried and tensor in producer and producer[tensor] != reader:
            carried[reader].append(producer[tensor])
    return preds, carried


def _outer_nest(loops: Sequence[Loop], level_of: dict[str, int], chunks_wanted: int, *,
                even_ranks: frozenset[str]) -> _Nest:
    """The temporal loops of the outermost level (and of the next ones while they give fewer iterations than
    `chunks_wanted`), in loop order, and the chunk bounds over their iterations. Chunks follow the loops: whole
    iterations of the outer loops while their count stays within `chunks_wanted`, then each of those split
    evenly along the next loop, so no chunk straddles two iterations of an outer loop (FFN1's reduction passes
    over D stay apart: a chunk either hands finished rows on or only accumulates). The parts are `_split`'s.

    The outermost level's loops are the design's tiles and are all unrolled. Below them a loop is unrolled only
    over a rank in `even_ranks` (every Einsum of the group iterates it and indexes its output by it) or of factor
    1; the nest ends at the first other loop, fewer chunks rather than unequal shares: split, a reduction loop or
    a loop some Einsum does not iterate gives that Einsum all its work (or none) in one part of each iteration
    (FuseMax's head-dim loop E cut in 4: QK in each quarter, LM and SLN in the last, SLD and SLNV in the first,
    +46 % at 2048 tokens), the stall of uneven steps `_split` avoids."""
    temporal = sorted((lp for lp in loops if not lp.is_spatial), key=lambda lp: level_of[lp.level])
    outermost = level_of[temporal[0].level] if temporal else 0
    taken = 0
    for i, lp in enumerate(temporal):
        level = level_of[lp.level]
        if level != outermost:
            if level != level_of[temporal[i - 1].level] and math.prod(x.factor for x in temporal[:i]) >= chunks_wanted:
                break
            if lp.factor > 1 and lp.rank not in even_ranks:
                break
        taken = i + 1
    nest, inner = temporal[:taken], tuple(temporal[taken:])
    factors = [int(lp.factor) for lp in nest]
    iterations = math.prod(factors)
    count = 1  # whole iterations of the loops taken so far
    for j, factor in enumerate(factors):
        if count * factor > chunks_wanted:
            sizes = _split(factor, max(1, chunks_wanted // count), count)
            outer = np.arange(count, dtype=np.int64)[:, None] * factor
            starts = (outer + np.cumsum([0, *sizes[:-1]])[None, :]) * math.prod(factors[j + 1:])
            return _Nest(tuple(nest), np.append(starts.ravel(), iterations), inner)
        count *= factor
    return _Nest(tuple(nest), np.arange(iterations + 1, dtype=np.int64), inner)


def _split(factor: int, limit: int, count: int) -> list[int]:
    """The sizes of the parts, about `limit` of them, into which each of the `count` iterations of the outer
    loops cuts the next loop, of `factor` iterations. Equal parts wherever a divisor allows: a step schedule runs a
    skewed Einsum's chunk c - 1 beside the others' chunk c (`_overlap_plan`), so at every chunk smaller than the
    one before (or after) the step waits for the larger and a unit idles, a stall of the decomposition that the
    design does not have (11 key tiles cut 1 2 1 2 2 1 2: FuseMax 12.7 % above the analytical model, array2d
    idle 11 % of the run "waiting on RNV"). Unequal parts pay about one iteration in `factor` at best (sizes
    falling once per outer iteration); fill and drain cost about one chunk in count x parts. So, in order: the
    largest divisor up to `limit` if it is above half of it; the smallest from `limit` up to twice it (up to
    twice the chunks wanted); the largest up to `limit` if the chunks it gives, count x it, are at least `factor`
    (one chunk of fill and drain costs no more than the unequal sizes would); else `limit` unequal parts, the
    larger first."""
    below = max(d for d in range(1, limit + 1) if factor % d == 0)
    above = next((d for d in range(limit, min(factor, 2 * limit) + 1) if factor % d == 0), None)
    if 2 * below > limit or (above is None and count * below >= factor):
        return [factor // below] * below
    if above is not None:
        return [factor // above] * above
    size, larger = divmod(factor, limit)
    return [size + 1] * larger + [size] * (limit - larger)


def _exec_fixed(nest: _Nest, space: dict[str, set[str]], preds: dict[str, list[str]], einsum: str) -> dict[int, int]:
    """Loop position -> the index at which `einsum` runs, for the loops over ranks it does not iterate."""
    fed = set().union(*(space[p] for p in preds[einsum]))
    return {j: lp.factor - 1 if lp.rank in fed else 0 for j, lp in enumerate(nest.loops)
            if lp.rank not in space[einsum]}


@dataclass(frozen=True)
class _Move:
    """One Einsum's part of a tensor's traffic at a level: `bytes_` over the whole group, moved into level `child`
    (a read) or out of it (a write) whenever a tile of a tensor over `tensor_ranks` changes."""

    einsum: str
    direction: str
    tensor: str
    tensor_ranks: frozenset[str]
    child: int
    bytes_: float
    written_by: tuple[str, ...]  # a read's: the group's other Einsums that write what it reads of the tensor


def _transfer_streams(binding: Binding, group: Group, part: Result, level_of: dict[str, int],
                      channels: Sequence[Memory]) -> dict[tuple[str, str, str], list[_Move]]:
    """(Einsum, level, read/write) -> its parts of the group's analytical traffic at that level, for the levels
    with a bandwidth."""
    cascade = binding.cascade
    over = {alias: owner for owner, aliases in group.in_place.items() for alias in aliases}
    streams: dict[tuple[str, str, str], list[_Move]] = defaultdict(list)
    for m in channels:
        for tensor, total_bytes in part.traffic_bytes.get(m.name, {}).items():
            storage = {tensor, *group.in_place.get(tensor, ())}
            writing = [e for e in group.einsums if cascade.einsum(e).output.tensor in storage]
            roles = [(e, WRITE) for e in writing]
            roles += [(e, READ) for e in group.einsums
                      if storage & {r.tensor for r in refs_of(cascade.einsum(e))}]
            owner = over.get(tensor, tensor)
            kept = [level_of[lv] for lv, ts in group.keep.items() if owner in ts and level_of[lv] > level_of[m.name]]
            child = min(kept, default=len(level_of))
            ranks = frozenset(cascade.tensors[tensor].leaf_ranks)
            share_bytes = total_bytes / len(roles)
            for e, direction in roles:
                writers = _writers_read(cascade, writing, storage, e) if direction == READ else ()
                streams[(e, m.name, direction)].append(_Move(e, direction, tensor, ranks, child, share_bytes,
                                                             writers))
    return dict(streams)


def _writers_read(cascade: Cascade, writing: Sequence[str], storage: set[str], reader: str) -> tuple[str, ...]:
    """The Einsums of `writing` (the group's writing into `storage`: a tensor and those written over it in place)
    other than `reader` whose output `reader` reads: FLAT's in-place score block is QK's for GM and SN, SN's for SD
    and A."""
    read = storage & {r.tensor for r in refs_of(cascade.einsum(reader))}
    return tuple(e for e in writing if e != reader and cascade.einsum(e).output.tensor in read)


def _shares(nest: _Nest, fixed: dict[int, int]) -> np.ndarray:
    """Fraction of the moves (or executions) that fall in each chunk, given the loop indices they happen at."""
    counts = count_below(nest.bounds, [lp.factor for lp in nest.loops], fixed)
    return np.diff(counts) / counts[-1]


def _move_fixed(nest: _Nest, space: dict[str, set[str]], preds: dict[str, list[str]], level_of: dict[str, int],
                move: _Move) -> dict[int, int]:
    """The reuse rule of `archsim.model.reuse` on the unrolled loops: a tile moves when a loop above its level over
    one of its ranks steps, and again for every iteration of the loops outside the innermost such loop; the loops
    of the Einsum inside it reuse the tile (read at their first index, written at their last). The innermost
    indexing loop is sought over the whole nest, the loops left inside the chunks (`nest.inner`) too: a tile
    re-read per key tile of an inner loop (FLAT's K under the row-block loop) is re-read in every chunk, not held
    from the first (which read all of a 64K-token run's K, 2.1 GB, in chunk 0)."""
    fixed = _exec_fixed(nest, space, preds, move.einsum)
    loops = (*nest.loops, *nest.inner)
    own = space[move.einsum]
    indexing = [j for j, lp in enumerate(loops) if lp.rank in own and lp.rank in move.tensor_ranks
                and lp.factor > 1 and level_of[lp.level] < move.child]
    after = indexing[-1] if indexing else -1
    for j, lp in enumerate(nest.loops):
        if j > after and lp.rank in own:
            fixed[j] = 0 if move.direction == READ else lp.factor - 1
    return fixed


def count_below(xs: np.ndarray, radices: Sequence[int], fixed: dict[int, int]) -> np.ndarray:
    """For each x, how many iterations i < x of the loops (mixed radix, outermost first) have digit fixed[j] at
    every position j in `fixed`. x may be the total count (the first digit then overflows, which counts right)."""
    if not radices:
        return xs.copy()  # no loops: one iteration
    free = [1 if j in fixed else r for j, r in enumerate(radices)]
    after = [math.prod(free[j + 1:]) for j in range(len(radices))]
    stride = [math.prod(radices[j + 1:]) for j in range(len(radices))]
    total = np.zeros_like(xs)
    alive = np.ones(xs.shape, dtype=bool)
    rest = xs.copy()
    for j in range(len(radices)):
        digit, rest = rest // stride[j], rest % stride[j]
        if j in fixed:
            total += np.where(alive & (fixed[j] < digit), after[j], 0)
            alive &= digit == fixed[j]
        else:
            total += np.where(alive, digit * after[j], 0)
    return total


@dataclass(frozen=True)
class _Plan:
    """A group's overlap policy as a schedule: each step runs the expression once, one tile per Einsum (Einsum e
    works on tile step - skew[e]); `scheduled` are the expression's Einsum leaves (ids of their nodes)."""

    expr: S.Expr
    skew: dict[str, int]
    scheduled: frozenset[int]


def _overlap_plan(group: Group, order: list[str], preds: dict[str, list[str]], carried: dict[str, list[str]],
                  where: tuple[str, str]) -> _Plan | None:
    """None for `max` (units overlap freely); else the step schedule of `sequential` (the Einsums one after
    another, in cascade order) or of the pipeline expression. Skews follow the data: an Einsum that reads a tile
    an Einsum placed after it in the expression produces works one step behind (FuseMax's waterfall: RD, RNV
    and AV finish tile t while QK and LM start tile t + 1)."""
    if group.overlap == "max":
        return None
    if group.overlap == "sequential":
        expr: S.Expr = S.Name(order[0])
        for e in order[1:]:
            expr = S.BinOp("+", expr, S.Name(e))
    else:
        expr = S.parse_expr(group.overlap)
    scheduled: dict[str, int] = {}  # Einsum -> id of the node that schedules it (its first leaf)
    after: set[tuple[str, str]] = set()  # (a, b): a runs after b within a step

    def leaves(node: S.Expr) -> list[str]:
        match node:
            case S.Name(name=name) if name in group.binding and scheduled.get(name, id(node)) == id(node):
                scheduled[name] = id(node)
                return [name]
            case S.BinOp(op="+", lhs=lhs, rhs=rhs):
                first, then = leaves(lhs), leaves(rhs)
                after.update((b, a) for a in first for b in then)
                return first + then
            case S.Call(fn="max", args=args):
                return [e for a in args for e in leaves(a)]
        return []

    leaves(expr)
    # An Einsum the expression leaves out has no place in a step: the Einsums it feeds take it as placed after
    # them, so they work a step behind it and never wait on it within a step.
    after.update((x, e) for x in order if x not in scheduled for e in order)
    skew = dict.fromkeys(order, 0)
    for _ in range(len(order) + 1):
        changed = False
        for e in order:
            need = [skew[p] + ((p, e) in after) for p in preds[e]]  # tile t of p before tile t of e
            need += [skew[w] - ((w, e) not in after) for w in carried[e] if w != e]  # tile t - 1 of w
            if max(need, default=0) > skew[e]:
                skew[e], changed = max(need), True
        if not changed:
            return _Plan(expr, skew, frozenset(scheduled.values()))
    raise SpecError(*where, f"{group.overlap!r} orders Einsums against their data: an Einsum would need a tile "
                            "that a later step produces (expected producers placed before their consumers)")


def _order_steps(plan: _Plan, group: Group, compute: dict[str, list[Task]], compute_s: dict[str, np.ndarray],
                 chunks: int, steps: int, clock_hz: float, previous: Task | None,
                 rank_sizes: dict[str, int]) -> list[Task]:
    """Add the expression's order to the compute tasks, step after step: `a + b` runs b's tiles once a's are
    done, `max(a, b)` runs them side by side; any other term (`M0*LM`, a number) is a stall of that many cycles,
    for the Einsums' tiles of the step (a term without Einsums: once per group, spread over the chunks). Returns
    the markers and stalls it adds."""
    schedule = _Schedule(plan, group, compute, compute_s, chunks, clock_hz, rank_sizes, [])
    build = _compile_node(plan.expr, schedule)
    end = previous
    for step in range(steps):
        end = build(step, end)
    return schedule.added


@dataclass(frozen=True)
class _Schedule:
    """What `_compile_node`'s functions read, and `added`: the markers and stalls they make."""

    plan: _Plan
    group: Group
    compute: dict[str, list[Task]]
    compute_s: dict[str, np.ndarray]
    chunks: int
    clock_hz: float
    rank_sizes: dict[str, int]
    added: list[Task]


_Build = Callable[[int, "Task | None"], "Task | None"]  # (step, task the node starts after) -> its end


def _compile_node(node: S.Expr, schedule: _Schedule) -> _Build:
    """The node of the overlap expression as a function of the step, built once (the steps call it thousands of
    times)."""
    chunks, added, group = schedule.chunks, schedule.added, schedule.group
    match node:
        case S.Name(name=name) if id(node) in schedule.plan.scheduled:
            tiles, lag = schedule.compute[name], schedule.plan.skew[name]

            def einsum(step: int, start: Task | None) -> Task | None:
                c = step - lag
                if not 0 <= c < chunks:
                    return start
                task = tiles[c]
                if start is not None:
                    task.deps.append(start)
                return task
            return einsum
        case S.BinOp(op="+", lhs=lhs, rhs=rhs):
            first, then = _compile_node(lhs, schedule), _compile_node(rhs, schedule)
            return lambda step, start: then(step, first(step, start))
        case S.Call(fn="max", args=args):
            parts = [_compile_node(a, schedule) for a in args]

            def side_by_side(step: int, start: Task | None) -> Task | None:
                ends: list[Task | None] = []
                for part in parts:
                    end = part(step, start)
                    if end not in ends:
                        ends.append(end)
                if len(ends) == 1:
                    return ends[0]
                added.append(Task(f"{group.name} step {step}", None, "", 0.0, [e for e in ends if e]))
                return added[-1]
            return side_by_side
    einsums = sorted({n.name for n in S.walk(node) if isinstance(n, S.Name) and n.name in group.binding})
    text = _text(node)
    skew, compute_s = schedule.plan.skew, schedule.compute_s
    clock_hz, rank_sizes = schedule.clock_hz, schedule.rank_sizes

    def stall(step: int, start: Task | None) -> Task | None:
        if einsums:
            at = {e: step - skew[e] for e in einsums}
            cycles = pipeline_cycles(node, {**rank_sizes, **{e: float(compute_s[e][c]) * clock_hz
                                                             if 0 <= c < chunks else 0.0 for e, c in at.items()}})
        else:
            cycles = pipeline_cycles(node, dict(rank_sizes)) / chunks if step < chunks else 0.0
        if cycles <= 0:
            return start
        added.append(Task(f"stall {text}[{step}]", None, f"pipeline stall {text}", cycles / clock_hz,
                           [start] if start is not None else [], {"group": group.name, "cycles": cycles}))
        return added[-1]
    return stall


def _text(node: S.Expr) -> str:
    """A pipeline term as written (`M0*LM`), for stall names."""
    match node:
        case S.Name(name=name):
            return name
        case S.Num(value=value):
            return f"{value:g}"
        case S.BinOp(op=op, lhs=lhs, rhs=rhs):
            inner = [f"({_text(x)})" if op == "*" and isinstance(x, S.BinOp) and x.op == "+" else _text(x)
                     for x in (lhs, rhs)]
            return op.join(inner)
        case S.Call(fn=fn, args=args):
            return f"{fn}({', '.join(_text(a) for a in args)})"
    return repr(node)
