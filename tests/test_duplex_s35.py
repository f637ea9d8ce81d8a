"""Duplex's Op/B threshold as the rooflines' crossover, the reproduction's points short of their batch, and the
docstring numbers of +PE's routing, the QPS aside, the offload event model and Lamina's trace caps.

Expected values and where they come from:
- The crossover (`system_checks.roofline_crossover`, hand derivation): a device with more bandwidth W and less peak
  P than the weight holder (P_h, W_h) is faster per byte, max(x / P, 1 / W) < max(x / P_h, 1 / W_h), exactly for
  x < P / W_h. Duplex (pim.md §2.2, §2.4): 5 stacks x 2 x 32 x 512 x 650 MHz = 106.5 TFLOP/s over the H100's
  3.35 TB/s = 31.8 Op/B, the duplex preset's [op/b] comment; Bank-PIM 5 x 10.7264 / 3.35 = 16.0.
- OPT-66B at (1024, 1024) and batch 128 on duplex-gpu: its KV cache holds fewer than 128 prompts of ~1024 tokens
  (the bound is its token capacity over the shortest prompt); Llama3-70B (GQA, 8 KV heads of 64) holds them all.
"""

from __future__ import annotations

import math
import re

import pytest
import yaml

from archsim import library
from archsim.commands.duplex_cmd import short_of_batch
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import coprocessing, duplex_reproduce, offload, requests
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.requests import gaussian_requests
from archsim.systems.system_checks import roofline_crossover
from archsim.systems.system_spec import load_system

H100_DRAM_BYTES_PER_S = 3.35e12  # h100-sxm5
LP_PEAK_FLOPS_PER_S = 2 * 32 * 512 * 650e6  # one Logic-PIM stack, pim.md §2.2
STACKS = 5


def _spec(tmp_path, **over) -> str:
    path = tmp_path / "derived.yaml"
    path.write_text(yaml.safe_dump({"name": "duplex-derived", "base": "duplex", **over}))
    return str(path)


def _iteration_ms(system, workload: str = "mixtral-8x7b", decodes: int = 64, context: int = 1024) -> float:
    model = system_model(system, library.load_workload_spec(workload))
    return model.iteration(Batch((), (context,) * decodes)).time_s * 1e3


def test_the_crossover_is_peak_over_the_holders_bandwidth_where_the_device_streams_faster() -> None:
    assert roofline_crossover(100.0, 8.0, 1000.0, 2.0) == 50.0  # P / W_h
    assert roofline_crossover(100.0, 2.0, 1000.0, 2.0) is None  # no more bandwidth: never faster at low Op/B
    assert roofline_crossover(1000.0, 8.0, 1000.0, 2.0) is None  # more of both: faster at every Op/B


@pytest.mark.parametrize(("preset", "device", "stack_flops_per_s", "comment"),
                         [("duplex-bankgroup-pim", "pim", LP_PEAK_FLOPS_PER_S, 31.8),  # duplex's peaks, which
                          # duplex and duplex-pe(-et) weigh by each op's time instead (`faster`, s51)
                          ("duplex-bank-pim", "pim", 10.7264e12, 16.0)])
def test_the_presets_thresholds_are_the_crossover_of_their_comment(preset, device, stack_flops_per_s, comment) -> None:
    assert load_gpu("h100-sxm5").dram_bytes_per_s == H100_DRAM_BYTES_PER_S
    expected = STACKS * stack_flops_per_s / H100_DRAM_BYTES_PER_S
    assert expected == pytest.approx(comment, abs=0.05)  # the [op/b] comment, rounded
    rules = [r for r in load_system(preset).placement if r.op_per_byte_below is not None]
    assert rules and all(r.device == device and r.op_per_byte_below == pytest.approx(expected, rel=1e-12)
                         for r in rules)


def _crossing(placement: list) -> list:
    """Duplex's placement with `crossover` on its Logic-PIM rules (the preset's are `faster` since s51)."""
    return [{**rule, "op_per_byte_below": "crossover"} if rule["device"] == "lp" else rule for rule in placement]


def test_a_slower_logic_pim_moves_the_threshold_of_a_spec_derived_from_duplex(tmp_path) -> None:
    """/tmp/audit-pim-heldout/slowlp.yaml: the stacks at a quarter of the rate, Duplex's rules inherited. Given as
    `crossover`, the threshold moves to 5 x 5.3248 / 3.35 = 7.95 Op/B, so the stacks take only what they run
    faster than the xPU, and the iteration is no slower than the GPU's (it was 15.43 ms against 10.68 at the fixed
    31.8); the preset's `faster` rules, timing each op on both units, place it alike."""
    lp = {"lp": {"peak_flops_per_s": LP_PEAK_FLOPS_PER_S / 4}}
    slow = load_system(_spec(tmp_path, devices=lp))
    crossing = load_system(_spec(tmp_path, devices=lp, placement=_crossing(load_system("duplex").data["placement"])))
    thresholds = [r.op_per_byte_below for r in crossing.placement if r.device == "lp"]
    assert thresholds == [pytest.approx(STACKS * LP_PEAK_FLOPS_PER_S / 4 / H100_DRAM_BYTES_PER_S, rel=1e-12)] * 2
    assert [r.faster for r in slow.placement if r.device == "lp"] == [True, True]
    assert _iteration_ms(slow) == _iteration_ms(crossing) <= _iteration_ms(load_system("duplex-gpu"))


def test_a_logic_pim_that_no_op_per_byte_separates_from_the_xpu_is_refused(tmp_path) -> None:
    """5 stacks of 200 TFLOP/s beside the H100's 989: faster at every Op/B, so no crossover (the preset's
    `faster` rules, which time each op, take them)."""
    fast = {"lp": {"peak_flops_per_s": 200e12}}
    with pytest.raises(SpecError, match=r"op_per_byte_below: crossover: no Op/B below which lp"):
        load_system(_spec(tmp_path, devices=fast, placement=_crossing(load_system("duplex").data["placement"])))
    assert load_system(_spec(tmp_path, devices=fast)).placement[1].faster


def test_a_crossover_on_a_device_without_a_roofline_is_refused(tmp_path) -> None:
    """npu+pim's bank-PIM and NPU: cost models without a roofline's peak and operand bandwidth."""
    path = tmp_path / "npu-pim.yaml"
    placement = load_system("npu+pim").data["placement"]
    path.write_text(yaml.safe_dump({"name": "npu-pim-crossover", "base": "npu+pim",
                                    "placement": [{**placement[0], "op_per_byte_below": "crossover"}, *placement[1:]]}))
    with pytest.raises(SpecError, match=r"placement\[0\]\.op_per_byte_below: crossover reads the rooflines"):
        load_system(str(path))


def test_points_short_of_their_batch_say_so() -> None:
    grid = {"models": ("opt-66b", "llama3-70b"), "lengths": ((1024, 1024),), "batches": (128,)}
    opt, llama = duplex_reproduce.reproduce((duplex_reproduce.BASELINE,), grid)
    model = system_model(load_system("duplex-gpu"), library.load_workload_spec("opt-66b"))
    shortest = min(r.prompt_tokens for r in gaussian_requests(2 * 128, 1024, 1024, duplex_reproduce.STD_FRACTION, 0))
    held = model.kv_capacity_bytes / model.kv_bytes_per_token / shortest  # prompts the cache can hold at most
    assert held < 128
    assert opt["batch_reached"] <= held and opt["preemptions"] > 0
    assert (llama["batch_reached"], llama["preemptions"]) == (128, 0)
    assert short_of_batch(128, opt["batch_reached"], opt["preemptions"]) == (
        f"  batch 128 ({opt['batch_reached']} reached, {opt['preemptions']} preemptions)")
    assert short_of_batch(128, 128, 0) == ""


def test_tokens_per_expert_count_the_routed_pairs_once() -> None:
    """33 tokens to 2 of 64 experts: 66 pairs (ceil(66 / 64) = 2 tokens to each expert had counted 128, and made
    an op of 64 tokens, not 33)."""
    assert sum(coprocessing.tokens_per_expert(33, 2, 64, 0.0)) == 66


def _numbers(doc: str, pattern: str) -> tuple[str, ...]:
    found = re.search(pattern, " ".join(doc.split()))
    assert found, pattern
    return found.groups()


def test_the_qps_asides_numbers_are_this_runs() -> None:
    """The module docstring's saturation read off the TTFT (150 and 200 requests per rate) and capacity."""
    system = duplex_reproduce.BASELINE
    doc = duplex_reproduce.__doc__
    read, capacity, read_200 = _numbers(doc, r"\(([\d.]+) requests/s for the GPU against its capacity of ([\d.]+); "
                                             r"with 200 requests per rate it read ([\d.]+)\)")
    assert float(read) == pytest.approx(duplex_reproduce.saturation_qps(
        duplex_reproduce.qps_sweep((system,)), system)[0], abs=0.05)
    assert float(read_200) == pytest.approx(duplex_reproduce.saturation_qps(
        duplex_reproduce.qps_sweep((system,), requests=200), system)[0], abs=0.05)
    assert float(capacity) == pytest.approx(duplex_reproduce.capacity_qps((system,))[system], abs=0.005)


def test_the_offload_docstrings_event_time_is_this_runs() -> None:
    """LLaMA3-8B on lamina at n = 4, 3 replicas of tp 1, 4 H20s, 256 requests of 64 tokens, no link latency."""
    from archsim.systems.offload_events import simulate_pipeline
    from archsim.systems.system_spec import with_fields

    fields = {"schedule": {"kind": "staggered", "divide_and_conquer": True, "micro_batches": 4},
              "devices.compute.count": 3, "parallelism.tp": 1, "devices.memory.count": 4,
              "parallelism.attention_pool": 4, "links.attention.latency_s": 0.0}
    model = system_model(with_fields(load_system("lamina"), fields), library.load_workload_spec("llama3-8b"))
    contexts = [64] * 256
    run = simulate_pipeline(model.micro_batch_layers(contexts), model.replicas, model.layers, 24,
                            model.divide_and_conquer, heads_s=model.heads_s(contexts), lanes=model.link_lanes)
    (event_ms,) = _numbers(offload.__doc__, r"the event model runs ([\d.]+) ms a token")
    assert float(event_ms) == pytest.approx(run.token_s * 1e3, abs=5e-4)


def test_the_lamina_trace_caps_sigmas_are_the_presets() -> None:
    """(log cap - location) / sigma of every Lamina trace's prompts and outputs (`_location_for_mean`)."""
    sigmas = []
    for name in ("azure-conv", "azure-code", "kimi-conv", "kimi-ta"):
        d = requests.LENGTH_PRESETS[name]
        for mean, cap in ((d.mean_prompt_tokens, d.max_prompt_tokens), (d.mean_output_tokens, d.max_output_tokens)):
            sigmas.append((math.log(cap) - requests._location_for_mean(mean, d.sigma, cap)) / d.sigma)
    low, high = _numbers(requests.__doc__, r"([\d.]+) to ([\d.]+) sigma above the location")
    assert (float(low), float(high)) == (pytest.approx(min(sigmas), abs=0.06), pytest.approx(max(sigmas), abs=0.06))


def test_check_prints_each_rules_resolved_threshold() -> None:
    """`archsim check` shows what `crossover` resolved to, so a base:-derived spec's threshold is visible."""
    from click.testing import CliRunner

    from archsim.cli import main

    result = CliRunner().invoke(main, ["check", "duplex", "duplex-bank-pim"])
    assert result.exit_code == 0, result.output
    # duplex's rules are `faster` since s51: nothing to resolve, the device weighed against is named
    assert "system duplex, placement[0] (attention on lp) where faster than xpu; placement[1] (moe on lp) where " \
        "faster than xpu" in result.output
    assert "placement[0] (attention on pim) below 16.01 Op/B" in result.output
