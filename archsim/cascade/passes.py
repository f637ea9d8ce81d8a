"""FuseMax's pass analysis: how many traversals of a rank a cascade needs.

Following FuseMax (Nayak et al., MICRO'24, §"pass taxonomy"): a new pass over rank R is forced when an
Einsum that iterates R reads a value that needed *all* of R to be reduced first (a reduce-then-broadcast
dependency: `SN[m,p] = exp(QK[m,p] - GM[p])` with `GM[p] = max(m: QK[m,p])`). Without buffering the whole
R fiber on chip, every element of R must be visited again.

The rule, per rank R (a root rank, or a part of a partitioned one):
- An Einsum *iterates* R when its iteration space covers every leaf of R.
- A read *streams* R when it is indexed by R's outermost leaf (m, or m1 for M -> [M1, M0]): element
  i of the operand depends only on elements <= i of R, so it can be consumed in the same traversal. A
  tile-local reduction over m0 keeps m1 and streams over M; it is a second pass over the tile M0 only.
- A read at a constant slot of R's outermost leaf (`QK[0,p]`) depends on the first slots of R only, a prefix of
  fixed size (buffered like a tile), never on all of R: it streams too, and so does a read of a tensor that an
  Einsum not iterating R computed from such prefixes (`X[p] = QK[0,p]`, then `exp(QK[m,p] - X[p])`: one pass).
- Reads of recurrence state from the previous step (`RM[m1]` in `RM[m1+1] = ...`) carry over the
  traversal and never force a pass; the final value (`RNV[M1]`) needs the whole traversal.
- level(input) = 0; an Einsum iterating R has level max(1, levels of its streamed reads, level+1 of its
  non-streamed reads whose level is >= 1); an Einsum not iterating R inherits the max level of its reads.
The passes over R = the highest level of an Einsum that iterates R. 3-pass softmax gives 3 on M, the
deferred-division form 2, online softmax (FuseMax Cascade 5, FlashAttention-2) 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.cascade.ir import Cascade, Einsum, Ref


@dataclass(frozen=True)
class PassBoundary:
    """`einsum` starts pass `pass_index` over `rank` because it reads `operand`, which needs all of the
    rank, reduced by `reduced_by` in the previous pass."""

    rank: str
    pass_index: int
    einsum: str
    operand: str
    reduced_by: str

    def explain(self) -> str:
        return (f"pass {self.pass_index} over {self.rank} starts at {self.einsum}: it reads {self.operand}, "
                f"which needs all of {self.rank} (reduced by {self.reduced_by} in pass {self.pass_index - 1})")


@dataclass(frozen=True)
class PassAnalysis:
    """The passes over each rank (module docstring's rule), the boundaries that force them, and the pass each Einsum
    iterating a rank runs in."""

    passes: dict[str, int]  # rank -> number of passes
    boundaries: tuple[PassBoundary, ...]
    einsum_pass: dict[str, dict[str, int]]  # rank -> Einsum -> pass it runs in (only Einsums iterating it)


def refs_of(einsum: Einsum) -> list[Ref]:
    """Every tensor reference of the Einsum's body and mask (`Einsum.refs`)."""
    return list(einsum.refs)


def pass_analysis(cascade: Cascade) -> PassAnalysis:
    """The pass analysis of `cascade` for each rank and each part of a partitioned rank, by the module
    docstring's rule."""
    passes: dict[str, int] = {}
    boundaries: list[PassBoundary] = []
    einsum_pass: dict[str, dict[str, int]] = {}
    ranks = list(dict.fromkeys([*cascade.rank_sizes, *(p for ps in cascade.partitions.values() for p in ps)]))
    for rank in ranks:
        leaves = set(cascade.leaves(rank))
        outer = cascade.leaves(rank)[0]
        level: dict[str, int] = dict.fromkeys(cascade.inputs, 0)
        prefix: set[str] = set()  # tensors not indexed by R that need only a fixed prefix of R at their level
        iterating: dict[str, int] = {}
        producer_iterates: dict[str, bool] = {}
        for einsum in cascade.einsums:
            iterates = leaves <= {cascade.var_ranks[v] for v in einsum.space}
            producer_iterates[einsum.name] = iterates
            current, reason = (1 if iterates else 0), None
            whole: dict[int, bool] = {}  # need -> whether a read at that level needs all of R
            for ref in refs_of(einsum):
                if ref.carried:
                    continue
                need = level[ref.tensor]
                bounded = _at_constant_slot(cascade, ref, outer) or ref.tensor in prefix
                streams = bounded or any(t.var is not None and cascade.var_ranks[t.var] == outer for t in ref.terms)
                if iterates and need >= 1 and not streams:
                    need += 1
                    if need > current:
                        reason = ref
                whole[need] = whole.get(need, False) or not bounded
                current = max(current, need)
            level[einsum.name] = current
            if not iterates and current >= 1 and not whole[current]:
                prefix.add(einsum.name)
            if iterates:
                iterating[einsum.name] = current
                if reason is not None:
                    boundaries.append(PassBoundary(rank, current, einsum.name, reason.text,
                                                   _reducer(cascade, reason.tensor, producer_iterates)))
        if iterating:
            passes[rank] = max(iterating.values())
            einsum_pass[rank] = iterating
    return PassAnalysis(passes, tuple(boundaries), einsum_pass)


def _at_constant_slot(cascade: Cascade, ref: Ref, outer: str) -> bool:
    """Whether `ref` reads the leaf rank `outer` at a constant slot (`QK[0,p]`): a prefix of fixed size of it."""
    ranks = cascade.tensors[ref.tensor].leaf_ranks
    return any(t.const is not None and rank == outer for t, rank in zip(ref.terms, ranks, strict=True))


def _reducer(cascade: Cascade, tensor: str, iterates: dict[str, bool]) -> str:
    """The nearest Einsum upstream of `tensor` (itself included) that iterated the rank: it did the reduction."""
    frontier = [tensor]
    while frontier:
        name = frontier.pop(0)
        if iterates.get(name):
            return name
        if name in iterates:
            frontier += [r.tensor for r in refs_of(cascade.einsum(name)) if not r.carried]
    return tensor
