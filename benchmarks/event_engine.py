"""Speed of the event model (prints figures; not a timed test - these machines are shared and noisy).

One FuseMax attention point (BERT-base, 16K tokens), mapping already searched, in CPU seconds of this process
(`time.process_time`, best of REPEATS): the time of `simulate` (the two analytical evaluations it calls included)
and of its parts (building the tile tasks, running them, collecting the Result), SimPy events processed per second
of the whole call and of the run alone, tile tasks (spans) per second, and the latency against the analytical
model's.

Target (issue 17): the event model at >= 300,000 SimPy events/s. Earlier engines are not kept (each ran the same
events in the same order, tests/test_event_speedup.py). Measured on this 2-core machine, which is shared: CPU
times swing 2x with the neighbours' load, so compare figures taken in one sitting. A SimPy process per task: 300
ms per point, 29,190 events (97,000/s). Callbacks on SimPy events, back to back with the present engine: 77 ms
per point (built in 21, run in 42), 19,970 events, 258,000 events/s of simulate (475,000/s of the run); the
present engine (one heap ordered as SimPy's queue, task building compiled): 40 ms (13, 17), 502,000/s
(1,171,000/s of the run).
Run: .venv/bin/python benchmarks/event_engine.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

from archsim.model.analytical import evaluate
from archsim.model.event import run_tasks, simulate
from archsim.model.event_tasks import tile_tasks
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
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 16384})
    binding, analysis, arch, mapping = point.binding, point.analysis, point.arch, point.mapping
    analytical = evaluate(binding, analysis, arch, mapping)
    parts = [evaluate(binding, analysis, arch, mapping, only_group=i) for i in range(len(mapping.groups))]
    build_s = _best_s(lambda: tile_tasks(binding, arch, mapping, parts, 4000, 2))
    run_s = _best_s(lambda: run_tasks(arch, tile_tasks(binding, arch, mapping, parts, 4000, 2))) - build_s
    run = simulate(binding, analysis, arch, mapping)
    total_s = _best_s(lambda: simulate(binding, analysis, arch, mapping))
    print(f"event model, FuseMax BERT-base 16K: {total_s * 1e3:.0f} ms per point (CPU, best of {REPEATS}): "
          f"tasks built in {build_s * 1e3:.0f} ms, run in {run_s * 1e3:.0f} ms")
    print(f"  {run.events:,} events (as SimPy counts them): {run.events / total_s:,.0f} events/s of simulate, "
          f"{run.events / run_s:,.0f} events/s of the run alone")
    print(f"  {len(run.timeline):,} tile tasks (spans): {len(run.timeline) / total_s:,.0f} tiles/s")
    error = run.result.latency_s / analytical.latency_s - 1
    print(f"  latency: event {run.result.latency_s * 1e3:.3f} ms, analytical {analytical.latency_s * 1e3:.3f} ms "
          f"({error:+.2%})")


if __name__ == "__main__":
    main()
