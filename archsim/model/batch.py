"""The analytical model over many points at once: N points that share a bound cascade, analysis, mapping and the
architecture's structure (its level and unit names, the dimensions of each unit's shape, its ops and actions),
and differ only in the architecture's numbers, priced together with numpy.

Two entries:
- `evaluate_columns(binding, analysis, arch, mapping, numbers)`: `arch` with fields replaced per point, `numbers`
  mapping a field path (as a sweep axis spells it after `arch.`: `clock_hz`, `memories.GlobalBuffer.capacity_bytes`,
  `memories.DRAM.bandwidth_bytes_per_s`, `memories.RF.instances`, `units.array2d.shape` (an N x dims array),
  `units.array1d.op_cycles.exp`, `memories.DRAM.energy.actions_pj.read`, ...) to an array of N values. One plan.
- `evaluate_points(points)`: a list of prepared (binding, analysis, arch, mapping) points (array size, sequence
  length or batch change the binding or the mapping's factors, so the plan). Points are grouped by plan (the same
  binding, analysis and mapping objects, the same architecture structure and word size, and the capacities and unit
  shapes the mapping's factor expressions read, `archsim.mapping.resolve.numbers_key`); each group is planned once
  and priced as columns.

Both return a `BatchResult`: numpy columns of every metric of `archsim.model.result.Result` and `result(i)`, the
point's `Result`, and `records()`, each point's `archsim.record.Record`. The model is
`archsim.model.analytical`'s (its docstring states the assumptions), and so is the pricing: `analytical.totals`,
the code that prices one point, run on columns (each of the architecture's numbers an array over the points, or the
one value they share), so a column equals the single path's value (on the 500 random demo-space points of
tests/test_batch_eval.py every metric is bit-identical; the test allows a relative 1e-12: where a key of energy or
traffic exists for only some points of a plan, as spills add, a sum may meet its terms in another order). Reasons
(capacity, fan-out, overlap) are the single path's strings; a point of `evaluate_points` whose mapping cannot run
has the SpecError's text as its reason and NaN metrics. `result(i)` prices the point's plan with its numbers through
`analytical.price`, the single path itself. A dict metric (traffic per level and tensor, energy per action, memory
time per level) is a column per key that any point has, 0 where a point has none. A field every point shares stays
one float (numpy broadcasts it), so a call on a few points costs little more than its fixed ~0.3 ms.

The columns of an architecture's numbers, and how a column's values are checked, are
`archsim.model.arch_columns`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.errors import SpecError
from archsim.mapping.resolve import numbers_key, numbers_read
from archsim.mapping.spec import Mapping as MappingSpec
from archsim.model.analytical import plans, price, totals
from archsim.model.arch_columns import Column, Columns, stacked, with_numbers
from archsim.model.plan import GroupPlan
from archsim.model.result import Result
from archsim.record import Record

Key = tuple[str, str]  # (component, action) of an energy
@dataclass
class BatchResult:
    """Every metric of `Result` as a column over N points (dict metrics: a column per key, 0 where a point has
    none), and each point's `Result` on request."""

    latency_s: np.ndarray
    energy_pj: np.ndarray
    compute_cycles: np.ndarray
    feasible: np.ndarray  # bool
    reason: list[str]  # '' when feasible
    area_um2: np.ndarray
    traffic_bytes: dict[str, dict[str, np.ndarray]]  # level -> tensor -> bytes
    memory_s: dict[str, np.ndarray]  # level -> seconds its transfers take
    energy_by: dict[Key, np.ndarray]  # (component, action) -> pJ
    utilization: dict[str, np.ndarray]  # unit -> busy lane-cycles / (lanes x latency cycles)
    footprint_bytes: dict[str, np.ndarray]  # level -> bytes of tiles resident
    architecture: list[str]
    _result: Callable[[int], Result] = field(repr=False)

    def __len__(self) -> int:
        return len(self.latency_s)

    def result(self, i: int) -> Result:
        """Point i's `Result`, the single-point path's (`analytical.price` of its plan with its numbers)."""
        return self._result(i)

    @property
    def dram_traffic_bytes(self) -> np.ndarray:
        """Bytes moved across the outermost level's boundary, per point."""
        total = np.zeros(len(self))
        if self.traffic_bytes:
            for column in next(iter(self.traffic_bytes.values())).values():
                total = total + column
        return total

    def records(self) -> list[Record]:
        """Each point's `archsim.record.Record` (what `Result.record` gives), from the columns."""
        busy = [(u * self.latency_s).tolist() for u in self.utilization.values()]
        busy_by_point = [dict(zip(self.utilization, each, strict=True)) for each in zip(*busy, strict=True)]
        return [Record("architecture", *fields) for fields in zip(
            self.architecture, self.feasible.tolist(), self.reason, self.latency_s.tolist(),
            self.energy_pj.tolist(), self.area_um2.tolist(), self.dram_traffic_bytes.tolist(),
            busy_by_point, strict=True)]


def evaluate_columns(binding: Binding, analysis: Analysis, arch: Architecture, mapping: MappingSpec,
                     numbers: Mapping[str, np.ndarray | Sequence[float]], only_group: int | None = None) -> BatchResult:
    """`analytical.evaluate(binding, analysis, arch.with_changes(point i's numbers), mapping, only_group)` for
    every i, as columns. Raises SpecError for a mapping that cannot run (as `evaluate` does), for a path the batch
    path does not vary, for a bad value, and for a column of what the mapping's factor expressions read, a level's
    capacity or a unit's shape (`numbers_read`: that changes the plan; use `evaluate_points`)."""
    levels, units = numbers_read(mapping)
    for path in numbers:
        parts = path.split(".")
        if parts[0] == "memories" and parts[-1] == "capacity_bytes" and parts[1] in levels:
            read = f"capacity({parts[1]})"
        elif parts[0] == "units" and parts[-1] == "shape" and parts[1] in units:
            read = f"fanout({parts[1]}, AXIS)"
        else:
            continue
        raise SpecError(mapping.source, path, f"mapping {mapping.name} sizes its tiles from {read}, so this column "
                                              "changes the plan; evaluate these points with evaluate_points")
    cols = with_numbers(arch, numbers)
    group_plans = plans(binding, analysis, arch, mapping, only_group)
    return _assemble(cols.n, [(np.arange(cols.n), _Priced(binding, mapping.name, group_plans, cols), None)])


def evaluate_points(points: Sequence[tuple[Binding, Analysis, Architecture, MappingSpec]]) -> BatchResult:
    """`analytical.evaluate` of each prepared point, as columns: points grouped by plan, each group priced as
    columns. A point whose mapping cannot run (SpecError from `evaluate`) is infeasible with the error as its
    reason, and its `result(i)` raises that error."""
    groups: dict[tuple, list[int]] = {}
    for i, (binding, analysis, arch, mapping) in enumerate(points):
        structure = (id(binding), id(analysis), id(mapping), _structure(arch), numbers_key(arch, mapping))
        groups.setdefault(structure, []).append(i)
    parts = []
    for index in groups.values():
        binding, analysis, arch, mapping = points[index[0]]
        at = np.array(index)
        cols = stacked([points[i][2] for i in index])
        try:
            group_plans = plans(binding, analysis, arch, mapping, None)
        except SpecError as e:
            parts.append((at, None, e))
            continue
        parts.append((at, _Priced(binding, mapping.name, group_plans, cols), None))
    return _assemble(len(points), parts)


def _structure(arch: Architecture) -> tuple:
    """What of an architecture a plan (`analytical.plans`: `resolve.check_group`, `resolve_group`, `plan_group`)
    reads, besides the capacities and shapes a factor expression reads (`numbers_key`): its name and source (which
    its errors name), its word (refused where it is not the tensors'), its levels' names and the unit each has one
    instance per PE of, its units' names, each unit's dimensions and ops, and the energy actions."""
    return (arch.name, arch.source, arch.word_bytes, tuple((m.name, m.per_pe_of) for m in arch.memories),
            tuple((u.name, len(u.shape), tuple(u.op_cycles), tuple(u.energy.actions_pj)) for u in arch.units),
            tuple(tuple(m.energy.actions_pj) for m in arch.memories))


@dataclass
class _Priced:
    """One plan's points priced as columns (`_price`), and their single-path Results on request."""

    binding: Binding
    mapping_name: str
    plans: tuple[GroupPlan, ...]
    cols: Columns

    def result(self, j: int) -> Result:
        return price(self.binding, self.mapping_name, self.cols.numbers(j), self.plans)


def _assemble(n: int, parts: list[tuple[np.ndarray, _Priced | None, SpecError | None]]) -> BatchResult:
    """One BatchResult from the priced parts (each at its points' indices, in order)."""
    if len(parts) == 1 and parts[0][1] is not None:  # one plan for every point: its columns as they are
        priced = parts[0][1]
        out = _price(priced.binding, priced.plans, priced.cols)
        reason = [""] * n
        for i, text in out["reasons"].items():
            reason[i] = text
        return BatchResult(out["latency_s"], out["energy_pj"], out["compute_cycles"], out["feasible"], reason,
                           out["area_um2"], out["traffic_bytes"], out["memory_s"], out["energy_by"],
                           out["utilization"], out["footprint_bytes"], priced.cols.names, priced.result)
    metrics: dict[str, np.ndarray] = {k: np.zeros(n) for k in ("latency_s", "energy_pj", "compute_cycles",
                                                               "area_um2")}
    feasible = np.zeros(n, dtype=bool)
    reason = np.full(n, "", dtype=object)
    names = np.full(n, "", dtype=object)
    dicts: dict[str, dict] = {"traffic_bytes": {}, "memory_s": {}, "energy_by": {}, "utilization": {},
                              "footprint_bytes": {}}
    part_of = np.zeros(n, dtype=int)  # point -> its part
    position = np.zeros(n, dtype=int)  # point -> its index in its part
    for k, (at, priced, error) in enumerate(parts):
        part_of[at] = k
        position[at] = np.arange(len(at))
        if priced is None:
            reason[at] = str(error)
            for key in metrics:
                metrics[key][at] = math.nan
            continue
        out = _price(priced.binding, priced.plans, priced.cols)
        for key in metrics:
            metrics[key][at] = out[key]
        feasible[at] = out["feasible"]
        if out["reasons"]:
            failed = list(out["reasons"])
            reason[at[failed]] = list(out["reasons"].values())
        names[at] = priced.cols.names
        for key, per in dicts.items():
            for name, value in out[key].items():
                if isinstance(value, dict):
                    into = per.setdefault(name, {})
                    for inner, column in value.items():
                        into.setdefault(inner, np.zeros(n))[at] = column
                else:
                    per.setdefault(name, np.zeros(n))[at] = value

    def result(i: int) -> Result:
        _, priced, error = parts[part_of[i]]
        if error is not None:
            raise error
        return priced.result(int(position[i]))

    return BatchResult(metrics["latency_s"], metrics["energy_pj"], metrics["compute_cycles"], feasible, reason.tolist(),
                       metrics["area_um2"], dicts["traffic_bytes"], dicts["memory_s"], dicts["energy_by"],
                       dicts["utilization"], dicts["footprint_bytes"], names.tolist(), result)


def _price(binding: Binding, group_plans: tuple[GroupPlan, ...], cols: Columns) -> dict:
    """`analytical.totals` of the plans with the columns' numbers, each metric an array of n values."""
    n = cols.n
    p = totals(binding, cols.all_numbers(), group_plans, n)
    feasible = np.ones(n, dtype=bool)
    feasible[list(p.reasons)] = False
    return {"latency_s": _full(p.seconds, n), "energy_pj": _full(p.energy_pj, n), "area_um2": _full(cols.area, n),
            "compute_cycles": _full(p.compute_cycles, n), "feasible": feasible,
            "reasons": {i: "; ".join(texts) for i, texts in p.reasons.items()},
            "traffic_bytes": {lv: {t: _full(c, n) for t, c in per.items()} for lv, per in p.traffic.items()},
            "memory_s": {lv: _full(c, n) for lv, c in p.memory_s.items()},
            "energy_by": {k: _full(c, n) for k, c in p.energy.items()},
            "utilization": {u: _full(c, n) for u, c in p.utilization.items()},
            "footprint_bytes": {lv: _full(c, n) for lv, c in p.footprint_bytes.items()}}


def _full(value: Column, n: int) -> np.ndarray:
    """`value` as an array of n values."""
    if isinstance(value, np.ndarray) and value.shape == (n,):
        return value
    return np.full(n, value, dtype=float)
