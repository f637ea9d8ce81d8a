"""Serving sweeps after the s25 audit (helper-217): a system's preset files are part of its base, the prefill budget
is a serving key and an axis, and a point's record is `ServingResult.record`'s, rejections included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.store import read_records
from archsim.gpu.load import load_gpu

SWEEP = """name: s
system: ./sys.yaml
workload: llama3-8b
serving: {rate_per_s: 5.0, requests: 12, lengths: kimi-ta, seed: 0, max_batch: 16}
axes:
  serving.max_prefill_tokens: [4096, 16384]
"""


def _setup(tmp_path: Path) -> Path:
    shutil.copy(load_gpu("h100-sxm5").source, tmp_path / "myh100.yaml")
    (tmp_path / "sys.yaml").write_text("name: mysys\nbase: vllm-h100\ndevices:\n  gpu: {preset: ./myh100.yaml}\n")
    (tmp_path / "s.yaml").write_text(SWEEP)
    return tmp_path


def _sweep(folder: Path, *extra: str):
    return CliRunner().invoke(main, ["sweep", str(folder / "s.yaml"), "--db", str(folder / "s.sqlite"), *extra])


def test_a_preset_file_edited_since_is_another_base(tmp_path):
    """The second sweep runs in a process of its own, as a user's would (this one remembers the system file's
    parse by its bytes, which did not change)."""
    folder = _setup(tmp_path)
    assert _sweep(folder).exit_code == 0
    gpu = folder / "myh100.yaml"
    gpu.write_text(gpu.read_text().replace("dram_bytes_per_s: 3.35e+12", "dram_bytes_per_s: 2.0e+12"))
    again = subprocess.run([sys.executable, "-m", "archsim", "sweep", str(folder / "s.yaml"), "--db",
                            str(folder / "s.sqlite")], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "differs" in again.stderr and "in resolved" in again.stderr


def test_the_prefill_budget_is_an_axis_and_the_record_carries_the_runs_counts(tmp_path):
    folder = _setup(tmp_path)
    assert _sweep(folder).exit_code == 0, _sweep(folder).output
    rows = read_records(folder / "s.sqlite")
    assert len(rows) == 2 and rows["feasible"].all()
    assert sorted(rows["serving.max_prefill_tokens"]) == [4096, 16384]
    assert {"prefill_deferrals", "kv_pages_peak", "kv_pages_capacity"} <= set(rows.columns)
    assert (rows["kv_pages_peak"] <= rows["kv_pages_capacity"]).all()


def test_a_budget_of_zero_is_refused_naming_the_field(tmp_path):
    folder = _setup(tmp_path)
    (folder / "s.yaml").write_text(SWEEP.replace("max_batch: 16}", "max_batch: 16, max_prefill_tokens: 0}")
                                   .replace("serving.max_prefill_tokens: [4096, 16384]", "serving.max_batch: [8, 16]")
                                   .replace("max_batch: 16, max", "max"))
    refused = _sweep(folder)
    assert refused.exit_code == 2
    one_line_error(refused, "serving.max_prefill_tokens", "expected a whole number >= 1")


def test_simulate_json_record_is_infeasible_when_a_request_was_rejected(tmp_path):
    """One prompt that can never fit the cache beside one that does: the run goes on, and its record says why it
    is not a result for all its requests, as a sweep's point does."""
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,4\n0,3000000,4\n")
    run = CliRunner().invoke(main, ["simulate", "-s", "vllm-h100", "-w", "llama3-8b", "--trace", str(trace),
                                    "--json"])
    assert run.exit_code == 0, run.output
    record = json.loads(run.output)["record"]
    assert record["feasible"] is False and "1 of 2 requests" in record["reason"]


def test_a_preset_file_an_axis_names_edited_since_refuses_the_store(tmp_path):
    """An axis over GPU preset files (review helper-219): the file the second point names, edited, had its old row
    come back, 1.73x off; then it made that point new beside the old row of the same name. The store's base now
    holds each file the axis names, so the edited one is refused naming it (s39), the store unchanged."""
    folder = _setup(tmp_path)
    shutil.copy(folder / "myh100.yaml", folder / "myh100b.yaml")
    (folder / "s.yaml").write_text(SWEEP.replace("serving.max_prefill_tokens: [4096, 16384]",
                                                 "system.devices.gpu.preset: [./myh100.yaml, ./myh100b.yaml]"))
    assert _sweep(folder).exit_code == 0
    stored = len(read_records(folder / "s.sqlite"))
    gpu = folder / "myh100b.yaml"
    gpu.write_text(gpu.read_text().replace("dram_bytes_per_s: 3.35e+12", "dram_bytes_per_s: 1.0e+12"))
    again = subprocess.run([sys.executable, "-m", "archsim", "sweep", str(folder / "s.yaml"), "--db",
                            str(folder / "s.sqlite")], capture_output=True, text=True, check=False)
    assert again.returncode == 2, again.stderr
    assert again.stderr.count("\n") == 1 and "myh100b.yaml (axes.system.devices.gpu.preset)" in again.stderr
    assert len(read_records(folder / "s.sqlite")) == stored


def test_an_energy_objective_on_a_device_without_energy_is_refused_at_load(tmp_path):
    """lamina-tpu-v6e's memory pool is a TPU chip with no power figure (review helper-217): with the default
    objectives (latency_s, energy_pj) the sweep had run to an empty front and the report failed naming
    --objectives. It is refused at load, naming the objective and the device; objectives without energy run."""
    spec = tmp_path / "t.yaml"
    text = ("name: t\nsystem: lamina-tpu-v6e\nworkload: llama3-70b\n"
            "serving: {rate_per_s: 5.0, requests: 6, lengths: azure-conv, seed: 0}\naxes:\n"
            "  serving.max_batch: [32, 64]\n")
    spec.write_text(text)
    refused = CliRunner().invoke(main, ["sweep", str(spec), "--db", str(tmp_path / "t.sqlite")])
    assert refused.exit_code == 2
    one_line_error(refused, "objectives[1]", "devices.memory", "tpu-v6e gives no power_w")
    spec.write_text(text + "objectives: [throughput_tok_s, tbt_p99_s]\n")
    assert CliRunner().invoke(main, ["sweep", str(spec), "--db", str(tmp_path / "u.sqlite")]).exit_code == 0


def test_an_axis_over_presets_none_of_which_has_a_power_is_refused_too(tmp_path):
    """Review helper-221: the check had skipped any device whose preset an axis sets; an axis over two powerless
    TPU presets ran to an empty front. Each value is now checked; one preset with a power lets the sweep run."""
    spec = tmp_path / "t.yaml"
    text = ("name: t\nsystem: lamina-tpu-v6e\nworkload: llama3-70b\n"
            "serving: {rate_per_s: 5.0, requests: 6, lengths: azure-conv, seed: 0, max_batch: 64}\naxes:\n"
            "  system.devices.memory.preset: [tpu-v6e, tpu-v5e]\n"
            "objectives: [throughput_tok_s, energy_per_token_j]\n")
    spec.write_text(text)
    refused = CliRunner().invoke(main, ["sweep", str(spec), "--db", str(tmp_path / "t.sqlite")])
    assert refused.exit_code == 2
    one_line_error(refused, "objectives[1]", "nor does any preset its axis sets")
