"""Direct numpy references for the library's cascades, written the textbook way (no cascade tricks), so a
cascade that matches its reference computes what its name claims.

Each reference takes the cascade's inputs (declared shapes) and bound params and returns the expected
outputs by name. Layouts: attention Q [B,H,P,E], K [B,H(or G),M,E], V [B,H(or G),M,F], output [B,H,P,F];
Q is taken as already scaled by 1/sqrt(E), as in the FuseMax cascades.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from archsim.cascade.ops import DEFAULT_UNARY_OPS

Arrays = Mapping[str, np.ndarray]
Params = Mapping[str, float]


def _softmax_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """softmax(q k^T) v over the last two axes; `allowed[p, m]` false excludes a key."""
    scores = q @ np.swapaxes(k, -1, -2)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v


def attention(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], None)}


def attention_causal(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    n_q, n_kv = x["Q"].shape[-2], x["K"].shape[-2]
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], np.tri(n_q, n_kv, dtype=bool))}


def attention_causal_gqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal attention, Q [B,H,P,E], K/V [B,G,M,E|F]: query head h uses KV head h // (H/G)."""
    group = x["Q"].shape[1] // x["K"].shape[1]
    k, v = np.repeat(x["K"], group, axis=1), np.repeat(x["V"], group, axis=1)
    return attention_causal({"Q": x["Q"], "K": k, "V": v}, p)


def attention_sliding_window(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal attention to the last `window` keys plus the first `sinks` keys (StreamingLLM)."""
    n_q, n_kv = x["Q"].shape[-2], x["K"].shape[-2]
    q_pos, k_pos = np.arange(n_q)[:, None], np.arange(n_kv)[None, :]
    allowed = (k_pos <= q_pos) & ((q_pos - k_pos < p["window"]) | (k_pos < p["sinks"]))
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], allowed)}


def attention_block_sparse(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Block-local attention (each query block sees its own and the neighbouring key blocks) plus global
    first block (BigBird / Longformer style layout)."""
    block = int(p["block"])
    q_blk = np.arange(x["Q"].shape[-2])[:, None] // block
    k_blk = np.arange(x["K"].shape[-2])[None, :] // block
    allowed = (np.abs(q_blk - k_blk) <= 1) | (k_blk == 0)
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], allowed)}


def attention_decode_gqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """One query token per sequence: Q [B,H,E], K/V [B,G,M,E|F], query head h uses KV head h // (H/G)."""
    q, k, v = x["Q"], x["K"], x["V"]
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    return {"AV": _softmax_attention(q[:, :, None, :], k, v, None)[:, :, 0, :]}


def attention_decode_divide_conquer(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Decode attention over the KV cache K/V [B,G,M,E|F] and the new token's KN [B,G,E], VN [B,G,F]: the
    textbook softmax over the concatenated keys [K; KN] and values [V; VN] (M + 1 tokens), Q [B,H,E]."""
    k = np.concatenate([x["K"], x["KN"][:, :, None, :]], axis=2)
    v = np.concatenate([x["V"], x["VN"][:, :, None, :]], axis=2)
    return attention_decode_gqa({"Q": x["Q"], "K": k, "V": v}, p)


def attention_mla_decode(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """DeepSeek-V2/V3 multi-head latent attention, decode, written un-absorbed: keys and values are
    up-projected from the latent cache C [B,M,L]; keys also carry a shared RoPE part KR [B,M,R].
    Q [B,H,E] (no-RoPE part), QR [B,H,R], WUK [H,E,L], WUV [H,L,F] -> AV [B,H,F]."""
    k_nope = np.einsum("bml,hel->bhme", x["C"], x["WUK"])
    v = np.einsum("bml,hlf->bhmf", x["C"], x["WUV"])
    scores = np.einsum("bhe,bhme->bhm", x["Q"], k_nope) + np.einsum("bhr,bmr->bhm", x["QR"], x["KR"])
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return {"AV": np.einsum("bhm,bhmf->bhf", weights, v)}


def attention_mla_prefill(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """DeepSeek-V2/V3 MLA, causal prefill: keys [k_C; k_R] and values up-projected from the latent C [B,M,L].
    Q [B,H,P,E], QR [B,H,P,R], KR [B,M,R], WUK [H,E,L], WUV [H,L,F] -> AV [B,H,P,F]."""
    k_nope = np.einsum("bml,hel->bhme", x["C"], x["WUK"])
    v = np.einsum("bml,hlf->bhmf", x["C"], x["WUV"])
    q = np.concatenate([x["Q"], x["QR"]], axis=-1)
    k_rope = np.broadcast_to(x["KR"][:, None], (*k_nope.shape[:3], x["KR"].shape[-1]))
    k = np.concatenate([k_nope, k_rope], axis=-1)
    return {"AV": _softmax_attention(q, k, v, np.tri(q.shape[-2], k.shape[-2], dtype=bool))}


def _elu1(a: np.ndarray) -> np.ndarray:
    return np.where(a > 0, a + 1.0, np.exp(a))


def linear_attention(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Non-causal linear attention (Katharopoulos et al. 2020): phi(Q) (phi(K)^T V) / phi(Q) sum phi(K)."""
    fq, fk = _elu1(x["Q"]), _elu1(x["K"])
    numerator = fq @ (np.swapaxes(fk, -1, -2) @ x["V"])
    denominator = fq @ fk.sum(axis=-2)[..., None]
    return {"AV": numerator / denominator}


def linear_attention_causal(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal, unnormalised linear attention without decay: O[p] = sum_{m<=p} (q_p . k_m) v_m
    (the quantity Lightning Attention-2 computes block-wise)."""
    q, k, v = x["Q"], x["K"], x["V"]
    scores = (q @ np.swapaxes(k, -1, -2)) * np.tri(q.shape[-2], k.shape[-2])
    return {"O": scores @ v}


def qkv_projection(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """X [B,P,D]; WQ [H,E,D], WK [G,E,D], WV [G,F,D] -> Q [B,H,P,E], K [B,G,P,E], V [B,G,P,F]."""
    return {
        "Q": np.einsum("bpd,hed->bhpe", x["X"], x["WQ"]),
        "K": np.einsum("bpd,ged->bgpe", x["X"], x["WK"]),
        "V": np.einsum("bpd,gfd->bgpf", x["X"], x["WV"]),
    }


def output_projection(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """AV [B,H,P,F], WO [H,F,D] -> Z [B,P,D]."""
    return {"Z": np.einsum("bhpf,hfd->bpd", x["AV"], x["WO"])}


def ffn(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """GELU(X W1) W2 with the tanh GELU approximation. X [B,P,D], W1 [D,S], W2 [S,D]."""
    gelu = DEFAULT_UNARY_OPS["gelu"].fn
    return {"Y": gelu(x["X"] @ x["W1"]) @ x["W2"]}


def ffn_swiglu(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """(silu(X W1) * (X W3)) W2, the Llama/Mixtral FFN."""
    h1, h3 = x["X"] @ x["W1"], x["X"] @ x["W3"]
    return {"Y": (h1 / (1.0 + np.exp(-h1)) * h3) @ x["W2"]}


def moe_experts(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Top-k routed SwiGLU experts (Mixtral): gates = softmax over each token's top_k router logits.
    X [T,D], WR [D,X], W1/W3 [X,D,S], W2 [X,S,D] -> Y [T,D]."""
    tokens, top_k = x["X"], int(p["top_k"])
    logits = tokens @ x["WR"]
    chosen = np.argsort(-logits, axis=1)[:, :top_k]
    y = np.zeros_like(tokens)
    for t in range(tokens.shape[0]):
        gate_logits = logits[t, chosen[t]]
        gates = np.exp(gate_logits - gate_logits.max())
        gates /= gates.sum()
        for gate, expert in zip(gates, chosen[t], strict=True):
            h1, h3 = tokens[t] @ x["W1"][expert], tokens[t] @ x["W3"][expert]
            y[t] += gate * ((h1 / (1.0 + np.exp(-h1)) * h3) @ x["W2"][expert])
    return {"Y": y}


def rmsnorm(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """X / sqrt(mean(X^2) + eps) * W over the feature axis. X [B,P,D], W [D]."""
    rms = np.sqrt(np.mean(x["X"] ** 2, axis=-1, keepdims=True) + p["eps"])
    return {"Y": x["X"] / rms * x["W"]}


def layernorm(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """(X - mean) / sqrt(var + eps) * G + BETA over the feature axis (biased variance). X [B,P,D], G/BETA [D]."""
    mean, var = x["X"].mean(axis=-1, keepdims=True), x["X"].var(axis=-1, keepdims=True)
    return {"Y": (x["X"] - mean) / np.sqrt(var + p["eps"]) * x["G"] + x["BETA"]}


def residual_add(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    return {"Y": x["X"] + x["R"]}


def mla_projection(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """DeepSeek-V2 MLA projections. X [B,P,D]; WDQ [D,A], WUQ [H,E,A], WQR [H,R,A], WDKV [D,L], WKR [D,R]
    -> Q [B,H,P,E], QR [B,H,P,R], C [B,P,L], KR [B,P,R]."""
    cq = x["X"] @ x["WDQ"]
    return {
        "Q": np.einsum("bpa,hea->bhpe", cq, x["WUQ"]),
        "QR": np.einsum("bpa,hra->bhpr", cq, x["WQR"]),
        "C": x["X"] @ x["WDKV"],
        "KR": x["X"] @ x["WKR"],
    }


def attention_gqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Non-causal attention, Q [B,H,P,E], K/V [B,G,M,E|F]: query head h uses KV head h // (H/G)."""
    group = x["Q"].shape[1] // x["K"].shape[1]
    k, v = np.repeat(x["K"], group, axis=1), np.repeat(x["V"], group, axis=1)
    return attention({"Q": x["Q"], "K": k, "V": v}, p)


def megatron_sp_attention(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """The attention block of a decoder layer: QKV projection of X [B,P,D], causal GQA attention, output
    projection with WO [H,F,D] -> Z [B,P,D] (what Megatron-SP's sequence- and head-sharded block computes)."""
    qkv = qkv_projection(x, p)
    return output_projection({"AV": attention_causal_gqa(qkv, p)["AV"], "WO": x["WO"]}, p)


REFERENCES: dict[str, Callable[[Arrays, Params], dict[str, np.ndarray]]] = {
    fn.__name__: fn
    for fn in (
        attention, attention_causal, attention_causal_gqa, attention_sliding_window, attention_block_sparse,
        attention_decode_gqa, attention_decode_divide_conquer,
        attention_mla_decode, attention_mla_prefill, linear_attention, linear_attention_causal,
        qkv_projection, output_projection, ffn, ffn_swiglu, moe_experts, rmsnorm, layernorm, residual_add,
        mla_projection, attention_gqa, megatron_sp_attention,
    )
}
