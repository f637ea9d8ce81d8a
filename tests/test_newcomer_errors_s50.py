"""A newcomer's audit (s50), each test failing before its fix:

1. an architecture whose unit prices no action (`actions_pj: {}`) said "expected a mapping action -> pJ, got dict",
   not which action its ops need;
2. a spatial loop naming an unknown unit was blamed on its rank (`loops[2].ranks.P`), not on `loops[2].spatial`;
3. a factor written `"~"` in Python said only "unexpected character '~'", where Python's residual is None;
4. `Result.dram_traffic_bytes` was a method beside the attributes latency_s, energy_pj and area_um2 (printing it
   printed a bound method);
5. the library report's HTML showed `<NA>` where cascades.csv is blank.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.arch import architecture_from_dict
from archsim.errors import SpecError
from archsim.mapping.load import mapping_from_dict
from archsim.point import run_point

FUSEMAX_ARCH = yaml.safe_load(library.find("architectures", "fusemax").read_text())
FUSEMAX_MAPPING = yaml.safe_load(library.find("mappings", "fusemax").read_text())
BERT_4K = {"workload": "bert-base", "sets": {"seq_len": 4096}}


def _refusal(call, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        call(*args, **kwargs)
    return info.value


@pytest.mark.parametrize(("part", "says"), [
    ("units.array2d", "no energy for op mac, add, max, exp, cmp (expected exactly the ops of op_cycles)"),
    ("memories.DRAM", "missing read, write (pJ per access)"),
])
def test_an_empty_energy_table_names_the_actions_it_lacks(part: str, says: str) -> None:
    data = copy.deepcopy(FUSEMAX_ARCH)
    kind, name = part.split(".")
    data[kind][name]["energy"]["actions_pj"] = {}
    error = _refusal(architecture_from_dict, data, "a.yaml")
    assert (error.where, error.message) == (f"{part}.energy.actions_pj", says)


def test_a_spatial_loop_over_an_unknown_unit_is_blamed_on_its_spatial_field(cli, tmp_path: Path) -> None:
    data = copy.deepcopy(FUSEMAX_MAPPING)
    data["groups"][0]["loops"][2]["spatial"] = "array9d"
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli("run", "--mapping", str(path), "--workload", "bert-base", expect=2).output == (
        f"error: {path}: groups[0].loops[2].spatial: unknown unit 'array9d' (units of fusemax: array2d, array1d)\n")


def test_a_temporal_loop_at_an_unknown_level_is_blamed_on_its_level_field() -> None:
    mapping = library.load_mapping_spec("fusemax")
    group = mapping.groups[0]
    loops = tuple(replace(lp, level="L9") if lp.level == "GlobalBuffer" else lp for lp in group.loops)
    error = _refusal(run_point, replace(mapping, groups=(replace(group, loops=loops),)), **BERT_4K)
    assert error.where == "groups[0].loops[1].level"
    assert error.message == "unknown level 'L9' (levels: DRAM, GlobalBuffer, RF, RF1D)"


def test_a_residual_written_as_yamls_tilde_in_python_is_told_none() -> None:
    data = copy.deepcopy(FUSEMAX_MAPPING)
    data["groups"][0]["loops"][0]["ranks"]["B"] = "~"
    error = _refusal(mapping_from_dict, data)
    assert error.where == "groups[0].loops[0].ranks.B"
    assert error.message == ("expected a positive integer, ~ (None in Python: the residual), search or an "
                             "expression, got '~' (a string: the residual is ~ in YAML, None in Python)")


def test_a_tilde_set_with_replace_is_told_none_by_run_point_too() -> None:
    """A factor changed in Python after loading reaches `run_point`'s tiling check before the resolver's: the
    same check and message (it had said only "not a factor expression: unexpected character '~'")."""
    mapping = library.load_mapping_spec("fusemax")
    group = mapping.groups[0]
    loops = tuple(replace(loop, factor="~") if i == 0 else loop for i, loop in enumerate(group.loops))
    error = _refusal(run_point, replace(mapping, groups=(replace(group, loops=loops),)), workload="bert-base")
    assert error.where == "groups[0].loops[0].ranks.B"
    assert "got '~' (a string: the residual is ~ in YAML, None in Python)" in error.message


def test_dram_traffic_is_an_attribute_as_latency_and_energy_are() -> None:
    result = run_point("fusemax", **BERT_4K)
    by_tensor = next(iter(result.traffic_bytes.values()))
    assert result.dram_traffic_bytes == sum(by_tensor.values()) > 0
    assert result.to_dict()["dram_traffic_bytes"] == result.dram_traffic_bytes == result.record().traffic_bytes


def test_the_library_reports_html_leaves_a_refused_cascades_counts_blank(cli, tmp_path: Path) -> None:
    out = tmp_path / "lib"
    cli("report", "--library", "--workload", "bert-base", "--out", str(out))
    page = (out / "index.html").read_text()
    assert "&lt;NA&gt;" not in page and "<NA>" not in page
    assert "<td></td>" in page  # as cascades.csv leaves them
