"""A system sweep for Lamina-style studies: an alpha sweep's records carry BW_min per NIC (the numbers `simulate
--alpha --json` prints under `link`), and the request stream (`serving.lengths`: a length preset or a CSV trace;
`serving.rate_per_s`) is an axis, each point serving its own stream and keyed on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.dse.points import keyed, load_base
from archsim.dse.serving_spec import POISSON_KEYS
from archsim.dse.spec import load_sweep
from archsim.dse.sweep import run_sweep
from archsim.dse.system_points import serve_point
from archsim.systems.links import load_link
from archsim.systems.requests import poisson_requests, read_trace
from archsim.systems.system_spec import load_system

BANDWIDTH = "system.links.attention.bytes_per_s_per_direction"
LINK_NUMBERS = ("bw_min_compute_nic_bytes_per_s", "bw_min_memory_nic_bytes_per_s", "compute_nic_bytes_per_s",
                "memory_nic_bytes_per_s")
SERVING = {"rate_per_s": 5.0, "requests": 8, "lengths": "azure-conv", "seed": 0, "max_batch": 64}


def _spec_file(tmp_path: Path, axes: dict, serving: dict, name: str = "sweep.yaml") -> Path:
    data = {"name": "lamina-s31", "system": "lamina", "workload": "llama3-70b", "serving": serving, "axes": axes,
            "objectives": ["throughput_tok_s", "cost_per_token_usd"]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output.strip().removeprefix("error: ")


def test_an_alpha_sweep_stores_bw_min_per_nic_as_simulate_alpha_prints_it(tmp_path):
    """With serving.alpha, a feasible point's record holds the compute- and memory-end BW_min per NIC and the NIC
    rates at the run's most demanding decode iteration: the numbers `simulate --alpha --json` prints under `link`
    for the same system and requests. An infeasible point (a 1 GB/s link) carries what it was checked at, but no
    BW_min, its reason naming them."""
    preset_bytes_per_s = load_link("lamina-gpu-initiated-400g").bytes_per_s_per_direction  # 45.7 GB/s
    path = _spec_file(tmp_path, {BANDWIDTH: [1.0e9, preset_bytes_per_s]}, {**SERVING, "alpha": 0.2})
    df = run_sweep(load_sweep(path), tmp_path / "sweep.sqlite").set_index(BANDWIDTH)
    code, output = _invoke("simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "5", "--requests", "8",
                           "--lengths", "azure-conv", "--seed", "0", "--max-batch", "64", "--alpha", "0.2", "--json")
    assert code == 0, output
    link = json.loads(output)["link"]
    feasible = df.loc[preset_bytes_per_s]
    assert feasible.feasible
    for name in LINK_NUMBERS:
        assert feasible[f"link.{name}"] == pytest.approx(link[name], rel=1e-12), name
    # the preset's link is the one both ends use: 45.7 GB/s per NIC (its file)
    assert feasible["link.compute_nic_bytes_per_s"] == feasible["link.memory_nic_bytes_per_s"] == 45.7e9
    slow = df.loc[1.0e9]
    assert not slow.feasible and "below BW_min" in slow.reason
    assert all(math.isnan(slow[f"link.{name}"]) for name in LINK_NUMBERS if name.startswith("bw_min"))
    assert slow["link.compute_nic_bytes_per_s"] == slow["link.memory_nic_bytes_per_s"] == 1.0e9  # config: kept


def test_lengths_and_rate_are_axes_each_point_serving_the_stream_its_values_give(tmp_path):
    """A model x trace grid as a sweep: each point serves the seeded Poisson stream of its own lengths and rate,
    the same run `serve_point` makes of that stream, and its key holds them (four points, four keys)."""
    lengths, rates = ["azure-conv", "azure-code"], [2.0, 8.0]
    serving = {key: value for key, value in SERVING.items() if key not in ("lengths", "rate_per_s")}
    path = _spec_file(tmp_path, {"serving.lengths": lengths, "serving.rate_per_s": rates}, serving)
    code, output = _invoke("sweep", str(path), "--db", str(tmp_path / "sweep.sqlite"), "--local")
    assert code == 0 and "4 points (4 new, 0 reused)" in output, output
    spec = load_sweep(path)
    df = run_sweep(spec, tmp_path / "sweep.sqlite").set_index(["serving.lengths", "serving.rate_per_s"])
    system, workload = load_system("lamina"), library.load_workload_spec("llama3-70b")
    for name in lengths:
        for rate in rates:
            requests = poisson_requests(rate_per_s=rate, n=8, lengths=name, seed=0)
            fields = {"serving.lengths": name, "serving.rate_per_s": rate}
            expected = serve_point(system, workload, requests, spec.serving, fields)
            assert df.loc[(name, rate), "makespan_s"] == pytest.approx(expected.extras["makespan_s"], rel=1e-12)
            # every request decodes all its tokens: the stream's own output tokens
            assert df.loc[(name, rate), "output_tokens"] == sum(r.output_tokens for r in requests)
    assert len(set(df["key"])) == 4


def test_a_trace_csv_is_a_lengths_value_its_requests_served_as_read(tmp_path):
    """A CSV trace (arrival_s,prompt_tokens,output_tokens) beside the sweep file is a lengths value: its points
    serve the trace's requests (`read_trace`: 3 requests wanting 5 + 7 + 4 = 16 output tokens); the key holds the
    trace's content, so an edited trace is a new point, not a reused record."""
    (tmp_path / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,5\n0.1,300,7\n0.2,50,4\n")
    serving = {key: value for key, value in SERVING.items() if key != "lengths"}
    path = _spec_file(tmp_path, {"serving.lengths": ["azure-conv", "trace.csv"]}, serving)
    spec = load_sweep(path)
    df = run_sweep(spec, tmp_path / "sweep.sqlite").set_index("serving.lengths")
    assert df.loc["trace.csv", "output_tokens"] == 16
    expected = serve_point(load_system("lamina"), library.load_workload_spec("llama3-70b"),
                           read_trace(tmp_path / "trace.csv"), spec.serving, {"serving.lengths": "trace.csv"})
    assert df.loc["trace.csv", "makespan_s"] == pytest.approx(expected.extras["makespan_s"], rel=1e-12)
    points = [{"target": "lamina", "serving.lengths": value} for value in ("azure-conv", "trace.csv")]
    before = [key for key, _ in keyed(spec, load_base(spec), points)]
    (tmp_path / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,6\n")
    after = [key for key, _ in keyed(spec, load_base(spec), points)]
    assert after[0] == before[0] and after[1] != before[1]


def test_a_lengths_axis_of_one_value_keys_as_the_serving_block_giving_it(tmp_path):
    """One configuration, one key however spelled: `lengths: azure-conv` in the block and the axis
    `serving.lengths: [azure-conv]` key their point alike (the serving part of the key is the run's)."""
    fixed = load_sweep(_spec_file(tmp_path, {"serving.max_batch": [64]},
                                  {k: v for k, v in SERVING.items() if k != "max_batch"}, "fixed.yaml"))
    axis = load_sweep(_spec_file(tmp_path, {"serving.lengths": ["azure-conv"], "serving.rate_per_s": [5]},
                                 {k: v for k, v in SERVING.items() if k not in ("lengths", "rate_per_s")}, "axis.yaml"))
    key_fixed = keyed(fixed, load_base(fixed), [{"target": "lamina", "serving.max_batch": 64}])[0][0]
    key_axis = keyed(axis, load_base(axis), [{"target": "lamina", "serving.lengths": "azure-conv",
                                              "serving.rate_per_s": 5}])[0][0]
    assert key_fixed == key_axis


@pytest.mark.parametrize("axes, field, message", [
    ({"serving.lengths": ["azure-conv", "imdb"]}, "axes.serving.lengths[1]", "expected one of sharegpt"),
    ({"serving.lengths": ["missing.csv"]}, "axes.serving.lengths[0]", "No such file"),
    ({"serving.lengths": ["bad.csv"]}, "axes.serving.lengths[0]", "expected the header"),
    ({"serving.rate_per_s": [2.0, 0]}, "axes.serving.rate_per_s[1]", "expected a positive number of requests"),
    ({"serving.rate_per_s": ["fast"]}, "axes.serving.rate_per_s[0]", "expected a positive number of requests"),
    ({"serving.rate_per_s": [-1.0]}, "axes.serving.rate_per_s[0]", "expected a positive number of requests"),
    ({"serving.lengths": ["azure-conv", "trace.csv"], "serving.rate_per_s": [2.0, 4.0]}, "axes.serving.rate_per_s",
     "a trace's points"),
])
def test_a_bad_lengths_or_rate_value_exits_2_naming_the_sweep_file_and_path(tmp_path, axes, field, message):
    (tmp_path / "bad.csv").write_text("when,prompt,output\n0,1,1\n")
    (tmp_path / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,5\n")
    serving = {key: value for key, value in SERVING.items() if f"serving.{key}" not in axes}
    path = _spec_file(tmp_path, axes, serving)
    code, output = _invoke("sweep", str(path), "--db", str(tmp_path / "sweep.sqlite"), "--local")
    assert code == 2 and "\n" not in output, output
    assert output.startswith(f"{path}: {field}: ") and message in output, output
    assert not (tmp_path / "sweep.sqlite").exists()


def test_a_rate_too_low_for_its_arrivals_exits_2_naming_the_rate(write_yaml, invoke, tmp_path) -> None:
    """A Poisson rate so low that an arrival falls past what the simulator times is the rate's fault: exit 2 at
    the axis value that gave it (it had named `<python>: request 0: arrival_s`, or stored an infeasible row)."""
    spec = write_yaml(tmp_path / "slow.yaml", {
        "name": "slow", "system": "neupims", "workload": "gpt3-7b",
        "serving": {"requests": 20, "seed": 0, "max_batch": 64, "lengths": "alpaca"},
        "axes": {"serving.rate_per_s": [5.0, 1.0e-300]}})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"))
    assert code == 2 and f"{spec}: axes.serving.rate_per_s[1]: 1e-300 requests/s puts request 0: arrival_s" in output


def test_one_trace_named_two_ways_is_one_point(tmp_path):
    """A trace is keyed by its requests, not its path: named relative to the sweep and by its absolute path, it is
    one point (it had been two, run twice)."""
    (tmp_path / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,5\n0.1,300,7\n")
    serving = {key: value for key, value in SERVING.items() if key not in ("lengths", *POISSON_KEYS)}
    spec = load_sweep(_spec_file(tmp_path, {"serving.lengths": ["trace.csv", str(tmp_path / "trace.csv")]},
                                 serving))
    points = [{"target": "lamina", "serving.lengths": value} for value in ("trace.csv", str(tmp_path / "trace.csv"))]
    keys = [key for key, _ in keyed(spec, load_base(spec), points)]
    assert keys[0] == keys[1]


def test_a_sweep_of_traces_alone_takes_no_rate_count_or_seed(tmp_path):
    """Where every lengths value is a CSV trace, the serving block's Poisson keys would not be read: the sweep runs
    without them (its points serve the trace as read: 5 + 7 = 12 output tokens), and one given is refused, exit 2
    naming it (both had been the other way round: required, and then unread)."""
    (tmp_path / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,5\n0.1,300,7\n")
    path = _spec_file(tmp_path, {"serving.max_batch": [32, 64]}, {"lengths": "trace.csv"})
    data = yaml.safe_load(path.read_text())
    df = run_sweep(load_sweep(path), tmp_path / "sweep.sqlite")
    assert list(df["output_tokens"]) == [12, 12]
    for key in POISSON_KEYS:
        data["serving"][key] = SERVING[key]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        code, output = _invoke("sweep", str(path), "--db", str(tmp_path / f"{key}.sqlite"), "--local")
        assert code == 2 and f"{path}: serving.{key}: not read: every point serves a trace" in output, output
        del data["serving"][key]


def test_a_trace_points_key_holds_no_rate_count_or_seed(tmp_path):
    """A trace's point serves the trace whatever the block's rate, count and seed (they draw the length presets'
    Poisson streams), so they are not in its key: two sweeps differing in them reuse the trace's record, not the
    preset's."""
    (tmp_path / "trace.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,5\n")
    points = [{"target": "lamina", "serving.lengths": value} for value in ("azure-conv", "trace.csv")]
    keys = []
    for rate, seed in ((5.0, 0), (7.0, 1)):
        serving = {key: value for key, value in SERVING.items() if key != "lengths"} | {"rate_per_s": rate,
                                                                                        "seed": seed}
        spec = load_sweep(_spec_file(tmp_path, {"serving.lengths": ["azure-conv", "trace.csv"]}, serving))
        keys.append([key for key, _ in keyed(spec, load_base(spec), points)])
    assert keys[0][0] != keys[1][0] and keys[0][1] == keys[1][1]
