"""A sweep's architecture points that bind the same sizes, evaluated together: the mapper's candidates shared, each
planned once and priced for all the points that share it.

`Variants` are such points' architectures: one base and, per point, the base with some numeric fields changed (the
sweep's `arch.` axes and what its linked axes set), as columns. Assumptions, each relied on for exactness:
- A plan depends on the binding, the analysis, the mapping and an architecture's names (levels, units, the number
  of dimensions of each unit's shape, ops, actions) and what its factor expressions read, the capacities and unit
  shapes they name (`archsim.model.plan`, `archsim.mapping.resolve.numbers_read`), so every variant is planned on
  `base`, one object the sweep keeps, and the model's plans (remembered per object) serve every batch. A mapping
  whose factor expressions read numbers is planned per point.
- The mapper's candidates and the chosen mappings hold no factor expressions: the mapper evaluates them per
  variant, once per distinct capacities and shapes they read (`archsim.mapping.mapper`; FLAT's tiles are its
  array's width, so a sweep over the array gives each width its own tiles: tests/test_fanout_sweep_s32.py).
- With COLUMNS_FROM or more points sharing a plan, they are priced as numpy columns
  (`archsim.model.batch.evaluate_columns`), which applies the single path's float operations in the same order;
  fewer, or columns the batch path refuses (a SpecError), are priced one by one with the single path
  (`archsim.model.analytical.price`). A candidate is scored on its own group (`only_group`).
Choices and records equal the single path's (`archsim.point.prepare` then `evaluate`):
tests/test_mapper_same_choice.py, tests/test_sweep_grouped.py.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import Analysis
from archsim.cascade.bind import Binding
from archsim.errors import SpecError
from archsim.mapping.mapper import Score, score, score_of, search_many
from archsim.mapping.spec import SEARCH, Mapping
from archsim.model.analytical import numbers_of, plans, price
from archsim.model.batch import BatchResult, evaluate_columns
from archsim.record import Record

# Points sharing a plan from which they are priced as columns: a batch call costs ~0.75 ms whatever the points up
# to a few hundred, the single path ~95 us a point (a FuseMax group on this shared 2-core machine).
COLUMNS_FROM = 8


@dataclass(frozen=True)
class Variants:
    """Architectures of the same names, `archs[i]` being `base` with field `path` set to `numbers[path][i]` for each
    path (`Architecture.with_changes`); `numbers` is None where they are not columns (a field the batch path does
    not vary, a value that is not a number)."""

    base: Architecture
    archs: Sequence[Architecture]
    numbers: MappingType[str, np.ndarray] | None


def structure(arch: Architecture) -> tuple:
    """An architecture's names: its levels and their actions, its units with the number of dimensions of their shape,
    their ops and actions (what its variants must share)."""
    return (tuple((m.name, tuple(m.energy.actions_pj)) for m in arch.memories),
            tuple((u.name, len(u.shape), tuple(u.op_cycles), tuple(u.energy.actions_pj)) for u in arch.units))


def choose_mappings(binding: Binding, analysis: Analysis, variants: Variants, spec: Mapping) -> list[Mapping]:
    """The mapper's choice of `spec` on each variant, what `archsim.point.prepare` chooses on it alone."""

    def score_groups(trial: Mapping, group: int, indices: Sequence[int]) -> list[Score]:
        batch = _columns(binding, analysis, variants, indices, trial, group)
        if batch is None:
            return [score(price(binding, trial.name, numbers_of(variants.archs[i]), planned))
                    for i, planned in zip(indices, _plans(binding, analysis, variants, indices, trial, group),
                                          strict=True)]
        footprint = sum(batch.footprint_bytes.values(), np.zeros(len(indices)))
        return [score_of(*point) for point in zip(batch.feasible.tolist(), batch.latency_s.tolist(),
                                                  batch.energy_pj.tolist(), footprint.tolist(), strict=True)]

    return search_many(binding, variants.archs, spec, score_groups)


def records(binding: Binding, analysis: Analysis, variants: Variants, mappings: Sequence[Mapping]) -> list[Record]:
    """The record of `evaluate(binding, analysis, variants.archs[i], mappings[i])` for each i (the mapper's choices:
    variants with equal choices share a Mapping object, and are priced together)."""
    out: list[Record | None] = [None] * len(mappings)
    by_mapping: dict[int, tuple[Mapping, list[int]]] = {}
    for i, mapping in enumerate(mappings):
        by_mapping.setdefault(id(mapping), (mapping, []))[1].append(i)
    for mapping, indices in by_mapping.values():
        batch = _columns(binding, analysis, variants, indices, mapping, None)
        if batch is None:
            each = [price(binding, mapping.name, numbers_of(variants.archs[i]), planned).record()
                    for i, planned in zip(indices, _plans(binding, analysis, variants, indices, mapping, None),
                                          strict=True)]
        else:
            each = batch.records()
        for i, record in zip(indices, each, strict=True):
            out[i] = record
    return out


def _columns(binding: Binding, analysis: Analysis, variants: Variants, indices: Sequence[int], mapping: Mapping,
             only_group: int | None) -> BatchResult | None:
    """The variants at `indices` evaluated as columns (`mapping`'s group `only_group` alone, or all), or None where
    they are priced one by one."""
    if variants.numbers is None or len(indices) < COLUMNS_FROM or _reads_numbers(mapping, only_group):
        return None
    at = np.asarray(indices)
    try:
        return evaluate_columns(binding, analysis, variants.base, mapping,
                                {path: column[at] for path, column in variants.numbers.items()}, only_group)
    except SpecError:
        return None


def _plans(binding: Binding, analysis: Analysis, variants: Variants, indices: Sequence[int], mapping: Mapping,
           only_group: int | None) -> list[tuple]:
    """The plans of `mapping` (its group `only_group`, or all) for each variant at `indices`."""
    if _reads_numbers(mapping, only_group):
        return [plans(binding, analysis, variants.archs[i], mapping, only_group) for i in indices]
    return [plans(binding, analysis, variants.base, mapping, only_group)] * len(indices)


def _reads_numbers(mapping: Mapping, only_group: int | None) -> bool:
    """Whether a factor expression of the planned groups is left (it may read a capacity or a unit's shape)."""
    return any(isinstance(lp.factor, str) and lp.factor != SEARCH
               for i, g in enumerate(mapping.groups) if only_group is None or i == only_group for lp in g.loops)
