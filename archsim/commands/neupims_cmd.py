"""`archsim reproduce neupims`: the NeuPIMs paper's setup (every mode x GPT-3 7B/13B/30B/175B x ShareGPT/Alpaca x
batch 64..512, ten sampled steady-state batches each) through `archsim.systems.neupims`, ours beside the paper's
claims (../shared/reference/pim.md §1.1, §1.6). With `as_artifact`, the artifact's own computation
(`neupims_reproduce.ARTIFACT_OPTIONS`) beside the default, with each option's share of the move and the reasons of
the gaps left; the JSON keeps its keys and carries the artifact's numbers."""

from __future__ import annotations

import json

import click
import pandas as pd

from archsim.commands.options import nan_as_null, write_tables
from archsim.systems import neupims_reproduce


def reproduce_neupims(as_json: bool, out: str | None, as_artifact: bool) -> None:
    """Run the reproduction and print it; with `out`, also write its tables there as CSV, each atomically
    (`reproduce_cmd` checked the folder before the work). `as_artifact`: points and headline are the artifact
    mode's, attribution the default, the artifact mode and the artifact mode without each option
    (`artifact_attribution`); the ablation stays the default model's."""
    records = neupims_reproduce.reproduce(as_artifact=as_artifact)
    headline = neupims_reproduce.compare(records)
    attribution = (neupims_reproduce.artifact_attribution() if as_artifact else neupims_reproduce.attribution())
    ablation = neupims_reproduce.ablation()
    if out:
        write_tables(out, {"points": records, "headline": headline, "attribution": attribution,
                           "ablation": ablation})
    if as_json:
        click.echo(json.dumps({"points": [nan_as_null(r) for r in records],
                               "headline": [nan_as_null(r) for r in headline],
                               "attribution": [nan_as_null(r) for r in attribution], "ablation": ablation}, indent=2))
        return
    if as_artifact:
        _print_artifact(records, attribution)
    else:
        _print_default(records, headline, attribution, ablation)
    if out:
        click.echo(f"records written to {out}/points.csv, {out}/headline.csv, {out}/attribution.csv, "
                   f"{out}/ablation.csv")


def _print_throughput(records: list[dict]) -> None:
    """The throughput table, a point that does not fit marked * (timed all the same, as the paper's protocol
    does), and why each such point does not fit."""
    df = pd.DataFrame(records)
    df["cell"] = [f"{r['throughput_tok_s']:,.0f}" + (" " if r["fits"] else "*") for r in records]
    click.echo("Decode throughput (tokens/s per system) over ten sampled steady-state batches")
    table = df.pivot(index=["model", "dataset", "batch"], columns="mode", values="cell")
    click.echo(table.loc[df.set_index(["model", "dataset", "batch"]).index.unique()].to_string())
    unfit = [r for r in records if not r["fits"]]
    if unfit:
        click.echo("* does not fit, timed as the paper's protocol times it (the headline's 'fitting only' leaves it "
                   "out):")
        for r in unfit:
            click.echo(f"  {r['mode']} {r['model']} {r['dataset']} {r['batch']}: {r['unfit_reason']}")


def _print_artifact(records: list[dict], attribution: list[dict]) -> None:
    """The artifact mode: throughput, default and artifact beside the paper, each option's share, the gaps left."""
    click.echo("As the artifact computes it (named compatibility options):")
    for option in neupims_reproduce.ARTIFACT_OPTIONS:
        click.echo(f"  {option.name}: {option.choice}")
    _print_throughput(records)
    click.echo("\nDefault and artifact beside the paper (ratios: geometric mean over models x datasets x batches; "
               "utilization: GPT3-30B, batch 256, ShareGPT); the artifact's tolerance: 15 % ratios, 25 % utilization")
    ours = {(r["variant"], r["metric"]): r["ours"] for r in attribution}
    for metric, paper in neupims_reproduce.PAPER.items():
        default, artifact = ours[(neupims_reproduce.DEFAULT, metric)], ours[(neupims_reproduce.ARTIFACT, metric)]
        click.echo(f"  {metric:<24} default {default:.3f}   artifact {artifact:.3f}   paper {paper:.3f}   "
                   f"artifact/paper {artifact / paper:.2f}")
    click.echo("\nThe artifact mode with one option left out (a column each):")
    table = pd.DataFrame(attribution).pivot_table(index="metric", columns="variant", values="ours", sort=False)
    table.columns = [c.replace(f"{neupims_reproduce.ARTIFACT} without ", "w/o ") for c in table.columns]
    click.echo(table.to_string(float_format=lambda v: f"{v:.3f}"))
    click.echo("\nWhat moves each metric from the default to the artifact's (the options whose leaving out moves it "
               "back most):")
    for line in neupims_reproduce.explain_artifact(attribution):
        click.echo(f"  - {line}")
    click.echo("\nGaps the artifact mode leaves, and why:")
    for metric, why in neupims_reproduce.artifact_gaps(attribution).items():
        click.echo(f"  - {metric}: {why}")


def _print_default(records: list[dict], headline: list[dict], attribution: list[dict], ablation: list[dict]) -> None:
    _print_throughput(records)
    click.echo("\nOurs vs the paper (ratios: geometric mean over models x datasets x batches; utilization: "
               "GPT3-30B, batch 256, ShareGPT; fitting only: over the points that fit, * above)")
    for row in headline:
        click.echo(f"  {row['metric']:<24} ours {row['ours']:.3f}   paper {row['paper']:.3f}   "
                   f"ours/paper {row['ratio']:.2f}   fitting only {row['ours_fitting']:.3f}")
    model, dataset = neupims_reproduce.ABLATION_CASE
    click.echo(f"\nAblation (Fig. 13, {model} {dataset}): throughput with the mechanism / without it, the rest of "
               "the design (SBI at every batch, dual row buffers, greedy channels) kept; the last column adds a "
               "second row buffer to naive NPU+PIM instead")
    gains = pd.DataFrame(ablation).pivot_table(index="batch", columns="mechanism", values="gain", sort=False)
    click.echo(gains.to_string(float_format=lambda v: f"{v:.3f}"))
    for mechanism in neupims_reproduce.ablation_pairs():
        paper = neupims_reproduce.ABLATION_PAPER.get(mechanism)
        click.echo(f"  {mechanism:<26} geometric mean {neupims_reproduce.average_gain(ablation, mechanism):.3f}"
                   + (f"   paper {paper:.3f}" if paper else ""))
    click.echo("\nOurs/paper when the reproduction is rerun under another modelling choice (a column each):")
    for variant in neupims_reproduce.VARIANTS:
        click.echo(f"  {variant.name}: {variant.choice}")
    ratios = pd.DataFrame(attribution).pivot_table(index="metric", columns="variant", values="ratio", sort=False)
    click.echo(ratios.to_string(float_format=lambda v: f"{v:.2f}"))
    click.echo(f"\nWhere ours differ by more than {neupims_reproduce.HEADLINE_TOLERANCE:.0%}, the modelling choice "
               "that moves it furthest toward the paper:")
    for line in neupims_reproduce.explain(attribution, neupims_reproduce.HEADLINE_TOLERANCE):
        click.echo(f"  - {line}")
