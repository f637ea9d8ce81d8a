"""Growth of `archsim parallel`'s run time with the devices and the sequence (prints figures; not a timed test -
these machines are shared and noisy).

Wall seconds of each command below, run as a fresh process (CLI start-up included, about a second), at 2-3 sizes of
the axis that made it slow (the perf audit of session 26):
1. `allgather`, P = 1024, llama3-8b, N = 1M, 4M, 16M: 2P kernel calls whose rectangles are timed as many square
   calls in one launch (`schedule_s`'s uniform launches, timed from one CTA).
2. `ring`, N = 16M, P = 1024, 2048, 4096: the ring's P x P steps (`RingWork`, `ring_schedule_s` in numpy).
3. `ring`, P = 128, fwd+bwd, N = 1M, 4M, 16M: the causal launches' list schedules (`_list_schedule_s`).
`cpu_s`: the command's CPU seconds (user + system, from the finished child's resource usage); `x_ref`: that as a
multiple of `reference.py`'s workload's CPU time (timed first in this process), the figure that compares across
sittings.
Run: .venv/bin/python benchmarks/parallel_scale.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

from reference import Reference

CASES = [
    ("allgather P=1024", ["--scheme", "allgather", "--devices", "1024"], ["1M", "4M", "16M"], "--seq-len"),
    ("ring N=16M", ["--scheme", "ring", "--seq-len", "16M"], ["1024", "2048", "4096"], "--devices"),
    ("ring P=128 fwd+bwd", ["--scheme", "ring", "--devices", "128", "--direction", "fwd+bwd"], ["1M", "4M", "16M"],
     "--seq-len"),
]


def wall_s(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of `archsim parallel ARGS --json` in a new process (its output discarded; a failure
    raises)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from archsim.cli import main; main()", "parallel", "--workload",
                    "llama3-8b", *args, "--json"], check=True, stdout=subprocess.DEVNULL)
    took_s, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return took_s, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    reference = Reference.measure()
    print(reference.line())
    print(f"{'command':<22} {'size':>6} {'wall_s':>8} {'cpu_s':>8} {'x_ref':>8}")
    for name, args, sizes, axis in CASES:
        for size in sizes:
            took_s, cpu_s = wall_s([*args, axis, size])
            print(f"{name:<22} {size:>6} {took_s:>8.2f} {cpu_s:>8.2f} {cpu_s / reference.cpu_s:>8.3g}", flush=True)


if __name__ == "__main__":
    main()
