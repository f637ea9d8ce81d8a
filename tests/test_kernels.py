"""The Triton kernels of `kernels/` against a float64 torch reference, on the CPU under the Triton interpreter.

TRITON_INTERPRET=1 is set by tests/triton_cpu.py, before triton is imported (set TRITON_INTERPRET=0 to run the
same tests compiled on a GPU). The reference is the textbook formula evaluated in float64 on the same (rounded)
inputs. Tolerances, with the largest error seen on this machine in brackets:
- fp32 inputs: 1e-5 absolute (≤ 1e-6): float32 products and sums over ≤ 64 terms of values ≤ ~5.
- fp16 inputs, softmax outputs (|O| < 1): 2e-3 (≤ 8e-4), from the fp16 output (half ulp 4.9e-4) and the
  probabilities rounded to fp16 before P·V; the naive kernel also stores S and A in fp16: 3e-3 (≤ 1.3e-3).
- fp16 gradients: 5e-3 absolute + 5e-3 relative (≤ 2.3e-3 on gradients up to ~3.5).
- linear attention, no normalisation (|O| up to ~40): relative to max|O|, 1e-5 for fp32, 2e-3 for fp16 (≤ 4e-4).
"""

from __future__ import annotations

import pytest
from triton_cpu import DEVICE, DTYPES, SOFTMAX_ATOL, torch

# isort: split
# the kernel modules after triton_cpu has switched the Triton interpreter on
from archsim.kernels import decode, flash_bwd, flash_fwd, lightning, naive, torch_attention

from archsim import library

SHAPES = ((48, 16), (64, 64))  # (seqlen, head_dim); 48 leaves partial tiles for the boundary masks
NAIVE_ATOL = {torch.float32: 1e-5, torch.float16: 3e-3}
GRAD_TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (5e-3, 5e-3)}  # (atol, rtol)
LINEAR_RTOL = {torch.float32: 1e-5, torch.float16: 2e-3}


def _inputs(n: int, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).to(dtype=dtype, device=DEVICE) for _ in range(n)]


def _reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(q kᵀ/√d [causal]) v, logsumexp of the scaled scores) in float64."""
    scores = q.double() @ k.double().transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        seqlen = q.shape[-2]
        scores = scores.masked_fill(torch.ones(seqlen, seqlen, dtype=torch.bool, device=q.device).triu(1),
                                    float("-inf"))
    return torch.softmax(scores, -1) @ v.double(), torch.logsumexp(scores, -1)


def _max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got.double() - want).abs().max().item()


def test_each_module_names_its_cascade() -> None:
    cascades = set(library.names("cascades"))
    for module in (naive, flash_fwd, flash_bwd, decode, lightning, torch_attention):
        names = [module.CASCADE, *(getattr(module, extra) for extra in ("CASCADE_CAUSAL", "CASCADE_FLASH")
                                   if hasattr(module, extra))]
        for name in names:
            assert name in cascades, (module.__name__, name)
            assert f"`{name}`" in module.__doc__, (module.__name__, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen, head_dim", SHAPES)
def test_naive_matches_reference(dtype, causal, seqlen, head_dim) -> None:
    q, k, v = _inputs(3, (1, 2, seqlen, head_dim), dtype, seed=1)
    out = naive.naive_attention(q, k, v, causal=causal, block_m=32, block_n=32)
    want, _ = _reference(q, k, v, causal)
    assert out.dtype == dtype and out.shape == q.shape
    assert _max_error(out, want) <= NAIVE_ATOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen, head_dim", SHAPES)
def test_flash_forward_matches_reference(dtype, causal, seqlen, head_dim) -> None:
    q, k, v = _inputs(3, (1, 2, seqlen, head_dim), dtype, seed=2)
    out, lse = flash_fwd.flash_fwd(q, k, v, causal=causal, block_m=16, block_n=32)
    want, want_lse = _reference(q, k, v, causal)
    assert out.dtype == dtype and lse.shape == (1, 2, seqlen)
    assert _max_error(out, want) <= SOFTMAX_ATOL[dtype]
    assert _max_error(lse, want_lse) <= 1e-5  # lse is accumulated in float32 for every input dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen, head_dim", SHAPES)
def test_flash_backward_matches_autograd(dtype, causal, seqlen, head_dim) -> None:
    q, k, v, dout = _inputs(4, (1, 2, seqlen, head_dim), dtype, seed=3)
    out, lse = flash_fwd.flash_fwd(q, k, v, causal=causal, block_m=16, block_n=32)
    grads = flash_bwd.flash_bwd(dout, q, k, v, out, lse, causal=causal, block_m=16, block_n=32)
    leaves = [t.double().requires_grad_() for t in (q, k, v)]
    _reference(*leaves, causal)[0].backward(dout.double())
    atol, rtol = GRAD_TOL[dtype]
    for name, got, leaf in zip("qkv", grads, leaves, strict=True):
        assert got.dtype == dtype, name
        torch.testing.assert_close(got.double(), leaf.grad, atol=atol, rtol=rtol, msg=f"d{name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, heads, kv_heads, seqlen, head_dim, num_splits", [
    (2, 4, 2, 48, 16, 3),  # GQA group 2, batch 2, last split partial
    (1, 16, 2, 100, 64, 8),  # the Flash-Decoding head grouping (16 q / 2 kv), 8 splits asked, 7 tiles
    (1, 2, 2, 64, 16, None),  # MHA, default split count (one split on a CPU)
])
def test_decode_matches_reference(dtype, batch, heads, kv_heads, seqlen, head_dim, num_splits) -> None:
    (q,) = _inputs(1, (batch, heads, 1, head_dim), dtype, seed=4)
    k, v = _inputs(2, (batch, kv_heads, seqlen, head_dim), dtype, seed=5)
    out = decode.decode_attention(q, k, v, num_splits=num_splits, block_n=16)
    group = heads // kv_heads
    want, _ = _reference(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), causal=False)
    assert out.shape == q.shape and out.dtype == dtype
    assert _max_error(out, want) <= SOFTMAX_ATOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seqlen, head_dim, block, block_f", [(48, 16, 16, 16), (64, 64, 16, 32)])
def test_lightning_matches_causal_linear_attention(dtype, seqlen, head_dim, block, block_f) -> None:
    q, k, v = _inputs(3, (1, 2, seqlen, head_dim), dtype, seed=6)
    scale = head_dim**-0.5
    out = lightning.lightning_attention(q, k, v, scale=scale, block=block, block_f=block_f)
    want = (q.double() @ k.double().transpose(-1, -2) * scale).tril() @ v.double()
    assert out.dtype == dtype
    assert _max_error(out, want) <= LINEAR_RTOL[dtype] * want.abs().max().item()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_pytorch_paths_match_reference(dtype, causal) -> None:
    """PyTorch's paths that `archsim measure --kernels pytorch,sdpa_flash` times beside the Triton kernels: the
    FlashAttention benchmark's standard attention (S and A stored in the input dtype, as the naive kernel), eager
    GQA decode and the SDPA flash backend (fp16 only: the CUDA backend takes no fp32)."""
    seqlen, heads, head_dim = 48, 2, 16
    (qkv,) = _inputs(1, (1, seqlen, 3, heads, head_dim), dtype, seed=8)
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
    want, _ = _reference(q, k, v, causal)
    out = torch_attention.standard_attention(qkv, causal)
    assert out.shape == q.shape and out.dtype == dtype
    # the -10000 mask is what the benchmark adds; exp(-10000 + a few) is 0 in fp32 and fp16 alike
    assert _max_error(out, want) <= NAIVE_ATOL[dtype]
    if dtype == torch.float16:
        flash = torch_attention.sdpa_flash(*(t.contiguous() for t in qkv.unbind(2)), causal)
        assert flash.shape == q.shape and _max_error(flash, want) <= SOFTMAX_ATOL[dtype]
    (q1,) = _inputs(1, (1, 4, 1, head_dim), dtype, seed=9)
    want, _ = _reference(q1, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), causal=False)
    assert _max_error(torch_attention.eager_decode(q1, k, v), want) <= SOFTMAX_ATOL[dtype]


def test_launchers_reject_bad_shapes() -> None:
    q, k, v = _inputs(3, (1, 2, 16, 24), torch.float32, seed=7)
    with pytest.raises(ValueError, match="head_dim"):
        flash_fwd.flash_fwd(q, k, v)
    q, k, v = _inputs(3, (1, 3, 1, 16), torch.float32, seed=7)
    with pytest.raises(ValueError, match="h % h_kv"):
        decode.decode_attention(q, k[:, :2], v[:, :2])


@pytest.mark.parametrize("num_splits", [0, -1, 1.5, True])
def test_decode_refuses_a_split_count_below_one(num_splits) -> None:
    """num_splits -1 raised deep inside torch (a negative dimension) at 130 tokens and ran at 17; 0 fell back to the
    default silently (`or`)."""
    (q,) = _inputs(1, (1, 2, 1, 16), torch.float32, seed=4)
    k, v = _inputs(2, (1, 1, 17, 16), torch.float32, seed=5)
    with pytest.raises(ValueError, match="num_splits"):
        decode.decode_attention(q, k, v, num_splits=num_splits, block_n=16)
