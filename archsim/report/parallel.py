"""The multi-device attention report (`archsim parallel --out DIR`): the edge that writes scaling figures, CSVs and
index.html for the rows of `archsim.commands.parallel_cmd.grid_rows` (one per point of the grid, infeasible ones
with their reason; the metrics are `archsim.systems.seqpar.ParallelResult`'s).

Files in the output directory, each PNG beside the CSV it is drawn from:
- parallel.csv: every point's row as `archsim parallel --json` prints it (max_context_tokens a whole number, empty
  for a point the model refused); summary.csv: the page's table.
- time_vs_devices.png/.csv and efficiency_vs_devices.png/.csv when the feasible points have more than one device
  count; time_vs_seq_len.png/.csv and efficiency_vs_seq_len.png/.csv when they have more than one sequence length.
  A line per scheme (per scheme and value of the other axis when that varies too); time per layer on log-log axes
  (labelled at 1, 2 and 5 of each decade when the times span under two decades), efficiency (the one-device time / P
  over the time, issue 18's ideal) on a log x axis against 1.
A point's `note` (why its efficiency is above 1, or missing) is a column of the page's table, and the distinct notes
are listed under each efficiency figure with the points they hold for.
Infeasible points are listed with their reason and not drawn. The folder is written whole
(`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from archsim.outputs import atomic_dir
from archsim.report.figures import MARKERS, figure_title, label_few_decades, new_figure, palette_colour
from archsim.report.point import save_table_and_figure, section_html, write_index

AXES = {"devices": ("devices P", "P"), "seq_len": ("sequence length N (tokens)", "N")}  # label, short name
DASHES = ("-", "--", ":", "-.")
# an efficiency figure's line at 1: each scheme's efficiency is against its own one-device time, not a common one
IDEAL_LABEL = "ideal 1: each scheme against\nits own one-device time / P"
METRICS = {"time": ("latency_s", "time per layer (ms)", 1e3), "efficiency": ("efficiency", "efficiency", 1.0)}
SUMMARY_COLUMNS = ("scheme", "devices", "seq_len", "feasible", "latency_s", "compute_s", "comm_s", "exposed_comm_s",
                   "hidden_comm_s", "wait_s", "recompute_s", "ideal_s", "efficiency", "memory_bytes",
                   "max_context_tokens", "note", "reason")


def _tokens(n: int) -> str:
    """8192 -> 8K, 1048576 -> 1M, as the papers write lengths."""
    for scale, suffix in ((1024**2, "M"), (1024, "K")):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def _value_label(axis: str, value: int) -> str:
    return _tokens(value) if axis == "seq_len" else str(value)


def varying_axes(points: pd.DataFrame) -> list[str]:
    """The axes (devices, seq_len) with more than one value among the feasible points."""
    ok = points[points.feasible]
    return [axis for axis in AXES if ok[axis].nunique() > 1]


def _other(axis: str) -> str:
    return "seq_len" if axis == "devices" else "devices"


def scaling_rows(points: pd.DataFrame, axis: str, metric: str) -> pd.DataFrame:
    """The feasible points' `metric` column against `axis`: a `series` per scheme, per scheme and value of the other
    axis when that varies too; the series in the order the points come, each sorted by `axis`."""
    other = _other(axis)
    ok = points[points.feasible]
    series = ok.scheme
    if ok[other].nunique() > 1:
        series = ok.scheme + f" {AXES[other][1]}=" + ok[other].map(lambda v: _value_label(other, v))
    rows = pd.DataFrame({"series": series, "scheme": ok.scheme, "devices": ok.devices, "seq_len": ok.seq_len,
                         metric: ok[metric].astype(float)})
    rows["order"] = rows.series.map({name: i for i, name in enumerate(dict.fromkeys(rows.series))})
    return rows.sort_values(["order", axis], kind="stable").drop(columns="order").reset_index(drop=True)


def scaling_figure(rows: pd.DataFrame, axis: str, kind: str, title: str) -> Figure:
    """`kind` (time or efficiency) against `axis` on a log2 x axis, a line per series: a colour per scheme, a marker
    and dash per value of the other axis; time on a log y axis, efficiency against the ideal 1 (`IDEAL_LABEL`: each
    scheme's against its own one-device time)."""
    column, ylabel, scale = METRICS[kind]
    other = _other(axis)
    schemes = list(dict.fromkeys(rows.scheme))
    others = sorted(rows[other].unique())
    fig = new_figure(9.5, 5.5)
    figure_title(fig, title)
    ax = fig.add_axes((0.09, 0.11, 0.64, 0.75))
    for name, mine in rows.groupby("series", sort=False):
        k = others.index(mine[other].iloc[0])  # a series has one value of the other axis
        ax.plot(mine[axis], mine[column] * scale, marker=MARKERS[k % len(MARKERS)], ms=5,
                ls=DASHES[k % len(DASHES)], color=palette_colour(schemes.index(mine.scheme.iloc[0])), label=name)
    if kind == "efficiency":
        ax.axhline(1.0, color="0.4", ls="--", lw=1, label=IDEAL_LABEL)
        ax.set_ylim(0, max(1.05, rows[column].max() * 1.05))
    else:
        ax.set_yscale("log")
        label_few_decades(ax.yaxis, rows[column] * scale)
    ax.set_xscale("log", base=2)
    values = sorted(rows[axis].unique())
    ax.set_xticks(values, [_value_label(axis, v) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel=f"{AXES[axis][0]}, log", ylabel=ylabel + (", log" if kind == "time" else ""))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def notes_html(points: pd.DataFrame) -> str:
    """The distinct notes of the feasible `points`, each with the points it holds for, as an HTML list ("" when
    none has one)."""
    noted = points[points.feasible & points.note.notna() & points.note.astype(str).ne("")]
    items = "".join(
        f"<li>{html.escape(', '.join(f'{r.scheme} P={r.devices} N={_tokens(r.seq_len)}' for r in mine.itertuples()))}"
        f": {html.escape(note)}</li>" for note, mine in noted.groupby("note", sort=False))
    return f"<p>Notes on the efficiency:</p><ul>{items}</ul>" if items else ""


def write_parallel_report(rows: Sequence[dict], out_dir: Path, setting: str) -> Path:
    """Write the report of `rows` (the points of one `archsim parallel` grid, run in `setting`: the workload,
    topology and options they share) into `out_dir`, replacing its old report whole; returns the index path."""
    with atomic_dir(out_dir) as stage:
        _write_page(stage, pd.DataFrame(list(rows)), setting)
    return out_dir / "index.html"


def _write_page(out_dir: Path, points: pd.DataFrame, setting: str) -> None:
    points = points.astype({"max_context_tokens": "Int64"})  # whole tokens; an infeasible row's NaN stays empty
    save_table_and_figure(out_dir, "parallel", points)
    summary = points.reindex(columns=list(SUMMARY_COLUMNS))  # a row without a note (an older caller's) has none
    summary = summary.drop(columns=[c for c in ("note", "reason")
                                 if (summary[c].isna() | summary[c].astype(str).eq("")).all()])
    notes = notes_html(summary) if "note" in summary else ""
    save_table_and_figure(out_dir, "summary", summary)
    sections = []
    for axis in varying_axes(points):
        for kind in METRICS:
            name = f"{kind}_vs_{axis}"
            rows = scaling_rows(points, axis, METRICS[kind][0])
            save_table_and_figure(out_dir, name, rows, scaling_figure(
                rows, axis, kind, f"{METRICS[kind][1].capitalize()} vs {AXES[axis][0]}: {setting}"))
            text = ("One layer's time: the busiest device's compute plus the communication the schedule does not "
                    "hide." if kind == "time" else
                    "Each scheme's own one-device time of the same work divided by P, over its time: 1 is perfect "
                    "scaling"
                    + ("; where it is above 1 or missing, the notes under the figure say why." if notes else "."))
            sections.append(section_html(name, f"{METRICS[kind][1].capitalize()} vs {AXES[axis][0]}", text)
                            + (notes if kind == "efficiency" else ""))
    infeasible = points[~points.feasible]
    intro = "".join(f"<p><b>{html.escape(str(r.scheme))} P={r.devices} N={r.seq_len} is not drawn</b>: "
                    f"{html.escape(str(r.reason))}.</p>" for r in infeasible.itertuples())
    if not points.feasible.any():
        intro += "<p>No scaling figures: no point is feasible (each one's reason is above).</p>"
    elif not sections:
        intro += ("<p>No scaling figures: the feasible points have one device count and one sequence length "
                  "(give comma lists to --devices or --seq-len).</p>")
    intro += ("<p>Times per layer (<code>archsim.systems.seqpar</code>): every point's row is in "
              "<a href='parallel.csv'>parallel.csv</a>.</p>")
    write_index(out_dir, f"Multi-device attention: {setting}", intro, summary, sections)
