"""The event model: a mapping's tiles as SimPy tasks competing for compute units and memory channels. Specs in,
`EventRun` (a `Result`, its timeline and the sources of its stalls) out.

Follows DESIGN.md §5 (event model): the same tiles as the analytical model (`archsim.model.analytical`), run as
tasks with dependencies on SimPy resources. Assumptions:

Work
- Tile tasks: each group's loop nest is unrolled at its outermost temporal level (DRAM); when that level's loops
  give fewer iterations than the chunks wanted, the next level's loops are unrolled too. Iterations are walked in
  loop order and coalesced into chunks (contiguous runs of iterations) so that the simulation holds at most about
  `max_tasks` tasks. Chunks follow the loops: whole iterations of the outer loops, the next loop split into equal
  parts, so a chunk never straddles two iterations of an outer loop. Per chunk, each Einsum is one compute task
  plus its read and write transfers.
- Compute of an Einsum in a chunk = its analytical compute cycles (op counts x the unit's cycles per op / lanes
  used, from `analytical.evaluate`) x the share of its executions that fall in the chunk, at the clock. An Einsum
  executes once per iteration of the loops over its own ranks; a loop over a rank it does not iterate runs it once,
  at that loop's last index when an Einsum of the group it reads iterates the rank (AV after the M1 recurrence),
  else at the first.
- Traffic per tensor per level is the analytical model's (loop-order reuse, spills). A tile moves at the
  iterations where it changes: a read at the first index of the loops inside the innermost loop that indexes the
  tensor (stationary tiles are reused), a write at their last. A tensor's bytes at a level are split evenly among
  the roles the group's Einsums take on it (reading it, writing it, or a tensor written over it in place): a read
  moves before its reader computes, a write after its writer.
- Dependencies: the cascade's producer -> consumer edges (`dependency_dag`) within a chunk. Across chunks, an
  Einsum runs its chunks in loop order, and a loop-carried read (recurrence state) waits for the writer's previous
  chunk.
- Double buffering, as the analytical model assumes for every tile (the mapping's `double_buffered` only sets
  what counts twice against capacity there), counted in the tiles the loops move, not in chunks: each Einsum has
  `buffers` input and `buffers` output buffers. A tile read at chunk r_k is in use until the next read of that
  tensor; the read of tile k starts once tile k - `buffers` is no longer used (reads in every chunk: once chunk
  c - `buffers` has computed), so a tile the outer loops keep for many chunks (a block of rows of X, a whole
  weight) is fetched while the previous one is in use. An Einsum hands its output on in the chunks where it
  writes it out or a consumer in the group runs; there its compute waits until the hand-off `buffers` hand-offs
  back has been written out and read by its consumers. In the other chunks it only accumulates partial results
  (FFN1's passes over D before the last) where the analytical model keeps them. So transfers overlap compute,
  and no unit runs more than `buffers` hand-offs ahead of the units it feeds. The capacity check stays the
  analytical model's.
- Groups run one after another, as the mapping says: a group's first chunks wait until the previous group has
  drained.

Overlap policy (`archsim.mapping.spec`), honoured as a schedule, not as a formula:
- `max`: the Einsums overlap freely; only data, the units and the buffers order them.
- a pipeline expression: the group runs in steps, each step the expression once over one tile per Einsum.
  `a + b` runs b's tiles once a's are done, `max(a, b)` runs them side by side, and the next step starts when
  this one has ended. An Einsum that reads a tile from an Einsum placed after it in the expression works one step
  behind (a skew, from the cascade's edges): FuseMax's waterfall `max(QK+LM, RD+RNV+AV) + ...` runs RD, RNV and
  AV of tile t beside QK and LM of tile t + 1. Any other term (+Arch's `M0*LM`, a number) is a stall: a delay of
  that many cycles, for the step's tiles of the Einsums in it (a term without Einsums: once per group, spread
  over the chunks), during which the step holds no unit; its idle time is blamed on "pipeline stall <term>".
- `sequential`: the pipeline expression of the Einsums summed in cascade order (none overlaps another).
  Einsums the expression leaves out run as under `max`. Each step's time is the expression over its tiles, so the
  group's compute tends to the analytical value, above it where Einsums' shares of a chunk differ (AV runs only at
  the last key tile).

Hardware
- A compute unit is a `simpy.PriorityResource` of capacity 1: the whole array runs one Einsum tile at a time and,
  of the tiles ready when it frees, takes the oldest (earliest chunk or step, then cascade order): a software pipeline
  drains a tile before it starts the next, as FuseMax's waterfall does. A unit never waits for an older tile that
  is not ready yet (the schedule is work-conserving).
- A memory level with a bandwidth is a channel (`simpy.Resource`, capacity 1) that a transfer holds for
  bytes / bandwidth, first come, first served; the reads and writes of every Einsum and unit of a group share it.
  A level without a bandwidth never stalls. A transfer through several levels with a bandwidth moves level by
  level (reads outermost first, writes innermost first).

Outputs
- Latency is when the last task ends; utilization = busy lane-cycles on each unit / (lanes x latency cycles);
  `memory_s` = the time each channel was held. Energy, traffic, footprint, area, compute cycles and feasibility
  are the analytical model's, except leakage, charged over the simulated latency.
- Stalls: every idle gap of a compute unit (before its first tile, between tiles, after its last) is blamed on the
  critical path into the tile that ends it (or into the end of the run): walking back, each task's time on its
  resource is charged to its source, "<level> bandwidth" for a transfer, "waiting on <Einsum>" for a compute
  tile, "pipeline stall <term>" for a stall term of the overlap expression, and before it started the task
  waited either for its resource (the previous holder is next on the path: contention) or for its last-finishing
  dependency. Per unit, busy + stalls = latency; `stalls` sums the units' (unit-seconds), `unit_stalls` keeps
  them apart.

What it sees that the analytical model cannot: contention, where transfers of different Einsums and units queue on
one channel so a tile's data arrives late although the level's total time is below the group's; pipeline fill and
drain (the first tiles' reads come before any compute, the last tiles' writes after it, a unit downstream of
another idles until the first tile reaches it; a GEMM whose outer loop moves 1.5 MiB row blocks pays one block in
and one out per group, 1-2 % at BERT-base sizes); and dependency stalls between units that a `max` or pipeline
overlap formula assumes away. With enough chunks, a group's time tends to the analytical max(compute, transfers)
plus about one tile of fill and drain.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import simpy

from archsim.arch.spec import Architecture, Memory
from archsim.cascade import syntax as S
from archsim.cascade.analysis import Analysis, dependency_dag
from archsim.cascade.bind import Binding
from archsim.cascade.passes import refs_of
from archsim.errors import SpecError
from archsim.mapping.resolve import group_ranks, resolve_group
from archsim.mapping.spec import Group, Loop, Mapping
from archsim.model.analytical import evaluate, pipeline_cycles
from archsim.model.result import Result

READ, WRITE = "read", "write"


@dataclass(frozen=True)
class Span:
    """One task on one resource (a compute unit or a memory channel), for the timeline and the trace."""

    resource: str
    name: str
    start_s: float
    end_s: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRun:
    result: Result
    timeline: tuple[Span, ...]
    stalls: dict[str, float]  # stall source -> unit-seconds idle, summed over the compute units
    unit_stalls: dict[str, dict[str, float]]  # unit -> stall source -> seconds idle
    events: int  # SimPy events processed


@dataclass(eq=False)
class _Task:
    """A tile task while the simulation builds and runs it (mutable timing, internal to the engine)."""

    name: str
    resource: str | None  # None: a marker that only joins dependencies
    source: str  # what a unit waiting on this task waits on
    duration_s: float
    deps: list[_Task]
    args: dict[str, Any] = field(default_factory=dict)
    ready_s: float = 0.0
    start_s: float = 0.0
    end_s: float = 0.0
    last: _Task | None = None  # the dependency that finished last
    blocker: _Task | None = None  # the task that held the resource while this one waited for it
    done: simpy.Event | None = None


@dataclass(frozen=True)
class _Nest:
    """The unrolled outer loops of a group and their chunks: chunk c is iterations bounds[c] .. bounds[c+1]-1."""

    loops: tuple[Loop, ...]
    bounds: np.ndarray

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1


def simulate(binding: Binding, analysis: Analysis, arch: Architecture, mapping: Mapping, *,
             max_tasks: int = 4000, buffers: int = 2) -> EventRun:
    """Simulate `mapping` of the bound cascade on `arch` (every `search` factor filled, as `point.prepare` does).
    `max_tasks` bounds the tile tasks (chunk size follows); `buffers` tiles of each tensor read and of each
    Einsum's output may be in flight. Raises SpecError for an overlap expression that orders Einsums against
    their data (no step schedule honours it)."""
    total = evaluate(binding, analysis, arch, mapping)
    parts = [evaluate(binding, analysis, arch, mapping, only_group=i) for i in range(len(mapping.groups))]
    groups = [resolve_group(binding, arch, g, mapping.source, f"groups[{i}]") for i, g in enumerate(mapping.groups)]
    tasks: list[_Task] = []
    previous: _Task | None = None
    for i, (group, part) in enumerate(zip(groups, parts, strict=True)):
        where = (mapping.source, f"groups[{i}].overlap")
        group_tasks = _group_tasks(binding, arch, group, part, max(1, max_tasks // len(groups)), buffers, previous,
                                   where)
        tasks += group_tasks
        previous = group_tasks[-1]
    events = _run(arch, tasks)
    return _collect(arch, total, parts, tasks, events)


# --- building the tasks -------------------------------------------------------------------------------------------

def _group_tasks(binding: Binding, arch: Architecture, group: Group, part: Result, task_budget: int, buffers: int,
                 previous: _Task | None, where: tuple[str, str]) -> list[_Task]:
    """The tile tasks of one group, chunk by chunk (step by step under a pipeline expression), ending with the
    marker of the group's end."""
    levels = [m.name for m in arch.memories]
    level_of = {name: i for i, name in enumerate(levels)}
    channels = [m for m in arch.memories if m.bandwidth_bytes_per_s]
    space = group_ranks(binding, group)
    preds, carried = _group_edges(binding, group)
    streams = _transfer_streams(binding, group, part, level_of, channels)
    per_chunk = len(group.einsums) + len(streams)
    nest = _outer_nest(group.loops, level_of, max(1, task_budget // per_chunk))
    cycles = {e.name: e.compute_cycles for e in part.einsums}
    compute_s = {e: cycles[e] * _shares(nest, _exec_fixed(nest, space, preds, e)) / arch.clock_hz
                 for e in group.einsums}
    shares = {key: [(mv, _shares(nest, _move_fixed(nest, space, preds, level_of, mv))) for mv in moves]
              for key, moves in streams.items()}
    moved = {key: sum(mv.bytes_ * share for mv, share in per_move) for key, per_move in shares.items()}
    position = {e.name: i for i, e in enumerate(binding.cascade.einsums)}
    order = sorted(group.einsums, key=position.__getitem__)  # producers before consumers
    consumers = {e: [x for x in order if e in preds[x]] for e in order}
    read_free = {e: _read_free(nest.chunks, [s for (x, _, d), per in shares.items() if x == e and d == READ
                                             for _, s in per], buffers) for e in order}
    handoffs = {e: _handoffs(nest.chunks, e, moved, [compute_s[x] for x in consumers[e]]) for e in order}
    plan = _overlap_plan(group, order, preds, carried, where)
    skew = plan.skew if plan else dict.fromkeys(order, 0)

    tasks: list[_Task] = []
    compute = {(e, c): _Task(f"{e}[{c}]", group.binding[e], f"waiting on {e}", float(compute_s[e][c]), [],
                             {"group": group.name, "einsum": e, "chunk": c,
                              "cycles": float(compute_s[e][c] * arch.clock_hz)})
               for e in order for c in range(nest.chunks)}
    written: dict[tuple[str, int], _Task] = {}  # the last task of an Einsum's chunk (its compute or last write)
    barrier = [previous] if previous is not None else []
    steps = nest.chunks + max(skew.values())
    for step in range(steps):
        for e in order:
            c = step - skew[e]
            if not 0 <= c < nest.chunks:
                continue
            task, args = compute[(e, c)], {"group": group.name, "einsum": e, "chunk": c}
            # Double buffering: e's input buffer takes a tile once e has used the tile `buffers` tiles back.
            free = int(read_free[e][c])
            reads = _transfers(moved, channels, e, c, READ, [compute[(e, free)]] if free >= 0 else barrier, args)
            task.deps += [*reads[-1:], *(compute[(p, c)] for p in preds[e])]
            task.deps += [compute[(w, c - 1)] for w in (e, *carried[e]) if c]
            # ... and its output buffer takes a tile once the hand-off `buffers` hand-offs back has been written
            # out and read by its consumers.
            handed = handoffs[e]
            i = int(np.searchsorted(handed, c))
            if i < len(handed) and handed[i] == c and i >= buffers:
                old = int(handed[i - buffers])
                task.deps += [written[(e, old)], *(compute[(x, old)] for x in consumers[e])]
            if not task.deps:
                task.deps = list(barrier)
            writes = _transfers(moved, channels[::-1], e, c, WRITE, [task], args)
            written[(e, c)] = (writes or [task])[-1]
            tasks += [*reads, task, *writes]
    if plan:
        tasks += _order_steps(plan, group, compute, compute_s, nest.chunks, steps, arch.clock_hz, previous,
                              binding.rank_sizes)
    tasks.append(_Task(f"{group.name} done", None, "", 0.0, list(tasks)))
    return tasks


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


def _transfers(moved: dict[tuple[str, str, str], np.ndarray], channels: Sequence[Memory], einsum: str, chunk: int,
               direction: str, deps: list[_Task], args: dict[str, Any]) -> list[_Task]:
    """An Einsum's reads (or writes) of one chunk, level by level in the order of `channels`, each after the last."""
    chain: list[_Task] = []
    for m in channels:
        moved_bytes = float(moved[(einsum, m.name, direction)][chunk]) if (einsum, m.name, direction) in moved else 0.0
        if moved_bytes > 0:
            chain.append(_Task(f"{direction} {einsum}[{chunk}]", m.name, f"{m.name} bandwidth",
                               moved_bytes / m.bandwidth_bytes_per_s, chain[-1:] or deps,
                               {**args, "bytes": moved_bytes}))
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


def _outer_nest(loops: Sequence[Loop], level_of: dict[str, int], chunks_wanted: int) -> _Nest:
    """The temporal loops of the outermost level (and of the next ones while they give fewer iterations than
    `chunks_wanted`), in loop order, and the chunk bounds over their iterations. Chunks follow the loops: whole
    iterations of the outer loops while their count stays within `chunks_wanted`, then each of those split
    evenly along the next loop, so no chunk straddles two iterations of an outer loop (FFN1's reduction passes
    over D stay apart: a chunk either hands finished rows on or only accumulates). The split takes equal parts
    (a divisor of the loop's factor) unless no divisor comes within half of the parts wanted."""
    temporal = [lp for lp in loops if not lp.is_spatial]
    nest: list[Loop] = []
    for level in sorted({level_of[lp.level] for lp in temporal}):
        if nest and math.prod(lp.factor for lp in nest) >= chunks_wanted:
            break
        nest += [lp for lp in temporal if level_of[lp.level] == level]
    factors = [int(lp.factor) for lp in nest]
    iterations = math.prod(factors)
    count = 1  # whole iterations of the loops taken so far
    for j, factor in enumerate(factors):
        if count * factor > chunks_wanted:
            limit = max(1, chunks_wanted // count)
            parts = max(d for d in range(1, limit + 1) if factor % d == 0)  # equal parts where a divisor fits
            parts = limit if 2 * parts <= limit else parts
            outer = np.arange(count, dtype=np.int64)[:, None] * factor
            starts = (outer + np.arange(parts, dtype=np.int64)[None, :] * factor // parts) * math.prod(factors[j + 1:])
            return _Nest(tuple(nest), np.append(starts.ravel(), iterations))
        count *= factor
    return _Nest(tuple(nest), np.arange(iterations + 1, dtype=np.int64))


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
    tensor_ranks: frozenset[str]
    child: int
    bytes_: float


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
            roles = [(e, WRITE) for e in group.einsums if cascade.einsum(e).output.tensor in storage]
            roles += [(e, READ) for e in group.einsums
                      if storage & {r.tensor for r in refs_of(cascade.einsum(e))}]
            owner = over.get(tensor, tensor)
            kept = [level_of[lv] for lv, ts in group.keep.items() if owner in ts and level_of[lv] > level_of[m.name]]
            child = min(kept, default=len(level_of))
            ranks = frozenset(cascade.tensors[tensor].leaf_ranks)
            for e, direction in roles:
                streams[(e, m.name, direction)].append(_Move(e, direction, ranks, child, total_bytes / len(roles)))
    return dict(streams)


def _shares(nest: _Nest, fixed: dict[int, int]) -> np.ndarray:
    """Fraction of the moves (or executions) that fall in each chunk, given the loop indices they happen at."""
    counts = _count_below(nest.bounds, [lp.factor for lp in nest.loops], fixed)
    return np.diff(counts) / counts[-1]


def _move_fixed(nest: _Nest, space: dict[str, set[str]], preds: dict[str, list[str]], level_of: dict[str, int],
                move: _Move) -> dict[int, int]:
    """The reuse rule of `archsim.model.reuse` on the unrolled loops: a tile moves when a loop above its level over
    one of its ranks steps; the loops of the Einsum inside the innermost such loop reuse it (read at their first
    index, written at their last)."""
    fixed = _exec_fixed(nest, space, preds, move.einsum)
    loops = nest.loops
    own = [j for j, lp in enumerate(loops) if lp.rank in space[move.einsum]]
    indexing = [j for j in own if loops[j].rank in move.tensor_ranks and level_of[loops[j].level] < move.child]
    after = indexing[-1] if indexing else -1
    for j in own:
        if j > after:
            fixed[j] = 0 if move.direction == READ else loops[j].factor - 1
    return fixed


def _count_below(xs: np.ndarray, radices: Sequence[int], fixed: dict[int, int]) -> np.ndarray:
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


def _order_steps(plan: _Plan, group: Group, compute: dict[tuple[str, int], _Task], compute_s: dict[str, np.ndarray],
                 chunks: int, steps: int, clock_hz: float, previous: _Task | None,
                 rank_sizes: dict[str, int]) -> list[_Task]:
    """Add the expression's order to the compute tasks, step after step: `a + b` runs b's tiles once a's are
    done, `max(a, b)` runs them side by side; any other term (`M0*LM`, a number) is a stall of that many cycles,
    for the Einsums' tiles of the step (a term without Einsums: once per group, spread over the chunks). Returns
    the markers and stalls it adds."""
    added: list[_Task] = []

    def tile(e: str, step: int) -> int | None:
        c = step - plan.skew[e]
        return c if 0 <= c < chunks else None

    def build(node: S.Expr, step: int, start: _Task | None) -> _Task | None:
        match node:
            case S.Name(name=name) if id(node) in plan.scheduled:
                c = tile(name, step)
                if c is None:
                    return start
                task = compute[(name, c)]
                task.deps += [start] if start is not None else []
                return task
            case S.BinOp(op="+", lhs=lhs, rhs=rhs):
                return build(rhs, step, build(lhs, step, start))
            case S.Call(fn="max", args=args):
                ends = list(dict.fromkeys(build(a, step, start) for a in args))
                if len(ends) == 1:
                    return ends[0]
                added.append(_Task(f"{group.name} step {step}", None, "", 0.0, [e for e in ends if e]))
                return added[-1]
        einsums = {n.name for n in S.walk(node) if isinstance(n, S.Name) and n.name in group.binding}
        if einsums:
            at = {e: tile(e, step) for e in einsums}
            cycles = pipeline_cycles(node, {**rank_sizes, **{e: 0.0 if c is None else float(compute_s[e][c]) * clock_hz
                                                      for e, c in at.items()}})
        else:
            cycles = pipeline_cycles(node, dict(rank_sizes)) / chunks if step < chunks else 0.0
        if cycles <= 0:
            return start
        text = _text(node)
        added.append(_Task(f"stall {text}[{step}]", None, f"pipeline stall {text}", cycles / clock_hz,
                           [start] if start is not None else [], {"group": group.name, "cycles": cycles}))
        return added[-1]

    end = previous
    for step in range(steps):
        end = build(plan.expr, step, end)
    return added


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


# --- running -------------------------------------------------------------------------------------------------------

def _run(arch: Architecture, tasks: list[_Task]) -> int:
    """Run every task to completion; returns the number of events processed."""
    env = simpy.Environment(initial_time=0.0)
    resources = {u.name: simpy.PriorityResource(env, capacity=1) for u in arch.units}
    resources.update({m.name: simpy.Resource(env, capacity=1) for m in arch.memories if m.bandwidth_bytes_per_s})
    for task in tasks:
        task.done = env.event()
    holders: dict[str, _Task] = {}  # resource -> the last task that released it
    for age, task in enumerate(tasks):
        env.process(_task_process(env, task, resources.get(task.resource) if task.resource else None, age, holders))
    events = 0
    while env.peek() < math.inf:
        env.step()
        events += 1
    stuck = [t for t in tasks if not t.done.triggered]
    if stuck:  # an engine fault, not a property of the design point: the dependencies formed a cycle
        raise RuntimeError(f"event model: {len(stuck)} tasks never became ready, first {stuck[0].name}")
    return events


def _task_process(env: simpy.Environment, task: _Task, resource: simpy.Resource | None, age: int,
                  holders: dict[str, _Task]) -> Iterator[simpy.Event]:
    """Wait for the dependencies, then hold the resource for the task's duration. A unit serves the oldest waiting
    task first (tasks are numbered chunk by chunk), a channel the first to ask. The resource is released one
    zero-time step after the task ends, so that tasks made ready by this one's end compete for it too."""
    for dep in task.deps:
        yield dep.done
    task.ready_s = env.now
    task.last = max(task.deps, key=lambda d: d.end_s, default=None)
    if resource is not None and task.duration_s > 0:
        priority = {"priority": age} if isinstance(resource, simpy.PriorityResource) else {}
        with resource.request(**priority) as request:
            yield request
            task.start_s = env.now
            if task.start_s > task.ready_s:
                task.blocker = holders[task.resource]
            yield env.timeout(task.duration_s)
            task.end_s = env.now
            task.done.succeed()
            yield env.timeout(0)
            holders[task.resource] = task
    else:
        task.start_s = env.now
        if task.duration_s > 0:  # a stall of a pipeline expression: time passes, no resource is held
            yield env.timeout(task.duration_s)
        task.end_s = env.now
        task.done.succeed()


# --- results -------------------------------------------------------------------------------------------------------

def _collect(arch: Architecture, total: Result, parts: list[Result], tasks: list[_Task], events: int) -> EventRun:
    latency_s = max(t.end_s for t in tasks)
    held = [t for t in tasks if t.resource is not None and t.end_s > t.start_s]
    timeline = tuple(Span(t.resource, t.name, t.start_s, t.end_s, t.args) for t in held)
    lanes_used = {(e.group, e.name): e.lanes_used for p in parts for e in p.einsums}
    busy_lane_cycles: Counter[str] = Counter()
    memory_s: Counter[str] = Counter()
    units = {u.name for u in arch.units}
    for t in held:
        if t.resource in units:
            key = (t.args["group"], t.args["einsum"])
            busy_lane_cycles[t.resource] += (t.end_s - t.start_s) * arch.clock_hz * lanes_used[key]
        else:
            memory_s[t.resource] += t.end_s - t.start_s
    unit_stalls = _unit_stalls(arch, tasks, held, latency_s)
    stalls: Counter[str] = Counter()
    for per_unit in unit_stalls.values():
        stalls.update(per_unit)
    cycles = latency_s * arch.clock_hz
    scale = latency_s / total.latency_s if total.latency_s else 0.0
    leaks = {(m.name, "leak") for m in arch.memories}
    energy_by = {k: v * scale if k in leaks else v for k, v in total.energy_by.items()}
    result = replace(
        total, latency_s=latency_s, memory_s=dict(memory_s), energy_by=energy_by,
        energy_pj=sum(energy_by.values()),
        utilization={u.name: busy_lane_cycles[u.name] / (u.lanes * cycles) if cycles else 0.0 for u in arch.units},
        stalls=dict(stalls),
    )
    return EventRun(result, timeline, dict(stalls), unit_stalls, events)


def _unit_stalls(arch: Architecture, tasks: list[_Task], held: list[_Task],
                 latency_s: float) -> dict[str, dict[str, float]]:
    """Each compute unit's idle gaps, blamed on the critical path into the tile that ends the gap (or the end)."""
    final = max(tasks, key=lambda t: t.end_s)
    out = {}
    for unit in arch.units:
        blame: Counter[str] = Counter()
        free_s = 0.0
        for t in sorted((t for t in held if t.resource == unit.name), key=lambda t: t.start_s):
            if t.start_s > free_s:
                _blame_path(blame, t, t.start_s, free_s)
            free_s = t.end_s
        if latency_s > free_s:
            _blame_path(blame, final, latency_s, free_s)
        out[unit.name] = dict(blame)
    return out


def _blame_path(blame: Counter[str], task: _Task | None, until_s: float, since_s: float) -> None:
    """Walk the critical path back from `task` (which ended at `until_s`) down to `since_s`: each task's time on
    its resource is charged to its source; before that it waited either for its resource (the previous holder is
    next on the path) or for its last-finishing dependency."""
    t = until_s
    while task is not None and t > since_s:
        low = max(task.start_s, since_s)
        if t > low and task.source:
            blame[task.source] += t - low
        t = low
        task = task.blocker if task.blocker is not None else task.last
