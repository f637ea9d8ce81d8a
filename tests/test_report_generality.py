"""Report figures and files on inputs off the demo's path (helper-138's audit): a sweep whose own points are all
infeasible, an objective that is zero or that a target does not model, a parallel grid with no feasible point, a
validation with no held-out row, a workload whose kernels run at MFLOP/s or cannot run at all.

The figures are checked through the Axes they build (scales, limits, legend labels, captions), not their pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from matplotlib.collections import PathCollection

from archsim.report.parallel import write_parallel_report
from archsim.report.sweep_figures import pareto_figure, targets_figure

NAN = float("nan")


def _rows(records: list[tuple], objectives: tuple[str, str] = ("latency_s", "energy_pj")) -> pd.DataFrame:
    """`pareto_rows`-shaped rows: (target_kind, target, first objective, second objective, on_front) each."""
    return pd.DataFrame([{"key": f"k{i}", "target_kind": kind, "target": target, objectives[0]: a,
                          objectives[1]: b, "constraint_ok": True, "on_front": front}
                         for i, (kind, target, a, b, front) in enumerate(records)])


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


# ------------------------------------------------------------------------------------------------ 1: own target
def test_gpu_points_are_reference_stars_when_no_architecture_point_is_feasible() -> None:
    """Every feasible point is a GPU preset's (two each): both presets are named stars, none is drawn as the sweep's
    own design points ("meets the constraints"), and the caption says the sweep's own points are all infeasible."""
    rows = _rows([("gpu", "h100-sxm5", 0.01, 7e12, True), ("gpu", "h100-sxm5", 0.15, 1e14, False),
                  ("gpu", "rtx-4090", 0.03, 1e13, False), ("gpu", "rtx-4090", 0.40, 2e14, False)])
    fig = pareto_figure(rows, ("latency_s", "energy_pj"), 4, "t")
    assert _legend(fig) == ["h100-sxm5", "rtx-4090", "Pareto front (1)"]
    assert "none of the sweep's own points is feasible" in fig.axes[0].get_title()


def test_the_architecture_is_the_sweep_target_even_when_a_gpu_has_more_feasible_points() -> None:
    """One feasible architecture point against three of one GPU: the architecture is the circle, the GPU a star."""
    rows = _rows([("architecture", "fusemax", 0.02, 5e12, True), *[("gpu", "h100-sxm5", t, 1e13, False)
                                                                   for t in (0.03, 0.1, 0.3)]])
    assert _legend(pareto_figure(rows, ("latency_s", "energy_pj"), 0, "t")) == [
        "meets the constraints", "h100-sxm5", "Pareto front (1)"]


# ------------------------------------------------------------------------------------------------ 2: zero and NaN
@pytest.mark.parametrize(("comm_s", "scale"), [((0.0, 0.0, 5.6e-4, 7.5e-4), "linear"),
                                               ((0.0, 1e-6, 1e-4, 1e-2), "symlog")])
def test_a_zero_objective_is_drawn_on_a_non_log_axis(comm_s: tuple[float, ...], scale: str) -> None:
    """exposed_comm_s 0 (a ring that hides its communication) on a point: a log axis would drop it silently. Within
    a decade the axis is linear; over four decades symlog, linear up to the smallest nonzero value (1e-6). The
    latencies, 0.03 to 0.07 s, span under a decade: a linear x axis (a log one there showed no labelled value)."""
    objectives = ("latency_s", "exposed_comm_s")
    rows = _rows([("parallel", "parallel", t, c, False) for t, c in zip((0.07, 0.04, 0.05, 0.03), comm_s,
                                                                          strict=True)], objectives)
    ax = pareto_figure(rows, objectives, 2, "t").axes[0]
    assert ax.get_xscale() == "linear" and ax.get_yscale() == scale
    assert ax.get_ylim()[0] <= 0.0 < ax.get_ylim()[1]
    if scale == "symlog":
        assert ax.yaxis.get_transform().linthresh == pytest.approx(1e-6)
    assert ax.get_title().startswith("4 feasible points drawn; 2 infeasible")


def test_points_without_an_objective_are_counted_out_and_named() -> None:
    """A GPU's area is NaN (not modelled): its two points cannot be placed on an area axis, so the caption says 2 of
    4 drawn and names the target and the metric."""
    objectives = ("latency_s", "area_um2")
    rows = _rows([("architecture", "fusemax", 0.02, 3.9e8, True), ("architecture", "fusemax", 0.3, 4.4e8, False),
                  ("gpu", "h100-sxm5", 0.01, NAN, False), ("gpu", "h100-sxm5", 0.15, NAN, False)], objectives)
    fig = pareto_figure(rows, objectives, 0, "t")
    title = fig.axes[0].get_title().replace("\n", " ")
    assert title.startswith("2 of 4 feasible points drawn; 2 not drawn")
    assert "h100-sxm5 x2 (area_um2)" in title
    assert "h100-sxm5" not in _legend(fig)  # no star for a target with nothing drawn


def test_targets_panel_with_a_zero_is_not_log_and_names_a_target_without_the_metric() -> None:
    rows = pd.DataFrame({"target": ["ring", "ring", "h100-sxm5", "h100-sxm5"], "workload.seq_len": [4096, 16384] * 2,
                         "best_latency_s": [0.01, 0.1, 0.02, 0.3], "best_exposed_comm_s": [0.0, 1e-3, NAN, NAN]})
    latency, comm = targets_figure(rows, ("latency_s", "exposed_comm_s"), "workload.seq_len", "t").axes
    assert latency.get_yscale() == "log" and latency.get_title() == ""
    assert comm.get_yscale() == "linear" and comm.get_ylim()[0] <= 0.0
    assert "h100-sxm5 x2 (best_exposed_comm_s)" in comm.get_title().replace("\n", " ")


# ------------------------------------------------------------------------------------------------ 6: parallel page
def test_a_parallel_grid_with_no_feasible_point_says_so(tmp_path: Path) -> None:
    """Two points, both over the GPU's memory: the page says that no point is feasible, not that the feasible
    points have one device count."""
    rows = [{"scheme": "ring", "devices": p, "seq_len": 16 * 2**20, "feasible": False,
             "max_context_tokens": NAN, "reason": "memory per device exceeds the GPU's",
             **{c: NAN for c in ("latency_s", "compute_s", "comm_s", "exposed_comm_s", "hidden_comm_s", "ideal_s",
                                 "efficiency", "memory_bytes")}} for p in (1, 2)]
    page = write_parallel_report(rows, tmp_path / "par", "llama3-8b").read_text()
    assert "no point is feasible" in page and "one device count" not in page


# ------------------------------------------------------------------------------------------------ 7: validate scatter
def test_validation_scatter_holds_the_roofline_marks_and_prints_a_missing_mape_as_a_dash(tmp_path: Path) -> None:
    """One A100 FA2 forward+backward row at seqlen 512 (a calibration length) at a value no calibration was fitted
    on (the packaged row of that shape reads 132 TFLOP/s): held out, so no row is in the calibration split and its
    MAPE is "-" as in the terminal table. The pure roofline predicts 312 TFLOP/s-bound time, under half the measured
    131 TFLOP/s row's time: its cross must still be inside the axes."""
    from archsim.gpu.figures import scatter_figure
    from archsim.gpu.params import load_calibration
    from archsim.gpu.validate import validate

    csv = tmp_path / "one.csv"
    csv.write_text("source,gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit,"
                   "how_obtained,note\n"
                   "test,A100 80GB SXM4,FlashAttention-2,fp16,False,32,32,64,512,fwd+bwd,throughput,131,TFLOPs/s,"
                   "read-off-figure,\n")
    ax = scatter_figure(validate(csv, load_calibration("v2"))).axes[0]
    assert "calibration -\n" in ax.get_title() and "nan" not in ax.get_title()
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    drawn = [xy for c in ax.collections if isinstance(c, PathCollection) for xy in c.get_offsets()]  # the markers
    assert len(drawn) == 2  # the model's point and the roofline's cross
    assert all(x_lo <= x <= x_hi and y_lo <= y <= y_hi for x, y in drawn)


# ------------------------------------------------------------------------------------------------ 8: gpu-roofline
def test_gpu_roofline_prints_small_rates_names_the_workload_and_lists_every_kernel(cli, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """A one-token, batch-1 workload runs at MFLOP/s: the printout shows the CSV's rate to 3 digits (it printed
    0.0 TFLOP/s). The figure's title is the workload's name, not its path. On an A100 FlashAttention-3 (Hopper only)
    is a CSV row with empty numbers and its reason; a kernel with no SFU exp has an empty exp ceiling, never inf."""
    import archsim.gpu.figures

    titles = []
    write_roofline = archsim.gpu.figures.write_roofline
    monkeypatch.setattr(archsim.gpu.figures, "write_roofline",
                        lambda gpu, points, path, title="", left_out=(): titles.append(title)
                        or write_roofline(gpu, points, path, title, left_out))
    workload = tmp_path / "some_file_name.yaml"
    workload.write_text(yaml.safe_dump({"name": "tiny-mqa", "description": "d", "source": "s", "params": {
        "batch": 1, "seq_len": 1, "hidden": 2048, "heads": 8, "kv_heads": 1, "head_dim": 256, "ffn_dim": 8192,
        "layers": 7, "vocab": 32000, "word_bytes": 2}}))
    out = tmp_path / "gr"
    printed = cli("gpu-roofline", "--gpu", "a100-80gb-sxm4", "--workload", str(workload), "--causal", "--out",
                  str(out)).output
    assert titles == ["tiny-mqa attention kernels on a100-80gb-sxm4"]
    assert "inf" not in (out / "roofline.csv").read_text()
    table = pd.read_csv(out / "roofline.csv").set_index("label")
    fa3 = table.loc["prefill fwd FA3"]
    assert fa3[["flops_per_byte", "flops_per_s", "roofline_flops_per_s"]].isna().all()
    assert "Hopper" in fa3.reason and f"not modelled: {fa3.reason}" in printed
    assert math.isnan(table.loc["prefill fwd PyTorch", "exp_ceiling_flops_per_s"])
    fa2 = table.loc["prefill fwd FA2"].flops_per_s
    assert fa2 < 1e9
    line = next(line for line in printed.splitlines() if line.startswith("prefill fwd FA2 "))
    assert f"{fa2 / 1e6:.3g} MFLOP/s" in line


def test_tables_written_into_a_report_folder_replace_its_outputs_and_keep_the_users_files(tmp_path) -> None:
    """`archsim reproduce seqpar --out D` into `report --reproduction seqpar`'s folder rewrote table3.csv in another
    schema while index.html still linked it as the figure's data (helper-138). The tables are now written as one
    folder: the report's files go, the user's own stay."""
    from archsim.commands.options import write_tables
    from archsim.outputs import atomic_dir

    with atomic_dir(tmp_path / "r") as stage:  # a report's folder, as a report writes it
        (stage / "index.html").write_text("<a href='table3.csv'>")
        (stage / "table3.csv").write_text("wide\n1\n")
    (tmp_path / "r" / "notes.txt").write_text("mine")
    write_tables(str(tmp_path / "r"), {"table3": [{"long": 2}]}, {"trace.json": "{}"})
    names = sorted(p.name for p in (tmp_path / "r").iterdir() if not p.name.startswith("."))
    assert names == ["notes.txt", "table3.csv", "trace.json"]
    assert (tmp_path / "r" / "table3.csv").read_text() == "long\n2\n"
