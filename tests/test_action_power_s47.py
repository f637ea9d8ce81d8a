"""A GPU priced per action draws no more than its board power: the most its prices charge a second (`static_w` and a
GEMM launch at the rates the model runs it, `gpu_device.action_power_w`) is checked against the preset's TDP where
the prices are read (`system_spec._gpu_fields`). A duplex-gpu at 1.1 pJ/FLOP had passed `archsim check` and printed
759 W per H100 of TDP 700 W in a prefill (energy audit 3)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.params import load_calibration
from archsim.model.gpu import copy_fraction
from archsim.systems.gpu_device import CALIBRATED, GEMM_FAMILY, ROOFLINE, ActionEnergy, action_power_w
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, system_names, with_fields


def _spec(tmp_path: Path, gpu: dict) -> str:
    path = tmp_path / "hot.yaml"
    path.write_text(yaml.safe_dump({"name": "hot", "base": "duplex-gpu", "devices": {"gpu": gpu}}))
    return str(path)


def _gpu_devices(system):
    return [d for d in system.devices.values() if d.kind in ("gpu", "memory-pool") and d.energy is not None]


def test_a_price_beyond_the_board_power_is_refused_by_check(tmp_path, invoke) -> None:
    path = _spec(tmp_path, {"pj_per_flop": 1.1})
    code, out = invoke("check", path)
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {path}: devices.gpu.pj_per_flop: ")
    assert "above the board power of h100-sxm5, 700 W" in lines[0]


def test_the_bound_is_the_model_s_gemm_rule_and_its_edge_is_exact(tmp_path) -> None:
    """duplex-gpu's H100: static_w + the fp16 tensor peak x the preset's measured GEMM fraction x pj_per_flop + the
    DRAM bandwidth x its copy fraction x (8 x hbm_pj_per_bit + sram_pj_per_byte); the pj_per_flop that meets the TDP
    loads, a hair above it is refused."""
    device = load_system("duplex-gpu").devices["gpu"]
    gpu, energy = device.spec, device.energy
    flops_per_s = gpu.tensor_peak_flops_per_s("fp16") * gpu.gemm_fraction
    bytes_per_s = gpu.dram_bytes_per_s * copy_fraction(gpu)
    byte_pj = 8 * energy.hbm_pj_per_bit + energy.sram_pj_per_byte
    expected = energy.static_w + (flops_per_s * energy.pj_per_flop + bytes_per_s * byte_pj) * 1e-12
    assert action_power_w(energy, gpu) == pytest.approx(expected, rel=1e-12)
    edge = (gpu.power_w - energy.static_w - bytes_per_s * byte_pj * 1e-12) / (flops_per_s * 1e-12)
    load_system(_spec(tmp_path, {"pj_per_flop": edge * (1 - 1e-9)}))
    with pytest.raises(SpecError) as error:
        load_system(_spec(tmp_path, {"pj_per_flop": edge * (1 + 1e-9)}))
    assert error.value.where == "devices.gpu.pj_per_flop"


def test_roofline_timing_bounds_at_the_whole_peak(tmp_path) -> None:
    """With `timing: roofline` a GEMM runs at the tensor peak and the DRAM bandwidth, so the bound does too."""
    device = load_system("duplex-gpu").devices["gpu"]
    gpu, energy = device.spec, device.energy
    dynamic = energy.energy_j(gpu.dram_bytes_per_s, gpu.tensor_peak_flops_per_s("fp16"))
    assert action_power_w(energy, gpu, ROOFLINE) == pytest.approx(energy.static_w + dynamic, rel=1e-12)
    assert action_power_w(energy, gpu, ROOFLINE) > action_power_w(energy, gpu)


def test_a_gpu_without_a_measured_gemm_fraction_takes_the_family_prior() -> None:
    device = load_system("dgx-base").devices["gpu"]
    assert device.spec.gemm_fraction is None
    prior = load_calibration().family_params(GEMM_FAMILY)["gemm_efficiency"]
    zero_bytes = dataclasses.replace(device.energy, hbm_pj_per_bit=0.0, sram_pj_per_byte=0.0)
    assert action_power_w(zero_bytes, device.spec) == pytest.approx(
        zero_bytes.static_w + device.spec.tensor_peak_flops_per_s("fp16") * prior * zero_bytes.pj_per_flop * 1e-12,
        rel=1e-12)


def test_a_large_prefill_gemm_in_the_model_runs_at_the_bound_s_fraction() -> None:
    """The bound is the model's own: a 131072-token prompt's QKV GEMM on duplex-gpu reaches the GEMM fraction the
    bound prices (within its one launch), and no op of the prompt draws more than the bound at the preset's prices."""
    model = system_model(load_system("duplex-gpu"), library.load_workload_spec("llama3-70b"))
    device = model.devices["gpu"]
    flop_priced = dataclasses.replace(device, energy=ActionEnergy(0.0, 1.0, 0.0, 0.0))
    ops = model.ops("prefill", 1, 131072)
    qkv = next(op for op in ops if op.name == "qkv")
    cost = flop_priced.cost([qkv])
    assert cost.energy_j / cost.time_s * 1e12 == pytest.approx(
        device.spec.tensor_peak_flops_per_s("fp16") * device.spec.gemm_fraction, rel=1e-3)
    bound = action_power_w(device.energy, device.spec)
    for op in (*ops, model.attention("prefill", 131072)):
        priced = device.cost([op])
        assert device.energy.static_w + priced.energy_j / priced.time_s <= bound, op.name


def test_every_shipped_preset_loads_within_its_board_power() -> None:
    checked = 0
    for name in system_names():
        for device in _gpu_devices(load_system(name)):
            assert action_power_w(device.energy, device.spec, device.timing or CALIBRATED) <= device.spec.power_w, (
                name, device.name)
            checked += 1
    assert checked >= 6  # duplex, duplex-gpu, duplex-bank-pim, duplex-bankgroup-pim, dgx-base, attacc (its base's)


def test_a_held_field_change_keeps_the_check(tmp_path) -> None:
    """A derived spec's price set by `with_fields` (a sweep's axis) is checked as a file's."""
    with pytest.raises(SpecError) as error:
        with_fields(load_system("duplex-gpu"), {"devices.gpu.pj_per_flop": 3.0})
    assert error.value.where == "devices.gpu.pj_per_flop" and "700 W" in error.value.message
