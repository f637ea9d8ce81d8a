"""Speed of the analytical model (prints figures; not a timed test - these machines are shared and noisy).

Figures, in CPU seconds of this process (`time.process_time`), measured in the same run; 1-4 each beside the same
call with the caches of issue 17 cleared before every call (`..._uncached_per_s`, the previous path: specs parsed
and validated on every load, a chosen mapping checked, resolved and planned on every evaluation), 5-6 beside the
single path (1):
1. `single_evals_per_s`: `evaluate` of one mapped FuseMax attention point (BERT, 64K tokens), mapping chosen.
2. `distinct_evals_per_s`: `evaluate` over 12 prepared points in turn (DRAM bandwidth x buffer capacity varied,
   one mapping search each beforehand); each point's resolved groups are remembered after its first call.
3. `mapper_evals_per_s`: `prepare` (bind, analyse, mapper) + `evaluate` per point, specs loaded by name, the
   point's binding and mapper choice forgotten before each call (the mapper runs every time).
4. `run_point_per_s`: `run_point` by name, the same point again (its binding and mapper choice remembered), the way
   a script repeating a call runs.
5. `batch_evals_per_s`: the batch path (`archsim.model.batch.evaluate_columns`) on 100,000 points of the FuseMax
   point's plan, global-buffer capacity and DRAM bandwidth drawn at random per point (many do not fit: their
   reasons are written too), per CPU second of the call; `batch_speedup_over_single` = it / `single_evals_per_s`.
6. `batch_demo_space_evals_per_s`: `evaluate_points` on 2,000 prepared points of the demo sweep's space (pe_dim
   64/128/256, sequence length 4K-256K, the mapper's choice at one of the axis' buffers, buffer and bandwidth
   random), the plans made in the call (the plan and resolution caches cleared before it); preparing the points
   (architecture changes, binding, mapper) is not counted (a sweep does it, with its caches).
Then the wall time of each part of `archsim reproduce fusemax` (skipped with --json).

Target (issue 17): >= 10,000 single evaluations/s/core; a batch path >= 200,000/s/core.
Run: .venv/bin/python benchmarks/analytical_speed.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np

from archsim import library
from archsim import point as point_module
from archsim.mapping import resolve
from archsim.model import analytical
from archsim.model.analytical import evaluate
from archsim.model.batch import BatchResult, evaluate_columns, evaluate_points
from archsim.point import prepare, run_point

GIB, MIB = 2**30, 2**20
SECONDS = 2.0


def rate(call: Callable[[], object], before: Callable[[], object] = lambda: None) -> float:
    """Calls per CPU second over about `SECONDS`, `before` run (and counted) ahead of each call."""
    n, start = 0, time.process_time()
    while time.process_time() - start < SECONDS:
        before()
        call()
        n += 1
    return n / (time.process_time() - start)


def clear_point_caches() -> None:
    """Forget bindings, analyses and mapper choices, so the next `prepare` binds and searches again."""
    point_module._bound.cache_clear()
    point_module._searched.cache_clear()


def clear_caches() -> None:
    clear_point_caches()
    library._PARSED.clear()
    resolve.resolve_group.cache_clear()
    resolve.check_bindings.cache_clear()
    analytical.plans.cache_clear()


def figures() -> dict[str, float | int | None]:
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 65536})

    def single() -> object:
        return evaluate(point.binding, point.analysis, point.arch, point.mapping)

    arch = point.arch
    points = []
    for bw in (64, 128, 256, 512):
        for buffer_mib in (4, 8, 16):
            changed = arch.with_changes(**{"memories.DRAM.bandwidth_bytes_per_s": bw * GIB,
                                           "memories.GlobalBuffer.capacity_bytes": buffer_mib * MIB})
            points.append(prepare("fusemax", arch=changed, workload="bert-base", sets={"seq_len": 65536}))
    index = [0]

    def distinct() -> object:
        p = points[index[0] % len(points)]
        index[0] += 1
        return evaluate(p.binding, p.analysis, p.arch, p.mapping)

    def mapped() -> object:
        p = prepare("fusemax", workload="bert-base", sets={"seq_len": 65536})
        return evaluate(p.binding, p.analysis, p.arch, p.mapping)

    def by_name() -> object:
        return run_point("fusemax", workload="bert-base", sets={"seq_len": 65536})

    out: dict[str, float | int | None] = {"cpu_count": os.cpu_count()}
    for name, call, before in (("single_evals_per_s", single, lambda: None),
                               ("distinct_evals_per_s", distinct, lambda: None),
                               ("mapper_evals_per_s", mapped, clear_point_caches),
                               ("run_point_per_s", by_name, lambda: None)):
        out[name] = rate(call, before)
        out[f"{name.removesuffix('_per_s')}_uncached_per_s"] = rate(call, clear_caches)
    out["batch_evals_per_s"] = rate_of_batches(lambda: evaluate_columns(point.binding, point.analysis, arch,
                                                                         point.mapping, random_numbers(100_000)))
    out["batch_speedup_over_single"] = out["batch_evals_per_s"] / out["single_evals_per_s"]
    demo = demo_space_points(2000)
    out["batch_demo_space_evals_per_s"] = rate_of_batches(lambda: evaluate_points(demo), before=clear_plans)
    return out


def random_numbers(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    return {"memories.GlobalBuffer.capacity_bytes": rng.integers(256 * 2**10, 32 * MIB, n).astype(float),
            "memories.DRAM.bandwidth_bytes_per_s": rng.uniform(10 * GIB, 1000 * GIB, n)}


def demo_space_points(n: int) -> list[tuple]:
    """n random points of archsim/dse/sweeps/demo.yaml's space, prepared (binding, analysis, arch, mapping)."""
    rng = np.random.default_rng(17)
    base = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096}).arch
    mapped = {}
    points = []
    for _ in range(n):
        pe, seq, mapped_at = (int(rng.choice(v)) for v in ((64, 128, 256), (4096, 16384, 65536, 262144),
                                                            (262144, 1048576, 4194304, 16777216)))
        if (pe, seq, mapped_at) not in mapped:
            changed = base.with_changes(**{"units.array2d.shape": [pe, pe], "units.array1d.shape": [pe],
                                           "memories.RF.instances": pe * pe, "memories.RF1D.instances": pe,
                                           "memories.GlobalBuffer.capacity_bytes": mapped_at})
            mapped[pe, seq, mapped_at] = prepare("fusemax", arch=changed, workload="bert-base",
                                                 sets={"seq_len": seq, "M0": pe})
        p = mapped[pe, seq, mapped_at]
        arch = p.arch.with_changes(**{"memories.GlobalBuffer.capacity_bytes": int(rng.integers(32 * 2**10, 32 * MIB)),
                                      "memories.DRAM.bandwidth_bytes_per_s": float(rng.uniform(10 * GIB, 1000 * GIB))})
        points.append((p.binding, p.analysis, arch, p.mapping))
    return points


def clear_plans() -> None:
    resolve.resolve_group.cache_clear()
    resolve.check_bindings.cache_clear()
    analytical.plans.cache_clear()


def rate_of_batches(call: Callable[[], BatchResult], before: Callable[[], object] = lambda: None) -> float:
    """Points per CPU second of `call` (one batch) over about `SECONDS`; `before` runs untimed ahead of each."""
    points, spent = 0, 0.0
    while spent < SECONDS:
        before()
        start = time.process_time()
        points += len(call())
        spent += time.process_time() - start
    return points / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON and skip the reproduction")
    args = parser.parse_args()
    out = figures()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for key, value in out.items():
        print(f"{key:<34} {value if value is None or isinstance(value, int) else f'{value:,.1f}'}")
    from archsim.dse import fusemax_pareto
    from archsim.systems import fusemax, fusemax_linear

    total = 0.0
    for name, run in (("attention", fusemax.attention_records), ("linear layers", fusemax_linear.end2end_records),
                      ("Fig. 12 design space", fusemax_pareto.pareto_records)):
        start = time.perf_counter()
        records = run()
        took = time.perf_counter() - start
        total += took
        print(f"reproduce fusemax, {name} ({len(records)} points, mapper included): {took:.2f} s")
    print(f"reproduce fusemax, all parts: {total:.2f} s")


if __name__ == "__main__":
    main()
