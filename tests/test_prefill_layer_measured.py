"""archsim's end-to-end prefill model (`archsim.systems.sparse_prefill.dense_prefill`, per layer) against one
LLaMA-3-8B decoder layer timed part by part on a lent H200 (`python benchmarks/llama_layer_prefill.py`, output in
`reports/measured/llama-layer-prefill-NVIDIA-H200.txt`; SM clocks and power sampled beside it in
`clocks-during-layer-prefill.csv`). Tolerances are the README's ("One LLaMA-3-8B layer on the H200").
"""

from __future__ import annotations

import csv
import re

import pytest
from measured_lines import MEASURED, matches

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.gpu_device import calibrated_gpu_device
from archsim.systems.sparse_prefill import (
    DENSE_KERNEL,
    HF_RMSNORM_PASSES,
    HF_ROPE_PASSES,
    dense_ops_s,
    dense_prefill,
    hf_kernels_s,
)
from archsim.systems.step import Step, non_attention_ops

LINE = re.compile(r"N=(\d+)\s+(.+?)\s+([\d.]+) ms")


def _measured() -> dict[int, dict[str, float]]:
    """N -> part -> seconds."""
    found: dict[int, dict[str, float]] = {}
    for match in matches("llama-layer-prefill-NVIDIA-H200.txt", LINE):
        found.setdefault(int(match[1]), {})[match[2].strip()] = float(match[3]) * 1e-3
    return found


@pytest.fixture(scope="module")
def model() -> dict[int, dict[str, float]]:
    """N -> part -> seconds of one layer, as the prefill model times it (HF's RMSNorm and RoPE kernels as
    `sparse_prefill` prices them)."""
    workload, gpu = library.load_workload_spec("llama3-8b"), load_gpu("h200-sxm")
    layers, device = int(workload.params["layers"]), calibrated_gpu_device(gpu, DENSE_KERNEL)
    params = workload.params
    found = {}
    for n in _measured():
        prefill = dense_prefill(workload, gpu, n)
        ops = {op.name: device.cost([op]).time_s for op in non_attention_ops(workload, Step("prefill", 1, n))}
        rotated = n * (params["heads"] + params["kv_heads"]) * params["head_dim"]
        # one decoder layer: its ops but attention (`dense_ops_s`, the LM head left out) and its attention
        found[n] = {"whole layer": dense_ops_s(workload, gpu, n) + prefill.attention_s / layers,
                    "flash attention (causal, GQA)": prefill.attention_s / layers, "swiglu mlp": ops["ffn"],
                    "rmsnorm": hf_kernels_s(device, HF_RMSNORM_PASSES, n * params["hidden"]),
                    "rope (q and k)": hf_kernels_s(device, HF_ROPE_PASSES, rotated)}
    return found


def test_the_layer_was_timed_at_three_lengths() -> None:
    measured = _measured()
    assert sorted(measured) == [8192, 32768, 131072]
    assert all(len(parts) == 8 for parts in measured.values())


def test_a_layer_within_15_percent_and_its_parts(model) -> None:
    """The whole layer is 6-12 % fast in the model (8K-128K); its FlashAttention-2 call within 11 %, its SwiGLU GEMMs
    within 13 % and an RMSNorm (HF's eight fp32 kernels) within 13 %, each tested at 15 %. RoPE's five kernels are
    42 % fast: they run at the eager family's A100 DRAM fraction, as the H200's other eager passes do not."""
    measured = _measured()
    for n, parts in model.items():
        assert -0.15 <= parts["whole layer"] / measured[n]["whole layer"] - 1 <= 0.0, n
        for part in ("flash attention (causal, GQA)", "swiglu mlp", "rmsnorm"):
            assert abs(parts[part] / measured[n][part] - 1) <= 0.15, (n, part)
        assert -0.45 <= parts["rope (q and k)"] / measured[n]["rope (q and k)"] - 1 <= -0.35, n


def test_the_gpu_ran_below_its_boost_clock_at_its_power_cap() -> None:
    """The clocks sampled during the run: at 650 W and above (the 700 W cap) the SM clock sat below the 1980 MHz
    boost, 0.88 of it on average (0.73-0.98)."""
    rows = list(csv.reader((MEASURED / "clocks-during-layer-prefill.csv").open(encoding="utf-8")))[1:]
    loaded = [float(r[1].split()[0]) for r in rows if float(r[2].split()[0]) >= 650]
    assert len(loaded) >= 10 and max(loaded) < 1980
    assert 0.85 <= sum(loaded) / len(loaded) / 1980 <= 0.95


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="at 128K the layer is 12 % fast in the model: its tensor work runs at the "
                   "preset's boost clock, where the H200 held 0.88 of it on average at its power cap (attention 10 %, "
                   "MLP 12 % fast), and RoPE's kernels at the eager family's A100 DRAM fraction (42 % fast)")
def test_a_layer_within_10_percent(model) -> None:
    measured = _measured()
    for n, parts in model.items():
        assert abs(parts["whole layer"] / measured[n]["whole layer"] - 1) <= 0.10, n
