"""Workload specs: named model shapes that bind cascade parameters (batch, seq_len, heads, ...).

    name: bert-base
    description: one line
    source: where the numbers come from
    params: {batch: 64, seq_len: 1024, hidden: 768, heads: 12, kv_heads: 12, head_dim: 64, ...}
    block: gpt                  # optional: the decoder block's kind, one of BLOCK_KINDS
    attention: softmax          # optional: softmax (the default), linear or hybrid (ATTENTION_KINDS)

`PARAMS` is the vocabulary: every name a workload may give, each an integer count. They are the model's sizes:
when a workload is bound to a cascade (`archsim.cascade.bind.bind`), each of them the cascade binds must come
from the workload or the caller's sets, never from the cascade's small defaults. A cascade's other params are
its own tiling or algorithm choices (tile_kv, block, splits) and keep their defaults.

MoE: `experts` and `top_k` make every layer's FFN routed experts, unless `moe_every` (m) says only every m-th layer
is (GLaM: 2, every other layer); the other layers are dense, of width `dense_ffn_dim` when the model's dense FFN
differs from its experts' (`ffn_dim`). `shared_experts` (S) gives a MoE layer S always-active experts beside its
routed ones (DeepSeek-MoE, DeepSeek-V2/V3, Qwen1.5/2-MoE, Llama 4): every token runs through them, a dense gated FFN
of S x ffn_dim (`archsim.systems.step`); a count of `ffn_dim`-wide experts rather than a width of its own, as
DeepSeek's configs give it (n_shared_experts, one MLP of n_shared_experts x moe_intermediate_size) and every
published shared width is (Qwen1.5-MoE-A2.7B's 5632 = 4 x 1408, Qwen2-57B-A14B's 20480 = 8 x 2560, HF configs from
memory), so TP's cut of ffn_dim cuts it too; absent or 0, none. MLA: `kv_lora_rank` makes the attention DeepSeek's
latent attention, with `rope_dim` and `q_lora_rank` beside it. The loader refuses top_k > experts, a size read only
beside another without it (`NEEDS`: the MoE-only sizes without experts, MLA's without kv_lora_rank; every cascade
reading one binds the other too), shared_experts without ffn_dim, and kv_heads that do not divide heads (each KV
head serves heads / kv_heads query heads). `sinks` without `window` is not refused here: DuoAttention's and
TokenSelect's cascades bind sinks alone (their streaming heads' first keys); a system, which models only a sliding
window's sinks, refuses it (`archsim.systems.models`).

`block` says what a model's sizes leave open about its decoder layer: "gpt" is LayerNorm and a GELU FFN (GPT-3;
OPT, whose ReLU it counts as GELU), "llama" RMSNorm and a SwiGLU FFN (Llama, Mixtral, DeepSeek);
`archsim.systems.step` expands a layer of each. A workload that does not say (an encoder, or a model of neither
kind) has `block` None.

`attention` says which attention the model's layers compute: "softmax" (every workload unless it says otherwise),
"linear" (LASP's Linear-Llama3: basic linear attention, no softmax) or "hybrid" (LASP-2H's hybrid models: every
`softmax_every`-th layer softmax attention, the others linear; `attention_layers`). A hybrid workload gives
`softmax_every` (k), and only a hybrid one does: a whole number from 2 (at least one linear layer in every k) to
`layers` (at least one softmax layer); it need not divide `layers`: layers k - 1, 2k - 1, ... counting from 0 are
softmax, floor(layers / k) of them (moe_every's placement; 16 layers at k = 4: layers 3, 7, 11, 15, LASP-2's "1/4
hybrid"). A model of linear or hybrid attention is timed only by what models it (`archsim parallel`'s LASP schemes
and Ring as LASP-2's baseline for linear, lasp2h for hybrid); everything that times softmax attention refuses both
(`refuse_linear_attention`), as MLA and sliding-window workloads are refused where their attention is not
modelled. `attention_view` is a hybrid model's layers of one kind as a model of its own (the same sizes).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from archsim.errors import LimitError, SpecError, check_keys, kind_of, text_number_hint
from archsim.frozen import read_only
from archsim.limits import env_limit

WORKLOAD_KEYS = {"name", "description", "source", "params", "block", "attention"}
ATTENTION_KINDS = ("softmax", "linear", "hybrid")
BLOCK_CASCADES = {  # a decoder block's kind -> (its norm cascade, its dense FFN cascade); archsim.systems.step.BLOCKS
    # GPT-2/3 (Radford et al. 2019 Sec. 2.3; Brown et al. 2020 Sec. 2.1), OPT, BERT: LayerNorm, GELU FFN
    "gpt": ("layernorm", "ffn"),
    # LLaMA (Touvron et al. 2023 Sec. 2.2), Mixtral, DeepSeek-V2/V3: RMSNorm, SwiGLU FFN
    "llama": ("rmsnorm", "ffn-swiglu"),
}
BLOCK_KINDS = tuple(BLOCK_CASCADES)


@dataclass(frozen=True)
class Param:
    """One name of the vocabulary (`PARAMS`, `COUNT_PARAMS`): what it counts, and the least value `check_size`
    accepts (1; 0 for `sinks` and `shared_experts`) and the most (None: only the limit on sizes; 2 for
    `vocab_tables`)."""

    meaning: str
    minimum: int = 1
    maximum: int | None = None


PARAMS = {
    "batch": Param("sequences processed together"),
    "seq_len": Param("tokens per sequence (queries and keys; the KV-cache length in decode)"),
    "tokens": Param("tokens routed through a layer at once (MoE experts)"),
    "hidden": Param("model width d_model"),
    "heads": Param("query heads"),
    "kv_heads": Param("key/value heads (GQA groups; = heads for MHA)"),
    "head_dim": Param("width of one head"),
    "ffn_dim": Param("FFN intermediate width (per expert for MoE)"),
    "dense_ffn_dim": Param("dense FFN intermediate width of a MoE model's dense layers (default ffn_dim)"),
    "layers": Param("transformer layers"),
    "vocab": Param("vocabulary size"),
    "vocab_tables": Param("vocab x hidden weight tables: 2, the input embedding and the LM head apart (the default, as "
                          "LLaMA 1-3 from 7B); 1 where the LM head is the embedding (tied: Llama-3.2-1B, OPT)",
                          maximum=2),
    "experts": Param("routed experts"),
    "top_k": Param("experts per token"),
    "moe_every": Param("every moe_every-th layer is MoE, the others dense (1 = all; default 1 with experts)"),
    "shared_experts": Param("always-active experts of a MoE layer, each ffn_dim wide, that every token runs through "
                            "beside its top_k routed ones (default 0)", minimum=0),
    "softmax_every": Param("every softmax_every-th layer is softmax attention, the others linear (attention: hybrid "
                           "only, and required there)", minimum=2),
    "kv_lora_rank": Param("MLA latent KV width"),
    "q_lora_rank": Param("MLA latent query width"),
    "rope_dim": Param("MLA decoupled RoPE width"),
    "window": Param("sliding-window attention: keys each query sees"),
    "sinks": Param("attention-sink keys every query sees (StreamingLLM)", minimum=0),
    "word_bytes": Param("bytes per element"),
    "ffn_word_bytes": Param("bytes per element of the FFN's (or the experts') weights and GEMM operands, where "
                            "they are quantised apart from the rest (FP8 FFN: 1; default word_bytes)"),
}
# a size read only beside another (model kind): every cascade binding it binds the other too (moe-experts;
# mla-projection, attention-mla-*), and a workload without the other is not a model of that kind
NEEDS = {"top_k": "experts", "moe_every": "experts", "dense_ffn_dim": "experts", "shared_experts": "experts",
         "q_lora_rank": "kv_lora_rank", "rope_dim": "kv_lora_rank"}
SHARED_EXPERTS = "shared_experts"  # the parameter, and the op of a MoE layer that runs them (`archsim.systems.step`)
MODEL_KINDS = {"experts": "a MoE model", "kv_lora_rank": "an MLA model"}
# Cascade parameters that are counts, not model sizes (a workload need not give them): each an integer of at least 1
COUNT_PARAMS = {"block": Param("tokens per block (a block-sparse mask, a linear-attention or pooling chunk)")}
# Largest size accepted: beyond any model or context in use (the longest, 10M tokens, is below it), and it bounds
# the analyses whose cost grows with a size (the mask counter walks a causal diagonal).
MAX_SIZE = 2**24
# The most ARCHSIM_MAX_SIZE may raise it to: sizes pass through float64 (a workload's parameters, --set values), which
# holds every whole number up to 2**53 and rounds beyond (an odd 2**53 + 1 tokens read as 2**53, a multiple of 256)
MAX_SIZE_LIMIT = 2**53


@dataclass(frozen=True)
class Workload:
    """A named model's sizes: `params` maps `PARAMS` names to whole numbers, checked by `workload_from_dict`;
    `block` and `attention` as in the module docstring. `params` is read-only (`archsim.frozen.ReadOnlyDict`).
    However built, each field is checked as a file's is (`check_workload`); `workload_from_dict` checks a file's
    vocabulary and how its sizes fit together too."""

    name: str
    description: str
    source: str  # the citation: where the numbers come from
    params: Mapping[str, float]
    path: str = "<python>"  # the file it was loaded from, which errors blame
    block: str | None = None  # one of BLOCK_KINDS; None when the file does not say
    attention: str = "softmax"  # one of ATTENTION_KINDS

    def __post_init__(self) -> None:
        _check_params_mapping(self.params, self.path)
        object.__setattr__(self, "params", read_only(self.params))  # frozen: set once, here
        check_workload(self)


def check_workload(workload: Workload) -> None:
    """What every Workload must be, however built, each a SpecError naming the field as the loader's: a non-empty
    name, params a mapping of sizes each of which `check_size` takes (whole, at least its minimum, within the limit
    on sizes), and a `block` and `attention` of their kinds. How a file's sizes fit together (its vocabulary, kv_heads
    dividing heads, `NEEDS`, the MoE and hybrid checks) is checked only in a file (`workload_from_dict`): the
    systems derive workloads that are no model file (a shard adds `archsim.systems.step.ROUTED_TOP_K`, keeps one KV
    head per device where TP exceeds them and is keyed without its attention: `archsim.systems.sharding`)."""
    source = workload.path
    _check_name(workload.name, source)
    sizes = tuple((key, type(value), value) for key, value in workload.params.items())
    try:
        _check_sizes(sizes, source, max_size())
    except TypeError:  # a value that cannot be a key (a list): checked afresh, to be refused
        _check_sizes.__wrapped__(sizes, source, max_size())
    _check_block(workload.block, source)
    _check_attention(workload.attention, source)


@functools.lru_cache(maxsize=4096)
def _check_sizes(sizes: tuple[tuple[str, type, Any], ...], source: str, limit: int) -> None:
    """`check_size` of each (name, type, value) of a workload's params; remembered, as the systems derive many
    workloads of the same sizes (a shard per op call), the value's type in the key so `True` is not taken for 1."""
    for key, _, value in sizes:
        check_size(key, value, source, f"params.{key}", limit)


def workload_from_dict(data: Any, source: str = "<python>") -> Workload:
    """Validate `data` (the YAML form) into a Workload blamed on `source`. Refused, each a SpecError naming the
    field: an unknown key or parameter, a missing name or params, a `block` or `attention` not of its kinds, a size
    `check_size` refuses, and the head, `NEEDS` and MoE checks of the module docstring."""
    if not isinstance(data, dict):
        raise SpecError(source, "", "expected a mapping with name, description, source, params")
    check_keys(data, sorted(WORKLOAD_KEYS), source)
    if data.get("name") is None:
        raise SpecError(source, "name", "missing (expected the workload's name)")
    _check_name(data["name"], source)
    params = data.get("params")
    _check_params_mapping(params, source)
    for key in params:
        if key not in PARAMS:
            raise SpecError(source, f"params.{key}", f"unknown parameter (known: {', '.join(PARAMS)})")
    block = data.get("block")
    if "block" in data:
        _check_block(block, source, given=True)
    attention = data.get("attention", "softmax")
    _check_attention(attention, source)
    sizes = {key: check_size(key, value, source, f"params.{key}") for key, value in params.items()}
    _check_heads(sizes, source)
    _check_needs(sizes, source)
    _check_moe(sizes, source)
    _check_hybrid(sizes, attention, source)
    return Workload(data["name"], str(data.get("description", "")), str(data.get("source", "")), sizes, source,
                    block, attention)


def _check_name(name: Any, source: str) -> None:
    """A workload's name is a non-empty string."""
    if not isinstance(name, str):
        raise SpecError(source, "name", f"expected a string, got {kind_of(name)} {name!r}")
    if not name:
        raise SpecError(source, "name", "expected a non-empty string")


def _check_params_mapping(params: Any, source: str) -> None:
    """`params` is a mapping with at least one size (each checked by `check_size`)."""
    if not isinstance(params, Mapping) or not params:
        raise SpecError(source, "params", "expected a mapping of parameter names to positive integers")


def _check_block(block: Any, source: str, given: bool = False) -> None:
    """`block` is one of `BLOCK_KINDS`, or None where the spec does not say (a file that writes `block` gives one:
    `given`)."""
    if block not in BLOCK_KINDS and (given or block is not None):
        raise SpecError(source, "block", f"expected one of {', '.join(BLOCK_KINDS)}, got {block!r}")


def _check_attention(attention: Any, source: str) -> None:
    """`attention` is one of `ATTENTION_KINDS`."""
    if attention not in ATTENTION_KINDS:
        raise SpecError(source, "attention", f"expected one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")


LINEAR_RUNS_UNDER = ("linear attention runs under archsim parallel --scheme lasp1 or lasp2 (and ring, LASP-2's "
                     "baseline), hybrid under --scheme lasp2h, each in prefill")


def refuse_linear_attention(workload: Workload, what: str, decode: bool = False) -> None:
    """Refuse a linear- or hybrid-attention workload where `what` (a command, a model) times softmax attention;
    `decode`: in decode, which no scheme times for a linear model."""
    if workload.attention != "softmax":
        where = "no scheme times linear attention in decode" if decode else LINEAR_RUNS_UNDER
        raise SpecError(workload.path, "attention", f"{workload.name} computes {workload.attention} attention, which "
                                                    f"{what} does not model: it times softmax attention ({where})")


def attention_layers(workload: Workload) -> dict[str, int]:
    """How many of the model's layers compute each attention: {"linear": n, "softmax": m} for a hybrid model (m =
    floor(layers / softmax_every), module docstring), {its attention: layers} otherwise."""
    layers = int(workload.params["layers"])
    if workload.attention != "hybrid":
        return {workload.attention: layers}
    softmax = layers // int(workload.params["softmax_every"])
    return {"linear": layers - softmax, "softmax": softmax}


def attention_view(workload: Workload, kind: str) -> Workload:
    """`workload` as a model whose every layer computes `kind` attention ("softmax" or "linear"): the same sizes
    without `softmax_every`, to time or hold one kind of a hybrid model's layers."""
    params = {key: value for key, value in workload.params.items() if key != "softmax_every"}
    return replace(workload, params=params, attention=kind)


def _check_heads(params: dict[str, float], source: str) -> None:
    """Key/value heads group the query heads: kv_heads divides heads (MHA: equal; GQA: groups of heads / kv_heads
    query heads; MQA: 1)."""
    if "heads" in params and "kv_heads" in params and params["heads"] % params["kv_heads"]:
        raise SpecError(source, "params.kv_heads", f"expected a divisor of heads ({params['heads']:g}): each KV "
                                                   f"head serves heads / kv_heads query heads, got "
                                                   f"{params['kv_heads']:g}")


def _check_needs(params: dict[str, float], source: str) -> None:
    """Each size read only beside another comes with it (`NEEDS`): top_k, moe_every, dense_ffn_dim and
    shared_experts with experts, q_lora_rank and rope_dim with kv_lora_rank."""
    for key, needed in NEEDS.items():
        if key in params and needed not in params:
            raise SpecError(source, f"params.{key}",
                            f"only for {MODEL_KINDS[needed]}: give {needed} too ({PARAMS[key].meaning})")


def _check_moe(params: dict[str, float], source: str) -> None:
    """A MoE workload's sizes agree: top_k routes to at most `experts`, moe_every leaves at least one MoE layer,
    and shared experts come with the ffn_dim each is wide (`shared_ffn_dim`)."""
    if "experts" not in params:
        return
    if params.get("top_k", 0) > params["experts"]:
        raise SpecError(source, "params.top_k", f"expected at most experts ({params['experts']:g}): a token is "
                                                f"routed to top_k distinct experts, got {params['top_k']:g}")
    if params.get("moe_every", 1) > params.get("layers", math.inf):
        raise SpecError(source, "params.moe_every", f"expected at most layers ({params['layers']:g}) so that some "
                                                    f"layer is MoE, got {params['moe_every']:g}")
    if params.get(SHARED_EXPERTS, 0) and "ffn_dim" not in params:
        raise SpecError(source, "params.ffn_dim", f"missing: {SHARED_EXPERTS} counts experts each ffn_dim wide "
                                                  "(one dense FFN of shared_experts x ffn_dim)")


def shared_ffn_dim(params: Mapping[str, float]) -> int:
    """The width of a MoE layer's shared experts as one dense FFN: shared_experts x ffn_dim (module docstring); 0
    for a model without them. The loader refuses shared experts without ffn_dim (`_check_moe`)."""
    return int(params.get(SHARED_EXPERTS, 0) * params.get("ffn_dim", 0))


def _check_hybrid(params: dict[str, float], attention: str, source: str) -> None:
    """A hybrid model says which of its layers are softmax (`softmax_every`), and only a hybrid model does; some
    layer is softmax: softmax_every is at most `layers` (module docstring)."""
    if attention == "hybrid" and "softmax_every" not in params:
        raise SpecError(source, "params.softmax_every", "missing: attention: hybrid needs it (every softmax_every-th "
                                                        "layer is softmax attention, the others linear)")
    if attention != "hybrid" and "softmax_every" in params:
        raise SpecError(source, "params.softmax_every", f"only for a hybrid model: attention: hybrid (this workload's "
                                                        f"attention is {attention})")
    if params.get("softmax_every", 0) > params.get("layers", math.inf):
        raise SpecError(source, "params.softmax_every", f"expected at most layers ({params['layers']:g}) so that "
                                                        f"some layer is softmax, got {params['softmax_every']:g}")


def max_size() -> int:
    """The limit on sizes: MAX_SIZE, or ARCHSIM_MAX_SIZE when set (at most `MAX_SIZE_LIMIT`)."""
    return env_limit("ARCHSIM_MAX_SIZE", MAX_SIZE, MAX_SIZE_LIMIT)


def plain_number(value: Any) -> Any:
    """`value` as a Python int or float when it is a real number of another type (numpy's int64, float32; any
    `numbers.Real`), else as it is: a bool (Python's, or numpy's, which is no `numbers.Real`) stays one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or type(value) in (int, float):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def shown_number(value: int | float, spec: str = "g") -> str:
    """`value` in the format `spec` ("g", ".3g", "d" for an int), or "a N-digit number" for an int past 1e300: a
    float format cannot take one past 1.8e308 (it overflows converting it to a float), and "d" would fill a line."""
    if isinstance(value, float) or abs(value) < 1e300:
        return format(value, spec)
    return f"a {len(str(abs(value)))}-digit number"


def size_limit_problem(value: int | float, limit: int) -> str:
    """Why `value` is not a size from -`limit` to `limit` (the size limit, `max_size`), else "": inf too; an int
    beyond a float is compared exactly. An int is shown whole, exactly (`shown_number`'s "d": in %g 16777217 would
    read as the limit 16777216), a float in %g (as written: 2e+07)."""
    if -limit <= value <= limit:
        return ""
    shown = shown_number(value, "d" if isinstance(value, int) else "g")
    return (f"{shown} is beyond the limit of {limit} on sizes (raise it with the environment "
            "variable ARCHSIM_MAX_SIZE)")


def check_size(name: str, value: Any, source: str, where: str, limit: int | None = None) -> float:
    """A value for parameter `name`, blamed on `source`/`where`: a finite number from 0 to MAX_SIZE (raised by
    ARCHSIM_MAX_SIZE; `limit`: that limit already read, `max_size()`, by a caller checking many values); a `PARAMS`
    size, and a cascade's `COUNT_PARAMS` count, is moreover an integer of at least its minimum. A number of another
    type than int and float (numpy's int64 or float32, from a Python caller) is taken as one (`plain_number`); a
    bool, numpy's too, is refused."""
    value = plain_number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(source, where, f"expected a number, got {value!r}{text_number_hint(value)}")
    if isinstance(value, float) and math.isnan(value):
        raise SpecError(source, where, "expected a finite number, got NaN")
    if limit is None:
        limit = max_size()
    problem = size_limit_problem(value, limit)
    if problem:
        raise LimitError(source, where, problem)
    size = PARAMS.get(name, COUNT_PARAMS.get(name))
    if size is not None and (value != int(value) or value < size.minimum):
        raise SpecError(source, where, f"expected an integer of at least {size.minimum}, got {value:g} "
                                       f"({name}: {size.meaning})")
    if size is not None and size.maximum is not None and value > size.maximum:
        raise SpecError(source, where, f"expected an integer from {size.minimum} to {size.maximum}, got {value:g} "
                                       f"({name}: {size.meaning})")
    if value < 0:
        raise SpecError(source, where, f"expected a number of at least 0, got {value:g}")
    return float(value)
