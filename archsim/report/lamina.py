"""The Lamina reproduction report (`archsim report --reproduction lamina`): the edge that writes figures, CSVs and
index.html for `archsim.systems.lamina_reproduce.run_all`.

Files in the output directory, each PNG beside the CSV it is drawn from:
- summary.csv: ours vs the paper (`lamina_reproduce.headline_rows`).
- points.csv (a table on the page, no figure): every point of the reproduction (`points_rows`): its cost per hour,
  throughput, tokens per dollar, batch, TBT p50/p99 and, on Lamina's rows, divide-and-conquer's saving measured
  both ways the headline does (one batch's critical path; the served TBT p50 against lamina-no-dc's).
- throughput.png/.csv: Lamina's and vLLM's throughput per model x trace at similar cost (the paper's DOP against
  the next whole number of H100s: `cost_text`), the gain printed over each pair (the paper: +16.1 % to +90.1 %).
- tokens_per_usd.png/.csv: the same pairs' tokens per dollar (throughput over the devices' price per hour), the
  ratio over each pair.
- batch.png/.csv: the batch each system reaches (its KV cache's, vLLM's at most its default 256 sequences:
  `batch_text`) per model x trace and their ratio (the paper's mean: 2.39x).
- bw_min.png/.csv: BW_min per NIC against the batch, a line per context, beside the paper's 30 GB/s (up to its
  batch 300) and the
  bandwidths of the link presets lamina-gpu-initiated-400g and lamina-nccl-400g; the event model's cross-check
  (its slowdown over a link at BW_min) in the title and the text.
- pipeline.png/.csv and pipeline_trace.json: the event model's pipeline on the system's schedule (ping-pong or
  staggered, named from the system: `schedule_label`), one run of `lamina_reproduce.pipeline_run` (given to the
  report: `lamina_reproduce.pipeline_runs`), in a steady window: micro-batch 0's token `PIPELINE_TOKEN` over its
  first `PIPELINE_LAYERS` layers, from its token before back (the start-up, where micro-batch j waits j slices /
  replicas, is left to the trace), a row per resource of the run (`pipeline_resources`), a colour per micro-batch,
  the LM heads hatched, a caption under it setting its steady time per token against bw_min.csv's unpipelined
  iteration at the same batch and context (`pipeline_breakdown`, `pipeline_text`); the JSON is the whole run as a
  Perfetto trace (`lamina_reproduce.run_trace`). The
  micro-batch, token, layer and part of a span are read from its name (`mb{j} t{t} L{k} post|dense|...` or
  `mb{j} t{t} LM head`, the names `archsim.systems.offload_events.simulate_pipeline` gives its spans).
- pipeline_staggered.png/.csv and pipeline_staggered_trace.json: the same for rotational staggered pipelining
  (`lamina_reproduce.pipeline_run` of its `staggered_system`: the lamina system with a staggered schedule of
  micro-batches on one fewer replicas, the pool unchanged: DOP (4, 4) for LLaMA3-70B), beside the reproduction,
  which runs the paper's ping-pong.
The folder is written whole (`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from archsim.model.trace import US_PER_S, Span
from archsim.outputs import atomic_dir
from archsim.report.figures import figure_caption, figure_title, new_figure, palette_colour, reference_notes
from archsim.report.point import gaps_html, save_table_and_figure, section_html, write_index
from archsim.systems import lamina_reproduce as lamina
from archsim.systems.links import load_link
from archsim.systems.offload import OffloadModel, replica_work_s
from archsim.systems.offload_events import PipelineRun

SYSTEMS = (lamina.SYSTEM, lamina.BASELINE)  # the pair the bars compare (lamina-no-dc only enters the headline)
LINK_PRESETS = ("lamina-gpu-initiated-400g", "lamina-nccl-400g")
PIPELINE_LAYERS = 4
PIPELINE_TOKEN = 1  # the figures' token: token 0 is the start-up (the trace has it)
PAPER_BW_MAX_BATCH = 300  # pim.md §3.5: BW_min <= 30 GB/s at batch <= 300
_TAG = re.compile(r"^mb(\d+) t(\d+) (?:L(\d+) (.+)|(LM head))$")
_RESOURCE = re.compile(r"^(replica|memory pool|link out|link back)(?: lane)? ?(\d*)$")
_RESOURCE_GROUPS = ("replica", "memory pool", "link out", "link back")  # the figure's rows, top to bottom


# ------------------------------------------------------------------------------------------------ tables
def pair_rows(records: list[dict], metric: str) -> pd.DataFrame:
    """One row per model x trace in the records' order: `metric` of Lamina and of vLLM (columns named by system)
    and `ratio`, Lamina's over vLLM's."""
    df = pd.DataFrame(records)
    df = df[df["system"].isin(SYSTEMS)]
    order = pd.MultiIndex.from_frame(df[["model", "trace"]].drop_duplicates())
    wide = df.pivot(index=["model", "trace"], columns="system", values=metric)
    wide = wide.reindex(index=order, columns=list(SYSTEMS)).reset_index()
    wide.columns.name = None
    wide["ratio"] = wide[lamina.SYSTEM] / wide[lamina.BASELINE]
    return wide


POINT_COLUMNS = ("model", "trace", "system", "cost_per_h", "throughput_tok_s", "tokens_per_usd", "batch",
                 "tbt_p50_s", "tbt_p99_s")


def points_rows(records: list[dict]) -> pd.DataFrame:
    """The points in the records' order with `POINT_COLUMNS` (a column the records lack is empty) and, on Lamina's
    rows, divide-and-conquer's savings (`lamina_reproduce.point_dc_savings`, what the headline's
    `critical_path_dc_saving` and `dc_saving` take the largest of): `dc_saving_single_batch`, of one batch's layer
    critical path at the point's batch and the trace's mean context, and `dc_saving_served` and
    `dc_saving_served_p99`, 1 - its TBT p50 (p99) over lamina-no-dc's at the same model and trace; empty on the
    other systems' rows."""
    df = pd.DataFrame(records).reindex(columns=list(POINT_COLUMNS))
    savings = pd.DataFrame(lamina.point_dc_savings(records),
                           columns=["dc_saving_single_batch", "dc_saving_served", "dc_saving_served_p99"])
    return pd.concat([df, savings], axis=1)


def link_rows() -> pd.DataFrame:
    """The link presets' bandwidths per direction, to read BW_min against."""
    links = [load_link(name) for name in LINK_PRESETS]
    return pd.DataFrame([{"link": link.name, "bytes_per_s_per_direction": link.bytes_per_s_per_direction,
                          "latency_s": link.latency_s} for link in links])


def schedule_label(model: OffloadModel) -> str:
    """The model's schedule as the system names it, with its micro-batches and replicas."""
    replicas = f"{model.replicas} replica" + ("s" if model.replicas > 1 else "")
    return f"{model.system.schedule.kind}: {model.micro_batches} micro-batches on {replicas}"


def pipeline_resources(spans: tuple[Span, ...]) -> tuple[str, ...]:
    """The resources of a run's spans in the figure's order: the replicas by number, the memory pool, then the
    lanes of `link out` and of `link back` (`archsim.systems.offload_events` names them)."""
    def key(resource: str) -> tuple[int, int]:
        group, number = _RESOURCE.match(resource).groups()
        return _RESOURCE_GROUPS.index(group), int(number or 0)
    return tuple(sorted({span.resource for span in spans}, key=key))


def pipeline_rows(spans: tuple[Span, ...], layers: int = PIPELINE_LAYERS, token: int = 0,
                  from_s: float = 0.0) -> pd.DataFrame:
    """The spans in the window from `from_s` until micro-batch 0 has finished its first `layers` layers of
    `token` (its output back over the link; the ops after them run in later slices), with their micro-batch,
    token, layer (none for an LM head) and part (`post`, `dense`, `LM head`, `q`, `output`, ...)."""
    rows = []
    for span in spans:
        j, t, k, part, head = _TAG.match(span.name).groups()
        rows.append({"resource": span.resource, "name": span.name, "micro_batch": int(j), "token": int(t),
                     "layer": None if head else int(k), "part": head or part, "start_s": span.start_s,
                     "end_s": span.end_s})
    df = pd.DataFrame(rows).astype({"layer": "Int64"})
    first = df[(df["micro_batch"] == 0) & (df["token"] == token) & df["layer"].lt(layers).fillna(False)
               & (df["part"] != "post")]
    window = (df["start_s"] < first["end_s"].max()) & (df["end_s"] > from_s)
    return df[window].sort_values("start_s").reset_index(drop=True)


def pipeline_breakdown(model: OffloadModel, contexts: Sequence[int], run: PipelineRun) -> dict:
    """What a pipelined token costs against the unpipelined iteration at the same `contexts` (bw_min.csv's
    `unpipelined_s`, MTIME + ATIME: one batch's replica work and attention, one after the other, no LM head): the
    event model's steady time per token (`run.token_s`), the busiest replica's work per token
    (`offload.replica_work_s`: with one replica, every micro-batch's slices, its layers x `layer_compute_s`, and
    their LM heads, `heads_s`), and, for the first micro-batch, its weight GEMMs' time reading the weights at the
    replica's DRAM bandwidth (`weights_s`, a layer's) against their FLOPs at its peak (`flop_s`;
    `lamina_reproduce.dense_roofline_s`): above it, each micro-batch reads the weights again."""
    layers, heads = model.micro_batch_layers(contexts), model.heads_s(contexts)
    mtime, atime = model.unpipelined_times_s(contexts)
    flop_s, weights_s = lamina.dense_roofline_s(model, layers[0].requests)
    return {"token_s": run.token_s, "replica_s": replica_work_s(layers, heads, model.replicas, model.layers),
            "micro_batches": len(layers), "replicas": model.replicas, "layers": model.layers,
            "requests": layers[0].requests, "layer_compute_s": layers[0].compute_s, "heads_s": sum(heads),
            "flop_s": flop_s, "weights_s": weights_s, "batch": len(contexts), "mtime_s": mtime, "atime_s": atime,
            "unpipelined_s": mtime + atime, "batch_layer_compute_s": mtime / model.layers}


def pipeline_text(split: dict) -> str:
    """`pipeline_breakdown`'s numbers as a sentence: why the steady time per token exceeds the unpipelined
    iteration (all times in ms). For a schedule on one replica (ping-pong's), whose work is every micro-batch's."""
    bound = ("memory-bound: each micro-batch reads the weights again, where one batch reads them once"
             if split["weights_s"] > split["flop_s"] else "compute-bound")
    replicas = f"{split['replicas']} replica" + ("s" if split["replicas"] > 1 else "")
    return (f"Steady time per token {split['token_s'] * 1e3:.2f} ms against bw_min.csv's unpipelined iteration at "
            f"the same point, {split['unpipelined_s'] * 1e3:.2f} ms (MTIME {split['layers']} layers x "
            f"{split['batch_layer_compute_s'] * 1e3:.3f} ms of the batch of {split['batch']} on the replica + ATIME "
            f"{split['atime_s'] * 1e3:.2f} ms; no transfers, no LM head): the pipeline hides the attention, but its "
            f"{split['micro_batches']} micro-batches on {replicas} make the busiest replica's work per token "
            f"{split['micro_batches']} x {split['layers']} layers x {split['layer_compute_s'] * 1e3:.3f} ms + LM heads "
            f"{split['heads_s'] * 1e3:.2f} ms = {split['replica_s'] * 1e3:.2f} ms, as at {split['requests']} decodes "
            f"a micro-batch's weight GEMMs are {bound} (a layer's weights read at the DRAM bandwidth "
            f"{split['weights_s'] * 1e3:.3f} ms, their FLOPs at peak {split['flop_s'] * 1e3:.3f} ms).")


def cost_text(records: list[dict]) -> str:
    """The pairs' prices per hour, per model: Lamina's at the paper's DOP and vLLM's on the next whole number of
    H100s, similar but not equal."""
    df = pd.DataFrame(records)
    costs = df[df["system"].isin(SYSTEMS)].groupby(["model", "system"], sort=False)["cost_per_h"].first()
    pairs = ", ".join(f"{model} ${costs[model, lamina.SYSTEM]:.2f} against ${costs[model, lamina.BASELINE]:.2f}"
                      for model in dict.fromkeys(df["model"]))
    return (f"similar cost within a model (the paper's DOP against the next whole number of H100s, per hour: "
            f"{pairs})")


def batch_text(records: list[dict]) -> str:
    """What sets each system's batch: Lamina's KV cache (no scheduler limit); vLLM's KV cache or its scheduler's
    `VLLM_MAX_NUM_SEQS`, naming the points where the limit holds its batch more than 1 % below the uncapped
    baseline's."""
    df = pd.DataFrame(records).set_index(["model", "trace", "system"])["batch"]
    capped = [(model, trace, df[model, trace, lamina.BASELINE], df[model, trace, lamina.UNCAPPED])
              for model, trace, system in df.index if system == lamina.UNCAPPED
              and df[model, trace, lamina.UNCAPPED] > 1.01 * df[model, trace, lamina.BASELINE]]
    where = ", ".join(f"{model} {trace} ({capped_batch:.0f}; {uncapped:.0f} uncapped)"
                      for model, trace, capped_batch, uncapped in capped) or "none of the points"
    return (f"Lamina's scheduler has no limit, so its batch is its KV cache's; vLLM's is the smaller of its KV "
            f"cache's and its scheduler's {lamina.VLLM_MAX_NUM_SEQS} sequences (max_num_seqs), which holds it "
            f"lower on {where}: {lamina.UNCAPPED} in points.csv")


# ------------------------------------------------------------------------------------------------ figures
def pair_figures(records: list[dict]) -> dict[str, tuple[pd.DataFrame, Figure]]:
    """The pair figures, each with its table: throughput (the gain over each pair), tokens per dollar and batch
    (the ratio over each)."""
    low, high = lamina.PAPER["gain_min"], lamina.PAPER["gain_max"]
    throughput = pair_rows(records, "throughput_tok_s")
    throughput["gain"] = throughput["ratio"] - 1
    usd = pair_rows(records, "tokens_per_usd")
    batch = pair_rows(records, "batch")
    return {
        "throughput": (throughput, pair_figure(
            throughput, "decode throughput (tokens/s)", f"Throughput at similar cost, {lamina.SYSTEM} (DOP per "
            f"model) vs {lamina.BASELINE} (TP): the gain over each pair; the paper's gains: +{low:.1%} to "
            f"+{high:.1%}", lambda ratio: f"{ratio - 1:+.1%}")),
        "tokens_per_usd": (usd, pair_figure(
            usd, "tokens per dollar", f"Tokens per dollar (throughput over the devices' price per hour), "
            f"{lamina.SYSTEM} (DOP per model) vs {lamina.BASELINE} (TP): the ratio over each pair",
            lambda ratio: f"{ratio:.2f}x")),
        "batch": (batch, pair_figure(
            batch, "batch (time-weighted mean decodes)", f"Batch each system reaches (its KV cache's; vLLM's at "
            f"most {lamina.VLLM_MAX_NUM_SEQS}) and the ratio; the paper's mean ratio: "
            f"{lamina.PAPER['batch_growth']:g}x", lambda ratio: f"{ratio:.2f}x")),
    }


def pair_figure(rows: pd.DataFrame, ylabel: str, title: str, ratio_text: Callable[[float], str]) -> Figure:
    """A group per model x trace, a bar per system (log y: the traces' throughputs and batches span decades),
    `ratio_text` of the ratio over each group."""
    groups = rows["model"] + "\n" + rows["trace"]
    xs = np.arange(len(rows))
    fig = new_figure(12.0, 5.0)
    figure_title(fig, title)
    ax = fig.add_axes((0.07, 0.16, 0.76, 0.68))
    width = 0.8 / len(SYSTEMS)
    for i, system in enumerate(SYSTEMS):
        ax.bar(xs - 0.4 + width * (i + 0.5), rows[system], width=width * 0.92, color=palette_colour(i), label=system)
    tops = rows[list(SYSTEMS)].max(axis=1)
    for x, top, ratio in zip(xs, tops, rows["ratio"], strict=True):
        ax.text(x, top, ratio_text(ratio), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, groups, fontsize=8)
    ax.set(yscale="log", ylabel=f"{ylabel}, log", ylim=(rows[list(SYSTEMS)].min().min() / 2, tops.max() * 2))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="system",
              title_fontsize=8)
    return fig


def bw_min_figure(rows: pd.DataFrame, links: pd.DataFrame, cross: dict) -> Figure:
    """BW_min per NIC (GB/s, log) against the batch (log), a line per context; dashed: the paper's bound and the
    link presets' bandwidths."""
    fig = new_figure(11.0, 5.2)
    figure_title(fig, f"BW_min per NIC, {lamina.BW_MODEL} on Lamina DOP {lamina.DOP[lamina.BW_MODEL]}, alpha "
                      f"{lamina.ALPHA} (points whose KV cache fits the pool). Cross-check: the event model over a link "
                      f"at BW_min (batch {cross['batch']}, context {cross['context']}) is {cross['slowdown']:.1%} "
                      f"slower than over an ideal link (alpha {cross['alpha']:.0%})")
    ax = fig.add_axes((0.08, 0.12, 0.66, 0.72))
    for i, (context, mine) in enumerate(rows.groupby("context")):
        ax.plot(mine["batch"], mine["bw_min_bytes_per_s"] / 1e9, marker="o", ms=4, color=palette_colour(i),
                label=f"context {context}")
    ax.hlines(lamina.PAPER["bw_min"] / 1e9, rows["batch"].min(), PAPER_BW_MAX_BATCH, color="black", ls="--",
              lw=1.1, label=f"paper: <= {lamina.PAPER['bw_min'] / 1e9:g} GB/s at batch <= {PAPER_BW_MAX_BATCH}")
    for j, link in enumerate(links.itertuples()):
        ax.axhline(link.bytes_per_s_per_direction / 1e9, color=palette_colour(6 + j), ls=":", lw=1.4,
                   label=f"{link.link} {link.bytes_per_s_per_direction / 1e9:g} GB/s")
    ax.set(xscale="log", yscale="log", xlabel="batch (requests, log)", ylabel="BW_min per NIC (GB/s, log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def pipeline_figure(rows: pd.DataFrame, resources: tuple[str, ...], title: str, from_s: float = 0.0,
                    caption: str = "") -> Figure:
    """A Gantt chart in microseconds from `from_s` (spans begun before it are cut there): a row per resource
    (`resources`, top to bottom; `pipeline_resources` of the run), a colour per micro-batch, the LM heads
    hatched, each bar labelled with its layer (and `post` for the ops after an attention) where it fits; `caption`
    (when given) under it."""
    start_us, end_us = from_s * US_PER_S, rows["end_s"].max() * US_PER_S
    fig = new_figure(13.0, 1.9 + 0.475 * len(resources))  # 3.8 in for ping-pong's four rows
    figure_title(fig, title)
    ax = fig.add_axes((0.09, 0.14, 0.76, 0.66))
    ax.set(xlim=(start_us, end_us + 0.01 * (end_us - start_us)), ylim=(len(resources) - 0.45, -0.55))
    for span in rows.itertuples():
        y = resources.index(span.resource)
        start, length = span.start_s * US_PER_S, (span.end_s - span.start_s) * US_PER_S
        head = span.part == "LM head"
        ax.broken_barh([(start, length)], (y - 0.38, 0.76), facecolors=palette_colour(span.micro_batch),
                       edgecolors="white", linewidth=0.6, hatch="//" if head else None)
        shown = min(start + length, end_us) - max(start, start_us)
        if shown > 0.03 * (end_us - start_us):
            label = "LM head" if head else f"L{span.layer}" + (" post" if span.part == "post" else "")
            ax.text(max(start, start_us) + shown / 2, y, label, ha="center", va="center", fontsize=7,
                    color="white")
    ax.set_yticks(range(len(resources)), resources, fontsize=8)
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_xlabel("time (us)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(handles=[Patch(color=palette_colour(j), label=f"micro-batch {j}")
                       for j in sorted(set(rows["micro_batch"]))],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if caption:
        figure_caption(fig, caption)
    return fig


# ------------------------------------------------------------------------------------------------ page
def write_lamina_report(records: list[dict], bw_rows: list[dict], cross: dict, summary: dict,
                        pipelines: dict[str, tuple[OffloadModel, PipelineRun]], out_dir: Path) -> Path:
    """Write the report of `lamina_reproduce.run_all`'s records, BW_min rows, cross-check and headline (`summary`)
    and of `lamina_reproduce.pipeline_runs`'s `pipelines` into `out_dir`, replacing its old report whole; returns
    the index path."""
    with atomic_dir(out_dir) as stage:
        _write_page(stage, records, bw_rows, cross, summary, pipelines)
    return out_dir / "index.html"


def _write_page(out_dir: Path, records: list[dict], bw_rows: list[dict], cross: dict, summary: dict,
                pipelines: dict[str, tuple[OffloadModel, PipelineRun]]) -> None:
    table = pd.DataFrame(lamina.headline_rows(summary), columns=["metric", "ours", "paper", "within", "reason"])
    save_table_and_figure(out_dir, "summary", table)
    points = points_rows(records)
    save_table_and_figure(out_dir, "points", points)
    low, high = lamina.PAPER["gain_min"], lamina.PAPER["gain_max"]
    for name, (rows, figure) in pair_figures(records).items():
        save_table_and_figure(out_dir, name, rows, figure)
    bw, links = pd.DataFrame(bw_rows), link_rows()
    save_table_and_figure(out_dir, "bw_min", bw, bw_min_figure(bw, links, cross))
    model, run = pipelines["pipeline"]
    schedule = schedule_label(model)
    why = pipeline_text(pipeline_breakdown(model, [lamina.TRACE_CONTEXT] * lamina.TRACE_BATCH, run))
    _write_pipeline(out_dir, "pipeline", model, run, why)
    staggered, staggered_pipeline = pipelines["pipeline_staggered"]
    staggered_schedule = schedule_label(staggered)
    _write_pipeline(out_dir, "pipeline_staggered", staggered, staggered_pipeline)
    cost = html.escape(cost_text(records))
    points_html = (
        "<h2>Points</h2><p>Every point of the reproduction: the devices' price per hour (<code>cost_per_h</code>, "
        f"{cost}), throughput and tokens per dollar over the steady window, the time-weighted "
        "batch, TBT p50 and p99 (the iterations' times, weighted by the tokens they emit) and, on Lamina's rows, "
        "divide-and-conquer's TBT saving measured two ways: one batch without micro-batches (a layer's critical "
        "path at the point's batch and the trace's mean context: <code>dc_saving_single_batch</code>) and the "
        "served ping-pong run against lamina-no-dc (<code>dc_saving_served</code> of the TBT p50, "
        "<code>dc_saving_served_p99</code> of the p99); the headline takes the largest "
        f"of each over the traces (the paper: up to {lamina.PAPER['dc_llama-65b']:.1%} on LLaMA-65B, "
        f"{lamina.PAPER['dc_llama3-70b']:.1%} on LLaMA3-70B). Data: <a href='points.csv'>points.csv</a>.</p>"
        + points.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.4g}"))
    sections = [
        points_html,
        section_html("throughput", "Throughput at similar cost",
                     "Decode only (prefill removed), offline: each point's requests all arrive at 0 and the KV cache "
                     f"sets the batch; {lamina.REQUEST_ROUNDS} x Lamina's batch requests, the same for both systems; "
                     "tokens per second over the steady window (<code>archsim.systems.lamina_reproduce</code>'s "
                     f"docstring), at {cost}. Over each pair: Lamina's gain; the paper's range +{low:.1%} to "
                     f"+{high:.1%}."),
        section_html("tokens_per_usd", "Tokens per dollar",
                     "The throughput above over the devices' price per hour (<code>tokens_per_usd</code> in "
                     "points.csv): what the cost difference of each pair adds to the throughput's. Over each pair: "
                     "Lamina's over vLLM's."),
        section_html("batch", "Batch",
                     f"The time-weighted mean batch over the steady window. {html.escape(batch_text(records))}. Over "
                     f"each pair: Lamina's over vLLM's (the paper's mean {lamina.PAPER['batch_growth']:g}x)."),
        section_html("bw_min", "BW_min per NIC",
                     f"The link bandwidth per NIC at which the transfers cost at most alpha = {lamina.ALPHA} of an "
                     f"iteration (<code>archsim.systems.offload.bw_min_bytes_per_s</code>), {lamina.BW_MODEL}: the "
                     "paper's bytes over alpha x (MTIME + ATIME), divided by the NICs one message is spread over (the "
                     "<code>nics</code> column, min(tp, b)). "
                     f"Cross-check: the event model, one batch of {cross['batch']} at context {cross['context']} "
                     f"without micro-batches, over a link at BW_min ({cross['bw_min_bytes_per_s'] / 1e9:.1f} GB/s, "
                     f"latency {cross['latency_s'] * 1e6:.1f} us) is {cross['slowdown']:.1%} slower than over an "
                     f"ideal link (the formula's alpha: {cross['alpha']:.0%}); the served ping-pong pipeline at that "
                     f"bandwidth is {cross['pipelined_slowdown']:.1%} slower (the formula bounds the unpipelined "
                     "iteration: the pipeline hides the transfers behind the other micro-batch's work). Link presets: "
                     + ", ".join(f"{html.escape(r.link)} {r.bytes_per_s_per_direction / 1e9:g} GB/s"
                                 for r in links.itertuples()) + "."),
        section_html("pipeline", f"Pipeline (event model, {schedule})",
                     "The attention-offloading pipeline of <code>archsim.systems.offload_events</code> on the system's "
                     f"schedule ({html.escape(schedule)}): a compute replica runs a micro-batch's dense slice while "
                     "the memory pool runs another's attention; q, then k and v, go out over the link and the "
                     "attention's output comes back. A replica's slice is the previous layer's ops after its "
                     "attention (<code>post</code>), after a token's last layer the LM head (hatched), then the "
                     "layer's norm and QKV. Drawn: a steady window, micro-batch 0's token "
                     f"{PIPELINE_TOKEN} over its first {PIPELINE_LAYERS} layers; the start-up (micro-batch 1 starts "
                     "a slice after micro-batch 0, whose first slice has no ops after an attention, so the replica "
                     f"idles) is in the whole run ({lamina.TRACE_TOKENS} tokens, every layer) as a Perfetto trace: "
                     f"<a href='pipeline_trace.json'>pipeline_trace.json</a>. {html.escape(why)}"),
        section_html("pipeline_staggered", f"Rotational staggered pipeline (event model, {staggered_schedule})",
                     f"The same requests on {html.escape(staggered.name)}: the lamina system with a staggered "
                     f"schedule, {html.escape(staggered_schedule)} of TP {lamina.STAGGERED_TP} (DOP "
                     f"({lamina.STAGGERED_TP * staggered.replicas}, {staggered.pool_devices})), beside the "
                     "reproduction (<code>lamina_reproduce.staggered_system</code>): slice k of micro-batch j runs on "
                     "replica (j + k) mod (n - 1), each micro-batch starting a slice / (n - 1) "
                     f"after the one before ({reference_notes('pim.md §3.4')}); the paper's 70B runs ping-pong, as one "
                     "replica fills its two H100s. The whole run as a Perfetto trace: "
                     "<a href='pipeline_staggered_trace.json'>pipeline_staggered_trace.json</a>."),
    ]
    outside = gaps_html(table, ", ")
    intro = ("<p>Ours (archsim's <code>lamina</code> and <code>vllm-h100</code> system specs in the serving "
             "simulator and the offloading event model) beside the paper's numbers (Chen et al., arXiv "
             f"2405.01814v2 §6; {reference_notes('pim.md §3')}). "
             "Where ours are outside the tolerance, the modelling reason (the metrics that share one together):"
             f"</p><ul>{outside}</ul>")
    write_index(out_dir, "Lamina reproduction", intro, table, sections)


def _write_pipeline(out_dir: Path, name: str, model: OffloadModel, run: PipelineRun, caption: str = "") -> None:
    """`name`.png/.csv, the steady window of a `TRACE_BATCH`-request run (`pipeline_rows` from micro-batch 0's
    token before `PIPELINE_TOKEN` back), and `name`_trace.json, the whole run; the title's steady time per token is
    the run's `token_s`, over its second half (`lamina_reproduce.TRACE_TOKENS` tokens: the start-up left out);
    `caption` under the chart."""
    from_s = run.token_done_s[0][PIPELINE_TOKEN - 1]
    rows = pipeline_rows(run.spans, token=PIPELINE_TOKEN, from_s=from_s)
    save_table_and_figure(out_dir, name, rows, pipeline_figure(
        rows, pipeline_resources(run.spans), f"Event model of {model.name}: {lamina.TRACE_BATCH} requests at "
        f"context {lamina.TRACE_CONTEXT}, {schedule_label(model)} (divide-and-conquer "
        f"{'on' if model.divide_and_conquer else 'off'}), micro-batch 0's token {PIPELINE_TOKEN}, its first "
        f"{PIPELINE_LAYERS} layers (steady: the start-up is in the trace); steady time per token "
        f"{run.token_s * 1e3:.2f} ms", from_s=from_s, caption=caption))
    trace = lamina.run_trace(model, run, lamina.TRACE_BATCH, lamina.TRACE_CONTEXT)
    (out_dir / f"{name}_trace.json").write_text(json.dumps(trace), encoding="utf-8")
