"""A sweep killed with SIGKILL mid-run leaves a store that opens and holds only whole rows (whole batches, each
row's columns agreeing with its record), and a rerun reuses every stored row and ends with the same records and
the same summary as a run never killed.

The sweep runs in this process's serial path (`--local`) as a process of its own, so SIGKILL meets it between or
inside SQLite commits; it is killed once a few batches are stored, long before its 120 points are done (~1 s of
work). The rerun and the unkilled run go through the same command in this process.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from archsim.dse.spec import METRICS
from archsim.dse.store import open_store, records

BATCH = 4
POINTS = 10 * 12
KILL_AFTER_ROWS = 3 * BATCH
SPEC = {"name": "kill", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [1e11 * k for k in range(1, 11)],
                 "workload.seq_len": [256 * k for k in range(1, 13)]},
        "objectives": ["latency_s", "energy_pj"]}


def _sweep(spec: Path, db: Path) -> list[str]:
    return ["sweep", str(spec), "--db", str(db), "--local", "--batch-size", str(BATCH)]


def stored_rows(db: Path) -> int:
    """Points committed to the store at `db` (0 before its table exists)."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    except sqlite3.OperationalError:  # the store or its table is not created yet
        return 0


def kill_after_rows(spec: Path, db: Path) -> None:
    """Run `archsim sweep` on `spec` into `db` in another process and SIGKILL it once KILL_AFTER_ROWS rows are
    stored (failing if it ends or stores none within 60 s)."""
    proc = subprocess.Popen([sys.executable, "-m", "archsim", *_sweep(spec, db)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while stored_rows(db) < KILL_AFTER_ROWS:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no rows stored within 60 s"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _summary(stdout: str) -> list[str]:
    """The summary without its first line (which counts new and reused points)."""
    return stdout.strip().splitlines()[1:]


def test_sigkilled_sweep_leaves_whole_rows_and_resumes_to_the_unkilled_result(tmp_path, cli):
    spec = tmp_path / "kill.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    killed, clean = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    kill_after_rows(spec, killed)

    conn = open_store(killed)  # opens as a store: no SpecError
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT key, feasible, constraint_ok, latency_s, energy_pj, record FROM points").fetchall()
        stored = records(conn)
    finally:
        conn.close()
    assert KILL_AFTER_ROWS <= len(rows) < POINTS and len(rows) % BATCH == 0  # whole batches only
    for key, feasible, constraint_ok, latency_s, energy_pj, text in rows:
        record = json.loads(text)
        assert record["key"] == key and record["feasible"] == feasible and record["constraint_ok"] == constraint_ok
        assert record["latency_s"] == latency_s and record["energy_pj"] == energy_pj
    assert stored[["key", "target", *SPEC["axes"], *METRICS, "reason"]].notna().all().all()

    resumed = cli(*_sweep(spec, killed)).stdout
    new, reused = map(int, re.search(rf"{POINTS} points \((\d+) new, (\d+) reused\)", resumed).groups())
    assert reused == len(rows) and new == POINTS - len(rows)
    unkilled = cli(*_sweep(spec, clean)).stdout
    assert f"{POINTS} points ({POINTS} new, 0 reused)" in unkilled
    assert _summary(resumed) == _summary(unkilled)
    assert _sorted(killed).equals(_sorted(clean))


def _sorted(db: Path) -> pd.DataFrame:
    conn = open_store(db)
    try:
        return records(conn).sort_values("key").reset_index(drop=True)
    finally:
        conn.close()
