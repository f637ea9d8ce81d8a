"""Bad input to the GPU model refused, never answered with a default (fuzzing round 4).

gpu-roofline takes the workload's word_bytes and kv_heads, never fp16 and multi-head attention by default; a
calibration file names every key it may hold, every parameter of a family it lists and every family it calibrates,
and its split rule is the one it applies; calibrate writes nothing from a file with no row to fit; a measurements
file measures each configuration once; the Python API refuses a case or parameters it cannot time, naming the field.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.cli import main
from archsim.commands.gpu import calibrate_cmd, validate_cmd
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.measurements import parse_rows, read_measurements
from archsim.gpu.params import calibration_from_dict, load_calibration, packaged_path, split_rule
from archsim.gpu.roofline import WORKLOAD_KERNELS, workload_points
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict

HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
FA2_ROW = "A100 80GB SXM4,FlashAttention-2,fp16,False,8,32,64,2048,fwd+bwd,throughput,{value},TFLOPs/s"
LLAMA3_8B = {"batch": 16, "seq_len": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128, "word_bytes": 2}
CASE = AttentionCase("fwd", 1, 32, 8, 128, 4096, True, "fp16")


@pytest.fixture(scope="module")
def v1() -> dict:
    return yaml.safe_load(packaged_path().read_text())


# ------------------------------------------------------------------------------------------------ 1, 2: gpu-roofline
def test_the_roofline_runs_the_workloads_word_size() -> None:
    gpu, params_of = load_gpu("h100-sxm5"), load_calibration().family_params
    points, infeasible = workload_points(LLAMA3_8B, gpu, params_of)
    assert len(points) == len(WORKLOAD_KERNELS) and not infeasible
    # 1-byte words run at fp8; none of the roofline's kernels has an fp8 path (only the Triton tutorial's does), so
    # each is an infeasible point with that reason, not an fp16 point
    points, infeasible = workload_points({**LLAMA3_8B, "word_bytes": 1}, gpu, params_of)
    assert not points and len(infeasible) == len(WORKLOAD_KERNELS)
    assert all("fp8" in reason for _, reason in infeasible)
    _, infeasible = workload_points({**LLAMA3_8B, "word_bytes": 4}, gpu, params_of)
    assert all("dtype fp32 is not modelled" in reason for _, reason in infeasible)


def test_a_word_size_without_a_precision_is_refused(cli, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"w.yaml: params.word_bytes: expected 1 \(fp8\), 2 \(fp16\), 4 \(fp32\) "
                                        r"bytes, got 3"):
        workload_points({**LLAMA3_8B, "word_bytes": 3}, load_gpu("h100-sxm5"), load_calibration().family_params,
                        "w.yaml")
    path = tmp_path / "wb3.yaml"
    path.write_text(yaml.safe_dump({"name": "wb3", "params": {**LLAMA3_8B, "word_bytes": 3}}))
    result = cli("gpu-roofline", "--workload", str(path), "--out", str(tmp_path / "r"), expect=2)
    assert f"{path}: params.word_bytes: expected 1 (fp8)" in result.output
    path.write_text(yaml.safe_dump({"name": "fp8", "params": {**LLAMA3_8B, "word_bytes": 1}}))
    result = cli("gpu-roofline", "--workload", str(path), "--out", str(tmp_path / "r"), expect=2)
    assert "no attention kernel of the roofline runs this workload" in result.output and "no fp8 path" in result.output


def test_a_workload_without_kv_heads_is_refused_as_a_gqa_cascade_refuses_it(cli, tmp_path: Path) -> None:
    sizes = {k: v for k, v in LLAMA3_8B.items() if k != "kv_heads"}
    with pytest.raises(SpecError, match=r"w.yaml: params.kv_heads: missing"):
        workload_points(sizes, load_gpu("h100-sxm5"), load_calibration().family_params, "w.yaml")
    path = tmp_path / "nokv.yaml"
    path.write_text(yaml.safe_dump({"name": "nokv", "params": sizes}))
    for args in (("gpu-roofline", "--workload", str(path), "--out", str(tmp_path / "r")),
                 ("analyze", "attention-decode-gqa", "--workload", str(path))):
        assert f"{path}: params.kv_heads: missing" in cli(*args, expect=2).output


# ------------------------------------------------------------------------------------------------ 3, 4: calibrations
def _drop(*path: str):
    def edit(data: dict) -> None:
        for key in path[:-1]:
            data = data[key]
        data.pop(path[-1])
    return edit


def _set(value, *path: str):
    def edit(data: dict) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return edit


@pytest.mark.parametrize(("edit", "where", "says"), [
    (_set({}, "families"), "families.fa2", "missing: fa2 fits parameters of its own"),
    (_drop("families", "fa2"), "families.fa2", "missing"),
    (_drop("families", "triton_tutorial"), "families.triton_tutorial", "missing"),
    (_set({}, "families", "fa2", "params"), "families.fa2.params.mma_efficiency_fwd", "missing"),
    (_drop("families", "fa2", "params", "mma_efficiency_fwd"), "families.fa2.params.mma_efficiency_fwd", "missing"),
    (_drop("families", "pytorch", "params", "launch_s"), "families.pytorch.params.launch_s", "missing"),
    (_set({"fa2": {}}, "familes"), "familes", "unknown key (expected one of version, model, measurements, split, "
                                              "families)"),
    (_set({}, "families", "fa2", "parms"), "families.fa2.parms", "unknown key (expected one of kernels, params"),
    (_set({"parms": {}}, "families", "fa2"), "families.fa2.parms", "unknown key"),
    (_set([1024], "split", "calibraton_seqlens"), "split.calibraton_seqlens",
     "unknown key (expected one of rule, calibration_seqlens)"),
    (_set("archsim.model.analytical", "model"), "model", "expected archsim.model.gpu"),
    (_set([], "split", "calibration_seqlens"), "split.calibration_seqlens", "expected a non-empty list"),
    (_set([512, 512], "split", "calibration_seqlens"), "split.calibration_seqlens", "expected distinct"),
    # the rule says 512, 2048 or 8192; the list says 1024, 2048, 8192
    (_set([1024, 2048, 8192], "split", "calibration_seqlens"), "split.rule",
     "expected a rule beginning 'calibrate on rows whose seqlen (KV length for decode) is 1024, 2048 or 8192; "
     "hold out every other row'"),
])
def test_a_calibration_is_refused_for_what_it_lacks_or_does_not_know(v1, edit, where: str, says: str) -> None:
    data = copy.deepcopy(v1)
    edit(data)
    with pytest.raises(SpecError) as caught:
        calibration_from_dict(data, "cal.yaml")
    assert caught.value.where == where and says in caught.value.message


def test_a_family_that_takes_its_fits_from_listed_families_may_be_left_out(v1) -> None:
    # FlashAttention-3 fits nothing of its own: a file without it (as v1.yaml was, before it listed fa3) takes the
    # Triton tutorial's values. archsim's kernels fit their atomic rate and launch time: a file must list them.
    data = copy.deepcopy(v1)
    del data["families"]["fa3"]
    calibration = calibration_from_dict(data)
    tutorial = v1["families"]["triton_tutorial"]["params"]
    assert calibration.family_params("fa3")["mma_efficiency_fwd"] == tutorial["mma_efficiency_fwd"]
    del data["families"]["archsim"]
    with pytest.raises(SpecError, match="archsim fits parameters of its own"):
        calibration_from_dict(data)


def test_the_split_rule_printed_is_the_one_applied(v1, tmp_path: Path) -> None:
    assert split_rule((512, 2048, 8192)) == ("calibrate on rows whose seqlen (KV length for decode) is 512, 2048 or "
                                             "8192; hold out every other row")
    assert split_rule((1024,)).endswith("is 1024; hold out every other row")
    data = copy.deepcopy(v1)
    data["split"] = {"calibration_seqlens": [1024, 2048, 8192]}
    assert calibration_from_dict(data).split_rule == split_rule((1024, 2048, 8192))
    path = tmp_path / "split1024.yaml"
    path.write_text(yaml.safe_dump(data))
    csv_path = tmp_path / "two.csv"  # one row at 1024 (calibration under this file's split), one at 512 (held out)
    csv_path.write_text(HEADER + "\n" + FA2_ROW.format(value=162) + "\n"
                        + FA2_ROW.format(value=120).replace(",8,32,64,2048,", ",4,32,64,1024,") + "\n")
    result = CliRunner().invoke(validate_cmd, ["--measurements", str(csv_path), "--calibration", str(path)])
    assert result.exit_code == 0, result.output
    assert "split: calibrate on rows whose seqlen (KV length for decode) is 1024, 2048 or 8192;" in result.stdout


# ------------------------------------------------------------------------------------------------ 5: calibrate
@pytest.mark.parametrize(("body", "compared"), [
    ("", 0),  # a header alone
    ("A100 80GB SXM4,FlashAttention-2,fp16,False,8,32,64,2048,fwd+bwd,throughput,OOM,TFLOPs/s\n", 0),  # all skipped
    (FA2_ROW.format(value=120).replace(",8,32,64,2048,", ",4,32,64,1024,") + "\n", 1),  # all held out
])
def test_calibrate_writes_nothing_without_a_row_to_fit(tmp_path: Path, body: str, compared: int) -> None:
    csv_path, out = tmp_path / "m.csv", tmp_path / "cal.yaml"
    csv_path.write_text(HEADER + "\n" + body)
    for args in (["--out", str(out)], []):
        result = CliRunner().invoke(calibrate_cmd, ["--measurements", str(csv_path), *args])
        assert result.exit_code == 1 and not result.stdout and not out.exists(), result.output
        one_line_error(result, f"nothing to fit in {csv_path}", "no calibration written")
    # validate exits 1 too when it compares no row (a held-out row it compares: exit 0)
    assert CliRunner().invoke(validate_cmd, ["--measurements", str(csv_path)]).exit_code == (0 if compared else 1)


# ------------------------------------------------------------------------------------------------ 6, 7: measurements
@pytest.mark.parametrize(("second", "says"), [
    (FA2_ROW.format(value=81), "at 162 TFLOPs/s and 81 TFLOPs/s"),
    (FA2_ROW.format(value=162), "at the same value (162 TFLOPs/s): a repeated row"),
    (FA2_ROW.format(value=162).replace("A100 80GB SXM4", "a100 80gb  SXM4"), "a repeated row"),
    (FA2_ROW.format(value=162).replace("throughput,162,TFLOPs/s", "throughput,162000,GFLOPs/s"), "a repeated row"),
])
def test_a_configuration_measured_twice_is_refused_naming_both_lines(tmp_path: Path, second: str, says: str) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(HEADER + "\n" + FA2_ROW.format(value=162) + "\n\n" + second + "\n")  # the blank line is line 3
    with pytest.raises(SpecError) as caught:
        read_measurements(path)
    assert caught.value.where == "lines 2 and 4" and says in caught.value.message
    for command in (validate_cmd, calibrate_cmd):
        result = CliRunner().invoke(command, ["--measurements", str(path)])
        assert result.exit_code == 2
        one_line_error(result, f"{path}: lines 2 and 4: one configuration", says)


def test_a_case_in_two_metrics_or_two_configurations_is_not_a_repeat(tmp_path: Path) -> None:
    # archsim measure writes a latency and a throughput row per case; a quoted note may span lines
    latency = FA2_ROW.format(value=1).replace("throughput,1,TFLOPs/s", "latency,2.1,ms")
    causal = FA2_ROW.format(value=150).replace(",False,", ",True,")
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + ",note\n" + FA2_ROW.format(value=162) + ',"two\nlines"\n' + latency + ",\n" + causal
                    + ",\n")
    measurements, _ = read_measurements(path)
    assert [m.line for m in measurements] == [2, 4, 5]
    (m,), _ = parse_rows([dict(zip(HEADER.split(","), FA2_ROW.format(value=162).split(","), strict=True))], "x.csv")
    assert m.line == 2  # rows given without lines: line = row + 1


def test_a_product_beyond_the_row_limit_names_its_largest_factor(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(HEADER + "\n" + FA2_ROW.format(value=162).replace(",8,32,64,2048,", ",1e30,32,64,2048,") + "\n")
    with pytest.raises(SpecError, match=r"line 2, field 'batch': batch x heads x seqlen = "):
        read_measurements(path)
    field, problem = AttentionCase("fwd", 1, 32, 32, 64, 2**26, False, "fp16").size_problem()
    assert field == "seqlen" and "beyond the limit" in problem


# ------------------------------------------------------------------------------------------------ 8: Python API
@pytest.mark.parametrize(("case", "field"), [
    (AttentionCase("sideways", 1, 32, 8, 128, 4096, True, "fp16"), "AttentionCase.direction"),
    (AttentionCase("fwd", 1, 32, 8, 128, 4096, "yes", "fp16"), "AttentionCase.causal"),
])
def test_a_case_the_model_cannot_read_is_a_spec_error_naming_the_field(case: AttentionCase, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        predict("FlashAttention-2", case, load_gpu("h100-sxm5"), load_calibration().family_params("fa2"))
    assert caught.value.where == field


@pytest.mark.parametrize(("value", "says"), [
    (0.0, "expected a value in [0.05, 1], got 0.0"), (1.5, "in [0.05, 1], got 1.5"), (-0.5, "got -0.5"),
    (math.nan, "expected a number, got nan"), ("0.8", "expected a number"), (None, "missing"),
])
def test_parameters_out_of_their_bounds_are_a_spec_error_naming_the_parameter(value, says: str) -> None:
    params = load_calibration().family_params("fa2")
    if value is None:
        params.pop("mma_efficiency_fwd")
    else:
        params["mma_efficiency_fwd"] = value
    with pytest.raises(SpecError) as caught:
        predict("FlashAttention-2", CASE, load_gpu("h100-sxm5"), params)
    assert caught.value.where == "params.mma_efficiency_fwd" and says in caught.value.message


def test_parameters_of_another_family_are_refused() -> None:
    calibration = load_calibration()
    with pytest.raises(SpecError, match=r"params.hbm_efficiency: FlashAttention-2 \(fa2\): not a parameter of fa2"):
        predict("FlashAttention-2", CASE, load_gpu("h100-sxm5"),
                {**calibration.family_params("fa2"), "hbm_efficiency": 0.5})
    with pytest.raises(SpecError, match=r"params.mma_efficiency_fwd: .* missing"):
        predict("FlashAttention-2", CASE, load_gpu("h100-sxm5"), calibration.family_params("pytorch"))


def test_a_partial_calibration_names_its_families_and_base(tmp_path: Path) -> None:
    from archsim.commands.gpu import DEFAULT_CALIBRATION
    from archsim.gpu.params import DEFAULT_VERSION

    assert DEFAULT_CALIBRATION == DEFAULT_VERSION  # the CLI's default (no model import at --help) is the loader's
    result = CliRunner().invoke(main, ["calibrate", "--families", "archsim,nope"])
    assert result.exit_code == 2 and "unknown kernel family nope" in result.output, result.output
    result = CliRunner().invoke(calibrate_cmd, ["--base", "v1"])
    assert result.exit_code == 2 and "--base" in result.output and "only with --families" in result.output
    out = tmp_path / "c.yaml"  # the published rows hold none of archsim's kernels: nothing to fit, nothing written
    result = CliRunner().invoke(calibrate_cmd, ["--families", "archsim", "--out", str(out)])
    assert result.exit_code == 1 and "nothing to fit" in result.output and not out.exists(), result.output
    result = CliRunner().invoke(calibrate_cmd, ["--families", "fa2", "--base", "v1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(out.read_text())
    assert written["version"] == 2 and written["measurements"]["families"] == ["fa2"]
    assert written["measurements"]["kept_from"]["calibration"] == "v1" and "fa2" not in \
        written["measurements"]["kept_from"]["families"]


def test_rows_in_a_precision_the_gpu_lacks_are_skipped_with_the_reason(tmp_path: Path) -> None:
    """A GPU of the user's own without a bf16 rate (as a V100): its bf16 rows are skipped rows naming the precision
    and the rates it has, and its fp16 rows validate (validate stopped at the first bf16 row with exit 2)."""
    preset = yaml.safe_load((Path(__file__).resolve().parents[1] / "archsim/gpu/presets/a100-80gb-sxm4.yaml")
                            .read_text())
    del preset["tensor_flops_per_s"]["bf16"]
    preset["name"] = "no-bf16"
    gpu_yaml, csv_path = tmp_path / "no-bf16.yaml", tmp_path / "m.csv"
    gpu_yaml.write_text(yaml.safe_dump(preset))
    csv_path.write_text(HEADER + "\n" + "\n".join(
        f"MYGPU,FlashAttention-2,{dtype},False,4,32,64,1024,fwd,throughput,150,TFLOPs/s" for dtype in ("fp16", "bf16"))
        + "\n")
    result = CliRunner().invoke(validate_cmd, ["--measurements", str(csv_path), "--gpu", f"MYGPU={gpu_yaml}",
                                               "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "skipped 1 rows" in result.output
    assert "no-bf16 has no tensor-core rate for bf16 (its tensor_flops_per_s: fp16, tf32)" in result.output
    assert "MYGPU | FlashAttention-2 | fwd     1" in result.output
