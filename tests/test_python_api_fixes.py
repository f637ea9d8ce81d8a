"""What fuzzing the Python API found next: simulate's `buffers=0` failing with an IndexError and `max_tasks` of 0,
-1, True or 1.5 taken silently; `workload=42` failing with an AttributeError; numpy numbers refused as sizes; the
mapper trying (and choosing) factors that do not cover a rank searched by two loops and no residual; and a
prepared point sharing its dicts with the caller's mapping and with later calls."""

from __future__ import annotations

import math
import operator
from dataclasses import replace

import numpy as np
import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.mapping.mapper import score, search
from archsim.mapping.spec import Mapping
from archsim.model.analytical import evaluate
from archsim.model.event import simulate
from archsim.point import prepare, run_point, simulate_point
from archsim.workload import check_size

BERT = {"workload": "bert-base", "sets": {"seq_len": 1024}}


def fresh(name: str = "fusemax") -> Mapping:
    """A library mapping as a new object with its own `sets` dict (the library's spec is shared)."""
    spec = library.load_mapping_spec(name)
    return replace(spec, sets=dict(spec.sets))


def with_p(spec: Mapping, dram: int | str | None, buffer: int | str | None) -> Mapping:
    """FuseMax's mapping with the P factors of its DRAM and GlobalBuffer loops set."""
    factors = {"DRAM": dram, "GlobalBuffer": buffer}
    group = spec.groups[0]
    loops = tuple(replace(lp, factor=factors[lp.level]) if lp.rank == "P" and lp.level in factors else lp
                  for lp in group.loops)
    return replace(spec, groups=(replace(group, loops=loops),))


# --- simulate's options ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argument", ["max_tasks", "buffers"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5, 2.0, "4", None])
def test_simulate_refuses_a_count_that_is_not_a_whole_number_from_1(argument: str, value) -> None:
    p = prepare("fusemax", **BERT)
    with pytest.raises(SpecError) as error:
        simulate(p.binding, p.analysis, p.arch, p.mapping, **{argument: value})
    assert (error.value.source, error.value.where) == ("<python>", f"simulate.{argument}")
    assert "expected a whole number >= 1" in error.value.message


def test_simulate_point_passes_the_options_on() -> None:
    p = prepare("fusemax", **BERT)
    alone = simulate(p.binding, p.analysis, p.arch, p.mapping, max_tasks=np.int64(50), buffers=1)
    _, run = simulate_point("fusemax", **BERT, max_tasks=50, buffers=1)
    assert (run.result.latency_s, len(run.timeline)) == (alone.result.latency_s, len(alone.timeline))
    with pytest.raises(SpecError, match=r"simulate\.buffers: expected a whole number >= 1, got 0"):
        simulate_point("fusemax", **BERT, buffers=0)


# --- prepare's arguments --------------------------------------------------------------------------------------------

WRONG = [42, ["bert-base"], library.load_architecture_spec("fusemax")]


@pytest.mark.parametrize(("argument", "value"), [(argument, value) for argument in ("mapping", "cascade", "workload",
                                                                                    "sets") for value in WRONG]
                         + [("arch", 42), ("arch", ["fusemax"]), ("arch", library.load_workload_spec("bert-base"))])
def test_an_argument_of_the_wrong_type_is_refused_by_name(argument: str, value) -> None:
    given = {"mapping": fresh(), **BERT, argument: value}
    with pytest.raises(SpecError) as error:
        run_point(**given)
    assert (error.value.source, error.value.where) == ("<python>", argument)
    assert f"got {type(value).__name__} " in error.value.message


def test_a_workload_path_is_loaded_as_a_name_is() -> None:
    path = library.find("workloads", "bert-base")
    assert run_point("fusemax", workload=path, sets={"seq_len": 1024}) == run_point("fusemax", **BERT)


def test_an_empty_name_is_not_taken_for_none() -> None:
    """cascade='' ran the mapping's own cascade."""
    with pytest.raises(SpecError, match="not a cascade in the library"):
        run_point("fusemax", cascade="", **BERT)


# --- numpy numbers as sizes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.int64(4096), np.int32(4096), np.float32(4096.0), np.float64(4096.0)])
def test_a_numpy_number_is_a_size(value) -> None:
    assert run_point("fusemax", workload="bert-base", sets={"seq_len": value}) == run_point(
        "fusemax", workload="bert-base", sets={"seq_len": 4096})
    checked = check_size("seq_len", value, "<python>", "seq_len")
    assert (checked, type(checked)) == (4096.0, float)


def test_a_numpy_bool_is_refused_whatever_ran_before() -> None:
    """np.True_ == 1 and hashes as 1, but is no size: refused as True is, even after batch 1 was bound."""
    run_point("fusemax", workload="bert-base", sets={"batch": 1, "seq_len": 4096})
    with pytest.raises(SpecError, match=r"batch: expected a number, got np\.True_"):
        run_point("fusemax", workload="bert-base", sets={"batch": np.True_, "seq_len": 4096})


# --- the mapper on a rank searched twice with no residual -----------------------------------------------------------

SEQ = {"workload": "bert-base", "sets": {"seq_len": 65536}}  # P = 65536: 256 rows per tile, 256 tiles to split


def test_two_search_loops_without_a_residual_choose_what_brute_force_does() -> None:
    chosen = prepare(with_p(fresh(), "search", "search"), **SEQ).mapping.groups[0].loops
    factors = {lp.level: lp.factor for lp in chosen if lp.rank == "P" and lp.level}
    assert factors["DRAM"] * factors["GlobalBuffer"] == 256
    brute = min((score(run_point(with_p(fresh(), a, 256 // a), **SEQ)), a) for a in range(1, 257) if 256 % a == 0)
    assert (brute[1], 256 // brute[1]) == (factors["DRAM"], factors["GlobalBuffer"]) == (2, 128)
    assert score(run_point(with_p(fresh(), "search", "search"), **SEQ)) == brute[0]


def test_the_mapper_tries_only_factors_that_cover_the_rank() -> None:
    spec = with_p(fresh(), "search", "search")
    p = prepare(spec, **SEQ)
    tried = []

    def scored(trial: Mapping, group: int):
        tried.append(math.prod(lp.factor for lp in trial.groups[group].loops if lp.rank == "P" and lp.level))
        return evaluate(p.binding, p.analysis, p.arch, trial, only_group=group)

    search(p.binding, p.arch, spec, scored)
    assert sorted(tried) == [256] * 9  # each divisor of 256 once at DRAM, the rest in the buffer


# --- what a prepared point shares -----------------------------------------------------------------------------------

def test_the_mapped_mapping_shares_no_dict_with_the_callers() -> None:
    spec = fresh()
    mapped = prepare(spec, **BERT).mapping
    assert mapped.sets is not spec.sets and mapped.groups[0].binding is not spec.groups[0].binding
    assert mapped.groups[0].keep is not spec.groups[0].keep
    for table in (mapped.sets, mapped.groups[0].binding, mapped.groups[0].keep, mapped.groups[0].in_place):
        with pytest.raises(TypeError):
            operator.setitem(table, "M0", 32)
    assert spec.sets == {"M0": 256} and mapped.sets == {"M0": 256}


def test_a_prepared_analysis_and_binding_are_read_only() -> None:
    """prepare hands the same Binding and Analysis to every call of equal inputs: writing into one changed what later
    calls evaluated."""
    p = prepare(fresh(), **BERT)
    writes = [(p.analysis.ops["QK"], "mac", 1), (p.analysis.ops, "QK", {}), (p.analysis.points, "QK", 1),
              (p.analysis.rank_sizes, "P", 1), (p.binding.params, "seq_len", 1), (p.binding.rank_sizes, "P", 1)]
    for table, key, value in writes:
        with pytest.raises(TypeError):
            operator.setitem(table, key, value)
    assert p.analysis.ops["QK"]["mac"] > 1 and p.binding.rank_sizes["P"] == 1024
