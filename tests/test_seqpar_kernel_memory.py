"""The attention kernel's own buffers in `archsim parallel`'s memory per device (`seqpar._memory`).

An audit found memory per device and the largest context left out what the kernel holds beside Q, K, V and O, so
eager "PyTorch standard attention" (two N x N score matrices per head and the causal mask) was marked feasible
at a length it cannot hold, and the largest context was one the same command refuses. Llama-3-8B on 8 H100s:
- ulysses at 64K: each device runs eager attention over all 65536 tokens on 4 heads, 2 x 4 x 65536^2 x 2 B = 68.7
  GB of scores, an 8.6 GB mask, 16.06 GB of weights and 1.07 GB of KV: about 94.4 GB, beyond the H100's 85.9 GB;
- ring at 64K and 128K fit, yet the largest context was 3.4M tokens while 256K is refused.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim.errors import SpecError
from archsim.library import load_workload_spec
from archsim.systems import seqpar
from archsim.systems.seqpar import _compute, _memory, parallel_time
from archsim.systems.seqpar_memory import inference_memory
from archsim.systems.seqpar_schemes import SCHEME_TIMINGS
from archsim.systems.seqpar_spec import ParallelSpec, token_multiple
from archsim.systems.topology import load_topology

LLAMA8 = load_workload_spec("llama3-8b")
HGX = load_topology("hgx-h100")
EAGER = "PyTorch standard attention"
HAND_ULYSSES_64K_BYTES = 2 * 4 * 65536**2 * 2 + 65536**2 * 2 + 16.06e9 + 1.07e9  # scores, mask, weights, KV


def _spec(scheme: str, seq_len: int, devices: int = 8, **changes) -> ParallelSpec:
    return ParallelSpec(scheme, devices, LLAMA8, seq_len, HGX.gpu, HGX, kernel=changes.pop("kernel", EAGER),
                        **changes)


def test_ulysses_64k_eager_holds_its_scores_and_does_not_fit() -> None:
    result = parallel_time(_spec("ulysses", 65536))
    assert result.memory_bytes >= HAND_ULYSSES_64K_BYTES
    assert not result.feasible
    assert result.max_context_tokens < 65536


@pytest.mark.parametrize("scheme", ["ulysses", "ring"])
def test_the_largest_context_is_one_the_command_runs(scheme: str) -> None:
    """The largest context fits and is timed (the kernel's own DRAM check passes); one multiple beyond it does not
    fit. Ring's is below the 256K the kernel refuses."""
    largest = parallel_time(_spec(scheme, 65536)).max_context_tokens
    assert 0 < largest < 262144
    assert parallel_time(_spec(scheme, largest)).feasible
    beyond = _spec(scheme, largest + token_multiple(_spec(scheme, largest)))
    assert _memory(beyond)[0].total_bytes > HGX.gpu.dram_bytes


def test_ring_128k_eager_counts_its_diagonal_block() -> None:
    """c = 16K tokens a device: a causal 16K x 16K call on 32 heads holds 2 score matrices and the mask."""
    result = parallel_time(_spec("ring", 131072))
    buffers = 2 * 32 * 16384**2 * 2 + 16384**2 * 2
    assert result.feasible
    assert result.memory_bytes == pytest.approx(inference_memory(LLAMA8, "ring", 8, 131072).total_bytes + buffers)


@pytest.mark.parametrize("scheme", ["ring", "ulysses", "megatron-sp", "allgather"])
def test_a_fused_kernel_adds_no_buffers(scheme: str) -> None:
    """FlashAttention-2 holds nothing beside its operands in the GPU model: the memory is `seqpar_memory`'s (plus
    allgather's gathered K and V)."""
    spec = _spec(scheme, 65536, kernel="FlashAttention-2")
    memory = _memory(spec)[0]
    assert seqpar._kernel_buffer_bytes(spec, _compute(spec), spec.seq_len) == 0.0
    if scheme != "allgather":
        assert memory == inference_memory(LLAMA8, scheme, 8, 65536)


CASES = [(scheme, causal, direction) for scheme in ("ring", "zigzag", "stripe", "ulysses", "usp", "megatron-sp",
                                                    "allgather")
         for causal in (True, False) for direction in ("fwd", "fwd+bwd")]


@pytest.mark.parametrize(("scheme", "causal", "direction"), CASES)
def test_the_calls_counted_are_the_ones_the_timing_runs(scheme: str, causal: bool, direction: str,
                                                        attention_calls: set[tuple]) -> None:
    """`_attention_calls` lists calls the scheme's timing makes, and the largest buffer among them is the largest
    among all the calls the timing makes (recorded from `DeviceCompute.attention_s`: conftest's attention_calls)."""
    spec = _spec(scheme, 8192, devices=4, causal=causal, direction=direction,
                 ulysses=2 if scheme == "usp" else None)
    compute = _compute(spec)
    SCHEME_TIMINGS[scheme](spec, compute)
    counted = seqpar._attention_calls(spec, compute, spec.seq_len)
    assert set(counted) <= attention_calls
    largest = max(seqpar._held_bytes(EAGER, compute.attention_case(*call)[0], spec.gpu) for call in attention_calls)
    assert seqpar._kernel_buffer_bytes(spec, compute, spec.seq_len) == largest > 0


@pytest.mark.parametrize(("scheme", "workload", "direction"),
                         [("ring", LLAMA8, "decode"), ("lasp2", load_workload_spec("linear-llama3-1b"), "fwd")])
def test_decode_and_lasp_count_no_kernel_buffers(scheme: str, workload, direction: str) -> None:
    """A decode step (Flash-Decoding, no working set) and LASP's chunks (Lightning Attention-2) add nothing, whatever
    the softmax kernel named."""
    spec = replace(_spec(scheme, 65536, direction=direction), workload=workload)
    assert seqpar._kernel_buffer_bytes(spec, _compute(spec), spec.seq_len) == 0.0


@pytest.mark.parametrize("scheme", ["lasp1", "lasp2"])
def test_lasp_refuses_a_grouped_query_linear_workload_naming_kv_heads(scheme: str) -> None:
    """LASP's cascades keep one d x d state per query head: a linear workload with 4 K/V heads for 16 query heads
    had been timed as if it had 16 (its states, their transfers and memory); it is now refused naming the field
    (`archsim parallel` prints the row infeasible with it)."""
    base = load_workload_spec("linear-llama3-1b")
    grouped = replace(base, params={**base.params, "kv_heads": 4}, path="lin-gqa.yaml")
    with pytest.raises(SpecError, match=r"params\.kv_heads: 4 K/V heads for 16 query heads") as error:
        parallel_time(ParallelSpec(scheme, 8, grouped, 262144, HGX.gpu, HGX))
    assert error.value.source == "lin-gqa.yaml"
