"""A `chip` device priced per action (archsim.systems.chip_device, system_spec): the gpu device's energy fields and
rule (`energy_model: per-action` with hbm_pj_per_bit, pj_per_flop, sram_pj_per_byte and static_w), so an attention
pool of chips pays for what it reads and computes, not a power over the whole decode time. The `attacc` preset's
PIM is priced so, with the artifact's prices (../shared/reference/pim.md §5: bank-PIM access 0.55 pJ/b, ALU 0.32 pJ
per op, SRAM 0.0034 pJ per byte in PIM; static power 0, the reference giving none). Also: chip presets are listed
and checked by name, and `archsim sparse --batch` on a system without a bank-PIM or Logic-PIM device says so.

Hand numbers: LLaMA-65B (workloads/llama-65b.yaml) has 80 layers of 64 heads (MHA) of 128, fp16 (2 bytes); each of
attacc's 8 AttAcc devices holds 8 of every request's heads (head-level partitioning). Llama-3-8B has 32 heads and 8
KV heads of 128, bf16.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.chip import load_chip
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, system_from_dict, with_fields
from archsim.systems.system_types import OP_KINDS, board_power_w

PIM_PJ_PER_BIT, PIM_PJ_PER_FLOP, PIM_SRAM_PJ_PER_BYTE = 0.55, 0.32, 0.0034  # pim.md §5, the attacc preset's
PIM_DEVICES, LAYERS = 8, 80
REQUESTS, CONTEXT = 32, 1024
HEADS_PER_DEVICE, HEAD_DIM, WORD_BYTES = 64 // PIM_DEVICES, 128, 2
PRICES = {"energy_model": "per-action", "hbm_pj_per_bit": 1.0, "pj_per_flop": 0.5, "sram_pj_per_byte": 2.0,
          "static_w": 0.0}  # the test's own prices
TPU_V4 = {"preset": "tpu-v4", "matmul_efficiency": 0.6, "memory_efficiency": 0.8}


def _system(device: dict) -> dict:
    return {"name": "tpu-test", "source": "a test", "devices": {"tpu": {"kind": "chip", "count": 1, **device}},
            "parallelism": {"tp": 1, "pp": 1}, "placement": [{"op": list(OP_KINDS), "device": "tpu"}],
            "schedule": {"kind": "blocked"}}


def _pim_bytes_per_layer() -> int:
    """One AttAcc device's decode attention over the batch, one layer: K and V of its heads at every key, and q in
    and the output out (one token each)."""
    kv = REQUESTS * 2 * CONTEXT * HEADS_PER_DEVICE * HEAD_DIM * WORD_BYTES
    return kv + REQUESTS * 2 * HEADS_PER_DEVICE * HEAD_DIM * WORD_BYTES


def _iteration_j(fields: dict | None = None) -> tuple[float, float]:
    system = load_system("attacc") if fields is None else with_fields(load_system("attacc"), fields)
    cost = system_model(system, library.load_workload_spec("llama-65b")).iteration(Batch((), (CONTEXT,) * REQUESTS))
    return cost.energy_j, cost.time_s


def test_attacc_prices_its_pim_per_action_with_the_artifacts_prices() -> None:
    pim = load_system("attacc").devices["pim"]
    assert (pim.energy.hbm_pj_per_bit, pim.energy.pj_per_flop, pim.energy.sram_pj_per_byte) == (
        PIM_PJ_PER_BIT, PIM_PJ_PER_FLOP, PIM_SRAM_PJ_PER_BYTE)
    assert pim.static_w == 0.0  # the reference gives none
    assert board_power_w(pim) is None  # not board-powered: no power drawn over the decode time
    assert load_chip("attacc-pim").power_w is None  # the derived streaming power is gone


def test_an_attacc_devices_attention_costs_its_bytes_and_flops_at_the_prices() -> None:
    """bytes x (8 x 0.55 + 0.0034) pJ + the QK and PV MACs (2 FLOPs each: 2 x 2 x keys x heads x head_dim per
    request) x 0.32 pJ; the softmax's few FLOPs per score (Op.flops counts each non-MAC op one) are left out of the
    hand form, 5e-4 of it."""
    model = system_model(load_system("attacc"), library.load_workload_spec("llama-65b"))
    flops = REQUESTS * 2 * 2 * CONTEXT * HEADS_PER_DEVICE * HEAD_DIM
    expected_pj = _pim_bytes_per_layer() * (8 * PIM_PJ_PER_BIT + PIM_SRAM_PJ_PER_BYTE) + flops * PIM_PJ_PER_FLOP
    expected_j = expected_pj * 1e-12
    assert model.attention_cost([CONTEXT] * REQUESTS).energy_j == pytest.approx(expected_j, rel=1e-3)


def test_the_iteration_pays_the_pims_actions_and_its_static_power_over_the_wall_time() -> None:
    """LLaMA-65B, 32 requests at 1024: doubling the PIM's access price adds its bytes at 8 x 0.55 pJ a byte on 8
    devices over 80 layers, exactly; a static power s adds 8 x s over the iteration's time. The PIM no longer
    draws 142.4 W for the whole 16.8 ms (19 J): attacc's iteration takes less energy than dgx-base's."""
    base_j, time_s = _iteration_j()
    dearer_j, dearer_s = _iteration_j({"devices.pim.hbm_pj_per_bit": 2 * PIM_PJ_PER_BIT})
    assert dearer_s == time_s
    added_j = LAYERS * PIM_DEVICES * _pim_bytes_per_layer() * 8 * PIM_PJ_PER_BIT * 1e-12
    assert dearer_j - base_j == pytest.approx(added_j, rel=1e-9)
    static_j, _ = _iteration_j({"devices.pim.static_w": 5.0})
    assert static_j - base_j == pytest.approx(PIM_DEVICES * 5.0 * time_s, rel=1e-9)
    dgx = system_model(load_system("dgx-base"), library.load_workload_spec("llama-65b"))
    assert base_j < dgx.iteration(Batch((), (CONTEXT,) * REQUESTS)).energy_j


def test_a_chip_without_power_priced_per_action_has_a_known_energy() -> None:
    """tpu-v4 has no power figure (its energy unknown at tdp); priced per action, Llama-3-8B's decode attention at
    4096 keys is its K and V (8 KV heads) and q and output (32 heads) at 8 x 1.0 + 2.0 pJ a byte, and 2 x 2 x 4096 x
    32 x 128 MAC FLOPs at 0.5 pJ (the softmax's FLOPs left out, 1.3e-3 of it); static power is charged over the
    wall time of a blocked iteration."""
    model = system_model(system_from_dict(_system({**TPU_V4, **PRICES})), library.load_workload_spec("llama3-8b"))
    cost = model.devices["tpu"].cost([model.attention("decode", 4096)])
    moved = 2 * 4096 * 8 * 128 * 2 + 2 * 32 * 128 * 2
    assert cost.energy_j == pytest.approx((moved * 10.0 + 2 * 2 * 4096 * 32 * 128 * 0.5) * 1e-12, rel=2e-3)
    batch = Batch(prefill_tokens=(128,), decode_context_tokens=(300, 700))
    dynamic = model.iteration(batch)
    static = system_model(system_from_dict(_system({**TPU_V4, **PRICES, "static_w": 10.0})),
                          library.load_workload_spec("llama3-8b")).iteration(batch)
    assert math.isfinite(dynamic.energy_j)
    assert static.energy_j - dynamic.energy_j == pytest.approx(10.0 * dynamic.time_s, rel=1e-9)


@pytest.mark.parametrize(("device", "where", "fragment"), [
    ({**TPU_V4, **PRICES, "static_w": None}, "devices.tpu.static_w", "missing: energy_model per-action"),
    ({**TPU_V4, "pj_per_flop": 0.5}, "devices.tpu.pj_per_flop", "read only with energy_model: per-action"),
    ({**TPU_V4, **PRICES, "energy_model": "board"}, "devices.tpu.energy_model", "expected one of tdp, per-action"),
    ({**TPU_V4, **PRICES, "hbm_pj_per_bit": 3590.0}, "devices.tpu.hbm_pj_per_bit", "a value in fJ?"),
    # a chip preset without power_w (tpu-v4's) bounds the static power by what any accelerator draws (s37)
    ({**TPU_V4, **PRICES, "static_w": 1.0e12}, "devices.tpu.static_w", "expected at most 25000 W"),
])
def test_a_chips_energy_fields_follow_the_gpus_rule(device: dict, where: str, fragment: str) -> None:
    device = {key: value for key, value in device.items() if value is not None}
    with pytest.raises(SpecError) as error:
        system_from_dict(_system(device), "sys.yaml")
    assert (error.value.source, error.value.where) == ("sys.yaml", where)
    assert fragment in error.value.message


def test_a_chips_static_power_is_at_most_its_power(tmp_path: Path) -> None:
    chip = tmp_path / "chip.yaml"
    chip.write_text(yaml.safe_dump({"name": "c", "source": "a test", "matmul_flops_per_s": {"bf16": 100.0e+12},
                                    "memory_bytes": 2**34, "memory_bytes_per_s": 1.0e+12, "power_w": 200.0}))
    device = {**TPU_V4, **PRICES, "preset": str(chip), "static_w": 250.0}
    with pytest.raises(SpecError) as error:
        system_from_dict(_system(device), str(tmp_path / "sys.yaml"))
    assert error.value.where == "devices.tpu.static_w" and "at most the board power of c, 200 W" in error.value.message
    priced = system_from_dict(_system({**device, "static_w": 50.0}), str(tmp_path / "sys.yaml")).devices["tpu"]
    assert board_power_w(priced) is None and priced.static_w == 50.0


def test_chip_presets_are_listed_and_checked_by_name() -> None:
    listing = json.loads(CliRunner().invoke(main, ["list", "--json"]).output)
    assert {"attacc-pim", "tpu-v6e"} <= set(listing["chips"])
    result = CliRunner().invoke(main, ["check", "attacc-pim", "tpu-v6e"])
    assert result.exit_code == 0, result.output
    assert "chip attacc-pim" in result.output and "chip tpu-v6e" in result.output


def test_a_batch_on_a_system_without_a_pim_device_names_the_kinds_it_lacks() -> None:
    """attacc's pool is a chip named `pim`: 'no PIM device' read as false; the kinds that time a batch are named."""
    result = CliRunner().invoke(main, ["sparse", "--method", "quest", "--gpu", "a100-80gb-sxm4", "-w", "llama-65b",
                                       "--context", "2K", "--budget", "512", "--system", "attacc", "--batch", "16"])
    assert result.exit_code == 2
    assert "attacc has no bank-PIM or Logic-PIM device to time a batch on" in result.output
