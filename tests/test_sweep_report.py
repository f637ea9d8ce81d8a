"""The sweep report (`archsim report --sweep`) and the shipped `demo` sweep."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.spec import load_sweep_spec
from archsim.dse.sweep import run_sweep

SPEC = {
    "name": "tiny",
    "mapping": "fusemax",
    "workload": "bert-base",
    "axes": {  # 25 and 400 GiB/s; a 256 KiB buffer makes FuseMax re-stream K and V (slower at low bandwidth)
        "arch.memories.DRAM.bandwidth_bytes_per_s": [26843545600, 429496729600],
        "arch.memories.GlobalBuffer.capacity_bytes": [262144, 1024, 16777216],  # 1 KiB: infeasible, counted
        "workload.seq_len": [1024, 4096],
    },
    "constraints": ["area_um2 <= 5e8"],
    "objectives": ["latency_s", "energy_pj"],
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    spec_path = root / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    run_sweep(load_sweep_spec(spec_path), root / "tiny.sqlite")
    out = root / "report"
    result = CliRunner().invoke(main, ["report", "--sweep", str(root / "tiny.sqlite"), "--spec", str(spec_path),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_report_writes_every_file(report):
    out, output = report
    heatmap = "heatmap_DRAM-bandwidth_bytes_per_s_GlobalBuffer-capacity_bytes"
    for name in ("index.html", "summary.csv", "pareto.png", "pareto.csv", "sensitivity.png", "sensitivity.csv",
                 f"{heatmap}.png", f"{heatmap}.csv"):
        assert (out / name).stat().st_size > 0, name
    page = (out / "index.html").read_text()
    assert all(f"href='{n}'" in page for n in ("pareto.png", "sensitivity.csv", f"{heatmap}.png"))
    # 2 x 3 x 2 = 12 points; the 4 with a 1 KiB buffer cannot hold a tile.
    assert output.startswith("12 points: 8 feasible, 4 infeasible")


def test_front_rows_are_non_dominated_and_infeasible_points_are_not_plotted(report):
    """A front per seq_len (s53): each front point is dominated by no point of its own length (a 1024 point
    dominates every 4096 one, which the mixed front had left off), and each length has a front."""
    pareto = pd.read_csv(report[0] / "pareto.csv")
    assert len(pareto) == 8  # the feasible points only
    for _, mine in pareto.groupby("workload.seq_len"):
        front = mine[mine.on_front]
        assert len(front) >= 1
        values = mine[["latency_s", "energy_pj"]].to_numpy()
        for f, other in itertools.product(front[["latency_s", "energy_pj"]].to_numpy(), values):
            assert not ((other <= f).all() and (other < f).any())


def test_heatmap_is_one_cell_per_pair_of_axis_values(report):
    cells = pd.read_csv(report[0] / "heatmap_DRAM-bandwidth_bytes_per_s_GlobalBuffer-capacity_bytes.csv")
    assert len(cells) == 2 * 3 and (cells.seq_len == 1024).all()  # the work held: the first seq_len (a grid)
    assert cells.points.tolist() == [1, 0, 1] * 2
    table = cells.pivot(index="DRAM.bandwidth_bytes_per_s", columns="GlobalBuffer.capacity_bytes",
                        values="latency_s").reindex(index=cells["DRAM.bandwidth_bytes_per_s"].unique(),
                                                    columns=cells["GlobalBuffer.capacity_bytes"].unique())
    low, high = SPEC["axes"]["arch.memories.DRAM.bandwidth_bytes_per_s"]
    small, tiny, large = SPEC["axes"]["arch.memories.GlobalBuffer.capacity_bytes"]
    assert list(table.columns) == [small, tiny, large] and list(table.index) == [low, high]  # the values, exact
    assert table[tiny].isna().all()  # no feasible point: blank, not zero
    # Best latency is at seq_len 1024; at 25 GiB/s the 256 KiB buffer is slower than 16 MiB, at 400 GiB/s not.
    assert table.loc[low, small] > table.loc[low, large]
    assert table.loc[high, small] == pytest.approx(table.loc[high, large])


def test_sensitivity_has_a_row_per_axis_value_and_objective(report):
    rows = pd.read_csv(report[0] / "sensitivity.csv")
    assert len(rows) == (2 + 3 + 2) * 2
    assert rows.points.sum() == 3 * 8 * 2  # every feasible point counted once per axis, per objective


def test_gpu_presets_are_compared_per_target_and_kept_out_of_the_arch_axis_plots(tmp_path):
    spec = {**SPEC, "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [262144, 16777216],
                             "workload.seq_len": [1024, 4096]},
            "gpus": {"presets": ["a100-80gb-sxm4", "h100-sxm5"]}}
    (tmp_path / "gpus.yaml").write_text(yaml.safe_dump(spec))
    df = run_sweep(load_sweep_spec(tmp_path / "gpus.yaml"), tmp_path / "gpus.sqlite")
    assert sorted(collections.Counter(df.target).items()) == [("a100-80gb-sxm4", 2), ("fusemax", 4), ("h100-sxm5", 2)]
    result = CliRunner().invoke(main, ["report", "--sweep", str(tmp_path / "gpus.sqlite"), "--spec",
                                       str(tmp_path / "gpus.yaml"), "--out", str(tmp_path / "out"),
                                       "--objectives", "latency_s,edp"])
    assert result.exit_code == 0, result.output
    targets = pd.read_csv(tmp_path / "out" / "targets.csv")
    assert list(targets.columns) == ["target", "target_kind", "workload.seq_len", "best_latency_s",
                                     "best_latency_s_at", "best_edp", "best_edp_at"]
    assert len(targets) == 3 * 2  # three targets x two lengths
    fusemax = df[df.target == "fusemax"]
    best_1k = fusemax[fusemax["workload.seq_len"] == 1024].latency_s.min()
    assert targets.set_index(["target", "workload.seq_len"]).loc[("fusemax", 1024), "best_latency_s"] == best_1k
    sensitivity = pd.read_csv(tmp_path / "out" / "sensitivity.csv")
    points = sensitivity.groupby("axis").points.agg(set).to_dict()
    # a capacity value: its two FuseMax points (one per length), the GPUs having no buffer; a length: those two
    # FuseMax designs and the two GPU presets
    assert points == {"arch.memories.GlobalBuffer.capacity_bytes": {2}, "workload.seq_len": {4}}
    assert (tmp_path / "out" / "targets.png").stat().st_size > 0


def test_report_sweep_mode_errors(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["report", "--sweep", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and "no such sweep store" in missing.output
    both = runner.invoke(main, ["report", "--sweep", "x.sqlite", "--library"])
    assert both.exit_code == 2 and "exactly one" in both.output
    misplaced = runner.invoke(main, ["report", "--library", "--spec", "demo"])
    assert misplaced.exit_code == 2 and "--spec" in misplaced.output


def test_demo_sweep_loads_by_name_and_validates():
    spec = load_sweep_spec("demo")
    assert spec.name == "demo" and spec.mapping == "fusemax" and spec.workload == "bert-base"
    assert spec.objectives == ("latency_s", "energy_pj", "area_um2")
    assert [len(v) for v in spec.axes.values()] == [3, 4, 3, 4] and set(spec.links) == {"linked.pe_dim"}
    assert spec.axes["workload.seq_len"] == [4096, 16384, 65536, 262144]


def test_byte_axes_read_as_written_binary_or_decimal() -> None:
    """A binary prefix only where it gives a whole count below 1024: 1e10 B/s is a multiple of 1024 but reads
    10 GB/s, not 9.76562e+06 KiB; a link's `bytes_per_s_per_direction` is a rate too (it printed `45.7 GB`)."""
    from archsim.report.sweep import value_label

    rate = "arch.memories.DRAM.bandwidth_bytes_per_s"
    assert [value_label(rate, v) for v in (1e10, 1e12, 25 * 2**30)] == ["10 GB/s", "1 TB/s", "25 GiB/s"]
    assert value_label("system.links.attention.bytes_per_s_per_direction", 4.57e10) == "45.7 GB/s"
    size = "arch.memories.GlobalBuffer.capacity_bytes"
    assert [value_label(size, v) for v in (4 * 2**20, 2048 * 2**40, 1536)] == ["4 MiB", "2048 TiB", "1.536 kB"]
    # a true/false axis reads as the sweep file writes it (it printed 1/0), numpy's bool too
    assert [value_label("parallel.causal", v) for v in (True, False, np.bool_(True))] == ["true", "false", "true"]
