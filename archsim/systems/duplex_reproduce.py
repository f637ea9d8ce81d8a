"""The Duplex paper's serving set-up (Yun et al., MICRO'24; ../shared/reference/pim.md §2.4) on archsim's Duplex
system specs, ours beside the paper's headline (§2.1, §2.4).

Set-up: closed-loop continuous batching (`archsim.systems.serving.simulate_serving` with `closed_loop` = batch, the
scheduler's max batch the same) over Gaussian (L_in, L_out) lengths (`archsim.systems.requests.gaussian_requests`),
each system given the same requests. The paper gives no spread for its Gaussian lengths: `STD_FRACTION` is ours.
Each point serves `REQUEST_ROUNDS` x batch requests, so the batch refills about that many times (the first round's
prefill-heavy start included, as in a closed-loop run of the paper's length).

Grids (`grid_records`). The headline's (`PAPER_GRID`, the GPU and Duplex+PE+ET only): the paper's five models
(Table I: Mixtral-8x7B, GLaM-143B, Grok-1-314B, OPT-66B, Llama3-70B) x (L_in, L_out) in {(256, 256), (1024, 1024)}
x batch 32, 64 and 128. The paper's grid spans (256, 256) to (4096, 4096) and does not list its steps; ours stops
at 1024 so the run stays near a minute (the README's Duplex section gives the lines that add (4096, 4096) to it,
and what they printed).
The +PE progression (`GRID`: every system of `SYSTEMS` on Mixtral-8x7B, (256, 256) and (1024, 1024), batch 32 and
64) shows what each step of Duplex adds, with Duplex's Bank-PIM baseline beside them; 2xGPU runs GLaM-143B at
batch 64 (`LATENCY_GRID`), the point of the paper's TBT and E2E figures. `archsim.systems.duplex_figures` reads
those figures of §2.4 off the records (`run_all`'s headline "figures").
The mean moves with the grid's mix of models: per model 2.6-2.9x on GLaM
(64 experts, about one token per expert), 1.7-3.0x on Mixtral (falling with the batch), 1.5-2.4x on Grok-1 (two
nodes, each an expert-parallel group exchanging its MoE tokens over InfiniBand on both systems: the paper's "Grok1
gains least because of inter-node communication"), 1.1-1.5x on OPT and 1.06-1.16x on Llama3 (dense: only decode
attention moves to the Logic-PIM); the four Mixtral points of `GRID` alone average 2.64x.

Systems (`SYSTEMS`): the GPU baseline (`duplex-gpu`), Duplex (`duplex`, as its preset schedules it), Duplex+PE and
Duplex+PE+ET (`duplex-pe`, `duplex-pe-et`: the co-processing schedule, pim.md §2.3).

Headline (`headline`): throughput of Duplex+PE+ET over the GPU, its mean and maximum over the paper grid's points
(paper: 2.07x, 2.67x), and the energy reduction per output token, 1 - mean(energy ratio) (paper 28.19 %), each with
the issue's tolerance and, outside it, the modelling reason (`ATTRIBUTION`). Energy is per action plus the xPUs'
static power (the presets' `static_w`, 20 % of TDP); each record's `rank_s_per_token` (its ranks' seconds per output
token: the static part is that x each rank's static power), so `energy_reduction_by_static` recomputes the reduction
exactly at other fractions of TDP (`STATIC_FRACTIONS`: none,
and gpu.md §5's suggested 15 % and 25 %).

Bank-PIM comparison (`bank_pim_comparison`, `bank_pim_headline`): the GPU, Duplex (`duplex`) and its Bank-PIM
baseline (`duplex-bank-pim`: 16x the HBM bandwidth at 1 Op/B, pim.md §2.2) on OPT-66B (MHA) and Llama3-70B (GQA,
deg_grp 8) at one point of the paper's grid, (L_in, L_out) = (256, 256) and batch 64 (`BANK_PIM_GRID`), closed loop
as above. The paper (§2.4): Bank-PIM beats Duplex on OPT-66B and loses on Llama3-70B. The reason in the model:
MHA decode attention has Op/B ~1, where the Bank-PIM's 16x bandwidth wins; GQA attention of deg_grp 8 has Op/B ~8,
compute-bound on the Bank-PIM's 10.7 TFLOPS against the Logic-PIM's 21.3 per stack.
Op/B and ridges (`opb_rows`, `ridge_rows`: the report's Op/B figure): the FLOPs and bytes of every op of one
Mixtral-8x7B decoder layer in a decode step (`archsim.systems.step.layer_ops`, context `OPB_CONTEXT`) at
`OPB_BATCHES`, against the ridge point of each unit of `RIDGE_UNITS`: its device model's roofline peak over the
bandwidth its operands come at (the xPU's tensor peak over DRAM, a PIM's peak over its internal bandwidth).

QPS sweep (`qps_sweep`, `qps_headline`): Mixtral-8x7B, Gaussian (L_in, L_out) = (4096, 512), max batch 128, Poisson
arrivals at 4 to 16 requests per second (`QPS_RATES`), `QPS_REQUESTS` requests per rate (arrival times of
`poisson_requests`, lengths of `gaussian_requests`), the GPU against Duplex+PE+ET. Each record: throughput, TBT
p50/p99, TTFT p50/p90/p99 and end-to-end latency p50/p99 (finish - arrival).
Saturation. The issue's checks read each system's capacity (`capacity_qps`): the requests per second it completes
with its batch always full (a closed loop of `QPS_MAX_BATCH` requests over `QPS_LENGTHS`, `CAPACITY_ROUNDS` x the
batch requests), which is queueing's saturation point: below it a Poisson queue stays finite, above it grows without
bound. Beside it, the rate read off the sweep's latency as the paper reads its curves (`saturation_qps`, ours):
continuous batching admits an arrival at the next iteration while the batch has a free slot, so below saturation a
request's time to its first token is the rest of the running iteration plus its own prefill, a few times that of a
prompt alone (`ttft_alone_s`: one iteration prefilling one L_in prompt); once arrivals outpace the completions the
batch stays full and arrivals wait for a slot. A rate is saturated when its p90 TTFT exceeds
`SATURATION_TTFT_MULTIPLE` x `ttft_alone_s`, interpolated between the last unsaturated and first saturated rate in
log(p90 TTFT). This estimate reads high: a run starts empty and is finite, so the first `QPS_MAX_BATCH` requests
never queue and a queue that grows slowly stays short (11.9 requests/s for the GPU against its capacity of 8.25;
with 200 requests per rate it read 10.5). The paper (§2.4): the GPU saturates above 9 req/s, Duplex at
about 14; the issue asks the GPU's to lie between 8 and 10 and Duplex's to be at least 1.4x it.

`--as-artifact` (`run_all(as_artifact=True)`): the GPU baseline's GPUs and Duplex's xPU timed as Duplex's own
simulator times its GPU (`timing: roofline` of `archsim.systems.gpu_device`: every op at the device's peak FLOPS
and bandwidth, no launches; pim.md §2.5), and the Logic-PIM at that simulator's `LOGIC` roofline, without refresh.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import mean

from archsim import library
from archsim.systems.attribution import Reason
from archsim.systems.devices import device_models
from archsim.systems.duplex_figures import RATIO, REDUCTION, figures, matched, ratios, within_tolerance
from archsim.systems.duplex_figures import TOLERANCE as KIND_TOLERANCE
from archsim.systems.gpu_device import ROOFLINE
from archsim.systems.iteration import Batch
from archsim.systems.logic_pim_device import LogicPimDevice
from archsim.systems.models import system_model
from archsim.systems.requests import Request, gaussian_requests, poisson_requests
from archsim.systems.serving import ServingConfig, percentile, simulate_serving
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_model import SystemModel
from archsim.systems.system_spec import load_system, with_fields
from archsim.systems.system_types import System

SYSTEMS = ("duplex-gpu", "duplex", "duplex-pe", "duplex-pe-et")
BASELINE, HEADLINE_SYSTEM = "duplex-gpu", "duplex-pe-et"
GRID = {"models": ("mixtral-8x7b",), "lengths": ((256, 256), (1024, 1024)), "batches": (32, 64)}
PAPER_GRID = {"models": ("mixtral-8x7b", "glam-143b", "grok-1-314b", "opt-66b", "llama3-70b"),  # pim.md §2.4 Table I
              "lengths": ((256, 256), (1024, 1024)), "batches": (32, 64, 128)}
BANK_PIM, TWO_GPUS = "duplex-bank-pim", "duplex-2xgpu"
LATENCY_GRID = {"models": ("glam-143b",), "lengths": PAPER_GRID["lengths"], "batches": (64,)}  # §2.4's TBT, E2E
STD_FRACTION = 0.1  # ours: the standard deviation of each Gaussian length, as a fraction of its mean
REQUEST_ROUNDS = 2  # requests per point = rounds x batch
SEED = 0
PAPER = {"throughput_mean": 2.07, "throughput_max": 2.67, "energy_reduction": 0.2819}  # pim.md §2.1
KINDS = {"throughput_mean": RATIO, "throughput_max": RATIO, "energy_reduction": REDUCTION}
TOLERANCE = {metric: KIND_TOLERANCE[kind] for metric, kind in KINDS.items()}  # 15 % relative, 10 points
ATTRIBUTION = {  # fields filled from the run (`headline`)
    "throughput_mean": Reason(
        "the mean follows the grid's mix of models (module docstring): per model {per_model}; MoE models with few "
        "tokens per expert gain most, dense ones least; the paper does not list its grid's steps"),
    "throughput_max": Reason(
        "the largest gain ({max:.2f}x: {max_at}) is a decode step made of weight and KV streaming, which the "
        "Logic-PIM runs at its roofline with 4x the xPU's bandwidth, less HBM refresh ({refresh:.1%}); bank-bundle "
        "conflicts and the softmax unit's rate are not modelled. --as-artifact prints the grid with the GPU and the "
        "xPU at their roofline too, as the paper's simulator times them"),
    "energy_reduction": Reason(
        "both sides are priced per action (HBM bits, FLOPs, SRAM bytes) plus the xPUs' static power "
        "({static_w:.0f} W each, {static_fraction:.0%} of TDP) over the run: the dynamic saving is roughly the "
        "per-byte price ratio, Logic-PIM {lp_pj_per_byte:.1f} pJ/B against the xPU's {xpu_pj_per_byte:.1f} "
        "({byte_saving:.0%} less), times the Logic-PIM's share of the bytes, and the static one the time saved: "
        "per model {per_model}, least on the dense ones whose weights stay on the xPU; at 0 / 15 / 25 % of TDP "
        "{by_static}"),
}
STATIC_FRACTIONS = (0.0, 0.15, 0.25)  # of TDP: none, and gpu.md §5's suggested range for a GPU's static power


def duplex_system(name: str, as_artifact: bool = False) -> System:
    """The system preset `name`; with `as_artifact`, its GPU devices (the GPU baseline, Duplex's xPU) timed as
    Duplex's simulator times its GPU (`timing: roofline`, `archsim.systems.gpu_device`, pim.md §2.5), and its
    Logic-PIM stacks without refresh, as that simulator's `LOGIC` unit."""
    system = load_system(name)
    if not as_artifact:
        return system
    fields = {f"devices.{d.name}.timing": ROOFLINE for d in system.devices.values() if d.kind == "gpu"}
    fields |= {f"devices.{d.name}.refresh_fraction": 0.0 for d in system.devices.values() if d.kind == "logic-pim"}
    return with_fields(system, fields)


def duplex_model(name: str, workload: str, as_artifact: bool = False, models: dict | None = None) -> SystemModel:
    """`system_model` of preset `name` (`duplex_system`) running library model `workload`; with `models` (a dict a
    caller shares between runs), built once per (name, workload, as_artifact) and then reused, so what a model
    remembers (op costs, kernel predictions, the chain around its attention) serves every run of it."""
    key = (name, workload, as_artifact)
    model = None if models is None else models.get(key)
    if model is None:
        model = system_model(duplex_system(name, as_artifact), library.load_workload_spec(workload))
        if models is not None:
            models[key] = model
    return model


def reproduce(systems: tuple[str, ...] = SYSTEMS, grid: dict | None = None, rounds: int = REQUEST_ROUNDS,
              seed: int = SEED, as_artifact: bool = False, models: dict | None = None) -> list[dict]:
    """One record per system x model x (L_in, L_out) x batch: throughput (output tokens / makespan), TBT p50/p99,
    mean end-to-end latency (finish - arrival), energy per output token, and the requests preempted (`preemptions`)
    and the most requests one iteration held (`batch_reached`, prefills and decodes) of a closed-loop run
    (`models`: shared models, `duplex_model`): where the KV cache cannot hold `batch` requests at their lengths the
    run serves fewer at a time, preempting the latest admitted when its pages run out, and `batch` is the
    scheduler's limit, not the batch run."""
    grid = grid or GRID
    records = []
    for model_name in grid["models"]:
        runs = {name: duplex_model(name, model_name, as_artifact, models) for name in systems}
        for lin, lout in grid["lengths"]:
            for batch in grid["batches"]:
                requests = gaussian_requests(rounds * batch, lin, lout, STD_FRACTION, seed)
                for name, model in runs.items():
                    result = simulate_serving(model, requests, ServingConfig(max_batch=batch), trace=True,
                                              closed_loop=batch)
                    records.append({
                        "model": model_name, "system": name, "lin": lin, "lout": lout, "batch": batch,
                        "throughput_tok_s": result.throughput_tok_s, "tbt_p50_s": result.tbt_p50_s,
                        "tbt_p99_s": result.tbt_p99_s,
                        "e2e_s": mean(r.finish_s - r.arrival_s for r in result.requests),
                        "energy_j_per_token": result.energy_per_token_j,
                        "rank_s_per_token": _rank_s_per_token(model, result),
                        "preemptions": result.preemptions,
                        "batch_reached": max(i.n_prefill + i.n_decode for i in result.timeline),
                    })
    return records


def _rank_s_per_token(model: SystemModel, result) -> float:
    """A closed-loop run's rank-seconds per output token: its ranks (`devices_counted`) over the run (an engine always
    busy: the iterations span the makespan) per token; x a rank's static power, the static part of its energy."""
    return model.devices_counted * result.makespan_s / result.output_tokens if result.output_tokens else 0.0


def grid_records(rounds: int = REQUEST_ROUNDS, seed: int = SEED, as_artifact: bool = False,
                 models: dict | None = None) -> list[dict]:
    """`reproduce` records of the headline's pair on `PAPER_GRID`, of the other systems and the Bank-PIM on `GRID`,
    and of 2xGPU on `LATENCY_GRID` (module docstring)."""
    pair = (BASELINE, HEADLINE_SYSTEM)
    return (reproduce(pair, PAPER_GRID, rounds, seed, as_artifact, models)
            + reproduce((*(s for s in SYSTEMS if s not in pair), BANK_PIM), GRID, rounds, seed, as_artifact, models)
            + reproduce((TWO_GPUS,), LATENCY_GRID, rounds, seed, as_artifact, models))


def over_baseline(records: list[dict], system: str, metric: str, baseline: str = BASELINE) -> list[float]:
    """metric(system) / metric(baseline) at every point both ran, in the records' order (`duplex_figures.ratios`)."""
    return ratios(records, system, baseline, metric)


def headline(records: list[dict]) -> dict:
    """Ours beside the paper's (module docstring): each entry ours, paper, within tolerance, and the reason when
    not."""
    speedups = over_baseline(records, HEADLINE_SYSTEM, "throughput_tok_s")
    ours = {"throughput_mean": mean(speedups), "throughput_max": max(speedups),
            "energy_reduction": energy_reduction(records)}
    out = {"system": HEADLINE_SYSTEM, "baseline": BASELINE, "points": len(speedups),
           "static_fraction_of_tdp": _xpu().static_w / _xpu().spec.power_w,
           "energy_reduction_by_static": {f"{f:g}": energy_reduction(records, f) for f in STATIC_FRACTIONS}}
    for metric, value in ours.items():
        paper = PAPER[metric]
        within = within_tolerance(KINDS[metric], value, paper)
        out[metric] = {"ours": value, "paper": paper, "tolerance": TOLERANCE[metric], "within": within,
                       "reason": "" if within else ATTRIBUTION[metric].filled(**_numbers(records, metric))}
    return out


def energy_reduction(records: list[dict], static_fraction: float | None = None) -> float:
    """1 - the mean of the headline system's energy per token over the baseline's; with `static_fraction`, each
    record's static part (its rank-seconds x its system's static power per rank) replaced by every xPU drawing that
    fraction of its TDP."""
    if static_fraction is None:
        metric, rows = "energy_j_per_token", records
    else:
        watts = static_fraction * _xpu().spec.power_w
        metric = "rescaled"
        rows = [{**r, metric: r["energy_j_per_token"]
                 + r["rank_s_per_token"] * (watts - _static_w_per_rank(r["system"]))} for r in records]
    return 1 - mean(over_baseline(rows, HEADLINE_SYSTEM, metric))


def _static_w_per_rank(system: str) -> float:
    """Static power of one rank of the preset `system`: one device of each kind, as `SystemModel.static_w` counts."""
    return sum(d.static_w for d in load_system(system).devices.values())


def _xpu():
    """The headline preset's xPU device (its energy prices and static power: the default mode's)."""
    return next(d for d in load_system(HEADLINE_SYSTEM).devices.values() if d.kind == "gpu")


def _numbers(records: list[dict], metric: str) -> dict:
    """The numbers `ATTRIBUTION[metric]` quotes, from the records and the presets."""
    pairs = matched(records, HEADLINE_SYSTEM, BASELINE)
    devices = load_system(HEADLINE_SYSTEM).devices.values()  # the preset: the default mode's prices and refresh
    xpu, lp = (next(d for d in devices if d.kind == kind) for kind in ("gpu", "logic-pim"))
    by_model: dict[str, list[float]] = {}
    if metric == "energy_reduction":
        for r, b in pairs:
            by_model.setdefault(r["model"], []).append(1 - r["energy_j_per_token"] / b["energy_j_per_token"])
        xpu_pj = 8 * xpu.energy.hbm_pj_per_bit + xpu.energy.sram_pj_per_byte
        lp_pj = 8 * lp.spec.internal_pj_per_bit
        by_static = " / ".join(f"{energy_reduction(records, f):.1%}" for f in STATIC_FRACTIONS)
        return {"lp_pj_per_byte": lp_pj, "xpu_pj_per_byte": xpu_pj, "byte_saving": 1 - lp_pj / xpu_pj,
                "per_model": _ranges(by_model, "{:.0%}"), "static_w": xpu.static_w,
                "static_fraction": xpu.static_w / xpu.spec.power_w, "by_static": by_static}
    for r, b in pairs:
        by_model.setdefault(r["model"], []).append(r["throughput_tok_s"] / b["throughput_tok_s"])
    top, base = max(pairs, key=lambda p: p[0]["throughput_tok_s"] / p[1]["throughput_tok_s"])
    return {"per_model": _ranges(by_model, "{:.2f}x"), "max": top["throughput_tok_s"] / base["throughput_tok_s"],
            "max_at": f"{top['model']}, ({top['lin']}, {top['lout']}), batch {top['batch']}",
            "refresh": lp.spec.refresh_fraction}


def _ranges(by_model: dict[str, list[float]], form: str) -> str:
    return ", ".join(f"{model} {form.format(min(v))}-{form.format(max(v))}" for model, v in by_model.items())


# ------------------------------------------------------------------------------------------------ Bank-PIM
BANK_PIM_SYSTEMS = ("duplex-gpu", "duplex", BANK_PIM)
BANK_PIM_GRID = {"models": ("opt-66b", "llama3-70b"), "lengths": ((256, 256),), "batches": (64,)}
BANK_PIM_PAPER = {"opt-66b": "duplex-bank-pim", "llama3-70b": "duplex"}  # the faster of the two, pim.md §2.4
BANK_PIM_ATTRIBUTION = ("the Bank-PIM's edge on MHA and its loss on GQA come from the attention's Op/B against the "
                        "two PIMs' rooflines, a small part of a step at (256, 256): a few per cent either way, so a "
                        "change in the xPU's share of the step (the GPU model's kernels) can swap the order")


def bank_pim_comparison(systems: tuple[str, ...] = BANK_PIM_SYSTEMS, rounds: int = REQUEST_ROUNDS,
                        seed: int = SEED, as_artifact: bool = False, models: dict | None = None) -> list[dict]:
    """`reproduce` records of `systems` at `BANK_PIM_GRID` (module docstring)."""
    return reproduce(systems, BANK_PIM_GRID, rounds, seed, as_artifact, models)


def bank_pim_headline(records: list[dict]) -> dict:
    """Per model of `BANK_PIM_PAPER` with records of both systems: Bank-PIM's throughput over Duplex's (ours), the
    faster system ours and the paper's, and whether they agree (else the reason)."""
    out = {}
    for model, paper in BANK_PIM_PAPER.items():
        tok_s = {r["system"]: r["throughput_tok_s"] for r in records
                 if r["model"] == model and r["system"] in ("duplex", "duplex-bank-pim")}
        if len(tok_s) < 2:
            continue
        ratio = tok_s["duplex-bank-pim"] / tok_s["duplex"]
        faster = "duplex-bank-pim" if ratio > 1 else "duplex"
        out[model] = {"bank_pim_over_duplex": ratio, "faster": faster, "paper_faster": paper,
                      "within": faster == paper, "reason": "" if faster == paper else BANK_PIM_ATTRIBUTION}
    return out


# ------------------------------------------------------------------------------------------------ Op/B and ridges
OPB_MODEL, OPB_CONTEXT, OPB_BATCHES = "mixtral-8x7b", 1024, (32, 64, 128)
RIDGE_UNITS = (("duplex", "xpu", "xPU (H100)"), ("duplex", "lp", "Logic-PIM"), (BANK_PIM, "pim", "Bank-PIM"))


def opb_rows(model: str = OPB_MODEL, context: int = OPB_CONTEXT, batches: tuple[int, ...] = OPB_BATCHES
             ) -> list[dict]:
    """Every op of one decoder layer of `model` in a decode step at `context` tokens, at each of `batches`: FLOPs,
    bytes and Op/B (`step.layer_ops`, module docstring)."""
    workload = library.load_workload_spec(model)
    return [{"batch": batch, "op": op.name, "cascade": op.cascade, "flops": op.flops, "bytes": op.bytes,
             "op_per_byte": op.op_per_byte}
            for batch in batches for op in layer_ops(workload, Step("decode", batch, context), workload.block)]


def ridge_rows(units: tuple[tuple[str, str, str], ...] = RIDGE_UNITS) -> list[dict]:
    """Each (system, device, label) of `units`: the preset device's roofline peak FLOP/s, the bandwidth its
    operands come at, and their ratio, the ridge point (module docstring); beside it, for a device whose model
    streams below that peak (a Logic-PIM: its peak less refresh), the ridge at the rate it streams at (else the
    same), so an op between the two is memory-bound in the model though above the peaks' ridge."""
    rows = []
    for system, name, label in units:
        device = device_models(load_system(system))[name]
        peak, bandwidth = device.peak_flops_per_s, device.operand_bytes_per_s
        streaming = device.streaming_bytes_per_s if isinstance(device, LogicPimDevice) else bandwidth
        rows.append({"unit": label, "system": system, "device": name, "peak_flops_per_s": peak,
                     "bytes_per_s": bandwidth, "ridge_op_per_byte": peak / bandwidth,
                     "streaming_ridge_op_per_byte": peak / streaming})
    return rows


# ------------------------------------------------------------------------------------------------ QPS sweep
QPS_SYSTEMS = (BASELINE, HEADLINE_SYSTEM)
QPS_MODEL, QPS_LENGTHS, QPS_MAX_BATCH = "mixtral-8x7b", (4096, 512), 128  # pim.md §2.4, Fig. 13
QPS_RATES = (4, 6, 8, 10, 12, 14, 16)  # requests per second, pim.md §2.4 "4-16 QPS"
QPS_REQUESTS = 150  # per rate: ours, to keep the run short (module docstring: what it costs the estimate)
SATURATION_TTFT_MULTIPLE = 10.0  # ours (module docstring)
SATURATION_PERCENTILE = 90
CAPACITY_ROUNDS = 4  # closed-loop rounds of QPS_MAX_BATCH requests for `capacity_qps` (2 read 4 % lower: the start)
QPS_PAPER = {"gpu_saturation_qps": (8.0, 10.0), "duplex_over_gpu": 1.4}  # the bounds; paper ~9 and ~14
QPS_ATTRIBUTION = {  # fields filled from the run (`qps_headline`)
    "gpu_saturation_qps": Reason(
        "the GPU serves {gpu:.2f} requests/s of (4096, 512) at batch 128 in this run; timed at its roofline, as the "
        "paper's simulator times it (pim.md §2.5; capacity_qps_as_artifact), {gpu_roofline:.2f}/s, where the "
        "calibrated model runs its 4096-token prefills and decode steps at measured kernel efficiencies"),
    "duplex_over_gpu": Reason(
        "both systems prefill on the same xPU (pim.md §2.3), one prompt per iteration without chunking, so at "
        "4096-token prompts the prefills cap Duplex's rate as well as the GPU's: {ratio:.2f}x in this run, "
        "{ratio_roofline:.2f}x when both are timed at their roofline (capacity_qps_as_artifact)"),
}


def qps_requests(rate_per_s: float, n: int, seed: int = SEED) -> tuple[Request, ...]:
    """`n` requests of Poisson arrivals at `rate_per_s` (`poisson_requests`' times) with Gaussian `QPS_LENGTHS`
    (`gaussian_requests`' lengths, `STD_FRACTION`)."""
    arrivals = poisson_requests(rate_per_s=rate_per_s, n=n, lengths="sharegpt", seed=seed)
    lengths = gaussian_requests(n, *QPS_LENGTHS, STD_FRACTION, seed)
    return tuple(replace(r, arrival_s=a.arrival_s) for r, a in zip(lengths, arrivals, strict=True))


def qps_sweep(systems: tuple[str, ...] = QPS_SYSTEMS, rates: tuple[float, ...] = QPS_RATES,
              requests: int = QPS_REQUESTS, seed: int = SEED, as_artifact: bool = False,
              models: dict | None = None) -> list[dict]:
    """One record per system x rate (module docstring), `saturated` by the TTFT criterion (`models`: shared models,
    `duplex_model`)."""
    records = []
    for name in systems:
        model = duplex_model(name, QPS_MODEL, as_artifact, models)
        alone_s = model.iteration(Batch((QPS_LENGTHS[0],), ())).time_s
        for rate in rates:
            result = simulate_serving(model, qps_requests(rate, requests, seed), ServingConfig(max_batch=QPS_MAX_BATCH))
            e2e = [r.finish_s - r.arrival_s for r in result.requests]
            ttft = [r.ttft_s for r in result.requests]
            ttft_tail = percentile(ttft, SATURATION_PERCENTILE)
            records.append({
                "system": name, "qps": rate, "requests": requests, "throughput_tok_s": result.throughput_tok_s,
                "tbt_p50_s": result.tbt_p50_s, "tbt_p99_s": result.tbt_p99_s, "ttft_p50_s": result.ttft_p50_s,
                f"ttft_p{SATURATION_PERCENTILE}_s": ttft_tail, "ttft_p99_s": result.ttft_p99_s,
                "e2e_p50_s": percentile(e2e, 50), "e2e_p99_s": percentile(e2e, 99),
                "ttft_alone_s": alone_s, "saturated": ttft_tail > SATURATION_TTFT_MULTIPLE * alone_s,
            })
    return records


def saturation_qps(records: list[dict], system: str) -> tuple[float, str]:
    """The rate at which `system` saturates (module docstring) and "" for an interpolated value, "at most" when
    the lowest rate is already saturated, "at least" when no rate is."""
    mine = sorted((r for r in records if r["system"] == system), key=lambda r: r["qps"])
    first = next((i for i, r in enumerate(mine) if r["saturated"]), None)
    if first is None:
        return mine[-1]["qps"], "at least"
    if first == 0:
        return mine[0]["qps"], "at most"
    below, above = mine[first - 1], mine[first]
    tail = f"ttft_p{SATURATION_PERCENTILE}_s"
    threshold = math.log(SATURATION_TTFT_MULTIPLE * below["ttft_alone_s"])
    lo, hi = math.log(below[tail]), math.log(above[tail])
    return below["qps"] + (above["qps"] - below["qps"]) * (threshold - lo) / (hi - lo), ""


def capacity_qps(systems: tuple[str, ...] = QPS_SYSTEMS, rounds: int = CAPACITY_ROUNDS, seed: int = SEED,
                 as_artifact: bool = False, models: dict | None = None) -> dict[str, float]:
    """Requests per second each system completes with its batch always full (module docstring): a closed loop of
    `QPS_MAX_BATCH` requests in flight over `QPS_LENGTHS`, `rounds` x the batch requests, output tokens per second
    over the requests' mean output length (`models`: shared models, `duplex_model`)."""
    requests = gaussian_requests(rounds * QPS_MAX_BATCH, *QPS_LENGTHS, STD_FRACTION, seed)
    per_request = mean(r.output_tokens for r in requests)
    out = {}
    for name in systems:
        model = duplex_model(name, QPS_MODEL, as_artifact, models)
        result = simulate_serving(model, requests, ServingConfig(max_batch=QPS_MAX_BATCH), closed_loop=QPS_MAX_BATCH)
        out[name] = result.throughput_tok_s / per_request
    return out


def qps_headline(records: list[dict], capacity: dict[str, float], roofline: dict[str, float]) -> dict:
    """Each system's saturation rate by the TTFT criterion (`saturation_qps`) and its capacity (`capacity_qps`,
    and `roofline`: the same with the GPU devices timed as the paper's simulator, --as-artifact), and the issue's
    two checks on the capacities beside the paper's (module docstring)."""
    rates = {name: saturation_qps(records, name) for name in QPS_SYSTEMS}
    gpu, duplex = capacity[BASELINE], capacity[HEADLINE_SYSTEM]
    numbers = {"gpu": gpu, "gpu_roofline": roofline[BASELINE], "ratio": duplex / gpu,
               "ratio_roofline": roofline[HEADLINE_SYSTEM] / roofline[BASELINE]}
    low, high = QPS_PAPER["gpu_saturation_qps"]
    checks = {"gpu_saturation_qps": (gpu, low <= gpu <= high, f"between {low:g} and {high:g}"),
              "duplex_over_gpu": (duplex / gpu, duplex / gpu >= QPS_PAPER["duplex_over_gpu"],
                                  f"at least {QPS_PAPER['duplex_over_gpu']:g}")}
    out: dict = {"saturation_qps": {name: {"qps": q, "bound": bound} for name, (q, bound) in rates.items()},
                 "capacity_qps": dict(capacity), "capacity_qps_as_artifact": dict(roofline)}
    for metric, (ours, within, paper) in checks.items():
        out[metric] = {"ours": ours, "paper": paper, "within": within,
                       "reason": "" if within else QPS_ATTRIBUTION[metric].filled(**numbers)}
    return out


def run_all(as_artifact: bool = False) -> tuple[list[dict], dict, list[dict]]:
    """The reproduction's records (the grids, then the Bank-PIM comparison's systems the paper grid has not run at
    its point: the GPU has), its headline (the paper grid's, "bank_pim" and "qps") and the QPS sweep's records;
    with `as_artifact`, the GPU devices timed as Duplex's simulator times them (`duplex_system`). The parts share
    their models (`duplex_model`)."""
    models: dict = {}
    grid = grid_records(as_artifact=as_artifact, models=models)
    bank = bank_pim_comparison(tuple(s for s in BANK_PIM_SYSTEMS if s != BASELINE), as_artifact=as_artifact,
                               models=models)
    qps = qps_sweep(as_artifact=as_artifact, models=models)
    summary = {**headline(grid), "bank_pim": bank_pim_headline(bank),
               "qps": qps_headline(qps, capacity_qps(as_artifact=as_artifact, models=models),
                                   capacity_qps(as_artifact=True, models=models)),
               "figures": figures(grid + bank), "as_artifact": as_artifact}
    return grid + bank, summary, qps


def headline_rows(summary: dict) -> list[dict]:
    """`run_all`'s headline as rows of metric, ours, paper, within, reason (headline.csv, the report's summary)."""
    fields = ("ours", "paper", "within", "reason")
    rows = [{"metric": k, **{f: v[f] for f in fields}}
            for k, v in summary.items() if isinstance(v, dict) and "ours" in v]
    rows += [{"metric": f"bank_pim_over_duplex {model}", "ours": v["bank_pim_over_duplex"],
              "paper": f"{v['paper_faster']} faster", "within": v["within"], "reason": v["reason"]}
             for model, v in summary["bank_pim"].items()]
    rows += [{"metric": k, **{f: v[f] for f in fields}} for k, v in summary["qps"].items() if "ours" in v]
    rows += [{"metric": f["figure"], **{k: f[k] for k in fields}} for f in summary["figures"]]
    return rows
