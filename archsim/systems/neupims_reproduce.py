"""The NeuPIMs paper's setup through `archsim.systems.neupims` (../shared/reference/pim.md §1.5, §1.6): every mode x
GPT-3 7B/13B/30B/175B x ShareGPT/Alpaca x batch 64..512, ten sampled steady-state decode batches per point, and
the headline numbers computed like the paper's, beside its claims (`PAPER`)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np

from archsim.systems.iteration import Batch
from archsim.systems.neupims import MODELS, MODES, NeuPIMsConfig, system
from archsim.systems.requests import LENGTH_PRESETS, length_distribution, sample_lengths

DATASETS = tuple(LENGTH_PRESETS)  # sharegpt, alpaca: mean input / output tokens 80 / 296 and 12 / 56, §1.5
BATCHES = (64, 128, 256, 384, 512)  # §1.5
SAMPLES = 10  # §1.5: ten sampled batches
MAX_SEQ_TOKENS = 2048  # §1.6: the artifact's max_seq 2049
PAPER = {  # §1.1, §1.6
    "neupims/npu-only": 2.4, "neupims/npu+pim": 1.6, "npu+pim/npu-only": 1.5, "neupims/gpu": 3.0,
    "npu_util npu+pim": 0.28, "npu_util neupims": 0.649, "pim_util npu+pim": 0.17, "pim_util neupims": 0.264,
    "energy neupims/npu-only": 0.75,  # §1.3: 1.8x the power at 2.4x the speed, -25 % energy
}


def sample_contexts(seed: Sequence[int], batch: int, dataset: str, pool: int = 2048) -> np.ndarray:
    """Decode contexts of a batch in steady state under continuous batching: prompt + the tokens generated so far +
    the new one, clipped to the artifact's max sequence length.

    Lengths are the serving simulator's (`archsim.systems.requests`: ShareGPT-/Alpaca-like, means 80/296 and
    12/56, §1.5), so both use one source. A request stays in the batch for as many iterations as it generates
    tokens, so a batch caught at a random iteration holds requests in proportion to their output length (the
    inspection paradox): requests are drawn from a pool of the dataset's lengths with weight = output tokens,
    each at a uniform point of its output. Drawing them unweighted would under-state the contexts by the
    residual-life factor E[O^2] / (2 E[O]^2) (about 1.4x for ShareGPT here)."""
    rng = random.Random(str(tuple(seed)))
    pairs = sample_lengths(length_distribution(dataset), pool, rng)
    chosen = rng.choices(pairs, weights=[o for _, o in pairs], k=batch)
    return np.array([min(p + rng.randrange(o) + 1, MAX_SEQ_TOKENS) for p, o in chosen], dtype=float)


def reproduce(modes: Sequence[str | NeuPIMsConfig] = (*MODES, "neupims-no-sbi"), models: Sequence[str] = tuple(MODELS),
              datasets: Sequence[str] = tuple(DATASETS), batches: Sequence[int] = BATCHES,
              samples: int = SAMPLES, seed: int = 0) -> list[dict]:
    """One record per mode (a preset name or a config) x model x dataset x batch, over `samples` sampled batches
    (the same batches for every mode): throughput = tokens / time summed over the samples, utilizations = busy /
    time likewise."""
    records = []
    for model in models:
        systems = {getattr(mode, "mode", mode): system(mode, model) for mode in modes}
        for d_index, dataset in enumerate(datasets):
            for batch in batches:
                draws = [sample_contexts((seed, d_index, batch, s), batch, dataset)
                         for s in range(samples)]
                for mode, sys_ in systems.items():
                    costs = [sys_.iteration(Batch(decode_context_tokens=c)) for c in draws]
                    time_s = sum(c.time_s for c in costs)
                    busy = {k: sum(c.busy_s.get(k, 0.0) for c in costs) for k in costs[0].busy_s}
                    records.append({
                        "mode": mode, "model": model, "dataset": dataset, "batch": batch,
                        "throughput_tok_s": batch * samples / time_s,
                        "npu_util": busy.get("npu", busy.get("gpu", 0.0)) / time_s,
                        "pim_util": busy.get("pim", 0.0) / time_s,
                        "npu_array_util": busy.get("npu_array", 0.0) / time_s,
                        "hbm_util": busy.get("hbm", 0.0) / time_s,
                        "energy_per_token_j": sum(c.energy_j for c in costs) / (batch * samples),
                        "mean_context_tokens": float(np.mean(np.concatenate(draws))),
                    })
    return records


def throughput_ratio(records: Sequence[dict], numerator: str, denominator: str,
                     where: Mapping[str, object] | None = None, metric: str = "throughput_tok_s") -> float:
    """Geometric mean over models x datasets x batches of metric(numerator) / metric(denominator)."""
    where = where or {}

    def table(mode: str) -> dict:
        return {(r["model"], r["dataset"], r["batch"]): r[metric] for r in records
                if r["mode"] == mode and all(r[k] == v for k, v in where.items())}

    top, bottom = table(numerator), table(denominator)
    logs = [math.log(top[k] / bottom[k]) for k in top if k in bottom]
    return math.exp(sum(logs) / len(logs))


def summary(records: Sequence[dict]) -> dict[str, float]:
    """The paper's headline numbers from our records: throughput ratios as geometric means over models x datasets
    x batches, the utilizations of GPT3-30B, batch 256, ShareGPT (Table 4), and the energy per token of NeuPIMs
    over NPU-only (geometric mean like the throughput)."""
    modes = {r["mode"] for r in records}
    out = {name: throughput_ratio(records, *name.split("/")) for name in
           ("neupims/npu-only", "neupims/npu+pim", "npu+pim/npu-only", "neupims/gpu")
           if set(name.split("/")) <= modes}
    if {"neupims", "npu-only"} <= modes:
        out["energy neupims/npu-only"] = throughput_ratio(records, "neupims", "npu-only",
                                                          metric="energy_per_token_j")
    point = {r["mode"]: r for r in records
             if r["model"] == "gpt3-30b" and r["dataset"] == "sharegpt" and r["batch"] == 256}
    for mode in ("npu+pim", "neupims"):
        if mode in point:
            out[f"npu_util {mode}"] = point[mode]["npu_util"]
            out[f"pim_util {mode}"] = point[mode]["pim_util"]
    return out


def compare(records: Sequence[dict]) -> list[dict]:
    """Ours beside the paper's claims (§1.1, §1.6)."""
    ours = summary(records)
    return [{"metric": k, "ours": ours[k], "paper": v, "ratio": ours[k] / v} for k, v in PAPER.items() if k in ours]
