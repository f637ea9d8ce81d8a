"""The mapper: fills every `search` factor of a mapping.

Bounded exhaustive search. For each group, every `search` loop takes a divisor of what its rank leaves after
the group's fixed factors (the largest spatial view counts), from that number's prime factorisation
(`archsim.mapping.factors`), so the cost does not grow with rank sizes. While the combinations of a group's
search loops exceed `max_candidates`, the loop with the most candidates keeps half of them, spread evenly in
log scale (1 always among them): at most `max_candidates` points are evaluated per group, each by the
`GroupEvaluator` the caller passes (the analytical model, from `archsim.point`: the mapper sits below the models and
imports none). The best feasible point minimises (latency, energy), ties going to the larger inner tiles,
i.e. the fewest refetches: on FuseMax this picks P1 = the largest factor of P/256 whose tiles fit the global
buffer, as `proposal.py` of the artifact does by formula. With no feasible candidate the least bad is
returned, so the evaluation reports why it does not fit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from collections.abc import Mapping as MappingType
from dataclasses import replace
from typing import Protocol

from archsim.arch.spec import Architecture
from archsim.cascade.bind import Binding
from archsim.errors import SpecError
from archsim.mapping.factors import divisors, spread
from archsim.mapping.resolve import check_bindings, check_group, concrete_factors
from archsim.mapping.spec import SEARCH, Group, Mapping

MAX_CANDIDATES = 256  # points evaluated per group (about 0.5 ms each with the analytical model)


class Evaluation(Protocol):
    """What the mapper reads of an evaluated candidate (`archsim.model.result.Result` has it)."""

    @property
    def feasible(self) -> bool: ...
    @property
    def latency_s(self) -> float: ...
    @property
    def energy_pj(self) -> float: ...
    @property
    def footprint_bytes(self) -> MappingType[str, float]: ...


# (mapping, group index) -> that group evaluated on its own; later groups may still hold `search` loops.
GroupEvaluator = Callable[[Mapping, int], Evaluation]


def search(binding: Binding, arch: Architecture, mapping: Mapping, evaluate_group: GroupEvaluator,
           max_candidates: int = MAX_CANDIDATES) -> Mapping:
    """`mapping` with every `search` factor filled, group by group. Assumes the names in the mapping were checked
    against the cascade and architecture (done here first) and that `evaluate_group(mapping, i)` scores group `i`
    alone, once per candidate; at most `max_candidates` (>= 1) candidates are scored per group."""
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1:
        raise SpecError("<python>", "search.max_candidates", f"expected a whole number >= 1, got {max_candidates!r}")
    check_bindings(binding, mapping)
    groups = []
    for i, g in enumerate(mapping.groups):
        check_group(binding, arch, g, mapping.source, f"groups[{i}]")
        groups.append(concrete_factors(binding, arch, g, mapping.source, f"groups[{i}]"))
    for gi, group in enumerate(groups):
        slots = [i for i, lp in enumerate(group.loops) if lp.factor == SEARCH]
        if not slots:
            continue
        options = _options([_free(binding, group, i) for i in slots], max_candidates)
        best_key, best = None, group
        # The all-ones combination is always among them and consistent, so `best` is always set.
        for combo in itertools.product(*options):
            if not _consistent(binding, group, dict(zip(slots, combo, strict=True))):
                continue
            trial = replace(mapping, groups=(*groups[:gi], group.with_factors(dict(zip(slots, combo, strict=True))),
                                             *groups[gi + 1:]))
            result = evaluate_group(trial, gi)
            key = (not result.feasible, result.latency_s, result.energy_pj, -sum(result.footprint_bytes.values()))
            if best_key is None or key < best_key:
                best_key, best = key, trial.groups[gi]
        groups[gi] = best
    return replace(mapping, groups=tuple(groups))


def _options(free: list[int], max_candidates: int) -> list[list[int]]:
    """Candidate factors per search loop, largest first, whose combinations number at most `max_candidates`."""
    options = [divisors(n, max_candidates) for n in free]
    while math.prod(map(len, options)) > max_candidates:
        widest = max(range(len(options)), key=lambda j: len(options[j]))
        options[widest] = sorted(spread(sorted(options[widest]), len(options[widest]) // 2), reverse=True)
    return options


def _free(binding: Binding, group: Group, slot: int) -> int:
    """What rank of loop `slot` leaves after the fixed factors (the largest spatial split)."""
    rank = group.loops[slot].rank
    temporal = math.prod(lp.factor for lp in group.loops
                         if lp.rank == rank and not lp.is_spatial and isinstance(lp.factor, int))
    spatial: dict[str, int] = {}
    for lp in group.loops:
        if lp.rank == rank and lp.is_spatial:
            spatial[lp.spatial] = spatial.get(lp.spatial, 1) * lp.factor
    return binding.rank_sizes[rank] // (temporal * max(spatial.values(), default=1))


def _consistent(binding: Binding, group: Group, chosen: dict[int, int]) -> bool:
    """Two search loops over one rank must not together exceed it."""
    by_rank: dict[str, int] = {}
    for i, factor in chosen.items():
        rank = group.loops[i].rank
        by_rank[rank] = by_rank.get(rank, 1) * factor
    return all(_free(binding, group, next(i for i in chosen if group.loops[i].rank == r)) % f == 0
               for r, f in by_rank.items())
