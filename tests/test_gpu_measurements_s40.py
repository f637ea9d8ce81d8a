"""Fixes of an audit of the measurements reader and the validation's split (s40).

1. `archsim validate` tells the rows a calibration was fitted on by their content (`row_digest`: the configuration
   and the measured time the fit read), not by the bytes of the file they come in: a copy with other line endings,
   or the rows of two files concatenated (the README's leave-one-GPU-out recipe), keeps the fitted rows in the
   calibration split and the others held out; validate names the families with rows held out at the calibration
   lengths beside rows fitted on.
2. A column named twice in a measurements header is refused, naming it (the last copy was read silently).
3. A row with fewer or more cells than the header is refused, naming its line and the count expected (it was
   padded or cut silently).
4. `archsim check` on measurements says why it skipped rows as validate does, and refuses a missing column with
   validate's message (it could not tell the kind of the CSV).
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.cli import main
from archsim.commands.gpu import reference_csv
from archsim.errors import SpecError
from archsim.gpu.calibrate import calibrate
from archsim.gpu.measurements import read_measurements, row_digest
from archsim.gpu.params import calibration_from_dict, load_calibration, packaged_path
from archsim.gpu.validate import validate
from archsim.model.gpu_kernels import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
H200_CSV = ROOT / "reports" / "measured" / "measured-NVIDIA-H200.csv"
HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
FA2_ROW = "A100 80GB SXM4,FlashAttention-2,fp16,False,8,32,64,{seqlen},fwd+bwd,throughput,{value},TFLOPs/s"


def _rows(path: Path, kernel: str, seqlen: int, direction: str, metric: str) -> list[list[str]]:
    """The rows of a measurements file (header first) of one kernel, sequence length, direction and metric."""
    header, *body = csv.reader(path.open(newline="", encoding="utf-8"))
    at = {name: header.index(name) for name in ("kernel", "seqlen", "direction", "metric")}
    return [row for row in body if row[at["kernel"]] == kernel and row[at["seqlen"]] in (f"{seqlen}", f"{seqlen}.0")
            and row[at["direction"]] == direction and row[at["metric"]] == metric]


def _write(path: Path, rows: list[list[str]], line_end: str = "\r\n") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator=line_end).writerows(rows)
    return path


def _header(path: Path) -> list[str]:
    return next(csv.reader(path.open(newline="", encoding="utf-8")))


def _mixed(tmp_path: Path) -> tuple[Path, list[str]]:
    """A100 and H200 rows in one file with CRLF line endings (the two files share a header), and the split each
    row has: v2 fitted archsim's kernels on the H200 rows at 512, 2048 and 8192, and every other family on the
    A100 rows at those lengths (v1); a row at 1024 was fitted by neither, nor was an H200 FlashAttention-2 row."""
    archsim = "archsim FlashAttention-2 (Triton)"
    picked = [
        (_rows(H200_CSV, archsim, 512, "fwd", "latency")[0], "calibration"),
        (_rows(H200_CSV, archsim, 1024, "fwd", "latency")[0], "held-out"),
        (_rows(H200_CSV, "FlashAttention-2", 512, "fwd", "latency")[0], "held-out"),
        (_rows(reference_csv(), "FlashAttention-2", 512, "fwd+bwd", "throughput")[0], "calibration"),
        (_rows(reference_csv(), "FlashAttention-2", 1024, "fwd+bwd", "throughput")[0], "held-out"),
    ]
    assert _header(H200_CSV) == _header(reference_csv())
    path = _write(tmp_path / "both.csv", [_header(H200_CSV), *(row for row, _ in picked)])
    return path, [split for _, split in picked]


# ------------------------------------------------------------------------------------------------ 1: the split
def test_rows_the_fit_read_stay_in_the_calibration_split_whatever_file_they_come_in(tmp_path: Path) -> None:
    path, splits = _mixed(tmp_path)
    assert [c.split for c in validate(path, load_calibration()).comparisons] == splits


def test_validate_says_which_rows_at_the_calibration_lengths_it_holds_out(tmp_path: Path) -> None:
    """The mixed file's FlashAttention-2 rows at 512: the A100 one fitted on, the H200 one not."""
    path, _ = _mixed(tmp_path)
    result = CliRunner().invoke(main, ["validate", "--measurements", str(path)])
    assert result.exit_code == 0, result.output
    assert "held out at the calibration lengths too, not rows v2 was fitted on: fa2 (1)\n" in result.output
    assert "held out at every seqlen" not in result.output


def test_a_byte_different_copy_of_the_measured_rows_splits_as_they_do(tmp_path: Path) -> None:
    """The audit's reproduction (one more newline at the end of the H200 file moved its fitted rows into the
    held-out split), on the H200 rows of archsim's decode kernel: 8 rows, 3 of them at a calibration length (KV
    length 512, 2048 and 8192) and so fitted on by v2, in a file of their own and in a copy with one more newline."""
    decode = "archsim Flash-Decoding split-KV GQA (Triton)"
    header, *body = list(csv.reader(H200_CSV.open(newline="", encoding="utf-8")))
    rows = [header, *(row for row in body if row[header.index("kernel")] == decode)]
    original = validate(_write(tmp_path / "a.csv", rows, "\n"), load_calibration())
    copied = _write(tmp_path / "b.csv", rows, "\n")
    copied.write_text(copied.read_text() + "\n")
    splits = [c.split for c in original.comparisons]
    assert splits.count("calibration") == 3 and len(splits) == 8
    assert [c.split for c in validate(copied, load_calibration()).comparisons] == splits


def test_a_row_measured_at_another_value_is_held_out(tmp_path: Path) -> None:
    """The fitted A100 FlashAttention-2 row at 512 with another value is not a row the fit read."""
    row = _rows(reference_csv(), "FlashAttention-2", 512, "fwd+bwd", "throughput")[0]
    value = _header(reference_csv()).index("value")
    changed = [*row[:value], str(float(row[value]) + 1), *row[value + 1:]]
    path = _write(tmp_path / "m.csv", [_header(reference_csv()), changed])
    assert [c.split for c in validate(path, load_calibration()).comparisons] == ["held-out"]


def test_a_digest_is_of_what_the_fit_reads(tmp_path: Path) -> None:
    """Spacing, a number's spelling, a unit's case and the GPU label's case do not change what the fit reads; the
    value does."""
    path = tmp_path / "m.csv"
    path.write_text("\n".join((HEADER, FA2_ROW.format(seqlen=512, value=120),
                               FA2_ROW.format(seqlen=1024, value=120))) + "\n")
    (first, second), _ = read_measurements(path)
    path.write_text("\n".join((HEADER, " a100 80gb  sxm4 ,FlashAttention-2,float16,false,8.0,32,64,512,fwd+bwd,"
                                       "throughput,120.0,tflops/s")) + "\n")
    (respelt,), _ = read_measurements(path)
    assert row_digest(first) == row_digest(respelt) != row_digest(second)


def test_packaged_calibrations_record_the_rows_each_family_was_fitted_on() -> None:
    """v1 fitted every family on the 64 calibration rows of the A100 file; v2 refitted archsim's kernels on the 54
    timings of the H200 file's 102 rows at the calibration lengths (48 cases timed as latency and throughput, fitted
    once each by their latency rows, and 6 timed as latency alone) and kept v1's other families: the digests are
    those of rows at the calibration lengths."""
    v1, v2 = load_calibration("v1"), load_calibration("v2")
    a100 = {row_digest(m) for m in read_measurements(reference_csv())[0] if m.case.seqlen in (512, 2048, 8192)}
    h200 = {row_digest(m) for m in read_measurements(H200_CSV)[0]
            if m.case.seqlen in (512, 2048, 8192) and m.kernel.startswith("archsim")}
    assert len(v1.fitted_on("fa2")) == 64 and v1.fitted_on("fa2") <= a100
    assert v2.fitted_on("fa2") == v1.fitted_on("fa2") == v2.fitted_on("pytorch")
    assert len(v2.fitted_on("archsim")) == 54 and v2.fitted_on("archsim") <= h200


def test_a_partial_fit_on_a_partial_base_is_looked_up_through_its_bases() -> None:
    """v3 refits fa2 on rows C with base v2 (archsim on rows B, kept from v1 on rows A): what calibrate records."""
    a, b, c = "a" * 16, "b" * 16, "c" * 16
    data = yaml.safe_load(packaged_path("v1").read_text())
    data["measurements"] = {"fitted_rows": [c], "families": ["fa2"], "kept_from": {
        "calibration": "v2", "fitted_rows": [b], "families": ["archsim"], "kept_from": {
            "calibration": "v1", "fitted_rows": [a], "families": [f for f in FAMILIES if f != "archsim"]}}}
    calibration = calibration_from_dict(data)
    assert [calibration.fitted_on(f) for f in ("fa2", "archsim", "fa1", "pytorch")] == [{c}, {b}, {a}, {a}]


def test_calibrate_records_the_rows_it_fitted(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("\n".join((HEADER, FA2_ROW.format(seqlen=512, value=120),
                               FA2_ROW.format(seqlen=1024, value=150))) + "\n")
    fitted, _ = read_measurements(path)
    calibration = calibrate(path, ("fa2",), load_calibration("v1"))
    assert calibration.measurements["fitted_rows"] == [row_digest(fitted[0])]
    assert calibration.fitted_on("fa2") == {row_digest(fitted[0])}
    assert calibration.fitted_on("pytorch") == load_calibration("v1").fitted_on("pytorch")


def test_a_record_naming_a_file_but_not_its_rows_is_refused() -> None:
    """A calibration written before archsim recorded the rows: its split would rest on the file's bytes."""
    data = yaml.safe_load(packaged_path("v2").read_text())
    for record, where in ((data["measurements"], "measurements.fitted_rows"),
                          (data["measurements"]["kept_from"], "measurements.kept_from.fitted_rows")):
        old = copy.deepcopy(data)
        target = old["measurements"] if record is data["measurements"] else old["measurements"]["kept_from"]
        del target["fitted_rows"]
        with pytest.raises(SpecError) as error:
            calibration_from_dict(old, "c.yaml")
        assert error.value.where == where and "refit" in error.value.message


@pytest.mark.parametrize("bad", [["0123"], "0123456789abcdef", ["0123456789ABCDEF"], [1]])
def test_malformed_row_digests_are_refused(bad: object) -> None:
    data = yaml.safe_load(packaged_path("v1").read_text())
    data["measurements"]["fitted_rows"] = bad
    with pytest.raises(SpecError) as error:
        calibration_from_dict(data, "c.yaml")
    assert error.value.where == "measurements.fitted_rows"


# ------------------------------------------------------------------------------------------------ 2, 3: the grid
@pytest.mark.parametrize(("text", "where", "message"), [
    (f"{HEADER},value\n{FA2_ROW.format(seqlen=512, value=120)},30\n", "column 'value'",
     "named twice in the header (columns 11 and 13); expected each column once"),
    (f"{HEADER}\n{FA2_ROW.format(seqlen=512, value=120)}\nA100 80GB SXM4,FlashAttention-2,fp16\n", "line 3",
     "3 cells; expected 12, one per column of the header"),
    (f"{HEADER}\n{FA2_ROW.format(seqlen=512, value=120)},extra,more\n", "line 2",
     "14 cells; expected 12, one per column of the header"),
])
def test_a_row_that_does_not_match_the_header_is_refused(tmp_path: Path, text: str, where: str,
                                                          message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(SpecError) as error:
        read_measurements(path)
    assert (error.value.where, error.value.message) == (where, message)
    for command in (["validate", "--measurements", str(path)], ["check", str(path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        one_line_error(result, str(path), where, message)


def test_a_blank_line_is_no_row(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"{HEADER}\n\n{FA2_ROW.format(seqlen=512, value=120)}\n\n")
    assert len(read_measurements(path)[0]) == 1


# ------------------------------------------------------------------------------------------------ 4: check
@pytest.mark.parametrize(("cells", "reason"), [
    ({"value": "OOM"}, "no measured value ('OOM')"),  # a bad direction is refused now (test_gpu_provenance_s45)
    ({"metric": "tflops"}, "metric 'tflops' is not a kernel time (modelled: throughput, latency)"),
])
def test_check_says_why_it_skipped_a_row_as_validate_does(tmp_path: Path, cells: dict, reason: str) -> None:
    row = dict(zip(HEADER.split(","), FA2_ROW.format(seqlen=512, value=120).split(","), strict=True))
    path = tmp_path / "m.csv"
    path.write_text("\n".join((HEADER, ",".join(row.values()), ",".join({**row, **cells}.values()))) + "\n")
    checked = CliRunner().invoke(main, ["check", str(path)])
    assert checked.exit_code == 0, checked.output
    assert f"1 skipped (not timings): 1 {reason}" in checked.output
    validated = CliRunner().invoke(main, ["validate", "--measurements", str(path)])
    assert f"1  {reason}" in validated.output


def test_check_refuses_a_missing_column_as_validate_does(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    header = HEADER.replace(",value", "")
    path.write_text(f"{header}\n{FA2_ROW.format(seqlen=512, value=120).replace(',120', '')}\n")
    checked = CliRunner().invoke(main, ["check", str(path)])
    validated = CliRunner().invoke(main, ["validate", "--measurements", str(path)])
    assert checked.exit_code == validated.exit_code == 2
    one_line_error(checked, f"{path}: column 'value': missing (required: gpu, kernel")
    assert checked.stderr == validated.stderr
