"""`archsim reproduce duplex`: the Duplex paper's closed-loop serving set-up over the paper's five models
(`archsim.systems.duplex_reproduce`), throughput over the GPU, TBT and energy per token per system, the Bank-PIM
comparison on OPT-66B and Llama3-70B, the QPS sweep, and the headline beside the paper's
(../shared/reference/pim.md §2.1, §2.4) with the modelling reason where they differ."""

from __future__ import annotations

import json

import click

from archsim import library
from archsim.commands.options import write_tables
from archsim.report.duplex import with_over_gpu
from archsim.systems import duplex_figures, duplex_reproduce
from archsim.systems.step import Step, op_table

# `duplex_reproduce.saturation_qps`'s bound -> how the rate reads: interpolated, or the sweep's last / first rate
SATURATION_WORDS = {"": "at about", "at least": "at no less than", "at most": "at no more than"}


def reproduce_duplex(as_json: bool, out: str | None, as_artifact: bool) -> None:
    """Run the reproduction and print it; with `out`, also write points.csv, qps.csv and headline.csv there
    (`reproduce_cmd` checked the folder before the work). `--json`: {"points", "headline", "qps"}. `as_artifact`:
    the GPUs timed as Duplex's simulator times them (`duplex_reproduce.duplex_system`)."""
    records, headline, qps = duplex_reproduce.run_all(as_artifact)
    if out:
        write_tables(out, {"points": records, "qps": qps, "headline": duplex_reproduce.headline_rows(headline)})
    if as_json:
        click.echo(json.dumps({"points": records, "headline": headline, "qps": qps}, indent=2))
        return
    df = with_over_gpu(records)
    click.echo(f"Closed-loop serving, Gaussian (L_in, L_out) (std {duplex_reproduce.STD_FRACTION:.0%} of the mean, "
               f"ours), {duplex_reproduce.REQUEST_ROUNDS} x batch requests per point; the paper's five models (GPU and "
               "Duplex+PE+ET), Duplex and +PE on four Mixtral points, "
               "then the Bank-PIM comparison; a point whose KV cache cannot hold the batch at its lengths says how "
               "many requests one iteration held at most and how many were preempted")
    click.echo(f"{'model':<14} {'L_in':>5} {'L_out':>5} {'batch':>5}  {'system':<15} {'tok/s':>8} {'x GPU':>6} "
               f"{'TBT p50 ms':>10} {'TBT p99 ms':>10} {'E2E s':>7} {'J/token':>8}")
    for r in df.itertuples():
        click.echo(f"{r.model:<14} {r.lin:>5} {r.lout:>5} {r.batch:>5}  {r.system:<15} {r.throughput_tok_s:>8.0f} "
                   f"{r.over_gpu:>6.2f} {r.tbt_p50_s * 1e3:>10.2f} {r.tbt_p99_s * 1e3:>10.2f} {r.e2e_s:>7.2f} "
                   f"{r.energy_j_per_token:>8.3f}{short_of_batch(r.batch, r.batch_reached, r.preemptions)}")
    _echo_qps(qps)
    click.echo(f"\nOp/B of every op of a {duplex_reproduce.QPS_MODEL} decode step from its cascades (`analyze`; the "
               "report page plots them against the units' ridges): GQA attention ~ deg_grp, MoE ~ tokens per expert")
    click.echo(op_table(library.load_workload_spec(duplex_reproduce.QPS_MODEL), Step("decode", 32, 1024), "llama"))
    timing = ("GPU and xPU timed at their roofline, as Duplex's simulator (--as-artifact)" if headline["as_artifact"]
              else "the calibrated GPU model (--as-artifact: at their roofline, as Duplex's simulator)")
    click.echo(f"\nHeadline: {headline['system']} over {headline['baseline']}, {headline['points']} points; {timing}")
    for metric in duplex_reproduce.PAPER:
        h = headline[metric]
        fmt = (lambda v: f"{v:.1%}") if metric == "energy_reduction" else (lambda v: f"{v:.2f}x")
        click.echo(f"  {metric:<17} ours {fmt(h['ours'])}   paper {fmt(h['paper'])}   "
                   + ("within tolerance" if h["within"] else f"outside tolerance: {h['reason']}"))
    by_static = " / ".join(f"{v:.1%}" for v in headline["energy_reduction_by_static"].values())
    fractions = " / ".join(f"{float(f):.0%}" for f in headline["energy_reduction_by_static"])
    click.echo(f"  energy_reduction with the xPUs' static power at {fractions} of TDP (the presets' static_w: "
               f"{headline['static_fraction_of_tdp']:.0%}; gpu.md §5 suggests 15-25 %): {by_static}")
    click.echo("Bank-PIM against Duplex (paper: Bank-PIM faster on OPT-66B, slower on Llama3-70B)")
    for model, h in headline["bank_pim"].items():
        click.echo(f"  {model:<11} Bank-PIM / Duplex throughput {h['bank_pim_over_duplex']:.3f}: {h['faster']} "
                   f"faster, paper {h['paper_faster']}   " + ("agrees" if h["within"] else f"differs: {h['reason']}"))
    click.echo("Other figures of the paper (pim.md §2.4; tolerance: the headline's, 15 % of a ratio, 10 points of a "
               "reduction; duplex_figures' docstring says how each is read)")
    for f in headline["figures"]:
        fmt = (lambda v: f"{v:.1%}") if f["kind"] == duplex_figures.REDUCTION else (lambda v: f"{v:.2f}x")
        paper = "a bound" if f["paper"] is None else fmt(f["paper"])
        points = f"{f['points']} point" + ("" if f["points"] == 1 else "s")
        click.echo(f"  {f['figure']:<34} ours {fmt(f['ours']):>7}   paper {paper:>7}   ({f['source']}; {points})   "
                   + ("within" if f["within"] else f"outside: {f['reason']}"))
    q = headline["qps"]
    click.echo("QPS sweep (paper: the GPU saturates above 9 req/s, Duplex at about 14)")
    for name, s in q["saturation_qps"].items():
        click.echo(f"  {name} serves {q['capacity_qps'][name]:.2f} req/s with its batch full (its capacity: the "
                   f"checks'); read off the sweep's TTFT it saturates {SATURATION_WORDS[s['bound']]} "
                   f"{s['qps']:.1f} req/s")
    for metric in ("gpu_saturation_qps", "duplex_over_gpu"):
        h = q[metric]
        click.echo(f"  {metric:<18} ours {h['ours']:.2f}   paper {h['paper']}   "
                   + ("within" if h["within"] else f"outside: {h['reason']}"))
    click.echo("Not run: lengths beyond (1024, 1024) of the paper's grid (it reaches (4096, 4096); the README's "
               "Duplex section gives the lines that add them, about 3 minutes); "
               + "; ".join(duplex_figures.NOT_RUN) + ".")
    if out:
        click.echo(f"records written to {out}/points.csv, {out}/qps.csv, {out}/headline.csv")


def short_of_batch(batch: int, reached: int, preemptions: int) -> str:
    """A point's note where it did not run at its batch: the most requests an iteration held, and the preemptions
    (empty where it held `batch` without any)."""
    if reached >= batch and not preemptions:
        return ""
    return f"  batch {batch} ({reached} reached, {preemptions} preemptions)"


def _echo_qps(qps: list[dict]) -> None:
    tail = f"ttft_p{duplex_reproduce.SATURATION_PERCENTILE}_s"
    model, (lin, lout) = duplex_reproduce.QPS_MODEL, duplex_reproduce.QPS_LENGTHS
    click.echo(f"\nQPS sweep: {model}, Poisson arrivals, Gaussian ({lin}, {lout}), max batch "
               f"{duplex_reproduce.QPS_MAX_BATCH}, {duplex_reproduce.QPS_REQUESTS} requests per rate; saturated: "
               f"TTFT p{duplex_reproduce.SATURATION_PERCENTILE} above {duplex_reproduce.SATURATION_TTFT_MULTIPLE:g} x "
               "a lone prompt's")
    click.echo(f"{'system':<13} {'QPS':>4} {'tok/s':>7} {'TBT p50 ms':>10} {'TBT p99 ms':>10} {'TTFT p50 s':>10} "
               f"{'TTFT p90 s':>10} {'E2E p50 s':>9} {'E2E p99 s':>9}  saturated")
    for r in qps:
        click.echo(f"{r['system']:<13} {r['qps']:>4g} {r['throughput_tok_s']:>7.0f} {r['tbt_p50_s'] * 1e3:>10.2f} "
                   f"{r['tbt_p99_s'] * 1e3:>10.2f} {r['ttft_p50_s']:>10.2f} {r[tail]:>10.2f} {r['e2e_p50_s']:>9.2f} "
                   f"{r['e2e_p99_s']:>9.2f}  {'yes' if r['saturated'] else 'no'}")
