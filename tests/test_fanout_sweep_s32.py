"""Mappings whose factor expressions read `fanout(UNIT, AXIS)` (FLAT's tiles are the array's width) give each
architecture of a sweep its own factors: the mapper's cache of concrete factors and the batch path's grouping are
keyed on the unit shapes a fanout reads as well as the capacities a `capacity(...)` reads, and `evaluate_columns`
refuses a shape column that a fanout reads (it would change the plan)."""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.dse.spec import load_sweep
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.model.batch import evaluate_columns, evaluate_points
from archsim.point import prepare, run_point

FLAT_PE = """\
name: flat-pe
description: flat over array size
mapping: flat
workload: bert-base
axes:
  linked.pe_dim:
    values: [128, 256, 512]
    set:
      arch.units.array2d.shape: [pe_dim, pe_dim]
      arch.units.array1d.shape: [pe_dim]
  workload.seq_len: [4096, 16384]
sampling: {kind: grid}
objectives: [latency_s, energy_pj]
"""
PE_DIMS = (128, 256, 512)


def _flat_arch(pe_dim: int):
    return library.load_architecture_spec("flat").with_changes(
        **{"units.array2d.shape": (pe_dim, pe_dim), "units.array1d.shape": (pe_dim,)})


def test_sweep_over_array_size_gives_each_point_its_own_tiles(tmp_path) -> None:
    """Every point of a FLAT sweep over the array's width has run_point's latency (the batch used to give every
    width the factors of the first one it resolved: 512 wide at 4K tokens twice run_point's latency)."""
    path = tmp_path / "flat_pe.yaml"
    path.write_text(FLAT_PE)
    frame = run_sweep(load_sweep(path), tmp_path / "flat_pe.sqlite")
    assert len(frame) == 6
    mapping = library.load_mapping_spec("flat")
    for row in frame.to_dict("records"):
        pe_dim, seq_len = int(row["linked.pe_dim"]), int(row["workload.seq_len"])
        alone = run_point(mapping, arch=_flat_arch(pe_dim), workload="bert-base", sets={"seq_len": seq_len})
        assert bool(row["feasible"]) == alone.feasible
        assert row["latency_s"] == pytest.approx(alone.latency_s, rel=1e-12), (pe_dim, seq_len)


def test_evaluate_points_groups_by_the_shapes_a_fanout_reads() -> None:
    """The flat spec (its expressions unevaluated) on three widths: each priced with its own tiles."""
    spec = library.load_mapping_spec("flat")
    p = prepare(spec, arch=_flat_arch(256), workload="bert-base", sets={"seq_len": 4096})
    archs = [_flat_arch(d) for d in PE_DIMS]
    batch = evaluate_points([(p.binding, p.analysis, arch, spec) for arch in archs])
    for i, arch in enumerate(archs):
        single = evaluate(p.binding, p.analysis, arch, spec)
        assert batch.latency_s[i] == pytest.approx(single.latency_s, rel=1e-12)
        assert bool(batch.feasible[i]) == single.feasible
    assert len(set(batch.latency_s.tolist())) == 3


def test_evaluate_columns_refuses_a_shape_column_a_fanout_reads() -> None:
    """A `units.array2d.shape` column changes what FLAT's fanout(array2d, ...) gives, so the plan: refused, as a
    capacity column that a capacity(...) reads is; a shape the expressions do not read is priced."""
    spec = library.load_mapping_spec("flat")
    base = _flat_arch(256)
    p = prepare(spec, arch=base, workload="bert-base", sets={"seq_len": 4096})
    with pytest.raises(SpecError, match=r"fanout\(array2d"):
        evaluate_columns(p.binding, p.analysis, base, spec,
                         {"units.array2d.shape": np.array([[d, d] for d in PE_DIMS])})
    with pytest.raises(SpecError, match=r"fanout\(array1d"):
        evaluate_columns(p.binding, p.analysis, base, spec, {"units.array1d.shape": np.array([[d] for d in PE_DIMS])})
    clocks = np.array([0.5e9, 1e9])
    cols = evaluate_columns(p.binding, p.analysis, base, spec, {"clock_hz": clocks})
    for i, clock in enumerate(clocks):
        single = evaluate(p.binding, p.analysis, base.with_changes(clock_hz=float(clock)), spec)
        assert cols.latency_s[i] == pytest.approx(single.latency_s, rel=1e-12)


def test_numbers_read_names_the_levels_and_units_the_expressions_read() -> None:
    """FLAT's factor expressions read the global buffer's capacity and both arrays' shapes; FuseMax's none."""
    from archsim.mapping.resolve import numbers_read

    assert numbers_read(library.load_mapping_spec("flat")) == (frozenset({"GlobalBuffer"}),
                                                               frozenset({"array2d", "array1d"}))
    assert numbers_read(library.load_mapping_spec("fusemax")) == (frozenset(), frozenset())
