"""Duplex's ablation ladder, Duplex -> +PE -> +PE+ET, one change a step (auditor s47-11; pim.md §2.3: "+ET:
expert tensor parallelism within a node, so more experts sit per device; expert parallelism is used across
nodes"). The paper's plain Duplex, like Duplex+PE, holds whole experts on each device of a node (expert
parallelism within the node); only +ET cuts every expert across the node's ranks. The `duplex` preset (blocked)
cuts every expert by TP, so it is Duplex+ET, and `pe_over_duplex_mean` compares +PE without ET against ET.

Expected values are built from the rule itself: with whole experts a rank runs its round-robin share of the
layer's experts (`tokens_per_expert` under uniform routing), each at the model's full ffn_dim, as one grouped MoE op
on the unit its Op/B places it on; the layer waits for the slowest rank (as +PE without ET,
`coprocessing._experts_split`).

Both tests are strict xfails: the blocked schedule's MoE cost is `system_model.dense_phase_costs` (every MoE op
of the TP shard, every expert at ffn_dim / TP), and `expert_tp` is refused on a blocked schedule
(`system_spec.SCHEDULE_KEYS`, `system_checks.EXPERT_KEYS`); the rule belongs in system_model.py, which another
helper held at s47.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.coprocessing import experts_op, tokens_per_expert
from archsim.systems.models import system_model
from archsim.systems.system_model import cost_in_order, dense_ops, layer_phases, placed_device
from archsim.systems.system_spec import load_system, with_fields

MIXTRAL = library.load_workload_spec("mixtral-8x7b")
BLOCKED = ("the blocked schedule cuts every expert by TP (system_model.dense_phase_costs) and refuses expert_tp; "
           "whole experts for plain Duplex need the rule in system_model.py, held by another helper at s47")


def _whole_expert_moe_s(model, tokens: int) -> float:
    """The slowest TP rank's whole experts, each rank's as one grouped op on the unit the placement gives it."""
    params, ranks = model.workload.params, model.parallelism.tp
    counts = tokens_per_expert(tokens, int(params["top_k"]), int(model.shard.params["experts"]), 0.0)
    slowest = 0.0
    for rank in range(ranks):
        mine = [n for i, n in enumerate(counts) if i % ranks == rank and n > 0]
        if mine:
            op = experts_op(model.shard_key, len(mine), sum(mine), int(params["ffn_dim"]))
            slowest = max(slowest, placed_device(model, op).cost([op]).time_s)
    return slowest


def test_plain_duplex_preset_holds_whole_experts_as_duplex_pe() -> None:
    """The ladder's first step adds +PE alone: duplex and duplex-pe place experts alike (whole experts per rank),
    duplex-pe-et cuts them (+ET)."""
    ladder = {name: load_system(name).schedule.expert_tp for name in ("duplex", "duplex-pe", "duplex-pe-et")}
    assert ladder == {"duplex": False, "duplex-pe": False, "duplex-pe-et": True}


def test_plain_duplex_layer_runs_each_ranks_whole_experts() -> None:
    """Mixtral-8x7B at TP 4, 4 decodes of 1K: 8 routed pairs over the 5 experts they reach (2, 2, 2, 1, 1), dealt
    round-robin, so ranks 0-2 run two or one whole expert; the layer's ops after the attention are the non-MoE
    ones plus the slowest rank's experts, not every expert at ffn_dim / 4."""
    model = system_model(load_system("duplex"), MIXTRAL)
    contexts = [1024] * 4
    _, post_ops = dense_ops(model, len(contexts), ())
    rest_s = cost_in_order(model, [op for op in post_ops if op.name != "moe"], 1.0).time_s
    expected = rest_s + _whole_expert_moe_s(model, len(contexts))
    assert layer_phases(model, contexts).post[0].time_s == pytest.approx(expected, rel=1e-9)


def test_archsim_check_accepts_expert_tp_false_on_a_blocked_schedule(tmp_path) -> None:
    """`expert_tp` is a blocked schedule's key too (whole experts per TP rank): `archsim check` accepts it."""
    spec = tmp_path / "blocked.yaml"
    spec.write_text("base: duplex\nname: blocked-whole\nschedule: {kind: blocked, expert_tp: false}\n")
    result = subprocess.run([sys.executable, "-m", "archsim", "check", str(spec)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_whole_experts_that_do_not_divide_over_the_tp_ranks_are_refused() -> None:
    """Mixtral's 8 experts over 16 TP ranks under the blocked schedule leave ranks without a whole expert: a
    SpecError (exit 2 from the CLI) naming schedule.expert_tp."""
    system = with_fields(load_system("duplex"), {"parallelism": {"tp": 16, "pp": 1}, "devices.xpu.count": 16})
    with pytest.raises(SpecError, match=r"schedule.expert_tp.*divisor"):
        system_model(system, MIXTRAL)
