"""Always-active shared experts beside the routed ones (`params.shared_experts`: Qwen1.5-MoE, DeepSeek-MoE, -V3).

Every token of a MoE layer runs through the shared experts, a dense gated FFN of shared_experts x ffn_dim: they count
in the model's weights, in every step's weight bytes (read once a step, as a dense FFN's) and FLOPs, are cut by TP
as a dense FFN is and held whole by every EP group. The hand counts below are Qwen1.5-MoE-A2.7B's published config
(HF Qwen/Qwen1.5-MoE-A2.7B config.json, from memory), written out here apart from archsim's cascades."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.systems.seqpar_memory import training_memory
from archsim.systems.sharding import shard
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_model import sizes_model
from archsim.systems.system_spec import load_system
from archsim.systems.system_types import Parallelism

# Qwen1.5-MoE-A2.7B: hidden, heads (= KV heads), head_dim, layers, vocab, routed experts, their width, top-k, and
# the shared expert's width 5632 = 4 x 1408
H, HEADS, HEAD_DIM, LAYERS, VOCAB, E, F, TOP_K, SHARED = 2048, 16, 128, 24, 151936, 60, 1408, 4, 4
WORD = 2  # bf16


def qwen():
    return library.load_workload_spec("qwen1.5-moe-a2.7b")


def mixtral():
    return library.load_workload_spec("mixtral-8x7b")


def _op(ops, name):
    return next(op for op in ops if op.name == name)


def _weights(op) -> int:
    return op.bytes_by_role["weights"]


def test_qwen_workload_holds_its_config():
    params = qwen().params
    assert {k: params[k] for k in ("hidden", "heads", "kv_heads", "head_dim", "layers", "vocab", "experts", "ffn_dim",
                                   "top_k", "shared_experts")} == {
        "hidden": H, "heads": HEADS, "kv_heads": HEADS, "head_dim": HEAD_DIM, "layers": LAYERS, "vocab": VOCAB,
        "experts": E, "ffn_dim": F, "top_k": TOP_K, "shared_experts": SHARED}


def test_qwen_weights_are_the_hand_count():
    """Two vocab tables, and per layer two RMSNorms, Q, K, V and O, the router and 60 + 4 SwiGLU experts of 1408
    (three matrices each). Left out, as archsim counts no bias nor the final norm: Q/K/V biases, the final norm
    and the shared expert's sigmoid gate (hidden x 1), 0.2 M of 14.3 B."""
    attention = 4 * H * HEADS * HEAD_DIM
    experts = 3 * H * F * (E + SHARED)
    per_layer = 2 * H + attention + H * E + experts
    assert sizes_model(qwen()).weight_bytes_per_device == WORD * (2 * VOCAB * H + LAYERS * per_layer)


def test_decode_at_batch_one_reads_top_k_routed_and_the_shared_experts():
    ops = layer_ops(qwen(), Step("decode", 1, 4096), "llama")
    moe, shared = _op(ops, "moe"), _op(ops, "shared_experts")
    routed = sum(moe.tensor_bytes[w] for w in ("W1", "W3", "W2"))
    assert routed == WORD * TOP_K * 3 * H * F  # one token reaches top_k experts
    assert _weights(shared) == WORD * SHARED * 3 * H * F
    assert shared.ops["mac"] == SHARED * 3 * H * F  # one token through every shared expert


def test_prefill_runs_every_token_through_the_shared_experts():
    tokens = 512
    shared = _op(layer_ops(qwen(), Step("prefill", 1, tokens), "llama"), "shared_experts")
    assert shared.ops["mac"] == tokens * SHARED * 3 * H * F
    assert _weights(shared) == WORD * SHARED * 3 * H * F  # read once a step, as a dense FFN's


def test_tp_halves_the_shared_experts_and_ep_keeps_them_whole():
    def shared(par: Parallelism):
        return _op(layer_ops(shard(qwen(), par), Step("decode", 8, 4096), "llama"), "shared_experts")

    one = shared(Parallelism(tp=1, pp=1))
    two = shared(Parallelism(tp=2, pp=1))
    assert 2 * _weights(two) == _weights(one) and 2 * two.ops["mac"] == one.ops["mac"]
    ep = shared(Parallelism(tp=1, pp=1, ep=2))  # replicated on every EP group
    assert _weights(ep) == _weights(one) and ep.ops["mac"] == one.ops["mac"]
    cut = 4 * H * HEADS * HEAD_DIM + 3 * H * F * (E + SHARED)  # what TP cuts: not the norms nor the router
    halved = sizes_model(qwen()).weight_bytes_per_layer - sizes_model(qwen(), tp=2).weight_bytes_per_layer
    assert halved == WORD * cut / 2


def test_no_shared_experts_is_the_model_without_them():
    plain = mixtral()
    zero = replace(plain, params={**plain.params, "shared_experts": 0})
    for step in (Step("decode", 16, 4096), Step("prefill", 2, 512)):
        a, b = layer_ops(plain, step, "llama"), layer_ops(zero, step, "llama")
        assert [(op.name, op.cascade, op.tensor_bytes, op.ops) for op in a] == \
               [(op.name, op.cascade, op.tensor_bytes, op.ops) for op in b]
    assert sizes_model(zero).weight_bytes_per_device == sizes_model(plain).weight_bytes_per_device


def test_dense_layers_of_a_mixed_model_hold_no_shared_experts():
    glam = library.load_workload_spec("glam-143b")
    with_shared = replace(glam, params={**glam.params, "shared_experts": 1})
    step = Step("decode", 4, 4096)
    assert "shared_experts" not in {op.name for op in layer_ops(with_shared, step, "llama", "dense")}
    assert "shared_experts" in {op.name for op in layer_ops(with_shared, step, "llama", "moe")}


def test_shared_experts_are_placed_as_a_dense_ffn():
    """Duplex puts a MoE op on its Logic-PIM where the model times it faster there (its `faster` rule) and every
    dense FFN on the xPU: the shared experts, which every token runs through, follow the FFN's rule, however the
    timing comes out."""
    duplex = load_system("duplex")
    for faster in (lambda device: True, lambda device: False):
        moe = duplex.device_for("moe", "decode", 0.0, faster).name
        assert moe == ("lp" if faster("lp") else "xpu")
        for op_per_byte in (0.0, 1e4):
            assert (duplex.device_for("shared_experts", "decode", op_per_byte, faster).name
                    == duplex.device_for("ffn", "decode", op_per_byte, faster).name == "xpu")


def test_shared_experts_without_experts_are_refused(cli, tmp_path):
    data = yaml.safe_load(Path(library.load_workload_spec("llama3-8b").path).read_text())
    data["params"]["shared_experts"] = 2
    path = tmp_path / "dense-shared.yaml"
    path.write_text(yaml.safe_dump(data))
    output = cli("simulate", "-s", "gpu", "-w", str(path), "--rate", "1", "--requests", "2", expect=2).output
    assert output.startswith(f"error: {path}: params.shared_experts: only for a MoE model: give experts too")
    assert output.count("\n") == 1, output


def test_training_activations_hold_the_shared_experts_of_moe_layers_only():
    """Kept without recomputation (checkpointing none), the shared experts' activations come with each MoE layer:
    GLaM's sizes with every other layer MoE add half what the all-MoE model adds."""
    glam = library.load_workload_spec("glam-143b")
    all_moe = {k: v for k, v in glam.params.items() if k not in ("moe_every", "dense_ffn_dim")}

    def added(params) -> float:
        def held(extra) -> float:
            workload = replace(glam, params={**params, **extra})
            return training_memory(workload, "ring", 2, 4096, checkpointing="none").activations_bytes

        return held({"shared_experts": 1}) - held({})

    assert added(all_moe) > 0
    assert added(glam.params) == pytest.approx(added(all_moe) / 2, rel=1e-12)


def test_a_dense_ffn_cascade_runs_at_the_shared_experts_width_only() -> None:
    """`check_ffn_form`: a dense FFN cascade on a MoE model is refused (one expert per token), and its message
    names the shared experts' width, at which it runs: their one dense FFN every token runs."""
    from click.testing import CliRunner

    from archsim.cli import main

    runner = CliRunner()
    refused = runner.invoke(main, ["analyze", "ffn-swiglu", "-w", "qwen1.5-moe-a2.7b", "--set", "seq_len=16"])
    assert refused.exit_code == 2
    assert "--set ffn_dim=5632 runs it on ffn-swiglu" in refused.output
    runs = runner.invoke(main, ["analyze", "ffn-swiglu", "-w", "qwen1.5-moe-a2.7b", "--set", "seq_len=16",
                                "--set", "ffn_dim=5632"])
    assert runs.exit_code == 0, runs.output
    assert runner.invoke(main, ["analyze", "ffn-swiglu", "-w", "qwen1.5-moe-a2.7b", "--set", "seq_len=16",
                                "--set", "ffn_dim=2816"]).exit_code == 2
