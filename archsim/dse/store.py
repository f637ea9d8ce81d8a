"""The sweep results store: one embedded SQLite file, one row per design point keyed by its hash.

Rows are inserted (INSERT OR IGNORE), a batch per transaction, in WAL mode: a writer killed mid-sweep loses only the
batch it had not committed, and a re-run skips every key already present but one whose record a limit decided under
other limits than those set now (`stale_keys`), which it computes afresh and replaces (`put`), the axis values the
replaced record held kept. A stored row changes in one other way only: a sweep reusing it under axes its record
lacks adds their values (`add_axis_values`), its results untouched, whether it was stored before the sweep claimed
the store or, by a sweep running beside it, after (`put`); so a record only ever gains values. The records a claim
changes are read and merged before it takes the write lock (`axis_updates`), so it holds the lock only to write
them.

A write waits for another process's write transaction up to the connection's timeout (5 s), and on while that
process keeps writing to the store's log (`_while_written`: a long claim, or transactions committed back to back);
a store held that long without a write (a process stopped holding it) is refused as "held by another process".

Rows are read back in the order of the sweeps that planned them, never in the order their batches finished: a
sweep writes its pending keys into `positions` when it claims the store (`add_positions`; the table's rowid is the
position), so a Dask sweep, whose batches arrive as they complete, or one killed and resumed reads back as one run
in this process straight through. Rows a store holds from before `positions` (none listed there) come first, in
the order they were inserted. Each position names the sweep that last planned it (`sweep`, its meta's `name
(source)` text; NULL in a store written before), so a store lacking points says which sweeps' they are
(`missing`, `unfinished_note`), not only which sweep came last. `read_store` reads the records, the meta and what
is missing in one read transaction: a sweep writing meanwhile leaves the count and the records read agreeing.

A store holds the points of one base (`archsim.dse.points.base_identity`: the resolved mapping, cascade,
architecture, workload and sizes, or system and serving run, or parallel block, and the archsim version): its
`meta` table keeps that base, the sweep that wrote it and the constraints and objectives of the last sweep into
it, and a sweep of another base is refused (`archsim.dse.sweep.claim_store`, one write transaction:
`claiming`). Points of the same base under other axis values (an axis grown or shrunk) share the store. A store
written before stores had `meta` has none until a sweep claims it.

A point's record is read back as stored but for an infeasible one's metrics and extras, blank whatever the store
holds (`_blank_infeasible`): its config, the columns its record names (`CONFIG_FIELDS`), is kept.

A file that is not an SQLite database, or one whose tables are not a store's, is refused with a `SpecError`
naming the file (never written to); so is one without tables (an empty file) read as a store, any SQLite error on
the way (a locked, read-only or full disk), and a record or `meta` value damaged (`_loads`, `meta_json`). The file
is opened by its resolved path as a `file:` URI, so no name (`:memory:`, `file:x?mode=memory`) opens a database
that is not that file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from archsim.dse.spec import is_axis
from archsim.errors import SpecError
from archsim.spec_files import is_file

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
_META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
_POSITIONS = "CREATE TABLE IF NOT EXISTS positions (key TEXT PRIMARY KEY, sweep TEXT)"
_TABLES = ("points", "meta", "positions")
_NOT_METRICS = ("key", "target_kind", "target", "feasible", "reason", "constraint_ok")  # of a record's columns
# a record's field naming its config's columns (`archsim.record.Record.config`), which an infeasible row keeps
# (`_blank_infeasible`); `records` reads it and shows it as no column
CONFIG_FIELDS = "config_fields"
# a record's field holding the limit variables it was computed under, where a limit decided part of it
# (`archsim.limits.advises_limit`): `stale_keys` finds it computed under other limits, `put` replaces it; `records`
# reads it and shows it as no column
LIMITS_FIELD = "limits"
_LIMITS_MARK = f"{json.dumps(LIMITS_FIELD)}: "  # how the field starts in a record's text (`json.dumps`)
_TIMEOUT_S = 5.0  # how long a statement waits for another process's write transaction to end
_KEYS_PER_QUERY = 500  # keys bound in one SELECT (SQLite allows 999 parameters in older builds)
_T = TypeVar("_T")
# a stored record's text with axis values added, its key, and its text as read (`axis_updates`)
AxisUpdate = tuple[str, str, str]
# the points a store's sweeps planned that it does not hold, by the sweep that last planned them (its meta's `sweep`
# text, `name (source)`; None for those listed before `positions` named sweeps), in the order they were first listed
Missing = list[tuple[str | None, int]]


class StoreConnection(sqlite3.Connection):
    """An SQLite connection that knows its file, for error messages, and counts the rows it inserted (`put`)."""

    path = ""
    inserted_rows = 0  # rows of `points` this connection wrote (inserted or replaced), not those another process did


@contextlib.contextmanager
def _errors(path: str) -> Iterator[None]:
    """Any SQLite error as a SpecError naming the store; one locked past the connection's timeout (5 s) says that
    another process holds it."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if _busy(exc):
            raise SpecError(path, "", "sweep store: held by another process (a sweep writing to it) for longer than "
                                      f"{_TIMEOUT_S:g} s; retry when it has finished") from None
        raise SpecError(path, "", f"sweep store: {exc}") from None


def _while_written(conn: StoreConnection, attempt: Callable[[], _T]) -> _T:
    """`attempt()`, a statement that takes the store's write lock, run again where it found the store locked past the
    connection's timeout while another process kept writing to it: the store's log (its `-wal` file) changed
    meanwhile, by that process's commits or by the pages its transaction spilled there. A lock held that long
    without a write raises, as `_errors` says: held by another process."""
    log = _log_of(Path(conn.path))
    while True:
        seen = _file_state(log)
        try:
            return attempt()
        except sqlite3.DatabaseError as exc:
            if not _busy(exc) or _file_state(log) == seen:
                raise


def _file_state(path: Path) -> tuple[int, int] | None:
    """The size and modification time (ns) of `path`, None where it is missing: what changes as a file is written."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _busy(exc: sqlite3.DatabaseError) -> bool:
    """`exc` says the database is locked by another connection (SQLITE_BUSY or SQLITE_LOCKED, extended codes too)."""
    code = getattr(exc, "sqlite_errorcode", None)  # None: an error of Python's sqlite3 module, not of SQLite
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def open_store(path: str | Path, *, read_only: bool = False, immutable: bool = False) -> StoreConnection:
    """Open (create, unless `read_only`) the store at `path`; `immutable` (read-only too) reads the file alone,
    without SQLite's locks, log or shared-memory file (`_read` says when that is right). A file that is not an
    SQLite database, or whose tables are not a store's, is a SpecError naming it."""
    path = str(path)
    read_only = read_only or immutable
    is_file(Path(path), path)  # a path the OS refuses (a loop of links) named, before resolve() raises on it
    with _errors(path):
        uri = Path(path).resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else
                                               "?mode=ro" if read_only else "")
        conn = sqlite3.connect(uri, uri=True, factory=StoreConnection, timeout=_TIMEOUT_S)
        conn.path = path
        try:
            _check_schema(conn, read_only)
            if not read_only:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                conn.execute(_META)
                conn.execute(_POSITIONS)
                _add_sweep_column(conn)
                conn.commit()
        except BaseException:
            conn.close()
            raise
    return conn


def _check_schema(conn: StoreConnection, read_only: bool) -> None:
    """The file's tables are the store's `points` table with its columns, or none where it is opened to be written
    (a new store)."""
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if not tables and read_only:
        raise SpecError(conn.path, "", "holds no sweep store (no tables: run `archsim sweep SPEC --db DB` first)")
    if not tables:
        return
    columns = _columns(conn, "points")
    if columns != _COLUMNS or not set(tables) <= set(_TABLES):
        raise SpecError(conn.path, "", f"an SQLite database but not a sweep store (tables: {', '.join(tables)}; "
                                       f"a store has the table points, with columns {', '.join(_COLUMNS)}, "
                                       "meta and positions)")


def _add_sweep_column(conn: StoreConnection) -> None:
    """Give a `positions` table written before it named the sweep planning each key its `sweep` column (NULL for
    the keys it lists); another process adding it at the same moment is no error."""
    if "sweep" in _columns(conn, "positions"):
        return
    try:
        conn.execute("ALTER TABLE positions ADD COLUMN sweep TEXT")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):
            raise


def _columns(conn: StoreConnection, table: str) -> list[str]:
    """The columns of the store's table `table` (none where it has no such table)."""
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _has_table(conn: StoreConnection, name: str) -> bool:
    """Whether the store has the table `name` (one opened read-only may predate `meta` or `positions`)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def read_meta(conn: StoreConnection) -> dict[str, str]:
    """What the store says of itself (`name -> value`; module docstring): empty for a store without `meta`; a
    SpecError naming the store and the field where a value is no text (a file edited or damaged)."""
    with _errors(conn.path):
        if not _has_table(conn, "meta"):
            return {}
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    for name, value in meta.items():
        if not isinstance(value, str):
            found = f"a blob of {len(value)} bytes" if isinstance(value, bytes) else repr(value)
            raise SpecError(conn.path, f"meta.{name}", f"sweep store: expected text, found {found}")
    return meta


def meta_json(path: str, field: str, text: str | None, expected: str,
              valid: Callable[[Any], bool] | None = None) -> Any:
    """The JSON value `text` of the store `path`'s `field` (`meta.base`, `meta.constraints`; None where the store
    does not say); a SpecError naming the store and the field where it is not JSON, or is not `expected` (`valid`
    false): a file edited or damaged, said as of a record (`_loads`)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SpecError(path, field, f"sweep store: not JSON ({exc})") from None
    if valid is not None and not valid(value):
        raise SpecError(path, field, f"sweep store: expected {expected}, found {_excerpt(text)}")
    return value


@contextlib.contextmanager
def claiming(conn: StoreConnection) -> Iterator[None]:
    """One write transaction, taken before anything in it is read (BEGIN IMMEDIATE) and committed on leaving, or
    rolled back on an error: no other writer changes what a claim reads until the claim is written, so of two
    sweeps started together the second reads the first's claim (SQLite makes it wait up to the connection's
    timeout, 5 s, and on while the first keeps writing: `_while_written`)."""
    with _errors(conn.path):
        _while_written(conn, lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def write_meta(conn: StoreConnection, values: dict[str, str]) -> None:
    """Set `values` in the store's `meta`, in the caller's transaction (`claiming`)."""
    with _errors(conn.path):
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(values.items()))


def add_positions(conn: StoreConnection, keys: Iterable[str], sweep: str) -> None:
    """List `keys` in `positions` after those it has, in order, a key listed already keeping its place (module
    docstring), each as planned by `sweep` (the meta's `sweep` text), the last sweep to plan it (a key two sweeps
    planned and neither stored is finished by either), in the caller's transaction (`claiming`)."""
    with _errors(conn.path):
        conn.executemany("INSERT INTO positions (key, sweep) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                         "sweep = excluded.sweep", [(key, sweep) for key in keys])


def empty_store(conn: StoreConnection) -> int:
    """Delete every row of the store (its points, positions and meta), in the caller's transaction (`claiming`);
    returns the number of points it held."""
    with _errors(conn.path):
        held = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        for table in _TABLES:
            conn.execute(f"DELETE FROM {table}")
    return held


def done_keys(conn: StoreConnection) -> set[str]:
    """The keys of every point already in the store; a SQLite error is a SpecError naming the store."""
    with _errors(conn.path):
        return {k for (k,) in conn.execute("SELECT key FROM points")}


def stale_keys(conn: StoreConnection, limits: Mapping[str, int]) -> set[str]:
    """The keys of the stored records a limit decided (`LIMITS_FIELD`) under other limits than `limits`: the sweep
    computes them afresh, and `put` replaces them."""
    with _errors(conn.path):
        rows = conn.execute("SELECT record FROM points WHERE instr(record, ?) > 0", (_LIMITS_MARK,)).fetchall()
    return {record["key"] for record in (_loads(conn, text) for (text,) in rows)
            if record.get(LIMITS_FIELD, limits) != limits}


def stored_feasible(conn: StoreConnection, keys: Iterable[str]) -> bool:
    """Whether a point of `keys` is stored feasible."""
    wanted = set(keys)
    with _errors(conn.path):
        return any(key in wanted for (key,) in conn.execute("SELECT key FROM points WHERE feasible = 1"))


def put(conn: StoreConnection, records: Iterable[dict[str, Any]]) -> None:
    """Insert a batch of records in one transaction, counting the rows inserted (`StoreConnection.inserted_rows`).
    A key already stored keeps its results, and its record gains the axis values of this batch's record that it
    lacks (`add_axis_values`): a point that a sweep of fewer axes, running beside this one, stored after this one
    claimed the store (`claim_store` added them only to the records stored before)."""
    batch = list(records)
    rows = [(r["key"], int(r["feasible"]), int(r["constraint_ok"]), _real(r["latency_s"]), _real(r["energy_pj"]),
             _real(r["area_um2"]), json.dumps(r, allow_nan=True)) for r in batch]
    with _errors(conn.path):
        conn.inserted_rows += _while_written(conn, lambda: _insert(conn, batch, rows))


def _insert(conn: StoreConnection, batch: list[dict[str, Any]], rows: list[tuple]) -> int:
    """`put`'s transaction: the rows inserted, those a limit decided under other limits replaced (`_replace_stale`),
    the axis values added to the records of the keys stored already; returns the number of rows written."""
    with conn:
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO points VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        inserted = conn.total_changes - before
        if inserted < len(rows):  # some keys were stored already
            inserted += _replace_stale(conn, batch, rows)
            add_axis_values(conn, {r["key"]: _point(r) for r in batch})
    return inserted


def _replace_stale(conn: StoreConnection, batch: list[dict[str, Any]], rows: list[tuple]) -> int:
    """Replace the stored rows of `batch`'s keys whose records a limit decided (`LIMITS_FIELD`) under other limits
    than the batch's record was computed under (none where no limit decided it): a point recomputed under the
    limits now set is one row, not two, its results the new record's, and the axis values the stored record held
    (those earlier sweeps added) added back to it (`add_axis_values`), so a record only ever gains values. Returns
    the number of rows replaced."""
    limits = {r["key"]: r.get(LIMITS_FIELD) for r in batch}
    keys = list(limits)
    stale: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = keys[start:start + _KEYS_PER_QUERY]
        found = conn.execute(f"SELECT record FROM points WHERE instr(record, ?) > 0 AND key IN "
                             f"({', '.join('?' * len(chunk))})", [_LIMITS_MARK, *chunk]).fetchall()
        stale |= {record["key"]: record for record in (_loads(conn, text) for (text,) in found)
                  if record.get(LIMITS_FIELD) != limits[record["key"]]}
    replaced = [row for row in rows if row[0] in stale]
    conn.executemany("REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?)", replaced)
    add_axis_values(conn, {key: _point(record) for key, record in stale.items()})
    return len(replaced)


def _point(record: Mapping[str, Any]) -> dict[str, Any]:
    """The point a record was computed for: its target and axis values (the fields under an axis root)."""
    return {name: value for name, value in record.items()
            if name == "target" or is_axis(name)}


def axis_updates(conn: StoreConnection, points: Mapping[str, Mapping[str, Any]]) -> list[AxisUpdate]:
    """What `add_axis_values` writes, read from the store as it is now (in a transaction or not): for each stored
    record of a key of `points` that lacks some axis values of its point (a point stored by a sweep without those
    axes, reused by one with them: its row would show no value there), the record with them added after its key
    and target kind in the point's axis order, every value it has kept; its key; and its text as read. A record that
    is not JSON or no sweep record is a SpecError as in `records` (`_loads`)."""
    updates = []
    keys = list(points)
    with _errors(conn.path):
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start:start + _KEYS_PER_QUERY]
            rows = conn.execute(f"SELECT key, record FROM points WHERE key IN ({', '.join('?' * len(chunk))})",
                                chunk).fetchall()
            for key, text in rows:
                record = _loads(conn, text)
                if not set(points[key]) <= set(record):
                    head = {name: record[name] for name in ("key", "target_kind") if name in record}
                    merged = {**head, **{axis: record.get(axis, value) for axis, value in points[key].items()},
                              **record}
                    updates.append((json.dumps(merged, allow_nan=True), key, text))
    return updates


def add_axis_values(conn: StoreConnection, points: Mapping[str, Mapping[str, Any]],
                    read: list[AxisUpdate] | None = None) -> None:
    """Give each stored record of a key of `points` the axis values of its point that it lacks, in the caller's
    transaction (`claiming`, `put`): `read`, the `axis_updates` read before the transaction took the write lock
    (by default read now), written where a record is still the text read; one that a sweep beside this one changed
    since (adding its own axis values) is read and merged again. A record only ever gains values, so one complete
    when read stays complete. A record that is not JSON or no sweep record is a SpecError (`axis_updates`)."""
    updates = axis_updates(conn, points) if read is None else read
    with _errors(conn.path):
        before = conn.total_changes
        conn.executemany("UPDATE points SET record = ? WHERE key = ? AND record = ?", updates)
        written = conn.total_changes - before
    if written < len(updates):
        add_axis_values(conn, {key: points[key] for _, key, _ in updates})


def records(conn: StoreConnection) -> pd.DataFrame:
    """Every stored record, one row each, in the order the sweeps planned them (`positions`, module docstring),
    those not listed there first, in insertion order."""
    with _errors(conn.path):
        if _has_table(conn, "positions"):
            rows = conn.execute("SELECT points.record FROM points LEFT JOIN positions USING (key) "
                                "ORDER BY positions.rowid IS NOT NULL, positions.rowid, points.rowid").fetchall()
        else:
            rows = conn.execute("SELECT record FROM points ORDER BY rowid").fetchall()
    stored = [_loads(conn, r) for (r,) in rows]
    df = pd.DataFrame(stored)
    config = df.pop(CONFIG_FIELDS) if CONFIG_FIELDS in df else pd.Series(index=df.index, dtype=object)
    df = df.drop(columns=LIMITS_FIELD, errors="ignore")
    # columns in a feasible record's order, whichever record came first: an infeasible one lacks the metrics
    # (utilization.*), which pandas would otherwise put after the fields it does have; then the columns other
    # records add (a GPU's utilization.tensor_cores beside an architecture's points), and constraint_ok, every
    # record's last, last
    feasible = next((r for r in stored if r["feasible"]), {})
    order = dict.fromkeys([*(c for c in feasible if c in df), *df.columns])
    last = ["constraint_ok"] if "constraint_ok" in order else []
    return _blank_infeasible(df[[*(c for c in order if c not in last), *last]], config)


def _loads(conn: StoreConnection, text: str) -> dict[str, Any]:
    """A stored record; a SpecError naming the store where it is not JSON, or is JSON but no sweep record (not an
    object holding `key` and `feasible`): a file edited or damaged."""
    try:
        record = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise SpecError(conn.path, "", f"sweep store: a record is not JSON ({exc})") from None
    if not isinstance(record, dict) or not {"key", "feasible"} <= record.keys():
        found = (f"an object without {' or '.join(f for f in ('key', 'feasible') if f not in record)}"
                 if isinstance(record, dict) else _excerpt(text))
        raise SpecError(conn.path, "", "sweep store: a record is not a sweep record (expected a JSON object with "
                                       f"key and feasible, found {found})")
    return record


def _excerpt(text: str) -> str:
    """A stored value as an error quotes it: its first 40 characters."""
    return text if len(text) <= 40 else f"{text[:40]}..."


def _blank_infeasible(df: pd.DataFrame, config: pd.Series) -> pd.DataFrame:
    """`df` with an infeasible point's metrics and extras NaN (every column but its key, target, axis values,
    feasibility, reason and constraint verdict, and the columns of its config, which `config` names per row:
    `CONFIG_FIELDS`): a design that does not fit has no numbers, but says what it was. `archsim.dse.points`
    records them so; a store written before it did holds the numbers the model computed for them, and one
    written before records named their config (none in `config`) reads with no config on an infeasible row."""
    if df.empty or "feasible" not in df:
        return df
    feasible = df["feasible"].astype(bool)
    metrics = [c for c in df.columns if c not in _NOT_METRICS and not is_axis(c)]
    named = config[~feasible].explode().dropna()  # an infeasible row's label, once per config column it names
    kept = named.groupby(named).groups  # config column -> the labels of the infeasible rows that keep it
    return df.assign(**{c: df[c].where(feasible | df.index.isin(kept.get(c, [])), math.nan) for c in metrics})


def read_records(path: str | Path) -> pd.DataFrame:
    """Every record of the store at `path`, read without writing to it; a missing file is a SpecError."""
    return read_store(path)[0]


def read_store(path: str | Path) -> tuple[pd.DataFrame, dict[str, str], Missing | None]:
    """Every record of the store at `path`, its `meta` and the points its sweeps planned that it lacks (`missing`),
    read in one snapshot (`_in_one_snapshot`: a sweep writing meanwhile changes none of them, so the points
    missing are those the records read lack) and without writing to the store; a missing file is a SpecError."""
    return _read(Path(path), lambda conn: _in_one_snapshot(conn, lambda: (records(conn), read_meta(conn),
                                                                          missing(conn))))


def _in_one_snapshot(conn: StoreConnection, query: Callable[[], _T]) -> _T:
    """`query()`, its statements on `conn`, in one read transaction: each sees the store as the first did, none
    the batches a sweep commits meanwhile (SQLite's WAL snapshot). Nothing is written, so it ends in a rollback."""
    with _errors(conn.path):
        conn.execute("BEGIN")
    try:
        return query()
    finally:
        conn.rollback()


def read_store_meta(path: str | Path) -> dict[str, str]:
    """The `meta` of the store at `path` (`read_meta`), read without its records and without writing to it; a
    missing file is a SpecError."""
    return _read(Path(path), read_meta)


def missing(conn: StoreConnection) -> Missing | None:
    """The points listed in `positions` that the store does not hold (a sweep killed, or still running), counted
    by the sweep that last planned them (`Missing`); None for a store without `positions`, which does not say."""
    with _errors(conn.path):
        if not _has_table(conn, "positions"):
            return None
        sweep = "sweep" if "sweep" in _columns(conn, "positions") else "NULL"
        rows = conn.execute(f"SELECT {sweep}, COUNT(*) FROM positions WHERE key NOT IN (SELECT key FROM points) "
                            "GROUP BY 1 ORDER BY MIN(rowid)").fetchall()
    return [(sweep, count) for sweep, count in rows]


def unfinished_note(path: str | Path, stored: int, lacking: Missing | None) -> str:
    """Where the store at `path`, holding `stored` points, lacks points its sweeps planned (`lacking`, read with
    them: `read_store`), a note for a command to warn with: how many, which sweeps planned them (each sweep's own
    spec finishes its points) and how to finish them; '' where it lacks none or does not say (a store written
    before it listed them)."""
    if not lacking:
        return ""
    whose = ", ".join(f"{count} of {f'sweep {sweep}' if sweep else 'a sweep it does not name'}"
                      for sweep, count in lacking)
    return (f"{stored} of {stored + sum(count for _, count in lacking)} points stored (a sweep into it stopped, or "
            f"is running); run `archsim sweep SPEC --db {path}` again to finish (missing: {whose})")


def _read(path: Path, query: Callable[[StoreConnection], _T]) -> _T:
    """`query` of the store at `path` open read-only, leaving nothing beside it; a missing file is a SpecError.
    A store without a log (its `-wal` file: no sweep writes to it, none was killed mid-batch) is read as an
    unchanging file, since SQLite's reader of a WAL store would otherwise make the log and its shared-memory file
    beside it and leave them; should the file change or a log appear meanwhile (a sweep started), it is read
    again as one with a log. A store with a log is read through it (the batches a running or killed sweep has not
    folded in), its shared-memory file beside it, or, in a folder this process cannot write, where SQLite cannot
    make that file, from a copy of both in a temporary folder."""
    if not is_file(path, str(path)):
        raise SpecError(str(path), "", "no such sweep store (run `archsim sweep SPEC --db DB` first)")
    if _file_state(_log_of(path)) is None:
        before = _file_state(path.resolve())
        try:
            with contextlib.closing(open_store(path, immutable=True)) as conn:
                answer = query(conn)
        except SpecError:
            if _unlogged_since(path, before):
                raise
        else:
            if _unlogged_since(path, before):
                return answer
    with contextlib.ExitStack() as stack:
        if os.access(path.resolve().parent, os.W_OK | os.X_OK):
            conn = open_store(path, read_only=True)
        else:
            conn = open_store(_copied(path, stack.enter_context(tempfile.TemporaryDirectory(prefix="archsim-store-"))),
                              read_only=True)
            conn.path = str(path)
        stack.callback(conn.close)
        return query(conn)


def _log_of(path: Path) -> Path:
    """The store's log (SQLite's `-wal` file beside it)."""
    return Path(f"{path.resolve()}-wal")


def _unlogged_since(path: Path, before: tuple[int, int] | None) -> bool:
    """The store at `path` has no log and its size and modification time are still `before` (`_file_state`)."""
    return _file_state(_log_of(path)) is None and _file_state(path.resolve()) == before


def _copied(path: Path, folder: str) -> Path:
    """A copy of the store at `path` and its log in `folder`; an error copying is a SpecError naming the store."""
    copy = Path(folder) / path.name
    for suffix in ("", "-wal"):
        source = Path(f"{path}{suffix}")
        if source.is_file():
            try:
                shutil.copyfile(source, f"{copy}{suffix}")
            except OSError as exc:
                raise SpecError(str(path), "", f"cannot read the sweep store ({exc.strerror or exc})") from None
    return copy


def _real(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
