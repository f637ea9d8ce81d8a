"""MInference's block-sparse head, its estimation included, on the FuseMax hardware (issue 19: the spatial-array
model's skipped tiles and estimation pass): the `cmp` op, mappings/fusemax-minference-block-sparse.yaml through
`archsim run` and `archsim sweep`, and `kv_selection.selected_blocks_on_array`."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.systems import kv_selection as ks

MAPPING = "fusemax-minference-block-sparse"
ESTIMATION = ("QP", "KP", "BQK", "BM", "BN", "BD", "BA", "BR", "BSEL")
RUN = ["run", "-m", MAPPING, "-w", "bert-base", "--set", "batch=1", "--set", "seq_len=16384"]


def test_cmp_is_priced_as_max_where_a_selection_runs() -> None:
    """FuseMax's two arrays and FLAT's (and Unfused's) 1-D array compare in max's cycles and energy."""
    for arch, unit in (("fusemax", "array2d"), ("fusemax", "array1d"), ("flat", "array1d"), ("unfused", "array1d")):
        spec = library.load_architecture_spec(arch).unit(unit)
        assert spec.op_cycles["cmp"] == spec.op_cycles["max"] == 1, (arch, unit)
        assert spec.energy.actions_pj["cmp"] == spec.energy.actions_pj["max"], (arch, unit)


def test_the_mapping_runs_with_the_estimation_einsums() -> None:
    """`archsim run` at MInference's 64-token blocks: every estimation Einsum is there, with cycles and energy, the
    selection's compares priced on the 2-D array."""
    result = CliRunner().invoke(main, [*RUN, "--set", "block=64", "--set", "k_b=8", "--set", "density=0.1",
                                       "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["feasible"] and data["params"]["block"] == 64
    einsums = {e["name"]: e for e in data["einsums"]}
    for name in ESTIMATION:
        assert einsums[name]["compute_cycles"] > 0 and einsums[name]["energy_pj"] > 0, name
        assert einsums[name]["group"] != "attention", name
    assert {einsums[n]["unit"] for n in ("BR", "BSEL")} == {"array2d"}
    assert data["energy_by"]["array2d.cmp"] > 0


def test_block_defaults_to_minferences_64_and_sets_without_colliding() -> None:
    """The mapping fixes no rank, so --set block=N moves the tiles with it (no M0 of 256 to collide with)."""
    runner = CliRunner()
    by_block = {}
    for block in (64, 128, 256):
        result = runner.invoke(main, [*RUN, "--set", f"block={block}", "--set", "k_b=8", "--set", "density=0.1",
                                      "--json"])
        assert result.exit_code == 0, result.output
        by_block[block] = {e["name"]: e["lanes_used"] for e in json.loads(result.output)["einsums"]}
    assert [by_block[b]["QK"] for b in (64, 128, 256)] == [64 * 256, 128 * 256, 256 * 256]
    default = runner.invoke(main, [*RUN, "--set", "density=0.1", "--json"])
    assert json.loads(default.output)["params"]["block"] == 64


@pytest.mark.parametrize("block", ["0", "-64", "64.5"])
def test_a_bad_block_exits_2_naming_it(block: str) -> None:
    result = CliRunner().invoke(main, [*RUN, "--set", f"block={block}", "--set", "density=0.1"])
    assert result.exit_code == 2
    assert f"block: expected an integer of at least 1, got {block}" in result.output


def test_sparse_beats_dense_at_low_density_and_the_estimation_share_grows() -> None:
    """Against dense causal FuseMax (fusemax-gqa): slower at density 1 (the 2-D array holds one 64-key block on its
    256 rows, plus the estimation), faster well below, and the estimation a larger share as density falls."""
    runs = [ks.selected_blocks_on_array("bert-base", 16384, 64, 8, d) for d in (1.0, 0.3, 0.1, 0.05, 0.02)]
    assert runs[0].sparse.latency_s > runs[0].dense.latency_s
    for run in runs[2:]:
        assert run.sparse.latency_s < 0.5 * run.dense.latency_s, run.density
        assert run.sparse.energy_pj < run.dense.energy_pj, run.density
    assert all(a.sparse.latency_s > b.sparse.latency_s for a, b in itertools.pairwise(runs))
    assert all(0 < a.estimation_share < b.estimation_share < 1 for a, b in itertools.pairwise(runs))
    assert runs[-1].dense.cascade == "attention-1pass-causal-gqa"


def test_a_sweep_over_seq_len_runs(tmp_path: Path) -> None:
    spec = tmp_path / "mbs.yaml"
    spec.write_text(f"name: mbs-seq\ndescription: test\nmapping: {MAPPING}\nworkload: llama3-8b\n"
                    "sets: {batch: 1, density: 0.1, k_b: 16}\naxes:\n  workload.seq_len: [4096, 8192]\n"
                    "sampling: {kind: grid}\nobjectives: [latency_s, energy_pj]\n")
    runner = CliRunner()
    db, out = tmp_path / "mbs.sqlite", tmp_path / "mbs.csv"
    result = runner.invoke(main, ["sweep", str(spec), "--db", str(db), "--local"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["results", str(db), "--csv", str(out)]).exit_code == 0
    rows = sorted(csv.DictReader(out.open()), key=lambda r: int(r["workload.seq_len"]))
    assert [r["feasible"] for r in rows] == ["True", "True"]
    assert float(rows[0]["latency_s"]) < float(rows[1]["latency_s"])
