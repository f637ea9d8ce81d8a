"""Throughput of `archsim sweep` (prints figures; not a timed test - these machines are shared and noisy).

Default: a FuseMax attention sweep (BERT-Base) over DRAM bandwidth x global buffer capacity x seq_len, 25 x 20 x 20 =
10,000 points, on an embedded LocalCluster of 1 and then 2 single-threaded worker processes, each into a fresh
temporary store (commit per batch, as `archsim sweep` does). Printed per run: points/s, and the scheduling overhead
per point = (Dask wall time - serial evaluation time / workers) / points, i.e. the wall time beyond a perfect
split of the serial work. The serial evaluation time is every point evaluated in this process in the batches
one worker gets (points binding the same sizes share the mapper's work within a batch, so a strided sample of
`--sample` points, which sizes the batches, reads slower than the batches run: it had made the overhead negative).
Cluster start-up and planning (loading the base specs once, then a key per point) are timed separately, not in the
runs.

`--points N` (1,000, 10,000 or 100,000): a FuseMax sweep over array size (a linked axis, as the demo's) x global
buffer x DRAM bandwidth x seq_len x batch, run as `archsim sweep` runs it (`run_sweep_dask`: planning, the
executor it chooses, or `--workers W` / `--local`, and a batch committed per transaction) into a fresh temporary
store, then resumed from that store (nothing left to evaluate). Printed: the executor line, wall time, points/s
and the resume's wall time, each also as a multiple of `reference.py`'s workload (timed first in this process), the
figure that compares across sittings. Issue 17 asks for 100,000 points in under 60 s on 2 cores.

Run: .venv/bin/python benchmarks/sweep_throughput.py [--quick | --points 100000 [--workers W | --local]]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from reference import Reference

from archsim.dse.dask_run import batch_size_for, evaluate_on, run_sweep_dask
from archsim.dse.points import load_base
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import open_store
from archsim.dse.sweep import evaluate_batch, plan

GIB, MIB = 2**30, 2**20
# --points N -> (array sizes, buffers, bandwidths, seq_lens, batches): N = their product.
GRIDS = {1_000: (2, 5, 5, 4, 5), 10_000: (4, 10, 10, 5, 5), 100_000: (4, 25, 25, 8, 5)}
PE_DIMS = [32, 64, 128, 256]
SEQ_LENS = [1024 * 2**k for k in range(8)]
BATCHES = [1, 8, 16, 32, 64]


def spec(quick: bool):
    n_bw, n_buf, n_seq = (5, 4, 5) if quick else (25, 20, 20)
    return sweep_from_dict({
        "name": "throughput", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [100 * GIB * k for k in range(1, n_bw + 1)],
                 "arch.memories.GlobalBuffer.capacity_bytes": [4 * MIB * k for k in range(1, n_buf + 1)],
                 "workload.seq_len": [1024 * k for k in range(1, n_seq + 1)]},
    }, "benchmarks/sweep_throughput.py")


def five_axis_spec(points: int):
    """Array size x buffer x DRAM bandwidth x seq_len x batch, `points` in all (a key of GRIDS)."""
    return sweep_from_dict(five_axis_data(points), "benchmarks/sweep_throughput.py")


def five_axis_data(points: int) -> dict:
    """The YAML form of `five_axis_spec(points)` (a grid)."""
    n_pe, n_buf, n_bw, n_seq, n_batch = GRIDS[points]
    return {
        "name": f"fusemax-{points}", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"linked.pe_dim": {"values": PE_DIMS[-n_pe:],
                                   "set": {"arch.units.array2d.shape": ["pe_dim", "pe_dim"],
                                           "arch.units.array1d.shape": ["pe_dim"],
                                           "arch.memories.RF.instances": "pe_dim * pe_dim",
                                           "arch.memories.RF1D.instances": "pe_dim", "workload.M0": "pe_dim"}},
                 "arch.memories.GlobalBuffer.capacity_bytes": [MIB * k for k in range(1, n_buf + 1)],
                 "arch.memories.DRAM.bandwidth_bytes_per_s": [25 * GIB * k for k in range(1, n_bw + 1)],
                 "workload.seq_len": SEQ_LENS[:n_seq],
                 "workload.batch": BATCHES[-n_batch:]},
    }


def run_points(points: int, workers: int | None, local: bool) -> None:
    sweep = five_axis_spec(points)
    reference = Reference.measure()
    print(reference.line())
    print(f"{points} points (FuseMax: array size x buffer x DRAM bandwidth x seq_len x batch = "
          f"{' x '.join(map(str, GRIDS[points]))}); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sweep.sqlite"
        lines: list[str] = []
        start = time.perf_counter()
        run = run_sweep_dask(sweep, db, workers=workers, executor="in-process" if local else None,
                             status=lines.append)
        wall_s = time.perf_counter() - start
        print(f"{lines[0] if lines else 'executor: none'}")
        print(f"into the store: {run.new} points in {wall_s:.1f} s wall, {run.new / wall_s:,.0f} points/s "
              f"({len(run.records)} records read back); {reference.wall(wall_s)}")
        start = time.perf_counter()
        again = run_sweep_dask(sweep, db)
        resume_s = time.perf_counter() - start
        print(f"resumed from the store: {again.new} new, {again.reused} reused in {resume_s:.1f} s; "
              f"{reference.wall(resume_s)}")


def run_dask(quick: bool, sample: int) -> None:
    from distributed import Client, LocalCluster

    sweep = spec(quick)
    start = time.perf_counter()
    base = load_base(sweep)
    _, todo_by_key, _ = plan(sweep, base, set())
    todo = list(todo_by_key.items())
    print(f"{len(todo)} points; planning (a key per point) {time.perf_counter() - start:.1f} s")

    sample_points = todo[:: max(1, len(todo) // sample)][:sample]
    evaluate_batch(sweep, base, sample_points[:1])  # warm caches and imports
    start = time.perf_counter()
    evaluate_batch(sweep, base, sample_points)
    sample_s = (time.perf_counter() - start) / len(sample_points)  # sizes the batches, as `archsim sweep` does
    one = batch_size_for(sample_s, len(todo), 1)
    start = time.perf_counter()
    for i in range(0, len(todo), one):
        evaluate_batch(sweep, base, todo[i:i + one])
    serial_s = time.perf_counter() - start
    point_s = serial_s / len(todo)
    print(f"serial evaluation: {point_s * 1e3:.2f} ms/point ({1 / point_s:.1f} points/s) over all {len(todo)} "
          f"points in batches of {one} ({serial_s:.1f} s; a strided sample of {len(sample_points)}: "
          f"{sample_s * 1e3:.2f} ms/point)")

    for workers in (1, 2):
        start = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
            up_s = time.perf_counter() - start
            conn = open_store(Path(tmp) / "sweep.sqlite")
            size = batch_size_for(sample_s, len(todo), workers)
            start = time.perf_counter()
            written = evaluate_on(client, sweep, base, todo, conn, size)
            wall_s = time.perf_counter() - start
            conn.close()
        overhead = (wall_s - serial_s / workers) / len(todo)
        print(f"{workers} worker(s): {written / wall_s:.1f} points/s ({written} points in {wall_s:.1f} s, batch "
              f"{size}, cluster start {up_s:.1f} s); overhead {overhead * 1e3:+.2f} ms/point "
              f"({overhead / point_s:+.1%} of a point's evaluation)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 100-point grid, for a smoke run")
    parser.add_argument("--sample", type=int, default=300, help="points timed serially")
    parser.add_argument("--points", type=int, choices=sorted(GRIDS),
                        help="the five-axis FuseMax sweep of this many points, run as archsim sweep runs it")
    parser.add_argument("--workers", type=int, help="with --points: Dask on an embedded cluster of this many workers")
    parser.add_argument("--local", action="store_true", help="with --points: in this process, whatever the estimate")
    args = parser.parse_args()
    if (args.workers or args.local) and not args.points:
        sys.exit("--workers and --local go with --points")
    if args.points:
        run_points(args.points, args.workers, args.local)
    else:
        run_dask(args.quick, args.sample)


if __name__ == "__main__":
    main()
