"""Serving bookkeeping fixed after the s25 audits: static power between iterations, a run that served nothing, and
the prefill budget on the command line."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from hypothesis import event, given, settings
from hypothesis import strategies as st

from archsim.cli import main
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.neupims import system
from archsim.systems.requests import Request
from archsim.systems.serving import simulate_serving
from archsim.systems.step import UnrunnableOp


@dataclass
class StaticToy:
    """Every iteration takes 1 s and 100 J; the devices draw `static_w` busy or idle."""

    kv_capacity_bytes: float = 1e6
    kv_bytes_per_token: float = 1.0
    static_w: float = 10.0
    name: str = "static toy"

    def iteration(self, batch: Batch) -> IterationCost:
        return IterationCost(1.0, 100.0)


def test_static_power_is_drawn_between_iterations():
    """Two one-token requests 5 s apart: 2 iterations (200 J) in a 6 s makespan, 4 s idle at 10 W: 240 J."""
    result = simulate_serving(StaticToy(), [Request(0, 0.0, 4, 1), Request(1, 5.0, 4, 1)])
    assert result.makespan_s == 6.0 and result.iterations == 2
    assert result.energy_j == pytest.approx(200 + 10 * 4)
    assert result.energy_per_token_j == pytest.approx(240 / 2)
    busy = simulate_serving(StaticToy(), [Request(0, 0.0, 4, 1), Request(1, 0.0, 4, 1)])
    assert busy.energy_j == pytest.approx(100)  # one iteration, no idle time


def test_a_per_action_system_charges_its_static_power_over_an_idle_gap():
    """duplex-gpu prices per action with static power. The same request twice, 10 s apart (the first done long
    before), costs twice the lone run plus static_w over the idle time between them."""
    model = system("duplex-gpu", "llama3-8b")
    assert model.static_w > 0
    alone = simulate_serving(model, [Request(0, 0.0, 100, 10)])
    apart = simulate_serving(model, [Request(0, 0.0, 100, 10), Request(1, 10.0, 100, 10)])
    idle_s = apart.makespan_s - 2 * alone.makespan_s
    assert idle_s > 9.0
    assert apart.energy_j == pytest.approx(2 * alone.energy_j + model.static_w * idle_s, rel=1e-9)


def test_a_run_that_served_nothing_has_no_energy_per_token_and_an_infeasible_record():
    model = system("vllm-h100", "llama3-8b", changes={"devices.gpu.count": 1, "parallelism.tp": 1,
                                                      "parallelism.by_workload": {}})
    result = simulate_serving(model, [Request(0, 0.0, 400_000, 2)])
    assert result.output_tokens == 0 and result.unrunnable_ids == (0,)
    assert math.isnan(result.energy_per_token_j)
    record = result.record(11.06)
    assert not record.feasible and record.reason.startswith("1 of 1 requests ask for a prefill")
    assert "a prompt of 400000 tokens" in record.reason
    empty = simulate_serving(model, [])
    assert math.isnan(empty.energy_per_token_j) and empty.record().reason == "no request was served"


def test_simulate_takes_a_prefill_budget_and_reports_prefill_deferrals(tmp_path):
    trace = tmp_path / "burst.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join("0,3000,2\n" for _ in range(6)))
    run = CliRunner().invoke(main, ["simulate", "-s", "vllm-h100", "-w", "llama3-8b", "--trace", str(trace),
                                    "--max-prefill-tokens", "8192", "--json", "--trace-out",
                                    str(tmp_path / "t.json")])
    assert run.exit_code == 0, run.output
    metrics = json.loads(run.output)
    assert metrics["requests"] == 6 and metrics["prefill_deferrals"] == 0
    spans = [e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"] if e.get("ph") == "X"]
    assert max(e["args"]["prefill_tokens"] for e in spans) == 6000  # two 3000-token prompts within 8192
    refused = CliRunner().invoke(main, ["simulate", "-s", "vllm-h100", "-w", "llama3-8b", "--trace", str(trace),
                                        "--max-prefill-tokens", "0"])
    assert refused.exit_code == 2 and "--max-prefill-tokens" in refused.output


@dataclass
class MemoryToy:
    """One second an iteration; an iteration with prompts holds its requests' KV tokens plus `working` a new token
    and refuses more than `limit` (as `SystemModel.check_memory`): a prompt beyond it alone cannot run at all."""

    kv_capacity_bytes: float
    limit: float
    working: float = 0.5
    kv_bytes_per_token: float = 1.0
    static_w: float = 0.0
    name: str = "memory toy"

    def iteration(self, batch: Batch) -> IterationCost:
        prompts, contexts = batch.prefill_tokens, batch.decode_context_tokens
        if prompts:
            longest = max(prompts)
            held = sum(prompts) + sum(contexts) + self.working * (sum(prompts) + len(contexts))
            if longest * (1 + self.working) > self.limit or held > self.limit:
                raise UnrunnableOp("<toy>", "prefill", f"holds {held:g} of {self.limit:g}")
        return IterationCost(1.0)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(1, 12), st.integers(1, 8)), max_size=30),
       limit=st.integers(2, 30), capacity_tokens=st.integers(12, 40), mix=st.booleans(),
       budget=st.none() | st.integers(1, 24))
def test_memory_bound_iterations_serve_or_refuse_every_request_once(rows, limit, capacity_tokens, mix, budget):
    """Under a memory bound on whole iterations (the engine defers the latest prefill while each runs alone): every
    request is served or refused once, the refused are exactly those whose prompt (or recompute) cannot run alone,
    every iteration the engine ran fits, and the output tokens are the served requests'."""
    from archsim.systems.serving import ServingConfig

    requests = [Request(i, t, p, o) for i, (t, p, o) in enumerate(rows)]
    model = MemoryToy(capacity_tokens, limit)
    config = ServingConfig(page_tokens=1, mix_prefill_decode=mix, max_prefill_tokens=budget, watermark_fraction=0.0)
    result = simulate_serving(model, requests, config, trace=True)
    served = [r.id for r in result.requests]
    assert len(served) == len(set(served)) and not set(served) & set(result.rejected_ids)
    assert set(served) | set(result.rejected_ids) == {r.id for r in requests}
    runs_alone = limit / (1 + model.working)
    assert all(r.prompt_tokens <= runs_alone for r in requests if r.id in served)
    never_fits = {r.id for r in requests if r.prompt_tokens + r.output_tokens - 1 > capacity_tokens}
    assert {r.id for r in requests if r.prompt_tokens > runs_alone} - never_fits <= set(result.unrunnable_ids)
    assert result.output_tokens == sum(r.output_tokens for r in result.requests)
    assert all(it.prefill_tokens * (1 + model.working) <= limit or it.n_prefill == 0 for it in result.timeline)
    event(f"deferred: {result.prefill_deferrals > 0}")


def test_six_prompts_that_fit_two_at_a_time_are_served_with_deferrals():
    """Six 6-token prompts, a bound of 20 (a prompt alone holds 9, two 18 plus decodes' KV): all are served, the
    engine having sent prefills back to the queue."""
    from archsim.systems.serving import ServingConfig

    result = simulate_serving(MemoryToy(40, 20), [Request(i, 0.0, 6, 3) for i in range(6)],
                              ServingConfig(page_tokens=1, watermark_fraction=0.0))
    assert len(result.requests) == 6 and result.rejected_ids == () and result.prefill_deferrals > 0


def test_gaussian_lengths_keep_a_small_mean():
    """Clipped to [1, 2 x mean - 1], symmetric about the mean: at a mean of 2 tokens and a spread of the mean the
    sample mean is 2 (it had been 2.23 with the clip at 2 x mean)."""
    from archsim.systems.requests import gaussian_requests

    requests = gaussian_requests(100_000, 2, 12, 1.0, seed=0)
    assert {r.prompt_tokens for r in requests} == {1, 2, 3}
    assert sum(r.prompt_tokens for r in requests) / len(requests) == pytest.approx(2, abs=0.01)
    assert sum(r.output_tokens for r in requests) / len(requests) == pytest.approx(12, abs=0.1)


def test_an_unmixed_prefill_that_does_not_fit_beside_the_running_cache_waits_for_a_decode_step():
    """Prefills not mixed into decodes (review helper-219): a lone prefill that runs alone but not beside the KV the
    running requests hold is sent back and the running requests decode; the run had stopped with UnrunnableOp."""
    from archsim.systems.serving import ServingConfig

    model = system("vllm-h100", "llama3-8b", changes={"devices.gpu.count": 1, "parallelism.tp": 1,
                                                      "parallelism.by_workload": {}})
    requests = [Request(0, 0.0, 200_000, 300), Request(1, 0.5, 200_000, 2)]
    result = simulate_serving(model, requests, ServingConfig(mix_prefill_decode=False))
    assert [r.id for r in result.requests] == [0, 1] and result.prefill_deferrals > 0
    assert result.requests[1].first_token_s > result.requests[0].finish_s  # it waited for request 0's cache


def test_a_model_without_the_protocols_numbers_is_refused_naming_them():
    """An IterationModel written before static_w was read (or with a negative one) gets one clear SpecError, not an
    AttributeError at the end of a run."""
    from archsim.errors import SpecError

    class Old:
        name, kv_bytes_per_token, kv_capacity_bytes = "old", 1.0, 100.0

        def iteration(self, batch: Batch) -> IterationCost:
            return IterationCost(1.0)

    with pytest.raises(SpecError, match="Old has no static_w"):
        simulate_serving(Old(), [Request(0, 0.0, 4, 2)])
    for power in (-1.0, math.inf, None, "5", True):
        with pytest.raises(SpecError, match="static_w: expected a finite power >= 0"):
            simulate_serving(StaticToy(static_w=power), [Request(0, 0.0, 4, 2)])
