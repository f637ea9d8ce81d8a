"""A fixed reference workload, timed in the same run as a benchmark, so that the benchmark's times compare across
runs and sittings as multiples of it ('x reference') where its absolute seconds do not: this shared 2-core
machine's load moves them 2-3x from one sitting to the next.

The workload: `evaluate` (the analytical model) of one mapped FuseMax attention point, BERT-base at 64K tokens,
CALLS times in a row, best of REPEATS, in CPU seconds (`time.process_time`) and wall seconds (`time.perf_counter`)
of this process (so pinned with it under `taskset`). The point is prepared (bound, analysed, mapped) first, untimed;
the evaluations are then deterministic, one thread and pure Python, about half a second of CPU per repeat here. A
benchmark divides its CPU seconds by `cpu_s` and its wall seconds (a subprocess's included) by `wall_s`.

The multiples compare only while this workload's own code runs at the same speed: a change to `evaluate`'s speed
(`benchmarks/analytical_speed.py` prints it) moves every multiple, so say so beside figures taken across one.

Imported by the benchmark scripts (`from reference import Reference`; run as `python benchmarks/NAME.py`, the
script's folder is on the path); `python benchmarks/reference.py` prints the reference alone.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CALLS = 10_000
REPEATS = 3


@dataclass(frozen=True)
class Reference:
    """Best CPU and wall seconds of the reference workload in this run, and the load average when it ran."""

    cpu_s: float
    wall_s: float
    load: float

    @classmethod
    def measure(cls) -> Reference:
        from archsim.model.analytical import evaluate
        from archsim.point import prepare

        point = prepare("fusemax", workload="bert-base", sets={"seq_len": 65536})
        args = (point.binding, point.analysis, point.arch, point.mapping)
        evaluate(*args)  # the plan made and remembered, as every timed call finds it
        load = os.getloadavg()[0]
        cpu_s = wall_s = float("inf")
        for _ in range(REPEATS):
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(CALLS):
                evaluate(*args)
            cpu_s = min(cpu_s, time.process_time() - start_cpu)
            wall_s = min(wall_s, time.perf_counter() - start)
        return cls(cpu_s, wall_s, load)

    def line(self) -> str:
        """What the benchmark prints first: the reference's own times and the load."""
        return (f"reference ({CALLS:,} evaluations of FuseMax BERT-base 64K, best of {REPEATS}): {self.cpu_s:.3f} s "
                f"CPU, {self.wall_s:.3f} s wall; {os.cpu_count()} cores, load average {self.load:.2f}")

    def cpu(self, seconds: float) -> str:
        """CPU `seconds` as a multiple of the reference's CPU time."""
        return _multiple(seconds / self.cpu_s)

    def wall(self, seconds: float) -> str:
        """Wall `seconds` as a multiple of the reference's wall time."""
        return _multiple(seconds / self.wall_s)


def _multiple(ratio: float) -> str:
    return f"{ratio:.3g}x reference"


if __name__ == "__main__":
    print(Reference.measure().line())
