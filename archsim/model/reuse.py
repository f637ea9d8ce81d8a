"""Tiles and refetches of a tensor under a loop nest (Timeloop-style reuse analysis, without halos).

Levels are numbered outermost first (DRAM = 0). A temporal loop at level L walks over tiles held by the levels
inside L; spatial loops sit inside every level.

- The tile of tensor T held at level c spans, along each of T's ranks, the product of the factors of the loops
  at c and inside it (spatial loops of different units over one rank are views of one split: the largest counts).
  A level with one instance per PE of a unit holds one instance's tile: every view of a split that unit spreads
  is out (`instance_loops`).
- Moving T into level c from outside repeats once per iteration of the loops above c (at levels < c) that
  belong to the accessing Einsum's iteration space, *up to the innermost one that indexes T*: loops inside it
  that do not index T reuse the resident tile (stationarity). Loops over ranks the Einsum does not iterate
  (AV after the M1 recurrence) do not re-execute it. A loop of factor 1 walks nothing: it neither indexes T nor
  separates T's tiles, so it is left out (a DRAM loop `P: 1` under `M: 2` does not make Q move twice).
- Of those moves, the first of each of T's tiles above c (`refetches` over the ranks T is indexed by) finds the
  tile new; every later one re-enters a tile already visited: an output's partial sums written out and read back
  when a reduction loop sits above an indexing one (`archsim.model.plan`).
- A tensor with no home above level c (an intermediate the group keeps there, `plan`) cannot be written out and
  read back: each of its tiles stays at c for its whole lifetime. A tile lives across the loops over the ranks
  its Einsums iterate but it does not index (a reduction's partial result, a value read across another rank)
  and across its recurrence rank (a running state lives from the first step to the last), and across a rank it is
  indexed by when a later pass reads it again after a reduction over that rank (FLAT's scores wait for their row
  maximum: every key block's scores of a row live until the next pass). So when such a loop
  sits above c, every tile the loops nested inside it (above c, over the tensor's other ranks) walk through is
  live at once (`live_tiles`): FuseMax's running max, denominator and numerator with the key-tile loop outside
  the query loops hold the state of every query, not one tile's.
- A masked Einsum (a static mask, e.g. causal) skips a move whose box of its iteration space, the points those
  outer iterations leave to the inner loops, holds no unmasked point (`masked_refetches`): a causal pass fetches
  no key tile that lies wholly after the query tile, as it computes nothing there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from archsim.cascade.bind import Binding
from archsim.cascade.ir import Einsum, Var
from archsim.cascade.mask_count import moves_holding_a_point, static_conjuncts
from archsim.cascade.syntax import walk
from archsim.mapping.spec import Loop


def tile_elems(loops: Iterable[Loop], level_of: Mapping[str, int], child: int, ranks: Iterable[str],
               iterative: str | None = None) -> int:
    """Elements of a tensor over `ranks` held at level index `child` (a recurrence keeps one slot of state)."""
    loops = list(loops)
    total = 1
    for rank in ranks:
        temporal = math.prod(lp.factor for lp in loops
                             if lp.rank == rank and not lp.is_spatial and level_of[lp.level] >= child)
        spatial_by_unit: dict[str, int] = {}
        for lp in loops:
            if lp.rank == rank and lp.is_spatial:
                spatial_by_unit[lp.spatial] = spatial_by_unit.get(lp.spatial, 1) * lp.factor
        extent = temporal * max(spatial_by_unit.values(), default=1)
        total *= 1 if rank == iterative and extent == 1 else extent
    return total


def instance_loops(loops: Iterable[Loop], unit: str) -> tuple[Loop, ...]:
    """The loop nest as one PE of `unit` sees it, for a level with one instance per PE of `unit` (`per_pe_of`):
    every spatial loop over a rank that `unit` spreads is out, that unit's and every other unit's view of the same
    split alike (each PE holds its own share of the rank, the 1-D array's lane one query row however wide the 2-D
    array's view of those rows); a rank only another unit spreads stays, as `unit` walks it temporally, innermost
    (`archsim.mapping.resolve._spatial_extent`), so its instance holds the whole spread."""
    loops = tuple(loops)
    spread = {lp.rank for lp in loops if lp.spatial == unit}
    return tuple(lp for lp in loops if not (lp.is_spatial and lp.rank in spread))


def live_tiles(loops: Iterable[Loop], level_of: Mapping[str, int], child: int, tensor_ranks: Iterable[str],
               lifetime_ranks: set[str], pass_ranks: set[str] = frozenset()) -> tuple[int, Loop | None]:
    """(How many tiles at level `child` of a tensor with no home above it are live at once, the loop their
    lifetime spans) (module docstring): the product of the loops above `child` over its ranks (`tensor_ranks`,
    less `lifetime_ranks`) from the outermost loop above `child` over a rank in `lifetime_ranks` (ranks it does
    not index, its recurrence rank) or `pass_ranks` (ranks it does index that a later pass walks again: all of
    them live, that loop's too); (1, None) when no such loop is there. Loops of factor 1 walk nothing."""
    above = _walking(loops, level_of, child)
    spanning = [i for i, lp in enumerate(above) if lp.rank in lifetime_ranks | pass_ranks]
    if not spanning:
        return 1, None
    indexed = set(tensor_ranks) - lifetime_ranks
    return math.prod(lp.factor for lp in above[spanning[0]:] if lp.rank in indexed), above[spanning[0]]


def refetches(loops: Iterable[Loop], level_of: Mapping[str, int], child: int, tensor_ranks: Iterable[str],
              space_ranks: set[str]) -> int:
    """How many times the tile at level `child` is brought in over the run of one Einsum."""
    return math.prod(lp.factor for lp in _fetching(loops, level_of, child, tensor_ranks, space_ranks))


def _fetching(loops: Iterable[Loop], level_of: Mapping[str, int], child: int, tensor_ranks: Iterable[str],
              space_ranks: set[str]) -> list[Loop]:
    """The loops whose iterations each bring the tile at level `child` in again (module docstring)."""
    tensor_ranks = set(tensor_ranks)
    above = [lp for lp in _walking(loops, level_of, child) if lp.rank in space_ranks]
    indexing = [i for i, lp in enumerate(above) if lp.rank in tensor_ranks]
    return above[: indexing[-1] + 1] if indexing else []


def _walking(loops: Iterable[Loop], level_of: Mapping[str, int], child: int) -> list[Loop]:
    """The temporal loops above level `child` that walk more than one iteration, outermost first."""
    return [lp for lp in loops if not lp.is_spatial and level_of[lp.level] < child and lp.factor > 1]


def masked_refetches(binding: Binding, einsum: Einsum, loops: Iterable[Loop], level_of: Mapping[str, int],
                     child: int, tensor_ranks: Iterable[str], space_ranks: set[str]) -> int:
    """`refetches`, less the moves whose box of the Einsum's space holds no point its static mask keeps.

    A move is one combination of the fetching loops' iterations; along a rank those loops are its outer digits
    (the loops inside, and the levels below, cover the rest), so the move's box spans one contiguous range of
    each leaf rank, and an index variable over several leaves (m = m1 * M0 + m0) spans their hull (exactly the
    move's values when the fetching loops walk its outer leaves, as every library mapping does; else a superset,
    so the count is an upper bound). Moves are counted over the ranks the mask reads (`moves_holding_a_point`,
    exact); the other fetching loops multiply.
    A mask that reads tensors (a density, no positions) is counted under its conjuncts that read none
    (`static_conjuncts`: a block-sparse mask's causal part), an upper bound; the plain count where it has none, or
    where two of the Einsum's index variables share a rank (loops name ranks, so which variable a loop walks is
    not said)."""
    fetching = _fetching(loops, level_of, child, tensor_ranks, space_ranks)
    full = math.prod(lp.factor for lp in fetching)
    predicate = None if einsum.mask is None else static_conjuncts(einsum.mask.predicate)
    if predicate is None or full == 1:
        return full
    cascade = binding.cascade
    variables = sorted({n.name for n in walk(predicate) if isinstance(n, Var)})
    leaves = {v: cascade.var_leaves[v] for v in variables}
    ranks = {cascade.var_ranks[leaf] for v in variables for leaf in leaves[v]}
    if len({cascade.var_ranks[v] for v in einsum.space}) < len(set(einsum.space)):
        return full
    axes = sorted(ranks)
    moves = tuple(math.prod(lp.factor for lp in fetching if lp.rank == rank) for rank in axes)
    if math.prod(moves) == 1:
        return full
    # a move's box along variable v: weights[v] . digits .. + spans[v] (m = m1 * M0 + m0: strides by leaf)
    weights, spans = np.zeros((len(variables), len(axes))), np.zeros(len(variables))
    for k, v in enumerate(variables):
        stride = 1
        for leaf in reversed(leaves[v]):  # mixed radix, the innermost leaf first
            rank = cascade.var_ranks[leaf]
            axis = axes.index(rank)
            extent = binding.rank_sizes[rank] // moves[axis]
            weights[k, axis] += extent * stride
            spans[k] += (extent - 1) * stride
            stride *= binding.rank_sizes[rank]
    kept = moves_holding_a_point(predicate, variables, weights, spans, moves, binding.predicate_values)
    return full // math.prod(moves) * kept
