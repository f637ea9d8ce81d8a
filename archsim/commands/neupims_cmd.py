"""`archsim reproduce neupims`: the NeuPIMs paper's setup (every mode x GPT-3 7B/13B/30B/175B x ShareGPT/Alpaca x
batch 64..512, ten sampled steady-state batches each) through `archsim.systems.neupims`, ours beside the paper's
claims (../shared/reference/pim.md §1.1, §1.6)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from archsim.outputs import atomic_file, check_writable
from archsim.systems import neupims_reproduce


def reproduce_neupims(as_json: bool, out: str | None) -> None:
    """Run the reproduction and print it; with `out`, also write its tables there as CSV, each atomically (the
    folder is checked before the work)."""
    if out:
        check_writable(out, "--out", directory=True)
    records = neupims_reproduce.reproduce()
    headline = neupims_reproduce.compare(records)
    attribution = neupims_reproduce.attribution()
    ablation = neupims_reproduce.ablation()
    if out:
        tables = {"points": records, "headline": headline, "attribution": attribution, "ablation": ablation}
        for name, table in tables.items():
            with atomic_file(Path(out) / f"{name}.csv") as tmp:
                pd.DataFrame(table).to_csv(tmp, index=False)
    if as_json:
        click.echo(json.dumps({"points": records, "headline": headline, "attribution": attribution,
                               "ablation": ablation}, indent=2))
        return
    df = pd.DataFrame(records)
    click.echo("Decode throughput (tokens/s per system) over ten sampled steady-state batches")
    table = df.pivot_table(index=["model", "dataset", "batch"], columns="mode", values="throughput_tok_s",
                           sort=False)
    click.echo(table.to_string(float_format=lambda v: f"{v:,.0f}"))
    click.echo("\nOurs vs the paper (ratios: geometric mean over models x datasets x batches; utilization: "
               "GPT3-30B, batch 256, ShareGPT)")
    for row in headline:
        click.echo(f"  {row['metric']:<24} ours {row['ours']:.3f}   paper {row['paper']:.3f}   "
                   f"ours/paper {row['ratio']:.2f}")
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
    if out:
        click.echo(f"records written to {out}/points.csv, {out}/headline.csv, {out}/attribution.csv, "
                   f"{out}/ablation.csv")
