"""The issue-6 command line: `archsim simulate`, `archsim reproduce neupims`, `archsim run --model event`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from archsim.systems import neupims, neupims_reproduce

GPU_PRESETS = Path(__file__).resolve().parents[1] / "archsim" / "gpu" / "presets"


def test_simulate_a_trace_as_json_and_its_iteration_trace(tmp_path, cli):
    trace = tmp_path / "requests.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,64,8\n0.001,32,4\n0.002,128,16\n0.01,16,2\n")
    out = json.loads(cli("simulate", "--system", "npu-only", "--workload", "gpt3-7b", "--trace", str(trace),
                         "--json", "--trace-out", str(tmp_path / "serve.json")).output)
    assert out["requests"] == 4 and out["rejected"] == 0 and out["output_tokens"] == 8 + 4 + 16 + 2
    assert out["throughput_tok_s"] > 0 and out["ttft_p50_s"] > 0 and 0 < out["utilization"]["npu"] < 1
    assert out["energy_per_token_j"] > 0
    events = json.loads((tmp_path / "serve.json").read_text())["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == out["iterations"]


def test_simulate_poisson_is_seeded(cli):
    args = ("simulate", "-s", "neupims", "-w", "gpt3-7b", "--rate", "50", "--requests", "30", "--lengths",
            "alpaca", "--json")
    first, again = (json.loads(cli(*args).output) for _ in range(2))
    assert first == again and first["requests"] == 30
    other = json.loads(cli(*args, "--seed", "1").output)
    assert other["output_tokens"] != first["output_tokens"]
    wider = json.loads(cli(*args, "--tp", "8").output)
    assert wider["system"] == "neupims:gpt3-7b tp8 pp1" and wider["makespan_s"] != first["makespan_s"]


@pytest.mark.parametrize(("args", "message"), [
    (("--rate", "5"), "give either --trace FILE or both --rate R and --requests N"),
    (("--rate", "5", "--requests", "3", "--trace", "x.csv"), "exclude each other"),
    (("--trace", "missing.csv"), "missing.csv"),
    (("--rate", "5", "--requests", "3", "--tp", "3"),
     "error: --tp: expected a divisor of heads (32 in"),  # the option named, not the spec entry it was written to
    (("--rate", "5", "--requests", "3", "--pp", "33"),
     "error: --pp: expected at most layers (32 in"),
])
def test_simulate_bad_input_exits_2(cli, args, message):
    result = cli("simulate", "-s", "neupims", "-w", "gpt3-7b", *args, expect=2)
    assert message in result.output and result.output.count("\n") == 1, result.output


def test_tp_on_a_system_whose_spec_has_no_by_workload(cli):
    """--tp replaces the spec's degree on a spec without by_workload (lamina's) too, and is checked as the spec's
    would be; the error names the option, not the count the file holds (lamina: 2 compute GPUs per node, one
    replica, so tp is 2)."""
    args = ("simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "5", "--requests", "3", "--json")
    same = json.loads(cli(*args, "--tp", "2").output)
    assert same == json.loads(cli(*args).output)
    result = cli(*args, "--tp", "4", expect=2)
    assert result.output.startswith("error: --tp: expected at most 2 (a TP group in one node"), result.output
    result = cli(*args, "--tp", "1", expect=2)  # Llama3-70B's 137 GB of weights on one H100
    assert result.output.startswith("error: --tp: llama3-70b at tp 1 pp 1 puts 141.1 GB"), result.output
    result = cli("simulate", "-s", "lamina", "-w", "llama-33b", "--rate", "5", "--requests", "3", "--tp", "1",
                 expect=2)  # its weights fit one H100, whose replica then leaves one of the 2 compute GPUs idle
    assert result.output.startswith("error: --tp: expected devices.compute.count / replicas = 2 / 1"), result.output


def test_simulate_takes_gqa_models_and_refuses_a_workload_without_a_block(cli):
    """GQA and MoE layers come from the library's cascades (issue 13); a workload that does not name its decoder
    block (an encoder such as BERT) is refused, naming the file and the key."""
    out = json.loads(cli("simulate", "-s", "neupims", "-w", "llama3-8b", "--rate", "5", "--requests", "3",
                         "--json").output)
    assert out["system"] == "neupims:llama3-8b tp4 pp1" and out["throughput_tok_s"] > 0
    result = cli("simulate", "-s", "neupims", "-w", "bert-base", "--rate", "5", "--requests", "3", expect=2)
    assert "bert-base.yaml: block: missing" in result.output


def test_simulate_bad_trace_row_names_the_field(tmp_path, cli):
    trace = tmp_path / "bad.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,64,eight\n")
    result = cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", str(trace), expect=2)
    assert str(trace) in result.output and "output_tokens" in result.output


def test_reproduce_neupims_json_has_a_record_per_point(cli):
    out = json.loads(cli("reproduce", "neupims", "--json").output)
    points = out["points"]
    assert {"mode", "model", "dataset", "batch", "throughput_tok_s", "npu_util", "pim_util"} <= set(points[0])
    modes = {p["mode"] for p in points}
    assert {"gpu", "npu-only", "npu+pim", "neupims"} <= modes
    per_mode = len(neupims.MODELS) * len(neupims_reproduce.DATASETS) * len(neupims_reproduce.BATCHES)
    assert len(points) == len(modes) * per_mode
    assert {h["metric"] for h in out["headline"]} >= {"neupims/npu-only", "neupims/npu+pim", "npu+pim/npu-only"}
    ours = {r["metric"]: r["ours"] for r in out["attribution"] if r["variant"] == "ours"}
    assert ours == {h["metric"]: h["ours"] for h in out["headline"]}


def test_run_with_the_event_model_writes_a_trace_and_names_stalls(tmp_path, cli):
    out = cli("run", "-m", "unfused", "-w", "bert-base", "--model", "event", "--trace",
              str(tmp_path / "t.json")).output
    assert "stalls" in out and "waiting on" in out
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert any(e["ph"] == "X" for e in events)
    as_json = json.loads(cli("run", "-m", "unfused", "-w", "bert-base", "--model", "event", "--json").output)
    assert as_json["stalls"] and as_json["latency_s"] > 0
    misplaced = cli("run", "-m", "unfused", "--trace", str(tmp_path / "x.json"), expect=2)
    assert "--model event" in misplaced.output


def test_report_run_with_the_event_model_adds_stalls_and_a_trace(tmp_path, cli):
    out = tmp_path / "report"
    cli("report", "--run", "-m", "fusemax-arch", "-w", "bert-base", "--event", "--out", str(out))
    stalls = (out / "stalls.csv").read_text().splitlines()
    assert stalls[0] == "label,source,unit_s,share" and "pipeline stall M0*LM" in stalls[1]
    assert json.loads((out / "trace.json").read_text())["traceEvents"]
    assert "href='trace.json'" in (out / "index.html").read_text()
    misplaced = cli("report", "--library", "--event", expect=2)
    assert "--event" in misplaced.output


SYSTEM = """name: two-npus
description: a node of four NPUs and their HBM
source: a test
devices:
  npu: {kind: npu, count: 4}
  hbm: {kind: bank-pim, count: 4}
links:
  tp: {name: test-link, source: a test, latency_s: 1.0e-6, bytes_per_s_per_direction: 1.0e+11}
parallelism: {tp: 1, pp: 1}
placement:
  - {op: [attn_norm, qkv, attention, out_proj, attn_residual, ffn_norm, ffn, moe, ffn_residual], device: npu}
schedule: {kind: blocked}
"""


@pytest.mark.parametrize(("old", "new", "fragments"), [
    ("kind: npu,", "kind: tpu,", ["devices.npu.kind", "expected one of npu, bank-pim", "'tpu'"]),
    ("device: npu}", "device: gpu}", ["placement[0].device", "expected a device of this system (npu, hbm)", "'gpu'"]),
    ("bytes_per_s_per_direction: 1.0e+11", "bytes_per_s_per_direction: 0", ["links.tp.bytes_per_s_per_direction"]),
    ("tp: 1, pp: 1", "tp: 3, pp: 1", ["parallelism.tp", "expected a divisor of heads (32 in", "got 3"]),
])
def test_simulate_bad_system_spec_names_file_and_field(cli, tmp_path, old, new, fragments):
    """Issue 13's bad input: an unknown device kind, a placement naming a missing device, a link with zero bandwidth,
    TP that does not divide the heads: exit 2, one line naming the system file and the field."""
    path = tmp_path / "system.yaml"
    path.write_text(SYSTEM)
    json.loads(cli("simulate", "-s", str(path), "-w", "gpt3-7b", "--rate", "5", "--requests", "2", "--json").output)
    assert old in SYSTEM
    path.write_text(SYSTEM.replace(old, new))
    message = cli("simulate", "-s", str(path), "-w", "gpt3-7b", "--rate", "5", "--requests", "2", expect=2).output
    assert message.startswith(f"error: {path}: ") and message.count("\n") == 1, message
    assert all(fragment in message for fragment in fragments), message


def test_an_attention_kernel_that_cannot_run_on_the_gpu_names_the_device_field(cli, tmp_path):
    """A GPU file with 8 KiB of shared memory per SM holds no FlashAttention-2 tile (MI300X's 64 KiB of LDS takes a
    smaller one). The serving run stops at the first attention call with the system file and
    devices.gpu.attention_kernel (it was a NaN iteration time before)."""
    gpu = tmp_path / "small-lds.yaml"
    gpu.write_text(yaml.safe_dump(yaml.safe_load((GPU_PRESETS / "mi300x.yaml").read_text())
                                  | {"name": "small-lds", "smem_bytes_per_sm": 8192}))
    spec = tmp_path / "vllm-small-lds.yaml"
    spec.write_text(f"name: vllm-small-lds\nbase: vllm-h100\ndevices:\n  gpu: {{preset: {gpu}}}\n")
    result = cli("simulate", "--system", str(spec), "--workload", "gpt3-13b", "--rate", "4", "--requests", "3",
                 expect=2)
    assert f"{spec}: devices.gpu.attention_kernel: FlashAttention-2 cannot run" in result.output
    assert "small-lds has 8192 B per SM" in result.output


def test_mi300x_serves_on_a_smaller_flashattention_2_decode_tile(cli, tmp_path):
    """The same system on MI300X runs: FA2's decode takes a halved key block that fits 64 KiB of LDS."""
    spec = tmp_path / "vllm-mi300x.yaml"
    spec.write_text("name: vllm-mi300x\nbase: vllm-h100\ndevices:\n  gpu: {preset: mi300x}\n")
    result = cli("simulate", "--system", str(spec), "--workload", "gpt3-13b", "--rate", "4", "--requests", "3",
                 "--json")
    metrics = json.loads(result.output)
    assert metrics["requests"] == 3 and metrics["rejected"] == 0 and metrics["throughput_tok_s"] > 0, metrics
