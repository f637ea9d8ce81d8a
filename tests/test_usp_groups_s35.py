"""`usp` times every Ulysses group and every ring group (`archsim.systems.seqpar_schemes._usp`): the all-to-alls
take as long as the slowest of the P/u Ulysses groups and the ring steps at the slowest of the u ring groups. Before,
only the first of each was timed, so with --ulysses not lining up with the GPUs of a node the groups that cross a node
were charged at NVLink rates (u = 6 of 12 on 8-GPU nodes: group [6..11] spans two nodes, ring groups [2, 8] and
[5, 11] cross the NIC, and the all-to-alls were 0.38 ms where the crossing group's take 2.69 ms)."""

from __future__ import annotations

import math

import pytest
import yaml

from archsim.systems import collectives
from archsim.systems.neupims import system
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import Topology, load_topology, topology_from_dict
from archsim.workload import workload_from_dict

MHA48_SPEC = {
    "name": "mha48", "description": "an MHA model of 48 heads of 128", "source": "test", "block": "llama",
    "params": {"batch": 1, "seq_len": 4096, "hidden": 6144, "heads": 48, "kv_heads": 48, "head_dim": 128,
               "ffn_dim": 16384, "layers": 32, "vocab": 50257, "word_bytes": 2}}
MHA48 = workload_from_dict(MHA48_SPEC)
HGX = load_topology("hgx-h100")  # 8 H100s a node over NVLink, nodes over ib-ndr-400g
TWO4 = topology_from_dict({
    "name": "two4", "description": "2 nodes of 4 H100s", "source": "test", "gpu": "h100-sxm5",
    "levels": [{"link": "nvlink4-h100", "devices": 4}, {"link": "ib-ndr-400g", "devices": 2}]})
HEAD_BYTES = 128 * 2  # head_dim x word bytes of one token of one head
SEQ_LEN = 48 * 1024


def _usp(topology: Topology, devices: int, ulysses: int, tp: int = 1) -> ParallelSpec:
    return ParallelSpec("usp", devices, MHA48, SEQ_LEN, topology.gpu, topology, tp=tp, ulysses=ulysses)


def _a2a_s(spec: ParallelSpec, members: list[int]) -> float:
    """The all-to-alls of Q, K, V in and O back over the Ulysses group `members` (each device's N/P tokens of its
    tp rank's heads)."""
    share = SEQ_LEN // spec.devices * (48 // spec.tp) * HEAD_BYTES
    return spec.topology.all_to_all_s(3 * share, members) + spec.topology.all_to_all_s(share, members)


def _hop_s(spec: ParallelSpec, link_members: list[int]) -> float:
    """One ring hop of a block's K and V (N/(P/u) tokens of H/u heads of the tp rank) over `link_members`' link."""
    ring = spec.devices // spec.ulysses
    kv = 2 * SEQ_LEN // ring * (48 // spec.tp // spec.ulysses) * HEAD_BYTES
    return collectives.send_recv_s(kv, spec.topology.group_link(link_members))


@pytest.mark.parametrize("topology, devices, ulysses, tp, first, crossing, ring_crossing", [
    # 12 GPUs, u = 6 on 8-GPU nodes: [6..11] spans nodes 0 and 1; ring [2, 8] crosses the NIC, [0, 6] does not
    (HGX, 12, 6, 1, [0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [2, 8]),
    # 2 nodes of 4, u = 3: [3, 4, 5] spans both nodes; ring [1, 4] crosses, [0, 3] does not
    (TWO4, 6, 3, 1, [0, 1, 2], [3, 4, 5], [1, 4]),
    # tp 2 on 8-GPU nodes, u = 3: the group of ranks [6, 8, 10] spans two nodes; ring [2, 8] crosses, [0, 6] does not
    (HGX, 6, 3, 2, [0, 2, 4], [6, 8, 10], [2, 8]),
])
def test_the_groups_that_cross_a_node_set_the_time(topology, devices, ulysses, tp, first, crossing, ring_crossing):
    spec = _usp(topology, devices, ulysses, tp)
    result = parallel_time(spec, reference=False)
    assert _a2a_s(spec, crossing) > _a2a_s(spec, first)  # the first group, all in one node, is faster
    ring_first = [k * ulysses * tp for k in range(devices // ulysses)]
    assert _hop_s(spec, ring_crossing) > _hop_s(spec, ring_first)
    expected = _a2a_s(spec, crossing) + _hop_s(spec, ring_crossing)  # two ring devices: one hop
    assert math.isclose(result.comm_s, expected, rel_tol=1e-12)


def test_the_audits_case_exposes_the_crossing_groups_all_to_alls():
    """u = 6 of 12 on 8-GPU nodes (the audit's repro): the ring's NIC hop hides under the blocks' compute, the
    all-to-alls of the group that spans two nodes are exposed."""
    spec = _usp(HGX, 12, 6)
    result = parallel_time(spec, reference=False)
    crossing = _a2a_s(spec, [6, 7, 8, 9, 10, 11])
    assert crossing > 2e-3  # 2.69 ms, where the first group's over NVLink took 0.38 ms
    assert math.isclose(result.exposed_comm_s, crossing, rel_tol=1e-9)


def test_groups_lined_up_with_the_nodes_time_as_the_first_ones():
    """u = 4 on 8-GPU nodes: every Ulysses group inside a node, every ring group over the NIC, so the slowest group
    is the first one and the time is what timing the first groups gave."""
    spec = _usp(HGX, 16, 4)
    result = parallel_time(spec, reference=False)
    expected = _a2a_s(spec, [0, 1, 2, 3]) + 3 * _hop_s(spec, [0, 4, 8, 12])
    assert math.isclose(result.comm_s, expected, rel_tol=1e-12)


def test_a_context_parallel_prefill_times_every_group(tmp_path):
    """`context_parallel` times its prefill by `parallel_time`: cp 12 of tp 1 at u = 6 on 8-GPU nodes pays the
    crossing groups' all-to-alls and NIC hop too."""
    workload = tmp_path / "mha48.yaml"
    workload.write_text(yaml.safe_dump(MHA48_SPEC))
    model = system("context-parallel-h100", str(workload), changes={
        "parallelism.cp": 12, "parallelism.tp": 1, "schedule.scheme": "usp", "schedule.ulysses": 6})
    spec = model.prefill_spec(SEQ_LEN)
    expected = _a2a_s(spec, [6, 7, 8, 9, 10, 11]) + _hop_s(spec, [2, 8])
    assert math.isclose(model.prefill(SEQ_LEN).comm_s, expected, rel_tol=1e-12)


@pytest.mark.parametrize("direction, settings", [
    ("fwd", (None, None)), ("decode", (None, None)), ("fwd+bwd", ("layer", "fp32"))])
def test_a_record_carries_the_training_settings_only_in_training(direction, settings):
    """`checkpointing` and `training_precision` set the training memory only (`seqpar_spec`): a fwd or decode row
    carries them null, not the defaults it never applied."""
    spec = ParallelSpec("ring", 8, MHA48, SEQ_LEN, HGX.gpu, HGX, direction=direction)
    config = parallel_time(spec, reference=False).record().config
    assert (config["checkpointing"], config["training_precision"]) == settings
