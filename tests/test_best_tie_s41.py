"""The best point of an objective named on a tie: the one of least key, whatever the store's row order (a store
filled by another spelling of the sweep named another point of the same area; audit helper-493)."""

from __future__ import annotations

import pandas as pd

from archsim.dse.pareto import best_label


def test_a_tie_is_broken_by_the_points_key_not_the_row_order():
    rows = pd.DataFrame({"key": ["c9", "a1", "b5"], "area_um2": [2.0, 1.0, 1.0], "throughput_tok_s": [5.0, 7.0, 7.0]})
    for frame in (rows, rows.iloc[::-1]):
        assert frame.loc[best_label(frame, "area_um2"), "key"] == "a1"
        assert frame.loc[best_label(frame, "throughput_tok_s"), "key"] == "a1"


def test_without_keys_or_ties_the_best_is_the_first_best():
    rows = pd.DataFrame({"area_um2": [3.0, float("nan"), 1.0, 1.0]})
    assert best_label(rows, "area_um2") == 2
    assert best_label(rows.assign(key=["x", "y", "z", "w"]).iloc[:3], "area_um2") == 2


def test_a_tie_is_broken_by_the_axis_values_whatever_the_model_version():
    """A point's key holds the model's version (a digest of archsim's source), so least-key named another of the
    tied points after any edit (helper-502, s42): the axis values come first, numbers by value, then text."""
    rows = pd.DataFrame({"workload.seq_len": [65536, 4096, 16384], "arch.name": ["b", "b", "a"],
                         "area_um2": [1.0, 1.0, 2.0]})
    for keys in (["a", "b", "c"], ["c", "b", "a"]):
        for frame in (rows.assign(key=keys), rows.assign(key=keys).iloc[::-1]):
            assert frame.loc[best_label(frame, "area_um2"), "workload.seq_len"] == 4096
    mixed = pd.DataFrame({"arch.units": ["[2, 2]", 8, float("nan")], "area_um2": [1.0, 1.0, 1.0]})
    assert mixed.loc[best_label(mixed, "area_um2"), "arch.units"] == 8  # a number, then text, then missing
