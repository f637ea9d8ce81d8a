"""The point report (`archsim report --run` / `--reproduction`): the edge that writes figures, CSVs and
index.html for one or more labelled Results. The numbers come from `archsim.report.tables`, the pictures from
`archsim.report.figures`; this module only names the files and writes them.

Files in the output directory: summary.csv, roofline.png/.csv (with roofline_levels.csv: the bound each level
inside DRAM sets on each Einsum, drawn as bars), energy.png/.csv, utilization.png/.csv, and, when
a paper comparison is given, paper.png/.csv; for event-model results stalls.png/.csv, and trace.json when the
timeline is given (and every point is drawn); index.html links them all. The folder is written whole
(`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one.

Only feasible points with finite latency and energy are drawn (and have rows in the figures' CSVs): the numbers
of an infeasible mapping are those of a design that does not fit. summary.csv keeps every point, and the page
says which points are left out and why, in place of figures when none is left.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from archsim.model.trace import Span, write_chrome_trace
from archsim.outputs import atomic_dir
from archsim.report import figures, tables
from archsim.report.labelled import Labelled
from archsim.systems.attribution import by_reason

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;font-size:13px}"
          "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:left}"
          "img{max-width:100%;border:1px solid #eee}")


def save_table_and_figure(out_dir: Path, name: str, table: pd.DataFrame, figure: Figure | None = None) -> None:
    """Write `table` as `out_dir`/NAME.csv (no index) and, when given, `figure` as NAME.png beside it."""
    table.to_csv(out_dir / f"{name}.csv", index=False)
    if figure is not None:
        figure.savefig(out_dir / f"{name}.png", bbox_inches="tight")  # no label or legend cut at an edge


def section_html(name: str, heading: str, text: str) -> str:
    """A report page's section: `heading` (escaped), `text` (HTML, not escaped) with a link to NAME.csv, and
    NAME.png shown as a link to itself."""
    return (f"<h2>{html.escape(heading)}</h2><p>{text} Data: <a href='{name}.csv'>{name}.csv</a>.</p>"
            f"<a href='{name}.png'><img src='{name}.png' alt='{html.escape(heading)}'></a>")


def not_drawn(point: Labelled) -> str:
    """Why `point` is left out of the figures ("" when it is drawn)."""
    result = point.result
    if not result.feasible:
        return f"infeasible: {result.reason or 'no reason given'}"
    bad = [name for name, value in (("latency", result.latency_s), ("energy", result.energy_pj))
           if not math.isfinite(value)]
    return f"{' and '.join(bad)} not finite" if bad else ""


def write_point_report(points: Sequence[Labelled], out_dir: Path, title: str, paper: pd.DataFrame | None = None,
                       timeline: Iterable[Span] | None = None) -> Path:
    """Write the report of `points` (and of `paper`, rows of `tables.paper_rows`, and of the points' event-model
    `timeline`, as trace.json unless a point is left out) into `out_dir`, replacing its old report whole;
    returns the index path. A folder that cannot be written is a SpecError naming it."""
    with atomic_dir(out_dir) as stage:
        write_index(stage, title, *_write_figures(stage, points, title, paper, timeline))
    return out_dir / "index.html"


def _write_figures(out_dir: Path, points: Sequence[Labelled], title: str, paper: pd.DataFrame | None,
                   timeline: Iterable[Span] | None) -> tuple[str, pd.DataFrame, list[str]]:
    """Write summary.csv, each figure with its CSV and trace.json; returns the page's intro, summary table and
    figure sections."""
    summary = tables.summary_rows(points)
    save_table_and_figure(out_dir, "summary", summary)
    reasons = [not_drawn(p) for p in points]
    drawn = [p for p, why in zip(points, reasons, strict=True) if not why]
    intro = "".join(f"<p><b>{html.escape(p.label)} is not drawn</b>: {html.escape(why)}.</p>"
                    for p, why in zip(points, reasons, strict=True) if why)
    sections = []
    if drawn:
        roofline = tables.roofline_rows(drawn)
        energy = tables.energy_rows(drawn)
        utilization = tables.utilization_rows(drawn)
        levels = tables.level_bound_rows(drawn)
        save_table_and_figure(out_dir, "roofline_levels", levels)
        save_table_and_figure(out_dir, "roofline", roofline, figures.roofline_figure(
            roofline, tables.ceiling_rows(drawn), levels, f"Roofline per Einsum: {title}"))
        save_table_and_figure(out_dir, "energy", energy, figures.energy_figure(energy, f"Energy by component: {title}"))
        save_table_and_figure(out_dir, "utilization", utilization,
                              figures.utilization_figure(utilization, f"Utilization: {title}"))
        sections += [
            section_html("roofline", "Roofline",
                         "Each Einsum alone: ops (a MAC counts one) over its share of DRAM bytes (a tensor's traffic "
                         "split evenly among the Einsums that read or write it), and ops over its compute time bounded "
                         "below by its bytes over each level's bandwidth. Group overlap is not applied, so these times "
                         "do not add up to the latency. Einsums that move no DRAM bytes sit in the shaded band. The x "
                         "axis counts DRAM bytes, so only DRAM's bandwidth is a slope (drawn up to the highest compute "
                         "ceiling); another level's bandwidth bounds an Einsum at ops / (its bytes there / bandwidth), "
                         "a bar at the Einsum's x (<a href='roofline_levels.csv'>roofline_levels.csv</a>)."),
            section_html("energy", "Energy",
                         "The Result's energy by (component, action); the CSV has every row, the figure groups those "
                         f"under {tables.OTHER_SHARE:.0%} of a bar into 'other'."),
            section_html("utilization", "Utilization", "Busy lane-cycles over lanes x latency cycles, per unit."),
        ]
        stalls = tables.stall_rows(drawn)
        if len(stalls):
            save_table_and_figure(out_dir, "stalls", stalls,
                                  figures.stall_figure(stalls, f"Stall sources (event model): {title}"))
            sections.append(section_html(
                "stalls", "Stall sources",
                "From the event model: the time each compute unit sat idle, by cause (waiting on an Einsum's tiles, "
                "DRAM bandwidth, a pipeline delay of the mapping, no work mapped to the unit), as a share of units "
                "x latency."))
    elif points:
        intro += "<p>No point can be drawn, so the report has no figures.</p>"
    if timeline is not None and len(drawn) == len(points):
        write_chrome_trace(timeline, out_dir / "trace.json")
        intro += ("<p>The event model's timeline is <a href='trace.json'>trace.json</a> (Chrome trace events; open "
                  "it in ui.perfetto.dev).</p>")
    if paper is not None and len(paper):
        save_table_and_figure(out_dir, "paper", paper,
                              figures.paper_figure(paper, "Ours vs the paper (FuseMax artifact)"))
        sections.append(section_html(
            "paper", "Ours vs the paper",
            f"Every point of the attention sweep with a published value ({paper.groupby('metric').size().max()} "
            "per metric): latency, DRAM traffic and energy, ours against the artifact's, on log-log axes with "
            "y = x."))
    shown = summary.drop(columns=["reason"] if summary.reason.eq("").all() else [])
    return intro, shown, sections


def _gaps(table: pd.DataFrame) -> dict[str, list[str]]:
    """The rows of a reproduction's summary outside their tolerance (`within` false; None is a figure without a
    claim): each `reason` once, with the `metric`s it explains, in first-seen order."""
    return by_reason((str(r["metric"]), str(r["reason"])) for r in table.to_dict("records")
                     if r["within"] is not None and not r["within"])


def gaps_html(table: pd.DataFrame, separator: str = "; ", numbered: bool = False) -> str:
    """The rows of a reproduction's summary outside their tolerance (`_gaps`), grouped by `reason`: an HTML list
    item per reason naming its `metric`s, or "none"; `numbered`, each item starts `reason N:`, the name
    `reasons_above` gives it in the page's table."""
    return "".join(f"<li>{f'<b>reason {i}</b>: ' if numbered else ''}{html.escape(separator.join(metrics))}: "
                   f"{html.escape(reason)}</li>"
                   for i, (reason, metrics) in enumerate(_gaps(table).items(), start=1)) or "<li>none</li>"


def reasons_above(table: pd.DataFrame) -> pd.DataFrame:
    """The page's copy of a reproduction summary `table`: a reason that `gaps_html(numbered=True)` writes once,
    above the table, replaced by `reason N above` in each row it explains (a long reason shared by many rows is
    read once); other reasons as they are. summary.csv keeps every row's reason."""
    numbers = {reason: i for i, reason in enumerate(_gaps(table), start=1)}
    return table.assign(reason=[f"reason {numbers[r]} above" if r in numbers else r for r in table["reason"]])


def write_whole(out_dir: Path, write_page: Callable[[Path, dict], None], data: dict) -> Path:
    """`write_page(folder, data)` into `out_dir`, replacing its old report whole (`atomic_dir`): the index path."""
    with atomic_dir(out_dir) as stage:
        write_page(stage, data)
    return out_dir / "index.html"


def write_index(out_dir: Path, title: str, intro_html: str, summary: pd.DataFrame, sections: Sequence[str]) -> Path:
    """`index.html`: the title, an intro, the summary table (its CSV is summary.csv), then the figure sections.
    `out_dir` is the staging folder of the caller's `atomic_dir`, so files are written in place."""
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{intro_html}"
        + summary.map(lambda v: math.nan if v is None else v).to_html(  # None, as NaN, an empty cell
            index=False, na_rep="", float_format=lambda x: f"{x:.4g}")
        + "<p>Data: <a href='summary.csv'>summary.csv</a>.</p>" + "".join(sections) + "</body></html>"
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")  # the page says so (meta charset), whatever the locale
    return index
