"""What a serving run leaves behind, and the batch checks its loop pays for (s40).

A system sweep's memory had grown by ~1.1-2.3 MB a point (48 NeuPIMs points: 214 MB peak RSS, 108 MB of Python
objects alive at the end): each run's model, engine and devices were held in reference cycles (a model's `by_kind`
held the model; the engine's suspended process and the engine held each other), which only a full pass of the
garbage collector frees, and `simulate_serving` freezes every object alive at a run's start, the earlier points'
garbage included. `op_gemms` kept every op it saw alive (up to 65,536). Now a finished run's model goes by
reference counting alone, and an op's GEMMs with the op, which these tests check with the collector off (an object
alive then is held by a cycle or a cache). An NPU device stays in its cost cache (`npu_device._cost`, 4,096 calls).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.gemms import op_gemms
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.npu_device import NpuDevice
from archsim.systems.requests import Request
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.step import Step, layer_op
from archsim.systems.system_spec import load_system


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cyclic garbage collector off for the test: what is then freed is freed by reference counting."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@pytest.mark.parametrize(("system", "workload"), [("neupims", "gpt3-7b"), ("duplex-pe-et", "mixtral-8x7b")])
def test_a_served_model_and_its_devices_go_with_the_last_reference(collector_off, system, workload):
    """NeuPIMs (sub-batch interleaving, NPU + bank-PIM) and Duplex with expert co-processing, 12 requests each."""
    model = system_model(load_system(system), library.load_workload_spec(workload))
    requests = [Request(i, 0.001 * i, 20 + i, 8) for i in range(12)]
    result = simulate_serving(model, requests, ServingConfig(max_batch=8))
    assert result.output_tokens == 12 * 8  # every request served
    left = [weakref.ref(model), *(weakref.ref(device) for device in model.devices.values()
                                  if not isinstance(device, NpuDevice))]  # an NPU stays in _cost's entries
    del model
    assert [ref() is None for ref in left] == [True] * len(left)


def test_an_ops_gemms_go_with_the_op(collector_off):
    """GPT-3 7B's QKV projection of a decode step of 4: one fused GEMM of the Q, K and V weights (4 rows,
    hidden 4096 in, 3 x 4096 out), remembered while the op lives and not after."""
    op = layer_op(library.load_workload_spec("gpt3-7b"), Step("decode", 4, 1), "gpt", "qkv")
    (qkv,) = op_gemms(op)
    assert (qkv.rows, qkv.k, qkv.n) == (4, 4096, 3 * 4096)
    assert op_gemms(op) is op_gemms(op)
    left = weakref.ref(op)
    del op
    assert left() is None


@pytest.mark.parametrize(("args", "field", "says"), [
    (((4, 0), ()), "prefill_tokens[1]", ">= 1"),
    (((3, True), ()), "prefill_tokens[1]", "bool"),
    (((), (7, 2.5)), "decode_context_tokens[1]", "whole number"),
    (((), [9, -1]), "decode_context_tokens[1]", ">= 1"),
    (((1,), (), True), "held_kv_tokens", "bool"),
    (((1,), (), -1), "held_kv_tokens", ">= 0"),
])
def test_the_batch_checks_by_type_refuse_as_before(args, field, says):
    """A tuple or list of ints is checked by the entries' types and least alone (the serving loop builds one per
    iteration); any other entry still gets the check naming it."""
    with pytest.raises(SpecError) as refused:
        Batch(*args)
    assert refused.value.where == field and says in refused.value.message
