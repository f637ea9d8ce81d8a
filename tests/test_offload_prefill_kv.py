"""Attention offloading moves a prompt's K and V to the memory pool, which holds the KV cache, layer by layer as its
prefill runs (pim.md §3.4, 'Prefill→decode'; `archsim.systems.offload`). Before, a prefill on Lamina's compute pool
sent none of it: link_out and the pool were idle for an 8000-token prompt."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, prompt_phase_s
from archsim.systems.system_messages import allreduce_s
from archsim.systems.system_model import dense_phase_costs
from archsim.systems.system_spec import load_system, with_fields

PROMPT = 8000
LAYERS = 80
KV_BYTES_PER_TOKEN_LAYER = 2 * 8 * 128 * 2  # LLaMA3-70B: K and V, 8 KV heads x 128, 2-byte words
NIC_BYTES_PER_S = 2 * 45.7e9  # lamina: a message over min(tp 2, b 4) NICs of the 45.7 GB/s link


def _lamina() -> OffloadModel:
    model = system_model(load_system("lamina"), library.load_workload_spec("llama3-70b"))
    assert isinstance(model, OffloadModel)
    return model


def _free_link(model: OffloadModel) -> OffloadModel:
    """The same system over a link that takes no time."""
    return model.with_link(replace(model.link, latency_s=0.0, bytes_per_s_per_direction=math.inf))


def test_a_prefill_sends_its_kv_to_the_pool_over_link_out() -> None:
    """8000 x 4096 B a layer x 80 layers = 2.62 GB over 91.4 GB/s: 28.68 ms of link_out (the wire time, latency
    apart); the pool's memory is busy writing it."""
    model = _lamina()
    assert model.kv_bytes_per_token == LAYERS * KV_BYTES_PER_TOKEN_LAYER
    cost = model.iteration(Batch((PROMPT,), ()))
    expected_s = PROMPT * KV_BYTES_PER_TOKEN_LAYER * LAYERS / NIC_BYTES_PER_S  # 0.02868 s
    assert cost.busy_s["link_out"] == pytest.approx(expected_s, rel=1e-12)
    assert cost.busy_s["link_back"] == 0
    write_s = model.pool_device.elementwise_s(PROMPT * KV_BYTES_PER_TOKEN_LAYER / 4)  # a device's quarter
    assert cost.busy_s["memory_pool"] == pytest.approx(LAYERS * write_s, rel=1e-12)


def test_the_prefill_time_is_unchanged_where_its_layers_hide_the_transfer() -> None:
    """A layer of the 8000-token prefill takes ~12 ms and its K/V message 0.36 ms on the wire + 16.5 us: each one
    leaves after its layer's attention and arrives while the ops after it run, so the prompt takes what it takes
    over a link of no time. Energy: the replica's board power (2 x 700 W) over the prompt and the pool's (4 x 400 W)
    over its writes."""
    model = _lamina()
    batch = Batch((PROMPT,), ())
    cost, free = model.iteration(batch), _free_link(model).iteration(batch)
    assert cost.time_s == free.time_s == cost.busy_s["compute"]
    write_s = model.pool_device.elementwise_s(PROMPT * KV_BYTES_PER_TOKEN_LAYER / 4)
    assert cost.energy_j == pytest.approx(2 * 700.0 * cost.time_s + 400.0 * 4 * LAYERS * write_s, rel=1e-9)


def test_a_transfer_longer_than_the_layer_sets_the_prompt_time() -> None:
    """Over 1 GB/s per NIC (2 GB/s a message) a layer's K/V, 32.8 MB, is 16.4 ms on the wire, more than the
    layer's compute: the messages go back to back from the first layer's attention end, so the prompt takes
    that + 80 x 16.4 ms + the latency, and the compute replica draws its board power (2 x 700 W) over it all."""
    model = _lamina()
    slow = model.with_link(replace(model.link, bytes_per_s_per_direction=1e9))
    cost = slow.iteration(Batch((PROMPT,), ()))
    pre, post = dense_phase_costs(model.compute, 0, (PROMPT,), 1.0)
    layer_s = pre.time_s + post.time_s + allreduce_s(model.compute, PROMPT)
    wire_s = PROMPT * KV_BYTES_PER_TOKEN_LAYER / 2e9  # 0.016384 s
    assert wire_s > layer_s
    assert cost.time_s == pytest.approx(pre.time_s + LAYERS * wire_s + model.link.latency_s, rel=1e-12)
    assert cost.busy_s["link_out"] == pytest.approx(LAYERS * wire_s, rel=1e-12)
    write_s = model.pool_device.elementwise_s(PROMPT * KV_BYTES_PER_TOKEN_LAYER / 4)
    assert cost.energy_j == pytest.approx(2 * 700.0 * cost.time_s + 400.0 * 4 * LAYERS * write_s, rel=1e-9)


def test_a_pool_priced_per_action_pays_the_kv_write_as_dram_bytes() -> None:
    """The H20 pool priced per action (4 pJ/bit of HBM, 2 pJ/byte of SRAM): the prompt's 2.62 GB cost
    2.62e9 x (8 x 4 + 2) pJ = 0.0891 J on the pool, beside the replica's 2 x 700 W over the prompt."""
    prices = {"energy_model": "per-action", "hbm_pj_per_bit": 4.0, "pj_per_flop": 1.0, "sram_pj_per_byte": 2.0,
              "static_w": 0.0}
    system = with_fields(load_system("lamina"), {f"devices.memory.{k}": v for k, v in prices.items()})
    model = system_model(system, library.load_workload_spec("llama3-70b"))
    assert isinstance(model, OffloadModel) and model.board_w[1] is None
    cost = model.iteration(Batch((PROMPT,), ()))
    kv_bytes = PROMPT * KV_BYTES_PER_TOKEN_LAYER * LAYERS
    assert cost.energy_j == pytest.approx(2 * 700.0 * cost.time_s + kv_bytes * (8 * 4.0 + 2.0) * 1e-12, rel=1e-12)


def test_prompt_phase_closed_form() -> None:
    """Three layers of 10 s, attention ending 4 s in (9 s in the last case), an LM head of 1 s, latency 0.5 s:
    - sends of 3 s: the last leaves at 20 + 4 + 3 = 27 s and arrives at 27.5 s, before the head ends at 31 s;
    - sends of 12 s: back to back from 4 s, the last arrives at 4 + 36 + 0.5 = 40.5 s;
    - sends of 8 s after a 9 s attention: the last arrives at 20 + 9 + 8 + 0.5 = 37.5 s, 6.5 s after the head."""
    assert prompt_phase_s(3, 10.0, 4.0, 1.0, 3.0, 0.5) == 31.0
    assert prompt_phase_s(3, 10.0, 4.0, 1.0, 12.0, 0.5) == 40.5
    assert prompt_phase_s(3, 10.0, 9.0, 1.0, 8.0, 0.5) == 37.5


def test_a_decode_only_iteration_sends_no_prompt_kv() -> None:
    """Without prompts link_out carries only the decodes' q (8192 x 2 B) and new k, v (4096 B, one copy) a token
    and layer, over 91.4 GB/s."""
    model = _lamina()
    cost = model.iteration(Batch((), (1000,) * 64))
    expected_s = LAYERS * 64 * (8192 * 2 + KV_BYTES_PER_TOKEN_LAYER) / NIC_BYTES_PER_S / model.link_lanes
    assert cost.busy_s["link_out"] == pytest.approx(expected_s, rel=1e-12)


def test_simulate_alpha_marks_a_run_over_a_link_below_bw_min_infeasible(tmp_path):
    """Issue 16's bad input, from the command line (must-show audit helper-220): a Lamina system whose attention
    link carries 1 GB/s is served, and with --alpha 0.2 its record is infeasible with the reason (BW_min at its
    most demanding decode iteration), not an exception; the preset's 45.7 GB/s link meets it; another system
    refuses --alpha."""
    import json

    from click.testing import CliRunner

    from archsim.cli import main

    slow = tmp_path / "slow.yaml"
    slow.write_text("name: lamina-slow\nbase: lamina\nlinks:\n  attention:\n    name: slow-nic\n    description: slow\n"
                    "    source: test\n    latency_s: 1.65e-05\n    bytes_per_s_per_direction: 1.0e+9\n")
    args = ["-w", "llama3-70b", "--rate", "5", "--requests", "20", "--lengths", "azure-conv", "--alpha", "0.2",
            "--json"]
    run = CliRunner().invoke(main, ["simulate", "--system", str(slow), *args])
    assert run.exit_code == 0, run.output
    out = json.loads(run.output)
    assert out["link"]["feasible"] is False and out["link"]["link_bytes_per_s"] == 1.0e9
    assert out["link"]["bw_min_bytes_per_s"] > 1.0e9
    assert out["record"]["feasible"] is False and "below BW_min" in out["record"]["reason"]
    fast = json.loads(CliRunner().invoke(main, ["simulate", "--system", "lamina", *args]).output)
    assert fast["link"]["feasible"] is True and fast["record"]["feasible"] is True
    refused = CliRunner().invoke(main, ["simulate", "--system", "vllm-h100", *args])
    assert refused.exit_code == 2 and "--alpha" in refused.output


def test_the_link_check_reads_the_most_demanding_decode_iteration_at_its_mean_context():
    """BW_min falls with the context: a batch of 60 at 100 tokens asks more than the largest batch, 64 at 1500
    (the check had read the largest batch only); a batch of 30 at 900 is dominated by 64 and is not asked."""
    from archsim.systems.offload import bw_min_bytes_per_s, peak_batch_link_feasibility
    from archsim.systems.serving import IterationRecord

    model = _lamina()
    timeline = [IterationRecord(0, 1, 2, 0, 100, 10, pages_after=10),
                IterationRecord(1, 2, 0, 30, 0, 40, 30 * 900, pages_after=40),
                IterationRecord(2, 3, 0, 64, 0, 80, 64 * 1500 + 32, pages_after=80),
                IterationRecord(3, 4, 0, 10, 0, 20, 10 * 50, pages_after=20),
                IterationRecord(4, 5, 0, 60, 0, 80, 60 * 100, pages_after=80)]
    short, largest = bw_min_bytes_per_s(model, [100] * 60, 0.2), bw_min_bytes_per_s(model, [1500] * 64, 0.2)
    assert short > largest  # the premise: the shorter contexts ask more
    record = peak_batch_link_feasibility(model, timeline, 0.2)
    assert (record.config["batch"], record.config["context"]) == (60, 100)
    assert record.extras["bw_min_bytes_per_s"] == pytest.approx(short)
    largest_only = peak_batch_link_feasibility(model, timeline[:4], 0.2)
    assert (largest_only.config["batch"], largest_only.config["context"]) == (64, 1500)
    assert largest_only.extras["bw_min_bytes_per_s"] == pytest.approx(largest)


def test_the_link_check_reads_every_batch_size_as_bw_min_is_not_monotone_in_the_batch():
    """Review helper-233: ATIME steps up where the pool's decode kernel spills into another wave, so a batch of 234
    asks more than one of 235 at the same context; pruning smaller batches at no shorter context had missed it."""
    from archsim.systems.offload import bw_min_bytes_per_s, peak_batch_link_feasibility
    from archsim.systems.serving import IterationRecord

    model = _lamina()
    smaller, larger = bw_min_bytes_per_s(model, [100] * 234, 0.2), bw_min_bytes_per_s(model, [100] * 235, 0.2)
    assert smaller > larger  # the premise
    timeline = [IterationRecord(0, 1, 0, 234, 0, 300, 234 * 100, pages_after=300),
                IterationRecord(1, 2, 0, 235, 0, 300, 235 * 100, pages_after=300)]
    record = peak_batch_link_feasibility(model, timeline, 0.2)
    assert (record.config["batch"], record.config["context"]) == (234, 100)
    assert record.extras["bw_min_bytes_per_s"] == pytest.approx(smaller)


def test_simulate_alpha_on_a_run_that_never_decodes_exits_2_naming_alpha(tmp_path):
    from click.testing import CliRunner

    from archsim.cli import main

    trace = tmp_path / "one.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,1\n0,200,1\n")
    run = CliRunner().invoke(main, ["simulate", "-s", "lamina", "-w", "llama3-8b", "--trace", str(trace),
                                    "--alpha", "0.2"])
    assert run.exit_code == 2 and "--alpha: no request decoded a token after its first" in run.output


def test_simulate_alpha_too_small_for_a_finite_bw_min_exits_2():
    """Review helper-221: alpha 1e-300 made BW_min infinite and --json printed Infinity, which is not JSON."""
    from click.testing import CliRunner

    from archsim.cli import main

    run = CliRunner().invoke(main, ["simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "2", "--requests", "5",
                                    "--alpha", "1e-300", "--json"])
    assert run.exit_code == 2 and "--alpha: expected an overhead large enough for a finite BW_min" in run.output
