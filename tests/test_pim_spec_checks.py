"""Bank-PIM and Logic-PIM specs that every run refused or misread, found by an audit: each is now refused as the spec
loads (`archsim check`, `load_system`, `with_fields` and sweeps alike), or, for the PIM HBM's capacity, read.

Expected numbers from ../shared/reference/pim.md: §1.2, NeuPIMs' PIM HBM, "each memory channel ... provides 1 GB"
(32 channels, HBM_size 32 GB), a 512 MB activation buffer, tREFI 3900 cycles, 16 MACs per bank on FP16 words (a
COMP reads a 16 x 2 = 32-byte column); §2.4 and §5, Duplex's xPU, an H100 (3.35 TB/s) over five HBM3 stacks of
670.4 GB/s each.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.systems.devices import device_models
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, with_fields

GIB = 2**30
ACTIVATION_BUFFER_BYTES = 512 * 2**20  # pim.md §1.2 HBM_act_buf_size
BANK_PIM_REFUSAL = "a bank-PIM runs attention-decode-gqa GEMVs; the placement puts"


def _refused(system: str, changes: dict) -> SpecError:
    with pytest.raises(SpecError) as error:
        with_fields(load_system(system), changes)
    return error.value


def test_the_pim_hbm_holds_one_gib_per_channel_unless_its_capacity_is_given() -> None:
    """§1.2: 1 GB per channel, so 32 channels hold the artifact's 32 GB and 16 hold half; the NPU's memory is that
    less the activation buffer. A capacity_bytes the spec gives is kept whatever the channels."""
    base = load_system("neupims")
    for channels in (1, 16, 32, 64):
        models = device_models(with_fields(base, {"devices.pim.channels": channels}))
        assert models["npu"].capacity_bytes == models["pim"].capacity_bytes == channels * GIB - ACTIVATION_BUFFER_BYTES
    given = with_fields(base, {"devices.pim.channels": 16, "devices.pim.capacity_bytes": 48 * GIB})
    assert device_models(given)["npu"].capacity_bytes == 48 * GIB - ACTIVATION_BUFFER_BYTES


def test_one_channel_cannot_hold_gpt3_7b_at_tp4() -> None:
    """GPT-3 7B's 6.7 B FP16 weights over TP4 are 3.3 GB per NPU (one vocab table: tied); one channel holds 1 GiB
    less 512 MiB."""
    system = with_fields(load_system("neupims"), {"devices.pim.channels": 1})
    with pytest.raises(SpecError, match=r"3\.3 GB of weights on each npu device, which has 0\.5 GB \(512 MiB\) of "
                                         r"room, 1 GiB less its 512 MiB activation buffer"):
        system_model(system, library.load_workload_spec("gpt3-7b"))


@pytest.mark.parametrize("trfc_cycles", [3900, 5000])
def test_a_refresh_as_long_as_its_interval_is_refused(trfc_cycles: int) -> None:
    """tRFC of every tREFI (3900 cycles) is lost to refresh: tRFC >= tREFI leaves no time (a zero or negative
    bandwidth)."""
    error = _refused("neupims", {"devices.pim.tRFC_cycles": trfc_cycles})
    assert error.where == "devices.pim.tRFC_cycles"
    assert "expected below tREFI_cycles (3900)" in error.message


def test_a_row_of_no_whole_comp_columns_is_refused() -> None:
    """A COMP reads 16 MACs x 2 bytes = 32 bytes of the row: a row must be whole columns (64 bytes: two)."""
    for row_bytes in (1, 3, 16, 48):
        error = _refused("neupims", {"devices.pim.row_bytes": row_bytes})
        assert error.where == "devices.pim.row_bytes"
        assert "positive multiple of the 32-byte COMP column" in error.message
    assert with_fields(load_system("neupims"), {"devices.pim.row_bytes": 64}).devices["pim"].spec.row_elements == 32


@pytest.mark.parametrize(("changes", "expected"), [
    ({"devices.pim.count": 1}, "expected 4, devices.npu.count"),
    ({"devices.pim.count": 100}, "expected 4, devices.npu.count"),
    ({"devices.npu.count": 8}, "expected 8, devices.npu.count"),
])
def test_a_bank_pim_count_other_than_its_npus_is_refused(changes: dict, expected: str) -> None:
    """One PIM HBM per NPU (the presets' 4 and 4): the model reads the NPU's count alone."""
    error = _refused("neupims", changes)
    assert error.where == "devices.pim.count" and expected in error.message


def test_an_hbm_no_larger_than_its_activation_buffer_is_refused() -> None:
    error = _refused("neupims", {"devices.pim.capacity_bytes": 1000})
    assert error.where == "devices.pim.capacity_bytes"
    assert "above activation_buffer_bytes" in error.message


@pytest.mark.parametrize(("rule", "placed"), [
    ({"op": ["attention", "ffn"], "phase": "decode", "device": "pim"}, "ffn (decode)"),
    ({"op": "attention", "device": "pim"}, "attention (prefill)"),
])
def test_check_refuses_ops_a_bank_pim_cannot_run(cli, tmp_path: Path, rule: dict, placed: str) -> None:
    """`archsim simulate` refused them (`BankPimDevice`'s cascade check); `check` now refuses them alike."""
    npu_rule = load_system("neupims").data["placement"][1]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": "neupims", "placement": [rule, npu_rule]}))
    out = cli("check", str(path), expect=2).output
    assert f"s.yaml: placement[0]: {BANK_PIM_REFUSAL} {placed} on it" in out and len(out.splitlines()) == 1, out


def test_a_logic_pim_too_slow_to_feed_its_xpu_is_refused() -> None:
    """The five stacks are the xPU's HBM: at 1 GB/s each they cannot give the H100 its 3.35 TB/s."""
    error = _refused("duplex", {"devices.lp.external_bytes_per_s": 1e9})
    assert error.where == "devices.lp.external_bytes_per_s"
    assert "at least xpu's dram_bytes_per_s (3.35e+12)" in error.message and "got 5 x 1e+09" in error.message


def test_a_logic_pim_interface_without_a_gpu_is_refused() -> None:
    """Beside an NPU (which streams from its bank-pim HBM) nothing reads a logic-pim's external bandwidth."""
    lp = {"kind": "logic-pim", "count": 4, "pj_per_flop": 0.5, "external_bytes_per_s": 670.4e9}
    rules = load_system("neupims").data["placement"]
    error = _refused("neupims", {"devices.lp": lp, "placement": [{"op": "ffn", "device": "lp"}, *rules]})
    assert error.where == "devices.lp.external_bytes_per_s" and "no gpu" in error.message
