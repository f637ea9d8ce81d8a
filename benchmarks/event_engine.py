"""Speed of the event model (prints figures; not a timed test - these machines are shared and noisy).

One FuseMax attention point (BERT-base, 16K tokens), mapping already searched, in CPU seconds of this process
(`time.process_time`, best of REPEATS): the time of `simulate` (the two analytical evaluations it calls included)
and of its parts (building the tile tasks, running them, collecting the Result), SimPy events processed per second
of the whole call and of the run alone, tile tasks (spans) per second, and the latency against the analytical
model's. The parts are timed with the cyclic garbage collector off, as `simulate` runs them.

Target (issue 17): the event model at >= 300,000 SimPy events/s. Earlier engines are not kept (each ran the same
events in the same order, tests/test_event_speedup.py). Measured on this 2-core machine, which is shared: CPU
times swing 2x with the neighbours' load, so compare figures taken in one sitting. A SimPy process per task: 300
ms per point, 29,190 events (97,000/s). Callbacks on SimPy events: 77 ms per point, 258,000 events/s of simulate.
One heap ordered as SimPy's queue, task building compiled: 40 ms on a quiet machine (502,000/s), 60-105 ms per
point (190,000-330,000/s; built in 19-34 ms, run in 28-54 ms) in the sitting below. The present engine
(zero-time events on a FIFO beside the heap, the cyclic GC off during `simulate` and no reference cycle left to
keep the tasks alive, a task's last dependency found only on the stall walk, slotted resources and Spans),
alternating with the previous one, four runs each (2026-12-03): 41-69 ms per point, median ~55 ms (previous
engine: median ~97 ms); 288,000-482,000 events/s of simulate (previous 201,000-333,000), built in 14-28 ms, run in
15-23 ms (860,000-1,320,000 events/s of the run alone). Same 19,970 events, same latency to the bit (466.060 ms,
analytical 465.166 ms).
The time per point is printed as a multiple of `reference.py`'s workload too (timed first in this process), the
figure that compares across sittings.
Run: .venv/bin/python benchmarks/event_engine.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from reference import Reference

from archsim.model.analytical import evaluate
from archsim.model.event import run_tasks, simulate, without_cyclic_gc
from archsim.model.event_tasks import Task, tile_tasks
from archsim.point import prepare

REPEATS = 7


def _best_s(call: Callable[[], object]) -> float:
    times_s = []
    for _ in range(REPEATS):
        start = time.process_time()
        call()
        times_s.append(time.process_time() - start)
    return min(times_s)


def main() -> None:
    reference = Reference.measure()
    print(reference.line())
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 16384})
    binding, analysis, arch, mapping = point.binding, point.analysis, point.arch, point.mapping
    analytical = evaluate(binding, analysis, arch, mapping)
    parts = [evaluate(binding, analysis, arch, mapping, only_group=i) for i in range(len(mapping.groups))]

    def build() -> list[Task]:
        with without_cyclic_gc():  # as simulate builds and runs them
            return tile_tasks(binding, arch, mapping, parts, 4000, 2)

    def build_and_run() -> int:
        with without_cyclic_gc():
            return run_tasks(arch, tile_tasks(binding, arch, mapping, parts, 4000, 2))

    build_s = _best_s(build)
    run_s = _best_s(build_and_run) - build_s
    run = simulate(binding, analysis, arch, mapping)
    total_s = _best_s(lambda: simulate(binding, analysis, arch, mapping))
    print(f"event model, FuseMax BERT-base 16K: {total_s * 1e3:.0f} ms per point (CPU, best of {REPEATS}): "
          f"tasks built in {build_s * 1e3:.0f} ms, run in {run_s * 1e3:.0f} ms; {reference.cpu(total_s)}")
    print(f"  {run.events:,} events (as SimPy counts them): {run.events / total_s:,.0f} events/s of simulate, "
          f"{run.events / run_s:,.0f} events/s of the run alone")
    print(f"  {len(run.timeline):,} tile tasks (spans): {len(run.timeline) / total_s:,.0f} tiles/s")
    error = run.result.latency_s / analytical.latency_s - 1
    print(f"  latency: event {run.result.latency_s * 1e3:.3f} ms, analytical {analytical.latency_s * 1e3:.3f} ms "
          f"({error:+.2%})")


if __name__ == "__main__":
    main()
