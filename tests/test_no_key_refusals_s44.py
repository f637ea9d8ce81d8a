"""Settings under which some query provably sees no key are refused when the cascade binds (exit 2, one line naming
the parameter and the rule), as a pattern map refuses a streaming head with sinks + recent = 0: the softmax over
no key is 0 / 0, NaN. Settings one step inside the rule still bind. `execute --check` on an output that is not
finite (a data-dependent mask that keeps no key of a row) says how many values, no cause it cannot know, and no
numpy warning leaks.

Expectations by hand, from each cascade's mask: a DuoAttention streaming head sees m < sinks or the last `recent`
keys; TokenSelect keeps sinks + local + k tokens; the vertical-slash head keeps k_v columns and k_s diagonals; a
sliding-window query p >= M (P set beyond M) sees keys m in (p - window, M) and the first `sinks`, none from
p = M + window - 1 on when sinks is 0 (the 24 queries of P=24, M=16, window 5 include p = 20 .. 23).
"""

from __future__ import annotations

import re
import warnings

import pytest

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.load import cascade_from_dict
from archsim.errors import SpecError
from archsim.spec_files import read_yaml

REFUSED = [
    ("duoattention-decode", {"sinks": 0, "recent": 0}, "sinks + recent >= 1"),
    ("duoattention-prefill", {"sinks": 0, "recent": 0}, "sinks + recent >= 1"),
    ("tokenselect-decode", {"k": 0, "sinks": 0, "local": 0}, "k + sinks + local >= 1"),
    ("minference-vertical-slash", {"k_v": 0, "sink_columns": 0, "k_s": 0, "local_diagonals": 0}, "k_v + k_s >= 1"),
    ("minference-vertical-slash-kernel", {"k_v": 0, "sink_columns": 0, "k_s": 0, "local_diagonals": 0},
     "k_v + k_s >= 1"),
]
REFUSED_RANKS = [  # (cascade, params, ranks set directly, rule)
    ("attention-sliding-window", {"sinks": 0}, {"P": 24}, "sinks >= 1 or P < M + window"),
    ("attention-sliding-window-gqa", {"sinks": 0}, {"P": 24}, "sinks >= 1 or P < M + window"),
    ("minference-a-shape", {"sinks": 0}, {"P": 56}, "sinks >= 1 or P < M + window"),
]
KEPT = [  # one step inside each rule: every query keeps a key
    ("duoattention-decode", {"sinks": 0, "recent": 1}, {}),
    ("duoattention-prefill", {"sinks": 1, "recent": 0}, {}),
    ("tokenselect-decode", {"k": 1, "sinks": 0, "local": 0}, {}),
    ("minference-vertical-slash", {"k_v": 0, "sink_columns": 0, "k_s": 1, "local_diagonals": 1}, {}),
    ("attention-sliding-window", {"sinks": 0}, {"P": 20}),
    ("attention-sliding-window", {"sinks": 1}, {"P": 24}),
]


def _bind(name: str, params: dict, ranks: dict):
    cascade = library.load_cascade_spec(name)
    return bind(cascade, {**cascade.params, **params}, ranks, source="--set")


@pytest.mark.parametrize(("name", "params", "rule"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_setting_leaving_a_query_no_key_is_refused(name: str, params: dict, rule: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"expected {rule}")):
        _bind(name, params, {})


@pytest.mark.parametrize(("name", "params", "ranks", "rule"), REFUSED_RANKS, ids=[r[0] for r in REFUSED_RANKS])
def test_queries_past_the_window_with_no_sink_are_refused(name: str, params: dict, ranks: dict, rule: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"expected {rule}")):
        _bind(name, params, ranks)


@pytest.mark.parametrize(("name", "params", "ranks"), KEPT, ids=[f"{k[0]}-{i}" for i, k in enumerate(KEPT)])
def test_a_setting_keeping_a_key_per_query_binds(name: str, params: dict, ranks: dict) -> None:
    _bind(name, params, ranks)


def test_cli_refusal_is_one_line_naming_the_parameter(cli) -> None:
    result = cli("execute", "duoattention-decode", "--check", "--set", "recent=0", "--set", "sinks=0", expect=2)
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "--set: sinks: expected sinks + recent >= 1" in result.output


def test_check_of_non_finite_output_names_no_cause_and_leaks_no_warning(cli) -> None:
    """No forced column or diagonal: query 0's only key (0, 0) is kept only if column 0 or diagonal 0 wins its
    top-k, which seed 0 does not give every head (data-dependent, so the binding cannot refuse it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning raised inside the command fails it
        result = cli("execute", "minference-vertical-slash", "--check", "--set", "sink_columns=0",
                     "--set", "local_diagonals=0", expect=1)
    assert "values not finite)" in result.output and "division by zero" not in result.output
    assert "FAIL: error nan" in result.output


def test_a_requirement_joins_comparisons_by_or_only() -> None:
    """`requires:` takes comparisons joined by `or`; a term that is no comparison is refused naming the rule."""
    data = read_yaml(library.find("cascades", "attention-sliding-window"))
    data["requires"] = ["sinks >= 1 or P"]
    with pytest.raises(SpecError, match=re.escape("'sinks >= 1 or P' is not a comparison (<, <=, >, >=, ==) of "
                                                  "size expressions, or comparisons joined by 'or'")):
        cascade_from_dict(data)


def test_every_term_of_an_or_is_a_checked_comparison() -> None:
    """Three terms bind, each read (audit helper-526: only two were tested); an unknown name in a later term is
    refused when the file loads, not a KeyError at bind."""
    data = read_yaml(library.find("cascades", "attention-sliding-window"))
    data["requires"] = ["sinks >= 100 or window >= 100 or P < M + window"]
    cascade = cascade_from_dict(data)
    bind(cascade, {**cascade.params, "sinks": 0}, {}, source="--set")
    with pytest.raises(SpecError, match=re.escape("expected sinks >= 100 or window >= 100 or P < M + window")):
        bind(cascade, {**cascade.params, "sinks": 0}, {"P": 24}, source="--set")
    data["requires"] = ["sinks >= 1 or bogus < 3"]
    with pytest.raises(SpecError, match="bogus"):
        cascade_from_dict(data)
