"""Findings of the invariance audit (helper-243), each failing before its fix: a batch's requests in another order,
or a device renamed, must cost the same."""

from __future__ import annotations

import itertools

import pytest

from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.system_spec import system_from_dict

ANY_PHASE_RULES = [  # duplex with its Op/B rules for every phase, so a short prompt's attention goes to the Logic-PIM
    {"op": "attention", "op_per_byte_below": 31.8, "device": "lp"},
    {"op": "moe", "op_per_byte_below": 31.8, "device": "lp"},
    {"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe", "ffn_residual"],
     "device": "xpu"}]


def test_prompt_attention_split_by_op_per_byte_does_not_depend_on_prompt_order() -> None:
    """Llama3-70B's prefill attention is 8.3 Op/B at 16 tokens (the Logic-PIM's) and 1,793 at 4,000 (the xPU's):
    the consecutive prompts' attention had been one call on the first prompt's device (297.3 against 271.0 ms, the
    4,000-token prompt on the Logic-PIM)."""
    model = neupims.system(system_from_dict({"base": "duplex", "name": "dx-any-phase", "placement": ANY_PHASE_RULES},
                                            "dx-any-phase.yaml"), "llama3-70b")
    first, last = (model.iteration(Batch(p, (1000,))) for p in ((16, 4000), (4000, 16)))
    assert first.time_s == last.time_s and first.energy_j == last.energy_j and first.busy_s == last.busy_s
    assert first.busy_s["lp"] < 1e-4  # the long prompt's attention stays off the Logic-PIM (it had taken 49.7 ms)


def test_sub_batch_interleaving_splits_prompts_by_tokens_not_position() -> None:
    """NeuPIMs' SBI had dealt prompts to the sub-batches by position: [1000, 10, 1000, 10] beside four decodes took
    34.6 ms, [1000, 1000, 10, 10] 31.6 ms."""
    model = neupims.system("neupims", "gpt3-7b", {"schedule.min_batch": 2, "schedule.only_when_faster": False})
    costs = {p: model.iteration(Batch(p, (500, 600, 700, 800)))
             for p in set(itertools.permutations((1000, 1000, 10, 10)))}
    assert len({(c.time_s, c.energy_j, tuple(sorted(c.busy_s.items()))) for c in costs.values()}) == 1


def test_a_bank_pim_named_hbm_keeps_its_busy_time_apart() -> None:
    """The NPU reported its HBM transfers under the bare key hbm, so a bank-PIM named hbm (npu-only's name for its
    stacks) merged into it: utilization 1.023."""
    renamed = neupims.system(system_from_dict({"base": "neupims", "name": "neupims-hbm",
                                               "devices": {"pim": None, "hbm": {"kind": "bank-pim", "count": 4,
                                                                                "row_buffers": 2,
                                                                                "channel_policy": "greedy"}},
                                               "placement": [{"op": "attention", "phase": "decode",
                                                              "device": "hbm"},
                                                             {"op": ["attn_norm", "qkv", "attention", "out_proj",
                                                                     "attn_residual", "ffn_norm", "ffn", "moe",
                                                                     "ffn_residual"], "device": "npu"}]},
                                              "neupims-hbm.yaml"), "gpt3-7b", channel_check=False)
    plain = neupims.system("neupims", "gpt3-7b", channel_check=False)  # 300 x 1000 tokens overfill a channel
    batch = Batch((), (1000,) * 300)
    a, b = plain.iteration(batch), renamed.iteration(batch)
    assert a.time_s == b.time_s and a.busy_s["pim"] == b.busy_s["hbm"]
    assert b.busy_s["npu_hbm"] == a.busy_s["npu_hbm"] <= b.time_s
    assert all(busy <= b.time_s for busy in b.busy_s.values())


@pytest.mark.parametrize("system", ["neupims", "duplex", "vllm-h100"])
def test_decodes_in_any_order_cost_the_same(system: str) -> None:
    """And prompts in any order on NeuPIMs; a GPU's FlashAttention-2 varlen call takes its prompts in the batch's
    order (`gpu_device`), which moves duplex and vllm-h100 by 0.03 % here. (npu+pim's round-robin channels deal the
    decodes by position: README.)"""
    model = neupims.system(system, "gpt3-7b" if system == "neupims" else "llama3-70b")
    prompts, decodes = (2000, 16, 700), (100, 3000, 900, 40)
    orders = itertools.permutations(prompts) if system == "neupims" else (prompts,)
    costs = {model.iteration(Batch(p, d)).time_s for p in orders for d in itertools.permutations(decodes)}
    assert len(costs) == 1
