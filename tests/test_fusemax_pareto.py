"""FuseMax's area/latency design space (Fig. 12): buffer doubling from the minimum tile footprint."""

from __future__ import annotations

import pandas as pd
import pytest

from archsim.dse import fusemax_pareto
from archsim.dse.pareto import pareto_mask


@pytest.fixture(scope="module")
def bert() -> pd.DataFrame:
    return pd.DataFrame(fusemax_pareto.pareto_records(models=["BERT"]))


def test_every_pe_dim_starts_at_the_artifacts_buffer_and_ends_compute_bound(bert) -> None:
    for pe_dim, rows in bert.groupby("pe_dim"):
        # get_l3_sz (fusemax-area.md s1): 16 x d x E bytes, doubled while DRAM-bound; the artifact ends at m = 2
        # for d = 512 and m = 1 below. Every size, the start included, holds the mapping the mapper picks
        # (feasible: its global-buffer footprint within the capacity, `model.analytical`).
        start = 16 * pe_dim * 64
        assert rows.buffer_bytes.iloc[0] == start
        assert list(rows.buffer_bytes) == [start * 2**i for i in range(len(rows))]
        assert len(rows) == (2 if pe_dim == 512 else 1)
        assert rows.compute_bound.iloc[-1] and not rows.compute_bound.iloc[:-1].any()
        assert rows.feasible.all()


@pytest.mark.parametrize(("pe_dim", "head_dim", "buffer_bytes", "area_um2"), [
    (16, 64, 16 << 10, 5441230.48908),     # fusemax-area.md s5, the artifact's Fig. 12 row, BERT/TrXL/T5
    (128, 64, 128 << 10, 307907612.38012),  # idem
])
def test_fig12_area_is_the_artifacts(pe_dim: int, head_dim: int, buffer_bytes: int, area_um2: float) -> None:
    """The README: BERT's Fig. 12 areas are equal to the artifact's rows at d = 16 and 128."""
    assert fusemax_pareto.fig12_area_um2(pe_dim, head_dim, buffer_bytes) == pytest.approx(area_um2, rel=1e-9)


def test_fig12_area_by_hand_at_16() -> None:
    """d = 16, E = 64: t = 2, 2-D RF depth 4 and 1-D RF depth 16, both priced as 64 x 32-bit files (262.36 um^2 an
    entry) plus two address generators (2 and 4 bits at 5.81742 um^2 a bit, twice); buffer 53741.5 + 9 x 11.63484."""
    rf2, rf1 = 262.36 * 64 + 2 * 11.63484, 262.36 * 64 + 4 * 11.63484
    pe, lane = rf2 + 49.28944 + 1545.0, rf1 + 49.28944 + 1545.0 + 23740.9375
    expected = 256 * pe + 16 + 2 + 53741.5 + 9 * 11.63484 + 16 * lane
    assert fusemax_pareto.fig12_area_um2(16, 64, 16 << 10) == pytest.approx(expected, rel=1e-12)


def test_fig12_area_refuses_an_untabulated_buffer() -> None:
    with pytest.raises(ValueError, match="no CACTI area for a 4096 B buffer of 256-bit rows"):
        fusemax_pareto.fig12_area_um2(16, 64, 4096)


def test_latency_falls_and_area_grows_with_the_array(bert) -> None:
    last = bert.groupby("pe_dim").last()
    assert last.latency_s.is_monotonic_decreasing and last.area_um2.is_monotonic_increasing
    # Compute bound: 4x the PEs, ~4x faster (the 1-D array's share shrinks with d, so a little better).
    for small, big in zip(last.index[:-1], last.index[1:], strict=True):
        assert 3.5 < last.latency_s[small] / last.latency_s[big] < 4.5


def test_pareto_mask() -> None:
    df = pd.DataFrame({"a": [1, 2, 3, 2, None], "b": [3, 2, 1, 3, 0]})
    assert list(pareto_mask(df, ["a", "b"])) == [True, True, True, False, False]


def test_fig12_latency_at_256_is_fusemax_at_256k(bert) -> None:
    """At d = 256 the compute-bound point is FuseMax's 256 x 256 design at 256K tokens with a smaller buffer; the
    buffer only moves DRAM time, so its latency is attn-binding.csv's BERT 256K row (118.2793728 s), within the
    0.06 % the README claims for FuseMax's attention latencies."""
    last = bert.groupby("pe_dim").last()
    assert last.latency_s[256] == pytest.approx(118.2793728, rel=0.0006)
