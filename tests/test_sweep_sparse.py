"""Sweeps over sparse attention on a GPU (a `sparse:` block and `sparse.<field>` axes, `archsim.dse.sparse_spec`):
the one record schema every target writes, with `latency_s` the method's time in the point's phase as `archsim
sparse --json` computes it (the expected numbers are that command's, the model under test being the same
`sparse_points`; what is tested is that the sweep times the point it names), a point beyond the GPU's memory
infeasible with its reason, a store resumed (also after it and its spec moved), bad input refused with exit 2 naming
the sweep file and YAML path, and an export with a parallel sweep's columns plus the sparse extras.
Llama-3-8B (32 layers, 8 KV heads of 128: 128 KiB of fp16 KV per token) on an H100 SXM5 (80 GB)."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.points import base_identity, expand, load_base, point_key
from archsim.dse.sparse_spec import SPARSE_METRICS
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import read_records
from archsim.gpu import params
from archsim.gpu.load import load_gpu
from archsim.record import METRICS

GPU, MODEL = "h100-sxm5", "llama3-8b"
BUDGETS, CONTEXTS = [512, 2048], [32768, 131072]
QUEST = {"name": "quest-small", "sparse": {"method": "quest", "gpu": GPU, "workload": MODEL},
         "axes": {"sparse.budget": BUDGETS, "sparse.context": CONTEXTS}}
GENERIC = ("key", "target_kind", "target", "feasible", "reason", *METRICS, "constraint_ok")


@pytest.fixture(scope="session")
def sweep(write_yaml, invoke):
    """Sweep `data` written as `<name>.yaml` in `folder` into `<name>.sqlite` there: (exit code, output, store)."""
    def run(folder: Path, data: dict, name: str = "s") -> tuple[int, str, Path]:
        spec, db = write_yaml(folder / f"{name}.yaml", data), folder / f"{name}.sqlite"
        code, out = invoke("sweep", str(spec), "--db", str(db), "--local")
        return code, out, db

    return run


@pytest.fixture(scope="module")
def quest(tmp_path_factory, sweep, invoke):
    folder = tmp_path_factory.mktemp("sparse")
    first = sweep(folder, QUEST, "quest")
    again = invoke("sweep", str(folder / "quest.yaml"), "--db", str(first[2]), "--local")
    return folder, first, again


def test_a_2x2_quest_sweep_stores_four_records_timed_as_archsim_sparse_times_them(quest, cli_json):
    _, (code, out, db), _ = quest
    assert code == 0, out
    assert "4 points (4 new, 0 reused), 4 feasible" in out
    df = read_records(db)
    assert len(df) == 4 and set(df.target_kind) == {"sparse"} and set(df.target) == {f"quest/{MODEL}/{GPU}"}
    rows = cli_json("sparse", "--method", "quest", "--gpu", GPU, "-w", MODEL, "--context",
                    ",".join(map(str, CONTEXTS)), "--budget", ",".join(map(str, BUDGETS)))["points"]
    decode = {(p["budget"], p["context"]): p for p in rows if p["phase"] == "decode"}  # Quest's primary phase
    assert len(decode) == 4
    for record in df.to_dict("records"):
        p = decode[(record["sparse.budget"], record["sparse.context"])]
        assert record["latency_s"] == p["time_s"] and record["dense_time_s"] == p["dense_time_s"]
        assert record["memory_bytes"] == p["memory_bytes"] and record["dense_memory_bytes"] == p["dense_memory_bytes"]
        assert record["loaded_fraction"] == p["loaded_fraction"]  # the method's own numeric field
        assert record["speedup"] == pytest.approx(p["dense_time_s"] / p["time_s"], rel=1e-12)
        assert record["feasible"] and record["reason"] == ""
        # not modelled for sparse points: NaN, as a parallel point's area; energy a GPU point's, TDP x time
        assert all(math.isnan(record[m]) for m in ("area_um2", "dram_traffic_bytes"))
        assert record["energy_pj"] == pytest.approx(load_gpu(GPU).power_w * p["time_s"] * 1e12, rel=1e-12)
        assert record["edp"] == pytest.approx(record["latency_s"] * record["energy_pj"], rel=1e-12)


def test_a_rerun_computes_nothing_and_a_moved_store_resumes(quest, tmp_path, invoke):
    folder, _, (code, out) = quest
    assert code == 0 and "4 points (0 new, 4 reused)" in out, out
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(folder / "quest.yaml", moved / "quest.yaml")
    shutil.copy(folder / "quest.sqlite", moved / "quest.sqlite")
    code, out = invoke("sweep", str(moved / "quest.yaml"), "--db", str(moved / "quest.sqlite"), "--local")
    assert code == 0 and "4 points (0 new, 4 reused)" in out, out


def test_a_point_beyond_the_gpus_memory_is_infeasible_with_its_reason(tmp_path, sweep):
    # 1M tokens of Llama-3-8B's KV: 2^20 x 128 KiB = 137.4 GB, beyond the H100's 80 GiB (85.9 GB); 32K: 4.3 GB
    # and 16 GB of weights
    data = {"name": "quest-long", "sparse": {"method": "quest", "gpu": GPU, "workload": MODEL, "budget": 2048},
            "axes": {"sparse.context": [32768, 1048576]}}
    code, out, db = sweep(tmp_path, data)
    assert code == 0, out
    assert "2 points (2 new, 0 reused), 1 feasible" in out
    df = read_records(db).set_index("sparse.context")
    assert bool(df.loc[32768, "feasible"]) and not bool(df.loc[1048576, "feasible"])
    reason = df.loc[1048576, "reason"]
    assert reason.startswith("Quest does not fit: ") and "h100-sxm5's 85.9 GB (80 GiB) of DRAM" in reason, reason
    assert float(re.search(r"fit: ([0-9.]+) GB", reason).group(1)) > 16 + 137.4  # weights and KV at least
    assert all(math.isnan(df.loc[1048576, m]) for m in ("latency_s", *SPARSE_METRICS))  # no answer


def test_duoattention_phases_are_an_axis_each_timed_as_archsim_sparse_prints_it(tmp_path, cli_json, sweep):
    data = {"name": "duo", "sparse": {"method": "duoattention", "gpu": GPU, "workload": MODEL, "context": 32768,
                                      "retrieval_fraction": 0.5},
            "axes": {"sparse.phase": ["decode", "attention", "prefill"]}}
    code, out, db = sweep(tmp_path, data)
    assert code == 0, out
    df = read_records(db).set_index("sparse.phase")
    rows = cli_json("sparse", "--method", "duoattention", "--gpu", GPU, "-w", MODEL, "--context", "32768",
                    "--retrieval-fraction", "0.5", "--prefill")["points"]
    assert {p["phase"]: p["time_s"] for p in rows} == df["latency_s"].to_dict()


def test_the_default_phase_keys_as_the_phase_given(tmp_path, sweep):
    given = {**QUEST, "sparse": {**QUEST["sparse"], "phase": "decode"}}
    _, _, plain = sweep(tmp_path, QUEST, "plain")
    _, _, named = sweep(tmp_path, given, "named")
    assert sorted(read_records(plain).key) == sorted(read_records(named).key)


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"sparse": {"bogus": 1}}, "sparse.bogus", "unknown key"),
    ({"sparse": {"context": "lots"}}, "sparse.context", "expected a whole number"),
    ({"sparse": {"context": 4096.5}}, "sparse.context", "expected a whole number >= 1"),
    ({"axes": {"sparse.budget": [512, "many"]}}, "axes.sparse.budget[1]", "expected a whole number"),
    ({"axes": {"sparse.nothing": [1]}}, "axes.sparse.nothing", "not a field of the sparse block"),
    ({"axes": {"sparse.gpu": [GPU, "no-such-gpu"]}}, "axes.sparse.gpu[1]", "no-such-gpu"),
    ({"sparse": {"context": 32768, "budget": 65536}, "axes": {"sparse.phase": ["decode", "attention"]}},
     "sparse.budget", "at most the longest context of the sweep (32768 tokens), got 65536"),
    ({"sparse": {"context": 32768}, "axes": {"sparse.budget": None, "sparse.phase": ["decode"]}},
     "sparse.budget", "Quest needs one or more token budgets"),
    ({"sparse": {"density": 0.1}}, "sparse.density", "density does not apply to method quest"),
    ({"sparse": {"phase": "prefill"}}, "sparse.phase", "has no prefill phase"),
    ({"workload": MODEL}, "workload", "a sweep of sparse attention has no workload"),
    ({"objectives": ["latency_s", "area_um2"]}, "objectives[1]", "area_um2 is not modelled for target sparse"),
])
def test_a_bad_sparse_sweep_exits_2_naming_the_file_and_field(tmp_path, change, field, message, sweep):
    """QUEST with `change`: its block's fields over QUEST's (their axes dropped), its axes added (None: dropped;
    their block fields dropped), its other keys added."""
    axes = {k: v for k, v in {**QUEST["axes"], **change.get("axes", {})}.items()
            if v is not None and k.removeprefix("sparse.") not in change.get("sparse", {})}
    block = {k: v for k, v in {**QUEST["sparse"], **change.get("sparse", {})}.items() if f"sparse.{k}" not in axes}
    data = {**QUEST, **change, "sparse": block, "axes": axes}
    code, out, db = sweep(tmp_path, data)
    assert code == 2, out
    assert str(tmp_path / "s.yaml") in out and field in out and message in out, out
    assert not db.exists()


def test_the_export_has_a_parallel_sweeps_columns_plus_the_sparse_extras(quest, tmp_path, sweep, invoke):
    parallel = {"name": "par", "parallel": {"workload": MODEL, "seq_len": 12288, "topology": "hgx-h100-8",
                                            "scheme": "ring"}, "axes": {"parallel.devices": [1, 2]}}
    code, out, par_db = sweep(tmp_path, parallel, "par")
    assert code == 0, out
    columns = {}
    for name, db in (("parallel", par_db), ("sparse", quest[1][2])):
        csv = tmp_path / f"{name}.csv"
        code, out = invoke("results", str(db), "--csv", str(csv))
        assert code == 0, out
        columns[name] = list(pd.read_csv(csv).columns)
    generic = [[c for c in cols if c in GENERIC] for cols in columns.values()]
    assert generic[0] == generic[1] == list(GENERIC)
    extras = [c for c in columns["sparse"] if c not in GENERIC]
    assert extras == [*QUEST["axes"], *SPARSE_METRICS, "budget", "dense_fits", "loaded_fraction",
                      "page_tokens"]


def test_a_sparse_store_reports_without_its_spec(tmp_path: Path, write_yaml) -> None:
    """`archsim report --sweep DB` without `--spec` takes a sparse store's own default objectives (latency and
    memory), as its sweep did; a front per context (`sparse.context` is the work, s53)."""
    spec = write_yaml(tmp_path / "quest.yaml", QUEST)
    db = tmp_path / "quest.sqlite"
    assert CliRunner().invoke(main, ["sweep", str(spec), "--db", str(db)]).exit_code == 0
    result = CliRunner().invoke(main, ["report", "--sweep", str(db), "--out", str(tmp_path / "page")])
    assert result.exit_code == 0, result.output
    assert "Pareto fronts of latency_s x memory_bytes, one per sparse.context" in result.output


def test_a_point_whose_dense_run_does_not_fit_has_no_speedup(tmp_path, sweep, cli_json):
    """Llama-2-7B is MHA: 32 layers x 32 KV heads x 128 x (K, V) x 2 bytes = 512 KiB of KV per token. Dense at 200K
    tokens keeps 104.9 GB of it beside 13.4 GB of weights, beyond the H100's 85.9 GB (`archsim sparse` says
    dense_fits false), so dense cannot run there: DuoAttention at 25 % retrieval heads (39.8 GB) runs, its speedup
    over dense NaN; at 100K dense keeps 52.4 GB and fits, and the speedup is dense's time over DuoAttention's."""
    data = {"name": "duo-long", "sparse": {"method": "duoattention", "gpu": GPU, "workload": "llama2-7b",
                                           "retrieval_fraction": 0.25, "phase": "decode"},
            "axes": {"sparse.context": [100000, 200000]}}
    code, out, db = sweep(tmp_path, data)
    assert code == 0, out
    df = read_records(db).set_index("sparse.context")
    rows = cli_json("sparse", "--method", "duoattention", "--gpu", GPU, "-w", "llama2-7b", "--context",
                    "100000,200000", "--retrieval-fraction", "0.25")["points"]
    fits = {p["context"]: p["dense_fits"] for p in rows if p["phase"] == "decode"}
    assert fits == {100000: True, 200000: False}
    assert df["feasible"].astype(bool).all()
    assert df.loc[200000, "dense_fits"] == 0 and math.isnan(df.loc[200000, "speedup"])
    assert df.loc[100000, "dense_fits"] == 1
    assert df.loc[100000, "speedup"] == pytest.approx(df.loc[100000, "dense_time_s"] / df.loc[100000, "latency_s"])


def test_a_method_axis_blanks_the_axis_values_a_method_ignores_and_stores_its_selection(tmp_path, sweep):
    """Quest and TokenSelect over sparse.budget [512, 2048]: Quest takes the budget; TokenSelect does not (its
    selection is top_k, 2048 by default, `archsim sparse --method tokenselect`'s budget column), so its record's
    sparse.budget is NaN (the axis does not apply) and both budgets are its one point; `budget` is the selection
    each point ran."""
    data = {"name": "mm", "sparse": {"gpu": GPU, "workload": MODEL, "context": 32768},
            "axes": {"sparse.method": ["quest", "tokenselect"], "sparse.budget": BUDGETS}}
    code, out, db = sweep(tmp_path, data)
    assert code == 0, out
    df = read_records(db)
    quest = df[df["sparse.method"] == "quest"].set_index("sparse.budget")
    assert list(quest.index) == BUDGETS and list(quest["budget"]) == BUDGETS
    tokenselect = df[df["sparse.method"] == "tokenselect"]
    assert len(tokenselect) == 1 and math.isnan(tokenselect["sparse.budget"].iloc[0])
    assert tokenselect["budget"].iloc[0] == 2048


def test_a_pattern_map_of_another_model_is_blamed_on_sparse_patterns(tmp_path, sweep):
    """Llama-3-8B's DuoAttention map (8 KV heads per layer) on Llama-2-7B (32): the point is refused, the reason
    naming the sweep's field and the map, not only the map's own key."""
    data = {"name": "e6", "sparse": {"method": "duoattention", "gpu": GPU, "workload": "llama2-7b", "context": 4096},
            "axes": {"sparse.patterns": ["llama2-7b-duo-25", "llama3-8b-duo-50"]}}
    code, out, db = sweep(tmp_path, data)
    assert code == 0, out
    df = read_records(db).set_index("sparse.patterns")
    assert bool(df.loc["llama2-7b-duo-25", "feasible"]) and not bool(df.loc["llama3-8b-duo-50", "feasible"])
    reason = df.loc["llama3-8b-duo-50", "reason"]
    assert reason.startswith("sparse.patterns: map 'llama3-8b-duo-50'") and "expected a map of llama2-7b's KV heads" \
        in reason, reason


def test_a_pattern_map_given_by_path_is_named_in_a_reason_without_it(tmp_path, sweep):
    """A stored reason holds no path (README: a store reused from a moved spec exports the same bytes): a map the
    sweep gives by its file is named by its own name (audit helper-546: the absolute path was stored)."""
    folder = tmp_path / "maps"
    folder.mkdir()
    copy = folder / "mine.yaml"
    copy.write_text((Path(__file__).parents[1] / "workloads" / "patterns" / "llama3-8b-duo-50.yaml").read_text())
    data = {"name": "e7", "sparse": {"method": "duoattention", "gpu": GPU, "workload": "llama2-7b", "context": 4096},
            "axes": {"sparse.patterns": ["llama2-7b-duo-25", str(copy)]}}
    code, out, db = sweep(tmp_path, data)
    assert code == 0, out
    reason = read_records(db).set_index("sparse.patterns").loc[str(copy), "reason"]
    assert reason.startswith("sparse.patterns: map 'llama3-8b-duo-50' at ") and str(folder) not in reason, reason


def test_a_refit_calibration_keys_every_point_afresh(monkeypatch):
    """The GPU calibration is a YAML file (not the source `MODEL_VERSION` digests) that the sparse models time with:
    a refit (the pytorch family's parameters x 0.8, as the review's calib2.py) must give a point a new key and the
    store a new base, as a parallel point's."""
    spec = sweep_from_dict({**QUEST, "axes": {"sparse.budget": [512]}, "sparse": {**QUEST["sparse"],
                                                                                  "context": 32768}}, "<test>")
    base = load_base(spec)
    key, identity = point_key(spec, base, expand(spec)[0]), base_identity(spec, base)
    packaged = params.load_calibration()
    refit = {family: ({k: v * 0.8 for k, v in p.items()} if family == "pytorch" else p)
             for family, p in packaged.params.items()}
    monkeypatch.setattr(params, "load_calibration", lambda *_: dataclasses.replace(packaged, params=refit))
    refit_base = load_base(spec)
    assert point_key(spec, refit_base, expand(spec)[0]) != key
    assert base_identity(spec, refit_base)["calibration"] != identity.get("calibration")


@pytest.mark.parametrize("block, axes, where", [
    ({"method": "quest", "budget": 100000}, {"sparse.context": [8192, 16384]}, "sparse.budget"),
    ({"method": "tokenselect", "context": 8192}, {"sparse.top_k": [9000, 99999]}, "axes.sparse.top_k"),
])
def test_a_selection_beyond_every_context_exits_2(block, axes, where, write_yaml, invoke, tmp_path) -> None:
    """A budget or top_k above the sweep's longest context leaves no point to run: refused at load, exit 2 naming
    the field (every point had been an infeasible record and the sweep exit 0)."""
    spec = write_yaml(tmp_path / "beyond.yaml", {"name": "beyond", "sparse": {"gpu": GPU, "workload": MODEL, **block},
                                                 "axes": axes})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "b.sqlite"))
    assert code == 2 and f"{spec}: {where}: expected at most the longest context of the sweep" in output


def test_results_takes_a_sparse_metric_for_the_front_and_writes_csv_to_stdout(write_yaml, tmp_path) -> None:
    """`archsim results --front latency_s,speedup` on a sparse store (speedup is a sparse record's metric; the
    option had known only the other kinds'), and `--csv -` writes the records to standard output, the summary to
    standard error (it had written a file named '-')."""
    spec = write_yaml(tmp_path / "quest.yaml", QUEST)
    db = tmp_path / "quest.sqlite"
    assert CliRunner().invoke(main, ["sweep", str(spec), "--db", str(db)]).exit_code == 0
    front = CliRunner().invoke(main, ["results", str(db), "--csv", str(tmp_path / "f.csv"),
                                      "--front", "latency_s,speedup"])
    assert front.exit_code == 0, front.output
    assert len(pd.read_csv(tmp_path / "f.csv")) >= 1
    result = CliRunner().invoke(main, ["results", str(db), "--csv", "-"])
    assert result.exit_code == 0 and result.stdout.startswith("key,target_kind,target,")
    assert "records written to standard output" in result.stderr and not (Path.cwd() / "-").exists()
