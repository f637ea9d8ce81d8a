"""Running a sweep locally: expand the points, skip those already stored, evaluate the rest batch by batch.

`evaluate_batch` is pure (spec and points in, records out) so a distributed runner can ship it to workers;
`run_sweep` owns the only side effect, writing each finished batch to the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from archsim.dse.points import Point, evaluate_point, expand, point_key
from archsim.dse.spec import SweepSpec
from archsim.dse.store import done_keys, open_store, put, records


def evaluate_batch(spec: SweepSpec, points: list[Point]) -> list[dict[str, Any]]:
    return [evaluate_point(spec, p) for p in points]


def pending(spec: SweepSpec, done: set[str]) -> list[Point]:
    """The sweep's points not yet in `done`, each distinct configuration once."""
    todo: dict[str, Point] = {}
    for point in expand(spec):
        key = point_key(spec, point)
        if key not in done and key not in todo:
            todo[key] = point
    return list(todo.values())


def run_sweep(spec: SweepSpec, db_path: str | Path, batch_size: int = 32) -> pd.DataFrame:
    """Evaluate every point of `spec` missing from the store at `db_path`, committing each batch as it
    finishes, and return all stored records."""
    conn = open_store(db_path)
    try:
        todo = pending(spec, done_keys(conn))
        for start in range(0, len(todo), batch_size):
            put(conn, evaluate_batch(spec, todo[start:start + batch_size]))
        return records(conn)
    finally:
        conn.close()
