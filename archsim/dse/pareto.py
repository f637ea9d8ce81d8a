"""Pareto fronts and best points over any objectives: throughput, efficiency and max context (`MAXIMISED`) are
maximised, every other metric minimised. A sweep's front is taken per work (`pareto_mask_by`): a point is compared
only with the points doing the same work (one sequence length, one batch), as a smaller workload would dominate
every design of a larger one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from archsim.dse.spec import MAXIMISED, is_axis


def sense(objective: str) -> float:
    """-1 for a maximised objective, 1 for a minimised one: the factor that makes every objective a cost."""
    return -1.0 if objective in MAXIMISED else 1.0


def best_label(points: pd.DataFrame, objective: str):
    """The index label of the point of `points` best in `objective`, NaNs skipped; of points tied there, the one
    first in the order of its axis values (`_axis_order`: the sweep's axes by name, numbers before text), then of
    least `key`: the point's content, not the store's row order (which a store filled by another spelling of the
    sweep changes) nor the key alone (which holds the model's version, so a new version would name another of the
    tied points)."""
    values = points[objective].astype(float)
    tied = points.loc[values[values == best_of(values, objective)].index]
    if len(tied) < 2:
        return tied.index[0]
    axes = sorted(c for c in tied.columns if is_axis(c))
    keys = tied["key"].astype(str) if "key" in tied.columns else pd.Series("", index=tied.index)
    return min(tied.index, key=lambda label: (_axis_order(tied.loc[label, axes]), keys[label]))


def _axis_order(values: Sequence) -> tuple:
    """A point's axis values as a tuple that orders points: numbers by value first, then any other value by its
    text (a list, a name), then missing values (NaN, or None: `_group_value`'s)."""
    return tuple(_value_order(v) for v in values)


def _value_order(value) -> tuple:
    """One axis value's place in `_axis_order`."""
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (2, 0.0, "") if value != value else (0, float(value), "")
    return (1, 0.0, repr(value))


def best_of(values: pd.Series, objective: str) -> float:
    """The best of `values` (a column of `objective`), NaNs skipped."""
    return values.max() if objective in MAXIMISED else values.min()


def pareto_mask(df: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """True for the candidate rows no other candidate dominates (no worse in every objective and better in one).
    A candidate has every objective finite and, where `df` has the columns (a sweep's records), is feasible and
    meets the constraints: an infeasible point's numbers are those of a design that does not fit, so it never
    dominates nor is on the front. Points with equal objective vectors do not dominate each other: all are on the
    front or none is (`distinct_vectors` counts them once).

    The candidates are taken in lexicographic order of their costs: a point that dominates another comes before it
    in that order. Two objectives: O(n log n) (`_front_2d`). One, or three or more: each is checked against the
    front found so far (`_front_scan`): a dominated point is dominated by a point of the front (or by one the front
    dominates, so by that front point too). O(n x front size). One objective: the front is the rows of its best
    value. No objectives: a ValueError."""
    if not objectives:
        raise ValueError("pareto_mask needs at least one objective, got none")
    values = df[list(objectives)].to_numpy(dtype=float) * np.array([sense(o) for o in objectives])
    valid = np.isfinite(values).all(axis=1)
    for column in ("feasible", "constraint_ok"):
        if column in df:
            valid &= df[column].to_numpy(dtype=bool)
    on_front = np.zeros(len(df), dtype=bool)
    candidates = np.flatnonzero(valid)
    order = candidates[np.lexsort(values[candidates].T[::-1])]
    on_front[order] = _front_2d(values[order]) if values.shape[1] == 2 else _front_scan(values[order])
    return pd.Series(on_front, index=df.index)


def pareto_mask_by(df: pd.DataFrame, objectives: Sequence[str], by: Sequence[str]) -> pd.Series:
    """`pareto_mask` taken within each group of rows with equal values of the columns `by` (`groups`): a sweep's
    work axes (`report.sweep.work_axes`: a sequence length, a batch), so that a row is on the front of its own work
    and a design at 16K tokens is never ranked against one at 4K, which does less work and would dominate it. No
    `by`: one group, `pareto_mask` itself. A row with no value of a column of `by` (NaN: an axis that does not apply
    to its target, where `dse.sweep.with_base_values` has filled every value a base gives) is compared with the rows
    that lack it too, as a work of its own."""
    on_front = np.zeros(len(df), dtype=bool)
    for _, rows in groups(df, by):
        on_front[rows] = pareto_mask(df.iloc[rows], objectives).to_numpy()
    return pd.Series(on_front, index=df.index)


def groups(df: pd.DataFrame, by: Sequence[str]) -> list[tuple[tuple, np.ndarray]]:
    """The rows of `df` grouped by their values of the columns `by`: per group its values (`_group_value`: a list
    as a tuple, NaN as None) and its rows' positions, the groups in `_axis_order` of their values (numbers
    ascending, then text, then missing). No `by`: one group of every row, its values ()."""
    if not by:
        return [((), np.arange(len(df)))]
    positions: dict[tuple, list[int]] = {}
    for i, row in enumerate(df[list(by)].itertuples(index=False)):
        positions.setdefault(tuple(_group_value(v) for v in row), []).append(i)
    return [(values, np.array(positions[values])) for values in sorted(positions, key=_axis_order)]


def _group_value(value):
    """An axis value as a group key: a Python number for a numpy one, a tuple for a list (a shape), None for NaN
    (every missing value one group; NaN equals no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return tuple(value) if isinstance(value, list) else value


def _front_2d(costs: np.ndarray) -> np.ndarray:
    """Which rows of `costs` (n x 2, sorted lexicographically) no other row dominates. A row is dominated by a row
    of a smaller first cost and no larger second cost (the running minimum of the second cost over the smaller
    first costs is no larger), or by a row of the same first cost and a smaller second cost (its group's minimum,
    the group's first row, is smaller)."""
    if not len(costs):
        return np.zeros(0, dtype=bool)
    first, second = costs[:, 0], costs[:, 1]
    new = np.r_[True, first[1:] != first[:-1]]  # the first row of each run of equal first costs
    group = np.cumsum(new) - 1
    group_min = second[new]
    before = np.r_[np.inf, np.minimum.accumulate(group_min)[:-1]]  # best second cost of the smaller first costs
    return (second == group_min[group]) & (second < before[group])


def _front_scan(costs: np.ndarray) -> np.ndarray:
    """Which rows of `costs` (sorted lexicographically) no other row dominates, each checked against the front
    rows before it (kept column by column in a buffer filled in place). A front row before it has no larger first
    cost, so it dominates the row when no later cost is larger and the two rows differ (one column: when the two
    rows differ)."""
    on_front = np.zeros(len(costs), dtype=bool)
    front = np.empty(costs.T.shape)
    size = 0
    for i, row in enumerate(costs):
        weakly = np.ones(size, dtype=bool)
        for column in range(1, len(row)):
            weakly &= front[column, :size] <= row[column]
        below = front[:, :size][:, weakly]
        if not (below != row[:, None]).any(axis=0).any():
            on_front[i] = True
            front[:, size] = row
            size += 1
    return on_front


def distinct_vectors(df: pd.DataFrame, objectives: Sequence[str]) -> int:
    """How many distinct vectors of `objectives` the rows of `df` have (equal values counted once)."""
    return len(df[list(objectives)].drop_duplicates())


def front_size_text(points: int, distinct: int, notes: Sequence[str] = ()) -> str:
    """`91 points (8 distinct objective vectors)`: a front's size, with its distinct objective vectors when ties
    (points of equal objectives: a swept axis that changes none of them) make them fewer, and `notes` after them in
    the one parenthesis (`91 points (8 distinct objective vectors; a note)`)."""
    vectors = [f"{distinct} distinct objective vector{'' if distinct == 1 else 's'}"] if distinct != points else []
    inside = "; ".join([*vectors, *notes])
    return f"{points} points" + (f" ({inside})" if inside else "")
