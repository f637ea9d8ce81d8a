"""Typed architecture specs: storage levels, compute units, and the device they make up.

An `Architecture` is a chain of memories, outermost (DRAM) first, above a set of compute units (spatial arrays of
identical PEs). Units of measure are in the field names. Assumptions the models built on these specs rely on:
- A memory's `energy` has actions read and write (pJ per access) and optionally leak (pJ per cycle per instance),
  quoted at a width, `energy_access_bits`, and a clock, `leak_clock_hz` (by default its own `access_bits` and the
  architecture's `clock_hz`): an access of `access_bits` costs the quoted price x access_bits /
  energy_access_bits (energy per bit kept, Accelergy's widthscale) and the leak is a power, leak x leak_clock_hz,
  at any clock. A change that does not restate the prices keeps where they are quoted (`archsim.arch.quoted`).
  A memory with `per_pe_of` (a unit's name) has one instance per PE of that unit, e.g. a
  register file in every PE: its `instances` is the unit's lane count and follows the unit's shape when it changes.
  Its `area_um2` is per instance; DRAM is off chip and has area 0. With `area_capacity_bytes` set, `area_um2` is
  the area at that capacity and an instance's area scales linearly with `capacity_bytes` (an SRAM is mostly bit
  cells; its periphery, which grows more slowly, is not modelled). Without it the area is fixed whatever the
  capacity. Per-access energy never scales with capacity.
- A compute unit's PEs are identical. `op_cycles[op]` is the cycles one PE spends on one op; an op absent from
  it is unsupported. `energy.actions_pj` has exactly the keys of `op_cycles` (pJ per op); compute leakage is not
  modelled. `area_um2` is per PE.
- `area_um2()` is the sum of PE areas x lanes and memory areas x instances; wires and the network between PEs
  are not counted (the FuseMax artifact's Accelergy tables give them a placeholder area of 1 um^2).

Specs are built and validated by `archsim.arch.load`; `with_changes` goes through the same validation. They are
frozen all the way down: however built, a unit's `op_cycles` and each energy table's `actions_pj` and `composed_of`
are read-only copies (`archsim.frozen.ReadOnlyDict`) and the sequences tuples, since the library hands one loaded
architecture to every caller and caches key on its identity; a changed spec is a `dataclasses.replace` or
`with_changes`.
`ceil_div` is the tile count the models above (DRAM, GPU plans, NPU) round sizes up with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from archsim.arch.energy import EnergyTable, area_scale
from archsim.arch.quoted import leaves, settled
from archsim.errors import SpecError
from archsim.frozen import as_tuple, read_only


def ceil_div(a: int, b: int) -> int:
    """The whole units of `b` that cover `a` (ceil(a / b) in integer arithmetic, no float rounding): the tiles, folds
    or activation groups a hardware model counts for a size. Elementwise on numpy integer arrays too."""
    return -(-a // b)


@dataclass(frozen=True)
class Memory:
    """One storage level. `capacity_bytes` None = unbounded; `bandwidth_bytes_per_s` None = never a bottleneck."""

    name: str
    capacity_bytes: int | None
    bandwidth_bytes_per_s: float | None
    access_bits: int
    energy: EnergyTable
    energy_access_bits: int  # the width read and write are quoted at
    leak_clock_hz: float  # the clock leak (pJ per cycle) is quoted at
    area_um2: float
    instances: int = 1
    area_capacity_bytes: int | None = None  # the capacity `area_um2` is quoted at; None = area fixed
    per_pe_of: str | None = None  # a unit with one instance of this memory per PE (`instances` = its lanes)

    def instance_area_um2(self) -> float:
        """One instance's area at this capacity (see the module docstring)."""
        if self.area_capacity_bytes is None or self.capacity_bytes is None:
            return self.area_um2
        return self.area_um2 * self.capacity_bytes / self.area_capacity_bytes


@dataclass(frozen=True)
class ComputeUnit:
    """A spatial array of identical PEs with fan-out `shape` (e.g. (256, 256) or (256,))."""

    name: str
    shape: tuple[int, ...]
    op_cycles: Mapping[str, int]
    energy: EnergyTable
    area_um2: float

    def __post_init__(self) -> None:
        """Read-only copies (frozen: set once, here): `op_cycles` a `ReadOnlyDict`, `shape` a tuple (an energy table
        keeps its own dicts read-only: `EnergyTable`)."""
        object.__setattr__(self, "shape", as_tuple(self.shape))
        object.__setattr__(self, "op_cycles", read_only(self.op_cycles))

    @property
    def lanes(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Architecture:
    """A device. `source` is the file it came from (for messages), `citation` where its numbers come from."""

    name: str
    description: str
    source: str
    clock_hz: float
    word_bytes: int
    node_nm: float
    memories: tuple[Memory, ...]
    units: tuple[ComputeUnit, ...]
    citation: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "memories", as_tuple(self.memories))  # frozen: set once, here
        object.__setattr__(self, "units", as_tuple(self.units))

    def memory(self, name: str) -> Memory:
        return self._named("memories", self.memories, name)

    def unit(self, name: str) -> ComputeUnit:
        return self._named("units", self.units, name)

    def _named(self, kind: str, items: tuple, name: str):
        for item in items:
            if item.name == name:
                return item
        raise SpecError(self.source, f"{kind}.{name}",
                        f"no such {kind[:-1] if kind == 'units' else 'memory'} in {self.name} "
                        f"(known: {', '.join(i.name for i in items)})")

    def area_um2(self) -> float:
        """Chip area: PE area x lanes over units plus memory area x instances (DRAM counts 0)."""
        return (sum(u.area_um2 * u.lanes for u in self.units)
                + sum(m.instance_area_um2() * m.instances for m in self.memories))

    def scaled_to(self, node_nm: float) -> Architecture:
        """This design at `node_nm`: every on-chip energy table scaled from its own node, every on-chip area from
        `self.node_nm` (Stillmaker & Baas factors, see `archsim.arch.energy`). The outermost memory (DRAM) is
        another chip: its energy per access, set by its own process and its I/O, does not follow this design's logic
        node (HBM is 3.9 pJ/bit in the 45 nm FuseMax tables and 7.03 pJ/bit beside TPUv4i's 7 nm logic, fusemax.md
        §3.3), so it is kept, and so is its area (0 by convention: off chip). Clock, capacities and bandwidths are
        unchanged. A node outside the scaling tables is a ValueError naming the tabulated range."""
        if node_nm == self.node_nm and all(t.node_nm == node_nm for t in self._tables()[1:]):
            return self
        area = area_scale(self.node_nm, node_nm)
        dram, *on_chip = self.memories
        return replace(
            self,
            node_nm=float(node_nm),
            memories=(dram, *(replace(m, energy=m.energy.scaled_to(node_nm), area_um2=m.area_um2 * area)
                              for m in on_chip)),
            units=tuple(replace(u, energy=u.energy.scaled_to(node_nm), area_um2=u.area_um2 * area)
                        for u in self.units),
        )

    def with_changes(self, **overrides: Any) -> Architecture:
        """A copy with fields replaced by dotted path, validated like a YAML file, e.g.
        `arch.with_changes(clock_hz=1e9, **{"units.array2d.shape": (128, 128),
        "memories.GlobalBuffer.capacity_bytes": 2**24})`. Paths are the YAML paths of `to_dict()`; a composite
        energy (exp priced as MACs) is re-derived from its parts, so changing `...actions_pj.mac` moves it too. A
        memory's prices stay quoted at their width and clock unless the change restates them
        (`archsim.arch.quoted.settled`)."""
        from archsim.arch.load import OP_TYPES, architecture_from_dict

        data = settled(self.to_dict(), dict(leaf for path, value in overrides.items() for leaf in leaves(path, value)))
        where = f"with_changes on {self.name}"
        for path, value in overrides.items():
            _unlink_instances(data, path)
            _set_path(data, path, value, where)
        op_types = OP_TYPES | {op for u in self.units for op in u.op_cycles}
        return architecture_from_dict(data, where, op_types)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what `archsim.arch.load.architecture_from_dict` reads back), memories in level order:
        write it with `yaml.safe_dump(..., sort_keys=False)` (sorted, levels whose names do not sort outermost
        first come out reordered, and the loader refuses a per-PE level before a shared one)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.citation,
            "clock_hz": self.clock_hz,
            "word_bytes": self.word_bytes,
            "node_nm": self.node_nm,
            "memories": {m.name: {
                "capacity_bytes": m.capacity_bytes,
                "bandwidth_bytes_per_s": m.bandwidth_bytes_per_s,
                "access_bits": m.access_bits,
                **({"per_pe_of": m.per_pe_of} if m.per_pe_of is not None else {"instances": m.instances}),
                "area_um2": m.area_um2,
                **({"area_capacity_bytes": m.area_capacity_bytes} if m.area_capacity_bytes is not None else {}),
                "energy": _table_dict(m.energy),
                **({"energy_access_bits": m.energy_access_bits} if m.energy_access_bits != m.access_bits else {}),
                **({"leak_clock_hz": m.leak_clock_hz} if m.leak_clock_hz != self.clock_hz else {}),
            } for m in self.memories},
            "units": {u.name: {
                "shape": list(u.shape),
                "op_cycles": dict(u.op_cycles),
                "area_um2": u.area_um2,
                "energy": _table_dict(u.energy),
            } for u in self.units},
        }

    def _tables(self) -> list[EnergyTable]:
        return [m.energy for m in self.memories] + [u.energy for u in self.units]


def _table_dict(table: EnergyTable) -> dict[str, Any]:
    return {
        "node_nm": table.node_nm,
        "source": table.source,
        "actions_pj": {a: dict(table.composed_of[a]) if a in table.composed_of else e
                       for a, e in table.actions_pj.items()},
    }


# Mappings whose keys are free names (ops, actions): a change may add a key there.
_OPEN_KEYS = {"op_cycles", "actions_pj"}


def _unlink_instances(data: dict[str, Any], path: str) -> None:
    """Before `path` sets a memory's `instances` or `per_pe_of`, drop the other of the two (they are exclusive)."""
    parts = path.split(".")
    pair = ("instances", "per_pe_of")
    if len(parts) == 3 and parts[0] == "memories" and parts[2] in pair and parts[1] in data["memories"]:
        level = data["memories"][parts[1]]
        if isinstance(level, dict):
            level.pop(pair[1 - pair.index(parts[2])], None)
            level.setdefault(parts[2], None)


def _set_path(data: dict[str, Any], path: str, value: Any, source: str) -> None:
    parts = path.split(".")
    node: Any = data
    for i, key in enumerate(parts):
        last = i == len(parts) - 1
        if not isinstance(node, dict):
            raise SpecError(source, path, f"{'.'.join(parts[:i])} is a value, not a mapping")
        if key not in node and not (last and i > 0 and parts[i - 1] in _OPEN_KEYS):
            raise SpecError(source, path, f"no '{key}' at {'.'.join(parts[:i]) or 'the top'} "
                                          f"(known: {', '.join(node)})")
        if last:
            node[key] = list(value) if isinstance(value, tuple) else value
        else:
            node = node[key]
