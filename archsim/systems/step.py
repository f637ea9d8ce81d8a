"""One decoder layer of a workload, for one model step, as an ordered graph of library cascades bound to sizes.

`layer_ops(workload, step, block)` expands a workload's sizes into the ops of one pre-norm decoder layer, in
dependency order (each op names the ops it reads):

    attn_norm -> qkv -> attention -> out_proj -> attn_residual -> ffn_norm -> ffn | moe [shared_experts] -> ffn_residual

Every count an op carries (FLOPs by op type, bytes per tensor, Op/B) is `archsim.cascade.analysis.analyze` of its
library cascade bound (`archsim.cascade.bind.bind`) to the workload and the step: nothing here counts by hand. A
size the workload lacks is a SpecError naming the workload file and `params.X`, never a cascade's small default.

Which cascade, by the workload's sizes:
- projections: for multi-head latent attention (the workload has `kv_lora_rank`), `mla-projection` when it also
  has `q_lora_rank` (queries through their own latent, DeepSeek-V2/V3), else `mla-projection-direct-q` (queries
  straight from the hidden state, DeepSeek-V2-Lite: HF config q_lora_rank null); otherwise `qkv-projection` with
  `kv_heads` key/value heads (MHA, GQA, MQA);
- attention, prefill: `attention-mla-prefill` for MLA; with a `window` (and then `sinks`)
  `attention-sliding-window` (MHA) or its grouped-query form `attention-sliding-window-gqa`; otherwise
  `attention-1pass-causal` (MHA: kv_heads = heads) or its grouped-query form `attention-1pass-causal-gqa`. A
  grouped-query form reads K and V of kv_heads heads (the same counts when kv_heads = heads), so a windowed GQA
  prompt moves the same K/V bytes as a causal one of its length and computes at most its (query, key) pairs. One
  key tile (`tile_kv` = the prompt length: the tiling is a mapping choice, and the MACs and exps do not depend on
  it);
- attention, decode: `attention-mla-decode` for MLA, otherwise `attention-decode-gqa`; with a `window` the query
  reads min(context, window + sinks) keys (the last `window` and the first `sinks`: `decode_keys`), so
  `attention-decode-gqa` is bound to that many keys (the sliding-window cascade has one query per key and is a
  prefill cascade). A device that costs decode attention by context (a bank-PIM's per-context tables) is given
  these keys, not the context;
- FFN: `moe-experts` (router, top-k gates and SwiGLU experts in one cascade) in a MoE layer (bound to the
  experts a step's tokens are expected to reach under uniform random routing, E (1 - (1 - top_k / E)^T) rounded
  to the nearest (`experts_reached`): one decode token reads two of Mixtral's eight experts' weights, not eight,
  and four tokens five, not min(8, 4 x 2); the T x top_k routed pairs, and so the expert FLOPs, stay
  (`moe_sizes`; an EP group's shard holding fewer experts than top_k binds top_k to them, `sharding.shard`, and
  takes its tokens' pairs, `ROUTED_TOP_K`, as more tokens, as `expert_shares.tokens_per_expert` counts them);
  the router's logits are then over those experts too, leaving out its hidden x (experts - reached) MACs per
  token and weights, under 0.1 % of the op; a model's resident weights are every expert's, `resident_tokens`),
  otherwise the
  block's dense FFN (of width `dense_ffn_dim` in a dense layer of a MoE model that gives it, else `ffn_dim`);
  a MoE layer of a model with `shared_experts` (S) adds the op `shared_experts`, the block's dense FFN of width
  S x ffn_dim over every token of the step: the always-active experts of DeepSeek-MoE and DeepSeek-V2/V3
  (DeepSeekMoE's shared expert isolation, Dai et al. 2024 §3.2, from memory) and Qwen1.5/2-MoE, whose S experts'
  gate, up and down projections side by side are one FFN S times as wide, as both models' code builds them. So its
  weights are read once a step, as a dense FFN's; TP cuts it as one (`sharding.shard` cuts ffn_dim); every EP group
  holds it whole (not experts / EP: replicated, as vLLM and SGLang serve it); its output is summed with the routed
  experts' before the layer's one TP all-reduce (vLLM's Qwen2-MoE and DeepSeek-V2 layers), so it adds no
  collective (`system_messages.TP_REDUCED_OPS`); placement rules place it as `ffn` (`system_types.PLACED_AS`); the
  router is the routed experts' alone. Left out: Qwen's sigmoid gate on the shared output (hidden weights and MACs
  a token: 0.006 % of Qwen1.5-MoE-A2.7B's shared FFN) and the add of the shared output (the residual add sums two);
  bound to `ffn_word_bytes` when the workload gives it (an FFN quantised apart from the rest, as Llama 3 405B's
  FP8 serving: every tensor of the op at that width, its output too, so a device runs its GEMMs at that
  precision; the op carries the workload's `word_bytes` as `output_word_bytes`, the width its GEMMs write the
  output at, which a GPU and the TP all-reduce read), else to `word_bytes` as every other op;
- norms and residual adds: the block's norm cascade and `residual-add`.
The workload's sizes do not say whether a model normalises with LayerNorm or RMSNorm, nor whether its dense FFN
is GELU or SwiGLU, so the caller names the block (`BLOCKS`): "gpt" (GPT-3, OPT, BERT) or "llama" (Llama,
Mixtral, DeepSeek).

Layer kinds (`layer_kinds`): a model without `experts` has dense layers only; with `experts`, every `moe_every`-th
layer is MoE (layers moe_every - 1, 2 moe_every - 1, ... counting from 0, as GShard's and GLaM's "every other
layer", Lepikhin et al. 2020 §2, Du et al. 2022 §4) and the others dense; `moe_every` absent is 1, every layer MoE.
`layer_ops` expands one layer of a kind (`kind`, default: the workload's MoE layer if it has experts);
`non_attention_kinds` gives each kind's ops but attention with its count of layers, which the doors that cost
attention their own way weigh the kinds by (`layers_time_s`: every layer's).

Assumptions: the layers of a kind are all the same (a model whose first layers are dense and the rest MoE, as
DeepSeek-V3, is not expressible: moe_every is periodic); prefill has no earlier context (a prompt attends to
itself, causally); a decode step adds one token per request; a sliding-window model's KV cache still holds every
context token (what `archsim.systems.system_model` counts for capacity): the window sets the keys read, not the
keys kept; a MoE layer's tokens are routed uniformly at random, each to top_k distinct experts (the Duplex paper's
"uniform expert routing", pim.md §2.4), which sets the experts a step reads (`experts_reached`).

Library cascades: an op binds its cascade as the file reads when the op is built (`library_cascade`: a process that
edits a cascade file gets the edit, as the library does), or the cascades a caller loaded for the layer
(`layer_cascades`, a `LayerCascades` that a remembered layer is keyed by: equal sets hold the very same Cascade
objects); what is derived from a cascade alone (its pass analysis) is remembered per Cascade object, not per name.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from archsim.cascade.analysis import Analysis, TensorInfo, analyze, einsum_counts, tensor_infos, total_ops
from archsim.cascade.bind import FFN_WORDS, MOE_CASCADE, Binding, bind, binds_ffn_words
from archsim.cascade.ir import Cascade
from archsim.cascade.passes import PassAnalysis, pass_analysis
from archsim.errors import SpecError
from archsim.library import library_cascade
from archsim.memo import kept, per_object
from archsim.point import mla_projection_for
from archsim.workload import BLOCK_CASCADES, SHARED_EXPERTS, Workload, check_size, shared_ffn_dim

PHASES = ("prefill", "decode")
MOE, DENSE = "moe", "dense"
LAYER_KINDS = (MOE, DENSE)  # a decoder layer's FFN: routed experts or the block's dense FFN
STEP_SOURCE = "<step>"  # what errors in the step's own sizes blame

# Tensor roles: which memory a tensor lives in. A cascade input or output not named in ROLES is an activation
# (in or out); an intermediate is the op's own working data.
WEIGHTS, KV_CACHE = "weights", "kv_cache"
ACTIVATIONS_IN, ACTIVATIONS_OUT, INTERMEDIATE = "activations_in", "activations_out", "intermediate"
MLA_DECODE = "attention-mla-decode"  # decode attention of a workload with kv_lora_rank (MLA's latent attention)
MLA_LATENT_KV = {"WDKV": WEIGHTS, "WKR": WEIGHTS, "C": KV_CACHE, "KR": KV_CACHE}  # both MLA projections' KV part
ROLES: dict[str, dict[str, str]] = {
    "qkv-projection": {"WQ": WEIGHTS, "WK": WEIGHTS, "WV": WEIGHTS, "K": KV_CACHE, "V": KV_CACHE},
    "mla-projection": {"WDQ": WEIGHTS, "WUQ": WEIGHTS, "WQR": WEIGHTS, **MLA_LATENT_KV},
    "mla-projection-direct-q": {"WQ": WEIGHTS, "WQR": WEIGHTS, **MLA_LATENT_KV},
    "attention-1pass-causal": {"K": KV_CACHE, "V": KV_CACHE},
    "attention-1pass-causal-gqa": {"K": KV_CACHE, "V": KV_CACHE},
    "attention-sliding-window": {"K": KV_CACHE, "V": KV_CACHE},
    "attention-sliding-window-gqa": {"K": KV_CACHE, "V": KV_CACHE},
    "attention-decode-gqa": {"K": KV_CACHE, "V": KV_CACHE},
    "attention-mla-prefill": {"C": KV_CACHE, "KR": KV_CACHE, "WUK": WEIGHTS, "WUV": WEIGHTS},
    "attention-mla-decode": {"C": KV_CACHE, "KR": KV_CACHE, "WUK": WEIGHTS, "WUV": WEIGHTS},
    "output-projection": {"WO": WEIGHTS},
    "ffn": {"W1": WEIGHTS, "W2": WEIGHTS},
    "ffn-swiglu": {"W1": WEIGHTS, "W3": WEIGHTS, "W2": WEIGHTS},
    MOE_CASCADE: {"WR": WEIGHTS, "W1": WEIGHTS, "W3": WEIGHTS, "W2": WEIGHTS},
    "layernorm": {"G": WEIGHTS, "BETA": WEIGHTS},
    "rmsnorm": {"W": WEIGHTS},
    "residual-add": {},
    # a linear-attention chunk (archsim.systems.seqpar_compute): K, V and the running K^T V state are the operands
    # its products hold still, as a KV cache is for softmax attention
    "lightning-attention-2": {"K": KV_CACHE, "V": KV_CACHE, "KV": KV_CACHE},
}


class UnrunnableOp(SpecError):
    """An op a device cannot run at the sizes it is bound to, though the spec is sound: an infeasible point (eager
    attention's N x N scores of a long prompt beyond the memory its weights leave, `archsim.systems.gpu_device`),
    not a malformed input. The serving simulator refuses the request asking for it and serves the others
    (`archsim.systems.serving`); any other caller stops on it as on every SpecError."""


@dataclass(frozen=True)
class Block:
    """What a decoder layer's sizes leave open: its norm cascade and its dense FFN cascade."""

    norm: str
    ffn: str


BLOCKS = {kind: Block(*cascades) for kind, cascades in BLOCK_CASCADES.items()}  # sources in archsim.workload


@dataclass(frozen=True)
class Step:
    """One model step over `batch` requests. Prefill: `seq_len` prompt tokens per request, no earlier context.
    Decode: one new token per request over a KV cache of `seq_len` tokens (the new one included)."""

    phase: str
    batch: int
    seq_len: int

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise SpecError(STEP_SOURCE, "phase", f"expected one of {', '.join(PHASES)}, got {self.phase!r}")
        for name in ("batch", "seq_len"):
            check_size(name, getattr(self, name), STEP_SOURCE, name)

    @property
    def new_tokens(self) -> int:
        """Tokens each request pushes through the layer's projections and FFN in this step."""
        return self.seq_len if self.phase == "prefill" else 1


@dataclass(frozen=True, eq=False)
class Op:
    """One op of a layer: a library cascade bound to the step's sizes, and its analysis. Ops compare (and hash) by
    identity, so models can remember what they derived from one."""

    name: str
    cascade: str
    binding: Binding
    deps: tuple[str, ...]  # the ops whose outputs this one reads, earlier in the layer
    phase: str = "decode"  # the step's phase: in prefill an attention op's K and V are this step's own
    # an earlier op of the same layer binding the same cascade to the same sizes (a layer's two norms, its two
    # residual adds): this one shares its binding, tensors and analysis
    twin: Op | None = field(default=None, repr=False)
    # the layer's activation word size where the op is bound at another (`_op`: an FFN bound to the workload's
    # ffn_word_bytes); None: the binding's `word_bytes`
    activation_word_bytes: int | None = None

    @property
    def output_word_bytes(self) -> int:
        """Bytes per element of the op's output (its activations_out) as the layer's next op reads it: the layer's
        activation word size, which an FFN quantised apart (fp8 GEMMs, `ffn_word_bytes`) writes too, as Llama 3's
        FP8 serving writes bf16 outputs; otherwise the binding's."""
        words = self.activation_word_bytes
        return self.binding.word_bytes if words is None else words

    @kept
    def analysis(self) -> Analysis:
        """Points and operation counts (`analyze`), worked out when first asked: an op read for its tensors' bytes
        alone (a memory model) never counts its masks."""
        if self.twin is not None:
            return self.twin.analysis
        return analyze(self.binding, passes=cascade_passes(self.binding.cascade), tensors=self.tensors,
                       counts=self.counts)

    @kept
    def counts(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """Points and ops per Einsum (`einsum_counts`, the analysis's), without the tensors: what the op's operation
        counts need alone (a decode attention op is read for its MACs and softmax ops)."""
        if self.twin is not None:
            return self.twin.counts
        return einsum_counts(self.binding)

    @kept
    def tensors(self) -> tuple[TensorInfo, ...]:
        """The op's tensors: kind, ranks, shape and bytes (`tensor_infos`)."""
        if self.twin is not None:
            return self.twin.tensors
        return tensor_infos(self.binding)

    @kept
    def ops(self) -> dict[str, int]:
        """Operation counts by op type (mac, add, exp, ...) over the whole op (`Analysis.total_ops` of `counts`)."""
        return total_ops(self.counts[1])

    @kept
    def flops(self) -> int:
        """Floating-point operations: a MAC is two, every other op type one (`flops_of`)."""
        return flops_of(self.ops)

    @kept
    def tensor_roles(self) -> dict[str, str]:
        return tensor_roles_of(self.cascade, self.binding.cascade)

    @kept
    def tensor_bytes(self) -> dict[str, int]:
        return {t.name: t.bytes for t in self.tensors}

    @kept
    def bytes_by_role(self) -> dict[str, int]:
        """Bytes of the op's tensors by role: weights, activations in, activations out, KV cache (read or
        written), and intermediates (which a device may keep on chip)."""
        totals = dict.fromkeys((WEIGHTS, ACTIVATIONS_IN, ACTIVATIONS_OUT, KV_CACHE, INTERMEDIATE), 0)
        roles = self.tensor_roles
        for name, size in self.tensor_bytes.items():
            totals[roles[name]] += size
        return totals

    @kept
    def bytes(self) -> int:
        """Bytes the op must move at least: every tensor but its intermediates, each once (an exact count: `op_per_byte`
        divides by it, and `moved_bytes` is read off it)."""
        return sum(size for role, size in self.bytes_by_role.items() if role != INTERMEDIATE)

    def moved_bytes(self, weight_fraction: float = 1.0) -> float:
        """Bytes a device keeping the intermediates on chip moves when `weight_fraction` of the weights stream in
        (the rest still on chip: `DeviceModel.cost`'s `streamed_fraction`): `bytes` less the weights not streamed,
        float(`bytes`) at 1.0."""
        return self.bytes - (1.0 - weight_fraction) * self.bytes_by_role[WEIGHTS]

    @kept
    def op_per_byte(self) -> float:
        """Arithmetic intensity: FLOPs per byte of `bytes`."""
        return self.flops / self.bytes


def layer_kinds(workload: Workload) -> tuple[str, ...]:
    """"moe" or "dense" for each of the workload's `layers`, in order (module docstring)."""
    params = workload.params
    if "layers" not in params:
        raise SpecError(workload.path, "params.layers", "missing: the number of decoder layers")
    every = int(params.get("moe_every", 1)) if "experts" in params else 0
    return tuple(MOE if every and (i + 1) % every == 0 else DENSE for i in range(int(params["layers"])))


def layer_ops(workload: Workload, step: Step, block: str, kind: str | None = None,
              cascades: LayerCascades | None = None) -> tuple[Op, ...]:
    """The ops of one decoder layer of `workload` in `step`, in dependency order (module docstring); `kind` is
    "moe" or "dense" (`LAYER_KINDS`), by default "moe" for a workload with experts. `cascades`: the library cascades
    to bind (`layer_cascades`, holding the layer's), by default each as its file reads now (`library_cascade`). A
    `block` other than the workload's own (when its file names one) is refused."""
    if workload.block is not None and block != workload.block:
        raise SpecError(workload.path, "block", f"{workload.name} is a {workload.block} block; got {block!r}")
    alike: dict[tuple, Op] = {}
    return tuple(_op(workload, *entry, step.phase, alike, cascades) for entry in _plan(workload, step, block, kind))


class LayerCascades:
    """Library cascades by name, loaded together (`layer_cascades`): a key that what was bound to them is remembered
    under. Two sets are equal when they hold the very same Cascade objects under the same names (the library hands
    out one object per file content, so sets loaded while the files stay unchanged are equal, and an edited file
    gives an unequal set); the set keeps its cascades alive, so no identity it is keyed by is reused while it lives."""

    __slots__ = ("_by_name", "_hash")

    def __init__(self, by_name: Mapping[str, Cascade]) -> None:
        self._by_name = dict(by_name)
        # in any order, as __eq__ compares
        self._hash = hash(frozenset((name, id(cascade)) for name, cascade in self._by_name.items()))

    def __getitem__(self, name: str) -> Cascade:
        return self._by_name[name]

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LayerCascades) and self._by_name.keys() == other._by_name.keys()
                and all(cascade is other._by_name[name] for name, cascade in self._by_name.items()))


def library_cascades(names: Sequence[str]) -> LayerCascades:
    """The library cascades `names`, each as its file reads now (`library_cascade`)."""
    return LayerCascades({name: library_cascade(name) for name in dict.fromkeys(names)})


def layer_cascades(workload: Workload, phase: str, block: str,
                   kinds: Sequence[str | None] = (None,)) -> LayerCascades:
    """The library cascades of one decoder layer of `workload` in `phase` (`_plan`'s), for each of `kinds` (a layer
    kind as `layer_ops` takes it), each as its file reads now: what a model binds and keys its remembered ops by
    (`archsim.systems.system_model`). Which cascades a layer binds depends on the phase and the workload's sizes,
    not on the step's batch or length."""
    step = Step(phase, 1, 1)
    return library_cascades([entry[1] for kind in kinds for entry in _plan(workload, step, block, kind)])


def block_of(workload: Workload, why: str) -> str:
    """The workload's decoder block (`BLOCKS`), or a SpecError naming its file's `block` and `why` it is needed."""
    if workload.block is None:
        raise SpecError(workload.path, "block", f"missing: {why}, so the workload names its block (gpt: LayerNorm + "
                                                "GELU FFN; llama: RMSNorm + SwiGLU)")
    return workload.block


def non_attention_ops(workload: Workload, step: Step, kind: str | None = None) -> list[Op]:
    """The ops of one decoder layer of `workload` (its own block, of `kind` as `layer_ops`) in `step` but attention:
    what a model that costs attention its own way (sequence parallelism, sparse prefill, KV selection) runs around
    it. A caller timing every layer, or the mean layer, takes `non_attention_kinds`."""
    block = block_of(workload, "the layer's other ops come from its block's cascades")
    return [op for op in layer_ops(workload, step, block, kind) if op.name != "attention"]


def non_attention_kinds(workload: Workload, step: Step) -> tuple[tuple[str, list[Op], int], ...]:
    """(kind, `non_attention_ops` of a layer of that kind, the workload's layers of that kind) for each kind of its
    layers (`layer_kinds`), in the order they first appear: every layer's other ops are each kind's times its count,
    and a model mixing dense and MoE layers (`moe_every` > 1) is not timed as all MoE. The models take the ops and
    the count (`layers_time_s`, `seqpar_compute`'s mean layer); the kind is there for a test to tell the layers
    apart (tests/test_mixed_layers_s46.py)."""
    kinds = layer_kinds(workload)
    return tuple((kind, non_attention_ops(workload, step, kind), kinds.count(kind)) for kind in dict.fromkeys(kinds))


def layers_time_s(workload: Workload, step: Step, time_s: Callable[[list[Op]], float]) -> float:
    """Every decoder layer's ops but attention in `step`, a layer's ops timed by `time_s`: each kind of layer's time
    times its count of layers (`non_attention_kinds`), so a model mixing dense and MoE layers is not timed as all
    MoE."""
    return sum(count * time_s(ops) for _, ops, count in non_attention_kinds(workload, step))


def layer_op(workload: Workload, step: Step, block: str, name: str, kind: str | None = None,
             cascades: LayerCascades | None = None) -> Op:
    """The op called `name` (one of the layer's: attn_norm, qkv, attention, ...) of `layer_ops`, alone (`cascades`
    as there)."""
    for entry in _plan(workload, step, block, kind):
        if entry[0] == name:
            return _op(workload, *entry, step.phase, None, cascades)
    raise SpecError(STEP_SOURCE, "name", f"no op {name!r} in this layer")


def op_table(workload: Workload, step: Step, block: str, kind: str | None = None) -> str:
    """The layer's ops as a text table, one row each: cascade, FLOPs, bytes and Op/B (`Op.op_per_byte`)."""
    ops = layer_ops(workload, step, block, kind)
    width = max(len(op.name) for op in ops)
    rows = [f"{workload.name}, {step.phase}, batch {step.batch}, seq_len {step.seq_len}: "
            f"{kind or (MOE if 'experts' in workload.params else DENSE)} layer",
            f"{'op':<{width}}  {'cascade':<28} {'FLOPs':>12} {'bytes':>12} {'Op/B':>9}"]
    rows += [f"{op.name:<{width}}  {op.cascade:<28} {op.flops:>12.4g} {op.bytes:>12.4g} {op.op_per_byte:>9.3f}"
             for op in ops]
    return "\n".join(rows)


def _plan(workload: Workload, step: Step, block: str, layer_kind: str | None) -> tuple[tuple, ...]:
    """(name, cascade, sizes, deps) of each op of the layer, in order."""
    if block not in BLOCKS:
        raise SpecError(STEP_SOURCE, "block", f"expected one of {', '.join(BLOCKS)}, got {block!r}")
    kind = BLOCKS[block]
    params = workload.params
    moe = "experts" in params
    if layer_kind not in (None, *LAYER_KINDS):
        raise SpecError(STEP_SOURCE, "kind", f"expected one of {', '.join(LAYER_KINDS)}, got {layer_kind!r}")
    if layer_kind == MOE and not moe:
        raise SpecError(workload.path, "params.experts", "missing: a MoE layer routes tokens to experts")
    mla, window = "kv_lora_rank" in params, "window" in params
    if mla and window:
        raise SpecError(workload.path, "params.window", "the library has no sliding-window latent (MLA) attention; "
                                                        "give kv_lora_rank or window, not both")
    tokens = {"batch": step.batch, "seq_len": step.new_tokens, "tokens": step.batch * step.new_tokens}
    if step.phase == "prefill":
        multi_head = params.get("kv_heads") == params.get("heads")
        causal = "attention-sliding-window" if window else "attention-1pass-causal"
        attention = "attention-mla-prefill" if mla else causal if multi_head else f"{causal}-gqa"
        attention_sizes = {"batch": step.batch, "seq_len": step.seq_len, "tile_kv": step.seq_len}
    else:
        attention = MLA_DECODE if mla else "attention-decode-gqa"
        attention_sizes = {"batch": step.batch, "seq_len": decode_keys(workload, step.seq_len)}
    if moe and layer_kind != DENSE:  # the FFN binds a workload's ffn_word_bytes (`bind.binds_ffn_words`)
        ffns = [("moe", MOE_CASCADE, {**tokens, **_routed_step(workload, tokens["tokens"])}, ("ffn_norm",))]
        if params.get(SHARED_EXPERTS, 0):
            ffns.append((SHARED_EXPERTS, kind.ffn, {**tokens, "ffn_dim": shared_ffn_dim(params)}, ("ffn_norm",)))
    else:
        width = {"ffn_dim": params["dense_ffn_dim"]} if moe and "dense_ffn_dim" in params else {}
        ffns = [("ffn", kind.ffn, {**tokens, **width}, ("ffn_norm",))]
    return (
        ("attn_norm", kind.norm, tokens, ()),
        ("qkv", mla_projection_for(params) if mla else "qkv-projection", tokens, ("attn_norm",)),
        ("attention", attention, attention_sizes, ("qkv",)),
        ("out_proj", "output-projection", tokens, ("attention",)),
        ("attn_residual", "residual-add", tokens, ("out_proj",)),
        ("ffn_norm", kind.norm, tokens, ("attn_residual",)),
        *ffns,
        ("ffn_residual", "residual-add", tokens, (*(ffn[0] for ffn in ffns), "attn_residual")),
    )


def lm_head_op(workload: Workload, tokens: int, tp: int = 1) -> Op:
    """The LM head of `tokens` tokens on one of `tp` ranks: the `output-projection` cascade (one head of head_dim
    = hidden) projecting `hidden` onto ceil(vocab / tp) logits, vLLM's vocab-parallel `ParallelLMHead` (vLLM pads
    the vocab to a multiple of 64 first, left out here). Outside the decoder layers: `layer_ops` has no vocab op.
    The input embedding table is the same vocab x hidden words (`VocabParallelEmbedding`, cut the same way), so
    its bytes are this op's weights; the two are counted apart unless the workload ties them (`params.vocab_tables:
    1`, Llama-3.2-1B and OPT; `sharding.vocab_tables`). A workload without `vocab` is a SpecError naming it."""
    if "vocab" not in workload.params:
        raise SpecError(workload.path, "params.vocab", "missing: the embedding table and the LM head are vocab x "
                                                       "hidden words")
    vocab_per_rank = math.ceil(int(workload.params["vocab"]) / tp)
    sizes = {"batch": tokens, "seq_len": 1, "heads": 1, "head_dim": int(workload.params["hidden"]),
             "hidden": vocab_per_rank}
    return _op(workload, "lm_head", "output-projection", sizes, ("ffn_residual",), "decode")


# In an EP group's shard holding fewer experts than the model's top_k (`sharding.shard`, which binds top_k to its
# experts): the model's top_k, the (token, expert) pairs each of the group's tokens brings its experts
ROUTED_TOP_K = "routed_top_k"


def resident_tokens(workload: Workload) -> int:
    """Tokens of the smallest step that reads every weight of a layer: one, or for a MoE workload the fewest whose
    expected distinct experts (`experts_reached`) round to all of them (Mixtral, top 2 of 8: 10 tokens, 8 (1 -
    0.75^10) = 7.55 experts; ceil(experts / top_k) = 4 would reach 5.47); a layer's resident weights are that
    step's weight bytes. Found by bisection, as `experts_reached` never falls as the tokens grow: 2^24 experts
    (the default limit on sizes) with top_k 1 need 2.9e8 tokens, found in 59 calls, where counting the tokens up
    one by one would take minutes."""
    params = workload.params
    if "experts" not in params:
        return 1
    experts, top_k = int(params["experts"]), int(_experts_param(workload, "top_k"))

    def reached(tokens: int) -> int:
        return experts_reached(tokens, top_k, experts)

    enough = 1
    while reached(enough) < experts:  # the first power of two that reaches them all
        enough *= 2
    return bisect.bisect_left(range(enough + 1), experts, key=reached)


def _experts_param(workload: Workload, name: str) -> float:
    if name not in workload.params:
        raise SpecError(workload.path, f"params.{name}", "missing: a MoE layer routes each token to top_k experts")
    return workload.params[name]


def experts_reached(tokens: int, top_k: int, experts: int) -> int:
    """Distinct experts that `tokens` tokens, each routed to `top_k` distinct experts, reach among `experts`,
    under uniform random routing (the Duplex paper's evaluation, pim.md §2.4: "uniform expert routing"): an
    expert is missed by one token with probability 1 - k / E, so E (1 - (1 - k / E)^T) are reached on average
    (Mixtral, 4 tokens: 5.47 of 8, where min(E, T k) = 8 assumed no two tokens share an expert). Rounded to the
    nearest whole expert, halves up: a rank is a whole number, and the expert weights a step reads (and its
    router's columns) are linear in it, so the nearest is within half an expert of the expected cost either way,
    where rounding up would add up to one expert to every step (`rounded_experts`). Every expert when top_k is at
    least `experts` (an EP group holding fewer experts than top_k); none without tokens."""
    if tokens <= 0:
        return 0
    if top_k >= experts:
        return experts
    return rounded_experts(experts * (1 - (1 - top_k / experts) ** tokens), tokens, top_k, experts)


def rounded_experts(expected: float, tokens: int, top_k: int, experts: int) -> int:
    """`expected` distinct experts, of `experts`, reached by `tokens` tokens routed to `top_k` distinct experts
    each, as a whole count: the nearest, halves up, within [min(top_k, E), min(E, T k)] (one token reaches top_k;
    T tokens at most T k); none without tokens. One rule for uniform routing (`experts_reached`) and Zipf shares
    (`expert_shares.tokens_per_expert`)."""
    if tokens <= 0:
        return 0
    return min(experts, tokens * top_k, max(min(top_k, experts), math.floor(expected + 0.5)))


def moe_sizes(workload: Workload, experts: int, pairs: int) -> dict[str, int]:
    """`moe-experts` sizes for `pairs` routed (token, expert) pairs taken by `experts` of the workload's experts,
    each of them read: top_k bound to min(top_k, experts) (a token picks distinct experts, so fewer experts than
    top_k, +PE's unit holding one of Mixtral's or an EP group's shard, take each token's pairs with all of them) and
    ceil(pairs / that) tokens, the same pairs and so the same expert FLOPs. One rule for a layer's MoE op
    (`layer_ops`) and for +PE's grouped ops (`expert_shares.experts_op`)."""
    top_k = max(1, min(int(_experts_param(workload, "top_k")), experts))
    return {"experts": experts, "top_k": top_k, "tokens": math.ceil(pairs / top_k)}


def moe_op(workload: Workload, experts: int, pairs: int, cascades: LayerCascades | None = None) -> Op:
    """The layer's MoE op (`layer_op`'s "moe") of a decode step, bound by `moe_sizes`: `experts` experts, all read,
    over `pairs` routed pairs (`cascades` as `layer_ops`')."""
    return _op(workload, "moe", MOE_CASCADE, moe_sizes(workload, experts, pairs), ("ffn_norm",), "decode", None,
               cascades)


def _routed_step(workload: Workload, tokens: int) -> dict[str, int]:
    """A step's MoE sizes: its tokens x top_k pairs (the model's top_k, `ROUTED_TOP_K` in an EP group's shard
    holding fewer experts) over the experts (of the workload, or of its EP group's shard) they are expected to reach
    (`experts_reached`), so the routed pairs and the expert FLOPs stay and only the weights of those experts are
    read."""
    top_k, experts = int(_experts_param(workload, "top_k")), int(workload.params["experts"])
    pairs = tokens * int(workload.params.get(ROUTED_TOP_K, top_k))
    return moe_sizes(workload, experts_reached(tokens, top_k, experts), pairs)


def decode_keys(workload: Workload, context: int) -> int:
    """Keys one decode query over a KV cache of `context` tokens reads: the whole context, or with a sliding
    window min(context, window + sinks) (the last `window` keys and the first `sinks`; they overlap only when the
    context is shorter than window + sinks, and then the query reads every key)."""
    limit = decode_keys_limit(workload)
    return context if limit is None else min(context, limit)


def decode_keys_limit(workload: Workload) -> int | None:
    """The most keys one decode query of `workload` reads: window + sinks for a sliding-window model (a SpecError
    naming `params.sinks` when it has a window and no sinks), None (every key of the context) otherwise."""
    if "window" not in workload.params:
        return None
    if "sinks" not in workload.params:
        raise SpecError(workload.path, "params.sinks", "missing: a sliding-window decode reads the last window "
                                                       "keys and the first sinks keys; add sinks (0 for none)")
    return int(workload.params["window"] + workload.params["sinks"])


def _op(workload: Workload, name: str, cascade_name: str, sizes: Mapping[str, int], deps: tuple[str, ...],
        phase: str, alike: dict[tuple, Op] | None = None, cascades: LayerCascades | None = None) -> Op:
    """The op `name` of `cascade_name` bound to `sizes`; `alike`: (cascade, sizes) -> the layer's op already bound
    so, whose binding (the same values: binding is a function of the workload and the sizes) this one shares with
    what is derived from it (`Op.twin`), else where this op is recorded. The cascade is `cascades`' (which must
    hold it), by default the library's as its file reads now (`library_cascade`)."""
    cascade = library_cascade(cascade_name) if cascades is None else cascades[cascade_name]
    given = {k: v for k, v in sizes.items() if k in cascade.params}
    key = (cascade_name, tuple(given.items()))
    twin = None if alike is None else alike.get(key)
    if twin is not None:
        return Op(name, cascade_name, twin.binding, deps, phase, twin, twin.activation_word_bytes)
    op = Op(name, cascade_name, bind(cascade, workload, given, STEP_SOURCE, set_option=False), deps, phase,
            activation_word_bytes=_activation_words(workload, cascade))
    if alike is not None:
        alike[key] = op
    return op


def _activation_words(workload: Workload, cascade: Cascade) -> int | None:
    """The workload's `word_bytes` where `cascade` is bound at its `ffn_word_bytes` instead (a layer's FFN,
    `bind.binds_ffn_words`), the width its output is written at (`Op.output_word_bytes`); None otherwise."""
    words = workload.params.get("word_bytes")
    if words is None or FFN_WORDS not in workload.params or not binds_ffn_words(cascade):
        return None
    return int(words)


# What `DecodeOps.total` may sum: a whole number per decode attention op
DECODE_SUMS: dict[str, Callable[[Op], float]] = {
    "keys": lambda op: op.binding.params["seq_len"],
    "flops": lambda op: op.flops,
    "macs": lambda op: op.ops.get("mac", 0),
    "moved_bytes": lambda op: op.moved_bytes(),
}


def flops_of(counts: Mapping[str, int]) -> int:
    """Floating-point operations of op counts by type (mac, add, exp, ...): a MAC is two, every other op one."""
    return sum(n * (2 if kind == "mac" else 1) for kind, n in counts.items())


class DecodeOps(tuple):
    """One iteration's decode attention ops, one per request in order and all of one cascade, with `contexts`, each
    op's context (its `seq_len`), in the same order. `values(name)` is `DECODE_SUMS[name]` of each op, in order, a
    whole number, which `SystemModel.decode_ops` reads off per-context tables instead of visiting every op;
    `total(name)` adds them: equal to adding them one by one (module `system_model`)."""

    contexts: Sequence[int]

    def __new__(cls, ops: Sequence[Op], values: Callable[[str], list[float]], contexts: Sequence[int]) -> DecodeOps:
        made = super().__new__(cls, ops)
        made._values, made.contexts = values, contexts
        return made

    def values(self, name: str) -> list[float]:
        return self._values(name)

    def total(self, name: str) -> float:
        """`values(name)` added: whole numbers, so below 2**53 their sum is exact in any order (and a float); larger
        sums are added op by op."""
        total = sum(self._values(name))
        return float(total) if total < 2**53 else sum([DECODE_SUMS[name](op) for op in self])


def decode_values(ops: Sequence[Op], name: str) -> list[float]:
    """`DECODE_SUMS[name]` of each decode op, in order: a `DecodeOps`' off its per-context tables (one look-up a
    request), another sequence's op by op."""
    return ops.values(name) if isinstance(ops, DecodeOps) else [DECODE_SUMS[name](o) for o in ops]


def decode_total(ops: Sequence[Op], name: str) -> float:
    """`DECODE_SUMS[name]` of `ops` added in order: a `DecodeOps`' off its per-context tables (`DecodeOps.total`),
    another sequence's op by op."""
    return ops.total(name) if isinstance(ops, DecodeOps) else sum(DECODE_SUMS[name](o) for o in ops)


def tensor_roles_of(name: str, cascade: Cascade) -> dict[str, str]:
    """Each tensor's role in library cascade `name` (`cascade`, loaded): `ROLES`, else an input is an activation in,
    an output an activation out, anything else an intermediate."""
    roles = ROLES[name]
    return {tensor: roles.get(tensor, {"input": ACTIVATIONS_IN, "output": ACTIVATIONS_OUT}.get(decl.kind, INTERMEDIATE))
            for tensor, decl in cascade.tensors.items()}


@per_object(maxsize=256)
def cascade_passes(cascade: Cascade) -> PassAnalysis:
    """The pass analysis of a loaded cascade, remembered per Cascade object (an edited file's is another object)."""
    return pass_analysis(cascade)
