"""Native MMA is a warpgroup MMA by the GPU's compute capability, not by its mma.sync rate (audit helper-470): a
what-if H100 whose mma.sync reaches the full peak had its FlashAttention-3 and Lightning Attention-2 tiles priced
as per-warp MMAs, 1.37x and 1.56x slower."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_flash_plans import warpgroup
from archsim.model.gpu_kernels import family_of, predict

NATIVE_CASES = (("FlashAttention-3", AttentionCase("fwd", 1, 32, 8, 128, 16384, True, "bf16")),
                ("archsim Lightning Attention-2 (Triton)",
                 AttentionCase("fwd", 1, 32, 32, 128, 4096, True, "bf16", "linear")))


def _time_s(kernel: str, case: AttentionCase, gpu) -> float:
    return predict(kernel, case, gpu, load_calibration().family_params(family_of(kernel))).time_s


@pytest.mark.parametrize(("kernel", "case"), NATIVE_CASES, ids=[k for k, _ in NATIVE_CASES])
def test_a_full_rate_mma_sync_leaves_hoppers_native_kernels_as_they_were(kernel, case) -> None:
    h100 = load_gpu("h100-sxm5")
    assert h100.sync_mma_fraction == 0.5
    assert _time_s(kernel, case, replace(h100, sync_mma_fraction=1.0)) == _time_s(kernel, case, h100)


def test_the_rule_reads_the_compute_capability_and_else_the_mma_sync_rate() -> None:
    a100, h100, mi300x = load_gpu("a100-80gb-sxm4"), load_gpu("h100-sxm5"), load_gpu("mi300x")
    assert warpgroup("native", h100) and warpgroup("native", replace(h100, sync_mma_fraction=1.0))
    assert warpgroup("native", load_gpu("b200")) and not warpgroup("sync", h100)
    assert not warpgroup("native", a100) and not warpgroup("native", replace(a100, sync_mma_fraction=0.5))
    assert mi300x.compute_capability is None and not warpgroup("native", mi300x)
    assert warpgroup("native", replace(mi300x, sync_mma_fraction=0.5))  # a slower legacy path: native is another
