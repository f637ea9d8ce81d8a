"""The pure roofline baseline beside the GPU model, and the points and ceilings of a GPU roofline figure.

Roofline time of a kernel call (LLM-Viewer's per-layer roofline, Yuan et al. 2024, without efficiency factors):
max(FLOPs / tensor peak, DRAM bytes / DRAM bandwidth), with FLOPs by the benchmark convention (the useful work,
`AttentionCase.flops`), DRAM bytes as the model's traffic analysis counts them for that kernel (so PyTorch's N x N
passes count, a fused kernel's tiles do not), and datasheet peaks.

A roofline figure places each kernel at (FLOPs per DRAM byte, FLOPs / modelled time) under three kinds of ceiling:
the tensor peak, the DRAM bandwidth line, and an exp ceiling per kernel — the SFU's exp rate times the kernel's
FLOPs per exp executed (4·d for a forward, where every score costs one exp) — which caps attention below the
tensor peak when exps cannot keep up (FA3 §3: 989 TFLOPs of matmul against 3.9 TFLOPs of exp on H100).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from archsim.gpu.spec import GPU
from archsim.model.gpu import AttentionCase, GpuResult
from archsim.model.gpu_kernels import family_of, predict


def roofline_time_s(result: GpuResult, gpu: GPU) -> float:
    compute_s = result.flops / gpu.tensor_peak_flops_per_s(result.case.precision)
    return max(compute_s, result.total("dram_bytes") / gpu.dram_bytes_per_s)


@dataclass(frozen=True)
class RooflinePoint:
    label: str
    flops_per_byte: float
    flops_per_s: float  # attained: convention FLOPs / modelled time
    exp_ceiling_flops_per_s: float  # exp rate x FLOPs per exp executed
    roofline_flops_per_s: float  # the pure roofline's attained rate


def roofline_point(label: str, result: GpuResult, gpu: GPU) -> RooflinePoint:
    dram = result.total("dram_bytes")
    exps = result.total("exp_ops")
    exp_ceiling = gpu.exp_per_s * result.flops / exps if exps else float("inf")
    return RooflinePoint(label, result.flops / dram, result.flops / result.time_s, exp_ceiling,
                         result.flops / roofline_time_s(result, gpu))


def ceilings(gpu: GPU, precision: str = "fp16") -> dict[str, float]:
    """Tensor peak (FLOP/s), DRAM bandwidth (B/s), exp rate (exp/s) and the ridge point (FLOP/B)."""
    peak = gpu.tensor_peak_flops_per_s(precision)
    return {"tensor_flops_per_s": peak, "dram_bytes_per_s": gpu.dram_bytes_per_s, "exp_per_s": gpu.exp_per_s,
            "ridge_flops_per_byte": peak / gpu.dram_bytes_per_s}


# (label, kernel, direction) of the kernels a workload runs: prefill forward and training step with
# FlashAttention-2 and the materialising PyTorch baseline, decode with the three decode kernels.
WORKLOAD_KERNELS = (
    ("prefill fwd FA2", "FlashAttention-2", "fwd"),
    ("prefill fwd+bwd FA2", "FlashAttention-2", "fwd+bwd"),
    ("prefill fwd PyTorch", "PyTorch standard attention", "fwd"),
    ("decode Flash-Decoding", "Flash-Decoding", "decode"),
    ("decode FA v2.0.9", "FlashAttention v2.0.9", "decode"),
    ("decode PyTorch eager", "PyTorch eager attention", "decode"),
)


def workload_points(workload: Mapping[str, float], gpu: GPU, params_of) -> list[RooflinePoint]:
    """Roofline points of a workload's attention kernels (causal prefill at `seq_len`, decode against a KV cache
    of `seq_len`); `params_of(family)` gives a family's parameters (e.g. `Calibration.family_params`)."""
    heads = int(workload["heads"])
    kv_heads = int(workload.get("kv_heads", heads))
    points = []
    for label, kernel, direction in WORKLOAD_KERNELS:
        case = AttentionCase(direction, int(workload.get("batch", 1)), heads, kv_heads, int(workload["head_dim"]),
                             int(workload["seq_len"]), direction != "decode", "fp16")
        result = predict(kernel, case, gpu, params_of(family_of(kernel)))
        if result.feasible:
            points.append(roofline_point(label, result, gpu))
    return points
