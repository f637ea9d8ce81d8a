"""Speed of the analytical model (prints figures; not a timed test - these machines are shared and noisy).

1. Evaluations per second of one FuseMax attention point (BERT, 64K tokens), mapping already searched.
2. Wall time of the whole attention sweep of `archsim reproduce fusemax` (5 configs x 4 models x 6 lengths,
   mapper included).

Target (issue 3): >= 1,000 evaluations/s on one core. Peers as reported: GenZ ~30/s, Calculon ~290/s, ZigZag ~0.5/s.
Run: .venv/bin/python benchmarks/analytical_speed.py
"""

from __future__ import annotations

import time

from archsim.model.analytical import evaluate
from archsim.point import prepare
from archsim.systems import fusemax


def main() -> None:
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 65536})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 3.0:
        evaluate(point.binding, point.analysis, point.arch, point.mapping)
        n += 1
    per_s = n / (time.perf_counter() - start)
    print(f"analytical evaluations of one FuseMax point: {per_s:,.0f} /s ({n} in 3 s)")

    start = time.perf_counter()
    records = fusemax.attention_records()
    print(f"reproduce fusemax (attention, {len(records)} points, mapper included): "
          f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
