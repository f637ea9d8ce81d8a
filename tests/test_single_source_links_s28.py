"""Single sources the audit asked for: a link's wire time (`Link.wire_s`), which its transfer time and attention
offloading's messages both read, and DistAttention's merge of the decode partials (`distattention_merge_s`), which
the `distattention` scheme and the context-parallel decode both cost."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from archsim import library
from archsim.systems.context_parallel import ContextParallelModel, _decode_compute
from archsim.systems.links import Link, load_link
from archsim.systems.models import system_model
from archsim.systems.neupims import system
from archsim.systems.offload import OffloadModel
from archsim.systems.seqpar_schemes import distattention_merge_s, distattention_messages
from archsim.systems.system_spec import load_system

PACKET_BYTES = 5000.0


@dataclass(frozen=True)
class PacketLink(Link):
    """A link that moves whole packets: a message's bytes rounded up to `PACKET_BYTES` (a changed wire rule)."""

    def wire_s(self, message_bytes: float) -> float:
        return math.ceil(message_bytes / PACKET_BYTES) * PACKET_BYTES / self.bytes_per_s_per_direction


def test_a_transfer_is_the_latency_and_the_wire_time() -> None:
    """Alpha-beta: 2 us + 1000 B / 1 GB/s = 2 us + 1 us."""
    link = Link("l", "d", "test", "test", 2e-6, 1e9)
    assert link.wire_s(1000) == pytest.approx(1e-6, rel=1e-15)
    assert link.transfer_s(1000) == pytest.approx(3e-6, rel=1e-15)


def test_a_changed_wire_rule_reaches_the_transfer_and_the_offload_messages() -> None:
    """The `lamina` preset (DOP (2, 4), the GPU-initiated link: 16.5 us, 45.7 GB/s per NIC) on LLaMA3-8B over a
    link that sends whole 5000-byte packets. Per layer and request q is hidden x 2 B = 8192 B, the new k, v
    2 x 8 KV heads x 128 x 2 B = 4096 B, the output 8192 B; 3 requests: 24576 B (5 packets), 12288 B (3 packets),
    24576 B, each message over min(tp 2, b 4) = 2 NICs; the latency stays the NIC path's one way."""
    preset = load_link("lamina-gpu-initiated-400g")
    packet = PacketLink(preset.name, preset.description, preset.source, preset.citation, preset.latency_s,
                        preset.bytes_per_s_per_direction)
    assert packet.transfer_s(24576) == pytest.approx(1.65e-5 + 25000 / 45.7e9, rel=1e-12)
    model = system_model(load_system("lamina"), library.load_workload_spec("llama3-8b"))
    assert isinstance(model, OffloadModel)
    layer = model.with_link(packet).layer([100] * 3)
    assert layer.latency_s == 1.65e-5
    assert layer.q_wire_s == pytest.approx(25000 / (2 * 45.7e9), rel=1e-12)
    assert layer.kv_wire_s == pytest.approx(15000 / (2 * 45.7e9), rel=1e-12)
    assert layer.out_wire_s == pytest.approx(25000 / (2 * 45.7e9), rel=1e-12)
    # the NIC's own parameters keep their meaning: per-NIC bandwidth, one-way latency
    assert model.with_link(packet).link.bytes_per_s_per_direction == 45.7e9
    assert model.layer([100] * 3).q_wire_s == pytest.approx(24576 / (2 * 45.7e9), rel=1e-12)


def test_the_decode_merge_is_one_pass_over_the_partials_in_both_models() -> None:
    """DistAttention's owner (and each context-parallel rank) merges p partials in one elementwise pass over
    p x the partial's bytes; one holder merges nothing. The context-parallel decode of 16 sequences at cp 4
    (llama3-8b, tp 8: 4 heads a GPU) costs its merge by the same function."""
    model = system("context-parallel-h100", "llama3-8b", changes={"parallelism.cp": 4})
    assert isinstance(model, ContextParallelModel)
    compute = _decode_compute(model.rank, 16)
    _, partial_bytes = distattention_messages(compute, 4, 4)
    assert partial_bytes == 16 * 4 * (128 + 2) * 4  # o, max and sum-exp per head, fp32
    merge_s = distattention_merge_s(compute, partial_bytes, 4)
    assert merge_s == compute.elementwise_s(4 * partial_bytes) > 0
    assert distattention_merge_s(compute, partial_bytes, 1) == 0.0
    assert model.merge_costs_s(16)[1] == merge_s
