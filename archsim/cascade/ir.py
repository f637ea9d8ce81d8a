"""Typed IR of an Einsum cascade, the output of `load.py`. Everything here is resolved: names are ranks,
tensors, parameters or index variables, and every access has one index term per *leaf* rank.

Leaf ranks: a partitioned rank (`M -> [M1, M0]`, m = m1*M0 + m0) is represented by its parts everywhere,
so `K[e,m]` and `K[e,m1,m0]` are the same access. A recurrence (`RM[m1+1,p] = max(RM[m1,p], LM[m1,p])`)
makes its tensor one longer along the iterative rank: slot 0 holds `init`, slot N the final value, which an
access names with the rank itself (`RM[M1,p]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from archsim.cascade.syntax import BinOp, Call, Expr, Name, Neg, Not, Num, walk
from archsim.frozen import read_only


@dataclass(frozen=True)
class Term:
    """One leaf position of an access: `var+offset`, a constant slot, or the final slot of a recurrence."""

    var: str | None = None
    offset: int = 0
    const: int | None = None
    final: bool = False


@dataclass(frozen=True)
class Ref:
    """A resolved tensor access. `carried` marks a read of recurrence state from the previous step."""

    tensor: str
    terms: tuple[Term, ...]
    text: str
    carried: bool = False


@dataclass(frozen=True)
class Var:
    """An index variable used as a value (in a mask predicate or an Einsum body); may be a root (`m`, the mixed
    radix of its leaves) or a leaf (`m0`)."""

    name: str


@dataclass(frozen=True)
class Param:
    """A reference to a cascade parameter (a size or constant from `params`), read as a number."""

    name: str


# Resolved expressions reuse the syntax nodes for constants and operators.
Value = Num | Param | Var | Ref | Call | BinOp | Neg | Not
__all__ = ["Cascade", "Einsum", "Expr", "Mask", "Param", "Ref", "TensorDecl", "Term", "Value", "Var"]


@dataclass(frozen=True)
class TensorDecl:
    """A tensor of the cascade: its ranks as written, its leaf ranks (a partitioned rank's parts), its kind, and
    `iterative`, the leaf rank of its recurrence, if any."""

    name: str
    ranks: tuple[str, ...]  # as declared or as written on the left-hand side
    leaf_ranks: tuple[str, ...]
    kind: str  # "input" | "intermediate" | "output"
    iterative: str | None = None  # leaf rank along which the tensor is a recurrence (one slot longer)


@dataclass(frozen=True)
class Mask:
    """Points of the iteration space where `predicate` is false are skipped: not computed, not counted.

    A predicate that reads tensors (data-dependent, e.g. top-k routing) needs `density`, the expected
    fraction of true points, for static operation counts.
    """

    text: str
    predicate: Value
    density: Expr | None = None
    data_dependent: bool = False


@dataclass(frozen=True)
class Einsum:
    """`output = reduce_op(reduce_vars: body)` or, with no reduction, `output = body`, over `space`."""

    name: str
    text: str
    output: Ref
    space: tuple[str, ...]  # leaf index variables: those of the output, then the reduced ones
    body: Value
    reduce_op: str | None = None
    reduce_vars: tuple[str, ...] = ()
    mask: Mask | None = None
    fill: float | None = None

    @property
    def is_step(self) -> bool:
        """Whether it writes a recurrence's next state (X[i+1] = ...): a masked step carries the state."""
        return any(t.offset for t in self.output.terms)

    @cached_property
    def refs(self) -> tuple[Ref, ...]:
        """Every tensor reference of the body and the mask's predicate, in walk order (computed once: models ask
        for it per evaluation)."""
        nodes = [*walk(self.body), *(walk(self.mask.predicate) if self.mask is not None else ())]
        return tuple(n for n in nodes if isinstance(n, Ref))

    @cached_property
    def names_read(self) -> frozenset[str]:
        """The parameter (and predicate index) names its body, mask and mask density read."""
        mask = self.mask
        nodes = [*walk(self.body), *(walk(mask.predicate) if mask is not None else ()),
                 *(walk(mask.density) if mask is not None and mask.density is not None else ())]
        return frozenset(n.name for n in nodes if isinstance(n, Name | Param))


@dataclass(frozen=True)
class Cascade:
    """An attention algorithm as a cascade of Einsums (FuseMax, EDGE): its ranks and their sizes (expressions of
    `params`), its tensors, and the Einsums that compute `outputs` from the inputs in order. A loaded spec
    (`cascade_from_dict`); `archsim.cascade.bind` fixes the sizes, `archsim.cascade.analysis` counts the work.
    Its mappings (`MAPPINGS`) are read-only copies (`archsim.frozen.ReadOnlyDict`): the library hands one loaded
    cascade to every caller, and caches key on its identity; a changed cascade is a `dataclasses.replace`."""

    name: str
    source: str  # the file it came from, for messages
    description: str
    citation: str
    params: Mapping[str, float]
    rank_sizes: Mapping[str, Expr | None]  # None: a partition part whose size is derived
    partitions: Mapping[str, tuple[str, ...]]
    var_ranks: Mapping[str, str]  # every index variable (root, leaf, alias) -> its rank
    var_leaves: Mapping[str, tuple[str, ...]]  # every index variable -> its leaf variables
    tensors: Mapping[str, TensorDecl]
    einsums: tuple[Einsum, ...]
    outputs: tuple[str, ...]
    init: Mapping[str, float] = field(default_factory=dict)  # a recurrence's slot 0
    reduction_init: Mapping[str, float] = field(default_factory=dict)  # a max or min reduction's starting value
    iterative_rank: str | None = None
    reference: str | None = None
    requires: tuple[tuple[str, Expr], ...] = ()  # (text, comparison of size expressions) the params must meet

    MAPPINGS = ("params", "rank_sizes", "partitions", "var_ranks", "var_leaves", "tensors", "init", "reduction_init")

    def __post_init__(self) -> None:
        for name in self.MAPPINGS:  # frozen: set once, here
            object.__setattr__(self, name, read_only(getattr(self, name)))

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(name for name, decl in self.tensors.items() if decl.kind == "input")

    def leaves(self, rank: str) -> tuple[str, ...]:
        return self.partitions.get(rank, (rank,))

    def root_of(self, rank: str) -> str:
        for root, parts in self.partitions.items():
            if rank in parts:
                return root
        return rank

    @cached_property
    def _by_name(self) -> dict[str, Einsum]:
        return {e.name: e for e in self.einsums}

    def einsum(self, name: str) -> Einsum:
        return self._by_name[name]
