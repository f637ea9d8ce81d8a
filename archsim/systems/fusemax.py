"""FuseMax (Nayak et al., MICRO'24) reproduced from archsim's own specs: every configuration of the paper's
Figs. 6-11 is a (cascade, architecture, mapping) triple from the library, evaluated by the analytical model.

    config    mappings tried (the best feasible one is kept, as a mapper would)
    unfused   unfused                      3-pass, three kernels through DRAM
    flat      flat, flat-offchip           3-pass fused, scores on chip while they fit, else off chip
    cascade   fusemax-cascade              1-pass cascade on the FLAT hardware
    arch      fusemax-arch                 FuseMax hardware, no interleaving
    fusemax   fusemax                      the full design

The artifact's result CSVs (`reference/fusemax/`) are only read to print them beside ours and to compute the
error; nothing in a result comes from them.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping

import pandas as pd

from archsim.model.analytical import evaluate
from archsim.model.result import Result
from archsim.point import prepare

CONFIGS = {
    "unfused": ("unfused",),
    "flat": ("flat", "flat-offchip"),
    "cascade": ("fusemax-cascade",),
    "arch": ("fusemax-arch",),
    "fusemax": ("fusemax",),
}
MODELS = {"BERT": "bert-base", "TrXL": "trxl", "T5": "t5-small", "XLM": "xlm"}
LENGTHS = {"1K": 1 << 10, "4K": 1 << 12, "16K": 1 << 14, "64K": 1 << 16, "256K": 1 << 18, "1M": 1 << 20}
REFERENCE_FILES = {"unfused": "attn-unfused.csv", "flat": "attn-flat.csv", "cascade": "attn-cascade.csv",
                   "arch": "attn-arch.csv", "fusemax": "attn-binding.csv"}
METRICS = ("latency_s", "traffic_bytes", "energy_pj", "util_2d", "util_1d")


def attention_result(config: str, model: str, seq_len: int) -> Result:
    """The best feasible of the config's mappings at this model and length, as a mapper would keep."""
    best = None
    for mapping in CONFIGS[config]:
        point = prepare(mapping, workload=MODELS[model], sets={"seq_len": seq_len})
        result = evaluate(point.binding, point.analysis, point.arch, point.mapping)
        key = (not result.feasible, result.latency_s, result.energy_pj)
        if best is None or key < best[0]:
            best = (key, result)
    return best[1]


def attention_point(config: str, model: str, seq_len: int) -> dict:
    """One record of the attention comparison."""
    result = attention_result(config, model, seq_len)
    return {
        "config": config, "model": model, "seq_len": seq_len, "mapping": result.mapping,
        "feasible": result.feasible, "latency_s": result.latency_s,
        "traffic_bytes": result.dram_traffic_bytes(), "energy_pj": result.energy_pj,
        "util_2d": result.utilization["array2d"], "util_1d": result.utilization["array1d"],
    }


def attention_records(configs: Iterable[str] = CONFIGS, models: Iterable[str] = MODELS,
                      lengths: Iterable[int] = LENGTHS.values()) -> list[dict]:
    return [attention_point(c, m, n) for c in configs for m in models for n in lengths]


def reference() -> pd.DataFrame:
    """The artifact's attention results, one row per (config, model, seq_len), in archsim's column names."""
    return read_reference(REFERENCE_FILES, METRICS)


def read_reference(files: Mapping[str, str], metrics: Iterable[str]) -> pd.DataFrame:
    """Artifact CSVs from `reference/fusemax/` (config -> file name), one row per (config, model, seq_len), in
    archsim's column names."""
    root = importlib.resources.files("archsim.systems") / "reference" / "fusemax"
    frames = []
    for config, name in files.items():
        with (root / name).open() as f:
            df = pd.read_csv(f)
        df = df.rename(columns={"latency": "latency_s", "traffic": "traffic_bytes", "energy": "energy_pj"})
        df["config"] = config
        df["seq_len"] = df["seq_len"].map(LENGTHS)
        frames.append(df[["config", "model", "seq_len", *metrics]])
    return pd.concat(frames, ignore_index=True)


def compare(records: list[dict], paper: pd.DataFrame | None = None, metrics: Iterable[str] = METRICS
            ) -> pd.DataFrame:
    """Ours beside the paper's (default: the attention results) where the paper's is known: relative error for
    latency, traffic and energy, absolute error for the utilizations."""
    ours = pd.DataFrame(records)
    paper = reference() if paper is None else paper
    merged = ours.merge(paper, on=["config", "model", "seq_len"], how="left", suffixes=("", "_paper"))
    for metric in metrics:
        paper = merged[f"{metric}_paper"]
        diff = merged[metric] - paper
        merged[f"{metric}_err"] = diff.abs() if metric.startswith("util") else diff / paper
    return merged


def headline(records: list[dict]) -> dict[str, float]:
    """FuseMax against FLAT over every (model, length) point both have: arithmetic means of the speedup and of
    the energy ratio (the paper's 6.7x and 0.79 are such means over 24 points)."""
    df = pd.DataFrame(records).set_index(["model", "seq_len"])
    fusemax, flat = df[df.config == "fusemax"], df[df.config == "flat"]
    joined = fusemax.add_suffix("_fusemax").join(flat.add_suffix("_flat"), how="inner")
    return {
        "points": len(joined),
        "speedup_vs_flat": float((joined.latency_s_flat / joined.latency_s_fusemax).mean()),
        "energy_vs_flat": float((joined.energy_pj_fusemax / joined.energy_pj_flat).mean()),
    }
