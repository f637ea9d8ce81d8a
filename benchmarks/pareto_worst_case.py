"""The Pareto front's worst case (prints figures; not a timed test): every point on the front, so a scan against
the front found so far checks each point against all the points before it.

Two objectives: n anti-correlated points (latency 0..n-1, energy n-1..0), taken in O(n log n) by a sort and a
running minimum (`archsim.dse.pareto._front_2d`). Three objectives: n points on the positive octant of the unit
sphere, scanned against the front (`_front_scan`, O(n x front size)). The audit measured the earlier scan (an
np.vstack per front point) at 2.39 s for 10,000 two-objective points and 38.8 s for 40,000.

Each time is printed in CPU seconds too, and as a multiple of `reference.py`'s workload (timed first in this
process), the figure that compares across sittings.

Run: .venv/bin/python benchmarks/pareto_worst_case.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from reference import Reference

from archsim.dse.pareto import pareto_mask

SIZES = (10_000, 40_000)


def all_on_front(n: int, objectives: int, rng: np.random.Generator) -> pd.DataFrame:
    """`n` points none of which dominates another, over 2 or 3 objectives."""
    if objectives == 2:
        costs = np.column_stack([np.arange(n, dtype=float), np.arange(n, dtype=float)[::-1]])
    else:
        costs = np.abs(rng.normal(size=(n, 3)))
        costs /= np.linalg.norm(costs, axis=1, keepdims=True)
    return pd.DataFrame(costs, columns=["latency_s", "energy_pj", "area_um2"][:objectives])


def main() -> None:
    reference = Reference.measure()
    print(reference.line())
    rng = np.random.default_rng(0)
    for objectives in (2, 3):
        for n in SIZES:
            df = all_on_front(n, objectives, rng)
            start, start_cpu = time.perf_counter(), time.process_time()
            front = int(pareto_mask(df, list(df.columns)).sum())
            took_s, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
            print(f"{objectives} objectives, {n:,} points, {front:,} on the front: {took_s:.3f} s  "
                  f"({cpu_s:.3f} s CPU, {reference.cpu(cpu_s)})")


if __name__ == "__main__":
    main()
