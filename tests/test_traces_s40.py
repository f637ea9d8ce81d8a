"""Session 40's audit of the traces: a Lamina link's message takes a lane track only when it moves, so a link of L
lanes has at most ceil(L) tracks (one lane showed two, spans on lane 1 being messages that waited at rate 0); the
spatial event model's tile spans carry the lanes (PEs) they use and their unit's, to reconcile with utilization."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
import simpy

from archsim import library
from archsim.model.event import simulate
from archsim.point import prepare
from archsim.systems.models import system_model
from archsim.systems.offload_events import _SharedLink, model_pipeline
from archsim.systems.system_spec import load_system, with_fields


def _slots_and_starts(lanes: Fraction | int, arrivals: list[tuple[float, float]]) -> list[tuple[int, float]]:
    """Each message's (trace slot, start of moving) on one `_SharedLink` of `lanes`, messages (arrival_s, wire_s)."""
    env = simpy.Environment()
    link = _SharedLink(env, lanes)
    got: dict[int, tuple[int, float]] = {}

    def message(i: int, at_s: float, wire_s: float):
        yield env.timeout(at_s)
        got[i] = yield from link.transfer(wire_s)

    for i, (at_s, wire_s) in enumerate(arrivals):
        env.process(message(i, at_s, wire_s))
    env.run()
    return [got[i] for i in range(len(arrivals))]


@pytest.mark.parametrize(("lanes", "arrivals", "expected"), [
    # one lane: one message moves at a time, each when the one before is done (1 s apart), all on lane 0
    (1, [(0, 1), (0.25, 1), (0.5, 1)], [(0, 0.0), (0, 1.0), (0, 2.0)]),
    # 3/2 lanes: the second moves at once at half the rate (lane 1), the third waits at rate 0 until the first is
    # done at 1 s and takes its lane 0 (it took lane 2 on arrival, a third track on a link of two)
    (Fraction(3, 2), [(0, 1), (0, 1), (0, 1)], [(0, 0.0), (1, 0.0), (0, 1.0)]),
])
def test_a_message_takes_a_lane_track_when_it_starts_to_move(lanes, arrivals, expected) -> None:
    assert _slots_and_starts(lanes, arrivals) == expected


def test_a_one_lane_staggered_link_has_one_track_a_direction() -> None:
    """The auditor's lam-stag-slow.yaml (lamina staggered, 3 micro-batches on 2 replicas of tp 2, a 2 GB/s link):
    one lane, so one track a direction, whose busy time is its messages' wire time (a message alone moves at a
    message's rate): each token, each layer and micro-batch sends q and k, v out and the output back. Lane 1 had
    spans (the messages that waited behind lane 0's), though the link moves one message at a time."""
    system = with_fields(load_system("lamina"), {
        "devices.compute.count": 4, "devices.memory.count": 2, "parallelism.tp": 2,
        "parallelism.attention_pool": 2, "links.attention.bytes_per_s_per_direction": 2.0e9,
        "schedule": {"kind": "staggered", "micro_batches": 3, "divide_and_conquer": True}})
    model = system_model(system, library.load_workload_spec("llama3-8b"))
    assert model.link_lanes == 1 and model.replicas == 2
    contexts, tokens = [1024] * 48, 4
    run = model_pipeline(model, contexts, tokens, trace=True)
    links = {s.resource for s in run.spans if s.resource.startswith("link")}
    assert links == {"link out lane 0", "link back lane 0"}
    layers = model.micro_batch_layers(contexts)
    wire_s = {"link out lane 0": sum(layer.q_wire_s + layer.kv_wire_s for layer in layers),
              "link back lane 0": sum(layer.out_wire_s for layer in layers)}
    for track, per_layer_s in wire_s.items():
        spans = sorted((s.start_s, s.end_s) for s in run.spans if s.resource == track)
        assert all(end <= start + 1e-15 for (_, end), (start, _) in itertools.pairwise(spans))
        assert sum(end - start for start, end in spans) == pytest.approx(tokens * model.layers * per_layer_s,
                                                                         rel=1e-9)


def test_a_tile_span_carries_the_lanes_it_uses() -> None:
    """MInference's block-sparse head on FuseMax (LLaMA3-8B at 4096 tokens, block 64): the 2-D array (256 x 256 =
    65,536 PEs) runs the pooled scores over 64 x 64 blocks (4,096 PEs) and the attention's QK..SNV over 64 keys x
    256 queries (16,384), so its spans cover most of the run while it is at about a quarter: each tile span says
    its lanes and the unit's, and the spans weighed by them give `utilization` back."""
    p = prepare("fusemax-minference-block-sparse", workload="llama3-8b", sets={"seq_len": 4096})
    run = simulate(p.binding, p.analysis, p.arch, p.mapping)
    array2d = [s for s in run.timeline if s.resource == "array2d"]
    assert {s.args["unit_lanes"] for s in array2d} == {256 * 256}
    assert {(s.args["group"], s.args["lanes_used"]) for s in array2d} == {("score", 64 * 64),
                                                                          ("attention", 64 * 256)}
    latency_s = run.result.latency_s
    for unit in ("array2d", "array1d"):
        weighed_s = sum((s.end_s - s.start_s) * s.args["lanes_used"] / s.args["unit_lanes"]
                        for s in run.timeline if s.resource == unit)
        assert weighed_s / latency_s == pytest.approx(run.result.utilization[unit], rel=1e-9)
    assert not any("lanes_used" in s.args for s in run.timeline if s.resource == "DRAM")  # transfers: no lanes
