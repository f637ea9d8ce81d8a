"""The Lamina reproduction report (`archsim report --reproduction lamina`): the edge that writes figures, CSVs and
index.html for `archsim.systems.lamina_reproduce.run_all`.

Files in the output directory, each PNG beside the CSV it is drawn from:
- summary.csv: ours vs the paper (`lamina_reproduce.headline_rows`).
- points.csv (a table on the page, no figure): every point of the reproduction (`points_rows`): its cost per hour,
  throughput, tokens per dollar, batch, TBT p50/p99 and, on Lamina's rows, divide-and-conquer's saving measured
  both ways the headline does (one batch's critical path; the served TBT p50 against lamina-no-dc's).
- throughput.png/.csv: Lamina's and vLLM's throughput per model x trace at equal cost, the gain printed over each
  pair (the paper: +16.1 % to +90.1 %).
- batch.png/.csv: the batch each system reaches (its KV cache's, vLLM's at most its default 256 sequences) per
  model x trace and their ratio (the paper's mean: 2.39x).
- bw_min.png/.csv: BW_min per NIC against the batch, a line per context, beside the paper's 30 GB/s and the
  bandwidths of the link presets lamina-gpu-initiated-400g and lamina-nccl-400g; the event model's cross-check
  (its slowdown over a link at BW_min) in the title and the text.
- pipeline.png/.csv and pipeline_trace.json: the event model's pipeline on the system's schedule (ping-pong or
  staggered, named from the system: `schedule_label`), one run of `lamina_reproduce.pipeline_run`, over
  micro-batch 0's first `PIPELINE_LAYERS` layers, a row per resource of the run (`pipeline_resources`), a colour
  per micro-batch; the JSON is the whole run as a Perfetto trace. The micro-batch and layer of a span are read
  from its name (`mb{j} t{t} L{k} ...`, the names `archsim.systems.offload_events.simulate_pipeline` gives its
  spans).
The folder is written whole (`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from archsim.model.trace import US_PER_S, Span
from archsim.outputs import atomic_dir
from archsim.report.figures import _colour, _figure, _title
from archsim.report.point import _save, _section, gaps_html, write_index
from archsim.systems import lamina_reproduce as lamina
from archsim.systems.links import load_link
from archsim.systems.offload import OffloadModel

SYSTEMS = (lamina.SYSTEM, lamina.BASELINE)  # the pair the bars compare (lamina-no-dc only enters the headline)
LINK_PRESETS = ("lamina-gpu-initiated-400g", "lamina-nccl-400g")
PIPELINE_LAYERS = 4
_TAG = re.compile(r"^mb(\d+) t(\d+) L(\d+) ")
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


def pipeline_rows(spans: tuple[Span, ...], layers: int = PIPELINE_LAYERS) -> pd.DataFrame:
    """The spans that start before micro-batch 0 has finished its first `layers` layers of token 0 (its output
    back over the link), with their micro-batch, token and layer."""
    rows = []
    for span in spans:
        j, t, k = map(int, _TAG.match(span.name).groups())
        rows.append({"resource": span.resource, "name": span.name, "micro_batch": j, "token": t, "layer": k,
                     "start_s": span.start_s, "end_s": span.end_s})
    df = pd.DataFrame(rows)
    first = df[(df["micro_batch"] == 0) & (df["token"] == 0) & (df["layer"] < layers)]
    return df[df["start_s"] < first["end_s"].max()].sort_values("start_s").reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ figures
def pair_figure(rows: pd.DataFrame, ylabel: str, title: str, ratio_text: Callable[[float], str]) -> Figure:
    """A group per model x trace, a bar per system (log y: the traces' throughputs and batches span decades),
    `ratio_text` of the ratio over each group."""
    groups = rows["model"] + "\n" + rows["trace"]
    xs = np.arange(len(rows))
    fig = _figure(12.0, 5.0)
    _title(fig, title)
    ax = fig.add_axes((0.07, 0.16, 0.76, 0.68))
    width = 0.8 / len(SYSTEMS)
    for i, system in enumerate(SYSTEMS):
        ax.bar(xs - 0.4 + width * (i + 0.5), rows[system], width=width * 0.92, color=_colour(i), label=system)
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
    fig = _figure(11.0, 5.2)
    _title(fig, f"BW_min per NIC, {lamina.BW_MODEL} on Lamina DOP {lamina.DOP[lamina.BW_MODEL]}, alpha "
                f"{lamina.ALPHA} (points whose KV cache fits the pool). Cross-check: the event model over a link at "
                f"BW_min (batch {cross['batch']}, context {cross['context']}) is {cross['slowdown']:.1%} slower "
                f"than over an ideal link (alpha {cross['alpha']:.0%})")
    ax = fig.add_axes((0.08, 0.12, 0.66, 0.72))
    for i, (context, mine) in enumerate(rows.groupby("context")):
        ax.plot(mine["batch"], mine["bw_min_bytes_per_s"] / 1e9, marker="o", ms=4, color=_colour(i),
                label=f"context {context}")
    ax.axhline(lamina.PAPER["bw_min"] / 1e9, color="black", ls="--", lw=1.1,
               label=f"paper: <= {lamina.PAPER['bw_min'] / 1e9:g} GB/s at batch <= 300")
    for j, link in enumerate(links.itertuples()):
        ax.axhline(link.bytes_per_s_per_direction / 1e9, color=_colour(6 + j), ls=":", lw=1.4,
                   label=f"{link.link} {link.bytes_per_s_per_direction / 1e9:g} GB/s")
    ax.set(xscale="log", yscale="log", xlabel="batch (requests, log)", ylabel="BW_min per NIC (GB/s, log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def pipeline_figure(rows: pd.DataFrame, resources: tuple[str, ...], title: str) -> Figure:
    """A Gantt chart in microseconds: a row per resource (`resources`, top to bottom; `pipeline_resources` of the
    run), a colour per micro-batch, each bar labelled with its layer where it fits."""
    end_us = rows["end_s"].max() * US_PER_S
    fig = _figure(13.0, 1.9 + 0.475 * len(resources))  # 3.8 in for ping-pong's four rows
    _title(fig, title)
    ax = fig.add_axes((0.09, 0.14, 0.76, 0.66))
    ax.set(xlim=(0, end_us * 1.01), ylim=(len(resources) - 0.45, -0.55))
    for span in rows.itertuples():
        y = resources.index(span.resource)
        start, length = span.start_s * US_PER_S, (span.end_s - span.start_s) * US_PER_S
        ax.broken_barh([(start, length)], (y - 0.38, 0.76), facecolors=_colour(span.micro_batch),
                       edgecolors="white", linewidth=0.6)
        if length > 0.03 * end_us:
            ax.text(start + length / 2, y, f"L{span.layer}", ha="center", va="center", fontsize=7, color="white")
    ax.set_yticks(range(len(resources)), resources, fontsize=8)
    ax.set_xlabel("time (us)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(handles=[Patch(color=_colour(j), label=f"micro-batch {j}") for j in sorted(set(rows["micro_batch"]))],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


# ------------------------------------------------------------------------------------------------ page
def write_lamina_report(records: list[dict], bw_rows: list[dict], cross: dict, summary: dict, out_dir: Path) -> Path:
    """Write the report of `lamina_reproduce.run_all`'s records, BW_min rows, cross-check and headline (`summary`)
    into `out_dir`, replacing its old report whole; returns the index path."""
    with atomic_dir(out_dir) as stage:
        _write_page(stage, records, bw_rows, cross, summary)
    return out_dir / "index.html"


def _write_page(out_dir: Path, records: list[dict], bw_rows: list[dict], cross: dict, summary: dict) -> None:
    table = pd.DataFrame(lamina.headline_rows(summary), columns=["metric", "ours", "paper", "within", "reason"])
    _save(out_dir, "summary", table)
    points = points_rows(records)
    _save(out_dir, "points", points)
    low, high = lamina.PAPER["gain_min"], lamina.PAPER["gain_max"]
    throughput = pair_rows(records, "throughput_tok_s")
    throughput["gain"] = throughput["ratio"] - 1
    _save(out_dir, "throughput", throughput, pair_figure(
        throughput, "decode throughput (tokens/s)", f"Throughput at equal cost, {lamina.SYSTEM} (DOP per model) vs "
        f"{lamina.BASELINE} (TP): the gain over each pair; the paper's gains: +{low:.1%} to +{high:.1%}",
        lambda ratio: f"{ratio - 1:+.1%}"))
    batch = pair_rows(records, "batch")
    _save(out_dir, "batch", batch, pair_figure(
        batch, "batch (time-weighted mean decodes)", f"Batch each system reaches (its KV cache's; vLLM's at most "
        f"{lamina.VLLM_MAX_NUM_SEQS}) and the ratio; the paper's mean ratio: {lamina.PAPER['batch_growth']:g}x",
        lambda ratio: f"{ratio:.2f}x"))
    bw, links = pd.DataFrame(bw_rows), link_rows()
    _save(out_dir, "bw_min", bw, bw_min_figure(bw, links, cross))
    model, run = lamina.pipeline_run()
    schedule = schedule_label(model)
    pipeline = pipeline_rows(run.spans)
    _save(out_dir, "pipeline", pipeline, pipeline_figure(
        pipeline, pipeline_resources(run.spans), f"Event model of {model.name}: {lamina.TRACE_BATCH} requests at "
        f"context {lamina.TRACE_CONTEXT}, {schedule} (divide-and-conquer "
        f"{'on' if model.divide_and_conquer else 'off'}), micro-batch 0's first {PIPELINE_LAYERS} layers; "
        f"steady time per token {run.token_s * 1e3:.2f} ms"))
    trace = lamina.run_trace(model, run, lamina.TRACE_BATCH, lamina.TRACE_CONTEXT)
    (out_dir / "pipeline_trace.json").write_text(json.dumps(trace))
    points_html = (
        "<h2>Points</h2><p>Every point of the reproduction: the devices' price per hour (<code>cost_per_h</code>, "
        "equal cost within a model), throughput and tokens per dollar over the steady window, the time-weighted "
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
        _section("throughput", "Throughput at equal cost",
                 "Decode only (prefill removed), offline: each point's requests all arrive at 0 and the KV cache "
                 f"sets the batch; {lamina.REQUEST_ROUNDS} x Lamina's batch requests, the same for both systems; "
                 "tokens per second over the steady window (<code>archsim.systems.lamina_reproduce</code>'s "
                 f"docstring). Over each pair: Lamina's gain; the paper's range +{low:.1%} to +{high:.1%}."),
        _section("batch", "Batch",
                 "The time-weighted mean batch over the steady window: with the scheduler unbounded, the KV "
                 "cache's. Over each pair: Lamina's over vLLM's (the paper's mean "
                 f"{lamina.PAPER['batch_growth']:g}x)."),
        _section("bw_min", "BW_min per NIC",
                 f"The link bandwidth per NIC at which the transfers cost at most alpha = {lamina.ALPHA} of an "
                 f"iteration (<code>archsim.systems.offload.bw_min_bytes_per_s</code>), {lamina.BW_MODEL}: the paper's "
                 "bytes over alpha x (MTIME + ATIME), divided by the NICs one message is spread over (the "
                 "<code>nics</code> column, min(tp, b)). "
                 f"Cross-check: the event model, one batch of {cross['batch']} at context {cross['context']} "
                 f"without micro-batches, over a link at BW_min ({cross['bw_min_bytes_per_s'] / 1e9:.1f} GB/s, "
                 f"latency {cross['latency_s'] * 1e6:.1f} us) is {cross['slowdown']:.1%} slower than over an "
                 f"ideal link (the formula's alpha: {cross['alpha']:.0%}); the served ping-pong pipeline at that "
                 f"bandwidth is {cross['pipelined_slowdown']:.1%} slower (the formula bounds the unpipelined "
                 "iteration: the pipeline hides the transfers behind the other micro-batch's work). Link presets: "
                 + ", ".join(f"{html.escape(r.link)} {r.bytes_per_s_per_direction / 1e9:g} GB/s"
                             for r in links.itertuples()) + "."),
        _section("pipeline", f"Pipeline (event model, {schedule})",
                 "The attention-offloading pipeline of <code>archsim.systems.offload_events</code> on the system's "
                 f"schedule ({html.escape(schedule)}): a compute replica runs a micro-batch's dense slice while "
                 "the memory pool runs another's attention; q, then k and v, go out over the link and the "
                 "attention's output comes back. The whole run (two tokens, every layer) as a Perfetto trace: "
                 "<a href='pipeline_trace.json'>pipeline_trace.json</a>."),
    ]
    outside = gaps_html(table, ", ")
    intro = ("<p>Ours (archsim's <code>lamina</code> and <code>vllm-h100</code> system specs in the serving "
             "simulator and the offloading event model) beside the paper's numbers (../shared/reference/pim.md §3). "
             "Where ours are outside the tolerance, the modelling reason (the metrics that share one together):"
             f"</p><ul>{outside}</ul>")
    write_index(out_dir, "Lamina reproduction", intro, table, sections)
