"""`SweepSpec`: a design-space sweep as a typed, validated spec.

A sweep is one base point (mapping, optional cascade/arch/workload, `sets`) plus ordered axes. An axis path is
`arch.<dotted path>` (an `Architecture.with_changes` path such as `arch.units.array2d.shape`) or
`workload.<param>` (a size bound like a `sets` entry, e.g. `workload.seq_len`). Points are drawn from the axes by
`grid` (cartesian product), `random` or `lhs` (Latin hypercube) sampling; `constraints` such as
`area_um2 <= 4e8` and `objectives` name record metrics (see `METRICS`).

A *linked* axis (`linked.<name>`) sets several fields together: `{values: [...], set: {path: template}}`, each
template a number, a size expression of `<name>` (`pe_dim * pe_dim`) or a list of those (`[pe_dim, pe_dim]`), so
one axis can resize a whole array (2-D shape, 1-D lanes, register files, tile size) consistently.

`gpus` adds the same attention on GPU presets: every combination of the sweep's `workload.` axis values on each
listed GPU, timed by the GPU model (`archsim.model.gpu`) with a kernel of its library (FlashAttention-2 by
default) and the packaged calibration. The accelerator's `arch.` axes do not apply to those points.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsim import library
from archsim.cascade.bind import eval_size
from archsim.cascade.load import read_yaml
from archsim.cascade.syntax import ParseError, parse_expr
from archsim.errors import SpecError, check_keys
from archsim.gpu.load import load_gpu
from archsim.model.gpu_kernels import KERNELS, PRECISIONS

METRICS = ("latency_s", "energy_pj", "area_um2", "dram_traffic_bytes", "edp")  # edp = latency_s * energy_pj
SAMPLING_KINDS = ("grid", "random", "lhs")
AXIS_ROOTS = ("arch", "workload", "linked")
FIELD_ROOTS = ("arch", "workload")  # what an axis value or a linked template finally sets
_OPS = ("<=", ">=", "==", "<", ">")
_CONSTRAINT = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|==|<|>)\s*([-+0-9.eE]+)\s*$")
_KEYS = {"name", "description", "mapping", "cascade", "arch", "workload", "sets", "axes", "sampling",
         "constraints", "objectives", "gpus"}
_GPU_KEYS = ("presets", "kernel", "causal", "precision")


def axis_missing(value: Any) -> bool:
    """An axis that does not apply to the point's target (a GPU has no `arch.` axes): NaN in the records."""
    return isinstance(value, float) and math.isnan(value)


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # one of _OPS
    bound: float

    def holds(self, value: float) -> bool:
        return {"<=": value <= self.bound, ">=": value >= self.bound, "==": value == self.bound,
                "<": value < self.bound, ">": value > self.bound}[self.op]


@dataclass(frozen=True)
class Sampling:
    kind: str = "grid"  # one of SAMPLING_KINDS
    samples: int = 0  # points drawn by random / lhs (unused by grid)
    seed: int = 0


@dataclass(frozen=True)
class GpuTargets:
    """GPU presets that run the sweep's attention: `kernel` (a name of `archsim.model.gpu_kernels.KERNELS`), a
    forward pass, causal or not, at `precision`."""

    presets: tuple[str, ...]
    kernel: str = "FlashAttention-2"
    causal: bool = False
    precision: str = "fp16"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    mapping: str
    axes: dict[str, list[Any]]  # path -> values, in axis order
    description: str = ""
    cascade: str | None = None
    arch: str | None = None
    workload: str | None = None
    sets: dict[str, float] = field(default_factory=dict)
    sampling: Sampling = field(default_factory=Sampling)
    constraints: tuple[Constraint, ...] = ()
    objectives: tuple[str, ...] = ("latency_s", "energy_pj")
    gpus: GpuTargets | None = None
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # linked axis -> {field path: template}
    source: str = "<python>"

    def fields(self, point: dict[str, Any]) -> dict[str, Any]:
        """The field changes a point makes: its `arch.`/`workload.` values and what its linked axes set."""
        out = {p: v for p, v in point.items() if p.partition(".")[0] in FIELD_ROOTS}
        for path, value in point.items():
            if path in self.links:
                out.update(linked_fields(path, self.links[path], value, self.source))
        return out


def linked_fields(path: str, templates: dict[str, Any], value: Any, source: str) -> dict[str, Any]:
    """The fields linked axis `path` sets at `value`: each template rendered with the axis's name bound to it."""
    name = path.removeprefix("linked.")

    def render(template: Any, where: str) -> Any:
        if isinstance(template, list):
            return [render(t, f"{where}[{i}]") for i, t in enumerate(template)]
        if isinstance(template, bool) or not isinstance(template, str | int | float):
            raise SpecError(source, where, f"expected a number, an expression of {name} or a list, got {template!r}")
        if not isinstance(template, str):
            return template
        try:
            result = eval_size(parse_expr(template), {name: value})
        except (ParseError, KeyError, TypeError) as e:
            raise SpecError(source, where, f"cannot evaluate {template!r} with {name}={value!r}: {e}") from None
        return int(result) if float(result).is_integer() else result

    return {target: render(t, f"axes.{path}.set.{target}") for target, t in templates.items()}

def load_sweep(path: str | Path) -> SweepSpec:
    return sweep_from_dict(read_yaml(Path(path)), str(path))


def sweep_from_dict(data: Any, source: str = "<python>") -> SweepSpec:
    """Validate `data` (the YAML form) into a SweepSpec; every problem is a SpecError naming its field."""
    if not isinstance(data, dict):
        raise SpecError(source, "", "a sweep is a mapping")
    check_keys(data, sorted(_KEYS), source)
    for key in ("name", "mapping", "axes"):
        if key not in data:
            raise SpecError(source, key, "required")
    for key in ("name", "mapping", "description", "cascade", "arch", "workload"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise SpecError(source, key, "expected a string")
    sets = data.get("sets") or {}
    if not isinstance(sets, dict):
        raise SpecError(source, "sets", "expected a mapping of size name -> number")
    links = _links(data["axes"], source)
    spec = SweepSpec(
        name=data["name"], mapping=data["mapping"],
        axes={p: (v["values"] if p in links else v) for p, v in _axes(data["axes"], source).items()},
        links=links,
        description=data.get("description") or "", cascade=data.get("cascade"), arch=data.get("arch"),
        workload=data.get("workload"), sets=dict(sets), sampling=_sampling(data.get("sampling") or {}, source),
        constraints=tuple(_constraint(c, f"constraints[{i}]", source)
                          for i, c in enumerate(_list(data.get("constraints") or [], "constraints", source))),
        objectives=tuple(_objective(o, f"objectives[{i}]", source)
                         for i, o in enumerate(_list(data.get("objectives") or ["latency_s", "energy_pj"],
                                                     "objectives", source))),
        gpus=_gpus(data.get("gpus"), source, bool(data.get("workload"))),
        source=source,
    )
    _check_arch_axes(spec)
    return spec


def base_architecture_name(spec: SweepSpec) -> str:
    return spec.arch or library.load_mapping_spec(spec.mapping).architecture


def _list(value: Any, where: str, source: str) -> list:
    if not isinstance(value, list):
        raise SpecError(source, where, "expected a list")
    return value


def _axes(axes: Any, source: str) -> dict[str, list[Any]]:
    if not isinstance(axes, dict) or not axes:
        raise SpecError(source, "axes", "expected a non-empty mapping of path -> list of values")
    for path, values in axes.items():
        where = f"axes.{path}"
        root, _, rest = str(path).partition(".")
        if root not in AXIS_ROOTS or not rest:
            raise SpecError(source, where, "an axis path starts with 'arch.' or 'workload.'")
        if root in ("workload", "linked") and "." in rest:
            raise SpecError(source, where, f"a {root} axis is one name, e.g. {root}.seq_len")
        if root == "linked":
            continue  # checked by _links
        if not isinstance(values, list):
            raise SpecError(source, where, "expected a list of values")
        if not values:
            raise SpecError(source, where, "empty axis: give at least one value")
    return {str(p): v if str(p).startswith("linked.") else list(v) for p, v in axes.items()}


def _links(axes: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    links = {}
    for path, data in axes.items():
        if not str(path).startswith("linked."):
            continue
        where = f"axes.{path}"
        if not isinstance(data, dict):
            raise SpecError(source, where, "a linked axis is a mapping with values (a list) and set (path: template)")
        check_keys(data, ("values", "set"), source, where)
        values, templates = data.get("values"), data.get("set")
        if not isinstance(values, list) or not values:
            raise SpecError(source, f"{where}.values", "expected a non-empty list of values")
        if not isinstance(templates, dict) or not templates:
            raise SpecError(source, f"{where}.set", "expected a non-empty mapping of field path -> template")
        for target in templates:
            if str(target).partition(".")[0] not in FIELD_ROOTS or "." not in str(target):
                raise SpecError(source, f"{where}.set.{target}", "a linked field starts with 'arch.' or 'workload.'")
        for value in values:
            linked_fields(str(path), templates, value, source)  # every value renders
        links[str(path)] = dict(templates)
    return links


def _sampling(data: Any, source: str) -> Sampling:
    if not isinstance(data, dict):
        raise SpecError(source, "sampling", "expected a mapping with kind, samples, seed")
    check_keys(data, ("kind", "samples", "seed"), source, "sampling")
    kind = data.get("kind", "grid")
    if kind not in SAMPLING_KINDS:
        raise SpecError(source, "sampling.kind", f"'{kind}' is not one of {', '.join(SAMPLING_KINDS)}")
    samples, seed = data.get("samples", 0), data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SpecError(source, "sampling.seed", "expected an integer")
    if kind != "grid" and (not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0):
        raise SpecError(source, "sampling.samples", f"{kind} sampling needs a positive integer, got {samples!r}")
    return Sampling(kind, samples if isinstance(samples, int) else 0, seed)


def _gpus(data: Any, source: str, has_workload: bool) -> GpuTargets | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise SpecError(source, "gpus", "expected a mapping with presets, kernel, causal, precision")
    check_keys(data, _GPU_KEYS, source, "gpus")
    if not has_workload:
        raise SpecError(source, "gpus", "GPU points need the attention's shapes: give the sweep a workload")
    presets = data.get("presets")
    if not isinstance(presets, list) or not presets:
        raise SpecError(source, "gpus.presets", "expected a non-empty list of GPU preset names")
    for i, name in enumerate(presets):
        try:
            load_gpu(str(name))
        except SpecError as e:
            raise SpecError(source, f"gpus.presets[{i}]", e.message) from None
    targets = GpuTargets(tuple(str(p) for p in presets), data.get("kernel", GpuTargets.kernel),
                         data.get("causal", False), data.get("precision", GpuTargets.precision))
    if targets.kernel not in KERNELS:
        raise SpecError(source, "gpus.kernel", f"no GPU model for {targets.kernel!r} (known: {', '.join(KERNELS)})")
    if not isinstance(targets.causal, bool):
        raise SpecError(source, "gpus.causal", "expected true or false")
    if targets.precision not in PRECISIONS:
        raise SpecError(source, "gpus.precision", f"expected one of {', '.join(PRECISIONS)}")
    return targets


def _constraint(text: Any, where: str, source: str) -> Constraint:
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if not match:
        raise SpecError(source, where, f"expected '<metric> <op> <number>' with op in {' '.join(_OPS)}, "
                                       f"got {text!r}")
    metric, op, bound = match.groups()
    if metric not in METRICS:
        raise SpecError(source, where, f"unknown metric '{metric}' (known: {', '.join(METRICS)})")
    try:
        return Constraint(metric, op, float(bound))
    except ValueError:
        raise SpecError(source, where, f"'{bound}' is not a number") from None


def _objective(name: Any, where: str, source: str) -> str:
    if name not in METRICS:
        raise SpecError(source, where, f"unknown objective {name!r} (known: {', '.join(METRICS)})")
    return name


def _check_arch_axes(spec: SweepSpec) -> None:
    """Each arch axis's first value, and the arch fields of each linked axis's first value, must be changes the
    base architecture accepts."""
    checks = {f"axes.{p}": {p: spec.axes[p][0]} for p in spec.axes if p.startswith("arch.")}
    for path, templates in spec.links.items():
        fields = linked_fields(path, templates, spec.axes[path][0], spec.source)
        checks[f"axes.{path}"] = {f: v for f, v in fields.items() if f.startswith("arch.")}
    checks = {where: changes for where, changes in checks.items() if changes}
    if not checks:
        return
    base = library.load_architecture_spec(base_architecture_name(spec))
    for where, changes in checks.items():
        try:
            base.with_changes(**{p.removeprefix("arch."): v for p, v in changes.items()})
        except SpecError as e:
            raise SpecError(spec.source, where, e.message) from None
