"""The Duplex reproduction report (`archsim report --reproduction duplex`): the edge that writes figures, CSVs and
index.html for `archsim.systems.duplex_reproduce.run_all`.

Files in the output directory, each PNG beside the CSV it is drawn from:
- summary.csv: ours vs the paper (`duplex_reproduce.headline_rows`).
- throughput.png/.csv: throughput over the GPU baseline per system at every closed-loop point (the small grid and
  the Bank-PIM comparison).
- opb.png/.csv: the Op/B of every op of one Mixtral-8x7B decoder layer in a decode step (`duplex_reproduce.opb_rows`,
  context `OPB_CONTEXT` tokens) at `OPB_BATCHES`, against the ridge points (peak FLOP/s over the bandwidth each unit
  reads its operands at: `duplex_reproduce.ridge_rows`) of the xPU (tensor peak over DRAM bandwidth), the Logic-PIM
  and the Bank-PIM (peak over internal bandwidth), from the duplex and duplex-bank-pim presets' device models;
  ridges.csv lists them.
- qps.png/.csv: the QPS sweep's latency curves (TTFT p90, the saturation criterion; TBT p99; end-to-end p50 and
  p99) per system, each system's saturation rate dashed, a bound on it (no rate of the sweep saturated the system)
  dotted with an arrow.
The folder is written whole (`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from archsim.outputs import atomic_dir
from archsim.report.figures import figure_title, new_figure, palette_colour, reference_notes
from archsim.report.point import save_table_and_figure, section_html, write_index
from archsim.systems import duplex_reproduce
from archsim.systems.duplex_reproduce import OPB_BATCHES, OPB_CONTEXT, OPB_MODEL

SYSTEM_ORDER = (*duplex_reproduce.SYSTEMS, duplex_reproduce.BANK_PIM, duplex_reproduce.TWO_GPUS)  # the reproduction's


def _system_colour(system: str) -> str:
    return palette_colour(SYSTEM_ORDER.index(system) if system in SYSTEM_ORDER else len(SYSTEM_ORDER))


# ------------------------------------------------------------------------------------------------ tables
def throughput_rows(records: list[dict]) -> pd.DataFrame:
    """One row per closed-loop record with `over_gpu`, its throughput over the GPU's at the same point."""
    return with_over_gpu(records)[[*POINT, "system", "throughput_tok_s", "gpu_tok_s", "over_gpu"]]


POINT = ["model", "lin", "lout", "batch"]  # what identifies a closed-loop point


def with_over_gpu(records: list[dict]) -> pd.DataFrame:
    """The records with `gpu_tok_s`, the GPU baseline's throughput at the same point, and `over_gpu`, theirs over
    it (also `archsim reproduce duplex`'s table)."""
    df = pd.DataFrame(records)
    gpu = df[df["system"] == duplex_reproduce.BASELINE].set_index(POINT)["throughput_tok_s"].rename("gpu_tok_s")
    df = df.join(gpu, on=POINT)
    df["over_gpu"] = df["throughput_tok_s"] / df["gpu_tok_s"]
    return df


# ------------------------------------------------------------------------------------------------ figures
def throughput_figure(rows: pd.DataFrame) -> Figure:
    """A group per closed-loop point, a bar per system: throughput over the GPU's (1 = the GPU)."""
    rows = rows.assign(group=rows["model"] + " (" + rows["lin"].astype(str) + ", " + rows["lout"].astype(str)
                       + ") b" + rows["batch"].astype(str))
    groups = list(dict.fromkeys(rows["group"]))
    systems = [s for s in SYSTEM_ORDER if s in set(rows["system"]) and s != duplex_reproduce.BASELINE]
    fig = new_figure(13.0, 6.5)
    figure_title(fig, "Throughput over the GPU baseline (duplex-gpu) per system, closed-loop serving at each point")
    ax = fig.add_axes((0.06, 0.34, 0.76, 0.56))
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        mine = rows[rows["system"] == system].set_index("group")["over_gpu"].reindex(groups)
        ax.bar(np.arange(len(groups)) - 0.4 + width * (i + 0.5), mine.fillna(0.0), width=width * 0.92,
               color=_system_colour(system), label=system)
    ax.axhline(1.0, color="0.3", lw=0.9)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=7, rotation=90)
    ax.set(ylabel="throughput / GPU's")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="system",
              title_fontsize=8)
    return fig


def opb_figure(ops: pd.DataFrame, ridges: pd.DataFrame) -> Figure:
    """Op/B per op (x) and batch (marker colour), log y, with each unit's ridge point as a horizontal line."""
    names = list(dict.fromkeys(ops["op"]))
    fig = new_figure(11.0, 5.2)
    figure_title(fig, f"Op/B of every op of a {OPB_MODEL} decode step (one decoder layer, context {OPB_CONTEXT}) "
                      "against each unit's ridge point at its peaks (peak FLOP/s / peak bandwidth, the placement's "
                      "convention): below a ridge the unit is memory-bound")
    ax = fig.add_axes((0.08, 0.16, 0.68, 0.68))
    for i, (batch, mine) in enumerate(ops.groupby("batch")):
        xs = [names.index(n) + (i - 1) * 0.15 for n in mine["op"]]
        ax.scatter(xs, mine["op_per_byte"], color=palette_colour(i), s=28, zorder=3, label=f"batch {batch}")
    for j, ridge in enumerate(ridges.itertuples()):
        ax.axhline(ridge.ridge_op_per_byte, color=palette_colour(4 + j), ls="--", lw=1.1,
                   label=f"{ridge.unit} ridge {ridge.ridge_op_per_byte:.3g}")
    ax.set(yscale="log", ylabel="Op/B (FLOPs per byte moved, log)")
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def qps_figure(rows: pd.DataFrame, saturation: dict) -> Figure:
    """Four panels against the offered QPS, a line per system, each system's saturation rate dashed where the sweep
    measured it (`_saturation_mark`); a bound (no rate saturated the system, or the lowest already did) is a dotted
    line with an arrow toward the side the rate lies on, and the legend says which it is."""
    tail = f"ttft_p{duplex_reproduce.SATURATION_PERCENTILE}_s"
    panels = ((tail, f"TTFT p{duplex_reproduce.SATURATION_PERCENTILE} (s, log)", True),
              ("tbt_p99_s", "TBT p99 (s)", False), ("e2e_p50_s", "end-to-end p50 (s)", False),
              ("e2e_p99_s", "end-to-end p99 (s)", False))
    model, (lin, lout) = duplex_reproduce.QPS_MODEL, duplex_reproduce.QPS_LENGTHS
    fig = new_figure(13.0, 4.6)
    figure_title(fig, f"QPS sweep: {model}, Poisson arrivals, Gaussian ({lin}, {lout}), max batch "
                      f"{duplex_reproduce.QPS_MAX_BATCH}, {int(rows['requests'].max())} requests per rate; dashed: "
                      f"the saturation rate (TTFT p{duplex_reproduce.SATURATION_PERCENTILE} above "
                      f"{duplex_reproduce.SATURATION_TTFT_MULTIPLE:g} x a lone prompt's); dotted with an arrow: a "
                      "bound, where no rate of the sweep (or its lowest) saturated the system")
    for k, (column, label, log) in enumerate(panels):
        ax = fig.add_axes((0.07 + k * 0.24, 0.25, 0.17, 0.56))
        for system, mine in rows.groupby("system", sort=False):
            ax.plot(mine["qps"], mine[column], marker="o", ms=4, color=_system_colour(system), label=system)
            if system in saturation:
                _saturation_mark(ax, system, saturation[system])
        ax.set(xlabel="offered load (requests/s)", ylabel=label, yscale="log" if log else "linear")
        ax.grid(True, alpha=0.3)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    return fig


BOUND_ARROWS = {"at least": 1, "at most": -1}  # `saturation_qps`'s bounds: the side of the line the rate lies on


def _saturation_mark(ax: Axes, system: str, rate: dict) -> Line2D:
    """Draw `system`'s saturation rate (`rate`: `saturation_qps`'s qps and bound) on `ax`: dashed where measured
    (interpolated between two rates of the sweep); a bound dotted, with an arrow at the top pointing to the side
    the rate lies on (the x axis widened to hold it). Returns the line, labelled for the legend (`duplex-pe-et
    ≥ 16 req/s (not saturated in the sweep)`)."""
    colour, qps = _system_colour(system), rate["qps"]
    if not rate["bound"]:
        return ax.axvline(qps, color=colour, ls="--", lw=0.9, label=f"{system} saturates at {qps:.1f} req/s")
    side = BOUND_ARROWS[rate["bound"]]
    why = "not saturated in the sweep" if side > 0 else "saturated at the sweep's lowest rate"
    lo, hi = ax.get_xlim()
    room = 0.15 * (hi - lo)  # the arrow's side of the axes holds it
    ax.set_xlim((lo, max(hi, qps + room)) if side > 0 else (min(lo, qps - room), hi))
    ax.annotate("", xy=(qps, 0.93), xycoords=ax.get_xaxis_transform(), xytext=(side * 16, 0),
                textcoords="offset points", arrowprops={"arrowstyle": "<|-", "color": colour, "lw": 1.2})
    return ax.axvline(qps, color=colour, ls=":", lw=1.2,
                      label=f"{system} {'≥' if side > 0 else '≤'} {qps:g} req/s ({why})")


# ------------------------------------------------------------------------------------------------ page
def write_duplex_report(records: list[dict], summary: dict, qps: list[dict], out_dir: Path) -> Path:
    """Write the report of `duplex_reproduce.run_all`'s records, headline (`summary`) and QPS records into
    `out_dir`, replacing its old report whole; returns the index path."""
    with atomic_dir(out_dir) as stage:
        _write_page(stage, records, summary, qps)
    return out_dir / "index.html"


def _write_page(out_dir: Path, records: list[dict], summary: dict, qps: list[dict]) -> None:
    table = pd.DataFrame(duplex_reproduce.headline_rows(summary), columns=["metric", "ours", "paper", "within",
                                                                          "reason"])
    save_table_and_figure(out_dir, "summary", table)
    throughput = throughput_rows(records)
    save_table_and_figure(out_dir, "throughput", throughput, throughput_figure(throughput))
    ops, ridges = pd.DataFrame(duplex_reproduce.opb_rows()), pd.DataFrame(duplex_reproduce.ridge_rows())
    save_table_and_figure(out_dir, "ridges", ridges)
    save_table_and_figure(out_dir, "opb", ops, opb_figure(ops, ridges))
    sweep = pd.DataFrame(qps)
    saturation = summary["qps"]["saturation_qps"]
    save_table_and_figure(out_dir, "qps", sweep, qps_figure(sweep, saturation))
    sections = [
        section_html("throughput", "Throughput over the GPU",
                     "Closed-loop continuous batching (Gaussian lengths, the batch kept full): each system's output "
                     "tokens per second over the GPU baseline's at the same point: Duplex+PE+ET on the paper's five "
                     "models at (256, 256) and (1024, 1024), batch 32-128; Duplex and Duplex+PE on four Mixtral "
                     "points; the Bank-PIM baseline on OPT-66B and Llama3-70B at (256, 256), batch 64 (the paper: "
                     "Bank-PIM beats Duplex on OPT's MHA, loses on Llama3's GQA)."),
        section_html("opb", "Op/B of a Mixtral decode step",
                     f"FLOPs over the bytes each op must move (its cascade's analysis), one decoder layer, context "
                     f"{OPB_CONTEXT}, at batches {', '.join(map(str, OPB_BATCHES))}. The MoE's Op/B is about the "
                     "tokens per expert (batch x top-k / experts), decode attention's about deg_grp (4 for Mixtral), "
                     "the projections' about the batch. Ridge points (<a href='ridges.csv'>ridges.csv</a>), at each "
                     "unit's peaks (the convention of a `crossover` placement rule): an op below a unit's ridge is "
                     "memory-bound there; the placement sends decode attention and MoE to the Logic-PIM where the "
                     "model times them faster there. "
                     "A unit whose model streams below its peak bandwidth (the Logic-PIM: its peak less refresh) "
                     "has its ridge at that rate beside it (streaming_ridge_op_per_byte): an op between the two is "
                     "memory-bound in the model, though above the line."),
        section_html("qps", "Latency against offered load",
                     "Poisson arrivals at each rate, the same requests for both systems. A rate is saturated when the "
                     f"p{duplex_reproduce.SATURATION_PERCENTILE} time to the first token exceeds "
                     f"{duplex_reproduce.SATURATION_TTFT_MULTIPLE:g} x a lone prompt's prefill: arrivals then wait for "
                     "a slot in the full batch. The saturation rate (dashed) is interpolated in log TTFT between the "
                     "last unsaturated and the first saturated rate (dotted, with an arrow, where no rate of the sweep "
                     "saturated the system: a bound); with few requests per rate it reads high "
                     "(<code>archsim.systems.duplex_reproduce</code>'s docstring). The issue's checks read each "
                     "system's capacity instead: the requests per second it completes with its batch always full."),
    ]
    capacity = summary["qps"]["capacity_qps"]
    rates = ", ".join(f"{html.escape(name)} {capacity[name]:.2f} req/s (read off the TTFT: "
                      f"{s['bound'] + ' ' if s['bound'] else ''}{s['qps']:.1f})" for name, s in saturation.items())
    outside = "".join(f"<li>{html.escape(str(r['metric']))}: {html.escape(str(r['reason']))}</li>"
                      for r in table.to_dict("records") if not r["within"])
    intro = (f"<p>Ours (archsim's Duplex system specs in the serving simulator) beside the paper's numbers "
             f"(Yun et al., MICRO'24; {reference_notes('pim.md §2')}). Capacities in the QPS sweep's setting: "
             f"{rates}. Where ours differ "
             f"beyond the tolerance, the modelling reason:</p><ul>{outside or '<li>none</li>'}</ul>")
    write_index(out_dir, "Duplex reproduction", intro, table, sections)
