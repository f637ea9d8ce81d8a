"""The GPU model off its measured shapes: a head_dim a kernel pads, and decode at long contexts.

Each expected number is derived by hand in the test from the case's sizes and the preset's datasheet numbers
(h100-sxm5: 3.35 TB/s of DRAM; the kernel model streams at `DRAM_EFFICIENCY` 0.90 of it; FA2's `launch_s` 4 us).
"""

from __future__ import annotations

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.gpu.roofline import roofline_time_s, workload_points
from archsim.model.gpu import DRAM_EFFICIENCY, AttentionCase, dram_efficiency
from archsim.model.gpu_kernels import family_of, predict

H100 = load_gpu("h100-sxm5")
CALIBRATION = load_calibration()
H100_STREAM_BPS = 3.35e12 * DRAM_EFFICIENCY


def _predict(kernel: str, case: AttentionCase, gpu=H100):
    return predict(kernel, case, gpu, CALIBRATION.family_params(family_of(kernel)))


# ------------------------------------------------------------------------------------------------ padded head dims
@pytest.mark.parametrize("head_dim", [72, 80])
def test_flash_decoding_reads_the_kv_cache_at_its_own_head_dim(head_dim: int) -> None:
    """B64, 32q/8kv, 32K keys, fp16: FA2 runs d 72 and 80 at its compiled 96, but the cache in DRAM is d wide and
    its loads are masked. Bytes: K and V 2 x 64 x 8 x 32768 x d x 2, Q and O 2 x 64 x 32 x d x 2 (one split: no
    partials). At d 80: 5.369e9 B / (3.35e12 x 0.9) + 4 us = 1784.9 us (it was 6.443e9 B, 2141.1 us, at every d
    from 65 to 96); the roofline's time is the same bytes at the full bandwidth, 1602.8 us."""
    case = AttentionCase("decode", 64, 32, 8, head_dim, 32768, False, "fp16")
    result = _predict("Flash-Decoding", case)
    dram_bytes = 2 * 64 * 8 * 32768 * head_dim * 2 + 2 * 64 * 32 * head_dim * 2
    assert result.total("dram_bytes") == dram_bytes
    assert result.time_s == pytest.approx(dram_bytes / H100_STREAM_BPS + 4e-6, rel=1e-12)
    assert roofline_time_s(result, H100) == pytest.approx(dram_bytes / 3.35e12, rel=1e-12)


@pytest.mark.parametrize(("kernel", "head_dim", "compiled"), [
    ("FlashAttention-2", 80, 96), ("FlashAttention Triton", 80, 128), ("FlashAttention (v1)", 40, 64),
    ("FlashAttention-3", 80, 128),
])
def test_a_padded_head_dim_is_computed_at_the_compiled_width_and_read_at_its_own(kernel: str, head_dim: int,
                                                                                  compiled: int) -> None:
    """A forward at B2, 16 heads, 4096 tokens: the MMAs and shared memory are the compiled width's (the padded
    columns are computed), the DRAM bytes the head_dim's. FA2, FA3 and the Triton kernel move Q, K, V and O once,
    4 x 2 x 16 x 4096 x d x 2 B, and an fp32 log-sum-exp per row, 2 x 16 x 4096 x 4 B: at d 80 84.41 MB (at the
    compiled width it was 101.19 MB for 96 and 134.74 MB for 128). FA1 re-reads Q and its fp32 output per key block;
    every one of those terms is linear in d, so its bytes at d 40 are 40/64 of its bytes at 64."""
    case = AttentionCase("fwd", 2, 16, 16, head_dim, 4096, False, "fp16")
    result, at_compiled = _predict(kernel, case), _predict(kernel, AttentionCase("fwd", 2, 16, 16, compiled, 4096,
                                                                                 False, "fp16"))
    assert result.total("mma_flops") == at_compiled.total("mma_flops")
    assert [r.ctas_per_sm for r in result.launches] == [r.ctas_per_sm for r in at_compiled.launches]
    if kernel == "FlashAttention (v1)":
        assert result.total("dram_bytes") == pytest.approx(at_compiled.total("dram_bytes") * head_dim / compiled)
    else:
        assert result.total("dram_bytes") == 4 * 2 * 16 * 4096 * head_dim * 2 + 2 * 16 * 4096 * 4


def test_fa2_backward_keeps_its_dq_accumulator_at_the_compiled_width() -> None:
    """FA2's backward at d 80 (runs at 96), B1, 8 heads, 1024 tokens: its preprocessing kernel reads dO and O at
    d 80 (2 x 80 x 2 B per row), writes D (4 B) and zeroes the fp32 dQ accumulator, allocated at 96 (96 x 4 B):
    8192 rows x 708 B = 5.80 MB; its last kernel reads that accumulator and writes dQ: 8192 x (96 x 4 + 80 x 2)."""
    result = _predict("FlashAttention-2", AttentionCase("bwd", 1, 8, 8, 80, 1024, False, "fp16"))
    preprocess, _, convert = result.launches
    rows = 8 * 1024
    assert preprocess.dram_bytes == rows * (2 * 80 * 2 + 4 + 96 * 4)
    assert convert.dram_bytes == rows * (96 * 4 + 80 * 2)


# ------------------------------------------------------------------------------------------------ decode's row limit
def test_long_context_decode_is_bounded_by_its_query_rows_not_its_context() -> None:
    """MQA decode, B64, 64q/1kv, d128, 512K keys: 64 x 64 = 4096 query rows (65536 counted as 16-row tiles),
    64 x 1 x 524288 = 3.4e7 keys, both under 2**30; its 64 x 64 x 524288 = 2.1e9 was refused as prefill rows. Its
    K and V, 2 x 64 x 524288 x 128 x 2 = 17.18 GB, stream in 17.18e9 / (3.35e12 x 0.9) = 5.698 ms; the split
    partials, the combine and two launches add 0.26 %."""
    case = AttentionCase("decode", 64, 64, 1, 128, 524288, False, "fp16")
    assert case.size_problem() == ("", "")
    result = _predict("Flash-Decoding", case)
    assert result.time_s == pytest.approx(2 * 64 * 524288 * 128 * 2 / H100_STREAM_BPS, rel=5e-3)


def test_a_decode_beyond_the_limit_names_its_rows_or_its_keys(monkeypatch) -> None:
    """At a limit of 2**16, B64 x 64 heads is 65536 counted rows (within); at 2**16 - 1 it is beyond, naming batch
    (the first of equal factors). At 2**24, the 64 x 1 x 524288 = 3.4e7 keys are beyond, naming seqlen."""
    case = AttentionCase("decode", 64, 64, 1, 128, 524288, False, "fp16")
    monkeypatch.setenv("ARCHSIM_MAX_GPU_ROWS", str(2**25))
    assert case.size_problem() == ("", "")
    monkeypatch.setenv("ARCHSIM_MAX_GPU_ROWS", str(2**16 - 1))
    field, problem = case.size_problem()
    assert field == "batch" and problem.startswith("batch x heads x 16 = 64 x 64 x 16 = 65536 query rows")
    monkeypatch.setenv("ARCHSIM_MAX_GPU_ROWS", str(2**24))
    field, problem = case.size_problem()
    assert field == "seqlen" and problem.startswith("batch x kv_heads x seqlen = 64 x 1 x 524288 = 33554432 keys")


def test_the_roofline_times_decode_where_the_prefill_is_beyond_the_limit() -> None:
    """Llama-3-70B (B16, 64q/8kv, d128) at 2M tokens on an H200: prefill is 16 x 64 x 2e6 = 2.05e9 query rows, beyond
    2**30, so each prefill kernel is a row with that reason; decode (1024 rows, 2.56e8 keys; K and V 131 GB of the
    H200's 141 GB) is a point, and eager decode is refused for its repeat_kv copies, not for its size."""
    llama3_70b = {"batch": 16, "seq_len": 2_000_000, "heads": 64, "kv_heads": 8, "head_dim": 128, "word_bytes": 2}
    points, infeasible = workload_points(llama3_70b, load_gpu("h200-sxm"), CALIBRATION.family_params)
    assert [p.label for p in points] == ["decode Flash-Decoding", "decode FA v2.0.9"]
    reasons = dict(infeasible)
    for label in ("prefill fwd FA2", "prefill fwd FA3", "prefill fwd+bwd FA2", "prefill fwd PyTorch"):
        assert reasons[label].startswith("batch x heads x seqlen = 16 x 64 x 2000000 = 2048000000 query rows")
    assert "repeat_kv's expanded K and V" in reasons["decode PyTorch eager"]


def test_a_gpu_streams_at_its_own_measured_copy_fraction() -> None:
    """MI300X's preset measures copies at 0.81 of peak: its kernels stream at 0.81 x 0.90 / 0.896 of it (the
    H100/H200 copy fraction 0.896 is what the 0.90 was measured beside), not at the H100's 0.90, so a decode over
    8.59 GB of KV takes about 8.59e9 / (5.3e12 x 0.81) = 2.0 ms, not 1.8. A GPU without a measured fraction keeps
    0.90, and the H100's is exactly 0.90 (its measured rows do not move)."""
    mi300x = load_gpu("mi300x")
    assert dram_efficiency(mi300x) == pytest.approx(0.81 * 0.90 / 0.896)
    assert dram_efficiency(load_gpu("h100-sxm5")) == DRAM_EFFICIENCY == dram_efficiency(load_gpu("a100-80gb-sxm4"))
    case = AttentionCase("decode", 64, 32, 8, 128, 32768, False, "bf16")
    result = predict("Flash-Decoding", case, mi300x, load_calibration().family_params("fa2"))
    kv_bytes = 2 * 64 * 8 * 32768 * 128 * 2
    assert result.time_s >= kv_bytes / (mi300x.dram_bytes_per_s * dram_efficiency(mi300x))
    assert result.time_s == pytest.approx(kv_bytes / (mi300x.dram_bytes_per_s * 0.81), rel=0.01)


def test_mi300x_gemms_run_at_its_reference_fraction_not_the_prior():
    """MI300X's GEMMs at the reference's low-confidence ~45 % of peak FLOPs (gpu_measured_fractions.csv, the row its
    copy fraction comes from), not the eager family's 0.7 prior, which made an 8192^3 bf16 matmul 912 TFLOP/s (above
    any published MI300X GEMM and beside an H100's measured 798)."""
    from archsim.model.gpu import GemmLaunch, gemm_launch_time
    from archsim.systems.gpu_device import calibrated_gpu_device

    n = 8192
    rates = {}
    for name in ("mi300x", "h100-sxm5"):
        gpu = load_gpu(name)
        launch = GemmLaunch("gemm", 2.0 * n**3, 3 * n * n * 2, "bf16")
        rates[name] = 2.0 * n**3 / gemm_launch_time(launch, gpu, calibrated_gpu_device(gpu)._gemm_params).time_s
    assert rates["mi300x"] < rates["h100-sxm5"]
    assert rates["mi300x"] / load_gpu("mi300x").tensor_peak_flops_per_s("bf16") == pytest.approx(0.45, rel=0.02)
