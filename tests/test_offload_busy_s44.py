"""The compute pool's busy time is its replicas' work over the replicas (offload.py's docstring): a staggered
pipeline's prompts run on one of its replicas, so a prompt-only iteration on two replicas keeps half the pool busy.
It had read 1.0, the prompts' time not divided by the replicas (audit helper-517)."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.systems import lamina_reproduce
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model


def _share(system, batch: Batch) -> tuple[int, float]:
    model = system_model(system, library.load_workload_spec("llama3-70b"))
    cost = model.iteration(batch)
    return model.replicas, cost.busy_s["compute"] / cost.time_s


def test_a_prompt_keeps_one_replica_of_the_pool_busy() -> None:
    replicas, share = _share(lamina_reproduce.staggered_system("llama3-70b"), Batch((2000,), ()))
    assert replicas == 2 and share == pytest.approx(0.5, rel=1e-9)
    replicas, share = _share(lamina_reproduce.lamina_system("llama3-70b"), Batch((2000,), ()))
    assert replicas == 1 and share == pytest.approx(1.0, rel=1e-9)


def test_heads_and_decodes_are_spread_over_the_replicas_too() -> None:
    """Decodes alone: the busy share is every micro-batch's layers and LM head over the replicas, at most 1 (audit
    helper-526: the heads counted whole read 1.0087 on the staggered pipeline)."""
    system = lamina_reproduce.staggered_system("llama3-70b")
    model = system_model(system, library.load_workload_spec("llama3-70b"))
    contexts = (1024,) * 128
    cost = model.iteration(Batch((), contexts))
    layers = model.micro_batch_layers(list(contexts))
    work_s = model.layers * sum(layer.compute_s for layer in layers) + sum(model.heads_s(list(contexts)))
    assert cost.busy_s["compute"] == pytest.approx(work_s / model.replicas, rel=1e-12)
    assert cost.busy_s["compute"] <= cost.time_s
