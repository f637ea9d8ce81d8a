"""Issue 19's must-show, Quest's memory-loaded fraction 1/PageSize + K/PageNum beside the fraction from the
`quest-decode` cascade's bytes, is in `archsim reproduce sparse --json` ("quest_fraction"), not only in its text.

Expectations: one row per (context, budget) of the reproduction's Quest grid, each with page_tokens 16, PageNum the
context's pages, K the budget's, and the cascade's fraction equal to the formula (whole pages); the text prints the
same rows (`sparse_reproduce.quest_fraction`), and `--json`'s help lists the key.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.systems import sparse_reproduce as sparse


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return sparse.quest_fraction(sparse.quest_points())


def test_one_row_per_context_and_budget_with_the_formula(rows: list[dict]) -> None:
    assert [(r["context"], r["budget"]) for r in rows] == [(c, b) for c in sparse.QUEST_LENGTHS
                                                           for b in sparse.QUEST_BUDGETS]
    for r in rows:
        assert (r["page_tokens"], r["pages"], r["budget_pages"]) == (16, r["context"] // 16, r["budget"] // 16)
        assert r["formula"] == pytest.approx(1 / 16 + r["budget"] / r["context"])
        assert r["fraction"] == pytest.approx(r["formula"])
    first = rows[0]
    assert (first["context"], first["budget"], first["fraction"]) == (8192, 512, pytest.approx(0.125))


def test_the_json_carries_the_rows_the_text_prints(rows: list[dict], sparse_cli) -> None:
    """`archsim reproduce sparse --json` has "quest_fraction", the rows of its text's Quest lines."""
    result = CliRunner().invoke(main, ["reproduce", "sparse", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["quest_fraction"] == json.loads(json.dumps(rows))
    assert (sparse.quest_fraction(json.loads(result.output)["points"])
            == json.loads(result.output)["quest_fraction"])


def test_the_json_help_lists_the_key() -> None:
    result = CliRunner().invoke(main, ["reproduce", "--help"])
    assert result.exit_code == 0, result.output
    assert '"quest_fraction"' in " ".join(result.output.split()), result.output
