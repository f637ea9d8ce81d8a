"""Random sampling's throughput beside a grid's (prints figures; not a timed test - these machines are shared and
noisy).

Both are the five-axis FuseMax sweep of `sweep_throughput.py` (array size x buffer x DRAM bandwidth x seq_len x
batch), evaluated in this process (`run_sweep_dask`, `--local`) into a fresh temporary store: the grid of `--points`
points, then `--points` random draws over the axes of the 100,000-point grid (a draw repeated is one point).
Printed per run: points evaluated, wall time and points/s, and random's time per point over the grid's. A grid
prices many points that share their sizes as columns of one plan (`archsim.dse.grouped`: `COLUMNS_FROM`, 8
or more such points); random draws from a large space rarely share them, so most points take the single path:
random measured 1.8-4.2x slower per point than the grid here (1,000 and 10,000 points, as this script prints them).

Run: .venv/bin/python benchmarks/sweep_random.py [--points 1000|10000] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sweep_throughput import five_axis_data

from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.spec import sweep_from_dict


def timed(data: dict) -> tuple[int, float]:
    """Points evaluated and wall seconds for the sweep `data`, in this process, into a fresh store."""
    sweep = sweep_from_dict(data, "benchmarks/sweep_random.py")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = run_sweep_dask(sweep, Path(tmp) / "sweep.sqlite", executor="in-process")
        return run.new, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, choices=(1_000, 10_000), default=1_000, help="points per run")
    parser.add_argument("--seed", type=int, default=1, help="the random draws' seed")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    grid = five_axis_data(args.points)
    drawn = {**five_axis_data(100_000), "name": f"fusemax-random-{args.points}",
             "sampling": {"kind": "random", "samples": args.points, "seed": args.seed}}
    per_point = {}
    for name, data in (("grid", grid), ("random", drawn)):
        points, wall_s = timed(data)
        per_point[name] = wall_s / points
        print(f"{name}: {points} points in {wall_s:.1f} s, {points / wall_s:,.0f} points/s")
    print(f"random / grid time per point: {per_point['random'] / per_point['grid']:.1f}x")


if __name__ == "__main__":
    main()
