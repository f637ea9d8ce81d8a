"""The analytical model: a closed form over each fusion group's loop nest. Specs in, `Result` out.

Follows the method of Timeloop/Accelergy as the FuseMax artifact uses it (Nayak et al., MICRO'24,
`src/accel/cascade.py`), and TeAAL's "max within a block, sum over blocks" (MICRO'23). Assumptions:

Compute
- An Einsum runs on the unit it is bound to. Its spatial loops on that unit, over ranks it iterates, set the
  PEs it uses (`lanes_used`); the others idle. Its compute cycles = sum over op types of
  count x the unit's cycles per op / lanes_used. Op counts come from the cascade analysis (masked points free).
- A unit's spatial loops take its dimensions in the order written (`{spatial: array2d, ranks: {P: 256,
  M0: 256}}`: P along the first, M0 along the second); loops beyond its last dimension share that one. A
  product of factors along a dimension above its PEs makes the group infeasible (the Result says which loop,
  unit and sizes), so a point never uses PEs the array lacks.
- A group's compute cycles follow its overlap policy (see `archsim.mapping.spec`): `sequential` sums the
  Einsums, `max` takes the busiest unit, a pipeline expression combines Einsum cycles with `+` and `max`. An
  expression that overlaps a unit's Einsums beyond its PEs (max(A, B), A and B on one unit, each using most
  of it) makes the group infeasible: a unit's busy PE-cycles never exceed its PEs x the group's cycles, so
  utilization never exceeds 1.

Memory
- Traffic per tensor per level boundary from `archsim.model.reuse` (loop-order reuse, no halos, perfect
  multicast of one tile to all PEs that share it; a masked Einsum moves no tile it keeps no point of). Reads
  flow from the tensor's home level inward to every level that keeps it; writes of an Einsum's output flow
  outward to its home.
- A tensor's home: DRAM (the outermost level) for inputs, outputs and intermediates that cross groups; for
  any other intermediate the outermost level that keeps it in this group, or the PEs (no memory traffic) if
  none does.
- Transfers overlap compute (double buffering): group time = max(compute cycles / clock, each level's
  transfer time = bytes through its inner boundary / its bandwidth). Levels without a bandwidth never stall.
  Total time = sum over groups.
- Footprint at a level: the tiles it keeps (twice if double-buffered; tensors written in place over another
  take no room; an intermediate with no home above it keeps every tile live across the loops its lifetime
  spans: `archsim.model.reuse.live_tiles`), plus one tile per hand-off of a kept intermediate between two
  units (the larger of the two units' spatial tiles), which the consumer works on while the producer fills the
  next.
- A group is infeasible when its footprint exceeds a level's capacity; the Result says which level, which
  tensors it keeps and both sizes. Unless the
  overflowing tensors are marked `spill`: then the overflow's share of their tiles lives one level out, and each
  access to a spilled element goes there: one write per Einsum producing the storage's tensors, one read per
  Einsum consuming them, except reads streamed from a producer on the same unit in the same pass.
- `Result.footprint_bytes` is the footprint before any spill: what the mapping keeps at each level, the part that
  spills included. So a feasible point whose kept tensors spill reports more than the level's capacity (FLAT on
  BERT at 4K tokens: 33,816,576 B of its 33,554,432 B global buffer; the 262,144 B over it live in DRAM, their
  accesses counted in DRAM's traffic and energy); the bytes that stay on chip are min(footprint, capacity). The
  mapper's tie-break (the larger footprint, the fewer refetches) and an infeasible point's reason read it so.

Energy (Accelergy's method): actions x energy per action. Compute: op counts x the unit's energy per op.
Memory: a transfer of b bytes is b*8/access_bits reads at the sending level and as many writes at the receiving
one (widths per level). Transfers into the PEs count one read of the innermost holder per tile fetched (the
multicast tile), shared by the Einsums of one pass that read it (readers in different passes each read it unless
it stays at that level across the passes; `plan._read_moves`), except for a storage on chip written over in place
(`in_place`, FLAT's score block): each pass over it is its own access, so each Einsum producing or consuming it
reads or writes every element, except a read streamed from its producer (see `plan.storage_accesses`; fusemax-energy.md
s5: 4 reads and 3 writes per score). Per-operand register-file accesses are not modelled (the FuseMax artifact
prices them per PE instance: under 0.25 pJ per score). Leakage: every level's leak energy per cycle x instances x
cycles. Area: the architecture's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass
from typing import Any

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.cascade.syntax import Expr
from archsim.mapping.overlap import compile_pipeline, side_by_side
from archsim.mapping.resolve import check_bindings, resolve_group
from archsim.mapping.spec import Group, Mapping
from archsim.memo import identity_cache
from archsim.model.plan import GroupPlan, plan_group, transfer_actions, used_in
from archsim.model.result import EinsumResult, Result, built

Key = tuple[str, str]  # (component, action) of an energy


@dataclass(frozen=True)
class LevelNumbers:
    """What the model reads of one memory level."""

    name: str
    capacity_bytes: int | None  # None = unbounded
    room_bytes: float  # the capacity, inf when unbounded
    bandwidth_bytes_per_s: float | None
    access_bits: int
    actions_pj: MappingOf[str, float]
    leak_pj_per_cycle: float  # leak per instance x instances (0: no leak)


@dataclass(frozen=True)
class UnitNumbers:
    """What the model reads of one compute unit."""

    name: str
    shape: tuple[int, ...]
    lanes: int
    op_cycles: MappingOf[str, int]
    op_pj: MappingOf[str, float]


@dataclass(frozen=True)
class ArchNumbers:
    """The numbers of an architecture that the pricing of a plan reads (its names fix the plan; these do not)."""

    name: str
    clock_hz: float
    area_um2: float
    levels: tuple[LevelNumbers, ...]  # outermost first
    units: dict[str, UnitNumbers]  # in the architecture's order


def read_numbers(arch: Architecture) -> ArchNumbers:
    """`arch`'s numbers."""
    levels = tuple(LevelNumbers(m.name, m.capacity_bytes, math.inf if m.capacity_bytes is None else m.capacity_bytes,
                                m.bandwidth_bytes_per_s, m.access_bits, m.energy.actions_pj,
                                m.energy.actions_pj.get("leak", 0.0) * m.instances)
                   for m in arch.memories)
    units = {u.name: UnitNumbers(u.name, u.shape, u.lanes, u.op_cycles, u.energy.actions_pj) for u in arch.units}
    return ArchNumbers(arch.name, arch.clock_hz, arch.area_um2(), levels, units)


numbers_of = identity_cache(maxsize=1024)(read_numbers)  # read once per Architecture object


def evaluate(binding: Binding, analysis: Analysis, arch: Architecture, mapping: Mapping,
             only_group: int | None = None) -> Result:
    """Evaluate `mapping` of the bound cascade on `arch`. Raises SpecError only for a mapping that cannot run;
    a mapping that runs but does not fit is returned as an infeasible Result. With `only_group`, only that group
    is evaluated (the mapper scores one group at a time; the others may still hold `search` factors), but which
    tensors cross groups, and so live in DRAM, still follows the whole mapping."""
    return price(binding, mapping.name, numbers_of(arch), plans(binding, analysis, arch, mapping, only_group))


def price(binding: Binding, mapping_name: str, numbers: ArchNumbers, group_plans: tuple[GroupPlan, ...]) -> Result:
    """The Result of planned groups priced with an architecture's numbers (the work `evaluate` does per call)."""
    seconds = compute_cycles = 0
    traffic: dict[str, dict[str, float]] = {m.name: {} for m in numbers.levels}
    energy: dict[tuple[str, str], float] = {}
    busy: dict[str, float] = {}
    memory_s: dict[str, float] = {}
    footprint: dict[str, float] = {}
    reasons: list[str] = []
    einsums: list[EinsumResult] = []
    for plan in group_plans:
        p = _group(binding, numbers, plan)
        seconds += p.seconds
        compute_cycles += p.compute_cycles
        add_group_totals(p, traffic, energy, busy, memory_s, footprint, max)
        reasons += p.reasons
        einsums += p.einsums
    cycles = seconds * numbers.clock_hz
    for m in numbers.levels:
        if m.leak_pj_per_cycle:
            key = (m.name, "leak")
            energy[key] = energy.get(key, 0) + m.leak_pj_per_cycle * cycles
    utilization = {}
    for u in numbers.units.values():
        utilization[u.name] = busy.get(u.name, 0) / (u.lanes * cycles) if cycles else 0.0
    return built(Result, {
        "cascade": binding.cascade.name, "architecture": numbers.name, "mapping": mapping_name,
        "params": dict(binding.params), "feasible": not reasons, "reason": "; ".join(reasons),
        "latency_s": seconds, "compute_cycles": compute_cycles, "memory_s": memory_s, "traffic_bytes": traffic,
        "energy_pj": sum(energy.values()), "energy_by": energy, "utilization": utilization,
        "footprint_bytes": footprint, "area_um2": numbers.area_um2, "einsums": tuple(einsums), "stalls": {},
    })


@identity_cache(maxsize=1024)
def plans(binding: Binding, analysis: Analysis, arch: Architecture, mapping: Mapping,
          only_group: int | None) -> tuple[GroupPlan, ...]:
    """The mapping checked, its groups resolved and planned (`archsim.model.plan`): what depends only on the
    binding, the analysis, the mapping and the architecture's names (and the capacities and unit shapes a factor
    expression reads), remembered for the same objects."""
    check_bindings(binding, mapping)
    used = used_in(binding, mapping)
    levels = tuple(m.name for m in arch.memories)
    unit_dims = tuple((u.name, len(u.shape)) for u in arch.units)
    return tuple(plan_group(binding, analysis, resolve_group(binding, arch, g, mapping.source, f"groups[{i}]"),
                            levels, unit_dims, used)
                 for i, g in enumerate(mapping.groups) if only_group is None or i == only_group)


def add_group_totals(part: Any, traffic: dict, energy: dict, busy: dict, memory_s: dict, footprint: dict,
                     maximum: Callable[[Any, Any], Any]) -> None:
    """Add a priced group's traffic, energy, busy lane-cycles and memory time to the totals, and keep the larger
    footprint per level (`maximum`: `max` for one point's floats, `np.maximum` for the batch path's columns), in
    the order `price` has always added them."""
    for level, per_tensor in part.traffic.items():
        into = traffic[level]
        for t, b in per_tensor.items():
            into[t] = into.get(t, 0.0) + b
    for total, add in ((energy, part.energy), (busy, part.busy), (memory_s, part.memory_s)):
        for key, value in add.items():
            total[key] = value + total.get(key, 0)
    for level, b in part.footprint_bytes.items():
        footprint[level] = maximum(footprint.get(level, 0.0), b)


@dataclass
class _GroupResult:
    seconds: float
    compute_cycles: float
    memory_s: dict[str, float]
    traffic: dict[str, dict[str, float]]
    energy: dict[tuple[str, str], float]  # (component, action) -> pJ
    busy: dict[str, float]  # unit -> busy lane-cycles
    footprint_bytes: dict[str, float]
    reasons: list[str]
    einsums: list[EinsumResult]


def _group(binding: Binding, numbers: ArchNumbers, plan: GroupPlan) -> _GroupResult:
    """The group's time, energy and feasibility: its plan priced with the architecture's numbers."""
    group = plan.group
    levels = numbers.levels
    units = numbers.units
    spent = [0] * len(plan.energy_keys)  # pJ per (component, action) the plan prices, in its order
    busy: dict[str, float] = {}
    cycles: dict[str, float] = {}
    einsums = []
    for ep in plan.einsums:
        unit = units[ep.unit]
        op_cycles, pj = unit.op_cycles, unit.op_pj
        lane_cycles = slowest = einsum_pj = 0
        for slot, op, n in ep.priced:
            op_cycle = op_cycles[op]
            lane_cycles += n * op_cycle
            if op_cycle > slowest:
                slowest = op_cycle
            pj_spent = n * pj[op]
            spent[slot] += pj_spent
            einsum_pj += pj_spent
        if ep.pipelined:  # one point per cycle of its slowest op
            lane_cycles = ep.most_ops * slowest
        busy[ep.unit] = busy.get(ep.unit, 0) + lane_cycles
        compute = cycles[ep.name] = lane_cycles / ep.lanes
        einsums.append(built(EinsumResult, {"name": ep.name, "group": group.name, "unit": ep.unit,
                                            "ops": ep.ops.copy(), "lanes_used": ep.lanes, "compute_cycles": compute,
                                            "energy_pj": einsum_pj}))
    compute_cycles = _overlap(plan, cycles)
    reasons = [*plan.reasons, *(_fanout_reasons(numbers, group, plan)
                                or _overlap_reasons(numbers, group, plan, cycles, compute_cycles))]

    for slot, index, action, bits in plan.actions:
        level = levels[index]
        spent[slot] += bits / level.access_bits * level.actions_pj[action]
    energy = dict(zip(plan.energy_keys, spent, strict=True))
    traffic = plan.traffic
    moved = plan.moved
    for index in plan.held:
        m = levels[index]
        footprint = plan.footprint_bytes[m.name]
        overflow = footprint - m.room_bytes
        if overflow <= 0:
            continue
        spillable = plan.spillable.get(m.name, 0)
        if overflow > spillable:
            reasons.append(f"group {group.name}: {m.name} holds {footprint:.0f} B of tiles "
                           f"({', '.join(plan.kept_at.get(m.name, ())) or 'hand-offs between units'}), "
                           f"over its capacity of {m.capacity_bytes} B")
            continue
        traffic, spill_energy = _spill(binding, numbers, plan, index, overflow / spillable, traffic)
        for key, pj_spent in spill_energy:
            energy[key] = energy.get(key, 0) + pj_spent
        moved = {level: sum(per.values()) for level, per in traffic.items()}

    memory_s = {}
    for m in levels:
        level_moved = moved.get(m.name, 0)
        if m.bandwidth_bytes_per_s and level_moved:
            memory_s[m.name] = level_moved / m.bandwidth_bytes_per_s
    seconds = max([compute_cycles / numbers.clock_hz, *memory_s.values()])
    return _GroupResult(seconds, compute_cycles, memory_s, traffic, energy, busy, plan.footprint_bytes, reasons,
                        einsums)


def _spill(binding: Binding, numbers: ArchNumbers, plan: GroupPlan, index: int, fraction: float,
           traffic: dict[str, dict[str, float]]) -> tuple[dict[str, dict[str, float]], list[tuple[Key, float]]]:
    """The part `fraction` of level `index`'s spillable tiles that does not fit lives one level out; each access
    to it goes there. Returns the traffic with those accesses added (a copy of the plan's) and their energies."""
    levels = numbers.levels
    names = tuple(m.name for m in levels)
    word = binding.word_bytes
    parent = plan.parent_of[names[index]]
    if traffic is plan.traffic:
        traffic = {level: dict(per) for level, per in plan.traffic.items()}
    into = traffic.setdefault(names[parent], {})
    spent = []
    for s in plan.spills[names[index]]:
        elems = s.elems * fraction
        into[s.tensor] = into.get(s.tensor, 0.0) + elems * (s.reads + s.writes) * word
        for key, at, action, bits in (transfer_actions(names, parent, len(names), elems * s.reads * word * 8, True)
                                      + transfer_actions(names, parent, len(names), elems * s.writes * word * 8,
                                                         False)):
            spent.append((key, bits / levels[at].access_bits * levels[at].actions_pj[action]))
    return traffic, spent


def _fanout_reasons(numbers: ArchNumbers, group: Group, plan: GroupPlan) -> list[str]:
    """Why the group's spatial loops need more PEs than a unit has, along one of its dimensions (see the module
    docstring for which loops go along which dimension)."""
    reasons = []
    for unit_name, d, fanout, along in plan.fanouts:
        unit = numbers.units[unit_name]
        pes = unit.shape[d]
        if fanout > pes:
            named = " x ".join(f"{lp.path or f'loops[{i}] rank {lp.rank}'} = {lp.factor}" for i, lp in along)
            reasons.append(f"group {group.name}: {named} spreads {fanout} over unit {unit.name}, which has "
                           f"{pes} PEs along dimension {d} (shape {' x '.join(map(str, unit.shape))})")
    return reasons


def _overlap_reasons(numbers: ArchNumbers, group: Group, plan: GroupPlan, cycles: dict[str, float],
                     compute_cycles: float) -> list[str]:
    """Why the group's overlap runs a unit's Einsums side by side beyond its PEs: over the whole group, or within
    one `max(...)` of its expression (two full-array Einsums in one max need twice that max's cycles)."""
    values = {**plan.delay_sizes, **cycles}
    windows = [("its overlap", compute_cycles, None),
               *((f"its overlap's {text}", compile_pipeline(node)(values), set(names))
                 for node, text, names in side_by_side(group.overlap))]
    reasons = []
    for what, window_cycles, names in windows:
        for unit_name, mine in plan.by_unit:
            inside = [(e, lanes) for e, lanes in mine if names is None or e in names]
            unit = numbers.units[unit_name]
            busy = 0
            for e, lanes in inside:
                busy += cycles[e] * lanes
            if busy > unit.lanes * window_cycles * (1 + 1e-9):
                reasons.append(f"group {group.name}: {what} runs {', '.join(e for e, _ in inside)} side by side on "
                               f"unit {unit.name} in {window_cycles:.0f} cycles, but their {busy:.0f} PE-cycles "
                               f"need {busy / unit.lanes:.0f} cycles of its {unit.lanes} PEs")
        if reasons:
            return reasons
    return reasons


def _overlap(plan: GroupPlan, cycles: dict[str, float]) -> float:
    if plan.group.overlap == "sequential":
        return sum(cycles.values())
    if plan.group.overlap == "max":
        per_unit: Counter[str] = Counter()
        for ep in plan.einsums:
            per_unit[ep.unit] += cycles[ep.name]
        return max(per_unit.values())
    return plan.pipeline({**plan.delay_sizes, **cycles} if plan.delay_sizes else cycles)


def pipeline_cycles(node: Expr, cycles: dict[str, float]) -> float:
    """Value of a group's pipeline expression (`+`, `*`, `max` over Einsum names and rank sizes) given each
    name's cycles; shared with the event model so both read an expression alike."""
    return compile_pipeline(node)(cycles)
