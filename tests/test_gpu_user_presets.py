"""A GPU of one's own in `archsim validate` and `archsim calibrate`, and what a partial calibration keeps.

`--gpu LABEL=GPU` maps a measurements CSV's gpu label to a GPU preset name or a GPU YAML file (checked as any
preset); labels not mapped name presets as before, and a label is never read as a path. `calibrate --families F`
fits F on a base calibration (--base, default v2): a parameter the rows cannot identify keeps the base's value
(noted as kept_from_base), a family asked for without rows is kept whole, and a value at a bound is printed so.
The packaged v1 and v2 come out of their commands byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.commands.gpu import calibrate_cmd, validate_cmd
from archsim.gpu.calibrate import calibrate, calibration_yaml, fit_family
from archsim.gpu.cases import resolve
from archsim.gpu.load import load_gpu
from archsim.gpu.measurements import read_measurements
from archsim.gpu.params import load_calibration, packaged_path
from archsim.gpu.validate import validate
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict

ROOT = Path(__file__).resolve().parents[1]
HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
# FlashAttention-2 d64 latencies (ms) at batch x seqlen = 16K tokens, from the H200 run's sdpa_flash rows
H200_MS = {512: {"fwd": 0.263744, "bwd": 0.825792}, 1024: {"fwd": 0.483168, "bwd": 1.41274},
           2048: {"fwd": 0.946784, "bwd": 2.58872}, 4096: {"fwd": 1.8597, "bwd": 4.94163},
           8192: {"fwd": 3.67638, "bwd": 9.64683}}


def _rows(label: str, directions: tuple[str, ...], scale: float = 1.0, first_scale: float = 1.0) -> list[str]:
    """FlashAttention-2 rows of `label` at H200's latencies times `scale` (the 512 row times `first_scale` more)."""
    return [f"{label},FlashAttention-2,fp16,False,{16384 // n},32,64,{n},{d},latency,"
            f"{ms[d] * scale * (first_scale if n == 512 else 1.0):.6g},ms"
            for n, ms in H200_MS.items() for d in directions]


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def _user_gpu(path: Path, name: str, sm_count: int, fp16: float, dram_bytes_per_s: float) -> Path:
    """A GPU file of one's own: the L40S preset with its name, SMs, tensor peaks, DRAM and aliases changed."""
    data = yaml.safe_load((ROOT / "archsim" / "gpu" / "presets" / "l40s.yaml").read_text())
    data.update(name=name, aliases=[], sm_count=sm_count, dram_bytes_per_s=dram_bytes_per_s, dram_bytes=24 * 2**30,
                tensor_flops_per_s={"fp16": fp16, "bf16": fp16, "fp8": 2 * fp16})
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def l4(tmp_path: Path) -> tuple[Path, Path]:
    """(a made-up 'NVIDIA L4' GPU file, a CSV of FA2 forward and backward rows labelled 'NVIDIA L4')."""
    return (_user_gpu(tmp_path / "l4.yaml", "my-l4", 58, 121.0e12, 0.3e12),
            _csv(tmp_path / "l4.csv", _rows("NVIDIA L4", ("fwd", "bwd"), scale=3.1)))


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    one_line_error(result, *fragments)


# ------------------------------------------------------------------------------------------------ a GPU of one's own
def test_validate_takes_a_label_mapped_to_a_gpu_file(l4) -> None:
    gpu_file, csv_path = l4
    result = CliRunner().invoke(validate_cmd, ["--measurements", str(csv_path)])
    assert result.exit_code == 1 and "'NVIDIA L4' matches no preset" in result.output  # unmapped: as before
    assert "--gpu 'LABEL=FILE'" in result.output  # and the skip says how to map it
    result = CliRunner().invoke(validate_cmd, ["--measurements", str(csv_path), "--gpu", f"NVIDIA L4={gpu_file}",
                                               "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["rows"]) == 10 and not data["skipped"]
    gpu, params = load_gpu(gpu_file), load_calibration().family_params("fa2")
    row = data["rows"][0]
    case = AttentionCase(row["direction"], int(row["batch"]), 32, 32, 64, int(row["seqlen"]), False, "fp16")
    assert row["predicted_time_s"] == pytest.approx(predict("FlashAttention-2", case, gpu, params).time_s)
    text = CliRunner().invoke(validate_cmd, ["--measurements", str(csv_path), "--gpu", f"nvidia-l4={gpu_file}"])
    assert text.exit_code == 0 and f"'nvidia-l4' -> {gpu_file}" in text.output  # case and punctuation ignored


def test_calibrate_on_one_users_gpu_and_validate_on_another(l4, tmp_path: Path) -> None:
    gpu_file, csv_path = l4
    out = tmp_path / "cal-l4.yaml"
    result = CliRunner().invoke(calibrate_cmd, ["--measurements", str(csv_path), "--gpu", f"NVIDIA L4={gpu_file}",
                                                "--families", "fa2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    calibration = load_calibration(out)
    assert calibration.fit["fa2"]["rows"] == 6 and calibration.measurements["gpus"] == {"NVIDIA L4": str(gpu_file)}
    other = _user_gpu(tmp_path / "x.yaml", "lab-x", 80, 200.0e12, 1.0e12)
    other_csv = _csv(tmp_path / "x.csv", _rows("Lab GPU X", ("fwd",), scale=1.5))
    result = CliRunner().invoke(validate_cmd, ["--measurements", str(other_csv), "--gpu", f"Lab GPU X={other}",
                                               "--calibration", str(out)])
    assert result.exit_code == 0 and "Lab GPU X | FlashAttention-2 | fwd" in result.output, result.output
    result = CliRunner().invoke(calibrate_cmd, ["--measurements", str(csv_path), "--gpu", f"NVIDIA L4={gpu_file}",
                                                "--out", str(gpu_file)])
    _one_line_error(result, f"--out: {gpu_file}: is an input of this command")  # the GPU file is not overwritten
    full = CliRunner().invoke(calibrate_cmd, ["--measurements", str(csv_path), "--gpu", f"NVIDIA L4={gpu_file}"])
    assert full.exit_code == 0 and "gpus:\n    NVIDIA L4:" in full.output, full.output  # a full fit too


def test_unmapped_labels_still_name_presets_and_a_label_is_not_a_path(l4, tmp_path: Path) -> None:
    gpu_file, _ = l4
    mixed = _csv(tmp_path / "mixed.csv", [*_rows("NVIDIA L4", ("fwd",), 3.1), *_rows("H100 SXM5 80GB", ("fwd",)),
                                          *_rows(str(gpu_file), ("fwd",))])
    result = validate(mixed, load_calibration(), gpus={"NVIDIA L4": load_gpu(gpu_file)}, leave_one_gpu_out=True)
    assert {f.gpu for f in result.folds} == {"my-l4", "h100-sxm5"}
    assert len(result.comparisons) == 10 and len(result.skipped) == 5
    assert all("matches no preset" in s.reason and "--gpu" in s.reason for s in result.skipped)
    measurements, _ = read_measurements(mixed)
    rows, _ = resolve(measurements, gpus={"H100 SXM5 80GB": load_gpu("h100-pcie")})  # a mapping beats the tokens
    assert {r.gpu.name for r in rows} == {"h100-pcie"}


@pytest.mark.parametrize("mapping, fragments", [
    ("NVIDIA L4", ["--gpu: NVIDIA L4: expected LABEL=GPU"]),
    ("NVIDIA L4=", ["expected LABEL=GPU"]),
    ("=GPU", ["expected LABEL=GPU"]),
    ("NVIDIA L4=nope", ["--gpu: nope: not a GPU preset"]),
    ("NVIDIA L4=missing.yaml", ["missing.yaml: no such file"]),
    ("NVIDIA L4={bad}", ["bad.yaml: sm_count: expected", "whole number"]),
    ("NVIDIA L5={gpu}", ["l4.csv: column 'gpu': no row has the label 'NVIDIA L5'",
                         "labels: H100 SXM5 80GB, NVIDIA L4)"]),
    ("NVIDIA L4={namesake}", ["namesake.yaml: name: 'h100-sxm5' is also the name of a different GPU"]),
])
@pytest.mark.parametrize("command", [validate_cmd, calibrate_cmd])
def test_a_bad_mapping_is_refused_naming_it(l4, tmp_path: Path, command, mapping: str, fragments: list[str]) -> None:
    gpu_file, csv_path = l4
    (tmp_path / "bad.yaml").write_text(gpu_file.read_text().replace("sm_count: 58", "sm_count: 58.5"))
    (tmp_path / "namesake.yaml").write_text(gpu_file.read_text().replace("name: my-l4", "name: h100-sxm5"))
    _csv(csv_path, [*_rows("NVIDIA L4", ("fwd",), 3.1), *_rows("H100 SXM5 80GB", ("fwd",))])
    given = mapping.format(gpu=gpu_file, bad=tmp_path / "bad.yaml", namesake=tmp_path / "namesake.yaml")
    result = CliRunner().invoke(command, ["--measurements", str(csv_path), "--gpu", given])
    _one_line_error(result, *fragments)


def test_a_label_mapped_twice_is_refused(l4) -> None:
    gpu_file, csv_path = l4
    result = CliRunner().invoke(validate_cmd, ["--measurements", str(csv_path), "--gpu", f"NVIDIA L4={gpu_file}",
                                               "--gpu", "nvidia-l4=l40s"])
    _one_line_error(result, "--gpu: nvidia-l4=l40s: the label 'nvidia-l4' is mapped twice")


# ------------------------------------------------------------------------------------------------ partial fits
def test_forward_rows_keep_the_bases_backward_parameters(tmp_path: Path) -> None:
    """Forward-only FA2 rows on an H100 cannot identify the backward's efficiency or autograd time: they keep
    v2's (the default base), not their priors; the forward's are fitted as without a base."""
    csv_path = _csv(tmp_path / "h100.csv", _rows("H100 SXM5 80GB", ("fwd",)))
    out = tmp_path / "cal.yaml"
    result = CliRunner().invoke(calibrate_cmd, ["--measurements", str(csv_path), "--families", "fa2", "--out",
                                                str(out)])
    assert result.exit_code == 0, result.output
    assert "not identifiable from these rows, kept from v2: mma_efficiency_bwd=0.6515, autograd_s=0.0001256" \
        in result.output and "fa1              kept from v2" in result.output
    v2, written = load_calibration(), load_calibration(out)
    assert written.measurements["kept_from"]["calibration"] == "v2"
    fa2 = written.family_params("fa2")
    assert fa2["mma_efficiency_bwd"] == v2.family_params("fa2")["mma_efficiency_bwd"]
    assert fa2["autograd_s"] == v2.family_params("fa2")["autograd_s"]
    assert written.fit["fa2"]["kept_from_base"] == ["mma_efficiency_bwd", "autograd_s"]
    assert set(written.fitted["fa2"]) == {"mma_efficiency_fwd", "mma_efficiency_bwd", "cta_overhead_cycles",
                                          "autograd_s"}  # fitted: the base fitted the kept ones
    rows, _ = resolve([m for m in read_measurements(csv_path)[0] if m.case.seqlen in (512, 2048, 8192)])
    alone, _ = fit_family("fa2", rows)
    assert fa2["mma_efficiency_fwd"] == pytest.approx(alone["mma_efficiency_fwd"], rel=1e-5)
    moved = {"mma_efficiency_fwd", "cta_overhead_cycles"}  # the CTA overhead is the backward's too: it may move it
    assert {n: v for n, v in fa2.items() if n not in moved} == \
        {n: v for n, v in v2.family_params("fa2").items() if n not in moved}
    again = calibrate(csv_path, ("fa2",), written)  # on that file as the base: still v2's backward
    assert again.family_params("fa2")["mma_efficiency_bwd"] == fa2["mma_efficiency_bwd"]


def test_a_family_asked_for_without_rows_is_kept_from_the_base(tmp_path: Path) -> None:
    csv_path = _csv(tmp_path / "h100.csv", _rows("H100 SXM5 80GB", ("fwd",)))
    v1 = load_calibration("v1")
    calibration = calibrate(csv_path, ("fa2", "fa1"), v1)
    assert calibration.family_params("fa1") == v1.family_params("fa1") and calibration.fit["fa1"] == v1.fit["fa1"]
    assert calibration.measurements["families"] == ["fa2"] and "fa1" in calibration.measurements["kept_from"][
        "families"]
    result = CliRunner().invoke(calibrate_cmd, ["--measurements", str(csv_path), "--families", "fa2,fa1", "--base",
                                                "v1", "--out", str(tmp_path / "c.yaml")])
    assert "fa1              kept from v1 (no calibration rows in the file)" in result.output, result.output


def test_a_value_fitted_to_its_bound_is_printed_at_its_bound(tmp_path: Path) -> None:
    from archsim.gpu.calibrate import FLOOR, at_bound

    csv_path = _csv(tmp_path / "h100.csv", _rows("H100 SXM5 80GB", ("fwd",), first_scale=0.9))
    result = CliRunner().invoke(calibrate_cmd, ["--measurements", str(csv_path), "--families", "fa2", "--out",
                                                str(tmp_path / "c.yaml")])
    assert result.exit_code == 0 and "cta_overhead_cycles=1e-12 (at its lower bound)" in result.output, \
        result.output
    assert (at_bound("fa2", "cta_overhead_cycles", FLOOR), at_bound("fa2", "cta_overhead_cycles", 5000.0),
            at_bound("fa2", "mma_efficiency_fwd", 1.0)) == ("lower", "", "upper")


def test_the_packaged_calibrations_come_out_of_their_commands_byte_for_byte() -> None:
    v1 = calibration_yaml(calibrate(ROOT / "archsim" / "gpu" / "reference" / "attention_measured.csv"))
    assert v1 == packaged_path("v1").read_text()
    h200 = ROOT / "reports" / "measured" / "measured-NVIDIA-H200.csv"
    assert calibration_yaml(calibrate(h200, ("archsim",), load_calibration("v1"))) == packaged_path("v2").read_text()


def test_calibrate_says_how_many_rows_it_fitted_on(tmp_path: Path) -> None:
    """The packaged v1's record: 64 of the reference file's 202 rows are in the calibration split and modelled."""
    v1 = load_calibration("v1").measurements
    result = CliRunner().invoke(calibrate_cmd, ["--out", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    assert (f"fitted on {v1['calibration_rows']} of the file's {v1['rows']} rows; the others are held out by the "
            "split or not modelled") in result.output
    assert (v1["calibration_rows"], v1["rows"]) == (64, 202)
