"""Attention offloading's compute replica holds its weights and one layer's working set over an iteration's new
tokens (its prompts' K and V leave for the memory pool layer by layer): a prompt or a burst of prompts needing more
than its GPUs hold cannot run there. Unchecked before, lamina served a 300K-token LLaMA3-70B prompt (111 GB a GPU)
and prefilled 64 prompts of 8,000 tokens in one iteration (audit helper-518)."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.systems import lamina_reproduce
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import UnrunnableOp


@pytest.fixture(scope="module")
def lamina():
    return system_model(lamina_reproduce.lamina_system("llama3-70b"), library.load_workload_spec("llama3-70b"))


def test_a_prompt_beyond_the_replicas_memory_cannot_run(lamina) -> None:
    with pytest.raises(UnrunnableOp, match=r"a prompt of 300000 tokens on lamina:llama3-70b dop\(2,4\).s compute "
                                           r"replica: memory per compute device 111\.1 GB "
                                           r"\(70\.6 GB of weights, its KV cache in the memory pool"):
        lamina.iteration(Batch((300_000,), ()))


def test_a_burst_beyond_the_replicas_memory_cannot_run_at_once(lamina) -> None:
    with pytest.raises(UnrunnableOp, match=r"an iteration of 64 prompts \(512000 tokens\)"):
        lamina.iteration(Batch((8000,) * 64, ()))
    assert lamina.iteration(Batch((8000,) * 8, (1024,) * 100)).time_s > 0


def test_the_decodes_do_not_crowd_the_prompts_pass(lamina) -> None:
    """The prompts run their own pass on the compute replica (the decodes' attention is the pool's), so the longest
    prompt that runs alone also runs beside 500 decodes; before, the check added the decodes' 500 tokens to the
    prefill pass's working set and refused it."""
    low, high = 1, 400_000
    while high - low > 1:
        mid = (low + high) // 2
        try:
            lamina.iteration(Batch((mid,), ()))
            low = mid
        except UnrunnableOp:
            high = mid
    assert lamina.iteration(Batch((low,), (1024,) * 500)).time_s > 0
    with pytest.raises(UnrunnableOp):
        lamina.iteration(Batch((low + 1,), (1024,) * 500))
