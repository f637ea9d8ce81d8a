"""Mends from an audit of the sparse decode methods and of selection's effect on other models (issue 19): a
DuoAttention or RazorAttention window that holds the whole context is one call, as dense; a block of 0 tokens, a
grouped-query workload on the spatial array's block-sparse comparison, and bad Python inputs to `pool_batch` and
`pim_attention_s` are refused naming the field."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import kv_selection
from archsim.systems.sparse_on_array import block_sparse_on_array


@pytest.fixture(scope="module")
def llama3():
    return library.load_workload_spec("llama3-8b")


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_a_window_holding_the_context_decodes_as_dense(llama3, fraction: float) -> None:
    """At 256 tokens, inside the 128 + 256 window, every head attends the same tokens: DuoAttention is dense at any
    retrieval fraction (two calls a layer had made it 6 % slower at 0.5)."""
    point = kv_selection.duo_decode(llama3, load_gpu("h100-sxm5"), 256, fraction)
    assert point.time_s == pytest.approx(point.dense_time_s, rel=1e-12)
    assert point.attention_s == pytest.approx(point.dense_attention_s, rel=1e-12)


def test_razorattentions_window_holding_the_context_decodes_as_dense(llama3) -> None:
    """RazorAttention's window max(4000, N / 5) + 1 holds a 2K context whole."""
    point = kv_selection.razor_decode(llama3, load_gpu("h100-sxm5"), 2048, 0.16)
    assert point.time_s == pytest.approx(point.dense_time_s, rel=1e-12)


def test_past_the_window_duoattention_still_runs_two_calls(llama3) -> None:
    """Beyond the window the layer is the retrieval heads' call at the context and the streaming heads' at the
    window: at 500K tokens, with half the heads streaming, well under dense."""
    gpu = load_gpu("a100-80gb-sxm4")
    half, dense = (kv_selection.duo_decode(llama3, gpu, 500_000, f) for f in (0.5, 1.0))
    assert half.attention_s < 0.6 * dense.attention_s


def test_a_block_of_no_tokens_exits_2_naming_it() -> None:
    result = CliRunner().invoke(main, ["analyze", "attention-block-sparse", "-w", "llama2-7b", "--set", "block=0",
                                       "--set", "tile_kv=256", "--set", "seq_len=4096"])
    assert result.exit_code == 2
    assert "block: expected an integer of at least 1, got 0" in result.output


def test_the_arrays_block_sparse_comparison_refuses_grouped_query_workloads() -> None:
    with pytest.raises(SpecError, match=r"params\.kv_heads") as error:
        block_sparse_on_array("fusemax", "llama3-8b", 4096, 256)
    assert "no grouped-query block-sparse cascade" in str(error.value)


@pytest.mark.parametrize("capacity", [math.nan, -1e9, math.inf, True, "80e9"])
def test_pool_batch_refuses_a_capacity_that_is_no_number_of_bytes(llama3, capacity: object) -> None:
    with pytest.raises(SpecError, match="pool_capacity_bytes"):
        kv_selection.pool_batch(capacity, llama3, 4096, 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("contexts", [[], [1.7], [0], [True]])
def test_pim_attention_refuses_no_batch_or_a_context_that_is_no_token_count(llama3, contexts: list) -> None:
    with pytest.raises(SpecError, match="contexts"):
        kv_selection.pim_attention_s(None, llama3, contexts)  # type: ignore[arg-type]
