"""A varlen call's FLOPs are its prompts' own (audit s48): `predict_varlen(...).flops` had been the packed
sequence's, an attention across prompts, k times too large for k equal prompts (FA2 on an H100, four 4096-token
prompts: 1292 TFLOP/s, above the 989 peak). The serving GPU device's busy time is the same count."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.library import load_workload_spec
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import family_of, predict_varlen
from archsim.systems.models import system_model
from archsim.systems.system_model import device_of
from archsim.systems.system_spec import load_system

FA2 = "FlashAttention-2"


def _packed(seqlens: list[int], causal: bool) -> AttentionCase:
    return AttentionCase("fwd", 1, 32, 8, 128, sum(seqlens), causal, "bf16")


def _varlen(seqlens: list[int], causal: bool):
    gpu = load_gpu("h100-sxm5")
    params = load_calibration().family_params(family_of(FA2))
    return predict_varlen(FA2, _packed(seqlens, causal), seqlens, gpu, params), gpu


@pytest.mark.parametrize("causal", [True, False])
def test_k_equal_prompts_are_k_prompts_flops(causal: bool) -> None:
    result, gpu = _varlen([4096] * 4, causal)
    one = replace(_packed([4096], causal), seqlen=4096).flops()
    assert result.feasible
    assert result.flops == pytest.approx(4 * one, rel=1e-12)
    assert result.flops / result.time_s <= gpu.tensor_peak_flops_per_s("bf16")


@pytest.mark.parametrize("causal", [True, False])
def test_unequal_prompts_are_their_flops_summed(causal: bool) -> None:
    seqlens = [1, 300, 77, 2048, 4096]
    result, gpu = _varlen(seqlens, causal)
    assert result.feasible
    assert result.flops == pytest.approx(sum(_packed([n], causal).flops() for n in seqlens), rel=1e-12)
    assert result.flops / result.time_s <= gpu.tensor_peak_flops_per_s("bf16")


def test_one_prompt_is_the_packed_case() -> None:
    result, _ = _varlen([3000], True)
    assert result.flops == _packed([3000], True).flops()


def test_device_busy_time_is_the_varlen_results_flops_at_peak() -> None:
    """The serving device's tensor-core time of a layer's prompts (vllm-h100: FA2, Llama-3-8B at TP 4, 8 query and
    2 KV heads per GPU, fp16) is the varlen call's FLOPs at the fp16 peak."""
    model = system_model(load_system("vllm-h100"), load_workload_spec("llama3-8b"))
    seqlens = [1, 300, 77, 2048]
    prompts = [model.attention("prefill", n) for n in seqlens]
    cost = device_of(model, prompts[0]).cost(prompts)
    gpu, params = load_gpu("h100-sxm5"), load_calibration().family_params("fa2")
    case = AttentionCase("fwd", 1, 8, 2, 128, sum(seqlens), True, "fp16")
    result = predict_varlen(FA2, case, seqlens, gpu, params)
    assert sum(cost.busy_s.values()) == pytest.approx(result.flops / gpu.tensor_peak_flops_per_s("fp16"), rel=1e-12)
