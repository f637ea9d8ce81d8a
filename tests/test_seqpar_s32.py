"""Session 32's sequence-parallel fixes.

- The largest context of a ring scheme is searched up to its own size limit, P x ARCHSIM_MAX_SIZE (a ring device's
  cascades hold N / P tokens, `seqpar_memory.size_limit_tokens`), not the limit on one size; a value the search
  stopped at the limit says so in the point's `note` (a capped value read as the answer misleads a sweep).
- A TP degree a system file sets is blamed on that file's field (`seqpar_spec.check_tp` with `System.blame`'s
  source and field), the caller's own tp on `tp` (which `archsim parallel` names --tp).
- DistAttention's decode sends the query to its P - 1 peers and takes their partials back as one group each
  (NCCL group send/recv): one latency per direction and the bytes serialised on the owner's port, not 2(P - 1)
  serial messages (`collectives.scatter_s`, `gather_s`).
"""

from __future__ import annotations

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_compute import SOURCE
from archsim.systems.seqpar_spec import ParallelSpec, check_spec, check_tp
from archsim.systems.topology import load_topology

HGX, NVLINK, DGX = load_topology("hgx-h100"), load_topology("a100-nvlink"), load_topology("dgx-a100")
LLAMA3, LLAMA13 = library.load_workload_spec("llama3-8b"), library.load_workload_spec("llama-13b")


def _spec(scheme: str, devices: int, seq_len: int, topology=HGX, workload=LLAMA3, **changes) -> ParallelSpec:
    return ParallelSpec(scheme, devices, workload, seq_len, topology.gpu, topology, **changes)


# --- 1. the largest context of a ring, and a capped one ----------------------------------------------------------


def test_ring_max_context_is_searched_up_to_p_times_the_size_limit(monkeypatch) -> None:
    """Ring over 64 H100s, Llama-3-8B, 1M tokens: each device holds N / 64 tokens of K/V, so more than 2^24 tokens
    fit (the audit: 27,280,768 with ARCHSIM_MAX_SIZE raised to 2^30). The default limit finds the same value as the
    raised one, and no note says it is capped."""
    result = parallel_time(_spec("ring", 64, 1 << 20), reference=False)
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", str(1 << 30))
    raised = parallel_time(_spec("ring", 64, 1 << 20), reference=False)
    assert result.max_context_tokens > 1 << 24
    assert result.max_context_tokens == raised.max_context_tokens
    assert "size limit" not in result.note


@pytest.mark.parametrize("scheme, limit_tokens", [("ring", 2 * 131072), ("ulysses", 131072)])
def test_a_max_context_at_the_size_limit_says_so(monkeypatch, scheme: str, limit_tokens: int) -> None:
    """ARCHSIM_MAX_SIZE 131072 (Llama-3-8B's vocab, 128256, still within it) on 2 H100s: a ring's limit is 2 x it,
    Ulysses' the limit itself (it holds all N tokens of its heads). Both fit there (Llama-3-8B's 16 GB of bf16
    weights and at most 128K tokens of K/V a device, 16 GB), so the search stops at the limit: the value is that
    limit and the note says it is a floor."""
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "131072")
    result = parallel_time(_spec(scheme, 2, 8192), reference=False)
    assert result.max_context_tokens == limit_tokens
    assert f"the size limit, {limit_tokens} tokens" in result.note and "at least" in result.note


# --- 2. a tp degree a system file set --------------------------------------------------------------------------


def test_a_tp_from_a_system_file_is_blamed_on_its_field() -> None:
    """tp 12 on 8-GPU nodes (the context-parallel-h100 preset with parallelism.tp 12): from a system file the error
    names the file and its field; the caller's own tp keeps naming `tp` (archsim parallel's --tp)."""
    spec = _spec("zigzag", 2, 131072, workload=library.load_workload_spec("llama3-70b"), tp=12)
    with pytest.raises(SpecError) as error:
        check_tp(spec, "cp.yaml", "parallelism.tp")
    assert (error.value.source, error.value.where) == ("cp.yaml", "parallelism.tp")
    assert "divisor of the 8 devices per node" in error.value.message
    with pytest.raises(SpecError) as error:
        check_spec(spec)
    assert (error.value.source, error.value.where) == (SOURCE, "tp")


def test_a_tp_cutting_no_heads_from_a_system_file_is_blamed_on_its_field() -> None:
    """tp 3 inside a node of unbounded size divides no head count of Llama-3-70B (64 heads): the heads' refusal is
    blamed the same way."""
    spec = _spec("zigzag", 2, 131072, topology=load_topology("a100-ib-100g"),
                 workload=library.load_workload_spec("llama3-70b"), tp=3)
    with pytest.raises(SpecError) as error:
        check_tp(spec, "cp.yaml", "parallelism.by_workload.llama3-70b.tp")
    assert error.value.where == "parallelism.by_workload.llama3-70b.tp" and "heads 64" in error.value.message


# --- 3. DistAttention's grouped sends ---------------------------------------------------------------------------


def test_distattention_decode_by_hand() -> None:
    """LLaMA-13B decode over 4K cached tokens on 4 A100s over NVLink 3 (alpha 3 us, beta 300 GB/s): the owner sends
    its bf16 query, 40 heads x 128 x 2 = 10,240 B, to 3 holders as one group, alpha + 3 x 10,240 / beta, and takes
    their fp32 partials (o, max, sum-exp: (40 x 128 + 2 x 40) x 4 = 20,800 B) back as one group, alpha + 3 x
    20,800 / beta: 6 us + 0.3104 us, all exposed (the step waits for the partials)."""
    alpha, beta = 3e-6, 300e9
    expected_s = 2 * alpha + 3 * (10240 + 20800) / beta
    result = parallel_time(_spec("distattention", 4, 4096, NVLINK, LLAMA13, direction="decode"))
    assert result.comm_s == pytest.approx(expected_s)
    assert result.exposed_comm_s == pytest.approx(expected_s)


def test_distattention_exposed_time_grows_by_bytes_not_latencies() -> None:
    """From 2 to 8 A100s the exposed time grows by 6 more queries and partials on the owner's port, 6 x 31,040 B /
    300 GB/s = 0.62 us, not by 2 latencies a device (12 x 3 us before)."""
    exposed = [parallel_time(_spec("distattention", p, 65536, NVLINK, LLAMA13, direction="decode")).exposed_comm_s
               for p in (2, 8)]
    assert exposed[1] - exposed[0] == pytest.approx(6 * 31040 / 300e9)


def test_distattention_across_nodes_takes_each_level_on_its_own_port() -> None:
    """16 A100s of two DGX nodes: the owner reaches its 7 node peers over NVLink 3 and the 8 others over its own
    HDR NIC (alpha 1 us, 25 GB/s), the two ports at once (as `Topology.all_to_all_s`): each direction is the slower
    of alpha_nv + 7 m / beta_nv and alpha_ib + 8 m / beta_ib."""
    nv, ib = DGX.levels[0].link, DGX.levels[1].link

    def fan_s(message_bytes: float) -> float:
        return max(nv.transfer_s(7 * message_bytes), ib.transfer_s(8 * message_bytes))

    result = parallel_time(_spec("distattention", 16, 65536, DGX, LLAMA13, direction="decode"))
    assert result.comm_s == pytest.approx(fan_s(10240) + fan_s(20800))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("scheme, ulysses", [("ring", None), ("zigzag", None), ("stripe", None), ("usp", 2),
                                             ("usp", 4), ("ulysses", None), ("megatron-sp", None),
                                             ("allgather", None)])
def test_distinct_blocks_are_the_union_of_every_devices_blocks(scheme, ulysses, causal) -> None:
    """The memory's search asks the distinct calls at every length it tries; read off a ring's layout they are the
    union of the P devices' counted blocks, at every P (1 included: no earlier or later block)."""
    from archsim.systems.seqpar_schemes import device_blocks, distinct_blocks

    for devices in (1, 2, 4, 8):
        if ulysses is not None and devices % ulysses:
            continue
        for seq_len in (devices * 64 * 8, devices * 1024):
            spec = _spec(scheme, devices, seq_len, causal=causal, ulysses=ulysses)
            assert distinct_blocks(spec, 32, 8, seq_len) == set().union(*device_blocks(spec, 32, 8, seq_len))
