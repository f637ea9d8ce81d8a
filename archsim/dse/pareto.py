"""Pareto fronts over any objectives, all minimised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def pareto_mask(df: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """True for the candidate rows no other candidate dominates (<= in every objective and < in one). A candidate
    has every objective finite and, where `df` has the columns (a sweep's records), is feasible and meets the
    constraints: an infeasible point's numbers are those of a design that does not fit, so it never dominates nor
    is on the front. O(n^2) over rows, fine up to ~1e4 points."""
    values = df[list(objectives)].to_numpy(dtype=float)
    valid = np.isfinite(values).all(axis=1)
    for column in ("feasible", "constraint_ok"):
        if column in df:
            valid &= df[column].to_numpy(dtype=bool)
    on_front = valid.copy()
    for i in np.flatnonzero(valid):
        others = values[valid]
        dominated = (others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)
        on_front[i] = not dominated.any()
    return pd.Series(on_front, index=df.index)
