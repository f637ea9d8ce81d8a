"""Tensor parallelism over more devices than KV heads: each KV head replicated over TP / kv_heads devices
(`archsim.systems.sharding.shard`), as vLLM cuts the QKV projection."""

from __future__ import annotations

import pytest

from archsim.library import load_workload_spec
from archsim.systems.sharding import shard
from archsim.systems.system_model import sizes_model
from archsim.systems.system_types import Parallelism


def test_a_shard_holds_one_kv_head_when_tp_exceeds_them():
    llama = load_workload_spec("llama3-70b")  # 64 query heads, 8 KV heads
    for tp, heads, kv_heads in ((8, 8, 1), (16, 4, 1), (64, 1, 1), (4, 16, 2)):
        params = shard(llama, Parallelism(tp=tp, pp=1)).params
        assert (params["heads"], params["kv_heads"]) == (heads, kv_heads)


def test_replicated_kv_heads_cost_their_memory_on_every_device():
    """At TP 16 each device holds one of the 8 KV heads, as at TP 8: the per-device KV cache of a token is the
    same, so the system's (all devices') is twice TP 8's; the K and V projection weights stop shrinking too."""
    llama = load_workload_spec("llama3-70b")
    tp8, tp16 = sizes_model(llama, tp=8), sizes_model(llama, tp=16)
    assert tp16.kv_bytes_per_token == pytest.approx(2 * tp8.kv_bytes_per_token)
    hidden, head_dim, word = (llama.params[k] for k in ("hidden", "head_dim", "word_bytes"))
    # per layer and device: W_Q and W_O shrink with TP, W_K and W_V (one head each) do not; the FFN shrinks
    kv_weights = 2 * hidden * head_dim * word
    assert tp8.weight_bytes_per_layer - tp16.weight_bytes_per_layer == pytest.approx(
        (tp8.weight_bytes_per_layer - kv_weights - _norm_bytes(tp8)) / 2)


def _norm_bytes(model) -> float:
    """The norms' weights of one layer: not cut by TP."""
    return float(sum(op.bytes_by_role["weights"] for op in model.ops("decode", 1, 1) if "norm" in op.name))


def test_simulate_serves_an_mqa_model_over_four_devices(cli, tmp_path):
    workload = tmp_path / "mqa.yaml"
    workload.write_text(
        "name: mqa\ndescription: d\nsource: s\nblock: gpt\nparams: {batch: 1, seq_len: 256, hidden: 2304, "
        "heads: 24, kv_heads: 1, head_dim: 96, ffn_dim: 9216, layers: 4, vocab: 50000, word_bytes: 2}\n")
    out = cli("simulate", "--system", "vllm-h100", "--workload", str(workload), "--rate", "4", "--requests", "6",
              "--json")
    assert '"requests": 6' in out.output and "tp4" in out.output
