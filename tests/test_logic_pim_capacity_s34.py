"""A Logic-PIM's stacks are the HBM of the device beside it (Duplex's xPU, pim.md §2.4), and the model counts them
so (`system_model.held_memory_bytes`): `archsim check`, the loaders and `archsim simulate` refuse alike
(`system_checks._check_logic_pim_memory`, run by `check_system`) what the model would read otherwise.

- A logic-pim holding the weights (the decode qkv at every Op/B on it): its `count` was read as stacks per rank
  (capacity, compute, price) and as devices per node bounding tp, so a CENT-like spec of 32 stacks of 16 GiB at
  tp 32 held 32 ranks x 32 x 16 GiB (17.6 TB of KV cache) priced as 32 devices.
- Stacks holding more than the gpu they are: the model takes the smaller of the two, so Duplex's 5 stacks at
  32 GiB each (160 GiB) served with the H100's 80 GiB, the field silently not read.
"""

from __future__ import annotations

import pytest
import yaml
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, system_names, with_fields

GIB = 2**30
H100_DRAM_BYTES = 80 * GIB  # h100-sxm5 preset: 80 GiB, Duplex's 5 stacks x 16 GiB (pim.md §2.4)
ACTIVATION_RESERVE_BYTES = 512 * 2**20  # what the serving engine keeps out of a gpu's memory for activations
OPS = ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe", "ffn_residual"]
CENT_LIKE = {  # the audit's CENT-like spec: 32 PIM devices of 16 GiB, no gpu, every op on them
    "name": "cent-like", "description": "CENT-like, no gpu", "source": "pim.md 4.3",
    "devices": {"pim": {"kind": "logic-pim", "count": 32, "peak_flops_per_s": 16e12, "internal_bytes_per_s": 16e12,
                        "capacity_bytes": 16 * GIB, "internal_pj_per_bit": 0.55, "pj_per_flop": 0.32,
                        "price_per_hour": 1.0}},
    "links": {"tp": "pcie5-x16"}, "parallelism": {"tp": 32, "pp": 1},
    "placement": [{"op": OPS, "device": "pim"}], "schedule": {"kind": "blocked"}}


def write(tmp_path, data: dict) -> str:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_logic_pim_holding_the_weights_without_a_gpu_is_refused_by_check_and_simulate(tmp_path) -> None:
    """Before, `archsim check` said ok and simulate served Llama2-7B with 32 x (32 x 16 GiB - 13.5 GB / 32) =
    17,578.7 GB of KV cache (2,095,543 pages) on 32 devices' price."""
    path = write(tmp_path, CENT_LIKE)
    runner = CliRunner()
    for args in (["check", path], ["simulate", "-s", path, "-w", "llama2-7b", "--rate", "2", "--requests", "20"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, result.output
        one_line_error(result, path, "placement[0].device", "decode qkv at every Op/B on logic-pim pim",
                       "HBM of the device beside it", "expected a gpu device")


def test_a_logic_pim_holding_the_weights_beside_a_gpu_is_refused() -> None:
    """Duplex with the decode qkv sent to its stacks at every Op/B: they would hold the weights with tp bounded by
    their count (5 stacks, not the node's 8 xPUs); refused naming the rule, the xPU the expected holder."""
    data = dict(load_system("duplex").data)
    data["placement"] = [{"op": "qkv", "device": "lp"}, *data["placement"]]
    with pytest.raises(SpecError) as info:
        with_fields(load_system("duplex"), {"placement": data["placement"]})
    assert info.value.where == "placement[0].device"
    assert "expected the gpu whose HBM they are" in info.value.message


def test_a_rule_by_op_per_byte_may_still_send_small_batches_qkv_to_the_stacks() -> None:
    """Below the threshold the projection runs on the stacks, above it on the xPU, which holds the weights."""
    placement = [{"op": "qkv", "op_per_byte_below": 8, "device": "lp"}, *load_system("duplex").data["placement"]]
    model = system_model(with_fields(load_system("duplex"), {"placement": placement}),
                         library.load_workload_spec("mixtral-8x7b"))
    assert model.weight_device.name == "xpu"


def test_stacks_beyond_the_gpus_dram_are_refused_naming_the_capacity(tmp_path) -> None:
    """Duplex's 5 stacks at 32 GiB are 160 GiB, twice the H100's 80 GiB they are: before, accepted and served with
    the KV cache of 16 GiB stacks."""
    with pytest.raises(SpecError) as info:
        with_fields(load_system("duplex"), {"devices.lp.capacity_bytes": 32 * GIB})
    assert info.value.where == "devices.lp.capacity_bytes"
    assert ("at most xpu's dram_bytes (85.9 GB (80 GiB), its preset's memory)" in info.value.message
            and "got 5 x 34.4 GB (32 GiB) = 171.8 GB (160 GiB)" in info.value.message)
    data = dict(load_system("duplex").data)
    data["devices"] = {**data["devices"], "lp": {**data["devices"]["lp"], "capacity_bytes": 32 * GIB}}
    path = write(tmp_path, {**data, "name": "duplex-big-stacks"})
    result = CliRunner().invoke(main, ["check", path])
    assert result.exit_code == 2, result.output
    one_line_error(result, path, "devices.lp.capacity_bytes", "80 GiB")


def test_stacks_as_large_as_the_gpus_dram_are_read() -> None:
    """5 x 16 GiB = the H100's 80 GiB: accepted, and the KV cache is 4 ranks x (80 GiB - 512 MiB - one rank's
    weights), as without the stacks."""
    mixtral = library.load_workload_spec("mixtral-8x7b")
    model = system_model(with_fields(load_system("duplex"), {"devices.lp.capacity_bytes": 16 * GIB}), mixtral)
    assert model.kv_capacity_bytes == 4 * (H100_DRAM_BYTES - ACTIVATION_RESERVE_BYTES - model.weight_bytes_per_device)


@pytest.mark.parametrize("name", [name for name in system_names() if name.startswith("duplex")])
def test_every_shipped_duplex_preset_still_loads(name: str) -> None:
    """Each keeps its stacks within its xPU's DRAM and its weights on the xPU."""
    assert load_system(name).devices
