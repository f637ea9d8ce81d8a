"""FuseMax's reproduction drawn (`archsim reproduce fusemax --out DIR`): the tables it computes, each as NAME.csv, and
beside two of them a figure drawn from the same rows (`write_reproduction`):

- pareto.png: Fig. 12 of the FuseMax paper, the area/latency design space (`archsim.dse.fusemax_pareto`): each
  design point of each model (a PE dimension d x d with its global buffer, doubled from the artifact's size until
  compute bound), log-log, each model's Pareto front joined, each PE dimension named.
- end2end.png: the linear layers of one layer (`archsim.systems.fusemax_linear`), ours against the artifact's,
  drawn as the point report's paper.png is (`figures.paper_figure`); a model without artifact values is named.

attention.csv is drawn by `archsim report --reproduction fusemax` (paper.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from archsim.report.figures import (
    MARKERS,
    figure_caption,
    figure_title,
    new_figure,
    palette_colour,
    paper_figure,
    place_text,
    ring_sizes,
    sized_marker_boxes,
)
from archsim.report.point import save_table_and_figure
from archsim.report.tables import paper_rows

PARETO_MARKER_SIZE = 36  # points^2
PE_LABEL_OFFSETS_PT = ((6, 9), (-6, 9), (6, -9), (-6, -9), (10, 0), (-10, 0))  # a PE dimension's name by its point
UM2_PER_MM2 = 1e6


def write_reproduction(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Each of `tables` (attention, end2end, pareto: `reproduce_fusemax`'s) as `folder`/NAME.csv, with end2end.png
    and pareto.png beside theirs."""
    drawn = {"end2end": end2end_figure, "pareto": pareto_figure}
    for name, table in tables.items():
        save_table_and_figure(folder, name, table, drawn[name](table) if name in drawn else None)


def pareto_figure(points: pd.DataFrame) -> Figure:
    """Fig. 12: latency against area (mm^2, the artifact's Fig. 12 area), log-log, a colour and marker per model;
    filled where the point is compute bound, hollow (drawn over, see-through) where DRAM bound; each model's front
    (`on_front`) joined in order of area; each PE dimension named once, at its slowest model's point."""
    models = list(dict.fromkeys(points.model))
    fig = new_figure(9.5, 6.2)
    seq_len = ", ".join(f"{n}" for n in dict.fromkeys(points.seq_len))
    figure_title(fig, f"FuseMax area/latency design space at {seq_len} tokens (Fig. 12 of the FuseMax paper): "
                      "a d x d PE array per point, its global buffer doubled from the artifact's 16 x d x E bytes "
                      "until compute bound")
    ax = fig.add_axes((0.1, 0.11, 0.68, 0.76))
    area = points.area_um2 / UM2_PER_MM2
    ax.set(xscale="log", yscale="log", xlim=(area.min() / 2, area.max() * 2),
           ylim=(points.latency_s.min() / 2, points.latency_s.max() * 2),
           xlabel="area (mm$^2$, the artifact's Fig. 12 area at 45 nm)", ylabel="attention latency (s)")
    ax.grid(True, which="major", alpha=0.3)
    mine = [points[points.model == model] for model in models]
    sizes = ring_sizes(ax, [_area_latency(m) for m in mine], PARETO_MARKER_SIZE)
    handles = []
    for k, (model, rows, size) in enumerate(zip(models, mine, sizes, strict=True)):
        colour, marker = palette_colour(k), MARKERS[k % len(MARKERS)]
        front = rows[rows.on_front].sort_values("area_um2")
        ax.plot(front.area_um2 / UM2_PER_MM2, front.latency_s, color=colour, lw=1.0, zorder=1)
        bound = rows.compute_bound.to_numpy(dtype=bool)
        for filled in (True, False):
            pick = rows[bound == filled]
            ax.scatter(pick.area_um2 / UM2_PER_MM2, pick.latency_s, s=size[bound == filled], marker=marker,
                       facecolors=colour if filled else "none", edgecolors=colour if not filled else "black",
                       linewidths=0.4 if filled else 1.2, zorder=2)
        handles.append(Line2D([], [], color=colour, marker=marker, markeredgecolor="black", markeredgewidth=0.4,
                              label=model))
    _name_pe_dims(ax, points, sized_marker_boxes(ax, np.vstack([_area_latency(m) for m in mine]),
                                                 np.concatenate(sizes)))
    handles += [Line2D([], [], ls="", marker="o", color="0.4", label="compute bound"),
                Line2D([], [], ls="", marker="o", markerfacecolor="white", markeredgecolor="0.4",
                       markeredgewidth=1.2, label="DRAM bound"),
                Line2D([], [], color="0.4", lw=1.0, label="the model's Pareto front")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    figure_caption(fig, f"{int(points.on_front.sum())} of {len(points)} points are on their model's front (area and "
                        "latency); a PE dimension with several buffers has a point per buffer. Data: pareto.csv.")
    return fig


def _area_latency(rows: pd.DataFrame) -> np.ndarray:
    """The (area mm^2, latency s) of `rows`, n x 2, as the Pareto figure draws them."""
    return np.column_stack([rows.area_um2 / UM2_PER_MM2, rows.latency_s])


def _name_pe_dims(ax: Axes, points: pd.DataFrame, taken: list[Bbox]) -> None:
    """Each PE dimension ("64x64") once, beside its slowest point (the top of the column of models), clear of the
    display boxes `taken` (the markers), the other names and the axes' edges (`place_text`)."""
    for pe_dim, rows in points.groupby("pe_dim", sort=True):
        top = rows.loc[rows.latency_s.idxmax()]
        place_text(ax, f"{pe_dim}x{pe_dim}", (top.area_um2 / UM2_PER_MM2, top.latency_s), taken,
                   PE_LABEL_OFFSETS_PT, color="0.2")


def end2end_figure(linear: pd.DataFrame) -> Figure:
    """The linear layers (`fusemax_linear.compare_end2end`'s rows): ours against the artifact's per metric
    (`figures.paper_figure`), every point with an artifact value; the models without one are named below."""
    pairs = paper_rows(linear)
    unpublished = [m for m in dict.fromkeys(linear.model) if m not in set(pairs.model)]
    note = (f"{', '.join(unpublished)}: no artifact value, not drawn (ours in end2end.csv)." if unpublished else "")
    return paper_figure(pairs, "Linear layers of one layer (Q, K, V, Z projections, FFN; GELU free as in the "
                               "artifact): ours vs the FuseMax artifact's", note)
