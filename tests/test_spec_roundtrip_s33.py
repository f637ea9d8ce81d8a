"""Specs written out and read back (a round-trip audit, session 33): what a written form loads into is what was
written, or the load is refused.

- An architecture's memories are a chain, outermost first: the model takes a level's parent as the level listed
  before it (`archsim.model.plan`). A per-PE memory (a register file in every PE) listed before a shared one
  would make the shared buffer a child of the register file: flat with DRAM, RF, RF1D, GlobalBuffer ran 256K tokens
  in 877 s instead of 1478 s, its spilled QK block sent to "the level above" the buffer, a 6-byte register file.
  `yaml.safe_dump(arch.to_dict())` (keys sorted) writes that order whenever the names do not sort into level order.
- `System.with_options` (`--tp`) makes another system: it is not equal to the spec without the option.
- A `SlowestHop` (a ring step over several links) is no alpha-beta link: `link_to_dict` refuses it rather than
  write a link ~5 % faster at 1 MB.
- `Architecture.scaled_to` prices a composite action (exp as 6 MACs) from its scaled parts, as the loader does, so a
  scaled design written out and read back is the same design to the last bit.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from archsim import library
from archsim.arch import architecture_from_dict
from archsim.arch.energy import energy_scale
from archsim.dse.system_points import system_content
from archsim.errors import SpecError
from archsim.systems.links import Link, link_from_dict, link_to_dict, slowest_hop
from archsim.systems.system_spec import load_system


def _flat_with_order(order: list[str]) -> dict[str, Any]:
    data = library.load_architecture_spec("flat").to_dict()
    data["memories"] = {name: data["memories"][name] for name in order}
    return data


# ------------------------------------------------------------------------------------------------ level order
@pytest.mark.parametrize("order", [["DRAM", "RF", "RF1D", "GlobalBuffer"], ["DRAM", "RF", "GlobalBuffer", "RF1D"]])
def test_a_per_pe_memory_above_a_shared_one_is_refused(order: list[str]) -> None:
    with pytest.raises(SpecError) as error:
        architecture_from_dict(_flat_with_order(order), "flat_reordered.yaml")
    assert error.value.source == "flat_reordered.yaml"
    assert error.value.where == "memories.RF"
    assert "a per-PE memory cannot hold a shared level below it" in error.value.message
    assert "GlobalBuffer" in error.value.message and "list memories outermost first" in error.value.message


def test_a_per_pe_memory_given_as_instances_above_a_shared_one_is_refused() -> None:
    """`with_changes(**{"memories.RF.instances": n})` replaces `per_pe_of` by a number: n > 1 instances is per PE."""
    data = _flat_with_order(["DRAM", "RF", "GlobalBuffer", "RF1D"])
    del data["memories"]["RF"]["per_pe_of"]
    data["memories"]["RF"]["instances"] = 65536
    with pytest.raises(SpecError, match=r"memories\.RF: a per-PE memory"):
        architecture_from_dict(data, "flat_reordered.yaml")


def test_a_sorted_dump_that_reorders_the_levels_is_refused() -> None:
    """The audit's case: GlobalBuffer renamed ZBuf sorts after RF and RF1D in `yaml.safe_dump`'s default order."""
    data = library.load_architecture_spec("fusemax").to_dict()
    data["memories"] = {("ZBuf" if k == "GlobalBuffer" else k): v for k, v in data["memories"].items()}
    with pytest.raises(SpecError, match=r"memories\.RF: a per-PE memory cannot hold a shared level below it \(ZBuf"):
        architecture_from_dict(yaml.safe_load(yaml.safe_dump(data)), "zbuf_sorted.yaml")
    ordered = architecture_from_dict(yaml.safe_load(yaml.safe_dump(data, sort_keys=False)), "zbuf_ordered.yaml")
    assert [m.name for m in ordered.memories] == ["DRAM", "ZBuf", "RF", "RF1D"]


@pytest.mark.parametrize("name", ["flat", "fusemax", "unfused"])
def test_the_presets_in_level_order_still_load_and_round_trip(name: str) -> None:
    """Sibling register files (RF of array2d, then RF1D of array1d, larger) stay allowed: only per-PE above shared
    is refused, not a level larger than the one listed before it."""
    arch = library.load_architecture_spec(name)
    back = architecture_from_dict(yaml.safe_load(yaml.safe_dump(arch.to_dict(), sort_keys=False)), arch.source)
    assert back == arch
    # the library's names sort into level order, so a plain (sorted) dump of a preset loads too
    assert architecture_from_dict(yaml.safe_load(yaml.safe_dump(arch.to_dict())), arch.source).memories \
        == arch.memories


# ------------------------------------------------------------------------------------------------ system options
def test_a_system_with_options_is_another_system() -> None:
    preset = load_system("neupims")
    assert preset.parallelism.tp == 4  # neupims.yaml: parallelism tp 4
    eight = preset.with_options(tp=8)
    assert eight != preset
    assert eight == load_system("neupims").with_options(tp=8)
    assert system_content(eight) != system_content(preset)  # a sweep keys the two apart
    assert system_content(eight)["options"] == {"tp": 8}


# ------------------------------------------------------------------------------------------------ links
def test_link_to_dict_refuses_a_slowest_hop() -> None:
    """NVLink-like (1 us, 450 GB/s) and a low-latency slow hop (0.1 us, 50 GB/s): neither is the slowest in both, so
    the step is a SlowestHop, max(alpha + n / beta) per hop; as a plain link (1 us, 50 GB/s) 1 MB would take
    1e-6 + 1e6 / 50e9 = 21.0 us, against the hops' max(1e-6 + 1e6 / 450e9, 1e-7 + 1e6 / 50e9) = 20.1 us."""
    fast = Link("fast", "", "<test>", "hand", 1e-6, 450e9)
    slow = Link("slow", "", "<test>", "hand", 1e-7, 50e9)
    hop = slowest_hop([fast, slow])
    assert hop.transfer_s(1e6) == pytest.approx(1e-7 + 1e6 / 50e9)
    with pytest.raises(TypeError, match=r"SlowestHop 'fast \+ slow'"):
        link_to_dict(hop)
    assert link_from_dict(link_to_dict(fast), "<test>") == fast  # a plain link still round-trips


# ------------------------------------------------------------------------------------------------ node scaling
@pytest.mark.parametrize("node_nm", [7, 16, 32])
def test_a_scaled_composite_is_priced_from_its_scaled_parts(node_nm: float) -> None:
    """fusemax prices exp as {mac: 6} on both arrays and gelu as a chain of its array1d's ops: scaled, each is the
    loader's sum of count x scaled part (at 7 nm array1d's gelu had been 15.485762381999997, the parts' sum
    15.485762382); array2d's exp at 7 nm is 6 x 17.1645 x 0.094, the 45 -> 7 nm energy factor."""
    arch = library.load_architecture_spec("fusemax").scaled_to(node_nm)
    for unit in arch.units:
        energy = unit.energy
        for action, recipe in energy.composed_of.items():
            assert energy.actions_pj[action] == sum(count * energy.actions_pj[part] for part, count in recipe.items())
    assert arch.unit("array2d").energy.actions_pj["mac"] == 17.1645 * energy_scale(45, node_nm)
    assert library.load_architecture_spec("fusemax").scaled_to(7).unit("array2d").energy.actions_pj["exp"] \
        == pytest.approx(6 * 17.1645 * 0.094)


@pytest.mark.parametrize("name", ["flat", "fusemax", "unfused"])
@pytest.mark.parametrize("node_nm", [7, 16, 32])
def test_a_scaled_design_written_out_reads_back_the_same(name: str, node_nm: float) -> None:
    arch = library.load_architecture_spec(name).scaled_to(node_nm)
    back = architecture_from_dict(yaml.safe_load(yaml.safe_dump(arch.to_dict(), sort_keys=False)), arch.source)
    assert back.units == arch.units
    assert back.memories == arch.memories
