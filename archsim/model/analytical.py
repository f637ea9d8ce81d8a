"""The analytical model: a closed form over each fusion group's loop nest. Specs in, `Result` out.

Follows the method of Timeloop/Accelergy as the FuseMax artifact uses it (Nayak et al., MICRO'24,
`src/accel/cascade.py`), and TeAAL's "max within a block, sum over blocks" (MICRO'23). Assumptions:

Compute
- An Einsum runs on the unit it is bound to. Its spatial loops on that unit, over ranks it iterates, set the
  PEs it uses (`lanes_used`); the others idle. Its compute cycles = sum over op types of
  count x the unit's cycles per op / lanes_used; an Einsum the mapping lists as `pipelined` (its ops chained in
  one PE, a point a cycle: FLAT's four one-cycle softmax ops per score, fusemax.md) takes its most-counted op's
  count x its slowest op's cycles / lanes_used instead. Op counts come from the cascade analysis (masked points
  free).
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
  overflowing tensors are marked `spill`: then the overflow's share of their tiles lives one level out, and every
  access the level served to that share goes there instead, as many as the level's traffic counts (one per reuse
  of a tile, partial sums read back, each pass over an in-place storage); the level no longer serves that share,
  fills it from above or writes it back (`_spill`).
- `Result.footprint_bytes` is the footprint before any spill: what the mapping keeps at each level, the part that
  spills included. So a feasible point whose kept tensors spill reports more than the level's capacity (FLAT on
  BERT at 4K tokens: 33,816,576 B of its 33,554,432 B global buffer; the 262,144 B over it live in DRAM, their
  accesses counted in DRAM's traffic and energy, not the buffer's); the bytes that stay on chip are
  min(footprint, capacity). The mapper's tie-break (the larger footprint, the fewer refetches) and an infeasible
  point's reason read it so.

Energy (Accelergy's method): actions x energy per action. Compute: op counts x the unit's energy per op.
Memory: a transfer of b bytes is b*8/access_bits reads at the sending level and as many writes at the receiving one
(widths per level), each priced at the level's read or write energy x access_bits / energy_access_bits, the width
its prices are quoted at (the energy per bit is kept: Accelergy's widthscale, fusemax-energy.md s4;
`archsim.arch.quoted`), so b*8/energy_access_bits x the quoted price. Transfers into the PEs count one read of the
innermost holder per tile fetched (the multicast tile), shared by the Einsums of one pass that read it (readers in
different passes each read it unless it stays at that level across the passes; `plan._read_moves`), except for a
storage on chip written over in place (`in_place`, FLAT's score block): each pass over it is its own access, so each
Einsum producing or consuming it reads or writes every element once, except a read streamed from its producer, and
the writer's partial sums re-entered (a reduction loop above its tiles' loops) are its own (see
`plan.storage_accesses`; fusemax-energy.md s5: 4 reads and 3 writes per score). Per-operand register-file accesses
are not modelled (the FuseMax artifact prices them per PE instance: under 0.25 pJ per score). Leakage is a power:
every level's leak energy per cycle x instances x the cycles of the clock it is quoted at (`leak_clock_hz`) in the
run's time, so a clock changed alone moves the time, not the leak power. Area: the architecture's.

One pricing serves one point and many: `totals` prices planned groups with an architecture's numbers, each a Python
number (`price`, `evaluate`: the mapper's path, no numpy) or a numpy column over points (`archsim.model.batch`), with
the same operations in the same order, so a column's value at a point is that point's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass

import numpy as np

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.cascade.syntax import Expr
from archsim.mapping.overlap import Number, compile_pipeline, maximum_of
from archsim.mapping.resolve import check_bindings, resolve_group
from archsim.mapping.spec import Mapping
from archsim.memo import identity_cache
from archsim.model.plan import EinsumPlan, GroupPlan, plan_group, used_in
from archsim.model.result import EinsumResult, Result, built

Key = tuple[str, str]  # (component, action) of an energy
# A unit's busy lane-cycles over its lanes x cycles may round above 1 by this much (relative) and still count as 1:
# a utilization (`_at_most_one`) and an overlap that fits its window (`_overlap_reasons`).
LANE_CYCLES_SLACK = 1e-9


@dataclass(frozen=True)
class LevelNumbers:
    """What the model reads of one memory level (a number, or a column over points: `archsim.model.batch`)."""

    name: str
    room_bytes: Number  # the capacity, inf when unbounded
    bandwidth_bytes_per_s: Number | None  # None (a column: 0) = no limit
    energy_access_bits: Number  # the width read and write are quoted at: b bits cost b / it x the price
    actions_pj: MappingOf[str, Number]
    leak_pj_per_cycle: Number  # leak per instance x instances (0: no leak), a cycle of leak_clock_hz
    leak_clock_hz: Number  # the clock the leak is quoted at: leak power = leak_pj_per_cycle x it


@dataclass(frozen=True)
class UnitNumbers:
    """What the model reads of one compute unit (a number, or a column over points: `archsim.model.batch`)."""

    name: str
    shape: tuple[Number, ...]
    lanes: Number
    op_cycles: MappingOf[str, Number]
    op_pj: MappingOf[str, Number]


@dataclass(frozen=True)
class ArchNumbers:
    """The numbers of an architecture that the pricing of a plan reads (its names fix the plan; these do not)."""

    name: str
    clock_hz: Number
    area_um2: Number
    levels: tuple[LevelNumbers, ...]  # outermost first
    units: dict[str, UnitNumbers]  # in the architecture's order


def read_numbers(arch: Architecture) -> ArchNumbers:
    """`arch`'s numbers."""
    levels = tuple(LevelNumbers(m.name, math.inf if m.capacity_bytes is None else m.capacity_bytes,
                                m.bandwidth_bytes_per_s, m.energy_access_bits, m.energy.actions_pj,
                                m.energy.actions_pj.get("leak", 0.0) * m.instances, m.leak_clock_hz)
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
    t = totals(binding, numbers, group_plans, 1)
    reasons = t.reasons.get(0, [])
    einsums = tuple(built(EinsumResult, {"name": ep.name, "group": group, "unit": ep.unit, "ops": ep.ops.copy(),
                                         "lanes_used": ep.lanes, "compute_cycles": compute, "energy_pj": pj})
                    for group, ep, compute, pj in t.einsums)
    return built(Result, {
        "cascade": binding.cascade.name, "architecture": numbers.name, "mapping": mapping_name,
        "params": dict(binding.params), "feasible": not reasons, "reason": "; ".join(reasons),
        "latency_s": t.seconds, "compute_cycles": t.compute_cycles, "memory_s": t.memory_s,
        "traffic_bytes": t.traffic, "energy_pj": t.energy_pj, "energy_by": t.energy, "utilization": t.utilization,
        "footprint_bytes": t.footprint_bytes, "area_um2": numbers.area_um2, "einsums": einsums, "stalls": {},
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
    per_pe = tuple(m.per_pe_of for m in arch.memories)
    return tuple(plan_group(binding, analysis, resolve_group(binding, arch, g, mapping.source, f"groups[{i}]"),
                            levels, unit_dims, used, per_pe)
                 for i, g in enumerate(mapping.groups) if only_group is None or i == only_group)


@dataclass
class Totals:
    """Planned groups priced: each metric one point's value, or a column over the points (0 where a point has
    none) where the numbers are columns."""

    seconds: Number
    compute_cycles: Number
    memory_s: dict[str, Number]  # level -> seconds its transfers take
    traffic: dict[str, dict[str, Number]]  # level -> tensor -> bytes
    energy: dict[Key, Number]  # (component, action) -> pJ
    energy_pj: Number
    utilization: dict[str, Number]  # unit -> busy lane-cycles / (lanes x latency cycles)
    footprint_bytes: dict[str, float]  # level -> bytes of tiles resident (the plan's: the same at every point)
    reasons: dict[int, list[str]]  # point -> why it cannot run, for the points with reasons
    einsums: list[tuple[str, EinsumPlan, Number, Number]]  # (group, Einsum, compute cycles, energy in pJ)


def totals(binding: Binding, numbers: ArchNumbers, group_plans: tuple[GroupPlan, ...], n: int) -> Totals:
    """`group_plans` priced with `numbers`, each of whose fields is one point's value (n = 1) or a column over n
    points (numpy broadcasts a value they share). The operations and their order are the same either way, so a
    column's value at a point is the point's own; one point's numbers stay Python ints and floats (no numpy on
    the mapper's path)."""
    seconds = compute_cycles = 0
    traffic: dict[str, dict[str, Number]] = {m.name: {} for m in numbers.levels}
    energy: dict[Key, Number] = {}
    busy: dict[str, Number] = {}
    memory_s: dict[str, Number] = {}
    footprint: dict[str, float] = {}
    reasons: dict[int, list[str]] = {}
    einsums = []
    for plan in group_plans:
        p = _group(binding, numbers, plan, n)
        seconds = seconds + p.seconds
        compute_cycles = compute_cycles + p.compute_cycles
        _add_group_totals(p, traffic, energy, busy, memory_s, footprint)
        for i, texts in p.reasons.items():
            reasons.setdefault(i, []).extend(texts)
        einsums += p.einsums
    cycles = seconds * numbers.clock_hz
    for m in numbers.levels:
        if _any(m.leak_pj_per_cycle):  # its power x the time: cycles of the clock it is quoted at
            key = (m.name, "leak")
            energy[key] = energy.get(key, 0) + m.leak_pj_per_cycle * (seconds * m.leak_clock_hz)
    # cycles is seconds x clock: a compute-bound unit's busy lane-cycles over it can read 1 + 2e-16
    utilization = {u.name: _at_most_one(_divided(busy.get(u.name, 0), u.lanes * cycles, cycles != 0))
                   for u in numbers.units.values()}
    return Totals(seconds, compute_cycles, memory_s, traffic, energy, sum(energy.values()), utilization, footprint,
                  reasons, einsums)


@dataclass
class _GroupTotals:
    seconds: Number
    compute_cycles: Number
    memory_s: dict[str, Number]
    traffic: dict[str, dict[str, Number]]
    energy: dict[Key, Number]
    busy: dict[str, Number]  # unit -> busy lane-cycles
    footprint_bytes: dict[str, float]
    reasons: dict[int, list[str]]  # point -> its reasons, for the points with some
    einsums: list[tuple[str, EinsumPlan, Number, Number]]


def _add_group_totals(part: _GroupTotals, traffic: dict, energy: dict, busy: dict, memory_s: dict,
                      footprint: dict) -> None:
    """Add a priced group's traffic, energy, busy lane-cycles and memory time to the totals, and keep the larger
    footprint per level."""
    for level, per_tensor in part.traffic.items():
        into = traffic[level]
        for t, b in per_tensor.items():
            into[t] = into.get(t, 0.0) + b
    for total, add in ((energy, part.energy), (busy, part.busy), (memory_s, part.memory_s)):
        for key, value in add.items():
            total[key] = value + total.get(key, 0)
    for level, b in part.footprint_bytes.items():
        footprint[level] = max(footprint.get(level, 0.0), b)  # the plan's: one value for every point


def _group(binding: Binding, numbers: ArchNumbers, plan: GroupPlan, n: int) -> _GroupTotals:
    """The group's time, energy and feasibility: its plan priced with the architecture's numbers (`totals`)."""
    spent: list[Number] = [0] * len(plan.energy_keys)  # pJ per (component, action) the plan prices, in its order
    busy: dict[str, Number] = {}
    cycles: dict[str, Number] = {}
    einsums = []
    for ep in plan.einsums:
        unit = numbers.units[ep.unit]
        op_cycles, op_pj = unit.op_cycles, unit.op_pj
        lane_cycles = einsum_pj = 0
        for slot, op, count in ep.priced:
            lane_cycles = lane_cycles + count * op_cycles[op]
            pj = count * op_pj[op]
            spent[slot] = spent[slot] + pj
            einsum_pj = einsum_pj + pj
        if ep.pipelined and ep.ops:  # one point per cycle of its slowest op
            lane_cycles = ep.most_ops * maximum_of([op_cycles[op] for op in ep.ops])
        busy[ep.unit] = busy.get(ep.unit, 0) + lane_cycles
        compute = cycles[ep.name] = lane_cycles / ep.lanes
        einsums.append((plan.group.name, ep, compute, einsum_pj))
    compute_cycles = _overlap(plan, cycles)
    reasons = _fanout_reasons(numbers, plan, n)
    _overlap_reasons(numbers, plan, cycles, compute_cycles, n, reasons)
    for i in range(n) if plan.reasons else ():  # the loop nest's own, first
        reasons[i] = [*plan.reasons, *reasons.get(i, [])]

    levels = numbers.levels
    for slot, index, action, bits in plan.actions:
        level = levels[index]
        spent[slot] = spent[slot] + bits / level.energy_access_bits * level.actions_pj[action]
    energy = dict(zip(plan.energy_keys, spent, strict=True))
    traffic = _fit(binding, numbers, plan, n, energy, reasons)
    moved = plan.moved if traffic is plan.traffic else {lv: sum(per.values()) for lv, per in traffic.items()}
    memory_s = {}
    for m in levels:
        bandwidth = m.bandwidth_bytes_per_s
        if bandwidth is None:  # no limit
            continue
        level_moved = moved.get(m.name, 0)
        limited = bandwidth != 0  # a column's 0: no limit at that point
        if _any(limited & (level_moved != 0)):
            memory_s[m.name] = _divided(level_moved, bandwidth, limited)
    seconds = maximum_of([compute_cycles / numbers.clock_hz, *memory_s.values()])
    return _GroupTotals(seconds, compute_cycles, memory_s, traffic, energy, busy, plan.footprint_bytes, reasons,
                        einsums)


def _fit(binding: Binding, numbers: ArchNumbers, plan: GroupPlan, n: int, energy: dict[Key, Number],
         reasons: dict[int, list[str]]) -> dict[str, dict[str, Number]]:
    """Each level's tiles against its capacity: a reason for each point whose overflow is more than the level's
    spillable tiles; where it is not, the overflow spills (`_spill`), its energies added to `energy`. Returns the
    traffic, the plan's own where nothing spills, else a copy with the spilled accesses moved."""
    traffic = plan.traffic
    for index in plan.held:
        m = numbers.levels[index]
        footprint = plan.footprint_bytes[m.name]
        overflow = footprint - m.room_bytes
        over = overflow > 0
        if not _any(over):
            continue
        spillable = plan.spillable.get(m.name, 0)
        failed = _points(over & (overflow > spillable), n)
        kept = (", ".join(plan.kept_at.get(m.name, ())) or "hand-offs between units") if failed else ""
        for i in failed:
            reasons.setdefault(i, []).append(f"group {plan.group.name}: {m.name} holds {footprint:.0f} B of tiles "
                                             f"({kept}), over its capacity of {int(value_at(m.room_bytes, i))} B")
        spill = over & (overflow <= spillable)
        if not _any(spill):
            continue
        if traffic is plan.traffic:
            traffic = {level: dict(per) for level, per in plan.traffic.items()}
        _spill(binding, numbers, plan, index, _divided(overflow, spillable, spill), spill, traffic, energy)
    return traffic


def _spill(binding: Binding, numbers: ArchNumbers, plan: GroupPlan, index: int, fraction: Number, spill: Number,
           traffic: dict[str, dict[str, Number]], energy: dict[Key, Number]) -> None:
    """The part `fraction` of level `index`'s spillable tiles that does not fit lives in the level each spill tensor
    names (`SpillPlan.parent`), where `spill` (0 elsewhere). Each access the level served to that share, as its
    traffic counts them (every reuse, partial sums read back), is sent or taken by the parent instead, and the
    level no longer fills the share from the parent nor writes it back: `traffic` and `energy` moved so."""
    levels = numbers.levels
    name = levels[index].name
    word = binding.word_bytes
    for s in plan.spills[name]:
        (served_read, served_written), (filled_read, filled_written) = s.served, s.filled
        parent = levels[s.parent].name
        served = fraction * (served_read + served_written) * word
        traffic[name][s.tensor] = traffic[name][s.tensor] - served
        above = traffic.setdefault(parent, {})
        above[s.tensor] = above.get(s.tensor, 0.0) + served - fraction * (filled_read + filled_written) * word
        # elements per action: the parent takes the level's part in each access it served (a read to send, a write
        # to take); the fills and write-backs between the two are gone
        for at, action, elems in ((s.parent, "read", served_read - filled_read),
                                  (s.parent, "write", served_written - filled_written),
                                  (index, "read", -(served_read + filled_written)),
                                  (index, "write", -(served_written + filled_read))):
            if elems:
                level = levels[at]
                spent = fraction * elems * word * 8 / level.energy_access_bits * level.actions_pj[action]
                energy[level.name, action] = energy.get((level.name, action), 0) + _where(spill, spent, 0.0)


def _fanout_reasons(numbers: ArchNumbers, plan: GroupPlan, n: int) -> dict[int, list[str]]:
    """Why the group's spatial loops need more PEs than a unit has, along one of its dimensions (see the module
    docstring for which loops go along which dimension): point -> its reasons, for the points with some."""
    reasons: dict[int, list[str]] = {}
    for unit_name, d, fanout, along in plan.fanouts:
        shape = numbers.units[unit_name].shape
        bad = _points(fanout > shape[d], n)
        if not bad:
            continue
        named = " x ".join(f"{lp.path or f'loops[{i}] rank {lp.rank}'} = {lp.factor}" for i, lp in along)
        for i in bad:
            pes = [int(value_at(s, i)) for s in shape]
            reasons.setdefault(i, []).append(
                f"group {plan.group.name}: {named} spreads {fanout} over unit {unit_name}, which has {pes[d]} PEs "
                f"along dimension {d} (shape {' x '.join(map(str, pes))})")
    return reasons


def _overlap_reasons(numbers: ArchNumbers, plan: GroupPlan, cycles: dict[str, Number], compute_cycles: Number,
                     n: int, reasons: dict[int, list[str]]) -> None:
    """Why the group's overlap runs a unit's Einsums side by side beyond its PEs: over the whole group, or within
    one `max(...)` of its expression (two full-array Einsums in one max need twice that max's cycles); added for
    the points without fan-out reasons, from the first window where a point has any."""
    done = set(reasons)
    values = {**plan.delay_sizes, **cycles}
    windows = [("its overlap", compute_cycles, None),
               *((f"its overlap's {text}", window(values), names) for text, window, names in plan.windows)]
    for what, window_cycles, names in windows:
        found = set()
        for unit_name, mine in plan.by_unit:
            inside = [(e, lanes) for e, lanes in mine if names is None or e in names]
            busy = 0
            for e, lanes in inside:
                busy = busy + cycles[e] * lanes
            unit_lanes = numbers.units[unit_name].lanes
            for i in _points(busy > unit_lanes * window_cycles * (1 + LANE_CYCLES_SLACK), n):
                if i in done:
                    continue
                b, c, lanes = float(value_at(busy, i)), float(value_at(window_cycles, i)), int(value_at(unit_lanes, i))
                found.add(i)
                reasons.setdefault(i, []).append(
                    f"group {plan.group.name}: {what} runs {', '.join(e for e, _ in inside)} side by side on unit "
                    f"{unit_name} in {c:.0f} cycles, but their {b:.0f} PE-cycles need {b / lanes:.0f} cycles of "
                    f"its {lanes} PEs")
        done |= found


def _overlap(plan: GroupPlan, cycles: dict[str, Number]) -> Number:
    if plan.group.overlap == "sequential":
        return sum(cycles.values())
    if plan.group.overlap == "max":
        per_unit: dict[str, Number] = {}
        for ep in plan.einsums:
            per_unit[ep.unit] = per_unit.get(ep.unit, 0) + cycles[ep.name]
        return maximum_of(list(per_unit.values()))
    return plan.pipeline({**plan.delay_sizes, **cycles} if plan.delay_sizes else cycles)


def _any(holds: Number | bool) -> bool:
    """Whether `holds` at any point."""
    return bool(holds.any()) if isinstance(holds, np.ndarray) else bool(holds)


def _points(holds: Number | bool, n: int) -> list[int]:
    """The points where `holds` (one value: all or none of the n)."""
    if isinstance(holds, np.ndarray) and holds.ndim:
        return np.flatnonzero(holds).tolist()
    return list(range(n)) if holds else []


def value_at(value: Number, i: int) -> Number:
    """Point i's value of a column (or the one value every point has)."""
    return value[i] if isinstance(value, np.ndarray) and value.ndim else value


def _where(holds: Number | bool, value: Number, other: float) -> Number:
    """`value` where `holds`, else `other` (per point for a column)."""
    if isinstance(holds, np.ndarray):
        return np.where(holds, value, other)
    return value if holds else other


def _divided(numerator: Number, denominator: Number, holds: Number | bool) -> Number:
    """numerator / denominator where `holds`, else 0 (a column's other points divide without a warning)."""
    if not isinstance(holds, np.ndarray):
        return numerator / denominator if holds else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(holds, numerator / denominator, 0.0)


def _at_most_one(value: Number) -> Number:
    """`value` with a rounding excess over 1 (at most `LANE_CYCLES_SLACK`) taken off, a column's points each; an
    infeasible mapping's fan-out beyond its array still reads above 1."""
    if isinstance(value, np.ndarray):
        return np.where(value <= 1 + LANE_CYCLES_SLACK, np.minimum(value, 1.0), value)
    return 1.0 if 1 < value <= 1 + LANE_CYCLES_SLACK else value


def pipeline_cycles(node: Expr, cycles: dict[str, float]) -> float:
    """Value of a group's pipeline expression (`+`, `*`, `max` over Einsum names and rank sizes) given each
    name's cycles; shared with the event model so both read an expression alike."""
    return compile_pipeline(node)(cycles)
