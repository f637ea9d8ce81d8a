"""Compare the GPU model with measured kernel times: per-row error, MAPE per (gpu, kernel, direction) group.

Every row of a CSV in the `attention_measured.csv` schema that the model supports is predicted with a calibration
(`archsim.gpu.params`); the others are counted and listed with the reason (`archsim.gpu.measurements`,
`archsim.gpu.cases`). Each prediction is expressed in the row's own metric and unit (TFLOPs/s by the FlashAttention
convention, or a latency), beside the pure roofline max(FLOPs / tensor peak, DRAM bytes / DRAM bandwidth)
(`archsim.gpu.roofline`). Error = predicted / measured - 1 in that metric; MAPE = mean |error| in percent, over
all rows, over the held-out split and over the calibration split. Each measured case is one row: a case timed as
a latency row and a throughput row (`archsim measure` writes both) is compared by its latency row, its time, and
the throughput row is skipped (`measurements.one_per_case`), so that `rows` counts timings and the MAPE does not
average one timing's +x % in latency with its -x / (1 + x) in throughput. A row is in the calibration split when it
is one the calibration fitted its family on: its configuration and measured time to 12 significant digits
(`archsim.gpu.measurements.row_digest`) are those of a row the calibration records for the family
(`Calibration.fitted_on`), in whatever file and unit it comes (a copy with other line endings, files concatenated,
657.088 us for 0.657088 ms). Every other row is held out, so the rows of a file the
calibration was not fitted on are held out whole. A family whose rows the calibration does not record (a
hand-written file with no `measurements`) is split by sequence length alone. A calibration whose record (or the
base's record it keeps, `kept_from`) names this very file (its `sha256`) but none of whose `fitted_rows` is a row of
it was written with an older `row_digest` (before the time was read to 12 digits): its rows would all be labelled
held-out, so it is refused (`check_digests`), to be refitted.

Leave-one-GPU-out (`leave_one_gpu_out`): for each GPU preset the file's rows resolve to, every family is fitted
(`archsim.gpu.calibrate.fit_families`, all sequence lengths) on the rows of the other GPUs only and the rows of that
GPU are predicted: the error of a model carried to a GPU it was not fitted on. A family with no rows on another
GPU keeps its priors (`archsim.model.gpu_kernels.FAMILIES`), except a parameter it shares from a family that has
rows there (`Param.shared_from`: the Triton tutorial's `autograd_s` is FlashAttention-2's fit), which takes that
family's fit on the other GPUs (`calibrate.fit_families`); the fold says which (`GpuFold.carried`), with the value
and the bound it sits at, if any. The cross-GPU figure (`cross_gpu`) is the folds' MAPE over the rows of the families
with rows on more than one GPU: the rows predicted by a fit carried from other GPUs, not by priors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.gpu.calibrate import at_bound, calibration_limit, fit_families
from archsim.gpu.cases import ModelledRow, WorkLimit, check_labels, distinct, predict_row, resolve
from archsim.gpu.measurements import Measurement, Skipped, file_sha256, one_per_case, read_measurements, row_digest
from archsim.gpu.params import Calibration
from archsim.gpu.roofline import roofline_time_s
from archsim.model.gpu import GpuResult
from archsim.model.gpu_kernels import FAMILIES, family_of

OVERALL = "overall"
LEFT_OUT = "left-out GPU"
MAX_VALIDATION_CTAS = 20_000_000  # about 2 s of timing on one core and 0.5 GB


@dataclass(frozen=True)
class Comparison:
    """One measured row beside the model: its split (calibration or held-out), the modelled call, and the model's and
    the pure roofline's predictions in the row's metric and unit; `error` and `roofline_error` are relative
    (predicted / measured - 1)."""

    measurement: Measurement
    split: str
    result: GpuResult
    predicted: float  # in the row's metric and unit
    roofline: float

    @property
    def error(self) -> float:
        return self.predicted / self.measurement.value - 1

    @property
    def roofline_error(self) -> float:
        return self.roofline / self.measurement.value - 1


@dataclass(frozen=True)
class Carried:
    """A parameter of a family with no rows on the other GPUs that takes another family's fit on them
    (`Param.shared_from`), not its prior: `value` is `from_family`'s fitted value."""

    family: str
    parameter: str
    from_family: str
    value: float


@dataclass(frozen=True)
class GpuFold:
    """One fold of leave-one-GPU-out: the rows of `gpu` predicted by families fitted on `fitted_rows` rows of the
    other GPUs; `prior_families` had no such rows and kept their priors, but for the parameters `carried` from
    another family's fit."""

    gpu: str
    fitted_rows: int
    prior_families: tuple[str, ...]
    carried: tuple[Carried, ...]
    comparisons: tuple[Comparison, ...]

    def priors_note(self) -> str:
        """What the fold's families without rows predict from, for the line after the table ("" when every family
        had rows): their priors, but for the parameters carried from another family's fit (`carried_note`)."""
        if not self.prior_families:
            return ""
        but = f", but {carried_note(self.carried)}" if self.carried else ""
        return f"; priors only for {', '.join(self.prior_families)} (no rows on another GPU){but}"


def carried_note(carried: Iterable[Carried]) -> str:
    """The parameters carried from other families' fits, by the family fitted and the families taking them, each
    with its value and the bound it sits at (`calibrate.at_bound`: a fit pushing past what the parameter may be):
    "autograd_s 1e-12 (at its lower bound) of fa1, triton_tutorial from fa2's fit"."""
    takers: dict[tuple[str, str, float], list[str]] = {}
    for c in carried:
        takers.setdefault((c.from_family, c.parameter, c.value), []).append(c.family)
    values: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (source, name, value), families in takers.items():
        bound = at_bound(source, name, value)
        values.setdefault((source, tuple(families)), []).append(
            f"{name} {value:.3g}" + (f" (at its {bound} bound)" if bound else ""))
    return "; ".join(f"{', '.join(names)} of {', '.join(families)} from {source}'s fit"
                     for (source, families), names in values.items())


@dataclass(frozen=True)
class CrossGpu:
    """Leave-one-GPU-out over the families measured on more than one GPU: the mean |error| in percent (`mape_pct`)
    of the left-out GPUs' `rows` of those `families` (in `groups` (gpu, kernel, direction) groups), each predicted
    by the family's fit on the other GPUs' rows."""

    families: tuple[str, ...]
    groups: int
    rows: int
    mape_pct: float


def cross_gpu(folds: Iterable[GpuFold]) -> CrossGpu | None:
    """The folds' error over the rows whose family has rows on another GPU (not among the fold's
    `prior_families`), weighted by row; None when no fold has such a row (one GPU, or no family on two)."""
    carried = [c for fold in folds for c in fold.comparisons
               if family_of(c.measurement.kernel) not in fold.prior_families]
    if not carried:
        return None
    return CrossGpu(tuple(sorted({family_of(c.measurement.kernel) for c in carried})),
                    len({c.measurement.group for c in carried}), len(carried),
                    mape_by_group(carried)[OVERALL])


@dataclass(frozen=True)
class Validation:
    """The model against a measurements file (`source`) under `calibration`: a Comparison per row taken, the rows
    skipped, and the leave-one-GPU-out folds when asked for."""

    source: str
    calibration: Calibration
    comparisons: tuple[Comparison, ...]
    skipped: tuple[Skipped, ...]
    folds: tuple[GpuFold, ...] = ()  # leave-one-GPU-out, when asked for

    def fold_mape(self) -> dict[str, float]:
        """Leave-one-GPU-out MAPE in percent per group and `overall` (empty when not computed)."""
        return mape_by_group(c for fold in self.folds for c in fold.comparisons)

    def mape(self, split: str | None = None, roofline: bool = False) -> dict[str, float]:
        """MAPE in percent per group and `overall`, over the rows of `split` (None: all rows)."""
        chosen = [c for c in self.comparisons if split is None or c.split == split]
        return mape_by_group(chosen, roofline)


def mape_by_group(comparisons: Iterable[Comparison], roofline: bool = False) -> dict[str, float]:
    """Mean absolute percentage error per measurement group and `overall`, of the model (or of the pure roofline
    with `roofline`)."""
    groups: dict[str, list[float]] = {}
    for c in comparisons:
        error = abs(c.roofline_error if roofline else c.error)
        groups.setdefault(c.measurement.group, []).append(error)
        groups.setdefault(OVERALL, []).append(error)
    return {g: 100 * float(np.mean(e)) for g, e in sorted(groups.items(), key=lambda item: item[0] == OVERALL)}


def validate(path: str | Path, calibration: Calibration, leave_one_gpu_out: bool = False,
             gpus: Mapping[str, GPU] | None = None) -> Validation:
    """Predict every modelled row of the file, one per measured case (`one_per_case`; each distinct case predicted
    once; their CTAs in all capped at `MAX_VALIDATION_CTAS`, ARCHSIM_MAX_VALIDATION_CTAS), and with
    `leave_one_gpu_out` each GPU's rows again by families fitted on the other GPUs' rows. `gpus` maps the file's GPU
    labels to GPUs ahead of the presets (`archsim.gpu.cases.resolve`); a label no row has is a SpecError."""
    measurements, skipped = read_measurements(path)
    check_labels(gpus or {}, measurements, skipped, str(path))
    check_digests(calibration, path, measurements)
    measurements, twins = one_per_case(measurements)
    rows, unmodelled = resolve(measurements, WorkLimit(str(path), "the modelled rows", "ARCHSIM_MAX_VALIDATION_CTAS",
                                                       MAX_VALIDATION_CTAS), gpus)
    comparisons = _compare(rows, calibration.family_params, lambda r: row_split(calibration, r))
    folds = tuple(_fold(str(path), rows, gpu, gpus) for gpu in sorted({r.gpu.name for r in rows})) \
        if leave_one_gpu_out else ()
    line_of = {m.row: m.line for m in measurements}
    skipped_all = sorted([*skipped, *twins, *(replace(s, line=line_of[s.row]) for s in unmodelled)],
                         key=lambda s: s.row)
    return Validation(str(path), calibration, tuple(comparisons), tuple(skipped_all), folds)


def check_digests(calibration: Calibration, path: str | Path, measurements: Iterable[Measurement]) -> None:
    """A SpecError naming the calibration file and the record's `fitted_rows` where a record (the calibration's, or a
    base's it keeps, `kept_from`) names the file at `path` by its sha256 but none of its fitted rows' digests is one
    of `measurements`' (`row_digest`): it was fitted on this file with an older digest, and `row_split` would label
    every row it was fitted on held-out."""
    digest = file_sha256(path)
    in_file = {row_digest(m) for m in measurements}
    record, where = calibration.measurements, "measurements"
    while record:
        if record.get("sha256") == digest and record.get("fitted_rows") and in_file.isdisjoint(record["fitted_rows"]):
            raise SpecError(calibration.source, f"{where}.fitted_rows",
                            f"fitted on {path} (its sha256 recorded) but no row of it has one of these digests: "
                            "written with an older row digest; refit it with archsim calibrate")
        record, where = record.get("kept_from", {}), f"{where}.kept_from"


def row_split(calibration: Calibration, row: ModelledRow) -> str:
    """"calibration" when the row is one its family was fitted on (`row_digest`), else "held-out"; by the row's
    sequence length alone (`Calibration.split_of`) when the calibration records no rows for the family."""
    fitted = calibration.fitted_on(row.family)
    if fitted is None:
        return calibration.split_of(row.measurement.case.seqlen)
    return "calibration" if row_digest(row.measurement) in fitted else "held-out"


def _compare(rows: list[ModelledRow], params_of, split_of) -> list[Comparison]:
    """Each row's prediction with `params_of(family)`, in its own metric, labelled `split_of(row)`."""
    cases, case_of_row = distinct(rows)
    results = [predict_row(c, params_of(c.family)) for c in cases]
    comparisons = []
    for row, i in zip(rows, case_of_row, strict=True):
        m, result = row.measurement, results[i]
        comparisons.append(Comparison(m, split_of(row), result, m.in_metric(result.time_s),
                                      m.in_metric(roofline_time_s(result, row.gpu))))
    return comparisons


def _fold(source: str, rows: list[ModelledRow], gpu: str, gpus: Mapping[str, GPU] | None) -> GpuFold:
    """Fit on the rows of every GPU but `gpu` (their CTAs capped as a calibration's), predict the rows of `gpu`."""
    train, _ = resolve([r.measurement for r in rows if r.gpu.name != gpu],
                       calibration_limit(source, f"the rows of the GPUs other than {gpu}"), gpus)
    params, _, fit = fit_families(train)
    tested = [r for r in rows if r.gpu.name == gpu]
    priors = tuple(sorted({r.family for r in tested if not fit[r.family].get("rows")}))
    carried = tuple(Carried(family, name, p.shared_from, params[family][name]) for family in priors
                    for name, p in FAMILIES[family].params.items()
                    if p.shared_from and fit[p.shared_from].get("rows"))
    return GpuFold(gpu, len(train), priors, carried,
                   tuple(_compare(tested, params.__getitem__, lambda r: LEFT_OUT)))


def comparison_record(c: Comparison) -> dict:
    """The row's own columns (numbers as numbers, `_typed`) plus the model's numbers (JSON and CSV form)."""
    columns = {name: _typed(value) for name, value in c.measurement.columns.items()}
    return {**columns, "row": c.measurement.row, "split": c.split, "group": c.measurement.group,
            "predicted": c.predicted, "roofline": c.roofline, "error": c.error, "roofline_error": c.roofline_error,
            "measured_time_s": c.measurement.time_s, "predicted_time_s": c.result.time_s,
            "plan": c.result.plan, "bound": ", ".join(f"{lr.name}: {lr.bound}" for lr in c.result.launches)}


def _typed(text: object) -> object:
    """A CSV cell as JSON takes it: ASCII digits as an int, another finite number as a float, True / False as a
    bool, anything else as it is (a seqlen "512.0" sorted as text came before "16384"; "nan" stays text)."""
    if not isinstance(text, str):
        return text
    if text in ("True", "False"):
        return text == "True"
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) and text.isascii() and "_" not in text else text


def validation_to_dict(v: Validation) -> dict:
    """The JSON form of a validation: its files, each row's record, the rows skipped, and the MAPEs by split, of
    the roofline and of the leave-one-GPU-out folds when computed."""
    return {
        "measurements": v.source,
        "calibration": {"file": v.calibration.source, "version": v.calibration.version,
                        "split_rule": v.calibration.split_rule},
        "rows": [comparison_record(c) for c in v.comparisons],
        "skipped": [{"row": s.row, "line": s.line, "reason": s.reason} for s in v.skipped],
        "mape": v.mape(),
        "mape_held_out": v.mape("held-out"),
        "mape_calibration": v.mape("calibration"),
        "mape_roofline": v.mape(roofline=True),
        **({"mape_leave_one_gpu_out": v.fold_mape(),
            "leave_one_gpu_out_across_gpus": _cross_gpu_dict(cross_gpu(v.folds)),
            "leave_one_gpu_out": [{"gpu": f.gpu, "rows": len(f.comparisons), "fitted_on_rows": f.fitted_rows,
                                   "families_with_priors_only": list(f.prior_families),
                                   "parameters_from_other_families": [
                                       {"family": c.family, "parameter": c.parameter, "from": c.from_family,
                                        "value": c.value} for c in f.carried],
                                   "mape": mape_by_group(f.comparisons)} for f in v.folds]} if v.folds else {}),
    }


def _cross_gpu_dict(figure: CrossGpu | None) -> dict | None:
    """The JSON form of `cross_gpu` (null when it has no rows)."""
    return None if figure is None else {"families": list(figure.families), "groups": figure.groups,
                                        "rows": figure.rows, "mape": figure.mape_pct}
