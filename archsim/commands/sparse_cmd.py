"""Sparse prefill and KV-cache selection on a GPU:
- `archsim sparse`: one method (`archsim.systems.sparse_points`) on the GPU, workload and contexts the user names;
  with `--system`, Quest's or DuoAttention's effect on a system spec's PIM devices and attention-offloading memory
  pool too (`sparse_points.system_points`);
- `archsim reproduce sparse` (`archsim.systems.sparse_reproduce`): MInference's end-to-end prefill against dense
  FlashAttention-2 with its masks' density, DuoAttention's and Quest's decode (and DuoAttention's prefill "up to"),
  ours beside the public figures.
The model's fields are named by the options that set them (`budget` -> `--budget`). A time the model has not (a call
the GPU's memory cannot hold at that context, NaN) prints as n/a, and as null in JSON. `archsim sparse` ends with
the provenance of the GPU's times (`archsim.gpu.provenance`: the packaged calibration, the GPUs it was fitted on,
what the GPU has measured of its own)."""

from __future__ import annotations

import json
import math

import click

from archsim.arch.gpu import GPU
from archsim.commands.options import (
    Real,
    Size,
    Whole,
    named,
    nan_as_null,
    nonempty,
    whole_numbers,
    write_tables,
)
from archsim.errors import SpecError
from archsim.gpu.params import load_calibration
from archsim.gpu.provenance import provenance, provenance_line
from archsim.outputs import check_writable
from archsim.systems import sparse_reproduce as sparse
from archsim.systems.kv_selection import QUEST_PAGE_TOKENS, TOKENSELECT_LOCAL, TOKENSELECT_SINKS, TOKENSELECT_TOP_K
from archsim.systems.links import load_gpu_with_host_link
from archsim.systems.sparse_points import FIELD_OPTIONS, METHOD_OPTIONS, METHODS, MODEL_SOURCES, SparseMethod

PREFILL_METHODS = ("minference", "flexprefill")


@click.command("sparse")
@click.option("--method", required=True, type=click.Choice(METHODS),
              help="minference, flexprefill (prefill); duoattention (decode; with --prefill its prefill too); "
                   "quest, razorattention, tokenselect (decode).")
@click.option("--gpu", required=True, metavar="PRESET", callback=nonempty, help="A GPU preset or a YAML file.")
@click.option("--workload", "-w", required=True, metavar="W", callback=nonempty,
              help="Model: a library workload (e.g. llama3-8b) or a YAML file.")
@click.option("--context", "contexts", required=True, metavar="N[,N...]", callback=whole_numbers,
              help="Tokens of the prompt (prefill) or of the KV cache (decode), e.g. 100000 or 32K = 32768 (a "
                   "comma list sweeps).")
@click.option("--patterns", metavar="MAP", callback=nonempty,
              help="[minference, duoattention] A per-head pattern map: a shipped one (archsim list) or a YAML file; "
                   "its layers x heads must be the workload's (query heads for MInference, KV heads for "
                   "DuoAttention), and its model: the workload's name (a map is the setting of the model it was "
                   "made for).")
@click.option("--density", type=Real(), metavar="D",
              help="[flexprefill] Share of the causal attention its coverage (gamma 0.9) keeps, in (0, 1]: the "
                   "data's, so no default; each query block keeps at least FlexPrefill's min_budget (its default "
                   "512 tokens) as vertical and as slash blocks.")
@click.option("--retrieval-fraction", type=Real(), metavar="R",
              help="[duoattention, razorattention] Share of KV heads kept whole (0..1).")
@click.option("--budget", "budgets", metavar="B[,B...]", callback=whole_numbers,
              help="[quest] Token budgets: whole pages of --page-tokens tokens, at most the context (a comma list "
                   "sweeps).")
@click.option("--page-tokens", type=Size(), metavar="N",
              help=f"[quest] Tokens per page, the unit it scores and selects (default: Quest's {QUEST_PAGE_TOKENS}).")
@click.option("--top-k", type=Whole(), metavar="K",
              help="[tokenselect] Tokens selected per step, besides --sinks and --local (default: TokenSelect's "
                   f"{TOKENSELECT_TOP_K}; a context they cover is attended whole, as dense; a value given beyond the "
                   "context is refused).")
@click.option("--sinks", type=Size(), metavar="N",
              help=f"[tokenselect] First tokens attended every step (default: TokenSelect's {TOKENSELECT_SINKS}).")
@click.option("--local", type=Size(), metavar="N",
              help=f"[tokenselect] Latest tokens attended every step (default: TokenSelect's {TOKENSELECT_LOCAL}).")
@click.option("--reuse-fraction", type=Real(), metavar="F",
              help="[tokenselect] Share of steps whose Selection Cache hits and skip scoring, in [0, 1) (default 0: "
                   "every step scores anew).")
@click.option("--prefill", is_flag=True,
              help="[duoattention] Also its end-to-end prefill of one prompt at each context against dense "
                   "FlashAttention-2 (phase prefill; a prefill table after the decode rows).")
@click.option("--system", "system_name", metavar="NAME|FILE", callback=nonempty,
              help="[quest, duoattention] Also the method on a system spec (a library system or a YAML file, as "
                   "simulate's): on each bank-PIM or Logic-PIM device, one layer's decode attention of --batch "
                   "requests against dense; with an attention-offloading memory pool (e.g. lamina), the requests it "
                   "holds against dense. A system with neither is refused.")
@click.option("--batch", type=Size(), metavar="N",
              help="[--system with a PIM device] Requests in the PIM's decode batch (no default).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"points": [one row of the method\'s fields per point and phase], "calibration": {...}} as '
                   'JSON (not sweep records: a sweep spec with a sparse: block writes those); "calibration": the '
                   'GPUs the packaged calibration\'s families were fitted on, and what --gpu has measured of its '
                   'own; with --system, "system_points" too.')
@click.option("--out", type=click.Path(file_okay=False), callback=nonempty,
              help="Also write sparse.csv here (with --system, system_points.csv too).")
def sparse_cmd(method: str, gpu: str, workload: str, contexts: list[int], patterns: str | None,
               density: float | None, retrieval_fraction: float | None, budgets: list[int], page_tokens: int | None,
               top_k: int | None, sinks: int | None, local: int | None, reuse_fraction: float | None, prefill: bool,
               system_name: str | None, batch: int | None, as_json: bool, out: str | None) -> None:
    """Time a sparse-attention method on a GPU against dense attention: MInference's or FlexPrefill's end-to-end
    prefill of one prompt, or one generated token of one request under KV-cache selection (end to end, and one
    layer's attention), with the memory the weights and the kept KV cache take; DuoAttention's end-to-end prefill too
    with --prefill. With --system, Quest's or DuoAttention's effect on a system's PIM devices or memory pool too.

    Nothing a method needs is filled in: MInference needs --patterns; FlexPrefill --density; DuoAttention
    --retrieval-fraction or --patterns; RazorAttention --retrieval-fraction; Quest --budget. A setting with a
    default (Quest's --page-tokens, TokenSelect's --top-k, --sinks, --local) is the paper's. An option the method
    does not take is refused.

    Examples:

    \b
      archsim sparse --method minference --gpu a100-80gb-sxm4 -w llama3-8b --context 100000,300000 \\
          --patterns llama3-8b-262k-minference
      archsim sparse --method flexprefill --gpu h100-sxm5 -w llama3-8b --context 128K --density 0.1
      archsim sparse --method quest --gpu rtx-4090 -w llama2-7b --context 32K --budget 512,2048
      archsim sparse --method duoattention --gpu h100-sxm5 -w llama3-8b --context 1M --retrieval-fraction 0.5
      archsim sparse --method duoattention --gpu a100-80gb-sxm4 -w llama3-8b --context 500K \\
          --retrieval-fraction 0.5 --prefill
      archsim sparse --method quest --gpu h100-sxm5 -w llama3-8b --context 32K --budget 2048 \\
          --system neupims --batch 16
      archsim sparse --method duoattention --gpu h100-sxm5 -w llama3-70b --context 32K \\
          --retrieval-fraction 0.5 --system lamina
    """
    given = {"--patterns": patterns is not None, "--density": density is not None,
             "--retrieval-fraction": retrieval_fraction is not None,
             "--budget": bool(budgets), "--page-tokens": page_tokens is not None, "--top-k": top_k is not None,
             "--sinks": sinks is not None, "--local": local is not None,
             "--reuse-fraction": reuse_fraction is not None, "--prefill": prefill, "--system": system_name is not None,
             "--batch": batch is not None}
    for option, is_given in given.items():
        if is_given and option not in METHOD_OPTIONS[method]:
            raise click.UsageError(f"{option} does not apply to --method {method} (it takes "
                                   f"{', '.join(METHOD_OPTIONS[method])})")
    if batch is not None and system_name is None:
        raise click.UsageError("--batch is the PIM's decode batch under --system: give --system too")
    if out:
        check_writable(out, "--out", directory=True)
    settings = {key: value for key, value in (("top_k", top_k), ("reuse_fraction", reuse_fraction),
                                              ("density", density), ("page_tokens", page_tokens), ("sinks", sinks),
                                              ("local", local)) if value is not None} | {"prefill": prefill}
    device = named("--gpu", gpu, load_gpu_with_host_link)
    points, on_system = _method_points(method, device, workload, contexts, patterns, retrieval_fraction, budgets,
                                       settings, system_name, batch)
    if out:
        write_tables(out, {"sparse": points} | ({"system_points": on_system} if system_name else {}))
    calibration = provenance(load_calibration(), device)  # the packaged one the points are timed with
    if as_json:
        click.echo(json.dumps({"points": [nan_as_null(p) for p in points], "calibration": calibration.to_dict()}
                              | ({"system_points": [nan_as_null(r) for r in on_system]} if system_name else {}),
                              indent=2))
        return
    if method in PREFILL_METHODS:
        _prefill_table(points, patterns)
    else:
        _decode_table([p for p in points if p["phase"] != "prefill"])
        prefill = [p for p in points if p["phase"] == "prefill"]  # DuoAttention's
        if prefill:
            click.echo()
            _prefill_table(prefill, patterns)
    if system_name:
        click.echo()
        _system_table(on_system, patterns)
    click.echo(provenance_line(calibration))
    if out:
        click.echo(f"rows written to {out}/sparse.csv" + (f" and {out}/system_points.csv" if system_name else ""))


def _method_points(method: str, device: GPU, workload: str, contexts: list[int], patterns: str | None,
                   retrieval_fraction: float | None, budgets: list[int], settings: dict, system_name: str | None,
                   batch: int | None) -> tuple[list[dict], list[dict]]:
    """The points of `method_points` (`settings`: the method's fields given) and, with `system_name`, the rows of
    `system_points` (else none); a model's error on a field an option sets names the option."""
    from archsim.library import load_workload_spec
    from archsim.systems.sparse_points import method_points, system_points
    from archsim.systems.system_spec import load_system
    from archsim.workload_patterns import load_pattern_map

    model = named("--workload", workload, load_workload_spec)
    pattern_map = named("--patterns", patterns, load_pattern_map) if patterns else None
    system = named("--system", system_name, load_system) if system_name else None
    try:
        spec = SparseMethod(method, pattern_map, retrieval_fraction, tuple(budgets), **settings)
        points = method_points(spec, model, device, contexts)
        return points, system_points(spec, model, system, batch, contexts) if system else []
    except SpecError as error:
        if error.source in MODEL_SOURCES and error.where in FIELD_OPTIONS:
            raise SpecError(FIELD_OPTIONS[error.where], "", error.message) from None
        raise


def _prefill_table(points: list[dict], patterns: str | None) -> None:
    """Prefill points as rows: seconds, dense beside, the parts, GB, and what the method's side holds on the GPU at
    once (OOM and no time where the GPU cannot hold it); FlexPrefill's density kept beside (`effective_density`),
    with a note where its floor (`min_budget`) raises it above the density asked; DuoAttention's KV to host is the
    KV it keeps (dense's own in the JSON, `dense_kv_host_s`), its retrieval share the one asked or its map's
    (`patterns`)."""
    p0 = points[0]
    estimate = "estimate_s" in p0  # FlexPrefill's estimation, within its attention
    density = "effective_density" in p0  # FlexPrefill's
    kept = "retrieval_fraction" in p0  # DuoAttention: memory as its decode rows (`sparse_points`)
    memory = ("weights + the KV cache it keeps once the prompt is in; "
              f"{_heads_kept(p0, patterns)}; KV to host: the KV it keeps" if kept else
              "weights + the prompt's KV cache")
    click.echo(f"{p0['method']} end-to-end prefill of one prompt, {p0['model']} on {p0['gpu']} (s); dense: "
               f"FlashAttention-2; memory (GB, 1e9 B): {memory}; held: what the GPU holds at once (the weights, the "
               "KV cache it keeps there and one layer's working set, its input beside its largest op's "
               "activations; OOM and no time where that exceeds its memory)"
               + (f"; density {p0['density']:g} of the causal attention asked, kept: the share of causal blocks the "
                  f"kernel visits (min_budget {p0['min_budget']} tokens, FlexPrefill's default)" if density else ""))
    click.echo(f"{'context':>8} {'time s':>9} {'dense s':>9} {'speedup':>8} {'attn s':>9} "
               + (f"{'estimate':>9} " if estimate else "") + (f"{'kept':>7} " if density else "")
               + f"{'dense attn':>10} {'other ops':>10} {'KV to host':>10} {'GB':>8} {'held GB':>11}")
    for p in points:
        click.echo(f"{p['context']:>8} {_number(p['time_s'], '.3f'):>9} {_number(p['dense_time_s'], '.3f'):>9} "
                   f"{_number(p['dense_time_s'] / p['time_s'], '.2f', 'x'):>8} {_number(p['attention_s'], '.3f'):>9} "
                   + (f"{_number(p['estimate_s'], '.3f'):>9} " if estimate else "")
                   + (f"{p['effective_density']:>7.3g} " if density else "")
                   + f"{_number(p['dense_attention_s'], '.3f'):>10} {_number(p['other_ops_s'], '.3f'):>10} "
                   f"{_number(p['kv_host_s'], '.3f'):>10} "
                   f"{p['memory_bytes'] / 1e9:>8.1f} {_gb(p['resident_bytes'], p['fits']):>11}")
    # a tenth above the density asked: the floor, not each row's rounding (0.101 for 0.1 at 128K)
    raised = [p for p in points if density and p["effective_density"] > 1.1 * p["density"]]
    for p in raised:
        click.echo(f"Note: at {p['context']} tokens the kernel keeps {p['effective_density']:.3g} of the causal "
                   f"blocks, not the {p['density']:g} asked: each 128-token query block keeps whole key blocks, at "
                   f"least its min_budget of {p['min_budget']} tokens as vertical and as slash blocks")


def _system_table(rows: list[dict], patterns: str | None) -> None:
    """`system_points` rows: one layer's decode attention (ms) against dense, and per request (us) so the two
    compare: a PIM device's of the batch (n/a OOM for a side whose batch's KV cache the system cannot hold, its
    reason below), a memory pool's of the requests its KV room holds, each side its own (n/a where it holds none);
    the speedup is per request."""
    r0 = rows[0]
    setting = _heads_kept(r0, patterns) if "retrieval_fraction" in r0 else "budget in tokens"
    click.echo(f"{r0['method']} on {r0['system']} ({r0['model']}; {setting}): one layer's decode attention, dense "
               "at the context against the tokens' worth of KV the method reads (ms), and per request (us): on a "
               "PIM device the batch's on its share of the heads, on a memory pool the requests its KV room holds "
               "(each side its own count); speedup per request")
    click.echo(f"{'device':<10} {'kind':<12} {'context':>8} {'budget':>6} {'reads':>8} {'batch':>5} {'ms':>9} "
               f"{'dense ms':>9} {'us/req':>9} {'dense/req':>9} {'speedup':>8} {'requests':>8} {'dense':>6}")
    for r in rows:
        budget = r["budget"] if r["budget"] is not None else "-"
        pool = r["requests"] is not None
        times, counts = (r["time_s"], r["dense_time_s"]), ((r["requests"], r["dense_requests"]) if pool
                                                           else (r["batch"], r["batch"]))
        missing = "n/a" if pool else "n/a OOM"
        ms = [missing if t is None else f"{t * 1e3:.4f}" for t in times]
        per_us = [missing if t is None else f"{t / n * 1e6:.3f}" for t, n in zip(times, counts, strict=True)]
        speedup = ("n/a" if None in times else
                   _number(times[1] / counts[1] / (times[0] / counts[0]), ".2f", "x"))
        batch, held = ("-", counts) if pool else (r["batch"], ("-", "-"))
        click.echo(f"{r['device']:<10} {r['kind']:<12} {r['context']:>8} {budget:>6} {r['effective_context']:>8} "
                   f"{batch:>5} {ms[0]:>9} {ms[1]:>9} {per_us[0]:>9} {per_us[1]:>9} {speedup:>8} {held[0]:>8} "
                   f"{held[1]:>6}")
    for reason, pool in dict.fromkeys((r["reason"], r["requests"] is not None) for r in rows if r.get("reason")):
        batch = "" if pool else " (the batch's KV cache exceeds the system's KV room: not timed)"
        click.echo(f"OOM: {reason}{batch}")


def _decode_table(points: list[dict]) -> None:
    """Decode points as rows: ms and GB, dense beside, OOM where the memory exceeds the GPU's, n/a for no time; with
    a retrieval fraction among them, the KV heads each keeps whole (`heads`, over every layer; - for the others)."""
    heads = any("retrieval_heads" in p for p in points)
    click.echo(f"{'method':<15} {'model':<10} {'gpu':<15} {'phase':<9} {'context':>8} {'budget':>6} "
               + (f"{'heads':>5} " if heads else "") + f"{'ms':>8} {'dense ms':>9} {'GB':>11} {'dense GB':>11}")
    for p in points:
        budget = p["budget"] if p["budget"] is not None else "-"
        click.echo(f"{p['method']:<15} {p['model']:<10} {p['gpu']:<15} {p['phase']:<9} {p['context']:>8} "
                   f"{budget:>6} " + (f"{p.get('retrieval_heads', '-'):>5} " if heads else "")
                   + f"{_ms(p['time_s']):>8} {_ms(p['dense_time_s']):>9} "
                   f"{_gb(p['memory_bytes'], p['fits']):>11} {_gb(p['dense_memory_bytes'], p['dense_fits']):>11}")


def reproduce_sparse(as_json: bool, out: str | None) -> None:
    """Run the reproduction and print it; with `out`, also write points.csv, minference.csv, held_clock.csv,
    density.csv and index_building.csv there.
    `--json`: {"points": [{"method", "model", "gpu", "phase", "context", "budget", "time_s", "dense_time_s",
    "memory_bytes", "dense_memory_bytes", ...}], "minference", "held_clock", "density", "index_building": [{"context",
    "index_building_s", "pad_s", "attention_s", "prefill_s", "attention_share", "prefill_share",
    "attention_share_with_pads", "paper_low", "paper_high"}], "longest_prefill": {"model", "gpu", "tokens",
    "kv_on_host", "paper_tokens", "error"}, "quest_fraction": [{"context", "budget", "page_tokens", "pages",
    "budget_pages", "fraction", "formula"}], "duo_up_to", "headline"}."""
    result = sparse.run_all()
    if out:
        write_tables(out, {"points": result["points"], "minference": result["minference"],
                           "held_clock": result["held_clock"], "density": result["density"],
                           "index_building": result["index_building"]})
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"MInference end-to-end prefill, {sparse.MINFERENCE_MODEL} shapes on {sparse.MINFERENCE_GPU}, "
               f"{sparse.MINFERENCE_MAP} (s; paper in brackets; attention, other ops and the KV cache's copy to the "
               "host ours)")
    click.echo(f"{'context':>8} {'FA-2':>9} {'(paper)':>9} {'error':>7} {'MInference':>11} {'(paper)':>9} "
               f"{'error':>7} {'FA-2 attn':>10} {'MInf attn':>10} {'other ops':>10} {'KV to host':>10}")
    paper = {r["context"]: r for r in result["minference"]}
    for p in (p for p in result["points"] if p["method"] == "MInference"):  # every length; the paper's at four
        r = paper.get(p["context"])
        dense_paper, dense_error, sparse_paper, sparse_error = (
            (f"{r['paper_dense_s']:>9.2f}", f"{r['dense_error']:>+7.0%}", f"{r['paper_minference_s']:>9.2f}",
             f"{r['minference_error']:>+7.0%}") if r else (f"{'-':>9}", f"{'':>7}", f"{'-':>9}", f"{'':>7}"))
        click.echo(f"{p['context']:>8} {p['dense_time_s']:>9.2f} {dense_paper} {dense_error} {p['time_s']:>11.2f} "
                   f"{sparse_paper} {sparse_error} {p['dense_attention_s']:>10.2f} {p['attention_s']:>10.2f} "
                   f"{p['other_ops_s']:>10.2f} {_number(p['kv_host_s'], '.2f'):>10}")
    click.echo("A reading, not the model's result: the same with the A100's SMs at the fraction of boost an H200 "
               "held under its power cap at each length (measured on the H200, not on an A100)")
    for r in result["held_clock"]:
        errors = (f" ({r['dense_error']:+.0%})", f" ({r['minference_error']:+.0%})") if "dense_error" in r else ("", "")
        click.echo(f"{r['context']:>8} at {r['clock_mhz']:.0f} MHz ({r['clock_fraction']:.2f}): FA-2 "
                   f"{r['dense_s']:.2f} s{errors[0]}, MInference {r['minference_s']:.2f} s{errors[1]}")
    for r in result["density"]:
        click.echo(f"vertical-slash sparsity at {r['context'] // 1000}K: {r['sparsity']:.1%} (App. F: above "
                   f"{r['above']:.0%})")
    click.echo("MInference's index building (its pattern estimation and index build: our estimate less the pads of "
               "Q, K and V), of its attention and of the prefill, beside App. A's share (printed, no tolerance "
               "claimed):")
    for r in result["index_building"]:
        paper = (f"{r['paper_low']:.0%}" if r["paper_low"] == r["paper_high"]
                 else f"{r['paper_low']:.0%}-{r['paper_high']:.0%}")
        click.echo(f"  {r['context']:>8}: {r['index_building_s']:.2f} s, {r['attention_share']:.1%} of attention, "
                   f"{r['prefill_share']:.1%} of the prefill (App. A: {paper}); with the pads "
                   f"{r['attention_share_with_pads']:.1%} of attention")
    longest = result["longest_prefill"]
    click.echo(f"Longest prompt one {longest['gpu']} holds, {longest['model']} shapes, KV cache "
               f"{'on the host' if longest['kv_on_host'] else 'on the GPU'} (the weights, one layer's K and V and "
               f"its input, normed copy, Q and O): {longest['tokens']:,} tokens, {longest['error']:+.0%} against the "
               f"reference's {longest['paper_tokens'] / 1e6:g}M (printed, no tolerance claimed)")
    click.echo("\nDecode per generated token (ms) and memory (GB, 1e9 B); dense beside; OOM: more memory than the GPU "
               "has (timed all the same)")
    _decode_table([p for p in result["points"] if p["method"] != "MInference"])
    if result["quest_fraction"]:
        click.echo("Quest's KV read per step, from the cascade's bytes (KMIN, KMAX and the selected pages' K, V) over "
                   "dense's, beside 1/PageSize + K/PageNum:")
        for r in result["quest_fraction"]:
            click.echo(f"  context {r['context']:>6} budget {r['budget']:>5}: {r['fraction']:.5f} "
                       f"(1/{r['page_tokens']} + {r['budget_pages']}/{r['pages']} = {r['formula']:.5f})")
    click.echo("Ours at the longest context whose dense run fits, beside DuoAttention's README \"up to\" (its "
               "contexts not listed, so printed, not checked):")
    for r in result["duo_up_to"]:
        prefill = "" if "prefill" not in r else (
            f", prefill {r['prefill']:.2f}x" + (f" at {r['prefill_context'] // 1000}K"
                                                 if r["prefill_context"] != r["context"] else "")
            + f" (README {r['paper_prefill']:.2f}x)")
        click.echo(f"  {r['model']:<10} at {r['context'] // 1000}K: memory {r['memory']:.2f}x (README "
                   f"{r['paper_memory']:.2f}x), decode {r['decode']:.2f}x (README {r['paper_decode']:.2f}x)"
                   + prefill)
    h = result["headline"]
    click.echo(f"\nHeadline: MInference and FA-2 within {sparse.PREFILL_TOLERANCE:.0%} of the paper at every length: "
               f"{h['minference_within']}; MInference slower than FA-2 at 10K: {h['minference_slower_at_10k']}; "
               f"masks above App. F's sparsity: {h['density_above']}")
    if "minference_reason" in h:
        click.echo(f"Why the prefill times miss: {h['minference_reason']}")


def _heads_kept(row: dict, patterns: str | None) -> str:
    """The KV heads a row's retrieval fraction keeps whole (`sparse_points.retrieval_fields`), beside the
    fraction asked, or, given a map (`patterns`), the map's share of retrieval heads."""
    fraction = f"{row['retrieval_fraction']:g} " + (f"in {patterns}" if patterns else "asked")
    return (f"{row['retrieval_heads']} KV heads kept whole as retrieval heads ({row['retrieval_fraction_used']:.4g} "
            f"of the model's; {fraction})")


def _gb(memory_bytes: float, fits: bool) -> str:
    return f"{memory_bytes / 1e9:.1f}" + ("" if fits else " OOM")


def _ms(seconds: float) -> str:
    """`seconds` in ms, to 0.01 ms from 1 ms and to 0.1 us below (one layer's attention: 21.1 against 19.5 us reads
    0.0211 and 0.0195, where 0.02 and 0.02 hid which is faster); n/a for NaN."""
    return _number(seconds * 1e3, ".2f" if seconds >= 1e-3 else ".4f")


def _number(value: float, spec: str, unit: str = "") -> str:
    """`value` formatted by `spec` and followed by `unit`, or n/a for a time the model has not (NaN)."""
    return "n/a" if math.isnan(value) else format(value, spec) + unit

