"""A sweep over sparse attention on a GPU: the `sparse:` block of a sweep spec, its `sparse.<field>` axes, and each
point as one `archsim.systems.sparse_points.phase_point`. Pure: specs in, records out.

A sparse point is one sparse-attention method on one GPU preset for one workload at one context, in one phase,
timed against dense attention as `archsim sparse` times it (issue 19; ../shared/reference/seqpar-sparse.md §3):
MInference's (Jiang et al., NeurIPS 2024) or FlexPrefill's (Lai et al., ICLR 2025) end-to-end prefill of one
prompt against FlashAttention-2, or one generated token under KV-cache selection (DuoAttention, Xiao et al., ICLR
2025; Quest, Tang et al., ICML 2024; RazorAttention, Tang et al., ICLR 2025; TokenSelect, Wu et al., 2024),
end to end (`decode`) or one layer's attention (`attention`), with DuoAttention's prefill too (`prefill`).

The block's fields are `archsim sparse`'s for a point, by the same names: `method`, `gpu`, `workload` and
`context` required; `phase` (default the method's primary: a prefill method's prefill, a decode method's `decode`;
`sparse_points.METHOD_PHASES`), and the method's own settings (`budget`, `retrieval_fraction`, `patterns`,
`density`, `top_k`, `reuse_fraction`, `page_tokens`, `sinks`, `local`; which method takes which is
`sparse_points.METHOD_OPTIONS`, the CLI's; a setting with a default, `SparseMethod`'s, is the paper's). A
field an axis sets (`sparse.budget: [512, 2048]`) is left out of the block; giving it in both places is refused, and
so is a field no method of the sweep takes, a phase none of them has, methods whose primary phases differ with no
phase given (their points' latency_s would be a whole prefill beside one decode step), or a method's missing
required value (Quest's budget, `SparseMethod`'s check). With several methods (a `sparse.method` axis) a point goes
without the settings its method does not take: its key is that of the point without them, and its record's value of
an axis over one is NaN (`spec.axis_missing`: the axis does not apply; `sparse_point`). `archsim sparse --system` (a
system's PIM devices and memory pool) is not a point here.

Checked at load, each problem a `SpecError` naming the sweep file and its YAML path: the block's keys, each value's
type (a method of `METHODS`, a phase, whole numbers >= 1 within ARCHSIM_MAX_SIZE for context, budget, top_k,
page_tokens, sinks and local, finite numbers for the fractions and density within their own ranges, by the models'
checks `archsim sparse` meets (`sparse_points.RANGE_CHECKS`: a retrieval fraction in [0, 1], a reuse fraction in
[0, 1), a density in (0, 1]), so a value no point could run is refused, not stored as infeasible points), and that
every GPU, workload and pattern map named exists, the block's workload (every point's) as every method's model
checks it (`kv_selection.check_dense_attention`: a missing or other than 16-bit `word_bytes`, an `ffn_word_bytes`
that no GPU of the sweep computes, as `archsim sparse` refuses it), and the block's map as made for the block's
workload and of its heads (`sparse_points.check_map`). A point whose values together the model refuses (a budget
beyond the context or not whole pages of its page_tokens, a top_k beyond the context, a map of another model's
heads or made for another model, a GPU that does not compute the workload's `ffn_word_bytes` beside one that does)
is an infeasible record with the reason, its field named as the sweep's (`sparse.budget`; a map's own error as
`sparse.patterns`, naming the map), its config (`budget`) kept as a feasible point's (`sparse_blank`), not a load
error (a sweep every point of which fails alike is refused: `points.base_error`).

A record is the point's `sparse_points.point_record` (target `method/workload/gpu` as the spec names them):
feasible where the point `fits`, as `archsim sparse` prints it (a point that does not has no metrics); energy the
GPU's board power x the time (a GPU point's upper bound), area and DRAM traffic NaN (not modelled:
`archsim.dse.spec.UNMODELLED`); extras `SPARSE_METRICS` (`speedup`
maximised), `dense_fits`, `budget` and the point's other numeric fields. A point's key hashes the resolved fields
(the phase resolved, the settings its method takes), the GPU's, workload's and map's contents without file paths and
prose, so a moved store resumes, and the GPU calibration's parameters (a YAML file the source digest
`points.MODEL_VERSION` does not cover: a refit keys every point afresh, as a parallel point's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from archsim import library
from archsim.dse import block as sweep_block
from archsim.errors import SpecError
from archsim.record import Record
from archsim.systems.kv_selection import check_dense_attention
from archsim.systems.links import load_gpu_with_host_link
from archsim.systems.sparse_points import (
    FIELD_OPTIONS,
    MAP_HEAD_KINDS,
    METHOD_OPTIONS,
    METHOD_PHASES,
    METHODS,
    MODEL_SOURCES,
    RANGE_CHECKS,
    RECORD_METRICS,
    SPARSE_KIND,
    SparseMethod,
    blank_record,
    check_map,
    phase_point,
    point_record,
)
from archsim.workload_patterns import PatternMap, load_pattern_map

SPARSE_ROOT = SPARSE_KIND  # the spec's block, the sweep's kind of point and its records' target_kind: one name
SPARSE_METRICS = RECORD_METRICS
SPARSE_MAXIMISED = ("speedup",)
COMMON = ("method", "gpu", "workload", "context", "phase")  # every point's; the others are a method's settings
WORK = ("workload", "context", "phase")  # of them, those that change the work, not the GPU or the method
FIELDS = (*COMMON, "budget", "retrieval_fraction", "patterns", "density", "top_k", "reuse_fraction", "page_tokens",
          "sinks", "local")
REQUIRED = ("method", "gpu", "workload", "context")
# the method's settings a SparseMethod takes by the same name, as they are (patterns and budget are converted)
SETTINGS = tuple(name for name in FIELDS if name in {f.name for f in dataclasses.fields(SparseMethod)})
WHOLE = ("context", "budget", "top_k", "page_tokens", "sinks", "local")  # whole numbers >= 1; the others fractions
SELECTIONS = ("budget", "top_k")  # the tokens a method selects: at most the context (a point beyond it is refused)
NAMED: dict[str, Callable[[str], Any]] = {"gpu": load_gpu_with_host_link, "workload": library.load_workload_spec,
                                          "patterns": load_pattern_map}
PHASES = tuple(dict.fromkeys(phase for phases in METHOD_PHASES.values() for phase in phases))
CHOICES = {"method": METHODS, "phase": PHASES}


def method_fields(method: str) -> tuple[str, ...]:
    """The settings `method` takes: the block's fields of the options `archsim sparse` takes for it."""
    return tuple(name for name in FIELDS if FIELD_OPTIONS.get(name) in METHOD_OPTIONS[method])


def check_sparse_axis(path: str, source: str, where: str) -> str:
    """The field an axis `sparse.<field>` sets; a SpecError at `where` when it is not a field of the block."""
    return sweep_block.check_axis(path, SPARSE_ROOT, FIELDS, source, where)


def check_sparse_value(name: str, value: Any, source: str, where: str) -> None:
    """A value of field `name` (the module docstring's rules); names of specs are checked by `load_sparse_targets`,
    a fraction's range by the model's own check (`RANGE_CHECKS`), its message at `where`."""
    if sweep_block.check_choice_or_name(name, value, CHOICES, NAMED, source, where):
        return
    if name in WHOLE:
        sweep_block.check_whole(name, value, source, where)
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(source, where, f"expected a number, got {value!r}")
    try:
        RANGE_CHECKS[name](value)
    except SpecError as error:
        raise SpecError(source, where, error.message) from None


def sparse_block(data: Any, source: str, axes: Mapping[str, Any]) -> dict[str, Any]:
    """The `sparse:` block of the sweep at `source`, checked against its `axes` (module docstring)."""
    sweep_block.check_block(data, SPARSE_ROOT, FIELDS, REQUIRED, source, axes, check_sparse_value)
    methods = _values("method", data, axes)
    for name in FIELDS:
        if name in COMMON or (name not in data and f"{SPARSE_ROOT}.{name}" not in axes):
            continue
        if not any(name in method_fields(method) for method in methods):
            raise SpecError(source, sweep_block.block_where(SPARSE_ROOT, name, data),
                            f"{name} does not apply to method {', '.join(methods)}: drop it")
    phases = _values("phase", data, axes, [None])
    for i, phase in enumerate(phases):
        if phase is not None and not any(phase in METHOD_PHASES[method] for method in methods):
            where = sweep_block.block_where(SPARSE_ROOT, "phase", data, i)
            raise SpecError(source, where, f"method {', '.join(methods)} has no {phase} phase (each has: "
                                           + "; ".join(f"{m} {', '.join(METHOD_PHASES[m])}" for m in methods) + ")")
    primaries = {method: METHOD_PHASES[method][0] for method in methods}
    if phases == [None] and len(set(primaries.values())) > 1:
        raise SpecError(source, sweep_block.block_where(SPARSE_ROOT, "method", data),
                        "methods of different primary phases ("
                        + ", ".join(f"{m} {phase}" for m, phase in primaries.items()) + ") would be ranked on "
                        "latency_s of different things (a whole prefill against one decode step): give "
                        "sparse.phase, or sweep methods of one phase")
    longest = max(_values("context", data, axes))
    for name in SELECTIONS:  # a selection beyond every context: no point of the sweep could run
        smallest = min(_values(name, data, axes, [0]))
        if smallest > longest:
            where = sweep_block.block_where(SPARSE_ROOT, name, data)
            got = f"got {smallest}" if name in data else f"its smallest value is {smallest}"
            raise SpecError(source, where, f"expected at most the longest context of the sweep ({longest} tokens), "
                                           f"{got}: no point could run")
    return dict(data)


def _values(name: str, data: Mapping[str, Any], axes: Mapping[str, Any], default: Sequence[Any] = ()) -> list[Any]:
    """The values field `name` takes in the sweep (`block.block_values`)."""
    return sweep_block.block_values(SPARSE_ROOT, name, data, axes, default)


class SparseTargets(sweep_block.BlockTargets):
    """What a sparse sweep's points are built from (`BlockTargets`): its specs are each GPU, workload and pattern
    map the sweep names."""

    def values(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A point's fields (its `sparse.` axis values over the block) without the settings its method does not
        take, its phase resolved (the method's primary where none is given)."""
        values = sweep_block.block_fields(SPARSE_ROOT, self.block, fields)
        method = values["method"]
        values = {k: v for k, v in values.items() if _takes(k, values)}
        return {**values, "phase": values.get("phase") or METHOD_PHASES[method][0]}

    def method(self, values: Mapping[str, Any]) -> SparseMethod:
        """The SparseMethod of a point's `values` (its settings checked by `SparseMethod`; one not given its
        default): a field of the same name as `SparseMethod`'s taken as it is (`SETTINGS`), the pattern map by
        its name and the budget as the one budget of the point."""
        return SparseMethod(values["method"], self.specs["patterns"].get(values.get("patterns")),
                            budgets=(values["budget"],) if "budget" in values else (),
                            **{name: values[name] for name in SETTINGS if name in values})


def load_sparse_targets(block: dict[str, Any], axes: Mapping[str, list[Any]], source: str) -> SparseTargets:
    """Load every GPU, workload and pattern map that the block or an axis of the sweep at `source` names (one not
    found is a SpecError at its YAML path), refuse the block's workload where every method's model refuses it on
    every GPU of the sweep (`kv_selection.check_dense_attention`: its `word_bytes` missing or not 16-bit, an
    attention the GPU kernels do not time, a head_dim beyond the dense baselines', an `ffn_word_bytes` the GPU does
    not compute; `block.refuse_on_every`: where one GPU takes it, the others' points are their records; a
    workload an axis varies is each point's), and refuse a method of the sweep missing a value it needs (Quest's
    budget: `SparseMethod`'s check, on the block and each axis's first value) and the block's map where it was made
    for another model than the block's workload or not of its heads (`check_map` for each method of the sweep that
    takes a map, refused where every one refuses it, as `sparse.patterns`; a map or workload an axis varies is each
    point's)."""
    specs = sweep_block.load_specs(NAMED, SPARSE_ROOT, block, axes, source)
    if "workload" in block:  # every point's: refused as `archsim sparse` and every method's model refuse it
        gpus = [specs["gpu"][name] for name in _values("gpu", block, axes)]
        sweep_block.refuse_on_every(lambda gpu: check_dense_attention(specs["workload"][block["workload"]], gpu), gpus)
    if "workload" in block and "patterns" in block:  # every point's map on every point's workload
        pattern_map, workload = specs["patterns"][block["patterns"]], specs["workload"][block["workload"]]
        kinds = [MAP_HEAD_KINDS[method] for method in _values("method", block, axes) if method in MAP_HEAD_KINDS]
        try:
            sweep_block.refuse_on_every(lambda kind: check_map(pattern_map, workload, kind), kinds)
        except SpecError as exc:
            raise as_sweeps(exc, source, specs["patterns"]) from None
    targets = SparseTargets(dict(block), specs, sweep_block.calibration_params())
    first = {path: values[0] for path, values in axes.items()}
    for method in _values("method", block, axes):
        try:
            targets.method(targets.values({**first, f"{SPARSE_ROOT}.method": method}))
        except SpecError as exc:
            error = as_sweeps(exc, source, targets.specs["patterns"])
            if error is exc:
                raise
            raise SpecError(source, error.where, f"{error.message} (give it in the block or as the axis "
                                                 f"{error.where})") from None
    return targets


def as_sweeps(error: SpecError, source: str, maps: Mapping[str, PatternMap]) -> SpecError:
    """`error` of the sparse models on a field the block sets (`archsim sparse`'s option for it) as the sweep's at
    `source` (`sparse.budget`), one about a pattern map of `maps` (the sweep's, by name: a map of another model's
    heads) as `sparse.patterns`, naming the map by its own name (not the path the sweep may give it by, which a
    stored reason does not hold) and its key; another error as it is."""
    found = next((found for found in maps.values() if found.path == error.source), None)
    if found is not None and error.source not in MODEL_SOURCES:
        return SpecError(source, f"{SPARSE_ROOT}.patterns", f"map {found.name!r} at {error.where}: {error.message}")
    option = FIELD_OPTIONS.get(error.where) if error.source in MODEL_SOURCES else None
    name = error.where if error.where in FIELDS else option and option.removeprefix("--").replace("-", "_")
    if error.source not in MODEL_SOURCES or name not in FIELDS:
        return error
    return SpecError(source, f"{SPARSE_ROOT}.{name}", error.message)


def sparse_point(block: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """A point's axis values, NaN for an axis over a setting its method does not take (`block.applying_point`,
    `spec.axis_missing`, the store's "does not apply": TokenSelect's point of a `sparse.budget` axis ran its own
    top_k)."""
    return sweep_block.applying_point(SPARSE_ROOT, block, point, _takes)


def _takes(name: str, fields: Mapping[str, Any]) -> bool:
    """Whether a point of `fields` takes field `name`: one every point has (`COMMON`), or a setting of its method."""
    return name in COMMON or name in method_fields(fields["method"])


def sparse_target(block: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    """A point's short name: method/workload/gpu, as the sweep names them."""
    values = sweep_block.block_fields(SPARSE_ROOT, block, point)
    return f"{values['method']}/{values['workload']}/{values['gpu']}"


def sparse_config(targets: SparseTargets, fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a point's key hashes: its resolved fields (`SparseTargets.values`), each named spec as its content
    without files and prose, and the calibration."""
    values = targets.values(fields)
    named = {name: sweep_block.without_text(dataclasses.asdict(targets.specs[name][value]))
             for name, value in values.items() if name in NAMED}
    return {SPARSE_ROOT: {**values, **named}, "calibration": targets.calibration}


def sparse_record(targets: SparseTargets, fields: Mapping[str, Any], source: str) -> Record:
    """The record of the point with `fields` (`sparse_points.point_record`). A value the model refuses raises its
    SpecError, a field named as the sweep's (`as_sweeps`), for the caller to record."""
    values = targets.values(fields)
    gpu, workload = targets.specs["gpu"][values["gpu"]], targets.specs["workload"][values["workload"]]
    try:
        point = phase_point(targets.method(values), workload, gpu, values["context"], values["phase"])
    except SpecError as exc:
        raise as_sweeps(exc, source, targets.specs["patterns"]) from None
    return point_record(point, sparse_target(targets.block, fields), gpu)


def sparse_blank(targets: SparseTargets, fields: Mapping[str, Any]) -> Record:
    """The record of the point with `fields` that its model rejects (`sparse_points.blank_record`: its config, the
    budget its method runs, without numbers), for the caller to fail with the reason, as a feasible point's record
    has it. Assumes the point's method builds (`SparseTargets.method`): `load_sparse_targets` built each method of
    the sweep, and what a method needs is which fields are given, which every point of the sweep shares."""
    values = targets.values(fields)
    return blank_record(targets.method(values), values["context"], sparse_target(targets.block, fields))
