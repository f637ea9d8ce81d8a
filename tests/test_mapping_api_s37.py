"""An auditor's Python-API findings on mappings and bind (s37): a mapping edited with `dataclasses.replace` (as the
README shows) raised a TypeError where its file form is a SpecError; errors on an edited loop named the rank the
file had; a binding mistake was reported against `overlap`; a rank size given in bind's `params` was silently
swapped for the cascade's test tile.

Shapes come from the shipped specs: `mappings/fusemax.yaml` has loops (flattened, one per rank) B, H, P, M1 at DRAM
(0-3), P: search, E, F at GlobalBuffer (4-6, written as `loops[1]`), P: M0 and M0: M0 on array2d (7-8,
`loops[2]`) and P: M0 on array1d (9, `loops[3]`); `einsum/attention-1pass.yaml` splits M into [M1, M0]."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import yaml

from archsim import library
from archsim.cascade.bind import bind
from archsim.errors import SpecError
from archsim.mapping.load import mapping_from_dict
from archsim.mapping.spec import SEARCH, Loop
from archsim.point import run_point

FUSEMAX = library.load_mapping_spec("fusemax")
BASE = yaml.safe_load(library.find("mappings", "fusemax").read_text())
BERT_4K = {"workload": "bert-base", "sets": {"seq_len": 4096}}


def _edited_loop(change) -> object:
    """FuseMax's mapping with its GlobalBuffer P loop (flat index 4) and its array2d P loop (7) passed to
    `change(loop, spatial)`."""
    group = FUSEMAX.groups[0]
    loops = tuple(change(lp, lp.is_spatial) if i in (4, 7) else lp for i, lp in enumerate(group.loops))
    return replace(FUSEMAX, groups=(replace(group, loops=loops),))


def _refusal(mapping) -> SpecError:
    with pytest.raises(SpecError) as info:
        run_point(mapping, **BERT_4K)
    return info.value


# ------------------------------------------------------------------------------------------ 1. loader's checks
@pytest.mark.parametrize("factor", [None, SEARCH])
def test_a_spatial_loop_without_a_fixed_factor_is_refused_as_its_file_would_be(factor) -> None:
    """Before: `TypeError: unsupported operand type(s) for *: 'int' and 'NoneType'` in the mapper."""
    def spatial_only(lp: Loop, spatial: bool) -> Loop:
        return replace(lp, factor=factor) if spatial else lp

    error = _refusal(_edited_loop(spatial_only))
    assert error.where == "groups[0].loops[2].ranks.P"
    assert error.message == "a spatial loop needs a fixed factor (the fan-out it uses)"


@pytest.mark.parametrize(("overlap", "fragment"), [(None, "missing: sequential, max or a pipeline expression"),
                                                   (3, "expected sequential, max or a pipeline expression, got 3")])
def test_an_overlap_that_is_no_string_is_refused_as_its_file_would_be(overlap, fragment) -> None:
    """Before: `TypeError: expected string or bytes-like object, got 'NoneType'` in the tokenizer."""
    error = _refusal(replace(FUSEMAX, groups=(replace(FUSEMAX.groups[0], overlap=overlap),)))
    assert error.where == "groups[0].overlap" and error.message.startswith(fragment), str(error)


def test_a_factor_expression_that_does_not_parse_is_refused_as_its_file_would_be() -> None:
    def bad_expression(lp: Loop, spatial: bool) -> Loop:
        return lp if spatial else replace(lp, factor="M0 *")

    error = _refusal(_edited_loop(bad_expression))
    assert error.where == "groups[0].loops[1].ranks.P" and error.message.startswith("not a factor expression")


# ------------------------------------------------------------------------------------------ 3. paths and wording
def test_an_edited_loop_is_named_by_the_rank_it_has() -> None:
    """Before: `groups[0].loops[1].ranks.P: unknown rank 'Z'`, the rank the file had."""
    def rank_z(lp: Loop, spatial: bool) -> Loop:
        return lp if spatial else replace(lp, rank="Z")

    error = _refusal(_edited_loop(rank_z))
    assert error.where == "groups[0].loops[1].ranks.Z" and error.message.startswith("unknown rank 'Z'")


def test_a_bad_factor_is_told_the_residual_as_yaml_and_python_write_it() -> None:
    """Before: `None (the residual)` only, which a YAML file cannot write."""
    def zero(lp: Loop, spatial: bool) -> Loop:
        return lp if spatial else replace(lp, factor=0)

    error = _refusal(_edited_loop(zero))
    assert error.where == "groups[0].loops[1].ranks.P"
    assert error.message == ("expected a positive integer, ~ (None in Python: the residual), search or an expression, "
                             "got 0")


# ------------------------------------------------------------------------------------------ 4. binding first
def _file_edited(edit) -> SpecError:
    data = copy.deepcopy(BASE)
    edit(data["groups"][0]["binding"])
    with pytest.raises(SpecError) as info:
        run_point(mapping_from_dict(data, "m.yaml"), **BERT_4K)
    return info.value


def test_an_einsum_the_cascade_lacks_is_blamed_on_the_binding_not_the_overlap() -> None:
    """Before: `groups[0].overlap: leaves out FOO: their compute time would not count`."""
    error = _file_edited(lambda binding: binding["array1d"].append("FOO"))
    assert error.where == "groups[0].binding.array1d"
    assert error.message.startswith("'FOO' is not an Einsum of attention-1pass (known: QK, LM, ")


def test_an_einsum_left_out_of_the_binding_is_bound_by_no_group() -> None:
    """Before: `groups[0].overlap: 'AV' is not an Einsum of this group`."""
    error = _file_edited(lambda binding: binding["array1d"].remove("AV"))
    assert str(error).startswith("m.yaml: groups: AV of attention-1pass bound by no group")


# ------------------------------------------------------------------------------------------ 5. set values
@pytest.mark.parametrize("value", [-1, 0, "128"])
def test_a_set_value_edited_in_python_is_refused_as_its_file_would_be(value: object) -> None:
    """Before: accepted by `replace`, then -1 was told "expected a number of at least 0" by bind, and 0 "expected a
    positive integer size"."""
    with pytest.raises(SpecError) as info:
        replace(FUSEMAX, sets={"M0": value})
    assert info.value.where == "set.M0"
    assert info.value.message == f"expected a positive finite number, got {value!r}"


def test_a_numpy_set_value_is_the_number_it_is() -> None:
    """A Python caller's np.int64(256) ran before the set values were checked on replace, and runs still (review
    helper-448); a negative one is refused as -1 is."""
    import numpy as np

    assert replace(FUSEMAX, sets={"M0": np.int64(256)}).sets["M0"] == 256
    with pytest.raises(SpecError, match="expected a positive finite number"):
        replace(FUSEMAX, sets={"M0": np.int64(-1)})


# ------------------------------------------------------------------------------------------ 2. bind's params
@pytest.mark.parametrize("params", [{"seq_len": 32, "M0": 8}, {"M0": 0}, {"M0": 2.5}, {"P": 0}, {"B": 0}])
def test_a_rank_size_in_binds_params_is_refused_naming_where_it_goes(params: dict) -> None:
    """Before: accepted, then ignored: `bind(c, {"seq_len": 32, "M0": 8})` bound M0 to the cascade's test tile 4."""
    rank = next(name for name in params if name != "seq_len")
    with pytest.raises(SpecError) as info:
        bind(library.load_cascade_spec("attention-1pass"), params)
    assert info.value.source == "<params>" and info.value.where == f"params.{rank}"
    assert info.value.message.startswith(f"{rank} is a rank of attention-1pass, not a parameter: give its size as "
                                         f"an override (bind(cascade, params, {{'{rank}': N}})")


def test_a_rank_size_given_as_an_override_is_bound() -> None:
    """M = seq_len = 32 split into [M1, M0] with M0 = 8: M1 = 32 / 8 = 4."""
    binding = bind(library.load_cascade_spec("attention-1pass"), {"seq_len": 32}, {"M0": 8})
    assert (binding.rank_sizes["M0"], binding.rank_sizes["M1"]) == (8, 4)
