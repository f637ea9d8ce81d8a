"""A layer's prompts on a GPU device with FlashAttention-2 run as one varlen call (flash_attn_varlen_func), as vLLM
runs them: one launch, every prompt's CTAs in one grid (`archsim.model.gpu_kernels.predict_varlen`). Kernels
without a varlen path (PyTorch eager attention) keep one call per prompt."""

from __future__ import annotations

import random

import pytest

from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.library import load_workload_spec
from archsim.model.gpu import AttentionCase, cta_overhead_s, ctas_per_sm, step_time_s
from archsim.model.gpu_kernels import has_varlen, predict, predict_varlen, varlen_plans
from archsim.systems.gpu_device import calibrated_gpu_device
from archsim.systems.models import system_model
from archsim.systems.system_model import device_of
from archsim.systems.system_spec import load_system

FA2 = "FlashAttention-2"
# Llama-3-8B on vllm-h100 (TP 4): 8 query heads and 2 KV heads per GPU, head_dim 128, fp16 words
HEADS, KV_HEADS, HEAD_DIM = 8, 2, 128
ROUNDING = 1e-12  # relative: one schedule's end summed in another order


@pytest.fixture(scope="module")
def model():
    return system_model(load_system("vllm-h100"), load_workload_spec("llama3-8b"))


def _device(model):
    return device_of(model, model.attention("prefill", 1))


def _prompt(model, seqlen: int):
    return model.attention("prefill", seqlen)


def _case(batch: int, seqlen: int) -> AttentionCase:
    return AttentionCase("fwd", batch, HEADS, KV_HEADS, HEAD_DIM, seqlen, True, "fp16")


def _fa2():
    return load_gpu("h100-sxm5"), load_calibration().family_params("fa2")


def test_the_vllm_preset_runs_a_kernel_with_a_varlen_path_and_eager_attention_has_none(model) -> None:
    assert _device(model).kernel == FA2 and has_varlen(FA2) and has_varlen("FlashAttention-2 (causal)")
    assert not has_varlen("PyTorch eager attention") and not has_varlen("archsim FlashAttention-2 (Triton)")
    gpu, _ = _fa2()
    assert "no varlen path" in varlen_plans("PyTorch eager attention", _case(1, 8), [4, 4], gpu)


@pytest.mark.parametrize("seqlen", [1, 16, 100, 256, 4096])
def test_one_prompt_costs_exactly_its_own_call(model, seqlen: int) -> None:
    """Expected: today's price of a lone prompt, the kernel's batch-1 call (`predict`), bit for bit; the varlen
    call of one prompt is that call too."""
    gpu, params = _fa2()
    alone = predict(FA2, _case(1, seqlen), gpu, params).time_s
    assert _device(model).cost([_prompt(model, seqlen)]).time_s == alone
    assert predict_varlen(FA2, _case(1, seqlen), [seqlen], gpu, params).time_s == alone


def test_256_one_token_prompts_cost_one_launch_and_their_ctas(model) -> None:
    """Hand schedule: 256 prompts x 8 heads = 2048 CTAs of one masked 128 x 64 tile each. A CTA's 224 accumulator
    words per thread (128 x 128 + 1.5 x 128 x 64 over 128 threads) + 32 cap at 255 registers, 130560 B: 2 CTAs per
    SM of the H100's 256 KB, 264 slots on 132 SMs: ceil(2048 / 264) = 8 waves of equal CTAs, so the call is
    launch_s + 8 x T(2), T(2) = a CTA's overhead + one tile step with 2 CTAs sharing the SM. Before, each prompt was
    a call of its own: 256 launches (1.02 ms of launch_s alone) and 256 x T(1)."""
    gpu, params = _fa2()
    case = _case(1, 256)
    (plan,) = varlen_plans(FA2, case, [1] * 256, gpu)
    (launch,) = plan.launches
    assert launch.ctas == 2048 and ctas_per_sm(launch, gpu) == 2
    masked = launch.segments[1]
    assert launch.segments[0].counts.sum() == 0 and (masked.counts == 1).all()
    cta_s = (cta_overhead_s(launch, gpu, params["cta_overhead_cycles"])
             + step_time_s(masked.tile, launch, gpu, params["mma_efficiency_fwd"], 2))
    expected_s = params["launch_s"] + 8 * cta_s
    assert predict_varlen(FA2, case, [1] * 256, gpu, params).time_s == pytest.approx(expected_s, rel=1e-12)
    device_s = _device(model).cost([_prompt(model, 1)] * 256).time_s
    assert device_s == pytest.approx(expected_s, rel=1e-12)
    per_prompt_s = 256 * predict(FA2, _case(1, 1), gpu, params).time_s
    assert device_s < 0.1 * 256 * params["launch_s"] and device_s < 0.03 * per_prompt_s


@pytest.mark.parametrize(("prompts", "seqlen"), [(2, 1), (5, 100), (16, 16), (3, 256), (4, 1000), (64, 4)])
def test_equal_prompts_cost_the_batched_call(model, prompts: int, seqlen: int) -> None:
    """Expected: k prompts of length L are the kernel's batch-k call (`AttentionCase` batch k): the same CTAs in
    the same order and the same bytes."""
    gpu, params = _fa2()
    batched_s = predict(FA2, _case(prompts, seqlen), gpu, params).time_s
    varlen = predict_varlen(FA2, _case(1, prompts * seqlen), [seqlen] * prompts, gpu, params)
    assert varlen.time_s == pytest.approx(batched_s, rel=1e-9)
    assert _device(model).cost([_prompt(model, seqlen)] * prompts).time_s == pytest.approx(batched_s, rel=1e-9)


def test_the_varlen_call_moves_the_prompts_dram_bytes() -> None:
    """Expected: each prompt's Q, K, V, O and log-sum-exp once, as its own call moves them, summed."""
    gpu, params = _fa2()
    seqlens = [1, 300, 77, 2048]
    varlen = predict_varlen(FA2, _case(1, sum(seqlens)), seqlens, gpu, params)
    alone = sum(predict(FA2, _case(1, n), gpu, params).total("dram_bytes") for n in seqlens)
    assert varlen.total("dram_bytes") == alone


@pytest.mark.parametrize(("preset", "heads", "kv_heads"), [("h100-sxm5", 8, 2), ("a100-80gb-sxm4", 16, 16),
                                                           ("h20", 64, 8)])
def test_adding_a_prompt_never_lowers_the_time(preset: str, heads: int, kv_heads: int) -> None:
    """Appending a prompt adds its CTAs (in each head, after the earlier prompts') and its bytes: the call never
    gets faster. It may take no longer, its CTAs filling slots that idle while the last ones run: equal then up to
    the rounding of the sums (`ROUNDING`)."""
    gpu, params = load_gpu(preset), load_calibration().family_params("fa2")
    rng = random.Random(7)
    for _ in range(12):
        seqlens, before_s = [], 0.0
        for _ in range(10):
            seqlens.append(rng.choice([1, 2, 7, 16, 64, 100, 128, 129, 300, 513, 1024, 4000]))
            case = AttentionCase("fwd", 1, heads, kv_heads, 128, sum(seqlens), True, "fp16")
            time_s = predict_varlen(FA2, case, seqlens, gpu, params).time_s
            assert time_s >= before_s * (1 - ROUNDING), seqlens
            before_s = time_s


def test_adding_a_prompt_never_lowers_a_device_call(model) -> None:
    device, rng = _device(model), random.Random(3)
    prompts, before_s = [], 0.0
    for _ in range(40):
        prompts.append(_prompt(model, rng.choice([1, 3, 16, 50, 128, 200, 1000])))
        time_s = device.cost(prompts).time_s
        assert time_s >= before_s * (1 - ROUNDING)
        before_s = time_s


def test_eager_attention_keeps_one_call_per_prompt(model) -> None:
    """Expected: without a varlen path each prompt is its own call: k prompts cost k times one."""
    eager = calibrated_gpu_device(load_gpu("h100-sxm5"))
    one_s = eager.cost([_prompt(model, 16)]).time_s
    assert eager.cost([_prompt(model, 16)] * 16).time_s == pytest.approx(16 * one_s, rel=1e-12)


def test_lengths_that_are_not_the_packed_case_are_refused() -> None:
    gpu, params = _fa2()
    for seqlens, case in (([4, 4], _case(1, 9)), ([4, 0, 5], _case(1, 9)), ([], _case(1, 9)),
                          ([9], _case(2, 9))):
        with pytest.raises(SpecError, match="seqlens"):
            predict_varlen(FA2, case, seqlens, gpu, params)
