"""Running a sweep where it is fastest: in this process (`archsim.dse.sweep.evaluate_serial`) or on Dask, the
pending points in batches on an embedded `LocalCluster` (one single-threaded worker process per core) or on a
running scheduler (`tcp://HOST:PORT`), each finished batch committed to the store by this process as it arrives.

The executor is chosen on an estimate of the work, the first points timed here (`_probe`) x the pending points
(`choose_executor`): under IN_PROCESS_BELOW_S, or on fewer than DASK_FROM_CORES cores, in this process, since an
embedded cluster costs seconds before its first result (its import, its worker processes each importing archsim,
shipping the specs) and on few cores cannot win that back; a scheduler or a worker count given means Dask. On the
in-process path Dask is never imported (about 1 s).

Workers only evaluate (`evaluate_batch` is pure); the store is written by this process alone, so SQLite sees one
writer. A Dask batch is sized for about `target_batch_s` of work (timed on the first points, evaluated here), so
the per-task scheduling cost (~1 ms) stays small next to the evaluation, but capped so every worker gets several
batches to balance; the points binding the same sizes are next to each other (`archsim.dse.sweep.plan`), so a
batch shares the mapper's work among many. In this process the batches after the probe grow again from one point
(`archsim.dse.sweep.next_batch_size`: about `target_batch_s` of work at the last batch's pace, at most twice its
size), as `run_sweep`'s do, so a kill loses about that much finished work even where the probe's points were
cheap and the later ones are slow (one batch of a quarter of the sweep had been sized on the probe's pace).

The sweep's spec and base reach the workers as the result of a task (`_shared`), not scattered: Dask recomputes a
task's result when the worker holding it dies, so a killed worker is restarted by its nanny and the sweep finishes,
a one-worker cluster's included (scattered data it cannot recover: the sweep was lost).

A scheduler address is checked before any work (`check_scheduler`): its form, a TCP connection within
CONNECT_TIMEOUT_S, and a Dask scheduler answering there within IDENTITY_TIMEOUT_S; each failure is a SpecError
naming `--scheduler`. A cluster lost mid-sweep (its scheduler killed) is one too, Dask's logs silenced during
the sweep (`_quiet_logs`):
the batches finished are stored, and the sweep run again resumes. So are a scheduler with no worker, and a worker
whose records would be stored under keys they do not belong to: one running another archsim than this process, or
with other limit variables (`points.computing_version`, what a record depends on of the code and the environment,
differs: a limit may decide a point, ARCHSIM_MAX_GPU_ROWS a GPU point's feasibility). Checked before any work, and
on every batch (each carries its worker's version, `_on_worker`), so a worker restarted on other code or limits
mid-sweep has its batch refused, not stored. So is a cluster left with no worker mid-sweep for WORKER_WAIT_S (a
worker whose nanny was killed stops, and nothing starts it again): its batches would wait for one forever
(`_watch_workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from archsim.dse.points import Base, computing_version
from archsim.dse.spec import SweepSpec
from archsim.dse.store import put
from archsim.dse.sweep import (
    TARGET_BATCH_S,
    Keyed,
    Progress,
    evaluate_batch,
    evaluate_serial,
    next_batch_size,
    started,
    sweep_records,
)
from archsim.errors import SpecError
from archsim.limits import LIMIT_PREFIX

Executor = Literal["in-process", "dask"]
Status = Callable[[str], None]  # told one line: the executor chosen and why
Version = str | dict[str, Any]  # `points.computing_version()` (the model version alone from an older archsim)
# Estimated work below which a sweep runs in this process. An embedded cluster adds 3.5-5 s of wall time before its
# first result (measured with `benchmarks/sweep_demo.py` on 2 loaded cores), so with w workers it wins from about
# that x w/(w-1) of work: 7-10 s on 2 cores, nearer 5 s on many. Below 5 s it never wins; between 5 and 10 s on 2
# cores it loses at most ~2.5 s, a small price next to the work.
IN_PROCESS_BELOW_S = 5.0
# Cores an embedded cluster needs to pay: this process plans every key and writes every record while the workers
# evaluate, so on two cores the two workers share them with it. There an embedded cluster was slower than this
# process at every size measured (benchmarks/sweep_throughput.py, the five-axis FuseMax sweep on 2 cores: 10,000
# points 8.4 s vs 5.5 s; 100,000 points 38.9-83.7 s vs 21-40 s, the spread being other users' load).
DASK_FROM_CORES = 3
BATCHES_PER_WORKER = 4  # at least this many batches per worker, for balance
# The first points are timed here (`_probe`): PROBE_POINTS, then twice as many each time (`next_batch_size`, a chunk
# being under PROBE_S of work), until PROBE_S of work or a quarter of the sweep, each chunk stored as it finishes.
# Points binding the same sizes share the mapper's work (`archsim.dse.points.evaluate_points`), so the first points,
# which pay for it, overstate a point's cost: the estimate is the last chunk's. One point first: a chunk is about as
# much work as those before it, so a sweep killed in its probe loses at most about PROBE_S of finished work, however
# slow its points (a first chunk of 32 serving points, or a quarter of a 96-point sweep, had been 13 s and more of
# work stored only at its end).
PROBE_POINTS = 1
PROBE_S = 0.5
CONNECT_TIMEOUT_S = 3.0
# How long a server that took the connection may take to say it is a Dask scheduler: longer than the connection,
# since a scheduler on a loaded machine answers late (CI once saw no answer within 3 s from a live one)
IDENTITY_TIMEOUT_S = 10.0
# How long a cluster may be without a worker: a running scheduler before its first one (starting up), and any
# cluster mid-sweep (a worker restarted by its nanny joins again within seconds), its workers counted every tenth
# of that (`_watch_workers`).
WORKER_WAIT_S = 10.0
QUIET_LOGGERS = ("distributed", "tornado", "bokeh", "asyncio")  # silenced during a Dask sweep (`_quiet_logs`)
_ADDRESS = re.compile(r"^(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class SweepRun:
    """What a sweep run leaves: the stored records, how many points it stored and reused from the store, and where
    it evaluated them."""

    records: pd.DataFrame  # the sweep's stored records (this run's and earlier runs'), one per distinct point,
    # constraint_ok judged by this sweep's constraints (`sweep.sweep_records`, as `run_sweep` returns them)
    new: int  # rows this run stored (a point a sweep in another process stored first is not one, even where this
    # run gave it the values of axes that sweep lacked)
    reused: int  # the sweep's other points: in the store already, or stored meanwhile by another process
    executor: Executor | None  # where this run evaluated its points (None: nothing to evaluate)


def check_scheduler(address: str, timeout_s: float = CONNECT_TIMEOUT_S,
                    identity_timeout_s: float = IDENTITY_TIMEOUT_S) -> str:
    """`address` as `tcp://HOST:PORT` once a connection there is taken within `timeout_s` and a Dask scheduler
    says so within `identity_timeout_s`; otherwise a SpecError naming `--scheduler`."""
    match = _ADDRESS.match(address)
    if not match or not 0 < int(match[2]) < 65536:
        raise SpecError("--scheduler", address, "expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786")
    host, port = match[1].strip("[]"), int(match[2])
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise SpecError("--scheduler", address, f"cannot connect within {timeout_s:g} s: "
                                                f"{exc.strerror or exc or type(exc).__name__}") from None
    address = f"tcp://{match[1]}:{port}"
    try:  # in a thread of its own, so that a caller's running event loop (a notebook's) is no obstacle
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(asyncio.run, asyncio.wait_for(_identity(address), identity_timeout_s)).result()
    except TimeoutError:
        reply = f"no answer within {identity_timeout_s:g} s"
    except Exception as exc:  # whatever answers is not a Dask scheduler (garbage, a closed stream)
        reply = f"{type(exc).__name__}: {exc}"
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise SpecError("--scheduler", address, f"no Dask scheduler answers there ({str(reply)[:80]})")
    return address


async def _identity(address: str):
    """What the server at `address` says it is (a Dask `identity` request)."""
    from distributed.comm import connect

    comm = await connect(address)
    try:
        await comm.write({"op": "identity"})
        return await comm.read()
    finally:
        comm.abort()


def batch_size_for(point_s: float, points: int, workers: int, target_batch_s: float = TARGET_BATCH_S) -> int:
    """Points per task: about `target_batch_s` of work, but no more than leaves BATCHES_PER_WORKER per worker."""
    by_time = max(1, round(target_batch_s / max(point_s, 1e-6)))
    by_balance = max(1, math.ceil(points / (BATCHES_PER_WORKER * max(workers, 1))))
    return min(by_time, by_balance)


class NoWorker(Exception):
    """The cluster had no worker for WORKER_WAIT_S while batches were pending."""


class OtherModel(Exception):
    """A batch computed by a worker running another archsim model, or the same under other limit variables, than
    this process (`points.computing_version`)."""

    def __init__(self, worker: str, version: Version):
        super().__init__(worker, version)
        self.worker, self.version = worker, version


def evaluate_on(client, spec: SweepSpec, base: Base, todo: list[Keyed], conn, batch_size: int,
                progress: Progress | None = None, done_before: int = 0, total: int | None = None) -> int:
    """Evaluate `todo` on `client` in batches of `batch_size`, committing each batch as it completes; returns the
    number of records written. A batch a worker computed with another archsim model is not stored: OtherModel; a
    cluster with no worker for WORKER_WAIT_S while batches are pending is NoWorker (`_watch_workers`). The batches
    committed before either stay."""
    total = len(todo) + done_before if total is None else total
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    shared = client.submit(_shared, spec, base, pure=False)
    futures = client.map(_on_worker, [shared] * len(batches), batches, pure=False)
    with _workers_watched(client, futures) as lost:
        try:
            return _store_as_completed(futures, conn, progress, done_before, total)
        except CancelledError:
            if lost.is_set():  # cancelled by `_watch_workers`
                raise NoWorker() from None
            raise


def _store_as_completed(futures: list, conn, progress: Progress | None, done_before: int, total: int) -> int:
    """Commit each batch's records as its future completes; returns the number written. OtherModel for a batch from
    a worker running another archsim model or other limits (`_check_batch`: not stored)."""
    from distributed import as_completed

    written, start = 0, time.perf_counter()
    for future in as_completed(futures):
        worker, version, batch = future.result()
        _check_batch(worker, version)
        put(conn, batch)
        written += len(batch)
        future.release()
        if progress:
            rate = written / max(time.perf_counter() - start, 1e-9)
            progress(done_before + written, total, rate, (total - done_before - written) / rate)
    return written


@contextlib.contextmanager
def _workers_watched(client, futures: list) -> Iterator[threading.Event]:
    """`_watch_workers` in a thread of its own while the block runs; yields the event it sets."""
    stop, lost = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_workers, args=(client, futures, stop, lost), daemon=True)
    watcher.start()
    try:
        yield lost
    finally:
        stop.set()
        watcher.join()


def _watch_workers(client, futures: list, stop: threading.Event, lost: threading.Event) -> None:
    """Until `stop` is set, count the cluster's workers every tenth of WORKER_WAIT_S; once it has had none for
    WORKER_WAIT_S, set `lost` and cancel `futures`, which would wait for a worker forever (a worker whose nanny was
    killed stops, and nothing starts it again). Cancelling also ends the fetch of a batch whose worker died holding
    its result, which would wait for the batch to be computed again."""
    workerless_since = None
    while not stop.wait(WORKER_WAIT_S / 10):
        workerless_since = _workerless_since(client, workerless_since)
        if workerless_since is not None and time.monotonic() - workerless_since >= WORKER_WAIT_S:
            lost.set()
            client.cancel(futures)
            return


def _workerless_since(client, since: float | None) -> float | None:
    """None if the cluster's scheduler counts a worker now; else since when the cluster has had none: `since`, or
    now if that is None. A scheduler that does not answer within a tenth of WORKER_WAIT_S leaves `since` as it was:
    a lost scheduler reaches the sweep as its batches cancelled by Dask."""
    try:
        identity = client.sync(client.scheduler.identity, n_workers=0, callback_timeout=WORKER_WAIT_S / 10)
    except (OSError, TimeoutError):
        return since
    if identity["n_workers"]:
        return None
    return time.monotonic() if since is None else since


def _check_batch(worker: str, version: Version) -> None:
    """OtherModel unless `version`, that of the worker that computed a batch, is this process's version
    (`points.computing_version`): the batch's records belong under this process's keys."""
    if version != computing_version():
        raise OtherModel(worker, version)


def _shared(spec: SweepSpec, base: Base) -> tuple[SweepSpec, Base]:
    """The sweep's spec and base as a task's result, which every batch depends on: fetched once by each worker, and
    recomputed by Dask (the task holds them) if the worker holding them dies."""
    return spec, base


def _on_worker(shared: tuple[SweepSpec, Base], batch: list[Keyed]) -> tuple[str, Version, list[dict[str, Any]]]:
    """Run on a worker: its address, its keyed version (`worker_version`, read after the batch: the code and limits
    that computed it) and the records of `batch` (`evaluate_batch`)."""
    from distributed import get_worker

    records = evaluate_batch(*shared, batch)
    return get_worker().address, worker_version(), records


def choose_executor(point_s: float, points: int, cores: int, have_dask: bool) -> tuple[Executor, str]:
    """In-process or Dask for `points` more points at `point_s` each (timed here), and why, as one phrase.

    Dask only where it can pay for its start: the estimated work reaches IN_PROCESS_BELOW_S, there are
    DASK_FROM_CORES cores or more, and dask.distributed is installed."""
    work_s = point_s * points
    estimate = _estimate(work_s, points, point_s)
    if work_s < IN_PROCESS_BELOW_S:
        return "in-process", f"{estimate} is under {IN_PROCESS_BELOW_S:g} s"
    if cores < DASK_FROM_CORES:
        return "in-process", (f"{estimate}, but {cores} core{'s' if cores > 1 else ''}: an embedded cluster's "
                              "workers would share them with this process, which writes the store")
    if not have_dask:
        return "in-process", f"{estimate}, but dask.distributed is not installed"
    return "dask", f"{estimate} reaches {IN_PROCESS_BELOW_S:g} s"


def _estimate(work_s: float, points: int, point_s: float) -> str:
    """The estimate as one phrase, `~5.0 s of work (8224 points x 0.6 ms, timed here)`, with as few decimals as keep
    both the work and points x the time shown on the side of IN_PROCESS_BELOW_S that the choice took: 4.984 s shows
    as `~4.984 s` (8224 x 0.606 ms), never as a `~5.0 s` that "is under 5 s"."""
    under = work_s < IN_PROCESS_BELOW_S
    for digits in range(1, 7):
        work, each_ms = f"{work_s:.{digits}f}", f"{point_s * 1e3:.{digits}f}"
        shown_s = (float(work), points * float(each_ms) / 1e3)
        if all((s < IN_PROCESS_BELOW_S) == under for s in shown_s):
            break
    return f"~{work} s of work ({points} points x {each_ms} ms, timed here)"


def run_sweep_dask(spec: SweepSpec, db_path: str | Path, scheduler: str | None = None, workers: int | None = None,
                   batch_size: int | None = None, target_batch_s: float = TARGET_BATCH_S,
                   executor: Executor | None = None,
                   progress: Progress | None = None, status: Status | None = None) -> SweepRun:
    """Evaluate every point of `spec` missing from the store at `db_path` and return the sweep's records.

    `executor` None chooses: Dask if `scheduler` (that scheduler) or `workers` (an embedded LocalCluster of that
    many processes) is given, else by `choose_executor` on the first points timed here (a cluster of one process per
    core when Dask). `status` is told the choice and why, in one line, before the rest of the work."""
    if executor is None and (scheduler or workers):
        executor, why = "dask", f"as {'--scheduler' if scheduler else '--workers'} asks"
    else:
        why = "as --local asks" if executor == "in-process" else "as asked"
    chosen: Executor | None = None
    with started(spec, db_path) as (base, conn, keys, todo_by_key):
        todo = list(todo_by_key.items())
        if todo:
            chosen = _evaluate(spec, base, todo, conn, scheduler, workers, batch_size, target_batch_s,
                               (executor, why), progress, status or (lambda line: None), len(keys) - len(todo),
                               len(keys))
        new = conn.inserted_rows  # a key stored meanwhile is not inserted (`store.put`)
        mine = sweep_records(conn, spec, base, keys)
    return SweepRun(mine, new, len(keys) - new, chosen)


def _evaluate(spec: SweepSpec, base: Base, todo: list[Keyed], conn, scheduler: str | None, workers: int | None,
              batch_size: int | None, target_batch_s: float, asked: tuple[Executor | None, str],
              progress: Progress | None, status: Status, done_before: int, total: int) -> Executor:
    executor, why = asked
    with contextlib.ExitStack() as stack:
        client = _client(stack, scheduler, workers) if executor == "dask" else None  # fails before any work
        point_s = None
        if executor is None or batch_size is None:  # time the first points here (keeping their records)
            point_s, probed = _probe(spec, base, todo, conn, batch_size, target_batch_s)
            todo, done_before = todo[probed:], done_before + probed
        if executor is None:
            executor, why = choose_executor(point_s, len(todo), os.cpu_count() or 1,
                                            importlib.util.find_spec("distributed") is not None)
            if executor == "dask":
                client = _client(stack, None, None)
        status(f"executor: {_describe(executor, scheduler, client)}, {why}")
        if point_s is not None and progress:
            progress(done_before, total, 1 / point_s, point_s * len(todo))
        if client is None:
            evaluate_serial(spec, base, todo, conn, batch_size, progress, done_before, total, target_batch_s)
            return executor
        if scheduler:
            _wait_for_a_worker(client, scheduler)
            _check_worker_versions(client, scheduler)
        n_workers = max(len(client.scheduler_info()["workers"]), 1)
        size = batch_size or batch_size_for(point_s, len(todo), n_workers, target_batch_s)
        _evaluate_on_cluster(client, scheduler, spec, base, todo, conn, size, progress, done_before, total)
        return executor


def _evaluate_on_cluster(client, scheduler: str | None, spec: SweepSpec, base: Base, todo: list[Keyed], conn,
                         size: int, progress: Progress | None, done_before: int, total: int) -> None:
    """`evaluate_on`, its failures a SpecError naming `--scheduler` (or Dask's embedded cluster) and what happened:
    a batch from a worker running another archsim or other limit variables (restarted on other code or limits
    mid-sweep; an embedded cluster's workers import this process's source, edited since it started), a batch whose
    workers all died running it (Dask's KilledWorker: killed, out of memory), the cluster left with no worker (its
    last one's nanny killed), or the cluster gone (a killed scheduler). The batches finished before are stored
    either way, and the sweep run again resumes from them."""
    from distributed import KilledWorker

    source, where = ("--scheduler", scheduler) if scheduler else ("Dask", "embedded cluster")
    resume = "the batches finished before are stored: run the sweep again to resume"
    try:
        evaluate_on(client, spec, base, todo, conn, size, progress, done_before, total)
    except OtherModel as exc:
        mine = computing_version()
        theirs, ours = _versions_text(exc.version, mine)
        fix = (f"the batches finished before are stored: {_remedy(exc.version, mine)} and run the sweep again to "
               "resume" if scheduler else f"archsim's source or this process's {LIMIT_PREFIX}* variables changed "
               "during the sweep (the cluster's worker processes import the source afresh, with the variables they "
               "started with): the batches finished before are stored, and the sweep resumes from them")
        raise SpecError(source, where, f"worker {exc.worker} computed a batch with archsim {theirs}, this process "
                                       f"runs {ours}: the batch is not stored (its records would be under this "
                                       f"process's keys); {fix}") from None
    except NoWorker:
        start = f"start a worker (dask worker {scheduler}) and " if scheduler else ""
        raise SpecError(source, where, f"lost its last worker mid-sweep (none for {WORKER_WAIT_S:g} s); the batches "
                                       f"finished before are stored: {start}run the sweep again to resume") from None
    except KilledWorker as exc:
        raise SpecError(source, where, f"{exc.allowed_failures + 1} workers died running one batch (KilledWorker: "
                                       f"killed, or out of memory?); {resume}") from None
    except (CancelledError, OSError) as exc:  # the cluster went away (a killed scheduler): not archsim's fault
        raise SpecError(source, where, f"lost the cluster mid-sweep ({type(exc).__name__}); {resume}") from None


def _wait_for_a_worker(client, scheduler: str) -> None:
    """Return once the scheduler at `scheduler` has a worker, waiting up to WORKER_WAIT_S; else a SpecError naming
    `--scheduler` (the batches would wait for one forever, or until Dask's own timeout, a message naming nothing)."""
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise SpecError("--scheduler", scheduler, f"has no worker after {WORKER_WAIT_S:g} s: start one (dask worker "
                                                  f"{scheduler}), or drop --scheduler") from None


def worker_version() -> Version:
    """The computing version of the process this runs in (`points.computing_version`: its archsim model version and
    limit variables, what a record it computes depends on): run on each worker."""
    from archsim.dse import points

    return points.computing_version()


def _check_worker_versions(client, scheduler: str) -> None:
    """The scheduler's workers compute records for the keys this process computes (`points.computing_version`: the
    package version and its source's digest, and the limit variables set, as a limit may decide a point); a worker
    with another archsim or other limits would store its results under this process's keys, so it is a SpecError
    naming `--scheduler`, the worker and what differs."""
    mine = computing_version()
    other = {worker: version for worker, version in client.run(worker_version).items() if version != mine}
    if other:
        worker, version = next(iter(other.items()))
        theirs, ours = _versions_text(version, mine)
        raise SpecError("--scheduler", scheduler, f"worker {worker} runs archsim {theirs}, this process {ours} "
                                                  f"({len(other)} worker(s) differ): {_remedy(version, mine)}")


def _versions_text(theirs: Version, mine: Version) -> tuple[str, str]:
    """A worker's keyed version and this process's, as text: each model version, with the limit variables whose
    values differ between the two (`NAME=value`, or `NAME unset`) where any does."""
    (model, limits), (my_model, my_limits) = _parts(theirs), _parts(mine)
    differ = sorted(name for name in limits.keys() | my_limits.keys() if limits.get(name) != my_limits.get(name))
    return _version_text(model, limits, differ), _version_text(my_model, my_limits, differ)


def _version_text(model: str, limits: dict[str, int], names: list[str]) -> str:
    shown = ", ".join(f"{name}={limits[name]}" if name in limits else f"{name} unset" for name in names)
    return f"{model} with {shown}" if shown else model


def _parts(version: Version) -> tuple[str, dict[str, int]]:
    """A keyed version's model version and limit variables (none where it is the model version alone)."""
    return (version["model"], version["limits"]) if isinstance(version, dict) else (version, {})


def _remedy(theirs: Version, mine: Version) -> str:
    """What makes a worker of keyed version `theirs` compute this process's records: the same archsim, and this
    process's limit variables where those differ (a limit may decide a point)."""
    (model, limits), (my_model, my_limits) = _parts(theirs), _parts(mine)
    same_limits = f"this process's {LIMIT_PREFIX}* variables (a limit may decide a point)"
    if model == my_model:
        return f"give the workers {same_limits}"
    return "install the same archsim on the workers" + ("" if limits == my_limits else f", with {same_limits}")


def _probe(spec: SweepSpec, base: Base, todo: list[Keyed], conn, batch_size: int | None,
           target_batch_s: float = TARGET_BATCH_S) -> tuple[float, int]:
    """Evaluate and store the first points here, timed: one batch of `batch_size` if given, else chunks of
    PROBE_POINTS, then of `next_batch_size` (twice as many each time: a chunk run before PROBE_S of work is done took
    less than PROBE_S, half the default `target_batch_s`), until PROBE_S of work or a quarter of the sweep is done.
    Returns the seconds per point of the last chunk (the first ones pay for plans the rest reuse) and the points
    done."""
    limit = min(batch_size, len(todo)) if batch_size else max(1, len(todo) // 4)
    done, size, start = 0, batch_size or PROBE_POINTS, time.perf_counter()
    while True:
        chunk = todo[done:done + min(size, limit - done)]
        chunk_start = time.perf_counter()
        put(conn, evaluate_batch(spec, base, chunk))
        chunk_s = time.perf_counter() - chunk_start
        done += len(chunk)
        if done >= limit or time.perf_counter() - start >= PROBE_S:
            return chunk_s / len(chunk), done
        size = next_batch_size(size, chunk_s, target_batch_s)


def _client(stack: contextlib.ExitStack, scheduler: str | None, workers: int | None):
    """A Dask client of the scheduler at `scheduler`, else of an embedded LocalCluster of `workers` single-threaded
    processes (one per core by default), closed with `stack`."""
    from distributed import Client, LocalCluster

    _quiet_logs(stack)
    if scheduler:
        target = check_scheduler(scheduler)
    else:
        # A Ctrl-C reaches the terminal's whole process group: the worker processes (started with SIGINT ignored,
        # which they keep) leave it to this one, which closes the cluster; the cluster's own logs are silenced (a
        # worker's failure reaches the sweep through the client), so `error: aborted` is the only line
        with _interrupts_ignored():
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.CRITICAL)
        target = stack.enter_context(cluster)
    return stack.enter_context(Client(target, timeout=CONNECT_TIMEOUT_S * 10))


def _quiet_logs(stack: contextlib.ExitStack) -> None:
    """Every logger of Dask and the libraries it logs through (QUIET_LOGGERS, and those under them) at CRITICAL until
    `stack` closes, then at its own level again. Dask gives some its own stderr handler and level (`distributed.client`
    logged a lost scheduler's reconnection and its traceback there, past a quiet `distributed`), and a logger under
    one with a level of its own passes its records to the handlers above it whatever their level; asyncio is the
    cluster's event loop (a task a teardown cut short logs its error). A failure reaches the sweep through the
    client and is reported once, by `_evaluate_on_cluster`."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in QUIET_LOGGERS:
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _interrupts_ignored():
    """SIGINT ignored while processes are started (they inherit it: Python keeps an ignored SIGINT ignored), then
    this process's handler again; outside the main thread, where signals cannot be set, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _describe(executor: Executor, scheduler: str | None, client) -> str:
    if executor == "in-process":
        return "in-process"
    if scheduler:
        return f"Dask on {scheduler}"
    n_workers = len(client.scheduler_info()["workers"])
    return f"Dask, an embedded cluster of {n_workers} worker process{'es' if n_workers > 1 else ''}"
