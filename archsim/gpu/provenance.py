"""Where the GPU model's times for one GPU come from, as one line (and a JSON object) beside a command's times.

Calibrated parameters are per kernel family, the same on every GPU (README, "GPU model"): a GPU runs each family's
fit, wherever its rows were measured, at its own peaks. The line names the calibration (its version and file), the
GPUs each family was fitted on (its `fit.gpus`, which `archsim calibrate` records from the rows it fitted), and
whether the GPU has measured values of its own: rows a family was fitted on, and the measured fractions of its
preset (`archsim.gpu.load.MEASURED`: the DRAM copy's and a dense GEMM's share of the peak). GPUs are compared by
content (`reference_identity`: a packaged preset by its name, any other by its spec's digest, `content_reference`), not
by the path typed, so the same file by another path is the GPU fitted on and another file at that path is not; a file
that copies a preset under another name is another GPU here. A calibration written before the digests names a GPU
file by its path alone (`recorded_by_path`): its families are said to be fitted on that path, which cannot be told
from this GPU. A family with no rows (priors kept) is named by neither side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archsim.arch.gpu import GPU
from archsim.gpu.load import MEASURED, content_reference, recorded_by_path, reference_identity
from archsim.gpu.params import Calibration

NOT_RECORDED = ""  # the `fitted_on` key of families fitted on GPUs the calibration does not record


@dataclass(frozen=True)
class Provenance:
    """The calibration timing `gpu` (its `version` and `file` name), the families fitted on each GPU's rows
    (`fitted_on`: GPU -> families, `NOT_RECORDED` for a calibration that does not say), and the GPU's preset's
    measured fractions (`measured_in_preset`: key -> value)."""

    version: int
    file: str
    gpu: str
    fitted_on: dict[str, list[str]]
    measured_in_preset: dict[str, float]

    @property
    def fitted_on_this_gpu(self) -> list[str]:
        """The families fitted on rows of this GPU (among others' or alone): of the GPUs recorded, those of its
        content (`reference_identity`), whatever path named them."""
        identity = reference_identity(self.gpu)
        return sorted({family for name, families in self.fitted_on.items() if reference_identity(name) == identity
                       for family in families})

    @property
    def fitted_on_paths(self) -> list[str]:
        """The GPU files a calibration written before the digests names by path alone (`recorded_by_path`)."""
        return [name for name in self.fitted_on if recorded_by_path(name)]

    def to_dict(self) -> dict:
        """The JSON form: the fields, and the families fitted on this GPU's rows."""
        return {"version": self.version, "file": self.file, "gpu": self.gpu, "fitted_on": self.fitted_on,
                "fitted_on_this_gpu": self.fitted_on_this_gpu, "measured_in_preset": self.measured_in_preset}


def provenance(calibration: Calibration, gpu: GPU) -> Provenance:
    """Where the model's times for `gpu` under `calibration` come from (module docstring)."""
    fitted_on: dict[str, list[str]] = {}
    for family in sorted(calibration.fit):
        stats = calibration.fit[family]
        if stats.get("rows"):
            for name in stats.get("gpus", [NOT_RECORDED]):
                fitted_on.setdefault(name, []).append(family)
    measured = {key: getattr(gpu, key) for key in MEASURED if getattr(gpu, key) is not None}
    return Provenance(calibration.version, Path(calibration.source).name, content_reference(gpu),
                      dict(sorted(fitted_on.items())), measured)


def provenance_line(p: Provenance) -> str:
    """One line: "calibration version 2 (v2.yaml): fa1, fa2 fitted on a100-80gb-sxm4; archsim on h200-sxm;
    l40s: ..." with what the GPU has of its own."""
    fitted = "; ".join(f"{', '.join(families)} {'fitted ' if i == 0 else ''}on "
                       f"{_fitted_gpu_text(name)}"
                       for i, (name, families) in enumerate(p.fitted_on.items()))
    fractions = ", ".join(f"{key} {value:.3g}" for key, value in p.measured_in_preset.items())
    in_preset = (f"measured in its preset: {fractions}" if fractions else
                 f"no measured {' or '.join(MEASURED)} in its preset")
    return f"calibration version {p.version} ({p.file}): {fitted or 'no family fitted'}; {p.gpu}: " \
           + _own_rows(p, in_preset)


def _fitted_gpu_text(name: str) -> str:
    """A GPU a calibration records, as the line names it: a file recorded by its path alone says so."""
    if name == NOT_RECORDED:
        return "GPUs the file does not record"
    return f"{name} (recorded by its path alone)" if recorded_by_path(name) else name


def _own_rows(p: Provenance, in_preset: str) -> str:
    """What the line says of the GPU's own rows in the fit, with `in_preset` (its preset's measured fractions)."""
    own = p.fitted_on_this_gpu
    if own:
        others = sorted({f for families in p.fitted_on.values() for f in families} - set(own))
        rows = (f"{', '.join(own)} fitted on its own rows, the others on other GPUs' at its own peaks" if others
                else "every fitted family fitted on its own rows")
        return f"{rows}; {in_preset}"
    if NOT_RECORDED in p.fitted_on:
        return f"no rows recorded as fitted on it; {in_preset}"
    if p.fitted_on_paths:
        return (f"rows fitted on a GPU file recorded by its path alone ({', '.join(p.fitted_on_paths)}) may be its "
                f"own, which the path cannot tell (refit with `archsim calibrate` to record the file's content); "
                f"{in_preset}")
    if p.measured_in_preset:
        return f"no rows fitted on it, so it runs these fits at its own peaks; {in_preset}"
    return f"no measured values of its own (no rows fitted on it; {in_preset}): it runs these fits at its own peaks"
