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
from archsim.errors import SpecError
from archsim.model.result import Result
from archsim.point import run_point
from archsim.report.cascades import cascade_row, write_cascade_report
from archsim.systems import fusemax, fusemax_pareto

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
def run_cmd(mapping: str, cascade: str | None, arch: str | None, workload: str | None, sets: tuple[str, ...],
            as_json: bool) -> None:
    """Evaluate one design point with the analytical model.

    Example: archsim run --mapping fusemax --workload bert-base --set seq_len=65536
    """
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
@click.argument("paper", type=click.Choice(["fusemax"]))
@click.option("--json", "as_json", is_flag=True,
              help='Print {"attention": [...], "pareto": [...], "headline": {...}} as JSON.')
@click.option("--out", type=click.Path(file_okay=False), help="Also write the comparison as CSV here.")
def reproduce(paper: str, as_json: bool, out: str | None) -> None:
    """Run a paper's setup and print ours beside the paper's, with the error per metric.

    Example: archsim reproduce fusemax --out reports/fusemax
    """
    records = fusemax.attention_records()
    table = fusemax.compare(records)
    pareto = fusemax_pareto.pareto_records()
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(out) / "attention.csv", index=False)
        pd.DataFrame(pareto).to_csv(Path(out) / "pareto.csv", index=False)
    if as_json:
        click.echo(json.dumps({"attention": records, "pareto": pareto, "headline": fusemax.headline(records)},
                              indent=2))
        return
    click.echo(f"{'config':<8} {'model':<5} {'seq_len':<8} {'latency_s (paper, err)':<34} "
               f"{'traffic_B (paper, err)':<34} {'util_2d (paper)':<17} energy_pJ (paper, err)")
    for row in table.itertuples():
        cells = [_vs(getattr(row, m), getattr(row, f"{m}_paper"), getattr(row, f"{m}_err"), m.startswith("util"))
                 for m in ("latency_s", "traffic_bytes", "util_2d", "energy_pj")]
        click.echo(f"{row.config:<8} {row.model:<5} {row.seq_len:<8} {cells[0]:<34} {cells[1]:<34} {cells[2]:<17} "
                   f"{cells[3]}")
    known = table.dropna(subset=["latency_s_paper"])
    click.echo(f"\nerror over the {len(known)} points with a paper value (max |err|): "
               + ", ".join(f"{m} {known[f'{m}_err'].abs().max():.3g}" for m in fusemax.METRICS))
    h = fusemax.headline(records)
    click.echo(f"FuseMax vs FLAT, mean over {h['points']} points: speedup {h['speedup_vs_flat']:.3f}x "
               f"(paper 6.72x), energy ratio {h['energy_vs_flat']:.3f} (paper 0.787)")
    _show_pareto(pareto)
    if out:
        click.echo(f"comparison written to {Path(out) / 'attention.csv'} and {Path(out) / 'pareto.csv'}")


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


@main.command()
@click.option("--library", "library_report", is_flag=True, required=True,
              help="Report on every cascade of the library.")
@_WORKLOAD
@click.option("--out", type=click.Path(file_okay=False), default="reports/library", show_default=True)
def report(library_report: bool, workload: str | None, out: str) -> None:
    """Write a report (CSV + index.html) under reports/.

    Example: archsim report --library --workload bert-base --out reports/demo
    """
    params = library.load_workload_spec(workload).params if workload else {}
    rows = []
    for name in library.names("cascades"):
        cascade = library.load_cascade_spec(name)
        try:
            rows.append(cascade_row(analyze(bind(cascade, params)), cascade.description))
        except SpecError as exc:  # a workload that does not fit a cascade is a row, not a crash
            rows.append({"cascade": name, "description": f"not analysed: {exc.message}"})
    title = "archsim cascade library" + (f" at workload {workload}" if workload else " (default params)")
    index = write_cascade_report(rows, Path(out), title)
    click.echo(f"{len(rows)} cascades analysed; report written to {index}")
