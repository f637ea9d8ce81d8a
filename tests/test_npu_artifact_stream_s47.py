"""The artifact's GEMM timing on arrays other than its 8 of 128 x 128 (auditor 607): a (batch tile, k tile) streams
each 128-column weight tile's columns over the arrays, 128 / 8 = 16 cycles (MatMul.cc's `loop_size / 8`). The model
had divided the array's rows, not its columns, and floored: 8 arrays of 128 x 256 then ran 256 x 128 x 2048 in 240
cycles, below the 256 its MACs need at the peak (1.07 of it), and 256 arrays streamed a tile in 0 cycles."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim.systems.npu import NPUSpec, gemm_time


def _peak_fraction(npu: NPUSpec, m: int, k: int, n: int) -> float:
    """The GEMM's MACs over what the arrays can do in its array time."""
    t = gemm_time(npu, m, k, n, math.inf)
    cycles = t.array_s * npu.clock_hz
    return m * k * n / (npu.systolic_arrays * npu.array_rows * npu.array_cols * cycles)


@pytest.mark.parametrize("mode", ["artifact", "artifact-serial-preload"])
@pytest.mark.parametrize(("fields", "shape"), [({"array_cols": 256}, (256, 128, 2048)),
                                               ({"array_cols": 256}, (1024, 4096, 12288)),
                                               ({"systolic_arrays": 3}, (128, 128, 128000)),
                                               ({"systolic_arrays": 256}, (128, 128, 8192))])
def test_the_arrays_never_run_above_their_peak(mode: str, fields: dict, shape: tuple) -> None:
    npu = replace(NPUSpec(), fold_timing=mode, **fields)
    assert _peak_fraction(npu, *shape) <= 1.0


def test_the_artifacts_own_arrays_keep_its_16_cycles() -> None:
    # 8 arrays of 128 x 128: one batch tile, one k tile, 4 weight tiles: 128 + 16 x 3 cycles
    npu = replace(NPUSpec(), fold_timing="artifact")
    assert (npu.systolic_arrays, npu.array_rows, npu.array_cols) == (8, 128, 128)
    assert gemm_time(npu, 128, 128, 512, math.inf).array_s * npu.clock_hz == pytest.approx(128 + 16 * 3)
