"""KV-cache selection in decode (archsim.systems.kv_selection, issue 19): DuoAttention and Quest on the GPU model,
and their effect on PIM, offloading and the spatial-array model.

Expected numbers are closed forms from the models' shapes (HF configs, quoted from memory in the workload files):
- weights: per layer Q, K, V, O, the SwiGLU FFN's three matrices and two RMSNorm vectors, plus the embedding and LM
  head (vocab x hidden each), fp16; the HF parameter counts (8,030,261,248 for Llama-3-8B, 6,738,415,616 for
  Llama-2-7B, from memory) are these plus the final norm's `hidden` weights, which the module leaves out;
- KV bytes per token and KV head: K and V, head_dim 128, fp16, 32 layers = 2 x 32 x 128 x 2 = 16384 B.
"""

from __future__ import annotations

import itertools
import math

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict
from archsim.systems import kv_selection as ks
from archsim.systems import sparse_on_array
from archsim.systems.devices import device_models
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system

KV_PER_TOKEN_HEAD = 2 * 32 * 128 * 2  # K and V x 32 layers x head_dim 128 x fp16


def _weights(hidden: int, q_out: int, kv_out: int, ffn: int, layers: int, vocab: int) -> int:
    per_layer = hidden * q_out + 2 * hidden * kv_out + q_out * hidden + 3 * hidden * ffn + 2 * hidden
    return 2 * (layers * per_layer + 2 * vocab * hidden)


LLAMA3_8B_WEIGHTS = _weights(4096, 4096, 1024, 14336, 32, 128256)
LLAMA2_7B_WEIGHTS = _weights(4096, 4096, 4096, 11008, 32, 32000)


@pytest.fixture(scope="module")
def llama3():
    return library.load_workload_spec("llama3-8b")


@pytest.fixture(scope="module")
def llama2():
    return library.load_workload_spec("llama2-7b")


@pytest.fixture(scope="module")
def a100():
    return load_gpu("a100-80gb-sxm4")


def test_weights_are_the_published_parameter_counts(llama3, llama2) -> None:
    assert ks.weight_bytes(llama3) == LLAMA3_8B_WEIGHTS == 2 * (8_030_261_248 - 4096)
    assert ks.weight_bytes(llama2) == LLAMA2_7B_WEIGHTS == 2 * (6_738_415_616 - 4096)
    assert ks.kv_bytes_per_token_head(llama3) == ks.kv_bytes_per_token_head(llama2) == KV_PER_TOKEN_HEAD


# ------------------------------------------------------------------------------------------------ DuoAttention
@pytest.mark.parametrize(("model", "fraction", "weights", "kv_heads"),
                         [("llama3-8b", 0.5, LLAMA3_8B_WEIGHTS, 8), ("llama2-7b", 0.25, LLAMA2_7B_WEIGHTS, 32)])
def test_duo_memory_at_500k(model, fraction, weights, kv_heads, a100) -> None:
    """weights + KV of the retrieval heads at 500K + the streaming heads' 128 + 256 tokens (§3.3)."""
    context, window = 500_000, 128 + 256
    result = ks.duo_decode(library.load_workload_spec(model), a100, context, fraction)
    kv = KV_PER_TOKEN_HEAD * kv_heads
    assert result.memory_bytes == pytest.approx(weights + kv * (fraction * context + (1 - fraction) * window),
                                                rel=1e-12)
    assert result.dense_memory_bytes == pytest.approx(weights + kv * context, rel=1e-12)


def test_duo_gqa_memory_reduction_is_the_readme_headline(llama3, a100) -> None:
    """README: memory reduced up to 1.67x for GQA (Llama-3-8B, 50 % retrieval heads); at 500K our ratio is it."""
    result = ks.duo_decode(llama3, a100, 500_000, 0.5)
    assert result.dense_memory_bytes / result.memory_bytes == pytest.approx(1.67, rel=0.01)
    assert result.fits and result.dense_fits  # 48.9 GB and 81.6 GB on an 80 GiB (85.9 GB) A100
    longer = ks.duo_decode(llama3, a100, 600_000, 0.5)
    assert longer.fits and not longer.dense_fits  # 55.4 GB vs 94.7 GB


def test_duo_decode_time_falls_with_the_retrieval_fraction(llama2, a100) -> None:
    times = [ks.duo_decode(llama2, a100, 100_000, r).time_s for r in (1.0, 0.75, 0.5, 0.25, 0.0)]
    assert all(a > b for a, b in itertools.pairwise(times))
    full = ks.duo_decode(llama2, a100, 100_000, 1.0)
    assert full.time_s == pytest.approx(full.dense_time_s, rel=1e-12)
    assert full.memory_bytes == pytest.approx(full.dense_memory_bytes, rel=1e-12)


def test_duo_attention_is_two_kernel_calls_per_layer(llama3, a100) -> None:
    """Llama-3-8B at 50 %: each layer's 4 retrieval KV heads (16 query heads) at the context and 4 streaming KV
    heads at 384 tokens, each one call of the decode kernel; the rest of the step is the same as dense."""
    device = ks.gpu_device(a100)
    context = 100_000

    def call(kv_heads: int, keys: int) -> float:
        case = AttentionCase("decode", 1, 4 * kv_heads, kv_heads, 128, keys, False, "fp16")
        return predict(ks.DECODE_KERNEL, case, a100, device.kernel_params).time_s

    result = ks.duo_decode(llama3, a100, context, 0.5)
    assert result.attention_s == pytest.approx(call(4, context) + call(4, 384), rel=1e-12)
    assert result.dense_attention_s == pytest.approx(call(8, context), rel=1e-12)
    assert result.dense_time_s - result.time_s == pytest.approx(32 * (result.dense_attention_s - result.attention_s),
                                                                rel=1e-9)


def test_an_uneven_fraction_spreads_the_heads_over_the_layers(llama3) -> None:
    """0.3 x 32 x 8 = 76.8 -> 77 retrieval heads: 2 per layer and 13 layers with 3."""
    heads = ks.retrieval_heads_per_layer(llama3, 0.3)
    assert sum(heads) == 77 and heads.count(3) == 13 and heads.count(2) == 19


@pytest.mark.parametrize("fraction", [-0.1, 1.5, "half", True])
def test_a_retrieval_fraction_outside_0_1_is_refused(llama3, a100, fraction) -> None:
    with pytest.raises(SpecError) as info:
        ks.duo_decode(llama3, a100, 10_000, fraction)
    assert info.value.where == "retrieval_fraction"


def test_a_bad_window_is_refused(llama3, a100) -> None:
    with pytest.raises(SpecError) as info:
        ks.duo_decode(llama3, a100, 10_000, 0.5, sinks=-1)
    assert info.value.where == "sinks"


# ------------------------------------------------------------------------------------------------ Quest
@pytest.mark.parametrize(("context", "budget"), [(8192, 512), (16384, 1024), (32768, 4096), (65536, 4096)])
def test_quest_loaded_fraction_is_the_closed_form(llama2, context, budget) -> None:
    """§3.5: memory loaded = 1/PageSize + K/PageNum (64K context, 4K budget: 1/16 + 256/4096 = 1/8, '8x less')."""
    pages, k = context // 16, budget // 16
    assert ks.quest_loaded_fraction(llama2, context, budget) == pytest.approx(1 / 16 + k / pages, rel=1e-12)
    if context == 65536:
        assert ks.quest_loaded_fraction(llama2, context, budget) == pytest.approx(1 / 8)


@pytest.mark.parametrize(("context", "budget"), [(32770, 1024), (100003, 4096), (17, 16)])
def test_quest_over_a_partly_filled_last_page(llama2, context, budget) -> None:
    """A context that is not a whole number of 16-token pages: ceil(context / 16) pages of metadata (a min and a
    max row each, the bytes of one token's K and V), the budget's tokens, over the context's K and V; the metadata
    kept in the 30 sparse layers of 32 (the first two are dense and score no page)."""
    pages = -(-context // 16)
    assert ks.quest_loaded_fraction(llama2, context, budget) == pytest.approx((pages + budget) / context, rel=1e-12)
    result = ks.quest_decode(llama2, load_gpu("rtx-6000-ada"), context, budget)
    assert result.memory_bytes == pytest.approx(LLAMA2_7B_WEIGHTS + (context + pages * 30 / 32) * 32
                                                * KV_PER_TOKEN_HEAD, rel=1e-12)


def test_quest_attention_is_the_kernel_at_the_budget_plus_scoring(llama2) -> None:
    gpu = load_gpu("rtx-4090")
    device = ks.gpu_device(gpu)
    context, budget = 32768, 2048
    result = ks.quest_decode(llama2, gpu, context, budget)
    at_budget = predict(ks.DECODE_KERNEL, AttentionCase("decode", 1, 32, 32, 128, budget, False, "fp16"), gpu,
                        device.kernel_params).time_s
    at_context = predict(ks.DECODE_KERNEL, AttentionCase("decode", 1, 32, 32, 128, context, False, "fp16"), gpu,
                         device.kernel_params).time_s
    scoring = ks.quest_estimate_s(device, llama2, context, budget)
    assert result.attention_s == pytest.approx(at_budget + scoring, rel=1e-12)
    assert result.dense_attention_s == pytest.approx(at_context, rel=1e-12)
    assert result.attention_s < result.dense_attention_s
    # the first two layers stay dense: only 30 layers save
    assert result.dense_time_s - result.time_s == pytest.approx(30 * (at_context - result.attention_s), rel=1e-9)
    # scoring reads the pages' min and max: 2 x 2048 pages x 32 heads x 128 x 2 B = 32 MiB, plus the bounds
    assert scoring > 32 * 2**20 / (gpu.dram_bytes_per_s * device.params["hbm_efficiency"])


def test_quest_keeps_the_whole_cache_and_the_page_metadata(llama2) -> None:
    """Llama-2-7B at 32K: 32768 x 32 heads x 16384 B of KV (17.2 GB) + 2048 pages' min and max in the 30 sparse
    layers of 32 (1/16 x 30/32 of it, 1.0 GB) + 13.5 GB of weights = 31.7 GB: fits the 48 GB Ada 6000, not the
    24 GB RTX 4090."""
    kv = 32768 * 32 * KV_PER_TOKEN_HEAD
    for name, fits in (("rtx-6000-ada", True), ("rtx-4090", False)):
        result = ks.quest_decode(llama2, load_gpu(name), 32768, 1024)
        assert result.memory_bytes == pytest.approx(LLAMA2_7B_WEIGHTS + kv * (1 + 30 / 32 / 16), rel=1e-12)
        assert result.fits is fits


@pytest.mark.parametrize(("context", "budget", "field"), [(4096, 8192, "budget"), (4096, 1000, "budget"),
                                                          (0, 16, "context"), (4096, 0, "budget")])
def test_bad_quest_input_is_refused(llama2, context, budget, field) -> None:
    with pytest.raises(SpecError) as info:
        ks.quest_decode(llama2, load_gpu("rtx-4090"), context, budget)
    assert info.value.where == field


# ------------------------------------------------------------------------------------------------ PIM, offloading
def test_quest_effective_context_is_the_pages_plus_the_budget_in_the_sparse_layers(llama2) -> None:
    """A page's min and max are two K rows, the bytes of one token's K and V: a sparse layer reads 32768 / 16 = 2048
    pages + the 2048-token budget, 4096 tokens' worth; averaged with the 2 dense layers' 32768 over 32 layers,
    (2 x 32768 + 30 x 4096) / 32 = 5888."""
    assert ks.quest_mean_effective_context(llama2, 32768, 2048) == (2 * 32768 + 30 * 4096) // 32 == 5888


def test_duo_effective_context(llama3) -> None:
    """One device holding all 8 KV heads: 50 % of the heads at 32768, 50 % at 384, 16576 tokens' worth."""
    assert ks.duo_device_effective_context(llama3, 8, 32768, 0.5) == 16576


@pytest.mark.parametrize(("system", "kind"), [("neupims", "bank-pim"), ("duplex", "logic-pim")])
def test_pim_reads_only_the_selected_kv(llama3, system, kind) -> None:
    """Decode attention of 16 requests at 32K on the PIM: Quest (budget 2048, 5888 tokens' worth over the layers)
    and DuoAttention (50 %, 16576) bind the attention op to fewer tokens, and the time falls with them. The
    Logic-PIM is a roofline over its stacks' bandwidth, memory-bound here, so its time is in proportion to the
    tokens read (within Q's and the output's bytes, 1 %)."""
    (device,) = [d for d in device_models(load_system(system)).values() if d.kind == kind]
    dense = ks.pim_attention_s(device, llama3, [32768] * 16)
    quest = ks.pim_attention_s(device, llama3, [ks.quest_mean_effective_context(llama3, 32768, 2048)] * 16)
    duo = ks.pim_attention_s(device, llama3, [ks.duo_device_effective_context(llama3, 8, 32768, 0.5)] * 16)
    assert quest < duo < dense
    if kind == "logic-pim":
        assert quest / dense == pytest.approx(5888 / 32768, rel=0.01)
        assert duo / dense == pytest.approx(16576 / 32768, rel=0.01)


def test_streaming_heads_free_the_memory_pool() -> None:
    """Lamina's pool (4 H20, 96 GiB less a 512 MiB activation reserve each) holding Llama-3-70B's KV (80 layers x
    8 KV heads x 128 x 2 x 2 B = 327680 B per token): with half the heads streaming (384 tokens), twice as many
    32K requests, less a little."""
    workload = library.load_workload_spec("llama3-70b")
    capacity = system_model(load_system("lamina"), workload).kv_capacity_bytes
    assert capacity == pytest.approx(4 * (96 * 2**30 - 512 * 2**20))
    per_token = 80 * 8 * 128 * 2 * 2
    assert ks.pool_batch(capacity, workload, 32768, 0.5) == (math.floor(capacity / (per_token * 16576)),
                                                             math.floor(capacity / (per_token * 32768)))
    assert ks.pool_batch(capacity, workload, 32768, 0.5) == (75, 38)


# ------------------------------------------------------------------------------------------------ spatial array
@pytest.mark.parametrize("block", [4096, 1024, 256])
def test_block_sparse_on_fusemax_skips_the_masked_points(block) -> None:
    """attention-block-sparse's mask keeps, of n x n blocks, the band |i - j| <= 1 and the first column: 4n - 4
    (n >= 2). BERT at 16K on FuseMax: QK's and SLNV's MACs are that fraction of dense, energy falls with it; so
    does the latency, 1-D bound by the running-state updates, which the cascade skips for a key tile the query
    does not see (its tile mask): with blocks of whole 256-key tiles their cycles are the same fraction of
    dense's (module docstring)."""
    n = 16384 // block
    result = sparse_on_array.block_sparse_on_array("fusemax", "bert-base", 16384, block)
    assert result.density == pytest.approx((4 * n - 4) / n**2, rel=1e-12)
    dense = {e.name: e for e in result.dense.einsums}
    for e in result.sparse.einsums:
        if e.name in ("QK", "SLNV"):
            assert e.ops["mac"] == pytest.approx(result.density * dense[e.name].ops["mac"], rel=1e-12)
    assert result.sparse.energy_pj < result.dense.energy_pj
    state = ("RM", "PRM", "SPD", "RD", "SPNV", "RNV")
    cycles = [sum(e.compute_cycles for e in r.einsums if e.name in state) for r in (result.sparse, result.dense)]
    assert cycles[0] == pytest.approx(result.density * cycles[1], rel=1e-12)
    assert result.density * result.dense.latency_s < result.sparse.latency_s < result.dense.latency_s
    assert result.sparse.utilization["array1d"] == pytest.approx(1.0)  # still 1-D bound


def test_block_sparse_energy_and_flat_latency_fall_with_density() -> None:
    """Sparser masks cost less energy and less time on FuseMax and on FLAT's hardware (fusemax-cascade)."""
    for mapping in ("fusemax", "fusemax-cascade"):
        runs = [sparse_on_array.block_sparse_on_array(mapping, "bert-base", 16384, b) for b in (4096, 1024, 256)]
        energies = [runs[0].dense.energy_pj] + [r.sparse.energy_pj for r in runs]
        latencies = [runs[0].dense.latency_s] + [r.sparse.latency_s for r in runs]
        assert all(a > b for a, b in itertools.pairwise(energies)), mapping
        assert all(a > b for a, b in itertools.pairwise(latencies)), mapping


def test_razorattention_keeps_a_fifth_or_4000_tokens_and_a_compensation_token() -> None:
    """RazorAttention is DuoAttention's layer with window max(4000, N/5) + 1: its memory is the retrieval heads'
    whole cache plus that window for the others, and its time falls against dense at long contexts."""
    workload, gpu = library.load_workload_spec("llama3-8b"), load_gpu("a100-80gb-sxm4")
    for context in (16_000, 500_000):
        razor = ks.razor_decode(workload, gpu, context, 0.25)
        window = max(4000, -(-context // 5))
        same = ks.duo_decode(workload, gpu, context, 0.25, sinks=1, recent=window)
        assert (razor.time_s, razor.memory_bytes) == (same.time_s, same.memory_bytes)
        assert razor.method == "RazorAttention"
    assert razor.time_s < razor.dense_time_s and razor.memory_bytes < razor.dense_memory_bytes


def test_tokenselect_reads_every_key_to_select_and_keeps_the_cache() -> None:
    """Without its selection cache TokenSelect's estimate reads all of K each step, so attention saves little; with
    reuse it approaches attention over top_k + sinks + local tokens. Memory stays dense."""
    workload, gpu = library.load_workload_spec("llama3-8b"), load_gpu("a100-80gb-sxm4")
    fresh = ks.tokenselect_decode(workload, gpu, 500_000)
    reused = ks.tokenselect_decode(workload, gpu, 500_000, reuse_fraction=0.9)
    assert fresh.memory_bytes == fresh.dense_memory_bytes
    assert reused.attention_s < 0.5 * fresh.attention_s < fresh.dense_attention_s
    for kwargs, field in (({"top_k": 600_000}, "top_k"), ({"reuse_fraction": 1.0}, "reuse_fraction")):
        with pytest.raises(SpecError) as error:
            ks.tokenselect_decode(workload, gpu, 500_000, **kwargs)
        assert error.value.where == field
