"""The tables behind a point report: labelled Results in, pandas DataFrames out (no files, no plots).

Roofline (one row per Einsum per labelled Result), with these assumptions:
- Ops are the cascade analysis's counts summed over op types (a MAC counts 1, an exp 1), the convention of the
  op counts everywhere in archsim.
- A compute ceiling per unit: lanes x clock / the fewest cycles any of its ops takes (the unit's best op). An
  Einsum the mapping pipelines (an op chain, e.g. FLAT's subtract feeding its exp unit, issuing one point per
  slowest op) can beat it: its ceiling is ops per point x lanes x clock / its slowest op's cycles, drawn as a
  ceiling of its own.
- Traffic is per tensor and level, not per Einsum: a level's bytes of a tensor are attributed to the Einsums of
  the Result that read or write it, split evenly among them. Bytes of a tensor no Einsum references are not
  attributed.
- Operational intensity = ops / attributed DRAM (outermost level) bytes; NaN for an Einsum that moves no DRAM
  bytes (it is not bounded by DRAM at any intensity).
- An Einsum's time = its compute cycles / clock, bounded below by its attributed bytes / bandwidth at each level
  that has a bandwidth; attained ops/s = ops / that time. Each Einsum is taken alone: the overlap of Einsums
  within a fusion group (pipelines, `max`) is not applied, so these times do not add up to the Result's latency.
- The x axis counts DRAM bytes, so DRAM's bandwidth is the one slope (`ceiling_rows`). Another level's bandwidth
  bounds an Einsum at ops / (its bytes there / bandwidth), its own ceiling at its own intensity
  (`level_bound_rows`, one row per Einsum per such level).

Energy: one row per (component, action) per labelled Result, exactly the Result's `energy_by` (the rows of a
label sum to its `energy_pj`); the `stack` column names the bar segment a figure draws it in, "other" for the
components under `OTHER_SHARE` of the label's total.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from archsim.arch.spec import ComputeUnit
from archsim.cascade.ir import Cascade
from archsim.cascade.passes import refs_of
from archsim.mapping.spec import Mapping
from archsim.model.result import Result
from archsim.report.labelled import Labelled

OTHER_SHARE = 0.01  # energy components under this share of a label's total are drawn as "other"
PAPER_METRICS = ("latency_s", "traffic_bytes", "energy_pj")  # compared on log-log axes with the paper's
SUMMARY_COLUMNS = ("label", "mapping", "cascade", "architecture", "feasible", "reason", "latency_s", "energy_pj",
                   "dram_traffic_bytes", "area_mm2")
ROOFLINE_COLUMNS = ("label", "einsum", "group", "unit", "ops", "dram_bytes", "intensity_ops_per_byte", "compute_s",
                    "transfer_s", "time_s", "bound", "attained_ops_per_s", "pipelined", "peak_ops_per_s")


def peak_ops_per_s(unit: ComputeUnit, clock_hz: float) -> float:
    """The unit's compute ceiling: every lane doing its fastest op every `op_cycles` cycles."""
    return unit.lanes * clock_hz / min(unit.op_cycles.values())


def fastest_ops(unit: ComputeUnit, ops: Iterable[str]) -> list[str]:
    """Those of `ops` that `unit` runs in its fewest cycles: an Einsum of them runs at the unit's ceiling."""
    cycles = min(unit.op_cycles.values())
    return [op for op in ops if unit.op_cycles.get(op) == cycles]


def ceiling_name(unit: str, ops: Iterable[str]) -> str:
    """The name of the compute ceiling of the unit named `unit`: it and `ops`, the ops the Einsums drawn under it
    run at its rate (`fastest_ops`), `array1d max, add, div`; `array1d peak` when there is none. An op no drawn
    Einsum runs is never named (the spec's first fastest op, a MAC, over max, add and div points)."""
    named = ", ".join(dict.fromkeys(ops))
    return f"{unit} {named}" if named else f"{unit} peak"


def pipelined(mapping: Mapping) -> set[str]:
    """Einsums whose op chain the mapping issues as one point per slowest op."""
    return {e for group in mapping.groups for e in group.pipelined}


def einsum_peak_ops_per_s(unit: ComputeUnit, clock_hz: float, ops: dict[str, int], chained: bool) -> float:
    """The ceiling an Einsum can reach on all of `unit`'s lanes: the unit's, or its chain's when `chained`."""
    if not chained or not ops:
        return peak_ops_per_s(unit, clock_hz)
    ops_per_point = sum(ops.values()) / max(ops.values())
    return ops_per_point * unit.lanes * clock_hz / max(unit.op_cycles[op] for op in ops)


def tensors_touched(cascade: Cascade, einsum: str) -> set[str]:
    """Tensors an Einsum reads (its body and mask) or writes."""
    spec = cascade.einsum(einsum)
    return {ref.tensor for ref in refs_of(spec)} | {spec.output.tensor}


def attributed_bytes(result: Result, cascade: Cascade) -> dict[str, dict[str, float]]:
    """Einsum -> level -> bytes: each level's traffic of a tensor split evenly among the Einsums touching it."""
    touched = {e.name: tensors_touched(cascade, e.name) for e in result.einsums}
    out: dict[str, dict[str, float]] = {e.name: defaultdict(float) for e in result.einsums}
    for level, by_tensor in result.traffic_bytes.items():
        for tensor, moved_bytes in by_tensor.items():
            users = [name for name, tensors in touched.items() if tensor in tensors]
            for name in users:
                out[name][level] += moved_bytes / len(users)
    return {name: dict(levels) for name, levels in out.items()}


def roofline_rows(points: Iterable[Labelled]) -> pd.DataFrame:
    """One row per Einsum per labelled Result (see the module docstring for the model). `transfer_s` is the
    slowest level's attributed bytes / bandwidth, `bound` that level's name when it exceeds `compute_s`."""
    rows = []
    for p in points:
        dram = p.arch.memories[0].name
        chained = pipelined(p.mapping)
        by_einsum = attributed_bytes(p.result, p.cascade)
        for e in p.result.einsums:
            ops = float(sum(e.ops.values()))
            levels = by_einsum[e.name]
            compute_s = e.compute_cycles / p.arch.clock_hz
            memory_s = {m.name: levels.get(m.name, 0.0) / m.bandwidth_bytes_per_s
                        for m in p.arch.memories if m.bandwidth_bytes_per_s}
            slowest = max(memory_s, key=memory_s.__getitem__, default=None)
            bound = slowest if slowest is not None and memory_s[slowest] > compute_s else "compute"
            time_s = max(compute_s, *memory_s.values())
            dram_bytes = levels.get(dram, 0.0)
            unit = p.arch.unit(e.unit)
            rows.append({
                "label": p.label, "einsum": e.name, "group": e.group, "unit": e.unit, "ops": ops,
                "dram_bytes": dram_bytes,
                "intensity_ops_per_byte": ops / dram_bytes if dram_bytes > 0 else np.nan,
                "compute_s": compute_s, "transfer_s": max(memory_s.values(), default=0.0), "time_s": time_s,
                "bound": bound,
                "attained_ops_per_s": ops / time_s if time_s > 0 else np.nan,
                "pipelined": e.name in chained,
                "peak_ops_per_s": einsum_peak_ops_per_s(unit, p.arch.clock_hz, e.ops, e.name in chained),
            })
    return pd.DataFrame(rows, columns=list(ROOFLINE_COLUMNS))


def ceiling_rows(points: Sequence[Labelled]) -> pd.DataFrame:
    """The roofline's ceilings, one row per distinct (name, value): compute (ops/s) per unit (named by
    `ceiling_name` after the ops the points' Einsums on a unit of that name and rate, not pipelined, run at it: one
    name for the unit in every architecture), pipelined (ops/s) per pipelined op chain, bandwidth (bytes/s) of DRAM
    (the outermost level, whose bytes the intensity counts; the other levels' bounds are `level_bound_rows`). Names
    carry the architecture when the points use several that differ."""
    rows = []
    under: dict[tuple[str, float], list[str]] = defaultdict(list)  # (unit, ceiling) -> ops run at it
    for p in points:
        chained = pipelined(p.mapping)
        for e in p.result.einsums:
            unit = p.arch.unit(e.unit)
            if e.name not in chained:
                under[e.unit, peak_ops_per_s(unit, p.arch.clock_hz)] += fastest_ops(unit, e.ops)
    for p in points:
        for u in p.arch.units:
            value = peak_ops_per_s(u, p.arch.clock_hz)
            rows.append({"architecture": p.arch.name, "kind": "compute",
                         "name": ceiling_name(u.name, under[u.name, value]), "value": value})
        chained = pipelined(p.mapping)
        for e in p.result.einsums:
            if e.name in chained:
                unit = p.arch.unit(e.unit)
                rows.append({"architecture": p.arch.name, "kind": "pipelined",
                             "name": f"{e.unit} {'+'.join(e.ops)} pipelined",
                             "value": einsum_peak_ops_per_s(unit, p.arch.clock_hz, e.ops, True)})
        dram = p.arch.memories[0]
        if dram.bandwidth_bytes_per_s:
            rows.append({"architecture": p.arch.name, "kind": "bandwidth", "name": dram.name,
                         "value": dram.bandwidth_bytes_per_s})
    table = pd.DataFrame(rows, columns=["architecture", "kind", "name", "value"])
    unique = table.drop_duplicates(["kind", "name", "value"]).copy()
    clash = unique.duplicated(["kind", "name"], keep=False)
    unique.loc[clash, "name"] = unique.loc[clash, "architecture"] + " " + unique.loc[clash, "name"]
    return unique.drop_duplicates(["kind", "name", "value"]).reset_index(drop=True)


def level_bound_rows(points: Sequence[Labelled]) -> pd.DataFrame:
    """The bound each memory level inside DRAM that has a bandwidth sets on each Einsum that moves bytes through it:
    label, einsum, level, its attributed bytes there, the bandwidth, ops per byte of that level
    (`intensity_ops_per_byte`) and `bound_ops_per_s` = ops / (bytes / bandwidth), the attained rate were that level
    the slowest (`roofline_rows`' bound)."""
    rows = []
    for p in points:
        by_einsum = attributed_bytes(p.result, p.cascade)
        for e in p.result.einsums:
            ops = float(sum(e.ops.values()))
            for m in p.arch.memories[1:]:
                moved = by_einsum[e.name].get(m.name, 0.0)
                if m.bandwidth_bytes_per_s and moved > 0:
                    rows.append({"label": p.label, "einsum": e.name, "level": m.name, "bytes": moved,
                                 "bandwidth_bytes_per_s": m.bandwidth_bytes_per_s,
                                 "intensity_ops_per_byte": ops / moved,
                                 "bound_ops_per_s": ops * m.bandwidth_bytes_per_s / moved})
    return pd.DataFrame(rows, columns=["label", "einsum", "level", "bytes", "bandwidth_bytes_per_s",
                                       "intensity_ops_per_byte", "bound_ops_per_s"])


def energy_rows(points: Iterable[Labelled], other_share: float = OTHER_SHARE) -> pd.DataFrame:
    """One row per (component, action) per label: energy_pj, its share of the label's total, its figure stack."""
    rows = []
    for p in points:
        total_pj = sum(p.result.energy_by.values())
        for (component, action), energy_pj in p.result.energy_by.items():
            share = energy_pj / total_pj if total_pj > 0 else 0.0
            rows.append({"label": p.label, "component": component, "action": action, "energy_pj": energy_pj,
                         "share": share,
                         "stack": f"{component} {action}" if share >= other_share else "other"})
    return pd.DataFrame(rows, columns=["label", "component", "action", "energy_pj", "share", "stack"])


def utilization_rows(points: Iterable[Labelled]) -> pd.DataFrame:
    """One row per unit per label: busy lane-cycles / (lanes x latency cycles), as the Result gives it."""
    return pd.DataFrame([{"label": p.label, "unit": unit, "utilization": value}
                         for p in points for unit, value in p.result.utilization.items()],
                        columns=["label", "unit", "utilization"])


def stall_rows(points: Iterable[Labelled]) -> pd.DataFrame:
    """One row per stall source per label (event-model results only): the units' idle seconds it caused, summed
    over the units, and that as a share of units x latency."""
    rows = []
    for p in points:
        unit_s = p.result.latency_s * len(p.arch.units)
        for source, seconds in sorted(p.result.stalls.items(), key=lambda kv: -kv[1]):
            rows.append({"label": p.label, "source": source, "unit_s": seconds,
                         "share": seconds / unit_s if unit_s else 0.0})
    return pd.DataFrame(rows, columns=["label", "source", "unit_s", "share"])


def summary_rows(points: Iterable[Labelled]) -> pd.DataFrame:
    """One row per label: what was run and its headline numbers; an infeasible point's are empty (NaN), as a sweep
    stores them: a design that does not fit has no latency, energy or traffic (its area stays: the architecture's)."""
    def answered(p: Labelled, value: float) -> float:
        return value if p.result.feasible else math.nan

    return pd.DataFrame([{
        "label": p.label, "mapping": p.result.mapping, "cascade": p.result.cascade,
        "architecture": p.result.architecture, "feasible": p.result.feasible, "reason": p.result.reason,
        "latency_s": answered(p, p.result.latency_s), "energy_pj": answered(p, p.result.energy_pj),
        "dram_traffic_bytes": answered(p, p.result.dram_traffic_bytes), "area_mm2": p.result.area_um2 / 1e6,
    } for p in points], columns=list(SUMMARY_COLUMNS))


def paper_rows(comparison: pd.DataFrame, metrics: Sequence[str] = PAPER_METRICS) -> pd.DataFrame:
    """Long form of `fusemax.compare(...)`: one row per (point, metric) whose paper value is known, with ours,
    the paper's and the relative error."""
    frames = []
    for metric in metrics:
        known = comparison.dropna(subset=[f"{metric}_paper"])
        frames.append(pd.DataFrame({
            "config": known["config"], "model": known["model"], "seq_len": known["seq_len"], "metric": metric,
            "ours": known[metric], "paper": known[f"{metric}_paper"], "rel_err": known[f"{metric}_err"],
        }))
    return pd.concat(frames, ignore_index=True)
