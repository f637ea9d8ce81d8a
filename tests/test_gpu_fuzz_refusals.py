"""What the GPU model refuses instead of timing (a fuzzing round of the GPU model).

Fuzzing found: validate and calibrate took measurement rows whose Q, K, V and O alone exceed the GPU's DRAM and
printed NaN (bare NaN in --json) or fitted around it; eager PyTorch attention was timed though its N x N score
matrices (or, at decode, repeat_kv's expanded K and V) exceed the DRAM; FlashAttention-2, v1, 3, its Triton kernel
and Flash-Decoding timed head dims they cannot run (1, 3, 33) at the exact width, below their compiled d = 32; and
kernels were timed in directions they have no path for (eager decode attention as a backward, the N x N benchmark
function at decode; a sweep's forward GPU points on Flash-Decoding, every point infeasible).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from archsim.dse.spec import load_sweep
from archsim.errors import SpecError
from archsim.gpu.calibrate import calibrate
from archsim.gpu.cases import ModelledRow, predict_row
from archsim.gpu.load import load_gpu
from archsim.gpu.measurements import read_measurements
from archsim.gpu.params import load_calibration
from archsim.gpu.roofline import workload_points
from archsim.gpu.validate import validate
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import family_of, plans, predict

HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
# Q, K, V, O: 4 x 8 x 16M x 256 x 2 B = 275 GB on an 80 GB H100
TOO_BIG_ROW = "H100 SXM5 80GB,FlashAttention-2,fp16,False,1,8,256,16777216,fwd,throughput,300,TFLOPs/s"
# in the calibration split (seqlen 8192): 4 x 256 x 32 x 8192 x 256 x 2 B = 137 GB
TOO_BIG_CALIBRATION_ROW = "H100 SXM5 80GB,FlashAttention-2,fp16,False,256,32,256,8192,fwd,throughput,300,TFLOPs/s"
FITTING_ROW = "H100 SXM5 80GB,FlashAttention-2,fp16,False,4,32,128,8192,fwd,throughput,300,TFLOPs/s"


def _csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "measured.csv"
    path.write_text("\n".join((HEADER, *rows)) + "\n")
    return path


def _time_s(kernel: str, case: AttentionCase, gpu: str = "h100-sxm5") -> float:
    result = predict(kernel, case, load_gpu(gpu), load_calibration().family_params(family_of(kernel)))
    assert result.feasible, result.reason
    return result.time_s


def _reason(kernel: str, case: AttentionCase, gpu: str = "h100-sxm5") -> str:
    result = predict(kernel, case, load_gpu(gpu), load_calibration().family_params(family_of(kernel)))
    assert not result.feasible and math.isnan(result.time_s)
    return result.reason


def _no_nan(constant: str):
    raise AssertionError(f"invalid JSON constant {constant}")


# ------------------------------------------------------------------------------------------------ 1: rows beyond DRAM
def test_validate_skips_a_row_whose_operands_exceed_the_dram(cli, tmp_path: Path) -> None:
    path = _csv(tmp_path, TOO_BIG_ROW, FITTING_ROW)
    result = cli("validate", "--measurements", str(path))
    assert "nan" not in result.output.lower() and "skipped 1 row" in result.output
    assert "its Q, K, V and O alone take 274.9 GB, beyond h100-sxm5's 85.9 GB (80 GiB) of DRAM" in result.output
    data = json.loads(cli("validate", "--measurements", str(path), "--json").output, parse_constant=_no_nan)
    assert [s["row"] for s in data["skipped"]] == [1] and len(data["rows"]) == 1


def test_calibrate_fits_without_a_row_beyond_the_dram(tmp_path: Path) -> None:
    calibration = calibrate(_csv(tmp_path, TOO_BIG_CALIBRATION_ROW, FITTING_ROW))
    fit = calibration.fit["fa2"]
    assert fit["rows"] == 1 and math.isfinite(fit["time_mape_pct"]) and math.isfinite(fit["log_rmse"])
    assert calibration.measurements["calibration_rows"] == 1


def test_a_row_whose_plans_cannot_run_is_never_compared_or_fitted(tmp_path: Path) -> None:
    """`predict_row` is the one way validate and calibrate time a row: a row that reached it without passing
    `resolve` (its plans cannot run) raises instead of returning NaN."""
    (measurement,), _ = read_measurements(_csv(tmp_path, TOO_BIG_ROW))
    gpu = load_gpu("h100-sxm5")
    row = ModelledRow(measurement, gpu, "fa2", plans(measurement.kernel, measurement.case, gpu))
    with pytest.raises(RuntimeError, match="for a case whose plans run"):
        predict_row(row, load_calibration().family_params("fa2"))


# ------------------------------------------------------------------------------------------------ 2: what plans hold
def test_eager_prefill_counts_its_score_matrices_against_the_dram() -> None:
    # bert-base at batch 64 and 4096 tokens: Q, K, V, O are 1.6 GB, the 12 heads' scores 25.8 GB each time
    case = AttentionCase("fwd", 64, 12, 12, 64, 4096, False, "fp16")
    reason = _reason("PyTorch standard attention", case, "rtx-4090")
    assert "2 score matrices of 64 x 12 x 4096 x 4096 (51.5 GB)" in reason and "beyond rtx-4090's" in reason
    assert _time_s("FlashAttention-2", case, "rtx-4090") > 0  # a fused kernel holds only its operands
    assert "the score matrix S" in _reason("archsim naive 3-pass (Triton)", case, "rtx-4090")


def test_the_roofline_has_no_eager_prefill_point_beyond_the_dram() -> None:
    llama3_405b = {"batch": 1, "seq_len": 131072, "heads": 128, "kv_heads": 8, "head_dim": 128, "word_bytes": 2}
    points, infeasible = workload_points(llama3_405b, load_gpu("a100-80gb-sxm4"),
                                         load_calibration().family_params)
    reasons = dict(infeasible)
    assert "score matrices" in reasons["prefill fwd PyTorch"] and "the causal mask" in reasons["prefill fwd PyTorch"]
    assert "prefill fwd FA2" in {p.label for p in points}


def test_eager_decode_counts_repeat_kv_against_the_dram() -> None:
    # K and V: 17.2 GB; expanded to 64 query heads: 137 GB on an 80 GB H100
    case = AttentionCase("decode", 64, 64, 8, 128, 65536, False, "fp16")
    assert "repeat_kv's expanded K and V (137.4 GB)" in _reason("PyTorch eager attention", case)
    assert _time_s("Flash-Decoding", case) > 0


# ------------------------------------------------------------------------------------------------ 3: head dims
@pytest.mark.parametrize(("kernel", "direction", "runs_as"), [
    ("FlashAttention-2", "fwd", {1: 32, 3: 32, 33: 64, 80: 96, 200: 224}),
    ("FlashAttention-2", "bwd", {1: 32, 33: 64}),
    ("Flash-Decoding", "decode", {1: 32, 3: 32, 33: 64}),
    ("FlashAttention v2.0.9", "decode", {3: 32, 33: 64}),
    ("FlashAttention-3", "fwd", {1: 64, 33: 64, 80: 128}),
    ("FlashAttention Triton", "fwd", {1: 16, 3: 16, 33: 64, 80: 128}),
    ("FlashAttention (v1)", "fwd+bwd", {8: 32, 40: 64, 72: 128}),
])
def test_a_head_dim_is_timed_at_the_width_the_kernel_runs(kernel, direction, runs_as) -> None:
    """A kernel computes a head_dim it pads at the compiled width (the same MMAs) and reads and writes only the
    case's columns (`gpu_flash_plans._masked_tile`; FlashAttention v1's wrapper does not pad, its tensors are the case's
    width): never more DRAM bytes or time than the compiled width's own call."""
    def result_at(head_dim: int):
        case = AttentionCase(direction, 8, 32, 32, head_dim, 8192 if direction == "decode" else 2048, False, "fp16")
        result = predict(kernel, case, load_gpu("h100-sxm5"), load_calibration().family_params(family_of(kernel)))
        assert result.feasible, result.reason
        return result

    for head_dim, compiled in runs_as.items():
        padded, own = result_at(head_dim), result_at(compiled)
        assert padded.total("mma_flops") == own.total("mma_flops"), (head_dim, compiled)
        assert padded.total("dram_bytes") < own.total("dram_bytes"), (head_dim, compiled)
        assert padded.time_s <= own.time_s, (head_dim, compiled)


@pytest.mark.parametrize("head_dim", [1, 3, 33, 100])
def test_flashattention_v1_refuses_a_head_dim_off_its_multiple_of_8(head_dim) -> None:
    reason = _reason("FlashAttention (v1)", AttentionCase("fwd", 1, 16, 16, head_dim, 1024, False, "fp16"))
    assert f"takes a head_dim that is a multiple of 8 up to 128 (got {head_dim})" in reason


# ------------------------------------------------------------------------------------------------ 4: directions
@pytest.mark.parametrize(("kernel", "direction", "says"), [
    ("PyTorch eager attention", "bwd", "only PyTorch eager attention's forward and decode are modelled, no backward"),
    ("PyTorch eager attention", "fwd+bwd", "no backward path (got direction fwd+bwd)"),
    ("PyTorch standard attention", "decode", "only PyTorch standard attention's forward and backward are modelled, "
                                             "no decode path (got direction decode)"),
    ("Flash-Decoding", "fwd", "only Flash-Decoding's decode is modelled, no forward path (got direction fwd)"),
])
def test_a_kernel_is_refused_in_a_direction_it_has_no_path_for(kernel, direction, says) -> None:
    found = plans(kernel, AttentionCase(direction, 1, 32, 8, 128, 2048, False, "fp16"), load_gpu("h100-sxm5"))
    assert isinstance(found, str) and says in found


def test_eager_attention_keeps_the_prompt_forward_the_serving_gpu_runs() -> None:
    """The Hugging Face eager path is the serving GPU device's default kernel: decode and a prompt's forward."""
    assert _time_s("PyTorch eager attention", AttentionCase("fwd", 1, 32, 8, 128, 2048, True, "fp16")) > 0


def test_validate_skips_a_row_in_a_direction_the_kernel_has_no_path_for(tmp_path: Path) -> None:
    path = _csv(tmp_path, "H100 SXM5 80GB,PyTorch eager attention,fp16,False,1,32,128,2048,bwd,latency,30,us",
                "H100 SXM5 80GB,PyTorch standard attention,fp16,False,1,32,128,2048,decode,latency,30,us",
                FITTING_ROW)
    result = validate(path, load_calibration())
    assert len(result.comparisons) == 1 and [s.row for s in result.skipped] == [1, 2]
    assert all("path (got direction" in s.reason for s in result.skipped)


def test_a_sweep_refuses_a_decode_only_kernel_for_its_forward_gpu_points(cli, tmp_path: Path) -> None:
    path = tmp_path / "decode-gpus.yaml"
    path.write_text(yaml.safe_dump({
        "name": "decode-gpus", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"workload.seq_len": [4096]}, "sampling": {"kind": "grid"},
        "gpus": {"presets": ["h100-sxm5"], "kernel": "Flash-Decoding"}, "objectives": ["latency_s", "energy_pj"]}))
    result = cli("sweep", str(path), "--db", str(tmp_path / "s.sqlite"), expect=2)
    message = result.output.strip()
    assert message.startswith(f"error: {path}: gpus.kernel: GPU points run the sweep's attention forward, but "
                              "Flash-Decoding runs decode only") and "\n" not in message
    assert not (tmp_path / "s.sqlite").exists()
    with pytest.raises(SpecError, match=r"gpus\.kernel"):
        load_sweep(path)
