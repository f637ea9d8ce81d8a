"""The GPU model of archsim's Lightning Attention-2 kernel (kernels/lightning.py): its tile from the cascade, its
chained block step, the plan's refusals and pipeline depth, and its use for LASP's linear-attention chunks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase, tile_times_s
from archsim.model.gpu_kernels import plans, predict
from archsim.model.gpu_tiles import lightning_tile
from archsim.systems.seqpar_compute import LINEAR_KERNEL, DeviceCompute

KERNEL = "archsim Lightning Attention-2 (Triton)"


def _case(seqlen: int = 4096, causal: bool = True, kv_heads: int = 32, head_dim: int = 128) -> AttentionCase:
    return AttentionCase("fwd", 4, 32, kv_heads, head_dim, seqlen, causal, "bf16")


def test_a_block_step_computes_four_whole_products_for_its_value_columns():
    """S = Q·Kᵀ over all head_dim (every program recomputes it), OI = S·V, OX = Q·KV and KVB = Kᵀ·V over the
    program's 64 value columns; S and OI as whole 64 x 64 tiles though the cascade counts their causal half."""
    block, d, f = 64, 128, 64
    tile = lightning_tile(block, d, f, 8, False, 2)
    assert tile.mma_flops == 2 * (block * block * d + block * block * f + block * d * f + d * block * f)
    assert tile.exp_ops == 0
    assert tile.load_bytes == (2 * block * d + 2 * block * f) * 2  # Q, K, V in and the output block out


def test_the_chained_step_adds_its_smem_staging_to_its_products():
    """A block's products read each other (S feeds OI, the state feeds OX), so SMEM staging and MMAs do not overlap:
    the MMA phase is their sum, against the larger of the two for FlashAttention's tile."""
    gpu = load_gpu("h200-sxm")
    (plan,) = plans(KERNEL, _case(), gpu)
    (launch,) = plan.launches
    tile = launch.segments[0].tile
    chained, _ = tile_times_s(tile, launch, gpu, 0.7)
    overlapped, _ = tile_times_s(tile, replace(launch, chained_mma=False), gpu, 0.7)
    assert launch.chained_mma and chained > overlapped


def test_the_plan_is_causal_multi_head_and_one_program_per_head_and_64_value_columns():
    gpu = load_gpu("h200-sxm")
    (plan,) = plans(KERNEL, _case(), gpu)
    assert plan.launches[0].ctas == 4 * 32 * 2
    for case in (_case(causal=False), _case(kv_heads=8)):
        assert "causal, with a K and V per query head" in plans(KERNEL, case, gpu)
    assert "head_dim 16, 32, 64 or 128" in plans(KERNEL, _case(head_dim=96), gpu)


def test_a_gpu_with_less_shared_memory_runs_a_shallower_pipeline():
    """Three stages of Q, K and V buffers need 120 KB; an RTX 4090's SM has 100 KB, so two stages run there."""
    h200, ada = load_gpu("h200-sxm"), load_gpu("rtx-4090")
    (deep,) = plans(KERNEL, _case(), h200)
    (shallow,) = plans(KERNEL, _case(), ada)
    assert deep.launches[0].smem_bytes > ada.smem_bytes_per_sm >= shallow.launches[0].smem_bytes
    assert predict(KERNEL, _case(), ada, load_calibration().family_params("archsim")).feasible


def test_the_time_grows_linearly_with_the_sequence():
    """Linear attention: doubling a long sequence doubles the block loop (within the fixed costs)."""
    gpu, params = load_gpu("h200-sxm"), load_calibration().family_params("archsim")
    t8, t16 = (predict(KERNEL, _case(n), gpu, params).time_s for n in (8192, 16384))
    assert t16 / t8 == pytest.approx(2.0, rel=0.05)


def test_lasp_chunks_are_this_kernels_calls():
    """`DeviceCompute.linear_chunk_s` is one call of the kernel on the device's heads; fwd+bwd three times it."""
    gpu = load_gpu("a100-80gb-sxm4")
    fwd = DeviceCompute(gpu, "FlashAttention-2", 1, 16, 16, 128, "fwd")
    both = DeviceCompute(gpu, "FlashAttention-2", 1, 16, 16, 128, "fwd+bwd")
    case = AttentionCase("fwd", 1, 16, 16, 128, 8192, True, "bf16")
    direct = predict(LINEAR_KERNEL, case, gpu, load_calibration().family_params("archsim")).time_s
    assert fwd.linear_chunk_s(8192) == direct and both.linear_chunk_s(8192) == 3 * direct
