"""FlashAttention-2's decode kernels get no faster as head_dim grows, except where the tile changes as FA2's
launchers change it.

A decode CTA computes its whole BLOCK_M x BLOCK_N tile per key block however few of its rows are live (one query
row in FA2 v2.0.9's forward tile, a GQA group in the split-KV tile): its MMA work per key is BLOCK_M x the compiled
head_dim, so on one tile a wider head is never cheaper. A wider head may be faster only where the tile changes:
- v2.0.9 (the forward kernel, no split): the CTA's rows halve where FA2's forward launcher halves them
  (`archsim.model.gpu_fa2_launch.fa2_fwd_tile`, 128 x 64 with 8 warps -> 64 x 64 with 4). On Ada (99 KB) at head_dim
  192 -> 200 (compiled 224: 128 x 64 needs 112 KB, the threshold of FA2's hdim224 launcher): 415.0 -> 242.4 us on an
  L40S at batch 1, 8 query heads, 1 KV head, 8192 keys, fp16. On the 228 KB GPUs at 224 -> 232 (compiled 256: the
  hdim256 launcher takes 64 x 64 where two of its 96 KB CTAs fit an SM): 343.2 -> 196.7 us on an H100 SXM5. On
  MI300X (64 KB) at 192 -> 200, where neither launcher tile fits and the fallback keeps the launcher's rows (128 x
  16 with 2 warps, then 64 x 32 with 2): 293.1 -> 158.8 us. These are the only v2.0.9 exceptions.
- split-KV (Flash-Decoding, FA2's decode, the 16-row variant): the step's key block halves, so FA2's split
  heuristic sees twice the key blocks and may launch more splits (more CTAs over the SMs), on the same rows. FA2's
  kBlockN is 256 / 128 / 64 up to head_dim 64 / 128 / above (run_mha_fwd_splitkv_dispatch, from memory): at
  64 -> 72 and 128 -> 136 (H100 SXM5 13.32 -> 12.79 and 13.45 -> 12.95 us on the case above). MI300X's 64 KB takes
  a halved key block of `_fa2_fitting`'s fallback instead (FA2 has no MI300X tile; the heuristic reacting to it is
  FA2's): 96 -> 104, 12.79 -> 12.49 us.
Before the fix the fallback halved MI300X's rows first at compiled head_dim 192 (32 x 64 after 64 x 64 at 160): v2.0.9
decode took 73.8 us at head_dim 192 against 117.2 at 160, and Flash-Decoding 12.3 against 13.1. (Since s47 v2.0.9
runs FA2's hdim160 tile, 128 x 32, which fits MI300X in 60 KB: 228.0 us at 160, 293.1 at 192.)
"""

from __future__ import annotations

import itertools

import pytest

from archsim.gpu.load import gpu_names, load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase, TiledLaunch
from archsim.model.gpu_fa2_launch import fa2_fwd_tile
from archsim.model.gpu_flash_plans import FA2_HEAD_DIMS, compiled_head_dim
from archsim.model.gpu_kernels import KERNELS, kernel_directions, plans, predict

FA2_DECODE = tuple(k for k, (family, _) in KERNELS.items() if family == "fa2" and "decode" in kernel_directions(k))
V209 = "FlashAttention v2.0.9"
HEAD_DIMS = tuple(range(64, 257, 8))
# (batch, query heads, KV heads, keys): the audit's MQA case, a GQA group of 4, a batch of 8; keys a multiple of
# every key block
SHAPES = ((1, 8, 1, 8192), (1, 32, 8, 8192), (8, 32, 8, 4096))
ADA = ("l40s", "rtx-4090", "rtx-6000-ada")
SMEM_228_KB = ("h100-sxm5", "h100-pcie", "h200-sxm", "h20", "b200")
V209_TABLE_SWITCHES = ({(gpu, 192, 200) for gpu in (*ADA, "mi300x")}
                       | {(gpu, 224, 232) for gpu in SMEM_228_KB})
# split-KV: where the key block halves (FA2's kBlockN; on MI300X the fallback's, 16-row tiles included)
KEY_BLOCK_HALVINGS = {(64, 72), (128, 136)}
MI300X_KEY_BLOCK_HALVINGS = {(96, 104), (160, 168), (224, 232)}
ELEMENT_BYTES = 2
FA2_PARAMS = load_calibration().family_params("fa2")


def _main(kernel: str, case: AttentionCase, gpu) -> tuple[float, TiledLaunch]:
    """The kernel's time on `case` and its main (first, tiled) launch."""
    result = predict(kernel, case, gpu, FA2_PARAMS)
    assert result.feasible, (kernel, case, gpu.name, result.reason)
    (plan,) = plans(kernel, case, gpu)
    return result.time_s, plan.launches[0]


def _tile(launch: TiledLaunch, case: AttentionCase) -> tuple[int, int, int]:
    """(rows, keys, warps) of a decode launch's step: a step loads a key block of K and V at the case's head_dim
    (2 x keys x head_dim elements) and computes Q·Kᵀ and P·V at the compiled one (4 x rows x keys x width FLOPs)."""
    step = launch.segments[0].tile
    keys = step.load_bytes / (2 * case.head_dim * ELEMENT_BYTES)
    rows = step.mma_flops / (4 * keys * compiled_head_dim(case.head_dim, FA2_HEAD_DIMS))
    return round(rows), round(keys), launch.threads // 32


def _launcher_tile(head_dim: int, gpu) -> tuple[int, int, int]:
    """FA2's forward tile at `head_dim` on `gpu` (v2.0.9 runs one head's non-causal forward)."""
    tile = fa2_fwd_tile(compiled_head_dim(head_dim, FA2_HEAD_DIMS), False, gpu)
    return tile.block_m, tile.block_n, tile.warps


def _slower_steps(kernel: str, gpu_name: str, shape) -> list[tuple[int, int, float, float, tuple, tuple, int, int]]:
    """Each (head_dim, next head_dim) where the kernel gets faster: both times, tiles and CTA counts."""
    gpu = load_gpu(gpu_name)
    batch, heads, kv_heads, keys = shape
    runs = []
    for head_dim in HEAD_DIMS:
        case = AttentionCase("decode", batch, heads, kv_heads, head_dim, keys, False, "fp16")
        time_s, launch = _main(kernel, case, gpu)
        runs.append((head_dim, time_s, _tile(launch, case), launch.ctas))
    return [(d0, d1, t0, t1, tile0, tile1, ctas0, ctas1)
            for (d0, t0, tile0, ctas0), (d1, t1, tile1, ctas1) in itertools.pairwise(runs)
            if t1 < t0 * (1 - 1e-12)]


@pytest.mark.parametrize("gpu_name", gpu_names())
def test_fa2_decode_is_faster_at_a_wider_head_only_where_the_tile_switches(gpu_name: str) -> None:
    assert V209 in FA2_DECODE and "Flash-Decoding" in FA2_DECODE and len(FA2_DECODE) >= 4
    v209_switches = set()
    for kernel in FA2_DECODE:
        for shape in SHAPES:
            for d0, d1, t0, t1, tile0, tile1, ctas0, ctas1 in _slower_steps(kernel, gpu_name, shape):
                where = (kernel, gpu_name, shape, d0, d1, t0, t1, tile0, tile1)
                if kernel == V209:
                    v209_switches.add((gpu_name, d0, d1))
                    gpu = load_gpu(gpu_name)
                    assert tile1[0] == tile0[0] // 2, where
                    assert _launcher_tile(d1, gpu)[0] == _launcher_tile(d0, gpu)[0] // 2, where
                else:  # the same rows on half the key block, over more CTAs (more splits)
                    halvings = MI300X_KEY_BLOCK_HALVINGS if gpu_name == "mi300x" else KEY_BLOCK_HALVINGS
                    assert (d0, d1) in halvings, where
                    assert tile1[0] == tile0[0] and tile1[1] == tile0[1] // 2 and ctas1 > ctas0, where
    assert v209_switches == {s for s in V209_TABLE_SWITCHES if s[0] == gpu_name}


@pytest.mark.parametrize("kernel, tile_160, tile_192", [(V209, (128, 32, 4), (128, 16, 2)),
                                                         ("Flash-Decoding", (64, 64, 4), (64, 32, 2))])
def test_mi300x_decode_keeps_its_rows_when_head_dim_outgrows_64_kb(kernel: str, tile_160: tuple,
                                                                   tile_192: tuple) -> None:
    """At compiled head_dim 192 FA2's tile does not fit MI300X's 64 KB (v2.0.9 runs its forward's 128 x 64 with 8
    warps, (128 + 2 x 64) x 192 x 2 = 96 KB; the split-KV kernel 64 x 64, 72 KB): the fallback halves the key block,
    not the rows: 128 x 16 with 2 warps in (128 + 2 x 16) x 192 x 2 = 60 KB rather than 64 x 32, and 64 x 32 in 48 KB
    rather than 32 x 64 (60 KB). At 160 the launchers' tiles fit (v2.0.9: FA2's hdim160 forward, 128 x 32, 60 KB).
    With one live query row the MMA work per CTA is rows x head_dim x 4 per key: on the same rows 192 / 160 = 1.2
    times head_dim 160's, and the decode is no faster (it was 0.6 times, on 32 rows, before the fallback kept them)."""
    mi300x = load_gpu("mi300x")
    runs = {}
    for head_dim in (160, 192):
        case = AttentionCase("decode", 1, 8, 1, head_dim, 8192, False, "fp16")
        time_s, launch = _main(kernel, case, mi300x)
        step = launch.segments[0].tile
        runs[head_dim] = time_s, _tile(launch, case), step.mma_flops * launch.segments[0].counts[0], launch
    rows, keys, _ = tile_192
    assert runs[160][1] == tile_160 and tile_160[0] == rows
    assert runs[192][1] == tile_192 and runs[192][3].smem_bytes == (rows + 2 * keys) * 192 * 2
    assert runs[192][2] / runs[160][2] == pytest.approx(192 / 160)
    assert runs[192][0] >= runs[160][0]


@pytest.mark.parametrize("gpu_name", gpu_names())
def test_fa2_forward_rows_never_grow_with_head_dim(gpu_name: str) -> None:
    """The forward-type tiles (prefill forward, v2.0.9, split-KV decode) never hold more query rows at a wider head:
    the table's rows fall with head_dim and the fallback keeps the last table tile's rows while a halved key block
    fits."""
    gpu = load_gpu(gpu_name)
    for kernel, direction in ((V209, "decode"), ("Flash-Decoding", "decode"), ("FlashAttention-2", "fwd")):
        rows = [_tile(_main(kernel, case, gpu)[1], case)[0]
                for case in (AttentionCase(direction, 1, 8, 1, d, 8192, False, "fp16") for d in HEAD_DIMS)]
        assert rows == sorted(rows, reverse=True), (kernel, rows)
