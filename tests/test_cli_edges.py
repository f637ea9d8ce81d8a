"""Edges of the command line: `main(..., standalone_mode=False)` behaves as click promises, and `run --trace` on
an infeasible point writes no trace."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.errors import SpecError


def test_standalone_mode_false_returns_the_exit_code_of_help() -> None:
    """click: with standalone_mode=False, `--help` returns 0 instead of exiting."""
    assert main.main(["list", "--help"], standalone_mode=False) == 0


def test_standalone_mode_false_raises_the_errors_it_would_report() -> None:
    """click: with standalone_mode=False, a usage error and the command's own exceptions reach the caller."""
    with pytest.raises(click.UsageError):
        main.main(["run", "--no-such-option"], standalone_mode=False)
    with pytest.raises(click.UsageError, match="NUL byte"):
        main.main(["list", "a\0b"], standalone_mode=False)
    with pytest.raises(SpecError):
        main.main(["run", "--mapping", "no-such-mapping"], standalone_mode=False)


def test_standalone_mode_still_exits_with_one_line() -> None:
    result = CliRunner().invoke(main, ["run", "--mapping", "no-such-mapping"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_run_trace_of_an_infeasible_point_writes_nothing(tmp_path) -> None:
    """An infeasible point has no timeline: `run --model event --trace F` leaves F as it was (as `report --run
    --event` writes no trace.json for a point it does not draw), says so on stderr in one line with the reason,
    and exits 0 (the infeasible record is a result)."""
    trace = tmp_path / "trace.json"
    earlier = '{"traceEvents": []}'  # an earlier trace: a file of another kind is refused (test_outputs_s52)
    trace.write_text(earlier)
    result = CliRunner().invoke(main, ["run", "-m", "fusemax", "-w", "bert-base", "--set", "M0=1048576", "--set",
                                       "seq_len=1048576", "--model", "event", "--trace", str(trace)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert trace.read_text() == earlier
    assert "INFEASIBLE" in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "no trace written" in lines[0] and "infeasible" in lines[0]
    assert "GlobalBuffer holds" in lines[0]  # the record's reason


def test_run_trace_of_a_feasible_point_is_written(tmp_path) -> None:
    trace = tmp_path / "trace.json"
    result = CliRunner().invoke(main, ["run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=1024",
                                       "--model", "event", "--trace", str(trace)])
    assert result.exit_code == 0 and result.stderr == ""
    assert '"ph": "X"' in trace.read_text()
