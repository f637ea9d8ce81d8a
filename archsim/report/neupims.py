"""The NeuPIMs reproduction report (`archsim report --reproduction neupims`): the edge that writes figures, CSVs
and index.html for the records of `archsim.systems.neupims_reproduce.reproduce` and the layer timelines of
`archsim.systems.neupims.layer_timeline` (the event replay's).

Files in the output directory, each PNG beside the CSV it is drawn from:
- summary.csv: ours vs the paper (`neupims_reproduce.compare`): `ours` over every point, `ours_fitting` over the
  points that fit the memory.
- throughput.png/.csv: decode throughput per mode, every model x dataset at batch 256 and GPT3-30B ShareGPT per
  batch (the CSV has every record, both panels are cuts of it).
- utilization.png/.csv: NPU (MAC) and PIM utilization per mode, GPT3-30B ShareGPT, per batch, with Table 4's
  values marked.
- timeline.png/.csv: one steady-state decoder layer of one device per mode as the event replay runs it, a row per
  unit (GPT3-30B ShareGPT batch 256, the first sampled batch), then NeuPIMs with SBI forced on (`SBI`, the Fig. 13
  ablation's full design: at this point SBI is slower, so `neupims` runs overlapped, as `neupims-no-sbi`), with two
  row buffers and with one (`ONE_ROW_BUFFER`), where the replay's contention on the shared HBM shows. The GPU
  baseline has no timeline: its
  model is a sum of kernel times on one device, with none of the NPU / PIM / HBM units the other modes share.
- ablation.png/.csv: Fig. 13 as a leave-one-out ablation (`neupims_reproduce.ablation`), the gain of each
  mechanism per batch, the paper's average where it gives one.
- attribution.png/.csv: ours / paper of every headline metric when the reproduction is rerun under each
  modelling alternative (`neupims_reproduce.attribution`), and the intro lists, for every gap beyond
  `neupims_reproduce.HEADLINE_TOLERANCE`, the choice that moves it furthest toward the paper.
Every point is timed, as the paper times it, whether or not its batch fits the memory
(`neupims_reproduce.reproduce`); the throughput and utilization CSVs carry `fits` and `unfit_reason`, and their
figures draw the bars of the points that do not fit hatched and unfilled (`UNFIT_LABEL`). The folder is written
whole (`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one.
"""

from __future__ import annotations

import html
import math
import textwrap
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from archsim.model.trace import US_PER_S, Span
from archsim.outputs import atomic_dir
from archsim.report.figures import figure_title, new_figure, palette_colour
from archsim.report.point import save_table_and_figure, section_html, write_index
from archsim.systems import neupims, neupims_reproduce
from archsim.systems.neupims_reproduce import HEADLINE_TOLERANCE

MODE_ORDER = ("gpu", "npu-only", "npu+pim", "neupims-no-sbi", "neupims")
TIMELINE_MODES = MODE_ORDER[1:]  # the GPU baseline has no layer timeline (module docstring)
SBI = neupims_reproduce.FULL  # the timeline's NeuPIMs with SBI forced on (the Fig. 13 ablation's full design)
ONE_ROW_BUFFER = f"{SBI}, one row buffer"  # the same with Newton's single row buffer
PAPER_FILL = "white"  # the paper's marks in the utilization figure: white, black-edged, seen on any bar
POINT = ("gpt3-30b", "sharegpt", 256)  # Table 4's point (model, dataset, batch): utilization marks and timeline
THROUGHPUT_BATCH = 256
UNFIT_LABEL = "hatched: does not fit the memory"  # the legend entry of a bar whose point does not fit
PHASES = {"pre": ("QKV generation", "#4c72b0"), "mha": ("MHA (GEMVs and softmax, K/V read)", "#dd8452"),
          "post": ("projection + FFN", "#8172b3")}  # the replay's phases (`schedule_events`)


def mode_timelines(model: str = POINT[0], dataset: str = POINT[1], batch: int = POINT[2],
                   seed: int = 0) -> dict[str, tuple[Span, ...]]:
    """The layer timeline of every NPU mode, and of NeuPIMs with SBI forced on (`SBI`) with two row buffers and
    with one (`ONE_ROW_BUFFER`), for the first batch `neupims_reproduce.reproduce` samples at this point."""
    draw = (seed, neupims_reproduce.DATASETS.index(dataset), batch, 0)
    contexts = neupims_reproduce.sample_contexts(draw, batch, dataset)
    sbi = neupims_reproduce.ablation_pairs()["SBI"][0]
    one_buffer = neupims.configure(sbi, {"devices.pim.row_buffers": 1}, ONE_ROW_BUFFER)
    return {getattr(mode, "name", mode): neupims.layer_timeline(neupims.system(mode, model), contexts)
            for mode in (*TIMELINE_MODES, sbi, one_buffer)}


def _modes(modes: Sequence[str]) -> list[str]:
    """Modes in report order (the presets first, then any other config by name)."""
    present = list(dict.fromkeys(modes))
    return [m for m in MODE_ORDER if m in present] + [m for m in present if m not in MODE_ORDER]


def _mode_colour(mode: str) -> str:
    return palette_colour(MODE_ORDER.index(mode) if mode in MODE_ORDER
                          else len(MODE_ORDER) + zlib.crc32(mode.encode()) % 8)


# ------------------------------------------------------------------------------------------------ tables
def throughput_rows(records: Sequence[dict]) -> pd.DataFrame:
    """One row per (mode, model, dataset, batch): tokens per second of one device group (TP x PP devices), and
    whether the batch fits the memory (`fits`, `unfit_reason`)."""
    df = pd.DataFrame(records)[["mode", "model", "dataset", "batch", "throughput_tok_s", "mean_context_tokens", "fits",
                                "unfit_reason"]]
    df["mode"] = pd.Categorical(df["mode"], _modes(df["mode"]), ordered=True)
    models = [m for m in neupims.MODELS if m in set(df["model"])] + sorted(set(df["model"]) - set(neupims.MODELS))
    df["model"] = pd.Categorical(df["model"], models, ordered=True)
    return (df.sort_values(["model", "dataset", "batch", "mode"]).astype({"mode": str, "model": str})
            .reset_index(drop=True))


def utilization_rows(records: Sequence[dict], paper: Mapping[str, float]) -> pd.DataFrame:
    """One row per (mode, batch) at POINT's model and dataset: NPU MAC and PIM utilization, the paper's (Table 4)
    where it gives one (NPU+PIM and NeuPIMs at batch 256), and whether the batch fits (`fits`, `unfit_reason`)."""
    model, dataset, batch = POINT
    rows = []
    for r in records:
        if r["model"] == model and r["dataset"] == dataset:
            at_point = r["batch"] == batch
            rows.append({"mode": r["mode"], "batch": r["batch"], "npu_util": r["npu_util"], "pim_util": r["pim_util"],
                         "paper_npu_util": paper.get(f"npu_util {r['mode']}", np.nan) if at_point else np.nan,
                         "paper_pim_util": paper.get(f"pim_util {r['mode']}", np.nan) if at_point else np.nan,
                         "fits": r["fits"], "unfit_reason": r["unfit_reason"]})
    df = pd.DataFrame(rows, columns=["mode", "batch", "npu_util", "pim_util", "paper_npu_util", "paper_pim_util",
                                     "fits", "unfit_reason"])
    df["mode"] = pd.Categorical(df["mode"], _modes(df["mode"]), ordered=True)
    return df.sort_values(["batch", "mode"]).astype({"mode": str}).reset_index(drop=True)


def timeline_rows(timelines: Mapping[str, Sequence[Span]]) -> pd.DataFrame:
    """One row per span: mode, resource (the replay's unit), name, phase, sub-batch, layer, start and end in
    seconds."""
    columns = ["mode", "resource", "name", "phase", "sub_batch", "layer", "start_s", "end_s"]
    rows = [{"mode": mode, "resource": s.resource, "name": s.name, "start_s": s.start_s, "end_s": s.end_s,
             **{k: s.args[k] for k in ("phase", "sub_batch", "layer")}}
            for mode in _modes(list(timelines)) for s in timelines[mode]]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------------------------ figures
def _grouped_bars(ax: Axes, table: pd.DataFrame, groups: list, group_labels: list[str], group_key: str, value: str,
                  modes: list[str]) -> None:
    """Bars of `value`: a group per `group_key` value, a bar per mode, hatched and unfilled where the point does not
    fit (`fits`)."""
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        mine = table[table["mode"] == mode].set_index(group_key).reindex(groups)
        xs = np.arange(len(groups)) - 0.4 + width * (i + 0.5)
        unfit = mine["fits"].eq(False).to_numpy()
        colour = _mode_colour(mode)
        ax.bar(xs[~unfit], mine[value].fillna(0.0)[~unfit], width=width * 0.92, color=colour)
        ax.bar(xs[unfit], mine[value].fillna(0.0)[unfit], width=width * 0.92, facecolor="white", edgecolor=colour,
               hatch="////", linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)), group_labels, fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.set_axisbelow(True)


def _legend_handles(modes: list[str], table: pd.DataFrame) -> list:
    """A patch per mode, and `UNFIT_LABEL`'s hatched patch where a point of `table` does not fit."""
    handles: list = [Patch(color=_mode_colour(mode), label=mode) for mode in modes]
    if table["fits"].eq(False).any():
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="////", label=UNFIT_LABEL))
    return handles


def throughput_figure(rows: pd.DataFrame) -> Figure:
    """(a) every model x dataset at THROUGHPUT_BATCH, (b) POINT's model and dataset per batch; log y; hatched bars
    do not fit the memory."""
    modes = _modes(rows["mode"])
    batch = THROUGHPUT_BATCH if (rows["batch"] == THROUGHPUT_BATCH).any() else int(rows["batch"].max())
    fig = new_figure(13.0, 5.2)
    figure_title(fig, "NeuPIMs reproduction: decode throughput per mode (tokens/s of one TP x PP device group over "
                      "the sampled batches)")
    at_batch = rows[rows["batch"] == batch].assign(group=lambda d: d["model"] + "|" + d["dataset"])
    groups = list(dict.fromkeys(at_batch["group"]))
    ax = fig.add_axes((0.06, 0.14, 0.5, 0.7))
    _grouped_bars(ax, at_batch, groups, [g.replace("|", "\n") for g in groups], "group", "throughput_tok_s", modes)
    ax.set(yscale="log", ylabel="throughput (tokens/s, log)", title=f"every model x dataset, batch {batch}")
    model, dataset, _ = POINT
    per_batch = rows[(rows["model"] == model) & (rows["dataset"] == dataset)]
    batches = sorted(per_batch["batch"].unique())
    ax2 = fig.add_axes((0.61, 0.14, 0.2, 0.7))
    _grouped_bars(ax2, per_batch, batches, [str(b) for b in batches], "batch", "throughput_tok_s", modes)
    ax2.set(yscale="log", xlabel="batch", title=f"{model} {dataset}, per batch")
    for a in (ax, ax2):
        a.title.set_fontsize(9)
    ax2.legend(handles=_legend_handles(modes, pd.concat([at_batch, per_batch])), loc="upper left",
               bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, title="mode", title_fontsize=8)
    return fig


def utilization_figure(rows: pd.DataFrame) -> Figure:
    """NPU MAC utilization (left) and PIM utilization (right) per batch, a bar per mode (hatched where the point
    does not fit the memory), the paper's as stars over the mode's bar, white with a black edge (`PAPER_FILL`: one
    in the bar's own colour vanished inside the bar)."""
    modes = _modes(rows["mode"])
    pim_modes = [m for m in modes if rows.loc[rows["mode"] == m, "pim_util"].gt(0).any()]
    batches = sorted(rows["batch"].unique())
    model, dataset, _ = POINT
    fig = new_figure(13.0, 5.0)
    figure_title(fig, f"Utilization per mode, {model} {dataset}: NPU = useful MAC time / iteration (the GPU's tensor "
                      "cores for gpu), PIM = channels' GEMV command time / iteration; stars: the paper's Table 4")
    for j, (column, paper_column, shown, label) in enumerate((
            ("npu_util", "paper_npu_util", modes, "NPU (MAC) utilization"),
            ("pim_util", "paper_pim_util", pim_modes, "PIM utilization"))):
        ax = fig.add_axes((0.06 + j * 0.5, 0.12, 0.42, 0.72))
        table = rows[rows["mode"].isin(shown)]
        _grouped_bars(ax, table, batches, [str(b) for b in batches], "batch", column, shown)
        width = 0.8 / max(len(shown), 1)
        notes: list[str] = []
        for i, mode in enumerate(shown):
            mine = table[table["mode"] == mode].set_index("batch").reindex(batches)
            xs = np.arange(len(batches)) - 0.4 + width * (i + 0.5)
            ours, paper = mine[column].to_numpy(float), mine[paper_column].to_numpy(float)
            marked = ~np.isnan(paper)
            ax.scatter(xs[marked], paper[marked], marker="*", s=160, color=PAPER_FILL, edgecolors="black",
                       linewidths=1.0, zorder=3)
            notes += [f"{mode} at batch {b}: ours {o:.0%}, paper {pv:.0%}"
                      for b, o, pv in zip(np.array(batches)[marked], ours[marked], paper[marked], strict=True)]
        top = max(table[column].max(), np.nanmax(table[paper_column].to_numpy(float), initial=0.0))
        ax.set(xlabel="batch", ylabel=label, ylim=(0, min(1.0, top * 1.35) if top > 0 else 1.0))
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.set_title(label, fontsize=9)
        star = Line2D([], [], ls="", marker="*", markersize=11, color=PAPER_FILL, markeredgecolor="black",
                      label="paper (Table 4)")
        ax.legend(handles=[*_legend_handles(shown, table), star], loc="upper left", fontsize=7, frameon=False)
        if notes:
            ax.text(0.99, 0.98, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "0.7", "pad": 3})
    return fig


def timeline_figure(rows: pd.DataFrame, title: str) -> Figure:
    """A Gantt panel per mode on one time axis (microseconds), a row per resource (the units in the order the
    replay first uses them), a colour per phase."""
    modes = _modes(rows["mode"])
    resources = list(dict.fromkeys(rows.sort_values("start_s", kind="stable")["resource"]))
    end_us = rows["end_s"].max() * US_PER_S if len(rows) else 1.0
    fig = new_figure(13.0, 1.2 + 1.55 * len(modes))
    figure_title(fig, title)
    renderer = fig.canvas.get_renderer()
    height = (0.86 - 0.08) / max(len(modes), 1)
    for k, mode in enumerate(modes):
        ax = fig.add_axes((0.09, 0.86 - (k + 1) * height + 0.03, 0.74, height - 0.05))
        ax.set(xlim=(0, end_us * 1.02), ylim=(len(resources) - 0.45, -0.55))
        mine = rows[rows["mode"] == mode]
        for _, span in mine.iterrows():
            y = resources.index(span["resource"])
            start, length = span["start_s"] * US_PER_S, (span["end_s"] - span["start_s"]) * US_PER_S
            colour = PHASES.get(span["phase"], ("", "0.6"))[1]
            ax.broken_barh([(start, length)], (y - 0.38, 0.76), facecolors=colour, edgecolors="white", linewidth=0.6)
            text = ax.text(start + length / 2, y, span["name"], ha="center", va="center", fontsize=6.5,
                           color="white", clip_on=True)
            box, bar = text.get_window_extent(renderer), ax.transData.transform([(start, 0), (start + length, 0)])
            if box.width > bar[1][0] - bar[0][0] - 2:
                text.remove()
        layer_us = mine["end_s"].max() * US_PER_S
        ax.axvline(layer_us, color="black", lw=1.0)
        ax.set_yticks(range(len(resources)), resources, fontsize=8)
        ax.set_title(f"{mode}: layer {layer_us:.1f} us", fontsize=9, loc="left")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        if k < len(modes) - 1:
            ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel("time within the layer (us)")
    fig.legend(handles=[Patch(color=c, label=name) for name, c in PHASES.values()], loc="lower right", ncol=3,
               bbox_to_anchor=(0.83, 0.875), fontsize=8, frameon=False)
    return fig


def ablation_figure(rows: pd.DataFrame) -> Figure:
    """Gain of each mechanism (with / without) per batch, a line each; the paper's averages dashed."""
    model, dataset = neupims_reproduce.ABLATION_CASE
    fig = new_figure(9.0, 5.0)
    figure_title(fig, f"Ablation (Fig. 13, {model} {dataset}): throughput with each mechanism over the full design "
                      "without it; dashed: the paper's average gain")
    ax = fig.add_axes((0.09, 0.12, 0.6, 0.72))
    for i, (mechanism, mine) in enumerate(rows.groupby("mechanism", sort=False)):
        ax.plot(mine["batch"], mine["gain"], marker="o", color=palette_colour(i), label=mechanism)
        paper = neupims_reproduce.ABLATION_PAPER.get(mechanism)
        if paper:
            ax.axhline(paper, color=palette_colour(i), ls="--", lw=1.0, label=f"{mechanism}: paper (average)")
    ax.axhline(1.0, color="0.4", lw=0.8)
    ax.set(xlabel="batch", ylabel="throughput with / without", xticks=sorted(rows["batch"].unique()))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return fig


def attribution_figure(rows: pd.DataFrame) -> Figure:
    """Ours / paper per headline metric (rows) and modelling variant (columns), coloured on a log scale around 1."""
    table = rows.pivot_table(index="metric", columns="variant", values="ratio", sort=False)
    ratios = table.to_numpy(float)
    fig = new_figure(13.0, 1.9 + 0.42 * len(table))
    figure_title(fig, "Ours / paper of each headline metric when the reproduction is rerun under another modelling "
                      f"choice (white = the paper's value; bold = within {HEADLINE_TOLERANCE:.0%})")
    ax = fig.add_axes((0.2, 0.04, 0.62, 0.74))
    span = max(float(np.nanmax(np.abs(np.log2(ratios)))), math.log2(1 + HEADLINE_TOLERANCE))
    image = ax.imshow(np.log2(ratios), cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    for (i, j), value in np.ndenumerate(ratios):
        dark = abs(math.log2(value)) > 0.6 * span
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if dark else "black",
                fontweight="bold" if abs(value - 1) <= HEADLINE_TOLERANCE else "normal")
    ax.set_xticks(range(len(table.columns)), [textwrap.fill(c, 14) for c in table.columns], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(table.index)), table.index, fontsize=8)
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    bar.set_label("ours / paper (log2 colour)", fontsize=8)
    bar.ax.yaxis.set_major_formatter(lambda v, _: f"{2 ** v:.2g}")
    return fig


# ------------------------------------------------------------------------------------------------ page
_UNFIT_TEXT = ("Hatched, unfilled bars are points whose batch does not fit the memory (weights and KV cache beyond a "
               "device's, or a PIM channel's KV beyond the channel); they are timed as the paper times them, and the "
               "CSV's <code>unfit_reason</code> says why.")
def write_neupims_report(records: list[dict], out_dir: Path, timelines: dict[str, tuple[Span, ...]],
                         paper: dict, attribution: list[dict], ablation: list[dict]) -> Path:
    """Write the NeuPIMs reproduction report of `records` (`neupims_reproduce.reproduce`), `timelines` (mode ->
    `neupims.layer_timeline`, e.g. `mode_timelines()`), `paper` (`neupims_reproduce.PAPER`) and `attribution`
    (`neupims_reproduce.attribution`) and `ablation` (`neupims_reproduce.ablation`) into `out_dir`, replacing its
    old report whole; returns the index path. A folder that cannot be written is a SpecError naming it."""
    with atomic_dir(out_dir) as stage:
        _write_page(stage, records, timelines, paper, attribution, ablation)
    return out_dir / "index.html"


def _write_page(out_dir: Path, records: list[dict], timelines: dict[str, tuple[Span, ...]], paper: dict,
                attribution: list[dict], ablation: list[dict]) -> None:
    model, dataset, batch = POINT
    summary = pd.DataFrame(neupims_reproduce.compare(records),
                           columns=["metric", "ours", "ours_fitting", "paper", "ratio"])
    throughput = throughput_rows(records)
    utilization = utilization_rows(records, paper)
    timeline = timeline_rows(timelines)
    save_table_and_figure(out_dir, "summary", summary)
    save_table_and_figure(out_dir, "throughput", throughput, throughput_figure(throughput))
    save_table_and_figure(out_dir, "utilization", utilization, utilization_figure(utilization))
    variants = pd.DataFrame(attribution, columns=["variant", "metric", "ours", "paper", "ratio"])
    save_table_and_figure(out_dir, "attribution", variants, attribution_figure(variants))
    gains = pd.DataFrame(ablation, columns=["mechanism", "batch", "with", "without", "gain"])
    save_table_and_figure(out_dir, "ablation", gains, ablation_figure(gains))
    save_table_and_figure(out_dir, "timeline", timeline, timeline_figure(
        timeline, f"One steady-state decoder layer of one device per mode as the event replay runs it, {model} "
                  f"{dataset} batch {batch} (first sampled batch); neupims with sub-batch interleaving: stages C "
                  "and D"))
    sections = [
        section_html("throughput", "Throughput",
                     f"Decode tokens per second of one device group (TP x PP devices) per mode, on a log axis: left, "
                     f"every model and dataset at batch {THROUGHPUT_BATCH}; right, {model} {dataset} at every batch. "
                     f"The CSV has every record of the reproduction. {_UNFIT_TEXT}"),
        section_html("utilization", "Utilization",
                     f"{model} {dataset} per batch: NPU utilization is the systolic arrays' useful MAC time over the "
                     "iteration (for gpu, the tensor cores'), PIM utilization the channels' GEMV command time over "
                     "the iteration, averaged over channels. Stars mark the paper's Table 4 at batch 256: NPU 28 % "
                     f"(NPU+PIM) and 65 % (NeuPIMs), PIM 17 % and 26 %. {_UNFIT_TEXT}"),
        section_html("timeline", "Timeline of one decoder layer",
                     f"{model} {dataset} batch {batch}, one device, one steady-state decoder layer as the event replay "
                     "(<code>schedule_events.replay_iteration</code>, drawn by <code>neupims.layer_timeline</code>) "
                     "runs the costs <code>system_model.layer_phases</code> gives: a row per unit, the NPU, the PIM, "
                     "and the HBM a one-row-buffer PIM shares with the NPU's transfers. Blocked modes run QKV "
                     "generation, MHA (on the PIM, its GEMVs and the softmax; or the NPU's vector units reading K and "
                     "V from HBM), then projection and FFN; npu+pim's single row buffer serialises the NPU's transfers "
                     "and the PIM's commands on the HBM. neupims runs sub-batch interleaving from batch 256 only "
                     "where it is faster than overlapped (<code>schedule.only_when_faster</code>), which it is not "
                     f"here, so it runs as neupims-no-sbi. '{SBI}' forces it on and shows "
                     "stages C and D, the NPU running one sub-batch's projection/FFN and the next layer's QKV while "
                     "the PIM runs the other sub-batch's MHA, and the PIM's idle gaps between them. "
                     f"'{ONE_ROW_BUFFER}' is the same schedule with one row buffer: the PIM's GEMVs wait for the NPU's "
                     "transfers on the shared HBM, and the next QKV generation waits for the GEMVs, so the layer runs "
                     "longer than the closed form's stage sum, which overlaps all of a stage's compute with the GEMVs. "
                     "The GPU baseline has no timeline (a sum of kernel times, none of these units)."),
        section_html("ablation", "Ablation",
                     "Fig. 13 as a leave-one-out ablation: each mechanism's gain is the full design (sub-batch "
                     "interleaving at every batch, dual row buffers, greedy channel balancing) over the same design "
                     "without it. A second row buffer only lets the NPU's HBM traffic run beside PIM commands, so its "
                     "gain needs SBI's concurrent NPU work; 'dual row buffers, no SBI' adds one to naive NPU+PIM, "
                     "where only the softmax can overlap."),
        section_html("attribution", "Which modelling choice explains a gap",
                     "The whole reproduction rerun under each modelling alternative below (applied to every mode), "
                     "its headline numbers as ours / paper. The alternatives are choices another simulator could make, "
                     "not fits to the paper; archsim's defaults are the 'ours' column.<ul>"
                     + "".join(f"<li><b>{html.escape(v.name)}</b>: {html.escape(v.choice)}</li>"
                               for v in neupims_reproduce.VARIANTS) + "</ul>"),
    ]
    reasons = "".join(f"<li>{html.escape(line)}</li>"
                      for line in neupims_reproduce.explain(attribution, HEADLINE_TOLERANCE))
    intro = (f"<p>Ours (the first-principles model of <code>archsim.systems.neupims</code>) beside the paper's "
             "headline numbers: throughput ratios are geometric means over models x datasets x batches, "
             f"utilizations are {model} {dataset} batch {batch} (Table 4). <code>ours</code> counts every point, "
             "as the paper's protocol does, whether or not its batch fits the memory; <code>ours_fitting</code> counts "
             "only the points that fit (a ratio over the points where both modes fit). Where ours differ by more than "
             f"{HEADLINE_TOLERANCE:.0%}, the modelling choice that moves the number furthest toward the paper "
             "(from the attribution section below; these gaps are the strict xfails of tests/test_neupims.py):"
             f"</p><ul>{reasons}</ul>")
    write_index(out_dir, "NeuPIMs reproduction", intro, summary, sections)
