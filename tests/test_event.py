"""The event model (archsim.model.event) against the analytical one, its timeline and its Chrome trace.

Tolerance (the README's claim): on every library mapping at 1K and 4K tokens, event latency within 1.61 % of
analytical latency, and within 0.41 % for FuseMax, FLAT and Unfused at 16K. The event model adds pipeline fill and
drain (about one tile in and one out per group), so on these points it sits just above the analytical value (at
most +1.605 %, the GEMMs at 1K tokens). Where the two differ by design the
test says so and checks the stall the event model names: the fill and drain of a GEMM below, and DRAM contention.
"""

from __future__ import annotations

import gc
import json
import math
from dataclasses import replace
from functools import cache
from itertools import pairwise, product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.library import names
from archsim.model.analytical import evaluate
from archsim.model.event import EventRun, simulate
from archsim.model.event_tasks import Task, count_below
from archsim.model.trace import chrome_trace, write_chrome_trace
from archsim.point import Point, prepare

LATENCY_TOL = 0.0161  # every library mapping at 1K and 4K tokens (worst: the GEMMs at 1K, +1.605 %)
LATENCY_TOL_16K = 0.0041  # FuseMax, FLAT and Unfused at 16K (FLAT +0.405 %: spilled scores read after written)
LIBRARY = tuple(names("mappings"))
# Every library mapping at 1K and 4K tokens, and the three seed designs at 16K.
AGREEMENT = [(m, n) for m in LIBRARY for n in (1024, 4096)] + [(m, 16384) for m in ("fusemax", "flat", "unfused")]
MAPPINGS = ("fusemax", "flat", "unfused", "fusemax-arch", "linear-ffn-flat")  # timeline checks: each policy kind


@cache
def _point(mapping: str, seq_len: int) -> Point:
    return prepare(mapping, workload="bert-base", sets={"seq_len": seq_len})


@cache
def _run(mapping: str, seq_len: int) -> EventRun:
    p = _point(mapping, seq_len)
    return simulate(p.binding, p.analysis, p.arch, p.mapping)


@pytest.mark.parametrize(("mapping", "seq_len"), AGREEMENT)
def test_latency_agrees_with_analytical(mapping: str, seq_len: int) -> None:
    p = _point(mapping, seq_len)
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    event = _run(mapping, seq_len).result
    tol = LATENCY_TOL_16K if seq_len == 16384 else LATENCY_TOL
    assert event.latency_s == pytest.approx(analytical.latency_s, rel=tol)
    # Same work and traffic: only time-dependent figures (latency, utilization, leakage) may differ.
    assert event.traffic_bytes == analytical.traffic_bytes
    assert event.compute_cycles == analytical.compute_cycles
    assert event.energy_pj == pytest.approx(analytical.energy_pj, rel=tol)


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_timeline_is_a_schedule(mapping: str) -> None:
    run = _run(mapping, 1024)
    latency_s = run.result.latency_s
    units = {u.name for u in _point(mapping, 1024).arch.units}
    eps = 1e-12 * latency_s
    for unit in units:
        spans = sorted((s for s in run.timeline if s.resource == unit), key=lambda s: s.start_s)
        assert spans, f"no work on {unit}"
        for before, after in pairwise(spans):
            assert after.start_s >= before.end_s - eps, (before, after)  # capacity 1: one tile at a time
        # Every idle moment of a unit is blamed on some source: busy + stalls = latency.
        busy_s = sum(s.end_s - s.start_s for s in spans)
        assert busy_s + sum(run.unit_stalls[unit].values()) == pytest.approx(latency_s, rel=1e-9)
    for span in run.timeline:
        assert -eps <= span.start_s <= span.end_s <= latency_s + eps


def test_gemm_fill_and_drain_differs_by_design() -> None:
    """Output projection on the FLAT hardware, BERT-base, 1K tokens: the one case where the event model sits
    visibly above the analytical one (+1.6 %), by design. Compute: 64 x 1024 x 768 x 768 MACs on 65,536 PEs =
    589,824 cycles = 0.6275 ms at 940 MHz, above DRAM's 0.4715 ms. The outer loop over B moves a block of 1024
    rows of AV (1024 x 12 x 64 x 2 B = 1,572,864 B) and Z (1024 x 768 x 2 B, as many), and WO (768 x 768 x 2 B =
    1,179,648 B) once. Double buffering hides every transfer but the first block and WO, read before any
    compute, and the last block of Z, written after it: 4,325,376 B at 400 GiB/s = 10.07 us, which the 2-D
    array spends idle on DRAM."""
    p = _point("linear-out-flat", 1024)
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    run = _run("linear-out-flat", 1024)
    compute_s = 64 * 1024 * 768 * 768 / 65536 / 940e6
    fill_drain_s = (1024 * 12 * 64 * 2 + 768 * 768 * 2 + 1024 * 768 * 2) / (400 * 2**30)
    assert analytical.latency_s == pytest.approx(compute_s, rel=1e-9)
    assert run.result.latency_s == pytest.approx(compute_s + fill_drain_s, rel=1e-6)
    assert run.unit_stalls["array2d"] == pytest.approx({"DRAM bandwidth": fill_drain_s}, rel=1e-6)


def test_pipeline_expression_is_the_schedule() -> None:
    """+Architecture (FuseMax's tiling without interleaving), BERT-base, 1K tokens. Its overlap policy
    `max(QK + LM + M0*LM, RD+RNV+AV) + RM + max(SLN+SLD, PRM+SPD) + SLNV + SPNV` runs SLNV and SPNV one after
    the other, where FuseMax's `max(SLNV, SPNV)` overlaps them, and stalls the 2-D array for M0 x LM cycles: LM
    takes 64 x 12 x 1024 x 1024 max ops on 65,536 PEs = 12,288 cycles, x 256 = 3,145,728 cycles = 3.347 ms at
    940 MHz, charged to the term by name."""
    def overlap_s(run: EventRun, a: str, b: str) -> float:
        spans = {e: [s for s in run.timeline if s.args.get("einsum") == e and s.resource != "DRAM"] for e in (a, b)}
        return sum(max(0.0, min(x.end_s, y.end_s) - max(x.start_s, y.start_s))
                   for x in spans[a] for y in spans[b] if abs(x.args["chunk"] - y.args["chunk"]) <= 1)

    arch_run, fusemax_run = _run("fusemax-arch", 1024), _run("fusemax", 1024)
    assert overlap_s(arch_run, "SLNV", "SPNV") == 0.0
    assert overlap_s(fusemax_run, "SLNV", "SPNV") > 0.0
    # The waterfall: RD, RNV and AV of one tile run beside QK of the next, in both.
    assert overlap_s(arch_run, "QK", "RNV") > 0.0
    assert overlap_s(fusemax_run, "QK", "RNV") > 0.0
    stall_s = 256 * 64 * 12 * 1024 * 1024 / 65536 / 940e6
    assert arch_run.unit_stalls["array2d"]["pipeline stall M0*LM"] == pytest.approx(stall_s, rel=1e-6)
    assert "pipeline stall M0*LM" not in fusemax_run.stalls


def test_sequential_overlap_runs_one_einsum_at_a_time() -> None:
    """FLAT, BERT-base, 1K tokens, with its group made `sequential`: the analytical model sums the Einsums'
    compute (QK and AV on the 2-D array, GM, SN, SD and A on the 1-D array); the event model runs them so that
    no two compute tiles overlap, and agrees within the tolerance."""
    p = _point("flat", 1024)
    mapping = replace(p.mapping, groups=tuple(replace(g, overlap="sequential") for g in p.mapping.groups))
    analytical = evaluate(p.binding, p.analysis, p.arch, mapping)
    assert analytical.compute_cycles == pytest.approx(sum(e.compute_cycles for e in analytical.einsums))
    run = simulate(p.binding, p.analysis, p.arch, mapping)
    assert run.result.latency_s == pytest.approx(analytical.latency_s, rel=LATENCY_TOL)
    tiles = sorted((s for s in run.timeline if s.resource != "DRAM"), key=lambda s: s.start_s)
    eps = 1e-12 * run.result.latency_s
    for before, after in pairwise(tiles):
        assert after.start_s >= before.end_s - eps, (before, after)


def test_dram_contention_names_the_stall() -> None:
    """FuseMax, BERT-base, 1K tokens with DRAM at 40 GiB/s (a tenth of 400 GiB/s). Q, K, V and the output AV each
    cross DRAM once: 64 x 12 x 1024 x 64 elements x 2 B = 100,663,296 B each, 402,653,184 B in all, which take
    402,653,184 / (40 x 2**30) = 9.375 ms, against 2.01 ms of compute: the arrays wait on DRAM."""
    p = _point("fusemax", 1024)
    dram_bps = p.arch.memory("DRAM").bandwidth_bytes_per_s / 10
    arch = p.arch.with_changes(**{"memories.DRAM.bandwidth_bytes_per_s": dram_bps})
    run = simulate(p.binding, p.analysis, arch, p.mapping)
    expected_dram_s = 4 * 64 * 12 * 1024 * 64 * 2 / (40 * 2**30)
    assert run.result.memory_s["DRAM"] == pytest.approx(expected_dram_s, rel=1e-9)
    assert run.result.latency_s >= expected_dram_s * (1 - 1e-9)
    assert run.stalls["DRAM bandwidth"] > 0
    assert max(run.stalls, key=run.stalls.get) == "DRAM bandwidth"
    # The 2-D array computes QK and SLNV (2 x 64*12*1024*1024*64 MACs on 65,536 PEs = 1,572,864 cycles) plus
    # LM, SLN, SLD (110,592 cycles): 1,683,456 cycles at 940 MHz = 1.791 ms. It idles the other 7.584 ms or more,
    # nearly all of it (95 % asked) on DRAM.
    busy_2d_s = (2 * 64 * 12 * 1024 * 1024 * 64 / 65536 + 110_592) / 940e6
    assert run.unit_stalls["array2d"]["DRAM bandwidth"] >= 0.95 * (expected_dram_s - busy_2d_s)


def test_chrome_trace_round_trips(tmp_path) -> None:
    run = _run("flat", 1024)
    path = write_chrome_trace(run.timeline, tmp_path / "flat.json")
    trace = json.loads(path.read_text())
    assert trace == json.loads(json.dumps(chrome_trace(run.timeline)))
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(run.timeline)
    first = run.timeline[0]
    assert spans[0]["ts"] == pytest.approx(first.start_s * 1e6)
    assert spans[0]["dur"] == pytest.approx((first.end_s - first.start_s) * 1e6)
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {s.resource for s in run.timeline}
    assert all(math.isfinite(e["ts"]) and e["dur"] >= 0 for e in spans)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), max_size=4).flatmap(lambda radices: st.tuples(
    st.just(radices),
    st.fixed_dictionaries({}, optional={j: st.integers(0, r - 1) for j, r in enumerate(radices)}))))
def test_chunk_shares_count_iterations(case) -> None:
    """The chunk arithmetic (how many iterations of a loop nest below x sit at given loop indices) against
    enumerating the iterations."""
    radices, fixed = case
    iterations = list(product(*(range(r) for r in radices)))
    hits = [all(it[j] == v for j, v in fixed.items()) for it in iterations]
    expected = [sum(hits[:x]) for x in range(len(iterations) + 1)]
    assert list(count_below(np.arange(len(iterations) + 1), radices, fixed)) == expected


@pytest.mark.parametrize("enabled", [True, False])
def test_simulate_leaves_no_task_alive_and_the_collector_as_it_was(enabled: bool) -> None:
    """simulate runs with Python's cyclic garbage collector off (its passes over the tasks freed nothing); it must
    put it back as it found it, and leave no reference cycle that keeps the tasks alive until a collection: with
    the collector off throughout, no Task survives the call (reference counting frees them all)."""
    p = _point("fusemax-arch", 1024)  # a pipeline expression with a stall term: markers, stalls and all
    was = gc.isenabled()
    try:
        gc.disable()
        simulate(p.binding, p.analysis, p.arch, p.mapping)
        assert not any(isinstance(o, Task) for o in gc.get_objects())
        if enabled:
            gc.enable()
        simulate(p.binding, p.analysis, p.arch, p.mapping)
        assert gc.isenabled() == enabled
    finally:
        if was:
            gc.enable()
