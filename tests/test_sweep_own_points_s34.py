"""The Pareto figure tells a sweep's own points from reference targets by the reference kind (a `gpus:` block's
presets), so a kind it does not list (a `sparse:` sweep's points) is the sweep's own: constraint-breaking points are
drawn as crosses and the caption does not say that none of its points is feasible (audit helper-392: a quest-budget
sweep's 4 feasible points were drawn as reference stars under "none of the sweep's own points is feasible")."""

from __future__ import annotations

import pandas as pd

from archsim.report.sweep_figures import pareto_figure


def _rows(kind: str) -> pd.DataFrame:
    return pd.DataFrame({"target_kind": [kind] * 4, "target": ["quest/llama2-7b/rtx-4090"] * 4,
                         "latency_s": [0.017, 0.018, 0.019, 0.020], "memory_bytes": [4e9, 3e9, 2e9, 1e9],
                         "constraint_ok": [True, False, False, False], "on_front": [True, False, False, False]})


def _caption(fig) -> str:
    return fig.axes[0].get_title()


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_a_sparse_sweeps_points_are_its_own() -> None:
    fig = pareto_figure(_rows("sparse"), ["latency_s", "memory_bytes"], 0, "quest budgets")
    assert "none of the sweep's own points" not in _caption(fig)
    assert _legend(fig)[:2] == ["meets the constraints", "breaks a constraint"]
    assert "quest/llama2-7b/rtx-4090" not in _legend(fig)


def test_gpu_presets_beside_an_architecture_stay_reference_stars() -> None:
    rows = pd.concat([_rows("architecture"), _rows("gpu").assign(target="h100-sxm5")], ignore_index=True)
    fig = pareto_figure(rows, ["latency_s", "memory_bytes"], 0, "arch and GPUs")
    assert "h100-sxm5" in _legend(fig)
    assert "none of the sweep's own points" not in _caption(fig)
