"""Time eager PyTorch's attention op by op on a GPU, to attribute the GPU model's error on the eager paths.

`kernels/torch_attention.py`'s eager decode and standard attention are timed whole (as `archsim measure` does),
whole under CUDA-graph replay (the device time alone, no Python or launch gaps between ops), and op by op with
their inputs made beforehand; a plain copy of the KV bytes gives the copy bandwidth beside them. Prints one line
per (shape, op): milliseconds and, for the ops that stream DRAM, the bytes moved over the time in TB/s.

    python benchmarks/eager_ops.py            # on a CUDA GPU (torch and triton installed)
"""

from __future__ import annotations

import math

import torch
from gpu_timing import median_ms, require_cuda

DECODE_SHAPES = ((1, 16, 2, 128, 512), (1, 16, 2, 128, 65536), (8, 32, 8, 128, 16384), (8, 32, 8, 128, 131072),
                 (16, 32, 32, 128, 16384), (64, 32, 8, 128, 8192), (32, 8, 1, 64, 32768))
PREFILL_SHAPES = ((2, 40, 128, 3000), (4, 32, 64, 4096), (2, 16, 128, 8192))  # batch, heads, head_dim, seqlen



def _graph_ms(fn) -> float:
    """The device time of one call of `fn` replayed from a CUDA graph (warmed up on a side stream first)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return median_ms(graph.replay)


def _line(shape: str, op: str, ms: float, moved_bytes: float | None = None) -> None:
    rate = f"{moved_bytes / (ms * 1e-3) / 1e12:7.3f} TB/s" if moved_bytes else ""
    print(f"{shape:<34} {op:<28} {ms:10.4f} ms {rate}", flush=True)


def decode(batch: int, heads: int, kv_heads: int, head_dim: int, seqlen: int) -> None:
    from archsim.kernels.torch_attention import eager_decode, repeat_kv

    shape = f"decode b{batch} {heads}q/{kv_heads}kv d{head_dim} s{seqlen}"
    q = torch.randn(batch, heads, 1, head_dim, dtype=torch.float16, device="cuda")
    k, v = (torch.randn(batch, kv_heads, seqlen, head_dim, dtype=torch.float16, device="cuda") for _ in range(2))
    group, e = heads // kv_heads, 2
    kv_each, expanded = k.numel() * e, batch * heads * seqlen * head_dim * e
    scores_n = batch * heads * seqlen
    _line(shape, "whole (as measured)", median_ms(lambda: eager_decode(q, k, v)))
    _line(shape, "whole, graph replay", _graph_ms(lambda: eager_decode(q, k, v)))
    _line(shape, "copy of K (clone)", median_ms(lambda: k.clone()), 2 * kv_each)
    k_rep, v_rep = repeat_kv(k, group), repeat_kv(v, group)
    if group > 1:
        _line(shape, "repeat_kv K (expand, reshape)", median_ms(lambda: repeat_kv(k, group)), kv_each + expanded)
        _line(shape, "repeat_interleave K", median_ms(lambda: k.repeat_interleave(group, dim=1)), kv_each + expanded)
    _line(shape, "q·Kᵀ matmul", median_ms(lambda: torch.matmul(q, k_rep.transpose(2, 3))), expanded)
    scores = torch.matmul(q, k_rep.transpose(2, 3))
    _line(shape, "scale", median_ms(lambda: scores * head_dim**-0.5), 2 * scores_n * e)
    _line(shape, "softmax fp32", median_ms(lambda: torch.softmax(scores, dim=-1, dtype=torch.float32)),
          scores_n * (e + 4))
    probs32 = torch.softmax(scores, dim=-1, dtype=torch.float32)
    _line(shape, "cast to fp16", median_ms(lambda: probs32.to(torch.float16)), scores_n * (4 + e))
    probs = probs32.to(torch.float16)
    _line(shape, "P·V matmul", median_ms(lambda: torch.matmul(probs, v_rep)), expanded)
    _line(shape, "empty-ish op (q * 1)", median_ms(lambda: q * 1.0))


def prefill(batch: int, heads: int, head_dim: int, seqlen: int) -> None:
    from archsim.kernels.torch_attention import standard_attention

    shape = f"prefill b{batch} h{heads} d{head_dim} s{seqlen}"
    qkv = torch.randn(batch, seqlen, 3, heads, head_dim, dtype=torch.float16, device="cuda")
    scores_bytes = batch * heads * seqlen * seqlen * 2
    for causal in (False, True):
        _line(shape, f"whole causal={causal}", median_ms(lambda c=causal: standard_attention(qkv, c)))
    q = torch.randn(batch * heads, seqlen, head_dim, dtype=torch.float16, device="cuda")
    k = torch.randn(batch * heads, head_dim, seqlen, dtype=torch.float16, device="cuda")
    out = torch.empty(batch * heads, seqlen, seqlen, dtype=torch.float16, device="cuda")
    flops = 2.0 * batch * heads * seqlen * seqlen * head_dim
    ms = median_ms(lambda: torch.baddbmm(out, q, k, beta=0, alpha=1 / math.sqrt(head_dim)))
    _line(shape, f"baddbmm ({flops / ms / 1e9:.0f} TFLOP/s)", ms, scores_bytes)
    scores = out.view(batch, heads, seqlen, seqlen)
    _line(shape, "causal mask build",
          median_ms(lambda: torch.triu(torch.full((seqlen, seqlen), -10000.0, device="cuda"), 1).to(torch.float16)))
    mask = torch.triu(torch.full((seqlen, seqlen), -10000.0, device="cuda"), 1).to(torch.float16)
    _line(shape, "scores + mask", median_ms(lambda: scores + mask), 2 * scores_bytes)
    _line(shape, "softmax", median_ms(lambda: torch.softmax(scores, dim=-1)), 2 * scores_bytes)
    v = torch.randn(batch, seqlen, heads, head_dim, dtype=torch.float16, device="cuda")
    ms = median_ms(lambda: torch.einsum("bhts,bhsd->bhtd", scores, v.permute(0, 2, 1, 3)))
    _line(shape, f"einsum P·V ({flops / ms / 1e9:.0f} TFLOP/s)", ms, scores_bytes)


if __name__ == "__main__":
    require_cuda(__file__)
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for s in DECODE_SHAPES:
        decode(*s)
        torch.cuda.empty_cache()
    for s in PREFILL_SHAPES:
        prefill(*s)
        torch.cuda.empty_cache()
