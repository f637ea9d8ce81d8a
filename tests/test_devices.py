"""The systems layer's GEMM shapes, devices and system-model checks (archsim/systems: gemms, npu_device,
pim_device, gpu_device, devices, system_model). Expected shapes are the closed forms of the cascades in einsum/
for the library workloads' sizes (Llama3-70B: hidden 8192, 64 heads, 8 KV heads, head_dim 128, ffn_dim 28672;
GPT-3 7B: hidden 4096, 32 heads, head_dim 128; Mixtral-8x7B: 8 experts, top-2)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.arch.pim import PIMSpec
from archsim.errors import SpecError
from archsim.systems import pim as pim_model
from archsim.systems.collectives import all_reduce_s
from archsim.systems.devices import device_models
from archsim.systems.gemms import op_gemms
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.npu import NPUSpec, vector_time_s
from archsim.systems.npu_device import NpuDevice
from archsim.systems.pim_device import BankPimDevice
from archsim.systems.step import Step, layer_op
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import load_system, system_from_dict, with_fields

BLOCK = {"gpt3-7b": "gpt", "llama3-70b": "llama", "mixtral-8x7b": "llama"}


def op_of(name: str, step: Step, op: str, **params):
    workload = library.load_workload_spec(name)
    if params:
        workload = replace(workload, params={**workload.params, **params})
    return layer_op(workload, step, BLOCK[name], op)


# ---- gemms.op_gemms -------------------------------------------------------------------------------------------

def test_qkv_is_one_fused_gemm() -> None:
    """Q, K and V stream the same input: one GEMM, n = (heads + 2 kv_heads) x head_dim = (64 + 16) x 128."""
    (gemm,) = op_gemms(op_of("llama3-70b", Step("decode", 5, 100), "qkv"))
    assert (gemm.rows, gemm.k, gemm.n, gemm.count) == (5, 8192, (64 + 2 * 8) * 128, 1)
    assert gemm.einsums == ("Q", "K", "V") and gemm.role == "weights"
    assert gemm.stationary_bytes == 8192 * 80 * 128 * 2
    assert gemm.flops == 2 * 5 * 8192 * 80 * 128


def test_swiglu_fuses_gate_and_up() -> None:
    """W1 and W3 read the same input: one GEMM of n = 2 ffn_dim; W2 is its own GEMM, k = ffn_dim."""
    up, down = op_gemms(op_of("llama3-70b", Step("prefill", 2, 3), "ffn"))
    assert (up.rows, up.k, up.n, up.count, up.einsums) == (6, 8192, 2 * 28672, 1, ("H1", "H3"))
    assert (down.rows, down.k, down.n, down.count, down.einsums) == (6, 28672, 8192, 1, ("Y",))


def test_decode_gqa_attention_has_a_row_per_query_head_of_a_group() -> None:
    """One query token: QK^T and S·V per (request, KV head), rows = heads / kv_heads = 8 query heads."""
    qk, sv = op_gemms(op_of("llama3-70b", Step("decode", 3, 500), "attention"))
    assert (qk.rows, qk.k, qk.n, qk.count, qk.role) == (8, 128, 500, 3 * 8, "kv_cache")
    assert (sv.rows, sv.k, sv.n, sv.count, sv.role) == (8, 500, 128, 3 * 8, "kv_cache")
    assert qk.stationary_bytes == 3 * 8 * 500 * 128 * 2  # K of every request and KV head


def test_prefill_causal_attention_rows_are_halved_by_the_mask() -> None:
    """A 96-token prompt, MHA: the causal mask keeps 96 x 97 / 2 of 96 x 96 scores, so each of the 32 heads'
    products has ceil(96 x 97/192) = 49 rows of work."""
    qk, sv = op_gemms(op_of("gpt3-7b", Step("prefill", 2, 96), "attention"))
    assert (qk.rows, qk.k, qk.n, qk.count) == (math.ceil(96 * 97 / 2 / 96), 128, 96, 2 * 32)
    assert (sv.rows, sv.k, sv.n, sv.count) == (49, 96, 128, 2 * 32)
    assert qk.flops == 2 * 2 * 32 * (96 * 97 // 2) * 128


def test_moe_experts_rows_are_the_routed_share_of_tokens() -> None:
    """40 tokens, top-2 of 8 experts: each expert GEMM sees 40 x 2/8 = 10 rows; gate and up fused (experts side by
    side in n), down one GEMM per expert."""
    router, up, down = op_gemms(op_of("mixtral-8x7b", Step("decode", 40, 300), "moe"))
    assert (router.rows, router.k, router.n, router.count) == (40, 4096, 8, 1)
    assert (up.rows, up.k, up.n, up.count, up.einsums) == (40 * 2 // 8, 4096, 2 * 8 * 14336, 1, ("H1", "H3"))
    assert (down.rows, down.k, down.n, down.count) == (10, 14336, 4096, 8)


# ---- NpuDevice ------------------------------------------------------------------------------------------------

NPU = NpuDevice("npu", NPUSpec(), PIMSpec())


def test_npu_runs_an_mha_decode_gemv_on_the_vector_units() -> None:
    """MHA decode: one query row per K/V head, so no array work; every op on the vector units, K and V read from
    HBM beside them."""
    op = op_of("gpt3-7b", Step("decode", 2, 200), "attention")
    cost = NPU.cost([op])
    assert cost.busy_s["npu"] == 0 and cost.busy_s["npu_array"] == 0
    assert cost.busy_s["npu_vector"] == pytest.approx(sum(op.ops.values()) / (8 * 128 * 1e9), rel=1e-12)
    assert cost.busy_s["npu_vector"] == vector_time_s(NPU.spec, sum(op.ops.values()))
    kv = op.bytes_by_role["kv_cache"]
    assert kv == 2 * 2 * 32 * 200 * 128 * 2
    assert cost.memory_s == pytest.approx(kv / NPU.bandwidth_bytes_per_s, rel=1e-12)
    assert cost.time_s == max(cost.busy_s["npu_vector"], cost.memory_s)


def test_npu_streams_weights_at_the_hbm_bandwidth() -> None:
    """One decode token through GPT-3 7B's output projection: 4096 x 4096 FP16 weights (32 MiB) streamed at the
    HBM's external bandwidth; the arrays need only ceil(1024 folds / 8) x 128 + 254 cycles (16.6 us), so the GEMM
    takes the stream's time."""
    op = op_of("gpt3-7b", Step("decode", 1, 10), "out_proj")
    cost = NPU.cost([op])
    stream_s = 4096 * 4096 * 2 / NPU.bandwidth_bytes_per_s
    assert cost.memory_s == pytest.approx(stream_s, rel=1e-12)
    assert cost.busy_s["npu_array"] == pytest.approx((128 * 128 + 254) / 1e9, rel=1e-12)
    assert cost.time_s == pytest.approx(stream_s, rel=1e-12) and stream_s > cost.busy_s["npu_array"]
    half = NPU.cost([op], streamed_fraction=0.5)
    assert half.memory_s == pytest.approx(stream_s / 2, rel=1e-12)
    norm = op_of("gpt3-7b", Step("decode", 1, 10), "ffn_norm")  # a gain and a bias outside any GEMM, halved too
    assert NPU.cost([norm], 0.5).memory_s == pytest.approx(NPU.cost([norm]).memory_s / 2, rel=1e-12)


# ---- BankPimDevice --------------------------------------------------------------------------------------------

def pim_device(policy: str, channels: int = 32) -> BankPimDevice:
    return BankPimDevice("pim", PIMSpec(channels=channels), policy, NPUSpec(), "sys.yaml")


def test_pim_gqa_is_heads_over_kv_heads_passes_of_the_mha_sequence() -> None:
    """Llama3-70B decode: 64 query heads over 8 KV heads cost 8 passes of the 8-head MHA command sequence."""
    pim = pim_device("greedy")
    gqa = [op_of("llama3-70b", Step("decode", 1, c), "attention") for c in (300, 1200)]
    mha = [op_of("llama3-70b", Step("decode", 1, c), "attention", heads=8) for c in (300, 1200)]
    assert mha[0].binding.params["heads"] == mha[0].binding.params["kv_heads"] == 8
    gqa_s, mha_s = pim.placement(gqa).request_s, pim.placement(mha).request_s
    assert list(gqa_s) == pytest.approx(list(8 * mha_s), rel=1e-12)
    assert list(mha_s) == pytest.approx([sum(pim_model.gemv_parts_cycles(pim.spec, c, 8, 128)) / 1e9
                                         for c in (300, 1200)])


def test_pim_round_robin_versus_greedy() -> None:
    """Contexts 1000, 10, 1000, 10 on 2 channels: round-robin pins both long ones to channel 0; greedy (longest
    first onto the least-loaded channel) puts one long and one short request on each."""
    ops = [op_of("gpt3-7b", Step("decode", 1, c), "attention") for c in (1000, 10, 1000, 10)]
    rr, greedy = pim_device("rr", 2), pim_device("greedy", 2)
    assert list(rr.placement(ops).channel) == [0, 1, 0, 1]
    assert sorted(greedy.placement(ops).channel[[0, 2]]) == [0, 1]
    request_s = rr.placement(ops).request_s
    assert rr.cost(ops).time_s == pytest.approx(request_s[0] + request_s[2], rel=1e-12)
    assert greedy.cost(ops).time_s == pytest.approx(request_s[0] + request_s[1], rel=1e-12)
    assert rr.cost(ops).energy_j == greedy.cost(ops).energy_j  # the same MACs wherever they run


def test_pim_refuses_ops_other_than_decode_gqa_attention() -> None:
    pim = pim_device("rr")
    for op in (op_of("gpt3-7b", Step("prefill", 1, 16), "attention"), op_of("gpt3-7b", Step("decode", 1, 16), "qkv")):
        with pytest.raises(SpecError) as error:
            pim.cost([op])
        assert (error.value.source, error.value.where) == ("sys.yaml", "devices.pim")
        assert op.cascade in error.value.message


# ---- GpuDevice ------------------------------------------------------------------------------------------------

def test_gpu_charges_one_elementwise_launch_per_gemm_free_op() -> None:
    """A residual add or a norm is one kernel: a DRAM pass over its inputs and output at the calibrated DRAM
    efficiency, plus one launch."""
    gpu = device_models(load_system("gpu"))["gpu"]
    step = Step("decode", 16, 100)
    for name in ("attn_residual", "attn_norm"):
        op = op_of("llama3-70b", step, name)
        assert op_gemms(op) == ()
        dram_s = op.bytes / (gpu.spec.dram_bytes_per_s * gpu.params["hbm_efficiency"])
        assert gpu.cost([op]).time_s == pytest.approx(dram_s + gpu.params["launch_s"], rel=1e-12)
        assert gpu.cost([op, op]).time_s == pytest.approx(2 * gpu.cost([op]).time_s, rel=1e-12)


# ---- devices.device_models and system_model errors -------------------------------------------------------------

def test_an_npu_without_a_bank_pim_is_refused_naming_the_device() -> None:
    data = dict(load_system("neupims").data)
    data["devices"] = {"npu": data["devices"]["npu"]}
    data["placement"] = [{"op": list(data["placement"][1]["op"]), "device": "npu"}]
    data["schedule"] = {"kind": "blocked"}
    with pytest.raises(SpecError) as error:
        system_from_dict(data, "mine.yaml")  # refused as the spec loads (`system_checks.companion`), as by check
    assert (error.value.source, error.value.where) == ("mine.yaml", "devices.npu")
    assert "bank-pim" in error.value.message


def test_every_placed_device_gets_its_kinds_cost_model() -> None:
    """A device the placement uses is built with its kind's model (a Logic-PIM here); one it does not use is not."""
    system = with_fields(load_system("neupims"), {
        "devices.lp": {"kind": "logic-pim", "count": 4, "pj_per_flop": 0.5},
        "placement": [{"op": "ffn", "device": "lp"}, *load_system("neupims").data["placement"]]})
    models = device_models(system)
    assert {name: model.kind for name, model in models.items()} == {"npu": "npu", "pim": "bank-pim",
                                                                     "lp": "logic-pim"}
    assert "hbm" not in device_models(load_system("npu-only"))


def test_a_workload_without_a_block_is_refused() -> None:
    workload = replace(library.load_workload_spec("gpt3-7b"), block=None)
    with pytest.raises(SpecError) as error:
        system_model(load_system("neupims"), workload)
    assert (error.value.source, error.value.where) == (workload.path, "block")


def test_weights_that_do_not_fit_are_refused_naming_the_parallelism() -> None:
    """Llama3-70B at TP4 PP1: 141 GB of FP16 weights / 4 = 35 GB per device, more than a 32 GiB PIM HBM less its
    512 MiB activation buffer (33.8 GB)."""
    system = with_fields(load_system("neupims"), {"parallelism.by_workload.llama3-70b.pp": 1})
    with pytest.raises(SpecError) as error:
        system_model(system, library.load_workload_spec("llama3-70b"))
    assert (error.value.source, error.value.where) == (system.source, "parallelism.by_workload.llama3-70b")


def test_ping_pong_without_an_attention_pool_is_refused_naming_what_is_missing() -> None:
    """Ping-pong is attention offloading (archsim.systems.offload): NeuPIMs' spec has no link to a memory pool."""
    system = load_system("neupims")
    with pytest.raises(SpecError) as error:
        with_fields(system, {"schedule": {"kind": "ping-pong"}})
    assert (error.value.source, error.value.where) == (system.source, "links.attention")


def test_tp_all_reduce_is_charged_only_with_a_tp_link() -> None:
    """Two ring all-reduces of the new tokens' hidden activations per layer: 4 decodes x 4096 x 2 bytes over TP 4
    on NVLink 3 (3 us, 300 GB/s): 2 x 2(p-1) x (alpha + n/p / beta) each."""
    workload = library.load_workload_spec("gpt3-7b")
    plain = system_model(load_system("neupims"), workload)
    # with a tp link a TP group is one node's: GPT-3 175B's TP 8 entry no longer fits NeuPIMs' nodes of 4
    linked_system = with_fields(load_system("neupims"), {"links": {"tp": "nvlink3-a100"},
                                                         "parallelism.by_workload": {"gpt3-7b": {"tp": 4, "pp": 1}}})
    linked = system_model(linked_system, workload)
    contexts = [100, 200, 300, 400]
    assert layer_phases(plain, contexts).allreduce_s == 0
    n = 4 * 4096 * 2
    one = 2 * 3 * (3.0e-6 + n / 4 / 300.0e9)
    assert all_reduce_s(n, 4, linked_system.links["tp"], algorithm="ring") == pytest.approx(one, rel=1e-12)
    assert layer_phases(linked, contexts).allreduce_s == pytest.approx(2 * one, rel=1e-12)
    batch = Batch(decode_context_tokens=contexts)
    assert linked.iteration(batch).time_s - plain.iteration(batch).time_s == pytest.approx(32 * 2 * one, rel=1e-9)


def test_a_gpu_device_runs_one_byte_words_at_fp8():
    """A workload of 1-byte words: its GEMMs at the fp8 tensor rate where the GPU has one (H100: twice fp16, so a
    compute-bound 4K-token FFN takes about half the time) and at the fp16 rate where it has none (A100: only the
    halved bytes help). Before, every word size but 4 ran at fp16."""
    from dataclasses import replace

    from archsim.gpu.load import load_gpu
    from archsim.library import load_workload_spec
    from archsim.systems.gpu_device import calibrated_gpu_device
    from archsim.systems.step import Step, layer_ops

    llama = load_workload_spec("llama3-8b")
    fp8 = replace(llama, params={**llama.params, "word_bytes": 1})
    for gpu, low, high in (("h100-sxm5", 0.49, 0.52), ("a100-80gb-sxm4", 0.9, 1.0)):
        device = calibrated_gpu_device(load_gpu(gpu))
        ffn16, ffn8 = (next(op for op in layer_ops(w, Step("prefill", 1, 4096), "llama") if op.name == "ffn")
                       for w in (llama, fp8))
        assert low < device.cost([ffn8]).time_s / device.cost([ffn16]).time_s < high
