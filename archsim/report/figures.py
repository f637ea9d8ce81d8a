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
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerPathCollection
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator
from matplotlib.transforms import Bbox

from archsim.gpu.figures import new_figure
from archsim.outputs import binary_size_text
from archsim.report.tables import OTHER_SHARE

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LEVEL_COLOURS = ("0.45", "#bcbd22", "#8c564b", "#e377c2")  # a level's bound bars on the roofline, one each
MAX_ANNOTATIONS = 14  # Einsum names written on the roofline, biggest Einsums first
MAX_NAMES_AT_ONE_POINT = 3  # Einsums of one result drawn at the same place: this many names, then "+N"
NAME_OFFSETS_PT = ((6, -7), (-6, -7), (6, 7), (-6, 7))  # where a name may go around its marker, tried in order
# where a name goes, joined to its marker by a line, when no place of NAME_OFFSETS_PT is clear
LEADER_OFFSETS_PT = ((16, -16), (-16, -16), (16, 16), (-16, 16), (26, 0), (-26, 0), (10, -26), (-10, -26),
                     (10, 26), (-10, 26))
SLOPE_LABEL_AT = (0.3, 0.45, 0.6, 0.75, 0.15, 0.9)  # where along the visible slope its label may go, tried in order
RING_RIM_PT = 2.0  # a marker a later one covers reaches this far past it (points), so it shows as a ring
ROOFLINE_MARKER_SIZE = 42  # points^2
PAPER_MARKER_SIZE = 22  # points^2
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


def bandwidth_text(bytes_per_s: float) -> str:
    """A bandwidth in the unit the presets write it in: binary where it is a whole number of hundredths of a GiB/s
    or of MiB/s ("400 GiB/s", the FuseMax presets' 400 * 2**30 B/s, as a sweep's axis labels read it), else decimal
    ("3.35 TB/s")."""
    binary = binary_size_text(bytes_per_s)
    return f"{binary}/s" if binary else si(bytes_per_s, "B/s")


def ring_sizes(ax: Axes, series: Sequence[np.ndarray], size: float) -> list[np.ndarray]:
    """Marker areas (points^2) for `series` (each an n x 2 array of data coordinates) scattered on `ax` in this
    order at `size`: a marker that a later-drawn one covers (its centre inside the later one's disc) is drawn to reach
    `RING_RIM_PT` past it, so markers that coincide show as rings, drawn larger first, and none is hidden. The axes'
    limits and scales must be final."""
    px_per_pt = ax.figure.dpi / 72
    base = math.sqrt(size) / 2 * px_per_pt  # a marker's radius in pixels
    screen = [ax.transData.transform(np.asarray(xy, dtype=float).reshape(-1, 2)) for xy in series]
    radii = [np.full(len(xy), base) for xy in screen]
    for i in range(len(screen) - 2, -1, -1):  # the last series is drawn over the others: its markers stay as they are
        for j in range(i + 1, len(screen)):
            if len(screen[i]) and len(screen[j]):
                gap = np.linalg.norm(screen[i][:, None, :] - screen[j][None, :, :], axis=2)
                reach = (radii[j][None, :] - gap).max(axis=1)  # how far past each centre a later marker reaches
                radii[i] = np.maximum(radii[i], reach + RING_RIM_PT * px_per_pt)
    return [(2 * r / px_per_pt) ** 2 for r in radii]


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
    points["marker_size"] = _roofline_marker_sizes(ax, points, labels)
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
    renderer = fig.canvas.get_renderer()
    taken = [t.get_window_extent(renderer) for t in obstacles] + sized_marker_boxes(
        ax, points[["plot_x", "attained_ops_per_s"]].to_numpy(), points.marker_size.to_numpy())
    top = compute.value.max() if len(compute) else y_hi
    for value, name in zip(bandwidth.value, bandwidth.name, strict=True):
        knee = min(x_hi, top / value)  # the slope ends where it meets the highest compute ceiling
        if knee > x_lo:
            xs = np.geomspace(x_lo, knee, 50)
            ax.plot(xs, xs * value, color="0.3", lw=1.2, ls="--", zorder=1)
            _slope_label(ax, value, f"{name}  {bandwidth_text(value)}", (x_lo, knee), (y_lo, y_hi), taken)
    _level_bars(ax, points, levels)
    caption = "x counts DRAM bytes, so DRAM's bandwidth is the one slope (dashed, up to the highest compute ceiling)"
    if len(levels):
        caption += ("; another level bounds an Einsum at ops / (its bytes there / bandwidth): a bar at the Einsum's x "
                    "(roofline_levels.csv)")
    if (points.marker_size > ROOFLINE_MARKER_SIZE).any():
        caption += "; markers at one place are drawn larger first, as rings"
    ax.set_title(textwrap.fill(caption, width=110), fontsize=8, color="0.3")

    for i, label in enumerate(labels):
        mine = points[points.label == label]
        ax.scatter(mine.plot_x, mine.attained_ops_per_s, marker=MARKERS[i % len(MARKERS)], color=palette_colour(i),
                   s=mine.marker_size, edgecolors="black", linewidths=0.4, label=label, zorder=3, alpha=0.85)
    _name_einsums(ax, points, {label: palette_colour(i) for i, label in enumerate(labels)}, taken)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False,
              handler_map={PathCollection: HandlerPathCollection(sizes=[ROOFLINE_MARKER_SIZE])})
    return fig


def _roofline_marker_sizes(ax: Axes, points: pd.DataFrame, labels: list[str]) -> pd.Series:
    """Each roofline point's marker area (`ring_sizes`: the labels are drawn in the order of `labels`, so where
    several results' Einsums sit at one place the first label's marker is the largest ring)."""
    mine = [points[points.label == label] for label in labels]
    sizes = ring_sizes(ax, [m[["plot_x", "attained_ops_per_s"]].to_numpy() for m in mine], ROOFLINE_MARKER_SIZE)
    return pd.concat([pd.Series(size, index=m.index) for m, size in zip(mine, sizes, strict=True)])


def _level_bars(ax: Axes, points: pd.DataFrame, levels: pd.DataFrame) -> None:
    """Each level's bound on each drawn Einsum (`roofline_figure`) as a bar a third of a decade wide each way at the
    Einsum's x (`plot_x`), one line per level (bars joined by NaN breaks), labelled with its bandwidth."""
    placed = levels.merge(points[["label", "einsum", "plot_x"]], on=["label", "einsum"])
    for i, (level, mine) in enumerate(placed.groupby("level", sort=False)):
        xs = [x for row in mine.itertuples() for x in (row.plot_x / 2.0, row.plot_x * 2.0, np.nan)]
        ys = [y for row in mine.itertuples() for y in (row.bound_ops_per_s, row.bound_ops_per_s, np.nan)]
        rates = ", ".join(bandwidth_text(b) for b in dict.fromkeys(mine.bandwidth_bytes_per_s))
        ax.plot(xs, ys, color=LEVEL_COLOURS[i % len(LEVEL_COLOURS)], lw=2.2, solid_capstyle="butt", zorder=2,
                label=f"{level} {rates}: its bound")


def _slope_label(ax: Axes, bandwidth_bytes_per_s: float, text: str, x_range: tuple[float, float],
                 y_range: tuple[float, float], taken: list[Bbox]) -> Text | None:
    """Write `text` along the bandwidth line, at its on-screen angle, at the first place of `SLOPE_LABEL_AT` (a
    fraction of the way up its visible part) whose box stays inside the axes and clear of the display boxes `taken`
    (the ceilings' labels, the markers), else at the first; its box joins `taken`. None where no part is visible."""
    x_first = max(x_range[0], y_range[0] / bandwidth_bytes_per_s)
    x_last = min(x_range[1], y_range[1] / bandwidth_bytes_per_s)
    if x_first >= x_last:
        return None
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    places = (*SLOPE_LABEL_AT, SLOPE_LABEL_AT[0])  # the first place again where none is clear
    for tried, at in enumerate(places, start=1):
        x = x_first * (x_last / x_first) ** at
        a, b = ax.transData.transform([(x, x * bandwidth_bytes_per_s), (x * 10, x * 10 * bandwidth_bytes_per_s)])
        label = ax.annotate(text, (x, x * bandwidth_bytes_per_s), xytext=(0, 4), textcoords="offset points",
                            fontsize=8, color="0.3", rotation=math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])),
                            rotation_mode="anchor")
        box = label.get_window_extent(renderer)
        if tried == len(places) or (_inside(box, inside) and not any(box.overlaps(t) for t in taken)):
            break
        label.remove()
    taken.append(box)
    return label


def _inside(box: Bbox, frame: Bbox) -> bool:
    """Whether the display box `box` lies within `frame`."""
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def _name_einsums(ax: Axes, points: pd.DataFrame, colours: dict[str, str], taken: list[Bbox]) -> None:
    """Write the names of the biggest Einsums (all those at one place together, in their result's colour, dark grey
    where several results' Einsums coincide) at the first offset where the name stays inside the axes and clear of
    the display boxes `taken` (markers, ceilings' and slopes' labels, other names), else a little farther, joined to
    its marker by a line; a name is skipped where no place is clear, or where the same name is already written close
    by (one Einsum in several results)."""
    places = points.groupby(["plot_x", "attained_ops_per_s"], sort=False).agg(
        ops=("ops", "sum"), einsum=("einsum", _names), label=("label", "unique"),
        marker_size=("marker_size", "max")).reset_index()
    named: list[tuple[float, float, str]] = []
    for row in places.sort_values("ops", ascending=False).itertuples():
        x, y = math.log10(row.plot_x), math.log10(row.attained_ops_per_s)
        if len(named) >= MAX_ANNOTATIONS:
            return
        if any(name == row.einsum and abs(x - x0) < SAME_NAME_GAP_DECADES and abs(y - y0) < SAME_NAME_GAP_DECADES
               for x0, y0, name in named):
            continue
        colour = colours[row.label[0]] if len(row.label) == 1 else "0.2"
        at = (row.plot_x, row.attained_ops_per_s)
        leader = {"arrowstyle": "-", "lw": 0.5, "color": colour, "shrinkA": 1,
                  "shrinkB": math.sqrt(row.marker_size) / 2}  # the line stops at the marker's edge
        if place_text(ax, row.einsum, at, taken, NAME_OFFSETS_PT, color=colour) or place_text(
                ax, row.einsum, at, taken, LEADER_OFFSETS_PT, color=colour, arrowprops=leader):
            named.append((x, y, row.einsum))


def marker_boxes(ax: Axes, xy: np.ndarray, half_px: float | np.ndarray = 5.0) -> list[Bbox]:
    """The display boxes of markers at the data points `xy` (n x 2) of `ax`, `half_px` each way (5: a marker of
    s=42 points^2 at the figures' dpi, rounded up; one per point for markers of several sizes)."""
    centres = ax.transData.transform(xy)
    return [Bbox.from_extents(x - h, y - h, x + h, y + h)
            for (x, y), h in zip(centres, np.broadcast_to(half_px, len(centres)), strict=True)]


def sized_marker_boxes(ax: Axes, xy: np.ndarray, sizes: np.ndarray) -> list[Bbox]:
    """`marker_boxes` of markers of areas `sizes` (points^2, one per point, as `scatter`'s `s`)."""
    return marker_boxes(ax, xy, np.sqrt(sizes) / 2 * ax.figure.dpi / 72)


def place_text(ax: Axes, text: str, xy: tuple[float, float], taken: list[Bbox],
               offsets: Sequence[tuple[float, float]], **style) -> Text | None:
    """Write `text` (7 pt, `style`) beside the data point `xy` of `ax` at the first of `offsets` (points; a positive
    dx writes it to the right) where it stays inside the axes and clear of the display boxes `taken`, and add its box
    to `taken` (the text's box: a leader line, `arrowprops` in `style`, may cross others); None, writing nothing,
    where no offset is clear. The axes' limits must be final."""
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    for dx, dy in offsets:
        label = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha="left" if dx > 0 else "right",
                            va="center", fontsize=7, **style)
        label.get_window_extent(renderer)  # places the text (and its line)
        box = Text.get_window_extent(label, renderer).padded(2)
        if _inside(box, inside) and not any(box.overlaps(t) for t in taken):
            taken.append(box)
            return label
        label.remove()
    return None


def _names(einsums: pd.Series) -> str:
    """The distinct names of the Einsums at one place: the first `MAX_NAMES_AT_ONE_POINT`, then "+N"."""
    names = list(dict.fromkeys(einsums))
    shown = ", ".join(names[:MAX_NAMES_AT_ONE_POINT])
    return shown + (f" +{len(names) - MAX_NAMES_AT_ONE_POINT}" if len(names) > MAX_NAMES_AT_ONE_POINT else "")


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


def paper_figure(rows: pd.DataFrame, title: str, note: str = "") -> Figure:
    """Ours against the paper's, one log-log panel per metric, a y = x line; colour per config, marker per model.
    Markers at one place are drawn larger first, as rings (`ring_sizes`), and a panel names the configs whose values
    are the same at every point (`same_series`: "arch = fusemax"); `note` is written below."""
    metrics = list(dict.fromkeys(rows.metric))
    configs = list(dict.fromkeys(rows.config))
    models = list(dict.fromkeys(rows.model))
    fig = new_figure(4.2 * len(metrics) + 1.6, 4.6)
    figure_title(fig, title)
    panel_w = 0.78 / len(metrics)
    ringed = False
    for j, metric in enumerate(metrics):
        ax = fig.add_axes((0.06 + j * (panel_w + 0.02), 0.13, panel_w - 0.05, 0.72))
        mine = rows[(rows.metric == metric) & (rows.ours > 0) & (rows.paper > 0)]
        if mine.empty:
            ax.set_axis_off()
            continue
        lo, hi = _decade_range(mine.ours.tolist() + mine.paper.tolist(), 0.1)
        worst = mine.rel_err.abs().max()
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="paper", ylabel="ours" if j == 0
               else None, title=f"{PAPER_TITLES.get(metric, metric)}\nmax |rel err| {worst:.2%}")
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", zorder=1)
        groups = [(i, k, mine[(mine.config == config) & (mine.model == model)])
                  for i, config in enumerate(configs) for k, model in enumerate(models)]
        sizes = ring_sizes(ax, [pick[["paper", "ours"]].to_numpy() for _, _, pick in groups], PAPER_MARKER_SIZE)
        for (i, k, pick), size in zip(groups, sizes, strict=True):
            ax.scatter(pick.paper, pick.ours, color=palette_colour(i), marker=MARKERS[k % len(MARKERS)], s=size,
                       edgecolors="black", linewidths=0.3, zorder=2, alpha=0.85)
            ringed = ringed or bool((size > PAPER_MARKER_SIZE).any())
        same = same_series(mine, "config", ("model", "seq_len"), ("ours", "paper"))
        if same:
            ax.text(0.97, 0.03, "\n".join(" = ".join(names) for names in same) + "\n(at every point)",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="0.2")
        ax.title.set_fontsize(9)
        ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=palette_colour(i), label=c) for i, c in enumerate(configs)]
    handles += [Line2D([], [], ls="", marker=MARKERS[k % len(MARKERS)], color="0.4", label=m)
                for k, m in enumerate(models)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.85, 0.5), fontsize=8, frameon=False)
    rings = "Markers at one place are drawn larger first, as rings: the first config of the legend the outermost."
    caption = " ".join(text for text in (note, rings if ringed else "") if text)
    if caption:
        figure_caption(fig, caption)
    return fig


def same_series(rows: pd.DataFrame, series: str, keys: Sequence[str], values: Sequence[str]) -> list[list[str]]:
    """The groups (two or more, in first-seen order) of `series` values whose rows hold the same `values` at the
    same `keys`, every one exactly: [["arch", "fusemax"]] where arch's DRAM traffic is fusemax's at every point."""
    tables = {name: part.set_index(list(keys))[list(values)].sort_index()
              for name, part in rows.groupby(series, sort=False)}
    groups: list[list[str]] = []
    for name, table in tables.items():
        match = next((g for g in groups if tables[g[0]].equals(table)), None)
        if match is None:
            groups.append([name])
        else:
            match.append(name)
    return [g for g in groups if len(g) > 1]
