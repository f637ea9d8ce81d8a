"""Attention offloading without pipelining (archsim.systems.offload): a `staggered` schedule of one micro-batch runs it
on one replica, the compute devices waiting while the pool runs attention, as AttAcc's GPUs wait on its PIM
(../shared/reference/pim.md §4.1). The `attacc` preset (8 A100a at TP8 + 8 AttAcc devices, `attacc-pim`) is such a
system and `dgx-base` its GPUs alone. Its time per token is the closed form computed here from the model's parts, and
the event model (archsim.systems.offload_events) runs the same time."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import lamina_reproduce as lamina
from archsim.systems.chip import load_chip
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel
from archsim.systems.offload_events import model_pipeline
from archsim.systems.system_messages import allreduce_s
from archsim.systems.system_spec import load_system, with_fields

GIB = 2**30
NVLINK3_BYTES_PER_S, NVLINK3_LATENCY_S = 300e9, 3e-6  # the nvlink3-a100 preset, the attacc preset's attention link


def _attacc(workload: str, **fields) -> OffloadModel:
    return system_model(with_fields(load_system("attacc"), fields), library.load_workload_spec(workload))


def test_the_presets_load_with_the_references_numbers() -> None:
    """pim.md §4.1: an AttAcc device is 5 HBM3 stacks of 16 GB at 670.4 GB/s x 9 (bank-level PIM, power-limited),
    Op/B 1 (a bank's 16 FP16 multipliers take a 256-bit column: 32 FLOPs per 32 bytes); the A100a has 3.352 TB/s."""
    pim = load_chip("attacc-pim")
    assert pim.memory_bytes_per_s == pytest.approx(5 * 670.4e9 * 9, rel=1e-12)
    assert pim.memory_bytes == 5 * 16 * GIB
    assert pim.matmul_flops_per_s["bf16"] == pytest.approx(pim.memory_bytes_per_s, rel=1e-12)
    a100a, a100 = load_gpu("a100a-hbm3"), load_gpu("a100-80gb-sxm4")
    assert (a100a.dram_bytes_per_s, a100a.tensor_flops_per_s["fp16"], a100a.dram_bytes) == (3.352e12, 312e12,
                                                                                             80 * GIB)
    assert (a100a.sm_count, a100a.clock_hz, a100a.power_w) == (a100.sm_count, a100.clock_hz, a100.power_w)
    base, attacc = load_system("dgx-base"), load_system("attacc")
    assert (base.devices["gpu"].count, base.parallelism.tp, base.schedule.kind) == (8, 8, "blocked")
    assert (attacc.devices["pim"].count, attacc.parallelism.attention_pool) == (8, 8)
    assert (attacc.schedule.kind, attacc.schedule.micro_batches) == ("staggered", 1)
    model = _attacc("llama-65b")
    assert (model.micro_batches, model.replicas, model.compute.parallelism.tp) == (1, 1, 8)
    assert model.kv_capacity_bytes == 8 * 5 * 16 * GIB  # the pool holds the KV cache, the GPUs the weights


@pytest.mark.parametrize("workload", ["llama-65b", "gpt3-175b"])
def test_a_token_is_the_layers_critical_path_in_turn_plus_the_head(workload: str) -> None:
    """One micro-batch on one replica: per layer norm + QKV on the GPUs, q, k and v to the pool, attention on it,
    the output back, the ops after it (with the two all-reduces), nothing overlapping; then the LM head. The
    messages: MHA, so q, k, v and the output are d = heads x head_dim words each per request, spread over 8 GPU
    NICs and 8 AttAcc NICs of NVLink 3 (min(8 x 300, 8 x 300) GB/s), each after the link's 3 us."""
    model = _attacc(workload)
    p = library.load_workload_spec(workload).params
    contexts = [1024 + 7 * i for i in range(64)]
    m = len(contexts)
    ops, costs = model.dense_costs(m)
    names = [op.name for op in ops]
    post = names[names.index("attention") + 1:]
    post_s = sum(costs[name].time_s for name in post) + allreduce_s(model.compute, m)
    d_bytes = p["heads"] * p["head_dim"] * p["word_bytes"] * m
    wire_s = (3 * d_bytes + d_bytes) / (8 * NVLINK3_BYTES_PER_S)  # q, k, v out; the output back
    layer_s = (costs["attn_norm"].time_s + costs["qkv"].time_s + model.attention_cost(contexts).time_s
               + 2 * NVLINK3_LATENCY_S + wire_s + post_s)
    expected_s = p["layers"] * layer_s + model.compute.lm_head_cost(m).time_s
    assert model.iteration(Batch((), tuple(contexts))).time_s == pytest.approx(expected_s, rel=1e-12)


@pytest.mark.parametrize("workload", ["llama-65b", "gpt3-175b"])
def test_the_event_model_runs_the_closed_forms_time(workload: str) -> None:
    model = _attacc(workload)
    contexts = [1024 + 7 * i for i in range(64)]
    closed = model.iteration(Batch((), tuple(contexts))).time_s
    assert model_pipeline(model, contexts, 4).token_s == pytest.approx(closed, rel=1e-9)


@pytest.mark.parametrize("model_name", ["llama3-70b", "llama-65b"])
@pytest.mark.parametrize("divide_and_conquer", [False, True])
@pytest.mark.parametrize("batch", [16, 300])
def test_the_agreement_grid_at_one_micro_batch(model_name: str, divide_and_conquer: bool, batch: int) -> None:
    """tests/test_lamina.py's agreement grid (Lamina at its DOP, contexts 800 + 7i) at one micro-batch on one
    replica: the event model runs the closed form's time, with divide-and-conquer too (both start the history's
    attention when q arrives; the event model started it once the k, v share was computed too, and was above)."""
    system = with_fields(lamina.lamina_system(model_name, divide_and_conquer),
                         {"schedule": {"kind": "staggered", "micro_batches": 1,
                                       "divide_and_conquer": divide_and_conquer},
                          "devices.compute.count": lamina.DOP[model_name][0]})
    model = system_model(system, library.load_workload_spec(model_name))
    assert (model.micro_batches, model.replicas) == (1, 1)
    contexts = [800 + 7 * i for i in range(batch)]
    closed = model.iteration(Batch((), tuple(contexts))).time_s
    assert model_pipeline(model, contexts, 4).token_s == pytest.approx(closed, rel=1e-9)


def test_ping_pong_and_staggered_keep_their_replicas() -> None:
    """n micro-batches on n - 1 replicas (Lamina, §3.4): the `lamina` preset's ping-pong on one, three on two."""
    workload = library.load_workload_spec("llama3-70b")
    ping_pong = system_model(load_system("lamina"), workload)
    staggered = system_model(lamina.staggered_system("llama3-70b"), workload)
    assert (ping_pong.micro_batches, ping_pong.replicas) == (2, 1)
    assert (staggered.micro_batches, staggered.replicas) == (lamina.STAGGERED_MICRO_BATCHES,
                                                             lamina.STAGGERED_MICRO_BATCHES - 1)


@pytest.mark.parametrize(("fields", "where", "words"), [
    ({"schedule.micro_batches": 0}, "schedule.micro_batches", "a positive number"),
    ({"schedule.micro_batches": 1.5}, "schedule.micro_batches", "whole number from 1"),
    # 16 GPUs at TP8 are two replicas: micro_batches 1 runs one
    ({"devices.gpu.count": 16}, "devices.gpu.count", "1 micro-batch on 1 replica"),
    ({"schedule": {"kind": "ping-pong", "micro_batches": 2}}, "schedule.micro_batches", "unknown key"),  # two
])
def test_a_mistaken_micro_batches_is_refused_naming_the_field(fields: dict, where: str, words: str) -> None:
    with pytest.raises(SpecError) as error:
        system_model(with_fields(load_system("attacc"), fields), library.load_workload_spec("llama-65b"))
    assert error.value.where == where and words in str(error.value)
