"""Throughput of `archsim sweep` on Dask (prints figures; not a timed test - these machines are shared and noisy).

A FuseMax attention sweep (BERT-Base) over DRAM bandwidth x global buffer capacity x seq_len, 25 x 20 x 20 =
10,000 points, on an embedded LocalCluster of 1 and then 2 single-threaded worker processes, each into a fresh
temporary store (commit per batch, as `archsim sweep` does). Printed per run: points/s, and the scheduling overhead
per point = (Dask wall time - serial evaluation time / workers) / points, i.e. the wall time beyond a perfect
split of the serial work. The serial evaluation time per point is measured on a sample of `--sample` points in
this process. Cluster start-up and planning (loading the base specs once, then a key per point) are timed
separately, not in the runs.

Run: .venv/bin/python benchmarks/sweep_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster

from archsim.dse.dask_run import batch_size_for, evaluate_on
from archsim.dse.points import load_base
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import open_store
from archsim.dse.sweep import evaluate_batch, plan

GIB, MIB = 2**30, 2**20


def spec(quick: bool):
    n_bw, n_buf, n_seq = (5, 4, 5) if quick else (25, 20, 20)
    return sweep_from_dict({
        "name": "throughput", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [100 * GIB * k for k in range(1, n_bw + 1)],
                 "arch.memories.GlobalBuffer.capacity_bytes": [4 * MIB * k for k in range(1, n_buf + 1)],
                 "workload.seq_len": [1024 * k for k in range(1, n_seq + 1)]},
    }, "benchmarks/sweep_throughput.py")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 100-point grid, for a smoke run")
    parser.add_argument("--sample", type=int, default=300, help="points timed serially")
    args = parser.parse_args()
    sweep = spec(args.quick)
    start = time.perf_counter()
    base = load_base(sweep)
    _, todo_by_key = plan(sweep, base, set())
    todo = list(todo_by_key.values())
    print(f"{len(todo)} points; planning (a key per point) {time.perf_counter() - start:.1f} s")

    sample = todo[:: max(1, len(todo) // args.sample)][: args.sample]
    evaluate_batch(sweep, base, sample[:1])  # warm caches and imports
    start = time.perf_counter()
    evaluate_batch(sweep, base, sample)
    point_s = (time.perf_counter() - start) / len(sample)
    serial_s = point_s * len(todo)
    print(f"serial evaluation: {point_s * 1e3:.2f} ms/point ({1 / point_s:.1f} points/s) over {len(sample)} points; "
          f"all points ~ {serial_s:.0f} s")

    for workers in (1, 2):
        start = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
            up_s = time.perf_counter() - start
            conn = open_store(Path(tmp) / "sweep.sqlite")
            size = batch_size_for(point_s, len(todo), workers)
            start = time.perf_counter()
            written = evaluate_on(client, sweep, base, todo, conn, size)
            wall_s = time.perf_counter() - start
            conn.close()
        overhead = (wall_s - serial_s / workers) / len(todo)
        print(f"{workers} worker(s): {written / wall_s:.1f} points/s ({written} points in {wall_s:.1f} s, batch "
              f"{size}, cluster start {up_s:.1f} s); overhead {overhead * 1e3:+.2f} ms/point "
              f"({overhead / point_s:+.1%} of a point's evaluation)")


if __name__ == "__main__":
    main()
