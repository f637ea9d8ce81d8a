"""Shared helpers for the tests: run the CLI in-process and parse its JSON."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim.cli import main


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
