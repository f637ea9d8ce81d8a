"""FlashAttention-2's launcher: the tile a `run_mha_{fwd,bwd}_hdim<D>` function launches for a compiled head dim on
a GPU, and its split-KV kernel's tile. The one place `archsim.model.gpu_flash_plans` reads FA2's tiles from (its
forward, backward, varlen forward and decode variants).

Source: FlashAttention-2's `csrc/flash_attn/src/flash_fwd_launch_template.h` and `flash_bwd_launch_template.h`
(v2.x, dropout off, as every case archsim times), quoted from memory, not re-read, and not in ../shared/reference.
The launcher reads the GPU's compute capability (`is_sm8x`: major 8, minor above 0, sm86 and sm89, Ada's presets)
and its shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin) and per SM. The model reads them as
`GPU.smem_bytes_per_block` (the SM's less the 1 KB CUDA reserves per block from compute capability 8.0) and
`GPU.smem_bytes_per_sm`: every threshold below is per block but the 256 forward's two-CTA test, which the launcher
makes against the SM's (no threshold lies within 1 KB of a preset's 64, 100, 164 or 228 KB, so the reserve picks
no other tile on a preset). Shared memory counts fp16 elements (2 B), as the launcher's thresholds do.

Forward, `fa2_fwd_tile` (block_m x block_n, warps):
- head_dim 32, 64: 128 x 128, 4.
- 96: 128 x 64, 4; sm8x causal 64 x 64, 4 ("64 x 64 is the fastest for causal (because it's square)").
- 128: 128 x 64, 4; sm8x 128 x 32, 4 non-causal ("48 KB smem ... 2 CTAs per SM"), 64 x 64, 4 causal.
- 160: 128 x 32, 4 ("For A100, H100, 128 x 32 is the fastest"); sm8x 128 x 64, 8 non-causal, 64 x 64, 4 causal.
- 192: 128 x 64, 8.
- 224: 128 x 64, 8 where a block holds it (2 x 224 x (128 + 2 x 64) B = 112 KB), else 64 x 64, 4.
- 256: 128 x 64, 8 where a block holds it (128 KB) and an SM does not hold two 64 x 64 CTAs (4 x 256 x (64 + 2 x
  64) B = 192 KB): the A100 ("For A100, we want to run with 128 x 64 (128KB smem)"); else 64 x 64, 4, on every
  228 KB GPU ("For H100 we want to run with 64 x 64 (96KB smem) since then we can get 2 CTAs per SM").
Backward, `fa2_bwd_tile`, 8 warps, a CTA per key block: Q and dO in shared memory as 3 blocks of block_m x head_dim
(Q double-buffered) or 2 (`No_double_buffer`), and V in registers after its load where `Is_V_in_regs`
(`bwd_smem_bytes` sizes both, as `gpu_flash_plans.bwd_launch` does). By the per-block shared memory:
- 32: 128 x 128, V in registers (96 KB).
- 64: 128 x 128 from 144 KB, else 64 x 128, V in registers.
- 96: 64 x 128, V in registers (92 KB).
- 128: 64 x 128 from 144 KB, else 64 x 64, V in registers.
- 160: 64 x 64 from 116 KB, else 64 x 64 without double buffering.
- 192: 64 x 64 from 136 KB, else 64 x 64, V in registers, without double buffering.
- 224: 64 x 64.
- 256: 64 x 64 from 176 KB (H100); from 144 KB without double buffering (A100: "we don't do double buffering to
  save smem"); else 64 x 32, V in registers, without double buffering (sm86 and sm89: "max smem is 99 KB").
Each threshold is the shared memory of the tile it gates, in the model's count as in FA2's kernel traits.
Split-KV (`fa2_split_tile`, run_mha_fwd_splitkv_dispatch): 64 rows, 4 warps, a key block of 256 up to head_dim 64,
128 up to 128, else 64. A GPU stating no NVIDIA compute capability (MI300X) takes the branches that are not sm8x;
where the launcher's tile does not fit it, `gpu_flash_plans._fa2_fitting` halves it (ours).
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.arch.gpu import GPU

FA2_ELEMENT_BYTES = 2  # fp16 / bf16: the launcher's shared-memory thresholds count 2-byte elements
SM8X_MAJOR = 8
FA2_BWD_WARPS = 8
FA2_SPLIT_BLOCK_M = 64
FA2_SPLIT_WARPS = 4


@dataclass(frozen=True)
class Fa2Tile:
    """A forward or decode launch configuration: `block_m` query rows x `block_n` keys per tile, `warps` per CTA."""

    block_m: int
    block_n: int
    warps: int


@dataclass(frozen=True)
class Fa2BwdTile(Fa2Tile):
    """A backward launch configuration: `double_buffer` keeps Q twice beside dO (FA2's kernel traits:
    `No_double_buffer ? 2 : 3` blocks), `v_in_registers` holds V in registers once loaded (`Is_V_in_regs`)."""

    double_buffer: bool = True
    v_in_registers: bool = False

    @property
    def qdo_blocks(self) -> int:
        """Query-row blocks of Q and dO in shared memory."""
        return 3 if self.double_buffer else 2


def is_sm8x(gpu: GPU) -> bool:
    """The launcher's `dprops->major == 8 && dprops->minor > 0` (sm86, sm89); False for a GPU stating none (AMD's)."""
    capability = gpu.capability
    return capability is not None and capability[0] == SM8X_MAJOR and capability[1] > 0


def fwd_smem_bytes(block_m: int, block_n: int, head_dim: int, q_in_smem: bool = True, stages: int = 1,
                   element_bytes: int = FA2_ELEMENT_BYTES) -> int:
    """A forward CTA's shared memory: Q's block (`q_in_smem`) and `stages` buffers of one key block's K and V, of
    `element_bytes` elements; the defaults are FA2's launcher's count."""
    return (q_in_smem * block_m + stages * 2 * block_n) * head_dim * element_bytes


def bwd_smem_bytes(block_m: int, block_n: int, head_dim: int, qdo_blocks: int, v_in_registers: bool,
                   element_bytes: int = FA2_ELEMENT_BYTES) -> int:
    """A backward CTA's shared memory: `qdo_blocks` query-row blocks of Q and dO, the key block's K and V, and P and
    dS, which reuse V's space where `v_in_registers` (`gpu_flash_plans.bwd_launch`); the default element is FA2's
    launcher's count."""
    kv_p_ds = (max(2 * block_n * head_dim, block_n * head_dim + 2 * block_m * block_n) if v_in_registers
               else 2 * block_n * head_dim + 2 * block_m * block_n)
    return (qdo_blocks * block_m * head_dim + kv_p_ds) * element_bytes


def fa2_fwd_tile(head_dim: int, causal: bool, gpu: GPU) -> Fa2Tile:
    """The forward tile FA2's launcher picks at compiled `head_dim` (module docstring): its thresholds per block,
    the 256 two-CTA test per SM."""
    smem = gpu.smem_bytes_per_block
    square = Fa2Tile(64, 64, 4)
    if head_dim <= 64:
        return Fa2Tile(128, 128, 4)
    if head_dim <= 96:
        return square if is_sm8x(gpu) and causal else Fa2Tile(128, 64, 4)
    if head_dim <= 128:
        if is_sm8x(gpu):
            return square if causal else Fa2Tile(128, 32, 4)
        return Fa2Tile(128, 64, 4)
    if head_dim <= 160:
        if is_sm8x(gpu):
            return square if causal else Fa2Tile(128, 64, 8)
        return Fa2Tile(128, 32, 4)
    wide = Fa2Tile(128, 64, 8)
    if head_dim <= 192:
        return wide
    if head_dim <= 224:
        return wide if smem >= fwd_smem_bytes(128, 64, head_dim) else square
    two_squares_fit = gpu.smem_bytes_per_sm >= 2 * fwd_smem_bytes(64, 64, head_dim)
    return wide if smem >= fwd_smem_bytes(128, 64, head_dim) and not two_squares_fit else square


def fa2_bwd_tile(head_dim: int, gpu: GPU) -> Fa2BwdTile:
    """The backward tile FA2's launcher picks at compiled `head_dim` (module docstring); each shared-memory
    threshold is that of the tile it gates, against the shared memory a block may take."""
    smem = gpu.smem_bytes_per_block

    def fits(tile: Fa2BwdTile, dim: int) -> bool:
        return smem >= bwd_smem_bytes(tile.block_m, tile.block_n, dim, tile.qdo_blocks, tile.v_in_registers)

    square = Fa2BwdTile(64, 64, FA2_BWD_WARPS)
    if head_dim <= 32:
        return Fa2BwdTile(128, 128, FA2_BWD_WARPS, v_in_registers=True)
    if head_dim <= 64:
        wide = Fa2BwdTile(128, 128, FA2_BWD_WARPS)
        return wide if fits(wide, 64) else Fa2BwdTile(64, 128, FA2_BWD_WARPS, v_in_registers=True)
    if head_dim <= 96:
        return Fa2BwdTile(64, 128, FA2_BWD_WARPS, v_in_registers=True)
    if head_dim <= 128:
        wide = Fa2BwdTile(64, 128, FA2_BWD_WARPS)
        return wide if fits(wide, 128) else Fa2BwdTile(64, 64, FA2_BWD_WARPS, v_in_registers=True)
    if head_dim <= 160:
        return square if fits(square, 160) else Fa2BwdTile(64, 64, FA2_BWD_WARPS, double_buffer=False)
    if head_dim <= 192:
        return (square if fits(square, 192)
                else Fa2BwdTile(64, 64, FA2_BWD_WARPS, double_buffer=False, v_in_registers=True))
    single = Fa2BwdTile(64, 64, FA2_BWD_WARPS, double_buffer=False)
    if head_dim <= 224 or fits(square, 256):
        return square
    if fits(single, 256):
        return single
    return Fa2BwdTile(64, 32, FA2_BWD_WARPS, double_buffer=False, v_in_registers=True)


def fa2_split_tile(head_dim: int) -> Fa2Tile:
    """The split-KV decode tile at compiled `head_dim` (module docstring)."""
    return Fa2Tile(FA2_SPLIT_BLOCK_M, 256 if head_dim <= 64 else 128 if head_dim <= 128 else 64, FA2_SPLIT_WARPS)
