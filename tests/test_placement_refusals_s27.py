"""Placement rules the systems layer does not model are refused, naming the system file and the rule, instead of
being accepted and partly ignored (the audit's repro specs in /tmp/s27/a-place/s, rebuilt inline).

Before, `archsim check` accepted each of them:
- decode attention on a second gpu device under a blocked schedule (pool1.yaml: vllm-h100 + one H20; pool4.yaml
  with four gave the same results: the H20's count, memory and the q/k/v/out traffic were never read);
- a third device under ping-pong (lam4.yaml: lamina + g2 running ffn and out_proj by Op/B), timed on the replica's
  line but left out of its energy, price, static power and busy time (the offload model knows two pools);
- +PE with moe placed on the Logic-PIM at every Op/B (pe_lp.yaml), splitting the experts between lp and itself;
- every prefill op but attn_residual on 24 GB RTX 4090s (disagg2.yaml), their 35.3 GB of llama3-70b weights per
  device never checked (the one-engine check only asks that some device runs both phases);
- a rule shadowed by an earlier one (dead1.yaml: a catch-all first; dead3.yaml: a device named only by such a rule,
  charged over the iteration though it runs nothing).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.errors import SpecError
from archsim.library import load_workload_spec
from archsim.systems.models import system_model
from archsim.systems.system_checks import check_system
from archsim.systems.system_spec import load_system, system_from_dict, system_names

EVERY_OP = ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe", "ffn_residual"]
H20 = {"kind": "gpu", "preset": "h20", "attention_kernel": "FlashAttention-2"}


def refused(data: dict, where: str, *words: str) -> str:
    """Load `data` as x.yaml and return the refusal's text, which must name x.yaml and the field `where`."""
    with pytest.raises(SpecError) as error:
        system_from_dict(data, "x.yaml")
    message = str(error.value)
    assert message.startswith(f"x.yaml: {where}: "), message
    for word in words:
        assert word in message, message
    return message


def cli_refuses(tmp_path: Path, data: dict, where: str, *command: str) -> None:
    """`archsim <command> x.yaml ...` exits 2 with one line naming the file and the field."""
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    run = CliRunner().invoke(main, [arg.replace("FILE", str(path)) for arg in command])
    assert run.exit_code == 2, run.output
    message = run.stderr.strip()
    assert message.startswith(f"error: {path}: {where}: ") and "\n" not in message, message


def pool(count: int) -> dict:
    """pool1.yaml (count 1) and pool4.yaml (count 4): decode attention on an H20 gpu beside vllm-h100's H100s."""
    return {"base": "vllm-h100", "name": f"pool{count}", "devices": {"h20": {**H20, "count": count}},
            "placement": [{"op": "attention", "phase": "decode", "device": "h20"}, {"op": EVERY_OP, "device": "gpu"}]}


@pytest.mark.parametrize("count", [1, 4])
def test_decode_attention_on_a_second_gpu_outside_offloading_is_refused(count: int, tmp_path: Path) -> None:
    """Outside ping-pong/staggered decode attention runs on the weight holder's KV cache (or a bank-pim/logic-pim in
    its HBM); pool1 and pool4 simulated alike, so the H20's count was not read."""
    refused(pool(count), "placement[0].device", "h20 (gpu)", "blocked", "expected gpu")
    cli_refuses(tmp_path, pool(count), "placement[0].device", "check", "FILE")


def test_decode_attention_on_a_logic_pim_or_the_holder_stays_accepted() -> None:
    """The same rule naming the weight holder itself, or duplex's Logic-PIM (its stacks are the xPU's HBM), is
    modelled: accepted."""
    system_from_dict({**pool(1), "devices": {}, "placement": [
        {"op": "attention", "phase": "decode", "device": "gpu"}, {"op": EVERY_OP, "device": "gpu"}]}, "x.yaml")
    system_from_dict({"base": "duplex", "name": "lp-always", "placement": [
        {"op": "attention", "phase": "decode", "device": "lp"}, {"op": EVERY_OP, "device": "xpu"}]}, "x.yaml")


LAM4 = {"base": "lamina", "name": "lam4",
        "devices": {"g2": {"kind": "gpu", "count": 2, "preset": "a100-80gb-sxm4"}},
        "placement": [{"op": "attention", "phase": "decode", "device": "memory"},
                      {"op": ["ffn", "out_proj"], "op_per_byte_below": 64, "device": "g2"},
                      {"op": EVERY_OP, "device": "compute"}]}


def test_a_third_device_under_attention_offloading_is_refused(tmp_path: Path) -> None:
    """Offloading models the compute pool and the memory pool alone (`OffloadModel.pools`)."""
    refused(LAM4, "placement[1].device", "ping-pong", "two pools", "expected compute or memory, got g2")
    cli_refuses(tmp_path, LAM4, "placement[1].device", "check", "FILE")
    staggered = {**LAM4, "devices": {**LAM4["devices"], "compute": {"count": 4}},
                 "schedule": {"kind": "staggered", "micro_batches": 3}}
    refused(staggered, "placement[1].device", "staggered", "got g2")


PE_LP = {"base": "duplex-pe", "name": "pe_lp",
         "placement": [{"op": "attention", "phase": "decode", "op_per_byte_below": 31.8, "device": "lp"},
                       {"op": "moe", "device": "lp"},
                       {"op": EVERY_OP, "device": "xpu"}]}


def test_expert_coprocessing_with_moe_on_the_logic_pim_is_refused(tmp_path: Path) -> None:
    """+PE takes the xPU as the device decode moe goes to at every Op/B: the Logic-PIM here, sharing with itself."""
    refused(PE_LP, "placement[1].device", "expert_coprocessing", "logic-pim lp")
    cli_refuses(tmp_path, PE_LP, "placement[1].device", "check", "FILE")
    # without +PE the same placement is an ordinary one (moe always on the Logic-PIM)
    blocked = {**PE_LP, "schedule": {"kind": "co-processing", "expert_coprocessing": False, "expert_tp": None}}
    system_from_dict(blocked, "x.yaml")


DISAGG2 = {"base": "duplex-gpu", "name": "disagg2",
           "devices": {"gpu2": {"kind": "gpu", "count": 8, "preset": "rtx-4090",
                                "attention_kernel": "FlashAttention-2"}},
           "placement": [{"op": [op for op in EVERY_OP if op != "attn_residual"], "phase": "prefill",
                          "device": "gpu2"},
                         {"op": EVERY_OP, "device": "gpu"}]}
PARTIAL = {"base": "duplex-gpu", "name": "partial",
           "devices": {"gpu2": {"kind": "gpu", "count": 8, "preset": "rtx-4090"}},
           "placement": [{"op": "attention", "device": "gpu"},
                         {"op": [op for op in EVERY_OP if op != "attention"], "phase": "prefill", "device": "gpu2"},
                         {"op": [op for op in EVERY_OP if op != "attention"], "phase": "decode", "device": "gpu"}]}


@pytest.mark.parametrize(("data", "where"), [(DISAGG2, "placement[0].device"), (PARTIAL, "placement[1].device")])
def test_weight_reading_ops_on_a_device_besides_the_holder_are_refused(data: dict, where: str,
                                                                       tmp_path: Path) -> None:
    """llama3-70b at TP4 puts 141 GB / 4 = 35.3 GB of weights on each device, more than a 24 GB RTX 4090; the spec
    alone passes (which ops read weights is the workload's), the model refuses it, naming the rule."""
    system = system_from_dict(data, "x.yaml")
    with pytest.raises(SpecError, match=rf"^x\.yaml: {re.escape(where)}: can put attn_norm in prefill on gpu2, "
                                        r".* which gpu holds"):
        system_model(system, load_workload_spec("llama3-70b"))
    cli_refuses(tmp_path, data, where, "simulate", "-s", "FILE", "-w", "llama3-70b", "--rate", "1",
                "--requests", "2")


DEAD1 = {"base": "duplex", "name": "dead1",
         "placement": [{"op": EVERY_OP, "device": "xpu"},
                       {"op": "attention", "phase": "decode", "op_per_byte_below": 31.8, "device": "lp"}]}
DEAD2 = {"base": "duplex", "name": "dead2",
         "placement": [{"op": "attention", "phase": "decode", "op_per_byte_below": 31.8, "device": "lp"},
                       {"op": "attention", "phase": "decode", "op_per_byte_below": 10, "device": "xpu"},
                       {"op": EVERY_OP, "device": "xpu"}]}
DEAD3 = {"base": "duplex-gpu", "name": "dead3",
         "devices": {"g2": {"kind": "gpu", "count": 8, "preset": "a100-80gb-sxm4"}},
         "placement": [{"op": EVERY_OP, "device": "gpu"}, {"op": "ffn", "device": "g2"}]}


@pytest.mark.parametrize(("data", "covers"), [(DEAD1, "below Op/B 31.8"), (DEAD2, "below Op/B 10"),
                                              (DEAD3, "at every Op/B")])
def test_a_rule_no_op_reaches_first_is_refused(data: dict, covers: str, tmp_path: Path) -> None:
    """A rule every (op, phase) of which an earlier rule takes at each Op/B it covers is never read; dead3's g2,
    named by it alone, would run nothing and still be charged."""
    refused(data, "placement[1]", "never matched first", "(placement[0])", covers)
    cli_refuses(tmp_path, data, "placement[1]", "check", "FILE")


def test_every_preset_passes_and_builds_with_its_workloads() -> None:
    """No shipped preset is refused: each loads (`check_system`) and builds with every workload of its
    `by_workload` (llama3-70b where it has none; the context-parallel preset's ranks hold 1/8 of it)."""
    for name in system_names():
        system = load_system(name)
        check_system(system)
        for workload in system.parallelism.by_workload or ("llama3-70b",):
            assert system_model(system, load_workload_spec(workload)), (name, workload)


def test_a_moe_threshold_under_expert_coprocessing_is_refused_as_unread() -> None:
    """+PE splits each MoE op's experts by its own search: a moe rule's op_per_byte_below (31.8, 1000 or 0.001 gave
    the same results) is not read, so it is refused, naming it; the presets carry no such rule."""
    data = {"base": "duplex-pe", "name": "pe-moe",
            "placement": [{"op": "attention", "phase": "decode", "op_per_byte_below": 31.8, "device": "lp"},
                          {"op": "moe", "op_per_byte_below": 1000, "device": "lp"},
                          {"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn",
                                  "moe", "ffn_residual"], "device": "xpu"}]}
    with pytest.raises(SpecError, match=r"placement\[1\]\.op_per_byte_below: not read for moe under "
                                        r"expert_coprocessing"):
        system_from_dict(data, "pe-moe.yaml")
