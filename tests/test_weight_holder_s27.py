"""The device that holds the weights is the one the rules give the decode QKV projection at any Op/B (audit
helper-245): a rule sending a small batch's projections to duplex's Logic-PIM had made the Logic-PIM the holder,
so the xPU's memory share was not read, the TP group was bounded by the Logic-PIM's five stacks and the LM head ran
on it (1.26 ms against 0.19 ms on the xPU at 256 sequences)."""

from __future__ import annotations

from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.system_spec import system_from_dict

ALL = ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe", "ffn_residual"]
GEMMS_ON_LP = [{"op": "attention", "phase": "decode", "op_per_byte_below": 31.8, "device": "lp"},
               {"op": ["qkv", "out_proj", "ffn", "moe"], "op_per_byte_below": 31.8, "device": "lp"},
               {"op": ALL, "device": "xpu"}]


def _duplex(**changes):
    return system_from_dict({"base": "duplex", "name": "dx", **changes}, "dx.yaml")


def test_the_holder_is_the_xpu_whatever_a_small_batch_runs_on() -> None:
    plain, gemms = (neupims.system(_duplex(**c), "llama3-70b") for c in ({}, {"placement": GEMMS_ON_LP}))
    assert gemms.weight_device.name == plain.weight_device.name == "xpu"
    share = {"devices": {"xpu": {"memory_utilization": 0.6}}}
    kv = [neupims.system(_duplex(**share, **c), "llama3-70b").kv_capacity_bytes
          for c in ({}, {"placement": GEMMS_ON_LP})]
    assert kv[0] == kv[1]  # had been 62.9 against 202.5 GB: the share unread
    batch = Batch((), (1000,) * 256)
    head, xpu_head = gemms.lm_head_cost(256), plain.lm_head_cost(256)
    assert head.time_s == xpu_head.time_s and head.busy_s == xpu_head.busy_s  # on the xPU
    assert gemms.iteration(batch).time_s > 0


def test_a_tp_group_of_eight_xpus_is_not_bounded_by_the_stacks() -> None:
    """glam-143b runs at TP 8 on duplex; with the projections' rule it had been refused: devices.lp.count 5."""
    assert neupims.system(_duplex(placement=GEMMS_ON_LP), "glam-143b").parallelism.tp == 8
