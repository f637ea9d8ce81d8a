"""Duplex's blocked layer replay (`archsim.systems.schedule_events.replay_iteration`) draws each op on the track of
the device it runs on: the MoE the placement rules put on the Logic-PIM is Logic-PIM time, as the closed form's
`busy_s` charges it, not xPU time (audit s45: the replay had drawn ~3.3 ms of Logic-PIM work as xPU spans)."""

from __future__ import annotations

import pytest
from test_schedule_events import _no_overlap

from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.schedule_events import replay_iteration
from archsim.systems.system_model import layer_phases

CONTEXTS = (1064,) * 64  # the audit's trace: 64 requests of 1,000 + 64 tokens, decoding together


def test_the_logic_pims_moe_is_on_the_logic_pims_track() -> None:
    """Mixtral 8x7B on Duplex (TP 4, 32 layers on one device): 64 decodes send 64 x 2 / 8 = 16 tokens to each
    expert, timed faster on the Logic-PIM than on the xPU (duplex.yaml's `faster` rules), so `moe` runs there
    (`lp`), as does the decode attention; everything else of the layer on the xPU. A Logic-PIM is busy for all of
    its op's time (its MoE's
    busy_s['lp'] equals its time_s), so the closed form's `iteration(...).busy_s['lp']` is 32 x (the attention's
    busy_s['lp'] + the MoE's), and the replay's `lp` track, which holds the attention for `mha_s`, must be
    32 x mha_s + (busy_s['lp'] - 32 x the attention's busy_s['lp']); the xPU's track the rest of `pre` + `post`,
    32 x (pre + post) - the MoE's seconds; the TP link 32 all-reduces. One chain without contention: the replay's
    time stays the closed form's, and no track holds two spans at once."""
    model = neupims.system("duplex", "mixtral-8x7b")
    layers = model.layers_per_device
    phases = layer_phases(model, CONTEXTS)
    closed = model.iteration(Batch(decode_context_tokens=CONTEXTS)).busy_s
    run = replay_iteration(model, Batch(decode_context_tokens=CONTEXTS))
    moe_s = closed["lp"] - layers * phases.attention.busy_s["lp"]
    assert moe_s > layers * phases.pre[0].time_s  # the LP's MoE outweighs the xPU's work before the attention
    busy = run.busy_s()
    assert set(busy) == {"xpu", "lp", "tp link"}
    assert busy["lp"] == pytest.approx(layers * phases.mha_s[0] + moe_s, rel=1e-12)
    assert busy["xpu"] == pytest.approx(layers * (phases.pre[0].time_s + phases.post[0].time_s) - moe_s, rel=1e-12)
    assert busy["tp link"] == pytest.approx(layers * phases.allreduce_s, rel=1e-12)
    assert run.replay_s == pytest.approx(run.closed_form_s, rel=1e-12)
    _no_overlap(run)
    assert {s.name for s in run.spans if s.resource == "lp"} >= {"L0 mha", "L0 post", "L31 post"}
