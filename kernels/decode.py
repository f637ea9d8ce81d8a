"""Split-KV decode attention with grouped-query heads (Flash-Decoding): a partials kernel and a merge kernel.

Implements the cascade `attention-decode-splitkv` of `einsum/` (whose GQA head grouping is that of
`attention-decode-gqa`), following Dao, Haziza, Massa, Sizov, "Flash-Decoding for long-context inference" (2023):
  1. `_partials_kernel`: the KV cache of length M is cut into S splits; one program per (split, batch, KV head)
     packs the group's R = heads/kv_heads query heads into the rows of one tl.dot tile (padded to 16), walks its
     split in BLOCK_N tiles with an online softmax (`online_softmax_step`), and writes the partial output LNV/LD
     and its log-sum-exp LM + log(LD): 0 and -inf for a split whose every score is -inf, so that the merge weighs
     it exp(-inf) = 0 rather than reading 0/0;
  2. `_merge_kernel`: one program per (batch, query head) rescales the S partials by exp(lse_s - max_s lse_s)
     (W in the cascade) and divides by their sum (D), giving AV.
The default split count fills about two waves of programs on the GPU's SMs, and never leaves a split empty.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from archsim.kernels.launch import (
    LN_2,
    LOG2_E,
    check_block,
    check_dtype_and_head_dim,
    dot_precision,
    online_softmax_output,
    online_softmax_step,
)

CASCADE = "attention-decode-splitkv"
PROGRAMS_PER_SM = 2


@triton.jit
def _partials_kernel(Q, K, V, O_PART, LSE_PART, seqlen, split_len, num_splits, group, qk_scale_log2,
                     HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
                     PRECISION: tl.constexpr):
    split = tl.program_id(0)
    batch_kv = tl.program_id(1).to(tl.int64)  # batch · kv_heads + kv head
    heads = batch_kv * group + tl.arange(0, BLOCK_H)  # flattened (batch, query head) of this group
    head_ok = tl.arange(0, BLOCK_H) < group
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + heads[:, None] * HEAD_DIM + dims[None, :], mask=head_ok[:, None], other=0.0)

    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, HEAD_DIM], tl.float32)
    start = split * split_len
    end = tl.minimum(start + split_len, seqlen)
    for start_n in range(start, end, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        kv_offsets = batch_kv * seqlen * HEAD_DIM + cols[:, None] * HEAD_DIM + dims[None, :]
        k = tl.load(K + kv_offsets, mask=cols[:, None] < end, other=0.0)
        v = tl.load(V + kv_offsets, mask=cols[:, None] < end, other=0.0)
        m_i, l_i, acc = online_softmax_step(q, k, v, cols[None, :] < end, m_i, l_i, acc, qk_scale_log2, PRECISION)

    part = heads * num_splits + split  # O_PART is [batch, heads, splits, head_dim]
    tl.store(O_PART + part[:, None] * HEAD_DIM + dims[None, :], online_softmax_output(acc, l_i),
             mask=head_ok[:, None])
    tl.store(LSE_PART + part, (m_i + tl.log2(l_i)) * LN_2, mask=head_ok)


@triton.jit
def _merge_kernel(O_PART, LSE_PART, Out, num_splits, HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr):
    head = tl.program_id(0).to(tl.int64)  # flattened (batch, query head)
    splits = tl.arange(0, BLOCK_S)
    dims = tl.arange(0, HEAD_DIM)
    lse = tl.load(LSE_PART + head * num_splits + splits, mask=splits < num_splits, other=float("-inf"))
    w = tl.exp(lse - tl.max(lse, 0))
    part = tl.load(O_PART + (head * num_splits + splits)[:, None] * HEAD_DIM + dims[None, :],
                   mask=(splits < num_splits)[:, None], other=0.0)
    out = tl.sum(w[:, None] * part, 0) / tl.sum(w, 0)
    tl.store(Out + head * HEAD_DIM + dims, out.to(Out.dtype.element_ty))


def default_num_splits(batch: int, kv_heads: int, device: torch.device) -> int:
    """Splits that give about PROGRAMS_PER_SM partial programs per SM (one on a CPU)."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    return max(1, triton.cdiv(PROGRAMS_PER_SM * sms, batch * kv_heads))


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                     num_splits: int | None = None, block_n: int = 64) -> torch.Tensor:
    """One decode step: softmax(scale · q kᵀ) v for q [batch, heads, 1, head_dim] against a KV cache
    k, v [batch, kv_heads, seqlen, head_dim], heads a multiple of kv_heads (GQA; kv head g serves query heads
    g·R .. g·R + R - 1). Returns [batch, heads, 1, head_dim] in q's dtype.

    `scale` defaults to 1/sqrt(head_dim); `num_splits` (a whole number >= 1) to `default_num_splits`, capped at the
    KV tile count. A batch of 0 returns an empty output, as the prefill kernels do.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (q [b, h, 1, d], k and v [b, h_kv, seqlen, d]), got shape "
                             f"{tuple(t.shape)}")
    check_dtype_and_head_dim(q, k, v)
    check_block("block_n", block_n)
    batch, heads, q_len, head_dim = q.shape
    _, kv_heads, seqlen, _ = k.shape
    if q_len != 1 or k.shape != v.shape or k.shape[0] != batch or not kv_heads or heads % kv_heads:
        raise ValueError(f"expected q [b, h, 1, d] and k = v [b, h_kv, seqlen, d] with h % h_kv == 0, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if seqlen < 1:  # no key to attend to: softmax over nothing, and no KV tile to split
        raise ValueError(f"decode needs a KV cache: KV length must be at least 1, got k and v of shape "
                         f"{tuple(k.shape)}")
    if num_splits is not None and (isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1):
        raise ValueError(f"expected num_splits a whole number >= 1 (or None for the default), got {num_splits!r}")
    if not batch:  # nothing to split (as the prefill kernels, an empty output)
        return torch.empty_like(q)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    n_tiles = triton.cdiv(seqlen, block_n)
    wanted = num_splits or default_num_splits(batch, kv_heads, q.device)
    tiles_per_split = triton.cdiv(n_tiles, min(wanted, n_tiles))
    splits = triton.cdiv(n_tiles, tiles_per_split)  # every split gets at least one tile
    group = heads // kv_heads

    o_part = torch.empty((batch, heads, splits, head_dim), dtype=torch.float32, device=q.device)
    lse_part = torch.empty((batch, heads, splits), dtype=torch.float32, device=q.device)
    _partials_kernel[(splits, batch * kv_heads)](
        q, k, v, o_part, lse_part, seqlen, tiles_per_split * block_n, splits, group, scale * LOG2_E,
        HEAD_DIM=head_dim, BLOCK_H=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n,
        PRECISION=dot_precision(q.dtype), num_warps=4)
    out = torch.empty_like(q)
    _merge_kernel[(batch * heads,)](o_part, lse_part, out, splits, HEAD_DIM=head_dim,
                                    BLOCK_S=triton.next_power_of_2(splits))
    return out
