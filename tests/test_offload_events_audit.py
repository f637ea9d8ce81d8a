"""The offloading event model (archsim.systems.offload_events) after its audit: a staggered pipeline with LM heads
is monotone in the link (a faster link never slower, more latency never faster); the closed form
(archsim.systems.offload.token_s) stays a lower bound, within the bounds its docstring states; the memory pool's
spans are its busy time; with more than one link lane no two spans share a Perfetto track at once."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from archsim import library
from archsim.model.trace import chrome_trace
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, token_s
from archsim.systems.offload_events import simulate_pipeline
from archsim.systems.system_spec import load_system, with_fields

CONTEXTS_257 = [1000 + 13 * i for i in range(257)]  # the audit's batch: odd, contexts spread


def _model(workload: str, micro_batches: int, divide_and_conquer: bool = True, **link) -> OffloadModel:
    """The `lamina` preset at DOP (2 x replicas, 4): `micro_batches` - 1 replicas of 2 H100s, 4 H20s; `link`
    overrides the attention link's fields (latency_s, bytes_per_s_per_direction)."""
    kind = "staggered" if micro_batches > 2 else "ping-pong"
    schedule = {"kind": kind, "divide_and_conquer": divide_and_conquer} | (
        {"micro_batches": micro_batches} if micro_batches > 2 else {})
    fields = {"schedule": schedule, "devices.compute.count": 2 * (micro_batches - 1), "parallelism.tp": 2,
              "devices.memory.count": 4, "parallelism.attention_pool": 4}
    fields |= {f"links.attention.{name}": value for name, value in link.items()}
    return system_model(with_fields(load_system("lamina"), fields), library.load_workload_spec(workload))


def _times_s(model: OffloadModel, contexts: list[int], heads: bool, tokens: int) -> tuple[float, float]:
    """(closed form, event model) time per token, LM heads or none."""
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    heads_s = heads_s if heads else [0.0] * len(heads_s)
    closed = token_s(layers, heads_s, model.replicas, model.divide_and_conquer, model.layers, model.link_lanes)
    run = simulate_pipeline(layers, model.replicas, model.layers, tokens, model.divide_and_conquer,
                            heads_s=heads_s, lanes=model.link_lanes)
    return closed, run.token_s


# ------------------------------------------------------------------------------------------------ monotone
def test_a_staggered_pipeline_is_monotone_in_the_links_bandwidth_and_latency() -> None:
    """LLaMA3-8B, 3 micro-batches on 2 replicas, divide-and-conquer, LM heads, the audit's 257 requests: over
    8-15 GB/s and 5-16.5 us the event model's time per token does not rise with bandwidth nor fall with latency.
    First come, first served, with the pool held from a history to its merge, it did both: 10.31 ms at 8 GB/s and
    10.41 ms at 10 GB/s over 5 us; 10.08 ms over 10 us at 10 GB/s; 10.11 -> 10.40 ms from 12 to 15 GB/s over
    16.5 us. It stays at or above the closed form, which is monotone by construction."""
    bandwidths, latencies = (8e9, 10e9, 12e9, 15e9), (5e-6, 10e-6, 16.5e-6)
    event = {}
    for bw, latency in itertools.product(bandwidths, latencies):
        model = _model("llama3-8b", 3, latency_s=latency, bytes_per_s_per_direction=bw)
        closed, event[bw, latency] = _times_s(model, CONTEXTS_257, True, 8)
        assert closed <= event[bw, latency] * (1 + 1e-9)
    for latency in latencies:
        for slow, fast in itertools.pairwise(bandwidths):
            assert event[fast, latency] <= event[slow, latency] * (1 + 1e-9), (slow, fast, latency)
    for bw in bandwidths:
        for short, long in itertools.pairwise(latencies):
            assert event[bw, long] >= event[bw, short] * (1 - 1e-9), (bw, short, long)


# ------------------------------------------------------------------------------------------------ closed form
@pytest.mark.parametrize(("workload", "divide_and_conquer", "contexts"), [
    ("llama3-8b", True, CONTEXTS_257),  # micro-batches of 129 and 128: 1.31 % (the docstring's)
    ("llama3-8b", False, [3000] * 512),  # the grid's largest: 1.46 %
    ("llama3-8b", True, [3000] * 255),  # the audit's 1.25 %
])
def test_ping_pong_with_lm_heads_is_above_the_closed_form_by_at_most_one_and_a_half_per_cent(
        workload: str, divide_and_conquer: bool, contexts: list[int]) -> None:
    """offload.py's docstring: in ping-pong with LM heads the event model is above the closed form by up to 1.5 %
    (it said 1 %, which these cases, odd batches and even, exceed)."""
    model = _model(workload, 2, divide_and_conquer)
    closed, event = _times_s(model, contexts, True, 12)
    assert closed == pytest.approx(model.iteration(Batch((), tuple(contexts))).time_s)
    assert 0.01 < event / closed - 1 <= 0.015


@pytest.mark.parametrize(("latency_s", "above"), [(0.0, (0.06, 0.07)), (4e-6, (0.03, 0.04)),
                                                   (8e-6, (0.0, 0.0003)), (16.5e-6, (0.0, 0.0003))])
def test_without_heads_the_closed_form_is_a_lower_bound_off_the_grid_it_matches(latency_s: float,
                                                                                above: tuple) -> None:
    """LLaMA-2-7B, n = 4, divide-and-conquer, 3 requests at 64 tokens (three micro-batches of one), no LM heads:
    the closed form is below the event model by the docstring's 6.5 % at 0 us of latency and 3.8 % at 4 us, and
    within its 0.03 % at 8 us and the preset's 16.5 us; never above it (7.6 %, 3.7 % and 0.3 % at 0, 4 and 8 us
    while the event model started a history's attention only once its replica had computed the k, v share)."""
    closed, event = _times_s(_model("llama2-7b", 4, latency_s=latency_s), [64] * 3, False, 12)
    assert closed <= event * (1 + 1e-9)
    assert above[0] <= event / closed - 1 <= above[1]


# ------------------------------------------------------------------------------------------------ trace
@pytest.mark.parametrize("micro_batches", [2, 3])
def test_the_pools_spans_sum_to_its_busy_time(micro_batches: int) -> None:
    """LLaMA3-8B, divide-and-conquer, 16 requests at 16 tokens over a 0.2 GB/s link (k, v arrive long after the
    history's attention): the pool's spans over 6 tokens are 6 x `busy_s["memory_pool"]` (layers x each
    micro-batch's history + merge), none overlapping; the wait for k, v is not a busy span (they summed to
    4.6-6.8x while the pool was held through it)."""
    model = _model("llama3-8b", micro_batches, bytes_per_s_per_direction=0.2e9)
    contexts, tokens = [16] * 16, 6
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    run = simulate_pipeline(layers, model.replicas, model.layers, tokens, True, trace=True, heads_s=heads_s,
                            lanes=model.link_lanes)
    pool = sorted((s for s in run.spans if s.resource == "memory pool"), key=lambda s: s.start_s)
    busy_s = model.iteration(Batch((), tuple(contexts))).busy_s["memory_pool"]
    assert busy_s == pytest.approx(model.layers * sum(layer.history_s + layer.merge_s for layer in layers))
    assert sum(s.end_s - s.start_s for s in pool) == pytest.approx(tokens * busy_s, rel=1e-9)
    assert all(b.start_s >= a.end_s - 1e-12 for a, b in itertools.pairwise(pool))


def test_each_link_lane_is_its_own_track() -> None:
    """LLaMA3-8B, 4 micro-batches on 3 replicas (2 lanes a direction), 257 requests, over a 2 GB/s link (the
    preset's carries the outputs back one at a time once the pool starts attention in turn): in the Perfetto trace
    no two spans on one (pid, tid) overlap (32 pairs did on `link out` when the lanes shared a track); each
    direction has a track per lane."""
    model = _model("llama3-8b", 4, bytes_per_s_per_direction=2e9)
    assert model.link_lanes == 2
    layers, heads_s = model.micro_batch_layers(CONTEXTS_257), model.heads_s(CONTEXTS_257)
    run = simulate_pipeline(layers, model.replicas, model.layers, 2, True, trace=True, heads_s=heads_s,
                            lanes=model.link_lanes)
    assert {s.resource for s in run.spans if s.resource.startswith("link")} == {
        "link out lane 0", "link out lane 1", "link back lane 0", "link back lane 1"}
    tracks = defaultdict(list)
    for event in chrome_trace(run.spans)["traceEvents"]:
        if event["ph"] == "X":
            tracks[event["pid"], event["tid"]].append((event["ts"], event["ts"] + event["dur"]))
    for spans in tracks.values():
        spans.sort()
        assert all(start >= end - 1e-6 for (_, end), (start, _) in itertools.pairwise(spans))
