"""Launches that repeat one head's CTAs for every head (`Segment(tile, run, copies)`: FlashAttention's forward and
backward grids, `gpu_flash_plans`) are timed from the run, without the per-CTA array (session 27's perf fix:
`archsim parallel --scheme allgather` at P = 1024 and 16M tokens built and reduced arrays of 4M CTAs per call). Each
fast path gives the float of the general path on the grid written out CTA by CTA (`np.tile` of the run, what the
segments held before), and of the schedule loop those fast paths replaced (kept here verbatim). Every comparison is
exact (==), not approximate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_parallel_speed_paths import _reference_schedule_s  # schedule_s before its fast paths

from archsim.gpu.load import load_gpu
from archsim.model.gpu import (
    AttentionCase,
    Segment,
    TiledLaunch,
    ctas_per_sm,
    plan_time,
    schedule_s,
    tiled_launch_time,
)
from archsim.model.gpu_kernels import plans
from archsim.systems.gpu_device import calibrated_gpu_device

GPU = load_gpu("h100-sxm5")
KERNELS = ("FlashAttention-2", "FlashAttention (v1)", "FlashAttention Triton", "FlashAttention-3")


def _params(kernel: str):
    return calibrated_gpu_device(GPU, kernel).kernel_params


def _written_out(launch: TiledLaunch) -> TiledLaunch:
    """The launch with each segment's counts given CTA by CTA (one copy: the general path)."""
    return replace(launch, segments=tuple(Segment(seg.tile, np.tile(seg.run_counts, seg.copies))
                                          for seg in launch.segments))


def _random_run(rng: np.random.Generator, length: int, kind: str) -> np.ndarray:
    if kind == "equal":
        return np.full(length, int(rng.integers(0, 70)))
    if kind == "float":
        return rng.uniform(0.0, 50.0, length)
    if kind == "int32":
        return rng.integers(0, 70, length).astype(np.int32)
    return rng.integers(0, 70, length)


def test_copied_segment_is_its_run_tiled() -> None:
    """Random runs (int64, int32, float64, equal) and copies: the counts CTA by CTA are the run tiled, the CTAs its
    length x copies, and `tiles()` the float of the tiled array's numpy sum (float runs summed over that array)."""
    rng = np.random.default_rng(1)
    tile = plans("FlashAttention-2", AttentionCase("fwd", 1, 1, 1, 128, 1024, False, "bf16"), GPU)[0] \
        .launches[0].segments[0].tile
    for trial in range(400):
        run = _random_run(rng, int(rng.integers(1, 300)), ("int", "int32", "float", "equal")[trial % 4])
        copies = int(rng.choice([1, 2, 3, 7, 32, 1000, int(rng.integers(1, 5000))]))
        seg, tiled = Segment(tile, run, copies), np.tile(run, copies)
        assert seg.ctas == len(tiled)
        assert seg.tiles() == float(tiled.sum())
        assert np.array_equal(seg.counts, tiled) and seg.counts.dtype == tiled.dtype
    one = rng.integers(0, 9, 10)
    assert Segment(tile, one).counts is one  # one copy: the array given, not a copy of it


def test_random_copied_launches_time_as_written_out() -> None:
    """Random grids on FA2's forward launch: two segments repeating runs (equal CTAs: the uniform path; uneven: the
    per-CTA times tiled from the run's), or segments whose runs differ in length or copies (the general path), at
    grids below and far above the slots: `schedule_s` at every occupancy and `tiled_launch_time` equal the written-out
    launch's, and the schedule the replaced loop's."""
    rng = np.random.default_rng(2)
    params = _params("FlashAttention-2")
    base = plans("FlashAttention-2", AttentionCase("fwd", 1, 8, 8, 128, 2048, True, "bf16"), GPU)[0].launches[0]
    k = ctas_per_sm(base, GPU)
    for trial in range(120):
        length = int(rng.integers(1, 80))
        copies = int(rng.choice([2, 3, 5, 33, 132, int(rng.integers(2, 700))]))
        kinds = ("int", "float", "equal", "int32")
        first = Segment(base.segments[0].tile, _random_run(rng, length, kinds[trial % 4]), copies)
        if trial % 5 == 4:  # the same CTAs written another way: a run of twice the length, half the copies
            second = Segment(base.segments[1].tile, np.tile(_random_run(rng, length, "int"), 2), copies // 2)
            first = Segment(first.tile, np.tile(first.run_counts, 2), copies // 2)
            if trial % 10 == 9:
                second = Segment(second.tile, second.counts)  # one copy beside a copied run
        else:
            second = Segment(base.segments[1].tile, _random_run(rng, length, kinds[(trial // 4) % 4]), copies)
        launch = replace(base, segments=(first, second))
        written = _written_out(launch)
        for occupancy in range(1, k + 1):
            expected = schedule_s(written, GPU, params, occupancy)
            assert schedule_s(launch, GPU, params, occupancy) == expected == \
                _reference_schedule_s(written, GPU, params, occupancy), (trial, occupancy)
        assert tiled_launch_time(launch, GPU, params) == tiled_launch_time(written, GPU, params)


@pytest.mark.parametrize("kernel", KERNELS)
def test_flash_launches_time_as_written_out(kernel: str) -> None:
    """Each FlashAttention family's launches for random shapes (batch, heads, GQA, head_dim, length, causal or not,
    fwd, bwd and fwd+bwd): every tiled launch's segments repeat one head's counts, and the plan's time and each
    launch's result equal those of the launches written out CTA by CTA; the schedule equals the replaced loop's."""
    rng = np.random.default_rng(KERNELS.index(kernel))
    params = _params(kernel)
    directions = ("fwd",) if kernel == "FlashAttention-3" else ("fwd", "bwd", "fwd+bwd")
    for trial in range(24):
        kv_heads = int(rng.choice([1, 2, 8]))
        case = AttentionCase(directions[trial % len(directions)], int(rng.integers(1, 6)),
                             kv_heads * int(rng.choice([1, 4])), kv_heads, int(rng.choice([64, 96, 128])),
                             int(rng.choice([128, 1000, 2048, 4097, int(rng.integers(64, 9000))])),
                             bool(trial % 2), "bf16")
        found = plans(kernel, case, GPU)
        if isinstance(found, str):  # a kernel without grouped-query attention refuses a GQA case
            assert case.kv_heads != case.heads and "takes a K and V per query head" in found, found
            continue
        for plan in found:
            written = replace(plan, launches=tuple(_written_out(launch) if isinstance(launch, TiledLaunch)
                                                   else launch for launch in plan.launches))
            tiled = [launch for launch in plan.launches if isinstance(launch, TiledLaunch)]
            assert tiled and all(seg.copies == case.batch * case.heads for launch in tiled
                                 for seg in launch.segments)
            assert plan_time(plan, GPU, params) == plan_time(written, GPU, params), (case, plan.name)
            for launch in tiled:
                k = ctas_per_sm(launch, GPU)
                assert schedule_s(launch, GPU, params, k) == _reference_schedule_s(_written_out(launch), GPU, params, k)


def test_allgather_sized_launch_is_timed_without_its_grid() -> None:
    """The rectangle of `archsim parallel --scheme allgather` at P = 1024 and 16M tokens, its last device's 8192 x
    2047 x 8192-token block (2047 square calls of Llama-3-8B's 32 heads in one launch: 2047 x 32 x 64 = 4,192,256
    CTAs of 64 key tiles): timed without building a per-CTA array (no segment's `counts` is ever read), to the float
    of the launch written out; the causal diagonal call too."""
    params = _params("FlashAttention-2")
    for calls, causal in ((2047, False), (1, True)):
        plan = plans("FlashAttention-2", AttentionCase("fwd", calls, 32, 8, 128, 8192, causal, "bf16"), GPU)[0]
        launch = plan.launches[0]
        assert launch.ctas == calls * 32 * 64
        time_s, results = plan_time(plan, GPU, params)
        assert all("counts" not in vars(seg) for seg in launch.segments)
        assert (time_s, results) == plan_time(replace(plan, launches=(_written_out(launch),)), GPU, params)
    uniform = plans("FlashAttention-2", AttentionCase("fwd", 2047, 32, 8, 128, 8192, False, "bf16"), GPU)[0]
    # every CTA of the dense rectangle walks the 8192 / 64 = 128 key blocks of FA2's 128 x 64 tile, none masked
    assert [seg.run_counts.tolist() for seg in uniform.launches[0].segments] == [[128] * 64, [0] * 64]
