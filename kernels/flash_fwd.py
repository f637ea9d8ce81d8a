"""FlashAttention-2 forward pass: one pass over the keys with an online softmax, causal or not.

Implements the cascades `attention-1pass` (non-causal) and `attention-1pass-causal` of `einsum/`: the key rank M is
tiled into BLOCK_N-wide tiles (M1, M0) and the running max RM, denominator RD and numerator RNV are carried over m1
in registers, folded tile by tile by `online_softmax_step` (shared with the sparse kernels; a tile whose every score
is -inf leaves a row at -inf, 0, 0, not NaN; a row with no finite score at all ends 0/0 = NaN, as the reference).
Follows Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning" (arXiv:2307.08691),
Algorithm 1: one program per (BLOCK_M query rows, batch·head), the numerator is rescaled lazily and divided by the
denominator once at the end, and the log-sum-exp L = m + log(l) of every row is written for the backward pass
(`flash_bwd`). Causal programs stop at their diagonal tile and mask inside it only.
Scores are kept in base 2 (exp2 with scale·log2(e)), as in the Triton tutorial 06-fused-attention; the stored
log-sum-exp is in natural-log units.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from archsim.kernels.launch import LN_2, LOG2_E, attention_dims, check_block, dot_precision, online_softmax_step

CASCADE = "attention-1pass"
CASCADE_CAUSAL = "attention-1pass-causal"


@triton.jit
def _flash_fwd_kernel(Q, K, V, Out, LSE, seqlen, qk_scale_log2,
                      HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    head_offset = tl.program_id(1).to(tl.int64) * seqlen * HEAD_DIM
    rows = start_m + tl.arange(0, BLOCK_M)
    cols0 = tl.arange(0, BLOCK_N)
    dims = tl.arange(0, HEAD_DIM)
    row_ok = rows[:, None] < seqlen
    q = tl.load(Q + head_offset + rows[:, None] * HEAD_DIM + dims[None, :], mask=row_ok, other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running max RM (base-2 units)
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running denominator RD
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)  # running numerator RNV
    end_n = seqlen
    if CAUSAL:
        end_n = tl.minimum(start_m + BLOCK_M, seqlen)
    for start_n in range(0, end_n, BLOCK_N):
        cols = start_n + cols0
        kv_offsets = head_offset + cols[:, None] * HEAD_DIM + dims[None, :]
        k = tl.load(K + kv_offsets, mask=cols[:, None] < seqlen, other=0.0)
        v = tl.load(V + kv_offsets, mask=cols[:, None] < seqlen, other=0.0)
        keep = cols[None, :] < seqlen
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        m_i, l_i, acc = online_softmax_step(q, k, v, keep, m_i, l_i, acc, qk_scale_log2, PRECISION)

    out = acc / l_i[:, None]
    tl.store(Out + head_offset + rows[:, None] * HEAD_DIM + dims[None, :], out.to(Out.dtype.element_ty), mask=row_ok)
    lse = (m_i + tl.log2(l_i)) * LN_2  # base-2 to natural log
    tl.store(LSE + tl.program_id(1).to(tl.int64) * seqlen + rows, lse, mask=rows < seqlen)


def flash_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, causal: bool = False,
              block_m: int = 128, block_n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(scale · q kᵀ [causal mask]) v and the row log-sum-exp, for [batch, heads, seqlen, head_dim] inputs.

    Returns (out with q's shape and dtype, lse as float32 [batch, heads, seqlen] in natural-log units).
    `scale` defaults to 1/sqrt(head_dim); the causal mask keeps key m for query p when m <= p.
    """
    batch, heads, seqlen, head_dim = attention_dims(q, k, v)
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty_like(q)
    lse = torch.empty((batch, heads, seqlen), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(seqlen, block_m), batch * heads)
    _flash_fwd_kernel[grid](q, k, v, out, lse, seqlen, scale * LOG2_E,
                            HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
                            PRECISION=dot_precision(q.dtype), num_warps=4 if head_dim <= 64 else 8, num_stages=3)
    return out, lse
