"""Three findings on `archsim parallel` (issue 18, session 50): a ring collective (all-gather, reduce-scatter) over
a group spanning nodes ran as one lock-step ring at one NIC's rate, where NCCL runs a ring per channel, each
crossing the nodes on its own GPU's NIC; Megatron-SP at `--scope layer` ran its norms and residual adds over all N
tokens on every device; zigzag on one device was refused for an odd sequence length."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.systems.links import Link
from archsim.systems.seqpar import _compute, parallel_time
from archsim.systems.seqpar_compute import shard
from archsim.systems.seqpar_schemes import dense
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.step import Step, layer_op
from archsim.systems.topology import Level, load_topology

HGX = load_topology("hgx-h100")  # 8 H100s a node over NVLink 4, the nodes over one 400 Gb/s NIC per GPU
NVLINK, NIC = (level.link for level in HGX.levels)
GPUS_PER_NODE = HGX.levels[0].devices
LLAMA8 = library.load_workload_spec("llama3-8b")
N = 131072
# Megatron-SP's sequence-parallel regions (Korthikanti et al. 2022 §4.2.2): the layer's norms and residual adds
SEQUENCE_PARALLEL_OPS = ("attn_norm", "attn_residual", "ffn_norm", "ffn_residual")
# README, "Multi-device attention (issue 18)": the flat and the --tp paths of Megatron-SP agree within this factor
FLAT_VS_TP = 1.5


def _channel_step_s(step_bytes: float, channels: int, nic: Link = NIC) -> float:
    """One step of NCCL's rings over nodes: each of `channels` rings carries 1/channels of the step and crosses
    the nodes on its own GPU's NIC, a GPU's NVLink port carries the whole step (topology.py's assumptions)."""
    return max(nic.transfer_s(step_bytes / channels), NVLINK.transfer_s(step_bytes))


def _kv_bytes(tokens: int) -> float:
    params = LLAMA8.params
    return 2 * tokens * int(params["kv_heads"]) * int(params["head_dim"]) * 2  # K and V, bf16


# --- 1: ring collectives over nodes run a ring per NIC -----------------------------------------------------------


def test_allgather_over_two_nodes_runs_a_ring_per_nic() -> None:
    """Llama-3 CP's all-gather of K and V on 16 H100s (2 nodes): 15 steps of a 1/16 slice, each split over 8
    channels whose node-crossing hop is each on its own GPU's NIC: 8 x 50 = 400 GB/s between the nodes. Before:
    one ring at one NIC's 50 GB/s, 10.08 ms."""
    point = parallel_time(ParallelSpec("allgather", 16, LLAMA8, N, HGX.gpu, HGX))
    expected = 15 * _channel_step_s(_kv_bytes(N) / 16, GPUS_PER_NODE)
    assert point.comm_s == pytest.approx(expected, rel=1e-12)
    assert point.comm_s < 15 * NIC.transfer_s(_kv_bytes(N) / 16) / 4


def test_megatron_sp_flat_and_tp_paths_agree() -> None:
    """The same 16 H100s as 16 Megatron-SP ranks (a flat ring all-gather and reduce-scatter over both nodes) and as
    2 ranks x tp 8 (hierarchical: NVLink, then each GPU's 1/8 slice over its own NIC) time within FLAT_VS_TP of
    each other. Before: 40.30 ms against 6.87 ms."""
    flat = parallel_time(ParallelSpec("megatron-sp", 16, LLAMA8, N, HGX.gpu, HGX)).comm_s
    tp = parallel_time(ParallelSpec("megatron-sp", 2, LLAMA8, N, HGX.gpu, HGX, tp=8)).comm_s
    hidden = N * int(LLAMA8.params["hidden"]) * 2
    assert flat == pytest.approx(2 * 15 * _channel_step_s(hidden / 16, GPUS_PER_NODE), rel=1e-12)
    assert max(flat, tp) / min(flat, tp) < FLAT_VS_TP


def test_lasp2_state_gather_over_nodes_runs_a_ring_per_nic() -> None:
    """LASP-2's state all-gather on 16 A100s of dgx-a100 (2 nodes): each ring's node-crossing hop on its own HDR
    NIC, 8 channels, a GPU's NVLink 3 port carrying the whole step."""
    dgx = load_topology("dgx-a100")
    nvlink, nic = (level.link for level in dgx.levels)
    linear = library.load_workload_spec("linear-llama3-1b")
    spec = ParallelSpec("lasp2", 16, linear, N, dgx.gpu, dgx)
    state = _compute(spec).lasp_state_bytes(N, 16) * 4 / 2  # fp32, as LASP keeps it
    step = 16 * state / 16
    expected = 15 * max(nic.transfer_s(step / 8), nvlink.transfer_s(step))
    assert parallel_time(spec).comm_s == pytest.approx(expected, rel=1e-12)


def test_shared_port_written_as_each_devices_share_stays_one_port() -> None:
    """A level's link is each device's own port; devices sharing one port are written as a link of each one's
    share (links.py). 8 GPUs a node behind one 50 GB/s port, written as 6.25 GB/s each: the channels together
    cross the nodes at the one port's 50 GB/s, what one ring over the whole port would do."""
    share = Link("shared-nic", "", "<test>", "<test>", NIC.latency_s, NIC.bytes_per_s_per_direction / 8)
    shared = type(HGX)(HGX.name, HGX.description, HGX.source, HGX.citation, HGX.gpu,
                       (HGX.levels[0], Level(share, None)))
    link = shared.collective_link(list(range(16)))
    step = _kv_bytes(N) / 16
    assert link.transfer_s(step) == pytest.approx(max(NIC.transfer_s(step), NVLINK.transfer_s(step)), rel=1e-12)


def test_ring_attention_hops_stay_one_devices_send() -> None:
    """Ring attention's K/V hop is one device's point-to-point send: over 16 H100s it still steps at one NIC (the
    slowest hop), unchanged."""
    assert HGX.group_link(list(range(16))) is NIC
    ring = parallel_time(ParallelSpec("ring", 16, LLAMA8, N, HGX.gpu, HGX))
    assert ring.comm_s == pytest.approx(15 * NIC.transfer_s(_kv_bytes(N // 16)), rel=1e-12)


def test_one_device_per_node_is_one_ring() -> None:
    """A group with one device in each node (the --tp 8 rank group) has one channel: the plain ring over the NIC."""
    assert HGX.collective_link([0, 8]) is NIC
    assert HGX.collective_link(list(range(8))) is NVLINK


# --- 2: Megatron-SP's norms and residuals on each device's N / P shard -------------------------------------------


def test_megatron_sp_layer_runs_norms_and_residuals_on_its_shard() -> None:
    """Megatron-SP on 8 H100s, Llama-3-8B at 128K, `--scope layer`: the GEMMs run all N tokens on 1/P of the
    weights, the norms and residual adds each device's N / P tokens (Korthikanti et al. 2022 §4.2.2). Before: all
    N tokens, 5.92 ms where N / P costs 0.75 ms."""
    p = 8
    spec = ParallelSpec("megatron-sp", p, LLAMA8, N, HGX.gpu, HGX, scope="layer")
    compute = _compute(spec)
    weights = shard(LLAMA8, p)
    block = LLAMA8.block

    def regions_s(tokens: int) -> float:
        step = Step("prefill", 1, tokens)
        return sum(compute.device.cost([layer_op(weights, step, block, name)]).time_s
                   for name in SEQUENCE_PARALLEL_OPS)

    expected = compute.dense_s(weights, N) - regions_s(N) + regions_s(N // p)
    assert dense(spec, compute).compute_s == pytest.approx(expected, rel=1e-9)
    assert regions_s(N) > 4 * regions_s(N // p)


# --- 3: zigzag on one device -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["ring", "zigzag", "stripe"])
def test_one_device_cuts_nothing(scheme: str) -> None:
    """On one device zigzag, as ring and stripe, runs the one-device call: any sequence length. Before: zigzag
    refused --seq-len 1 (2 chunks over 1 device)."""
    result = CliRunner().invoke(main, ["parallel", "--scheme", scheme, "--devices", "1", "--workload", "llama3-8b",
                                       "--seq-len", "1", "--json"])
    assert result.exit_code == 0, result.output
    (point,) = json.loads(result.output)["points"]
    assert point["feasible"] and point["comm_s"] == 0.0
