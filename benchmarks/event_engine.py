"""Speed of the event model (prints figures; not a timed test - these machines are shared and noisy).

One FuseMax attention point (BERT-base, 16K tokens), mapping already searched: wall time of `simulate` (the two
analytical evaluations it calls included), SimPy events processed per second, tile tasks (spans) per second, and
the latency against the analytical model's.

Target (issue: event engine): a 16K-token FuseMax point in well under a second.
Run: .venv/bin/python benchmarks/event_engine.py
"""

from __future__ import annotations

import time

from archsim.model.analytical import evaluate
from archsim.model.event import simulate
from archsim.point import prepare

REPEATS = 5


def main() -> None:
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 16384})
    analytical = evaluate(point.binding, point.analysis, point.arch, point.mapping)
    walls_s = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run = simulate(point.binding, point.analysis, point.arch, point.mapping)
        walls_s.append(time.perf_counter() - start)
    best_s = min(walls_s)
    print(f"event model, FuseMax BERT-base 16K: {best_s * 1e3:.0f} ms per point (best of {REPEATS}; "
          f"median {sorted(walls_s)[REPEATS // 2] * 1e3:.0f} ms)")
    print(f"  {run.events:,} SimPy events, {run.events / best_s:,.0f} events/s; "
          f"{len(run.timeline):,} spans, {len(run.timeline) / best_s:,.0f} spans/s")
    error = run.result.latency_s / analytical.latency_s - 1
    print(f"  latency: event {run.result.latency_s * 1e3:.3f} ms, analytical {analytical.latency_s * 1e3:.3f} ms "
          f"({error:+.2%})")


if __name__ == "__main__":
    main()
