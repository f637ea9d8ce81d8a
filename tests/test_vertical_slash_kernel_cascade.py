"""The vertical-slash Triton kernel against its cascade at kernel granularity (issue 19: "checked under the
interpreter against the cascade"; "64x64 blocks and 1x64 columns at kernel granularity").

`minference-vertical-slash-kernel` executes MInference's selection (VSEL, SSEL, the Einsums of
`minference-vertical-slash`) and attends what kernels/vertical_slash.py attends: query p of block [start, end) sees key
m when m <= p and (m is a kept vertical, or m lies in the `block`-wide window [e - block, e), e = max(end - s, block),
of a kept slash s < end). Checked here, on seeded inputs:
(a) the cascade equals its numpy reference (`minference_vertical_slash_kernel`, the mask built block by block) at
    several sizes (error < 1e-9, float64), and at block 1 it is the token-level cascade;
(b) the points the cascade attends (QK finite) are those of the kernel's own index (`vertical_slash_index`: merged
    ranges and gathered columns, causal) on the cascade's selection;
(c) the kernel under the Triton interpreter, fed the cascade's VSEL and SSEL, returns the cascade's AV within
    tests/triton_cpu.py's softmax tolerances (1e-5 fp32, 2e-3 fp16); the token-level cascade's AV is further away;
(d) with the forced selection only (k_v = sink_columns, k_s = local_diagonals: the first columns and the nearest
    diagonals, sparse_density's placement) the windows and strips hold vertical_slash_kept_points, and the causal
    mask leaves that less rows (rows - 1) / 2 per query block (the kernel's diagonal tiles above the diagonal);
(e) the cascade's `density` is the executed mask's mean at its defaults.
Inputs as tests/test_sparse_kernels_cascade.py: Q scaled by 1/sqrt(head_dim) (the cascade's QK has no scale, the
kernel runs with scale 1), all rounded to the kernel's dtype, the cascade executed on the rounded values in float64;
query head h = g * (heads / kv_heads) + r reads KV head g, so the kernel gets K and V repeated per group.
"""

from __future__ import annotations

import numpy as np
import pytest
from triton_cpu import DEVICE, DTYPES, SOFTMAX_ATOL, torch

# isort: split
# the kernel module after triton_cpu has switched the Triton interpreter on
from archsim.kernels import vertical_slash

from archsim import library
from archsim.cascade.bind import Binding, bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.references import REFERENCES
from archsim.cascade.sparse_density import vertical_slash_kept_points

CASCADE = "minference-vertical-slash-kernel"
GQA = {"heads": 4, "kv_heads": 2}


def _binding(params: dict) -> Binding:
    return bind(library.load_cascade_spec(CASCADE), params)


def _heads(tensor: np.ndarray) -> np.ndarray:
    """[B, G, R, ...] as [B, H, ...], h = g * R + r (the partition H: [G, R])."""
    return tensor.reshape(tensor.shape[0], tensor.shape[1] * tensor.shape[2], *tensor.shape[3:])


def _pattern(kept: np.ndarray) -> torch.Tensor:
    """The kernel's index list [B, H, k] of a selection [B, G, R, N]: per head the kept positions ascending, padded
    by repeating the first (the kernel allows repeats)."""
    rows = _heads(kept) > 0
    width = int(rows.sum(-1).max())
    out = np.zeros((*rows.shape[:2], width), dtype=np.int32)
    for b, h in np.ndindex(*rows.shape[:2]):
        chosen = np.flatnonzero(rows[b, h])
        out[b, h] = np.concatenate([chosen, np.full(width - chosen.size, chosen[0])])
    return torch.from_numpy(out)


def _index_mask(vertical: torch.Tensor, slash: torch.Tensor, n: int, block: int) -> np.ndarray:
    """[B, H, P, M]: what the kernel attends with `vertical_slash_index`'s ranges and columns (causal)."""
    index = vertical_slash.vertical_slash_index(vertical, slash, n, block)
    keep = np.zeros((*vertical.shape[:2], n, n), dtype=bool)
    for b, h, i in np.ndindex(*index.range_count.shape):
        rows = slice(i * block, (i + 1) * block)
        for r in range(int(index.range_count[b, h, i])):
            keep[b, h, rows, int(index.range_start[b, h, i, r]):int(index.range_end[b, h, i, r])] = True
        keep[b, h, rows, index.column_index[b, h, i, :int(index.column_count[b, h, i])].long().numpy()] = True
    return keep & np.tri(n, n, dtype=bool)


SIZES = [
    {},
    {**GQA, "seq_len": 40, "block": 16, "last_q": 16, "k_v": 10, "k_s": 3, "sink_columns": 3, "local_diagonals": 1},
    {"heads": 2, "kv_heads": 2, "seq_len": 30, "block": 4, "last_q": 4, "k_v": 2, "k_s": 12},  # partial last block
    {"seq_len": 20, "block": 64},  # one query block longer than the sequence: windows clamped to [0, block)
]


@pytest.mark.parametrize("params", SIZES, ids=range(len(SIZES)))
def test_the_cascade_is_its_reference_and_the_kernels_index(params: dict) -> None:
    binding = _binding(params)
    n, block = int(binding.params["seq_len"]), int(binding.params["block"])
    for seed in (0, 1, 2):
        inputs = random_inputs(binding, seed)
        tensors = execute(binding, inputs)
        want = REFERENCES["minference_vertical_slash_kernel"](inputs, binding.params)["AV"]
        assert np.isfinite(tensors["AV"]).all() and np.abs(tensors["AV"] - want).max() < 1e-9
        attended = np.isfinite(_heads(tensors["QK"]))
        kernel = _index_mask(_pattern(tensors["VSEL"]), _pattern(tensors["SSEL"]), n, block)
        assert (attended == kernel).all()


def test_block_one_is_the_token_level_cascade() -> None:
    """A one-row query block: slash s covers [p - s, p - s + 1), the point p - m == s alone."""
    token = library.load_cascade_spec("minference-vertical-slash")
    for params in ({}, {**GQA, "seq_len": 40, "last_q": 16, "k_v": 10, "k_s": 3, "sink_columns": 3}):
        kernel_level, token_level = _binding({**params, "block": 1}), bind(token, params)
        for seed in (0, 1):
            inputs = random_inputs(token_level, seed)
            got, want = execute(kernel_level, inputs)["AV"], execute(token_level, inputs)["AV"]
            assert np.abs(got - want).max() < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("heads", "kv_heads", "seq_len", "head_dim", "block", "k_v", "k_s", "seed"), [
    (4, 2, 64, 16, 16, 5, 6, 0),  # GQA, four whole query blocks
    (2, 2, 72, 32, 32, 4, 9, 1),  # MHA, a partial last block (72 = 2 x 32 + 8)
])
def test_the_vertical_slash_kernel_computes_its_cascade(dtype, heads, kv_heads, seq_len, head_dim, block, k_v, k_s,
                                                        seed) -> None:
    params = {"batch": 1, "heads": heads, "kv_heads": kv_heads, "seq_len": seq_len, "head_dim": head_dim,
              "block": block, "last_q": block, "k_v": k_v, "k_s": k_s, "sink_columns": 2, "local_diagonals": 2}
    binding = _binding(params)
    inputs = random_inputs(binding, seed)
    inputs["Q"] = inputs["Q"] / head_dim ** 0.5
    rounded = {name: torch.from_numpy(array).to(dtype) for name, array in inputs.items()}
    exact = {name: t.double().numpy() for name, t in rounded.items()}
    tensors = execute(binding, exact)
    vertical, slash = _pattern(tensors["VSEL"]), _pattern(tensors["SSEL"])
    assert vertical.shape[-1] == k_v and slash.shape[-1] == k_s  # rank < k minus the forced: k kept per head
    assert (vertical[..., :2] == torch.arange(2)).all() and (slash[..., :2] == torch.arange(2)).all()
    group = heads // kv_heads
    q = rounded["Q"].to(DEVICE)
    k, v = (rounded[name].repeat_interleave(group, dim=1).to(DEVICE) for name in ("K", "V"))
    out = vertical_slash.vertical_slash_attention(q, k, v, vertical.to(DEVICE), slash.to(DEVICE), scale=1.0,
                                                  block=block)
    assert out.dtype == dtype and out.shape == q.shape
    error = np.abs(out.double().cpu().numpy() - tensors["AV"]).max()
    assert error <= SOFTMAX_ATOL[dtype]
    # the windows matter: the token-level cascade on the same selection is further from the kernel than that
    token = bind(library.load_cascade_spec("minference-vertical-slash"),
                 {name: value for name, value in params.items() if name != "block"})
    assert np.abs(out.double().cpu().numpy() - execute(token, exact)["AV"]).max() > 10 * SOFTMAX_ATOL[dtype]


@pytest.mark.parametrize(("seq_len", "block", "k_v", "k_s"), [
    (48, 8, 2, 2),  # narrow band inside each block
    (40, 8, 3, 11),  # the band reaches over a block and the first blocks' slashes clamp to [0, block)
    (30, 4, 9, 5),  # a partial last block; the first blocks' verticals lie in the band (counted once)
    (20, 64, 4, 3),  # one query block longer than the sequence
], ids=str)
def test_the_forced_selection_holds_the_kernels_kept_points(seq_len: int, block: int, k_v: int, k_s: int) -> None:
    """k_v = sink_columns, k_s = local_diagonals: the selection is the first k_v columns and the k_s nearest
    diagonals, sparse_density's placement, whatever the scores. Its windows and strips (a vertical v is a strip
    for the query blocks ending past it; before the causal mask) hold vertical_slash_kept_points per head; the
    causal mask drops the points above the diagonal in each query block's band, which reaches the block's last
    row: rows (rows - 1) / 2 for a block of `rows` rows."""
    binding = _binding({"seq_len": seq_len, "block": block, "k_v": k_v, "k_s": k_s, "sink_columns": k_v,
                        "local_diagonals": k_s, "last_q": min(8, seq_len)})
    tensors = execute(binding, random_inputs(binding, 0))
    heads = int(binding.params["heads"])
    block_end = (np.arange(seq_len) // block + 1) * block  # the kernel gathers a vertical for blocks ending past it
    strips = (_heads(tensors["VSEL"])[:, :, None, :] > 0) & (np.arange(seq_len) < block_end[:, None])
    windows = strips | (_heads(tensors["WMAP"]) > 0)
    kept = vertical_slash_kept_points(seq_len, k_v, k_s, block)
    assert windows.sum() == heads * kept
    rows = np.diff(np.minimum(np.arange(0, seq_len + block, block), seq_len))
    assert np.isfinite(tensors["QK"]).sum() == heads * (kept - int(np.sum(rows * (rows - 1) // 2)))


def test_the_default_density_is_the_executed_one() -> None:
    """The analysis counts `density` of the causal points: at the defaults it is the executed mask's mean."""
    binding = _binding({})
    n = int(binding.params["seq_len"])
    shares = []
    for seed in range(5):
        scores = execute(binding, random_inputs(binding, seed))["QK"]
        shares.append(np.isfinite(scores).sum() / (scores.size / n**2) / (n * (n + 1) / 2))
    assert np.mean(shares) == pytest.approx(binding.params["density"], abs=0.01)
    assert max(abs(s - binding.params["density"]) for s in shares) < 0.06
