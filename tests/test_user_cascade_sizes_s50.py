"""A user's own cascade, written as a Timeloop user would (`params: {rows: 64, cols: 64, depth: 64, word_bytes: 2}`,
`ranks: {M: rows, N: cols, K: depth}`): its params are not in the vocabulary (`archsim.workload.PARAMS`), so sets of
some of them without a workload left the others at their test defaults silently (`--set rows=128 --set cols=1024`
ran at depth 64, exit 0; a sweep of `sets: {rows: 1024, cols: 1024, word_bytes: 2}` ran every point at depth 64).

Expectations (README "No toy defaults"): without a workload, sets of no cascade parameter keep its test sizes;
sets of one give every model size and every parameter that sizes a rank (`archsim.cascade.bind.ranks_sized_by`),
unless the mapping's `set:` or a set of each rank it sizes gives it; a missing one is exit 2, one line naming it and
its test default, in `run`, `analyze`, Python's `run_point` and `bound`, and a sweep's load.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.errors import SpecError
from archsim.point import bound, run_point

GEMM = {"name": "my-gemm", "params": {"rows": 64, "cols": 64, "depth": 64, "word_bytes": 2},
        "ranks": {"M": "rows", "N": "cols", "K": "depth"}, "inputs": {"A": ["M", "K"], "B": ["K", "N"]},
        "einsums": "Z[m,n] = sum(k: A[m,k] * B[k,n])\n", "outputs": ["Z"]}
ENERGY = {"node_nm": 45, "source": "me"}
ARRAY = {"name": "my-array", "clock_hz": 1.0e9, "word_bytes": 2, "node_nm": 45, "memories": {
    "DRAM": {"capacity_bytes": None, "bandwidth_bytes_per_s": 1.0e11, "access_bits": 64, "area_um2": 0,
             "energy": {**ENERGY, "actions_pj": {"read": 200.0, "write": 200.0}}},
    "GLB": {"capacity_bytes": 2097152, "bandwidth_bytes_per_s": None, "access_bits": 256, "area_um2": 1.0e6,
            "energy": {**ENERGY, "actions_pj": {"read": 50.0, "write": 60.0}}}},
    "units": {"pe": {"shape": [32, 32], "op_cycles": {"mac": 1}, "area_um2": 1000,
                     "energy": {**ENERGY, "actions_pj": {"mac": 1.0}}}}}
MAPPING = {"name": "my-map", "cascade": "my-gemm.yaml", "architecture": "my-array.yaml", "groups": [{
    "name": "gemm", "binding": {"pe": ["Z"]},
    "loops": [{"level": "DRAM", "ranks": {"M": 4, "N": 2}},
              {"level": "GLB", "ranks": {"M": None, "N": None, "K": None}},
              {"spatial": "pe", "ranks": {"M": 32, "K": 32}}],
    "keep": {"GLB": ["A", "B", "Z"]}, "overlap": "max"}]}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The auditor's files in a folder the test runs in (the mapping names its cascade and architecture beside it)."""
    for name, data in (("my-gemm", GEMM), ("my-array", ARRAY), ("my-map", MAPPING)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _sets(**sizes: int) -> list[str]:
    return [arg for name, n in sizes.items() for arg in ("--set", f"{name}={n}")]


def _one_line(result) -> str:
    text = result.output.strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_run_refuses_a_size_left_at_its_test_default(cli, files: Path) -> None:
    """rows 128 and cols 1024 had run over depth 64 (the cascade's test default), exit 0."""
    text = _one_line(cli("run", "-m", "my-map.yaml", *_sets(rows=128, cols=1024), expect=2))
    assert text.startswith("error: --set: depth: missing: rows, cols set without a workload"), text
    assert "depth 64, word_bytes 2 would be its test defaults" in text and "depth=N, word_bytes=N" in text, text
    assert "(or the rank it sizes: K)" in text and "give a workload" not in text, text  # no workload gives depth


def test_analyze_refuses_a_size_left_at_its_test_default(cli, files: Path) -> None:
    """`--set rows=128` printed `ranks M=128 N=64 K=64`."""
    text = _one_line(cli("analyze", "my-gemm.yaml", *_sets(rows=128), expect=2))
    assert text.startswith("error: --set: cols: missing: rows set without a workload"), text
    assert "cols 64, depth 64, word_bytes 2 would be its test defaults" in text, text


def test_python_refuses_a_size_left_at_its_test_default(files: Path) -> None:
    """run_point(..., sets={rows: 1024, cols: 1024}) was feasible at depth 64."""
    with pytest.raises(SpecError) as caught:
        run_point("my-map.yaml", sets={"rows": 1024, "cols": 1024, "word_bytes": 2})
    assert (caught.value.source, caught.value.where) == ("sets", "depth")
    assert "depth 64 would be its test default" in caught.value.message
    with pytest.raises(SpecError) as caught:
        bound(str(files / "my-gemm.yaml"), sets={"depth": 256})
    assert (caught.value.source, caught.value.where) == ("sets", "rows")


def test_a_sweep_giving_some_sizes_is_refused_at_load(cli, files: Path) -> None:
    """`sets: {rows: 1024, cols: 1024, word_bytes: 2}` and no workload ran every point at depth 64."""
    spec = files / "sw.yaml"
    spec.write_text(yaml.safe_dump({"name": "my-sweep", "mapping": "my-map.yaml",
                                    "sets": {"rows": 1024, "cols": 1024, "word_bytes": 2},
                                    "axes": {"arch.memories.GLB.capacity_bytes": [262144, 2097152]}}, sort_keys=False))
    db = files / "sw.sqlite"
    text = _one_line(cli("sweep", str(spec), "--db", str(db), "--local", expect=2))
    assert text.startswith(f"error: {spec}: workload: missing: sets.rows, sets.cols, sets.word_bytes set without a "
                           f"workload"), text
    assert "(depth 64 would be its test sizes)" in text and not db.exists(), text


def test_every_size_given_runs_at_those_sizes(cli, files: Path) -> None:
    out = cli("analyze", "my-gemm.yaml", *_sets(rows=128, cols=1024, depth=256, word_bytes=2)).output
    assert "ranks   M=128 N=1024 K=256" in out
    assert run_point("my-map.yaml", sets={"rows": 1024, "cols": 1024, "depth": 1024, "word_bytes": 2}).feasible


def test_a_rank_set_by_name_gives_its_parameter(cli, files: Path) -> None:
    """`--set K=256` sizes the rank depth would: depth is given."""
    out = cli("analyze", "my-gemm.yaml", *_sets(rows=128, cols=1024, word_bytes=2, K=256)).output
    assert "ranks   M=128 N=1024 K=256" in out


def test_the_mappings_set_gives_the_rank_its_parameter_sizes(files: Path) -> None:
    """A mapping whose `set:` fixes K gives depth (as with a workload, `refuse_test_defaults`)."""
    mapping = {**MAPPING, "set": {"K": 256}}
    (files / "my-map-k.yaml").write_text(yaml.safe_dump(mapping, sort_keys=False))
    result = run_point("my-map-k.yaml", sets={"rows": 1024, "cols": 1024, "word_bytes": 2})
    assert result.feasible and result.params["depth"] == 256


def test_no_cascade_parameter_set_keeps_the_test_sizes(cli, files: Path) -> None:
    """README: sets of no model size (none, or ranks) keep the cascade's test sizes."""
    assert "ranks   M=64 N=64 K=64" in cli("analyze", "my-gemm.yaml").output
    assert "ranks   M=128 N=64 K=64" in cli("analyze", "my-gemm.yaml", *_sets(M=128)).output
