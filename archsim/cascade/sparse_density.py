"""Density of MInference's vertical-slash mask at kernel granularity, relative to causal attention.

Model (MInference 1.0, arXiv 2407.02490, Fig. 7 and Alg. 4; ../shared/reference/seqpar-sparse.md Sec. 3.1 "Kernel
granularity"): the kernel walks the query rows in blocks of `block` (64) rows. In a row block [r0, r1] a slash at
diagonal offset d (keys m = p - d) is computed as the `block`-wide key range [r0 - d, r1 - d]; Alg. 4 merges the
ranges of all kept slashes, and each kept vertical column is gathered as a 1 x `block` strip. Every point of the
merged ranges and strips is computed.

Assumptions (the selected indices are data-dependent; the placement fixes the count):
- the k_s slashes are the k_s diagonals nearest the main one (the forced local diagonals and, in the shipped
  configs, the strongest slashes lie next to it), so their ranges merge into one band [r0 - k_s + 1, r1] per row
  block: the per-row width k_v + k_s + block - 1 of the section's lower bound (scattered slashes could cost up to
  k_v + block k_s);
- the k_v verticals are the first columns (the forced sink columns and the attention sinks); a vertical inside
  the band is not counted twice, and the band and the columns stop at column 0.
The result is kept points over the causal points n (n + 1) / 2 that causal FlashAttention computes; at lengths of a
few blocks it can exceed 1, since whole blocks are computed.
"""

from __future__ import annotations

import numpy as np

MIN_VERTICALS, MIN_SLASHES = 30, 50  # MInference's code clamps k_v >= 30, k_s >= 50 (seqpar-sparse.md §3.1)


def vertical_slash_sizes(k_v: int, k_s: int, n: int) -> tuple[int, int]:
    """(k_v, k_s) as MInference's code runs a vertical-slash head over n tokens: at least `MIN_VERTICALS` and
    `MIN_SLASHES` (its forced first columns and nearest diagonals), at most n."""
    return min(n, max(k_v, MIN_VERTICALS)), min(n, max(k_s, MIN_SLASHES))


def vertical_slash_kept_points(n: int, k_v: int, k_s: int, block: int = 64) -> int:
    """Points the vertical-slash kernel computes over an n-token causal prefill (one head)."""
    if min(n, k_v + k_s, block) < 1 or min(k_v, k_s) < 0:
        raise ValueError(f"expected n, block >= 1, k_v, k_s >= 0 and k_v + k_s >= 1, got {n}, {k_v}, {k_s}, {block}")
    first_row = np.arange(0, n, block, dtype=np.int64)
    last_row = np.minimum(first_row + block - 1, n - 1)
    rows = last_row - first_row + 1
    band_start = np.maximum(first_row - k_s + 1, 0) if k_s else last_row + 1
    band = last_row - band_start + 1
    verticals = np.minimum(k_v, band_start)
    return int(np.sum(rows * (band + verticals)))


def vertical_slash_density(n: int, k_v: int, k_s: int, block: int = 64) -> float:
    """Kept points of the vertical-slash kernel over the causal points n (n + 1) / 2 (1 - sparsity)."""
    return vertical_slash_kept_points(n, k_v, k_s, block) / (n * (n + 1) / 2)
