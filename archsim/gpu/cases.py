"""Resolve measured rows to what the GPU model needs: the GPU preset, the kernel family and its launch plans.

A row's GPU is the one its label is mapped to (`gpus`: label -> GPU, e.g. a user's own preset file; labels
compared as `archsim.gpu.load.label_key` does), else the preset its label names (by preset name, alias or
normalised tokens, see `archsim.gpu.load.gpu_for`). A label is never read as a file path: a GPU of one's own is
named by mapping its label. Two different GPUs of one name are refused (predictions and leave-one-GPU-out folds
are keyed by the name), and so is a mapped label no row carries (a typo would leave its rows on the presets).

Rows the model cannot take are returned as `Skipped` with the reason: a kernel without a family (the modelled
names are `archsim.model.gpu_kernels.KERNELS`), an unknown or ambiguous GPU label (the reason names the label and
the candidates, and how to map it), a shape, dtype or direction the kernel does not support, a case whose operands
and what the kernel's plan holds besides (eager attention's score matrices) exceed the GPU's DRAM, a kernel whose
CTAs do not fit the GPU's SMs (`archsim.model.gpu.runnable_plans`). Plans and their feasibility depend only on the
row (not on the parameters), so calibration builds them once and re-times them; `predict_row` refuses, as a bug, a
prediction of a kept row that is not a finite positive time, so nothing infeasible or NaN is ever compared or
fitted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from archsim.arch.gpu import GPU
from archsim.errors import LimitError, SpecError
from archsim.gpu.load import gpu_for, label_key
from archsim.gpu.measurements import Measurement, Skipped
from archsim.limits import env_limit
from archsim.model.gpu import GpuResult, Plan, TiledLaunch, predict_plans, runnable_plans
from archsim.model.gpu_kernels import family_of, plans


@dataclass(frozen=True)
class ModelledRow:
    """A measured row the model takes: its GPU, its kernel's family and the launch plans built for it once
    (module docstring)."""

    measurement: Measurement
    gpu: GPU
    family: str
    plans: tuple[Plan, ...]


@dataclass(frozen=True)
class WorkLimit:
    """The most CTAs the distinct cases of a file may launch in all, checked while their plans are built (the
    model times a launch CTA by CTA, at about 0.1 us and a few dozen bytes each): `default`, or the value of the
    environment variable `env`; `what` names the rows in the message."""

    source: str
    what: str
    env: str
    default: int


def resolve(measurements: list[Measurement], limit: WorkLimit | None = None, gpus: Mapping[str, GPU] | None = None
            ) -> tuple[list[ModelledRow], list[Skipped]]:
    """The rows the model takes, with their plans (built once per distinct kernel, case and GPU), and the others
    with the reason; a SpecError as soon as the distinct cases exceed `limit`, or when two different GPUs of one
    name are found. `gpus` maps labels to GPUs ahead of the presets (`check_labels` first)."""
    most = env_limit(limit.env, limit.default) if limit else 0
    mapped = {label_key(label): gpu for label, gpu in (gpus or {}).items()}
    found_gpus: dict[str, GPU | str] = {}
    named: dict[str, GPU] = {}
    for gpu in mapped.values():
        _refuse_namesakes(gpu, named)
    built: dict[tuple, tuple[Plan, ...] | str] = {}
    rows, skipped, ctas = [], [], 0
    for m in measurements:
        family = family_of(m.kernel)
        if family is None:
            skipped.append(Skipped(m.row, m.columns, f"no model for kernel '{m.kernel}'"))
            continue
        if m.gpu not in found_gpus:
            found_gpus[m.gpu] = mapped.get(label_key(m.gpu)) or preset_for(m.gpu)
            _refuse_namesakes(found_gpus[m.gpu], named)
        gpu = found_gpus[m.gpu]
        if isinstance(gpu, str):
            skipped.append(Skipped(m.row, m.columns, gpu))
            continue
        key = (m.kernel, m.case, gpu.name)
        if key not in built:
            built[key] = _runnable(m, gpu)
            ctas += _ctas(built[key])
            if limit and ctas > most:
                raise LimitError(limit.source, "", f"{limit.what}: {len(built)} distinct cases whose kernels launch "
                                                   f"more than {most} CTAs in all (use fewer or smaller cases, or "
                                                   f"raise the limit with the environment variable {limit.env})")
        found = built[key]
        if isinstance(found, str):
            skipped.append(Skipped(m.row, m.columns, found))
            continue
        rows.append(ModelledRow(m, gpu, family, found))
    return rows, skipped


def check_labels(gpus: Mapping[str, GPU], measurements: Iterable[Measurement], skipped: Iterable[Skipped],
                 source: str) -> None:
    """A SpecError naming the file's `gpu` column when a label of `gpus` is on none of its rows, measured or
    skipped (compared by `label_key`): a mapping that maps nothing is a typo, not a choice."""
    labels = {m.gpu for m in measurements} | {s.columns.get("gpu", "").strip() for s in skipped}
    present = {label_key(label) for label in labels}
    for label, gpu in gpus.items():
        if label_key(label) not in present:
            raise SpecError(source, "column 'gpu'", f"no row has the label {label!r} mapped to the GPU {gpu.name} "
                                                    f"(the file's labels: {', '.join(sorted(labels)) or 'none'})")


def _refuse_namesakes(gpu: GPU | str, named: dict[str, GPU]) -> None:
    """Record `gpu` under its name in `named`; when a different GPU was recorded under that name first (a mapped
    one: `resolve` records them before any row), a SpecError naming that GPU's file."""
    if isinstance(gpu, str):
        return
    first = named.setdefault(gpu.name, gpu)
    if first != gpu:
        raise SpecError(first.source, "name", f"{gpu.name!r} is also the name of a different GPU the rows use "
                                              f"({gpu.source}); expected a name of its own")


def preset_for(label: str) -> GPU | str:
    """The preset a row's GPU label names, or why none does (unknown or ambiguous, with the candidates)."""
    try:
        return gpu_for(label)
    except SpecError as exc:
        return f"{exc.message}; a GPU of your own: map the label to its YAML file (--gpu 'LABEL=FILE')"


def _runnable(m: Measurement, gpu: GPU) -> tuple[Plan, ...] | str:
    """The plans of a row that can run on `gpu` (in its DRAM and on its SMs), or why none can (a precision the
    GPU's `tensor_flops_per_s` lacks, as a V100's bf16, said before the kernel's own reasons: `GPU.rate_problem`;
    fp8 alone falls back to the fp16 rate)."""
    rate_problem = gpu.rate_problem(m.case.precision)
    if rate_problem:
        return rate_problem
    found = plans(m.kernel, m.case, gpu)
    return found if isinstance(found, str) else runnable_plans(m.case, gpu, found)


def predict_row(row: ModelledRow, params: Mapping[str, float]) -> GpuResult:
    """The prediction of a row `resolve` kept, with its family's `params`. Its plans run (`_runnable`), so a result
    that is infeasible or not a finite positive time is a bug in the model: a RuntimeError, never a NaN compared
    with a measurement or fitted."""
    m = row.measurement
    result = predict_plans(m.kernel, m.case, row.gpu, row.plans, params)
    if not (result.feasible and math.isfinite(result.time_s) and result.time_s > 0):
        raise RuntimeError(f"row {m.row} ({m.kernel} on {row.gpu.name}): the model predicted "
                           f"{result.time_s!r} s ({result.reason or 'feasible'}) for a case whose plans run")
    return result


def _ctas(found: tuple[Plan, ...] | str) -> int:
    return 0 if isinstance(found, str) else sum(launch.ctas for plan in found for launch in plan.launches
                                                if isinstance(launch, TiledLaunch))


def distinct(rows: list[ModelledRow]) -> tuple[list[ModelledRow], np.ndarray]:
    """The rows of distinct (kernel, case, GPU), which the model predicts alike, and each row's index among them:
    a file repeating a case is timed once per case, not once per row."""
    first: dict[tuple, int] = {}
    index = [first.setdefault((r.measurement.kernel, r.measurement.case, r.gpu.name), len(first)) for r in rows]
    unique = {i: r for r, i in zip(rows, index, strict=True)}
    return [unique[i] for i in range(len(first))], np.array(index, dtype=int)
