"""Time one head's vertical-slash call as MInference's Python runs it, part by part, to check the GPU model's per-head
plan (`archsim.model.gpu_sparse.head_launches`: the estimate as eager launches, the pads, the index build, the
sparse kernel) on a GPU it can be measured on.

The estimate is MInference's `vertical_and_slash_kernel` (seqpar-sparse.md §3.1, Alg. 2, from memory of its code,
not re-read): Q[-64:]·Kᵀ by `torch.einsum`, the causal mask of the last 64 keys through `torch.where` with a mask
moved from the host, an fp32 softmax, column sums and the first 30 forced, a top-k; the diagonal sums by padding
the scores with zeros on both sides and summing an `as_strided` view, the nearest 100 forced, a top-k. Then its
`vertical_slash_sparse_attention`: Q, K, V padded to a multiple of 64, the indices sorted, the index built, the
kernel. The index build and the kernel are archsim's (`kernels/vertical_slash.py`: the build in torch, where
MInference's is a CUDA op whose cost this does not measure); the kernel runs on the pattern the estimate chose
(random inputs: the slashes and verticals beyond the forced ones scatter) and on the model's placement (the k_s
nearest diagonals, the first k_v columns). One head (batch 1), bf16, head_dim 128; the dense reference is
FlashAttention-2 on the same head (PyTorch's flash backend). Prints milliseconds per part (`triton.testing.do_bench`
medians: a part bound by Python's op issue shows its host time).

    python benchmarks/minference_head.py   # on a CUDA GPU
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from archsim.kernels.vertical_slash import indexed_attention, vertical_slash_index
from gpu_timing import median_ms, require_cuda
from torch.nn.attention import SDPBackend, sdpa_kernel

HEAD_DIM, LAST_Q, BLOCK = 128, 64, 64
LENGTHS = (10000, 100000)
# (k_v, k_s) settings of the shipped LLaMA-3-8B-262K map, most common first (seqpar-sparse.md §3.1)
SETTINGS = ((1000, 6096), (30, 800), (3500, 100))
LAST_Q_MASK = torch.tril(torch.ones(LAST_Q, LAST_Q, dtype=torch.bool))  # on the host, as MInference keeps it


def sum_all_diagonal_matrix(mat: torch.Tensor) -> torch.Tensor:
    """Diagonal sums of [1, 1, n, m] scores: zero-pad both sides and sum a strided view (MInference's)."""
    _, _, n, m = mat.shape
    zero_mat = torch.zeros((1, 1, n, n)).to(mat.device)
    padded = torch.cat((zero_mat, mat, zero_mat), -1)
    strided = padded.as_strided((1, 1, n, n + m), (1, n * (2 * n + m), 2 * n + m + 1, 1))
    return torch.sum(strided, 2)[:, :, 1:]


def estimate(q: torch.Tensor, k: torch.Tensor, k_v: int, k_s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertical key positions, slash offsets) of one head, as MInference's Alg. 2 code chooses them."""
    q_len = q.shape[2]
    k_v, k_s = min(q_len, max(k_v, 30)), min(q_len, max(k_s, 50))
    last_q = min(LAST_Q, q_len)
    qk = torch.einsum("bhmk, bhnk -> bhmn", q[:, :, -last_q:, :], k) / math.sqrt(HEAD_DIM)
    qk[:, :, :, -last_q:] = torch.where(LAST_Q_MASK[-last_q:, -last_q:].to(q.device), qk[:, :, :, -last_q:],
                                        -torch.inf)
    qk = F.softmax(qk, dim=-1, dtype=torch.float32)
    vertical = qk.sum(-2, keepdim=True)
    vertical[..., :30] = torch.inf
    vertical_topk = torch.topk(vertical, k_v, -1).indices
    slash = sum_all_diagonal_matrix(qk)[..., :-last_q + 1]
    slash[..., -100:] = torch.inf
    slash = (q_len - 1) - torch.topk(slash, k_s, -1).indices
    return vertical_topk.reshape(1, 1, -1), slash.reshape(1, 1, -1)


def padded(t: torch.Tensor) -> torch.Tensor:
    pad = BLOCK - t.shape[2] % BLOCK
    return F.pad(t, [0, 0, 0, pad, 0, 0, 0, 0])


def sparse_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_v: int, k_s: int) -> torch.Tensor:
    """The whole head: estimate, pads, sorts, index, kernel, output sliced back."""
    n = q.shape[2]
    vertical, slash = estimate(q, k, k_v, k_s)
    qp, kp, vp = padded(q), padded(k), padded(v)
    vertical = vertical.to(torch.int32).sort(-1)[0]
    slash = slash.to(torch.int32).sort(-1, descending=True)[0]
    index = vertical_slash_index(vertical, slash, qp.shape[2], BLOCK)
    return indexed_attention(qp, kp, vp, index)[..., :n, :]


def model_placement(n: int, k_v: int, k_s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The GPU model's placement: the first k_v columns, the k_s nearest diagonals."""
    k_v, k_s = min(n, max(k_v, 30)), min(n, max(k_s, 50))
    vertical = torch.arange(k_v, dtype=torch.int32, device="cuda").reshape(1, 1, -1)
    slash = torch.arange(k_s, dtype=torch.int32, device="cuda").reshape(1, 1, -1)
    return vertical, slash


def time_setting(n: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_v: int, k_s: int) -> None:
    """Print each part's and the whole call's milliseconds for one (k_v, k_s) setting."""
    qp, kp, vp = padded(q), padded(k), padded(v)
    vertical, slash = estimate(q, k, k_v, k_s)
    vertical, slash = vertical.to(torch.int32).sort(-1)[0], slash.to(torch.int32).sort(-1, descending=True)[0]
    chosen = vertical_slash_index(vertical, slash, qp.shape[2], BLOCK)
    placed = vertical_slash_index(*model_placement(qp.shape[2], k_v, k_s), qp.shape[2], BLOCK)
    parts = {
        "estimate (einsum .. both top-k)": lambda: estimate(q, k, k_v, k_s),
        "pad q, k, v to 64": lambda: (padded(q), padded(k), padded(v)),
        "sort the indices": lambda: (vertical.sort(-1), slash.sort(-1, descending=True)),
        "index build (archsim's, torch)": lambda: vertical_slash_index(vertical, slash, qp.shape[2], BLOCK),
        "kernel, the estimate's pattern": lambda: indexed_attention(qp, kp, vp, chosen),
        "kernel, the model's placement": lambda: indexed_attention(qp, kp, vp, placed),
        "whole head call": lambda: sparse_call(q, k, v, k_v, k_s),
    }
    for name, fn in parts.items():
        print(f"N={n:<7} ({k_v},{k_s}) {name:<40} {median_ms(fn):10.4f} ms", flush=True)


def time_length(n: int) -> None:
    """Print the dense head's, an empty op's and every setting's milliseconds at n tokens."""
    q, k, v = (torch.randn(1, 1, n, HEAD_DIM, dtype=torch.bfloat16, device="cuda") for _ in range(3))

    def dense() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    print(f"N={n:<7} {'dense FlashAttention-2 (one head)':<52} {median_ms(dense):10.4f} ms", flush=True)
    print(f"N={n:<7} {'empty-ish op (q * 1)':<52} {median_ms(lambda: q * 1):10.4f} ms", flush=True)
    for k_v, k_s in SETTINGS:
        time_setting(n, q, k, v, k_v, k_s)


def main() -> None:
    require_cuda(__file__)
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for n in LENGTHS:
        time_length(n)


if __name__ == "__main__":
    main()
