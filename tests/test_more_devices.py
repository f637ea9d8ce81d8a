"""The Logic-PIM and architecture device kinds (archsim/systems: logic_pim_device, architecture_device) inside a
system spec running Mixtral-8x7B.

Expected values: the Logic-PIM is Duplex's stack (../shared/reference/pim.md §2.2, §5): 2 x 32 x 512 MACs at 650 MHz
= 21.3 TFLOPS and 4 x 670.4 GB/s = 2.68 TB/s internal bandwidth per stack, 16 GiB; five stacks per device as
Duplex's H100 (§2.4). An op costs max(FLOPs / peak, bytes / internal bandwidth) (Duplex's simulator, §2.5).
Mixtral-8x7B at TP4: 32 / 4 = 8 query heads, 8 / 4 = 2 KV heads of 128, hidden 4096, 32 layers, 8 experts top-2.
The architecture device's numbers are the analytical model's Result for the same sizes, run independently here.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import yaml
from test_system_ops import placed_ops

from archsim import library
from archsim.arch.logic_pim import LogicPIMSpec
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.point import prepare
from archsim.systems.devices import device_models
from archsim.systems.iteration import Batch
from archsim.systems.logic_pim_device import LogicPimDevice
from archsim.systems.models import system_model
from archsim.systems.step import KV_CACHE, Step, layer_op, lm_head_op
from archsim.systems.system_spec import load_system
from archsim.systems.system_types import OP_KINDS

STACK_FLOPS_PER_S = 2 * 32 * 512 * 650e6  # pim.md §2.2
# pim.md §5, less the time the HBM refreshes: tRFC 260 of tREFI 3900 cycles (pim.md §1.2)
STACK_BYTES_PER_S = 4 * 670.4e9 * (1 - 260 / 3900)
STACKS = 5  # pim.md §2.4: a Duplex device's five HBM3 stacks
PJ_PER_FLOP = 0.4  # the test's own value: the reference gives none
NPU_AND_HBM = {"npu": {"kind": "npu", "count": 4}, "hbm": {"kind": "bank-pim", "count": 4, "row_buffers": 2}}
MIXTRAL_TP4 = {"batch": 1, "seq_len": 512, "hidden": 4096, "heads": 8, "kv_heads": 2, "head_dim": 128,
               "word_bytes": 2}  # one prompt of 512 tokens, one TP rank's heads


def write_system(tmp_path, devices: dict, placement: list) -> str:
    path = tmp_path / "sys.yaml"
    path.write_text(yaml.safe_dump({
        "name": "test", "source": "a test", "devices": {**NPU_AND_HBM, **devices},
        "parallelism": {"tp": 4, "pp": 1}, "placement": [*placement, {"op": list(OP_KINDS), "device": "npu"}],
        "schedule": {"kind": "blocked"}}))
    return str(path)


def roofline_s(flops: float, moved_bytes: float) -> float:
    return max(flops / (STACKS * STACK_FLOPS_PER_S), moved_bytes / (STACKS * STACK_BYTES_PER_S))


@pytest.fixture(scope="module")
def duplex(tmp_path_factory):
    """Duplex's idea: decode attention and low-Op/B MoE on the Logic-PIM, the rest on the NPU."""
    path = write_system(tmp_path_factory.mktemp("duplex"),
                        {"lp": {"kind": "logic-pim", "count": STACKS, "pj_per_flop": PJ_PER_FLOP}},
                        [{"op": "attention", "phase": "decode", "device": "lp"},
                         {"op": "moe", "op_per_byte_below": 32, "device": "lp"}])
    return system_model(load_system(path), library.load_workload_spec("mixtral-8x7b"))


def test_logic_pim_cost_is_the_roofline_of_each_op(duplex) -> None:
    """Each op on the Logic-PIM: max(FLOPs / 5 stacks' peak, (weights + KV + activations) / 5 stacks' bandwidth
    less refresh), energy FLOPs x pJ/FLOP + bytes x 8 x 3.29 pJ/bit, busy = FLOPs / peak."""
    lp = duplex.devices["lp"]
    assert lp.capacity_bytes == STACKS * 16 * 2**30
    batch = Batch(decode_context_tokens=(300, 700))
    on_lp = [op for op, device in placed_ops(duplex, batch) if device == "lp"]
    assert sorted(op.name for op in on_lp) == ["attention", "attention", "moe"]
    for op in on_lp:
        cost = lp.cost([op])
        roles = op.bytes_by_role
        moved = roles["weights"] + roles[KV_CACHE] + roles["activations_in"] + roles["activations_out"]
        assert cost.time_s == pytest.approx(roofline_s(op.flops, moved), rel=1e-12)
        assert cost.memory_s == pytest.approx(moved / (STACKS * STACK_BYTES_PER_S), rel=1e-12)
        assert cost.busy_s == {"lp": pytest.approx(op.flops / (STACKS * STACK_FLOPS_PER_S), rel=1e-12)}
        assert cost.energy_j == pytest.approx((op.flops * PJ_PER_FLOP + moved * 8 * 3.29) * 1e-12, rel=1e-12)
    for op in on_lp[:2]:  # decode attention reads K and V of its context: 2 x 2 KV heads x context x 128 x 2 B
        context = op.binding.params["seq_len"]
        assert op.bytes_by_role[KV_CACHE] == 2 * 2 * context * 128 * 2
        assert op.bytes_by_role[KV_CACHE] / (STACKS * STACK_BYTES_PER_S) > op.flops / (STACKS * STACK_FLOPS_PER_S)


def test_a_blocked_iteration_adds_the_logic_pim_rooflines_to_the_npu_ops(duplex) -> None:
    """Blocked schedule, no tp link: an iteration is 32 layers x the sum of each op's cost on its device, then the
    LM head of its two sequences on the NPU (the device holding the weights)."""
    batch = Batch(decode_context_tokens=(300, 700))
    lp, npu = duplex.devices["lp"], duplex.devices["npu"]
    layer_s = 0.0
    for op, device in placed_ops(duplex, batch):
        if device == "lp":
            layer_s += roofline_s(op.flops, op.bytes)  # Op.bytes: every tensor but the intermediates
        else:
            layer_s += npu.cost([op]).time_s
    head = npu.cost([lm_head_op(duplex.workload, 2, duplex.parallelism.tp)])
    assert duplex.iteration(batch).time_s == pytest.approx(32 * layer_s + head.time_s, rel=1e-12)
    assert duplex.iteration(batch).busy_s["lp"] == pytest.approx(
        32 * sum(lp.cost([op]).busy_s["lp"] for op, d in placed_ops(duplex, batch) if d == "lp"), rel=1e-12)


def test_streamed_fraction_scales_only_the_weights() -> None:
    """Half the MoE weights still in the die's buffers: the byte time loses half the weight bytes."""
    device = LogicPimDevice("lp", LogicPIMSpec(pj_per_flop=PJ_PER_FLOP), STACKS)
    op = layer_op(library.load_workload_spec("mixtral-8x7b"), Step("decode", 8, 100), "llama", "moe")
    roles = op.bytes_by_role
    moved = roles["weights"] / 2 + roles["activations_in"] + roles["activations_out"] + roles[KV_CACHE]
    assert device.cost([op], 0.5).memory_s == pytest.approx(moved / (STACKS * STACK_BYTES_PER_S), rel=1e-12)


# ---- ArchitectureDevice -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fusemax_qkv(tmp_path_factory):
    """A FuseMax array with the library's QKV-projection mapping (linear-qkv-fusemax maps qkv-projection), placed
    on the prefill QKV projection."""
    path = write_system(tmp_path_factory.mktemp("fx"),
                        {"fx": {"kind": "architecture", "count": 1, "preset": "fusemax",
                                "mapping": "linear-qkv-fusemax"}},
                        [{"op": "qkv", "phase": "prefill", "device": "fx"}])
    return load_system(path)


def test_architecture_device_is_the_analytical_model_at_the_ops_sizes(fusemax_qkv) -> None:
    fx = device_models(fusemax_qkv)["fx"]
    assert fx.capacity_bytes == math.inf  # FuseMax's DRAM has no capacity in its spec: unbounded
    mixtral = library.load_workload_spec("mixtral-8x7b")
    shard = replace(mixtral, params={**mixtral.params, "heads": 8, "kv_heads": 2})  # TP4's heads, as MIXTRAL_TP4
    op = layer_op(shard, Step("prefill", 1, 512), "llama", "qkv")
    point = prepare("linear-qkv-fusemax", arch="fusemax", cascade="qkv-projection", sets=MIXTRAL_TP4)
    expected = evaluate(point.binding, point.analysis, point.arch, point.mapping)
    assert expected.feasible
    cost = fx.cost([op])
    assert cost.time_s == expected.latency_s
    assert cost.energy_j == pytest.approx(expected.energy_pj * 1e-12, rel=1e-12)
    assert cost.memory_s == expected.memory_s["DRAM"]
    assert cost.busy_s == {f"fx_{unit}": u * expected.latency_s for unit, u in expected.utilization.items()}
    assert fx.cost([op, op]).time_s == pytest.approx(2 * expected.latency_s, rel=1e-12)


def test_an_op_of_another_cascade_is_refused_naming_the_mapping(tmp_path) -> None:
    path = write_system(tmp_path, {"fx": {"kind": "architecture", "count": 1, "preset": "fusemax",
                                          "mapping": "linear-qkv-fusemax"}},
                        [{"op": "out_proj", "device": "fx"}])
    model = system_model(load_system(path), library.load_workload_spec("mixtral-8x7b"))
    with pytest.raises(SpecError) as error:
        model.iteration(Batch(decode_context_tokens=(300,)))
    assert (error.value.source, error.value.where) == (path, "devices.fx.mapping")
    assert error.value.message == ("maps qkv-projection; the placement puts out_proj (output-projection) on it")


def test_an_op_that_does_not_fit_is_refused_with_the_results_reason(fusemax_qkv) -> None:
    """A 65536-wide model: a 256-row block of X alone is 256 x 65536 x 2 B = 32 MiB, over FuseMax's 16 MiB global
    buffer however the weight is tiled (the mapping tiles a weight over the buffer along its heads)."""
    mixtral = library.load_workload_spec("mixtral-8x7b")
    wide = replace(mixtral, params={**mixtral.params, "hidden": 65536})
    op = layer_op(wide, Step("prefill", 1, 512), "llama", "qkv")
    with pytest.raises(SpecError) as error:
        device_models(fusemax_qkv)["fx"].cost([op])
    assert (error.value.source, error.value.where) == (fusemax_qkv.source, "devices.fx")
    assert "GlobalBuffer" in error.value.message and "over its capacity" in error.value.message


def test_the_systems_token_binding_is_refused_by_the_library_linear_mapping(fusemax_qkv) -> None:
    """An iteration binds the dense ops to batch = new tokens, seq_len = 1, and linear-qkv-fusemax spreads 256
    rows of P (seq_len) over the array: a SpecError naming the device's mapping and the rank, not a crash."""
    model = system_model(fusemax_qkv, library.load_workload_spec("mixtral-8x7b"))
    with pytest.raises(SpecError) as error:
        model.iteration(Batch(prefill_tokens=(512,)))
    assert (error.value.source, error.value.where) == (fusemax_qkv.source, "devices.fx.mapping")
    assert "rank P" in error.value.message


def test_a_prompt_the_tiles_do_not_divide_runs_padded_on_an_architecture(tmp_path) -> None:
    """Serving draws any prompt length; FuseMax's GQA mapping tiles 256 keys by 256 queries, so a 15-token prompt's
    attention was refused mid-run (M=15 is not divisible by M0=256). It now runs as the array pads it: at 256."""
    path = write_system(tmp_path, {"fx": {"kind": "architecture", "count": 1, "preset": "fusemax",
                                          "mapping": "fusemax-gqa"}},
                        [{"op": "attention", "phase": "prefill", "device": "fx"}])
    fx = device_models(load_system(path))["fx"]
    llama = library.load_workload_spec("llama3-8b")
    ops = {n: layer_op(llama, Step("prefill", 1, n), "llama", "attention") for n in (15, 256, 300, 512)}
    assert fx.cost([ops[15]]) == fx.cost([ops[256]])
    assert fx.cost([ops[300]]) == fx.cost([ops[512]]) != fx.cost([ops[256]])
    qkv = layer_op(llama, Step("prefill", 1, 15), "llama", "qkv")  # a dense op is never padded
    with pytest.raises(SpecError, match="maps attention-1pass-causal-gqa"):
        fx.cost([qkv])
