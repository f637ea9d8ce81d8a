"""Figures of a sweep report, drawn from the tables of `archsim.report.sweep`: DataFrames in, a matplotlib
`Figure` out (Agg canvas, no pyplot state, nothing written; the caller saves it).

Objectives are positive quantities spanning decades, so the Pareto and sensitivity axes are logarithmic; an
axis whose values are numbers spanning more than 3x is drawn on a log x axis too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from archsim.dse.spec import MAXIMISED
from archsim.report.figures import _colour, _figure, _title
from archsim.report.sweep import short_axis, value_label

LABELS = {"latency_s": "latency (s)", "energy_pj": "energy (pJ)", "area_um2": "area (um$^2$)",
          "dram_traffic_bytes": "DRAM traffic (bytes)", "edp": "energy x delay (pJ s)",
          "throughput_tok_s": "throughput (tokens/s)", "energy_per_token_j": "energy per token (J)",
          "cost_per_token_usd": "cost per token (USD)", "ttft_p50_s": "TTFT p50 (s)", "ttft_p99_s": "TTFT p99 (s)",
          "tbt_p50_s": "TBT p50 (s)", "tbt_p99_s": "TBT p99 (s)"}


def _label(metric: str) -> str:
    return LABELS.get(metric, metric)


def pareto_figure(rows: pd.DataFrame, objectives: Sequence[str], infeasible: int, title: str) -> Figure:
    """The feasible points on the first two objectives (log-log), the front ringed and joined as a staircase
    (the edge of the region it dominates, so its steps turn with a maximised objective) when there are two; with
    a third that varies, the sweep's own points are coloured by it. The points of other targets (GPU presets beside
    an architecture) are stars, one colour per target: the sweep's own target is the one with the most points."""
    x, y = objectives[0], objectives[1]
    fig = _figure(8.5, 6.0)
    _title(fig, title)
    own = rows.target.value_counts().index[0] if "target" in rows and len(rows) else None
    other_target = rows.target != own if own is not None else pd.Series(False, index=rows.index)
    others = rows[other_target]
    by_colour = len(objectives) > 2 and rows[~other_target][objectives[2]].nunique() > 1
    ax = fig.add_axes((0.11, 0.11, 0.66 if by_colour else 0.84, 0.76))
    ax.set(xscale="log", yscale="log", xlabel=_label(x), ylabel=_label(y))
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(0.08)
    ok = rows[rows.constraint_ok & ~other_target]
    broken = rows[~rows.constraint_ok & ~other_target]
    front = rows[rows.on_front].sort_values([x, y])
    colour: dict = {"color": _colour(0)}
    note = f"{len(rows)} feasible points drawn" + (f"; {infeasible} infeasible, not drawn" if infeasible else "")
    if len(objectives) > 2 and not by_colour and len(ok):
        note += f"; {objectives[2]} is {ok[objectives[2]].iloc[0]:.4g} at every point"
    if by_colour:
        lo, hi = ok[objectives[2]].min(), ok[objectives[2]].max()
        colour = {"c": ok[objectives[2]], "cmap": "viridis", "norm": LogNorm(lo, hi) if lo > 0 else Normalize(lo, hi)}
    drawn = ax.scatter(ok[x], ok[y], s=28, alpha=0.8, edgecolors="none", label="meets the constraints", zorder=2,
                       **colour)
    if len(broken):
        ax.scatter(broken[x], broken[y], marker="x", s=26, color="0.55", label="breaks a constraint", zorder=2)
    for i, (name, mine) in enumerate(others.groupby("target", sort=False)):
        ax.scatter(mine[x], mine[y], marker="*", s=110, color=_colour(i + 1), edgecolors="black", linewidths=0.4,
                   label=str(name), zorder=2)
    if len(objectives) == 2 and len(front) > 1:
        ax.step(front[x], front[y], where="pre" if x in MAXIMISED else "post", color="black", lw=1, zorder=1)
    ax.scatter(front[x], front[y], s=90, facecolors="none", edgecolors="black", linewidths=1.3,
               label=f"Pareto front ({len(front)})", zorder=3)
    if by_colour:
        bar = fig.colorbar(drawn, cax=fig.add_axes((0.82, 0.11, 0.025, 0.76)))
        bar.set_label(_label(objectives[2]))
    ax.set_title(note, fontsize=9, color="0.3")
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    return fig


def _numeric_span(values: Sequence) -> float | None:
    """max/min of `values` when all are positive numbers, else None."""
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    return max(values) / min(values)


def sensitivity_figure(rows: pd.DataFrame, objectives: Sequence[str], title: str) -> Figure:
    """A grid: one row of panels per objective, one column per axis; each panel the median (line) and best
    (dashed) of the objective over the points at each value of the axis."""
    axes_paths = list(dict.fromkeys(rows.axis))
    fig = _figure(max(3.4 * len(axes_paths), 7.0), 2.6 * len(objectives) + 1.0)
    _title(fig, title)
    grid = fig.subplots(len(objectives), len(axes_paths), squeeze=False,
                        gridspec_kw={"left": 0.09, "right": 0.98, "top": 1 - 0.9 / fig.get_figheight(),
                                     "bottom": 0.55 / fig.get_figheight() + 0.02, "hspace": 0.35, "wspace": 0.3})
    for j, path in enumerate(axes_paths):
        mine = rows[rows.axis == path]
        values = list(dict.fromkeys(mine.value))
        span = _numeric_span(values)
        positions = values if span is not None else list(range(len(values)))
        labels = [value_label(path, v) for v in values]
        for i, objective in enumerate(objectives):
            ax = grid[i][j]
            stats = mine[mine.objective == objective].set_index(mine[mine.objective == objective].value.map(str))
            median = [stats.loc[str(v), "median"] for v in values]
            best = [stats.loc[str(v), "best"] for v in values]
            ax.plot(positions, median, marker="o", color=_colour(i), lw=1.5, ms=4, label="median")
            ax.plot(positions, best, marker="^" if objective in MAXIMISED else "v", color=_colour(i), lw=1, ls="--",
                    ms=4, label="best")
            if all(v > 0 for v in median + best if not math.isnan(v)):
                ax.set_yscale("log")
            if span is not None and span > 3:
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.set_xticks(positions, labels if i == len(objectives) - 1 else [""] * len(labels), fontsize=7,
                          rotation=20 if max(map(len, labels)) > 6 else 0)
            ax.tick_params(axis="y", labelsize=7)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel(_label(objective), fontsize=8)
            if i == 0:
                ax.set_title(short_axis(path), fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="best")
    return fig


def targets_figure(rows: pd.DataFrame, objectives: Sequence[str], axis: str, title: str) -> Figure:
    """One panel per objective: its best value per target (a line each: the architecture's best design, each GPU
    preset) against the workload axis `axis`, log-log."""
    fig = _figure(4.2 * len(objectives) + 1.0, 4.6)
    _title(fig, title)
    grid = fig.subplots(1, len(objectives), squeeze=False,
                        gridspec_kw={"left": 0.08, "right": 0.98, "top": 0.84, "bottom": 0.14, "wspace": 0.3})[0]
    for ax, objective in zip(grid, objectives, strict=True):
        for i, (target, mine) in enumerate(rows.groupby("target", sort=False)):
            ax.plot(mine[axis], mine[objective], marker="o", ms=4, lw=1.5, color=_colour(i), label=target)
        ax.set(xscale="log", yscale="log", xlabel=short_axis(axis), ylabel=_label(objective))
        ax.minorticks_off()
        ticks = sorted(rows[axis].unique())
        ax.set_xticks(ticks, [value_label(axis, t) for t in ticks], fontsize=7)
        ax.grid(True, alpha=0.3)
    grid[0].legend(fontsize=7, loc="best")
    return fig


def heatmap_figure(table: pd.DataFrame, metric: str, axis_a: str, axis_b: str, title: str) -> Figure:
    """Best `metric` per cell, colour on a log scale, the value written in each cell; blank where no point
    is feasible."""
    values = table.to_numpy(dtype=float)
    fig = _figure(max(1.3 * values.shape[1] + 3.0, 6.5), max(0.7 * values.shape[0] + 2.2, 4.5))
    _title(fig, title)
    ax = fig.add_axes((0.2, 0.15, 0.6, 0.68))
    finite = values[np.isfinite(values) & (values > 0)]
    norm = LogNorm(finite.min(), finite.max()) if finite.size and finite.max() > finite.min() else None
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis_r", norm=norm, aspect="auto")
    ax.set_xticks(range(values.shape[1]), table.columns, fontsize=8)
    ax.set_yticks(range(values.shape[0]), table.index, fontsize=8)
    ax.set_xlabel(short_axis(axis_b))
    ax.set_ylabel(short_axis(axis_a))
    mid = math.sqrt(finite.min() * finite.max()) if finite.size else 0.0
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=8,
                    color="white" if v > mid else "black")
    bar = fig.colorbar(image, cax=fig.add_axes((0.83, 0.15, 0.025, 0.68)))
    bar.set_label(f"best {_label(metric)}")
    return fig
