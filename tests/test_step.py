"""One decoder layer as library cascades (`archsim.systems.step`): every op's counts are `analyze()` of its library
cascade bound independently here, and hand-derived closed forms pin the expansion itself (which cascade, which
sizes). Model sizes come from the library workloads (their files cite the model configs)."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.errors import SpecError
from archsim.systems.step import ROLES, Step, layer_ops
from archsim.workload import workload_from_dict

PREFILL, DECODE = Step("prefill", 3, 96), Step("decode", 5, 200)

# The cascades a layer is made of, by op, as the module docstring states them.
DENSE_GPT = ["layernorm", "qkv-projection", "ATTENTION", "output-projection", "residual-add", "layernorm", "ffn",
             "residual-add"]
DENSE_LLAMA = ["rmsnorm", "qkv-projection", "ATTENTION", "output-projection", "residual-add", "rmsnorm",
               "ffn-swiglu", "residual-add"]
MOE_LLAMA = [*DENSE_LLAMA[:6], "moe-experts", "residual-add"]
LAYERS = {"gpt3-7b": ("gpt", DENSE_GPT), "llama3-70b": ("llama", DENSE_LLAMA), "mixtral-8x7b": ("llama", MOE_LLAMA)}
ATTENTION = {("gpt3-7b", "prefill"): "attention-1pass-causal",  # MHA
             ("llama3-70b", "prefill"): "attention-1pass-causal-gqa", ("mixtral-8x7b", "prefill"):
             "attention-1pass-causal-gqa", **{(name, "decode"): "attention-decode-gqa" for name in LAYERS}}


def ops_of(workload: str, step: Step):
    return {op.name: op for op in layer_ops(library.load_workload_spec(workload), step, LAYERS[workload][0])}


@pytest.mark.parametrize("step", [PREFILL, DECODE], ids=["prefill", "decode"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_op_is_the_analysis_of_its_bound_library_cascade(name: str, step: Step) -> None:
    workload = library.load_workload_spec(name)
    block, cascades = LAYERS[name]
    ops = layer_ops(workload, step, block)
    assert [op.cascade for op in ops] == [ATTENTION[name, step.phase] if c == "ATTENTION" else c for c in cascades]
    new_tokens = step.seq_len if step.phase == "prefill" else 1
    for op in ops:
        cascade = library.load_cascade_spec(op.cascade)
        if op.name == "attention":  # every key of the step's context; one key tile in prefill
            sizes = {"batch": step.batch, "seq_len": step.seq_len}
            sizes |= {"tile_kv": step.seq_len} if step.phase == "prefill" else {}
        elif op.cascade == "moe-experts":  # the experts T tokens reach under uniform random routing, to the nearest
            tokens, top_k, experts = step.batch * new_tokens, workload.params["top_k"], workload.params["experts"]
            sizes = {"tokens": tokens, "experts": min(experts, int(experts * (1 - (1 - top_k / experts) ** tokens)
                                                                   + 0.5))}
        else:
            sizes = {"batch": step.batch, "seq_len": new_tokens}
        want = analyze(bind(cascade, workload, sizes))
        assert op.ops == want.total_ops()
        assert op.flops == sum(n * (2 if kind == "mac" else 1) for kind, n in want.total_ops().items())
        assert op.tensor_bytes == {t.name: t.bytes for t in want.tensors}
        assert sum(op.bytes_by_role.values()) == sum(want.bytes_by_kind().values())
        assert op.op_per_byte == op.flops / op.bytes > 0


def test_roles_name_tensors_of_their_cascades() -> None:
    """A misspelt tensor in ROLES would leave a weight counted as an activation. An intermediate takes a role only
    as a recurrence's running state (named in `init`), such as a linear-attention chunk's K^T V state."""
    for name, roles in ROLES.items():
        cascade = library.load_cascade_spec(name)
        assert set(roles) <= set(cascade.tensors), name
        assert all(cascade.tensors[t].kind != "intermediate" or t in cascade.init for t in roles), name


def test_ops_come_in_dependency_order() -> None:
    for name in LAYERS:
        seen: set[str] = set()
        for op in layer_ops(library.load_workload_spec(name), DECODE, LAYERS[name][0]):
            assert set(op.deps) <= seen, (name, op.name, op.deps)
            seen.add(op.name)


def test_gpt3_7b_decode_matches_closed_forms() -> None:
    """GPT-3 7B (hidden d = 4096, 32 heads of 128, ffn 4d, MHA), b requests decoding over c cached tokens:
    QKV b*d*3d MACs, projection b*d*d, FFN 2*b*d*4d; attention QK and AV b*H*c*E MACs each, reading K and V of
    b*H*c*E elements each (2 bytes); the K and V of the new token (b*d each) go to the KV cache."""
    b, c, d, h, e, w = DECODE.batch, DECODE.seq_len, 4096, 32, 128, 2
    ops = ops_of("gpt3-7b", DECODE)
    assert ops["qkv"].ops["mac"] == b * d * 3 * d
    assert ops["qkv"].bytes_by_role["kv_cache"] == 2 * b * d * w
    assert ops["qkv"].bytes_by_role["weights"] == 3 * d * d * w
    assert ops["out_proj"].ops["mac"] == b * d * d
    assert ops["ffn"].ops["mac"] == 2 * b * d * 4 * d
    assert ops["ffn"].ops["gelu"] == b * 4 * d
    assert ops["attention"].ops["mac"] == 2 * b * h * c * e
    assert ops["attention"].bytes_by_role["kv_cache"] == 2 * b * h * c * e * w
    assert ops["attn_residual"].ops == {"add": b * d}


def test_causal_prefill_counts_the_lower_triangle() -> None:
    """GPT-3 7B prefill of N tokens: QK and AV each cost B*H*E*N(N+1)/2 MACs (masked points are free)."""
    b, n, h, e = PREFILL.batch, PREFILL.seq_len, 32, 128
    assert ops_of("gpt3-7b", PREFILL)["attention"].ops["mac"] == 2 * b * h * e * n * (n + 1) // 2


def test_grouped_query_prefill_is_the_causal_cascade_with_kv_heads() -> None:
    """With kv_heads = heads the GQA prefill cascade counts what attention-1pass-causal counts (GPT-3 7B); with
    Llama-3-70B's 8 KV heads of 128 it reads K and V of b*8*N*128 elements each."""
    gpt = library.load_workload_spec("gpt3-7b")
    sizes = {"batch": 2, "seq_len": 64, "tile_kv": 16}
    mha, gqa = (analyze(bind(library.load_cascade_spec(name), gpt, sizes))
                for name in ("attention-1pass-causal", "attention-1pass-causal-gqa"))
    assert mha.total_ops() == gqa.total_ops() and mha.bytes_by_kind() == gqa.bytes_by_kind()
    attention = ops_of("llama3-70b", PREFILL)["attention"]
    assert attention.bytes_by_role["kv_cache"] == 2 * PREFILL.batch * 8 * PREFILL.seq_len * 128 * 2


def test_llama3_70b_keys_and_values_use_kv_heads() -> None:
    """Llama-3-70B (d = 8192, 64 query heads, 8 KV heads of 128): QKV b*d*(64 + 2*8)*128 MACs; the new K and V are
    b*8*128 elements each; decode attention reads K and V of b*8*c*128 elements each."""
    b, c, d, w = DECODE.batch, DECODE.seq_len, 8192, 2
    ops = ops_of("llama3-70b", DECODE)
    assert ops["qkv"].ops["mac"] == b * d * (64 + 2 * 8) * 128
    assert ops["qkv"].bytes_by_role["kv_cache"] == 2 * b * 8 * 128 * w
    assert ops["attention"].bytes_by_role["kv_cache"] == 2 * b * 8 * c * 128 * w
    assert ops["attention"].ops["mac"] == 2 * b * 64 * c * 128  # every query head reads its group's keys
    assert ops["ffn"].ops["mac"] == 3 * b * d * 28672  # SwiGLU: gate, up and down


def test_mixtral_runs_top_k_of_its_experts_per_token() -> None:
    """Mixtral-8x7B (d = 4096, ffn 14336, 8 experts, top 2), T = b*N tokens: router T*d*8 MACs, experts
    3*T*2*d*14336 MACs (gate, up, down of the 2 routed experts only), the gated combine T*2*d MACs; all 8
    experts' weights are the op's."""
    t, d, s, w = PREFILL.batch * PREFILL.seq_len, 4096, 14336, 2
    moe = ops_of("mixtral-8x7b", PREFILL)["moe"]
    assert moe.analysis.ops["R"]["mac"] == t * d * 8
    assert moe.ops["mac"] == t * d * 8 + 3 * t * 2 * d * s + t * 2 * d
    assert moe.bytes_by_role["weights"] == (d * 8 + 3 * 8 * d * s) * w


def test_mla_workload_expands_with_latent_attention() -> None:
    """DeepSeek-V3 MLA: decode reads the latent cache, b*c*(kv_lora_rank 512 + rope_dim 64) elements; the new token
    writes b*(512 + 64); projections b*(d*1536 + 1536*128*(128 + 64) + d*(512 + 64)) MACs (d = 7168)."""
    workload = library.load_workload_spec("deepseek-v3-mla")
    b, c, d, w = DECODE.batch, DECODE.seq_len, 7168, 2
    decode = {op.name: op for op in layer_ops(workload, DECODE, "llama")}
    assert [decode[n].cascade for n in ("qkv", "attention", "moe")] == \
        ["mla-projection", "attention-mla-decode", "moe-experts"]
    assert decode["attention"].bytes_by_role["kv_cache"] == b * c * (512 + 64) * w
    assert decode["qkv"].bytes_by_role["kv_cache"] == b * (512 + 64) * w
    assert decode["qkv"].ops["mac"] == b * (d * 1536 + 1536 * 128 * (128 + 64) + d * (512 + 64))
    prefill = {op.name: op for op in layer_ops(workload, PREFILL, "llama")}
    assert prefill["attention"].cascade == "attention-mla-prefill"


MISTRAL_7B = {  # Jiang et al., "Mistral 7B" (arXiv 2310.06825) Table 1; sinks 0: no attention sinks
    "name": "mistral-7b", "source": "Mistral 7B Table 1",
    "params": {"batch": 1, "seq_len": 8192, "hidden": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128,
               "ffn_dim": 14336, "layers": 32, "window": 4096, "sinks": 0, "word_bytes": 2},
}


def test_sliding_window_decode_reads_at_most_the_window() -> None:
    """With window W and no sinks a decode query reads min(c, W) keys: K and V of b*8*min(c, W)*128 elements."""
    workload = workload_from_dict(MISTRAL_7B, "mistral-7b.yaml")
    for context in (200, 6000):
        step = Step("decode", 2, context)
        attention = layer_ops(workload, step, "llama")[2]
        assert attention.cascade == "attention-decode-gqa"
        assert attention.bytes_by_role["kv_cache"] == 2 * 2 * 8 * min(context, 4096) * 128 * 2
    assert layer_ops(workload, Step("prefill", 1, 64), "llama")[2].cascade == "attention-sliding-window-gqa"


@pytest.mark.parametrize(("drop", "step"), [("head_dim", DECODE), ("top_k", PREFILL), ("sinks", DECODE),
                                            ("word_bytes", PREFILL)])
def test_a_missing_size_names_the_workload_file_and_param(drop: str, step: Step) -> None:
    params = {k: v for k, v in MISTRAL_7B["params"].items() if k != drop}
    if drop == "top_k":
        params["experts"] = 8
    workload = workload_from_dict({**MISTRAL_7B, "params": params}, "mistral-7b.yaml")
    with pytest.raises(SpecError) as err:
        layer_ops(workload, step, "llama")
    assert (err.value.source, err.value.where) == ("mistral-7b.yaml", f"params.{drop}")


@pytest.mark.parametrize(("phase", "batch", "seq_len", "block", "where"), [
    ("train", 1, 1, "gpt", "phase"), ("decode", 0, 1, "gpt", "batch"), ("prefill", 1, 1.5, "gpt", "seq_len"),
    ("decode", 1, 1, "t5", "block"),
])
def test_a_bad_step_is_a_spec_error(phase: str, batch: int, seq_len: float, block: str, where: str) -> None:
    workload = library.load_workload_spec("gpt3-7b")
    with pytest.raises(SpecError) as err:
        layer_ops(workload, Step(phase, batch, seq_len), block)  # type: ignore[arg-type]
    assert err.value.where == where
