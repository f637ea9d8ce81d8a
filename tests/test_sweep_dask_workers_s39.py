"""A Dask sweep whose cluster loses its last worker mid-sweep (audit s39): a worker whose nanny is killed with
SIGKILL stops itself (its process watches the nanny) and nothing starts it again, so the sweep waited forever for
batches no worker would run. Now, once the cluster has had no worker for `dask_run.WORKER_WAIT_S`, it exits 2 naming
--scheduler in one line; the batches finished before stay stored, and the sweep run again with a new worker
resumes from them.

On a running scheduler, the scheduler, the worker under its nanny and the sweep are processes of their own, as
`dask scheduler`, `dask worker` and `archsim sweep` are run by hand. The sweep's process lowers WORKER_WAIT_S from
10 s to WAIT_S before running the CLI, so the test waits 2 s for a worker, not 10."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_kill_sweep import stored_rows
from test_sweep_cli import stop_processes

from archsim.dse import dask_run
from archsim.dse.spec import sweep_from_dict
from archsim.dse.sweep import started
from archsim.errors import SpecError

distributed = pytest.importorskip("distributed")

BATCH = 4
POINTS = 10 * 12  # ~35 ms each on one worker: ~4 s of work, long enough to kill the nanny a few batches in
KILL_AFTER_ROWS = 2 * BATCH
WAIT_S = 2.0
SPEC = {"name": "lost-worker", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [1e11 * k for k in range(1, 11)],
                 "workload.seq_len": [256 * k for k in range(1, 13)]},
        "objectives": ["latency_s", "energy_pj"]}
# `archsim sweep ARGS` with dask_run.WORKER_WAIT_S set to WAIT_S first (the module constant the sweep reads)
SWEEP_WITH_WAIT = ("import sys; from archsim.dse import dask_run; dask_run.WORKER_WAIT_S = float(sys.argv[1]); "
                   "from archsim.cli import main; main(sys.argv[2:])")


def _start_scheduler(tmp_path: Path, procs: list[subprocess.Popen]) -> str:
    """Start `dask scheduler` on a free local port (appended to `procs`) and return its address."""
    scheduler_file = tmp_path / "scheduler.json"
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 30
    while not scheduler_file.exists() or not scheduler_file.read_text().strip():
        assert procs[-1].poll() is None and time.monotonic() < deadline, "the scheduler did not start within 30 s"
        time.sleep(0.05)
    return json.loads(scheduler_file.read_text())["address"]


def _start_worker(address: str, procs: list[subprocess.Popen]) -> subprocess.Popen:
    """Start `dask worker ADDRESS` (a nanny, which starts the worker process) and return the nanny."""
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-dashboard", "--host", "127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs[-1]


def test_a_cluster_that_lost_its_last_worker_mid_sweep_is_one_error_and_a_rerun_resumes(tmp_path, write_yaml):
    spec, db = write_yaml(tmp_path / "sweep.yaml", SPEC), tmp_path / "sweep.sqlite"
    procs: list[subprocess.Popen] = []
    try:
        address = _start_scheduler(tmp_path, procs)
        nanny = _start_worker(address, procs)
        args = ["sweep", str(spec), "--db", str(db), "--scheduler", address, "--batch-size", str(BATCH)]
        sweep = subprocess.Popen([sys.executable, "-c", SWEEP_WITH_WAIT, str(WAIT_S), *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(sweep)
        deadline = time.monotonic() + 60
        while stored_rows(db) < KILL_AFTER_ROWS:
            assert sweep.poll() is None, sweep.communicate()
            assert time.monotonic() < deadline, "no rows stored within 60 s"
            time.sleep(0.02)
        nanny.send_signal(signal.SIGKILL)  # its worker process stops itself, and no nanny starts another
        nanny.wait()
        try:
            _, stderr = sweep.communicate(timeout=60)  # the old code waited for ever
        except subprocess.TimeoutExpired:
            pytest.fail("the sweep still waits 60 s after its last worker's nanny was killed")
        assert sweep.returncode == 2, stderr
        # the one error line ends stderr (after the progress line, which it follows on the terminal's line)
        assert stderr[stderr.index("error: "):] == (
            f"error: --scheduler: {address}: lost its last worker mid-sweep (none for {WAIT_S:g} s); the batches "
            f"finished before are stored: start a worker (dask worker {address}) and run the sweep again to resume\n")
        stored = stored_rows(db)
        assert KILL_AFTER_ROWS <= stored < POINTS and stored % BATCH == 0  # whole batches, the sweep unfinished

        _start_worker(address, procs)
        rerun = subprocess.run([sys.executable, "-m", "archsim", *args], capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        new, reused = map(int, re.search(rf"{POINTS} points \((\d+) new, (\d+) reused\)", rerun.stdout).groups())
        assert (new, reused) == (POINTS - stored, stored)  # the stored batches were not evaluated again
        assert stored_rows(db) == POINTS
    finally:
        stop_processes(procs)


def test_a_cluster_left_with_no_worker_mid_sweep_names_the_embedded_cluster(tmp_path, monkeypatch):
    """The same on an embedded cluster, in this process: its one worker closes after the first of 4 one-point
    batches, and with WORKER_WAIT_S lowered to 0.5 s the sweep stops with one SpecError naming Dask's embedded
    cluster, the first batch stored. (The old code waited forever: closing the client after 30 s ends it.)"""
    monkeypatch.setattr(dask_run, "WORKER_WAIT_S", 0.5)
    spec, db = sweep_from_dict({**SPEC, "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [2e11, 4e11],
                                                 "workload.seq_len": [256, 512]}}), tmp_path / "s.sqlite"
    with (distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                                   silence_logs=logging.CRITICAL) as cluster,
          distributed.Client(cluster) as client,
          started(spec, db) as (base, conn, _, todo)):
        worker = next(iter(cluster.workers.values()))
        rescue = threading.Timer(30, client.close)

        def progress(done, total, rate, eta_s):
            if done == 1:
                cluster.sync(worker.close)
                rescue.start()

        try:
            with pytest.raises(SpecError) as error:
                dask_run._evaluate_on_cluster(client, None, spec, base, list(todo.items()), conn, 1, progress, 0, 4)
        finally:
            rescue.cancel()
    assert str(error.value) == ("Dask: embedded cluster: lost its last worker mid-sweep (none for 0.5 s); the "
                                "batches finished before are stored: run the sweep again to resume")
    assert stored_rows(db) == 1
