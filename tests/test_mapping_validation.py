"""Mappings are correct by construction: a mapping that does not fit the hardware is an infeasible point with its
reason, a mapping that means nothing is refused at load (exit 2, naming file and YAML path), the mapper's time does
not grow with rank sizes, and architectures refuse non-finite or huge numbers.

Expected numbers come from the shipped specs: `mappings/fusemax.yaml` spreads P: M0 = 256 queries x M0 = 256 keys
over `array2d` (loop `loops[2]`) and P: 256 over `array1d` (`loops[3]`); the FuseMax preset's arrays are 256 x 256
and 256 lanes (archsim/arch/presets/fusemax.yaml)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.arch import architecture_from_dict
from archsim.errors import SpecError
from archsim.mapping.factors import divisors, prime_factors
from archsim.mapping.load import mapping_from_dict
from archsim.model.batch import evaluate_columns
from archsim.point import prepare, run_point

BASE = yaml.safe_load(library.find("mappings", "fusemax").read_text())
FUSEMAX = library.load_architecture_spec("fusemax")
BERT_4K = {"workload": "bert-base", "sets": {"seq_len": 4096}}


def _write(tmp_path: Path, edit, name: str = "bad.yaml") -> str:
    data = copy.deepcopy(BASE)
    edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _group(d: dict) -> dict:
    return d["groups"][0]


def _exits_2(cli, path: str, where: str, fragment: str) -> None:
    result = cli("run", "--mapping", path, "--workload", "bert-base", "--set", "seq_len=4096", expect=2)
    assert f"{path}: {where}: " in result.output and fragment in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------- spatial fan-out
def test_fusemax_on_a_64x64_array_is_infeasible_with_the_reason() -> None:
    """256 queries x 256 keys per tile cannot spread over 64 x 64 PEs: before, the 256 x 256 latency came back
    with util_2d 15.4."""
    arch = FUSEMAX.with_changes(**{"units.array2d.shape": [64, 64]})
    result = run_point("fusemax", arch=arch, **BERT_4K)
    assert not result.feasible
    assert ("group attention: loops[2].ranks.P = 256 spreads 256 over unit array2d, which has 64 PEs along "
            "dimension 0 (shape 64 x 64)") in result.reason
    assert "loops[2].ranks.M0 = 256 spreads 256 over unit array2d, which has 64 PEs along dimension 1" in result.reason


def test_a_feasible_point_never_uses_more_than_its_pes() -> None:
    result = run_point("fusemax", **BERT_4K)
    assert result.feasible and result.reason == ""
    assert all(0 < u <= 1 + 1e-12 for u in result.utilization.values()), result.utilization


def test_the_1d_array_is_checked_too() -> None:
    arch = FUSEMAX.with_changes(**{"units.array1d.shape": [128]})
    result = run_point("fusemax", arch=arch, **BERT_4K)
    assert not result.feasible
    assert "loops[3].ranks.P = 256 spreads 256 over unit array1d, which has 128 PEs along dimension 0" in result.reason


def test_loops_beyond_a_units_dimensions_share_its_last() -> None:
    """P x M0 = 65536 fits a flat 65536-PE array exactly, and the model sees a unit only through its PEs, so the
    latency is the 256 x 256 one; one PE fewer does not fit."""
    flat = run_point("fusemax", arch=FUSEMAX.with_changes(**{"units.array2d.shape": [65536]}), **BERT_4K)
    assert flat.feasible and flat.latency_s == run_point("fusemax", **BERT_4K).latency_s
    short = run_point("fusemax", arch=FUSEMAX.with_changes(**{"units.array2d.shape": [65535]}), **BERT_4K)
    assert not short.feasible
    assert ("loops[2].ranks.P = 256 x loops[2].ranks.M0 = 256 spreads 65536 over unit array2d, which has 65535 PEs"
            in short.reason)


def test_an_overlap_beyond_a_units_pes_is_infeasible() -> None:
    """max(QK, SLNV, ...) runs QK and SLNV side by side, each on all 65536 PEs of the 2-D array: the unit would
    be busy more than 100 % of the time."""
    spec = library.load_mapping_spec("fusemax")
    crammed = replace(spec, groups=(replace(spec.groups[0],
                                            overlap="max(QK, SLNV, RNV, SPNV) + LM+SLN+SLD+RD+AV+RM+PRM+SPD"),))
    result = run_point(crammed, **BERT_4K)
    assert not result.feasible
    assert "its overlap runs QK, LM, SLN, SLD, SLNV side by side on unit array2d" in result.reason


def test_a_tile_beyond_a_level_names_the_level_its_tensors_and_both_sizes(tmp_path: Path) -> None:
    """P1 = 256 query tiles resident at 64K tokens need more than the 16 MiB global buffer (test_mapping.py)."""
    path = _write(tmp_path, lambda d: _group(d)["loops"][1]["ranks"].update(P=256))
    result = run_point(path, workload="bert-base", sets={"seq_len": 65536})
    assert not result.feasible
    assert "group attention: GlobalBuffer holds" in result.reason
    assert "(K, Q, RD, RM, RNV, V), over its capacity of 16777216 B" in result.reason


def test_a_running_state_lives_across_the_key_loop_outside_the_query_loops(tmp_path: Path) -> None:
    """With the key-tile loop M1 outermost at DRAM, the running max, denominator and numerator of every query
    stay in the global buffer from the first key tile to the last (they have no home in DRAM): before, the
    footprint was one query tile's state and the point ran at the library mapping's latency."""
    data = copy.deepcopy(BASE)
    _group(data)["loops"][0]["ranks"] = {"M1": None, "B": None, "H": None, "P": None}
    path = tmp_path / "key-loop-outermost.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # loops nest in the order their ranks are written
    result = run_point(path, **BERT_4K)
    assert not result.feasible and "GlobalBuffer holds" in result.reason
    params = library.load_workload_spec("bert-base").params
    b, h, f, word = params["batch"], params["heads"], params["head_dim"], params["word_bytes"]
    state_bytes = b * h * 4096 * (f + 2) * word  # RNV over F, RM and RD: one value per query each
    big = FUSEMAX.with_changes(**{"memories.GlobalBuffer.capacity_bytes": 2 * state_bytes})
    roomy, library_order = run_point(path, arch=big, **BERT_4K), run_point("fusemax", arch=big, **BERT_4K)
    assert roomy.feasible
    held, library_held = roomy.footprint_bytes["GlobalBuffer"], library_order.footprint_bytes["GlobalBuffer"]
    assert state_bytes <= held <= state_bytes + library_held


# ------------------------------------------------------------------------------------------- the mapper
def test_the_mapper_does_not_grow_with_rank_sizes(monkeypatch) -> None:
    """seq_len 1e20 took 161 s (divisors enumerated up to sqrt(n)); now a few hundred candidates at most. The size
    guard on workloads is raised as far as it goes (2^53, where float64 still counts whole numbers) to let the
    mapper see such a rank: 256 x 35184372088777, a prime near 2^45, whose square root trial division would walk."""
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", str(2**53))
    start = time.perf_counter()
    result = run_point("fusemax", workload="bert-base", sets={"seq_len": 256 * 35184372088777})
    assert time.perf_counter() - start < 30  # 161 s before the fix; loaded CI machines take seconds
    assert result.feasible and math.isfinite(result.latency_s)  # the mapper found a mapping: the rank splits


def test_divisors_come_from_the_factorisation() -> None:
    assert prime_factors(2**12 * 5**20) == {2: 12, 5: 20}
    assert prime_factors(3 * 1_000_000_007) == {3: 1, 1_000_000_007: 1}  # a cofactor above 2**16 kept whole
    assert divisors(3072, 256) == sorted((2**i * 3**j for i in range(11) for j in range(2)), reverse=True)  # all 22
    n = 2**12 * 5**20  # 13 x 21 = 273 divisors, more than the limit
    spread = divisors(n, 64)
    assert len(spread) <= 64 and spread[0] == n and spread[-1] == 1
    assert all(n % d == 0 for d in spread)
    assert divisors(0, 8) == [1]


# ------------------------------------------------------------------------------------------- load-time checks
@pytest.mark.parametrize(("overlap", "fragment"), [
    ("max(QK+LM", "not a pipeline expression"),
    ("QK * LM", "QK * LM multiplies Einsums, which means nothing"),
    ("max(QK+LM, FOO)", "'FOO' is not an Einsum of this group"),
    ("QK + LM", "leaves out RM, PRM"),
    (BASE["groups"][0]["overlap"] + " + QK", "Einsum QK appears 2 times"),
    (BASE["groups"][0]["overlap"] + " - 3", "'-' is not allowed"),
    (BASE["groups"][0]["overlap"] + " + Z9*LM", "'Z9' in a delay term is neither an Einsum of this group nor a rank"),
])
def test_bad_overlap_exits_2(cli, tmp_path: Path, overlap: str, fragment: str) -> None:
    path = _write(tmp_path, lambda d: _group(d).update(overlap=overlap))
    _exits_2(cli, path, "groups[0].overlap", fragment)


def test_two_groups_binding_the_same_einsums_exit_2(cli, tmp_path: Path) -> None:
    """Before, the second copy doubled latency and energy. (The copy is dumped with sorted keys: array1d, RM first.)"""
    path = _write(tmp_path, lambda d: d["groups"].append(copy.deepcopy(_group(d))))
    _exits_2(cli, path, "groups[1].binding.array1d", "Einsum RM is already bound by groups[0] (attention)")


def test_an_einsum_bound_by_no_group_exits_2(cli, tmp_path: Path) -> None:
    def drop_av(d: dict) -> None:
        _group(d)["binding"]["array1d"].remove("AV")
        _group(d)["overlap"] = _group(d)["overlap"].replace("+AV", "")

    path = _write(tmp_path, drop_av)
    _exits_2(cli, path, "groups", "AV of attention-1pass bound by no group")


def test_every_library_mapping_binds_each_einsum_once() -> None:
    for name in library.names("mappings"):
        spec = library.load_mapping_spec(name)
        bound = [e for g in spec.groups for e in g.einsums]
        assert sorted(bound) == sorted(e.name for e in library.load_cascade_spec(spec.cascade).einsums), name


def test_a_unit_the_architecture_lacks_is_a_spec_error() -> None:
    data = FUSEMAX.to_dict()
    data["units"]["vector"] = data["units"].pop("array1d")
    data["memories"]["RF1D"]["per_pe_of"] = "vector"
    with pytest.raises(SpecError) as info:
        run_point("fusemax", arch=architecture_from_dict(data), **BERT_4K)
    assert info.value.where == "groups[0].binding.RM"
    assert "unknown unit 'array1d' (units of fusemax: array2d, vector)" in info.value.message


@pytest.mark.parametrize(("factor", "fragment"), [
    ("0", "expected a positive integer"), ("-1", "expected a positive integer"),
    ("1.5", "expected a positive integer"), (".nan", "expected a positive integer"),
    ("abc", "unknown name 'abc'"), ("'1e400'", "the number 1e400 is beyond the largest float"),
])
def test_factors_are_positive_integers(cli, tmp_path: Path, factor: str, fragment: str) -> None:
    text = library.find("mappings", "fusemax").read_text().replace("E: ~, F: ~", f"E: {factor}, F: ~")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    _exits_2(cli, str(path), "groups[0].loops[1].ranks.E", fragment)


def test_a_relative_architecture_path_is_taken_from_the_mapping_folder(cli_json, tmp_path: Path, monkeypatch) -> None:
    arch = yaml.safe_load(library.find("architectures", "fusemax").read_text())
    arch["name"] = "fusemax-copy"
    (tmp_path / "specs" / "arch").mkdir(parents=True)
    (tmp_path / "specs" / "arch" / "copy.yaml").write_text(yaml.safe_dump(arch))
    path = _write(tmp_path / "specs", lambda d: d.update(architecture="arch/copy.yaml"), "m.yaml")
    monkeypatch.chdir(tmp_path)  # the working directory holds no arch/ folder
    assert library.load_mapping_spec(path).architecture == str(tmp_path / "specs" / "arch" / "copy.yaml")
    result = cli_json("run", "--mapping", path, "--workload", "bert-base", "--set", "seq_len=4096")
    assert result["architecture"] == "fusemax-copy"
    assert library.load_mapping_spec("fusemax").architecture == "fusemax"  # a name stays a library name


# ------------------------------------------------------------------------------------------- architectures
@pytest.mark.parametrize(("path", "value"), [
    ("clock_hz", math.nan), ("clock_hz", math.inf), ("memories.DRAM.bandwidth_bytes_per_s", math.nan),
    ("memories.GlobalBuffer.capacity_bytes", 1e300), ("units.array2d.energy.actions_pj.mac", 1e300),
    ("memories.RF.instances", 0), ("memories.DRAM.bandwidth_bytes_per_s", 1e-300),  # latency inf before
])
def test_architecture_numbers_are_finite_and_bounded(path: str, value: float) -> None:
    with pytest.raises(SpecError) as info:
        FUSEMAX.with_changes(**{path: value})
    assert info.value.where == path


def test_a_nan_in_an_architecture_file_names_its_path(tmp_path: Path) -> None:
    text = library.find("architectures", "fusemax").read_text()
    path = tmp_path / "nan.yaml"
    path.write_text(text.replace("clock_hz: 940.0e+6", "clock_hz: .nan"))
    with pytest.raises(SpecError) as info:
        library.load_architecture_spec(str(path))
    assert (info.value.source, info.value.where) == (str(path), "clock_hz")
    path.write_text(text.replace("shape: [256, 256]", "shape: [256, 1.0e+30]"))
    with pytest.raises(SpecError, match=r"units\.array2d\.shape\[1\]: 1e\+30 is above 1e\+18"):
        library.load_architecture_spec(str(path))


def test_a_factor_an_expression_gave_is_named_when_the_rank_does_not_divide(tmp_path: Path) -> None:
    """FLAT's former row-block rule, min(P // 256, ...), at 3 MiB gives 4096 * 4096 * 2 / 3 MiB = 10.7, rounded up
    11 blocks, which the 16 tiles of 256 rows do not fill. The message blamed the length alone ("not a multiple of
    the other factors (2816)"). The library's rule takes the smallest divisor of the 16 tiles at least 11 (16), and
    runs."""
    arch = library.load_architecture_spec("flat").with_changes(**{"memories.GlobalBuffer.capacity_bytes": 3 * 2**20})
    assert run_point("flat", arch=arch, workload="bert-base", sets={"seq_len": 4096}).feasible
    data = yaml.safe_load(library.find("mappings", "flat").read_text())
    data["groups"][0]["loops"][0]["ranks"]["P"] = data["groups"][0]["loops"][0]["ranks"]["P"].replace(
        "divisor_at_least(", "min(")
    data["cascade"] = str(library.find("cascades", "attention-3pass"))
    path = tmp_path / "flat-min.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as error:
        run_point(str(path), arch=arch, workload="bert-base", sets={"seq_len": 4096})
    assert ("rank P: size 4096 is not a multiple of the other factors (2816: groups[0].loops[0].ranks.P = 11 x 256 "
            "spatial)") in error.value.message


def test_a_running_state_kept_at_no_level_cannot_live_across_query_tiles(tmp_path: Path) -> None:
    """fusemax keeping only Q, K and V in the buffer: the 16 query tiles it holds each carry a running max,
    denominator and numerator from the first key tile to the last, which the PEs' registers cannot hold; it ran
    feasible and cheaper than the library mapping. Both evaluation paths say so."""
    path = _write(tmp_path, lambda d: _group(d).update(keep={"GlobalBuffer": ["Q", "K", "V"]}))
    result = run_point(path, **BERT_4K)
    assert not result.feasible
    for state, tiles in (("RD", 16), ("RM", 16), ("RNV", 16 * 64)):  # RNV's head_dim walks 64 steps per tile
        assert (f"{state} is kept at no level (keep:), but {tiles} of its tiles live at once across loop M1 at "
                "DRAM" in result.reason), result.reason
    p = prepare(path, **BERT_4K)
    batch = evaluate_columns(p.binding, p.analysis, p.arch, p.mapping, {"memories.DRAM.bandwidth_bytes_per_s": [1e11]})
    assert batch.result(0).reason == result.reason


def test_scores_a_later_pass_reads_live_across_their_key_blocks() -> None:
    """FLAT's 3-pass scores wait for their row maximum, so with the key loop split at DRAM (M: 4 before the query
    blocks) every key block's scores of a row stay in the buffer: the footprint is the library mapping's, not a
    quarter of it, and DRAM traffic is no lower (it was 2.0938e10 against 2.11393e10 B). So do the rows' maxima and
    sums (GM, SD), a row each for all 4,096 rows: kept nowhere the split is refused naming them (since s36), kept in
    the buffer they add 2 x 4,096 x 2 B."""
    flat = yaml.safe_load(library.find("mappings", "flat").read_text())
    split = copy.deepcopy(flat)
    split["groups"][0]["loops"][0]["ranks"] = {"B": None, "H": None, "M": 4, "P": 4}
    unkept = run_point(mapping_from_dict(split, "flat-m.yaml"), workload="bert-base", sets={"seq_len": 4096})
    assert not unkept.feasible and "GM is kept at no level" in unkept.reason
    assert "across loop M at DRAM" in unkept.reason
    split["groups"][0]["keep"] = {"GlobalBuffer": ["QK", "GM", "SD"]}
    spec = mapping_from_dict(split, "flat-m.yaml")
    library_flat, split_flat = (run_point(m, workload="bert-base", sets={"seq_len": 4096}) for m in ("flat", spec))
    assert split_flat.feasible
    assert split_flat.footprint_bytes["GlobalBuffer"] == library_flat.footprint_bytes["GlobalBuffer"] + 2 * 4096 * 2
    assert sum(split_flat.traffic_bytes["DRAM"].values()) >= sum(library_flat.traffic_bytes["DRAM"].values())


def test_a_mapping_that_fits_nowhere_states_the_least_room_it_needs() -> None:
    """At a 128 KiB buffer no query tile count fits; the reason named the largest candidate's 1,131,008 B (the
    library's 16 query tiles), though 192 KiB runs. It names the smallest candidate's room now."""
    small = FUSEMAX.with_changes(**{"memories.GlobalBuffer.capacity_bytes": 131072})
    result = run_point("fusemax", arch=small, **BERT_4K)
    assert not result.feasible and "GlobalBuffer holds 132608 B of tiles" in result.reason, result.reason
    assert run_point("fusemax", arch=FUSEMAX.with_changes(**{"memories.GlobalBuffer.capacity_bytes": 196608}),
                     **BERT_4K).feasible


def test_groups_that_read_a_later_groups_tensor_are_refused() -> None:
    """FuseMax's one group split in two, the 2-D array's Einsums and the 1-D array's: SLN reads RM (same step) and
    RM reads LM, so neither order can run one group after the other, yet both gave a feasible latency."""
    spec = library.load_mapping_spec("fusemax")
    group = spec.groups[0]
    two_d = [e for e in group.einsums if group.binding[e] == "array2d"]
    bindings = {name: {e: u for e, u in group.binding.items() if (e in two_d) == on_2d}
                for name, on_2d in (("arr2d", True), ("arr1d", False))}
    halves = [replace(group, name=name, binding=binding, einsums=tuple(binding), overlap="max")
              for name, binding in bindings.items()]
    for groups in (halves, halves[::-1]):
        with pytest.raises(SpecError, match=r"groups\[0\]\.binding\.\w+: \w+ reads \w+, which group arr[12]d writes "
                                            r"after group arr[12]d has run"):
            run_point(replace(spec, groups=tuple(groups)), **BERT_4K)
