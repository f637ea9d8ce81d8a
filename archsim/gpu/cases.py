"""Resolve measured rows to what the GPU model needs: the GPU preset, the kernel family and its launch plans.

Rows the model cannot take are returned as `Skipped` with the reason: a kernel without a family (the modelled
names are `archsim.model.gpu_kernels.KERNELS`), an unknown GPU label (matched against preset names and aliases,
see `archsim.gpu.load.gpu_for`), a shape or dtype the kernel does not support.
Plans depend only on the row (not on the parameters), so calibration builds them once and re-times them.
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.gpu.load import gpu_for, gpu_names
from archsim.gpu.measurements import Measurement, Skipped
from archsim.gpu.spec import GPU
from archsim.model.gpu import Plan
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
        rows.append(ModelledRow(m, gpu, family, found))
    return rows, skipped
