"""What is labelled steady is steady (s38): the report's staggered pipeline ran 2 tokens, so its "steady time per
token" read the token 0 -> 1 gap, which still holds the start-up's stagger: 42.7882 ms, below the closed form's
replica bound of 42.8341 ms (`offload.token_s`, a lower bound the event model never beats). And the trace of
`simulate --layer-trace` on attention offloading says, as the reproduction's traces do, that the last token's tail
is in no span (so in no `busy_s`)."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from archsim.systems import lamina_reproduce as lamina
from archsim.systems import offload
from archsim.systems.offload_events import SPANS_NOTE, steady_gap_s
from archsim.systems.schedule_events import OFFLOAD_TOKENS


@pytest.fixture(scope="module")
def report_runs():
    """The report's two pipelines (`lamina_reproduce.pipeline_runs`): LLaMA3-70B, 300 requests at 1024 tokens."""
    return lamina.pipeline_runs()


def _closed_form(model: offload.OffloadModel) -> tuple[float, float]:
    """(`offload.token_s`, `offload.replica_work_s`) of the report's batch on `model`."""
    contexts = [lamina.TRACE_CONTEXT] * lamina.TRACE_BATCH
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    return (offload.token_s(layers, heads_s, model.replicas, model.divide_and_conquer, model.layers,
                            model.link_lanes),
            offload.replica_work_s(layers, heads_s, model.replicas, model.layers))


def test_the_staggered_panels_steady_time_per_token_is_the_replica_bound(report_runs) -> None:
    """n = 3 on 2 replicas: the replicas bind (`replica_work_s` is the closed form's max), so the steady time per
    token is that bound (README: within 0.01 % where the replicas limit the pipeline) and never below it; every
    micro-batch's steady gap is the same period. The 2-token run read 42.765, 42.834 and 42.765 ms."""
    model, run = report_runs["pipeline_staggered"]
    closed_s, replica_s = _closed_form(model)
    assert replica_s == closed_s
    assert run.token_s >= closed_s * (1 - 1e-12)
    assert run.token_s == pytest.approx(closed_s, rel=1e-6)
    for done_s in run.token_done_s:
        assert steady_gap_s(done_s) == pytest.approx(closed_s, rel=1e-6)
    assert lamina.run_trace(model, run, lamina.TRACE_BATCH, lamina.TRACE_CONTEXT)["otherData"]["token_s"] == \
        run.token_s


def test_the_ping_pong_panel_stays_at_its_closed_form(report_runs) -> None:
    """Ping-pong (one replica, two micro-batches) was steady from its first gap: 59.01 ms, the closed form, before
    and after."""
    model, run = report_runs["pipeline"]
    closed_s, _ = _closed_form(model)
    assert run.token_s == pytest.approx(closed_s, rel=1e-9)
    assert round(run.token_s * 1e3, 2) == 59.01


def test_the_simulate_layer_trace_says_the_last_tokens_tail_is_in_no_span(tmp_path, cli) -> None:
    """Lamina (ping-pong, 2 micro-batches) replayed for `OFFLOAD_TOKENS` tokens: the trace keeps the LM heads of
    the first 3 tokens only (the last one's runs in a token not kept), 2 x 3 = 6 head spans, and says so in
    `otherData.spans`, the note the reproduction's traces carry; `layer_replay.spans` says it of `busy_s`, which
    is the trace's spans summed per track."""
    path = tmp_path / "lam.json"
    replay = json.loads(cli("simulate", "-s", "lamina", "-w", "llama3-70b", "--rate", "5", "--requests", "20",
                            "--lengths", "azure-conv", "--layer-trace", str(path), "--json").output)["layer_replay"]
    trace = json.loads(path.read_text())
    assert trace["otherData"]["spans"] == SPANS_NOTE
    assert replay["spans"] == SPANS_NOTE
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert sum(e["name"].endswith("LM head") for e in spans) == 2 * (OFFLOAD_TOKENS - 1)
    busy_s = defaultdict(float)
    for event in spans:
        busy_s[event["cat"]] += event["dur"] / 1e6
    assert replay["busy_s"]["replica 0"] == pytest.approx(busy_s["replica 0"], rel=1e-9)


def test_a_layer_trace_without_offloading_carries_no_offloading_note(tmp_path, cli) -> None:
    """The note is the offloading event model's: a NeuPIMs decoder-layer replay's trace and record have none."""
    path = tmp_path / "layers.json"
    replay = json.loads(cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--rate", "50", "--requests", "10",
                            "--layer-trace", str(path), "--json").output)["layer_replay"]
    assert "spans" not in replay and "otherData" not in json.loads(path.read_text())
