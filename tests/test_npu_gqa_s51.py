"""Independent GEMMs on the NeuPIMs NPU's eight 128x128 arrays (`archsim.systems.npu`, `archsim.systems.npu_device`).

An op's `count` GEMMs (its heads or experts, `gemms.Gemm.count`) are independent, so their folds are dealt to the
arrays as one GEMM's folds are, each array paying one fill and drain (128 + 128 - 2 = 254 cycles); GEMMs that
depend on each other (logits, softmax, attend; an FFN's up and down projections) still pay one each. A decode
call's K/V products (grouped-query attention: a KV head's group of query rows against its K and V) are independent
across the call's requests too: each Einsum's folds over every request are dealt to the arrays beside the call's
K/V stream and vector work, time = max(arrays, vector units, HBM), the rule by which MHA's one-row GEMVs already
ran on the vector units. Before, each (request, KV head) product ran alone on one array, paying its fill and drain,
and GQA decode attention was latency bound (Llama-3-8B, batch 64, 128 tokens: 98.1 us against 8.8 us of K/V).

Hand derivations: Llama-3-8B at TP 4 has 8 query heads over 2 KV heads of 128 per device (groups of 4); GPT-3 7B
8 heads of 128. One fold is 128 x 128 weights; with rows <= 128 an array issues a fold every 128 cycles (the
preload sets the pace), so F folds dealt to 8 arrays take ceil(F / 8) x 128 + 254 cycles at 1 GHz.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.arch.pim import PIMSpec
from archsim.systems import npu as npu_model
from archsim.systems.models import system_model
from archsim.systems.npu import NPUSpec
from archsim.systems.npu_device import NpuDevice
from archsim.systems.step import Step, layer_op
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import load_system

NPU = NpuDevice("npu", NPUSpec(), PIMSpec())
FILL_DRAIN = 128 + 128 - 2
BLOCK = {"gpt3-7b": "gpt", "llama3-8b": "llama"}


def op_of(name: str, step: Step, op: str, tp: int = 4):
    workload = library.load_workload_spec(name)
    params = dict(workload.params)
    for key in ("heads", "kv_heads"):
        params[key] = params[key] // tp
    return layer_op(replace(workload, params=params), step, BLOCK[name], op)


def test_independent_gemms_deal_their_folds_to_the_arrays() -> None:
    """16 one-fold GEMMs of 4 rows: 2 folds an array, 2 x 128 + 254 = 510 cycles (alone, one after another on one
    array, they had taken 16 x 382); 8 take one fold an array, as one GEMM (382). Their weights stream 16 times."""
    bandwidth = 1e12
    one = npu_model.gemm_time(NPUSpec(), 4, 128, 128, bandwidth)
    sixteen = npu_model.gemm_time(NPUSpec(), 4, 128, 128, bandwidth, count=16)
    assert one.array_s * 1e9 == pytest.approx(128 + FILL_DRAIN)
    assert npu_model.gemm_time(NPUSpec(), 4, 128, 128, bandwidth, count=8).array_s == one.array_s
    assert sixteen.array_s * 1e9 == pytest.approx(2 * 128 + FILL_DRAIN)
    assert sixteen.memory_s == pytest.approx(16 * 128 * 128 * 2 / bandwidth, rel=1e-12)
    assert sixteen.flops == 16 * 2 * 4 * 128 * 128


def test_the_artifact_timings_keep_independent_gemms_one_after_another() -> None:
    """The artifact's GEMM model runs the 8 arrays as one array streaming 8x faster, ops one at a time
    (neupims-artifact.md §1.2-§1.3): `count` GEMMs take `count` times one."""
    for timing in ("artifact", "artifact-serial-preload"):
        npu = NPUSpec(fold_timing=timing)
        one, three = (npu_model.gemm_time(npu, 300, 256, 512, 1e12, count=c) for c in (1, 3))
        assert three.time_s == pytest.approx(3 * one.time_s, rel=1e-12)
        assert three.array_s == pytest.approx(3 * one.array_s, rel=1e-12)


def test_one_gqa_decode_is_two_chained_gemms_spread_over_its_kv_heads() -> None:
    """Llama-3-8B, one request of 128 tokens: logits (2 KV heads x 4 rows x one fold) on two arrays, 128 + 254
    cycles, then the attend likewise: 764 cycles (before: the four GEMMs one after another, 4 x 382 = 1528). Its
    K/V, 2 x 2 x 128 x 128 x 2 bytes, stream in 137 ns, so the arrays' latency sets the time."""
    op = op_of("llama3-8b", Step("decode", 1, 128), "attention")
    cost = NPU.cost([op])
    assert cost.busy_s["npu_array"] * 1e9 == pytest.approx(2 * (128 + FILL_DRAIN))
    assert cost.memory_s == pytest.approx(2 * 2 * 128 * 128 * 2 / NPU.bandwidth_bytes_per_s, rel=1e-12)
    assert cost.time_s == pytest.approx(cost.busy_s["npu_array"], rel=1e-12)


def test_gqa_decode_attention_of_a_batch_is_bound_by_its_kv_stream() -> None:
    """Llama-3-8B, 64 requests of 128 tokens on npu-only (TP 4): each Einsum's 64 x 2 one-fold GEMMs dealt to the
    arrays, 16 an array: 2 x (16 x 128 + 254) = 4604 cycles, 4.6 us, under the 8.78 us of K/V (64 x 2 x 2 x 128 x
    128 x 2 bytes at 0.956 TB/s), so the layer's attention takes the K/V stream's time, as GPT-3 7B's MHA does."""
    for name in ("llama3-8b", "gpt3-7b"):
        model = system_model(load_system("npu-only"), library.load_workload_spec(name))
        phases = layer_phases(model, [128] * 64)
        device = model.devices["npu"]
        params = model.shard.params
        kv_bytes = 64 * 128 * params["kv_heads"] * params["head_dim"] * 2 * 2
        assert phases.attention_s[0] == pytest.approx(kv_bytes / device.bandwidth_bytes_per_s, rel=1e-12), name
    llama = system_model(load_system("npu-only"), library.load_workload_spec("llama3-8b"))
    busy = layer_phases(llama, [128] * 64).attention.busy_s
    assert busy["npu_array"] * 1e9 == pytest.approx(2 * (16 * 128 + FILL_DRAIN))


def test_gqa_decode_attention_long_contexts_stay_kv_bound() -> None:
    """Llama-3-8B, 64 requests of 1024 tokens: K/V 64 x 2 x 2 x 1024 x 128 x 2 bytes, 70.2 us at 0.956 TB/s, over
    the arrays' 2 x (64 x 2 x 8 folds / 8 x 128 + 254) cycles = 33.3 us."""
    model = system_model(load_system("npu-only"), library.load_workload_spec("llama3-8b"))
    phases = layer_phases(model, [1024] * 64)
    bandwidth = model.devices["npu"].bandwidth_bytes_per_s
    assert phases.attention_s[0] == pytest.approx(64 * 2 * 2 * 1024 * 128 * 2 / bandwidth, rel=1e-12)
    assert phases.attention.busy_s["npu_array"] * 1e9 == pytest.approx(2 * (128 * 128 + FILL_DRAIN))


def test_prompt_attention_spreads_its_heads_over_the_arrays() -> None:
    """GPT-3 7B at TP 4, one 100-token prompt: 8 heads, each a causal 51-row (100 x 101 / 2 / 100 rounded up) by
    one-fold GEMM, K and V on chip; the 8 heads of an Einsum run one to an array, 128 + 254 cycles, the two
    Einsums 764 (before: 16 x 382 = 6112)."""
    op = op_of("gpt3-7b", Step("prefill", 1, 100), "attention")
    cost = NPU.cost([op])
    assert cost.busy_s["npu_array"] * 1e9 == pytest.approx(2 * (128 + FILL_DRAIN))


def test_dependent_weight_gemms_each_pay_their_fill_and_drain() -> None:
    """GPT-3 7B's FFN (whole, 4096 x 16384 and back), one token: the up projection's 32 x 128 = 4096 folds, 512 an
    array, and the down projection's as many each take 512 x 128 + 254 cycles: the down projection reads the up
    projection's output, so its wavefront starts after the other's drain. One token is far below the ridge: the
    weights' stream sets the time, the GELU's vector work after it."""
    op = op_of("gpt3-7b", Step("decode", 1, 10), "ffn", tp=1)
    cost = NPU.cost([op])
    assert cost.busy_s["npu_array"] * 1e9 == pytest.approx(2 * (512 * 128 + FILL_DRAIN))
    assert math.isclose(cost.time_s, cost.memory_s + cost.busy_s["npu_vector"], rel_tol=1e-12)
