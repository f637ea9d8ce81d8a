"""Lightning Attention-2 forward pass: causal linear attention, intra-block by masked matmuls, inter-block by a
running KV state.

Implements the cascade `lightning-attention-2` of `einsum/` (no decay, lambda = 1), following Qin et al.,
"Lightning Attention-2" (arXiv:2401.04658), Algorithm 1. The sequence N is cut into blocks of BLOCK rows (T, C);
one program per (batch·head, BLOCK_F columns of the value dim F) walks the blocks t in order:
  O_intra = [(Q_t K_tᵀ) ∘ causal] V_t   (the masked tl.dot on the block: S, OI)
  O_inter = Q_t KV                      (the state carried over blocks: OX)
  KV     += K_tᵀ V_t                    (KVB, KV[t+1])
so the cost is linear in N. As in the paper's kernel, the block products feed tl.dot in the input dtype and the
state KV is accumulated in float32. O = scale · causal(Q Kᵀ) V, with no softmax and no normalisation.
Q_t KV takes the state in the input dtype, as the paper's kernel does (and as the GPU model prices it): the state is
a sum over every earlier key, so in fp16 it can pass 65504 and turn the output to inf where the output itself would
fit; bf16 (on a GPU) or fp32 holds its range.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from archsim.kernels.launch import attention_dims, check_block, dot_precision

CASCADE = "lightning-attention-2"


@triton.jit
def _lightning_fwd_kernel(Q, K, V, Out, seqlen, scale, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
                          BLOCK_F: tl.constexpr, PRECISION: tl.constexpr):
    head_offset = tl.program_id(0).to(tl.int64) * seqlen * HEAD_DIM
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)  # this program's value columns
    e = tl.arange(0, HEAD_DIM)
    c = tl.arange(0, BLOCK)
    causal = c[None, :] <= c[:, None]  # key j <= query c inside a block
    kv = tl.zeros([HEAD_DIM, BLOCK_F], tl.float32)
    for start in range(0, seqlen, BLOCK):
        rows = start + c
        row_ok = rows[:, None] < seqlen
        q = tl.load(Q + head_offset + rows[:, None] * HEAD_DIM + e[None, :], mask=row_ok, other=0.0)
        k = tl.load(K + head_offset + rows[:, None] * HEAD_DIM + e[None, :], mask=row_ok, other=0.0)
        v = tl.load(V + head_offset + rows[:, None] * HEAD_DIM + f[None, :], mask=row_ok, other=0.0)
        s = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=PRECISION), 0.0)
        o_intra = tl.dot(s.to(v.dtype), v, input_precision=PRECISION)
        o_inter = tl.dot(q, kv.to(q.dtype), input_precision=PRECISION)
        out = (o_intra + o_inter) * scale
        tl.store(Out + head_offset + rows[:, None] * HEAD_DIM + f[None, :], out.to(Out.dtype.element_ty), mask=row_ok)
        kv += tl.dot(tl.trans(k), v, input_precision=PRECISION)


def lightning_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 1.0,
                        block: int = 64, block_f: int = 64) -> torch.Tensor:
    """scale · causal(q kᵀ) v (causal linear attention, no decay) for [batch, heads, seqlen, head_dim] inputs.

    `scale` defaults to 1, the cascade's convention; `block` is the intra-block length C, `block_f` the value
    columns per program (both powers of two >= 16; block_f is capped at head_dim, which it then divides).
    """
    batch, heads, seqlen, head_dim = attention_dims(q, k, v)
    check_block("block", block)
    check_block("block_f", block_f)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    block_f = min(block_f, head_dim)
    out = torch.empty_like(q)
    _lightning_fwd_kernel[(batch * heads, head_dim // block_f)](
        q, k, v, out, seqlen, scale, HEAD_DIM=head_dim, BLOCK=block, BLOCK_F=block_f,
        PRECISION=dot_precision(q.dtype), num_warps=4 if head_dim <= 64 else 8)
    return out
