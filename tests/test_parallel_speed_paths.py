"""The fast paths of `archsim parallel` (session 26's perf audit) give the floats of the loops they replace: a ring's
work as its three values (`RingWork`) and its schedule stepped in numpy (`ring_schedule_s`), and a launch of equal
CTAs timed from one CTA (`schedule_s`, `_uniform_schedule_s`). The references below are the replaced loops, kept
here verbatim but for the ring's hop home, which now follows the last step's compute (session 46); every comparison
is exact (==), not approximate."""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import replace

import numpy as np
import pytest

from archsim.gpu.load import load_gpu
from archsim.model.gpu import (
    AttentionCase,
    TiledLaunch,
    _list_schedule_s,
    _uniform_schedule_s,
    cta_overhead_s,
    ctas_per_sm,
    makespan_s,
    schedule_s,
    step_time_s,
)
from archsim.model.gpu_kernels import plans
from archsim.systems.gpu_device import calibrated_gpu_device
from archsim.systems.seqpar_schemes import RingWork, _ring_work, ring_schedule_s

# --- the replaced loops ------------------------------------------------------------------------------------------

def _reference_ring_work(layout: str, p: int, c: int, causal: bool, compute) -> list[list[float]]:
    work = []
    for d in range(p):
        row = []
        for s in range(p):
            j = (d - s) % p
            if not causal:
                row.append(compute.attention_s(c, c, False))
            elif layout == "ring":
                row.append(compute.attention_s(c, c, True) if j == d else
                           compute.attention_s(c, c, False) if j < d else 0.0)
            elif layout == "zigzag":
                row.append(compute.attention_s(c, c, True) if j == d else
                           compute.attention_s(c, c // 2, False) if j < d else compute.attention_s(c // 2, c, False))
            else:
                row.append(compute.attention_s(c, c, True))
        work.append(row)
    return work


def _reference_ring_schedule_s(work: list[list[float]], hop_s: float, last_hop_s: float = 0.0) -> float:
    p = len(work)
    if p == 1:
        return work[0][0] + last_hop_s
    start = [0.0] * p
    for s in range(p - 1):
        start = [max(start[d] + work[d][s], start[d] + hop_s, start[d - 1] + hop_s) for d in range(p)]
    return max(start[d] + work[d][p - 1] + last_hop_s for d in range(p))


def _reference_schedule_s(launch: TiledLaunch, gpu, params, k: int) -> float:
    if launch.ctas == 0:
        return 0.0
    overhead_s = cta_overhead_s(launch, gpu, params["cta_overhead_cycles"])
    best = math.inf
    for occupancy in range(k, 0, -1):
        resident = min(occupancy, math.ceil(launch.ctas / gpu.sm_count))
        cta_s = overhead_s
        for seg in launch.segments:
            cta_s = cta_s + seg.counts * step_time_s(seg.tile, launch, gpu, params[launch.efficiency], resident)
        slots = gpu.sm_count * occupancy
        durations = np.broadcast_to(cta_s, (launch.ctas,))
        if max(float(durations.max()), float(durations.sum()) / slots) >= best:
            continue
        best = min(best, makespan_s(cta_s, slots))
    return best


class _RandomCompute:
    """A kernel-call timer of random times per distinct call, recording the order it first meets them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.times, self.order = rng, {}, []

    def attention_s(self, q: int, k: int, causal: bool) -> float:
        key = (q, k, causal)
        if key not in self.times:
            self.times[key] = self.rng.uniform(1e-4, 1.0)
            self.order.append(key)
        return self.times[key]


# --- ring --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["ring", "zigzag", "stripe"])
@pytest.mark.parametrize("causal", [True, False])
def test_ring_work_and_schedule_equal_the_matrix_loops(layout: str, causal: bool) -> None:
    """Random call times, P = 1..12: every column, every row sum (Python's left-to-right `sum`), the schedule with
    random hops (compute- and link-bound) and the backward's difference of two works equal the matrix loops' floats,
    and the calls are first timed in the same order (so a refused call is the same one)."""
    rng = random.Random(f"{layout}{causal}")
    for p in range(1, 13):
        for _ in range(4):
            fast, slow = _RandomCompute(random.Random(p)), _RandomCompute(random.Random(p))
            work, matrix = _ring_work(layout, p, 64, causal, fast), _reference_ring_work(layout, p, 64, causal, slow)
            assert fast.order == slow.order
            assert [work.column(s).tolist() for s in range(p)] == [list(col) for col in zip(*matrix, strict=True)]
            assert work.row_sums().tolist() == [sum(row) for row in matrix]
            hop, home = rng.uniform(0.0, 1.2), rng.choice([0.0, rng.uniform(0.0, 1.2)])
            assert ring_schedule_s(work, hop, home) == _reference_ring_schedule_s(matrix, hop, home)
            back = _RandomCompute(random.Random(p + 100))
            minus = _ring_work(layout, p, 64, causal, back).minus(work)
            back_matrix = [[b - f for b, f in zip(rb, rf, strict=True)] for rb, rf in
                           zip(_reference_ring_work(layout, p, 64, causal, back), matrix, strict=True)]
            assert ring_schedule_s(minus, hop, home) == _reference_ring_schedule_s(back_matrix, hop, home)


def test_ring_schedule_of_any_matrix_equals_the_loop() -> None:
    """A P x P matrix of random times (no three-value pattern), as lists or an array: the loop's float."""
    rng = random.Random(7)
    for p in (1, 2, 3, 5, 9, 16):
        for _ in range(10):
            matrix = [[rng.choice([0.0, rng.uniform(0.0, 2.0)]) for _ in range(p)] for _ in range(p)]
            hop, home = rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0)
            expected = _reference_ring_schedule_s(matrix, hop, home)
            assert ring_schedule_s(matrix, hop, home) == expected
            assert ring_schedule_s(np.array(matrix), hop, home) == expected
    assert ring_schedule_s(RingWork(4, 2.0, 2.0, 2.0), 1.0) == 3 * 2.0 + 2.0  # P - 1 steps of max(2, 1), the last 2


# --- launches of equal CTAs --------------------------------------------------------------------------------------

def _brute_uniform(cta_s: float, ctas: int, slots: int, best: float) -> float:
    """The loop's step on an array of `ctas` copies of `cta_s`."""
    durations = np.full(ctas, cta_s)
    if max(float(durations.max()), float(durations.sum()) / slots) >= best:
        return best
    return min(best, makespan_s(durations, slots))


def test_uniform_step_equals_the_array_step_near_ties() -> None:
    """Random durations, grids and slots (grids a multiple of the slots included, where numpy's sum / slots can
    round above the closed form), each against bests at and one or a few ulps around the makespan and the
    bound: the same float."""
    rng = random.Random(3)
    for _ in range(3000):
        slots = rng.choice([132, 264, 396, 528, 7, 1])
        ctas = rng.choice([slots * rng.randint(1, 40), rng.randint(1, 20000)])
        cta_s = rng.uniform(1e-7, 1e-2)
        makespan = math.ceil(ctas / slots) * cta_s
        bound = max(cta_s, float(np.full(ctas, cta_s).sum()) / slots)
        for anchor in (makespan, bound, cta_s):
            for best in (anchor, math.nextafter(anchor, 0.0), math.nextafter(anchor, math.inf),
                         anchor * (1 + 4e-16), anchor * (1 - 4e-16), anchor * 1.5, math.inf):
                assert _uniform_schedule_s(cta_s, ctas, slots, best) == _brute_uniform(cta_s, ctas, slots, best)


def _launch(batch: int, seq_len: int, causal: bool, direction: str = "fwd"):
    gpu = load_gpu("h100-sxm5")
    case = AttentionCase(direction, batch, 8, 8, 128, seq_len, causal, "bf16")
    launches = [launch for plan in plans("FlashAttention-2", case, gpu) for launch in plan.launches
                if isinstance(launch, TiledLaunch)]
    return gpu, calibrated_gpu_device(gpu, "FlashAttention-2").kernel_params, launches


@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
def test_schedule_of_real_launches_equals_the_loop(direction: str) -> None:
    """FlashAttention-2's launches on an H100, batches 1..40 (grids around multiples of the 132 SMs), causal
    (uneven CTAs: the loop) and not (equal CTAs: one CTA timed), and the same launches with random equal tile
    counts: `schedule_s` gives the loop's float at every occupancy from the launch's down."""
    rng = np.random.default_rng(5)
    for batch in (1, 2, 3, 11, 33, 40):
        for seq_len, causal in ((2048, False), (4096, False), (2048, True)):
            gpu, params, launches = _launch(batch, seq_len, causal, direction)
            assert launches
            for launch in launches:
                k = ctas_per_sm(launch, gpu)
                for occupancy in range(1, k + 1):
                    assert schedule_s(launch, gpu, params, occupancy) == \
                        _reference_schedule_s(launch, gpu, params, occupancy)
                equal = replace(launch, segments=tuple(replace(seg, counts=np.full(launch.ctas, rng.integers(0, 9)))
                                                       for seg in launch.segments))
                assert schedule_s(equal, gpu, params, k) == _reference_schedule_s(equal, gpu, params, k)


# --- list schedules in waves -------------------------------------------------------------------------------------

def _reference_list_schedule_s(durations: np.ndarray, slots: int) -> float:
    n = len(durations)
    if n == 0:
        return 0.0
    if (durations == durations[0]).all():
        return math.ceil(n / slots) * float(durations[0])
    free = [0.0] * min(slots, n)
    for duration in durations.tolist():
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


def test_list_schedule_in_waves_equals_the_heap() -> None:
    """Random grids against the CTA-at-a-time heap, exact: few distinct durations in launch patterns (causal rows
    tiled over heads, rising and falling), many ties (small integers, zeros), one long CTA among short ones (waves
    of one: the heap), random floats, slots below and above `WAVE_MIN_CTAS`, grids below and above the slots."""
    rng = np.random.default_rng(11)
    for trial in range(400):
        slots = int(rng.choice([1, 7, 63, 64, 132, 264, 528]))
        n = int(rng.integers(1, 6 * slots + 200))
        kind = trial % 5
        if kind == 0:  # a causal row pattern tiled over heads
            row = 1e-6 * (3 + np.arange(int(rng.integers(1, 40))))
            durations = np.tile(row if rng.random() < 0.5 else row[::-1], n // len(row) + 1)[:n]
        elif kind == 1:  # small integers and zeros: ties everywhere
            durations = rng.integers(0, 4, n).astype(np.float64)
        elif kind == 2:  # one long CTA among short ones
            durations = np.full(n, 1e-6)
            durations[int(rng.integers(0, n))] = 1e-3
        elif kind == 3:
            durations = rng.uniform(1e-7, 1e-4, n)
        else:  # a few distinct values in random order
            durations = rng.choice(rng.uniform(1e-6, 1e-5, 3), n)
        assert _list_schedule_s(durations, slots) == _reference_list_schedule_s(durations, slots), (trial, slots, n)
