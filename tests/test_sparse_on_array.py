"""MInference's block-sparse head, its estimation included, on the FuseMax hardware (issue 19: the spatial-array
model's skipped tiles and estimation pass): the `cmp` op, mappings/fusemax-minference-block-sparse.yaml through
`archsim run` and `archsim sweep`, and `sparse_on_array.selected_blocks_on_array`."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.systems.sparse_on_array import selected_blocks_on_array

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
    result = CliRunner().invoke(main, [*RUN, "--set", "block=64", "--set", "k_b=8", "--json"])
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
        result = runner.invoke(main, [*RUN, "--set", f"block={block}", "--set", "k_b=8", "--json"])
        assert result.exit_code == 0, result.output
        by_block[block] = {e["name"]: e["lanes_used"] for e in json.loads(result.output)["einsums"]}
    assert [by_block[b]["QK"] for b in (64, 128, 256)] == [64 * 256, 128 * 256, 256 * 256]
    default = runner.invoke(main, [*RUN, "--json"])
    assert json.loads(default.output)["params"]["block"] == 64


@pytest.mark.parametrize("block", ["0", "-64", "64.5"])
def test_a_bad_block_exits_2_naming_it(block: str) -> None:
    result = CliRunner().invoke(main, [*RUN, "--set", f"block={block}"])
    assert result.exit_code == 2
    assert f"block: expected an integer of at least 1, got {block}" in result.output


def test_a_prompt_of_no_whole_blocks_names_where_its_sizes_come_from() -> None:
    """A prompt the block does not divide: the partition's refusal says which params set the ranks and from where
    (`--set`, the mapping), so the user knows what to change."""
    result = CliRunner().invoke(main, [*RUN[:-2], "--set", "seq_len=16001"])
    assert result.exit_code == 2
    assert ("multiply to 16000, not P=16001 (seq_len=16001 from --set, block=64 from mapping "
            "fusemax-minference-block-sparse)") in result.output


def test_sparse_beats_dense_at_low_density_and_the_estimation_share_grows() -> None:
    """Against dense causal FuseMax (fusemax-gqa), 256 blocks of 64 tokens: slower keeping them all (k_b = 256: the
    2-D array holds one 64-key block on its 256 rows, plus the estimation), faster well below, and the estimation
    a larger share as k_b, so the density, falls."""
    runs = [selected_blocks_on_array("bert-base", 16384, 64, k_b) for k_b in (256, 41, 13, 7, 3)]
    assert runs[0].density == 1
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
                    "sets: {batch: 1, k_b: 16}\naxes:\n  workload.seq_len: [4096, 8192]\n"
                    "sampling: {kind: grid}\nobjectives: [latency_s, energy_pj]\n")
    runner = CliRunner()
    db, out = tmp_path / "mbs.sqlite", tmp_path / "mbs.csv"
    result = runner.invoke(main, ["sweep", str(spec), "--db", str(db), "--local"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["results", str(db), "--csv", str(out)]).exit_code == 0
    rows = sorted(csv.DictReader(out.open()), key=lambda r: int(r["workload.seq_len"]))
    assert [r["feasible"] for r in rows] == ["True", "True"]
    assert float(rows[0]["latency_s"]) < float(rows[1]["latency_s"])


def _kept_causal_share(seq_len: int, block: int, k_b: int) -> float:
    """Top-k's kept share of the causal points: query block i keeps min(k_b, i + 1) key blocks, its diagonal one
    (assumed kept) in its causal half."""
    kept = sum((min(k_b, i + 1) - 1) * block * block + block * (block + 1) // 2 for i in range(seq_len // block))
    return kept / (seq_len * (seq_len + 1) / 2)


def _qk_macs(result) -> int:
    return next(e.ops["mac"] for e in result.einsums if e.name == "QK")


@pytest.mark.parametrize(("seq_len", "k_b"), [(16384, 8), (16384, 100), (4096, 100), (8192, 128), (4096, 10)])
def test_the_kept_share_follows_from_k_b(seq_len: int, k_b: int) -> None:
    """No density to give: the count is top-k's, from seq_len, block and k_b. At long context (16384 tokens, 256
    blocks of 64) k_b = 8 keeps about 8 / 128 of the causal points and runs in about a quarter of dense causal
    FuseMax's time; while k_b covers every block (4096 tokens, 64 blocks, k_b = 100) the head does dense causal
    attention's work (QK's multiply-accumulates; slower, as above: one 64-key block on the 2-D array's 256 rows)."""
    run = selected_blocks_on_array("llama3-8b", seq_len, 64, k_b)
    share = _kept_causal_share(seq_len, 64, k_b)
    assert run.density == pytest.approx(share, rel=1e-12)
    assert _qk_macs(run.sparse) == pytest.approx(share * _qk_macs(run.dense), rel=1e-9)
    if k_b >= seq_len // 64:
        assert run.density == 1 and _qk_macs(run.sparse) == _qk_macs(run.dense)
    if (seq_len, k_b) == (16384, 8):
        assert run.sparse.latency_s < 0.3 * run.dense.latency_s


def test_latency_scales_with_k_b_at_long_context() -> None:
    """`archsim run` at 16384 tokens with no density given: fewer kept blocks, less time (the mapping used to
    count every causal point, a dense run, past the 6,400 tokens k_b = 100 covers)."""
    runner = CliRunner()
    latency = {}
    for k_b in (8, 32, 100):
        result = runner.invoke(main, ["run", "-m", MAPPING, "-w", "llama3-8b", "--set", "batch=1", "--set",
                                      "seq_len=16384", "--set", f"k_b={k_b}", "--json"])
        assert result.exit_code == 0, result.output
        latency[k_b] = json.loads(result.output)["latency_s"]
    assert latency[8] < latency[32] < latency[100]


@pytest.mark.parametrize("command", [["analyze", "minference-block-sparse"], RUN])
def test_a_density_is_refused_as_unknown(command: list[str]) -> None:
    """The kept share follows from k_b: a density that could contradict it is not a parameter."""
    result = CliRunner().invoke(main, [*command, "--set", "density=0.1"])
    assert result.exit_code == 2
    assert "error: --set: density: not a parameter or rank of minference-block-sparse" in result.output


@pytest.mark.parametrize(("k_b", "rule"), [("0", "k_b >= 1"), ("1.5", "k_b // 1 == k_b")])
def test_a_k_b_the_count_cannot_take_is_refused(k_b: str, rule: str) -> None:
    """The count keeps min(k_b, i + 1) whole blocks per query block: no block (an empty softmax) or a fraction of
    one is refused, not counted."""
    result = CliRunner().invoke(main, ["analyze", "minference-block-sparse", "--set", f"k_b={k_b}"])
    assert result.exit_code == 2
    assert f"error: --set: k_b: expected {rule} (cascade minference-block-sparse" in result.output
