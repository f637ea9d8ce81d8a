"""Online-softmax kernels fed a key tile (or a split) whose every score is -inf: the running max stays -inf there,
and exp(-inf - -inf) = NaN would reach every output row unless the exps see the max shifted to 0 (the guard of
`online_softmax_step`). The reference softmax is finite: the later keys have finite scores, and the -inf ones weigh
exp(-inf) = 0. q > 0 and k = -inf on a key row give q·k = -inf for every query.

Kernels run on the CPU under the Triton interpreter (tests/triton_cpu.py switches it on before they are imported).
"""

from __future__ import annotations

import pytest
from triton_cpu import DEVICE, DTYPES, SOFTMAX_ATOL, torch

# isort: split
# the kernel modules after triton_cpu has switched the Triton interpreter on
from archsim.kernels import decode, flash_fwd

BLOCK = 16  # key tile of both kernels; the first BLOCK keys are -inf, one whole tile (or one whole split)
HEAD_DIM = 16


def _inputs(batch: int, heads: int, kv_heads: int, queries: int, seqlen: int, dtype: torch.dtype):
    """q > 0, and the first BLOCK rows of k -inf: every query scores -inf against them, finite against the rest."""
    gen = torch.Generator().manual_seed(0)
    q = torch.rand((batch, heads, queries, HEAD_DIM), generator=gen) + 0.1
    k = torch.randn((batch, kv_heads, seqlen, HEAD_DIM), generator=gen)
    v = torch.randn((batch, kv_heads, seqlen, HEAD_DIM), generator=gen)
    k[:, :, :BLOCK] = float("-inf")
    return (t.to(dtype=dtype, device=DEVICE) for t in (q, k, v))


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(q kᵀ/√d) v, logsumexp of the scaled scores) in float64, k and v repeated over a GQA group."""
    group = q.shape[1] // k.shape[1]
    k, v = k.double().repeat_interleave(group, 1), v.double().repeat_interleave(group, 1)
    scores = q.double() @ k.transpose(-1, -2) / HEAD_DIM**0.5
    return torch.softmax(scores, -1) @ v, torch.logsumexp(scores, -1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flash_fwd_after_a_key_tile_of_only_minus_inf_scores(dtype) -> None:
    q, k, v = _inputs(1, 1, 1, 2 * BLOCK, 2 * BLOCK, dtype)
    out, lse = flash_fwd.flash_fwd(q, k, v, block_m=BLOCK, block_n=BLOCK)
    want, want_lse = _reference(q, k, v)
    assert torch.isfinite(want).all() and torch.isfinite(out).all()
    assert (out.double() - want).abs().max().item() <= SOFTMAX_ATOL[dtype]
    assert (lse.double() - want_lse).abs().max().item() <= 1e-5  # fp32 running max and sum in both dtypes


# the query group's padding rows (zeros, never stored) score 0 x -inf = NaN in the interpreter's numpy matmul, and
# the empty split's log-sum-exp is log2(0) = -inf, as intended
@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning",
                            "ignore:All-NaN slice encountered:RuntimeWarning",
                            "ignore:divide by zero encountered in log2:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_with_a_split_of_only_minus_inf_scores(dtype) -> None:
    q, k, v = _inputs(1, 2, 1, 1, 4 * BLOCK, dtype)  # 4 splits of one tile each: split 0 scores only -inf
    out = decode.decode_attention(q, k, v, num_splits=4, block_n=BLOCK)
    want, _ = _reference(q, k, v)
    assert torch.isfinite(want).all() and torch.isfinite(out).all()
    assert (out.double() - want).abs().max().item() <= SOFTMAX_ATOL[dtype]
