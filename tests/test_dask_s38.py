"""A Dask sweep's failures mid-sweep (audit s38), on an in-process cluster: a batch from a worker restarted on other
archsim code is refused, not stored; the worker holding the sweep's spec and base may die without losing the sweep;
Dask's own loggers print nothing while it runs, so the sweep's one error line is all."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from archsim.dse import dask_run
from archsim.dse.points import MODEL_VERSION, computing_version
from archsim.dse.spec import sweep_from_dict
from archsim.dse.sweep import evaluate_batch, started
from archsim.errors import SpecError

distributed = pytest.importorskip("distributed")

SWEEP = {"name": "fusemax-bw-seq", "mapping": "fusemax", "workload": "bert-base",  # 2 x 2 = 4 points
         "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [2e11, 4e11], "workload.seq_len": [256, 512]},
         "objectives": ["latency_s", "energy_pj"]}


@pytest.fixture(scope="module")
def scheduler():
    """The address of an in-process scheduler with one single-threaded worker, as `--scheduler` takes it."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _rows(db, where: str = "1") -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM points WHERE {where}").fetchone()[0]


def test_a_batch_from_a_worker_on_another_archsim_is_refused_and_not_stored(tmp_path, monkeypatch, scheduler):
    """A worker killed mid-sweep was restarted by its nanny on edited code and its batches stored under this
    model's keys, the sweep exiting 0 (60 of 216 rows at latency 1.0): the workers' version was checked once,
    before the batches. Now each batch carries the version of the worker that computed it."""
    evaluated = []  # the batches the one worker ran, one after another: from the third on, on edited code

    def edited(spec, base, batch):
        evaluated.append(batch)
        records = evaluate_batch(spec, base, batch)
        return records if len(evaluated) <= 2 else [{**record, "latency_s": 1.0} for record in records]

    monkeypatch.setattr(dask_run, "evaluate_batch", edited)
    monkeypatch.setattr(dask_run, "worker_version",
                        lambda: computing_version() if len(evaluated) <= 2 else "0.0.1+edited")
    spec, db = sweep_from_dict(SWEEP), tmp_path / "s.sqlite"
    with pytest.raises(SpecError) as error:
        dask_run.run_sweep_dask(spec, db, scheduler=scheduler, batch_size=1)
    assert error.value.source == "--scheduler" and error.value.where == scheduler
    assert f"computed a batch with archsim 0.0.1+edited, this process runs {MODEL_VERSION}" in error.value.message
    assert "the batch is not stored" in error.value.message
    assert _rows(db) == 2 and _rows(db, "latency_s = 1.0") == 0  # the first two batches, one point each

    monkeypatch.setattr(dask_run, "evaluate_batch", evaluate_batch)  # the worker runs this archsim again
    monkeypatch.setattr(dask_run, "worker_version", computing_version)
    resumed = dask_run.run_sweep_dask(spec, db, scheduler=scheduler, batch_size=1)
    assert (resumed.new, resumed.reused) == (2, 2)


def test_dask_loggers_are_silent_during_the_sweep_and_restored_after(tmp_path, monkeypatch, scheduler):
    """A killed scheduler printed `distributed.client - ERROR -` and reconnection tracebacks before the sweep's one
    error line: only `distributed` was quieted, and `distributed.client` has its own level and stderr handler."""
    loggers = ("distributed", "distributed.client", "distributed.gc", "tornado", "tornado.application", "asyncio")
    before = {name: logging.getLogger(name).level for name in loggers}
    enabled = {}

    def lost(*args, **kwargs):
        enabled.update({name: logging.getLogger(name).isEnabledFor(logging.ERROR) for name in loggers})
        raise distributed.client.FutureCancelledError("_on_worker-0", reason="scheduler-connection-lost")

    monkeypatch.setattr(dask_run, "evaluate_on", lost)
    with pytest.raises(SpecError, match="lost the cluster mid-sweep"):
        dask_run.run_sweep_dask(sweep_from_dict(SWEEP), tmp_path / "s.sqlite", scheduler=scheduler, batch_size=1)
    assert enabled == dict.fromkeys(loggers, False)
    assert {name: logging.getLogger(name).level for name in loggers} == before


def test_a_batch_every_worker_dies_on_is_one_error_saying_so(tmp_path, monkeypatch, scheduler):
    """Dask gives up on a batch after its workers died running it allowed-failures + 1 times (KilledWorker): that
    was a traceback; now it is a SpecError naming --scheduler and what happened."""

    def killed(*args, **kwargs):
        raise distributed.KilledWorker("_on_worker-0", None, 3)

    monkeypatch.setattr(dask_run, "evaluate_on", killed)
    with pytest.raises(SpecError) as error:
        dask_run.run_sweep_dask(sweep_from_dict(SWEEP), tmp_path / "s.sqlite", scheduler=scheduler, batch_size=1)
    assert error.value.source == "--scheduler"
    assert error.value.message.startswith("4 workers died running one batch (KilledWorker")
    assert "run the sweep again to resume" in error.value.message


def test_the_worker_holding_the_spec_and_base_may_die(tmp_path):
    """The spec and base were scattered to the workers, their only copies: a one-worker cluster whose worker was
    killed and restarted by its nanny lost them, and the sweep (FutureCancelledError). Now they are a task's
    result, which Dask recomputes: here the first worker dies after the first batch, a second one finishes."""
    spec = sweep_from_dict(SWEEP)
    with (distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                   dashboard_address=":0", silence_logs=logging.CRITICAL) as cluster,
          distributed.Client(cluster) as client,
          started(spec, tmp_path / "s.sqlite") as (base, conn, _, todo)):
        first = next(iter(cluster.workers.values()))

        def progress(done, total, rate, eta):
            if done == 1:
                cluster.scale(2)
                client.wait_for_workers(2)
                cluster.sync(first.close)

        assert dask_run.evaluate_on(client, spec, base, list(todo.items()), conn, 1, progress) == 4
    assert _rows(tmp_path / "s.sqlite") == 4
