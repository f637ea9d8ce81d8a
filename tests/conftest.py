"""Shared helpers for the tests: run the CLI in-process and parse its JSON; write a spec as YAML; record the
attention calls a sequence-parallel timing makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
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


@pytest.fixture(scope="session")
def invoke():
    """Run the CLI in-process: (exit code, output), whatever the code."""
    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args))
        return result.exit_code, result.output

    return run


@pytest.fixture(scope="session")
def write_yaml():
    """Write `data` as YAML at `path` (its folder made), keys in their given order (a sweep's axes in theirs);
    returns the path."""
    def write(path: Path, data: dict) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


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
