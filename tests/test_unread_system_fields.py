"""System and chip fields that no model read are refused, and on-chip weights are bounded by the SRAM holding them.

- `schedule.resident_weight_bytes` (NeuPIMs' SBI) are weights an NPU keeps in its SRAM for the second sub-batch:
  above `devices.<npu>.sram_bytes` they were taken anyway (a 1 MiB SRAM "kept" 128 MiB of weights), so the spec
  refuses them, naming both numbers.
- An npu device's `element_bytes` (every op streams the workload's `word_bytes`), a logic-pim's `area_mm2` (no model
  or record of a system reads an area) and a chip file's `vector_flops_per_s` (the roofline runs every op at the
  matrix peak) changed no output: each is refused by name.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from archsim.errors import SpecError
from archsim.library import load_workload_spec
from archsim.systems.chip import chip_from_dict
from archsim.systems.models import system_model
from archsim.systems.system_spec import MAX_NUMBER, load_system, system_from_dict, with_fields

MIB = 2**20
PRESETS = Path(__file__).parents[1] / "archsim/systems/system_presets"


def preset_data(name: str) -> dict:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())


def test_resident_weights_above_the_npu_sram_are_refused() -> None:
    """neupims: SBI's second sub-batch keeps `resident_weight_bytes` of the NPU's weights in its SRAM; with a 1 MiB
    SRAM, 128 MiB of resident weights cannot be there (before: accepted, 447.77 against 386.56 tokens/s)."""
    small = with_fields(load_system("neupims"), {"devices.npu.sram_bytes": MIB})
    with pytest.raises(SpecError, match=r"schedule\.resident_weight_bytes: expected at most "
                                        r"devices\.npu\.sram_bytes = 1048576 .*got 134217728"):
        with_fields(small, {"schedule.resident_weight_bytes": 128 * MIB})
    with pytest.raises(SpecError, match=r"devices\.npu\.sram_bytes = 1048576 .*got 1000000000000$"):
        with_fields(small, {"schedule.resident_weight_bytes": 1e12})
    assert with_fields(small, {"schedule.resident_weight_bytes": MIB}).schedule.resident_weight_bytes == MIB


def test_resident_weights_up_to_the_preset_sram_load() -> None:
    """The NeuPIMs NPU's SRAM, 134218 KiB (pim.md §1.2, NPUSpec), holds exactly that many bytes of weights; one
    more is refused; an NPU with an SRAM of the largest byte count a spec takes holds any."""
    system = load_system("neupims")
    sram = system.devices["npu"].spec.sram_bytes
    assert sram == 134218 * 1024
    assert with_fields(system, {"schedule.resident_weight_bytes": sram}).schedule.resident_weight_bytes == sram
    with pytest.raises(SpecError, match=r"schedule\.resident_weight_bytes"):
        with_fields(system, {"schedule.resident_weight_bytes": sram + 1})
    unbounded = with_fields(system, {"devices.npu.sram_bytes": MAX_NUMBER,
                                     "schedule.resident_weight_bytes": MAX_NUMBER})
    assert unbounded.schedule.resident_weight_bytes == MAX_NUMBER


def test_resident_weights_on_a_device_without_sram_are_refused() -> None:
    """A weight-holding op (the FFN) that a rule can put on a gpu device, which has no SRAM size in its spec: no
    weights can be counted as kept on chip there. Which ops hold weights is the workload's (its cascades), so the
    spec alone is accepted and the model of a workload with dense FFNs is refused."""
    data = preset_data("neupims")
    data["devices"]["gpu"] = {"kind": "gpu", "count": 4, "preset": "h100-sxm5"}
    data["placement"].insert(0, {"op": "ffn", "phase": "decode", "device": "gpu"})
    data["schedule"]["resident_weight_bytes"] = MIB
    system = system_from_dict(copy.deepcopy(data), "neupims-gpu.yaml")
    with pytest.raises(SpecError, match=r"schedule\.resident_weight_bytes: expected 0: gpu, which a rule can put "
                                        r"ffn on, is a gpu device"):
        system_model(system, load_workload_spec("gpt3-7b"))
    data["schedule"]["resident_weight_bytes"] = 0
    assert system_from_dict(copy.deepcopy(data), "neupims-gpu.yaml").schedule.resident_weight_bytes == 0


def test_an_npu_element_bytes_is_refused() -> None:
    """gemm_time streams the op's word_bytes (the workload's); the NPU's element_bytes changed nothing."""
    data = preset_data("neupims")
    data["devices"]["npu"]["element_bytes"] = 4
    with pytest.raises(SpecError, match=r"devices\.npu\.element_bytes: not read: .*word_bytes"):
        system_from_dict(data, "neupims.yaml")


def test_a_logic_pim_area_is_refused() -> None:
    """No model or record of a system reads an area (a system record's area_um2 is NaN)."""
    data = preset_data("duplex")
    data["devices"]["lp"]["area_mm2"] = 17.80
    with pytest.raises(SpecError, match=r"devices\.lp\.area_mm2: not read"):
        system_from_dict(data, "duplex.yaml")


def test_a_chip_vector_peak_is_refused() -> None:
    """The chip roofline runs every op at its matrix peak: a vector-unit peak was accepted and never read."""
    data = {"name": "c", "source": "a test", "matmul_flops_per_s": {"bf16": 100.0e+12}, "memory_bytes": 2**34,
            "memory_bytes_per_s": 1.0e+12, "vector_flops_per_s": 5.0e+12}
    with pytest.raises(SpecError, match=r"vector_flops_per_s: not read: .*matrix peak"):
        chip_from_dict(data, "c.yaml")
    del data["vector_flops_per_s"]
    assert chip_from_dict(data, "c.yaml").memory_bytes_per_s == 1.0e12
