"""A point of a sweep over a system (`archsim.dse.serving_spec`): the system with the point's fields set, serving
the sweep's requests. Pure: specs and requests in, metrics out.

The run: `with_fields(system, the point's system. values)`, `system_model(system, workload)`, and
`simulate_serving(model, requests, ServingConfig(max_batch=..., max_prefill_tokens=...))` with every other
scheduler knob at `ServingConfig`'s vLLM defaults. The requests are the sweep's one seeded Poisson stream, the same
for every point.

Metrics. The generic columns every target writes (`METRICS`), so that the store, the summary and the report read a
system point as any other:
- `latency_s` = the p99 time between tokens (TBT), the serving SLO a user sees (a serving run has no single
  iteration time: its iterations differ in batch and context);
- `energy_pj` = the energy per output token, in pJ;
- `area_um2` and `dram_traffic_bytes` = NaN: the system devices model no die area, and the serving run does not
  count DRAM traffic;
- `edp` = latency_s x energy_pj.
The serving metrics (`SERVING_METRICS`) beside them: `throughput_tok_s`, `energy_per_token_j`, TTFT and TBT p50
and p99, and `cost_per_token_usd`; and as extras the makespan, output tokens, iterations, preemptions and the
utilization of every unit (`utilization.<unit>`).

Cost per token: the model's `price_per_hour` (`SystemModel`: TP x PP ranks, each with one device of every kind of
the spec, as the system model counts energy; `OffloadModel`: every device of the two pools) x the makespan in
hours, shared by the output tokens. NaN when a device has no price (a sweep that names the metric is refused at
load then).

A point is infeasible, a record with its reason, when its values together make no valid system, the workload
cannot run on it (`system_model`: parallelism, weights beyond a device's memory), the weights leave no memory for
the KV cache, a request can never fit the KV cache, or a request asks for a prefill the system cannot run (an
`UnrunnableOp`: eager attention's scores beyond the memory a GPU's weights leave; the reason names the shortest
such prefill). The simulator rejects such requests; the throughput would be over fewer requests than the other
points'. With `serving.alpha` it is also infeasible where its link carries less than BW_min at the run's most
demanding decode iteration (`simulate --alpha`'s check and reason, `offload.peak_batch_link_feasibility`), where
it is no attention-offloading system (alpha is read by none other), where no request decoded a second token (BW_min
is a decode batch's), and where alpha is too small for a finite BW_min.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from archsim.dse.serving_spec import SERVING_ROOT, SYSTEM_ROOT, ServingSettings
from archsim.errors import SpecError
from archsim.record import Record
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, peak_batch_link_feasibility
from archsim.systems.requests import Request
from archsim.systems.serving import IterationRecord, ServingConfig, simulate_serving
from archsim.systems.system_spec import with_fields
from archsim.systems.system_types import System
from archsim.workload import Workload


def system_changes(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The `with_fields` changes of a point's fields: its `system.` paths, the prefix dropped."""
    prefix = f"{SYSTEM_ROOT}."
    return {p.removeprefix(prefix): v for p, v in fields.items() if p.startswith(prefix)}


def max_batch(settings: ServingSettings, fields: Mapping[str, Any]) -> int:
    """The point's batch: its serving.max_batch value, else the serving block's."""
    return int(fields.get(f"{SERVING_ROOT}.max_batch", settings.max_batch))


def max_prefill_tokens(settings: ServingSettings, fields: Mapping[str, Any]) -> int | None:
    """The point's prefill budget: its serving.max_prefill_tokens value, else the serving block's (None: none)."""
    return fields.get(f"{SERVING_ROOT}.max_prefill_tokens", settings.max_prefill_tokens)


def serving_config(settings: ServingSettings, fields: Mapping[str, Any]) -> ServingConfig:
    """The scheduler a point serves with: its batch and prefill budget, every other knob at `ServingConfig`'s."""
    return ServingConfig(max_batch=max_batch(settings, fields), max_prefill_tokens=max_prefill_tokens(settings, fields))


def system_config(system: System, workload: Workload, settings: ServingSettings,
                  fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a point's key hashes: the system spec as the point sets it, its devices and links as loaded with the
    point's values set (a preset file edited since, the base's or one an axis names, is another point,
    `system_content`; a point whose values the spec refuses, on why), the workload and the serving run."""
    config, changes = serving_config(settings, fields), system_changes(fields)
    try:
        resolved = system_content(with_fields(system, changes) if changes else system)
    except SpecError as refused:  # an infeasible point (its record says why): keyed on why, which an edit changes
        resolved = {"refused": str(refused)}
    return {"system": dict(system.data), "resolved": resolved, "changes": changes,
            "workload": workload.name, "workload_params": dict(workload.params), "block": workload.block,
            "serving": {"rate_per_s": settings.rate_per_s, "requests": settings.requests,
                        "lengths": settings.lengths, "seed": settings.seed, "max_batch": config.max_batch,
                        "max_prefill_tokens": config.max_prefill_tokens,
                        **({} if settings.alpha is None else {"alpha": settings.alpha})}}


def system_content(system: System) -> dict[str, Any]:
    """The system's devices and links as its points compute them: each device's and link's fields, the specs its
    preset files gave included, without the files' paths (where a file lies, not what it says), as plain values."""
    return {"devices": _content(system.devices), "links": _content(system.links)}


def _content(value: Any) -> Any:
    """A loaded spec as plain values: a dataclass as its compared fields but `source`, mappings and sequences as
    dicts and lists, numbers, words and None as they are, anything else as its repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _content(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.compare and f.name != "source"}
    if isinstance(value, Mapping):
        return {str(key): _content(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_content(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def serve_point(system: System, workload: Workload, requests: tuple[Request, ...], settings: ServingSettings,
                fields: Mapping[str, Any]) -> Record:
    """The record of the point with `fields`: the module docstring's run. A SpecError (values the system spec
    refuses, a workload the system cannot run) is the caller's to record."""
    model = system_model(with_fields(system, system_changes(fields)), workload)
    if model.kv_capacity_bytes <= 0:
        return _infeasible(model.name, f"the weights leave no memory for the KV cache on {model.name}")
    if settings.alpha is not None and not isinstance(model, OffloadModel):
        return _infeasible(model.name, f"serving.alpha is read only by an attention-offloading system (a ping-pong "
                                       f"or staggered schedule), which {model.name} is not")
    result = simulate_serving(model, requests, serving_config(settings, fields), trace=settings.alpha is not None)
    record = result.record(model.price_per_hour)
    reason = "" if settings.alpha is None else _link_reason(model, result.timeline, settings.alpha)
    if not reason:
        return record
    return dataclasses.replace(record, feasible=False, reason="; ".join(r for r in (record.reason, reason) if r))


def _link_reason(model: OffloadModel, timeline: Sequence[IterationRecord], alpha: float) -> str:
    """Why the served run's link fails BW_min at `alpha` (`simulate --alpha`'s check), "" when it meets it."""
    try:
        link = peak_batch_link_feasibility(model, timeline, alpha)
    except SpecError as error:  # no decode to check, or no finite BW_min
        return f"serving.alpha: {error.message}"
    return link.reason if not link.feasible else ""


def _infeasible(target: str, reason: str) -> Record:
    return Record("serving", target, False, reason, math.nan, math.nan)
