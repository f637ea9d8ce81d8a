"""Kernel plans of the GPU model (archsim/model/gpu_baseline_plans.py): eager decode's DRAM floor, the Triton tutorial's
forward autotune fallback. Expected numbers are hand derivations from the sizes, stated beside each assertion."""

from __future__ import annotations

import itertools

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase, TiledLaunch, ctas_per_sm
from archsim.model.gpu_baseline_plans import TUT_FWD
from archsim.model.gpu_kernels import (
    KERNELS,
    family_of,
    kernel_attention,
    kernel_directions,
    plans,
    predict,
)

TUTORIAL = "Triton tutorial fused attention"


@pytest.fixture(scope="module")
def calibration():
    return load_calibration("v2")


def test_eager_decode_reads_q_and_writes_o(calibration):
    """Batch 4096, 32 heads, d 128, one cached key, fp16: K and V are 2 x 4096 x 32 x 128 x 2 B = 64 MiB and so are
    Q and O (operand_bytes 128 MiB). q·Kᵀ reads Q and K and writes the 4096 x 32 = 131072 scores (2 B), the scale
    reads and writes them (2 + 2 B), the softmax (2 + 4 B) and the cast (4 + 2 B) too, P·V reads them (2 B) and V
    and writes O: 128 MiB + 131072 x 20 B = 136839168 B. Without the Q read and the O write: 69730304 B."""
    case = AttentionCase("decode", 4096, 32, 32, 128, 1, False, "fp16")
    kernel = "PyTorch eager attention"
    result = predict(kernel, case, load_gpu("h100-sxm5"), calibration.family_params(family_of(kernel)))
    assert case.operand_bytes() == 2**27
    assert result.total("dram_bytes") == 2**27 + 131072 * 20 == 136839168


def test_no_kernel_moves_less_than_its_operands(calibration):
    """Every feasible plan moves at least the call's Q, K, V and O (and their gradients) through DRAM
    (`AttentionCase.operand_bytes`: what the call keeps in DRAM at the least), on a small grid of cases."""
    below = []
    for name in ("a100-80gb-sxm4", "h100-sxm5", "mi300x"):
        gpu = load_gpu(name)
        for kernel in KERNELS:
            params = calibration.family_params(family_of(kernel))
            for direction in kernel_directions(kernel):
                for batch, kv_heads, head_dim, seqlen, causal in itertools.product(
                        (1, 4), (8, 2), (64, 128), (17, 1024), (False, True)):
                    case = AttentionCase(direction, batch, 8, kv_heads, head_dim, seqlen, causal, "fp16",
                                         kernel_attention(kernel))
                    result = predict(kernel, case, gpu, params)
                    if result.feasible and result.total("dram_bytes") < case.operand_bytes():
                        below.append((name, kernel, case, result.total("dram_bytes"), case.operand_bytes()))
    assert not below


def _tutorial_fwd(case: AttentionCase, gpu_name: str) -> TiledLaunch:
    found = plans(TUTORIAL, case, load_gpu(gpu_name))
    assert not isinstance(found, str), found
    return found[0].launches[0]


def test_tutorial_forward_falls_back_to_a_fitting_config(calibration):
    """Head dim 256 on an A100 (167936 B of shared memory per SM): `TUT_FWD`'s 3 stages of K and V, 64 keys each,
    need 3 x 2 x 64 x 256 x 2 B = 196608 B; the first config of the autotune space, BLOCK_M 64, BLOCK_N 32, 3
    stages, 4 warps, needs 3 x 2 x 32 x 256 x 2 B = 98304 B and runs a CTA per 64 query rows of each head:
    4096 / 64 x 4 x 32 = 8192 CTAs of 128 threads."""
    case = AttentionCase("fwd", 4, 32, 32, 256, 4096, True, "fp16")
    a100 = load_gpu("a100-80gb-sxm4")
    result = predict(TUTORIAL, case, a100, calibration.family_params("triton_tutorial"))
    assert result.feasible, result.reason
    launch = _tutorial_fwd(case, "a100-80gb-sxm4")
    assert (launch.smem_bytes, launch.threads, launch.ctas) == (98304, 128, 8192)
    assert ctas_per_sm(launch, a100) > 0


def test_tutorial_forward_keeps_its_tile_where_it_fits():
    """Head dim 128 on an H100: `TUT_FWD` (128 x 64, 4 warps, 3 stages) fits (3 x 2 x 64 x 128 x 2 B = 98304 B of
    shared memory) and stays: 4096 / 128 x 4 x 32 = 4096 CTAs of 128 threads."""
    assert TUT_FWD == (128, 64, 4, 3)
    launch = _tutorial_fwd(AttentionCase("fwd", 4, 32, 32, 128, 4096, True, "fp16"), "h100-sxm5")
    assert (launch.smem_bytes, launch.threads, launch.ctas) == (98304, 128, 4096)


def test_tutorial_forward_on_hip_takes_one_stage():
    """MI300X (65536 B of LDS, no NVIDIA compute capability) at head dim 128: `TUT_FWD` needs 98304 B; the HIP
    autotune space's first config (64 x 32, 4 warps, 1 stage) needs 1 x 2 x 32 x 128 x 2 B = 16384 B."""
    launch = _tutorial_fwd(AttentionCase("fwd", 4, 32, 32, 128, 4096, True, "fp16"), "mi300x")
    assert (launch.smem_bytes, launch.threads, launch.ctas) == (16384, 128, 8192)
