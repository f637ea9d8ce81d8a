"""Guards for mutants a mutation audit found surviving the suite, each pinned against a hand derivation or the
model's own building blocks:

- LASP-1's critical path: the first state GEMM, the P - 1 hops, P - 2 hops' compute beside them, then the last
  device's own (`seqpar_schemes._lasp`);
- the plain causal ring skips a later device's block (it costs nothing), zigzag and stripe shrink or reshape it
  (`seqpar_schemes._ring_work`);
- the serving makespan runs from the first arrival, and the TTFT and TBT percentiles are the 50th and 99th, linear
  between ranks (`serving.simulate_serving`);
- divide-and-conquer offload sends the k, v share after q on the same link (`offload.OffloadLayer`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pytest
from test_serving import LinearToy

from archsim import library
from archsim.systems import collectives
from archsim.systems.iteration import Batch
from archsim.systems.offload import OffloadLayer
from archsim.systems.requests import Request
from archsim.systems.seqpar import _compute, parallel_time
from archsim.systems.seqpar_compute import WORD_BYTES
from archsim.systems.seqpar_schemes import ACCUMULATOR_BYTES, _ring_work
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.serving import simulate_serving
from archsim.systems.topology import load_topology

NVLINK, DGX = load_topology("a100-nvlink"), load_topology("dgx-a100")
LLAMA = library.load_workload_spec("llama3-8b")
LINEAR = library.load_workload_spec("linear-llama3-1b")


# --- LASP-1's chain ----------------------------------------------------------------------------------------------


def _lasp1_by_hand(spec: ParallelSpec, links: list) -> tuple[float, bool]:
    """The module docstring's LASP-1 from `DeviceCompute`'s pieces: the first device's K^T V, the P - 1 hops (each
    over its link, the state in fp32, twice with the backward's dM), P - 2 hops' products beside them, then the
    last device's own product after the later of its state's arrival and its own chunk and K^T V. Also whether the
    chain (not the device's own work) sets the time."""
    p, c = spec.devices, spec.seq_len // spec.devices
    compute = _compute(spec)
    passes = 2 if spec.direction == "fwd+bwd" else 1
    state = compute.lasp_state_bytes(spec.seq_len, p) * ACCUMULATOR_BYTES / WORD_BYTES
    kv_state = compute.state_gemm_s(c)
    hop_products = compute.state_gemm_s(c) + compute.elementwise_s(3 * state) * passes
    hops = sum(collectives.send_recv_s(state, link) for link in links) * passes
    own = compute.linear_chunk_s(c) + kv_state
    chain = kv_state + hops + (p - 2) * hop_products
    return max(own, chain) + hop_products, chain > own


@pytest.mark.parametrize("devices, seq_len, topology, direction, chain_sets_time", [
    (2, 65536, NVLINK, "fwd", False),
    (4, 16384, NVLINK, "fwd", False),
    (8, 16384, NVLINK, "fwd", True),
    (8, 16384, NVLINK, "fwd+bwd", False),
    (16, 16384, DGX, "fwd", True),  # 14 hops over NVLink, one between the nodes
    (16, 16384, DGX, "fwd+bwd", True),
])
def test_lasp1_time_is_its_chain_of_p_minus_1_hops_and_products(devices, seq_len, topology, direction,
                                                                 chain_sets_time) -> None:
    # a training step without checkpointing: layer checkpointing adds the recomputed forward (its own test,
    # tests/test_seqpar_recompute_s36.py)
    training = {"checkpointing": "none"} if direction == "fwd+bwd" else {}
    spec = ParallelSpec("lasp1", devices, LINEAR, seq_len, topology.gpu, topology, direction=direction, **training)
    nvlink = topology.levels[0].link
    links = [nvlink] * (devices - 1) if devices <= 8 else [nvlink] * 7 + [topology.levels[1].link] + [nvlink] * 7
    expected, chain_dominates = _lasp1_by_hand(spec, links)
    assert parallel_time(spec, reference=False).time_s == pytest.approx(expected, rel=1e-12)
    assert chain_dominates == chain_sets_time  # where the chain sets the time, its P - 2 hops' products show


# --- the ring's blocks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [2, 4, 8])
def test_causal_ring_blocks_skip_later_devices_and_zigzag_stripe_reshape_them(p: int) -> None:
    """compute[d][s] with device d holding device (d - s) mod P's block: own block (s = 0) a causal c x c call;
    an earlier device's (s <= d) a full c x c call in the ring, c x c/2 in zigzag, causal-shaped in stripe; a later
    device's (s > d) skipped in the ring (0), c/2 x c in zigzag, causal-shaped in stripe."""
    c = 4096
    compute = _compute(ParallelSpec("ring", p, LLAMA, p * c, NVLINK.gpu, NVLINK))
    diagonal, full = compute.attention_s(c, c, True), compute.attention_s(c, c, False)
    assert 0.0 < diagonal < full
    blocks = {"ring": (full, 0.0),
              "zigzag": (compute.attention_s(c, c // 2, False), compute.attention_s(c // 2, c, False)),
              "stripe": (diagonal, diagonal)}
    for layout, (earlier, later) in blocks.items():
        work = _ring_work(layout, p, c, True, compute)
        for s in range(p):
            expected = [diagonal if s == 0 else earlier if s <= d else later for d in range(p)]
            assert work.column(s).tolist() == pytest.approx(expected, rel=1e-12), (layout, s)
        # the first device works its own block only in the ring: one causal call over the P steps
        assert work.row_sums()[0] == pytest.approx(diagonal + (p - 1) * later, rel=1e-12)


# --- serving metrics ---------------------------------------------------------------------------------------------


@dataclass
class DoublingToy(LinearToy):
    """Iteration i (0-based) takes 2^i s whatever its batch; as `LinearToy` 1 J per simulated second and the "npu"
    unit busy half the time; `static_w` idle power; a KV cache of a million tokens."""

    kv_capacity_bytes: float = 1e6
    static_w: float = 1.0
    name: str = "doubling-toy"

    def time_s(self, batch: Batch) -> float:
        return 2.0 ** (len(self.batches) - 1)  # `iteration` has recorded this batch


# A (at 0, 5 tokens), B (at 0.5, 3 tokens), C (at 2.5, 2 tokens), one-token prompts, all fitting. By hand: the
# iterations are [0, 1] (A's prefill), [1, 3] (A, B), [3, 7] (A, B, C), [7, 15] (A, B, C: B and C finish),
# [15, 31] (A finishes). Tokens: A at 1, 3, 7, 15, 31; B at 3, 7, 15; C at 7, 15.
TRACE = [Request(0, 0.0, 1, 5), Request(1, 0.5, 1, 3), Request(2, 2.5, 1, 2)]
TOKENS_S = {0: [1.0, 3.0, 7.0, 15.0, 31.0], 1: [3.0, 7.0, 15.0], 2: [7.0, 15.0]}


def _served(shift_s: float = 0.0):
    model = DoublingToy()
    result = simulate_serving(model, [replace(r, arrival_s=r.arrival_s + shift_s) for r in TRACE])
    assert len(model.batches) == result.iterations == 5  # the toy's clock counts only the run's iterations
    return result


def test_serving_percentiles_are_the_50th_and_99th_of_the_hand_traced_ttft_and_tbt() -> None:
    """TTFT = first token - arrival; TBT = every gap between a request's consecutive tokens; percentiles linear
    between ranks (numpy's default). The hand-traced samples have distinct top values, so a 95th percentile (or any
    other) would not pass for the 99th."""
    result = _served()
    assert {r.id: (r.first_token_s, r.finish_s) for r in result.requests} == {
        i: (tokens[0], tokens[-1]) for i, tokens in TOKENS_S.items()}
    ttft = [TOKENS_S[r.id][0] - r.arrival_s for r in TRACE]  # 1, 2.5, 4.5
    tbt = [b - a for tokens in TOKENS_S.values() for a, b in itertools.pairwise(tokens)]
    assert sorted(tbt) == [2.0, 4.0, 4.0, 8.0, 8.0, 8.0, 16.0]
    assert result.ttft_p50_s == pytest.approx(2.5) and result.ttft_p99_s == pytest.approx(4.46)
    assert result.tbt_p50_s == pytest.approx(8.0) and result.tbt_p99_s == pytest.approx(15.52)
    for q, ttft_q, tbt_q in ((50, result.ttft_p50_s, result.tbt_p50_s), (99, result.ttft_p99_s, result.tbt_p99_s)):
        assert ttft_q == pytest.approx(float(np.percentile(ttft, q)), rel=1e-12)
        assert tbt_q == pytest.approx(float(np.percentile(tbt, q)), rel=1e-12)
    assert result.ttft_p99_s != pytest.approx(float(np.percentile(ttft, 95)))
    assert result.tbt_p99_s != pytest.approx(float(np.percentile(tbt, 95)))


def test_serving_metrics_do_not_move_when_every_arrival_shifts() -> None:
    """makespan = last finish - first arrival: 31 s, whenever the trace starts. Shifting every arrival by 100 s
    (the engine idle before the first) moves no metric: throughput 10 tokens / 31 s, utilization 1/2, energy 31 J
    of iterations and no idle time inside the makespan, TTFT and TBT."""
    base, shifted = _served(), _served(100.0)
    assert base.makespan_s == pytest.approx(31.0) and shifted.makespan_s == pytest.approx(31.0)
    for result in (base, shifted):
        assert result.output_tokens == 10
        assert result.throughput_tok_s == pytest.approx(10 / 31)
        assert result.utilization == pytest.approx({"npu": 0.5})
        assert result.energy_j == pytest.approx(31.0)
        assert result.energy_per_token_j == pytest.approx(3.1)
    for metric in ("ttft_p50_s", "ttft_p99_s", "tbt_p50_s", "tbt_p99_s"):
        assert getattr(shifted, metric) == pytest.approx(getattr(base, metric), rel=1e-12), metric


# --- divide-and-conquer offload ----------------------------------------------------------------------------------


def test_divide_and_conquer_sends_kv_after_q_on_the_same_link() -> None:
    """q's wire (8 s) outlasts the k, v projection (1 s): the k, v message waits for the link. By hand, from the
    start of the norm: q computed at 1 + 2 = 3, on the wire 3..11, at the pool at 11.5, history done at 11.75; k, v
    computed at 4 but sent at 11 (after q), on the wire 11..12, at the pool at 12.5; merge 12.5..13. Without
    divide-and-conquer: q, k, v sent together after 4, at the pool at 4 + 0.5 + 8 + 1 = 13.5, attention to 17.5."""
    layer = OffloadLayer(requests=1, norm_s=1.0, q_s=2.0, kv_s=1.0, post_s=3.0, attention_s=4.0, history_s=0.25,
                         merge_s=0.5, latency_s=0.5, q_wire_s=8.0, kv_wire_s=1.0, out_wire_s=2.0)
    assert layer.attention_done_s(True) == pytest.approx(13.0)
    assert layer.cycle_s(True) == pytest.approx(13.0 + 0.5 + 2.0 + 3.0)
    assert layer.attention_done_s(False) == pytest.approx(17.5)
    # with the k, v projection the longer, k, v leaves when computed (5), at the pool at 6.5; q there at 4
    quick_q = replace(layer, q_wire_s=0.5, kv_s=2.0)
    assert quick_q.attention_done_s(True) == pytest.approx(6.5 + 0.5)
