"""Calibration files: the GPU model's fitted parameters per kernel family, versioned, with how they were fitted.

A file (`archsim calibrate` writes them; packaged in `archsim/gpu/calibration/`: `v1.yaml`, every family fitted on the
published A100 rows, and the default `v2.yaml`, v1 with archsim's own kernels fitted on the measured H200 rows by
`archsim calibrate --families archsim --base v1`, its `measurements` naming both files)::

    version: 1
    model: archsim.model.gpu
    measurements: {file: attention_measured.csv, sha256: ..., rows: 202, calibration_rows: 64, fitted_rows: [...]}
    split: {rule: "...", calibration_seqlens: [512, 2048, 8192]}
    families:
      fa2:
        params: {mma_efficiency_fwd: 0.83, mma_efficiency_bwd: 0.61, cta_overhead_cycles: 2900, launch_s: 4.0e-6}
        fitted: [mma_efficiency_fwd, mma_efficiency_bwd, cta_overhead_cycles]
        meaning: {mma_efficiency_fwd: "...", ...}
        fit: {rows: 18, gpus: [a100-80gb-sxm4], time_mape_pct: 2.9, max_abs_time_error_pct: 7.1, log_rmse: 0.036}

The loader takes nothing on trust: a key it does not know (at the top, in `split`, in a family) is refused with
the keys it expects; a family the file lists gives every one of its parameters (`FAMILIES[family].params`);
and every family is listed, except one whose fitted parameters all come from families the file lists
(`Param.shared_from`: FlashAttention-3), which takes their values, as `archsim calibrate` would give it, and its
priors for the rest. `split.calibration_seqlens` is a non-empty list
of distinct lengths; `split.rule` (optional) is a note that must begin with the rule those lengths make
(`split_rule`), so that the rule printed is the rule applied. A family's `kernels`, `meaning` (one text per
parameter of the family) and `fit`, and `measurements`, are notes, but typed, with only the keys `archsim calibrate`
writes (`FIT_KEYS`, `RECORD_KEYS`): `Calibration.fitted_on` reads the record's `fitted_rows` (the digest of each
row the fit read, `archsim.gpu.measurements.row_digest`), its `families` (the families a fit of some families
refitted; absent: all) and `kept_from` (the base's record, for the others, with the base's `calibration` version)
to tell the rows each family was fitted on; a family's `fit.gpus` names the GPUs its rows ran on, a packaged preset
by its name and any other by its file and content's digest (`archsim.gpu.load.content_reference`; absent in a file
written before archsim recorded them: `archsim.gpu.provenance` then says they are not recorded; a file by its path
alone in one written before the digests, which provenance reads and says cannot be told from the GPU at hand). A
record naming its file's `sha256` must give the rows too (a calibration written before archsim recorded them is
refused, to be refitted). Every error is a `SpecError` naming the file and the field.
"""

from __future__ import annotations

import importlib.resources
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsim.errors import SpecError, check_keys
from archsim.gpu.measurements import ROW_DIGEST_HEX
from archsim.model.gpu_kernels import FAMILIES, default_params, param_problem
from archsim.outputs import OutputKind
from archsim.spec_files import is_file, is_spec_path, read_yaml

CALIBRATION_DIR = "calibration"
DEFAULT_VERSION = "v2"
MODEL = "archsim.model.gpu"
KEYS = ("version", "model", "measurements", "split", "families")
REQUIRED_KEYS = ("version", "split", "families")  # of KEYS, those every calibration gives
SPLIT_KEYS = ("rule", "calibration_seqlens")
FAMILY_KEYS = ("kernels", "params", "fitted", "meaning", "fit")
# the notes `archsim calibrate` writes (`calibrate.calibration_to_dict`, `calibrate.calibrate`) and their kinds
# (`_note`): a family's fit statistics, and the measurements record (`kept_from`: the base's, with its version)
FIT_KEYS = {"rows": "count", "gpus": "gpus", "time_mape_pct": "number", "max_abs_time_error_pct": "number",
            "log_rmse": "number", "not_identifiable": "names", "kept_from_base": "names", "note": "text"}
RECORD_KEYS = {"file": "text", "sha256": "text", "rows": "count", "calibration_rows": "count", "gpus": "labels",
               "fitted_rows": "digests", "families": "families"}
ROW_DIGEST = re.compile(rf"[0-9a-f]{{{ROW_DIGEST_HEX}}}")  # a `row_digest`
KEPT_KEYS = {**RECORD_KEYS, "calibration": "text"}


@dataclass(frozen=True)
class Calibration:
    """A loaded calibration file (module docstring): the parameters of each kernel family, which of them were
    fitted, the fit statistics, the split they were fitted on and the `measurements` record; `source` is the file."""

    version: int
    source: str
    split_rule: str
    calibration_seqlens: tuple[int, ...]
    params: Mapping[str, Mapping[str, float]]  # family -> parameter -> value
    fitted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fit: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # family -> fit statistics
    measurements: Mapping[str, Any] = field(default_factory=dict)

    def family_params(self, family: str | None) -> dict[str, float]:
        """The family's values in this file; for a family the file leaves out (one whose fitted parameters all
        come from listed families, see the module docstring), the values of the families it shares parameters
        from, else its priors: what `archsim calibrate` would give it. A family the model does not know (None is
        what `family_of` gives a kernel it does not know) is a SpecError naming the known ones."""
        if family not in FAMILIES:
            raise SpecError(self.source, "families", f"no kernel family {family!r} (known: {', '.join(FAMILIES)}; "
                                                     "family_of gives None for a kernel name it does not know)")
        shared = {name: self.params[p.shared_from][name] for name, p in FAMILIES[family].params.items()
                  if p.shared_from and name in self.params.get(p.shared_from, {})}
        return {**default_params(family), **shared, **self.params.get(family, {})}

    def split_of(self, seqlen: int) -> str:
        """The split of a row by its sequence length alone (`calibration_seqlens`): the rows a fit on a file takes."""
        return "calibration" if seqlen in self.calibration_seqlens else "held-out"

    def fitted_on(self, family: str) -> frozenset[str] | None:
        """The digests (`archsim.gpu.measurements.row_digest`) of the rows the family's values were fitted on, as
        `measurements` records them: a family in its `families` (all of them when it lists none: a full fit) was
        fitted on its `fitted_rows`, any other on those of `kept_from` (the base's record), looked up the same way;
        None when nothing records them (a hand-written file with no `measurements`)."""
        record = self.measurements
        while record:
            if family in record.get("families", (family,)):
                return frozenset(record["fitted_rows"]) if "fitted_rows" in record else None
            record = record.get("kept_from", {})
        return None


def packaged_path(version: str = DEFAULT_VERSION) -> Path:
    """The path of the packaged calibration of `version` (`archsim/gpu/calibration/<version>.yaml`)."""
    return Path(str(importlib.resources.files("archsim.gpu") / CALIBRATION_DIR / f"{version}.yaml"))


def packaged_versions() -> list[str]:
    """The version names of the packaged calibrations (`v1`, `v2`)."""
    return sorted(p.stem for p in packaged_path().parent.glob("*.yaml"))


def load_calibration(path_or_version: str | Path = DEFAULT_VERSION) -> Calibration:
    """A packaged calibration by version name (`v1`, `v2`) or a calibration YAML by path."""
    text = str(path_or_version)
    path = Path(text) if is_spec_path(text) else packaged_path(text)
    if not is_file(path, text):
        raise SpecError(text, "", "no such calibration file" if is_spec_path(text) else
                        f"no such calibration file in the package (packaged: {', '.join(packaged_versions())})")
    return calibration_from_dict(read_yaml(path), str(path))


def is_calibration(path: Path) -> bool:
    """`path` holds a calibration as `archsim calibrate` writes one (this module's format): a YAML mapping with the
    keys `calibration_from_dict` requires (`REQUIRED_KEYS`). A file that cannot be read or parsed as YAML is none."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, yaml.YAMLError):  # ValueError: not UTF-8
        return False
    return isinstance(data, dict) and set(REQUIRED_KEYS) <= data.keys()


# what `archsim calibrate --out` writes, for `archsim.outputs.check_writable`: it replaces only an earlier calibration
CALIBRATION = OutputKind(f"a calibration YAML: {', '.join(REQUIRED_KEYS)}", is_calibration)


def split_rule(seqlens: tuple[int, ...]) -> str:
    """The split rule that calibrating on `seqlens` makes, in words: what `split.rule` must begin with."""
    listed = ", ".join(map(str, seqlens[:-1])) + f" or {seqlens[-1]}" if len(seqlens) > 1 else str(seqlens[0])
    return f"calibrate on rows whose seqlen (KV length for decode) is {listed}; hold out every other row"


def calibration_from_dict(data: Any, source: str = "<python>") -> Calibration:
    """Validate `data` (the YAML form, module docstring) into a Calibration blamed on `source`; every problem is a
    SpecError naming the field."""
    if not isinstance(data, Mapping):
        raise SpecError(source, "", "expected a mapping with version, split, families")
    check_keys(data, KEYS, source)
    for key in REQUIRED_KEYS:
        if key not in data:
            raise SpecError(source, key, "missing")
    if isinstance(data["version"], bool) or not isinstance(data["version"], int) or data["version"] < 1:
        raise SpecError(source, "version", f"expected a positive integer, got {data['version']!r}")
    if "model" in data and data["model"] != MODEL:
        raise SpecError(source, "model", f"expected {MODEL} (the model these parameters are of), got {data['model']!r}")
    seqlens, rule = _split(data["split"], source)
    families = data["families"]
    if not isinstance(families, Mapping):
        raise SpecError(source, "families", "expected a mapping family -> {params, ...}")
    params, fitted, fit = {}, {}, {}
    for name, entry in families.items():
        where = f"families.{name}"
        if name not in FAMILIES:
            raise SpecError(source, where, f"unknown kernel family (known: {', '.join(FAMILIES)})")
        params[name], fitted[name], fit[name] = _family(name, entry, source, where)
    for name in FAMILIES:
        if name not in params and _own_fitted(name, params):
            raise SpecError(source, f"families.{name}", f"missing: {name} fits parameters of its own "
                                                        f"({', '.join(_own_fitted(name, params))}), so a calibration "
                                                        "lists it (only a family whose fitted parameters all come "
                                                        "from listed families may be left out)")
    return Calibration(data["version"], source, rule, seqlens, params, fitted, fit,
                       _record(data.get("measurements"), source, "measurements"))


def _split(split: Any, source: str) -> tuple[tuple[int, ...], str]:
    """(calibration sequence lengths, rule) of the `split` mapping; the rule, when given, begins with the one the
    lengths make (`split_rule`), which it is when not given."""
    if not isinstance(split, Mapping):
        raise SpecError(source, "split", "expected a mapping with calibration_seqlens (and optionally rule)")
    check_keys(split, SPLIT_KEYS, source, "split")
    seqlens = split.get("calibration_seqlens")
    if not isinstance(seqlens, list) or not seqlens:
        raise SpecError(source, "split.calibration_seqlens", f"expected a non-empty list of sequence lengths, got "
                                                             f"{seqlens!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in seqlens) \
            or len(set(seqlens)) < len(seqlens):
        raise SpecError(source, "split.calibration_seqlens", f"expected distinct positive integers, got {seqlens!r}")
    derived = split_rule(tuple(seqlens))
    rule = split.get("rule", derived)
    if not isinstance(rule, str) or not rule.startswith(derived):
        raise SpecError(source, "split.rule", f"expected a rule beginning '{derived}' (the split "
                                              f"calibration_seqlens {seqlens} makes), or no rule; got {rule!r}")
    return tuple(seqlens), rule


def _family(name: str, entry: Any, source: str, where: str) -> tuple[dict[str, float], tuple[str, ...], dict]:
    """(parameters, fitted parameter names, fit statistics) of one family's entry: every parameter given."""
    if isinstance(entry, Mapping):
        check_keys(entry, FAMILY_KEYS, source, where)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("params"), Mapping):
        raise SpecError(source, f"{where}.params", "expected a mapping parameter -> value")
    known = FAMILIES[name].params
    params = {p: _param(name, p, v, source, f"{where}.params.{p}") for p, v in entry["params"].items()}
    missing = [p for p in known if p not in params]
    if missing:
        raise SpecError(source, f"{where}.params.{missing[0]}", f"missing: a family listed gives every parameter "
                                                                f"({', '.join(known)}); a file written before "
                                                                f"archsim modelled it is refitted by `archsim "
                                                                f"calibrate`, or takes the prior "
                                                                f"{known[missing[0]].prior:g} written in")
    names = _note(entry.get("fitted") or [], "names", source, f"{where}.fitted", name)
    _note(entry.get("kernels", ""), "text", source, f"{where}.kernels")
    _notes(entry.get("meaning"), dict.fromkeys(known, "text"), source, f"{where}.meaning")
    return params, tuple(names), _notes(entry.get("fit"), FIT_KEYS, source, f"{where}.fit", name)


def _own_fitted(family: str, listed: Mapping[str, object]) -> list[str]:
    """The fitted parameters of `family` that no family in `listed` gives it (`Param.shared_from`)."""
    return [n for n, p in FAMILIES[family].params.items() if p.fitted and p.shared_from not in listed]


def _mapping(value: Any, source: str, where: str) -> dict:
    """An optional mapping of notes (fit statistics, the measurements file): absent is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(source, where, f"expected a mapping, got {value!r}")
    return dict(value)


def _record(value: Any, source: str, where: str, keys: Mapping[str, str] = RECORD_KEYS) -> dict:
    """The `measurements` record, each note of the kind `keys` gives it; `families` (absent: a full fit) and
    `kept_from` (the base's record, its version beside) are what `Calibration.fitted_on` reads."""
    record = _notes(value, {**keys, "kept_from": "record"}, source, where)
    if "kept_from" in record:
        record["kept_from"] = _record(record["kept_from"], source, f"{where}.kept_from", KEPT_KEYS)
    if "sha256" in record and "fitted_rows" not in record:
        raise SpecError(source, f"{where}.fitted_rows", "missing: the record names the file fitted on (sha256) but "
                                                        "not its rows, which `archsim validate` splits by (a "
                                                        "calibration written before archsim recorded them); refit "
                                                        "it with `archsim calibrate`")
    return record


def _notes(value: Any, keys: Mapping[str, str], source: str, where: str, family: str = "") -> dict:
    """An optional mapping of notes (absent: empty), only `keys`, each of the kind `keys` gives it (`_note`)."""
    notes = _mapping(value, source, where)
    check_keys(notes, tuple(keys), source, where)
    for key, note in notes.items():
        if keys[key] != "record":
            _note(note, keys[key], source, f"{where}.{key}", family)
    return notes


def _note(value: Any, kind: str, source: str, where: str, family: str = "") -> Any:
    """`value` if it is of `kind` (text; a count, a whole number >= 0; a number, finite and >= 0; names, a list of
    parameter names of `family`; families, a non-empty list of kernel families; gpus, a non-empty list of the GPUs
    a family's rows ran on (`archsim.gpu.load.content_reference`); labels, a mapping GPU label -> the
    preset or file it was mapped to; digests, a list of row digests), else a SpecError naming `where` and what was
    expected."""
    params = FAMILIES[family].params if family else {}
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    listed = isinstance(value, list) and all(isinstance(v, str) for v in value)
    good, expected = {
        "text": (isinstance(value, str), "text"),
        "count": (number and isinstance(value, int) and value >= 0, "a whole number >= 0"),
        "number": (number and math.isfinite(value) and value >= 0, "a finite number >= 0"),
        "names": (listed and all(v in params for v in value),
                  f"a list of parameter names of {family} (known: {', '.join(params)})"),
        "families": (listed and bool(value) and all(v in FAMILIES for v in value),
                     f"a non-empty list of kernel families (known: {', '.join(FAMILIES)})"),
        "gpus": (listed and bool(value) and all(v.strip() for v in value),
                 "a non-empty list of GPU preset names or files"),
        "labels": (isinstance(value, Mapping) and all(isinstance(v, str) for v in (*value, *value.values())),
                   "a mapping GPU label -> the GPU preset or file it names"),
        "digests": (listed and all(ROW_DIGEST.fullmatch(v) for v in value),
                    f"a list of row digests ({ROW_DIGEST_HEX} lowercase hex digits each)"),
    }[kind]
    if not good:
        raise SpecError(source, where, f"expected {expected}, got {value!r}")
    return value


def _param(family: str, name: str, value: Any, source: str, where: str) -> float:
    problem = param_problem(family, name, value)
    if problem:
        raise SpecError(source, where, problem)
    return float(value)
