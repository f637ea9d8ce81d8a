"""Calibration files: the GPU model's fitted parameters per kernel family, versioned, with how they were fitted.

A file (`archsim/gpu/calibration/v1.yaml` is the packaged one; `archsim calibrate` writes new ones)::

    version: 1
    model: archsim.model.gpu
    measurements: {file: attention_measured.csv, sha256: ..., rows: 202}
    split: {rule: "...", calibration_seqlens: [512, 2048, 8192]}
    families:
      fa2:
        params: {mma_efficiency_fwd: 0.83, mma_efficiency_bwd: 0.61, cta_overhead_cycles: 2900, launch_s: 4.0e-6}
        fitted: [mma_efficiency_fwd, mma_efficiency_bwd, cta_overhead_cycles]
        meaning: {mma_efficiency_fwd: "...", ...}
        fit: {rows: 18, mape_pct: 2.9, max_abs_error_pct: 7.1, log_rmse: 0.036}

Parameters a file leaves out take the value of the family they are shared from (`Param.shared_from`) when
the file has it, else the family's prior (`archsim.model.gpu_kernels.FAMILIES`). Every error is a
`SpecError` naming the file and the field.
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsim.cascade.load import is_file, is_spec_path, read_yaml
from archsim.errors import SpecError
from archsim.model.gpu_kernels import FAMILIES, default_params

CALIBRATION_DIR = "calibration"
DEFAULT_VERSION = "v1"


@dataclass(frozen=True)
class Calibration:
    version: int
    source: str
    split_rule: str
    calibration_seqlens: tuple[int, ...]
    params: Mapping[str, Mapping[str, float]]  # family -> parameter -> value
    fitted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fit: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # family -> fit statistics
    measurements: Mapping[str, Any] = field(default_factory=dict)

    def family_params(self, family: str) -> dict[str, float]:
        """The family's values in this file, else (a parameter it shares) the value of the family it shares it
        from, else its prior: a file written before a family existed gives it what `archsim calibrate` would."""
        shared = {name: self.params[p.shared_from][name] for name, p in FAMILIES[family].params.items()
                  if p.shared_from and name in self.params.get(p.shared_from, {})}
        return {**default_params(family), **shared, **self.params.get(family, {})}

    def split_of(self, seqlen: int) -> str:
        return "calibration" if seqlen in self.calibration_seqlens else "held-out"


def packaged_path(version: str = DEFAULT_VERSION) -> Path:
    return Path(str(importlib.resources.files("archsim.gpu") / CALIBRATION_DIR / f"{version}.yaml"))


def load_calibration(path_or_version: str | Path = DEFAULT_VERSION) -> Calibration:
    """A packaged calibration by version name (`v1`) or a calibration YAML by path."""
    text = str(path_or_version)
    path = Path(text) if is_spec_path(text) else packaged_path(text)
    if not is_file(path, text):
        raise SpecError(text, "", "no such calibration file" + ("" if "/" in text else " in the package"))
    return calibration_from_dict(read_yaml(path), str(path))


def calibration_from_dict(data: Any, source: str = "<python>") -> Calibration:
    if not isinstance(data, Mapping):
        raise SpecError(source, "", "expected a mapping with version, split, families")
    for key in ("version", "split", "families"):
        if key not in data:
            raise SpecError(source, key, "missing")
    if isinstance(data["version"], bool) or not isinstance(data["version"], int) or data["version"] < 1:
        raise SpecError(source, "version", f"expected a positive integer, got {data['version']!r}")
    split = data["split"]
    if not isinstance(split, Mapping) or not isinstance(split.get("calibration_seqlens"), list):
        raise SpecError(source, "split.calibration_seqlens", "expected a list of sequence lengths")
    seqlens = split["calibration_seqlens"]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in seqlens):
        raise SpecError(source, "split.calibration_seqlens", f"expected positive integers, got {seqlens!r}")
    families = data["families"]
    if not isinstance(families, Mapping):
        raise SpecError(source, "families", "expected a mapping family -> {params, ...}")
    params, fitted, fit = {}, {}, {}
    for name, entry in families.items():
        where = f"families.{name}"
        if name not in FAMILIES:
            raise SpecError(source, where, f"unknown kernel family (known: {', '.join(FAMILIES)})")
        if not isinstance(entry, Mapping) or not isinstance(entry.get("params"), Mapping):
            raise SpecError(source, f"{where}.params", "expected a mapping parameter -> value")
        params[name] = {p: _param(name, p, v, source, f"{where}.params.{p}") for p, v in entry["params"].items()}
        names, known = entry.get("fitted") or [], FAMILIES[name].params
        if not isinstance(names, list) or not all(isinstance(n, str) and n in known for n in names):
            raise SpecError(source, f"{where}.fitted", f"expected a list of parameter names of {name} (known: "
                                                       f"{', '.join(known)}), got {names!r}")
        fitted[name] = tuple(names)
        fit[name] = _mapping(entry.get("fit"), source, f"{where}.fit")
    return Calibration(data["version"], source, str(split.get("rule", "")), tuple(seqlens), params, fitted, fit,
                       _mapping(data.get("measurements"), source, "measurements"))


def _mapping(value: Any, source: str, where: str) -> dict:
    """An optional mapping of notes (fit statistics, the measurements file): absent is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(source, where, f"expected a mapping, got {value!r}")
    return dict(value)


def _param(family: str, name: str, value: Any, source: str, where: str) -> float:
    spec = FAMILIES[family].params.get(name)
    if spec is None:
        raise SpecError(source, where, f"not a parameter of {family} (known: {', '.join(FAMILIES[family].params)})")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(source, where, f"expected a number, got {value!r}")
    if not spec.low <= value <= spec.high:
        raise SpecError(source, where, f"expected a value in [{spec.low:g}, {spec.high:g}], got {value!r}")
    return float(value)
