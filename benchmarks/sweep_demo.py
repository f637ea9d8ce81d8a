"""Wall time of `archsim sweep demo` (160 points) as a user runs it, in-process and on Dask, in the same run.

Each run is a fresh `python -m archsim sweep demo` process into a fresh temporary store, so its imports, spec
loading, planning, evaluation and summary all count: first with no executor option (the command chooses; for
the demo, in this process, since its estimated work is under `IN_PROCESS_BELOW_S`), then with Dask forced by
`--workers N` for N = 1 .. cores. Also printed: `archsim sweep --help`'s wall time (interpreter start and the
command's imports, the floor under any run), the executor line each run printed, and the ratio of the best Dask
run to the in-process one. Each figure is the best of `--repeat` runs (these machines are shared and noisy).

Also printed, for the previous path in the same run: the CPU seconds of evaluating the demo's pending points in
a fresh process, grouped as a sweep's batch now evaluates them (`evaluate_batch`: points binding the same sizes
share the mapper's candidates and plans, `archsim.dse.grouped`) and each alone as it did before
(`evaluate_point`: `prepare`, the mapper and `evaluate` per point).

Each wall time is printed as a multiple of `reference.py`'s workload too (timed first in this process), the figure
that compares across sittings.

Run: .venv/bin/python benchmarks/sweep_demo.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reference import Reference


def timed(args: list[str], repeat: int) -> tuple[float, str]:
    """Best wall time in s of `python -m archsim ARGS` over `repeat` runs (each into a fresh temporary store when
    ARGS has `--db STORE`), and the executor line of its stderr."""
    best_s, executor = float("inf"), ""
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            argv = [a.replace("STORE", str(Path(tmp) / "demo.sqlite")) for a in args]
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "archsim", *argv], capture_output=True, text=True, check=False)
            wall_s = time.perf_counter() - start
        if out.returncode != 0:
            sys.exit(f"archsim {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
        best_s = min(best_s, wall_s)
        executor = next((line for line in out.stderr.splitlines() if line.startswith("executor:")), executor)
    return best_s, executor


# A fresh process that evaluates the demo's points by `path` (grouped | alone) and prints the CPU seconds it took.
WORK = """
import sys, time
from archsim.dse.points import evaluate_point, load_base
from archsim.dse.spec import load_sweep_spec
from archsim.dse.sweep import evaluate_batch, plan
spec = load_sweep_spec("demo")
base = load_base(spec)
todo = list(plan(spec, base, set())[1].items())
start = time.process_time()
if sys.argv[1] == "grouped":
    evaluate_batch(spec, base, todo)
else:
    [evaluate_point(spec, base, point, key) for key, point in todo]
print(time.process_time() - start)
"""


def work_s(path: str, repeat: int) -> float:
    """Best CPU seconds of evaluating the demo's points by `path` in a fresh process."""
    runs = [subprocess.run([sys.executable, "-c", WORK, path], capture_output=True, text=True, check=True)
            for _ in range(repeat)]
    return min(float(run.stdout.strip()) for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (the best is printed)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    reference = Reference.measure()
    print(reference.line())
    print(f"archsim sweep demo (160 points), a fresh process and store per run; {cores} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start; best of {args.repeat}")
    floor_s, _ = timed(["sweep", "--help"], args.repeat)
    print(f"archsim sweep --help (interpreter and imports): {floor_s:.2f} s")
    auto_s, line = timed(["sweep", "demo", "--db", "STORE"], args.repeat)
    print(f"chosen by the command: {auto_s:.2f} s wall  [{line}]  {reference.wall(auto_s)}")
    grouped_s, alone_s = work_s("grouped", args.repeat), work_s("alone", args.repeat)
    print(f"evaluating the 160 points in a fresh process: {grouped_s:.2f} s CPU grouped as a batch now, "
          f"{alone_s:.2f} s each alone as before ({alone_s / grouped_s:.1f}x)")
    dask_s = {}
    for workers in range(1, cores + 1):
        dask_s[workers], line = timed(["sweep", "demo", "--db", "STORE", "--workers", str(workers)], args.repeat)
        print(f"Dask forced, --workers {workers}: {dask_s[workers]:.2f} s wall  [{line}]  "
              f"{reference.wall(dask_s[workers])}")
    best = min(dask_s, key=dask_s.get)
    print(f"best Dask ({best} worker(s)) / chosen: {dask_s[best] / auto_s:.2f}x the wall time")


if __name__ == "__main__":
    main()
