"""Time archsim's naive 3-pass kernel (`kernels/naive.py`) pass by pass at lengths on and off the tile and the row
alignment, to attribute the GPU model's error at 3000 tokens: S = QKᵀ (64 x 64 tiles, written), the row softmax in
place (one program per row, BLOCK_ROW the next power of two), O = A V. Prints milliseconds per pass and the bytes
of the score matrix the pass moves over its time.

    python benchmarks/naive_lengths.py   # on a CUDA GPU
"""

from __future__ import annotations

import math

import torch
import triton
from archsim.kernels import naive
from archsim.kernels.launch import dot_precision
from gpu_timing import median_ms, require_cuda

BATCH, HEADS, HEAD_DIM, BLOCK = 2, 40, 128, 64
LENGTHS = (2048, 2944, 3000, 3008, 4096)


def time_length(n: int) -> None:
    """Print each pass's and the whole call's milliseconds at `n` tokens."""
    q, k, v = (torch.randn(BATCH, HEADS, n, HEAD_DIM, dtype=torch.float16, device="cuda") for _ in range(3))
    scores = torch.empty((BATCH, HEADS, n, n), dtype=torch.float16, device="cuda")
    out = torch.empty_like(q)
    precision, row, s_bytes = dot_precision(q.dtype), triton.next_power_of_2(n), scores.numel() * 2
    tiles = (triton.cdiv(n, BLOCK), triton.cdiv(n, BLOCK), BATCH * HEADS)
    passes = {
        "S = scale QK^T": lambda: naive._scores_kernel[tiles](q, k, scores, n, 1 / math.sqrt(HEAD_DIM),
                                                              HEAD_DIM=HEAD_DIM, BLOCK_M=BLOCK, BLOCK_N=BLOCK,
                                                              PRECISION=precision),
        "softmax rows": lambda: naive._softmax_kernel[(BATCH * HEADS * n,)](
            scores, n, CAUSAL=False, BLOCK_ROW=row, num_warps=min(16, max(4, row // 256))),
        "O = A V": lambda: naive._pv_kernel[(triton.cdiv(n, BLOCK), BATCH * HEADS)](
            scores, v, out, n, HEAD_DIM=HEAD_DIM, BLOCK_M=BLOCK, BLOCK_N=BLOCK, PRECISION=precision),
        "whole call": lambda: naive.naive_attention(q, k, v),
    }
    for name, fn in passes.items():
        ms = median_ms(fn)
        moved = 2 * s_bytes if name == "softmax rows" else s_bytes
        print(f"N={n:<5} row {n * 2:>5} B ({n * 2 % 128:>3} past 128 B) {name:<16} {ms:8.3f} ms "
              f"{moved / (ms * 1e-3) / 1e12:6.2f} TB/s of S", flush=True)


def main() -> None:
    require_cuda(__file__)
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    for n in LENGTHS:
        time_length(n)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
