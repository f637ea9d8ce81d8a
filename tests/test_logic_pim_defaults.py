"""Logic-PIM fields a spec leaves unset follow what they derive from, not the H100's figures.

- `internal_bytes_per_s`: the logic die sees TSV_BANDWIDTH_FACTOR = 4x its stack's external bandwidth (pim.md §2.2),
  the stack's given `external_bytes_per_s`, not 4 x the H100's 670.4 GB/s stack;
- `capacity_bytes`: beside a gpu the stacks are its HBM (pim.md §2.4), so unset they hold its DRAM over the
  stacks, not 16 GiB each (the H100's 80 GiB over 5); beside gpus of different DRAM it must be given.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim import library
from archsim.arch.logic_pim import LogicPIMSpec
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, system_from_dict

H100_DRAM_BYTES = 80 * 2**30  # h100-sxm5 preset: 80 GiB, Duplex's 5 stacks x 16 GiB (pim.md §2.4)
H200_DRAM_BYTES = 151397597184  # h200-sxm preset: 141 GiB HBM3e


def duplex_with(xpu_preset: str, stacks: int, **lp_fields: float) -> dict:
    """The duplex preset's spec with this xPU and stack count (the preset leaves the stacks' internal bandwidth and
    capacity unset)."""
    data = copy.deepcopy(dict(load_system("duplex").data))
    data["devices"]["xpu"]["preset"] = xpu_preset
    lp = data["devices"]["lp"]
    assert "internal_bytes_per_s" not in lp and "capacity_bytes" not in lp
    lp.update(count=stacks, **lp_fields)
    return data


def test_internal_bandwidth_is_four_times_the_given_external() -> None:
    """4 x 8e11 = 3.2e12 B/s (was 4 x 670.4e9 = 2.6816e12 whatever the external bandwidth); unset, 2.6816e12."""
    assert LogicPIMSpec(pj_per_flop=0.32, external_bytes_per_s=8e11).internal_bytes_per_s == pytest.approx(3.2e12)
    assert LogicPIMSpec(pj_per_flop=0.32).internal_bytes_per_s == pytest.approx(4 * 670.4e9)
    assert LogicPIMSpec(pj_per_flop=0.32, internal_bytes_per_s=5e12).internal_bytes_per_s == 5e12  # given: kept


def test_a_given_internal_bandwidth_below_the_external_is_still_refused() -> None:
    with pytest.raises(SpecError) as error:
        LogicPIMSpec(pj_per_flop=0.32, external_bytes_per_s=8e11, internal_bytes_per_s=7e11)
    assert error.value.where == "LogicPIMSpec.internal_bytes_per_s"


def test_stacks_beside_an_h200_hold_its_dram_and_read_at_four_times_their_interface() -> None:
    """H200 xPU, 6 stacks at 8e11 B/s: each stack 141 GiB / 6 and 3.2e12 B/s internal, so the stacks no longer bind
    the xPU's memory (6 x 16 GiB = 96 GiB < 141 GiB did) and the Logic-PIM streams at 6 x 3.2e12."""
    system = system_from_dict(duplex_with("h200-sxm", 6, external_bytes_per_s=8e11), "h200.yaml")
    spec = system.devices["lp"].spec
    assert spec.capacity_bytes == pytest.approx(H200_DRAM_BYTES / 6)
    assert spec.internal_bytes_per_s == pytest.approx(4 * 8e11)
    model = system_model(system, library.load_workload_spec("mixtral-8x7b"))
    assert model.devices["lp"].internal_bytes_per_s == pytest.approx(6 * 3.2e12)
    assert model.devices["lp"].capacity_bytes == pytest.approx(H200_DRAM_BYTES)
    assert model.memory_bytes_per_device == model.weight_device.capacity_bytes  # the xPU's own memory binds
    assert model.memory_bytes_per_device > 6 * 16 * 2**30


def test_duplex_stacks_left_unset_are_the_presets_16_gib_and_2_68_tb_s() -> None:
    """The H100's 80 GiB over 5 stacks is the preset's 17179869184 B each; 4 x 670.4e9 its 2.6816e12 B/s."""
    derived = system_from_dict(duplex_with("h100-sxm5", 5), "duplex.yaml").devices["lp"].spec
    preset = load_system("duplex").devices["lp"].spec
    assert derived == preset
    assert derived.capacity_bytes == H100_DRAM_BYTES / 5 == 17179869184


def test_a_given_capacity_is_kept_beside_a_gpu() -> None:
    data = duplex_with("h200-sxm", 6, external_bytes_per_s=8e11, capacity_bytes=20 * 2**30)
    assert system_from_dict(data, "h200.yaml").devices["lp"].spec.capacity_bytes == 20 * 2**30


def test_stacks_without_a_gpu_keep_duplexs_16_gib() -> None:
    """Beside an NPU no gpu's DRAM is theirs: one stack is Duplex's, 16 GiB (pim.md §2.4)."""
    data = copy.deepcopy(dict(load_system("neupims").data))
    data["devices"]["lp"] = {"kind": "logic-pim", "count": 4, "pj_per_flop": 0.5}
    data["placement"] = [{"op": "ffn", "device": "lp"}, *data["placement"]]
    assert system_from_dict(data, "npu.yaml").devices["lp"].spec.capacity_bytes == 16 * 2**30


def test_stacks_beside_gpus_of_different_dram_must_give_their_capacity(tmp_path) -> None:
    """An H100 and an H200 beside the stacks: whose DRAM they are is not known, so `archsim check` exits 2 naming
    the field (before, the stacks took 16 GiB each and the spec was accepted)."""
    data = duplex_with("h100-sxm5", 5, external_bytes_per_s=1e12)  # 5 x 1e12 feeds the H200's 4.8e12 B/s
    data["devices"]["big"] = {"kind": "gpu", "count": 8, "preset": "h200-sxm", "attention_kernel": "FlashAttention-2"}
    data["placement"].insert(0, {"op": "attention", "phase": "prefill", "device": "big"})
    path = tmp_path / "two-gpus.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    one_line_error(result, str(path), "devices.lp.capacity_bytes", "different DRAM")


def test_a_spec_based_on_duplex_with_an_h200_follows_the_rules(tmp_path) -> None:
    """`base: duplex` with another xPU and stack bandwidth (review helper-215): the preset no longer sets the two
    fields, so the derived spec gets 4 x its external bandwidth and the H200's DRAM over the stacks."""
    spec = tmp_path / "d1.yaml"
    spec.write_text("name: d1\nbase: duplex\ndevices:\n  xpu: {preset: h200-sxm}\n"
                    "  lp: {external_bytes_per_s: 9.6e+11}\n")
    lp = load_system(spec).devices["lp"].spec
    assert lp.internal_bytes_per_s == pytest.approx(4 * 9.6e11)
    assert lp.capacity_bytes == pytest.approx(H200_DRAM_BYTES / 5)
