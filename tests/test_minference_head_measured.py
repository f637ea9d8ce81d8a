"""One head's vertical-slash call as MInference's Python runs it, timed part by part on a lent H200
(`python benchmarks/minference_head.py`, output in `reports/measured/minference-head-NVIDIA-H200.txt`), against the
GPU model's per-head plan (`archsim.model.gpu_sparse`) at the calibration `archsim reproduce sparse` uses (the
Triton tutorial family, fitted on A100 rows, for the kernel; the PyTorch family for the eager estimate). What the
README states of it ("Sparse prefill and KV-cache selection") is tested here.
"""

from __future__ import annotations

import re

import pytest
from measured_lines import matches

from archsim.gpu.load import load_gpu
from archsim.model import gpu_sparse
from archsim.model.gpu import launch_time
from archsim.systems.sparse_prefill import _sparse_params

PART = re.compile(r"N=(\d+)\s+\((\d+),(\d+)\) (.+?)\s+([\d.]+) ms$")
ESTIMATE_PARTS = ("estimate (einsum .. both top-k)", "pad q, k, v to 64", "sort the indices")


def _measured() -> dict[tuple[int, int, int], dict[str, float]]:
    """(tokens, k_v, k_s) -> part -> seconds."""
    found: dict[tuple[int, int, int], dict[str, float]] = {}
    for match in matches("minference-head-NVIDIA-H200.txt", PART):
        found.setdefault((int(match[1]), int(match[2]), int(match[3])), {})[match[4].strip()] = float(match[5]) * 1e-3
    return found


def _model(n: int, k_v: int, k_s: int) -> tuple[float, float, float]:
    """(the kernel's seconds, the eager launches' but the index build's, the call's host floor) of one head."""
    gpu, params = load_gpu("h200-sxm"), _sparse_params()
    eager, kernel = gpu_sparse.head_launches(gpu_sparse.SparsePattern("vertical_slash", k_v=k_v, k_s=k_s), n, 128,
                                             gpu, "bf16", 2)
    estimate = [launch for launch in eager if not launch.name.startswith("build")]
    host_s = (len(eager) + len(kernel) + gpu_sparse.VIEW_OPS) * params.eager["host_op_s"]
    return (launch_time(kernel[0], gpu, params.kernel).time_s,
            sum(launch_time(launch, gpu, params.eager).time_s for launch in estimate), host_s)


def test_six_settings_were_timed_part_by_part() -> None:
    measured = _measured()
    assert sorted(measured) == [(n, k_v, k_s) for n in (10000, 100000)
                                for k_v, k_s in ((30, 800), (1000, 6096), (3500, 100))]
    assert all(len(parts) == 7 for parts in measured.values())


def test_the_kernel_at_the_models_placement_runs_longer_than_the_model() -> None:
    """On the model's own placement (the k_s nearest diagonals, the first k_v columns) one head's kernel took
    1.77-2.53x the model's time: the tutorial family's A100 fit prices a gathered or range-stepped 64 x 64 tile as a
    dense one on the H200 (the direction of the MInference gap)."""
    for (n, k_v, k_s), parts in _measured().items():
        ratio = parts["kernel, the model's placement"] / _model(n, k_v, k_s)[0]
        assert 1.75 <= ratio <= 2.55, (n, k_v, k_s, ratio)


def test_the_estimate_is_host_bound_and_several_times_the_models() -> None:
    """The estimate with its pads and sorts took 0.41-0.56 ms at 10K (host-bound: Python issues some 25 ops, two
    of them copies from the host) and 0.70-0.90 ms at 100K, 3.7-5.6x the larger of the model's launches and its
    host floor for the whole call (20 ops at 5 us: 13 launches, the kernel, `VIEW_OPS`)."""
    for (n, k_v, k_s), parts in _measured().items():
        measured_s = sum(parts[p] for p in ESTIMATE_PARTS)
        _, launches_s, host_s = _model(n, k_v, k_s)
        assert (0.40e-3 <= measured_s <= 0.57e-3) if n == 10000 else (0.69e-3 <= measured_s <= 0.91e-3), n
        assert 3.7 <= measured_s / max(launches_s, host_s) <= 5.7, (n, k_v, k_s)


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="the per-head model misses the estimate's host time and the sparse kernel's "
                          "per-tile cost (the two tests above)")
def test_a_whole_head_call_within_20_percent() -> None:
    for (n, k_v, k_s), parts in _measured().items():
        kernel_s, launches_s, host_s = _model(n, k_v, k_s)
        whole_s = parts["whole head call"] - parts["index build (archsim's, torch)"]  # MInference builds in CUDA
        assert abs(max(kernel_s + launches_s, host_s) / whole_s - 1) <= 0.20, (n, k_v, k_s)
