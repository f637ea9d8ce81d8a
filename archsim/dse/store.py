"""The sweep results store: one embedded SQLite file, one row per design point keyed by its hash.

Rows are only ever inserted (INSERT OR IGNORE), a batch per transaction, in WAL mode: a writer killed mid-sweep
loses only the batch it had not committed, and a re-run skips every key already present.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

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


def open_store(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_SCHEMA)
    conn.commit()
    return conn


def done_keys(conn: sqlite3.Connection) -> set[str]:
    return {k for (k,) in conn.execute("SELECT key FROM points")}


def put(conn: sqlite3.Connection, records: Iterable[dict[str, Any]]) -> None:
    """Insert a batch of records in one transaction; a key already stored is left as it is."""
    rows = [(r["key"], int(r["feasible"]), int(r["constraint_ok"]), _real(r["latency_s"]), _real(r["energy_pj"]),
             _real(r["area_um2"]), json.dumps(r, allow_nan=True)) for r in records]
    with conn:
        conn.executemany("INSERT OR IGNORE INTO points VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def records(conn: sqlite3.Connection) -> pd.DataFrame:
    """Every stored record, one row each, in insertion order."""
    return pd.DataFrame([json.loads(r) for (r,) in conn.execute("SELECT record FROM points ORDER BY rowid")])


def _real(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
