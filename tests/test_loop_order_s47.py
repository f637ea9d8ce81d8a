"""A group's temporal loops go outermost level first (`archsim.mapping.spec`: "outermost first"). The reuse model
sizes a tile by the levels of the loops (`reuse.tile_elems`) but counts refetches in the order they are listed
(`reuse._fetching`), so a nest listing a GlobalBuffer loop above a DRAM one ran with numbers of neither order
(linear-out-fusemax swapped: the same latency and DRAM traffic, 7x the energy). It is refused, by `archsim check`,
a run and the Python API alike, naming the loop out of order."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from cli_errors import one_line_error

from archsim import library
from archsim.arch.load import architecture_from_dict
from archsim.cascade.bind import bind
from archsim.cascade.load import cascade_from_dict
from archsim.errors import SpecError
from archsim.mapping.load import mapping_from_dict
from archsim.mapping.resolve import check_names, resolve_group
from archsim.point import run_point

LINEAR_OUT = yaml.safe_load(library.find("mappings", "linear-out-fusemax").read_text())
EXPECTED = "expected each level's loops after those of the levels above it, outermost first (DRAM, GlobalBuffer"


def _swapped(tmp_path: Path) -> Path:
    """linear-out-fusemax with its two temporal lines swapped: the GlobalBuffer line first, DRAM second."""
    data = copy.deepcopy(LINEAR_OUT)
    loops = data["groups"][0]["loops"]
    assert [lp.get("level") for lp in loops[:2]] == ["DRAM", "GlobalBuffer"]
    loops[0], loops[1] = loops[1], loops[0]
    path = tmp_path / "linear-out-swapped.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_check_refuses_a_dram_loop_below_a_global_buffer_loop(cli, tmp_path) -> None:
    """`archsim check` printed ok. The DRAM line, now loops[1], is the first loop out of order (its first rank D)."""
    path = _swapped(tmp_path)
    result = cli("check", str(path), expect=2)
    one_line_error(result, f"{path}: groups[0].loops[1].ranks.D: ", "at level DRAM comes after "
                   "groups[0].loops[0].ranks.P at GlobalBuffer", EXPECTED)


def test_run_refuses_it_too(cli, tmp_path) -> None:
    """A run gave the original's latency at 7x its energy."""
    path = _swapped(tmp_path)
    result = cli("run", "--mapping", str(path), "--workload", "llama3-8b", "--set", "seq_len=4096", expect=2)
    one_line_error(result, f"{path}: groups[0].loops[1].ranks.D: ", EXPECTED)


def test_the_python_api_refuses_a_group_reordered_in_code() -> None:
    """A group reordered with `dataclasses.replace` names the loops by where they were written."""
    mapping = library.load_mapping_spec("linear-out-fusemax")
    group = mapping.groups[0]
    dram = tuple(lp for lp in group.loops if lp.level == "DRAM")
    buffer = tuple(lp for lp in group.loops if lp.level == "GlobalBuffer")
    spatial = tuple(lp for lp in group.loops if lp.is_spatial)
    swapped = replace(mapping, groups=(replace(group, loops=buffer + dram + spatial),))
    with pytest.raises(SpecError) as error:
        run_point(swapped, workload="llama3-8b", sets={"seq_len": 4096})
    assert error.value.source == mapping.source
    assert error.value.where == "groups[0].loops[0].ranks.D"  # where the DRAM line was written
    assert EXPECTED in error.value.message


TOY_ARCH = {"name": "toy", "clock_hz": 1e9, "word_bytes": 2, "node_nm": 45, "memories": {
    level: {"capacity_bytes": None if i == 0 else 2**20, "bandwidth_bytes_per_s": 1e9, "access_bits": 16,
            "area_um2": 0.0, "energy": {"node_nm": 45, "source": "toy", "actions_pj": {"read": 1.0, "write": 1.0}}}
    for i, level in enumerate(("DRAM", "L2", "L1"))},
    "units": {"pe": {"shape": [4], "op_cycles": {"mac": 1}, "area_um2": 1.0,
                     "energy": {"node_nm": 45, "source": "toy", "actions_pj": {"mac": 1.0}}}}}
GEMM = {"name": "gemm", "params": {"word_bytes": 2}, "ranks": {"M": 8, "N": 4, "K": 8},
        "inputs": {"A": ["M", "K"], "B": ["K", "N"]}, "einsums": "Z[m,n] = sum(k: A[m,k] * B[k,n])",
        "outputs": ["Z"]}


def _gemm_mapping(levels: list[str]) -> dict:
    """A GEMM mapping whose temporal loops, one per line, sit at `levels` in the order given (M, K, then N)."""
    loops = [{"level": level, "ranks": {rank: None}} for level, rank in zip(levels, "MKN", strict=True)]
    return {"name": "order", "cascade": "gemm.yaml", "architecture": "toy.yaml", "groups": [
        {"binding": {"pe": ["Z"]}, "loops": loops, "keep": {"L2": ["A", "B", "Z"], "L1": ["A", "B", "Z"]},
         "overlap": "max"}]}


@pytest.mark.parametrize(("levels", "bad"), [
    (["L2", "DRAM", "L1"], "groups[0].loops[1].ranks.K: a loop at level DRAM comes after "
                           "groups[0].loops[0].ranks.M at L2"),
    (["DRAM", "L1", "L2"], "groups[0].loops[2].ranks.N: a loop at level L2 comes after "
                           "groups[0].loops[1].ranks.K at L1"),
    (["L1", "L2", "DRAM"], "groups[0].loops[1].ranks.K: a loop at level L2 comes after "
                           "groups[0].loops[0].ranks.M at L1"),
])
def test_any_level_out_of_order_is_refused_by_name_and_resolve(levels, bad) -> None:
    """Three levels, each misordering refused at the first loop that comes back out, by the check `archsim check`
    runs (`check_names`) and by a run's (`resolve_group`)."""
    cascade = cascade_from_dict(GEMM, "gemm.yaml")
    arch = architecture_from_dict(TOY_ARCH, "toy.yaml")
    mapping = mapping_from_dict(_gemm_mapping(levels), "order.yaml")
    with pytest.raises(SpecError) as by_name:
        check_names(cascade, arch, mapping)
    with pytest.raises(SpecError) as by_run:
        resolve_group(bind(cascade), arch, mapping.groups[0], mapping.source, "groups[0]")
    for error in (by_name, by_run):
        assert str(error.value).startswith(f"order.yaml: {bad}"), str(error.value)
        assert "expected each level's loops after those of the levels above it, outermost first (DRAM, L2, L1)" \
            in str(error.value)


@pytest.mark.parametrize("levels", [["DRAM", "L2", "L1"], ["DRAM", "DRAM", "L1"], ["L2", "L2", "L1"],
                                    ["DRAM", "L1", "L1"]])
def test_loops_in_level_order_pass(levels) -> None:
    """Outermost first, a level repeated or skipped: each resolves, every factor filled."""
    cascade = cascade_from_dict(GEMM, "gemm.yaml")
    arch = architecture_from_dict(TOY_ARCH, "toy.yaml")
    mapping = mapping_from_dict(_gemm_mapping(levels), "order.yaml")
    check_names(cascade, arch, mapping)
    group = resolve_group(bind(cascade), arch, mapping.groups[0], mapping.source, "groups[0]")
    assert [lp.factor for lp in group.loops] == [8, 8, 4]  # M, K, N: each loop its whole rank


@pytest.mark.parametrize("name", library.names("mappings"))
def test_every_shipped_mapping_checks(cli, name) -> None:
    cli("check", str(library.find("mappings", name)))
