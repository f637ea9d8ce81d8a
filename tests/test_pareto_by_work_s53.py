"""A sweep's Pareto front is taken per work (s53): the points are grouped by their values of the sweep's work axes
(`report.sweep.work_axes`: a sequence length, a batch; the heat map's rule), and `on_front` means on the front of the
point's own work. Over the lengths together only the smallest length could be on the front (the demo's 22 front
points were all at 4096 of 4096-262144), so a 16K design that no 16K design dominates was off it, and the buffer axis
(1 vs 16 MiB: 4.5x the DRAM traffic at 16K) never reached it. The summary of `archsim sweep`, `archsim results
--front` and `archsim report --sweep` (its count line, pareto.csv, the best point per objective) take it the same
way (`dse.pareto.pareto_mask_by`); a sweep with no work axis has one front, as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.pareto import pareto_mask, pareto_mask_by
from archsim.report import sweep, sweep_figures

SEQ = "workload.seq_len"
BUFFER, DRAM = "arch.memories.GlobalBuffer.capacity_bytes", "arch.memories.DRAM.bandwidth_bytes_per_s"
OBJECTIVES = ["latency_s", "energy_pj"]
# FuseMax on BERT-base: at 4096 both buffers reach the same latency, the 16 MiB one at less energy and more area; at
# 16384 the 1 MiB buffer streams K and V 4.5x as often (more DRAM energy), so a 16K front has both buffers.
SPEC = {"name": "by-work", "mapping": "fusemax", "workload": "bert-base",
        "axes": {BUFFER: [1048576, 16777216], DRAM: [26843545600, 429496729600], SEQ: [4096, 16384]},
        "objectives": ["latency_s", "energy_pj", "area_um2"]}


def _points(rows: list[tuple]) -> pd.DataFrame:
    """Records of (seq_len, latency_s, energy_pj), feasible and within the constraints."""
    return pd.DataFrame([{"key": f"k{i}", "target": "fusemax", SEQ: n, "latency_s": t, "energy_pj": e,
                          "feasible": True, "constraint_ok": True} for i, (n, t, e) in enumerate(rows)])


# ------------------------------------------------------------------------------------------------ the function
def test_each_length_has_its_own_front() -> None:
    """At 16384 the point (8, 12) is dominated only by 4096 points: on the 16K front, as is the 16K point of least
    latency; (12, 12) is dominated by the 16K point (10, 10). Over both lengths together only 4096 points were on
    it."""
    df = _points([(4096, 1.0, 1.0), (4096, 2.0, 2.0), (16384, 10.0, 10.0), (16384, 8.0, 12.0), (16384, 12.0, 12.0)])
    assert pareto_mask_by(df, OBJECTIVES, [SEQ]).tolist() == [True, False, True, True, False]
    assert pareto_mask(df, OBJECTIVES).tolist() == [True, False, False, False, False]  # the old mixed front


def test_no_work_axis_gives_the_front_of_before() -> None:
    rng = np.random.default_rng(53)
    df = pd.DataFrame(rng.integers(0, 6, size=(60, 3)).astype(float), columns=[*OBJECTIVES, "area_um2"])
    df = df.assign(feasible=rng.random(60) > 0.1, constraint_ok=rng.random(60) > 0.1)
    objectives = [*OBJECTIVES, "area_um2"]
    assert pareto_mask_by(df, objectives, []).tolist() == pareto_mask(df, objectives).tolist()
    assert sweep.front_work(df) == [] and sweep.fronts_text([]) == ""


def test_a_point_missing_a_work_value_is_ranked_with_the_others_missing_it() -> None:
    """NaN in a work axis (an axis that does not apply to the point's target, after the base's values are filled):
    those points are a work of their own, not dropped and not ranked against every length."""
    df = _points([(4096, 1.0, 1.0), (np.nan, 5.0, 5.0), (np.nan, 6.0, 6.0), (np.nan, 4.0, 7.0)])
    assert pareto_mask_by(df, OBJECTIVES, [SEQ]).tolist() == [True, True, False, True]


def test_infeasible_points_and_points_breaking_a_constraint_stay_off_every_front() -> None:
    df = _points([(4096, 1.0, 1.0), (16384, 10.0, 10.0), (16384, 8.0, 8.0), (16384, 9.0, 7.0)])
    df.loc[2, "feasible"] = False
    df.loc[3, "constraint_ok"] = False
    assert pareto_mask_by(df, OBJECTIVES, [SEQ]).tolist() == [True, True, False, False]


def test_the_report_rows_take_the_front_per_work_axis() -> None:
    """`pareto_rows` (pareto.csv, the figure, the count line) groups by the records' work axes: a sequence length by
    its name, a linked axis by the sweep's word (`attrs`), not by a hardware axis."""
    df = _points([(4096, 1.0, 1.0), (16384, 10.0, 10.0), (16384, 8.0, 12.0)]).assign(**{BUFFER: [1, 1, 2]})
    assert sweep.front_work(df) == [SEQ]
    assert sweep.pareto_rows(df, OBJECTIVES).on_front.tolist() == [True, True, True]
    assert sweep.fronts_text([SEQ]) == f", one per {SEQ}"
    linked = df.rename(columns={SEQ: "linked.tokens"})
    assert sweep.pareto_rows(linked, OBJECTIVES).on_front.tolist() == [True, False, False]
    linked.attrs["work_axes"] = ["linked.tokens"]
    assert sweep.pareto_rows(linked, OBJECTIVES).on_front.tolist() == [True, True, True]


# ------------------------------------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`archsim sweep`, `archsim report --sweep` and `archsim results --front` on SPEC: (sweep output, report
    output, report folder, the front's CSV)."""
    root = tmp_path_factory.mktemp("by_work")
    spec, db = root / "by-work.yaml", root / "s.sqlite"
    spec.write_text(yaml.safe_dump(SPEC))
    runner = CliRunner()
    swept = runner.invoke(main, ["sweep", str(spec), "--db", str(db), "--local"])
    assert swept.exit_code == 0, swept.output
    reported = runner.invoke(main, ["report", "--sweep", str(db), "--spec", str(spec), "--out", str(root / "rep")])
    assert reported.exit_code == 0, reported.output
    exported = runner.invoke(main, ["results", str(db), "--csv", str(root / "front.csv"),
                                    "--front", "latency_s,energy_pj,area_um2"])
    assert exported.exit_code == 0, exported.output
    return swept.output, reported.output, root / "rep", pd.read_csv(root / "front.csv")


def test_a_16k_design_no_16k_design_dominates_is_on_the_front(runs) -> None:
    """pareto.csv: at 16384 the 16 MiB buffer has the least energy and the 1 MiB one the least area (same latency),
    so both are on the 16K front; over both lengths no 16K point was."""
    pareto = pd.read_csv(runs[2] / "pareto.csv")
    long = pareto[pareto.seq_len == 16384] if "seq_len" in pareto else pareto[pareto[SEQ] == 16384]
    front = long[long.on_front]
    assert long.loc[long.energy_pj.idxmin(), "on_front"]
    assert set(front[BUFFER]) == {1048576, 16777216}
    assert (front[DRAM] == 429496729600).any()  # the 1 MiB design needs the fast DRAM to keep up
    assert set(runs[3][SEQ]) == {4096, 16384}  # results --front: both lengths' fronts
    assert len(runs[3]) == int(pareto.on_front.sum())


def test_the_summary_lines_name_the_grouping(runs) -> None:
    swept, reported = runs[0], runs[1]
    fronts = int(pd.read_csv(runs[2] / "pareto.csv").on_front.sum())
    assert (f"Pareto fronts over (latency_s, energy_pj, area_um2), one per {SEQ}: {fronts} points") in swept
    assert (f"{fronts} on the Pareto fronts of latency_s x energy_pj x area_um2, one per {SEQ}\n") in reported
    # the best point per objective is per length too: one line per length and objective
    assert sum(line.startswith("best latency_s: ") for line in swept.splitlines()) == 2


def test_the_best_point_per_objective_is_per_work(runs) -> None:
    summary = pd.read_csv(runs[2] / "summary.csv")
    assert summary[["objective", "seq_len"]].values.tolist() == [
        [o, n] for n in (4096, 16384) for o in ("latency_s", "energy_pj", "area_um2")]
    assert "per seq_len" in (runs[2] / "index.html").read_text()


def test_a_sweep_without_a_work_axis_keeps_one_front(tmp_path) -> None:
    data = {**SPEC, "name": "one-work", "axes": {BUFFER: SPEC["axes"][BUFFER], DRAM: SPEC["axes"][DRAM]}}
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(data))
    swept = CliRunner().invoke(main, ["sweep", str(tmp_path / "one.yaml"), "--db", str(tmp_path / "o.sqlite"),
                                      "--local"])
    assert swept.exit_code == 0, swept.output
    assert "Pareto front over (latency_s, energy_pj, area_um2): " in swept.output
    assert "one per" not in swept.output


# ------------------------------------------------------------------------------------------------ the figure
def test_the_pareto_figure_has_a_panel_per_work_value(runs) -> None:
    """One panel per length, each titled by it, with its own front ringed; the caption says the fronts are per
    length and that a front point may look dominated in two dimensions."""
    df = pd.read_csv(runs[2] / "pareto.csv").rename(columns={"seq_len": SEQ, "GlobalBuffer.capacity_bytes": BUFFER,
                                                             "DRAM.bandwidth_bytes_per_s": DRAM})
    fig = sweep_figures.pareto_figure(df, SPEC["objectives"], 0, "t", [SEQ])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["seq_len 4096", "seq_len 16384"]
    caption = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "a panel per seq_len: the Pareto fronts are per work" in caption and "third objective" in caption


def _figure_rows() -> pd.DataFrame:
    """`pareto_rows`-shaped rows of two lengths: at each, three designs on the front (a buffer each) and one that
    breaks a constraint at the very place of the first front point; a design off the front."""
    rows = []
    for n in (4096, 16384):
        scale = n / 4096
        for buffer, t, e, ok, front in ((1, 1.0, 9.0, True, True), (2, 2.0, 5.0, True, True),
                                        (4, 4.0, 3.0, True, True), (8, 1.0, 9.0, False, False),
                                        (1, 5.0, 10.0, True, False)):
            rows.append({"key": f"k{len(rows)}", "target_kind": "architecture", "target": "fusemax", SEQ: n,
                         BUFFER: buffer * 2**20, "latency_s": t * scale, "energy_pj": e * scale * 1e12,
                         "constraint_ok": ok, "on_front": front})
    return pd.DataFrame(rows)


def test_a_front_point_is_drawn_over_a_point_breaking_a_constraint_at_its_place() -> None:
    """The '×' of a point breaking a constraint was drawn over the front point at the same place."""
    fig = sweep_figures.pareto_figure(_figure_rows(), OBJECTIVES, 0, "t", [SEQ])
    ax = fig.axes[0]
    cross = next(c for c in ax.collections if c.get_label() == "breaks a constraint")
    at_cross = [c for c in ax.collections if c is not cross and c.get_label() != "breaks a constraint"
                and any(tuple(xy) == (1.0, 9e12) for xy in c.get_offsets().tolist())]
    assert at_cross and all(c.get_zorder() > cross.get_zorder() for c in at_cross)  # the point and its ring


def test_the_legend_names_only_what_is_drawn_once() -> None:
    """Two panels: each label once; no front entry where no point is on a front; no marker of an absent value."""
    rows = _figure_rows()
    fig = sweep_figures.pareto_figure(rows, OBJECTIVES, 0, "t", [SEQ])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == len(set(labels)) and "breaks a constraint" in labels
    assert "GlobalBuffer.capacity_bytes 8 MiB" not in labels  # its one point breaks a constraint: a cross
    alone = sweep_figures.pareto_figure(rows.assign(on_front=False), OBJECTIVES, 0, "t")
    assert not any("front" in t.get_text() for t in alone.axes[0].get_legend().get_texts())


@pytest.mark.parametrize("case", ["names fit", "names too long"])
def test_every_point_of_a_small_front_is_named(runs, case: str) -> None:
    """A small front's points had been named only where a name found a clear place (1 of 3 in the audit): each is
    named beside it or, where its name has no clear place (SPEC's two-axis names by the panel's edge), by a number
    there, the name in the caption."""
    rows = _figure_rows() if case == "names fit" else pd.read_csv(runs[2] / "pareto.csv")
    fig = sweep_figures.pareto_figure(rows, ["latency_s", "energy_pj"], 0, "t", [SEQ])
    caption = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    for ax in fig.axes[:2]:
        names = [t.get_text() for t in ax.texts]
        front = rows[rows.on_front & (rows[SEQ] == int(ax.get_title().split(":")[0].split()[-1]))]
        assert len(names) == len(front[["latency_s", "energy_pj"]].drop_duplicates()), names  # one per place
        for name in names:
            assert name.startswith("GlobalBuffer") or f"({name}) at {ax.get_title().split(':')[0]}: " in caption


def test_a_sensitivity_row_has_one_scale_and_an_axis_of_one_value_no_panel() -> None:
    """The energy row had been log in one panel (seq_len: 3e13 to 2.7e14) and linear in the others (values within a
    decade): a row is one y axis now, log as its values span more than a decade. An axis of one value is named
    under the grid, not drawn as a column of one-point panels."""
    rows = pd.DataFrame([{"axis": axis, "value": v, "value_label": str(v), "objective": "energy_pj",
                          "median": m, "best": m / 2, "points": 2}
                         for axis, values in ((BUFFER, {2**20: 4e14, 2**24: 3e14}), (SEQ, {4096: 3e13, 16384: 2.7e14}),
                                              ("linked.pe_dim", {64: 1e14}))
                         for v, m in values.items()])
    fig = sweep_figures.sensitivity_figure(rows, ["energy_pj"], "t")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["GlobalBuffer.capacity_bytes", "seq_len"]
    assert {ax.get_yscale() for ax in panels} == {"log"} and panels[0].get_ylim() == panels[1].get_ylim()
    assert "One value, no panel: pe_dim 64." in " ".join(t.get_text() for t in fig.texts)


def test_the_summary_prints_the_best_points_of_a_few_works(tmp_path) -> None:
    """Ten lengths: the best points of the first `SUMMARY_WORKS` are printed, the rest named as the report's."""
    from archsim.commands.sweep import SUMMARY_WORKS

    lengths = [256 * (i + 1) for i in range(SUMMARY_WORKS + 2)]
    data = {"name": "lengths", "mapping": "fusemax", "workload": "bert-base", "axes": {SEQ: lengths},
            "objectives": OBJECTIVES}
    (tmp_path / "l.yaml").write_text(yaml.safe_dump(data))
    swept = CliRunner().invoke(main, ["sweep", str(tmp_path / "l.yaml"), "--db", str(tmp_path / "l.sqlite"),
                                      "--local"])
    assert swept.exit_code == 0, swept.output
    assert sum(line.startswith("best latency_s: ") for line in swept.output.splitlines()) == SUMMARY_WORKS
    assert "best points of the other 2 works: in the summary.csv of `archsim report --sweep`" in swept.output
    assert f"one per {SEQ}: {len(lengths)} points" in swept.output  # a design per length: each on its front
