"""Multi-device attention timing (`archsim.systems.seqpar`, issue 18): the ring's step chain against closed forms,
the causal load imbalance and its balancing as the model computes them, communication from the link formulas,
and bad input naming the field.

Sizes: Llama-3-8B shapes (32 query heads, 8 KV heads, d 128) on A100s over NVLink or 100 Gb/s InfiniBand.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems import collectives
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_schemes import ring_schedule_s
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

NVLINK, IB, DGX = load_topology("a100-nvlink"), load_topology("a100-ib-100g"), load_topology("dgx-a100")
LLAMA = library.load_workload_spec("llama3-8b")
LINEAR = library.load_workload_spec("linear-llama3-1b")


def _spec(scheme: str, devices: int, seq_len: int, topology=NVLINK, **changes) -> ParallelSpec:
    return ParallelSpec(scheme, devices, changes.pop("workload", LLAMA), seq_len, topology.gpu, topology, **changes)


@pytest.mark.parametrize("work, hop", [(2.0, 1.0), (1.0, 3.0)])
def test_ring_chain_uniform_work_is_max_per_step_plus_the_last_block(work: float, hop: float) -> None:
    """P equal blocks: P - 1 steps of max(compute, transfer), then the last block's compute."""
    for p in (1, 2, 5):
        assert ring_schedule_s([[work] * p for _ in range(p)], hop) == pytest.approx((p - 1) * max(work, hop) + work)


def test_ring_chain_waits_for_the_slowest_neighbour() -> None:
    """One slow device delays its successors by the chain, not only itself: a barrier-free ring still ends with
    the slowest device's work plus what waits on it."""
    work = [[1.0, 1.0, 1.0], [5.0, 1.0, 1.0], [1.0, 1.0, 3.0]]
    # device 1's step 0 takes 5, so it sends its step-1 block at 5: device 2 starts its last step at 5 + hop and
    # ends at 5.5 + 3, after device 1's own 7 and far after its own 5 of work
    assert ring_schedule_s(work, 0.5) == pytest.approx(5.0 + 0.5 + 3.0)


def test_causal_ring_is_bounded_by_its_imbalance_and_zigzag_stripe_balance_it() -> None:
    """Compute-bound (64K tokens over 8 A100s on NVLink): contiguous causal ring runs at about half of ideal (the
    last device does every block), zigzag and stripe near ideal."""
    results = {s: parallel_time(_spec(s, 8, 65536)) for s in ("ring", "zigzag", "stripe")}
    ring, zigzag, stripe = (results[s].efficiency for s in ("ring", "zigzag", "stripe"))
    assert 0.4 < ring < 0.6
    assert zigzag > 0.85 and stripe > 0.8
    assert zigzag > stripe > ring
    for r in results.values():  # compute-bound: nothing exposed beyond a few percent
        assert r.exposed_comm_s < 0.05 * r.time_s


def test_non_causal_ring_hides_the_transfer_only_above_the_minimum_block() -> None:
    """Over 12.5 GB/s InfiniBand a c x c block hides its K/V transfer only when c is large enough (F/B = 24.5K
    tokens for MHA at the A100's peak; Llama-3-8B's 8 KV heads of 32 send a quarter of MHA's bytes, and the kernel
    runs below peak, so fewer): 2K-token blocks are transfer-bound, 32K-token blocks compute-bound."""
    small = parallel_time(_spec("ring", 8, 8 * 2048, IB, causal=False))
    large = parallel_time(_spec("ring", 8, 8 * 32768, IB, causal=False))
    assert small.exposed_comm_s > 0.3 * small.time_s
    assert large.exposed_comm_s < 0.05 * large.time_s
    kv = 2 * 2048 * 8 * 128 * 2  # one block's K and V, bf16
    hop = collectives.send_recv_s(kv, IB.levels[0].link)
    assert small.comm_s == pytest.approx(7 * hop)
    block = small.compute_s / 8  # non-causal: every device computes 8 equal blocks
    assert hop > block
    assert small.time_s == pytest.approx(7 * hop + block)  # 7 transfer-bound steps, then the last block


def test_ring_over_nodes_runs_at_the_nic() -> None:
    """16 A100s of two DGX nodes: the ring's slowest hop is InfiniBand HDR, so the transfer term is the NIC's."""
    inside, across = parallel_time(_spec("ring", 8, 8 * 4096, DGX, causal=False)), \
        parallel_time(_spec("ring", 16, 16 * 4096, DGX, causal=False))
    kv = 2 * 4096 * 8 * 128 * 2
    assert inside.comm_s == pytest.approx(7 * collectives.send_recv_s(kv, DGX.levels[0].link))
    assert across.comm_s == pytest.approx(15 * collectives.send_recv_s(kv, DGX.levels[1].link))


def test_ulysses_moves_its_all_to_alls_and_nothing_overlaps() -> None:
    """DeepSpeed-Ulysses: per device (N/P)(H + 2 H_kv) d b bytes of Q, K, V and (N/P) H d b of O in all-to-alls
    over the group (collectives' pairwise exchange); time = attention + both. The backward moves the same again
    (dO, and dQ, dK, dV), and layer checkpointing's recomputed forward the forward's once more."""
    p, n = 8, 65536
    result = parallel_time(_spec("ulysses", p, n))
    per_head = (n // p) * 128 * 2
    link = NVLINK.levels[0].link
    expected = collectives.all_to_all_s(per_head * (32 + 16), p, link) + collectives.all_to_all_s(per_head * 32, p,
                                                                                                    link)
    assert result.comm_s == pytest.approx(expected)
    assert result.time_s == pytest.approx(result.compute_s + result.comm_s)
    training = replace(result.spec, direction="fwd+bwd")
    assert parallel_time(replace(training, checkpointing="none")).comm_s == pytest.approx(2 * expected)
    assert parallel_time(replace(training, checkpointing="layer")).comm_s == pytest.approx(3 * expected)


def test_lasp2_gathers_states_whose_size_does_not_grow_with_the_sequence() -> None:
    """LASP-2's all-gather carries P states of B H d x d fp32, whatever N, as NCCL's rings over the nodes (one
    channel a GPU of a node, each crossing on its own NIC: 63 steps of one state, each 1/8 of it over a NIC at the
    NIC's latency, the whole of it over a GPU's NVLink port, the slower setting the step); LASP-1's chain has P - 1 hops
    of one, one after another, each over the link joining its two devices: on 8 DGX-A100 nodes 56 over NVLink and
    the 7 between nodes over the NIC (a lock-step ring would step all 63 at the NIC's rate)."""
    state = 16 * 128 * 128 * 4
    nvlink, nic = DGX.levels[0].link, DGX.levels[1].link
    chain = 56 * collectives.send_recv_s(state, nvlink) + 7 * collectives.send_recv_s(state, nic)
    for n in (64 * 1024, 1024 * 1024):
        lasp2 = parallel_time(_spec("lasp2", 64, n, DGX, workload=LINEAR))
        lasp1 = parallel_time(_spec("lasp1", 64, n, DGX, workload=LINEAR))
        assert lasp2.comm_s == pytest.approx(63 * max(nic.transfer_s(state / 8), nvlink.transfer_s(state)))
        assert lasp1.comm_s == pytest.approx(chain)
        assert chain < 63 * collectives.send_recv_s(state, nic)
    assert lasp2.time_s < lasp1.time_s  # at 1M, the chain's hop products outweigh the all-gather


def test_efficiency_is_ideal_over_time_and_one_device_is_ideal() -> None:
    one = parallel_time(_spec("zigzag", 1, 16384))
    assert one.efficiency == pytest.approx(1.0) and one.comm_s == 0
    many = parallel_time(_spec("zigzag", 4, 16384))
    assert many.efficiency == pytest.approx(one.time_s / 4 / many.time_s)
    assert many.record().extras["efficiency"] == pytest.approx(many.efficiency)


def test_layer_scope_adds_the_dense_ops_and_tp_all_reduces() -> None:
    attention = parallel_time(_spec("ring", 2, 16384, DGX, tp=8))
    layer = parallel_time(replace(attention.spec, scope="layer"))
    assert layer.time_s > attention.time_s and layer.comm_s > attention.comm_s
    assert math.isfinite(layer.ideal_s)


def test_ideal_is_one_gpus_time_over_every_gpu_tp_included() -> None:
    """The issue's ideal: the single-device time over the device count. At tp > 1 the devices are P x tp GPUs and
    the single device one GPU without tensor parallelism, so the TP all-reduces count against the efficiency."""
    for scope in ("attention", "layer"):
        cut = parallel_time(_spec("ring", 2, 16384, DGX, tp=8, scope=scope))
        one = parallel_time(_spec("ring", 1, 16384, DGX, scope=scope))
        assert cut.ideal_s == pytest.approx(one.time_s / 16, rel=1e-12)


@pytest.mark.parametrize("changes, field", [
    ({"scheme": "ring", "seq_len": 65537}, "seq_len"),
    ({"scheme": "zigzag", "devices": 8, "seq_len": 8 * 1000 + 8}, "seq_len"),
    ({"scheme": "ulysses", "devices": 3, "seq_len": 3 * 4096}, "params.heads"),
    ({"scheme": "ulysses", "devices": 16, "seq_len": 16 * 4096, "topology": DGX}, "params.kv_heads"),
    ({"scheme": "usp", "devices": 8, "seq_len": 65536}, "ulysses"),
    ({"scheme": "ring", "devices": 16, "seq_len": 65536}, "devices"),  # beyond the 8-GPU NVLink board
    ({"scheme": "tree", "devices": 2, "seq_len": 4096}, "scheme"),
    ({"scheme": "ring", "devices": 2, "seq_len": 4096, "tp": 3}, "tp"),
])
def test_bad_input_names_the_field(changes: dict, field: str) -> None:
    base = {"scheme": "ring", "devices": 8, "seq_len": 65536, "topology": NVLINK}
    base.update(changes)
    topology = base.pop("topology")
    with pytest.raises(SpecError) as error:
        parallel_time(_spec(base.pop("scheme"), base.pop("devices"), base.pop("seq_len"), topology, **base))
    assert error.value.where == field


def test_decode_ring_is_its_transfers_and_distattention_its_round_trip() -> None:
    """One decode step over 64K cached tokens on 4 A100s: the ring passes three 16K-token K/V blocks (transfer-bound:
    3 hops + the last block's read); DistAttention sends the query out and partials back, one read of N/P tokens;
    head-parallel decode reads all N tokens of a quarter of the heads."""
    n, p = 65536, 4
    ring = parallel_time(_spec("ring", p, n, direction="decode"))
    dist = parallel_time(_spec("distattention", p, n, direction="decode"))
    kv = 2 * (n // p) * 8 * 128 * 2
    hop = collectives.send_recv_s(kv, NVLINK.levels[0].link)
    assert ring.comm_s == pytest.approx(3 * hop)
    assert ring.time_s == pytest.approx(3 * max(hop, ring.compute_s / p) + ring.compute_s / p)
    assert dist.time_s < ring.time_s / 5
    link = NVLINK.levels[0].link
    q, partial = 32 * 128 * 2, 32 * 128 * 4 + 2 * 32 * 4  # bf16 query; fp32 output, max and sum per head
    # the 3 queries out and the 3 partials back each one grouped exchange: one alpha, the bytes through one port
    assert dist.comm_s == pytest.approx(2 * link.latency_s + 3 * (q + partial) / link.bytes_per_s_per_direction)


@pytest.mark.parametrize("changes, field", [({"scheme": "zigzag"}, "scheme"), ({"scope": "layer"}, "scope")])
def test_decode_schemes_and_scope_are_checked(changes: dict, field: str) -> None:
    spec = replace(_spec("ring", 4, 65536, direction="decode"), **changes)
    with pytest.raises(SpecError) as error:
        parallel_time(spec)
    assert error.value.where == field
    with pytest.raises(SpecError) as error:
        parallel_time(_spec("distattention", 4, 65536))
    assert error.value.where == "direction"


def test_a_lasp1_row_names_the_links_its_chain_hops_over():
    """LASP-1's hops each take their own link, so its row's link lists them with their hop counts; LASP-2's names
    the link its all-gather is timed over: NCCL's 8 channels across the nodes, each on its own NIC, beside NVLink
    (neither slower in both latency and bandwidth: named after both)."""
    lasp1 = parallel_time(_spec("lasp1", 16, 64 * 1024, DGX, workload=LINEAR)).record().config["link"]
    lasp2 = parallel_time(_spec("lasp2", 16, 64 * 1024, DGX, workload=LINEAR)).record().config["link"]
    assert lasp1 == f"{DGX.levels[0].link.name} x 14, {DGX.levels[1].link.name} x 1"
    assert lasp2 == f"{DGX.levels[0].link.name} + {DGX.levels[1].link.name} x 8"
