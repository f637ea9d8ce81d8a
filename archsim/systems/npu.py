"""The NeuPIMs NPU (Heo et al., ASPLOS'24): weight-stationary systolic arrays and SIMD vector units.

Spec from ../shared/reference/pim.md §1.2 (artifact `systolic_ws_128x128_dev.json`): 8 arrays of 128x128 PEs,
8 vector units of 128 lanes, 1 GHz, FP16, ~128 MiB SRAM used as a double buffer.

GEMM timing (`gemm_time`), out[M, N] = x[M, K] · w[K, N] with the weights stationary:
- The weight matrix is cut into ceil(K/128)·ceil(N/128) folds, dealt round-robin to the 8 arrays.
- An array issues a fold every max(M, 128) cycles: M input rows stream through while the next fold's 128 weight
  rows preload behind them (assumption: double-buffered PE weight registers, as in TPU v1), so below M = 128 the
  preload sets the pace. Consecutive folds follow each other's wavefront, so the skew fill and drain
  (S_R + S_C - 2 cycles; SCALE-Sim's weight-stationary fold is 2·S_R + S_C + T - 2, Samajdar et al. 2018) is paid
  once per GEMM per array, not per fold. `NPUSpec.fold_timing = "scale-sim"` charges SCALE-Sim's fold instead
  (preload, fill and drain per fold, nothing overlapped): a modelling alternative for attributing differences from
  the paper, not the default.
- Weights come from HBM once per GEMM at the external bandwidth, double-buffered in SRAM against the arrays, so a
  GEMM takes max(array time, weight bytes / bandwidth): small-batch GEMMs are memory bound. Activations stay in
  SRAM (a 512 x 28672 FP16 activation is 29 MB of 128 MiB).
Vector units (`vector_time_s`): one elementwise op on 128 lanes per unit per cycle (§1.2: add/mul/exp/gelu take one
cycle), so op counts per element below are the whole model of softmax, layer norm and GELU.
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.errors import check_choice

SOFTMAX_OPS_PER_ELEMENT = 5  # max, subtract, exp, sum, scale by 1/sum
LAYERNORM_OPS_PER_ELEMENT = 7  # mean add, subtract, square, variance add, scale by rsqrt, gamma, beta
GELU_OPS_PER_ELEMENT = 1  # §1.2: gelu is a one-cycle vector op
RESIDUAL_OPS_PER_ELEMENT = 1


FOLD_TIMINGS = ("pipelined", "scale-sim")


@dataclass(frozen=True)
class NPUSpec:
    systolic_arrays: int = 8
    array_rows: int = 128
    array_cols: int = 128
    vector_units: int = 8
    vector_lanes: int = 128
    clock_hz: float = 1.0e9
    element_bytes: int = 2  # FP16
    sram_bytes: float = 134218 * 1024
    op_energy_pj: float = 0.32  # pJ per arithmetic op (a MAC is two), pim.md §5 "ALU 0.32 pJ per op" [AA-repo]
    fold_timing: str = "pipelined"  # pipelined = folds back to back (module docstring); scale-sim = per-fold cost

    def __post_init__(self) -> None:
        check_choice("NPUSpec.fold_timing", self.fold_timing, FOLD_TIMINGS)

    @property
    def peak_flops_per_s(self) -> float:
        return 2.0 * self.systolic_arrays * self.array_rows * self.array_cols * self.clock_hz

    @property
    def vector_ops_per_s(self) -> float:
        return self.vector_units * self.vector_lanes * self.clock_hz


@dataclass(frozen=True)
class GemmTime:
    """One GEMM: array time (fill/drain included), weight-streaming time, useful FLOPs and HBM bytes."""

    array_s: float
    memory_s: float
    flops: float
    hbm_bytes: float

    @property
    def time_s(self) -> float:
        return max(self.array_s, self.memory_s)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def array_cycles(npu: NPUSpec, folds: int, rows: int) -> int:
    """Cycles of one array running `folds` weight folds back to back, each streaming `rows` input rows."""
    if folds <= 0:
        return 0
    if npu.fold_timing == "scale-sim":
        return folds * (2 * npu.array_rows + npu.array_cols + rows - 2)
    return folds * max(rows, npu.array_rows) + npu.array_rows + npu.array_cols - 2


def gemm_time(npu: NPUSpec, m: int, k: int, n: int, memory_bytes_per_s: float,
              streamed_fraction: float = 1.0) -> GemmTime:
    """x[m, k] · w[k, n] on the arrays with w streamed from HBM; `streamed_fraction` < 1 when part of w is still
    in SRAM from an earlier GEMM on the same weights."""
    if m <= 0:
        return GemmTime(0.0, 0.0, 0.0, 0.0)
    folds = _ceil(k, npu.array_rows) * _ceil(n, npu.array_cols)
    cycles = array_cycles(npu, _ceil(folds, npu.systolic_arrays), m)
    weight_bytes = float(k * n * npu.element_bytes) * streamed_fraction
    return GemmTime(cycles / npu.clock_hz, weight_bytes / memory_bytes_per_s, 2.0 * m * k * n, weight_bytes)


def vector_time_s(npu: NPUSpec, ops: float) -> float:
    """Elementwise ops spread over all vector lanes."""
    return ops / npu.vector_ops_per_s
