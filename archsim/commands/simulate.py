"""`archsim simulate`: LLM serving on a system, driven by the serving simulator (`archsim.systems.serving`).

The system is a system spec (`archsim.systems.system_spec`: a library preset such as gpu, npu-only, npu+pim,
neupims, neupims-no-sbi, or a YAML file) running a library workload with the spec's parallelism for it or
--tp/--pp (`archsim.systems.system_model`); requests come from a trace file (CSV or JSON Lines,
`archsim.systems.requests.read_trace`) or a seeded Poisson process with ShareGPT- or Alpaca-like lengths. The
scheduler mixes prefills into the decodes' iterations (Orca's) unless --batching prefill-first (vLLM v0's: decodes
wait while prompts do; `serving.BATCHING`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click

from archsim.commands.options import RealRange, Size, WholeRange, nan_as_null, nonempty
from archsim.dse.system_points import with_link
from archsim.errors import SpecError
from archsim.model.trace import write_chrome_trace
from archsim.outputs import CHROME_TRACE, check_writable, write_text
from archsim.systems import neupims
from archsim.systems.offload import OffloadModel, peak_batch_link_feasibility
from archsim.systems.offload_events import SPANS_NOTE
from archsim.systems.requests import (
    LENGTH_PRESETS,
    MAX_REQUESTS,
    MAX_REQUESTS_ENV,
    TRACE_FORMATS,
    check_request_count,
    checked_poisson_requests,
    read_trace,
)
from archsim.systems.schedule_events import LongestDecode, replay_iteration, unreplayable
from archsim.systems.serving import (
    BATCHING,
    DEFAULT_BATCHING,
    ServingConfig,
    ServingResult,
    chrome_trace,
    rejected_by_cause,
    request_kv_limit,
    simulate_serving,
    unservable,
)
from archsim.systems.system_messages import untimed_messages
from archsim.systems.system_model import SystemModel
from archsim.systems.system_spec import load_system
from archsim.systems.system_types import System


@click.command("simulate")
@click.option("--system", "-s", "system_name", required=True, metavar="NAME|FILE", callback=nonempty,
              help="System spec: a library system (archsim list) or a YAML file.")
@click.option("--workload", "-w", required=True, metavar="W", callback=nonempty,
              help="Model: a library workload naming its decoder block (e.g. gpt3-7b, llama3-70b, mixtral-8x7b) "
                   "or a YAML file.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False), callback=nonempty,
              help=f"Requests trace, told by its content: {TRACE_FORMATS} (instead of --rate/--requests).")
@click.option("--rate", type=RealRange(min=0, min_open=True), help="Poisson arrivals per second.")
@click.option("--requests", "n_requests", type=WholeRange(min=1),
              help=f"How many Poisson requests (at most {MAX_REQUESTS:,}; {MAX_REQUESTS_ENV} raises the limit).")
@click.option("--lengths", type=click.Choice(sorted(LENGTH_PRESETS)), default="sharegpt", show_default=True,
              help="[--rate] Prompt/output length distribution: each length lognormal, clipped to [1, max] "
                   "tokens, its mean after clipping the preset's (archsim/systems/requests.py); max prompt/output "
                   "and sigma: " + ", ".join(f"{name} {d.max_prompt_tokens}/{d.max_output_tokens} sigma {d.sigma:g}"
                                             for name, d in LENGTH_PRESETS.items()))
@click.option("--seed", type=WholeRange(min=0), default=0, show_default=True,
              help="[--rate] Seed of arrivals and lengths")
@click.option("--max-batch", type=Size(), default=256, show_default=True,
              help="Most requests in one iteration.")
@click.option("--batching", type=click.Choice(list(BATCHING)), default=DEFAULT_BATCHING, show_default=True,
              help="The serving scheduler's policy. mixed: new prompts prefill in the same iteration as the "
                   "running requests' decodes (Orca's selective batching); prefill-first: an iteration that admits "
                   "a prompt runs only prefills and the running requests' decodes wait for the next one (vLLM v0's "
                   "scheduler without chunked prefill).")
@click.option("--max-prefill-tokens", type=Size(),
              help="Most prompt tokens prefilled in one iteration, a longer prompt prefilled alone. Under --batching "
                   "prefill-first it is vLLM v0's max_num_batched_tokens without chunked prefill (vLLM refuses a "
                   "longer prompt); under mixed it caps the prompts joining the decodes' iteration, as no vLLM "
                   "setting does (chunked prefill counts the decodes' tokens too and splits prompts). Default: no "
                   "budget, Orca's; the system's memory still bounds an iteration where it is modelled.")
@click.option("--alpha", type=RealRange(min=0, min_open=True),
              help="[attention offloading] The network overhead the link may add (Lamina's alpha, §3.3): the run "
                   "is infeasible, with the reason, where the link carries less than BW_min at its most demanding "
                   "decode iteration.")
@click.option("--tp", type=WholeRange(min=1), help="Tensor-parallel devices (default: the system spec's for the "
                                                        "workload, e.g. 4 for gpt3-7b on neupims).")
@click.option("--pp", type=WholeRange(min=1), help="Pipeline-parallel stages (default: the system spec's).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the metrics as JSON, with the record a sweep stores for the run under `record`.")
@click.option("--trace-out", type=click.Path(dir_okay=False), callback=nonempty,
              help="Write the iterations as Chrome/Perfetto trace JSON here.")
@click.option("--layer-trace", type=click.Path(dir_okay=False), callback=nonempty,
              help="Replay the decoder layers of the run's longest decode iteration event by event "
                   "(archsim.systems.schedule_events: the units' tasks, the gaps and contention the closed form "
                   "does not show; attention offloading: its pipeline of micro-batches, or its one batch), write "
                   "them as Chrome/Perfetto trace JSON here and print the replay against the closed form.")
@click.pass_context
def simulate_cmd(ctx: click.Context, system_name: str, workload: str, trace_path: str | None, rate: float | None,
                 n_requests: int | None, lengths: str, seed: int, max_batch: int, batching: str,
                 max_prefill_tokens: int | None, alpha: float | None, tp: int | None, pp: int | None,
                 as_json: bool, trace_out: str | None, layer_trace: str | None) -> None:
    """Serve requests on a system with iteration-level continuous batching and a paged KV cache; print
    throughput, TTFT and TBT percentiles, utilization per unit and energy per token.

    Examples:

    \b
      archsim simulate --system neupims --workload gpt3-7b --rate 20 --requests 1000
      archsim simulate --system neupims --workload llama3-70b --rate 5 --requests 200
      archsim simulate --system npu-only --workload gpt3-13b --trace requests.csv --json
      archsim simulate --system my-system.yaml --workload gpt3-30b --tp 8 --pp 1 --rate 10 --requests 256
      archsim simulate -s vllm-h100 -w llama3-70b --lengths kimi-ta --rate 2 --requests 100 --max-prefill-tokens 8192
      archsim simulate -s vllm-h100 -w llama3-70b --rate 2 --requests 100 --batching prefill-first
    """
    if trace_path and (rate is not None or n_requests is not None):
        raise click.UsageError("--trace and --rate/--requests exclude each other")
    given = {name for name in ("lengths", "seed")
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    if trace_path and given:  # the trace gives every arrival and length
        raise click.UsageError("--lengths and --seed draw Poisson requests (--rate); a --trace gives them")
    if not trace_path and (rate is None or n_requests is None):
        raise click.UsageError("give either --trace FILE or both --rate R and --requests N")
    if trace_out:
        check_writable(trace_out, "--trace-out", inputs=(trace_path, system_name, workload), kind=CHROME_TRACE)
    if layer_trace:
        check_writable(layer_trace, "--layer-trace", inputs=(trace_path, system_name, workload), kind=CHROME_TRACE)
        if trace_out and Path(trace_out).resolve() == Path(layer_trace).resolve():
            raise SpecError("--layer-trace", layer_trace, "is --trace-out's file too: name another")
    if n_requests is not None:
        check_request_count(n_requests, "--requests")
    if rate is not None and not math.isfinite(rate):
        raise SpecError("--rate", "", f"expected a finite number of requests per second, got {rate}")
    requests = (read_trace(trace_path) if trace_path  # each row checked, named by its line
                else checked_poisson_requests(rate_per_s=rate, n=n_requests, lengths=lengths, seed=seed,
                                              source="--rate"))
    model = neupims.system(load_system(system_name), workload, tp=tp, pp=pp)
    if alpha is not None and not isinstance(model, OffloadModel):
        raise SpecError("--alpha", "", f"read only by an attention-offloading system (a ping-pong or staggered "
                                       f"schedule), which {system_name} is not")
    if alpha is not None and not math.isfinite(alpha):
        raise SpecError("--alpha", "", f"expected a finite network overhead, got {alpha}")
    refused = unreplayable(model) if layer_trace else None
    if refused:
        owner = workload if refused[0].startswith("params.") else system_name  # a workload's size, or the system's
        raise SpecError("--layer-trace", "", f"the layer replay does not model {owner}'s {refused[0]}: {refused[1]}")
    config = ServingConfig(max_batch=max_batch, max_prefill_tokens=max_prefill_tokens,
                           mix_prefill_decode=BATCHING[batching])
    reason = unservable(model, requests, config)
    if reason:
        raise SpecError(trace_path or "--requests", "", reason)
    start = time.perf_counter()
    served = LongestDecode(model) if layer_trace else model
    result = simulate_serving(served, requests, config,
                              trace=trace_out is not None or alpha is not None or layer_trace is not None)
    wall_s = time.perf_counter() - start
    metrics = {**serving_metrics(result, untimed_messages(model.system, model.parallelism)),
               "served_requests": _request_source(trace_path, rate, n_requests, lengths, seed),
               "max_batch": max_batch, "max_prefill_tokens": max_prefill_tokens,
               **config.batching_entry()}
    record = result.record(model.price_per_hour)
    if alpha is not None:
        try:
            link = peak_batch_link_feasibility(model, result.timeline, alpha)
        except SpecError as error:  # no decode to check, or no finite BW_min: the option's
            raise SpecError("--alpha", "", error.message) from None
        metrics["link"] = {**link.config, **link.extras, "feasible": link.feasible, "reason": link.reason}
        record = with_link(record, link)
    if trace_out:
        write_text(trace_out, json.dumps(chrome_trace(result)))
    if layer_trace:
        metrics["layer_replay"] = _layer_replay(model, served, result, layer_trace)
    if as_json:
        click.echo(json.dumps({**nan_as_null(metrics), "record": nan_as_null(record.row())}, indent=2))
        return
    _show(metrics, wall_s, _default_degrees_note(model.system, model.workload.name))
    if trace_out:
        click.echo(f"trace written to {trace_out}")
    if layer_trace:
        replay = metrics["layer_replay"]
        if "skipped" in replay:
            click.echo(f"layer replay skipped: {replay['skipped']}")
            return
        prompts = replay["prompts"]
        prompts = f" + {prompts} prompt{'s' if prompts > 1 else ''}" if prompts else ""
        decodes = f"{replay['decodes']} decode{'s' if replay['decodes'] > 1 else ''}"
        click.echo(f"layer replay of iteration {replay['iteration']} (batch {decodes}{prompts}): "
                   f"{replay['replay_s'] * 1e3:.4g} ms {replay['covers']}, closed form "
                   f"{replay['closed_form_s'] * 1e3:.4g} ms ({replay['difference'] * 100:+.2f} %): trace written "
                   f"to {layer_trace}")


def _layer_replay(model: SystemModel | OffloadModel, served: LongestDecode, result: ServingResult, path: str) -> dict:
    """`--layer-trace`: replay the decoder layers of the run's longest decode iteration (`served` kept its batch;
    its place among the timeline's decode iterations gives its number), write the replay's trace to `path`, and
    return what `simulate` reports of it (`--json` adds `busy_s`: the seconds each of the trace's tracks was busy).
    An attention-offloading replay's trace says in `otherData.spans` what its replicas' spans hold
    (`offload_events.SPANS_NOTE`, as `reproduce lamina`'s traces do: the last token's tail is in none), and its
    record in `spans`, since `busy_s` sums those spans."""
    if served.batch is None:  # the run's results stand; there is nothing to replay, and no trace is written
        return {"skipped": "no iteration decoded a token (each served request wanted one): there is no decode "
                           "iteration to replay, and no trace was written"}
    iteration = [i for i, it in enumerate(result.timeline) if it.n_decode][served.decodes_before]
    run = replay_iteration(model, served.batch)
    note = {"spans": SPANS_NOTE} if isinstance(model, OffloadModel) else {}
    write_chrome_trace(run.spans, path, note or None)
    return {"iteration": iteration, "decodes": len(served.batch.decode_context_tokens),
            "prompts": len(served.batch.prefill_tokens), "replay_s": run.replay_s, "closed_form_s": run.closed_form_s,
            "difference": run.difference, "covers": run.covers, "busy_s": run.busy_s(), **note, "trace": path}


def serving_metrics(result: ServingResult, not_timed: list[str]) -> dict:
    """The flat record of one serving run (what `--json` prints): of the rejected requests, those whose prefill the
    system cannot run (`unrunnable`, why the shortest cannot in `unrunnable_reason`, "" when none) and those longer
    than one request's KV may be (`beyond_request_kv`, a bank-PIM channel's `request_kv_tokens`, null without that
    limit); the throughput over the makespan and over the steady window, to the last first token at `steady_end_s`
    (`archsim.systems.serving`'s module docstring); how often admitted
    prefills went back to the queue because their iteration could not hold them (`prefill_deferrals`); the messages
    its model leaves out (`not_timed`, `system_messages.untimed_messages`)."""
    return {
        "system": result.system, "requests": len(result.requests), "rejected": len(result.rejected_ids),
        "unrunnable": len(result.unrunnable_ids), "unrunnable_reason": result.unrunnable_reason,
        "beyond_request_kv": len(result.beyond_request_kv_ids),
        "request_kv_tokens": result.request_kv_tokens if math.isfinite(result.request_kv_tokens) else None,
        "output_tokens": result.output_tokens, "makespan_s": result.makespan_s,
        "throughput_tok_s": result.throughput_tok_s, "steady_throughput_tok_s": result.steady_throughput_tok_s,
        "steady_end_s": result.steady_end_s, "ttft_p50_s": result.ttft_p50_s,
        "ttft_p99_s": result.ttft_p99_s, "tbt_p50_s": result.tbt_p50_s, "tbt_p99_s": result.tbt_p99_s,
        "utilization": dict(result.utilization), "energy_per_token_j": result.energy_per_token_j,
        "iterations": result.iterations, "preemptions": result.preemptions,
        "prefill_deferrals": result.prefill_deferrals, "kv_pages_peak": result.peak_pages,
        "kv_pages_capacity": result.capacity_pages, "not_timed": not_timed,
    }


def _request_source(trace_path: str | None, rate: float | None, n_requests: int | None, lengths: str,
                    seed: int) -> dict:
    """Where the run's requests came from, the options left at their defaults included (`--lengths`, `--seed`):
    a run states what it served."""
    if trace_path:
        return {"trace": trace_path}
    return {"rate_per_s": rate, "requests": n_requests, "lengths": lengths, "seed": seed}


def _source_line(m: dict) -> str:
    """`_request_source`, the batch limits and a prefill-first batching as the text's `requests` line."""
    source = m["served_requests"]
    if "trace" in source:
        drawn = f"from {source['trace']}"
    else:
        drawn = (f"{source['requests']} Poisson arrivals at {source['rate_per_s']:g}/s, {source['lengths']} lengths, "
                 f"seed {source['seed']}")
    budget = m["max_prefill_tokens"]
    budget = f", at most {budget} prompt tokens an iteration" if budget is not None else ""
    first = "; prefill-first (decodes wait while prompts do)" if "batching" in m else ""
    return f"  requests    {drawn}; at most {m['max_batch']} a batch{budget}{first}"


def _rejected(m: dict) -> str:
    """How many requests were rejected and why: too long for the KV cache, or for one bank-PIM channel's KV
    (`request_kv_tokens`), or asking for a prefill the system cannot run."""
    unrunnable, never_fit, beyond = rejected_by_cause(m["rejected"], m["unrunnable"], m["beyond_request_kv"])
    reasons = [(n, why) for n, why in (
        (never_fit, "too long for the KV cache"),
        (beyond, f"too long for {request_kv_limit(m['request_kv_tokens'])}" if beyond else ""),
        (unrunnable, "whose prefill the system cannot run")) if n]
    if not reasons:
        return "0 rejected as too long for the KV cache"
    if len(reasons) == 1 and not unrunnable:
        return f"{m['rejected']} rejected as {reasons[0][1]}"
    return f"{m['rejected']} rejected: " + ", ".join(f"{n} {why}" for n, why in reasons)


def _default_degrees_note(system: System, workload_name: str) -> str:
    """Why the run takes the system's top-level degrees where the system gives some workloads their own
    (`parallelism.by_workload`) but not this one: a model held out of the table (or a copy of one under another
    name) runs at the default, which the first line's degrees alone do not say; "" otherwise (no table, or an entry
    for it). Degrees given as options (--tp, --pp) are said to stand in for the top-level ones."""
    entries = system.parallelism.by_workload
    if not entries or workload_name in entries:
        return ""
    given = ", ".join(f"--{name} {value}" for name, value in system.options.items())
    advice = "an entry for it would give it its own" if given else "give --tp/--pp, or an entry for it"
    return (f"the top-level degrees{f' but {given}' if given else ''}: {system.source}'s parallelism.by_workload "
            f"has no entry for {workload_name} (it has {', '.join(entries)}); {advice}")


def _show(m: dict, wall_s: float, degrees_note: str) -> None:
    rejected = _rejected(m)
    unrunnable = m["unrunnable"]
    served = f"{m['requests']} request{'' if m['requests'] == 1 else 's'} served"
    click.echo(f"{m['system']}: {served} ({rejected}), {m['output_tokens']} output tokens in "
               f"{m['makespan_s']:.4g} s simulated")
    click.echo(_source_line(m))
    if degrees_note:
        click.echo(f"  parallelism {degrees_note}")
    if unrunnable:
        click.echo(f"  refused     the shortest such prefill: {m['unrunnable_reason']}")
    if m["not_timed"]:
        click.echo(f"  not timed   {'; '.join(m['not_timed'])}")
    if math.isnan(m["steady_end_s"]):  # no request emitted a token: there is no window
        steady = ""
    elif math.isnan(m["steady_throughput_tok_s"]):
        steady = (f", no steady window (no request that decoded finished by the last first token, at "
                  f"{m['steady_end_s']:.4g} s: the batch's fill alone)")
    else:
        steady = (f", {m['steady_throughput_tok_s']:.5g} in the steady window (to the last first token, at "
                  f"{m['steady_end_s']:.4g} s)")
    click.echo(f"  throughput  {m['throughput_tok_s']:.5g} tokens/s over the makespan{steady}")
    click.echo(f"  TTFT        p50 {m['ttft_p50_s'] * 1e3:.4g} ms, p99 {m['ttft_p99_s'] * 1e3:.4g} ms")
    if math.isnan(m["tbt_p50_s"]):  # every request wanted one token: there is no time between tokens
        click.echo("  TBT         n/a (no request decoded a second token)")
    else:
        click.echo(f"  TBT         p50 {m['tbt_p50_s'] * 1e3:.4g} ms, p99 {m['tbt_p99_s'] * 1e3:.4g} ms")
    click.echo("  utilization " + ", ".join(f"{u} {v:.3f}" for u, v in m["utilization"].items()))
    if "link" in m:
        link = m["link"]
        verdict = f"infeasible: {link['reason']}" if not link["feasible"] else "meets it"
        click.echo(f"  link        BW_min {link['bw_min_bytes_per_s'] / 1e9:.4g} GB/s per NIC at the most demanding "
                   f"decode iteration, batch {link['batch']} at mean context {link['context']} (alpha "
                   f"{link['alpha']:g}), against {link['link_bytes_per_s'] / 1e9:.4g} GB/s: {verdict}")
    if math.isnan(m["energy_per_token_j"]):
        click.echo("  energy      n/a (a device's energy is not modelled)")
    else:
        click.echo(f"  energy      {m['energy_per_token_j']:.4g} J/token")
    deferred = m["prefill_deferrals"]
    deferred = f"{deferred} prefill deferrals (the iteration could not hold them), " if deferred else ""
    click.echo(f"  {m['iterations']} iterations, {m['preemptions']} preemptions, {deferred}KV pages peak "
               f"{m['kv_pages_peak']} of {m['kv_pages_capacity']}; simulated in {wall_s:.2f} s")
