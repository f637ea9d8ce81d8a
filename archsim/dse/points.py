"""Design points of a sweep: drawing them from the axes, keying them, and evaluating them (pure).

A point is `{"target": name, axis path: value, ...}`: the target is the sweep's architecture (whose `arch.` and
`workload.` axes the point sets), one of its GPU presets (which takes only the axes, plain or linked, setting a size
its call reads: `spec.gpu_axes`), the sweep's system (its `system.` and `serving.` axes; `archsim.dse.system_points`),
multi-device attention (its `parallel.` axes; `archsim.dse.parallel_spec`), or a sparse-attention method on a GPU
(its `sparse.` axes, the target named by the point's method, workload and GPU; `archsim.dse.sparse_spec`). Its key
is the sha256 of the canonical JSON of the fully resolved configuration (the archsim version, then the mapping's
and cascade's files as parsed, the workload as loaded (`Base.contents`), the architecture after the point's
changes and the sizes it binds: the workload's, under the mapping's `set:`, under the sweep's `sets` and the
point's `workload.` values, with those given that the cascade does not read (binding refuses them only where
given: `_bound_sizes`); or the GPU spec, kernel, calibrated parameters and attention case; or the system as the
point's values resolve it (`system_points.system_content`), the workload and the serving run; or the resolved
`ParallelSpec` and the GPU calibration;
or the sparse point's resolved fields with its GPU's, workload's and pattern map's contents and the calibration),
so the same configuration reached twice, by any spelling (a spec named or given by path, a size given or left at
the value it would bind anyway), has one key, and a new model version (`MODEL_VERSION`: the package version and a
digest of archsim's source) computes every point afresh. The limit variables set (`archsim.limits.limits_set`:
ARCHSIM_MAX_GPU_ROWS and the others, none by default) are not keyed: a point is one row whatever they are. A guard
may decide a point (beyond its limit, a record advising to raise it: `limits.advises_limit`); such a record holds
the limits it was computed under (`LIMITS_FIELD`), and a sweep under other limits computes it afresh and replaces
it (`archsim.dse.store.stale_keys`, `store.put`).

The specs a sweep starts from are loaded once into a `Base` (per batch on a worker), not once per point: parsing
YAML costs ten times more than evaluating a point. A SpecError that the base meets whatever the axes' values
(`base_error`) is bad input, for the runner to refuse before any point; one that a point's values cause is that
point's infeasible record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from archsim import library
from archsim.arch.gpu import GPU
from archsim.arch.spec import Architecture
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.cascade.ir import Cascade
from archsim.dse.block import BlockTargets, calibration_params, without_text
from archsim.dse.grouped import Variants, choose_mappings, records, structure
from archsim.dse.parallel_spec import (
    PARALLEL_ROOT,
    ParallelTargets,
    load_targets,
    parallel_config,
    parallel_point,
    parallel_record,
)
from archsim.dse.serving_spec import SERVING_ROOT, SYSTEM_ROOT, is_trace, load_system_target, system_changes
from archsim.dse.sparse_spec import (
    SPARSE_ROOT,
    SparseTargets,
    load_sparse_targets,
    sparse_blank,
    sparse_config,
    sparse_point,
    sparse_record,
    sparse_target,
)
from archsim.dse.spec import (
    GPU_SIZES,
    UNMODELLED,
    Constraint,
    SweepSpec,
    gpu_axes,
    gpu_preset,
    target_name,
    target_spec,
)
from archsim.dse.store import CONFIG_FIELDS, LIMITS_FIELD
from archsim.dse.system_points import (
    TRACE_KEY,
    request_stream,
    requests_digest,
    serve_point,
    stream,
    system_config,
    system_content,
)
from archsim.errors import SpecError
from archsim.gpu.params import load_calibration
from archsim.limits import advises_limit, limits_set
from archsim.mapping.spec import Mapping
from archsim.memo import identity_cache
from archsim.model.analytical import evaluate
from archsim.model.gpu import AttentionCase, gpu_record, infeasible
from archsim.model.gpu_kernels import family_of, kernel_attention, predict
from archsim.point import bound, prepare, unread_sets
from archsim.record import Record
from archsim.spec_files import is_spec_path, parse_yaml, read_spec_bytes
from archsim.systems.requests import Request
from archsim.systems.seqpar import ParallelResult
from archsim.systems.system_spec import with_fields
from archsim.systems.system_types import System
from archsim.workload import Workload

Point = dict[str, Any]


# The packages pyproject maps into `archsim` from folders beside archsim/ (`[tool.setuptools.package-dir]`): a wheel
# installs them under archsim/, an editable install leaves them where they are. None computes a record: the library's
# (their `__init__.py` files; the cascades' YAML is digested apart, the mappings' and workloads' is in the points'
# keys) and the Triton kernels (`archsim measure` times them; the models read the calibration fitted to the times).
MAPPED_PACKAGES = ("archsim.library.einsum", "archsim.library.mappings", "archsim.library.workloads", "archsim.kernels")


def source_digest(root: Path, cascades: Traversable | None = None) -> str:
    """A digest of the Python source under `root` (the `archsim` package's folder) but for that of the packages
    mapped into it from elsewhere (`MAPPED_PACKAGES`: so an editable install and a wheel of the same source have
    one digest), and of the library's cascades (`cascades`: the einsum package's YAML, which the systems' and GPU
    models bind, wherever the install put it) (paths and bytes, in path order)."""
    mapped = [Path(*name.split(".")[1:]) for name in MAPPED_PACKAGES]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(relative.is_relative_to(folder) for folder in mapped):
            continue
        digest.update(relative.as_posix().encode())
        digest.update(path.read_bytes())
    for entry in sorted(cascades.iterdir() if cascades is not None else (), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            digest.update(entry.name.encode())
            digest.update(entry.read_bytes())
    return digest.hexdigest()[:16]


# The package version and its source's and cascades' digest: a model changed in place (an editable install, a
# checkout between releases, whose version string stays; a library cascade edited, which a system, parallel or
# sparse point binds without its content in the key) keys its points afresh, and a store written by another model
# is refused (`archsim.dse.sweep.claim_store`: its base differs in "version") instead of serving the old model's
# records. The same source installed editable or as a wheel is one model (`source_digest`).
MODEL_VERSION = (f"{metadata.version('archsim')}+"
                 f"{source_digest(Path(__file__).resolve().parents[1], resources.files(library.PACKAGES['cascades']))}")


@dataclass(frozen=True)
class Base:
    """The specs every point of a sweep starts from, loaded once: a mapping, its cascade and architecture (and GPU
    presets), a system and the requests it serves, or multi-device or sparse attention's named specs."""

    mapping: Mapping | None
    cascade: Cascade | None
    arch: Architecture | None
    workload: Workload | None
    gpus: dict[str, GPU]  # preset name -> spec
    gpu_params: dict[str, float]  # the calibrated parameters of the GPU kernel's family
    system: System | None = None
    # what a system serves: each stream its points' lengths and rate give (`system_points.stream`), made once
    requests: dict[tuple[str, float], tuple[Request, ...]] = field(default_factory=dict)
    parallel: ParallelTargets | None = None
    sparse: SparseTargets | None = None
    # an architecture's sweep: its mapping's and cascade's files as parsed and its workload as loaded, as
    # canonical JSON (`spec_content`): what its points' keys and its store's base hold of them, however named
    contents: dict[str, str] = field(default_factory=dict)


def load_base(spec: SweepSpec) -> Base:
    """The Base of `spec`'s points, each named spec loaded once: its multi-device or sparse attention targets, its
    system, workload and the request stream of each lengths and rate its points take (the serving block's, or its
    axes' values: a stream per value pair, not per point), or its mapping, cascade, architecture, workload, GPU
    presets and the calibrated parameters of their kernel's family."""
    if spec.parallel is not None:
        return Base(None, None, None, None, {}, {}, parallel=load_targets(spec.parallel, spec.axes, spec.source))
    if spec.sparse is not None:
        return Base(None, None, None, None, {}, {}, sparse=load_sparse_targets(spec.sparse, spec.axes, spec.source))
    if spec.system:
        system, workload = load_system_target(spec.system, spec.workload, spec.source)
        settings = spec.serving
        rate_axis = f"{SERVING_ROOT}.rate_per_s"
        rates = [(rate, f"axes.{rate_axis}[{i}]") for i, rate in enumerate(spec.axes[rate_axis])] \
            if rate_axis in spec.axes else [(settings.rate_per_s, rate_axis)]
        pairs = itertools.product(spec.axes.get(f"{SERVING_ROOT}.lengths", [settings.lengths]), rates)
        streams = {stream(settings, {f"{SERVING_ROOT}.lengths": lengths, rate_axis: rate}):
                   request_stream(settings, lengths, rate, spec.source, where) for lengths, (rate, where) in pairs}
        return Base(None, None, None, workload, {}, {}, system, streams)
    mapping = library.load_mapping_spec(spec.mapping)
    cascade = spec.cascade or mapping.cascade
    workload = library.load_workload_spec(spec.workload) if spec.workload else None
    gpus = {name: gpu_preset(spec, name) for name in spec.gpus.presets} if spec.gpus else {}
    params = load_calibration().family_params(family_of(spec.gpus.kernel)) if spec.gpus else {}
    contents = {"mapping": spec_content("mappings", spec.mapping), "cascade": spec_content("cascades", cascade),
                "workload": _dumps(_workload_content(workload))}
    return Base(mapping, library.load_cascade_spec(cascade), library.load_architecture_spec(target_spec(spec)),
                workload, gpus, params, contents=contents)


def spec_content(kind: str, name_or_path: str) -> str:
    """A spec file's content as canonical JSON of its parsed YAML: the same for its library name and its path, and
    for a copy differing in comments or layout (a value it parses to differently, such as a date, as its text)."""
    path = library.find(kind, name_or_path)
    return json.dumps(_canonical(parse_yaml(read_spec_bytes(path), path)), sort_keys=True, separators=(",", ":"),
                      default=str)


def _workload_content(workload: Workload | None) -> dict[str, Any] | None:
    """A workload as its points bind it: its name, sizes, block and attention, not its file, description or
    citation."""
    return workload and {"name": workload.name, "params": workload.params, "block": workload.block,
                         "attention": workload.attention}


def base_identity(spec: SweepSpec, base: Base) -> dict[str, Any]:
    """What every point of the sweep shares, by part (canonical JSON values): the archsim version, the target kind
    and the content of every input the points' results read, never only its name: the mapping's and cascade's files
    as parsed, the architecture and workload as loaded, `sets` and the GPU presets, each with the settings its
    points are timed at (`TIMED_AT`: a preset added to a store swept without GPUs, or with others, shares it; one
    timed at other settings is refused like an edited preset file: `GPU_PRESETS_PART`); or the system as loaded,
    its devices and links included (a preset file edited between sweeps is another base), workload and serving
    run, each trace by its requests (`_trace_content`) and each file a `system.` axis names
    (`_system_axis_files`); or the parallel or sparse block, the specs it and its axes name as loaded
    (`_block_contents`) and the GPU calibration. The inputs an axis names are held by name (`input_noun`: a store
    may gain names as the axis grows), and so are an architecture or system sweep's linked axes' templates
    (`_linked_templates`). The axes' values, sampling, constraints and objectives are not part of it: they may
    change between sweeps into one store (`archsim.dse.store`), whose points then still belong together."""
    common = {"version": MODEL_VERSION, "kind": spec.kind}
    if base.parallel is not None:
        parts = {"parallel": base.parallel.block, "calibration": base.parallel.calibration,
                 **_block_contents(base.parallel, PARALLEL_ROOT)}
    elif base.sparse is not None:
        parts = {"sparse": base.sparse.block, "calibration": base.sparse.calibration,
                 **_block_contents(base.sparse, SPARSE_ROOT)}
    elif base.system is not None:
        parts = {"system": base.system.data, "resolved": system_content(base.system),
                 "workload": _workload_content(base.workload), "serving": _serving_content(spec),
                 **_trace_content(spec, base), **_system_axis_files(spec, base.system), **_linked_templates(spec)}
    else:
        timed = _timed_at(spec)
        parts = {"arch": base.arch.to_dict(), "sets": spec.sets,
                 GPU_PRESETS_PART: {name: {**_gpu_content(gpu), **timed} for name, gpu in base.gpus.items()},
                 **_linked_templates(spec)}
    return {**{name: _dumps(value) for name, value in {**common, **parts}.items()}, **base.contents}


# The parts of a base naming each input's content by the name the sweep gives it (a JSON object, name -> content):
# GPU_PRESETS_PART, each GPU's (an architecture sweep's presets with the settings their points are timed at,
# `TIMED_AT`; a parallel or sparse sweep's GPUs as loaded), and an axis's part (`AXIS_PART` and the axis's path),
# each input file that only the axis names (a trace by its requests; a workload, topology or pattern map as
# loaded; a system's GPU, chip, link or architecture file as the system it sets resolves it). A store may gain
# names (as an axis grows, or a sweep without GPUs gains them), but a name whose file now says something else, or a
# GPU timed under another kernel or calibration, would leave its old points beside the new, rows that do not say
# which (`archsim.dse.sweep.claim_store`). GPU_PRESETS_PART was named anew each time what it holds grew
# (`gpu_presets`, then `gpu_targets` when the kernel settings joined it, then this when the calibration did): a
# store of before is refused as differing in version, not as holding another GPU or one timed under other settings.
GPU_PRESETS_PART = "gpus_timed"
SWEEP_TIMING = ("kernel", "causal", "precision")  # the sweep's settings a GPU preset's points are timed at
TIMED_AT = (*SWEEP_TIMING, "calibration")  # and the calibrated parameters they are timed with (`_timed_at`)
LINKED_PART = "linked_axes"  # each linked axis's `set:` templates, by the axis's path (`_linked_templates`)
AXIS_PART = "axes."  # and an axis's path, as the sweep writes it: the part of the files only that axis names
# what the files an axis (or the axes of a root) names are called, where not by the axis's field
_AXIS_INPUTS = {f"{SERVING_ROOT}.lengths": "trace", f"{SPARSE_ROOT}.patterns": "pattern map", SYSTEM_ROOT: "file"}


def input_noun(part: str) -> str | None:
    """What a base part holds the content of by name: `GPU` (`GPU_PRESETS_PART`), or the input an axis's part
    (`AXIS_PART`) names, its field's name (`topology`, `workload`) or `_AXIS_INPUTS`'s word for it (`trace`,
    `pattern map`, a `system.` axis's `file`); None for a part of one content."""
    if part == GPU_PRESETS_PART:
        return "GPU"
    if part == LINKED_PART:
        return "linked axis"
    if part.startswith(AXIS_PART):
        axis = part.removeprefix(AXIS_PART)
        return _AXIS_INPUTS.get(axis, _AXIS_INPUTS.get(axis.partition(".")[0], axis.rpartition(".")[2]))
    return None


def _linked_templates(spec: SweepSpec) -> dict[str, Any]:
    """The sweep's linked axes' `set:` templates, by the axis's path, under LINKED_PART (nothing without one): what
    each value of a linked axis means, which its records do not hold (they hold its value alone). Held by name as
    an axis's input file is (`input_noun`): a store may gain linked axes, or a sweep leave one out, but an axis
    whose templates changed as written (a field added, dropped or set otherwise, even to what renders the same)
    would put other designs under the same values, rows nothing tells apart, so it is refused
    (`archsim.dse.sweep.other_base`)."""
    return {LINKED_PART: spec.links} if spec.links else {}


def _timed_at(spec: SweepSpec) -> dict[str, Any]:
    """What an architecture sweep's GPU presets are timed at (`TIMED_AT`; none without a `gpus:` block): the
    sweep's kernel, causality and precision, and the packaged calibration as a digest of every family's parameters
    (a refit of any family is another calibration, as in a parallel or sparse sweep's base; a digest, short enough
    for the refusal to print; the kernel's family's values alone would differ with the kernel, which is named
    apart)."""
    if not spec.gpus:
        return {}
    return {**{name: getattr(spec.gpus, name) for name in SWEEP_TIMING},
            "calibration": _digest(_dumps(calibration_params()))[:16]}


def _block_contents(targets: BlockTargets, root: str) -> dict[str, Any]:
    """The specs the sweep's block `root` (parallel, sparse) and its axes name, by their content (without files and
    prose: `without_text`), not their names: every GPU under `GPU_PRESETS_PART`, by the name the sweep gives it (a
    GPU axis may grow; a GPU file edited since is refused as an architecture sweep's preset is), the workload,
    topology or pattern map the block names under its field's name, and those an axis names under the axis's part
    (`AXIS_PART`), by name, as the GPUs are."""
    contents = {field: {name: without_text(dataclasses.asdict(spec)) for name, spec in specs.items()}
                for field, specs in targets.specs.items() if field != "gpu"}
    named = {field: contents[field][name] for field, name in targets.block.items() if field in contents}
    by_axis = {f"{AXIS_PART}{root}.{field}": each for field, each in contents.items()
               if field not in targets.block and each}
    return {GPU_PRESETS_PART: {name: _gpu_content(gpu) for name, gpu in targets.specs.get("gpu", {}).items()},
            **named, **by_axis}


def _serving_content(spec: SweepSpec) -> dict[str, Any]:
    """The serving block as a base holds it: a trace in it as its points' keys name one (`TRACE_KEY`), since the
    base's "trace" part holds its requests (`_trace_content`): the same requests moved, or in another format, are
    the same sweep."""
    serving = dataclasses.asdict(spec.serving)
    return {**serving, "lengths": TRACE_KEY} if is_trace(spec.serving.lengths) else serving


def _trace_content(spec: SweepSpec, base: Base) -> dict[str, Any]:
    """The traces the sweep serves, by the digest of their requests (`requests_digest`, as its points' keys hold
    them): the serving block's under "trace" (the same name over other requests is another base), a
    `serving.lengths` axis's under the axis's part (`AXIS_PART`), by name (the axis may grow; a trace edited since
    is refused as an edited GPU file is). Nothing for a length preset's stream (its settings are the serving part,
    or the axis's values in the points)."""
    if is_trace(spec.serving.lengths):
        return {"trace": requests_digest(base.requests[stream(spec.serving, {})])}
    traces = {lengths: requests_digest(requests) for (lengths, _), requests in base.requests.items()
              if is_trace(lengths)}
    return {f"{AXIS_PART}{SERVING_ROOT}.lengths": traces} if traces else {}


def _system_axis_files(spec: SweepSpec, system: System) -> dict[str, Any]:
    """The files a `system.` axis names (a value that is a path, `is_spec_path`: a GPU, chip, link or architecture
    preset's, or a mapping's), under the axis's part (`AXIS_PART`), by name: each as the system with it set
    resolves it (`system_content`), the deepest field along the axis's path that the resolved system has (the device
    or link the file is loaded into). Each value alone was accepted at load (`serving_spec.check_system_axes`)."""
    parts = {}
    for path, values in spec.axes.items():
        field = path.removeprefix(f"{SYSTEM_ROOT}.")
        files = [value for value in values if field != path and isinstance(value, str) and is_spec_path(value)]
        if files:
            parts[f"{AXIS_PART}{path}"] = {value: _set_by(system, path, value, spec.source) for value in files}
    return parts


def _set_by(system: System, path: str, value: str, source: str) -> Any:
    """What of `system` with the axis `path` (`system.` and a dotted path) of the sweep at `source` set to `value`
    (`system_changes`: a file from the sweep's folder) that value sets, resolved: the deepest field along the path
    in `system_content` (a device's `preset` is loaded into the device, a link's file is the link)."""
    field = path.removeprefix(f"{SYSTEM_ROOT}.")
    node = system_content(with_fields(system, system_changes({path: value}, source)))
    for key in field.split("."):
        if not isinstance(node, dict) or key not in node:
            break
        node = node[key]
    return node


def _gpu_content(gpu: GPU) -> dict[str, Any]:
    """A GPU as its points compute it: its fields without its file's path (where the file lies, not what it says)."""
    return {k: v for k, v in dataclasses.asdict(gpu).items() if k != "source"}


def expand(spec: SweepSpec) -> list[Point]:
    """The sweep's points: first its target's (the architecture or the system), then each GPU preset's.

    The architecture's come from all axes: grid = cartesian product in axis order; random = `samples`
    independent draws of a value per axis; lhs = `samples` Latin-hypercube points (each axis's [0, 1) split into
    `samples` strata, one draw per stratum, strata shuffled per axis, mapped onto the axis's value list). Seeded,
    so deterministic. A GPU preset gets every combination of the values of the axes it takes (a grid of
    `gpu_axes`: the axes, plain or linked, setting a size its call reads; not a tile such as `workload.M0`)."""
    target = target_name(spec)
    paths = list(spec.axes)
    if spec.sampling.kind == "grid":
        points = [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*spec.axes.values())]
    else:
        rng = np.random.default_rng(spec.sampling.seed)
        n = spec.sampling.samples
        if spec.sampling.kind == "random":
            columns = [rng.integers(0, len(spec.axes[p]), size=n) for p in paths]
        else:
            columns = [np.floor((rng.permutation(n) + rng.random(n)) / n * len(spec.axes[p])).astype(int)
                       for p in paths]
        points = [{p: spec.axes[p][int(col[i])] for p, col in zip(paths, columns, strict=True)} for i in range(n)]
    if spec.sparse is not None:  # an axis over a setting its point's method does not take: NaN, does not apply
        points = [{"target": sparse_target(spec.sparse, p), **sparse_point(spec.sparse, p)} for p in points]
    elif spec.parallel is not None:  # so is one over a value its scheme does not model (usp's Ulysses degree)
        points = [{"target": target, **parallel_point(spec.parallel, p)} for p in points]
    else:
        points = [{"target": target, **p} for p in points]
    if spec.gpus:
        workload_paths = gpu_axes(spec)
        combos = list(itertools.product(*(spec.axes[p] for p in workload_paths)))
        points += [{"target": gpu, **dict(zip(workload_paths, combo, strict=True))}
                   for gpu in spec.gpus.presets for combo in combos]
    return points


def base_value(identity: dict[str, str], kind: str, axis: str) -> Any:
    """The value axis `axis` has at a point of `kind` (`target_kind`) stored by a sweep that did not set it: the
    base's (`identity`: `base_identity` as a store's meta holds it, part -> JSON text), as a point given the base's
    value keys as the point without it (`_bound_sizes`). An architecture point's `arch.` field is the base
    architecture's, its `workload.` size the workload's under the mapping's `set:` under `sets`; a GPU point's
    size its call reads (`GPU_SIZES`) the workload's under `sets` (`_gpu_call`). None where the axis does not apply
    to that kind of point (a GPU's `arch.` field or tile, a system's, parallel or sparse point's axis, whose NaN
    its sweep sets where it does not apply), or the base gives it no value (a linked axis, which is no field; a
    size none of those gives)."""
    root, _, name = axis.partition(".")
    if kind == "architecture" and root == "arch":
        value = _part(identity, "arch")
        for key in name.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value
    if root != "workload" or kind not in ("architecture", "gpu") or (kind == "gpu" and name not in GPU_SIZES):
        return None
    tiles = (_part(identity, "mapping") or {}).get("set") if kind == "architecture" else None
    sizes = {**((_part(identity, "workload") or {}).get("params") or {}), **(tiles or {}),
             **(_part(identity, "sets") or {})}
    return sizes[name] if _number(sizes.get(name)) else None


def _part(identity: dict[str, str], part: str) -> Any:
    """A base part as its JSON text says (None where the base has no such part)."""
    return json.loads(identity[part]) if part in identity else None


def target_kind(base: Base, point: Point) -> str:
    """architecture, gpu, system, parallel or sparse: which model evaluates the point."""
    if base.system is not None:
        return "system"
    if base.parallel is not None:
        return "parallel"
    if base.sparse is not None:
        return "sparse"
    return "gpu" if point["target"] in base.gpus else "architecture"


def point_key(spec: SweepSpec, base: Base, point: Point) -> str:
    """The sha256 of the point's resolved configuration (the module docstring says what it holds)."""
    return keyed(spec, base, [point])[0][0]


def keyed(spec: SweepSpec, base: Base, points: list[Point]) -> list[tuple[str, Any]]:
    """Each point's key (`point_key`) and what it shares with the points `evaluate_points` evaluates together (its
    sizes and the fields it changes; None for the other targets' points). The parts of the architecture's points'
    configurations that points share (the architecture after its changes, the sizes, the rest) are written once."""
    version = MODEL_VERSION
    fixed = {"version": _dumps(version), **base.contents}
    arch_texts: dict[tuple, str] = {}
    size_texts: dict[tuple, str] = {}
    out = []
    for point in points:
        kind = target_kind(base, point)
        if kind != "architecture":
            out.append((_digest(_json_text({"version": version, **_config(spec, base, point, kind)}, {})),
                        None))
            continue
        changes, sizes = _changes(spec, point)
        sized = tuple((k, _frozen(v)) for k, v in sorted(sizes.items()))
        if changes not in arch_texts:
            arch_texts[changes] = _arch_json(_changed(base.arch, changes) if changes else base.arch)
        if sized not in size_texts:
            size_texts[sized] = _dumps(_bound_sizes(base, sizes))
        text = _json_text({}, {**fixed, "arch": arch_texts[changes], "sizes": size_texts[sized]})
        out.append((_digest(text), (sized, tuple(path for path, _ in changes))))
    return out


def _config(spec: SweepSpec, base: Base, point: Point, kind: str) -> dict[str, Any]:
    """The resolved configuration of a point of a GPU, a system, multi-device or sparse attention."""
    if kind == "system":
        fields = spec.fields(point)
        return system_config(base.system, base.workload, spec.serving, fields,
                             base.requests[stream(spec.serving, fields)], spec.source)
    if kind == "parallel":
        return parallel_config(base.parallel, base.parallel.spec(spec.fields(point)))
    if kind == "sparse":
        return sparse_config(base.sparse, spec.fields(point))
    gpu = _gpu_content(base.gpus[point["target"]])  # a moved store still resumes
    case, word_bytes = _gpu_call(spec, base, point)
    return {"gpu": gpu, "kernel": spec.gpus.kernel, "params": base.gpu_params, "case": dataclasses.asdict(case),
            "word_bytes": word_bytes}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def computing_version() -> dict[str, Any]:
    """What a record depends on of the code and the environment: `MODEL_VERSION` and the limit variables set
    (`limits.limits_set`; a record a limit decided holds them: `LIMITS_FIELD`). A process computing records for
    this one's keys (a Dask worker: `archsim.dse.dask_run`) must have the same."""
    return {"model": MODEL_VERSION, "limits": limits_set()}


def _json_text(config: dict[str, Any], encoded: dict[str, str]) -> str:
    """The canonical JSON of `config` with the members `encoded` (already canonical JSON) added: the text of
    `json.dumps(_canonical(...), sort_keys=True, separators=(",", ":"))` of the whole."""
    members = {**{k: _dumps(v) for k, v in config.items()}, **encoded}
    return "{" + ",".join(f"{json.dumps(k)}:{members[k]}" for k in sorted(members)) + "}"


def _dumps(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))


@identity_cache(maxsize=4096)
def _arch_json(arch: Architecture) -> str:
    """An architecture's part of its points' keys, written once per Architecture object (points share them)."""
    return _dumps(arch.to_dict())


def evaluate_point(spec: SweepSpec, base: Base, point: Point, key: str | None = None) -> dict[str, Any]:
    """One flat record: key, target_kind (architecture | gpu | system | parallel | sparse), target, the axis values,
    feasibility, metrics (`SweepSpec.metrics`, NaN where not modelled), a target's config and extras, and the names
    of its config's columns (`CONFIG_FIELDS`). A point that does not fit, or whose changes the model rejects (a
    SpecError), is a record with `feasible=False` and its reason (a SpecError's field and message, not its file:
    `_reason`), never a raise: its metrics and extras NaN, its config (a model's infeasible Record's) kept.

    A constraint on a metric the target does not model (`NOT_MODELLED`: a GPU's area) does not exclude it.
    `key`: the point's `point_key` where the caller has it."""
    kind = target_kind(base, point)
    return _record(spec, base, point, key, kind, lambda: _EVALUATORS[kind](spec, base, point))


def evaluate_points(spec: SweepSpec, base: Base, points: list[Point],
                    keys: list[str] | None = None) -> list[dict[str, Any]]:
    """`evaluate_point` of each point (the same records, in order), with what points share done once: the points of
    the architecture that bind the same sizes and change the same fields go through the mapper together and are
    priced together (`archsim.dse.grouped`). A point whose changes or sizes are rejected, or a group of points
    the mapper or the model rejects, is evaluated alone, so its record carries its own reason. `keys`: the points'
    keys where the caller has them."""
    keys = keys or [None] * len(points)
    out: list[dict[str, Any] | None] = [None] * len(points)
    archs: dict[tuple, Architecture] = {}
    bindings: dict[tuple, tuple[Binding, Analysis]] = {}
    together: dict[tuple, tuple[Binding, Analysis, list[tuple[int, Architecture, tuple]]]] = {}
    for i, point in enumerate(points):
        if target_kind(base, point) != "architecture":
            out[i] = evaluate_point(spec, base, point, keys[i])
            continue
        try:
            changes, sets = _changes(spec, point)
            if changes not in archs:  # points of a batch share architectures and bindings: looked up once each
                archs[changes] = _changed(base.arch, changes) if changes else base.arch
            sized = tuple((k, _frozen(v)) for k, v in sorted(sets.items()))
            if sized not in bindings:
                bindings[sized] = bound(base.cascade, base.workload, sets, base.mapping, SETS_SOURCE)
            arch, (binding, analysis) = archs[changes], bindings[sized]
        except SpecError:
            out[i] = evaluate_point(spec, base, point, keys[i])
            continue
        key = (id(binding), tuple(path for path, _ in changes), structure(arch))
        together.setdefault(key, (binding, analysis, []))[2].append((i, arch, changes))
    for binding, analysis, members in together.values():
        variants = _variants(base.arch, members)
        try:
            each = records(binding, analysis, variants, choose_mappings(binding, analysis, variants, base.mapping))
        except SpecError:
            each = [None] * len(members)
        for (i, *_), record in zip(members, each, strict=True):
            out[i] = evaluate_point(spec, base, points[i], keys[i]) if record is None else _record(
                spec, base, points[i], keys[i], "architecture", lambda record=record: record)
    return out


def _variants(base_arch: Architecture, members: list[tuple[int, Architecture, tuple]]) -> Variants:
    """The architectures of points changing the same fields, planned on the sweep's architecture where they have
    its names (else on the first of them), with their changes as columns where every value is a number (a list of
    numbers for a shape)."""
    archs = [arch for _, arch, _ in members]
    paths = [path for path, _ in members[0][2]]
    values = [[value for _, value in changes] for _, _, changes in members]
    plain = all(_number(v) or (isinstance(v, tuple) and v and all(map(_number, v))) for row in values for v in row)
    numbers = {path: np.array([row[k] for row in values], dtype=float) for k, path in enumerate(paths)} if (
        plain and paths) else None
    planned_on = base_arch if structure(base_arch) == structure(archs[0]) else archs[0]
    return Variants(planned_on, archs, numbers)


def _number(value: Any) -> bool:
    """A number a float column holds exactly (not a bool, not an integer beyond 2**53)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and float(value) == value


# Where an architecture point's sizes come from, for messages (`archsim.point.prepare`'s `sets_source`): the sweep's
# `sets` and `workload.` axes, not its file, whose path the point's key does not hold (a point's reason quotes it:
# `seq_len=1000 from the sweep's sets and axes`). A base error raised from it is the sweep file's (`_as_sweeps`).
SETS_SOURCE = "the sweep's sets and axes"

# The roots of the axes over fields the base gives values of its own (its architecture, sizes and system), which
# its base point (`base_error`) leaves out; a serving.max_batch or parallel. axis sets a field the base lacks (a field
# is set in one place, `archsim.dse.once`).
_BASE_HELD = ("arch", "workload", "linked", SYSTEM_ROOT)


def base_error(spec: SweepSpec, base: Base) -> SpecError | None:
    """The SpecError the sweep's base meets whatever its axes' values (bad input, not a point's reason); None when
    its base point is evaluated (feasible or not) or its error may come from an axis.

    The base point is the sweep's own target as given: no value of an axis over a field the base holds
    (`_BASE_HELD`), the first value of each other axis (a field only the axis gives). Its error is the base's when
    no axis changes it: the base point with one axis at each of its values other than the point's meets an error of
    the same field and message (its file may differ: a changed architecture is no longer its file's). An axis with
    no other value (one value of a field the base lacks, such as `parallel.devices: [3]`, which may be what fails)
    leaves the error the points'. Assumes an error that survives each axis's changes alone survives their
    combinations. A sweep with GPU presets is refused only when its first GPU point fails too (a workload the
    architecture's mapping refuses, a grouped-query one on a multi-head mapping, may still run on the GPUs). One
    evaluation when the base point evaluates; otherwise its variants, up to the first that does not fail alike. An
    error about a size (`SETS_SOURCE`) is the sweep file's `sets.<size>` (`_as_sweeps`)."""
    point = {"target": target_name(spec), **{path: values[0] for path, values in spec.axes.items()
                                             if path.partition(".")[0] not in _BASE_HELD}}
    error = _error_at(spec, base, point)
    if error is None or (spec.gpus and _error_at(spec, base, {**point, "target": spec.gpus.presets[0]}) is None):
        return None
    variants = [_one_axis_changed(spec, point, path) for path in spec.axes]
    if not all(variants):
        return None
    return _as_sweeps(spec, error) if all(_alike(error, _error_at(spec, base, variant))
                                          for variant in itertools.chain.from_iterable(variants)) else None


def _as_sweeps(spec: SweepSpec, error: SpecError) -> SpecError:
    """A base error about a size (raised from `SETS_SOURCE`) as the sweep file's `sets.<size>`: a base point takes
    no `workload.` axis (`_BASE_HELD`), so its sizes beyond the workload's are the sweep's `sets`; another as it is."""
    return SpecError(spec.source, f"sets.{error.where}", error.message) if error.source == SETS_SOURCE else error


def _one_axis_changed(spec: SweepSpec, point: Point, path: str) -> list[Point]:
    """`point` with axis `path` at each of its values other than the point's, each once (values compared as JSON)."""
    current = json.dumps(point[path]) if path in point else None
    values = {json.dumps(value): value for value in spec.axes[path]}
    return [{**point, path: value} for text, value in values.items() if text != current]


def _error_at(spec: SweepSpec, base: Base, point: Point) -> SpecError | None:
    """The SpecError the point's model raises; None when it answers with a Record (feasible or not)."""
    try:
        _EVALUATORS[target_kind(base, point)](spec, base, point)
    except SpecError as exc:
        return exc
    return None


def _alike(error: SpecError, other: SpecError | None) -> bool:
    """`other` is `error`, perhaps raised from another file: the same field and message."""
    return other is not None and (other.where, other.message) == (error.where, error.message)


def _record(spec: SweepSpec, base: Base, point: Point, key: str | None, kind: str,
            result_of: Callable[[], Record]) -> dict[str, Any]:
    """The point's record from its model's Record (`result_of()`; a SpecError makes it infeasible: the kind's blank
    Record failing with it, `_refused`): its flat row (`Record.flat()`: an infeasible design's metrics and extras
    NaN, its config kept) and the names of its config's columns (`CONFIG_FIELDS`, which the store keeps on an
    infeasible row); a record a limit decided (its reason or note advising to raise a limit variable:
    `limits.advises_limit`) also holds the limits set (`LIMITS_FIELD`: `limits.limits_set`), any other none."""
    record: dict[str, Any] = {"key": key or point_key(spec, base, point), "target_kind": kind, **point}
    try:
        result = result_of()
        feasible, reason, flat, config = result.feasible, result.reason, result.flat(), list(result.config)
    except SpecError as e:
        feasible, reason = False, _reason(e)
        refused = _refused(spec, base, point, kind, reason)
        flat, config = (refused.flat(), list(refused.config)) if refused else ({}, [])
    metrics = {**dict.fromkeys(spec.metrics, float("nan")), **flat}
    ok = bool(within_constraints(spec.constraints, feasible, metrics, kind))
    out = {**record, "feasible": feasible, "reason": reason, **metrics, CONFIG_FIELDS: config, "constraint_ok": ok}
    return {**out, LIMITS_FIELD: limits_set()} if advises_limit(out) else out


def _reason(error: SpecError) -> str:
    """A point's refusal as its record stores it: the field and the message, without the file (a sweep's, a
    preset's), whose path the point's key does not hold: a store reused from a copied or moved spec exports the
    same bytes as a fresh one (the messages name the sweep's sizes by `SETS_SOURCE`, a topology by its name)."""
    return error.reason


def _refused(spec: SweepSpec, base: Base, point: Point, kind: str, reason: str) -> Record | None:
    """The Record of a point its model rejects, for `reason`: its kind's blank record (`_BLANKS`: the point's config
    without numbers, as `archsim parallel --json` prints a rejected point; a sparse point's budget) failing with it;
    None for a kind without one (its record has no config)."""
    blank = _BLANKS.get(kind)
    return blank(spec, base, point).failing(reason) if blank else None


def _parallel_blank(spec: SweepSpec, base: Base, point: Point) -> Record:
    return ParallelResult.blank(base.parallel.spec(spec.fields(point))).record()


def _sparse_blank(spec: SweepSpec, base: Base, point: Point) -> Record:
    return sparse_blank(base.sparse, spec.fields(point))


# The blank Record of a rejected point of each kind whose records have a config (`Record.config`).
_BLANKS: dict[str, Callable[[SweepSpec, Base, Point], Record]] = {"parallel": _parallel_blank,
                                                                  "sparse": _sparse_blank}


# The metrics a point of each target kind (`target_kind`) has no model of, NaN in its records: a GPU preset's area
# (`archsim.model.gpu.gpu_record`: the presets carry no die area), and a system's, multi-device attention's or sparse
# attention's (`archsim.dse.spec.UNMODELLED`, whose sweeps refuse a constraint on them).
NOT_MODELLED = {"gpu": ("area_um2",), **UNMODELLED}


def within_constraints(constraints: tuple[Constraint, ...], feasible: Any, metrics: Any, kinds: Any) -> Any:
    """Whether a point is feasible and meets `constraints` (`feasible` a bool, `metrics` its metrics by name, `kinds`
    its `target_kind`), or each point of a table (`feasible` a bool column, `metrics` a DataFrame, `kinds` a column:
    a bool array). A NaN metric meets a constraint only where the point's kind does not model it (`NOT_MODELLED`);
    any other NaN (a metric the model left undefined) fails it."""
    ok = np.asarray(feasible, dtype=bool)
    for constraint in constraints:
        value = np.asarray(metrics[constraint.metric], dtype=float)
        unmodelled = np.isin(kinds, [kind for kind, names in NOT_MODELLED.items() if constraint.metric in names])
        ok = ok & ((unmodelled & np.isnan(value)) | constraint.holds(value))
    return ok


def with_constraints(df: pd.DataFrame, constraints: tuple[Constraint, ...]) -> pd.DataFrame:
    """Records (`archsim.dse.store.records`) with `constraint_ok` judged by `constraints` (the sweep's now, not
    those of the sweep that stored them)."""
    if df.empty:
        return df
    return df.assign(constraint_ok=within_constraints(constraints, df["feasible"].to_numpy(dtype=bool), df,
                                                      df["target_kind"].to_numpy()))


def _system_record(spec: SweepSpec, base: Base, point: Point) -> Record:
    fields = spec.fields(point)
    return serve_point(base.system, base.workload, base.requests[stream(spec.serving, fields)], spec.serving, fields,
                       spec.source)


def _parallel_record(spec: SweepSpec, base: Base, point: Point) -> Record:
    return parallel_record(base.parallel, spec.fields(point), spec.source)


def _sparse_record(spec: SweepSpec, base: Base, point: Point) -> Record:
    return sparse_record(base.sparse, spec.fields(point), spec.source)


def _arch_record(spec: SweepSpec, base: Base, point: Point) -> Record:
    arch, sets = _resolve(spec, base, point)
    p = prepare(base.mapping, cascade=base.cascade, arch=arch, workload=base.workload, sets=sets,
                sets_source=SETS_SOURCE)
    return evaluate(p.binding, p.analysis, p.arch, p.mapping).record()


def _gpu_record(spec: SweepSpec, base: Base, point: Point) -> Record:
    """The GPU's call at `gpus.precision`; a point whose workload words are of another width (a `word_bytes` axis),
    or whose sizes give none (never taken as the precision's), is infeasible, saying so: the GPU would time other
    words than the architecture points compute."""
    gpu, (case, word_bytes) = base.gpus[point["target"]], _gpu_call(spec, base, point)
    if word_bytes != case.element_bytes:
        words = ("the workload gives no word_bytes" if word_bytes is None
                 else f"the workload's {word_bytes:g}-byte words")
        return gpu_record(infeasible(spec.gpus.kernel, gpu, case, f"{words}, but gpus.precision {case.precision} "
                                     f"times {case.element_bytes}-byte words"), gpu)
    return gpu_record(predict(spec.gpus.kernel, case, gpu, base.gpu_params), gpu)


# Which model evaluates a point; every one answers with the same `archsim.record.Record`.
_EVALUATORS = {"architecture": _arch_record, "gpu": _gpu_record, "system": _system_record,
               "parallel": _parallel_record, "sparse": _sparse_record}


def _resolve(spec: SweepSpec, base: Base, point: Point) -> tuple[Architecture, dict[str, Any]]:
    """The architecture with the point's `arch.` changes and the sizes with its `workload.` overrides (its own
    and its linked axes')."""
    changes, sizes = _changes(spec, point)
    return (_changed(base.arch, changes) if changes else base.arch), sizes


def _changes(spec: SweepSpec, point: Point) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """The point's `arch.` changes ((field path after `arch.`, value) pairs, lists as tuples) and its sizes."""
    fields = spec.fields(point)
    return (tuple((p.removeprefix("arch."), _frozen(v)) for p, v in fields.items() if p.startswith("arch.")),
            _sizes(spec, fields))


@identity_cache(maxsize=4096)
def _changed(arch: Architecture, changes: tuple[tuple[str, Any], ...]) -> Architecture:
    """`arch` with `changes` ((field path, value) pairs, lists as tuples), one object per equal changes: points
    differing only in sizes share it (and what is remembered of it)."""
    return arch.with_changes(**dict(changes))


def _frozen(value: Any) -> Any:
    """A list as a tuple (nested), so that a change is remembered by value."""
    return tuple(map(_frozen, value)) if isinstance(value, list) else value


def _sizes(spec: SweepSpec, fields: dict[str, Any]) -> dict[str, Any]:
    return {**spec.sets, **{p.removeprefix("workload."): v for p, v in fields.items() if p.startswith("workload.")}}


def _bound_sizes(base: Base, sizes: dict[str, Any]) -> dict[str, Any]:
    """The sizes a point of the architecture binds (`archsim.point.bound`: the workload's, under the mapping's
    `set:`, under `sizes`, the sweep's `sets` and the point's `workload.` values), so that a value equal to the one
    it overrides keys as the point without it; and the sizes given that the cascade does not read
    (`archsim.point.unread_sets`), which binding refuses only where they are given. Without a workload, `sizes` as
    given (the sweep gives every size the cascade binds then, `point.sizes_unset`:
    `archsim.dse.spec._check_sizes_without_workload`)."""
    if base.workload is None:
        return sizes
    return {"sizes": {**base.workload.params, **base.mapping.sets, **sizes},
            "unread": unread_sets(base.cascade, base.workload, sorted(sizes))}


def _gpu_call(spec: SweepSpec, base: Base, point: Point) -> tuple[AttentionCase, float | None]:
    """The GPU's attention call, a forward over the workload's shapes with the point's sizes (its `sets` and axes
    over the workload's), and the width of the point's workload words (None where none is given)."""
    sizes = {**base.workload.params, **_sizes(spec, spec.fields(point))}
    try:
        heads = int(sizes["heads"])
        return AttentionCase("fwd", int(sizes["batch"]), heads, int(sizes.get("kv_heads", heads)),
                             int(sizes["head_dim"]), int(sizes["seq_len"]), spec.gpus.causal, spec.gpus.precision,
                             kernel_attention(spec.gpus.kernel)), sizes.get("word_bytes")
    except KeyError as e:
        raise SpecError(str(spec.workload), f"params.{e.args[0]}", "a GPU point needs this size") from None


def _canonical(value: Any) -> Any:
    """JSON-stable form: tuples as lists, integral floats as ints (so 2**23 and 8388608.0 key alike)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return _canonical(value.item())
    return value
