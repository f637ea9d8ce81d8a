"""`archsim report`: a folder of figures, the CSV behind each and an index.html, for the library, one design
point, a paper's reproduction or a sweep store. Each folder is written atomically (archsim.outputs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from archsim import library
from archsim.cascade.ir import Cascade
from archsim.commands.options import SET, WORKLOAD, WholeRange, nonempty, parse_sets, show_result
from archsim.commands.sweep import check_objectives, check_stored_objectives, objectives_option
from archsim.errors import SpecError
from archsim.outputs import check_writable
from archsim.systems.fusemax import MODELS
from archsim.workload import PARAMS, Workload

_MODES = {  # mode -> the options that apply to it
    "--library": {"--workload", "--set"},
    "--run": {"--mapping", "--cascade", "--arch", "--workload", "--set", "--event"},
    "--reproduction": {"--model", "--seq-len"},
    "--sweep": {"--spec", "--objectives"},
}


@click.command("report")
@click.option("--library", "library_report", is_flag=True, help="Report on every cascade of the library.")
@click.option("--run", "run_report", is_flag=True,
              help="Report on one design point: roofline, energy and utilization figures (needs --mapping).")
@click.option("--reproduction", type=click.Choice(["fusemax", "neupims", "duplex", "lamina", "seqpar", "sparse"]),
              help="Report on a paper's configurations at one point, and ours vs the paper's over its sweep.")
@click.option("--sweep", "sweep_db", type=click.Path(dir_okay=False), metavar="DB", callback=nonempty,
              help="Report on a sweep's results store: Pareto front, sensitivity per axis, latency heatmap.")
@click.option("--spec", metavar="SPEC", callback=nonempty,
              help="[--sweep] The sweep (library name or YAML path) giving objectives and axis values "
                   "(default objectives: the spec's, else the last sweep's into the store, else latency_s, "
                   "energy_pj; a sparse store's latency_s, memory_bytes).")
@objectives_option("--objectives", "[--sweep] Two or three objectives of the Pareto front (default: the "
                                   "spec's, else the last sweep's, as --spec says).")
@click.option("--mapping", "-m", metavar="M", callback=nonempty, help="[--run] Mapping name or YAML path.")
@click.option("--cascade", "-c", metavar="C", callback=nonempty, help="[--run] Cascade (default: the mapping's).")
@click.option("--arch", "-a", metavar="A", callback=nonempty, help="[--run] Architecture (default: the mapping's).")
@WORKLOAD
@SET
@click.option("--event", "use_event", is_flag=True,
              help="[--run] Evaluate with the event model: adds stall sources and trace.json (Chrome/Perfetto).")
@click.option("--model", type=click.Choice(list(MODELS)), help="[--reproduction fusemax] Model (default BERT).")
@click.option("--seq-len", type=WholeRange(min=1, max=2**24),
              help="[--reproduction fusemax] Tokens (default 65536).")
@click.option("--out", type=click.Path(file_okay=False), callback=nonempty,
              help="Output directory (default reports/library, reports/MAPPING, reports/PAPER or reports/DB-NAME).")
def report_cmd(library_report: bool, run_report: bool, reproduction: str | None, sweep_db: str | None,
               spec: str | None, mapping: str | None, cascade: str | None, arch: str | None, workload: str | None,
               sets: tuple[str, ...], use_event: bool, model: str | None, seq_len: int | None, out: str | None,
               objectives: tuple[str, ...] | None) -> None:
    """Write a report (figures, CSV, index.html) under reports/. Choose exactly one of --library, --run,
    --reproduction, --sweep.

    Examples (each into its own folder under /tmp):

    \b
      archsim report --library --workload bert-base --out /tmp/library
      archsim report --run --mapping flat --workload bert-base --set seq_len=65536 --out /tmp/flat
      archsim report --reproduction fusemax --model BERT --seq-len 65536 --out /tmp/fusemax
      archsim report --sweep reports/demo/demo.sqlite --spec demo --out /tmp/demo-report
    """
    modes_on = (library_report, run_report, reproduction is not None, sweep_db is not None)
    chosen = [m for m, on in zip(_MODES, modes_on, strict=True) if on]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --library, --run, --reproduction, --sweep"
                               + (f" (got {' and '.join(chosen)})" if chosen else ""))
    mode = chosen[0]
    given = {"--mapping": mapping, "--cascade": cascade, "--arch": arch, "--workload": workload,
             "--set": sets or None, "--model": model, "--seq-len": seq_len, "--spec": spec,
             "--event": use_event or None, "--objectives": objectives}
    misplaced = [name for name, value in given.items() if value is not None and name not in _MODES[mode]]
    if misplaced:
        raise click.UsageError(f"{', '.join(misplaced)} {'does' if len(misplaced) == 1 else 'do'} not apply to {mode} "
                               f"(it takes {', '.join(sorted(_MODES[mode]))})")
    if mode == "--run" and mapping is None:
        raise click.UsageError("--run needs --mapping M (e.g. --run --mapping fusemax --workload bert-base)")
    if mode == "--reproduction" and reproduction != "fusemax" and (model or seq_len):
        raise click.UsageError("--model and --seq-len apply to --reproduction fusemax only")
    default = {"--library": "library", "--run": Path(mapping or "").stem, "--reproduction": reproduction,
               "--sweep": Path(sweep_db or "").stem}[mode]
    folder = check_writable(out or Path("reports") / default, "--out", directory=True)
    if mode == "--library":
        _report_library(workload, parse_sets(sets), folder)
    elif mode == "--run":
        _report_run(mapping, cascade, arch, workload, sets, use_event, folder)
    elif reproduction == "neupims":
        _report_neupims(folder)
    elif reproduction == "duplex":
        _report_duplex(folder)
    elif reproduction == "lamina":
        _report_lamina(folder)
    elif reproduction == "seqpar":
        _report_seqpar(folder)
    elif reproduction == "sparse":
        _report_sparse(folder)
    elif mode == "--reproduction":
        _report_reproduction(model or "BERT", seq_len or 65536, folder)
    else:
        _report_sweep(Path(sweep_db), spec, objectives, folder)


def _report_library(workload: str | None, sets: dict[str, float], out: Path) -> None:
    """Every cascade bound as `archsim analyze` binds it (`archsim.point.bound`: its K/V heads, block, window and
    experts checked, no test-default tile under a workload's sizes), each taking the `--set` values it reads or
    checks (`_sets_of`); a set that is no model size (`archsim.workload.PARAMS`) and that no cascade reads is
    refused. A cascade `analyze` refuses is a row with the refusal
    (field and message)."""
    from archsim.point import bound
    from archsim.report.cascades import cascade_row, write_cascade_report

    spec = library.load_workload_spec(workload) if workload else None
    cascades = [library.load_cascade_spec(name) for name in library.names("cascades")]
    for name in sets:
        if name not in PARAMS and not any(name in c.params or name in c.rank_sizes for c in cascades):
            raise SpecError("--set", name, "no cascade of the library reads it (a parameter or a rank size)")
    rows, failed = [], 0
    for cascade in cascades:
        try:
            analysis = bound(cascade, spec, _sets_of(cascade, spec, sets), sets_source="--set")[1]
            rows.append(cascade_row(analysis, cascade.description))
        except SpecError as exc:  # a workload that does not fit a cascade is a row, not a crash
            rows.append({"cascade": cascade.name, "description": cascade.description, "reason": exc.reason})
            failed += 1
    title = "archsim cascade library" + (f" at workload {workload}" if workload else " (default params)")
    index = write_cascade_report(rows, out, title)
    at = f"at {workload}" if workload else "at their default params"
    counted = (f"{len(rows) - failed} of {len(rows)} cascades analysed ({failed} refused {at}, as archsim analyze "
               "refuses them; their reasons in cascades.csv)" if failed else f"{len(rows)} cascades analysed")
    click.echo(f"{counted}; report written to {index}")


def _sets_of(cascade: Cascade, workload: Workload | None, sets: dict[str, float]) -> dict[str, float]:
    """The `--set` values `archsim analyze CASCADE` would take: a parameter or rank size of the cascade's, and a
    model size (`archsim.workload.PARAMS`) it reads or checks (`unread_sets`: a GQA `kv_heads`, a `window` or
    `kv_lora_rank` that its attention form refuses), not one it would call unread (`ffn_dim` on attention)."""
    from archsim.point import unread_sets

    return {name: value for name, value in sets.items()
            if (name in cascade.params or name in cascade.rank_sizes or name in PARAMS)
            and not unread_sets(cascade, workload, [name])}


def _report_run(mapping: str, cascade: str | None, arch: str | None, workload: str | None,
                sets: tuple[str, ...], use_event: bool, out: Path) -> None:
    from archsim.commands.run import noting_test_sizes
    from archsim.point import simulate_point
    from archsim.report import labelled
    from archsim.report.point import write_point_report

    timeline = None
    with noting_test_sizes(mapping, workload, sets):  # at the cascade's test sizes, say so, as run does
        if use_event:
            prepared, run = simulate_point(mapping, cascade=cascade, arch=arch, workload=workload,
                                           sets=parse_sets(sets), sets_source="--set")
            point, timeline = labelled.labelled(prepared, run.result), run.timeline
        else:
            point = labelled.from_run(mapping, cascade=cascade, arch=arch, workload=workload, sets=parse_sets(sets),
                                      sets_source="--set")
    result = point.result
    title = (f"{result.mapping}: {result.cascade} on {result.architecture}"
             + (f", workload {workload}" if workload else "") + "".join(f", {s}" for s in sets))
    show_result(result)
    index = write_point_report([point], out, title, timeline=timeline)
    click.echo(f"\nreport written to {index}")


def _report_reproduction(model: str, seq_len: int, out: Path) -> None:
    from archsim.report import labelled, tables
    from archsim.report.point import write_point_report
    from archsim.systems import fusemax

    try:
        points = labelled.fusemax_configs(model, seq_len)
    except SpecError as error:
        if error.source != fusemax.SOURCE:
            raise
        raise SpecError("--seq-len", str(seq_len), error.message) from None
    paper = tables.paper_rows(fusemax.compare(fusemax.attention_records()))
    for p in points:
        click.echo(f"{p.label:<8} {p.result.mapping:<16} latency {p.result.latency_s:.4g} s, energy "
                   f"{p.result.energy_pj:.4g} pJ, DRAM traffic {p.result.dram_traffic_bytes:.4g} B")
    index = write_point_report(points, out, f"FuseMax configurations at {model}, {seq_len} tokens", paper)
    click.echo(f"{len(paper)} (point, metric) pairs compared with the paper\nreport written to {index}")


def _report_neupims(out: Path) -> None:
    from archsim.report.neupims import mode_timelines, write_neupims_report
    from archsim.systems import neupims_reproduce

    records = neupims_reproduce.reproduce()
    index = write_neupims_report(records, out, mode_timelines(), neupims_reproduce.PAPER,
                                 neupims_reproduce.attribution(), neupims_reproduce.ablation())
    click.echo(f"{len(records)} NeuPIMs points (mode x model x dataset x batch)\nreport written to {index}")


def _report_duplex(out: Path) -> None:
    from archsim.report.duplex import write_duplex_report
    from archsim.systems import duplex_reproduce

    records, summary, qps = duplex_reproduce.run_all()
    index = write_duplex_report(records, summary, qps, out)
    click.echo(f"{len(records)} Duplex points and {len(qps)} QPS points\nreport written to {index}")


def _report_lamina(out: Path) -> None:
    from archsim.report.lamina import write_lamina_report
    from archsim.systems import lamina_reproduce

    records, bw_rows, cross, summary = lamina_reproduce.run_all()
    index = write_lamina_report(records, bw_rows, cross, summary, lamina_reproduce.pipeline_runs(), out)
    click.echo(f"{len(records)} Lamina points and {len(bw_rows)} BW_min points\nreport written to {index}")


def _report_seqpar(out: Path) -> None:
    from archsim.report.seqpar import write_seqpar_report
    from archsim.systems import seqpar_reproduce

    data = seqpar_reproduce.run_all()
    index = write_seqpar_report(data, out)
    click.echo(f"{len(data['points'])} multi-device attention points, Ring Attention Tables 2 and 3, LASP-2 and "
               f"DistAttention\nreport written to {index}")


def _report_sparse(out: Path) -> None:
    from archsim.report.sparse import write_sparse_report
    from archsim.systems import sparse_reproduce

    data = sparse_reproduce.run_all()
    index = write_sparse_report(data, out)
    click.echo(f"{len(data['points'])} sparse prefill and KV-selection points\nreport written to {index}")


def _report_sweep(db: Path, spec_name: str | None, objectives: tuple[str, ...] | None, out: Path) -> None:
    from archsim.dse.spec import STORED_METRICS, load_sweep_spec
    from archsim.dse.store import read_store_meta
    from archsim.dse.sweep import read_judged, require_points, stored_serving, unfinished
    from archsim.report.sweep import (
        axis_columns,
        counts,
        default_objectives,
        front_work,
        fronts_text,
        keyed_points,
        reported_axes,
        same_values,
        same_values_text,
        serving_text,
        spec_keys,
        spec_records,
    )
    from archsim.report.sweep_page import write_sweep_report

    spec = load_sweep_spec(spec_name) if spec_name else None
    # by the last sweep's constraints, or by the spec's (`spec_records`); a spec of another base than the store's
    # is refused as its sweep into the store would be
    df, _, last_objectives, stored_name = read_judged(db, spec)
    require_points(db, df)
    note, same = "", []
    if spec:
        drawn = keyed_points(spec)
        keys = spec_keys(spec, drawn)  # a point several values are is shown under the first, as the store has it
        same = same_values(drawn, list(spec.axes))
        mine = spec_records(spec, df, str(db), keys)
        if len(mine) < len(df):
            click.echo(f"{len(df) - len(mine)} stored points are not points of {spec.name} and are left out",
                       err=True)
        if len(mine) < len(keys):
            note = (f"{len(mine)} of {len(keys)} points stored; run `archsim sweep {spec_name} --db {db}` to "
                    "finish")
            click.echo(f"warning: {note}", err=True)
        df = mine
    else:
        note = unfinished(db, df)
        if note:
            click.echo(f"warning: {note}", err=True)
    if objectives:
        check_objectives(objectives, [c for c in df.columns if c in STORED_METRICS],
                         "--objectives",
                         f"the store {db}")
    objectives = objectives or (spec.objectives if spec else last_objectives or default_objectives(df))
    check_stored_objectives(df, objectives, "--objectives")
    title = f"sweep {spec.name if spec else stored_name or db.stem}"
    n = counts(df, objectives)
    work = front_work(df)  # the axes the fronts are taken per, as `counts` takes them
    click.echo(f"{n['points']} points: {n['feasible']} feasible, {n['infeasible']} infeasible, "
               f"{n['constraint_violated']} break a constraint, {n['on_front']} on the Pareto "
               f"front{'s' if work else ''} of " + " x ".join(objectives) + fronts_text(work))
    if spec:  # a system sweep's serving block: the spec's, else the store's base's (`meta`)
        serving = dataclasses.asdict(spec.serving) if spec.serving else None
    else:
        serving = stored_serving(str(db), read_store_meta(db))
    index = write_sweep_report(df, out, title, objectives, reported_axes(spec.axes, same) if spec else None, note,
                               (serving_text(serving, axis_columns(df)), same_values_text(same)))
    click.echo(f"report written to {index}")

