"""Fixes of an audit of the GPU validation's bookkeeping and messages.

1. `archsim validate` puts a row in the calibration split only when its seqlen is in the calibration's split and its
   family was fitted on this very file (the SHA-256 the calibration records for the family,
   `Calibration.fitted_on`); a family whose file is not recorded is split by seqlen alone. No prediction moves.
2. `archsim check` on measurements counts the timed rows and, of them, those of a modelled kernel on a GPU label
   that names a preset, not every row that parses.
3. `archsim calibrate --families F` on a file with no row of F in the split says so, naming the families that do
   have rows there.
4. A calibration named by path that is no file is "no such calibration file", not "... in the package".
5. A head count of zero reads as the cause: "expected positive query and KV head counts, ...".
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.cli import main
from archsim.commands.gpu import reference_csv
from archsim.errors import SpecError
from archsim.gpu.measurements import read_measurements
from archsim.gpu.params import calibration_from_dict, load_calibration, packaged_path
from archsim.gpu.validate import validate

ROOT = Path(__file__).resolve().parents[1]
H200_CSV = ROOT / "reports" / "measured" / "measured-NVIDIA-H200.csv"
HELDOUT_CSV = ROOT / "reports" / "measured" / "measured-heldout-NVIDIA-H200.csv"
HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
FA2_ROW = "A100 80GB SXM4,FlashAttention-2,fp16,False,8,{heads},64,{seqlen},fwd+bwd,throughput,120,TFLOPs/s"


def _v1() -> dict:
    return yaml.safe_load(packaged_path("v1").read_text())


def _csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "m.csv"
    path.write_text("\n".join((HEADER, *rows)) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ 1: the split
@pytest.mark.parametrize(("measurements", "where"), [
    ({"families": "fa2"}, "measurements.families"), ({"families": ["nope"]}, "measurements.families"),
    ({"sha256": 12}, "measurements.sha256"), ({"kept_from": {"families": [1]}}, "measurements.kept_from.families"),
    ({"kept_from": "v1"}, "measurements.kept_from"), ({"sha256": "x", "families": []}, "measurements.families"),
])
def test_a_malformed_record_of_the_fitted_file_is_refused(measurements: dict, where: str) -> None:
    data = {**_v1(), "measurements": measurements}
    with pytest.raises(SpecError) as error:
        calibration_from_dict(data, "c.yaml")
    assert error.value.where == where


def test_the_packaged_rows_keep_the_seqlen_split() -> None:
    """Every family with a row in the packaged A100 file was fitted on it (v1, kept by v2): the split is the
    seqlen rule's, and both splits have rows."""
    result = validate(reference_csv(), load_calibration())
    assert [c.split for c in result.comparisons] == [
        result.calibration.split_of(c.measurement.case.seqlen) for c in result.comparisons]
    assert {c.split for c in result.comparisons} == {"held-out", "calibration"}


def test_rows_of_families_fitted_on_another_file_are_held_out() -> None:
    """On the H200 file, v2's archsim rows (fitted there) keep the seqlen split; FlashAttention-2 and PyTorch,
    fitted on A100 rows, are held out at every length, and every row is held out for v1 and for the held-out
    file, on which nothing was fitted. The predictions are those of a calibration that records no file."""
    v2 = load_calibration()
    result = validate(H200_CSV, v2)
    for c in result.comparisons:
        archsim = c.measurement.kernel.startswith("archsim")
        assert c.split == (v2.split_of(c.measurement.case.seqlen) if archsim else "held-out"), c.measurement.row
    assert any(c.split == "calibration" for c in result.comparisons)
    assert {c.split for c in validate(H200_CSV, load_calibration("v1")).comparisons} == {"held-out"}
    assert {c.split for c in validate(HELDOUT_CSV, v2).comparisons} == {"held-out"}
    unrecorded = copy.deepcopy(_v1())
    del unrecorded["measurements"]  # split by seqlen alone: the FlashAttention-2 rows at 512, 2048, 8192 too
    by_seqlen = validate(H200_CSV, calibration_from_dict(unrecorded))
    v1_result = validate(H200_CSV, load_calibration("v1"))
    assert [c.predicted for c in by_seqlen.comparisons] == [c.predicted for c in v1_result.comparisons]
    assert [c.split for c in by_seqlen.comparisons] == [
        v2.split_of(c.measurement.case.seqlen) for c in by_seqlen.comparisons]


def test_validate_says_which_families_are_held_out_whole() -> None:
    result = CliRunner().invoke(main, ["validate", "--measurements", str(H200_CSV)])
    assert result.exit_code == 0, result.output
    assert "held out at every seqlen, their family not fitted on this file by v2: the rows of fa2, pytorch" \
        in result.output
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 0 and "held out at every seqlen" not in result.output


# ------------------------------------------------------------------------------------------------ 2: check counts
def test_check_counts_rows_of_a_modelled_kernel_on_a_known_gpu(tmp_path: Path) -> None:
    """Four timed rows: one FlashAttention-2 row on a preset's label (counted), one of a kernel with no model, one
    on a label that names no preset, and one OOM row (no timing)."""
    path = _csv(tmp_path, FA2_ROW.format(heads=32, seqlen=2048),
                FA2_ROW.format(heads=32, seqlen=2048).replace("FlashAttention-2", "xformers (cutlass)"),
                FA2_ROW.format(heads=32, seqlen=2048).replace("A100 80GB SXM4", "Tesla V100"),
                FA2_ROW.format(heads=32, seqlen=1024).replace(",120,", ",OOM,"))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 timed rows, 1 of a modelled kernel on a known GPU" in result.output
    assert "1 skipped (not timings)" in result.output


def test_check_counts_the_rows_validate_compares_on_the_h200_file() -> None:
    """The H200 file: 511 timed rows, 8 of them MInference sparse kernels without a model; validate compares the
    other 503 as 263 timings (240 cases are timed as a latency row and a throughput row, each compared once, by its
    latency row: 503 - 240)."""
    result = CliRunner().invoke(main, ["check", str(H200_CSV)])
    assert "511 timed rows, 503 of a modelled kernel on a known GPU" in result.output, result.output
    assert len(validate(H200_CSV, load_calibration()).comparisons) == 263


# ------------------------------------------------------------------------------------------------ 3: --families
def test_calibrate_families_without_rows_says_which_families_have_rows(tmp_path: Path) -> None:
    path, out = _csv(tmp_path, FA2_ROW.format(heads=32, seqlen=2048)), tmp_path / "c.yaml"
    result = CliRunner().invoke(main, ["calibrate", "--measurements", str(path), "--families", "fa1,fa3",
                                       "--out", str(out)])
    assert result.exit_code == 1 and not out.exists(), result.output
    one_line_error(result, f"nothing to fit in {path}", "no row of the families asked for (fa1, fa3)",
                    "the families with rows there: fa2 (1)", "no calibration written")
    assert "none of its" not in result.stderr


# ------------------------------------------------------------------------------------------------ 4: calibration path
@pytest.mark.parametrize(("name", "says"), [
    ("nofile.yaml", "no such calibration file"), ("sub/nofile.yaml", "no such calibration file"),
    ("v9", "no such calibration file in the package (packaged: v1, v2)"),
])
def test_a_missing_calibration_is_named_as_a_path_or_a_version(name: str, says: str) -> None:
    with pytest.raises(SpecError) as error:
        load_calibration(name)
    assert error.value.source == name and error.value.message == says
    result = CliRunner().invoke(main, ["validate", "--calibration", name])
    assert result.exit_code == 2
    one_line_error(result, f"{name}: {says}")


# ------------------------------------------------------------------------------------------------ 5: heads
@pytest.mark.parametrize("heads", ["0q/0kv", "8q/0kv", "0q/8kv", "6q/4kv"])
def test_a_zero_head_count_reads_as_the_cause(tmp_path: Path, heads: str) -> None:
    path = _csv(tmp_path, FA2_ROW.format(heads=heads, seqlen=2048))
    with pytest.raises(SpecError) as error:
        read_measurements(path)
    assert error.value.where == "line 2, field 'heads'"
    assert error.value.message == (f"expected positive query and KV head counts, query heads a multiple of KV "
                                   f"heads, got '{heads}'")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    one_line_error(result, str(path), "field 'heads'", "expected positive query and KV head counts")
