"""A model mixing dense and MoE layers (GLaM-143B: `moe_every: 2`) runs each kind of layer as itself: an iteration is
the dense layers' cost plus the MoE layers', weighted by their counts, and the weights are each kind's times its
count (`archsim.systems.system_model.SystemModel.kinds`)."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import layer_kinds
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import load_system, with_fields

BATCH = Batch(prefill_tokens=(64,), decode_context_tokens=(100, 300, 500, 700))


@pytest.mark.parametrize("preset", ["duplex-gpu", "duplex"])
def test_glam_iteration_is_its_dense_and_moe_layers(preset):
    workload = library.load_workload_spec("glam-143b")
    model = system_model(load_system(preset), workload)
    kinds = layer_kinds(workload)
    pp = model.parallelism.pp
    assert model.kinds == {"dense": kinds.count("dense") / pp, "moe": kinds.count("moe") / pp}
    dense, moe = model.by_kind["dense"], model.by_kind["moe"]
    assert {op.name for op in dense.ops("decode", 8, 1)} >= {"ffn"} and "moe" not in {
        op.name for op in dense.ops("decode", 8, 1)}
    assert "moe" in {op.name for op in moe.ops("decode", 8, 1)}
    cost = model.iteration(BATCH)
    contexts, prompts = BATCH.decode_context_tokens, BATCH.prefill_tokens
    expected = sum(pp * count * layer_phases(model.by_kind[kind], list(contexts), prompts).layer_s
                   for kind, count in model.kinds.items()) + model.lm_head_cost(len(contexts) + len(prompts)).time_s
    assert cost.time_s == pytest.approx(expected, rel=1e-12)
    # a dense layer's weights are far below a MoE layer's; the device holds each kind times its count
    assert dense.weight_bytes_per_layer < moe.weight_bytes_per_layer / 10
    assert model.layer_weight_bytes_per_device == pytest.approx(
        model.kinds["dense"] * dense.weight_bytes_per_layer + model.kinds["moe"] * moe.weight_bytes_per_layer)


def test_a_model_of_one_kind_is_one_layer_kind():
    model = system_model(load_system("neupims"), library.load_workload_spec("gpt3-7b"))
    assert model.kinds == {None: 32 / 1} and model.by_kind == {None: model}


def test_sub_batch_interleaving_over_mixed_layers_is_refused():
    # NeuPIMs' SBI (a bank-PIM for decode attention) on 16 NPUs per node, which hold GLaM's weights at TP 16
    system = with_fields(load_system("neupims"), {"devices.npu.count": 16, "devices.pim.count": 16,
                                                  "parallelism": {"tp": 16, "pp": 1}})
    with pytest.raises(SpecError) as error:
        system_model(system, library.load_workload_spec("glam-143b"))
    assert error.value.where == "schedule.kind" and "moe_every" in error.value.message
