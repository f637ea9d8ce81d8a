"""Duplex places an op on the unit the model times faster (`op_per_byte_below: faster`), as its artifact does.

Expected values and where they come from:
- pim.md §2.5: the artifact (scale-snu/LLMSimulator) tries an op on each unit and keeps the fastest; duplex.yaml's
  [op/b] says the Logic-PIM takes an op while it is faster there than on the xPU. `crossover` (the peaks' Op/B,
  31.8) sent the experts to the xPU where the model still timed the Logic-PIM faster (to about 38 Op/B at the xPU's
  derated rates): Mixtral at 125 decodes of 1024 tokens, 12,298 tokens/s against 14,099 with the experts kept on
  the Logic-PIM; Qwen1.5-MoE at 480, 71,345 against 79,960 (the audit's runs, /tmp/s51audP/dx5.py).
- The busiest ranks at 125 decodes (hand count): 125 x top_k 2 = 250 routed pairs over 8 experts, 250 = 8 x 31 + 2,
  so the experts take 32, 32, 31, ... 31, dealt round-robin over 4 ranks: [[32, 31], [32, 31], [31, 31], [31, 31]];
  the busiest ranks hold 63 pairs over their two experts (31.5 each), bound as one grouped op of ceil(63 / 2) = 32
  tokens each routed to both (`expert_shares.experts_op`), Op/B 32 plus SwiGLU's elementwise FLOPs, above 31.8.
- The blocked layer's MoE on the faster unit, rank by rank, is no slower than on either unit alone, and the
  iteration's time is then continuous where the unit changes (both units' times are equal there), so one more
  request no longer drops the throughput by the step the fixed threshold made.
"""

from __future__ import annotations

import copy
import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.expert_shares import experts_op, rank_experts, tokens_per_expert
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.system_model import device_of
from archsim.systems.system_spec import load_system, system_from_dict

CROSSOVER_OP_PER_BYTE = 5 * 2 * 32 * 512 * 650e6 / 3.35e12  # duplex.yaml [op/b]: 31.8
AUDIT_POINTS = [("mixtral-8x7b", 124), ("mixtral-8x7b", 125), ("mixtral-8x7b", 150),
                ("qwen1.5-moe-a2.7b", 470), ("qwen1.5-moe-a2.7b", 480), ("qwen1.5-moe-a2.7b", 680)]


def _duplex(moe_threshold: float | str | None = None, **rule) -> object:
    """The duplex preset, its moe rule's `op_per_byte_below` replaced (or the rule replaced by `rule`)."""
    base = load_system("duplex")
    data = copy.deepcopy(dict(base.data))
    data["name"] = "duplex-moe-rule"
    if rule:
        data["placement"][1] = rule
    if moe_threshold is not None:
        data["placement"][1]["op_per_byte_below"] = moe_threshold
    return system_from_dict(data, base.source)


def _time_s(system, workload: str, decodes: int) -> float:
    model = system_model(system, library.load_workload_spec(workload))
    return model.iteration(Batch((), (1024,) * decodes)).time_s


def test_the_busiest_ranks_at_125_decodes_hold_63_pairs_bound_above_the_crossover() -> None:
    counts = tokens_per_expert(125, 2, 8, 0.0)
    assert rank_experts(counts, 4) == [[32, 31], [32, 31], [31, 31], [31, 31]]
    model = system_model(load_system("duplex"), library.load_workload_spec("mixtral-8x7b"))
    busiest = experts_op(model.shard_key, 2, 63, 14336)
    assert CROSSOVER_OP_PER_BYTE < busiest.op_per_byte < 32 * 1.01  # 32 tokens, SwiGLU's FLOPs ~1 % above
    assert device_of(model, busiest).name == "lp"  # crossover had sent it to the xPU


@pytest.mark.parametrize("workload", ["mixtral-8x7b", "qwen1.5-moe-a2.7b"])
def test_duplex_puts_each_op_its_rules_weigh_on_the_unit_timed_faster(workload: str) -> None:
    """Every rank's experts op from 96 to 720 decodes (Op/B across both the crossover and the ~38 where the units'
    times meet) and decode attention from 16 to 32K tokens: the unit it runs on times it no slower than the other."""
    model = system_model(load_system("duplex"), library.load_workload_spec(workload))
    params = model.workload.params
    experts, top_k = int(model.shard.params["experts"]), int(params["top_k"])
    ops = [experts_op(model.shard_key, len(mine), sum(mine), int(params["ffn_dim"]))
           for decodes in range(96, 721, 8)
           for mine in rank_experts(tokens_per_expert(decodes, top_k, experts, 0.0), model.parallelism.tp) if mine]
    ops += model.decode_attention([16, 128, 1024, 8192, 32768])
    units = {name: model.devices[name] for name in ("xpu", "lp")}
    placed = {device_of(model, op).name for op in ops}
    assert placed == {"xpu", "lp"} if workload == "qwen1.5-moe-a2.7b" else placed <= {"xpu", "lp"}
    for op in ops:
        times = {name: unit.cost([op]).time_s for name, unit in units.items()}
        assert times[device_of(model, op).name] == min(times.values()), (op.name, op.op_per_byte, times)


@pytest.mark.parametrize(("workload", "decodes"), AUDIT_POINTS)
def test_the_duplex_iteration_is_no_slower_than_either_unit_alone(workload: str, decodes: int) -> None:
    duplex = _time_s(load_system("duplex"), workload, decodes)
    on_lp, on_xpu = (_time_s(_duplex(threshold), workload, decodes) for threshold in (1e4, 1e-3))
    assert duplex <= min(on_lp, on_xpu) * (1 + 1e-12)


@pytest.mark.parametrize(("workload", "fewer", "more", "growth"), [("mixtral-8x7b", 124, 125, 32 / 31),
                                                                    ("qwen1.5-moe-a2.7b", 470, 480, 1.0)])
def test_one_more_request_no_longer_cuts_the_throughput(workload: str, fewer: int, more: int, growth: float) -> None:
    """Under `crossover` these steps cut tokens/s by 14.2 % (Mixtral 124 -> 125) and 10.3 % (Qwen 470 -> 480).
    What stays is the whole experts' step: at 125 Mixtral's busiest ranks' op binds 32 tokens per expert where 124
    bound 31 (the module docstring), on stacks compute-bound there, so the iteration grows by at most 32 / 31."""
    system = load_system("duplex")
    before, after = (_time_s(system, workload, decodes) for decodes in (fewer, more))
    assert after / more <= before / fewer * growth


def test_crossover_and_numbers_stay_available() -> None:
    """`crossover` still resolves to the peaks' 31.8 and sends the busiest ranks' experts at 125 decodes to the
    xPU, the step the audit found (a numeric threshold is read as given)."""
    crossing = _duplex("crossover")
    assert crossing.placement[1].op_per_byte_below == pytest.approx(CROSSOVER_OP_PER_BYTE, rel=1e-12)
    assert not crossing.placement[1].faster
    assert _duplex(20.0).placement[1].op_per_byte_below == 20.0
    model = system_model(crossing, library.load_workload_spec("mixtral-8x7b"))
    assert device_of(model, experts_op(model.shard_key, 2, 63, 14336)).name == "xpu"
    assert _time_s(crossing, "mixtral-8x7b", 125) > _time_s(load_system("duplex"), "mixtral-8x7b", 125) * 1.1


def test_the_duplex_presets_rules_are_faster_ones_and_the_xpu_holds_the_weights() -> None:
    system = load_system("duplex")
    assert [(r.ops, r.device, r.faster) for r in system.placement[:2]] == [(("attention",), "lp", True),
                                                                            (("moe",), "lp", True)]
    assert system.device_for("moe", "decode", math.inf).name == "xpu"
    assert system.device_for("qkv", "decode", math.inf).name == "xpu"


def test_faster_on_the_device_holding_the_weights_is_refused() -> None:
    with pytest.raises(SpecError, match=r"placement\[1\]\.op_per_byte_below: faster compares .*xpu"):
        _duplex(op="moe", op_per_byte_below="faster", device="xpu")


def test_a_misspelt_threshold_names_both_words() -> None:
    with pytest.raises(SpecError, match=r"placement\[1\]\.op_per_byte_below: .*crossover or faster"):
        _duplex("fastest")


def test_faster_on_moe_is_refused_under_expert_coprocessing() -> None:
    """+PE splits the experts by its own search: a moe rule's `faster`, like any threshold, would not be read."""
    base = load_system("duplex-pe")
    data = copy.deepcopy(dict(base.data))
    data["placement"].insert(1, {"op": "moe", "op_per_byte_below": "faster", "device": "lp"})
    with pytest.raises(SpecError, match=r"placement\[1\]\.op_per_byte_below: not read for moe"):
        system_from_dict(data, base.source)


def test_check_prints_a_faster_rule_as_such() -> None:
    result = CliRunner().invoke(main, ["check", "duplex"])
    assert result.exit_code == 0, result.output
    assert ("system duplex, placement[0] (attention on lp) where faster than xpu; placement[1] (moe on lp) where "
            "faster than xpu") in result.output
