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
`archsim.model.analytical`'s (its docstring states the assumptions); this module applies the same float operations
in the same order to columns, so a column equals the single path's value (on the 500 random demo-space points of
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

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.cascade.syntax import BinOp, Call, Expr, Name, Num
from archsim.errors import SpecError
from archsim.mapping.overlap import parse_pipeline, side_by_side
from archsim.mapping.resolve import numbers_key, numbers_read
from archsim.mapping.spec import Mapping as MappingSpec
from archsim.model.analytical import add_group_totals, plans, price
from archsim.model.arch_columns import Column, Columns, stacked, value_at, with_numbers
from archsim.model.plan import GroupPlan, transfer_actions
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
            self.energy_pj.tolist(), self.area_um2.tolist(), self.dram_traffic_bytes().tolist(),
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
    its errors name), its word (refused where it is not the tensors'), its levels' and units' names, each unit's
    dimensions and ops, and the energy actions."""
    return (arch.name, arch.source, arch.word_bytes, tuple(m.name for m in arch.memories),
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


@dataclass
class _GroupColumns:
    seconds: np.ndarray
    compute_cycles: np.ndarray
    memory_s: dict[str, np.ndarray]  # 0 where the level has no time
    traffic: dict[str, dict[str, np.ndarray]]
    energy: dict[Key, np.ndarray]
    busy: dict[str, np.ndarray]
    footprint_bytes: dict[str, float]
    reasons: dict[int, list[str]]  # point -> reasons, only for points with some


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
    """`analytical.price` over columns: the same operations in the same order."""
    n = cols.n
    parts = [_group(binding, cols, plan) for plan in group_plans]
    seconds = 0
    for p in parts:
        seconds = seconds + p.seconds
    cycles = seconds * cols.clock_hz
    traffic: dict[str, dict[str, np.ndarray]] = {m.name: {} for m in cols.levels}
    energy: dict[Key, np.ndarray] = {}
    busy: dict[str, np.ndarray] = {}
    memory_s: dict[str, np.ndarray] = {}
    footprint: dict[str, np.ndarray] = {}
    reasons: dict[int, list[str]] = {}
    compute_cycles = 0
    for p in parts:
        add_group_totals(p, traffic, energy, busy, memory_s, footprint, np.maximum)
        for i, texts in p.reasons.items():
            reasons.setdefault(i, []).extend(texts)
        compute_cycles = compute_cycles + p.compute_cycles
    for m in cols.levels:
        leak = m.actions_pj.get("leak")
        if leak is not None and np.any(leak):
            key = (m.name, "leak")
            energy[key] = energy.get(key, 0) + leak * m.instances * cycles
    energy_pj = 0
    for value in energy.values():
        energy_pj = energy_pj + value
    with np.errstate(divide="ignore", invalid="ignore"):
        utilization = {u: np.where(cycles != 0, busy.get(u, 0) / (cols.lanes(u) * cycles), 0.0) for u in cols.units}
    feasible = np.ones(n, dtype=bool)
    feasible[list(reasons)] = False
    return {"latency_s": _full(seconds, n), "energy_pj": _full(energy_pj, n), "area_um2": _full(cols.area, n),
            "compute_cycles": _full(compute_cycles, n), "feasible": feasible,
            "reasons": {i: "; ".join(texts) for i, texts in reasons.items()},
            "traffic_bytes": {lv: {t: _full(c, n) for t, c in per.items()} for lv, per in traffic.items()},
            "memory_s": {lv: _full(c, n) for lv, c in memory_s.items()},
            "energy_by": {k: _full(c, n) for k, c in energy.items()},
            "utilization": {u: _full(c, n) for u, c in utilization.items()},
            "footprint_bytes": {lv: _full(c, n) for lv, c in footprint.items()}}


def _full(value: Column, n: int) -> np.ndarray:
    """`value` as an array of n values."""
    if isinstance(value, np.ndarray) and value.shape == (n,):
        return value
    return np.full(n, value, dtype=float)


def _points(holds: np.ndarray | bool, n: int) -> list[int]:
    """The points where `holds` (one bool: all or none)."""
    if np.ndim(holds):
        return np.flatnonzero(holds).tolist()
    return list(range(n)) if holds else []


def _group(binding: Binding, cols: Columns, plan: GroupPlan) -> _GroupColumns:
    """`analytical._group` over columns."""
    group = plan.group
    n = cols.n
    levels = cols.levels
    energy: dict[Key, np.ndarray] = {}
    busy: dict[str, np.ndarray] = {}
    cycles: dict[str, np.ndarray] = {}
    for ep in plan.einsums:
        unit = cols.units[ep.unit]
        if ep.pipelined:
            lane_cycles = ep.most_ops * functools.reduce(np.maximum, [unit.op_cycles[op] for op, _ in ep.op_counts])
        else:
            lane_cycles = 0
            for op, count in ep.op_counts:
                lane_cycles = lane_cycles + count * unit.op_cycles[op]
        for slot, op, count in ep.priced:
            key = plan.energy_keys[slot]
            energy[key] = energy.get(key, 0) + count * unit.op_pj[op]
        busy[ep.unit] = busy.get(ep.unit, 0) + lane_cycles
        cycles[ep.name] = lane_cycles / ep.lanes
    compute_cycles = _overlap(plan, cycles)
    reasons = _fanout_reasons(cols, group, plan)
    _overlap_reasons(cols, group, plan, cycles, compute_cycles, reasons)
    for i in range(cols.n) if plan.reasons else ():  # the loop nest's own, first (as `analytical`)
        reasons[i] = [*plan.reasons, *reasons.get(i, [])]

    for slot, index, action, bits in plan.actions:
        key = plan.energy_keys[slot]
        level = levels[index]
        energy[key] = energy.get(key, 0) + bits / level.access_bits * level.actions_pj[action]
    traffic: dict[str, dict[str, np.ndarray | float]] = {lv: dict(per) for lv, per in plan.traffic.items()}
    spilled = False
    for index in plan.held:
        m = levels[index]
        footprint = plan.footprint_bytes[m.name]
        overflow = footprint - m.capacity_bytes
        over = overflow > 0
        if not np.any(over):
            continue
        spillable = plan.spillable.get(m.name, 0)
        full = over & (overflow > spillable)
        kept = ", ".join(plan.kept_at.get(m.name, ())) or "hand-offs between units"
        for i in _points(full, n):
            reasons.setdefault(i, []).append(f"group {group.name}: {m.name} holds {footprint:.0f} B of tiles "
                                             f"({kept}), over its capacity of {int(value_at(m.capacity_bytes, i))} B")
        spill = over & ~full
        if not np.any(spill):
            continue
        spilled = True
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(spill, overflow / spillable, 0.0)
        _spill(binding, cols, plan, index, fraction, spill, traffic, energy)
    moved = plan.moved
    if spilled:
        moved = {}
        for level, per in traffic.items():
            total = 0
            for value in per.values():
                total = total + value
            moved[level] = total
    memory_s = {}
    seconds = compute_cycles / cols.clock_hz
    for m in levels:
        level_moved = moved.get(m.name, 0)
        limited = m.bandwidth_bytes_per_s != 0
        if not np.any(limited & (np.asarray(level_moved) != 0)):
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            level_s = np.where(limited, level_moved / m.bandwidth_bytes_per_s, 0.0)
        memory_s[m.name] = level_s
        seconds = np.maximum(seconds, level_s)
    return _GroupColumns(_full(seconds, n), _full(compute_cycles, n), memory_s, traffic, energy, busy,
                         plan.footprint_bytes, reasons)


def _spill(binding: Binding, cols: Columns, plan: GroupPlan, index: int, fraction: np.ndarray, spill: np.ndarray,
           traffic: dict, energy: dict[Key, np.ndarray]) -> None:
    """`analytical._spill` over columns: the spilled part's accesses added where `spill` (0 elsewhere)."""
    levels = cols.levels
    names = tuple(m.name for m in levels)
    word = binding.word_bytes
    parent = plan.parent_of[names[index]]
    into = traffic.setdefault(names[parent], {})
    for s in plan.spills[names[index]]:
        elems = s.elems * fraction
        into[s.tensor] = into.get(s.tensor, 0.0) + elems * (s.reads + s.writes) * word
        for accesses, inward in ((s.reads, True), (s.writes, False)):
            bits = elems * accesses * word * 8
            for key, at, action, _ in transfer_actions(names, parent, len(names), accesses, inward):
                spent = bits / levels[at].access_bits * levels[at].actions_pj[action]
                energy[key] = energy.get(key, 0) + np.where(spill, spent, 0.0)


def _fanout_reasons(cols: Columns, group, plan: GroupPlan) -> dict[int, list[str]]:
    """`analytical._fanout_reasons` per point: point -> its reasons, for the points with some."""
    reasons: dict[int, list[str]] = {}
    for unit_name, d, fanout, along in plan.fanouts:
        shape = cols.units[unit_name].shape
        bad = _points(fanout > shape[d], cols.n)
        if not bad:
            continue
        named = " x ".join(f"{lp.path or f'loops[{i}] rank {lp.rank}'} = {lp.factor}" for i, lp in along)
        for i in bad:
            pes = [int(value_at(s, i)) for s in shape]
            reasons.setdefault(i, []).append(
                f"group {group.name}: {named} spreads {fanout} over unit {unit_name}, which has {pes[d]} PEs "
                f"along dimension {d} (shape {' x '.join(map(str, pes))})")
    return reasons


def _overlap_reasons(cols: Columns, group, plan: GroupPlan, cycles: dict[str, np.ndarray],
                     compute_cycles: np.ndarray, reasons: dict[int, list[str]]) -> None:
    """`analytical._overlap_reasons`, added for the points without fan-out reasons."""
    fanned = set(reasons)
    values = {**plan.delay_sizes, **cycles}
    windows = [("its overlap", compute_cycles, None), *((f"its overlap's {text}", _pipeline(node, values), set(names))
                                                        for node, text, names in side_by_side(group.overlap))]
    for what, window_cycles, names in windows:
        found = set()
        for unit_name, mine in plan.by_unit:
            inside = [(e, lanes) for e, lanes in mine if names is None or e in names]
            busy = 0
            for e, lanes in inside:
                busy = busy + cycles[e] * lanes
            lanes_of = cols.lanes(unit_name)
            for i in _points(busy > lanes_of * window_cycles * (1 + 1e-9), cols.n):
                if i in fanned:
                    continue
                b, c, lanes = float(value_at(busy, i)), float(value_at(window_cycles, i)), int(value_at(lanes_of, i))
                found.add(i)
                reasons.setdefault(i, []).append(
                    f"group {group.name}: {what} runs {', '.join(e for e, _ in inside)} side by side on unit "
                    f"{unit_name} in {c:.0f} cycles, but their {b:.0f} PE-cycles need {b / lanes:.0f} cycles of "
                    f"its {lanes} PEs")
        fanned |= found


def _overlap(plan: GroupPlan, cycles: dict[str, np.ndarray]) -> np.ndarray:
    if plan.group.overlap == "sequential":
        total = 0
        for value in cycles.values():
            total = total + value
        return total
    if plan.group.overlap == "max":
        per_unit: dict[str, np.ndarray] = {}
        for ep in plan.einsums:
            per_unit[ep.unit] = per_unit.get(ep.unit, 0) + cycles[ep.name]
        return functools.reduce(np.maximum, per_unit.values())
    return _pipeline(parse_pipeline(plan.group.overlap), {**plan.delay_sizes, **cycles})


def _pipeline(node: Expr, values: dict[str, np.ndarray | int]) -> np.ndarray:
    """`archsim.mapping.overlap.compile_pipeline`'s value over columns (max elementwise)."""
    match node:
        case Name(name=name):
            return values[name]
        case Num(value=value):
            return value
        case BinOp(op="+", lhs=lhs, rhs=rhs):
            return _pipeline(lhs, values) + _pipeline(rhs, values)
        case BinOp(op="*", lhs=lhs, rhs=rhs):
            return _pipeline(lhs, values) * _pipeline(rhs, values)
        case Call(fn="max", args=args):
            return functools.reduce(np.maximum, [_pipeline(a, values) for a in args])
    raise ValueError(f"not a pipeline expression: {node!r}")
