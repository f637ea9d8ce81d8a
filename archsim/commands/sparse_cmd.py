"""`archsim reproduce sparse`: sparse prefill and KV-cache selection (`archsim.systems.sparse_reproduce`):
MInference's end-to-end prefill against dense FlashAttention-2 with its masks' density, DuoAttention's and Quest's
decode, ours beside the public figures."""

from __future__ import annotations

import json

import click

from archsim.commands.options import write_tables
from archsim.outputs import check_writable
from archsim.systems import sparse_reproduce as sparse


def reproduce_sparse(as_json: bool, out: str | None) -> None:
    """Run the reproduction and print it; with `out`, also write points.csv, minference.csv and density.csv there.
    `--json`: {"points": [{"method", "model", "gpu", "phase", "context", "budget", "time_s", "dense_time_s",
    "memory_bytes", "dense_memory_bytes", ...}], "minference", "density", "headline"}."""
    if out:
        check_writable(out, "--out", directory=True)
    result = sparse.run_all()
    if out:
        write_tables(out, {"points": result["points"], "minference": result["minference"],
                           "density": result["density"]})
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"MInference end-to-end prefill, {sparse.MINFERENCE_MODEL} shapes on {sparse.MINFERENCE_GPU}, "
               f"{sparse.MINFERENCE_MAP} (s; paper in brackets; attention, other ops and the KV cache's copy to the "
               "host ours)")
    click.echo(f"{'context':>8} {'FA-2':>9} {'(paper)':>9} {'error':>7} {'MInference':>11} {'(paper)':>9} "
               f"{'error':>7} {'FA-2 attn':>10} {'MInf attn':>10} {'other ops':>10} {'KV to host':>10}")
    for r in result["minference"]:
        click.echo(f"{r['context']:>8} {r['dense_s']:>9.2f} {r['paper_dense_s']:>9.2f} {r['dense_error']:>+7.0%} "
                   f"{r['minference_s']:>11.2f} {r['paper_minference_s']:>9.2f} {r['minference_error']:>+7.0%} "
                   f"{r['dense_attention_s']:>10.2f} {r['minference_attention_s']:>10.2f} {r['other_ops_s']:>10.2f} "
                   f"{r['kv_host_s']:>10.2f}")
    for r in result["density"]:
        click.echo(f"vertical-slash sparsity at {r['context'] // 1000}K: {r['sparsity']:.1%} (App. F: above "
                   f"{r['above']:.0%})")
    click.echo("\nDecode per generated token (ms) and memory (GB); dense beside; OOM: more memory than the GPU has "
               "(timed all the same)")
    click.echo(f"{'method':<13} {'model':<10} {'gpu':<15} {'phase':<9} {'context':>8} {'budget':>6} {'ms':>8} "
               f"{'dense ms':>9} {'GB':>11} {'dense GB':>11}")
    for p in result["points"]:
        if p["method"] == "MInference":
            continue
        budget = p["budget"] if p["budget"] is not None else "-"
        click.echo(f"{p['method']:<13} {p['model']:<10} {p['gpu']:<15} {p['phase']:<9} {p['context']:>8} "
                   f"{budget:>6} {p['time_s'] * 1e3:>8.2f} {p['dense_time_s'] * 1e3:>9.2f} "
                   f"{_gb(p['memory_bytes'], p['fits']):>11} {_gb(p['dense_memory_bytes'], p['dense_fits']):>11}")
    h = result["headline"]
    click.echo(f"\nHeadline: MInference and FA-2 within {sparse.PREFILL_TOLERANCE:.0%} of the paper at every length: "
               f"{h['minference_within']}; MInference slower than FA-2 at 10K: {h['minference_slower_at_10k']}; "
               f"masks above App. F's sparsity: {h['density_above']}")


def _gb(memory_bytes: float, fits: bool) -> str:
    return f"{memory_bytes / 1e9:.1f}" + ("" if fits else " OOM")
