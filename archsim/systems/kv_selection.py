"""KV-cache selection in decode (DuoAttention, Quest) on the GPU model, and what selection does to the KV bytes a
PIM device reads and to the batch an offloading memory pool holds (issue 19; ../shared/reference/seqpar-sparse.md
§3.3, §3.5).

One request, one generated token, end to end (`SelectionDecode`): every decoder layer's ops but attention
(`archsim.systems.step.layer_ops` of a one-token decode step: norms, QKV, output projection, FFN, residuals, each
weight read once; a model mixing dense and MoE layers each kind's times its count, `step.layers_time_s`)
costed by the GPU device (`archsim.systems.gpu_device.GpuDevice`, cuBLAS GEMM launches and
elementwise passes at the packaged calibration), the LM head (the `output-projection` cascade bound as hidden ->
vocab: a GEMV over the vocab x hidden table), and per layer the attention the method runs:
- **DuoAttention** (§3.3): a (layer, KV head) is a retrieval head (full KV cache) or a streaming head (`sinks` +
  `recent` tokens: 128 + 256 in the shipped configs and the efficiency benchmark). Per layer two calls of the
  GPU model's decode kernel (`DECODE_KERNEL`, "Flash-Decoding (16-row tiles)", the model's stand-in for
  FlashInfer's small-tile decode): the layer's retrieval KV heads (and their query heads) at the context, its
  streaming heads at min(context, sinks + recent); where that window holds the whole context every head attends the
  same tokens, and the layer is one call over all heads, as dense. Heads come from `retrieval_fraction` r:
  round(r x layers x kv_heads) retrieval heads (`retrieval_heads`; an r in (0, 1) that rounds to none or all of them
  is refused, as it would run as 0 or 1) spread as evenly as possible over the layers (DuoAttention keeps the top
  quantile of its gates model-wide, so real layers differ). Dense baseline: every head at the context, one call per
  layer.
- **Quest** (§3.5): the first 2 layers dense (`QUEST_DENSE_LAYERS`, or every layer of a model with fewer); every
  other layer scores its pages (16 tokens each;
  the page's channel-wise key minima and maxima KMIN, KMAX read and the bounds UB written, in one memory-bound
  pass at the device's elementwise rate), selects the top K (one elementwise launch over UB: RAFT's top-k, 5-10 us
  below 128K in the paper, is a small op), and runs the decode kernel at the budget B = K x 16 tokens (the paper:
  "approximate attention at budget B costs ~ FlashInfer at sequence length B"; the gather of scattered pages is
  taken as free, paged kernels read by page index). The scoring stays an eager-rate pass, unlike TokenSelect's:
  the reference does not say how Quest's bounds kernel is written, so it is not taken to be a fused kernel
  streaming at the DRAM bound. Bytes are the `quest-decode` cascade's tensors (bound with the
  workload's KV heads as its heads; a context that is not whole pages ends in a partly filled page with its own
  metadata, J = ceil(context / 16), `_quest_bytes`). The metadata's update for the new token is not counted (one
  page's min and max).
  `attention_s` is one sparse layer's self-attention (scoring + top-K + attention at B; a model with no sparse
  layer reports its dense layer's), `dense_attention_s` one layer's decode kernel at the context.
- **RazorAttention** (§3.4, `razor_decode`): DuoAttention's layer with the other heads keeping max(4000, N/5)
  recent tokens and one compensation token (DuoAttention's window with the compensation token as its one sink,
  its memory so counted by `duoattention-decode`).
- **TokenSelect** (§3.5, `tokenselect_decode`): per-head scores over the whole cache and the heads' soft vote as
  memory-bound passes (bytes from `tokenselect-decode`), then attention over top-k + sinks + local tokens; the
  cache is kept whole. The score pass (Q and all of K read, the per-head scores written) is TokenSelect's "paged
  dot-product Triton kernel", a streaming Triton kernel (`GpuDevice.triton_stream_s`: the Triton kernels' DRAM
  bound and the archsim family's launch); the softmax-and-vote and the top-k stay eager passes (the reference does
  not say they are fused). A cache the default selection covers entirely is attended whole, with no scoring.
Memory (`memory_bytes`): the weights (the layers' cascades' weight tensors, plus the input embedding and the LM
head, vocab x hidden each, one table where the workload ties them (`params.vocab_tables: 1`, Llama 3.2 1B), two as
in Llama 2 and 3; the final norm's `hidden` words are left out) and the KV
cache kept: DuoAttention's retrieval heads at the context and streaming heads' windows, the `duoattention-decode`
cascade's count (its K and V bytes times the kept fraction of its mask, bound per layer, `duo_kv_bytes`); Quest
keeps the whole cache plus KMIN and KMAX of every page of its sparse layers (a dense layer scores no page). The
whole cache (`dense_kv_bytes`: dense's, Quest's, TokenSelect's) is the QKV projection's K and V outputs per token
(`SystemModel.kv_bytes_per_token`). Quest's loaded fraction (`quest_loaded_fraction`): the bytes a sparse layer
reads (`quest-decode`'s KMIN, KMAX and the gathered KS, VS) over those of its K and V, = 1/16 + K/pages for a
context of whole pages; 1 for a model with no sparse layer (every layer dense loads all its K and V).
A decode call the GPU's DRAM cannot hold at a context (one layer's K and V beyond it) has no time: NaN
(`attention_time_s`), and `fits` / `dense_fits` are false, so a sweep keeps the point as a row; a call no context
could run (a CTA that does not fit an SM) is refused, naming the GPU and the head_dim.

The methods cut dense multi-head or grouped-query attention in 16-bit words: a workload with MLA's latent KV or a
sliding window is refused (`check_dense_attention`), as its times would be a dense attention's, and so is one whose
`word_bytes` is not 2: the kernels timed here (the decode kernels, FlashAttention-2, MInference's and FlexPrefill's
Triton kernels) have fp16/bf16 paths only, and timing their attention at 16 bits beside the workload's fp8 or fp32
GEMMs and memory would mix precisions. A head_dim beyond FlashAttention-2's (`gpu_flash_plans.FA2_HEAD_DIMS`: up to
256, a smaller one padded), the kernel of every method's dense baseline (FlashAttention-2 for a prefill, its
Flash-Decoding for decode), is refused as the workload's: no GPU runs it.

Hardware effect elsewhere (PIM and offloading, reached by `archsim sparse --system` through
`sparse_points.system_points`; block-sparse attention on a spatial array is `archsim.systems.sparse_on_array`'s):
- PIM (`pim_attention_s`): a bank-PIM (NeuPIMs) or Logic-PIM (Duplex) decode attention costs by the rows it
  streams, so selection enters as the context the device's `attention-decode-gqa` op is bound to: the
  bytes-equivalent context: the bytes selection reads (`duo_kv_bytes`, `quest_read_bytes`) over one token's K and
  V (`effective_context`). Assumption: selected pages sit whole in DRAM rows (a 16-token page of one KV head is
  4 KB of K and 4 KB of V at d = 128, fp16: whole 1-2 KB rows),
  so reading K pages costs as reading K x 16 contiguous tokens; Quest's score pass over min/max rows is counted
  as that many more tokens' bytes.
- Offloading (`pool_batch`, `quest_pool_batch`): the requests of one context a Lamina memory pool holds
  (`OffloadModel`'s `kv_capacity_bytes` over the KV bytes one request keeps), with DuoAttention's streaming heads
  vs dense, and with Quest, which keeps the whole cache plus its page metadata (`quest_kv_bytes`, its memory on the
  GPU too), so holds no more than dense. `sparse_points.system_points` also times them: one layer's decode
  attention of the requests the pool holds (`OffloadModel.attention_cost`), dense's each at the context, the
  method's each at its effective context (Quest's `quest_mean_effective_context`; DuoAttention's at the busiest
  memory device, `duo_device_effective_context`), compared per request (the sides hold different counts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from archsim import library
from archsim.arch.gpu import GPU
from archsim.cascade.analysis import einsum_points, tensor_infos
from archsim.cascade.bind import bind
from archsim.errors import SpecError
from archsim.model.gpu import (
    WORD_PRECISIONS,
    AttentionCase,
    refuse_other_word_bytes,
    refuse_unmodelled_attention,
)
from archsim.model.gpu_flash_plans import FA2_HEAD_DIMS
from archsim.model.gpu_kernels import predict
from archsim.systems.device import DeviceModel
from archsim.systems.gpu_device import GpuDevice, calibrated_gpu_device, refuse_workload_words
from archsim.systems.step import Op, Step, layers_time_s, lm_head_op
from archsim.systems.system_model import ATTENTION, sizes_model
from archsim.workload import Workload

SOURCE = "<kv-selection>"
DECODE_KERNEL = "Flash-Decoding (16-row tiles)"  # the GPU model's FlashInfer-like decode (gpu_flash_plans docstring)
DUO_SINKS, DUO_RECENT = 128, 256  # DuoAttention's shipped configs and efficiency benchmark (§3.3)
QUEST_PAGE_TOKENS = 16  # Quest's page size (§3.5)
RAZOR_MIN_WINDOW, RAZOR_WINDOW_FRACTION = 4000, 0.2  # RazorAttention's window max(4000, N/5) (§3.4)
TOKENSELECT_TOP_K, TOKENSELECT_SINKS, TOKENSELECT_LOCAL = 2048, 128, 512  # TokenSelect's configs (§3.5)
TOKENSELECT_CASCADE = "tokenselect-decode"
QUEST_DENSE_LAYERS = 2  # Quest keeps its first two layers dense (§3.5)
KERNEL_WORD_BYTES = 2  # the sparse methods' kernels and their dense baselines run fp16/bf16 (module docstring)
PIM_ATTENTION = "attention-decode-gqa"
QUEST_CASCADE = "quest-decode"
DUO_CASCADE = "duoattention-decode"


@dataclass(frozen=True)
class SelectionDecode:
    """One generated token of one request: end-to-end time under selection and dense, one layer's self-attention
    under selection and dense (NaN where a call does not fit the GPU's DRAM, `attention_time_s`), and the memory
    the model and its KV cache take (module docstring). `fits` / `dense_fits`: the memory within the GPU's and the
    time known."""

    method: str
    context: int
    time_s: float
    dense_time_s: float
    attention_s: float
    dense_attention_s: float
    memory_bytes: float
    dense_memory_bytes: float
    capacity_bytes: float  # the GPU's DRAM

    @property
    def fits(self) -> bool:
        return self.memory_bytes <= self.capacity_bytes and not math.isnan(self.time_s)

    @property
    def dense_fits(self) -> bool:
        return self.dense_memory_bytes <= self.capacity_bytes and not math.isnan(self.dense_time_s)


def gpu_device(gpu: GPU) -> GpuDevice:
    """`gpu` as a device with the packaged calibration, decode attention by `DECODE_KERNEL`
    (`calibrated_gpu_device`)."""
    return calibrated_gpu_device(gpu, DECODE_KERNEL)


# ------------------------------------------------------------------------------------------------ sizes and bytes
def kv_bytes_per_token_head(workload: Workload) -> float:
    """K and V bytes of one token of one KV head over all layers (`SystemModel.kv_bytes_per_token` / kv_heads)."""
    return sizes_model(workload).kv_bytes_per_token / _size(workload, "kv_heads")


def dense_kv_bytes(workload: Workload, context: int) -> float:
    """The whole KV cache of one request at `context` tokens: every layer's K and V of every KV head."""
    return kv_bytes_per_token_head(workload) * int(_size(workload, "kv_heads")) * context


def weight_bytes(workload: Workload) -> float:
    """The model's weights on one GPU: its layers' cascades' weight tensors plus the embedding table and the LM
    head (`SystemModel.weight_bytes_per_device` at tp 1, pp 1)."""
    return sizes_model(workload).weight_bytes_per_device


def retrieval_heads_per_layer(workload: Workload, retrieval_fraction: float) -> tuple[int, ...]:
    """Retrieval KV heads of each layer: `retrieval_heads` of the fraction spread evenly over the layers (the first
    layers take the remainder)."""
    layers = int(_size(workload, "layers"))
    total = retrieval_heads(workload, retrieval_fraction)
    return tuple(total // layers + (i < total % layers) for i in range(layers))


def retrieval_heads(workload: Workload, retrieval_fraction: float) -> int:
    """The KV heads, over every layer, that a retrieval fraction r keeps whole: round(r x layers x kv_heads), heads
    being whole. An r in (0, 1) that rounds to none or to all of them is refused: the run would be r = 0's (no
    head kept whole) or r = 1's (dense) while the output named r."""
    check_retrieval_fraction(retrieval_fraction)
    layers, kv_heads = int(_size(workload, "layers")), int(_size(workload, "kv_heads"))
    heads = layers * kv_heads
    total = round(retrieval_fraction * heads)
    if 0 < retrieval_fraction < 1 and total in (0, heads):
        runs, other = (("0 (no head kept whole)", f"at least 1/{heads} = {1 / heads:.4g} for one head") if total == 0
                       else ("1 (every head, dense)", f"at most {heads - 1}/{heads} = {(heads - 1) / heads:.4g} to "
                                                      "leave one head out"))
        raise SpecError(SOURCE, "retrieval_fraction",
                        f"{retrieval_fraction:g} of {workload.name}'s {heads} KV heads ({layers} layers x {kv_heads}) "
                        f"rounds to {total} of them kept whole, which runs as a fraction of {runs}; give "
                        f"{runs[0]} for that, or {other}")
    return total


def check_retrieval_fraction(retrieval_fraction: object) -> None:
    """Refuse a retrieval fraction outside [0, 1] (a share of KV heads), whatever the model."""
    if isinstance(retrieval_fraction, bool) or not isinstance(retrieval_fraction, int | float) \
            or not 0 <= retrieval_fraction <= 1:
        raise SpecError(SOURCE, "retrieval_fraction", f"expected a fraction of KV heads in [0, 1], got "
                                                      f"{retrieval_fraction!r}")


def check_reuse_fraction(reuse_fraction: object) -> None:
    """Refuse a TokenSelect reuse fraction outside [0, 1) (a share of steps; at 1 no step would ever score)."""
    if isinstance(reuse_fraction, bool) or not isinstance(reuse_fraction, int | float) or not 0 <= reuse_fraction < 1:
        raise SpecError(SOURCE, "reuse_fraction", f"expected a fraction in [0, 1), got {reuse_fraction!r}")


def duo_kv_bytes(workload: Workload, context: int, retrieval: Sequence[int], sinks: int = DUO_SINKS,
                 recent: int = DUO_RECENT) -> float:
    """KV cache one request keeps (and one decode step reads) under DuoAttention, `retrieval` heads per layer: the
    sum over the layers of `_duo_layer_bytes` (each layer's retrieval heads at `context` tokens, its streaming heads
    at min(context, sinks + recent), as the `duoattention-decode` cascade counts them)."""
    layer_bytes = {n: _duo_layer_bytes(workload, context, n, sinks, recent) for n in set(retrieval)}
    return float(sum(layer_bytes[n] for n in retrieval))


def quest_read_bytes(workload: Workload, context: int, budget: int, page_tokens: int = QUEST_PAGE_TOKENS
                     ) -> tuple[float, float]:
    """(bytes a Quest layer reads per decode step, bytes dense attention reads), one request: the `quest-decode`
    cascade's page minima and maxima (KMIN, KMAX) and the budget's gathered keys and values (KS, VS), against its
    whole K and V."""
    sizes = _quest_bytes(workload, context, budget, page_tokens)
    return sizes["KMIN"] + sizes["KMAX"] + sizes["KS"] + sizes["VS"], sizes["K"] + sizes["V"]


def quest_loaded_fraction(workload: Workload, context: int, budget: int, page_tokens: int = QUEST_PAGE_TOKENS
                          ) -> float:
    """Fraction of the dense KV bytes a selecting Quest layer loads per decode step (§3.5: 1/PageSize + K/PageNum
    for whole pages); 1 for a model none of whose layers selects (`quest_dense_layers`: every layer dense, so every
    KV byte is loaded)."""
    read, dense = quest_read_bytes(workload, context, budget, page_tokens)
    selecting = quest_dense_layers(workload) < int(_size(workload, "layers"))
    return read / dense if selecting else 1.0


def quest_kv_bytes(workload: Workload, context: int, budget: int, page_tokens: int = QUEST_PAGE_TOKENS) -> float:
    """KV cache one request keeps under Quest: the whole K and V, plus KMIN and KMAX of every page of its selecting
    layers (a dense layer, `quest_dense_layers`, scores no page)."""
    sizes = _quest_bytes(workload, context, budget, page_tokens)
    selecting = int(_size(workload, "layers")) - quest_dense_layers(workload)
    return dense_kv_bytes(workload, context) + selecting * (sizes["KMIN"] + sizes["KMAX"])


def quest_dense_layers(workload: Workload) -> int:
    """Quest's dense layers: its first 2 (`QUEST_DENSE_LAYERS`), or every layer of a model with fewer."""
    return min(QUEST_DENSE_LAYERS, int(_size(workload, "layers")))


# ------------------------------------------------------------------------------------------------ GPU decode
def duo_decode(workload: Workload, gpu: GPU, context: int, retrieval_fraction: float, *, sinks: int = DUO_SINKS,
               recent: int = DUO_RECENT) -> SelectionDecode:
    """DuoAttention decode of one request at `context` tokens on `gpu` (module docstring)."""
    check_dense_attention(workload, gpu)
    _check_positive("context", context)
    _check_window(sinks, recent)
    retrieval = retrieval_heads_per_layer(workload, retrieval_fraction)
    device = gpu_device(gpu)
    kv_heads, window = int(_size(workload, "kv_heads")), min(context, sinks + recent)
    dense_layer_s = _attention_s(device, workload, kv_heads, context)
    # a window that holds the whole context: every head attends it all, one call as dense (module docstring)
    layer_s = {n: dense_layer_s if window == context else
               _attention_s(device, workload, n, context) + _attention_s(device, workload, kv_heads - n, window)
               for n in set(retrieval)}
    rest = _dense_ops_s(device, workload)
    weights = weight_bytes(workload)
    mean_layer_s = sum(layer_s[n] for n in retrieval) / len(retrieval)
    return SelectionDecode("DuoAttention", context, rest + sum(layer_s[n] for n in retrieval),
                           rest + len(retrieval) * dense_layer_s, mean_layer_s, dense_layer_s,
                           weights + duo_kv_bytes(workload, context, retrieval, sinks, recent),
                           weights + dense_kv_bytes(workload, context), float(gpu.dram_bytes))


def quest_decode(workload: Workload, gpu: GPU, context: int, budget: int, *,
                 page_tokens: int = QUEST_PAGE_TOKENS) -> SelectionDecode:
    """Quest decode of one request at `context` tokens with a token budget `budget` (K pages) on `gpu` (module
    docstring). Its dense layers are `quest_dense_layers`; with no sparse layer the attention and the memory are
    dense."""
    check_dense_attention(workload, gpu)
    _check_budget(context, budget, page_tokens)
    layers = int(_size(workload, "layers"))
    dense_layers = quest_dense_layers(workload)
    device = gpu_device(gpu)
    kv_heads = int(_size(workload, "kv_heads"))
    dense_layer_s = _attention_s(device, workload, kv_heads, context)
    sparse_layer_s = quest_estimate_s(device, workload, context, budget, page_tokens) \
        + _attention_s(device, workload, kv_heads, budget)
    rest = _dense_ops_s(device, workload)
    weights = weight_bytes(workload)
    kept = quest_kv_bytes(workload, context, budget, page_tokens)
    sparse_layers = layers - dense_layers
    return SelectionDecode("Quest", context,
                           rest + dense_layers * dense_layer_s + sparse_layers * sparse_layer_s,
                           rest + layers * dense_layer_s, sparse_layer_s if sparse_layers else dense_layer_s,
                           dense_layer_s, weights + kept, weights + dense_kv_bytes(workload, context),
                           float(gpu.dram_bytes))


def quest_estimate_s(device: GpuDevice, workload: Workload, context: int, budget: int,
                     page_tokens: int = QUEST_PAGE_TOKENS) -> float:
    """One layer's page scoring (KMIN and KMAX read, the bounds UB written) and top-K selection (UB read), each
    one elementwise launch on `device`, bytes from the `quest-decode` cascade."""
    sizes = _quest_bytes(workload, context, budget, page_tokens)
    return device.elementwise_s(sizes["KMIN"] + sizes["KMAX"] + sizes["UB"]) + device.elementwise_s(sizes["UB"])


def razor_decode(workload: Workload, gpu: GPU, context: int, retrieval_fraction: float) -> SelectionDecode:
    """RazorAttention decode (§3.4): DuoAttention's layer (two calls, one where the window holds the context) with the
    non-retrieval heads keeping max(4000, context / 5) recent tokens (`RAZOR_MIN_WINDOW`, `RAZOR_WINDOW_FRACTION`)
    plus one compensation token (the dropped tokens' mean K and V), in place of sinks + recent. The retrieval
    fraction is the model's (about 16 % of heads: 15 % induction + 1 % echo heads in the paper), required."""
    if retrieval_fraction is None:
        raise SpecError(SOURCE, "retrieval_fraction", "missing: the share of heads RazorAttention keeps whole")
    window = max(RAZOR_MIN_WINDOW, math.ceil(RAZOR_WINDOW_FRACTION * context))
    result = duo_decode(workload, gpu, context, retrieval_fraction, sinks=1, recent=window)
    return replace(result, method="RazorAttention")


def tokenselect_decode(workload: Workload, gpu: GPU, context: int, *, top_k: int | None = None,
                       sinks: int = TOKENSELECT_SINKS, local: int = TOKENSELECT_LOCAL, reuse_fraction: float = 0.0
                       ) -> SelectionDecode:
    """TokenSelect decode (§3.5), every layer; `reuse_fraction` of the steps reuse the previous selection (the
    Selection Cache hits when the query's cosine similarity is >= 0.9: how often is the data's; 0, the default,
    scores every step anew) and skip the estimation. The estimation is the
    `tokenselect-decode` cascade as memory-bound passes on the device (q.K scores over every cached key: all of K
    read, the per-head scores written, one streaming Triton kernel, `GpuDevice.triton_stream_s`; the softmax and
    the heads' vote: the scores read and the vote written; the top-k over the vote: both eager passes,
    `GpuDevice.elementwise_s`), then the decode kernel over top_k + sinks + local tokens. The whole cache stays
    (TokenSelect evicts nothing): memory as dense.
    `top_k` None is TokenSelect's 2048, at most the context (`tokenselect_top_k`); where the selection with the
    sinks and local tokens covers the whole cache, every token is attended and nothing is scored: the layer is
    exactly dense (a top-k over a cache it keeps whole decides nothing, so the scoring is skipped, as DuoAttention's
    and RazorAttention's windows clamp to the context), so a sweep from short contexts runs; the same for a `top_k`
    given. A `top_k` given beyond the context is refused: it asks for more tokens than the cache holds."""
    check_dense_attention(workload, gpu)
    _check_positive("context", context)
    for field, value in (("top_k", TOKENSELECT_TOP_K if top_k is None else top_k), ("sinks", sinks),
                         ("local", local)):
        _check_positive(field, value)
    check_reuse_fraction(reuse_fraction)
    if top_k is not None and top_k > context:
        raise SpecError(SOURCE, "top_k", f"expected a top-k at most the context ({context}), got {top_k}")
    top_k = tokenselect_top_k(context, top_k)
    kept = top_k + sinks + local
    device = gpu_device(gpu)
    kv_heads, layers = int(_size(workload, "kv_heads")), int(_size(workload, "layers"))
    dense_layer_s = _attention_s(device, workload, kv_heads, context)
    rest = _dense_ops_s(device, workload)
    memory = weight_bytes(workload) + dense_kv_bytes(workload, context)
    if kept >= context:  # every token selected: dense, nothing scored (docstring)
        return SelectionDecode("TokenSelect", context, rest + layers * dense_layer_s, rest + layers * dense_layer_s,
                               dense_layer_s, dense_layer_s, memory, memory, float(gpu.dram_bytes))
    cascade = library.load_cascade_spec(TOKENSELECT_CASCADE)
    binding = bind(cascade, workload, {"batch": 1, "seq_len": context, "k": top_k, "sinks": sinks, "local": local},
                   SOURCE)
    sizes = {t.name: float(t.bytes) for t in tensor_infos(binding)}
    estimate = (device.triton_stream_s(sizes["Q"] + sizes["K"] + sizes["QK"])
                + device.elementwise_s(sizes["QK"] + sizes["VOTE"]) + device.elementwise_s(sizes["VOTE"]))
    layer_s = (1 - reuse_fraction) * estimate + _attention_s(device, workload, kv_heads, kept)
    return SelectionDecode("TokenSelect", context, rest + layers * layer_s, rest + layers * dense_layer_s, layer_s,
                           dense_layer_s, memory, memory, float(gpu.dram_bytes))


def tokenselect_top_k(context: int, top_k: int | None = None) -> int:
    """The tokens TokenSelect's top-k selects from a `context`-token cache, a point's `budget`: `top_k` as given (one
    beyond the context `tokenselect_decode` refuses), or its default `TOKENSELECT_TOP_K` at most the context (a
    shorter cache is selected whole, as Quest's budget is at most the context)."""
    return top_k if top_k is not None else min(TOKENSELECT_TOP_K, context)


# ------------------------------------------------------------------------------------------------ PIM, offloading
def effective_context(workload: Workload, kv_bytes: float) -> int:
    """The context whose dense K and V take `kv_bytes` (rounded up to a whole token)."""
    per_token = kv_bytes_per_token_head(workload) * _size(workload, "kv_heads") / _size(workload, "layers")
    return max(1, math.ceil(kv_bytes / per_token - 1e-9))


def quest_mean_effective_context(workload: Workload, context: int, budget: int,
                                 page_tokens: int = QUEST_PAGE_TOKENS) -> int:
    """Tokens' worth of KV one Quest layer reads, averaged over the layers: its dense layers
    (`quest_dense_layers`) read the whole context, the others the page metadata and the budget
    (`quest_read_bytes`), as `duo_device_effective_context` averages DuoAttention's layers."""
    layers, dense = int(_size(workload, "layers")), quest_dense_layers(workload)
    selected, whole = quest_read_bytes(workload, context, budget, page_tokens)
    return effective_context(workload, (dense * whole + (layers - dense) * selected) / layers)


def duo_device_effective_context(workload: Workload, device_kv_heads: int, context: int, retrieval_fraction: float,
                                 sinks: int = DUO_SINKS, recent: int = DUO_RECENT) -> int:
    """Tokens' worth of KV per KV head that the busiest of the devices cutting the KV heads reads in one
    DuoAttention layer, averaged over the layers: each device holds `device_kv_heads` (h) of them (a shard's, e.g.
    kv_heads / tp; one, replicated, when the devices outnumber the KV heads), so g = kv_heads / h devices hold
    different heads, and a layer waits for its slowest. Assumed: each layer's R retrieval KV heads
    (`retrieval_heads_per_layer`) are placed as evenly as they can be, the busiest device holding ceil(R / g) of
    its h heads as retrieval heads; a real head map may place them worse. That device reads, per head,
    (ceil(R / g) x context + (h - ceil(R / g)) x window) / h tokens, the mean of a whole layer with g x ceil(R / g)
    retrieval heads. With one device (g = 1) this is the tokens' worth of KV one layer reads, averaged over the
    layers."""
    _check_window(sinks, recent)
    kv_heads = int(_size(workload, "kv_heads"))
    if isinstance(device_kv_heads, bool) or not isinstance(device_kv_heads, int | np.integer) \
            or not 1 <= device_kv_heads <= kv_heads or kv_heads % device_kv_heads:
        raise SpecError(SOURCE, "device_kv_heads", f"expected a divisor of {workload.name}'s {kv_heads} KV heads, "
                                                   f"got {device_kv_heads!r}")
    groups = kv_heads // int(device_kv_heads)
    busiest = tuple(groups * -(-n // groups) for n in retrieval_heads_per_layer(workload, retrieval_fraction))
    return effective_context(workload, duo_kv_bytes(workload, context, busiest, sinks, recent) / len(busiest))


def pim_attention_s(device: DeviceModel, workload: Workload, contexts: Sequence[int]) -> float:
    """Decode attention of a batch whose requests read `contexts` tokens' worth of KV each (one
    `attention-decode-gqa` op per request, bound to it) on a bank-PIM or Logic-PIM `device`, one layer; a batch
    of at least one request, each context a positive whole number (`effective_context` rounds up). A Logic-PIM's
    cost is the sum of its ops' (`LogicPimDevice.cost`: one after another), so each distinct context is costed once
    and counted as many times as requests read it; a bank-PIM packs requests on channels (not linear in them), so
    each request is an op."""
    from archsim.systems.logic_pim_device import LogicPimDevice

    if not contexts:
        raise SpecError(SOURCE, "contexts", "expected at least one request's context, got none")
    for context in contexts:
        _check_positive("contexts", context)
    cascade = library.load_cascade_spec(PIM_ATTENTION)

    def op(context: int) -> Op:
        return Op(ATTENTION, PIM_ATTENTION, bind(cascade, workload, {"batch": 1, "seq_len": int(context)}, SOURCE), ())

    if isinstance(device, LogicPimDevice):
        counts: dict[int, int] = {}
        for context in contexts:
            counts[int(context)] = counts.get(int(context), 0) + 1
        return sum(n * device.cost([op(context)]).time_s for context, n in counts.items())
    return device.cost([op(c) for c in contexts]).time_s


def pool_batch(pool_capacity_bytes: float, workload: Workload, context: int, retrieval_fraction: float,
               sinks: int = DUO_SINKS, recent: int = DUO_RECENT) -> tuple[int, int]:
    """(requests at `context` tokens a memory pool of `pool_capacity_bytes` holds with DuoAttention's streaming
    heads, the same dense): the capacity over one request's KV bytes, floored."""
    _check_capacity(pool_capacity_bytes)
    _check_positive("context", context)
    _check_window(sinks, recent)
    retrieval = retrieval_heads_per_layer(workload, retrieval_fraction)
    dense = dense_kv_bytes(workload, context)
    return (math.floor(pool_capacity_bytes / duo_kv_bytes(workload, context, retrieval, sinks, recent)),
            math.floor(pool_capacity_bytes / dense))


def quest_pool_batch(pool_capacity_bytes: float, workload: Workload, context: int, budget: int,
                     page_tokens: int = QUEST_PAGE_TOKENS) -> tuple[int, int]:
    """(requests at `context` tokens a memory pool of `pool_capacity_bytes` holds with Quest at `budget`, the same
    dense): Quest reads fewer bytes but keeps more (`quest_kv_bytes`: the whole cache and its page metadata), so it
    holds no more requests than dense."""
    _check_capacity(pool_capacity_bytes)
    return (math.floor(pool_capacity_bytes / quest_kv_bytes(workload, context, budget, page_tokens)),
            math.floor(pool_capacity_bytes / dense_kv_bytes(workload, context)))


# ------------------------------------------------------------------------------------------------ helpers
def attention_time_s(kernel: str, case: AttentionCase, gpu: GPU, params: Mapping[str, float], source: str,
                     call: str) -> float:
    """One call of `kernel` on `gpu` (`gpu_kernels.predict`); NaN when only the GPU's DRAM is short of what the call
    holds (its Q, K, V and O at this length: the point is a row with no time, not a refusal). A call that no length
    could run on `gpu` (a CTA that does not fit an SM) is a SpecError on `source`'s `kernel` (the GPU, to the CLI)
    saying it cannot `call` (e.g. "decode 4096 keys") at the case's head_dim, and why."""
    result = predict(kernel, case, gpu, params)
    if result.feasible:
        return result.time_s
    if predict(kernel, case, gpu, params, check_memory=False).feasible:
        return math.nan
    raise SpecError(source, "kernel", f"{kernel} cannot {call} on {gpu.name} at head_dim {case.head_dim}: "
                                      f"{result.reason}")


def _attention_s(device: GpuDevice, workload: Workload, kv_heads: int, keys: int) -> float:
    """One call of the device's decode kernel over `kv_heads` KV heads (and their query heads) at `keys` keys;
    0 for no heads, NaN where the GPU's DRAM cannot hold the call (`attention_time_s`)."""
    if kv_heads == 0:
        return 0.0
    heads = int(kv_heads * _size(workload, "heads") // _size(workload, "kv_heads"))
    precision = WORD_PRECISIONS[KERNEL_WORD_BYTES]  # the only width `check_dense_attention` lets through
    case = AttentionCase("decode", 1, heads, kv_heads, int(_size(workload, "head_dim")), keys, False, precision)
    return attention_time_s(device.kernel, case, device.spec, device.kernel_params, SOURCE, f"decode {keys} keys")


def _dense_ops_s(device: GpuDevice, workload: Workload) -> float:
    """Every layer's ops but attention, each kind of layer's times its count (`step.layers_time_s`), and the LM head,
    for one token of one request."""
    layers_s = layers_time_s(workload, Step("decode", 1, 1), lambda ops: device.cost(ops).time_s)
    return layers_s + device.cost([lm_head_op(workload, 1)]).time_s


def _quest_bytes(workload: Workload, context: int, budget: int, page_tokens: int) -> dict[str, float]:
    """Bytes of each tensor of `quest-decode` bound to one request at `context` tokens and `budget` tokens of
    pages, one layer. The cascade is multi-head: it is bound with the workload's KV heads as its heads (Quest's
    pages and their metadata are per KV head; under GQA the scores UB are then per KV head, not per query head).
    A context that is not a whole number of pages ends in a partly filled page, which has its KMIN and KMAX as
    any other: the cascade is bound to ceil(context / page) whole pages, and K and V (linear in the length) are
    taken back to `context` tokens."""
    _check_budget(context, budget, page_tokens)
    cascade = library.load_cascade_spec(QUEST_CASCADE)
    padded = -(-context // page_tokens) * page_tokens
    binding = bind(cascade, workload, {"batch": 1, "heads": _size(workload, "kv_heads"), "seq_len": padded,
                                       "page": page_tokens, "budget_pages": budget // page_tokens}, SOURCE)
    sizes = {t.name: float(t.bytes) for t in tensor_infos(binding)}
    return sizes | {name: sizes[name] * context / padded for name in ("K", "V")}


def _duo_layer_bytes(workload: Workload, context: int, retrieval: int, sinks: int, recent: int) -> float:
    """K and V bytes one DuoAttention layer with `retrieval` retrieval KV heads keeps for one request at `context`
    tokens: `duoattention-decode` bound to it (its retrieval_fraction the layer's share of KV heads), its K and V
    bytes times the fraction of QK's points its `duo` mask keeps, the cascade's count (the mask's density, at most 1:
    a window holding the whole context keeps every token). The mask reads only the KV head and the token, so the
    fraction is the share of (KV head, token) pairs kept, in whole tokens."""
    cascade = library.load_cascade_spec(DUO_CASCADE)
    binding = bind(cascade, workload, {"batch": 1, "seq_len": context, "sinks": sinks, "recent": recent,
                                       "retrieval_fraction": retrieval / _size(workload, "kv_heads")}, SOURCE)
    scores = cascade.einsum("QK")
    sizes = {t.name: t.bytes for t in tensor_infos(binding)}
    kept_points = einsum_points(binding, scores)
    return (sizes["K"] + sizes["V"]) * kept_points / math.prod(binding.var_size(v) for v in scores.space)


def check_dense_attention(workload: Workload, gpu: GPU | None = None) -> None:
    """Refuse a workload whose attention is not the dense multi-head or grouped-query attention the GPU kernels
    time (`archsim.model.gpu.unmodelled_attention`: MLA's latent KV, a sliding window), naming its size, whose
    `word_bytes` is not the kernels' 16 bits (`KERNEL_WORD_BYTES`), whose `head_dim` is beyond the dense
    baselines' (`FA2_HEAD_DIMS`) on every GPU (module docstring), or, with `gpu`, whose `ffn_word_bytes` its
    tensor cores do not compute (`gpu_device.refuse_workload_words`), naming the workload's file."""
    refuse_unmodelled_attention(workload.params, workload.path, "params.{}".format,
                                "sparse prefill and KV selection here cut dense multi-head or grouped-query "
                                "attention and time it with those GPU kernels, so this workload's times would be "
                                "wrong")
    _size(workload, "word_bytes")  # given: a missing one is refused, not taken as 2
    refuse_other_word_bytes(workload.params, workload.path, KERNEL_WORD_BYTES,
                            "(16-bit words): the sparse methods' kernels and their dense baselines (MInference's and "
                            "FlexPrefill's Triton kernels, FlashAttention-2, the decode kernels) have no "
                            "{word_bytes:g}-byte path")
    head_dim = _size(workload, "head_dim")
    if head_dim > max(FA2_HEAD_DIMS):
        raise SpecError(workload.path, "params.head_dim",
                        f"expected at most {max(FA2_HEAD_DIMS)}: the sparse methods' dense baselines "
                        f"(FlashAttention-2 and its Flash-Decoding kernels) compile head dims up to "
                        f"{max(FA2_HEAD_DIMS)} (multiples of 32, another padded up to the next) "
                        f"on every GPU, got {head_dim:g}")
    if gpu is not None:
        refuse_workload_words(gpu, workload)


def _size(workload: Workload, name: str) -> float:
    if name not in workload.params:
        raise SpecError(workload.path, f"params.{name}", f"missing: KV selection needs the model's {name}")
    return workload.params[name]


def _check_positive(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise SpecError(SOURCE, field, f"expected a positive whole number of tokens, got {value!r}")


def _check_capacity(pool_capacity_bytes: object) -> None:
    if (isinstance(pool_capacity_bytes, bool) or not isinstance(pool_capacity_bytes, int | float)
            or not 0 <= pool_capacity_bytes < math.inf):
        raise SpecError(SOURCE, "pool_capacity_bytes", f"expected a finite number of bytes >= 0, got "
                                                       f"{pool_capacity_bytes!r}")


def _check_window(sinks: int, recent: int) -> None:
    for field, value in (("sinks", sinks), ("recent", recent)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise SpecError(SOURCE, field, f"expected a whole number of tokens >= 0, got {value!r}")
    if sinks + recent < 1:
        raise SpecError(SOURCE, "recent", "expected sinks + recent >= 1: a streaming head attends to some tokens")


def _check_budget(context: int, budget: int, page_tokens: int) -> None:
    _check_positive("context", context)
    _check_positive("page_tokens", page_tokens)
    _check_positive("budget", budget)
    if budget % page_tokens:
        raise SpecError(SOURCE, "budget", f"expected a whole number of {page_tokens}-token pages, got {budget}")
    if budget > context:
        raise SpecError(SOURCE, "budget", f"expected a token budget at most the context ({context}), got {budget}")
