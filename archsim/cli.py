"""The `archsim` command line: one verb per job. Exit codes: 0 ok, 1 evaluation error, 2 bad input.

All printing happens here; the engine returns values.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np
import pandas as pd

from archsim import library
from archsim.cascade.analysis import Analysis, analyze
from archsim.cascade.bind import Binding, bind
from archsim.cascade.interpret import execute as run_cascade
from archsim.cascade.interpret import random_inputs
from archsim.cascade.references import REFERENCES
from archsim.commands.gpu import calibrate_cmd, gpu_roofline_cmd, validate_cmd
from archsim.commands.measure import measure
from archsim.commands.neupims_cmd import reproduce_neupims
from archsim.commands.simulate import simulate_cmd
from archsim.commands.sweep import objectives_option, results_cmd, sweep_cmd
from archsim.errors import SpecError
from archsim.model.result import Result
from archsim.point import run_point, simulate_point
from archsim.report import labelled, tables
from archsim.report.cascades import cascade_row, write_cascade_report
from archsim.systems import fusemax, fusemax_linear, fusemax_pareto

CHECK_TOLERANCE = 1e-5  # max abs error vs the reference, float64


class _Group(click.Group):
    """Turns every SpecError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SpecError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
def main() -> None:
    """archsim: attention as cascades of Einsums, mapped onto architectures and evaluated."""


def _parse_sets(values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise SpecError("--set", item, "expected NAME=NUMBER, e.g. --set seq_len=4096 or --set M0=256")
    return out


def _bind(cascade_name: str, workload: str | None, sets: tuple[str, ...]) -> Binding:
    cascade = library.load_cascade_spec(cascade_name)
    params = library.load_workload_spec(workload).params if workload else {}
    return bind(cascade, params, _parse_sets(sets), source="--set")


_SET = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                    help="Override a parameter or a rank size (repeatable).")
_WORKLOAD = click.option("--workload", "-w", metavar="W", help="Workload name or YAML path binding the params.")


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print {kind: [names]} as JSON.")
def list_cmd(as_json: bool) -> None:
    """List the library: cascades, architectures, mappings, workloads.

    Example: archsim list --json
    """
    contents = {kind: library.names(kind) for kind in library.PACKAGES}
    if as_json:
        click.echo(json.dumps(contents, indent=2))
        return
    for kind, names in contents.items():
        click.echo(f"{kind} ({len(names)}): {', '.join(names) if names else '-'}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
def check(files: tuple[str, ...]) -> None:
    """Validate spec files (cascades, workloads); exit 2 if any is bad.

    Example: archsim check einsum/*.yaml workloads/*.yaml
    """
    bad = 0
    for path in files:
        try:
            kind, spec = library.load_any(path)
        except SpecError as exc:
            click.echo(f"error: {exc}", err=True)
            bad += 1
            continue
        if kind == "cascade":
            analysis = analyze(bind(spec))
            passes = ", ".join(f"{r}={n}" for r, n in analysis.passes.passes.items() if n > 1) or "1 everywhere"
            click.echo(f"ok  {path}: cascade {spec.name}, {len(spec.einsums)} Einsums, passes {passes}")
        else:
            click.echo(f"ok  {path}: workload {spec.name}, {len(spec.params)} params")
    if bad:
        sys.exit(2)


def _show_analysis(analysis: Analysis) -> None:
    click.echo(f"cascade {analysis.cascade}")
    click.echo("ranks   " + " ".join(f"{r}={n}" for r, n in analysis.rank_sizes.items()))
    click.echo("\nEinsum       points            ops")
    for name, ops in analysis.ops.items():
        shown = ", ".join(f"{op} {n:.4g}" for op, n in ops.items()) or "-"
        click.echo(f"  {name:<10} {analysis.points[name]:<17.6g} {shown}")
    click.echo("  total        " + ", ".join(f"{op} {n:.4g}" for op, n in sorted(analysis.total_ops().items())))
    click.echo("\ntensor       kind          shape                         bytes")
    for t in analysis.tensors:
        shape = "[" + ", ".join(f"{r}={n}" for r, n in zip(t.ranks, t.shape, strict=True)) + "]"
        click.echo(f"  {t.name:<10} {t.kind:<13} {shape:<29} {t.bytes:.4g}")
    click.echo("\npasses  " + " ".join(f"{r}={n}" for r, n in analysis.passes.passes.items()))
    for boundary in analysis.passes.boundaries:
        click.echo("  " + boundary.explain())


@main.command("analyze")
@click.argument("cascade")
@_WORKLOAD
@_SET
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON (see README for the schema).")
def analyze_cmd(cascade: str, workload: str | None, sets: tuple[str, ...], as_json: bool) -> None:
    """Shapes, bytes, operation counts and passes of a cascade.

    Example: archsim analyze attention-1pass --workload llama3-8b --set M0=256 --json
    """
    analysis = analyze(_bind(cascade, workload, sets))
    if as_json:
        click.echo(json.dumps(analysis.to_dict(), indent=2))
    else:
        _show_analysis(analysis)


def _show_result(result: Result) -> None:
    click.echo(f"{result.mapping}: {result.cascade} on {result.architecture}"
               + ("" if result.feasible else f"  INFEASIBLE: {result.reason}"))
    click.echo(f"  latency   {result.latency_s:.6g} s (compute {result.compute_cycles:.6g} cycles; memory "
               + ", ".join(f"{lv} {s:.4g} s" for lv, s in result.memory_s.items()) + ")")
    click.echo(f"  traffic   {result.dram_traffic_bytes():.6g} B across DRAM")
    click.echo(f"  energy    {result.energy_pj:.6g} pJ")
    click.echo("  util      " + ", ".join(f"{u} {v:.4f}" for u, v in result.utilization.items()))
    click.echo("  footprint " + ", ".join(f"{lv} {b:.6g} B" for lv, b in result.footprint_bytes.items()))
    if result.stalls:
        click.echo("  stalls    " + ", ".join(f"{src} {s:.4g} s" for src, s in
                                             sorted(result.stalls.items(), key=lambda kv: -kv[1])))
    click.echo("\n  Einsum     unit       lanes   cycles        energy_pj")
    for e in result.einsums:
        click.echo(f"  {e.name:<10} {e.unit:<10} {e.lanes_used:<7} {e.compute_cycles:<13.6g} {e.energy_pj:.4g}")


@main.command("run")
@click.option("--mapping", "-m", required=True, metavar="M", help="Mapping name or YAML path.")
@click.option("--cascade", "-c", metavar="C", help="Cascade (default: the mapping's).")
@click.option("--arch", "-a", metavar="A", help="Architecture (default: the mapping's).")
@_WORKLOAD
@_SET
@click.option("--json", "as_json", is_flag=True, help="Print the Result as JSON.")
@click.option("--model", "model_kind", type=click.Choice(["analytical", "event"]), default="analytical",
              show_default=True, help="The analytical model, or the event-driven (SimPy) one with stall sources.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="[--model event] Write the timeline as Chrome/Perfetto trace JSON here.")
def run_cmd(mapping: str, cascade: str | None, arch: str | None, workload: str | None, sets: tuple[str, ...],
            as_json: bool, model_kind: str, trace_path: str | None) -> None:
    """Evaluate one design point with the analytical model (or the event-driven one).

    Examples:

    \b
      archsim run --mapping fusemax --workload bert-base --set seq_len=65536
      archsim run --mapping flat --workload bert-base --model event --trace flat.json
    """
    if trace_path and model_kind != "event":
        raise click.UsageError("--trace needs --model event (the analytical model has no timeline)")
    if model_kind == "event":
        from archsim.model.trace import write_chrome_trace

        _, run = simulate_point(mapping, cascade=cascade, arch=arch, workload=workload, sets=_parse_sets(sets))
        result = run.result
        if trace_path:
            write_chrome_trace(run.timeline, trace_path)
    else:
        result = run_point(mapping, cascade=cascade, arch=arch, workload=workload, sets=_parse_sets(sets))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _show_result(result)


def _vs(ours: float, paper: float, err: float, absolute: bool) -> str:
    if absolute:
        return f"{ours:.3f}" + ("" if np.isnan(paper) else f" ({paper:.3f})")
    return f"{ours:.4g}" + ("" if np.isnan(paper) else f" ({paper:.4g} {err:+.2%})")


@main.command("reproduce")
@click.argument("paper", type=click.Choice(["fusemax", "neupims"]))
@click.option("--json", "as_json", is_flag=True,
              help='Print the records as JSON: fusemax {"attention", "end2end", "pareto", "headline"}, neupims '
                   '{"points", "headline"}.')
@click.option("--out", type=click.Path(file_okay=False), help="Also write the comparisons as CSV here.")
def reproduce(paper: str, as_json: bool, out: str | None) -> None:
    """Run a paper's setup and print ours beside the paper's, with the error per metric.

    Examples:

    \b
      archsim reproduce fusemax --out reports/fusemax
      archsim reproduce neupims --json
    """
    if paper == "neupims":
        reproduce_neupims(as_json, out)
        return
    attention = fusemax.attention_records()
    linear = fusemax_linear.end2end_records()
    pareto = fusemax_pareto.pareto_records()
    headline = {"attention": fusemax.headline(attention),
                "end2end": fusemax_linear.end2end_headline(attention, linear)}
    tables = {"attention": fusemax.compare(attention), "end2end": fusemax_linear.compare_end2end(linear),
              "pareto": pd.DataFrame(pareto)}
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            table.to_csv(Path(out) / f"{name}.csv", index=False)
    if as_json:
        click.echo(json.dumps({"attention": attention, "end2end": linear, "pareto": pareto, "headline": headline},
                              indent=2))
        return
    click.echo("Attention (one layer, batch 64): ours (paper, error)")
    _show_comparison(tables["attention"], ("latency_s", "traffic_bytes", "util_2d", "energy_pj"))
    click.echo("\nLinear layers of one layer (Q, K, V, Z projections, FFN; GELU free as in the artifact)")
    _show_comparison(tables["end2end"], ("latency_s", "traffic_bytes", "energy_pj"))
    for name, table, metrics in (("attention", tables["attention"], fusemax.METRICS),
                                 ("linear layers", tables["end2end"], fusemax_linear.METRICS)):
        known = table.dropna(subset=["latency_s_paper"])
        click.echo(f"\n{name}: error over the {len(known)} points with a paper value (max |err|): "
                   + ", ".join(f"{m} {known[f'{m}_err'].abs().max():.3g}" for m in metrics))
    for name, paper_speedup, paper_energy in (("attention", 6.72, 0.787), ("end2end", 5.30, 0.833)):
        h = headline[name]
        click.echo(f"FuseMax vs FLAT, {name}, mean over {h['points']} points: speedup {h['speedup_vs_flat']:.3f}x "
                   f"(paper {paper_speedup}x), energy ratio {h['energy_vs_flat']:.3f} (paper {paper_energy})")
    _show_pareto(pareto)
    if out:
        click.echo(f"comparisons written to {out}/{{attention,end2end,pareto}}.csv")


def _show_comparison(table: pd.DataFrame, metrics: tuple[str, ...]) -> None:
    click.echo(f"{'config':<8} {'model':<5} {'seq_len':<8} "
               + " ".join(f"{m + (' (paper)' if m.startswith('util') else ' (paper, err)'):<34}" for m in metrics))
    for row in table.itertuples():
        cells = [_vs(getattr(row, m), getattr(row, f"{m}_paper"), getattr(row, f"{m}_err"), m.startswith("util"))
                 for m in metrics]
        click.echo(f"{row.config:<8} {row.model:<5} {row.seq_len:<8} " + " ".join(f"{c:<34}" for c in cells))


def _show_pareto(records: list[dict]) -> None:
    """Fig. 12: per model, the smallest compute-bound design of each PE dimension."""
    df = pd.DataFrame(records)
    click.echo(f"\nArea/latency design space at {df.seq_len.iloc[0]} tokens (Fig. 12), the compute-bound buffer of "
               "each PE dimension (all points: --json or --out):")
    last = df.groupby(["model", "pe_dim"]).last().reset_index()
    click.echo(f"{'model':<5} {'pe_dim':>6} {'buffer_B':>10} {'area_mm2':>9} {'latency_s':>10}  front")
    for row in last.itertuples():
        click.echo(f"{row.model:<5} {row.pe_dim:>6} {row.buffer_bytes:>10} {row.area_um2 / 1e6:>9.1f} "
                   f"{row.latency_s:>10.4g}  {'yes' if row.on_front else ''}")


@main.command("execute")
@click.argument("cascade")
@_WORKLOAD
@_SET
@click.option("--seed", default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--check", "check_ref", is_flag=True, help=f"Compare with the reference (max abs error < "
                                                         f"{CHECK_TOLERANCE:g}); exit 1 if it differs.")
def execute_cmd(cascade: str, workload: str | None, sets: tuple[str, ...], seed: int, check_ref: bool) -> None:
    """Run a cascade on seeded random inputs with the numpy interpreter.

    Example: archsim execute attention-1pass-causal --check
    """
    binding = _bind(cascade, workload, sets)
    inputs = random_inputs(binding, seed)
    results = run_cascade(binding, inputs)
    spec = binding.cascade
    for name in spec.outputs:
        value = results[name]
        click.echo(f"{name} shape {value.shape}: mean {value.mean():.6g}, std {value.std():.6g}")
    if not check_ref:
        return
    if spec.reference is None:
        click.echo(f"{spec.name} names no reference; nothing to compare")
        return
    expected = REFERENCES[spec.reference](inputs, binding.params)
    errors = []
    for name, want in expected.items():
        errors.append(float(np.max(np.abs(results[name].reshape(want.shape) - want))))
        click.echo(f"{name} vs reference {spec.reference}: max abs error {errors[-1]:.3g}")
    worst = max(errors)
    if not worst < CHECK_TOLERANCE:  # NaN fails too
        click.echo(f"FAIL: error {worst:.3g} >= {CHECK_TOLERANCE:g}", err=True)
        sys.exit(1)
    click.echo("ok")


_REPORT_MODES = {  # mode -> the options that apply to it
    "--library": {"--workload"},
    "--run": {"--mapping", "--cascade", "--arch", "--workload", "--set", "--event"},
    "--reproduction": {"--model", "--seq-len"},
    "--sweep": {"--spec", "--objectives"},
}


@main.command()
@click.option("--library", "library_report", is_flag=True, help="Report on every cascade of the library.")
@click.option("--run", "run_report", is_flag=True,
              help="Report on one design point: roofline, energy and utilization figures (needs --mapping).")
@click.option("--reproduction", type=click.Choice(["fusemax", "neupims"]),
              help="Report on a paper's configurations at one point, and ours vs the paper's over its sweep.")
@click.option("--sweep", "sweep_db", type=click.Path(dir_okay=False), metavar="DB",
              help="Report on a sweep's results store: Pareto front, sensitivity per axis, latency heatmap.")
@click.option("--spec", metavar="SPEC",
              help="[--sweep] The sweep (library name or YAML path) giving objectives and axis values "
                   "(default objectives: latency_s, energy_pj).")
@objectives_option("--objectives", "[--sweep] Two or three objectives of the Pareto front (default: the spec's).")
@click.option("--mapping", "-m", metavar="M", help="[--run] Mapping name or YAML path.")
@click.option("--cascade", "-c", metavar="C", help="[--run] Cascade (default: the mapping's).")
@click.option("--arch", "-a", metavar="A", help="[--run] Architecture (default: the mapping's).")
@_WORKLOAD
@_SET
@click.option("--event", "use_event", is_flag=True,
              help="[--run] Evaluate with the event model: adds stall sources and trace.json (Chrome/Perfetto).")
@click.option("--model", type=click.Choice(list(fusemax.MODELS)), help="[--reproduction] Model (default BERT).")
@click.option("--seq-len", type=click.IntRange(min=1), help="[--reproduction] Tokens (default 65536).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output directory (default reports/library, reports/MAPPING, reports/PAPER or reports/DB-NAME).")
def report(library_report: bool, run_report: bool, reproduction: str | None, sweep_db: str | None,
           spec: str | None, mapping: str | None, cascade: str | None, arch: str | None, workload: str | None,
           sets: tuple[str, ...], use_event: bool, model: str | None, seq_len: int | None, out: str | None,
           objectives: tuple[str, ...] | None) -> None:
    """Write a report (figures, CSV, index.html) under reports/. Choose exactly one of --library, --run,
    --reproduction, --sweep.

    Examples:

    \b
      archsim report --library --workload bert-base --out reports/demo
      archsim report --run --mapping fusemax --workload bert-base --set seq_len=65536
      archsim report --reproduction fusemax --model BERT --seq-len 65536
      archsim report --sweep reports/demo/demo.sqlite --spec demo --out reports/demo
    """
    modes_on = (library_report, run_report, reproduction is not None, sweep_db is not None)
    chosen = [m for m, on in zip(_REPORT_MODES, modes_on, strict=True) if on]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --library, --run, --reproduction, --sweep"
                               + (f" (got {' and '.join(chosen)})" if chosen else ""))
    mode = chosen[0]
    given = {"--mapping": mapping, "--cascade": cascade, "--arch": arch, "--workload": workload,
             "--set": sets or None, "--model": model, "--seq-len": seq_len, "--spec": spec,
             "--event": use_event or None,
             "--objectives": objectives}
    misplaced = [name for name, value in given.items() if value is not None and name not in _REPORT_MODES[mode]]
    if misplaced:
        raise click.UsageError(f"{', '.join(misplaced)} {'does' if len(misplaced) == 1 else 'do'} not apply to {mode} "
                               f"(it takes {', '.join(sorted(_REPORT_MODES[mode]))})")
    if mode == "--library":
        _report_library(workload, Path(out or "reports/library"))
    elif mode == "--run":
        if mapping is None:
            raise click.UsageError("--run needs --mapping M (e.g. --run --mapping fusemax --workload bert-base)")
        _report_run(mapping, cascade, arch, workload, sets, use_event,
                    Path(out or Path("reports") / Path(mapping).stem))
    elif mode == "--reproduction" and reproduction == "neupims":
        if model or seq_len:
            raise click.UsageError("--model and --seq-len apply to --reproduction fusemax only")
        _report_neupims(Path(out or Path("reports") / reproduction))
    elif mode == "--reproduction":
        _report_reproduction(model or "BERT", seq_len or 65536, Path(out or Path("reports") / reproduction))
    else:
        _report_sweep(Path(sweep_db), spec, objectives, Path(out or Path("reports") / Path(sweep_db).stem))


def _report_library(workload: str | None, out: Path) -> None:
    params = library.load_workload_spec(workload).params if workload else {}
    rows = []
    for name in library.names("cascades"):
        cascade = library.load_cascade_spec(name)
        try:
            rows.append(cascade_row(analyze(bind(cascade, params)), cascade.description))
        except SpecError as exc:  # a workload that does not fit a cascade is a row, not a crash
            rows.append({"cascade": name, "description": f"not analysed: {exc.message}"})
    title = "archsim cascade library" + (f" at workload {workload}" if workload else " (default params)")
    index = write_cascade_report(rows, out, title)
    click.echo(f"{len(rows)} cascades analysed; report written to {index}")


def _report_run(mapping: str, cascade: str | None, arch: str | None, workload: str | None,
                sets: tuple[str, ...], use_event: bool, out: Path) -> None:
    from archsim.report.point import write_point_report  # matplotlib (~0.3 s) loads only for reports that draw

    if use_event:
        from archsim.model.trace import write_chrome_trace

        prepared, run = simulate_point(mapping, cascade=cascade, arch=arch, workload=workload,
                                       sets=_parse_sets(sets))
        point = labelled.labelled(prepared, run.result)
        out.mkdir(parents=True, exist_ok=True)
        write_chrome_trace(run.timeline, out / "trace.json")
    else:
        point = labelled.from_run(mapping, cascade=cascade, arch=arch, workload=workload, sets=_parse_sets(sets))
    result = point.result
    title = (f"{result.mapping}: {result.cascade} on {result.architecture}"
             + (f", workload {workload}" if workload else "") + "".join(f", {s}" for s in sets))
    _show_result(result)
    index = write_point_report([point], out, title)
    click.echo(f"\nreport written to {index}")


def _report_reproduction(model: str, seq_len: int, out: Path) -> None:
    from archsim.report.point import write_point_report  # matplotlib (~0.3 s) loads only for reports that draw

    points = labelled.fusemax_configs(model, seq_len)
    paper = tables.paper_rows(fusemax.compare(fusemax.attention_records()))
    for p in points:
        click.echo(f"{p.label:<8} {p.result.mapping:<16} latency {p.result.latency_s:.4g} s, energy "
                   f"{p.result.energy_pj:.4g} pJ, DRAM traffic {p.result.dram_traffic_bytes():.4g} B")
    index = write_point_report(points, out, f"FuseMax configurations at {model}, {seq_len} tokens", paper)
    click.echo(f"{len(paper)} (point, metric) pairs compared with the paper\nreport written to {index}")


def _report_neupims(out: Path) -> None:
    from archsim.report.neupims import mode_timelines, write_neupims_report
    from archsim.systems import neupims_reproduce

    records = neupims_reproduce.reproduce()
    index = write_neupims_report(records, out, mode_timelines(), neupims_reproduce.PAPER,
                                 neupims_reproduce.attribution(), neupims_reproduce.ablation())
    click.echo(f"{len(records)} NeuPIMs points (mode x model x dataset x batch)\nreport written to {index}")


def _report_sweep(db: Path, spec_name: str | None, objectives: tuple[str, ...] | None, out: Path) -> None:
    from archsim.dse.store import open_store, records
    from archsim.report.sweep import DEFAULT_OBJECTIVES, counts
    from archsim.report.sweep_page import write_sweep_report  # matplotlib loads only for reports that draw

    if not db.is_file():
        raise SpecError(str(db), "", "no such sweep store (run `archsim sweep SPEC --db DB` first)")
    spec = library.load_sweep_spec(spec_name) if spec_name else None
    conn = open_store(db)
    try:
        df = records(conn)
    finally:
        conn.close()
    if df.empty:
        raise SpecError(str(db), "", "the sweep store holds no points")
    objectives = objectives or (spec.objectives if spec else DEFAULT_OBJECTIVES)
    if len(objectives) < 2:
        raise SpecError(spec.source, "objectives", "a sweep report needs two objectives or more")
    title = f"sweep {spec.name}" if spec else f"sweep {db.stem}"
    n = counts(df, objectives)
    click.echo(f"{n['points']} points: {n['feasible']} feasible, {n['infeasible']} infeasible, "
               f"{n['constraint_violated']} break a constraint, {n['on_front']} on the Pareto front of "
               + " x ".join(objectives))
    index = write_sweep_report(df, out, title, objectives, spec.axes if spec else None)
    click.echo(f"report written to {index}")


for command in (measure, calibrate_cmd, validate_cmd, gpu_roofline_cmd, sweep_cmd, results_cmd, simulate_cmd):
    main.add_command(command)
