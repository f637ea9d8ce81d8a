"""Launch plans of the FlashAttention kernels: v1, v2 (its decode variants and varlen forward included), v3 and
FlashAttention's Triton kernel, with the fused launches they share (`fwd_launch`, `bwd_launch`,
`split_decode_launches`), which `archsim.model.gpu_baseline_plans` and `archsim.model.gpu_sparse` build on too.

Each family's `*_plans(variant, case, gpu)` is its `Family.plans` in `archsim.model.gpu_kernels` (the registry,
which refuses what a kernel cannot run before calling it): the `Plan`s (launch lists) the kernel runs for an
`AttentionCase` on a `GPU`. Tile shapes, warps and loop orders are the kernels' launch configurations as we recall
them from their sources (not re-read; named per family below): FlashAttention-2's its launcher's rule over the GPU's
compute capability and shared memory (`archsim.model.gpu_fa2_launch`), with a smaller tile of ours on a GPU that does
not hold the one it picks (MI300X; `_fa2_fitting`); the others' for sm80, the next configuration that fits where the
GPU's shared memory is too small for the first choice.

Families and the kernels (names as in `attention_measured.csv`) they cover:
- `fa2`: FlashAttention-2 (Dao 2023; `csrc/flash_attn/src/flash_{fwd,bwd}_launch_template.h`), on an NVIDIA GPU of
  compute capability 8.0 or later (`_capability_problem`; an AMD GPU runs its ROCm port). Forward: a CTA per (query
  block, batch, head) walks the key blocks (causal: up to the diagonal, the diagonal tiles masked). Backward: a
  preprocessing kernel (D = rowsum(dO∘O), zero the fp32 dQ accumulator), a CTA per (key block, batch, head) walking
  the query blocks with dQ added atomically in L2, and a kernel converting dQ to 16 bits. Decode: "Flash-Decoding"
  (FA2 >= 2.2 split-KV: the query heads of a GQA group packed as the rows of one tile, the KV cache cut into splits
  by FA2's heuristic, then a combine kernel) and "FlashAttention v2.0.9" (the forward kernel with one live query row
  in a 128-row tile, a CTA per (batch, query head), no split; a KV head's slice read from DRAM once per wave of CTAs
  reading it, once in all where the L2 holds the slices live between two reads: `_v209_kv_read_bytes`).
  "Flash-Decoding (16-row tiles)" is the split-KV decode with a GQA group packed into one warp's 16 MMA rows
  (m16n8k16) instead of FA2's 64: our stand-in for the small-tile tensor-core decode kernels (FlashInfer's, from
  memory, not re-read), which keep a group of <= 16 query heads from padding the tile 8x; its splits are
  FlashInfer's plan (`balanced_chunks`: every request cut into chunks of one size, so a long request of a skewed
  batch takes more CTAs), where FA2's heuristic gives every request of a call the longest's splits. No measurement
  of such a kernel is in the reference data: it runs with FA2's calibrated efficiencies. On a GPU whose tensor rate
  is capped (H20: 148 TFLOPS against 4.0 TB/s) FA2's 64-row decode tile makes GQA decode compute-bound; the 16-row
  tile keeps it bandwidth-bound, as Lamina measures on H20 (pim.md §3.3: > 70 % of the bandwidth).
- `fa3`: FlashAttention-3 (Shah et al. 2024; `hopper/`, tile sizes from `tile_size.h` as we recall them, not
  re-read), the prefill forward only, on Hopper only (compute capability 9.0: wgmma and TMA). A CTA per (query block,
  batch, head): a consumer warpgroup per 64 query rows (128 x 128 tiles causal, 128 x 176 otherwise, at head_dim
  128) and a producer warpgroup issuing the TMA loads of K and V (2 stages); one warpgroup's softmax runs while the
  other's MMAs do (ping-pong), so a tile step takes the longer of the two (`TiledLaunch.softmax_overlap`) rather
  than their sum. No measurement of FA3 is in the reference data: its main-loop efficiency and CTA overhead are the
  Triton tutorial's fitted values (the other wgmma kernel of the library; `Param.shared_from`). Its backward, its
  split-KV decode and its fp8 path are not modelled.
- `fa1`: FlashAttention v1 (Dao et al. 2022; `csrc/flash_attn/src/fmha_*`), on an NVIDIA GPU of compute capability
  7.5 (Turing) or later. Forward: a CTA per (batch, head, query split) walks key blocks of 256 (d <= 64) or 128 keys
  in the outer loop and 16-row query steps inside, its 4 warps splitting the keys (split-K: partial outputs reduced
  through SMEM) and the fp32 output accumulator read and written in DRAM once per key block. Backward: a CTA per
  (batch, head, key block) walking 16-row query steps, dQ accumulated in fp32 through L2.
- `fa_triton`: the FlashAttention Triton kernel of the FA2 benchmark (Tillet's tutorial lineage,
  `flash_attn/flash_attn_triton.py`): 128x128 tiles, masks applied on every tile when causal, backward
  autotuned between one CTA per (batch, head) walking all key blocks and one per key block with atomic dQ.
Head dims, per family as the kernel does it (from memory of the sources, not re-read): FlashAttention-2 and its
decode variants pad any head_dim up to 256 to the next head dim they compile (`FA2_HEAD_DIMS`, multiples of 32),
FlashAttention-3 to 64, 128 or 256 (`FA3_FWD`), the FlashAttention Triton kernel up to 128 to
max(next power of two, 16) (`FAT_HEAD_DIMS`). FlashAttention v1 refuses a head_dim that is not a multiple of 8 (its
C++ check; no padding) and runs the others at 32, 64 or 128 (`FA1_HEAD_DIMS`). A kernel computes at the width it runs
(the launches' `padded_head_dim`): MMAs, softmax, shared memory, registers. It reads and writes the case's head_dim:
the tensors in DRAM are that wide, and the kernel masks the padded columns of its loads and stores (predicated loads:
FA2's `Is_even_K` false, the Triton kernel's `offs_d < headdim`), so DRAM and L2 traffic, and the roofline's bytes,
are the case's (`_masked_tile`). One exception: FA2's backward allocates its fp32 dQ accumulator at the compiled
width (flash_api.cpp's head_size_rounded) and adds whole tiles into it. A wrapper's pad to a multiple of 8 (FA2's,
FA3's; at most 7 columns, a copy before the call) is not counted. The FLOPs a result reports stay the case's (the
benchmark convention at the true head_dim).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import TypeVar

import numpy as np

from archsim.arch.gpu import GPU
from archsim.arch.spec import ceil_div
from archsim.model.gpu import (
    AttentionCase,
    Plan,
    Segment,
    StreamLaunch,
    Tile,
    TiledLaunch,
    ctas_per_sm,
    sequences_kv_bytes,
)
from archsim.model.gpu_fa2_launch import (
    Fa2Tile,
    bwd_smem_bytes,
    fa2_bwd_tile,
    fa2_fwd_tile,
    fa2_split_tile,
    fwd_smem_bytes,
)
from archsim.model.gpu_tiles import bwd_tile, fwd_tile

LSE_BYTES = 4  # fp32 log-sum-exp per query row
ACC_BYTES = 4  # fp32 accumulators (dQ, split partial outputs)


# ------------------------------------------------------------------------------------------------ shapes
def fwd_counts(seqlen: int, block_m: int, block_n: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(unmasked, masked) key tiles of each query block of one head, causal skipping above the diagonal."""
    m_blocks = ceil_div(seqlen, block_m)
    m = np.arange(m_blocks)
    if causal:
        visible = np.minimum(seqlen, (m + 1) * block_m)
        tiles = -(-visible // block_n)
        masked = tiles - (m * block_m) // block_n
    else:
        tiles = np.full(m_blocks, ceil_div(seqlen, block_n))
        masked = np.full(m_blocks, int(seqlen % block_n != 0))
    return tiles - masked, masked


def _bwd_counts(seqlen: int, block_m: int, block_n: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(unmasked, masked) query tiles of each key block of one head (the backward's CTA order)."""
    n_blocks, m_blocks = ceil_div(seqlen, block_n), ceil_div(seqlen, block_m)
    n = np.arange(n_blocks)
    if causal:
        first = (n * block_n) // block_m
        tiles = m_blocks - first
        masked = np.minimum(tiles, -(-((n + 1) * block_n) // block_m) - first)
    else:
        tiles = np.full(n_blocks, m_blocks)
        masked = np.full(n_blocks, int(seqlen % block_m != 0))
    return tiles - masked, masked


SMALLEST_BLOCK = 16  # rows or keys: one m16n8k16 MMA
WARPGROUP_MAJOR = 9  # NVIDIA compute capability major from which native MMA is a warpgroup MMA (Hopper sm90: wgmma)
Launches = TypeVar("Launches", TiledLaunch, tuple)


def _fa2_fitting(tile: Fa2Tile, build: Callable[[int, int, int], Launches], gpu: GPU, *,
                 owns_rows: bool) -> Launches:
    """FA2's launch (`build(block_m, block_n, warps)`, a launch or a tuple whose first is the tiled one) at `tile`, the
    one its launcher picks (`archsim.model.gpu_fa2_launch`), where its CTA fits `gpu`; on a GPU whose shared memory
    does not hold it (MI300X's 64 KB LDS against FA2's CUDA sizes) at the largest tile, rows x keys, that fits among
    those halving its sides down to `SMALLEST_BLOCK`, the warps cut with the area. Of two such tiles of one area, the
    one keeping more of the block the CTA owns: its query rows for a forward or decode CTA walking key blocks
    (`owns_rows`), its keys for a backward CTA walking query blocks, as FA2's split-KV kernel keeps its 64 rows at
    every head_dim. Halving the rows first would make a one-row decode, which computes the whole tile, cheaper as
    head_dim grows (MI300X, v2.0.9 at head_dim 192: 64 x 32 rather than 128 x 16, where 160 runs 128 x 32;
    `tests/test_gpu_decode_tile_monotone.py`). That fallback is
    ours: FA2 ships no such configuration (it is built for sm80 and later), and which tiles the ports to other GPUs
    (ROCm's) pick is not in the reference. With no tile fitting, `tile`, whose refusal names what it needs."""
    def fits(launch: Launches) -> bool:
        return ctas_per_sm(launch[0] if isinstance(launch, tuple) else launch, gpu) > 0

    if fits(launch := build(tile.block_m, tile.block_n, tile.warps)):
        return launch
    smaller = sorted(((m, n) for m in _halvings(tile.block_m) for n in _halvings(tile.block_n)
                      if (m, n) != (tile.block_m, tile.block_n)),
                     key=lambda t: (t[0] * t[1], t[0] if owns_rows else t[1]), reverse=True)
    for m, n in smaller:
        if fits(smaller_launch := build(m, n, max(1, tile.warps * m * n // (tile.block_m * tile.block_n)))):
            return smaller_launch
    return launch


def _halvings(block: int) -> list[int]:
    return [block >> k for k in range(block.bit_length()) if block >> k >= SMALLEST_BLOCK]


def warpgroup(mma: str, gpu: GPU) -> bool:
    """Whether native MMA is a warpgroup MMA (wgmma on Hopper, tcgen05 on Blackwell): on an NVIDIA GPU, by its compute
    capability (9.0 and up), whatever its mma.sync rate, so a what-if preset raising `sync_mma_fraction` to 1 speeds
    the mma.sync kernels and leaves the native ones as they were (it had turned them into per-warp MMAs, 1.37-1.56x
    slower: audit helper-470); on a GPU naming none (AMD's), when its mma.sync is not its full-rate path (its native
    path is then another instruction)."""
    if mma != "native":
        return False
    if gpu.capability is not None:
        return gpu.capability[0] >= WARPGROUP_MAJOR
    return gpu.sync_mma_fraction < 1


def _qkvo_bytes(case: AttentionCase) -> float:
    """Q, K, V and O of `case`'s prompt, each read or written once: its operands as a forward call
    (`AttentionCase.operand_bytes`), whatever its direction (a backward launch's own gradients come on top)."""
    return replace(case, direction="fwd").operand_bytes()


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
    group = warpgroup(mma, gpu)
    convert = case.precision == "fp8" and not gpu.has_native("fp8")
    precision = "fp16" if convert else case.precision
    unmasked, masked = counts or fwd_counts(case.seqlen, block_m, block_n, case.causal)
    if mask_all and case.causal:
        unmasked, masked = np.zeros_like(unmasked), unmasked + masked
    heads = case.batch * case.heads
    plain, edge = _masked_tiles(lambda dim, masked: fwd_tile(block_m, block_n, dim, warps, group, e, q_in_smem,
                                                             masked, convert, p_to_fp8), d, width)
    segments = (Segment(plain, unmasked, heads), Segment(edge, masked, heads))  # one head's counts, every head
    tiles = heads * float(unmasked.sum() + masked.sum())
    dram = _qkvo_bytes(case) + heads * case.seqlen * LSE_BYTES
    q_o = 2 * heads * case.seqlen * d * e
    return TiledLaunch(name, segments, 32 * (warps + producer_warps),
                       fwd_smem_bytes(block_m, block_n, width, q_in_smem, stages, e),
                       block_m * width + 1.5 * block_m * block_n, mma, efficiency, precision, dram,
                       q_o + tiles * plain.load_bytes, max(1, stages - 1), io_bytes=2 * block_m * d * e,
                       softmax_overlap=softmax_overlap)


# ------------------------------------------------------------------------------------------------ FlashAttention-2
# The head dims FA2 compiles its kernels for (flash_api.cpp rounds head_size up to a multiple of 32 after its Python
# wrapper pads it to a multiple of 8; from memory, not re-read): any head_dim up to 256 runs as the next of them.
FA2_HEAD_DIMS = tuple(range(32, 257, 32))
SMALL_TILE_BLOCK_M = 16  # "Flash-Decoding (16-row tiles)": one warp's m16n8k16 MMA rows
FA2_MAX_SPLITS = 128
FA2_SPLIT_CTAS_PER_SM = 2  # the heuristic's slots: flash_api.cpp passes 2 x the SM count ("128 threads per block")
FLASHINFER_LEAST_CHUNK_KEYS = 128  # FlashInfer's decode plan: a chunk of at least 128 / page_size pages
SPLIT_MEMO_CTAS = 2**14  # split-KV grids remembered up to this many CTAs (128 KB of counts; 512 grids <= 64 MB)


# The oldest NVIDIA GPUs each kernel runs on (their READMEs, from memory): FA2's mma.sync m16n8k16 (bf16 too) and
# cp.async are Ampere's (sm80); FA1 ran on Turing (sm75) and Ampere, not on Volta (sm70).
FA2_COMPUTE_CAPABILITY = (8, 0)
FA1_COMPUTE_CAPABILITY = (7, 5)


def _capability_problem(kernel: str, gpu: GPU, oldest: tuple[int, int], runs_on: str) -> str:
    """Why `kernel`, which NVIDIA GPUs of compute capability `oldest` and later run (`runs_on` names them), cannot
    run on `gpu` ("" when it can): an NVIDIA GPU below `oldest` (a V100, 7.0). A GPU stating no compute capability
    (AMD's) is not refused here: FA2's ROCm port is modelled with our tiles (`_fa2_fitting`), FA1 as on NVIDIA's."""
    if gpu.capability is None or gpu.capability >= oldest:
        return ""
    return (f"{kernel} runs on compute capability {oldest[0]}.{oldest[1]} and later ({runs_on}); {gpu.name} has "
            f"compute capability {gpu.compute_capability}")


def backward_from(case: AttentionCase) -> int | None:
    """Index of the first backward launch of a prefill plan (the forward is one launch), None without one."""
    return {"fwd": None, "bwd": 0, "fwd+bwd": 1}[case.direction]


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


def _fa2_fwd(case: AttentionCase, gpu: GPU, head_dim: int,
             counts_at: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None) -> TiledLaunch:
    """FA2's forward of `case` run at its compiled `head_dim` (`fwd_launch`'s `padded_head_dim`); `counts_at(block_m,
    block_n)`: `fwd_launch`'s `counts` at the tile the launcher picks, where given."""
    return _fa2_fitting(fa2_fwd_tile(head_dim, case.causal, gpu),
                        lambda bm, bn, w: fwd_launch("fwd", case, gpu, bm, bn, w, "sync", "mma_efficiency_fwd", True,
                                                     False, 1, counts=counts_at and counts_at(bm, bn),
                                                     padded_head_dim=head_dim), gpu, owns_rows=True)


def bwd_launch(case: AttentionCase, gpu: GPU, block_m: int, block_n: int, warps: int, mma: str,
               mask_all: bool, qdo_blocks: int, atomic_rate: str | None = None,
               padded_head_dim: int | None = None, dkv_heads: int | None = None,
               v_in_registers: bool = False) -> TiledLaunch:
    """A FlashAttention-2-style backward main launch: a CTA per (key block, batch, head) walking the query blocks,
    dQ added atomically in L2 (Algorithm 2 of the FA2 paper); `mask_all`: the kernel masks every tile. Shared
    memory holds `qdo_blocks` query-row blocks of Q and dO (their buffers), the key block's K and V, and P and dS;
    with `v_in_registers` (FA2's Is_V_in_regs) V moves to registers once loaded and P and dS reuse its space, so
    the rest takes max(K and V, K + P + dS) (FA2's kernel traits, kSmemSize, from memory), and the registers
    hold V as fp16 pairs. Only capacity moves: the tile's shared-memory traffic is taken to be the same.
    With `atomic_rate` (a family parameter) the launch is also bound by its block_m x head_dim dQ atomic adds per
    tile at that many per clock for the whole chip. `padded_head_dim`: as for `fwd_launch`, the fp32 dQ accumulator
    (allocated at that width, FA2's head_size_rounded, and added to whole) included in what it computes.
    `dkv_heads`: the heads it writes dK and dV for (FA2's query heads for a grouped-query case); the KV heads
    where not given."""
    e, d, bh = case.element_bytes, case.head_dim, case.batch * case.heads
    width = padded_head_dim or d
    bm, bn = block_m, block_n
    unmasked, masked = _bwd_counts(case.seqlen, bm, bn, case.causal)
    if mask_all:
        unmasked, masked = np.zeros_like(unmasked), unmasked + masked
    group = warpgroup(mma, gpu)
    plain, edge = _masked_tiles(lambda dim, masked: bwd_tile(bm, bn, dim, warps, group, e, masked), d, width)
    tiles = bh * float(unmasked.sum() + masked.sum())
    smem = bwd_smem_bytes(bm, bn, width, qdo_blocks, v_in_registers, e)
    registers = 2 * bn * width + 2 * bm * bn + bm * width + (bn * width / 2 if v_in_registers else 0)
    dkv_bytes = replace(case, kv_heads=dkv_heads or case.kv_heads).kv_bytes()
    dram = _qkvo_bytes(case) + dkv_bytes + bh * case.seqlen * (2 * LSE_BYTES + ACC_BYTES * width)
    l2 = dram + tiles * (plain.load_bytes + 2 * bm * width * ACC_BYTES)  # + dQ atomics (read-modify-write)
    return TiledLaunch(
        "bwd", (Segment(plain, unmasked, bh), Segment(edge, masked, bh)), 32 * warps, smem,
        registers, mma, "mma_efficiency_bwd", case.precision, dram, l2, 2,
        io_bytes=4 * bn * d * e, atomics=tiles * bm * width, atomic_rate=atomic_rate)


def _fa2_bwd(case: AttentionCase, gpu: GPU, head_dim: int) -> tuple:
    """FA2's backward of `case` run at its compiled `head_dim`: the preprocessing kernel reads dO and O and zeroes
    the fp32 dQ accumulator (at `head_dim`, `bwd_launch`), the last kernel converts that accumulator to dQ. A
    grouped-query case writes dK and dV per query head (mha_bwd's dk_expanded, dv_expanded), which a sum over each
    group then reads and writes per KV head (at::sum_out; csrc/flash_attn/flash_api.cpp, from memory)."""
    e, d = case.element_bytes, case.head_dim
    rows = case.batch * case.heads * case.seqlen
    pre = StreamLaunch("bwd preprocess (D = rowsum(dO*O), zero dQ)",
                       rows * (2 * d * e + LSE_BYTES + ACC_BYTES * head_dim))
    post = StreamLaunch("bwd convert dQ", rows * (head_dim * ACC_BYTES + d * e))
    tile = fa2_bwd_tile(head_dim, gpu)
    main = _fa2_fitting(tile, lambda bm, bn, warps: bwd_launch(
        case, gpu, bm, bn, warps, "sync", False, tile.qdo_blocks, padded_head_dim=head_dim, dkv_heads=case.heads,
        v_in_registers=tile.v_in_registers), gpu, owns_rows=False)
    if case.kv_heads == case.heads:
        return pre, main, post
    expanded = replace(case, kv_heads=case.heads).kv_bytes()
    return pre, main, post, StreamLaunch("bwd sum dK, dV over each group", expanded + case.kv_bytes())


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
        if splits > 1 and ceil_div(key_blocks, splits) == ceil_div(key_blocks, splits - 1):
            continue
        waves = tiles_of_grid * splits / slots
        efficiency[splits] = waves / math.ceil(waves)
    best = max(efficiency.values())
    return min(s for s, eff in efficiency.items() if eff >= 0.85 * best)


SplitPlan = Callable[[int, np.ndarray], tuple[np.ndarray | int, int, bool]]


def uniform_splits(splits_of: Callable[[int, int], int]) -> SplitPlan:
    """A split plan cutting every sequence into the same `splits_of(CTAs of the grid's one split, the longest
    sequence's key blocks)` splits of ceil(longest / splits) blocks, as FA2's (n_blocks_per_split, from the longest
    sequence) and archsim's decode kernel size them: a shorter sequence's later splits walk fewer blocks, or none.
    The grid is FA2's (flash_fwd_splitkv_kernel, from memory): (m_block, split, batch x head), the sequence outer,
    with splits; (m_block, batch, head), the heads outer, with one."""
    def plan(ctas_per_sequence: int, blocks: np.ndarray) -> tuple[int, int, bool]:
        longest = int(blocks.max())
        splits = splits_of(ctas_per_sequence * len(blocks), longest)
        return splits, ceil_div(longest, splits), splits == 1
    return plan


def balanced_chunks(slots: int, least_blocks: int) -> SplitPlan:
    """FlashInfer's decode split plan (`PartitionPagedKVCacheBinarySearchMinNumPagePerBatch` in its
    scheduler.cuh, called by its decode plan; from memory, not re-read): the least chunk, of at least
    `least_blocks` key blocks (its 128 tokens), cutting each sequence into ceil(blocks / chunk) chunks so that the
    grid, every chunk's CTAs, fits the `slots` CTAs the GPU holds at once (its max_grid_size: CTAs an SM holds x
    SMs), found by bisection; a grid too large for `slots` uncut (the longest sequence's blocks a chunk: each
    sequence one CTA a head, no split). A long sequence is cut into more chunks than a short one, so the CTAs of a
    skewed batch walk about equal blocks (FlashInfer chunks pages of the cache, ours key blocks of the tile). Its
    grid is (chunk, KV head): the heads outer."""
    def plan(ctas_per_sequence: int, blocks: np.ndarray) -> tuple[np.ndarray, int, bool]:
        low, high = least_blocks, max(least_blocks, int(blocks.max()))
        while low < high:
            mid = (low + high) // 2
            if int(ceil_div(blocks, mid).sum()) * ctas_per_sequence > slots:
                low = mid + 1
            else:
                high = mid
        return np.maximum(ceil_div(blocks, low), 1), low, True
    return plan


def _split_counts(key_blocks: np.ndarray, heads: int, splits: np.ndarray | int, per_split: int,
                  heads_outer: bool = False) -> np.ndarray:
    """Key tiles of each CTA of a split-KV decode grid, a CTA per (sequence, head, split), the splits fastest, in
    launch order: the sequences outer, or with `heads_outer` the heads (every sequence's CTAs of one head before the
    next head's). Sequence b has `key_blocks[b]` blocks and `splits` (one count for all, or sequence b's) splits of
    `per_split` blocks, so its split s walks clamp(key_blocks[b] - s x per_split, 0, per_split); a CTA past its
    sequence's end walks none (it exits at once). Read-only."""
    blocks = np.asarray(key_blocks)
    if np.ndim(splits) == 0:  # as many splits for every sequence: each keeps all of them
        walked = np.clip(blocks[:, None] - per_split * np.arange(int(splits)), 0, per_split)
        counts = np.tile(walked.ravel(), heads) if heads_outer else np.repeat(walked, heads, axis=0).ravel()
        counts.flags.writeable = False
        return counts
    splits = np.broadcast_to(splits, blocks.shape)
    cut = np.arange(int(splits.max()))
    walked = np.clip(blocks[:, None] - per_split * cut, 0, per_split)
    kept = cut < splits[:, None]  # a sequence's own splits
    if heads_outer:  # a head's CTAs of every sequence, then the next head's
        counts = np.tile(walked[kept], heads)
    else:  # a sequence's CTAs of every head, then the next sequence's
        counts = np.repeat(walked, heads, axis=0)[np.repeat(kept, heads, axis=0)]
    counts.flags.writeable = False
    return counts


def _uniform_split_counts(key_blocks: int, pairs: int, splits: int, per_split: int) -> np.ndarray:
    """`_split_counts` of a grid whose `pairs` (sequence, head) pairs, every head of every sequence, each have
    `key_blocks` blocks in `splits` splits of `per_split`: one pair's CTAs, repeated (whichever of the sequences and
    the heads is outer). Read-only; a grid of at most `SPLIT_MEMO_CTAS` CTAs is remembered."""
    if pairs * splits <= SPLIT_MEMO_CTAS:
        return _remembered_uniform_split_counts(key_blocks, pairs, splits, per_split)
    return _repeated_split_counts(key_blocks, pairs, splits, per_split)


def _repeated_split_counts(key_blocks: int, pairs: int, splits: int, per_split: int) -> np.ndarray:
    """`_uniform_split_counts`, worked out."""
    counts = np.tile(_split_counts(np.array([key_blocks]), 1, splits, per_split), pairs)
    counts.flags.writeable = False
    return counts


_remembered_uniform_split_counts = lru_cache(maxsize=512)(_repeated_split_counts)


def _split_cta(block_m: int, block_n: int, warps: int, stages: int, width: int,
               element_bytes: int) -> tuple[int, int, float]:
    """What a split-KV decode CTA (`split_decode_launches`) holds on an SM, whatever its split plan: (threads, shared
    memory bytes, register words) of `warps` warps staging the tile's `block_m` query rows and `stages` key blocks'
    K and V of `block_n` keys, `width` columns each, and holding the rows' output and a block's scores."""
    return (32 * warps, (block_m + stages * 2 * block_n) * width * element_bytes,
            block_m * width + 1.5 * block_m * block_n)


def split_decode_launches(case: AttentionCase, gpu: GPU, block_m: int, block_n: int, warps: int, stages: int,
                          mma: str, splits_of: SplitPlan, mask_all: bool,
                          always_combine: bool, padded_head_dim: int | None = None,
                          seqlens: Sequence[int] = ()) -> tuple:
    """A split-KV decode: a CTA per (row block of a GQA group packed as tile rows, split, batch x KV head), each
    walking its split's key blocks with an online softmax and writing a partial output and log-sum-exp, then a
    combine kernel. `splits_of(CTAs of a sequence's split, each sequence's key blocks)` is the kernel's split plan
    (`uniform_splits`, `balanced_chunks`): the splits, and the blocks a split; without `always_combine` a grid of
    one split a sequence writes the output directly (no partials, no combine). `padded_head_dim`: as for
    `fwd_launch` (the partial outputs, written and read as O is, at the case's head_dim). `seqlens`: each sequence's
    own keys (FA2's cache_seqlens), `case.seqlen` their longest; every sequence has `case.seqlen` without them. Each
    CTA walks its own sequence's blocks of its split (`_split_counts`: a CTA with none costs what the schedule gives
    a CTA of no tiles, its overhead, and still writes its partial); DRAM reads each sequence's own K and V."""
    e, d = case.element_bytes, case.head_dim
    width = padded_head_dim or d
    packed = case.group > 1  # query heads of a GQA group become the rows of one tile
    heads = case.kv_heads if packed else case.heads
    row_blocks = ceil_div(case.group, block_m) if packed else 1  # a group taller than the tile takes several
    tile = _masked_tile(lambda dim: fwd_tile(block_m, block_n, dim, warps, warpgroup(mma, gpu), e, True, mask_all,
                                             False, False), d, width)
    blocks = ceil_div(np.array(seqlens or (case.seqlen,), dtype=np.int64), block_n)
    every = blocks if len(blocks) == case.batch else np.broadcast_to(blocks, case.batch)  # each sequence's
    splits, per_split, heads_outer = splits_of(heads * row_blocks, every)
    if (blocks != blocks[0]).any():
        counts = _split_counts(blocks, heads, splits, per_split, heads_outer)
    else:  # every sequence's CTAs alike
        splits = int(np.max(splits))
        counts = _uniform_split_counts(int(blocks[0]), case.batch * heads, splits, per_split)
    if row_blocks > 1:  # the grid is (row block, split, head), the row blocks launched first
        counts = np.repeat(counts, row_blocks)
    if np.ndim(splits) == 0:  # as many splits for every sequence
        split_ctas, fewest, most = int(splits) * case.batch, int(splits), int(splits)  # (sequence, split) pairs
    else:
        split_ctas, fewest, most = int(splits.sum()), int(splits.min()), int(splits.max())
    combine = always_combine or split_ctas > case.batch
    kv = sequences_kv_bytes(case, seqlens)
    q_o = 2 * case.batch * case.heads * d * e
    partials = split_ctas * case.heads * (d + 1) * ACC_BYTES if combine else 0
    name = f"{most} splits" if fewest == most else f"{fewest}-{most} splits a sequence"
    # A KV block is read from DRAM once; each further row block of its group reads it again from L2.
    main = TiledLaunch(f"decode split-KV ({name})", (Segment(tile, counts),),
                       *_split_cta(block_m, block_n, warps, stages, width, e),
                       mma, "mma_efficiency_fwd", case.precision, kv + q_o + partials,
                       kv * row_blocks + q_o + partials, max(1, stages - 1), io_bytes=block_m * d * (e + ACC_BYTES))
    if not combine:
        return (main,)
    return main, StreamLaunch("decode combine splits", partials + q_o / 2)


def _fa2_split_decode(case: AttentionCase, gpu: GPU, head_dim: int, tile: Fa2Tile,
                      seqlens: Sequence[int] = ()) -> tuple:
    """FA2's split-KV decode of `case` (its sequences of `seqlens` keys where given: `split_decode_launches`) run at
    its compiled `head_dim` on `tile` (`fa2_split_tile`), its splits by FA2's heuristic (`_split_heuristic`) for
    every sequence, sized by the longest (`uniform_splits`)."""
    slots = FA2_SPLIT_CTAS_PER_SM * gpu.sm_count
    plan = uniform_splits(lambda tiles, key_blocks: _split_heuristic(tiles, slots, key_blocks))
    return _fa2_fitting(tile, lambda bm, bn, w: split_decode_launches(
        case, gpu, bm, bn, w, 1, "sync", plan, False, False, padded_head_dim=head_dim, seqlens=seqlens), gpu,
        owns_rows=True)


def _small_tile_decode(case: AttentionCase, gpu: GPU, head_dim: int, seqlens: Sequence[int] = ()) -> tuple:
    """"Flash-Decoding (16-row tiles)", our stand-in for FlashInfer's decode: FA2's split-KV CTA with a GQA group
    packed into one warp's 16 MMA rows (`_small_rows`), its splits FlashInfer's (`balanced_chunks`) for the CTAs the
    GPU holds at once, of at least `FLASHINFER_LEAST_CHUNK_KEYS` keys."""
    def build(block_m: int, block_n: int, warps: int) -> tuple:
        # the CTA alone, no grid: what `ctas_per_sm` reads of the launch, whatever its splits
        cta = TiledLaunch("decode split-KV CTA", (), *_split_cta(block_m, block_n, warps, 1, head_dim,
                                                                  case.element_bytes),
                          "sync", "mma_efficiency_fwd", case.precision, 0.0, 0.0)
        slots = ctas_per_sm(cta, gpu) * gpu.sm_count
        plan = balanced_chunks(slots, max(1, FLASHINFER_LEAST_CHUNK_KEYS // block_n))
        return split_decode_launches(case, gpu, block_m, block_n, warps, 1, "sync", plan, False, False,
                                     padded_head_dim=head_dim, seqlens=seqlens)
    return _fa2_fitting(_small_rows(fa2_split_tile(head_dim)), build, gpu, owns_rows=True)


def _v209_kv_read_bytes(slice_bytes: np.ndarray, heads: int, group: int, slots: int, l2_bytes: float) -> float:
    """The bytes v2.0.9's decode grid reads from DRAM of the (sequence, KV head) slices of the KV cache,
    `slice_bytes[b]` the K and V of one KV head of sequence b, counting a slice once per read, for `slots` resident
    CTAs and an L2 of `l2_bytes`. Its grid is FA2's (m_block, batch, head), the batch fastest: CTA j decodes sequence
    j mod batch for query head j // batch, so a group's query heads come `batch` CTAs apart. The CTAs run in waves
    of `slots` (assumed also where the sequences' lengths differ, whose CTAs drift out of step); a wave's CTAs walk
    their keys together, so the ones of a wave sharing a slice (a group's query heads)
    read it from DRAM once, as a one-wave grid does. A slice a later wave reads again (its sibling query head) hits
    in L2 where the slices live between the two reads fit it: the slices of a KV head, every sequence's (siblings a
    wave or more apart), or the distinct slices one wave reads (a wave reading the slices of several KV heads),
    whichever is more; then every slice is read once in all, else once per wave reading it (once per query head where
    a group's heads lie in different waves). Ours: FA2 states none of it; the CTA order is the usual x, then y, then
    z dispatch, which CUDA does not specify."""
    batch = len(slice_bytes)
    ctas = batch * heads
    starts = np.union1d(np.arange(0, ctas, slots), np.arange(0, ctas, batch * group))  # waves', KV heads' first CTAs
    runs = np.minimum(np.diff(np.append(starts, ctas)), batch)  # a run lies in one wave and one KV head
    cyclic = np.concatenate(([0.0], np.cumsum(np.tile(slice_bytes, 2))))  # a run's sequences wrap past the last
    first = starts % batch
    run_bytes = cyclic[first + runs] - cyclic[first]
    per_wave = np.bincount(starts // slots, weights=run_bytes)
    head_bytes = float(cyclic[batch])  # one KV head's slices, every sequence's
    if max(head_bytes, per_wave.max()) <= l2_bytes:
        return head_bytes * (heads // group)
    return float(run_bytes.sum())


def _fa2_v209_decode(case: AttentionCase, gpu: GPU, head_dim: int, seqlens: Sequence[int] = ()) -> tuple:
    """FA2 v2.0.9's decode of `case` run at its compiled `head_dim`: its forward kernel's CTA (tile, shared memory,
    registers, taken from one head's forward over the cache) per sequence and query head, walking its sequence's key
    tiles (`seqlens` each sequence's keys, flash_attn_varlen_func's cu_seqlens_k; `case.seqlen` every sequence's
    without them), each reading its (sequence, KV head) slice of the cache through L2 (`_v209_kv_read_bytes` from
    DRAM)."""
    keys = np.array(seqlens or (case.seqlen,))
    one_head = AttentionCase("fwd", 1, 1, 1, case.head_dim, case.seqlen, False, case.precision)
    launch = _fa2_fwd(one_head, gpu, head_dim, lambda block_m, block_n: (ceil_div(keys, block_n),
                                                                         np.zeros_like(keys)))
    key_tiles = launch.segments[0].run_counts  # a CTA per sequence, one query head's
    ctas = case.batch * case.heads
    slots = gpu.sm_count * max(ctas_per_sm(launch, gpu), 1)  # a CTA no SM holds: refused (`runnable_plans`)
    kv = sequences_kv_bytes(case, seqlens)
    slice_bytes = np.broadcast_to(2 * keys * case.head_dim * case.element_bytes, case.batch).astype(float)
    dram = (_v209_kv_read_bytes(slice_bytes, case.heads, case.group, slots, gpu.l2_bytes)
            + 2 * ctas * case.head_dim * case.element_bytes)
    tile = launch.segments[0].tile
    return (TiledLaunch("decode (no split)", (Segment(tile, key_tiles, ctas // len(key_tiles)),), launch.threads,
                        launch.smem_bytes, launch.register_words, "sync", "mma_efficiency_fwd", launch.precision,
                        dram, kv * case.group, 1, launch.io_bytes),)


def _small_rows(tile: Fa2Tile) -> Fa2Tile:
    """`tile` with a GQA group packed into one warp's 16 MMA rows ("Flash-Decoding (16-row tiles)")."""
    return replace(tile, block_m=SMALL_TILE_BLOCK_M, warps=1)


def fa2_plans(variant: str, case: AttentionCase, gpu: GPU, seqlens: Sequence[int] = ()) -> tuple[Plan, ...] | str:
    """FA2 (prefill, its decode variants) runs on an NVIDIA GPU of compute capability 8.0 or later
    (`FA2_COMPUTE_CAPABILITY`) and a head_dim padded to its compiled sizes (`FA2_HEAD_DIMS`); a grouped-query
    backward holds its dK and dV per query head until their sum (`_fa2_bwd`). A decode over sequences of `seqlens`
    keys (`case.seqlen` the longest; `gpu_kernels.varlen_plans`) walks each sequence's own."""
    if problem := _capability_problem("FlashAttention-2", gpu, FA2_COMPUTE_CAPABILITY, "Ampere, Ada, Hopper"):
        return problem
    head_dim = compiled_head_dim(case.head_dim, FA2_HEAD_DIMS)
    if head_dim is None:
        return f"head_dim {case.head_dim} > {max(FA2_HEAD_DIMS)} is not supported by FlashAttention-2"
    if case.direction == "decode":
        launches = (_fa2_v209_decode(case, gpu, head_dim, seqlens) if variant == "v2.0.9"
                    else _small_tile_decode(case, gpu, head_dim, seqlens) if variant == "flash-decoding-16"
                    else _fa2_split_decode(case, gpu, head_dim, fa2_split_tile(head_dim), seqlens))
        return (Plan(variant, launches),)
    launches = {"fwd": lambda: (_fa2_fwd(case, gpu, head_dim),), "bwd": lambda: _fa2_bwd(case, gpu, head_dim),
                "fwd+bwd": lambda: (_fa2_fwd(case, gpu, head_dim), *_fa2_bwd(case, gpu, head_dim))}[case.direction]()
    grouped_backward = case.direction != "fwd" and case.kv_heads != case.heads
    held = ((("dK, dV per query head (dk_expanded, dv_expanded)", replace(case, kv_heads=case.heads).kv_bytes()),)
            if grouped_backward else ())
    return (Plan("fa2", launches, backward_from=backward_from(case), held=held),)


def fa2_varlen_fwd(case: AttentionCase, seqlens: Sequence[int], gpu: GPU, head_dim: int) -> TiledLaunch:
    """`_fa2_fwd` over the prompts of `seqlens` packed as `case`'s one sequence (flash_attn_varlen_func, batch 1):
    one launch whose grid is every prompt's CTAs, a CTA per (query block, prompt, head), each prompt's causal tiles
    up to its own diagonal; its bytes and tiles are the prompts' summed. FA2's grid is (m_block, batch, head), the
    blocks beyond a prompt's end exiting at once, so the CTAs are these, in launch order query blocks fastest, then
    the prompts (cu_seqlens order), then the heads (x, then y, then z: the usual dispatch order, which CUDA does not
    specify). One tile configuration for the call, picked as `_fa2_fwd` picks it (`fa2_fwd_tile`: by head_dim,
    causality and the GPU) and not by length, so each prompt runs the tile its own call would (were it by length,
    FA2 would run the longest prompt's: one configuration per call). Run at the compiled `head_dim`, as `_fa2_fwd`."""
    def build(block_m: int, block_n: int, warps: int) -> TiledLaunch:
        prompts = [fwd_counts(n, block_m, block_n, case.causal) for n in seqlens]
        return fwd_launch(f"fwd varlen ({len(seqlens)} prompts)", case, gpu, block_m, block_n, warps, "sync",
                          "mma_efficiency_fwd", True, False, 1,
                          counts=(np.concatenate([c[0] for c in prompts]), np.concatenate([c[1] for c in prompts])),
                          padded_head_dim=head_dim)

    return _fa2_fitting(fa2_fwd_tile(head_dim, case.causal, gpu), build, gpu, owns_rows=True)


# ------------------------------------------------------------------------------------------------ FlashAttention-3
# head_dim -> [(BLOCK_M, BLOCK_N causal, BLOCK_N otherwise)]; a consumer warpgroup per 64 query rows. The head dims
# are the ones FA3 compiles (its first release's, from memory): a smaller head_dim is padded to the next of them.
FA3_FWD = {64: [(192, 128, 128)], 128: [(128, 128, 176)], 256: [(128, 80, 80)]}
FA3_STAGES = 2
FA3_PRODUCER_WARPS = 4  # one warpgroup issuing the TMA loads
FA3_COMPUTE_CAPABILITY = "9.0"  # wgmma and TMA: Hopper only


def fa3_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
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


def per_query_head_kv(kernel: str, case: AttentionCase) -> str:
    """Why `kernel`, whose launcher takes q, k and v of one head count (FlashAttention v1's fmha, the FlashAttention
    Triton kernel, Triton's tutorial, archsim's own), cannot run a grouped-query `case`; "" when every query head
    has its own K and V. A caller expands K and V to every query head first (repeat_kv), a call of its own."""
    if case.kv_heads == case.heads:
        return ""
    return f"{kernel} takes a K and V per query head (got {case.heads} query heads over {case.kv_heads} KV heads)"


# ------------------------------------------------------------------------------------------------ FlashAttention v1
FA1_STEP_ROWS = 16
FA1_WARPS = 4
FA1_HEAD_DIMS = (32, 64, 128)  # the fmha kernels' compiled head dims (fmha_fwd_hdim{32,64,128}; from memory)
FA1_HEAD_DIM_MULTIPLE = 8  # fmha_api.cpp: head_size % 8 == 0


def fa1_fwd_smem_bytes(key_block: int, head_dim: int, element_bytes: int) -> int:
    """Shared memory of FA1's forward CTA at compiled `head_dim`: a key block's K and V and its warps' fp32 partial
    outputs (the split-K reduction); its 16-row Q tile is not counted. Not read from FA1's kernel traits (not in
    ../shared/reference): an estimate held to what is known of the kernel. Its head_dim-128 forward ran on sm86 and
    sm89 (its API, from memory, refused only the backward above 64 off sm80 and sm90), within CUDA's 99 KB a block
    there, and the published A100 rows fit two CTAs an SM at 64 and one at 128 (fa1's calibration MAPE 3.7 %; 6.4 %
    refitted with one at 64). The sum with the Q tile, 84 KB at 64 and 100 KB at 128, met both only while the 1 KB CUDA
    reserves per block went uncounted (s52): without it every preset's occupancy is what it was."""
    return 2 * key_block * head_dim * element_bytes + FA1_WARPS * FA1_STEP_ROWS * head_dim * ACC_BYTES


def _fa1_fwd(case: AttentionCase, gpu: GPU, head_dim: int) -> TiledLaunch:
    """FA1's forward of `case` run at its compiled `head_dim` (what it computes and stages on chip; what it reads and
    writes, the fp32 output accumulator included, at the case's head_dim)."""
    e, d, n, bh = case.element_bytes, case.head_dim, case.seqlen, case.batch * case.heads
    key_block = 256 if head_dim <= 64 else 128
    key_blocks = ceil_div(n, key_block)
    probe_smem = fa1_fwd_smem_bytes(key_block, head_dim, e)
    # its launcher sizes the splits by the occupancy CUDA reports, the 1 KB reserved per block counted
    slots = gpu.sm_count * max(1, min(gpu.smem_ctas_per_sm(probe_smem), gpu.max_threads_per_sm // 128))
    splits = 1 if bh >= slots else min(ceil_div(slots, bh), ceil_div(n, 128))
    rows_per_cta = ceil_div(ceil_div(n, splits), FA1_STEP_ROWS) * FA1_STEP_ROWS
    steps = rows_per_cta // FA1_STEP_ROWS
    unmasked, masked = [], []
    visited_rows = 0  # (query row, key block) pairs the CTAs visit, each reading the row's Q and its fp32 O
    kv_block_loads = 0  # key blocks the CTAs load K and V of: a causal CTA's up to its last row's
    for s in range(splits):  # per CTA: 16-row steps at or below each key block, the diagonal ones masked
        first_row = s * rows_per_cta
        rows = np.arange(first_row, min(n, first_row + rows_per_cta), FA1_STEP_ROWS)
        if case.causal:
            blocks = -(-(rows + FA1_STEP_ROWS) // key_block)
            diagonal = np.ones_like(blocks)
            unmasked.append(int((blocks - diagonal).sum()))
            masked.append(int(diagonal.sum()))
            kv_block_loads += int(blocks.max(initial=0))
        else:
            blocks = np.full_like(rows, key_blocks)
            unmasked.append(len(rows) * key_blocks)
            masked.append(0)
            kv_block_loads += key_blocks
        visited_rows += int((np.minimum(FA1_STEP_ROWS, n - rows) * blocks).sum())
    reduce_elements = 2 * FA1_WARPS * FA1_STEP_ROWS * head_dim * ACC_BYTES / e  # split-K partial outputs via SMEM
    plain, edge = _masked_tiles(lambda dim, masked: fwd_tile(FA1_STEP_ROWS, key_block, dim, FA1_WARPS, False, e, True,
                                                             masked, False, False), d, head_dim)
    plain, edge = (replace(t, alu_ops=t.alu_ops + FA1_STEP_ROWS * head_dim * FA1_WARPS,
                           smem_bytes=t.smem_bytes + reduce_elements * e, load_bytes=t.load_bytes / steps)
                   for t in (plain, edge))
    # per key block a row visits beyond its first, its fp32 O read and written; per visit, its Q re-read: a causal
    # call's rows skip the key blocks past their own, as its tiles do (it had paid a full call's, so a causal call
    # cost as much as a full one where this traffic binds: an L40S's); so do its K and V loads (`kv_block_loads`)
    o_round_trips = bh * (visited_rows - n) * d * 2 * ACC_BYTES
    dram = _qkvo_bytes(case) + o_round_trips + bh * visited_rows * d * e
    return TiledLaunch("fwd", (Segment(plain, np.array(unmasked), bh), Segment(edge, np.array(masked), bh)),
                       32 * FA1_WARPS, probe_smem, FA1_STEP_ROWS * head_dim + 1.5 * FA1_STEP_ROWS * key_block, "sync",
                       "mma_efficiency", case.precision, dram, dram + bh * kv_block_loads * 2 * key_block * d * e,
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
    main = TiledLaunch("bwd", (Segment(plain, unmasked, bh), Segment(edge, masked, bh)), 256,
                       (4 * FA1_STEP_ROWS * head_dim + 2 * key_block * head_dim + 2 * FA1_STEP_ROWS * key_block) * e,
                       2 * key_block * head_dim + 2 * FA1_STEP_ROWS * key_block, "sync", "mma_efficiency",
                       case.precision, dram, l2, 2, io_bytes=4 * key_block * d * e)
    rows = bh * case.seqlen
    return (StreamLaunch("bwd preprocess", rows * (2 * d * e + LSE_BYTES + ACC_BYTES * d)), main,
            StreamLaunch("bwd convert dQ", rows * d * (ACC_BYTES + e)))


def fa1_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """FA1 refuses a head_dim that is not a multiple of 8 (its C++ check; its wrapper does not pad) and a
    grouped-query case (`per_query_head_kv`: grouped-query attention came with FlashAttention-2), and runs the
    others at the next head dim it compiles (`FA1_HEAD_DIMS`), on an NVIDIA GPU of compute capability 7.5 or later
    (`FA1_COMPUTE_CAPABILITY`)."""
    if problem := _capability_problem("FlashAttention v1", gpu, FA1_COMPUTE_CAPABILITY, "Turing, Ampere"):
        return problem
    head_dim = compiled_head_dim(case.head_dim, FA1_HEAD_DIMS)
    if head_dim is None or case.head_dim % FA1_HEAD_DIM_MULTIPLE:
        return (f"FlashAttention v1 takes a head_dim that is a multiple of {FA1_HEAD_DIM_MULTIPLE} up to "
                f"{max(FA1_HEAD_DIMS)} (got {case.head_dim})")
    if problem := per_query_head_kv("FlashAttention v1", case):
        return problem
    launches = {"fwd": lambda: (_fa1_fwd(case, gpu, head_dim),), "bwd": lambda: _fa1_bwd(case, head_dim),
                "fwd+bwd": lambda: (_fa1_fwd(case, gpu, head_dim), *_fa1_bwd(case, head_dim))}[case.direction]()
    return (Plan("fa1", launches, backward_from=backward_from(case)),)


# ------------------------------------------------------------------------------------------------ FlashAttention Triton
FAT_BLOCK = 128
FAT_HEAD_DIMS = (16, 32, 64, 128)  # BLOCK_HEADDIM = max(triton.next_power_of_2(d), 16), d <= 128


def _fat_bwd(case: AttentionCase, gpu: GPU, sequence_parallel: bool, head_dim: int) -> tuple:
    """The kernel's backward of `case` run at its BLOCK_HEADDIM `head_dim` (what it computes and stages on chip;
    what it reads and writes, its fp32 dQ included, at the case's head_dim)."""
    e, d, bh, n = case.element_bytes, case.head_dim, case.batch * case.heads, case.seqlen
    warps = 8
    group = warpgroup("native", gpu)
    unmasked, masked = _bwd_counts(n, FAT_BLOCK, FAT_BLOCK, case.causal)
    if case.causal:  # the causal mask is applied on every tile
        unmasked, masked = np.zeros_like(unmasked), unmasked + masked
    plain, edge = _masked_tiles(lambda dim, masked: bwd_tile(FAT_BLOCK, FAT_BLOCK, dim, warps, group, e, masked), d,
                                head_dim)
    if sequence_parallel:
        segments = (Segment(plain, unmasked, bh), Segment(edge, masked, bh))
    else:  # one CTA per (batch, head) walks every key block
        segments = (Segment(plain, np.full(1, unmasked.sum()), bh), Segment(edge, np.full(1, masked.sum()), bh))
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


def fat_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """The kernel takes head_dim <= 128 and runs BLOCK_HEADDIM = max(next power of two, 16) columns (`FAT_HEAD_DIMS`),
    masking the rest; K and V per query head (`per_query_head_kv`)."""
    head_dim = compiled_head_dim(case.head_dim, FAT_HEAD_DIMS)
    if head_dim is None:
        return f"head_dim {case.head_dim} > {max(FAT_HEAD_DIMS)} is not supported by the FlashAttention Triton kernel"
    if problem := per_query_head_kv("the FlashAttention Triton kernel", case):
        return problem
    warps = 4 if head_dim <= 64 else 8
    fwd = fwd_launch("fwd", case, gpu, FAT_BLOCK, FAT_BLOCK, warps, "native", "mma_efficiency", False, True, 1,
                     padded_head_dim=head_dim)
    if case.direction == "fwd":
        return (Plan("fa-triton", (fwd,)),)
    prefix = (fwd,) if case.direction == "fwd+bwd" else ()
    return tuple(Plan(f"fa-triton, sequence-parallel bwd {sp}", (*prefix, *_fat_bwd(case, gpu, sp, head_dim)),
                      backward_from=backward_from(case)) for sp in (False, True))
