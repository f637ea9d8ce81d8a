"""A target has one colour in every figure of a sweep report: the architecture colour 0 (the Pareto figure's own
points), the GPU presets sorted by name colours 1, 2, ... (audit: the demo report drew a100 orange, h100 green,
h200 red, b200 purple in pareto.png and a100 blue, b200 orange, h100 red, h200 purple in targets.png, each figure
colouring targets by their order of appearance)."""

from __future__ import annotations

import pandas as pd
from matplotlib.colors import to_hex

from archsim.report import sweep
from archsim.report.figures import PALETTE
from archsim.report.sweep_figures import pareto_figure, target_colours, targets_figure

ARCH = "fusemax"
GPUS = ("a100-80gb-sxm4", "h100-sxm5", "h200-sxm", "b200")  # the demo's order of appearance, not sorted
# sorted by name: a100-80gb-sxm4, b200, h100-sxm5, h200-sxm take PALETTE[1], [2], [3], [4]
EXPECTED = {ARCH: PALETTE[0], "a100-80gb-sxm4": PALETTE[1], "b200": PALETTE[2], "h100-sxm5": PALETTE[3],
            "h200-sxm": PALETTE[4]}
SEQ_LENS = (4096, 16384)


def _store() -> pd.DataFrame:
    """A sweep's records: the architecture's two designs and each GPU's one point at each seq_len, all feasible,
    all within the constraints; a GPU's area is not modelled (NaN)."""
    rows = []
    for n in SEQ_LENS:
        for design, scale in ((16, 1.0), (32, 0.7)):
            rows.append({"target_kind": "architecture", "target": ARCH, "workload.seq_len": n, "linked.pe_dim": design,
                         "latency_s": scale * n * 1e-6, "energy_pj": n * 1e9 / scale, "area_um2": design * 1e6})
        for i, gpu in enumerate(GPUS):
            rows.append({"target_kind": "gpu", "target": gpu, "workload.seq_len": n, "linked.pe_dim": float("nan"),
                         "latency_s": (i + 2) * n * 1e-7, "energy_pj": (i + 2) * n * 1e8, "area_um2": float("nan")})
    df = pd.DataFrame(rows)
    return df.assign(feasible=True, constraint_ok=True, on_front=False)


def _legend_colours(ax) -> dict[str, str]:
    legend = ax.get_legend()
    return {text.get_text(): to_hex(handle.get_color())
            for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)}


def test_the_pareto_and_targets_figures_give_each_target_one_colour() -> None:
    df = _store()
    objectives = ["latency_s", "energy_pj"]
    pareto = pareto_figure(df, objectives, 0, "demo")
    stars = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in pareto.axes[0].collections
             if c.get_label() in GPUS}
    targets = targets_figure(sweep.target_rows(df, objectives, "workload.seq_len"), objectives, "workload.seq_len",
                             "demo")
    for ax in targets.axes:
        lines = {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()}
        assert lines == EXPECTED
        assert {name: lines[name] for name in GPUS} == stars
    assert stars == {name: EXPECTED[name] for name in GPUS}
    legend = _legend_colours(targets.axes[0])
    assert {name: legend[name] for name in GPUS} == stars


def test_colours_follow_names_not_order() -> None:
    assert target_colours(["h200-sxm", ARCH, "b200"], {"b200", "h200-sxm"}) == {
        ARCH: PALETTE[0], "b200": PALETTE[1], "h200-sxm": PALETTE[2]}
    # a second own target (a sparse sweep's) takes the colour after the references, never one of theirs
    assert target_colours(["quest/b", "quest/a", "h100-sxm5"], {"h100-sxm5"}) == {
        "quest/a": PALETTE[0], "h100-sxm5": PALETTE[1], "quest/b": PALETTE[2]}
