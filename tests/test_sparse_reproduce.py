"""`archsim reproduce sparse` (issue 19): MInference's end-to-end prefill and its masks' density, DuoAttention and
Quest decode, from the models, against the issue's tolerances (the README's claims)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.systems import sparse_reproduce as sparse

POINT_KEYS = {"method", "model", "gpu", "phase", "context", "budget", "time_s", "dense_time_s", "memory_bytes",
              "dense_memory_bytes"}


@pytest.fixture(scope="module")
def reproduction(read_once) -> dict:
    """`archsim reproduce sparse --json` of the run's one reproduction."""
    with pytest.MonkeyPatch.context() as patch:
        read_once(patch, "sparse")
        result = CliRunner().invoke(main, ["reproduce", "sparse", "--json"])
    if result.exit_code != 0:  # not an AssertionError, which the strict xfail below would take for the known gap
        pytest.fail(f"archsim reproduce sparse --json exited {result.exit_code}: {result.output}")
    return json.loads(result.output)


def test_points_carry_the_issue_keys(reproduction: dict) -> None:
    points = reproduction["points"]
    assert {p["method"] for p in points} == {"MInference", "DuoAttention", "Quest"}
    assert {p["phase"] for p in points} == {"prefill", "decode", "attention"}
    for p in points:
        assert set(p) >= POINT_KEYS
        assert p["time_s"] > 0 and p["dense_time_s"] > 0
    assert sorted(p["context"] for p in points if p["method"] == "MInference") == list(sparse.MINFERENCE_LENGTHS)


def test_vertical_slash_masks_above_90_percent_sparsity_past_200k_and_95_past_500k(reproduction: dict) -> None:
    for row in reproduction["density"]:
        assert row["sparsity"] > row["above"], row


def test_minference_slower_than_dense_at_10k_and_faster_from_100k(reproduction: dict) -> None:
    rows = {r["context"]: r for r in reproduction["minference"]}
    assert rows[10_000]["minference_s"] > rows[10_000]["dense_s"]
    for n in (100_000, 300_000, 1_000_000):
        assert rows[n]["minference_s"] < rows[n]["dense_s"]
    speedups = [rows[n]["dense_s"] / rows[n]["minference_s"] for n in (100_000, 300_000, 1_000_000)]
    assert speedups == sorted(speedups)  # the gain grows with the prompt, as the paper's 1.8x, 4.1x, 10x


# MInference's experiments/README.md, one A100-80G, LLaMA-3-8B-Instruct-1048k (seqpar-sparse.md §3.1): prefill
# seconds (FlashAttention-2 dense, MInference) by prompt length, each within issue 19's 20 %; written here, not read
# from sparse_reproduce, whose PAPER and PREFILL_TOLERANCE print "within" (checked equal).
PREFILL_S = {10_000: (0.976, 2.776), 100_000: (24.88, 13.99), 300_000: (169.6, 41.09), 1_000_000: (1765.6, 179.1)}
PREFILL_TOL = 0.20


def test_the_prefill_targets_are_the_papers() -> None:
    assert sparse.PAPER["minference_prefill_s"] == PREFILL_S
    assert sparse.PREFILL_TOLERANCE == PREFILL_TOL


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=str(sparse.PREFILL_GAP))
def test_minference_and_dense_prefill_within_20_percent(reproduction: dict) -> None:
    assert sorted(row["context"] for row in reproduction["minference"]) == sorted(PREFILL_S)
    for row in reproduction["minference"]:
        dense_s, minference_s = PREFILL_S[row["context"]]
        assert abs(row["dense_s"] / dense_s - 1) <= PREFILL_TOL, row
        assert abs(row["minference_s"] / minference_s - 1) <= PREFILL_TOL, row


def test_the_prefill_reason_quotes_the_runs_errors(reproduction: dict) -> None:
    """Outside the tolerance the headline carries the reason with the run's numbers filled in: the errors' range
    as the comparison rows have them."""
    reason, rows = reproduction["headline"]["minference_reason"], reproduction["minference"]
    dense = [r["dense_error"] for r in rows]
    assert f"dense FA-2 is off by {min(dense):+.0%} to {max(dense):+.0%}" in reason and "<" not in reason


def test_selection_saves_time_and_memory_where_the_cache_is_large(reproduction: dict) -> None:
    duo = [p for p in reproduction["points"] if p["method"] == "DuoAttention"]
    assert len(duo) == len(sparse.DUO_RUNS) * len(sparse.DUO_LENGTHS)  # 2 models x 6 contexts
    for p in duo:
        assert p["memory_bytes"] < p["dense_memory_bytes"] and p["time_s"] < p["dense_time_s"]
    quest = [p for p in reproduction["points"] if p["method"] == "Quest"]
    # 2 GPUs x 3 contexts x 4 budgets, each the attention alone and the whole decode step
    assert len(quest) == len(sparse.QUEST_GPUS) * len(sparse.QUEST_LENGTHS) * len(sparse.QUEST_BUDGETS) * 2
    for p in quest:
        assert p["loaded_fraction"] == pytest.approx(1 / 16 + p["budget"] / p["context"])
        assert p["time_s"] < p["dense_time_s"]


def test_the_printout_marks_what_does_not_fit_the_gpu(reproduction: dict, sparse_cli) -> None:
    """A decode point whose memory exceeds the GPU's is printed with OOM beside its GB (its time is the model's
    all the same): the rows marked are exactly those whose `fits` / `dense_fits` is false, by the GPU's memory."""
    from archsim.gpu.load import load_gpu

    text = CliRunner().invoke(main, ["reproduce", "sparse"]).output
    rows = [line.split() for line in text.splitlines() if line.startswith(("DuoAttention ", "Quest "))]
    points = [p for p in reproduction["points"] if p["method"] != "MInference"]
    assert len(rows) == len(points)
    for row, p in zip(rows, points, strict=True):
        capacity = load_gpu(p["gpu"]).dram_bytes
        assert p["fits"] == (p["memory_bytes"] <= capacity) and p["dense_fits"] == (p["dense_memory_bytes"] <= capacity)
        assert row.count("OOM") == (not p["fits"]) + (not p["dense_fits"]), (row, p)
    assert any("OOM" in r for r in rows) and any("OOM" not in r for r in rows)
    # Quest's loaded fraction, from the cascade's bytes, printed beside the paper's 1/PageSize + K/PageNum (issue
    # 19's must-show; it had been in --json only): at 32K and a 512-token budget 1/16 + 32/2048
    assert "context  32768 budget   512: 0.07812 (1/16 + 32/2048 = 0.07812)" in text


def test_a_pattern_map_of_the_wrong_size_exits_2_naming_the_field(tmp_path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("name: bad\nmodel: llama3-8b\ndescription: x\nsource: x\nlayers: 32\nheads: 32\nhead_kind: query\n"
                   "patterns:\n"
                   "  - {pattern: vertical_slash, k_v: 1000, k_s: 6096, heads: 1000}\n")
    result = CliRunner().invoke(main, ["check", str(bad)])
    assert result.exit_code == 2
    assert "patterns" in result.output and "1024" in result.output


def test_duoattention_up_to_is_read_at_the_longest_context_whose_dense_run_fits(reproduction: dict) -> None:
    """The README's "up to" needs the dense baseline, so ours is read at the longest grid context whose dense run
    fits the A100 (the memory model's): a longer grid context does not fit, and the ratios are that point's."""
    duo = [p for p in reproduction["points"] if p["method"] == "DuoAttention"]
    rows = {r["model"]: r for r in reproduction["duo_up_to"]}
    assert set(rows) == set(sparse.PAPER["duo_up_to"])
    for model, row in rows.items():
        mine = {p["context"]: p for p in duo if p["model"] == model}
        point = mine[row["context"]]
        assert point["dense_fits"] and not any(p["dense_fits"] for n, p in mine.items() if n > row["context"])
        assert row["memory"] == point["dense_memory_bytes"] / point["memory_bytes"] > 1
        assert row["decode"] == point["dense_time_s"] / point["time_s"] > 1
