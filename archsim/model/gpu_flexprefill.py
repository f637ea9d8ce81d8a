"""FlexPrefill's prefill attention on a GPU: one layer's heads in one call (Lai et al., ICLR'25;
../shared/reference/seqpar-sparse.md §3.2; the library cascade `flexprefill`).

A layer's call (`layer_launches`) is a list of launches timed by the GPU model (`archsim.model.gpu`), each launch
over every head, as FlexPrefill's code batches its heads (unlike MInference's loop over heads,
`archsim.model.gpu_sparse`):
- Estimation, the cascade's estimation group: Â = softmax(Q[-128:]·Kᵀ + causal), its column sums (verticals) and
  diagonal sums (slashes), launched as MInference's (`gpu_sparse.last_queries_estimate`; Â's pooling into key
  blocks, n values a head, is left out);
  Q and K mean-pooled over 128-token blocks and their block scores Q̂·K̂ᵀ (cuBLAS computes the whole square) with
  a row softmax, which the query-aware estimate and the block selection read; the cumulative selections sort and
  sum the verticals and the slashes (n each) and each query block's block scores (a radix sort reading its input
  `TOPK_PASSES` times, as gpu_sparse's top-k); the block mask (one byte per block pair). The head test (JSD < tau)
  picks one selection per head from the data; both are counted for every head, an upper bound on the estimation.
- The kernel: a Triton block-sparse FlashAttention forward (`gpu_flash_plans.fwd_launch`, the Triton family's
  calibrated efficiency and CTA overhead) on `FLEX_BLOCK` x `FLEX_BLOCK` tiles with `FLEX_WARPS` warps and
  `FLEX_STAGES` K/V stages, as many as shared memory holds (`gpu_sparse.fitting_fwd_launch`; the block is the
  paper's; the warps and stages are our assumption), whose CTA for query
  block i visits the key blocks `key_tiles` keeps: `density` of the i + 1 causal blocks, at least the selection's
  floor (`floor_blocks`). `density` is the cascade's mask density (kept / causal points): which blocks pass the
  coverage gamma = 0.9 is the data's, so the user gives it; spread evenly over the query blocks, the work scales
  with it and the ragged rows' wave quantisation comes from the launch model. Where the floor is more than `density`
  of a row (a short prompt, a low density), the kernel visits that larger share (`kept_density`, which `archsim
  sparse` reports as the point's `effective_density`).
- The floor (seqpar-sparse.md §3.2): FlexPrefill's selections are clamped to at least `min_budget` tokens
  (`FLEX_MIN_BUDGET_TOKENS`, its README's default 512; its test main uses 1024), and its code keeps the first key
  block and the diagonal one, so a vertical-slash head keeps at least ceil(min_budget / 128) vertical blocks (the
  first among them) and as many slash blocks (the diagonal among them), each at least one. Placed as the module
  `gpu_sparse` places MInference's (verticals the first key blocks, slashes the nearest the diagonal), a query block
  keeps at least both counts together, or every causal block where it has fewer. Assumptions: a budget that is not
  a multiple of 128 rounds up to whole blocks (the reference does not say; its defaults are multiples), and the
  code's `score_cover_topk(...)//128 + 1` quirk (seqpar-sparse.md §3.2) is not applied to the clamped budget (were
  the clamp in tokens before it, the floor at 512 would be 5 + 5 blocks, not 4 + 4; not checked); every head
  takes the vertical-slash floor, whose two kinds make it the larger (a block-sparse head's selection, one kind, is
  clamped once): which heads pass the head test is the data's, so the kernel's floor is an upper bound, as the
  estimation is.
The launches are issued from Python once per layer: a call takes max(its launches' GPU time, its eager ops x the
PyTorch family's per-op host time). Whether the GPU can hold the call (every head's Q, K, V and O beside the weights,
the KV cache it keeps and the layer's input) is the prefill's to decide (`archsim.systems.sparse_prefill`), as for
MInference's heads (`gpu_sparse.head_parts_s`).
"""

from __future__ import annotations

import math

import numpy as np

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.model.gpu import AttentionCase, GemmLaunch, Launch, StreamLaunch
from archsim.model.gpu_sparse import (
    SCORE_BYTES,
    TOPK_PASSES,
    SparseParams,
    call_time_s,
    fitting_fwd_launch,
    last_queries_estimate,
)

FLEX_BLOCK = 128  # FlexPrefill's block (seqpar-sparse.md §3.2)
FLEX_WARPS = 8  # ours: Triton's usual warps for a 128 x 128 tile
FLEX_STAGES = (2, 1)  # K/V pipeline stages, as many as shared memory holds (Triton's num_stages; ours)
MASK_BYTES = 1  # a bool per block pair
FLEX_MIN_BUDGET_TOKENS = 512  # FlexPrefill's README default min_budget (seqpar-sparse.md §3.2; its test main: 1024)


def floor_blocks(min_budget_tokens: int) -> int:
    """The fewest key blocks a query block keeps (module docstring, "The floor"): ceil(min_budget / 128) vertical and
    as many slash blocks, each at least one (the first and the diagonal block)."""
    if isinstance(min_budget_tokens, bool) or not isinstance(min_budget_tokens, int) or min_budget_tokens < 0:
        raise SpecError("<flexprefill>", "min_budget", f"expected a whole number of tokens >= 0, got "
                                                       f"{min_budget_tokens!r}")
    return 2 * max(1, math.ceil(min_budget_tokens / FLEX_BLOCK))


def check_density(density: object) -> None:
    """Refuse a density outside (0, 1] (a share of the causal points), or no number, whatever the prompt."""
    if isinstance(density, bool) or not isinstance(density, int | float) or not 0 < density <= 1:
        raise SpecError("<flexprefill>", "density", f"expected a fraction of the causal points in (0, 1], got "
                                                    f"{density!r}")


def key_tiles(density: float, n: int,
              min_budget_tokens: int = FLEX_MIN_BUDGET_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """(unmasked, masked) key blocks each query block visits at `density` (module docstring): query block i keeps
    density x (i + 1) of its i + 1 causal blocks, rounded half up, at least `floor_blocks(min_budget_tokens)` of them
    or all where it has fewer; the diagonal one masked."""
    check_density(density)
    causal = np.arange(math.ceil(n / FLEX_BLOCK)) + 1
    kept = np.clip(np.floor(density * causal + 0.5), np.minimum(causal, floor_blocks(min_budget_tokens)), causal)
    return kept - 1, np.ones_like(kept)


def kept_density(density: float, n: int, min_budget_tokens: int = FLEX_MIN_BUDGET_TOKENS) -> float:
    """The share of the causal key blocks the kernel visits at `density` over n tokens: `key_tiles`' kept blocks over
    the i + 1 causal blocks of each query block i, summed over the query blocks. `density` up to each row's rounding,
    or more where the floor every row keeps raises it (a short prompt, a low density)."""
    unmasked, masked = key_tiles(density, n, min_budget_tokens)
    return float((unmasked + masked).sum() / (np.arange(len(masked)) + 1).sum())


def layer_launches(density: float, n: int, heads: int, kv_heads: int, head_dim: int, gpu: GPU, precision: str,
                   element_bytes: int,
                   min_budget_tokens: int = FLEX_MIN_BUDGET_TOKENS) -> tuple[list[Launch], list[Launch]]:
    """(eager estimation launches, the sparse kernel) of one layer's call over n tokens (module docstring)."""
    e, d, s = element_bytes, head_dim, SCORE_BYTES
    blocks = math.ceil(n / FLEX_BLOCK)
    pairs = blocks * blocks * heads
    pooled = blocks * d * (heads + kv_heads) * e
    eager: list[Launch] = [
        *last_queries_estimate(FLEX_BLOCK, n, d, heads, kv_heads, precision, e),
        StreamLaunch("mean-pool Q and K", n * d * (heads + kv_heads) * e + pooled, "hbm_efficiency"),
        GemmLaunch("pooled Q̂·K̂ᵀ", 2.0 * pairs * d, pooled + pairs * s, precision),
        StreamLaunch("block softmax (fp32)", 2 * pairs * s, "hbm_efficiency"),
        StreamLaunch("sort and sum verticals and slashes", TOPK_PASSES * 2 * n * heads * s, "hbm_efficiency"),
        StreamLaunch("sort and sum block scores", TOPK_PASSES * pairs * s, "hbm_efficiency"),
        StreamLaunch("block mask", pairs * (s + MASK_BYTES), "hbm_efficiency")]
    return eager, [fitting_fwd_launch("flex block-sparse fwd", layer_case(n, heads, kv_heads, head_dim, precision), gpu,
                                      FLEX_BLOCK, FLEX_WARPS, FLEX_STAGES,
                                      key_tiles(density, n, min_budget_tokens))]


def layer_time_s(density: float, n: int, heads: int, kv_heads: int, head_dim: int, gpu: GPU, params: SparseParams,
                 precision: str = "bf16", element_bytes: int = 2,
                 min_budget_tokens: int = FLEX_MIN_BUDGET_TOKENS) -> tuple[float, float]:
    """(the layer's call, its estimation alone) in seconds: the launches' GPU time, or the eager ops' host time when
    that is longer (module docstring; whether the GPU holds the call is the caller's)."""
    return call_time_s(*layer_launches(density, n, heads, kv_heads, head_dim, gpu, precision, element_bytes,
                                       min_budget_tokens), gpu, params)


def layer_case(n: int, heads: int, kv_heads: int, head_dim: int, precision: str) -> AttentionCase:
    """One layer's causal forward over n tokens of one prompt, every head: the call's shape and its Q, K, V and O."""
    return AttentionCase("fwd", 1, heads, kv_heads, head_dim, n, True, precision)
