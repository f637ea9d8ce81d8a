"""Session 35's audit of attention offloading (archsim.systems.offload): a link direction carries the fluid share of
messages its NICs allow, min(replicas, b r_m / (tp r_c)) at least 1, not that count rounded down, so a slower NIC
never serves faster; the infeasibility reason shows a NIC rate and BW_min apart however close; `archsim simulate`
says "1 request"."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
import simpy

from archsim import library
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, bw_min_per_nic_bytes_per_s, link_feasibility, token_s
from archsim.systems.offload_events import _SharedLink, model_pipeline
from archsim.systems.system_spec import load_system, with_fields

LLAMA2_7B = library.load_workload_spec("llama2-7b")
POOL_NIC_BYTES_PER_S = 17.75e9  # nic-200g-host: 71 % of 200 Gb/s
CONTEXTS = [32] * 1536  # the audit's trace: 1536 requests of 32-token prompts, early in their decode
TOKENS = 6  # an event-model run: its second half is steady (offload_events.steady_gap_s)


def _staggered(link: str, compute_nic_bytes_per_s: float | None = None,
               pool_nic_bytes_per_s: float | None = None) -> OffloadModel:
    """The audit's spec: `lamina` staggered, 4 micro-batches on 3 replicas of one H100 (tp 1), 4 H20s behind
    nic-200g-host (4 x 17.75 = 71 GB/s), the compute NICs of `link` (at `compute_nic_bytes_per_s` if given, the
    pool's at `pool_nic_bytes_per_s`)."""
    fields = {"schedule": {"kind": "staggered", "micro_batches": 4, "divide_and_conquer": True},
              "devices.compute.count": 3, "parallelism.tp": 1, "links.attention": link,
              "links.attention_pool": "nic-200g-host"}
    if compute_nic_bytes_per_s is not None:
        fields["links.attention.bytes_per_s_per_direction"] = compute_nic_bytes_per_s
    system = with_fields(load_system("lamina"), fields)
    if pool_nic_bytes_per_s is not None:  # the pool's link is inlined by the first call
        system = with_fields(system, {"links.attention_pool.bytes_per_s_per_direction": pool_nic_bytes_per_s})
    model = system_model(system, LLAMA2_7B)
    assert isinstance(model, OffloadModel)
    return model


def _tokens_per_s(model: OffloadModel) -> tuple[float, float]:
    """(closed form, event model) decode throughput of `CONTEXTS`, LM heads included."""
    closed_s = token_s(model.micro_batch_layers(CONTEXTS), model.heads_s(CONTEXTS), model.replicas,
                       model.divide_and_conquer, model.layers, model.link_lanes)
    event_s = model_pipeline(model, CONTEXTS, TOKENS).token_s
    return len(CONTEXTS) / closed_s, len(CONTEXTS) / event_s


def test_lanes_are_the_directions_capacity_over_a_messages_rate() -> None:
    """GPU-initiated compute NICs (45.7 GB/s) against the pool's 71: 71 / 45.7 messages at once, the direction's
    71 GB/s in all; NCCL's (35.5) 2 of them, 71 too. Rounded down the first was 1 lane, 45.7 GB/s."""
    for link, r_c in (("lamina-gpu-initiated-400g", 45.7e9), ("lamina-nccl-400g", 35.5e9)):
        model = _staggered(link)
        assert model.link.bytes_per_s_per_direction == r_c
        assert model.link_lanes == Fraction(4 * POOL_NIC_BYTES_PER_S) / Fraction(r_c)
        assert float(model.link_lanes) * model.nic_bytes_per_s == pytest.approx(4 * POOL_NIC_BYTES_PER_S)


def test_the_audits_slower_compute_nic_is_not_faster() -> None:
    """The audit's served run (`archsim simulate`, 1536 requests of 32 + 200 tokens) gave 49321 tokens/s over the
    faster GPU-initiated NICs and 58959 over NCCL's (61875 over the GPU-initiated now): both directions carry
    71 GB/s, so one decode iteration is at least as fast over the faster NICs (and their lower latency), in the
    iteration model that serves it and in the event model (73551 tokens/s over the GPU-initiated NICs, 1.55 lanes
    served oldest first; 67504 over NCCL's 2 lanes; the stop-gap's 2 stretched lanes gave 67504 over both)."""
    fast, slow = _staggered("lamina-gpu-initiated-400g"), _staggered("lamina-nccl-400g")
    batch = Batch((), tuple(CONTEXTS))
    assert fast.iteration(batch).time_s <= slow.iteration(batch).time_s
    (fast_closed, fast_event), (slow_closed, slow_event) = _tokens_per_s(fast), _tokens_per_s(slow)
    assert slow_closed <= fast_closed and slow_event <= fast_event * (1 + 1e-9)


SWEEP_BYTES_PER_S = [50e9 - i * 48e9 / 9 for i in range(10)]  # 50 down to 2 GB/s a compute NIC


@pytest.fixture(scope="module")
def sweep() -> list[tuple[float, float]]:
    return [_tokens_per_s(_staggered("lamina-gpu-initiated-400g", r_c)) for r_c in SWEEP_BYTES_PER_S]


def test_throughput_falls_as_the_compute_nic_slows(sweep: list[tuple[float, float]]) -> None:
    """Rounded down, the lanes went 1, 1, 1, 2, 2, 3 .. from 50 GB/s down (71 / r_c), and throughput jumped from
    50015 to 71224 tokens/s (event model 66052) between 39.3 and 34.0 GB/s; with the fluid share the direction
    carries min(3 r_c, 71) GB/s, and neither model gets faster as the NIC slows (beyond float noise)."""
    for (closed, event), (next_closed, next_event) in itertools.pairwise(sweep):
        assert next_closed <= closed * (1 + 1e-12)
        assert next_event <= event * (1 + 1e-9)
    assert sweep[-1][0] < sweep[0][0] / 10  # 2 GB/s a NIC: link-bound, 6 GB/s of 71


@pytest.fixture(scope="module")
def pool_sweep() -> list[tuple[float, float]]:
    return [_tokens_per_s(_staggered("lamina-gpu-initiated-400g", 50e9, r_m)) for r_m in SWEEP_BYTES_PER_S]


def test_the_event_model_is_never_faster_than_the_closed_form_as_the_pool_nic_slows(
        pool_sweep: list[tuple[float, float]]) -> None:
    """Over 50 GB/s compute NICs, the pool's 4 NICs from 50 to 2 GB/s: the closed form does not rise, and the event
    model stays at or below it. (The event model is not monotone here: 73100 tokens/s at 23.3 GB/s, 1.87 lanes,
    and 74911 at 18.0, 1.44: no message is faster at 18, but the micro-batches fall into another phase.)"""
    for (closed, _), (next_closed, _) in itertools.pairwise(pool_sweep):
        assert next_closed <= closed * (1 + 1e-12)
    for closed, event in pool_sweep:
        assert event <= closed * (1 + 1e-9)


def test_the_event_model_is_never_faster_than_the_closed_form(sweep: list[tuple[float, float]]) -> None:
    """The closed form is a lower bound on the time (offload.py): no message is faster than a message's rate, and
    the messages together carry at most the direction's capacity."""
    for closed, event in sweep:
        assert event <= closed * (1 + 1e-9)


def test_a_slower_pool_nic_that_drops_a_lane_is_not_faster() -> None:
    """Over 50 GB/s compute NICs, 4 x 25.1 GB/s pool NICs are 2.008 lanes, 4 x 25 are 2: the stop-gap ran 3 lanes
    at 2.008 / 3 of a message's rate against 2 at the full rate, 67521 tokens/s against 74911 over the slower pool.
    Served oldest first at a message's rate each, the third message gets 0.008 of it: 74911 both."""
    faster = _tokens_per_s(_staggered("lamina-gpu-initiated-400g", 50e9, 25.1e9))
    slower = _tokens_per_s(_staggered("lamina-gpu-initiated-400g", 50e9, 25e9))
    assert slower[1] <= faster[1] * (1 + 1e-9)


def test_a_message_alone_on_a_fractional_lane_count_runs_at_a_messages_rate() -> None:
    """The audit's case (1.55 lanes): the stop-gap ran every message at 1.55 / 2 of its rate, even alone, and the
    event model was 22.8 % above the closed form; now 12.7 % (8.0 % over 35.5 GB/s NICs, 2 whole lanes, as
    before). Processor sharing was 49.8 % and 32.8 % (offload_events' module docstring)."""
    closed, event = _tokens_per_s(_staggered("lamina-gpu-initiated-400g"))
    assert closed / event - 1 == pytest.approx(0.127, abs=0.001)
    closed, event = _tokens_per_s(_staggered("lamina-nccl-400g"))
    assert closed / event - 1 == pytest.approx(0.080, abs=0.001)


@pytest.mark.parametrize(("lanes", "arrivals", "done_s"), [
    (Fraction(3, 2), [(0, 1), (0.5, 1)], [1.0, 1.75]),  # the second at 0.5 of the rate until the first leaves
    (2, [(0, 1), (0.25, 1), (0.5, 2)], [1.0, 1.25, 3.0]),  # whole lanes: first come, first served
    (1, [(0, 1)], [1.0]),  # alone: exactly its wire time
    (Fraction(3, 2), [(0, 1)], [1.0]),  # alone on a fractional count too (the stop-gap: 4 / 3)
])
def test_the_shared_link_serves_oldest_first_each_at_most_a_messages_rate(lanes, arrivals, done_s) -> None:
    env = simpy.Environment()
    link = _SharedLink(env, lanes)
    done: dict[int, float] = {}

    def message(i: int, at_s: float, wire_s: float):
        yield env.timeout(at_s)
        yield from link.transfer(wire_s)
        done[i] = env.now

    for i, (at_s, wire_s) in enumerate(arrivals):
        env.process(message(i, at_s, wire_s))
    env.run()
    assert [done[i] for i in range(len(arrivals))] == pytest.approx(done_s, rel=1e-12)


def test_a_link_just_below_bw_min_reads_below_it() -> None:
    """A compute NIC one ulp below its BW_min: the reason printed both as "52.4" (one decimal); now the two read
    apart, the NIC's the smaller."""
    model = system_model(load_system("lamina"), library.load_workload_spec("llama3-70b"))
    contexts = [128] * 300
    need = bw_min_per_nic_bytes_per_s(model, contexts, 0.2)[0]
    slower = model.with_link(replace(model.link, bytes_per_s_per_direction=math.nextafter(need, 0)))
    record = link_feasibility(slower, contexts, 0.2)
    assert not record.feasible
    have, bw_min = re.search(r": (\S+) GB/s per NIC is below BW_min (\S+) GB/s", record.reason).groups()
    assert have != bw_min and Decimal(have) < Decimal(bw_min)


def test_a_tiny_alpha_prints_bw_min_in_a_few_digits() -> None:
    """At alpha 1e-290 BW_min is ~1.2e291 GB/s a compute NIC (batch 300 at 128 tokens; at 1e-300 it overflows to
    inf): printed with one decimal it was some 290 digits."""
    model = system_model(load_system("lamina"), library.load_workload_spec("llama3-70b"))
    record = link_feasibility(model, [128] * 300, 1e-290)
    assert not record.feasible
    assert len(record.reason) < 300 and "e+" in record.reason


def test_one_request_is_singular(tmp_path, cli) -> None:
    trace = tmp_path / "one.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,64,8\n")
    output = cli("simulate", "--system", "npu-only", "--workload", "gpt3-7b", "--trace", str(trace)).output
    assert ": 1 request served (" in output


def test_a_message_waiting_behind_the_lanes_has_no_span_until_it_moves() -> None:
    """One lane (the pool's 4 x 0.5 GB/s against a replica's 45.7) and 3 replicas: one message
    moves at a time, on the link's one track a direction, so its spans never overlap; a span that began when its
    message arrived, waiting included, overlapped the one it waited behind."""
    model = _staggered("lamina-gpu-initiated-400g", pool_nic_bytes_per_s=0.5e9)
    assert model.link_lanes == 1 and model.replicas == 3
    run = model_pipeline(model, [32] * 96, 4, trace=True)
    assert {s.resource for s in run.spans if s.resource.startswith("link")} == {"link out lane 0",
                                                                                 "link back lane 0"}
    for direction in ("link out", "link back"):
        spans = sorted((s.start_s, s.end_s) for s in run.spans if s.resource.startswith(direction))
        assert all(end <= later_start + 1e-15 for (_, end), (later_start, _) in itertools.pairwise(spans))
        if direction == "link out":  # messages waited: a span starts where the one it waited behind ended
            assert sum(start == end for (_, end), (start, _) in itertools.pairwise(spans)) > 0
