"""One sparse-attention method on one GPU and workload at the contexts a user asks for, as the flat points
`archsim sparse` and `archsim reproduce sparse` print (issue 19; ../shared/reference/seqpar-sparse.md §3).

A point is {"method", "model", "gpu", "phase", "context", "budget", "time_s", "dense_time_s", "memory_bytes",
"dense_memory_bytes"} plus the method's own fields, with `phase` one of
- `prefill`: one prompt's end-to-end prefill (MInference, FlexPrefill or DuoAttention,
  `archsim.systems.sparse_prefill`, against dense FlashAttention-2), with its attention, other ops and KV copy to the
  host apart (FlexPrefill's and MInference's estimation too, `estimate_s`, within the attention; MInference's index
  build, part of that, `index_s`); DuoAttention's, when asked (`SparseMethod.prefill`), after
  its decode points at each context;
- `decode`: one generated token of one request, end to end (`archsim.systems.kv_selection`: DuoAttention, Quest,
  RazorAttention, TokenSelect, against dense decode);
- `attention`: one layer's self-attention of that decode step (Quest: a sparse layer's scoring, top-K and
  attention at the budget; DuoAttention and RazorAttention: the mean over layers of their two calls).
Memory is the weights plus the KV cache the method keeps; `fits` says whether that is within the GPU's DRAM. A
prefill's memory is the weights and the prompt's KV cache; its `fits` / `dense_fits` say whether the GPU holds what
that side's prefill keeps there at once (`resident_bytes` / `dense_resident_bytes`, `sparse_prefill.resident_bytes`:
the weights, the KV cache it keeps on the GPU, all of it or, where that does not fit, one layer's with the rest on
the host, `sparse_prefill.kv_on_host`, and one layer's working set: its input, the normed copy, Q and O); a side the
GPU cannot hold has no time (`sparse_prefill`, "Memory"): its times are NaN (null in JSON, n/a in a table), the point
still a row, the other side timed; its other ops (`other_ops_s`, the layers' ops other than attention: the same on
both sides, one field) are NaN too where neither side has a time.
DuoAttention's prefill point takes its decode points' memory (the weights and the KV cache the method keeps once
the prompt is in: retrieval heads whole, streaming heads their window; dense: the whole cache), so its rows at a
context agree on memory; its `dense_fits` is the other prefills' (the same dense run), and its `fits` counts what
stays on the GPU during its prefill: the layer's working set and the weights beside the KV it keeps with the layer
being computed at its full K and V (`sparse_prefill.duo_peak_kv_bytes`), or, where those exceed the GPU's memory
and the kept KV goes to the host (`sparse_prefill.duo_kv_on_host`), beside that one layer's full K and V;
its `kv_host_s` is the copy of the KV it keeps (0 where it stays on the GPU), `dense_kv_host_s` dense's.
FlexPrefill's `effective_density` is the share of the causal key blocks its kernel visits
(`gpu_flexprefill.kept_density`): the density asked, up to rounding, or more where every row's floor (its
`min_budget` of tokens, FlexPrefill's default 512, as vertical and as slash blocks) raises it (a short prompt, a low
density).
A decode side whose attention call the GPU's memory cannot hold at this context (one layer's KV beyond it:
`kv_selection.attention_time_s`) has no time too, its `fits` / `dense_fits` false. Quest's `loaded_fraction` is the
share of a selecting layer's K and V bytes it loads per step (1/page + K/pages for whole pages); 1.0 for a model whose
every layer is dense (Quest's first min(2, layers)), where every KV byte is loaded.

What each method needs, and nothing is filled in for it:
- MInference: a per-head pattern map (`head_kind: query`) of the workload's layers x heads, made for it (its
  `model` the workload's name; a map's shape and model: `check_map`);
- FlexPrefill: the density its coverage gamma keeps (kept / causal points, in (0, 1]): the data's, not a default
  (its `min_budget` is FlexPrefill's README default, `gpu_flexprefill.FLEX_MIN_BUDGET_TOKENS`, reported in the
  point);
- DuoAttention: the share of KV heads that are retrieval heads, or a map (`head_kind: kv`) of the workload's
  layers x KV heads, made for it, whose streaming heads share one (sinks, recent) window (its `dense` heads, full
  KV, are retrieval heads);
- RazorAttention: the share of heads kept whole;
  both points (and DuoAttention's system rows) carry that share as asked (`retrieval_fraction`, a map's own), the
  KV heads over every layer it keeps whole (`retrieval_heads`: whole heads, `kv_selection.retrieval_heads`, which
  refuses a share in (0, 1) that rounds to none or all of them) and their share, the one run
  (`retrieval_fraction_used`; `retrieval_fields`);
- Quest: token budgets (whole pages, at most the context) and its page size (`page_tokens`, default Quest's 16:
  `kv_selection.QUEST_PAGE_TOKENS`);
- TokenSelect: top_k (default TokenSelect's 2048), its attention sinks and local window (`sinks`, `local`, default
  TokenSelect's 128 and 512 tokens, `kv_selection.TOKENSELECT_SINKS` / `TOKENSELECT_LOCAL`; at a context that
  top_k + sinks + local cover, every token is attended, dense, `kv_selection.tokenselect_decode`; a top_k given
  beyond the context is refused) and the share of steps whose Selection Cache hits (`reuse_fraction`, default 0:
  every step scores anew; how often it hits is the data's); its points carry `reuse_fraction`, `sinks` and
  `local`, as Quest's carry `page_tokens` beside `loaded_fraction`.
`budget` is the tokens the selection takes: Quest's token budget, TokenSelect's top_k (its default at most the
context, `kv_selection.tokenselect_top_k`: a shorter cache is selected whole); None for the others.

A point's record (`point_record`, what a `sparse:` sweep stores; `archsim.record`): target_kind `sparse`,
`latency_s` the method's time in the phase, energy board power x that time (as a GPU point's,
`archsim.model.gpu.gpu_record`: an upper bound at the preset's TDP), area and DRAM traffic NaN (not modelled),
config `budget` (NaN where None), extras `RECORD_METRICS` (`speedup` = dense time / the method's), `dense_fits` (1
or 0) and the point's other numeric fields. It is feasible where `fits` is, the field `archsim sparse` prints: a
method side that does not fit the GPU's memory or has no time cannot run, so the record is infeasible, its reason
the memory against the GPU's DRAM. Dense not fitting or having no time leaves the record feasible, its speedup NaN
(a dense run that cannot run is no baseline).

On a system (`system_points`, `archsim sparse --system`): what Quest's or DuoAttention's selection does on a system
spec's PIM devices and attention-offloading memory pool (`kv_selection`'s "PIM, offloading"), a flat row each:
{"method", "model", "system", "budget" (Quest's; None for DuoAttention, which has "retrieval_fraction",
"retrieval_heads" and "retrieval_fraction_used"), "context",
"device", "kind", "effective_context", "batch", "time_s", "dense_time_s", "fits", "dense_fits", "reason", "requests",
"dense_requests"}.
- A bank-PIM or Logic-PIM device the system places ops on: one layer's decode attention of `batch` requests, each
  bound at the context (`dense_time_s`) and at the method's effective context (`time_s`: the tokens' worth of K and
  V it reads, averaged over the layers: `quest_mean_effective_context`; DuoAttention's, with the KV heads cut over
  the devices, the busiest device's, `duo_device_effective_context`), by `kv_selection.pim_attention_s` on the
  workload's shard the systems engine gives one device (`SystemModel.shard`: 1/tp of the heads); `requests` None.
  A side whose `batch` requests' KV cache exceeds the system's KV room (`kv_capacity_bytes`; dense: the whole
  cache; Quest: it and its page metadata, `quest_kv_bytes`; DuoAttention: what it keeps, `duo_kv_bytes`, over the
  whole system: assumption, the retrieval heads rotate over the devices across the layers, so memory balances while a
  layer's time waits for its busiest device; the room counted as those bytes are, each KV head once, where a TP
  group wider than the KV heads holds each head tp / kv_heads times) is not timed: its time None, its `fits` /
  `dense_fits` false, and `reason` names the requests of that context the room holds (None where both sides fit).
- An attention-offloading memory pool (`OffloadModel`, e.g. Lamina's): the requests of one context its KV room
  holds (`kv_capacity_bytes`, as the serving simulator's), with the method (`requests`) and dense
  (`dense_requests`): DuoAttention's streaming heads free room (`kv_selection.pool_batch`), Quest keeps the whole
  cache plus its page metadata and holds no more (`kv_selection.quest_pool_batch`); and one layer's decode
  attention of those requests on the pool as the offload model times it (`OffloadModel.attention_cost`, its layer's
  `attention_s`: one call of the pool device's decode kernel over a memory device's heads, the b devices in
  parallel): dense's requests each at the context (`dense_time_s`), the method's each at its effective context
  (`time_s`; `effective_context`: Quest's as on a PIM device, DuoAttention's at the busiest memory device, which
  holds kv_heads / b KV heads by head-level partitioning, `duo_device_effective_context`). A side holding no
  request has no time (None). The sides time different request counts: per request (`time_s` / `requests`,
  `dense_time_s` / `dense_requests`) they compare. Assumption: the pool's kernel costs a request by the K and V it
  reads, so the method's attention is the dense kernel at the bytes-equivalent context: DuoAttention's two calls
  (retrieval heads, streaming heads) and Quest's scoring, top-K and scattered pages are taken as one call over that
  many tokens (their extra launches not counted), a bandwidth-bound pool's reading time (Lamina's H20 with 16-row
  tiles). `batch`, `fits`, `dense_fits` and `reason` None.
A system with neither (a GPU or NPU system, context parallelism) is refused, as is a batch where no bank-PIM or
Logic-PIM device reads it, or none where one does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.model.gpu_flexprefill import FLEX_MIN_BUDGET_TOKENS, check_density, kept_density
from archsim.outputs import beyond_text, capacity_text
from archsim.record import NAN, PJ_PER_J, Record
from archsim.systems import kv_selection
from archsim.systems.device import DeviceModel
from archsim.systems.kv_selection import SelectionDecode
from archsim.systems.models import system_model, with_channel_kv
from archsim.systems.offload import OffloadModel
from archsim.systems.sparse_prefill import (
    Prefill,
    dense_prefill,
    duo_prefill,
    flex_prefill,
    head_patterns,
    sparse_prefill,
)
from archsim.systems.system_model import SystemModel
from archsim.systems.system_types import PIM_KINDS, System
from archsim.workload import Workload, refuse_linear_attention
from archsim.workload_patterns import PatternMap

SOURCE = "<sparse>"
METHODS = ("minference", "flexprefill", "duoattention", "quest", "razorattention", "tokenselect")
NAMES = {"minference": "MInference", "flexprefill": "FlexPrefill", "duoattention": "DuoAttention", "quest": "Quest",
         "razorattention": "RazorAttention", "tokenselect": "TokenSelect"}
DECODE_PHASES = ("attention", "decode")
# the phases of each method's points, its primary first (a prefill method's prefill; a decode method's end-to-end
# token, then one layer's attention; DuoAttention's prefill with `SparseMethod.prefill`): what `phase_point` takes
METHOD_PHASES = {"minference": ("prefill",), "flexprefill": ("prefill",),
                 "duoattention": ("decode", "attention", "prefill"), "quest": ("decode", "attention"),
                 "razorattention": ("decode", "attention"), "tokenselect": ("decode", "attention")}
SPARSE_KIND = "sparse"  # a point record's target_kind, and the sweep block and kind of point that make them
RECORD_METRICS = ("speedup", "dense_time_s", "memory_bytes", "dense_memory_bytes")  # a record's extras, first
# a point's fields that are no extra as they are: what the record holds elsewhere (its time, fields, fit) or in
# another form (`dense_fits` as 0 or 1, `budget` NaN where none)
_NOT_EXTRAS = frozenset({"method", "model", "gpu", "phase", "context", "budget", "time_s", "fits", "dense_fits"})
SYSTEM_METHODS = ("quest", "duoattention")  # those `system_points` takes
# the models' sources whose fields `archsim sparse`'s options set, and the options (the CLI's and a sparse sweep's
# reading of a model's SpecError: `archsim.commands.sparse_cmd`, `archsim.dse.sparse_spec`)
MODEL_SOURCES = ("<sparse>", "<kv-selection>", "<prefill>", "<flexprefill>", "<python>")
FIELD_OPTIONS = {"context": "--context", "seq_len": "--context", "budget": "--budget",
                 "retrieval_fraction": "--retrieval-fraction", "patterns": "--patterns", "top_k": "--top-k",
                 "reuse_fraction": "--reuse-fraction", "density": "--density", "page_tokens": "--page-tokens",
                 "sinks": "--sinks", "local": "--local",
                 "kernel": "--gpu",  # a kernel the GPU cannot run
                 "AttentionCase.seqlen": "--context",  # an attention call's rows (batch 1 x heads x context)
                 "system": "--system", "batch": "--batch"}
# the heads a method's pattern map covers (`check_map`): MInference's query heads, DuoAttention's KV heads (its gates)
MAP_HEAD_KINDS = {"minference": "query", "duoattention": "kv"}
# the checks of a setting's own range, whatever the other settings, workload and GPU: the models' (a sparse sweep
# refuses a value out of its range at load, `archsim.dse.sparse_spec`, as `archsim sparse` refuses the option)
RANGE_CHECKS = {"retrieval_fraction": kv_selection.check_retrieval_fraction,
                "reuse_fraction": kv_selection.check_reuse_fraction, "density": check_density}
# the options each method takes besides --gpu, --workload and --context
METHOD_OPTIONS = {"minference": ("--patterns",), "flexprefill": ("--density",),
                  "duoattention": ("--patterns", "--retrieval-fraction", "--prefill", "--system", "--batch"),
                  "quest": ("--budget", "--page-tokens", "--system", "--batch"),
                  "razorattention": ("--retrieval-fraction",),
                  "tokenselect": ("--top-k", "--sinks", "--local", "--reuse-fraction")}


@dataclass(frozen=True)
class SparseMethod:
    """A method and its settings (module docstring): those a method needs have no default, and the others are not
    read."""

    name: str
    pattern_map: PatternMap | None = None
    retrieval_fraction: float | None = None
    budgets: tuple[int, ...] = ()
    top_k: int | None = None  # TokenSelect's 2048, not given (`kv_selection.tokenselect_decode`)
    reuse_fraction: float = 0.0
    density: float | None = None
    prefill: bool = False  # DuoAttention: also its end-to-end prefill at each context (`duo_prefill_point`)
    page_tokens: int = kv_selection.QUEST_PAGE_TOKENS  # Quest's page size: its budgets are whole pages
    sinks: int = kv_selection.TOKENSELECT_SINKS  # TokenSelect's attention sinks, attended every step
    local: int = kv_selection.TOKENSELECT_LOCAL  # TokenSelect's local window, the latest tokens

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise SpecError(SOURCE, "method", f"expected one of {', '.join(METHODS)}, got {self.name!r}")
        needs = {"minference": self.pattern_map is not None, "quest": bool(self.budgets),
                 "flexprefill": self.density is not None,
                 "razorattention": self.retrieval_fraction is not None,
                 "duoattention": (self.pattern_map is None) != (self.retrieval_fraction is None)}
        what = {"minference": ("patterns", "a per-head pattern map (head_kind: query)"),
                "flexprefill": ("density", "the density its coverage keeps (kept / causal points, in (0, 1])"),
                "quest": ("budget", "one or more token budgets"),
                "razorattention": ("retrieval_fraction", "the share of heads RazorAttention keeps whole"),
                "duoattention": ("retrieval_fraction", "exactly one of retrieval_fraction and a pattern map "
                                                       "(head_kind: kv)")}
        if not needs.get(self.name, True):
            field, expected = what[self.name]
            raise SpecError(SOURCE, field, f"{NAMES[self.name]} needs {expected}")


def point(method: str, model: str, gpu: str, phase: str, context: int, budget: int | None, time_s: float,
          dense_time_s: float, memory_bytes: float, dense_memory_bytes: float) -> dict:
    """The fields every point has (module docstring)."""
    return {"method": method, "model": model, "gpu": gpu, "phase": phase, "context": context, "budget": budget,
            "time_s": time_s, "dense_time_s": dense_time_s, "memory_bytes": memory_bytes,
            "dense_memory_bytes": dense_memory_bytes}


def selection_points(result: SelectionDecode, model: str, gpu: str, budget: int | None) -> list[dict]:
    """A decode method's points, one per phase (`DECODE_PHASES`), with `fits` and `dense_fits`."""
    times = {"attention": (result.attention_s, result.dense_attention_s),
             "decode": (result.time_s, result.dense_time_s)}
    return [{**point(result.method, model, gpu, phase, result.context, budget, *times[phase], result.memory_bytes,
                     result.dense_memory_bytes), "fits": result.fits, "dense_fits": result.dense_fits}
            for phase in DECODE_PHASES]


def check_map(pattern_map: PatternMap, workload: Workload, head_kind: str) -> None:
    """Refuse a map that is not of `workload`'s layers x heads of `head_kind` (query heads, or KV heads), naming
    the first field of the map that differs: head_kind, layers, heads; then one made for another model
    (`_check_map_model`)."""
    size = "heads" if head_kind == "query" else "kv_heads"
    layers, heads = int(workload.params.get("layers", 0)), int(workload.params.get(size, 0))
    wanted = {"head_kind": head_kind, "layers": layers, "heads": heads}
    differs = [field for field, value in wanted.items() if getattr(pattern_map, field) != value]
    if differs:
        what = "query heads" if head_kind == "query" else "KV heads"
        raise SpecError(pattern_map.path, differs[0], f"expected a map of {workload.name}'s {what} ({layers} layers "
                                                      f"x {heads} {what}, head_kind: {head_kind}), got "
                                                      f"{pattern_map.layers} x {pattern_map.heads} "
                                                      f"{pattern_map.head_kind} heads")
    _check_map_model(pattern_map, workload)


def _check_map_model(pattern_map: PatternMap, workload: Workload) -> None:
    """Refuse a map made for a model other than `workload` (its `model` is not the workload's name): a per-head map
    is its model's setting (MInference's patterns are searched on a model, DuoAttention's gates trained on it;
    seqpar-sparse.md §3.1, §3.3), so a map of the same shape is no map of another model."""
    if pattern_map.model != workload.name:
        raise SpecError(pattern_map.path, "model", f"expected a map made for {workload.name}, got one made for "
                                                   f"{pattern_map.model} (a per-head map is its model's setting); "
                                                   f"to apply it to {workload.name} anyway, copy it and set model: "
                                                   f"{workload.name}")


def prefill_point(workload: Workload, gpu: GPU, context: int, pattern_map: PatternMap) -> dict:
    """MInference's end-to-end prefill of one `context`-token prompt against dense FlashAttention-2, with its
    estimation (`estimate_s`), and the index build (`index_s`) and the pads of Q, K and V (`pad_s`) within it,
    summed over heads and layers."""
    check_map(pattern_map, workload, MAP_HEAD_KINDS["minference"])
    patterns = head_patterns(pattern_map)
    sparse = sparse_prefill(workload, gpu, context, patterns)
    return {**_prefill_record("MInference", workload, gpu, context, sparse), "estimate_s": sparse.estimate_s,
            "index_s": sparse.index_s, "pad_s": sparse.pad_s}


def flex_point(workload: Workload, gpu: GPU, context: int, density: float) -> dict:
    """FlexPrefill's end-to-end prefill of one `context`-token prompt at `density` against dense
    FlashAttention-2."""
    sparse, estimate_s = flex_prefill(workload, gpu, context, density, FLEX_MIN_BUDGET_TOKENS)
    return {**_prefill_record("FlexPrefill", workload, gpu, context, sparse), "estimate_s": estimate_s,
            "density": density, "min_budget": FLEX_MIN_BUDGET_TOKENS,
            "effective_density": kept_density(density, context, FLEX_MIN_BUDGET_TOKENS)}


def _prefill_record(method: str, workload: Workload, gpu: GPU, context: int, sparse: Prefill) -> dict:
    """A sparse prefill's point beside dense FlashAttention-2's at the same context, with its parts; memory: the
    weights and the prompt's KV cache, the same for both; what each side holds on the GPU at once, and whether it
    fits: a side the GPU cannot hold has no time (module docstring), and the other ops, the same on both sides, are
    a part of a time only where a side has one."""
    dense = dense_prefill(workload, gpu, context)
    weights, kv = kv_selection.weight_bytes(workload), kv_selection.dense_kv_bytes(workload, context)
    fits, dense_fits = not math.isnan(sparse.time_s), not math.isnan(dense.time_s)
    return {**point(method, workload.name, gpu.name, "prefill", context, None, sparse.time_s, dense.time_s,
                    weights + kv, weights + kv),
            "attention_s": sparse.attention_s, "dense_attention_s": dense.attention_s,
            "other_ops_s": dense.other_ops_s if fits or dense_fits else math.nan, "kv_host_s": dense.kv_host_s,
            "resident_bytes": sparse.resident_bytes, "dense_resident_bytes": dense.resident_bytes,
            "fits": fits, "dense_fits": dense_fits}


def duo_prefill_point(workload: Workload, gpu: GPU, decode: SelectionDecode, fraction: float, sinks: int,
                      recent: int) -> dict:
    """DuoAttention's end-to-end prefill of one prompt of `decode`'s context against dense FlashAttention-2, with
    the memory of its decode point `decode`, dense's fit by the prefill rule and its own by what its prefill holds on
    the GPU (module docstring)."""
    context = decode.context
    sparse = duo_prefill(workload, gpu, context, fraction, sinks=sinks, recent=recent)
    record = _prefill_record("DuoAttention", workload, gpu, context, sparse)
    return {**record, "memory_bytes": decode.memory_bytes, "dense_memory_bytes": decode.dense_memory_bytes,
            "kv_host_s": sparse.kv_host_s, "dense_kv_host_s": record["kv_host_s"],
            **retrieval_fields(workload, fraction)}


def retrieval_fields(workload: Workload, fraction: float) -> dict:
    """A DuoAttention or RazorAttention point's (or system row's) retrieval heads (module docstring): the fraction
    asked, the KV heads it keeps whole over every layer (`kv_selection.retrieval_heads`) and their share of the
    model's KV heads, the fraction the run used."""
    heads = kv_selection.retrieval_heads(workload, fraction)
    return {"retrieval_fraction": fraction, "retrieval_heads": heads,
            "retrieval_fraction_used": heads / (workload.params["layers"] * workload.params["kv_heads"])}


def duo_window(workload: Workload, pattern_map: PatternMap) -> tuple[float, int, int]:
    """(retrieval fraction, sinks, recent) of a DuoAttention map of `workload`'s KV heads; a `dense` head (full
    KV) is a retrieval head."""
    check_map(pattern_map, workload, MAP_HEAD_KINDS["duoattention"])
    others = sorted({p.pattern for p in pattern_map.patterns} - {"retrieval", "dense", "streaming"})
    if others:
        raise SpecError(pattern_map.path, "patterns", f"expected retrieval (or dense) and streaming heads only "
                                                      f"(DuoAttention), got {', '.join(others)}")
    windows = {(p.settings["sinks"], p.settings["recent"]) for p in pattern_map.patterns if p.pattern == "streaming"}
    if len(windows) > 1:
        raise SpecError(pattern_map.path, "patterns", f"expected one (sinks, recent) window for every streaming "
                                                      f"head, got {sorted(windows)}")
    sinks, recent = windows.pop() if windows else (kv_selection.DUO_SINKS, kv_selection.DUO_RECENT)
    return pattern_map.fraction("retrieval") + pattern_map.fraction("dense"), sinks, recent


def duo_settings(method: SparseMethod, workload: Workload) -> tuple[float, int, int]:
    """DuoAttention's (retrieval fraction, sinks, recent): its map's (`duo_window`), or its fraction with the
    shipped window."""
    if method.pattern_map is not None:
        return duo_window(workload, method.pattern_map)
    return method.retrieval_fraction, kv_selection.DUO_SINKS, kv_selection.DUO_RECENT


def method_points(method: SparseMethod, workload: Workload, gpu: GPU, contexts: Sequence[int]) -> list[dict]:
    """Every point of `method` on `gpu` for `workload` at `contexts` (x budgets for Quest), in that order."""
    refuse_linear_attention(workload, method.name)
    points: list[dict] = []
    for context in contexts:
        if method.name == "minference":
            points.append(prefill_point(workload, gpu, context, method.pattern_map))
        elif method.name == "flexprefill":
            points.append(flex_point(workload, gpu, context, method.density))
        elif method.name == "duoattention":
            fraction, sinks, recent = duo_settings(method, workload)
            result = kv_selection.duo_decode(workload, gpu, context, fraction, sinks=sinks, recent=recent)
            points += [{**p, **retrieval_fields(workload, fraction)}
                       for p in selection_points(result, workload.name, gpu.name, method_budget(method, context))]
            if method.prefill:
                points.append(duo_prefill_point(workload, gpu, result, fraction, sinks, recent))
        elif method.name == "razorattention":
            result = kv_selection.razor_decode(workload, gpu, context, method.retrieval_fraction)
            points += [{**p, **retrieval_fields(workload, method.retrieval_fraction)}
                       for p in selection_points(result, workload.name, gpu.name, method_budget(method, context))]
        elif method.name == "quest":
            for budget in method.budgets:
                result = kv_selection.quest_decode(workload, gpu, context, budget, page_tokens=method.page_tokens)
                fraction = kv_selection.quest_loaded_fraction(workload, context, budget, method.page_tokens)
                points += [{**p, "loaded_fraction": fraction, "page_tokens": method.page_tokens}
                           for p in selection_points(result, workload.name, gpu.name, budget)]
        else:
            result = kv_selection.tokenselect_decode(workload, gpu, context, top_k=method.top_k, sinks=method.sinks,
                                                     local=method.local, reuse_fraction=method.reuse_fraction)
            points += [{**p, "reuse_fraction": method.reuse_fraction, "sinks": method.sinks, "local": method.local}
                       for p in selection_points(result, workload.name, gpu.name, method_budget(method, context))]
    return points


def method_budget(method: SparseMethod, context: int) -> int | None:
    """The `budget` of a point of `method` at `context` (module docstring): Quest's token budget (its first: a point,
    as `phase_point`'s, has one), the tokens TokenSelect's top_k selects (`kv_selection.tokenselect_top_k`: its
    default at most the context), None for the others."""
    if method.name == "quest":
        return method.budgets[0]
    if method.name == "tokenselect":
        return kv_selection.tokenselect_top_k(context, method.top_k)
    return None


def phase_point(method: SparseMethod, workload: Workload, gpu: GPU, context: int, phase: str | None = None) -> dict:
    """The point of `method_points` at one `context` (Quest: at its first budget) in `phase` (None: the method's
    primary, `METHOD_PHASES`; DuoAttention's prefill asks for it, `SparseMethod.prefill`); a phase the method has
    no point of is refused."""
    phases = METHOD_PHASES[method.name]
    phase = phase or phases[0]
    if phase not in phases:
        raise SpecError(SOURCE, "phase", f"expected one of {', '.join(phases)} for {NAMES[method.name]}, got "
                                         f"{phase!r}")
    method = replace(method, prefill=True) if phase == "prefill" and method.name == "duoattention" else method
    return next(p for p in method_points(method, workload, gpu, [context]) if p["phase"] == phase)


def point_record(point: Mapping, target: str, gpu: GPU) -> Record:
    """The record (`archsim.record`) of a point of `phase_point` on `gpu`, named `target` (module docstring, "A
    point's record"): feasible where the point `fits`."""
    time_s, dense_time_s = point["time_s"], point["dense_time_s"]
    feasible = bool(point["fits"])
    reason = "" if feasible else unfit_reason(point, gpu)
    dense_runs = bool(point["dense_fits"])
    extras = {"speedup": dense_time_s / time_s if dense_runs and time_s > 0 else NAN, "dense_time_s": dense_time_s,
              "memory_bytes": point["memory_bytes"], "dense_memory_bytes": point["dense_memory_bytes"],
              "dense_fits": int(point["dense_fits"]),
              **{k: v for k, v in point.items() if k not in _NOT_EXTRAS and k not in RECORD_METRICS
                 and isinstance(v, int | float) and not isinstance(v, bool)}}
    return Record(SPARSE_KIND, target, feasible, reason, time_s, gpu.power_w * time_s * PJ_PER_J,
                  config=_record_config(point.get("budget")), extras=extras)


def blank_record(method: SparseMethod, context: int, target: str) -> Record:
    """The record of a point of `method` at `context` the model rejects, named `target`: `point_record`'s config
    (the method's budget, `method_budget`) without numbers (time and energy NaN, no extras), infeasible; the caller
    gives the reason (`Record.failing`: a sparse sweep's stored point, `archsim.dse.points`)."""
    return Record(SPARSE_KIND, target, False, "", NAN, NAN, config=_record_config(method_budget(method, context)))


def _record_config(budget: int | None) -> dict:
    """A point record's config (module docstring): its `budget`, NaN where the method has none."""
    return {"budget": NAN if budget is None else budget}


def unfit_reason(point: Mapping, gpu: GPU) -> str:
    """Why a point's method side does not fit `gpu`: a prefill's bytes held at once (`resident_bytes`; it has no
    time), a decode's memory (weights and the KV cache it keeps) against the GPU's DRAM, or its call where it has no
    time."""
    if "resident_bytes" in point:
        return (f"{point['method']} has no time: {beyond_text(point['resident_bytes'], gpu.dram_bytes)} held at once "
                f"(weights, the KV cache kept on the GPU and one layer's working set) against {gpu.name}'s "
                f"{capacity_text(gpu.dram_bytes)} of DRAM")
    untimed = math.isnan(point["time_s"])
    return (f"{point['method']} {'has no time: ' if untimed else 'does not fit: '}"
            f"{beyond_text(point['memory_bytes'], gpu.dram_bytes)} (weights and the KV cache it keeps) against "
            f"{gpu.name}'s {capacity_text(gpu.dram_bytes)} of DRAM"
            + (" (one layer's attention call beyond the GPU's memory)" if untimed else ""))


def system_points(method: SparseMethod, workload: Workload, system: System, batch: int | None,
                  contexts: Sequence[int]) -> list[dict]:
    """Quest's or DuoAttention's effect on `system` running `workload` (module docstring, "On a system"), at
    `contexts` (x budgets for Quest): a row per PIM device (`batch` requests' decode attention, one layer) and one
    for an attention-offloading memory pool (the requests it holds and their decode attention, one layer). A system
    with neither, a batch missing where a PIM device times one, or given where none does, is refused."""
    if method.name not in SYSTEM_METHODS:
        raise SpecError(SOURCE, "method", f"expected one of {', '.join(SYSTEM_METHODS)} on a system, got "
                                          f"{method.name!r}")
    model = system_model(system, workload)
    # timed as reads (the tokens each request's GEMVs stream), not as what a channel holds: a bank-PIM's channel
    # check (`pim_device`) is off here, and the rows' fits are the system's KV room, not a channel's
    pims = [d for d in with_channel_kv(model, None).devices.values() if d.kind in PIM_KINDS] \
        if isinstance(model, SystemModel) else []
    pool = model.pool_device.name if isinstance(model, OffloadModel) else None
    if not pims and pool is None:
        raise SpecError(SOURCE, "system", f"{system.name} has no bank-PIM or Logic-PIM device and no attention-"
                                          "offloading memory pool holding the KV cache: KV selection's effect on a "
                                          "system is modelled on those (on a GPU it is the points of --gpu)")
    if pims and batch is None:
        raise SpecError(SOURCE, "batch", f"{system.name}'s PIM ({', '.join(d.name for d in pims)}) times a decode "
                                         "batch: it needs the requests in it, and none is assumed")
    if not pims and batch is not None:
        raise SpecError(SOURCE, "batch", f"not read: {system.name} has no bank-PIM or Logic-PIM device to time a "
                                         "batch on; its attention pool's rows are the requests it holds")
    if method.name == "quest":
        settings = [(budget, {"budget": budget}) for budget in method.budgets]
    else:
        fraction, sinks, recent = duo_settings(method, workload)
        settings = [(None, {"budget": None, **retrieval_fields(workload, fraction)})]
    # the KV room as bytes of each KV head once, as the requests' bytes (`kv_selection.dense_kv_bytes`) count them: a
    # PIM system's room is bytes of its TP ranks' KV (`SystemModel.kv_bytes_per_token`), each of tp > kv_heads ranks
    # holding a copy of its KV head; a memory pool keeps each head once (`OffloadModel.kv_bytes_per_token`)
    capacity = model.kv_capacity_bytes * (kv_selection.dense_kv_bytes(workload, 1) / model.kv_bytes_per_token
                                          if pims else 1.0)
    device_kv_heads = int((model.pool if pool is not None else model).shard.params["kv_heads"])
    rows: list[dict] = []
    for context in contexts:
        # PIM dense times: once a context for all settings, so gated here (the floor pool_batch gives as requests[1])
        dense_holds = math.floor(capacity / kv_selection.dense_kv_bytes(workload, context)) if pims else None
        dense = {d.name: kv_selection.pim_attention_s(d, model.shard, [context] * batch)
                 for d in pims if batch <= dense_holds}
        for budget, fields in settings:
            base = {"method": NAMES[method.name], "model": workload.name, "system": system.name, **fields,
                    "context": context}
            requests = (kv_selection.quest_pool_batch(capacity, workload, context, budget, method.page_tokens)
                        if budget is not None
                        else kv_selection.pool_batch(capacity, workload, context, fraction, sinks, recent))
            effective = (kv_selection.quest_mean_effective_context(workload, context, budget, method.page_tokens)
                         if budget is not None
                         else kv_selection.duo_device_effective_context(workload, device_kv_heads, context, fraction,
                                                                        sinks, recent))
            rows += [_pim_row(base, d, model, effective, batch, requests, dense.get(d.name)) for d in pims]
            if pool is not None:
                one_request = None if all(requests) else (
                    kv_selection.quest_kv_bytes(workload, context, budget, method.page_tokens) if budget is not None
                    else kv_selection.duo_kv_bytes(workload, context,
                                                   kv_selection.retrieval_heads_per_layer(workload, fraction), sinks,
                                                   recent),
                    kv_selection.dense_kv_bytes(workload, context))
                rows.append({**base, "device": pool, "kind": system.devices[pool].kind,
                             "effective_context": effective, "batch": None,
                             "time_s": _pool_attention_s(model, effective, requests[0]),
                             "dense_time_s": _pool_attention_s(model, context, requests[1]),
                             "fits": None, "dense_fits": None,
                             "reason": _pool_reason(base, capacity, requests, one_request) if one_request else None,
                             "requests": requests[0], "dense_requests": requests[1]})
    return rows


def _pool_reason(base: dict, capacity_bytes: float, requests: tuple[int, int],
                 request_bytes: tuple[float, float]) -> str:
    """Why a memory pool's row times no request on a side (the method's, dense, holding `requests`): one request's
    KV cache on it, `request_bytes`, exceeds the pool's KV room."""
    sides = [f"{side} {size / 1e9:.1f} GB" for side, size, held in
             zip((base["method"], "dense"), request_bytes, requests, strict=True) if not held]
    return (f"one request's KV cache at {base['context']} tokens ({', '.join(sides)}) exceeds {base['system']}'s "
            f"pool KV room, {capacity_text(capacity_bytes)}")


def _pool_attention_s(model: OffloadModel, context: int, requests: int) -> float | None:
    """One layer's decode attention on the memory pool of `requests` requests reading `context` tokens' worth of K
    and V each, as the offload model times it (`OffloadModel.attention_cost`, its layer's `attention_s`: one kernel
    call over a memory device's heads, the devices in parallel); None for no request."""
    return model.attention_cost([context] * requests).time_s if requests else None


def _pim_row(base: dict, device: DeviceModel, model: SystemModel, effective: int, batch: int, holds: tuple[int, int],
             dense_time_s: float | None) -> dict:
    """A PIM device's row at one context and setting (module docstring): a side whose `batch` requests' KV (dense:
    the whole cache; Quest: it and its page metadata; DuoAttention: what it keeps) exceeds the system's KV room,
    which holds `holds` (method, dense) requests of this context, is not timed (`dense_time_s` None there)."""
    fits, dense_fits = batch <= holds[0], batch <= holds[1]
    reason = None if fits and dense_fits else (
        f"{base['system']}'s KV room, {capacity_text(model.kv_capacity_bytes)}, holds {holds[1]} requests of "
        f"{base['context']} tokens dense, {holds[0]} with {base['method']}: not {batch}")
    return {**base, "device": device.name, "kind": device.kind, "effective_context": effective, "batch": batch,
            "time_s": kv_selection.pim_attention_s(device, model.shard, [effective] * batch) if fits else None,
            "dense_time_s": dense_time_s, "fits": fits, "dense_fits": dense_fits, "reason": reason,
            "requests": None, "dense_requests": None}
