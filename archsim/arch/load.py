"""Load and validate architecture YAML into `Architecture` (`archsim/arch/presets/fusemax.yaml` is a full example).

File format (units in the key names; memories outermost first; the YAML path of a field is the dotted path
`Architecture.with_changes` takes)::

    name: fusemax
    description: one line
    source: the paper / artifact its numbers come from
    clock_hz: 940.0e+6
    word_bytes: 2
    node_nm: 45                       # node of the areas below
    memories:
      DRAM:
        capacity_bytes: null          # null = unbounded (the outermost level's must be null)
        bandwidth_bytes_per_s: 429496729600   # null = never a bottleneck
        access_bits: 64
        instances: 1                  # optional, default 1
        # per_pe_of: array2d          # instead of instances: one per PE of a unit (a PE's RF), following its shape
        area_um2: 0                   # per instance
        area_capacity_bytes: null     # optional: the capacity area_um2 is quoted at (area scales with capacity)
        energy: {node_nm: 45, source: 2d-fusemax-ERT.yaml, actions_pj: {read: 249.6, write: 249.6, leak: 0}}
        energy_access_bits: 64        # optional, default access_bits: the width read and write are quoted at
        leak_clock_hz: 940.0e+6       # optional, default clock_hz: the clock leak (pJ per cycle) is quoted at
    units:
      array2d:
        shape: [256, 256]             # fan-out
        op_cycles: {mac: 1, add: 1, max: 1, exp: 6}        # cycles per op per PE; absent = unsupported
        area_um2: 1594.28944          # per PE
        energy:
          node_nm: 45
          source: 2d-fusemax-ERT.yaml
          actions_pj: {mac: 17.1645, add: 8.3395, max: 0.028036, exp: {mac: 6}}   # exp priced as 6 MACs

Memories are listed outermost first: a level's parent is the one listed before it (what a tile spilled from it goes
to). A per-PE memory (`per_pe_of`, or more than one instance) listed before a shared one is refused; per-PE
siblings (a register file per unit) follow the shared levels in any order. Write a spec built in Python with
`yaml.safe_dump(arch.to_dict(), sort_keys=False)`: a sorted dump reorders the levels when their names do not sort
outermost first (DRAM, RF, RF1D, ZBuf), and such a file is refused.

Memory actions are read and write (pJ per access) and optionally leak (pJ per cycle per instance), quoted at
`energy_access_bits` and `leak_clock_hz`: an access of another width keeps the energy per bit, the leak its power
at another clock (`archsim.arch.quoted`, which also says what a `base:` file or `with_changes` keeps). A unit's
`actions_pj` has exactly the ops of its `op_cycles`; an entry may be a composite {other action: count} of plain
entries of the same table. Op names are archsim's op types (`archsim.cascade.ops`), listed in `OP_TYPES`.
Numbers are finite: clocks, bandwidths, capacities, shapes, instances, access widths and cycles positive,
areas and energies non-negative; none above `MAX_VALUE`, no positive one below its inverse. Every error is a
`SpecError` naming the file, the YAML path and what was expected; `Architecture.with_changes` goes through the
same checks.

A file may derive from another by `base:` (`archsim.library.architecture_from_data`, which the library's loader
reads files with).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from archsim.arch.energy import EnergyTable, resolved_actions
from archsim.arch.spec import Architecture, ComputeUnit, Memory
from archsim.cascade.ops import (
    BINARY_CALLS,
    BINARY_OP_TYPES,
    COMPARE_OP_TYPE,
    DEFAULT_UNARY_OPS,
    REDUCE_OP_TYPES,
)
from archsim.errors import SpecError, field_path, kind_of, text_number_hint
from archsim.spec_files import read_yaml

# The op types a cascade's analysis counts (a product under a sum is one `mac`).
OP_TYPES: frozenset[str] = frozenset(
    {"mac", COMPARE_OP_TYPE, *BINARY_OP_TYPES.values(), *BINARY_CALLS.values(), *REDUCE_OP_TYPES.values(),
     *(op.op_type for op in DEFAULT_UNARY_OPS.values())}
)
TOP_KEYS = ("name", "description", "source", "clock_hz", "word_bytes", "node_nm", "memories", "units")
MEMORY_KEYS = ("capacity_bytes", "bandwidth_bytes_per_s", "access_bits", "instances", "per_pe_of", "area_um2",
               "area_capacity_bytes", "energy", "energy_access_bits", "leak_clock_hz")
UNIT_KEYS = ("shape", "op_cycles", "area_um2", "energy")
ENERGY_KEYS = ("node_nm", "source", "actions_pj")
MEMORY_ACTIONS = ("read", "write", "leak")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The largest number any field takes (a clock, capacity, bandwidth, count, area or energy): far above any real
# design (a 1 EB/s bandwidth), and small enough that products with rank sizes and op counts stay finite. Its
# inverse is the smallest a clock or bandwidth takes, so times (counts divided by them) stay finite too.
MAX_VALUE = 1e18


def load_architecture(path_or_mapping: str | Path | Mapping[str, Any], source: str | None = None,
                      op_types: Collection[str] = OP_TYPES) -> Architecture:
    """Load an architecture from a YAML file or an already parsed mapping; `source` names it in errors."""
    if isinstance(path_or_mapping, Mapping):
        return architecture_from_dict(path_or_mapping, source or "<python>", op_types)
    path = Path(path_or_mapping)
    return architecture_from_dict(read_yaml(path), source or str(path), op_types)


def architecture_from_dict(data: Any, source: str = "<python>", op_types: Collection[str] = OP_TYPES) -> Architecture:
    """Validate `data` (the YAML form, module docstring) into an Architecture blamed on `source`; a unit that prices
    an op not in `op_types` is refused. Every problem is a SpecError naming the field."""
    return _Loader(source, op_types).architecture(data)


class _Loader:
    def __init__(self, source: str, op_types: Collection[str]) -> None:
        self.source = source
        self.op_types = op_types

    def error(self, where: str, message: str) -> SpecError:
        return SpecError(self.source, where, message)

    # ---------------------------------------------------------------- generic fields
    def fields(self, data: Any, where: str, keys: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise self.error(where, f"expected a mapping with {', '.join(required)}, got {kind_of(data)}")
        unknown = sorted(str(k) for k in data if k not in keys)
        if unknown:
            raise self.error(field_path(where, unknown[0]), f"unknown key (expected one of {', '.join(keys)})")
        for key in required:
            if key not in data:
                raise self.error(field_path(where, key), "missing")
        return dict(data)

    def number(self, value: Any, where: str, positive: bool, what: str) -> float:
        bad = not _finite_real(value)
        if bad or value < 0 or (positive and value == 0):
            raise self.error(where, f"expected {what} (a {'positive' if positive else 'non-negative'} number), "
                                    f"got {value!r}{text_number_hint(value)}")
        if positive and value < 1 / MAX_VALUE:
            raise self.error(where, f"{value!r} is below {1 / MAX_VALUE:g}, the smallest positive number an "
                                    f"architecture takes (times divided by it leave the float range); expected {what}")
        return float(self.bounded(value, where, what))

    def integer(self, value: Any, where: str, what: str) -> int:
        if not _finite_real(value) or value != int(value) or value <= 0:
            raise self.error(where, f"expected {what} (a positive integer), got {value!r}{text_number_hint(value)}")
        return int(self.bounded(value, where, what))

    def bounded(self, value: float, where: str, what: str) -> float:
        if value > MAX_VALUE:
            raise self.error(where, f"{value!r} is above {MAX_VALUE:g}, the largest number an architecture takes "
                                    f"(beyond it the model's products leave the float range); expected {what}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.error(where, f"expected a string, got {kind_of(value)}")
        return value

    def source_text(self, value: Any, where: str) -> str:
        if not self.text(value, where):
            raise self.error(where, "expected where these numbers come from (a table file or citation)")
        return value

    def named(self, data: Any, where: str, what: str) -> dict[str, Any]:
        if not isinstance(data, Mapping) or not data:
            raise self.error(where, f"expected a non-empty mapping of {what} name -> fields, got {kind_of(data)}")
        for name in data:
            if not isinstance(name, str) or not _NAME.match(name):
                raise self.error(where, f"{what} name {name!r} must be an identifier (letters, digits, _)")
        return dict(data)

    # ---------------------------------------------------------------- the parts
    def architecture(self, data: Any) -> Architecture:
        d = self.fields(data, "", TOP_KEYS, ("name", "clock_hz", "word_bytes", "node_nm", "memories", "units"))
        name = self.text(d["name"], "name")
        if not name:
            raise self.error("name", "expected the architecture's name, got an empty string")
        memories = self.named(d["memories"], "memories", "memory")
        units = self.named(d["units"], "units", "unit")
        outermost, outer = next(iter(memories.items()))
        if isinstance(outer, dict) and outer.get("capacity_bytes") is not None:
            raise self.error(f"memories.{outermost}.capacity_bytes",
                             f"expected null: the outermost level ({outermost}) is the home of every tensor and the "
                             f"model does not bound it (got {outer['capacity_bytes']!r}; whether a workload fits "
                             "off-chip memory is not checked here)")
        if isinstance(outer, dict) and outer.get("area_um2") not in (None, 0):
            raise self.error(f"memories.{outermost}.area_um2",
                             f"expected 0: the outermost level ({outermost}) is off chip, outside the chip's area "
                             f"(got {outer['area_um2']!r})")
        built_units = tuple(self.unit(n, f, f"units.{n}") for n, f in units.items())
        lanes = {u.name: u.lanes for u in built_units}
        description = self.text(d.get("description", ""), "description")
        clock_hz = self.number(d["clock_hz"], "clock_hz", True, "a clock frequency in Hz")
        built = Architecture(
            name=name,
            description=description,
            source=self.source,
            clock_hz=clock_hz,
            word_bytes=self.integer(d["word_bytes"], "word_bytes", "bytes per word"),
            node_nm=self.number(d["node_nm"], "node_nm", True, "a technology node in nm"),
            memories=tuple(self.memory(n, f, f"memories.{n}", lanes if n != outermost else None, clock_hz)
                           for n, f in memories.items()),
            units=built_units,
            citation=self.text(d.get("source", ""), "source"),
        )
        self.check_consistent(built)
        self.check_level_order(built)
        return built

    def check_level_order(self, arch: Architecture) -> None:
        """Memories are listed outermost first and the model takes a level's parent as the one listed before it
        (what a tile spilled from a level goes to, what fills it): a per-PE memory (`per_pe_of`, or more than one
        instance below the outermost level) listed before a shared one would make the shared buffer a child of one
        PE's registers (as a sorted dump of `to_dict` writes flat's levels when their names sort DRAM, RF, RF1D,
        ZBuf). Per-PE siblings (RF of array2d, then RF1D of array1d) may follow one another in any order."""
        on_chip = arch.memories[1:]
        for i, m in enumerate(on_chip):
            shared_below = [s.name for s in on_chip[i + 1:] if not _per_pe(s)]
            if _per_pe(m) and shared_below:
                one_per = f"one per PE of {m.per_pe_of}" if m.per_pe_of is not None else f"{m.instances} instances"
                raise self.error(f"memories.{m.name}",
                                 f"a per-PE memory cannot hold a shared level below it ({', '.join(shared_below)} "
                                 f"listed after {m.name}, {one_per}): list memories outermost first, the shared "
                                 "levels before the PEs' (a level's parent is the one listed before it)")

    def check_consistent(self, arch: Architecture) -> None:
        """Every on-chip energy table at the architecture's node: tables are summed as given, so one at another node
        would be priced unscaled (a design at another node is `Architecture.scaled_to`'s). The outermost memory
        (DRAM) is another chip, priced at its own node whatever the design's."""
        parts = [(f"memories.{m.name}", m.energy) for m in arch.memories[1:]] + \
            [(f"units.{u.name}", u.energy) for u in arch.units]
        for where, table in parts:
            if table.node_nm != arch.node_nm:
                raise self.error(f"{where}.energy.node_nm",
                                 f"{table.node_nm:g} nm, but the architecture is at {arch.node_nm:g} nm (node_nm): "
                                 "archsim sums energy tables as given; give them at the architecture's node "
                                 "(archsim.arch.spec.Architecture.scaled_to scales a whole design)")

    def memory(self, name: str, data: Any, where: str, lanes: Mapping[str, int] | None, clock_hz: float) -> Memory:
        """A memory level; its prices quoted at its own `access_bits` and `clock_hz` unless it says otherwise."""
        d = self.fields(data, where, MEMORY_KEYS, ("capacity_bytes", "bandwidth_bytes_per_s", "access_bits",
                                                   "area_um2", "energy"))
        capacity = d["capacity_bytes"]
        bandwidth = d["bandwidth_bytes_per_s"]
        energy = self.energy(d["energy"], f"{where}.energy")
        missing = [a for a in ("read", "write") if a not in energy.actions_pj]
        if missing:
            raise self.error(f"{where}.energy.actions_pj", f"missing {', '.join(missing)} (pJ per access)")
        unknown = sorted(str(a) for a in set(energy.actions_pj) - set(MEMORY_ACTIONS))
        if unknown:
            raise self.error(f"{where}.energy.actions_pj.{unknown[0]}",
                             f"not a memory action (expected {', '.join(MEMORY_ACTIONS)})")
        return Memory(
            name=name,
            capacity_bytes=None if capacity is None else self.integer(
                capacity, f"{where}.capacity_bytes", "a capacity in bytes, or null for unbounded"),
            bandwidth_bytes_per_s=None if bandwidth is None else self.number(
                bandwidth, f"{where}.bandwidth_bytes_per_s", True,
                "bytes per second, or null for no limit in an architecture file, not on a sweep axis"),
            access_bits=self.integer(d["access_bits"], f"{where}.access_bits", "bits per access"),
            energy=energy,
            energy_access_bits=self.integer(d.get("energy_access_bits", d["access_bits"]),
                                            f"{where}.energy_access_bits",
                                            "the width in bits read and write are quoted at"),
            leak_clock_hz=self.number(d.get("leak_clock_hz", clock_hz), f"{where}.leak_clock_hz", True,
                                      "the clock in Hz leak is quoted at"),
            area_um2=self.number(d["area_um2"], f"{where}.area_um2", False, "an area in um^2 per instance"),
            instances=self.instances(d, where, lanes),
            area_capacity_bytes=self.area_capacity(d.get("area_capacity_bytes"), capacity, where),
            per_pe_of=d.get("per_pe_of"),
        )

    def instances(self, d: Mapping[str, Any], where: str, lanes: Mapping[str, int] | None) -> int:
        """`instances` as given (default 1), or the lanes of the unit `per_pe_of` names (one instance per PE; the
        outermost level, off chip, is given None: none of its instances sits in a PE)."""
        if "per_pe_of" not in d:
            return self.integer(d.get("instances", 1), f"{where}.instances", "a number of instances")
        if "instances" in d:
            raise self.error(f"{where}.instances", "give instances or per_pe_of, not both (per_pe_of: one "
                                                   "instance per PE of that unit)")
        if lanes is None:
            raise self.error(f"{where}.per_pe_of", "the outermost level is off chip: no instance of it sits in a PE "
                                                   "(expected instances, or none)")
        unit = d["per_pe_of"]
        if not isinstance(unit, str) or unit not in lanes:
            raise self.error(f"{where}.per_pe_of", f"expected the name of a unit with one instance of this memory "
                                                   f"per PE (units: {', '.join(lanes)}), got {unit!r}")
        return lanes[unit]

    def area_capacity(self, value: Any, capacity: Any, where: str) -> int | None:
        if value is None:
            return None
        if capacity is None:
            raise self.error(f"{where}.area_capacity_bytes", "area cannot scale with an unbounded capacity "
                                                             "(capacity_bytes is null)")
        return self.integer(value, f"{where}.area_capacity_bytes", "the capacity in bytes area_um2 is quoted at")

    def unit(self, name: str, data: Any, where: str) -> ComputeUnit:
        d = self.fields(data, where, UNIT_KEYS, UNIT_KEYS)
        shape = d["shape"]
        if not isinstance(shape, list | tuple) or not shape:
            raise self.error(f"{where}.shape", f"expected a list of fan-outs like [256, 256], got {shape!r}")
        cycles_map = d["op_cycles"]
        if not isinstance(cycles_map, Mapping) or not cycles_map:
            raise self.error(f"{where}.op_cycles", f"expected a mapping op -> cycles per op, got {kind_of(cycles_map)}")
        op_cycles = {}
        for op, cycles in cycles_map.items():
            if op not in self.op_types:
                raise self.error(f"{where}.op_cycles.{op}",
                                 f"unknown op '{op}' (known: {', '.join(sorted(self.op_types))})")
            op_cycles[op] = self.integer(cycles, f"{where}.op_cycles.{op}", "cycles per op")
        energy = self.energy(d["energy"], f"{where}.energy")
        lacking = [op for op in op_cycles if op not in energy.actions_pj]
        if lacking:
            raise self.error(f"{where}.energy.actions_pj", f"no energy for op {', '.join(lacking)} "
                                                           f"(expected exactly the ops of op_cycles)")
        extra = [op for op in energy.actions_pj if op not in op_cycles]
        if extra:
            raise self.error(f"{where}.energy.actions_pj.{extra[0]}",
                             f"energy for an op not in op_cycles (ops: {', '.join(op_cycles)})")
        return ComputeUnit(
            name=name,
            shape=tuple(self.integer(n, f"{where}.shape[{i}]", "a fan-out") for i, n in enumerate(shape)),
            op_cycles=op_cycles,
            energy=energy,
            area_um2=self.number(d["area_um2"], f"{where}.area_um2", False, "an area in um^2 per PE"),
        )

    def energy(self, data: Any, where: str) -> EnergyTable:
        d = self.fields(data, where, ENERGY_KEYS, ENERGY_KEYS)
        actions = d["actions_pj"]
        if not isinstance(actions, Mapping):  # an empty one is told the actions its unit or memory needs
            raise self.error(f"{where}.actions_pj", f"expected a mapping action -> pJ, got {kind_of(actions)}")
        plain = {str(a): self.number(e, f"{where}.actions_pj.{a}", False, "an energy in pJ")
                 for a, e in actions.items() if not isinstance(e, Mapping)}
        composed: dict[str, dict[str, float]] = {}
        for a, recipe in actions.items():
            if not isinstance(recipe, Mapping):
                continue
            at = f"{where}.actions_pj.{a}"
            if not recipe:
                raise self.error(at, "expected pJ, or a mapping {other action: count} like {mac: 6}")
            for part, count in recipe.items():
                if part not in plain:
                    raise self.error(f"{at}.{part}", f"a composite must count plain actions of this table "
                                                     f"(plain: {', '.join(plain) or 'none'})")
                self.number(count, f"{at}.{part}", True, "a count")
            composed[str(a)] = {str(p): float(c) for p, c in recipe.items()}
        return EnergyTable(
            node_nm=self.number(d["node_nm"], f"{where}.node_nm", True, "the technology node of these energies"),
            source=self.source_text(d["source"], f"{where}.source"),
            actions_pj=resolved_actions([str(a) for a in actions], plain, composed),
            composed_of=composed,
        )


def _per_pe(memory: Memory) -> bool:
    """An on-chip memory with an instance in every PE of a unit (`per_pe_of`, or its instances given as a number)."""
    return memory.per_pe_of is not None or memory.instances > 1


def _finite_real(value: Any) -> bool:
    """A finite real number (not a bool); an integer too large for a float counts as not finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return abs(value) <= MAX_VALUE if isinstance(value, int) else math.isfinite(value)
