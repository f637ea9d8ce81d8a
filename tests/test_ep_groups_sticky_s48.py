"""Expert parallelism's DP attention: a request keeps the EP group it was admitted to until it leaves.

SGLang's DP attention and vLLM's data-parallel attention keep a request on the rank that admitted it (its KV is in
that rank's memory) until it finishes or is preempted. The serving simulator had dealt running request i to group
i mod ep, and the system model had costed an iteration's decodes and prompts round-robin by position apart
(`sharding.ep_groups`), so when a request finished every later one moved group, and a prompt joining a running
batch was costed on group 0 beside the decodes while its pages went to the group it joined.

The cases run Mixtral-8x7B on `vllm-h100` at one GPU per group, tp 1, ep 2 (the smallest EP-capable set-up, as
tests/test_ep_group_kv_s47.py), and watch the split the system model costs (`system_model.ep_groups`, spied on).
Requests are told apart by their lengths: prompt p thousand tokens, contexts p thousand and a few.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from archsim.errors import SpecError
from archsim.library import load_workload_spec
from archsim.systems import system_model as system_model_module
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.requests import Request
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.system_spec import load_system, with_fields

sys.path.insert(0, str(Path(__file__).parent))
from test_serving import LinearToy


@pytest.fixture(scope="module")
def model():
    system = with_fields(load_system("vllm-h100"), {"devices.gpu.count": 1, "links.ep": "nvlink4-h100"})
    return system_model(system.with_options(tp=1, pp=1, ep=2), load_workload_spec("mixtral-8x7b"))


@pytest.fixture
def splits(monkeypatch):
    """Every split the system model costs or checks: per group with work, the requests (thousands of tokens)."""
    seen: list[list[set[int]]] = []
    deal = system_model_module.ep_groups

    def spy(*args, **kwargs):
        groups = deal(*args, **kwargs)
        seen.append([{int(t) // 1000 for t in (*contexts, *prompts)} for contexts, prompts in groups])
        return groups

    monkeypatch.setattr(system_model_module, "ep_groups", spy)
    return seen


def together(split: list[set[int]]) -> dict[tuple[int, int], bool]:
    """For each pair of requests in a split, whether they are costed on the same group."""
    where = {request: g for g, group in enumerate(split) for request in group}
    return {(a, b): where[a] == where[b] for a, b in itertools.combinations(sorted(where), 2)}


def test_a_request_keeps_its_group_when_an_earlier_one_finishes(model, splits):
    """Four requests at t = 0 (prompts 1,000 to 4,000 tokens), the second (2,000) done after 4 tokens: the others
    are costed on the groups they were admitted to (1 and 3 together, 4 apart) before and after it leaves. Dealt
    by position, 1 and 3 shared group 0 and then 1 and 4 did."""
    requests = [Request(i, 0.0, 1000 * (i + 1), 4 if i == 1 else 20) for i in range(4)]
    result = simulate_serving(model, requests)
    assert result.rejected_ids == () and result.preemptions == 0
    pairs: dict[tuple[int, int], set[bool]] = {}
    for split in splits:
        for pair, same in together(split).items():
            pairs.setdefault(pair, set()).add(same)
    assert pairs[(1, 3)] == {True}
    assert pairs[(1, 4)] == {False}
    assert pairs[(3, 4)] == {False}
    assert all(len(seen) == 1 for seen in pairs.values())


def test_a_prompt_is_costed_on_the_group_it_joins(model, splits):
    """Request 1 (1,000 tokens) runs alone on group 0; request 2 (2,000 tokens) arrives while it decodes and joins
    group 1, which has no request: its prefill is costed and checked there, never beside request 1's decode (dealt
    by position, the iteration's only prompt went to group 0)."""
    requests = [Request(0, 0.0, 1000, 10), Request(1, 1e-6, 2000, 10)]
    result = simulate_serving(model, requests)
    assert result.rejected_ids == ()
    assert any(len(split) == 2 for split in splits)
    assert all({1, 2} not in split for split in splits)


def test_a_short_pool_preempts_its_own_latest_request():
    """Two pools of 8 pages of 1 token (a toy: 1 s per iteration, no watermark). Requests 0 (2 prompt + 4 output
    tokens) and 1 (3 + 4) take groups 0 and 1; request 2 (2 + 4) ties them on requests and takes group 0, which has
    more free pages (6 to 5); request 3 (1 + 4, arriving at 1.5 s) joins the third iteration on group 1, the one with
    fewer requests. The fourth iteration's reservations need 5 + 5 tokens on group 0 (8 pages) and 6 + 2 on group
    1: group 0 is short and preempts its latest, request 2, never request 3, the latest admitted of all but group
    1's (dealt by position, request 3 went first, then request 2)."""
    toy = LinearToy(kv_capacity_bytes=16)
    toy.kv_groups = 2
    requests = [Request(0, 0.0, 2, 4), Request(1, 0.0, 3, 4), Request(2, 0.0, 2, 4), Request(3, 1.5, 1, 4)]
    result = simulate_serving(toy, requests, ServingConfig(page_tokens=1, watermark_fraction=0.0))
    assert result.rejected_ids == ()
    assert [r.preemptions for r in result.requests] == [0, 0, 1, 0]


@pytest.mark.parametrize(("mix", "expected"), [
    (True, (1.3229187901676984, 13.657499999999988, 632.9881046683756, 35, 440, 100, 1864.06)),
    (False, (1.2971710519394442, 11.006999999999977, 621.368283938499, 39, 477, 100, 1901.0600000000002)),
])
def test_one_group_is_unchanged(mix, expected):
    """Without EP the scheduler is as before the groups were sticky: a run with preemptions, its numbers as the
    code gave them before the change (throughput, TBT p99, TTFT p50, preemptions, iterations, peak pages,
    makespan), bit for bit."""
    rng = __import__("random").Random(48)
    requests = [Request(i, rng.uniform(0, 30), rng.randint(1, 60), rng.randint(1, 80)) for i in range(60)]
    toy = LinearToy(kv_capacity_bytes=400, fixed_s=1.0, per_token_s=0.01)
    r = simulate_serving(toy, requests, ServingConfig(max_batch=12, page_tokens=4, mix_prefill_decode=mix,
                                                      watermark_fraction=0.05))
    assert (r.throughput_tok_s, r.tbt_p99_s, r.ttft_p50_s, r.preemptions, r.iterations, r.peak_pages,
            r.makespan_s) == expected
    assert all(not b.decode_ep_groups and not b.prefill_ep_groups for b in toy.batches)


def test_a_batch_s_groups_match_its_requests():
    """A batch's groups are one whole number >= 0 per request, or none (dealt round-robin)."""
    assert Batch((5,), (7, 8), prefill_ep_groups=(1,), decode_ep_groups=(0, 1)).decode_ep_groups == (0, 1)
    with pytest.raises(SpecError, match="decode_ep_groups"):
        Batch((5,), (7, 8), prefill_ep_groups=(1,), decode_ep_groups=(0,))
    with pytest.raises(SpecError, match=r"prefill_ep_groups\[0\]"):
        Batch((5,), (), prefill_ep_groups=(-1,))
