"""A staggered pipeline without divide-and-conquer (archsim.systems.offload_events against the closed form,
archsim.systems.offload.token_s): the pool starts the micro-batches' attention in the rotation's turn order, as the
replicas take their slices. Served as they came, a younger micro-batch whose q, k, v arrived a hair before an
older one's took the pool for a whole attention, and the micro-batches ran bunched for the whole run: LLaMA3-8B,
n = 3, DOP (2, 4), 256 requests of 2047 + 1 tokens, the event model was 13.96 % above the closed form (1.85 % with
divide-and-conquer), and with one H100 a replica and 2 H20s it said divide-and-conquer saves 5.4 % where the
closed form says it costs 3.4 % (its merge is more work on a pool that limits the pipeline)."""

from __future__ import annotations

import random

import pytest

from archsim import library
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, token_s
from archsim.systems.offload_events import simulate_pipeline
from archsim.systems.system_spec import load_system, with_fields

TOKENS = 12  # the second half of 12 tokens is steady here (offload_events.steady_gap_s)
GRID = [2048] * 256  # the README's grid point (24-token runs there): 2047-token prompts, one new token
_SEED_0 = random.Random(0)
OFF_GRID = [_SEED_0.randint(16, 4096) for _ in range(256)]  # the auditor's seed-0 batch


def _model(tp: int, pool: int, divide_and_conquer: bool) -> OffloadModel:
    """LLaMA3-8B on the `lamina` preset staggered over 3 micro-batches on 2 replicas of `tp` H100s, `pool` H20s."""
    fields = {"schedule.kind": "staggered", "schedule.micro_batches": 3,
              "schedule.divide_and_conquer": divide_and_conquer, "devices.compute.count": 2 * tp,
              "parallelism.tp": tp, "devices.memory.count": pool, "parallelism.attention_pool": pool}
    return system_model(with_fields(load_system("lamina"), fields), library.load_workload_spec("llama3-8b"))


def _times_s(model: OffloadModel, contexts: list[int]) -> tuple[float, float]:
    """(closed form, event model) time per token, LM heads included."""
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    dc = model.divide_and_conquer
    closed = token_s(layers, heads_s, model.replicas, dc, model.layers, model.link_lanes)
    event = simulate_pipeline(layers, model.replicas, model.layers, TOKENS, dc, heads_s=heads_s,
                              lanes=model.link_lanes).token_s
    return closed, event


@pytest.mark.parametrize(("tp", "pool", "contexts", "bound"), [
    (2, 4, GRID, 0.028),  # the README's grid bound at n = 3 with divide-and-conquer (was 13.96 % above)
    (1, 2, OFF_GRID, 0.057),  # its bound off the grid at n = 3 (was 14.55 % above)
])
def test_without_divide_and_conquer_the_closed_form_is_a_close_lower_bound(tp: int, pool: int, contexts: list[int],
                                                                          bound: float) -> None:
    """The event model is never below the closed form (a max of lower bounds, rounding aside) and, without
    divide-and-conquer, above it by no more than the README's bounds with it: 2.8 % on its grid at n = 3, 5.7 %
    off it."""
    closed, event = _times_s(_model(tp, pool, False), contexts)
    assert closed <= event * (1 + 1e-9)
    assert event / closed - 1 <= bound


def test_both_models_agree_on_what_divide_and_conquer_is_worth() -> None:
    """The seed-0 batch on one H100 a replica and 2 H20s: the pool limits the pipeline (its attention 13.28 ms a
    token against the slowest micro-batch's 13.26 ms of cycles), so divide-and-conquer's merge, pool work the
    whole attention does not have, makes both models slower (the closed form by 3.4 %; the event model ran 5.4 %
    faster with it while it served the pool as the micro-batches came)."""
    closed_off, event_off = _times_s(_model(1, 2, False), OFF_GRID)
    closed_on, event_on = _times_s(_model(1, 2, True), OFF_GRID)
    assert closed_on > closed_off
    assert event_on > event_off


def test_the_pool_starts_attention_in_turn_order() -> None:
    """Slice k of micro-batch j (k counted across tokens) has turn j + 3 k: the grid point's pool spans, in the
    order they start, run in increasing turn (micro-batch 0's layer 1, turn 3, went before micro-batch 2's layer 0,
    turn 2, whose q, k, v came 0.5 us later)."""
    model = _model(2, 4, False)
    layers = model.micro_batch_layers(GRID)
    run = simulate_pipeline(layers, model.replicas, model.layers, 3, False, trace=True, heads_s=model.heads_s(GRID),
                            lanes=model.link_lanes)
    pool = sorted((s for s in run.spans if s.resource == "memory pool"), key=lambda s: s.start_s)
    turns = []
    for span in pool:
        j, t, k = (int(part[len(tag):]) for part, tag in zip(span.name.split()[:3], ("mb", "t", "L"), strict=True))
        turns.append(j + 3 * (t * model.layers + k))
    assert len(turns) > 3 * model.layers
    assert turns == sorted(turns)
