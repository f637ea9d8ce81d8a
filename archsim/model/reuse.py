"""Tiles and refetches of a tensor under a loop nest (Timeloop-style reuse analysis, without halos).

Levels are numbered outermost first (DRAM = 0). A temporal loop at level L walks over tiles held by the levels
inside L; spatial loops sit inside every level.

- The tile of tensor T held at level c spans, along each of T's ranks, the product of the factors of the loops
  at c and inside it (spatial loops of different units over one rank are views of one split: the largest counts).
- Moving T into level c from outside repeats once per iteration of the loops above c (at levels < c) that
  belong to the accessing Einsum's iteration space, *up to the innermost one that indexes T*: loops inside it
  that do not index T reuse the resident tile (stationarity). Loops over ranks the Einsum does not iterate
  (AV after the M1 recurrence) do not re-execute it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

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


def refetches(loops: Iterable[Loop], level_of: Mapping[str, int], child: int, tensor_ranks: Iterable[str],
              space_ranks: set[str]) -> int:
    """How many times the tile at level `child` is brought in over the run of one Einsum."""
    tensor_ranks = set(tensor_ranks)
    above = [lp for lp in loops if not lp.is_spatial and level_of[lp.level] < child and lp.rank in space_ranks]
    indexing = [i for i, lp in enumerate(above) if lp.rank in tensor_ranks]
    if not indexing:
        return 1
    return math.prod(lp.factor for lp in above[: indexing[-1] + 1])
