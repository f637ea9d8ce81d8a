"""A sweep over a system: the serving run each of its points is, as data, and the checks made when it is loaded.

A sweep that names `system:` (a system preset, e.g. `neupims`, or a system YAML; `archsim.systems.system_spec`) and
`workload:` (a library workload that names its decoder block) is a sweep of serving runs. A point is the system with the
point's `system.<dotted path>` values set (`with_fields`, e.g. `system.devices.pim.channels`,
`system.schedule.sub_batches`, `system.links.tp.bytes_per_s_per_direction`: a link the system names by preset is written
inline with the preset's fields, one of them changed), running the workload as the serving simulator's iteration model
over the request stream its serving settings give (`archsim.dse.system_points`). An axis value is a number, a word or
true/false, as the field takes, or a file's path (`system.devices.gpu.preset: [h100-sxm5, ./slow-h100.yaml]`), a
relative one taken from the sweep file's folder as a trace's is (`system_changes`; a path the system file writes
stays relative to that file). Fields that must move together (a device count and the parallel degree it must equal: a
memory pool's `count` and `parallelism.attention_pool`, an offloading system's compute `count` and `parallelism.tp` x
replicas) are one linked axis (`archsim.dse.spec`), whose templates set `system.` fields from each of its values (what
the system spec checks is checked at load; what needs the workload, tp x replicas and the pool dividing the KV heads,
when each point is built: an infeasible record with the reason):

    linked.memory_gpus:
      values: [2, 4, 8]
      set: {system.devices.memory.count: memory_gpus, system.parallelism.attention_pool: memory_gpus}

The stream and the scheduler's batch are the `serving:` block, every key required (no defaults to guess):

    serving: {rate_per_s: 2000.0, requests: 300, lengths: alpaca, seed: 0, max_batch: 256}

`lengths` is a preset of `archsim.systems.requests.LENGTH_PRESETS`, whose lengths a seeded Poisson stream of
`rate_per_s` arrivals draws, or the path of a trace (`.csv`, `arrival_s,prompt_tokens,output_tokens` or Azure's
columns; `.jsonl`, Mooncake's: `read_trace`; either suffix in any case; a relative path taken from the sweep file's
folder), whose requests are served as `simulate --trace` reads them: its arrivals and lengths (where every lengths
value is a trace, the block takes no rate, count or seed, as they would not be read).
`max_batch` (the most requests in one iteration), `lengths` and `rate_per_s` may each be an axis instead
(`serving.max_batch`, `serving.lengths`, `serving.rate_per_s`), and are then left out of the block: each point serves
the stream its lengths and rate give (a model x trace grid, a load sweep; a rate axis beside a trace is refused: a
trace's points do not read it). One key is optional: `max_prefill_tokens`, the most prompt tokens an iteration prefills
(a longer prompt runs alone); without it there is no budget (`ServingConfig`'s default, Orca's: the memory of a GPU
still bounds an iteration); it may be an axis too, `serving.max_prefill_tokens`. Another is `batching` (`simulate
--batching`, `archsim.systems.serving.BATCHING`): `mixed` (the default, Orca's selective batching: prompts prefill
beside the decodes) or `prefill-first` (vLLM v0's scheduler without chunked prefill, whose max_num_batched_tokens
the budget then is: an iteration that admits a prompt runs only prefills, the decodes waiting); an axis too,
`serving.batching`. Another is `alpha`, Lamina's allowed network overhead (`simulate --alpha`, a number > 0):
each point's link is checked against BW_min at its served run's most demanding decode iteration
(`archsim.systems.offload.peak_batch_link_feasibility`), a link below it an infeasible record with the reason, so a
sweep of `system.links.attention.bytes_per_s_per_direction` is a BW_min study; a sweep none of whose points is an
attention-offloading system (a ping-pong or staggered schedule, in the system or an axis value) is refused at load
naming `serving.alpha`, and where an axis sets the schedule, a point it leaves without offloading is infeasible saying
so; without it no link is checked. No other `serving.` path is an axis (the page size and the watermark stay at
`ServingConfig`'s vLLM defaults).

Checked at load, each problem a `SpecError` naming the sweep file and its YAML path: the system and the workload exist;
the serving block; each `system.` axis path is a field of the system and each of its values, set alone (the fields of a
linked axis's value together), is one the system spec accepts (`with_fields` validates the spec again; the message names
the field the spec refuses where the YAML path does not); `serving.max_batch` and `serving.max_prefill_tokens`
values are whole numbers >= 1 within the size limit (ARCHSIM_MAX_SIZE), `serving.batching` values names of `BATCHING`,
`serving.rate_per_s` values finite numbers > 0 and `serving.lengths` values presets or traces that `read_trace` and
`check_requests` accept; a sweep that names `cost_per_token_usd` (an objective or a constraint) has a `price_per_hour`
on every device of the system, in the file or set by an axis; and one that names an energy metric (`ENERGY_METRICS`, the
default objectives' `energy_pj` among them) has no chip without a `power_w`, whose energy is unknown. Points whose
values together cannot be built, or whose weights do not fit, are infeasible records with their reason, not load
errors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from archsim import library
from archsim.dse.once import check_set_once
from archsim.errors import LimitError, SpecError, UnknownField, check_keys, kind_of
from archsim.spec_files import beside, is_spec_path
from archsim.systems.requests import LENGTH_PRESETS, TRACE_COLUMNS, check_request_count, check_requests, read_trace
from archsim.systems.serving import BATCHING, COST_METRIC, DEFAULT_BATCHING
from archsim.systems.system_spec import PRESETS_PACKAGE, load_system, names_file, repriced_devices, with_fields
from archsim.systems.system_types import OFFLOAD_SCHEDULES, System, board_power_w
from archsim.workload import Workload, max_size, size_limit_problem

SYSTEM_ROOT, SERVING_ROOT = "system", "serving"
SERVING_AXES = ("serving.max_batch", "serving.max_prefill_tokens", "serving.batching", "serving.lengths",
                "serving.rate_per_s")
WORK = ("lengths", "rate_per_s")  # of the axes' fields, those that change the requests served, not the engine
AXIS_KEYS = ("rate_per_s", "lengths", "max_batch")  # keys of the block that an axis may give instead
# How a lengths value that is a trace's path is told from a length preset's name: by these suffixes, in any case
# (`up.JSONL`; the trace's format, CSV or JSON Lines, is then told by its content, `read_trace`). By the name alone,
# not by a file being there: what a value is never depends on the folder a check runs in, and a preset's name
# misspelt is not read as a file of that name.
TRACE_SUFFIXES = (".csv", ".jsonl")
SERVING_KEYS = ("rate_per_s", "requests", "lengths", "seed", "max_batch")
POISSON_KEYS = ("rate_per_s", "requests", "seed")  # read by a length preset's Poisson stream, not by a trace
# absent: no prefill budget (ServingConfig's, Orca's); the mixed batching; no link checked against BW_min
OPTIONAL_SERVING_KEYS = ("max_prefill_tokens", "batching", "alpha")
ENERGY_METRICS = ("energy_pj", "edp", "energy_per_token_j")  # objectives and constraints that need every energy


@dataclass(frozen=True)
class ServingSettings:
    """The requests every point of a system sweep serves, and its batch, when no axis sets them."""

    rate_per_s: float | None  # Poisson arrivals per second; None: its axis sets it, or every point serves a trace
    requests: int | None  # None: every point serves a trace (as `seed`)
    lengths: str | None  # a name of LENGTH_PRESETS or a trace's path, as written; None: its axis sets it
    seed: int | None
    max_batch: int | None  # None: the serving.max_batch axis sets it
    max_prefill_tokens: int | None = None  # the most prompt tokens an iteration prefills; None: no budget (or its axis)
    alpha: float | None = None  # Lamina's network overhead the link may add (BW_min); None: the link is not checked
    batching: str = DEFAULT_BATCHING  # a name of BATCHING (or its axis)


def serving_settings(data: Any, source: str, axes: dict[str, list[Any]]) -> ServingSettings:
    """The `serving:` block of the sweep at `source`; `rate_per_s`, `lengths` and `max_batch` are required unless
    `axes` has their axis, and where every lengths value is a trace, `rate_per_s`, `requests` and `seed`
    (`POISSON_KEYS`) are not read and refused if given."""
    if not isinstance(data, dict):
        raise SpecError(source, "serving", f"expected a mapping with {', '.join(SERVING_KEYS)}, got {kind_of(data)}")
    check_keys(data, (*SERVING_KEYS, *OPTIONAL_SERVING_KEYS), source, "serving")
    check_set_once([*((f"serving.{key}",) * 2 for key in data), *((a, f"axes.{a}") for a in axes)], source)
    by_axis = {key for key in AXIS_KEYS if f"serving.{key}" in axes}
    if "lengths" not in data and "lengths" not in by_axis:
        raise SpecError(source, "serving.lengths", "missing (or give the axis serving.lengths)")
    lengths = None if "lengths" in by_axis else request_lengths(data["lengths"], source, "serving.lengths")
    traces = [is_trace(v) for v in axes.get("serving.lengths", [lengths])]
    traces_only = all(traces)
    if "rate_per_s" in by_axis and any(traces):
        raise SpecError(source, "axes.serving.rate_per_s", "not read by a trace's points (the trace gives the "
                                                           "arrivals): sweep the rate over length presets alone")
    for key in SERVING_KEYS:
        if traces_only and key in POISSON_KEYS and key in data:
            raise SpecError(source, f"serving.{key}", "not read: every point serves a trace, whose arrivals and "
                                                      "lengths it gives (remove it)")
        if key not in data and key not in by_axis and not (traces_only and key in POISSON_KEYS):
            raise SpecError(source, f"serving.{key}", "missing" + (f" (or give the axis serving.{key})"
                                                                   if key in AXIS_KEYS else ""))
    rate = None if "rate_per_s" in by_axis or traces_only else arrival_rate(data["rate_per_s"], source,
                                                                             "serving.rate_per_s")
    requests = None if traces_only else _whole(data["requests"], source, "serving.requests", 1)
    if requests is not None:
        check_request_count(requests, source, "serving.requests")
    budget, alpha = data.get("max_prefill_tokens"), data.get("alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, int | float)
                              or not (math.isfinite(alpha) and alpha > 0)):
        raise SpecError(source, "serving.alpha", f"expected a network overhead > 0 and finite (Lamina's alpha, "
                                                 f"e.g. 0.2), got {alpha!r}")
    batch = None if "max_batch" in by_axis else _size(data["max_batch"], source, "serving.max_batch")
    seed = None if traces_only else _whole(data["seed"], source, "serving.seed", 0)
    return ServingSettings(rate, requests, lengths, seed, batch,
                           None if budget is None else _size(budget, source, "serving.max_prefill_tokens"),
                           None if alpha is None else float(alpha),
                           serving_batching(data.get("batching", DEFAULT_BATCHING), source, "serving.batching"))


def check_serving_axis(path: str, value: Any, source: str, where: str) -> None:
    """A `serving.` axis is one of `SERVING_AXES`, each value (at `where`) a rate (`arrival_rate`), lengths
    (`request_lengths`), a batching (`serving_batching`) or a size (`_size`: the batch, the prefill budget);
    another path is refused at its axis (`axes.<path>`), not at a value."""
    if path not in SERVING_AXES:
        raise SpecError(source, f"axes.{path}", f"a serving axis is one of {', '.join(SERVING_AXES)}")
    if path == "serving.rate_per_s":
        arrival_rate(value, source, where)
    elif path == "serving.lengths":
        request_lengths(value, source, where)
    elif path == "serving.batching":
        serving_batching(value, source, where)
    else:
        _size(value, source, where)


def arrival_rate(value: Any, source: str, where: str) -> float:
    """A Poisson rate (requests per second): a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise SpecError(source, where, f"expected a positive number of requests per second, got {value!r}")
    return float(value)


def serving_batching(value: Any, source: str, where: str) -> str:
    """A scheduler's policy: a name of `BATCHING` (`simulate --batching`)."""
    if not isinstance(value, str) or value not in BATCHING:
        raise SpecError(source, where, f"expected {' or '.join(BATCHING)}, got {value!r}")
    return value


def is_trace(lengths: Any) -> bool:
    """Whether a lengths value names a trace file (`TRACE_SUFFIXES`, in any case) rather than a length preset."""
    return isinstance(lengths, str) and lengths not in LENGTH_PRESETS and lengths.lower().endswith(TRACE_SUFFIXES)


def trace_path(lengths: str, source: str) -> Path:
    """The file of a trace that the sweep at `source` names: a relative path from the sweep file's folder."""
    return beside(lengths, source)


def request_lengths(value: Any, source: str, where: str) -> str:
    """A lengths value, as written: a name of `LENGTH_PRESETS`, or a trace's path whose requests `read_trace`
    and `check_requests` accept (read here, so that a missing or malformed trace is refused at load, its problem
    after the trace's path)."""
    if isinstance(value, str) and value in LENGTH_PRESETS:
        return value
    if not is_trace(value):
        raise SpecError(source, where, f"expected one of {', '.join(LENGTH_PRESETS)} or a trace's path "
                                       f"(*.csv: {','.join(TRACE_COLUMNS)} or Azure's; *.jsonl: Mooncake's), got "
                                       f"{value!r}" + (", a file, but a trace's file must end in .csv or .jsonl "
                                                       "(rename it)" if _names_a_file(value, source) else ""))
    try:
        check_requests(read_trace(trace_path(value, source)), value)
    except SpecError as refused:
        raise SpecError(source, where, f"{refused}") from None
    return value


def _names_a_file(value: Any, source: str) -> bool:
    """Whether a lengths value that is neither a preset nor a trace's path names a file beside the sweep at
    `source` (its refusal then says what a trace's name must end in)."""
    try:
        return isinstance(value, str) and value != "" and trace_path(value, source).is_file()
    except (OSError, ValueError):  # a name the OS refuses (too long) names no file to rename
        return False


def _whole(value: Any, source: str, where: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise SpecError(source, where, f"expected a whole number >= {least}, got {value!r}")
    return value


def _size(value: Any, source: str, where: str) -> int:
    """A batch or a prefill budget: a whole number >= 1 within the size limit (`max_size`, ARCHSIM_MAX_SIZE), as
    a workload's batch and tokens are (`simulate --max-batch` and `--max-prefill-tokens` take the same)."""
    problem = size_limit_problem(_whole(value, source, where, 1), max_size())
    if problem:
        raise LimitError(source, where, problem)
    return value


def find_system(name_or_path: str, source: str) -> Path:
    """The file of the system the sweep at `source` names (a preset name or a path); a SpecError at `system`."""
    try:
        return library.find("system presets", name_or_path, PRESETS_PACKAGE)
    except SpecError as exc:
        raise SpecError(source, "system", f"{name_or_path!r}: {exc.message}") from None


def load_system_target(system: str, workload: str, source: str) -> tuple[System, Workload]:
    """The system and the workload a system sweep at `source` names."""
    return (load_system(find_system(system, source)),
            library.load_workload_spec(library.find_named("workloads", workload, source, "workload")))


SYSTEM_DEGREES = ("attention_pool", "cp")  # parallelism keys every by_workload entry takes from the top level


def _read_parallelism(field: str, entry: str) -> bool:
    """Whether the parallelism field `field` (`parallelism.pp`, `parallelism.by_workload.W.pp`) is read by a workload
    whose degrees are at `entry` (`System.parallelism_path`): a top-level degree without an entry, the entry's own
    fields with one, and the entries as a whole (an axis of whole `by_workload` maps replaces them). The system's
    own degrees (`SYSTEM_DEGREES`: the attention pool, the context-parallel degree) are read whatever the entry."""
    if field == "parallelism.by_workload" or field.removeprefix("parallelism.") in SYSTEM_DEGREES:
        return True
    if entry == "parallelism":
        return not field.startswith("parallelism.by_workload.")
    return field == entry or field.startswith(f"{entry}.")


def check_system_axes(system: System, axes: dict[str, list[Any]], objectives: tuple[str, ...],
                      constrained: tuple[str, ...], source: str, workload_name: str,
                      linked: Mapping[str, list[Mapping[str, Any]]] = MappingProxyType({}),
                      alpha: float | None = None) -> None:
    """Each `system.` axis value, set alone, and the `system.` fields of each value of a linked axis (`linked`: a
    linked axis's path -> the fields each of its values sets, `SweepSpec.fields`), set together, are ones `system`
    accepts (a path that is no field of it, an `UnknownField`, blamed on its axis or linked template, a value's
    refusal on the value); an axis of the top-level parallelism is read (not shadowed by the workload's
    `parallelism.by_workload` entry, whose degrees the workload runs at); the cost metric, if an objective or a
    constraint names it, has every device's price; and `serving.alpha` (`alpha`, None where not given) is read: the
    system, or an axis value of it, has an attention-offloading schedule (`OFFLOAD_SCHEDULES`), else no point would
    check its link (where an axis sets the schedule, the points it leaves without one are infeasible records saying
    so, `system_points.serve_point`)."""
    settings = [(f"axes.{path}[{i}]", {path: value}) for path, values in axes.items()
                if path.startswith(f"{SYSTEM_ROOT}.") for i, value in enumerate(values)]
    settings += [(f"axes.{path}.values[{i}]", fields) for path, each in linked.items() for i, fields in enumerate(each)]
    entry, fields_set = system.parallelism_path(workload_name), _system_fields(axes, linked)
    for field, where in fields_set.items():
        if field.startswith("parallelism.") and not _read_parallelism(field, entry):
            top = not field.startswith("parallelism.by_workload.")
            instead = f"; sweep {SYSTEM_ROOT}.{entry}.{field.removeprefix('parallelism.')} instead" if top else ""
            raise SpecError(source, where, f"never read: {workload_name} runs at the degrees of "
                                           f"{system.source}'s {entry}{instead}")
    seen: set[str] = set()
    schedules = {system.schedule.kind}
    changed = [(where, system_changes(fields, source)) for where, fields in settings]  # each setting's, once
    for where, changes in changed:
        if json.dumps(changes) in seen:
            continue
        seen.add(json.dumps(changes))
        try:
            schedules.add(with_fields(system, changes).schedule.kind)
        except SpecError as exc:
            if exc.where in fields_set and isinstance(exc, UnknownField):  # the axis's key, whatever its value
                raise SpecError(source, fields_set[exc.where], exc.message) from None
            raise SpecError(source, where, _naming_field(exc, where)) from None
    if alpha is not None and not schedules & set(OFFLOAD_SCHEDULES):
        raise SpecError(source, "serving.alpha", f"read only by an attention-offloading system (a "
                                                 f"{' or '.join(OFFLOAD_SCHEDULES)} schedule), which no point is: "
                                                 f"{system.source}'s schedule.kind is {system.schedule.kind}"
                                                 f"{' and no axis value sets one' if settings else ''} "
                                                 "(remove serving.alpha)")
    _check_energy_metrics(system, objectives, constrained, source, axes)
    named = _naming(objectives, constrained, (COST_METRIC,))
    if named:
        for device in system.devices.values():
            if device.price_per_hour is None and f"devices.{device.name}.price_per_hour" not in fields_set:
                raise SpecError(source, named[0], f"{COST_METRIC} needs a price for every device: "
                                                  f"{system.source} has no devices.{device.name}.price_per_hour "
                                                  "(USD per device-hour)")
        for where, changes in changed:
            for name in repriced_devices(system.data, changes, system.source):
                if f"devices.{name}.price_per_hour" not in fields_set:
                    raise SpecError(source, where, f"{COST_METRIC} ({named[0]}) needs each device's price: this "
                                                   f"value sets devices.{name}.preset, and {system.source}'s "
                                                   f"devices.{name}.price_per_hour is the price of its own preset "
                                                   f"(sweep the price too, or give each device its own system "
                                                   "file with its price)")


def _check_energy_metrics(system: System, objectives: tuple[str, ...], constrained: tuple[str, ...], source: str,
                          axes: Mapping[str, list[Any]]) -> None:
    """An energy objective or constraint (`ENERGY_METRICS`) needs a device's energy: a chip without a power figure
    (`power_w`, `system_types.board_power_w` NaN) has none, so every point's energy would be unknown and the front
    empty. Refused naming the objective or constraint and the device, unless an axis over that device's preset
    gives it one with a power (each value checked as the system spec loads it)."""
    named = _naming(objectives, constrained, ENERGY_METRICS)
    if not named:
        return
    for device in system.devices.values():
        path = f"devices.{device.name}.preset"
        axis = f"{SYSTEM_ROOT}.{path}"
        choices = [with_fields(system, system_changes({axis: v}, source)).devices[device.name]
                   for v in axes.get(axis, [])]
        if all(_energy_unknown(d) for d in [device, *choices]):
            raise SpecError(source, named[0], f"energy is not modelled on {system.source}'s devices.{device.name} "
                                              f"({device.spec.name} gives no power_w"
                                              f"{', nor does any preset its axis sets' if choices else ''}), so no "
                                              "point would have one: name objectives and constraints without energy "
                                              "(a sweep without objectives: takes latency_s and energy_pj)")


def system_changes(fields: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The `with_fields` changes of the fields a point, an axis value or a linked axis's value sets in the sweep at
    `source`: its `system.` paths, the prefix dropped, each value as `_from_sweep` takes it."""
    prefix = f"{SYSTEM_ROOT}."
    return {p.removeprefix(prefix): _from_sweep(p.removeprefix(prefix), v, source)
            for p, v in fields.items() if p.startswith(prefix)}


def _from_sweep(field: str, value: Any, source: str) -> Any:
    """The value of the system's `field` (a dotted path) written in the sweep at `source`: a file's path
    (`is_spec_path`) in a field that names a file (`system_spec.names_file`: a device's `preset` or `mapping`, a
    link) is taken from the sweep file's folder as a trace's is (`beside`; the working folder's for a sweep not
    read from a file) and made absolute, since `with_fields` would take a relative path from the system file's
    folder (where a path the system file writes is taken from); a library name, and any other value (a kernel's
    name with a slash), as written. The point keeps the value as written; its key hashes the system it resolves."""
    if not names_file(field) or not isinstance(value, str) or not is_spec_path(value):
        return value
    return str(beside(value, source).absolute())


def _naming(objectives: tuple[str, ...], constrained: tuple[str, ...], metrics: tuple[str, ...]) -> list[str]:
    """The YAML paths of the objectives, then the constraints, that name one of `metrics`."""
    return ([f"objectives[{i}]" for i, name in enumerate(objectives) if name in metrics]
            + [f"constraints[{i}]" for i, name in enumerate(constrained) if name in metrics])


def _energy_unknown(device: Any) -> bool:
    """Whether a device's energy is unknown: a board-powered one without a power figure."""
    power = board_power_w(device)
    return power is not None and math.isnan(power)


def _naming_field(error: SpecError, where: str) -> str:
    """The message of `error`, the system spec's refusal of the axis value at `where` (the sweep's YAML path), with
    the field it blames unless `where` is that field's axis (a count that no longer matches the degree an axis
    sets; a linked axis's value, which sets several)."""
    if not error.where or where.startswith(f"axes.{SYSTEM_ROOT}.{error.where}["):
        return error.message
    return f"{error.where}: {error.message}"


def _system_fields(axes: dict[str, list[Any]], linked: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, str]:
    """The system fields the axes set (`devices.pim.channels`, the `system.` prefix dropped), each -> the YAML path
    that sets it: its axis, or a linked axis's template (`axes.linked.dop.set.system.devices.memory.count`)."""
    prefix = f"{SYSTEM_ROOT}."
    out = {path.removeprefix(prefix): f"axes.{path}" for path in axes if path.startswith(prefix)}
    for path, each in linked.items():  # every value of a linked axis sets the same fields, its templates'
        out.update({field.removeprefix(prefix): f"axes.{path}.set.{field}" for field in each[0]
                    if field.startswith(prefix)})
    return out
