"""A need beyond a memory reads above it (audit helpers 523, 527): `parallel` at the largest context plus one chunk
printed "memory per device 85.9 GB ... exceeds h100-sxm5's 85.9 GB", and a first mend "85.8995 GB ... exceeds the
85.9 GB", which reads as below; where the two read alike at 0.1 GB the excess is written beside."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from test_context_parallel_memory_s44 import _spec

from archsim import library
from archsim.cli import main
from archsim.outputs import beyond_text
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import UnrunnableOp
from archsim.systems.system_spec import load_system

GIB_80 = 80 * 2**30


def test_a_need_reads_above_its_limit() -> None:
    assert beyond_text(88.6e9, 85.9e9) == "88.6 GB"
    assert beyond_text(GIB_80 + 152_000, GIB_80) == "85.9 GB (152 kB more)"
    assert beyond_text(GIB_80 + 31e6, GIB_80) == "85.9 GB (31 MB more)"
    assert beyond_text(GIB_80 + 12, GIB_80) == "85.9 GB (12 B more)"
    assert beyond_text(10e9, 85e9) == "10.0 GB"  # not beyond: 0.1 GB, whatever the limit


def test_parallel_one_chunk_past_the_largest_context() -> None:
    result = CliRunner().invoke(main, ["parallel", "--scheme", "ring", "--devices", "4", "-w", "llama3-8b",
                                       "--seq-len", "1705056", "--gpu", "h100-sxm5"])
    assert result.exit_code == 0, result.output
    assert "memory per device 85.9 GB (262 kB more) (16.1 GB of weights) exceeds h100-sxm5's 85.9 GB" in (
        result.output)
    assert "the largest context that fits is 1705048 tokens" in result.output


def test_a_serving_refusal_one_token_past_the_longest_prompt(tmp_path) -> None:
    model = system_model(load_system(_spec(tmp_path, 1)), library.load_workload_spec("llama3-8b"))
    with pytest.raises(UnrunnableOp, match=r"memory per gpu device 85\.9 GB \(\d+ kB more\) \(16\.1 GB of weights"):
        model.iteration(Batch((288_992,), ()))
