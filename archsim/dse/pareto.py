"""Pareto fronts and best points over any objectives: throughput, efficiency and max context (`MAXIMISED`) are
maximised, every other metric minimised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from archsim.dse.spec import MAXIMISED


def sense(objective: str) -> float:
    """-1 for a maximised objective, 1 for a minimised one: the factor that makes every objective a cost."""
    return -1.0 if objective in MAXIMISED else 1.0


def best_label(values: pd.Series, objective: str):
    """The index label of the best of `values` (a column of `objective`), NaNs skipped."""
    return values.idxmax() if objective in MAXIMISED else values.idxmin()


def best_of(values: pd.Series, objective: str) -> float:
    """The best of `values` (a column of `objective`), NaNs skipped."""
    return values.max() if objective in MAXIMISED else values.min()


def pareto_mask(df: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """True for the candidate rows no other candidate dominates (no worse in every objective and better in one).
    A candidate has every objective finite and, where `df` has the columns (a sweep's records), is feasible and
    meets the constraints: an infeasible point's numbers are those of a design that does not fit, so it never
    dominates nor is on the front.

    The candidates are scanned in lexicographic order of their costs, each checked against the front found so far:
    a point that dominates another comes before it in that order, and a dominated point is dominated by a point of
    the front (or by one the front dominates, so by that front point too). O(n x front size)."""
    values = df[list(objectives)].to_numpy(dtype=float) * np.array([sense(o) for o in objectives])
    valid = np.isfinite(values).all(axis=1)
    for column in ("feasible", "constraint_ok"):
        if column in df:
            valid &= df[column].to_numpy(dtype=bool)
    on_front = np.zeros(len(df), dtype=bool)
    candidates = np.flatnonzero(valid)
    front = np.empty((0, values.shape[1]))
    for i in candidates[np.lexsort(values[candidates].T[::-1])]:
        if not ((front <= values[i]).all(axis=1) & (front < values[i]).any(axis=1)).any():
            on_front[i] = True
            front = np.vstack([front, values[i]])
    return pd.Series(on_front, index=df.index)
