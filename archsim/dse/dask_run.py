"""Running a sweep on Dask: the pending points in batches on an embedded `LocalCluster` (one single-threaded worker
process per core) or on a running scheduler (`tcp://HOST:PORT`), each finished batch committed to the store by
the client as it arrives.

Workers only evaluate (`evaluate_batch` is pure); the store is written by this process alone, so SQLite sees one
writer. A batch is sized for about `target_batch_s` of work (timed on one point evaluated here first), so the
per-task scheduling cost (~1 ms) stays small next to the evaluation, but capped so every worker gets several
batches to balance.

A scheduler address is checked before any work (`check_scheduler`): its form, a TCP connection within
CONNECT_TIMEOUT_S, and a Dask scheduler answering there; each failure is a SpecError naming `--scheduler`.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from archsim.dse.points import Base, Point, load_base
from archsim.dse.spec import SweepSpec
from archsim.dse.store import done_keys, open_store, put, records
from archsim.dse.sweep import evaluate_batch, plan
from archsim.errors import SpecError

Progress = Callable[[int, int, float, float], None]  # (points done, points total, points per s, ETA in s)
BATCHES_PER_WORKER = 4  # at least this many batches per worker, for balance
CONNECT_TIMEOUT_S = 3.0
_ADDRESS = re.compile(r"^(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class SweepRun:
    records: pd.DataFrame  # the sweep's stored records (this run's and earlier runs'), one per distinct point
    new: int  # points evaluated by this run
    reused: int  # points of the sweep already in the store


def check_scheduler(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """`address` as `tcp://HOST:PORT` once a Dask scheduler has answered there within `timeout_s`; otherwise a
    SpecError naming `--scheduler`."""
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
            reply = pool.submit(asyncio.run, asyncio.wait_for(_identity(address), timeout_s)).result()
    except TimeoutError:
        reply = f"no answer within {timeout_s:g} s"
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


def batch_size_for(point_s: float, points: int, workers: int, target_batch_s: float = 1.0) -> int:
    """Points per task: about `target_batch_s` of work, but no more than leaves BATCHES_PER_WORKER per worker."""
    by_time = max(1, round(target_batch_s / max(point_s, 1e-6)))
    by_balance = max(1, math.ceil(points / (BATCHES_PER_WORKER * max(workers, 1))))
    return min(by_time, by_balance)


def evaluate_on(client, spec: SweepSpec, base: Base, todo: list[Point], conn, batch_size: int,
                progress: Progress | None = None, done_before: int = 0, total: int | None = None) -> int:
    """Evaluate `todo` on `client` in batches of `batch_size`, committing each batch as it completes; returns the
    number of records written."""
    from distributed import as_completed

    total = len(todo) + done_before if total is None else total
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    spec_future, base_future = client.scatter([spec, base], broadcast=True)
    futures = client.map(evaluate_batch, [spec_future] * len(batches), [base_future] * len(batches), batches,
                         pure=False)
    written, start = 0, time.perf_counter()
    for future in as_completed(futures):
        batch = future.result()
        put(conn, batch)
        written += len(batch)
        future.release()
        if progress:
            rate = written / max(time.perf_counter() - start, 1e-9)
            progress(done_before + written, total, rate, (total - done_before - written) / rate)
    return written


def evaluate_serial(spec: SweepSpec, base: Base, todo: list[Point], conn, batch_size: int,
                    progress: Progress | None = None, done_before: int = 0, total: int | None = None) -> int:
    """`evaluate_on` without Dask: the batches in this process, one after the other."""
    total = len(todo) + done_before if total is None else total
    written, start = 0, time.perf_counter()
    for i in range(0, len(todo), batch_size):
        batch = evaluate_batch(spec, base, todo[i:i + batch_size])
        put(conn, batch)
        written += len(batch)
        if progress:
            rate = written / max(time.perf_counter() - start, 1e-9)
            progress(done_before + written, total, rate, (total - done_before - written) / rate)
    return written


def run_sweep_dask(spec: SweepSpec, db_path: str | Path, scheduler: str | None = None, workers: int | None = None,
                   batch_size: int | None = None, target_batch_s: float = 1.0, serial: bool = False,
                   progress: Progress | None = None) -> SweepRun:
    """Evaluate every point of `spec` missing from the store at `db_path` on Dask (a LocalCluster of `workers`
    processes, default one per core, or the scheduler at `scheduler`; in this process if `serial`) and return the
    sweep's records."""
    base = load_base(spec)  # before the store opens: a bad base leaves no connection or empty store behind
    conn = open_store(db_path)
    try:
        keys, todo_by_key = plan(spec, base, done_keys(conn))
        todo = list(todo_by_key.values())
        reused = len(keys) - len(todo)
        if todo:
            _evaluate(spec, base, todo, conn, scheduler, workers, batch_size, target_batch_s, serial, progress,
                      reused, len(keys))
        df = records(conn)
    finally:
        conn.close()
    mine = df[df["key"].isin(set(keys))].reset_index(drop=True) if len(df) else df
    return SweepRun(mine, len(todo), reused)


def _evaluate(spec: SweepSpec, base: Base, todo: list[Point], conn, scheduler: str | None, workers: int | None,
              batch_size: int | None, target_batch_s: float, serial: bool, progress: Progress | None,
              done_before: int, total: int) -> None:
    client = cluster = None
    try:
        if not serial:  # the cluster first: a scheduler that cannot be reached fails before any work
            from distributed import Client, LocalCluster

            if scheduler is None:
                cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                       processes=True, dashboard_address=":0")
            client = Client(check_scheduler(scheduler) if scheduler else cluster, timeout=CONNECT_TIMEOUT_S * 10)
        if batch_size is None:  # time one point here (and keep its record) to size the batches
            start = time.perf_counter()
            put(conn, evaluate_batch(spec, base, todo[:1]))
            point_s = time.perf_counter() - start
            todo, done_before = todo[1:], done_before + 1
            if progress:
                progress(done_before, total, 1 / point_s, point_s * len(todo))
        if client is None:
            evaluate_serial(spec, base, todo, conn, batch_size or batch_size_for(point_s, len(todo), 1, target_batch_s),
                            progress, done_before, total)
            return
        n_workers = max(len(client.scheduler_info()["workers"]), 1)
        size = batch_size or batch_size_for(point_s, len(todo), n_workers, target_batch_s)
        evaluate_on(client, spec, base, todo, conn, size, progress, done_before, total)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
