"""`SweepSpec`: a design-space sweep as a typed, validated spec.

A sweep is one base point (mapping, optional cascade/arch, `sets`, and a workload unless `sets` and the axes give
every size the cascade binds, `point.sizes_unset`) plus ordered axes. An axis path is `arch.<dotted path>` (an
`Architecture.with_changes` path such as `arch.units.array2d.shape`) or `workload.<param>` (a size bound like a
`sets` entry, e.g. `workload.seq_len`). Points are drawn from the axes by `grid` (cartesian product), `random` or
`lhs` (Latin hypercube) sampling; `constraints` such as `area_um2 <= 4e8` and `objectives` name record metrics (see
`METRICS`).

A *linked* axis (`linked.<name>`) sets several fields together: `{values: [...], set: {path: template}}`, each
template a number, a size expression of `<name>` (`pe_dim * pe_dim`) or a list of those (`[pe_dim, pe_dim]`), so
one axis can resize a whole array (2-D shape, 1-D lanes, register files, tile size) consistently.

A sweep may instead target a system (`archsim.dse.serving_spec`): `system:` and `workload:` name it, `serving:`
gives the requests each point serves, its axes are `system.<dotted path>` (a field of the system spec) and
`serving.max_batch`, its linked axes' templates set `system.` fields (fields that must move together, e.g. a
device count and the parallel degree it must equal), and its objectives and constraints may also name
`SERVING_METRICS`. Such a sweep has no mapping, cascade, arch, sets or gpus.

A sweep may instead target multi-device attention (`archsim.dse.parallel_spec`): a `parallel:` block names the
base point by the fields of `archsim.systems.seqpar_spec.ParallelSpec` (scheme, devices, workload, seq_len and topology
required; gpu, batch, causal, direction, scope, tp, ulysses and kernel optional, defaulting as `ParallelSpec` and
`archsim parallel` do), its axes are `parallel.<field>` (a field an axis sets is left out of the block), each point
is one `parallel_time` run, and its objectives and constraints may also name `PARALLEL_METRICS` (efficiency and
max_context_tokens maximised). Such a sweep has no mapping, cascade, arch, sets, gpus, workload, system or serving:

    name: seqpar-scaling
    parallel: {workload: llama3-8b, seq_len: 65536, topology: hgx-h100-8}
    axes: {parallel.scheme: [ring, zigzag, ulysses], parallel.devices: [1, 2, 4, 8]}
    objectives: [latency_s, efficiency]

A sweep may instead target sparse attention on a GPU (`archsim.dse.sparse_spec`): a `sparse:` block names the base
point by `archsim sparse`'s fields for one point (method, gpu, workload and context required; phase and the
method's settings, such as Quest's budget, optional as the method needs), its axes are `sparse.<field>`, each point
is one method's time in one phase against dense, and its objectives and constraints may also name `SPARSE_METRICS`
(speedup maximised; energy is the GPU's board power x the time, an upper bound as a GPU point's; area and DRAM
traffic not modelled; objectives latency_s and memory_bytes by default).
Such a sweep has no mapping, cascade, arch, sets, gpus, workload, system or serving:

    name: quest-budgets
    sparse: {method: quest, gpu: h100-sxm5, workload: llama3-8b}
    axes: {sparse.budget: [512, 2048], sparse.context: [32768, 131072]}

`gpus` adds the same attention on GPU presets: every combination of the values of the sweep's axes, plain or
linked, that set a size the GPU call reads (`gpu_axes`) on each listed GPU, timed by the GPU model
(`archsim.model.gpu`) with a kernel of its library (FlashAttention-2 by default) and the packaged calibration. The
accelerator's `arch.` axes, and a tile size (`workload.M0`, which only says how the architecture splits the work),
do not apply to those points (NaN in their records). A rank sized by one of those sizes (`workload.B`, batch's)
is then given by its parameter (`_check_rank_sizes`). Its cascade
must be an attention (K an input), and not one the GPU kernels do not model (MLA, sliding windows).

Everything is checked at load, each problem a `SpecError` naming the YAML path: the names the spec refers to
exist (mapping, cascade, workload, architecture, GPU presets, each `arch.` path in the base architecture, each
`workload.` name and `sets` key a parameter or rank of the cascade or the workload; without a workload, every
model size the cascade binds given by `sets` or an axis, never its test sizes), every axis value (not only
the first) is a finite number (a positive one for a size) or a list of them that the architecture accepts, given
once in its axis (`_once`), each field is set in one place (`archsim.dse.once`: not by `sets` and an axis, nor by
two axes), a grid takes no `samples` or `seed`, the objectives are two or three distinct metrics, and neither they
nor the constraints name a metric the target does not model (`UNMODELLED`: a system's area). The number of points
is computed as a product before any is drawn and capped (`DEFAULT_MAX_POINTS`, raised by `archsim sweep
--max-points` or `ARCHSIM_MAX_SWEEP_POINTS`): a grid too large to run is refused at once instead of being enumerated.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from archsim import library
from archsim.arch.gpu import GPU
from archsim.arch.spec import Architecture
from archsim.cascade import syntax as S
from archsim.cascade.analysis import TOKENS, takes_exp
from archsim.cascade.bind import cascade_sizes, eval_size, how_to_set, ranks_sized_by
from archsim.cascade.ir import Cascade
from archsim.cascade.reference_check import CHECK_TOLERANCE, error_at_test_sizes
from archsim.cascade.references import SIGNATURES, reference_ranks
from archsim.cascade.syntax import ParseError, parse_expr
from archsim.dse.once import check_set_once
from archsim.dse.parallel_spec import (
    PARALLEL_MAXIMISED,
    PARALLEL_METRICS,
    PARALLEL_ROOT,
    check_parallel_axis,
    check_parallel_value,
    load_targets,
    parallel_block,
)
from archsim.dse.parallel_spec import WORK as PARALLEL_WORK
from archsim.dse.serving_spec import (
    SERVING_ROOT,
    SYSTEM_ROOT,
    ServingSettings,
    check_serving_axis,
    check_system_axes,
    load_system_target,
    serving_settings,
)
from archsim.dse.serving_spec import WORK as SERVING_WORK
from archsim.dse.sparse_spec import (
    SPARSE_MAXIMISED,
    SPARSE_METRICS,
    SPARSE_ROOT,
    check_sparse_axis,
    check_sparse_value,
    load_sparse_targets,
    sparse_block,
)
from archsim.dse.sparse_spec import WORK as SPARSE_WORK
from archsim.errors import LimitError, SpecError, check_keys, first_repeat, given, text_number_hint
from archsim.limits import env_limit
from archsim.mapping.spec import Mapping
from archsim.memo import identity_cache
from archsim.model.gpu import CASE_SIZES, PRECISION_BYTES, unmodelled_attention
from archsim.model.gpu_kernels import (
    KERNEL_REFERENCES,
    KERNELS,
    PRECISIONS,
    kernel_attention,
    kernel_directions,
    precision_problem,
)
from archsim.point import check_causal_form, defaults_shown, sizes_unset
from archsim.record import METRICS
from archsim.spec_files import is_spec_path, read_yaml, spec_beside
from archsim.systems.links import load_gpu_with_host_link
from archsim.systems.serving import SERVING_METRICS
from archsim.workload import PARAMS, Workload, check_size, plain_number

SWEEPS_PACKAGE = "archsim.dse.sweeps"  # the shipped sweeps, found by name

# METRICS: every record's columns (archsim.record; edp = latency_s * energy_pj); SERVING_METRICS: a system point's
# serving metrics beside them (archsim.systems.serving); PARALLEL_METRICS: a multi-device attention point's
MAXIMISED = ("throughput_tok_s", *PARALLEL_MAXIMISED, *SPARSE_MAXIMISED)  # every other metric is minimised
SAMPLING_KINDS = ("grid", "random", "lhs")
AXIS_ROOTS = ("arch", "workload", "linked", SYSTEM_ROOT, SERVING_ROOT, PARALLEL_ROOT, SPARSE_ROOT)
SYSTEM_AXIS_ROOTS = (SYSTEM_ROOT, SERVING_ROOT)  # the roots of a system sweep's axes, and of no other sweep's

# what an axis value or a linked template sets
FIELD_ROOTS = ("arch", "workload", SYSTEM_ROOT, SERVING_ROOT, PARALLEL_ROOT, SPARSE_ROOT)
LINKED_ROOTS = {"architecture": ("arch", "workload"), "system": (SYSTEM_ROOT,)}  # what a linked template may set
CONSTRAINT_OPS = ("<=", ">=", "==", "<", ">")
_CONSTRAINT = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|==|<|>)\s*([-+0-9.eE]+)\s*$")
_KEYS = {"name", "description", "mapping", "cascade", "arch", "workload", "sets", "axes", "sampling",
         "constraints", "objectives", "gpus", "system", "serving", PARALLEL_ROOT, SPARSE_ROOT}
_NOT_OF_A_SYSTEM = ("mapping", "cascade", "arch", "sets", "gpus")  # keys of a sweep of an architecture only
# the keys each kind of sweep names its target by, and the words its errors call it
_REQUIRED = {"architecture": ("mapping",), "system": ("workload", "serving"), PARALLEL_ROOT: (PARALLEL_ROOT,),
             SPARSE_ROOT: (SPARSE_ROOT,)}
_OF_KIND = {"architecture": "an architecture", "system": "a system", PARALLEL_ROOT: "multi-device attention",
            SPARSE_ROOT: "sparse attention"}
_BLOCK_KINDS = (PARALLEL_ROOT, SPARSE_ROOT)  # the sweeps whose target is a block of their own (no workload key)
_GPU_KEYS = ("presets", "kernel", "causal", "precision")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a sweep's name names its default store file
DEFAULT_OBJECTIVES = ("latency_s", "energy_pj")
# a kind's default objectives where they are not DEFAULT_OBJECTIVES: a sparse point trades time against memory (its
# energy, board power x time, orders as its latency does)
KIND_OBJECTIVES = {SPARSE_ROOT: ("latency_s", "memory_bytes")}
DEFAULT_MAX_POINTS = 100_000  # ~13 min on one worker at the README's 131 points/s
MAX_POINTS_ENV = "ARCHSIM_MAX_SWEEP_POINTS"


def is_axis(column: object) -> bool:
    """Whether a record column holds an axis's values: it is named under an `AXIS_ROOTS` root."""
    return str(column).partition(".")[0] in AXIS_ROOTS


def axis_missing(value: Any) -> bool:
    """An axis that does not apply to the point's target (a GPU has no `arch.` axes): NaN in the records."""
    return isinstance(value, float) and math.isnan(value)


@dataclass(frozen=True)
class Constraint:
    """A record filter `metric op bound` (e.g. `area_um2 <= 4e8`), parsed from a `constraints` entry."""

    metric: str
    op: str  # one of CONSTRAINT_OPS
    bound: float

    def holds(self, value: float) -> bool:
        return {"<=": value <= self.bound, ">=": value >= self.bound, "==": value == self.bound,
                "<": value < self.bound, ">": value > self.bound}[self.op]


@dataclass(frozen=True)
class Sampling:
    """How points are drawn from the axes: `grid` (the cartesian product), or `samples` points drawn by `random` or
    `lhs` (Latin hypercube) from `seed`."""

    kind: str = "grid"  # one of SAMPLING_KINDS
    samples: int = 0  # points drawn by random / lhs (unused by grid)
    seed: int = 0


@dataclass(frozen=True)
class GpuTargets:
    """GPU presets that run the sweep's attention: `kernel` (a name of `archsim.model.gpu_kernels.KERNELS`), a
    forward pass, causal or not, at `precision`. `causal` None (not given) is refused for a masked cascade and
    resolved to False for an unmasked one (`sweep_from_dict`)."""

    presets: tuple[str, ...]
    kernel: str = "FlashAttention-2"
    causal: bool | None = None
    precision: str = "fp16"


def gpu_preset(spec: SweepSpec, name: str) -> GPU:
    """The GPU a sweep's `gpus.presets` entry names: a packaged preset, or a file read beside the sweep's file, as
    its mapping, workload and system are (the entry as written is the points' target)."""
    return load_gpu_with_host_link(spec_beside(name, spec.source))


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep (module docstring): its target (`mapping`, `system`, `parallel` or `sparse`; see `kind`), its
    axes in order, how points are drawn, and the constraints and objectives over record metrics. Built by
    `sweep_from_dict`; `source` is the file errors blame."""

    name: str
    mapping: str | None  # None for a sweep of a system
    axes: dict[str, list[Any]]  # path -> values, in axis order
    description: str = ""
    cascade: str | None = None
    arch: str | None = None
    workload: str | None = None
    sets: dict[str, float] = field(default_factory=dict)
    sampling: Sampling = field(default_factory=Sampling)
    constraints: tuple[Constraint, ...] = ()
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    gpus: GpuTargets | None = None
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # linked axis -> {field path: template}
    system: str | None = None  # a system preset name or path: the sweep's target instead of a mapping
    serving: ServingSettings | None = None  # with a system
    parallel: dict[str, Any] | None = None  # the parallel block (field -> value): multi-device attention's base
    sparse: dict[str, Any] | None = None  # the sparse block (field -> value): a sparse-attention point's base
    source: str = "<python>"

    @property
    def kind(self) -> str:
        """What the sweep evaluates: architecture, system, parallel or sparse."""
        blocks = {PARALLEL_ROOT: self.parallel, SPARSE_ROOT: self.sparse}
        return "system" if self.system else next((k for k, block in blocks.items() if block is not None),
                                                 "architecture")

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this sweep's records carry and its objectives may name (`target_metrics`)."""
        return target_metrics(self.kind)

    def fields(self, point: dict[str, Any]) -> dict[str, Any]:
        """The field changes a point makes: its `arch.`/`workload.`/`system.`/`serving.`/`parallel.`/`sparse.` values
        and what its linked axes set."""
        out = {p: v for p, v in point.items() if p.partition(".")[0] in FIELD_ROOTS}
        for path, value in point.items():
            if path in self.links:
                out.update(_linked_fields(path, self.links[path], value, self.source))
        return out


# The metrics a target's records carry as NaN because its model has none (`archsim.dse.system_points`,
# `archsim.dse.parallel_spec`, `archsim.dse.sparse_spec`): an objective or a constraint on one would be empty or always
# met, so it is refused.
UNMODELLED = {"system": ("area_um2", "dram_traffic_bytes"), PARALLEL_ROOT: ("area_um2", "dram_traffic_bytes"),
              SPARSE_ROOT: ("area_um2", "dram_traffic_bytes")}


def unmodelled(kind: str, metric: str, where: str, source: str) -> None:
    """A SpecError at `where` when a sweep of `kind` does not model `metric` (`UNMODELLED`)."""
    if metric in UNMODELLED.get(kind, ()):
        raise SpecError(source, where, f"{metric} is not modelled for target {kind} (its points have none)")


# every metric a record of some kind carries, each once: what an objective read off a store may name
STORED_METRICS = tuple(dict.fromkeys((*METRICS, *SERVING_METRICS, *PARALLEL_METRICS, *SPARSE_METRICS)))


def target_metrics(kind: str) -> tuple[str, ...]:
    """What a sweep of `kind` (`SweepSpec.kind`) carries in its records and its objectives and constraints may name:
    METRICS, with SERVING_METRICS in a sweep of a system, PARALLEL_METRICS in one of multi-device attention and
    SPARSE_METRICS in one of sparse attention."""
    return (*METRICS, *{"system": SERVING_METRICS, PARALLEL_ROOT: PARALLEL_METRICS,
                        SPARSE_ROOT: SPARSE_METRICS}.get(kind, ()))


def linked_fields(path: str, templates: dict[str, Any], value: Any, source: str) -> dict[str, Any]:
    """The fields linked axis `path` sets at `value`: each template rendered with the axis's name bound to it."""
    name = path.removeprefix("linked.")

    def render(template: Any, where: str) -> Any:
        if isinstance(template, list):
            return [render(t, f"{where}[{i}]") for i, t in enumerate(template)]
        if isinstance(template, bool) or not isinstance(template, str | int | float):
            raise SpecError(source, where, f"expected a number, an expression of {name} or a list, got {template!r}")
        if not isinstance(template, str):
            return template
        try:
            result = eval_size(parse_expr(template), {name: value})
        except (ParseError, KeyError, TypeError, OverflowError) as e:
            raise SpecError(source, where, f"cannot evaluate {template!r} with {name}={value!r}: {e}") from None
        if not math.isfinite(result):  # a division by zero (NaN) or past any float
            raise SpecError(source, where, f"cannot evaluate {template!r} with {name}={value!r}: it divides by zero "
                                           "or overflows")
        return int(result) if float(result).is_integer() else result

    return {target: render(t, f"axes.{path}.set.{target}") for target, t in templates.items()}


# linked_fields remembered per axis (its templates object) and value: a sweep renders each value once, not per point.
_linked_fields = identity_cache(maxsize=4096)(linked_fields)


def load_sweep(path: str | Path, max_points: int | None = None) -> SweepSpec:
    """Read and validate the sweep YAML at `path` (`read_yaml`, then `sweep_from_dict` with `max_points`); every
    problem is a SpecError naming the file and field."""
    return sweep_from_dict(read_yaml(Path(path)), str(path), max_points)


def point_count(spec: SweepSpec) -> int:
    """How many points `archsim.dse.points.expand` draws, computed without drawing them: the architecture's (the
    grid's product of axis lengths, or `samples`) and each GPU preset's (the product of `gpu_axes`' lengths)."""
    arch_points = (math.prod(len(v) for v in spec.axes.values()) if spec.sampling.kind == "grid"
                   else spec.sampling.samples)
    workload_grid = math.prod(len(spec.axes[p]) for p in gpu_axes(spec))
    return arch_points + (len(spec.gpus.presets) * workload_grid if spec.gpus else 0)


# The workload sizes a GPU point's attention call reads (`archsim.dse.points._gpu_call`): its shape and word width.
GPU_SIZES = CASE_SIZES
# Each role of a kernel reference's layout (`archsim.cascade.references`: Q[B,H,P,E] K[B,G,M,E] V[B,G,M,F]) -> the
# parameter the GPU call reads for it: one seq_len for queries and keys (`TOKENS`, self-attention's token ranks), one
# head_dim for keys and values
GPU_ROLE_SIZES = {"B": "batch", "H": "heads", "G": "kv_heads", "P": TOKENS, "M": TOKENS, "E": "head_dim",
                  "F": "head_dim"}


# The fields outside `workload.` that change the work (the requests served, the sequence, the context), not the
# hardware, the mapping or the scheduler, as each block's spec declares them (`work_field`)
WORK_FIELDS = tuple(f"{root}.{name}" for root, names in ((SERVING_ROOT, SERVING_WORK), (PARALLEL_ROOT, PARALLEL_WORK),
                                                          (SPARSE_ROOT, SPARSE_WORK)) for name in names)
# The attrs key (`pandas.DataFrame.attrs`) under which a records DataFrame lists the axes its sweeps set the work by
# (`work_axes`: a linked axis's fields are not in its records), for the report to hold them (`dse.sweep.read_judged`,
# `report.sweep.spec_records`)
WORK_AXES_ATTR = "work_axes"


def axis_fields(spec: SweepSpec, path: str) -> tuple[str, ...]:
    """The fields axis `path` sets: its own path, or each field a linked axis's templates set."""
    return tuple(spec.links.get(path, (path,)))


def work_field(path: str) -> bool:
    """Whether setting field `path` changes the work a point does, not the hardware, mapping or scheduler doing it:
    a model size (`workload.<name>`, a name of the workload vocabulary `archsim.workload.PARAMS`: seq_len, batch,
    heads, word_bytes, ...), or a block's field its spec declares as the work (`WORK_FIELDS`: serving lengths and
    rate, a parallel or sparse point's workload, length and phase). A tile (`M0`, `tile_kv`), a parallel degree or a
    block count says how the work is split, not how much there is."""
    root, _, name = path.partition(".")
    return (root == "workload" and name in PARAMS) or path in WORK_FIELDS


def work_axes(spec: SweepSpec) -> list[str]:
    """The axes that change the work (one of whose fields is a `work_field`), in axis order: the report holds each
    at one value in a heat map, so no cell wins by a smaller workload (a linked length among them; the demo's
    pe_dim, which sets the array and its tile M0, is not)."""
    return [path for path in spec.axes if any(work_field(f) for f in axis_fields(spec, path))]


GPU_FIELDS = frozenset(f"workload.{name}" for name in GPU_SIZES)  # the fields a GPU point's call reads


def gpu_axes(spec: SweepSpec) -> list[str]:
    """The axes a GPU point takes, in axis order: those that set a size the GPU call reads (`GPU_FIELDS`), plain
    or linked; each such size is a model size, so these are work axes (`work_axes`) too. One setting only the
    architecture or its tiles (the demo's pe_dim; a plain `workload.M0`) gives the GPU no other call: its GPU points
    have no value there (NaN)."""
    return [path for path in spec.axes if GPU_FIELDS.intersection(axis_fields(spec, path))]


def sweep_from_dict(data: Any, source: str = "<python>", max_points: int | None = None) -> SweepSpec:
    """Validate `data` (the YAML form) into a SweepSpec; every problem is a SpecError naming its field. A sweep of
    more than `max_points` points (default: $ARCHSIM_MAX_SWEEP_POINTS or DEFAULT_MAX_POINTS) is refused before
    anything is drawn."""
    if not isinstance(data, dict):
        raise SpecError(source, "", "a sweep is a mapping")
    check_keys(data, sorted(_KEYS), source)
    kind = _kind(data, source)
    for key in ("name", "axes", *_REQUIRED[kind]):
        if data.get(key) is None:
            raise SpecError(source, key, "required" + _required_in(kind, key))
    for key in ("name", "mapping", "description", "cascade", "arch", "workload", "system"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise SpecError(source, key, "expected a string")
    if not _NAME.match(data["name"]):
        raise SpecError(source, "name", f"expected letters, digits, '_', '.' or '-' (it names the store file), "
                                        f"got {data['name']!r}")
    _check_target_keys(data, source, kind)
    axes = _axes(data["axes"], source, kind)
    links = _links(axes, source, kind)
    metrics = target_metrics(kind)
    spec = SweepSpec(
        name=data["name"], mapping=_beside(data.get("mapping"), source),
        axes={p: (v["values"] if p in links else v) for p, v in axes.items()},
        links=links,
        description=data.get("description") or "", cascade=_beside(data.get("cascade"), source),
        arch=_beside(data.get("arch"), source), workload=_beside(data.get("workload"), source),
        sets=_sets(data.get("sets"), source),
        sampling=_sampling(given(data, "sampling", {}), source),
        constraints=tuple(_constraint(c, f"constraints[{i}]", source, metrics, kind)
                          for i, c in enumerate(_list(given(data, "constraints", []), "constraints", source))),
        objectives=_objectives(data.get("objectives"), source, metrics, kind),
        gpus=_gpus(data.get("gpus"), source, bool(data.get("workload"))),
        system=_beside(data.get("system"), source),
        serving=serving_settings(data["serving"], source, axes) if kind == "system" else None,
        parallel=parallel_block(data[PARALLEL_ROOT], source, axes) if kind == PARALLEL_ROOT else None,
        sparse=sparse_block(data[SPARSE_ROOT], source, axes) if kind == SPARSE_ROOT else None,
        source=source,
    )
    check_set_once(_settings(spec), source)
    _check_size(spec, env_limit(MAX_POINTS_ENV, DEFAULT_MAX_POINTS) if max_points is None else max_points)
    _check_against_base(spec)
    if spec.gpus is not None and spec.gpus.causal is None:  # an unmasked cascade (checked above): not causal
        spec = replace(spec, gpus=replace(spec.gpus, causal=False))
    return spec


def _settings(spec: SweepSpec) -> list[tuple[str, str]]:
    """The fields the sweep sets and where (`archsim.dse.once.check_set_once`): each `sets` entry, each axis, each
    field a linked axis sets."""
    out = [(f"workload.{name}", f"sets.{name}") for name in spec.sets]
    for path in spec.axes:
        out += ([(target, f"axes.{path}.set.{target}") for target in spec.links[path]] if path in spec.links
                else [(path, f"axes.{path}")])
    return out


def load_sweep_spec(name_or_path: str | Path) -> SweepSpec:
    """A sweep of `archsim/dse/sweeps/` by name (`demo`), or a sweep YAML by path."""
    path = library.find("sweeps", name_or_path, SWEEPS_PACKAGE)
    return sweep_from_dict(read_yaml(path), str(path))


def _beside(name_or_path: str | None, source: str) -> str | None:
    return None if name_or_path is None else spec_beside(name_or_path, source)


def target_spec(spec: SweepSpec) -> str:
    """The architecture an architecture sweep evaluates, as it is loaded: the sweep's `arch`, else its mapping's
    (a library name, or a path as the file naming it resolved it: `spec_files.spec_beside`)."""
    return spec.arch or library.load_mapping_spec(spec.mapping).architecture


def target_name(spec: SweepSpec) -> str:
    """The sweep's own target as its points' `target` names it: `parallel` (multi-device attention, whose points
    name their topology and GPU in their records), `sparse` (whose points are each named by their method, workload
    and GPU, `points.expand`), or its system or architecture (`target_spec`: the sweep's, else its mapping's) as
    named by the file naming it (`_as_named`): a library name as written, a file by its path from that file's
    folder, so one sweep run from any directory, by any path, names its target alike (it had been the path from
    the current directory). Two sweeps in other folders naming one file by other relative paths still give two
    labels; the store holds one architecture or system (its base), so they name the same target."""
    if spec.kind in _BLOCK_KINDS:
        return spec.kind
    if spec.system or spec.arch:
        return _as_named(spec.system or spec.arch, spec.source)
    return _as_named(target_spec(spec), str(library.find("mappings", spec.mapping)))


def _as_named(name_or_path: str, source: str) -> str:
    """A spec that the file at `source` names (a library name, or a path `spec_beside` resolved): a library name
    as it is, a path as a path from `source`'s folder (both taken from the current directory, which is assumed to
    be the one the spec was loaded from; `..` parts and an absolute path are made relative alike)."""
    if not is_spec_path(name_or_path):
        return name_or_path
    return os.path.relpath(os.path.abspath(name_or_path), os.path.dirname(os.path.abspath(source)))


def _required_in(kind: str, key: str) -> str:
    """What a required key's error adds: the kind of sweep that needs it; for `mapping`, which a sweep with no
    other target needs (an architecture sweep), the keys that name the other kinds' targets (`_kind`)."""
    if kind != "architecture":
        return f" in a sweep of {_OF_KIND[kind]}"
    if key not in _REQUIRED[kind]:
        return ""
    others = [f"{other}: for {_OF_KIND[other]}" for other in ("system", *_BLOCK_KINDS)]
    return f" in a sweep of {_OF_KIND[kind]} (a sweep names {', '.join(others[:-1])} or {others[-1]})"


def _kind(data: dict[str, Any], source: str) -> str:
    """What the sweep in `data` evaluates (`SweepSpec.kind`): a system, multi-device attention, sparse attention,
    or an architecture."""
    kinds = [key for key in ("system", *_BLOCK_KINDS) if data.get(key) is not None]
    if len(kinds) > 1:
        raise SpecError(source, kinds[1], f"a sweep targets one of a system, multi-device attention or sparse "
                                          f"attention: {kinds[0]} or {kinds[1]}, not both")
    return "system" if kinds == ["system"] else kinds[0] if kinds else "architecture"


def _check_target_keys(data: dict[str, Any], source: str, kind: str) -> None:
    """A sweep of a system has none of an architecture's keys; one of multi-device attention has neither those
    nor a system's (its workload is a field of its block); one of an architecture has no serving block."""
    refused = {"system": _NOT_OF_A_SYSTEM, PARALLEL_ROOT: (*_NOT_OF_A_SYSTEM, "workload", "serving"),
               SPARSE_ROOT: (*_NOT_OF_A_SYSTEM, "workload", "serving"), "architecture": ("serving",)}[kind]
    for key in refused:
        if data.get(key) is None:
            continue
        if kind == "architecture":
            raise SpecError(source, key, "a serving block goes with system: (a sweep of a system)")
        hint = f" (name it in {kind}.workload)" if key == "workload" else ""
        raise SpecError(source, key, f"a sweep of {_OF_KIND[kind]} has no {key}{hint}")


def _list(value: Any, where: str, source: str) -> list:
    if not isinstance(value, list):
        raise SpecError(source, where, "expected a list")
    return value


def _axes(axes: Any, source: str, kind: str) -> dict[str, Any]:
    if not isinstance(axes, dict) or not axes:
        raise SpecError(source, "axes", f"expected a non-empty mapping of path -> list of values, got {axes!r}")
    axes = {path: _plain(values) for path, values in axes.items()}
    for path, values in axes.items():
        where = f"axes.{path}"
        root, _, rest = str(path).partition(".")
        if kind == "system" and (root not in (*SYSTEM_AXIS_ROOTS, "linked") or not rest):
            raise SpecError(source, where, "an axis of a sweep of a system starts with 'system.' (a field of the "
                                           "system spec), 'serving.' or 'linked.'")
        if kind == PARALLEL_ROOT:
            if root != PARALLEL_ROOT or not rest:
                raise SpecError(source, where, "an axis of a sweep of multi-device attention is 'parallel.<field>' "
                                               "(a field of the parallel block)")
            check_parallel_axis(str(path), source, where)
        if kind == SPARSE_ROOT:
            if root != SPARSE_ROOT or not rest:
                raise SpecError(source, where, "an axis of a sweep of sparse attention is 'sparse.<field>' (a field "
                                               "of the sparse block)")
            check_sparse_axis(str(path), source, where)
        if kind == "architecture" and (root not in AXIS_ROOTS or not rest or root in SYSTEM_AXIS_ROOTS
                                       or root in _BLOCK_KINDS):
            raise SpecError(source, where, "an axis path starts with 'arch.', 'workload.' or 'linked.' "
                                           "('system.' and 'serving.' in a sweep of a system, 'parallel.' in one of "
                                           "multi-device attention, 'sparse.' in one of sparse attention)")
        if root in ("workload", "linked") and "." in rest:
            raise SpecError(source, where, f"a {root} axis is one name, e.g. {root}.seq_len")
        if root == "linked":
            continue  # checked by _links
        if not isinstance(values, list):
            raise SpecError(source, where, "expected a list of values")
        if not values:
            raise SpecError(source, where, "empty axis: give at least one value")
        for i, value in enumerate(values):
            _check_value(value, str(path), source, f"{where}[{i}]")
        _once(values, source, where)
    return {str(p): v if str(p).startswith("linked.") else list(v) for p, v in axes.items()}


def _once(values: list, source: str, where: str) -> None:
    """Each value of the axis at `where` once: a repeat is a point drawn twice, run once, so the grid is not the
    product the spec writes (a list option's repeat, `archsim.commands.options.once_each`, is refused too)."""
    if repeat := first_repeat(values):
        i, first = repeat
        raise SpecError(source, f"{where}[{i}]", f"expected each value once, got {values[i]!r} twice (also "
                                                 f"{where}[{first}])")


def _links(axes: dict[str, Any], source: str, kind: str) -> dict[str, dict[str, Any]]:
    links = {}
    for path, data in axes.items():
        if not str(path).startswith("linked."):
            continue
        where = f"axes.{path}"
        if not isinstance(data, dict):
            raise SpecError(source, where, "a linked axis is a mapping with values (a list) and set (path: template)")
        check_keys(data, ("values", "set"), source, where)
        values, templates = data.get("values"), data.get("set")
        if not isinstance(values, list) or not values:
            raise SpecError(source, f"{where}.values", "expected a non-empty list of values")
        for i, value in enumerate(values):
            _check_value(value, str(path), source, f"{where}.values[{i}]")
        _once(values, source, f"{where}.values")
        if not isinstance(templates, dict) or not templates:
            raise SpecError(source, f"{where}.set", "expected a non-empty mapping of field path -> template")
        for target in templates:
            roots = LINKED_ROOTS[kind]  # a sweep of multi-device attention has no linked axis (`_axes`)
            if str(target).partition(".")[0] not in roots or "." not in str(target):
                raise SpecError(source, f"{where}.set.{target}", "a linked field of a sweep of "
                                                                 f"{_OF_KIND[kind]} starts with "
                                                                 f"{' or '.join(repr(f'{r}.') for r in roots)}")
        for i, value in enumerate(values):  # every value renders to values its fields take
            for target, rendered in linked_fields(str(path), templates, value, source).items():
                _check_value(rendered, target, source, f"{where}.values[{i}] ({target})")
        links[str(path)] = dict(templates)
    return links


def _sampling(data: Any, source: str) -> Sampling:
    if not isinstance(data, dict):
        raise SpecError(source, "sampling", "expected a mapping with kind, samples, seed")
    check_keys(data, ("kind", "samples", "seed"), source, "sampling")
    kind = data.get("kind", "grid")
    if kind not in SAMPLING_KINDS:
        raise SpecError(source, "sampling.kind", f"'{kind}' is not one of {', '.join(SAMPLING_KINDS)}")
    for key in ("samples", "seed") if kind == "grid" else ():
        if key in data:
            raise SpecError(source, f"sampling.{key}", "grid sampling draws every combination of the axes, so it "
                                                       "takes no samples or seed (those are random's and lhs's)")
    samples, seed = data.get("samples"), data.get("seed", 0)  # no seed: 0, as README's "Sweeps" says
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SpecError(source, "sampling.seed", f"expected a non-negative integer, got {seed!r}")
    if kind != "grid" and samples is None:
        raise SpecError(source, "sampling.samples", f"missing: {kind} sampling draws this many points (a positive "
                                                    f"integer)")
    if kind != "grid" and (not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0):
        raise SpecError(source, "sampling.samples", f"{kind} sampling needs a positive integer, got {samples!r}")
    return Sampling(kind, samples if isinstance(samples, int) else 0, seed)


def _gpus(data: Any, source: str, has_workload: bool) -> GpuTargets | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise SpecError(source, "gpus", "expected a mapping with presets, kernel, causal, precision")
    check_keys(data, _GPU_KEYS, source, "gpus")
    if not has_workload:
        raise SpecError(source, "gpus", "GPU points need the attention's shapes: give the sweep a workload")
    presets = data.get("presets")
    if not isinstance(presets, list) or not presets:
        raise SpecError(source, "gpus.presets", "expected a non-empty list of GPU preset names")
    _once(presets, source, "gpus.presets")
    for i, name in enumerate(presets):
        try:
            load_gpu_with_host_link(spec_beside(str(name), source))
        except SpecError as e:
            if e.where:  # a GPU file of the user's with a bad field: that file and field
                raise
            raise SpecError(source, f"gpus.presets[{i}]", e.message) from None
    targets = GpuTargets(tuple(str(p) for p in presets), data.get("kernel", GpuTargets.kernel),
                         data.get("causal", GpuTargets.causal), data.get("precision", GpuTargets.precision))
    if not isinstance(targets.kernel, str) or targets.kernel not in KERNELS:
        raise SpecError(source, "gpus.kernel", f"no GPU model for {targets.kernel!r} (known: {', '.join(KERNELS)})")
    if "fwd" not in kernel_directions(targets.kernel):
        forward = ", ".join(k for k in KERNELS if "fwd" in kernel_directions(k))
        raise SpecError(source, "gpus.kernel", f"GPU points run the sweep's attention forward, but {targets.kernel} "
                                               f"runs {', '.join(kernel_directions(targets.kernel))} only (expected "
                                               f"a kernel with a forward: {forward})")
    if targets.causal is not None and not isinstance(targets.causal, bool):
        raise SpecError(source, "gpus.causal", "expected true or false")
    if not isinstance(targets.precision, str) or targets.precision not in PRECISIONS:
        raise SpecError(source, "gpus.precision", f"expected one of {', '.join(PRECISIONS)}")
    return targets


def _constraint(text: Any, where: str, source: str, metrics: tuple[str, ...], kind: str) -> Constraint:
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    if not match:
        raise SpecError(source, where, f"expected '<metric> <op> <number>' with op in {' '.join(CONSTRAINT_OPS)}, "
                                       f"got {text!r}")
    metric, op, bound = match.groups()
    if metric not in metrics:
        raise SpecError(source, where, f"unknown metric '{metric}' (known: {', '.join(metrics)})")
    unmodelled(kind, metric, where, source)
    try:
        value = float(bound)
    except ValueError:
        raise SpecError(source, where, f"'{bound}' is not a number") from None
    if not math.isfinite(value):
        raise SpecError(source, where, f"expected a finite bound, got {bound}")
    return Constraint(metric, op, value)


def _objectives(value: Any, source: str, metrics: tuple[str, ...], kind: str) -> tuple[str, ...]:
    """Two or three distinct `metrics` that a sweep of `kind` models (a Pareto front over one is a minimum; over
    more, nearly every point)."""
    if value is None:
        return KIND_OBJECTIVES.get(kind, DEFAULT_OBJECTIVES)
    names = _list(value, "objectives", source)
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in metrics:
            raise SpecError(source, f"objectives[{i}]", f"unknown objective {name!r} (known: {', '.join(metrics)})")
        if name in names[:i]:
            raise SpecError(source, f"objectives[{i}]", f"{name} is listed twice")
        unmodelled(kind, name, f"objectives[{i}]", source)
    if not 2 <= len(names) <= 3:
        raise SpecError(source, "objectives", f"expected two or three metrics, got {len(names)}")
    return tuple(names)


def _sets(value: Any, source: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(source, "sets", "expected a mapping of size name -> number")
    value = _plain(value)
    for name, size in value.items():
        _check_value(size, f"workload.{name}", source, f"sets.{name}")
    return {str(k): v for k, v in value.items()}


def _plain(value: Any) -> Any:
    """`value` (an axis's values, a linked axis, `sets`) with a Python caller's numpy numbers and arrays as Python
    ones (`archsim.workload.plain_number`: an integer, not a bool, as an int, another real as a float), an array
    as a list, within lists and mappings too. What YAML reads is left as it is."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return plain_number(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(value: Any, path: str, source: str, where: str) -> None:
    """A value for field `path` (an axis value, a linked field's rendered value or a `sets` entry): a size
    (`workload.<name>`) is a number of at least 0 that `archsim.workload.check_size` accepts (within
    ARCHSIM_MAX_SIZE, an integer of at least its minimum for a model size or a cascade's count: a sinks count may be
    0, a seq_len not), a linked axis's value a finite number, an architecture field's a finite number
    or a list of them (a shape; never null, which a file gives for no limit: `_no_null_hint`), a system field's a
    finite number, a word or true/false (the system spec checks it further), a serving axis's what
    `check_serving_axis` accepts, a parallel field's what `check_parallel_value` does, a sparse field's what
    `check_sparse_value` does."""
    root, _, name = path.partition(".")
    if root == SERVING_ROOT:
        check_serving_axis(path, value, source, where)
        return
    if root == PARALLEL_ROOT:
        check_parallel_value(name, value, source, where)
        return
    if root == SPARSE_ROOT:
        check_sparse_value(name, value, source, where)
        return
    if root == SYSTEM_ROOT:
        expected = "a finite number, a word or true/false"
        ok = _finite(value) or isinstance(value, bool) or (isinstance(value, str) and bool(value))
    elif root == "workload":
        expected, ok = "a number of at least 0 (a size or a count)", _finite(value) and value >= 0
    elif root == "linked" or not isinstance(value, list):
        expected, ok = "a finite number", _finite(value)
    else:
        expected, ok = "a finite number or a list of them", bool(value) and all(_finite(v) for v in value)
    if not ok:
        raise SpecError(source, where, f"expected {expected}, got {value!r}{text_number_hint(value)}"
                                       + _no_null_hint(root, value))
    if root == "workload":
        check_size(name, value, source, where)


def _no_null_hint(root: str, value: Any) -> str:
    """What an `arch.` axis's null is told: an axis value is a number (a record's NaN says an axis does not apply to
    a point, so a value of null could not be told from it); a field's null (a bandwidth's no limit, a capacity's
    unbounded) is the base architecture file's to give."""
    if root != "arch" or value is not None:
        return ""
    return " (an axis value is a number: a field's null, no limit or unbounded, is given in the base architecture file)"


def _check_size(spec: SweepSpec, max_points: int) -> None:
    count = point_count(spec)
    if count > max_points:
        what = "sampling.samples" if spec.sampling.kind != "grid" else "axes"
        raise LimitError(spec.source, what, f"{count:,} points exceed the limit of {max_points:,}: shrink the "
                                            f"sweep, or raise the limit with `archsim sweep --max-points N` or "
                                            f"{MAX_POINTS_ENV}=N")


def _check_against_base(spec: SweepSpec) -> None:
    """The names the sweep refers to exist (its mapping, cascade, workload and architecture, its system and
    workload, or its parallel or sparse block's and axes' workloads, topologies, GPUs and pattern maps), and its
    sizes, architecture and system fields are ones they have. An error in a file it names says which sweep named it."""
    try:
        _check_named_specs(spec)
    except SpecError as exc:
        raise named_by(spec, exc) from None


def named_by(spec: SweepSpec, error: SpecError) -> SpecError:
    """`error` saying which sweep named the file it is in (`error` itself when it is in the sweep's own file)."""
    if error.source == spec.source:
        return error
    return SpecError(error.source, error.where, f"{error.message} (named by {spec.source})")


def _check_named_specs(spec: SweepSpec) -> None:
    def named(kind: str, key: str) -> Path:
        return library.find_named(kind, getattr(spec, key), spec.source, key)

    if spec.parallel is not None:
        load_targets(spec.parallel, spec.axes, spec.source)
        return
    if spec.sparse is not None:
        load_sparse_targets(spec.sparse, spec.axes, spec.source)
        return
    if spec.system:
        system, workload = load_system_target(spec.system, spec.workload, spec.source)
        linked = {path: [spec.fields({path: value}) for value in spec.axes[path]] for path in spec.links}
        check_system_axes(system, spec.axes, spec.objectives, tuple(c.metric for c in spec.constraints), spec.source,
                          workload.name, linked, spec.serving.alpha)
        return
    mapping = library.load_mapping_spec(named("mappings", "mapping"))
    cascade = library.load_cascade_spec(named("cascades", "cascade") if spec.cascade else mapping.cascade)
    workload = library.load_workload_spec(named("workloads", "workload")) if spec.workload else None
    _check_size_names(spec, cascade, workload)
    if workload is None:
        _check_sizes_without_workload(spec, cascade, mapping)
    _check_rank_sizes(spec, cascade, workload)
    gpus = " and gpus.causal: true" if spec.gpus is not None else ""
    check_causal_form(cascade, workload, mapping.name, lambda version: f"cascade: {version}{gpus}")  # no point runs
    if spec.gpus is not None:
        _check_gpu_attention(spec, cascade, workload)
    _check_arch_fields(spec, library.load_architecture_spec(
        named("architectures", "arch") if spec.arch else mapping.architecture))


def _check_gpu_attention(spec: SweepSpec, cascade: Cascade, workload: Workload) -> None:
    """GPU points time the sweep's attention with a dense multi-head or grouped-query kernel: the cascade is an
    attention (K an input), the kernel computes the cascade's attention (softmax where it takes an exp,
    `takes_exp`) and the workload's (its `attention` field), and neither
    the workload nor the sweep's sizes ask for an attention those kernels do not model (MLA's latent, a sliding
    window)."""
    if "K" not in cascade.inputs:
        raise SpecError(spec.source, "gpus", f"GPU points time the sweep's attention, but cascade {cascade.name} is "
                                             "not an attention (it has no K input): sweep an attention mapping, or "
                                             "drop gpus")
    computes, exp = kernel_attention(spec.gpus.kernel), takes_exp(cascade)
    if (computes == "softmax") != exp:  # the architecture points compute the cascade
        raise SpecError(spec.source, "gpus.kernel", f"{spec.gpus.kernel} computes {computes} attention, but cascade "
                                                    f"{cascade.name} {'takes' if exp else 'takes no'} "
                                                    f"exp (so {'softmax' if exp else 'no softmax'}): "
                                                    "expected a kernel of the attention the sweep's cascade computes")
    if computes != workload.attention:
        raise SpecError(spec.source, "gpus.kernel", f"{spec.gpus.kernel} computes {computes} attention, but "
                                                    f"workload {workload.name} computes {workload.attention} "
                                                    f"attention (its attention field): expected a kernel of "
                                                    f"{workload.attention} attention")
    fixed = {**cascade.params, **workload.params, **spec.sets}  # the sizes no axis sets
    varied = [name.removeprefix("workload.") for name, _ in _size_settings(spec) if name.startswith("workload.")]
    given = {**workload.params, **spec.sets}  # what a GPU point reads (`points._gpu_call`): no cascade test size
    _check_gpu_precision(spec, given.get("word_bytes"), "word_bytes" in varied, workload)
    masked = any(e.mask is not None for e in cascade.einsums)
    if spec.gpus.causal is None and masked:
        raise SpecError(spec.source, "gpus.causal", f"cascade {cascade.name} is masked: say whether its GPU points "
                                                    "are causal (true) or not (false)")
    if spec.gpus.causal and not masked:  # its GPU points would skip half the work the architecture points do
        raise SpecError(spec.source, "gpus.causal", f"cascade {cascade.name} has no mask (full attention): its GPU "
                                                    "points are not causal (false)")
    unmodelled = unmodelled_attention({**fixed, **dict.fromkeys(varied)})
    if unmodelled:
        size, what = unmodelled
        raise SpecError(spec.source, "gpus", f"{what} ({size}): the GPU attention kernels modelled here are "
                                                 "dense multi-head and grouped-query attention, so its GPU points "
                                                 "would be wrong; drop gpus")
    _check_computes_kernel_attention(spec, cascade, computes)
    _check_gpu_rank_sizes(spec, cascade)


def _check_gpu_rank_sizes(spec: SweepSpec, cascade: Cascade) -> None:
    """Each rank of the cascade's Q, K and V is sized by the parameter the GPU call reads for its role in the
    kernel's reference (`GPU_ROLE_SIZES`): the call is one square attention over the workload's batch, heads,
    kv_heads, head_dim and seq_len (`archsim.model.gpu.AttentionCase` has one length for queries and keys), so a
    cascade of 512 queries over 65536 keys (P sized by q_len, M by kv_len) had GPU points timing seq_len x seq_len
    beside architecture points computing its own sizes. Runs after `_check_computes_kernel_attention`, which
    shows the cascade is one of the kernel's references."""
    for tensor, roles in SIGNATURES[cascade.reference].inputs.items():
        for role, rank in zip(roles, reference_ranks(cascade, tensor), strict=True):
            expected, size = GPU_ROLE_SIZES[role], cascade.rank_sizes[rank]
            if isinstance(size, S.Name) and size.name == expected:
                continue
            sized = (f"by {size.name}" if isinstance(size, S.Name) else
                     f"by an expression of {', '.join(sorted(S.names_in(size))) or 'no parameter'}")
            raise SpecError(spec.source, "gpus", f"GPU points time {spec.gpus.kernel} with {tensor}'s rank {rank} "
                                                 f"of the workload's {expected}, but cascade {cascade.name} sizes "
                                                 f"rank {rank} {sized}, so they would time another attention than "
                                                 f"its architecture points (the GPU model takes one seq_len for "
                                                 "queries and keys, one head_dim for keys and values): expected "
                                                 f"rank {rank} sized by {expected}, or drop gpus")


def _check_computes_kernel_attention(spec: SweepSpec, cascade: Cascade, computes: str) -> None:
    """The cascade is shown to compute the attention the GPU kernel times: it names a reference of that attention
    (`gpu_kernels.KERNEL_REFERENCES`) and computes it at its test sizes (`reference_check.error_at_test_sizes`, as
    `archsim execute --check` does). An exp and a K input do not make softmax attention: a sigmoid attention, a
    differential one or a linear one with an exp feature map has both, and its GPU points would time
    FlashAttention-2 beside architecture points that compute something else."""
    references = KERNEL_REFERENCES[computes]
    if cascade.reference not in references:
        named = f"names reference {cascade.reference}" if cascade.reference else "names no reference"
        raise SpecError(spec.source, "gpus", f"GPU points time {spec.gpus.kernel}'s {computes} attention, but "
                                             f"cascade {cascade.name} {named}, so it is not shown to compute it: "
                                             f"expected a cascade whose reference is one of {', '.join(references)} "
                                             "(checked by archsim execute --check), or drop gpus")
    error = error_at_test_sizes(cascade)
    if not error < CHECK_TOLERANCE:  # NaN fails too
        raise SpecError(cascade.source, "reference", f"cascade {cascade.name} differs from its reference "
                                                     f"{cascade.reference} by {error:.3g} at its test sizes "
                                                     f"(archsim execute {cascade.name} --check), so the sweep's GPU "
                                                     f"points would time another attention: expected it to compute "
                                                     f"its reference within {CHECK_TOLERANCE:g}")


def _check_gpu_precision(spec: SweepSpec, word_bytes: float | None, varied: bool, workload: Workload) -> None:
    """`gpus.precision` runs somewhere: the kernel has a path for it (`gpu_kernels.precision_problem`), one of the
    presets a tensor-core rate (`GPU.has_rate`), and it is the width of the workload's words where no axis sets them
    (`word_bytes`, the width the workload or the sweep's sets give, None when neither does: refused at the
    workload's `params.word_bytes`, as a GPU point never takes the precision's width for words nobody gave; an axis
    of `word_bytes`, its own or a linked one's field, `varied`, makes each point of another width infeasible,
    `points._gpu_record`). A spec none of whose GPU points could run is refused at load."""
    precision = spec.gpus.precision
    problem = precision_problem(spec.gpus.kernel, precision)
    if problem:
        raise SpecError(spec.source, "gpus.precision", f"{problem}: expected fp16 or bf16")
    if not any(gpu_preset(spec, name).has_rate(precision) for name in spec.gpus.presets):
        raise SpecError(spec.source, "gpus.precision", f"no GPU of gpus.presets has a tensor-core rate for "
                                                       f"{precision}: expected a precision they have")
    if varied:
        return
    if word_bytes is None:
        raise SpecError(workload.path, "params.word_bytes", "missing: the sweep's GPU points time the workload's "
                                                            f"words (gpus.precision {precision}); add it to the "
                                                            "workload, or give it in sets or a workload.word_bytes "
                                                            "axis")
    if word_bytes != PRECISION_BYTES[precision]:
        raise SpecError(spec.source, "gpus.precision", f"{precision} times {PRECISION_BYTES[precision]}-byte words, "
                                                       f"but workload {workload.name}'s are {word_bytes:g} bytes "
                                                       "(word_bytes): expected a precision of its width")


def _check_size_names(spec: SweepSpec, cascade: Cascade, workload: Workload | None) -> None:
    """Each `sets` key, `workload.` axis and linked `workload.` field is a parameter or rank of the cascade or a
    parameter of the workload (what `archsim.cascade.bind.bind` accepts as an override)."""
    sizes = list(dict.fromkeys([*cascade.params, *cascade.rank_sizes, *(workload.params if workload else {})]))
    for name, where in _size_settings(spec):
        if name.removeprefix("workload.") not in sizes:
            of_workload = f" or workload {workload.name}" if workload else ""
            raise SpecError(spec.source, where, f"not a parameter or rank of cascade {cascade.name}{of_workload} "
                                                f"(known: {', '.join(sizes)})")


def _check_sizes_without_workload(spec: SweepSpec, cascade: Cascade, mapping: Mapping) -> None:
    """Without a workload, the sweep gives every size its cascade binds (`archsim.point.sizes_unset`: every model
    size, and every other parameter that sizes a rank and that the mapping's `set:` does not give) in `sets` or its
    axes, as `archsim run`'s `--set` must (`archsim.point.refuse_partial_model`). A cascade's params are test sizes
    (attention-1pass: batch 2, seq_len 16, head_dim 8; a user's GEMM's depth 64 under its rows and cols), which a
    sweep's points would otherwise run at silently, or under the sizes given (a seq_len axis over head_dim 8, every
    point refused alike while its base point, which leaves the axis out, fails otherwise: `points.base_error`).
    Refused naming `workload`."""
    given = {name.removeprefix("workload."): where for name, where in _size_settings(spec)}
    missing = sizes_unset(cascade, given, mapping)
    if not missing:
        return
    test_sizes = defaults_shown(cascade, missing)
    named = [where for name, where in given.items() if name in cascade_sizes(cascade)]
    what = (f"{', '.join(named)} set without a workload, so every size cascade {cascade.name} binds must be "
            f"set ({test_sizes} would be its test sizes)" if named else
            f"a sweep's sizes come from a workload, and cascade {cascade.name}'s own are test sizes ({test_sizes})")
    raise SpecError(spec.source, "workload", f"missing: {what}; name a workload (workload: bert-base), or give "
                                             f"each in sets or axes: {how_to_set(cascade, missing)}")


def _check_rank_sizes(spec: SweepSpec, cascade: Cascade, workload: Workload | None) -> None:
    """A rank set by name (`workload.B`, `sets: {M: ...}`) beside the parameter that sizes it and nothing else
    (`ranks: {B: batch}`) sets one field twice (`archsim.dse.once`). With `gpus`, a rank sized by a parameter the GPU
    call reads (`GPU_SIZES`) is refused when set by name: the GPU call is one square attention over those
    parameters, which a rank set alone departs from (B=1 beside batch 64 would time batch 64; M=8192 beside P=4096
    keys longer than the queries), so such sizes are given by parameter. A tile rank (M0) is the architecture's."""
    params = {*cascade.params, *(workload.params if workload else {})}
    ranks = {r: expr for r, expr in cascade.rank_sizes.items() if r not in params}
    sole = {f"workload.{r}": f"workload.{expr.name}" for r, expr in ranks.items()
            if isinstance(expr, S.Name) and ranks_sized_by(cascade, expr.name) == [r]}
    check_set_once(_settings(spec), spec.source, sole)
    if spec.gpus is None:
        return
    for name, where in _size_settings(spec):
        rank = name.removeprefix("workload.")
        sizing = sorted(S.names_in(ranks[rank]) & set(GPU_SIZES)) if ranks.get(rank) is not None else []
        if sizing:
            use = " or ".join(f"workload.{p}" for p in sizing)
            raise SpecError(spec.source, where, f"{rank} is a rank of cascade {cascade.name}: GPU points time the "
                                                f"workload's parameters, not a rank set alone; use {use} (the "
                                                f"parameter name), or drop gpus")


def _size_settings(spec: SweepSpec) -> list[tuple[str, str]]:
    """The sizes the sweep sets as `workload.<name>` field paths, and where: each `sets` entry, each `workload.`
    axis, each `workload.` field of a linked axis."""
    return [(name, where) for name, where in _settings(spec) if name.startswith("workload.")]


def _check_arch_fields(spec: SweepSpec, base: Architecture) -> None:
    """Each `arch.` path (of an axis or a linked axis's field) is a field of `base`, and `base` accepts every value
    of each axis alone (each distinct value of an `arch.` axis, every value of a linked axis)."""
    def check(changes: dict[str, Any], where: str) -> None:
        try:
            base.with_changes(**{p.removeprefix("arch."): v for p, v in changes.items()})
        except SpecError as e:
            raise SpecError(spec.source, where, e.message) from None

    base_fields = base.to_dict()
    for path, values in spec.axes.items():
        if path.startswith("arch."):
            if not _has_field(base_fields, path.removeprefix("arch.")):
                check({path: values[0]}, f"axes.{path}")  # with_changes's message names the missing key
            seen = set()
            for i, value in enumerate(values):
                if json.dumps(value) not in seen:
                    seen.add(json.dumps(value))
                    check({path: value}, f"axes.{path}[{i}]")
    for path, templates in spec.links.items():
        first = linked_fields(path, templates, spec.axes[path][0], spec.source)
        for target in templates:
            if target.startswith("arch.") and not _has_field(base_fields, target.removeprefix("arch.")):
                check({target: first[target]}, f"axes.{path}.set.{target}")
        for i, value in enumerate(spec.axes[path]):
            fields = linked_fields(path, templates, value, spec.source)
            changes = {f: v for f, v in fields.items() if f.startswith("arch.")}
            if changes:
                check(changes, f"axes.{path}.values[{i}]")


def _has_field(data: dict[str, Any], path: str) -> bool:
    """`path` (dotted) is a field of `data`, the YAML form of an architecture."""
    *parents, leaf = path.split(".")
    for key in parents:
        data = data.get(key) if isinstance(data, dict) else None
    return isinstance(data, dict) and leaf in data
