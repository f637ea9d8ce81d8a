"""`archsim run` without --workload binds the cascade's small test sizes: a mapping sized for a model that fails on
them says so and suggests --workload, whichever check fails (README "Bad input": audit helper-441 found the hint on
2 of 7 library mappings)."""

from __future__ import annotations

import pytest
from cli_errors import one_line_error


@pytest.mark.parametrize("mapping", ["flat", "flat-offchip", "unfused", "linear-ffn-flat", "fusemax"])
def test_a_mapping_that_does_not_fit_the_test_sizes_suggests_a_workload(cli, mapping: str) -> None:
    result = cli("run", "--mapping", mapping, expect=2)
    one_line_error(result, "error: ")
    assert "pass --workload W" in result.output
    assert result.output.count("pass --workload") == 1  # once: cascade.bind's own hint is not repeated


def test_with_a_workload_the_error_is_the_mappings_own(cli) -> None:
    result = cli("run", "--mapping", "flat-offchip", "--workload", "bert-base", "--set", "seq_len=100", expect=2)
    assert "test sizes" not in result.output and "rank M" in result.output


@pytest.mark.parametrize("args", [
    ("--mapping", "fusemax", "--arch", "nosuch"),  # another spec's error is its own
    ("--mapping", "./nosuch.yaml"),
    ("--mapping", "fusemax", "--set", "foo=3"),  # an option's
    # every model size given: no test size is bound (review helper-448)
    ("--mapping", "flat-offchip", "--set", "batch=1", "--set", "heads=2", "--set", "seq_len=4000", "--set",
     "head_dim=64", "--set", "word_bytes=2"),
])
def test_the_hint_only_where_the_test_sizes_meet_the_mapping(cli, args: tuple[str, ...]) -> None:
    result = cli("run", *args, expect=2)
    one_line_error(result, "error: ")
    assert "test sizes" not in result.output
