"""The serving simulator: request conservation under generated traces, a hand-traced preemption, the request
generators and the trace reader."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from archsim.errors import SpecError
from archsim.systems import serving
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.kv_cache import PagedKVCache
from archsim.systems.requests import LENGTH_PRESETS, Request, poisson_requests, read_trace, sample_lengths
from archsim.systems.serving import ServingConfig, simulate_serving


@dataclass
class LinearToy:
    """Iteration time linear in tokens: `fixed_s` + `per_token_s` x (prompt tokens + decode contexts); energy
    1 J per simulated second; the "npu" unit busy half the time. Records the batches it is asked about."""

    kv_capacity_bytes: float
    kv_bytes_per_token: float = 1.0
    static_w: float = 0.0
    fixed_s: float = 1.0
    per_token_s: float = 0.0
    name: str = "toy"
    batches: list[Batch] = field(default_factory=list)

    def iteration(self, batch: Batch) -> IterationCost:
        self.batches.append(batch)
        time_s = self.time_s(batch)
        return IterationCost(time_s, energy_j=time_s, busy_s={"npu": time_s / 2})

    def time_s(self, batch: Batch) -> float:
        return self.fixed_s + self.per_token_s * (sum(batch.prefill_tokens) + sum(batch.decode_context_tokens))


# ----- conservation under generated traces -----

request_rows = st.lists(st.tuples(st.floats(0.0, 2.0), st.integers(1, 12), st.integers(1, 12)), max_size=40)
configs = st.builds(ServingConfig, max_batch=st.integers(1, 8), page_tokens=st.integers(1, 4),
                    max_prefill_tokens=st.none() | st.integers(1, 24), mix_prefill_decode=st.booleans(),
                    watermark_fraction=st.sampled_from([0.0, 0.1]))


@settings(max_examples=300, deadline=None)
@given(rows=request_rows, config=configs, capacity_tokens=st.integers(4, 40))
@example(rows=[(0.0, 1, 3), (2.0, 3, 1), (2.0, 3, 1), (2.0, 4, 1)],  # a probe of 3 tokens, then two prefills of 3
         config=ServingConfig(max_batch=3, page_tokens=1, mix_prefill_decode=False, watermark_fraction=0.0),
         capacity_tokens=5)
def test_every_admitted_request_finishes_once_and_pages_stay_within_capacity(rows, config, capacity_tokens):
    requests = [Request(i, t, p, o) for i, (t, p, o) in enumerate(rows)]
    model = LinearToy(kv_capacity_bytes=capacity_tokens, per_token_s=0.01)
    probes: list[Batch] = []  # the lone prefills the engine costs to learn whether they run (`_Prefills.runs`)
    runs = serving._Prefills.runs

    def spy(prefills, tokens: int) -> bool:
        asked = len(model.batches)
        answer = runs(prefills, tokens)
        probes.extend(model.batches[asked:])
        return answer

    with mock.patch.object(serving._Prefills, "runs", spy):
        result = simulate_serving(model, requests, config, trace=True)

    cache = PagedKVCache(result.capacity_pages, config.page_tokens)
    assert result.capacity_pages == capacity_tokens // config.page_tokens
    never_fits = {r.id for r in requests
                  if cache.pages_for(r.prompt_tokens + r.output_tokens - 1) > cache.capacity_pages}
    finished = [r.id for r in result.requests]
    assert len(finished) == len(set(finished)), "a request finished twice"
    assert set(result.rejected_ids) == never_fits
    assert set(finished) == {r.id for r in requests} - never_fits

    # Tokens: every iteration emits one token per request in its batch; together they are exactly the requested ones.
    emitted = sum(it.n_prefill + it.n_decode for it in result.timeline)
    assert emitted == sum(r.output_tokens for r in requests if r.id not in never_fits) == result.output_tokens
    ran = [b for b in model.batches if not any(b is probe for probe in probes)]
    assert [(len(b.prefill_tokens), len(b.decode_context_tokens), sum(b.prefill_tokens)) for b in ran] == [
        (it.n_prefill, it.n_decode, it.prefill_tokens) for it in result.timeline]  # every other batch an iteration
    assert len(ran) == result.iterations
    # beside the iterations, only lone prefills, each longer than any asked before (a queue's head blocked on pages)
    assert all(len(b.prefill_tokens) == 1 and not b.decode_context_tokens for b in probes)
    assert all(a.prefill_tokens < b.prefill_tokens for a, b in itertools.pairwise(probes))
    assert all(len(b.prefill_tokens) + len(b.decode_context_tokens) <= config.max_batch for b in model.batches)

    assert result.peak_pages <= result.capacity_pages
    assert all(it.pages_used <= result.capacity_pages for it in result.timeline)
    # The engine adds a page only to a request crossing a page boundary: whenever every running request is in the
    # batch (prefills mixed in, or a decode iteration), the pages in use are ceil(tokens / page) of each one's
    # prompt or context, counted afresh here, whether or not the iteration preempted.
    for batch, it in zip(ran, result.timeline, strict=True):
        if config.mix_prefill_decode or not batch.prefill_tokens:
            assert it.pages_used == sum(cache.pages_for(t) for t in (*batch.prefill_tokens,
                                                                     *batch.decode_context_tokens))
    assert all(a.end_s <= b.start_s for a, b in zip(result.timeline, result.timeline[1:], strict=False))
    assert sum(r.preemptions for r in result.requests) == result.preemptions
    event(f"preempted: {result.preemptions > 0}")
    for r in result.requests:
        assert r.arrival_s < r.first_token_s <= r.finish_s


def test_preemption_happens_in_generated_like_traces():
    """Guard that the property test's regime does preempt: 20 requests of 10 + 10 tokens at once, 30 token pages."""
    requests = [Request(i, 0.0, 10, 10) for i in range(20)]
    result = simulate_serving(LinearToy(kv_capacity_bytes=30), requests, ServingConfig(max_batch=8, page_tokens=1,
                                                                                       watermark_fraction=0.0))
    assert result.preemptions > 0
    assert len(result.requests) == 20
    assert any(r.preemptions for r in result.requests)


# ----- a hand-traced schedule -----

def test_hand_traced_preemption_by_recompute():
    """Two requests A, B (prompt 2, output 4) at t = 0, a 6-token cache of 1-token pages, 1 s per iteration.
    By hand: it 1 prefills both (4 pages, tokens A1 B1); it 2 decodes both at context 3 (6 pages); it 3 has no page
    for A's context 4, so B (admitted last) is preempted and A decodes alone; it 4 A decodes its last token while B's
    recompute prefill (2 prompt + 2 emitted = 4 tokens) does not fit the 1 free page (so the engine asks once whether
    a lone 4-token prefill runs: it does, and B waits); it 5 B re-prefills 4 tokens and emits B3; it 6 B decodes at
    context 5 and finishes."""
    model = LinearToy(kv_capacity_bytes=6)
    requests = [Request(0, 0.0, 2, 4), Request(1, 0.0, 2, 4)]
    result = simulate_serving(model, requests, ServingConfig(page_tokens=1, watermark_fraction=0.0), trace=True)

    assert model.batches == [Batch((2, 2), ()), Batch((), (3, 3)), Batch((), (4,)), Batch((4,), ()),
                             Batch((), (5,)), Batch((4,), ()), Batch((), (5,))]
    a, b = result.requests
    assert (a.first_token_s, a.finish_s, a.preemptions) == (1.0, 4.0, 0)
    assert (b.first_token_s, b.finish_s, b.preemptions) == (1.0, 6.0, 1)
    assert [it.pages_used for it in result.timeline] == [4, 6, 4, 5, 4, 5]
    # 8 tokens in 6 s; TTFT 1 s for both; gaps A: 1 1 1, B: 1 3 1 -> p50 1 s, p99 1 + 0.95 x 2 = 2.9 s (linear ranks).
    assert result.throughput_tok_s == pytest.approx(8 / 6)
    assert (result.ttft_p50_s, result.ttft_p99_s) == (1.0, 1.0)
    assert result.tbt_p50_s == 1.0
    assert result.tbt_p99_s == pytest.approx(2.9)
    # 6 iterations of 1 J over 8 tokens; npu busy half of each 1 s iteration, no idle time.
    assert result.energy_per_token_j == pytest.approx(6 / 8)
    assert result.utilization["npu"] == pytest.approx(0.5)


def test_prefill_only_iterations_hold_the_decodes_back():
    """vLLM's original policy: the iteration admitting B (arriving at 0.5 s, during A's prefill) runs B's prefill
    alone, so A's first decode waits one iteration, its 3 tokens of KV held beside B's prefill."""
    model = LinearToy(kv_capacity_bytes=100)
    requests = [Request(0, 0.0, 3, 3), Request(1, 0.5, 5, 2)]
    simulate_serving(model, requests, ServingConfig(mix_prefill_decode=False))
    assert model.batches == [Batch((3,), ()), Batch((5,), (), held_kv_tokens=3), Batch((), (4, 6)), Batch((), (5,))]


def test_a_request_too_long_for_the_cache_is_rejected_not_admitted():
    result = simulate_serving(LinearToy(kv_capacity_bytes=10), [Request(0, 0.0, 8, 4), Request(1, 0.0, 8, 3)],
                              ServingConfig(page_tokens=1))
    assert result.rejected_ids == (0,)  # 8 + 4 - 1 = 11 tokens > 10; request 1 needs exactly 10
    assert [r.id for r in result.requests] == [1]


# ----- request generators -----

def test_poisson_requests_are_seeded_and_have_the_stated_rate():
    a = poisson_requests(rate_per_s=10.0, n=2000, lengths="sharegpt", seed=7)
    assert a == poisson_requests(rate_per_s=10.0, n=2000, lengths="sharegpt", seed=7)
    assert a != poisson_requests(rate_per_s=10.0, n=2000, lengths="sharegpt", seed=8)
    arrivals = [r.arrival_s for r in a]
    assert arrivals == sorted(arrivals) and arrivals[0] > 0
    # 2,000 exponential gaps of mean 0.1 s: last arrival 200 s, sd sqrt(2000) x 0.1 = 4.5 s; 10% is over 4 sd.
    assert arrivals[-1] == pytest.approx(200.0, rel=0.10)


@pytest.mark.parametrize(("name", "prompt_mean", "output_mean"), [
    ("sharegpt", 80, 296), ("alpaca", 12, 56),  # pim.md §1.5
    ("azure-conv", 1154.7, 211.1), ("azure-code", 2047.8, 27.9), ("kimi-conv", 12035.1, 342.6),
    ("kimi-ta", 8560.0, 182.1),  # pim.md §3.5 (Lamina's traces)
])
def test_length_presets_keep_the_dataset_means(name, prompt_mean, output_mean):
    """The datasets' means. With 20,000 draws of a sigma-1 lognormal the standard error of a mean is about
    1.3 x mean / 141 < 1%, so 5% leaves over 5 standard errors (seed 0 is within 1 % for Lamina's traces)."""
    import random

    dist = LENGTH_PRESETS[name]
    pairs = sample_lengths(dist, 20_000, random.Random(0))
    prompts, outputs = [p for p, _ in pairs], [o for _, o in pairs]
    assert sum(prompts) / len(prompts) == pytest.approx(prompt_mean, rel=0.05)
    assert sum(outputs) / len(outputs) == pytest.approx(output_mean, rel=0.05)
    assert min(prompts) >= 1 and max(prompts) <= dist.max_prompt_tokens
    assert min(outputs) >= 1 and max(outputs) <= dist.max_output_tokens


# ----- trace files -----

def test_read_trace_reads_rows_in_file_order(tmp_path: Path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0.5,80,296\n0.25, 12 ,56\n")
    assert read_trace(path) == (Request(0, 0.5, 80, 296), Request(1, 0.25, 12, 56))


@pytest.mark.parametrize(("text", "fragments"), [
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,abc,5\n", ["line 3: prompt_tokens", "integer >= 1", "'abc'"]),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,0\n", ["line 2: output_tokens", "integer >= 1", "'0'"]),
    ("arrival_s,prompt_tokens,output_tokens\n0,10.5,3\n", ["line 2: prompt_tokens", "integer >= 1"]),
    ("arrival_s,prompt_tokens,output_tokens\n-1,10,3\n", ["line 2: arrival_s", "seconds >= 0", "'-1'"]),
    ("arrival_s,prompt_tokens,output_tokens\nnan,10,3\n", ["line 2: arrival_s", "finite"]),
    ("arrival_s,prompt_tokens,output_tokens\n0,10\n", ["line 2", "expected 3 fields, got 2"]),
    ("arrival,prompt_tokens,output_tokens\n0,10,3\n", ["line 1", "expected the header arrival_s,prompt_tokens"]),
    ("arrival_s,prompt_tokens,output_tokens\n", ["no requests"]),
    ("", ["line 1", "empty file"]),
])
def test_read_trace_rejects_bad_rows_naming_the_field(tmp_path: Path, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SpecError) as error:
        read_trace(path)
    assert error.value.source == str(path)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_bad_requests_and_configs_raise_spec_errors():
    with pytest.raises(SpecError, match="request 0: output_tokens"):
        simulate_serving(LinearToy(kv_capacity_bytes=10), [Request(0, 0.0, 3, 0)])
    with pytest.raises(SpecError, match=r"serving\.max_batch"):
        ServingConfig(max_batch=0)
    with pytest.raises(SpecError, match="rate_per_s"):
        poisson_requests(rate_per_s=0.0, n=10, lengths="alpaca", seed=0)


def test_no_requests_gives_an_empty_result():
    result = simulate_serving(LinearToy(kv_capacity_bytes=10), [])
    assert (result.iterations, result.output_tokens, result.throughput_tok_s) == (0, 0, 0.0)
    assert math.isnan(result.ttft_p50_s)


def test_kv_cache_counts_pages_and_refuses_to_overflow():
    cache = PagedKVCache(capacity_pages=4, page_tokens=16)
    cache.grow(0, 17)  # ceil(17 / 16) = 2 pages
    cache.grow(0, 32)  # still 2 pages
    cache.grow(1, 20)  # 2 more: full
    assert (cache.used_pages, cache.free_pages, cache.fits(0, 33)) == (4, 0, False)
    with pytest.raises(RuntimeError, match="overflow"):
        cache.grow(0, 33)
    assert cache.free(0) == 2 and cache.used_pages == 2
    # Requests at a page boundary take one page each, all or none: with request 2's page, 1 page is free: not
    # enough for requests 1 and 2 (nothing changes); request 1 alone takes it, 3 pages, enough for 48 tokens
    cache.grow(2, 16)
    assert not cache.grow_one_page({1, 2}) and cache.used_pages == 3
    assert cache.grow_one_page({1}) and (cache.pages_of(1), cache.used_pages, cache.fits(1, 48)) == (3, 4, True)


# ----- caches of the serving loop (issue 17): what they remember equals what they would compute -----

def test_npu_per_op_terms_equal_a_fresh_device():
    """The NPU remembers each op's terms (`npu_device._terms`); a batch's cost from remembered terms equals the cost
    on an equal device that remembers nothing (the uncached `_cost`), to the bit."""
    from dataclasses import replace

    from archsim.systems import neupims, npu_device

    model = neupims.system("npu-only", "gpt3-7b")
    device = model.devices["npu"]
    first = model.decode_attention([5, 300, 17])
    npu_device._cost.__wrapped__(device, tuple(first), 1.0)  # remembers these ops' terms
    batch = (*model.decode_attention([17, 900, 300]), *model.ops("decode", 3, 1))
    primed = npu_device._cost.__wrapped__(device, batch, 1.0)
    fresh = npu_device._cost.__wrapped__(replace(device), batch, 1.0)
    assert primed == fresh


def test_greedy_zero_loads_stay_on_the_least_loaded_channel():
    """Algorithm 2 by hand, 2 channels, loads (0, 0, 5): 5 goes to channel 0; both zeros then find channel 1 at load
    0 (channel 0 holds 5), so (1, 1, 0): a zero load does not take the next empty channel."""
    from archsim.systems.pim import greedy_channels

    assert greedy_channels([0.0, 0.0, 5.0], 2) == [1, 1, 0]
    # positive loads, 3 channels: 9, 7, 4 fill channels 0, 1, 2; 3 joins channel 2 (4), 1 then channel 1 (7)
    assert greedy_channels([3.0, 9.0, 1.0, 7.0, 4.0], 3) == [2, 0, 1, 1, 2]


def _greedy_by_argsort(loads, channels):
    """Algorithm 2 as numpy's stable argsort of -loads orders the requests, the first `channels` of positive loads
    onto channels 0, 1, ..., the rest by the heap (the form `greedy_channels` had before its sort in Python)."""
    import heapq

    import numpy as np

    loads = np.asarray(loads, dtype=float)
    order = np.argsort(-loads, kind="stable")
    assignment = np.zeros(len(loads), dtype=int)
    head = channels if bool((loads > 0).all()) else 0
    assignment[order[:head]] = np.arange(len(order[:head]))
    heap = [(loads[i], ch) for ch, i in enumerate(order[:head].tolist())]
    heap += [(0.0, ch) for ch in range(len(heap), channels)]
    heapq.heapify(heap)
    for i in order[head:].tolist():
        load, ch = heap[0]
        assignment[i] = ch
        heapq.heapreplace(heap, (load + loads[i], ch))
    return assignment


def test_placement_python_paths_equal_numpy():
    """A bank-PIM placement works per request in Python: Algorithm 2's sort (`greedy_channels`), the channel loads,
    the slowest channel (`gemv_s()`) and the mean load (`mean_load_s`). They equal numpy's stable argsort with the
    heap, `pim.channel_loads` (a bincount), its max and its mean, to the bit: positive loads with and without ties,
    zeros and a NaN (the argsort path), fewer and more requests than channels; and a NeuPIMs placement of serving
    contexts under both channel policies."""
    import numpy as np

    from archsim.systems import neupims
    from archsim.systems import pim as pim_model

    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 31, 32, 33, 90, 300):
        for loads in (rng.random(n) * 1e-4, rng.integers(1, 4, n).astype(float), np.append(rng.random(n), 0.0),
                      np.append(rng.random(n), np.nan)):
            assert pim_model.greedy_channels(loads.tolist(), 32) == _greedy_by_argsort(loads, 32).tolist()
    for mode in ("neupims", "npu+pim"):
        model = neupims.system(mode, "gpt3-7b", channel_check=False)  # 300 requests overfill a channel
        device = next(d for d in model.devices.values() if d.kind == "bank-pim")
        for n in (1, 23, 32, 40, 300):
            contexts = tuple(int(c) for c in rng.integers(1, 5000, n))
            placement = device.placement(model.decode_ops(contexts), "arrival", contexts)
            loads = pim_model.channel_loads(placement.request_s, placement.channel, placement.channels)
            assert placement.loads_s().tolist() == loads.tolist()
            assert placement.mean_load_s() == float(loads.mean())
            if not placement.issue_bound:
                assert placement.gemv_s() == float(loads.max())


def test_sub_batches_gemv_s_equals_each_sub_batch_alone():
    """The SBI layer's one-pass GEMV times of the two sub-batches equal `gemv_s(0)` and `gemv_s(1)` to the bit."""
    import numpy as np

    from archsim.systems import neupims

    model = neupims.system("neupims", "gpt3-7b", channel_check=False)  # 300 requests overfill a channel
    pim = next(d for d in model.devices.values() if d.kind == "bank-pim")
    contexts = np.random.default_rng(0).integers(1, 3000, 300).astype(float)
    placement = pim.placement(model.decode_attention(contexts.tolist()), "arrival", contexts)
    assert placement.sub_batches_gemv_s() == (placement.gemv_s(0), placement.gemv_s(1))


def test_sub_batch_partition_one_request_per_channel():
    """Algorithm 3 by hand: channels 3, 0, 2, 1 hold one request each, so all four are odd and the k-th odd channel
    (in channel order) takes sub-batch k % 2: channel 3 -> 1, 0 -> 0, 2 -> 0, 1 -> 1, in any visiting order. With
    channels 0 and 2 of 4 holding one each, channel 2 is the second odd one: sub-batch 1, not 2 % 2."""
    from archsim.systems.pim import sub_batch_partition

    assert sub_batch_partition([3, 0, 2, 1], 4).tolist() == [1, 0, 0, 1]
    assert sub_batch_partition([3, 0, 2, 1], 4, [2, 0, 3, 1]).tolist() == [1, 0, 0, 1]
    assert sub_batch_partition([0, 2], 4).tolist() == [0, 1]


def test_placement_tables_equal_the_per_request_functions():
    """A bank-PIM's placement reads each request's GEMV, logits and issue seconds and its greedy estimate from
    tables it remembers per (heads, kv_heads, head_dim, size); they equal `pim`'s functions of the contexts
    themselves, to the bit, with commands issued one per cycle and Algorithm 1 timing (Llama3-70B: grouped-query
    attention, 8 query heads per K/V head on a device)."""
    import numpy as np

    from archsim.systems import neupims
    from archsim.systems import pim as pim_model

    for changes in ({"devices.pim.command_issue": "one-per-cycle"}, {"devices.pim.gemv_timing": "algorithm1"}):
        model = neupims.system("neupims", "llama3-70b", changes)
        device = next(d for d in model.devices.values() if d.kind == "bank-pim")
        contexts = np.random.default_rng(1).integers(1, 9000, 77).astype(float)
        ops = model.decode_attention(contexts.tolist())
        params = ops[0].binding.params
        heads, kv_heads, head_dim = int(params["heads"]), int(params["kv_heads"]), int(params["head_dim"])
        passes, clock_hz = heads // kv_heads, device.spec.clock_hz
        assert passes == 8
        placement = device.placement(ops, "arrival", contexts)
        logits, attend = pim_model.gemv_parts_cycles(device.spec, contexts, kv_heads, head_dim)
        assert placement.request_s.tolist() == (passes * (logits + attend) / clock_hz).tolist()
        assert placement.logits_s.tolist() == (passes * logits / clock_hz).tolist()
        estimate = passes * pim_model.algorithm1_cycles(device.spec, contexts, kv_heads, head_dim)
        assert placement.channel.tolist() == pim_model.greedy_channels(estimate.tolist(), device.spec.channels)
        if placement.issue_bound:
            commands = pim_model.newton_commands(device.spec, contexts, kv_heads, head_dim)
            assert [s.tolist() for s in placement.issue_s] == [(passes * n / clock_hz).tolist() for n in commands]


def test_point_ops_remembered_per_einsum_equal_counting_again():
    """`analyze` remembers each Einsum's ops per point (`analysis._sorted_point_ops`); they equal a fresh count
    (another unary-op table with the same entries is never remembered), and two analyses agree."""
    from archsim.cascade import analysis
    from archsim.cascade.ops import DEFAULT_UNARY_OPS
    from archsim.systems import neupims

    model = neupims.system("neupims", "gpt3-7b")
    op = model.attention("decode", 777)
    for einsum in op.binding.cascade.einsums:
        assert analysis._sorted_point_ops(einsum) == analysis._sorted_point_ops(einsum, dict(DEFAULT_UNARY_OPS))
    assert analysis.analyze(op.binding).ops == analysis.analyze(op.binding).ops == op.analysis.ops


def test_a_run_freezes_the_older_objects_and_undoes_it():
    """During a run the objects alive before it are frozen out of the collector's passes; after it nothing is left
    frozen, and a caller's own freeze is neither undone nor repeated."""
    import gc

    seen: list[int] = []

    class Spy(LinearToy):
        def iteration(self, batch: Batch) -> IterationCost:
            seen.append(gc.get_freeze_count())
            return super().iteration(batch)

    requests = [Request(0, 0.0, 3, 3)]
    simulate_serving(Spy(kv_capacity_bytes=100), requests)
    assert min(seen) > 0 and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen, seen[:] = gc.get_freeze_count(), []
        simulate_serving(Spy(kv_capacity_bytes=100), requests)
        assert seen and set(seen) == {frozen} and gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
