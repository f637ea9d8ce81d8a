"""FuseMax (MICRO'24) reproduced from archsim's own specs: model vs the artifact's result CSVs.

Tolerances (from issue 3): latency within 5 %, DRAM traffic within 1 %, utilizations within 0.02 absolute,
energy within 10 %. Failures we know of are marked xfail(strict=True), so a fix shows up as an XPASS to act on.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.point import prepare, run_point
from archsim.systems import fusemax

LATENCY_TOL, TRAFFIC_TOL, UTIL_TOL, ENERGY_TOL = 0.05, 0.01, 0.02, 0.10
CONFIGS = list(fusemax.CONFIGS)


@pytest.fixture(scope="module")
def table():
    records = fusemax.attention_records()
    return records, fusemax.compare(records).dropna(subset=["latency_s_paper"])


@pytest.mark.parametrize("config", CONFIGS)
def test_latency_and_utilization(table, config: str) -> None:
    rows = table[1][table[1].config == config]
    assert len(rows) == 18  # BERT, TrXL, T5 x 1K..1M
    assert rows.latency_s_err.abs().max() < LATENCY_TOL
    assert rows.util_2d_err.max() < UTIL_TOL
    assert rows.util_1d_err.max() < UTIL_TOL


@pytest.mark.parametrize("config", CONFIGS)
def test_dram_traffic(table, config: str) -> None:
    rows = table[1][table[1].config == config]
    assert rows.traffic_bytes_err.abs().max() < TRAFFIC_TOL


def test_flat_spills_part_of_its_score_block() -> None:
    """At 4K FLAT's row block (all 4096 rows) fills the 32 MiB buffer with scores, so the two 256 x 256 tiles
    handed between the arrays push 1/128 of it to DRAM, where each spilled score costs its 7 accesses: QK
    write; max and exp reads; numerator write; divide read; A write; AV read (the sum streams from the exp)."""
    sets = {"seq_len": 4096}
    point = prepare("flat", workload="bert-base", sets=sets)
    roomy = point.arch.with_changes(**{"memories.GlobalBuffer.capacity_bytes": 2 * 32 * 2**20})
    spilled = run_point("flat", workload="bert-base", sets=sets)
    unspilled = run_point("flat", arch=roomy, workload="bert-base", sets=sets)
    scores = 64 * 12 * 4096 * 4096
    assert spilled.feasible and unspilled.feasible
    assert spilled.dram_traffic_bytes() - unspilled.dram_traffic_bytes() == pytest.approx(
        7 * scores * (2 * 256 * 256) / (4096 * 4096) * 2, rel=1e-12)


@pytest.mark.parametrize("config", ["arch", "fusemax"])
def test_energy_fusemax_hardware(table, config: str) -> None:
    rows = table[1][table[1].config == config]
    assert rows.energy_pj_err.abs().max() < ENERGY_TOL


@pytest.mark.xfail(strict=True, reason="on-chip storage energy (global-buffer and RF accesses per operand) is "
                                       "not modelled yet: FLAT-hardware configs come out 15-25 % low")
@pytest.mark.parametrize("config", ["unfused", "flat", "cascade"])
def test_energy_flat_hardware(table, config: str) -> None:
    rows = table[1][table[1].config == config]
    assert rows.energy_pj_err.abs().max() < ENERGY_TOL


def test_headline_speedup(table) -> None:
    """Paper: 6.72x mean attention speedup of FuseMax over FLAT over 24 points (XLM's are ours alone)."""
    headline = fusemax.headline(table[0])
    assert headline["points"] == 24
    assert headline["speedup_vs_flat"] == pytest.approx(6.72, rel=0.05)


def _p1_closed_form(seq_len: int, e: int, f: int, buffer_bytes: int = 16 << 20) -> int:
    """fusemax.md §1.3: P1 = the largest factor of P/256 <= (L3 - 256*E*2 - 256*F*2) / ((E+1+1+F)*2*256)."""
    bound = (buffer_bytes - 256 * e * 2 - 256 * f * 2) // ((e + 1 + 1 + f) * 2 * 256)
    return max(d for d in range(1, seq_len // 256 + 1) if (seq_len // 256) % d == 0 and d <= bound)


@pytest.mark.parametrize("seq_len", [1 << 10, 1 << 14, 1 << 20])
def test_mapper_finds_the_fusemax_tiling(seq_len: int) -> None:
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": seq_len})
    buffer_loops = [lp for lp in point.mapping.groups[0].loops if lp.level == "GlobalBuffer" and lp.rank == "P"]
    assert [lp.factor for lp in buffer_loops] == [_p1_closed_form(seq_len, 64, 64)]


_SHAPES = dict(log_seq=st.integers(10, 20), head_dim=st.sampled_from([32, 64, 128]), heads=st.integers(1, 16),
               batch=st.integers(1, 64))


def _fusemax(log_seq: int, head_dim: int, heads: int, batch: int, mapping: str = "fusemax"):
    sets = {"seq_len": 1 << log_seq, "head_dim": head_dim, "heads": heads, "batch": batch}
    return run_point(mapping, workload="bert-base", sets=sets)


@settings(max_examples=25, deadline=None)
@given(**_SHAPES)
def test_fusemax_closed_forms(log_seq: int, head_dim: int, heads: int, batch: int) -> None:
    """fusemax.md §1.5: traffic = B*H*2*E*(2P + 2M*ceil(P/(256*P1))). Per 256-query tile with n key tiles the
    2-D array is busy (E+1+7+1+F)n cycles of the waterfall's (E+F+10)n + F, so util_2d tends to (E+F+9)/(E+F+10)
    and its useful-MAC share (E+F)/(E+F+9) of that; the 1-D array is never idle."""
    r = _fusemax(log_seq, head_dim, heads, batch)
    n = p = m = 1 << log_seq
    e = f = head_dim
    p1 = _p1_closed_form(p, e, f)
    assert r.dram_traffic_bytes() == batch * heads * 2 * e * (2 * p + 2 * m * math.ceil(p / (256 * p1)))
    tiles = n // 256
    assert r.utilization["array2d"] == pytest.approx((e + f + 9) * tiles / ((e + f + 10) * tiles + f), rel=1e-9)
    assert r.utilization["array1d"] == pytest.approx(1.0, rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(**_SHAPES)
def test_flat_utilization_and_fusemax_footprint(log_seq: int, head_dim: int, heads: int, batch: int) -> None:
    """FLAT, softmax-bound: util_2d = (E+F)/1024 (4 one-cycle 1-D ops per score vs E+F MACs on 65536 PEs).
    FuseMax: the global-buffer footprint does not grow with the sequence once P1 is capped by the buffer."""
    flat = _fusemax(min(log_seq, 14), head_dim, heads, batch, mapping="flat")
    assert flat.utilization["array2d"] == pytest.approx(2 * head_dim / 1024, rel=1e-9)
    bound = _p1_closed_form(1 << 20, head_dim, head_dim)
    long_a, long_b = (_fusemax(s, head_dim, heads, batch) for s in (18, 20))
    assert bound <= (1 << 18) // 256  # both lengths have P1 capped by the buffer
    assert long_a.footprint_bytes == long_b.footprint_bytes
    assert long_b.footprint_bytes["GlobalBuffer"] <= 16 << 20
