"""Design points of a sweep: drawing them from the axes, keying them, and evaluating one (pure).

A point is `{axis path: value}`. Its key is the sha256 of the canonical JSON of the fully resolved
configuration (mapping, cascade, workload, the architecture after the point's changes, and the sizes after the
point's overrides), so the same configuration reached twice, by any spelling, has one key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import numpy as np

from archsim import library
from archsim.arch.spec import Architecture
from archsim.dse.spec import SweepSpec, base_architecture_name
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.point import prepare

Point = dict[str, Any]


def expand(spec: SweepSpec) -> list[Point]:
    """The sweep's points: grid = cartesian product in axis order; random = `samples` independent draws of a
    value per axis; lhs = `samples` Latin-hypercube points (each axis's [0, 1) split into `samples` strata, one
    draw per stratum, strata shuffled per axis, mapped onto the axis's value list). Seeded, so deterministic."""
    paths = list(spec.axes)
    if spec.sampling.kind == "grid":
        return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*spec.axes.values())]
    rng = np.random.default_rng(spec.sampling.seed)
    n = spec.sampling.samples
    if spec.sampling.kind == "random":
        columns = [rng.integers(0, len(spec.axes[p]), size=n) for p in paths]
    else:
        columns = [np.floor((rng.permutation(n) + rng.random(n)) / n * len(spec.axes[p])).astype(int)
                   for p in paths]
    return [{p: spec.axes[p][int(col[i])] for p, col in zip(paths, columns, strict=True)} for i in range(n)]


def point_key(spec: SweepSpec, point: Point) -> str:
    arch, sets = _resolve(spec, point)
    config = {"mapping": spec.mapping, "cascade": spec.cascade, "workload": spec.workload,
              "arch": arch.to_dict(), "sets": sets}
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def evaluate_point(spec: SweepSpec, point: Point) -> dict[str, Any]:
    """One flat record: key, the axis values, feasibility and metrics. A point that does not fit, or whose
    changes the model rejects (a SpecError), is a record with `feasible=False` and its reason, never a raise."""
    record: dict[str, Any] = {"key": point_key(spec, point), **point}
    metrics = dict.fromkeys(("latency_s", "energy_pj", "area_um2", "dram_traffic_bytes", "edp"), float("nan"))
    try:
        arch, sets = _resolve(spec, point)
        p = prepare(spec.mapping, cascade=spec.cascade, arch=arch, workload=spec.workload, sets=sets)
        result = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    except SpecError as e:
        return {**record, "feasible": False, "reason": str(e), **metrics, "constraint_ok": False}
    metrics = {"latency_s": result.latency_s, "energy_pj": result.energy_pj, "area_um2": result.area_um2,
               "dram_traffic_bytes": result.dram_traffic_bytes(), "edp": result.latency_s * result.energy_pj}
    ok = result.feasible and all(c.holds(metrics[c.metric]) for c in spec.constraints)
    return {**record, "feasible": result.feasible, "reason": result.reason, **metrics, "constraint_ok": ok}


def _resolve(spec: SweepSpec, point: Point) -> tuple[Architecture, dict[str, Any]]:
    """The architecture with the point's `arch.` changes and the sizes with its `workload.` overrides."""
    base = library.load_architecture_spec(base_architecture_name(spec))
    changes = {p.removeprefix("arch."): v for p, v in point.items() if p.startswith("arch.")}
    sets = {**spec.sets, **{p.removeprefix("workload."): v for p, v in point.items() if p.startswith("workload.")}}
    return (base.with_changes(**changes) if changes else base), sets


def _canonical(value: Any) -> Any:
    """JSON-stable form: tuples as lists, integral floats as ints (so 2**23 and 8388608.0 key alike)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return _canonical(value.item())
    return value
