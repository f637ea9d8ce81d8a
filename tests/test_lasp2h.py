"""LASP-2H (issue 18: "LASP-2H for hybrid models"; ../shared/reference/seqpar-sparse.md §1's LASP-2H row, §2.6's
Table 2): a workload of `attention: hybrid` (every `softmax_every`-th layer softmax, the others linear), refused
wherever softmax attention is timed; `archsim parallel --scheme lasp2h` times its linear layers as lasp2 and its
softmax layers as allgather, a layer the count-weighted mean; reproduce seqpar prints LASP-2's Table 2 rows.
Before this, `--scheme lasp2h` was refused as unknown and `attention: hybrid` as not one of softmax, linear."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology
from archsim.workload import Workload, workload_from_dict

HYBRID = "linear-llama3-1b-hybrid"
TOPOLOGY = "dgx-a100"  # one DGX A100: LASP-2 Table 2's 8 A100s


def _hybrid() -> Workload:
    return library.load_workload_spec(HYBRID)


def _by_hand(workload: Workload, attention: str) -> Workload:
    """The model with every layer of one attention: the hybrid file's sizes, softmax_every dropped."""
    params = {k: v for k, v in workload.params.items() if k != "softmax_every"}
    return Workload(workload.name, "", "", params, workload.path, workload.block, attention)


def test_the_hybrid_workload_is_linear_llama3_1b_with_every_fourth_layer_softmax():
    """LASP-2's "1/4 hybrid": Linear-Llama3-1B's shapes (16 layers, 16 heads, hidden 2048), 4 of 16 layers softmax."""
    hybrid, linear = _hybrid(), library.load_workload_spec("linear-llama3-1b")
    assert hybrid.attention == "hybrid" and hybrid.params["softmax_every"] == 4
    assert {k: v for k, v in hybrid.params.items() if k not in ("softmax_every", "batch")} == \
        {k: v for k, v in linear.params.items() if k != "batch"}
    assert hybrid.block == linear.block == "llama"


@pytest.mark.parametrize(("attention", "params", "where", "says"), [
    ("hybrid", {}, "params.softmax_every", "missing: attention: hybrid needs it"),
    ("linear", {"softmax_every": 4}, "params.softmax_every", "only for a hybrid model"),
    ("hybrid", {"softmax_every": 1}, "params.softmax_every", "expected an integer of at least 2"),
    ("hybrid", {"softmax_every": 17}, "params.softmax_every", "expected at most layers (16)"),
])
def test_softmax_every_goes_with_hybrid_attention(attention: str, params: dict, where: str, says: str):
    data = yaml.safe_load(Path(_hybrid().path).read_text())
    base = {k: v for k, v in data["params"].items() if k != "softmax_every"}
    with pytest.raises(SpecError) as refused:
        workload_from_dict({**data, "attention": attention, "params": {**base, **params}}, "mine.yaml")
    assert (refused.value.source, refused.value.where) == ("mine.yaml", where) and says in refused.value.message


@pytest.mark.parametrize("args", [
    ["simulate", "--system", "gpu", "--rate", "5", "--requests", "5", "-w"],
    ["sparse", "--method", "quest", "--gpu", "h100-sxm5", "--context", "32K", "--budget", "1024", "-w"],
    ["run", "-m", "fusemax", "-w"],
    ["gpu-roofline", "--gpu", "h100-sxm5", "-w"],
    ["parallel", "--scheme", "ring", "--devices", "8", "--seq-len", "32K", "-w"],
    ["parallel", "--scheme", "allgather", "--devices", "8", "--seq-len", "32K", "-w"],
    ["parallel", "--scheme", "lasp2", "--devices", "8", "--seq-len", "32K", "-w"],
])
def test_a_hybrid_model_is_refused_wherever_softmax_or_linear_attention_alone_is_timed(cli, args: list[str]):
    """Exit 2 naming the file's `attention`, not run as a softmax (or linear) model."""
    output = cli(*args, HYBRID, expect=2).output
    assert f"{_hybrid().path}: attention: " in output and "hybrid attention" in output, output


@pytest.mark.parametrize(("direction", "scope"), [("fwd", "attention"), ("fwd+bwd", "layer")])
def test_lasp2h_is_the_count_weighted_mean_of_lasp2_on_the_linear_layers_and_allgather_on_the_softmax_ones(
        direction: str, scope: str):
    """16 layers, softmax_every 4: 12 linear layers timed as lasp2, 4 softmax layers as allgather, per layer
    (12 t_lasp2 + 4 t_allgather) / 16, for time, compute and communication; the one-device reference likewise."""
    topology = load_topology(TOPOLOGY)
    hybrid = _hybrid()
    spec = ParallelSpec("lasp2h", 8, hybrid, 16384, topology.gpu, topology, batch=8, direction=direction, scope=scope)
    ours = parallel_time(spec)
    linear = parallel_time(replace(spec, scheme="lasp2", workload=_by_hand(hybrid, "linear")))
    softmax = parallel_time(replace(spec, scheme="allgather", workload=_by_hand(hybrid, "softmax")))
    for field in ("time_s", "compute_s", "comm_s"):
        assert getattr(ours, field) == pytest.approx((12 * getattr(linear, field) + 4 * getattr(softmax, field)) / 16,
                                                     rel=1e-12)
    one_linear = parallel_time(replace(spec, scheme="lasp2", devices=1, workload=_by_hand(hybrid, "linear")))
    one_softmax = parallel_time(replace(spec, scheme="allgather", devices=1, workload=_by_hand(hybrid, "softmax")))
    assert ours.ideal_s == pytest.approx((12 * one_linear.time_s + 4 * one_softmax.time_s) / 16 / 8, rel=1e-12)
    # the whole model's memory: more than the pure linear model's (its softmax layers hold K/V), and it fits
    assert linear.memory_bytes < ours.memory_bytes < topology.gpu.dram_bytes and ours.max_context_tokens > 16384


def test_lasp2h_refuses_a_workload_that_is_not_hybrid():
    topology = load_topology(TOPOLOGY)
    for name in ("linear-llama3-1b", "llama3-8b"):
        spec = ParallelSpec("lasp2h", 8, library.load_workload_spec(name), 16384, topology.gpu, topology)
        with pytest.raises(SpecError) as refused:
            parallel_time(spec)
        assert refused.value.where == "attention" and "lasp2h runs a hybrid model" in refused.value.message


def test_archsim_parallel_lasp2h_row(cli):
    """The issue's point: 8 A100s, 16K tokens; text and --json, one feasible row of scheme lasp2h."""
    args = ["parallel", "--scheme", "lasp2h", "--devices", "8", "--workload", HYBRID, "--seq-len", "16K",
            "--topology", TOPOLOGY, "--batch", "8", "--direction", "fwd+bwd", "--scope", "layer"]
    text = cli(*args).output
    assert "LASP chunks: archsim Lightning Attention-2" in text
    assert any(line.split()[:3] == ["lasp2h", "8", "16384"] for line in text.splitlines()), text
    (row,) = json.loads(cli(*args, "--json").output)["points"]
    assert (row["scheme"], row["devices"], row["seq_len"], row["model"], row["feasible"]) == \
        ("lasp2h", 8, 16384, HYBRID, True)
    assert 0 < row["efficiency"] <= 1 and row["memory_bytes"] > 0


def test_a_parallel_sweep_takes_lasp2h(cli, tmp_path: Path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"name": "lasp2h", "parallel": {"workload": HYBRID, "seq_len": 16384,
                                                                   "topology": TOPOLOGY},
                                    "axes": {"parallel.scheme": ["lasp2h"], "parallel.devices": [2, 8]},
                                    "objectives": ["latency_s", "efficiency"]}))
    output = cli("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local").output
    assert "2 points (2 new, 0 reused), 2 feasible" in output, output


def test_reproduce_seqpar_prints_lasp2_table2(cli, seqpar_cli):
    """LASP-2 Table 2 (8 A100, 16K, batch 8): LASP-2 on Linear-Llama3-1B and LASP-2H on its 1/4 hybrid beside the
    paper's 17,834.3 and 17,273-17,395 tokens/s; hybrid over linear beside the paper's 17,273 / 17,834.3 = 0.969 to
    17,395 / 17,834.3 = 0.975. Throughput as Fig. 3's: the batch's tokens over layers x time per layer + LM head."""
    from archsim.systems.seqpar_reproduce import lasp2_table2

    table = lasp2_table2()
    _, linear, hybrid = table["rows"]  # the first, Llama3-1B with Ring: tests/test_lasp2_table2_ring.py
    assert (linear["scheme"], linear["model"], hybrid["scheme"], hybrid["model"]) == \
        ("lasp2", "linear-llama3-1b", "lasp2h", HYBRID)
    assert (linear["paper_low_tok_s"], linear["paper_high_tok_s"]) == (17834.3, 17834.3)
    assert (hybrid["paper_low_tok_s"], hybrid["paper_high_tok_s"]) == (17273.0, 17395.0)  # one type per field
    for row in (linear, hybrid):
        assert row["throughput_tok_s"] == pytest.approx(8 * 16384 / (16 * row["time_per_layer_s"] + row["lm_head_s"]))
    assert table["hybrid_over_linear"] == pytest.approx(hybrid["throughput_tok_s"] / linear["throughput_tok_s"])
    assert table["paper_hybrid_over_linear"] == pytest.approx((17273 / 17834.3, 17395 / 17834.3))
    assert "LASP-2 Table 2: 8 A100s" in cli("reproduce", "seqpar").output
