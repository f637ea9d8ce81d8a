"""Sweep auditor s52D's findings: a linked axis setting `workload.seq_len` was free in the report's heat maps (cells
compared 16K-token points with 4K ones) and gave no architecture-vs-GPU table; a plain `workload.M0` axis (a tile)
was given to GPU points; a store shared by a sweep without a seq_len axis and one with it called the first one's
points "does not apply" there, though they ran at the workload's 1024; `run_sweep` returned every point of its store
where `run_sweep_dask` and the command returned the sweep's own; sensitivity.csv wrote a list axis as a tuple; an
axis error offered null, which the axis refused."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.points import expand
from archsim.dse.spec import gpu_axes, load_sweep, load_sweep_spec, point_count, sweep_from_dict, work_axes
from archsim.dse.sweep import read_judged, run_sweep
from archsim.errors import SpecError

BUFFER, DRAM = "arch.memories.GlobalBuffer.capacity_bytes", "arch.memories.DRAM.bandwidth_bytes_per_s"
SEQ, M0, LEN = "workload.seq_len", "workload.M0", "linked.len"
BASE = {"mapping": "fusemax", "workload": "bert-base", "objectives": ["latency_s", "energy_pj"]}
HARDWARE = {BUFFER: [262144, 16777216], DRAM: [26843545600, 429496729600]}  # 256 KiB / 16 MiB, 25 / 400 GiB/s
LINKED_LEN = {"values": [4096, 16384], "set": {SEQ: "len"}}


def _spec(tmp_path: Path, name: str, axes: dict, **extra) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **BASE, "axes": axes, **extra}, sort_keys=False))
    return path


def _report(store: Path, out: Path, spec: Path | None = None) -> Path:
    done = CliRunner().invoke(main, ["report", "--sweep", str(store), "--out", str(out),
                                     *(["--spec", str(spec)] if spec else [])])
    assert done.exit_code == 0, done.output
    return out


# ------------------------------------------------------------------------- 1: a linked length is the work
def test_a_linked_length_is_held_in_the_heat_map(tmp_path: Path) -> None:
    """The auditor's l2: 6 random points; the (16 MiB, 400 GiB/s) cell had read 0.4652 s, its only point at 16384
    tokens, beside 0.0297 s cells at 4096. Each cell is now the best at one length, which the CSV names."""
    path = _spec(tmp_path, "l2", {**HARDWARE, LEN: LINKED_LEN}, sampling={"kind": "random", "samples": 6, "seed": 3})
    df = run_sweep(load_sweep(path), tmp_path / "l2.sqlite")
    name = "heatmap_GlobalBuffer-capacity_bytes_DRAM-bandwidth_bytes_per_s.csv"
    for spec in (None, path):
        rows = pd.read_csv(_report(tmp_path / "l2.sqlite", tmp_path / f"r{spec is None}", spec) / name)
        assert "len" in rows and rows["len"].nunique() == 1
        held = df[df[LEN] == rows["len"].iloc[0]]
        for _, row in rows.dropna(subset=["latency_s"]).iterrows():
            cell = held[(held[BUFFER] == row["GlobalBuffer.capacity_bytes"])
                        & (held[DRAM] == row["DRAM.bandwidth_bytes_per_s"])]
            assert row["latency_s"] == cell.latency_s.min()


def test_a_linked_length_compares_the_targets(tmp_path: Path) -> None:
    """The auditor's l1: a GPU preset beside a linked length axis; targets.csv and targets.png had not been
    written (a plain seq_len axis gets both)."""
    path = _spec(tmp_path, "l1", {**HARDWARE, LEN: LINKED_LEN}, gpus={"presets": ["h100-sxm5"]})
    run_sweep(load_sweep(path), tmp_path / "l1.sqlite")
    for spec in (None, path):
        out = _report(tmp_path / "l1.sqlite", tmp_path / f"r{spec is None}", spec)
        targets = pd.read_csv(out / "targets.csv")
        assert sorted(targets[targets.target == "h100-sxm5"][LEN]) == [4096, 16384]
        assert (out / "targets.png").stat().st_size > 0


def test_one_rule_says_which_axes_change_the_work() -> None:
    """A linked axis setting a model size changes the work and is a GPU point's; the demo's pe_dim, setting the
    array and its tile M0, does neither (its heat-map cells stay free over it)."""
    demo = load_sweep_spec("demo")
    assert work_axes(demo) == gpu_axes(demo) == [SEQ]
    linked = sweep_from_dict({"name": "l", **BASE, "axes": {**HARDWARE, LEN: LINKED_LEN, M0: [128, 256]}})
    assert work_axes(linked) == [LEN]


# ------------------------------------------------------------------------- 2: a tile axis is no GPU's
def test_gpu_points_take_no_tile_axis(tmp_path: Path) -> None:
    """The auditor's m1: `5 points (6 drawn, 5 distinct)`, the H100 at M0 128 and 256 one point, its best at M0=128,
    the targets compared at each M0. The GPU time does not depend on M0: one GPU point, NaN (does not apply) there,
    out of the M0 panel, and the targets compared at each seq_len."""
    path = _spec(tmp_path, "m1", {BUFFER: HARDWARE[BUFFER], M0: [128, 256], SEQ: [4096]},
                 gpus={"presets": ["h100-sxm5"]})
    spec = load_sweep(path)
    gpu = [p for p in expand(spec) if p["target"] == "h100-sxm5"]
    assert gpu == [{"target": "h100-sxm5", SEQ: 4096}] and point_count(spec) == 5
    run_sweep(spec, tmp_path / "m1.sqlite")
    df = read_judged(tmp_path / "m1.sqlite")[0]
    h100 = df[df.target == "h100-sxm5"].iloc[0]
    assert math.isnan(h100[M0]) and math.isnan(h100[BUFFER])  # neither applies to a GPU
    out = _report(tmp_path / "m1.sqlite", tmp_path / "r", path)
    assert SEQ in pd.read_csv(out / "targets.csv")
    rows = pd.read_csv(out / "sensitivity.csv")
    m0 = rows[(rows.axis == M0) & (rows.objective == "latency_s")]
    assert m0.points.tolist() == [2, 2]  # the two buffers at each tile, no GPU


# ------------------------------------------------------------------------- 3: a base value is a value
def _shared(tmp_path: Path) -> tuple[Path, Path, Path]:
    """sa (bert-base's 1024 tokens, no seq_len axis) then sb (seq_len 4096) into one store."""
    sa, sb = _spec(tmp_path, "sa", HARDWARE), _spec(tmp_path, "sb", {**HARDWARE, SEQ: [4096]})
    store = tmp_path / "sab.sqlite"
    run_sweep(load_sweep(sa), store)
    return sa, sb, store


def test_a_point_without_an_axis_carries_the_base_value(tmp_path: Path) -> None:
    """The report without --spec had shown the best point (a 1K-token one) with seq_len blank, `seq_len leaves out
    4 points`, and `archsim results` left their seq_len blank: they ran at the workload's 1024."""
    _, sb, store = _shared(tmp_path)
    run_sweep(load_sweep(sb), store)
    df = read_judged(store)[0]
    assert sorted(df[SEQ].tolist()) == [1024] * 4 + [4096] * 4
    out = _report(store, tmp_path / "r")
    assert "leaves out" not in (out / "index.html").read_text()
    summary = pd.read_csv(out / "summary.csv")
    assert summary.seq_len.tolist() == [1024, 1024, 4096, 4096]  # the best of each objective per seq_len (s53)
    done = CliRunner().invoke(main, ["results", str(store), "--csv", "-"])
    assert done.exit_code == 0, done.output
    assert "nan" not in done.output and ",1024," in done.output


# ------------------------------------------------------------------------- 4: a sweep's records are its points
def test_run_sweep_returns_its_own_points_as_run_sweep_dask_does(tmp_path: Path) -> None:
    """run_sweep had returned the store's 8 rows (best 0.002013 s, a 1K-token point of sa) where run_sweep_dask and
    `archsim sweep` returned sb's 4."""
    _, sb, store = _shared(tmp_path)
    shutil.copy(store, tmp_path / "copy.sqlite")
    spec = load_sweep(sb)
    serial = run_sweep(spec, store)
    dask = run_sweep_dask(spec, tmp_path / "copy.sqlite", executor="in-process").records
    assert len(serial) == 4 and serial[SEQ].tolist() == [4096] * 4
    assert serial.key.tolist() == dask.key.tolist()
    assert serial.latency_s.tolist() == dask.latency_s.tolist()


# ------------------------------------------------------------------------- 5: a list as stored
def test_sensitivity_csv_writes_a_list_axis_as_stored(tmp_path: Path) -> None:
    shape = "arch.units.array2d.shape"
    path = _spec(tmp_path, "i1", {shape: [[64, 64], [256, 256]], SEQ: [1024]})
    run_sweep(load_sweep(path), tmp_path / "i1.sqlite")
    for spec in (None, path):
        rows = pd.read_csv(_report(tmp_path / "i1.sqlite", tmp_path / f"r{spec is None}", spec) / "sensitivity.csv")
        assert set(rows[rows.axis == shape].value) == {"[64, 64]", "[256, 256]"}


# ------------------------------------------------------------------------- 6: no null on an axis
def test_a_bandwidth_axis_error_offers_only_what_an_axis_takes() -> None:
    """`[0]` had said `expected bytes per second, or null for no limit`; `[null]` then said `expected a finite
    number, got None`."""
    spec = {"name": "n", **BASE}
    with pytest.raises(SpecError) as zero:
        sweep_from_dict({**spec, "axes": {DRAM: [0]}})
    assert "or null for no limit (" not in zero.value.message and "not on a sweep axis" in zero.value.message
    with pytest.raises(SpecError) as null:
        sweep_from_dict({**spec, "axes": {DRAM: [26843545600, None]}})
    assert "base architecture" in null.value.message
