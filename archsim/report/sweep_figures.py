"""Figures of a sweep report, drawn from the tables of `archsim.report.sweep`: DataFrames in, a matplotlib
`Figure` out (Agg canvas, no pyplot state, nothing written; the caller saves it).

An objective's axis in the Pareto, targets and sensitivity figures is logarithmic when its values are positive and
span a decade or more (`_axis_scale`; the panels of a sensitivity row share one axis, over all their values), linear
under a decade (a log axis there shows no decade's label); one with a
zero or negative value (no exposed communication) is symlog or linear, so no point is silently dropped. A log axis
spanning under two decades is labelled at 1, 2 and 5 of each (`label_few_decades`). An axis whose values are
numbers spanning more than 3x is drawn on a log x axis too. A point with no value of an objective its target does
not model (a GPU's area) cannot be placed: the figure names it. A series whose every point is also another's (two
GPU presets with the same numbers) is drawn smaller (dashed in the targets figure) on top of it, and the caption
says so, so neither hides the other.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullLocator
from matplotlib.transforms import Bbox

from archsim.dse.pareto import distinct_vectors, front_size_text, groups
from archsim.dse.spec import MAXIMISED
from archsim.report.figures import figure_title, label_few_decades, marker_boxes, new_figure, palette_colour, place_text
from archsim.report.sweep import (
    HELD_RULE,
    Heatmap,
    axis_columns,
    best_column,
    metric_label,
    records_kind,
    short_axis,
    value_label,
)

DECADE = 10.0  # positive values spanning at least this ratio are drawn on a log axis, under it on a linear one
OWN_MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # the sweep's own points, one per value of an axis ("*": a GPU's)
MAX_COLOURED_VALUES = 10  # an axis with more values than this does not colour the Pareto figure's points
MAX_FRONT_NAMES = 6  # a front with at most this many distinct objective vectors has its points named
# Where a front point's name may go, in points from it, tried in order (dx toward the better x, dy the better y)
NAME_OFFSETS = ((6, 9), (-6, 9), (6, -9), (-6, -9), (6, 18), (-6, 18), (6, -18), (-6, -18), (8, 0), (-8, 0), (6, 27),
                (-6, 27), (6, -27), (-6, -27))
MAX_WORK_PANELS = 12  # a Pareto figure draws the fronts of at most this many works, a panel each
PANEL_COLUMNS = 2  # a Pareto figure's panels per row
PANEL_IN = (4.6, 3.6)  # a work's panel in a Pareto figure, inches (width, height)
THIRD_CMAP = "viridis"  # a third objective's colours
SMALLER = 0.45  # the marker area of a series drawn on top of another with the same points, per series under it
RASTER_POINTS = 2000  # a scatter of more points is drawn as an image inside a vector file (PDF, SVG)
TICK_GAP_PX = 4  # the least space between two x tick labels of a sensitivity panel
REFERENCE_KINDS = ("gpu",)  # a record's target_kind when the point is a reference target beside the sweep's own


def _axis_scale(values: pd.Series) -> dict:
    """The `Axes.set_xscale`/`set_yscale` arguments for `values`: log when every finite value is positive and they
    span at least a `DECADE`, linear under it. An axis with a zero or negative value (a point with no exposed
    communication, say), which a log axis would drop, is symlog, linear within the smallest nonzero |value|, when
    the nonzero |values| span more than a decade, else linear."""
    finite = values[np.isfinite(values.astype(float))]
    if (finite > 0).all():
        return {"value": "log" if len(finite) and finite.max() >= DECADE * finite.min() else "linear"}
    nonzero = finite[finite != 0].abs()
    if len(nonzero) and nonzero.max() > 10 * nonzero.min():
        return {"value": "symlog", "linthresh": float(nonzero.min())}
    return {"value": "linear"}


def _set_scale(ax: Axes, which: str, values: pd.Series) -> None:
    """Set `ax`'s x or y (`which`) scale for `values` (`_axis_scale`); a log one spanning under two decades is
    labelled at 1, 2 and 5 of each (`label_few_decades`), a linear one without an offset (its ticks read as
    values)."""
    scale = _axis_scale(values)
    axis = ax.xaxis if which == "x" else ax.yaxis
    getattr(ax, f"set_{which}scale")(**scale)
    if scale["value"] == "log":
        label_few_decades(axis, values.astype(float))
    elif scale["value"] == "linear":
        ax.ticklabel_format(axis=which, useOffset=False)


def _own(rows: pd.DataFrame) -> pd.Series:
    """Which rows are the sweep's own points: every kind but the reference targets' (`REFERENCE_KINDS`: the GPU
    presets of a `gpus:` block, beside an architecture), so a new kind of point is the sweep's own without being
    listed. Rows without a target_kind are all the sweep's own."""
    if "target_kind" not in rows:
        return pd.Series(True, index=rows.index)
    return ~rows.target_kind.isin(REFERENCE_KINDS)


def _references(rows: pd.DataFrame) -> set[str]:
    """The reference targets among `rows`' (the GPU presets beside an architecture), by their target_kind (`_own`;
    none where the rows carry no target_kind)."""
    return set(rows.target[~_own(rows)].astype(str))


def target_colours(targets: Iterable[str], references: Collection[str]) -> dict[str, str]:
    """One colour per target, the same in every figure of a report: the sweep's own target (the architecture) colour
    0, as the Pareto figure's own points; the reference targets (`references`: GPU presets), sorted by name, colours
    1, 2, ...; a further own target (a sparse sweep has several) the colours after them (`_own_colour`)."""
    names = sorted(set(map(str, targets)))
    theirs = [name for name in names if name in references]
    own = [name for name in names if name not in references]
    colours = {name: palette_colour(1 + i) for i, name in enumerate(theirs)}
    colours.update({name: _own_colour(i, len(theirs)) for i, name in enumerate(own)})
    return colours


def _own_colour(i: int, references: int) -> str:
    """The `i`-th colour of the sweep's own points (a target, an axis value): colour 0, then those after the
    `references` reference targets' (1 to `references`), so an own point never takes a GPU's colour."""
    return palette_colour(0 if i == 0 else references + i)


def _coincident(points: dict[str, set[tuple]]) -> dict[str, list[str]]:
    """The series (name -> its set of points) each of whose points is also a point of other series, with those
    series: it is drawn on top of them, smaller. Of two series with the same points, the later is the one on top."""
    names = list(points)
    out = {}
    for i, name in enumerate(names):
        under = [other for j, other in enumerate(names) if j != i and points[name] and points[name] <= points[other]
                 and (j < i or not points[other] <= points[name])]
        if under:
            out[name] = under
    return out


def _coincident_note(under: dict[str, list[str]], how: str) -> str:
    """`h100-sxm5 has the same values as h200-sxm (drawn smaller on top)` for each series of `_coincident`."""
    return "; ".join(f"{name} has the same values as {' and '.join(theirs)} ({how})" for name, theirs in under.items())


def _not_drawn(rows: pd.DataFrame, metrics: Sequence[str]) -> tuple[pd.Series, str]:
    """Which rows have no finite value of one of `metrics` (NaN: their target does not model it, such as a GPU's
    area), so no axis can place them, and a note naming them: how many, of which target, missing what."""
    missing = ~np.isfinite(rows[list(metrics)].astype(float))
    left = missing.any(axis=1)
    if not left.any():
        return left, ""
    names = rows.target.astype(str) if "target" in rows else pd.Series("point", index=rows.index)
    lacking = missing[left].apply(lambda row: ", ".join(row.index[row]), axis=1)
    groups = pd.DataFrame({"target": names[left], "lacking": lacking}).value_counts(sort=False)
    parts = [f"{target} x{n} ({what})" for (target, what), n in groups.items()]
    return left, f"{int(left.sum())} not drawn, lacking a metric their target does not model: {', '.join(parts)}"


@dataclass(frozen=True)
class _Encoding:
    """How the sweep's own points are drawn in every panel of a Pareto figure (`_encoding_of`): coloured by the
    values of `colour_by` (`colours`: label -> colour) or, where that is None and `third` is given, by that
    objective on `norm`; marked by the values of `marker_by` (`markers`: label -> marker)."""

    colour_by: str | None
    marker_by: str | None
    colours: dict[str, str]
    markers: dict[str, str]
    third: str | None
    norm: Normalize | None


def pareto_figure(rows: pd.DataFrame, objectives: Sequence[str], infeasible: int, title: str,
                  work: Sequence[str] = ()) -> Figure:
    """The feasible points on the first two objectives (each axis log, linear or symlog: `_axis_scale`), the front
    ringed and joined as a staircase (the edge of the region it dominates, so its steps turn with a maximised
    objective) when there are two; a panel per work (`work`: the axes the fronts are taken per, `sweep.front_work`,
    each value a panel with its own scales and its own front, the first `MAX_WORK_PANELS` of them), one panel
    without. With a third objective that varies, the sweep's own points are coloured by it (one scale for every
    panel), else by their target when the sweep has several, else by an axis (`_encoding`: the first categorical
    one), and marked by a further axis, so each point's design can be told; a front of at most `MAX_FRONT_NAMES`
    distinct objective vectors has each point named (`_name_front`). The points of reference targets (GPU presets
    beside an architecture: `target_kind` gpu) are stars, one colour per target, the one it has in every figure
    (`target_colours`); a preset with the same values as another is drawn smaller on top of it (`_coincident`). A
    front point is drawn on top of every other point (a point breaking a constraint at the same place included),
    its ring above it. The caption counts the points drawn and names those a figure cannot place (no value of an
    objective); the legend gives only what is drawn, and the front's distinct objective vectors when ties make them
    fewer than its points. Each objective is labelled by what it holds for the rows' kind (`metric_label`: a
    system's latency_s is its TBT p99). A scatter of more than `RASTER_POINTS` is rasterised."""
    x, y = objectives[0], objectives[1]
    left, left_note = _not_drawn(rows, (x, y))
    works = groups(rows, work)
    chosen = np.zeros(len(rows), dtype=bool)
    for _, positions in works[:MAX_WORK_PANELS]:
        chosen[positions] = True
    placed = rows[chosen & ~left.to_numpy()]
    references = _references(rows)
    encoding = _encoding_of(placed[placed.constraint_ok & _own(placed)], objectives, references, work)
    others = placed[~_own(placed)]
    stars = target_colours(rows.target, references) if len(others) else {}
    under = _coincident({str(name): set(zip(mine[x], mine[y], strict=True))
                         for name, mine in others.groupby("target")})
    notes = _pareto_notes(rows, placed, objectives, encoding, [left_note] if left_note else [], infeasible)
    notes += [_coincident_note(under, "drawn smaller on top")] if under else []
    if len(works) > 1:
        notes.append(f"a panel per {_work_name(work)}: the Pareto fronts are per work, each point ranked against "
                     "the points of its own panel only")
    if len(works) > MAX_WORK_PANELS:
        notes.append(f"the first {MAX_WORK_PANELS} of {len(works)} works drawn; pareto.csv has every front")
    if encoding.third:
        notes.append(f"a front point may look dominated on these two axes: the third objective, {encoding.third} "
                     "(colour), keeps it on the front")
    if len(works) <= 1:
        return _one_panel(placed, objectives, title, notes, encoding, stars, under, records_kind(rows))
    return _work_panels(placed, objectives, title, notes, encoding, stars, under, records_kind(rows), work,
                        [values for values, _ in works[:MAX_WORK_PANELS]])


def _pareto_notes(rows: pd.DataFrame, placed: pd.DataFrame, objectives: Sequence[str], encoding: _Encoding,
                  not_placed: list[str], infeasible: int) -> list[str]:
    """The first notes of a Pareto figure's caption: how many of the feasible `rows` it draws (`placed`), whether
    none of them is the sweep's own, why some are not drawn (`not_placed`), the `infeasible` points' count, and the
    third objective's one value where it does not vary (no colour scale)."""
    notes = [f"{len(placed)}{f' of {len(rows)}' if len(placed) < len(rows) else ''} feasible points drawn"]
    if len(rows) and not _own(rows).any():
        notes.append("none of the sweep's own points is feasible")
    notes += not_placed
    notes += [f"{infeasible} infeasible, not drawn"] if infeasible else []
    ok = placed[placed.constraint_ok & _own(placed)]
    if len(objectives) > 2 and encoding.third is None and len(ok):
        notes.append(f"{objectives[2]} is {ok[objectives[2]].iloc[0]:.4g} at every point")
    return notes


def _one_panel(rows: pd.DataFrame, objectives: Sequence[str], title: str, notes: list[str], encoding: _Encoding,
               stars: Mapping[str, str], under: Mapping[str, list[str]], kind: str | None) -> Figure:
    """A Pareto figure of one work (`pareto_figure`): one panel, the caption (`notes`, then the names of front
    points written as numbers) as its title, the legend inside it, the colour bar of a third objective right of it."""
    fig = new_figure(8.5, 6.0)
    figure_title(fig, title)
    ax = fig.add_axes((0.11, 0.11, 0.66 if encoding.third else 0.84, 0.76))
    numbered = [f"({number}) {name}" for number, name in _pareto_panel(
        ax, rows, objectives, encoding, stars, under, kind,
        _front_label(int(rows.on_front.sum()), distinct_vectors(rows[rows.on_front], objectives)))]
    if encoding.third:
        _colour_bar(fig, (0.82, 0.11, 0.025, 0.76), encoding, kind)
    ax.set_title(textwrap.fill("; ".join(notes + numbered), width=110), fontsize=9, color="0.3")
    ax.legend(handles=_legend_handles(encoding, [ax]), loc="best", fontsize=8, framealpha=0.9)
    return fig


def _work_panels(rows: pd.DataFrame, objectives: Sequence[str], title: str, notes: list[str], encoding: _Encoding,
                 stars: Mapping[str, str], under: Mapping[str, list[str]], kind: str | None, work: Sequence[str],
                 works: list[tuple]) -> Figure:
    """A Pareto figure of several works (`pareto_figure`): a panel per work (`works`: their values of the `work`
    axes, in order), titled by it and the size of its front, up to `PANEL_COLUMNS` a row; the colour bar and the
    legend right of the panels, the caption (`notes`, then the names of front points written as numbers) under
    them (the report saves with bbox_inches="tight")."""
    columns = min(len(works), PANEL_COLUMNS)
    lines = math.ceil(len(works) / columns)
    width, height = PANEL_IN
    bar_in = 1.1 if encoding.third else 0.0
    fig = new_figure(0.8 + columns * width + bar_in + 0.2, 0.9 + lines * height)
    figure_title(fig, title)
    span = (0.8 / fig.get_figwidth(), (0.8 + columns * width) / fig.get_figwidth())
    grid = fig.subplots(lines, columns, squeeze=False,
                        gridspec_kw={"left": span[0], "right": span[1], "top": 1 - 0.9 / fig.get_figheight(),
                                     "bottom": 0.55 / fig.get_figheight(), "wspace": 0.3, "hspace": 0.55})
    panels = list(grid.ravel())
    numbered = []
    positions = dict(groups(rows, work))
    for ax, values in zip(panels, works, strict=False):
        mine = rows.iloc[positions.get(values, np.arange(0))]
        name = _work_text(work, values)
        front = mine[mine.on_front]
        numbered += [f"({number}) at {name}: {named}" for number, named in _pareto_panel(
            ax, mine, objectives, encoding, stars, under, kind, "on its panel's Pareto front")]
        size = front_size_text(len(front), distinct_vectors(front, objectives) if len(front) else 0)
        ax.set_title(textwrap.fill(f"{name}: front of {size}", width=int(width * 13)), fontsize=9)
    for ax in panels[len(works):]:
        ax.set_visible(False)
    top, bottom = grid[0][0].get_position().y1, grid[-1][0].get_position().y0
    if encoding.third:
        _colour_bar(fig, (span[1] + 0.25 / fig.get_figwidth(), bottom, 0.2 / fig.get_figwidth(), top - bottom),
                    encoding, kind)
    fig.legend(handles=_legend_handles(encoding, panels), loc="upper left", fontsize=8, framealpha=0.9,
               bbox_to_anchor=(span[1] + (bar_in + 0.2) / fig.get_figwidth(), top))
    fig.text(span[0], 0.0, textwrap.fill("; ".join(notes + numbered), width=int(columns * width * 15)), fontsize=8,
             color="0.3", va="top")
    return fig


def _work_name(work: Sequence[str]) -> str:
    """`seq_len`, or `(seq_len, batch)`: the work axes by their short names (`short_axis`)."""
    names = [short_axis(a) for a in work]
    return names[0] if len(names) == 1 else f"({', '.join(names)})"


def _work_text(work: Sequence[str], values: tuple) -> str:
    """`seq_len 4096, batch 8`: a work's values of the `work` axes (`value_label`; `n/a` for a value an axis does not
    have, None: `dse.pareto.groups`)."""
    return ", ".join(f"{short_axis(a)} {'n/a' if v is None else value_label(a, v)}" for a, v in zip(work, values,
                                                                                                  strict=True))


def _colour_bar(fig: Figure, box: tuple[float, float, float, float], encoding: _Encoding, kind: str | None) -> None:
    """The colour bar of the third objective (`encoding.third`, on `encoding.norm`, as every panel colours it) in
    the figure box `box`, labelled by what it holds for the records' `kind`."""
    bar = fig.colorbar(ScalarMappable(norm=encoding.norm, cmap=THIRD_CMAP), cax=fig.add_axes(box))
    bar.set_label(metric_label(encoding.third, kind))


def _pareto_panel(ax: Axes, rows: pd.DataFrame, objectives: Sequence[str], encoding: _Encoding,
                  stars: Mapping[str, str], under: Mapping[str, list[str]], kind: str | None,
                  front_label: str) -> list[tuple[str, str]]:
    """Draw the feasible `rows` of one work (each placeable on the two axes) on `ax`: its scales, the sweep's own
    points within the constraints (`_own_points`), those breaking one (crosses), the reference targets' stars,
    each front point on top of them and ringed (`front_label` in the legend), the staircase of a two-objective
    front, and the names of a small front (`_name_front`); returns the names written as numbers there, with
    their numbers."""
    x, y = objectives[0], objectives[1]
    own = _own(rows)
    ok, broken, others = rows[rows.constraint_ok & own], rows[~rows.constraint_ok & own], rows[~own]
    front = rows[rows.on_front].sort_values([x, y])
    _set_scale(ax, "x", rows[x])
    _set_scale(ax, "y", rows[y])
    ax.set(xlabel=metric_label(x, kind), ylabel=metric_label(y, kind))
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(0.08)
    if len(ok):
        _own_points(ax, ok, objectives, encoding)
    if len(broken):
        ax.scatter(broken[x], broken[y], marker="x", s=26, color="0.55", label="breaks a constraint", zorder=2,
                   rasterized=len(broken) > RASTER_POINTS)
    for name, mine in others.groupby("target"):
        depth = len(under.get(str(name), []))
        for on_front, part in mine.groupby(mine.on_front.astype(bool)):
            ax.scatter(part[x], part[y], marker="*", s=110 * SMALLER**depth, color=stars[str(name)],
                       edgecolors="black", linewidths=0.4, label=str(name), zorder=(3 if on_front else 2) + 0.1 * depth)
    steps = []
    if len(objectives) == 2 and len(front) > 1:
        steps = ax.step(front[x], front[y], where="pre" if x in MAXIMISED else "post", color="black", lw=1, zorder=1)
    if len(front):
        ax.scatter(front[x], front[y], s=90, facecolors="none", edgecolors="black", linewidths=1.3,
                   label=front_label, zorder=3.5)
    ax.get_xlim()  # every point is drawn: the limits are final
    return _name_front(ax, front[_own(front)], (x, y), _varying(ok), _drawn_boxes(ax, rows, (x, y), steps))


def _levels(values: pd.Series, axis: str) -> list[str]:
    """The distinct values of `axis` among `values` as their labels (`value_label`: two values never share one),
    numbers ascending, other values in first-seen order."""
    first = {value_label(axis, v): v for v in reversed(values.tolist())}
    labels = list(dict.fromkeys(value_label(axis, v) for v in values))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in first.values())
    return sorted(labels, key=first.__getitem__) if numbers else labels


def _varying(ok: pd.DataFrame) -> list[str]:
    """The axis columns (`axis_columns`) with more than one value among the sweep's own points `ok`."""
    return [a for a in axis_columns(ok) if len(_levels(ok[a], a)) > 1]


def _encoding(ok: pd.DataFrame, by_colour: bool) -> tuple[str | None, str | None]:
    """What colours and what marks the sweep's own points `ok`: colour (none when a third objective colours them)
    by the target when they have several, else by the first axis of text values (a scheme) with at most
    `MAX_COLOURED_VALUES` values, else the first such axis of numbers; marker by the next axis (in axis order) with
    at most as many values as `OWN_MARKERS`. None for either where no column qualifies."""
    varying = _varying(ok)
    colour_by = None
    if not by_colour:
        few = [a for a in varying if len(_levels(ok[a], a)) <= MAX_COLOURED_VALUES]
        text = [a for a in few if not pd.api.types.is_numeric_dtype(ok[a])]
        colour_by = "target" if "target" in ok and ok.target.nunique() > 1 else next(iter(text + few), None)
    marker_by = next((a for a in varying if a != colour_by and len(_levels(ok[a], a)) <= len(OWN_MARKERS)), None)
    return colour_by, marker_by


def _encoding_of(ok: pd.DataFrame, objectives: Sequence[str], references: Collection[str],
                 work: Sequence[str]) -> _Encoding:
    """The `_Encoding` of the sweep's own points within the constraints that a figure draws (`ok`, every panel's):
    by a third objective where it varies (one colour scale, log where its values are positive), else by `_encoding`'s
    columns, a panel's work axes (`work`, one value a panel) left out of them."""
    third = objectives[2] if len(objectives) > 2 and ok[objectives[2]].nunique() > 1 else None
    colour_by, marker_by = _encoding(ok.drop(columns=[a for a in work if a in ok]), third is not None)
    norm = None
    if third:
        lo, hi = ok[third].min(), ok[third].max()
        norm = LogNorm(lo, hi) if lo > 0 else Normalize(lo, hi)
    markers = {level: OWN_MARKERS[i] for i, level in enumerate(_levels(ok[marker_by], marker_by))} if marker_by \
        else {}
    return _Encoding(colour_by, marker_by, _level_colours(ok, colour_by, references) if colour_by else {}, markers,
                     third, norm)


def _level_colours(ok: pd.DataFrame, colour_by: str, references: Collection[str]) -> dict[str, str]:
    """Each value of `colour_by` among `ok` (as `_levels` labels) -> its colour: a target's in every figure
    (`target_colours`), an axis value's the own colours in value order (`_own_colour`)."""
    if colour_by == "target":
        return target_colours(ok.target, references)
    return {level: _own_colour(i, len(references)) for i, level in enumerate(_levels(ok[colour_by], colour_by))}


def _own_points(ax: Axes, ok: pd.DataFrame, objectives: Sequence[str], encoding: _Encoding) -> None:
    """Scatter the sweep's own points that meet the constraints, a collection per (colour, marker) value of the
    `encoding` and place on or off the front (a front point on top of the points off it: a cross at its place
    does not hide it); without an encoding, labelled "meets the constraints"."""
    x, y = objectives[0], objectives[1]
    keys = [ok[a].map(lambda v, a=a: value_label(a, v)) if a else pd.Series("", index=ok.index)
            for a in (encoding.colour_by, encoding.marker_by)]
    for (colour, marker, on_front), mine in ok.groupby([*keys, ok.on_front.astype(bool)], sort=False):
        style = ({"c": mine[encoding.third], "cmap": THIRD_CMAP, "norm": encoding.norm} if encoding.third
                 else {"color": encoding.colours.get(colour, palette_colour(0))})
        ax.scatter(mine[x], mine[y], s=28, alpha=0.8, edgecolors="none", zorder=3 if on_front else 2,
                   marker=encoding.markers.get(marker, "o"), rasterized=len(ok) > RASTER_POINTS,
                   label=None if encoding.colour_by or encoding.marker_by else "meets the constraints", **style)


def _legend_handles(encoding: _Encoding, panels: Sequence[Axes]) -> list:
    """The legend of a Pareto figure: a coloured dot per value of the encoding's `colour_by` (a target by its name,
    an axis value as `scheme ring`), a grey marker per value of its `marker_by`, then each labelled artist of the
    `panels` once (crosses, stars, the front's rings): only what some panel draws."""
    handles = []
    for level, colour in encoding.colours.items():
        name = level if encoding.colour_by == "target" else f"{short_axis(encoding.colour_by)} {level}"
        handles.append(Line2D([], [], ls="", marker="o", color=colour, label=name))
    handles += [Line2D([], [], ls="", marker=marker, color="0.45", label=f"{short_axis(encoding.marker_by)} {level}")
                for level, marker in encoding.markers.items()]
    labelled: dict[str, object] = {}
    for ax in panels:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    return handles + list(labelled.values())


def _name_front(ax: Axes, front: pd.DataFrame, objectives: tuple[str, str], axes: Sequence[str],
                taken: list[Bbox]) -> list[tuple[str, str]]:
    """Name each distinct point of the front (the sweep's own points on it) by the values of `axes` there (`scheme
    ring/zigzag, devices 1` where several points coincide), when the front has at most `MAX_FRONT_NAMES` distinct
    points: beside it, on the side no feasible point reaches (better in both objectives) where that is clear, else
    the first clear place of `NAME_OFFSETS` (`place_text`, clear of the display boxes `taken`: the markers, the
    staircase, the names written); where none is clear, a number there (clear where one is) and the name in the
    caption. Returns those numbers with their names (`("1", "scheme ring, devices 2")`)."""
    places = front.groupby(list(objectives), sort=True)
    if not axes or not places.ngroups or places.ngroups > MAX_FRONT_NAMES:
        return []
    sx, sy = (1 if o in MAXIMISED else -1 for o in objectives)  # toward the side no feasible point reaches
    offsets = [(dx * sx, dy * sy) for dx, dy in NAME_OFFSETS]
    numbered = []
    for point, mine in places:
        name = ", ".join(f"{short_axis(a)} {'/'.join(_levels(mine[a], a))}" for a in axes)
        if place_text(ax, name, point, taken, offsets, color="0.2", zorder=4) is None:
            number = str(len(numbered) + 1)
            if place_text(ax, number, point, taken, offsets, color="0.2", zorder=4) is None:
                place_text(ax, number, point, [], offsets, color="0.2", zorder=4)  # over a marker, not lost
            numbered.append((number, name))
    return numbered


def _drawn_boxes(ax: Axes, points: pd.DataFrame, objectives: tuple[str, str], lines: Sequence[Line2D]) -> list[Bbox]:
    """The display boxes of `points`' markers and of each straight segment of `lines` (the staircase), padded by a
    pixel, that names must keep clear of. The axes' limits must be final."""
    boxes = marker_boxes(ax, points[list(objectives)].to_numpy(dtype=float))
    for line in lines:
        corners = ax.transData.transform(line.get_path().vertices)
        boxes += [Bbox(np.sort(np.array([a, b]), axis=0)).padded(1) for a, b in itertools.pairwise(corners)]
    return boxes


def _front_label(points: int, distinct: int) -> str:
    """`Pareto front (22)`; with ties, `Pareto front: 91 points (8 distinct objective vectors)`."""
    return f"Pareto front ({points})" if points == distinct else f"Pareto front: {front_size_text(points, distinct)}"


def _numeric_span(values: Sequence) -> float | None:
    """max/min of `values` when all are positive numbers, else None."""
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        return None
    return max(values) / min(values)


def sensitivity_figure(rows: pd.DataFrame, objectives: Sequence[str], title: str,
                       not_applying: Mapping[str, int] | None = None, kind: str | None = None) -> Figure:
    """A grid: one row of panels per objective, one column per axis of several values (an axis of one value, whose
    panels would each be one point, is named in a note under the grid instead, unless no axis has several); each
    panel the median (line) and best (dashed) of the objective over the points at each value of the axis
    (`sweep.sensitivity_rows`). A row shares one y axis, scaled and labelled by `_set_scale` over every value of its
    objective in the figure (log where they span a decade or more, in every panel of the row alike), so the panels of
    a row compare how far each axis moves the objective, and labelled by what the objective holds for the records'
    `kind` (`metric_label`). An axis's title names the feasible points it does not apply to (`not_applying`:
    `sweep.not_applying`), which its panels leave out; a panel with no point says so, and a figure of no axis value
    (`rows` empty) says that instead of a grid."""
    values_of = {path: list(dict.fromkeys(rows[rows.axis == path].value)) for path in dict.fromkeys(rows.axis)}
    single = {path: values[0] for path, values in values_of.items() if len(values) == 1}
    axes_paths = [path for path in values_of if path not in single] or list(values_of)
    fig = new_figure(max(3.4 * len(axes_paths), 7.0), 2.6 * len(objectives) + 1.0)
    figure_title(fig, title)
    if not axes_paths:
        fig.text(0.5, 0.5, "no axis value has a point to draw", ha="center", va="center", color="0.3")
        return fig
    grid = fig.subplots(len(objectives), len(axes_paths), squeeze=False, sharey="row",
                        gridspec_kw={"left": 0.09, "right": 0.98, "top": 1 - 0.9 / fig.get_figheight(),
                                     "bottom": 0.55 / fig.get_figheight() + 0.02, "hspace": 0.35, "wspace": 0.3})
    drawn = rows[rows.axis.isin(axes_paths)]
    row_values = {o: pd.concat([drawn.loc[drawn.objective == o, c] for c in ("median", "best")]).astype(float)
                  for o in objectives}
    for j, path in enumerate(axes_paths):
        mine = rows[rows.axis == path]
        values = values_of[path]
        span = _numeric_span(values)
        positions = values if span is not None else list(range(len(values)))
        labels = [value_label(path, v) for v in values]
        for i, objective in enumerate(objectives):
            ax = grid[i][j]
            stats = mine[mine.objective == objective].set_index(mine[mine.objective == objective].value.map(str))
            median = [stats.loc[str(v), "median"] for v in values]
            best = [stats.loc[str(v), "best"] for v in values]
            ax.plot(positions, median, marker="o", color=palette_colour(i), lw=1.5, ms=4, label="median")
            ax.plot(positions, best, marker="^" if objective in MAXIMISED else "v", color=palette_colour(i), lw=1,
                    ls="--", ms=4, label="best")
            _set_scale(ax, "y", row_values[objective])
            if not np.isfinite(np.array(median + best, dtype=float)).any():
                ax.text(0.5, 0.5, "no feasible point within the constraints", transform=ax.transAxes, ha="center",
                        va="center", fontsize=7, color="0.3")
            if span is not None and span > 3:
                ax.set_xscale("log")
                ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(positions, labels if i == len(objectives) - 1 else [""] * len(labels), fontsize=7,
                          rotation=20 if max(map(len, labels)) > 6 else 0)
            ax.tick_params(axis="y", which="both", labelsize=7)
            ax.yaxis.get_offset_text().set_fontsize(7)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel(metric_label(objective, kind), fontsize=8)
            if i == 0:
                ax.set_title(short_axis(path) + _left_out_text((not_applying or {}).get(path, 0)), fontsize=9)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="best")
    if len(axes_paths) < len(values_of):
        fig.text(0.09, 0.0, "One value, no panel: " + ", ".join(f"{short_axis(path)} {value_label(path, value)}"
                                                                  for path, value in single.items()) + ".",
                 fontsize=8, color="0.3", va="top")  # under the x labels: the report saves with bbox_inches="tight"
    fig.draw_without_rendering()  # places the tick labels, so that their extents can be compared
    for ax in grid[-1]:
        _thin_tick_labels(ax)
    return fig


def _left_out_text(points: int) -> str:
    """`\n(leaves out 2 points it does not apply to)` under an axis's panel title; "" for none."""
    return f"\n(leaves out {points} point{'s' if points > 1 else ''} it does not apply to)" if points else ""


def _thin_tick_labels(ax) -> None:
    """Blank each x tick label of `ax` that would overlap the last one kept, left to right (12 buffer sizes on a
    log axis, `3 MiB4 MiB6 MiB`, keep every second or third). The figure must have been laid out."""
    renderer = ax.figure.canvas.get_renderer()
    labels = ax.get_xticklabels()
    texts = [label.get_text() for label in labels]
    kept = None
    for n in sorted(range(len(labels)), key=lambda n: labels[n].get_window_extent(renderer).x0):
        box = labels[n].get_window_extent(renderer)
        if not texts[n]:
            continue
        if kept is not None and box.x0 < kept.x1 + TICK_GAP_PX:
            texts[n] = ""
        else:
            kept = box
    ax.set_xticks(ax.get_xticks(), texts)


def targets_figure(rows: pd.DataFrame, objectives: Sequence[str], axis: str, title: str,
                   left_out: pd.DataFrame | None = None) -> Figure:
    """One panel per objective: its best value per target (`best_column`: a line each, the architecture's best
    design for that objective alone, each GPU preset) against the workload axis `axis` on a log x axis (the y axis
    by `_set_scale`); a panel names the values it cannot place (a target that does not model its objective) and the
    targets with another's values there (`_coincident`: drawn dashed, with smaller markers, on top of it); a note
    under the panels names the sizes a target has no point at and why (`left_out`: `sweep.target_left_out`). A
    target's colour is the one it has in every figure (`target_colours`)."""
    fig = new_figure(4.2 * len(objectives) + 1.0, 4.6)
    figure_title(fig, title)
    grid = fig.subplots(1, len(objectives), squeeze=False,
                        gridspec_kw={"left": 0.08, "right": 0.98, "top": 0.84, "bottom": 0.14, "wspace": 0.3})[0]
    colours = target_colours(rows.target, _references(rows))
    for ax, objective in zip(grid, objectives, strict=True):
        column = best_column(objective)
        finite = rows[np.isfinite(rows[column].astype(float))]
        under = _coincident({str(target): set(zip(mine[axis], mine[column], strict=True))
                             for target, mine in finite.groupby("target", sort=False)})
        for target, mine in rows.groupby("target", sort=False):
            depth = len(under.get(str(target), []))
            ax.plot(mine[axis], mine[column], marker="o", ms=4 * math.sqrt(SMALLER) ** depth, lw=1.5,
                    ls="--" if depth else "-", color=colours[str(target)], label=target, zorder=2 + depth)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        _set_scale(ax, "y", rows[column])
        ax.set(xlabel=short_axis(axis), ylabel=f"best {metric_label(objective, records_kind(rows))}")
        ticks = sorted(rows[axis].unique())
        ax.set_xticks(ticks, [value_label(axis, t) for t in ticks], fontsize=7)
        ax.grid(True, alpha=0.3)
        notes = [_not_drawn(rows, (column,))[1], _coincident_note(under, "dashed, smaller markers, on top")]
        ax.set_title(textwrap.fill("; ".join(n for n in notes if n), width=60), fontsize=7, color="0.3")
    grid[0].legend(fontsize=7, loc="best")
    note = left_out_note(left_out, axis)
    if note:
        fig.text(0.08, 0.0, textwrap.fill(note, width=int(fig.get_figwidth() * 17)), fontsize=7, color="0.3",
                 va="top")  # under the x labels: the report saves with bbox_inches="tight"
    return fig


def left_out_note(left_out: pd.DataFrame | None, axis: str) -> str:
    """`Not drawn: a100-80gb-sxm4 at seq_len 262144, h100-sxm5 at seq_len 262144 (infeasible: ...).`: the sizes
    `targets_figure` has no point at, a reason once after every (target, size) it explains; "" for none."""
    if left_out is None or left_out.empty:
        return ""
    by_why: dict[str, list[str]] = {}
    for row in left_out.itertuples(index=False):
        by_why.setdefault(row.why, []).append(f"{row.target} at {short_axis(axis)} {value_label(axis, row[1])}")
    return "Not drawn: " + "; ".join(f"{', '.join(pairs)} ({why})" for why, pairs in by_why.items()) + "."


def heatmap_figure(heatmap: Heatmap, title: str, kind: str | None = None) -> Figure:
    """Best metric per cell over the feasible points that meet the constraints, colour on a log scale, the value
    written in each cell (with the points behind it when cells have different numbers of them, as a random
    sample's do; else the caption gives the one number); hatched where every feasible point breaks a constraint
    (`Heatmap.broken_cells`), blank where no feasible point was evaluated (with sampling, none may have been drawn
    there). The ticks are the axis values' `value_label`s; the caption names the work axes held and their values;
    the colour bar names the metric as the records' `kind` has it (`metric_label`: a system sweep's TBT p99); the
    caption counts the feasible points an axis of the map does not apply to (`Heatmap.not_applying`), in no cell."""
    values = heatmap.best.to_numpy(dtype=float)
    counts = heatmap.points.to_numpy()
    per_cell = heatmap.cell_points()
    fig = new_figure(max(1.3 * values.shape[1] + 3.0, 6.5), max(0.7 * values.shape[0] + 2.2, 4.5))
    figure_title(fig, title)
    ax = fig.add_axes((0.2, 0.15, 0.6, 0.68))
    finite = values[np.isfinite(values) & (values > 0)]
    norm = LogNorm(finite.min(), finite.max()) if finite.size and finite.max() > finite.min() else None
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis_r", norm=norm, aspect="auto")
    ax.set_xticks(range(values.shape[1]), [value_label(heatmap.axis_b, v) for v in heatmap.best.columns], fontsize=8)
    ax.set_yticks(range(values.shape[0]), [value_label(heatmap.axis_a, v) for v in heatmap.best.index], fontsize=8)
    ax.set_xlabel(short_axis(heatmap.axis_b))
    ax.set_ylabel(short_axis(heatmap.axis_a))
    mid = math.sqrt(finite.min() * finite.max()) if finite.size else 0.0
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.3g}" + (f"\n({counts[r, c]})" if per_cell is None else ""), ha="center",
                    va="center", fontsize=8 if per_cell is not None else 7, color="white" if v > mid else "black")
    broken = heatmap.broken_cells()
    for r, c in zip(*np.nonzero(broken), strict=True):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.6", lw=0))
        ax.text(c, r, "breaks a\nconstraint", ha="center", va="center", fontsize=7, color="0.2",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})
    notes = [f"{heatmap.held_text()} held ({HELD_RULE})"] if heatmap.held else []
    if per_cell is not None:
        notes.append(f"each cell {heatmap.cells_text()}")
    elif counts.any():
        notes.append("(n): the feasible points within the constraints behind each cell")
    if broken.any():
        notes.append("hatched: every feasible point there breaks a constraint")
    if heatmap.not_applying:
        notes.append(f"{heatmap.not_applying} feasible point{'s' if heatmap.not_applying > 1 else ''} an axis does "
                     "not apply to, not drawn")
    if not counts.any() and not broken.any():
        notes.append("no cell has a feasible point")
    ax.set_title(textwrap.fill("; ".join(notes), width=90), fontsize=8, color="0.3")
    bar = fig.colorbar(image, cax=fig.add_axes((0.83, 0.15, 0.025, 0.68)))
    bar.set_label(f"best {metric_label(heatmap.metric, kind)}")
    return fig
