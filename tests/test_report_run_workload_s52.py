"""`report --run` on a shipped mapping without a workload (auditor 693, R1): every shipped mapping's tiles are sized
for a model, not the cascade's test sizes, so each is refused in one line asking for --workload (flat's had been an
unreadable divisor_at_least formula, unfused's a multiple of 256)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archsim.cli import main


@pytest.mark.parametrize("mapping", ["flat", "unfused", "fusemax"])
def test_report_run_without_a_workload_asks_for_one(tmp_path, mapping) -> None:
    result = CliRunner().invoke(main, ["report", "--run", "--mapping", mapping, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "pass --workload W" in result.stderr
