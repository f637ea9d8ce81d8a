"""Mappings: bad input exits 2 with one message naming file, YAML path and expectation; the pipeline overlap."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library

BASE = yaml.safe_load(library.find("mappings", "fusemax").read_text())


def _variant(tmp_path: Path, edit) -> str:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _group(d: dict) -> dict:
    return d["groups"][0]


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: _group(d)["binding"].update(array3d=_group(d)["binding"].pop("array1d")),
     "groups[0].binding.RM: unknown unit 'array3d'"),
    (lambda d: _group(d)["loops"][2]["ranks"].update(M0=128),
     "groups[0].loops: rank M0: factors on unit array2d multiply to 128, expected the rank size 256"),
    (lambda d: _group(d)["binding"].update(array2d=["QK", "LM", "SLN", "SLD", "SLNV", "AV"],
                                           array1d=["RM", "PRM", "SPD", "RD", "SPNV", "RNV"]),
     "groups[0].binding.AV: unit array2d has no div"),
    (lambda d: _group(d)["loops"][0]["ranks"].update(Z=4), "groups[0].loops[0].ranks.Z: unknown rank 'Z'"),
    (lambda d: _group(d)["keep"].update(L9=["Q"]), "groups[0].keep.L9: unknown level"),
    (lambda d: _group(d)["loops"][1]["ranks"].update(E=-1), "groups[0].loops[1].ranks.E: expected a positive integer"),
    (lambda d: d.pop("groups"), "groups: missing"),
    (lambda d: _group(d)["loops"][1]["ranks"].update(P="seq_len // tiles"),
     "groups[0].loops[1].ranks.P: unknown name 'tiles'"),
    (lambda d: _group(d)["loops"][1]["ranks"].update(P="capacity(L9)"),
     "groups[0].loops[1].ranks.P: unknown level 'L9'"),
    (lambda d: _group(d)["loops"][1]["ranks"].update(P="P - P"),
     "groups[0].loops[1].ranks.P: 'P - P' gives 0, expected a positive integer"),
    (lambda d: _group(d)["loops"][1]["ranks"].update(P="P +"), "groups[0].loops[1].ranks.P: not a factor expression"),
    (lambda d: _group(d).update(spill=["QK"]), "groups[0].spill: 'QK' is not kept at any level"),
])
def test_bad_mapping_exits_2(cli, tmp_path: Path, edit, expected: str) -> None:
    path = _variant(tmp_path, edit)
    result = cli("run", "--mapping", path, "--workload", "bert-base", expect=2)
    assert f"{path}: {expected}" in result.output
    assert "Traceback" not in result.output


def test_tile_overflowing_the_buffer_is_an_infeasible_point(cli_json, tmp_path: Path) -> None:
    """Fixing P1 = 256 query tiles at 64K tokens needs 256*256*(E+F+2) words > 16 MiB: a row with a reason."""
    path = _variant(tmp_path, lambda d: _group(d)["loops"][1]["ranks"].update(P=256))
    r = cli_json("run", "--mapping", path, "--workload", "bert-base", "--set", "seq_len=65536")
    assert not r["feasible"] and "GlobalBuffer holds" in r["reason"]


def test_arch_overlap_is_the_stall_formula(cli_json) -> None:
    """+Architecture = 458 cycles per (256-query, 256-key) tile for E=F=64: QK+LM+256*LM = 321, RM 1,
    SLN+SLD = PRM+SPD = 8, SLNV 64 + SPNV 64 (fusemax.md §1.3, stall_proposal.py)."""
    r = cli_json("run", "--mapping", "fusemax-arch", "--workload", "bert-base", "--set", "seq_len=4096")
    tiles = 64 * 12 * 16 * 16
    assert r["compute_cycles"] == 458 * tiles
