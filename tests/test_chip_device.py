"""Chips without a microarchitectural model (archsim/systems: chip, chip_device): TPU presets against their sources,
the new link presets against Ring Attention's Table 2, bad input as a SpecError naming the file and the field, and
a chip device inside a system spec costing ops as a roofline.

Expected numbers and their sources:
- Ring Attention Table 2 (../shared/reference/seqpar-sparse.md §2.1): TPUv3 123 TF / 112 GB/s, TPUv4 275 / 268,
  TPUv5e 196 / 186, A100 InfiniBand 12.5 GB/s, all links unidirectional.
- Lamina v2 Table 1 (pim.md §3.2): TPU v6e 918 BF16 TFLOPS, 32 GB, 1.64 TB/s.
- TPU v3 by construction: 2 TensorCores x 2 MXUs x 128 x 128 MACs x 2 FLOPs x 940 MHz.
- Llama-3-8B (workloads/llama3-8b.yaml): 8 KV heads of 128, bf16 (2 bytes).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.systems.chip import chip_from_dict, chip_names, load_chip
from archsim.systems.chip_device import ChipDevice
from archsim.systems.iteration import Batch
from archsim.systems.links import load_link
from archsim.systems.models import system_model
from archsim.systems.step import KV_CACHE, WEIGHTS
from archsim.systems.system_spec import load_system, system_from_dict
from archsim.systems.system_types import OP_KINDS

GIB = 2**30
TABLE_2 = {"tpu-v3": (123e12, "tpu-v3-ici", 112e9), "tpu-v4": (275e12, "tpu-v4-ici", 268e9),
           "tpu-v5e": (196e12, "tpu-v5e-ici", 186e9)}  # chip: (FLOP/s, link, bytes/s per direction)
MATMUL_EFFICIENCY, MEMORY_EFFICIENCY = 0.6, 0.8  # the test's own values
GOOD_CHIP = {"name": "c", "source": "a test", "matmul_flops_per_s": {"bf16": 100.0e+12},
             "memory_bytes": 16 * GIB, "memory_bytes_per_s": 1.0e+12}


def system_dict(device: dict) -> dict:
    return {"name": "tpu-test", "source": "a test", "devices": {"tpu": {"kind": "chip", "count": 1, **device}},
            "parallelism": {"tp": 1, "pp": 1}, "placement": [{"op": list(OP_KINDS), "device": "tpu"}],
            "schedule": {"kind": "blocked"}}


TPU_V4 = {"preset": "tpu-v4", "matmul_efficiency": MATMUL_EFFICIENCY, "memory_efficiency": MEMORY_EFFICIENCY}


# ------------------------------------------------------------------------------------------------ presets
def test_chip_presets_load_under_their_file_names() -> None:
    assert chip_names() == ["attacc-pim", "tpu-v3", "tpu-v4", "tpu-v5e", "tpu-v6e"]
    for name in chip_names():
        chip = load_chip(name)
        assert chip.name == name and chip.citation and Path(chip.source).name == f"{name}.yaml"
        assert "bf16" in chip.matmul_flops_per_s


def test_chip_peaks_match_ring_attention_table_2_and_lamina_table_1() -> None:
    for name, (flops_per_s, _, _) in TABLE_2.items():
        assert load_chip(name).matmul_flops_per_s["bf16"] == pytest.approx(flops_per_s, rel=0.01)
    assert load_chip("tpu-v3").matmul_flops_per_s["bf16"] == pytest.approx(2 * 2 * 128 * 128 * 2 * 940e6)
    v6e = load_chip("tpu-v6e")
    assert (v6e.matmul_flops_per_s["bf16"], v6e.memory_bytes_per_s) == (918e12, 1.64e12)
    assert v6e.memory_bytes == 32 * GIB
    assert (load_chip("tpu-v4").memory_bytes_per_s, load_chip("tpu-v5e").memory_bytes) == (1.2e12, 16 * GIB)


def test_link_presets_match_ring_attention_table_2_and_the_nics_line_rates() -> None:
    for _, link_name, bytes_per_s in TABLE_2.values():
        link = load_link(link_name)
        assert link.bytes_per_s_per_direction == pytest.approx(bytes_per_s, rel=0.01)
        assert link.latency_s == 0.0  # bandwidth-only, as Table 2's analysis
    for name, line_rate_bits_per_s in (("ib-100g-a100", 100e9), ("ib-hdr-200g", 200e9), ("ib-ndr-400g", 400e9)):
        link = load_link(name)
        assert link.bytes_per_s_per_direction == line_rate_bits_per_s / 8
        assert link.latency_s > 0
    assert load_link("ib-100g-a100").bytes_per_s_per_direction == 12.5e9  # Table 2's A100 InfiniBand row


def test_a_chip_file_loads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**GOOD_CHIP, "power_w": 200.0}))
    chip = load_chip(str(path))
    assert (chip.power_w, chip.source) == (200.0, str(path))


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("change", "where", "fragment"), [
    ({"matmul_flops_per_s": {"fp8": 1.0e+15}}, "matmul_flops_per_s", "at least bf16"),
    ({"matmul_flops_per_s": {"bf16": "123e12"}}, "matmul_flops_per_s.bf16", "YAML reads this as text"),
    ({"matmul_flops_per_s": {"bf16": 1.0e+14, "fp4": 1.0e+15}}, "matmul_flops_per_s.fp4", "unknown precision"),
    ({"memory_bytes_per_s": 0}, "memory_bytes_per_s", "between"),
    ({"memory_bytes": "32GiB"}, "memory_bytes", "got the text"),
    ({"power_w": -1}, "power_w", "between"),
])
def test_bad_chip_fields_name_the_field(change: dict, where: str, fragment: str) -> None:
    with pytest.raises(SpecError) as error:
        chip_from_dict({**GOOD_CHIP, **change}, "chip.yaml")
    assert (error.value.source, error.value.where) == ("chip.yaml", where)
    assert fragment in error.value.message


def test_a_chip_missing_a_required_field_names_it() -> None:
    with pytest.raises(SpecError) as error:
        chip_from_dict({k: v for k, v in GOOD_CHIP.items() if k != "memory_bytes_per_s"}, "chip.yaml")
    assert (error.value.where, error.value.message) == ("memory_bytes_per_s", "missing")


@pytest.mark.parametrize(("device", "where", "fragment"), [
    ({**TPU_V4, "matmul_efficiency": 0}, "devices.tpu.matmul_efficiency", "positive"),
    ({**TPU_V4, "memory_efficiency": 1.5}, "devices.tpu.memory_efficiency", "fraction in (0, 1]"),
    ({**TPU_V4, "memory_efficiency": "0.8"}, "devices.tpu.memory_efficiency", "got the text"),
    ({k: v for k, v in TPU_V4.items() if k != "matmul_efficiency"}, "devices.tpu.matmul_efficiency", "missing"),
    ({**TPU_V4, "preset": "tpu-v9"}, "devices.tpu.preset", "not a chip preset"),
    ({k: v for k, v in TPU_V4.items() if k != "preset"}, "devices.tpu.preset", "missing"),
    ({**TPU_V4, "attention_kernel": "FlashAttention-2"}, "devices.tpu.attention_kernel", "unknown key"),
])
def test_bad_chip_devices_name_the_field(device: dict, where: str, fragment: str) -> None:
    with pytest.raises(SpecError) as error:
        system_from_dict(system_dict(device), "sys.yaml")
    assert (error.value.source, error.value.where) == ("sys.yaml", where)
    assert fragment in error.value.message


def test_the_cli_refuses_a_bad_chip_device_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "sys.yaml"
    path.write_text(yaml.safe_dump(system_dict({**TPU_V4, "memory_efficiency": 1.5})))
    result = subprocess.run([sys.executable, "-m", "archsim", "check", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "devices.tpu.memory_efficiency" in lines[0] and str(path) in lines[0], result.stderr


# ------------------------------------------------------------------------------------------------ the roofline
@pytest.fixture(scope="module")
def llama_on_tpu_v4(tmp_path_factory):
    path = tmp_path_factory.mktemp("chip") / "sys.yaml"
    path.write_text(yaml.safe_dump(system_dict(TPU_V4)))
    return system_model(load_system(str(path)), library.load_workload_spec("llama3-8b"))


def test_decode_attention_is_memory_bound_at_the_derated_bandwidth(llama_on_tpu_v4) -> None:
    """One request's decode attention at 4096 tokens reads K and V of 8 KV heads x 128 in bf16 (8 MiB) and does
    ~2 FLOPs per byte, far below v4's 275e12 x 0.6 / (1.2e12 x 0.8) = 172 FLOP/B ridge: time = bytes / (bw x eff)."""
    tpu, context = llama_on_tpu_v4.devices["tpu"], 4096
    op = llama_on_tpu_v4.attention("decode", context)
    assert op.bytes_by_role[KV_CACHE] == 2 * 8 * context * 128 * 2
    cost = tpu.cost([op])
    bytes_per_s = 1.2e12 * MEMORY_EFFICIENCY
    assert cost.time_s == pytest.approx(op.bytes / bytes_per_s, rel=1e-9)
    assert cost.memory_s == cost.time_s
    assert cost.busy_s == {"tpu": pytest.approx(op.flops / 275e12, rel=1e-12)}
    assert math.isnan(cost.energy_j)  # tpu-v4 has no power figure: unknown, not 0


def test_a_prefill_projection_is_compute_bound_at_the_derated_peak(llama_on_tpu_v4) -> None:
    """The QKV projection of one 4096-token prompt: 2 x 4096 x 4096 x (4096 + 2 x 1024) FLOPs over ~75 MB, about
    2700 FLOP/B: time = FLOPs / (peak x eff); with half the weights still on chip, the bytes drop by half of them."""
    tpu = llama_on_tpu_v4.devices["tpu"]
    qkv = next(op for op in llama_on_tpu_v4.ops("prefill", 1, 4096) if op.name == "qkv")
    assert qkv.flops == 2 * 4096 * 4096 * (4096 + 2 * 8 * 128)
    assert tpu.cost([qkv]).time_s == pytest.approx(qkv.flops / (275e12 * MATMUL_EFFICIENCY), rel=1e-9)
    half = tpu.cost([qkv], streamed_fraction=0.5)
    expected_bytes = qkv.bytes - 0.5 * qkv.bytes_by_role[WEIGHTS]
    assert half.memory_s == pytest.approx(expected_bytes / (1.2e12 * MEMORY_EFFICIENCY), rel=1e-12)


def test_an_iteration_runs_and_capacity_is_the_whole_hbm(llama_on_tpu_v4) -> None:
    assert llama_on_tpu_v4.devices["tpu"].capacity_bytes == 32 * GIB
    cost = llama_on_tpu_v4.iteration(Batch(prefill_tokens=(128,), decode_context_tokens=(300, 700)))
    assert cost.time_s > 0 and math.isnan(cost.energy_j)


def test_energy_is_power_times_time_when_the_chip_has_power(tmp_path: Path) -> None:
    chip = chip_from_dict({**GOOD_CHIP, "power_w": 200.0})
    device = ChipDevice("c", chip, 1.0, 1.0)
    path = tmp_path / "sys.yaml"
    path.write_text(yaml.safe_dump(system_dict(TPU_V4)))
    op = system_model(load_system(str(path)), library.load_workload_spec("llama3-8b")).attention("decode", 1000)
    cost = device.cost([op, op])
    assert cost.time_s == pytest.approx(2 * op.bytes / 1.0e12, rel=1e-12)
    assert cost.energy_j == pytest.approx(200.0 * cost.time_s, rel=1e-12)


def test_a_word_size_without_a_peak_is_refused() -> None:
    device = ChipDevice("tpu", load_chip("tpu-v3"), 1.0, 1.0, "sys.yaml")
    assert device.matmul_peak_flops_per_s(2) == load_chip("tpu-v3").matmul_flops_per_s["bf16"]
    # 1-byte words are fp8: at the bf16 peak on a chip without fp8 (never its int8 peak), as a GPU runs them
    assert ChipDevice("tpu", load_chip("tpu-v4"), 1.0, 1.0).matmul_peak_flops_per_s(1) == 275e12
    assert device.matmul_peak_flops_per_s(1) == load_chip("tpu-v3").matmul_flops_per_s["bf16"]
    with pytest.raises(SpecError) as error:
        device.matmul_peak_flops_per_s(3)  # no 3-byte precision
    assert (error.value.source, error.value.where) == ("sys.yaml", "devices.tpu.preset")
