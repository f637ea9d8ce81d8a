"""Frozen specs are frozen all the way down, and a spec built in Python is checked as its file is (session 53).

- The mappings inside the frozen spec dataclasses (`Workload.params`, a `Cascade`'s params, ranks and tensors,
  `GPU.tensor_flops_per_s`) refuse an edit in place with a TypeError: the library's parse cache hands one object to
  every caller, and caches above it key on that object's identity, so an edit would leak into every later load and
  leave remembered results stale. A changed spec is built with `dataclasses.replace` and a new dict.
- They stay plain data: equal to a dict, and a spec pickles (Dask sends specs to workers), converts with
  `dataclasses.asdict` and dumps to JSON and YAML.
- A GPU built in Python (`dataclasses.replace` of a preset) is refused as its file would be: a negative bandwidth,
  no SMs or a fraction above 1 is a SpecError naming the field, with the loader's message; a Workload's fields
  likewise (a size `check_size` refuses, an unknown block or attention).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import gpu_from_dict, load_gpu
from archsim.spec_files import parse_yaml, read_spec_bytes
from archsim.workload import Workload

CASCADE = "attention-1pass-causal"
CASCADE_MAPPINGS = ("params", "rank_sizes", "partitions", "var_ranks", "var_leaves", "tensors", "init",
                    "reduction_init")


def _edits(mapping, key):
    """Every in-place edit of a dict, each a callable on `mapping` at `key` (an existing key)."""
    value = mapping[key]
    return {
        "setitem": lambda: mapping.__setitem__(key, value),
        "delitem": lambda: mapping.__delitem__(key),
        "update": lambda: mapping.update({key: value}),
        "pop": lambda: mapping.pop(key),
        "popitem": lambda: mapping.popitem(),
        "setdefault": lambda: mapping.setdefault("new-key", value),
        "clear": lambda: mapping.clear(),
        "ior": lambda: mapping.__ior__({key: value}),
        "init": lambda: mapping.__init__({key: value}),
    }


def _assert_read_only(mapping) -> None:
    """Each in-place edit of `mapping` raises a TypeError and leaves it as it was."""
    before = dict(mapping)
    for name, edit in _edits(mapping, next(iter(mapping))).items():
        with pytest.raises(TypeError, match="read-only"):
            edit()
        assert dict(mapping) == before, name


def test_a_loaded_workloads_params_refuse_an_edit_and_the_next_load_has_the_files_values() -> None:
    """The edit of the review's repro (head_dim doubled in place) raises; the library's next load gives the file's
    head_dim, and a changed workload is built with `replace` and a new dict."""
    workload = library.load_workload_spec("llama2-7b")
    with pytest.raises(TypeError, match="read-only"):
        workload.params["head_dim"] = 2 * workload.params["head_dim"]
    _assert_read_only(workload.params)
    again = library.load_workload_spec("llama2-7b")
    assert again.params["head_dim"] == 128
    wider = dataclasses.replace(again, params={**again.params, "head_dim": 256})
    assert wider.params["head_dim"] == 256 and library.load_workload_spec("llama2-7b").params["head_dim"] == 128


def test_a_workload_built_in_python_holds_a_copy_of_its_params() -> None:
    """A Workload keeps its own read-only copy: the caller's dict edited afterwards changes nothing."""
    params = {"batch": 1, "heads": 8}
    workload = Workload("w", "", "", params)
    params["heads"] = 16
    assert workload.params == {"batch": 1, "heads": 8}
    _assert_read_only(workload.params)


def test_every_mapping_of_a_loaded_cascade_refuses_an_edit() -> None:
    cascade = library.load_cascade_spec(CASCADE)
    for field in CASCADE_MAPPINGS:
        mapping = getattr(cascade, field)
        if mapping:
            _assert_read_only(mapping)
    with pytest.raises(TypeError, match="read-only"):
        cascade.params["tile_kv"] = 1
    assert library.load_cascade_spec(CASCADE).params == cascade.params


def test_a_gpus_tensor_rates_refuse_an_edit() -> None:
    h100 = load_gpu("h100-sxm5")
    _assert_read_only(h100.tensor_flops_per_s)
    halved = dataclasses.replace(h100, tensor_flops_per_s={k: v / 2 for k, v in h100.tensor_flops_per_s.items()})
    assert halved.tensor_flops_per_s["fp16"] == h100.tensor_flops_per_s["fp16"] / 2
    _assert_read_only(halved.tensor_flops_per_s)


def test_a_negative_bandwidth_built_in_python_is_refused_as_in_a_file() -> None:
    """The review's repro: `replace(h100, dram_bytes_per_s=-1.0)` timed a layer at -2.5e6 s. It is a SpecError at
    dram_bytes_per_s, the loader's message for the same value in the file."""
    h100 = load_gpu("h100-sxm5")
    with pytest.raises(SpecError) as built:
        dataclasses.replace(h100, dram_bytes_per_s=-1.0)
    assert built.value.where == "dram_bytes_per_s"
    data = parse_yaml(read_spec_bytes(h100.source), h100.source)
    with pytest.raises(SpecError) as loaded:
        gpu_from_dict({**data, "dram_bytes_per_s": -1.0}, h100.source)
    assert str(built.value) == str(loaded.value)


@pytest.mark.parametrize(("field", "value"), [
    ("sm_count", 0), ("sm_count", 131.5), ("clock_hz", math.nan), ("l2_bytes_per_s", math.inf),
    ("power_w", "700"), ("max_threads_per_sm", True), ("sync_mma_fraction", 1.5), ("gemm_fraction", 0.0),
    ("dram_copy_fraction", 2.0), ("tensor_flops_per_s", {"fp16": -1.0}), ("tensor_flops_per_s", {"bf16": 1e15}),
    ("tensor_flops_per_s", {"fp16": 1e15, "fp4": 2e15}), ("tensor_flops_per_s", [1e15]),
    ("compute_capability", "9"), ("compute_capability", 9.0)])
def test_a_gpu_built_in_python_is_refused_naming_the_field(field, value) -> None:
    with pytest.raises(SpecError) as refused:
        dataclasses.replace(load_gpu("h100-sxm5"), **{field: value})
    assert refused.value.where.split(".")[0] == field


def test_a_gpu_what_if_within_physical_bounds_still_builds() -> None:
    """Python what-ifs outside a file's plausible ranges stay open (a tiny SM, an engine's share of the DRAM that
    is no whole number of bytes): only what no GPU can have is refused."""
    h100 = load_gpu("h100-sxm5")
    assert dataclasses.replace(h100, smem_bytes_per_sm=100).smem_bytes_per_sm == 100
    assert dataclasses.replace(h100, dram_bytes=0.93 * h100.dram_bytes).dram_bytes == 0.93 * h100.dram_bytes


@pytest.mark.parametrize(("changes", "where"), [
    ({"params": {"heads": -8}}, "params.heads"), ({"params": {"heads": 8.5}}, "params.heads"),
    ({"params": {"seq_len": math.nan}}, "params.seq_len"), ({"params": {"batch": "8"}}, "params.batch"),
    ({"params": {}}, "params"), ({"params": [("heads", 8)]}, "params"), ({"attention": "sparse"}, "attention"),
    ({"block": "bert"}, "block"), ({"name": ""}, "name"), ({"params": {"layers": 2**60}}, "params.layers")])
def test_a_workload_built_in_python_is_refused_naming_the_field(changes, where) -> None:
    base = {"name": "w", "description": "", "source": "", "params": {"heads": 8}}
    with pytest.raises(SpecError) as refused:
        Workload(**{**base, **changes})
    assert refused.value.where == where


def test_specs_pickle_to_equal_specs_whose_mappings_stay_read_only() -> None:
    specs = (library.load_workload_spec("llama2-7b"), library.load_cascade_spec(CASCADE), load_gpu("h100-sxm5"))
    for spec in specs:
        copied = pickle.loads(pickle.dumps(spec))
        assert copied == spec
        for field in dataclasses.fields(spec):
            value = getattr(copied, field.name)
            if isinstance(value, dict) and value:
                _assert_read_only(value)


def test_specs_still_dump_as_plain_data() -> None:
    """A spec's mappings, and `dataclasses.asdict` of a spec, dump to JSON and YAML as the plain dicts they equal;
    their repr is a dict's (`model.gpu._gpu_key` keys a GPU by its repr)."""
    workload, gpu = library.load_workload_spec("llama2-7b"), load_gpu("h100-sxm5")
    for mapping in (workload.params, gpu.tensor_flops_per_s, dataclasses.asdict(workload)):
        plain = json.loads(json.dumps(dict(mapping)))
        assert json.loads(json.dumps(mapping)) == plain
        assert yaml.safe_load(yaml.safe_dump(mapping)) == plain
        assert yaml.safe_load(yaml.dump(mapping)) == plain
        assert repr(mapping) == repr(dict(mapping))
    assert json.loads(json.dumps(dataclasses.asdict(gpu)))["tensor_flops_per_s"] == dict(gpu.tensor_flops_per_s)
