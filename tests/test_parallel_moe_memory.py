"""MoE activation memory under multi-device attention (`archsim.systems.seqpar_memory`): a routed expert's hidden
activations exist for its routed (token, expert) pairs only.

The `moe-experts` cascade (einsum/moe-experts.yaml) declares H1, H3, A as [T, X, S] and O as [T, X, D], written
`where routed` (density top_k / experts): with top-k routing a token's intermediates exist for its top_k experts,
T x top_k of the T x X rows, as its MACs count them. The tester's case (`archsim parallel --scheme megatron-sp
--devices 4` on Mixtral-8x22B at 32K) counted them dense: activations 10.57e9 bytes, 82.77e9 in all, a largest
context of 41000 tokens on an 80 GiB H100.

Every expected number below is a closed form over the cascade's tensors, in elements (x word bytes):
- layer input (Megatron-SP: sequence-sharded, c = N / P tokens): c·D, checkpointed per layer in training;
- the MoE op over all N tokens (the all-gathered input) with ffn_dim cut P ways (S = ffn_dim / P):
  X and Y N·D each; router logits R and their ranks RK N·X each; the row max GM and the gates' denominator GD N
  each (every token has one); the routed gates GE, G N·k each; the routed H1, H3, A N·k·S each; O N·k·D.
"""

from __future__ import annotations

import functools

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.seqpar_memory import inference_memory, max_context_tokens, training_memory
from archsim.workload import workload_from_dict

K = 1024
# Mixtral-8x22B (HF mistralai/Mixtral-8x22B-v0.1 config.json), as the tester's workload file
MIXTRAL_8X22B = {"hidden": 6144, "heads": 48, "kv_heads": 8, "head_dim": 128, "ffn_dim": 16384, "layers": 56,
                 "vocab": 32768, "experts": 8, "top_k": 2, "batch": 16, "seq_len": 4096, "word_bytes": 2}
OLD_MAX_CONTEXT_TOKENS = 41000  # the tester's report: every expert's intermediates counted for every token


def _workload(name: str, params: dict):
    return workload_from_dict({"name": name, "block": "llama", "params": params})


def _moe_live_elements(tokens: int, hidden: int, experts: int, top_k: int, ffn_per_device: int) -> int:
    """The MoE op's inputs, outputs and intermediates over `tokens` tokens (module docstring)."""
    whole = 2 * tokens * hidden + 3 * tokens * experts + 2 * tokens  # X, Y; R and its rank's halves RKL, RKU; GM, GD
    routed = 2 * tokens * top_k + 3 * tokens * top_k * ffn_per_device + tokens * top_k * hidden  # GE, G; H1-A; O
    return whole + routed


def _megatron_sp_moe_elements(params: dict, devices: int, tokens: int) -> tuple[int, int]:
    """(layer input, working-set peak) of one Megatron-SP device on a MoE model whose MoE op is the peak."""
    hidden = params["hidden"]
    peak = _moe_live_elements(tokens, hidden, params["experts"], params["top_k"], params["ffn_dim"] // devices)
    return tokens // devices * hidden, peak


@pytest.mark.parametrize("seq_len", [32 * K, 128 * K])
def test_megatron_sp_prefill_counts_routed_pairs_only(seq_len):
    """The tester's case: 32K gives (8192·6144 + 1,611,595,776)·2 = 3,323,854,848 bytes of activations, not
    10.57e9 (every expert's rows for every token)."""
    workload = _workload("mixtral-8x22b", MIXTRAL_8X22B)
    layer_input, peak = _megatron_sp_moe_elements(MIXTRAL_8X22B, 4, seq_len)
    memory = inference_memory(workload, "megatron-sp", 4, seq_len)
    assert memory.activations_bytes == (layer_input + peak) * MIXTRAL_8X22B["word_bytes"]
    if seq_len == 32 * K:
        assert memory.activations_bytes == 3_323_854_848


def test_megatron_sp_training_counts_routed_pairs_only():
    """Training (full precision, 4-byte activations): every layer's input checkpointed, plus the working set."""
    workload = _workload("mixtral-8x22b", MIXTRAL_8X22B)
    layer_input, peak = _megatron_sp_moe_elements(MIXTRAL_8X22B, 8, 32 * K)
    memory = training_memory(workload, "megatron-sp", 8, 32 * K)
    assert memory.activations_bytes == (MIXTRAL_8X22B["layers"] * layer_input + layer_input + peak) * 4


def test_megatron_sp_max_context_of_the_repro():
    """The largest context on an 80 GiB H100 (the parallel command's default hgx-h100): weights fixed and KV cache
    and activations linear in N, so N* = (capacity - weights) / (KV + activation bytes per token), down to a
    multiple of P; the activations per token from the closed form. 98116 tokens, not 41000."""
    workload = _workload("mixtral-8x22b", MIXTRAL_8X22B)
    capacity = load_gpu("h100-sxm5").dram_bytes
    probe = 4 * K
    memory = inference_memory(workload, "megatron-sp", 4, probe)
    layer_input, peak = _megatron_sp_moe_elements(MIXTRAL_8X22B, 4, probe)
    per_token = (memory.kv_cache_bytes + (layer_input + peak) * MIXTRAL_8X22B["word_bytes"]) / probe
    expected = int((capacity - memory.weights_bytes) // per_token) // 4 * 4
    found = max_context_tokens(functools.partial(inference_memory, workload, "megatron-sp", 4), capacity, 4)
    assert found == expected == 98116
    assert found > OLD_MAX_CONTEXT_TOKENS


def test_memeff_attn_whole_sequence_counts_routed_pairs_only():
    """MemEff-Attn keeps the full-width FFN's hidden activations: Mixtral-8x7B at 4K tokens on each device,
    nothing cut (S = ffn_dim); the layer input is all N tokens."""
    params = library.load_workload_spec("mixtral-8x7b").params
    n = 4 * K
    hidden = int(params["hidden"])
    peak = _moe_live_elements(n, hidden, int(params["experts"]), int(params["top_k"]), int(params["ffn_dim"]))
    memory = inference_memory(library.load_workload_spec("mixtral-8x7b"), "memeff-attn", 2, n)
    assert memory.activations_bytes == (n * hidden + peak) * params["word_bytes"]


def test_mixed_layers_take_the_wider_dense_ffn():
    """GLaM's sizes with a dense FFN four times Table I's (dense_ffn_dim 65536, moe_every 2): on 4 Megatron-SP
    devices the dense layer's hidden activations (3·N·65536/4 per layer) outweigh the MoE layer's routed ones
    (3·N·2·10928/4 + O's N·2·4096), so the working set is the dense layer's: X, H1, H3, A, Y."""
    params = {**library.load_workload_spec("glam-143b").params, "dense_ffn_dim": 65536}
    workload = _workload("glam-wide-dense", params)
    n, devices, hidden = 8 * K, 4, int(params["hidden"])
    moe_peak = _moe_live_elements(n, hidden, int(params["experts"]), int(params["top_k"]),
                                  int(params["ffn_dim"]) // devices)
    dense_peak = 2 * n * hidden + 3 * n * 65536 // devices
    assert dense_peak > moe_peak
    memory = inference_memory(workload, "megatron-sp", devices, n)
    assert memory.activations_bytes == (n // devices * hidden + dense_peak) * params["word_bytes"]


def test_vanilla_causal_scores_stay_whole():
    """A positional (causal) mask is not a routing mask: vanilla attention holds its s x s scores and their
    exponentials whole, Ring Attention Table 1's 2·b·H·s² (LLaMA-3B, MHA, 4K tokens)."""
    workload = library.load_workload_spec("llama-3b")
    n, heads = 4 * K, int(workload.params["heads"])
    memory = inference_memory(workload, "vanilla", 1, n)
    assert memory.activations_bytes >= 2 * heads * n * n * workload.params["word_bytes"]
