"""A record's config (what was evaluated) against its extras (what was measured): an infeasible record's row keeps
the one and blanks the other whatever its type, so `simulate --json` stores no count a sweep would not
(`archsim.record`)."""

from __future__ import annotations

import math

from archsim.record import Record

CONFIG = {"scheme": "ring", "devices": 4, "alpha": 0.2}
EXTRAS = {"iterations": 7, "throughput_tok_s": 10.0, "note": "a string measured too"}


def _record(feasible: bool) -> Record:
    return Record("parallel", "t", feasible, "" if feasible else "does not fit", 1.0, 2.0, config=CONFIG,
                  extras=EXTRAS)


def test_a_feasible_row_holds_config_then_extras() -> None:
    row = _record(True).row()
    assert {k: row[k] for k in [*CONFIG, *EXTRAS]} == {**CONFIG, **EXTRAS}
    assert list(row).index("scheme") < list(row).index("iterations")


def test_an_infeasible_row_blanks_every_extra_and_keeps_the_config() -> None:
    row = _record(False).row()
    assert {k: row[k] for k in CONFIG} == CONFIG
    assert all(math.isnan(row[k]) for k in [*EXTRAS, "latency_s", "energy_pj", "edp"])


def test_simulate_json_of_an_infeasible_run_has_no_counts(cli_json) -> None:
    """A link below BW_min (alpha 0.01) makes the run infeasible: its record held the run's output tokens,
    iterations and KV pages (whole numbers) where a sweep stores NaN; the link check's alpha and batch are config."""
    out = cli_json("simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "5", "--requests", "20", "--lengths",
                   "azure-conv", "--alpha", "0.01")
    record = out["record"]
    assert record["feasible"] is False and "below BW_min" in record["reason"]
    assert all(record[k] is None for k in ("output_tokens", "iterations", "kv_pages_peak", "kv_pages_capacity"))
    assert (out["link"]["alpha"], out["link"]["batch"]) == (0.01, 19)
