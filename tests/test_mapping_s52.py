"""Mapping rules of audit s52 (auditor C): `in_place` names on-chip storage its group owns (an alias had vanished
from traffic, energy and footprint); a per-PE register file holds one instance's tile, every unit's view of a
split that unit spreads taken out (another unit's view of the same split had stayed); a spatial loop spreads a rank
that an Einsum of its unit reads; a group changed in Python is checked as its file would be (Einsums bound
twice or to no unit, a loop both temporal and spatial, numpy integer factors); a per-PE level keeps only tensors its
unit's Einsums touch. No library mapping relied on the defects: `reproduce fusemax --json` md5 c753257a before and
after."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from archsim.arch.load import architecture_from_dict
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.cascade.load import cascade_from_dict
from archsim.cli import main
from archsim.errors import SpecError
from archsim.library import load_mapping_spec
from archsim.mapping.load import mapping_from_dict
from archsim.model.analytical import evaluate
from archsim.point import run_point

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
SMALL = {"batch": 1, "heads": 1, "head_dim": 64, "seq_len": 1024, "word_bytes": 2}
ENERGY = {"node_nm": 45, "source": "test"}


def _library_yaml(name: str) -> dict:
    return yaml.safe_load((MAPPINGS / f"{name}.yaml").read_text())


def _with_group(mapping: dict, i: int, **changes: object) -> dict:
    groups = [dict(g) for g in mapping["groups"]]
    groups[i] = {**groups[i], **changes}
    return {**mapping, "groups": groups}


def _refused(tmp_path: Path, data: dict, *needles: str) -> str:
    """`archsim run` on `data` written to a file exits 2 with one message naming the file and `needles`."""
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = CliRunner().invoke(main, ["run", "-m", str(path), "--json", *[f"--set={k}={v}" for k, v in SMALL.items()]])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output, result.output
    for needle in needles:
        assert needle in result.output, result.output
    return result.output


# 1. in_place ---------------------------------------------------------------------------------------------------

def test_in_place_over_a_tensor_of_another_group_is_refused(tmp_path: Path) -> None:
    """Unfused's softmax writing SN and A over QK: QK is written by group qk (it lives in DRAM, no storage of the
    group's), and A is read by group av, so A's DRAM write had vanished (DRAM A 51.54 GB -> 25.77 GB)."""
    data = _with_group(_library_yaml("unfused"), 1, in_place={"QK": ["SN", "A"]})
    _refused(tmp_path, data, "groups[1].in_place.QK")


def test_in_place_alias_read_by_another_group_is_refused(tmp_path: Path) -> None:
    """FLAT split in two groups, the score block QK kept by the first: A written over it is read by group av."""
    flat = _library_yaml("flat")
    group = flat["groups"][0]
    first = {**group, "binding": {"array2d": ["QK"], "array1d": ["GM", "SN", "SD", "A"]},
             "loops": [{"level": "DRAM", "ranks": {"B": None, "H": None, "P": None}},
                       {"level": "GlobalBuffer", "ranks": {"M": None, "E": None}},
                       {"spatial": "array2d", "ranks": {"P": 256, "M": 256}},
                       {"spatial": "array1d", "ranks": {"P": 256}}]}
    second = {"name": "av", "binding": {"array2d": ["AV"]}, "overlap": "max",
              "loops": [{"level": "DRAM", "ranks": {"B": None, "H": None, "P": None}},
                        {"level": "GlobalBuffer", "ranks": {"M": None, "F": None}},
                        {"spatial": "array2d", "ranks": {"P": 256, "M": 256}}]}
    out = _refused(tmp_path, {**flat, "groups": [first, second]}, "groups[0].in_place.QK", "A")
    assert "AV" in out


@pytest.mark.parametrize(("name", "in_place", "needle"), [
    ("flat", {"QK": ["SN", "A", "AV"]}, "AV"),  # the cascade's output: it had never been written
    ("flat", {"QK": ["QK", "SN", "A"]}, "QK"),  # the owner itself: every buffer access had vanished
    ("flat", {"QK": ["SN", "A", "GM"]}, "GM"),  # not the owner's shape
    ("fusemax", {"Q": ["K"]}, "Q"),  # inputs: K had vanished
])
def test_in_place_outside_the_documented_meaning_is_refused(tmp_path: Path, name: str, in_place: dict,
                                                            needle: str) -> None:
    data = _with_group(_library_yaml(name), 0, in_place=in_place)
    _refused(tmp_path, data, f"groups[0].in_place.{next(iter(in_place))}", needle)


def test_in_place_checked_from_python_too() -> None:
    flat = load_mapping_spec("flat")
    changed = replace(flat, groups=(replace(flat.groups[0], in_place={"QK": ("SN", "A", "AV")}),))
    with pytest.raises(SpecError, match=r"in_place\.QK"):
        run_point(changed, sets=SMALL)


def test_library_in_place_mappings_still_pass() -> None:
    for name in ("flat", "fusemax-minference-block-sparse"):
        result = CliRunner().invoke(main, ["check", str(MAPPINGS / f"{name}.yaml")])
        assert result.exit_code == 0, result.output
    assert run_point("flat", sets=SMALL).feasible


# 2. per-PE register files hold one instance's tile ---------------------------------------------------------

def _memory(capacity: int | None, read_pj: float, **extra: object) -> dict:
    return {"capacity_bytes": capacity, "bandwidth_bytes_per_s": None, "access_bits": 16, "area_um2": 0.0,
            "energy": {**ENERGY, "actions_pj": {"read": read_pj, "write": 2 * read_pj}}, **extra}


def _unit(shape: list[int], *ops: str) -> dict:
    return {"shape": shape, "op_cycles": dict.fromkeys(ops, 1), "area_um2": 1.0,
            "energy": {**ENERGY, "actions_pj": dict.fromkeys(ops, 1)}}


ROWSUM = {"name": "rowsum", "description": "d", "source": "s", "params": {"word_bytes": 2},
          "ranks": {"M": 64, "N": 16, "K": 16}, "inputs": {"A": ["M", "K"], "B": ["K", "N"]},
          "einsums": "Z[m,n] = sum(k: A[m,k] * B[k,n])\nS[m] = sum(n: Z[m,n])", "outputs": ["S"]}


def _toy_arch(rf1d_bytes: int) -> object:
    """arr (4 x 4, mac), vec (4 lanes, add) with a per-lane register file RF1D."""
    return architecture_from_dict({
        "name": "toy", "description": "d", "source": "s", "clock_hz": 1e9, "word_bytes": 2, "node_nm": 45,
        "memories": {"DRAM": _memory(None, 100), "L2": _memory(1 << 20, 1),
                     "RF1D": _memory(rf1d_bytes, 0.1, per_pe_of="vec")},
        "units": {"arr": _unit([4, 4], "mac"), "vec": _unit([4], "add")}})


def _toy(loops: list, keep: dict, rf1d_bytes: int = 1 << 10, binding: dict | None = None):
    b = bind(cascade_from_dict(ROWSUM), {})
    m = mapping_from_dict({"name": "t", "cascade": "rowsum", "architecture": "toy", "groups": [
        {"name": "g", "binding": binding or {"arr": ["Z"], "vec": ["S"]}, "loops": loops, "keep": keep,
         "overlap": "max"}]})
    return evaluate(b, analyze(b), _toy_arch(rf1d_bytes), m)


TOY_LOOPS = [{"level": "DRAM", "ranks": {"M": 16}}, {"level": "L2", "ranks": {"N": 4, "K": 16}},
             {"spatial": "arr", "ranks": {"M": 4, "N": 4}}, {"spatial": "vec", "ranks": {"M": 4}}]


def test_a_lane_register_holds_its_own_row_sum() -> None:
    """vec spreads M one row per lane (arr's M: 4 is the same split): each lane's RF1D holds one word of S."""
    result = _toy(TOY_LOOPS, {"L2": ["A", "B"], "RF1D": ["S"]}, rf1d_bytes=2)
    assert result.feasible, result.reason
    assert result.footprint_bytes["RF1D"] == 2


def test_fusemax_running_max_in_the_lane_registers_fits() -> None:
    """FuseMax with RM in the 1-D array's 64-byte lane registers: one word of RM and one of hand-off per lane
    (it had been 1,024 B: the 2-D array's view of the P split and a whole-array hand-off)."""
    fm = _library_yaml("fusemax")
    group = fm["groups"][0]
    loops = [dict(lp) for lp in group["loops"]]
    loops[1] = {"level": "GlobalBuffer", "ranks": {"P": 1, "E": None, "F": None}}
    keep = {"GlobalBuffer": ["Q", "K", "V", "RD", "RNV"], "RF1D": ["RM"]}
    mapping = mapping_from_dict(_with_group(fm, 0, loops=loops, keep=keep), str(MAPPINGS / "fusemax.yaml"))
    result = run_point(mapping, sets=SMALL)
    assert result.feasible, result.reason
    assert result.footprint_bytes["RF1D"] == 4


def test_a_lane_holds_the_split_only_another_unit_spreads_and_spills_to_the_shared_level() -> None:
    """T[m,n] from arr (4 x 4 over M, N), read by Z on arr1 (4 lanes over M), kept in arr1's RF1D: a lane holds its
    row's 4 columns (arr1 walks arr's N split, innermost) and as much hand-off room, 16 B, not every lane's 64 B
    (`test_per_pe_levels_s43` spilled T from a 40-byte RF1D on those 64 B; 12 B spills it now), and the spilled
    share lives in the shared GB, not in arr's RF listed before RF1D."""
    b = bind(cascade_from_dict({
        "name": "c", "description": "d", "source": "s", "params": {"word_bytes": 2}, "ranks": {"M": 8, "N": 4, "K": 4},
        "inputs": {"A": ["M", "K"], "B": ["K", "N"], "C": ["M", "N"]},
        "einsums": "T[m,n] = sum(k: A[m,k] * B[k,n])\nZ[m,n] = T[m,n] + C[m,n]", "outputs": ["Z"]}), {})
    arch = architecture_from_dict({
        "name": "a", "description": "d", "source": "s", "clock_hz": 1e9, "word_bytes": 2, "node_nm": 45,
        "memories": {"DRAM": _memory(None, 100), "GB": _memory(4096, 10), "RF": _memory(8, 1, per_pe_of="arr"),
                     "RF1D": _memory(12, 3, per_pe_of="arr1")},
        "units": {"arr": _unit([4, 4], "mac"), "arr1": _unit([4], "add")}})
    m = mapping_from_dict({"name": "m", "cascade": "c", "architecture": "a", "groups": [
        {"name": "g", "binding": {"arr": ["T"], "arr1": ["Z"]}, "overlap": "sequential",
         "loops": [{"level": "DRAM", "ranks": {"M": 2}}, {"level": "GB", "ranks": {"K": 4}},
                   {"spatial": "arr", "ranks": {"M": 4, "N": 4}}, {"spatial": "arr1", "ranks": {"M": 4}}],
         "keep": {"GB": ["A", "B", "C", "Z"], "RF1D": ["T"]}, "spill": ["T"]}]})
    result = evaluate(b, analyze(b), arch, m)
    assert result.feasible, result.reason
    assert result.footprint_bytes["RF1D"] == 16
    assert result.traffic_bytes["GB"]["T"] > 0 and "T" not in result.traffic_bytes["RF"]


# 3. a spatial loop on a unit that runs none of the rank ---------------------------------------------------------

def test_a_spatial_loop_on_a_unit_running_no_einsum_of_the_group_is_refused(tmp_path: Path) -> None:
    """Unfused's qk group with the 1-D array spreading P: it runs nothing there (QK 51.54 -> 77.31 GB at 128 PEs)."""
    data = _library_yaml("unfused")
    loops = [*data["groups"][0]["loops"], {"spatial": "array1d", "ranks": {"P": "fanout(array1d, 0)"}}]
    _refused(tmp_path, _with_group(data, 0, loops=loops), "groups[0].loops[3].ranks.P", "array1d")


def test_a_spatial_loop_on_a_rank_its_units_einsums_do_not_read_is_refused() -> None:
    loops = [{"level": "DRAM", "ranks": {"M": 16}}, {"level": "L2", "ranks": {"N": 4, "K": 4}},
             {"spatial": "arr", "ranks": {"M": 4, "N": 4}}, {"spatial": "vec", "ranks": {"M": 4, "K": 4}}]
    with pytest.raises(SpecError, match=r"loops\[3\]\.ranks\.K.*vec"):
        _toy(loops, {"L2": ["A", "B"]})


# 4. a group changed in Python is checked as its file would be ---------------------------------------------------

def test_an_einsum_left_without_a_unit_is_refused() -> None:
    fm = load_mapping_spec("fusemax")
    group = fm.groups[0]
    binding = {e: u for e, u in group.binding.items() if e != "AV"}
    with pytest.raises(SpecError, match=r"groups\[0\]\.binding.*AV"):
        run_point(replace(fm, groups=(replace(group, binding=binding),)), sets=SMALL)


def test_an_einsum_listed_twice_is_refused() -> None:
    fm = load_mapping_spec("fusemax")
    group = fm.groups[0]
    with pytest.raises(SpecError, match="QK is bound twice"):
        run_point(replace(fm, groups=(replace(group, einsums=(*group.einsums, "QK")),)), sets=SMALL)


def test_an_einsum_bound_by_two_groups_is_refused() -> None:
    unfused = load_mapping_spec("unfused")
    qk, softmax, av = unfused.groups
    twice = replace(softmax, einsums=(*softmax.einsums, "QK"), binding={**softmax.binding, "QK": "array2d"})
    with pytest.raises(SpecError, match="already bound by groups"):
        run_point(replace(unfused, groups=(qk, twice, av)), sets=SMALL)


def test_a_loop_both_temporal_and_spatial_is_refused() -> None:
    fm = load_mapping_spec("fusemax")
    group = fm.groups[0]
    loops = tuple(replace(lp, level="GlobalBuffer") if lp.spatial == "array1d" else lp for lp in group.loops)
    with pytest.raises(SpecError, match="not both"):
        run_point(replace(fm, groups=(replace(group, loops=loops),)), sets=SMALL)


# 5. numpy integer factors ---------------------------------------------------------------------------------------

def test_a_numpy_integer_factor_is_a_factor() -> None:
    fm = load_mapping_spec("fusemax")
    group = fm.groups[0]

    def with_factor(factor: object) -> object:
        loops = tuple(replace(lp, factor=factor) if lp.level == "GlobalBuffer" and lp.rank == "P" else lp
                      for lp in group.loops)
        return replace(fm, groups=(replace(group, loops=loops),))

    ours, plain = run_point(with_factor(np.int64(2)), sets=SMALL), run_point(with_factor(2), sets=SMALL)
    assert ours.feasible and ours.latency_s == plain.latency_s
    with pytest.raises(SpecError, match="positive integer"):
        run_point(with_factor(np.True_), sets=SMALL)
    with pytest.raises(SpecError, match="positive integer"):
        run_point(with_factor(True), sets=SMALL)


# 6. a per-PE level of a unit that never touches the tensor ------------------------------------------------------

def test_keeping_a_tensor_in_the_registers_of_a_unit_that_never_touches_it_is_refused() -> None:
    """A is read by Z on arr alone: vec's lane registers are on no path of A."""
    with pytest.raises(SpecError, match=r"keep\.RF1D.*vec"):
        _toy(TOY_LOOPS, {"L2": ["A", "B"], "RF1D": ["A"]})

