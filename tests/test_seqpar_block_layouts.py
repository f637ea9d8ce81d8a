"""The softmax schemes' per-device attention blocks stated once (`seqpar_schemes.device_blocks`, a ring's
`ring_layout`), read by their timing, the memory's calls and the arrays' energy; and a rectangular block on an array
costed as an exact square cover of the padded block (`seqpar_compute.square_cover`), not as squares of its short
side over the long side rounded up (a padded 512 x 768 block had cost 512 x 1024)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.systems import seqpar_schemes
from archsim.systems.seqpar import _compute, _device_blocks, parallel_time
from archsim.systems.seqpar_compute import ArrayCompute, square_cover
from archsim.systems.seqpar_schemes import SCHEME_TIMINGS, busy_s, device_blocks, ring_layout
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

ARRAYS = load_topology("fusemax-ici-8")
GPUS = load_topology("hgx-h100-8")
SOFTMAX = ("ring", "zigzag", "stripe", "allgather", "ulysses", "usp", "megatron-sp")


def _spec(scheme: str, topology=GPUS, workload: str = "llama3-8b", seq_len: int = 8192, **fields) -> ParallelSpec:
    return ParallelSpec(scheme, fields.pop("devices", 4), library.load_workload_spec(workload), seq_len, topology.gpu,
                        topology, ulysses=2 if scheme == "usp" else None, **fields)


@pytest.mark.parametrize("scheme", SOFTMAX)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
def test_the_timing_makes_exactly_the_layouts_calls(scheme: str, causal: bool, direction: str,
                                                    attention_calls: set[tuple]) -> None:
    """Every call the scheme's timing makes is one of `device_blocks`' and every block is made (the memory's calls
    are among them: test_seqpar_kernel_memory)."""
    spec = _spec(scheme, causal=causal, direction=direction)
    compute = _compute(spec)
    SCHEME_TIMINGS[scheme](spec, compute)
    assert attention_calls == set().union(*device_blocks(spec, compute.heads, compute.kv_heads, spec.seq_len))


@pytest.mark.parametrize("scheme", SOFTMAX)
def test_the_busiest_devices_blocks_are_the_gpu_timings_compute(scheme: str) -> None:
    """On GPUs too (attention scope, forward): the busiest device's blocks take the scheme's compute."""
    spec = _spec(scheme)
    compute = _compute(spec)
    busiest = max(busy_s(blocks, compute) for blocks in device_blocks(spec, compute.heads, compute.kv_heads,
                                                                      spec.seq_len))
    assert busiest == pytest.approx(SCHEME_TIMINGS[scheme](spec, compute).compute_s, rel=1e-12)


def test_a_changed_ring_layout_moves_the_timing_and_the_blocks_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """One source: zigzag's earlier block made a full c x c one in `ring_layout` alone changes the arrays' time and
    each device's blocks alike (the busiest device's blocks still give the scheme's compute)."""
    spec = _spec("zigzag", ARRAYS, "bert-base", 16384)
    before = parallel_time(spec, reference=False).compute_s
    layout = seqpar_schemes.ring_layout

    def widened(name: str, p: int, c: int, causal: bool):
        calls = layout(name, p, c, causal)
        return replace(calls, below=(c, c, False)) if name == "zigzag" else calls

    monkeypatch.setattr(seqpar_schemes, "ring_layout", widened)
    result = parallel_time(spec, reference=False)
    compute = _compute(spec)
    blocks = _device_blocks(spec, compute)
    assert blocks[-1][(4096, 4096, False, 12, 12)] == 3 and result.compute_s != before
    assert max(busy_s(device, compute) for device in blocks) == pytest.approx(result.compute_s, rel=1e-12)


def test_ring_layouts() -> None:
    assert ring_layout("zigzag", 8, 768, True) == seqpar_schemes.RingLayout((768, 768, True), (768, 384, False),
                                                                             (384, 768, False))
    assert ring_layout("ring", 8, 768, True).above is None
    assert ring_layout("stripe", 8, 768, False).below == (768, 768, False)


# --- rectangles on arrays ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "cover"), [(512, 768, [(512, 1), (256, 2)]), (768, 1024, [(768, 1), (256, 3)]),
                                                (512, 1024, [(512, 2)]), (256, 256, [(256, 1)]),
                                                (1024, 1536, [(1024, 1), (512, 2)])])
def test_square_cover_is_exact(a: int, b: int, cover: list[tuple[int, int]]) -> None:
    assert square_cover(a, b) == cover == square_cover(b, a)
    assert sum(count * side * side for side, count in cover) == a * b


def _macs(compute: ArrayCompute, q: int, k: int, causal: bool = False) -> int:
    """The QK Einsum's MACs over the block's points."""
    return sum(e.ops["mac"] for r in compute._block(q, k, causal, None, None) for e in r.einsums if e.name == "QK")


def test_a_padded_rectangle_costs_its_cover_of_squares() -> None:
    """A 512 x 768 block (bert-base's heads) is a 512 x 512 square and two 256 x 256 ones, one point each side, run
    one after another: its MACs are 3/4 of a 512 x 1024 block's (which it had cost), its time and energy those
    points'. 768 x 1024: 2/3 of 768 x 1536's MACs. A block whose short side divides the long one is unchanged (384 x
    1024 pads to 512 x 1024: two 512 squares)."""
    one = ArrayCompute(ARRAYS.gpu, 1, 12, 12, 64)
    two = ArrayCompute(ARRAYS.gpu, 2, 12, 12, 64)
    assert one.attention_s(512, 768, False) == one.attention_s(512, 512, False) + two.attention_s(256, 256, False)
    assert one.attention_j(512, 768, False) == pytest.approx(
        one.attention_j(512, 512, False) + two.attention_j(256, 256, False), rel=1e-12)
    assert _macs(one, 512, 768) == 12 * 64 * 512 * 768 and 4 * _macs(one, 512, 768) == 3 * _macs(one, 512, 1024)
    assert 3 * _macs(one, 768, 1024) == 2 * _macs(one, 768, 1536)
    assert one.attention_s(512, 768, False) < one.attention_s(512, 1024, False)
    assert one.attention_s(768, 1024, False) < one.attention_s(768, 1536, False)
    assert one.attention_s(384, 1024, False) == 2 * one.attention_s(512, 512, False)


def test_zigzag_at_6144_on_8_arrays_pays_its_half_chunks_padding_once() -> None:
    """bert-base, N = 6144 on 8 FuseMax arrays: zigzag's last device runs its causal 768 x 768 diagonal and 7
    earlier devices' 768 x 384 blocks, each padded to 768 x 512 (384 keys are 1.5 of FuseMax's 256-key tiles), whose
    MACs are those of the padded block (before: 768 x 1024, padded twice over). Not stripe's 8 causal 768 x 768
    blocks: those pad nothing (768 is 3 tiles), so zigzag stays above stripe here (the padding, and each square
    reading its own operands: `seqpar_compute`'s assumptions)."""
    zigzag = parallel_time(_spec("zigzag", ARRAYS, "bert-base", 6144, devices=8), reference=False)
    stripe = parallel_time(_spec("stripe", ARRAYS, "bert-base", 6144, devices=8), reference=False)
    one = ArrayCompute(ARRAYS.gpu, 1, 12, 12, 64)
    diagonal, earlier = one.attention_s(768, 768, True), one.attention_s(768, 384, False)
    assert zigzag.compute_s == pytest.approx(diagonal + 7 * earlier, rel=1e-12)
    assert stripe.compute_s == pytest.approx(8 * diagonal, rel=1e-12)
    assert _macs(one, 768, 384) == 12 * 64 * 768 * 512
    assert zigzag.compute_s < diagonal + 7 * one.attention_s(768, 1024, False)
