"""End-to-end prefill of one long prompt on one GPU, dense FlashAttention-2, MInference's per-head sparse attention
(Jiang et al., NeurIPS'24; ../shared/reference/seqpar-sparse.md §3.1), as its benchmark runs it (HF transformers,
batch 1, no KV reuse), or FlexPrefill's (Lai et al., ICLR'25; §3.2) the same way.

Per layer, on the GPU device (`archsim.systems.gpu_device.GpuDevice`, the packaged calibration):
- the layer's other ops (norms, QKV and output projections, the SwiGLU FFN, residual adds: `step.layer_ops` at the
  prompt's length; a model mixing dense and MoE layers each kind's times its count, `step.layers_time_s`), as
  eager PyTorch runs them, with a llama block's RMSNorm as HF's eight kernels (fp32 inside,
  36 bytes per element where the library's op is one pass) and HF's RoPE on q and k (five kernels, 20 bytes per
  element; not a library op), each an elementwise kernel of the GPU device: on an H200 one LLaMA-3-8B layer timed
  part by part (`benchmarks/llama_layer_prefill.py`) ran its norms 8x the one pass and RoPE at 9 ms at 128K;
- dense: one FlashAttention-2 causal call over every head (`archsim.model.gpu_kernels`);
- MInference: each head's pattern (`archsim.model.gpu_sparse`: estimation, index build, sparse kernel), heads one
  after another, the model's heads taking the patterns of a per-head pattern map (counts of heads per setting); its
  estimation, and the index build and the pads of Q, K and V within it, apart (`Prefill.estimate_s`,
  `Prefill.index_s`, `Prefill.pad_s`);
- FlexPrefill: a layer's heads in one call at the density the user gives, each query block keeping at least its
  selections' min_budget (`archsim.model.gpu_flexprefill`).
- DuoAttention (Xiao et al., ICLR'25; §3.3, `duo_prefill`): per layer, its retrieval KV heads (with their query
  heads) as one FlashAttention-2 causal call over the prompt, then its streaming heads as one call of the block-sparse
  Triton kernel (`gpu_sparse.fitting_fwd_launch`, the Triton family) over a static A-shape mask of `sinks` + `recent`
  tokens (`gpu_sparse.key_tiles`: both rounded up to whole 64-token blocks, plus the partly masked diagonal block;
  the shipped 128 + 256 visit 2 + 4 + 1 key tiles per query block). The mask is fixed, so none of MInference's
  per-head estimation, pads or index build (`gpu_sparse.head_parts_s` prices those; only its kernel is taken);
  a call's GPU time, or the host time of issuing it when that is longer (`gpu_sparse.call_time_s`). Heads per layer as
  the decode model's (`kv_selection.retrieval_heads_per_layer`); a layer with no heads of a kind skips that call; where
  sinks + recent hold the whole prompt every head attends it all and the layer is dense's one call (as
  `kv_selection.duo_decode`). Assumptions: no chunked prefill (the prompt in one pass, as the other prefills; its
  efficiency benchmark prefills in chunks, from memory of its code, not in the reference); the two calls run one
  after the other; the streaming kernel is the block-sparse kernel with a static mask (its own is a CUDA
  block-streaming kernel, from memory, priced here with the Triton family). Its KV cache on the GPU
  (`duo_peak_kv_bytes`): every layer's kept K and V (`kv_selection.duo_kv_bytes`: retrieval heads whole, streaming
  heads their window), the layer being computed holding its full K and V (every head's, over the prompt) until its
  streaming heads keep their window; where the weights and that exceed the GPU's memory, what it keeps goes to the
  host as dense's does (`duo_kv_on_host`, `duo_kv_host_s`: each layer's kept K and V, once), and the GPU holds the
  weights and one layer's full K and V; the layer's working set beside either, as for dense ("Memory" below).
- when the prompt's KV cache does not fit the GPU beside the weights, which fit alone, and the layer's working set
  (`kv_on_host`, "Memory" below), the KV cache is kept in host
  memory, as the benchmark's `kv_cache_cpu=True` does (repo experiments/README.md; seqpar-sparse.md §3.1): each
  layer's K and V (the cascades' KV-cache bytes, `SystemModel.kv_bytes_per_token`) cross the GPU's host link (the
  preset's `host_link`) once, as a blocking copy (torch's `.cpu()`), the same for dense, MInference and FlexPrefill
  (DuoAttention: the K and V it keeps, by its own rule above).
Memory (`prefill_fits`): a prefill runs where the GPU holds at once the weights, the KV cache it keeps there
(`kv_held_bytes`) and one layer's working set beside them (`layer_working_bytes`: `working_set.layer_working_bytes`
of the layer's cascades, as the sequence-parallel and serving memory models count it): the layer's input, the
residual stream, beside its largest op's activations, the layer's K and V left out as the KV cache's (Llama-3-8B's
largest op is the attention's residual add, its two inputs and its output hidden wide each: with the input, four
hidden-wide tensors, 32,768 B a token, as many as the layer's input, its normed copy, Q and O that Hugging Face's
decoder layer holds through the attention call). The KV cache stays on the GPU where the weights, all of it and that
working set fit
(`kv_on_host`); otherwise the GPU keeps one layer's K and V (the layer being computed) and the rest goes to the host.
The same holds for dense and every sparse method: their calls, one over the layer's heads (dense, FlexPrefill),
head by head (MInference) or over a share of them (DuoAttention), read the Q, K and V the layer's projections make
for every head at once and write one O. A side the GPU cannot hold has no time (NaN): the point is still a row, its
`fits` false (`sparse_points`); one no length could run (a CTA that does not fit an SM) is refused, naming the GPU.
Assumptions: the MLP runs in chunks, so its intermediate (3 x ffn_dim a token for SwiGLU, 86 GB at 1M tokens of
Llama-3-8B unchunked) is not counted, nor are the eager kernels' temporaries (RMSNorm's fp32 copies, RoPE's) or the
estimation's scores (MInference's are one head's at a time; FlexPrefill's are every head's over its last 128
queries, 16 KB a token in fp32 for Llama-3-8B, before O is written); the LM head runs on the last token only (the
benchmark times the prompt's forward, whose logits at every position would not fit at 1M tokens).
The benchmark switches to the host at a fixed 700K tokens, set for its GPU, an 80 GB A100 (seqpar-sparse.md §3.1);
this count switches from 426,263 tokens (Llama-3-8B's 16.06 GB of weights, 0.13 MB a token of KV cache and 32 KB a
token of working set pass 80 GiB): at 500K the weights and the whole cache (81.6 GB) leave 4.3 GB, less than Q and O
(8.2 GB), so how the benchmark ran 500K with its cache on the GPU (a forward holding less than Hugging Face's layer,
or keeping less cache) is not modelled. With the cache on the host the longest prompt that fits
(`longest_prefill_tokens`) is what the reference's "a single A100 fits up to 1.8M tokens of prefill" reads against.
Weights that alone exceed the GPU's memory leave nothing to offload: the KV cache stays put and the point has no
time, as any prefill the GPU cannot hold.
Assumptions: bf16, the only word size the kernels have (a workload whose `word_bytes` is not 2 is refused,
`kv_selection.check_dense_attention`); a KV cache that fits stays on the GPU; no Triton compilation time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_flexprefill import FLEX_MIN_BUDGET_TOKENS, layer_time_s
from archsim.model.gpu_sparse import (
    BLOCK,
    KERNEL_STAGES,
    KERNEL_WARPS,
    PATTERNS,
    SparseParams,
    SparsePattern,
    call_time_s,
    fitting_fwd_launch,
    head_parts_s,
    key_tiles,
)
from archsim.outputs import capacity_text
from archsim.systems.gpu_device import GEMM_FAMILY, GpuDevice, calibrated_gpu_device
from archsim.systems.kv_selection import (
    DUO_RECENT,
    DUO_SINKS,
    attention_time_s,
    check_dense_attention,
    dense_kv_bytes,
    duo_kv_bytes,
    retrieval_heads_per_layer,
    weight_bytes,
)
from archsim.systems.links import check_host_link, load_link
from archsim.systems.step import Op, Step, layers_time_s, lm_head_op, non_attention_ops
from archsim.systems.system_model import layer_working_bytes_per_token, sizes_model
from archsim.workload import Workload
from archsim.workload_patterns import PatternMap

DENSE_KERNEL = "FlashAttention-2"
# Hugging Face's eager kernels (transformers' LlamaRMSNorm and apply_rotary_pos_emb): DRAM bytes each moves per element
# of the tensor it runs over, bf16 in and out. RMSNorm: to fp32 (2 + 4), pow (4 + 4), mean (4), + eps and rsqrt (per
# token: 0), x * rsqrt (4 + 4), to bf16 (4 + 2), weight * x (2 + 2); RoPE over q and k: -x2 (half: 1 + 1),
# cat (2 + 2), x * cos (2 + 2), rotate_half(x) * sin (2 + 2), the sum (4 + 2).
HF_RMSNORM_PASSES = (6, 8, 4, 0, 0, 8, 6, 4)
HF_ROPE_PASSES = (2, 4, 4, 4, 6)
SPARSE_FAMILY = "triton_tutorial"  # MInference's kernels are Triton FlashAttention forwards
PRECISION = "bf16"  # the kernels' only word size (`kv_selection.KERNEL_WORD_BYTES`)


@dataclass(frozen=True)
class Prefill:
    """Seconds of one prompt's prefill: the layers' other ops and the LM head (`model_ops_s`), attention (NaN where
    the GPU cannot hold the prefill, `prefill_fits`), the KV cache's copy to the host (0 when it fits the GPU,
    `kv_on_host`), and their sum; MInference's (`sparse_prefill`) with its estimation and index build, parts of its
    attention; and the bytes the GPU holds at once."""

    other_ops_s: float  # the layers' ops other than attention and the LM head (`model_ops_s`)
    attention_s: float
    kv_host_s: float
    resident_bytes: float  # what the GPU holds at once (`resident_bytes`): weights, KV kept there, working set
    estimate_s: float = math.nan  # MInference's and FlexPrefill's eager launches' GPU time (NaN on the others)
    index_s: float = math.nan  # the index build's part of MInference's estimate_s
    pad_s: float = math.nan  # the pads' part of MInference's estimate_s (`gpu_sparse.pad_launches`)

    @property
    def time_s(self) -> float:
        return self.other_ops_s + self.attention_s + self.kv_host_s


def _sizes(workload: Workload, gpu: GPU) -> tuple[int, int, int, int]:
    params = workload.params
    for key in ("layers", "hidden", "heads", "kv_heads", "head_dim"):
        if key not in params:
            raise SpecError(workload.path, f"params.{key}", "missing: a prefill needs it")
    check_dense_attention(workload, gpu)
    return int(params["layers"]), int(params["heads"]), int(params["kv_heads"]), int(params["head_dim"])


def model_ops_s(workload: Workload, gpu: GPU, seq_len: int) -> float:
    """Every layer's ops other than attention over the prompt (`_eager_ops_s`), each kind of layer's times its count
    (`step.layers_time_s`: a model mixing dense and MoE layers), and the LM head over its last token
    (`step.lm_head_op`; module docstring)."""
    device = calibrated_gpu_device(gpu, DENSE_KERNEL)
    head = device.cost([lm_head_op(workload, 1)]).time_s
    step = Step("prefill", 1, seq_len)
    return layers_time_s(workload, step, lambda ops: _eager_ops_s(device, workload, ops, seq_len)) + head


def dense_ops_s(workload: Workload, gpu: GPU, seq_len: int) -> float:
    """One layer's ops other than attention over `seq_len` tokens of one prompt (the workload's MoE layer if it has
    experts, as `step.layer_ops`), as Hugging Face's eager layer runs them (`_eager_ops_s`)."""
    device = calibrated_gpu_device(gpu, DENSE_KERNEL)
    return _eager_ops_s(device, workload, non_attention_ops(workload, Step("prefill", 1, seq_len)), seq_len)


def _eager_ops_s(device: GpuDevice, workload: Workload, ops: Sequence[Op], seq_len: int) -> float:
    """`ops`, one layer's ops other than attention over `seq_len` tokens of one prompt, as Hugging Face's eager layer
    runs them (module docstring): a llama block's RMSNorms as HF's kernels (`HF_RMSNORM_PASSES`) and its RoPE on q
    and k (`HF_ROPE_PASSES`), the other ops as `device` prices them."""
    if workload.block != "llama":
        return device.cost(ops).time_s
    params = workload.params
    hidden = seq_len * params["hidden"]  # elements of the hidden state, what each RMSNorm runs over
    rotated = seq_len * (params["heads"] + params["kv_heads"]) * params["head_dim"]  # of q and k
    norms = [op for op in ops if op.cascade == "rmsnorm"]
    rest = device.cost([op for op in ops if op.cascade != "rmsnorm"]).time_s
    norm_s = hf_kernels_s(device, HF_RMSNORM_PASSES, hidden)
    return rest + len(norms) * norm_s + hf_kernels_s(device, HF_ROPE_PASSES, rotated)


def hf_kernels_s(device: GpuDevice, passes: tuple[int, ...], elements: float) -> float:
    """Seconds of Hugging Face eager kernels over a tensor of `elements`: one elementwise kernel of `device` per entry
    of `passes` (the bytes it moves per element; `HF_RMSNORM_PASSES`, `HF_ROPE_PASSES`)."""
    return sum(device.elementwise_s(per_element * elements) for per_element in passes)


def layer_working_bytes(workload: Workload, seq_len: int) -> float:
    """Bytes one layer holds over `seq_len` tokens beside the weights and the KV cache (module docstring, "Memory"):
    `working_set.layer_working_bytes` of the prefill layer's cascades per token
    (`system_model.layer_working_bytes_per_token` of the workload, the larger kind's in a model mixing dense and MoE
    layers), the MLP's intermediates left out (it runs in chunks) and the layer's K and V too (`kv_in_cache`: they
    are the KV cache's, `kv_held_bytes`)."""
    return seq_len * layer_working_bytes_per_token(sizes_model(workload), (), kv_in_cache=True)


def kv_on_host(workload: Workload, gpu: GPU, seq_len: int) -> bool:
    """Whether the prefill keeps the prompt's KV cache on the host: when the weights fit the GPU's memory and the
    weights, the whole KV cache (`kv_selection`'s bytes, those of the points' memory) and the layer's working set
    (`layer_working_bytes`) do not (module docstring); weights that alone do not fit keep nothing on the host (the
    point has no time)."""
    weights = weight_bytes(workload)
    return weights <= gpu.dram_bytes < (weights + dense_kv_bytes(workload, seq_len)
                                        + layer_working_bytes(workload, seq_len))


def kv_held_bytes(workload: Workload, gpu: GPU, seq_len: int) -> float:
    """The KV cache the prefill holds on the GPU: the prompt's whole cache, or one layer's K and V where it keeps the
    cache on the host (`kv_on_host`)."""
    kv = dense_kv_bytes(workload, seq_len)
    return kv / workload.params["layers"] if kv_on_host(workload, gpu, seq_len) else kv


def resident_bytes(workload: Workload, seq_len: int, held_kv_bytes: float) -> float:
    """What the GPU holds at once during a prefill that keeps `held_kv_bytes` of KV cache there: the weights, that
    and one layer's working set (`layer_working_bytes`; module docstring, "Memory")."""
    return weight_bytes(workload) + held_kv_bytes + layer_working_bytes(workload, seq_len)


def prefill_resident_bytes(workload: Workload, gpu: GPU, seq_len: int) -> float:
    """What the GPU holds at once during a `seq_len`-token prefill of `workload` with the KV cache where `kv_on_host`
    puts it (`resident_bytes` of `kv_held_bytes`): dense, MInference and FlexPrefill alike (DuoAttention keeps its
    own, `duo_kv_held_bytes`)."""
    return resident_bytes(workload, seq_len, kv_held_bytes(workload, gpu, seq_len))


def prefill_fits(workload: Workload, gpu: GPU, seq_len: int) -> bool:
    """Whether `gpu` holds a `seq_len`-token prefill of `workload` (`prefill_resident_bytes`)."""
    return prefill_resident_bytes(workload, gpu, seq_len) <= gpu.dram_bytes


def longest_prefill_tokens(workload: Workload, gpu: GPU) -> int:
    """The longest prompt whose prefill `gpu` holds (`prefill_fits`), 0 if none. `prefill_fits` holds up to that
    length and not beyond: below the switch to the host the whole cache fits by `kv_on_host`'s rule, and past it
    what the GPU holds grows with the length; so a doubling search, then a bisection, finds it."""
    if not prefill_fits(workload, gpu, 1):
        return 0
    low, high = 1, 2
    while prefill_fits(workload, gpu, high):
        low, high = high, 2 * high
    while high - low > 1:  # low fits, high does not
        middle = (low + high) // 2
        low, high = (middle, high) if prefill_fits(workload, gpu, middle) else (low, middle)
    return low


def kv_host_s(workload: Workload, gpu: GPU, seq_len: int) -> float:
    """Seconds of the prompt's KV cache crossing `gpu`'s host link, one copy per layer, 0 when it fits the GPU
    (`kv_on_host`); a GPU whose preset states no host link cannot run a prompt that needs one."""
    if not kv_on_host(workload, gpu, seq_len):
        return 0.0
    layers = int(workload.params["layers"])
    return _host_copy_s(workload, gpu, seq_len, {sizes_model(workload).kv_bytes_per_token * seq_len / layers: layers})


def _host_copy_s(workload: Workload, gpu: GPU, seq_len: int, layer_bytes: dict[float, int]) -> float:
    """Seconds of each layer's K and V crossing `gpu`'s host link, one blocking copy per layer (`layer_bytes`: bytes
    of a layer's copy -> layers of that size); a GPU whose preset states no host link cannot run a prompt that needs
    one."""
    if gpu.host_link is None:
        raise SpecError(gpu.source, "host_link", f"missing: {gpu.name}'s weights and the KV cache of {seq_len} "
                                                 f"tokens of {workload.name} exceed its "
                                                 f"{capacity_text(gpu.dram_bytes)}, so the prefill keeps the KV cache "
                                                 f"on the host, over the GPU's host link (e.g. pcie5-x16)")
    check_host_link(gpu)
    link = load_link(gpu.host_link)
    return sum(count * link.transfer_s(size) for size, count in layer_bytes.items())


def dense_prefill(workload: Workload, gpu: GPU, seq_len: int) -> Prefill:
    """Every layer with FlashAttention-2 over all heads; its attention NaN where the GPU cannot hold the prefill
    (module docstring, "Memory")."""
    layers, heads, kv_heads, head_dim = _sizes(workload, gpu)
    return _held(Prefill(model_ops_s(workload, gpu, seq_len),
                         layers * _dense_call_s(gpu, heads, kv_heads, head_dim, seq_len),
                         kv_host_s(workload, gpu, seq_len),
                         prefill_resident_bytes(workload, gpu, seq_len)), gpu)


def _held(prefill: Prefill, gpu: GPU) -> Prefill:
    """`prefill`, its attention, the parts of it and the KV cache's host copy NaN where `gpu` cannot hold its
    `resident_bytes` (module docstring, "Memory"): a run that cannot happen copies nothing."""
    if prefill.resident_bytes <= gpu.dram_bytes:
        return prefill
    return replace(prefill, attention_s=math.nan, kv_host_s=math.nan, estimate_s=math.nan, index_s=math.nan,
                   pad_s=math.nan)


def _dense_call_s(gpu: GPU, heads: int, kv_heads: int, head_dim: int, seq_len: int) -> float:
    """One FlashAttention-2 causal call over `heads` query heads and `kv_heads` KV heads; NaN where its Q, K, V and
    O alone exceed the GPU's memory (`kv_selection.attention_time_s`; the prefill's own rule is stricter)."""
    case = AttentionCase("fwd", 1, heads, kv_heads, head_dim, seq_len, True, PRECISION)
    return attention_time_s(DENSE_KERNEL, case, gpu, calibrated_gpu_device(gpu, DENSE_KERNEL).kernel_params,
                            "<prefill>", f"run {seq_len} tokens")


def duo_prefill(workload: Workload, gpu: GPU, seq_len: int, retrieval_fraction: float, *, sinks: int = DUO_SINKS,
                recent: int = DUO_RECENT) -> Prefill:
    """Every layer with DuoAttention (module docstring): its retrieval heads' FlashAttention-2 call and its
    streaming heads' A-shape call; heads from `retrieval_fraction`, as the decode model's."""
    _, heads, kv_heads, head_dim = _sizes(workload, gpu)
    retrieval = retrieval_heads_per_layer(workload, retrieval_fraction)
    streaming = SparsePattern("a_shape", sinks=sinks, window=recent)  # checks both are whole numbers >= 0
    group, params = heads // kv_heads, _sparse_params()

    def layer_s(n: int) -> float:  # a layer with n retrieval KV heads
        if sinks + recent >= seq_len:  # the window holds the prompt: every head attends it all, dense's call
            return _dense_call_s(gpu, heads, kv_heads, head_dim, seq_len)
        return ((_dense_call_s(gpu, n * group, n, head_dim, seq_len) if n else 0.0)
                + (_streaming_call_s(streaming, gpu, (kv_heads - n) * group, kv_heads - n, head_dim, seq_len, params)
                   if n < kv_heads else 0.0))

    attention_s = sum(count * layer_s(n) for n, count in Counter(retrieval).items())  # layers alike, priced once
    held_kv = duo_kv_held_bytes(workload, gpu, seq_len, retrieval, sinks, recent)
    return _held(Prefill(model_ops_s(workload, gpu, seq_len), attention_s,
                         duo_kv_host_s(workload, gpu, seq_len, retrieval, sinks, recent),
                         resident_bytes(workload, seq_len, held_kv)), gpu)


def duo_peak_kv_bytes(workload: Workload, seq_len: int, retrieval: Sequence[int], sinks: int = DUO_SINKS,
                      recent: int = DUO_RECENT) -> float:
    """The most KV cache DuoAttention's prefill holds on the GPU when it keeps it there (module docstring): every
    layer's kept K and V (`retrieval` heads per layer), the layer being computed at its full K and V instead, the most
    at a layer with the fewest retrieval heads. With every head a retrieval head, dense's whole cache."""
    full_layer = dense_kv_bytes(workload, seq_len) / len(retrieval)
    kept_layer = duo_kv_bytes(workload, seq_len, (min(retrieval),), sinks, recent)
    return duo_kv_bytes(workload, seq_len, retrieval, sinks, recent) + full_layer - kept_layer


def duo_kv_on_host(workload: Workload, gpu: GPU, seq_len: int, retrieval: Sequence[int], sinks: int = DUO_SINKS,
                   recent: int = DUO_RECENT) -> bool:
    """Whether DuoAttention's prefill keeps the KV it keeps on the host: when the weights fit the GPU's memory and
    the weights, its peak KV cache (`duo_peak_kv_bytes`) and the layer's working set (`layer_working_bytes`) do not;
    as `kv_on_host`, weights that alone do not fit keep nothing on the host."""
    weights = weight_bytes(workload)
    return weights <= gpu.dram_bytes < (weights + duo_peak_kv_bytes(workload, seq_len, retrieval, sinks, recent)
                                        + layer_working_bytes(workload, seq_len))


def duo_kv_held_bytes(workload: Workload, gpu: GPU, seq_len: int, retrieval: Sequence[int], sinks: int = DUO_SINKS,
                      recent: int = DUO_RECENT) -> float:
    """The KV cache DuoAttention's prefill holds on the GPU: its peak (`duo_peak_kv_bytes`), or one layer's full K
    and V where it keeps what it keeps on the host (`duo_kv_on_host`)."""
    if duo_kv_on_host(workload, gpu, seq_len, retrieval, sinks, recent):
        return dense_kv_bytes(workload, seq_len) / len(retrieval)
    return duo_peak_kv_bytes(workload, seq_len, retrieval, sinks, recent)


def duo_kv_host_s(workload: Workload, gpu: GPU, seq_len: int, retrieval: Sequence[int], sinks: int = DUO_SINKS,
                  recent: int = DUO_RECENT) -> float:
    """Seconds of DuoAttention's kept KV crossing `gpu`'s host link, each layer's kept K and V once, 0 when it
    stays on the GPU (`duo_kv_on_host`)."""
    if not duo_kv_on_host(workload, gpu, seq_len, retrieval, sinks, recent):
        return 0.0
    kept = {n: duo_kv_bytes(workload, seq_len, (n,), sinks, recent) for n in set(retrieval)}  # a layer's
    return _host_copy_s(workload, gpu, seq_len, Counter(kept[n] for n in retrieval))


def _streaming_call_s(pattern: SparsePattern, gpu: GPU, heads: int, kv_heads: int, head_dim: int, seq_len: int,
                      params: SparseParams) -> float:
    """One block-sparse Triton call over `heads` query heads (`kv_heads` KV heads) visiting `pattern`'s key tiles,
    no estimation (module docstring; whether the GPU holds it is the prefill's rule)."""
    case = AttentionCase("fwd", 1, heads, kv_heads, head_dim, seq_len, True, PRECISION)
    kernel = fitting_fwd_launch("streaming fwd", case, gpu, BLOCK, KERNEL_WARPS, KERNEL_STAGES,
                                key_tiles(pattern, seq_len))
    return call_time_s([], [kernel], gpu, params)[0]


def head_patterns(pattern_map: PatternMap) -> list[tuple[SparsePattern, int]]:
    """(pattern, number of heads) of a per-head pattern map whose heads are MInference's (query heads, 64-token
    blocks)."""
    if pattern_map.head_kind != "query":
        raise SpecError(pattern_map.path, "head_kind", "expected query: MInference sets a pattern per query head")
    patterns = []
    for index, entry in enumerate(pattern_map.patterns):
        settings = dict(entry.settings)
        if entry.pattern not in PATTERNS:
            raise SpecError(pattern_map.path, f"patterns[{index}].pattern",
                            f"expected one of MInference's {', '.join(PATTERNS)} for a prefill, got {entry.pattern!r}")
        if settings.pop("block", BLOCK) != BLOCK:
            raise SpecError(pattern_map.path, f"patterns[{index}].block", f"expected {BLOCK}, the kernel's block")
        patterns.append((SparsePattern(entry.pattern, **settings), entry.heads))
    return patterns


def sparse_prefill(workload: Workload, gpu: GPU, seq_len: int,
                   head_patterns: Sequence[tuple[SparsePattern, int]]) -> Prefill:
    """Every layer with MInference: `head_patterns` gives (pattern, number of heads) over all the model's heads; its
    attention, and the estimation, index build and pads summed over its heads as the attention is (each head's eager
    launches' GPU time and the index build's and pads' parts of it, `gpu_sparse.head_parts_s`), NaN where the GPU
    cannot hold the prefill (module docstring, "Memory")."""
    layers, heads, _, head_dim = _sizes(workload, gpu)
    counted = sum(count for _, count in head_patterns)
    if counted != layers * heads:
        raise SpecError("<patterns>", "heads", f"expected patterns for layers x heads = {layers} x {heads} = "
                                               f"{layers * heads} heads of {workload.name}, got {counted}")
    params = _sparse_params()
    parts = [(count, head_parts_s(pattern, seq_len, head_dim, gpu, params)) for pattern, count in head_patterns]
    attention, estimate, index, pad = (sum(count * part[i] for count, part in parts) for i in range(4))
    return _held(Prefill(model_ops_s(workload, gpu, seq_len), attention, kv_host_s(workload, gpu, seq_len),
                         prefill_resident_bytes(workload, gpu, seq_len), estimate, index,
                         pad), gpu)


def flex_prefill(workload: Workload, gpu: GPU, seq_len: int, density: float,
                 min_budget_tokens: int = FLEX_MIN_BUDGET_TOKENS) -> tuple[Prefill, float]:
    """Every layer with FlexPrefill at `density` (kept / causal points) and its selections' `min_budget_tokens`
    (`gpu_flexprefill`'s floor), and the layers' estimation alone (s); both NaN where the GPU cannot hold the
    prefill (module docstring, "Memory")."""
    layers, heads, kv_heads, head_dim = _sizes(workload, gpu)
    call_s, estimate_s = layer_time_s(density, seq_len, heads, kv_heads, head_dim, gpu, _sparse_params(), PRECISION,
                                      min_budget_tokens=min_budget_tokens)
    prefill = _held(Prefill(model_ops_s(workload, gpu, seq_len), layers * call_s, kv_host_s(workload, gpu, seq_len),
                            prefill_resident_bytes(workload, gpu, seq_len),
                            layers * estimate_s), gpu)
    return prefill, prefill.estimate_s


def _sparse_params() -> SparseParams:
    """The packaged calibration's Triton family (the sparse kernels) and PyTorch family (the eager estimation)."""
    calibration = load_calibration()
    return SparseParams(calibration.family_params(SPARSE_FAMILY), calibration.family_params(GEMM_FAMILY))
