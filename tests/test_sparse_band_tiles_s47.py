"""A sparse head's key tiles against a brute force over its mask (auditor 606): a query block's band reaches the
k_s nearest diagonals, offsets 0..k_s - 1, so the lowest key of block i's rows is 64 i - (k_s - 1), and the band
spans ceil((k_s - 1) / 64) + 1 aligned 64-key blocks; the model had counted ceil(k_s / 64) + 1, one tile more
whenever k_s = 1 (mod 64) (k_s 65 at 2048 tokens: 122 tiles, 93 by brute force). An A-shape's window likewise
(query p sees key m when p - m < window): ceil((window - 1) / 64) + 1 blocks."""

from __future__ import annotations

import numpy as np
import pytest

from archsim.model.gpu_sparse import SparsePattern, key_tiles

BLOCK = 64


def _band_blocks(n: int, reach: int) -> np.ndarray:
    """Per query block, the aligned key blocks any of its rows p sees at p - m < reach (m <= p), by brute force."""
    blocks = -(-n // BLOCK)
    out = np.zeros(blocks, dtype=int)
    for i in range(blocks):
        seen = set()
        for p in range(i * BLOCK, min(n, (i + 1) * BLOCK)):
            for m in range(max(0, p - reach + 1), p + 1):
                seen.add(m // BLOCK)
        out[i] = len(seen)
    return out


@pytest.mark.parametrize("k_s", [64, 65, 66, 100, 128, 129])
def test_a_slash_band_spans_the_blocks_its_diagonals_reach(k_s: int) -> None:
    n = 1024
    unmasked, masked = key_tiles(SparsePattern("vertical_slash", k_v=30, k_s=k_s), n)
    band = _band_blocks(n, k_s)
    # the first 30 columns (forced sinks) add one gathered tile where the band has not reached block 0
    first_band_block = np.arange(len(band)) - band + 1
    columns = (first_band_block > 0).astype(int)
    assert np.array_equal(unmasked + masked, band + columns)


@pytest.mark.parametrize("window", [1, 64, 65, 129, 1000])
def test_an_a_shape_window_spans_the_blocks_it_reaches(window: int) -> None:
    n = 1024
    unmasked, masked = key_tiles(SparsePattern("a_shape", sinks=0, window=window), n)
    assert np.array_equal(unmasked + masked, _band_blocks(n, window))
