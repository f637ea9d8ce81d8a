"""`archsim reproduce duplex`: the Duplex paper's closed-loop serving set-up on a small grid
(`archsim.systems.duplex_reproduce`), throughput over the GPU, TBT and energy per token per system, and the
headline beside the paper's (../shared/reference/pim.md §2.1, §2.4) with the modelling reason where they differ."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from archsim.outputs import atomic_file, check_writable
from archsim.systems import duplex_reproduce


def reproduce_duplex(as_json: bool, out: str | None) -> None:
    """Run the reproduction and print it; with `out`, also write points.csv and headline.csv there (the folder is
    checked before the work). `--json`: {"points", "headline", "qps"}; the QPS sweep is not run yet (empty)."""
    if out:
        check_writable(out, "--out", directory=True)
    records = duplex_reproduce.reproduce()
    headline = duplex_reproduce.headline(records)
    if out:
        rows = [{"metric": k, **v} for k, v in headline.items() if isinstance(v, dict)]
        for name, table in (("points", records), ("headline", rows)):
            with atomic_file(Path(out) / f"{name}.csv") as tmp:
                pd.DataFrame(table).to_csv(tmp, index=False)
    if as_json:
        click.echo(json.dumps({"points": records, "headline": headline, "qps": []}, indent=2))
        return
    df = pd.DataFrame(records)
    base = df[df.system == duplex_reproduce.BASELINE].set_index(["model", "lin", "lout", "batch"])
    df = df.join(base["throughput_tok_s"].rename("gpu_tok_s"), on=["model", "lin", "lout", "batch"])
    df["over_gpu"] = df.throughput_tok_s / df.gpu_tok_s
    click.echo(f"Closed-loop serving, Gaussian (L_in, L_out) (std {duplex_reproduce.STD_FRACTION:.0%} of the mean, "
               f"ours), {duplex_reproduce.REQUEST_ROUNDS} x batch requests per point; a small grid of the paper's")
    click.echo(f"{'model':<14} {'L_in':>5} {'L_out':>5} {'batch':>5}  {'system':<13} {'tok/s':>8} {'x GPU':>6} "
               f"{'TBT p50 ms':>10} {'TBT p99 ms':>10} {'E2E s':>7} {'J/token':>8}")
    for r in df.itertuples():
        click.echo(f"{r.model:<14} {r.lin:>5} {r.lout:>5} {r.batch:>5}  {r.system:<13} {r.throughput_tok_s:>8.0f} "
                   f"{r.over_gpu:>6.2f} {r.tbt_p50_s * 1e3:>10.2f} {r.tbt_p99_s * 1e3:>10.2f} {r.e2e_s:>7.2f} "
                   f"{r.energy_j_per_token:>8.3f}")
    click.echo(f"\nHeadline: {headline['system']} over {headline['baseline']}, {headline['points']} points")
    for metric in duplex_reproduce.PAPER:
        h = headline[metric]
        fmt = (lambda v: f"{v:.1%}") if metric == "energy_reduction" else (lambda v: f"{v:.2f}x")
        click.echo(f"  {metric:<17} ours {fmt(h['ours'])}   paper {fmt(h['paper'])}   "
                   + ("within tolerance" if h["within"] else f"outside tolerance: {h['reason']}"))
    click.echo("Not run yet: the QPS sweep, the Bank-PIM comparison and the paper's full grid.")
    if out:
        click.echo(f"records written to {out}/points.csv, {out}/headline.csv")
