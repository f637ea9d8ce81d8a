"""Sparse prefill attention on a GPU, one head at a time, as MInference runs it (Jiang et al., NeurIPS'24;
../shared/reference/seqpar-sparse.md §3.1): the pattern's estimation as eager PyTorch ops, the index build, and a
Triton kernel that visits only the key tiles the pattern keeps.

A head's call (`head_launches`) is a list of launches timed by the GPU model (`archsim.model.gpu`):
- Vertical-slash (Alg. 2): Â = softmax(Q[-64:]·Kᵀ + causal) as a cuBLAS GEMM and fp32 passes, column sums and
  diagonal sums (the diagonal sum pads and re-reads the 64 x N scores), two top-k selections over N scores (a radix
  select reads its input about `TOPK_PASSES` times), index sorts, the pads of Q, K, V to a multiple of 64, the index
  build (one pass over (N/64)(k_v + k_s) int32 indices), then the sparse kernel. k_v and k_s are taken as
  MInference's code runs them (`vertical_slash_sizes`, §3.1: it clamps k_v >= 30 and k_s >= 50, forcing the first
  30 columns and the nearest diagonals, and caps both at N).
- Block-sparse (Alg. 3): mean pooling of Q and K over 64 tokens, Q̂·K̂ᵀ over (N/64)^2 blocks, softmax and top-k_b per
  query block, then the kernel.
- A-shape: no estimation; the kernel over `sinks` initial and `window` recent tokens.
The kernel (MInference's `_triton_mixed_sparse_attention` and block-sparse kernel) is a FlashAttention-style forward
(`gpu_flash_plans.fwd_launch`, 64 x 64 tiles, 4 warps, the Triton family's calibrated efficiency and CTA overhead, two
K/V stages or one where two do not fit the SM's shared memory: `fitting_fwd_launch`, FlexPrefill's too) whose
CTA for query block i runs the key tiles `key_tiles` counts for it, so the ragged set's wave quantisation and the
longest CTA come out of the launch model. Kernel granularity (§3.1 "Kernel granularity"): a slash is covered by
64 x 64 blocks, verticals are gathered 64 columns per tile.
Where the data decides (which slashes and verticals win the top-k), the placement is
`archsim.cascade.sparse_density`'s, whose point count the mask's density is: the k_s kept diagonals are the k_s
nearest the main one (offsets 0 to k_s - 1), so query block i covers ceil((k_s - 1) / 64) + 1 key blocks, two of
them partly masked (the diagonal block and the band's lower edge); the k_v kept columns are the first ones (the
forced sinks), so query block i gathers the min(k_v, keys left of its band's first block) of them, 64 per tile: a
column inside a block the band already visits is not gathered again (MInference's index build skips a column inside
a slash range), so no query block visits more tiles than the causal kernel's i + 1, and a k_v beyond the context
costs what the context does. That is the sparse end of the reference's range (k_v + k_s + 64 keys per row with
contiguous slashes, up to k_v + 64 k_s scattered).
Heads run one after another (MInference loops over heads in Python); a head's time is
max(its launches' GPU time, its eager ops x the PyTorch family's per-op host time). Its estimation
(`head_parts_s`) is the eager launches' GPU time (pads, estimate, top-k, sorts and index build), the index build
(`index_launches`: the sorts and the build) and the pads of Q, K and V for the kernel (`pad_launches`) parts of it;
each is a share of the head's time only where the call is not host-bound. What MInference's paper calls index
building (seqpar-sparse.md §3.1: its pattern estimation and the index built from it) is the estimation less the
pads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from archsim.arch.gpu import GPU
from archsim.cascade.sparse_density import vertical_slash_sizes
from archsim.errors import SpecError
from archsim.model.gpu import (
    AttentionCase,
    GemmLaunch,
    Launch,
    Plan,
    StreamLaunch,
    TiledLaunch,
    ctas_per_sm,
    launch_time,
    plan_feasibility,
)
from archsim.model.gpu_flash_plans import fwd_launch

BLOCK = 64  # MInference's BLOCK_M = BLOCK_N
KERNEL_WARPS = 4
KERNEL_STAGES = (2, 1)  # K/V pipeline stages, as many as shared memory holds (Triton's num_stages; ours)
LAST_Q = 64  # queries of the vertical-slash estimate (Alg. 2)
TOPK_PASSES = 3  # reads of its input a top-k (radix select) makes
SCORE_BYTES = 4  # fp32 scores of the estimate
INDEX_BYTES = 4  # int32 indices
VIEW_OPS = 6  # slicing, unsqueeze, transposes: issued from Python, no kernel
PATTERNS = ("vertical_slash", "block_sparse", "a_shape")


@dataclass(frozen=True)
class SparsePattern:
    """One head's pattern: vertical_slash (k_v columns, k_s diagonals), block_sparse (k_b key blocks per query
    block) or a_shape (`sinks` initial and `window` recent tokens)."""

    kind: str
    k_v: int = 0
    k_s: int = 0
    k_b: int = 0
    sinks: int = 0
    window: int = 0

    def __post_init__(self) -> None:
        if self.kind not in PATTERNS:
            raise SpecError("<pattern>", "pattern", f"expected one of {', '.join(PATTERNS)}, got {self.kind!r}")
        for name in ("k_v", "k_s", "k_b", "sinks", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError("<pattern>", name, f"expected a whole number >= 0, got {value!r}")


@dataclass(frozen=True)
class SparseParams:
    """The calibrated parameters the launches use: the Triton family's for the kernel, the PyTorch family's for the
    eager estimation and index ops (and its per-op host time)."""

    kernel: Mapping[str, float]
    eager: Mapping[str, float]


def key_tiles(pattern: SparsePattern, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(unmasked, masked) 64 x 64 key tiles each query block visits (module docstring's placement)."""
    blocks = math.ceil(n / BLOCK)
    i = np.arange(blocks)
    causal = i + 1  # key blocks up to the diagonal
    if pattern.kind == "block_sparse":
        total = np.minimum(causal, pattern.k_b)
        masked = np.minimum(total, 1)  # the diagonal block, when kept
        return total - masked, masked
    if pattern.kind == "a_shape":
        band = math.ceil((pattern.window - 1) / BLOCK) + 1  # keys back to p - window + 1
        total = np.minimum(causal, math.ceil(pattern.sinks / BLOCK) + band)
        return total - np.minimum(total, 2), np.minimum(total, 2)
    k_v, k_s = vertical_slash_sizes(pattern.k_v, pattern.k_s, n)
    band = np.minimum(causal, math.ceil((k_s - 1) / BLOCK) + 1)  # diagonals 0..k_s - 1
    left = BLOCK * (causal - band)  # keys left of the band's first block
    columns = -(-np.minimum(k_v, left) // BLOCK)
    masked = np.minimum(band, 2)
    return band - masked + columns, masked


def kept_fraction(pattern: SparsePattern, n: int) -> float:
    """Key tiles visited over the causal kernel's (tiles, where `sparse_density` counts points)."""
    unmasked, masked = key_tiles(pattern, n)
    blocks = math.ceil(n / BLOCK)
    return float((unmasked + masked).sum()) / (blocks * (blocks + 1) / 2)


def head_launches(pattern: SparsePattern, n: int, head_dim: int, gpu: GPU, precision: str,
                  element_bytes: int) -> tuple[list[Launch], list[Launch]]:
    """(eager estimation and index launches, the sparse kernel) of one head's call over n tokens."""
    e, d = element_bytes, head_dim
    tokens = n * d * e
    eager = pad_launches(n, head_dim, element_bytes)
    if pattern.kind == "vertical_slash":
        estimate = last_queries_estimate(LAST_Q, n, d, 1, 1, precision, e)
        eager += [*estimate[:4],
                  StreamLaunch("top-k verticals", TOPK_PASSES * n * SCORE_BYTES, "hbm_efficiency"),
                  *estimate[4:],
                  StreamLaunch("top-k slashes", TOPK_PASSES * n * SCORE_BYTES, "hbm_efficiency"),
                  *index_launches(pattern, n)]
    elif pattern.kind == "block_sparse":
        blocks = math.ceil(n / BLOCK)
        pooled = blocks * blocks
        eager += [StreamLaunch("mean-pool Q and K", 2 * tokens + 2 * blocks * d * e, "hbm_efficiency"),
                  GemmLaunch("pooled Q̂·K̂ᵀ", 2.0 * pooled * d, 2 * blocks * d * e + pooled * e, precision),
                  StreamLaunch("softmax (fp32)", pooled * (e + SCORE_BYTES), "hbm_efficiency"),
                  StreamLaunch("top-k blocks", TOPK_PASSES * pooled * SCORE_BYTES, "hbm_efficiency")]
    case = AttentionCase("fwd", 1, 1, 1, head_dim, n, True, precision)
    kernel = fitting_fwd_launch("sparse fwd", case, gpu, BLOCK, KERNEL_WARPS, KERNEL_STAGES, key_tiles(pattern, n))
    return eager, [kernel]


def pad_launches(n: int, head_dim: int, element_bytes: int) -> list[Launch]:
    """The pads of one head's Q, K and V over n tokens to a multiple of 64, the kernel's block: each read and
    written once, whatever the pattern."""
    return [StreamLaunch(f"pad {t} to a multiple of 64", 2 * n * head_dim * element_bytes, "hbm_efficiency")
            for t in ("q", "k", "v")]


def index_launches(pattern: SparsePattern, n: int) -> list[Launch]:
    """The index build of one head's call over n tokens: a vertical-slash head's sort of its k_v + k_s indices and
    one pass over (N/64)(k_v + k_s) int32 indices (`vertical_slash_sizes`); none for the other patterns, whose
    top-k (block-sparse) or static mask (A-shape) is the kernel's list."""
    if pattern.kind != "vertical_slash":
        return []
    indices = sum(vertical_slash_sizes(pattern.k_v, pattern.k_s, n))
    return [StreamLaunch("sort the indices", 2 * indices * INDEX_BYTES, "hbm_efficiency"),
            StreamLaunch("build the block and column indices", math.ceil(n / BLOCK) * indices * INDEX_BYTES,
                         "hbm_efficiency")]


def fitting_fwd_launch(name: str, case: AttentionCase, gpu: GPU, block: int, warps: int, stages: tuple[int, ...],
                       counts: tuple[np.ndarray, np.ndarray]) -> TiledLaunch:
    """A Triton sparse forward (`gpu_flash_plans.fwd_launch`: `block` x `block` tiles, native MMAs, Q in registers)
    visiting the key tiles of `counts`, with the first of `stages` (K/V pipeline stages, most first) whose CTA fits
    an SM of `gpu` (ours: where the kernels' usual stages exceed the shared memory, the kernel is taken as compiled
    with fewer, Triton's `num_stages`). A GPU on which none fits is refused naming its `smem_bytes_per_sm`, the tile,
    the head_dim and what the CTA needs: no length could run it."""
    for stage_count in stages:
        kernel = fwd_launch(name, case, gpu, block, block, warps, "native", "mma_efficiency_fwd", False, False,
                            stage_count, counts=counts)
        if ctas_per_sm(kernel, gpu):
            return kernel
    raise SpecError(gpu.source, "smem_bytes_per_sm",
                    f"{gpu.name} cannot hold a {block} x {block} tile of head_dim {case.head_dim} with "
                    f"{stages[-1]} K/V stage; {plan_feasibility(Plan(name, (kernel,)), gpu)}")


def last_queries_estimate(queries: int, n: int, head_dim: int, heads: int, kv_heads: int, precision: str,
                          element_bytes: int) -> list[Launch]:
    """Â = softmax(Q[-queries:]·Kᵀ + causal) over `heads` query heads (K of `kv_heads`) as a cuBLAS GEMM and fp32
    passes, its column sums and, after a pad, its diagonal sums: MInference's vertical-slash estimate (one head, 64
    queries) and FlexPrefill's (every head, 128)."""
    e, d, scores = element_bytes, head_dim, queries * n * heads
    return [GemmLaunch(f"estimate q[-{queries}:]·Kᵀ", 2.0 * scores * d,
                       (queries * d * heads + n * d * kv_heads + scores) * e, precision),
            StreamLaunch("causal mask of the estimate", 2 * scores * e, "hbm_efficiency"),
            StreamLaunch("softmax (fp32)", scores * (e + SCORE_BYTES), "hbm_efficiency"),
            StreamLaunch("column sums (verticals)", scores * SCORE_BYTES, "hbm_efficiency"),
            StreamLaunch("pad for the diagonal sums", 2 * scores * SCORE_BYTES, "hbm_efficiency"),
            StreamLaunch("diagonal sums (slashes)", scores * SCORE_BYTES, "hbm_efficiency")]


def call_time_s(eager: list[Launch], kernel: list[Launch], gpu: GPU, params: SparseParams) -> tuple[float, float]:
    """(one call, its eager launches alone): the launches' GPU time, or the eager ops' host time when that is
    longer (the ops issued from Python: the launches and `VIEW_OPS`)."""
    eager_s = sum(launch_time(launch, gpu, params.eager).time_s for launch in eager)
    device_s = eager_s + sum(launch_time(launch, gpu, params.kernel).time_s for launch in kernel)
    host_s = (len(eager) + len(kernel) + VIEW_OPS) * params.eager["host_op_s"]
    return max(device_s, host_s), eager_s


def head_parts_s(pattern: SparsePattern, n: int, head_dim: int, gpu: GPU, params: SparseParams,
                 precision: str = "bf16", element_bytes: int = 2) -> tuple[float, float, float, float]:
    """(one head's call, its estimation, its index build, its pads) in seconds (module docstring): the call its
    launches' GPU time, or its eager ops' host time when that is longer (`call_time_s`); the estimation the eager
    launches' GPU time, the index build (`index_launches`) and the pads (`pad_launches`) parts of it. MInference's
    kernels are 16-bit (bf16 by default); a workload of another word size is refused before this
    (`kv_selection.check_dense_attention`)."""
    call_s, eager_s = call_time_s(*head_launches(pattern, n, head_dim, gpu, precision, element_bytes), gpu, params)
    index_s, pad_s = (sum(launch_time(launch, gpu, params.eager).time_s for launch in launches)
                      for launches in (index_launches(pattern, n), pad_launches(n, head_dim, element_bytes)))
    return call_s, eager_s, index_s, pad_s
