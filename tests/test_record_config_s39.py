"""An infeasible record keeps its config (what was evaluated) through a sweep's store, its extras (what was
measured) blank (`archsim.record`, `archsim.dse.store`); and `simulate --alpha --json`'s record is the one a sweep
stores for the same run, the link check's `link.<name>` fields included (`archsim.dse.system_points.with_link`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from archsim.dse.store import CONFIG_FIELDS, open_store, put, read_records

# the sweep's own columns beside a record's row (`archsim.dse.points._record`), and the two it sets otherwise
SWEEP_ONLY = ("key", "target_kind", "target", "constraint_ok")


def _same(stored: Any, printed: Any) -> bool:
    """A stored value against `--json`'s: NaN and None (JSON's null) alike."""
    blank = stored is None or (isinstance(stored, float) and math.isnan(stored))
    return printed is None if blank else stored == printed


def _stored(key: str, feasible: bool, **values: Any) -> dict[str, Any]:
    return {"key": key, "target_kind": "parallel", "target": "t", "parallel.seq_len": 8, "feasible": feasible,
            "reason": "" if feasible else "does not fit", "latency_s": 1.0, "energy_pj": 2.0, "area_um2": None,
            **values, "constraint_ok": feasible}


def test_the_store_keeps_an_infeasible_row_s_config_and_blanks_the_rest(tmp_path: Path) -> None:
    """A record naming its config (`CONFIG_FIELDS`) keeps those values when infeasible; one without the list (a
    store of before, whose infeasible rows held the model's numbers) reads with every such column blank, as it
    did. Before: the scheme and devices of the new row read NaN too."""
    conn = open_store(tmp_path / "s.sqlite")
    put(conn, [_stored("ok", True, scheme="ring", devices=4, efficiency=0.5, **{CONFIG_FIELDS: ["scheme", "devices"]}),
               _stored("new", False, scheme="zigzag", devices=2, efficiency=None,
                       **{CONFIG_FIELDS: ["scheme", "devices"]}),
               _stored("old", False, scheme="ring", devices=8, efficiency=0.7)])
    conn.close()
    df = read_records(tmp_path / "s.sqlite").set_index("key")
    assert CONFIG_FIELDS not in df
    assert (df.loc["new", "scheme"], df.loc["new", "devices"]) == ("zigzag", 2)
    assert math.isnan(df.loc["new", "efficiency"]) and math.isnan(df.loc["new", "latency_s"])
    assert df.loc[["old"], ["scheme", "devices", "efficiency", "latency_s"]].isna().all(axis=None)
    assert (df.loc["ok", "scheme"], df.loc["ok", "efficiency"]) == ("ring", 0.5)
    assert df.loc["old", "parallel.seq_len"] == 8  # an axis value is kept, whatever the store's age


PARALLEL = ["--scheme", "zigzag", "--devices", "2", "--tp", "8", "-w", "llama3-405b-fp8", "--seq-len", "1048576",
            "--topology", "hgx-h100", "--scope", "layer", "--kernel", "FlashAttention-3"]


def test_a_parallel_sweep_s_infeasible_point_keeps_what_archsim_parallel_prints_of_it(tmp_path, write_yaml, cli,
                                                                                     cli_json) -> None:
    """2 devices x 80 GiB cannot hold 1M tokens of LLaMA3-405B (its row's reason): the sweep's row holds the
    point's config as `archsim parallel --json` prints it (scheme zigzag, 2 devices, tp 8, 1048576 tokens, the
    topology's h100-sxm5 and link) and no metric. Before: every config column was empty."""
    spec = write_yaml(tmp_path / "sp.yaml", {
        "name": "sp", "parallel": {"scheme": "zigzag", "workload": "llama3-405b-fp8", "topology": "hgx-h100", "tp": 8,
                                   "kernel": "FlashAttention-3", "scope": "layer", "devices": 2},
        "axes": {"parallel.seq_len": [1048576]}, "objectives": ["latency_s", "efficiency"]})
    cli("sweep", str(spec), "--db", str(tmp_path / "sp.sqlite"))
    row = read_records(tmp_path / "sp.sqlite").iloc[0]
    printed = cli_json("parallel", *PARALLEL)["points"][0]
    assert not row["feasible"] and not printed["feasible"]
    config = ["scheme", "devices", "tp", "gpu", "kernel", "topology", "link", "model", "seq_len", "batch"]
    assert {k: row[k] for k in config} == {k: printed[k] for k in config}
    assert (row["scheme"], row["devices"], row["tp"], row["seq_len"]) == ("zigzag", 2, 8, 1048576)
    assert all(math.isnan(row[k]) for k in ("latency_s", "efficiency", "memory_bytes", "compute_s"))


def test_a_sparse_sweep_s_infeasible_quest_point_keeps_its_budget(tmp_path, write_yaml, cli) -> None:
    """Quest at 32K on an RTX 4090 does not fit (README's quest-budgets sweep): its row keeps the budget it was
    evaluated at, 512. Before: NaN."""
    spec = write_yaml(tmp_path / "q.yaml", {
        "name": "q", "sparse": {"method": "quest", "gpu": "rtx-4090", "workload": "llama2-7b"},
        "axes": {"sparse.budget": [512], "sparse.context": [32768]}})
    cli("sweep", str(spec), "--db", str(tmp_path / "q.sqlite"))
    row = read_records(tmp_path / "q.sqlite").iloc[0]
    assert not row["feasible"] and "does not fit" in row["reason"]
    assert row["budget"] == 512 and math.isnan(row["latency_s"]) and math.isnan(row["speedup"])


@pytest.fixture(scope="module")
def lamina(tmp_path_factory, write_yaml, invoke) -> tuple[Path, dict[str, dict[str, Any]]]:
    """LLaMA3-70B on `lamina` at alpha 0.2 over two traces of requests all arriving at 0 and each decoding one token
    after its first: 64 of 1023 prompt tokens (a batch of 64 at context 1024, within the 45.7 GB/s link) and 300 of
    127 (a batch of 300 at context 128, whose BW_min per compute NIC is past it): the sweep's rows and `simulate
    --json`'s records, by trace."""
    folder = tmp_path_factory.mktemp("lamina")
    traces = {"lam64.csv": "0,1023,2\n" * 64, "lam300.csv": "0,127,2\n" * 300}
    for name, rows in traces.items():
        (folder / name).write_text("arrival_s,prompt_tokens,output_tokens\n" + rows)
    spec = write_yaml(folder / "lamsw.yaml", {
        "name": "lamsw", "system": "lamina", "workload": "llama3-70b", "serving": {"max_batch": 2000, "alpha": 0.2},
        "axes": {"serving.lengths": list(traces)}, "objectives": ["throughput_tok_s", "tbt_p99_s"]})
    code, output = invoke("sweep", str(spec), "--db", str(folder / "l.sqlite"))
    assert code == 0, output
    printed = {}
    for name in traces:
        code, output = invoke("simulate", "-s", "lamina", "-w", "llama3-70b", "--trace", str(folder / name),
                              "--max-batch", "2000", "--alpha", "0.2", "--json")
        assert code == 0, output
        printed[name] = json.loads(output)["record"]
    return folder / "l.sqlite", printed


@pytest.mark.parametrize("trace, feasible", [("lam64.csv", True), ("lam300.csv", False)])
def test_simulate_s_record_is_the_sweep_s_field_for_field(lamina, trace, feasible) -> None:
    """Every column of the sweep's row but its own (key, axis value, constraint verdict) and the two it sets
    (target_kind, target) is in `simulate --json`'s record with the same value, the link check's `link.alpha`,
    `link.batch`, `link.context` and NIC rates included. Before: simulate's record had no `link.` field."""
    db, printed = lamina
    df = read_records(db)
    row = df[df["serving.lengths"] == trace].iloc[0]
    record = printed[trace]
    assert row["feasible"] == record["feasible"] == feasible
    columns = [c for c in df.columns if c not in SWEEP_ONLY and not c.startswith("serving.")]
    assert set(record) - {"target_kind", "target"} <= set(columns)
    assert [c for c in columns if not _same(row[c], record.get(c))] == []
    assert (record["link.alpha"], record["link.batch"]) == (0.2, 64 if feasible else 300)


def test_an_infeasible_link_point_keeps_the_link_s_config_and_blanks_bw_min(lamina) -> None:
    """The batch of 300 at context 128 falls short: its row keeps what the link was checked at (alpha 0.2, batch
    300, context 128, 45.7 GB/s per NIC: `lamina-gpu-initiated-400g`) and blanks what was measured (BW_min).
    Before: every `link.` column was blank."""
    db, _ = lamina
    df = read_records(db)
    row = df[df["serving.lengths"] == "lam300.csv"].iloc[0]
    assert (row["link.alpha"], row["link.batch"], row["link.context"]) == (0.2, 300, 128)
    assert row["link.compute_nic_bytes_per_s"] == row["link.link_bytes_per_s"] == 45.7e9
    assert math.isnan(row["link.bw_min_bytes_per_s"]) and math.isnan(row["link.bw_min_compute_nic_bytes_per_s"])
