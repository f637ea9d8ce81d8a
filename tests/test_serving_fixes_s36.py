"""Serving fixes from audit a2 (session 36): `closed_loop=True` is refused, not read as 1 (D1); a sweep's
`serving.alpha` on a system none of whose points offloads attention is refused at load (D3); the steady throughput
beside the makespan's (S1); a request rejected for a bank-PIM channel's KV limit is named as such, not as too long
for the whole KV cache (S2)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from archsim.dse.serving_spec import check_system_axes
from archsim.errors import SpecError
from archsim.systems import neupims
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.requests import Request
from archsim.systems.serving import simulate_serving
from archsim.systems.system_spec import load_system

HEADER = "arrival_s,prompt_tokens,output_tokens\n"


@dataclass
class SecondToy:
    """Every iteration takes 1 s, whatever its batch; a cache of 1,000 tokens."""

    name: str = "toy"
    kv_bytes_per_token: float = 1.0
    kv_capacity_bytes: float = 1000.0
    static_w: float = 0.0

    def iteration(self, batch: Batch) -> IterationCost:
        return IterationCost(1.0, busy_s={"npu": 1.0})


# ------------------------------------------------------------------------------------------------ D1 closed loop
@pytest.mark.parametrize("flag", [True, False])
def test_closed_loop_refuses_a_bool(flag) -> None:
    """True is an int to isinstance; as a number of requests in flight it was read as 1 (and False as 0 would
    be below 1 anyway): both are SpecErrors naming closed_loop, as `ServingConfig` refuses bools."""
    with pytest.raises(SpecError, match="closed_loop"):
        simulate_serving(SecondToy(), [Request(0, 0.0, 1, 1)], closed_loop=flag)


# ------------------------------------------------------------------------------------------------ S1 steady window
def test_steady_throughput_leaves_the_drain_out() -> None:
    """1 s iterations. r0 arrives at 10 s wanting 3 tokens, r1 at 11.5 s wanting 2: iteration [10, 11] prefills r0
    (its first token), [11, 12] decodes it, [12, 13] prefills r1 (its first token, the last first token of the
    run) beside r0's third and last, [13, 14] emits r1's last. Makespan 14 - 10 = 4 s for 5 tokens: 1.25 tokens/s;
    steady window 10 to 13 s, 1 + 1 + 2 = 4 tokens: 4/3 tokens/s. (r0 had wanted 4 and r1 1: r1, finishing at its
    first token, turns no window over since session 51, so that one was the fill alone.)"""
    result = simulate_serving(SecondToy(), [Request(0, 10.0, 1, 3), Request(1, 11.5, 1, 2)])
    assert result.makespan_s == 4.0 and result.throughput_tok_s == 5 / 4
    assert result.steady_end_s == 13.0
    assert result.steady_throughput_tok_s == pytest.approx(4 / 3, rel=1e-12)
    assert result.record().extras["steady_throughput_tok_s"] == result.steady_throughput_tok_s


def test_steady_throughput_is_the_timeline_tokens_to_the_last_first_token() -> None:
    """On a real system, counted a second way: the iterations of the trace that end by the last request's first
    token, their prefills and decodes (one token each), over the window from the first arrival."""
    model = neupims.system("neupims", "gpt3-7b")
    requests = [Request(i, 0.05 * i, 64 + 16 * i, 40 - 3 * i) for i in range(12)]
    result = simulate_serving(model, requests, trace=True)
    end_s = max(r.first_token_s for r in result.requests)
    tokens = sum(it.n_prefill + it.n_decode for it in result.timeline if it.end_s <= end_s)
    assert result.steady_end_s == end_s
    assert result.steady_throughput_tok_s == pytest.approx(tokens / end_s, rel=1e-12)
    assert result.steady_throughput_tok_s > result.throughput_tok_s  # the drain: r0's 40 tokens after r11's first


def test_simulate_prints_and_reports_the_steady_throughput(tmp_path: Path, cli, cli_json) -> None:
    path = tmp_path / "requests.csv"
    path.write_text(HEADER + "".join(f"{0.05 * i},{64 + 16 * i},{40 - 3 * i}\n" for i in range(12)))
    args = ("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", str(path))
    metrics = cli_json(*args)
    assert metrics["steady_throughput_tok_s"] == metrics["record"]["steady_throughput_tok_s"]
    line = next(shown for shown in cli(*args).output.splitlines() if shown.startswith("  throughput"))
    assert f"{metrics['throughput_tok_s']:.5g} tokens/s over the makespan" in line
    assert f"{metrics['steady_throughput_tok_s']:.5g} in the steady window" in line
    assert f"at {metrics['steady_end_s']:.4g} s" in line


# ------------------------------------------------------------------------------------------------ S2 channel limit
def test_a_request_beyond_a_channel_is_named_so(tmp_path: Path, cli) -> None:
    """GPT-3 7B at TP 4 on neupims: 8192 tokens of KV to a channel (tests/test_neupims_capacity_s35.py), 14,542
    pages of 16 tokens in the cache (232,672 tokens). A 12,000-token prompt and an 8,000 + 1,000 request are beyond
    the channel, not the cache; a 240,000-token prompt is beyond both, so the cache's words."""
    model = neupims.system("neupims", "gpt3-7b")
    requests = [Request(0, 0.0, 12000, 16), Request(1, 0.0, 100, 16), Request(2, 0.0, 8000, 1000),
                Request(3, 0.0, 240000, 1)]
    result = simulate_serving(model, requests)
    assert result.capacity_pages == 14542 and result.request_kv_tokens == 8192
    assert result.rejected_ids == (0, 2, 3) and result.beyond_request_kv_ids == (0, 2)
    assert result.rejection == (f"1 of 4 requests can never fit the KV cache of {model.name}; 2 are too long for "
                                f"one bank-PIM channel's KV (8192 tokens) on {model.name}")
    path = tmp_path / "requests.csv"
    path.write_text(HEADER + "0,12000,16\n0,100,16\n0,8000,1000\n")
    out = cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", str(path)).output
    assert "1 request served (2 rejected as too long for one bank-PIM channel's KV (8192 tokens))" in out
    path.write_text(HEADER + "0,12000,16\n0,100,16\n0,240000,1\n")
    shown = json.loads(cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", str(path), "--json").output)
    assert (shown["rejected"], shown["beyond_request_kv"], shown["request_kv_tokens"]) == (2, 1, 8192)
    out = cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", str(path)).output
    assert ("2 rejected: 1 too long for the KV cache, 1 too long for one bank-PIM channel's KV (8192 tokens)"
            in out)


def test_without_a_channel_limit_the_cache_words_stay(tmp_path: Path, cli) -> None:
    """npu-only has no bank-PIM: no per-request limit (null), and a request beyond its cache is too long for it."""
    path = tmp_path / "requests.csv"
    path.write_text(HEADER + "0,100,16\n0,2000000,1\n")
    shown = json.loads(cli("simulate", "-s", "npu-only", "-w", "gpt3-7b", "--trace", str(path), "--json").output)
    assert (shown["rejected"], shown["beyond_request_kv"], shown["request_kv_tokens"]) == (1, 0, None)
    out = cli("simulate", "-s", "npu-only", "-w", "gpt3-7b", "--trace", str(path)).output
    assert "1 request served (1 rejected as too long for the KV cache)" in out


# ------------------------------------------------------------------------------------------------ D3 sweep alpha
def test_alpha_on_a_sweep_that_never_offloads_is_refused_at_load() -> None:
    """neupims's schedule is sub-batch interleaving, and a channels axis leaves it so: no point would read alpha.
    The check names the sweep's file and serving.alpha (spec.py passes `spec.serving.alpha`)."""
    system = load_system("neupims")
    axes = {"system.devices.pim.channels": [16, 32]}
    with pytest.raises(SpecError) as refused:
        check_system_axes(system, axes, (), (), "sw.yaml", "gpt3-7b", alpha=0.2)
    assert (refused.value.source, refused.value.where) == ("sw.yaml", "serving.alpha")
    assert "schedule.kind is sub-batch-interleaving and no axis value sets one" in refused.value.message
    check_system_axes(system, axes, (), (), "sw.yaml", "gpt3-7b", alpha=None)  # without alpha: nothing to read it


def test_alpha_on_an_offloading_sweep_loads() -> None:
    check_system_axes(load_system("lamina"), {}, (), (), "sw.yaml", "llama3-70b", alpha=0.2)


def test_a_window_that_is_the_fill_alone_has_no_steady_throughput() -> None:
    """Review a6: an offline batch admitted at once ends the window at its first iteration, where nothing has
    finished; its tokens over that iteration (64 first tokens in 0.83 s on the auditor's run) are the fill, not a
    steady rate, so there is none (NaN), and the summary says so. One request alone is the same."""
    batch = simulate_serving(SecondToy(), [Request(i, 0.0, 1, 3) for i in range(4)])
    assert batch.steady_end_s == 1.0 and all(r.finish_s > 1.0 for r in batch.requests)
    assert math.isnan(batch.steady_throughput_tok_s) and batch.throughput_tok_s == 12 / 3
    assert math.isnan(simulate_serving(SecondToy(), [Request(0, 0.0, 1, 5)]).steady_throughput_tok_s)
