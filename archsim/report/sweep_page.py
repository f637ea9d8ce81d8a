"""The sweep report (`archsim report --sweep`): the edge that writes figures, CSVs and index.html for the
records of one sweep store. The numbers come from `archsim.report.sweep`, the pictures from
`archsim.report.sweep_figures`; this module only names the files and writes them.

Files in the output directory: summary.csv, pareto.png/.csv, sensitivity.png/.csv, with two axes or more
heatmap_<axisA>_<axisB>.png/.csv over the first two axes (each work axis held at one value; the CSV has a row per
cell with the points behind it and those there that break a constraint), with GPU presets targets.png/.csv (each
target's best of each objective per workload size, with the point that has it, and the sizes it has none at),
and with infeasible points infeasible.csv (each with its reason; the page counts them by reason); index.html links
them all. A CSV holds each axis value as stored (`sweep.stored`: 1048576, 262144), as `archsim results` prints it;
the page and the figures show its label (`sweep.value_label`: 256 KiB), sensitivity.csv both. The folder is
written whole (`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one, and files it did
not write (a store kept beside the report) stay.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from archsim.outputs import atomic_dir
from archsim.report import sweep, sweep_figures
from archsim.report.point import save_table_and_figure, section_html, write_index


def heatmap_name(axis_a: str, axis_b: str) -> str:
    """`heatmap_DRAM-bandwidth_bytes_per_s_GlobalBuffer-capacity_bytes`: the short axis names, dots as dashes."""
    return "heatmap_" + "_".join(sweep.short_axis(a).replace(".", "-") for a in (axis_a, axis_b))


def write_sweep_report(df: pd.DataFrame, out_dir: Path, title: str, objectives: Sequence[str],
                       spec_axes: dict[str, list[Any]] | None = None, note: str = "",
                       remarks: Sequence[str] = ()) -> Path:
    """Write the report of the sweep records `df` (`archsim.dse.store.records`) into `out_dir`, replacing its old
    report whole; returns the index path. `spec_axes` (the sweep's axes) fixes the value order and keeps values
    with no stored point; `note` (text: a sweep not finished, say) heads the page; `remarks` (text: the serving
    block, values that are the same points as others') follow the counts, a paragraph each."""
    with atomic_dir(out_dir) as stage:
        _write(df, stage, title, objectives, spec_axes, note, remarks)
    return out_dir / "index.html"


def _infeasible_section(df: pd.DataFrame, out_dir: Path) -> str:
    """infeasible.csv (every infeasible point with its reason) and the page's table of reasons with counts."""
    sweep.whole_axes(sweep.infeasible_rows(df)).to_csv(out_dir / "infeasible.csv", index=False)
    reasons = sweep.reason_rows(df)
    return ("<h2>Infeasible points</h2><p>Points the model rejected, counted by reason; their metrics are left "
            "empty (no number for a design that does not fit) and they are in no figure. Every point with its "
            "reason: <a href='infeasible.csv'>infeasible.csv</a>.</p>" + reasons.to_html(index=False))


def _write(df: pd.DataFrame, out_dir: Path, title: str, objectives: Sequence[str],
           spec_axes: dict[str, list[Any]] | None, note: str, remarks: Sequence[str]) -> None:
    counts = sweep.counts(df, objectives)
    kind = sweep.records_kind(df)
    not_applying = sweep.not_applying(df)
    summary = sweep.summary_rows(df, objectives)
    pareto = sweep.pareto_rows(df, objectives)
    work = sweep.front_work(df)  # the axes the fronts (and the best points) are taken per
    works = ", ".join(sweep.short_axis(a) for a in work)  # "seq_len"; "" for one front
    per_work = f", one per {works}" if work else ""
    sensitivity = sweep.sensitivity_rows(df, objectives, spec_axes)
    save_table_and_figure(out_dir, "summary", summary)
    save_table_and_figure(out_dir, "pareto", sweep.whole_axes(pareto), sweep_figures.pareto_figure(
        pareto, objectives, counts["infeasible"], f"Pareto front{'s' if work else ''}{per_work}: {title}", work))
    save_table_and_figure(out_dir, "sensitivity", sweep.stored_values(sensitivity), sweep_figures.sensitivity_figure(
        sensitivity, objectives, f"Sensitivity per axis: {title}", not_applying, kind))
    front_text = " x ".join(objectives)
    labels = "; ".join(f"{o}: {sweep.metric_label(o, kind)}" for o in objectives)
    left_out = "; ".join(f"{sweep.short_axis(a)} leaves out {n} point{'s' if n > 1 else ''}"
                         for a, n in not_applying.items())
    sections = [
        section_html("pareto", f"Pareto front{'s' if work else ''}{per_work}",
                     f"Feasible points on {objectives[0]} and {objectives[1]}"
                     + (f", a panel per {works}" if work else "")
                     + (f", coloured by {objectives[2]} and marked by an axis" if len(objectives) > 2
                        else ", coloured by the target or an axis and marked by another")
                     + " where those have few values (the legend says which); each point of a small front (at most "
                       f"{sweep_figures.MAX_FRONT_NAMES} distinct objective vectors) is named, by a number explained "
                       f"in the caption where its name has no clear place. The front (ringed) is over {front_text}, "
                       f"{sweep.directions_text(objectives)}, among the points that meet the constraints"
                       + (f", and taken per work: a point is ranked against the points of its own "
                          f"{works} only (pareto.csv's on_front), as a smaller workload "
                          "would dominate every design of a larger one" if work else "")
                     + "; points that break a constraint are crosses, and points without a value of an objective (a "
                       "GPU preset's area) are drawn but off the front. "
                     + (f"A front point may look dominated on the two axes drawn: {objectives[2]}, the colour, keeps "
                        "it on the front. " if len(objectives) > 2 else "")
                     + f"Infeasible points are counted, not drawn. The objectives here ({labels})."),
        section_html("sensitivity", "Sensitivity",
                     "Per axis value, the median and the best (the min of a minimised objective, the max of a "
                     "maximised one) of each objective over the feasible points with that value that meet the "
                     "constraints and have a value of the objective, every other axis free: each axis's panels count "
                     "every point that axis applies to (sensitivity.csv's points), so a point an axis does not apply "
                     "to (a GPU preset has no arch. axis, TokenSelect no budget) is in every panel but that axis's"
                     + (f" ({left_out})" if left_out else "")
                     + "; those that break a constraint are counted in sensitivity.csv, not ranked. The panels of "
                       "an objective share one y axis (log where its values span a decade or more), so they compare "
                       "how far each axis moves it; an axis of one value has no panel (the figure names it)."),
    ]
    sizes = sweep.size_axes(df)
    if "target" in df and df.target.nunique() > 1 and sizes:
        held = sweep.held_work(df, sizes[:1], spec_axes)
        targets = sweep.target_rows(df, objectives, sizes[0], held)
        targets_left_out = sweep.target_left_out(df, sizes[0], held)
        at = f" at {sweep.held_text(held)}" if held else ""
        compared = [o for o in objectives
                    if targets.groupby("target")[sweep.best_column(o)].count().gt(0).sum() > 1] or objectives
        save_table_and_figure(out_dir, "targets", sweep.whole_axes(targets), sweep_figures.targets_figure(
            targets, compared, sizes[0], f"Architecture vs GPU presets{at}: {title}", targets_left_out))
        sections.append(section_html(
            "targets", "Architecture vs GPU presets",
            f"Per target, the best of each objective at each {sweep.short_axis(sizes[0])} over its feasible points "
            "that meet the constraints (a GPU preset has one point; the architecture's best design for each "
            "objective alone, so one row holds several designs: each best's <code>_at</code> column, "
            f"<code>{sweep.best_column(objectives[0])}_at</code> and the others, names its axis values)"
            + (f", the other work held at {sweep.held_text(held)} ({sweep.HELD_RULE})" if held else "") + ". GPU "
            "energy is board power (TDP) x time, an upper bound; GPU area is not modelled."
            + (f" {html.escape(sweep_figures.left_out_note(targets_left_out, sizes[0]))}"
               if len(targets_left_out) else "")))
    axes = sweep.mapped_axes(df)
    if len(axes) >= 2:
        name = heatmap_name(axes[0], axes[1])
        metric = sweep.heatmap_metric(df)
        heatmap = sweep.heatmap_table(df, axes[0], axes[1], metric, spec_axes)
        at = f" at {heatmap.held_text()}" if heatmap.held else ""
        what = f"Best {sweep.metric_label(metric, kind).split(' (')[0]} over the first two axes"
        figure = sweep_figures.heatmap_figure(heatmap, f"{what}{at}: {title}", kind)
        heatmap.rows().to_csv(out_dir / f"{name}.csv", index=False)
        figure.savefig(out_dir / f"{name}.png", bbox_inches="tight")  # no label or legend cut at an edge
        if heatmap.cell_points() is not None:
            cells = f"Each cell is {heatmap.cells_text()}."
        else:
            cells = ("Cells have different numbers of feasible points (a sample, not a grid): each shows its "
                     "number, and the CSV has it." if heatmap.points.to_numpy().any() else "")
        broken = heatmap.broken_cells().sum()
        sections.append(section_html(
            name, what,
            f"The lowest {metric} over the feasible points that meet the "
            f"constraints at each ({sweep.short_axis(axes[0])}, {sweep.short_axis(axes[1])}), every other axis free"
            + (f" but the work, held at {heatmap.held_text()} ({sweep.HELD_RULE}), so that no cell is the best of a "
               "smaller workload than its neighbours'" if heatmap.held else "")
            + "; blank where no feasible point was evaluated (with sampling, none may have been drawn there)."
            + (f" Feasible points that one of its axes (drawn or held) does not apply to are in no cell: "
               f"{heatmap.not_applying}." if heatmap.not_applying else "")
            + (f" {cells}" if cells else "")
            + (f" {broken} cell{'s' if broken > 1 else ''} hatched: every feasible point there breaks a constraint "
               "(the CSV's points_breaking_constraints counts them, its metric left empty)." if broken else "")))
    if counts["infeasible"]:
        sections.append(_infeasible_section(df, out_dir))
    count_text = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) + (
        f" (one front per {works})" if work else "")
    note_html = f"<p class='note'><strong>{html.escape(note)}</strong></p>" if note else ""
    remarks_html = "".join(f"<p>{html.escape(remark)}</p>" for remark in remarks if remark)
    write_index(out_dir, title, f"{note_html}<p>{html.escape(count_text)}.</p>{remarks_html}"
                                f"<h2>Best point per objective{html.escape(f', per {works}' if work else '')}</h2>",
                sweep.summary_rows(df, objectives, labels=True), sections)
