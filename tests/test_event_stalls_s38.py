"""A compute unit the mapping gives no work is idle for the whole run because nothing is mapped to it, not because it
waits on the critical path (audit, session 38: `linear-qkv-flat` on Llama-3-8B charged all of array1d's time, 49 %
of units x latency, to "waiting on Q", "waiting on K" and "waiting on V")."""

from __future__ import annotations

from functools import cache

import pytest

from archsim.model.event import EventRun, simulate
from archsim.point import Point, prepare
from archsim.report.labelled import labelled
from archsim.report.tables import stall_rows


@cache
def _out_projection() -> tuple[Point, EventRun]:
    p = prepare("linear-out-flat", workload="bert-base", sets={"seq_len": 1024})
    return p, simulate(p.binding, p.analysis, p.arch, p.mapping)


def test_a_unit_with_no_work_is_idle_for_no_work_mapped() -> None:
    """Output projection on the FLAT hardware, BERT-base, 1K tokens: one GEMM, on the 2-D array, so the 1-D array
    runs no tile. Hand derivation (as tests/test_event.py's fill and drain): compute 64 x 1024 x 768 x 768 MACs on
    65,536 PEs at 940 MHz; the first block of AV and WO read before any compute and the last block of Z written
    after it, 4,325,376 B at 400 GiB/s, which the 2-D array spends idle on DRAM. The 1-D array is idle the whole
    latency, all of it "no work mapped", and no Einsum is blamed for it."""
    _, run = _out_projection()
    compute_s = 64 * 1024 * 768 * 768 / 65536 / 940e6
    fill_drain_s = (1024 * 12 * 64 * 2 + 768 * 768 * 2 + 1024 * 768 * 2) / (400 * 2**30)
    latency_s = compute_s + fill_drain_s
    assert run.result.latency_s == pytest.approx(latency_s, rel=1e-6)
    assert run.result.utilization["array1d"] == 0.0
    assert run.unit_stalls["array1d"] == pytest.approx({"no work mapped": latency_s}, rel=1e-6)
    assert run.unit_stalls["array2d"] == pytest.approx({"DRAM bandwidth": fill_drain_s}, rel=1e-6)
    assert run.stalls == pytest.approx({"no work mapped": latency_s, "DRAM bandwidth": fill_drain_s}, rel=1e-6)


def test_stall_shares_and_utilization_cover_units_x_latency() -> None:
    """stalls.csv's shares (of units x latency) plus each unit's busy share (its utilization: the GEMM uses all
    lanes of the 2-D array) add up to 1: the unused unit's half is "no work mapped", 0.5 of units x latency."""
    p, run = _out_projection()
    rows = stall_rows([labelled(p, run.result)])
    share = dict(zip(rows["source"], rows["share"], strict=True))
    assert share["no work mapped"] == pytest.approx(0.5, rel=1e-9)
    busy_share = sum(run.result.utilization.values()) / len(p.arch.units)
    assert sum(share.values()) + busy_share == pytest.approx(1.0, rel=1e-9)
