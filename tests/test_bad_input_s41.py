"""Bad input a fuzzing audit found mishandled (contract: exit 2, one line naming the file, the field and what was
expected): a measurements row whose heads or seqlen is 1e308 crashed formatting its query rows (an int beyond a
float); one whose head_dim is 1e308 blamed its value (an infinite kernel time); a workload's or pattern map's
`name: 7` was called missing; `archsim check` passed a mapping whose loops miss a rank, which run refuses at any
size; an unknown key in a mapping loop went unnamed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.model.gpu import AttentionCase
from archsim.workload import workload_from_dict
from archsim.workload_patterns import pattern_map_from_dict

HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
ROW = "A100 80GB SXM4,FlashAttention-2,fp16,False,{batch},{heads},{head_dim},{seqlen},fwd,throughput,120,TFLOPs/s"
SIZES = {"batch": "4", "heads": "32", "head_dim": "64", "seqlen": "512"}


def _one_line(code_output: tuple[int, str]) -> str:
    code, output = code_output
    text = output.strip()
    assert code == 2 and text.startswith("error: ") and "\n" not in text and "internal error" not in text, output
    return text


def _measurements(tmp_path: Path, field: str, value: str) -> str:
    path = tmp_path / "m.csv"
    path.write_text(f"{HEADER}\n{ROW.format(**{**SIZES, field: value})}\n")
    return str(path)


# ---------------------------------------------------------------------------- 1. a count beyond a float's range
@pytest.mark.parametrize("field", ["heads", "seqlen", "batch"])
def test_a_row_of_1e308_is_refused_naming_row_and_field(tmp_path, invoke, field) -> None:
    """1e308 is a 309-digit int: `{count:.3g}` of batch x heads x seqlen (past 1.8e308) raised OverflowError."""
    path = _measurements(tmp_path, field, "1e308")
    for command in (("validate", "--measurements", path), ("calibrate", "--measurements", path, "--out", "-"),
                    ("check", path)):
        line = _one_line(invoke(*command))
        assert line.startswith(f"error: {path}: line 2, field '{field}': "), line
        assert "a 309-digit number" in line and "ARCHSIM_MAX_GPU_ROWS" in line, line


def test_a_case_beyond_a_float_names_its_size_in_digits() -> None:
    """heads 10^308 x seqlen 512 x batch 4 query rows is a 312-digit number, heads the 309-digit factor."""
    case = AttentionCase("fwd", 4, 10**308, 10**308, 64, 512, False, "fp16")
    field, problem = case.limit_problem()
    assert field == "heads"
    assert problem.startswith("batch x heads x seqlen = 4 x a 309-digit number x 512 = a 312-digit number query "
                              "rows, beyond the limit of "), problem


# ------------------------------------------------------------------------------------------- 2. head_dim 1e308
def test_a_head_dim_of_1e308_is_blamed_on_head_dim(tmp_path, invoke) -> None:
    """Its FLOPs (4·B·H·N²·d) overflow to inf, so the throughput read as an infinite time, blamed on 'value'."""
    path = _measurements(tmp_path, "head_dim", "1e308")
    line = _one_line(invoke("validate", "--measurements", path))
    assert line.startswith(f"error: {path}: line 2, field 'head_dim': a 309-digit number is beyond the limit of "
                           "16777216 on sizes"), line
    assert "ARCHSIM_MAX_SIZE" in line


# ------------------------------------------------------------------------------------------ 3. name: 7, not text
WORKLOAD = {"name": "w", "description": "", "source": "", "params": {"batch": 1, "heads": 2}}
PATTERNS = {"name": "p", "model": "w", "description": "", "source": "", "layers": 1, "heads": 2, "head_kind": "kv",
            "patterns": [{"pattern": "streaming", "heads": 2}]}


@pytest.mark.parametrize(("load", "data"), [(workload_from_dict, WORKLOAD), (pattern_map_from_dict, PATTERNS)])
def test_a_name_that_is_a_number_is_not_called_missing(load, data) -> None:
    with pytest.raises(SpecError) as error:
        load({**data, "name": 7}, "f.yaml")
    assert (error.value.where, error.value.message) == ("name", "expected a string, got int 7")
    with pytest.raises(SpecError) as error:
        load({key: value for key, value in data.items() if key != "name"}, "f.yaml")
    assert error.value.message.startswith("missing (expected the ")


# ------------------------------------------------------------------------------- 5. a rank no loop of check's
def _fusemax_without(tmp_path: Path, level: str, rank: str) -> str:
    """The packaged fusemax mapping with `rank` deleted from the loop at `level`, written beside nothing: its
    cascade and architecture are the library's."""
    data = yaml.safe_load(library.find("mappings", "fusemax").read_text())
    loop = next(lp for lp in data["groups"][0]["loops"] if lp.get("level") == level and rank in lp["ranks"])
    del loop["ranks"][rank]
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_check_refuses_a_mapping_whose_loops_miss_a_rank(tmp_path, invoke) -> None:
    """attention-1pass's SLNV reads F (head_dim of V): a mapping with no F loop is refused by run at any size."""
    path = _fusemax_without(tmp_path, "GlobalBuffer", "F")
    assert _one_line(invoke("check", path)) == f"error: {path}: groups[0].loops: rank F has no loop; add one"
    line = _one_line(invoke("run", "-m", path, "-w", "bert-base"))
    assert line == f"error: {path}: groups[0].loops: rank F (size 64) has no loop; add one"


# --------------------------------------------------------------------------- 6. an unknown key in a loop
def test_an_unknown_key_in_a_loop_is_named(tmp_path, invoke) -> None:
    data = yaml.safe_load(library.find("mappings", "fusemax").read_text())
    data["groups"][0]["loops"][0]["tile"] = 4
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(data))
    line = _one_line(invoke("check", str(path)))
    assert line.startswith(f"error: {path}: groups[0].loops[0].tile: unknown key (expected one of level, "), line


def test_a_size_the_systems_parallelism_cuts_and_the_workload_lacks_says_what_is_expected(tmp_path, invoke):
    """A workload without `heads` on a TP system said only "missing: <system file> sets parallelism.tp = 4"."""
    text = (Path(__file__).resolve().parents[1] / "workloads" / "llama3-8b.yaml").read_text()
    path = tmp_path / "nohead.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("  heads:")))
    code, out = invoke("simulate", "-s", "vllm-h100", "-w", str(path), "--rate", "2", "--requests", "5")
    assert code == 2 and out.startswith(f"error: {path}: params.heads: missing: expected query heads (a whole number "
                                        ">= 1), which parallelism.tp = 4 in "), out


def test_a_sweep_store_given_as_a_spec_is_said_to_be_one(tmp_path, invoke):
    """`archsim check store.sqlite` said "line 2, byte 102: not UTF-8 text ... save the file as UTF-8"."""
    import sqlite3

    store = tmp_path / "demo.sqlite"
    with sqlite3.connect(store) as db:
        db.execute("create table points (key text)")
    db.close()
    code, out = invoke("check", str(store))
    assert (code, out) == (2, f"error: {store}: a SQLite database (a sweep store?), not a YAML spec: read a store "
                              "with archsim results or archsim report --sweep\n")
