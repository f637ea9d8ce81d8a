"""The Python API's audit (issue s23, items 1-4): what a Python user is handed answers as the CLI does.

1. An infeasible point has no latency, energy or utilization in Python either (`Result.answered`, `to_dict`), only
   its reason, footprint and area; the model's own Result (`evaluate`, what the mapper ranks) keeps its numbers.
2. `archsim.point.bound` binds a cascade to a workload with every check `archsim analyze` applies, where
   `bind(cascade, workload.params)` checks values only.
3. Without a workload, sets that give one model size give all the cascade binds (no test default beside them).
4. A mapping factor set in Python that does not parse is a SpecError naming the loop, not a bare ParseError.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.cascade.bind import bind
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.model.result import NO_ANSWER
from archsim.point import bound, prepare, run_point, simulate_point

# FuseMax's array halved to 128 x 128 (README, "Changing an architecture"): the library mapping spreads 256 queries
# over it, so the point is infeasible (a fan-out above the unit's PEs), whatever its numbers would be
SMALL = {"units.array2d.shape": (128, 128), "units.array1d.shape": (128,)}
BERT_16K = {"workload": "bert-base", "sets": {"seq_len": 16384}}


def _small_arch():
    return library.load_architecture_spec("fusemax").with_changes(**SMALL)


def _error(call, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        call(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------- 1. an infeasible point has no answer in Python


def test_an_infeasible_run_point_has_no_latency_energy_or_utilization() -> None:
    """Before: latency 0.031875 s and utilization array2d 3.6 (a unit 3.6 times busier than it can be)."""
    arch = _small_arch()
    result = run_point("fusemax", arch=arch, **BERT_16K)
    assert not result.feasible and "which has 128 PEs along dimension 0" in result.reason
    for value in (result.latency_s, result.compute_cycles, result.energy_pj, result.dram_traffic_bytes):
        assert math.isnan(value)
    assert list(result.utilization) == [u.name for u in arch.units]  # the same keys, each NaN
    assert all(math.isnan(v) for v in (*result.utilization.values(), *result.energy_by.values(),
                                       *result.memory_s.values()))
    assert all(math.isnan(e.compute_cycles) and math.isnan(e.energy_pj) for e in result.einsums)
    # what says why it is infeasible stays: the footprint and the architecture's area
    assert result.footprint_bytes["GlobalBuffer"] > 0 and result.area_um2 == arch.area_um2()


def test_an_infeasible_result_s_dict_is_null_where_the_cli_s_json_is() -> None:
    """`to_dict()`, the JSON-ready record, leaves the answers null even of the model's own Result (`evaluate`),
    which keeps its numbers for the mapper (`model_dict`)."""
    p = prepare("fusemax", arch=_small_arch(), **BERT_16K)
    model = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    assert not model.feasible and math.isfinite(model.latency_s)  # the mapper ranks infeasible candidates by it
    for result in (model, model.answered(), run_point("fusemax", arch=_small_arch(), **BERT_16K)):
        record = result.to_dict()
        assert all(record[key] is None for key in NO_ANSWER)
        assert record["footprint_bytes"] == model.footprint_bytes and record["area_um2"] == model.area_um2
        json.dumps(record, allow_nan=False)  # JSON-ready: no NaN
    assert model.model_dict()["latency_s"] == model.latency_s


def test_an_infeasible_point_s_store_row_is_unchanged() -> None:
    """`record().row()` (what a sweep stores) of the answered Result is the model Result's: every number NaN."""
    p = prepare("fusemax", arch=_small_arch(), **BERT_16K)
    model = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    rows = [model.record().row(), model.answered().record().row()]
    assert list(rows[0]) == list(rows[1])
    for key, value in rows[0].items():
        other = rows[1][key]
        assert (math.isnan(value) and math.isnan(other)) if isinstance(value, float) else value == other


def test_the_event_model_s_infeasible_run_has_no_answer() -> None:
    _, run = simulate_point("fusemax", arch=_small_arch(), **BERT_16K)
    assert not run.result.feasible and run.timeline == ()
    assert math.isnan(run.result.latency_s) and math.isnan(run.result.utilization["array2d"])


def test_a_feasible_result_is_its_own_answer() -> None:
    result = run_point("fusemax", **BERT_16K)
    assert result.feasible and result.answered() is result and result.to_dict() == result.model_dict()


# ---------------------------------------------------------------- 2. bound: the checked way to bind from Python


def test_bound_binds_the_readme_example_at_the_workload_s_sizes() -> None:
    """Llama-3-8B: 32 heads of 128 (hidden 4096 / 32, its config), 8 K/V heads; the key tile M0 128 as set."""
    binding, analysis = bound("attention-1pass-causal-gqa", "llama3-8b", {"M0": 128})
    assert (binding.rank_sizes["E"], binding.rank_sizes["M0"], binding.params["kv_heads"]) == (128, 128, 8)
    assert analysis.rank_sizes["E"] == 128
    loaded = bound(library.load_cascade_spec("attention-1pass-causal-gqa"), library.load_workload_spec("llama3-8b"),
                   {"M0": 128})
    assert loaded[0] is binding  # names and loaded specs are the same objects (archsim.library)


@pytest.mark.parametrize(("cascade", "workload", "sets", "where"), [
    # tile_kv at its test default 4 under 8K tokens: 31x the QK ops of 128-key tiles
    ("attention-1pass-causal-gqa", "llama3-8b", {}, "params.tile_kv"),
    # 8 K/V heads counted as 32 on a multi-head cascade
    ("attention-1pass", "llama3-8b", {"M0": 128}, "params.kv_heads"),
    # the GPT block's GELU FFN for Llama's SwiGLU one
    ("ffn", "llama3-8b", {}, "block"),
])
def test_bound_refuses_what_archsim_analyze_refuses(cascade: str, workload: str, sets: dict, where: str) -> None:
    assert _error(bound, cascade, workload, sets).where == where
    bind(library.load_cascade_spec(cascade), library.load_workload_spec(workload).params, sets)  # unchecked: binds


def test_bound_refuses_a_workload_without_a_model_size() -> None:
    """A workload without head_dim fell back to the cascade's head_dim 8 through `bind(cascade, w.params)`."""
    llama = library.load_workload_spec("llama3-8b")
    without = replace(llama, params={k: v for k, v in llama.params.items() if k != "head_dim"})
    assert _error(bound, "attention-1pass-causal-gqa", without, {"M0": 128}).where == "params.head_dim"


def test_bound_names_an_argument_of_another_type() -> None:
    assert (_error(bound, "attention-1pass", 42).where, _error(bound, "attention-1pass", None, [1]).where) == (
        "workload", "sets")


# ---------------------------------------------------------------- 3. sets without a workload give every model size


def test_some_model_sizes_without_a_workload_are_refused(cli) -> None:
    """seq_len 4096, batch 64 and heads 12 ran over head_dim 8 (0.00554 s, not BERT's 0.0297 s), exit 0."""
    sets = {"seq_len": 4096, "batch": 64, "heads": 12}
    error = _error(run_point, "fusemax", sets=sets)
    assert (error.source, error.where) == ("sets", "head_dim")  # the Python argument; the CLI's below
    assert "head_dim 8, word_bytes 2" in error.message and "head_dim=N, word_bytes=N" in error.message
    out = cli("run", "-m", "fusemax", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], expect=2).output
    assert out.startswith("error: --set: head_dim: missing: ") and out.count("\n") == 1


def test_every_model_size_set_is_the_workload_s_point() -> None:
    """BERT-base's sizes (workloads/bert-base.yaml: batch 64, heads 12, head_dim 64, 2-byte words) given as sets."""
    sets = {"seq_len": 4096, "batch": 64, "heads": 12, "head_dim": 64, "word_bytes": 2}
    assert run_point("fusemax", sets=sets).latency_s == run_point("fusemax", workload="bert-base",
                                                                  sets={"seq_len": 4096}).latency_s


def test_no_model_size_keeps_the_test_sizes(cli) -> None:
    """README: a cascade's params are small test sizes used when no workload is given (attention-1pass.yaml:
    batch 2, heads 2, seq_len 16, head_dim 8); a tile set alone keeps them. FuseMax's 256-key tiles do not fit
    them, which the error says, naming every model size to set."""
    binding, _ = bound("attention-1pass", sets={"M0": 8})
    assert (binding.rank_sizes["B"], binding.rank_sizes["H"], binding.rank_sizes["P"], binding.rank_sizes["E"],
            binding.rank_sizes["M1"]) == (2, 2, 16, 8, 2)
    out = cli("run", "--mapping", "fusemax", expect=2).output
    assert "--set each size it binds still unset: batch=N, heads=N, seq_len=N, head_dim=N, word_bytes=N (M0=256" in out


# ---------------------------------------------------------------- 4. errors from Python-built mappings


@pytest.mark.parametrize("factor", ["garbage(", "2**8"])
def test_a_factor_set_in_python_that_does_not_parse_names_its_loop(factor: str) -> None:
    fusemax = library.load_mapping_spec("fusemax")
    group = fusemax.groups[0]
    loops = tuple(replace(lp, factor=factor) if lp.is_spatial and lp.rank == "P" else lp for lp in group.loops)
    error = _error(run_point, replace(fusemax, groups=(replace(group, loops=loops),)), **BERT_16K)
    assert (error.source, error.where) == (fusemax.source, "groups[0].loops[2].ranks.P")
    assert error.message.startswith("not a factor expression: expected a value but found") and factor in error.message
