"""FlashAttention-2 backward pass: dQ, dK, dV of `flash_fwd`, recomputing the scores from the log-sum-exp.

Differentiates the cascades `attention-1pass` / `attention-1pass-causal` of `einsum/` (the library has no separate
backward cascade). Follows Dao, "FlashAttention-2" (arXiv:2307.08691), Algorithm 2:
  1. preprocess: D = rowsum(dO ∘ O), one value per query row;
  2. one program per (BLOCK_N key rows, batch·head) keeps K_j, V_j, dK_j, dV_j on chip and walks the query tiles i:
     S = scale·Q_i K_jᵀ, P = exp(S − L_i), dV_j += Pᵀ dO_i, dP = dO_i V_jᵀ, dS = P ∘ (dP − D_i),
     dK_j += scale·dSᵀ Q_i, and dQ_i += scale·dS K_j is added to an fp32 buffer in memory with atomic adds.
Causal programs start at the first query tile that reaches their key tile. The FLOP count is 2.5x the forward
(the FlashAttention benchmark convention, gpu.md §1.0): four matmuls plus the recomputed QKᵀ.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from archsim.kernels.launch import attention_dims, check_block, dot_precision

CASCADE = "attention-1pass"
CASCADE_CAUSAL = "attention-1pass-causal"


@triton.jit
def _row_dot_kernel(Out, DO, D, seqlen, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """D = rowsum(dO ∘ O) for BLOCK_M rows of one batch·head."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    head = tl.program_id(1).to(tl.int64)
    offsets = head * seqlen * HEAD_DIM + rows[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :]
    row_ok = rows[:, None] < seqlen
    o = tl.load(Out + offsets, mask=row_ok, other=0.0).to(tl.float32)
    do = tl.load(DO + offsets, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(D + head * seqlen + rows, tl.sum(o * do, 1), mask=rows < seqlen)


@triton.jit
def _flash_bwd_kernel(Q, K, V, DO, LSE, D, DQ, DK, DV, seqlen, scale,
                      HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    start_n = tl.program_id(0) * BLOCK_N
    head = tl.program_id(1).to(tl.int64)
    head_offset = head * seqlen * HEAD_DIM
    cols = start_n + tl.arange(0, BLOCK_N)
    rows0 = tl.arange(0, BLOCK_M)
    dims = tl.arange(0, HEAD_DIM)
    col_ok = cols[:, None] < seqlen
    kv_offsets = head_offset + cols[:, None] * HEAD_DIM + dims[None, :]
    k = tl.load(K + kv_offsets, mask=col_ok, other=0.0)
    v = tl.load(V + kv_offsets, mask=col_ok, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)

    start_m0 = 0
    if CAUSAL:
        start_m0 = (start_n // BLOCK_M) * BLOCK_M
    for start_m in range(start_m0, seqlen, BLOCK_M):
        rows = start_m + rows0
        row_ok = rows[:, None] < seqlen
        q_offsets = head_offset + rows[:, None] * HEAD_DIM + dims[None, :]
        q = tl.load(Q + q_offsets, mask=row_ok, other=0.0)
        do = tl.load(DO + q_offsets, mask=row_ok, other=0.0)
        lse = tl.load(LSE + head * seqlen + rows, mask=rows < seqlen, other=float("inf"))
        delta = tl.load(D + head * seqlen + rows, mask=rows < seqlen, other=0.0)

        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        p = tl.exp(s * scale - lse[:, None])
        keep = cols[None, :] < seqlen
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        p = tl.where(keep, p, 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = (p * (dp - delta[:, None])).to(q.dtype)
        dk += tl.dot(tl.trans(ds), q, input_precision=PRECISION)
        dq = tl.dot(ds, k, input_precision=PRECISION) * scale
        tl.atomic_add(DQ + q_offsets, dq, mask=row_ok)

    tl.store(DK + kv_offsets, (dk * scale).to(DK.dtype.element_ty), mask=col_ok)
    tl.store(DV + kv_offsets, dv.to(DV.dtype.element_ty), mask=col_ok)


def flash_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
              lse: torch.Tensor, scale: float | None = None, causal: bool = False,
              block_m: int = 64, block_n: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of out = softmax(scale · q kᵀ [causal]) v given dout, the inputs, out and lse of `flash_fwd`.

    All tensors are [batch, heads, seqlen, head_dim] except lse (float32 [batch, heads, seqlen], natural log).
    `scale` defaults to 1/sqrt(head_dim); it and `causal` must match the forward call.
    """
    batch, heads, seqlen, head_dim = attention_dims(q, k, v)
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    if do.shape != q.shape or out.shape != q.shape or lse.shape != q.shape[:3]:
        raise ValueError(f"dout and out must be {tuple(q.shape)} and lse {tuple(q.shape[:3])}, got "
                         f"{tuple(do.shape)}, {tuple(out.shape)}, {tuple(lse.shape)}")
    # tl.dot takes one dtype on both sides (dO meets P and V), and lse is flash_fwd's fp32 log-sum-exp
    for name, t, dtype, like in (("dout", do, q.dtype, "q"), ("out", out, q.dtype, "q"),
                                 ("lse", lse, torch.float32, "flash_fwd returns it")):
        if t.dtype != dtype or t.device != q.device:
            raise ValueError(f"{name} must be {dtype} on {q.device} (as {like}), got {t.dtype} on {t.device}")
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q, k, v, do, out = (t.contiguous() for t in (q, k, v, do, out))
    lse = lse.contiguous()
    delta = torch.empty_like(lse)
    _row_dot_kernel[(triton.cdiv(seqlen, block_m), batch * heads)](out, do, delta, seqlen,
                                                                   HEAD_DIM=head_dim, BLOCK_M=block_m)
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    grid = (triton.cdiv(seqlen, block_n), batch * heads)
    _flash_bwd_kernel[grid](q, k, v, do, lse, delta, dq, dk, dv, seqlen, scale,
                            HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
                            PRECISION=dot_precision(q.dtype), num_warps=4 if head_dim <= 64 else 8, num_stages=2)
    return dq.to(q.dtype), dk, dv
