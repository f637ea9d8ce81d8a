"""Architecture specs: the presets load with the FuseMax artifact's numbers, area is the sum of its parts, energy
and area scale with the Stillmaker-Baas factors, sweeps change fields by dotted path, and bad specs are refused
with a SpecError naming the file, the YAML path and what was expected.

Expected numbers come from the artifact's Accelergy tables (../shared/reference/fusemax/accelergy/*.yaml, 45 nm)
and ../shared/reference/fusemax.md §1.3 and §3.3, written out by hand here."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from archsim import library
from archsim.arch import Architecture, EnergyTable, architecture_from_dict, load_architecture
from archsim.arch.energy import area_scale, energy_scale
from archsim.errors import SpecError

PRESETS = Path(__file__).resolve().parents[1] / "archsim" / "arch" / "presets"


def _preset_dict(name: str) -> dict[str, Any]:
    return yaml.safe_load((PRESETS / f"{name}.yaml").read_text())


# ------------------------------------------------------------------------------------------------ presets
def test_library_lists_the_presets() -> None:
    assert library.names("architectures") == ["flat", "fusemax", "unfused"]


@pytest.mark.parametrize("name", ["fusemax", "flat", "unfused"])
def test_every_preset_loads(name: str) -> None:
    arch = library.load_architecture_spec(name)
    assert arch == library.load_architecture_spec(name)
    assert arch.name == name
    assert arch.citation and arch.source.endswith(f"{name}.yaml")
    assert arch.clock_hz == 940e6  # 940 MHz (artifact arch YAMLs, global_cycle_seconds 1.0638e-9)
    assert arch.word_bytes == 2
    assert [m.name for m in arch.memories] == ["DRAM", "GlobalBuffer", "RF", "RF1D"]
    dram = arch.memory("DRAM")
    assert dram.capacity_bytes is None
    assert dram.bandwidth_bytes_per_s == 400 * 2**30  # 400 GiB/s
    assert dram.access_bits == 64
    assert dram.energy.actions_pj["read"] == pytest.approx(3.9 * 64)  # HBM2 3.9 pJ/bit x 64 b = 249.6 pJ
    assert arch.memory("GlobalBuffer").access_bits == 4096
    assert arch.memory("RF").instances == 256 * 256
    assert arch.unit("array2d").lanes == 65536
    assert arch.unit("array1d").lanes == 256
    for u in arch.units:
        assert set(u.energy.actions_pj) == set(u.op_cycles)
        assert u.energy.actions_pj["mac"] == 17.1645  # 16-b FP MAC, Aladdin via Accelergy (ERT mac compute)
        assert u.energy.node_nm == 45


def test_fusemax_prices_exp_as_six_macs() -> None:
    arch = library.load_architecture_spec("fusemax")
    assert arch.memory("GlobalBuffer").capacity_bytes == 16 * 2**20
    for unit in arch.units:
        assert unit.op_cycles["exp"] == 6
        assert unit.energy.actions_pj["exp"] == pytest.approx(6 * 17.1645)
    # SLN = exp(QK - LM) on the 2-D array: 6 (exp) + 1 (subtract) = the artifact's 7 cycles per element.
    array2d = arch.unit("array2d")
    assert array2d.op_cycles["exp"] + array2d.op_cycles["add"] == 7
    assert set(array2d.op_cycles) == {"mac", "add", "max", "exp", "cmp"}
    assert set(arch.unit("array1d").op_cycles) == {"mac", "mul", "add", "max", "div", "exp", "gelu", "cmp"}
    # GELU = mul + exp + add + div in sequence: 1 + 6 + 1 + 1 cycles, priced as its parts.
    gelu = arch.unit("array1d")
    assert gelu.op_cycles["gelu"] == 9
    assert gelu.energy.actions_pj["gelu"] == pytest.approx(sum(gelu.energy.actions_pj[op]
                                                               for op in ("mul", "exp", "add", "div")))


def test_flat_has_an_exp_unit_and_unfused_the_same_hardware() -> None:
    flat, unfused = library.load_architecture_spec("flat"), library.load_architecture_spec("unfused")
    assert flat.memory("GlobalBuffer").capacity_bytes == 32 * 2**20
    assert set(flat.unit("array2d").op_cycles) == {"mac", "add"}
    assert flat.unit("array1d").op_cycles["exp"] == 1
    assert flat.unit("array1d").energy.actions_pj["exp"] == 94.6475  # 1d-flat-ERT exponentiatial compute
    assert flat.memories == unfused.memories
    assert flat.units == unfused.units


def test_area_is_the_sum_of_its_parts() -> None:
    # 1d/2d-fusemax-ART.yaml (um^2): PE = mac + max (add is counted inside mac), lane = mac + divide,
    # global buffer 94176255.9664 for the 32 MiB SRAM of that stale row (fusemax-area.md s2), so half of it for
    # FuseMax's 16 MiB, reg files 4255.9342 per 2-D PE and per 1-D lane, DRAM 0.
    pe, lane, rf = 1545.0 + 49.28944, 1545.0 + 23740.9375, 4255.9342
    expected = 65536 * pe + 256 * lane + 94176255.9664 / 2 + 65536 * rf + 256 * rf
    assert library.load_architecture_spec("fusemax").area_um2() == pytest.approx(expected, rel=1e-12)
    # 1d/2d-flat-ART.yaml: PE = mac, lane = max + mac + exp + divide, reg files 1838.14968 and 2145.41936; the
    # ART's buffer row is a 32 MiB SRAM, as FLAT's buffer.
    lane = 49.28944 + 1545.0 + 8240.0 + 23740.9375
    expected = 65536 * 1545.0 + 256 * lane + 94176255.9664 + 65536 * 1838.14968 + 256 * 2145.41936
    assert library.load_architecture_spec("flat").area_um2() == pytest.approx(expected, rel=1e-12)


def test_unknown_component_names_the_known_ones() -> None:
    arch = library.load_architecture_spec("fusemax")
    with pytest.raises(SpecError, match=r"memories\.L2: no such memory in fusemax \(known: DRAM, GlobalBuffer"):
        arch.memory("L2")
    with pytest.raises(SpecError, match=r"units\.tensor: no such unit in fusemax \(known: array2d, array1d\)"):
        arch.unit("tensor")


# ------------------------------------------------------------------------------------------------ scaling
def test_energy_scales_45_to_7_nm_by_stillmaker_baas() -> None:
    table = EnergyTable(45, "2d-fusemax-ERT.yaml", {"mac": 17.16, "add": 8.34})
    at7 = table.scaled_to(7)
    assert at7.actions_pj["mac"] == pytest.approx(17.16 * 0.094, abs=1e-9)  # 7 nm factor 0.094
    assert at7.actions_pj["add"] == pytest.approx(8.34 * 0.094, abs=1e-9)
    assert at7.node_nm == 7 and "45->7 nm" in at7.source
    assert table.scaled_to(45) is table


@pytest.mark.parametrize(("node_nm", "factor"), [
    (130, 3.07), (90, 1.90), (65, 1.24), (45, 1.0), (32, 0.66), (20, 0.22), (16, 0.174), (14, 0.139),
    (10, 0.118), (7, 0.094),
])
def test_energy_factors_are_exact_at_table_nodes(node_nm: float, factor: float) -> None:
    assert energy_scale(45, node_nm) == pytest.approx(factor, rel=1e-12)
    assert energy_scale(node_nm, 45) == pytest.approx(1 / factor, rel=1e-12)


def test_energy_between_nodes_is_a_power_law_of_its_neighbours() -> None:
    # 28 nm lies between 32 nm (0.66) and 20 nm (0.22): factor = 0.66 * (28/32)^k with k = ln(0.66/0.22)/ln(32/20).
    k = math.log(0.66 / 0.22) / math.log(32 / 20)
    assert energy_scale(45, 28) == pytest.approx(0.66 * (28 / 32) ** k, rel=1e-12)
    assert energy_scale(16, 7) == pytest.approx(0.094 / 0.174, rel=1e-12)
    with pytest.raises(ValueError, match=r"outside the tabulated range 7\.\.130 nm"):
        energy_scale(45, 5)


def test_buffer_area_scales_with_capacity_only_where_declared() -> None:
    arch = library.load_architecture_spec("fusemax")
    quarter = arch.with_changes(**{"memories.GlobalBuffer.capacity_bytes": 2**22})
    assert arch.area_um2() - quarter.area_um2() == pytest.approx(0.75 * 94176255.9664 / 2, rel=1e-12)
    assert quarter.memory("GlobalBuffer").energy == arch.memory("GlobalBuffer").energy  # per-access energy kept
    fixed = arch.with_changes(**{"memories.RF.capacity_bytes": 64})  # the RF's area is not declared scalable
    assert fixed.area_um2() == pytest.approx(arch.area_um2(), rel=1e-12)


def test_architecture_scales_energy_and_area() -> None:
    arch = library.load_architecture_spec("fusemax")
    at7 = arch.scaled_to(7)
    assert at7.node_nm == 7
    assert at7.unit("array2d").energy.actions_pj["mac"] == pytest.approx(17.1645 * 0.094, abs=1e-9)
    assert at7.unit("array2d").energy.actions_pj["exp"] == pytest.approx(6 * 17.1645 * 0.094, abs=1e-9)
    assert at7.memory("DRAM") == arch.memory("DRAM")  # another chip: its energy does not follow the logic node
    assert at7.memory("GlobalBuffer").energy.actions_pj["read"] == pytest.approx(
        arch.memory("GlobalBuffer").energy.actions_pj["read"] * 0.094, rel=1e-12)
    assert at7.area_um2() == pytest.approx(arch.area_um2() * 0.059, rel=1e-12)  # area factor 45->7 nm
    assert at7.memory("GlobalBuffer").capacity_bytes == arch.memory("GlobalBuffer").capacity_bytes
    assert arch.scaled_to(16).area_um2() == pytest.approx(arch.area_um2() * 0.19, rel=1e-12)
    assert area_scale(16, 7) == pytest.approx(0.059 / 0.19, rel=1e-12)
    with pytest.raises(ValueError, match="area scaling to 65 nm"):
        arch.scaled_to(65)


# ------------------------------------------------------------------------------------------------ sweeps
def test_with_changes_replaces_fields_by_dotted_path() -> None:
    arch = library.load_architecture_spec("fusemax")
    changed = arch.with_changes(clock_hz=1e9, **{
        "units.array2d.shape": (128, 128),
        "memories.RF.instances": 128 * 128,  # one register file per PE
        "memories.GlobalBuffer.capacity_bytes": 2**24 * 2,
        "units.array2d.energy.actions_pj.mac": 1.5,
    })
    assert changed.clock_hz == 1e9
    assert changed.unit("array2d").shape == (128, 128) and changed.unit("array2d").lanes == 16384
    assert changed.memory("GlobalBuffer").capacity_bytes == 2**25
    assert changed.unit("array2d").energy.actions_pj["exp"] == pytest.approx(6 * 1.5)  # exp = 6 MACs follows
    assert changed.unit("array1d") == arch.unit("array1d")
    assert arch.unit("array2d").shape == (256, 256) and arch.clock_hz == 940e6  # the original is untouched
    # 49152 fewer PEs and register files; the buffer doubles, and so does its area (94176255.9664 at
    # area_capacity_bytes, 32 MiB)
    assert changed.area_um2() == pytest.approx(
        arch.area_um2() - (65536 - 16384) * (1594.28944 + 4255.9342) + 94176255.9664 / 2, rel=1e-12)


def test_with_changes_is_validated() -> None:
    arch = library.load_architecture_spec("fusemax")
    with pytest.raises(SpecError, match=r"memories\.L2\.capacity_bytes: no 'L2' at memories \(known: DRAM"):
        arch.with_changes(**{"memories.L2.capacity_bytes": 1})
    with pytest.raises(SpecError, match=r"memories\.GlobalBuffer\.capacity_bytes: expected a capacity in bytes"):
        arch.with_changes(**{"memories.GlobalBuffer.capacity_bytes": -1})
    with pytest.raises(SpecError, match=r"units\.array2d\.energy\.actions_pj: no energy for op div"):
        arch.with_changes(**{"units.array2d.op_cycles.div": 1})


def test_to_dict_round_trips() -> None:
    for name in library.names("architectures"):
        arch = library.load_architecture_spec(name)
        assert architecture_from_dict(arch.to_dict(), arch.source) == arch


# ------------------------------------------------------------------------------------------------ bad input
def _drop(path: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[key]
        del d[last]
    return edit


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[key]
        d[last] = value
    return edit


BAD = {
    # name: (edit of fusemax.yaml, YAML path named, fragment of the message)
    "missing clock": (_drop("clock_hz"), "clock_hz", "missing"),
    "clock not a number": (_set("clock_hz", "fast"), "clock_hz", "expected a clock frequency in Hz"),
    "unknown top key": (_set("voltage", 0.8), "voltage", "unknown key (expected one of name, description"),
    "negative capacity": (_set("memories.GlobalBuffer.capacity_bytes", -16), "memories.GlobalBuffer.capacity_bytes",
                          "expected a capacity in bytes, or null for unbounded (a positive integer), got -16"),
    "zero bandwidth": (_set("memories.DRAM.bandwidth_bytes_per_s", 0), "memories.DRAM.bandwidth_bytes_per_s",
                       "positive number"),
    "memories as a list": (_set("memories", [{"name": "DRAM"}]), "memories", "expected a non-empty mapping"),
    "memory without write energy": (_drop("memories.RF.energy.actions_pj.write"), "memories.RF.energy.actions_pj",
                                    "missing write"),
    "memory with a compute action": (_set("memories.RF.energy.actions_pj.mac", 1.0),
                                     "memories.RF.energy.actions_pj.mac", "not a memory action"),
    "energy without source": (_drop("units.array1d.energy.source"), "units.array1d.energy.source", "missing"),
    "unknown op": (_set("units.array2d.op_cycles.fma", 1), "units.array2d.op_cycles.fma", "unknown op 'fma'"),
    "fractional cycles": (_set("units.array2d.op_cycles.max", 0.5), "units.array2d.op_cycles.max",
                          "expected cycles per op (a positive integer)"),
    "energy for an op without cycles": (_set("units.array2d.energy.actions_pj.div", 36.25),
                                        "units.array2d.energy.actions_pj.div", "energy for an op not in op_cycles"),
    "cycles for an op without energy": (_drop("units.array2d.energy.actions_pj.max"),
                                        "units.array2d.energy.actions_pj", "no energy for op max"),
    "composite of an unknown action": (_set("units.array2d.energy.actions_pj.exp", {"fma": 6}),
                                       "units.array2d.energy.actions_pj.exp.fma",
                                       "a composite must count plain actions of this table"),
    "bad shape": (_set("units.array1d.shape", [256, 0]), "units.array1d.shape[1]", "expected a fan-out"),
    "negative area": (_set("units.array1d.area_um2", -1.0), "units.array1d.area_um2", "non-negative number"),
    "area scaling without a capacity": (_set("memories.DRAM.area_capacity_bytes", 1024),
                                        "memories.DRAM.area_capacity_bytes", "unbounded capacity"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_spec_names_the_field(case: str) -> None:
    edit, where, fragment = BAD[case]
    data = copy.deepcopy(_preset_dict("fusemax"))
    edit(data)
    with pytest.raises(SpecError) as info:
        architecture_from_dict(data, "bad.yaml")
    assert (info.value.source, info.value.where) == ("bad.yaml", where)
    assert fragment in info.value.message


def test_bad_file_is_named(tmp_path: Path) -> None:
    data = _preset_dict("flat")
    data["memories"]["GlobalBuffer"]["capacity_bytes"] = -1
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}: memories\.GlobalBuffer\.capacity_bytes: expected"):
        load_architecture(path)
    with pytest.raises(SpecError, match=r"not an architecture in the library \(known: flat, fusemax, unfused\)"):
        library.load_architecture_spec("tpu")


def test_load_from_mapping_and_custom_ops() -> None:
    data = _preset_dict("flat")
    data["units"]["array1d"]["op_cycles"]["softplus"] = 4
    data["units"]["array1d"]["energy"]["actions_pj"]["softplus"] = {"exp": 1, "add": 1}
    with pytest.raises(SpecError, match="unknown op 'softplus'"):
        load_architecture(data)
    from archsim.arch.load import OP_TYPES

    arch = load_architecture(data, source="custom", op_types=OP_TYPES | {"softplus"})
    assert isinstance(arch, Architecture) and arch.source == "custom"
    assert arch.unit("array1d").energy.actions_pj["softplus"] == pytest.approx(94.6475 + 8.3395)


def test_an_energy_table_at_another_node_is_refused() -> None:
    """An energy table at another node than the architecture's would be summed unscaled: refused naming the field;
    a whole design scaled (`scaled_to`) stays consistent."""
    arch = library.load_architecture_spec("fusemax")
    with pytest.raises(SpecError, match=r"units\.array2d\.energy\.node_nm: 7 nm, but the architecture is at 45 nm"):
        arch.with_changes(**{"units.array2d.energy.node_nm": 7})
    assert arch.scaled_to(7).with_changes(clock_hz=1e9).node_nm == 7


def test_register_files_follow_a_resized_array() -> None:
    """A PE's register file is `per_pe_of` its array: resizing the array alone resizes them (area, leakage), and
    the batch columns agree with `with_changes`; a number given for `instances` replaces the link."""
    from archsim.model.arch_columns import with_numbers

    arch = library.load_architecture_spec("fusemax")
    assert arch.memory("RF").per_pe_of == "array2d" and arch.memory("RF1D").per_pe_of == "array1d"
    resized = arch.with_changes(**{"units.array2d.shape": (128, 128), "units.array1d.shape": (128,)})
    assert resized.memory("RF").instances == 128 * 128 and resized.memory("RF1D").instances == 128
    explicit = arch.with_changes(**{"units.array2d.shape": (128, 128), "units.array1d.shape": (128,),
                                    "memories.RF.instances": 128 * 128, "memories.RF1D.instances": 128})
    assert resized.area_um2() == explicit.area_um2() < arch.area_um2()
    assert explicit.memory("RF").per_pe_of is None  # a number replaces the link
    cols = with_numbers(arch, {"units.array2d.shape": [[128, 128], [512, 512]], "units.array1d.shape": [[128], [512]]})
    big = arch.with_changes(**{"units.array2d.shape": (512, 512), "units.array1d.shape": (512,)})
    assert list(cols.area) == pytest.approx([resized.area_um2(), big.area_um2()], rel=1e-12)
    assert [cols.numbers(i).levels[2].leak_pj_per_cycle for i in (0, 1)] == pytest.approx(
        [0.000431 * 128 * 128, 0.000431 * 512 * 512], rel=1e-12)
    data = arch.to_dict()
    data["memories"]["RF"]["instances"] = 65536
    with pytest.raises(SpecError, match=r"memories\.RF\.instances: give instances or per_pe_of, not both"):
        architecture_from_dict(data)
    data["memories"]["RF"].pop("instances")
    data["memories"]["RF"]["per_pe_of"] = "array3d"
    with pytest.raises(SpecError, match=r"memories\.RF\.per_pe_of: expected the name of a unit .*array2d, array1d"):
        architecture_from_dict(data)


def test_the_outermost_level_is_no_memory_per_pe() -> None:
    """DRAM with per_pe_of: array1d was taken as 256 off-chip memories, one per lane."""
    with pytest.raises(SpecError, match=r"memories\.DRAM\.per_pe_of: the outermost level is off chip"):
        library.load_architecture_spec("fusemax").with_changes(**{"memories.DRAM.per_pe_of": "array1d"})
