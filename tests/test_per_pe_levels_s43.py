"""A memory with one instance per PE (`per_pe_of`) holds one PE's tile, as Timeloop counts a per-instance level, and
a tile spilled from it goes to the shared level above it (audit helper-511). Its capacity had been checked against
every PE's tiles together (one Z element in each PE's 8-byte register file was "32 B over its capacity of 8 B"),
and a spill from the 1-D array's register file went to the 2-D array's, listed before it. No library mapping keeps
a tensor in a per-PE level, so no shipped number moves (`reproduce fusemax --json` md5 586cc129 before and after)."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from archsim.cli import main

ENERGY = {"node_nm": 45, "source": "test"}


def _memory(capacity: int | None, read_pj: float, **extra: object) -> dict:
    return {"capacity_bytes": capacity, "bandwidth_bytes_per_s": None, "access_bits": 16, "area_um2": 1.0,
            "energy": {**ENERGY, "actions_pj": {"read": read_pj, "write": 2 * read_pj}}, **extra}


def _unit(shape: list[int]) -> dict:
    return {"shape": shape, "op_cycles": {"mac": 1, "add": 1}, "area_um2": 1.0,
            "energy": {**ENERGY, "actions_pj": {"mac": 1, "add": 1}}}


def _write(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(tmp_path: Path, einsums: str, inputs: dict, memories: dict, units: dict, group: dict,
         outputs: tuple[str, ...] = ("Z",)) -> dict:
    _write(tmp_path, "c.yaml", {"name": "c", "description": "d", "source": "s", "params": {"word_bytes": 2},
                                "ranks": {"M": 8, "N": 4, "K": 4}, "inputs": inputs, "einsums": einsums,
                                "outputs": list(outputs)})
    _write(tmp_path, "a.yaml", {"name": "a", "description": "d", "source": "s", "clock_hz": 1.0e9, "word_bytes": 2,
                                "node_nm": 45, "memories": {"DRAM": {**_memory(None, 100), "area_um2": 0.0,  # off chip
                                                                     "bandwidth_bytes_per_s": 1.0e9}, **memories},
                                "units": units})
    mapping = _write(tmp_path, "m.yaml", {"name": "m", "cascade": "c.yaml", "architecture": "a.yaml",
                                          "groups": [{"name": "g", "overlap": "sequential", **group}]})
    result = CliRunner().invoke(main, ["run", "-m", str(mapping), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


LOOPS = [{"level": "DRAM", "ranks": {"M": 2}}, {"level": "GB", "ranks": {"K": 4}},
         {"spatial": "arr", "ranks": {"M": 4, "N": 4}}]


def test_a_per_pe_register_file_holds_one_pes_tile(tmp_path: Path) -> None:
    """Z over a 4 x 4 array, one Z element (2 B) in each PE's 8-byte RF: it fits; the shared GB holds the union."""
    out = _run(tmp_path, "Z[m,n] = sum(k: A[m,k] * B[k,n])", {"A": ["M", "K"], "B": ["K", "N"]},
               {"GB": _memory(4096, 10), "RF": _memory(8, 1, per_pe_of="arr")}, {"arr": _unit([4, 4])},
               {"binding": {"arr": ["Z"]}, "loops": LOOPS, "keep": {"GB": ["A", "B", "Z"], "RF": ["Z"]}})
    assert out["feasible"], out["reason"]
    assert out["footprint_bytes"] == {"GB": 96, "RF": 2}
    # the traffic still moves every PE's tiles: Z's 32 elements written to GB twice (its two M passes), 64 B; the
    # one-instance tile is the capacity check's alone (a mutant reusing it for traffic moved 4 B: helper-514)
    assert out["traffic_bytes"]["GB"]["Z"] == 64


def test_a_tile_spilled_from_a_per_pe_level_goes_to_the_shared_level_above(tmp_path: Path) -> None:
    """T kept only in the 1-D array's RF1D and spilled: its overflow lives in GB, not in the 2-D array's RF (a lane's
    tile of T is 16 B, its M split spread by both units: 12 B overflows)."""
    out = _run(tmp_path, "T[m,n] = sum(k: A[m,k] * B[k,n])\nZ[m,n] = T[m,n] + C[m,n]",
               {"A": ["M", "K"], "B": ["K", "N"], "C": ["M", "N"]},
               {"GB": _memory(4096, 10), "RF": _memory(8, 1, per_pe_of="arr"),
                "RF1D": _memory(12, 3, per_pe_of="arr1")},
               {"arr": _unit([4, 4]), "arr1": _unit([4])},
               {"binding": {"arr": ["T"], "arr1": ["Z"]},
                "loops": [*LOOPS, {"spatial": "arr1", "ranks": {"M": 4}}],
                "keep": {"GB": ["A", "B", "C", "Z"], "RF1D": ["T"]}, "spill": ["T"]})
    assert out["feasible"], out["reason"]
    assert "T" not in out["traffic_bytes"].get("RF", {}), out["traffic_bytes"]
    assert out["traffic_bytes"]["GB"]["T"] > 0


def test_an_einsum_runs_on_the_lanes_of_the_ranks_it_has() -> None:
    """Z = A B on a 4 x 4 array spread over M and N, then Y[m] = D[m] + E[m] on the same unit: Y has no N, so it runs
    on the 4 lanes of M, not 16 (128 MACs in 8 cycles on 16 lanes, 8 adds in 2 on 4)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = _run(Path(folder), "Z[m,n] = sum(k: A[m,k] * B[k,n])\nY[m] = D[m] + E[m]",
                   {"A": ["M", "K"], "B": ["K", "N"], "D": ["M"], "E": ["M"]}, {"GB": _memory(4096, 10)},
                   {"arr": _unit([4, 4])},
                   {"binding": {"arr": ["Z", "Y"]}, "loops": LOOPS, "keep": {"GB": ["A", "B", "Z", "D", "E", "Y"]}},
                   outputs=("Z", "Y"))
    lanes = {e["name"]: (e["lanes_used"], e["compute_cycles"]) for e in out["einsums"]}
    assert lanes == {"Z": (16, 8), "Y": (4, 2)} and out["compute_cycles"] == 10


def test_points_apart_only_in_a_levels_per_pe_of_are_priced_apart(tmp_path: Path) -> None:
    """The batch evaluator groups points by plan structure, which holds each level's per_pe_of: the same RF per PE
    fits one Z element, shared by 16 PEs it does not (a mutant leaving per_pe_of out of the structure priced both
    as the first: helper-514)."""
    from archsim.model.batch import evaluate_points
    from archsim.point import prepare

    _run(tmp_path, "Z[m,n] = sum(k: A[m,k] * B[k,n])", {"A": ["M", "K"], "B": ["K", "N"]},
         {"GB": _memory(4096, 10), "RF": _memory(8, 1, per_pe_of="arr")}, {"arr": _unit([4, 4])},
         {"binding": {"arr": ["Z"]}, "loops": LOOPS, "keep": {"GB": ["A", "B", "Z"], "RF": ["Z"]}})
    point = prepare(str(tmp_path / "m.yaml"))
    per_pe = point.arch.with_changes(**{"memories.RF.capacity_bytes": 8})  # a copy, as a sweep's point makes
    shared = point.arch.with_changes(**{"memories.RF.per_pe_of": None, "memories.RF.instances": 1})
    result = evaluate_points([(point.binding, point.analysis, arch, point.mapping) for arch in (per_pe, shared)])
    assert result.feasible.tolist() == [True, False]
