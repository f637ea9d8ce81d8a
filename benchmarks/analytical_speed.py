"""Speed of the analytical model (prints figures; not a timed test - these machines are shared and noisy).

1. Evaluations per second of one FuseMax attention point (BERT, 64K tokens), mapping already searched.
2. Wall time of each part of `archsim reproduce fusemax` (mapper included): attention (5 configs x 4 models x
   6 lengths), the linear layers (2 hardware x 4 x 6), the Fig. 12 design space, and the whole.

Target (issue 3): >= 1,000 evaluations/s on one core. Peers as reported: GenZ ~30/s, Calculon ~290/s, ZigZag ~0.5/s.
Run: .venv/bin/python benchmarks/analytical_speed.py
"""

from __future__ import annotations

import time

from archsim.dse import fusemax_pareto
from archsim.model.analytical import evaluate
from archsim.point import prepare
from archsim.systems import fusemax, fusemax_linear


def main() -> None:
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 65536})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 3.0:
        evaluate(point.binding, point.analysis, point.arch, point.mapping)
        n += 1
    per_s = n / (time.perf_counter() - start)
    print(f"analytical evaluations of one FuseMax point: {per_s:,.0f} /s ({n} in 3 s)")

    total = 0.0
    for name, run in (("attention", fusemax.attention_records), ("linear layers", fusemax_linear.end2end_records),
                      ("Fig. 12 design space", fusemax_pareto.pareto_records)):
        start = time.perf_counter()
        records = run()
        took = time.perf_counter() - start
        total += took
        print(f"reproduce fusemax, {name} ({len(records)} points, mapper included): {took:.2f} s")
    print(f"reproduce fusemax, all parts: {total:.2f} s")


if __name__ == "__main__":
    main()
