"""Labelled points: a `Result` with the architecture and cascade it came from, named for a figure's legend.

The report tables need more than a `Result` holds: the architecture's clock, lanes and bandwidths (ceilings),
the cascade's tensor references (which Einsum touches which tensor) and the mapping's pipelined Einsums (an op
chain issuing one point per cycle beats one op per cycle). This module gathers them:
- `from_run`: one point from a (mapping, cascade, architecture, workload, overrides) run, labelled by its mapping.
- `fusemax_configs`: the FuseMax paper's five configurations at one model and length, labelled by config. The
  mapping, architecture and cascade are loaded by the names the Result records (`fusemax.attention_result`
  evaluates library mappings on their own library architectures and cascades, so the names resolve).
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType
from dataclasses import dataclass

from archsim import library
from archsim.arch.spec import Architecture
from archsim.cascade.ir import Cascade
from archsim.mapping.spec import Mapping
from archsim.model.analytical import evaluate
from archsim.model.result import Result
from archsim.point import Point, prepare
from archsim.systems import fusemax


@dataclass(frozen=True)
class Labelled:
    """One evaluated design point with the specs it ran and the label a report shows it under."""

    label: str  # legend entry, bar name, row key
    result: Result
    arch: Architecture
    cascade: Cascade
    mapping: Mapping


def from_run(mapping: str, *, cascade: str | None = None, arch: str | None = None, workload: str | None = None,
             sets: MappingType[str, float] | None = None, sets_source: str = "sets") -> Labelled:
    """Evaluate one design point with the analytical model (mapper included) and label it by its mapping; an
    infeasible point carries no numbers (`Result.answered`). `sets_source` as `prepare`'s."""
    point = prepare(mapping, cascade=cascade, arch=arch, workload=workload, sets=sets, sets_source=sets_source)
    return labelled(point, evaluate(point.binding, point.analysis, point.arch, point.mapping).answered())


def labelled(point: Point, result: Result) -> Labelled:
    """`result` (of either model) on the prepared `point`, labelled by its mapping."""
    return Labelled(result.mapping, result, point.arch, point.binding.cascade, point.mapping)


def fusemax_configs(model: str, seq_len: int) -> list[Labelled]:
    """The five configurations of FuseMax's Figs. 6-11 (unfused, flat, cascade, arch, fusemax) at one point."""
    points = []
    for config in fusemax.CONFIGS:
        result = fusemax.attention_result(config, model, seq_len)
        points.append(Labelled(config, result, library.load_architecture_spec(result.architecture),
                               library.load_cascade_spec(result.cascade), library.load_mapping_spec(result.mapping)))
    return points
