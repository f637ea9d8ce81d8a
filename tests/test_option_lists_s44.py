"""Comma lists of names (options.names_among): spaces after a comma are taken, an empty item is refused, and a
grid whose every point a swept value rejects stays rows of infeasible points (audit helper-526)."""

from __future__ import annotations

from click.testing import CliRunner

from archsim.cli import main

GRID = ["parallel", "--devices", "2", "-w", "llama3-8b", "--seq-len", "8192"]


def test_spaces_after_commas_are_taken() -> None:
    result = CliRunner().invoke(main, [*GRID, "--scheme", "ring, zigzag"])
    assert result.exit_code == 0 and "zigzag" in result.output, result.output


def test_an_empty_item_is_refused() -> None:
    result = CliRunner().invoke(main, [*GRID, "--scheme", "ring,"])
    assert result.exit_code == 2 and "error: --scheme: ring,: unknown scheme (empty)" in result.output


def test_a_grid_every_point_of_which_a_swept_value_rejects_is_rows() -> None:
    result = CliRunner().invoke(main, [*GRID, "--scheme", "zigzag,stripe", "--direction", "decode"])
    assert result.exit_code == 0 and result.output.count("infeasible: --scheme: decode runs") == 2, result.output


def test_a_grid_every_point_of_which_a_swept_length_rejects_is_rows() -> None:
    result = CliRunner().invoke(main, ["parallel", "--scheme", "ring", "--devices", "2,4", "-w", "llama3-8b",
                                       "--seq-len", "7,9"])
    assert result.exit_code == 0 and result.output.count("infeasible: --seq-len: ring cuts") == 4, result.output
