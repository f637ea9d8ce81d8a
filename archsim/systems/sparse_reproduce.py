"""`archsim reproduce sparse`: sparse prefill and KV-cache selection (../shared/reference/seqpar-sparse.md §3) run
through archsim's models, ours beside the public figures.

- MInference (`minference_points`): end-to-end prefill of LLaMA-3-8B-1M (Llama-3-8B shapes) on one A100 80GB with
  the shipped per-head settings (`workloads/patterns/llama3-8b-262k-minference.yaml`) against dense
  FlashAttention-2, at 10K to 1M tokens (`archsim.systems.sparse_prefill`); and the kernel-granularity density of
  that map's vertical-slash masks (`archsim.workload_patterns.mean_vertical_slash_density`).
- DuoAttention (`duo_points`): decode per generated token, end to end, and memory, Llama-2-7B with 25 % and
  Llama-3-8B with 50 % retrieval heads (the shipped maps' fractions) on an A100, 20K to 1M tokens
  (`archsim.systems.kv_selection.duo_decode`; a point whose memory exceeds the GPU is still timed, `fits` says so).
- Quest (`quest_points`): self-attention of one layer (`attention`) and end-to-end decode (`decode`) of
  Llama-2-7B shapes (LongChat-7B, Quest's model) on an RTX 4090 and an RTX 6000 Ada at 8K-32K tokens with budgets
  512-4096 (`kv_selection.quest_decode`), and the loaded fraction 1/page + K/pages from the cascade's bytes.
The paper's numbers sit in `PAPER` (with their source) and are only printed beside ours.
"""

from __future__ import annotations

import functools

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.sparse_points import SparseMethod, method_points, prefill_point
from archsim.workload_patterns import load_pattern_map, mean_vertical_slash_density

PREFILL_TOLERANCE = 0.20  # issue 19: each within 20 %
MINFERENCE_MODEL, MINFERENCE_GPU, MINFERENCE_MAP = "llama3-8b", "a100-80gb-sxm4", "llama3-8b-262k-minference"
MINFERENCE_LENGTHS = (10_000, 100_000, 200_000, 300_000, 500_000, 1_000_000)
DENSITY_CHECKS = ((200_000, 0.90), (500_000, 0.95))  # (context, sparsity the masks must exceed), App. F
DUO_RUNS = (("llama2-7b", "llama2-7b-duo-25"), ("llama3-8b", "llama3-8b-duo-50"))
DUO_GPU, DUO_LENGTHS = "a100-80gb-sxm4", (20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
QUEST_MODEL, QUEST_GPUS = "llama2-7b", ("rtx-4090", "rtx-6000-ada")
QUEST_LENGTHS, QUEST_BUDGETS = (8192, 16384, 32768), (512, 1024, 2048, 4096)
# why the prefill target is missed: the reproduction's strict xfail and its report read this
PREFILL_GAP = ("dense FA-2 comes out 16-31 % fast: the GPU model runs FlashAttention-2 at 225-246 TFLOP/s on a long "
               "causal prompt, its A100 fit to the kernel benchmarks, while the benchmark's 1M point implies ~157 "
               "TFLOP/s (sustained clocks under the power cap are not modelled); MInference comes out 38-66 % fast: "
               "the same dense share, and attention from the sparse end of the placement (slashes in one local "
               "band; the benchmark's times imply 2.9x our kernel tiles at 300K and 4.6x at 1M, still within App. "
               "F's sparsity bounds); at 10K the measured 1.8 s beyond dense is 1.8 ms per head call, far above the "
               "model's estimate and launches")
PAPER = {
    # repo experiments/README.md, single A100-80G, LLaMA-3-8B-Instruct-1048k (seqpar-sparse.md §3.1): (FA-2, MInference)
    "minference_prefill_s": {10_000: (0.976, 2.776), 100_000: (24.88, 13.99), 300_000: (169.6, 41.09),
                             1_000_000: (1765.6, 179.1)},
}


@functools.cache
def _minference() -> dict[int, dict]:
    workload, gpu = library.load_workload_spec(MINFERENCE_MODEL), load_gpu(MINFERENCE_GPU)
    pattern_map = load_pattern_map(MINFERENCE_MAP)
    return {n: prefill_point(workload, gpu, n, pattern_map) for n in MINFERENCE_LENGTHS}


def minference_points() -> list[dict]:
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


def density_rows() -> list[dict]:
    pattern_map = load_pattern_map(MINFERENCE_MAP)
    return [{"context": n, "sparsity": 1 - mean_vertical_slash_density(pattern_map, n), "above": floor}
            for n, floor in DENSITY_CHECKS]


def duo_points() -> list[dict]:
    gpu = load_gpu(DUO_GPU)
    return [p for model, map_name in DUO_RUNS
            for p in method_points(SparseMethod("duoattention", pattern_map=load_pattern_map(map_name)),
                                   library.load_workload_spec(model), gpu, DUO_LENGTHS) if p["phase"] == "decode"]


def quest_points() -> list[dict]:
    workload, method = library.load_workload_spec(QUEST_MODEL), SparseMethod("quest", budgets=QUEST_BUDGETS)
    return [p for gpu_name in QUEST_GPUS for p in method_points(method, workload, load_gpu(gpu_name), QUEST_LENGTHS)]


def run_all() -> dict:
    """Everything `archsim reproduce sparse` prints: {"points", "minference", "density", "headline"}."""
    comparison = minference_comparison()
    slower = next(r for r in comparison if r["context"] == min(PAPER["minference_prefill_s"]))
    headline = {
        "minference_within": all(abs(r["dense_error"]) <= PREFILL_TOLERANCE
                                 and abs(r["minference_error"]) <= PREFILL_TOLERANCE for r in comparison),
        "minference_slower_at_10k": slower["minference_s"] > slower["dense_s"],
        "density_above": all(r["sparsity"] > r["above"] for r in density_rows()),
    }
    return {"points": minference_points() + duo_points() + quest_points(), "minference": comparison,
            "density": density_rows(), "headline": headline}
