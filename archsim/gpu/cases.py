"""Resolve measured rows to what the GPU model needs: the GPU preset, the kernel family and its launch plans.

Rows the model cannot take are returned as `Skipped` with the reason: a kernel without a family (the modelled
names are `archsim.model.gpu_kernels.KERNELS`), an unknown GPU label (matched against preset names and aliases,
see `archsim.gpu.load.gpu_for`), a shape or dtype the kernel does not support, a kernel whose CTAs do not fit
the GPU's SMs. Plans and their feasibility depend only on the row (not on the parameters), so calibration builds
them once and re-times them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archsim.cascade.load import env_limit
from archsim.errors import SpecError
from archsim.gpu.load import gpu_for, gpu_names
from archsim.gpu.measurements import Measurement, Skipped
from archsim.gpu.spec import GPU
from archsim.model.gpu import Plan, TiledLaunch, plan_feasibility
from archsim.model.gpu_kernels import family_of, plans


@dataclass(frozen=True)
class ModelledRow:
    measurement: Measurement
    gpu: GPU
    family: str
    plans: tuple[Plan, ...]


def resolve(measurements: list[Measurement]) -> tuple[list[ModelledRow], list[Skipped]]:
    gpus: dict[str, GPU | None] = {}
    rows, skipped = [], []
    for m in measurements:
        family = family_of(m.kernel)
        if family is None:
            skipped.append(Skipped(m.row, m.columns, f"no model for kernel '{m.kernel}'"))
            continue
        if m.gpu not in gpus:
            gpus[m.gpu] = gpu_for(m.gpu)
        gpu = gpus[m.gpu]
        if gpu is None:
            skipped.append(Skipped(m.row, m.columns, f"no GPU preset matches '{m.gpu}' "
                                                     f"(presets: {', '.join(gpu_names())})"))
            continue
        found = plans(m.kernel, m.case, gpu)
        if isinstance(found, str):
            skipped.append(Skipped(m.row, m.columns, found))
            continue
        runnable = tuple(p for p in found if not plan_feasibility(p, gpu))
        if not runnable:
            skipped.append(Skipped(m.row, m.columns, plan_feasibility(found[0], gpu)))
            continue
        rows.append(ModelledRow(m, gpu, family, runnable))
    return rows, skipped


def distinct(rows: list[ModelledRow]) -> tuple[list[ModelledRow], np.ndarray]:
    """The rows of distinct (kernel, case, GPU), which the model predicts alike, and each row's index among them:
    a file repeating a case is timed once per case, not once per row."""
    first: dict[tuple, int] = {}
    index = [first.setdefault((r.measurement.kernel, r.measurement.case, r.gpu.name), len(first)) for r in rows]
    unique = {i: r for r, i in zip(rows, index, strict=True)}
    return [unique[i] for i in range(len(first))], np.array(index, dtype=int)


def check_work(rows: list[ModelledRow], source: str, what: str, env: str, limit: int) -> None:
    """Refuse, before timing them, rows whose launches hold more CTAs in all than `limit` (the model times a
    launch CTA by CTA, at about 0.1 us each): the message names the environment variable `env` that raises it."""
    limit = env_limit(env, limit)
    ctas = sum(launch.ctas for r in rows for plan in r.plans for launch in plan.launches
               if isinstance(launch, TiledLaunch))
    if ctas > limit:
        raise SpecError(source, "", f"{what}: {len(rows)} distinct cases whose kernels launch {ctas} CTAs in all, "
                                    f"beyond the limit of {limit} (use fewer or smaller cases, or raise it with the "
                                    f"environment variable {env})")
