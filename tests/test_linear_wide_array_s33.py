"""The linear-layer mappings on an array wider than a rank's size divides: each spatial factor is
`divisor_at_most(RANK, fanout(array2d, AXIS))`, the largest tile of the rank that fits the array's side, so BERT-Base's
D = 768 on a 512-wide array takes 384 columns (0.75 of the array) instead of refusing the point (`SpecError: rank D:
size 768 is not a multiple of the other factors (512)`), and a rank of prime size takes 1."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.dse.spec import load_sweep
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError
from archsim.mapping.resolve import check_names, concrete_factors, numbers_read
from archsim.point import prepare, run_point

LINEAR = ("linear-qkv-fusemax", "linear-ffn-fusemax", "linear-out-fusemax", "linear-qkv-flat", "linear-ffn-flat",
          "linear-out-flat")
BERT_4K = {"workload": "bert-base", "sets": {"seq_len": 4096}}
FAST_DRAM = {"memories.DRAM.bandwidth_bytes_per_s": 1e18}  # no transfer stalls: the time is the arrays' compute


def _wide(mapping: str, pe_dim: int = 512, **changes: object):
    """The architecture `mapping` names with a pe_dim x pe_dim 2-D array and a pe_dim 1-D array."""
    arch = library.load_architecture_spec(library.load_mapping_spec(mapping).architecture)
    return arch.with_changes(**{"units.array2d.shape": [pe_dim, pe_dim], "units.array1d.shape": [pe_dim]}, **changes)


def _spatial(mapping, unit: str, rank: str) -> list[int]:
    """The factors of the spatial loops over `rank` on `unit`, group by group."""
    return [lp.factor for g in mapping.groups for lp in g.loops if lp.spatial == unit and lp.rank == rank]


@pytest.mark.parametrize("name", LINEAR)
def test_a_512_wide_array_tiles_bert_base_with_384_columns(name: str) -> None:
    """BERT-Base's hidden size D = 768 = 2^8 x 3: the largest divisor at most 512 is 384 (768 / 2); P = 4096 takes
    the whole 512 rows. The point runs, with a finite latency, where it raised a SpecError."""
    point = prepare(name, arch=_wide(name), **BERT_4K)
    assert set(_spatial(point.mapping, "array2d", "D")) == {384}
    assert set(_spatial(point.mapping, "array2d", "P")) == {512}
    result = run_point(name, arch=_wide(name), **BERT_4K)
    assert result.feasible, result.reason
    assert math.isfinite(result.latency_s) and result.latency_s > 0


@pytest.mark.parametrize("name", ["linear-qkv-fusemax", "linear-out-fusemax", "linear-qkv-flat", "linear-out-flat"])
def test_the_array_is_used_at_384_of_512_columns(name: str) -> None:
    """Each GEMM uses 512 x 384 of the 512 x 512 PEs, so with DRAM never stalling (the time is the array's compute)
    the 2-D array's utilization is 384 / 512 = 0.75, not 1: the columns left idle are counted."""
    result = run_point(name, arch=_wide(name, **FAST_DRAM), **BERT_4K)
    assert {e.lanes_used for e in result.einsums} == {512 * 384}
    assert result.utilization["array2d"] == pytest.approx(0.75, rel=1e-9)


def test_the_ffn_gemms_use_384_columns_and_the_gelu_all_512_rows() -> None:
    """FFN1 spreads P x D (512 x 384), FFN2 P x D (512 x 384, D its output columns); the GELU spreads P over the
    1-D array's 512 lanes. Busy PE-cycles of the 2-D array never exceed 0.75 of its PEs x the time."""
    result = run_point("linear-ffn-fusemax", arch=_wide("linear-ffn-fusemax", **FAST_DRAM), **BERT_4K)
    lanes = {e.name: e.lanes_used for e in result.einsums}
    assert lanes == {"H1": 512 * 384, "A": 512, "Y": 512 * 384}
    assert 0 < result.utilization["array2d"] <= 0.75 + 1e-12


def test_the_256_array_keeps_its_tiles() -> None:
    """On the FuseMax reproduction's 256 x 256 array BERT-Base's 768 and 4096 are multiples of 256: the tiles are
    the array's side, as the artifact's are."""
    for name in LINEAR:
        point = prepare(name, **BERT_4K)
        assert set(_spatial(point.mapping, "array2d", "D")) == {256}
        assert set(_spatial(point.mapping, "array2d", "P")) == {256}


@pytest.mark.parametrize("name", ["linear-qkv-fusemax", "linear-ffn-fusemax", "linear-out-fusemax"])
def test_a_prime_d_takes_factor_1_and_rows_keep_the_whole_side(name: str) -> None:
    """D = 769 (a prime) has no divisor between 2 and 256, so its spatial factor is 1, and it runs, where the
    fan-out as the factor refused it. The rows (P) keep the array's side: one token a sequence (P = 1, as a system
    binds its dense ops) stays refused naming rank P, not run 256 times slower at one row in 256."""
    sets = {"seq_len": 4096, "hidden": 769}
    point = prepare(name, workload="bert-base", sets=sets)
    assert set(_spatial(point.mapping, "array2d", "D")) == {1}
    result = run_point(name, workload="bert-base", sets=sets)
    assert result.feasible, result.reason
    assert math.isfinite(result.latency_s)
    with pytest.raises(SpecError, match="rank P"):
        prepare(name, workload="bert-base", sets={"seq_len": 1})


def _factor(expression: str) -> int:
    """The value `concrete_factors` gives `expression` as the factor of linear-out-fusemax's spatial D loop."""
    point = prepare("linear-out-fusemax", **BERT_4K)
    spec = library.load_mapping_spec("linear-out-fusemax")
    group = spec.groups[0]
    i = next(i for i, lp in enumerate(group.loops) if lp.spatial == "array2d" and lp.rank == "D")
    loops = tuple(replace(lp, factor=expression) if j == i else lp for j, lp in enumerate(group.loops))
    concrete = concrete_factors(point.binding, point.arch, replace(group, loops=loops), spec.source, "groups[0]")
    return concrete.loops[i].factor


def test_divisor_at_most_values() -> None:
    """The largest divisor of n at most k, against the definition by trial division; n itself when k >= n, 1 for a
    prime n above k; the names and calls of the vocabulary as arguments (D = 768 in BERT-Base, the array 256)."""
    for n, k, expected in ((768, 512, 384), (768, 256, 256), (768, 1000, 768), (97, 96, 1), (1, 256, 1),
                           (4096, 1, 1), (12, 5, 4), (12, 4.5, 4), (360, 7, 6)):
        assert _factor(f"divisor_at_most({n}, {k})") == expected, (n, k)
    for n in range(1, 61):
        for k in range(1, 64):
            expected = max(d for d in range(1, n + 1) if n % d == 0 and d <= k)
            assert _factor(f"divisor_at_most({n}, {k})") == expected, (n, k)
    assert _factor("divisor_at_most(D, fanout(array2d, 1))") == 256
    assert _factor("divisor_at_most(D, 2 * fanout(array2d, 1))") == 384


@pytest.mark.parametrize(("expression", "says"), [
    ("divisor_at_most(D, 0)", "k gives 0, expected a number >= 1"),
    ("divisor_at_most(D, 1 - fanout(array2d, 1))", "k gives -255, expected a number >= 1"),
    ("divisor_at_most(D / 5, 256)", "n gives 153.6, expected a whole number"),
])
def test_a_bad_use_of_divisor_at_most_is_refused_naming_the_loop(expression: str, says: str) -> None:
    with pytest.raises(SpecError) as error:
        _factor(expression)
    assert error.value.where == "groups[0].loops[2].ranks.D"
    assert "divisor_at_most(n, k)" in error.value.message and says in error.value.message


def test_the_linear_mappings_pass_check_and_read_the_arrays_they_name() -> None:
    """`archsim check`'s name check knows divisor_at_most (and checks its arguments), and what the mapper's and the
    batch path's caches key on (`numbers_read`) still names the arrays the fan-outs inside it read."""
    for name in LINEAR:
        spec = library.load_mapping_spec(name)
        point = prepare(name, **BERT_4K)
        check_names(point.binding.cascade, point.arch, spec)
        units = {"array2d", "array1d"} if "ffn" in name else {"array2d"}
        assert numbers_read(spec) == (frozenset(), frozenset(units))
    spec = library.load_mapping_spec("linear-out-fusemax")
    group = spec.groups[0]
    bad = tuple(replace(lp, factor="divisor_at_most(Q, 256)") if lp.spatial and lp.rank == "D" else lp
                for lp in group.loops)
    with pytest.raises(SpecError, match="unknown name 'Q'"):
        check_names(point.binding.cascade, point.arch, replace(spec, groups=(replace(group, loops=bad),)))


LINEAR_PE = """\
name: linear-pe
description: linear-qkv-fusemax over the array's side
mapping: linear-qkv-fusemax
workload: bert-base
axes:
  linked.pe_dim:
    values: [256, 512]
    set:
      arch.units.array2d.shape: [pe_dim, pe_dim]
      arch.units.array1d.shape: [pe_dim]
  workload.seq_len: [4096]
sampling: {kind: grid}
objectives: [latency_s, energy_pj]
"""


def test_a_sweep_over_the_array_gives_the_512_point_a_row_with_its_own_tiles(tmp_path) -> None:
    """The 512-wide point was an infeasible row; now both rows are feasible, each with run_point's latency."""
    path = tmp_path / "linear_pe.yaml"
    path.write_text(LINEAR_PE)
    frame = run_sweep(load_sweep(path), tmp_path / "linear_pe.sqlite")
    assert len(frame) == 2
    for row in frame.to_dict("records"):
        pe_dim = int(row["linked.pe_dim"])
        alone = run_point("linear-qkv-fusemax", arch=_wide("linear-qkv-fusemax", pe_dim), **BERT_4K)
        assert bool(row["feasible"]) and alone.feasible, row
        assert row["latency_s"] == pytest.approx(alone.latency_s, rel=1e-12), pe_dim
