"""The outermost memory (DRAM) is off chip: a file giving it an area is refused, as one giving it a capacity is.
Before, a user's DRAM area was added to the chip's and then kept unscaled by a node change, against the docstrings'
'DRAM is off chip and has area 0' (audit helper-533)."""

from __future__ import annotations

from click.testing import CliRunner

from archsim.cli import main


def _run(tmp_path, area: float):
    path = tmp_path / "a.yaml"
    path.write_text(f"name: d\nbase: fusemax\nmemories: {{DRAM: {{area_um2: {area}}}}}\n")
    return path, CliRunner().invoke(main, ["run", "-m", "fusemax", "-a", str(path), "-w", "bert-base"])


def test_a_dram_area_is_refused_naming_the_field(tmp_path) -> None:
    path, result = _run(tmp_path, 100.0)
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {path}: memories.DRAM.area_um2: expected 0: the outermost level (DRAM) "
                                     "is off chip, outside the chip's area (got 100.0)")


def test_a_dram_area_of_zero_runs(tmp_path) -> None:
    assert _run(tmp_path, 0)[1].exit_code == 0
