"""MInference's vertical-slash causal attention forward: per query block, contiguous key ranges that cover the kept
diagonals ("slashes") plus gathered key columns ("verticals"), under one online softmax.

Implements the attention Einsums of the cascade `minference-vertical-slash-kernel` (QK .. AV) with the selection
(VSEL, SSEL) given as data: MInference's pattern at kernel granularity (below), whole `block`-wide windows, not the
token-level pattern of `minference-vertical-slash` (whose selection it shares; on that cascade's own selection its
output differs from that cascade's by up to 3.6 at 64 tokens, blocks of 16). tests/test_vertical_slash_kernel_cascade.py
and tests/test_harness_s51.py check it against `minference-vertical-slash-kernel`; the estimation and top-k
Einsums run before the kernel.
Source: Jiang et al., "MInference 1.0" (arXiv:2407.02490), Alg. 2 (pattern) and Alg. 4 with Fig. 7 (kernel), and the
repo's `ops/pit_sparse_flash_attention_v2.py` with `convert_vertical_slash_indexes`. Inputs are the pattern a head
keeps: vertical indices (key positions m) [batch, heads, k_v] and slash offsets (p - m) [batch, heads, k_s].

Index build (`vertical_slash_index`, in torch on the inputs' device: the step whose cost the model counts beside the
kernel's, O(k_v + k_s) per query block plus sorts): for query block [start, end) of `block` rows, a slash at offset s
with s < end crosses the block in the key window [e - block, e), e = max(end - s, block) (clamped to start at key
0); the windows, sorted by e, merge into contiguous key ranges wherever they overlap or touch. A vertical v < end
that no range covers is gathered as a column. The kernel then visits each range in `block`-wide tiles (the last one
masked to the range end) and the gathered columns `block` at a time; the causal mask (m <= p) applies everywhere.

What this computes, exactly (the tests' reference): query p in block i sees key m when m <= p and (m is a vertical,
or m lies in a slash window of block i). That contains the token-level pattern "vertical[m] or slash[p - m]" and
adds the rest of each 64-wide window: the kernel granularity of MInference (64x64 blocks for slashes, 1x64 columns
for verticals). One difference from MInference's `convert_vertical_slash_indexes`: it grows a merged range by whole
blocks (so a range may reach up to block - 1 keys past its last window); here a range ends at its last window, so
the attended set is the union of windows (the tile counts of the two can differ by a tile here and there).
Assumptions: query blocks and key tiles share one size (`block`, 64 in MInference); a query row that sees no key
(no window or vertical reaches it, or a padded row) outputs 0, not NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from archsim.kernels.block_sparse import query_block_start
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

CASCADE = "minference-vertical-slash-kernel"


@dataclass(frozen=True)
class VerticalSlashIndex:
    """Per (batch, head, query block): `range_count` key ranges [range_start, range_end) (int32, padded to the
    widest), and `column_count` gathered key columns `column_index` (int32, ascending, padded)."""

    range_count: torch.Tensor  # [batch, heads, query blocks]
    range_start: torch.Tensor  # [batch, heads, query blocks, max ranges]
    range_end: torch.Tensor  # [batch, heads, query blocks, max ranges]
    column_count: torch.Tensor  # [batch, heads, query blocks]
    column_index: torch.Tensor  # [batch, heads, query blocks, max columns]


@triton.jit
def _vertical_slash_fwd_kernel(Q, K, V, Out, RangeCount, RangeStart, RangeEnd, ColumnCount, ColumnIndex, seqlen,
                               num_query_blocks, max_ranges, max_columns, qk_scale_log2,
                               HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr, PRECISION: tl.constexpr):
    query_block = tl.program_id(0)
    head = tl.program_id(1).to(tl.int64)
    head_offset = head * seqlen * HEAD_DIM
    block_id = head * num_query_blocks + query_block
    tile = tl.arange(0, BLOCK)
    rows, dims, q, m_i, l_i, acc = query_block_start(Q, head_offset, query_block, seqlen, HEAD_DIM, BLOCK)
    # (a) slash ranges: contiguous keys, `BLOCK` at a time
    for r in range(0, tl.load(RangeCount + block_id)):
        range_end = tl.load(RangeEnd + block_id * max_ranges + r)
        for start_n in range(tl.load(RangeStart + block_id * max_ranges + r), range_end, BLOCK):
            cols = start_n + tile
            in_range = (cols < range_end) & (cols < seqlen)
            kv_offsets = head_offset + cols[:, None] * HEAD_DIM + dims[None, :]
            k = tl.load(K + kv_offsets, mask=in_range[:, None], other=0.0)
            v = tl.load(V + kv_offsets, mask=in_range[:, None], other=0.0)
            keep = in_range[None, :] & (cols[None, :] <= rows[:, None])
            m_i, l_i, acc = online_softmax_step(q, k, v, keep, m_i, l_i, acc, qk_scale_log2, PRECISION)
    # (b) vertical columns: gathered by index, `BLOCK` at a time
    column_count = tl.load(ColumnCount + block_id)
    for start in range(0, column_count, BLOCK):
        listed = start + tile < column_count
        cols = tl.load(ColumnIndex + block_id * max_columns + start + tile, mask=listed, other=0)
        listed = listed & (cols < seqlen)  # an index built for a longer sequence lists columns past K and V
        kv_offsets = head_offset + cols[:, None].to(tl.int64) * HEAD_DIM + dims[None, :]
        k = tl.load(K + kv_offsets, mask=listed[:, None], other=0.0)
        v = tl.load(V + kv_offsets, mask=listed[:, None], other=0.0)
        keep = listed[None, :] & (cols[None, :] <= rows[:, None])
        m_i, l_i, acc = online_softmax_step(q, k, v, keep, m_i, l_i, acc, qk_scale_log2, PRECISION)

    out = online_softmax_output(acc, l_i)
    tl.store(Out + head_offset + rows[:, None] * HEAD_DIM + dims[None, :], out.to(Out.dtype.element_ty),
             mask=rows[:, None] < seqlen)


def _check_pattern(name: str, index: torch.Tensor, batch: int, heads: int, seqlen: int) -> None:
    if index.dtype not in (torch.int32, torch.int64) or index.dim() != 3 or tuple(index.shape[:2]) != (batch, heads):
        raise ValueError(f"{name} must be an int32/int64 [batch, heads, k] = [{batch}, {heads}, k] tensor, got "
                         f"{index.dtype} {tuple(index.shape)}")
    if bool(((index < 0) | (index >= seqlen)).any()):
        raise ValueError(f"{name} entries must lie in [0, {seqlen})")


def _compact(values: torch.Tensor, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, the chosen values moved to the front in their order, padded) along the last dimension, as int32."""
    values = torch.nn.functional.pad(values, (0, 1))  # one spare slot, so an empty pattern still has a column
    chosen = torch.nn.functional.pad(chosen, (0, 1), value=False)
    count = chosen.sum(-1)
    order = torch.sort((~chosen).to(torch.uint8), dim=-1, stable=True).indices
    front = torch.gather(values, -1, order[..., :max(int(count.max()), 1)])
    return count.to(torch.int32).contiguous(), front.to(torch.int32).contiguous()


def vertical_slash_index(vertical: torch.Tensor, slash: torch.Tensor, seqlen: int, block: int = 64
                         ) -> VerticalSlashIndex:
    """The per-query-block ranges and columns of a vertical-slash pattern (module docstring, "Index build").

    `vertical` [batch, heads, k_v] key positions and `slash` [batch, heads, k_s] offsets p - m, each in [0, seqlen),
    any order, repeats allowed."""
    if vertical.dim() != 3:  # its first two sizes are the batch and heads the slashes must share
        raise ValueError(f"vertical must be an int32/int64 [batch, heads, k] tensor, got {vertical.dtype} "
                         f"{tuple(vertical.shape)}")
    batch, heads = vertical.shape[:2]
    _check_pattern("vertical", vertical, batch, heads, seqlen)
    _check_pattern("slash", slash, batch, heads, seqlen)
    device = vertical.device
    block_end = (torch.arange(triton.cdiv(seqlen, block), device=device) + 1) * block  # end of each query block
    # window ends e, ascending along the last dim (offsets descending); offsets >= the block end miss the block
    offsets = slash.to(torch.int64).sort(-1, descending=True).values[:, :, None, :]
    raw_end = block_end[:, None] - offsets
    hits = raw_end > 0
    window_end = torch.where(hits, raw_end.clamp(min=block), -block)
    previous = torch.nn.functional.pad(window_end, (1, 0), value=-block)[..., :-1]
    starts = hits & (window_end - previous > block)  # a window that neither overlaps nor touches the one before
    lasts = hits & torch.nn.functional.pad(starts, (0, 1), value=True)[..., 1:]
    range_count, range_start = _compact(window_end - block, starts)
    _, range_end = _compact(window_end, lasts)
    # verticals: distinct, causal for the block, outside every window (the first window ending after v starts
    # at or before v exactly when v is covered)
    columns = vertical.to(torch.int64).sort(-1).values
    repeated = torch.nn.functional.pad(columns[..., 1:] == columns[..., :-1], (1, 0), value=False)
    columns = columns[:, :, None, :].expand(-1, -1, block_end.numel(), -1).contiguous()
    after = torch.searchsorted(window_end.contiguous(), columns, right=True)
    padded_end = torch.nn.functional.pad(window_end, (0, 1), value=seqlen + 2 * block)
    covered = torch.gather(padded_end, -1, after) - block <= columns
    gathered = ~repeated[:, :, None, :] & (columns < block_end[:, None]) & ~covered
    column_count, column_index = _compact(columns, gathered)
    return VerticalSlashIndex(range_count, range_start, range_end, column_count, column_index)


def vertical_slash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, vertical: torch.Tensor,
                             slash: torch.Tensor, scale: float | None = None, block: int = 64) -> torch.Tensor:
    """Causal vertical-slash attention for [batch, heads, seqlen, head_dim] inputs (module docstring): builds the
    index (`vertical_slash_index`) and runs the kernel (`indexed_attention`); returns q's shape and dtype."""
    batch, heads, seqlen, _ = attention_dims(q, k, v)
    check_block("block", block)  # before the index: it is built for any block of 1 or more, the kernel's are not
    _check_pattern("vertical", vertical, batch, heads, seqlen)  # against q's batch and heads, before the index
    _check_pattern("slash", slash, batch, heads, seqlen)
    return indexed_attention(q, k, v, vertical_slash_index(vertical, slash, seqlen, block), scale, block)


def indexed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: VerticalSlashIndex,
                      scale: float | None = None, block: int = 64) -> torch.Tensor:
    """The kernel alone, on an index `vertical_slash_index` built for this seqlen and block."""
    batch, heads, seqlen, head_dim = attention_dims(q, k, v)
    check_block("block", block)
    num_query_blocks = triton.cdiv(seqlen, block)
    if tuple(index.range_count.shape) != (batch, heads, num_query_blocks):
        raise ValueError(f"the index is for {tuple(index.range_count.shape)} (batch, heads, query blocks); the "
                         f"inputs need {(batch, heads, num_query_blocks)} at block {block}")
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty_like(q)
    grid = (num_query_blocks, batch * heads)
    _vertical_slash_fwd_kernel[grid](q, k, v, out, index.range_count, index.range_start, index.range_end,
                                     index.column_count, index.column_index, seqlen, num_query_blocks,
                                     index.range_start.shape[-1], index.column_index.shape[-1], scale * LOG2_E,
                                     HEAD_DIM=head_dim, BLOCK=block, PRECISION=dot_precision(q.dtype),
                                     num_warps=MINFERENCE_WARPS, num_stages=MINFERENCE_STAGES)
    return out


def random_pattern(batch: int, heads: int, seqlen: int, vertical_size: int, slash_size: int, seed: int = 0,
                   device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (vertical, slash) pattern in MInference's form, for timing and tests: as its code forces, the first
    30 columns and the 100 nearest diagonals are kept (as many as the sizes allow), the rest drawn at random
    without repeats; the sizes are capped at seqlen. The kernel's time depends on the counts and how the slashes
    merge, which a real head's scores decide."""
    gen = torch.Generator().manual_seed(seed)

    def draw(size: int, forced: int) -> torch.Tensor:
        size = min(size, seqlen)
        forced = min(forced, size)
        first = torch.arange(forced).expand(batch, heads, forced)
        rest = torch.rand((batch, heads, seqlen - forced), generator=gen).topk(size - forced, -1).indices + forced
        return torch.cat([first, rest], -1).to(torch.int32).to(device)

    return draw(vertical_size, 30), draw(slash_size, 100)
