"""Kernel registry of the GPU model: the published attention kernels it times, their families and parameters.

Each kernel of `KERNELS` (names as in `attention_measured.csv`) is a variant of a family of `FAMILIES`, whose
`plans` turns an `AttentionCase` on a `GPU` into the `Plan`s (launch lists) the kernel runs; `predict` times them
with the family's parameters (`archsim.model.gpu`). The plans, and the assumptions each rests on, live by
lineage: `archsim.model.gpu_flash_plans` (FlashAttention v1, v2, v3 and FlashAttention's Triton kernel: families
`fa1`, `fa2`, `fa3`, `fa_triton`) and `archsim.model.gpu_baseline_plans` (Triton's tutorial kernel, eager PyTorch
and archsim's own kernels: `triton_tutorial`, `pytorch`, `archsim`). Before a family builds anything, `plans`
refuses, with a reason, what no kernel or not this one runs: sizes, precision, GQA grouping, direction, attention.

Per-architecture capabilities: a family names the MMA instruction its kernels issue and the preset says what that
instruction reaches on each architecture (`GPU.sync_mma_fraction`). FlashAttention v1 and v2 issue warp-level
`mma.sync` everywhere (no wgmma, no TMA: cp.async loads and ldmatrix fragments per warp), which runs at sm80's
per-SM issue rate on sm90 and sm100 (half and about a quarter of their peaks); Triton's kernels and cuBLAS issue
the GPU's native instruction (wgmma on sm90, read from SMEM per warpgroup). The calibrated parameters are per family,
not per GPU: the same efficiencies apply on every GPU.
Only the Triton tutorial takes fp8 inputs (`FP8_FAMILIES`): FlashAttention v1/v2, its Triton kernel, eager PyTorch
and archsim's kernels have no fp8 path, so an fp8 case of theirs has no plan (the reason says so).
Varlen calls (`predict_varlen`): FlashAttention-2's forward also runs prompts of different lengths as one call
(flash_attn_varlen_func, cu_seqlens: one launch, every prompt's CTAs in one grid, each prompt's causal tiles its
own; `gpu_flash_plans.fa2_varlen_fwd`); the other kernels run one call per prompt (`VARLEN_VARIANTS`). A decode
over requests of different context lengths runs each request over its own keys with FlashAttention-2's decode
kernels (`DECODE_VARLEN_VARIANTS`: FA2's and Flash-Decoding's split rule and split size the longest request's, each
CTA walking its own request's blocks of its split; the 16-row tiles' FlashInfer's plan, every request cut into
chunks of one size), a ragged batch at the requests' mean context with eager PyTorch, every request padded to the
longest with archsim's decode kernel.
Directions: each kernel is modelled for the directions of `VARIANT_DIRECTIONS` and refused in the others, with a
reason (`direction_problem`): the decode kernels (Flash-Decoding, its 16-row tiles, v2.0.9, archsim's decode) decode
only, "PyTorch standard attention" prefill only, "PyTorch eager attention" decode and a prompt's forward (no
backward), FlashAttention-3 and archsim's naive kernel the forward only; "FlashAttention-2" runs all four, its decode
being the split-KV path.
What is not scaled per GPU: the L2 capacity (`GPU.l2_bytes`) is read only by eager PyTorch's causal-mask term (the
mask read once if it fits in L2, else once per batch and head) and FlashAttention v2.0.9's decode (a KV slice
re-read by a later wave hits where the live slices fit: `gpu_flash_plans._v209_kv_read_bytes`). The fused
forwards of `gpu_flash_plans.fwd_launch` (FA2, FA3, the Triton kernels, archsim's) move Q, K, V and O (and the
log-sum-exp) through DRAM once: a head's K and V, re-read by each of its query blocks, are taken to hit in L2 (the
head's CTAs run together in a wave), whatever the L2's size. archsim's `atomic_adds_per_cycle` (the backward's dQ
atomics) is a whole-chip rate fitted on the H200 (calibration v2) and applied as it is to every GPU: only the clock
it is multiplied by differs.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.model.gpu import DIRECTIONS, AttentionCase, GpuResult, Plan, predict_plans, sequences_kv_bytes
from archsim.model.gpu_baseline_plans import archsim_plans, pytorch_plans, tutorial_plans
from archsim.model.gpu_flash_plans import (
    FA2_HEAD_DIMS,
    compiled_head_dim,
    fa1_plans,
    fa2_plans,
    fa2_varlen_fwd,
    fa3_plans,
    fat_plans,
)


@dataclass(frozen=True)
class Param:
    """One parameter of a kernel family: its prior value and the bounds [low, high] a fit and a calibration file keep
    it in, whether `archsim calibrate` fits it, what it means, and the family whose fitted value it takes, if any."""

    prior: float
    low: float
    high: float
    fitted: bool
    meaning: str
    shared_from: str = ""  # a family whose fitted value this parameter takes


@dataclass(frozen=True)
class Family:
    """A kernel family of `FAMILIES`: its parameters, and `plans(variant, case, gpu)`, the Plans a kernel of the family
    runs for a case on a GPU, or why it cannot run."""

    name: str
    description: str
    params: Mapping[str, Param]
    plans: Callable[[str, AttentionCase, GPU], tuple[Plan, ...] | str]


def _autograd_param(fitted: bool) -> Param:
    meaning = ("seconds from a timed loss.backward() call to its first kernel (autograd engine, Python wrapper, "
               "allocations), the GPU idle unless the forward of the same call still runs; a property of the "
               "PyTorch host, not of the kernel")
    if fitted:
        return Param(1e-4, 0.0, 1e-3, True, meaning)
    return Param(1e-4, 0.0, 1e-3, False, meaning + ": taken from fa2's fit (the family with backward-only rows at "
                                                   "several lengths)", shared_from="fa2")


def _launch_param() -> Param:
    return Param(4e-6, 1e-6, 5e-5, False, "seconds from one kernel's end to the next one's first CTA (launch "
                                          "latency and the inter-kernel gap of back-to-back timing); not "
                                          "identifiable from ms-long prefill runs, so a prior")


def _overhead_param() -> Param:
    return Param(2000.0, 0.0, 1e5, True, "cycles per CTA outside the main loop, not hidden by other CTAs: "
                                         "prologue loads, pipeline fill, epilogue normalise and store")


def _efficiency(meaning: str, prior: float) -> Param:
    return Param(prior, 0.05, 1.0, True, meaning)


def _shared(family: str, meaning: str, prior: float, low: float = 0.05, high: float = 1.0) -> Param:
    return Param(prior, low, high, True, f"{meaning}; fitted on this family's rows, else {family}'s fitted value",
                 shared_from=family)


# ------------------------------------------------------------------------------------------------ registry
FAMILIES: dict[str, Family] = {
    "fa2": Family("fa2", "FlashAttention-2 (CUDA, mma.sync): prefill fwd/bwd, Flash-Decoding and v2.0.9 decode", {
        "mma_efficiency_fwd": _efficiency("achieved fraction of the tensor peak (mma.sync) in the forward main "
                                          "loop, the tile's SMEM and softmax time counted apart", 0.8),
        "mma_efficiency_bwd": _efficiency("the same for the backward main loop (5 matmuls per tile, dQ atomics)",
                                          0.6),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(True),
        "launch_s": _launch_param()}, fa2_plans),
    "fa1": Family("fa1", "FlashAttention v1 (CUDA, mma.sync)", {
        "mma_efficiency": _efficiency("achieved fraction of the tensor peak in the main loops (fwd and bwd: "
                                      "the published data has only their sum)", 0.5),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(False),
        "launch_s": _launch_param()}, fa1_plans),
    "fa_triton": Family("fa_triton", "FlashAttention Triton kernel of the FA2 benchmark (Tillet/Dao)", {
        "mma_efficiency": _efficiency("achieved fraction of the tensor peak in the main loops (fwd and bwd: "
                                      "the published data has only their sum)", 0.5),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(False),
        "launch_s": _launch_param()}, fat_plans),
    "triton_tutorial": Family("triton_tutorial", "Triton tutorial 06-fused-attention", {
        "mma_efficiency_fwd": _efficiency("achieved fraction of the tensor peak (native MMA) in the forward main "
                                          "loop", 0.8),
        "mma_efficiency_bwd": _efficiency("the same in the backward's dK/dV and dQ loops", 0.6),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(False),
        "launch_s": _launch_param()}, tutorial_plans),
    "pytorch": Family("pytorch", "eager PyTorch: cuBLAS GEMMs and elementwise/softmax passes through DRAM", {
        "gemm_efficiency": _efficiency("achieved fraction of the tensor peak of the cuBLAS batched GEMMs", 0.7),
        "hbm_efficiency": _efficiency("achieved fraction of DRAM bandwidth of the elementwise, softmax and copy "
                                      "passes (and of GEMMs bound by their N x N operand)", 0.8),
        "autograd_s": _autograd_param(False),
        "launch_s": _launch_param(),
        "host_op_s": Param(5e-6, 1e-6, 1e-4, False, "seconds of Python and dispatcher time per eager op: the floor "
                                                    "of an op sequence whose kernels are shorter (a prior: order of "
                                                    "magnitude of eager PyTorch's per-op overhead)")},
        pytorch_plans),
    # after the families it shares parameters with (calibrate fits them first)
    "fa3": Family("fa3", "FlashAttention-3 (CUDA, Hopper: wgmma, TMA, warp-specialised softmax overlap): prefill "
                  "forward", {
        "mma_efficiency_fwd": _shared("triton_tutorial", "achieved fraction of the tensor peak (wgmma) in the "
                                      "forward main loop", 0.8),
        "cta_overhead_cycles": _shared("triton_tutorial", "cycles per CTA outside the main loop, not hidden by "
                                       "other CTAs", 2000.0, 0.0, 1e5),
        "launch_s": _launch_param()}, fa3_plans),
    "archsim": Family("archsim", "archsim's own Triton kernels (kernels/): FlashAttention-2 fwd/bwd, naive "
                      "3-pass, split-KV GQA decode, Lightning Attention-2 fwd", {
        "mma_efficiency_fwd": _shared("triton_tutorial", "achieved fraction of the tensor peak (Triton's native "
                                      "MMA) in the forward and decode main loops", 0.8),
        "mma_efficiency_bwd": _shared("triton_tutorial", "the same in the backward main loop", 0.6),
        "mma_efficiency_linear": _efficiency("the same in the Lightning Attention-2 forward's block loop (four "
                                             "small products a block, two of them on the previous one's result)",
                                             0.8),
        "cta_overhead_cycles": _shared("triton_tutorial", "cycles per CTA outside the main loop, not hidden by "
                                       "other CTAs", 2000.0, 0.0, 1e5),
        "gemm_efficiency": _shared("pytorch", "achieved fraction of the tensor peak of the naive kernel's score "
                                   "and output matmuls", 0.7),
        "hbm_efficiency": _shared("pytorch", "achieved fraction of DRAM bandwidth of the naive kernel's passes "
                                  "over the score matrix", 0.8),
        "atomic_adds_per_cycle": Param(
            128.0, 8.0, 4096.0, True, "fp32 atomic adds (tl.atomic_add: one per element, acq_rel by default) the "
            "whole chip completes per clock, bounding the backward's dQ accumulation; the prior is an order of "
            "magnitude (about one per L2 slice per clock), not a measured figure"),
        "launch_s": Param(4e-6, 1e-6, 1e-4, True, "seconds from one kernel's end to the next one's first CTA, "
                          "Triton's Python launch path included (it binds every argument per call); identifiable "
                          "from the decode rows (two launches of microseconds)")}, archsim_plans),
}

# kernel name (as in attention_measured.csv) -> (family, variant)
KERNELS: dict[str, tuple[str, str]] = {
    "FlashAttention-2": ("fa2", "fa2"),
    "FlashAttention-2 (causal)": ("fa2", "fa2"),
    "Flash-Decoding": ("fa2", "flash-decoding"),
    "Flash-Decoding (16-row tiles)": ("fa2", "flash-decoding-16"),
    "FlashAttention v2.0.9": ("fa2", "v2.0.9"),
    "FlashAttention-3": ("fa3", "fa3"),
    "FlashAttention (v1)": ("fa1", "fa1"),
    "FlashAttention Triton (Tillet/Dao Triton impl)": ("fa_triton", "fa-triton"),
    "FlashAttention Triton": ("fa_triton", "fa-triton"),
    "Triton tutorial fused attention (06-fused-attention)": ("triton_tutorial", "tutorial"),
    "Triton tutorial fused attention": ("triton_tutorial", "tutorial"),
    "PyTorch standard attention": ("pytorch", "standard"),
    "PyTorch eager attention": ("pytorch", "eager"),
    "archsim FlashAttention-2 (Triton)": ("archsim", "flash"),
    "archsim naive 3-pass (Triton)": ("archsim", "naive"),
    "archsim Flash-Decoding split-KV GQA (Triton)": ("archsim", "decode"),
    "archsim Lightning Attention-2 (Triton)": ("archsim", "lightning"),
}
# names of KERNELS that say the kernel ran with its causal mask (a measurement file's label): a non-causal prefill
# case under such a name is refused, not timed as the unmasked kernel (a decode step's one query row has no mask:
# `archsim.gpu.measurements` reads every decode row as non-causal)
CAUSAL_NAMES = ("FlashAttention-2 (causal)",)
PRECISIONS = ("fp16", "bf16", "fp8")
PREFILL = ("fwd", "bwd", "fwd+bwd")
# variant (KERNELS' second field) -> the directions its kernel is modelled for; `plans` refuses the others
VARIANT_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "fa2": DIRECTIONS,  # FlashAttention-2's decode is its split-KV path (Flash-Decoding)
    "flash-decoding": ("decode",), "flash-decoding-16": ("decode",), "v2.0.9": ("decode",),
    "fa3": ("fwd",),  # its backward is not modelled
    "fa1": PREFILL, "fa-triton": PREFILL, "tutorial": PREFILL,
    "standard": PREFILL,  # the FA2 benchmark's attention_pytorch: N x N prefill only
    "eager": ("fwd", "decode"),  # the Hugging Face eager path: decode and a prompt's forward (no backward)
    "flash": PREFILL, "naive": ("fwd",), "decode": ("decode",), "lightning": ("fwd",),
}
PATH_OF_DIRECTION = {"fwd": "forward", "bwd": "backward", "fwd+bwd": "backward", "decode": "decode"}
LINEAR_VARIANTS = ("lightning",)  # the variants computing linear attention (`AttentionCase.attention`)
FP8_FAMILIES = ("triton_tutorial",)  # the families whose kernels take fp8 inputs (the tutorial casts Q, K, V to fp8)
# what a kernel's prefill computes (`kernel_attention`) -> the cascade references (`archsim.cascade.references`) of
# that attention over one length of queries and keys, causal or not, multi-head, grouped-query or multi-query: a
# cascade shown to compute one of them is the attention an `AttentionCase` times (not a decode step's one query, a
# window, a sparse mask, a latent K/V, another score function)
KERNEL_REFERENCES = {
    "softmax": ("attention", "attention_causal", "attention_gqa", "attention_causal_gqa", "attention_mqa",
                "attention_causal_mqa"),
    "linear": ("linear_attention", "linear_attention_causal"),
}


def kernel_attention(kernel: str) -> str:
    """What a kernel computes: "linear" attention (a variant of `LINEAR_VARIANTS`) or "softmax" (any other, a
    kernel the model does not know included)."""
    return "linear" if KERNELS.get(kernel, ("", ""))[1] in LINEAR_VARIANTS else "softmax"


def family_of(kernel: str) -> str | None:
    """The family of a kernel named in `KERNELS`; None for a name it does not list."""
    entry = KERNELS.get(kernel)
    return entry[0] if entry else None


def kernel_directions(kernel: str) -> tuple[str, ...]:
    """The directions a kernel of `KERNELS` is modelled for (`VARIANT_DIRECTIONS`)."""
    return VARIANT_DIRECTIONS[KERNELS[kernel][1]]


def precision_problem(kernel: str, precision: str) -> str:
    """Why a kernel of `KERNELS` has no path for `precision` ("" when it may have one): fp8 is the Triton
    tutorial's alone (`FP8_FAMILIES`)."""
    if precision == "fp8" and KERNELS[kernel][0] not in FP8_FAMILIES:
        return (f"{kernel} has no fp8 path modelled (got fp8; of the modelled kernels only the Triton tutorial's "
                "take fp8)")
    return ""


def direction_problem(kernel: str, direction: str) -> str:
    """Why a kernel of `KERNELS` has no plan for `direction` ("" when it may have one)."""
    runs = kernel_directions(kernel)
    if direction in runs:
        return ""
    paths = list(dict.fromkeys(PATH_OF_DIRECTION[d] for d in runs))
    verb = "is" if len(paths) == 1 else "are"
    return (f"only {kernel}'s {' and '.join(paths)} {verb} modelled, no {PATH_OF_DIRECTION[direction]} path (got "
            f"direction {direction})")


def default_params(family: str) -> dict[str, float]:
    """The priors of every parameter of `family`."""
    return {name: p.prior for name, p in FAMILIES[family].params.items()}


def param_problem(family: str, name: str, value: object) -> str:
    """Why `value` cannot be the parameter `name` of `family` ("" when it can): a parameter the family has, a finite
    number within its bounds (`Param.low`, `Param.high`; an efficiency in [0.05, 1])."""
    spec = FAMILIES[family].params.get(name)
    if spec is None:
        return f"not a parameter of {family} (known: {', '.join(FAMILIES[family].params)})"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value):
        return f"expected a number, got {value!r}"
    if not spec.low <= value <= spec.high:
        return f"expected a value in [{spec.low:g}, {spec.high:g}], got {value!r}"
    return ""


def params_problem(family: str, params: Mapping[str, float]) -> tuple[str, str]:
    """(parameter, why) when `params` are not the parameters of `family`, each given once within its bounds (what
    `archsim.gpu.params.Calibration.family_params` returns), else ("", "")."""
    known = FAMILIES[family].params
    for name, spec in known.items():  # the common case, every value a float within bounds, in one pass
        value = params.get(name)
        if not (type(value) is float and spec.low <= value <= spec.high):
            break
    else:
        if len(params) == len(known):
            return "", ""
    missing = [name for name in known if name not in params]
    if missing:
        return missing[0], f"missing (the parameters of {family}: {', '.join(known)})"
    return next(((name, problem) for name, value in params.items()
                 if (problem := param_problem(family, name, value))), ("", ""))


def plans(kernel: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """The launch plans of `kernel` for `case` on `gpu`, or why it cannot be modelled. A case with sizes no kernel
    takes (`AttentionCase.size_problem`) is a SpecError: callers reading a file check it first, naming the field."""
    return _refusal(kernel, case, gpu) or FAMILIES[KERNELS[kernel][0]].plans(KERNELS[kernel][1], case, gpu)


def _refusal(kernel: str, case: AttentionCase, gpu: GPU) -> str:
    """Why `kernel` has no plan for `case` on `gpu` before its family builds one ("" when its family may have one):
    `plans`' reasons but the family's own; a SpecError for sizes no kernel takes. After the kernel's own reasons, a
    GPU without a tensor-core rate for the case's precision (`GPU.rate_problem`) runs no kernel of it, whatever the
    kernel: eager decode's GEMVs included, where the others had raised that SpecError from inside planning
    (`GPU.tensor_peak_flops_per_s`)."""
    field, problem = case.size_problem()
    if problem:
        raise SpecError("<python>", f"AttentionCase.{field}", problem)
    if kernel not in KERNELS:
        return f"no model for kernel '{kernel}' (modelled: {', '.join(KERNELS)})"
    if case.precision not in PRECISIONS:
        return f"dtype {case.precision} is not modelled (modelled: {', '.join(PRECISIONS)})"
    if case.heads % case.kv_heads:
        return f"{case.heads} query heads do not split evenly over {case.kv_heads} KV heads"
    wrong_direction = direction_problem(kernel, case.direction)
    if wrong_direction:
        return wrong_direction
    if case.attention != kernel_attention(kernel):
        return f"{kernel} computes {kernel_attention(kernel)} attention, not {case.attention} attention"
    return (causal_name_problem(kernel, case.causal, case.direction) or precision_problem(kernel, case.precision)
            or gpu.rate_problem(case.precision))


def causal_name_problem(kernel: str, causal: bool, direction: str) -> str:
    """Why `kernel`, a causal-variant name (`CAUSAL_NAMES`), cannot run a call ('' when it can): it names the kernel
    run with its causal mask, so it runs no non-causal prefill or backward call (a decode step's one query attends every
    key: no mask to leave out)."""
    if kernel in CAUSAL_NAMES and not causal and direction != "decode":
        return (f"{kernel} names the kernel run with its causal mask, got a non-causal call: name "
                f"{kernel.removesuffix(' (causal)')}, which runs both")
    return ""


def predict(kernel: str, case: AttentionCase, gpu: GPU, params: Mapping[str, float],
            check_memory: bool = True) -> GpuResult:
    """Predict one call of `kernel` on `gpu` with its family's parameters (see `archsim.gpu.params`). Parameters
    that are not the family's, or out of their bounds (`params_problem`), are a SpecError naming the parameter.
    Without `check_memory` a call whose operands exceed the GPU's DRAM is timed all the same (`runnable_plans`). A
    `gpu` that is no GPU spec (a preset's name: `archsim.gpu.load.load_gpu` loads it) is a SpecError naming it."""
    check_kernel(kernel)
    check_case(case)
    check_gpu(gpu)
    check_params(kernel, params)
    return predict_plans(kernel, case, gpu, plans(kernel, case, gpu), params, check_memory)


def check_kernel(kernel: object) -> None:
    """A SpecError naming `kernel` when it is no modelled kernel's name (a misspelling is bad input, as a sweep's
    `gpus.kernel` is; `plans` keeps its reason for a measurements file's kernels, which `archsim.gpu.cases` skips)."""
    if kernel not in KERNELS:
        raise SpecError("<python>", "kernel", f"unknown kernel {kernel!r} (modelled: {', '.join(KERNELS)})")


def check_case(case: object) -> None:
    """A SpecError naming `case` when it is no AttentionCase (a dict, None), before the model reads its fields."""
    if not isinstance(case, AttentionCase):
        raise SpecError("<python>", "case", f"expected an AttentionCase (archsim.model.gpu.AttentionCase(batch=..., "
                                            f"seqlen=..., ...)), got {type(case).__name__} {reprlib.repr(case)}")


def check_gpu(gpu: object) -> None:
    """A SpecError naming `gpu` when it is no GPU spec (a name, None), before the model reads its fields."""
    if not isinstance(gpu, GPU):
        raise SpecError("<python>", "gpu", f"expected a GPU spec (archsim.gpu.load.load_gpu(name) or gpu_from_dict), "
                                           f"got {type(gpu).__name__} {reprlib.repr(gpu)}")


def check_params(kernel: str, params: Mapping[str, float]) -> None:
    """A SpecError naming `params` when it is no mapping, or the parameter when `params` are not `kernel`'s
    family's or out of their bounds."""
    if not isinstance(params, Mapping):
        raise SpecError("<python>", "params", f"expected a mapping of parameter -> number (e.g. "
                                              f"archsim.gpu.params.load_calibration().family_params(family)), got "
                                              f"{type(params).__name__} {reprlib.repr(params)}")
    family = family_of(kernel)
    if family is not None:
        name, problem = params_problem(family, params)
        if problem:
            raise SpecError("<python>", f"params.{name}", f"{kernel} ({family}): {problem}")


# ------------------------------------------------------------------------------------------------ varlen calls
# The kernels (by KERNELS' variant) whose prompt forward runs the prompts of a batch, of any lengths, as one call:
# FlashAttention-2's flash_attn_varlen_func (cu_seqlens), which vLLM calls once per layer for a batch's prompts.
# The others run one call per prompt: eager PyTorch (a call per sequence's N x N scores), archsim's kernels and
# the Triton kernels (no varlen entry point); FA1's unpadded and FA3's varlen entry points are not modelled.
VARLEN_VARIANTS = ("fa2",)
# How a decode kernel (by variant) runs requests of different context lengths in one call (`varlen_plans`):
# - each request over its own keys, in CTAs of its own: FlashAttention-2's split-KV decode (flash_attn_with_kvcache's
#   cache_seqlens: "FlashAttention-2", Flash-Decoding, its 16-row tiles) and v2.0.9's (flash_attn_varlen_func's
#   cu_seqlens_k);
# - ragged, each request's passes over its own keys: eager PyTorch as the serving GPU device runs it, its passes
#   (repeat_kv, q·Kᵀ, softmax, P·V) moving bytes in proportion to the keys, so the batch's bytes are those of every
#   request at the batch's mean context rounded up, one call's launches (a ragged or length-bucketed batch; the
#   Hugging Face eager path pads a batch to its longest cache, which would price it at `case` itself: half the
#   NeuPIMs GPU baseline's throughput on ShareGPT, where the paper finds its A100 about as fast as NPU-only);
# - padded to the longest: archsim's decode kernel (kernels/decode.py takes one `seqlen` for the batch).
DECODE_VARLEN_VARIANTS = ("fa2", "flash-decoding", "flash-decoding-16", "v2.0.9")
DECODE_RAGGED_VARIANTS = ("eager",)


def has_varlen(kernel: str) -> bool:
    """Whether `kernel` runs a batch's prompts as one varlen forward call (`VARLEN_VARIANTS`)."""
    entry = KERNELS.get(kernel)
    return entry is not None and entry[1] in VARLEN_VARIANTS


def varlen_plans(kernel: str, case: AttentionCase, seqlens: Sequence[int], gpu: GPU) -> tuple[Plan, ...] | str:
    """The plans of one call of `kernel` over sequences of `seqlens` tokens (`predict_varlen`), or why it has none.
    A forward: the prompts packed as `case` (batch 1, seqlen their sum), FA2's varlen forward; refused for a kernel
    without a varlen path (`has_varlen`) and for a backward (FA2's varlen backward is not modelled). A decode: the
    requests as `case` (batch their count, seqlen the longest), each over its own keys with the kernels of
    `DECODE_VARLEN_VARIANTS` (`gpu_flash_plans.fa2_plans`), a ragged batch's at their mean context rounded up
    (`DECODE_RAGGED_VARIANTS`), the others' plans of `case`, every request padded to the longest, holding the
    padding besides the requests' own K and V (`Plan.held`). Otherwise the case's own reason
    (`plans`: sizes, precision, head_dim, direction). Both `predict_varlen` and a serving GPU device
    (`archsim.systems.gpu_device`) take their plans here. Lengths that are not the case's (`_check_seqlens`) are a
    SpecError."""
    _check_seqlens(case, seqlens)
    if case.direction == "decode":
        return _decode_plans(kernel, case, seqlens, gpu)
    if kernel in KERNELS and not has_varlen(kernel):
        return f"{kernel} has no varlen path modelled (one call per prompt)"
    found = plans(kernel, case, gpu)
    if isinstance(found, str):
        return found
    if case.direction != "fwd":
        return f"only {kernel}'s varlen forward is modelled (got direction {case.direction})"
    return (Plan("fa2 varlen", (fa2_varlen_fwd(case, seqlens, gpu, compiled_head_dim(case.head_dim,
                                                                                     FA2_HEAD_DIMS)),)),)


def _decode_plans(kernel: str, case: AttentionCase, seqlens: Sequence[int], gpu: GPU) -> tuple[Plan, ...] | str:
    """`varlen_plans` of a decode over requests of `seqlens` keys, `case` at the longest. A kernel walking each
    request's own keys is checked against the size limits (`AttentionCase.size_problem`) at their mean rounded up,
    the keys it reads, not at the longest, whose padding it never reads."""
    variant = KERNELS.get(kernel, ("", ""))[1]
    mean = replace(case, seqlen=-(-sum(seqlens) // len(seqlens)))
    if variant in DECODE_VARLEN_VARIANTS:
        return _refusal(kernel, mean, gpu) or fa2_plans(variant, case, gpu, seqlens)
    if variant in DECODE_RAGGED_VARIANTS:
        return plans(kernel, mean, gpu)
    found = plans(kernel, case, gpu)
    padding = case.kv_bytes() - sequences_kv_bytes(case, seqlens)
    if isinstance(found, str) or not padding:
        return found
    held = (f"K and V padded to the longest request's {case.seqlen} keys", padding)
    return tuple(replace(plan, held=(*plan.held, held)) for plan in found)


def _check_seqlens(case: AttentionCase, seqlens: Sequence[int]) -> None:
    """A SpecError naming `seqlens` unless they are positive whole numbers: a forward's adding up to the packed
    `case`'s seqlen at batch 1, a decode's one per request of `case`'s batch, the longest its seqlen."""
    whole = bool(seqlens) and all(issubclass(kind, int | np.integer) and not issubclass(kind, bool)
                                  for kind in set(map(type, seqlens))) and min(seqlens) >= 1
    if case.direction == "decode":
        if not (whole and len(seqlens) == case.batch and max(seqlens) == case.seqlen):
            raise SpecError("<python>", "seqlens", f"expected a positive whole number of keys per request, "
                            f"{case.batch} of them (the case's batch), the longest the case's seqlen {case.seqlen}, "
                            f"got {reprlib.repr(list(seqlens))}")
    elif not whole or case.batch != 1 or sum(seqlens) != case.seqlen:
        raise SpecError("<python>", "seqlens", f"expected positive whole numbers adding up to the packed case's seqlen "
                        f"{case.seqlen} at batch 1, got {list(seqlens)} at batch {case.batch}")


def predict_varlen(kernel: str, case: AttentionCase, seqlens: Sequence[int], gpu: GPU,
                   params: Mapping[str, float]) -> GpuResult:
    """Predict one call of `kernel` over sequences of `seqlens` tokens, in that order (`varlen_plans`): a varlen
    forward over prompts, `case` holding what they share (heads, KV heads, head_dim, causality, precision) as one
    packed sequence, batch 1 and seqlen the sum of `seqlens`; or a decode over requests of `seqlens` keys, `case` of
    batch their count and seqlen the longest. The memory check and the result's `flops` are the sequences' own
    (`GpuResult.seqlens`), not the packed case's, which would count an attention across prompts, nor a padded
    batch's (its padding is held besides: `varlen_plans`). Prompts of one length L, k of them, time as the batch-k
    call of `predict`, and requests of one length as the decode `case`: the same grid, bytes and FLOPs. Lengths that
    are not positive whole numbers of the case (`_check_seqlens`) are a SpecError (`varlen_plans`)."""
    check_kernel(kernel)
    check_case(case)
    check_gpu(gpu)
    check_params(kernel, params)
    return predict_plans(kernel, case, gpu, varlen_plans(kernel, case, seqlens, gpu), params, seqlens=seqlens)
