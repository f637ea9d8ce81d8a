"""Session 36's sparse fixes (auditor a3):
- D1: a prefill fits where the GPU holds at once the weights, the KV cache it keeps there and one layer's working set
  (the layer's input and its normed copy, Q and O: `sparse_prefill.layer_working_bytes`); the KV cache goes to the
  host where the whole of it does not fit beside those; a side the GPU cannot hold has no time, dense and sparse
  alike (was: `fits` counted the weights and the kept KV, the time only one layer's Q, K, V and O, so 4,194,304
  tokens of Llama-3-8B were timed on an 80 GiB A100 and 1.8M-4M marked as fitting).
- D2: FlexPrefill's selections are clamped to at least min_budget = 512 tokens (its README's default,
  seqpar-sparse.md §3.2) as vertical and as slash blocks (was: only the first and the diagonal block).
- D3: `reproduce sparse` prints MInference's index building beside App. A's share.
- S4: DuoAttention with --patterns prints the map's retrieval share, not a share "asked".

Hand counts for Llama-3-8B (workloads/llama3-8b.yaml: hidden 4096, 32 query and 8 KV heads of 128, 32 layers, bf16):
weights 16,060,514,304 B (`kv_selection.weight_bytes`); the KV cache 32 x 8 x 128 x 2 (K, V) x 2 B = 131,072 B a
token, one layer's 4,096 B; the working set 2 B x 2 x (4096 + 32 x 128) = 32,768 B a token (input and normed copy,
Q and O). An 80 GiB A100 or H100: 85,899,345,920 B.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems.sparse_points import flex_point

LLAMA8 = library.load_workload_spec("llama3-8b")
A100 = load_gpu("a100-80gb-sxm4")
WEIGHTS_BYTES = 16_060_514_304
DRAM_BYTES = 80 * 2**30
KV_BYTES_PER_TOKEN, LAYER_KV_BYTES_PER_TOKEN = 131_072, 4_096
WORKING_BYTES_PER_TOKEN = 2 * 2 * (4096 + 32 * 128)
# with the KV cache on the host: (85,899,345,920 - 16,060,514,304) / (4,096 + 32,768) = 1,894,499.56
LONGEST_TOKENS = (DRAM_BYTES - WEIGHTS_BYTES) // (LAYER_KV_BYTES_PER_TOKEN + WORKING_BYTES_PER_TOKEN)
# the whole cache stays on the GPU while 69,838,831,616 B hold 131,072 + 32,768 B a token: 426,262.4 tokens
LAST_ON_GPU_TOKENS = (DRAM_BYTES - WEIGHTS_BYTES) // (KV_BYTES_PER_TOKEN + WORKING_BYTES_PER_TOKEN)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_hand_counts() -> None:
    from archsim.systems import kv_selection
    from archsim.systems.sparse_prefill import layer_working_bytes

    assert kv_selection.weight_bytes(LLAMA8) == WEIGHTS_BYTES and A100.dram_bytes == DRAM_BYTES
    assert kv_selection.dense_kv_bytes(LLAMA8, 1) == KV_BYTES_PER_TOKEN
    assert layer_working_bytes(LLAMA8, 1) == WORKING_BYTES_PER_TOKEN == 32_768
    assert LONGEST_TOKENS == 1_894_499 and LAST_ON_GPU_TOKENS == 426_262


def test_the_kv_cache_goes_to_the_host_where_it_and_the_working_set_do_not_fit() -> None:
    """426,262 tokens keep the whole cache on the GPU; one more sends it to the host (was: from 532,829, the weights
    and the cache alone, working set not counted)."""
    from archsim.systems.sparse_prefill import kv_on_host

    assert not kv_on_host(LLAMA8, A100, LAST_ON_GPU_TOKENS) and kv_on_host(LLAMA8, A100, LAST_ON_GPU_TOKENS + 1)


def test_the_longest_prefill_one_a100_holds() -> None:
    """With the cache on the host, the weights, one layer's K and V and the working set: 1,894,499 tokens (the
    reference: "a single A100 fits up to 1.8M tokens of prefill")."""
    from archsim.systems.sparse_prefill import kv_on_host, longest_prefill_tokens, prefill_fits

    assert longest_prefill_tokens(LLAMA8, A100) == LONGEST_TOKENS
    assert prefill_fits(LLAMA8, A100, LONGEST_TOKENS) and not prefill_fits(LLAMA8, A100, LONGEST_TOKENS + 1)
    assert kv_on_host(LLAMA8, A100, LONGEST_TOKENS)


@pytest.mark.parametrize(("method", "options"), [("minference", ("--patterns", "llama3-8b-262k-minference")),
                                                 ("flexprefill", ("--density", "0.1"))])
def test_past_the_longest_prefill_neither_side_fits_nor_has_a_time(method: str, options: tuple[str, ...]) -> None:
    """The auditor's run: 1.8M fits and is timed on both sides (KV on the host); 1,894,500, 2.5M, 4,194,304 do not
    fit on either side and have no time (was: timed and fitting up to 4,194,304 tokens)."""
    contexts = [1_800_000, LONGEST_TOKENS, LONGEST_TOKENS + 1, 2_500_000, 4_194_304]
    code, output = run("sparse", "--method", method, "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b", "--context",
                       ",".join(map(str, contexts)), *options, "--json")
    assert code == 0, output
    points = json.loads(output)["points"]
    for p in points[:2]:
        assert p["fits"] and p["dense_fits"] and p["time_s"] > 0 and p["dense_time_s"] > 0 and p["kv_host_s"] > 0
        assert p["resident_bytes"] == WEIGHTS_BYTES + p["context"] * (LAYER_KV_BYTES_PER_TOKEN
                                                                      + WORKING_BYTES_PER_TOKEN) <= DRAM_BYTES
    for p in points[2:]:
        assert p["fits"] is False and p["dense_fits"] is False
        assert p["time_s"] is None and p["dense_time_s"] is None and p["attention_s"] is None
        assert p["resident_bytes"] > DRAM_BYTES


def test_the_must_show_points_still_run() -> None:
    """10K-1M, dense and MInference, on the A100: every one fits and is timed; 300K keeps its cache on the GPU
    (16.06 + 300K x (131,072 + 32,768) B = 65.2 GB), 1M copies it to the host, as the benchmark from 700K."""
    code, output = run("sparse", "--method", "minference", "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b",
                       "--context", "10000,100000,300000,1000000", "--patterns", "llama3-8b-262k-minference",
                       "--json")
    assert code == 0, output
    points = json.loads(output)["points"]
    assert all(p["fits"] and p["dense_fits"] and p["time_s"] > 0 and p["dense_time_s"] > 0 for p in points)
    assert [p["kv_host_s"] > 0 for p in points] == [False, False, False, True]


def test_weights_over_the_gpu_leave_an_untimed_row() -> None:
    """Llama-3-405B's 810 GB of weights on the A100: nothing to offload, no time, `fits` false, the reason the bytes
    held at once."""
    from archsim.systems.sparse_points import point_record

    point = flex_point(library.load_workload_spec("llama3-405b"), A100, 1000, 0.1)
    assert math.isnan(point["time_s"]) and not point["fits"] and math.isnan(point["kv_host_s"])  # no run, no copy
    record = point_record(point, "t", A100)
    assert not record.feasible and "held at once" in record.reason


def test_flexprefill_keeps_at_least_its_min_budget() -> None:
    """128K tokens, 1024 query blocks of 128, density 0.001: every row keeps min(i + 1, 8) blocks, 4 vertical and 4
    slash blocks of min_budget 512 tokens: (1 + ... + 8) + 1016 x 8 = 8164 of 1024 x 1025 / 2 = 524,800 causal
    blocks (was 0.0039: the first and the diagonal block, 2 a row)."""
    code, output = run("sparse", "--method", "flexprefill", "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b",
                       "--context", "128K", "--density", "0.001", "--json")
    assert code == 0, output
    (point,) = json.loads(output)["points"]
    assert point["effective_density"] == pytest.approx(8164 / 524_800, rel=1e-12)
    assert point["min_budget"] == 512


def test_the_floor_is_whole_blocks_of_each_kind() -> None:
    """ceil(min_budget / 128) vertical and as many slash blocks, each at least one: 0 -> 2 (the first and the
    diagonal), 128 -> 2, 129 -> 4, 512 -> 8, 1024 (the test main's) -> 16."""
    from archsim.model.gpu_flexprefill import FLEX_MIN_BUDGET_TOKENS, floor_blocks, key_tiles

    assert FLEX_MIN_BUDGET_TOKENS == 512
    assert [floor_blocks(t) for t in (0, 128, 129, 512, 1024)] == [2, 2, 4, 8, 16]
    unmasked, masked = key_tiles(0.5, 40 * 128, 1024)  # 40 rows: min(i + 1, 16), or 0.5 (i + 1) rounded from i = 31
    assert list(unmasked + masked) == [min(c, max(16, math.floor(0.5 * c + 0.5))) for c in range(1, 41)]


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_bad_min_budget_is_refused(bad) -> None:
    from archsim.model.gpu_flexprefill import floor_blocks

    with pytest.raises(SpecError) as error:
        floor_blocks(bad)
    assert error.value.where == "min_budget"


def test_reproduce_prints_index_building_and_the_longest_prefill(sparse_cli) -> None:
    """`--json` has `index_building` (MInference's estimation less the pads of Q, K and V: each head pads its three
    tensors, so `pad_s` is the layers' 1024 heads' pads) beside App. A's 30 % at 10K and 5-20 % elsewhere, and
    `longest_prefill`, the hand count beside the reference's 1.8M; the text prints both."""
    from archsim.model.gpu import launch_time
    from archsim.model.gpu_sparse import pad_launches
    from archsim.systems.sparse_prefill import _sparse_params

    code, output = run("reproduce", "sparse", "--json")
    assert code == 0, output
    data = json.loads(output)
    points = {p["context"]: p for p in data["points"] if p["method"] == "MInference"}
    eager = _sparse_params().eager
    for r in data["index_building"]:
        p = points[r["context"]]
        pads_s = 1024 * sum(launch_time(launch, A100, eager).time_s for launch in pad_launches(r["context"], 128, 2))
        assert p["pad_s"] == pytest.approx(pads_s, rel=1e-9)
        assert r["index_building_s"] == pytest.approx(p["estimate_s"] - p["pad_s"], rel=1e-12)
        assert r["attention_share"] == pytest.approx(r["index_building_s"] / p["attention_s"], rel=1e-12)
        assert (r["paper_low"], r["paper_high"]) == ((0.30, 0.30) if r["context"] == 10_000 else (0.05, 0.20))
    assert data["longest_prefill"] | {"error": 0} == {"model": "llama3-8b", "gpu": "a100-80gb-sxm4",
                                                      "tokens": LONGEST_TOKENS, "kv_on_host": True,
                                                      "paper_tokens": 1_800_000, "error": 0}
    code, text = run("reproduce", "sparse")
    assert code == 0 and "index building" in text and f"{LONGEST_TOKENS:,} tokens" in text


def test_a_maps_retrieval_share_is_not_printed_as_asked() -> None:
    """With --patterns the share is the map's (0.5 of Llama-3-8B's 256 KV heads in llama3-8b-duo-50); with
    --retrieval-fraction it is the one asked."""
    base = ("sparse", "--method", "duoattention", "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b", "--context", "100000",
            "--prefill")
    code, output = run(*base, "--patterns", "llama3-8b-duo-50")
    assert code == 0 and "0.5 in llama3-8b-duo-50" in output and "asked" not in output, output
    code, output = run(*base, "--retrieval-fraction", "0.5")
    assert code == 0 and "0.5 asked" in output, output


def test_a_prefill_that_cannot_run_copies_no_kv_to_the_host() -> None:
    """Review a6: past the longest prefill the KV copy had seconds (7.9 s at 1.9M) for a run that cannot happen."""
    code, output = run("sparse", "--method", "minference", "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b", "--context",
                       f"1800000,{LONGEST_TOKENS + 1}", "--patterns", "llama3-8b-262k-minference", "--json")
    assert code == 0, output
    fits, beyond = json.loads(output)["points"]
    assert fits["kv_host_s"] > 0 and beyond["kv_host_s"] is None
