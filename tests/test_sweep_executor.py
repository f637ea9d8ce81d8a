"""`archsim sweep` chooses its executor: a sweep whose estimated work (the first points timed x the pending points)
is under IN_PROCESS_BELOW_S, or that runs on fewer than DASK_FROM_CORES cores, runs in this process, without
importing Dask, and stores the records a Dask run stores; `--scheduler` or `--workers` means Dask whatever the
estimate; a killed in-process sweep resumes without recomputing what it had committed.

The sweeps are FuseMax attention points (BERT-Base) at ~10-50 ms each on these machines, so 4 points are ~0.1 s
of work and 48 points ~1 s: both far under the 5 s threshold even on a loaded machine.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_kill_sweep import stored_rows

from archsim.dse import dask_run
from archsim.dse.dask_run import DASK_FROM_CORES, IN_PROCESS_BELOW_S, choose_executor, run_sweep_dask
from archsim.dse.spec import METRICS, sweep_from_dict
from archsim.dse.store import open_store, records


def _spec(bandwidths: list[float], seq_lens: list[int]) -> dict:
    return {"name": "executor", "mapping": "fusemax", "workload": "bert-base",
            "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": bandwidths, "workload.seq_len": seq_lens},
            "objectives": ["latency_s", "energy_pj"]}


SMALL = _spec([2e11, 4e11], [256, 512])  # 2 x 2 = 4 points


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _stored(db: Path):
    conn = open_store(db)
    try:
        return records(conn).set_index("key").sort_index()
    finally:
        conn.close()


def test_choose_executor_by_estimated_work_cores_and_dask():
    # 100 points x 10 ms = 1 s: under the threshold; 1,000 x 10 ms = 10 s: over it
    assert choose_executor(0.01, 100, cores=4, have_dask=True)[0] == "in-process"
    executor, why = choose_executor(0.01, 1000, cores=4, have_dask=True)
    assert executor == "dask" and "~10.0 s of work (1000 points x 10.0 ms" in why
    for cores in (1, 2):  # a cluster's workers would share the cores with this process
        executor, why = choose_executor(0.01, 1000, cores=cores, have_dask=True)
        assert executor == "in-process" and f"but {cores} core" in why
    assert "not installed" in choose_executor(0.01, 1000, cores=4, have_dask=False)[1]
    assert IN_PROCESS_BELOW_S == 5.0 and DASK_FROM_CORES == 3  # the documented thresholds (README, dask_run)


def test_small_sweep_runs_in_process_and_stores_what_dask_stores(tmp_path, cli):
    distributed = pytest.importorskip("distributed")
    spec = _write(tmp_path / "small.yaml", SMALL)
    local = cli("sweep", str(spec), "--db", str(tmp_path / "local.sqlite"))
    assert re.search(r"^executor: in-process, ~[0-9.]+ s of work \(3 points x [0-9.]+ ms, timed here\) is under 5 s$",
                     local.stderr, re.M), local.stderr
    assert "4/4 points" in local.stderr and "4 points (4 new, 0 reused)" in local.stdout

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        on_dask = cli("sweep", str(spec), "--db", str(tmp_path / "dask.sqlite"), "--scheduler", address)
    assert f"executor: Dask on {address}, as --scheduler asks" in on_dask.stderr
    assert "4/4 points" in on_dask.stderr and "4 points (4 new, 0 reused)" in on_dask.stdout

    local_df, dask_df = _stored(tmp_path / "local.sqlite"), _stored(tmp_path / "dask.sqlite")
    assert list(local_df.index) == list(dask_df.index) and len(local_df) == 4
    assert local_df[list(METRICS)].equals(dask_df[list(METRICS)])  # same code on the same inputs: bit-identical


@pytest.mark.parametrize("option", [{"workers": 1}, {"scheduler": "tcp://127.0.0.1:8786"}])
def test_workers_or_scheduler_means_dask_before_any_work(tmp_path, monkeypatch, option):
    asked = []

    def no_cluster(stack, scheduler, workers):  # stands in for the cluster: records what was asked, then stops
        asked.append((scheduler, workers))
        raise RuntimeError("a Dask client was asked for")

    monkeypatch.setattr(dask_run, "_client", no_cluster)
    with pytest.raises(RuntimeError, match="Dask client"):
        run_sweep_dask(sweep_from_dict(SMALL), tmp_path / "s.sqlite", **option)
    assert asked == [(option.get("scheduler"), option.get("workers"))]
    assert stored_rows(tmp_path / "s.sqlite") == 0  # asked for before any point was evaluated


def test_estimated_work_over_the_threshold_goes_to_dask_after_one_point(tmp_path, monkeypatch):
    asked = []

    def no_cluster(stack, scheduler, workers):
        asked.append((scheduler, workers))
        raise RuntimeError("a Dask client was asked for")

    monkeypatch.setattr(dask_run, "IN_PROCESS_BELOW_S", 0.0)  # every sweep is "large"
    monkeypatch.setattr(dask_run.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(dask_run, "_client", no_cluster)
    with pytest.raises(RuntimeError, match="Dask client"):
        run_sweep_dask(sweep_from_dict(SMALL), tmp_path / "s.sqlite")
    assert asked == [(None, None)]  # an embedded cluster, one worker per core
    assert stored_rows(tmp_path / "s.sqlite") == 1  # the point timed here is kept


def test_in_process_sweep_never_imports_dask(tmp_path):
    spec = _write(tmp_path / "small.yaml", SMALL)
    code = ("import atexit, sys\nfrom archsim.cli import main\n"  # the CLI exits: report the modules at exit
            "atexit.register(lambda: print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', "
            "'distributed'))))\n"
            f"main(['sweep', {str(spec)!r}, '--db', {str(tmp_path / 's.sqlite')!r}])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "executor: in-process" in out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_killed_in_process_sweep_resumes_without_recomputing(tmp_path, cli):
    # 4 bandwidths x 48 lengths = 192 points, batches of 4: killed once 2 batches are stored (at 48 points a quiet
    # CI machine stored them all between two polls, so the kill came after the sweep had ended)
    spec = _write(tmp_path / "kill.yaml", _spec([1e11 * k for k in range(1, 5)], [256 * k for k in range(1, 49)]))
    db = tmp_path / "kill.sqlite"
    args = ["sweep", str(spec), "--db", str(db), "--batch-size", "4"]
    proc = subprocess.Popen([sys.executable, "-m", "archsim", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while stored_rows(db) < 8:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no rows stored within 60 s"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate()
    assert "executor: in-process" in stderr.decode()
    stored = stored_rows(db)
    assert 8 <= stored < 192 and stored % 4 == 0  # whole batches only

    resumed = cli(*args)
    assert "executor: in-process" in resumed.stderr and "192/192 points" in resumed.stderr
    assert f"192 points ({192 - stored} new, {stored} reused)" in resumed.stdout
    with sqlite3.connect(db) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM points")]
    assert len(keys) == 192 and len(set(keys)) == 192


@pytest.mark.parametrize("pending, probe_s, chunks", [
    (4, 10.0, [1]),  # at most a quarter of the sweep: one point of four
    (400, 10.0, [1, 2, 4, 8, 16, 32, 37]),  # one, then twice as many, up to a quarter (100)
    (400, 0.0, [1]),  # PROBE_S reached after the first chunk
])
def test_probe_doubles_its_chunks_up_to_a_quarter_or_its_time(tmp_path, monkeypatch, pending, probe_s, chunks):
    """The executor's estimate comes from the last of the chunks timed here (the first pay for plans the rest
    reuse); every chunk is stored as it finishes, like any batch."""
    seen = []

    def counted(spec, base, batch):
        seen.append(len(batch))
        return [{"key": key} for key, _ in batch]

    monkeypatch.setattr(dask_run, "evaluate_batch", counted)
    monkeypatch.setattr(dask_run, "put", lambda conn, batch: None)
    monkeypatch.setattr(dask_run, "PROBE_S", probe_s)
    todo = [(str(i), {"target": "t"}) for i in range(pending)]
    point_s, done = dask_run._probe(None, None, todo, None, None)
    assert seen == chunks and done == sum(chunks) and point_s >= 0
    assert dask_run._probe(None, None, todo, None, 7)[1] == min(7, pending)  # --batch-size: one batch of it
