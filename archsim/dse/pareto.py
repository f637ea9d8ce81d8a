"""Pareto fronts over any objectives, all minimised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def pareto_mask(df: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """True for the rows no other row dominates (<= in every objective and < in one). Rows with a missing
    objective are never on the front. O(n^2) over rows, fine up to ~1e4 points."""
    values = df[list(objectives)].to_numpy(dtype=float)
    valid = ~np.isnan(values).any(axis=1)
    on_front = valid.copy()
    for i in np.flatnonzero(valid):
        others = values[valid]
        dominated = (others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)
        on_front[i] = not dominated.any()
    return pd.Series(on_front, index=df.index)
