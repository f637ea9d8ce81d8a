"""A sliding-window model (Mistral 7B: window 4096, GQA with 32 query heads over 8 K/V heads) on the systems layer.

Decode: a query reads min(context, window + sinks) keys (`step.decode_keys`), on every device, a bank-PIM included
(its per-context tables were indexed by the raw context, so context 32768 cost 4.4x context 4096 on neupims).
Prefill: the grouped-query form of the sliding-window cascade, so K and V count kv_heads heads, not heads (the
multi-head form counted them 4x). Expected values are closed forms stated beside each assertion; sizes are Mistral
7B's (Jiang et al. 2023, Table 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.references import REFERENCES
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import Step, decode_keys, layer_op
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import load_system
from archsim.workload import workload_from_dict

WINDOW, KV_HEADS, HEADS, HEAD_DIM, WORD_BYTES = 4096, 8, 32, 128, 2
MISTRAL = {"hidden": 4096, "heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "ffn_dim": 14336,
           "layers": 32, "vocab": 32000, "batch": 1, "seq_len": 8192, "word_bytes": WORD_BYTES}
PIM_SYSTEMS = ("neupims", "neupims-no-sbi", "npu+pim")


def mistral(window: int | None = WINDOW, sinks: int = 0, kv_heads: int = KV_HEADS):
    """Mistral 7B with a sliding window of `window` keys and `sinks` sink tokens (no window: None)."""
    params = {**MISTRAL, "kv_heads": kv_heads, **({"window": window, "sinks": sinks} if window else {})}
    return workload_from_dict({"name": "mistral-7b", "source": "Mistral 7B Table 1", "block": "llama",
                               "params": params}, "mistral-7b.yaml")


def decode_s(system: str, workload, contexts) -> float:
    return system_model(load_system(system), workload).iteration(Batch(decode_context_tokens=tuple(contexts))).time_s


@pytest.mark.parametrize("system", PIM_SYSTEMS)
def test_bank_pim_decode_reads_at_most_the_window(system: str) -> None:
    """Window 4096, no sinks: a query over 32768 tokens reads min(32768, 4096) = 4096 keys, so 8 such requests
    cost what 8 requests over exactly 4096 tokens do; the model without a window reads all 32768 and costs more."""
    windowed = mistral()
    assert decode_s(system, windowed, (32768,) * 8) == decode_s(system, windowed, (WINDOW,) * 8)
    assert decode_s(system, windowed, (32768,) * 8) < decode_s(system, mistral(None), (32768,) * 8)


@pytest.mark.parametrize("system", PIM_SYSTEMS)
def test_bank_pim_decode_reads_the_sinks_beside_the_window(system: str) -> None:
    """Window 4000 and 96 sinks: min(context, 4000 + 96) keys; a context of 1000 reads all 1000 (below the cap)."""
    workload = mistral(4000, 96)
    assert decode_s(system, workload, (1000, 32768, 9000)) == decode_s(system, workload, (1000, 4096, 4096))
    assert decode_s(system, workload, (1000,) * 4) == decode_s(system, mistral(None), (1000,) * 4)


def test_sub_batch_interleaving_places_the_keys_read() -> None:
    """NeuPIMs' SBI path (256 decodes, the schedule's min_batch): each request's PIM time is that of
    min(context, 4096) keys, per channel and per sub-batch, as over contexts of 4096."""
    model = system_model(load_system("neupims"), mistral())
    long, capped = layer_phases(model, [32768] * 256), layer_phases(model, [WINDOW] * 256)
    assert long.sub_batch_interleaving
    assert long.attention_s == capped.attention_s and long.stages_s == capped.stages_s


def test_decode_keys_cap_each_context_at_window_plus_sinks() -> None:
    """`SystemModel.decode_keys`: min(c, window + sinks) per context, lists and arrays alike; without a window the
    contexts themselves."""
    model = system_model(load_system("neupims"), mistral(4000, 96))
    assert model.decode_keys([10, 4096, 5000]) == [10, 4096, 4096]
    assert model.decode_keys(np.array([10.0, 9000.0])).tolist() == [10.0, 4096.0]
    contexts = [10, 9000]
    assert system_model(load_system("neupims"), mistral(None)).decode_keys(contexts) is contexts
    assert decode_keys(mistral(4000, 96), 9000) == 4096 and decode_keys(mistral(None), 9000) == 9000


def attention(workload, seq_len: int):
    return layer_op(workload, Step("prefill", 1, seq_len), "llama", "attention")


def test_gqa_window_prefill_counts_kv_heads_of_k_and_v() -> None:
    """2048 prompt tokens (inside the window): K and V of 8 K/V heads, 2 x 8 x 2048 x 128 x 2 B = 8,388,608 B (the
    multi-head form counted 32 heads: 33,554,432 B), and the causal MACs, 32 heads x 2048 x 2049 / 2 (query, key)
    pairs x (128 + 128) = 17,188,257,792, as the model without a window."""
    windowed, causal = attention(mistral(), 2048), attention(mistral(None), 2048)
    assert windowed.cascade == "attention-sliding-window-gqa"
    assert windowed.bytes_by_role["kv_cache"] == 2 * KV_HEADS * 2048 * HEAD_DIM * WORD_BYTES == 8_388_608
    assert windowed.bytes_by_role["kv_cache"] == causal.bytes_by_role["kv_cache"]
    assert windowed.ops["mac"] == HEADS * 2048 * 2049 // 2 * 2 * HEAD_DIM == causal.ops["mac"] == 17_188_257_792
    assert windowed.bytes == causal.bytes


def test_gqa_window_prefill_counts_only_the_pairs_the_window_keeps() -> None:
    """8192 tokens, window 4096: query p sees min(p + 1, 4096) keys, 4096 x 4097 / 2 + 4096 x 4096 = 25,167,872
    pairs against the causal 8192 x 8193 / 2 = 33,558,528; MACs 32 heads x pairs x 256."""
    windowed, causal = attention(mistral(), 8192), attention(mistral(None), 8192)
    pairs = WINDOW * (WINDOW + 1) // 2 + (8192 - WINDOW) * WINDOW
    assert pairs == 25_167_872
    assert windowed.ops["mac"] == HEADS * pairs * 2 * HEAD_DIM
    assert causal.ops["mac"] == HEADS * 8192 * 8193 // 2 * 2 * HEAD_DIM
    assert windowed.flops < causal.flops and windowed.bytes == causal.bytes


def test_a_multi_head_window_model_keeps_the_multi_head_cascade() -> None:
    """kv_heads = heads: the multi-head sliding-window cascade, K and V of 32 heads: 2 x 32 x 2048 x 128 x 2 B."""
    op = attention(mistral(kv_heads=HEADS), 2048)
    assert op.cascade == "attention-sliding-window"
    assert op.bytes_by_role["kv_cache"] == 2 * HEADS * 2048 * HEAD_DIM * WORD_BYTES


@pytest.mark.parametrize("system", ["npu-only", "neupims"])
def test_windowed_prefill_costs_no_more_than_causal_and_less_where_the_window_cuts(system: str) -> None:
    """On the NPU: inside the window a windowed prompt computes and moves what a causal one does (the same cost,
    where the multi-head form's 4x K/V made it dearer); at 8192 tokens it skips 25 % of the pairs."""
    def prefill_s(workload, tokens: int) -> float:
        return system_model(load_system(system), workload).iteration(Batch(prefill_tokens=(tokens,))).time_s

    assert prefill_s(mistral(), 2048) == pytest.approx(prefill_s(mistral(None), 2048), rel=1e-12)
    assert prefill_s(mistral(), 8192) < prefill_s(mistral(None), 8192)


@pytest.mark.parametrize("sets", [{"seq_len": 24, "tile_kv": 4, "window": 3, "sinks": 0},
                                  {"seq_len": 24, "tile_kv": 2, "window": 5, "sinks": 3}])
def test_gqa_window_cascade_skips_unseen_key_tiles_and_keeps_the_reference(sets: dict) -> None:
    """The grouped-query cascade against its reference where most key tiles are masked, and one running-state step
    per (tile, query) pair whose tile holds a key the query sees (m <= p and (p - m < window or m < sinks)), for
    each of batch x heads query heads, by brute force over the keys."""
    cascade = library.load_cascade_spec("attention-sliding-window-gqa")
    binding = bind(cascade, overrides=sets)
    inputs = random_inputs(binding, 3)
    got, want = execute(binding, inputs)["AV"], REFERENCES[cascade.reference](inputs, binding.params)["AV"]
    assert np.isfinite(got).all() and np.max(np.abs(got - want)) < 1e-5
    n, tile, window, sinks = sets["seq_len"], sets["tile_kv"], sets["window"], sets["sinks"]
    seen = sum(any(m <= p and (p - m < window or m < sinks) for m in range(m1 * tile, (m1 + 1) * tile))
               for m1 in range(n // tile) for p in range(n))
    query_heads = binding.rank_sizes["B"] * binding.rank_sizes["H"]
    assert analyze(binding).points["RM"] == query_heads * seen < query_heads * (n // tile) * n


def test_windowed_prefill_on_a_gpu_costs_no_more_than_causal() -> None:
    """A GPU times a sliding-window prompt as the attention kernel's causal call (eager attention masks every
    score; FlashAttention-2's window skipping is not modelled): the causal prompt's time, where it was more
    (20.40 vs 19.62 ms at 2048 tokens on vllm-h100) when the window ran as GEMM launches and a DRAM pass."""
    for system in ("vllm-h100", "duplex"):
        windowed, causal = (system_model(load_system(system), w) for w in (mistral(), mistral(None)))
        for prompt in (2048, 8192):
            batch = Batch(prefill_tokens=(prompt,))
            assert windowed.iteration(batch).time_s == pytest.approx(causal.iteration(batch).time_s, rel=1e-9)
