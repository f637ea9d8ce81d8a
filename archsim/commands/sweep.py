"""`archsim sweep` runs a sweep spec into its SQLite store (resumable: stored points are reused), in this process
when the estimated work is small and on Dask otherwise (`archsim.dse.dask_run.choose_executor`; `--scheduler` or
`--workers` means Dask, `--local` this process); `archsim results` exports a store as CSV or Parquet.

The executor chosen and why go to stderr as one line, then progress as one `\\r`-updated line; the summary goes to
stdout. Every input is checked before any point is evaluated: the spec (`archsim.dse.spec`, its point count
against `--max-points`), the scheduler, the store path, the sweep's base (an error every point would meet, such as a
workload without a size the cascade binds, is exit 2 with nothing stored: `archsim.dse.sweep.started`) and the store
itself; `results` checks its output path before reading the store and writes the file atomically.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archsim import library
from archsim.commands.options import WholeRange, names_among, nonempty
from archsim.dse.spec import (
    MAX_POINTS_ENV,
    MAXIMISED,
    STORED_METRICS,
    SWEEPS_PACKAGE,
    SweepSpec,
    axis_missing,
    load_sweep,
    point_count,
    unmodelled,
)
from archsim.errors import SpecError
from archsim.outputs import atomic_file, check_writable

if TYPE_CHECKING:
    import pandas as pd

    from archsim.dse.dask_run import SweepRun

SUMMARY_WORKS = 8  # `archsim sweep` prints the best points of this many works (sequence lengths, say) at most


def parse_objectives(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """`latency_s,energy_pj[,area_um2]`: two or three distinct metric names (exit 2 naming the option otherwise);
    the serving metrics only in a sweep of a system (checked against the records by `check_objectives`)."""
    if value is None:
        return None
    names = names_among(param.opts[0], value, STORED_METRICS, "metric")
    if not 2 <= len(names) <= 3:
        raise SpecError(param.opts[0], value, f"expected two or three metrics, got {len(names)}")
    return names


def check_objectives(objectives: tuple[str, ...], metrics, option: str, what: str) -> None:
    """Each objective given by `option` is one of `metrics` (what `what`, a sweep or a store, has)."""
    for name in objectives:
        if name not in metrics:
            raise SpecError(option, name, f"not a metric of {what} (its metrics: {', '.join(metrics)})")


def check_stored_objectives(df: pd.DataFrame, objectives: tuple[str, ...], option: str) -> None:
    """Each objective has a value at some feasible stored point (`df`: a store's records); one that none has (a
    system's area) would make an empty front, not an answer. A store with no feasible point says nothing."""
    import numpy as np

    feasible = df[df["feasible"].astype(bool)] if len(df) else df
    for name in objectives if len(feasible) else ():
        if name not in feasible or not np.isfinite(feasible[name].to_numpy(dtype=float)).any():
            kinds = ", ".join(sorted(set(feasible.get("target_kind", ["?"]))))
            raise SpecError(option, "", f"{name} is not modelled for target {kinds} (no feasible stored point has "
                                        "it)")


def check_store_path(db: str) -> str:
    """`--db` names a file: not an in-memory database (`:memory:`, a `file:` URI), whose results would be lost."""
    if db == ":memory:" or db.startswith("file:"):
        raise SpecError("--db", db, "expected a file path for the store (an in-memory database loses the results; "
                                    "write ./file:... for a file so named)")
    return db


def objectives_option(name: str, help_text: str):
    """A click option `name` that reads a comma-separated list of objectives into `objectives` (`parse_objectives`)."""
    return click.option(name, "objectives", callback=parse_objectives, metavar="A,B[,C]", help=help_text)


def _progress(done: int, total: int, rate: float, eta_s: float) -> None:
    click.echo(f"\r{done}/{total} points, {rate:.1f} points/s, ETA {eta_s:.0f} s   ", err=True, nl=False)


@click.command("sweep")
@click.argument("spec")
@click.option("--scheduler", metavar="ADDR",
              help="Run on this Dask scheduler (tcp://HOST:PORT). Default: in this process when the estimated work is "
                   "under 5 s (dask_run.IN_PROCESS_BELOW_S) or the machine has fewer than 3 cores, else an embedded "
                   "Dask cluster.")
@click.option("--db", type=click.Path(dir_okay=False), callback=nonempty,
              help="Results store (default sweeps/<name>.sqlite).")
@click.option("--workers", type=WholeRange(min=1),
              help="Run on an embedded Dask cluster of this many workers (default when Dask is chosen: one per core).")
@click.option("--batch-size", type=WholeRange(min=1),
              help="Points per task (default: about 1 s of work, timed on the first points).")
@click.option("--local", is_flag=True, help="Evaluate in this process, without Dask, whatever the estimate.")
@click.option("--max-points", type=WholeRange(min=1),
              help=f"Refuse a sweep of more points than this (default: ${MAX_POINTS_ENV} or 100000).")
@click.option("--replace-other-version", is_flag=True,
              help="Where --db holds the points of another archsim version (after an upgrade or an edit of its "
                   "source: none would be reused, and the store is otherwise refused), empty it and start afresh. A "
                   "store of this version is kept and resumed.")
@objectives_option("--objectives", "Objectives of the summary's Pareto front (default: the spec's).")
def sweep_cmd(spec: str, scheduler: str | None, db: str | None, workers: int | None, batch_size: int | None,
              local: bool, max_points: int | None, replace_other_version: bool,
              objectives: tuple[str, ...] | None) -> None:
    """Evaluate every point of a sweep spec (a YAML path or a library sweep name) and store the records; points
    already in the store are reused, so a killed sweep resumes where it stopped. Small sweeps (under 5 s of
    estimated work, dask_run.IN_PROCESS_BELOW_S), and any on fewer than 3 cores, run in this process, larger ones
    on Dask.

    Example: archsim sweep demo --db reports/demo/demo.sqlite
    """
    if local and (scheduler or workers):
        raise click.UsageError(f"--local and {'--scheduler' if scheduler else '--workers'} exclude each other")
    if scheduler is not None and workers:  # a running cluster has the workers it has: --workers would be ignored
        raise click.UsageError("--scheduler and --workers exclude each other (--workers sizes an embedded cluster)")
    cores = os.cpu_count() or 1
    if workers and workers > cores and not scheduler:
        raise SpecError("--workers", str(workers), f"an embedded cluster runs at most one worker per core ({cores} "
                                                   "here); for more, start a Dask cluster and pass --scheduler")
    sweep = load_sweep(library.find("sweeps", spec, SWEEPS_PACKAGE), max_points)
    if objectives:
        check_objectives(objectives, sweep.metrics, "--objectives", f"sweep {sweep.name}")
        for name in objectives:
            unmodelled(sweep.kind, name, "", "--objectives")
        sweep = dataclasses.replace(sweep, objectives=objectives)  # the ones its store records (`report --sweep`)
    from archsim.dse.dask_run import check_scheduler, run_sweep_dask  # pandas and the models: not for --help

    if (scheduler or workers) and importlib.util.find_spec("distributed") is None:
        raise click.ClickException("dask.distributed is not installed (pip install distributed); without "
                                   "--scheduler and --workers the sweep runs in this process")
    if scheduler:
        scheduler = check_scheduler(scheduler)
    db_path = check_writable(check_store_path(db) if db else Path("sweeps") / f"{sweep.name}.sqlite", "--db",
                             written_in_place="a sweep store")
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError("--db", str(db_path), f"cannot create its folder: {exc.strerror or exc}") from None
    if replace_other_version:
        from archsim.dse.sweep import empty_other_version

        if emptied := empty_other_version(db_path):
            click.echo(emptied, err=True)
    shown = []  # whether the progress line was started: a mid-sweep error then starts a line of its own

    def progress(done: int, total: int, rate: float, eta_s: float) -> None:
        shown.append(True)
        _progress(done, total, rate, eta_s)

    try:
        run = run_sweep_dask(sweep, db_path, scheduler=scheduler, workers=workers, batch_size=batch_size,
                             executor="in-process" if local else None, progress=progress,
                             status=lambda line: click.echo(line, err=True))
    except BaseException:
        if shown:
            click.echo("", err=True)
        raise
    if run.executor:  # points were evaluated: end the progress line
        click.echo("", err=True)
    _summary(sweep, run, db_path, sweep.objectives)


def _summary(spec: SweepSpec, run: SweepRun, db_path: Path, objectives: tuple[str, ...]) -> None:
    """The sweep's summary on stdout: its counts, the best point of each objective per work (`front_work`: each
    value of the axes that change the work, as the report's table; `none` at a work no point of which meets the
    constraints; the first `SUMMARY_WORKS` works, the report's summary.csv naming the rest) and the size of its
    Pareto fronts, one per work (`pareto_mask_by`), the line naming the axes they are taken per (`fronts_text`)."""
    import numpy as np

    from archsim.dse.pareto import distinct_vectors, front_size_text, groups, pareto_mask_by
    from archsim.report.sweep import front_work, fronts_text

    df = run.records
    feasible = df[df["feasible"].astype(bool)] if len(df) else df
    ok = feasible[feasible["constraint_ok"].astype(bool)] if len(feasible) else feasible
    drawn, distinct = point_count(spec), run.new + run.reused  # a draw (or an axis value) repeated is one point
    repeats = f"{drawn} drawn, {distinct} distinct; " if drawn != distinct else ""
    click.echo(f"sweep {spec.name}: {len(df)} points ({repeats}{run.new} new, {run.reused} reused), {len(feasible)} "
               f"feasible, {len(ok)} within constraints; store {db_path}")
    work = front_work(df) if len(df) else []
    within = np.zeros(0, dtype=bool)
    if len(df):
        within = (df["feasible"].astype(bool) & df["constraint_ok"].astype(bool)).to_numpy()
    works = groups(df, work)  # every work, those with no point within the constraints too
    for values, positions in works[:SUMMARY_WORKS]:
        for objective in objectives:
            click.echo(_best_line(df.iloc[positions[within[positions]]], objective, list(spec.axes),
                                  dict(zip(work, values, strict=True))))
    if len(works) > SUMMARY_WORKS:
        click.echo(f"best points of the other {len(works) - SUMMARY_WORKS} works: in the summary.csv of `archsim "
                   "report --sweep` on the store")
    lacking = []  # objectives some points within constraints lack (a serving run with no second token: no TBT)
    for objective in objectives:
        values = ok[objective].to_numpy(dtype=float) if len(ok) else np.array([])
        if unmeasured := int((~np.isfinite(values)).sum()):
            lacking.append(f"{unmeasured} {'has' if unmeasured == 1 else 'have'} no {objective}")
    front = ok[pareto_mask_by(ok, objectives, work)] if len(ok) else ok
    notes = [f"of the points within constraints, {', '.join(lacking)}: off the front"] if lacking else []
    size = front_size_text(len(front), distinct_vectors(front, [*work, *objectives]) if len(front) else 0, notes)
    click.echo(f"Pareto front{'s' if work else ''} over ({', '.join(objectives)}){fronts_text(work)}: {size}")


def _best_line(points: pd.DataFrame, objective: str, axes: list[str], work: dict) -> str:
    """`best latency_s: 0.0297 at target=fusemax, ..., workload.seq_len=4096`: the point of `points` (one work's,
    within the constraints) best in `objective` (`best_label`) and its axis values; `best latency_s: none at
    workload.seq_len=262144` where none of them has a value (`work`: the work's axis values, None where missing)."""
    import numpy as np

    from archsim.dse.pareto import best_label

    values = points[objective].to_numpy(dtype=float) if len(points) else np.array([])
    if not np.isfinite(values).any():
        at = ", ".join(f"{a}={_plain(v)}" for a, v in work.items() if v is not None)
        return f"best {objective}: none" + (f" at {at}" if at else "")
    row = points.loc[best_label(points, objective)]
    where = [f"target={row['target']}"] if "target" in row else []
    where += [f"{a}={_plain(row[a])}" for a in axes if a in row and not axis_missing(row[a])]
    return f"best {objective}: {row[objective]:.4g} at " + ", ".join(where)


def _plain(value):
    """An axis value as given in the spec: a float column's 64.0 back to 64 (a float past 2^53, 1e300 say, as
    written: its int would print hundreds of digits)."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value


@click.command("results")
@click.argument("db", type=click.Path(dir_okay=False))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Write the records as CSV here (- for standard output).")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False),
              help="Write the records as Parquet here (needs pyarrow).")
@objectives_option("--front", "Export only the Pareto front over these objectives (feasible points within the "
                              "constraints that no other such point of the same work dominates: one front per "
                              "value of the axes that change the work, such as workload.seq_len; "
                              f"{', '.join(MAXIMISED)} maximised, every other metric minimised).")
def results_cmd(db: str, csv_path: str | None, parquet_path: str | None, objectives: tuple[str, ...] | None) -> None:
    """Export a sweep store: one row per design point.

    Examples:

    \b
      archsim results reports/demo/demo.sqlite --csv demo.csv
      archsim results reports/demo/demo.sqlite --csv front.csv --front latency_s,energy_pj,area_um2
    """
    if (csv_path is None) == (parquet_path is None):
        raise click.UsageError("choose exactly one of --csv FILE, --parquet FILE")
    if parquet_path and importlib.util.find_spec("pyarrow") is None:
        raise click.ClickException("--parquet needs pyarrow (pip install pyarrow); use --csv instead")
    from archsim.dse.pareto import pareto_mask_by
    from archsim.dse.sweep import read_judged, require_points, unfinished
    from archsim.report.sweep import front_work, whole_axes

    to_stdout = csv_path == "-"
    out = None if to_stdout else check_writable(csv_path or parquet_path, "--csv" if csv_path else "--parquet",
                                                 inputs=(db,))
    df, constraints, _, _ = read_judged(db)
    require_points(db, df)
    note = unfinished(db, df)
    if note:
        click.echo(f"warning: {note}", err=True)
    if objectives:
        known = STORED_METRICS
        check_objectives(objectives, [c for c in df.columns if c in known], "--front", f"the store {db}")
        check_stored_objectives(df, objectives, "--front")
        df = df[pareto_mask_by(df, objectives, front_work(df))].reset_index(drop=True)
    judged = ("constraint_ok by the last sweep's constraints: " + (", ".join(
        f"{c.metric} {c.op} {c.bound:g}" for c in constraints) or "none")) if constraints is not None else (
        "constraint_ok as stored")
    if to_stdout:  # the records on standard output, the summary on standard error
        click.echo(whole_axes(df).to_csv(index=False), nl=False)
        click.echo(f"{len(df)} records written to standard output ({judged})", err=True)
        return
    with atomic_file(out) as tmp:
        if csv_path:
            whole_axes(df).to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    click.echo(f"{len(df)} records written to {out} ({judged})")
