"""The shapes of the published attention benchmarks and the FlashAttention FLOP convention (gpu.md §1.0).

Pure data and arithmetic: `benchmark_cases` lists what `archsim measure` times, `attention_flops` converts a time
into the TFLOPs/s the published charts print. Sources, per family:
- FlashAttention / FlashAttention-2 benchmark (the flash-attention repo's `benchmarks/benchmark_flash_attention.py`,
  gpu.md §1.0): hidden size 2048 so heads = 2048/d, batch = 16384/seqlen, seqlen 512..16k, d 64 and 128, causal
  off/on, fp16.
- Flash-Decoding (Dao, Haziza, Massa, Sizov, 2023, blog micro-benchmark): batch 1, 16 query heads of dim 128 sharing
  2 KV heads (CodeLlama-34B on 4 GPUs), fp16, growing KV length. gpu.md does not record this shape; it is taken
  from the blog as recalled, not re-read, and the KV lengths (512..64k) are ours.
- Lightning Attention-2 (its repo's `benchmarks/benchmark_lightning2.py`, gpu.md §1.7): batch 4, 32 heads, d 128,
  bf16, seqlen 512..32k, forward latency.
- MInference's sparse kernels (seqpar-sparse.md §3.1), timed only when asked for (`--kernels`): LLaMA-3-8B's
  attention (batch 1, 32 heads after the GQA repeat, d 128, bf16), causal, 16k..128k (ours: lengths a GPU runs
  in seconds); vertical-slash at (k_v, k_s) = (1000, 6096), the setting of 473 of the 1024 heads of the shipped
  LLaMA-3-8B-262K config, block-sparse at k_b = 100 blocks of 64 (the code's topk). Which verticals, slashes and
  blocks are kept is drawn at random (seeded), as no model's scores are at hand; the kernels' time depends on how
  many, and for slashes on how they merge, so a real head's time differs. The kernel alone is timed: the block
  list and the vertical-slash index are built before, like the pattern estimation (costs of their own).
- PyTorch's own paths (`kernels/torch_attention.py`), timed only when asked for: at the FlashAttention benchmark's
  shapes the standard attention ("PyTorch standard attention") and the SDPA flash backend ("FlashAttention-2"),
  forward, backward and both; at the Flash-Decoding shapes eager decode ("PyTorch eager attention"). Their rows
  carry the labels of the published rows, so `archsim validate` checks the families fitted on those.

`heldout_cases` is a second grid, of shapes no calibration has seen (`archsim measure --grid heldout`), to check
the model on shapes as well as GPUs it was not fitted on: long causal prefill (32K, 64K tokens, batch 1), a length
off every tile (3000), LLaMA-2-13B's 40 heads, head dims 32 (our kernels) and 96 and 256 (PyTorch's flash
backend), large-batch GQA decode (LLaMA-3-8B's 32q/8kv), MHA and MQA decode, head_dim 64 decode, and sparse
patterns of other sizes at head_dim 64.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_KERNELS = ("naive", "flash_fwd", "flash_bwd", "decode", "lightning")  # module names in kernels/
SPARSE_KERNELS = ("block_sparse", "vertical_slash")  # timed at the MInference shapes, latency only
TORCH_KERNELS = ("sdpa_flash", "pytorch")  # PyTorch's paths, in kernels/torch_attention.py
KERNELS = DEFAULT_KERNELS + SPARSE_KERNELS + TORCH_KERNELS
DIRECTIONS = ("fwd", "bwd", "fwd+bwd", "decode")
FA_TOKENS = 16384  # batch · seqlen of every FlashAttention benchmark run
FA_HIDDEN = 2048  # heads · head_dim
FA_SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
FA_HEAD_DIMS = (64, 128)
DECODE_SEQLENS = tuple(2**i for i in range(9, 17))  # 512 .. 65536
DECODE_BATCH, DECODE_HEADS, DECODE_KV_HEADS, DECODE_HEAD_DIM = 1, 16, 2, 128
LIGHTNING_SEQLENS = tuple(2**i for i in range(9, 16))  # 512 .. 32768
LIGHTNING_BATCH, LIGHTNING_HEADS, LIGHTNING_HEAD_DIM = 4, 32, 128
SPARSE_SEQLENS = (16384, 32768, 65536, 131072)
SPARSE_BATCH, SPARSE_HEADS, SPARSE_HEAD_DIM = 1, 32, 128
SPARSE_VERTICAL_SIZE, SPARSE_SLASH_SIZE = 1000, 6096  # (k_v, k_s)
SPARSE_BLOCK_TOPK, SPARSE_BLOCK = 100, 64  # k_b key blocks of 64 tokens per query block
SPARSE_SIZES = {"block_sparse": {"block_topk": SPARSE_BLOCK_TOPK},
                "vertical_slash": {"vertical_size": SPARSE_VERTICAL_SIZE, "slash_size": SPARSE_SLASH_SIZE}}
PREFILL_DIRECTIONS = {"naive": ("fwd",), "flash_fwd": ("fwd",), "flash_bwd": ("bwd", "fwd+bwd"),
                      "sdpa_flash": ("fwd", "bwd", "fwd+bwd"), "pytorch": ("fwd", "bwd", "fwd+bwd")}
TINY_BATCH, TINY_HEADS = 1, 2  # interpreter runs: shapes shrunk so one run takes well under a second
FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}  # x the forward count (bwd = 2 matmuls + 0.5 recompute)
KERNEL_LABELS = {
    "naive": "archsim naive 3-pass (Triton)",
    "flash_fwd": "archsim FlashAttention-2 (Triton)",
    "flash_bwd": "archsim FlashAttention-2 (Triton)",
    "decode": "archsim Flash-Decoding split-KV GQA (Triton)",
    "lightning": "archsim Lightning Attention-2 (Triton)",
    "block_sparse": "archsim MInference block-sparse (Triton)",
    "vertical_slash": "archsim MInference vertical-slash (Triton)",
    "sdpa_flash": "FlashAttention-2",
    "pytorch": "PyTorch standard attention",
}
DECODE_LABELS = {"pytorch": "PyTorch eager attention"}  # a kernel's label at decode, where it differs


@dataclass(frozen=True)
class Case:
    """One timed run: a kernel module, a direction and a shape ([batch, heads, seqlen, head_dim] inputs)."""

    kernel: str
    direction: str
    causal: bool
    batch: int
    heads: int
    head_dim: int
    seqlen: int
    dtype: str = "fp16"
    kv_heads: int | None = None  # decode only: KV heads shared by heads / kv_heads query heads each
    vertical_size: int | None = None  # vertical_slash only: k_v kept columns
    slash_size: int | None = None  # vertical_slash only: k_s kept diagonals
    block_topk: int | None = None  # block_sparse only: k_b kept key blocks per query block (of SPARSE_BLOCK tokens)

    @property
    def label(self) -> str:
        """The `kernel` column of the case's rows: the published rows' label for PyTorch's paths."""
        return DECODE_LABELS.get(self.kernel, KERNEL_LABELS[self.kernel]) if self.direction == "decode" \
            else KERNEL_LABELS[self.kernel]

    @property
    def pattern_note(self) -> str:
        """The sparse pattern's sizes as "; key=value" note entries ("" for dense kernels)."""
        sizes = {"vertical_size": self.vertical_size, "slash_size": self.slash_size, "block_topk": self.block_topk}
        return "".join(f"; {name}={value}" for name, value in sizes.items() if value is not None)


# (kernels, direction, causal settings, batch, heads, head_dim, seqlens[, kv_heads]): shapes no calibration fitted
HELDOUT_PREFILL = (
    (("naive", "flash_fwd", "flash_bwd", "sdpa_flash", "pytorch"), (False, True), 2, 40, 128, (3000,)),
    (("flash_fwd", "flash_bwd", "sdpa_flash"), (True,), 1, 32, 128, (32768, 65536)),
    (("flash_fwd", "flash_bwd", "sdpa_flash"), (False, True), 4, 16, 32, (4096,)),
    (("sdpa_flash",), (False, True), 2, 16, 96, (8192,)),
    (("sdpa_flash",), (False, True), 2, 8, 256, (8192,)),
)
HELDOUT_DECODE = (  # (batch, query heads, kv heads, head_dim, seqlens), for decode and PyTorch's eager decode
    (8, 32, 8, 128, (4096, 16384, 65536, 131072)),
    (64, 32, 8, 128, (2048, 8192)),
    (16, 32, 32, 128, (4096, 16384)),
    (32, 8, 1, 64, (32768,)),
)
HELDOUT_SPARSE_HEAD_DIM, HELDOUT_SPARSE_SEQLEN = 64, 32768
HELDOUT_SPARSE_SIZES = {"block_sparse": {"block_topk": 50},
                        "vertical_slash": {"vertical_size": 500, "slash_size": 2000}}
HELDOUT_LIGHTNING = (2, 16, 64, (8192, 16384))  # batch, heads, head_dim, seqlens


def attention_flops(batch: int, heads: int, seqlen: int, head_dim: int, causal: bool, direction: str) -> float:
    """FLOPs of softmax attention by the FlashAttention benchmark convention: 4·b·h·s²·d forward (two matmuls of
    2·s²·d), halved when causal, times 2.5 for the backward and 3.5 for forward plus backward."""
    forward = 4.0 * batch * heads * seqlen**2 * head_dim
    return forward * (0.5 if causal else 1.0) * FLOP_FACTOR[direction]


def _held_sizes(sizes: dict[str, int], seqlen: int) -> dict[str, int]:
    """Sparse pattern sizes capped at what the length holds: k_v, k_s <= seqlen; k_b <= its key blocks."""
    held = {"block_topk": -(-seqlen // SPARSE_BLOCK)}
    return {name: min(size, held.get(name, seqlen)) for name, size in sizes.items()}


def capped(seqlens: tuple[int, ...], max_seqlen: int | None) -> tuple[int, ...]:
    """The published lengths up to max_seqlen; max_seqlen alone when it is below all of them."""
    if max_seqlen is None:
        return seqlens
    return tuple(s for s in seqlens if s <= max_seqlen) or (max_seqlen,)


def benchmark_cases(kernels: tuple[str, ...], max_seqlen: int | None, tiny: bool) -> list[Case]:
    """The cases of the selected kernels, in KERNELS order. `tiny` (interpreter runs) keeps the head dims, causal
    settings and GQA grouping but uses batch TINY_BATCH, at most TINY_HEADS heads for prefill, and fp16. Sparse
    pattern sizes are capped at what the length holds (k_v, k_s <= seqlen; k_b <= its blocks)."""
    cases = []
    for kernel in (k for k in KERNELS if k in kernels):
        if kernel in PREFILL_DIRECTIONS:
            for head_dim in FA_HEAD_DIMS:
                for causal in (False, True):
                    for seqlen in capped(FA_SEQLENS, max_seqlen):
                        batch, heads = max(1, FA_TOKENS // seqlen), FA_HIDDEN // head_dim
                        if tiny:
                            batch, heads = TINY_BATCH, min(heads, TINY_HEADS)
                        cases += [Case(kernel, d, causal, batch, heads, head_dim, seqlen)
                                  for d in PREFILL_DIRECTIONS[kernel]]
        if kernel in ("decode", "pytorch"):
            cases += [Case(kernel, "decode", False, DECODE_BATCH, DECODE_HEADS, DECODE_HEAD_DIM, seqlen,
                           kv_heads=DECODE_KV_HEADS) for seqlen in capped(DECODE_SEQLENS, max_seqlen)]
        if kernel in SPARSE_KERNELS:
            batch, heads = (TINY_BATCH, TINY_HEADS) if tiny else (SPARSE_BATCH, SPARSE_HEADS)
            for seqlen in capped(SPARSE_SEQLENS, max_seqlen):
                cases.append(Case(kernel, "fwd", True, batch, heads, SPARSE_HEAD_DIM, seqlen,
                                  "fp16" if tiny else "bf16", **_held_sizes(SPARSE_SIZES[kernel], seqlen)))
        if kernel == "lightning":
            batch, heads = (TINY_BATCH, TINY_HEADS) if tiny else (LIGHTNING_BATCH, LIGHTNING_HEADS)
            cases += [Case(kernel, "fwd", True, batch, heads, LIGHTNING_HEAD_DIM, seqlen, "fp16" if tiny else "bf16")
                      for seqlen in capped(LIGHTNING_SEQLENS, max_seqlen)]
    return cases


def heldout_cases(kernels: tuple[str, ...], max_seqlen: int | None, tiny: bool) -> list[Case]:
    """The held-out grid's cases of the selected kernels (module docstring), in KERNELS order, lengths above
    `max_seqlen` left out (`capped`: a shape with none left runs at `max_seqlen`). `tiny` (interpreter runs) shrinks
    each shape as `benchmark_cases` does, a decode's to one KV head and its query group capped at 4, and runs every
    length at `max_seqlen` (`archsim measure` gives one); repeated cases are dropped."""
    cases: list[Case] = []

    def lengths(seqlens: tuple[int, ...]) -> tuple[int, ...]:
        return (max_seqlen or min(seqlens),) if tiny else capped(seqlens, max_seqlen)

    for kernel in (k for k in KERNELS if k in kernels):
        for names, causals, batch, heads, head_dim, seqlens in HELDOUT_PREFILL:
            if kernel in names:
                batch, heads = (TINY_BATCH, min(heads, TINY_HEADS)) if tiny else (batch, heads)
                cases += [Case(kernel, d, causal, batch, heads, head_dim, seqlen) for causal in causals
                          for seqlen in lengths(seqlens) for d in PREFILL_DIRECTIONS[kernel]]
        if kernel in ("decode", "pytorch"):
            for batch, heads, kv_heads, head_dim, seqlens in HELDOUT_DECODE:
                if tiny:
                    batch, heads, kv_heads = TINY_BATCH, min(heads // kv_heads, 4), 1
                cases += [Case(kernel, "decode", False, batch, heads, head_dim, seqlen, kv_heads=kv_heads)
                          for seqlen in lengths(seqlens)]
        if kernel in SPARSE_KERNELS:
            batch, heads = (TINY_BATCH, TINY_HEADS) if tiny else (SPARSE_BATCH, SPARSE_HEADS)
            for seqlen in lengths((HELDOUT_SPARSE_SEQLEN,)):
                cases.append(Case(kernel, "fwd", True, batch, heads, HELDOUT_SPARSE_HEAD_DIM, seqlen,
                                  "fp16" if tiny else "bf16", **_held_sizes(HELDOUT_SPARSE_SIZES[kernel], seqlen)))
        if kernel == "lightning":
            batch, heads, head_dim, seqlens = HELDOUT_LIGHTNING
            batch, heads = (TINY_BATCH, TINY_HEADS) if tiny else (batch, heads)
            cases += [Case(kernel, "fwd", True, batch, heads, head_dim, seqlen, "fp16" if tiny else "bf16")
                      for seqlen in lengths(seqlens)]
    return list(dict.fromkeys(cases))
