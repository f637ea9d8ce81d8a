"""`archsim run --json` and `archsim simulate --json` carry, under `record`, the row a sweep stores for the point
(`archsim.record.Record.row`): one schema whatever the target's kind."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from archsim.record import METRICS

HEAD = ["target_kind", "target", "feasible", "reason"]
FUSEMAX_ARCH = Path(__file__).resolve().parents[1] / "archsim" / "arch" / "presets" / "fusemax.yaml"


def test_run_json_carries_the_point_s_record(cli_json) -> None:
    out = cli_json("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "seq_len=4096")
    record = out["record"]
    assert list(record)[:4] == HEAD and set(METRICS) <= set(record)
    assert (record["target_kind"], record["target"], record["feasible"]) == ("architecture", "fusemax", True)
    assert record["latency_s"] == out["latency_s"] and record["energy_pj"] == out["energy_pj"]
    assert record["dram_traffic_bytes"] == out["dram_traffic_bytes"]
    assert record["edp"] == out["latency_s"] * out["energy_pj"]
    assert {f"utilization.{unit}": u for unit, u in out["utilization"].items()} == \
        {k: v for k, v in record.items() if k.startswith("utilization.")}


def test_an_infeasible_run_s_record_has_no_numbers(cli, tmp_path: Path) -> None:
    """FuseMax's 256 x 256 mapping on a 128 x 128 array: the record says why and carries no number, as a sweep's."""
    arch = yaml.safe_load(FUSEMAX_ARCH.read_text())
    arch["units"]["array2d"]["shape"] = [128, 128]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(arch))
    out = json.loads(cli("run", "-m", "fusemax", "-a", str(path), "-w", "bert-base", "--json").output)
    record = out["record"]
    assert record["feasible"] is False and record["reason"] == out["reason"] != ""
    assert all(record[metric] is None for metric in METRICS)
    assert all(v is None for k, v in record.items() if k.startswith("utilization."))


def test_simulate_json_carries_the_run_s_record(cli_json) -> None:
    """Lamina's DOP (2, 4) for LLaMA3-70B costs 2 x $11.06 + 4 x $4.63 = $40.64 an hour (pim.md §3.5): the record's
    cost per token is that price over the run's makespan and tokens."""
    out = cli_json("simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "5", "--requests", "3")
    record = out["record"]
    assert list(record)[:4] == HEAD and set(METRICS) <= set(record)
    assert (record["target_kind"], record["feasible"]) == ("serving", True)
    assert record["latency_s"] == out["tbt_p99_s"] and record["throughput_tok_s"] == out["throughput_tok_s"]
    price_per_hour = 2 * 11.06 + 4 * 4.63
    assert abs(record["cost_per_token_usd"] - price_per_hour * out["makespan_s"] / 3600 / out["output_tokens"]) \
        < 1e-12
    assert record["energy_pj"] == out["energy_per_token_j"] * 1e12
