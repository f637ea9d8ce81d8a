"""Report details from audit helper-449: a sweep report without --spec is titled by the sweep that wrote the store
(not the file's stem), and a report's table prints no 'None'."""

from __future__ import annotations

from pathlib import Path


def test_a_sweep_report_without_spec_is_titled_by_its_sweep(cli, tmp_path: Path) -> None:
    db = tmp_path / "sweep.sqlite"
    cli("sweep", "seqpar-scaling", "--db", str(db))
    cli("report", "--sweep", str(db), "--out", str(tmp_path / "r"))
    page = (tmp_path / "r" / "index.html").read_text()
    assert "<h1>sweep seqpar-scaling</h1>" in page and "sweep sweep" not in page


def test_a_parallel_page_prints_no_none(cli, tmp_path: Path) -> None:
    """A forward row's recompute_s is None (no recompute modelled): an empty cell, as in the CSV."""
    cli("parallel", "--scheme", "ring", "--devices", "2,4", "-w", "llama3-8b", "--seq-len", "16K", "--out",
        str(tmp_path / "p"))
    assert "None" not in (tmp_path / "p" / "index.html").read_text()

