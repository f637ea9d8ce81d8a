"""The pure roofline baseline beside the GPU model, and the points and ceilings of a GPU roofline figure.

Roofline time of a kernel call (LLM-Viewer's per-layer roofline, Yuan et al. 2024, without efficiency factors):
max(FLOPs / tensor peak, DRAM bytes / DRAM bandwidth), with FLOPs by the benchmark convention (the useful work,
`AttentionCase.flops`), DRAM bytes as the model's traffic analysis counts them for that kernel (so PyTorch's N x N
passes count, a fused kernel's tiles do not), and datasheet peaks.

A roofline figure places each kernel at (FLOPs per DRAM byte, FLOPs / modelled time) under three kinds of ceiling:
the tensor peak, the DRAM bandwidth line, and an exp ceiling per kernel — the SFU's exp rate times the kernel's
FLOPs per exp executed (about 4·d for a forward: every score costs one exp, and each query row one more per key
tile for the running max's rescale, 4·d / (1 + 1/block_n)) — which caps attention below the
tensor peak when exps cannot keep up (FA3 §3: 989 TFLOPs of matmul against 3.9 TFLOPs of exp on H100).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.model.gpu import CASE_SIZES, WORD_PRECISIONS, AttentionCase, GpuResult, refuse_unmodelled_attention
from archsim.model.gpu_kernels import family_of, predict


def roofline_time_s(result: GpuResult, gpu: GPU) -> float:
    """The pure roofline time of a modelled call (module docstring): max(FLOPs / tensor peak at the case's
    precision, the model's DRAM bytes / DRAM bandwidth), in seconds."""
    compute_s = result.flops / gpu.tensor_peak_flops_per_s(result.case.precision)
    return max(compute_s, result.total("dram_bytes") / gpu.dram_bytes_per_s)


@dataclass(frozen=True)
class RooflinePoint:
    """One kernel on a roofline figure: its FLOPs per DRAM byte, its modelled FLOP/s, its exp ceiling and its pure
    roofline rate, each in FLOP/s (module docstring)."""

    label: str
    flops_per_byte: float
    flops_per_s: float  # attained: convention FLOPs / modelled time
    exp_ceiling_flops_per_s: float  # exp rate x FLOPs per exp executed
    roofline_flops_per_s: float  # the pure roofline's attained rate


def roofline_point(label: str, result: GpuResult, gpu: GPU) -> RooflinePoint:
    """The RooflinePoint of a modelled call `result` on `gpu`; an exp ceiling of inf when the call runs no exp."""
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
# FlashAttention-2 and the materialising PyTorch baseline, the prefill forward with FlashAttention-3 (Hopper only:
# elsewhere a kernel that cannot run), decode with the three decode kernels.
WORKLOAD_KERNELS = (
    ("prefill fwd FA2", "FlashAttention-2", "fwd"),
    ("prefill fwd FA3", "FlashAttention-3", "fwd"),
    ("prefill fwd+bwd FA2", "FlashAttention-2", "fwd+bwd"),
    ("prefill fwd PyTorch", "PyTorch standard attention", "fwd"),
    ("decode Flash-Decoding", "Flash-Decoding", "decode"),
    ("decode FA v2.0.9", "FlashAttention v2.0.9", "decode"),
    ("decode PyTorch eager", "PyTorch eager attention", "decode"),
)


# The workload sizes a roofline needs, each from the workload (as a cascade binding them requires: a workload
# without kv_heads is refused, not taken as multi-head attention); word_bytes sets the precision (`WORD_PRECISIONS`).
WORKLOAD_SIZES = CASE_SIZES


def workload_points(workload: Mapping[str, float], gpu: GPU, params_of, source: str = "<python>",
                    where: Mapping[str, str] | None = None,
                    causal: bool = True) -> tuple[list[RooflinePoint], list[tuple[str, str]]]:
    """Roofline points of a workload's attention kernels (prefill at `seq_len`, `causal` or not: an encoder's is
    not; decode against a KV cache of `seq_len`, at the precision of its `word_bytes`), and (label, reason) of each
    kernel that cannot run it (a kernel without an fp8 path at 1-byte words, any at 4-byte words; a call beyond the
    model's limit on query rows or keys, `AttentionCase.limit_problem`: a prefill's rows grow with `seq_len`, a
    decode's do not);
    `params_of(family)` gives a family's parameters (e.g. `Calibration.family_params`). A missing or unusable size
    is a SpecError naming `source` and `where[size]` (default `params.<size>`), and so is the limit when no kernel
    runs within it."""
    def blame(key: str) -> str:
        return (where or {}).get(key, f"params.{key}")

    for key in WORKLOAD_SIZES:
        if key not in workload:
            raise SpecError(source, blame(key), f"missing: the attention roofline needs {', '.join(WORKLOAD_SIZES)}")
    refuse_unmodelled_attention(workload, source, blame, "the GPU attention kernels modelled here are dense "
                                                         "multi-head and grouped-query attention, so this workload's "
                                                         "roofline would be wrong")
    heads, kv_heads = int(workload["heads"]), int(workload["kv_heads"])
    if heads % kv_heads:
        raise SpecError(source, blame("kv_heads"), f"expected a divisor of heads ({heads}), got {kv_heads}")
    precision = WORD_PRECISIONS.get(workload["word_bytes"])
    if precision is None:
        raise SpecError(source, blame("word_bytes"), "expected " + ", ".join(
            f"{size} ({name})" for size, name in WORD_PRECISIONS.items()) + f" bytes, got {workload['word_bytes']:g}")
    points, infeasible, beyond_limit = [], [], []
    for label, kernel, direction in WORKLOAD_KERNELS:
        case = AttentionCase(direction, int(workload["batch"]), heads, kv_heads, int(workload["head_dim"]),
                             int(workload["seq_len"]), causal and direction != "decode", precision)
        field, problem = case.shape_problem()
        if problem:
            raise SpecError(source, blame(_workload_size(field)), problem)
        field, too_large = case.limit_problem()
        if too_large:
            beyond_limit.append((field, too_large))
            infeasible.append((label, too_large))
            continue
        result = predict(kernel, case, gpu, params_of(family_of(kernel)))
        if result.feasible:
            points.append(roofline_point(label, result, gpu))
        else:
            infeasible.append((label, result.reason))
    if beyond_limit and not points and len(beyond_limit) == len(infeasible):  # the limit alone stopped every kernel
        field, too_large = beyond_limit[0]
        raise SpecError(source, blame(_workload_size(field)), too_large)
    return points, infeasible


def _workload_size(field: str) -> str:
    """The workload size an `AttentionCase` field comes from."""
    return "seq_len" if field == "seqlen" else field
