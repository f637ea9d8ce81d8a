"""The Triton tutorial's fused-attention backward (archsim/model/gpu_baseline_plans.py): it runs only at lengths that
are a multiple of 128 (the tutorial's `_attention.backward` asserts `N_CTX % PRE_BLOCK == 0`, PRE_BLOCK = 128), and
its causal dK/dV steps cover every query row below a program's diagonal (the count rounds up, as the non-causal
count does). Expected numbers are hand derivations from the sizes, stated beside each assertion."""

from __future__ import annotations

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_baseline_plans import TUT_BWD, TUT_SLICE, _tutorial_bwd
from archsim.model.gpu_kernels import family_of, plans, predict

TUTORIAL = "Triton tutorial fused attention"


@pytest.fixture(scope="module")
def calibration():
    return load_calibration("v2")


@pytest.mark.parametrize("direction", ["bwd", "fwd+bwd"])
@pytest.mark.parametrize("seqlen", [16, 100, 1000, 1025])
@pytest.mark.parametrize("causal", [False, True])
def test_tutorial_backward_refuses_a_length_not_a_multiple_of_128(calibration, direction, seqlen, causal):
    """16, 100, 1000 and 1025 are no multiple of 128: the tutorial's backward asserts N_CTX % 128 == 0, so the call
    is infeasible, and the reason names the assert."""
    case = AttentionCase(direction, 4, 32, 32, 64, seqlen, causal, "fp16")
    result = predict(TUTORIAL, case, load_gpu("a100-80gb-sxm4"), calibration.family_params(family_of(TUTORIAL)))
    assert not result.feasible
    assert "N_CTX % 128 == 0" in result.reason
    assert f"{seqlen}" in result.reason


@pytest.mark.parametrize("seqlen", [128, 1024, 4096])
@pytest.mark.parametrize("causal", [False, True])
def test_tutorial_backward_runs_at_multiples_of_128(calibration, seqlen, causal):
    """128, 1024 and 4096 are multiples of 128: the backward has a plan and a time."""
    case = AttentionCase("bwd", 4, 32, 32, 64, seqlen, causal, "fp16")
    result = predict(TUTORIAL, case, load_gpu("a100-80gb-sxm4"), calibration.family_params(family_of(TUTORIAL)))
    assert result.feasible, result.reason
    assert result.time_s > 0


@pytest.mark.parametrize("seqlen", [16, 1000])
def test_tutorial_forward_keeps_any_length(calibration, seqlen):
    """The tutorial's forward asserts nothing about N_CTX: it still runs at 16 and 1000."""
    case = AttentionCase("fwd", 4, 32, 32, 64, seqlen, True, "fp16")
    result = predict(TUTORIAL, case, load_gpu("a100-80gb-sxm4"), calibration.family_params(family_of(TUTORIAL)))
    assert result.feasible, result.reason


def _dkdv_steps(case: AttentionCase) -> tuple[list[int], list[int]]:
    """Per-head (masked, unmasked) dK/dV steps of each program of the backward's main launch."""
    main = _tutorial_bwd(case, load_gpu("h100-sxm5"))[1]
    masked, unmasked = main.segments[0].run_counts, main.segments[1].run_counts
    return [int(c) for c in masked], [int(c) for c in unmasked]


def test_causal_dkdv_steps_at_1024():
    """N = 1024: 8 programs of 128 keys; program p runs 128 / 16 = 8 masked diagonal steps, then the query rows
    128(p+1)..1023 in 32-row steps: 28, 24, 20, 16, 12, 8, 4, 0 (112 in all)."""
    masked, unmasked = _dkdv_steps(AttentionCase("bwd", 4, 32, 32, 64, 1024, True, "fp16"))
    assert masked == [8] * 8
    assert unmasked == [28, 24, 20, 16, 12, 8, 4, 0]


def test_causal_dkdv_steps_cover_every_query_row():
    """The count rounds up as the non-causal count does: at N = 1000 (8 programs) program p's 8 diagonal steps of
    16 rows and its unmasked steps of 32 rows reach row 999; the unmasked steps are ceil((1000 - 128(p+1)) / 32) =
    28, 24, 20, 16, 12, 8, 4, 0 (112), not the floor's 27, 23, 19, 15, 11, 7, 3, 0 (105), which leaves rows 992 to
    999 without dK/dV work. (`plans` refuses the length; the count is checked on the launch builder itself.)"""
    m1, n1 = TUT_BWD[0], TUT_BWD[1]
    n = 1000
    masked, unmasked = _dkdv_steps(AttentionCase("bwd", 4, 32, 32, 64, n, True, "fp16"))
    assert unmasked == [28, 24, 20, 16, 12, 8, 4, 0]
    for p, (mk, um) in enumerate(zip(masked, unmasked, strict=True)):
        assert p * n1 + mk * (m1 // TUT_SLICE) + um * m1 >= n


def test_plans_reason_matches_predict(calibration):
    """`plans` itself returns the refusal (a string), as the registry's other refusals do, and it is `predict`'s
    reason for the same call."""
    case, gpu = AttentionCase("bwd", 4, 32, 32, 64, 1000, True, "fp16"), load_gpu("h100-sxm5")
    found = plans(TUTORIAL, case, gpu)
    assert isinstance(found, str) and "N_CTX % 128 == 0" in found
    assert predict(TUTORIAL, case, gpu, calibration.family_params(family_of(TUTORIAL))).reason == found
