"""Tables of a sweep report (`archsim report --sweep`): a store DataFrame (`archsim.dse.store.records`) in,
DataFrames out; nothing drawn or written here.

Axes are the record columns named `arch.<path>`, `workload.<param>`, `linked.<name>`, `system.<path>` or
`serving.<knob>`, in column order (the sweep's axis order). The tables read the generic record columns (latency_s,
energy_pj, ... and any other metric named as an objective), whatever the target: an architecture, a GPU preset or
a system. Only feasible points are measured: infeasible ones (the model rejected them, e.g. a tile that does not
fit, a system whose weights do not fit its memory) are counted in the summary. The Pareto front, the heat map's
cells, the per-target bests and the summary's best points are taken over the feasible points that also meet the
constraints; the feasible points that break a constraint are drawn, marked, never on the front, and counted in a
heat-map cell they alone fill (blank). Objectives are minimised except those of `MAXIMISED` (throughput): "best"
is the max there.
An axis that does not apply to a point (NaN: a GPU preset added to an architecture's sweep takes no `arch.` axis,
TokenSelect no `sparse.budget`) leaves the point out of that axis's sensitivity panel alone (`applied_points`,
`not_applying`), and out of a heat map one of whose axes, drawn or held, it is (the map counts them); the Pareto
fronts and the per-target comparison are over all. The axes that change the work (`work_axes`: a sequence length, a
batch, a linked axis setting one; `dse.spec.work_field`'s rule, not a tile such as M0) are never ranked across: a
heat map holds each at one value, so no cell's best is that of a smaller workload than its neighbours', and the
Pareto front and the best point per objective are taken per work (`front_work`: one front per sequence length), so
a design at 16K tokens is on the front of the 16K designs rather than dominated by every design at 4K. A NaN the
base would fill (a point stored by a sweep without the axis) is filled before the records reach here
(`dse.sweep.with_base_values`), so NaN means does not apply (a work of its own on the front).

A metric is labelled by one rule (`metric_label`): by its column (`METRIC_LABELS`), unless the records' kind gives
the generic column another meaning (`KIND_METRIC_LABELS`: a system point's latency_s is its TBT p99, its energy_pj
the energy per output token), for the heat map, the Pareto figure, the sensitivity panels and the summary alike.

`spec_records` keeps the records of a report's sweep spec (a store may hold other points too, and other sweeps'),
with the spec's own axis values, and refuses a spec none of whose points is stored. A point that several values of
an axis are (one key: the same requests as a CSV and as JSON Lines) is evaluated once and shown under the first
value drawn with it (`spec_keys`), as the sweep stores it and `archsim results` shows it; `same_values` lists the
others, which the page names (`same_values_text`) and leaves out of its tables (`reported_axes`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from archsim.dse import spec as dse_spec
from archsim.dse.pareto import best_label, best_of, groups, pareto_mask_by, sense
from archsim.dse.points import expand, keyed, load_base, with_constraints
from archsim.dse.serving_spec import SERVING_ROOT, SYSTEM_ROOT, ServingSettings
from archsim.dse.spec import (
    DEFAULT_OBJECTIVES,
    KIND_OBJECTIVES,
    WORK_AXES_ATTR,
    SweepSpec,
    axis_missing,
    is_axis,
    work_field,
)
from archsim.dse.system_points import TRACE_KEY
from archsim.errors import SpecError

HEATMAP_METRIC = "latency_s"
SYSTEM_HEATMAP_METRIC = "tbt_p99_s"  # a system point's latency_s, by its name (`heatmap_metric`)
HELD_RULE = "the work with the most feasible points, the first on a tie"  # how `held_work` chooses, in captions
METRIC_LABELS = {"latency_s": "latency (s)", "energy_pj": "energy (pJ)", "area_um2": "area (um^2)",
                 "dram_traffic_bytes": "DRAM traffic (bytes)", "edp": "energy x delay (pJ s)",
                 "throughput_tok_s": "throughput (tokens/s)", "energy_per_token_j": "energy per token (J)",
                 "cost_per_token_usd": "cost per token (USD)", "ttft_p50_s": "TTFT p50 (s)",
                 "ttft_p99_s": "TTFT p99 (s)", "tbt_p50_s": "TBT p50 (s)", "tbt_p99_s": "TBT p99 (s)",
                 "memory_bytes": "memory (bytes)", "dense_memory_bytes": "dense memory (bytes)",
                 "dense_time_s": "dense time (s)", "efficiency": "efficiency (1 = ideal scaling)",
                 "speedup": "speed-up over dense (x)", "exposed_comm_s": "exposed communication (s)",
                 "comm_s": "communication (s)", "compute_s": "compute (s)", "wait_s": "wait (s)",
                 "max_context_tokens": "max context (tokens)"}
# What a generic column holds for a kind of record where it is not what its name says (`dse.system_points`: a
# serving run's latency_s is its p99 time between tokens, its energy_pj the energy per output token).
KIND_METRIC_LABELS = {"system": {"latency_s": METRIC_LABELS[SYSTEM_HEATMAP_METRIC],
                                 "energy_pj": "energy per output token (pJ)",
                                 "edp": "TBT p99 x energy per output token (pJ s)"}}
_BINARY = ((2**40, "Ti"), (2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki"))
_DECIMAL = ((12, "T"), (9, "G"), (6, "M"), (3, "k"))  # powers of ten


def default_objectives(df: pd.DataFrame) -> tuple[str, ...]:
    """The objectives of a store read without its spec: the default of the kind its points are
    (`dse.spec.KIND_OBJECTIVES`: a sparse point's time and memory), else `DEFAULT_OBJECTIVES`."""
    return KIND_OBJECTIVES.get(records_kind(df), DEFAULT_OBJECTIVES)


def records_kind(df: pd.DataFrame) -> str | None:
    """The one target_kind of the records `df` (`system`, `architecture`, ...); None for several or none."""
    kinds = set(df["target_kind"]) if "target_kind" in df else set()
    return kinds.pop() if len(kinds) == 1 else None


def metric_label(metric: str, kind: str | None = None) -> str:
    """`metric`'s label for records of `kind` (`records_kind`): what the column holds for that kind
    (`KIND_METRIC_LABELS`: a system's latency_s is `TBT p99 (s)`), else by its name (`METRIC_LABELS`), else the
    column name."""
    return KIND_METRIC_LABELS.get(kind or "", {}).get(metric) or METRIC_LABELS.get(metric, metric)


def directions_text(objectives: Sequence[str]) -> str:
    """`each minimised`, `each maximised`, or `latency_s minimised and efficiency maximised`: which way each of
    `objectives` is ranked (`dse.pareto.sense`), as a front over them ranks it."""
    down = [o for o in objectives if sense(o) > 0]
    up = [o for o in objectives if sense(o) < 0]
    if not up or not down:
        return "each minimised" if not up else "each maximised"
    return f"{' and '.join(down)} minimised{',' if len(down) > 1 else ' and'} {' and '.join(up)} maximised"


def axis_columns(df: pd.DataFrame) -> list[str]:
    """The axis columns of a record DataFrame (`is_axis`), in column order."""
    return [c for c in df.columns if is_axis(c)]


def keyed_points(spec: SweepSpec) -> list[tuple[str, dict[str, Any]]]:
    """Every point the sweep draws (axis path -> value), with its key, in draw order (points that are one point,
    one key, each listed)."""
    base = load_base(spec)
    points = expand(spec)
    return [(key, point) for (key, _), point in zip(keyed(spec, base, points), points, strict=True)]


def spec_keys(spec: SweepSpec, drawn: list[tuple[str, dict[str, Any]]] | None = None) -> dict[str, dict[str, Any]]:
    """The keys of the sweep's distinct points, each with the first point drawn with it (`drawn`: `keyed_points`,
    where the caller has them): the one the sweep evaluates and stores, so a point several values of an axis are is
    shown under the first of them, as `archsim results` shows it."""
    return _first_drawn(keyed_points(spec) if drawn is None else drawn)


def _first_drawn(drawn: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each key of `drawn` with the first point drawn with it."""
    first: dict[str, dict[str, Any]] = {}
    for key, point in drawn:
        first.setdefault(key, point)
    return first


@dataclass(frozen=True)
class SameValue:
    """A value of an axis some of whose drawn points are points of other values of it (one key: the same requests
    in two formats), shown under those (`spec_keys`): `points` of its `drawn` points."""

    axis: str
    value: Any
    shown_as: tuple[Any, ...]  # the values its points are shown under, in draw order
    points: int
    drawn: int


def same_values(drawn: list[tuple[str, dict[str, Any]]], axes: Sequence[str]) -> list[SameValue]:
    """The values of `axes` some of whose points (`drawn`: `keyed_points`) are shown under another value of the
    axis, the first drawn with their key (`spec_keys`), in axis then draw order."""
    first = _first_drawn(drawn)
    values: dict[tuple[str, str], Any] = {}  # (axis, value's identity) -> the value, in draw order
    moved: Counter = Counter()
    shown_as: dict[tuple[str, str], dict[str, Any]] = {}
    for key, point in drawn:
        if point is first[key]:  # most points: the first of their key
            continue
        for axis in axes:
            value, under = point.get(axis), first[key].get(axis)
            mine = (axis, _identity(value))
            if _identity(under) != mine[1]:
                values.setdefault(mine, value)
                moved[mine] += 1
                shown_as.setdefault(mine, {}).setdefault(_identity(under), under)
    if not moved:
        return []
    totals = Counter((axis, _identity(point.get(axis))) for _, point in drawn for axis in {a for a, _ in moved})
    return [SameValue(axis, value, tuple(shown_as[mine].values()), moved[mine], totals[mine])
            for axis in axes for mine, value in values.items() if mine[0] == axis]


def _identity(value: Any) -> str:
    """An axis value as canonical JSON text: a list, a mapping, true apart from 1 (`Counter` keys)."""
    return json.dumps(value, sort_keys=True, default=str)


def same_values_text(same: Sequence[SameValue]) -> str:
    """A sentence naming each value of `same` and the values its points are shown under ("" for none)."""
    if not same:
        return ""
    named = [f"{s.axis} {value_label(s.axis, s.value)} as "
             + " and ".join(value_label(s.axis, v) for v in s.shown_as)
             + ("" if s.points == s.drawn else f" ({s.points} of its {s.drawn} points)") for s in same]
    return ("Values that are the same points as another value's (one key: the same requests in two files, say), "
            "evaluated once and shown under the first value drawn, as `archsim results` shows them: "
            + "; ".join(named) + ".")


def reported_axes(axes: Mapping[str, list[Any]], same: Sequence[SameValue]) -> dict[str, list[Any]]:
    """`axes` without the values all of whose points are shown under others (`same_values`), so that no table
    gives them a row of no point."""
    gone = {(s.axis, _identity(s.value)) for s in same if s.points == s.drawn}
    return {axis: [v for v in values if (axis, _identity(v)) not in gone] for axis, values in axes.items()}


def _serving_label(name: str, value: Any) -> str:
    """A serving setting as the page writes it: a trace the store holds by its requests (`TRACE_KEY`) as "a trace"."""
    return "a trace" if value == TRACE_KEY else value_label(f"{SERVING_ROOT}.{name}", value)


def serving_text(settings: Mapping[str, Any] | None, axes: Sequence[str]) -> str:
    """`Every point's serving block: lengths tr.jsonl, max_batch 8, batching prefill-first.`: a system sweep's
    serving settings (`ServingSettings`, as the spec or the store's base holds them, in its field order) that are
    given and that no axis in `axes` sets; "" for none (another kind of sweep: `settings` None). A store's base
    holds a trace as its points' keys do (`TRACE_KEY`: by its requests, not its file), so read from the store
    alone it is "a trace"."""
    shown = [f"{name} {_serving_label(name, settings[name])}" for name in (f.name for f in fields(ServingSettings))
             if settings and settings.get(name) is not None and f"{SERVING_ROOT}.{name}" not in axes]
    return f"Every point's serving block: {', '.join(shown)}." if shown else ""


def spec_records(spec: SweepSpec, df: pd.DataFrame, store: str,
                 keys: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """The records of `df` (the store `store`) that are points of `spec` (`keys`: its `spec_keys`, where the
    caller has them), with the spec's axis values (a point another sweep of the same base stored carries that
    sweep's axes: a store two sweeps share reports each) and `constraint_ok` judged by the spec's constraints; a
    SpecError naming `store` when none of its points is stored (its axes named when they are not the records').
    Records of other points (an earlier version of the spec, another sweep) are left out, so a report never mixes
    them in."""
    keys = spec_keys(spec) if keys is None else keys
    mine = df[df["key"].isin(list(keys))] if "key" in df else df.iloc[:0]
    if mine.empty:
        spec_axes, stored_axes = list(spec.axes), axis_columns(df)
        if sorted(spec_axes) != sorted(stored_axes):
            raise SpecError(store, "", f"its records are not of sweep {spec.name} ({spec.source}): they have the "
                                       f"axes {', '.join(stored_axes) or 'none'}; the spec has {', '.join(spec_axes)}")
        raise SpecError(store, "", f"no stored point is a point of sweep {spec.name} ({spec.source}): the store "
                                   "was written by another spec or another archsim version; report it without "
                                   "--spec, or run `archsim sweep SPEC --db NEW_DB` (a store of its own) to "
                                   "evaluate this one")
    mine = mine.drop(columns=[c for c in axis_columns(mine) if c not in spec.axes]).reset_index(drop=True)
    for path in spec.axes:
        mine[path] = pd.Series([keys[key].get(path, np.nan) for key in mine["key"]])
    mine = with_constraints(mine, spec.constraints)
    mine.attrs[WORK_AXES_ATTR] = dse_spec.work_axes(spec)  # its linked axes' fields, which no record holds
    return mine


COLLECTIONS = ("memories", "units", "devices", "links")  # the lists of named parts an arch or system path opens


def short_axis(path: str) -> str:
    """`arch.memories.DRAM.bandwidth_bytes_per_s` -> `DRAM.bandwidth_bytes_per_s`; `workload.seq_len` ->
    `seq_len`; `system.devices.pim.channels` -> `pim.channels`; `arch.units.array2d.energy.actions_pj.mac` ->
    `array2d.energy.actions_pj.mac`; `arch.word_bytes` -> `arch.word_bytes`: the path without its root and without
    the collection (`COLLECTIONS`) a level, unit, device or link is named in, an architecture's or system's own
    field keeping its root (`arch.word_bytes` beside `workload.word_bytes`), so two axes of one sweep never share a
    label (the last two parts alone had named the mac energy of both arrays `actions_pj.mac`, and the summary kept
    one of them)."""
    root, _, rest = path.partition(".")
    if root not in ("arch", SYSTEM_ROOT):
        return rest
    first, _, inner = rest.partition(".")
    if first in COLLECTIONS and inner:
        return inner
    return rest if inner else path  # a field of the architecture or system itself keeps its root


def value_label(path: str, value: Any) -> str:
    """An axis value as text, for display (the figures and the page; the CSVs hold the value, `stored`): sizes in
    bytes with a binary prefix where one gives a whole number below 1024 (`100 GiB/s`, `4 MiB`), else a decimal one
    with the exact quotient (`10 GB/s`: 1e10 is a multiple of 1024, not a KiB count to print; `1.536 kB`), per second
    for a path with `_per_s` (`bytes_per_s_per_direction`); lists as `64x64`; true/false as written; other numbers
    with every digit (`1048576`, `0.125`). No digit is rounded away, so two values never share a label."""
    if isinstance(value, (list, tuple)):
        return "x".join(value_label("", v) for v in value)
    value = stored(value)
    if isinstance(value, bool):  # a true/false axis (`causal`), as the sweep file writes it, not 1/0
        return str(value).lower()
    if not isinstance(value, (int, float)):
        return str(value)
    if "bytes" in path:
        return _bytes_label(value, "B/s" if "_per_s" in path else "B")
    return str(value)


def _bytes_label(value: float, unit: str) -> str:
    """`value` bytes (or bytes per second: `unit`) with the prefix `value_label` chooses, its digits exact."""
    for scale, prefix in _BINARY:
        if value >= scale and value % scale == 0 and (value // scale < 1024 or scale == _BINARY[0][0]):
            return f"{value // scale} {prefix}{unit}"
    for exponent, prefix in _DECIMAL:
        if value >= 10**exponent:
            return f"{Decimal(str(value)).scaleb(-exponent).normalize():f} {prefix}{unit}"
    return f"{value} {unit}"


def stored(value: Any) -> Any:
    """An axis value as a CSV cell holds it: a Python number for a numpy one, an integral float (a column NaN made
    float: a GPU's missing `arch.` axis) as the integer the sweep file wrote, a list for a tuple (`_hashable`'s)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return list(value) if isinstance(value, tuple) else value


def whole_axes(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every axis column whose values are whole numbers as nullable integers, for a CSV: a column that
    only some points of a shared store carry holds NaN elsewhere, which made pandas write its 64 as 64.0."""
    whole = [c for c in df.columns if is_axis(c) and df[c].dtype.kind == "f"
             and _whole(df[c].dropna())]
    return df.astype({c: "Int64" for c in whole})


def _whole(values: pd.Series) -> bool:
    """`values` (no NaN) are numbers, at least one, each a whole number that float64 holds exactly (|x| < 2^53):
    an axis `archsim results` writes as integers (`whole_axes`)."""
    return values.dtype.kind in "fi" and len(values) > 0 and bool(((values % 1 == 0) & (values.abs() < 2**53)).all())


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def axis_values(df: pd.DataFrame, path: str, spec_axes: dict[str, list[Any]] | None = None) -> list[Any]:
    """The values of axis `path`: the spec's list when given (so an axis value with no stored point still
    gets a row), else the stored values in first-seen order; whole numbers as integers where every value is one,
    as `archsim results` writes the axis (`whole_axes`: a column that NaN made float holds 64.0 for 64)."""
    values = pd.Series(spec_axes[path] if spec_axes and path in spec_axes else df[path].tolist())
    if _whole(values):
        values = values.astype("int64")
    return list(dict.fromkeys(_hashable(v) for v in values.tolist()))


def applied_points(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """The records each of `axes` applies to (a GPU preset beside an architecture has no `arch.` values, TokenSelect
    no `sparse.budget`: `axis_missing`)."""
    axes = list(axes)
    return df[~df[axes].map(axis_missing).any(axis=1)] if axes else df


def not_applying(df: pd.DataFrame) -> dict[str, int]:
    """Per axis that does not apply to some feasible points of `df`, how many: the points its sensitivity panel
    leaves out (and no other panel), in axis order."""
    feasible = df[df.feasible.astype(bool)]
    missing = {axis: int(feasible[axis].map(axis_missing).sum()) for axis in axis_columns(df)}
    return {axis: n for axis, n in missing.items() if n}


def mapped_axes(df: pd.DataFrame) -> list[str]:
    """The axis columns that apply to at least one point of `df`, in column order: a heat map draws the first
    two."""
    return [axis for axis in axis_columns(df) if not df[axis].map(axis_missing).all()]


def front_work(df: pd.DataFrame) -> list[str]:
    """The work axes (`work_axes`) the Pareto front of the records `df` is taken per (`dse.pareto.pareto_mask_by`):
    all of them where their values split the records into several works (`dse.pareto.groups`: a point an axis does
    not apply to, NaN, in a work of its own), else none: one work, one front."""
    work = work_axes(df)
    return work if len(groups(df, work)) > 1 else []


def fronts_text(work: Sequence[str]) -> str:
    """`, one per workload.seq_len` (`, one per (workload.seq_len, workload.batch)` for several axes): how the
    Pareto fronts over `work` (`front_work`) are taken, after "the Pareto fronts of ..."; "" for one front."""
    if not work:
        return ""
    return f", one per {work[0]}" if len(work) == 1 else f", one per ({', '.join(work)})"


def pareto_rows(df: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The feasible points: key, target, axes, the objectives, constraint_ok and on_front: non-dominated among the
    points of the same work (`front_work`, the values of the axes that change the work: a design at 16K tokens is
    ranked against the designs at 16K, never against one at 4K doing less work) that meet the constraints
    (`archsim.dse.pareto.pareto_mask_by`; a point missing an objective, such as a GPU's area, is never on it)."""
    feasible = df[df.feasible.astype(bool)]
    targets = [c for c in ("target_kind", "target") if c in df]
    rows = feasible[["key", *targets, *axis_columns(df), *objectives, "constraint_ok"]].copy()
    rows["constraint_ok"] = rows.constraint_ok.astype(bool)
    rows["on_front"] = pareto_mask_by(rows, objectives, front_work(df))
    return rows.reset_index(drop=True)


def sensitivity_rows(df: pd.DataFrame, objectives: Sequence[str],
                     spec_axes: dict[str, list[Any]] | None = None) -> pd.DataFrame:
    """Per axis, per value of it, per objective: median and best over the feasible points with that value that
    meet the constraints and have a value of the objective (every other axis free; a point the axis does not apply
    to is in none of its rows, and in every other axis's: `applied_points`), as the front and the heat map take
    them, how many points that is (`points`: a GPU preset, which has no area, is counted for latency, not area), and
    how many feasible ones there with a value of it break a constraint. Values with no such point have NaN stats."""
    rows = []
    for path in axis_columns(df):
        mine_axis = applied_points(df, [path])
        feasible = mine_axis[mine_axis.feasible.astype(bool)]
        ok = feasible.constraint_ok.astype(bool)
        column = feasible[path].map(_hashable)
        for value in axis_values(mine_axis, path, spec_axes):
            for objective in objectives:
                known = (column == value) & feasible[objective].notna()
                mine = feasible.loc[known & ok, objective]
                rows.append({"axis": path, "value": value, "value_label": value_label(path, value),
                             "objective": objective, "median": mine.median(), "best": best_of(mine, objective),
                             "points": len(mine), "points_breaking_constraints": int((known & ~ok).sum())})
    table = pd.DataFrame(rows, columns=["axis", "value", "value_label", "objective", "median", "best", "points",
                                        "points_breaking_constraints"])
    # each axis's values as `axis_values` gives them: one float axis would make the column float (64 as 64.0)
    return table.assign(value=pd.Series([row["value"] for row in rows], index=table.index, dtype=object))


def stored_values(table: pd.DataFrame) -> pd.DataFrame:
    """`table` (`sensitivity_rows`') with each `value` as a CSV holds it (`stored`: a list axis's [64, 64], as every
    other CSV and `archsim results` write it, not the tuple the table keys it by, `_hashable`)."""
    return table.assign(value=pd.Series([stored(v) for v in table["value"]], index=table.index, dtype=object))


def work_axes(df: pd.DataFrame) -> list[str]:
    """The axis columns of `df` that change the work rather than the hardware, the mapping or the scheduler, in
    column order: by the one rule of `dse.spec.work_field` (a model size such as `workload.seq_len`, a serving
    length; not a tile such as `workload.M0`), and each linked axis the records' sweeps say sets one
    (`attrs[WORK_AXES_ATTR]`: `spec_records` gives the spec's, `dse.sweep.read_judged` the store's; a linked axis's
    fields are in no record)."""
    linked = set(df.attrs.get(WORK_AXES_ATTR, ()))
    return [c for c in axis_columns(df) if work_field(c) or c in linked]


def size_axes(df: pd.DataFrame) -> list[str]:
    """The work axes (`work_axes`) of an architecture sweep's points, its `workload.` sizes and the linked axes
    setting one, in column order: a GPU preset beside the architecture has a point at each of their values
    (`dse.spec.gpu_axes`), so the targets are compared at each value of the first."""
    return [c for c in work_axes(df) if c.partition(".")[0] in ("workload", "linked")]


def held_work(df: pd.DataFrame, drawn: Sequence[str], spec_axes: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """The value each work axis (`work_axes`) not in `drawn` is held at in a heat map, so that no cell compares
    different work: the combination of their values with the most feasible points, ties to the
    first in axis-value order, over the points every drawn and held axis applies to (`applied_points`). Empty when
    no such axis is swept or no such point is feasible."""
    held = [a for a in work_axes(df) if a not in drawn]
    df = applied_points(df, [*drawn, *held])
    feasible = df[df.feasible.astype(bool)]
    if not held or feasible.empty:
        return {}
    rank = {a: {v: i for i, v in enumerate(axis_values(df, a, spec_axes))} for a in held}

    def order(combo: tuple) -> list[int]:  # the combination's place in axis-value order, negated: max() is first
        return [-rank[a].get(v, len(rank[a])) for a, v in zip(held, combo, strict=True)]

    combos = feasible[held].map(_hashable).value_counts(sort=False)
    combo, _ = max(combos.items(), key=lambda item: (item[1], order(item[0])))
    return dict(zip(held, combo, strict=True))


def held_text(held: dict[str, Any]) -> str:
    """`seq_len 1024, batch 1`: the held work axes and their values ("" when none is held)."""
    return ", ".join(f"{short_axis(a)} {value_label(a, v)}" for a, v in held.items())


def heatmap_metric(df: pd.DataFrame) -> str:
    """The metric a heat map of the records `df` draws: `HEATMAP_METRIC`, or for a system sweep's points
    (target_kind system, whose latency_s is the p99 time between tokens) `SYSTEM_HEATMAP_METRIC`, that column by its
    own name (labelled `TBT p99 (s)`, as `metric_label` labels that kind's latency_s in the Pareto figure)."""
    return SYSTEM_HEATMAP_METRIC if records_kind(df) == "system" and SYSTEM_HEATMAP_METRIC in df else HEATMAP_METRIC


@dataclass(frozen=True)
class Heatmap:
    """The best of a metric at each (axis_a value, axis_b value) over the feasible points there that meet the
    constraints, with the work held (`held`): `best`, `points` (how many such points with a finite metric each cell
    has: those its best is of) and `breaking` (how many feasible points with a finite metric there break a
    constraint) are tables of axis_a's values by axis_b's (the values themselves, so two never merge; a list as a
    tuple, `_hashable`); a cell with no point meeting the constraints is NaN in `best`, 0 in `points`."""

    metric: str
    axis_a: str
    axis_b: str
    best: pd.DataFrame
    points: pd.DataFrame
    breaking: pd.DataFrame
    held: dict[str, Any]  # each work axis not drawn -> the value every cell's points have
    not_applying: int = 0  # feasible points one of the map's axes (drawn or held) does not apply to: in no cell

    def held_text(self) -> str:
        return held_text(self.held)

    def broken_cells(self) -> np.ndarray:
        """Which cells have feasible points, every one of which breaks a constraint (blank in `best`)."""
        return (self.points.to_numpy() == 0) & (self.breaking.to_numpy() > 0)

    def cell_points(self) -> int | None:
        """The number of points behind every cell that has one (feasible, within the constraints), when all such
        cells have as many (a grid), else None."""
        counts = set(self.points.to_numpy().ravel().tolist()) - {0}
        return counts.pop() if len(counts) == 1 else None

    def cells_text(self) -> str:
        """`the best of 8 feasible points`: what each cell is when all have as many (`cell_points`), else ""
        (`... that meet the constraints` where some point breaks one)."""
        per_cell = self.cell_points()
        within = " that meet the constraints" if self.breaking.to_numpy().any() else ""
        return "" if per_cell is None else f"the best of {per_cell} feasible point{'s' if per_cell > 1 else ''}{within}"

    def rows(self) -> pd.DataFrame:
        """One row per cell (the CSV form): the two axis values and the value of each held work axis as stored
        (`stored`), the best metric, the points behind it and the feasible points there that break a constraint
        (a cell with those alone has no metric)."""
        names = [short_axis(self.axis_a), short_axis(self.axis_b)]
        held = {short_axis(axis): stored(value) for axis, value in self.held.items()}
        best, points, breaking = self.best.to_numpy(), self.points.to_numpy(), self.breaking.to_numpy()
        return pd.DataFrame([[stored(a), stored(b), best[i, j], points[i, j], breaking[i, j], *held.values()]
                             for i, a in enumerate(self.best.index) for j, b in enumerate(self.best.columns)],
                            columns=[*names, self.metric, "points", "points_breaking_constraints", *held])


def heatmap_table(df: pd.DataFrame, axis_a: str, axis_b: str, metric: str = HEATMAP_METRIC,
                  spec_axes: dict[str, list[Any]] | None = None) -> Heatmap:
    """Best `metric` over the feasible points that meet the constraints at each (axis_a value, axis_b value), every
    other axis free but the work, each work axis held at one value (`held_work`: a cell's best is never that of a
    smaller workload another cell's sample lacks), and the feasible points there that break a constraint: rows are
    axis_a's values, columns axis_b's. A point one of those axes (drawn or held) does not apply to is in no cell,
    counted in `not_applying`."""
    held = held_work(df, (axis_a, axis_b), spec_axes)
    feasible = df[df.feasible.astype(bool)]
    mapped = applied_points(feasible, [axis_a, axis_b, *held])
    not_applying, feasible = len(feasible) - len(mapped), mapped
    feasible = _held_points(feasible, held)
    feasible = feasible.assign(_a=feasible[axis_a].map(_hashable), _b=feasible[axis_b].map(_hashable))
    ok = feasible.constraint_ok.astype(bool)
    cells = feasible[ok].groupby(["_a", "_b"])[metric]
    best, points = cells.agg(lambda values: best_of(values, metric)), cells.count()
    breaking = feasible[~ok].groupby(["_a", "_b"])[metric].count()
    a_values, b_values = (axis_values(applied_points(df, [axis]), axis, spec_axes) for axis in (axis_a, axis_b))
    index = pd.Index(a_values, name=f"{short_axis(axis_a)} \\ {short_axis(axis_b)}", tupleize_cols=False)
    columns = pd.Index(b_values, tupleize_cols=False)  # a list axis's tuples as values, not a MultiIndex

    def table(values: pd.Series, empty: float, dtype: type) -> pd.DataFrame:
        return pd.DataFrame([[values.get((a, b), empty) for b in b_values] for a in a_values], index=index,
                            columns=columns, dtype=dtype)

    return Heatmap(metric, axis_a, axis_b, table(best, np.nan, float), table(points, 0, int), table(breaking, 0, int),
                   held, not_applying)


def best_column(objective: str) -> str:
    """`best_latency_s`: a targets table's column of an objective's best (`target_rows`); `best_column(o) + "_at"`
    names the point that has it."""
    return f"best_{objective}"


def _held_points(df: pd.DataFrame, held: Mapping[str, Any] | None) -> pd.DataFrame:
    """The records of `df` at each held work axis's value (`held_work`)."""
    for held_axis, value in (held or {}).items():
        df = df[[_hashable(v) == value for v in df[held_axis]]]
    return df


def target_rows(df: pd.DataFrame, objectives: Sequence[str], axis: str,
                held: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per target (the architecture, each GPU preset) and value of the workload axis `axis`: the best of each
    objective over its feasible points that meet the constraints (`best_column`), every other axis free but the work
    axes of `held` (`held_work`), each at its value there, and beside each the point that has it (`_at`: its other
    axis values, `path=value` as stored; "" for a target with one point per size, a GPU): the architecture's best
    designs at that size, one per objective, so a row is not one design. With its target_kind where the records
    carry it (so a figure tells reference targets from the sweep's own)."""
    ok = _held_points(df[df.feasible.astype(bool) & df.constraint_ok.astype(bool)], held)
    keys = ["target", *(["target_kind"] if "target_kind" in ok else []), axis]
    others = [c for c in axis_columns(df) if c != axis and c not in (held or {})]
    rows = []
    for group, mine in ok.groupby(keys, sort=False):
        row = dict(zip(keys, group, strict=True)) | dict(held or {})
        for objective in objectives:
            known = mine[mine[objective].notna()]
            best = known.loc[best_label(known, objective)] if len(known) else None
            row[best_column(objective)] = np.nan if best is None else best[objective]
            row[best_column(objective) + "_at"] = "" if best is None else ", ".join(
                f"{p}={stored(best[p])}" for p in others if not axis_missing(best[p]))
        rows.append(row)
    columns = [*keys, *(held or {}), *(c for o in objectives for c in (best_column(o), best_column(o) + "_at"))]
    return pd.DataFrame(rows, columns=columns).sort_values(["target", axis], kind="stable").reset_index(drop=True)


def target_left_out(df: pd.DataFrame, axis: str, held: dict[str, Any] | None = None) -> pd.DataFrame:
    """The (target, value of `axis`) pairs `target_rows` has no row for, at the held work: target, the value and why
    (`infeasible: <the model's reason>`, the first point's; or `every feasible point breaks a constraint`)."""
    df = _held_points(df, held)
    rows = []
    for (target, value), mine in df.groupby(["target", df[axis].map(_hashable)], sort=False):
        feasible = mine[mine.feasible.astype(bool)]
        if feasible.constraint_ok.astype(bool).any():
            continue
        why = ("every feasible point breaks a constraint" if len(feasible)
               else f"infeasible: {mine.reason.fillna('no reason given').iloc[0]}")
        rows.append({"target": target, axis: value, "why": why})
    return pd.DataFrame(rows, columns=["target", axis, "why"])


def summary_rows(df: pd.DataFrame, objectives: Sequence[str], labels: bool = False) -> pd.DataFrame:
    """One row per work (`front_work`: each value of the work axes, as the Pareto fronts are taken; one for a sweep
    of one work) and objective, in that order: the objective, what it measures for these records (`metric`:
    `metric_label`, a system's latency_s `TBT p99 (s)`), the best feasible point of that work that meets the
    constraints, its value and its axis values (the work's among them, given too where no point there has a value:
    best NaN), as stored (`stored`: the CSV's) or, with `labels`, as `value_label` text (the page's)."""
    within = (df.feasible.astype(bool) & df.constraint_ok.astype(bool)).to_numpy()
    kind = records_kind(df)
    work = front_work(df)
    rows = []
    for values, positions in groups(df, work):  # every work, those with no point within the constraints too
        mine = df.iloc[positions[within[positions]]]
        at = {short_axis(p): _summary_cell(p, np.nan if v is None else v, labels)
              for p, v in zip(work, values, strict=True)}
        for objective in objectives:
            named = {"objective": objective, "metric": metric_label(objective, kind)}
            if mine.empty or mine[objective].isna().all():
                rows.append({**named, "best": float("nan"), **at})
                continue
            best = mine.loc[best_label(mine, objective)]
            rows.append({**named, "best": best[objective],
                         **({"target": best["target"]} if "target" in best else {}),
                         **{short_axis(p): _summary_cell(p, best[p], labels) for p in axis_columns(df)}})
    return pd.DataFrame(rows)


def _summary_cell(path: str, value: Any, labels: bool) -> Any:
    """A summary row's value of axis `path`: "" where the axis does not apply to the point's target, else its
    `value_label` text (`labels`) or the value as stored."""
    if axis_missing(value):
        return ""
    return value_label(path, value) if labels else stored(value)


def infeasible_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The infeasible points: key, target, axis values and the reason the model gave, in store order."""
    targets = [c for c in ("target_kind", "target") if c in df]
    return df.loc[~df.feasible.astype(bool), ["key", *targets, *axis_columns(df), "reason"]].reset_index(drop=True)


def reason_rows(df: pd.DataFrame) -> pd.DataFrame:
    """How many infeasible points each reason has, the most common first (ties in first-seen order)."""
    reasons = df.loc[~df.feasible.astype(bool), "reason"].fillna("no reason given")
    table = reasons.value_counts(sort=False).rename_axis("reason").reset_index(name="points")
    return table.sort_values("points", ascending=False, kind="stable").reset_index(drop=True)


def counts(df: pd.DataFrame, objectives: Sequence[str]) -> dict[str, int]:
    """How many points were stored, were feasible, broke a constraint, and are on the front."""
    feasible = df.feasible.astype(bool)
    return {"points": len(df), "feasible": int(feasible.sum()), "infeasible": int((~feasible).sum()),
            "constraint_violated": int((feasible & ~df.constraint_ok.astype(bool)).sum()),
            "on_front": int(pareto_rows(df, objectives).on_front.sum())}
