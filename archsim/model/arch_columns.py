"""An architecture's numbers as columns over N points, for the batch path (`archsim.model.batch`): the fields
`analytical.read_numbers` reads (clock, per level capacity, bandwidth, access width, action energies, instances and
area, per unit shape, op cycles, op energies and area), each a numpy array over the points or one float that every
point shares (numpy broadcasts it).

`with_numbers(arch, {path: values})` replaces fields by the path a sweep axis spells after `arch.`, checking each
value as `archsim.arch.load` checks the field (a SpecError naming the field and the point); a memory with
`per_pe_of` takes its unit's lanes as its instances unless its instances are among the fields; `stacked(archs)` reads
architectures of one structure into columns. A unit's composite energy (exp priced as MACs) follows its parts as in
`Architecture.with_changes`; a memory's energy table with composites is not varied (SpecError). A memory's prices
stay quoted at their width and clock unless a column restates them, as `with_changes` keeps them
(`archsim.arch.quoted`): a restated read or write is quoted at the point's `energy_access_bits` where a column gives
it, else at its `access_bits` (the other carried there at its energy per bit), a restated leak at the point's
`clock_hz` unless a column gives `leak_clock_hz`.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from archsim.arch.load import MAX_VALUE
from archsim.arch.quoted import rescaled, restated
from archsim.arch.spec import Architecture
from archsim.errors import SpecError, kind_of
from archsim.model.analytical import ArchNumbers, LevelNumbers, UnitNumbers, value_at

Column = np.ndarray | float  # a field's values over the points, or its one value for all of them


@dataclass
class LevelColumns:
    """A memory level's numbers over the points (`Columns`): capacity, bandwidth, access width, action energies,
    instances and area."""

    name: str
    capacity_bytes: Column  # inf = unbounded
    bandwidth_bytes_per_s: Column  # 0 = no limit
    access_bits: Column
    actions_pj: dict[str, Column]
    energy_access_bits: Column  # the width read and write are quoted at
    leak_clock_hz: Column  # the clock leak is quoted at
    instances: Column
    area_um2: Column
    area_capacity_bytes: Column  # nan = area fixed
    per_pe_of: str | None = None  # instances follow this unit's lanes (`Memory.per_pe_of`)


@dataclass
class UnitColumns:
    """A compute unit's numbers over the points (`Columns`): shape, op cycles and energies (composites resolved) and
    area; `composed_of` keeps each composite's parts to re-derive its energy."""

    name: str
    shape: list[Column]  # per dimension
    op_cycles: dict[str, Column]
    op_pj: dict[str, Column]  # composites resolved
    area_um2: Column
    composed_of: dict[str, dict[str, float]]  # op -> {plain op: count}, for re-deriving a composite


@dataclass
class Columns:
    """An architecture's numbers over n points (its structure is one): each field an array of n values, or one
    float where every point has the same (numpy broadcasts it; the operations are the same)."""

    n: int
    names: list[str]  # the architecture's name per point
    clock_hz: Column
    levels: list[LevelColumns]
    units: dict[str, UnitColumns]

    def lanes(self, unit: str) -> Column:
        return functools.reduce(operator.mul, self.units[unit].shape)

    @functools.cached_property
    def area(self) -> Column:
        """`Architecture.area_um2`, per point, with its operations in its order."""
        units = 0
        for u in self.units.values():
            units = units + u.area_um2 * self.lanes(u.name)
        memories = 0
        for m in self.levels:
            with np.errstate(invalid="ignore"):
                scaled = (m.area_um2 * m.capacity_bytes) / m.area_capacity_bytes
            instance = np.where(np.isnan(m.area_capacity_bytes) | np.isinf(m.capacity_bytes), m.area_um2, scaled)
            memories = memories + instance * m.instances
        return units + memories

    def all_numbers(self) -> ArchNumbers:
        """Every point's numbers at once, as `analytical.totals` prices columns: each field a column, or the one
        value the points share; a level's capacity inf and its bandwidth 0 where unbounded (the name is the first
        point's: a batch reads each point's from `names`)."""
        levels = tuple(LevelNumbers(m.name, m.capacity_bytes, m.bandwidth_bytes_per_s, m.energy_access_bits,
                                    m.actions_pj, m.actions_pj.get("leak", 0.0) * m.instances, m.leak_clock_hz)
                       for m in self.levels)
        units = {u.name: UnitNumbers(u.name, tuple(u.shape), self.lanes(u.name), u.op_cycles, u.op_pj)
                 for u in self.units.values()}
        return ArchNumbers(self.names[0], self.clock_hz, self.area, levels, units)

    def numbers(self, i: int) -> ArchNumbers:
        """Point i's numbers, as `analytical.read_numbers` reads them from an Architecture."""
        levels = []
        for m in self.levels:
            room, bandwidth = float(value_at(m.capacity_bytes, i)), float(value_at(m.bandwidth_bytes_per_s, i))
            actions = {a: float(value_at(e, i)) for a, e in m.actions_pj.items()}
            levels.append(LevelNumbers(
                m.name, room if math.isinf(room) else int(room),
                bandwidth or None, int(value_at(m.energy_access_bits, i)), actions,
                actions.get("leak", 0.0) * int(value_at(m.instances, i)), float(value_at(m.leak_clock_hz, i))))
        units = {}
        for u in self.units.values():
            shape = tuple(int(value_at(s, i)) for s in u.shape)
            units[u.name] = UnitNumbers(u.name, shape, math.prod(shape),
                                        {op: int(value_at(c, i)) for op, c in u.op_cycles.items()},
                                        {op: float(value_at(e, i)) for op, e in u.op_pj.items()})
        return ArchNumbers(self.names[i], float(value_at(self.clock_hz, i)), float(value_at(self.area, i)),
                           tuple(levels), units)


def columns_of(arch: Architecture, n: int) -> Columns:
    """`arch`'s numbers for n points, one float per field."""

    def one(value: float | None, empty: float = 0.0) -> float:
        return empty if value is None else float(value)

    levels = [LevelColumns(m.name, one(m.capacity_bytes, math.inf), one(m.bandwidth_bytes_per_s),
                            one(m.access_bits), {a: one(e) for a, e in m.energy.actions_pj.items()},
                            one(m.energy_access_bits), one(m.leak_clock_hz), one(m.instances), one(m.area_um2),
                            one(m.area_capacity_bytes, math.nan), m.per_pe_of)
              for m in arch.memories]
    units = {u.name: UnitColumns(u.name, [float(s) for s in u.shape],
                                  {op: one(c) for op, c in u.op_cycles.items()},
                                  {op: one(e) for op, e in u.energy.actions_pj.items()}, one(u.area_um2),
                                  {op: dict(parts) for op, parts in u.energy.composed_of.items()})
             for u in arch.units}
    return Columns(n, [arch.name] * n, one(arch.clock_hz), levels, units)


def with_numbers(arch: Architecture, numbers: Mapping[str, np.ndarray | Sequence[float]]) -> Columns:
    """`arch`'s numbers for N points with the fields in `numbers` replaced (see the module docstring for the
    paths). A composite energy (exp priced as MACs) follows its parts, as in `Architecture.with_changes`."""
    source = f"{arch.source} (batch columns)"
    if not isinstance(numbers, Mapping):
        raise SpecError(source, "", f"expected a mapping of field path -> values, got {kind_of(numbers)}")
    arrays = {path: _column(values, source, path) for path, values in numbers.items()}
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) > 1:
        raise SpecError(source, ", ".join(arrays), f"expected arrays of one length, got lengths {sorted(lengths)}")
    cols = columns_of(arch, lengths.pop() if lengths else 1)
    levels = {m.name: m for m in cols.levels}
    changed_parts: dict[str, set[str]] = {}
    for path, values in arrays.items():
        parts = path.split(".")
        if parts == ["clock_hz"]:
            cols.clock_hz = _checked(values, source, path, positive=True, integer=False)
        elif len(parts) >= 3 and parts[0] == "memories" and parts[1] in levels:
            if parts[2] == "energy" and arch.memory(parts[1]).energy.composed_of:
                raise SpecError(source, path, "a memory energy table with composite actions is not varied by the "
                                              "batch path (use Architecture.with_changes and evaluate_points)")
            _set_level(levels[parts[1]], parts[2:], values, source, path)
        elif len(parts) >= 3 and parts[0] == "units" and parts[1] in cols.units:
            _set_unit(cols.units[parts[1]], parts[2:], values, source, path)
            if parts[2:4] == ["energy", "actions_pj"]:
                changed_parts.setdefault(parts[1], set()).add(parts[4])
        else:
            raise SpecError(source, path, f"not a field the batch path varies in {arch.name} (expected clock_hz, "
                                          "memories.LEVEL.capacity_bytes | bandwidth_bytes_per_s | access_bits | "
                                          "instances | area_um2 | area_capacity_bytes | energy_access_bits | "
                                          "leak_clock_hz | energy.actions_pj.ACTION, "
                                          "units.UNIT.shape | area_um2 | op_cycles.OP | energy.actions_pj.OP; "
                                          f"levels: {', '.join(levels)}; units: {', '.join(cols.units)})")
    for name, changed in changed_parts.items():
        unit = cols.units[name]
        for op, recipe in unit.composed_of.items():
            if op not in changed and changed & set(recipe):
                total = 0
                for part, count in recipe.items():
                    total = total + count * unit.op_pj[part]
                unit.op_pj[op] = total
    for m in cols.levels:
        width, leak = restated(arrays, m.name)
        if width:  # quoted at the width the columns give, else each point's, the other of read and write carried there
            if f"memories.{m.name}.energy_access_bits" not in arrays:
                m.energy_access_bits = m.access_bits
            m.actions_pj = rescaled(m.actions_pj, m.energy_access_bits / arch.memory(m.name).energy_access_bits, width)
        if leak:
            m.leak_clock_hz = cols.clock_hz
        if m.per_pe_of is not None and f"memories.{m.name}.instances" not in arrays:
            m.instances = cols.lanes(m.per_pe_of)  # one per PE, following a changed shape
        fixed = ~np.isnan(m.area_capacity_bytes)
        if np.any(fixed & np.isinf(m.capacity_bytes)):
            raise SpecError(source, f"memories.{m.name}.area_capacity_bytes",
                            "area cannot scale with an unbounded capacity (capacity_bytes is null)")
    return cols


def _set_level(level: LevelColumns, rest: list[str], values: np.ndarray, source: str, where: str) -> None:
    match rest:
        case ["capacity_bytes"]:
            level.capacity_bytes = _checked(values, source, where, positive=True, integer=True)
        case ["bandwidth_bytes_per_s"]:
            level.bandwidth_bytes_per_s = _checked(values, source, where, positive=True, integer=False)
        case ["access_bits"] | ["instances"] | ["area_capacity_bytes"] | ["energy_access_bits"]:
            setattr(level, rest[0], _checked(values, source, where, positive=True, integer=True))
        case ["leak_clock_hz"]:
            level.leak_clock_hz = _checked(values, source, where, positive=True, integer=False)
        case ["area_um2"]:
            level.area_um2 = _checked(values, source, where, positive=False, integer=False)
        case ["energy", "actions_pj", action] if action in level.actions_pj:
            level.actions_pj[action] = _checked(values, source, where, positive=False, integer=False)
        case _:
            raise SpecError(source, where, f"not a field of memory {level.name} the batch path varies (expected "
                                           "capacity_bytes, bandwidth_bytes_per_s, access_bits, instances, "
                                           "area_um2, area_capacity_bytes, energy_access_bits, leak_clock_hz or "
                                           "energy.actions_pj.ACTION; actions: "
                                           f"{', '.join(level.actions_pj)})")


def _set_unit(unit: UnitColumns, rest: list[str], values: np.ndarray, source: str, where: str) -> None:
    match rest:
        case ["shape"]:
            if values.ndim != 2 or values.shape[1] != len(unit.shape):
                raise SpecError(source, where, f"expected an N x {len(unit.shape)} array of fan-outs (the "
                                               f"plan fixes the unit's dimensions), got shape {values.shape}")
            checked = _checked(values, source, where, positive=True, integer=True)
            unit.shape = [checked[:, d] for d in range(len(unit.shape))]
        case ["op_cycles", op] if op in unit.op_cycles:
            unit.op_cycles[op] = _checked(values, source, where, positive=True, integer=True)
        case ["energy", "actions_pj", op] if op in unit.op_pj:
            unit.op_pj[op] = _checked(values, source, where, positive=False, integer=False)
            unit.composed_of.pop(op, None)
        case ["area_um2"]:
            unit.area_um2 = _checked(values, source, where, positive=False, integer=False)
        case _:
            raise SpecError(source, where, f"not a field of unit {unit.name} the batch path varies (expected shape, "
                                           f"area_um2, op_cycles.OP or energy.actions_pj.OP; ops: "
                                           f"{', '.join(unit.op_cycles)})")


def _column(values: Any, source: str, path: str) -> np.ndarray:
    """`values` as floats, one entry per point (a shape's row per point for `units.U.shape`): numbers only (a bool,
    a string or a ragged list is refused, as `Architecture.with_changes` refuses them)."""
    raw = np.asarray(values, dtype=object)
    if raw.ndim == 0:
        raise SpecError(source, path, f"expected an array of values, one per point, got {values!r}")
    bad = next((v for v in raw.ravel().tolist() if isinstance(v, bool) or not isinstance(v, int | float | np.number)),
               None)
    if bad is not None:
        raise SpecError(source, path, f"expected numbers, got {kind_of(bad)} {bad!r}")
    return raw.astype(float)


def _checked(values: np.ndarray, source: str, where: str, positive: bool, integer: bool) -> np.ndarray:
    """`values` if each is what the architecture loader accepts for the field, else SpecError naming the first."""
    ok = np.isfinite(values) & (values <= MAX_VALUE) & ((values > 0) if positive else (values >= 0))
    if positive:
        ok &= values >= (1 if integer else 1 / MAX_VALUE)
    if integer:
        ok &= values == np.floor(values)
    if not ok.all():
        i = np.unravel_index(int(np.argmin(ok)), ok.shape)
        kind = "positive integer" if integer else ("positive number" if positive else "non-negative number")
        raise SpecError(source, where, f"expected a {kind} at most {MAX_VALUE:g}, got {float(values[i])!r} at point "
                                       f"{i[0]}")
    return values


def stacked(archs: list[Architecture]) -> Columns:
    """Columns of the numbers of architectures of one structure (as `analytical.read_numbers` reads them)."""

    def col(values: list[float | None], empty: float = 0.0) -> np.ndarray:
        return np.array([empty if v is None else v for v in values], dtype=float)

    levels = []
    for j, m in enumerate(archs[0].memories):
        each = [a.memories[j] for a in archs]
        levels.append(LevelColumns(
            m.name, col([x.capacity_bytes for x in each], math.inf), col([x.bandwidth_bytes_per_s for x in each]),
            col([x.access_bits for x in each]),
            {action: col([x.energy.actions_pj[action] for x in each]) for action in m.energy.actions_pj},
            col([x.energy_access_bits for x in each]), col([x.leak_clock_hz for x in each]),
            col([x.instances for x in each]), col([x.area_um2 for x in each]),
            col([x.area_capacity_bytes for x in each], math.nan), m.per_pe_of))
    units = {}
    for j, u in enumerate(archs[0].units):
        each = [a.units[j] for a in archs]
        units[u.name] = UnitColumns(u.name, [col([x.shape[d] for x in each]) for d in range(len(u.shape))],
                                     {op: col([x.op_cycles[op] for x in each]) for op in u.op_cycles},
                                     {op: col([x.energy.actions_pj[op] for x in each]) for op in u.energy.actions_pj},
                                     col([x.area_um2 for x in each]), {})
    return Columns(len(archs), [a.name for a in archs], col([a.clock_hz for a in archs]), levels, units)
