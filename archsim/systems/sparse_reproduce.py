"""`archsim reproduce sparse`: sparse prefill and KV-cache selection (../shared/reference/seqpar-sparse.md §3) run
through archsim's models, ours beside the public figures.

- MInference (`minference_points`): end-to-end prefill of LLaMA-3-8B-1M (Llama-3-8B shapes) on one A100 80GB with
  the shipped per-head settings (`workloads/patterns/llama3-8b-262k-minference.yaml`) against dense
  FlashAttention-2, at 10K to 1M tokens (`archsim.systems.sparse_prefill`); and the kernel-granularity density of
  that map's vertical-slash masks (`archsim.workload_patterns.mean_vertical_slash_density`). Beside two of the
  reference's figures, printed with no tolerance claimed (the issue asks none): MInference's index building as a
  share of its attention and of the prefill (`index_building_rows`: its pattern estimation and index build, our
  eager estimation less the pads of Q, K and V, `gpu_sparse.pad_launches`), against "5-20 % of time, 30 % at 10K"
  (App. A); and the longest prompt one A100 holds with the KV cache on the host (`longest_prefill`,
  `sparse_prefill.longest_prefill_tokens`), against "a single A100 fits up to 1.8M tokens of prefill".
- DuoAttention (`duo_points`): decode per generated token, end to end, and memory, Llama-2-7B with 25 % and
  Llama-3-8B with 50 % retrieval heads (the shipped maps' fractions) on an A100, 20K to 1M tokens
  (`archsim.systems.kv_selection.duo_decode`; a point whose memory exceeds the GPU is still timed, `fits` says so);
  its end-to-end prefill at the same contexts (`sparse_prefill.duo_prefill`) enters only its "up to" (`duo_up_to`),
  not the points.
- Quest (`quest_points`): self-attention of one layer (`attention`) and end-to-end decode (`decode`) of
  Llama-2-7B shapes (LongChat-7B, Quest's model) on an RTX 4090 and an RTX 6000 Ada at 8K-32K tokens with budgets
  512-4096 (`kv_selection.quest_decode`), and the loaded fraction 1/page + K/pages from the cascade's bytes
  (`quest_fraction`).
The paper's numbers sit in `PAPER` (with their source) and are only printed beside ours.

A reading of the prefill gap (`held_clock_reading`), not the model's result: the MInference points again with the
A100's SMs at the fraction of boost an H200 held running FlashAttention-2 at each prompt length under its 700 W
power cap (`H200_HELD_CLOCK_MHZ`, measured; `archsim.arch.gpu.at_sm_clock`). The GPU model runs every GPU at its
boost clock; on the H200 the whole gap of its FlashAttention-2 time at 8K-1M tokens was the clock the cap held
(the model at the sampled clock within 1.2 %), and whether the A100 under its 400 W cap falls as far is not measured:
the reading transfers the H200's fractions as they are.
"""

from __future__ import annotations

import functools
import math

from archsim import library
from archsim.arch.gpu import at_sm_clock
from archsim.gpu.load import load_gpu
from archsim.model.gpu import AttentionCase
from archsim.systems import kv_selection
from archsim.systems.attribution import Reason
from archsim.systems.sparse_points import SparseMethod, method_points, prefill_point
from archsim.systems.sparse_prefill import kv_on_host, longest_prefill_tokens
from archsim.workload_patterns import load_pattern_map, mean_vertical_slash_density

PREFILL_TOLERANCE = 0.20  # issue 19: each within 20 %
MINFERENCE_MODEL, MINFERENCE_GPU, MINFERENCE_MAP = "llama3-8b", "a100-80gb-sxm4", "llama3-8b-262k-minference"
MINFERENCE_LENGTHS = (10_000, 100_000, 200_000, 300_000, 500_000, 1_000_000)
DENSITY_CHECKS = ((200_000, 0.90), (500_000, 0.95))  # (context, sparsity the masks must exceed), App. F
DUO_RUNS = (("llama2-7b", "llama2-7b-duo-25"), ("llama3-8b", "llama3-8b-duo-50"))
DUO_GPU, DUO_LENGTHS = "a100-80gb-sxm4", (20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
QUEST_MODEL, QUEST_GPUS = "llama2-7b", ("rtx-4090", "rtx-6000-ada")
QUEST_LENGTHS, QUEST_BUDGETS = (8192, 16384, 32768), (512, 1024, 2048, 4096)
# The SM clock (MHz) an H200 held under its 700 W cap running FlashAttention-2 back to back at each prompt length (the
# mean of the windows at that length in reports/measured/long-prefill-NVIDIA-H200.txt and long-prefill-order-NVIDIA-
# H200.txt, `benchmarks/long_prefill_clocks.py`: the clock follows the length, not the time at the cap), of its boost
H200_HELD_CLOCK_MHZ = {8192: 1939, 16384: 1901, 32768: 1862, 65536: 1842, 131072: 1744, 262144: 1648, 524288: 1620,
                       1048576: 1614}
H200_PRESET = "h200-sxm"  # the GPU the clocks were sampled on; its boost is the preset's clock_hz
# why the prefill target is missed: the reproduction's strict xfail and its report read this (`prefill_gap` fills it)
PREFILL_GAP = Reason(
    "dense FA-2 is off by {dense_errors}: the GPU model runs FlashAttention-2 at {tflops_low:.0f}-{tflops_high:.0f} "
    "TFLOP/s on prompts of 100K and more, its A100 fit to the kernel benchmarks, at the boost clock, while the "
    "benchmark's 1M point implies ~157 TFLOP/s (seqpar-sparse.md §3.1); on an H200 the same model is within 1.2 % of "
    "FlashAttention-2 from 8K to 1M tokens at the SM clock the GPU held, which its 700 W power cap took from 0.96 of "
    "boost at 16K to 0.82 at 1M: the power-capped clock, which the model does not follow; with the A100 held at the "
    "H200's fractions (a reading, not measured on an A100) dense is off by {held_dense_errors} and MInference by "
    "{held_sparse_errors}; "
    "MInference is off by {sparse_errors}: the same dense share, and attention from the sparse end of the "
    "placement (slashes in one local band): the benchmark's MInference time, less our other parts slowed as its "
    "dense run is, implies {tiles_300k:.1f}x our kernel tiles at 300K and {tiles_1m:.1f}x at 1M, "
    "{density_300k:.1%} and {density_1m:.1%} of the causal points against App. F's sparsity of at least 90 % past "
    "200K and 95 % past 500K; at 10K the measured {extra_10k_s:.1f} s beyond dense is {per_call_ms:.1f} ms per "
    "head call, far above the model's estimate and launches")
PAPER = {
    # DuoAttention README headline (seqpar-sparse.md §3.3), A100-80G: "up to" over the contexts it ran, which it
    # does not list; MHA Llama-2-7B (25 % retrieval heads) and GQA Llama-3-8B (50 %)
    "duo_up_to": {"llama2-7b": {"memory": 2.55, "decode": 2.18, "prefill": 1.73},
                  "llama3-8b": {"memory": 1.67, "decode": 1.50, "prefill": 1.63}},
    # repo experiments/README.md, single A100-80G, LLaMA-3-8B-Instruct-1048k (seqpar-sparse.md §3.1): (FA-2, MInference)
    "minference_prefill_s": {10_000: (0.976, 2.776), 100_000: (24.88, 13.99), 300_000: (169.6, 41.09),
                             1_000_000: (1765.6, 179.1)},
    # MInference, seqpar-sparse.md §3.1: "Index building is 5-20% of time; at 10K it rises to 30%" (App. A), as
    # (low, high) shares, the 10K one alone; and "A single A100 fits up to 1.8M tokens of prefill" (repo README)
    "index_building_share": (0.05, 0.20), "index_building_share_at": {10_000: (0.30, 0.30)},
    "longest_prefill_tokens": 1_800_000,
}


@functools.cache
def _minference() -> dict[int, dict]:
    workload, gpu = library.load_workload_spec(MINFERENCE_MODEL), load_gpu(MINFERENCE_GPU)
    pattern_map = load_pattern_map(MINFERENCE_MAP)
    return {n: prefill_point(workload, gpu, n, pattern_map) for n in MINFERENCE_LENGTHS}


def minference_points() -> list[dict]:
    """MInference's prefill points (`prefill_point`): MINFERENCE_MODEL on MINFERENCE_GPU with the MINFERENCE_MAP
    pattern map, one per MINFERENCE_LENGTHS length."""
    return list(_minference().values())


def minference_comparison() -> list[dict]:
    """Ours beside the paper's at its four lengths, with the error of each."""
    rows = []
    for n, (paper_dense, paper_sparse) in PAPER["minference_prefill_s"].items():
        p = _minference()[n]
        rows.append({"context": n, "dense_s": p["dense_time_s"], "paper_dense_s": paper_dense,
                     "dense_error": p["dense_time_s"] / paper_dense - 1, "minference_s": p["time_s"],
                     "paper_minference_s": paper_sparse, "minference_error": p["time_s"] / paper_sparse - 1,
                     "dense_attention_s": p["dense_attention_s"], "minference_attention_s": p["attention_s"],
                     "other_ops_s": p["other_ops_s"], "kv_host_s": p["kv_host_s"]})
    return rows


def index_building_rows() -> list[dict]:
    """MInference's index building at each MINFERENCE_LENGTHS length (module docstring): its pattern estimation and
    index build (`estimate_s` less `pad_s`), its share of MInference's attention and of the whole prefill, the share
    with the pads too, and the paper's (low, high) share there; printed, not checked."""
    rows = []
    for n, p in _minference().items():
        building_s = p["estimate_s"] - p["pad_s"]
        low, high = PAPER["index_building_share_at"].get(n, PAPER["index_building_share"])
        rows.append({"context": n, "index_building_s": building_s, "pad_s": p["pad_s"],
                     "attention_s": p["attention_s"], "prefill_s": p["time_s"],
                     "attention_share": building_s / p["attention_s"], "prefill_share": building_s / p["time_s"],
                     "attention_share_with_pads": p["estimate_s"] / p["attention_s"],
                     "paper_low": low, "paper_high": high})
    return rows


def longest_prefill() -> dict:
    """The longest prompt of MINFERENCE_MODEL whose prefill one MINFERENCE_GPU holds (`longest_prefill_tokens`: the
    weights, one layer's K and V with the rest of the cache on the host, and one layer's working set), whether its
    KV cache is then on the host, beside the reference's 1.8M; printed, not checked."""
    workload, gpu = library.load_workload_spec(MINFERENCE_MODEL), load_gpu(MINFERENCE_GPU)
    tokens = longest_prefill_tokens(workload, gpu)
    paper = PAPER["longest_prefill_tokens"]
    return {"model": MINFERENCE_MODEL, "gpu": MINFERENCE_GPU, "tokens": tokens,
            "kv_on_host": kv_on_host(workload, gpu, tokens), "paper_tokens": paper, "error": tokens / paper - 1}


def prefill_gap(comparison: list[dict]) -> str:
    """`PREFILL_GAP` with the numbers of `minference_comparison`'s rows: the errors, the dense attention's FLOP/s
    (FLOPs by `AttentionCase.flops`), and what the benchmark's MInference times imply for the sparse attention."""
    by = {r["context"]: r for r in comparison}
    workload = library.load_workload_spec(MINFERENCE_MODEL)
    p, pattern_map = workload.params, load_pattern_map(MINFERENCE_MAP)

    def attention_flops(n: int) -> float:
        case = AttentionCase("fwd", 1, int(p["heads"]), int(p["kv_heads"]), int(p["head_dim"]), n, True, "bf16")
        return case.flops() * int(p["layers"])

    def implied_tiles(n: int) -> float:  # the benchmark's MInference less our other parts x its dense gap
        r = by[n]
        other_s = (r["minference_s"] - r["minference_attention_s"]) * r["paper_dense_s"] / r["dense_s"]
        return (r["paper_minference_s"] - other_s) / r["minference_attention_s"]

    rates = [attention_flops(n) / r["dense_attention_s"] / 1e12 for n, r in by.items() if n >= 100_000]
    held = held_clock_reading()
    short = by[min(by)]
    extra_s = short["paper_minference_s"] - short["paper_dense_s"]
    return PREFILL_GAP.filled(
        dense_errors=_error_range([r["dense_error"] for r in comparison]),
        sparse_errors=_error_range([r["minference_error"] for r in comparison]),
        tflops_low=min(rates), tflops_high=max(rates), tiles_300k=implied_tiles(300_000),
        tiles_1m=implied_tiles(1_000_000),
        density_300k=implied_tiles(300_000) * mean_vertical_slash_density(pattern_map, 300_000),
        density_1m=implied_tiles(1_000_000) * mean_vertical_slash_density(pattern_map, 1_000_000),
        extra_10k_s=extra_s, per_call_ms=extra_s / (int(p["layers"]) * int(p["heads"])) * 1e3,
        held_dense_errors=_error_range([r["dense_error"] for r in held if "dense_error" in r]),
        held_sparse_errors=_error_range([r["minference_error"] for r in held if "minference_error" in r]))


def held_clock_fraction(context: int) -> float:
    """The fraction of its boost clock the H200 held at a `context`-token prompt (`H200_HELD_CLOCK_MHZ`), linear in
    log2(context) between the measured lengths, the nearest one's beyond them."""
    lengths = sorted(H200_HELD_CLOCK_MHZ)
    x = min(max(math.log2(context), math.log2(lengths[0])), math.log2(lengths[-1]))
    above = next(n for n in lengths if math.log2(n) >= x)
    below = max((n for n in lengths if math.log2(n) <= x), default=above)
    low, high = H200_HELD_CLOCK_MHZ[below], H200_HELD_CLOCK_MHZ[above]
    weight = 0.0 if above == below else (x - math.log2(below)) / (math.log2(above) - math.log2(below))
    return (low + weight * (high - low)) / (load_gpu(H200_PRESET).clock_hz / 1e6)


@functools.cache
def held_clock_reading() -> list[dict]:
    """The MInference points with the A100's SMs at the H200's held fraction of boost at each length (module
    docstring), beside the paper's where it has one."""
    workload, gpu = library.load_workload_spec(MINFERENCE_MODEL), load_gpu(MINFERENCE_GPU)
    pattern_map = load_pattern_map(MINFERENCE_MAP)
    rows = []
    for n in MINFERENCE_LENGTHS:
        fraction = held_clock_fraction(n)
        p = prefill_point(workload, at_sm_clock(gpu, fraction * gpu.clock_hz), n, pattern_map)
        row = {"context": n, "clock_fraction": fraction, "clock_mhz": fraction * gpu.clock_hz / 1e6,
               "dense_s": p["dense_time_s"], "minference_s": p["time_s"]}
        if n in PAPER["minference_prefill_s"]:
            paper_dense, paper_sparse = PAPER["minference_prefill_s"][n]
            row |= {"dense_error": row["dense_s"] / paper_dense - 1,
                    "minference_error": row["minference_s"] / paper_sparse - 1}
        rows.append(row)
    return rows


def _error_range(errors: list[float]) -> str:
    return f"{min(errors):+.0%} to {max(errors):+.0%}"


def density_rows() -> list[dict]:
    """The shipped vertical-slash map's sparsity (1 - mean density) at each DENSITY_CHECKS context, beside the floor
    App. F says it exceeds there."""
    pattern_map = load_pattern_map(MINFERENCE_MAP)
    return [{"context": n, "sparsity": 1 - mean_vertical_slash_density(pattern_map, n), "above": floor}
            for n, floor in DENSITY_CHECKS]


def density_curve() -> list[dict]:
    """The shipped vertical-slash map's sparsity at every MINFERENCE_LENGTHS and DENSITY_CHECKS context, App. F's
    floor where it sets one (None elsewhere): the report's density figure."""
    pattern_map, floors = load_pattern_map(MINFERENCE_MAP), dict(DENSITY_CHECKS)
    return [{"context": n, "sparsity": 1 - mean_vertical_slash_density(pattern_map, n), "above": floors.get(n)}
            for n in sorted(set(MINFERENCE_LENGTHS) | set(floors))]


def duo_points(phases: tuple[str, ...] = ("decode",)) -> list[dict]:
    """DuoAttention's points of `phases` (`sparse_points.method_points`: attention, decode, prefill) at
    `DUO_LENGTHS`, per run of `DUO_RUNS`."""
    gpu = load_gpu(DUO_GPU)
    return [p for model, map_name in DUO_RUNS
            for p in method_points(SparseMethod("duoattention", pattern_map=load_pattern_map(map_name),
                                                prefill="prefill" in phases),
                                   library.load_workload_spec(model), gpu, DUO_LENGTHS) if p["phase"] in phases]


DUO_NO_CLAIM = "no tolerance: the README's \"up to\" does not say at which contexts it was measured"


def duo_up_to(points: list[dict]) -> list[dict]:
    """DuoAttention's memory saving and decode speed-up per model at the longest context of `DUO_LENGTHS` whose
    dense run fits the GPU (a measured "up to" needs the dense baseline), beside the README's "up to"; with prefill
    points among `points`, the prefill speed-up at that context (`prefill_context`: its context, where the dense
    prefill fits too; a prefill whose KV goes to the host fits at longer contexts than a decode). The README does
    not list its contexts, so no tolerance is claimed: printed, not checked."""
    rows = []
    for model, paper in PAPER["duo_up_to"].items():
        p = _longest_fitting(points, model, "decode")
        if p is None:
            continue
        row = {"model": model, "context": p["context"], "memory": p["dense_memory_bytes"] / p["memory_bytes"],
               "paper_memory": paper["memory"], "decode": p["dense_time_s"] / p["time_s"],
               "paper_decode": paper["decode"]}
        prefill = next((q for q in points if q["method"] == "DuoAttention" and q["model"] == model
                        and q["phase"] == "prefill" and q["context"] == p["context"] and q["dense_fits"]), None)
        if prefill is not None:
            row |= {"prefill_context": prefill["context"], "prefill": prefill["dense_time_s"] / prefill["time_s"],
                    "paper_prefill": paper["prefill"]}
        rows.append(row)
    return rows


def _longest_fitting(points: list[dict], model: str, phase: str) -> dict | None:
    """`model`'s DuoAttention point of `phase` at the longest context whose dense run fits, None if none does."""
    fitting = [p for p in points if p["method"] == "DuoAttention" and p["model"] == model and p["phase"] == phase
               and p["dense_fits"]]
    return max(fitting, key=lambda q: q["context"], default=None)


def quest_points() -> list[dict]:
    """Quest's points (`sparse_points.method_points`) of QUEST_MODEL at QUEST_LENGTHS and QUEST_BUDGETS, on each of
    QUEST_GPUS."""
    workload, method = library.load_workload_spec(QUEST_MODEL), SparseMethod("quest", budgets=QUEST_BUDGETS)
    return [p for gpu_name in QUEST_GPUS for p in method_points(method, workload, load_gpu(gpu_name), QUEST_LENGTHS)]


def quest_fraction(points: list[dict]) -> list[dict]:
    """Quest's loaded fraction beside §3.5's 1/PageSize + K/PageNum, once per (context, budget) of its attention
    `points` (the same on every GPU): `fraction` is the `quest-decode` cascade's bytes read per step over dense's
    (the point's `loaded_fraction`), `formula` the paper's with `budget_pages` = K whole pages of the budget and
    `pages` = PageNum, the context's pages rounded up."""
    page_tokens = kv_selection.QUEST_PAGE_TOKENS
    quest = {(p["context"], p["budget"]): p for p in points if p["method"] == "Quest" and p["phase"] == "attention"}
    rows = []
    for (context, budget), p in quest.items():
        pages, budget_pages = -(-context // page_tokens), budget // page_tokens
        rows.append({"context": context, "budget": budget, "page_tokens": page_tokens, "pages": pages,
                     "budget_pages": budget_pages, "fraction": p["loaded_fraction"],
                     "formula": 1 / page_tokens + budget_pages / pages})
    return rows


def run_all() -> dict:
    """Everything `archsim reproduce sparse` prints: {"points", "minference", "held_clock", "density",
    "index_building", "longest_prefill", "quest_fraction", "duo_up_to", "headline"}."""
    comparison = minference_comparison()
    slower = next(r for r in comparison if r["context"] == min(PAPER["minference_prefill_s"]))
    headline = {
        "minference_within": all(abs(r["dense_error"]) <= PREFILL_TOLERANCE
                                 and abs(r["minference_error"]) <= PREFILL_TOLERANCE for r in comparison),
        "minference_slower_at_10k": slower["minference_s"] > slower["dense_s"],
        "density_above": all(r["sparsity"] > r["above"] for r in density_rows()),
    }
    if not headline["minference_within"]:
        headline["minference_reason"] = prefill_gap(comparison)
    duo = duo_points(("decode", "prefill"))
    decode = [p for p in duo if p["phase"] == "decode"]
    quest = quest_points()
    return {"points": minference_points() + decode + quest, "minference": comparison,
            "held_clock": held_clock_reading(), "density": density_rows(), "index_building": index_building_rows(),
            "longest_prefill": longest_prefill(), "quest_fraction": quest_fraction(quest),
            "duo_up_to": duo_up_to(duo), "headline": headline}
