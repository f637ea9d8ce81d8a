"""`seqpar.parallel_time` does each thing once (s32): an array point's blocks go through the analytical model once
(its energy reads the blocks its timing costed, not a second compute's), and a causal point whose kernel is a
causal-variant name is refused before any prediction when its scheme has non-causal blocks, with the message the
timing's refusal gave (the call it meets first, and where the non-causal calls come from)."""

from __future__ import annotations

from collections import Counter

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems import seqpar, seqpar_compute
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

ARRAYS = load_topology("fusemax-ici-8")
HGX = load_topology("hgx-h100")
DGX = load_topology("dgx-a100")
LLAMA = library.load_workload_spec("llama3-8b")  # 32 query heads over 8 KV heads
CAUSAL_NAME = "FlashAttention-2 (causal)"
NAME_PROBLEM = (f"{CAUSAL_NAME} names the kernel run with its causal mask, got a non-causal call: name "
                "FlashAttention-2, which runs both")


def _array_ring() -> ParallelSpec:
    """README's array example: a causal ring of 8 FuseMax arrays over llama3-8b at 64K, c = 8192 tokens each."""
    return ParallelSpec("ring", 8, LLAMA, 65536, ARRAYS.gpu, ARRAYS)


def test_an_array_ring_costs_each_block_once(monkeypatch) -> None:
    """A causal ring's calls (`ring_layout`) are its own c x c diagonal (causal) and an earlier device's c x c block
    (full; the later blocks are skipped), and the one-device reference is one causal N x N call: three blocks of
    all 32 heads over 8 KV heads, each through the analytical model once (five before: the energy costed the ring's
    two again)."""
    costed = Counter()
    attention = seqpar_compute.ArrayCompute._attention

    def counted(self, *block):
        costed[block] += 1
        return attention(self, *block)

    monkeypatch.setattr(seqpar_compute.ArrayCompute, "_attention", counted)
    parallel_time(_array_ring())
    assert costed == {(8192, 8192, True, 32, 8): 1, (8192, 8192, False, 32, 8): 1, (65536, 65536, True, 32, 8): 1}


def test_the_array_rings_time_and_energy_by_hand() -> None:
    """From one array's blocks (a fresh compute: diagonal d, earlier block b, their times and energies): ring device
    k runs d once and b k times, so the last device's compute is d + 7 b (its hops hidden under b: time = compute),
    the 8 devices run 8 d and 0 + 1 + ... + 7 = 28 b, and leak `idle_w` for the rest of 8 x the time."""
    spec = _array_ring()
    result = parallel_time(spec)
    compute = seqpar._compute(spec)
    c = 8192
    diagonal, earlier = (c, c, True), (c, c, False)
    d_s, b_s = compute.attention_s(*diagonal), compute.attention_s(*earlier)
    blocks_j = 8 * compute.attention_j(*diagonal) + 28 * compute.attention_j(*earlier)
    assert result.time_s == pytest.approx(d_s + 7 * b_s, rel=1e-12)
    assert result.compute_s == pytest.approx(d_s + 7 * b_s, rel=1e-12)
    idle_s = 8 * result.time_s - (8 * d_s + 28 * b_s)
    assert result.energy_j == pytest.approx(blocks_j + compute.idle_w * idle_s, rel=1e-12)


def test_a_causal_name_is_refused_before_any_prediction(monkeypatch) -> None:
    """`archsim parallel --scheme ring --devices 4 --workload llama3-8b --seq-len 32K --kernel "FlashAttention-2
    (causal)"`: a ring device's earlier block (c = 8192 tokens, a full 8192 x 8192 call) is non-causal, which the
    name cannot run; the refusal comes before the GPU model predicts anything (it had timed the diagonal first)."""
    predictions = []
    predict = seqpar_compute.predict

    def counted(*args, **kwargs):
        predictions.append(args[:2])
        return predict(*args, **kwargs)

    monkeypatch.setattr(seqpar_compute, "predict", counted)
    spec = ParallelSpec("ring", 4, LLAMA, 32768, HGX.gpu, HGX, kernel=CAUSAL_NAME)
    with pytest.raises(SpecError) as refused:
        parallel_time(spec)
    assert (refused.value.source, refused.value.where) == (seqpar_compute.SOURCE, "kernel")
    assert refused.value.message == (f"{CAUSAL_NAME} cannot run 8192 x 8192 tokens on h100-sxm5: {NAME_PROBLEM} "
                                     "(the blocks off the diagonal of a causal ring over 4 devices are non-causal "
                                     "calls)")
    assert predictions == []


# N = 32K over P = 4 (c = 8192): the first non-causal call each scheme's timing meets, by its layout
# (`seqpar_schemes.ring_layout`, `device_blocks`); None: every call causal, the name runs
SCHEME_CALLS = [
    ("ring", None, "8192 x 8192"),  # an earlier device's full c x c block
    ("zigzag", None, "4096 x 8192"),  # device 0's later block first: c/2 queries x c keys
    ("usp", 2, "8192 x 16384"),  # two zigzag ring devices of 16384 tokens: c/2 x c
    ("allgather", None, "4096 x 28672"),  # device 0's chunk 2P - 1 = 7 of N/2P = 4096 queries against 7 x 4096 keys
    ("stripe", None, None),  # every block causal-shaped
    ("ulysses", None, None),  # one causal N x N call of H/P heads
    ("megatron-sp", None, None),
    ("usp", 4, None),  # u = P: one ring device, its one causal call
]


@pytest.mark.parametrize("scheme, ulysses, call", SCHEME_CALLS)
def test_each_scheme_runs_the_causal_name_unless_it_has_non_causal_calls(scheme, ulysses, call) -> None:
    spec = ParallelSpec(scheme, 4, LLAMA, 32768, HGX.gpu, HGX, ulysses=ulysses, kernel=CAUSAL_NAME)
    if call is None:
        assert parallel_time(spec).time_s > 0
        return
    _refused_off_diagonal(spec, f"{call} tokens on h100-sxm5", scheme, 4)


def _refused_off_diagonal(spec: ParallelSpec, call: str, scheme: str, devices: int) -> None:
    """`spec` is refused naming the causal name's first non-causal call and the causal scheme's off-diagonal blocks."""
    with pytest.raises(SpecError) as refused:
        parallel_time(spec)
    assert refused.value.message == (f"{CAUSAL_NAME} cannot run {call}: {NAME_PROBLEM} (the blocks off the diagonal "
                                     f"of a causal {scheme} over {devices} devices are non-causal calls)")


def test_a_hybrid_models_softmax_layers_refuse_the_causal_name() -> None:
    """lasp2h's softmax layers run allgather: at N = 16K over P = 2, device 0's chunk 3 of N/2P = 4096 queries
    against 3 x 4096 keys; the message names lasp2h, the scheme asked for."""
    spec = ParallelSpec("lasp2h", 2, library.load_workload_spec("linear-llama3-1b-hybrid"), 16384, DGX.gpu, DGX,
                        kernel=CAUSAL_NAME)
    _refused_off_diagonal(spec, "4096 x 12288 tokens on a100-80gb-sxm4", "lasp2h", 2)


def test_a_non_causal_point_is_refused_at_its_first_call_without_the_causal_context() -> None:
    """--no-causal: every call is non-causal, the diagonal's c x c first; no causal scheme to blame."""
    spec = ParallelSpec("ring", 4, LLAMA, 32768, HGX.gpu, HGX, causal=False, kernel=CAUSAL_NAME)
    with pytest.raises(SpecError) as refused:
        parallel_time(spec)
    assert refused.value.message == f"{CAUSAL_NAME} cannot run 8192 x 8192 tokens on h100-sxm5: {NAME_PROBLEM}"
