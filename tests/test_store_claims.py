"""How a sweep takes its store and reads it back (audit findings, each test failing before its fix):

- two sweeps of different bases started together: the second's whole claim ran between the first's read of the
  store's meta and its write, so both took the store, which then mixed two sweeps' records under the second's name.
  The race is made deterministic by running the second sweep inside the first's read of the meta.
- a stored record that is not JSON made `archsim sweep` crash (exit 1, "bug in archsim") after claiming the store.
- one that is JSON but no sweep record (`[1]`, `5`, `{}`: not an object holding `key` and `feasible`) made `archsim
  sweep` crash (KeyError: 'key') after claiming the store, and `archsim results` crash (KeyError: 'feasible') or
  call it "not JSON".
- a Dask sweep commits batches as they finish, so its rows, killed and resumed, came back in another order than a
  run straight through in this process, whose order (its planned order, `archsim.dse.sweep.plan`) is the one kept.

Expected values come from the inputs: the first sweep's name and keys, the sentinel written into the meta.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from archsim.dse import sweep
from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.points import load_base
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import StoreConnection, put, read_records
from archsim.errors import SpecError

BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"
# FuseMax on BERT-Base at two buffer sizes x two lengths: the plan puts the points of one length together, so its
# order (both 1024s, then both 4096s) is not the grid's
SMALL = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
         "axes": {BUFFER: [262144, 1048576], "workload.seq_len": [1024, 4096]},
         "objectives": ["latency_s", "energy_pj"]}
OTHER = {**SMALL, "name": "other", "workload": "trxl"}  # another base: another workload


def _in_process(spec, db):
    return run_sweep_dask(spec, db, executor="in-process").records


@pytest.mark.parametrize("runner", [sweep.run_sweep, _in_process], ids=["run_sweep", "run_sweep_dask"])
def test_a_sweep_of_another_base_claiming_between_a_claims_read_and_write_is_refused(tmp_path, monkeypatch, runner):
    first, second = sweep_from_dict(SMALL, "small.yaml"), sweep_from_dict(OTHER, "other.yaml")
    db = tmp_path / "s.sqlite"
    opened = sweep.open_store

    def without_waiting(path: str | Path) -> StoreConnection:  # a locked store fails at once, not after 5 s
        conn = opened(path)
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    read_meta, refusals = sweep.read_meta, []

    def second_sweep_runs_meanwhile(conn: StoreConnection) -> dict[str, str]:
        meta = read_meta(conn)
        if not refusals:
            refusals.append("ran")
            try:
                sweep.run_sweep(second, db)
            except SpecError as exc:
                refusals.append(str(exc))
        return meta

    monkeypatch.setattr(sweep, "open_store", without_waiting)
    monkeypatch.setattr(sweep, "read_meta", second_sweep_runs_meanwhile)
    df = runner(first, db)
    assert len(refusals) == 2, "the second sweep took the store while the first was claiming it"
    monkeypatch.setattr(sweep, "read_meta", read_meta)
    with pytest.raises(SpecError, match=re.escape("holds the points of sweep small (small.yaml)")):
        sweep.run_sweep(second, db)  # later, it is refused with the message of a store of another base
    stored = read_records(db)
    assert len(stored) == 4 and stored["key"].tolist() == df["key"].tolist()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'sweep'").fetchone() == ("small (small.yaml)",)


def test_a_record_that_is_not_json_is_refused_before_the_store_is_claimed(tmp_path, cli):
    spec, db = tmp_path / "small.yaml", tmp_path / "s.sqlite"
    spec.write_text(yaml.safe_dump(SMALL))
    cli("sweep", str(spec), "--db", str(db), "--local")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE points SET record = '{\"key\": ' WHERE rowid = 1")
        conn.execute("UPDATE meta SET value = 'earlier (e.yaml)' WHERE name = 'sweep'")
    grown = tmp_path / "grown.yaml"  # one more length: a new point would be written, were the store claimed
    grown.write_text(yaml.safe_dump({**SMALL, "axes": {**SMALL["axes"], "workload.seq_len": [1024, 4096, 2048]}}))
    text = cli("sweep", str(grown), "--db", str(db), "--local", expect=2).output.strip()
    assert text.count("\n") == 0 and text.startswith(f"error: {db}: ") and "a record is not JSON" in text, text
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'sweep'").fetchone() == ("earlier (e.yaml)",)
        assert conn.execute("SELECT COUNT(*) FROM points").fetchone() == (4,)


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


@pytest.mark.parametrize("command", ["sweep", "results"])
@pytest.mark.parametrize("record", ["[1]", "5", "{}"])
def test_a_record_that_is_json_but_no_sweep_record_is_refused_in_one_line(tmp_path, cli, command, record):
    spec, db, csv = tmp_path / "small.yaml", tmp_path / "s.sqlite", tmp_path / "out.csv"
    spec.write_text(yaml.safe_dump(SMALL))
    cli("sweep", str(spec), "--db", str(db), "--local")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE points SET record = ? WHERE rowid = 1", (record,))
    grown = tmp_path / "grown.yaml"  # one more length: a new point would be written, were the store claimed
    grown.write_text(yaml.safe_dump({**SMALL, "axes": {**SMALL["axes"], "workload.seq_len": [1024, 4096, 2048]}}))
    before = _dump(db)
    args = ("sweep", str(grown), "--db", str(db), "--local") if command == "sweep" else (
        "results", str(db), "--csv", str(csv))
    text = cli(*args, expect=2).output.strip()
    assert text.count("\n") == 0 and text.startswith(f"error: {db}: "), text
    assert "a record is not a sweep record (expected a JSON object with key and feasible" in text, text
    assert _dump(db) == before and not csv.exists()


def test_a_sweep_whose_batches_finished_out_of_order_reads_back_as_one_run_straight_through(tmp_path):
    spec = sweep_from_dict(SMALL, "small.yaml")
    clean = sweep.run_sweep(spec, tmp_path / "clean.sqlite", batch_size=1)
    planned = list(sweep.plan(spec, load_base(spec), set())[1])
    assert clean["key"].tolist() == planned  # the order of a run in this process, kept
    killed = tmp_path / "killed.sqlite"
    with sweep.started(spec, killed) as (base, conn, _, todo_by_key):  # as Dask: the last batch first, then killed
        batches = [[item] for item in todo_by_key.items()]
        for batch in reversed(batches[1:]):
            put(conn, sweep.evaluate_batch(spec, base, batch))
    resumed = run_sweep_dask(spec, killed, executor="in-process")
    assert (resumed.new, resumed.reused) == (1, 3)
    pd.testing.assert_frame_equal(resumed.records, clean)
    pd.testing.assert_frame_equal(read_records(killed), read_records(tmp_path / "clean.sqlite"))
