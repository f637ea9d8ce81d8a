"""Launch plans of the baseline attention kernels: Triton's tutorial fused attention, eager PyTorch and archsim's
own Triton kernels (`kernels/`), the tiled ones built on the fused launches of `archsim.model.gpu_flash_plans`.

Each family's `*_plans(variant, case, gpu)` is its `Family.plans` in `archsim.model.gpu_kernels` (the registry,
which refuses what a kernel cannot run before calling it): the `Plan`s (launch lists) the kernel runs for an
`AttentionCase` on a `GPU`.

Families and the kernels (names as in `attention_measured.csv`) they cover:
- `triton_tutorial`: Triton's `06-fused-attention.py` as published on triton-lang.org: forward 128x64 tiles
  (off-diagonal blocks unmasked, then the diagonal band; where such a CTA does not fit, as at head_dim 256 on A100
  or Ada, the first configuration of its autotune space that does, `tutorial_fwd_configs`), backward one program
  per 128 keys computing dK/dV over 32-row query steps (16 on the diagonal) and then dQ for 128 queries over
  32-key steps (16 on the diagonal), one configuration (its CTA fits no A100, Ada or MI300X SM at head_dim 256),
  only at lengths that are a multiple of 128 (it asserts N_CTX % 128 == 0: another length has no backward plan).
  Its benchmark casts to fp8 for the forward only: fp8 backward rows run in fp16. Triton emits the GPU's native
  MMA (wgmma on Hopper).
- `archsim`: archsim's own Triton kernels (`kernels/`, timed by `archsim measure`), from their launchers: the
  FlashAttention-2 forward (128 x 64 tiles, 3 stages) and backward (row-dot kernel, fp32 dQ zeroed, a CTA per 64
  keys with atomic dQ, the cast), the naive 3-pass kernels (S written, a row softmax in place, O = A V) and the
  split-KV GQA decode (the group packed in a tile of max(16, next power of two) rows, about two programs per SM,
  the merge always run). Every tile is masked (the kernels bound-check each key tile). Calibration v1 (no
  measurement of them) gives them the Triton tutorial's fitted efficiencies (native MMA) and eager PyTorch's DRAM
  efficiency (`Param.shared_from`); v2, the default, fits them on their measured H200 rows.
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
Head dims: the Triton tutorial and archsim's kernels refuse any head_dim but their powers of two (no padding).
"""

from __future__ import annotations

import numpy as np

from archsim.arch.gpu import GPU
from archsim.arch.spec import ceil_div
from archsim.model.gpu import (
    PRECISION_BYTES,
    AttentionCase,
    GemmLaunch,
    Plan,
    Segment,
    StreamLaunch,
    TiledLaunch,
    ctas_per_sm,
)
from archsim.model.gpu_flash_plans import (
    ACC_BYTES,
    LSE_BYTES,
    backward_from,
    bwd_launch,
    fwd_counts,
    fwd_launch,
    per_query_head_kv,
    split_decode_launches,
    uniform_splits,
    warpgroup,
)
from archsim.model.gpu_tiles import lightning_tile, split_bwd_tile

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
# The backward's `PRE_BLOCK`: `_attention.backward` asserts N_CTX % PRE_BLOCK == 0 (its forward asserts no length)
TUT_BWD_PRE_BLOCK = 128


def _tutorial_bwd(case: AttentionCase, gpu: GPU) -> tuple:
    m1, n1, m2, n2, warps, stages = TUT_BWD
    precision = "fp16" if case.precision == "fp8" else case.precision  # the benchmark casts fp8 for fwd only
    e = PRECISION_BYTES[precision]
    d, bh, n = case.head_dim, case.batch * case.heads, case.seqlen
    group = warpgroup("native", gpu)
    programs = ceil_div(n, n1)
    start = np.arange(programs) * n1
    if case.causal:
        dkdv_masked = np.full(programs, n1 // (m1 // TUT_SLICE))
        dkdv = ceil_div(np.maximum(0, n - start - n1), m1)  # rounded up, as below: every row under the diagonal
        dq_masked = np.full(programs, m2 // (n2 // TUT_SLICE))
        dq = start // n2
    else:
        dkdv_masked, dq_masked = np.zeros(programs, int), np.zeros(programs, int)
        dkdv, dq = np.full(programs, ceil_div(n, m1)), np.full(programs, ceil_div(n, n2))
    tiles = (split_bwd_tile(m1 // TUT_SLICE, n1, d, warps, group, e, True, "dkdv"),
             split_bwd_tile(m1, n1, d, warps, group, e, False, "dkdv"),
             split_bwd_tile(m2, n2 // TUT_SLICE, d, warps, group, e, True, "dq"),
             split_bwd_tile(m2, n2, d, warps, group, e, False, "dq"))
    counts = (dkdv_masked, dkdv, dq_masked, dq)
    segments = tuple(Segment(t, c, bh) for t, c in zip(tiles, counts, strict=True))
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
    configurations that compile, and which one it keeps is not modelled (ours: the first in the list). With none
    fitting, `TUT_FWD`, whose refusal names what it needs."""
    def build(bm: int, bn: int, warps: int, stages: int) -> TiledLaunch:
        return fwd_launch("fwd", case, gpu, bm, bn, warps, "native", "mma_efficiency_fwd", False, False, stages,
                          p_to_fp8=case.precision == "fp8")

    for config in tutorial_fwd_configs(gpu):
        launch = build(*config)
        if ctas_per_sm(launch, gpu) > 0:
            return launch
    return build(*TUT_FWD)


def tutorial_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """The Plans of Triton's tutorial fused attention for `case` (module docstring; `variant` unused), or why it
    cannot run: a head_dim other than 16, 32, 64, 128 or 256, grouped-query attention (its Q, K and V are one
    (Z, H, N_CTX, HEAD_DIM) shape: `per_query_head_kv`), or a backward (fwd+bwd included) at a length that is not a
    multiple of `TUT_BWD_PRE_BLOCK` (the tutorial asserts it; its forward runs any length)."""
    if case.head_dim not in (16, 32, 64, 128, 256):
        return f"the Triton tutorial needs head_dim in 16, 32, 64, 128, 256 (got {case.head_dim})"
    if problem := per_query_head_kv("the Triton tutorial", case):
        return problem
    if case.direction != "fwd" and case.seqlen % TUT_BWD_PRE_BLOCK:
        return (f"the Triton tutorial's backward needs a sequence length that is a multiple of {TUT_BWD_PRE_BLOCK} "
                f"(its `_attention.backward` asserts N_CTX % {TUT_BWD_PRE_BLOCK} == 0; got {case.seqlen})")
    fwd = _tutorial_fwd(case, gpu)
    launches = {"fwd": lambda: (fwd,), "bwd": lambda: _tutorial_bwd(case, gpu),
                "fwd+bwd": lambda: (fwd, *_tutorial_bwd(case, gpu))}[case.direction]()
    return (Plan("triton-tutorial", launches, backward_from=backward_from(case)),)


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


def pytorch_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """The Plan of eager PyTorch attention for `case` (module docstring; `variant` unused): the Hugging Face eager path
    at decode, the standard attention's passes otherwise, each holding what it materialises."""
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
    unmasked, masked = fwd_counts(case.seqlen, bm, bn, case.causal)
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
    merge kernel always run. Its stages are Triton's default, or the deepest pipeline a block holds where they do
    not fit (`deepest_fitting`, as the Lightning kernel's: three stages at head_dim 128 take 100 KB, above sm86's
    and sm89's 99 KB a block)."""
    block_n, warps, stages, per_sm = ARCHSIM_DECODE
    block_h = max(16, 1 << (case.group - 1).bit_length())

    def splits_of(_row_blocks: int, key_blocks: int) -> int:
        wanted = max(1, ceil_div(per_sm * gpu.sm_count, case.batch * case.kv_heads))
        return ceil_div(key_blocks, ceil_div(key_blocks, min(wanted, key_blocks)))

    return deepest_fitting([split_decode_launches(case, gpu, block_h, block_n, warps, depth, "native",
                                                  uniform_splits(splits_of), True, True)
                            for depth in range(stages, 0, -1)], gpu)


def deepest_fitting(pipelines: list[tuple], gpu: GPU) -> tuple:
    """The first of `pipelines` (a Triton kernel's launches at its default `num_stages`, then at each fewer) whose
    CTAs a block of `gpu` holds (`GPU.smem_bytes_per_block`), else the last, which the caller's plan refuses with its
    reason. An assumption (ours, as for the Lightning kernel): Triton's pipeliner is taken to compile fewer stages
    rather than fail where the default's buffers exceed the block's shared memory."""
    return next((launches for launches in pipelines
                 if all(launch.smem_bytes <= gpu.smem_bytes_per_block for launch in launches
                        if isinstance(launch, TiledLaunch))), pipelines[-1])


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
    tile = lightning_tile(block, d, block_f, warps, warpgroup("native", gpu), e)
    heads, columns = case.batch * case.heads, d // block_f
    blocks = ceil_div(n, block)
    counts = np.full(heads * columns, blocks)
    return TiledLaunch("lightning fwd", (Segment(tile, counts),), 32 * warps,
                       stages * (2 * block * d + block * block_f) * e,
                       d * block_f + 2 * block * block_f + block * block, "native", "mma_efficiency_linear",
                       case.precision, 4.0 * heads * n * d * e, heads * columns * blocks * tile.load_bytes,
                       stages - 1, chained_mma=True)


def archsim_plans(variant: str, case: AttentionCase, gpu: GPU) -> tuple[Plan, ...] | str:
    """The Plan of archsim's own Triton kernel `variant` (lightning, decode, naive, or the FlashAttention-2 one) for
    `case` (module docstring), or why it cannot run: a head_dim its launcher does not take, a non-causal or GQA case for
    Lightning, GQA for the naive and flash kernels."""
    if variant == "lightning":
        # its launcher runs 16-128 and was timed at 128: 256 is the model's extrapolation (`LIGHTNING_HEAD_DIMS`)
        if case.head_dim not in LIGHTNING_HEAD_DIMS:
            return (f"archsim's Lightning Attention-2 is modelled for head_dim 16, 32, 64, 128 (what its launcher "
                    f"runs) and 256 (extrapolated), got {case.head_dim}")
        if not case.causal or case.kv_heads != case.heads:
            return "archsim's Lightning Attention-2 kernel is causal, with a K and V per query head"
        # the kernel leaves num_stages at Triton's default (3); a GPU whose block cannot hold three stages of
        # buffers runs the deepest pipeline it holds (`deepest_fitting`)
        launches = deepest_fitting([(_archsim_lightning(case, gpu, stages),)
                                    for stages in range(ARCHSIM_LIGHTNING[2], 0, -1)], gpu)
        return (Plan("archsim lightning", launches),)
    if case.head_dim not in ARCHSIM_HEAD_DIMS:
        return f"archsim's kernels take head_dim 16, 32, 64 or 128 (got {case.head_dim})"
    if variant == "decode":
        return (Plan("archsim decode", _archsim_decode(case, gpu)),)
    kernel = "naive 3-pass" if variant == "naive" else "FlashAttention-2"
    if problem := per_query_head_kv(f"archsim's {kernel} kernel", case):  # launchers of one shape (`attention_dims`)
        return problem
    if variant == "naive":
        return (Plan("archsim naive", _archsim_naive(case), held=_naive_held(case)),)
    return (Plan("archsim flash", _archsim_flash(case, gpu)),)
