"""`archsim reproduce neupims`: the NeuPIMs paper's setup (every mode x GPT-3 7B/13B/30B/175B x ShareGPT/Alpaca x
batch 64..512, ten sampled steady-state batches each) through `archsim.systems.neupims`, ours beside the paper's
claims (../shared/reference/pim.md §1.1, §1.6)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from archsim.systems import neupims_reproduce

# Why ours differ from the paper where they do (the reasons of the xfail tests in tests/test_neupims.py).
DIFFERENCES = (
    "Alpaca's steady-state contexts (~80 tokens) make a PIM GEMV GWRITE- and partial-tile bound, hardly faster than "
    "streaming the request's KV at 1.02 TB/s, so PIM gains little on Alpaca.",
    "Sub-batch interleaving re-streams every weight per sub-batch; sub-batches below the arrays' 256-token ridge "
    "are weight-bandwidth bound, so SBI loses at batch 256 and pays off from 384 or 512 depending on the model "
    "(the paper: from 256).",
)


def reproduce_neupims(as_json: bool, out: str | None) -> None:
    records = neupims_reproduce.reproduce()
    headline = neupims_reproduce.compare(records)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(records).to_csv(Path(out) / "points.csv", index=False)
        pd.DataFrame(headline).to_csv(Path(out) / "headline.csv", index=False)
    if as_json:
        click.echo(json.dumps({"points": records, "headline": headline}, indent=2))
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
    click.echo("\nWhere ours differ, the modelling choice that explains it:")
    for reason in DIFFERENCES:
        click.echo(f"  - {reason}")
    if out:
        click.echo(f"records written to {out}/points.csv, {out}/headline.csv")
