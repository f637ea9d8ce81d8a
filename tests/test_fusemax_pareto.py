"""FuseMax's area/latency design space (Fig. 12): buffer doubling from the minimum tile footprint."""

from __future__ import annotations

import pandas as pd
import pytest

from archsim.dse import fusemax_pareto
from archsim.dse.pareto import pareto_mask


@pytest.fixture(scope="module")
def bert() -> pd.DataFrame:
    return pd.DataFrame(fusemax_pareto.pareto_records(models=["BERT"]))


def test_every_pe_dim_starts_at_its_minimum_footprint_and_ends_compute_bound(bert) -> None:
    for pe_dim, rows in bert.groupby("pe_dim"):
        # One d-query tile resident: Q, K, V tiles (d x 64 each), RNV (d x 64), RM and RD (d each), plus the
        # running max handed from the 1-D to the 2-D array (d), 2 bytes a word.
        assert rows.buffer_bytes.iloc[0] == 2 * (4 * pe_dim * 64 + 3 * pe_dim)
        assert list(rows.buffer_bytes) == [rows.buffer_bytes.iloc[0] * 2**i for i in range(len(rows))]
        assert rows.compute_bound.iloc[-1] and not rows.compute_bound.iloc[:-1].any()
        assert rows.feasible.all()


def test_latency_falls_and_area_grows_with_the_array(bert) -> None:
    last = bert.groupby("pe_dim").last()
    assert last.latency_s.is_monotonic_decreasing and last.area_um2.is_monotonic_increasing
    # Compute bound: 4x the PEs, ~4x faster (the 1-D array's share shrinks with d, so a little better).
    for small, big in zip(last.index[:-1], last.index[1:], strict=True):
        assert 3.5 < last.latency_s[small] / last.latency_s[big] < 4.5


def test_pareto_mask() -> None:
    df = pd.DataFrame({"a": [1, 2, 3, 2, None], "b": [3, 2, 1, 3, 0]})
    assert list(pareto_mask(df, ["a", "b"])) == [True, True, True, False, False]
