"""Fit the GPU model's per-family parameters on a calibration split of measured kernel times.

**The split rule, decided before looking at any error:** a row is in the calibration split when its `seqlen`
(the sequence length; the KV length for decode) is 512, 2048 or 8192 (`CALIBRATION_SEQLENS`); every other row
(1024, 4096, 16384, 32768, ...) is held out and only ever used to report error. The rule interleaves the lengths so
that held-out rows lie both between and beyond the calibration ones, and it is applied to every GPU, kernel and
direction alike.

Fit: for each kernel family, the parameters it marks `fitted` (`archsim.model.gpu_kernels.FAMILIES`) minimise a
soft-L1 loss of the log errors log(predicted time / measured time) over its calibration rows, one per measured case
(a case timed as a latency row and a throughput row is fitted once, by its latency row:
`archsim.gpu.measurements.one_per_case`; it had weighed twice as much as a case timed once) (quadratic below
about 10 %, linear beyond, so that one row carrying a harness effect the model does not represent — Python and
autograd overhead, a clock dip — does not set a parameter), by Levenberg-Marquardt with iteratively reweighted
least squares on the logarithm of the parameters (numerical Jacobian, each parameter clipped to its bounds; the
normal equations' sums are correctly rounded and the step is solved in Python floats, not by BLAS or LAPACK, so a fit
gives the same digits whichever BLAS kernel the CPU selects).
Parameters not marked fitted, parameters no calibration row depends on (reported as not identifiable) and every
parameter of a family with no calibration rows keep their priors (or the values they share from another family).
So do a family's forward and backward efficiencies when no row depends on one alone (`apart_problem`: fwd+bwd
timings fix their joint effect only; reported as not identifiable too): the fit holds them and fits the rest.
A fit of some families on a base calibration (`calibrate(path, families, base)`) keeps what its rows cannot tell
from the base instead: a parameter not identifiable from them that the base fitted keeps the base's value (listed
under `kept_from_base` in the fit statistics, and still among the family's `fitted`: it was fitted, on the base's
rows), and a family asked for with no calibration rows is kept whole, as the families not asked for are; the fit
of the identifiable parameters is the same as without a base. A fitted value at one of its bounds (`at_bound`; the
floor of a parameter bounded by 0 is `FLOOR`) is the data pushing past what the parameter may be: the command says
so. Each fit step times every distinct calibration case once (rows repeating a case share its prediction); a fit
takes up to a few hundred steps, so the cases' CTAs are capped at `MAX_CALIBRATION_CTAS`
(ARCHSIM_MAX_CALIBRATION_CTAS; the packaged file's split holds 0.3 M). The result records the split, the
measurements file (and its SHA-256), the digest of each row fitted on (`archsim.gpu.measurements.row_digest`, what
`archsim validate` splits by) and per family the fit error and the GPUs its rows ran on (`archsim.gpu.params`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import yaml

from archsim.arch.gpu import GPU
from archsim.gpu.cases import ModelledRow, WorkLimit, check_labels, distinct, predict_row, resolve
from archsim.gpu.load import content_reference, gpu_reference
from archsim.gpu.measurements import file_sha256, one_per_case, read_measurements, row_digest
from archsim.gpu.params import Calibration, split_rule
from archsim.model.gpu_kernels import FAMILIES, default_params, family_of

CALIBRATION_SEQLENS = (512, 2048, 8192)
SPLIT_RULE = (split_rule(CALIBRATION_SEQLENS) + " (1024, 4096, 16384, 32768, ...); decided before fitting, for every "
              "GPU, kernel and direction")
VERSION = 1
MAX_ITERATIONS = 60
JACOBIAN_STEP = 1e-4  # in log(parameter)
ROBUST_SCALE = 0.1  # log error where the loss turns from quadratic to linear (about 10 %)
IDENTIFIABLE = 1e-3  # a parameter whose 1 % change moves no row's log error by 1e-5 is not identifiable
# A family's forward and backward parameters (`apart_problem`): a fwd+bwd timing depends on both, so rows that all do
# fix their joint effect only; a row depending on one alone (a forward's, a backward's) tells them apart.
DIRECTION_PAIRS = (("mma_efficiency_fwd", "mma_efficiency_bwd"),)
MAX_CALIBRATION_CTAS = 2_000_000  # about 15 s of fitting on one core
FLOOR = 1e-12  # the fit moves log(parameter): a parameter whose lower bound is 0 stops here


def in_calibration_split(seqlen: int) -> bool:
    """Whether a row of sequence length `seqlen` (the KV length for decode) is fitted on: one of
    CALIBRATION_SEQLENS; every other row is held out."""
    return seqlen in CALIBRATION_SEQLENS


def log_times_s(rows: list[ModelledRow], params: Mapping[str, float]) -> np.ndarray:
    """log(predicted time in s) per row (`predict_row`: a finite positive time, or a RuntimeError). math.log, not
    np.log, as a precaution: numpy's AVX-512 exp loop is the one shown to differ in the last bit from its other
    loops (tests/test_calibrate_blas_s33.py fails on np.exp; np.log has not been seen to differ), and the fit takes
    every log and exp with math so that none could make it depend on the CPU."""
    return np.array([math.log(predict_row(r, params).time_s) for r in rows])


def robust_cost(r: np.ndarray) -> float:
    """Soft-L1 loss of log errors: quadratic below `ROBUST_SCALE`, linear beyond."""
    return float(np.sum(2 * ROBUST_SCALE**2 * (np.sqrt(1 + (r / ROBUST_SCALE) ** 2) - 1)))


def normal_equations(jacobian: np.ndarray, weights: np.ndarray, r: np.ndarray) -> tuple[list[list[float]], list[float]]:
    """(J^T W J, J^T W r) of a reweighted least-squares step: J the Jacobian (rows x parameters), W the diagonal of
    `weights`, r the residuals. Each entry is the math.fsum of elementwise products (each IEEE-rounded alike on every
    CPU), so correctly rounded whatever the order: a BLAS product (`jacobian.T @ ...`) sums in an order that depends
    on the kernel OpenBLAS selects for the CPU, and moved a printed digit of the packaged fit. J^T W J is filled from
    its upper triangle, so exactly symmetric."""
    columns = [jacobian[:, j] for j in range(jacobian.shape[1])]
    weighted = [weights * c for c in columns]
    normal = [[0.0] * len(columns) for _ in columns]
    for i, column in enumerate(columns):
        for j in range(i, len(columns)):
            normal[i][j] = normal[j][i] = math.fsum(column * weighted[j])
    return normal, [math.fsum(c * (weights * r)) for c in columns]


def solve_damped(normal: list[list[float]], gradient: list[float], damping: float) -> list[float]:
    """The Levenberg-Marquardt step delta solving (normal + damping * diag(diag(normal) + 1e-9)) delta = -gradient, by
    Gaussian elimination with partial pivoting in Python floats: the system is k x k for k fitted parameters (a
    handful), and a fixed order of IEEE operations (math.fsum, not `sum`, whose rounding changed in Python 3.12) gives
    the same digits on every CPU, where LAPACK's (np.linalg.solve) depends on the BLAS kernel. Assumes what the
    damping ensures for a positive semi-definite `normal` and damping > 0: the damped matrix is positive definite,
    so no pivot is zero."""
    k = len(gradient)
    rows = [[v + damping * (v + 1e-9) if i == j else v for j, v in enumerate(row)] + [-g]
            for i, (row, g) in enumerate(zip(normal, gradient, strict=True))]
    for col in range(k):
        pivot = max(range(col, k), key=lambda i: abs(rows[i][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for i in range(col + 1, k):
            factor = rows[i][col] / rows[col][col]
            rows[i] = [a - factor * b for a, b in zip(rows[i], rows[col], strict=True)]
    delta = [0.0] * k
    for i in reversed(range(k)):
        delta[i] = (rows[i][k] - math.fsum(rows[i][j] * delta[j] for j in range(i + 1, k))) / rows[i][i]
    return delta


def jacobian_at(residuals: Callable[[np.ndarray], np.ndarray], x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """d(residuals)/d(x) at `x` (whose residuals are `r`) by forward differences of `JACOBIAN_STEP`: rows x
    parameters."""
    jacobian = np.empty((len(r), len(x)))
    for j in range(len(x)):
        step = np.array(x)
        step[j] += JACOBIAN_STEP
        jacobian[:, j] = (residuals(step) - r) / JACOBIAN_STEP
    return jacobian


def apart_problem(names: list[str], jacobian: np.ndarray) -> list[str]:
    """The parameters of `names` that the rows cannot tell apart: both of a `DIRECTION_PAIRS` pair that some row
    depends on (a log-time change of at least `IDENTIFIABLE` per unit of the log parameter, the Jacobian's column)
    when no row depends on either alone. FlashAttention-2's fwd+bwd rows, each its forward's time plus its
    backward's, fix a blend of the two efficiencies (a fit on the A100's, relabelled, had put the forward's at its
    bound 1: H200 forward MAPE 18.79 %, the base's 4.94 %); one forward row, or one backward row, pins its own
    efficiency and the joint rows then the other."""
    depends = np.abs(jacobian) >= IDENTIFIABLE  # rows x parameters
    together = []
    for pair in DIRECTION_PAIRS:
        if not set(pair) <= set(names):
            continue
        first, second = (depends[:, names.index(name)] for name in pair)
        if (first | second).any() and not (first & ~second).any() and not (second & ~first).any():
            together.extend(pair)
    return together


def fit_family(family: str, rows: list[ModelledRow], shared: Mapping[str, float] | None = None,
               held: Mapping[str, float] | None = None) -> tuple[dict[str, float], dict]:
    """(parameters, fit statistics) of one family on its calibration rows; `shared` overrides priors of
    parameters taken from another family's fit. Parameters the rows cannot tell apart (`apart_problem`) are not
    fitted: they take their values in `held` (a base calibration's) where it has them, else keep their start values,
    the others are fitted around them, and all are listed as not identifiable."""
    params = {**default_params(family), **(shared or {})}
    names = [n for n, p in FAMILIES[family].params.items() if p.fitted]
    if not rows:
        return params, {"rows": 0}
    specs = [FAMILIES[family].params[n] for n in names]
    low = np.array([math.log(max(s.low, FLOOR)) for s in specs])  # math, not np: see log_times_s
    high = np.array([math.log(s.high) for s in specs])
    x = np.array([math.log(max(params[n], FLOOR)) for n in names])

    cases, case_of_row = distinct(rows)
    measured = np.array([math.log(r.measurement.time_s) for r in rows])

    def residuals(point: np.ndarray) -> np.ndarray:  # log(predicted / measured time) per row
        times = log_times_s(cases, {**params, **dict(zip(names, map(math.exp, point), strict=True))})
        return times[case_of_row] - measured

    r = residuals(x)
    jacobian = jacobian_at(residuals, x, r)
    together = apart_problem(names, jacobian)
    if together:
        params.update({n: (held or {}).get(n, params[n]) for n in together})
        kept = [i for i, n in enumerate(names) if n not in together]
        names, low, high, x = [names[i] for i in kept], low[kept], high[kept], x[kept]
        r = residuals(x)
        jacobian = jacobian_at(residuals, x, r)
    cost, damping = robust_cost(r), 1e-3
    sensitivity = np.zeros(len(x))
    for _ in range(MAX_ITERATIONS if names else 0):
        if jacobian is None:
            jacobian = jacobian_at(residuals, x, r)
        sensitivity = np.maximum(sensitivity, np.abs(jacobian).max(axis=0))
        weights = 1 / np.sqrt(1 + (r / ROBUST_SCALE) ** 2)  # IRLS weights of the soft-L1 loss
        normal, gradient = normal_equations(jacobian, weights, r)
        improved = False
        while damping < 1e8:
            candidate = np.clip(x + np.array(solve_damped(normal, gradient, damping)), low, high)
            r_new = residuals(candidate)
            cost_new = robust_cost(r_new)
            if cost_new < cost:
                improved = cost - cost_new > 1e-12 * max(cost, 1e-30)
                x, r, cost, damping = candidate, r_new, cost_new, max(damping / 3, 1e-9)
                break
            damping *= 4
        if not improved:
            break
        jacobian = None
    unidentified = [n for n in FAMILIES[family].params if n in together or
                    (n in names and sensitivity[names.index(n)] < IDENTIFIABLE)]
    fitted = {**params, **{n: float(v) for n, v in zip(names, map(math.exp, x), strict=True) if n not in unidentified}}
    time_errors = np.abs([math.expm1(v) for v in r])  # |predicted / measured time - 1|
    stats = {"rows": len(rows), "gpus": fitted_gpus(rows), "time_mape_pct": float(100 * time_errors.mean()),
             "max_abs_time_error_pct": float(100 * time_errors.max()), "log_rmse": float(np.sqrt(np.mean(r**2)))}
    if unidentified:
        stats["not_identifiable"] = unidentified  # no calibration row depends on them, or none on one alone
    return fitted, stats


def fitted_gpus(rows: list[ModelledRow]) -> list[str]:
    """The GPUs the rows ran on, sorted, each as a calibration names it (`content_reference`: a packaged preset's
    name, else its file and its content's digest, which `archsim.gpu.provenance` compares by)."""
    return sorted({content_reference(gpu) for gpu in {r.gpu.name: r.gpu for r in rows}.values()})


def fit_families(rows: list[ModelledRow], base: Calibration | None = None) -> tuple[dict, dict, dict]:
    """(parameters, fitted parameter names, fit statistics) per family, each family fitted on its own rows. A
    parameter a family shares (`Param.shared_from`) starts from its source family's fit here, else, given a `base`
    calibration, from the source's value there; given a `base`, what the rows cannot identify is kept from it
    (`keep_from_base`)."""
    params, fitted, fit = {}, {}, {}
    for family, spec in FAMILIES.items():  # a family sharing a parameter comes after the one it takes it from
        shared = {n: params[p.shared_from][n] if fit.get(p.shared_from, {}).get("rows")
                  else base.family_params(p.shared_from)[n]
                  for n, p in spec.params.items()
                  if p.shared_from and (fit.get(p.shared_from, {}).get("rows") or base is not None)}
        held = ({n: base.family_params(family)[n] for n in base.fitted.get(family, ())} if base is not None
                else None)
        params[family], fit[family] = fit_family(family, [r for r in rows if r.family == family], shared, held)
        if base is not None:
            params[family], fit[family] = keep_from_base(family, params[family], fit[family], base)
        kept = fit[family].get("kept_from_base", ())
        fitted[family] = tuple(n for n, p in spec.params.items() if p.fitted and fit[family]["rows"]
                               and (n not in fit[family].get("not_identifiable", ()) or n in kept))
    return params, fitted, fit


def keep_from_base(family: str, params: dict[str, float], stats: dict, base: Calibration) -> tuple[dict, dict]:
    """(parameters, fit statistics) of a family fitted on rows that could not identify some parameters: those the
    `base` calibration fitted (its `fitted`) take the base's values and are listed as `kept_from_base`. Assumes
    what `fit_family` checked: a not-identifiable parameter barely moves any row's prediction (`IDENTIFIABLE`),
    or is one the rows cannot tell apart from another (`apart_problem`), which the fit held at the base's value
    already, so the other values and the statistics hold at the base's value too. The others (the base had them at
    their priors too) are unchanged."""
    kept = [n for n in stats.get("not_identifiable", ()) if n in base.fitted.get(family, ())]
    if not kept:
        return params, stats
    values = base.family_params(family)
    return {**params, **{n: values[n] for n in kept}}, {**stats, "kept_from_base": kept}


AT_BOUND_REL = 1e-9  # a value this close (relative) to a bound is at it: the fit clips in log space, exp(log(b)) != b


def at_bound(family: str, name: str, value: float) -> str:
    """Which bound of its range a parameter's value is at: "lower" (no lower than `FLOOR`, where a fit stops),
    "upper", or "" for neither."""
    spec = FAMILIES[family].params[name]
    if value <= max(spec.low, FLOOR) * (1 + AT_BOUND_REL):
        return "lower"
    return "upper" if value >= spec.high * (1 - AT_BOUND_REL) else ""


def calibration_limit(source: str, what: str) -> WorkLimit:
    """The cap on the CTAs of the distinct cases a fit times (`MAX_CALIBRATION_CTAS`)."""
    return WorkLimit(source, what, "ARCHSIM_MAX_CALIBRATION_CTAS", MAX_CALIBRATION_CTAS)


def calibrate(path: str | Path, families: tuple[str, ...] = (), base: Calibration | None = None,
              gpus: Mapping[str, GPU] | None = None) -> Calibration:
    """Fit every family on the calibration split of a measurements CSV (one row per measured case, `one_per_case`);
    with `families`, fit those alone and keep every other family (and one of them with no calibration rows) as
    `base` has it (its parameters, fitted names and fit statistics), writing the base's next version; what the rows
    of a fitted family cannot identify is kept from the base too (`keep_from_base`). `gpus` maps the file's GPU
    labels to GPUs ahead of the presets (`archsim.gpu.cases.resolve`; a label no row has is a SpecError). The record
    names the file fitted on, the GPUs mapped (a preset's name, else the file), the rows fitted (`row_digest`), and
    for a partial fit the families fitted and the base's record."""
    if families and base is None:
        raise ValueError("a fit of some families keeps the others from a base calibration")
    measurements, skipped = read_measurements(path)
    check_labels(gpus or {}, measurements, skipped, str(path))
    rows_in_file = len(measurements) + len(skipped)
    measurements, _ = one_per_case(measurements)
    rows, _ = resolve([m for m in measurements if family_of(m.kernel) in families and
                       base.split_of(m.case.seqlen) == "calibration"] if families else
                      [m for m in measurements if in_calibration_split(m.case.seqlen)],
                      calibration_limit(str(path), "the calibration split"), gpus)
    params, fitted, fit = fit_families(rows, base)
    digest = file_sha256(path)
    record = {"file": Path(path).name, "sha256": digest, "rows": rows_in_file,
              "calibration_rows": len(rows),
              **({"gpus": {label: gpu_reference(gpu) for label, gpu in gpus.items()}} if gpus else {}),
              "fitted_rows": [row_digest(r.measurement) for r in rows]}
    if not families:
        return Calibration(VERSION, str(path), SPLIT_RULE, CALIBRATION_SEQLENS, params, fitted, fit, record)
    refitted = [f for f in families if fit[f]["rows"]]
    kept = [f for f in FAMILIES if f not in refitted]
    return Calibration(
        base.version + 1, str(path), base.split_rule, base.calibration_seqlens,
        {f: params[f] if f in refitted else base.family_params(f) for f in FAMILIES},
        {f: fitted[f] if f in refitted else tuple(base.fitted.get(f, ())) for f in FAMILIES},
        {f: fit[f] if f in refitted else dict(base.fit.get(f, {"rows": 0})) for f in FAMILIES},
        {**record, "families": refitted, "kept_from": {"calibration": f"v{base.version}",
                                                       "families": kept, **base.measurements}})


def calibration_to_dict(calibration: Calibration) -> dict:
    """The YAML form that `archsim.gpu.params.calibration_from_dict` reads back."""
    families = {}
    for family, spec in FAMILIES.items():
        stats = calibration.fit.get(family, {"rows": 0})
        families[family] = {
            "kernels": spec.description,
            "params": {n: _round(v) for n, v in calibration.family_params(family).items()},
            "fitted": list(calibration.fitted.get(family, ())),
            "meaning": {n: p.meaning for n, p in spec.params.items()},
            "fit": {k: _round(v) for k, v in stats.items()} if stats.get("rows")
            else {"rows": 0, "note": "no calibration rows: priors kept"},
        }
    return {"version": calibration.version, "model": "archsim.model.gpu",
            "measurements": dict(calibration.measurements),
            "split": {"rule": calibration.split_rule, "calibration_seqlens": list(calibration.calibration_seqlens)},
            "families": families}


HEADER = ("# GPU model calibration written by `archsim calibrate` (archsim/gpu/calibrate.py); format and loader:\n"
          "# archsim/gpu/params.py. Held-out error: `archsim validate --calibration FILE`.\n")


def calibration_yaml(calibration: Calibration) -> str:
    """The text of a calibration file (`archsim/gpu/params.py`'s format): HEADER's comment, then the YAML of
    `calibration_to_dict`."""
    return HEADER + yaml.safe_dump(calibration_to_dict(calibration), sort_keys=False, width=120, allow_unicode=True)


def _round(value):
    return float(f"{value:.6g}") if isinstance(value, float) else value
