"""The batch path (`archsim.model.batch`) gives the single-point path's answer (issue 17's must-show).

What is compared: on 500 random points of the demo sweep's space (archsim/dse/sweeps/demo.yaml: FuseMax on
BERT-Base, pe_dim 64/128/256 through its linked axis, global-buffer capacity, DRAM bandwidth, sequence length),
every metric of `analytical.evaluate`'s Result (latency, energy and energy per action, compute cycles, area,
traffic per level and tensor, memory time per level, utilization per unit, footprint, DRAM traffic) against the
batch's column, within a relative difference of 1e-12 (the batch applies the same float operations in the same
order; the bound allows for a sum whose terms meet in another order), feasibility and the reason string exactly,
and `result(i)` equal to `evaluate` in every field (compared as JSON text). Capacities and bandwidths are random
numbers, not only the axis values, with buffers down to 32 KiB, and each point's mapping is the mapper's choice
at one of the axis' capacities, so tiles overflow: the test requires feasible and infeasible points. FLAT's mapping
(its score block spills to DRAM when the buffer is short) adds points that spill; the test requires some. The
expected values come from the single path itself: this is an equivalence test; the papers' numbers are checked by
the reproduction tests (tests/test_fusemax_*.py).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.model.batch import BatchResult, evaluate_columns, evaluate_points
from archsim.model.event import simulate
from archsim.model.result import Result
from archsim.point import prepare

KIB, MIB, GIB = 2**10, 2**20, 2**30
PE_DIMS = (64, 128, 256)  # demo.yaml's linked.pe_dim
SEQ_LENS = (4096, 16384, 65536, 262144)  # its workload.seq_len
CAPACITIES = (262144, 1048576, 4194304, 16777216)  # its GlobalBuffer capacities: where the mapper chooses tiles
BUFFER = "memories.GlobalBuffer.capacity_bytes"
DRAM_BW = "memories.DRAM.bandwidth_bytes_per_s"
RELATIVE = 1e-12


def linked(pe: int) -> dict[str, object]:
    """demo.yaml's linked pe_dim axis, on the architecture."""
    return {"units.array2d.shape": [pe, pe], "units.array1d.shape": [pe], "memories.RF.instances": pe * pe,
            "memories.RF1D.instances": pe}


@functools.cache
def demo_points(n: int = 500) -> tuple[list[tuple], list[tuple[int, float, tuple]]]:
    """n random demo-space points as prepared (binding, analysis, arch, mapping), and each one's (capacity,
    bandwidth, the point whose mapping and structure it shares)."""
    rng = np.random.default_rng(17)
    base = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096}).arch
    mapped = {}
    points, drawn = [], []
    for _ in range(n):
        pe, seq, mapped_at = int(rng.choice(PE_DIMS)), int(rng.choice(SEQ_LENS)), int(rng.choice(CAPACITIES))
        capacity = int(math.exp(rng.uniform(math.log(32 * KIB), math.log(32 * MIB))))
        bandwidth = float(math.exp(rng.uniform(math.log(10 * GIB), math.log(1000 * GIB))))
        if (pe, seq, mapped_at) not in mapped:
            arch = base.with_changes(**linked(pe), **{BUFFER: mapped_at})
            mapped[pe, seq, mapped_at] = prepare("fusemax", arch=arch, workload="bert-base",
                                                 sets={"seq_len": seq, "M0": pe})
        p = mapped[pe, seq, mapped_at]
        points.append((p.binding, p.analysis, p.arch.with_changes(**{BUFFER: capacity, DRAM_BW: bandwidth}),
                       p.mapping))
        drawn.append((capacity, bandwidth, (p.binding, p.analysis, p.arch, p.mapping)))
    return points, drawn


def close(got: float, expected: float, what: str) -> None:
    assert abs(got - expected) <= RELATIVE * max(abs(got), abs(expected)), f"{what}: {got!r} vs {expected!r}"


def columns_agree(columns: dict, values: dict, i: int, what: str) -> None:
    """Each value has its column, equal at point i; a column the point has no value for is 0 there."""
    for key, column in columns.items():
        if isinstance(column, dict):
            columns_agree(column, values.get(key, {}), i, f"{what}[{key}]")
        elif key in values:
            close(float(column[i]), values[key], f"{what}[{key}]")
        else:
            assert column[i] == 0, f"{what}[{key}] is {column[i]!r} at a point without it"
    missing = set(values) - set(columns)
    assert not missing, f"{what}: no column for {missing}"


def assert_agrees(batch: BatchResult, i: int, single: Result) -> None:
    assert bool(batch.feasible[i]) == single.feasible and batch.reason[i] == single.reason
    for name in ("latency_s", "energy_pj", "compute_cycles", "area_um2"):
        close(float(getattr(batch, name)[i]), getattr(single, name), name)
    close(float(batch.dram_traffic_bytes[i]), single.dram_traffic_bytes, "dram_traffic_bytes")
    for name in ("traffic_bytes", "memory_s", "energy_by", "utilization", "footprint_bytes"):
        columns_agree(getattr(batch, name), getattr(single, name), i, name)
    assert json.dumps(batch.result(i).to_dict()) == json.dumps(single.to_dict())


def test_points_of_the_demo_space_agree_with_the_single_path() -> None:
    points, _ = demo_points()
    batch = evaluate_points(points)
    assert len(batch) == len(points)
    singles = [evaluate(*p) for p in points]
    for i, single in enumerate(singles):
        assert_agrees(batch, i, single)
    for record, single in zip(batch.records(), singles, strict=True):
        expected = single.record()
        assert (record.target_kind, record.target, record.feasible, record.reason) == (
            expected.target_kind, expected.target, expected.feasible, expected.reason)
        for name in ("time_s", "energy_j", "area_um2", "traffic_bytes"):
            close(getattr(record, name), getattr(expected, name), name)
        assert record.busy_s.keys() == expected.busy_s.keys()
        for unit, busy in expected.busy_s.items():
            close(record.busy_s[unit], busy, f"busy_s[{unit}]")
    feasible = sum(r.feasible for r in singles)
    assert 0 < feasible < len(points), f"{feasible} of {len(points)} feasible: draw points on both sides"
    assert any("over its capacity" in r.reason for r in singles)


def test_columns_of_one_plan_agree_with_the_single_path() -> None:
    """evaluate_columns per mapped point: the buffer and DRAM bandwidth drawn for the points sharing it."""
    points, drawn = demo_points()
    shared: dict[int, list[int]] = {}
    for i, (_, _, base) in enumerate(drawn):
        shared.setdefault(id(base[2]), []).append(i)
    for index in shared.values():
        base = drawn[index[0]][2]
        batch = evaluate_columns(*base, {BUFFER: [drawn[i][0] for i in index],
                                         DRAM_BW: [drawn[i][1] for i in index]})
        for j, i in enumerate(index):
            assert_agrees(batch, j, evaluate(*points[i]))


def test_shape_clock_and_energy_columns_agree_including_fan_out_and_composite_energies() -> None:
    """A narrower array than the mapping's tiles (fan-out reason), a clock, an RF count, the 1-D array's MAC
    energy, which its exp, mul and gelu are priced from (re-derived as `with_changes` does), its exp cycles, DRAM's
    read energy and the buffer's area."""
    p = prepare("fusemax", workload="bert-base", sets={"seq_len": 16384})
    numbers = {"units.array2d.shape": [[256, 256], [32, 256], [256, 128], [512, 512]],
               "clock_hz": [940e6, 1.5e9, 500e6, 2e9], "units.array1d.energy.actions_pj.mac": [17.1645, 5.0, 30.0, 0.5],
               "memories.RF.instances": [65536, 1024, 4096, 262144], "units.array1d.op_cycles.exp": [6, 1, 12, 3],
               "memories.DRAM.energy.actions_pj.read": [249.6, 100.0, 0.0, 512.0],
               "memories.GlobalBuffer.area_um2": [1e7, 2e7, 0.0, 5e8]}
    batch = evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, numbers)
    reasons = []
    for i in range(4):
        arch = p.arch.with_changes(**{path: values[i] for path, values in numbers.items()})
        single = evaluate(p.binding, p.analysis, arch, p.mapping)
        assert_agrees(batch, i, single)
        reasons.append(single.reason)
    assert reasons[0] == "" and "spreads 256 over unit array2d" in reasons[1] and "PEs along dimension 1" in reasons[2]


def test_flat_points_that_spill_agree_with_the_single_path() -> None:
    """FLAT's mapping as written sizes its score block from capacity(GlobalBuffer), so each capacity is its own
    plan (the prepared mapping, its factors computed, is one plan whatever the buffer). The library's rule divides
    the tiles at every capacity; its former `min(P // 256, ...)`, which need not, gives the refused points."""
    rng = np.random.default_rng(3)
    p = prepare("flat", workload="bert-base", sets={"seq_len": 65536})
    spec = library.load_mapping_spec("flat")
    (group,) = spec.groups
    loops = tuple(replace(lp, factor=lp.factor.replace("divisor_at_least(", "min(")) if lp.expression else lp
                  for lp in group.loops)
    written = replace(spec, groups=(replace(group, loops=loops),))
    points = [(p.binding, p.analysis, p.arch.with_changes(**{
        BUFFER: int(math.exp(rng.uniform(math.log(MIB), math.log(64 * MIB)))),
        DRAM_BW: float(math.exp(rng.uniform(math.log(10 * GIB), math.log(1000 * GIB))))}), mapping)
        for mapping in [written, p.mapping] * 12]
    batch = evaluate_points(points)
    spilled = refused = 0
    for i, point in enumerate(points):
        try:
            single = evaluate(*point)
        except SpecError as e:  # a block of rows that does not divide the length: the point cannot run
            assert not batch.feasible[i] and batch.reason[i] == str(e) and math.isnan(batch.latency_s[i])
            with pytest.raises(SpecError, match=re.escape(str(e))):
                batch.result(i)
            refused += 1
            continue
        assert_agrees(batch, i, single)
        capacity = point[2].memory("GlobalBuffer").capacity_bytes
        spilled += single.feasible and single.footprint_bytes["GlobalBuffer"] > capacity
    assert spilled and refused, f"{spilled} points spilled, {refused} refused: draw some of each"
    with pytest.raises(SpecError, match=r"capacity\(GlobalBuffer\).*evaluate_points"):
        evaluate_columns(p.binding, p.analysis, p.arch, written, {BUFFER: [MIB, 2 * MIB]})


def test_a_bad_column_is_a_spec_error_naming_the_field() -> None:
    p = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096})
    with pytest.raises(SpecError, match=r"bandwidth_bytes_per_s.*positive number.*-1.0 at point 1"):
        evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {DRAM_BW: [1e9, -1.0]})
    with pytest.raises(SpecError, match=r"capacity_bytes.*positive integer.*1000.5 at point 0"):
        evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {BUFFER: [1000.5, 2048]})
    with pytest.raises(SpecError, match=r"word_bytes.*not a field the batch path varies"):
        evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {"word_bytes": [2, 4]})
    with pytest.raises(SpecError, match=r"clock_hz: expected an array of values, one per point, got 1000000000.0"):
        evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {"clock_hz": 1e9})
    with pytest.raises(SpecError, match=r"expected arrays of one length, got lengths \[2, 3\]"):
        evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {"clock_hz": [1e9, 2e9], DRAM_BW: [1e9] * 3})
    with pytest.raises(SpecError, match=r"units.array2d.shape.*N x 2 array"):
        evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {"units.array2d.shape": [256, 256]})


def test_a_mapping_of_several_groups_and_one_group_alone_agree_with_the_single_path() -> None:
    """Unfused (one group per Einsum) as a whole, and each group alone as the mapper scores it (`only_group`)."""
    p = prepare("unfused", workload="bert-base", sets={"seq_len": 4096})
    buffers, bandwidths = [64 * KIB, 1 * MIB, 16 * MIB], [10 * GIB, 100 * GIB, 1000 * GIB]
    numbers = {BUFFER: buffers, DRAM_BW: bandwidths}
    archs = [p.arch.with_changes(**{BUFFER: b, DRAM_BW: w}) for b, w in zip(buffers, bandwidths, strict=True)]
    for only_group in (None, *range(len(p.mapping.groups))):
        batch = evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, numbers, only_group)
        for i, arch in enumerate(archs):
            assert_agrees(batch, i, evaluate(p.binding, p.analysis, arch, p.mapping, only_group))


def test_an_overlap_beyond_a_units_pes_gives_the_single_paths_reason() -> None:
    """tests/test_mapping_validation.py's crammed overlap (QK and SLNV side by side on the whole 2-D array, and
    the 1-D array's Einsums too): overlap reasons where the 2-D array holds the tiles (a 512 x 256 one runs its
    Einsums side by side within its PEs), the fan-out reason alone (as the single path gives) where it is
    narrower."""
    spec = library.load_mapping_spec("fusemax")
    crammed = replace(spec, groups=(replace(spec.groups[0],
                                            overlap="max(QK, SLNV, RNV, SPNV) + LM+SLN+SLD+RD+AV+RM+PRM+SPD"),))
    p = prepare(crammed, workload="bert-base", sets={"seq_len": 4096})
    shapes = [[256, 256], [512, 256], [128, 256]]
    batch = evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {"units.array2d.shape": shapes})
    reasons = []
    for i, shape in enumerate(shapes):
        single = evaluate(p.binding, p.analysis, p.arch.with_changes(**{"units.array2d.shape": shape}), p.mapping)
        assert_agrees(batch, i, single)
        reasons.append(single.reason)
    assert "side by side on unit array2d" in reasons[0] and "side by side on unit array1d" in reasons[0]
    assert "array2d" not in reasons[1] and "side by side on unit array1d" in reasons[1]  # 131,072 PEs suffice
    assert "spreads 256 over unit array2d" in reasons[2] and "side by side" not in reasons[2]


def test_two_full_array_einsums_in_one_max_are_infeasible_in_both_paths() -> None:
    """`max(QK, SLNV) + LM + ...` runs QK and SLNV side by side, each on all 256 x 256 PEs: the whole group's
    PE-cycles fit (the 1-D array's terms lengthen the sum), so it ran at 0.045 s; the max's own window does not.
    On a 512 x 256 array the two fit beside each other."""
    spec = library.load_mapping_spec("fusemax")
    side_by_side = replace(spec, groups=(replace(spec.groups[0], overlap="max(QK, SLNV) + LM + SLN + SLD + RM + "
                                                                       "PRM + SPD + RD + SPNV + RNV + AV"),))
    p = prepare(side_by_side, workload="bert-base", sets={"seq_len": 4096})
    shapes = [[256, 256], [512, 256]]
    batch = evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {"units.array2d.shape": shapes})
    singles = [evaluate(p.binding, p.analysis, p.arch.with_changes(**{"units.array2d.shape": shape}), p.mapping)
               for shape in shapes]
    for i, single in enumerate(singles):
        assert_agrees(batch, i, single)
    assert not singles[0].feasible and ("its overlap's max(QK, SLNV) runs QK, SLNV side by side on unit array2d"
                                        in singles[0].reason)
    assert singles[1].feasible
    run = simulate(p.binding, p.analysis, p.arch, p.mapping)  # the event model: no timeline, the same reason
    assert run.result == singles[0] and run.timeline == ()
