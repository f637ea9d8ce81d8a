"""The closed form's replica bound in a staggered pipeline (archsim.systems.offload.token_s) follows the event
model's assignment (archsim.systems.offload_events): slice k of micro-batch j (k counted across tokens) on replica
(j + k) mod (n - 1), a micro-batch's LM head on its next slice's replica, so with n micro-batches on n - 1 replicas
two heads share a replica in a token. The busiest replica's work per token, averaged over the tokens the assignment
turns through, is the bound: exact where the replicas limit the pipeline and the assignment does not turn, still a
lower bound where it turns (the busiest replica of one token is not: the event model runs below it)."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, token_s
from archsim.systems.offload_events import simulate_pipeline
from archsim.systems.system_spec import load_system, with_fields


def _model(workload: str, micro_batches: int, latency_s: float | None = None) -> OffloadModel:
    """The `lamina` preset staggered over `micro_batches` - 1 replicas of one H100, 8 H20s (a pool fast enough for
    the replicas to limit short contexts), divide-and-conquer; `latency_s` the attention link's, if given."""
    fields = {"schedule.kind": "staggered", "schedule.micro_batches": micro_batches,
              "schedule.divide_and_conquer": True, "devices.compute.count": micro_batches - 1,
              "parallelism.tp": 1, "devices.memory.count": 8, "parallelism.attention_pool": 8}
    if latency_s is not None:
        fields["links.attention.latency_s"] = latency_s
    return system_model(with_fields(load_system("lamina"), fields), library.load_workload_spec(workload))


def _times_s(model: OffloadModel, contexts: list[int], tokens: int = 12) -> tuple[float, float]:
    """(closed form, event model) time per token, LM heads included."""
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    closed = token_s(layers, heads_s, model.replicas, True, model.layers, model.link_lanes)
    event = simulate_pipeline(layers, model.replicas, model.layers, tokens, True, heads_s=heads_s,
                              lanes=model.link_lanes).token_s
    return closed, event


def _token_zero_work_s(model: OffloadModel, contexts: list[int]) -> list[float]:
    """Each replica's work in one token, counted slice by slice as the event model assigns them: slice k of
    micro-batch j on replica (j + k) mod replicas, its head (run in the token's first slice) on replica j mod
    replicas."""
    work = [0.0] * model.replicas
    for j, (layer, head_s) in enumerate(zip(model.micro_batch_layers(contexts), model.heads_s(contexts),
                                            strict=True)):
        for k in range(model.layers):
            work[(j + k) % model.replicas] += layer.compute_s
        work[j % model.replicas] += head_s
    return work


@pytest.mark.parametrize(("workload", "micro_batches", "requests"), [
    ("llama3-8b", 3, 255),  # 32 layers on 2 replicas: replica 0 runs the heads of micro-batches 0 and 2
    ("llama3-8b", 5, 256),  # 32 layers on 4 replicas: replica 0 the heads of 0 and 4
    ("llama2-7b", 3, 64),
])
def test_a_replica_bound_pipeline_runs_at_its_busiest_replicas_work(workload: str, micro_batches: int,
                                                                    requests: int) -> None:
    """64-token contexts over a link of no latency: the replicas limit the pipeline. The layers divide among the
    replicas (32 over 2 or 4), so every token gives each replica the same slices, and replica 0, running two
    micro-batches' heads, sets the time per token: the event model's, within 0.01 %. The even spread of all
    heads, (layers x sum of slices + sum of heads) / replicas, was below it by 0.5-3.3 %."""
    model = _model(workload, micro_batches, latency_s=0.0)
    contexts = [64] * requests
    work_s = _token_zero_work_s(model, contexts)
    assert max(work_s) == work_s[0] > sum(work_s) / len(work_s) * 1.004
    closed, event = _times_s(model, contexts)
    assert closed == pytest.approx(work_s[0], rel=1e-12)
    assert closed == pytest.approx(event, rel=1e-4)
    assert closed <= event * (1 + 1e-9)


@pytest.mark.parametrize(("micro_batches", "period"), [(4, 3), (7, 3)])
def test_where_the_assignment_turns_the_bound_is_a_replicas_mean_over_the_turn(micro_batches: int,
                                                                               period: int) -> None:
    """LLaMA3-8B, 256 requests at 64 tokens, no link latency. Token t's assignment is token 0's turned by
    32 t replicas: over 3 replicas (n = 4) every replica takes every replica's share in turn (period 3), over 6
    (n = 7) a replica takes the shares of the replicas 2 apart from it (gcd(32, 6) = 2, period 3). The bound is
    the busiest such mean (n = 4: the even spread); the busiest replica of one token is above the event model
    (8.899 against 8.766 ms at n = 4), so it is no lower bound."""
    model = _model("llama3-8b", micro_batches, latency_s=0.0)
    contexts = [64] * 256
    work_s = _token_zero_work_s(model, contexts)
    step = model.replicas // period  # the replicas one replica's turn goes through are `step` apart
    mean_s = max(sum(work_s[r::step]) / period for r in range(step))
    closed, event = _times_s(model, contexts)
    assert closed == pytest.approx(mean_s, rel=1e-12)
    assert closed <= event * (1 + 1e-9) < max(work_s)


def test_ping_pong_keeps_the_one_replicas_whole_work() -> None:
    """One replica (n = 2): every slice and head is its, (layers x sum of slices + sum of heads), bit for bit."""
    model = _model("llama3-8b", 2)
    contexts = [1000 + 13 * i for i in range(257)]
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    work_s = model.layers * sum(layer.compute_s for layer in layers) + sum(heads_s)
    closed = token_s(layers, heads_s, 1, True, model.layers, model.link_lanes)
    assert closed == max(work_s, max(model.layers * layer.cycle_s(True) + head_s
                                     for layer, head_s in zip(layers, heads_s, strict=True)),
                         model.layers * sum(layer.pool_s(True) for layer in layers),
                         model.layers * sum(layer.q_wire_s + layer.kv_wire_s for layer in layers),
                         model.layers * sum(layer.out_wire_s for layer in layers))
