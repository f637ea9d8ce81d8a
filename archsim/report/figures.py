"""Figures of a point report, drawn from the tables of `archsim.report.tables`: DataFrames in, a matplotlib
`Figure` out (Agg canvas, no pyplot state, nothing written; the caller saves it).

Log axes never see a zero: roofline rows with no ops or no attained rate are left off, Einsums that move no
DRAM bytes (infinite operational intensity) are drawn in a shaded band right of the finite axis, and the paper
scatter keeps only positive pairs.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator
from matplotlib.transforms import Bbox

from archsim.gpu.figures import new_figure
from archsim.report.tables import OTHER_SHARE

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LEVEL_COLOURS = ("0.45", "#bcbd22", "#8c564b", "#e377c2")  # a level's bound bars on the roofline, one each
MAX_ANNOTATIONS = 14  # Einsum names written on the roofline, biggest Einsums first
MAX_NAMES_AT_ONE_POINT = 3  # Einsums of one result drawn at the same place: this many names, then "+N"
NAME_OFFSETS_PT = ((6, -7), (-6, -7), (6, 7), (-6, 7))  # where a name may go around its marker, tried in order
SAME_NAME_GAP_DECADES = 1.0  # a name is not written again this close on both axes (one Einsum in two results)
PAPER_TITLES = {"latency_s": "latency (s)", "traffic_bytes": "DRAM traffic (bytes)", "energy_pj": "energy (pJ)"}
FEW_DECADES = 2  # a log axis whose values span fewer decades than this is labelled at 1, 2 and 5 of each decade
TOTAL_DIGITS = 4  # significant digits of a bar's total, trailing zeros kept, so totals side by side read alike


def figure_title(fig: Figure, text: str) -> None:
    """A figure title wrapped to the figure's width (two lines fit above the axes)."""
    fig.suptitle(textwrap.fill(text, width=int(fig.get_figwidth() * 12)), fontsize=10, y=0.98, va="top")


def figure_caption(fig: Figure, text: str) -> None:
    """A caption below everything on the figure, wrapped to its width: the saved figure's tight box
    (`point.save_table_and_figure`) takes it in."""
    fig.text(0.02, -0.02, textwrap.fill(text, width=int(fig.get_figwidth() * 14)), fontsize=8, ha="left", va="top",
             color="0.25")


def reference_notes(section: str) -> str:
    """How a reproduction page cites archsim's reference notes at `section` (a notes file and section, "pim.md §3"):
    by name, not by a path, as the notes are the project's and not shipped with the package."""
    return f"archsim's reference notes, {section}, not shipped with archsim"


def palette_colour(i: int) -> str:
    """The `i`-th colour of `PALETTE`, cycling past its end."""
    return PALETTE[i % len(PALETTE)]


def _decade_range(values: list[float], pad_decades: float) -> tuple[float, float]:
    """Whole decades around the positive finite `values` (1 when there is none), padded."""
    shown = [v for v in values if 0 < v < math.inf] or [1.0]
    lo, hi = math.log10(min(shown)), math.log10(max(shown))
    return 10 ** math.floor(lo - pad_decades), 10 ** math.ceil(hi + pad_decades)


def si(value: float, unit: str, digits: int = 3, zeros: bool = False) -> str:
    """`value` with an SI prefix (k, M, G, T, P) and `unit`, `digits` significant digits: "989 TFLOP/s"; with
    `zeros`, trailing zeros kept, so labels side by side have as many digits ("9.360 kJ" beside "10.18 kJ")."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{_significant(value / scale, digits, zeros)} {prefix}{unit}"
    return f"{_significant(value, digits, zeros)} {unit}"


def _significant(value: float, digits: int, zeros: bool) -> str:
    """`value` to `digits` significant digits, with its trailing zeros when `zeros` (never a bare point: "241")."""
    return f"{value:#.{digits}g}".rstrip(".") if zeros else f"{value:.{digits}g}"


def label_few_decades(axis: Axis, values: Iterable[float]) -> None:
    """Label the log `axis` (an Axes' xaxis or yaxis) as plain numbers at 1, 2 and 5 of each decade when its
    positive finite `values` span fewer than `FEW_DECADES` decades: there the decades' own labels leave one or none
    in view. Call it after the axis's scale is set (setting a scale resets its ticks)."""
    shown = [v for v in values if 0 < v < math.inf]
    if shown and max(shown) < min(shown) * 10**FEW_DECADES:
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)


def roofline_figure(rows: pd.DataFrame, ceilings: pd.DataFrame, levels: pd.DataFrame, title: str) -> Figure:
    """Log-log roofline: attained ops/s of each Einsum against its ops per DRAM byte, under the compute ceilings
    and DRAM's bandwidth slope (the level whose bytes the x axis counts; drawn up to the highest compute ceiling);
    each other level's bound on an Einsum (`levels`: `tables.level_bound_rows`, ops / (its bytes there /
    bandwidth)) is a short bar at that Einsum's x, a colour per level, as the caption says."""
    fig = new_figure(10.5, 6.5)
    figure_title(fig, title)
    ax = fig.add_axes((0.09, 0.1, 0.68, 0.8))
    points = rows[(rows.ops > 0) & (rows.attained_ops_per_s > 0)].copy()
    compute = ceilings[ceilings.kind != "bandwidth"]
    bandwidth = ceilings[ceilings.kind == "bandwidth"]
    knees = [c / b for c in compute.value for b in bandwidth.value]
    x_lo, x_hi = _decade_range(points.intensity_ops_per_byte.dropna().tolist() + knees or [1.0, 1e4], 0.3)
    has_band = points.intensity_ops_per_byte.isna().any()
    x_end = x_hi * 100 if has_band else x_hi  # the band of Einsums with no DRAM bytes: (x_hi, x_end)
    y_lo, y_hi = _decade_range(points.attained_ops_per_s.tolist() + compute.value.tolist(), 0.3)
    ax.set(xscale="log", yscale="log", xlim=(x_lo, x_end), ylim=(y_lo, y_hi),
           xlabel="operational intensity (ops per DRAM byte)", ylabel="attained ops/s")
    ax.grid(True, which="major", alpha=0.3)
    decades = range(round(math.log10(x_lo)), round(math.log10(x_hi)) + 1)
    ax.set_xticks([10.0**k for k in decades], [f"$10^{{{k}}}$" for k in decades])
    ax.set_xticks([m * 10.0**k for k in decades[:-1] for m in range(2, 10)], minor=True)

    labels = list(dict.fromkeys(points.label))
    band_x = {label: x_hi * (x_end / x_hi) ** ((i + 0.6) / (len(labels) + 1)) for i, label in enumerate(labels)}
    points["plot_x"] = points.intensity_ops_per_byte.fillna(points.label.map(band_x))
    obstacles: list[Text] = []
    if has_band:
        ax.axvspan(x_hi, x_end, color="0.93", zorder=0)
        obstacles.append(ax.text(math.sqrt(x_hi * x_end), y_hi / 1.5, "no DRAM\nbytes", ha="center", va="top",
                                 fontsize=8, color="0.35"))
    for row in compute.itertuples():
        ax.plot([x_lo, x_hi], [row.value, row.value], color="0.3", lw=1.2, zorder=1,
                ls=":" if row.kind == "pipelined" else "-")
        obstacles.append(ax.text(x_lo * 1.3, row.value * 1.1, f"{row.name}  {si(row.value, 'ops/s')}", fontsize=8,
                                 color="0.3", va="bottom", zorder=2,
                                 bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}))
    top = compute.value.max() if len(compute) else y_hi
    for value, name in zip(bandwidth.value, bandwidth.name, strict=True):
        knee = min(x_hi, top / value)  # the slope ends where it meets the highest compute ceiling
        if knee > x_lo:
            xs = np.geomspace(x_lo, knee, 50)
            ax.plot(xs, xs * value, color="0.3", lw=1.2, ls="--", zorder=1)
            obstacles += _slope_label(ax, value, f"{name}  {si(value, 'B/s')}", (x_lo, knee), (y_lo, y_hi))
    _level_bars(ax, points, levels)
    caption = "x counts DRAM bytes, so DRAM's bandwidth is the one slope (dashed, up to the highest compute ceiling)"
    if len(levels):
        caption += ("; another level bounds an Einsum at ops / (its bytes there / bandwidth): a bar at the Einsum's x "
                    "(roofline_levels.csv)")
    ax.set_title(textwrap.fill(caption, width=110), fontsize=8, color="0.3")

    for i, label in enumerate(labels):
        mine = points[points.label == label]
        ax.scatter(mine.plot_x, mine.attained_ops_per_s, marker=MARKERS[i % len(MARKERS)], color=palette_colour(i),
                   s=42, edgecolors="black", linewidths=0.4, label=label, zorder=3, alpha=0.85)
    _name_einsums(ax, points, {label: palette_colour(i) for i, label in enumerate(labels)}, obstacles)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False)
    return fig


def _level_bars(ax: Axes, points: pd.DataFrame, levels: pd.DataFrame) -> None:
    """Each level's bound on each drawn Einsum (`roofline_figure`) as a bar a third of a decade wide each way at the
    Einsum's x (`plot_x`), one line per level (bars joined by NaN breaks), labelled with its bandwidth."""
    placed = levels.merge(points[["label", "einsum", "plot_x"]], on=["label", "einsum"])
    for i, (level, mine) in enumerate(placed.groupby("level", sort=False)):
        xs = [x for row in mine.itertuples() for x in (row.plot_x / 2.0, row.plot_x * 2.0, np.nan)]
        ys = [y for row in mine.itertuples() for y in (row.bound_ops_per_s, row.bound_ops_per_s, np.nan)]
        rates = ", ".join(si(b, "B/s") for b in dict.fromkeys(mine.bandwidth_bytes_per_s))
        ax.plot(xs, ys, color=LEVEL_COLOURS[i % len(LEVEL_COLOURS)], lw=2.2, solid_capstyle="butt", zorder=2,
                label=f"{level} {rates}: its bound")


def _slope_label(ax: Axes, bandwidth_bytes_per_s: float, text: str, x_range: tuple[float, float],
                 y_range: tuple[float, float]) -> list[Text]:
    """Write `text` along the bandwidth line, a third of the way up its visible part, at its on-screen angle."""
    x_first = max(x_range[0], y_range[0] / bandwidth_bytes_per_s)
    x_last = min(x_range[1], y_range[1] / bandwidth_bytes_per_s)
    if x_first >= x_last:
        return []
    x = x_first * (x_last / x_first) ** 0.3
    a, b = ax.transData.transform([(x, x * bandwidth_bytes_per_s), (x * 10, x * 10 * bandwidth_bytes_per_s)])
    angle = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
    return [ax.annotate(text, (x, x * bandwidth_bytes_per_s), xytext=(0, 4), textcoords="offset points",
                        fontsize=8, color="0.3", rotation=angle, rotation_mode="anchor")]


def _name_einsums(ax: Axes, points: pd.DataFrame, colours: dict[str, str], obstacles: list[Text]) -> None:
    """Write the names of the biggest Einsums (those of one result at one place together) at the first offset
    where the name stays inside the axes and clear of markers, other names and `obstacles`; a name is skipped
    where none is, or where the same name is already written close by (one Einsum in several results)."""
    renderer = ax.figure.canvas.get_renderer()
    taken = [t.get_window_extent(renderer) for t in obstacles]
    taken += marker_boxes(ax, points[["plot_x", "attained_ops_per_s"]].to_numpy())
    places = points.groupby(["label", "plot_x", "attained_ops_per_s"], sort=False).agg(
        ops=("ops", "sum"), einsum=("einsum", _names)).reset_index()
    named: list[tuple[float, float, str]] = []
    for row in places.sort_values("ops", ascending=False).itertuples():
        x, y = math.log10(row.plot_x), math.log10(row.attained_ops_per_s)
        if len(named) >= MAX_ANNOTATIONS:
            return
        if any(name == row.einsum and abs(x - x0) < SAME_NAME_GAP_DECADES and abs(y - y0) < SAME_NAME_GAP_DECADES
               for x0, y0, name in named):
            continue
        if place_text(ax, row.einsum, (row.plot_x, row.attained_ops_per_s), taken, NAME_OFFSETS_PT,
                      color=colours[row.label]):
            named.append((x, y, row.einsum))


def marker_boxes(ax: Axes, xy: np.ndarray, half_px: float = 5.0) -> list[Bbox]:
    """The display boxes of markers at the data points `xy` (n x 2) of `ax`, `half_px` each way (5: a marker of
    s=42 points^2 at the figures' dpi, rounded up)."""
    return [Bbox.from_extents(x - half_px, y - half_px, x + half_px, y + half_px)
            for x, y in ax.transData.transform(xy)]


def place_text(ax: Axes, text: str, xy: tuple[float, float], taken: list[Bbox],
               offsets: Sequence[tuple[float, float]], **style) -> Text | None:
    """Write `text` (7 pt, `style`) beside the data point `xy` of `ax` at the first of `offsets` (points; a positive
    dx writes it to the right) where it stays inside the axes and clear of the display boxes `taken`, and add its box
    to `taken`; None, writing nothing, where no offset is clear. The axes' limits must be final."""
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    for dx, dy in offsets:
        label = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha="left" if dx > 0 else "right",
                            va="center", fontsize=7, **style)
        box = label.get_window_extent(renderer).padded(2)
        if box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1 \
                and not any(box.overlaps(t) for t in taken):
            taken.append(box)
            return label
        label.remove()
    return None


def _names(einsums: pd.Series) -> str:
    shown = ", ".join(einsums.iloc[:MAX_NAMES_AT_ONE_POINT])
    return shown + (f" +{len(einsums) - MAX_NAMES_AT_ONE_POINT}" if len(einsums) > MAX_NAMES_AT_ONE_POINT else "")


def energy_figure(rows: pd.DataFrame, title: str) -> Figure:
    """One stacked bar per label (in joules), a segment per stack, largest stacks at the bottom, "other" on top; each
    bar's total above it with `TOTAL_DIGITS` significant digits and an SI prefix ("10.18 kJ" beside "9.360 kJ")."""
    labels = list(dict.fromkeys(rows.label))
    table = rows.pivot_table(index="label", columns="stack", values="energy_pj", aggfunc="sum").reindex(labels)
    table = table.fillna(0.0) * 1e-12
    order = [s for s in table.sum().sort_values(ascending=False).index if s != "other"]
    order += ["other"] if "other" in table else []
    fig = new_figure(max(7.5, 1.2 * len(labels) + 5.0), 5.5)
    figure_title(fig, title)
    ax = fig.add_axes((0.1, 0.1, 0.6, 0.76))
    bottom = np.zeros(len(labels))
    for i, stack in enumerate(order):
        other = stack == "other"
        ax.bar(labels, table[stack], bottom=bottom, label=f"other (each < {OTHER_SHARE:.0%})" if other else stack,
               color="0.75" if other else palette_colour(i), edgecolor="white", linewidth=0.5, width=0.6)
        bottom += table[stack].to_numpy()
    for x, total_j in enumerate(bottom):
        ax.text(x, total_j, si(total_j, "J", TOTAL_DIGITS, zeros=True), ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="energy (J)", xlim=(-0.9, len(labels) - 0.1),
           ylim=(0, bottom.max() * 1.1 if bottom.max() > 0 else 1))
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False,
              title="component action", title_fontsize=8)
    return fig


def utilization_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Grouped bars: one group per unit, one bar per label."""
    labels = list(dict.fromkeys(rows.label))
    units = list(dict.fromkeys(rows.unit))
    fig = new_figure(max(7.5, 0.45 * len(labels) * len(units) + 4.0), 4.8)
    figure_title(fig, title)
    ax = fig.add_axes((0.1, 0.1, 0.7, 0.76))
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        mine = rows[rows.label == label].set_index("unit").reindex(units)
        xs = np.arange(len(units)) - 0.4 + width * (i + 0.5)
        bars = ax.bar(xs, mine.utilization.fillna(0.0), width=width * 0.95, label=label, color=palette_colour(i))
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in mine.utilization.fillna(0.0)], fontsize=7, padding=1)
    ax.set_xticks(np.arange(len(units)), units)
    ax.set(ylim=(0, 1.12), ylabel="utilization (busy lane-cycles / lanes x latency)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False)
    return fig


def stall_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars: per label, each stall source's share of the units' time (units x latency)."""
    labels = list(dict.fromkeys(rows.label))
    fig = new_figure(8.5, max(3.0, 0.32 * len(rows) + 1.8))
    figure_title(fig, title)
    ax = fig.add_axes((0.38, 0.12, 0.57, 0.74))
    ys = np.arange(len(rows))[::-1]
    colours = [palette_colour(labels.index(label)) for label in rows.label]
    bars = ax.barh(ys, rows.share, color=colours)
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in rows.share], fontsize=7, padding=2)
    ax.set_yticks(ys, [f"{r.label}: {r.source}" if len(labels) > 1 else r.source for r in rows.itertuples()],
                  fontsize=8)
    ax.set(xlim=(0, max(1e-9, rows.share.max()) * 1.2), xlabel="share of the units' time idle (units x latency)")
    return fig


def paper_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Ours against the paper's, one log-log panel per metric, a y = x line; colour per config, marker per
    model."""
    metrics = list(dict.fromkeys(rows.metric))
    configs = list(dict.fromkeys(rows.config))
    models = list(dict.fromkeys(rows.model))
    fig = new_figure(4.2 * len(metrics) + 1.6, 4.6)
    figure_title(fig, title)
    panel_w = 0.78 / len(metrics)
    for j, metric in enumerate(metrics):
        ax = fig.add_axes((0.06 + j * (panel_w + 0.02), 0.13, panel_w - 0.05, 0.72))
        mine = rows[(rows.metric == metric) & (rows.ours > 0) & (rows.paper > 0)]
        if mine.empty:
            ax.set_axis_off()
            continue
        lo, hi = _decade_range(mine.ours.tolist() + mine.paper.tolist(), 0.1)
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", zorder=1)
        for i, config in enumerate(configs):
            for k, model in enumerate(models):
                pick = mine[(mine.config == config) & (mine.model == model)]
                ax.scatter(pick.paper, pick.ours, color=palette_colour(i), marker=MARKERS[k % len(MARKERS)], s=22,
                           edgecolors="black", linewidths=0.3, zorder=2, alpha=0.85)
        worst = mine.rel_err.abs().max()
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="paper", ylabel="ours" if j == 0
               else None, title=f"{PAPER_TITLES.get(metric, metric)}\nmax |rel err| {worst:.2%}")
        ax.title.set_fontsize(9)
        ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=palette_colour(i), label=c) for i, c in enumerate(configs)]
    handles += [Line2D([], [], ls="", marker=MARKERS[k % len(MARKERS)], color="0.4", label=m)
                for k, m in enumerate(models)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.85, 0.5), fontsize=8, frameon=False)
    return fig
