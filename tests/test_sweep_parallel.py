"""Sweeps over multi-device attention (issue 18, "sweepable fields"): a `parallel:` block and `parallel.<field>`
axes, checked at load (exit 2 naming the sweep file and YAML path); a small grid run through `archsim sweep`, one
record per point with the scheme's metrics, the same numbers `archsim parallel` prints; a point the scheme rejects
as an infeasible row with its reason; a SIGKILLed run resumed without recomputing a stored point; and the sweep
report. Llama-3-8B attention (32 q heads, 8 KV heads) at 12K-16K tokens on up to 8 H100s of one NVLink board."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import yaml
from test_kill_sweep import BATCH, KILL_AFTER_ROWS, _sorted, _summary, _sweep, kill_after_rows, stored_rows

from archsim.dse import parallel_spec
from archsim.dse.points import expand
from archsim.dse.spec import load_sweep_spec, point_count
from archsim.dse.store import read_records
from archsim.dse.sweep import run_sweep
from archsim.gpu.load import load_gpu

TOPOLOGY, MODEL = "hgx-h100-8", "llama3-8b"
# 12K = 3 x 4096: ring over 3 devices cuts it evenly, but Ulysses over 3 cannot split 32 heads
GRID = {"name": "seqpar-small", "parallel": {"workload": MODEL, "seq_len": 12288, "topology": TOPOLOGY},
        "axes": {"parallel.scheme": ["ring", "ulysses"], "parallel.devices": [1, 2, 3]},
        "objectives": ["latency_s", "efficiency"]}


def test_the_shipped_sweep_is_three_schemes_over_one_to_eight_h100s_at_64k():
    spec = load_sweep_spec("seqpar-scaling")
    assert spec.kind == "parallel" and spec.mapping is None and spec.system is None
    assert spec.parallel == {"workload": MODEL, "seq_len": 65536, "topology": TOPOLOGY}
    assert spec.axes == {"parallel.scheme": ["ring", "zigzag", "ulysses"], "parallel.devices": [1, 2, 4, 8]}
    assert point_count(spec) == 12 == len(expand(spec))
    assert "efficiency" in spec.metrics and spec.objectives == ("latency_s", "efficiency")


@pytest.fixture(scope="module")
def small(tmp_path_factory, write_yaml, invoke):
    """GRID run through the CLI, then again from its store, and drawn by the report."""
    folder = tmp_path_factory.mktemp("seqpar")
    spec_path, db = write_yaml(folder / "small.yaml", GRID), folder / "small.sqlite"
    first = invoke("sweep", str(spec_path), "--db", str(db), "--local")
    again = invoke("sweep", str(spec_path), "--db", str(db), "--local")
    report = invoke("report", "--sweep", str(db), "--spec", str(spec_path), "--out", str(folder / "report"))
    return folder, read_records(db), first, again, report


def test_a_small_grid_stores_one_record_per_point_and_a_rerun_reuses_them(small):
    _, df, first, again, _ = small
    assert first[0] == 0, first[1]
    assert "6 points (6 new, 0 reused), 5 feasible" in first[1]
    assert again[0] == 0 and "6 points (0 new, 6 reused)" in again[1]
    assert df.key.nunique() == 6 and set(df.target_kind) == {"parallel"}
    assert sorted(zip(df["parallel.scheme"], df["parallel.devices"], strict=True)) == sorted(
        (s, p) for s in ("ring", "ulysses") for p in (1, 2, 3))


def test_records_are_what_archsim_parallel_computes_for_the_same_points(small, cli_json):
    df = small[1].set_index(["parallel.scheme", "parallel.devices"])
    rows = cli_json("parallel", "--scheme", "ring,ulysses", "--devices", "1,2,3", "--workload", MODEL,
                    "--seq-len", "12288", "--topology", TOPOLOGY)["points"]
    for row in rows:
        mine = df.loc[(row["scheme"], row["devices"])]
        assert bool(mine.feasible) == row["feasible"]
        if row["feasible"]:
            for metric in ("latency_s", "efficiency", "exposed_comm_s", "memory_bytes", "max_context_tokens"):
                assert mine[metric] == row[metric], metric


def test_efficiency_is_the_one_device_time_over_p_times_the_time(small):
    feasible = small[1][small[1].feasible.astype(bool)].set_index(["parallel.scheme", "parallel.devices"])
    one = feasible.latency_s[("ring", 1)]
    # seqpar.py: ideal = one device's time (Ulysses' too: a one-device ring, its all-to-alls vanish) / P
    assert feasible.latency_s[("ulysses", 1)] == pytest.approx(one, rel=1e-12)
    for (_, p), row in feasible.iterrows():
        assert row.efficiency == pytest.approx(one / (p * row.latency_s), rel=1e-12)
        assert row.efficiency <= 1.0 + 1e-12  # P devices never beat P times one here (no cache effects modelled)
    # Record: energy = board power x time x the devices
    power_w = load_gpu("h100-sxm5").power_w
    for (_, p), row in feasible.iterrows():
        assert row.energy_pj == pytest.approx(power_w * row.latency_s * p * 1e12, rel=1e-12)


def test_a_point_the_scheme_rejects_is_an_infeasible_row_with_its_reason(small):
    df = small[1]
    bad = df[~df.feasible.astype(bool)]
    assert list(zip(bad["parallel.scheme"], bad["parallel.devices"], strict=True)) == [("ulysses", 3)]
    row = bad.iloc[0]
    assert "params.heads" in row.reason and "ulysses splits the heads over 3 devices" in row.reason
    assert not row.constraint_ok and math.isnan(row.latency_s) and math.isnan(row.efficiency)


def test_a_sequence_the_devices_cannot_split_names_the_sweeps_field(tmp_path, write_yaml):
    data = {**GRID, "parallel": {**GRID["parallel"], "seq_len": 16384},
            "axes": {"parallel.scheme": ["ring"], "parallel.devices": [3]}}
    path = write_yaml(tmp_path / "odd.yaml", data)
    df = run_sweep(load_sweep_spec(path), tmp_path / "odd.sqlite")
    assert len(df) == 1 and not df.feasible[0]
    assert df.reason[0].startswith("parallel.seq_len: ring cuts the sequence into 3 equal chunks")


def test_the_report_draws_a_parallel_sweep(small):
    folder, df, _, _, report = small
    assert report[0] == 0, report[1]
    assert report[1].startswith("6 points: 5 feasible, 1 infeasible")
    out = folder / "report"
    for name in ("index.html", "summary.csv", "pareto.png", "pareto.csv", "sensitivity.png", "sensitivity.csv",
                 "heatmap_scheme_devices.png", "heatmap_scheme_devices.csv"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "summary.csv").set_index("objective")
    # efficiency is maximised, latency minimised
    assert summary.loc["efficiency", "best"] == df.efficiency.max()
    assert summary.loc["latency_s", "best"] == df.latency_s.min()


# --- load errors -----------------------------------------------------------------------------------------------

@pytest.fixture
def bad(tmp_path, write_yaml, invoke):
    """Sweep GRID with `change` over it and the keys `drop` dropped: (exit code, its one line, the spec's path),
    having checked that no store was written."""
    def run(change: dict, drop: tuple[str, ...] = ()) -> tuple[int, str, str]:
        data = {**GRID, **change}
        for key in drop:
            data.pop(key)
        path = write_yaml(tmp_path / "bad.yaml", data)
        code, output = invoke("sweep", str(path), "--db", str(tmp_path / "bad.sqlite"), "--local")
        assert not (tmp_path / "bad.sqlite").exists()
        return code, output.strip().removeprefix("error: "), str(path)

    return run


BLOCK = GRID["parallel"]


@pytest.mark.parametrize("change, drop, field, message", [
    ({"axes": {"parallel.scheme": ["ring", "ringg"]}}, (), "axes.parallel.scheme[1]", "expected one of ring, zigzag"),
    ({"axes": {"parallel.sheme": ["ring"], "parallel.devices": [2]}}, (), "axes.parallel.sheme",
     "'sheme' is not a field of the parallel block"),
    ({"axes": {"system.devices": [2]}}, (), "axes.system.devices", "is 'parallel.<field>'"),
    ({"axes": {"parallel.scheme": ["ring"], "parallel.devices": [2, 0]}}, (), "axes.parallel.devices[1]",
     "a whole number >= 1"),
    ({"axes": {"parallel.scheme": ["ring"], "parallel.devices": [2], "parallel.causal": ["yes"]}}, (),
     "axes.parallel.causal[0]", "true or false"),
    ({"parallel": {k: v for k, v in BLOCK.items() if k != "topology"},
      "axes": {"parallel.scheme": ["ring"], "parallel.devices": [2], "parallel.topology": [TOPOLOGY, "hgx-h101"]}},
     (), "axes.parallel.topology[1]", "'hgx-h101'"),
    ({"parallel": {k: v for k, v in BLOCK.items() if k != "seq_len"}}, (), "parallel.seq_len", "missing"),
    ({"parallel": {**BLOCK, "devices": 2}}, (), "axes.parallel.devices", "also set by parallel.devices: give it in "
                                                                        "one place"),
    ({"parallel": {**BLOCK, "direction": "bwd"}}, (), "parallel.direction", "expected one of fwd, fwd+bwd"),
    ({"parallel": {**BLOCK, "workload": "llama9-8b"}}, (), "parallel.workload", "'llama9-8b'"),
    ({"parallel": {**BLOCK, "heads": 32}}, (), "parallel.heads", "unknown key"),
    ({"parallel": [1]}, (), "parallel", "expected a mapping"),
    ({"workload": MODEL}, (), "workload", "name it in parallel.workload"),
    ({"system": "neupims"}, (), "parallel", "not both"),
    ({"objectives": ["efficiency", "throughput_tok_s"]}, (), "objectives[1]", "unknown objective"),
])
def test_a_bad_parallel_sweep_exits_2_naming_the_field(bad, change, drop, field, message):
    code, output, path = bad(change, drop)
    assert code == 2 and "\n" not in output, output
    assert output.startswith(f"{path}: {field}: "), output
    assert message in output, output


def test_a_sweep_of_an_architecture_has_no_parallel_metrics_or_axes(bad):
    arch = {"name": "arch", "mapping": "fusemax", "workload": "bert-base", "axes": {"workload.seq_len": [1024]}}
    code, output, path = bad({**arch, "objectives": ["efficiency", "latency_s"]}, ("parallel",))
    assert code == 2 and output.startswith(f"{path}: objectives[0]: unknown objective 'efficiency'"), output
    code, output, path = bad({**arch, "axes": {"parallel.devices": [2]}}, ("parallel",))
    assert code == 2 and output.startswith(f"{path}: axes.parallel.devices: an axis path starts with"), output


# --- killed and resumed ----------------------------------------------------------------------------------------

KILL = {"name": "seqpar-kill", "parallel": {"workload": MODEL, "seq_len": 8192, "topology": TOPOLOGY},
        "axes": {"parallel.scheme": ["ring", "zigzag", "stripe", "ulysses"], "parallel.devices": [1, 2, 4, 8],
                 "parallel.batch": [1, 2]}}
KILL_POINTS = 4 * 4 * 2


def test_a_killed_sweep_resumes_without_recomputing_a_stored_point(tmp_path, cli, monkeypatch, write_yaml):
    spec = write_yaml(tmp_path / "kill.yaml", KILL)
    killed, clean = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    kill_after_rows(spec, killed)
    stored = stored_rows(killed)
    assert KILL_AFTER_ROWS <= stored < KILL_POINTS and stored % BATCH == 0

    runs = []  # every parallel_time call of the resumed run, which runs in this process
    model = parallel_spec.parallel_time
    monkeypatch.setattr(parallel_spec, "parallel_time", lambda spec: runs.append(spec) or model(spec))
    resumed = cli(*_sweep(spec, killed)).stdout
    new, reused = map(int, re.search(rf"{KILL_POINTS} points \((\d+) new, (\d+) reused\)", resumed).groups())
    assert reused == stored and new == KILL_POINTS - stored
    assert len(runs) == new  # no stored point is computed again
    monkeypatch.undo()
    unkilled = cli(*_sweep(spec, clean)).stdout
    assert _summary(resumed) == _summary(unkilled)
    assert _sorted(killed).equals(_sorted(clean))


def test_a_lasp_point_under_two_kernels_is_one_point(tmp_path, cli):
    """LASP's chunks run archsim's Lightning Attention-2 whatever `kernel` says, so sweeping the kernel stores one
    LASP point per length, and a ring point per kernel."""
    spec = {"name": "k", "parallel": {"workload": "linear-llama3-1b", "seq_len": 65536, "topology": "dgx-a100",
                                      "devices": 8},
            "axes": {"parallel.scheme": ["ring", "lasp2"],
                     "parallel.kernel": ["FlashAttention-2", "PyTorch eager attention"]},
            "objectives": ["latency_s", "memory_bytes"]}
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert "3 points (4 drawn, 3 distinct; 3 new, 0 reused)" in cli("sweep", str(path), "--db",
                                                                      str(tmp_path / "k.sqlite"), "--local").stdout


def test_a_sweep_over_gpus_keeps_one_utilization_column(tmp_path, write_yaml, invoke):
    """The record's one unit is named by its role, so a sweep over `parallel.gpu` fills one column: named after
    each GPU preset, it had split into a column per GPU, each empty on the other's rows."""
    grid = {"name": "two-gpus", "parallel": {"workload": MODEL, "seq_len": 12288, "topology": TOPOLOGY,
                                             "scheme": "ring"},
            "axes": {"parallel.devices": [1, 2], "parallel.gpu": ["h100-sxm5", "h200-sxm"]},
            "objectives": ["latency_s", "efficiency"]}
    db = tmp_path / "g.sqlite"
    code, output = invoke("sweep", str(write_yaml(tmp_path / "g.yaml", grid)), "--db", str(db), "--local")
    assert code == 0, output
    records = read_records(db)
    assert [c for c in records.columns if c.startswith("utilization.")] == ["utilization.compute"]
    assert records["utilization.compute"].notna().all() and len(records) == 4
