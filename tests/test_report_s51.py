"""Report auditor s51A's findings on sweep reports: a sparse store whose every point has an axis that does not
apply to it (NaN: `sparse_spec.sparse_point`) crashed `report --sweep` (the sensitivity figure had no column); a point
left every sensitivity panel when any one axis did not apply to it (the demo's seq_len panel counted the
architecture alone, the GPU presets' best beside it); a system sweep's Pareto figure and summary called its TBT p99
"latency (s)"; and every Pareto caption said "minimised (a throughput maximised)" whatever the objectives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.report import sweep, sweep_figures, sweep_page

METHOD, BUDGET, CONTEXT = "sparse.method", "sparse.budget", "sparse.context"
PE, SEQ = "arch.units.array2d.shape_side", "workload.seq_len"


def _texts(fig) -> str:
    return " ".join(" ".join(t.get_text().split()) for t in fig.findobj(lambda a: hasattr(a, "get_text")))


# ------------------------------------------------------------------------------------------------ 1: no crash
def test_a_sparse_store_whose_every_point_lacks_an_axis_is_reported(tmp_path: Path) -> None:
    """Quest takes a budget and no retrieval fraction, RazorAttention a retrieval fraction and no budget,
    TokenSelect neither (its own top_k): 2 + 2 + 1 = 5 points, each with a NaN axis. The report had exited 1
    (`Number of columns must be a positive integer, not 0`)."""
    spec = {"name": "sp3", "sparse": {"gpu": "h100-sxm5", "workload": "llama3-8b", "context": 32768},
            "axes": {METHOD: ["quest", "tokenselect", "razorattention"], BUDGET: [512, 2048],
                     "sparse.retrieval_fraction": [0.25, 0.5]}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    runner = CliRunner()
    done = runner.invoke(main, ["sweep", str(tmp_path / "a.yaml"), "--db", str(tmp_path / "a.sqlite")])
    assert done.exit_code == 0, done.output
    for extra in ([], ["--spec", str(tmp_path / "a.yaml")]):
        out = tmp_path / f"rep{len(extra)}"
        done = runner.invoke(main, ["report", "--sweep", str(tmp_path / "a.sqlite"), "--out", str(out), *extra])
        assert done.exit_code == 0, done.output
        rows = pd.read_csv(out / "sensitivity.csv", dtype={"value_label": str})
        latency = rows[rows.objective == "latency_s"].set_index(["axis", "value_label"]).points
        # each method's points, each budget's the Quest point at it, each fraction's the RazorAttention one
        assert latency.to_dict() == {(METHOD, "quest"): 2, (METHOD, "tokenselect"): 1,
                                     (METHOD, "razorattention"): 2, (BUDGET, "512"): 1, (BUDGET, "2048"): 1,
                                     ("sparse.retrieval_fraction", "0.25"): 1, ("sparse.retrieval_fraction", "0.5"): 1}
        assert (out / "heatmap_method_budget.png").stat().st_size > 0


def test_a_sensitivity_figure_with_nothing_to_draw_says_so() -> None:
    empty = sweep.sensitivity_rows(pd.DataFrame(columns=["key", "feasible", "constraint_ok", METHOD, "latency_s"]),
                                   ["latency_s"])
    assert empty.empty
    assert "no axis value has a point to draw" in _texts(sweep_figures.sensitivity_figure(empty, ["latency_s"], "t"))
    df = pd.DataFrame({"key": ["a"], "feasible": [False], "constraint_ok": [True], METHOD: ["quest"],
                       "latency_s": [np.nan]})
    fig = sweep_figures.sensitivity_figure(sweep.sensitivity_rows(df, ["latency_s"]), ["latency_s"], "t")
    assert "no feasible point within the constraints" in _texts(fig)


def test_a_heat_map_names_the_points_its_axes_do_not_apply_to() -> None:
    """Two Quest points fill (quest, 512) and (quest, 2048); TokenSelect's has no budget: left out, and said."""
    df = pd.DataFrame({"key": ["q1", "q2", "t"], "target_kind": "sparse", "target": ["q", "q", "t"],
                       METHOD: ["quest", "quest", "tokenselect"], BUDGET: [512.0, 2048.0, np.nan],
                       "feasible": True, "constraint_ok": True, "latency_s": [2.0, 3.0, 1.0]})
    heatmap = sweep.heatmap_table(df, METHOD, BUDGET)
    assert heatmap.best.loc["quest"].tolist() == [2.0, 3.0]
    assert heatmap.best.loc["tokenselect"].isna().all()
    assert heatmap.not_applying == 1
    assert "1 feasible point an axis does not apply to, not drawn" in _texts(
        sweep_figures.heatmap_figure(heatmap, "t"))


# ------------------------------------------------------------------------------------------------ 2: per axis
def _mixed() -> pd.DataFrame:
    """Two architecture points at seq_len 4096 (latency 0.03 s and 0.1 s, area 2 and 1) and a GPU preset at 4096
    (0.009 s, no area, no `arch.` axis)."""
    return pd.DataFrame({"key": ["a", "b", "g"], "target_kind": ["architecture", "architecture", "gpu"],
                         "target": ["fusemax", "fusemax", "b200"], PE: [256.0, 64.0, np.nan],
                         SEQ: [4096, 4096, 4096], "feasible": True, "constraint_ok": True,
                         "latency_s": [0.03, 0.1, 0.009], "area_um2": [2.0, 1.0, np.nan]})


def test_a_point_leaves_only_the_panels_of_the_axes_that_do_not_apply_to_it() -> None:
    """The demo's seq_len 4096 panel read best 0.0297 s over 33 architecture points, while the summary's best there
    was b200's 0.008823 s: the GPU presets, which have no `arch.` value, had left every panel."""
    rows = sweep.sensitivity_rows(_mixed(), ["latency_s", "area_um2"]).set_index(["axis", "value", "objective"])
    assert rows.loc[(SEQ, 4096, "latency_s"), "best"] == 0.009  # the GPU preset's
    assert rows.loc[(SEQ, 4096, "latency_s"), "points"] == 3
    assert rows.loc[(SEQ, 4096, "latency_s"), "median"] == 0.03  # of 0.009, 0.03, 0.1
    assert rows.loc[(SEQ, 4096, "area_um2"), "points"] == 2  # the GPU has no area: not counted
    assert rows.loc[(PE, 256, "latency_s"), "points"] == 1 and rows.loc[(PE, 64, "latency_s"), "best"] == 0.1


def test_a_method_without_a_budget_keeps_its_method_and_context_rows() -> None:
    """Quest at budgets 512 and 2048, TokenSelect (no budget) once, each at contexts 32768 and 65536: TokenSelect
    had no row at all, and the context rows counted Quest alone."""
    df = pd.DataFrame({"key": list("abcdef"), "target_kind": "sparse",
                       METHOD: ["quest", "quest", "tokenselect"] * 2, BUDGET: [512.0, 2048.0, np.nan] * 2,
                       CONTEXT: [32768] * 3 + [65536] * 3, "feasible": True, "constraint_ok": True,
                       "latency_s": [4.0, 5.0, 3.0, 8.0, 9.0, 6.0]})
    rows = sweep.sensitivity_rows(df, ["latency_s"]).set_index(["axis", "value"])
    assert rows.loc[(METHOD, "tokenselect"), "best"] == 3.0 and rows.loc[(METHOD, "tokenselect"), "points"] == 2
    assert rows.loc[(CONTEXT, 32768), "points"] == 3 and rows.loc[(CONTEXT, 32768), "best"] == 3.0
    assert rows.loc[(BUDGET, 512), "points"] == 2  # Quest's two contexts
    assert sweep.not_applying(df) == {BUDGET: 2}
    fig = sweep_figures.sensitivity_figure(sweep.sensitivity_rows(df, ["latency_s"]), ["latency_s"], "t",
                                           sweep.not_applying(df))
    assert "leaves out 2 points it does not apply to" in _texts(fig)


def test_the_sensitivity_caption_says_what_each_panel_counts(tmp_path: Path) -> None:
    page = sweep_page.write_sweep_report(_mixed().assign(reason=None), tmp_path / "r", "t",
                                         ["latency_s", "area_um2"]).read_text()
    assert "every point that axis applies to" in page
    assert "a point an axis does not apply to" in page


# ------------------------------------------------------------------------------------------------ 3: labels
def _system() -> pd.DataFrame:
    return pd.DataFrame({"key": ["a", "b"], "target_kind": "system", "target": "vllm-h100",
                         "linked.gpus": [4, 8], "feasible": True, "constraint_ok": True, "reason": None,
                         "latency_s": [0.03, 0.02], "tbt_p99_s": [0.03, 0.02], "energy_pj": [7e13, 3e13],
                         "throughput_tok_s": [100.0, 200.0], "efficiency": [0.9, 0.8]})


@pytest.mark.parametrize("kind, latency, energy", [
    ("system", "TBT p99 (s)", "energy per output token (pJ)"),  # system_points: latency_s, energy_pj
    ("architecture", "latency (s)", "energy (pJ)"),
])
def test_one_labelling_rule_by_record_kind(kind: str, latency: str, energy: str) -> None:
    df = _system().assign(target_kind=kind)
    objectives = ["latency_s", "energy_pj"]
    fig = sweep_figures.pareto_figure(sweep.pareto_rows(df, objectives), objectives, 0, "t")
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == (latency, energy)
    summary = sweep.summary_rows(df, objectives, labels=True).set_index("objective")
    assert summary.metric.tolist() == [latency, energy]
    assert sweep.summary_rows(df, objectives).set_index("objective").metric.tolist() == [latency, energy]
    sensitivity = sweep_figures.sensitivity_figure(sweep.sensitivity_rows(df, objectives), objectives, "t",
                                                   kind=sweep.records_kind(df))
    assert [ax.get_ylabel() for ax in sensitivity.axes] == [latency, energy]
    assert sweep.metric_label("tbt_p99_s", kind) == "TBT p99 (s)"  # the heat map's metric on a system page


def test_the_pareto_caption_names_each_objectives_direction(tmp_path: Path) -> None:
    page = sweep_page.write_sweep_report(_system(), tmp_path / "r", "t", ["latency_s", "efficiency"]).read_text()
    assert "minimised (a throughput maximised)" not in page
    assert "latency_s minimised and efficiency maximised" in page
    assert sweep.directions_text(["latency_s", "energy_pj", "area_um2"]) == "each minimised"
    assert sweep.directions_text(["throughput_tok_s", "speedup"]) == "each maximised"
    assert sweep.directions_text(["latency_s", "max_context_tokens", "energy_pj"]) == (
        "latency_s and energy_pj minimised, max_context_tokens maximised")


def test_the_system_pages_figures_and_summary_call_latency_tbt_p99(tmp_path: Path) -> None:
    page = sweep_page.write_sweep_report(_system(), tmp_path / "r", "t", ["latency_s", "energy_pj"]).read_text()
    assert "TBT p99 (s)" in page and "energy per output token (pJ)" in page
    summary = pd.read_csv(tmp_path / "r" / "summary.csv").set_index("objective")
    assert summary.loc["latency_s", "metric"] == "TBT p99 (s)"
    assert not math.isnan(summary.loc["latency_s", "best"])
