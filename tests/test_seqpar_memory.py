"""Memory per device of multi-device attention (`archsim.systems.seqpar_memory`) and the Ring Attention paper's
Table 3 (../shared/reference/seqpar-sparse.md §2.1: max training context, FSDP, full precision, 8 and 32 A100s).

Table 3's contexts are 2^k x 1K tokens: the paper doubled the context until it ran out of memory, so an entry E says
the true maximum is in [E, 2E). The test takes how far the model's continuous maximum M falls outside that interval
(`seqpar_reproduce.table3_factor`: M / E below it, M / 2E above it, 1 inside) and holds it within the issue's factor
of 1.25. (Comparing the largest 2^k x 1K under M with E would make any shortfall a factor of 2.) The reference
does not say whether the A100s had 40 or 80 GB, so every case runs on both
presets (a100-40gb-sxm4, a100-80gb-sxm4); the misses are xfail(strict) with the reason the reproduction prints
(`seqpar_reproduce.TABLE3_GAPS`).
"""

from __future__ import annotations

import functools
import itertools

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems import seqpar_reproduce as seqpar
from archsim.systems.seqpar_memory import (
    SCHEMES,
    DeviceMemory,
    inference_memory,
    max_context_tokens,
    table3_rows,
    token_multiple,
    training_memory,
)

K = 1024
# Ring Attention Table 3 (seqpar-sparse.md §2.1), x1K tokens: (hardware, model) -> (MemEff-Attn+FFN, Ring)
TABLE3 = {("8xA100", "llama-3b"): (4, 32, 64, 512), ("8xA100", "llama-7b"): (2, 16, 32, 256),
          ("8xA100", "llama-13b"): (2, 4, 16, 128), ("32xA100", "llama-7b"): (4, 64, 128, 4096),
          ("32xA100", "llama-13b"): (4, 32, 64, 2048)}  # seqpar-sparse.md §2.1: Vanilla / MemEff-Attn / BPT / Ring
COLUMNS = {"vanilla": 0, "memeff-attn": 1, "memeff-attn-ffn": 2, "ring": 3}
GPUS = ("a100-40gb-sxm4", "a100-80gb-sxm4")
TOLERANCE = 1.25


@functools.cache
def _rows() -> dict[tuple[str, str, str, str], dict]:
    return {(r["gpu"], r["hardware"], r["model"], r["scheme"]): r for r in table3_rows(GPUS, ())}


@functools.cache
def _workload(name: str):
    return library.load_workload_spec(name)


def _cases():
    for gpu in GPUS:
        for (hardware, model), entries in TABLE3.items():
            for scheme, column in COLUMNS.items():
                gap = seqpar.TABLE3_GAPS.get((gpu, hardware, model, scheme))
                marks = [pytest.mark.xfail(strict=True, raises=AssertionError,
                                           reason=str(seqpar.GAPS[gap]))] if gap else []
                yield pytest.param(gpu, hardware, model, scheme, entries[column] * K, marks=marks,
                                   id=f"{gpu}-{hardware}-{model}-{scheme}")


@pytest.mark.parametrize(("gpu", "hardware", "model", "scheme", "paper_tokens"), list(_cases()))
def test_table3_max_context(gpu, hardware, model, scheme, paper_tokens):
    row = _rows()[(gpu, hardware, model, scheme)]
    factor = seqpar.table3_factor(row["max_context_tokens"], paper_tokens)
    assert 1 / TOLERANCE <= factor <= TOLERANCE, (
        f"ours {row['max_context_tokens'] / K:.1f}K, x{factor:.2f} outside the paper's [{paper_tokens // K}K, "
        f"{2 * paper_tokens // K}K)")


@pytest.mark.parametrize(("tokens", "factor"), [(15.2, 0.95), (16, 1.0), (31.9, 1.0), (40, 1.25), (8, 0.5)])
def test_table3_factor_reads_an_entry_as_an_interval(tokens, factor):
    """An entry of 16K says 16K ran and 32K did not: 15.2K is 5 % short, 40K is 1.25x past the 32K that failed."""
    assert seqpar.table3_factor(tokens * K, 16 * K) == pytest.approx(factor)


@pytest.mark.parametrize("gpu", GPUS)
@pytest.mark.parametrize(("hardware", "model"), list(TABLE3))
def test_ring_is_device_count_times_bpt(gpu, hardware, model):
    """Table 3 on GPUs: Ring is P x MemEff-Attn+FFN (each ring device holds N/P tokens' activations of BPT's
    kind). The model's ratio of continuous maxima is a little under P: ring also keeps the K, V block in flight."""
    devices = int(hardware.split("x")[0])
    ratio = (_rows()[(gpu, hardware, model, "ring")]["max_context_tokens"]
             / _rows()[(gpu, hardware, model, "memeff-attn-ffn")]["max_context_tokens"])
    assert 0.85 * devices <= ratio <= devices


def test_ring_training_memory_by_hand():
    """LLaMA-7B (workloads/llama-7b.yaml), ring on 8 devices at 64K tokens, full precision, by hand:
    parameters 32 layers x (4 x 4096^2 + 3 x 4096 x 11008 + 2 x 4096) + 2 x 32000 x 4096 = 6,738,411,520;
    weights = (params / 8 + one layer, 202,383,360) x 4 B; Adam 8 B x params / 8;
    activations, c = 8192 tokens per device: checkpoints 32 x c x 4096 x 4 B, the residual stream c x 4096 x 4 B,
    and Table 1's ring working set 6 x c x 4096 x 4 B (Q, K, V, O and the K, V block in flight)."""
    params, layer, c, h = 6_738_411_520, 202_383_360, 8192, 4096
    memory = training_memory(_workload("llama-7b"), "ring", 8, 64 * K)
    assert memory.weights_bytes == memory.gradients_bytes == (params / 8 + layer) * 4
    assert memory.optimizer_bytes == params
    assert memory.activations_bytes == (32 + 1 + 6) * c * h * 4
    assert memory.kv_cache_bytes == 0


def test_inference_memory_by_hand():
    """LLaMA-7B prefill of 64K tokens, fp16 (word_bytes 2): weights 6,738,411,520 x 2 B, cut by tp; ring on 8 devices
    keeps K and V of its 8K tokens for 32 layers (2 x 4096 x 2 B per token per layer); Ulysses keeps all 64K tokens
    of 32 / 8 heads: the same bytes."""
    workload = _workload("llama-7b")
    ring = inference_memory(workload, "ring", 8, 64 * K)
    assert ring.weights_bytes == 6_738_411_520 * 2
    assert ring.kv_cache_bytes == 32 * 8 * K * 2 * 4096 * 2
    assert inference_memory(workload, "ulysses", 8, 64 * K).kv_cache_bytes == ring.kv_cache_bytes
    norms = 32 * 2 * 4096 * 2  # the RMSNorm weights are not cut by TP
    assert inference_memory(workload, "ring", 8, 64 * K, tp=2).weights_bytes == (6_738_411_520 * 2 - norms) / 2 + norms


def test_the_memory_takes_the_lengths_the_timing_takes():
    """One set of length rules for `archsim parallel`'s timing and memory: a causal usp of 6 devices at Ulysses
    degree 3 cuts 2 x 2 zigzag chunks over each 3-device group, lcm(6, 4) = 12 (the memory took any multiple of 6,
    so its largest context could be a length the timing refuses)."""
    assert token_multiple("usp", 6, ulysses_degree=3) == 12
    assert token_multiple("usp", 6, causal=False, ulysses_degree=3) == 6
    assert token_multiple("usp", 8, ulysses_degree=2) == 8 and token_multiple("zigzag", 8) == 16
    assert token_multiple("megatron-sp", 8, decode=True) == 1 and token_multiple("vanilla", 8) == 1


@pytest.mark.parametrize("scheme", ("ring", "zigzag", "stripe", "ulysses", "lasp2"))
def test_ring_context_grows_with_devices(scheme):
    """The sanity target (Table 3, max context ∝ P): doubling P at least doubles the context of the schemes that
    keep N/P tokens per device; a little more, because FSDP also shards the model's states over P."""
    workload = _workload("llama-7b")
    contexts = [max_context_tokens(functools.partial(training_memory, workload, scheme, p), 40e9,
                                   token_multiple(scheme, p)) for p in (8, 16, 32)]
    for low, high in itertools.pairwise(contexts):
        assert 2.0 <= high / low <= 2.6


def test_megatron_sp_grows_slower_than_ring():
    """Megatron-SP all-gathers each layer's N x h input, so its context grows less than P-fold."""
    workload = _workload("llama-7b")
    contexts = [max_context_tokens(functools.partial(training_memory, workload, "megatron-sp", p), 40e9, p)
                for p in (8, 32)]
    assert contexts[1] / contexts[0] < 4


def test_ulysses_is_capped_by_heads():
    """Ulysses splits the heads over P devices: LLaMA-7B has 32, so 32 devices work and 64 do not."""
    workload = _workload("llama-7b")
    assert training_memory(workload, "ulysses", 32, 32 * K).total_bytes > 0
    with pytest.raises(SpecError) as info:
        training_memory(workload, "ulysses", 64, 64 * K)
    assert info.value.where == "devices" and "heads (32)" in info.value.message


@pytest.mark.parametrize("scheme", SCHEMES)
def test_memory_is_monotone_in_tokens(scheme):
    workload, devices = _workload("llama-3b"), 8
    extra = {"ulysses_degree": 4} if scheme == "usp" else {}
    lengths = [token_multiple(scheme, devices) * k for k in (64, 128, 512, 2048)]
    for memory in (training_memory, inference_memory):
        totals = [memory(workload, scheme, devices, n, **extra).total_bytes for n in lengths]
        assert totals == sorted(totals) and totals[0] < totals[-1]


def test_max_context_bisection():
    """A memory of 10 B per token against 1000 B: 100 tokens, 96 on multiples of 32, 0 when 32 do not fit."""
    def memory_of(n):
        return DeviceMemory(10.0 * n, 0.0, 0.0, 0.0, 0.0)

    assert max_context_tokens(memory_of, 1000, 1) == 100
    assert max_context_tokens(memory_of, 1000, 32) == 96
    assert max_context_tokens(memory_of, 300, 32) == 0


@pytest.mark.parametrize(("scheme", "devices", "seq_len", "extra", "field"), [
    ("ring", 0, 1024, {}, "devices"),
    ("ring", 8, 1001, {}, "seq_len"),
    ("zigzag", 8, 1032, {}, "seq_len"),  # a multiple of P = 8 but not of 2P = 16
    ("ring", 8, 0, {}, "seq_len"),
    ("bogus", 8, 1024, {}, "scheme"),
    ("usp", 8, 1024, {}, "ulysses_degree"),
    ("usp", 8, 1024, {"ulysses_degree": 3}, "ulysses_degree"),
    ("ring", 8, 1024, {"ulysses_degree": 2}, "ulysses_degree"),
])
def test_bad_input_names_the_field(scheme, devices, seq_len, extra, field):
    with pytest.raises(SpecError) as info:
        training_memory(_workload("llama-7b"), scheme, devices, seq_len, **extra)
    assert info.value.where == field


def test_bad_tp_names_the_field():
    with pytest.raises(SpecError) as info:
        inference_memory(_workload("llama-13b"), "ring", 8, 8 * K, tp=3)
    assert info.value.where == "tp"


def test_table3_rows_carry_no_paper_numbers():
    """Each row is the model's: the keys the reproduction prints, contexts on the grid of the scheme."""
    rows = table3_rows(("a100-40gb-sxm4",), ())
    assert len(rows) == 5 * 4
    for row in rows:
        assert set(row) == {"hardware", "devices", "gpu", "model", "scheme", "device_memory_bytes",
                            "max_context_tokens", "pow2_context_tokens"}
        assert row["max_context_tokens"] % token_multiple(row["scheme"], row["devices"]) == 0
        assert row["pow2_context_tokens"] <= row["max_context_tokens"]


@pytest.mark.parametrize("name", ["gpt3-7b", "gpt3-175b", "llama3-8b"])
def test_inference_weights_equal_the_systems_layers_with_a_vocab_tp_does_not_divide(name: str) -> None:
    """The vocab tables on a TP rank are the LM head op's ceil(vocab / tp) rows on both paths (GPT-3's 50257 over
    8 ranks: the exact division had counted 14336 bytes fewer for gpt3-7b)."""
    from archsim.systems.system_model import sizes_model

    workload = library.load_workload_spec(name)
    held = inference_memory(workload, "ring", 1, 1024, tp=8).weights_bytes
    assert held == sizes_model(workload, 8).weight_bytes_per_device
