"""An option taking one whole number (`gpu-roofline --seq-len`) says so when a value is bad: it had said "whole
numbers >= 1 separated by commas", inviting the list it then refused (audit s40)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.parametrize("value", ["0", "1.5K", "x"])
def test_a_bad_single_number_asks_for_one_number(tmp_path: Path, cli, value: str) -> None:
    result = cli("gpu-roofline", "--seq-len", value, "--out", str(tmp_path / "r"), expect=2)
    assert f"--seq-len: {value}: expected one whole number >= 1 (8K = 8192), got '{value}'" in result.output
    assert "separated by commas" not in result.output


def test_a_list_is_refused_as_a_list(tmp_path: Path, cli) -> None:
    result = cli("gpu-roofline", "--seq-len", "8K,16K", "--out", str(tmp_path / "r"), expect=2)
    assert "expected one whole number, got a list" in result.output
