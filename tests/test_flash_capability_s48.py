"""FlashAttention v1 and v2 refuse the NVIDIA GPUs they cannot run on, as FlashAttention-3 does: FA2 (its prefill,
varlen forward and decode variants) needs compute capability 8.0 (Ampere and later: mma.sync m16n8k16, cp.async,
bf16), FA1 7.5 (Turing and Ampere, not Volta). A V100 file (compute capability 7.0) had been timed with FA2 6.057
ms (gpu-roofline, llama3-8b) and served with it (audit s48). An AMD GPU (no compute capability) keeps FA2's ROCm
port, modelled with our tiles."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.gpu.load import gpu_from_dict, load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import family_of, plans, predict_varlen

PRESETS = Path(__file__).resolve().parents[1] / "archsim" / "gpu" / "presets"
FA2_KERNELS = ("FlashAttention-2", "Flash-Decoding", "Flash-Decoding (16-row tiles)", "FlashAttention v2.0.9")
FA1 = "FlashAttention (v1)"


def _a100_copy(**changes: object) -> dict:
    return {**yaml.safe_load((PRESETS / "a100-80gb-sxm4.yaml").read_text()), **changes}


def _case(kernel: str, direction: str = "fwd") -> AttentionCase:
    kv_heads = 8 if kernel == FA1 else 2  # FA1 takes a K and V per query head
    return AttentionCase("decode" if "Decod" in kernel or "v2.0.9" in kernel else direction, 2, 8, kv_heads, 128,
                         1024, direction != "decode", "fp16")


@pytest.mark.parametrize("kernel", FA2_KERNELS)
@pytest.mark.parametrize("capability", ["7.0", "7.5"])
def test_fa2_refuses_a_gpu_below_ampere(kernel: str, capability: str) -> None:
    gpu = gpu_from_dict(_a100_copy(name=f"cc{capability}", compute_capability=capability))
    found = plans(kernel, _case(kernel), gpu)
    assert isinstance(found, str), found
    assert f"compute capability {capability}" in found and "8.0" in found, found


@pytest.mark.parametrize("direction", ["fwd", "bwd", "fwd+bwd"])
def test_fa1_refuses_volta_and_runs_on_turing(direction: str) -> None:
    volta = gpu_from_dict(_a100_copy(name="v100-like", compute_capability="7.0"))
    turing = gpu_from_dict(_a100_copy(name="t4-like", compute_capability="7.5"))
    refused = plans(FA1, _case(FA1, direction), volta)
    assert isinstance(refused, str) and "compute capability 7.0" in refused and "7.5" in refused, refused
    assert not isinstance(plans(FA1, _case(FA1, direction), turing), str)


@pytest.mark.parametrize("kernel", (*FA2_KERNELS, FA1))
@pytest.mark.parametrize("gpu", ["a100-80gb-sxm4", "rtx-4090", "h100-sxm5", "b200", "mi300x"])
def test_ampere_and_later_and_amd_keep_their_plans(kernel: str, gpu: str) -> None:
    assert not isinstance(plans(kernel, _case(kernel), load_gpu(gpu)), str)


def test_fa2_varlen_forward_is_refused_below_ampere() -> None:
    gpu = gpu_from_dict(_a100_copy(name="v100-like", compute_capability="7.0"))
    kernel = "FlashAttention-2"
    case = AttentionCase("fwd", 1, 8, 2, 128, 3072, True, "fp16")
    result = predict_varlen(kernel, case, [1024, 2048], gpu, load_calibration().family_params(family_of(kernel)))
    assert not result.feasible and "compute capability 7.0" in result.reason


def _v100_file(tmp_path: Path) -> Path:
    path = tmp_path / "v100.yaml"
    path.write_text(yaml.safe_dump(_a100_copy(name="v100-like", compute_capability="7.0")))
    return path


def test_gpu_roofline_names_fa2_refused_on_a_v100_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["gpu-roofline", "--gpu", str(_v100_file(tmp_path)), "--workload",
                                       "llama3-8b", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0]: line for line in result.output.splitlines()}
    for label in ("prefill fwd FA2", "prefill fwd+bwd FA2", "decode Flash-Decoding", "decode FA v2.0.9"):
        assert "not modelled" in lines[label] and "compute capability 7.0" in lines[label], lines[label]


def test_serving_on_a_v100_file_with_fa2_is_one_line_exit_2(tmp_path: Path) -> None:
    system = tmp_path / "sys.yaml"
    system.write_text(yaml.safe_dump({
        "name": "vllm-v100", "description": "FA2 on a V100", "source": "test",
        "devices": {"gpu": {"kind": "gpu", "count": 1, "preset": str(_v100_file(tmp_path)),
                            "attention_kernel": "FlashAttention-2", "memory_utilization": 0.9}},
        "parallelism": {"tp": 1, "pp": 1},
        "placement": [{"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn",
                              "moe", "ffn_residual"], "device": "gpu"}],
        "schedule": {"kind": "blocked"}}))
    result = CliRunner().invoke(main, ["simulate", "-s", str(system), "-w", "llama3-8b", "--rate", "2",
                                       "--requests", "4"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {system}: devices.gpu.attention_kernel: "), lines
    assert "compute capability 7.0" in lines[0], lines[0]
