"""Typed mapping specs: how a cascade runs on an architecture.

A mapping is a list of fusion groups run one after another. Each group has
- `einsums`: the Einsums it runs, in the order its binding lists them (unit by unit), not the cascade's,
- `binding`: Einsum -> compute unit,
- `loops`: one loop nest shared by the group, outermost first. A temporal loop sits at a memory level and
  walks over tiles held by the level below it; a spatial loop spreads a rank over a unit's fan-out. Several
  loops over one rank split it (P -> P2, P1, P0, outermost first); their factors multiply to the rank size.
  A factor may be left out (the residual: rank size / the other factors), be `search` (the mapper picks it), or
  be an expression of the cascade's parameters and rank sizes, `capacity(LEVEL)` (bytes), `min`/`max` and
  `divisor_at_least(n, k)` (the smallest divisor of the whole number n that is at least k; n when k > n),
  `divisor_at_most(n, k)` (the largest divisor of n that is at most k >= 1: the linear layers' D tile), for
  a dataflow's own tiling rule: FLAT's row block fills the buffer with scores,
  `P: "divisor_at_least(P // 256, max(1, (P * M * word_bytes + capacity(GlobalBuffer) - 1) //
  capacity(GlobalBuffer)))"` row blocks (the scores over the buffer, rounded up), a count
  that divides the P / 256 query tiles, so every whole number of tiles runs. A rule that reads its own rank's
  size (P here) must give a divisor of what the rank's other factors leave, at every size: its value moves with
  the size, so the multiples of today's value are no advice (see `archsim.mapping.resolve`).
  Spatial loops are per unit: the 2-D array's `P: 256` and the 1-D array's `P: 256` are two views of one
  split, so for each unit, temporal factors x that unit's spatial factors = rank size. A split spread only over
  another unit's fan-out is walked temporally (innermost) by a unit without one.
- `keep`: level -> tensors resident there. Inputs and outputs always live in the outermost level (DRAM); an
  intermediate lives at the outermost level that keeps it, and never travels further out.
- `overlap`: how the group's time is formed from its parts, required (no policy is assumed for a group that
  does not say). `sequential` sums the Einsums' compute times; `max` overlaps everything (time = max over units
  and levels); any other string is a pipeline expression naming each of the group's Einsums once (their compute
  cycles), joined by `+` and `max(...)`, plus delay terms size * Einsum (`archsim.mapping.overlap` has the
  grammar), e.g. FuseMax's waterfall `max(QK+LM, RD+RNV+AV) + RM + max(SLN+SLD, PRM+SPD) + max(SLNV, SPNV)`.
  Memory transfers overlap compute in all three (double-buffered tiles): group time = max(compute time, each
  level's transfer time).
- `double_buffered`: tensors whose resident tiles count twice against capacity (one filling while one is used),
  e.g. score tiles handed from the 2-D to the 1-D array through the global buffer.
- `in_place`: tensor -> tensors written over its storage (FLAT's softmax overwrites the score block with the
  numerator, then with A), so they take no room of their own. The owner and the tensors over it are intermediates
  of the group, of one shape, read by no other group, the owner kept on chip (`resolve._check_in_place`).
- `spill`: tensors kept at a level whose tiles may overflow it: the part that does not fit lives in the level
  above, and every access to it goes there (see `archsim.model.analytical`). Without `spill`, overflow makes
  the point infeasible.
- `pipelined`: Einsums whose chain of ops (FLAT's subtract feeding its exp unit) issues one point per cycle on a
  unit that has every op: a point costs the slowest op's cycles instead of their sum.

A mapping is frozen all the way down: however built, `sets` and each group's `binding`, `keep` and `in_place` are
read-only copies (`archsim.frozen.ReadOnlyDict`, the lists in `keep` and `in_place` tuples) and its sequences
tuples, since the library hands one loaded mapping to every caller and caches key on its identity; a changed
mapping is a `dataclasses.replace`.

Ranks named in loops are the cascade's leaf ranks (`M1`, `M0`, not `M`). Each Einsum of the cascade is bound
by exactly one group. A unit's spatial loops take its dimensions in the order written; factors beyond its PEs
make an infeasible point (see `archsim.model.analytical`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field, replace
from typing import Any

from archsim.errors import SpecError
from archsim.frozen import ReadOnlyDict, as_tuple, read_only
from archsim.spec_files import number
from archsim.workload import PARAMS

SEARCH = "search"


@dataclass(frozen=True)
class Loop:
    """One loop of a group's nest, outermost first in `Group.loops`: over `rank`, by `factor`, either temporal (at a
    memory `level`) or spatial (spread over the fan-out of unit `spatial`)."""

    rank: str
    factor: int | str | None = None  # int, SEARCH, an expression (str), or None for the residual
    level: str | None = None  # temporal: the memory level it sits at
    spatial: str | None = None  # spatial: the unit whose fan-out it spreads over
    origin: str = ""  # where it was written (`loops[0].ranks.P`), for messages
    rule: str = ""  # the expression an int factor was computed from (FLAT's row blocks), for messages

    @property
    def is_spatial(self) -> bool:
        return self.spatial is not None

    @property
    def entry(self) -> str:
        """The YAML list item it was written in (`loops[1]`, from its `origin`), or "" for a loop built in Python."""
        return self.origin.rpartition(".ranks.")[0]

    @property
    def path(self) -> str:
        """Its YAML path with the rank it has now (`loops[1].ranks.P`; a loop changed with `dataclasses.replace` keeps
        the `origin` of the rank it was written with), or "" for a loop built in Python."""
        return f"{self.entry}.ranks.{self.rank}" if self.origin else ""

    @property
    def expression(self) -> str:
        """The factor expression written for this loop, or "" (an int, the residual or `search`)."""
        return self.factor if isinstance(self.factor, str) and self.factor != SEARCH else ""


@dataclass(frozen=True, kw_only=True)
class Group:
    """A fused group of Einsums mapped together: the unit each Einsum runs on (`binding`), one loop nest, the
    tensors each level keeps, and how the group's ops overlap, buffer and share storage."""

    name: str
    einsums: tuple[str, ...]
    binding: MappingType[str, str]
    loops: tuple[Loop, ...]
    overlap: str  # sequential, max or a pipeline expression (`archsim.mapping.overlap`)
    keep: MappingType[str, tuple[str, ...]] = field(default_factory=dict)
    double_buffered: tuple[str, ...] = ()  # tensors whose on-chip tiles take two buffers (fill one, use one)
    pipelined: tuple[str, ...] = ()  # Einsums whose op chain issues as one op per point (cycles: the slowest op)
    in_place: MappingType[str, tuple[str, ...]] = field(default_factory=dict)  # storage owner -> tensors over it
    spill: tuple[str, ...] = ()  # kept tensors whose overflow lives in the level above

    SEQUENCES = ("einsums", "loops", "double_buffered", "pipelined", "spill")

    def __post_init__(self) -> None:
        """Read-only copies (frozen: set once, here): `binding` a `ReadOnlyDict`, `keep` and `in_place` too with
        their lists as tuples, the sequences (`SEQUENCES`) tuples."""
        for name in self.SEQUENCES:
            object.__setattr__(self, name, as_tuple(getattr(self, name)))
        for name in ("binding", "keep", "in_place"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def with_factors(self, factors: MappingType[int, int]) -> Group:
        """The group with loop `i`'s factor set to `factors[i]` (the mapper fills `search` loops this way); a loop
        whose expression this replaces keeps it as its `rule`."""
        loops = tuple(loop if i not in factors else replace(loop, factor=factors[i], rule=loop.expression or loop.rule)
                      for i, loop in enumerate(self.loops))
        return replace(self, loops=loops)


@dataclass(frozen=True)
class Mapping:
    """A cascade mapped onto an architecture (a loaded mapping spec, `archsim.mapping.load`): the sizes it fixes
    and its fused groups, which together bind every Einsum of the cascade once."""

    name: str
    description: str
    source: str  # the file it came from, for messages
    citation: str
    cascade: str  # library name or path of the cascade it maps
    architecture: str  # library name or path of the architecture it targets
    sets: MappingType[str, float]  # tiling and algorithm choices it fixes (e.g. M0: 256), never a model size
    groups: tuple[Group, ...]

    def __post_init__(self) -> None:
        """However the mapping is built (its file, or `dataclasses.replace` in Python), each value of `sets` is a
        `set_value`, and a model size (a name of `archsim.workload.PARAMS`) is refused: the workload or `--set`
        gives those. No two groups share a name (an unnamed group's is `groups[i]`): the models tell groups apart
        by name (a tensor two groups touch crosses through DRAM), so a repeated one had lost that traffic. `sets` is
        kept as a read-only copy, `groups` as a tuple."""
        object.__setattr__(self, "sets", read_only(self.sets))  # frozen: set once, here
        object.__setattr__(self, "groups", as_tuple(self.groups))
        named: dict[str, int] = {}
        for i, group in enumerate(self.groups):
            if group.name in named:
                default = " (the default name of this unnamed group)" if group.name == f"groups[{i}]" else ""
                raise SpecError(self.source, f"groups[{i}].name",
                                f"{group.name!r}{default} is already the name of groups[{named[group.name]}]; "
                                "expected a name no other group has")
            named[group.name] = i
        for key, value in self.sets.items():
            if key in PARAMS:
                raise SpecError(self.source, f"set.{key}", "a model size comes from the workload or --set, not "
                                                           "the mapping (set: gives tiling and algorithm choices such "
                                                           "as M0)")
            set_value(value, self.source, f"set.{key}")


def _frozen(table: Any) -> Any:
    """`binding`, `keep` or `in_place` read-only, lists among its values as tuples: itself when it already is; a value
    that is not a mapping as it is (`archsim.mapping.resolve` names it)."""
    if not isinstance(table, MappingType):
        return table
    if type(table) is ReadOnlyDict and not any(isinstance(v, list) for v in table.values()):
        return table
    return ReadOnlyDict({k: as_tuple(v) for k, v in table.items()})


def set_value(value: Any, source: str, where: str) -> float:
    """A parameter or rank size a mapping fixes (`set:`): a positive finite number. (A rank's is moreover whole,
    which binding it checks.) A Python caller's numpy number counts as the number it is."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | int | float):
        value = float(value)
    result = number(value, source, where, "a positive finite number")
    if not (math.isfinite(result) and result > 0):
        raise SpecError(source, where, f"expected a positive finite number, got {value!r}")
    return result
