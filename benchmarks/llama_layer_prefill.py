"""Time one LLaMA-3-8B decoder layer's prefill on a GPU, part by part, as Hugging Face's eager layer runs it, to check
archsim's end-to-end prefill model (`archsim.systems.sparse_prefill.dense_prefill`: the layer's other ops as eager
PyTorch runs them plus one FlashAttention-2 call) on a GPU it can be measured on.

Random bf16 weights of LLaMA-3-8B's shapes (hidden 4096, 32 query heads and 8 KV heads of 128, SwiGLU 14336),
batch 1, one prompt of N tokens. Parts: the RMSNorm (fp32 inside, as HF's), the Q, K, V projections, RoPE (HF's
rotate_half form), FlashAttention-2 causal over every head (PyTorch's flash backend, GQA by `enable_gqa`), the
output projection, the residual adds, the SwiGLU MLP; and the whole layer. Prints milliseconds per part and per
layer.

    python benchmarks/llama_layer_prefill.py   # on a CUDA GPU
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gpu_timing import median_ms, require_cuda
from torch.nn.attention import SDPBackend, sdpa_kernel

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN = 4096, 32, 8, 128, 14336
LENGTHS = (8192, 32768, 131072)



def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """HF's LlamaRMSNorm: the variance in fp32, the result cast back and scaled."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)
    return weight * h.to(x.dtype)


def rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """HF's apply_rotary_pos_emb on [1, heads, N, d]: t * cos + rotate_half(t) * sin."""
    half = t.shape[-1] // 2
    return t * cos + torch.cat((-t[..., half:], t[..., :half]), dim=-1) * sin


def time_layer(n: int, w: dict[str, torch.Tensor]) -> None:
    """Print each part's and the whole layer's milliseconds for one prompt of `n` tokens."""
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(1, n, HIDDEN, dtype=dt, device=dev)
    cos, sin = (torch.randn(1, 1, n, HEAD_DIM, dtype=dt, device=dev) for _ in range(2))

    def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    def heads(t: torch.Tensor, count: int) -> torch.Tensor:
        return t.view(1, n, count, HEAD_DIM).transpose(1, 2)

    def attention(h: torch.Tensor) -> torch.Tensor:
        q, k = rope(heads(h @ w["q"], HEADS), cos, sin), rope(heads(h @ w["k"], KV_HEADS), cos, sin)
        o = flash(q, k, heads(h @ w["v"], KV_HEADS))
        return o.transpose(1, 2).reshape(1, n, HIDDEN) @ w["o"]

    def mlp(h: torch.Tensor) -> torch.Tensor:
        return (F.silu(h @ w["gate"]) * (h @ w["up"])) @ w["down"]

    def layer() -> torch.Tensor:
        h = x + attention(rms_norm(x, w["norm"]))
        return h + mlp(rms_norm(h, w["norm"]))

    h = rms_norm(x, w["norm"])
    q, k, v = heads(h @ w["q"], HEADS), heads(h @ w["k"], KV_HEADS), heads(h @ w["v"], KV_HEADS)
    parts = {
        "rmsnorm": lambda: rms_norm(x, w["norm"]),
        "q, k, v projections": lambda: (h @ w["q"], h @ w["k"], h @ w["v"]),
        "rope (q and k)": lambda: (rope(q, cos, sin), rope(k, cos, sin)),
        "flash attention (causal, GQA)": lambda: flash(q, k, v),
        "output projection": lambda: h @ w["o"],
        "residual add": lambda: x + h,
        "swiglu mlp": lambda: mlp(h),
        "whole layer": layer,
    }
    for name, fn in parts.items():
        print(f"N={n:<7} {name:<32} {median_ms(fn):10.3f} ms", flush=True)


def main() -> None:
    require_cuda(__file__)
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)

    def weight(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.bfloat16, device="cuda") * shape[0] ** -0.5

    w = {"q": weight(HIDDEN, HIDDEN), "k": weight(HIDDEN, KV_HEADS * HEAD_DIM),
         "v": weight(HIDDEN, KV_HEADS * HEAD_DIM), "o": weight(HIDDEN, HIDDEN), "gate": weight(HIDDEN, FFN),
         "up": weight(HIDDEN, FFN), "down": weight(FFN, HIDDEN),
         "norm": torch.ones(HIDDEN, dtype=torch.bfloat16, device="cuda")}
    for n in LENGTHS:
        time_layer(n, w)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
