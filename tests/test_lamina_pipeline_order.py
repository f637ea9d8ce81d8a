"""The staggered pipeline's order (archsim.systems.offload_events, pim.md §3.4: n micro-batches on n - 1 replicas,
each starting t_m / (n - 1) after the previous, slice k of micro-batch j on replica (j + k) mod (n - 1)) and the
Lamina report's pipeline of a staggered system (archsim.report.lamina)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from archsim import library
from archsim.report import lamina as page
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel
from archsim.systems.offload_events import PipelineRun, simulate_pipeline
from archsim.systems.system_spec import load_system, with_fields

_TAG = re.compile(r"^mb(\d+) t(\d+) L(\d+) dense$")


def _staggered(workload: str, micro_batches: int) -> OffloadModel:
    """The `lamina` preset staggered: `micro_batches` - 1 replicas of 2 H100s, 4 H20s."""
    fields = {"schedule": {"kind": "staggered", "micro_batches": micro_batches, "divide_and_conquer": True},
              "devices.compute.count": 2 * (micro_batches - 1), "parallelism.tp": 2, "devices.memory.count": 4,
              "parallelism.attention_pool": 4}
    return system_model(with_fields(load_system("lamina"), fields), library.load_workload_spec(workload))


def _run(model: OffloadModel, contexts: list[int], tokens: int) -> PipelineRun:
    layers = model.micro_batch_layers(contexts)
    return simulate_pipeline(layers, model.replicas, model.layers, tokens, model.divide_and_conquer, trace=True,
                             heads_s=model.heads_s(contexts), lanes=model.link_lanes)


def test_micro_batch_j_starts_j_replica_periods_after_micro_batch_0_and_replicas_take_turns() -> None:
    """LLaMA3-70B, 4 micro-batches on 3 replicas, 31 requests at 2000 tokens (the audit's): micro-batch j's first
    dense slice starts j x t_m / 3 after micro-batch 0's (they started at 0, 412.9, 217.4 and 627.0 us: micro-batch
    0's short first slice let its slice 1 take replica 1 before micro-batch 1 came), and each replica runs its
    slices in increasing j + k n (slice k of micro-batch j at (j + k n) t_m / (n - 1) in the steady state)."""
    model = _staggered("llama3-70b", 4)
    contexts = [2000] * 31
    layers, n = model.micro_batch_layers(contexts), model.micro_batches
    run = _run(model, contexts, 2)
    dense = defaultdict(list)  # replica -> (start, j, k)
    first_s = {}
    for span in run.spans:
        if match := _TAG.match(span.name):
            j, t, layer = map(int, match.groups())
            k = t * model.layers + layer
            assert span.resource == f"replica {(j + k) % model.replicas}"
            dense[span.resource].append((span.start_s, j + k * n))
            if k == 0:
                first_s[j] = span.start_s
    assert sorted(first_s) == list(range(n))
    for j in range(n):
        assert first_s[j] == pytest.approx(j * layers[j].compute_s / model.replicas, rel=1e-9, abs=1e-12)
    assert set(dense) == {f"replica {r}" for r in range(model.replicas)}
    for slices in dense.values():
        keys = [key for _, key in sorted(slices)]
        assert keys == sorted(keys)


def test_the_reports_pipeline_draws_a_staggered_runs_resources() -> None:
    """A staggered run (LLaMA3-8B, 4 micro-batches on 3 replicas, 2 link lanes, 257 requests of 2664 tokens, whose
    transfers overlap on both out lanes) has replicas 1 and 2 and lanes:
    the figure's rows are its own resources, the replicas by number, the pool, then each link's lanes (a fixed
    tuple of ping-pong's raised ValueError on `replica 1`); the outputs come back one at a time, on lane 0."""
    model = _staggered("llama3-8b", 4)
    assert model.link_lanes == 2
    run = _run(model, [2664] * 257, 2)
    rows = page.pipeline_rows(run.spans)
    resources = page.pipeline_resources(run.spans)
    assert resources == ("replica 0", "replica 1", "replica 2", "memory pool", "link out lane 0",
                         "link out lane 1", "link back lane 0")
    fig = page.pipeline_figure(rows, resources, "staggered")
    assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == list(resources)


@pytest.mark.parametrize(("micro_batches", "label"), [
    (2, "ping-pong: 2 micro-batches on 1 replica"), (4, "staggered: 4 micro-batches on 3 replicas")])
def test_the_pipelines_schedule_is_the_systems(micro_batches: int, label: str) -> None:
    """The report names the system's schedule (it called the shipped ping-pong "staggered")."""
    model = _staggered("llama3-8b", 4) if micro_batches > 2 else system_model(
        load_system("lamina"), library.load_workload_spec("llama3-8b"))
    assert page.schedule_label(model) == label
