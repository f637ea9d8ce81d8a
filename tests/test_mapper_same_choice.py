"""The mapper run on many architectures at once (`archsim.dse.grouped.choose_mappings`: candidates shared by the
points whose choices so far agree, each candidate planned once and priced for all of them, as numpy columns or one
by one) chooses what the plain search chooses on each architecture alone, and `grouped.records` gives the records
of `evaluate`.

The plain reference runs on a copy of each architecture (a new object, so nothing remembered per architecture
object is shared with the grouped run). Points: random global-buffer capacities (64 KiB to 64 MiB, log-uniform,
small enough that some candidates and some points do not fit), DRAM bandwidths and clocks, on a single-group
mapping (FuseMax), a three-group one with two searched groups (unfused: points may part ways after the first
group) and a two-group one with two searched loops per group (the FFN GEMMs).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from archsim import library
from archsim.dse import grouped
from archsim.dse.grouped import COLUMNS_FROM, Variants, choose_mappings, records
from archsim.mapping.mapper import search
from archsim.model.analytical import evaluate
from archsim.model.batch import evaluate_columns
from archsim.point import bound

CASES = [  # mapping, workload, the sizes of each binding
    ("fusemax", "bert-base", [{"seq_len": 4096}, {"seq_len": 65536}]),
    ("unfused", "bert-base", [{"seq_len": 16384}]),
    ("linear-ffn-fusemax", "bert-base", [{"seq_len": 4096}]),
]
POINTS_PER_BINDING = 2 * COLUMNS_FROM  # enough that candidates shared by many points are priced as columns


def _random_variants(base, rng: np.random.Generator, n: int, columns: bool) -> Variants:
    numbers = {"memories.GlobalBuffer.capacity_bytes": np.floor(2 ** rng.uniform(16, 26, n)),
               "memories.DRAM.bandwidth_bytes_per_s": rng.uniform(2e10, 2e12, n),
               "clock_hz": rng.choice([5e8, 9.4e8, 1.5e9], n)}
    archs = [base.with_changes(**{path: float(column[i]) for path, column in numbers.items()}) for i in range(n)]
    return Variants(base, archs, numbers if columns else None)


def _plain_search(binding, analysis, arch, spec):
    """The mapper on one architecture, each candidate evaluated alone (what `archsim.point.prepare` does)."""
    return search(binding, arch, spec, lambda trial, group: evaluate(binding, analysis, arch, trial, only_group=group))


@pytest.mark.parametrize("columns", [True, False], ids=["columns", "one-by-one"])
@pytest.mark.parametrize("mapping_name, workload_name, sizes", CASES)
def test_grouped_mapper_chooses_as_the_plain_search(mapping_name, workload_name, sizes, columns, monkeypatch) -> None:
    batch_calls = []
    monkeypatch.setattr(grouped, "evaluate_columns", lambda *args: batch_calls.append(args) or evaluate_columns(*args))
    rng = np.random.default_rng(17)
    spec = library.load_mapping_spec(mapping_name)
    cascade = library.load_cascade_spec(spec.cascade)
    base = library.load_architecture_spec(spec.architecture)
    workload = library.load_workload_spec(workload_name) if workload_name else None
    feasible = infeasible = 0
    for sets in sizes:
        binding, analysis = bound(cascade, workload, sets, spec)
        variants = _random_variants(base, rng, POINTS_PER_BINDING, columns)
        chosen = choose_mappings(binding, analysis, variants, spec)
        for arch, mapping, record in zip(variants.archs, chosen, records(binding, analysis, variants, chosen),
                                         strict=True):
            alone = copy.deepcopy(arch)
            plain = _plain_search(binding, analysis, alone, spec)
            assert mapping.groups == plain.groups, (mapping_name, sets)
            reference = evaluate(binding, analysis, alone, plain)
            assert json.dumps(record.flat()) == json.dumps(reference.record().flat())
            feasible += reference.feasible
            infeasible += not reference.feasible
    # Columns price the candidates shared by enough points (each on its own group), and the chosen mappings.
    assert bool(batch_calls) == columns
    assert feasible  # the draw reaches points that fit ...
    assert infeasible or mapping_name != "fusemax"  # ... and, for FuseMax's long sequences, points that do not
