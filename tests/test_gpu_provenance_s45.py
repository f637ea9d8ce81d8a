"""Fixes of an audit of the GPU model's provenance across GPUs (s45).

1. `archsim gpu-roofline` and `archsim sparse` say, in one line, which calibration times the GPU, which GPUs its
   kernel families were fitted on, and whether the GPU has measured values of its own (rows fitted on it, the
   preset's measured copy and GEMM fractions): a GPU no measurement reached ran another GPU's fit unsaid. The
   GPUs a family was fitted on are recorded by `archsim calibrate` (`fit.gpus`), from the rows it fitted.
2. `archsim validate --split leave-one-gpu-out` prints the README's cross-GPU figure: the left-out GPUs' MAPE over
   the families measured on more than one GPU (`validate.cross_gpu`), which only a test computed.
3. A measurements row of a kernel-time metric whose direction or dtype archsim does not know is refused (exit 2,
   one line naming the file, the row, the field and the values known), as a bad `causal` is; it was skipped (a
   dtype passed `archsim check`). A dtype it knows that a GPU has no rate for stays a skip; `float32` reads as
   `fp32` as `float16` reads as `fp16`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.cli import main
from archsim.commands.gpu import reference_csv
from archsim.gpu.cases import preset_for
from archsim.gpu.measurements import read_measurements, row_digest
from archsim.gpu.params import calibration_from_dict, load_calibration
from archsim.gpu.validate import cross_gpu, validate, validation_to_dict
from archsim.model.gpu_kernels import family_of

ROOT = Path(__file__).resolve().parents[1]
H200_CSV = ROOT / "reports" / "measured" / "measured-NVIDIA-H200.csv"
HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
ROW = "A100 80GB SXM4,FlashAttention-2,{dtype},False,8,32,64,512,{direction},throughput,120,TFLOPs/s"
# The packaged v2 (README "GPU model"): every family v1 fitted on the published rows, all resolving to the A100
# (the tutorial's and Lightning Attention-2's GPU inferred), and archsim's own kernels on the measured H200 rows.
V1_FAMILIES = ("fa1", "fa2", "fa_triton", "pytorch", "triton_tutorial")


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _provenance_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("calibration version")]


# ------------------------------------------------------------------------------------------------ 1: provenance
def test_the_packaged_calibrations_record_the_gpus_of_the_rows_each_family_was_fitted_on() -> None:
    """Each fitted family's `fit.gpus` is the set of presets its fitted rows (`fitted_on`, by digest) resolve to,
    read from the two files the packaged calibrations were fitted on: not typed in."""
    rows = [*read_measurements(reference_csv())[0], *read_measurements(H200_CSV)[0]]
    gpu_of = {row_digest(m): m.gpu for m in rows}
    for version in ("v1", "v2"):
        calibration = load_calibration(version)
        for family, stats in calibration.fit.items():
            if not stats.get("rows"):
                assert "gpus" not in stats, (version, family)
                continue
            digests = calibration.fitted_on(family)
            assert len(digests) >= stats["rows"]
            labels = {gpu_of[d] for d in digests if d in gpu_of and family_of(_kernel(rows, d)) == family}
            assert stats["gpus"] == sorted({preset_for(label).name for label in labels}), (version, family)
    fit = load_calibration("v2").fit
    assert {f: fit[f]["gpus"] for f in (*V1_FAMILIES, "archsim")} == {
        **{family: ["a100-80gb-sxm4"] for family in V1_FAMILIES}, "archsim": ["h200-sxm"]}


def _kernel(rows, digest: str) -> str:
    return next(m.kernel for m in rows if row_digest(m) == digest)


def test_gpu_roofline_says_an_unmeasured_gpu_runs_fits_from_other_gpus(tmp_path: Path) -> None:
    result = _cli("gpu-roofline", "--gpu", "l40s", "--workload", "llama3-8b", "--seq-len", "8192",
                  "--out", str(tmp_path / "roof"))
    assert result.exit_code == 0, result.output
    line, = _provenance_lines(result.output)
    assert line == ("calibration version 2 (v2.yaml): fa1, fa2, fa_triton, pytorch, triton_tutorial fitted on "
                    "a100-80gb-sxm4; archsim on h200-sxm; l40s: no measured values of its own (no rows fitted on "
                    "it; no measured dram_copy_fraction or gemm_fraction in its preset): it runs these fits at its "
                    "own peaks")


def test_the_line_names_a_gpus_own_rows_and_its_measured_fractions(tmp_path: Path) -> None:
    """The H200: archsim's family fitted on its rows, the others carried from the A100; its preset's measured
    fractions are the H200 file's (0.896 copy, 0.796 GEMM). The H100: fractions measured, no rows fitted."""
    result = _cli("gpu-roofline", "--gpu", "h200-sxm", "--calibration", "v2", "--out", str(tmp_path / "roof"))
    line, = _provenance_lines(result.output)
    assert line.endswith("h200-sxm: archsim fitted on its own rows, the others on other GPUs' at its own peaks; "
                         "measured in its preset: dram_copy_fraction 0.896, gemm_fraction 0.796")
    result = _cli("sparse", "--method", "quest", "--gpu", "h100-sxm5", "--workload", "llama3-8b", "--context",
                  "32K", "--budget", "2048")
    line, = _provenance_lines(result.output)
    assert line.endswith("h100-sxm5: no rows fitted on it, so it runs these fits at its own peaks; measured in "
                         "its preset: dram_copy_fraction 0.896, gemm_fraction 0.807")


def test_v1_names_its_one_gpu(tmp_path: Path) -> None:
    result = _cli("gpu-roofline", "--gpu", "a100-80gb-sxm4", "--calibration", "v1", "--out", str(tmp_path / "r"))
    line, = _provenance_lines(result.output)
    assert line == ("calibration version 1 (v1.yaml): fa1, fa2, fa_triton, pytorch, triton_tutorial fitted on "
                    "a100-80gb-sxm4; a100-80gb-sxm4: every fitted family fitted on its own rows; no measured "
                    "dram_copy_fraction or gemm_fraction in its preset")


def test_sparse_says_so_in_text_and_json() -> None:
    args = ("sparse", "--method", "quest", "--gpu", "b200", "--workload", "llama3-8b", "--context", "131072",
            "--budget", "4096")
    line, = _provenance_lines(_cli(*args).output)
    assert "b200: no measured values of its own" in line and "archsim on h200-sxm" in line
    data = json.loads(_cli(*args, "--json").output)
    assert data["calibration"] == {
        "version": 2, "file": "v2.yaml", "gpu": "b200",
        "fitted_on": {"a100-80gb-sxm4": list(V1_FAMILIES), "h200-sxm": ["archsim"]},
        "fitted_on_this_gpu": [], "measured_in_preset": {}}
    assert set(data) == {"points", "calibration"}


def test_a_calibration_that_records_no_gpus_says_so(tmp_path: Path) -> None:
    """A calibration written before `fit.gpus` (the packaged v2 without it) loads, and the line says the GPUs are
    not recorded rather than naming none."""
    import yaml

    data = yaml.safe_load(Path(load_calibration("v2").source).read_text())
    for entry in data["families"].values():
        entry["fit"].pop("gpus", None)
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data))
    assert calibration_from_dict(data, str(old)).fit["fa2"]["rows"] == 18
    result = _cli("gpu-roofline", "--gpu", "l40s", "--calibration", str(old), "--out", str(tmp_path / "r"))
    line, = _provenance_lines(result.output)
    assert line == ("calibration version 2 (old.yaml): archsim, fa1, fa2, fa_triton, pytorch, triton_tutorial "
                    "fitted on GPUs the file does not record; l40s: no rows recorded as fitted on it; no measured "
                    "dram_copy_fraction or gemm_fraction in its preset")


def test_a_calibration_refuses_gpus_that_are_not_a_list_of_names() -> None:
    from archsim.errors import SpecError

    data = {"version": 1, "split": {"calibration_seqlens": [512]},
            "families": {"fa2": {"params": {"mma_efficiency_fwd": 0.8, "mma_efficiency_bwd": 0.6,
                                            "cta_overhead_cycles": 3000, "autograd_s": 1e-4, "launch_s": 4e-6},
                                 "fit": {"rows": 3, "gpus": "a100"}}}}
    with pytest.raises(SpecError, match=r"families\.fa2\.fit\.gpus: expected a non-empty list of GPU preset names "
                                        r"or files, got 'a100'"):
        calibration_from_dict(data, "cal.yaml")


# ------------------------------------------------------------------------------------------------ 2: cross-GPU
def _pick(path: Path, kernels: tuple[str, ...]) -> list[list[str]]:
    """The header and the rows of `kernels` at seqlen 512, head_dim 64, not causal, timed as throughput."""
    header, *body = csv.reader(path.open(newline="", encoding="utf-8"))
    cell = {name: header.index(name) for name in ("kernel", "seqlen", "head_dim", "causal", "metric")}
    return [header] + [r for r in body if r[cell["kernel"]] in kernels and r[cell["metric"]] == "throughput"
                       and float(r[cell["seqlen"]]) == 512 and float(r[cell["head_dim"]]) == 64
                       and r[cell["causal"]] == "False"]


@pytest.fixture(scope="module")
def two_gpus(tmp_path_factory) -> Path:
    """FlashAttention-2 rows of each GPU (fa2 measured on both) and archsim's Triton kernel's H200 rows (one GPU)."""
    a100 = _pick(reference_csv(), ("FlashAttention-2",))
    h200 = _pick(H200_CSV, ("FlashAttention-2", "archsim FlashAttention-2 (Triton)"))
    assert a100[0][:12] == h200[0][:12]
    path = tmp_path_factory.mktemp("gpus") / "two.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([*a100, *h200[1:]])
    return path


def test_cross_gpu_is_the_left_out_mape_over_the_families_measured_on_both(two_gpus: Path) -> None:
    """By hand from the folds: the |error| of every left-out row of FlashAttention-2 (the one family with rows on
    both GPUs), averaged over rows; archsim's H200 rows, predicted from priors, are not in it."""
    result = validate(two_gpus, load_calibration(), leave_one_gpu_out=True)
    rows = [c for f in result.folds for c in f.comparisons if c.measurement.kernel == "FlashAttention-2"]
    assert {f.gpu for f in result.folds} == {"a100-80gb-sxm4", "h200-sxm"}
    assert any(c.measurement.kernel.startswith("archsim") for f in result.folds for c in f.comparisons)
    # the published A100 rows time fwd+bwd alone; the H200's each direction
    assert {c.measurement.group for c in rows} == {"A100 80GB SXM4 | FlashAttention-2 | fwd+bwd",
                                                   *(f"NVIDIA H200 | FlashAttention-2 | {d}"
                                                     for d in ("fwd", "bwd", "fwd+bwd"))}
    figure = cross_gpu(result.folds)
    assert (figure.families, figure.groups, figure.rows) == (("fa2",), 4, len(rows))
    assert figure.mape_pct == pytest.approx(100 * np.mean([abs(c.error) for c in rows]))
    assert validation_to_dict(result)["leave_one_gpu_out_across_gpus"] == {
        "families": ["fa2"], "groups": 4, "rows": len(rows), "mape": figure.mape_pct}
    printed = _cli("validate", "--measurements", str(two_gpus), "--split", "leave-one-gpu-out")
    assert (f"left-out GPU over the families measured on more than one GPU (fa2): {figure.mape_pct:.2f} % over "
            f"{len(rows)} rows in 4 groups") in printed.output.splitlines()


def test_one_gpu_has_no_cross_gpu_figure(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text(f"{HEADER}\n{ROW.format(dtype='fp16', direction='fwd+bwd')}\n")
    result = validate(path, load_calibration(), leave_one_gpu_out=True)
    assert cross_gpu(result.folds) is None
    printed = _cli("validate", "--measurements", str(path), "--split", "leave-one-gpu-out")
    assert ("left-out GPU over the families measured on more than one GPU: none (one GPU's rows, or no family "
            "with rows on two)") in printed.output.splitlines()


# ------------------------------------------------------------------------------------------------ 3: enumerations
@pytest.mark.parametrize(("cells", "field", "expected"), [
    ({"direction": "sideways"}, "direction", "expected one of fwd, bwd, fwd+bwd, decode, got 'sideways'"),
    ({"dtype": "int4"}, "dtype",
     "expected one of fp16, bf16, tf32, fp8, fp32 (or an alias: float16, half, bfloat16, fp8_e5m2, float8_e5m2, "
     "fp8_e4m3, float8_e4m3fn, float32), got 'int4'"),
])
def test_an_unknown_direction_or_dtype_is_refused_naming_the_row_and_field(tmp_path: Path, cells: dict, field: str,
                                                                           expected: str) -> None:
    row = dict(zip(HEADER.split(","), ROW.format(dtype="fp16", direction="fwd+bwd").split(","), strict=True))
    path = tmp_path / "m.csv"
    path.write_text(f"{HEADER}\n{','.join({**row, **cells}.values())}\n")
    for command in (["check", str(path)], ["validate", "--measurements", str(path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        one_line_error(result, f"{path}: line 2, field '{field}': {expected}")


def test_a_known_dtype_without_a_rate_stays_a_skip_and_float32_reads_as_fp32(tmp_path: Path) -> None:
    """fp32 (no GPU has a tensor-core rate for it: `tensor_flops_per_s` lists fp16, bf16, tf32, fp8) and fp8 on
    FlashAttention-2 (no fp8 path) are skipped with their reasons; float32 and float16 read as fp32 and fp16."""
    reasons = {}
    for dtype in ("fp32", "float32", "fp16", "float16"):
        path = tmp_path / f"{dtype}.csv"
        path.write_text(f"{HEADER}\n{ROW.format(dtype=dtype, direction='fwd+bwd')}\n")
        measured, _ = read_measurements(path)
        reasons[dtype] = (measured[0].case.precision, [s.reason for s in validate(path, load_calibration()).skipped])
    assert reasons["float32"] == reasons["fp32"] == (
        "fp32", ["a100-80gb-sxm4 has no tensor-core rate for fp32 (its tensor_flops_per_s: fp16, bf16, tf32)"])
    assert reasons["float16"] == reasons["fp16"] == ("fp16", [])
    fp8 = tmp_path / "fp8.csv"
    fp8.write_text(f"{HEADER}\n{ROW.format(dtype='fp8', direction='fwd+bwd')}\n")
    result = _cli("validate", "--measurements", str(fp8))
    assert result.exit_code == 1 and "1  FlashAttention-2 has no fp8 path modelled" in result.output, result.output
