"""`results` and `report` read a store without writing beside it (audit s50: `archsim results` of a finished sweep's
store left an empty `-wal` and a 32 KiB `-shm` file beside it, SQLite's read-only WAL connection making them), and
a store a running sweep writes to is still read, its committed batches included."""

from __future__ import annotations

import os
from pathlib import Path

from archsim.dse import store
from archsim.dse.store import open_store, put, read_records

BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"
SPEC = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
        "axes": {BUFFER: [262144, 1048576]}, "objectives": ["latency_s", "energy_pj"]}


def _record(i: int) -> dict:
    return {"key": f"k{i}", "target_kind": "architecture", "target": "fusemax", BUFFER: 1024 * (i + 1),
            "feasible": True, "reason": "", "latency_s": 0.1 * (i + 1), "energy_pj": 1.0, "area_um2": 2.0,
            "constraint_ok": True}


def test_results_of_a_finished_sweeps_store_leaves_its_folder_as_it_was(cli, tmp_path: Path, write_yaml) -> None:
    spec, db = write_yaml(tmp_path / "s.yaml", SPEC), tmp_path / "s.sqlite"
    cli("sweep", str(spec), "--db", str(db), "--local")
    before = sorted(os.listdir(tmp_path))
    assert "2 records written" in cli("results", str(db), "--csv", str(tmp_path / "out.csv")).output
    cli("report", "--sweep", str(db), "--out", str(tmp_path / "r"))
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "out.csv", "r"])


def test_a_store_a_running_sweep_writes_to_is_read_with_its_committed_batches(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    writer = open_store(db)  # a sweep running: its log beside the store, its batches in it
    try:
        put(writer, [_record(i) for i in range(3)])
        before = {name: (tmp_path / name).stat().st_size for name in os.listdir(tmp_path)}
        assert list(read_records(db)[BUFFER]) == [1024, 2048, 3072]
        assert {name: (tmp_path / name).stat().st_size for name in os.listdir(tmp_path)} == before
    finally:
        writer.close()


def test_a_store_a_sweep_starts_writing_while_it_is_read_is_read_again_through_its_log(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """Read as an unchanging file where no sweep writes to it; a sweep starting meanwhile (here: writing one
    batch and closing, which folds its log into the file) is seen, and the store is read again through SQLite's
    locks."""
    db = tmp_path / "s.sqlite"
    conn = open_store(db)
    put(conn, [_record(0)])
    conn.close()
    records, calls = store.records, []

    def a_sweep_writes_meanwhile(conn):
        calls.append(conn)
        if len(calls) == 1:
            writer = open_store(db)
            put(writer, [_record(1)])
            writer.close()
        return records(conn)

    monkeypatch.setattr(store, "records", a_sweep_writes_meanwhile)
    assert list(read_records(db)[BUFFER]) == [1024, 2048] and len(calls) == 2
