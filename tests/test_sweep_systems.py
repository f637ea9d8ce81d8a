"""Sweeps over a system (issue 13 part 6): the shipped NeuPIMs sweep's spec, a small cut of it run through
`archsim sweep`, stored, re-run from the store and drawn by `archsim report --sweep`; infeasible points with their
reason; cost per token; and the errors of a bad system sweep (exit 2, one line naming the sweep file and field)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.pareto import pareto_mask
from archsim.dse.points import expand
from archsim.dse.spec import load_sweep_spec, point_count
from archsim.dse.sweep import run_sweep
from archsim.systems.system_spec import load_system

SHIPPED = Path(__file__).resolve().parents[1] / "archsim" / "dse" / "sweeps" / "neupims-channels.yaml"
CHANNELS, BUS, PRICE = "system.devices.pim.channels", "system.devices.pim.bus_bits", "price_per_hour"


def _shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # the axes in their order
    return path


def _invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_shipped_sweep_is_neupims_channels_by_hbm_bandwidth_by_batch():
    spec = load_sweep_spec("neupims-channels")
    assert spec.system == "neupims" and spec.workload == "gpt3-7b" and spec.mapping is None
    assert spec.axes == {CHANNELS: [16, 32, 64], BUS: [64, 128, 256], "serving.max_batch": [64, 128, 256]}
    assert point_count(spec) == 27 == len(expand(spec))
    # The bus widths span the HBM bandwidth: 32 channels x bus_bits / 8 x 2 (DDR) x 1 GHz = 0.512, 1.024 and
    # 2.048 TB/s (archsim/systems/pim.py external_peak_bytes_per_s; pim.md §1.2 gives 1.024 TB/s at 128 bits).
    assert [32 * bits / 8 * 2 * 1e9 for bits in spec.axes[BUS]] == [0.512e12, 1.024e12, 2.048e12]
    # The batch axis binds only if that many requests are in flight: more requests than its largest value.
    assert spec.serving.requests > max(spec.axes["serving.max_batch"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The shipped sweep cut to two channel counts at the preset's bus and one batch, fewer requests, and priced
    devices (one value each) for the cost objective: 2 points run through the CLI, then re-run."""
    folder = tmp_path_factory.mktemp("neupims")
    data = _shipped()
    data["name"] = "neupims-small"
    data["serving"]["requests"] = 48
    data["axes"] = {CHANNELS: [16, 32], BUS: [128], "serving.max_batch": [64],
                    f"system.devices.npu.{PRICE}": [2.0], f"system.devices.pim.{PRICE}": [1.0]}
    data["objectives"] = ["throughput_tok_s", "cost_per_token_usd"]
    spec_path = _write(folder / "small.yaml", data)
    db = folder / "small.sqlite"
    first = _invoke("sweep", str(spec_path), "--db", str(db), "--local")
    again = _invoke("sweep", str(spec_path), "--db", str(db), "--local")
    report = _invoke("report", "--sweep", str(db), "--spec", str(spec_path), "--out", str(folder / "report"))
    return folder, run_sweep(load_sweep_spec(spec_path), db), first, again, report


def test_a_system_sweep_runs_is_stored_and_a_rerun_reuses_every_point(small):
    _, df, first, again, _ = small
    assert first[0] == 0, first[1]
    assert "2 points (2 new, 0 reused), 2 feasible" in first[1]
    assert again[0] == 0 and "2 points (0 new, 2 reused)" in again[1]
    assert list(df.target_kind) == ["system", "system"] and list(df.target) == ["neupims", "neupims"]
    assert df.key.nunique() == 2 and df.feasible.all()


def test_system_records_fill_the_generic_columns_from_the_serving_metrics(small):
    df = small[1]
    # system_points.py: latency_s is the p99 TBT, energy_pj the energy per token in pJ, no area or DRAM traffic.
    assert (df.latency_s == df.tbt_p99_s).all()
    assert df.energy_pj.tolist() == pytest.approx((df.energy_per_token_j * 1e12).tolist(), rel=1e-12)
    assert df.edp.tolist() == pytest.approx((df.latency_s * df.energy_pj).tolist(), rel=1e-12)
    assert df.area_um2.isna().all() and df.dram_traffic_bytes.isna().all()
    assert (df.throughput_tok_s == df.output_tokens / df.makespan_s).all()


def test_more_pim_channels_serve_faster_but_at_most_twice_as_fast(small):
    df = small[1].set_index(CHANNELS)
    # 32 channels double the HBM bandwidth the NPU streams its weights at (channels x bus x clock) and the PIM's
    # GEMV parallelism; the NPU's arrays and vector units stay the same, so an iteration cannot take less than
    # half the time: 1 < speed-up <= 2.
    assert 1.0 < df.throughput_tok_s[32] / df.throughput_tok_s[16] <= 2.0


def test_cost_per_token_is_the_ranks_devices_price_over_the_makespan(small):
    df = small[1]
    tp, pp = 4, 1  # the neupims preset's parallelism for gpt3-7b (by_workload)
    par = load_system("neupims").parallelism_for("gpt3-7b")
    assert (par.tp, par.pp) == (tp, pp)
    # Each of the TP x PP ranks holds one NPU (2 USD/h here) and one PIM HBM (1 USD/h).
    expected = tp * pp * (2.0 + 1.0) * df.makespan_s / 3600 / df.output_tokens
    assert df.cost_per_token_usd.tolist() == pytest.approx(expected.tolist(), rel=1e-12)


def test_the_report_draws_a_system_sweep(small):
    folder, df, _, _, report = small
    assert report[0] == 0, report[1]
    out = folder / "report"
    heatmap = "heatmap_pim-channels_pim-bus_bits"
    for name in ("index.html", "summary.csv", "pareto.png", "pareto.csv", "sensitivity.png", "sensitivity.csv",
                 f"{heatmap}.png", f"{heatmap}.csv"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "summary.csv").set_index("objective")
    # throughput is maximised: the best is the 32-channel point's, the larger of the two
    assert summary.loc["throughput_tok_s", "best"] == pytest.approx(df.throughput_tok_s.max(), rel=1e-12)
    assert summary.loc["throughput_tok_s", "pim.channels"] == 32
    sensitivity = pd.read_csv(out / "sensitivity.csv")
    rows = sensitivity[(sensitivity.axis == CHANNELS) & (sensitivity.objective == "throughput_tok_s")]
    assert rows.best.tolist() == pytest.approx(df.sort_values(CHANNELS).throughput_tok_s.tolist(), rel=1e-12)


def test_a_point_whose_weights_do_not_fit_is_an_infeasible_record_with_its_reason(tmp_path):
    data = _shipped()
    # 2 GB of HBM less its 512 MiB activation buffer cannot hold a quarter of GPT-3 7B (TP4): ~3.4 GB of FP16
    # weights per device. The value is a valid field (the spec accepts it alone); the model refuses the point.
    data["axes"] = {"system.devices.pim.capacity_bytes": [2.0e9], "serving.max_batch": [64]}
    df = run_sweep(load_sweep_spec(_write(tmp_path / "tiny.yaml", data)), tmp_path / "tiny.sqlite")
    assert len(df) == 1 and not df.feasible[0] and not df.constraint_ok[0]
    assert "GB of weights on each npu device" in df.reason[0] and "raise tp or pp" in df.reason[0]
    assert math.isnan(df.throughput_tok_s[0]) and math.isnan(df.latency_s[0])


def test_pareto_front_maximises_throughput():
    df = pd.DataFrame({"throughput_tok_s": [100.0, 200.0, 150.0, 200.0],
                       "energy_per_token_j": [1.0, 2.0, 3.0, 1.5]})
    # (200, 1.5) beats (200, 2.0) and (150, 3.0); (100, 1.0) is the least energy: those two are the front.
    assert pareto_mask(df, ["throughput_tok_s", "energy_per_token_j"]).tolist() == [True, False, False, True]


def _bad(tmp_path: Path, change: dict, drop: tuple[str, ...] = ()) -> tuple[int, str]:
    data = {**_shipped(), **change}
    for key in drop:
        data.pop(key)
    path = _write(tmp_path / "bad.yaml", data)
    code, output = _invoke("sweep", str(path), "--db", str(tmp_path / "bad.sqlite"), "--local")
    return code, output.strip().removeprefix("error: "), str(path)


@pytest.mark.parametrize("axes, field, message", [
    ({"system.devices.pim.chanels": [16]}, "axes.system.devices.pim.chanels", "unknown key"),
    ({"system.devices.hbm.channels": [16]}, "axes.system.devices.hbm.channels", "no devices.hbm"),
    ({CHANNELS: [16, -4]}, f"axes.{CHANNELS}[1]", "a whole number"),
    ({"serving.seed": [1]}, "axes.serving.seed", "a serving axis is one of serving.max_batch"),
    ({"serving.max_batch": [0]}, "axes.serving.max_batch[0]", "whole number >= 1"),
    ({"arch.memories.DRAM.bandwidth_bytes_per_s": [1e11]}, "axes.arch.memories.DRAM.bandwidth_bytes_per_s",
     "starts with 'system.'"),
])
def test_a_bad_system_axis_exits_2_naming_the_sweep_file_and_field(tmp_path, axes, field, message):
    code, output, path = _bad(tmp_path, {"axes": {"serving.max_batch": [64], **axes}})
    assert code == 2 and "\n" not in output, output
    assert f"{path}: {field}: " in output and message in output
    assert not (tmp_path / "bad.sqlite").exists()


def test_a_parallelism_axis_the_workloads_entry_shadows_exits_2_naming_the_entry(tmp_path):
    """duplex-gpu has a parallelism.by_workload entry for Mixtral, whose degrees it runs at: a sweep over
    system.parallelism.pp gave every point the entry's pp (identical rows, a pp above the layers 'feasible')."""
    change = {"system": "duplex-gpu", "workload": "mixtral-8x7b",
              "axes": {"serving.max_batch": [64], "system.parallelism.pp": [1, 2]}}
    code, output, path = _bad(tmp_path, change)
    assert code == 2 and "\n" not in output, output
    assert output.startswith(f"{path}: axes.system.parallelism.pp: never read: ")
    assert "sweep system.parallelism.by_workload.mixtral-8x7b.pp instead" in output
    other = {**change, "axes": {"serving.max_batch": [64], "system.parallelism.by_workload.opt-66b.pp": [1, 2]}}
    code, output, path = _bad(tmp_path, other)  # another workload's entry: never read either
    assert code == 2 and output.startswith(f"{path}: axes.system.parallelism.by_workload.opt-66b.pp: never read: ")


def test_the_cost_objective_without_prices_exits_2_naming_the_missing_price(tmp_path):
    code, output, path = _bad(tmp_path, {"objectives": ["cost_per_token_usd", "tbt_p99_s"]})
    assert code == 2 and "\n" not in output, output
    assert output.startswith(f"{path}: objectives[0]: cost_per_token_usd needs a price")
    assert "devices.npu.price_per_hour" in output


@pytest.mark.parametrize("change, drop, field", [
    ({}, ("serving",), "serving"),
    ({"serving": {"rate_per_s": 10.0, "requests": 8, "lengths": "alpaca"}}, (), "serving.seed"),
    ({"serving": {"rate_per_s": 10.0, "requests": 8, "lengths": "alpaca", "seed": 0, "max_batch": 8}}, (),
     "axes.serving.max_batch"),  # the axis sets it too
    ({"serving": {"rate_per_s": 0, "requests": 8, "lengths": "alpaca", "seed": 0}}, (), "serving.rate_per_s"),
    ({"serving": {"rate_per_s": 1.0, "requests": 8, "lengths": "imdb", "seed": 0}}, (), "serving.lengths"),
    ({"system": "neupimz"}, (), "system"),
    ({}, ("workload",), "workload"),
    ({"mapping": "fusemax"}, (), "mapping"),
    ({"objectives": ["throughput_tok_s", "area_um3"]}, (), "objectives[1]"),
])
def test_a_bad_system_sweep_exits_2_naming_the_field(tmp_path, change, drop, field):
    code, output, path = _bad(tmp_path, change, drop)
    assert code == 2 and "\n" not in output, output
    assert output.startswith(f"{path}: {field}: "), output


def test_a_sweep_of_an_architecture_has_no_serving_metrics(tmp_path):
    data = {"name": "arch", "mapping": "fusemax", "workload": "bert-base", "axes": {"workload.seq_len": [1024]},
            "objectives": ["throughput_tok_s", "energy_pj"]}
    code, output = _invoke("sweep", str(_write(tmp_path / "a.yaml", data)), "--db", str(tmp_path / "a.sqlite"),
                           "--local")
    assert code == 2 and "objectives[0]: unknown objective 'throughput_tok_s'" in output


def test_serving_objectives_on_the_command_line_need_a_system_sweep(tmp_path):
    data = {"name": "arch", "mapping": "fusemax", "workload": "bert-base", "axes": {"workload.seq_len": [1024]}}
    code, output = _invoke("sweep", str(_write(tmp_path / "a.yaml", data)), "--db", str(tmp_path / "a.sqlite"),
                           "--local", "--objectives", "throughput_tok_s,energy_pj")
    assert code == 2 and "--objectives: throughput_tok_s: not a metric of sweep arch" in output
    assert not (tmp_path / "a.sqlite").exists()
