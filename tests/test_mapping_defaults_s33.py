"""A mapping fixes no model size and leaves no overlap policy to a default.

- `set:` gives tiling and algorithm choices (the library's `M0`, block-sparse's `block` and `k_b`); a model size
  (a name of `archsim.workload.PARAMS`: batch, seq_len, heads, ...) comes from the workload or `--set`. Before,
  fusemax with `set: {M0: 256, batch: 1}` passed `archsim check` and ran its architecture points at batch 1 while a
  sweep's GPU points ran at bert-base's batch 64, FuseMax 21x faster than it is.
- A group's `overlap` is required: before, a group without it was timed under `max` (everything overlapped, the
  most optimistic policy), so fusemax-arch without its overlap line ran 3x faster (0.00201 vs 0.00599 s on
  bert-base).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.mapping.load import mapping_from_dict
from archsim.workload import PARAMS

FUSEMAX = yaml.safe_load(library.find("mappings", "fusemax").read_text())


def _fusemax(**changes) -> dict:
    data = copy.deepcopy(FUSEMAX)
    data.update(changes)
    return data


@pytest.mark.parametrize("name", ["batch", "seq_len", "heads", "head_dim", "word_bytes"])
def test_a_model_size_in_set_is_refused(name: str) -> None:
    with pytest.raises(SpecError) as err:
        mapping_from_dict(_fusemax(set={"M0": 256, name: 1}), "fm-setbatch.yaml")
    assert err.value.source == "fm-setbatch.yaml" and err.value.where == f"set.{name}"
    assert "a model size comes from the workload or --set, not the mapping" in str(err.value)


def test_every_workload_param_is_refused_in_set() -> None:
    """The whole vocabulary: each name a workload may give is a model size (archsim/workload.py's docstring)."""
    for name in PARAMS:
        with pytest.raises(SpecError, match=f"set.{name}"):
            mapping_from_dict(_fusemax(set={name: 2}), "m.yaml")


def test_tiling_and_algorithm_choices_stay_accepted_in_set() -> None:
    """The names the library's mappings set: fusemax's key tile M0, MInference's block and k_b."""
    assert mapping_from_dict(_fusemax(set={"M0": 128, "block": 64, "k_b": 100}), "m.yaml").sets == {
        "M0": 128, "block": 64, "k_b": 100}


def test_archsim_check_refuses_a_model_size_in_set(tmp_path: Path, invoke) -> None:
    path = tmp_path / "fm-setbatch.yaml"
    path.write_text(yaml.safe_dump(_fusemax(set={"M0": 256, "batch": 1})))
    code, output = invoke("check", str(path))
    assert code == 2, output
    assert f"{path}: set.batch: a model size comes from the workload or --set, not the mapping" in output


def test_a_group_without_overlap_is_refused() -> None:
    data = copy.deepcopy(FUSEMAX)
    del data["groups"][0]["overlap"]
    with pytest.raises(SpecError) as err:
        mapping_from_dict(data, "fusemax-nooverlap.yaml")
    assert err.value.where == "groups[0].overlap"
    assert str(err.value).startswith("fusemax-nooverlap.yaml: groups[0].overlap: missing: sequential, max or a "
                                     "pipeline expression such as ")


def test_a_null_overlap_is_refused_as_missing() -> None:
    data = copy.deepcopy(FUSEMAX)
    data["groups"][0]["overlap"] = None
    with pytest.raises(SpecError, match=r"groups\[0\]\.overlap: missing"):
        mapping_from_dict(data, "m.yaml")


@pytest.mark.parametrize("name", library.names("mappings"))
def test_every_library_mapping_loads_and_writes_its_overlap(name: str) -> None:
    """Each group of each library mapping says its overlap (the ones that relied on the default now write `max`,
    which the default was), and every library mapping still loads with its `set:`."""
    raw = yaml.safe_load(library.find("mappings", name).read_text())
    assert all("overlap" in group for group in raw["groups"]), name
    mapping = library.load_mapping_spec(name)
    assert [g.overlap for g in mapping.groups] == [g["overlap"] for g in raw["groups"]]


def test_a_python_built_mapping_with_a_model_size_is_refused_too() -> None:
    """`dataclasses.replace` on a loaded mapping builds it again, so a model size in its `sets` is refused there as
    in a file (it had skipped the loader's check, and a sweep's GPU points ignore a mapping's sets)."""
    fusemax = library.load_mapping_spec("fusemax")
    with pytest.raises(SpecError) as error:
        dataclasses.replace(fusemax, sets={**fusemax.sets, "batch": 1})
    assert (error.value.source, error.value.where) == (fusemax.source, "set.batch")
    assert dataclasses.replace(fusemax, sets={**fusemax.sets, "M0": 128}).sets["M0"] == 128
