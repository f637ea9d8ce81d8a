"""Three findings on the sequence-parallel communication (session 46): a one-GPU context-parallel system (no link at
all) crashed; Megatron-SP with tp > 1 sent the whole N x h over every GPU's NIC; the ring's last hop (dK, dV going
home) overlapped the last step whose gradients it carries."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.systems.links import load_link
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_schemes import ring_schedule_s
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

HGX = load_topology("hgx-h100")  # 8 H100s a node over NVLink 4, the nodes over one 400 Gb/s NIC per GPU
NVLINK4, NIC = load_link("nvlink4-h100"), load_link("ib-ndr-400g")
LLAMA70 = library.load_workload_spec("llama3-70b")
BF16_BYTES = 2


def _json_point(args: list[str]) -> dict:
    result = CliRunner().invoke(main, ["parallel", *args, "--json"])
    assert result.exit_code == 0, result.output
    (point,) = json.loads(result.output)["points"]
    return point


# --- 1: one GPU, no link ------------------------------------------------------------------------------------------


def test_one_gpu_context_parallel_system_sends_nothing(tmp_path) -> None:
    """context-parallel-h100 cut to one GPU (count 1, tp 1, cp 1, no link named cp): `archsim check` accepts it and
    its topology has no level, one device. Before: `archsim parallel --system` died with an IndexError (the ring
    of one asked the topology for a link it does not have). A group of one device moves nothing: the run is the
    same one-device ring as on a topology with links (hgx-h100, devices 1), communication 0."""
    path = tmp_path / "one-gpu.yaml"
    path.write_text(yaml.safe_dump({"name": "one-gpu", "base": "context-parallel-h100",
                                    "devices": {"gpu": {"count": 1}}, "links": {"cp": None},
                                    "parallelism": {"tp": 1, "cp": None}}))
    assert CliRunner().invoke(main, ["check", str(path)]).exit_code == 0
    one = _json_point(["--system", str(path), "--workload", "llama3-8b", "--seq-len", "8K"])
    linked = _json_point(["--topology", "hgx-h100", "--scheme", "ring", "--devices", "1", "--workload", "llama3-8b",
                          "--seq-len", "8K", "--kernel", "FlashAttention-2"])
    assert one["feasible"]
    assert one["comm_s"] == 0.0 and one["exposed_comm_s"] == 0.0
    assert one["latency_s"] == linked["latency_s"]
    assert one["link"] == ""  # it talks over no link


# --- 2: Megatron-SP over tp x P devices, hierarchically ----------------------------------------------------------


def _megatron_pair_s(tokens: int) -> float:
    """One all-gather + reduce-scatter of N x h bf16 over 2 nodes x 8 H100s, hierarchically (the bytes of one
    all-reduce, Thakur 2005 / Jia et al. 2018): a reduce-scatter and an all-gather over NVLink (7 steps of n/8
    each), and each GPU's n/8 slice all-gathered and reduce-scattered over its own NIC between the 2 nodes (1 step
    of n/16 each), alpha + m/beta a step."""
    n = tokens * int(LLAMA70.params["hidden"]) * BF16_BYTES
    return 2 * 7 * NVLINK4.transfer_s(n / 8) + 2 * 1 * NIC.transfer_s(n / 16)


def test_megatron_sp_over_two_nodes_sends_a_slice_per_nic() -> None:
    """megatron-sp, P 2 x tp 8 on hgx-h100, Llama-3-70B (h 8192), 32K tokens, fwd. After the node's tensor-parallel
    step each of its 8 GPUs holds the same N x h; the 8 NICs each carry 1/8 of it, not all of it. Scope layer: the
    attention's pair and the FFN's: 2 x 3.44 ms = 6.89 ms (before: 25.68 ms, two NVLink all-reduces of n
    plus the all-gather and reduce-scatter of the whole n over each GPU's NIC, twice); scope attention: one pair
    (before: 10.74 ms, the NIC part alone)."""
    layer = parallel_time(ParallelSpec("megatron-sp", 2, LLAMA70, 32768, HGX.gpu, HGX, tp=8, scope="layer"))
    assert layer.comm_s == pytest.approx(2 * _megatron_pair_s(32768), rel=1e-12)
    assert 2 * _megatron_pair_s(32768) == pytest.approx(6.886e-3, rel=1e-3)
    attention = parallel_time(ParallelSpec("megatron-sp", 2, LLAMA70, 32768, HGX.gpu, HGX, tp=8))
    assert attention.comm_s == pytest.approx(_megatron_pair_s(32768), rel=1e-12)


def test_megatron_sp_without_tp_is_the_flat_pair() -> None:
    """At tp 1 nothing changes: an all-gather and a reduce-scatter of the whole n over the P devices' link (2 H100s
    of one node, over NVLink 4: 1 step of n/2 each), the attention's pair and the FFN's, and no TP all-reduce."""
    n = 32768 * int(LLAMA70.params["hidden"]) * BF16_BYTES
    spec = ParallelSpec("megatron-sp", 2, LLAMA70, 32768, HGX.gpu, HGX, tp=1, scope="layer")
    assert parallel_time(spec).comm_s == pytest.approx(2 * 2 * NVLINK4.transfer_s(n / 2), rel=1e-12)


# --- 3: the last hop after the last step -------------------------------------------------------------------------


@pytest.mark.parametrize("work, hop, home", [(2.0, 1.0, 0.5), (1.0, 0.5, 3.0), (1.0, 3.0, 0.25)])
def test_ring_home_hop_follows_the_last_step(work: float, hop: float, home: float) -> None:
    """P equal blocks, then dK, dV going home: they carry the last step's gradients, so the hop starts when that
    step's compute ends: (P - 1) max(compute, hop) + compute + home. Before: the last step and the hop home
    overlapped, max(compute, home) in place of compute + home (P 2, work 1, hop 0.5, home 3: 4.0 before, 5.0)."""
    for p in (1, 2, 5):
        expected = (p - 1) * max(work, hop) + work + home
        assert ring_schedule_s([[work] * p for _ in range(p)], hop, home) == pytest.approx(expected, rel=1e-12)
