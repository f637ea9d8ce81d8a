"""`archsim reproduce seqpar` (issue 18): the public targets of ../shared/reference/seqpar-sparse.md §2, computed by
the models, against the issue's tolerances (the README's claims). Ring Attention Table 3 is checked case by case in
tests/test_seqpar_memory.py; here its rows as the reproduction prints them."""

from __future__ import annotations

import itertools
import json

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.systems import seqpar_reproduce as seqpar

# Ring Attention Table 2 (seqpar-sparse.md §2.1): the minimum block c = F/B per host, tokens, within issue 18's 10 %;
# written here, not read from seqpar_reproduce, whose PAPER and TABLE2_TOLERANCE print "within" (checked equal).
TABLE2_TOKENS = {"A100 NVLink": 1.0e3, "A100 InfiniBand": 24.5e3, "TPUv3": 1.1e3, "TPUv4": 1.0e3, "TPUv5e": 1.1e3}
TABLE2_TOL = 0.10
# LASP-2 Fig. 3, 64 A100 (§2.6): LASP-2's throughput gain over each baseline by sequence length, within 10 points
LASP2_GAINS = {524288: {"ring": 0.178, "lasp1": 0.073}, 2097152: {"ring": 0.366, "lasp1": 0.152}}
LASP2_POINTS = 0.10

POINT_KEYS = {"scheme", "devices", "gpu", "link", "model", "seq_len", "causal", "direction", "time_s", "ideal_s",
              "efficiency", "max_context_tokens"}


@pytest.fixture(scope="module")
def reproduction(read_once) -> dict:
    """`archsim reproduce seqpar --json` of the run's one reproduction ."""
    with pytest.MonkeyPatch.context() as patch:
        read_once(patch, "seqpar")
        result = CliRunner().invoke(main, ["reproduce", "seqpar", "--json"])
    if result.exit_code != 0:  # not an AssertionError, which the strict xfails below would take for the known gap
        pytest.fail(f"archsim reproduce seqpar --json exited {result.exit_code}: {result.output}")
    return json.loads(result.output)


def test_the_reproductions_targets_are_the_papers() -> None:
    """`archsim reproduce seqpar` prints "within" against the module's targets and tolerances: the ones above."""
    assert {host: c_k * seqpar.K for host, c_k in seqpar.PAPER["table2_c_k"].items()} == TABLE2_TOKENS
    assert seqpar.TABLE2_TOLERANCE == TABLE2_TOL
    assert seqpar.PAPER["lasp2_gain"] == LASP2_GAINS
    assert seqpar.LASP2_POINTS == LASP2_POINTS


def test_table2_minimum_block_within_10_percent(reproduction: dict) -> None:
    """c = F/B from the device presets' bf16 peaks and the link presets' bandwidths, every host within 10 %."""
    rows = {r["host"]: r for r in reproduction["table2"]}
    assert set(rows) == set(TABLE2_TOKENS)
    for host, row in rows.items():
        assert abs(row["min_block_tokens"] / TABLE2_TOKENS[host] - 1) <= TABLE2_TOL, host
        assert row["paper_min_block_tokens"] == TABLE2_TOKENS[host] and row["within"], host
        assert row["min_block_tokens"] == pytest.approx(row["flops_per_s"] / row["link_bytes_per_s"])
    # at the kernel's achieved rate, below peak, a smaller block hides the transfer than F/B says
    assert rows["A100 InfiniBand"]["kernel_block_tokens"] < rows["A100 InfiniBand"]["min_block_tokens"]


def test_table3_rows_carry_the_models_contexts(reproduction: dict) -> None:
    """Both A100 presets, the paper's four columns; Ring is about devices x BPT on each (the paper's "Ring is
    device-count x BPT"), and Ring and BPT on the 8-GPU rows on a 40 GB A100 and the 32-GPU rows on an 80 GB one are
    within 1.25x (the other columns' entries: `seqpar_reproduce.TABLE3_GAPS`)."""
    rows = [r for r in reproduction["table3"] if r["gpu"].startswith("a100")]  # the TPU rows: test_table3_tpu.py
    assert len(rows) == 40 and len(reproduction["table3"]) == 80
    by_case = {(r["gpu"], r["hardware"], r["model"], r["scheme"]): r for r in rows}
    for (gpu, hardware, model, scheme), row in by_case.items():
        if scheme == "ring":
            bpt = by_case[(gpu, hardware, model, "memeff-attn-ffn")]["max_context_tokens"]
            assert 0.7 * row["devices"] <= row["max_context_tokens"] / bpt <= row["devices"] * 1.05
    for (gpu, hardware, _, scheme), row in by_case.items():
        if scheme in ("memeff-attn-ffn", "ring"):
            assert row["within"] == ((gpu, hardware) in {("a100-40gb-sxm4", "8xA100"), ("a100-80gb-sxm4", "32xA100")})


def _gain(reproduction: dict, n: int, baseline: str) -> dict:
    return next(g for g in reproduction["lasp2"]["gains"] if g["seq_len"] == n and g["baseline"] == baseline)


def test_lasp2_ahead_once_beyond_64k(reproduction: dict) -> None:
    """LASP-2 has the highest throughput of LASP-2, LASP-1 and Ring at every length beyond 64K."""
    assert reproduction["lasp2"]["ahead_above"] is not None
    assert reproduction["lasp2"]["ahead_above"] <= 65536 * 2


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason=f"LASP-2 ahead at 64K and below: {seqpar.GAPS['lasp2-ahead']}")
def test_lasp2_behind_up_to_64k(reproduction: dict) -> None:
    """The paper's crossover: LASP-2 ahead only beyond 64K, so not at 64K (the report's `within`). Met until its
    state all-gather crossed the nodes on every GPU's NIC at once (session 50): it leads from 16K."""
    lasp2 = reproduction["lasp2"]
    assert lasp2["ahead_within"], lasp2["ahead_reason"]
    assert lasp2["ahead_above"] == 2 * 65536


@pytest.mark.parametrize("baseline", [
    pytest.param("lasp1", marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                                  reason=f"LASP-2 over LASP-1: {seqpar.GAPS['lasp1']}")),
    pytest.param("ring", marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                                 reason=f"LASP-2 over Ring: {seqpar.GAPS['ring']}"))])
def test_lasp2_gain_within_10_points(reproduction: dict, baseline: str) -> None:
    for n, paper in LASP2_GAINS.items():
        g = _gain(reproduction, n, baseline)
        assert abs(g["gain"] - paper[baseline]) <= LASP2_POINTS, g


def test_grid_points_have_the_issue_keys_and_efficiency_is_ideal_over_time(reproduction: dict) -> None:
    points = reproduction["points"]
    assert len(points) == 2 * 2 * 5 + 2 * 4
    for p in points:
        assert set(p) >= POINT_KEYS
        assert p["efficiency"] == pytest.approx(p["ideal_s"] / p["time_s"])
    grid = [p for p in points if p["model"] == "llama3-8b"]
    assert {p["scheme"] for p in grid} == {"ring", "zigzag", "stripe", "ulysses", "usp"}
    assert {p["gpu"] for p in grid} == {"a100-80gb-sxm4", "h100-sxm5"}
    for p in grid:
        assert p["devices"] == 8 and p["seq_len"] == 8 * 8192 and p["causal"]
    assert {p["kernel"] for p in grid} == {"FlashAttention-2"}  # what ring-flash-attention and USP call
    big = [p for p in points if p["model"] == "llama3-405b-fp8"]
    assert {p["kernel"] for p in big} == {"FlashAttention-3"}  # the Hopper kernel
    assert sorted({p["devices"] for p in big}) == [16, 32, 64, 128]
    assert {p["link"] for p in big} == {"ib-ndr-400g"}  # one rank per node: the ring runs over the NICs
    for n in (131072, 1048576):  # strong scaling: more nodes, less time per layer
        times = [p["time_s"] for p in sorted(big, key=lambda p: p["devices"]) if p["seq_len"] == n]
        assert all(a > b for a, b in itertools.pairwise(times))
    # what fits an 80 GiB H100 follows from the memory model: 128K on every node count, 1M on 8 and 16 nodes
    for p in big:
        assert p["feasible"] == (p["memory_bytes"] <= 80 * 2**30), p
        assert p["feasible"] == (p["max_context_tokens"] >= p["seq_len"]), p
        assert ("exceeds h100-sxm5's 85.9 GB (80 GiB)" in p["reason"]) != p["feasible"], p
    assert {p["devices"] for p in big if p["feasible"] and p["seq_len"] == 1048576} == {64, 128}


def test_causal_balance_headline(reproduction: dict) -> None:
    """Issue 18: the causal basic ring is bounded by its load imbalance, about half of ideal when compute-bound, and
    zigzag and stripe are closer to ideal, as the model computes them. On 8 devices the busiest ring device does
    2P - 1 of the P^2 causal blocks' halves: efficiency at most P / (2P - 1) = 8/15 (0.533); the model's 0.506 is
    that bound less the communication it cannot hide (must-show audit helper-220: the test had no lower bound)."""
    balance = reproduction["headline"]["causal_efficiency"]
    bound = 8 / 15
    assert 0.9 * bound <= balance["ring"] <= bound
    assert balance["ring"] < balance["stripe"] < balance["zigzag"] <= 1
    assert balance["stripe"] > 0.8 and balance["zigzag"] > 0.9


def test_reproduce_seqpar_prints_the_tables(seqpar_cli) -> None:
    result = CliRunner().invoke(main, ["reproduce", "seqpar"])
    assert result.exit_code == 0, result.output
    for heading in ("Ring Attention Table 2", "Ring Attention Table 3", "LASP-2 Fig. 3", "Grid", "Causal load"):
        assert heading in result.output


def test_distattention_beats_ring_decode_more_with_length(reproduction: dict) -> None:
    """Infinite-LLM's micro-benchmark direction: DistAttention's round trip against a ring passing the K/V blocks,
    the gain growing with the context (paper 7.7-19.8x over 4K-256K; printed beside ours)."""
    rows = reproduction["distattention"]["rows"]
    gains = [r["over_ring"] for r in rows]
    assert gains == sorted(gains) and gains[0] > 3 and gains[-1] > 10


def test_a_missed_entry_carries_its_reason_with_the_runs_numbers(reproduction: dict) -> None:
    """Each Table 3 entry outside the factor carries its reason (`seqpar_reproduce.GAPS`, filled): the 8-GPU entries
    on 80 GiB quote the model's maxima there; a LASP-2 gain outside its 10 points quotes Ring's transfers."""
    missed = [r for r in reproduction["table3"] if not r["within"]]
    assert missed and all(r["reason"] and "<" not in r["reason"] for r in missed)
    assert all(r["reason"] == "" for r in reproduction["table3"] if r["within"])
    for r in missed:
        if (r["gpu"], r["model"], r["hardware"], r["scheme"]) == ("a100-80gb-sxm4", "llama-13b", "8xA100", "ring"):
            assert "llama-13b " in r["reason"] and f"K/{r['max_context_tokens'] / 1024:.0f}K)" in r["reason"]
    ring = [g for g in reproduction["lasp2"]["gains"] if g["baseline"] == "ring" and g["within"] is False]
    assert all("its transfers alone take" in g["reason"] for g in ring)


def test_the_lasp1_step_overhead_reading_is_computed_from_the_rows(reproduction: dict) -> None:
    """The reading beside LASP-2 Fig. 3: LASP-1's published TNL-1B throughput over the model's LASP-1 step is a
    gap nearly the same at each length (what the lasp1 reason claims), its mean added to every scheme's step; with it
    LASP-2's gains over LASP-1 fall within 10 points, over Ring not."""
    lasp = reproduction["lasp2"]
    reading = lasp["step_overhead_reading"]
    rows = {(r["scheme"], r["seq_len"]): r["throughput_tok_s"] for r in lasp["rows"]}
    gaps = {int(n): gap for n, gap in reading["gaps_s"].items()}
    for n, gap in gaps.items():
        assert gap == pytest.approx(n / seqpar.PAPER["lasp1_tnl1b_tok_s"][n] - n / rows[("lasp1", n)])
    overhead = reading["step_overhead_s"]
    assert overhead == pytest.approx(sum(gaps.values()) / len(gaps))
    assert max(gaps.values()) - min(gaps.values()) < 0.2 * overhead  # nearly the same at each length
    for g in reading["gains"]:
        n = g["seq_len"]
        steps = {s: n / rows[(s, n)] + overhead for s in ("lasp2", g["baseline"])}
        assert g["gain"] == pytest.approx(steps[g["baseline"]] / steps["lasp2"] - 1)
        assert g["within"] is (g["baseline"] == "lasp1")
