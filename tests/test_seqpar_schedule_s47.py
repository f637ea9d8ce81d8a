"""Audit s47's findings on the sequence-parallel schedules, each expected value derived by hand from archsim's own
per-block compute and per-hop transfer times:

- 1: a ring's backward (ring, zigzag, stripe, USP's rings) charged every step's dK/dV hop one step early. In
  ring-flash-attn 0.1.8 (`ring_flash_attn_backward`, `zigzag_ring_flash_attn_backward`; yunchang 0.6.4 the same)
  step s posts its dK/dV send after its own compute and the receiver waits for it after its step s + 1 compute, so
  step 0 carries K/V only, steps 1..P-2 K/V and the previous step's dK/dV, step P-1 only that dK/dV, and the hop
  home follows the last step's compute. archsim had put K/V + dK/dV on every step (P 2 over 100 Gb/s IB: 5.496 ms).
- 2: LASP-1's chain read as its Algorithm 2 (intra-chunk work first, two d x d GEMMs a hop) was not adopted: it
  puts LASP-2 far further ahead of LASP-1 than LASP-2's Fig. 3 (README, "Multi-device attention"); the chain of
  `tests/test_mutation_guards.py` stands.
- 3: LASP-2's fwd+bwd timed its two all-gathers as one overlap, kv + max(3L, 2G); the forward's gather overlaps the
  forward's intra-chunk work L and the backward's the backward's 2L: max(L, G) + max(2L, G).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.systems import collectives, seqpar
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_schemes import ACCUMULATOR_BYTES, _state_bytes, group_members, kv_bytes
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

IB = load_topology("a100-ib-100g")
LLAMA3, LINEAR = library.load_workload_spec("llama3-8b"), library.load_workload_spec("linear-llama3-1b")


# --- 1: the ring's backward hops ---------------------------------------------------------------------------------

def _ring_parts(p: int) -> tuple[ParallelSpec, float, float, float, float]:
    """(spec, f, b, kv hop, dK/dV hop) of a non-causal ring of `p` A100s over 100 Gb/s IB, Llama-3-8B
    attention, 2048 tokens a device, fwd+bwd without checkpointing: every block the same c x c call."""
    spec = ParallelSpec("ring", p, LLAMA3, 2048 * p, IB.gpu, IB, causal=False, direction="fwd+bwd",
                        checkpointing="none")
    compute = seqpar._compute(spec)
    forward = replace(compute, direction="fwd")
    f = forward.attention_s(2048, 2048, False)  # 0.382 ms
    b = compute.attention_s(2048, 2048, False) - f  # the block's backward: 1.083 ms
    link = IB.group_link(group_members(p, 1))
    kv = kv_bytes(2048, compute)
    kv_hop = collectives.send_recv_s(kv, link)  # bf16 K and V: 0.672 ms
    grads_hop = collectives.send_recv_s(kv * ACCUMULATOR_BYTES / 2, link)  # fp32 dK and dV: 1.344 ms
    return spec, f, b, kv_hop, grads_hop


def test_ring_backward_dkdv_hop_overlaps_the_next_step_p2() -> None:
    """The audit's point (`archsim parallel --scheme ring --devices 2 --workload llama3-8b --seq-len 4K --topology
    a100-ib-100g --direction fwd+bwd --checkpointing none --no-causal`): 5.496 ms, exposed 2.565 before; 4.824 and
    1.893 by ring-flash-attn's order (the audit's 4.825 and 1.894 add rounded parts)."""
    spec, f, b, kv_hop, grads_hop = _ring_parts(2)
    forward = max(f, kv_hop) + f  # step 0 with the K/V hop (0.672), step 1 no transfer: 1.054 ms
    # step 0: K/V only (1.083); step 1 (last): step 0's dK/dV in flight (1.344); home: step 1's dK/dV (1.344)
    backward = max(b, kv_hop) + max(b, grads_hop) + grads_hop
    compute_s = 2 * f + 2 * b
    result = parallel_time(spec, reference=False)
    gap = seqpar._compute(spec).autograd_gap_s(forward)
    assert result.time_s == pytest.approx(forward + backward + gap, rel=1e-12)
    assert result.time_s == pytest.approx(4.824e-3, abs=5e-7)
    assert result.exposed_comm_s == pytest.approx(forward + backward - compute_s, rel=1e-9)
    assert result.exposed_comm_s == pytest.approx(1.893e-3, abs=5e-7)
    # every byte still moves: the forward's K/V, the backward's K/V and dK/dV, and the hop home
    assert result.comm_s == pytest.approx(kv_hop + kv_hop + grads_hop + grads_hop, rel=1e-12)


def test_ring_backward_hop_profile_p4() -> None:
    """P 4 (every device the same work): forward 3 max(f, kv) + f; backward step 0 K/V, steps 1 and 2 K/V and the
    previous step's dK/dV, step 3 the previous dK/dV, then home; comm counts each transfer once."""
    spec, f, b, kv_hop, grads_hop = _ring_parts(4)
    forward = 3 * max(f, kv_hop) + f
    backward = max(b, kv_hop) + 2 * max(b, kv_hop + grads_hop) + max(b, grads_hop) + grads_hop
    result = parallel_time(spec, reference=False)
    assert result.time_s == pytest.approx(forward + backward, rel=1e-12)
    assert result.comm_s == pytest.approx(3 * kv_hop + 3 * kv_hop + 4 * grads_hop, rel=1e-12)


# --- 3: LASP-2's two all-gathers ---------------------------------------------------------------------------------

def _lasp_parts(spec: ParallelSpec) -> tuple[float, float]:
    """(forward intra-chunk L, its backward) of `spec`'s LASP chunk."""
    compute = seqpar._compute(spec)
    c = spec.seq_len // spec.devices
    local_f = replace(compute, direction="fwd").linear_chunk_s(c)
    return local_f, compute.linear_chunk_s(c) - local_f


def test_lasp2_fwd_bwd_gathers_overlap_their_own_pass() -> None:
    """16 A100s over 100 Gb/s IB, 128K tokens: the gather G (1.273 ms) hides under the backward's 2L (1.355) but not
    under the forward's L (0.678): max(L, G) + max(2L, G) = 2.629 ms beside the GEMMs and the prefix sums, where the
    merged overlap max(3L, 2G) gave 2.547. (Two DGX-A100 nodes at 64K had been the case; their gather now crosses
    the nodes on all 8 NICs at once, 0.097 ms, under both passes.)"""
    spec = ParallelSpec("lasp2", 16, LINEAR, 1 << 17, IB.gpu, IB, direction="fwd+bwd", checkpointing="none")
    compute = seqpar._compute(spec)
    local_f, local_b = _lasp_parts(spec)
    p, c = spec.devices, spec.seq_len // spec.devices
    state = _state_bytes(spec, compute)
    gather = collectives.all_gather_s(p * state, p, IB.collective_link(group_members(p, 1)))
    assert local_f < gather < local_b  # the point the merged overlap got wrong
    gemms = 2 * compute.state_gemm_s(c)  # K^T V before the gather and Q times the prefix after, fwd+bwd each
    prefix = 2 * compute.elementwise_s((p + 1) * state)  # the forward's prefix sum and the backward's
    result = parallel_time(spec, reference=False)
    assert result.time_s == pytest.approx(gemms + prefix + max(local_f, gather) + max(local_b, gather), rel=1e-12)
    assert result.exposed_comm_s == pytest.approx(gather - local_f, rel=1e-9)
