"""The GPU model's sparse forward (`archsim.model.gpu_sparse.fitting_fwd_launch`: MInference's 64 x 64 tiles, 4
warps, 2 stages) against archsim's sparse Triton kernels timed on an H200 (`reports/measured/`, the rows of
`archsim measure --kernels block_sparse,vertical_slash`, both grids).

Each row's tile set is rebuilt from the pattern the harness timed: a block list's count per query block is
min(i + 1, k_b) whatever blocks it draws; a vertical-slash pattern's tiles (its ranges' 64-key steps and its
gathered columns, 64 at a time) come from the kernels' own index build on a pattern drawn as the harness draws it
(one head's draw: every head of the timed call draws from the same law). The model takes the tiles of archsim's
family (v2, fitted on the H200's dense archsim kernels), every tile masked as the kernels mask every tile.
Tolerances are the README's ("Sparse kernels on the H200"). The kernel modules are imported after `triton_cpu`
has switched the Triton interpreter on, as the kernels' own tests import them: a kernel module first imported with
it off makes a later `archsim measure --interpret` in the same process fail.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from triton_cpu import torch  # noqa: F401  (the interpreter on first: see the module docstring)

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase, launch_time
from archsim.model.gpu_sparse import BLOCK, KERNEL_STAGES, KERNEL_WARPS, fitting_fwd_launch

MEASURED = Path(__file__).resolve().parent.parent / "reports" / "measured"
FILES = ("measured-NVIDIA-H200.csv", "measured-heldout-NVIDIA-H200.csv")


def _rows() -> list[dict]:
    rows = [r for name in FILES for r in csv.DictReader((MEASURED / name).open(encoding="utf-8"))
            if "MInference" in r["kernel"]]
    for r in rows:
        r["sizes"] = {k: int(v) for k, v in (p.split("=", 1) for p in r["note"].split("; ") if "=" in p)
                      if k in ("block_topk", "vertical_size", "slash_size")}
    return rows


def _tiles(row: dict) -> np.ndarray:
    """Key tiles per query block of one head of the timed pattern."""
    from archsim.kernels import block_sparse, vertical_slash

    n, blocks = int(row["seqlen"]), math.ceil(int(row["seqlen"]) / BLOCK)
    if "block_topk" in row["sizes"]:
        _, count = block_sparse.random_block_list(1, 1, n, row["sizes"]["block_topk"], BLOCK)
        return count[0, 0].numpy().astype(float)
    index = vertical_slash.vertical_slash_index(
        *vertical_slash.random_pattern(1, 1, n, row["sizes"]["vertical_size"], row["sizes"]["slash_size"]), n, BLOCK)
    ranges = np.zeros(blocks)
    for i in range(blocks):
        count = int(index.range_count[0, 0, i])
        span = (index.range_end[0, 0, i, :count] - index.range_start[0, 0, i, :count]).numpy()
        ranges[i] = np.ceil(span / BLOCK).sum()
    return ranges + np.ceil(index.column_count[0, 0].numpy() / BLOCK)


@pytest.fixture(scope="module")
def ratios() -> dict[tuple[str, int, int], float]:
    """(kernel, head_dim, seqlen) -> predicted / measured kernel time."""
    gpu, params = load_gpu("h200-sxm"), load_calibration().family_params("archsim")
    found = {}
    for row in _rows():
        n, heads, head_dim = int(row["seqlen"]), int(row["heads"]), int(row["head_dim"])
        tiles = _tiles(row)
        case = AttentionCase("fwd", int(row["batch"]), heads, heads, head_dim, n, True, row["dtype"])
        launch = fitting_fwd_launch("sparse fwd", case, gpu, BLOCK, KERNEL_WARPS, KERNEL_STAGES,
                                    (np.zeros_like(tiles), tiles))
        kind = "block_sparse" if "block-sparse" in row["kernel"] else "vertical_slash"
        found[(kind, head_dim, n)] = launch_time(launch, gpu, params).time_s / (float(row["value"]) * 1e-3)
    return found


def test_the_model_times_the_launch_the_kernels_make() -> None:
    """The model's sparse forward (`gpu_sparse`: warps, the stages it tries first) is the kernels' launch
    (`kernels/launch.py`), both MInference's."""
    from archsim.kernels.launch import MINFERENCE_STAGES, MINFERENCE_WARPS

    assert (KERNEL_WARPS, KERNEL_STAGES[0]) == (MINFERENCE_WARPS, MINFERENCE_STAGES)


def test_every_sparse_row_is_rebuilt(ratios) -> None:
    assert len(ratios) == 10
    assert {(k, d) for k, d, _ in ratios} == {("block_sparse", 128), ("vertical_slash", 128), ("block_sparse", 64),
                                              ("vertical_slash", 64)}


def test_sparse_kernels_at_head_dim_128(ratios) -> None:
    """At head_dim 128 (16K-128K) the model is fast: block-sparse by 17-22 % (within 25 %), vertical-slash by
    25-30 % (within 35 %). It times a 64-row tile about 8 % faster than the H200 ran the dense kernel at that tile,
    and it prices a listed tile as a dense one: block-sparse over every causal block ran 5 % slower than the dense
    kernel at the same tile (its block index loaded before each K/V tile), and vertical-slash walks ranges in
    64-key steps that straddle key blocks and gathers columns as 64 scattered rows of K and V
    (sparse-configs-NVIDIA-H200.txt; the split between these is not measured)."""
    floors = {"block_sparse": 0.75, "vertical_slash": 0.65}
    at_128 = {key: r for key, r in ratios.items() if key[1] == 128}
    assert len(at_128) == 8
    for key, ratio in at_128.items():
        assert floors[key[0]] <= ratio <= 1.0, (key, ratio)


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="at head_dim 64 (one row each, 32K) the model is 33-35 % fast on both "
                   "kernels; not attributed by a measurement: archsim's family is fitted on the dense kernels' "
                   "128-row tiles, which at head_dim 64 the sparse kernels' 64-row tiles were not timed beside")
def test_sparse_kernels_at_head_dim_64_within_25_percent(ratios) -> None:
    for key, ratio in ratios.items():
        if key[1] == 64:
            assert 0.75 <= ratio <= 1.0, (key, ratio)
