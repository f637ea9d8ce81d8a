"""Naive attention in three kernels that materialise the score matrix in memory, like PyTorch's standard attention.

Implements the cascade `attention-3pass` of `einsum/` (FuseMax, Nayak et al. MICRO'24, Cascade 4), and with the
causal mask `attention-3pass-causal`, one kernel per pass over the key rank M:
  1. `_scores_kernel`: S = scale · Q Kᵀ, tiled BLOCK_M x BLOCK_N, written to memory (QK);
  2. `_softmax_kernel`: one program per row reads S, takes the max (GM), exp and sum (SN, SD) and writes the
     normalised row A = SN / SD in place over S;
  3. `_pv_kernel`: O = A V, tiled BLOCK_M query rows, walking the key tiles (AV).
S is stored in the input dtype, as the "PyTorch standard attention" baseline of the FlashAttention benchmarks does
(gpu.md §1.0), so memory grows as batch·heads·seqlen². An optional causal mask is applied in pass 2.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from archsim.kernels.launch import attention_dims, check_block, dot_precision

CASCADE = "attention-3pass"
CASCADE_CAUSAL = "attention-3pass-causal"


@triton.jit
def _score_offsets(head, rows, cols, seqlen):
    """Offsets of S[head, rows, cols] (head an int64 scalar, rows and cols int32 vectors), in int64: rows x seqlen
    wraps int32 from seqlen 46341 on, where S still fits a GPU (46341² fp16 scores are 4.3 GB a head)."""
    return head * seqlen * seqlen + rows[:, None].to(tl.int64) * seqlen + cols[None, :]


@triton.jit
def _scores_kernel(Q, K, S, seqlen, scale, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    head = tl.program_id(2).to(tl.int64)
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + head * seqlen * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :],
                mask=rows[:, None] < seqlen, other=0.0)
    k = tl.load(K + head * seqlen * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :],
                mask=cols[:, None] < seqlen, other=0.0)
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    tl.store(S + _score_offsets(head, rows, cols, seqlen), s.to(S.dtype.element_ty),
             mask=(rows[:, None] < seqlen) & (cols[None, :] < seqlen))


@triton.jit
def _softmax_kernel(S, seqlen, CAUSAL: tl.constexpr, BLOCK_ROW: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # flattened (batch·head, query row)
    cols = tl.arange(0, BLOCK_ROW)
    keep = cols < seqlen
    if CAUSAL:
        keep = keep & (cols <= row % seqlen)
    s = tl.load(S + row * seqlen + cols, mask=keep, other=float("-inf")).to(tl.float32)
    e = tl.exp(s - tl.max(s, 0))
    tl.store(S + row * seqlen + cols, (e / tl.sum(e, 0)).to(S.dtype.element_ty), mask=cols < seqlen)


@triton.jit
def _pv_kernel(A, V, Out, seqlen, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               PRECISION: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    head = tl.program_id(1).to(tl.int64)
    dims = tl.arange(0, HEAD_DIM)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for start_n in range(0, seqlen, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        a = tl.load(A + _score_offsets(head, rows, cols, seqlen),
                    mask=(rows[:, None] < seqlen) & (cols[None, :] < seqlen), other=0.0)
        v = tl.load(V + head * seqlen * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :],
                    mask=cols[:, None] < seqlen, other=0.0)
        acc += tl.dot(a, v, input_precision=PRECISION)
    tl.store(Out + head * seqlen * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :], acc.to(Out.dtype.element_ty),
             mask=rows[:, None] < seqlen)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                    causal: bool = False, block_m: int = 64, block_n: int = 64) -> torch.Tensor:
    """softmax(scale · q kᵀ [causal mask]) v for [batch, heads, seqlen, head_dim] inputs, via a stored score matrix.

    `scale` defaults to 1/sqrt(head_dim). Needs batch·heads·seqlen² elements of scratch in q's dtype.
    """
    batch, heads, seqlen, head_dim = attention_dims(q, k, v)
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    precision = dot_precision(q.dtype)
    scores = torch.empty((batch, heads, seqlen, seqlen), dtype=q.dtype, device=q.device)
    grid = (triton.cdiv(seqlen, block_m), triton.cdiv(seqlen, block_n), batch * heads)
    _scores_kernel[grid](q, k, scores, seqlen, scale, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
                         PRECISION=precision)
    block_row = triton.next_power_of_2(seqlen)
    _softmax_kernel[(batch * heads * seqlen,)](scores, seqlen, CAUSAL=causal, BLOCK_ROW=block_row,
                                               num_warps=min(16, max(4, block_row // 256)))
    out = torch.empty_like(q)
    _pv_kernel[(triton.cdiv(seqlen, block_m), batch * heads)](scores, v, out, seqlen, HEAD_DIM=head_dim,
                                                              BLOCK_M=block_m, BLOCK_N=block_n, PRECISION=precision)
    return out
