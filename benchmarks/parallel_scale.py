"""Growth of `archsim parallel`'s run time with the devices and the sequence (prints figures; not a timed test -
these machines are shared and noisy).

Wall seconds of each command below, run as a fresh process (CLI start-up included, about a second), at 2-3 sizes of
the axis that made it slow (the perf audit of session 26):
1. `allgather`, P = 1024, llama3-8b, N = 1M, 4M, 16M: 2P kernel calls whose rectangles are timed as many square
   calls in one launch (`schedule_s`'s uniform launches, timed from one CTA).
2. `ring`, N = 16M, P = 1024, 2048, 4096: the ring's P x P steps (`RingWork`, `ring_schedule_s` in numpy).
3. `ring`, P = 128, fwd+bwd, N = 1M, 4M, 16M: the causal launches' list schedules (`_list_schedule_s`).
Run: .venv/bin/python benchmarks/parallel_scale.py
"""

from __future__ import annotations

import subprocess
import sys
import time

CASES = [
    ("allgather P=1024", ["--scheme", "allgather", "--devices", "1024"], ["1M", "4M", "16M"], "--seq-len"),
    ("ring N=16M", ["--scheme", "ring", "--seq-len", "16M"], ["1024", "2048", "4096"], "--devices"),
    ("ring P=128 fwd+bwd", ["--scheme", "ring", "--devices", "128", "--direction", "fwd+bwd"], ["1M", "4M", "16M"],
     "--seq-len"),
]


def wall_s(args: list[str]) -> float:
    """Wall seconds of `archsim parallel ARGS --json` in a new process (its output discarded; a failure raises)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from archsim.cli import main; main()", "parallel", "--workload",
                    "llama3-8b", *args, "--json"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    print(f"{'command':<22} {'size':>6} {'wall_s':>8}")
    for name, args, sizes, axis in CASES:
        for size in sizes:
            print(f"{name:<22} {size:>6} {wall_s([*args, axis, size]):>8.2f}", flush=True)


if __name__ == "__main__":
    main()
