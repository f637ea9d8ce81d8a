"""Held-out checks of issue 19 (sparse prefill and KV-cache selection): a per-head pattern map is its model's
setting, so a map made for another model is refused however it is reached (`archsim sparse`, a `sparse:` sweep,
`archsim check`, the Python entry points), not only one of another shape; a `sparse:` sweep value out of its own
range is refused at load as `archsim sparse` refuses the option; TokenSelect's `budget` is the tokens its top-k
selects, at most the context."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.dse.store import read_records
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import sparse_reproduce
from archsim.systems.sparse_points import SparseMethod, method_points, system_points
from archsim.systems.system_spec import load_system
from archsim.workload_patterns import load_pattern_map, pattern_map_from_dict

GPU = "h100-sxm5"
PATTERNS = Path(__file__).resolve().parents[1] / "workloads" / "patterns"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def one_line_error(code: int, output: str) -> str:
    assert code == 2 and len(output.strip().splitlines()) == 1 and output.startswith("error: "), output
    return output


# --- a map is its model's -----------------------------------------------------------------------------------------
def test_each_shipped_map_names_the_workload_it_was_made_for() -> None:
    """MInference's map is its search on LLaMA-3-8B-Instruct-262K, run here as the `llama3-8b` workload (the
    reproduction's MINFERENCE_MODEL); DuoAttention's gates were trained on Llama-2-7B (25 %) and Llama-3-8B (50 %)
    (the maps' `source`, seqpar-sparse.md §3.1, §3.3)."""
    assert load_pattern_map("llama3-8b-262k-minference").model == "llama3-8b"
    assert load_pattern_map("llama2-7b-duo-25").model == "llama2-7b"
    assert load_pattern_map("llama3-8b-duo-50").model == "llama3-8b"
    assert load_pattern_map(sparse_reproduce.MINFERENCE_MAP).model == sparse_reproduce.MINFERENCE_MODEL
    assert all(load_pattern_map(name).model == model for model, name in sparse_reproduce.DUO_RUNS)


@pytest.mark.parametrize(("method", "workload", "patterns"), [
    ("minference", "llama2-7b", "llama3-8b-262k-minference"),  # 32 layers x 32 query heads, both
    ("duoattention", "gpt3-7b", "llama2-7b-duo-25"),  # 32 layers x 32 KV heads, both
])
def test_a_map_made_for_another_model_of_the_same_shape_exits_2_naming_model(method, workload, patterns) -> None:
    output = one_line_error(*run("sparse", "--method", method, "--gpu", GPU, "-w", workload, "--context", "4096",
                                 "--patterns", patterns))
    assert output.startswith(f"error: {PATTERNS / f'{patterns}.yaml'}: model: expected a map made for {workload}"), \
        output
    assert f"copy it and set model: {workload}" in output, output


def test_a_copy_with_the_workloads_model_runs(tmp_path: Path) -> None:
    """The way out the message gives: the copy with `model:` set runs as the map's own model would."""
    data = yaml.safe_load((PATTERNS / "llama3-8b-262k-minference.yaml").read_text())
    copy = tmp_path / "mine.yaml"
    copy.write_text(yaml.safe_dump({**data, "model": "llama2-7b"}))
    code, output = run("sparse", "--method", "minference", "--gpu", GPU, "-w", "llama2-7b", "--context", "4096",
                       "--patterns", str(copy))
    assert code == 0, output


def test_a_map_without_model_is_refused_as_missing(tmp_path: Path) -> None:
    """No silent default: a map that does not say which model it was made for is refused, by the loader (so by
    `archsim check` and every command that reads one)."""
    data = yaml.safe_load((PATTERNS / "llama3-8b-duo-50.yaml").read_text())
    del data["model"]
    with pytest.raises(SpecError) as error:
        pattern_map_from_dict(data, "m.yaml")
    assert (error.value.source, error.value.where) == ("m.yaml", "model") and "missing" in error.value.message
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    assert one_line_error(*run("check", str(path))).startswith(f"error: {path}: model: missing")


def test_the_python_entry_points_refuse_a_map_of_another_model() -> None:
    """`method_points` (MInference, DuoAttention) and `system_points` (DuoAttention with a map) apply the one rule."""
    gpu = load_gpu(GPU)
    llama2, gpt3 = library.load_workload_spec("llama2-7b"), library.load_workload_spec("gpt3-7b")
    minference = SparseMethod("minference", pattern_map=load_pattern_map("llama3-8b-262k-minference"))
    duo = SparseMethod("duoattention", pattern_map=load_pattern_map("llama2-7b-duo-25"))
    for call in (lambda: method_points(minference, llama2, gpu, [4096]),
                 lambda: method_points(duo, gpt3, gpu, [4096]),
                 lambda: system_points(duo, gpt3, load_system("lamina"), None, [4096])):
        with pytest.raises(SpecError) as error:
            call()
        assert error.value.where == "model", error.value


def sweep_file(tmp_path: Path, block: dict, axes: dict) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "sparse": {"gpu": GPU, **block}, "axes": axes}, sort_keys=False))
    return path


def test_a_sweep_whose_map_is_not_its_workloads_exits_2_at_load_and_in_check(tmp_path: Path) -> None:
    """Block workload and block map: no point could run, whatever the axes (one value each here, which the base
    check leaves to the points): refused at load, by `archsim check` too."""
    spec = sweep_file(tmp_path, {"method": "minference", "workload": "llama2-7b", "context": 4096,
                                 "patterns": "llama3-8b-262k-minference"}, {"sparse.phase": ["prefill"]})
    for args in (("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local"), ("check", str(spec))):
        output = one_line_error(*run(*args))
        assert output.startswith(f"error: {spec}: sparse.patterns: map 'llama3-8b-262k-minference' at model: "
                                 "expected a map made for llama2-7b"), output


def test_a_workload_axis_leaves_the_other_models_point_infeasible(tmp_path: Path) -> None:
    """A map that fits one workload of an axis and not another is a combination: that point is an infeasible
    record naming the map's model."""
    spec = sweep_file(tmp_path, {"method": "minference", "context": 4096, "patterns": "llama3-8b-262k-minference"},
                      {"sparse.workload": ["llama3-8b", "llama2-7b"]})
    code, output = run("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local")
    assert code == 0, output
    df = read_records(tmp_path / "s.sqlite").set_index("sparse.workload")
    assert bool(df.loc["llama3-8b", "feasible"]) and not bool(df.loc["llama2-7b", "feasible"])
    assert df.loc["llama2-7b", "reason"].startswith("sparse.patterns: map 'llama3-8b-262k-minference' at model: "
                                                    "expected a map made for llama2-7b")


# --- a sweep value out of its own range ---------------------------------------------------------------------------
@pytest.mark.parametrize(("block", "axes", "where", "message"), [
    ({"method": "duoattention"}, {"sparse.retrieval_fraction": [1.5, 2.0]}, "axes.sparse.retrieval_fraction[0]",
     "expected a fraction of KV heads in [0, 1], got 1.5"),
    ({"method": "duoattention"}, {"sparse.retrieval_fraction": [1.5]}, "axes.sparse.retrieval_fraction[0]",
     "expected a fraction of KV heads in [0, 1], got 1.5"),
    ({"method": "razorattention"}, {"sparse.retrieval_fraction": [0.5, -0.1]}, "axes.sparse.retrieval_fraction[1]",
     "expected a fraction of KV heads in [0, 1], got -0.1"),
    ({"method": "duoattention", "retrieval_fraction": 1.5}, {"sparse.phase": ["decode"]},
     "sparse.retrieval_fraction", "expected a fraction of KV heads in [0, 1], got 1.5"),
    ({"method": "tokenselect"}, {"sparse.reuse_fraction": [0.5, 1.0]}, "axes.sparse.reuse_fraction[1]",
     "expected a fraction in [0, 1), got 1.0"),
    ({"method": "flexprefill"}, {"sparse.density": [0.0]}, "axes.sparse.density[0]",
     "expected a fraction of the causal points in (0, 1], got 0.0"),
])
def test_a_sweep_value_out_of_its_range_exits_2_as_archsim_sparse_refuses_it(tmp_path, block, axes, where,
                                                                            message) -> None:
    spec = sweep_file(tmp_path, {"workload": "llama3-8b", "context": 4096, **block}, axes)
    for args in (("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local"), ("check", str(spec))):
        output = one_line_error(*run(*args))
        assert output.startswith(f"error: {spec}: {where}: {message}"), output
    assert not (tmp_path / "s.sqlite").exists()


def test_archsim_sparse_refuses_the_same_values_with_the_same_words() -> None:
    output = one_line_error(*run("sparse", "--method", "duoattention", "--gpu", GPU, "-w", "llama3-8b",
                                 "--context", "4096", "--retrieval-fraction", "1.5"))
    assert output.startswith("error: --retrieval-fraction: expected a fraction of KV heads in [0, 1], got 1.5")


def test_a_fraction_valid_alone_that_a_workload_rounds_away_stays_an_infeasible_point(tmp_path: Path) -> None:
    """0.001 of Llama-3-8B's 256 KV heads rounds to none (`kv_selection.retrieval_heads`): a refusal of the value
    with the workload, so a point's reason, not a load error."""
    spec = sweep_file(tmp_path, {"method": "duoattention", "workload": "llama3-8b", "context": 4096},
                      {"sparse.retrieval_fraction": [0.001, 0.5]})
    code, output = run("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local")
    assert code == 0 and "2 points (2 new, 0 reused), 1 feasible" in output, output


# --- TokenSelect's budget ----------------------------------------------------------------------------------------
def test_tokenselects_budget_is_at_most_the_context(tmp_path: Path) -> None:
    """`budget` is the tokens the selection takes (Quest's, at most the context): TokenSelect's default top_k 2048
    over a 1-token cache selects that 1 token (the run is dense), and over 1000 tokens 1000; at 8192 tokens its
    2048."""
    found = {}
    for context in (1, 1000, 8192):
        code, output = run("sparse", "--method", "tokenselect", "--gpu", GPU, "-w", "llama3-8b", "--context",
                           str(context), "--json")
        assert code == 0, output
        found[context] = {p["budget"] for p in yaml.safe_load(output)["points"]}
    assert found == {1: {1}, 1000: {1000}, 8192: {2048}}
    spec = sweep_file(tmp_path, {"method": "tokenselect", "workload": "llama3-8b"}, {"sparse.context": [1, 8192]})
    code, output = run("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local")
    assert code == 0, output
    assert read_records(tmp_path / "s.sqlite").set_index("sparse.context")["budget"].to_dict() == {1: 1, 8192: 2048}
