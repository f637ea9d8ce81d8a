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
tensors, `layer_weight_bytes_per_device`). The embedding and LM-head tables are counted apart, as elements of the
workload's `vocab` x `hidden` (two tables, untied as in LLaMA; `system_model.vocab_tables` with `step.lm_head_op`
prices the same tables for serving), since Table 3's training state multiplies elements, not bytes.

Training (the Ring Attention paper's Table 3 setting):
- parameters, gradients and Adam's two moments sharded over all `devices` (FSDP / ZeRO-3), `param_bytes`,
  `param_bytes` and `optimizer_bytes_per_param` per parameter (full precision: 4, 4 and 8); FSDP gathers one
  layer's parameters at a time and that layer's gradients exist whole until reduce-scattered, so one layer (the
  largest kind) is added to each. Megatron-SP shards by tensor parallelism instead: nothing is gathered.
- activations, all at `activation_bytes` (full precision: 4): each layer's input is checkpointed (all layers, the
  tokens the device holds), plus the working set of one layer being recomputed: the residual stream and the peak
  op's live tensors (inputs, outputs and the intermediates the scheme materialises in memory):
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
    one, LASP-2 all-gathers the P states.
  A MoE FFN's materialised hidden activations (H1, H3, A, the experts' outputs O) and gates exist for the routed
  (token, expert) pairs only, top_k / experts of their [tokens, experts, ...] shapes as the MACs count them
  (`_held_share`); a model mixing MoE and dense layers (`moe_every`) takes the larger layer's working set.
- no KV cache. Not modelled: logits and loss (as if computed blockwise), framework buffers and fragmentation, the
  backward pass's gradients of activations beyond the working set above.

Inference (prefill, one forward pass; everything in the workload's `word_bytes` except LASP states):
- weights cut `tp` ways (heads, kv_heads, ffn_dim / tp, as `system_model`) plus the embedding tables / tp; each
  sequence-parallel rank is a TP group of `tp` devices; Megatron-SP, tensor parallel over its P devices too, cuts
  them tp x P ways (one KV head per device, repeated, when tp x P is a multiple of kv_heads);
- KV cache for all layers of the tokens and heads the device's attention holds: ring/zigzag/stripe N/P tokens,
  ulysses N tokens of kv_heads/P heads, usp N/r tokens of kv_heads/u heads, megatron-sp N tokens of kv_heads/P,
  the whole-sequence schemes N tokens; lasp: one state per layer;
- one layer's working set as in training (no checkpoints, nothing for the backward pass); a decode step
  (`decode`) holds none (its one token's activations and a ring's block in flight are megabytes beside the
  cache), and a megatron-sp decode step takes any length (it cuts heads, not the sequence).

Batch: `batch` sequences per device group; the whole-sequence schemes on P devices are data parallel (each device
runs its own `batch` sequences of N tokens while FSDP shards the model over all P).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from archsim import library
from archsim.cascade.analysis import Analysis, analyze
from archsim.cascade.bind import bind
from archsim.cascade.ir import Cascade, Einsum, Ref, Var
from archsim.cascade.syntax import walk
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.limits import env_limit
from archsim.systems.gemms import einsum_density, ref_vars, writer_of
from archsim.systems.step import INTERMEDIATE, KV_CACHE, WEIGHTS, Op, Step, block_of, layer_kinds, layer_ops
from archsim.systems.system_model import shard, sizes_model
from archsim.systems.system_spec import Parallelism
from archsim.workload import MAX_SIZE, Workload

SOURCE = "<seqpar_memory>"  # what errors in the arguments blame
SCHEMES = ("vanilla", "memeff-attn", "memeff-attn-ffn", "ring", "zigzag", "stripe", "ulysses", "usp",
           "megatron-sp", "lasp1", "lasp2")
WHOLE_SEQUENCE = ("vanilla", "memeff-attn", "memeff-attn-ffn")  # each device holds all N tokens
RING = ("ring", "zigzag", "stripe")
LASP = ("lasp1", "lasp2")
ATTENTION, FFN_OPS = "attention", ("ffn", "moe")
MATERIALISED = {"vanilla": (ATTENTION, *FFN_OPS), "memeff-attn": FFN_OPS, "megatron-sp": FFN_OPS}
LINEAR_ONLY = ("attn_norm", "attn_residual", "ffn_norm", "ffn_residual")  # Megatron-SP's sequence-sharded ops
TABLE3_HARDWARE = (("8xA100", 8, ("llama-3b", "llama-7b", "llama-13b")), ("32xA100", 32, ("llama-7b", "llama-13b")))
TABLE3_SCHEMES = ("vanilla", "memeff-attn", "memeff-attn-ffn", "ring")
TABLE3_GPUS = ("a100-40gb-sxm4", "a100-80gb-sxm4")
POW2_UNIT_TOKENS = 1024  # Table 3's contexts are 2^k x 1K tokens


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
    set's peak and the KV cache (or LASP state) of one layer."""

    input_bytes: float
    working_bytes: float
    kv_bytes: float


def token_multiple(scheme: str, devices: int, *, causal: bool = True, decode: bool = False,
                   ulysses_degree: int | None = None) -> int:
    """What seq_len must be a multiple of: P equal shards for the sequence-parallel schemes; causal zigzag and
    allgather cut it into 2P chunks (ring-flash-attention's zigzag); causal usp into 2r zigzag chunks over its
    r = P/u ring groups, each group's pair split over the group's u devices (USP's zigzag extract_local, yunchang):
    lcm(P, 2r). 1 for the whole-sequence schemes and for a megatron-sp decode step (head-parallel: every device
    holds all the tokens of its heads). Non-causal zigzag is ring's layout: P. A usp without a Ulysses degree
    dividing P gets P (`_check` refuses the degree)."""
    if scheme in WHOLE_SEQUENCE or (decode and scheme == "megatron-sp"):
        return 1
    if not causal or scheme not in ("zigzag", "allgather", "usp"):
        return devices
    if scheme != "usp":
        return 2 * devices
    valid = isinstance(ulysses_degree, int) and not isinstance(ulysses_degree, bool) and ulysses_degree >= 1 \
        and devices % ulysses_degree == 0
    return math.lcm(devices, 2 * (devices // ulysses_degree)) if valid else devices


def training_memory(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int = 1, *,
                    param_bytes: float = 4, activation_bytes: float = 4, optimizer_bytes_per_param: float = 8,
                    state_bytes: float = 4, ulysses_degree: int | None = None, causal: bool = True) -> DeviceMemory:
    """One device's training memory (module docstring); the defaults are Table 3's full precision with Adam.
    `causal` only sets the token multiple (`token_multiple`): the bytes do not depend on the mask."""
    _check(workload, scheme, devices, seq_len, batch, 1, ulysses_degree,
           token_multiple(scheme, devices, causal=causal, ulysses_degree=ulysses_degree))
    workload = _one_word_size(workload)
    word = workload.params["word_bytes"]
    model = sizes_model(workload, 1)
    params = (model.layer_weight_bytes_per_device / word + _embedding_elements(workload)) / devices
    gathered = 0.0 if scheme == "megatron-sp" else max(
        m.weight_bytes_per_layer for m in model.by_kind.values()) / word
    layer = _layer(workload, scheme, devices, seq_len, batch, 1, ulysses_degree, state_bytes / word)
    activations = (workload.params["layers"] * layer.input_bytes + layer.working_bytes) * activation_bytes / word
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
    weights = (sizes_model(workload, degree).layer_weight_bytes_per_device
               + _embedding_elements(workload) * word / degree)
    layer = _layer(workload, scheme, devices, seq_len, batch, tp, ulysses_degree, state_bytes / word)
    return DeviceMemory(weights, 0.0, 0.0, 0.0 if decode else layer.working_bytes,
                        workload.params["layers"] * layer.kv_bytes)


def max_context_tokens(memory_of: Callable[[int], DeviceMemory], capacity_bytes: float, multiple: int) -> int:
    """The largest N, a multiple of `multiple`, with memory_of(N).total_bytes <= capacity_bytes: doubling, then
    bisection (memory is monotone in N); 0 when `multiple` tokens do not fit; at most the size limit (MAX_SIZE,
    ARCHSIM_MAX_SIZE)."""
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise SpecError(SOURCE, "multiple", f"expected a positive integer, got {multiple!r}")
    limit = env_limit("ARCHSIM_MAX_SIZE", MAX_SIZE) // multiple

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


def table3_rows(gpus: tuple[str, ...] = TABLE3_GPUS) -> list[dict]:
    """The Ring Attention paper's Table 3 GPU cases as this model computes them, one row per (GPU preset,
    hardware, model, column): the largest training context (full precision, FSDP over all devices, batch 1) on
    the preset's `dram_bytes`, and the largest 2^k x 1K one."""
    rows = []
    for gpu in gpus:
        capacity = load_gpu(gpu).dram_bytes
        for hardware, devices, models in TABLE3_HARDWARE:
            for name in models:
                workload = library.load_workload_spec(name)
                for scheme in TABLE3_SCHEMES:
                    tokens = max_context_tokens(
                        functools.partial(_training_at, workload, scheme, devices), capacity,
                        token_multiple(scheme, devices))
                    rows.append({"hardware": hardware, "devices": devices, "gpu": gpu, "model": name,
                                 "scheme": scheme, "max_context_tokens": tokens,
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
    heads keeps one KV head per device, repeated (`system_model.shard`; the timing's max(1, kv_heads / P))."""
    for size in ("heads", "kv_heads", *more):
        value = int(workload.params.get(size, degree))
        if value % degree and not (repeat_kv and size == "kv_heads" and degree % value == 0):
            raise SpecError(SOURCE, field, f"splits {workload.name}'s {size} ({value}) {degree} ways: expected "
                                           f"a divisor of it")


def _layer(workload: Workload, scheme: str, devices: int, seq_len: int, batch: int, tp: int,
           ulysses_degree: int | None, state_words: float) -> _Layer:
    """One layer of one device under `scheme` (module docstring), bytes in the workload's word size; a LASP state
    element counts `state_words` words."""
    local = seq_len if scheme in WHOLE_SEQUENCE else -(-seq_len // devices)  # ragged only in a megatron-sp decode
    ops = _ops(workload, tp, local, batch)
    attention_extra = 0.0
    if scheme == "megatron-sp":
        full = {op.name: op for op in _ops(workload, tp * devices, seq_len, batch)}
        ops = tuple(op if op.name in LINEAR_ONLY else full[op.name] for op in ops)
    elif scheme in ("ulysses", "usp"):
        heads, tokens = (devices, seq_len) if scheme == "ulysses" else (ulysses_degree,
                                                                      seq_len // (devices // ulysses_degree))
        attention = next(op for op in _ops(workload, tp * heads, tokens, batch) if op.name == ATTENTION)
        ops = tuple(attention if op.name == ATTENTION else op for op in ops)
        qkv = next(op for op in ops if op.name == "qkv")
        if heads > 1:  # the all-to-all's source: sequence-sharded Q, K, V (none moves within one device)
            attention_extra = sum(size for name, size in qkv.tensor_bytes.items()
                                  if qkv.tensor_roles[name] != WEIGHTS and name not in _inputs(qkv))
    materialised = MATERIALISED.get(scheme, ())
    attention = next(op for op in ops if op.name == ATTENTION)
    ring_devices = devices if scheme in RING else devices // ulysses_degree if scheme == "usp" else 1
    if ring_devices > 1:
        attention_extra += _kv(attention)  # the next K, V block in flight
    kv = _kv(attention)
    if scheme in LASP:
        linear = {t.name: t for t in _linear_attention(workload, tp, local, batch).tensors}
        kv = linear["KV"].bytes * state_words  # the state: K^T V per head
        attention_extra = (2 if scheme == "lasp1" else devices) * kv
        live_attention = float(sum(t.bytes for t in linear.values() if t.kind in ("input", "output")))
    else:
        live_attention = _live(attention, ATTENTION in materialised)
    peak = max(max(_live(op, op.name in materialised) for op in ops if op.name != ATTENTION),
               live_attention + attention_extra)
    layer_input = ops[0].tensor_bytes["X"]  # attn_norm's input: the checkpoint, and the residual stream held
    return _Layer(layer_input, layer_input + peak, kv)


def _live(op: Op, materialised: bool) -> float:
    """Bytes of an op's activations (inputs, outputs, K and V) and, when the scheme keeps them, intermediates,
    each at the share of its elements that exist (`_held_share`)."""
    roles = op.tensor_roles
    return float(sum(size * _held_share(op, name) for name, size in op.tensor_bytes.items()
                     if roles[name] != WEIGHTS and (materialised or roles[name] != INTERMEDIATE)))


def _held_share(op: Op, tensor: str) -> float:
    """The share of `tensor`'s elements a device holds. A tensor written under a data-dependent mask over its own
    indices (MoE top-k routing: the experts' H1, H3, A and O, the gates) exists for the routed (token, expert)
    pairs only, the writing Einsum's kept points (`gemms.einsum_density`: top_k / experts, as the MACs count
    them), its tokens gathered per expert as grouped-GEMM MoE kernels hold them. Every other tensor is whole: one
    no Einsum writes, one unmasked, one under a positional mask (causal scores are held s x s, their masked
    points written as the fill: Ring Attention Table 1's vanilla 2·b·H·s²), and a reduction whose mask ranges
    over a reduced index (the gates' denominator GD[t]: every token has one)."""
    writer = writer_of(op, tensor)
    if writer is None or writer.mask is None or not writer.mask.data_dependent:
        return 1.0
    if not _mask_indices(op.binding.cascade, writer) <= set(ref_vars(writer.output)):
        return 1.0
    return einsum_density(op, writer)


def _mask_indices(cascade: Cascade, einsum: Einsum) -> set[str]:
    """The leaf index variables `einsum`'s mask predicate reads, directly or through the tensors it reads."""
    nodes = list(walk(einsum.mask.predicate))
    return ({var for node in nodes if isinstance(node, Ref) for var in ref_vars(node)}
            | {leaf for node in nodes if isinstance(node, Var) for leaf in cascade.var_leaves[node.name]})


def _kv(op: Op) -> float:
    roles = op.tensor_roles
    return float(sum(size for name, size in op.tensor_bytes.items() if roles[name] == KV_CACHE))


def _inputs(op: Op) -> set[str]:
    return {t.name for t in op.tensors if t.kind == "input"}


def _one_word_size(workload: Workload) -> Workload:
    """The workload with its FFN at `word_bytes` too: training counts every element at `param_bytes` and
    `activation_bytes`, by its cascade bytes over `word_bytes`, so a serving quantisation (`ffn_word_bytes`) has
    no part in it."""
    if "ffn_word_bytes" not in workload.params:
        return workload
    return replace(workload, params={k: v for k, v in workload.params.items() if k != "ffn_word_bytes"})


def _embedding_elements(workload: Workload) -> float:
    """Input embedding and LM head, vocab x hidden elements each (untied, as LLaMA)."""
    return 2 * workload.params["vocab"] * workload.params["hidden"]


def _cut(workload: Workload, degree: int) -> Workload:
    """The workload with heads, kv_heads and ffn_dim cut `degree` ways (`system_model`'s TP shard)."""
    return shard(workload, Parallelism(tp=degree, pp=1))


def _ops(workload: Workload, degree: int, tokens: int, batch: int) -> tuple[Op, ...]:
    """The prefill layer (`layer_ops`) of `batch` sequences of `tokens` tokens, heads and FFN cut `degree` ways."""
    return _cached_ops(_key(_cut(workload, degree)), tokens, batch)


def _linear_attention(workload: Workload, degree: int, tokens: int, batch: int) -> Analysis:
    """The `linear-attention` cascade over `tokens` tokens of `batch` sequences, heads cut `degree` ways."""
    return _cached_linear(_key(_cut(workload, degree)), tokens, batch)


def _key(workload: Workload) -> tuple:
    return workload.name, workload.path, tuple(sorted(workload.params.items())), workload.block


def _unkey(key: tuple) -> Workload:
    name, path, params, block = key
    return Workload(name, "", "", dict(params), path, block)


@functools.lru_cache(maxsize=4096)
def _cached_ops(key: tuple, tokens: int, batch: int) -> tuple[Op, ...]:
    """The layer's ops; a model mixing MoE and dense layers (`moe_every` > 1) adds its other kind's FFN op (`ffn`
    beside `moe`), so the working set's peak is that of its largest kind of layer."""
    workload, step = _unkey(key), Step("prefill", batch, tokens)
    ops: dict[str, Op] = {}
    for kind in dict.fromkeys(layer_kinds(workload)):
        for op in layer_ops(workload, step, workload.block, kind):
            ops.setdefault(op.name, op)
    return tuple(ops.values())


@functools.lru_cache(maxsize=1024)
def _cached_linear(key: tuple, tokens: int, batch: int) -> Analysis:
    cascade = library.load_cascade_spec("linear-attention")
    return analyze(bind(cascade, _unkey(key), {"batch": batch, "seq_len": tokens}, SOURCE))
