"""The GPU model on shapes no calibration has seen, on a GPU the published families were not fitted on:
`reports/measured/measured-heldout-NVIDIA-H200.csv`, written on a lent H200 by `GRID=heldout sh
kernels/measure_on_device.sh` (`archsim measure --grid heldout`: LLaMA-2-13B's 40 heads at 3000 tokens, a length
off every tile; 32K and 64K causal prefill at batch 1; head dims 32, 96 and 256; GQA decode at batch 8 and 64, MHA
and MQA decode).

FlashAttention-2 is predicted by v1, fitted on the published A100 rows alone (the FA2 benchmark's shapes), so each
of its rows is a new GPU and a new shape; archsim's own kernels by v2, fitted on the H200's published-shape rows.
Tolerances are the README's ("Held-out shapes on the H200").
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from archsim.commands.benchmarks import KERNELS, heldout_cases
from archsim.gpu.params import load_calibration
from archsim.gpu.validate import validate

HELDOUT_CSV = Path(__file__).resolve().parent.parent / "reports" / "measured" / "measured-heldout-NVIDIA-H200.csv"
TRITON_FA2 = "archsim FlashAttention-2 (Triton)"


@pytest.fixture(scope="module")
def by_v1():
    return validate(HELDOUT_CSV, load_calibration("v1"))


@pytest.fixture(scope="module")
def by_v2():
    return validate(HELDOUT_CSV, load_calibration("v2"))


def _errors(validation, kernel: str, direction: str | None = None) -> list[float]:
    return [c.error for c in validation.comparisons if c.measurement.kernel == kernel
            and direction in (None, c.measurement.case.direction)]


def _mape(errors: list[float]) -> float:
    return 100 * float(np.mean(np.abs(errors)))


def test_the_file_holds_a_timing_of_every_heldout_case() -> None:
    """The file's rows are exactly the grid's (`heldout_cases`, keyed as `archsim measure` keys its rows), each timed
    on the GPU, none interpreted."""
    from archsim.commands.measure import TIMED, _row_key, _rows

    with HELDOUT_CSV.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["how_obtained"] for r in rows} == {TIMED}
    base = {"gpu": "NVIDIA H200", "how_obtained": TIMED}
    wanted = {_row_key(r) for case in heldout_cases(KERNELS, None, tiny=False) for r in _rows(case, 1.0, base, "")}
    assert {_row_key(r) for r in rows} == wanted and len(rows) == len(wanted) == 134


def test_flashattention2_fitted_on_a100_shapes_predicts_new_shapes_on_the_h200(by_v1) -> None:
    """FlashAttention-2 (PyTorch's flash backend) on 30 cases (60 rows, each timed as latency and TFLOPs/s, compared
    once by its time) of shapes outside the FA2 benchmark: MAPE within 10 % over all and per direction (the forward
    9.8 %, head_dim 256's forward 16.2 % and 13.3 % fast, non-causal and causal, not attributed), no timing off by
    more than 30 % (the worst, head_dim 32's forward: -21.7 %). Counted in both metrics, which averages one timing's
    -21.7 % with its +27.7 % in TFLOPs/s, the forward had read 10.6 %, a strict xfail at 10 % until s51."""
    fa2 = _errors(by_v1, "FlashAttention-2")
    assert len(fa2) == 30 and _mape(fa2) <= 10.0 and max(map(abs, fa2)) <= 0.30
    for direction in ("fwd", "bwd", "fwd+bwd"):
        assert _mape(_errors(by_v1, "FlashAttention-2", direction)) <= 10.0, direction


def test_archsim_kernels_fitted_on_published_shapes_predict_new_shapes(by_v2) -> None:
    """archsim's own Triton kernels (v2: fitted on the H200's published-shape rows) at the new shapes: Flash-Decoding
    within 12 % (GQA at batch 8-64, MHA, MQA), the flash forward and backward within 20 %, both within 15 %,
    Lightning Attention-2 within 15 %."""
    limits = {("archsim Flash-Decoding split-KV GQA (Triton)", "decode"): 12.0, (TRITON_FA2, "fwd"): 20.0,
              (TRITON_FA2, "bwd"): 20.0, (TRITON_FA2, "fwd+bwd"): 15.0,
              ("archsim Lightning Attention-2 (Triton)", "fwd"): 15.0}
    for (kernel, direction), limit in limits.items():
        errors = _errors(by_v2, kernel, direction)
        assert errors and _mape(errors) <= limit, (kernel, direction, _mape(errors))


def test_eager_mha_decode_streams_its_gemvs_at_the_copy_rate(by_v2) -> None:
    """Eager decode without GQA (no repeat_kv copy): its two batched GEMVs stream K and V at the GPU's copy rate
    (measured 4.2-4.4 TB/s on the H200, `reports/measured/eager-ops-NVIDIA-H200.txt`): within 10 %."""
    mha = [c.error for c in by_v2.comparisons if c.measurement.kernel == "PyTorch eager attention"
           and c.measurement.case.kv_heads == c.measurement.case.heads]
    assert len(mha) == 2 and _mape(mha) <= 10.0


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="PyTorch's elementwise passes do not keep the fraction of DRAM peak fitted on "
                   "the A100 (0.54): on the H200 repeat_kv's broadcast copy runs at 0.22-0.26 of peak, softmax at "
                   "0.21-0.23 and the mask add at 0.32 (eager-ops-NVIDIA-H200.txt); the model's time is 41-49 % "
                   "below the measured one for GQA decode and 36-42 % below for the standard forward at 3000 "
                   "tokens")
def test_eager_paths_within_20_percent_on_new_shapes(by_v2) -> None:
    for kernel, direction in (("PyTorch eager attention", "decode"), ("PyTorch standard attention", "fwd")):
        assert _mape(_errors(by_v2, kernel, direction)) <= 20.0, kernel


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="archsim's naive kernel at 3000 tokens takes 1.47x (not causal) and 1.78x (causal) the "
                   "model's time (the model 32 % and 44 % below): its score rows of 6000 B start off the "
                   "128-B line (and the 32-B sector), which the model, a DRAM pass per tensor, does not see; "
                   "timed pass by pass (naive-lengths-NVIDIA-H200.txt) O = A V reads them at 1.57 TB/s "
                   "against 3.27-3.35 at 2944 and 3008 tokens (aligned rows), the whole call 3.16 ms against "
                   "2.49 at 3008")
def test_naive_kernel_within_20_percent_at_3000_tokens(by_v2) -> None:
    assert _mape(_errors(by_v2, "archsim naive 3-pass (Triton)", "fwd")) <= 20.0
