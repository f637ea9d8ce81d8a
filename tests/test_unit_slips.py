"""A GPU, link or chip number written in another unit (MHz for Hz, TB/s for B/s, GB for bytes, us for s) is refused
with exit 2 naming the file, the field and the unit it was likely written in, where it used to load and time
attention absurdly (h100-sxm5 at `clock_hz: 1980.0` ran Flash-Decoding at 34 MFLOP/s). The ranges are wide enough
for every real device, from an old or mobile GPU to a rack-scale part; the presets' comments and descriptions
state what the model uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu import load as gpu_load
from archsim.gpu.load import gpu_from_dict, gpu_names, load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu_kernels import FAMILIES, family_of
from archsim.systems.chip import chip_from_dict, chip_names, load_chip
from archsim.systems.kv_selection import weight_bytes
from archsim.systems.links import link_from_dict, link_names, load_link
from archsim.systems.system_spec import load_system

ROOT = Path(__file__).resolve().parents[1]
H100 = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text())
NVLINK4 = yaml.safe_load(Path(load_link("nvlink4-h100").source).read_text())
TPU_V6E = yaml.safe_load(Path(load_chip("tpu-v6e").source).read_text())


def _refusal(load, data: dict) -> SpecError:
    with pytest.raises(SpecError) as error:
        load(data, "slip.yaml")
    return error.value


# ------------------------------------------------------------------------------------------------ GPU files
@pytest.mark.parametrize(("field", "value", "unit"), [
    ("clock_hz", 1980.0, "MHz"),  # 1980 MHz
    ("dram_bytes_per_s", 3.35, "TB/s"),  # 3.35 TB/s
    ("dram_bytes", 80, "GB"),  # "80 GB" (the presets' 80 GiB = 85899345920)
    ("l2_bytes_per_s", 10.1, "TB/s"),
    ("dram_latency_s", 0.5, "us"),  # 0.5 us
    ("dram_latency_s", 500, "ns"),  # 500 ns
    ("fp32_flops_per_s", 66.9, "TFLOP/s"),
    ("smem_bytes_per_sm", 228, "KB"),  # 228 KiB = 233472
])
def test_a_gpu_number_in_another_unit_is_refused_naming_the_unit(field: str, value: float, unit: str) -> None:
    error = _refusal(gpu_from_dict, {**H100, field: value})
    assert (error.source, error.where) == ("slip.yaml", field)
    assert error.message.endswith(f"got {value!r}: a value in {unit}?") or f": a value in {unit}? (" in error.message


def test_the_mhz_clock_of_the_audit_is_refused_as_the_audit_asked() -> None:
    error = _refusal(gpu_from_dict, {**H100, "clock_hz": 1980.0})
    assert error.message == ("expected a clock frequency in Hz between 1e+07 and 1e+11 (e.g. 1.98e+09), got 1980.0: "
                             "a value in MHz?")


def test_a_gb_dram_size_names_the_gib_convention_and_blames_the_gpu_file() -> None:
    # it used to load, and the first error then blamed the workload file (its weights did not fit 80 B)
    error = _refusal(gpu_from_dict, {**H100, "dram_bytes": 80})
    assert error.where == "dram_bytes"
    assert "a value in GB? (write bytes; a spec sheet's 80 GB is taken as 80 GiB = 85899345920)" in error.message


def test_a_tensor_peak_in_tflops_is_refused_naming_its_precision() -> None:
    error = _refusal(gpu_from_dict, {**H100, "tensor_flops_per_s": {**H100["tensor_flops_per_s"], "fp16": 989.4}})
    assert error.where == "tensor_flops_per_s.fp16" and error.message.endswith("got 989.4: a value in TFLOP/s?")


@pytest.mark.parametrize(("change", "where", "per_sm_clock"), [
    # a tensor peak in GFLOP/s: in range alone (9.894e11), but 9.894e11 / (132 x 1.98e9) = 3.79 FLOP per SM per clock
    ({"tensor_flops_per_s": {**H100["tensor_flops_per_s"], "fp16": 989.4e9}}, "tensor_flops_per_s.fp16", "3.79"),
    # CUDA cores for SMs: 66.9e12 / (16896 x 1.98e9) = 2.0, under the 4 of 2 FMA lanes
    ({"sm_count": 16896}, "fp32_flops_per_s", "2"),
])
def test_a_peak_no_sm_could_issue_per_clock_is_refused(change: dict, where: str, per_sm_clock: str) -> None:
    error = _refusal(gpu_from_dict, {**H100, **change})
    assert error.where == where
    assert "expected 4 to 65536 FLOP per SM per clock, got " in error.message
    assert f"= {per_sm_clock}: the peak, clock_hz or sm_count (SMs, not cores) is in another unit" in error.message


@pytest.mark.parametrize("device", [
    # NVIDIA GB200 NVL72 taken as one device (72 x B200): 10656 SMs, 13.4 TiB of HBM at 576 TB/s, 180 PFLOP/s fp16
    {"sm_count": 72 * 148, "clock_hz": 1.965e9, "dram_bytes": 72 * 186 * 2**30, "dram_bytes_per_s": 576e12,
     "tensor_flops_per_s": {"fp16": 72 * 2.25e15}, "fp32_flops_per_s": 72 * 75e12, "power_w": 132e3,
     "l2_bytes": 72 * 126 * 2**20, "l2_bytes_per_s": 72 * 2e13},
    # a Jetson Orin Nano class part: 8 SMs at 625 MHz, 8 GiB LPDDR5 at 68 GB/s, 10 TFLOP/s dense fp16, 7 W
    {"sm_count": 8, "clock_hz": 625e6, "dram_bytes": 8 * 2**30, "dram_bytes_per_s": 68e9,
     "tensor_flops_per_s": {"fp16": 10e12}, "fp32_flops_per_s": 1.28e12, "power_w": 7, "l2_bytes": 2 * 2**20,
     "l2_bytes_per_s": 0.2e12},
    # a 2008 GTX 280 (no tensor cores: its fp16 path at the FP32 rate): 30 SMs of 8 FMA lanes at 1296 MHz (16 FLOP
    # per SM per clock: 622 GFLOP/s), 1 GiB at 141.7 GB/s, 236 W, no L2 to speak of (64 KiB, the floor)
    {"sm_count": 30, "clock_hz": 1.296e9, "dram_bytes": 2**30, "dram_bytes_per_s": 141.7e9,
     "tensor_flops_per_s": {"fp16": 30 * 16 * 1.296e9}, "fp32_flops_per_s": 30 * 16 * 1.296e9, "power_w": 236,
     "l2_bytes": 2**16,
     "l2_bytes_per_s": 0.3e12},
])
def test_real_devices_from_a_mobile_part_to_a_rack_load(device: dict) -> None:
    gpu = gpu_from_dict({**H100, **device, "sync_mma_fraction": 1.0}, "real.yaml")
    assert gpu.dram_bytes == device["dram_bytes"]


def test_every_gpu_link_and_chip_preset_loads() -> None:
    assert all(load_gpu(name).name == name for name in gpu_names())
    assert all(load_link(name).name == name for name in link_names())
    assert all(load_chip(name).name == name for name in chip_names())


def test_a_gpu_file_in_mhz_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "h100-mhz.yaml"
    path.write_text(yaml.safe_dump({**H100, "clock_hz": 1980.0}))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}: clock_hz: expected a clock frequency in Hz" in result.output and "MHz?" in result.output


def test_the_docstring_example_gives_the_preset_dram_size() -> None:
    # the "full example" said dram_bytes: 80.0e+9, where the a100-80gb-sxm4 preset has 80 GiB
    block = gpu_load.__doc__.split("::", 1)[1].split("\n\n")[1]
    example = yaml.safe_load(block)
    assert example["name"] == "a100-80gb-sxm4"
    assert example["dram_bytes"] == load_gpu("a100-80gb-sxm4").dram_bytes == 80 * 2**30
    assert "80 GB" in gpu_load.MEANINGS["dram_bytes"] and "80 GiB" in gpu_load.MEANINGS["dram_bytes"]


# ------------------------------------------------------------------------------------------------ links and chips
@pytest.mark.parametrize(("field", "value", "unit"), [
    ("bytes_per_s_per_direction", 900.0, "GB/s"),
    ("latency_s", 0.8, "us"),
])
def test_a_link_number_in_another_unit_is_refused(field: str, value: float, unit: str) -> None:
    error = _refusal(link_from_dict, {**NVLINK4, field: value})
    assert (error.source, error.where) == ("slip.yaml", field)
    assert error.message.endswith(f"got {value!r}: a value in {unit}?")


def test_a_link_keeps_a_zero_latency_and_a_slow_line() -> None:
    link = link_from_dict({**NVLINK4, "latency_s": 0, "bytes_per_s_per_direction": 1.25e6}, "slow.yaml")
    assert (link.latency_s, link.bytes_per_s_per_direction) == (0.0, 1.25e6)


@pytest.mark.parametrize(("field", "value", "unit"), [
    ("memory_bytes_per_s", 1640.0, "GB/s"),
    ("memory_bytes", 32, "GB"),
])
def test_a_chip_number_in_another_unit_is_refused(field: str, value: float, unit: str) -> None:
    error = _refusal(chip_from_dict, {**TPU_V6E, field: value})
    assert (error.source, error.where) == ("slip.yaml", field)
    assert f"a value in {unit}?" in error.message


def test_a_chip_peak_in_tflops_is_refused() -> None:
    error = _refusal(chip_from_dict, {**TPU_V6E, "matmul_flops_per_s": {"bf16": 918.0}})
    assert error.where == "matmul_flops_per_s.bf16" and error.message.endswith("a value in TFLOP/s?")


# ------------------------------------------------------------------------------------------------ calibration
@pytest.mark.parametrize("family", [family_of("no such kernel"), "fa9"])
def test_an_unknown_family_is_a_spec_error_naming_the_known_ones(family: str | None) -> None:
    with pytest.raises(SpecError) as error:  # was a bare KeyError: None
        load_calibration().family_params(family)
    assert error.value.where == "families" and f"no kernel family {family!r}" in error.value.message
    assert f"known: {', '.join(FAMILIES)}" in error.value.message


# ------------------------------------------------------------------------------------------------ what presets state
def test_the_hopper_presets_state_the_exp_rate_the_model_uses() -> None:
    # GPU.exp_per_s = 16 x 132 x clock_hz 1.98e9 = 4.18e12, not the FA3 paper's 3.9e12 at 1.83 GHz the comment quoted
    for name in ("h100-sxm5", "h200-sxm"):
        gpu = load_gpu(name)
        stated = re.search(r"16 x 132 x\s+#?\s*clock_hz = ([0-9.e]+)/s", Path(gpu.source).read_text())
        assert stated and float(stated.group(1)) == pytest.approx(gpu.exp_per_s, rel=1e-3), name
        assert gpu.exp_per_s / 3.9e12 - 1 == pytest.approx(0.07, abs=0.005)  # the "7 % above" both state


def test_the_deepseek_description_states_its_weights_and_active_ffn() -> None:
    workload = library.load_workload_spec("deepseek-v3-mla")
    params = weight_bytes(workload) / 2  # bf16
    stated = re.search(r"weights (\d+)B vs 671B \(\+([0-9.]+) %\)", workload.description)
    assert stated and int(stated.group(1)) == round(params / 1e9) == 704
    assert float(stated.group(2)) == round((params / 671e9 - 1) * 100, 1)  # 4.9
    assert workload.params["shared_experts"] == 1  # a token's active expert FFN is the real model's 9 x 2048


def test_npu_only_states_the_capacity_it_uses() -> None:
    text = (ROOT / "archsim" / "systems" / "system_presets" / "npu-only.yaml").read_text()
    capacity = load_system("npu-only").devices["hbm"].spec.capacity_bytes
    assert "32 channels x 1 GiB = 32 GiB" in text and capacity == 32 * 2**30
    assert "HBM_size: 8" in text  # the artifact's npu-only value, beside it
