"""The block-sparse Triton kernel against its cascade (issue 19: "checked under the interpreter against the
cascade"): the library cascade `minference-block-sparse` executed at the kernel's block (64) on seeded inputs selects
its key blocks itself (BSEL: mean pooling, softmax, rank < k_b); that selection, written as the kernel's block list
(per query block the kept key blocks in ascending order and their count), drives `block_sparse_attention` under the
Triton interpreter, whose output must be the cascade's AV.

Inputs: the cascade's seeded standard-normal Q, K, V (`random_inputs`), Q scaled by 1/sqrt(head_dim) (the cascade's
QK carries no scale, so the kernel runs with scale 1) and rounded to the kernel's dtype; the cascade executes on the
rounded values in float64, so the difference is the kernel's arithmetic alone. Grouped-query heads: query head
h = g * (heads / kv_heads) + r (the cascade's partition H: [G, R]) reads KV head g, so the kernel gets K and V
repeated per group. Tolerances: tests/triton_cpu.py's softmax ones (1e-5 fp32, 2e-3 fp16).

The vertical-slash kernel is checked the same way in tests/test_vertical_slash_kernel_cascade.py, against
`minference-vertical-slash-kernel`, the cascade at the kernel's granularity (every row of a 64-row block sees the
whole 64-wide window a kept slash crosses in that block); the token-level `minference-vertical-slash` attends a
subset of those points, so its AV differs from the kernel's by design.
"""

from __future__ import annotations

import numpy as np
import pytest
from triton_cpu import DEVICE, DTYPES, SOFTMAX_ATOL, torch

# isort: split
# the kernel module after triton_cpu has switched the Triton interpreter on
from archsim.kernels import block_sparse

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs

BLOCK = 64  # MInference's, the kernel's


def _block_list(bsel: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's (block_index, block_count) of a cascade selection BSEL [batch, kv_heads, group, query blocks,
    key blocks]: per query head h = g * group + r and query block, the kept key blocks ascending, padded with 0."""
    batch, kv_heads, group, blocks, _ = bsel.shape
    kept = bsel.reshape(batch, kv_heads * group, blocks, blocks) > 0
    count = kept.sum(-1)
    index = np.zeros((batch, kv_heads * group, blocks, max(int(count.max()), 1)), dtype=np.int32)
    for b, h, i in np.ndindex(*count.shape):
        index[b, h, i, :count[b, h, i]] = np.flatnonzero(kept[b, h, i])
    return (torch.from_numpy(index).to(DEVICE), torch.from_numpy(count.astype(np.int32)).to(DEVICE))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("heads", "kv_heads", "seq_len", "head_dim", "k_b", "seed"), [
    (4, 2, 256, 16, 2, 0),  # GQA, 4 query blocks keep 1, 2, 2, 2 of 1..4 causal blocks
    (2, 2, 192, 32, 1, 1),  # MHA, one block per query block: rows whose diagonal block is dropped see only its pick
])
def test_the_block_sparse_kernel_computes_its_cascade(dtype, heads, kv_heads, seq_len, head_dim, k_b, seed) -> None:
    params = {"batch": 1, "heads": heads, "kv_heads": kv_heads, "seq_len": seq_len, "head_dim": head_dim,
              "block": BLOCK, "k_b": k_b}
    binding = bind(library.load_cascade_spec("minference-block-sparse"), params)
    inputs = random_inputs(binding, seed)
    inputs["Q"] = inputs["Q"] / head_dim ** 0.5
    rounded = {name: torch.from_numpy(array).to(dtype) for name, array in inputs.items()}
    tensors = execute(binding, {name: t.double().numpy() for name, t in rounded.items()})
    index, count = _block_list(tensors["BSEL"])
    blocks = seq_len // BLOCK
    want_count = np.minimum(np.arange(blocks) + 1, k_b)  # rank < k_b among the i + 1 causal blocks
    assert (count.cpu().numpy() == want_count).all()
    group = heads // kv_heads
    q = rounded["Q"].to(DEVICE)
    k, v = (rounded[name].repeat_interleave(group, dim=1).to(DEVICE) for name in ("K", "V"))
    out = block_sparse.block_sparse_attention(q, k, v, index, count, scale=1.0, block=BLOCK)
    assert out.dtype == dtype and out.shape == q.shape
    assert np.abs(out.double().cpu().numpy() - tensors["AV"]).max() <= SOFTMAX_ATOL[dtype]
    if k_b == 1:  # a selection that drops some diagonal block: the check is not of the causal kernel
        assert any(index[0, h, i, 0].item() != i for h in range(heads) for i in range(blocks))
