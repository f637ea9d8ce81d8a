"""Kernel families of the GPU model: how each published attention kernel maps the cascade onto SMs.

Each family turns an `AttentionCase` on a `GPU` into the `Plan`s (launch lists) the kernel runs; `predict` times
them with the family's parameters (`archsim.model.gpu`). Tile shapes, warps and loop orders are the kernels'
launch configurations for sm80 as we recall them from their sources (not re-read; named per family below); where
the GPU's shared memory is too small for the first choice the next configuration that fits is used, and for
FlashAttention-2 on a GPU that holds none of them (MI300X) a smaller tile of ours (`_fa2_fitting`).

Per-architecture capabilities: a family names the MMA instruction its kernels issue and the preset says what that
instruction reaches on each architecture (`GPU.sync_mma_fraction`). FlashAttention v1 and v2 issue warp-level
`mma.sync` everywhere (no wgmma, no TMA: cp.async loads and ldmatrix fragments per warp), which runs at sm80's
per-SM issue rate on sm90 and sm100 (half and about a quarter of their peaks); Triton's kernels and cuBLAS issue
the GPU's native instruction (wgmma on sm90, read from SMEM per warpgroup). The calibrated parameters are per family,
not per GPU: the same efficiencies apply on every GPU.

Families and the kernels (names as in `attention_measured.csv`) they cover:
- `fa2`: FlashAttention-2 (Dao 2023; `csrc/flash_attn/src/flash_{fwd,bwd}_launch_template.h`). Forward: a CTA per
  (query block, batch, head) walks the key blocks (causal: up to the diagonal, the diagonal tiles masked).
  Backward: a preprocessing kernel (D = rowsum(dO∘O), zero the fp32 dQ accumulator), a CTA per (key block, batch,
  head) walking the query blocks with dQ added atomically in L2, and a kernel converting dQ to 16 bits.
  Decode: "Flash-Decoding" (FA2 >= 2.2 split-KV: the query heads of a GQA group packed as the rows of one tile,
  the KV cache cut into splits by FA2's heuristic, then a combine kernel) and "FlashAttention v2.0.9" (the
  forward kernel with one live query row in a 128-row tile, a CTA per (batch, query head), no split; KV heads
  re-read per query head unless the whole grid fits in one wave, when siblings hit in L2). "Flash-Decoding
  (16-row tiles)" is the split-KV decode with a GQA group packed into one warp's 16 MMA rows (m16n8k16) instead
  of FA2's 64: our stand-in for the small-tile tensor-core decode kernels (FlashInfer's, from memory, not
  re-read), which keep a group of <= 16 query heads from padding the tile 8x. No measurement of such a kernel is
  in the reference data: it runs with FA2's calibrated efficiencies. On a GPU whose tensor rate is capped (H20:
  148 TFLOPS against 4.0 TB/s) FA2's 64-row decode tile makes GQA decode compute-bound; the 16-row tile keeps it
  bandwidth-bound, as Lamina measures on H20 (pim.md §3.3: > 70 % of the bandwidth).
- `fa3`: FlashAttention-3 (Shah et al. 2024; `hopper/`, tile sizes from `tile_size.h` as we recall them, not
  re-read), the prefill forward only, on Hopper only (compute capability 9.0: wgmma and TMA). A CTA per (query block,
  batch, head): a consumer warpgroup per 64 query rows (128 x 128 tiles causal, 128 x 176 otherwise, at head_dim
  128) and a producer warpgroup issuing the TMA loads of K and V (2 stages); one warpgroup's softmax runs while the
  other's MMAs do (ping-pong), so a tile step takes the longer of the two (`TiledLaunch.softmax_overlap`) rather
  than their sum. No measurement of FA3 is in the reference data: its main-loop efficiency and CTA overhead are the
  Triton tutorial's fitted values (the other wgmma kernel of the library; `Param.shared_from`). Its backward, its
  split-KV decode and its fp8 path are not modelled.
- `fa1`: FlashAttention v1 (Dao et al. 2022; `csrc/flash_attn/src/fmha_*`). Forward: a CTA per (batch, head,
  query split) walks key blocks of 256 (d <= 64) or 128 keys in the outer loop and 16-row query steps inside,
  its 4 warps splitting the keys (split-K: partial outputs reduced through SMEM) and the fp32 output
  accumulator read and written in DRAM once per key block. Backward: a CTA per (batch, head, key block)
  walking 16-row query steps, dQ accumulated in fp32 through L2.
- `fa_triton`: the FlashAttention Triton kernel of the FA2 benchmark (Tillet's tutorial lineage,
  `flash_attn/flash_attn_triton.py`): 128x128 tiles, masks applied on every tile when causal, backward
  autotuned between one CTA per (batch, head) walking all key blocks and one per key block with atomic dQ.
- `triton_tutorial`: Triton's `06-fused-attention.py` as published on triton-lang.org: forward 128x64 tiles
  (off-diagonal blocks unmasked, then the diagonal band; where such a CTA does not fit, as at head_dim 256 on A100
  or Ada, the first configuration of its autotune space that does, `tutorial_fwd_configs`), backward one program
  per 128 keys computing dK/dV over 32-row query steps (16 on the diagonal) and then dQ for 128 queries over
  32-key steps (16 on the diagonal), one configuration (its CTA fits no A100, Ada or MI300X SM at head_dim 256).
  Its benchmark casts to fp8 for the forward only: fp8 backward rows run in fp16. Triton emits the GPU's native
  MMA (wgmma on Hopper).
- `archsim`: archsim's own Triton kernels (`kernels/`, timed by `archsim measure`), from their launchers: the
  FlashAttention-2 forward (128 x 64 tiles, 3 stages) and backward (row-dot kernel, fp32 dQ zeroed, a CTA per 64
  keys with atomic dQ, the cast), the naive 3-pass kernels (S written, a row softmax in place, O = A V) and the
  split-KV GQA decode (the group packed in a tile of max(16, next power of two) rows, about two programs per SM,
  the merge always run). Every tile is masked (the kernels bound-check each key tile). Until measurements of them
  exist its parameters are the Triton tutorial's fitted efficiencies (native MMA) and eager PyTorch's DRAM
  efficiency (`Param.shared_from`).
Only the Triton tutorial takes fp8 inputs (`FP8_FAMILIES`): FlashAttention v1/v2, its Triton kernel, eager PyTorch
and archsim's kernels have no fp8 path, so an fp8 case of theirs has no plan (the reason says so).
- `pytorch`: eager PyTorch. "PyTorch standard attention" is the FA2 benchmark's `attention_pytorch`: baddbmm
  into an N x N score matrix, (causal: add a -10000 upper-triangular mask built each call), softmax, a bmm with
  V — each a pass through DRAM — and autograd's matching backward; GEMMs by cuBLAS. "PyTorch eager attention"
  decode is the Hugging Face eager path: repeat_kv copies of K and V under GQA, matmul, scale, softmax in fp32,
  cast, matmul (at one KV head repeat_kv is a stride-0 view that the matmuls copy themselves, priced as the same
  copies: on an H200 they ran slower still, reports/measured/eager-ops-NVIDIA-H200.txt); its two matmuls have one
  query row, batched GEMVs that stream K and V at the GPU's copy-derived rate (`dram_efficiency`; 4.1-4.5 TB/s on an
  H200 from batch 8), not at the elementwise passes' `hbm_efficiency` (their FLOPs, on CUDA cores, not counted); its
  prompt forward (what the serving GPU device times for a prefill) runs the standard attention's passes. Both hold
  what they materialise (`Plan.held`): at least two score matrices in a forward and three in a
  backward (`PYTORCH_SCORE_MATRICES`), the causal mask, and at decode the expanded K and V; with the call's
  operands they must fit the GPU's DRAM (`archsim.model.gpu.plan_memory_problem`), as must archsim's naive kernel's
  score matrix.
Varlen prefill (`predict_varlen`): FlashAttention-2's forward also runs prompts of different lengths as one call
(flash_attn_varlen_func, cu_seqlens: one launch, every prompt's CTAs in one grid, each prompt's causal tiles its
own; `_fa2_varlen_fwd`); the other kernels run one call per prompt (`VARLEN_VARIANTS`).
Directions: each kernel is modelled for the directions of `VARIANT_DIRECTIONS` and refused in the others, with a
reason (`direction_problem`): the decode kernels (Flash-Decoding, its 16-row tiles, v2.0.9, archsim's decode) decode
only, "PyTorch standard attention" prefill only, "PyTorch eager attention" decode and a prompt's forward (no
backward), FlashAttention-3 and archsim's naive kernel the forward only; "FlashAttention-2" runs all four, its decode
being the split-KV path.
Head dims, per family as the kernel does it (from memory of the sources, not re-read): FlashAttention-2 and its
decode variants pad any head_dim up to 256 to the next head dim they compile (`FA2_HEAD_DIMS`, multiples of 32),
FlashAttention-3 to 64, 128 or 256 (`FA3_FWD`), the FlashAttention Triton kernel up to 128 to
max(next power of two, 16) (`FAT_HEAD_DIMS`). FlashAttention v1 refuses a head_dim that is not a multiple of 8 (its
C++ check; no padding) and runs the others at 32, 64 or 128 (`FA1_HEAD_DIMS`); the Triton tutorial and archsim's
kernels refuse any head_dim but their powers of two. A kernel computes at the width it runs (the launches'
`padded_head_dim`): MMAs, softmax, shared memory, registers. It reads and writes the case's head_dim: the tensors
in DRAM are that wide, and the kernel masks the padded columns of its loads and stores (predicated loads: FA2's
`Is_even_K` false, the Triton kernel's `offs_d < headdim`), so DRAM and L2 traffic, and the roofline's bytes, are
the case's (`_masked_tile`). One exception: FA2's backward allocates its fp32 dQ accumulator at the compiled width
(flash_api.cpp's head_size_rounded) and adds whole tiles into it. A wrapper's pad to a multiple of 8 (FA2's, FA3's;
at most 7 columns, a copy before the call) is not counted. The FLOPs a result reports stay the case's (the
benchmark convention at the true head_dim).
What is not scaled per GPU: the L2 capacity (`GPU.l2_bytes`) is read only by eager PyTorch's causal-mask term (the
mask read once if it fits in L2, else once per batch and head). The fused forwards of `fwd_launch` (FA2, FA3, the
Triton kernels, archsim's) move Q, K, V and O (and the log-sum-exp) through DRAM once: a head's K and V, re-read
by each of its query blocks, are taken to hit in L2 (the head's CTAs run together in a wave), whatever the L2's
size. archsim's `atomic_adds_per_cycle` (the backward's dQ atomics) is a whole-chip rate fitted on the H200
(calibration v2) and applied as it is to every GPU: only the clock it is multiplied by differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TypeVar

import numpy as np

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.model.gpu import (
    DIRECTIONS,
    PRECISION_BYTES,
    AttentionCase,
    GemmLaunch,
    GpuResult,
    Plan,
    Segment,
    StreamLaunch,
    Tile,
    TiledLaunch,
    ctas_per_sm,
    predict_plans,
)
from archsim.model.gpu_tiles import bwd_tile, fwd_tile, lightning_tile, split_bwd_tile

LSE_BYTES = 4  # fp32 log-sum-exp per query row
ACC_BYTES = 4  # fp32 accumulators (dQ, split partial outputs)


@dataclass(frozen=True)
class Param:
    prior: float
    low: float
    high: float
    fitted: bool
    meaning: str
    shared_from: str = ""  # a family whose fitted value this parameter takes


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    params: Mapping[str, Param]
    plans: Callable[[str, AttentionCase, GPU], tuple[Plan, ...] | str]


def _autograd_param(fitted: bool) -> Param:
    meaning = ("seconds from a timed loss.backward() call to its first kernel (autograd engine, Python wrapper, "
               "allocations), the GPU idle unless the forward of the same call still runs; a property of the "
               "PyTorch host, not of the kernel")
    if fitted:
        return Param(1e-4, 0.0, 1e-3, True, meaning)
    return Param(1e-4, 0.0, 1e-3, False, meaning + ": taken from fa2's fit (the family with backward-only rows at "
                                                   "several lengths)", shared_from="fa2")


def _launch_param() -> Param:
    return Param(4e-6, 1e-6, 5e-5, False, "seconds from one kernel's end to the next one's first CTA (launch "
                                          "latency and the inter-kernel gap of back-to-back timing); not "
                                          "identifiable from ms-long prefill runs, so a prior")


def _overhead_param() -> Param:
    return Param(2000.0, 0.0, 1e5, True, "cycles per CTA outside the main loop, not hidden by other CTAs: "
                                         "prologue loads, pipeline fill, epilogue normalise and store")


def _efficiency(meaning: str, prior: float) -> Param:
    return Param(prior, 0.05, 1.0, True, meaning)


# ------------------------------------------------------------------------------------------------ shapes
def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _fwd_counts(seqlen: int, block_m: int, block_n: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(unmasked, masked) key tiles of each query block of one head, causal skipping above the diagonal."""
    m_blocks = _ceil(seqlen, block_m)
    m = np.arange(m_blocks)
    if causal:
        visible = np.minimum(seqlen, (m + 1) * block_m)
        tiles = -(-visible // block_n)
        masked = tiles - (m * block_m) // block_n
    else:
        tiles = np.full(m_blocks, _ceil(seqlen, block_n))
        masked = np.full(m_blocks, int(seqlen % block_n != 0))
    return tiles - masked, masked


def _bwd_counts(seqlen: int, block_m: int, block_n: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(unmasked, masked) query tiles of each key block of one head (the backward's CTA order)."""
    n_blocks, m_blocks = _ceil(seqlen, block_n), _ceil(seqlen, block_m)
    n = np.arange(n_blocks)
    if causal:
        first = (n * block_n) // block_m
        tiles = m_blocks - first
        masked = np.minimum(tiles, -(-((n + 1) * block_n) // block_m) - first)
    else:
        tiles = np.full(n_blocks, m_blocks)
        masked = np.full(n_blocks, int(seqlen % block_m != 0))
    return tiles - masked, masked


def _repeat(counts: np.ndarray, times: int) -> np.ndarray:
    return np.tile(counts, times)


SMALLEST_BLOCK = 16  # rows or keys: one m16n8k16 MMA
Launches = TypeVar("Launches", TiledLaunch, tuple)


def _fa2_fitting(tiles: list[tuple[int, int, int]], build: Callable[[int, int, int], Launches], gpu: GPU, *,
                 owns_rows: bool) -> Launches:
    """FA2's launch (`build(block_m, block_n, warps)`, a launch or a tuple whose first is the tiled one) at the first
    of its `tiles` whose CTA fits `gpu`; on a GPU whose shared memory holds none of them (MI300X's 64 KB LDS against
    FA2's sm80 sizes) at the largest tile, rows x keys, that fits among those halving the last tile's sides down to
    `SMALLEST_BLOCK`, the warps cut with the area. Of two such tiles of one area, the one keeping more of the block
    the CTA owns: its query rows for a forward or decode CTA walking key blocks (`owns_rows`), its keys for a
    backward CTA walking query blocks, as FA2's split-KV kernel keeps its 64 rows at every head_dim and its backward
    goes from 64 x 64 to 64 x 32 where shared memory is short (launch templates from memory, not re-read). Rows
    first would make a one-row decode, which computes the whole tile, cheaper as head_dim grows (MI300X at head_dim
    192: 32 x 64 rather than 64 x 32, FA2 v2.0.9's decode 0.6 times the MMA work of head_dim 160 on 64 x 64;
    `tests/test_gpu_decode_tile_monotone.py`). That fallback is ours: FA2 ships no such configuration (it is built
    for sm80 and later), and which tiles the ports to other GPUs (ROCm's) pick is not in the reference. With no tile
    fitting, the first one, whose refusal names what it needs."""
    def fits(launch: Launches) -> bool:
        return ctas_per_sm(launch[0] if isinstance(launch, tuple) else launch, gpu) > 0

    for tile in tiles:
        if fits(launch := build(*tile)):
            return launch
    last_m, last_n, last_warps = tiles[-1]
    smaller = sorted(((m, n) for m in _halvings(last_m) for n in _halvings(last_n) if (m, n) != (last_m, last_n)),
                     key=lambda t: (t[0] * t[1], t[0] if owns_rows else t[1]), reverse=True)
    for m, n in smaller:
        if fits(launch := build(m, n, max(1, last_warps * m * n // (last_m * last_n)))):
            return launch
    return build(*tiles[0])


def _halvings(block: int) -> list[int]:
    return [block >> k for k in range(block.bit_length()) if block >> k >= SMALLEST_BLOCK]


def _warpgroup(mma: str, gpu: GPU) -> bool:
    """Native MMA on a GPU whose mma.sync is not its full-rate path is a warpgroup MMA (wgmma / tcgen05)."""
    return mma == "native" and gpu.sync_mma_fraction < 1


def _qkvo_bytes(case: AttentionCase) -> float:
    b, n, d = case.batch, case.seqlen, case.head_dim
    return (2 * case.heads + 2 * case.kv_heads) * b * n * d * case.element_bytes


def fwd_launch(name: str, case: AttentionCase, gpu: GPU, block_m: int, block_n: int, warps: int, mma: str,
                efficiency: str, q_in_smem: bool, mask_all: bool, stages: int,
                p_to_fp8: bool = False, counts: tuple[np.ndarray, np.ndarray] | None = None,
                producer_warps: int = 0, softmax_overlap: bool = False,
                padded_head_dim: int | None = None) -> TiledLaunch:
    """A FlashAttention-style forward launch: a CTA per (query block, batch, head) in that launch order. `counts`
    (unmasked, masked key tiles per query block of one head) replaces the dense or causal ones: a sparse kernel
    visiting a ragged set of key tiles (`archsim.model.gpu_sparse`). `warps` compute the tile; `producer_warps`
    only issue its loads (a warp-specialised kernel); `softmax_overlap`: see `TiledLaunch`. `padded_head_dim`: the
    compiled head dim the kernel runs the case's head_dim at (module docstring, "Head dims"): the tiles' MMAs,
    softmax, shared memory and registers at that width, what it reads and writes at the case's."""
    e, d = case.element_bytes, case.head_dim
    width = padded_head_dim or d
    group = _warpgroup(mma, gpu)
    convert = case.precision == "fp8" and not gpu.has_native("fp8")
    precision = "fp16" if convert else case.precision
    unmasked, masked = counts or _fwd_counts(case.seqlen, block_m, block_n, case.causal)
    if mask_all and case.causal:
        unmasked, masked = np.zeros_like(unmasked), unmasked + masked
    heads = case.batch * case.heads
    plain, edge = _masked_tiles(lambda dim, masked: fwd_tile(block_m, block_n, dim, warps, group, e, q_in_smem,
                                                             masked, convert, p_to_fp8), d, width)
    segments = (Segment(plain, _repeat(unmasked, heads)), Segment(edge, _repeat(masked, heads)))
    tiles = heads * float(unmasked.sum() + masked.sum())
    dram = _qkvo_bytes(case) + heads * case.seqlen * LSE_BYTES
    q_o = 2 * heads * case.seqlen * d * e
    return TiledLaunch(name, segments, 32 * (warps + producer_warps),
                       (q_in_smem * block_m + stages * 2 * block_n) * width * e,
                       block_m * width + 1.5 * block_m * block_n, mma, efficiency, precision, dram,
                       q_o + tiles * plain.load_bytes, max(1, stages - 1), io_bytes=2 * block_m * d * e,
                       softmax_overlap=softmax_overlap)


# ------------------------------------------------------------------------------------------------ FlashAttention-2
FA2_FWD = {64: [(128, 128, 4)], 128: [(128, 64, 4), (64, 64, 4)], 256: [(128, 64, 8), (64, 64, 4)]}
FA2_BWD = {64: [(128, 128, 8), (64, 128, 8)], 128: [(64, 128, 8), (64, 64, 8)], 256: [(64, 64, 8), (64, 32, 8)]}
# Q double-buffered and dO once (FA2's kSmemQdOSize, "No_double_buffer ? 2 : 3" blocks): with K, V, P and dS that is
# 144 KB at (64, 128) for head_dim 128 and (128, 128) for 64, and 176 KB at (64, 64) for 256, the shared-memory
# thresholds at which flash_bwd_launch_template.h picks those tiles (from memory, not re-read); below them (Ada's
# 99 KB) the smaller tile of the list
FA2_BWD_QDO_BLOCKS = 3
# The head dims FA2 compiles its kernels for (flash_api.cpp rounds head_size up to a multiple of 32 after its Python
# wrapper pads it to a multiple of 8; from memory, not re-read): any head_dim up to 256 runs as the next of them.
FA2_HEAD_DIMS = tuple(range(32, 257, 32))
FA2_SPLIT_BLOCK_M = 64
SMALL_TILE_BLOCK_M = 16  # "Flash-Decoding (16-row tiles)": one warp's m16n8k16 MMA rows
FA2_MAX_SPLITS = 128
FA2_SPLIT_CTAS_PER_SM = 2  # the heuristic's slots: flash_api.cpp passes 2 x the SM count ("128 threads per block")
SPLIT_MEMO_CTAS = 2**14  # split-KV grids remembered up to this many CTAs (128 KB of counts; 512 grids <= 64 MB)


def _backward_from(case: AttentionCase) -> int | None:
    """Index of the first backward launch of a prefill plan (the forward is one launch), None without one."""
    return {"fwd": None, "bwd": 0, "fwd+bwd": 1}[case.direction]


def _by_head_dim(table: Mapping[int, list], head_dim: int) -> list | None:
    for limit in sorted(table):
        if head_dim <= limit:
            return table[limit]
    return None


def compiled_head_dim(head_dim: int, compiled: tuple[int, ...]) -> int | None:
    """The smallest of a kernel's `compiled` head dims that holds `head_dim` (the one it pads to and runs), None
    beyond the largest."""
    return next((size for size in sorted(compiled) if head_dim <= size), None)


def _masked_tile(tile_at: Callable[[int], Tile], head_dim: int, padded_head_dim: int) -> Tile:
    """The step a kernel runs at `padded_head_dim` (`tile_at(width)`: its MMAs, softmax and shared memory), loading
    only the case's `head_dim` columns (`tile_at(head_dim)`'s loads): the padded columns are masked, never read."""
    tile = tile_at(padded_head_dim)
    return tile if padded_head_dim == head_dim else replace(tile, load_bytes=tile_at(head_dim).load_bytes)


def _masked_tiles(tile_at: Callable[[int, bool], Tile], head_dim: int,
                  padded_head_dim: int) -> tuple[Tile, Tile]:
    """A kernel's (plain, edge) steps, `tile_at(width, masked)` without and with the causal mask, each as
    `_masked_tile` runs it."""
    plain, edge = (_masked_tile(lambda dim, masked=masked: tile_at(dim, masked), head_dim, padded_head_dim)
                   for masked in (False, True))
    return plain, edge


def _fa2_fwd(case: AttentionCase, gpu: GPU, head_dim: int) -> TiledLaunch:
    """FA2's forward of `case` run at its compiled `head_dim` (`fwd_launch`'s `padded_head_dim`)."""
    return _fa2_fitting(_by_head_dim(FA2_FWD, head_dim),
                        lambda bm, bn, w: fwd_launch("fwd", case, gpu, bm, bn, w, "sync", "mma_efficiency_fwd", True,
                                                     False, 1, padded_head_dim=head_dim), gpu, owns_rows=True)


def bwd_launch(case: AttentionCase, gpu: GPU, block_m: int, block_n: int, warps: int, mma: str,
               mask_all: bool, qdo_blocks: int, atomic_rate: str | None = None,
               padded_head_dim: int | None = None) -> TiledLaunch:
    """A FlashAttention-2-style backward main launch: a CTA per (key block, batch, head) walking the query blocks,
    dQ added atomically in L2 (Algorithm 2 of the FA2 paper); `mask_all`: the kernel masks every tile. Shared
    memory holds `qdo_blocks` query-row blocks of Q and dO (their buffers), the key block's K and V, and P and dS.
    With `atomic_rate` (a family parameter) the launch is also bound by its block_m x head_dim dQ atomic adds per
    tile at that many per clock for the whole chip. `padded_head_dim`: as for `fwd_launch`, the fp32 dQ accumulator
    (allocated at that width, FA2's head_size_rounded, and added to whole) included in what it computes."""
    e, d, bh = case.element_bytes, case.head_dim, case.batch * case.heads
    width = padded_head_dim or d
    bm, bn = block_m, block_n
    unmasked, masked = _bwd_counts(case.seqlen, bm, bn, case.causal)
    if mask_all:
        unmasked, masked = np.zeros_like(unmasked), unmasked + masked
    group = _warpgroup(mma, gpu)
    plain, edge = _masked_tiles(lambda dim, masked: bwd_tile(bm, bn, dim, warps, group, e, masked), d, width)
    tiles = bh * float(unmasked.sum() + masked.sum())
    smem = (qdo_blocks * bm * width + 2 * bn * width + 2 * bm * bn) * e
    dram = _qkvo_bytes(case) + 2 * case.kv_heads * case.batch * case.seqlen * d * e \
        + bh * case.seqlen * (2 * LSE_BYTES + ACC_BYTES * width)
    l2 = dram + tiles * (plain.load_bytes + 2 * bm * width * ACC_BYTES)  # + dQ atomics (read-modify-write)
    return TiledLaunch(
        "bwd", (Segment(plain, _repeat(unmasked, bh)), Segment(edge, _repeat(masked, bh))), 32 * warps, smem,
        2 * bn * width + 2 * bm * bn + bm * width, mma, "mma_efficiency_bwd", case.precision, dram, l2, 2,
        io_bytes=4 * bn * d * e, atomics=tiles * bm * width, atomic_rate=atomic_rate)


def _fa2_bwd(case: AttentionCase, gpu: GPU, head_dim: int) -> tuple:
    """FA2's backward of `case` run at its compiled `head_dim`: the preprocessing kernel reads dO and O and zeroes
    the fp32 dQ accumulator (at `head_dim`, `bwd_launch`), the last kernel converts that accumulator to dQ."""
    e, d = case.element_bytes, case.head_dim
    rows = case.batch * case.heads * case.seqlen
    pre = StreamLaunch("bwd preprocess (D = rowsum(dO*O), zero dQ)",
                       rows * (2 * d * e + LSE_BYTES + ACC_BYTES * head_dim))
    post = StreamLaunch("bwd convert dQ", rows * (head_dim * ACC_BYTES + d * e))
    main = _fa2_fitting(_by_head_dim(FA2_BWD, head_dim), lambda bm, bn, warps: bwd_launch(
        case, gpu, bm, bn, warps, "sync", False, FA2_BWD_QDO_BLOCKS, padded_head_dim=head_dim), gpu, owns_rows=False)
    return pre, main, post


@lru_cache(maxsize=4096)
def _split_heuristic(tiles_of_grid: int, slots: int, key_blocks: int) -> int:
    """FA2's num_splits heuristic (`num_splits_heuristic` in csrc/flash_attn/flash_api.cpp, called with 2 x the
    SM count as `slots` whatever the occupancy; from memory): no split when the grid already fills 80 % of the
    slots; else the fewest splits whose wave efficiency (waves / ceil(waves)) is within 85 % of the best, skipping
    counts that give the same blocks per split as one fewer. Pure; memoised (a serving run asks for the same
    grid at every context of a key block)."""
    if tiles_of_grid >= 0.8 * slots:
        return 1
    efficiency = {}
    for splits in range(1, min(FA2_MAX_SPLITS, slots, key_blocks) + 1):
        if splits > 1 and _ceil(key_blocks, splits) == _ceil(key_blocks, splits - 1):
            continue
        waves = tiles_of_grid * splits / slots
        efficiency[splits] = waves / math.ceil(waves)
    best = max(efficiency.values())
    return min(s for s, eff in efficiency.items() if eff >= 0.85 * best)


def _split_counts(grid_heads: int, splits: int, key_blocks: int) -> np.ndarray:
    """Key tiles of each CTA of a split-KV decode grid, a CTA per (head, split) in that launch order: the key
    blocks cut into `splits` runs of ceil(key_blocks / splits), the last one shorter or empty. Read-only; a grid
    of at most `SPLIT_MEMO_CTAS` CTAs is remembered."""
    if grid_heads * splits <= SPLIT_MEMO_CTAS:
        return _split_counts_memo(grid_heads, splits, key_blocks)
    return _split_counts_of(grid_heads, splits, key_blocks)


def _split_counts_of(grid_heads: int, splits: int, key_blocks: int) -> np.ndarray:
    per_split = _ceil(key_blocks, splits)
    counts = _repeat(np.clip(key_blocks - per_split * np.arange(splits), 0, per_split), grid_heads)
    counts.flags.writeable = False
    return counts


_split_counts_memo = lru_cache(maxsize=512)(_split_counts_of)


def split_decode_launches(case: AttentionCase, gpu: GPU, block_m: int, block_n: int, warps: int, stages: int,
                          mma: str, splits_of: Callable[[int, int], int], mask_all: bool,
                          always_combine: bool, padded_head_dim: int | None = None) -> tuple:
    """A split-KV decode: a CTA per (row block of a GQA group packed as tile rows, split, batch x KV head), each
    walking its split's key blocks with an online softmax and writing a partial output and log-sum-exp, then a
    combine kernel. `splits_of(row blocks of the grid, key blocks)` is the kernel's split rule; without
    `always_combine` one split writes the output directly (no partials, no combine). `padded_head_dim`: as for
    `fwd_launch` (the partial outputs, written and read as O is, at the case's head_dim)."""
    e, d = case.element_bytes, case.head_dim
    width = padded_head_dim or d
    packed = case.group > 1  # query heads of a GQA group become the rows of one tile
    grid_heads = case.batch * (case.kv_heads if packed else case.heads)
    row_blocks = _ceil(case.group, block_m) if packed else 1  # a group taller than the tile takes several
    key_blocks = _ceil(case.seqlen, block_n)
    tile = _masked_tile(lambda dim: fwd_tile(block_m, block_n, dim, warps, _warpgroup(mma, gpu), e, True, mask_all,
                                             False, False), d, width)
    splits = splits_of(grid_heads * row_blocks, key_blocks)
    counts = _split_counts(grid_heads, splits, key_blocks)
    if row_blocks > 1:  # the grid is (row block, split, head), the row blocks launched first
        counts = np.repeat(counts, row_blocks)
    combine = always_combine or splits > 1
    kv = 2 * case.batch * case.kv_heads * case.seqlen * d * e
    q_o = 2 * case.batch * case.heads * d * e
    partials = splits * case.batch * case.heads * (d + 1) * ACC_BYTES if combine else 0
    # A KV block is read from DRAM once; each further row block of its group reads it again from L2.
    main = TiledLaunch(f"decode split-KV ({splits} splits)", (Segment(tile, counts),),
                       32 * warps, (block_m + stages * 2 * block_n) * width * e,
                       block_m * width + 1.5 * block_m * block_n,
                       mma, "mma_efficiency_fwd", case.precision, kv + q_o + partials,
                       kv * row_blocks + q_o + partials, max(1, stages - 1), io_bytes=block_m * d * (e + ACC_BYTES))
    if not combine:
        return (main,)
    return main, StreamLaunch("decode combine splits", partials + q_o / 2)


def _fa2_split_decode(case: AttentionCase, gpu: GPU, head_dim: int, block_m: int = FA2_SPLIT_BLOCK_M,
                      warps: int = 4) -> tuple:
    """FA2's split-KV decode of `case` run at its compiled `head_dim`."""
    block_n = 256 if head_dim <= 64 else 128 if head_dim <= 128 else 64
    slots = FA2_SPLIT_CTAS_PER_SM * gpu.sm_count
    return _fa2_fitting([(block_m, block_n, warps)], lambda bm, bn, w: split_decode_launches(
        case, gpu, bm, bn, w, 1, "sync", lambda tiles, key_blocks: _split_heuristic(tiles, slots, key_blocks), False,
        False, padded_head_dim=head_dim), gpu, owns_rows=True)


def _fa2_v209_decode(case: AttentionCase, gpu: GPU, head_dim: int) -> tuple:
    """FA2 v2.0.9's decode of `case` run at its compiled `head_dim`: its forward kernel's CTA (tile, shared memory,
    registers, taken from one head's forward over the cache) per batch and query head, walking every key tile."""
    launch = _fa2_fwd(AttentionCase("fwd", 1, 1, 1, case.head_dim, case.seqlen, False, case.precision), gpu, head_dim)
    key_tiles = launch.segments[0].counts[0] + launch.segments[1].counts[0]
    ctas = case.batch * case.heads
    slots = gpu.sm_count * ctas_per_sm(launch, gpu)
    kv = 2 * case.batch * case.kv_heads * case.seqlen * case.head_dim * case.element_bytes
    dram = kv * (1 if ctas <= slots else case.group) + 2 * ctas * case.head_dim * case.element_bytes
    tile = launch.segments[0].tile
    return (TiledLaunch("decode (no split)", (Segment(tile, np.full(ctas, key_tiles)),), launch.threads,
                        launch.smem_bytes, launch.register_words, "sync", "mma_efficiency_fwd", launch.precision,
                        dram, kv * case.group, 1, launch.io_bytes),)


def _fa2_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """FA2 (prefill, its decode variants) runs a head_dim padded to its compiled sizes (`FA2_HEAD_DIMS`)."""
    head_dim = compiled_head_dim(case.head_dim, FA2_HEAD_DIMS)
    if head_dim is None:
        return f"head_dim {case.head_dim} > {max(FA2_HEAD_DIMS)} is not supported by FlashAttention-2"
    if case.direction == "decode":
        launches = (_fa2_v209_decode(case, gpu, head_dim) if variant == "v2.0.9"
                    else _fa2_split_decode(case, gpu, head_dim, SMALL_TILE_BLOCK_M, 1)
                    if variant == "flash-decoding-16" else _fa2_split_decode(case, gpu, head_dim))
        return (Plan(variant, launches),)
    launches = {"fwd": lambda: (_fa2_fwd(case, gpu, head_dim),), "bwd": lambda: _fa2_bwd(case, gpu, head_dim),
                "fwd+bwd": lambda: (_fa2_fwd(case, gpu, head_dim), *_fa2_bwd(case, gpu, head_dim))}[case.direction]()
    return (Plan("fa2", launches, backward_from=_backward_from(case)),)


def _fa2_varlen_fwd(case: AttentionCase, seqlens: Sequence[int], gpu: GPU, head_dim: int) -> TiledLaunch:
    """`_fa2_fwd` over the prompts of `seqlens` packed as `case`'s one sequence (flash_attn_varlen_func, batch 1):
    one launch whose grid is every prompt's CTAs, a CTA per (query block, prompt, head), each prompt's causal tiles
    up to its own diagonal; its bytes and tiles are the prompts' summed. FA2's grid is (m_block, batch, head), the
    blocks beyond a prompt's end exiting at once, so the CTAs are these, in launch order query blocks fastest, then
    the prompts (cu_seqlens order), then the heads (x, then y, then z: the usual dispatch order, which CUDA does not
    specify). One tile configuration for the call, picked as `_fa2_fwd` picks it, by head_dim and the GPU's shared
    memory and not by length, so each prompt runs the tile its own call would (were it by length, FA2 would run
    the longest prompt's: one configuration per call). Run at the compiled `head_dim`, as `_fa2_fwd`."""
    def build(block_m: int, block_n: int, warps: int) -> TiledLaunch:
        prompts = [_fwd_counts(n, block_m, block_n, case.causal) for n in seqlens]
        return fwd_launch(f"fwd varlen ({len(seqlens)} prompts)", case, gpu, block_m, block_n, warps, "sync",
                          "mma_efficiency_fwd", True, False, 1,
                          counts=(np.concatenate([c[0] for c in prompts]), np.concatenate([c[1] for c in prompts])),
                          padded_head_dim=head_dim)

    return _fa2_fitting(_by_head_dim(FA2_FWD, head_dim), build, gpu, owns_rows=True)


# ------------------------------------------------------------------------------------------------ FlashAttention-3
# head_dim -> [(BLOCK_M, BLOCK_N causal, BLOCK_N otherwise)]; a consumer warpgroup per 64 query rows. The head dims
# are the ones FA3 compiles (its first release's, from memory): a smaller head_dim is padded to the next of them.
FA3_FWD = {64: [(192, 128, 128)], 128: [(128, 128, 176)], 256: [(128, 80, 80)]}
FA3_STAGES = 2
FA3_PRODUCER_WARPS = 4  # one warpgroup issuing the TMA loads
FA3_COMPUTE_CAPABILITY = "9.0"  # wgmma and TMA: Hopper only


def _fa3_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """FA3 pads head_dim (to a multiple of 8 in its wrapper) and runs the next head dim of `FA3_FWD`."""
    if gpu.compute_capability != FA3_COMPUTE_CAPABILITY:
        has = (f"has compute capability {gpu.compute_capability}" if gpu.compute_capability
               else "states no NVIDIA compute capability")
        return f"FlashAttention-3 runs on Hopper (compute capability {FA3_COMPUTE_CAPABILITY}) only; {gpu.name} {has}"
    head_dim = compiled_head_dim(case.head_dim, tuple(FA3_FWD))
    if head_dim is None:
        return f"FlashAttention-3 takes head_dim <= {max(FA3_FWD)} (got {case.head_dim})"
    block_m, causal_n, full_n = FA3_FWD[head_dim][0]
    launch = fwd_launch("fwd", case, gpu, block_m, causal_n if case.causal else full_n, 4 * (block_m // 64),
                        "native", "mma_efficiency_fwd", True, False, FA3_STAGES,
                        producer_warps=FA3_PRODUCER_WARPS, softmax_overlap=True, padded_head_dim=head_dim)
    return (Plan(variant, (launch,)),)


# ------------------------------------------------------------------------------------------------ FlashAttention v1
FA1_STEP_ROWS = 16
FA1_WARPS = 4
FA1_HEAD_DIMS = (32, 64, 128)  # the fmha kernels' compiled head dims (fmha_fwd_hdim{32,64,128}; from memory)
FA1_HEAD_DIM_MULTIPLE = 8  # fmha_api.cpp: head_size % 8 == 0


def _fa1_fwd(case: AttentionCase, gpu: GPU, head_dim: int) -> TiledLaunch:
    """FA1's forward of `case` run at its compiled `head_dim` (what it computes and stages on chip; what it reads and
    writes, the fp32 output accumulator included, at the case's head_dim)."""
    e, d, n, bh = case.element_bytes, case.head_dim, case.seqlen, case.batch * case.heads
    key_block = 256 if head_dim <= 64 else 128
    key_blocks = _ceil(n, key_block)
    probe_smem = (FA1_STEP_ROWS + 2 * key_block) * head_dim * e + FA1_WARPS * FA1_STEP_ROWS * head_dim * ACC_BYTES
    slots = gpu.sm_count * max(1, min(gpu.smem_bytes_per_sm // probe_smem, gpu.max_threads_per_sm // 128))
    splits = 1 if bh >= slots else min(_ceil(slots, bh), _ceil(n, 128))
    rows_per_cta = _ceil(_ceil(n, splits), FA1_STEP_ROWS) * FA1_STEP_ROWS
    steps = rows_per_cta // FA1_STEP_ROWS
    unmasked, masked = [], []
    for s in range(splits):  # per CTA: 16-row steps at or below each key block, the diagonal ones masked
        first_row = s * rows_per_cta
        rows = np.arange(first_row, min(n, first_row + rows_per_cta), FA1_STEP_ROWS)
        if case.causal:
            blocks = -(-(rows + FA1_STEP_ROWS) // key_block)
            diagonal = np.ones_like(blocks)
            unmasked.append(int((blocks - diagonal).sum()))
            masked.append(int(diagonal.sum()))
        else:
            unmasked.append(len(rows) * key_blocks)
            masked.append(0)
    reduce_elements = 2 * FA1_WARPS * FA1_STEP_ROWS * head_dim * ACC_BYTES / e  # split-K partial outputs via SMEM
    plain, edge = _masked_tiles(lambda dim, masked: fwd_tile(FA1_STEP_ROWS, key_block, dim, FA1_WARPS, False, e, True,
                                                             masked, False, False), d, head_dim)
    plain, edge = (replace(t, alu_ops=t.alu_ops + FA1_STEP_ROWS * head_dim * FA1_WARPS,
                           smem_bytes=t.smem_bytes + reduce_elements * e, load_bytes=t.load_bytes / steps)
                   for t in (plain, edge))
    o_round_trips = bh * (key_blocks - 1) * n * d * 2 * ACC_BYTES  # fp32 O read and written per key block
    dram = _qkvo_bytes(case) + o_round_trips + bh * key_blocks * n * d * e  # Q re-read per key block
    return TiledLaunch("fwd", (Segment(plain, np.tile(unmasked, bh)), Segment(edge, np.tile(masked, bh))),
                       32 * FA1_WARPS, probe_smem, FA1_STEP_ROWS * head_dim + 1.5 * FA1_STEP_ROWS * key_block, "sync",
                       "mma_efficiency", case.precision, dram, dram + bh * splits * key_blocks * 2 * key_block * d * e,
                       io_bytes=2 * rows_per_cta * d * e)


def _fa1_bwd(case: AttentionCase, head_dim: int) -> tuple:
    """FA1's backward of `case` run at its compiled `head_dim`, as `_fa1_fwd` (its fp32 dQ at the case's head_dim)."""
    e, d, bh = case.element_bytes, case.head_dim, case.batch * case.heads
    key_block = 128
    unmasked, masked = _bwd_counts(case.seqlen, FA1_STEP_ROWS, key_block, case.causal)
    plain, edge = _masked_tiles(lambda dim, masked: bwd_tile(FA1_STEP_ROWS, key_block, dim, 8, False, e, masked), d,
                                head_dim)
    tiles = bh * float(unmasked.sum() + masked.sum())
    dram = _qkvo_bytes(case) + 2 * bh * case.seqlen * d * e + bh * case.seqlen * (2 * LSE_BYTES + ACC_BYTES * d)
    l2 = dram + tiles * (plain.load_bytes + 2 * FA1_STEP_ROWS * d * ACC_BYTES)
    main = TiledLaunch("bwd", (Segment(plain, _repeat(unmasked, bh)), Segment(edge, _repeat(masked, bh))), 256,
                       (4 * FA1_STEP_ROWS * head_dim + 2 * key_block * head_dim + 2 * FA1_STEP_ROWS * key_block) * e,
                       2 * key_block * head_dim + 2 * FA1_STEP_ROWS * key_block, "sync", "mma_efficiency",
                       case.precision, dram, l2, 2, io_bytes=4 * key_block * d * e)
    rows = bh * case.seqlen
    return (StreamLaunch("bwd preprocess", rows * (2 * d * e + LSE_BYTES + ACC_BYTES * d)), main,
            StreamLaunch("bwd convert dQ", rows * d * (ACC_BYTES + e)))


def _fa1_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """FA1 refuses a head_dim that is not a multiple of 8 (its C++ check; its wrapper does not pad) and runs the
    others at the next head dim it compiles (`FA1_HEAD_DIMS`)."""
    head_dim = compiled_head_dim(case.head_dim, FA1_HEAD_DIMS)
    if head_dim is None or case.head_dim % FA1_HEAD_DIM_MULTIPLE:
        return (f"FlashAttention v1 takes a head_dim that is a multiple of {FA1_HEAD_DIM_MULTIPLE} up to "
                f"{max(FA1_HEAD_DIMS)} (got {case.head_dim})")
    launches = {"fwd": lambda: (_fa1_fwd(case, gpu, head_dim),), "bwd": lambda: _fa1_bwd(case, head_dim),
                "fwd+bwd": lambda: (_fa1_fwd(case, gpu, head_dim), *_fa1_bwd(case, head_dim))}[case.direction]()
    return (Plan("fa1", launches, backward_from=_backward_from(case)),)


# ------------------------------------------------------------------------------------------------ FlashAttention Triton
FAT_BLOCK = 128
FAT_HEAD_DIMS = (16, 32, 64, 128)  # BLOCK_HEADDIM = max(triton.next_power_of_2(d), 16), d <= 128


def _fat_bwd(case: AttentionCase, gpu: GPU, sequence_parallel: bool, head_dim: int) -> tuple:
    """The kernel's backward of `case` run at its BLOCK_HEADDIM `head_dim` (what it computes and stages on chip;
    what it reads and writes, its fp32 dQ included, at the case's head_dim)."""
    e, d, bh, n = case.element_bytes, case.head_dim, case.batch * case.heads, case.seqlen
    warps = 8
    group = _warpgroup("native", gpu)
    unmasked, masked = _bwd_counts(n, FAT_BLOCK, FAT_BLOCK, case.causal)
    if case.causal:  # the causal mask is applied on every tile
        unmasked, masked = np.zeros_like(unmasked), unmasked + masked
    plain, edge = _masked_tiles(lambda dim, masked: bwd_tile(FAT_BLOCK, FAT_BLOCK, dim, warps, group, e, masked), d,
                                head_dim)
    if sequence_parallel:
        segments = (Segment(plain, _repeat(unmasked, bh)), Segment(edge, _repeat(masked, bh)))
    else:  # one CTA per (batch, head) walks every key block
        segments = (Segment(plain, np.full(bh, unmasked.sum())), Segment(edge, np.full(bh, masked.sum())))
    tiles = bh * float(unmasked.sum() + masked.sum())
    rows = bh * n
    dram = _qkvo_bytes(case) + 2 * rows * d * e + rows * (2 * LSE_BYTES + ACC_BYTES * d)
    l2 = dram + tiles * (plain.load_bytes + 2 * FAT_BLOCK * d * ACC_BYTES)
    main = TiledLaunch("bwd (sequence-parallel)" if sequence_parallel else "bwd (one CTA per head)", segments,
                       32 * warps, (4 * FAT_BLOCK * head_dim + FAT_BLOCK * FAT_BLOCK) * e,
                       2 * FAT_BLOCK * head_dim + 2 * FAT_BLOCK * FAT_BLOCK, "native", "mma_efficiency",
                       case.precision, dram, l2, 1, io_bytes=4 * FAT_BLOCK * d * e)
    return (StreamLaunch("bwd preprocess (do*o, zero dq)", rows * (2 * d * e + LSE_BYTES + ACC_BYTES * d)), main,
            StreamLaunch("bwd copy dq", rows * d * (ACC_BYTES + e)))


def _fat_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """The kernel takes head_dim <= 128 and runs BLOCK_HEADDIM = max(next power of two, 16) columns (`FAT_HEAD_DIMS`),
    masking the rest."""
    head_dim = compiled_head_dim(case.head_dim, FAT_HEAD_DIMS)
    if head_dim is None:
        return f"head_dim {case.head_dim} > {max(FAT_HEAD_DIMS)} is not supported by the FlashAttention Triton kernel"
    warps = 4 if head_dim <= 64 else 8
    fwd = fwd_launch("fwd", case, gpu, FAT_BLOCK, FAT_BLOCK, warps, "native", "mma_efficiency", False, True, 1,
                     padded_head_dim=head_dim)
    if case.direction == "fwd":
        return (Plan("fa-triton", (fwd,)),)
    prefix = (fwd,) if case.direction == "fwd+bwd" else ()
    return tuple(Plan(f"fa-triton, sequence-parallel bwd {sp}", (*prefix, *_fat_bwd(case, gpu, sp, head_dim)),
                      backward_from=_backward_from(case)) for sp in (False, True))


# ------------------------------------------------------------------------------------------------ Triton tutorial
TUT_FWD = (128, 64, 4, 3)  # BLOCK_M, BLOCK_N, warps, stages (the autotuner's usual pick on A100 at d=64)
# The forward's autotune space (the tutorial's `configs`: BLOCK_M x BLOCK_N x num_stages x num_warps, in that loop
# order; quoted from memory: neither the repo nor the reference ships the tutorial), num_stages 1 on HIP
TUT_FWD_BLOCK_M = (64, 128)
TUT_FWD_BLOCK_N = (32, 64)
TUT_FWD_STAGES = (3, 4, 7)
TUT_FWD_STAGES_HIP = (1,)
TUT_FWD_WARPS = (4, 8)
TUT_BWD = (32, 128, 128, 32, 4, 5)  # BLOCK_M1, BLOCK_N1, BLOCK_M2, BLOCK_N2, warps, stages
TUT_SLICE = 2  # BLK_SLICE_FACTOR: diagonal steps are half as wide


def _tutorial_bwd(case: AttentionCase, gpu: GPU) -> tuple:
    m1, n1, m2, n2, warps, stages = TUT_BWD
    precision = "fp16" if case.precision == "fp8" else case.precision  # the benchmark casts fp8 for fwd only
    e = PRECISION_BYTES[precision]
    d, bh, n = case.head_dim, case.batch * case.heads, case.seqlen
    group = _warpgroup("native", gpu)
    programs = _ceil(n, n1)
    start = np.arange(programs) * n1
    if case.causal:
        dkdv_masked = np.full(programs, n1 // (m1 // TUT_SLICE))
        dkdv = np.maximum(0, n - start - n1) // m1
        dq_masked = np.full(programs, m2 // (n2 // TUT_SLICE))
        dq = start // n2
    else:
        dkdv_masked, dq_masked = np.zeros(programs, int), np.zeros(programs, int)
        dkdv, dq = np.full(programs, _ceil(n, m1)), np.full(programs, _ceil(n, n2))
    tiles = (split_bwd_tile(m1 // TUT_SLICE, n1, d, warps, group, e, True, "dkdv"),
             split_bwd_tile(m1, n1, d, warps, group, e, False, "dkdv"),
             split_bwd_tile(m2, n2 // TUT_SLICE, d, warps, group, e, True, "dq"),
             split_bwd_tile(m2, n2, d, warps, group, e, False, "dq"))
    counts = (dkdv_masked, dkdv, dq_masked, dq)
    segments = tuple(Segment(t, _repeat(c, bh)) for t, c in zip(tiles, counts, strict=True))
    rows = bh * n
    dram = (4 * case.heads + 4 * case.kv_heads) * case.batch * n * d * e + rows * 2 * LSE_BYTES
    l2 = dram + sum(float(c.sum()) * bh * t.load_bytes for t, c in zip(tiles, counts, strict=True))
    main = TiledLaunch("bwd (dK/dV then dQ)", segments, 32 * warps, stages * 2 * m1 * d * e + 2 * n2 * d * e,
                       2 * n1 * d + n1 * d + 2 * m2 * d, "native", "mma_efficiency_bwd", precision, dram, l2,
                       stages - 1, io_bytes=(4 * n1 + 3 * m2) * d * e)
    return StreamLaunch("bwd preprocess (delta = rowsum(o*do))", rows * (2 * d * e + LSE_BYTES)), main


def tutorial_fwd_configs(gpu: GPU) -> tuple[tuple[int, int, int, int], ...]:
    """The forward's (BLOCK_M, BLOCK_N, warps, stages) in the order `_tutorial_fwd` tries them: `TUT_FWD`, then the
    autotune space in the tutorial's loop order, its HIP stages on a GPU stating no NVIDIA compute capability."""
    stages = TUT_FWD_STAGES if gpu.compute_capability else TUT_FWD_STAGES_HIP
    return (TUT_FWD, *((bm, bn, warps, stage) for bm in TUT_FWD_BLOCK_M for bn in TUT_FWD_BLOCK_N
                       for stage in stages for warps in TUT_FWD_WARPS))


def _tutorial_fwd(case: AttentionCase, gpu: GPU) -> TiledLaunch:
    """The tutorial's forward at `TUT_FWD` where its CTA fits `gpu`, else at the first configuration of its autotune
    space that fits (`tutorial_fwd_configs`; head_dim 256 on A100 or Ada, 128 on MI300X): the autotuner times only
    configurations that compile, and which one it keeps is not modelled (ours: the first in the list, as
    `_fa2_fitting` takes FA2's). With none fitting, `TUT_FWD`, whose refusal names what it needs."""
    def build(bm: int, bn: int, warps: int, stages: int) -> TiledLaunch:
        return fwd_launch("fwd", case, gpu, bm, bn, warps, "native", "mma_efficiency_fwd", False, False, stages,
                          p_to_fp8=case.precision == "fp8")

    for config in tutorial_fwd_configs(gpu):
        launch = build(*config)
        if ctas_per_sm(launch, gpu) > 0:
            return launch
    return build(*TUT_FWD)


def _tutorial_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    if case.head_dim not in (16, 32, 64, 128, 256):
        return f"the Triton tutorial needs head_dim in 16, 32, 64, 128, 256 (got {case.head_dim})"
    fwd = _tutorial_fwd(case, gpu)
    launches = {"fwd": lambda: (fwd,), "bwd": lambda: _tutorial_bwd(case, gpu),
                "fwd+bwd": lambda: (fwd, *_tutorial_bwd(case, gpu))}[case.direction]()
    return (Plan("triton-tutorial", launches, backward_from=_backward_from(case)),)


# ------------------------------------------------------------------------------------------------ PyTorch eager
def _pytorch_prefill(case: AttentionCase, gpu: GPU) -> tuple:
    e, d, n, bh = case.element_bytes, case.head_dim, case.seqlen, case.batch * case.heads
    scores = bh * n * n * e  # one N x N matrix per (batch, head)
    tokens = bh * n * d * e
    gemm = 2.0 * bh * n * n * d
    fwd = [StreamLaunch("copy q to (b h) t d", 2 * tokens, "hbm_efficiency"),
           StreamLaunch("copy k to (b h) d s", 2 * tokens, "hbm_efficiency"),
           GemmLaunch("baddbmm S = QKᵀ", gemm, scores + 2 * tokens, case.precision)]
    if case.causal:
        mask = n * n * e
        mask_reads = mask if mask <= gpu.l2_bytes else bh * mask
        fwd += [StreamLaunch("build the causal mask (full, triu, cast)", 18 * n * n, "hbm_efficiency"),
                StreamLaunch("S + mask", 2 * scores + mask_reads, "hbm_efficiency")]
    fwd += [StreamLaunch("softmax", 2 * scores, "hbm_efficiency"),
            StreamLaunch("copy v for the einsum", 2 * tokens, "hbm_efficiency"),
            GemmLaunch("bmm O = PV", gemm, scores + 2 * tokens, case.precision),
            StreamLaunch("permute O to b t h d", 2 * tokens, "hbm_efficiency")]
    bwd = [StreamLaunch("permute dO", 2 * tokens, "hbm_efficiency"),
           GemmLaunch("dP = dO·Vᵀ", gemm, scores + 2 * tokens, case.precision),
           GemmLaunch("dV = Pᵀ·dO", gemm, scores + 2 * tokens, case.precision),
           StreamLaunch("softmax backward", 3 * scores, "hbm_efficiency"),
           GemmLaunch("dQ = dS·K", gemm, scores + 2 * tokens, case.precision),
           GemmLaunch("dK = dSᵀ·Q", gemm, scores + 2 * tokens, case.precision),
           StreamLaunch("gradients into qkv.grad", 6 * tokens, "hbm_efficiency")]
    return fwd, bwd


def _pytorch_decode(case: AttentionCase) -> tuple:
    """Eager decode's launches (module docstring): q·Kᵀ reads the query rows and the (expanded) K and writes the
    scores, P·V reads them and V and writes the output rows, so the call moves at least its operands
    (`AttentionCase.operand_bytes`)."""
    e, d, s = case.element_bytes, case.head_dim, case.seqlen
    kv_each = case.batch * case.kv_heads * s * d * e
    expanded = case.batch * case.heads * s * d * e
    scores = case.batch * case.heads * s
    rows = case.batch * case.heads * d * e  # the query row of each (batch, head): Q read, O written
    launches = []
    if case.group > 1:
        launches += [StreamLaunch(f"repeat_kv {t}", kv_each + expanded, "hbm_efficiency") for t in ("K", "V")]
    launches += [StreamLaunch("q·Kᵀ (batched GEMV)", rows + expanded + scores * e),
                 StreamLaunch("scale", 2 * scores * e, "hbm_efficiency"),
                 StreamLaunch("softmax (fp32)", scores * (e + 4), "hbm_efficiency"),
                 StreamLaunch("cast to dtype", scores * (4 + e), "hbm_efficiency"),
                 StreamLaunch("P·V (batched GEMV)", expanded + scores * e + rows)]
    return tuple(launches)


PYTORCH_VIEW_OPS = 3  # transpose, reshape, contiguous: issued from Python, no kernel
# Score matrices (one N x N per batch and head) eager prefill holds at once, at the least: the forward's S and the
# softmax's output P (softmax reads one and writes the other); a backward's P (saved by autograd), dP and the
# softmax backward's dS.
PYTORCH_SCORE_MATRICES = {"fwd": 2, "bwd": 3, "fwd+bwd": 3}


def _pytorch_prefill_held(case: AttentionCase) -> tuple[tuple[str, float], ...]:
    """What eager prefill holds at once besides its operands: `PYTORCH_SCORE_MATRICES` score matrices, and a causal
    call's N x N mask."""
    n, count = case.seqlen, PYTORCH_SCORE_MATRICES[case.direction]
    held = ((f"{count} score matrices of {case.batch} x {case.heads} x {n} x {n}",
             count * case.batch * case.heads * n * n * case.element_bytes),)
    return held + ((("the causal mask", n * n * case.element_bytes),) if case.causal else ())


def _pytorch_decode_held(case: AttentionCase) -> tuple[tuple[str, float], ...]:
    """What eager decode holds at once besides its operands: under GQA repeat_kv's copies of K and V expanded to
    every query head (alive until P·V), and the scores with their fp32 softmax."""
    expanded = 2 * case.batch * case.heads * case.seqlen * case.head_dim * case.element_bytes
    scores = case.batch * case.heads * case.seqlen * (case.element_bytes + 4)
    held = (("the scores and their fp32 softmax", scores),)
    return ((("repeat_kv's expanded K and V", expanded),) if case.group > 1 else ()) + held


def _pytorch_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    if case.direction == "decode":
        launches = _pytorch_decode(case)
        return (Plan("pytorch eager", launches, len(launches) + PYTORCH_VIEW_OPS, held=_pytorch_decode_held(case)),)
    fwd, bwd = _pytorch_prefill(case, gpu)
    launches = {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[case.direction]
    return (Plan("pytorch eager", tuple(launches), len(launches) + PYTORCH_VIEW_OPS,
                 {"fwd": None, "bwd": 0, "fwd+bwd": len(fwd)}[case.direction], _pytorch_prefill_held(case)),)


# ------------------------------------------------------------------------------------------------ archsim's kernels
# archsim's own Triton kernels (`kernels/`), as `archsim measure` times them: each launcher called directly (no
# autograd), its launch configuration as written there. Every tile is masked (the kernels bound-check every key
# tile with tl.where, causal or not).
ARCHSIM_FWD = (128, 64, 3)  # kernels/flash_fwd.py: BLOCK_M, BLOCK_N, num_stages; num_warps 4 for d <= 64, else 8
ARCHSIM_BWD = (64, 64, 2)  # kernels/flash_bwd.py: BLOCK_M, BLOCK_N, num_stages; warps as the forward's
ARCHSIM_DECODE = (64, 4, 3, 2)  # kernels/decode.py: BLOCK_N, num_warps, stages (Triton's default), programs per SM
ARCHSIM_HEAD_DIMS = (16, 32, 64, 128)  # the head dims archsim's kernels run (kernels/launch.py HEAD_DIMS)
# the head dims the Lightning model takes: its launcher's (kernels/launch.py) and 256, extrapolated for LASP's chunks
# of wider heads (a program holds a head, HEAD_DIM a power of two)
LIGHTNING_HEAD_DIMS = (*ARCHSIM_HEAD_DIMS, 256)
ARCHSIM_LIGHTNING = (64, 64, 3)  # kernels/lightning.py: BLOCK, BLOCK_F (capped at head_dim), stages (Triton's default)


def _archsim_warps(head_dim: int) -> int:
    return 4 if head_dim <= 64 else 8


def _archsim_flash(case: AttentionCase, gpu: GPU) -> tuple:
    e, d = case.element_bytes, case.head_dim
    warps, rows = _archsim_warps(d), case.batch * case.heads * case.seqlen
    bm, bn, stages = ARCHSIM_FWD
    unmasked, masked = _fwd_counts(case.seqlen, bm, bn, case.causal)
    fwd = fwd_launch("fwd", case, gpu, bm, bn, warps, "native", "mma_efficiency_fwd", False, False, stages,
                     counts=(np.zeros_like(unmasked), unmasked + masked))
    bm, bn, stages = ARCHSIM_BWD
    bwd = (StreamLaunch("bwd row dot (D = rowsum(dO*O))", rows * (2 * d * e + LSE_BYTES)),
           StreamLaunch("zero dQ (torch.zeros, fp32)", rows * d * ACC_BYTES),
           bwd_launch(case, gpu, bm, bn, warps, "native", True, 2 * stages,  # Q and dO in each pipeline stage
                      "atomic_adds_per_cycle"),
           StreamLaunch("dQ to the input dtype", rows * d * (ACC_BYTES + e)))
    return {"fwd": (fwd,), "bwd": bwd, "fwd+bwd": (fwd, *bwd)}[case.direction]


def _archsim_naive(case: AttentionCase) -> tuple:
    """kernels/naive.py: S = scale QKᵀ written in 64 x 64 tiles, a row softmax in place (a causal row reads its
    visible keys and writes the whole row), O = A V walking 64-key tiles; each bound by its pass over S."""
    e, d, n, bh = case.element_bytes, case.head_dim, case.seqlen, case.batch * case.heads
    scores, tokens = bh * n * n * e, bh * n * d * e
    read = scores * (n + 1) / (2 * n) if case.causal else scores
    gemm = 2.0 * bh * n * n * d
    return (GemmLaunch("S = scale QKᵀ", gemm, scores + 2 * tokens, case.precision),
            StreamLaunch("softmax rows in place", read + scores, "hbm_efficiency"),
            GemmLaunch("O = A V", gemm, scores + 2 * tokens, case.precision))


def _naive_held(case: AttentionCase) -> tuple[tuple[str, float], ...]:
    """The naive kernel's score matrix S (one per batch and head; its softmax runs in place)."""
    return ((f"the score matrix S ({case.batch} x {case.heads} x {case.seqlen} x {case.seqlen})",
             case.batch * case.heads * case.seqlen**2 * case.element_bytes),)


def _archsim_decode(case: AttentionCase, gpu: GPU) -> tuple:
    """kernels/decode.py: the group's query heads packed as the rows of one tile (padded to max(16, next power of
    two)), splits for about `programs per SM` programs per SM (`default_num_splits`), never an empty split, the
    merge kernel always run."""
    block_n, warps, stages, per_sm = ARCHSIM_DECODE
    block_h = max(16, 1 << (case.group - 1).bit_length())

    def splits_of(_row_blocks: int, key_blocks: int) -> int:
        wanted = max(1, _ceil(per_sm * gpu.sm_count, case.batch * case.kv_heads))
        return _ceil(key_blocks, _ceil(key_blocks, min(wanted, key_blocks)))

    return split_decode_launches(case, gpu, block_h, block_n, warps, stages, "native", splits_of, True, True)


def _archsim_lightning(case: AttentionCase, gpu: GPU, stages: int) -> TiledLaunch:
    """kernels/lightning.py: a program per (batch x head, BLOCK_F value columns), each walking the sequence's
    blocks in order (`gpu_tiles.lightning_tile`), its state (head_dim x BLOCK_F, fp32) and the block's S and two
    partial outputs in registers, Q, K and V loaded through Triton's pipelined SMEM buffers. Every program loads
    the whole Q and K of its head (L2 serves the repeats); DRAM moves Q, K, V and O once. A block's products form
    a chain (S feeds OI through SMEM, the state feeds OX and takes KVB: `TiledLaunch.chained_mma`). `stages`: the
    loads' pipeline depth."""
    block, block_f, _ = ARCHSIM_LIGHTNING
    e, d, n = case.element_bytes, case.head_dim, case.seqlen
    block_f, warps = min(block_f, d), _archsim_warps(d)
    tile = lightning_tile(block, d, block_f, warps, _warpgroup("native", gpu), e)
    heads, columns = case.batch * case.heads, d // block_f
    blocks = _ceil(n, block)
    counts = np.full(heads * columns, blocks)
    return TiledLaunch("lightning fwd", (Segment(tile, counts),), 32 * warps,
                       stages * (2 * block * d + block * block_f) * e,
                       d * block_f + 2 * block * block_f + block * block, "native", "mma_efficiency_linear",
                       case.precision, 4.0 * heads * n * d * e, heads * columns * blocks * tile.load_bytes,
                       stages - 1, chained_mma=True)


def _archsim_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    if variant == "lightning":
        # its launcher runs 16-128 and was timed at 128: 256 is the model's extrapolation (`LIGHTNING_HEAD_DIMS`)
        if case.head_dim not in LIGHTNING_HEAD_DIMS:
            return (f"archsim's Lightning Attention-2 is modelled for head_dim 16, 32, 64, 128 (what its launcher "
                    f"runs) and 256 (extrapolated), got {case.head_dim}")
        if not case.causal or case.kv_heads != case.heads:
            return "archsim's Lightning Attention-2 kernel is causal, with a K and V per query head"
        # the kernel leaves num_stages at Triton's default (3); a GPU whose SM cannot hold three stages of
        # buffers runs the deepest pipeline it holds (an assumption: Triton's pipeliner is taken to fall back
        # rather than fail)
        launches = [_archsim_lightning(case, gpu, stages) for stages in range(ARCHSIM_LIGHTNING[2], 0, -1)]
        launch = next((launch for launch in launches if launch.smem_bytes <= gpu.smem_bytes_per_sm), launches[-1])
        return (Plan("archsim lightning", (launch,)),)
    if case.head_dim not in ARCHSIM_HEAD_DIMS:
        return f"archsim's kernels take head_dim 16, 32, 64 or 128 (got {case.head_dim})"
    if variant == "decode":
        return (Plan("archsim decode", _archsim_decode(case, gpu)),)
    if case.kv_heads != case.heads:  # their launchers take q, k, v of one shape (`attention_dims`)
        kernel = "naive 3-pass" if variant == "naive" else "FlashAttention-2"
        return (f"archsim's {kernel} kernel takes a K and V per query head (got {case.heads} query heads over "
                f"{case.kv_heads} KV heads)")
    if variant == "naive":
        return (Plan("archsim naive", _archsim_naive(case), held=_naive_held(case)),)
    return (Plan("archsim flash", _archsim_flash(case, gpu)),)


def _shared(family: str, meaning: str, prior: float, low: float = 0.05, high: float = 1.0) -> Param:
    return Param(prior, low, high, True, f"{meaning}; fitted on this family's rows, else {family}'s fitted value",
                 shared_from=family)


# ------------------------------------------------------------------------------------------------ registry
FAMILIES: dict[str, Family] = {
    "fa2": Family("fa2", "FlashAttention-2 (CUDA, mma.sync): prefill fwd/bwd, Flash-Decoding and v2.0.9 decode", {
        "mma_efficiency_fwd": _efficiency("achieved fraction of the tensor peak (mma.sync) in the forward main "
                                          "loop, the tile's SMEM and softmax time counted apart", 0.8),
        "mma_efficiency_bwd": _efficiency("the same for the backward main loop (5 matmuls per tile, dQ atomics)",
                                          0.6),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(True),
        "launch_s": _launch_param()}, _fa2_plans),
    "fa1": Family("fa1", "FlashAttention v1 (CUDA, mma.sync)", {
        "mma_efficiency": _efficiency("achieved fraction of the tensor peak in the main loops (fwd and bwd: "
                                      "the published data has only their sum)", 0.5),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(False),
        "launch_s": _launch_param()}, _fa1_plans),
    "fa_triton": Family("fa_triton", "FlashAttention Triton kernel of the FA2 benchmark (Tillet/Dao)", {
        "mma_efficiency": _efficiency("achieved fraction of the tensor peak in the main loops (fwd and bwd: "
                                      "the published data has only their sum)", 0.5),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(False),
        "launch_s": _launch_param()}, _fat_plans),
    "triton_tutorial": Family("triton_tutorial", "Triton tutorial 06-fused-attention", {
        "mma_efficiency_fwd": _efficiency("achieved fraction of the tensor peak (native MMA) in the forward main "
                                          "loop", 0.8),
        "mma_efficiency_bwd": _efficiency("the same in the backward's dK/dV and dQ loops", 0.6),
        "cta_overhead_cycles": _overhead_param(), "autograd_s": _autograd_param(False),
        "launch_s": _launch_param()}, _tutorial_plans),
    "pytorch": Family("pytorch", "eager PyTorch: cuBLAS GEMMs and elementwise/softmax passes through DRAM", {
        "gemm_efficiency": _efficiency("achieved fraction of the tensor peak of the cuBLAS batched GEMMs", 0.7),
        "hbm_efficiency": _efficiency("achieved fraction of DRAM bandwidth of the elementwise, softmax and copy "
                                      "passes (and of GEMMs bound by their N x N operand)", 0.8),
        "autograd_s": _autograd_param(False),
        "launch_s": _launch_param(),
        "host_op_s": Param(5e-6, 1e-6, 1e-4, False, "seconds of Python and dispatcher time per eager op: the floor "
                                                    "of an op sequence whose kernels are shorter (a prior: order of "
                                                    "magnitude of eager PyTorch's per-op overhead)")},
        _pytorch_plans),
    # after the families it shares parameters with (calibrate fits them first)
    "fa3": Family("fa3", "FlashAttention-3 (CUDA, Hopper: wgmma, TMA, warp-specialised softmax overlap): prefill "
                  "forward", {
        "mma_efficiency_fwd": _shared("triton_tutorial", "achieved fraction of the tensor peak (wgmma) in the "
                                      "forward main loop", 0.8),
        "cta_overhead_cycles": _shared("triton_tutorial", "cycles per CTA outside the main loop, not hidden by "
                                       "other CTAs", 2000.0, 0.0, 1e5),
        "launch_s": _launch_param()}, _fa3_plans),
    "archsim": Family("archsim", "archsim's own Triton kernels (kernels/): FlashAttention-2 fwd/bwd, naive "
                      "3-pass, split-KV GQA decode, Lightning Attention-2 fwd", {
        "mma_efficiency_fwd": _shared("triton_tutorial", "achieved fraction of the tensor peak (Triton's native "
                                      "MMA) in the forward and decode main loops", 0.8),
        "mma_efficiency_bwd": _shared("triton_tutorial", "the same in the backward main loop", 0.6),
        "mma_efficiency_linear": _efficiency("the same in the Lightning Attention-2 forward's block loop (four "
                                             "small products a block, two of them on the previous one's result)",
                                             0.8),
        "cta_overhead_cycles": _shared("triton_tutorial", "cycles per CTA outside the main loop, not hidden by "
                                       "other CTAs", 2000.0, 0.0, 1e5),
        "gemm_efficiency": _shared("pytorch", "achieved fraction of the tensor peak of the naive kernel's score "
                                   "and output matmuls", 0.7),
        "hbm_efficiency": _shared("pytorch", "achieved fraction of DRAM bandwidth of the naive kernel's passes "
                                  "over the score matrix", 0.8),
        "atomic_adds_per_cycle": Param(
            128.0, 8.0, 4096.0, True, "fp32 atomic adds (tl.atomic_add: one per element, acq_rel by default) the "
            "whole chip completes per clock, bounding the backward's dQ accumulation; the prior is an order of "
            "magnitude (about one per L2 slice per clock), not a measured figure"),
        "launch_s": Param(4e-6, 1e-6, 1e-4, True, "seconds from one kernel's end to the next one's first CTA, "
                          "Triton's Python launch path included (it binds every argument per call); identifiable "
                          "from the decode rows (two launches of microseconds)")}, _archsim_plans),
}

# kernel name (as in attention_measured.csv) -> (family, variant)
KERNELS: dict[str, tuple[str, str]] = {
    "FlashAttention-2": ("fa2", "fa2"),
    "FlashAttention-2 (causal)": ("fa2", "fa2"),
    "Flash-Decoding": ("fa2", "flash-decoding"),
    "Flash-Decoding (16-row tiles)": ("fa2", "flash-decoding-16"),
    "FlashAttention v2.0.9": ("fa2", "v2.0.9"),
    "FlashAttention-3": ("fa3", "fa3"),
    "FlashAttention (v1)": ("fa1", "fa1"),
    "FlashAttention Triton (Tillet/Dao Triton impl)": ("fa_triton", "fa-triton"),
    "FlashAttention Triton": ("fa_triton", "fa-triton"),
    "Triton tutorial fused attention (06-fused-attention)": ("triton_tutorial", "tutorial"),
    "Triton tutorial fused attention": ("triton_tutorial", "tutorial"),
    "PyTorch standard attention": ("pytorch", "standard"),
    "PyTorch eager attention": ("pytorch", "eager"),
    "archsim FlashAttention-2 (Triton)": ("archsim", "flash"),
    "archsim naive 3-pass (Triton)": ("archsim", "naive"),
    "archsim Flash-Decoding split-KV GQA (Triton)": ("archsim", "decode"),
    "archsim Lightning Attention-2 (Triton)": ("archsim", "lightning"),
}
PRECISIONS = ("fp16", "bf16", "fp8")
PREFILL = ("fwd", "bwd", "fwd+bwd")
# variant (KERNELS' second field) -> the directions its kernel is modelled for; `plans` refuses the others
VARIANT_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "fa2": DIRECTIONS,  # FlashAttention-2's decode is its split-KV path (Flash-Decoding)
    "flash-decoding": ("decode",), "flash-decoding-16": ("decode",), "v2.0.9": ("decode",),
    "fa3": ("fwd",),  # its backward is not modelled
    "fa1": PREFILL, "fa-triton": PREFILL, "tutorial": PREFILL,
    "standard": PREFILL,  # the FA2 benchmark's attention_pytorch: N x N prefill only
    "eager": ("fwd", "decode"),  # the Hugging Face eager path: decode and a prompt's forward (no backward)
    "flash": PREFILL, "naive": ("fwd",), "decode": ("decode",), "lightning": ("fwd",),
}
PATH_OF_DIRECTION = {"fwd": "forward", "bwd": "backward", "fwd+bwd": "backward", "decode": "decode"}
LINEAR_VARIANTS = ("lightning",)  # the variants computing linear attention (`AttentionCase.attention`)
FP8_FAMILIES = ("triton_tutorial",)  # the families whose kernels take fp8 inputs (the tutorial casts Q, K, V to fp8)


def kernel_attention(kernel: str) -> str:
    """What a kernel computes: "linear" attention (a variant of `LINEAR_VARIANTS`) or "softmax" (any other, a
    kernel the model does not know included)."""
    return "linear" if KERNELS.get(kernel, ("", ""))[1] in LINEAR_VARIANTS else "softmax"


def family_of(kernel: str) -> str | None:
    entry = KERNELS.get(kernel)
    return entry[0] if entry else None


def kernel_directions(kernel: str) -> tuple[str, ...]:
    """The directions a kernel of `KERNELS` is modelled for (`VARIANT_DIRECTIONS`)."""
    return VARIANT_DIRECTIONS[KERNELS[kernel][1]]


def precision_problem(kernel: str, precision: str) -> str:
    """Why a kernel of `KERNELS` has no path for `precision` ("" when it may have one): fp8 is the Triton
    tutorial's alone (`FP8_FAMILIES`)."""
    if precision == "fp8" and KERNELS[kernel][0] not in FP8_FAMILIES:
        return (f"{kernel} has no fp8 path modelled (got fp8; of the modelled kernels only the Triton tutorial's "
                "take fp8)")
    return ""


def direction_problem(kernel: str, direction: str) -> str:
    """Why a kernel of `KERNELS` has no plan for `direction` ("" when it may have one)."""
    runs = kernel_directions(kernel)
    if direction in runs:
        return ""
    paths = list(dict.fromkeys(PATH_OF_DIRECTION[d] for d in runs))
    verb = "is" if len(paths) == 1 else "are"
    return (f"only {kernel}'s {' and '.join(paths)} {verb} modelled, no {PATH_OF_DIRECTION[direction]} path (got "
            f"direction {direction})")


def default_params(family: str) -> dict[str, float]:
    return {name: p.prior for name, p in FAMILIES[family].params.items()}


def param_problem(family: str, name: str, value: object) -> str:
    """Why `value` cannot be the parameter `name` of `family` ("" when it can): a parameter the family has, a finite
    number within its bounds (`Param.low`, `Param.high`; an efficiency in [0.05, 1])."""
    spec = FAMILIES[family].params.get(name)
    if spec is None:
        return f"not a parameter of {family} (known: {', '.join(FAMILIES[family].params)})"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value):
        return f"expected a number, got {value!r}"
    if not spec.low <= value <= spec.high:
        return f"expected a value in [{spec.low:g}, {spec.high:g}], got {value!r}"
    return ""


def params_problem(family: str, params: Mapping[str, float]) -> tuple[str, str]:
    """(parameter, why) when `params` are not the parameters of `family`, each given once within its bounds (what
    `archsim.gpu.params.Calibration.family_params` returns), else ("", "")."""
    known = FAMILIES[family].params
    for name, spec in known.items():  # the common case, every value a float within bounds, in one pass
        value = params.get(name)
        if not (type(value) is float and spec.low <= value <= spec.high):
            break
    else:
        if len(params) == len(known):
            return "", ""
    missing = [name for name in known if name not in params]
    if missing:
        return missing[0], f"missing (the parameters of {family}: {', '.join(known)})"
    return next(((name, problem) for name, value in params.items()
                 if (problem := param_problem(family, name, value))), ("", ""))


def plans(kernel: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """The launch plans of `kernel` for `case` on `gpu`, or why it cannot be modelled. A case with sizes no kernel
    takes (`AttentionCase.size_problem`) is a SpecError: callers reading a file check it first, naming the field."""
    field, problem = case.size_problem()
    if problem:
        raise SpecError("<python>", f"AttentionCase.{field}", problem)
    if kernel not in KERNELS:
        return f"no model for kernel '{kernel}' (modelled: {', '.join(KERNELS)})"
    if case.precision not in PRECISIONS:
        return f"dtype {case.precision} is not modelled (modelled: {', '.join(PRECISIONS)})"
    if case.heads % case.kv_heads:
        return f"{case.heads} query heads do not split evenly over {case.kv_heads} KV heads"
    family, variant = KERNELS[kernel]
    wrong_direction = direction_problem(kernel, case.direction)
    if wrong_direction:
        return wrong_direction
    if case.attention != kernel_attention(kernel):
        return f"{kernel} computes {kernel_attention(kernel)} attention, not {case.attention} attention"
    return precision_problem(kernel, case.precision) or FAMILIES[family].plans(variant, case, gpu)


def predict(kernel: str, case: AttentionCase, gpu: GPU, params: Mapping[str, float],
            check_memory: bool = True) -> GpuResult:
    """Predict one call of `kernel` on `gpu` with its family's parameters (see `archsim.gpu.params`). Parameters
    that are not the family's, or out of their bounds (`params_problem`), are a SpecError naming the parameter.
    Without `check_memory` a call whose operands exceed the GPU's DRAM is timed all the same (`runnable_plans`)."""
    check_params(kernel, params)
    return predict_plans(kernel, case, gpu, plans(kernel, case, gpu), params, check_memory)


def check_params(kernel: str, params: Mapping[str, float]) -> None:
    """A SpecError naming the parameter when `params` are not `kernel`'s family's or out of their bounds."""
    family = family_of(kernel)
    if family is not None:
        name, problem = params_problem(family, params)
        if problem:
            raise SpecError("<python>", f"params.{name}", f"{kernel} ({family}): {problem}")


# ------------------------------------------------------------------------------------------------ varlen prefill
# The kernels (by KERNELS' variant) whose prompt forward runs the prompts of a batch, of any lengths, as one call:
# FlashAttention-2's flash_attn_varlen_func (cu_seqlens), which vLLM calls once per layer for a batch's prompts.
# The others run one call per prompt: eager PyTorch (a call per sequence's N x N scores), archsim's kernels and
# the Triton kernels (no varlen entry point); FA1's unpadded and FA3's varlen entry points are not modelled.
VARLEN_VARIANTS = ("fa2",)


def has_varlen(kernel: str) -> bool:
    """Whether `kernel` runs a batch's prompts as one varlen forward call (`VARLEN_VARIANTS`)."""
    entry = KERNELS.get(kernel)
    return entry is not None and entry[1] in VARLEN_VARIANTS


def varlen_plans(kernel: str, case: AttentionCase, seqlens: Sequence[int], gpu: GPU) -> tuple[Plan, ...] | str:
    """The plans of one varlen forward call of `kernel` over prompts of `seqlens` tokens, packed as `case` (batch
    1, seqlen their sum; `predict_varlen`), or why it has none: a kernel without a varlen path (`has_varlen`),
    the packed case's own reason (`plans`: sizes, precision, head_dim, direction), or a direction other than the
    forward (FA2's varlen backward is not modelled)."""
    if kernel in KERNELS and not has_varlen(kernel):
        return f"{kernel} has no varlen path modelled (one call per prompt)"
    found = plans(kernel, case, gpu)
    if isinstance(found, str):
        return found
    if case.direction != "fwd":
        return f"only {kernel}'s varlen forward is modelled (got direction {case.direction})"
    return (Plan("fa2 varlen", (_fa2_varlen_fwd(case, seqlens, gpu, compiled_head_dim(case.head_dim,
                                                                                     FA2_HEAD_DIMS)),)),)


def predict_varlen(kernel: str, case: AttentionCase, seqlens: Sequence[int], gpu: GPU,
                   params: Mapping[str, float]) -> GpuResult:
    """Predict one varlen forward call of `kernel` (`varlen_plans`) over prompts of `seqlens` tokens, in that order.
    `case` holds what the prompts share (heads, KV heads, head_dim, causality, precision) as one packed sequence:
    batch 1, seqlen the sum of `seqlens`. Its operands are the prompts' together, so the DRAM check is theirs; its
    `flops()` (the result's `flops`) count a causal attention across prompts too: the call's FLOPs are the
    prompts' own cases', summed. Prompts of one length L, k of them, time as the batch-k call of `predict`: the same
    grid and bytes. Lengths that are not positive whole numbers adding up to `case.seqlen`, or a batch other than 1,
    are a SpecError."""
    if case.batch != 1 or not seqlens or sum(seqlens) != case.seqlen or any(
            isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1 for n in seqlens):
        raise SpecError("<python>", "seqlens", f"expected positive whole numbers adding up to the packed case's seqlen "
                        f"{case.seqlen} at batch 1, got {list(seqlens)} at batch {case.batch}")
    check_params(kernel, params)
    return predict_plans(kernel, case, gpu, varlen_plans(kernel, case, seqlens, gpu), params)
