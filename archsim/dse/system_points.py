"""A point of a sweep over a system (`archsim.dse.serving_spec`): the system with the point's fields set, serving
the requests its serving settings give. Pure: specs and requests in, metrics out.

The run: `with_fields(system, the point's system. values)`, `system_model(system, workload)`, and
`simulate_serving(model, requests, ServingConfig(max_batch=..., max_prefill_tokens=..., mix_prefill_decode=...))`
(the last from the point's batching, `serving.BATCHING`) with every other scheduler knob at `ServingConfig`'s vLLM
defaults. The requests are the stream of the point's lengths and rate
(`stream`, `request_stream`: its `serving.lengths` and `serving.rate_per_s` values, else the serving block's): the
seeded Poisson stream of a length preset at that rate, the same seed for every point, or a trace as read.

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
utilization of every unit (`utilization.<unit>`). With `serving.alpha` on an attention-offloading system, the link
check's numbers at the run's most demanding decode iteration, as `simulate --alpha --json` prints them under `link`
(`offload.link_feasibility`'s config and extras, each as `link.<name>`): BW_min per compute NIC and per memory NIC
(`link.bw_min_compute_nic_bytes_per_s`, `link.bw_min_memory_nic_bytes_per_s`) against each end's NIC rate
(`link.compute_nic_bytes_per_s`, `link.memory_nic_bytes_per_s`), the limiting end's (`link.bw_min_bytes_per_s`,
`link.link_bytes_per_s`), the iteration's batch and mean context, and alpha (`with_link`, which `simulate --alpha`
calls too); a point whose link falls short is infeasible, so its record, as every infeasible one, keeps the check's
config (alpha, batch, context, the NIC rates) and holds none of its BW_min (its reason names them).

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
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from archsim.dse.serving_spec import SERVING_ROOT, ServingSettings, is_trace, system_changes, trace_path
from archsim.errors import SpecError
from archsim.memo import per_object
from archsim.record import Record
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, peak_batch_link_feasibility
from archsim.systems.requests import Request, checked_poisson_requests, read_trace
from archsim.systems.serving import BATCHING, ServingConfig, simulate_serving
from archsim.systems.system_spec import with_fields
from archsim.systems.system_types import System
from archsim.workload import Workload


def max_batch(settings: ServingSettings, fields: Mapping[str, Any]) -> int:
    """The point's batch: its serving.max_batch value, else the serving block's."""
    return int(fields.get(f"{SERVING_ROOT}.max_batch", settings.max_batch))


def max_prefill_tokens(settings: ServingSettings, fields: Mapping[str, Any]) -> int | None:
    """The point's prefill budget: its serving.max_prefill_tokens value, else the serving block's (None: none)."""
    return fields.get(f"{SERVING_ROOT}.max_prefill_tokens", settings.max_prefill_tokens)


def batching(settings: ServingSettings, fields: Mapping[str, Any]) -> str:
    """The point's scheduler policy (a name of `BATCHING`): its serving.batching value, else the serving block's."""
    return fields.get(f"{SERVING_ROOT}.batching", settings.batching)


def stream(settings: ServingSettings, fields: Mapping[str, Any]) -> tuple[str, float | None]:
    """The point's lengths and rate: its serving.lengths and serving.rate_per_s values, else the serving block's; a
    trace's rate is None (its arrivals are the trace's)."""
    lengths = fields.get(f"{SERVING_ROOT}.lengths", settings.lengths)
    return lengths, None if is_trace(lengths) else float(fields.get(f"{SERVING_ROOT}.rate_per_s", settings.rate_per_s))


def request_stream(settings: ServingSettings, lengths: str, rate_per_s: float, source: str,
                   rate_where: str = f"{SERVING_ROOT}.rate_per_s") -> tuple[Request, ...]:
    """The requests of lengths `lengths` at `rate_per_s` (`stream`): a trace's as read (from the folder of the
    sweep at `source`), else the settings' count of seeded Poisson arrivals with the preset's lengths, checked as
    the simulator checks them: a rate so low that an arrival falls past what a float times to the microsecond is
    a SpecError at `rate_where`, the path that gave the rate."""
    if is_trace(lengths):
        return read_trace(trace_path(lengths, source))
    return checked_poisson_requests(rate_per_s=rate_per_s, n=settings.requests, lengths=lengths, seed=settings.seed,
                                    source=source, rate_where=rate_where)


# A trace's lengths in a point's key (its requests' digest says which), for a JSON Lines trace too: the text is
# from when traces were CSV alone and stays, as every stored key of a trace's point holds it (another would make
# those points new ones)
TRACE_KEY = "<csv trace>"


def serving_config(settings: ServingSettings, fields: Mapping[str, Any]) -> ServingConfig:
    """The scheduler a point serves with: its batch, prefill budget and batching, every other knob at
    `ServingConfig`'s."""
    return ServingConfig(max_batch=max_batch(settings, fields), max_prefill_tokens=max_prefill_tokens(settings, fields),
                         mix_prefill_decode=BATCHING[batching(settings, fields)])


def system_config(system: System, workload: Workload, settings: ServingSettings, fields: Mapping[str, Any],
                  requests: tuple[Request, ...], source: str = "<python>") -> dict[str, Any]:
    """What a point's key hashes: the system as the point's values set it, resolved (`system_content`: a value
    equal to the spec's own keys as the point without it, and a preset file edited since, the base's or one an axis
    names, is another point, the same file named two ways the same; a point whose values the spec refuses, on why
    and on those values), the workload and the serving run (its lengths and rate, `stream`; its batching where not
    the default mixed one, so that the keys of points swept before the batching was a knob stand; a trace by the
    digest of the `requests` read from it, not its path: a trace edited since is another point, the same trace named
    two ways or moved is the same point). A file a value names is taken from the folder of the sweep at `source`
    (`system_changes`)."""
    config, changes = serving_config(settings, fields), system_changes(fields, source)
    lengths, rate_per_s = stream(settings, fields)
    try:
        resolved = system_content(with_fields(system, changes) if changes else system)
    except SpecError as refused:  # an infeasible point (its record says why): keyed on why, which an edit changes
        resolved = {"refused": str(refused), "changes": changes}
    return {"system": resolved, "workload": workload.name, "workload_params": dict(workload.params),
            "block": workload.block,
            "serving": {**({"lengths": TRACE_KEY} if is_trace(lengths) else
                           {"rate_per_s": rate_per_s, "requests": settings.requests, "lengths": lengths,
                            "seed": settings.seed}),
                        "max_batch": config.max_batch,
                        "max_prefill_tokens": config.max_prefill_tokens,
                        **config.batching_entry(),
                        **({} if settings.alpha is None else {"alpha": settings.alpha}),
                        **({"trace_sha256": requests_digest(requests)} if is_trace(lengths) else {})}}


@per_object(maxsize=64)
def requests_digest(requests: tuple[Request, ...]) -> str:
    """The sha256 of a stream's requests (id, arrival, prompt and output tokens, in order), once per stream."""
    return hashlib.sha256(json.dumps([dataclasses.astuple(r) for r in requests]).encode()).hexdigest()


def system_content(system: System) -> dict[str, Any]:
    """The system as its points compute it: every field of the validated spec (its devices and links, the specs
    their preset files gave included, its parallelism, placement and schedule, its name), without the files' paths
    (where a file lies, not what it says), as plain values. `System.data`, the spec as written, is left out: it
    spells what these fields resolve, and a value written that equals the default resolves alike."""
    return _content(system)


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
                fields: Mapping[str, Any], source: str = "<python>") -> Record:
    """The record of the point with `fields` of the sweep at `source` (a file a value names is taken from its
    folder, `system_changes`): the module docstring's run. A SpecError (values the system spec refuses, a workload
    the system cannot run) is the caller's to record."""
    model = system_model(with_fields(system, system_changes(fields, source)), workload)
    if model.kv_capacity_bytes <= 0:
        return _infeasible(model.name, f"the weights leave no memory for the KV cache on {model.name}")
    if settings.alpha is not None and not isinstance(model, OffloadModel):
        return _infeasible(model.name, f"serving.alpha is read only by an attention-offloading system (a ping-pong "
                                       f"or staggered schedule), which {model.name} is not")
    result = simulate_serving(model, requests, serving_config(settings, fields), trace=settings.alpha is not None)
    record = result.record(model.price_per_hour)
    if settings.alpha is None:
        return record
    try:
        link = peak_batch_link_feasibility(model, result.timeline, settings.alpha)
    except SpecError as error:  # no decode to check, or no finite BW_min
        return record.failing(f"serving.alpha: {error.message}")
    return with_link(record, link)


def with_link(record: Record, link: Record) -> Record:
    """A serving run's `record` with its link check `link` (`offload.link_feasibility`): the check's config and
    extras each as `link.<name>` beside the run's, and infeasible for the check's reason where the link falls
    short; a sweep's point and `simulate --alpha`'s record alike."""
    record = dataclasses.replace(record, config={**record.config, **_prefixed("link", link.config)},
                                 extras={**record.extras, **_prefixed("link", link.extras)})
    return record if link.feasible else record.failing(link.reason)


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{name}": value for name, value in values.items()}


def _infeasible(target: str, reason: str) -> Record:
    return Record("serving", target, False, reason, math.nan, math.nan)
