"""Shared helpers for the tests: run the CLI in-process and parse its JSON; record the attention calls a
sequence-parallel timing makes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.systems.seqpar_compute import DeviceCompute


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(main, list(args))
        assert result.exit_code == expect, (result.exit_code, result.output, result.exception)
        return result

    return run


@pytest.fixture
def cli_json(cli):
    def run(*args: str):
        return json.loads(cli(*args, "--json").output)

    return run


@pytest.fixture
def attention_calls(monkeypatch: pytest.MonkeyPatch) -> set[tuple]:
    """The (q_tokens, k_tokens, causal, heads, kv_heads) of every non-empty `DeviceCompute.attention_s` call made
    while the test runs (the calls still timed as before)."""
    made: set[tuple] = set()
    timed = DeviceCompute.attention_s

    def record(self, q_tokens, k_tokens, causal, heads=None, kv_heads=None):
        if q_tokens and k_tokens:
            made.add((q_tokens, k_tokens, causal, self.heads if heads is None else heads,
                      self.kv_heads if kv_heads is None else kv_heads))
        return timed(self, q_tokens, k_tokens, causal, heads, kv_heads)

    monkeypatch.setattr(DeviceCompute, "attention_s", record)
    return made
