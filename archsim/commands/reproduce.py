"""`archsim reproduce PAPER`: a paper's setup run through archsim's models, ours beside the paper's."""

from __future__ import annotations

import importlib
import json

import click

from archsim.commands.options import nan_as_null, nonempty
from archsim.outputs import check_writable

# paper -> (module, function(as_json, out[, as_artifact])), imported when run; the papers of ARTIFACTS take
# as_artifact (their artifacts' own computation is modelled)
REPRODUCERS = {"fusemax": (__name__, "reproduce_fusemax"),
               "neupims": ("archsim.commands.neupims_cmd", "reproduce_neupims"),
               "duplex": ("archsim.commands.duplex_cmd", "reproduce_duplex"),
               "lamina": ("archsim.commands.lamina_cmd", "reproduce_lamina"),
               "seqpar": ("archsim.commands.seqpar_cmd", "reproduce_seqpar"),
               "sparse": ("archsim.commands.sparse_cmd", "reproduce_sparse")}
ARTIFACTS = ("fusemax", "neupims", "duplex")


@click.command("reproduce")
@click.argument("paper", type=click.Choice(list(REPRODUCERS)))
@click.option("--json", "as_json", is_flag=True,
              help='Print the records as JSON: fusemax {"attention", "end2end", "pareto", "headline"}, neupims '
                   '{"points", "headline", "attribution", "ablation"}, duplex {"points", "headline", "qps"}, '
                   'lamina {"points", "bw_min", "cross_check", "headline"}, seqpar {"points", "table2", "table3", '
                   '"distattention", "lasp2", "lasp2_table2", "headline"}, sparse {"points", "minference", '
                   '"held_clock", "density", "quest_fraction", "duo_up_to", "index_building", "longest_prefill", '
                   '"headline"}.')
@click.option("--out", type=click.Path(file_okay=False), callback=nonempty,
              help="Also write the comparisons as CSV here (fusemax: with pareto.png, Fig. 12's area/latency "
                   "design space, and end2end.png, the linear layers ours vs the artifact's, drawn from them).")
@click.option("--as-artifact", "as_artifact", is_flag=True,
              help="reproduce the artifact's own computation (named compatibility options: fusemax's and neupims' "
                   "defects and timings, duplex's GPU at its roofline as its simulator) instead of the physical "
                   "default")
def reproduce_cmd(paper: str, as_json: bool, out: str | None, as_artifact: bool) -> None:
    """Run a paper's setup and print ours beside the paper's, with the error per metric.

    Examples:

    \b
      archsim reproduce fusemax --out reports/fusemax
      archsim reproduce fusemax --as-artifact
      archsim reproduce neupims --json
      archsim reproduce duplex
      archsim reproduce duplex --as-artifact
      archsim reproduce lamina --out reports/lamina
      archsim reproduce seqpar --json
      archsim reproduce sparse
    """
    if as_artifact and paper not in ARTIFACTS:
        raise click.UsageError(f"--as-artifact applies to {', '.join(ARTIFACTS)} (their artifacts); {paper} has "
                               "none modelled")
    if out:
        check_writable(out, "--out", directory=True)
    module, function = REPRODUCERS[paper]
    artifact = {"as_artifact": as_artifact} if paper in ARTIFACTS else {}
    getattr(importlib.import_module(module), function)(as_json, out, **artifact)


def reproduce_fusemax(as_json: bool, out: str | None, as_artifact: bool) -> None:
    """Run FuseMax's reproduction (attention, end to end, the Pareto study) and print it; with `out`, also write
    its tables there, with pareto.png and end2end.png drawn from them (`archsim.report.fusemax`), as one folder.
    `as_artifact`: with the artifact's defects (`fusemax.attention_records`)."""
    import pandas as pd

    from archsim.dse import fusemax_pareto
    from archsim.systems import fusemax, fusemax_linear

    attention = fusemax.attention_records(as_artifact=as_artifact)
    linear = fusemax_linear.end2end_records()
    pareto = fusemax_pareto.pareto_records()
    headline = {"attention": fusemax.headline(attention),
                "end2end": fusemax_linear.end2end_headline(attention, linear)}
    tables = {"attention": fusemax.compare(attention), "end2end": fusemax_linear.compare_end2end(linear),
              "pareto": pd.DataFrame(pareto)}
    if out:
        from archsim.outputs import atomic_dir
        from archsim.report.fusemax import write_reproduction

        with atomic_dir(out) as stage:
            write_reproduction(stage, tables)
    if as_json:  # ours beside the artifact's, with the error per metric (the tables), and the paper's headline
        compared = {name: [nan_as_null(r) for r in tables[name].to_dict("records")]
                    for name in ("attention", "end2end")}
        headline = {name: {**h, "paper": fusemax.PAPER_HEADLINE[name]} for name, h in headline.items()}
        click.echo(json.dumps({**compared, "pareto": pareto, "headline": headline}, indent=2))
        return
    defects = ", ".join(f"{c}: {' + '.join(d)}" for c, d in fusemax.ARTIFACT_DEFECTS.items())
    click.echo("Attention (one layer, batch 64): ours (paper, error); "
               + (f"as the artifact computed ({defects})" if as_artifact else
                  f"physical default (--as-artifact adds the artifact's defects: {defects})"))
    _show_comparison(tables["attention"], ("latency_s", "traffic_bytes", "util_2d", "energy_pj"))
    click.echo("\nLinear layers of one layer (Q, K, V, Z projections, FFN; GELU free as in the artifact)")
    _show_comparison(tables["end2end"], ("latency_s", "traffic_bytes", "energy_pj"))
    for name, table, metrics in (("attention", tables["attention"], fusemax.METRICS),
                                 ("linear layers", tables["end2end"], fusemax_linear.METRICS)):
        known = table.dropna(subset=["latency_s_paper"])
        click.echo(f"\n{name}: error over the {len(known)} points with a paper value (max |err|): "
                   + ", ".join(f"{m} {known[f'{m}_err'].abs().max():.3g}" for m in metrics))
    known = tables["attention"].dropna(subset=["energy_pj_paper"])
    click.echo("attention energy, max |err| per configuration: " + ", ".join(
        f"{config} {rows.energy_pj_err.abs().max():.2%}" for config, rows in known.groupby("config", sort=False)))
    for name, paper in fusemax.PAPER_HEADLINE.items():
        h, paper_speedup, paper_energy = headline[name], paper["speedup_vs_flat"], paper["energy_vs_flat"]
        click.echo(f"FuseMax vs FLAT, {name}, mean over {h['points']} points: speedup {h['speedup_vs_flat']:.3f}x "
                   f"(paper {paper_speedup}x), energy ratio {h['energy_vs_flat']:.3f} (paper {paper_energy})")
    _show_pareto(pareto)
    if out:
        click.echo(f"comparisons written to {out}/{{attention,end2end,pareto}}.csv, figures to "
                   f"{out}/{{pareto,end2end}}.png")


def _vs(ours: float, paper: float, err: float, absolute: bool) -> str:
    if absolute:
        return f"{ours:.3f}" + ("" if paper != paper else f" ({paper:.3f})")
    # rounded first, so an error of -1e-17 (a sum in another order: Python 3.12's compensated sum) prints +0.00%
    return f"{ours:.4g}" + ("" if paper != paper else f" ({paper:.4g} {round(err, 4) + 0.0:+.2%})")


def _show_comparison(table, metrics: tuple[str, ...]) -> None:
    click.echo(f"{'config':<8} {'model':<5} {'seq_len':<8} "
               + " ".join(f"{m + (' (paper)' if m.startswith('util') else ' (paper, err)'):<34}" for m in metrics))
    for row in table.itertuples():
        cells = [_vs(getattr(row, m), getattr(row, f"{m}_paper"), getattr(row, f"{m}_err"), m.startswith("util"))
                 for m in metrics]
        click.echo(f"{row.config:<8} {row.model:<5} {row.seq_len:<8} " + " ".join(f"{c:<34}" for c in cells))


def _show_pareto(records: list[dict]) -> None:
    """Fig. 12: per model, the smallest compute-bound design of each PE dimension."""
    import pandas as pd

    df = pd.DataFrame(records)
    click.echo(f"\nArea/latency design space at {df.seq_len.iloc[0]} tokens (Fig. 12), the compute-bound buffer of "
               "each PE dimension (all points: --json or --out):")
    last = df.groupby(["model", "pe_dim"]).last().reset_index()
    click.echo(f"{'model':<5} {'pe_dim':>6} {'buffer_B':>10} {'area_mm2':>9} {'latency_s':>10}  front")
    for row in last.itertuples():
        click.echo(f"{row.model:<5} {row.pe_dim:>6} {row.buffer_bytes:>10} {row.area_um2 / 1e6:>9.1f} "
                   f"{row.latency_s:>10.4g}  {'yes' if row.on_front else ''}")
