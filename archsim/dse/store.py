"""The sweep results store: one embedded SQLite file, one row per design point keyed by its hash.

Rows are only ever inserted (INSERT OR IGNORE), a batch per transaction, in WAL mode: a writer killed mid-sweep
loses only the batch it had not committed, and a re-run skips every key already present.

A file that is not an SQLite database, or one whose tables are not a store's, is refused with a `SpecError`
naming the file (never written to); so is any SQLite error on the way (a locked, read-only or full disk).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from archsim.errors import SpecError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    feasible INTEGER NOT NULL,
    constraint_ok INTEGER NOT NULL,
    latency_s REAL,
    energy_pj REAL,
    area_um2 REAL,
    record TEXT NOT NULL
)
"""
_COLUMNS = ["key", "feasible", "constraint_ok", "latency_s", "energy_pj", "area_um2", "record"]


class StoreConnection(sqlite3.Connection):
    """An SQLite connection that knows its file, for error messages."""

    path = ""


@contextlib.contextmanager
def _errors(path: str) -> Iterator[None]:
    """Any SQLite error as a SpecError naming the store."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise SpecError(path, "", f"sweep store: {exc}") from None


def open_store(path: str | Path, *, read_only: bool = False) -> StoreConnection:
    """Open (create, unless `read_only`) the store at `path`. A file that is not an SQLite database, or whose
    tables are not a store's, is a SpecError naming it."""
    path = str(path)
    with _errors(path):
        if read_only:
            conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, factory=StoreConnection)
        else:
            conn = sqlite3.connect(path, factory=StoreConnection)
        conn.path = path
        try:
            _check_schema(conn)
            if not read_only:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                conn.commit()
        except BaseException:
            conn.close()
            raise
    return conn


def _check_schema(conn: StoreConnection) -> None:
    """The file's tables are none (a new store) or the store's `points` table with its columns."""
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if not tables:
        return
    columns = [row[1] for row in conn.execute("PRAGMA table_info(points)")]
    if columns != _COLUMNS:
        raise SpecError(conn.path, "", f"an SQLite database but not a sweep store (tables: {', '.join(tables)}; "
                                       f"a store has one table, points, with columns {', '.join(_COLUMNS)})")


def done_keys(conn: StoreConnection) -> set[str]:
    with _errors(conn.path):
        return {k for (k,) in conn.execute("SELECT key FROM points")}


def put(conn: StoreConnection, records: Iterable[dict[str, Any]]) -> None:
    """Insert a batch of records in one transaction; a key already stored is left as it is."""
    rows = [(r["key"], int(r["feasible"]), int(r["constraint_ok"]), _real(r["latency_s"]), _real(r["energy_pj"]),
             _real(r["area_um2"]), json.dumps(r, allow_nan=True)) for r in records]
    with _errors(conn.path), conn:
        conn.executemany("INSERT OR IGNORE INTO points VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def records(conn: StoreConnection) -> pd.DataFrame:
    """Every stored record, one row each, in insertion order."""
    with _errors(conn.path):
        rows = conn.execute("SELECT record FROM points ORDER BY rowid").fetchall()
    try:
        return pd.DataFrame([json.loads(r) for (r,) in rows])
    except (TypeError, ValueError) as exc:
        raise SpecError(conn.path, "", f"sweep store: a record is not JSON ({exc})") from None


def read_records(path: str | Path) -> pd.DataFrame:
    """Every record of the store at `path`, read without writing to it; a missing file is a SpecError."""
    if not Path(path).is_file():
        raise SpecError(str(path), "", "no such sweep store (run `archsim sweep SPEC --db DB` first)")
    conn = open_store(path, read_only=True)
    try:
        return records(conn)
    finally:
        conn.close()


def _real(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
