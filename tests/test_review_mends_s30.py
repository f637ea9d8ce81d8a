"""Mends from the review of session 30's diff: the Lamina pipeline runs go through one helper, `headline` has no dead
parameter, and a memory pool row's dense time is of the dense count it reports."""

from __future__ import annotations

import inspect

import pytest

from archsim import library
from archsim.systems import kv_selection, offload_events, schedule_events, sparse_points
from archsim.systems import lamina_reproduce as lamina
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model


def test_the_three_pipeline_runs_go_through_one_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pipeline_run`, `bw_min_cross_check` (twice: two links) and `replay_offload` all run
    `offload_events.model_pipeline`."""
    calls = []
    real = offload_events.model_pipeline

    def counted(model, contexts, tokens, trace=False):
        calls.append((len(contexts), tokens, trace))
        return real(model, contexts, tokens, trace)

    for module in (offload_events, lamina, schedule_events):
        monkeypatch.setattr(module, "model_pipeline", counted, raising=False)
    model, run = lamina.pipeline_run(batch=64, context=512, tokens=2)
    lamina.bw_min_cross_check(batch=64, context=512)
    replay = schedule_events.replay_offload(model, Batch(decode_context_tokens=[512] * 64), tokens=2)
    assert calls == [(64, 2, True), (64, 2, False), (64, 2, False), (64, 2, True)]
    assert replay.replay_s == run.token_s == lamina.model_pipeline(model, [512] * 64, 2).token_s


def test_headline_has_no_saturation_parameter() -> None:
    assert "saturation" not in inspect.signature(lamina.headline).parameters


def test_the_pool_rows_dense_time_is_of_its_dense_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool row's `dense_time_s` times `dense_requests` (the count `pool_batch` returns), one count for both."""
    real = kv_selection.pool_batch
    monkeypatch.setattr(kv_selection, "pool_batch", lambda *a, **k: (real(*a, **k)[0], real(*a, **k)[1] // 2))
    workload = library.load_workload_spec("llama3-70b")
    system = lamina.lamina_system("llama3-70b")
    method = sparse_points.SparseMethod("duoattention", retrieval_fraction=0.5)
    (row,) = sparse_points.system_points(method, workload, system, None, [8192])
    model = system_model(system, workload)
    assert row["dense_time_s"] == model.attention_cost([8192] * row["dense_requests"]).time_s
