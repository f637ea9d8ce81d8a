"""The NeuPIMs NPU (Heo et al., ASPLOS'24): weight-stationary systolic arrays and SIMD vector units.

Spec from ../shared/reference/pim.md §1.2 (artifact `systolic_ws_128x128_dev.json`): 8 arrays of 128x128 PEs,
8 vector units of 128 lanes, 1 GHz, FP16, ~128 MiB SRAM used as a double buffer.

GEMM timing (`gemm_time`), out[M, N] = x[M, K] · w[K, N] with the weights stationary:
- The weight matrix is cut into ceil(K/128)·ceil(N/128) folds, dealt round-robin to the 8 arrays. An op's
  independent GEMMs of one shape (`count`: its heads, its experts) are dealt to the arrays together, count x folds
  of them, as one GEMM's folds are: eight 4-row one-fold GEMMs take one fold time on eight arrays, not eight on one.
- An array issues a fold every max(M, 128) cycles: M input rows stream through while the next fold's 128 weight
  rows preload behind them (assumption: double-buffered PE weight registers, as in TPU v1), so below M = 128 the
  preload sets the pace. Consecutive folds follow each other's wavefront, so the skew fill and drain
  (S_R + S_C - 2 cycles; SCALE-Sim's weight-stationary fold is 2·S_R + S_C + T - 2, Samajdar et al. 2018) is paid
  once per GEMM per array, not per fold, and once for independent GEMMs dealt together; a GEMM that reads another's
  output (an FFN's down projection, an attention's attend after its softmax) starts after that one's drain, so
  dependent GEMMs pay one each. `NPUSpec.fold_timing = "scale-sim"` charges SCALE-Sim's fold instead
  (preload, fill and drain per fold, nothing overlapped): a modelling alternative for attributing differences from
  the paper, not the default.
- The NeuPIMs artifact's own GEMM timing (../shared/reference/neupims-artifact.md §1.2-§1.3), named compatibility
  options: the activations are stationary (a 128 x 128 tile of K x batch rows) and the weights stream through, 128
  rows of a weight tile in 128 / 8 = 16 cycles (the 8 arrays modelled as one array streaming 8x faster). Per
  (batch tile, k tile) with M = ceil(N / 128) weight tiles: `artifact` (branch main, `NeuPIMSystolicWS.cc:437-459`)
  128 + 16 (M - 1) cycles, the preload hiding all but 112 cycles of the fill; `artifact-serial-preload` (branch
  npu-only, `SystolicWS.cc:345-377`) 16 M + 255, each preload waiting for the previous tile's finish. Weights are
  read from HBM once per GEMM and reused by every batch tile, so only the first batch tile overlaps the weight
  stream: time = max(first batch tile, weights / bandwidth) + the other batch tiles (§1.2 "Consequence"). The
  artifact runs one instruction stream, ops one at a time (§1.3), so `count` independent GEMMs take count times one.
- Weights come from HBM once per GEMM at the external bandwidth, double-buffered in SRAM against the arrays, so a
  GEMM takes max(array time, weight bytes / bandwidth): small-batch GEMMs are memory bound. Activations stay in
  SRAM (a 512 x 28672 FP16 activation is 29 MB of 128 MiB): an assumption no code checks (a batch's activations
  depend on the run, and beside them SBI keeps up to `sram_bytes` of weights, `schedule.resident_weight_bytes`,
  the one use of `sram_bytes`: a system spec refuses more, `archsim.systems.system_checks`).
- Word size: the weights streamed are k x n words of the op's own size (`word_bytes`: the workload's, bound into
  the op; FP32 streams twice FP16's bytes, FP8 half). `NPUSpec.element_bytes` is the datapath word the preset
  describes (FP16) and only the default of a direct `gemm_time` call; a system spec may not set it (every op
  carries the workload's `word_bytes`). Assumed for compute at another precision: a PE does one MAC per cycle
  whatever the word size (no FP8 double rate, no multi-pass FP32), so only the bytes moved follow the word size.
Decode attention (`NPUSpec.attention_timing`): `bandwidth` (default) runs the GEMVs on the vector units beside
the K/V stream (`archsim.systems.npu_device`); `artifact-fused-mha` is the npu-only branch's FusedMHA
(`FusedMHA.cc:111-227`, neupims-artifact.md §4.1), `fused_mha_cycles`: per (request, query head) one q.K^T
`GEMM_PRELOAD` of s / 8 cycles, the softmax, then one `GEMM_PRELOAD` of head_dim / 8 cycles per 128-token chunk
plus one, each waiting for the previous instruction's finish (the 255-cycle fill every time): latency-bound.
Vector units (`vector_time_s`): one elementwise op on 128 lanes per unit per cycle (§1.2: add/mul/exp/gelu take one
cycle); how many ops a softmax, a norm or GELU takes is the op's cascade's count (`archsim.systems.npu_device`).
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.arch.spec import ceil_div
from archsim.errors import check_choice

FOLD_TIMINGS = ("pipelined", "scale-sim", "artifact", "artifact-serial-preload")
DEALT_FOLD_TIMINGS = ("pipelined", "scale-sim")  # folds dealt to the arrays (the artifact's: one array 8x faster)
ATTENTION_TIMINGS = ("bandwidth", "artifact-fused-mha")
GEMV_ISSUE_CYCLES = 8  # npu-only:src/SystolicWS.cc:345-377: a GEMV preload on an empty pipeline starts at now + 8


@dataclass(frozen=True)
class NPUSpec:
    """The NeuPIMs NPU's parameters (module docstring; pim.md §1.2): systolic arrays of `array_rows` x
    `array_cols` PEs, vector units of `vector_lanes` lanes, and the GEMM and decode-attention timing options
    (`FOLD_TIMINGS`, `ATTENTION_TIMINGS`), refused when not one of them."""

    systolic_arrays: int = 8
    array_rows: int = 128
    array_cols: int = 128
    vector_units: int = 8
    vector_lanes: int = 128
    clock_hz: float = 1.0e9
    element_bytes: int = 2  # FP16
    sram_bytes: float = 134218 * 1024  # bounds schedule.resident_weight_bytes (module docstring)
    op_energy_pj: float = 0.32  # pJ per arithmetic op (a MAC is two), pim.md §5 "ALU 0.32 pJ per op" [AA-repo]
    fold_timing: str = "pipelined"  # pipelined = folds back to back; scale-sim, artifact, artifact-serial-preload
    attention_timing: str = "bandwidth"  # bandwidth = vector-unit GEMVs beside the K/V stream; artifact-fused-mha

    def __post_init__(self) -> None:
        check_choice("NPUSpec.fold_timing", self.fold_timing, FOLD_TIMINGS)
        check_choice("NPUSpec.attention_timing", self.attention_timing, ATTENTION_TIMINGS)

    @property
    def fill_cycles(self) -> int:
        """Pipeline fill of a preload on the artifact's array: rows + cols - 1 (255, neupims-artifact.md §1.3)."""
        return self.array_rows + self.array_cols - 1

    @property
    def peak_flops_per_s(self) -> float:
        """Peak array FLOP/s: every PE of every array doing one MAC (two FLOPs) a cycle."""
        return 2.0 * self.systolic_arrays * self.array_rows * self.array_cols * self.clock_hz

    @property
    def vector_ops_per_s(self) -> float:
        """Peak elementwise ops per second of the vector units: one per lane per cycle."""
        return self.vector_units * self.vector_lanes * self.clock_hz


@dataclass(frozen=True)
class GemmTime:
    """One GEMM, or `count` independent ones: array time (fill/drain included), weight-streaming time, useful FLOPs
    and HBM bytes; `after_stream_s` is the array time that cannot overlap the weight stream (the artifact's later
    batch tiles)."""

    array_s: float
    memory_s: float
    flops: float
    hbm_bytes: float
    after_stream_s: float = 0.0

    @property
    def time_s(self) -> float:
        return max(self.array_s - self.after_stream_s, self.memory_s) + self.after_stream_s


def array_cycles(npu: NPUSpec, folds: int, rows: int) -> int:
    """Cycles of one array running `folds` weight folds back to back, each streaming `rows` input rows. Pipelined
    (the default): a fold's preload hides behind the previous fold's stream, and the first fold's behind the previous
    GEMM's (a layer's GEMMs run back to back on the arrays), so a GEMM alone would take min(rows, array_rows) more
    (one fold: SCALE-Sim's 2R + C + M - 2, where this gives max(M, R) + R + C - 2)."""
    if folds <= 0:
        return 0
    if npu.fold_timing == "scale-sim":
        return folds * (2 * npu.array_rows + npu.array_cols + rows - 2)
    return folds * max(rows, npu.array_rows) + npu.array_rows + npu.array_cols - 2


def dealt_cycles(npu: NPUSpec, folds: int, rows: int) -> int:
    """Cycles of the busiest array when `folds` folds of `rows` input rows (one GEMM's, or independent GEMMs'
    together) are dealt round-robin to the arrays: `array_cycles` of ceil(folds / arrays), one fill and drain."""
    return array_cycles(npu, ceil_div(folds, npu.systolic_arrays), rows)


def gemm_folds(npu: NPUSpec, k: int, n: int) -> int:
    """The 128 x 128 weight folds of one k x n stationary operand."""
    return ceil_div(k, npu.array_rows) * ceil_div(n, npu.array_cols)


def gemm_time(npu: NPUSpec, m: int, k: int, n: int, memory_bytes_per_s: float,
              streamed_fraction: float = 1.0, word_bytes: int | None = None, count: int = 1) -> GemmTime:
    """`count` independent x[m, k] · w[k, n] (an op's heads or experts) on the arrays with each w streamed from
    HBM, their folds dealt to the arrays together (module docstring); `streamed_fraction` < 1 when part of w is
    still in SRAM from an earlier GEMM on the same weights; `word_bytes` the bytes of one weight word (the op's;
    None: the NPU's `element_bytes`), which sets the bytes streamed, not the array time (module docstring)."""
    if m <= 0 or count <= 0:
        return GemmTime(0.0, 0.0, 0.0, 0.0)
    word_bytes = npu.element_bytes if word_bytes is None else word_bytes
    weight_bytes = float(count * k * n * word_bytes) * streamed_fraction
    flops = 2.0 * count * m * k * n
    if npu.fold_timing not in DEALT_FOLD_TIMINGS:
        tile_cycles = ceil_div(k, npu.array_rows) * artifact_k_tile_cycles(npu, ceil_div(n, npu.array_cols))
        batch_tiles = ceil_div(m, npu.array_cols)
        return GemmTime(count * batch_tiles * tile_cycles / npu.clock_hz, weight_bytes / memory_bytes_per_s, flops,
                        weight_bytes, count * (batch_tiles - 1) * tile_cycles / npu.clock_hz)
    cycles = dealt_cycles(npu, count * gemm_folds(npu, k, n), m)
    return GemmTime(cycles / npu.clock_hz, weight_bytes / memory_bytes_per_s, flops, weight_bytes)


def artifact_k_tile_cycles(npu: NPUSpec, weight_tiles: int) -> int:
    """One (batch tile, k tile) of the artifact's GEMM over `weight_tiles` 128-column weight tiles (module
    docstring): 128 + 16 (M - 1) with `artifact`, 16 M + 255 with `artifact-serial-preload`."""
    # a weight tile's array_cols columns shared by the arrays: 128 / 8 = 16 (`.size = loop_size / 8`,
    # MatMul.cc:316-321); rounded up, so an array count not dividing it (3) or beyond it (256) stays within the peak
    stream = ceil_div(npu.array_cols, npu.systolic_arrays)
    if npu.fold_timing == "artifact-serial-preload":
        return weight_tiles * stream + npu.fill_cycles
    return npu.array_rows + (weight_tiles - 1) * stream


def fused_mha_cycles(npu: NPUSpec, seq_tokens: int, head_dim: int, softmax_cycles: float) -> float:
    """One (request, query head) of the npu-only branch's FusedMHA (module docstring; neupims-artifact.md §4.1):
    (255 + s/8) + softmax + 8 + (255 + head_dim/8) x ceil((s + 127) / 128). CAL (§8): 1,121 cycles measured at
    s = 256 and 826 at s = 128."""
    logits = npu.fill_cycles + ceil_div(seq_tokens, npu.systolic_arrays)
    chunks = ceil_div(seq_tokens + npu.array_rows - 1, npu.array_rows)
    attend = chunks * (npu.fill_cycles + ceil_div(head_dim, npu.systolic_arrays))
    return logits + softmax_cycles + GEMV_ISSUE_CYCLES + attend


def vector_time_s(npu: NPUSpec, ops: float) -> float:
    """Elementwise ops spread over all vector lanes."""
    return ops / npu.vector_ops_per_s
