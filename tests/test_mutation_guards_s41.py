"""Guards for formulas a mutation audit (session 41) found no test pinning: each test recomputes the quantity from
the docstring's formula and the inputs, independently of the line it guards, and compares to within float rounding.

- `roofline_point`'s exp ceiling: the exp rate x the call's FLOPs per exp executed, the exps counted here from the
  FA2 forward's tiles (one exp per score, one per query row per key tile for the online softmax's rescale).
- FA2 v2.0.9's decode (`_fa2_v209_decode`): its KV read from DRAM once when its CTAs fit one wave, once per query
  head of a GQA group when they take more.
- The ring's backward (`_ring`): its communication is the forward's P - 1 K/V hops, the backward's P - 1 hops of
  K, V and the fp32 dK, dV, and one more hop bringing dK, dV home.
- `dense` with tp > 1: two all-reduces per layer forward, the backward two more.
- MInference's vertical-slash estimate: the pad for the diagonal sums reads and writes the 64 x N fp32 scores.
- LASP-2 (`_lasp`): the prefix sum is an elementwise pass over the P gathered states read and their sum written.
- `step_time_s`: a tile step is never faster than the DRAM latency over the tiles a CTA keeps in flight (Little's
  law)."""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.gpu.roofline import roofline_point
from archsim.model.gpu import MAX_CTAS_PER_SM, AttentionCase, Segment, Tile, TiledLaunch, step_time_s, tile_times_s
from archsim.model.gpu_fa2_launch import fa2_fwd_tile
from archsim.model.gpu_flash_plans import fa2_plans
from archsim.model.gpu_kernels import family_of, predict
from archsim.model.gpu_sparse import SparsePattern, head_launches
from archsim.systems.seqpar import _compute
from archsim.systems.seqpar_schemes import SCHEME_TIMINGS, dense
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

H100 = load_gpu("h100-sxm5")
NVLINK = load_topology("a100-nvlink")  # one node: every group's link is its NVLink
LLAMA = library.load_workload_spec("llama3-8b")  # 32 query heads, 8 KV heads of 128, hidden 4096
LINEAR = library.load_workload_spec("linear-llama3-1b")  # 16 heads of 128, linear attention
BF16_BYTES, FP32_BYTES = 2, 4


def _message_s(message_bytes: float, link) -> float:
    """Alpha-beta: one message of `message_bytes` over `link`."""
    return link.latency_s + message_bytes / link.bytes_per_s_per_direction


# --- G18: the exp ceiling of a roofline point --------------------------------------------------------------------


def test_exp_ceiling_is_the_exp_rate_times_the_fa2_forwards_flops_per_exp() -> None:
    """A non-causal FA2 forward at head_dim 64 runs 128 x 128 tiles (`fa2_fwd_tile`'s one tile for it), N a multiple of
    both: every one of the B H N^2 scores costs an exp, and every query row one more per key tile (the online
    softmax's rescale, exp(m_old - m_new)): B H N (N / 128) exps. FLOPs 4 B H N^2 d (the benchmark convention)."""
    tile = fa2_fwd_tile(64, False, H100)
    block_m, block_n = tile.block_m, tile.block_n
    batch, heads, n, d = 1, 2, 1024, 64
    assert n % block_m == 0 and n % block_n == 0
    case = AttentionCase("fwd", batch, heads, heads, d, n, False, "fp16")
    result = predict("FlashAttention-2", case, H100, load_calibration().family_params(family_of("FlashAttention-2")))
    assert result.feasible
    exps = batch * heads * n * n + batch * heads * n * (n // block_n)
    flops = 4.0 * batch * heads * n * n * d
    point = roofline_point("prefill fwd FA2", result, H100)
    assert point.exp_ceiling_flops_per_s == pytest.approx(H100.exp_per_s * flops / exps, rel=1e-9)


# --- G16: FA2 v2.0.9's decode KV traffic -------------------------------------------------------------------------


@pytest.mark.parametrize("batch, waves", [(2, "one"), (320, "several")])
def test_v209_decode_rereads_the_kv_per_group_head_only_beyond_one_wave(batch: int, waves: str) -> None:
    """A CTA per (batch, query head). At most one CTA per SM (2 x 32 = 64 <= 132 SMs) the CTAs run in one wave and
    a KV head's blocks are read from DRAM once for its group; beyond every slot (320 x 32 > 132 SMs x
    MAX_CTAS_PER_SM), a group's query heads 320 CTAs apart (more than a wave) and a KV head's slices over the batch
    (320 x 0.5 MB) beyond the 50 MB L2, each of its group's query heads reads them again
    (`gpu_flash_plans._v209_kv_read_bytes`). DRAM: that KV, plus q and o per CTA."""
    heads, kv_heads, d, n, e = 32, 8, 128, 1024, 2  # fp16 words
    ctas = batch * heads
    assert ctas <= H100.sm_count if waves == "one" else ctas > H100.sm_count * MAX_CTAS_PER_SM
    case = AttentionCase("decode", batch, heads, kv_heads, d, n, False, "fp16")
    (plan,) = fa2_plans("v2.0.9", case, H100)
    (launch,) = plan.launches
    kv = 2 * batch * kv_heads * n * d * e
    reads = 1 if waves == "one" else heads // kv_heads
    assert launch.dram_bytes == kv * reads + 2 * ctas * d * e


# --- S3: the ring's backward brings dK, dV home ------------------------------------------------------------------


def test_ring_fwd_bwd_communication_includes_the_gradients_hop_home() -> None:
    """P = 4 devices of c = N / P tokens: the forward's P - 1 hops of the K/V block (bf16); the backward's P - 1
    hops of K, V and the dK, dV accumulators (fp32, twice K/V's bytes); then one hop of dK, dV home."""
    p, n = 4, 4096
    spec = ParallelSpec("ring", p, LLAMA, n, NVLINK.gpu, NVLINK, direction="fwd+bwd", checkpointing="none")
    link = NVLINK.levels[0].link
    c, kv_heads, d = n // p, int(LLAMA.params["kv_heads"]), int(LLAMA.params["head_dim"])
    kv = 2 * c * kv_heads * d * BF16_BYTES
    grads = 2 * c * kv_heads * d * FP32_BYTES
    forward = (p - 1) * _message_s(kv, link)
    backward = (p - 1) * (_message_s(kv, link) + _message_s(grads, link))
    home = _message_s(grads, link)
    timing = SCHEME_TIMINGS["ring"](spec, _compute(spec))
    assert timing.comm_s == pytest.approx(forward + backward + home, rel=1e-12)


# --- S8: the backward's TP all-reduces ---------------------------------------------------------------------------


@pytest.mark.parametrize("direction, all_reduces", [("fwd", 2), ("fwd+bwd", 4)])
def test_dense_tp_all_reduces_double_with_the_backward(direction: str, all_reduces: int) -> None:
    """tp = 2: the layer's two row-parallel outputs (attention and FFN) each all-reduce the c x hidden bf16
    activations over the tp group (a ring all-reduce: 2 (tp - 1) steps of n / tp bytes); the backward all-reduces
    their input gradients again, two more."""
    p, tp, n = 2, 2, 4096
    spec = ParallelSpec("ring", p, LLAMA, n, NVLINK.gpu, NVLINK, direction=direction, scope="layer", tp=tp)
    message = (n // p) * int(LLAMA.params["hidden"]) * BF16_BYTES
    one = 2 * (tp - 1) * _message_s(message / tp, NVLINK.levels[0].link)
    assert dense(spec, _compute(spec)).comm_s == pytest.approx(all_reduces * one, rel=1e-12)


# --- GS2: the pad of MInference's estimate -----------------------------------------------------------------------


def test_minference_pad_for_the_diagonal_sums_reads_and_writes_the_fp32_scores() -> None:
    """The vertical-slash estimate scores the last 64 queries against all N keys in fp32; the pad before the
    diagonal sums reads those 64 x N scores and writes them padded: 2 x 64 x N x 4 bytes."""
    n = 4096
    eager, _ = head_launches(SparsePattern("vertical_slash", k_v=1000, k_s=1000), n, 128, H100, "bf16", BF16_BYTES)
    (pad,) = [launch for launch in eager if launch.name == "pad for the diagonal sums"]
    assert pad.dram_bytes == 2 * 64 * n * FP32_BYTES


# --- S1: LASP-2's prefix sum -------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction, passes", [("fwd", 1), ("fwd+bwd", 2)])
def test_lasp2_time_is_state_gather_beside_chunk_then_prefix_sum_and_product(direction: str, passes: int) -> None:
    """LASP-2 (its Algorithm 1): the chunk's K^T V, then the all-gather of the P fp32 states (B H d x d each) beside
    the intra-chunk work, then the prefix sum, an elementwise pass reading the P gathered states and writing their
    sum ((P + 1) states), then Q times it; the backward gathers and sums dM the same way (twice the passes)."""
    p, n = 4, 16384
    spec = ParallelSpec("lasp2", p, LINEAR, n, NVLINK.gpu, NVLINK, direction=direction, checkpointing="none")
    compute = _compute(spec)
    c, heads, d = n // p, int(LINEAR.params["heads"]), int(LINEAR.params["head_dim"])
    state = heads * d * d * FP32_BYTES
    gather = (p - 1) * _message_s(state, NVLINK.levels[0].link) * passes
    prefix = compute.elementwise_s((p + 1) * state) * passes
    product = compute.state_gemm_s(c)  # K^T V, and Q times the summed state: the same shapes
    local = compute.linear_chunk_s(c)
    timing = SCHEME_TIMINGS["lasp2"](spec, compute)
    assert timing.time_s == pytest.approx(product + max(local, gather) + prefix + product, rel=1e-12)
    assert timing.compute_s == pytest.approx(local + product + prefix + product, rel=1e-12)
    assert timing.comm_s == pytest.approx(gather, rel=1e-12)


# --- G5: Little's law on a tile step -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_flight", [1, 2, 4])
def test_a_tile_step_takes_at_least_the_dram_latency_over_its_tiles_in_flight(in_flight: int) -> None:
    """A tile of little work (one 16 x 16 x 16 MMA, 256 exps and FP32 ops) whose MMAs and softmax end well within
    a DRAM latency: a CTA keeping `in_flight` tiles loading has each arrive a latency after it was asked for, so a
    step takes latency / in_flight (Little's law), not its compute."""
    small = Tile(2.0 * 16**3, 256.0, 256.0, 1024.0, 1024.0)
    launch = TiledLaunch("probe", (Segment(small, np.ones(1, dtype=int)),), 128, 1024, 0.0, "sync",
                         "mma_efficiency_fwd", "fp16", 0.0, 0.0, in_flight)
    bound_s = H100.dram_latency_s / in_flight
    assert sum(tile_times_s(small, launch, H100, 1.0)) < bound_s / 2  # the work alone: far below the bound
    assert step_time_s(small, launch, H100, 1.0, 1) == bound_s
