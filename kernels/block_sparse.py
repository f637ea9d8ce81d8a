"""Block-sparse causal FlashAttention forward: each query block visits only the key blocks its block list names.

Implements the attention Einsums of the cascade `minference-block-sparse` (QK .. AV under its `block_sparse` mask)
with the selection BSEL given as data: key block j is visible to query block i when j is among the first
`block_count[b, h, i]` entries of `block_index[b, h, i, :]`, and inside a visible block the causal mask keeps key m
for query p when m <= p. The estimation and top-k Einsums of the cascade (mean pooling, softmax, rank) run before
the kernel and are not part of it; a fixed layout such as `attention-block-sparse`'s is one more block list. The
layout is MInference's block-sparse kernel (Jiang et al., "MInference 1.0", arXiv:2407.02490, Alg. 3 and
`block_sparse_attention`): 64x64 blocks, an int32 index tensor [batch, heads, query blocks, max blocks] with a
count per query block (`random_block_list` draws one for timing). The loop is FlashAttention-2's (`flash_fwd`):
one program per (query block, batch·head), online softmax in base 2 with running max RM, denominator RD and
numerator RNV, one division at the end.

Assumptions: query and key blocks have one size (`block`, 64 in MInference); the listed blocks are causal (index
<= query block) and distinct, which the launcher checks; a query block with an empty list (or a padded row) has
no visible key and its output row is 0, not NaN.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from archsim.kernels.launch import (
    LOG2_E,
    MINFERENCE_STAGES,
    MINFERENCE_WARPS,
    attention_dims,
    check_block,
    dot_precision,
    online_softmax_output,
    online_softmax_step,
)

CASCADE = "minference-block-sparse"


@triton.jit
def query_block_start(Q, head_offset, query_block, seqlen, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """A program's rows, head dims, query tile and empty online-softmax state: running max RM (base-2 units),
    denominator RD and numerator RNV."""
    rows = query_block * BLOCK + tl.arange(0, BLOCK)
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(Q + head_offset + rows[:, None] * HEAD_DIM + dims[None, :], mask=rows[:, None] < seqlen, other=0.0)
    m_i = tl.full([BLOCK], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK], tl.float32)
    acc = tl.zeros([BLOCK, HEAD_DIM], tl.float32)
    return rows, dims, q, m_i, l_i, acc


@triton.jit
def _block_sparse_fwd_kernel(Q, K, V, Out, BlockIndex, BlockCount, seqlen, num_query_blocks, max_blocks,
                             qk_scale_log2, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr):
    query_block = tl.program_id(0)
    head = tl.program_id(1).to(tl.int64)
    head_offset = head * seqlen * HEAD_DIM
    list_offset = (head * num_query_blocks + query_block) * max_blocks
    cols0 = tl.arange(0, BLOCK)
    rows, dims, q, m_i, l_i, acc = query_block_start(Q, head_offset, query_block, seqlen, HEAD_DIM, BLOCK)
    count = tl.load(BlockCount + head * num_query_blocks + query_block)
    for i in range(0, count):
        cols = tl.load(BlockIndex + list_offset + i) * BLOCK + cols0
        kv_offsets = head_offset + cols[:, None] * HEAD_DIM + dims[None, :]
        k = tl.load(K + kv_offsets, mask=cols[:, None] < seqlen, other=0.0)
        v = tl.load(V + kv_offsets, mask=cols[:, None] < seqlen, other=0.0)
        keep = (cols[None, :] <= rows[:, None]) & (cols[None, :] < seqlen)
        m_i, l_i, acc = online_softmax_step(q, k, v, keep, m_i, l_i, acc, qk_scale_log2, PRECISION)

    out = online_softmax_output(acc, l_i)
    tl.store(Out + head_offset + rows[:, None] * HEAD_DIM + dims[None, :], out.to(Out.dtype.element_ty),
             mask=rows[:, None] < seqlen)


def check_block_list(block_index: torch.Tensor, block_count: torch.Tensor, batch: int, heads: int,
                     num_query_blocks: int) -> None:
    """Raise ValueError unless block_index is int32 [batch, heads, num_query_blocks, max_blocks], block_count is
    int32 [batch, heads, num_query_blocks] in [0, max_blocks], and each list's counted entries are distinct key
    blocks at or before their query block."""
    if block_index.dtype != torch.int32 or block_count.dtype != torch.int32:
        raise ValueError(f"block_index and block_count must be int32, got {block_index.dtype}, {block_count.dtype}")
    if block_index.dim() != 4 or tuple(block_index.shape[:3]) != (batch, heads, num_query_blocks):
        raise ValueError(f"block_index must be [batch, heads, query blocks, max blocks] = "
                         f"[{batch}, {heads}, {num_query_blocks}, *], got {tuple(block_index.shape)}")
    if tuple(block_count.shape) != (batch, heads, num_query_blocks):
        raise ValueError(f"block_count must be [{batch}, {heads}, {num_query_blocks}], got {tuple(block_count.shape)}")
    max_blocks = block_index.shape[3]
    if bool(((block_count < 0) | (block_count > max_blocks)).any()):
        raise ValueError(f"block_count must lie in [0, {max_blocks}] (the width of block_index)")
    counted = torch.arange(max_blocks, device=block_index.device) < block_count[..., None]
    query_block = torch.arange(num_query_blocks, device=block_index.device)[:, None]
    if bool((counted & ((block_index < 0) | (block_index > query_block))).any()):
        raise ValueError("block_index entries must be key blocks in [0, query block] (causal)")
    ordered = torch.where(counted, block_index, num_query_blocks).sort(-1).values
    if bool(((ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] < num_query_blocks)).any()):
        raise ValueError("block_index lists a key block twice for one query block")


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_index: torch.Tensor,
                           block_count: torch.Tensor, scale: float | None = None, block: int = 64) -> torch.Tensor:
    """Causal softmax(scale · q kᵀ) v over the key blocks each query block lists, for [batch, heads, seqlen,
    head_dim] inputs; returns a tensor with q's shape and dtype (rows that see no key are 0).

    `block_index` int32 [batch, heads, cdiv(seqlen, block), max_blocks] and `block_count` int32 [batch, heads,
    cdiv(seqlen, block)] as `check_block_list` states; `scale` defaults to 1/sqrt(head_dim).
    """
    batch, heads, seqlen, _ = attention_dims(q, k, v)
    check_block("block", block)
    check_block_list(block_index, block_count, batch, heads, triton.cdiv(seqlen, block))
    return block_list_attention(q, k, v, block_index, block_count, scale, block)


def block_list_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_index: torch.Tensor,
                         block_count: torch.Tensor, scale: float | None = None, block: int = 64) -> torch.Tensor:
    """The kernel alone, on a block list `check_block_list` accepted for these inputs and block (what `archsim
    measure` times: the check's host syncs and sort are not the kernel's)."""
    batch, heads, seqlen, head_dim = attention_dims(q, k, v)
    check_block("block", block)
    num_query_blocks = triton.cdiv(seqlen, block)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty_like(q)
    grid = (num_query_blocks, batch * heads)
    _block_sparse_fwd_kernel[grid](q, k, v, out, block_index.contiguous(), block_count.contiguous(), seqlen,
                                   num_query_blocks, block_index.shape[3], scale * LOG2_E, HEAD_DIM=head_dim,
                                   BLOCK=block, PRECISION=dot_precision(q.dtype),
                                   num_warps=MINFERENCE_WARPS, num_stages=MINFERENCE_STAGES)
    return out


def random_block_list(batch: int, heads: int, seqlen: int, topk: int, block: int = 64, seed: int = 0,
                      device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded block list in MInference's shape: per query block i, the first and the diagonal key block plus
    random others among 0..i, min(topk, i + 1) in all, in ascending order. For timing and tests: the blocks a real
    model keeps come from its scores, and the kernel's time depends on how many, not which."""
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    num_blocks = triton.cdiv(seqlen, block)
    gen = torch.Generator().manual_seed(seed)
    width = min(topk, num_blocks)
    query_block = torch.arange(num_blocks)[:, None]
    # random priority per causal key block; the first and diagonal blocks rank before all others
    priority = torch.rand((batch, heads, num_blocks, num_blocks), generator=gen)
    key_block = torch.arange(num_blocks)[None, :]
    priority = priority.masked_fill((key_block == 0) | (key_block == query_block), -1.0)
    priority = priority.masked_fill(key_block > query_block, 2.0)
    chosen = priority.topk(width, -1, largest=False).indices
    count = torch.clamp(torch.arange(num_blocks) + 1, max=width).expand(batch, heads, num_blocks)
    chosen = torch.where(torch.arange(width) < count[..., None], chosen, num_blocks).sort(-1).values
    chosen = torch.where(chosen == num_blocks, 0, chosen)
    return chosen.to(torch.int32).to(device), count.to(torch.int32).contiguous().to(device)
