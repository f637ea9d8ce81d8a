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

from archsim import library
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, bw_min_per_nic_bytes_per_s, link_feasibility, token_s
from archsim.systems.offload_events import model_pipeline
from archsim.systems.system_spec import load_system, with_fields

LLAMA2_7B = library.load_workload_spec("llama2-7b")
POOL_NIC_BYTES_PER_S = 17.75e9  # nic-200g-host: 71 % of 200 Gb/s
CONTEXTS = [32] * 1536  # the audit's trace: 1536 requests of 32-token prompts, early in their decode
TOKENS = 6  # an event-model run: its second half is steady (offload_events.steady_gap_s)


def _staggered(link: str, compute_nic_bytes_per_s: float | None = None) -> OffloadModel:
    """The audit's spec: `lamina` staggered, 4 micro-batches on 3 replicas of one H100 (tp 1), 4 H20s behind
    nic-200g-host (4 x 17.75 = 71 GB/s), the compute NICs of `link` (at `compute_nic_bytes_per_s` if given)."""
    fields = {"schedule": {"kind": "staggered", "micro_batches": 4, "divide_and_conquer": True},
              "devices.compute.count": 3, "parallelism.tp": 1, "links.attention": link,
              "links.attention_pool": "nic-200g-host"}
    if compute_nic_bytes_per_s is not None:
        fields["links.attention.bytes_per_s_per_direction"] = compute_nic_bytes_per_s
    model = system_model(with_fields(load_system("lamina"), fields), LLAMA2_7B)
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
    iteration model that serves it and in the event model (67504 tokens/s over both: 2 lanes of 35.5 GB/s)."""
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


def test_the_event_model_is_never_faster_than_the_closed_form(sweep: list[tuple[float, float]]) -> None:
    """The closed form is a lower bound on the time (offload.py): a message alone on a stretched lane is never
    faster than a message's rate, and the lanes together carry exactly the direction's capacity."""
    for closed, event in sweep:
        assert event <= closed * (1 + 1e-9)


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
