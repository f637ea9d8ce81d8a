"""Work of one CTA tile of an attention kernel: the cascade's operation counts bound to an SM's pipes.

A FlashAttention-style main-loop step is one tile of the cascade `attention-1pass` (FuseMax Cascade 5,
FlashAttention-2's online softmax) with P = BLOCK_M query rows and M0 = BLOCK_N keys. Its operation counts come
from the cascade analysis (`archsim.cascade.analysis`): the counts of two tiles minus one tile give one step. The
binding to the SM's pipes (the mapping of Einsums onto units):
- tensor cores: the MACs of QK and SLNV (2 FLOPs each);
- SFU: every exp (the score exponentials SLN and the running-max correction PRM);
- FP32 pipe: everything else (max, subtract, row sums, the rescale of the running output SPNV) except RNV's add,
  which the PV MMA performs by accumulating into the rescaled output.
Kernels compute whole tiles: rows beyond the sequence (decode pads one query row to BLOCK_M) and masked scores
cost as much as live ones; a masked tile adds `MASK_OPS_PER_SCORE` FP32 ops per score (index compare, select -inf).

The backward step (FlashAttention-2 Algorithm 2, Dao 2023) recomputes S = QKᵀ and P = exp(S - LSE), then does the
matmuls dV += PᵀdO, dP = dO·Vᵀ, dK += dSᵀQ, dQ += dS·K: 5 matmuls, one exp and `BWD_ALU_OPS_PER_SCORE` FP32 ops per
score (the S - LSE subtract, dP - D, the product with P, and two packed 16-bit conversions of P and dS).

Shared-memory traffic of a matmul C[M,N] = A[M,K]·B[K,N] (`mma_smem_elements`): the CTA's warps split the larger of
M and N; the operand indexed by that dimension is read from SMEM once, the other by every warp (mma.sync loads its
fragments per warp with ldmatrix) or once per warpgroup of 4 warps (Hopper's wgmma reads B from SMEM per
warpgroup). Operands a kernel holds in registers cost nothing.

The counts follow the library's cascades as their files read now (`library_cascade`): a process that edits
`attention-1pass.yaml` gets tiles of the edited cascade at its next call, as a fresh process would; what is
remembered is keyed by the loaded Cascade object (or by the counts read off it), never by a cascade's name alone.
"""

from __future__ import annotations

from functools import lru_cache

from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.cascade.ir import Cascade
from archsim.library import library_cascade
from archsim.memo import identity_cache
from archsim.model.gpu import Tile

CASCADE = "attention-1pass"
LINEAR_CASCADE = "lightning-attention-2"
LINEAR_TENSOR_EINSUMS = ("S", "OI", "OX", "KVB")  # KV's add is the KVB matmul accumulating into the state
TENSOR_EINSUMS = ("QK", "SLNV")
ACCUMULATED_BY_MMA = ("RNV",)
MASK_OPS_PER_SCORE = 2
BWD_ALU_OPS_PER_SCORE = 4
BWD_MATMULS = 5
FP8_CONVERT_OPS_PER_ELEMENT = 0.5  # e5m2 -> fp16 is a byte permute; one instruction converts two elements


def step_ops(block_m: int, block_n: int, head_dim: int) -> tuple[float, float, float]:
    """(tensor FLOPs, exp ops, FP32 ops) of one BLOCK_M x BLOCK_N step of `attention-1pass` as its file reads now
    (`library_cascade`; pure, remembered per loaded cascade)."""
    return _step_ops(library_cascade(CASCADE), block_m, block_n, head_dim)


@identity_cache(maxsize=256)
def _step_ops(cascade: Cascade, block_m: int, block_n: int, head_dim: int) -> tuple[float, float, float]:
    counts = []
    for tiles in (1, 2):
        binding = bind(cascade, {"batch": 1, "heads": 1, "head_dim": head_dim},
                       {"P": block_m, "M": tiles * block_n, "M0": block_n})
        counts.append(analyze(binding).ops)
    step: dict[str, dict[str, int]] = {
        name: {op: counts[1][name][op] - counts[0][name].get(op, 0) for op in counts[1][name]}
        for name in counts[1]}
    mma = sum(2.0 * ops.get("mac", 0) for name, ops in step.items() if name in TENSOR_EINSUMS)
    exp = sum(float(ops.get("exp", 0)) for ops in step.values())
    alu = sum(float(n) for name, ops in step.items() if name not in (*TENSOR_EINSUMS, *ACCUMULATED_BY_MMA)
              for op, n in ops.items() if op not in ("mac", "exp"))
    return mma, exp, alu


def mma_smem_elements(m: int, n: int, k: int, warps: int, warpgroup: bool, a_in_smem: bool = True,
                      b_in_smem: bool = True) -> float:
    """Elements read from shared memory by one C[m,n] = A[m,k]·B[k,n] of a CTA of `warps` warps."""
    readers = max(1, warps // 4) if warpgroup else warps
    a_reads, b_reads = (1, readers) if m >= n else (readers, 1)
    return a_in_smem * m * k * a_reads + b_in_smem * k * n * b_reads


def fwd_tile(block_m: int, block_n: int, head_dim: int, warps: int, warpgroup: bool, element_bytes: int,
             q_in_smem: bool, masked: bool, convert_fp8: bool, p_to_fp8: bool) -> Tile:
    """One forward step: S = Q·Kᵀ, online softmax, O += P·V. K and V tiles are loaded into SMEM; P stays in
    registers. `convert_fp8`: fp8 K/V run on the fp16 path (no fp8 tensor cores); `p_to_fp8`: P is cast to fp8.
    Pure; memoised by the step's counts (`step_ops`) and the argument values and types (a decode run asks for the
    same tile at every call)."""
    return _fwd_tile(step_ops(block_m, block_n, head_dim), block_m, block_n, head_dim, warps, warpgroup,
                     element_bytes, q_in_smem, masked, convert_fp8, p_to_fp8)


@lru_cache(maxsize=1024, typed=True)
def _fwd_tile(counts: tuple[float, float, float], block_m: int, block_n: int, head_dim: int, warps: int,
              warpgroup: bool, element_bytes: int, q_in_smem: bool, masked: bool, convert_fp8: bool,
              p_to_fp8: bool) -> Tile:
    mma, exp, alu = counts
    scores = block_m * block_n
    kv_elements = 2 * block_n * head_dim
    if masked:
        alu += MASK_OPS_PER_SCORE * scores
    if convert_fp8:
        alu += FP8_CONVERT_OPS_PER_ELEMENT * kv_elements
    if convert_fp8 or p_to_fp8:
        alu += FP8_CONVERT_OPS_PER_ELEMENT * scores
    smem = (kv_elements
            + mma_smem_elements(block_m, block_n, head_dim, warps, warpgroup, a_in_smem=q_in_smem)
            + mma_smem_elements(block_m, head_dim, block_n, warps, warpgroup, a_in_smem=False))
    return Tile(mma, exp, alu, smem * element_bytes, kv_elements * element_bytes)




def bwd_tile(block_m: int, block_n: int, head_dim: int, warps: int, warpgroup: bool, element_bytes: int,
             masked: bool) -> Tile:
    """One FlashAttention-2 backward step for a BLOCK_M x BLOCK_N tile (all operands staged through SMEM: Q and dO
    tiles loaded, P and dS written for the transposed matmuls)."""
    scores = block_m * block_n
    mma = BWD_MATMULS * 2.0 * scores * head_dim
    alu = (BWD_ALU_OPS_PER_SCORE + MASK_OPS_PER_SCORE * masked) * scores
    m, n, d = block_m, block_n, head_dim
    smem = (2 * m * d + 2 * scores  # Q, dO tiles in; P, dS out
            + 2 * mma_smem_elements(m, n, d, warps, warpgroup)  # S = Q·Kᵀ, dP = dO·Vᵀ
            + 2 * mma_smem_elements(n, d, m, warps, warpgroup)  # dV += Pᵀ·dO, dK += dSᵀ·Q
            + mma_smem_elements(m, d, n, warps, warpgroup))  # dQ = dS·K
    return Tile(mma, float(scores), alu, smem * element_bytes, (2 * m * d) * element_bytes + 2 * m * 4)


def split_bwd_tile(rows: int, keys: int, head_dim: int, warps: int, warpgroup: bool, element_bytes: int,
                   masked: bool, part: str) -> Tile:
    """A step of the Triton tutorial's backward, which runs dK/dV and dQ as two loops of one program:
    `part` "dkdv" (4 matmuls: Sᵀ, dV, dPᵀ, dK; K and V held in registers) over `rows` queries x `keys` keys, or
    "dq" (3 matmuls: S, dP, dQ; Q and dO in registers) — S and P are recomputed in both."""
    scores = rows * keys
    matmuls = 4 if part == "dkdv" else 3
    alu = (BWD_ALU_OPS_PER_SCORE + MASK_OPS_PER_SCORE * masked) * scores
    if part == "dkdv":  # K, V in registers; Qᵀ and dO tiles streamed through SMEM
        loaded = 2 * rows * head_dim
        smem = loaded + 4 * mma_smem_elements(keys, rows, head_dim, warps, warpgroup, a_in_smem=False)
    else:  # Q, dO in registers; K and V tiles streamed through SMEM
        loaded = 2 * keys * head_dim
        smem = loaded + 3 * mma_smem_elements(rows, keys, head_dim, warps, warpgroup, a_in_smem=False)
    return Tile(matmuls * 2.0 * scores * head_dim, float(scores), alu, smem * element_bytes,
                loaded * element_bytes + rows * 4 * 2)


def lightning_tile(block: int, head_dim: int, block_f: int, warps: int, warpgroup: bool,
                   element_bytes: int) -> Tile:
    """One block step of a Lightning Attention-2 forward program (`kernels/lightning.py`): a block of `block` rows
    against its own keys (S = Q·Kᵀ, masked; OI = S·V), against the state (OX = Q·KV) and into it (KVB = Kᵀ·V), for
    `block_f` of the value columns. The counts are one block's of the cascade `lightning-attention-2` (two blocks'
    minus one's), over the program's value columns; the masked products (S, OI) cost whole tiles, as the kernel
    computes the product and then masks it (`tl.where`), and every block is masked (`MASK_OPS_PER_SCORE`). The FP32
    pipe also adds the two outputs (O), scales them and converts S and the state to the input dtype for their
    products; Q, K and V tiles are loaded through SMEM, S and the state staged through it for their products, and
    the output block written back. Remembered per loaded cascade (`library_cascade`)."""
    return _lightning_tile(library_cascade(LINEAR_CASCADE), block, head_dim, block_f, warps, warpgroup, element_bytes)


@identity_cache(maxsize=64)
def _lightning_tile(cascade: Cascade, block: int, head_dim: int, block_f: int, warps: int, warpgroup: bool,
                    element_bytes: int) -> Tile:
    counts, sizes = [], {}
    for blocks in (1, 2):
        binding = bind(cascade, {"batch": 1, "heads": 1, "head_dim": head_dim, "seq_len": blocks * block,
                                 "block": block, "word_bytes": element_bytes})
        counts.append(analyze(binding).ops)
        sizes = binding.rank_sizes
    share = block_f / sizes["F"]  # the program's value columns of every product but S
    step = {name: {op: n - counts[0][name].get(op, 0) for op, n in ops.items()} for name, ops in counts[1].items()}
    whole = {"S": sizes["C"] * sizes["C"] * sizes["E"], "OI": sizes["C"] * sizes["C"] * sizes["F"]}
    mma = sum(2.0 * whole.get(name, step[name]["mac"]) * (1.0 if name == "S" else share)
              for name in LINEAR_TENSOR_EINSUMS)
    scores, out = block * block, block * block_f
    alu = MASK_OPS_PER_SCORE * scores + step["O"]["add"] * share + out + scores + head_dim * block_f
    loaded = 2 * block * head_dim + block * block_f
    smem = (loaded + 2 * (scores + head_dim * block_f)
            + mma_smem_elements(block, block, head_dim, warps, warpgroup)  # S = Q·Kᵀ
            + mma_smem_elements(block, block_f, block, warps, warpgroup)  # OI = S·V
            + mma_smem_elements(block, block_f, head_dim, warps, warpgroup)  # OX = Q·KV
            + mma_smem_elements(head_dim, block_f, block, warps, warpgroup))  # KVB = Kᵀ·V
    return Tile(mma, 0.0, alu, smem * element_bytes, (loaded + out) * element_bytes)

