"""Direct numpy references for the library's cascades, written the textbook way (no cascade tricks), so a
cascade that matches its reference computes what its name claims.

Each reference takes the cascade's inputs and bound params and returns the expected outputs by name. Its
`Signature`, declared beside it (`@reference`), gives the layout of each tensor it reads and returns as letters,
one letter one size: attention Q [B,H,P,E], K [B,H(or G),M,E], V [B,H(or G),M,F], output AV [B,H,P,F], the H query
heads grouped onto G K/V heads (H a multiple of G); Q is taken as already scaled by 1/sqrt(E), as in the FuseMax
cascades. The letters name roles, not the cascade's ranks: a ring cascade's Q [B, H, N, E] and K [B, G, N, E] fit P
and M. `check_fits` holds a cascade naming a reference to it when the cascade loads, and `check_sizes` the bound
sizes before `archsim execute --check` runs it, so the reference never meets arrays it cannot read.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from archsim.cascade.ops import DEFAULT_UNARY_OPS
from archsim.errors import SpecError

if TYPE_CHECKING:
    from archsim.cascade.bind import Binding
    from archsim.cascade.ir import Cascade

Arrays = Mapping[str, np.ndarray]
Params = Mapping[str, float]
Reference = Callable[[Arrays, Params], dict[str, np.ndarray]]
Layouts = dict[str, tuple[str, ...]]  # tensor -> one letter per axis


@dataclass(frozen=True)
class Signature:
    """What a reference reads and returns: each tensor's layout (a letter is one size throughout) and the params
    it reads."""

    inputs: Layouts
    outputs: Layouts
    params: tuple[str, ...]

    @property
    def tensors(self) -> Layouts:
        return {**self.inputs, **self.outputs}

    def __str__(self) -> str:
        shown = f"{_show(self.inputs)} -> {_show(self.outputs)}"
        return shown + (f" with params {', '.join(self.params)}" if self.params else "")


def _layouts(text: str) -> Layouts:
    """`Q[B,H,P,E] K[B,H,M,E]` as {Q: (B, H, P, E), K: (B, H, M, E)}."""
    return {name: tuple(letters.split(",")) for name, letters in re.findall(r"(\w+)\[([A-Z,]+)\]", text)}


def _show(layouts: Mapping[str, tuple[str, ...]]) -> str:
    return " ".join(f"{name}[{','.join(ranks)}]" for name, ranks in layouts.items())


REFERENCES: dict[str, Reference] = {}
SIGNATURES: dict[str, Signature] = {}


def reference(layout: str, *params: str) -> Callable[[Reference], Reference]:
    """Register the decorated function by its name in REFERENCES, and in SIGNATURES what it reads and returns:
    `layout` is `inputs -> outputs`, each tensor written NAME[letters]; `params` are the params it reads."""
    inputs, outputs = layout.split(" -> ")
    signature = Signature(_layouts(inputs), _layouts(outputs), params)

    def register(fn: Reference) -> Reference:
        REFERENCES[fn.__name__], SIGNATURES[fn.__name__] = fn, signature
        return fn

    return register


MHA = "Q[B,H,P,E] K[B,H,M,E] V[B,H,M,F] -> AV[B,H,P,F]"  # one K/V head per query head
GQA = "Q[B,H,P,E] K[B,G,M,E] V[B,G,M,F] -> AV[B,H,P,F]"  # query head h reads K/V head h // (H/G)
DECODE = "Q[B,H,E] K[B,G,M,E] V[B,G,M,F] -> AV[B,H,F]"  # one query token per sequence, grouped K/V heads
MQA = "Q[B,H,P,E] K[B,M,E] V[B,M,F] -> AV[B,H,P,F]"  # one K/V head (no head rank) that every query head reads
SQUARE = "Q[B,H,P,E] K[B,G,P,E] V[B,G,P,F] -> AV[B,H,P,F]"  # grouped, one key per query (a prompt's own keys)


def reference_ranks(cascade: Cascade, tensor: str) -> tuple[str, ...]:
    """The ranks of a cascade's tensor as its reference reads them: a run of a partitioned rank's parts, in order
    (K declared [B, H, M1, M0, E]), is that rank, whose index m = m1*M0 + m0 the row-major layout already is."""
    ranks = cascade.tensors[tensor].ranks
    for root, parts in cascade.partitions.items():
        at = next((i for i in range(len(ranks)) if ranks[i : i + len(parts)] == parts), None)
        if at is not None:
            ranks = (*ranks[:at], root, *ranks[at + len(parts) :])
    return ranks


def reference_shape(binding: Binding, tensor: str) -> tuple[int, ...]:
    """The bound shape of a cascade's tensor in its reference's layout (`reference_ranks`)."""
    return tuple(binding.rank_sizes[r] for r in reference_ranks(binding.cascade, tensor))


def check_fits(cascade: Cascade) -> None:
    """Refuse (SpecError on `reference`, saying what the reference expects and what the cascade has) a cascade whose
    tensors cannot be its reference's (`_misfit`): comparing them could only fail, or not run."""
    signature = SIGNATURES[cascade.reference]
    problem = _misfit(cascade, signature)
    if problem:
        has = {name: cascade.tensors[name].ranks for name in cascade.inputs}
        outputs = {name: cascade.tensors[name].ranks for name in cascade.outputs}
        raise SpecError(cascade.source, "reference", f"reference {cascade.reference} expects {signature}; the cascade "
                                                     f"has {_show(has)} -> {_show(outputs)}: {problem}")


def _misfit(cascade: Cascade, signature: Signature) -> str | None:
    """Why the cascade's tensors cannot be the reference's, or None: an input of the reference missing or one it does
    not read, an output of it missing or a recurrence (one slot longer), another count of ranks, a letter standing
    for two ranks that may differ in size (`_same_size`), a param it reads missing. Other outputs are not compared."""
    names = [f"no input {n}" for n in signature.inputs if n not in cascade.inputs]
    names += [f"an input {n} the reference does not read" for n in cascade.inputs if n not in signature.inputs]
    names += [f"no output {n}" for n in signature.outputs if n not in cascade.outputs]
    if names:
        return names[0]
    for name, letters in signature.tensors.items():
        decl, ranks = cascade.tensors[name], reference_ranks(cascade, name)
        if decl.iterative:
            return f"{name} is a recurrence (one slot longer along {decl.iterative}); output its final value"
        if len(ranks) != len(letters):
            return f"{name} has {len(ranks)} ranks, the reference's {len(letters)}"
    clash = _clash(signature, lambda name: reference_ranks(cascade, name),
                   lambda a, b: _same_size(cascade, a, b))
    if clash:
        letter, first, first_rank, name, rank = clash
        return f"the reference's {letter} is rank {first_rank} in {first} but rank {rank} in {name}"
    return next((f"no param {p}" for p in signature.params if p not in cascade.params), None)


def _same_size(cascade: Cascade, a: str, b: str) -> bool:
    """Two ranks are one size at any params: the same rank, or ranks of one size expression (P and M both
    seq_len). Setting a rank directly can still part them (`check_sizes`)."""
    return a == b or (cascade.rank_sizes[a] is not None and cascade.rank_sizes[a] == cascade.rank_sizes[b])


def _clash(signature: Signature, axes: Callable[[str], tuple], same: Callable) -> tuple | None:
    """The first letter of the signature whose axes differ (by `same`) between two tensors: (letter, first tensor,
    its axis, tensor, its axis), or None. `axes(tensor)` gives one axis (a rank, a size) per letter."""
    seen: dict[str, tuple] = {}
    for name, letters in signature.tensors.items():
        for letter, axis in zip(letters, axes(name), strict=True):
            first, first_axis = seen.setdefault(letter, (name, axis))
            if not same(first_axis, axis):
                return letter, first, first_axis, name, axis
    return None


def check_sizes(binding: Binding) -> None:
    """Refuse (SpecError on `reference`) bound sizes the reference cannot read: a letter of its layouts two sizes
    (ranks of one size expression that a rank set directly parted: `--set M=32` beside P=16), or H query heads not a
    multiple of the G K/V heads they are grouped onto (query head h reads K/V head h // (H/G))."""
    cascade, signature = binding.cascade, SIGNATURES[binding.cascade.reference]
    clash = _clash(signature, lambda name: reference_shape(binding, name), operator.eq)
    sizes = {letter: size for name, letters in signature.tensors.items()
             for letter, size in zip(letters, reference_shape(binding, name), strict=True)}
    if clash:
        letter, first, first_size, name, size = clash
        problem = f"its {letter} is {first_size} in {first} but {size} in {name}"
    elif "G" in sizes and sizes["H"] % sizes["G"]:
        problem = f"its H query heads ({sizes['H']}) are no multiple of its G K/V heads ({sizes['G']})"
    else:
        return
    ranks = " ".join(f"{r}={n}" for r, n in binding.rank_sizes.items())
    raise SpecError(cascade.source, "reference", f"reference {cascade.reference} expects {signature}: {problem} at "
                                                 f"{ranks}")


def _softmax_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """softmax(q k^T) v over the last two axes; `allowed[p, m]` false excludes a key."""
    scores = q @ np.swapaxes(k, -1, -2)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v


@reference(MHA)
def attention(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Softmax attention, AV = softmax(Q K^T) V over every key (Q already scaled), one K/V head per query head."""
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], None)}


@reference(MHA)
def attention_causal(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal softmax attention: query p sees keys m <= p (a lower triangle, counted from the first key)."""
    n_q, n_kv = x["Q"].shape[-2], x["K"].shape[-2]
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], np.tri(n_q, n_kv, dtype=bool))}


@reference(GQA)
def attention_causal_gqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal attention, Q [B,H,P,E], K/V [B,G,M,E|F]: query head h uses KV head h // (H/G)."""
    group = x["Q"].shape[1] // x["K"].shape[1]
    k, v = np.repeat(x["K"], group, axis=1), np.repeat(x["V"], group, axis=1)
    return attention_causal({"Q": x["Q"], "K": k, "V": v}, p)


@reference(MHA, "window", "sinks")
def attention_sliding_window(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal attention to the last `window` keys plus the first `sinks` keys (StreamingLLM)."""
    n_q, n_kv = x["Q"].shape[-2], x["K"].shape[-2]
    q_pos, k_pos = np.arange(n_q)[:, None], np.arange(n_kv)[None, :]
    allowed = (k_pos <= q_pos) & ((q_pos - k_pos < p["window"]) | (k_pos < p["sinks"]))
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], allowed)}


@reference(MHA, "block")
def attention_block_sparse(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Block-local attention (each query block sees its own and the neighbouring key blocks) plus global
    first block (BigBird / Longformer style layout)."""
    block = int(p["block"])
    q_blk = np.arange(x["Q"].shape[-2])[:, None] // block
    k_blk = np.arange(x["K"].shape[-2])[None, :] // block
    allowed = (np.abs(q_blk - k_blk) <= 1) | (k_blk == 0)
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], allowed)}


@reference(DECODE)
def attention_decode_gqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """One query token per sequence: Q [B,H,E], K/V [B,G,M,E|F], query head h uses KV head h // (H/G)."""
    q, k, v = x["Q"], x["K"], x["V"]
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    return {"AV": _softmax_attention(q[:, :, None, :], k, v, None)[:, :, 0, :]}


@reference("Q[B,H,E] K[B,G,M,E] V[B,G,M,F] KN[B,G,E] VN[B,G,F] -> AV[B,H,F]")
def attention_decode_divide_conquer(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Decode attention over the KV cache K/V [B,G,M,E|F] and the new token's KN [B,G,E], VN [B,G,F]: the
    textbook softmax over the concatenated keys [K; KN] and values [V; VN] (M + 1 tokens), Q [B,H,E]."""
    k = np.concatenate([x["K"], x["KN"][:, :, None, :]], axis=2)
    v = np.concatenate([x["V"], x["VN"][:, :, None, :]], axis=2)
    return attention_decode_gqa({"Q": x["Q"], "K": k, "V": v}, p)


@reference("Q[B,H,E] QR[B,H,R] C[B,M,L] KR[B,M,R] WUK[H,E,L] WUV[H,L,F] -> AV[B,H,F]")
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


@reference("Q[B,H,P,E] QR[B,H,P,R] C[B,M,L] KR[B,M,R] WUK[H,E,L] WUV[H,L,F] -> AV[B,H,P,F]")
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


@reference(MHA)
def linear_attention(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Non-causal linear attention (Katharopoulos et al. 2020): phi(Q) (phi(K)^T V) / phi(Q) sum phi(K)."""
    fq, fk = _elu1(x["Q"]), _elu1(x["K"])
    numerator = fq @ (np.swapaxes(fk, -1, -2) @ x["V"])
    denominator = fq @ fk.sum(axis=-2)[..., None]
    return {"AV": numerator / denominator}


@reference("Q[B,H,P,E] K[B,H,M,E] V[B,H,M,F] -> O[B,H,P,F]")
def linear_attention_causal(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal, unnormalised linear attention without decay: O[p] = sum_{m<=p} (q_p . k_m) v_m
    (the quantity Lightning Attention-2 computes block-wise)."""
    q, k, v = x["Q"], x["K"], x["V"]
    scores = (q @ np.swapaxes(k, -1, -2)) * np.tri(q.shape[-2], k.shape[-2])
    return {"O": scores @ v}


@reference("X[B,P,D] WQ[H,E,D] WK[G,E,D] WV[G,F,D] -> Q[B,H,P,E] K[B,G,P,E] V[B,G,P,F]")
def qkv_projection(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """X [B,P,D]; WQ [H,E,D], WK [G,E,D], WV [G,F,D] -> Q [B,H,P,E], K [B,G,P,E], V [B,G,P,F]."""
    return {
        "Q": np.einsum("bpd,hed->bhpe", x["X"], x["WQ"]),
        "K": np.einsum("bpd,ged->bgpe", x["X"], x["WK"]),
        "V": np.einsum("bpd,gfd->bgpf", x["X"], x["WV"]),
    }


@reference("AV[B,H,P,F] WO[H,F,D] -> Z[B,P,D]")
def output_projection(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """AV [B,H,P,F], WO [H,F,D] -> Z [B,P,D]."""
    return {"Z": np.einsum("bhpf,hfd->bpd", x["AV"], x["WO"])}


@reference("X[B,P,D] W1[D,S] W2[S,D] -> Y[B,P,D]")
def ffn(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """GELU(X W1) W2 with the tanh GELU approximation. X [B,P,D], W1 [D,S], W2 [S,D]."""
    gelu = DEFAULT_UNARY_OPS["gelu"].fn
    return {"Y": gelu(x["X"] @ x["W1"]) @ x["W2"]}


@reference("X[B,P,D] W1[D,S] W3[D,S] W2[S,D] -> Y[B,P,D]")
def ffn_swiglu(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """(silu(X W1) * (X W3)) W2, the Llama/Mixtral FFN."""
    h1, h3 = x["X"] @ x["W1"], x["X"] @ x["W3"]
    return {"Y": (h1 / (1.0 + np.exp(-h1)) * h3) @ x["W2"]}


@reference("X[T,D] WR[D,X] W1[X,D,S] W3[X,D,S] W2[X,S,D] -> Y[T,D]", "top_k")
def moe_experts(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Top-k routed SwiGLU experts (Mixtral): gates = softmax over each token's top_k router logits.
    X [T,D], WR [D,X], W1/W3 [X,D,S], W2 [X,S,D] -> Y [T,D]."""
    tokens, top_k = x["X"], int(p["top_k"])
    logits = tokens @ x["WR"]
    chosen = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]  # ties to the lower index, as _top_k
    y = np.zeros_like(tokens)
    for t in range(tokens.shape[0]):
        gate_logits = logits[t, chosen[t]]
        gates = np.exp(gate_logits - gate_logits.max())
        gates /= gates.sum()
        for gate, expert in zip(gates, chosen[t], strict=True):
            h1, h3 = tokens[t] @ x["W1"][expert], tokens[t] @ x["W3"][expert]
            y[t] += gate * ((h1 / (1.0 + np.exp(-h1)) * h3) @ x["W2"][expert])
    return {"Y": y}


@reference("X[B,P,D] W[D] -> Y[B,P,D]", "eps")
def rmsnorm(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """X / sqrt(mean(X^2) + eps) * W over the feature axis. X [B,P,D], W [D]."""
    rms = np.sqrt(np.mean(x["X"] ** 2, axis=-1, keepdims=True) + p["eps"])
    return {"Y": x["X"] / rms * x["W"]}


@reference("X[B,P,D] G[D] BETA[D] -> Y[B,P,D]", "eps")
def layernorm(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """(X - mean) / sqrt(var + eps) * G + BETA over the feature axis (biased variance). X [B,P,D], G/BETA [D]."""
    mean, var = x["X"].mean(axis=-1, keepdims=True), x["X"].var(axis=-1, keepdims=True)
    return {"Y": (x["X"] - mean) / np.sqrt(var + p["eps"]) * x["G"] + x["BETA"]}


@reference("X[B,P,D] R[B,P,D] -> Y[B,P,D]")
def residual_add(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """The residual connection: Y = X + R, elementwise."""
    return {"Y": x["X"] + x["R"]}


@reference("X[B,P,D] WDQ[D,A] WUQ[H,E,A] WQR[H,R,A] WDKV[D,L] WKR[D,R] "
           "-> Q[B,H,P,E] QR[B,H,P,R] C[B,P,L] KR[B,P,R]")
def mla_projection(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """DeepSeek-V2 MLA projections. X [B,P,D]; WDQ [D,A], WUQ [H,E,A], WQR [H,R,A], WDKV [D,L], WKR [D,R]
    -> Q [B,H,P,E], QR [B,H,P,R], C [B,P,L], KR [B,P,R]."""
    cq = x["X"] @ x["WDQ"]
    return {"Q": np.einsum("bpa,hea->bhpe", cq, x["WUQ"]), "QR": np.einsum("bpa,hra->bhpr", cq, x["WQR"]),
            **_mla_latent_kv(x)}


@reference("X[B,P,D] WQ[H,E,D] WQR[H,R,D] WDKV[D,L] WKR[D,R] -> Q[B,H,P,E] QR[B,H,P,R] C[B,P,L] KR[B,P,R]")
def mla_projection_direct_q(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """MLA projections without query compression (DeepSeek-V2-Lite): queries straight from X [B,P,D] by WQ [H,E,D]
    and WQR [H,R,D]; the latent and the shared RoPE key as `mla_projection`'s."""
    return {"Q": np.einsum("bpd,hed->bhpe", x["X"], x["WQ"]), "QR": np.einsum("bpd,hrd->bhpr", x["X"], x["WQR"]),
            **_mla_latent_kv(x)}


def _mla_latent_kv(x: Arrays) -> dict[str, np.ndarray]:
    """The MLA KV cache of X [B,P,D]: the latent C = X WDKV [B,P,L] and the shared RoPE key KR = X WKR [B,P,R]."""
    return {"C": x["X"] @ x["WDKV"], "KR": x["X"] @ x["WKR"]}


@reference(GQA)
def attention_gqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Non-causal attention, Q [B,H,P,E], K/V [B,G,M,E|F]: query head h uses KV head h // (H/G)."""
    group = x["Q"].shape[1] // x["K"].shape[1]
    k, v = np.repeat(x["K"], group, axis=1), np.repeat(x["V"], group, axis=1)
    return attention({"Q": x["Q"], "K": k, "V": v}, p)


ATTENTION_BLOCK = "X[B,P,D] WQ[H,E,D] WK[G,E,D] WV[G,F,D] WO[H,F,D] -> Z[B,P,D]"


def _attention_block(x: Arrays, p: Params, attend: Reference) -> dict[str, np.ndarray]:
    """QKV projection of X [B,P,D], GQA attention by `attend`, output projection with WO [H,F,D] -> Z [B,P,D]."""
    qkv = qkv_projection(x, p)
    return output_projection({"AV": attend(qkv, p)["AV"], "WO": x["WO"]}, p)


@reference(ATTENTION_BLOCK)
def megatron_sp_attention(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """The attention block of a decoder layer: QKV projection of X [B,P,D], causal GQA attention, output
    projection with WO [H,F,D] -> Z [B,P,D] (what Megatron-SP's sequence- and head-sharded block computes)."""
    return _attention_block(x, p, attention_causal_gqa)


@reference(ATTENTION_BLOCK)
def megatron_sp_attention_noncausal(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """`megatron_sp_attention` with non-causal GQA attention (every query sees every key)."""
    return _attention_block(x, p, attention_gqa)


# each reference whose queries attend every key of their own sequence (no mask) -> the same attention with the causal
# mask of a decoder's prefill (`archsim.point.check_causal_form`)
CAUSAL_FORMS = {"attention": "attention_causal", "attention_gqa": "attention_causal_gqa",
                "attention_mqa": "attention_causal_mqa", "linear_attention": "linear_attention_causal",
                "megatron_sp_attention_noncausal": "megatron_sp_attention"}


# ---------------------------------------------------------------- sparse prefill and KV selection (issue 19)
# Each builds the method's mask the way its paper or code does (argsort top-k, scores set to +inf for the
# positions the code forces), then calls dense softmax attention with that mask. Query heads are grouped onto
# KV heads as in GQA (query head h reads KV head h // (H / G)); Q is taken as already scaled.


def _gqa_repeat(kv: np.ndarray, heads: int) -> np.ndarray:
    return np.repeat(kv, heads // kv.shape[1], axis=1)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest entries along the last axis."""
    chosen = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(keep, chosen, True, axis=-1)
    return keep


def _masked_prefill(x: Arrays, allowed: np.ndarray) -> dict[str, np.ndarray]:
    """Dense attention of Q [B,H,P,E] over K/V [B,G,M,*] restricted to `allowed` (broadcast to [B,H,P,M])."""
    heads = x["Q"].shape[1]
    return {"AV": _softmax_attention(x["Q"], _gqa_repeat(x["K"], heads), _gqa_repeat(x["V"], heads), allowed)}


def _masked_decode(x: Arrays, allowed: np.ndarray) -> dict[str, np.ndarray]:
    """Dense decode attention of Q [B,H,E] over K/V [B,G,M,*] restricted to `allowed` (broadcast to [B,H,M])."""
    heads = x["Q"].shape[1]
    k, v = _gqa_repeat(x["K"], heads), _gqa_repeat(x["V"], heads)
    return {"AV": _softmax_attention(x["Q"][:, :, None, :], k, v, allowed[:, :, None, :])[:, :, 0, :]}


def _causal(n: int) -> np.ndarray:
    return np.tri(n, n, dtype=bool)


@reference(SQUARE, "sinks", "window")
def minference_a_shape(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """MInference's A-shape head: causal attention to the first `sinks` keys and the last `window` keys."""
    n = x["Q"].shape[-2]
    q_pos, k_pos = np.arange(n)[:, None], np.arange(n)[None, :]
    return _masked_prefill(x, _causal(n) & ((k_pos < p["sinks"]) | (q_pos - k_pos < p["window"])))


def _estimate_last_queries(x: Arrays, last_q: int) -> np.ndarray:
    """A-hat = softmax(Q[-last_q:] K^T + causal) per query head: [B,H,last_q,M]."""
    q, n = x["Q"][:, :, -last_q:, :], x["Q"].shape[-2]
    scores = q @ np.swapaxes(_gqa_repeat(x["K"], q.shape[1]), -1, -2)
    scores = np.where(_causal(n)[-last_q:], scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def vertical_slash_selection(x: Arrays, p: Params) -> tuple[np.ndarray, np.ndarray]:
    """MInference Alg. 2's selection: verticals [B,H,M] and slashes [B,H,D] (D = p - m) kept. Column sums and
    diagonal sums of the last `last_q` queries' A-hat (all of them, as the cascade's mask takes, when there are
    fewer); the first `sink_columns` columns and the `local_diagonals` diagonals nearest the main one are forced
    (+inf, as the code does), then the top k_v and k_s are kept."""
    n = x["Q"].shape[-2]
    last_q = min(int(p["last_q"]), n)
    a_hat = _estimate_last_queries(x, last_q)
    vertical = a_hat.sum(axis=-2)
    rows = np.arange(n - last_q, n)[:, None] - np.arange(n)[None, :]  # p - m of each estimated point
    slash = np.zeros(vertical.shape)
    for d in range(n):
        slash[..., d] = a_hat[..., rows == d].sum(axis=-1)
    vertical[..., : int(p["sink_columns"])] = np.inf
    slash[..., : int(p["local_diagonals"])] = np.inf
    return _top_k(vertical, int(p["k_v"])), _top_k(slash, int(p["k_s"]))


@reference(SQUARE, "last_q", "sink_columns", "local_diagonals", "k_v", "k_s")
def minference_vertical_slash(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """MInference's vertical-slash head (Alg. 2): causal attention to the kept columns and diagonals."""
    vertical, slash = vertical_slash_selection(x, p)
    n = x["Q"].shape[-2]
    diagonal = np.clip(np.arange(n)[:, None] - np.arange(n)[None, :], 0, n - 1)
    allowed = _causal(n) & (vertical[:, :, None, :] | slash[:, :, diagonal])
    return _masked_prefill(x, allowed)


@reference(SQUARE, "last_q", "sink_columns", "local_diagonals", "k_v", "k_s", "block")
def minference_vertical_slash_kernel(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """MInference's vertical-slash head at kernel granularity (kernels/vertical_slash.py's index build): Alg. 2's
    selection; each query block [start, end) of `block` rows sees the `block`-wide key window [e - block, e),
    e = max(end - s, block), of every kept slash s < end, and every kept vertical column; causal throughout."""
    vertical, slash = vertical_slash_selection(x, p)
    n, block = x["Q"].shape[-2], int(p["block"])
    keys = np.arange(n)
    windows = np.zeros((*slash.shape[:2], n, n), dtype=bool)
    for start in range(0, n, block):
        end = start + block
        window_end = np.maximum(end - keys, block)[:, None]  # e per slash offset s (the rows of `covers`)
        covers = (keys[:, None] < end) & (window_end - block <= keys) & (keys < window_end)  # [slash s, key m]
        windows[:, :, start:end] = (slash.astype(np.int64) @ covers)[:, :, None, :] > 0
    return _masked_prefill(x, _causal(n) & (vertical[:, :, None, :] | windows))


def _block_mean(a: np.ndarray, block: int) -> np.ndarray:
    """Mean over consecutive `block` rows of the second-to-last axis."""
    return a.reshape(*a.shape[:-2], a.shape[-2] // block, block, a.shape[-1]).mean(axis=-2)


def block_sparse_selection(x: Arrays, p: Params) -> np.ndarray:
    """MInference Alg. 3's selection [B,H,I,J]: softmax of mean-pooled Q and K blocks under the block-causal
    mask, top `k_b` key blocks per query block."""
    block, heads = int(p["block"]), x["Q"].shape[1]
    scores = _block_mean(x["Q"], block) @ np.swapaxes(_block_mean(_gqa_repeat(x["K"], heads), block), -1, -2)
    blocks = scores.shape[-1]
    scores = np.where(_causal(blocks), scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return _top_k(np.where(_causal(blocks), weights, -np.inf), int(p["k_b"])) & _causal(blocks)


@reference(SQUARE, "block", "k_b")
def minference_block_sparse(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """MInference's block-sparse head (Alg. 3): causal attention within the selected (query, key) blocks."""
    block, n = int(p["block"]), x["Q"].shape[-2]
    chosen = block_sparse_selection(x, p)
    blocks = np.arange(n) // block
    return _masked_prefill(x, _causal(n) & chosen[:, :, blocks[:, None], blocks[None, :]])


def _streaming(q_pos: np.ndarray, k_pos: np.ndarray, p: Params) -> np.ndarray:
    """A DuoAttention streaming head's keys: `sinks` first tokens and `recent` last ones before the query."""
    return (k_pos < p["sinks"]) | (q_pos - k_pos < p["recent"])


@reference("Q[B,H,P,E] K[B,G,P,E] V[B,G,P,F] RETRIEVAL[G] -> AV[B,H,P,F]", "sinks", "recent")
def duoattention_prefill(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """DuoAttention prefill: retrieval KV heads (RETRIEVAL[g] > 0) causal over all keys, streaming heads over
    sinks + recent keys."""
    n, heads = x["Q"].shape[-2], x["Q"].shape[1]
    retrieval = _gqa_repeat(x["RETRIEVAL"][None, :], heads)[0] > 0
    pos = np.arange(n)
    allowed = _causal(n) & (retrieval[:, None, None] | _streaming(pos[:, None], pos[None, :], p))
    return _masked_prefill(x, allowed[None])


@reference("Q[B,H,E] K[B,G,M,E] V[B,G,M,F] RETRIEVAL[G] -> AV[B,H,F]", "sinks", "recent")
def duoattention_decode(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """DuoAttention decode: the query (position seq_len - 1) over the full cache on retrieval heads, over
    sinks + recent cached tokens on streaming heads."""
    n, heads = x["K"].shape[-2], x["Q"].shape[1]
    retrieval = _gqa_repeat(x["RETRIEVAL"][None, :], heads)[0] > 0
    allowed = retrieval[:, None] | _streaming(np.array(n - 1), np.arange(n), p)[None, :]
    return _masked_decode(x, allowed[None])


@reference("Q[B,H,E] K[B,G,M,E] V[B,G,M,F] RETRIEVAL[G] -> AV[B,H,F]", "min_window", "window_fraction")
def razorattention_decode(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """RazorAttention decode: retrieval heads over the full cache; the others over the max(min_window,
    window_fraction * N) most recent tokens plus one compensation token, the mean of the dropped keys and
    values (none when nothing is dropped)."""
    q, k, v = x["Q"], x["K"], x["V"]
    n, heads = k.shape[-2], q.shape[1]
    window = max(p["min_window"], p["window_fraction"] * n)
    recent = n - np.arange(n) <= window
    out = np.empty(q.shape[:2] + v.shape[-1:])
    for g, retrieval in enumerate(x["RETRIEVAL"] > 0):
        heads_g = slice(g * (heads // k.shape[1]), (g + 1) * (heads // k.shape[1]))
        keys, values = k[:, g], v[:, g]
        if not retrieval and not recent.all():
            keys = np.concatenate([keys[:, recent], keys[:, ~recent].mean(axis=1, keepdims=True)], axis=1)
            values = np.concatenate([values[:, recent], values[:, ~recent].mean(axis=1, keepdims=True)], axis=1)
        scores = np.einsum("bhe,bme->bhm", q[:, heads_g], keys)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        out[:, heads_g] = np.einsum("bhm,bmf->bhf", weights / weights.sum(axis=-1, keepdims=True), values)
    return {"AV": out}


@reference("Q[B,H,E] K[B,G,M,E] V[B,G,M,F] KMIN[B,H,J,E] KMAX[B,H,J,E] -> AV[B,H,F]", "page", "budget_pages")
def quest_decode(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Quest (ICML'24): per page the upper bound sum_i max(q_i min_i, q_i max_i) from the page's channel-wise key
    minima KMIN and maxima KMAX [B,H,J,E]; attention over the tokens of the top `budget_pages` pages."""
    q, page = x["Q"], int(p["page"])
    bound = np.maximum(q[:, :, None, :] * x["KMIN"], q[:, :, None, :] * x["KMAX"]).sum(axis=-1)
    pages = _top_k(bound, int(p["budget_pages"]))
    return _masked_decode(x, np.repeat(pages, page, axis=-1))


@reference(DECODE, "sinks", "local", "k")
def tokenselect_decode(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """TokenSelect: per-head softmax of q.k over the cache, summed over all query heads (soft vote); the top `k`
    tokens other than the `sinks` first and `local` last, plus those, are attended by every head."""
    q, n = x["Q"], x["K"].shape[-2]
    scores = np.einsum("bhe,bhme->bhm", q, _gqa_repeat(x["K"], q.shape[1]))
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    vote = (weights / weights.sum(axis=-1, keepdims=True)).sum(axis=1)
    pos = np.arange(n)
    forced = (pos < p["sinks"]) | (pos >= n - p["local"])
    chosen = _top_k(np.where(forced, -np.inf, vote), int(p["k"])) | forced
    return _masked_decode(x, chosen[:, None, :])


def _cumulative(scores: np.ndarray, gamma: float) -> np.ndarray:
    """FlexPrefill's cumulative selection along the last axis: the fewest largest entries whose sum reaches
    gamma of the total (sorted descending, kept up to the first prefix sum >= gamma * total)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=-1)
    before = np.cumsum(ranked, axis=-1) - ranked  # the sum of the entries ranked above each one
    keep = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(keep, order, before < gamma * scores.sum(axis=-1, keepdims=True), axis=-1)
    return keep


@reference(SQUARE, "block", "tau", "gamma")
def flexprefill(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """FlexPrefill at `block` granularity: the last block of queries' A-hat gives vertical and slash scores and
    the block-pooled distribution; sqrt(JSD) against the pooled-Q/K estimate below tau picks block-sparse (pooled
    block scores, cumulative gamma per query block) over vertical-slash (cumulative gamma on columns and
    diagonals, taken to blocks); the first key block and the diagonal block are always kept."""
    block, n, heads = int(p["block"]), x["Q"].shape[-2], x["Q"].shape[1]
    blocks = n // block
    a_hat = _estimate_last_queries(x, block)
    vertical = a_hat.sum(axis=-2)
    offsets = np.arange(n - block, n)[:, None] - np.arange(n)[None, :]
    slash = np.stack([a_hat[..., offsets == d].sum(axis=-1) for d in range(n)], axis=-1)
    true_blocks = vertical.reshape(*vertical.shape[:-1], blocks, block).mean(axis=-1)
    scores = _block_mean(x["Q"], block) @ np.swapaxes(_block_mean(_gqa_repeat(x["K"], heads), block), -1, -2)
    scores = np.where(_causal(blocks), scores, -np.inf)
    pooled = np.exp(scores - scores.max(axis=-1, keepdims=True))
    pooled /= pooled.sum(axis=-1, keepdims=True)
    estimate = pooled[..., -1, :]
    middle = (true_blocks + estimate) / 2
    jsd = (np.sum(true_blocks * np.log(true_blocks / middle), axis=-1)
           + np.sum(estimate * np.log(estimate / middle), axis=-1)) / 2
    block_sparse = np.sqrt(jsd) < p["tau"]
    chosen_bs = _cumulative(np.where(_causal(blocks), pooled, 0.0), p["gamma"]) & _causal(blocks)
    columns = _cumulative(vertical, p["gamma"]).reshape(*vertical.shape[:-1], blocks, block).any(axis=-1)
    diagonals = _cumulative(slash, p["gamma"])
    gap = (np.arange(blocks)[:, None] - np.arange(blocks)[None, :]) * block  # q-block start - k-block start
    d = np.arange(n)
    crossed = (d > gap[..., None] - block) & (d < gap[..., None] + block)  # slashes crossing each block pair
    chosen_vs = columns[..., None, :] | np.einsum("bhd,ijd->bhij", diagonals, crossed).astype(bool)
    chosen = np.where(block_sparse[..., None, None], chosen_bs, chosen_vs)
    chosen |= (np.arange(blocks)[None, :] == 0) | np.eye(blocks, dtype=bool)
    pos = np.arange(n) // block
    return _masked_prefill(x, _causal(n) & chosen[:, :, pos[:, None], pos[None, :]])


@reference(MQA)
def attention_mqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Non-causal multi-query attention: K/V [B,M,E|F] without a head rank, read by every query head."""
    return attention({"Q": x["Q"], "K": x["K"][:, None], "V": x["V"][:, None]}, p)


@reference(MQA)
def attention_causal_mqa(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal multi-query attention (`attention_mqa` with the causal mask of `attention_causal`)."""
    return attention_causal({"Q": x["Q"], "K": x["K"][:, None], "V": x["V"][:, None]}, p)


@reference(MHA)
def attention_causal_bottom_right(x: Arrays, p: Params) -> dict[str, np.ndarray]:
    """Causal attention of P queries that are the last P of the M keys' positions (chunked prefill, a decode
    step's queries): query p sees keys m <= p + M - P, FlashAttention's bottom-right alignment since 2.1;
    `attention_causal` aligns top-left (m <= p), the same when P = M."""
    n_q, n_kv = x["Q"].shape[-2], x["K"].shape[-2]
    return {"AV": _softmax_attention(x["Q"], x["K"], x["V"], np.tri(n_q, n_kv, n_kv - n_q, dtype=bool))}
