"""Lamina's devices, models and traces as library presets (pim.md §3.2 Table 1 and §3.5, Lamina v2 §6): the H20
GPU preset, the LLaMA-33B and LLaMA-65B workloads and the four trace length presets."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.commands.simulate import simulate_cmd
from archsim.gpu.load import gpu_for, load_gpu
from archsim.systems.requests import LENGTH_PRESETS
from archsim.systems.step import Step, layer_ops

# pim.md §3.5: trace -> (mean prompt tokens, mean generated tokens)
TRACE_MEANS = {"azure-conv": (1154.7, 211.1), "azure-code": (2047.8, 27.9), "kimi-conv": (12035.1, 342.6),
               "kimi-ta": (8560.0, 182.1)}
# pim.md §3.5: FP16 weights in bytes
WEIGHT_BYTES = {"llama-33b": 64.7e9, "llama-65b": 130.1e9}


def _weight_bytes(name: str) -> int:
    """The workload's weights from the systems layer: one decode layer's weight bytes times the layers, plus the
    input embedding and the LM head (untied in LLaMA), each vocab x hidden words."""
    workload = library.load_workload_spec(name)
    p = workload.params
    per_layer = sum(op.bytes_by_role["weights"] for op in layer_ops(workload, Step("decode", 1, 1), workload.block))
    return per_layer * p["layers"] + 2 * p["vocab"] * p["hidden"] * p["word_bytes"]


def test_trace_presets_carry_laminas_means() -> None:
    """Their sampled means are checked with the other presets' in tests/test_serving.py."""
    assert {name: (LENGTH_PRESETS[name].mean_prompt_tokens, LENGTH_PRESETS[name].mean_output_tokens)
            for name in TRACE_MEANS} == TRACE_MEANS


def test_simulate_offers_the_trace_presets() -> None:
    (lengths,) = [p for p in simulate_cmd.params if p.name == "lengths"]
    assert set(TRACE_MEANS) <= set(lengths.type.choices)


def test_h20_preset_carries_laminas_table_1() -> None:
    """Table 1: 148 TFLOPS BF16, 96 GB (GiB, as every DRAM size), 4.0 TB/s, 400 W; fp8 twice the fp16 rate."""
    h20 = load_gpu("h20")
    assert (h20.tensor_flops_per_s["bf16"], h20.tensor_flops_per_s["fp16"], h20.tensor_flops_per_s["fp8"]) == (
        148e12, 148e12, 296e12)
    assert (h20.dram_bytes, h20.dram_bytes_per_s, h20.power_w) == (96 * 2**30, 4.0e12, 400)
    assert gpu_for("NVIDIA H20").name == "h20" and gpu_for("H200").name == "h200-sxm"
    # pim.md §3.3: the H20 has 15 % of the H100's FLOPS (148 / 989.4)
    h100 = load_gpu("h100-sxm5")
    assert h20.tensor_flops_per_s["bf16"] / h100.tensor_flops_per_s["bf16"] == pytest.approx(0.15, abs=0.005)


@pytest.mark.parametrize("name", sorted(WEIGHT_BYTES))
def test_llama_workloads_weigh_what_lamina_says(name: str) -> None:
    """By hand for LLaMA-33B: per layer 4 x 6656^2 (q, k, v, o) + 3 x 6656 x 17920 (SwiGLU) + 2 x 6656 (norms)
    = 535.05 M words, x 60 layers + 2 x 32000 x 6656 embedding words = 32.53 G words = 65.06 GB, 0.6 % above
    64.7 GB; LLaMA-65B likewise 130.57 GB, 0.4 % above 130.1 GB."""
    assert _weight_bytes(name) == pytest.approx(WEIGHT_BYTES[name], rel=0.02)
    if name == "llama-33b":
        words = (4 * 6656**2 + 3 * 6656 * 17920 + 2 * 6656) * 60 + 2 * 32000 * 6656
        assert _weight_bytes(name) == 2 * words


def test_llama3_70b_weights_are_its_config_closed_form() -> None:
    """Per layer 2 x 8192^2 (q, o) + 2 x 8192 x 1024 (GQA k, v) + 3 x 8192 x 28672 + 2 x 8192 words, x 80, plus
    2 x 128256 x 8192 embedding words: 70.55 G words = 141.1 GB. Lamina's 137.5 GB (pim.md §3.5) is 2.6 % lower,
    outside 2 %; counting one embedding matrix (139.0 GB) would be 1.1 % above it, but Llama 3's LM head is not
    tied to its input embedding, so both are counted."""
    words = (2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192) * 80 + 2 * 128256 * 8192
    assert _weight_bytes("llama3-70b") == 2 * words
    assert 2 * words / 137.5e9 == pytest.approx(1.026, abs=0.001)
