"""The command-level HBM2 PIM channel (`archsim.model.dram`) against hand derivations from the HBM2 timing of
../shared/reference/pim.md §1.2 (tCK 1 ns; CL/tRCD/tRP 14, tRAS 34, tFAW 30, tCCD_S/L 1/2, tREFI 3900, tRFC 260;
128-bit DDR bus = 32 B/cycle; tRRD_S/L 4/6 and tRTP_L 6 of the same ini from neupims-artifact.md §5) and against
the analytical command model `archsim.systems.pim.tile_cycles`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.arch.pim import PIMSpec
from archsim.model.dram import ChannelSpec, PIMTile, ReadStream, simulate_channel, streaming_addresses
from archsim.model.trace import chrome_trace
from archsim.systems.pim import tile_cycles

P = PIMSpec()
BURST_CYCLES = 2  # a 64 B read on the 128-bit DDR bus (32 B/cycle)


def spec_with(row_buffers: int) -> ChannelSpec:
    return ChannelSpec(pim=replace(P, row_buffers=row_buffers))


def test_lone_full_tile_matches_pim_tile_cycles():
    # G_ACTs (each one bank group, the next another) tRRD_S = 4 apart at 0,4,8,12 and (tFAW) 30,34,38,42; COMPs from
    # 42 + tRCD = 56 every tCCD_L = 2, the last at 118; READRES at 120, its 64 B out from 134 to 136; PIM precharge at
    # 136 (tRAS of the banks opened at 42 ended at 76); banks free tRP later: 150, the closed form of pim.tile_cycles.
    run = simulate_channel([PIMTile(32, 32, 64)])
    assert run.cycles == 150 == tile_cycles(P, 32, 32, 64)
    assert run.commands == {"G_ACT": 8, "COMP": 32, "READRES": 1, "PIM_PRECHARGE": 1}
    assert run.stalls == {}
    assert simulate_channel([PIMTile()] * 3).pim_finish_cycles == (150, 300, 450)  # next G_ACT waits tRP


def test_short_tile_waits_tras_of_its_last_group_activation():
    # 32 banks, 1 column: last G_ACT 42, COMP 56, READRES 58, data to 74; the banks opened at 42 may precharge only at
    # 42 + tRAS = 76, so 90. tile_cycles counts tRAS from the first G_ACT: max(74, 34) + 14 = 88.
    assert simulate_channel([PIMTile(32, 1, 64)]).cycles == 90
    assert tile_cycles(P, 32, 1, 64) == 88


@settings(max_examples=60, deadline=None)
@given(banks=st.integers(1, 32), columns=st.integers(1, 32))
def test_partial_tiles_match_pim_tile_cycles(banks, columns):
    # Exact from 3 columns on: the read ends tRCD + 2 x columns + CL + burst >= 34 = tRAS after the last G_ACT.
    # Below, per-bank tRAS adds at most tRAS - (tRCD + 2 + CL + 1) = 3 cycles (see the test above).
    result_bytes = banks * P.element_bytes
    simulated = simulate_channel([PIMTile(banks, columns, result_bytes)]).cycles
    analytical = int(tile_cycles(P, banks, columns, result_bytes))
    if columns >= 3:
        assert simulated == analytical
    else:
        assert 0 <= simulated - analytical <= 3


def test_open_row_stream_reaches_bus_bandwidth():
    # 1000 reads to one row: ACT at 0, RDs from tRCD every 2 cycles (the data bus: 64 B in 2 cycles >= tCCD_L),
    # the last one's data back CL + 2 cycles after it.
    n = 1000
    run = simulate_channel(reads=ReadStream(((0, 0),) * n))
    assert run.npu_finish_cycle == P.tRCD_cycles + BURST_CYCLES * (n - 1) + P.tCL_cycles + BURST_CYCLES
    assert run.read_bytes_per_cycle == pytest.approx(P.bus_bytes_per_cycle, rel=0.02)  # 32 B/cycle
    assert run.stalls == {}


def test_open_loop_reads_below_bandwidth_see_hit_latency():
    # One read every 4 cycles to one row (16 B/cycle offered): the ACT's tRCD backlog (RDs at 14, 16, 18, 20, 22,
    # 24, 26) drains by read 7 (arrives 28); the last read arrives at 396 and has its data CL + 2 cycles later.
    run = simulate_channel(reads=ReadStream(((0, 0),) * 100, interval_cycles=4))
    assert run.npu_finish_cycle == 4 * 99 + P.tCL_cycles + BURST_CYCLES
    assert run.read_finish_cycles[:8] == tuple(t + P.tCL_cycles + BURST_CYCLES for t in (14, 16, 18, 20, 22, 24,
                                                                                         26, 28))


def test_row_miss_costs_trp_plus_trcd():
    # One read at a time, three hits on row 0 (past tRAS), then row 1 vs row 0 in the same bank: the miss adds a
    # PRE, tRP and an ACT, tRCD, and is blamed on a row-buffer conflict for the PRE slot plus the tRP after it.
    def run(last_row):
        return simulate_channel(reads=ReadStream(((0, 0),) * 3 + ((0, last_row),), outstanding=1))

    hit, miss = run(0), run(1)
    assert miss.npu_finish_cycle - hit.npu_finish_cycle == P.tRP_cycles + P.tRCD_cycles
    assert miss.stalls == {"row-buffer conflict": P.tRP_cycles}
    assert hit.read_finish_cycles[-1] - hit.read_finish_cycles[-2] == P.tCL_cycles + BURST_CYCLES


def mixed(row_buffers: int, tiles: int = 20, reads: int = 1024):
    spec = spec_with(row_buffers)
    return simulate_channel([PIMTile()] * tiles, ReadStream(streaming_addresses(reads, P)), spec)


def test_dual_row_buffers_overlap_npu_reads_and_pim_tiles():
    # NeuPIMs §1.1: with one row buffer (Newton) a tile's open rows block the NPU's reads, so the two streams
    # serialise; with a MEM and a PIM row buffer they overlap and share only the command bus, tFAW and data bus.
    # These are the two stage formulas of archsim.systems.system_model (`sbi_stage_s`): NPU HBM time + PIM time with
    # one row buffer, max(NPU, PIM) with two; the bounds below are how far the command-level channel is from them.
    pim_alone = simulate_channel([PIMTile()] * 20).cycles  # 20 x 141
    npu_alone = simulate_channel(reads=ReadStream(streaming_addresses(1024, P))).cycles
    single, dual = mixed(1), mixed(2)
    assert single.stream_stalls["NPU"]["row-buffer conflict"] > 0.5 * pim_alone
    assert "row-buffer conflict" not in dual.stream_stalls.get("PIM", {})
    assert single.cycles >= 0.95 * (pim_alone + npu_alone)  # serialised
    assert dual.cycles <= 1.15 * max(pim_alone, npu_alone)  # overlapped, some interference
    assert single.cycles / dual.cycles > 1.5  # measured about 1.75
    assert {"PIM priority", "tFAW"} <= set(dual.stream_stalls["NPU"])


def test_refresh_is_a_named_stall():
    # 2500 reads to one row span more than tREFI. At 3900 the last RD (3898) may be precharged from 3898 + tRTP 6;
    # PREA at 3904, REF tRP later, no ACT for tRFC: the stream waits 4 + tRP + tRFC = 278 cycles on the refresh.
    n = 2500
    run = simulate_channel(reads=ReadStream(((0, 0),) * n))
    in_flight = P.tRTP_cycles - 2
    assert run.stalls == {"refresh": in_flight + P.tRP_cycles + P.tRFC_cycles}
    no_refresh = P.tRCD_cycles + BURST_CYCLES * (n - 1) + P.tCL_cycles + BURST_CYCLES
    assert run.npu_finish_cycle == no_refresh + run.stalls["refresh"] + P.tRCD_cycles  # and one more ACT
    assert [s.name for s in run.timeline if s.resource == "refresh"] == ["REF"]
    # 31-column tiles take 150 - 2 = 148 cycles. A tile in flight at 3900 finishes first (tile 26: PIM precharge at
    # 3982, banks free at 3996); REF at 3996 (tRP after that precharge), so the next tile starts tRFC late. Blamed on
    # the refresh: every cycle after the precharge slot until REF + tRFC, tRP - 1 + tRFC (the tRP it would have
    # waited anyway included).
    tiles = simulate_channel([PIMTile(32, 31, 64)] * 30)
    assert tiles.cycles == 30 * 148 + P.tRFC_cycles
    assert tiles.stalls == {"refresh": P.tRP_cycles - 1 + P.tRFC_cycles}


def test_timeline_is_a_chrome_trace():
    run = mixed(2, tiles=2, reads=64)
    trace = chrome_trace(run.timeline)
    resources = {s.resource for s in run.timeline}
    assert {"command bus", "data bus", "PIM"} <= resources
    assert len(trace["traceEvents"]) > sum(run.commands.values())
    assert all(math.isfinite(s.end_s) and s.end_s >= s.start_s for s in run.timeline)


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match="PIMTile"):
        simulate_channel([PIMTile(banks=33)])
    with pytest.raises(ValueError, match="bank 40"):
        simulate_channel(reads=ReadStream(((40, 0),)))
