"""The event replay of the systems layer's schedules (`archsim.systems.schedule_events`) against their closed form
(`LayerPhases.device_s`), its spans, its refusals, and `archsim simulate --layer-trace`."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import pytest

from archsim.errors import SpecError
from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.neupims_reproduce import ablation_pairs, sample_contexts
from archsim.systems.schedule_events import ScheduleRun, replay_iteration, replay_layers, unreplayable
from archsim.systems.system_model import layer_phases


def _sbi(row_buffers: int):
    """GPT-3 7B on NeuPIMs with SBI at every batch (the ablation's full design), two or one row buffers."""
    full, one = ablation_pairs()["dual row buffers"]
    return neupims.system(full if row_buffers == 2 else one, "gpt3-7b")


def _contexts(batch: int):
    return sample_contexts((0, 0, batch, 0), batch, "sharegpt")


def _no_overlap(run: ScheduleRun) -> None:
    by_track = defaultdict(list)
    for span in run.spans:
        by_track[span.resource].append(span)
    for spans in by_track.values():
        spans.sort(key=lambda s: s.start_s)
        assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(spans))


@pytest.mark.parametrize(("mode", "model"), [("npu+pim", "gpt3-7b"), ("neupims-no-sbi", "gpt3-7b"),
                                             ("npu-only", "gpt3-30b"), ("neupims", "gpt3-7b")])
def test_one_sub_batch_replay_equals_the_closed_form(mode: str, model: str) -> None:
    """Blocked (npu+pim, one row buffer: the HBM shared), overlapped, attention on the NPU over two PP stages, and
    SBI below min_batch (64 < 256): one chain, so the replay is pre + mha + post per layer, `device_s` (a
    consistency check; 1e-9 relative, measured <= 6e-15)."""
    system = neupims.system(mode, model)
    contexts = _contexts(64)
    run = replay_iteration(system, Batch(decode_context_tokens=contexts))
    phases = layer_phases(system, contexts)
    assert not phases.sub_batch_interleaving
    assert run.closed_form_s == sum(phases.device_s(n) for n in system.stage_layers)
    assert run.replay_s == pytest.approx(run.closed_form_s, rel=1e-9)
    _no_overlap(run)


@pytest.mark.parametrize("batch", [64, 512])
def test_sbi_with_two_row_buffers_equals_the_closed_form(batch: int) -> None:
    """Two chains over two units: each task waits for the two tasks the stage barrier waits for, so the replay of
    A + B + (N-1)(C + D) + E + F is the closed form to rounding (measured 6e-15 over the NeuPIMs grid)."""
    system = _sbi(2)
    phases = layer_phases(system, _contexts(batch))
    assert phases.sub_batch_interleaving
    run = replay_layers(phases, 4)
    assert run.replay_s == pytest.approx(phases.device_s(4), rel=1e-9)
    whole = replay_iteration(system, Batch(decode_context_tokens=_contexts(batch)))
    assert whole.replay_s == pytest.approx(whole.closed_form_s, rel=1e-9)


@pytest.mark.parametrize(("batch", "slower_at_most"), [(64, 0.01), (512, 0.04)])
def test_sbi_with_one_row_buffer_is_slower_by_the_contention(batch: int, slower_at_most: float) -> None:
    """One row buffer: the next layer's pre waits for the PIM's GEMVs to end before its transfers, so its compute
    overlaps nothing, where the closed form overlaps it: the replay is never faster, and measured +0.44 % (batch 64)
    and +2.19 % (batch 512) at 4 layers (+0.3 % to +3.8 % at the models' own layers, module docstring). One layer
    (stages A, B, E, F) has no next pre: the closed form exactly."""
    phases = layer_phases(_sbi(1), _contexts(batch))
    closed = phases.device_s(4)
    replay = replay_layers(phases, 4, shared_hbm=True).replay_s
    assert closed <= replay <= closed * (1 + slower_at_most)
    assert replay_layers(phases, 1, shared_hbm=True).replay_s == pytest.approx(phases.device_s(1), rel=1e-9)


@pytest.mark.parametrize("row_buffers", [1, 2])
@pytest.mark.parametrize("batch", [8, 64, 512])
def test_one_row_buffer_is_never_faster_than_two(row_buffers: int, batch: int) -> None:
    """On the same phases, sharing the HBM only adds waits."""
    phases = layer_phases(_sbi(row_buffers), _contexts(batch))
    for layers in (1, 2, 5):
        assert replay_layers(phases, layers, shared_hbm=True).replay_s >= replay_layers(phases, layers).replay_s


def test_every_track_is_busy_for_the_phases_work() -> None:
    """SBI with one row buffer: the NPU's spans sum to the sub-batches' pre and post, the PIM's to their mha_s, the
    HBM's to the NPU's memory_s and the PIM's GEMVs; no track holds two spans at once; labels name sub-batch and
    layer."""
    phases = layer_phases(_sbi(1), _contexts(256))
    layers = 3
    run = replay_layers(phases, layers, shared_hbm=True)
    busy = run.busy_s()
    pre, post = phases.pre, phases.post
    assert busy["npu"] == pytest.approx(layers * sum(p.time_s + q.time_s for p, q in zip(pre, post, strict=True)))
    assert busy["pim"] == pytest.approx(layers * sum(phases.mha_s))
    assert busy["shared HBM"] == pytest.approx(layers * sum(p.memory_s + q.memory_s + a for p, q, a in
                                                     zip(pre, post, phases.attention_s, strict=True)))
    _no_overlap(run)
    assert {s.name for s in run.spans} >= {"sb1 L0 pre", "sb2 L2 post", "sb2 L1 mha"}


def test_the_tp_all_reduce_is_a_track_of_its_own() -> None:
    """A blocked GPU system with a tp link (vllm-h100, LLaMA 33B at tp 2): the attention runs on the GPU itself
    (one track), each layer's all-reduce on the link, and the replay is the closed form."""
    system = neupims.system("vllm-h100", "llama-33b")
    batch = Batch((300,), tuple(500 + 7 * i for i in range(32)))
    run = replay_iteration(system, batch)
    phases = layer_phases(system, batch.decode_context_tokens, (300,))
    layers = system.layers_per_device
    assert run.replay_s == pytest.approx(run.closed_form_s, rel=1e-9)
    assert set(run.busy_s()) == {"gpu", "tp link"}
    assert run.busy_s()["tp link"] == pytest.approx(layers * phases.allreduce_s)
    assert run.busy_s()["gpu"] == pytest.approx(layers * (phases.pre[0].time_s + phases.mha_s[0]
                                                          + phases.post[0].time_s))
    _no_overlap(run)


def test_schedules_it_does_not_replay_are_refused() -> None:
    with pytest.raises(SpecError, match=r"schedule\.kind: replay is not modelled for it: co-processing"):
        replay_iteration(neupims.system("duplex-pe", "mixtral-8x7b"), Batch(decode_context_tokens=(100, 200)))
    steady = neupims.system("neupims", "gpt3-7b", {"schedule.layer_time": "steady-state", "schedule.min_batch": 2,
                                                   "schedule.only_when_faster": False})
    with pytest.raises(SpecError, match=r"schedule\.layer_time"):
        replay_layers(layer_phases(steady, _contexts(8)), 2)
    assert unreplayable(neupims.system("lamina", "llama3-70b")) is None  # its own event model replays it
    assert unreplayable(neupims.system("context-parallel-h100", "llama3-8b"))[0] == "schedule.kind"
    assert unreplayable(neupims.system("duplex", "glam-143b"))[0] == "params.moe_every"
    assert unreplayable(neupims.system("neupims", "gpt3-7b", {"links": {"tp": "nvlink4-h100"}}))[0] == "links.tp"
    with pytest.raises(SpecError, match="layers"):
        replay_layers(layer_phases(_sbi(2), _contexts(8)), 0)


def test_simulate_writes_the_layer_trace(tmp_path, cli) -> None:
    path = tmp_path / "layers.json"
    args = ("simulate", "-s", "neupims", "-w", "gpt3-7b", "--rate", "50", "--requests", "30", "--lengths", "alpaca")
    plain = cli(*args).output
    out = cli(*args, "--layer-trace", str(path)).output
    *served, line = out.splitlines()
    strip = [s for s in plain.splitlines() if "simulated in" not in s]
    assert [s for s in served if "simulated in" not in s] == strip  # the other output unchanged
    assert line.startswith("layer replay of iteration ") and line.endswith(f"trace written to {path}")
    assert "closed form" in line and ("(+0.00 %)" in line or "(-0.00 %)" in line)  # overlapped: one chain
    events = json.loads(path.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and {e["cat"] for e in spans} == {"npu", "pim"}
    record = json.loads(cli(*args, "--layer-trace", str(path), "--json").output)["layer_replay"]
    assert record["replay_s"] == pytest.approx(record["closed_form_s"], rel=1e-9) and record["decodes"] > 0


def test_simulate_replays_attention_offloading_with_its_own_event_model(tmp_path, cli) -> None:
    path = tmp_path / "layers.json"
    out = cli("simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "5", "--requests", "20", "--lengths",
              "azure-conv", "--layer-trace", str(path)).output
    line = out.splitlines()[-1]
    assert "a token in steady state" in line and "closed form" in line
    record = json.loads(cli("simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "5", "--requests", "20",
                            "--lengths", "azure-conv", "--layer-trace", str(path), "--json").output)["layer_replay"]
    assert record["replay_s"] == pytest.approx(record["closed_form_s"], rel=0.05)  # offload.py's stated agreement
    spans = [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]
    assert {"memory pool", "link out", "link back"} <= {e["cat"] for e in spans}


def test_simulate_refuses_the_layer_trace_on_context_parallelism(tmp_path, cli) -> None:
    result = cli("simulate", "-s", "context-parallel-h100", "-w", "llama3-8b", "--rate", "1", "--requests", "2",
                 "--layer-trace", str(tmp_path / "layers.json"), expect=2)
    assert "--layer-trace" in result.output and "schedule.kind" in result.output
    assert result.output.count("\n") == 1, result.output
    assert not (tmp_path / "layers.json").exists()
