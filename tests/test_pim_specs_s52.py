"""PIM devices in system specs (s52 findings):

- `op_per_byte_below: faster` on a bank-pim is refused: `system_model.runs_faster` times one op alone, and on a
  bank-PIM one op is one request on one of its channels while the batch's requests fill every channel at once, so
  the comparison kept decode attention on the NPU where the PIM ran the batch 5x faster (neupims 7.4 ms against
  40.0 ms on GPT-3 7B, 256 x 1024);
- a Logic-PIM's stacks beside a chip (a TPU) are its HBM, as beside a gpu: unset, `capacity_bytes` and
  `external_bytes_per_s` are the chip's memory and bandwidth over `count`, and the same capacity and bandwidth checks
  hold (it had taken the H100 stack's 16 GiB and 670.4 GB/s); `external_bytes_per_s` is refused as unread only
  where nothing reads it;
- a bank-pim's `tRRD_L_cycles` is refused as unread, and `banks_per_activation` other than a bank group's 4;
- a derived spec's advice offers `null` only for a key whose removal is not refused as missing.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, system_from_dict

TPU_V6E_BYTES = 32 * 2**30  # tpu-v6e chip preset: 32 GiB
TPU_V6E_BYTES_PER_S = 1.64e12  # tpu-v6e chip preset: 1.64 TB/s
FASTER_ON_PIM = {"op": "attention", "phase": "decode", "op_per_byte_below": "faster", "device": "pim"}


def _write(tmp_path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _check(path: str):
    return CliRunner().invoke(main, ["check", path])


def _tpu(stacks: int | None = None, **lp_fields: float) -> dict:
    """Four TPU v6e chips at TP 4 (per-action energy), decode attention on Logic-PIM stacks beside each when
    `stacks` is given (the auditor's tpu-lp*.yaml)."""
    data = {
        "name": "tpu-lp", "source": "test",
        "devices": {"tpu": {"kind": "chip", "count": 4, "preset": "tpu-v6e", "matmul_efficiency": 0.8,
                            "memory_efficiency": 0.85, "energy_model": "per-action", "hbm_pj_per_bit": 3.59,
                            "pj_per_flop": 0.32, "sram_pj_per_byte": 3.68, "static_w": 50}},
        "links": {"tp": "tpu-v5e-ici"},
        "parallelism": {"tp": 4, "pp": 1},
        "placement": [{"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe",
                              "ffn_residual"], "device": "tpu"}],
        "schedule": {"kind": "blocked"},
    }
    if stacks is not None:
        data["devices"]["lp"] = {"kind": "logic-pim", "count": stacks, "pj_per_flop": 0.32, **lp_fields}
        data["placement"].insert(0, {"op": "attention", "phase": "decode", "device": "lp"})
    return data


# 1. `faster` on a bank-pim


def test_faster_on_a_bank_pim_is_refused_naming_the_threshold(tmp_path) -> None:
    """neupims with its decode-attention rule given `faster` (the auditor's np-faster.yaml) had run 39.956 ms, the
    npu-only system's time, against neupims' 7.445 ms (GPT-3 7B, 256 x 1024): `archsim check` exits 2."""
    path = _write(tmp_path, "np-faster.yaml", {"name": "npf", "base": "neupims", "placement": [
        FASTER_ON_PIM, {"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe",
                               "ffn_residual"], "device": "npu"}]})
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "placement[0].op_per_byte_below", "bank-pim pim", "32 channels",
                   "give the threshold as a number")


def test_faster_on_a_bank_pim_is_refused_in_python() -> None:
    data = copy.deepcopy(dict(load_system("neupims").data))
    data["placement"] = [FASTER_ON_PIM, *data["placement"][1:]]
    with pytest.raises(SpecError) as error:
        system_from_dict(data, "np.yaml")
    assert error.value.where == "placement[0].op_per_byte_below"


def test_faster_on_a_logic_pim_still_places_by_the_models_times() -> None:
    """Duplex's rules (`faster` on its Logic-PIM, every stack working on each op) load and place as before."""
    system = load_system("duplex")
    assert any(rule.faster and system.devices[rule.device].kind == "logic-pim" for rule in system.placement)


# 2. Logic-PIM stacks beside a chip


def test_one_stack_beside_a_chip_must_carry_its_bandwidth(tmp_path) -> None:
    """One HBM3 stack (670.4 GB/s unset) cannot feed a TPU v6e's 1.64 TB/s: refused as beside a gpu (it had been
    accepted, the stack at the H100's 16 GiB and 670.4 GB/s)."""
    path = _write(tmp_path, "tpu-lp1.yaml", _tpu(1))
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.lp.external_bytes_per_s", "at least tpu's memory_bytes_per_s (1.64e+12)",
                   "got 1 x 6.704e+11")


def test_one_stack_beside_a_chip_holds_its_memory_and_keeps_its_kv_cache() -> None:
    """One stack per TPU v6e at its bandwidth: 32 GiB (was 16 GiB, the H100's), so Llama 3 8B's KV cache stays the
    TPU's 121.4 GB (it had dropped to 52.7 GB)."""
    system = system_from_dict(_tpu(1, external_bytes_per_s=TPU_V6E_BYTES_PER_S), "tpu-lp1.yaml")
    spec = system.devices["lp"].spec
    assert spec.capacity_bytes == TPU_V6E_BYTES
    assert spec.internal_bytes_per_s == pytest.approx(4 * TPU_V6E_BYTES_PER_S)
    workload = library.load_workload_spec("llama3-8b")
    with_stacks = system_model(system, workload)
    without = system_model(system_from_dict(_tpu(), "tpu-nolp.yaml"), workload)
    assert with_stacks.kv_capacity_bytes == without.kv_capacity_bytes
    assert with_stacks.kv_capacity_bytes == pytest.approx(121.4e9, rel=1e-3)


def test_four_stacks_beside_a_chip_share_its_memory() -> None:
    """4 x 8 GiB; each an HBM3 stack's 670.4 GB/s unset (4 x 670.4 GB/s carry the TPU's 1.64 TB/s), as beside a
    gpu."""
    spec = system_from_dict(_tpu(4), "tpu-lp.yaml").devices["lp"].spec
    assert spec.capacity_bytes == TPU_V6E_BYTES / 4
    assert spec.internal_bytes_per_s == pytest.approx(4 * 670.4e9)


def test_a_given_external_bandwidth_beside_a_chip_is_read(tmp_path) -> None:
    """The auditor's tpu-lp-ext.yaml had exited 2 ("read only as the interface of a gpu device's HBM"), yet the
    field sets internal_bytes_per_s (4x): now it loads and is read."""
    path = _write(tmp_path, "tpu-lp-ext.yaml", _tpu(4, external_bytes_per_s=4.1e11))
    assert _check(path).exit_code == 0
    assert load_system(path).devices["lp"].spec.internal_bytes_per_s == pytest.approx(4 * 4.1e11)


def test_stacks_beyond_a_chips_memory_are_refused(tmp_path) -> None:
    """4 x 16 GiB of stacks beside a 32 GiB TPU had been accepted."""
    path = _write(tmp_path, "big.yaml", _tpu(4, capacity_bytes=16 * 2**30))
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.lp.capacity_bytes", "tpu's memory_bytes", "32 GiB")


def test_stacks_slower_than_a_chips_memory_are_refused(tmp_path) -> None:
    path = _write(tmp_path, "slow.yaml", _tpu(4, external_bytes_per_s=1e11))
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.lp.external_bytes_per_s", "tpu's memory_bytes_per_s")


def _beside_an_npu(**lp_fields: float) -> dict:
    """neupims with Logic-PIM stacks taking its FFN (no gpu or chip whose HBM they are)."""
    data = copy.deepcopy(dict(load_system("neupims").data))
    data["devices"]["lp"] = {"kind": "logic-pim", "count": 4, "pj_per_flop": 0.5, **lp_fields}
    data["placement"] = [{"op": "ffn", "device": "lp"}, *data["placement"]]
    return data


def test_an_external_bandwidth_beside_no_gpu_or_chip_names_the_field_to_give(tmp_path) -> None:
    """It had been refused as "read only as the interface of a gpu device's HBM", though it sets the internal
    bandwidth: the message says what it is and what to give instead."""
    path = _write(tmp_path, "npu-lp.yaml", _beside_an_npu(external_bytes_per_s=5e11))
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.lp.external_bytes_per_s", "no gpu or chip", "give internal_bytes_per_s")
    spec = system_from_dict(_beside_an_npu(internal_bytes_per_s=2e12), "npu.yaml").devices["lp"].spec
    assert spec.internal_bytes_per_s == 2e12


# 3. bank-pim fields a system does not read as given


def test_trrd_l_is_refused_as_unread(tmp_path) -> None:
    """np-rrdl.yaml (tRRD_L_cycles 500) had stepped as neupims, 5.076 ms."""
    path = _write(tmp_path, "np-rrdl.yaml", {"name": "np-rrdl", "base": "neupims",
                                             "devices": {"pim": {"tRRD_L_cycles": 500}}})
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.pim.tRRD_L_cycles", "not read by a system", "remove it")


@pytest.mark.parametrize("banks", [2, 8])
def test_banks_per_activation_other_than_a_bank_group_is_refused(tmp_path, banks: int) -> None:
    path = _write(tmp_path, "np-bpa.yaml", {"name": "np-bpa", "base": "neupims",
                                            "devices": {"pim": {"banks_per_activation": banks}}})
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.pim.banks_per_activation", "expected 4", f"got {banks}")


def test_banks_per_activation_of_a_bank_group_is_accepted(tmp_path) -> None:
    path = _write(tmp_path, "np-bpa.yaml", {"name": "np-bpa", "base": "neupims",
                                            "devices": {"pim": {"banks_per_activation": 4}}})
    assert _check(path).exit_code == 0


# 4. a derived spec's advice


def test_a_required_key_from_the_base_is_not_offered_null(tmp_path) -> None:
    """np8.yaml (npu count 8, tp 8) had been told to remove devices.pim.count with `count: null`, which then
    exits 2 with "devices.pim.count: missing"."""
    path = _write(tmp_path, "np8.yaml", {"name": "np8", "base": "neupims", "devices": {"npu": {"count": 8}},
                                         "parallelism": {"tp": 8}})
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.pim.count", "expected 8", "it comes from base neupims", "set it here",
                   "missing")
    assert "null" not in result.stderr


def test_a_key_whose_default_is_refused_too_is_not_offered_null(tmp_path) -> None:
    """`base: duplex` with an H200 xPU holds the base's 670.4 GB/s stacks, too slow for it; removed, the stacks
    take an HBM3 stack's 670.4 GB/s again, so the advice is to set it."""
    path = _write(tmp_path, "dx-h200.yaml", {"name": "dx-h200", "base": "duplex",
                                             "devices": {"xpu": {"preset": "h200-sxm"}}})
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.lp.external_bytes_per_s", "set it here")
    assert "null" not in result.stderr


def test_an_optional_key_from_the_base_is_offered_null_and_the_advice_works(tmp_path) -> None:
    """`base: duplex-bank-pim` (5 x 16 GiB stacks given) with a 40 GB A100 xPU: the stacks' capacity is refused;
    removed as advised, it is the A100's DRAM over the stacks, and the spec loads."""
    over = {"name": "dbp-a100", "base": "duplex-bank-pim", "devices": {"xpu": {"preset": "a100-40gb-sxm4"}}}
    path = _write(tmp_path, "dbp-a100.yaml", over)
    result = _check(path)
    assert result.exit_code == 2
    one_line_error(result, path, "devices.pim.capacity_bytes", "`capacity_bytes: null` under devices.pim")
    over["devices"]["pim"] = {"capacity_bytes": None}
    fixed = _write(tmp_path, "dbp-a100-fixed.yaml", over)
    assert _check(fixed).exit_code == 0
