"""PyTorch's own attention paths, timed by `archsim measure` beside archsim's Triton kernels so that the GPU model's
fitted families can be checked on a GPU they were not fitted on (the published rows are A100 ones).

- `standard_attention`: the FlashAttention-2 benchmark's `attention_pytorch` (`benchmarks/benchmark_flash_attention.py`,
  gpu.md §1.0), the "PyTorch standard attention" rows: qkv packed as [batch, seqlen, 3, heads, head_dim], a baddbmm
  into an N x N score matrix, a -10000 upper-triangular mask added when causal, softmax, dropout at p = 0 and an
  einsum with V, all in the input dtype; autograd gives the backward.
- `eager_decode`: the Hugging Face eager attention path at decode ("PyTorch eager attention"): repeat_kv copies of
  K and V for every query head under GQA (none for MHA), matmul, scale, softmax in fp32, cast back, matmul.
- `sdpa_flash`: `torch.nn.functional.scaled_dot_product_attention` held to its flash backend, which is the
  FlashAttention-2 CUDA code PyTorch vendors ("FlashAttention-2" rows), on [batch, seqlen, heads, head_dim]
  tensors seen as [batch, heads, seqlen, head_dim] (the layout the backend reads without a copy).

Implements the cascades `attention-3pass` (the standard path, every pass through DRAM), `attention-decode-gqa`
(eager decode: the same three passes over the KV cache, one query row, grouped-query heads) and `attention-1pass`
(the flash backend) of `einsum/`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

CASCADE = "attention-3pass"
CASCADE_DECODE = "attention-decode-gqa"
CASCADE_FLASH = "attention-1pass"


def standard_attention(qkv: torch.Tensor, causal: bool) -> torch.Tensor:
    """softmax(q kᵀ/√d [causal]) v for qkv [batch, seqlen, 3, heads, head_dim]; out [batch, heads, seqlen, head_dim]
    (the benchmark's einsum output, not permuted back)."""
    batch, seqlen, _, heads, head_dim = qkv.shape
    q, k, v = qkv.unbind(dim=2)
    q = q.permute(0, 2, 1, 3).reshape(batch * heads, seqlen, head_dim)
    k = k.permute(0, 2, 3, 1).reshape(batch * heads, head_dim, seqlen)
    scores = torch.empty(batch * heads, seqlen, seqlen, dtype=qkv.dtype, device=qkv.device)
    scores = torch.baddbmm(scores, q, k, beta=0, alpha=1.0 / math.sqrt(head_dim)).view(batch, heads, seqlen, seqlen)
    if causal:
        mask = torch.triu(torch.full((seqlen, seqlen), -10000.0, device=scores.device), 1)
        scores = scores + mask.to(dtype=scores.dtype)
    attention = F.dropout(torch.softmax(scores, dim=-1), 0.0)
    return torch.einsum("bhts,bhsd->bhtd", attention, v.permute(0, 2, 1, 3)).to(dtype=qkv.dtype)


def repeat_kv(kv: torch.Tensor, group: int) -> torch.Tensor:
    """Hugging Face's `repeat_kv`: each KV head expanded to its `group` query heads and copied contiguous
    ([batch, kv_heads·group, seqlen, head_dim]); the tensor itself, no copy, when group is 1 (MHA)."""
    if group == 1:
        return kv
    batch, kv_heads, seqlen, head_dim = kv.shape
    return kv[:, :, None].expand(batch, kv_heads, group, seqlen, head_dim).reshape(batch, kv_heads * group, seqlen,
                                                                                   head_dim)


def eager_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One decode step: q [batch, heads, 1, head_dim] against K, V [batch, kv_heads, seqlen, head_dim], kv_heads
    dividing heads; out [batch, heads, 1, head_dim]."""
    k, v = repeat_kv(k, q.shape[1] // k.shape[1]), repeat_kv(v, q.shape[1] // v.shape[1])
    scores = torch.matmul(q, k.transpose(2, 3)) * q.shape[-1] ** -0.5
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v)


def sdpa_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """softmax(q kᵀ/√d [causal]) v by PyTorch's flash backend (an error where it cannot run), for q, k, v
    [batch, seqlen, heads, head_dim]; out [batch, heads, seqlen, head_dim]."""
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=causal)
