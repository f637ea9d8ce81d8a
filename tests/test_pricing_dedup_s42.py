"""One pricing for one point and for columns (`archsim.model.analytical.totals`, which `archsim.model.batch` runs on
numpy columns): guards of what each use relies on.

- One point's Result holds Python numbers (the mapper's path runs no numpy; a Result's JSON does not depend on it).
- A level with a bandwidth at some points of a column and none at others (an architecture without one) is priced
  as each point alone: its memory time is its bytes over its bandwidth, or none.
- The overlap expression's cycles (`archsim.mapping.overlap.compile_pipeline`) are the expression's at each point of a
  column: `max` elementwise, and on one point's numbers `max`'s own (the first of equals).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from archsim.mapping.overlap import compile_pipeline, parse_pipeline
from archsim.model.analytical import evaluate
from archsim.model.batch import evaluate_points
from archsim.point import prepare

GIB = 2**30
DRAM_BW = "memories.DRAM.bandwidth_bytes_per_s"


def _python_numbers(value: object, where: str) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _python_numbers(inner, f"{where}[{key}]")
    else:
        assert type(value) in (int, float), f"{where} is {type(value).__name__} {value!r}"


@pytest.mark.parametrize("name", ["flat", "fusemax"])
def test_one_point_is_priced_with_python_numbers(name: str) -> None:
    """FLAT on BERT at 4K tokens spills its score block (33,816,576 B of tiles in a 33,554,432 B global buffer, the
    analytical model's docstring), FuseMax runs a pipeline expression: both paths of the pricing, on one point."""
    p = prepare(name, workload="bert-base", sets={"seq_len": 4096})
    result = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    assert result.feasible
    if name == "flat":
        assert result.footprint_bytes["GlobalBuffer"] == 33_816_576 > p.arch.memory("GlobalBuffer").capacity_bytes
    for field in ("latency_s", "energy_pj", "compute_cycles", "area_um2", "memory_s", "traffic_bytes",
                  "utilization", "footprint_bytes"):
        _python_numbers(getattr(result, field), field)
    _python_numbers({f"{c}.{a}": v for (c, a), v in result.energy_by.items()}, "energy_by")
    for e in result.einsums:
        _python_numbers({"compute_cycles": e.compute_cycles, "energy_pj": e.energy_pj}, e.name)


def test_a_level_with_no_bandwidth_at_some_points_is_priced_as_each_point_alone() -> None:
    """FLAT at 4K tokens moves 402,653,184 B of AV, 3 x 6,442,450,944 B of Q, K and V and 1,409,286,144 B of its
    spilled scores through DRAM: 21,139,292,160 B, 0.04921875 s at 400 GiB/s; with no bandwidth, no memory time."""
    p = prepare("flat", workload="bert-base", sets={"seq_len": 4096})
    limited = p.arch.with_changes(**{DRAM_BW: 400 * GIB})
    unlimited = p.arch.with_changes(**{DRAM_BW: None})
    points = [(p.binding, p.analysis, arch, p.mapping) for arch in (limited, unlimited)]
    batch = evaluate_points(points)
    assert batch.memory_s["DRAM"].tolist() == [21_139_292_160 / (400 * GIB), 0.0] == [0.04921875, 0.0]
    for i, point in enumerate(points):
        assert json.dumps(batch.result(i).to_dict()) == json.dumps(evaluate(*point).to_dict())
        assert batch.latency_s[i] == evaluate(*point).latency_s


def test_the_overlap_expressions_cycles_over_columns_are_its_cycles_at_each_point() -> None:
    """max(A, B) + C * D by hand: point 0 max(1, 3) + 10 x 2 = 23, point 1 max(5, 2) + 10 x 2 = 25."""
    cycles = compile_pipeline(parse_pipeline("max(A, B) + C * D"))
    columns = cycles({"A": np.array([1.0, 5.0]), "B": np.array([3.0, 2.0]), "C": 10.0, "D": 2})
    assert columns.tolist() == [23.0, 25.0]
    for i, expected in enumerate((23.0, 25.0)):
        one = cycles({"A": [1.0, 5.0][i], "B": [3.0, 2.0][i], "C": 10.0, "D": 2})
        assert type(one) is float and one == expected
    first = compile_pipeline(parse_pipeline("max(A, B)"))({"A": 2, "B": 2.0})
    assert type(first) is int  # max's first of equals, as one point's numbers always had
