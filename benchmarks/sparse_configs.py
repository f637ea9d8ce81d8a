"""Time archsim's sparse Triton kernels under other launch configurations and tile sets, to attribute the gap
between their measured time and the GPU model's (which times MInference's configuration: 64 x 64 tiles, 4 warps).

At one shape (batch 1, 32 heads, head_dim 128, bf16, causal) it times, each kernel launched directly:
- the block-sparse kernel on a random block list (as `archsim measure` does), on the k_b blocks nearest the
  diagonal, and on every causal block, at (warps, stages) (8, 3) (the launcher's at d 128 before it took
  MInference's), (4, 3) and (4, 2) (MInference's, the launcher's now);
- the dense causal forward (`kernels/flash_fwd.py`) at its own 128 x 64 tile and 8 warps, and at 64 x 64 with
  4 and 8 warps: the same tiles as the sparse kernels without the block list;
- the vertical-slash kernel on a random pattern and on MInference's contiguous placement (the k_s nearest
  diagonals, the first k_v columns), at (8, 3) and (4, 2).
Prints milliseconds and, for the dense-equivalent tile sets, TFLOP/s by the FlashAttention convention.

    python benchmarks/sparse_configs.py   # on a CUDA GPU
"""

from __future__ import annotations

import torch
import triton
from archsim.kernels import block_sparse, flash_fwd, vertical_slash
from archsim.kernels.launch import LOG2_E, dot_precision
from gpu_timing import median_ms, require_cuda

BATCH, HEADS, SEQLEN, HEAD_DIM, BLOCK = 1, 32, 32768, 128, 64
K_B, K_V, K_S = 100, 1000, 6096
CONFIGS = ((8, 3), (4, 3), (4, 2))



def _line(what: str, ms: float, causal_fraction: float | None = None) -> None:
    flops = 4.0 * BATCH * HEADS * SEQLEN**2 * HEAD_DIM / 2 * (causal_fraction or 0.0)
    rate = f"{flops / (ms * 1e-3) / 1e12:7.1f} TFLOP/s" if causal_fraction else ""
    print(f"{what:<60} {ms:10.3f} ms {rate}", flush=True)


def _nearest_blocks(topk: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query block i, key blocks max(0, i - topk + 1) .. i, ascending (topk >= the block count: every causal
    one), padded with block 0 past the count."""
    blocks = triton.cdiv(SEQLEN, BLOCK)
    width = min(topk, blocks)
    count = torch.clamp(torch.arange(blocks) + 1, max=width)
    first = torch.arange(blocks) - count + 1
    slot = torch.arange(width)[None, :]
    chosen = torch.where(slot < count[:, None], first[:, None] + slot, 0)
    shape = (BATCH, HEADS, blocks)
    return (chosen.to(torch.int32).expand(*shape, width).contiguous().to(device),
            count.to(torch.int32).expand(*shape).contiguous().to(device))


def main() -> None:
    device = "cuda"
    require_cuda(__file__)
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    q, k, v = (torch.randn(BATCH, HEADS, SEQLEN, HEAD_DIM, dtype=torch.bfloat16, device=device) for _ in range(3))
    scale = HEAD_DIM**-0.5 * LOG2_E
    blocks = triton.cdiv(SEQLEN, BLOCK)
    out = torch.empty_like(q)
    precision = dot_precision(q.dtype)

    def sparse(index, count, warps, stages):
        return lambda: block_sparse._block_sparse_fwd_kernel[(blocks, BATCH * HEADS)](
            q, k, v, out, index, count, SEQLEN, blocks, index.shape[3], scale, HEAD_DIM=HEAD_DIM, BLOCK=BLOCK,
            PRECISION=precision, num_warps=warps, num_stages=stages)

    lists = {"random": block_sparse.random_block_list(BATCH, HEADS, SEQLEN, K_B, BLOCK, device=device),
             "nearest": _nearest_blocks(K_B, device), "every causal block": _nearest_blocks(blocks, device)}
    for name, (index, count) in lists.items():
        fraction = float(count.sum()) / (BATCH * HEADS * blocks * (blocks + 1) / 2)
        for warps, stages in CONFIGS:
            _line(f"block-sparse {name} k_b={int(count.max())} warps={warps} stages={stages}",
                  median_ms(sparse(index, count, warps, stages)), fraction)
    lse = torch.empty((BATCH, HEADS, SEQLEN), dtype=torch.float32, device=device)
    for block_m, block_n, warps in ((128, 64, 8), (64, 64, 4), (64, 64, 8)):
        fn = lambda bm=block_m, bn=block_n, w=warps: flash_fwd._flash_fwd_kernel[(triton.cdiv(SEQLEN, bm), BATCH * HEADS)](  # noqa: E731,E501
            q, k, v, out, lse, SEQLEN, scale, HEAD_DIM=HEAD_DIM, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=True,
            PRECISION=precision, num_warps=w, num_stages=3)
        _line(f"dense causal flash_fwd {block_m}x{block_n} warps={warps} stages=3", median_ms(fn), 1.0)
    nearest = (torch.arange(min(K_V, SEQLEN)).expand(BATCH, HEADS, -1).to(torch.int32).to(device),
               torch.arange(min(K_S, SEQLEN)).expand(BATCH, HEADS, -1).to(torch.int32).to(device))
    patterns = {"random": vertical_slash.random_pattern(BATCH, HEADS, SEQLEN, K_V, K_S, device=device),
                "nearest": nearest}
    for name, pattern in patterns.items():
        index = vertical_slash.vertical_slash_index(*pattern, SEQLEN, BLOCK)
        for warps, stages in ((8, 3), (4, 2)):
            fn = lambda i=index, w=warps, s=stages: vertical_slash._vertical_slash_fwd_kernel[(blocks, BATCH * HEADS)](  # noqa: E731
                q, k, v, out, i.range_count, i.range_start, i.range_end, i.column_count, i.column_index, SEQLEN,
                blocks, i.range_start.shape[-1], i.column_index.shape[-1], scale, HEAD_DIM=HEAD_DIM, BLOCK=BLOCK,
                PRECISION=precision, num_warps=w, num_stages=s)
            _line(f"vertical-slash {name} k_v={K_V} k_s={K_S} warps={warps} stages={stages}", median_ms(fn))


if __name__ == "__main__":
    main()
