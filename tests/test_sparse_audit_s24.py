"""Sparse-method audit fixes (s24): MInference's and FlexPrefill's prefill have no time where the GPU cannot hold
the prefill, as dense FlashAttention-2 has none there (`sparse_prefill.prefill_fits`, `sparse_points`; in s24 the
rule was one layer's Q, K, V and O alone, since s36 it is what the GPU holds at once); TokenSelect refuses only a
`--top-k` beyond the context, and a top_k + sinks + local covering the context is dense, as with the default
(`kv_selection.tokenselect_decode`).

Llama-3-8B on an H100 SXM5's 80 GiB = 85 899 345 920 bytes: beside its 16 060 514 304 bytes of weights, with the KV
cache on the host, the GPU holds one layer's K and V (8 + 8 KV heads of 128 bf16 words = 4096 bytes a token) and
the layer's input, normed copy, Q and O (2 x 2 x (4096 + 32 x 128) = 32768 bytes a token): 36864 bytes a token, so
1 894 499 tokens fit (the check is <=) and 1 894 500, or 8M, do not."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import kv_selection as ks
from archsim.systems.sparse_prefill import flex_prefill

LLAMA8 = library.load_workload_spec("llama3-8b")
H100 = load_gpu("h100-sxm5")
WEIGHTS_BYTES = 16_060_514_304
HELD_BYTES_PER_TOKEN = (8 + 8) * 128 * 2 + 2 * 2 * (4096 + 32 * 128)  # one layer's K, V and working set (docstring)
FITS_TOKENS = 1_894_499  # (80 GiB - weights) / 36864 B: the longest prompt whose prefill the H100 holds


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sparse", *args])
    return result.exit_code, result.output


def test_the_hand_count_is_the_h100s_memory() -> None:
    assert ks.weight_bytes(LLAMA8) == WEIGHTS_BYTES and H100.dram_bytes == 80 * 2**30
    assert H100.dram_bytes >= WEIGHTS_BYTES + FITS_TOKENS * HELD_BYTES_PER_TOKEN
    assert H100.dram_bytes < WEIGHTS_BYTES + (FITS_TOKENS + 1) * HELD_BYTES_PER_TOKEN


def test_flexprefills_layer_has_no_time_beyond_the_gpus_memory() -> None:
    """One call over the layer's heads holds every head's Q, K, V and O beside the weights and the KV kept: its
    attention and estimation are timed up to the edge and not past it (was: timed at any length)."""
    at_memory, beyond = (flex_prefill(LLAMA8, H100, n, 1.0) for n in (FITS_TOKENS, FITS_TOKENS + 1))
    assert all(math.isfinite(s) and s > 0 for s in (at_memory[0].attention_s, at_memory[1]))
    assert all(math.isnan(s) for s in (beyond[0].attention_s, beyond[1]))


@pytest.mark.parametrize(("method", "options"), [
    ("flexprefill", ("--density", "1")),
    ("minference", ("--patterns", "llama3-8b-262k-minference")),
])
def test_a_prefill_whose_layer_the_gpu_cannot_hold_is_a_row_with_no_time(method: str, options: tuple[str, ...]) -> None:
    """At 1M (16.1 GB + 1M x 36864 B = 54.7 GB) both sides are timed; at 8M (325.3 GB) neither: null times and
    `fits` false on both sides, as dense (was: the sparse side timed and `fits` true at 8M and 16M)."""
    code, output = run("--method", method, "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "1M,8M", *options,
                       "--json")
    assert code == 0, output
    short, long = json.loads(output)["points"]
    assert short["time_s"] > 0 and short["dense_time_s"] > 0 and short["fits"] and short["dense_fits"]
    assert long["time_s"] is None and long["attention_s"] is None and long["dense_time_s"] is None
    assert long["fits"] is False and long["dense_fits"] is False
    assert long.get("estimate_s", None) is None  # FlexPrefill's estimation reads the same Q and K


def test_minference_follows_the_dense_sides_memory_rule_at_its_edge() -> None:
    """The same lengths where dense FlashAttention-2 stops, 4M and 4M + 1."""
    code, output = run("--method", "minference", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context",
                       f"{FITS_TOKENS},{FITS_TOKENS + 1}", "--patterns", "llama3-8b-262k-minference", "--json")
    assert code == 0, output
    edge, beyond = json.loads(output)["points"]
    assert edge["attention_s"] > 0 and edge["dense_attention_s"] > 0
    assert beyond["attention_s"] is None and beyond["dense_attention_s"] is None


def test_duoattention_follows_the_same_rule_as_its_layers_heads_sit_together() -> None:
    """Its retrieval and streaming calls read Q, K and V that the layer's projections made for every head at once
    (the review of the session's diff: it had been timed, 6151 s at half retrieval, where dense was n/a)."""
    from archsim.systems.sparse_prefill import duo_prefill

    assert math.isfinite(duo_prefill(LLAMA8, H100, FITS_TOKENS, 0.5).attention_s)
    assert math.isnan(duo_prefill(LLAMA8, H100, FITS_TOKENS + 1, 0.5).attention_s)


@pytest.mark.parametrize(("context", "top_k"), [(700, 100), (700, 700), (2048, 2048)])
def test_a_given_top_k_whose_tokens_cover_the_context_is_dense(context: int, top_k: int) -> None:
    """top_k + 128 sinks + 512 local >= the context: every token attended, nothing scored, as the default 2048 at
    1000 tokens (was: refused, though top_k is within the context)."""
    result = ks.tokenselect_decode(LLAMA8, H100, context, top_k=top_k)
    assert (result.time_s, result.attention_s) == (result.dense_time_s, result.dense_attention_s)


def test_a_top_k_beyond_the_context_is_refused_naming_the_option() -> None:
    with pytest.raises(SpecError) as error:
        ks.tokenselect_decode(LLAMA8, H100, 700, top_k=701)
    assert error.value.where == "top_k"
    code, output = run("--method", "tokenselect", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "700",
                       "--top-k", "701")
    assert code == 2 and output.strip() == "error: --top-k: expected a top-k at most the context (700), got 701"


def test_a_small_top_k_is_still_scored() -> None:
    """100 + 128 + 512 = 740 of 5000 tokens: a sparse step, not dense."""
    result = ks.tokenselect_decode(LLAMA8, H100, 5000, top_k=100)
    assert result.attention_s != result.dense_attention_s


def test_a_quest_budget_beyond_the_context_stays_refused() -> None:
    code, output = run("--method", "quest", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "700",
                       "--budget", "704")
    assert code == 2 and output.strip() == "error: --budget: expected a token budget at most the context (700), got 704"
