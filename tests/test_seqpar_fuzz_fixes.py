"""Defects a fuzzing round of `archsim parallel` and `archsim sparse` found (scratch /tmp/gfuzz4), each pinned:

- Megatron-SP inference memory kept every weight on each device (llama3-70b on 8 H100s: 144.3 GB, infeasible),
  though the timing and the training memory cut the weights P ways;
- Megatron-SP with P beyond the KV heads was refused by the memory model while the timing repeats a KV head;
- sparse prefill put the KV cache on the host from a fixed 700K tokens on any GPU (a 24 GiB card at 680K "OOM" but
  fitting at 700K; an MI300X or B200 refused at 1M for a host link it does not need; an H200 charged a copy);
- LASP-1's time left out the chunk's K^T V GEMM that must precede the first send;
- `--no-causal` was silently ignored by lasp1 and lasp2;
- a device count beyond the topology killed a grid (a `<python>` error from the refused row's blank record);
- a tensor-parallel group spanning nodes was timed over NVLink;
- usp asked for seq_len a multiple of 2P rather than lcm(P, 2r), and blamed --seq-len before a bad --ulysses.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.library import load_workload_spec
from archsim.systems.seqpar import _compute, parallel_time
from archsim.systems.seqpar_memory import inference_memory
from archsim.systems.seqpar_spec import ParallelSpec, token_multiple
from archsim.systems.sparse_points import flex_point
from archsim.systems.sparse_prefill import kv_host_s, kv_on_host
from archsim.systems.topology import load_topology, topology_from_dict

LLAMA8, LLAMA70 = load_workload_spec("llama3-8b"), load_workload_spec("llama3-70b")
LINEAR = load_workload_spec("linear-llama3-1b")
HGX8, DGX = load_topology("hgx-h100-8"), load_topology("dgx-a100")
A100 = load_gpu("a100-80gb-sxm4")


def _spec(scheme: str, devices: int, workload, seq_len: int, topology=HGX8, **changes) -> ParallelSpec:
    return ParallelSpec(scheme, devices, workload, seq_len, topology.gpu, topology, **changes)


# --- Megatron-SP memory ------------------------------------------------------------------------------------------


def test_megatron_sp_inference_weights_are_cut_over_its_devices() -> None:
    """Megatron-SP is tensor parallel over its P devices: its weights per device are those of TP P (one device of
    8), so Llama-3-70B at 32K fits 8 H100s in prefill and decode."""
    sharded = inference_memory(LLAMA70, "megatron-sp", 8, 32768)
    assert sharded.weights_bytes == pytest.approx(inference_memory(LLAMA70, "ring", 1, 32768, tp=8).weights_bytes)
    assert sharded.weights_bytes < 20e9
    for direction in ("fwd", "decode"):
        result = parallel_time(_spec("megatron-sp", 8, LLAMA70, 32768, direction=direction))
        assert result.feasible and result.memory_bytes < 25e9 and result.max_context_tokens > 32768


def test_megatron_sp_memory_repeats_a_kv_head_beyond_the_kv_heads() -> None:
    """16 devices over Llama-3-8B's 8 KV heads: each keeps one KV head (the timing's max(1, kv_heads / P)), so
    the cache holds 1 head x 128 x (K, V) x bf16 per token and layer; the point is timed, not refused."""
    memory = inference_memory(LLAMA8, "megatron-sp", 16, 32768)
    assert memory.kv_cache_bytes == 32 * 1 * 128 * 2 * 2 * 32768
    layer = parallel_time(_spec("megatron-sp", 16, LLAMA8, 32768, topology=load_topology("hgx-h100"),
                                scope="layer"))
    assert layer.feasible and layer.time_s > 0


def test_megatron_sp_kv_heads_neither_dividing_nor_divided_are_refused() -> None:
    odd = replace(LLAMA8, params={**LLAMA8.params, "heads": 48, "kv_heads": 8})
    with pytest.raises(SpecError) as error:
        parallel_time(_spec("megatron-sp", 12, odd, 12 * 1024, topology=load_topology("hgx-h100")))
    assert error.value.where == "params.kv_heads"


# --- sparse prefill's KV cache on the host ------------------------------------------------------------------------


def test_the_kv_cache_goes_to_the_host_when_it_does_not_fit_the_gpu() -> None:
    """The rule follows the GPU's memory: the whole cache stays where the weights, it and the layer's working set
    fit (16.06 GB + n x (131,072 + 32,768) B on MInference's 80 GiB A100: below 426,263 tokens,
    test_sparse_prefill_memory_s36), so 400K stays and 500K goes to the host, before the benchmark's fixed 700K;
    a 24 GiB card offloads at 680K as at 700K; an H200 (141 GiB) keeps 700K."""
    assert not kv_on_host(LLAMA8, A100, 400_000) and kv_on_host(LLAMA8, A100, 500_000)
    rtx = load_gpu("rtx-4090")
    assert kv_host_s(LLAMA8, rtx, 680 * 1024) > 0 and kv_host_s(LLAMA8, rtx, 700 * 1024) > 0
    assert kv_host_s(LLAMA8, load_gpu("h200-sxm"), 700 * 1024) == 0.0


def test_an_offloaded_prefill_fits_by_one_layers_kv() -> None:
    """At 256K on the 24 GiB card (25.77 GB) the cache is on the host (16.06 GB + 256K x 163,840 B = 59.0 GB), so
    the weights, one layer's KV and the layer's working set fit: 16.06 GB + 256K x (4,096 + 32,768) B = 25.72 GB; at
    680K they do not (41.7 GB), and the point has no time, its KV copy none either."""
    point = flex_point(LLAMA8, load_gpu("rtx-4090"), 256 * 1024, 0.1)
    assert point["fits"] and point["kv_host_s"] > 0
    beyond = flex_point(LLAMA8, load_gpu("rtx-4090"), 680 * 1024, 0.1)
    assert not beyond["fits"] and math.isnan(beyond["time_s"]) and math.isnan(beyond["kv_host_s"])  # no run, no copy


@pytest.mark.parametrize("gpu", ["mi300x", "b200"])
def test_a_gpu_without_host_link_runs_what_fits_and_names_it_only_when_needed(gpu: str) -> None:
    device = replace(load_gpu(gpu), host_link=None)  # a user's preset that states none
    assert kv_host_s(LLAMA8, device, 1 << 20) == 0.0  # 1M of Llama-3-8B fits
    with pytest.raises(SpecError, match=f"host_link: missing: {gpu}'s weights and the KV cache"):
        kv_host_s(LLAMA70, device, 1 << 20)


# --- LASP ------------------------------------------------------------------------------------------------------


def test_lasp1_counts_the_state_gemm_before_its_send() -> None:
    """Two devices, compute-bound: the last device runs its chunk, its own K^T V and Q times the received state
    (with the add); the first device's K^T V precedes the send, so LASP-1 is no faster than LASP-2 here."""
    spec = _spec("lasp1", 2, LINEAR, 512 * 1024, topology=DGX)
    compute, c = _compute(spec), 256 * 1024
    lasp1, lasp2 = parallel_time(spec), parallel_time(replace(spec, scheme="lasp2"))
    assert lasp1.compute_s > compute.linear_chunk_s(c) + 2 * compute.state_gemm_s(c)
    # below ideal by the chain's two state products beside the chunk (0.92 since the chunk is the Lightning kernel's
    # call, twice as long as the Einsum-by-Einsum costing that gave 0.86)
    assert lasp1.time_s >= lasp1.compute_s and lasp1.efficiency < 0.95
    assert lasp1.time_s == pytest.approx(lasp2.time_s, rel=0.01)


def test_no_causal_is_refused_for_lasp(cli) -> None:
    """Alone: exit 2 naming the option; in a grid: the LASP row is infeasible, the ring row timed."""
    base = ("parallel", "-w", "linear-llama3-1b", "--seq-len", "64K", "--devices", "2", "--topology", "dgx-a100",
            "--no-causal")
    assert cli(*base, "--scheme", "lasp2", expect=2).output.startswith("error: --no-causal: lasp2 is modelled for "
                                                                       "causal linear attention")
    lasp1, ring = json.loads(cli(*base, "--scheme", "lasp1,ring", "--json").output)["points"]
    assert not lasp1["feasible"] and lasp1["reason"].startswith("--no-causal") and ring["feasible"]


# --- grid, tp, usp -------------------------------------------------------------------------------------------------


def test_devices_beyond_the_topology_are_an_infeasible_row(cli) -> None:
    rows = json.loads(cli("parallel", "--scheme", "ring,zigzag", "--devices", "8,16", "-w", "llama3-8b",
                          "--seq-len", "64K", "--topology", "a100-nvlink", "--json").output)["points"]
    assert [(r["devices"], r["feasible"]) for r in rows] == [(8, True), (16, False)] * 2
    assert all(r["reason"].startswith("--devices: expected at most 8 devices") and r["link"] == ""
               for r in rows if not r["feasible"])


def _six_gpu_nodes():
    return topology_from_dict({"name": "six", "source": "test", "gpu": "h100-sxm5",
                               "levels": [{"link": "nvlink4-h100", "devices": 6}, {"link": "ib-ndr-400g"}]})


def test_tp_must_divide_the_devices_of_a_node(cli) -> None:
    with pytest.raises(SpecError) as error:
        parallel_time(_spec("ring", 2, LLAMA8, 8192, topology=_six_gpu_nodes(), tp=4))
    assert error.value.where == "tp" and "6 devices per node" in error.value.message
    assert parallel_time(_spec("ring", 2, LLAMA8, 8192, topology=_six_gpu_nodes(), tp=2)).time_s > 0
    output = cli("parallel", "--scheme", "ring", "--devices", "1", "--tp", "16", "-w", "llama3-8b", "--seq-len",
                 "8K", expect=2).output
    assert output.startswith("error: --tp: expected a divisor of the 8 devices per node")


@pytest.mark.parametrize(("devices", "ulysses", "multiple"), [(8, 8, 8), (8, 2, 8), (6, 3, 12), (6, 2, 6)])
def test_usp_length_is_a_multiple_of_p_and_of_its_zigzag_chunks(devices: int, ulysses: int, multiple: int) -> None:
    spec = _spec("usp", devices, LLAMA8, 8192, topology=load_topology("hgx-h100"), ulysses=ulysses)
    assert token_multiple(spec) == multiple


def test_usp_takes_what_it_needs_and_blames_ulysses_first(cli) -> None:
    base = ("parallel", "--scheme", "usp", "-w", "llama3-8b", "--seq-len", "8200")
    assert cli(*base, "--ulysses", "8", "--devices", "8").output.count("usp") >= 1
    assert cli(*base, "--ulysses", "4", "--devices", "6", expect=2).output.startswith("error: --ulysses: ")


def test_a_ring_over_nodes_steps_at_its_slowest_hop_at_any_level() -> None:
    """PCIe GPU servers (31.5 GB/s within a node) joined by a faster network: a ring of 12 over two nodes of 6 still
    takes ten PCIe hops, but was timed at the outer link only (1 TB/s: 26x faster than the 6-GPU ring)."""
    fast = {"name": "fast", "source": "test", "latency_s": 2.0e-6, "bytes_per_s_per_direction": 1.0e+12}
    topo = topology_from_dict({"name": "pcie6", "source": "test", "gpu": "l40s",
                               "levels": [{"link": "pcie4-x16", "devices": 6}, {"link": fast}]}, "pcie6.yaml")
    pcie = topo.levels[0].link
    within, across = (parallel_time(_spec("ring", p, LLAMA8, p * 4096, topo, causal=False)) for p in (6, 12))
    assert within.comm_s / 5 == pytest.approx(across.comm_s / 11, rel=1e-12)  # the same per-hop time
    assert topo.group_link(list(range(12))).name == "pcie4-x16 + fast"  # slower latency outside, bandwidth inside
    message = 1e6
    assert topo.group_link(list(range(12))).transfer_s(message) == pcie.transfer_s(message)
    assert topo.group_link([0, 6]).name == "fast"  # one device per node: no PCIe hop


def test_head_parallel_decode_combines_its_heads_outputs():
    """megatron-sp decode on 16 H100s (two nodes) was charged no communication, though the heads' outputs of the
    new token are combined as the prefill's are: an all-gather and a reduce-scatter of its hidden vector (8 KB of
    Llama-3-8B), over the NIC the group spans: 2 x 15 x (1 us + 512 B / 50 GB/s) = 30.3 us by hand (helper-131)."""
    topology = load_topology("hgx-h100")
    one, sixteen = (parallel_time(ParallelSpec("megatron-sp", p, LLAMA8, 65536, topology.gpu, topology,
                                               direction="decode")) for p in (1, 16))
    assert one.comm_s == 0.0
    assert sixteen.comm_s == pytest.approx(2 * 15 * (1e-6 + 512 / 50e9), rel=0.02)
    assert sixteen.time_s == pytest.approx(sixteen.compute_s + sixteen.comm_s)


def test_a_point_whose_one_device_reference_is_beyond_the_row_limit_still_runs(monkeypatch):
    """The ideal is the one-device call over all N tokens: past the GPU model's row limit (batch x heads x N) it
    refused the point, though each device's chunk is P times smaller (helper-131: stripe on 16 GPUs at the max
    context the same command printed). The point runs; its ideal and efficiency are NaN, and its note says why."""
    monkeypatch.setenv("ARCHSIM_MAX_GPU_ROWS", str(32 * 65536))  # Llama-3-8B's 32 heads x 64K tokens
    topology = load_topology("hgx-h100")
    result = parallel_time(ParallelSpec("ring", 8, LLAMA8, 131072, topology.gpu, topology))
    assert result.time_s > 0 and math.isnan(result.ideal_s) and math.isnan(result.efficiency)
    assert result.note.startswith("no one-device reference, so no efficiency: batch x heads x seqlen = 1 x 32 x 131072")


def test_allgather_on_one_device_takes_any_length():
    """One device gathers nothing and runs the one-device call, as ring at P = 1 does: 12345 tokens were refused
    as not a multiple of its 2P zigzag chunks (helper-131)."""
    topology = load_topology("hgx-h100")
    gather, ring = (parallel_time(ParallelSpec(s, 1, LLAMA8, 12345, topology.gpu, topology))
                    for s in ("allgather", "ring"))
    assert token_multiple(ParallelSpec("allgather", 1, LLAMA8, 12345, topology.gpu, topology)) == 1
    assert gather.time_s == ring.time_s


def test_megatron_sp_layer_names_its_degree_when_the_ffn_does_not_split(tmp_path):
    """The FFN of a layer cut by Megatron-SP over 4 devices at tp 1 was 'expected a multiple of tp = 4'."""
    import yaml

    data = yaml.safe_load(Path(LLAMA8.path).read_text())
    data["params"]["ffn_dim"] = 14335
    path = tmp_path / "odd-ffn.yaml"
    path.write_text(yaml.safe_dump(data))
    topology = load_topology("hgx-h100")
    with pytest.raises(SpecError) as error:
        parallel_time(ParallelSpec("megatron-sp", 4, load_workload_spec(str(path)), 16384, topology.gpu, topology,
                                   scope="layer"))
    assert error.value.where == "params.ffn_dim"
    assert error.value.message == "expected a multiple of tp x P (megatron-sp's devices) = 4, got 14335"
