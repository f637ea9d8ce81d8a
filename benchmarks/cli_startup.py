"""CPU time of CLI start-up: `archsim --help` (target under 0.3 s of CPU) against the cost of importing every
command module, which is what each call paid before commands were imported lazily. Both are measured in the same
run, as child-process CPU time (user + system, from getrusage), the median of N runs.

    python benchmarks/cli_startup.py [N]
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys

from archsim.cli import COMMANDS


def cpu_s(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_cpu_s(argv: list[str], runs: int) -> float:
    return statistics.median(cpu_s(argv) for _ in range(runs))


def main(runs: int) -> None:
    python = sys.executable
    every_module = "import " + ", ".join(sorted({module for module, _, _ in COMMANDS.values()}))
    cases = {
        "python -c pass (interpreter alone)": [python, "-c", "pass"],
        "archsim --help": [python, "-m", "archsim", "--help"],
        "archsim run --help": [python, "-m", "archsim", "run", "--help"],
        "archsim list": [python, "-m", "archsim", "list"],
        "import every command module (the eager CLI)": [python, "-c", every_module],
    }
    times = {name: median_cpu_s(argv, runs) for name, argv in cases.items()}
    for name, seconds in times.items():
        print(f"{name:<46} {seconds:.3f} s CPU (median of {runs})")
    eager = times["import every command module (the eager CLI)"]
    print(f"archsim --help: {times['archsim --help']:.3f} s CPU, {eager / times['archsim --help']:.1f}x less than "
          f"importing every command; target < 0.3 s: {'met' if times['archsim --help'] < 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
