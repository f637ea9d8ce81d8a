"""An option that no point of a `parallel` grid can take is bad input (exit 2, one line naming it), as a single
point and a sweep's parallel block refuse it; it had printed a grid of infeasible rows with exit 0 (audit
helper-516). A point rejected for a value the grid sweeps stays an infeasible row."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archsim.cli import main

GRID = ["parallel", "--devices", "1,2", "--workload", "llama3-8b", "--seq-len", "8192"]


@pytest.mark.parametrize("args, says", [
    (["--scheme", "ring,megatron-sp", "--direction", "decode", "--scope", "layer"],
     "error: --scope: a decode step is timed for its attention only"),
    (["--scheme", "ring,zigzag", "--tp", "3"], "error: --tp: expected a divisor of the 8 devices per node")])
def test_an_option_no_point_takes_exits_2(args: list[str], says: str) -> None:
    result = CliRunner().invoke(main, [*GRID, *args])
    assert result.exit_code == 2 and result.output.strip().startswith(says), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_scheme_some_points_reject_stays_an_infeasible_row() -> None:
    result = CliRunner().invoke(main, [*GRID, "--scheme", "ring,zigzag", "--direction", "decode"])
    assert result.exit_code == 0, result.output
    assert result.output.count("infeasible: --scheme: decode runs ring") == 2
