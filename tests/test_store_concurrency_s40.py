"""Two sweeps of one base sharing a store at once, and what a store says of itself (audit s40, each test failing
before its fix):

1. a sweep's "N new" counted the rows a sweep beside it stored and this one only gave its axis values to (both of
   `demo` and `demo` + `workload.batch: [64]` said "160 new" of 160 rows).
2. a claim parsed and merged every reused record inside its write transaction (5.2 s at 100,000 records, past the
   5 s a sweep's batch waits for the lock), and a batch waiting on a store that another process kept writing to
   gave up after 5 s: the sweep beside it exited 2 mid-run ("held by another process").
3. `report --sweep` of a killed sweep's store said nothing of its missing points without `--spec`.
4. a sweep into a store file it cannot write said "sweep store: attempt to write a readonly database".

Expected numbers come from the specs: a grid's point count is the product of its axes' lengths.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import yaml

from archsim import outputs
from archsim.dse import dask_run, store, sweep
from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import open_store, put, read_records
from archsim.errors import SpecError

BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"
# FuseMax on BERT-Base at two buffer sizes x two lengths: 4 architecture points
SMALL = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
         "axes": {BUFFER: [262144, 1048576], "workload.seq_len": [1024, 4096]},
         "objectives": ["latency_s", "energy_pj"]}
# the same 4 points: bert-base's own batch is 64, so the axis keys as its absence and only adds the value
WITH_BATCH = {**SMALL, "name": "with-batch", "axes": {**SMALL["axes"], "workload.batch": [64]}}


def _run(data: dict, db: Path, source: str = "s.yaml"):
    return run_sweep_dask(sweep_from_dict(data, source), db, executor="in-process")


def test_new_counts_the_rows_this_run_stored_not_those_it_gave_its_axis_values(tmp_path, monkeypatch):
    """`with-batch` claims the store, then `small` (the same 4 points without the batch axis) runs whole beside it
    and stores them; `with-batch`'s batches then store nothing and only add the batch value to `small`'s rows."""
    db, beside = tmp_path / "d.sqlite", {}

    def the_other_sweep_stores_them_first(conn, batch):
        if not beside:
            beside["run"] = None  # its own batches go straight to the store
            beside["run"] = _run(SMALL, db, "small.yaml")
        return put(conn, batch)

    monkeypatch.setattr(dask_run, "put", the_other_sweep_stores_them_first)
    monkeypatch.setattr(sweep, "put", the_other_sweep_stores_them_first)
    run = _run(WITH_BATCH, db, "with-batch.yaml")
    assert (beside["run"].new, beside["run"].reused) == (4, 0)
    assert (run.new, run.reused) == (0, 4)
    assert len(read_records(db)) == 4 and read_records(db)["workload.batch"].tolist() == [64] * 4


def test_a_claim_reads_and_merges_the_reused_records_before_it_takes_the_write_lock(tmp_path, monkeypatch):
    db = tmp_path / "d.sqlite"
    _run(SMALL, db)
    loads, in_claim = store._loads, []

    def noting_the_transaction(conn, text):
        in_claim.append(conn.in_transaction)
        return loads(conn, text)

    monkeypatch.setattr(store, "_loads", noting_the_transaction)
    run = _run(WITH_BATCH, db)
    assert (run.new, run.reused) == (0, 4) and len(in_claim) >= 4
    assert not any(in_claim), "a reused record was parsed while the claim held the store's write lock"
    assert run.records["workload.batch"].tolist() == [64] * 4


def test_a_record_changed_between_the_claims_read_and_its_write_keeps_both_sweeps_axis_values(tmp_path):
    """A sweep beside this one adds its axis value to a reused record after this claim read it: the claim's write
    merges the record as it is now, not as it was read."""
    db = tmp_path / "d.sqlite"
    _run(SMALL, db)
    key = read_records(db)["key"][0]
    conn = open_store(db)
    point = {"target": "fusemax", "workload.batch": 64}
    read = store.axis_updates(conn, {key: point})
    with sqlite3.connect(db) as other:
        (text,) = other.execute("SELECT record FROM points WHERE key = ?", (key,)).fetchone()
        other.execute("UPDATE points SET record = ? WHERE key = ?", (json.dumps({**json.loads(text), "x.y": 1}), key))
    with store.claiming(conn):
        store.add_axis_values(conn, {key: point}, read)
    conn.close()
    record = read_records(db).set_index("key").loc[key]
    assert (record["workload.batch"], record["x.y"]) == (64, 1)


def _keep_writing(db: Path, for_s: float, started: threading.Event) -> None:
    """Hold the store's write lock for `for_s`, writing all along: a small page cache spills each insert into the
    log (the `-wal` file), as a long claim's writes do."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA cache_size = 10")
    conn.execute("BEGIN IMMEDIATE")
    started.set()
    end = time.monotonic() + for_s
    while time.monotonic() < end:
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(f"pad{time.monotonic_ns()}-{i}", "y" * 2000)
                                                              for i in range(8)])
        time.sleep(0.01)
    conn.execute("ROLLBACK")
    conn.close()


def _record(key: str) -> dict:
    return {"key": key, "feasible": True, "constraint_ok": True, "latency_s": 1.0, "energy_pj": 2.0,
            "area_um2": 3.0}


def test_a_batch_waits_past_the_timeout_while_another_process_keeps_writing(tmp_path):
    db = tmp_path / "d.sqlite"
    open_store(db).close()
    started = threading.Event()
    holder = threading.Thread(target=_keep_writing, args=(db, 0.6, started))
    holder.start()
    started.wait()
    conn = open_store(db)
    conn.execute("PRAGMA busy_timeout = 100")  # a sixth of the holder's write transaction
    try:
        put(conn, [_record("a")])
    finally:
        holder.join()
        conn.close()
    assert read_records(db)["key"].tolist() == ["a"]


def test_a_store_held_without_writing_is_still_refused_as_held_by_another_process(tmp_path):
    db = tmp_path / "d.sqlite"
    open_store(db).close()
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")
    conn = open_store(db)
    conn.execute("PRAGMA busy_timeout = 100")
    try:
        with pytest.raises(SpecError, match="held by another process"):
            put(conn, [_record("a")])
    finally:
        conn.close()
        holder.rollback()
        holder.close()


def _killed_after_one_batch(data: dict, db: Path) -> None:
    """The store of `data`'s sweep killed after its first batch of one point: the sweep's points all listed in
    `positions` when it claimed the store, one stored."""
    spec = sweep_from_dict(data, "small.yaml")
    with sweep.started(spec, db) as (base, conn, _, todo_by_key):
        put(conn, sweep.evaluate_batch(spec, base, list(todo_by_key.items())[:1]))


def test_a_report_without_spec_of_a_killed_sweeps_store_says_how_many_points_it_holds(tmp_path, cli):
    db = tmp_path / "k.sqlite"
    _killed_after_one_batch(SMALL, db)
    text = cli("report", "--sweep", str(db), "--out", str(tmp_path / "r")).output
    assert (f"warning: 1 of 4 points stored (a sweep into it stopped, or is running); run `archsim sweep SPEC "
            f"--db {db}` again to finish (missing: 3 of sweep small (small.yaml))") in text, text
    assert "1 of 4 points stored" in (tmp_path / "r" / "index.html").read_text()


@pytest.mark.parametrize("store_kind", ["written before positions", "whole"])
def test_a_report_without_spec_of_a_store_without_positions_or_of_a_whole_one_warns_of_nothing(tmp_path, cli,
                                                                                            store_kind):
    db = tmp_path / "s.sqlite"
    if store_kind == "whole":
        _run(SMALL, db)
    else:
        _killed_after_one_batch(SMALL, db)
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE positions")  # it does not say what its sweeps planned
    assert "warning" not in cli("report", "--sweep", str(db), "--out", str(tmp_path / "r")).output


def test_a_store_in_a_folder_that_cannot_be_written_is_read_from_a_copy_positions_included(tmp_path, monkeypatch):
    db = tmp_path / "k.sqlite"
    _killed_after_one_batch(SMALL, db)
    writer = open_store(db)  # its log beside it, as a sweep running or killed leaves it (one without is read in place)
    _not_writable(tmp_path, monkeypatch)
    opened, open_store_ = [], store.open_store
    monkeypatch.setattr(store, "open_store", lambda path, **kw: opened.append(Path(path)) or open_store_(path, **kw))
    try:
        records, _, lacking = store.read_store(db)
        assert len(records) == 1 and sum(count for _, count in lacking) == 3  # 1 of 4 planned stored
    finally:
        writer.close()
    assert len(opened) == 1 and all(path.name == db.name and path.parent != tmp_path for path in opened)  # one read


def _not_writable(path: Path, monkeypatch) -> None:
    """os.access says `path` cannot be written (this test may run as root, who may write a mode-444 file)."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (Path(p).resolve() != path.resolve()
                                                             or not mode & os.W_OK) and access(p, mode, **kw))


def test_a_store_file_that_cannot_be_written_is_refused_naming_db(tmp_path, cli, monkeypatch):
    spec, db = tmp_path / "small.yaml", tmp_path / "s.sqlite"
    spec.write_text(yaml.safe_dump(SMALL))
    db.write_bytes(b"")
    _not_writable(db, monkeypatch)
    text = cli("sweep", str(spec), "--db", str(db), "--local", expect=2).output.strip()
    assert text == f"error: --db: {db}: is not writable (a sweep store is written in place)", text


def test_check_writable_of_a_file_written_in_place_asks_the_file_itself(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"")
    _not_writable(path, monkeypatch)
    assert outputs.check_writable(path, "--csv") == path  # replaced by a rename: the folder is what counts
    with pytest.raises(SpecError, match="is not writable"):
        outputs.check_writable(path, "--db", written_in_place="a sweep store")
