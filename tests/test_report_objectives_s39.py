"""`report --sweep DB` without --spec takes the last sweep's objectives from the store (audit helper-469): a system
sweep that printed its front over throughput and TBT had its report ranked by latency_s x energy_pj."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from archsim.cli import main

SPEC = """name: objs
system: vllm-h100
workload: llama3-8b
serving: {rate_per_s: 5.0, requests: 4, lengths: azure-conv, seed: 0}
axes:
  serving.max_batch: [8, 16]
objectives: [throughput_tok_s, tbt_p99_s]
"""


def test_a_report_without_spec_ranks_by_the_sweeps_objectives(tmp_path) -> None:
    spec, db = tmp_path / "objs.yaml", tmp_path / "objs.sqlite"
    spec.write_text(SPEC)
    assert CliRunner().invoke(main, ["sweep", str(spec), "--db", str(db)]).exit_code == 0
    report = CliRunner().invoke(main, ["report", "--sweep", str(db), "--out", str(tmp_path / "rep")])
    assert report.exit_code == 0, report.output
    assert "on the Pareto front of throughput_tok_s x tbt_p99_s" in report.output


def test_damaged_stored_objectives_are_refused_naming_the_field(tmp_path) -> None:
    spec, db = tmp_path / "objs.yaml", tmp_path / "objs.sqlite"
    spec.write_text(SPEC)
    assert CliRunner().invoke(main, ["sweep", str(spec), "--db", str(db)]).exit_code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '[\"nope\"]' WHERE name = 'objectives'")
    report = CliRunner().invoke(main, ["report", "--sweep", str(db), "--out", str(tmp_path / "rep")])
    assert report.exit_code == 2
    assert "meta.objectives" in report.output and "two or three metrics" in report.output


def test_the_store_records_the_objectives_the_sweep_was_run_with(tmp_path) -> None:
    """Audit helper-477: `sweep --objectives` ranked its printout by them while the store recorded the spec's."""
    spec, db = tmp_path / "objs.yaml", tmp_path / "objs.sqlite"
    spec.write_text(SPEC)
    swept = CliRunner().invoke(main, ["sweep", str(spec), "--db", str(db),
                                      "--objectives", "throughput_tok_s,ttft_p99_s"])
    assert swept.exit_code == 0 and "Pareto front over (throughput_tok_s, ttft_p99_s)" in swept.output
    report = CliRunner().invoke(main, ["report", "--sweep", str(db), "--out", str(tmp_path / "rep")])
    assert "on the Pareto front of throughput_tok_s x ttft_p99_s" in report.output
