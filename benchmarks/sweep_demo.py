"""Wall time of `archsim sweep demo` (160 points) as a user runs it, in-process and on Dask, in the same run.

Each run is a fresh `python -m archsim sweep demo` process into a fresh temporary store, so its imports, spec
loading, planning, evaluation and summary all count: first with no executor option (the command chooses; for
the demo, in this process, since its estimated work is under `IN_PROCESS_BELOW_S`), then with Dask forced by
`--workers N` for N = 1 .. cores. Also printed: `archsim sweep --help`'s wall time (interpreter start and the
command's imports, the floor under any run), the executor line each run printed, and the ratio of the best Dask
run to the in-process one. Each figure is the best of `--repeat` runs (these machines are shared and noisy).

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (the best is printed)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"archsim sweep demo (160 points), a fresh process and store per run; {cores} cores, load average "
          f"{os.getloadavg()[0]:.2f} at start; best of {args.repeat}")
    floor_s, _ = timed(["sweep", "--help"], args.repeat)
    print(f"archsim sweep --help (interpreter and imports): {floor_s:.2f} s")
    auto_s, line = timed(["sweep", "demo", "--db", "STORE"], args.repeat)
    print(f"chosen by the command: {auto_s:.2f} s wall  [{line}]")
    dask_s = {}
    for workers in range(1, cores + 1):
        dask_s[workers], line = timed(["sweep", "demo", "--db", "STORE", "--workers", str(workers)], args.repeat)
        print(f"Dask forced, --workers {workers}: {dask_s[workers]:.2f} s wall  [{line}]")
    best = min(dask_s, key=dask_s.get)
    print(f"best Dask ({best} worker(s)) / chosen: {dask_s[best] / auto_s:.2f}x the wall time")


if __name__ == "__main__":
    main()
