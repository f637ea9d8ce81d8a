"""What fuzzing `archsim parallel` and `archsim sparse` found: a LASP-2 layer shorter than its own compute, a
prefill that cannot fit printed as a result, MInference index costs of a k_v beyond the context, errors naming an
internal location instead of the option, a pattern map's error naming its `name:` instead of its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from archsim.gpu.load import load_gpu
from archsim.library import load_workload_spec
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology
from archsim.workload_patterns import load_pattern_map

PATTERNS = Path(__file__).resolve().parents[1] / "workloads" / "patterns"


@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
def test_a_lasp2_layer_takes_at_least_its_compute(direction: str) -> None:
    """At 512K tokens on 8 A100s the all-gather is short beside the intra-chunk work: the layer took 3.19 ms
    against 3.68 ms of compute (utilization 1.15). The chunk's state is computed before its all-gather starts."""
    topology = load_topology("dgx-a100")
    spec = ParallelSpec("lasp2", 8, load_workload_spec("linear-llama3-1b"), 524288, topology.gpu, topology,
                        direction=direction)
    result = parallel_time(spec)
    assert result.time_s >= result.compute_s > 0
    assert result.record().busy_s["compute"] / result.time_s <= 1.0


def test_a_prefill_whose_weights_and_kv_exceed_the_gpu_is_marked(cli) -> None:
    """Llama-3-8B on a 24 GiB RTX 4090: at 32K, 20.4 GB fits; at 128K (16 GB of weights and 17 GB of KV cache) the
    KV cache goes to the host and one layer's stays. Llama-3-70B's 141 GB of weights cannot fit at any length."""
    out = json.loads(cli("sparse", "--method", "flexprefill", "--gpu", "rtx-4090", "-w", "llama3-8b", "--context",
                         "32K,128K", "--density", "0.1", "--json").output)
    capacity = load_gpu("rtx-4090").dram_bytes
    assert [p["fits"] for p in out["points"]] == [True, True]
    assert out["points"][0]["memory_bytes"] <= capacity < out["points"][1]["memory_bytes"]
    assert out["points"][0]["kv_host_s"] == 0 < out["points"][1]["kv_host_s"]
    text = cli("sparse", "--method", "flexprefill", "--gpu", "rtx-4090", "-w", "llama3-70b", "--context", "32K",
               "--density", "0.1").output
    rows = [line for line in text.splitlines() if line.strip().startswith("32768")]
    assert len(rows) == 1 and "OOM" in rows[0]


def test_minference_index_sizes_stop_at_the_context(cli, tmp_path: Path) -> None:
    """k_v = 1e8 at 32K tokens costed 1e8 indices per query block (55 s against dense 1.5 s); MInference clamps
    the verticals and slashes to the query length, so any k_v at or above the context costs the same (here the
    largest a map takes, the size limit 2^24: 1e8 is refused as beyond it)."""
    data = yaml.safe_load((PATTERNS / "llama3-8b-262k-minference.yaml").read_text())
    times = []
    for k_v in (32768, 2**24):
        data["patterns"] = [{**p, "k_v": k_v} if p["pattern"] == "vertical_slash" else p for p in data["patterns"]]
        path = tmp_path / f"map{k_v}.yaml"
        path.write_text(yaml.safe_dump(data))
        out = json.loads(cli("sparse", "--method", "minference", "--gpu", "h100-sxm5", "-w", "llama3-8b",
                             "--context", "32K", "--patterns", str(path), "--json").output)
        times.append(out["points"][0]["time_s"])
    assert times[0] == pytest.approx(times[1], rel=1e-12)


@pytest.mark.parametrize(("args", "says"), [
    (["sparse", "--method", "flexprefill", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "20000000",
      "--density", "0.1"], "--context: 20000000: 20000000 is beyond the limit of 16777216 on sizes"),
    (["parallel", "--scheme", "ring", "--devices", "8", "-w", "llama3-8b", "--seq-len", "32M"],
     "--seq-len: 32M: 33554432 is beyond the limit"),
    (["parallel", "--scheme", "ring", "--devices", "8", "-w", "llama3-8b", "--seq-len", "32K", "--batch", "100000"],
     "--batch: batch x heads x seqlen = 100000 x 32 x 4096"),
    (["parallel", "--scheme", "ring", "--devices", "1", "--tp", "16", "-w", "llama3-8b", "--seq-len", "8K"],
     "--tp: expected a divisor of the 8 devices per node"),
    (["parallel", "--scheme", "ring", "--tp", "8", "--devices", "8", "-w", "llama3-8b", "--seq-len", "32K",
      "--topology", "hgx-h100-8"], "--devices: 8 devices x tp 8 = 64 GPUs, beyond the 8 of topology 'hgx-h100-8'"),
])
def test_errors_name_the_option(cli, args: list[str], says: str) -> None:
    """These named `<step>`, `<python>: AttentionCase.seqlen`, `<params>` or `<seqpar_memory>`, or read `got 64`
    under --devices for 8 devices of tp 8."""
    assert f"error: {says}" in cli(*args, expect=2).output


def test_a_pattern_map_error_names_its_file(cli, tmp_path: Path) -> None:
    data = yaml.safe_load((PATTERNS / "llama3-8b-duo-50.yaml").read_text())
    data["layers"], data["patterns"][0]["heads"] = 16, data["patterns"][0]["heads"] // 2
    data["patterns"][1]["heads"] //= 2
    path = tmp_path / "duo16.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_pattern_map(str(path)).path == str(path)
    result = cli("sparse", "--method", "duoattention", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "32K",
                 "--patterns", str(path), expect=2)
    assert result.output.startswith(f"error: {path}: layers: expected a map of llama3-8b's KV heads")


def test_a_fusemax_report_length_no_configuration_runs_names_the_option(cli, tmp_path: Path) -> None:
    """`report --reproduction fusemax --seq-len 1000` was an internal error (a ValueError), exit 1."""
    result = cli("report", "--reproduction", "fusemax", "--seq-len", "1000", "--out", str(tmp_path / "r"), expect=2)
    assert result.output.startswith("error: --seq-len: 1000: no mapping of unfused runs BERT at 1000 tokens (")


def test_an_output_folder_the_file_system_refuses_fails_before_the_work(cli) -> None:
    """/proc passes access() for root but refuses a new entry: the report ran its five configurations first."""
    result = cli("report", "--reproduction", "fusemax", "--seq-len", "1024", "--out", "/proc/archsim-out", expect=2)
    assert result.output == "error: --out: /proc/archsim-out: cannot write here: /proc refuses a new entry (No such " \
                            "file or directory)\n"


def test_an_infeasible_point_s_json_has_no_numbers(cli, tmp_path: Path) -> None:
    """FuseMax's 256 x 256 mapping on a 128 x 128 array: its JSON carried a latency and a utilization of 3.86."""
    arch = yaml.safe_load((Path(__file__).resolve().parents[1] / "archsim" / "arch" / "presets" / "fusemax.yaml")
                          .read_text())
    arch["units"]["array2d"]["shape"] = [128, 128]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(arch))
    out = json.loads(cli("run", "-m", "fusemax", "-a", str(path), "-w", "bert-base", "--json").output)
    assert out["feasible"] is False and "128 PEs along dimension 0" in out["reason"]
    assert out["latency_s"] is None and out["utilization"] is None and out["energy_pj"] is None
    assert out["footprint_bytes"] and out["area_um2"] > 0


@pytest.mark.parametrize(("mapping", "length", "says"), [
    ("unfused", 1000, "unfused.yaml: groups[0].loops[1].ranks.M: rank M: size 1000 is not a multiple of the other "
                      "factors (256); the nearest multiples are 768 and 1024"),
    ("flat", 200, "flat.yaml: groups[0].loops[0].ranks.P: 'divisor_at_least(P // fanout(array2d, 0), "),
])
def test_a_length_the_mapping_cannot_tile_is_said_at_its_yaml_path(cli, mapping: str, length: int, says: str) -> None:
    """unfused named `loops[5]`, a loop index after expansion that its file does not have, and suggested 768 and 1536:
    the mapper had tried a search factor of 1000 // 256 = 3; flat's expression gave 0 without the sizes it read."""
    result = cli("run", "-m", mapping, "-w", "bert-base", "--set", f"seq_len={length}", expect=2)
    assert says in result.output
    if mapping == "flat":
        assert result.output.rstrip().endswith(f"gives 0, expected a positive integer (with P={length}, M={length}, "
                                               "word_bytes=2)")


@pytest.mark.parametrize(("args", "says"), [
    (["parallel", "--scheme", "lasp2", "--devices", "8", "-w", "llama3-8b", "--seq-len", "32K"],
     "llama3-8b.yaml: attention: lasp2 runs linear attention, but llama3-8b computes softmax attention"),
    (["parallel", "--scheme", "zigzag", "--devices", "8", "-w", "linear-llama3-1b", "--seq-len", "32K"],
     "linear-llama3-1b.yaml: attention: linear-llama3-1b computes linear attention, which scheme zigzag does not "
     "model"),
    (["simulate", "--system", "gpu", "-w", "linear-llama3-1b", "--rate", "5", "--requests", "5"],
     "which system gpu does not model"),
    (["sparse", "--method", "quest", "--gpu", "h100-sxm5", "-w", "linear-llama3-1b", "--context", "32K",
      "--budget", "1024"], "which quest does not model"),
    (["run", "-m", "fusemax", "-w", "linear-llama3-1b"],
     "which cascade attention-1pass (mapping fusemax) does not model"),
])
def test_linear_and_softmax_attention_are_not_timed_as_each_other(cli, args: list[str], says: str) -> None:
    """LASP-2 on Llama-3-8B printed 0.28 ms against Ring's 5.9 ms: a softmax model timed as linear attention; and a
    linear-attention model (`attention: linear`) ran as softmax attention everywhere else."""
    assert says in cli(*args, expect=2).output


def test_ring_stays_lasp2s_baseline_on_a_linear_workload(cli) -> None:
    out = json.loads(cli("parallel", "--scheme", "ring,lasp2", "--devices", "8", "-w", "linear-llama3-1b",
                         "--seq-len", "32K", "--json").output)
    assert [p["scheme"] for p in out["points"]] == ["ring", "lasp2"] and all(p["feasible"] for p in out["points"])


def test_a_set_top_k_above_the_experts_is_refused(cli) -> None:
    """A workload file with top_k > experts is refused; the same through --set ran as top_k = experts. (With no
    workload, a --set of one model size sets them all: `point.refuse_partial_model`.)"""
    sizes = [arg for name, n in (("tokens", 6), ("hidden", 8), ("ffn_dim", 8), ("experts", 4), ("word_bytes", 2))
             for arg in ("--set", f"{name}={n}")]
    assert "error: --set: top_k: expected at most experts (4), got 5" in cli("analyze", "moe-experts", *sizes, "--set",
                                                                             "top_k=5", expect=2).output


def test_gpu_points_of_full_attention_are_not_causal(cli, tmp_path: Path) -> None:
    """`gpus.causal: true` on attention-1pass (no mask) timed the GPU at half the work of the architecture's."""
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "mapping": "fusemax", "workload": "bert-base",
                                    "axes": {"workload.seq_len": [1024]}, "objectives": ["latency_s", "energy_pj"],
                                    "gpus": {"presets": ["h100-sxm5"], "causal": True}}))
    result = cli("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local", expect=2)
    assert "gpus.causal: cascade attention-1pass has no mask (full attention)" in result.output


def test_a_gpu_call_whose_operands_exceed_its_memory_is_infeasible() -> None:
    """BERT-base's batch of 64 at 1M tokens: Q, K, V and O alone are 412 GB; the GPU points were feasible."""
    from archsim.gpu.params import load_calibration
    from archsim.model.gpu import AttentionCase
    from archsim.model.gpu_kernels import family_of, predict

    case = AttentionCase("fwd", 64, 12, 12, 64, 2**20, False, "fp16")
    params = load_calibration().family_params(family_of("FlashAttention-2"))
    result = predict("FlashAttention-2", case, load_gpu("h100-sxm5"), params)
    assert case.operand_bytes() == 4 * 64 * 12 * 2**20 * 64 * 2
    assert not result.feasible and "its Q, K, V and O alone take 412.3 GB, beyond h100-sxm5's 85.9 GB" in result.reason
    fits = AttentionCase("fwd", 1, 12, 12, 64, 2**20, False, "fp16")
    assert predict("FlashAttention-2", fits, load_gpu("h100-sxm5"), params).feasible


def test_an_infeasible_point_s_report_summary_has_no_numbers(cli, tmp_path: Path) -> None:
    cli("report", "--run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "M0=65536", "--set",
        "seq_len=65536", "--out", str(tmp_path / "r"))
    import pandas as pd

    row = pd.read_csv(tmp_path / "r" / "summary.csv").iloc[0]
    assert not row.feasible and row[["latency_s", "energy_pj", "dram_traffic_bytes"]].isna().all()
    assert row.area_mm2 > 0
