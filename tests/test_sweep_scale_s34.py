"""Sweep reports at scale (audit of 10k-100k point sweeps): a heat map holds the work (seq_len, batch) at one value
and counts the points behind each cell; the Pareto front is O(n log n) for two objectives and identical to the
brute-force definition; ties on the front are counted as distinct objective vectors; sensitivity tick labels do not
overlap; a scatter of thousands of points is rasterised."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from archsim.dse.pareto import pareto_mask
from archsim.report import sweep_figures
from archsim.report.sweep import value_label
from archsim.report.sweep_page import write_sweep_report

X, Y, SEQ = "arch.units.array2d.size", "arch.memories.GlobalBuffer.capacity_bytes", "workload.seq_len"


# ------------------------------------------------------------------------------------------------ 1: heat map
def _records(points: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Feasible records at (x, y, seq_len) with latency = seq_len x (10 + x) x (1 + 1/y): a larger seq_len is always
    slower, so a cell whose points lack the shortest one would read as slower when the work is free."""
    rows = [{"key": f"k{i}", "target_kind": "architecture", "target": "fusemax", X: x, Y: y, SEQ: s,
             "feasible": True, "reason": None, "latency_s": s * (10 + x) * (1 + 1 / y), "energy_pj": s * 1e3 / y,
             "constraint_ok": True}
            for i, (x, y, s) in enumerate(points)]
    return pd.DataFrame(rows)


def test_heatmap_holds_the_work_and_counts_the_points_behind_each_cell(tmp_path) -> None:
    """A random-like sample: seq_len 1024 has 5 points, 4096 has 4 (so 1024 is held); cell (x 2, y 8) has only a
    4096 point. Free work made that cell the best of a 4x larger workload (latency 4096 x 12 x 1.125 = 55296 beside
    1024 x 12 x 1.5 = 18432); held, it is blank with 0 points, and every other cell is its 1024 point's latency."""
    sample = [(1, 2, 1024), (1, 2, 1024), (1, 8, 1024), (2, 2, 1024), (1, 2, 1024),
              (2, 8, 4096), (1, 8, 4096), (2, 2, 4096), (1, 2, 4096)]
    out = tmp_path / "report"
    write_sweep_report(_records(sample), out, "sample", ("latency_s", "energy_pj"))
    cells = pd.read_csv(out / "heatmap_array2d-size_GlobalBuffer-capacity_bytes.csv")
    assert list(cells.columns) == ["array2d.size", "GlobalBuffer.capacity_bytes", "latency_s", "points",
                                     "points_breaking_constraints", "seq_len"]
    assert (cells.seq_len == 1024).all()
    got = {(r["array2d.size"], r["GlobalBuffer.capacity_bytes"]): (r.latency_s, r.points) for _, r in cells.iterrows()}
    expected = {(1, 2): (1024 * 11 * 1.5, 3), (1, 8): (1024 * 11 * 1.125, 1), (2, 2): (1024 * 12 * 1.5, 1)}
    for cell, (latency, points) in expected.items():
        assert got[cell][0] == pytest.approx(latency, rel=1e-12) and got[cell][1] == points
    assert np.isnan(got[(2, 8)][0]) and got[(2, 8)][1] == 0
    page = (out / "index.html").read_text()
    assert "but the work, held at seq_len 1024" in page and "each shows its number" in page


def test_heatmap_of_a_grid_holds_the_first_work_value_and_states_the_points_per_cell(tmp_path) -> None:
    """A full grid: every seq_len has as many points, so the first (1024) is held; each cell has one point, which
    the page states once (no number in the cells)."""
    grid = [(x, y, s) for x in (1, 2) for y in (2, 8) for s in (4096, 1024)]
    out = tmp_path / "report"
    write_sweep_report(_records(grid), out, "grid", ("latency_s", "energy_pj"), {X: [1, 2], Y: [2, 8],
                                                                               SEQ: [1024, 4096]})
    cells = pd.read_csv(out / "heatmap_array2d-size_GlobalBuffer-capacity_bytes.csv")
    assert (cells.seq_len == 1024).all() and (cells.points == 1).all()
    assert cells.latency_s.tolist() == pytest.approx([1024 * (10 + x) * (1 + 1 / y) for x in (1, 2) for y in (2, 8)])
    assert "Each cell is the best of 1 feasible point." in (out / "index.html").read_text()


# ------------------------------------------------------------------------------------------------ 2: Pareto front
def _brute_force(df: pd.DataFrame, objectives: list[str]) -> np.ndarray:
    """The definition: a candidate (finite, feasible) no other candidate dominates (no worse in every objective,
    better in one), maximised objectives negated."""
    signs = np.array([-1.0 if o in ("throughput_tok_s", "efficiency") else 1.0 for o in objectives])
    values = df[objectives].to_numpy(dtype=float) * signs
    valid = np.isfinite(values).all(axis=1) & df.feasible.to_numpy(dtype=bool)
    out = np.zeros(len(df), dtype=bool)
    for i in np.flatnonzero(valid):
        others = values[valid]
        out[i] = not ((others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)).any()
    return out


@pytest.mark.parametrize("seed", range(40))
def test_pareto_mask_is_the_brute_force_front_with_ties_nans_and_maximised_objectives(seed: int) -> None:
    """Random integer costs 0..5 (many ties, equal vectors), some NaN and some infeasible rows, 2 to 4 objectives of
    which some maximised: the mask is the definition's, row for row."""
    rng = np.random.default_rng(seed)
    objectives = list(rng.choice(["latency_s", "energy_pj", "throughput_tok_s", "efficiency", "area_um2"],
                                 size=2 + seed % 3, replace=False))
    n = int(rng.integers(1, 400))
    df = pd.DataFrame(rng.integers(0, 6, size=(n, len(objectives))).astype(float), columns=objectives)
    df.iloc[rng.integers(0, n, size=n // 10), int(rng.integers(0, len(objectives)))] = np.nan
    df["feasible"] = rng.random(n) > 0.1
    assert pareto_mask(df, objectives).to_numpy().tolist() == _brute_force(df, objectives).tolist()


# ------------------------------------------------------------------------------------------------ 3: ties
def test_pareto_legend_counts_distinct_objective_vectors() -> None:
    """Four front points with two distinct (latency, energy) vectors (an axis that changes neither)."""
    rows = pd.DataFrame({"key": list("abcde"), "target": "fusemax", "latency_s": [1.0, 1.0, 2.0, 2.0, 3.0],
                         "energy_pj": [4.0, 4.0, 2.0, 2.0, 5.0], "constraint_ok": True})
    rows["on_front"] = pareto_mask(rows, ["latency_s", "energy_pj"])
    fig = sweep_figures.pareto_figure(rows, ("latency_s", "energy_pj"), 0, "t")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[-1] == "Pareto front: 4 points (2 distinct objective vectors)"


def test_sweep_summary_counts_distinct_objective_vectors(tmp_path, cli) -> None:
    """DRAM bandwidth changes neither FuseMax's area nor its DRAM traffic: both points are on the front over them,
    with one objective vector."""
    spec = {"name": "ties", "mapping": "fusemax", "workload": "bert-base",
            "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [107374182400, 429496729600],
                     "workload.seq_len": [1024]},
            "objectives": ["area_um2", "dram_traffic_bytes"]}
    (tmp_path / "ties.yaml").write_text(yaml.safe_dump(spec))
    out = cli("sweep", str(tmp_path / "ties.yaml"), "--db", str(tmp_path / "ties.sqlite"), "--local").output
    assert "Pareto front over (area_um2, dram_traffic_bytes): 2 points (1 distinct objective vector)\n" in out


# ------------------------------------------------------------------------------------------------ 4: figures
def test_sensitivity_tick_labels_do_not_overlap() -> None:
    """14 buffer sizes (256 KiB to 64 MiB) on a log axis: 3, 4 and 6 MiB sat on top of each other."""
    sizes = [2**18, 2**19, 2**20, 2**21, 3 * 2**20, 2**22, 6 * 2**20, 2**23, 12 * 2**20, 2**24, 24 * 2**20, 2**25,
             48 * 2**20, 2**26]
    rows = pd.DataFrame([{"axis": Y, "value": v, "value_label": value_label(Y, v), "objective": o,
                          "median": 2.0 + i, "best": 1.0 + i, "points": 3}
                         for i, v in enumerate(sizes) for o in ("latency_s", "energy_pj")])
    fig = sweep_figures.sensitivity_figure(rows, ("latency_s", "energy_pj"), "t")
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = sorted((t.get_window_extent(renderer) for t in fig.axes[-1].get_xticklabels() if t.get_text()),
                   key=lambda box: box.x0)
    assert len(boxes) >= 5  # thinned, not emptied
    assert all(left.x1 <= right.x0 for left, right in itertools.pairwise(boxes))


def test_a_scatter_of_thousands_of_points_is_rasterised() -> None:
    n = 5000
    rows = pd.DataFrame({"key": [f"k{i}" for i in range(n)], "target": "fusemax", "latency_s": np.linspace(1, 2, n),
                         "energy_pj": np.linspace(2, 1, n) ** 2, "constraint_ok": True})
    rows["on_front"] = pareto_mask(rows, ["latency_s", "energy_pj"])
    fig = sweep_figures.pareto_figure(rows, ("latency_s", "energy_pj"), 0, "t")
    drawn = [c for c in fig.axes[0].collections if c.get_label() == "meets the constraints"]
    assert len(drawn) == 1 and drawn[0].get_rasterized()
