"""The mapper run on many architectures at once (`archsim.point.choose_mappings`: candidates shared by the points
whose choices so far agree, each candidate planned once and priced per architecture) chooses what the plain
search chooses on each architecture alone, and `evaluate_many` gives the Results `evaluate` gives.

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
from archsim.mapping.mapper import search
from archsim.model.analytical import evaluate
from archsim.point import bound, choose_mappings, evaluate_many

CASES = [  # mapping, workload, the sizes of each binding
    ("fusemax", "bert-base", [{"seq_len": 4096}, {"seq_len": 65536}]),
    ("unfused", "bert-base", [{"seq_len": 16384}]),
    ("linear-ffn-fusemax", "bert-base", [{"seq_len": 4096}]),
]
POINTS_PER_BINDING = 12


def _random_archs(base, rng: np.random.Generator, n: int) -> list:
    archs = []
    for _ in range(n):
        changes = {"memories.GlobalBuffer.capacity_bytes": int(2 ** rng.uniform(16, 26)),
                   "memories.DRAM.bandwidth_bytes_per_s": float(rng.uniform(2e10, 2e12)),
                   "clock_hz": float(rng.choice([5e8, 9.4e8, 1.5e9]))}
        archs.append(base.with_changes(**changes))
    return archs


def _plain_search(binding, analysis, arch, spec):
    """The mapper on one architecture, each candidate evaluated alone (what `archsim.point.prepare` does)."""
    return search(binding, arch, spec, lambda trial, group: evaluate(binding, analysis, arch, trial, only_group=group))


@pytest.mark.parametrize("mapping_name, workload_name, sizes", CASES)
def test_grouped_mapper_chooses_as_the_plain_search(mapping_name, workload_name, sizes) -> None:
    rng = np.random.default_rng(17)
    spec = library.load_mapping_spec(mapping_name)
    cascade = library.load_cascade_spec(spec.cascade)
    base = library.load_architecture_spec(spec.architecture)
    workload = library.load_workload_spec(workload_name) if workload_name else None
    feasible = infeasible = 0
    for sets in sizes:
        binding, analysis = bound(cascade, workload, sets, spec)
        archs = _random_archs(base, rng, POINTS_PER_BINDING)
        chosen = choose_mappings(binding, analysis, archs, spec)
        for arch, mapping in zip(archs, chosen, strict=True):
            result = evaluate_many(binding, analysis, [arch], mapping)[0]
            alone = copy.deepcopy(arch)
            plain = _plain_search(binding, analysis, alone, spec)
            assert mapping.groups == plain.groups, (mapping_name, sets)
            reference = evaluate(binding, analysis, alone, plain)
            assert json.dumps(result.record().flat()) == json.dumps(reference.record().flat())
            assert result.energy_by == reference.energy_by and result.traffic_bytes == reference.traffic_bytes
            feasible += reference.feasible
            infeasible += not reference.feasible
    assert feasible  # the draw reaches points that fit ...
    assert infeasible or mapping_name != "fusemax"  # ... and, for FuseMax's long sequences, points that do not


def test_evaluate_many_prices_one_plan_per_architecture_like_evaluate() -> None:
    """Architectures alike in names share a plan; each is priced with its own numbers, so a slower DRAM is slower."""
    spec = library.load_mapping_spec("fusemax")
    binding, analysis = bound(library.load_cascade_spec(spec.cascade), library.load_workload_spec("bert-base"),
                              {"seq_len": 16384}, spec)
    base = library.load_architecture_spec(spec.architecture)
    archs = [base.with_changes(**{"memories.DRAM.bandwidth_bytes_per_s": bw}) for bw in (1e10, 1e11, 1e12)]
    mapping = choose_mappings(binding, analysis, archs[-1:], spec)[0]
    many = evaluate_many(binding, analysis, archs, mapping)
    for arch, result in zip(archs, many, strict=True):
        assert result.record() == evaluate(binding, analysis, copy.deepcopy(arch), mapping).record()
    # At 10 GB/s the attention is memory bound: its DRAM traffic over the bandwidth is its time.
    assert many[0].latency_s == pytest.approx(many[0].dram_traffic_bytes() / 1e10)
    assert many[0].latency_s > many[1].latency_s >= many[2].latency_s
