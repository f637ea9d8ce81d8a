"""Sparse prefill on the GPU model (`archsim.model.gpu_sparse`, `archsim.systems.sparse_prefill`, issue 19): the
kernel's key tiles per query block against closed forms, the dense limit, what the estimation costs, and an
end-to-end prefill's structure on Llama-3-8B shapes on an A100."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase, launch_time
from archsim.model.gpu_flash_plans import fwd_launch
from archsim.model.gpu_sparse import (
    BLOCK,
    LAST_Q,
    SparseParams,
    SparsePattern,
    head_launches,
    head_parts_s,
    kept_fraction,
    key_tiles,
)
from archsim.systems.sparse_prefill import dense_prefill, kv_host_s, sparse_prefill

KV_HOST_FROM_TOKENS = 700_000  # MInference's benchmark: KV on the host from here, on its 80 GB A100 (§3.1)

A100 = load_gpu("a100-80gb-sxm4")
LLAMA = library.load_workload_spec("llama3-8b")
CALIBRATION = load_calibration()
PARAMS = SparseParams(CALIBRATION.family_params("triton_tutorial"), CALIBRATION.family_params("pytorch"))


def test_vertical_slash_tiles_band_plus_gathered_columns() -> None:
    """Query block i: min(i + 1, ceil(k_s / 64) + 1) band blocks, two of them at a mask edge, plus the first k_v
    columns left of the band's first block gathered 64 per tile (block 16: the band's 17 blocks are all its causal
    ones, so no column is left to gather)."""
    n, k_v, k_s = 64 * 1000, 640, 1000
    unmasked, masked = key_tiles(SparsePattern("vertical_slash", k_v=k_v, k_s=k_s), n)
    for i in (0, 5, 16, 17, 500, 999):
        band = min(i + 1, math.ceil(k_s / BLOCK) + 1)
        columns = math.ceil(min(k_v, BLOCK * (i + 1 - band)) / BLOCK)
        assert unmasked[i] + masked[i] == band + columns <= i + 1
        assert masked[i] == min(band, 2)


def test_a_band_over_everything_is_the_causal_kernel() -> None:
    """k_s >= N keeps every causal tile: density 1, the same tile counts as a dense causal kernel."""
    n = 64 * 64
    pattern = SparsePattern("vertical_slash", k_v=0, k_s=n)
    assert kept_fraction(pattern, n) == pytest.approx(1.0)
    blocks = np.arange(n // BLOCK) + 1
    unmasked, masked = key_tiles(pattern, n)
    assert np.array_equal(unmasked + masked, blocks)
    case = AttentionCase("fwd", 1, 1, 1, 128, n, True, "bf16")
    sparse = fwd_launch("s", case, A100, BLOCK, BLOCK, 4, "native", "mma_efficiency_fwd", False, False, 2,
                        counts=key_tiles(pattern, n))
    dense = fwd_launch("d", case, A100, BLOCK, BLOCK, 4, "native", "mma_efficiency_fwd", False, False, 2)
    assert float(sum(s.counts.sum() for s in sparse.segments)) == float(sum(s.counts.sum() for s in dense.segments))
    assert launch_time(sparse, A100, PARAMS.kernel).time_s == pytest.approx(
        launch_time(dense, A100, PARAMS.kernel).time_s, rel=0.02)


def test_block_sparse_keeps_k_b_blocks_per_query_block() -> None:
    unmasked, masked = key_tiles(SparsePattern("block_sparse", k_b=100), 64 * 300)
    assert list((unmasked + masked)[:3]) == [1, 2, 3]
    assert set((unmasked + masked)[100:]) == {100}


@pytest.mark.parametrize(("pattern", "cascade", "einsum", "extra"), [
    (SparsePattern("vertical_slash", k_v=100, k_s=200), "minference-vertical-slash", "EQK",
     lambda n: LAST_Q * (LAST_Q - 1) // 2),  # keys after each of the last 64 queries: the mask discards them
    (SparsePattern("block_sparse", k_b=4), "minference-block-sparse", "BQK",
     lambda n: (n // BLOCK) * (n // BLOCK - 1) // 2)])  # block pairs above the diagonal
def test_a_heads_estimation_gemm_is_its_cascades_einsum_and_the_masked_part_cublas_computes(
        pattern, cascade, einsum, extra) -> None:
    """One head's estimation GEMM, written as a launch (cuBLAS computes whole rectangles), against the library
    cascade at the same sizes: the cascade's masked Einsum plus the part the mask discards, per head_dim."""
    n, d = 1024, 16
    binding = bind(library.load_cascade_spec(cascade), {"seq_len": n, "heads": 1, "kv_heads": 1, "head_dim": d,
                                                        "last_q": LAST_Q, "block": BLOCK})
    eager, _ = head_launches(pattern, n, d, load_gpu("a100-80gb-sxm4"), "bf16", 2)
    (gemm,) = [launch for launch in eager if hasattr(launch, "mma_flops")]
    assert gemm.mma_flops / 2 == analyze(binding).points[einsum] + extra(n) * d


def test_head_time_grows_with_the_kept_set_and_the_estimate_costs() -> None:
    n = 200_000
    small, large = (head_parts_s(SparsePattern("vertical_slash", k_v=kv, k_s=ks), n, 128, A100, PARAMS)[0]
                    for kv, ks in ((30, 800), (1000, 6096)))
    assert large > small
    a_shape = head_parts_s(SparsePattern("a_shape", sinks=64, window=800), n, 128, A100, PARAMS)[0]
    assert a_shape < small  # about the same tiles with no estimation and no index build


def test_minference_loses_at_10k_and_wins_from_100k() -> None:
    """Heads one at a time and the estimate make MInference slower than dense FlashAttention-2 at 10K; the kept
    tiles' fall makes it faster from 100K, more so at longer prompts (the paper's direction)."""
    mix = [(SparsePattern("vertical_slash", k_v=1000, k_s=6096), 512),
           (SparsePattern("vertical_slash", k_v=30, k_s=800), 512)]
    ratios = {}
    for n in (10_000, 100_000, 300_000):
        ratios[n] = dense_prefill(LLAMA, A100, n).time_s / sparse_prefill(LLAMA, A100, n, mix).time_s
    assert ratios[10_000] < 1 < ratios[100_000] < ratios[300_000]


def test_past_what_the_gpu_holds_the_kv_cache_crosses_pcie_once_per_layer() -> None:
    """The benchmark's kv_cache_cpu (from 700K tokens on its 80 GB A100; ours where the weights, the KV cache and
    the layer's working set exceed the GPU, from 426,263 tokens: `test_sparse_prefill_memory_s36`): Llama-3-8B's K
    and V, 2 x 8 KV heads x 128 x 2 B per token and layer, cross PCIe 4.0 x16 (31.5 GB/s, 1 us) once per layer, for
    dense and MInference alike; nothing below."""
    assert kv_host_s(LLAMA, A100, 400_000) == 0.0 and kv_host_s(LLAMA, A100, KV_HOST_FROM_TOKENS) > 0
    n = 1_000_000
    per_layer = 2 * 8 * 128 * 2 * n
    assert kv_host_s(LLAMA, A100, n) == pytest.approx(32 * (1e-6 + per_layer / 31.5e9), rel=1e-9)
    dense = dense_prefill(LLAMA, A100, n)
    assert dense.time_s == pytest.approx(dense.other_ops_s + dense.attention_s + kv_host_s(LLAMA, A100, n), rel=1e-12)
    mix = [(SparsePattern("vertical_slash", k_v=30, k_s=800), 1024)]
    assert sparse_prefill(LLAMA, A100, n, mix).kv_host_s == dense.kv_host_s


def test_the_kv_copy_takes_the_gpus_own_host_link() -> None:
    """An H100 SXM5 copies over its PCIe 5.0 x16 (63 GB/s): the same bytes in about half the A100's time; a GPU
    whose preset states no host link is refused at the lengths that need one, naming the field."""
    n = 1_000_000
    per_layer = 2 * 8 * 128 * 2 * n
    assert kv_host_s(LLAMA, load_gpu("h100-sxm5"), n) == pytest.approx(32 * (1e-6 + per_layer / 63.0e9), rel=1e-9)
    b200 = replace(load_gpu("b200"), host_link=None)  # a user's preset that states none
    assert kv_host_s(LLAMA, b200, n) == 0.0  # 1M tokens of Llama-3-8B fit its HBM
    with pytest.raises(SpecError, match="host_link: missing"):
        kv_host_s(library.load_workload_spec("llama3-70b"), b200, n)


def test_pattern_map_must_cover_every_head() -> None:
    with pytest.raises(SpecError) as error:
        sparse_prefill(LLAMA, A100, 10_000, [(SparsePattern("vertical_slash", k_v=30, k_s=800), 1000)])
    assert error.value.where == "heads"
    with pytest.raises(SpecError) as error:
        SparsePattern("diagonal")
    assert error.value.where == "pattern"


def test_an_attention_the_kernels_do_not_model_is_refused() -> None:
    """MLA's latent KV is not the dense attention FlashAttention-2 and MInference's kernels time: refused, naming the
    workload's size, by the prefill and by KV selection alike."""
    from archsim.systems.kv_selection import quest_decode

    mla = library.load_workload_spec("deepseek-v3-mla")
    with pytest.raises(SpecError, match=r"params\.kv_lora_rank: an MLA workload"):
        dense_prefill(mla, A100, 8192)
    with pytest.raises(SpecError, match=r"params\.kv_lora_rank: an MLA workload"):
        quest_decode(mla, A100, 8192, 512)
