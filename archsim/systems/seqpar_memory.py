"""Memory per device under multi-device attention schemes, and the longest context that fits (issue 18).

`training_memory` and `inference_memory` (prefill) give one device's bytes (`DeviceMemory`) for a workload whose
sequence of `seq_len` tokens runs under one of `SCHEMES` on `devices` devices; `max_context_tokens` finds by
bisection the largest context whose total fits a capacity (memory grows with N in every term below).

Sources: ../shared/reference/seqpar-sparse.md §1-2: Ring Attention (Liu, Zaharia, Abbeel 2023) Table 1 (the largest
activation of a layer: vanilla 2·b·H·s² with the scores per head, memory-efficient attention + FFN "BPT" 2·b·s·h,
Ring 6·b·c·h with c = s/P) and Table 3 (max training context, FSDP, full precision); the Ulysses blog (QKV
all-to-all, P <= heads), Megatron-SP (all-gather of the N x h layer input), LASP-1/2 (a linear-attention state
per device passed on, LASP-1, or all-gathered, LASP-2, fp32 in the code).

Every byte of a tensor comes from a library cascade (`archsim.systems.step.layer_ops`, the `linear-attention`
cascade for LASP), bound to the tokens and heads one device holds and rescaled from the workload's `word_bytes` to
the word size each term uses; weights and KV bytes per token are `SystemModel`'s (the cascades' weight and KV-cache
tensors, `layer_weight_bytes_per_device`). The embedding and LM-head tables are counted apart, as the LM head op's
weights (`step.lm_head_op`: hidden x ceil(vocab / the degree cutting them) words) once per table (two, or one where
the workload ties them: `params.vocab_tables`), as `SystemModel` prices them for serving; training turns them into
elements, since Table 3's training state multiplies elements, not bytes.

Training (defaults: the Ring Attention paper's Table 3 setting, `checkpointing` "layer", full precision):
- precision (`TRAINING_PRECISIONS`, a name for the keyword arguments `param_bytes`, `activation_bytes` and
  `optimizer_bytes_per_param`): "fp32", Table 3's full precision, parameters 4, gradients 4, Adam's two moments 8
  bytes per parameter, activations 4; "mixed", bf16 parameters 2 and gradients 2 with Adam's fp32 master copy and
  two moments 12 bytes per parameter (the 16 bytes per parameter of mixed-precision Adam in the ZeRO paper,
  Rajbhandari et al. 2020 §3.1), activations 2: the mixed-precision training of LASP, DeepSpeed-Ulysses and
  Megatron runs. LASP states are `state_bytes` (fp32, as LASP's code keeps them) an element at either
  precision.
- parameters, gradients and Adam's two moments sharded over all `devices` (FSDP / ZeRO-3), `param_bytes`,
  `param_bytes` and `optimizer_bytes_per_param` per parameter; FSDP gathers one layer's parameters at a time and
  that layer's gradients exist whole until reduce-scattered, so one layer (the largest kind) is added to each.
  Megatron-SP shards by tensor parallelism instead: nothing is gathered; nor on one device, which holds every
  layer whole (its parameters, gradients and Adam state are the model's, nothing to gather or reduce-scatter).
- activations, all at `activation_bytes`, by `checkpointing` (`CHECKPOINTING`):
  - "none" (no recomputation, as Megatron without activation recomputation or DeepSpeed-Ulysses without
    checkpointing run): every layer keeps what its backward reads, each tensor once, times the layers of each kind
    (`_kept_bytes`): each op's intermediates at `held_share` (the FFN's hidden activations whatever the scheme: a
    blockwise FFN saves their memory only by recomputing them; the attention's only where the scheme materialises
    them, vanilla: a blockwise or flash kernel recomputes its scores in its backward; LASP's attention: the
    `linear-attention` cascade's state) and the tensors each op reads (its non-weight inputs), but an op that only
    adds (a residual add: its backward passes the gradient through) reads none, so the projection's and the FFN's
    outputs, which only a residual add reads, are not kept. The cascades' tensor names repeat within a layer (each
    norm's and residual add's X and Y), so tensors are keyed by (op, name): an op's input is the output of one of
    its `deps` it matches (same name and size, else same size: an all-to-all's relayout replaces its source) or
    the layer's input; an input matching neither is a collective's output (Megatron-SP's all-gathered input to the
    projections and the FFN), which the backward gathers again from the dep's output it came from, kept instead
    (Korthikanti et al. 2022 §4.2). The layer's last output is the next layer's input, counted there (the last
    layer's feeds the final norm and LM head, not modelled). Beside them, once, the larger of the scheme's
    in-flight buffers (the K, V block in flight, the all-to-all's source, LASP's received or gathered states, as
    the working set below holds them) and an op's transient tensors (its gathered inputs and its outputs no
    backward keeps, live while it runs: Megatron-SP's N x h partial sums before their reduce-scatter);
  - "layer" (Table 3's): each layer's input is checkpointed (all layers, the tokens the device holds), plus the
    working set of one layer being recomputed: the residual stream and the peak op's live tensors (inputs,
    outputs and the intermediates the scheme materialises in memory):
  - vanilla: every intermediate of the attention cascade (the s x s scores per head and their exponentials) and of
    the FFN (its hidden activations);
  - memeff-attn: blockwise attention (no intermediate kept), the full-width FFN's hidden activations;
  - memeff-attn-ffn (BPT): blockwise attention and blockwise FFN: only the ops' inputs and outputs;
  - ring, zigzag, stripe: BPT on the device's c = N/P tokens, plus the K and V block in flight (Q, K, V, O and
    the next K, V: Table 1's 6·c·h for MHA); zigzag holds two chunks of N/2P, the same tokens;
  - ulysses: c tokens outside attention; attention over all N tokens for heads/P (and kv_heads/P) heads, beside
    the sequence-sharded Q, K, V the all-to-all sends;
  - usp (Ulysses degree u x ring degree r = P): attention over N/r tokens for heads/u heads, ring's K, V in flight
    and the all-to-all's source;
  only what the scheme moves is held in flight: no K, V block for a ring of one device (usp with r = 1 is
  ulysses), no all-to-all source for a Ulysses group of one (usp with u = 1 is zigzag);
  - megatron-sp: norms and residuals on c tokens; the projections, attention (blockwise) and FFN over all N tokens
    (the all-gathered N x h input) with heads, kv_heads and ffn_dim cut P ways, the FFN's hidden kept;
  - lasp1, lasp2: the layer's attention is linear attention (the `linear-attention` cascade) over c tokens; its
    d x d state per head is kept at `state_bytes` (fp32, as LASP's code): LASP-1 holds its own and the received
    one, LASP-2 all-gathers the P states;
  - lasp2h (LASP-2H, a hybrid model: `attention_layers`): its linear layers as lasp2, its softmax layers as
    allgather (`HYBRID_SCHEMES`), held as ring (`memory_scheme`; `seqpar` adds the gathered K and V), each on the
    same sizes (`attention_view`); the layer is the larger of the two kinds' working sets and in-flight buffers,
    and its KV cache and (checkpointing "none") kept tensors are the two kinds' count-weighted mean
    (`_hybrid_layer`), so the model's layers hold each kind's times its count (assumption: a MoE hybrid's MoE and
    dense layers spread over both kinds in the model's proportion).
  A MoE FFN's materialised hidden activations (H1, H3, A, the experts' outputs O) and gates exist for the routed
  (token, expert) pairs only, top_k / experts of their [tokens, experts, ...] shapes as the MACs count them
  (`held_share`); a model mixing MoE and dense layers (`moe_every`) takes the larger layer's working set.
- no KV cache. Not modelled: logits and loss (as if computed blockwise), framework buffers and fragmentation, the
  backward pass's gradients of activations beyond the working set above.

Inference (prefill, one forward pass; everything in the workload's `word_bytes` except LASP states):
- weights cut `tp` ways (heads, kv_heads, ffn_dim / tp, as `sharding.shard`) plus the tables' ceil(vocab / tp)
  rows; each
  sequence-parallel rank is a TP group of `tp` devices; Megatron-SP, tensor parallel over its P devices too, cuts
  them tp x P ways (one KV head per device, repeated, when tp x P is a multiple of kv_heads);
- KV cache for all layers of the tokens and heads the device's attention holds: ring/zigzag/stripe N/P tokens,
  ulysses N tokens of kv_heads/P heads, usp N/r tokens of kv_heads/u heads, megatron-sp N tokens of kv_heads/P,
  the whole-sequence schemes N tokens; lasp: one state per layer; lasp2h: ring's N/P tokens per softmax layer, a
  state per linear layer;
- one layer's working set as in training (no checkpoints, nothing for the backward pass); a decode step
  (`decode`) holds none (its one token's activations and a ring's block in flight are megabytes beside the
  cache), and a megatron-sp decode step takes any length (it cuts heads, not the sequence).

Batch: `batch` sequences per device group; the whole-sequence schemes on P devices are data parallel (each device
runs its own `batch` sequences of N tokens while FSDP shards the model over all P).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from archsim import library
from archsim.cascade.analysis import Analysis, TensorInfo, analyze
from archsim.cascade.bind import bind
from archsim.errors import SpecError, check_choice
from archsim.gpu.load import load_gpu
from archsim.systems.chip import load_chip
from archsim.systems.seqpar_compute import one_word_size
from archsim.systems.sharding import model_vocab_tables, shard
from archsim.systems.step import (
    DENSE,
    KV_CACHE,
    MOE,
    WEIGHTS,
    LayerCascades,
    Op,
    Step,
    block_of,
    layer_cascades,
    layer_kinds,
    layer_ops,
    library_cascades,
    lm_head_op,
)
from archsim.systems.system_checks import uncut_size
from archsim.systems.system_model import sizes_model
from archsim.systems.system_types import Parallelism
from archsim.systems.working_set import FFN_OPS, LAYER_INPUT, held_share, live_bytes
from archsim.workload import SHARED_EXPERTS, Workload, attention_layers, attention_view, max_size

SOURCE = "<seqpar_memory>"  # what errors in the arguments blame
SCHEMES = ("vanilla", "memeff-attn", "memeff-attn-ffn", "ring", "zigzag", "stripe", "ulysses", "usp",
           "megatron-sp", "lasp1", "lasp2", "lasp2h")
WHOLE_SEQUENCE = ("vanilla", "memeff-attn", "memeff-attn-ffn")  # each device holds all N tokens
RING = ("ring", "zigzag", "stripe")
LASP = ("lasp1", "lasp2")
# a hybrid model's scheme -> the scheme its layers of each attention run (LASP-2 §3.5: LASP-2H); the one table that
# `seqpar_spec` checks, `seqpar` times and this module holds them by
HYBRID_SCHEMES = {"lasp2h": {"linear": "lasp2", "softmax": "allgather"}}
ATTENTION = "attention"
LINEAR_ATTENTION = "linear-attention"  # the cascade a LASP layer's attention is counted by (`_linear_attention`)
MATERIALISED = {"vanilla": (ATTENTION, *FFN_OPS), "memeff-attn": FFN_OPS, "megatron-sp": FFN_OPS}
LINEAR_ONLY = ("attn_norm", "attn_residual", "ffn_norm", "ffn_residual")  # Megatron-SP's sequence-sharded ops
TABLE3_HARDWARE = (("8xA100", 8, ("llama-3b", "llama-7b", "llama-13b")), ("32xA100", 32, ("llama-7b", "llama-13b")))
TABLE3_SCHEMES = ("vanilla", "memeff-attn", "memeff-attn-ffn", "ring")
TABLE3_GPUS = ("a100-40gb-sxm4", "a100-80gb-sxm4")


@dataclass(frozen=True)
class TpuSlice:
    """A Table 3 TPU slice as the model reads it: `devices` devices (what FSDP shards over), each `chip_fraction` of
    the `chip` preset's memory_bytes, named `device` in the rows (their `gpu` key)."""

    hardware: str
    device: str
    chip: str
    devices: int
    chip_fraction: float
    models: tuple[str, ...]


# Table 3's TPU slices. Device counts are a reading of the slice names (Google Cloud TPU docs, from memory, not in
# ../shared/reference/): v2/v3/v4 slice names count TensorCores (two per chip), v5e's count chips (one core each).
# LLaMA "30B" is llama-33b (32.5B parameters, named 33B in the LLaMA paper); 3B is llama-3b (OpenLLaMA-3B's shapes).
TABLE3_TPUS = (
    # v3-512: 512 TensorCores = 256 chips of 32 GiB; JAX sees one device per TensorCore, 512 of 16 GiB (the reading
    # taken before any result was seen); the other reading, 256 chips of 32 GiB, is computed beside it, as the A100
    # rows run both 40 and 80 GiB
    TpuSlice("TPUv3-512", "tpu-v3-core", "tpu-v3", 512, 0.5, ("llama-7b", "llama-13b")),
    TpuSlice("TPUv3-512", "tpu-v3", "tpu-v3", 256, 1.0, ("llama-7b", "llama-13b")),
    # v4-1024: 1024 TensorCores = 512 chips of 32 GiB; megacore: JAX sees one device per chip
    TpuSlice("TPUv4-1024", "tpu-v4", "tpu-v4", 512, 1.0, ("llama-3b", "llama-7b", "llama-13b", "llama-33b")),
    # v5e-256: 256 chips of 16 GiB, one TensorCore each
    TpuSlice("TPUv5e-256", "tpu-v5e", "tpu-v5e", 256, 1.0, ("llama-3b", "llama-7b")),
)
POW2_UNIT_TOKENS = 1024  # Table 3's contexts are 2^k x 1K tokens
CHECKPOINTING = ("layer", "none")  # training's activation checkpointing (module docstring)
DEFAULT_CHECKPOINTING, DEFAULT_PRECISION = "layer", "fp32"  # the Ring Attention paper's Table 3 setting
# training precisions: bytes per parameter (parameters and gradients), per parameter of Adam's state, and per
# activation element (module docstring): Table 3's full precision, and mixed precision (ZeRO's 2 + 2 + 12)
TRAINING_PRECISIONS: dict[str, dict[str, float]] = {
    "fp32": {"param_bytes": 4, "activation_bytes": 4, "optimizer_bytes_per_param": 8},
    "mixed": {"param_bytes": 2, "activation_bytes": 2, "optimizer_bytes_per_param": 12},
}
# the FFN ops `layer_ops` names in a layer of each kind, its routed experts' or dense FFN first
FFN_OF_KIND = {MOE: ("moe", SHARED_EXPERTS), DENSE: ("ffn",)}


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes on one device, by kind."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    kv_cache_bytes: float

    @property
    def total_bytes(self) -> float:
        return (self.weights_bytes + self.gradients_bytes + self.optimizer_bytes + self.activations_bytes
                + self.kv_cache_bytes)


@dataclass(frozen=True)
class _Layer:
    """One device's layer under a scheme, in the workload's word size: the checkpointed layer input, the working
    set's peak and the KV cache (or LASP state) of one layer; `kept_bytes`, what all the layers keep without
    recomputation (`_kept_bytes`), and `in_flight_bytes`, the scheme's buffers beside them or an op's transient
    tensors, whichever is larger, are worked out only
    when asked for (`kept`)."""

    input_bytes: float
    working_bytes: float
    kv_bytes: float
    kept_bytes: float = 0.0
    in_flight_bytes: float = 0.0


@dataclass(frozen=True)
class _SchemeOps:
    """A layer's ops as one device runs them under a scheme (`_scheme_ops`), in the workload's word size: the ops
    (attention and, for Megatron-SP, the projections and FFN replaced by their head-cut, all-token forms), the
    buffers in flight beside the attention (K, V block, all-to-all source, LASP states), the KV cache or LASP state
    of one layer, LASP's linear-attention tensors (empty otherwise) and the ops whose intermediates the scheme
    materialises."""

    ops: tuple[Op, ...]
    in_flight_bytes: float
    kv_bytes: float
    linear: dict[str, TensorInfo]
    materialised: tuple[str, ...]


def token_multiple(scheme: str, devices: int, *, causal: bool = True, decode: bool = False,
                   ulysses_degree: int | None = None) -> int:
    """What seq_len must be a multiple of: P equal shards for the sequence-parallel schemes; causal zigzag and
    allgather cut it into 2P chunks (ring-flash-attention's zigzag); causal usp into 2r zigzag chunks over its
    r = P/u ring groups, each group's pair split over the group's u devices (USP's zigzag extract_local, yunchang):
    lcm(P, 2r); lasp2h as allgather (its softmax layers'). 1 for the whole-sequence schemes, for a megatron-sp decode
    step (head-parallel: every device holds all the tokens of its heads) and for any scheme on one device (it cuts
    nothing: the one-device call, zigzag's as ring's and allgather's).
    Non-causal zigzag is ring's layout: P. A usp without a Ulysses degree dividing P gets P (`_check` refuses the
    degree)."""
    gathers = gathers_kv(scheme)
    if scheme in WHOLE_SEQUENCE or (decode and scheme == "megatron-sp") or devices == 1:
        return 1
    if not causal or not (gathers or scheme in ("zigzag", "usp")):
        return devices
    if scheme != "usp":
        return 2 * devices
    valid = isinstance(ulysses_degree, int) and not isinstance(ulysses_degree, bool) and ulysses_degree >= 1 \
        and devices % ulysses_degree == 0
    return math.lcm(devices, 2 * (devices // ulysses_degree)) if valid else devices


def gathers_kv(scheme: str) -> bool:
    """Whether `scheme`, or a layer of the hybrid scheme, runs allgather (all-gathers K and V of all N tokens)."""
    return "allgather" in (scheme, *HYBRID_SCHEMES.get(scheme, {}).values())


def memory_scheme(scheme: str) -> str:
    """The scheme this module holds a timed scheme's layer as: its own, else ring's (allgather's: ring's layer,
    `seqpar` adding the gathered K and V, `gathers_kv`; distattention's decode: ring's KV cache cut P ways)."""
    return scheme if scheme in SCHEMES else "ring"


def training_memory(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int = 1, *,
                    param_bytes: float = 4, activation_bytes: float = 4, optimizer_bytes_per_param: float = 8,
                    state_bytes: float = 4, ulysses_degree: int | None = None, causal: bool = True,
                    checkpointing: str = DEFAULT_CHECKPOINTING) -> DeviceMemory:
    """One device's training memory (module docstring); the defaults are Table 3's full precision with Adam and
    its layer checkpointing (`TRAINING_PRECISIONS["mixed"]` gives mixed precision's bytes; `checkpointing`
    "none" keeps every layer's activations). `causal` only sets the token multiple (`token_multiple`): the bytes do
    not depend on the mask."""
    _check(workload, scheme, devices, seq_len, batch, 1, ulysses_degree,
           token_multiple(scheme, devices, causal=causal, ulysses_degree=ulysses_degree))
    check_choice("checkpointing", checkpointing, CHECKPOINTING, SOURCE)
    workload = one_word_size(workload)
    word = workload.params["word_bytes"]
    model = sizes_model(workload, 1)
    params = (model.layer_weight_bytes_per_device + _vocab_table_bytes(workload)) / word / devices
    sharded = scheme != "megatron-sp" and devices > 1  # FSDP gathers a layer only from shards on other devices
    gathered = max(m.weight_bytes_per_layer for m in model.by_kind.values()) / word if sharded else 0.0
    # activations are counted in the workload's words and scaled to `activation_bytes`: a state element counts
    # the words that make `state_bytes` after that scaling
    layer = _layer(workload, scheme, devices, seq_len, batch, 1, ulysses_degree, state_bytes / activation_bytes,
                   kept=checkpointing == "none")
    if checkpointing == "none":
        held = layer.kept_bytes + layer.in_flight_bytes
    else:
        held = workload.params["layers"] * layer.input_bytes + layer.working_bytes
    activations = held * activation_bytes / word
    return DeviceMemory((params + gathered) * param_bytes, (params + gathered) * param_bytes,
                        params * optimizer_bytes_per_param, activations, 0.0)


def inference_memory(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int = 1, *, tp: int = 1,
                     state_bytes: float = 4, ulysses_degree: int | None = None, causal: bool = True,
                     decode: bool = False) -> DeviceMemory:
    """One device's memory in a prefill of `seq_len` tokens (module docstring), weights cut `tp` ways (Megatron-SP:
    tp x `devices` ways, its sequence parallelism being tensor parallelism). `decode`: a decode step over `seq_len`
    cached tokens, the weights and the KV cache only (no working set); `causal` only sets the token multiple."""
    _check(workload, scheme, devices, seq_len, batch, tp, ulysses_degree,
           token_multiple(scheme, devices, causal=causal, decode=decode, ulysses_degree=ulysses_degree))
    word = workload.params["word_bytes"]
    degree = tp * devices if scheme == "megatron-sp" else tp
    weights = sizes_model(workload, degree).layer_weight_bytes_per_device + _vocab_table_bytes(workload, degree)
    layer = _layer(workload, scheme, devices, seq_len, batch, tp, ulysses_degree, state_bytes / word)
    return DeviceMemory(weights, 0.0, 0.0, 0.0 if decode else layer.working_bytes,
                        workload.params["layers"] * layer.kv_bytes)


def training_precision(name: str, field: str = "training_precision") -> dict[str, float]:
    """The keyword arguments of `training_memory` for the precision `name` (`TRAINING_PRECISIONS`); another name
    is a SpecError naming `field` and the choices."""
    check_choice(field, name, tuple(TRAINING_PRECISIONS), SOURCE)
    return dict(TRAINING_PRECISIONS[name])


def max_context_tokens(memory_of: Callable[[int], DeviceMemory], capacity_bytes: float, multiple: int, *,
                       limit_tokens: int | None = None) -> int:
    """The largest N, a multiple of `multiple`, with memory_of(N).total_bytes <= capacity_bytes: doubling, then
    bisection (memory is monotone in N); 0 when `multiple` tokens do not fit; at most `limit_tokens`, by default the
    size limit (MAX_SIZE, ARCHSIM_MAX_SIZE; `size_limit_tokens` for a scheme's)."""
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise SpecError(SOURCE, "multiple", f"expected a positive integer, got {multiple!r}")
    limit = (max_size() if limit_tokens is None else limit_tokens) // multiple

    def fits(k: int) -> bool:
        return memory_of(k * multiple).total_bytes <= capacity_bytes

    if limit < 1 or not fits(1):
        return 0
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, 2 * high
    if high > limit:
        if fits(limit):
            return limit * multiple
        high = limit
    while high - low > 1:  # fits(low), not fits(high)
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low * multiple


def pow2_context_tokens(max_tokens: int) -> int:
    """The largest 2^k x 1K tokens not above `max_tokens` (Table 3's grid), 0 below 1K: it fits when max_tokens
    does, memory being monotone in N."""
    if max_tokens < POW2_UNIT_TOKENS:
        return 0
    return POW2_UNIT_TOKENS * 2 ** int(math.log2(max_tokens // POW2_UNIT_TOKENS))


def size_limit_tokens(scheme: str, devices: int) -> int:
    """The longest context the memory model can run `scheme` at on `devices` devices: the size limit (MAX_SIZE,
    ARCHSIM_MAX_SIZE) bounds the cascades' sizes, and a ring scheme's cascades hold a device's N / P tokens, so
    its N may reach P x the limit; every other scheme binds N (or N / r, a USP ring's) somewhere, capped at it."""
    return max_size() * (devices if scheme in RING else 1)


def table3_rows(gpus: tuple[str, ...] = TABLE3_GPUS, tpus: tuple[TpuSlice, ...] = TABLE3_TPUS) -> list[dict]:
    """The Ring Attention paper's Table 3 cases as this model computes them, one row per (device, hardware,
    model, column): the largest training context (full precision, FSDP over all devices, batch 1) on the device's
    capacity (`device_memory_bytes`: a GPU preset's `dram_bytes`, or `chip_fraction` of a chip preset's
    memory_bytes for a TPU slice), and the largest 2^k x 1K one. `gpu` names the device: the GPU preset, or a TPU
    slice's `device`."""
    cases = [(hardware, devices, gpu, load_gpu(gpu).dram_bytes, models)
             for gpu in gpus for hardware, devices, models in TABLE3_HARDWARE]
    cases += [(tpu.hardware, tpu.devices, tpu.device, load_chip(tpu.chip).memory_bytes * tpu.chip_fraction,
               tpu.models) for tpu in tpus]
    rows = []
    for hardware, devices, device, capacity, models in cases:
        for name in models:
            workload = library.load_workload_spec(name)
            for scheme in TABLE3_SCHEMES:
                tokens = max_context_tokens(
                    functools.partial(_training_at, workload, scheme, devices), capacity,
                    token_multiple(scheme, devices), limit_tokens=size_limit_tokens(scheme, devices))
                rows.append({"hardware": hardware, "devices": devices, "gpu": device, "model": name,
                             "scheme": scheme, "device_memory_bytes": capacity, "max_context_tokens": tokens,
                             "pow2_context_tokens": pow2_context_tokens(tokens)})
    return rows


def _training_at(workload: Workload, scheme: str, devices: int, seq_len: int) -> DeviceMemory:
    return training_memory(workload, scheme, devices, seq_len)


def check_workload_sizes(workload: Workload) -> None:
    """Refuse a workload the memory model cannot expand: no decoder block, or a size it reads missing."""
    block_of(workload, "the memory model expands the model's decoder layer")
    for size in ("word_bytes", "layers", "hidden", "vocab", "heads", "kv_heads"):
        if size not in workload.params:
            raise SpecError(workload.path, f"params.{size}", "missing: the memory model needs it")


def _check(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int, tp: int,
           ulysses_degree: int | None, multiple: int) -> None:
    if scheme not in SCHEMES:
        raise SpecError(SOURCE, "scheme", f"expected one of {', '.join(SCHEMES)}, got {scheme!r}")
    for field, value in (("devices", devices), ("seq_len", seq_len), ("batch", batch), ("tp", tp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(SOURCE, field, f"expected a positive integer, got {value!r}")
    check_workload_sizes(workload)
    if seq_len % multiple:
        raise SpecError(SOURCE, "seq_len", f"expected a multiple of {multiple} for {scheme} on {devices} devices "
                                           f"(each holds an equal share of the tokens), got {seq_len}")
    if scheme == "usp":
        if ulysses_degree is None or isinstance(ulysses_degree, bool) or not isinstance(ulysses_degree, int) \
                or ulysses_degree < 1 or devices % ulysses_degree:
            raise SpecError(SOURCE, "ulysses_degree", f"expected a divisor of devices ({devices}) for usp (Ulysses "
                                                      f"degree x ring degree = devices), got {ulysses_degree!r}")
    elif ulysses_degree is not None:
        raise SpecError(SOURCE, "ulysses_degree", f"only for usp, not {scheme}")
    _check_cut(workload, "tp", tp, repeat_kv=True)
    head_cut = {"ulysses": devices, "megatron-sp": devices, "usp": ulysses_degree}.get(scheme)
    if head_cut:
        _check_cut(workload, "devices" if scheme != "usp" else "ulysses_degree", tp * head_cut,
                   ("ffn_dim",) if scheme == "megatron-sp" else (), repeat_kv=scheme == "megatron-sp" or head_cut == 1)


def _check_cut(workload: Workload, field: str, degree: int, more: tuple[str, ...] = (), *,
               repeat_kv: bool = False) -> None:
    """The heads (and `more` sizes) split `degree` ways: Ulysses is capped by the heads (P <= kv_heads). With
    `repeat_kv` (tensor parallelism: `tp`, and Megatron-SP over its devices) a degree that is a multiple of the KV
    heads keeps one KV head per device, repeated (`sharding.shard`; the timing's max(1, kv_heads / P))."""
    size = uncut_size(workload.params, degree, ("heads", "kv_heads", *more), repeat_kv)
    if size is not None:
        raise SpecError(SOURCE, field, f"splits {workload.name}'s {size} ({int(workload.params[size])}) {degree} "
                                       f"ways: expected a divisor of it")


def _layer(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int, tp: int,
           ulysses_degree: int | None, state_words: float, *, kept: bool = False) -> _Layer:
    """One layer of one device under `scheme` (module docstring), bytes in the workload's word size; a LASP state
    element counts `state_words` words. `kept`: also what all the layers keep without recomputation."""
    if scheme in HYBRID_SCHEMES:
        return _hybrid_layer(workload, scheme, devices, seq_len, batch, tp, state_words, kept=kept)
    run = _scheme_ops(workload, scheme, devices, seq_len, batch, tp, ulysses_degree, state_words)
    ops = run.ops
    if scheme in LASP:
        live_attention = float(sum(t.bytes for t in run.linear.values() if t.kind in ("input", "output")))
    else:
        live_attention = live_bytes(_attention(ops), ATTENTION in run.materialised)
    peak = max(max(live_bytes(op, op.name in run.materialised) for op in ops if op.name != ATTENTION),
               live_attention + run.in_flight_bytes)
    layer_input = ops[0].tensor_bytes[LAYER_INPUT]  # attn_norm's input: the checkpoint, and the residual stream held
    if not kept:
        return _Layer(layer_input, layer_input + peak, run.kv_bytes)
    kept, transient = _kept_bytes(workload, run)
    return _Layer(layer_input, layer_input + peak, run.kv_bytes, kept, max(run.in_flight_bytes, transient))


def _hybrid_layer(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int, tp: int,
                  state_words: float, *, kept: bool) -> _Layer:
    """A hybrid model's layer (module docstring, lasp2h): each attention kind's layer under its scheme
    (`HYBRID_SCHEMES`, held as `memory_scheme`), the larger working set and in-flight buffers, the count-weighted
    mean KV cache (or state) and kept tensors."""
    counts = attention_layers(workload)
    layers = sum(counts.values())
    parts = [(count / layers, _layer(attention_view(workload, kind), memory_scheme(HYBRID_SCHEMES[scheme][kind]),
                                     devices, seq_len, batch, tp, None, state_words, kept=kept))
             for kind, count in counts.items()]
    return _Layer(max(part.input_bytes for _, part in parts), max(part.working_bytes for _, part in parts),
                  sum(share * part.kv_bytes for share, part in parts),
                  sum(share * part.kept_bytes for share, part in parts),
                  max(part.in_flight_bytes for _, part in parts))


def _scheme_ops(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int, tp: int,
                ulysses_degree: int | None, state_words: float) -> _SchemeOps:
    """The layer's ops as one device runs them under `scheme` and what the scheme holds beside them (module
    docstring's working set)."""
    local = seq_len if scheme in WHOLE_SEQUENCE else -(-seq_len // devices)  # ragged only in a megatron-sp decode
    ops = _ops(workload, tp, local, batch)
    in_flight = 0.0
    if scheme == "megatron-sp":
        full = {op.name: op for op in _ops(workload, tp * devices, seq_len, batch)}
        ops = tuple(op if op.name in LINEAR_ONLY else full[op.name] for op in ops)
    elif scheme in ("ulysses", "usp"):
        heads, tokens = (devices, seq_len) if scheme == "ulysses" else (ulysses_degree,
                                                                      seq_len // (devices // ulysses_degree))
        attention = _attention(_ops(workload, tp * heads, tokens, batch))
        ops = tuple(attention if op.name == ATTENTION else op for op in ops)
        qkv = next(op for op in ops if op.name == "qkv")
        if heads > 1:  # the all-to-all's source: sequence-sharded Q, K, V (none moves within one device)
            in_flight = sum(size for name, size in qkv.tensor_bytes.items()
                            if qkv.tensor_roles[name] != WEIGHTS and name not in _inputs(qkv))
    attention = _attention(ops)
    ring_devices = devices if scheme in RING else devices // ulysses_degree if scheme == "usp" else 1
    if ring_devices > 1:
        in_flight += _kv(attention)  # the next K, V block in flight
    kv, linear = _kv(attention), {}
    if scheme in LASP:
        linear = {t.name: t for t in _linear_attention(workload, tp, local, batch).tensors}
        kv = linear["KV"].bytes * state_words  # the state: K^T V per head
        in_flight = (min(2, devices) if scheme == "lasp1" else devices) * kv  # one device receives nothing
    return _SchemeOps(ops, float(in_flight), float(kv), linear, MATERIALISED.get(scheme, ()))


def _attention(ops: tuple[Op, ...]) -> Op:
    return next(op for op in ops if op.name == ATTENTION)


@dataclass(frozen=True)
class _Tensors:
    """One op's tensors a layer keeps without recomputation, as (name, bytes held) pairs: its non-weight inputs,
    its non-weight outputs and its intermediates (an attention's only where the scheme materialises them)."""

    inputs: tuple[tuple[str, float], ...]
    outputs: tuple[tuple[str, float], ...]
    intermediates: tuple[tuple[str, float], ...]


def _kept_bytes(workload: Workload, run: _SchemeOps) -> tuple[float, float]:
    """(what all the layers keep for the backward pass without recomputation, the largest transient of an op)
    (module docstring, "none"): each layer's tensors once (`_layer_kept_bytes`), times the layers of its kind. The
    ops of a model mixing MoE and dense layers hold both FFN ops (`_cached_ops`); a layer of a kind runs its own."""
    total, transient = 0.0, 0.0
    for kind, layers in Counter(layer_kinds(workload)).items():
        other = set(FFN_OPS) - set(FFN_OF_KIND[kind])
        ops = tuple(op for op in run.ops if op.name not in other)
        kept, largest = _layer_kept_bytes(ops, {op.name: _op_tensors(op, run) for op in ops}, FFN_OF_KIND[kind][0])
        total, transient = total + layers * kept, max(transient, largest)
    return total, transient


def _op_tensors(op: Op, run: _SchemeOps) -> _Tensors:
    """The tensors `op` holds under the scheme (`working_set.live_bytes`'s rules): LASP's attention is the
    `linear-attention` cascade, its inputs and outputs and its state (`kv_bytes`: K^T V at the state's word
    size)."""
    if op.name == ATTENTION and run.linear:
        def of(kind: str) -> tuple[tuple[str, float], ...]:
            return tuple((t.name, float(t.bytes)) for t in run.linear.values() if t.kind == kind)

        return _Tensors(of("input"), of("output"), (("KV", run.kv_bytes),))
    # the backward reads every intermediate of an op but a blockwise attention's, which its backward recomputes
    roles, materialised = op.tensor_roles, op.name in run.materialised or op.name != ATTENTION

    def held(kind: str) -> tuple[tuple[str, float], ...]:
        return tuple((t.name, t.bytes * held_share(op, t.name)) for t in op.tensors
                     if t.kind == kind and roles[t.name] != WEIGHTS)

    return _Tensors(held("input"), held("output"), held("intermediate") if materialised else ())


def _layer_kept_bytes(ops: tuple[Op, ...], tensors: dict[str, _Tensors], ffn: str) -> tuple[float, float]:
    """(one layer's tensors its backward reads, each once; the largest transient of one of its ops) (module
    docstring, "none"). Kept: every op's intermediates, and the tensors its inputs are (a dep's output or the
    layer's input), but an op that only adds (a residual add, whose backward passes the gradient through) reads
    none. An input no such source matches is a collective's output (Megatron-SP's all-gathered layer input, a
    reduce-scattered sum): the backward gathers it again from the dep's output it came from (Korthikanti et al.
    2022 §4.2), which is kept instead. An op's transient: its inputs that are a collective's output and its outputs
    no backward keeps (Megatron-SP's N x h partial sums before the reduce-scatter), live while it runs. An op's deps
    are its layer's (`layer_deps`: an FFN op the layer lacks is its own FFN, `ffn`)."""
    layer_input = ("", *tensors[ops[0].name].inputs[0])  # (producing op, name, bytes); "" for the layer's input
    kept: set[tuple[str, str, float]] = set()
    gathered: dict[str, float] = {}
    total, names = 0.0, {op.name for op in ops}
    for index, op in enumerate(ops):
        own = tensors[op.name]
        total += sum(size for _, size in own.intermediates)
        if _adds_only(op):
            continue
        sources = [(dep, *out) for dep in layer_deps(op, names, ffn) for out in tensors[dep].outputs]
        if index == 0 or len(own.inputs) > len(sources):  # the layer's input, read by the first op and a residual
            sources.append(layer_input)
        matched, unmatched = _match(own.inputs, sources)
        kept.update(matched)
        gathered[op.name] = sum(size for _, size in unmatched)
        if unmatched:  # gathered again from what the collective read: the deps' outputs no input is
            kept.update(source for source in sources if source not in matched and source is not layer_input)
    transient = max((gathered[op.name] + sum(size for name, size in tensors[op.name].outputs
                                             if (op.name, name, size) not in kept)
                     for op in ops[:-1] if op.name in gathered), default=0.0)
    return total + sum(size for _, _, size in kept), transient


def layer_deps(op: Op, names: set[str], ffn: str) -> tuple[str, ...]:
    """`op`'s deps in a layer of the ops `names` whose FFN is `ffn` (its first FFN op, `FFN_OF_KIND`): the op list
    holds every kind of layer's FFN ops (`_cached_ops`), each op's deps those of the kind that first named it, so a
    dep on an FFN op (`FFN_OPS`) the layer lacks is the layer's own FFN, named once; every other dep stays."""
    return tuple(dict.fromkeys(ffn if dep in FFN_OPS and dep not in names else dep for dep in op.deps))


def _adds_only(op: Op) -> bool:
    """Whether every Einsum of `op` only adds (a residual add): its backward reads none of its inputs."""
    return all(set(counts) <= {"add"} for counts in op.counts[1].values())


def _match(inputs: tuple[tuple[str, float], ...], sources: list[tuple[str, str, float]]
           ) -> tuple[list[tuple[str, str, float]], list[tuple[str, float]]]:
    """(the sources the `inputs` are, the inputs no source is), each source one input at most: first a source of
    the same name and size, then one of the same size."""
    left, matched = list(sources), []
    for same in (lambda a, b: a == b[1:], lambda a, b: a[1] == b[2]):
        unmatched = []
        for tensor in inputs:
            found = next((source for source in left if same(tensor, source)), None)
            if found is None:
                unmatched.append(tensor)
            else:
                left.remove(found)
                matched.append(found)
        inputs = tuple(unmatched)
    return matched, list(inputs)


def _kv(op: Op) -> float:
    roles = op.tensor_roles
    return float(sum(size for name, size in op.tensor_bytes.items() if roles[name] == KV_CACHE))


def _inputs(op: Op) -> set[str]:
    return {t.name for t in op.tensors if t.kind == "input"}


def _vocab_table_bytes(workload: Workload, degree: int = 1) -> float:
    """The input embedding and the LM head on one of `degree` ranks cutting the vocab: the LM head op's weights
    (`step.lm_head_op`: hidden x ceil(vocab / degree) words) once per table (`sharding.model_vocab_tables`: two, or
    one where tied), as the systems layer counts them (`SystemModel.stage_weight_bytes`)."""
    return model_vocab_tables(workload) * lm_head_op(workload, 1, degree).bytes_by_role[WEIGHTS]


def _cut(workload: Workload, degree: int) -> Workload:
    """The workload with heads, kv_heads and ffn_dim cut `degree` ways (`sharding.shard`, the TP cut)."""
    return shard(workload, Parallelism(tp=degree, pp=1))


def _ops(workload: Workload, degree: int, tokens: int, batch: int) -> tuple[Op, ...]:
    """The prefill layer (`layer_ops`) of `batch` sequences of `tokens` tokens, heads and FFN cut `degree` ways,
    bound to the library cascades as their files read now (`step.layer_cascades`, every kind of the workload's
    layers) under the limit on sizes now (`workload.max_size`, which binding checks against): both key what
    `_cached_ops` remembers, as `system_model._cached_ops`."""
    cut = _cut(workload, degree)
    cascades = layer_cascades(cut, "prefill", block_of(cut, "its layer comes from its block's cascades"),
                              tuple(dict.fromkeys(layer_kinds(cut))))
    return _cached_ops(_key(cut), cascades, max_size(), tokens, batch)


def _linear_attention(workload: Workload, degree: int, tokens: int, batch: int) -> Analysis:
    """The `linear-attention` cascade (as its file reads now) over `tokens` tokens of `batch` sequences, heads cut
    `degree` ways, remembered per cascade and size limit as `_ops`."""
    return _cached_linear(_key(_cut(workload, degree)), library_cascades([LINEAR_ATTENTION]), max_size(), tokens,
                          batch)


def _key(workload: Workload) -> tuple:
    return workload.name, workload.path, tuple(sorted(workload.params.items())), workload.block


def _unkey(key: tuple) -> Workload:
    name, path, params, block = key
    return Workload(name, "", "", dict(params), path, block)


@functools.lru_cache(maxsize=4096)
def _cached_ops(key: tuple, cascades: LayerCascades, _size_limit: int, tokens: int, batch: int) -> tuple[Op, ...]:
    """The layer's ops; a model mixing MoE and dense layers (`moe_every` > 1) adds its other kind's FFN op (`ffn`
    beside `moe`), so the working set's peak is that of its largest kind of layer."""
    workload, step = _unkey(key), Step("prefill", batch, tokens)
    ops: dict[str, Op] = {}
    for kind in dict.fromkeys(layer_kinds(workload)):
        for op in layer_ops(workload, step, workload.block, kind, cascades):
            ops.setdefault(op.name, op)
    return tuple(ops.values())


@functools.lru_cache(maxsize=1024)
def _cached_linear(key: tuple, cascades: LayerCascades, _size_limit: int, tokens: int, batch: int) -> Analysis:
    return analyze(bind(cascades[LINEAR_ATTENTION], _unkey(key), {"batch": batch, "seq_len": tokens}, SOURCE))
