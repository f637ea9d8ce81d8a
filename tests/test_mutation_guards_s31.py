"""Guards for mutants a mutation audit left alive (session 31): each test checks a model output against a quantity
derived here, from first principles or from the model's other outputs, so that the mutated line changes the result.

- `device_blocks` conserves the attention's work: over the devices and blocks, the (query, key) points computed are
  those of one device's causal (or full) attention over all heads; and every query token of every head is some
  device's exactly once.
- Table 3's TPU slices count their devices as the module's reading of the slice names says (TensorCores or chips).
- `saturation_batch` reports the paper's batch per micro-batch and that count's roofline ratio.
- Attention offloading with two NIC kinds: the lanes round down, a message waits for the slower end's latency, and
  `link_feasibility` reports the end that limits a message; `bw_min_cross_check`'s pipelined slowdown is the
  served pipeline over the slow link against the ideal link.
- `servable` keeps a request whose KV fills the pool's pages exactly and drops one a token longer.
- `size_limit_tokens`: only a ring scheme's context may pass the size limit (up to P x)."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import replace
from fractions import Fraction

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems import lamina_reproduce, seqpar_memory
from archsim.systems.lamina_reproduce import PAPER, dense_roofline_s, lamina_system, saturation_batch, servable
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, link_feasibility
from archsim.systems.offload_events import model_pipeline
from archsim.systems.requests import Request
from archsim.systems.seqpar_schemes import device_blocks
from archsim.systems.seqpar_spec import ParallelSpec, check_spec
from archsim.systems.serving import ServingConfig, kv_tokens
from archsim.systems.system_spec import load_system, with_fields
from archsim.systems.topology import load_topology
from archsim.workload import max_size

LLAMA3_8B = library.load_workload_spec("llama3-8b")  # H = 32 query heads, 8 KV heads
LLAMA3_70B = library.load_workload_spec("llama3-70b")
GPUS = load_topology("hgx-h100-8")
# a multiple of every scheme's token multiple for P <= 8: P, 2P (zigzag, allgather), lcm(P, 2P/u) (usp)
SEQ_LEN = 1680
HEAD_SPLIT = ("ulysses", "megatron-sp", "usp")  # the schemes that refuse P (or u) not cutting the heads


# --- 1. device_blocks conserves the work ------------------------------------------------------------------------------


def _specs():
    """Every softmax scheme at P = 1..8, causal and not, where `check_spec` accepts it (usp at each Ulysses degree
    dividing P)."""
    for scheme in ("ring", "zigzag", "stripe", "usp", "ulysses", "megatron-sp", "allgather"):
        for p in range(1, 9):
            for causal in (True, False):
                for u in ([u for u in range(1, p + 1) if p % u == 0] if scheme == "usp" else [None]):
                    spec = ParallelSpec(scheme, p, LLAMA3_8B, SEQ_LEN, GPUS.gpu, GPUS, causal=causal, ulysses=u)
                    try:
                        check_spec(spec)
                    except SpecError:
                        if scheme not in HEAD_SPLIT:
                            raise
                        continue
                    yield spec


SPECS = list(_specs())


def _blocks(spec: ParallelSpec):
    heads, kv_heads = int(LLAMA3_8B.params["heads"]), int(LLAMA3_8B.params["kv_heads"])
    return device_blocks(spec, heads, kv_heads, spec.seq_len)


def test_the_grid_covers_every_scheme_and_device_count() -> None:
    """The ring family and allgather at every P; the head-splitting schemes at the P dividing 8 KV heads."""
    covered = {(spec.scheme, spec.devices) for spec in SPECS}
    assert {(s, p) for s in ("ring", "zigzag", "stripe", "allgather") for p in range(1, 9)} <= covered
    assert {(s, p) for s in HEAD_SPLIT for p in (1, 2, 4, 8)} <= covered


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: f"{spec.scheme}-P{spec.devices}-u{spec.ulysses}-"
                                                          f"{'causal' if spec.causal else 'full'}")
def test_the_devices_blocks_compute_the_whole_attention_once(spec: ParallelSpec) -> None:
    """Sum over devices and blocks of count x heads x points (q x k for a full block, q (q + 1) / 2 for a causal
    square one) is H N (N + 1) / 2 causal and H N^2 not. A stripe's blocks from later devices skip their diagonal
    (token i P + j > i P + d) but are costed as causal blocks keeping it (`ring_layout`): one diagonal, c points
    per head, more for each of the P (P - 1) / 2 such blocks."""
    n, p, h = spec.seq_len, spec.devices, int(LLAMA3_8B.params["heads"])
    total = 0
    for blocks in _blocks(spec):
        for (q, k, causal, heads, _), count in blocks.items():
            assert not causal or q == k, "a causal block is a square with its diagonal"
            total += count * heads * (q * (q + 1) // 2 if causal else q * k)
    if not spec.causal:
        assert total == h * n * n
        return
    extra = h * (n // p) * p * (p - 1) // 2 if spec.scheme == "stripe" else 0
    assert total == h * n * (n + 1) // 2 + extra


@pytest.mark.parametrize("spec", [s for s in SPECS if not (s.causal and s.scheme == "stripe")],
                         ids=lambda spec: f"{spec.scheme}-P{spec.devices}-u{spec.ulysses}-"
                                          f"{'causal' if spec.causal else 'full'}")
def test_each_query_token_of_each_head_is_one_devices(spec: ParallelSpec) -> None:
    """Per head group the devices' queries sum to N (summed over heads: H N). Not causal, a device's blocks all
    share its queries and heads; causal, each query lies in one causal diagonal block (a stripe's blocks are all
    causal-shaped, so it is left out)."""
    n, h = spec.seq_len, int(LLAMA3_8B.params["heads"])
    query_heads = 0
    for blocks in _blocks(spec):
        if spec.causal:
            query_heads += sum(count * q * heads for (q, _, causal, heads, _), count in blocks.items() if causal)
        else:
            (shape,) = {(q, heads) for q, _, _, heads, _ in blocks}
            query_heads += shape[0] * shape[1]
    assert query_heads == h * n


# --- 2. Table 3's TPU device counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tpu", seqpar_memory.TABLE3_TPUS, ids=lambda tpu: f"{tpu.hardware}-{tpu.device}")
def test_a_tpu_slices_devices_are_its_names_count_under_its_reading(tpu: seqpar_memory.TpuSlice) -> None:
    """seqpar_memory's reading: v2/v3/v4 slice names count TensorCores (two per chip), v5e's chips (one core
    each); a device is `chip_fraction` of a chip, so it holds cores_per_chip x chip_fraction cores."""
    generation, count = re.fullmatch(r"TPU(v\d+\w*)-(\d+)", tpu.hardware).groups()
    assert tpu.chip == f"tpu-{generation}"
    cores_per_chip = 1 if generation == "v5e" else 2
    cores_per_device = cores_per_chip * tpu.chip_fraction
    assert tpu.devices * cores_per_device == int(count)


# --- 3. saturation_batch at the paper's batch -------------------------------------------------------------------------


def test_saturation_batch_reads_the_papers_batch_per_micro_batch() -> None:
    """The paper's batch is over all micro-batches: ceil(batch / micro-batches) decodes each, and the ratio is
    `dense_roofline_s`'s at that count."""
    result = saturation_batch()
    model = system_model(lamina_system(lamina_reproduce.BW_MODEL), LLAMA3_70B)
    assert result["micro_batches"] == model.micro_batches
    per_micro_batch = math.ceil(PAPER["batch_70b"] / model.micro_batches)
    assert result["paper_per_micro_batch"] == per_micro_batch
    flop_s, memory_s = dense_roofline_s(model, per_micro_batch)
    assert result["paper_batch_flop_over_memory"] == flop_s / memory_s


# --- 4-6. attention offloading with two NIC kinds ---------------------------------------------------------------------


def _staggered(replicas: int, pool_bytes_per_s: float, pool_latency_s: float = 1.65e-5) -> OffloadModel:
    """`lamina` staggered over `replicas` replicas of tp 2 at 50 GB/s a compute NIC, 4 memory devices on a pool
    NIC of its own (as tests/test_offload_nic_ends.py builds them)."""
    model = system_model(with_fields(load_system("lamina"), {
        "schedule": {"kind": "staggered", "micro_batches": replicas + 1, "divide_and_conquer": True},
        "devices.compute.count": 2 * replicas, "links.attention.bytes_per_s_per_direction": 50e9,
        "links.attention_pool": {"name": "pool-nic", "source": "test", "latency_s": pool_latency_s,
                                 "bytes_per_s_per_direction": pool_bytes_per_s}}), LLAMA3_70B)
    assert isinstance(model, OffloadModel)
    return model


@pytest.mark.parametrize(("replicas", "pool_bytes_per_s"), [(2, 37.5e9), (3, 62.5e9)])
def test_lanes_are_the_pools_share_of_messages_exactly(replicas: int, pool_bytes_per_s: float) -> None:
    """b r_m / (tp r_c) messages at once, the fraction kept (1.5, 2.5; rounded down before session 35, which let a
    slower compute NIC carry more: tests/test_offload_lanes_s35.py)."""
    model = _staggered(replicas, pool_bytes_per_s)
    tp, b = model.parallelism.tp, model.pool_devices
    ratio = Fraction(b) * Fraction(model.pool_link.bytes_per_s_per_direction) / (
        tp * Fraction(model.link.bytes_per_s_per_direction))
    assert ratio != int(ratio) and 1 < ratio < model.replicas == replicas
    assert model.link_lanes == ratio


def test_a_message_waits_for_the_slower_ends_latency() -> None:
    model = _staggered(2, 50e9, pool_latency_s=4e-5)
    assert model.pool_link.latency_s > model.link.latency_s
    assert model.message_link.latency_s == max(model.link.latency_s, model.pool_link.latency_s)


def test_link_feasibility_headlines_the_memory_end_when_it_limits() -> None:
    """The pool's 4 NICs at 10 GB/s (40 in all) against the replica's 2 at 50: the memory end limits a message, so
    its BW_min per NIC and its NIC rate are the record's headline pair."""
    model = _staggered(2, 10e9)
    assert model.message_end == "memory"
    record = link_feasibility(model, [1000] * 64, 0.2)
    extras, config = record.extras, record.config
    assert extras["bw_min_memory_nic_bytes_per_s"] != extras["bw_min_compute_nic_bytes_per_s"]
    assert extras["bw_min_bytes_per_s"] == extras["bw_min_memory_nic_bytes_per_s"]
    assert config["link_bytes_per_s"] == config["memory_nic_bytes_per_s"] == model.pool_link.bytes_per_s_per_direction


# --- 7. bw_min_cross_check's pipelined slowdown -----------------------------------------------------------------------


def test_the_pipelined_slowdown_is_against_the_ideal_link() -> None:
    """At alpha 5 (BW_min 25 x below alpha 0.2's) the served ping-pong pipeline over that bandwidth, with the link's
    latency, is slower than over an infinitely fast link without latency, by the ratio of the two."""
    cross = lamina_reproduce.bw_min_cross_check(alpha=5.0)
    served = system_model(lamina_system(cross["model"]), LLAMA3_70B)
    contexts = [cross["context"]] * cross["batch"]
    slow = replace(served.link, bytes_per_s_per_direction=cross["bw_min_bytes_per_s"])
    ideal = replace(served.link, bytes_per_s_per_direction=math.inf, latency_s=0.0)
    slow_s, ideal_s = (model_pipeline(served.with_link(link), contexts, 2).token_s for link in (slow, ideal))
    assert cross["pipelined_slowdown"] > 0
    assert cross["pipelined_slowdown"] == pytest.approx(slow_s / ideal_s - 1, rel=1e-9)


# --- 8. servable's boundary -------------------------------------------------------------------------------------------


def test_servable_keeps_a_request_that_fills_the_pool_exactly() -> None:
    """The smallest cache's whole pages (floor(capacity / (bytes per token x page tokens))) hold a request of
    exactly that many pages' tokens, not one token more."""
    models = [system_model(lamina_system("llama3-70b"), LLAMA3_70B), system_model(load_system("vllm-h100"),
                                                                                 LLAMA3_70B)]
    page_tokens = ServingConfig().page_tokens
    pages = min(math.floor(m.kv_capacity_bytes / (m.kv_bytes_per_token * page_tokens)) for m in models)
    full, over = Request(0, 0.0, pages * page_tokens, 1), Request(1, 0.0, pages * page_tokens + 1, 1)
    assert kv_tokens(full) == pages * page_tokens
    assert servable((full, over), models) == (full,)


# --- 9. size_limit_tokens ---------------------------------------------------------------------------------------------


def _max_context(scheme: str, devices: int) -> int:
    workload = library.load_workload_spec("llama-7b")
    return seqpar_memory.max_context_tokens(
        functools.partial(seqpar_memory.training_memory, workload, scheme, devices), math.inf,
        seqpar_memory.token_multiple(scheme, devices),
        limit_tokens=seqpar_memory.size_limit_tokens(scheme, devices))


@pytest.mark.parametrize("scheme", ["vanilla", "memeff-attn-ffn", "ulysses", "megatron-sp"])
def test_only_a_rings_context_passes_the_size_limit(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With memory unbounded the size limit binds: a scheme holding all N tokens somewhere stops at it, a ring,
    whose cascades hold N / P, goes past it, at most P x."""
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "65536")  # above llama-7b's sizes (vocab 32000)
    devices = 8
    assert 0 < _max_context(scheme, devices) <= max_size()
    assert max_size() < _max_context("ring", devices) <= devices * max_size()
