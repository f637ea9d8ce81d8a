"""Rows `archsim measure --interpret` writes are no timings, so the model skips them, but their fields are checked as
a timing's are: a malformed one is refused naming its row and field, as `archsim check` promises (it printed
"ok ... 0 rows" for a file with a head count 'abc'). `check` counts the timed rows and those skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from archsim.errors import SpecError
from archsim.gpu.measurements import INTERPRETED, read_measurements

HEADER = "source,gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit,how_obtained,note"


def _csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "m.csv"
    path.write_text("\n".join((HEADER, *rows)) + "\n")
    return path


def _row(heads: str = "2", how: str = INTERPRETED) -> str:
    return f"archsim measure,CPU (Triton interpreter),flash_fwd,fp16,True,1,{heads},64,128,fwd,latency,1.5,ms,{how},"


def test_a_well_formed_interpreted_row_is_skipped_as_no_timing(tmp_path: Path) -> None:
    timed, skipped = read_measurements(_csv(tmp_path, _row()))
    assert timed == [] and len(skipped) == 1 and "not a timing" in skipped[0].reason


@pytest.mark.parametrize(("field", "row"), [("heads", _row(heads="abc")), ("heads", _row(heads="-2"))])
def test_a_malformed_interpreted_row_is_refused_naming_its_field(tmp_path: Path, field: str, row: str) -> None:
    with pytest.raises(SpecError) as error:
        read_measurements(_csv(tmp_path, _row(), row))
    assert error.value.where == f"line 3, field '{field}'"


def test_check_counts_timed_and_skipped_rows(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from archsim.cli import main

    result = CliRunner().invoke(main, ["check", str(_csv(tmp_path, _row(), _row()))])
    assert result.exit_code == 0 and "0 timed rows, 0 of a modelled kernel on a known GPU" in result.output
    assert "2 skipped (not timings)" in result.output
