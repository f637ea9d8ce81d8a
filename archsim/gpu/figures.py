"""Figures of the GPU model, written as PNG (matplotlib Agg canvas, no pyplot state).

- `write_scatter` (`scatter_figure`): model vs measured time of every compared row (log-log, y = x and a +-10 %
  band, the axes spanning every time drawn), one colour per (kernel, direction) group, filled markers for held-out
  rows, hollow for calibration rows, the roofline's prediction of the same row as a grey cross; the title's MAPE of
  a split with no row is `-`, as in the terminal table.
- `write_roofline` (`roofline_figure`): kernels as points (FLOPs per DRAM byte, modelled FLOP/s) under the GPU's
  tensor peak, its DRAM bandwidth line and each kernel's exp ceiling (`archsim.gpu.roofline`), the legend outside
  the axes, and under them the kernels that cannot run the workload, each with its reason.
- `new_figure`: the empty figure every figure of the package starts from, here and in `archsim.report.figures`
  (this module sits below the report's layer, so the report imports it from here).
Each PNG is written atomically (`archsim.outputs.atomic_file`; missing folders are created); a path that cannot
be written is a SpecError naming it. Values that a log axis cannot show (zero, negative, NaN, infinite) are left
off the axis limits.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from archsim.arch.gpu import GPU
from archsim.gpu.roofline import RooflinePoint, ceilings
from archsim.gpu.validate import Validation
from archsim.outputs import atomic_file

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def new_figure(width_in: float, height_in: float) -> Figure:
    """An empty `width_in` x `height_in` inch figure at 110 dpi on its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width_in, height_in), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp)
    return path


def _loggable(values: list[float]) -> list[float]:
    """The values a log axis can show."""
    return [v for v in values if math.isfinite(v) and v > 0]


def _mape_text(mape: dict[str, float]) -> str:
    """The overall MAPE of a split as the title prints it: `12.3 %`, or `-` (as the terminal table) where the
    split has no row."""
    value = mape.get("overall")
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f} %"


def scatter_figure(validation: Validation) -> Figure:
    """The model-vs-measured scatter of `validation` (the module docstring says what it draws); its axis limits
    hold every value drawn, the roofline's crosses included."""
    fig = new_figure(8.5, 6.5)
    ax = fig.add_subplot()
    groups = sorted({f"{c.measurement.kernel} | {c.measurement.case.direction}" for c in validation.comparisons})
    times = []
    for i, group in enumerate(groups):
        chosen = [c for c in validation.comparisons
                  if f"{c.measurement.kernel} | {c.measurement.case.direction}" == group]
        colour = PALETTE[i % len(PALETTE)]
        for split, face in (("held-out", colour), ("calibration", "none")):
            part = [c for c in chosen if c.split == split]
            if part:
                measured = [c.measurement.time_s for c in part]
                predicted = [c.result.time_s for c in part]
                ax.scatter(measured, predicted, s=26, facecolors=face, edgecolors=colour,
                           label=group if split == "held-out" or not any(c.split == "held-out" for c in chosen)
                           else None)
                times += _loggable(measured + predicted)
        roof = [(c.measurement.time_s, c.measurement.to_time_s(c.roofline)) for c in chosen]
        ax.scatter(*zip(*roof, strict=True), marker="x", s=14, color="#999999", linewidths=0.8)
        times += _loggable([t for pair in roof for t in pair])
    if times:
        low, high = min(times) / 2, max(times) * 2
        line = np.array([low, high])
        ax.plot(line, line, color="black", linewidth=0.8)
        ax.fill_between(line, line * 0.9, line * 1.1, color="#dddddd", alpha=0.6, linewidth=0)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured time (s)")
    ax.set_ylabel("predicted time (s)")
    ax.set_title(f"GPU model vs measured: held-out MAPE {_mape_text(validation.mape('held-out'))}, calibration "
                 f"{_mape_text(validation.mape('calibration'))}\n(filled: held-out, hollow: calibration, grey x: "
                 f"roofline, band: +-10 %)", fontsize=9)
    if groups:
        ax.legend(fontsize=6.5, loc="upper left")
    return fig


def write_scatter(validation: Validation, path: Path) -> Path:
    """`scatter_figure` of `validation` written to `path`."""
    return _save(scatter_figure(validation), path)


def write_roofline(gpu: GPU, points: list[RooflinePoint], path: Path, title: str = "",
                   left_out: Sequence[tuple[str, str]] = ()) -> Path:
    """`roofline_figure` of `points` on `gpu` (and the kernels `left_out`) written to `path`, atomically."""
    return _save(roofline_figure(gpu, points, title, left_out), path)


def roofline_figure(gpu: GPU, points: list[RooflinePoint], title: str = "",
                    left_out: Sequence[tuple[str, str]] = ()) -> Figure:
    """`points` on `gpu`'s roofline (roofline.py's module docstring: the tensor peak and DRAM line, each kernel's
    exp ceiling dashed, its pure-roofline rate as an x), the legend right of the axes, over no line; a note under
    the axes names each kernel of `left_out` ((label, reason): one that cannot run the workload) and why."""
    fig = new_figure(10.0, 5.8)
    ax = fig.add_subplot()
    limits = ceilings(gpu)
    intensities = _loggable([p.flops_per_byte for p in points]) or [1.0]
    x = np.logspace(np.log10(min(intensities) / 4), np.log10(max(intensities) * 4), 200)
    peak = limits["tensor_flops_per_s"]
    ax.plot(x, np.minimum(peak, x * gpu.dram_bytes_per_s), color="black", linewidth=1.2,
            label=f"tensor peak {peak / 1e12:.0f} TFLOP/s, DRAM {gpu.dram_bytes_per_s / 1e12:.2f} TB/s")
    for i, p in enumerate(points):
        colour = PALETTE[i % len(PALETTE)]
        ax.scatter([p.flops_per_byte], [p.flops_per_s], color=colour, s=40, zorder=3, label=p.label)
        ax.scatter([p.flops_per_byte], [p.roofline_flops_per_s], color=colour, marker="x", s=30, zorder=3)
        if np.isfinite(p.exp_ceiling_flops_per_s):
            ax.hlines(p.exp_ceiling_flops_per_s, p.flops_per_byte / 2, p.flops_per_byte * 2, colors=colour,
                      linestyles="dashed", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs per DRAM byte")
    ax.set_ylabel("FLOP/s (benchmark convention)")
    heading = textwrap.fill(title or f"{gpu.name}: attention kernels", width=100)  # a long name wraps, not clipped
    ax.set_title(f"{heading}\n(dot: model, x: pure roofline, dashed: exp ceiling {limits['exp_per_s'] / 1e12:.1f} "
                 "Texp/s x FLOPs per exp)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)  # outside: hides no line
    if left_out:
        note = "Not drawn: " + "; ".join(f"{label} ({reason})" for label, reason in left_out)
        ax.text(0.0, -0.12, textwrap.fill(note, width=130), transform=ax.transAxes, fontsize=7, color="0.3",
                va="top")
    return fig
