"""A need beyond a memory reads above it: to 0.1 GB, or to as many places as it takes (audit helper-523: `parallel`
at the largest context plus one chunk printed "memory per device 85.9 GB ... exceeds h100-sxm5's 85.9 GB")."""

from __future__ import annotations

from click.testing import CliRunner

from archsim.cli import main
from archsim.outputs import beyond_text


def test_a_need_shows_the_places_that_put_it_above_the_limit() -> None:
    assert beyond_text(88.6e9, 85.9e9) == "88.6 GB"
    assert beyond_text(85.93e9, 85.899e9) == "85.93 GB"
    assert beyond_text(10e9, 85e9) == "10.0 GB"  # not beyond: 0.1 GB, whatever the limit


def test_parallel_one_chunk_past_the_largest_context() -> None:
    result = CliRunner().invoke(main, ["parallel", "--scheme", "ring", "--devices", "4", "-w", "llama3-8b",
                                       "--seq-len", "1705056", "--gpu", "h100-sxm5"])
    assert result.exit_code == 0, result.output
    assert "memory per device 85.900 GB (16.1 GB of weights) exceeds h100-sxm5's 85.9 GB" in result.output
    assert "the largest context that fits is 1705048 tokens" in result.output
