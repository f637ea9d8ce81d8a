"""The event model: a mapping's tiles as tasks competing for compute units and memory channels. Specs in,
`EventRun` (a `Result`, its timeline and the sources of its stalls) out.

Follows DESIGN.md §5 (event model): the same tiles as the analytical model (`archsim.model.analytical`), run as
tasks with dependencies on resources served as SimPy serves them. Assumptions:

Work
- Tile tasks: each group's loop nest is unrolled at its outermost temporal level (DRAM); when that level's loops
  give fewer iterations than the chunks wanted, the next level's loops are unrolled too, but only those over a rank
  that every Einsum of the group iterates and indexes its output by: the unrolling stops at a reduction loop or at
  a loop some Einsum does not iterate, fewer chunks rather than Einsums with unequal shares of a chunk (FuseMax's
  head-dim loop E, QK's reduction, cut in 4 ran QK in every quarter and LM, SLN, SLD and SLNV in one: +46 % at
  2048 tokens, one head, against a one-tile fill and drain of +8.4 %). Iterations are walked in
  loop order and coalesced into chunks (contiguous runs of iterations) so that the simulation holds about
  `max_tasks` tasks. Chunks follow the loops: whole iterations of the outer loops, the next loop split into equal
  parts, so a chunk never straddles two iterations of an outer loop. The parts are equal (a divisor of that loop's
  factor) even at half or twice the chunks wanted (so up to about twice `max_tasks` tasks): a pipeline's skewed
  step runs chunk c - 1 of some Einsums beside chunk c of the others and waits for the larger, so chunks of
  unequal size stall the pipeline where the design does not (11 key tiles cut into 7 chunks of 1 and 2 tiles put
  FuseMax 12.7 % above the analytical model). Unequal parts, the larger first, only where no divisor fits
  (`event_tasks._split`). Per chunk, each Einsum is one compute task plus its read and write transfers.
- Compute of an Einsum in a chunk = its analytical compute cycles (op counts x the unit's cycles per op / lanes
  used, from `analytical.evaluate`) x the share of its executions that fall in the chunk, at the clock. An Einsum
  executes once per iteration of the loops over its own ranks; a loop over a rank it does not iterate runs it once,
  at that loop's last index when an Einsum of the group it reads iterates the rank (AV after the M1 recurrence),
  else at the first.
- Traffic per tensor per level is the analytical model's (loop-order reuse, spills). A tile moves at the
  iterations where it changes: once per iteration of the loops down to the innermost loop that indexes the
  tensor, whether the chunks unroll that loop or not (FLAT's K, re-read per key tile of a GlobalBuffer loop under
  the DRAM loop of row blocks, is read in every chunk, its share of each: held from the first chunk it read a
  64K-token run's 2.1 GB there); a read at the first index of the unrolled loops inside that innermost loop (a
  stationary tile, reused), a write at their last. A tensor's bytes at a level are split evenly among
  the roles the group's Einsums take on it (reading it, writing it, or a tensor written over it in place): a read
  moves before its reader computes, a write after its writer. A tensor that an Einsum of the group writes to the
  level (an intermediate spilled there, or written over in place) is read there after it is written: the shares
  match in order, the reads through chunk c waiting for the producer's write that brings the written share up to
  theirs (the same tile), and a read that the rule above puts in an earlier chunk than that write (read at the
  first index of a loop the chunks cut, written at its last: flat-offchip's QK tile, staged in the global buffer
  over 4 row tiles) moves to the write's chunk (`event_tasks._reads_after_writes`). The cascade's inputs are there
  from the start.
- Dependencies: the cascade's producer -> consumer edges (`dependency_dag`) within a chunk, and a read of an
  intermediate after its producer's write of the same share to that level. Across chunks, an Einsum runs its
  chunks in loop order, and a loop-carried read (recurrence state) waits for the writer's previous chunk.
- Double buffering, as the analytical model assumes for every tile (the mapping's `double_buffered` only sets
  what counts twice against capacity there), counted in the tiles the loops move, not in chunks: each Einsum has
  `buffers` input buffers per tensor it reads and `buffers` output buffers. A tile read at chunk r_k is in use
  until the next read of that tensor; the read of tile k starts once tile k - `buffers` of that tensor is no
  longer used (reads in every chunk: once chunk c - `buffers` has computed), so a tile the outer loops keep for
  many chunks (a block of rows of X, a whole weight, FuseMax's Q of a head group) is fetched while the previous
  one is in use, not held back by a tensor read beside it that changes more often (the key tile); the tensors
  that one chunk frees read as one transfer. An Einsum hands its output on in the chunks where it
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
- A compute unit is a resource of capacity 1 served by priority (`simpy.PriorityResource`'s rule): the whole
  array runs one Einsum tile at a time and, of the tiles ready when it frees, takes the oldest (earliest chunk or
  step, then cascade order): a software pipeline drains a tile before it starts the next, as FuseMax's waterfall
  does. A unit never waits for an older tile that is not ready yet (the schedule is work-conserving).
- A memory level with a bandwidth is a channel (capacity 1, `simpy.Resource`'s rule) that a transfer holds for
  bytes / bandwidth, first come, first served; the reads and writes of every Einsum and unit of a group share it.
  A level without a bandwidth never stalls. A transfer through several levels with a bandwidth moves level by
  level (reads outermost first, writes innermost first).
- Engine: the events and resources of SimPy (a process per task, `with resource.request(): yield
  timeout(duration)`, over `simpy.PriorityResource` units and `simpy.Resource` channels) without SimPy's objects:
  a task is a chain of callbacks on events popped in the order `simpy.Environment` pops its events of one
  priority, (time, schedule order): later times from a heap, the present time's from a FIFO after the heap's
  (`_Engine`), and the resources are the few lines of `_Resource`; the events and their order are those of the
  process per task, less each process's start and end (tests/test_event_speedup.py runs both with SimPy itself
  and finds every task's times equal). Why not SimPy's objects: a point has tens of thousands of tile events,
  and SimPy's Event, Timeout and Request objects per event made the engine 3-4x slower than this (issue 17's
  300,000 events/s); the serving simulator, with one event per iteration, keeps SimPy.

Outputs
- Latency is when the last task ends; utilization = busy lane-cycles on each unit / (lanes x latency cycles);
  `memory_s` = the time each channel was held; the timeline has a span per task that held a resource, a compute
  tile's args with its Einsum's `lanes_used` and its unit's `unit_lanes` (so the spans weigh into utilization).
  Energy, traffic, footprint, area, compute cycles and feasibility are the analytical model's, except leakage,
  charged over the simulated latency.
- Stalls: every idle gap of a compute unit (before its first tile, between tiles, after its last) is blamed on the
  critical path into the tile that ends it (or into the end of the run): walking back, each task's time on its
  resource is charged to its source, "<level> bandwidth" for a transfer, "waiting on <Einsum>" for a compute
  tile, "pipeline stall <term>" for a stall term of the overlap expression, and before it started the task
  waited either for its resource (the previous holder is next on the path: contention) or for its last-finishing
  dependency. A unit that runs no tile (the mapping binds no Einsum to it) waits on nothing: its whole latency is
  "no work mapped". Per unit, busy + stalls = latency; `stalls` sums the units' (unit-seconds), `unit_stalls`
  keeps them apart.

What it sees that the analytical model cannot: contention, where transfers of different Einsums and units queue on
one channel so a tile's data arrives late although the level's total time is below the group's; pipeline fill and
drain (the first tiles' reads come before any compute, the last tiles' writes after it, a unit downstream of
another idles until the first tile reaches it; a GEMM whose outer loop moves 1.5 MiB row blocks pays one block in
and one out per group, 1-2 % at BERT-base sizes); and dependency stalls between units that a `max` or pipeline
overlap formula assumes away. A group's time tends to the analytical max(compute, transfers) plus the fill and
drain of about one chunk: one tile where the chunks are tiles (a few query and key tiles); on a large problem,
where a chunk holds thousands of tiles, about half of one chunk's share of the run (FuseMax on BERT-base at 64K,
1M or 16M tokens: +0.75, +0.19, +0.06 % at `max_tasks` 1000, 4000, 16000, 64, 256, 768 chunks), so raise
`max_tasks` there to shrink it. Chunks coarser than a burst of traffic (a head group's output written at its last
key tile) smooth it: near a compute/memory knee the figure rises with `max_tasks` until a chunk is about a tile.
"""

from __future__ import annotations

import gc
import numbers
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from heapq import heappop, heappush
from itertools import count
from operator import attrgetter
from typing import Any

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.errors import LimitError, SpecError
from archsim.limits import env_limit
from archsim.mapping.spec import Mapping
from archsim.model.analytical import evaluate
from archsim.model.event_tasks import Task, tile_tasks
from archsim.model.result import Result
from archsim.model.trace import Span

_END_S, _START_S = attrgetter("end_s"), attrgetter("start_s")
NO_WORK_MAPPED = "no work mapped"  # the stall source of a compute unit that runs no tile
# simulate's max_tasks at most: a task is about 1 KB and 5 events (~10 us), and a run holds up to twice max_tasks
MAX_TASKS, MAX_TASKS_ENV = 2**20, "ARCHSIM_MAX_EVENT_TASKS"


@dataclass(frozen=True)
class EventRun:
    """What `simulate` returns: the Result, the timeline of spans, each unit's idle seconds by stall source, and the
    number of events processed."""

    result: Result
    timeline: tuple[Span, ...]
    unit_stalls: dict[str, dict[str, float]]  # unit -> stall source -> seconds idle
    events: int  # events processed (a SimPy run's, less each task process's start and end)

    @property
    def stalls(self) -> dict[str, float]:
        """Stall source -> unit-seconds idle, summed over the compute units (the Result's)."""
        return self.result.stalls


def simulate(binding: Binding, analysis: Analysis, arch: Architecture, mapping: Mapping, *,
             max_tasks: int = 4000, buffers: int = 2) -> EventRun:
    """Simulate `mapping` of the bound cascade on `arch` (every `search` factor filled, as `point.prepare` does).
    `max_tasks` sets about how many tile tasks (chunk size follows; up to twice as many where that keeps the
    chunks equal, fewer where the loops the chunks may cut give fewer); `buffers` tiles of each tensor read and of
    each Einsum's output may be in flight. Raises SpecError for an overlap expression that orders Einsums against
    their data (no step schedule honours it), and for a `max_tasks` or `buffers` that is not a whole number >= 1
    (`_check_count`); LimitError for a `max_tasks` beyond `MAX_TASKS` (ARCHSIM_MAX_EVENT_TASKS). An infeasible
    point is not simulated: its run is the analytical Result, with its reason, and no timeline."""
    max_tasks, buffers = _check_count("max_tasks", max_tasks), _check_count("buffers", buffers)
    total = evaluate(binding, analysis, arch, mapping)
    if not total.feasible:  # nothing to time: the analytical record and its reason
        return EventRun(total, (), {}, 0)
    parts = [evaluate(binding, analysis, arch, mapping, only_group=i) for i in range(len(mapping.groups))]
    with without_cyclic_gc():
        tasks = tile_tasks(binding, arch, mapping, parts, max_tasks, buffers)
        events = run_tasks(arch, tasks)
        return _collect(arch, total, parts, tasks, events)


def _check_count(argument: str, value: object) -> int:
    """`value` of simulate's `argument` (max_tasks, buffers) as an int: a whole number >= 1 (a numpy integer
    too), else a SpecError naming it, not a count nobody gave (0 buffers indexed past the tiles; max_tasks 0, -1,
    True or 1.5 ran as 1). `max_tasks` beyond `MAX_TASKS` (ARCHSIM_MAX_EVENT_TASKS) is a LimitError: 10**9
    allocated until MemoryError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SpecError("<python>", f"simulate.{argument}", f"expected a whole number >= 1, got {value!r}")
    if argument == "max_tasks":
        limit = env_limit(MAX_TASKS_ENV, MAX_TASKS)
        if value > limit:
            why = "about 1 KB and 5 events a task, up to twice max_tasks of them"
            shown = (f"{limit} set by the environment variable {MAX_TASKS_ENV} ({why}; raise it there)"
                     if limit != MAX_TASKS else  # the user set the limit, and may not have given max_tasks
                     f"{limit} ({why}; raise it with the environment variable {MAX_TASKS_ENV})")
            raise LimitError("<python>", f"simulate.{argument}", f"{value} tasks, beyond the limit of {shown}")
    return int(value)


@contextmanager
def without_cyclic_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off (if it was on) for the block. The tile tasks are tens of thousands
    of objects that all live until the run is collected, so the collector's passes, triggered by their number,
    would walk them again and again and free nothing (~20-30 % of `simulate` on the benchmark point); reference
    counting still frees everything else, and cycles made meanwhile wait for the next pass after the block."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- running -------------------------------------------------------------------------------------------------------

class _Resource:
    """A capacity-1 resource: a unit serves its queue by age (`simpy.PriorityResource`), a channel first come, first
    served (`simpy.Resource`); `holder` is the last task that released it."""

    __slots__ = ("busy", "by_age", "holder", "queue")

    def __init__(self, by_age: bool) -> None:
        self.busy = False
        self.by_age = by_age
        self.holder: Task | None = None
        self.queue: list[tuple[int, Task]] | deque[Task] = [] if by_age else deque()


class _Engine:
    """SimPy's event queue and capacity-1 resources, cut to what the tasks use. Events are popped in the order of
    (time, schedule order), as `simpy.Environment.step` pops events of one priority (every event here is a NORMAL
    one: a task's done event, a timeout, a zero-time step). An event at a later time goes on a heap; one at the
    present time (a zero-time step, or a timeout that rounds to none) goes on a FIFO `soon`, popped after the
    heap's events at the present time (those were scheduled earlier, so come first in SimPy's order) and before
    time advances: the same order without a heap entry or a sequence number for the zero-time steps. A task's
    done event keeps its waiters until it is processed; a task holds its resource through the same steps as
    `simpy.Resource`: granted one zero-time event after the request reaches the head, released one zero-time
    event after the task ends, the head granted one zero-time event after that. No Event object, process or
    partial per step: one tuple per event."""

    __slots__ = ("heap", "now", "order", "soon")

    def __init__(self) -> None:
        self.now = 0.0
        self.heap: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self.soon: deque[tuple[Callable[[Any], None], Any]] = deque()
        self.order = count()

    def at(self, time_s: float, callback: Callable[[Any], None], argument: Any) -> None:
        if time_s == self.now:
            self.soon.append((callback, argument))
        else:
            heappush(self.heap, (time_s, next(self.order), callback, argument))

    def advance(self, task: Task) -> None:
        """Wait for the dependencies one after another (from the first not yet passed); once all are done, ask
        for the resource, or pass the time of a stall without one."""
        deps = task.deps
        i = task.waited
        n = len(deps)
        while i < n:
            dep = deps[i]
            i += 1
            if dep.waiters is not None:  # its done event is not processed yet: resume here once it is
                task.waited = i
                dep.waiters.append(task)
                return
        now = task.ready_s = self.now
        resource = task.held
        if resource is not None:
            if resource.by_age:
                heappush(resource.queue, (task.age, task))
            else:
                resource.queue.append(task)
            if not resource.busy:
                self.grant(resource)
            return
        task.start_s = now
        if task.duration_s > 0:  # a stall of a pipeline expression: time passes, no resource is held
            self.at(now + task.duration_s, self.stalled, task)
        else:
            task.end_s = now
            self.soon.append((self.done, task))

    def grant(self, resource: _Resource) -> None:
        queue = resource.queue
        if resource.busy or not queue:
            return
        resource.busy = True
        task = heappop(queue)[1] if resource.by_age else queue.popleft()
        self.soon.append((self.start, task))

    def start(self, task: Task) -> None:
        task.start_s = now = self.now
        if now > task.ready_s:
            task.blocker = task.held.holder
        end_s = now + task.duration_s
        if end_s == now:  # a duration below the clock's resolution at this time
            self.soon.append((self.end, task))
        else:
            heappush(self.heap, (end_s, next(self.order), self.end, task))

    def end(self, task: Task) -> None:
        task.end_s = self.now
        soon = self.soon
        soon.append((self.done, task))
        soon.append((self.release, task))

    def release(self, task: Task) -> None:
        resource = task.held
        resource.holder = task
        resource.busy = False
        self.soon.append((self.grant, resource))

    def stalled(self, task: Task) -> None:
        task.end_s = self.now
        self.soon.append((self.done, task))

    def done(self, task: Task) -> None:
        waiters, task.waiters = task.waiters, None
        advance = self.advance
        for waiter in waiters:
            advance(waiter)

    def run(self) -> int:
        """Pop events until none is left; returns how many."""
        heap, soon = self.heap, self.soon
        now, events = self.now, 0
        while True:
            if soon and not (heap and heap[0][0] == now):
                callback, argument = soon.popleft()
            elif heap:
                now, _, callback, argument = heappop(heap)
                self.now = now
            else:
                return events
            callback(argument)
            events += 1


def run_tasks(arch: Architecture, tasks: list[Task]) -> int:
    """Run every task to completion; returns the number of events processed.

    Each task walks its dependencies in order, then holds its resource for its duration: a unit serves the oldest
    waiting task first (tasks are numbered chunk by chunk), a channel the first to ask. The resource is released
    one zero-time step after the task ends, so that tasks made ready by this one's end compete for it too. The
    tasks are callbacks on events rather than processes: the same events in the same order as a SimPy process
    per task (`with resource.request(): yield timeout`), less each process's start and end
    (tests/test_event_speedup.py runs both)."""
    resources = {u.name: _Resource(by_age=True) for u in arch.units}
    resources.update({m.name: _Resource(by_age=False) for m in arch.memories if m.bandwidth_bytes_per_s})
    engine = _Engine()
    for age, task in enumerate(tasks):
        task.age, task.waited, task.waiters = age, 0, []
        task.held = resources.get(task.resource) if task.duration_s > 0 else None
    for task in tasks:
        engine.advance(task)
    events = engine.run()
    for resource in resources.values():  # no cycle left between tasks and resources: reference counting frees them
        resource.holder = None
    stuck = [t for t in tasks if t.waiters is not None]
    if stuck:  # an engine fault, not a property of the design point: the dependencies formed a cycle
        raise RuntimeError(f"event model: {len(stuck)} tasks never became ready, first {stuck[0].name}")
    return events


# --- results -------------------------------------------------------------------------------------------------------

def _collect(arch: Architecture, total: Result, parts: list[Result], tasks: list[Task], events: int) -> EventRun:
    final = max(tasks, key=_END_S)
    latency_s = final.end_s
    held = [t for t in tasks if t.end_s > t.start_s and t.resource is not None]
    lanes_used = {(e.group, e.name): e.lanes_used for p in parts for e in p.einsums}
    unit_lanes = {u.name: u.lanes for u in arch.units}
    timeline = tuple([_span(t, lanes_used, unit_lanes) for t in held])
    on_unit: dict[str, list[Task]] = {u.name: [] for u in arch.units}  # each unit's tiles in task order
    busy_lane_cycles: Counter[str] = Counter()
    memory_s: Counter[str] = Counter()
    clock_hz = arch.clock_hz
    for t in held:
        tiles = on_unit.get(t.resource)
        if tiles is not None:
            tiles.append(t)
            key = (t.args["group"], t.args["einsum"])
            busy_lane_cycles[t.resource] += (t.end_s - t.start_s) * clock_hz * lanes_used[key]
        else:
            memory_s[t.resource] += t.end_s - t.start_s
    unit_stalls = {unit: _unit_stalls(tiles, final, latency_s) for unit, tiles in on_unit.items()}
    stalls: Counter[str] = Counter()
    for per_unit in unit_stalls.values():
        stalls.update(per_unit)
    cycles = latency_s * clock_hz
    scale = latency_s / total.latency_s if total.latency_s else 0.0
    leaks = {(m.name, "leak") for m in arch.memories}
    energy_by = {k: v * scale if k in leaks else v for k, v in total.energy_by.items()}
    result = replace(
        total, latency_s=latency_s, memory_s=dict(memory_s), energy_by=energy_by,
        energy_pj=sum(energy_by.values()),
        utilization={u.name: busy_lane_cycles[u.name] / (u.lanes * cycles) if cycles else 0.0 for u in arch.units},
        stalls=dict(stalls),
    )
    return EventRun(result, timeline, unit_stalls, events)


def _span(task: Task, lanes_used: dict[tuple[str, str], int], unit_lanes: dict[str, int]) -> Span:
    """A held task's span. A compute tile's args also carry the lanes (PEs) its Einsum uses (`lanes_used`) and its
    unit's (`unit_lanes`), so a trace's reader can weigh its time as `utilization` does (busy lane-cycles over
    lanes x latency cycles): a unit busy the whole run with tiles on a quarter of its lanes is at 0.25."""
    lanes = unit_lanes.get(task.resource)
    if lanes is None:  # a transfer on a memory channel
        return Span(task.resource, task.name, task.start_s, task.end_s, task.args)
    used = lanes_used[task.args["group"], task.args["einsum"]]
    return Span(task.resource, task.name, task.start_s, task.end_s,
                {**task.args, "lanes_used": used, "unit_lanes": lanes})


def _unit_stalls(tiles: list[Task], final: Task, latency_s: float) -> dict[str, float]:
    """A compute unit's idle gaps (`tiles`: its tasks), blamed on the critical path into the tile that ends the gap
    (or into `final`, the task that ends the run at `latency_s`). A unit without tiles is not held up by the path:
    it idles the whole run for `NO_WORK_MAPPED`."""
    if not tiles:
        return {NO_WORK_MAPPED: latency_s} if latency_s > 0 else {}
    blame: Counter[str] = Counter()
    free_s = 0.0
    for t in sorted(tiles, key=_START_S):
        if t.start_s > free_s:
            _blame_path(blame, t, t.start_s, free_s)
        free_s = t.end_s
    if latency_s > free_s:
        _blame_path(blame, final, latency_s, free_s)
    return dict(blame)


def _blame_path(blame: Counter[str], task: Task | None, until_s: float, since_s: float) -> None:
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
