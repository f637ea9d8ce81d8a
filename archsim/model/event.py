"""The event model: a mapping's tiles as SimPy tasks competing for compute units and memory channels. Specs in,
`EventRun` (a `Result`, its timeline and the sources of its stalls) out.

Follows DESIGN.md §5 (event model): the same tiles as the analytical model (`archsim.model.analytical`), run as
tasks with dependencies on SimPy resources. Assumptions:

Work
- Tile tasks: each group's loop nest is unrolled at its outermost temporal level (DRAM); when that level's loops
  give fewer iterations than the chunks wanted, the next level's loops are unrolled too. Iterations are walked in
  loop order and coalesced into chunks (contiguous runs of iterations) so that the simulation holds at most about
  `max_tasks` tasks. Per chunk, each Einsum is one compute task plus its read and write transfers.
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
  what counts twice against capacity there): each Einsum has `buffers` input and `buffers` output buffers per
  chunk. Its reads of chunk c start once it has used chunk c - `buffers`; its compute of chunk c starts once the
  output of chunk c - `buffers` has been written out and read by its consumers. So the next chunks' transfers
  overlap this one's compute, and no unit runs more than `buffers` chunks ahead of the units it feeds. The buffers
  hold chunks, not single tiles: the capacity check stays the analytical model's.
- Groups run one after another, as the mapping says: a group's first chunks wait until the previous group has
  drained.

Hardware
- A compute unit is a `simpy.PriorityResource` of capacity 1: the whole array runs one Einsum tile at a time and,
  of the tiles ready when it frees, takes the oldest (earliest chunk, then cascade order): a software pipeline
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
  tile, and before it started the task waited either for its resource (the previous holder is next on the path:
  contention) or for its last-finishing dependency. Per unit, busy + stalls = latency; `stalls` sums the units'
  (unit-seconds), `unit_stalls` keeps them apart.

What it sees that the analytical model cannot: contention, where transfers of different Einsums and units queue on
one channel so a tile's data arrives late although the level's total time is below the group's; pipeline fill and
drain (the first chunk's reads come before any compute, the last chunk's writes after it, a unit downstream of
another idles until the first tile reaches it); and dependency stalls between units that a `max` or pipeline
overlap formula assumes away. With enough chunks, a group's time tends to the analytical max(compute, transfers)
plus about one chunk of fill and drain.
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
from archsim.cascade.analysis import Analysis, dependency_dag
from archsim.cascade.bind import Binding
from archsim.cascade.passes import refs_of
from archsim.mapping.resolve import group_ranks, resolve_group
from archsim.mapping.spec import Group, Loop, Mapping
from archsim.model.analytical import evaluate
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
    `max_tasks` bounds the tile tasks (chunk size follows); `buffers` chunks may be in flight per group."""
    total = evaluate(binding, analysis, arch, mapping)
    parts = [evaluate(binding, analysis, arch, mapping, only_group=i) for i in range(len(mapping.groups))]
    groups = [resolve_group(binding, arch, g, mapping.source, f"groups[{i}]") for i, g in enumerate(mapping.groups)]
    tasks: list[_Task] = []
    previous: _Task | None = None
    for group, part in zip(groups, parts, strict=True):
        group_tasks = _group_tasks(binding, arch, group, part, max(1, max_tasks // len(groups)), buffers, previous)
        tasks += group_tasks
        previous = group_tasks[-1]
    events = _run(arch, tasks)
    return _collect(arch, total, parts, tasks, events)


# --- building the tasks -------------------------------------------------------------------------------------------

def _group_tasks(binding: Binding, arch: Architecture, group: Group, part: Result, task_budget: int, buffers: int,
                 previous: _Task | None) -> list[_Task]:
    """The tile tasks of one group, chunk by chunk, ending with the marker of the group's end."""
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
    moved = {key: sum(mv.bytes_ * _shares(nest, _move_fixed(nest, space, preds, level_of, mv)) for mv in moves)
             for key, moves in streams.items()}
    position = {e.name: i for i, e in enumerate(binding.cascade.einsums)}
    order = sorted(group.einsums, key=position.__getitem__)  # producers before consumers
    consumers = {e: [x for x in order if e in preds[x]] for e in order}

    tasks: list[_Task] = []
    compute: dict[tuple[str, int], _Task] = {}
    written: dict[tuple[str, int], _Task] = {}  # the last task of an Einsum's chunk (its compute or last write)
    for c in range(nest.chunks):
        old = c - buffers
        for e in order:
            args = {"group": group.name, "einsum": e, "chunk": c}
            # Double buffering: e's input buffer is free once e has used chunk c - buffers, its output buffer once
            # that chunk's output has been written out and read by its consumers.
            barrier = [previous] if previous is not None and old < 0 else []
            reads = _transfers(moved, channels, e, c, READ, [compute[(e, old)]] if old >= 0 else barrier, args)
            deps = [*reads[-1:], *(compute[(p, c)] for p in preds[e])]
            deps += [compute[(w, c - 1)] for w in (e, *carried[e]) if c]
            if old >= 0:
                deps += [written[(e, old)], *(compute[(x, old)] for x in consumers[e])]
            task = _Task(f"{e}[{c}]", group.binding[e], f"waiting on {e}", float(compute_s[e][c]), deps or barrier,
                         {**args, "cycles": float(compute_s[e][c] * arch.clock_hz)})
            writes = _transfers(moved, channels[::-1], e, c, WRITE, [task], args)
            compute[(e, c)], written[(e, c)] = task, (writes or [task])[-1]
            tasks += [*reads, task, *writes]
    tasks.append(_Task(f"{group.name} done", None, "", 0.0, list(tasks)))
    return tasks


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
    `chunks_wanted`), in loop order, and the chunk bounds over their iterations."""
    temporal = [lp for lp in loops if not lp.is_spatial]
    nest: list[Loop] = []
    for level in sorted({level_of[lp.level] for lp in temporal}):
        if nest and math.prod(lp.factor for lp in nest) >= chunks_wanted:
            break
        nest += [lp for lp in temporal if level_of[lp.level] == level]
    iterations = math.prod(lp.factor for lp in nest)
    chunks = min(iterations, chunks_wanted)
    return _Nest(tuple(nest), np.arange(chunks + 1, dtype=np.int64) * iterations // chunks)


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
        task.start_s = task.end_s = env.now
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
