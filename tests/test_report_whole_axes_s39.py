"""A sweep report's pareto.csv and infeasible.csv write a whole axis value as the sweep file wrote it (64, not 64.0),
as `archsim results` does, where some points of the store lack the axis (fixer helper-473's note)."""

from __future__ import annotations

import pandas as pd

from archsim.report.sweep_page import write_sweep_report


def _records() -> pd.DataFrame:
    nan = float("nan")
    return pd.DataFrame({"key": ["a", "b", "c", "d"], "target_kind": ["architecture", "architecture", "gpu", "gpu"],
                         "target": ["fusemax", "fusemax", "h100-sxm5", "h100-sxm5"],
                         "arch.units.array2d.shape": [64.0, 128.0, nan, nan],
                         "workload.seq_len": [1024, 2048, 1024, 2048],
                         "feasible": [True, False, True, True], "reason": ["", "too big", "", ""],
                         "latency_s": [1.0, nan, 2.0, 3.0], "energy_pj": [5.0, nan, 4.0, 6.0],
                         "constraint_ok": [True, False, True, True]})


def test_pareto_and_infeasible_csvs_write_whole_axis_values_as_integers(tmp_path) -> None:
    write_sweep_report(_records(), tmp_path, "whole", ("latency_s", "energy_pj"))
    pareto = (tmp_path / "pareto.csv").read_text()
    infeasible = (tmp_path / "infeasible.csv").read_text()
    assert "64.0" not in pareto and ",64," in pareto
    assert "128.0" not in infeasible and ",128," in infeasible
