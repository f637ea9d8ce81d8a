"""Report figures that hid what they drew (audit s39 of every report PNG): sensitivity panels with no labelled y value
(a log axis under a decade), a legend over two exp ceilings, a lower bound drawn as a measured saturation rate, a GPU
preset hidden under another's identical values, a sweep's own points all one colour, a compute ceiling named after
an op no point under it runs, bar totals in two formats, a paper star inside its own bar's colour, one long reason
written in seven table rows.

The figures are checked through the matplotlib objects they build (scales, tick labels, legend boxes and labels,
line styles, marker sizes), not their pixels; each expected value is stated where it comes from.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from archsim.arch.spec import ComputeUnit
from archsim.dse.pareto import pareto_mask
from archsim.gpu.figures import roofline_figure
from archsim.gpu.load import load_gpu
from archsim.gpu.roofline import RooflinePoint
from archsim.report import labelled, sweep_figures, tables
from archsim.report.duplex import qps_figure
from archsim.report.figures import energy_figure
from archsim.report.neupims import utilization_figure
from archsim.report.parallel import scaling_figure
from archsim.report.point import gaps_html, reasons_above
from archsim.report.tables import ceiling_name, fastest_ops

SCHEME, DEVICES = "parallel.scheme", "parallel.devices"


def _labelled_ticks(ax, which: str = "y") -> list[str]:
    """The non-empty tick labels (major and minor) of `ax`'s x or y axis whose ticks lie within its view."""
    ax.figure.draw_without_rendering()
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = sorted(ax.get_ylim() if which == "y" else ax.get_xlim())
    ticks = [*zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=True),
             *zip(axis.get_minorticklocs(), axis.get_minorticklabels(), strict=True)]
    return [label.get_text() for loc, label in ticks if lo <= loc <= hi and label.get_text()]


# ------------------------------------------------------------------------------------------------ 1: scales
def _sensitivity_rows(values: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """One axis (budget, 4 values) and an objective per entry of `values`: median and best running linearly from the
    entry's low to its high value."""
    budgets = (512, 1024, 2048, 4096)
    return pd.DataFrame([{"axis": "sparse.budget", "value": b, "value_label": str(b), "objective": objective,
                          "median": hi - (hi - lo) * i / 6, "best": lo + (hi - lo) * i / 6, "points": 2}
                         for objective, (lo, hi) in values.items() for i, b in enumerate(budgets)])


def test_sensitivity_panels_under_a_decade_are_linear_and_every_panel_has_labelled_values() -> None:
    """The audit's quest-budgets energy panel spanned 0.01700..0.01828 (under a decade): on a log axis its only
    decade ticks, 1e-2 and 1e-1, lay outside the view, so no y value was labelled. Under a decade the axis is
    linear; from 30x (1.5 decades, where one decade tick falls in view) log, labelled at 1, 2 and 5 of each decade;
    over 4 decades log. Every panel shows at least two labelled values."""
    spans = {"energy_per_token_j": (0.01700, 0.01828), "latency_s": (0.02, 0.6), "memory_bytes": (1e6, 1e10)}
    fig = sweep_figures.sensitivity_figure(_sensitivity_rows(spans), tuple(spans), "t")
    energy, latency, memory = fig.axes
    assert (energy.get_yscale(), latency.get_yscale(), memory.get_yscale()) == ("linear", "log", "log")
    for ax in fig.axes:
        assert len(_labelled_ticks(ax)) >= 2, ax.get_ylabel()


@pytest.mark.parametrize(("values", "scale"), [((0.0126, 0.0957), "linear"), ((0.52, 1.0), "linear"),
                                               ((0.01, 0.1), "log"), ((1e13, 1e17), "log")])
def test_the_pareto_axis_is_log_from_a_decade(values: tuple[float, float], scale: str) -> None:
    """seqpar-scaling's latency spans 7.6x and its efficiency 1.9x: linear; 10x and more: log."""
    assert sweep_figures._axis_scale(pd.Series(values))["value"] == scale


# ------------------------------------------------------------------------------------------------ 5: own points
def _seqpar_rows() -> pd.DataFrame:
    """`pareto_rows`-shaped: 3 schemes x 4 device counts; latency 0.1 / P x (1 + 0.1 k) for the k-th scheme,
    efficiency 1 / (1 + 0.02 (k + 1) (P - 1)): at each P zigzag (k = 0) is the fastest and the most efficient, and
    more devices trade efficiency for time, so the front is zigzag's four points."""
    rows = [{"key": f"{s}{p}", "target_kind": "parallel", "target": "parallel", SCHEME: s, DEVICES: p,
             "latency_s": 0.1 / p * (1 + 0.1 * k), "efficiency": 1 / (1 + 0.02 * (k + 1) * (p - 1)),
             "constraint_ok": True}
            for k, s in enumerate(("zigzag", "ring", "ulysses")) for p in (1, 2, 4, 8)]
    df = pd.DataFrame(rows)
    return df.assign(on_front=pareto_mask(df, ["latency_s", "efficiency"]))


def test_a_sweeps_own_points_are_coloured_by_scheme_and_marked_by_devices_and_the_front_is_named() -> None:
    fig = sweep_figures.pareto_figure(_seqpar_rows(), ("latency_s", "efficiency"), 0, "seqpar-scaling")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:7] == ["scheme zigzag", "scheme ring", "scheme ulysses", "devices 1", "devices 2", "devices 4",
                          "devices 8"]
    own = [c for c in ax.collections if len(c.get_offsets()) and c.get_label().startswith("_")]
    assert len(own) == 12  # one collection per (scheme, devices)
    assert len({to_hex(c.get_facecolor()[0]) for c in own}) == 3
    assert sorted(t.get_text() for t in ax.texts) == [f"scheme zigzag, devices {p}" for p in (1, 2, 4, 8)]
    assert ax.get_ylabel() == "efficiency (1 = ideal scaling)" and ax.get_yscale() == "linear"


def test_memory_speedup_and_efficiency_have_labels_with_units() -> None:
    assert sweep_figures.metric_label("memory_bytes") == "memory (bytes)"
    assert sweep_figures.metric_label("speedup") == "speed-up over dense (x)"
    assert sweep_figures.metric_label("efficiency") == "efficiency (1 = ideal scaling)"


# ------------------------------------------------------------------------------------------------ 4: coincident
def _gpu_rows() -> pd.DataFrame:
    """The demo's case: h100-sxm5's three points are h200-sxm's first three (same latency and energy); h200-sxm
    has a fourth, longer sequence h100-sxm5 does not fit."""
    rows = [{"target_kind": "gpu", "target": gpu, "workload.seq_len": n, "latency_s": n * 6e-7,
             "energy_pj": n * 4e8}
            for gpu, lengths in (("h100-sxm5", (4096, 16384, 65536)), ("h200-sxm", (4096, 16384, 65536, 262144)))
            for n in lengths]
    rows += [{"target_kind": "architecture", "target": "fusemax", "workload.seq_len": n, "latency_s": n * 2e-6,
              "energy_pj": n * 1e10} for n in (4096, 16384, 65536, 262144)]
    return pd.DataFrame(rows).assign(constraint_ok=True, on_front=False)


def test_a_preset_with_another_presets_values_is_drawn_smaller_on_top_of_it() -> None:
    ax = sweep_figures.pareto_figure(_gpu_rows(), ("latency_s", "energy_pj"), 0, "demo").axes[0]
    stars = {c.get_label(): c for c in ax.collections if c.get_label() in ("h100-sxm5", "h200-sxm")}
    assert stars["h100-sxm5"].get_sizes()[0] < stars["h200-sxm"].get_sizes()[0]
    assert stars["h100-sxm5"].get_zorder() > stars["h200-sxm"].get_zorder()
    assert "h100-sxm5 has the same values as h200-sxm" in ax.get_title().replace("\n", " ")


def test_a_target_line_with_another_targets_values_is_dashed_on_top_of_it() -> None:
    rows = _gpu_rows().drop(columns=["constraint_ok", "on_front"]).rename(columns={"latency_s": "best_latency_s"})
    ax = sweep_figures.targets_figure(rows, ("latency_s",), "workload.seq_len", "demo").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["h100-sxm5"].get_linestyle() == "--" and lines["h200-sxm"].get_linestyle() == "-"
    assert lines["h100-sxm5"].get_zorder() > lines["h200-sxm"].get_zorder()
    assert "h100-sxm5 has the same values as h200-sxm" in ax.get_title().replace("\n", " ")
    assert lines["fusemax"].get_linestyle() == "-"


# ------------------------------------------------------------------------------------------------ 2: GPU roofline
def test_the_gpu_roofline_legend_is_outside_the_axes() -> None:
    """The audit's A100 case: prefill exp ceilings at ~1.2e15 and ~2.1e15 FLOP/s near 2e3-3e3 FLOPs/byte sat under
    a legend placed "best" inside the axes."""
    points = [RooflinePoint("prefill fwd FA2", 3300.0, 2.2e14, 1.2e15, 3.1e14),
              RooflinePoint("prefill fwd+bwd FA2", 2000.0, 1.9e14, 2.1e15, 3.1e14),
              RooflinePoint("decode Flash-Decoding", 4.0, 7e12, 7.7e13, 8e12)]
    fig = roofline_figure(load_gpu("a100-80gb-sxm4"), points, "t")
    fig.draw_without_rendering()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


# ------------------------------------------------------------------------------------------------ 3: duplex bound
def _qps_rows() -> pd.DataFrame:
    rows = [{"system": s, "qps": q, "requests": 150, "ttft_p90_s": 0.1 * q * f, "tbt_p99_s": 0.05 + 0.001 * q * f,
             "e2e_p50_s": q * f, "e2e_p99_s": 1.5 * q * f}
            for s, f in (("duplex-gpu", 2.0), ("duplex-pe-et", 1.0)) for q in (4, 8, 12, 16)]
    return pd.DataFrame(rows)


def test_a_saturation_bound_is_drawn_and_named_as_a_bound() -> None:
    """duplex-pe-et saturated at no rate up to 16 req/s (`saturation_qps`: 16, "at least"): a dotted line, an arrow
    and "≥ 16 req/s (not saturated in the sweep)"; duplex-gpu's interpolated 11.9 req/s stays dashed."""
    fig = qps_figure(_qps_rows(), {"duplex-gpu": {"qps": 11.9, "bound": ""},
                                   "duplex-pe-et": {"qps": 16.0, "bound": "at least"}})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "duplex-pe-et ≥ 16 req/s (not saturated in the sweep)" in labels
    assert "duplex-gpu saturates at 11.9 req/s" in labels
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert lines["duplex-pe-et ≥ 16 req/s (not saturated in the sweep)"].get_linestyle() == ":"
        assert lines["duplex-gpu saturates at 11.9 req/s"].get_linestyle() == "--"
        assert ax.get_xlim()[1] > 16.0  # room for the arrow right of the bound
        assert any(t.arrow_patch is not None for t in ax.texts)


# ------------------------------------------------------------------------------------------------ 7: efficiency
def test_the_efficiency_figure_says_each_scheme_is_against_its_own_one_device_time() -> None:
    rows = pd.DataFrame({"series": ["ring", "ring", "lasp2", "lasp2"], "scheme": ["ring", "ring", "lasp2", "lasp2"],
                         "devices": 64, "seq_len": [524288, 2097152] * 2, "efficiency": [0.45, 0.50, 0.25, 0.88]})
    ax = scaling_figure(rows, "seq_len", "efficiency", "t").axes[0]
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts()).replace("\n", " ")
    assert "each scheme against its own one-device time / P" in legend


# ------------------------------------------------------------------------------------------------ 8: ceilings
def test_a_compute_ceiling_is_named_after_the_ops_the_einsums_under_it_run() -> None:
    """FLAT's 1-D array: every op 1 cycle but gelu (4); its Einsums GM (max), SD (add) and A (div) run at the
    unit's rate. The spec's first 1-cycle op, mac, is none of theirs and is not named; gelu does not run at it."""
    unit = ComputeUnit("array1d", (256,), {"mac": 1, "mul": 1, "add": 1, "max": 1, "div": 1, "exp": 1, "gelu": 4},
                       energy=None, area_um2=0.0)
    ops = [op for einsum_ops in (["max"], ["add"], ["div"], ["add", "gelu"]) for op in fastest_ops(unit, einsum_ops)]
    assert ceiling_name("array1d", ops) == "array1d max, add, div"
    assert ceiling_name("array1d", fastest_ops(unit, ["gelu"])) == "array1d peak"


def test_each_unit_has_one_ceiling_name_across_architectures() -> None:
    """FuseMax's reproduction draws five architectures: each unit's ceiling once (one name per unit and rate), where
    each architecture's own fastest ops had made two names, two labels on one line."""
    points = [labelled.from_run(m, workload="bert-base", sets={"seq_len": 1024}) for m in ("flat", "fusemax")]
    compute = tables.ceiling_rows(points).query("kind == 'compute'")
    assert compute.value.is_unique and "mac" not in compute.name[compute.name.str.startswith("array1d")].iloc[0]


# ------------------------------------------------------------------------------------------------ 9: small
def test_energy_totals_have_one_format_and_four_significant_digits() -> None:
    """10180 J and 9360 J were "1.018e+04 J" beside "9360 J"."""
    rows = pd.DataFrame({"label": ["a", "b"], "stack": ["array2d mac"] * 2, "energy_pj": [10180e12, 9360e12]})
    ax = energy_figure(rows, "t").axes[0]
    assert [t.get_text() for t in ax.texts] == ["10.18 kJ", "9.360 kJ"]


def test_the_papers_utilization_stars_contrast_with_the_bars() -> None:
    """npu+pim's paper star (28 %) sat inside its own green bar (53 %), drawn in the bar's green."""
    rows = pd.DataFrame([{"mode": m, "batch": 256, "npu_util": u, "pim_util": 0.25 if m != "npu-only" else 0.0,
                          "paper_npu_util": p, "paper_pim_util": 0.17 if m == "npu+pim" else np.nan, "fits": True,
                          "unfit_reason": ""} for m, u, p in (("npu-only", 0.3, np.nan), ("npu+pim", 0.53, 0.28))])
    for ax in utilization_figure(rows).axes:
        stars = [c for c in ax.collections if len(c.get_offsets())]
        assert stars and all(to_hex(c.get_facecolor()[0]) == "#ffffff" for c in stars)


def test_a_reason_shared_by_many_rows_is_written_once_and_referred_to() -> None:
    long = "dense FA-2 is off by -31% to -5%: " + "x" * 1000
    table = pd.DataFrame({"metric": ["a", "b", "c", "d"], "ours": 1.0, "paper": 2.0,
                          "within": [False, False, True, None], "reason": [long, long, "", "printed, not checked"]})
    shown = reasons_above(table)
    assert shown.reason.tolist() == ["reason 1 above", "reason 1 above", "", "printed, not checked"]
    listed = gaps_html(table, numbered=True)
    assert listed.count(long) == 1 and listed.startswith("<li><b>reason 1</b>: a; b: ")
    assert table.reason.tolist()[0] == long  # the CSV's table is not changed
    assert not math.isnan(shown.ours.sum())
