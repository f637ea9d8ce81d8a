"""A sweep over multi-device attention: the `parallel:` block of a sweep spec, its `parallel.<field>` axes, and each
point as one `archsim.systems.seqpar.parallel_time` run. Pure: specs in, records out.

The block names the base point by the fields of `ParallelSpec`: `scheme`, `devices`, `workload`, `seq_len` and
`topology` are required (a library name or a file beside the sweep for the workload and the topology); `gpu`,
`batch`, `causal`, `direction`, `scope`, `tp`, `ulysses`, `kernel`, `checkpointing` and `training_precision` are
optional and default as `ParallelSpec` does (the GPU: the topology's, as `archsim parallel` takes it; the training
settings, layer and fp32, set the fwd+bwd memory, and layer checkpointing also the time, its recomputed forward;
another value at another direction is a point's refusal). A field an axis sets (`parallel.devices: [1, 2]`)
is left out of the block, and a required one must then be an axis; giving a field in both places is refused, and
so is a value no point of the sweep models (`MODELLED`: `ulysses` without a usp point; a `kernel`, the softmax
schemes' prefill kernel, that no point runs, as a decode step runs Flash-Decoding and LASP's chunks Lightning
Attention-2; `causal: false` without a point at another direction than decode, whose one query attends every cached
token), and so is a usp point without a Ulysses degree in the block or an axis. A point goes without a value it
does not model: another scheme than usp has no Ulysses degree and a decode step is causal (its record says so, and
its key is that of its spelling without them), and a LASP or decode point records the kernel it runs
(`parallel_config`):

    parallel: {workload: llama3-8b, seq_len: 65536, topology: hgx-h100-8}
    axes: {parallel.scheme: [ring, zigzag, ulysses], parallel.devices: [1, 2, 4, 8]}

Checked at load, each problem a `SpecError` naming the sweep file and its YAML path: the block's keys; every value
of the block and of each axis (a scheme of `SCHEMES`, a direction, scope, kernel, checkpointing (layer, none) or
training precision (fp32, mixed) the model knows, `causal` true
or false, whole numbers >= 1 within ARCHSIM_MAX_SIZE for devices, seq_len, batch, tp and ulysses); and that every
workload, topology and GPU named exists. A point whose values together the scheme rejects (`check_spec`: P not
dividing the sequence or the heads, more devices than the topology has) is an infeasible record with the reason,
its field named as the sweep's (`parallel.seq_len`), not a load error; a workload whose attention no scheme times
(MLA's latent, a sliding window) is refused at load, as a `gpus:` block refuses it, and so is the block's workload
(every point's) where `archsim parallel` refuses it (a missing size, a word size other than bf16's, an
`ffn_word_bytes` that no GPU of the sweep computes: `_check_base_workload`); a workload an axis varies, or a GPU
another GPU of the sweep stands beside, is each point's, an infeasible record where it fails.

A record is `ParallelResult.record().flat()`: the generic columns (`latency_s` = time per layer, `energy_pj` =
the devices' board power x that time, area and DRAM traffic NaN) and the scheme's metrics (`PARALLEL_METRICS`),
which objectives and constraints may name; `efficiency` and `max_context_tokens` are maximised. A point's key
hashes the resolved spec (the workload's sizes, the GPU's and links' numbers, the scheme's fields) and the GPU
calibration's parameters, without file paths and citations, so the same configuration by any spelling is one
point; a training setting at its default (`TRAINING_FIELDS`) is left out of the key, so the settings alone do not
change a point's key (a changed calibration, like any input of the model, does: this release's refit of the archsim
family gave every parallel point a new key).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from archsim import library
from archsim.arch.gpu import GPU
from archsim.dse import block as sweep_block
from archsim.errors import SpecError
from archsim.model.gpu import refuse_unmodelled_attention
from archsim.model.gpu_kernels import KERNELS
from archsim.record import Record
from archsim.systems.links import load_gpu_with_host_link
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_compute import SOURCE
from archsim.systems.seqpar_spec import (
    CHECKPOINTING,
    DIRECTIONS,
    MODELLED,
    SCHEMES,
    SCOPES,
    TRAINING_FIELDS,
    TRAINING_PRECISIONS,
    ParallelSpec,
    check_workload,
    memory_modelled,
    unmodelled,
)
from archsim.systems.topology import Topology, load_topology

PARALLEL_ROOT = "parallel"
PARALLEL_METRICS = ("efficiency", "exposed_comm_s", "memory_bytes", "max_context_tokens", "comm_s", "compute_s",
                    "wait_s")
PARALLEL_MAXIMISED = ("efficiency", "max_context_tokens")
FIELDS = tuple(f.name for f in dataclasses.fields(ParallelSpec))
# of them, those that change the work (the model, its sequences, the pass timed), not the devices or the scheme
WORK = ("workload", "seq_len", "batch", "causal", "direction", "scope")
# no default in ParallelSpec; the GPU defaults to the topology's
REQUIRED = tuple(f.name for f in dataclasses.fields(ParallelSpec)
                 if f.default is dataclasses.MISSING and f.name != "gpu")
CHOICES = {"scheme": SCHEMES, "direction": DIRECTIONS, "scope": SCOPES, "kernel": tuple(KERNELS),
           "checkpointing": CHECKPOINTING, "training_precision": TRAINING_PRECISIONS}
# the fields that name a spec: the loader of each
NAMED: dict[str, Callable[[str], Any]] = {"workload": library.load_workload_spec, "topology": load_topology,
                                          "gpu": load_gpu_with_host_link}
DEFAULTS = {f.name: f.default for f in dataclasses.fields(ParallelSpec) if f.default is not dataclasses.MISSING}


def check_parallel_axis(path: str, source: str, where: str) -> str:
    """The field an axis `parallel.<field>` sets; a SpecError at `where` when it is not a ParallelSpec field."""
    return sweep_block.check_axis(path, PARALLEL_ROOT, FIELDS, source, where)


def check_parallel_value(name: str, value: Any, source: str, where: str) -> None:
    """A value of field `name` (the module docstring's rules); names of specs are checked by `load_targets`."""
    if sweep_block.check_choice_or_name(name, value, CHOICES, NAMED, source, where):
        return
    if name == "causal":
        if not isinstance(value, bool):
            raise SpecError(source, where, f"expected true or false, got {value!r}")
    else:
        sweep_block.check_whole(name, value, source, where)


def parallel_block(data: Any, source: str, axes: Mapping[str, Any]) -> dict[str, Any]:
    """The `parallel:` block of the sweep at `source`, checked against its `axes` (module docstring)."""
    sweep_block.check_block(data, PARALLEL_ROOT, FIELDS, REQUIRED, source, axes, check_parallel_value)
    _refuse_unmodelled(data, axes, source)
    _require_ulysses(data, axes, source)
    return dict(data)


def _require_ulysses(data: dict[str, Any], axes: Mapping[str, Any], source: str) -> None:
    """A SpecError at `parallel.ulysses` when a point of the sweep is usp and neither the block nor an axis gives
    the Ulysses degree: every usp point would be refused for want of it."""
    axis = f"{PARALLEL_ROOT}.ulysses"
    schemes = sweep_block.block_values(PARALLEL_ROOT, "scheme", data, axes)
    if "usp" in schemes and "ulysses" not in data and axis not in axes:
        raise SpecError(source, axis, "missing: usp needs the Ulysses degree (a divisor of devices): give it, or "
                                      f"the axis {axis}")


def _refuse_unmodelled(data: dict[str, Any], axes: Mapping[str, Any], source: str) -> None:
    """A SpecError for a value of a field (`MODELLED`) that no point of the sweep models: no scheme x direction of the
    block and the axes (`ParallelSpec`'s default when neither sets it). It names the block's path, the axis's when no
    value of the axis is modelled, else the first such value's."""
    def values(name: str) -> list[Any]:
        return sweep_block.block_values(PARALLEL_ROOT, name, data, axes, [DEFAULTS.get(name)])

    points = [(scheme, direction) for scheme in values("scheme") for direction in values("direction")]
    for name, (_, what) in MODELLED.items():
        axis = f"{PARALLEL_ROOT}.{name}"
        if name not in data and axis not in axes:
            continue
        refused = unmodelled(name, values(name), points)
        if refused:
            where = sweep_block.block_where(PARALLEL_ROOT, name, data,
                                            None if len(refused) == len(values(name)) else refused[0])
            raise SpecError(source, where, f"{values(name)[refused[0]]!r} sets {what}, which no point models "
                                           f"(scheme {', '.join(values('scheme'))} at direction "
                                           f"{', '.join(values('direction'))}): drop it")


class ParallelTargets(sweep_block.BlockTargets):
    """What a parallel sweep's points are built from (`BlockTargets`): its specs are each workload, topology and
    GPU the sweep names."""

    def spec(self, fields: Mapping[str, Any]) -> ParallelSpec:
        """The ParallelSpec of a point with `fields` (its `parallel.` axis values) over the block, without a value
        the point does not model (`MODELLED`: another scheme's Ulysses degree, a decode step's non-causal mask, the
        kernel LASP or a decode step does not run, each its default)."""
        values = sweep_block.block_fields(PARALLEL_ROOT, self.block, fields)
        values = {name: value for name, value in values.items() if _models(name, values)}
        named = {name: self.specs[name][values[name]] for name in NAMED if name in values}
        topology: Topology = named["topology"]
        gpu: GPU = named.get("gpu", topology.gpu)
        return ParallelSpec(**{**values, **named, "gpu": gpu})


def parallel_point(block: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """A point's axis values, NaN for an axis over a value the point does not model (`block.applying_point`,
    `MODELLED`: a ring point of a `parallel.ulysses` axis, a decode step of `parallel.causal` false), as a sparse
    sweep's point of a setting its method does not take."""
    return sweep_block.applying_point(PARALLEL_ROOT, block, point, _models)


def _models(name: str, fields: Mapping[str, Any]) -> bool:
    """Whether a point of `fields` models field `name`'s value (`MODELLED`; every other field it does): not a NaN,
    an axis value that does not apply (`parallel_point`), and one its scheme at its direction runs."""
    if name not in MODELLED:
        return True
    value = fields[name]
    if isinstance(value, float) and math.isnan(value):
        return False
    return MODELLED[name][0](fields["scheme"], fields.get("direction", DEFAULTS["direction"]), value)


def load_targets(block: dict[str, Any], axes: Mapping[str, list[Any]], source: str) -> ParallelTargets:
    """Load every workload, topology and GPU that the block or an axis of the sweep at `source` names; one that
    is not found is a SpecError at its YAML path; a workload whose attention no scheme times is refused there."""
    def check(field: str, name: str, spec: Any, where: str) -> None:
        if field == "workload":  # an attention no scheme times: every point would be refused
            refuse_unmodelled_attention(spec.params, source, lambda size: where,
                                        f"workload {name!r}: the schemes here time dense multi-head or "
                                        "grouped-query attention; drop it")

    specs = sweep_block.load_specs(NAMED, PARALLEL_ROOT, block, axes, source, check)
    _check_base_workload(block, axes, specs)
    return ParallelTargets(dict(block), specs, sweep_block.calibration_params())


def _check_base_workload(block: Mapping[str, Any], axes: Mapping[str, list[Any]],
                         specs: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse the block's workload, every point's, as `archsim parallel` refuses it before its grid
    (`seqpar_spec.check_workload`: a missing size, a word size other than bf16's, an `ffn_word_bytes` the GPU does
    not compute), with the memory model's sizes where every point of the sweep has its memory modelled
    (`memory_modelled` at each direction, tp and device the sweep takes) and the layer's where every point is of
    scope layer: an error every point would meet, not a sweep of infeasible rows. The GPU's check is each device
    the sweep takes (`block.refuse_on_every`: the block's or each of a gpu axis, else each topology's), refused where
    every one refuses. Assumes at least one device: the topology is required. A workload an axis varies is each
    point's, checked there."""
    if "workload" not in block:
        return

    def values(name: str) -> list[Any]:
        return sweep_block.block_values(PARALLEL_ROOT, name, block, axes, [DEFAULTS.get(name)])

    gpus = sweep_block.block_values(PARALLEL_ROOT, "gpu", block, axes)
    devices = [specs["gpu"][name] for name in gpus] or [specs["topology"][name].gpu for name in values("topology")]
    memory = all(memory_modelled(direction, tp, device) for direction in values("direction")
                 for tp in values("tp") for device in devices)
    layer = all(scope == "layer" for scope in values("scope"))
    workload = specs["workload"][block["workload"]]
    sweep_block.refuse_on_every(lambda device: check_workload(workload, memory, layer, device), devices)


def parallel_config(targets: ParallelTargets, spec: ParallelSpec) -> dict[str, Any]:
    """What a point's key hashes: the resolved spec without files and prose, and the calibration; a training
    setting at its default is left out (module docstring), and the kernel is the one the scheme's attention runs
    (`ParallelSpec.attention_kernel`: LASP's chunks run theirs whatever `kernel` says, so a LASP point under two
    kernels is one point)."""
    fields = {name: value for name, value in dataclasses.asdict(spec).items()
              if not (name in TRAINING_FIELDS and value == TRAINING_FIELDS[name])}
    return {"parallel": sweep_block.without_text({**fields, "kernel": spec.attention_kernel}),
            "calibration": targets.calibration}


def parallel_record(targets: ParallelTargets, fields: Mapping[str, Any], source: str) -> Record:
    """The record of the point with `fields`. A spec the scheme rejects raises the SpecError, a field of the spec
    named as the sweep's (`parallel.seq_len` of `source`), for the caller to record."""
    try:
        return parallel_time(targets.spec(fields)).record()
    except SpecError as exc:
        if exc.source == SOURCE and exc.where in FIELDS:
            raise SpecError(source, f"{PARALLEL_ROOT}.{exc.where}", exc.message) from None
        raise
