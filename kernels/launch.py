"""What the attention launchers share: input checks, the tl.dot precision, log-base constants for exp2, and the
online-softmax step (with its final division) that the FlashAttention-style kernels fold each key tile with."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

LOG2_E = 1.0 / math.log(2.0)  # scores are scaled by this so kernels can use exp2
LN_2 = tl.constexpr(math.log(2.0))  # converts a base-2 log-sum-exp back to natural log inside kernels
DTYPES = (torch.float16, torch.bfloat16, torch.float32)
HEAD_DIMS = (16, 32, 64, 128)  # tl.arange needs a power of two; tl.dot on a GPU needs at least 16
MIN_BLOCK = 16  # and so does every tile size (`check_block`)
# MInference's sparse kernels' launch configuration (num_warps, num_stages; from memory of its Triton launchers, not
# re-read), kept by archsim's: on an H200 at head_dim 128, 8 warps on a 64 x 64 tile ran at half the rate of these
# 4 (reports/measured/sparse-configs-NVIDIA-H200.txt), where 4 warps match the dense forward's TFLOP/s
MINFERENCE_WARPS, MINFERENCE_STAGES = 4, 2


def attention_dims(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int]:
    """(batch, heads, seqlen, head_dim) of self-attention inputs; raises ValueError on anything else."""
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must share one [batch, heads, seqlen, head_dim] shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    check_dtype_and_head_dim(q, k, v)
    batch, heads, seqlen, head_dim = q.shape
    return batch, heads, seqlen, head_dim


def check_dtype_and_head_dim(*tensors: torch.Tensor) -> None:
    """All tensors share one dtype among DTYPES, one device, and a last dimension among HEAD_DIMS; CPU tensors only
    under Triton's interpreter (`triton.knobs.runtime.interpret`, TRITON_INTERPRET=1), and bf16 only compiled on a
    GPU (the interpreter returns values off by 1e8 and more for it)."""
    first = tensors[0]
    if first.dtype not in DTYPES or any(t.dtype != first.dtype for t in tensors):
        raise ValueError(f"inputs must share one dtype among {DTYPES}, got {[t.dtype for t in tensors]}")
    if any(t.device != first.device for t in tensors):
        raise ValueError(f"inputs must be on one device, got {[str(t.device) for t in tensors]}")
    if first.device.type == "cpu" and not triton.knobs.runtime.interpret:  # Triton has no CPU driver
        raise ValueError("CPU tensors need TRITON_INTERPRET=1 (Triton's interpreter) or a GPU; set it before the "
                         "kernel modules are imported")
    if first.dtype == torch.bfloat16 and triton.knobs.runtime.interpret:
        raise ValueError("bf16 is broken in Triton's interpreter (TRITON_INTERPRET=1, which CPU tensors need): its "
                         "results are garbage; use fp16 or fp32 there, bf16 on a GPU with the interpreter off")
    if first.shape[-1] not in HEAD_DIMS or any(t.shape[-1] != first.shape[-1] for t in tensors):
        raise ValueError(f"head_dim must be one of {HEAD_DIMS} and shared, got {[t.shape[-1] for t in tensors]}")


def check_block(name: str, value: int) -> None:
    """Raise ValueError unless the tile size `value` of the launcher argument `name` is a power of two (tl.arange's
    range) of at least MIN_BLOCK (tl.dot's smallest side)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_BLOCK or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {MIN_BLOCK} (a tl.arange and tl.dot tile size), got "
                         f"{value!r}")


def dot_precision(dtype: torch.dtype) -> str:
    """`input_precision` for tl.dot: exact fp32 products for fp32 inputs (comparable to the interpreter), and
    Triton's default for 16-bit inputs (where it changes nothing)."""
    return "ieee" if dtype == torch.float32 else "tf32"


@triton.jit
def online_softmax_step(q, k, v, keep, m_i, l_i, acc, qk_scale_log2, PRECISION: tl.constexpr):
    """One key tile of the online softmax: scores of the `keep` entries folded into (RM, RD, RNV). A row with no
    kept score so far (every score masked or -inf) keeps RM = -inf, RD = 0 and RNV = 0 (the max is shifted to 0 so
    exp2 never sees -inf - -inf): one tl.where on the row max per tile."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale_log2
    s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp2(s - m_safe[:, None])
    alpha = tl.exp2(m_i - m_safe)  # rescales the old partials to the new max (PRM)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def online_softmax_output(acc, l_i):
    """RNV / RD per row, 0 (not 0/0 = NaN) for a row whose denominator is 0: one that kept no score."""
    return acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
