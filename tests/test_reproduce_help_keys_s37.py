"""`archsim reproduce --help` lists each reproduction's --json keys: exactly the keys the JSON has (audit
helper-442: sparse's help missed index_building and longest_prefill)."""

from __future__ import annotations

import json
import re

import pytest


def _help_keys(cli, paper: str) -> set[str]:
    text = " ".join(cli("reproduce", "--help").output.split())
    return set(re.findall(r'"(\w+)"', re.search(rf"{paper} \{{([^}}]*)\}}", text).group(1)))


@pytest.mark.parametrize("paper", ["sparse", "seqpar"])
def test_the_help_lists_the_json_keys(cli, paper: str, request) -> None:
    request.getfixturevalue(f"{paper}_cli")  # the run's one reproduction, not a second one
    assert _help_keys(cli, paper) == set(json.loads(cli("reproduce", paper, "--json").output))
