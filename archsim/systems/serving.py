"""LLM serving simulator: iteration-level continuous batching over a paged KV cache, costs from a system model.

Scheduling follows Orca (Yu et al., OSDI'22) for iteration-level batching and vLLM (Kwon et al., SOSP'23) for the
paged KV cache and preemption. The assumptions, all in one place:

- Time advances only by iterations. An engine process repeats: pick the batch, ask `model.iteration(batch)` for its
  cost, wait `time_s`, then emit one token for every request in the batch. A request arriving during an iteration
  joins at the next one (iteration-level scheduling, Orca §3.1); requests arriving at the same instant arrive
  together, and an arrival at the very instant an iteration ends joins the next iteration or the one after,
  by SimPy's event order. With nothing to run the engine sleeps until an arrival.
- Closed loop (`closed_loop=N`, Duplex's evaluation, pim.md §2.4): arrival times are ignored; the first N requests
  arrive at 0 and each request that finishes (or is rejected) releases the next one at that instant, so N requests
  are in the system until the list runs out.
- Tokens. A prefill of a prompt of P tokens writes P tokens of KV and emits the first output token; each decode
  step of a request with k tokens of KV processes context k + 1 (the `Batch.decode_context_tokens` convention),
  writes one token of KV and emits one token. A request wanting O tokens therefore runs 1 prefill and O - 1 decodes
  and holds at most P + O - 1 tokens of KV. There is no chunked prefill: a prompt is prefilled in one iteration.
- KV cache (vLLM §4): `capacity_pages` = floor(kv_capacity_bytes / (kv_bytes_per_token * page_tokens)); pages are
  allocated as contexts grow and freed when a request finishes or is preempted. A request whose P + O - 1 tokens
  would not fit in the whole cache can never run: it is rejected on arrival (listed in `rejected_ids`), never
  admitted; so is one longer than the model says one request may hold (`request_kv_tokens`, where a model has it:
  a bank-PIM keeps each request's KV on one channel, `archsim.systems.pim_device`; listed in `beyond_request_kv_ids`
  too, where the whole cache would hold it).
- Expert parallelism (a model's `kv_groups`, its ep; DP attention, each group serving its own requests): the
  cache is that many pools of `capacity_pages` / groups pages (each group's room floored to whole pages apart). A
  request is assigned a group when admitted and keeps it until it finishes or is preempted (SGLang's DP attention
  and vLLM's data-parallel attention keep a request on the rank that admitted it): of the groups whose pool holds
  its prompt's pages leaving that pool's watermark (waived on an empty pool), the one with the fewest admitted
  requests (vLLM's DP load balancing by request counts, SGLang's shortest queue), ties to the most free pages,
  then the lowest index. Its pages are its group's, and each iteration's `Batch` names every request's group
  (`prefill_ep_groups`, `decode_ep_groups`) for the model to cost each group's own. A short pool preempts its own
  latest admitted running request, as below, until it fits; a preempted request is assigned afresh when
  readmitted; a request needing more than a pool is rejected on arrival.
- A request whose prefill the system cannot run is rejected too (in `rejected_ids` and in `unrunnable_ids`), when
  its iteration is costed: a system raises `UnrunnableOp` for a batch holding a call it cannot run (eager
  attention's N x N scores beyond the memory a GPU's weights leave, `archsim.systems.gpu_device`; a batch whose
  memory exceeds a GPU's, `SystemModel.check_memory`, a context-parallel rank's share,
  `ContextParallelModel.check_rank_memory`, or attention offloading's compute replica). The engine then costs each
  of the iteration's prefills alone, refuses those that cannot run alone (freeing their pages) and costs the
  iteration again without them; when every one runs alone, the latest admitted goes back to the front of the queue
  (its pages freed, counted in `prefill_deferrals`) until the iteration runs (unmixed, a lone prefill that does not
  fit beside the running requests' cache waits while they decode one step); a failure with no prefill left to defer
  stops the run (a SpecError). A request at the front of the queue that its pages keep out is refused there when its
  prefill cannot run alone, rather than hold up the queue until admitted. Whether a prefill runs is taken to be
  monotone in its length (what it holds grows with it), so a run costs a lone prefill only for lengths between the
  longest known to run and the shortest known not to (`_Prefills`), and a system that never raises is asked for
  nothing but its iterations and, while the queue's front waits for pages, lone prefills of lengths not yet known to
  run. A request preempted after its first token whose recompute (prompt and emitted tokens) cannot run is refused
  then (in `recompute_ids` too): its emitted tokens leave the counts, the steady window's those it emitted by the
  window's end (its gaps between tokens stay among the TBT samples).
- Each iteration, first every running request reserves the page its next token needs, oldest admission first.
  When pages run out the latest admitted running request (of the short pool's group) is preempted by recompute
  (vLLM §4.5, the default for single-sequence requests): its pages are freed and it returns to the front of the
  queue; when readmitted it prefills its prompt plus the tokens it already emitted and emits its next token.
  Emitted tokens are never taken back.
- Admission is first-come first-served and stops at the first request that does not fit (no skipping): a waiting
  request is admitted while the batch has fewer than `max_batch` requests, the iteration's prefill tokens stay
  within `max_prefill_tokens` (a prompt longer than the budget is admitted alone), and its pages fit leaving
  `watermark_fraction` of the cache's pages free, rounded down to whole pages (vLLM's watermark; waived when the
  cache is empty so that any feasible request can always start). Nothing is admitted in an iteration that
  preempted.
- `mix_prefill_decode=True` (default, Orca's selective batching; `BATCHING`'s "mixed"): new prefills join the
  decodes of the same iteration. `False` (vLLM v0's scheduler without chunked prefill, "prefill-first"): an
  iteration that admits anyone runs only prefills and the running requests wait for the next one, their KV held
  beside it (`Batch.held_kv_tokens`); admission then comes before the decode page reservations, and
  `max_prefill_tokens` is vLLM's max_num_batched_tokens (which ignores a longer prompt; here it runs alone).
- Metrics: TTFT = first token time - arrival; TBT = gaps between consecutive tokens of a request (a gap spanning a
  preemption is included); throughput = output tokens / makespan, makespan = last finish - first arrival of the
  admitted requests, so it includes the drain after the last admission, when the batch empties and the longest
  request finishes alone; steady throughput = the tokens the iterations emitted up to the last first token (the
  last request's admission: the queue runs dry after it), over the window from the first arrival to it
  (`steady_end_s`; an open-loop run that keeps up ends it at the last arrival plus that request's TTFT), the
  drain left out; NaN (no steady window) where no request of more than one output token (one that decoded, at
  its first token's time too where its decodes took none) finished by then, the end included: no decode slot was
  freed, so the window held only the batch's fill (an offline batch admitted at once, one request, a burst that
  ends while its first requests still decode). A request of one output
  token finishes at its own first token, having decoded nothing: it turns no window over, so a burst with one among
  it has none either, and a run of such requests alone has none (its throughput is the makespan's);
  utilization of a unit = its summed `busy_s` / makespan; energy = summed iteration energy plus
  the model's `static_w` over the makespan's idle time (no iteration running: the devices' static power is drawn
  busy or idle; a device priced by board power has no idle power in its preset, so nothing is charged idle);
  energy per token = energy / output tokens (prompt tokens are not counted as produced), NaN (unknown) when an
  iteration's energy is (a device without an energy model) or no token was produced (`energy_per_token_j`).
  Percentiles interpolate linearly between ranks; a percentile of no samples (e.g. TBT when every request wants
  one token) is NaN.
"""

from __future__ import annotations

import gc
import math
import reprlib
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import simpy

from archsim.errors import SpecError, kind_of
from archsim.model.trace import DEVICE_PID, US_PER_S, Span
from archsim.model.trace import chrome_trace as trace_events
from archsim.record import PJ_PER_J, Record
from archsim.systems.iteration import Batch, IterationCost, IterationModel
from archsim.systems.kv_cache import PagedKVCache, kv_capacity_pages
from archsim.systems.requests import Request, check_requests
from archsim.systems.step import UnrunnableOp

COST_METRIC = "cost_per_token_usd"
# A serving run's own metrics (`ServingResult.record` extras), beside every record's `archsim.record.METRICS`
SERVING_METRICS = ("throughput_tok_s", "energy_per_token_j", COST_METRIC, "ttft_p50_s", "ttft_p99_s", "tbt_p50_s",
                   "tbt_p99_s")
S_PER_HOUR = 3600.0


MAX_PAGE_TOKENS = 2**16  # tokens per KV page at most: the engine keeps a set of requests per token offset of a page
# The scheduler's policies by name (`simulate --batching`, a sweep's `serving.batching`) -> `mix_prefill_decode`:
# Orca's selective batching, prefills joining the decodes' iteration, or vLLM v0's prefill-first scheduler
BATCHING = {"mixed": True, "prefill-first": False}
DEFAULT_BATCHING = "mixed"  # `ServingConfig`'s, and a run's or a sweep's without --batching or serving.batching


@dataclass(frozen=True)
class ServingConfig:
    """Scheduler knobs. Defaults follow vLLM: 256 sequences, 16-token blocks, a 1% watermark."""

    max_batch: int = 256
    page_tokens: int = 16
    max_prefill_tokens: int | None = None
    mix_prefill_decode: bool = BATCHING[DEFAULT_BATCHING]
    watermark_fraction: float = 0.01

    def __post_init__(self) -> None:
        def whole(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        for name in ("max_batch", "page_tokens"):
            if not whole(getattr(self, name)):
                raise SpecError("<python>", f"serving.{name}", f"expected an integer >= 1, got {getattr(self, name)!r}")
        if self.page_tokens > MAX_PAGE_TOKENS:
            raise SpecError("<python>", "serving.page_tokens", f"expected at most {MAX_PAGE_TOKENS} tokens per KV "
                                                               f"page (vLLM's are 8 to 32), got {self.page_tokens}")
        if self.max_prefill_tokens is not None and not whole(self.max_prefill_tokens):
            raise SpecError("<python>", "serving.max_prefill_tokens",
                            f"expected an integer >= 1 or None, got {self.max_prefill_tokens!r}")
        if not isinstance(self.mix_prefill_decode, bool):
            raise SpecError("<python>", "serving.mix_prefill_decode",
                            f"expected true or false, got {self.mix_prefill_decode!r}")
        fraction = self.watermark_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
            raise SpecError("<python>", "serving.watermark_fraction", f"expected a fraction in [0, 1), got "
                                                                      f"{fraction!r}")

    @property
    def batching(self) -> str:
        """The policy's name in `BATCHING`: "mixed" or "prefill-first"."""
        return next(name for name, mixes in BATCHING.items() if mixes == self.mix_prefill_decode)

    def batching_entry(self) -> dict[str, str]:
        """{"batching": its name} where the policy is not `DEFAULT_BATCHING`, else nothing: what a run's metrics and a
        sweep point's key record, so that those written before the batching was a knob stand."""
        return {} if self.batching == DEFAULT_BATCHING else {"batching": self.batching}


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one admitted request (times in seconds of simulated time)."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    first_token_s: float
    finish_s: float
    preemptions: int

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s


@dataclass(frozen=True)
class IterationRecord:
    """One iteration: its span, how many requests prefilled (and their prompt tokens) and decoded (and the tokens of
    KV they read, their contexts summed), the KV pages in use while it ran, and those in use at its end, after the
    requests it finished freed theirs (`pages_after`)."""

    start_s: float
    end_s: float
    n_prefill: int
    n_decode: int
    prefill_tokens: int
    pages_used: int
    decode_kv_tokens: int = 0
    pages_after: int = field(kw_only=True)


@dataclass(frozen=True)
class ServingResult:
    """A run: per admitted request what happened (`requests`, by id), the ids rejected as never fitting the cache
    (those longer than one request's KV may be, the cache holding them, also in `beyond_request_kv_ids`) or as asking
    for a prefill the system cannot run (those also in `unrunnable_ids`, and why the shortest such prefill cannot run
    in `unrunnable_reason`; those refused only for their recompute after a preemption also in `recompute_ids`), the
    serving metrics (module docstring), the totals, and the
    iteration `timeline` when run with `trace=True`. Percentiles of no samples are NaN (write them as null in
    JSON)."""

    system: str
    config: ServingConfig
    requests: tuple[RequestRecord, ...]
    rejected_ids: tuple[int, ...]
    beyond_request_kv_ids: tuple[int, ...]  # rejected as holding more KV than one request may, the cache holding it
    request_kv_tokens: float  # the most tokens of KV one request may hold (`request_kv_tokens`; inf: no such limit)
    makespan_s: float
    output_tokens: int
    throughput_tok_s: float
    steady_end_s: float  # the last first token's time (NaN with no request admitted): the steady window's end
    steady_throughput_tok_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    tbt_p50_s: float
    tbt_p99_s: float
    utilization: Mapping[str, float]
    energy_j: float
    energy_per_token_j: float
    iterations: int
    preemptions: int
    capacity_pages: int
    peak_pages: int  # the most pages held while an iteration ran (a refused prefill's never were)
    timeline: tuple[IterationRecord, ...] = field(default=())
    unrunnable_ids: tuple[int, ...] = ()
    unrunnable_reason: str = ""
    prefill_deferrals: int = 0  # times an admitted prefill went back to the queue: its iteration could not hold it
    recompute_ids: tuple[int, ...] = ()  # of `unrunnable_ids`, those refused when their recompute could not run

    def record(self, price_per_hour: float = math.nan) -> Record:
        """The record every target writes (`archsim.record`): time = the p99 time between tokens, energy = per
        output token, busy seconds over the makespan; extras = `SERVING_METRICS`, the steady throughput (module
        docstring) and the run's counts (output tokens, iterations, preemptions, prefill deferrals, KV pages at peak
        and in all). `price_per_hour` is the whole run's devices' (NaN if unknown): cost per token = price x
        makespan / output tokens. A run that rejected a request is infeasible (`rejection`): its throughput would be
        over fewer requests."""
        tokens = self.output_tokens
        cost = price_per_hour * self.makespan_s / S_PER_HOUR / tokens if tokens else math.nan
        extras = {"throughput_tok_s": self.throughput_tok_s, "steady_throughput_tok_s": self.steady_throughput_tok_s,
                  "energy_per_token_j": self.energy_per_token_j,
                  COST_METRIC: cost, "ttft_p50_s": self.ttft_p50_s, "ttft_p99_s": self.ttft_p99_s,
                  "tbt_p50_s": self.tbt_p50_s, "tbt_p99_s": self.tbt_p99_s, "makespan_s": self.makespan_s,
                  "output_tokens": tokens, "iterations": self.iterations, "preemptions": self.preemptions,
                  "prefill_deferrals": self.prefill_deferrals, "kv_pages_peak": self.peak_pages,
                  "kv_pages_capacity": self.capacity_pages}
        busy = {unit: u * self.makespan_s for unit, u in self.utilization.items()}
        reason = self.rejection
        return Record("serving", self.system, not reason, reason, self.tbt_p99_s, self.energy_per_token_j * PJ_PER_J,
                      busy_s=busy, busy_window_s=self.makespan_s, extras=extras)

    @property
    def rejection(self) -> str:
        """Why the run is not a result for all its requests ("" when it is): how many asked for a prefill the
        system cannot run and how many were preempted and could not run their recompute (the shortest refused
        prefill's reason), how many can never fit its KV cache and how many hold more KV than one request may
        (`request_kv_tokens`); or that it had none."""
        rejected = len(self.rejected_ids)
        if not rejected:
            return "" if self.output_tokens else "no request was served"
        unrunnable, never_fit, beyond = rejected_by_cause(rejected, len(self.unrunnable_ids),
                                                          len(self.beyond_request_kv_ids))
        prompts, recomputes = unrunnable - len(self.recompute_ids), len(self.recompute_ids)
        reason = f"({'the shortest refused: ' if prompts and recomputes else ''}{self.unrunnable_reason})"
        clauses = [(n, what) for n, what in (
            (prompts, f"ask for a prefill {self.system} cannot run{'' if recomputes else ' ' + reason}"),
            (recomputes, f"were preempted and their recompute (prompt and emitted tokens) is a prefill {self.system} "
                         f"cannot run {reason}"),
            (never_fit, f"can never fit the KV cache of {self.system}"),
            (beyond, f"are too long for {request_kv_limit(self.request_kv_tokens)} on {self.system}")) if n]
        (count, what), *rest = clauses
        return "; ".join([f"{count} of {rejected + len(self.requests)} requests {what}",
                          *(f"{n} {more}" for n, more in rest)])


def rejected_by_cause(rejected: int, unrunnable: int, beyond_request_kv: int) -> tuple[int, int, int]:
    """The rejected requests by cause, each once: (asking for a prefill the system cannot run, never fitting the
    whole KV cache, longer than one request's KV may be with the cache holding them); `rejected` counts all three."""
    return unrunnable, rejected - unrunnable - beyond_request_kv, beyond_request_kv


def request_kv_limit(limit_tokens: float) -> str:
    """The limit `request_kv_tokens` sets, in words: one bank-PIM channel's KV (`limit_tokens`), the only model
    with that limit (`SystemModel.request_kv_tokens`)."""
    return f"one bank-PIM channel's KV ({limit_tokens:.0f} tokens)"


def energy_per_token_j(energy_j: float, output_tokens: int) -> float:
    """Energy per output token: NaN with no token (there is no per-token figure) or when the energy is unknown (NaN,
    a device whose energy is not modelled), never a number standing for it."""
    if math.isnan(energy_j) or not output_tokens:
        return math.nan
    return energy_j / output_tokens


def percentile(values: Sequence[float], q: float, weights: Sequence[float] | None = None) -> float:
    """The q-th percentile (0..100) of `values`, linear between ranks (numpy's default); NaN for no values. With
    `weights` (each value counted that many times: the tokens an iteration emits), the smallest value whose
    weighted share of the values at or below it reaches q % (numpy's `inverted_cdf`, the only method numpy weighs):
    a value that occurs, as a token's time between tokens is one iteration's time."""
    if not len(values):
        return math.nan
    if weights is None:
        return float(np.percentile(values, q))
    return float(np.percentile(values, q, weights=weights, method="inverted_cdf"))


class _Live:
    """A request's own state in the system (internal to the engine process). While it runs, what changes every
    iteration (its KV tokens, its last token's time, the step of its last token) lives in the engine's lists
    instead (`_Engine`); `emitted` and `last_token_s` are brought up to date when it is preempted."""

    __slots__ = ("emitted", "first_token_s", "last_token_s", "late_since_s", "late_tokens", "preemptions",
                 "prefill_s", "request")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.emitted = 0
        self.first_token_s = math.nan
        self.last_token_s = math.nan
        self.prefill_s = math.nan  # when its latest prefill emitted a token
        self.late_tokens = 0  # of its tokens, those emitted after `late_since_s`, the steady window's end then
        self.late_since_s = math.nan
        self.preemptions = 0


class _Prefills:
    """Whether `model` can run a lone prefill of n tokens (module docstring; in a run, asked only once the model
    refused an iteration; `unservable` asks it once): that prefill's iteration costed alone, where a system that
    cannot run it raises `UnrunnableOp`; only for lengths between the longest known to run and the shortest known
    not to, as whether a prefill runs is taken to be monotone in its length. `reason` says why the shortest known
    not to cannot ("" while none is); `refusal` is that `UnrunnableOp` in full, the spec's file and field first."""

    def __init__(self, model: IterationModel) -> None:
        self.model = model
        self.runs_up_to_tokens = 0
        self.fails_from_tokens = math.inf
        self.reason = self.refusal = ""

    def runs(self, tokens: int) -> bool:
        if tokens <= self.runs_up_to_tokens:
            return True
        if tokens >= self.fails_from_tokens:
            return False
        try:
            self.model.iteration(Batch((tokens,), ()))
        except UnrunnableOp as refused:
            self.fails_from_tokens, self.reason, self.refusal = tokens, refused.message, str(refused)
            return False
        self.runs_up_to_tokens = tokens
        return True


class _Engine:
    """The SimPy processes and their shared state; `simulate_serving` builds one per run.

    The running requests are `running` (admission order) and two lists beside it, one entry per request: the KV
    tokens it holds and the decode step whose token is its last (`steps` counts the iterations in which the running
    requests decoded, each one token for every running request). Their last tokens' times are runs of equal times
    in admission order (all one after a decode step). A request holding k tokens needs a page for its next token
    when k is a multiple of the page: as every running request's k grows by one a step, (k - steps) mod page is
    its own for as long as it runs, and the requests at a page boundary this step are those of one such class. A
    decode step thus costs one pass over the KV tokens (the batch's contexts); a request is looked at alone only
    when it crosses a page boundary, finishes or is preempted."""

    def __init__(self, env: simpy.Environment, model: IterationModel, config: ServingConfig,
                 pools: Sequence[PagedKVCache], trace: bool, pending: Sequence[Request] = ()) -> None:
        self.env, self.model, self.config, self.trace = env, model, config, trace
        self.request_kv_tokens = request_kv_tokens(model)
        self.pools = list(pools)  # the cache's pools, one per expert-parallel group (module docstring)
        self.groups = len(self.pools)
        self.group_of: dict[int, int] = {}  # per admitted request (prefilling or running): its group, until it leaves
        self.group_requests = [0] * self.groups  # per group: the admitted requests it holds
        self.pending = deque(pending)  # closed loop: requests released one per finished request
        # vLLM's `watermark_blocks = int(watermark * num_gpu_blocks)` (block_manager): whole pages, rounded down
        self.watermark_pages = int(config.watermark_fraction * self.pools[0].capacity_pages)
        self.waiting: deque[_Live] = deque()
        self.running: list[_Live] = []  # admission order
        self.kv_tokens: list[int] = []  # per running request: tokens of KV it holds
        self.finish_step: list[int] = []  # per running request: the decode step that emits its last token
        self.last_token_runs: list[tuple[float, int]] = []  # (time, requests): when the running emitted their last
        self.boundary_ids: list[set[int]] = [set() for _ in range(config.page_tokens)]  # by (k - steps) mod page
        self.steps = 0
        self.next_finish = -1  # min(finish_step); -1 with no running request
        self.wake: simpy.Event | None = None
        self.records: list[RequestRecord] = []
        self.rejected: list[int] = []
        self.beyond_request_kv: list[int] = []  # rejected as longer than one request's KV may be, the cache holding it
        self.unrunnable: list[int] = []  # rejected as asking for a prefill the system cannot run
        self.recomputed: list[int] = []  # of those, refused when readmitted after a preemption
        self.prefills = _Prefills(model)
        self.tbt_s: list[float] = []
        self.timeline: list[IterationRecord] = []
        self.busy_s: dict[str, float] = {}
        self.energy_j = 0.0
        self.iteration_s = 0.0  # the iterations' summed time
        self.iterations = 0
        self.emitted_tokens = 0  # the tokens the iterations emitted
        self.last_first_token_s = math.nan  # when a request last emitted its first token: the steady window's end
        self.steady_tokens = 0  # the tokens the iterations emitted up to then
        self.steady_steps = 0  # the decode steps up to then
        self.preemptions = 0
        self.peak_pages = 0  # the most pages held while an iteration ran
        self.prefill_deferrals = 0  # times an admitted prefill went back to the queue
        self.decode_first = False  # unmixed: the next iteration decodes (a deferred prefill waits for room)

    def arrivals(self, requests: list[Request]) -> Generator[simpy.Event, None, None]:
        for request in requests:
            if request.arrival_s > self.env.now:
                yield self.env.timeout(request.arrival_s - self.env.now)
            self._arrive(request)

    def _arrive(self, request: Request) -> None:
        """`request` joins the queue, or is rejected when it can never fit; in a closed loop a rejected request
        releases the next pending one, and so on, in a loop (a recursion would take two frames per rejection)."""
        while not self._enqueue(request) and self.pending:
            request = replace(self.pending.popleft(), arrival_s=self.env.now)

    def _enqueue(self, request: Request) -> bool:
        """`request` to the back of the queue, waking the engine; False (rejected) when it can never fit."""
        tokens = kv_tokens(request)
        beyond_cache = self.pools[0].pages_for(tokens) > self.pools[0].capacity_pages
        if beyond_cache or tokens > self.request_kv_tokens:
            self.rejected.append(request.id)
            if not beyond_cache:
                self.beyond_request_kv.append(request.id)
            return False
        self.waiting.append(_Live(request))
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()
        return True

    def _release(self) -> None:
        """Closed loop: the next pending request arrives now (with those after it that `_arrive` rejects)."""
        if self.pending:
            self._arrive(replace(self.pending.popleft(), arrival_s=self.env.now))

    def _boundary_class(self, kv_tokens: int) -> set[int]:
        """The ids of the running requests that cross a page boundary in the same steps as one holding `kv_tokens`
        now."""
        return self.boundary_ids[(kv_tokens - self.steps) % self.config.page_tokens]

    def _used_pages(self) -> int:
        """The pages the admitted requests hold, every pool's."""
        return sum(pool.used_pages for pool in self.pools)

    def _latest_of_group(self, group: int) -> int:
        """The place in `running` of the latest admitted running request of `group` (with one group, the last)."""
        if self.groups == 1:
            return len(self.running) - 1
        group_of = self.group_of
        return next(j for j in range(len(self.running) - 1, -1, -1) if group_of[self.running[j].request.id] == group)

    def _preempt(self, j: int) -> None:
        """The `j`th running request to the front of the queue, its pages freed."""
        runs, end = self.last_token_runs, len(self.running)
        k = len(runs) - 1
        while j < end - runs[k][1]:  # the run of equal last-token times holding it
            end -= runs[k][1]
            k -= 1
        last_s, count = runs[k]
        if count > 1:
            runs[k] = (last_s, count - 1)
        else:
            del runs[k]
        live, tokens, finish_step = self.running.pop(j), self.kv_tokens.pop(j), self.finish_step.pop(j)
        self._boundary_class(tokens).remove(live.request.id)
        joined_step = finish_step - live.request.output_tokens + live.emitted  # `emitted` as when it joined
        live.emitted = live.request.output_tokens - (finish_step - self.steps)
        live.last_token_s = last_s
        self._count_late_tokens(live, joined_step)
        live.preemptions += 1
        self.preemptions += 1
        self._requeue(live)

    def _count_late_tokens(self, live: _Live, joined_step: int) -> None:
        """Of `live`'s tokens, now that it is preempted, count those emitted after the steady window's end as it
        stands (`late_tokens`): its decodes since it joined at `joined_step` that came after the window's last
        step, and its prefill's token if that came after the window. Those counted against an earlier end all
        precede the current one, set after the preemption that counted them."""
        end_s = self.last_first_token_s
        if live.late_since_s != end_s:
            live.late_tokens, live.late_since_s = 0, end_s
        live.late_tokens += self.steps - max(joined_step, self.steady_steps) + (live.prefill_s > end_s)

    def _requeue(self, live: _Live) -> None:
        """`live` back to the front of the queue, its pages freed and its group left (preempted, or a prefill
        deferred)."""
        self._leave(live.request.id)
        self.waiting.appendleft(live)

    def _leave(self, request_id: int) -> None:
        """An admitted request's pages freed and its group given up (nothing for one never admitted)."""
        group = self.group_of.pop(request_id, None)
        if group is not None:
            self.pools[group].free(request_id)
            self.group_requests[group] -= 1

    def _reserve_decodes(self) -> bool:
        """Reserve the next token's page for each running request, oldest admission first, preempting the latest
        admitted of its group when its group's pool is short; True when someone was preempted. Only the requests
        at a page boundary need one (class docstring)."""
        if self._grow_boundary():
            return False  # every page fits: no one is preempted
        preempted, i = False, 0
        while i < len(self.running):
            request_id, tokens = self.running[i].request.id, self.kv_tokens[i] + 1
            group = self.group_of[request_id]
            pool = self.pools[group]
            if pool.fits(request_id, tokens):
                pool.grow(request_id, tokens)
                i += 1
            else:  # the latest admitted of its group, or this request itself when it is its group's last
                preempted = True
                self._preempt(self._latest_of_group(group))
        self.next_finish = min(self.finish_step, default=-1)
        return preempted

    def _grow_boundary(self) -> bool:
        """A page more for each running request at a page boundary if every group's pool has room for its own;
        else change nothing and return False."""
        boundary = self._boundary_class(0)
        if self.groups == 1:
            return self.pools[0].grow_one_page(boundary)
        by_group: list[list[int]] = [[] for _ in self.pools]
        for request_id in boundary:
            by_group[self.group_of[request_id]].append(request_id)
        if any(len(ids) > pool.free_pages for pool, ids in zip(self.pools, by_group, strict=True)):
            return False
        for pool, ids in zip(self.pools, by_group, strict=True):
            pool.grow_one_page(ids)
        return True

    def _group_for(self, request_id: int, tokens: int) -> int | None:
        """The group a request of `tokens` tokens is admitted to (module docstring): of the groups whose pool holds
        its pages leaving the watermark (waived on an empty pool), the one with the fewest admitted requests, ties
        to the most free pages, then the lowest index; None where none holds it."""
        fitting = [g for g, pool in enumerate(self.pools)
                   if pool.fits(request_id, tokens, self.watermark_pages if pool.used_pages else 0)]
        return min(fitting, key=lambda g: (self.group_requests[g], -self.pools[g].free_pages), default=None)

    def _admit(self, n_running: int) -> list[_Live]:
        """Admit waiting requests first-come first-served while slots, the prefill budget and pages allow, each to
        its group (`_group_for`), which it keeps until it leaves."""
        prefills: list[_Live] = []
        budget, prefill_tokens = self.config.max_prefill_tokens, 0
        while self.waiting and n_running + len(prefills) < self.config.max_batch:
            live = self.waiting[0]
            request_id, tokens = live.request.id, live.request.prompt_tokens + live.emitted
            if prefills and budget is not None and prefill_tokens + tokens > budget:
                break
            group = self._group_for(request_id, tokens)
            if group is None:
                if self.prefills.runs(tokens):
                    break
                self._refuse(self.waiting.popleft())  # it would hold up the queue only to be refused when admitted
                continue
            self.waiting.popleft()
            self.group_of[request_id] = group
            self.group_requests[group] += 1
            self.pools[group].grow(request_id, tokens)
            prefills.append(live)
            prefill_tokens += tokens
        return prefills

    def _schedule(self) -> tuple[list[_Live], bool]:
        """This iteration's prefills, and whether the running requests decode; preempted requests leave the running
        lists for the queue."""
        if not self.config.mix_prefill_decode:
            prefills = [] if self.decode_first else self._admit(len(self.running))
            self.decode_first = False
            if prefills:
                return prefills, False
            self._reserve_decodes()
            return [], True
        preempted = self._reserve_decodes()
        return ([] if preempted else self._admit(len(self.running))), True

    def _finish(self, live: _Live, now_s: float) -> None:
        self._leave(live.request.id)
        r = live.request
        self.records.append(RequestRecord(r.id, r.arrival_s, r.prompt_tokens, r.output_tokens, live.first_token_s,
                                          now_s, live.preemptions))
        self._release()

    def _emit_prefills(self, prefills: list[_Live], prefill_tokens: list[int],
                       now_s: float) -> list[tuple[_Live, int]]:
        """One token for each prefilled request at `now_s`; those not done, with the tokens they prefilled."""
        joining = []
        for live, tokens in zip(prefills, prefill_tokens, strict=True):
            live.emitted += 1
            live.prefill_s = now_s
            if live.emitted == 1:
                live.first_token_s = self.last_first_token_s = now_s
            else:
                self.tbt_s.append(now_s - live.last_token_s)
            if live.emitted < live.request.output_tokens:
                joining.append((live, tokens))
            else:
                self._finish(live, now_s)
        return joining

    def _emit_decodes(self, contexts: list[int], now_s: float) -> None:
        """One token for each running request at `now_s`, which now holds `contexts` tokens; the finished leave."""
        for last_s, count in self.last_token_runs:
            self.tbt_s += [now_s - last_s] * count
        self.kv_tokens = contexts
        self.steps += 1
        if self.steps == self.next_finish:
            steps = self.steps
            for live, tokens, step in zip(self.running, contexts, self.finish_step, strict=True):
                if step == steps:
                    self._boundary_class(tokens).remove(live.request.id)
                    self._finish(live, now_s)
            keep = [i for i, step in enumerate(self.finish_step) if step != steps]
            self.running = [self.running[i] for i in keep]
            self.kv_tokens = [contexts[i] for i in keep]
            self.finish_step = [self.finish_step[i] for i in keep]
            self.next_finish = min(self.finish_step, default=-1)
        self.last_token_runs = [(now_s, len(self.running))] if self.running else []

    def _join(self, joining: list[tuple[_Live, int]], now_s: float) -> None:
        """The prefilled requests not done, each with the tokens it holds, join the running ones."""
        for live, tokens in joining:
            self.running.append(live)
            self.kv_tokens.append(tokens)
            self.finish_step.append(self.steps + live.request.output_tokens - live.emitted)
            self._boundary_class(tokens).add(live.request.id)
        self.last_token_runs.append((now_s, len(joining)))
        self.next_finish = min(self.finish_step, default=-1)

    def _refuse(self, live: _Live) -> None:
        """Refuse a request whose prefill the system cannot run (`_Prefills`), freeing any pages it holds. One
        preempted after emitting tokens (its recompute refused) takes them out of the counts: out of the steady
        window's those it emitted by the window's end, the others (`late_tokens`) not counted there yet."""
        self._leave(live.request.id)
        self.rejected.append(live.request.id)
        self.unrunnable.append(live.request.id)
        if live.emitted:
            self.recomputed.append(live.request.id)
            late = live.late_tokens if live.late_since_s == self.last_first_token_s else 0
            self.steady_tokens -= live.emitted - late
            self.emitted_tokens -= live.emitted
        self._release()

    def _batch(self, prefills: list[_Live], lengths: list[int], contexts: list[int], held: int) -> Batch:
        """The iteration's batch; with expert parallelism, with each request's group (the running requests' when
        they decode)."""
        if self.groups == 1:
            return Batch(tuple(lengths), tuple(contexts), held)
        group_of = self.group_of
        decoding = self.running if contexts else ()
        return Batch(tuple(lengths), tuple(contexts), held, tuple(group_of[live.request.id] for live in prefills),
                     tuple(group_of[live.request.id] for live in decoding))

    def _cost(self, prefills: list[_Live], contexts: list[int]) -> tuple[list[_Live], IterationCost | None]:
        """The prefills the iteration runs and its cost (None when it runs nothing): when the system cannot run it
        (`UnrunnableOp`), the prefills it cannot run alone are refused and it is costed again without them; when
        each runs alone, the latest admitted goes back to the front of the queue, its pages freed, and it is
        costed again; with no prefill left, the error stands (module docstring)."""
        while True:
            lengths = [live.request.prompt_tokens + live.emitted for live in prefills]
            held = 0 if contexts else sum(self.kv_tokens)  # an unmixed prefill: the running requests wait, held
            try:
                return prefills, self.model.iteration(self._batch(prefills, lengths, contexts, held))
            except UnrunnableOp:
                runs = [self.prefills.runs(n) for n in lengths]
                if all(runs):
                    lone = len(prefills) == 1 and not contexts
                    if not prefills or (lone and not held):
                        raise  # decodes alone, or a prefill alone that runs alone: nothing to defer
                    self._requeue(prefills.pop())
                    self.prefill_deferrals += 1
                    if lone:  # an unmixed prefill beside the running requests' cache: they decode first
                        self.decode_first = True
                        return [], None
                    continue
                for live, ok in zip(prefills, runs, strict=True):
                    if not ok:
                        self._refuse(live)
                prefills = [live for live, ok in zip(prefills, runs, strict=True) if ok]
                if not prefills and not contexts:
                    return [], None

    def engine(self) -> Generator[simpy.Event, None, None]:
        while True:
            if not self.running and not self.waiting:
                self.wake = self.env.event()
                yield self.wake
                continue
            scheduled, decoding = self._schedule()
            contexts = [tokens + 1 for tokens in self.kv_tokens] if decoding else []
            prefills, cost = self._cost(scheduled, contexts)
            if cost is None:  # every prefill refused, nothing to decode
                continue
            prefill_lengths = [live.request.prompt_tokens + live.emitted for live in prefills]
            pages_used = self._used_pages()
            self.peak_pages = max(self.peak_pages, pages_used)
            if not (math.isfinite(cost.time_s) and cost.time_s >= 0):
                raise SpecError(self.model.name, "iteration", f"expected a finite time_s >= 0, got {cost.time_s}")
            start_s = self.env.now
            yield self.env.timeout(cost.time_s)
            now_s = self.env.now
            self.iterations += 1
            self.iteration_s += cost.time_s
            self.energy_j += cost.energy_j
            for unit, busy_s in cost.busy_s.items():
                self.busy_s[unit] = self.busy_s.get(unit, 0.0) + busy_s
            n_decode = len(contexts)  # now: `_join` appends to `contexts`
            decode_kv_tokens = sum(contexts) if self.trace else 0
            self.emitted_tokens += len(prefills) + n_decode
            joining = self._emit_prefills(prefills, prefill_lengths, now_s) if prefills else []
            if decoding:
                self._emit_decodes(contexts, now_s)
            if joining:
                self._join(joining, now_s)
            if self.trace:  # its finished requests have freed their pages
                self.timeline.append(IterationRecord(start_s, now_s, len(prefills), n_decode, sum(prefill_lengths),
                                                     pages_used, decode_kv_tokens, pages_after=self._used_pages()))
            if self.last_first_token_s == now_s:  # a first token now, or an iteration of no time after one
                self.steady_tokens, self.steady_steps = self.emitted_tokens, self.steps


@contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """The objects alive before a run left out of the cyclic garbage collector's passes during it (`gc.freeze`,
    undone after; only when the collector is on and nothing is frozen yet, as `gc.unfreeze` undoes every freeze).
    A run makes many objects, whose number triggers the passes; each pass would otherwise also walk everything the
    process already holds (loaded specs, the models' caches, pandas and click in the CLI): 5.0 of the 64 s of
    `archsim reproduce duplex`. Cycles the run makes are still collected."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def kv_tokens(request: Request) -> int:
    """The most tokens of KV a request holds: its prompt and every output token but the last (module docstring)."""
    return request.prompt_tokens + request.output_tokens - 1


def request_kv_tokens(model: IterationModel) -> float:
    """The most tokens of KV one request may hold on `model` beyond the cache's own limit: its optional
    `request_kv_tokens` (a bank-PIM channel's; None or absent: no such limit, inf)."""
    limit = getattr(model, "request_kv_tokens", None)
    return math.inf if limit is None else limit


def kv_groups(model: IterationModel) -> int:
    """The separate pools `model`'s KV cache is made of: its optional `kv_groups` (a system model's expert-parallel
    groups; absent: 1), each a `kv_groups`th of `kv_capacity_bytes`."""
    groups = getattr(model, "kv_groups", 1)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise SpecError("<python>", "kv_groups", f"expected a whole number of KV pools >= 1, got {groups!r}")
    return groups


def pool_pages(model: IterationModel, page_tokens: int) -> int:
    """The whole pages of one of the `kv_groups` pools (module docstring): the most one request may hold."""
    return kv_capacity_pages(model.kv_capacity_bytes / kv_groups(model), model.kv_bytes_per_token, page_tokens)


def capacity_pages(model: IterationModel, page_tokens: int) -> int:
    """The whole cache's pages: each of the `kv_groups` pools' whole pages (module docstring), all together."""
    return kv_groups(model) * pool_pages(model, page_tokens)


def check_model(model: IterationModel) -> None:
    """A SpecError naming what `model` lacks of an `IterationModel` (its `iteration` and the numbers the simulator
    reads), or a `static_w` that is not a power >= 0, rather than an AttributeError deep in a run."""
    missing = [name for name in ("iteration", "name", "kv_bytes_per_token", "kv_capacity_bytes", "static_w")
               if not hasattr(model, name)]
    if missing:
        raise SpecError("<python>", "model", f"expected an IterationModel (archsim.systems.iteration), "
                                             f"{type(model).__name__} has no {', '.join(missing)}")
    power = model.static_w
    if isinstance(power, bool) or not isinstance(power, int | float) or not 0 <= power < math.inf:
        raise SpecError("<python>", "static_w", f"expected a finite power >= 0 in W (0 where none is modelled), "
                                                f"got {power!r}")


def unservable(model: IterationModel, requests: Sequence[Request], config: ServingConfig | None = None) -> str | None:
    """Why no request of `requests` could ever run on `model` (all would be rejected, module docstring: each needs
    more KV than the whole cache holds, naming the one that needs the least, or asks for a prefill the system
    cannot run, naming the shortest prompt among those the cache holds and the spec's file and field its refusal
    names); None when one can run."""
    config = config or ServingConfig()
    if not requests:
        return None
    capacity = pool_pages(model, config.page_tokens)  # the most one request may hold
    limit = request_kv_tokens(model)
    fitting = [r for r in requests if -(-kv_tokens(r) // config.page_tokens) <= capacity and kv_tokens(r) <= limit]
    if not fitting:
        least = min(requests, key=lambda r: (kv_tokens(r), r.id))
        need = -(-kv_tokens(least) // config.page_tokens)
        pool = "the cache's" if kv_groups(model) == 1 else "an expert-parallel group's"
        beyond = (f"beyond {pool} {capacity} pages" if need > capacity else
                  f"beyond the {limit} tokens one request's KV may hold on {model.name} (a bank-PIM channel's)")
        return (f"no request can be served on {model.name}: the one needing the least KV cache, request {least.id} "
                f"({least.prompt_tokens} prompt + {least.output_tokens} output tokens), needs {kv_tokens(least)} "
                f"tokens of KV ({need} pages of {config.page_tokens}), {beyond}")
    shortest = min(fitting, key=lambda r: (r.prompt_tokens, r.id))
    prefills = _Prefills(model)
    if prefills.runs(shortest.prompt_tokens):
        return None
    return (f"no request can be served on {model.name}: the shortest prompt the KV cache holds, request "
            f"{shortest.id} ({shortest.prompt_tokens} prompt + {shortest.output_tokens} output tokens), is a prefill "
            f"the system cannot run: {prefills.refusal}")


def simulate_serving(model: IterationModel, requests: Iterable[Request], config: ServingConfig | None = None,
                     trace: bool = False, closed_loop: int | None = None) -> ServingResult:
    """Serve `requests` (any order) on `model` with continuous batching under `config` (default `ServingConfig()`);
    `trace=True` also records every iteration; `closed_loop=N` keeps N requests in the system, in id order,
    ignoring their arrival times (module docstring). Requests that could never fit the KV cache are rejected, not
    admitted, and so are those whose prefill the model cannot run (`UnrunnableOp`). Malformed requests or configs,
    and a model returning a negative or non-finite time, raise SpecError."""
    config = _checked_config(config)
    ordered = sorted(_checked_requests(requests), key=lambda r: (r.arrival_s, r.id) if closed_loop is None else r.id)
    check_requests(ordered)
    if closed_loop is not None and not (isinstance(closed_loop, int) and not isinstance(closed_loop, bool)
                                        and closed_loop >= 1):
        raise SpecError("<python>", "closed_loop", f"expected a number of requests in flight >= 1, got {closed_loop!r}")
    check_model(model)
    capacity = capacity_pages(model, config.page_tokens)
    pools = [PagedKVCache(pool_pages(model, config.page_tokens), config.page_tokens) for _ in range(kv_groups(model))]
    env = simpy.Environment()
    first, pending = (ordered, []) if closed_loop is None else (ordered[:closed_loop], ordered[closed_loop:])
    if closed_loop is not None:
        first = [replace(r, arrival_s=0.0) for r in first]
    engine = _Engine(env, model, config, pools, trace, pending)
    processes = (engine.arrivals(first), engine.engine())
    for process in processes:
        env.process(process)
    with _older_objects_frozen():
        env.run()
    for process in processes:  # the engine waits for requests forever: its frame and the engine hold each other
        process.close()

    records = tuple(sorted(engine.records, key=lambda r: r.id))
    output_tokens = sum(r.output_tokens for r in records)
    first_arrival_s = min((r.arrival_s for r in records), default=0.0)
    makespan_s = max((r.finish_s for r in records), default=0.0) - first_arrival_s
    steady_s = engine.last_first_token_s - first_arrival_s
    # a request of more than one output token (it decoded) that left by the window's end freed a decode slot: else
    # the window is the fill alone. Its finish may be its first token's time, where its decodes took none
    turned_over = any(r.output_tokens > 1 and r.finish_s <= engine.last_first_token_s for r in records)
    ttft_s = [r.ttft_s for r in records]
    # the devices draw their static power between iterations too, while requests are in the system or on their way
    energy_j = engine.energy_j + model.static_w * max(0.0, makespan_s - engine.iteration_s)
    tbt_s = np.asarray(engine.tbt_s, dtype=float)  # one array for both percentiles: a run emits many tokens
    return ServingResult(
        system=model.name,
        config=config,
        requests=records,
        rejected_ids=tuple(sorted(engine.rejected)),
        beyond_request_kv_ids=tuple(sorted(engine.beyond_request_kv)),
        request_kv_tokens=engine.request_kv_tokens,
        makespan_s=makespan_s,
        output_tokens=output_tokens,
        throughput_tok_s=output_tokens / makespan_s if makespan_s > 0 else 0.0,
        steady_end_s=engine.last_first_token_s,
        steady_throughput_tok_s=engine.steady_tokens / steady_s if turned_over and steady_s > 0 else math.nan,
        ttft_p50_s=percentile(ttft_s, 50),
        ttft_p99_s=percentile(ttft_s, 99),
        tbt_p50_s=percentile(tbt_s, 50),
        tbt_p99_s=percentile(tbt_s, 99),
        utilization={unit: busy / makespan_s if makespan_s > 0 else 0.0 for unit, busy in engine.busy_s.items()},
        energy_j=energy_j,
        energy_per_token_j=energy_per_token_j(energy_j, output_tokens),
        iterations=engine.iterations,
        preemptions=engine.preemptions,
        capacity_pages=capacity,
        peak_pages=engine.peak_pages,
        timeline=tuple(engine.timeline),
        unrunnable_ids=tuple(sorted(engine.unrunnable)),
        unrunnable_reason=engine.prefills.reason,
        prefill_deferrals=engine.prefill_deferrals,
        recompute_ids=tuple(sorted(engine.recomputed)),
    )


def _checked_config(config: object) -> ServingConfig:
    """`simulate_serving`'s `config`: a ServingConfig, or None for the default; anything else a SpecError naming it
    (a dict's keys would otherwise fail as an AttributeError deep in the run)."""
    if config is None:
        return ServingConfig()
    if not isinstance(config, ServingConfig):
        raise SpecError("<python>", "config", f"expected a ServingConfig (e.g. ServingConfig(max_batch=8)) or None, "
                                              f"got {kind_of(config)} {reprlib.repr(config)}")
    return config


def _checked_requests(requests: object) -> list[Request]:
    """`simulate_serving`'s `requests` as a list: an iterable of Request, each item checked before anything reads
    its fields; otherwise a SpecError naming `requests` (or `requests[i]`, the first item that is no Request)."""
    if not isinstance(requests, Iterable) or isinstance(requests, str | bytes | Mapping):
        raise SpecError("<python>", "requests", f"expected an iterable of Request (a list, or poisson_requests(...)), "
                                                f"got {kind_of(requests)} {reprlib.repr(requests)}")
    listed = list(requests)
    for i, r in enumerate(listed):
        if not isinstance(r, Request):
            raise SpecError("<python>", f"requests[{i}]", f"expected a Request(id, arrival_s, prompt_tokens, "
                                                          f"output_tokens), got {kind_of(r)} {reprlib.repr(r)}")
    return listed


def chrome_trace(result: ServingResult) -> dict:
    """The iteration timeline (needs `trace=True`) as Chrome trace events (`archsim.model.trace`): one complete
    event per iteration on the resource "iterations", plus a counter of KV pages in use (`kv_pages_samples`)."""
    spans = [Span("iterations", f"{it.n_prefill} prefill + {it.n_decode} decode", it.start_s, it.end_s,
                  {"iteration": i, "n_prefill": it.n_prefill, "n_decode": it.n_decode,
                   "prefill_tokens": it.prefill_tokens, "pages_used": it.pages_used})
             for i, it in enumerate(result.timeline)]
    trace = trace_events(spans, {"system": result.system, "capacity_pages": result.capacity_pages})
    trace["traceEvents"] += [{"name": "kv_pages_used", "ph": "C", "pid": DEVICE_PID, "ts": time_s * US_PER_S,
                              "args": {"pages": pages}} for time_s, pages in kv_pages_samples(result.timeline)]
    return trace


def kv_pages_samples(timeline: Sequence[IterationRecord]) -> list[tuple[float, int]]:
    """The KV pages in use over `timeline` as a counter's samples (time_s, pages), each holding until the next, as
    a trace viewer draws a counter: one at each iteration's start (the pages it runs with) and, where the cache then
    waits (the next iteration starts later, or none does) holding other pages than it ran with, one at its end (the
    pages left once its finished requests freed theirs: 0 when the cache empties, as at the run's end). Of samples
    at one time (an iteration followed at once by the next, one of no time) only the last is kept, the value that
    holds from then on, so no two share a time."""
    samples = []
    for it, after in zip(timeline, [*timeline[1:], None], strict=True):
        samples.append((it.start_s, it.pages_used))
        waits = after is None or after.start_s > it.end_s
        if waits and it.pages_after != it.pages_used:
            samples.append((it.end_s, it.pages_after))
    return [sample for sample, later in zip(samples, [*samples[1:], None], strict=True)
            if later is None or later[0] != sample[0]]
