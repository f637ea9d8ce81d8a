"""Audit s51 (helper F): an attention pool runs decode attention only, whatever its kind; a device's price counts
as many of it as the model runs (a Logic-PIM's `count` stacks per xPU); an error on a key a derived spec inherits
says it came from the base and how to drop it; outside attention offloading a memory pool is refused by its kind
before any rule placing ops on it; a `faster` rule on offloaded decode attention is told why in its own words."""

from __future__ import annotations

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system
from archsim.systems.system_types import OP_KINDS

DENSE = list(OP_KINDS)  # the catch-all rule of every preset: attn_norm .. ffn_residual


def write(tmp_path, name: str, data: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **data}, sort_keys=False))
    return str(path)


# ---- 1. the attention pool runs decode attention only -----------------------------------------------------------

@pytest.mark.parametrize(("base", "pool", "rules", "bad"), [
    # AttAcc's chip pool given the residuals: they ran on the PIM timed free of the link and of the pool (18.95 ->
    # 18.06 ms for llama-65b at 64 decodes)
    ("attacc", "pim", [{"op": "attention", "device": "pim"},
                       {"op": ["attn_residual", "ffn_residual"], "device": "pim"}], 0),
    ("lamina-tpu-v6e", "memory", [{"op": "attention", "phase": "decode", "device": "memory"},
                                  {"op": ["attn_residual", "ffn_residual"], "device": "memory"}], 1),
    # no phase: a 2,000-token prefill ran its attention on the TPU pool, which offload.py says runs on the compute
    # devices (221.50 -> 214.36 ms)
    ("lamina-tpu-v6e", "memory", [{"op": "attention", "device": "memory"}], 0),
])
def test_a_chip_pool_given_other_than_decode_attention_is_refused(tmp_path, base, pool, rules, bad) -> None:
    compute = "gpu" if base == "attacc" else "compute"
    path = write(tmp_path, "pool-ops", {"base": base, "placement": [*rules, {"op": DENSE, "device": compute}]})
    result = CliRunner().invoke(main, ["check", path])
    assert result.exit_code == 2, result.output
    one_line_error(result, path, f"placement[{bad}]:", f"on chip {pool}, the attention pool", "runs decode attention "
                   "only (op: attention, phase: decode)")


def test_a_memory_pool_given_prefill_attention_is_refused_by_the_same_rule(tmp_path) -> None:
    path = write(tmp_path, "h20-prefill", {"base": "lamina", "placement": [{"op": "attention", "device": "memory"},
                                                                           {"op": DENSE, "device": "compute"}]})
    with pytest.raises(SpecError) as error:
        load_system(path)
    assert error.value.where == "placement[0]"
    assert "on memory-pool memory, the attention pool, which runs decode attention only" in error.value.message


@pytest.mark.parametrize("name", ["attacc", "lamina", "lamina-tpu-v6e"])
def test_the_offloading_presets_still_load(name) -> None:
    assert load_system(name).placement[0].ops == ("attention",)


# ---- 2. a device's price counts the devices the model runs ------------------------------------------------------

H100_PER_HOUR = 11.06  # Lamina's Google Cloud H100 rate (pim.md §3.2), a price the audit gave duplex's xPU
STACK_PER_HOUR = 1.0  # the audit's price of one Logic-PIM stack


@pytest.mark.parametrize(("stacks", "per_hour"), [(5, 64.24), (10, 84.24)])
def test_a_logic_pims_price_is_per_stack(tmp_path, stacks, per_hour) -> None:
    """The spec's docstring: `count` is a Logic-PIM's stacks per xPU, `price_per_hour` what one such device (a
    stack) costs. Mixtral on duplex runs tp 4: 4 x (11.06 + stacks x 1.0) = $64.24/h with 5 stacks, $84.24/h with
    10; both were $48.24/h, one stack's price per xPU."""
    path = write(tmp_path, "priced", {"base": "duplex", "devices": {
        "xpu": {"price_per_hour": H100_PER_HOUR}, "lp": {"count": stacks, "price_per_hour": STACK_PER_HOUR}}})
    model = system_model(load_system(path), library.load_workload_spec("mixtral-8x7b"))
    assert model.parallelism.tp == 4
    assert model.price_per_hour == pytest.approx(4 * (H100_PER_HOUR + stacks * STACK_PER_HOUR), rel=1e-12)
    assert model.price_per_hour == pytest.approx(per_hour, rel=1e-12)


def test_a_bank_pims_price_is_one_pim_hbm_per_npu(tmp_path) -> None:
    """NeuPIMs: `count` 4 NPUs and 4 PIM HBMs (one per NPU, whatever its 32 channels); gpt3-7b at tp 4 runs 4 of
    each: 4 x (2.0 + 1.0) = $12/h, the channels not counted."""
    path = write(tmp_path, "priced", {"base": "neupims", "devices": {"npu": {"price_per_hour": 2.0},
                                                                     "pim": {"price_per_hour": 1.0}}})
    model = system_model(load_system(path), library.load_workload_spec("gpt3-7b"))
    assert model.price_per_hour == pytest.approx(4 * (2.0 + 1.0), rel=1e-12)


def test_a_chip_beside_the_weight_holder_of_another_count_is_refused(tmp_path) -> None:
    """A chip beside duplex-gpu's 8 H100s, of count 1, would be charged a rank's price at each of the ranks (as a
    lone auxiliary GPU had been, test_node_make_up_s45): each rank holds one device of every kind but a Logic-PIM."""
    chip = {"kind": "chip", "count": 1, "preset": "tpu-v6e", "matmul_efficiency": 0.5, "memory_efficiency": 0.7,
            "price_per_hour": 2.70}
    path = write(tmp_path, "aux-chip", {"base": "duplex-gpu", "devices": {"tpu": chip},
                                        "placement": [{"op": "attn_residual", "device": "tpu"},
                                                      {"op": DENSE, "device": "gpu"}]})
    with pytest.raises(SpecError) as error:
        load_system(path)
    assert error.value.where == "devices.tpu.count"
    assert error.value.message.startswith("expected 8, devices.gpu.count: each rank holds one device of every kind")


# ---- 3. an error on a key inherited from the base says so -------------------------------------------------------

def test_an_unknown_key_inherited_from_the_base_names_the_base_and_how_to_drop_it(tmp_path) -> None:
    """neupims' schedule gives min_batch (and sub_batches, only_when_faster, resident_weight_bytes); a derived spec
    setting kind blocked keeps them, as a mapping merges key by key: the error named only the derived file."""
    path = write(tmp_path, "pim-norm", {"base": "neupims", "schedule": {"kind": "blocked"}})
    result = CliRunner().invoke(main, ["check", path])
    assert result.exit_code == 2, result.output
    one_line_error(result, path, "schedule.min_batch: unknown key (expected one of kind, attention_sync",
                   "it comes from base neupims, not this file", "remove it here with `min_batch: null` under schedule",
                   "the base's schedule also gives only_when_faster, resident_weight_bytes, sub_batches")


def test_dropping_the_inherited_keys_with_null_loads(tmp_path) -> None:
    path = write(tmp_path, "neupims-blocked", {"base": "neupims", "schedule": {
        "kind": "blocked", "sub_batches": None, "min_batch": None, "only_when_faster": None,
        "resident_weight_bytes": None}})
    assert dict(load_system(path).data["schedule"]) == {"kind": "blocked"}


def test_an_inherited_value_refused_by_the_derived_specs_change_names_the_base(tmp_path) -> None:
    """lamina's compute GPUs made a memory pool: its placement, inherited whole, puts every op on a pool, which runs
    decode attention only; the error says the list came from the base and is replaced by writing it here."""
    path = write(tmp_path, "mp", {"base": "lamina", "devices": {"compute": {"kind": "memory-pool"}}})
    with pytest.raises(SpecError) as error:
        load_system(path)
    assert error.value.where == "placement[1]"
    assert "on memory-pool compute, the attention pool, which runs decode attention only" in error.value.message
    assert "it comes from base lamina, not this file: give placement here to replace the base's" in \
        error.value.message


def test_an_error_on_a_key_the_derived_spec_writes_has_no_note(tmp_path) -> None:
    path = write(tmp_path, "typo", {"base": "neupims", "schedule": {"kind": "sub-batch-interleaving", "sub_batch": 2}})
    with pytest.raises(SpecError) as error:
        load_system(path)
    assert error.value.where == "schedule.sub_batch"
    assert "base" not in error.value.message


# ---- 4. outside attention offloading a memory pool is refused by its kind first ---------------------------------

NEEDS_OFFLOADING = ("a memory-pool holds the KV cache and runs decode attention under attention offloading, which "
                    "needs a ping-pong or staggered schedule; this one is blocked")


@pytest.mark.parametrize("ops", [["attention", "qkv"], "attention"])
def test_a_memory_pool_outside_offloading_is_refused_by_its_kind_whatever_its_rule(tmp_path, ops) -> None:
    """The reviewer's t8.py: a gpu system (blocked) given an H20 memory pool running decode attention and qkv had
    been told placement[0] (the pool runs decode attention only); the rule fixed to decode attention alone, it was
    then told the pool's kind is refused outside offloading, the error it meets either way. Both say the kind."""
    pool = {"kind": "memory-pool", "count": 4, "preset": "h20", "attention_kernel": "Flash-Decoding (16-row tiles)"}
    path = write(tmp_path, "pool-blocked", {"base": "gpu", "devices": {"memory": pool}, "placement": [
        {"op": ops, "phase": "decode", "device": "memory"}, {"op": DENSE, "device": "gpu"}]})
    with pytest.raises(SpecError) as error:
        load_system(path)
    assert error.value.where == "devices.memory.kind"
    assert error.value.message.startswith(NEEDS_OFFLOADING)


def test_a_presets_gpus_made_a_memory_pool_are_refused_by_their_kind(tmp_path) -> None:
    """vllm-h100 (blocked) with its GPUs made a memory pool: the kind is the error, with why (offloading alone reads
    a memory pool), not the inherited placement that puts every op on it."""
    path = write(tmp_path, "mp", {"base": "vllm-h100", "devices": {"gpu": {"kind": "memory-pool"}}})
    with pytest.raises(SpecError) as error:
        load_system(path)
    assert error.value.where == "devices.gpu.kind"
    assert error.value.message.startswith(NEEDS_OFFLOADING) and "use kind gpu, or offload attention" in \
        error.value.message


def test_a_faster_rule_on_offloaded_decode_attention_is_refused_in_its_own_words(tmp_path) -> None:
    """lamina's decode-attention rule given `op_per_byte_below: faster`: the pool is chosen once per model
    (`_check_pool_rules`), so the per-op comparison `faster` asks for is never made; the error had said "the Op/B of
    each request's attention is not read", which is a threshold's reason, not this rule's."""
    rules = [{"op": "attention", "phase": "decode", "device": "memory", "op_per_byte_below": "faster"},
             {"op": DENSE, "device": "compute"}]
    path = write(tmp_path, "pool-faster", {"base": "lamina", "placement": rules})
    with pytest.raises(SpecError) as error:
        load_system(path)
    assert error.value.where == "placement[0].op_per_byte_below"
    message = error.value.message
    assert "once per model, not per op" in message and "Op/B" not in message, message
    assert "its time on memory is not compared with its time on compute, which holds the weights" in message
    assert message.endswith("remove `op_per_byte_below: faster`")
