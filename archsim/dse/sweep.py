"""Running a sweep locally: expand the points, skip those already stored, evaluate the rest batch by batch.

`evaluate_batch` is pure (spec, its loaded base and points in, records out) so a distributed runner can ship it
to workers;
`run_sweep` owns the only side effect, writing each finished batch to the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from archsim.dse.points import Base, Point, evaluate_point, expand, load_base, point_key
from archsim.dse.spec import SweepSpec
from archsim.dse.store import done_keys, open_store, put, records


def evaluate_batch(spec: SweepSpec, base: Base, points: list[Point]) -> list[dict[str, Any]]:
    return [evaluate_point(spec, base, p) for p in points]


def plan(spec: SweepSpec, base: Base, done: set[str]) -> tuple[list[str], dict[str, Point]]:
    """The sweep's distinct keys in point order, and the points (by key) missing from `done`."""
    keys: dict[str, None] = {}
    todo: dict[str, Point] = {}
    for point in expand(spec):
        key = point_key(spec, base, point)
        keys[key] = None
        if key not in done and key not in todo:
            todo[key] = point
    return list(keys), todo


def run_sweep(spec: SweepSpec, db_path: str | Path, batch_size: int = 32) -> pd.DataFrame:
    """Evaluate every point of `spec` missing from the store at `db_path`, committing each batch as it
    finishes, and return all stored records."""
    conn = open_store(db_path)
    base = load_base(spec)
    try:
        todo = list(plan(spec, base, done_keys(conn))[1].values())
        for start in range(0, len(todo), batch_size):
            put(conn, evaluate_batch(spec, base, todo[start:start + batch_size]))
        return records(conn)
    finally:
        conn.close()
