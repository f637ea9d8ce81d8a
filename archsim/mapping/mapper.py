"""The mapper: fills every `search` factor of a mapping.

For each group, every `search` loop takes a divisor of what its rank leaves after the group's fixed factors (the
largest spatial view counts), from that number's prime factorisation (`archsim.mapping.factors`), so the cost does
not grow with rank sizes. On a rank with no residual loop (none leaves its factor out), the last `search` loop over
it takes what the others leave, so every candidate's factors multiply to the rank size, as the models require.
Each candidate is scored by the `GroupEvaluator` the caller passes (the analytical model, from `archsim.point`: the
mapper sits below the models and imports none). The best feasible candidate minimises (latency, energy), ties
going to the larger inner tiles, i.e. the fewest refetches: on FuseMax this picks P1 = the largest factor of P/256
whose tiles fit the global buffer, as `proposal.py` of the artifact does by formula. With no feasible candidate
the least bad is returned, so the evaluation reports why it does not fit.

What is guaranteed:
- Up to `max_candidates` (`MAX_CANDIDATES`, 4096) combinations of a group's search loops (the product of their
  divisor counts), every one is scored: the choice is the best of the whole space.
- Beyond, no global optimum: each loop keeps as many of its divisors as the budget allows (`factors.thinned`,
  spread evenly in log scale, 1 and the largest among them; at most `max_candidates` combinations), and the best
  of those is refined by coordinate descent (`_Space._refined`): one search loop at a time tries every divisor
  (the rank's derived loop compensating), moving on a better score, until no single-loop change improves it.
  The choice is a local optimum of the full space in that sense; a better one may need two loops changed at once
  (tests/test_mapper_search_s47.py: at a budget of 256 the auditor's fmx2 reaches 0.056 s, the space 0.034 s).
  A loop offers at most `max(max_candidates, MAX_CANDIDATES)` divisors (spread in log scale beyond), every one of
  a rank up to 2^24 (the default size limit; none has 4096).

`search_many` runs the same search for many architectures that differ in numbers (a sweep's points binding the
same sizes). Factor expressions are evaluated once per distinct value of what they read of an architecture, the
capacities and unit shapes they name (`archsim.mapping.resolve.numbers_key`: FLAT's tiles are its array's width).
The points whose choices so far agree share each candidate, scored on all their architectures by one call of the
caller's `GroupsScorer` (which may plan it once and price it for all of them), and each candidate is one Mapping
object per spec and factors, so what a model remembers per mapping serves later searches. Each point gets what
`search` alone gives it (tests/test_mapper_same_choice.py, tests/test_fanout_sweep_s32.py). A returned mapping
holds read-only copies of the spec's dicts (`_detached`, `archsim.frozen.ReadOnlyDict`), never the caller's own;
it pickles (Dask sends it back from a worker).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from collections.abc import Mapping as MappingType
from dataclasses import replace
from typing import Protocol

from archsim.arch.spec import Architecture
from archsim.cascade.bind import Binding
from archsim.errors import SpecError
from archsim.frozen import ReadOnlyDict
from archsim.mapping.factors import divisors, thinned
from archsim.mapping.resolve import check_bindings, check_group, concrete_factors, numbers_key
from archsim.mapping.spec import SEARCH, Group, Mapping
from archsim.memo import identity_cache

MAX_CANDIDATES = 4096  # candidates per group searched exhaustively (0.1-1 ms each with the analytical model)


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
Score = tuple[bool, float, float, float]  # what the mapper minimises, see `score`
# (mapping, group index, indices into the architectures) -> the `score` of that group on its own on each of those
# architectures, in their order.
GroupsScorer = Callable[[Mapping, int, Sequence[int]], Sequence[Score]]


def score(result: Evaluation) -> Score:
    """`score_of` an evaluated candidate."""
    return score_of(result.feasible, result.latency_s, result.energy_pj, sum(result.footprint_bytes.values()))


def score_of(feasible: bool, latency_s: float, energy_pj: float, footprint_bytes: float) -> Score:
    """Feasible first, then the lower latency, the lower energy, the larger footprint (the fewest refetches). Of
    candidates none of which is feasible, the smallest footprint: the one closest to fitting, whose reason states
    the least room the mapping needs (not the largest tile's)."""
    if not feasible:
        return (True, footprint_bytes, latency_s, energy_pj)
    return (False, latency_s, energy_pj, -footprint_bytes)


def search(binding: Binding, arch: Architecture, mapping: Mapping, evaluate_group: GroupEvaluator,
           max_candidates: int = MAX_CANDIDATES) -> Mapping:
    """`mapping` with every `search` factor filled, group by group. Assumes the names in the mapping were checked
    against the cascade and architecture (done here first) and that `evaluate_group(mapping, i)` scores group `i`
    alone, once per candidate; every candidate while they number at most `max_candidates` (>= 1) per group, beyond
    that `max_candidates` of them and then those the refinement tries (see the module's guarantees)."""
    return search_many(binding, (arch,), mapping, lambda trial, group, _: (score(evaluate_group(trial, group)),),
                       max_candidates)[0]


def search_many(binding: Binding, archs: Sequence[Architecture], mapping: Mapping, score_groups: GroupsScorer,
                max_candidates: int = MAX_CANDIDATES) -> list[Mapping]:
    """`search` on each of `archs` (one binding and mapping, architectures differing in numbers), choosing for each
    what `search` alone would: the points whose groups are equal so far share every candidate, which
    `score_groups` scores on all their architectures in one call (a batch path can price them together). Points
    with equal choices share one Mapping object."""
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1:
        raise SpecError("<python>", "search.max_candidates", f"expected a whole number >= 1, got {max_candidates!r}")
    check_bindings(binding, mapping)
    checked: set[tuple] = set()
    concrete: dict[tuple, tuple[Group, ...]] = {}
    states = []  # per architecture: its groups, `search` loops filled as far as chosen
    for arch in archs:
        names = _names(arch)
        if names not in checked:
            for i, g in enumerate(mapping.groups):
                check_group(binding, arch, g, mapping.source, f"groups[{i}]")
            checked.add(names)
        read = (names, numbers_key(arch, mapping))  # the capacities and shapes its factor expressions read
        if read not in concrete:
            concrete[read] = tuple(concrete_factors(binding, arch, g, mapping.source, f"groups[{i}]")
                                   for i, g in enumerate(mapping.groups))
        states.append(concrete[read])
    for gi in range(len(mapping.groups)):
        for members in _alike(states).values():
            groups = states[members[0]]
            slots = [i for i, lp in enumerate(groups[gi].loops) if lp.factor == SEARCH]
            if not slots:
                continue
            space = _Space(binding, mapping, groups, gi, slots, score_groups)
            for p, chosen in zip(members, space.choose(members, max_candidates), strict=True):
                states[p] = (*states[p][:gi], chosen, *states[p][gi + 1:])
    return _shared(mapping, states)


class _Space:
    """One group's search space for the points (`members`, indices into the architectures) whose groups so far are
    `groups`: each searched loop's options (every divisor of what its rank leaves, up to `max(max_candidates,
    MAX_CANDIDATES)`), each candidate scored once per point, for the points that ask together (one `score_groups`
    call), and remembered."""

    def __init__(self, binding: Binding, mapping: Mapping, groups: tuple[Group, ...], gi: int, slots: list[int],
                 score_groups: GroupsScorer) -> None:
        self.mapping, self.groups, self.gi, self.score_groups = mapping, groups, gi, score_groups
        group = groups[gi]
        self.derived = _derived(group, slots)
        self.searched = [i for i in slots if i not in self.derived.values()]
        self.free = {lp.rank: _free(binding, group, lp.rank) for lp in (group.loops[i] for i in slots)}
        self.scores: dict[tuple[int, ...], dict[int, Score]] = {}

    def choose(self, members: list[int], max_candidates: int) -> list[Group]:
        """Each member's choice: the best of every candidate while they number at most `max_candidates`; beyond,
        the best of the `thinned` candidates, refined (`_refined`)."""
        every = max(max_candidates, MAX_CANDIDATES)  # divisors per loop at most
        options = [divisors(self.free[self.groups[self.gi].loops[i].rank], every) for i in self.searched]
        kept = thinned(options, max_candidates)
        best: dict[int, tuple[Score, tuple[int, ...]]] = {}
        # The all-ones combination is always among them and completes, so every member gets a best.
        for combo in itertools.product(*kept):
            for p, key in (self.scored(combo, members) or {}).items():
                if p not in best or key < best[p][0]:
                    best[p] = (key, combo)
        if kept != options:
            self._refined(options, best)
        return [self.group(best[p][1]) for p in members]

    def _refined(self, options: list[list[int]], best: dict[int, tuple[Score, tuple[int, ...]]]) -> None:
        """Coordinate descent from each member's best (in place): loop by loop, every other option of that loop
        (the rank's derived loop taking what it leaves), the member moving to the best that scores better, in
        passes over the loops until one moves it nowhere. Members at one candidate are scored together; each
        takes the path it would alone."""
        active = set(best)
        while active:
            moved: set[int] = set()
            for j, values in enumerate(options):
                at: dict[tuple[int, ...], list[int]] = {}
                for p in sorted(active):
                    at.setdefault(best[p][1], []).append(p)
                for combo, who in at.items():
                    for value in values:
                        trial = (*combo[:j], value, *combo[j + 1:])
                        for p, key in (self.scored(trial, who) or {}).items():
                            if key < best[p][0]:
                                best[p] = (key, trial)
                                moved.add(p)
            active = moved

    def scored(self, combo: tuple[int, ...], who: list[int]) -> dict[int, Score] | None:
        """`combo`'s score on each of `who`, None where it does not complete (`_completed`)."""
        group = self.group(combo)
        if group is None:
            return None
        known = self.scores.setdefault(combo, {})
        missing = [p for p in who if p not in known]
        if missing:
            trial = _trial(self.mapping, (*self.groups[:self.gi], group, *self.groups[self.gi + 1:]))
            known.update(zip(missing, self.score_groups(trial, self.gi, missing), strict=True))
        return {p: known[p] for p in who}

    def group(self, combo: tuple[int, ...]) -> Group | None:
        """The group with `combo` in its searched loops and the derived ones completed, or None."""
        chosen = _completed(self.groups[self.gi], dict(zip(self.searched, combo, strict=True)), self.derived,
                            self.free)
        return None if chosen is None else self.groups[self.gi].with_factors(chosen)


def _names(arch: Architecture) -> tuple:
    """What `check_group` reads of an architecture: its level and unit names and each unit's ops."""
    return (tuple(m.name for m in arch.memories), tuple((u.name, tuple(u.op_cycles)) for u in arch.units))


def _factors(groups: tuple[Group, ...]) -> tuple:
    """What tells apart groups of one mapping once their expressions are evaluated: their loops' factors."""
    return tuple(tuple(lp.factor for lp in g.loops) for g in groups)


def _alike(states: list[tuple[Group, ...]]) -> dict[tuple, list[int]]:
    """The indices of `states` by their groups' factors."""
    out: dict[tuple, list[int]] = {}
    for p, groups in enumerate(states):
        out.setdefault(_factors(groups), []).append(p)
    return out


def _shared(mapping: Mapping, states: list[tuple[Group, ...]]) -> list[Mapping]:
    """The mapping with each state's groups, one object per distinct choice."""
    out: list[Mapping] = [mapping] * len(states)
    for members in _alike(states).values():
        chosen = _trial(mapping, states[members[0]])
        for p in members:
            out[p] = chosen
    return out


def _trial(mapping: Mapping, groups: tuple[Group, ...]) -> Mapping:
    """`mapping` with `groups` (its own groups, factors filled in), one object per spec and factors, so that what a
    model remembers per mapping object (its plans) serves every search that tries the same candidate."""
    return _interned(mapping, _factors(groups))


@identity_cache(maxsize=4096)
def _interned(mapping: Mapping, factors: tuple) -> Mapping:
    """`mapping` (`_detached`) with its loops' factors set to `factors` (per group, per loop)."""
    detached = _detached(mapping)
    return replace(detached, groups=tuple(g.with_factors(dict(enumerate(f)))
                                          for g, f in zip(detached.groups, factors, strict=True)))


@identity_cache(maxsize=1024)
def _detached(mapping: Mapping) -> Mapping:
    """`mapping` with copies of its dicts (`sets`; each group's binding, keep and in_place), made once per spec: what
    the mapper returns shares no container with the caller's spec. They are read-only (`ReadOnlyDict`, as a
    Mapping's are however it is built), so a caller cannot change through them what later searches of the spec
    return, and they pickle (Dask sends a result back from a worker; a `MappingProxyType` had refused)."""
    groups = tuple(replace(g, binding=_copy(g.binding), keep=_copy(g.keep), in_place=_copy(g.in_place))
                   for g in mapping.groups)
    return replace(mapping, sets=_copy(mapping.sets), groups=groups)


def _copy(table: MappingType) -> ReadOnlyDict:
    """A read-only copy of `table`."""
    return ReadOnlyDict(table)


def _free(binding: Binding, group: Group, rank: str) -> int:
    """What `rank` leaves after the group's fixed factors (the largest spatial split); 1 when they do not divide it
    (no search factor can help: the residual's check then names the fixed factors and the lengths that fit)."""
    temporal = math.prod(lp.factor for lp in group.loops
                         if lp.rank == rank and not lp.is_spatial and isinstance(lp.factor, int))
    spatial: dict[str, int] = {}
    for lp in group.loops:
        if lp.rank == rank and lp.is_spatial:
            spatial[lp.spatial] = spatial.get(lp.spatial, 1) * lp.factor
    size, fixed = binding.rank_sizes[rank], temporal * max(spatial.values(), default=1)
    return size // fixed if size % fixed == 0 else 1


def _derived(group: Group, slots: list[int]) -> dict[str, int]:
    """Rank -> its last `search` loop (of `slots`), for each rank searched with no residual loop (no temporal loop
    leaving its factor out): that loop takes what the rank's other factors leave, so that they multiply to its
    size; the mapper searches the others."""
    residual = {lp.rank for lp in group.loops if lp.factor is None and not lp.is_spatial}
    return {group.loops[i].rank: i for i in slots if group.loops[i].rank not in residual}


def _completed(group: Group, chosen: dict[int, int], derived: dict[str, int],
               free: dict[str, int]) -> dict[int, int] | None:
    """`chosen` (search loop -> factor) with each `derived` loop's factor filled in: a complete choice, or None
    where the chosen factors over a rank do not divide what it leaves (`free`, the group's `_free` per searched
    rank), together exceeding it."""
    by_rank = dict.fromkeys(derived, 1)
    for i, factor in chosen.items():
        rank = group.loops[i].rank
        by_rank[rank] = by_rank.get(rank, 1) * factor
    complete = dict(chosen)
    for rank, product in by_rank.items():
        if free[rank] % product:
            return None
        if rank in derived:
            complete[derived[rank]] = free[rank] // product
    return complete
