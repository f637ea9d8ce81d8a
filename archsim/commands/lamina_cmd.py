"""`archsim reproduce lamina`: the Lamina paper's equal-cost comparison (`archsim.systems.lamina_reproduce`):
throughput, batch and TBT of attention offloading (DOP (a, b) of H100 + H20) against vLLM-style TP on H100s for
three models x four traces, BW_min curves with the event model's cross-check, the divide-and-conquer saving, and
the headline beside the paper's (../shared/reference/pim.md §3) with the modelling reason where they differ."""

from __future__ import annotations

import json

import click

from archsim.commands.options import write_tables
from archsim.systems import lamina_reproduce as lamina


def reproduce_lamina(as_json: bool, out: str | None) -> None:
    """Run the reproduction and print it; with `out`, also write points.csv, bw_min.csv, headline.csv and
    pipeline_trace.json (a Perfetto trace of the event model's pipeline on the system's schedule,
    `lamina_reproduce.pipeline_trace`: the `lamina` preset's ping-pong) there. `--json`: {"points", "bw_min",
    "cross_check", "headline"}."""
    records, bw_rows, cross, summary = lamina.run_all()
    if out:
        write_tables(out, {"points": records, "bw_min": bw_rows, "headline": lamina.headline_rows(summary)},
                     {"pipeline_trace.json": json.dumps(lamina.pipeline_trace())})
    if as_json:
        click.echo(json.dumps({"points": records, "bw_min": bw_rows, "cross_check": cross, "headline": summary},
                              indent=2))
        return
    click.echo("Decode only (prefill removed), offline: each point's requests all arrive at 0 and the KV cache "
               f"sets the batch (vLLM's at most its default {lamina.VLLM_MAX_NUM_SEQS} sequences); "
               f"{lamina.REQUEST_ROUNDS} x Lamina's batch requests, at least {lamina.MIN_REQUESTS}, less those a "
               "system's KV cache cannot hold (every system serves the same requests); metrics over the steady "
               "window")
    click.echo(f"{'model':<11} {'trace':<11} {'system':<18} {'$/h':>6} {'tok/s':>8} {'tok/$':>8} {'batch':>6} "
               f"{'TBT p50 ms':>10} {'TBT p99 ms':>10}")
    for r in records:
        click.echo(f"{r['model']:<11} {r['trace']:<11} {r['system']:<18} {r['cost_per_h']:>6.2f} "
                   f"{r['throughput_tok_s']:>8.0f} {r['tokens_per_usd']:>8.0f} {r['batch']:>6.0f} "
                   f"{r['tbt_p50_s'] * 1e3:>10.2f} {r['tbt_p99_s'] * 1e3:>10.2f}")
    low, high = summary["throughput_gain"]["paper"]
    click.echo(f"\nThroughput of {lamina.SYSTEM} over {lamina.BASELINE} at similar cost ({_prices(records)}; "
               f"paper: +{low:.1%} to +{high:.1%}) and tokens per dollar; beside it, over {lamina.UNCAPPED}: vLLM "
               f"without its default limit of {lamina.VLLM_MAX_NUM_SEQS} sequences")
    uncapped = {(g["model"], g["trace"]): g["ratio"] - 1 for g in lamina.gains(records, baseline=lamina.UNCAPPED)}
    per_usd = {(g["model"], g["trace"]): g["ratio"] - 1 for g in lamina.gains(records, "tokens_per_usd")}
    for g in summary["throughput_gain"]["ours"]:
        point = g["model"], g["trace"]
        click.echo(f"  {g['model']:<11} {g['trace']:<11} {g['gain']:>+7.1%}   tok/$ {per_usd[point]:>+7.1%}   "
                   f"uncapped {uncapped[point]:>+7.1%}")
    click.echo(f"\nBW_min per NIC, {lamina.BW_MODEL}, alpha {lamina.ALPHA} (points whose KV cache fits the pool)")
    contexts = sorted({r["context"] for r in bw_rows})
    click.echo(f"{'batch':>6} " + " ".join(f"{'l=' + str(c):>9}" for c in contexts) + "   (GB/s)")
    for batch in sorted({r["batch"] for r in bw_rows}):
        cells = {r["context"]: r["bw_min_bytes_per_s"] for r in bw_rows if r["batch"] == batch}
        click.echo(f"{batch:>6} " + " ".join(f"{cells[c] / 1e9:>9.1f}" if c in cells else f"{'-':>9}"
                                             for c in contexts))
    click.echo(f"event model at BW_min (batch {cross['batch']}, context {cross['context']}, latency "
               f"{cross['latency_s'] * 1e6:.1f} us, no micro-batches): slowdown {cross['slowdown']:.3f}, "
               f"{cross['slowdown_without_latency']:.3f} without the latency (alpha {cross['alpha']}); the served "
               f"ping-pong pipeline at that bandwidth: slowdown {cross['pipelined_slowdown']:.3f} (the formula bounds "
               "the unpipelined iteration: the pipeline hides the transfers behind the other micro-batch's work)")
    click.echo("\nHeadline")
    for row in lamina.headline_rows(summary):
        ours, paper = row["ours"], row["paper"]
        click.echo(f"  {row['metric']:<36} ours {_fmt(ours):>10}   paper {_fmt(paper):>12}   "
                   + ("within tolerance" if row["within"] else f"outside: {row['reason']}"))
    if out:
        click.echo(f"records written to {out}/points.csv, {out}/bw_min.csv, {out}/headline.csv; Perfetto trace "
                   f"{out}/pipeline_trace.json")


def _prices(records: list[dict]) -> str:
    """Each model's pair of prices per hour, Lamina's then the baseline's, models of one pair together (the
    points' `cost_per_h`, from the presets)."""
    cost = {(r["model"], r["system"]): r["cost_per_h"] for r in records}
    pairs: dict[tuple[float, float], list[str]] = {}
    for model in dict.fromkeys(r["model"] for r in records):
        pairs.setdefault((cost[model, lamina.SYSTEM], cost[model, lamina.BASELINE]), []).append(model)
    return "; ".join(f"{', '.join(models)} ${ours:.2f}/h vs ${theirs:.2f}/h"
                     for (ours, theirs), models in pairs.items())


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
