"""The GPU model against kernels timed on a GPU it was not fitted on: `reports/measured/measured-NVIDIA-H200.csv`,
written by `sh kernels/measure_on_device.sh` on a lent H200 (`archsim measure`: archsim's Triton kernels, PyTorch's
SDPA flash backend under the "FlashAttention-2" label, the FA2 benchmark's standard attention and eager decode).

The packaged calibration v1 was fitted on the published rows, all of one GPU (A100), so every H200 row is held out
from it; v2 (the default) is v1 with archsim's own kernels fitted on the H200's calibration lengths. Tolerances are
the README's ("GPU model", "Measured on an H200").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archsim.commands.gpu import reference_csv
from archsim.gpu.calibrate import calibrate
from archsim.gpu.params import load_calibration
from archsim.gpu.validate import cross_gpu, validate

H200_CSV = Path(__file__).resolve().parent.parent / "reports" / "measured" / "measured-NVIDIA-H200.csv"
BOTH_GPUS = ("FlashAttention-2", "PyTorch standard attention", "PyTorch eager attention")  # labels of fa2, pytorch


@pytest.fixture(scope="module")
def across_gpus(tmp_path_factory):
    """validate (v1, and leave one GPU out) over the published A100 rows and the measured H200 rows in one file."""
    path = tmp_path_factory.mktemp("gpus") / "a100-and-h200.csv"
    published = reference_csv().read_text(encoding="utf-8")
    measured = H200_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    assert measured[0].split(",")[:3] == published.splitlines()[0].split(",")[:3]  # one schema
    path.write_text(published + "".join(measured[1:]), encoding="utf-8")
    return validate(path, load_calibration("v1"), leave_one_gpu_out=True)


def _mape(errors: list[float]) -> float:
    return 100 * float(np.mean(np.abs(errors)))


def test_the_h200_rows_are_timings_of_every_kernel() -> None:
    text = H200_CSV.read_text(encoding="utf-8")
    assert "interpret" not in text and text.count("NVIDIA H200") >= 500
    for label in (*BOTH_GPUS, "archsim FlashAttention-2 (Triton)", "archsim naive 3-pass (Triton)",
                  "archsim Flash-Decoding split-KV GQA (Triton)"):
        assert f",{label}," in text, label


def test_a100_fitted_families_predict_the_h200(across_gpus) -> None:
    """FlashAttention-2 (fitted on A100 rows) on the H200: within 10 % over its 72 timings (144 rows: each case
    timed as latency and throughput, compared once by its time) and 15 % per direction; PyTorch's standard
    attention within 20 % over its timings (its forward's cuBLAS/softmax kernel choices vary with the length in ways
    the model's one DRAM efficiency does not follow: 0.63-1.08 of the measured time)."""
    h200 = [c for c in across_gpus.comparisons if c.measurement.gpu == "NVIDIA H200"]
    fa2 = [c for c in h200 if c.measurement.kernel == "FlashAttention-2"]
    assert len(fa2) == 72 and _mape([c.error for c in fa2]) <= 10.0
    for direction in ("fwd", "bwd", "fwd+bwd"):
        assert _mape([c.error for c in fa2 if c.measurement.case.direction == direction]) <= 15.0, direction
    standard = [c.error for c in h200 if c.measurement.kernel == "PyTorch standard attention"]
    assert len(standard) == 72 and _mape(standard) <= 20.0


def test_leave_one_gpu_out_across_a100_and_h200_is_within_10_percent(across_gpus) -> None:
    """The target the public data could not test (it has one GPU): each GPU's rows predicted by families fitted on
    the other GPU's rows alone, over the families measured on both (FlashAttention-2 and eager PyTorch): the figure
    `archsim validate --split leave-one-gpu-out` prints (`cross_gpu`)."""
    folds = {f.gpu: f for f in across_gpus.folds}
    assert set(folds) == {"a100-80gb-sxm4", "h200-sxm"}
    assert "fa2" not in folds["h200-sxm"].prior_families and "pytorch" not in folds["a100-80gb-sxm4"].prior_families
    figure = cross_gpu(across_gpus.folds)
    assert figure.families == ("fa2", "pytorch")
    assert figure.rows == sum(c.measurement.kernel.startswith(BOTH_GPUS)  # FlashAttention-2 (causal) too
                              for f in across_gpus.folds for c in f.comparisons) > 200
    assert figure.mape_pct <= 10.0


def test_archsim_kernels_fitted_on_h200_lengths_predict_the_others() -> None:
    """archsim's own kernels have rows on the H200 alone, so the packaged v2 fits their family on its calibration
    lengths (512, 2048, 8192) and keeps every other family as v1 fitted it on A100 rows; checked on the other
    lengths. The backward is bound by its dQ atomic adds (Triton's per-element tl.atomic_add), decode by two
    Triton launches of microseconds. Held-out MAPE at most 12 % for the flash forward and backward, 10 % for both,
    15 % for the naive kernel and for Lightning Attention-2 (4 rows), 30 % for decode (5 rows, 33-68 us).
    Lightning's four rows are held out of the fit but not blind: its tile's structure (`TiledLaunch.chained_mma`)
    was chosen after seeing every Lightning row, these included (README, "Measured on an H200")."""
    v1, v2 = load_calibration("v1"), load_calibration()
    assert (v2.version, v1.version) == (2, 1) and v2.measurements["file"] == H200_CSV.name
    refit = calibrate(H200_CSV, ("archsim",), v1)  # v2 is what this command writes, not a hand edit
    for family in v2.params:
        assert v2.family_params(family) == pytest.approx(refit.family_params(family), rel=1e-5), family
        if family != "archsim":
            assert v2.family_params(family) == v1.family_params(family), family
    assert {"atomic_adds_per_cycle", "launch_s", "mma_efficiency_linear"} <= set(v2.fitted["archsim"])
    held_out = validate(H200_CSV, v2).mape("held-out")
    limits = {("archsim FlashAttention-2 (Triton)", "fwd"): 12.0, ("archsim FlashAttention-2 (Triton)", "bwd"): 12.0,
              ("archsim FlashAttention-2 (Triton)", "fwd+bwd"): 10.0, ("archsim naive 3-pass (Triton)", "fwd"): 15.0,
              ("archsim Flash-Decoding split-KV GQA (Triton)", "decode"): 30.0,
              ("archsim Lightning Attention-2 (Triton)", "fwd"): 15.0}
    for (kernel, direction), limit in limits.items():
        assert held_out[f"NVIDIA H200 | {kernel} | {direction}"] <= limit, (kernel, direction)
