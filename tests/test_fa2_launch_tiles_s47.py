"""FlashAttention-2 launches the tile its launcher picks for the GPU (auditor s47, from memory of FA2's
csrc/flash_attn/src/flash_{fwd,bwd}_launch_template.h, not in ../shared/reference).

Expected shapes from the launcher's rules, smem in bytes at fp16 (2 B), the model's per-block limit being the SM's
(228 KB Hopper/Blackwell, 164 KB A100, 100 KB Ada):
- forward head_dim 256: 128 x 64, 8 warps, only where 2 x 256 x (128 + 2 x 64) = 128 KB fits a block and
  4 x 256 x (64 + 2 x 64) = 192 KB (two 64 x 64 CTAs) does not fit an SM: the A100; every 228 KB GPU runs 64 x 64,
  4 warps, (64 + 128) x 256 x 2 = 96 KB, 2 CTAs per SM ("For H100 we want to run with 64 x 64 (96KB smem)").
- forward on sm8x (compute capability 8.x, x > 0: Ada): head_dim 128 non-causal 128 x 32 ((128 + 64) x 128 x 2 =
  48 KB, 2 CTAs per SM), causal 64 x 64; head_dim 96 causal 64 x 64; head_dim 160 causal 64 x 64, non-causal
  128 x 64 with 8 warps. Head_dim 160 elsewhere (A100, H100): 128 x 32, 4 warps.
- backward head_dim 256: 64 x 64 double-buffered (3 Q/dO blocks: (3 x 64 x 256 + 2 x 64 x 256 + 2 x 64 x 64) x 2 =
  176 KB) where a block holds 176 KB; else 64 x 64 without double buffering (2 blocks, 144 KB) where it holds 144 KB
  (A100); else 64 x 32 with V in registers, no double buffering: 2 x 64 x 256 + max(2 x 32 x 256, 32 x 256 +
  2 x 64 x 32) = 49152 elements, 96 KB (Ada). Ada's other head dims: 96 and 64 run 64 x 128 with V in registers
  (92 KB at 96), 32 runs 128 x 128 with V in registers (96 KB), 128 runs 64 x 64 with V in registers (80 KB), 160
  64 x 64 without double buffering (96 KB), 192 64 x 64 with both (96 KB).
"""

from __future__ import annotations

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase, TiledLaunch, ctas_per_sm, tiled_launch_time
from archsim.model.gpu_flash_plans import bwd_launch, fa2_plans, fa2_varlen_fwd
from archsim.model.gpu_kernels import predict

KB = 1024
E = 2  # fp16
BATCH, HEADS, SEQLEN = 2, 8, 8192  # a multiple of every tile side
ADA = ("l40s", "rtx-4090", "rtx-6000-ada")
SMEM_228_KB = ("h100-sxm5", "h100-pcie", "h200-sxm", "h20", "b200")


def _main(direction: str, gpu_name: str, head_dim: int, causal: bool) -> TiledLaunch:
    case = AttentionCase(direction, BATCH, HEADS, HEADS, head_dim, SEQLEN, causal, "fp16")
    (plan,) = fa2_plans("fa2", case, load_gpu(gpu_name))
    (launch,) = [launch for launch in plan.launches if isinstance(launch, TiledLaunch)]
    return launch


def _fwd_shape(launch: TiledLaunch, head_dim: int) -> tuple[int, int, int]:
    """(block_m, block_n, warps): a CTA per query block and head; Q and one K and one V block in shared memory."""
    block_m = SEQLEN * BATCH * HEADS // launch.ctas
    block_n = (launch.smem_bytes // (head_dim * E) - block_m) // 2
    return block_m, block_n, launch.threads // 32


@pytest.mark.parametrize("gpu_name", SMEM_228_KB)
@pytest.mark.parametrize("causal", [False, True])
def test_a_228_kb_gpu_runs_the_d256_forward_at_64_x_64_two_ctas_an_sm(gpu_name: str, causal: bool) -> None:
    launch = _main("fwd", gpu_name, 256, causal)
    assert _fwd_shape(launch, 256) == (64, 64, 4)
    assert launch.smem_bytes == 96 * KB
    assert ctas_per_sm(launch, load_gpu(gpu_name)) == 2


def test_the_a100_keeps_the_d256_forward_at_128_x_64_with_8_warps() -> None:
    launch = _main("fwd", "a100-80gb-sxm4", 256, False)
    assert _fwd_shape(launch, 256) == (128, 64, 8) and launch.smem_bytes == 128 * KB


@pytest.mark.parametrize("gpu_name", ADA)
@pytest.mark.parametrize("head_dim, causal, shape", [
    (128, False, (128, 32, 4)), (128, True, (64, 64, 4)), (96, True, (64, 64, 4)), (96, False, (128, 64, 4)),
    (160, True, (64, 64, 4)), (160, False, (128, 64, 8))])
def test_ada_runs_the_sm8x_forward_tiles(gpu_name: str, head_dim: int, causal: bool, shape: tuple) -> None:
    assert _fwd_shape(_main("fwd", gpu_name, head_dim, causal), head_dim) == shape


@pytest.mark.parametrize("gpu_name", ["a100-80gb-sxm4", "h100-sxm5"])
def test_sm80_and_sm90_run_the_d160_forward_at_128_x_32(gpu_name: str) -> None:
    for causal in (False, True):
        assert _fwd_shape(_main("fwd", gpu_name, 160, causal), 160) == (128, 32, 4)


@pytest.mark.parametrize("gpu_name, block_n, smem_bytes", [
    ("h100-sxm5", 64, 176 * KB), ("a100-80gb-sxm4", 64, 144 * KB), ("l40s", 32, 96 * KB), ("rtx-4090", 32, 96 * KB)])
def test_the_d256_backward_tile_follows_the_launchers_smem_thresholds(gpu_name: str, block_n: int,
                                                                      smem_bytes: int) -> None:
    launch = _main("bwd", gpu_name, 256, False)
    assert SEQLEN * BATCH * HEADS // launch.ctas == block_n  # a CTA per key block and head
    assert launch.smem_bytes == smem_bytes and launch.threads == 256


@pytest.mark.parametrize("head_dim, block_n, smem_bytes", [
    (32, 128, 96 * KB), (64, 128, (3 * 64 * 64 + max(2 * 128 * 64, 128 * 64 + 2 * 64 * 128)) * E),
    (96, 128, 92 * KB), (128, 64, 80 * KB), (160, 64, 96 * KB), (192, 64, 96 * KB)])
def test_ada_runs_the_backward_variants_its_99_kb_take(head_dim: int, block_n: int, smem_bytes: int) -> None:
    launch = _main("bwd", "l40s", head_dim, False)
    assert SEQLEN * BATCH * HEADS // launch.ctas == block_n
    assert launch.smem_bytes == smem_bytes and launch.threads == 256


def test_the_a100_d256_backward_is_faster_on_its_64_x_64_tile() -> None:
    """The audit's case on the A100: the 64 x 32 tile it had run (3 Q/dO blocks, 136 KB) has twice the CTAs, each
    reloading Q and dO per key block, and is slower than the launcher's 64 x 64 with 2 blocks (16.706 against
    14.502 ms for the whole backward when the audit ran it)."""
    case = AttentionCase("bwd", 2, 8, 8, 256, 8192, False, "fp16")
    a100, params = load_gpu("a100-80gb-sxm4"), load_calibration().family_params("fa2")
    launcher = _main("bwd", "a100-80gb-sxm4", 256, False)
    old = bwd_launch(case, a100, 64, 32, 8, "sync", False, 3, padded_head_dim=256, dkv_heads=HEADS)
    assert old.smem_bytes == 136 * KB and old.ctas == 2 * launcher.ctas
    assert tiled_launch_time(launcher, a100, params).time_s < tiled_launch_time(old, a100, params).time_s
    assert predict("FlashAttention-2", case, a100, params).feasible


@pytest.mark.parametrize("gpu_name, causal, shape", [("l40s", True, (64, 64, 4)), ("l40s", False, (128, 32, 4)),
                                                     ("h100-sxm5", False, (128, 64, 4))])
def test_the_varlen_forward_reads_the_same_rule(gpu_name: str, causal: bool, shape: tuple) -> None:
    case = AttentionCase("fwd", 1, HEADS, HEADS, 128, 3 * 2048, causal, "fp16")
    launch = fa2_varlen_fwd(case, (2048, 2048, 2048), load_gpu(gpu_name), 128)
    assert launch.smem_bytes == (shape[0] + 2 * shape[1]) * 128 * E and launch.threads == 32 * shape[2]
    assert launch.ctas == 3 * HEADS * 2048 // shape[0]
