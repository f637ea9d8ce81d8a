"""Architecture and mapping specs are frozen all the way down (session 53, after `test_spec_integrity_s53`).

- The dicts inside a library-loaded `Architecture` (a unit's `op_cycles`, each energy table's `actions_pj` and
  `composed_of`) and `Mapping` (`sets`; a group's `binding`, `keep` and `in_place`) refuse an edit in place with a
  TypeError (`archsim.frozen.ReadOnlyDict`): the library's parse cache hands one spec object to every caller that
  loads the file, and caches above it key on that object, so an edit would reach every later load and leave
  remembered results stale. The next load gives the file's values; a changed spec is a `dataclasses.replace`.
- Their sequences are tuples, whatever a Python caller passed (a list would be editable in place).
- They stay plain data: a spec pickles equal (Dask sends specs to workers), `dataclasses.asdict` converts it (a
  point's key hashes such a dict) and JSON and YAML dump it as a dict's.
"""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest
import yaml
from test_spec_integrity_s53 import _assert_read_only

from archsim import library
from archsim.frozen import ReadOnlyDict
from archsim.mapping.spec import Group, Loop


def _group(mapping, with_field: str) -> Group:
    """The first group of `mapping` whose `with_field` is not empty."""
    return next(g for g in mapping.groups if getattr(g, with_field))


# ---------------------------------------------------------------- architectures


def test_a_loaded_architectures_op_cycles_refuse_an_edit_and_the_next_load_has_the_files_values() -> None:
    """exp priced at 1 cycle in place (the reviewer's repro) raises; the next load gives the file's 6 cycles."""
    arch = library.load_architecture_spec("fusemax")
    unit = arch.unit("array2d")
    assert unit.op_cycles["exp"] == 6
    with pytest.raises(TypeError, match="read-only"):
        unit.op_cycles["exp"] = 1
    for u in arch.units:
        _assert_read_only(u.op_cycles)
    again = library.load_architecture_spec("fusemax")
    assert again.unit("array2d").op_cycles["exp"] == 6
    cheaper = dataclasses.replace(unit, op_cycles={**unit.op_cycles, "exp": 1})
    assert cheaper.op_cycles["exp"] == 1 and library.load_architecture_spec("fusemax").unit("array2d").op_cycles[
        "exp"] == 6


def test_a_loaded_architectures_energy_tables_refuse_an_edit() -> None:
    """Each memory's and unit's `actions_pj`, and a composite's recipe (`composed_of`), refuse an edit in place."""
    arch = library.load_architecture_spec("fusemax")
    for part in (*arch.memories, *arch.units):
        _assert_read_only(part.energy.actions_pj)
    composed = arch.unit("array2d").energy.composed_of
    assert composed
    _assert_read_only(composed)
    for recipe in composed.values():
        _assert_read_only(recipe)
    with pytest.raises(TypeError, match="read-only"):
        arch.memory("DRAM").energy.actions_pj["read"] = 0.0
    assert library.load_architecture_spec("fusemax").memory("DRAM").energy.actions_pj["read"] > 0


def test_an_architecture_built_in_python_holds_read_only_copies() -> None:
    """A unit built with a plain dict and a list keeps its own read-only dict and a tuple: the caller's dict edited
    afterwards changes nothing; a scaled architecture's tables are read-only too."""
    arch = library.load_architecture_spec("fusemax")
    unit = arch.unit("array2d")
    cycles = dict(unit.op_cycles)
    built = dataclasses.replace(unit, op_cycles=cycles, shape=[16, 16])
    cycles["exp"] = 1
    assert built.op_cycles["exp"] == 6 and built.shape == (16, 16)
    _assert_read_only(built.op_cycles)
    listed = dataclasses.replace(arch, memories=list(arch.memories), units=list(arch.units))
    assert isinstance(listed.memories, tuple) and isinstance(listed.units, tuple)
    scaled = arch.scaled_to(7)
    for part in (*scaled.memories, *scaled.units):
        _assert_read_only(part.energy.actions_pj)
    assert arch.with_changes(**{"units.array2d.op_cycles.exp": 2}).unit("array2d").op_cycles["exp"] == 2


def test_an_architecture_pickles_converts_and_dumps_as_before() -> None:
    """Pickled and back equal (its dicts still read-only), `asdict` and `to_dict` give the file's values, and the
    YAML form reads back as the same architecture."""
    arch = library.load_architecture_spec("fusemax")
    back = pickle.loads(pickle.dumps(arch))
    assert back == arch
    assert type(back.unit("array2d").op_cycles) is ReadOnlyDict
    _assert_read_only(back.unit("array2d").op_cycles)
    plain = dataclasses.asdict(arch)
    assert plain["units"][0]["op_cycles"] == dict(arch.units[0].op_cycles)
    json.dumps(plain)
    yaml.safe_dump(plain)
    data = arch.to_dict()
    assert type(data["units"]["array2d"]["op_cycles"]) is dict
    read_back = library.architecture_from_data(yaml.safe_load(yaml.safe_dump(data, sort_keys=False)))
    assert dataclasses.replace(read_back, source=arch.source) == arch


# ---------------------------------------------------------------- mappings


@pytest.mark.parametrize("field", ["binding", "keep", "in_place"])
def test_a_loaded_mappings_group_refuses_an_edit_and_the_next_load_has_the_files_values(field: str) -> None:
    """A group's binding, keep and in_place (FLAT's softmax over the score block) refuse an edit in place; the next
    load gives the file's."""
    mapping = library.load_mapping_spec("flat")
    group = _group(mapping, field)
    table = getattr(group, field)
    before = dict(table)
    key = next(iter(table))
    with pytest.raises(TypeError, match="read-only"):
        table[key] = "elsewhere" if field == "binding" else ()
    _assert_read_only(table)
    again = _group(library.load_mapping_spec("flat"), field)
    assert dict(getattr(again, field)) == before


def test_a_loaded_mappings_sets_and_sequences_refuse_an_edit() -> None:
    """`sets` (FuseMax's M0) refuses an edit in place; the groups, their loops and name lists are tuples."""
    mapping = library.load_mapping_spec("fusemax")
    _assert_read_only(mapping.sets)
    with pytest.raises(TypeError, match="read-only"):
        mapping.sets["M0"] = 128
    assert library.load_mapping_spec("fusemax").sets == {"M0": 256}
    mapping = library.load_mapping_spec("fusemax-minference-block-sparse")
    assert isinstance(mapping.groups, tuple)
    for g in mapping.groups:
        for name in ("einsums", "loops", "double_buffered", "pipelined", "spill"):
            assert isinstance(getattr(g, name), tuple), name
        for names in (*g.keep.values(), *g.in_place.values()):
            assert isinstance(names, tuple)


def test_a_group_built_in_python_holds_read_only_copies() -> None:
    """A group built with plain dicts and lists keeps its own read-only dicts and tuples: the caller's edits
    afterwards change nothing."""
    binding = {"QK": "array2d"}
    keep = {"GlobalBuffer": ["QK"]}
    group = Group(name="g", einsums=["QK"], binding=binding, loops=[Loop(rank="M", factor=None, level="DRAM")],
                  overlap="sequential", keep=keep, in_place={"QK": ["SN"]}, spill=["QK"])
    binding["QK"] = "array1d"
    keep["GlobalBuffer"].append("SN")
    assert group.binding == {"QK": "array2d"} and group.keep == {"GlobalBuffer": ("QK",)}
    assert group.in_place == {"QK": ("SN",)}
    assert isinstance(group.einsums, tuple) and isinstance(group.loops, tuple) and isinstance(group.spill, tuple)
    for table in (group.binding, group.keep, group.in_place):
        _assert_read_only(table)


def test_a_mapping_pickles_and_converts_as_before() -> None:
    """Pickled and back equal (its dicts still read-only); `asdict` gives plain values JSON and YAML dump."""
    mapping = library.load_mapping_spec("flat")
    back = pickle.loads(pickle.dumps(mapping))
    assert back == mapping
    _assert_read_only(_group(back, "in_place").in_place)
    _assert_read_only(pickle.loads(pickle.dumps(library.load_mapping_spec("fusemax"))).sets)
    plain = dataclasses.asdict(mapping)
    assert plain["groups"][0]["binding"] == dict(mapping.groups[0].binding)
    json.dumps(plain)
    yaml.safe_dump(plain)


def test_the_mappers_result_pickles() -> None:
    """What the mapper returns for a loaded mapping (its own copies of the dicts) pickles: Dask sends it back from a
    worker."""
    from archsim.point import prepare

    point = prepare("flat", workload="bert-base", sets={"seq_len": 4096})
    back = pickle.loads(pickle.dumps(point.mapping))
    assert back == point.mapping
