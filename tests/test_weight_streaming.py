"""A GPU device's weight GEMMs stream at the GPU's copy bandwidth: its preset's `dram_copy_fraction` where it has one
(../shared/reference/gpu/gpu_measured_fractions.csv), else the Hopper measurement transferred
(`model.gpu.TRANSFERRED_COPY_FRACTION`), never the eager family's fitted DRAM efficiency."""

from __future__ import annotations

import dataclasses
import importlib.resources

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import gpu_from_dict, load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import TRANSFERRED_COPY_FRACTION
from archsim.systems.gpu_device import GEMM_FAMILY, GpuDevice
from archsim.systems.step import WEIGHTS, Step, layer_op

MEASURED = {"h100-sxm5": 3.0e12 / 3.35e12, "h200-sxm": 4.3e12 / 4.8e12}  # the CSV's copies over the peaks


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_measured_presets_carry_their_copy_fraction(name: str) -> None:
    assert load_gpu(name).dram_copy_fraction == pytest.approx(MEASURED[name], abs=5e-4)


def test_unmeasured_presets_have_none() -> None:
    assert load_gpu("a100-80gb-sxm4").dram_copy_fraction is None


def test_the_transferred_fraction_is_the_hopper_measurement() -> None:
    assert pytest.approx(MEASURED["h100-sxm5"], abs=5e-4) == TRANSFERRED_COPY_FRACTION


@pytest.mark.parametrize("field", ["dram_copy_fraction", "gemm_fraction"])
@pytest.mark.parametrize("value", [0, 1.5, "fast"])
def test_a_bad_fraction_is_refused_naming_the_field(field: str, value: object) -> None:
    data = yaml.safe_load((importlib.resources.files("archsim.gpu.presets") / "h100-sxm5.yaml").read_text())
    data[field] = value
    with pytest.raises(SpecError) as error:
        gpu_from_dict(data, "mine.yaml")
    assert (error.value.source, error.value.where) == ("mine.yaml", field)


@pytest.mark.parametrize("name", ["h100-sxm5", "a100-80gb-sxm4", "mi300x"])
def test_a_decode_ffn_streams_its_weights_at_the_copy_fraction(name: str) -> None:
    """A one-token Llama3-70B FFN (3 weight matrices, 1.4 GB) is DRAM-bound: its time is the weights over the
    bandwidth at the copy fraction (measured, or transferred for the A100), plus the launches and the elementwise
    pass."""
    gpu = load_gpu(name)
    params = load_calibration().family_params(GEMM_FAMILY)
    device = GpuDevice("gpu", gpu, params)
    op = layer_op(library.load_workload_spec("llama3-70b"), Step("decode", 1, 1), "llama", "ffn")
    fraction = gpu.dram_copy_fraction or TRANSFERRED_COPY_FRACTION
    weights_s = op.bytes_by_role[WEIGHTS] / (gpu.dram_bytes_per_s * fraction)
    time_s = device.cost([op]).time_s
    assert weights_s < time_s < weights_s * 1.01 + 3 * params["launch_s"] + 1e-5


GEMM_MEASURED = {"h100-sxm5": 798 / 989.4, "h200-sxm": 788 / 989.4}  # the CSV's 8192^3 bf16 matmuls over the peak


@pytest.mark.parametrize("name", sorted(GEMM_MEASURED))
def test_measured_presets_carry_their_gemm_fraction(name: str) -> None:
    assert load_gpu(name).gemm_fraction == pytest.approx(GEMM_MEASURED[name], abs=5e-4)
    assert load_gpu("a100-80gb-sxm4").gemm_fraction is None


@pytest.mark.parametrize("name", ["h100-sxm5", "a100-80gb-sxm4"])
def test_a_prefill_ffn_computes_at_the_measured_gemm_fraction(name: str) -> None:
    """An 8192-token Llama3-70B FFN (3 weight GEMMs, 2.9 TFLOP) is compute-bound: its GEMMs take their FLOPs over
    the tensor peak at the preset's measured GEMM fraction (H100) or at the eager family's prior (the A100 has no
    measurement); the same GPU at another fraction differs by exactly the GEMMs' change (its elementwise passes
    alike)."""
    gpu = load_gpu(name)
    params = load_calibration().family_params(GEMM_FAMILY)
    op = layer_op(library.load_workload_spec("llama3-70b"), Step("prefill", 1, 8192), "llama", "ffn")
    fraction = gpu.gemm_fraction or params["gemm_efficiency"]
    peak_s = op.flops / gpu.tensor_peak_flops_per_s("fp16")
    time_s = GpuDevice("gpu", gpu, params).cost([op]).time_s
    halved_s = GpuDevice("gpu", dataclasses.replace(gpu, gemm_fraction=fraction / 2), params).cost([op]).time_s
    assert halved_s - time_s == pytest.approx(peak_s / fraction, rel=1e-3)
