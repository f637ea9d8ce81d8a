"""A numpy interpreter for cascades: runs any cascade on given or seeded random inputs.

Semantics (extended Einsums, EDGE / FuseMax):
- An Einsum is evaluated at every point of its iteration space (output indices, then reduced indices);
  an operand lacking an index is broadcast along it.
- A reduction starts at its identity, or at the value `init` gives a max or min reduction (the lowest finite
  double, so a split of only -inf scores keeps a finite max, as a recurrence's RM does).
- A masked point is skipped: a map Einsum writes `fill` (default 0) there; a reduction ignores it, and an
  output whose points are all masked gets `fill` (default: the reduction's start). A masked step of a
  recurrence (`X[i+1] = f(X[i], ...) where mask`) carries its state: X[i+1] = X[i] there (a step skipped, as a
  kernel skips a fully masked tile; no `else`).
- A recurrence (`X[i+1] = f(X[i], ...)`) runs as a loop over its iterative rank: the Einsums that iterate
  that rank execute step by step, in the cascade's order; the others execute once, vectorised.
Values are float64; an input holding NaN or +inf is refused naming it (-inf is taken: a masked score). Exceptions
from numpy (overflow, inf - inf) are silenced: they are legitimate on masked points, which are overwritten.

Before anything is allocated, `check_size` refuses a binding whose tensors, or one Einsum's iteration space
(evaluated as one array, or one slice per step of a recurrence), exceed MAX_ELEMENTS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from archsim.cascade.bind import Binding
from archsim.cascade.evaluate import evaluate
from archsim.cascade.ir import Einsum, Ref
from archsim.cascade.ops import DEFAULT_UNARY_OPS, REDUCE_IDENTITY, UnaryOp
from archsim.errors import LimitError, SpecError
from archsim.limits import env_limit

_REDUCE = {"sum": np.sum, "max": np.max, "min": np.min}
MAX_ELEMENTS = 2**27  # 1 GiB of float64; ARCHSIM_MAX_EXECUTE_ELEMENTS raises it


def check_size(binding: Binding) -> None:
    """Refuse (SpecError) sizes the interpreter cannot hold: all tensors together, or the largest Einsum's
    iteration space (the temporaries of its body), over MAX_ELEMENTS elements."""
    limit = env_limit("ARCHSIM_MAX_EXECUTE_ELEMENTS", MAX_ELEMENTS)
    cascade = binding.cascade
    tensors = {name: math.prod(binding.leaf_shape(name)) for name in cascade.tensors}
    spaces = {e.name: math.prod(binding.var_size(v) for v in e.space) for e in cascade.einsums}
    tensor, einsum = max(tensors, key=tensors.__getitem__), max(spaces, key=spaces.__getitem__)
    for where, count, what in (
        (tensor, sum(tensors.values()), f"to hold the tensors ({tensor} has {tensors[tensor]:.3g})"),
        (einsum, spaces[einsum], "for the iteration space of this Einsum"),
    ):
        if count > limit:
            ranks = " ".join(f"{r}={n}" for r, n in binding.rank_sizes.items())
            raise LimitError(cascade.source, where, f"executing needs {count:.3g} float64 elements {what} at "
                             f"{ranks}, over the limit of {limit}; execute smaller sizes (--set) or raise the "
                             f"limit with the environment variable ARCHSIM_MAX_EXECUTE_ELEMENTS")


def random_inputs(binding: Binding, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float64 inputs in their declared shapes."""
    check_size(binding)
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(binding.shape(name)) for name in binding.cascade.inputs}


def execute(
    binding: Binding,
    inputs: Mapping[str, np.ndarray],
    unary_ops: Mapping[str, UnaryOp] = DEFAULT_UNARY_OPS,
) -> dict[str, np.ndarray]:
    """Run the cascade; returns every written tensor in its declared shape (outputs included)."""
    check_size(binding)
    cascade = binding.cascade
    tensors: dict[str, np.ndarray] = {}
    for name in cascade.inputs:
        if name not in inputs:
            raise SpecError("<inputs>", name, f"missing input (expected shape {binding.shape(name)})")
        array = np.asarray(inputs[name], dtype=np.float64)
        if array.shape != binding.shape(name):
            raise SpecError("<inputs>", name, f"expected shape {binding.shape(name)}, got {array.shape}")
        _check_values(name, array)
        tensors[name] = array.reshape(binding.leaf_shape(name))
    for einsum in cascade.einsums:
        array = np.full(binding.leaf_shape(einsum.name), np.nan)
        decl = cascade.tensors[einsum.name]
        if decl.iterative:
            axis = decl.leaf_ranks.index(decl.iterative)
            array[(slice(None),) * axis + (0,)] = cascade.init[einsum.name]
        tensors[einsum.name] = array

    run = _Run(binding, tensors, unary_ops)
    loop_rank = cascade.iterative_rank
    in_loop = [loop_rank is not None and any(cascade.var_ranks[v] == loop_rank for v in e.space)
               for e in cascade.einsums]
    i = 0
    while i < len(cascade.einsums):
        if not in_loop[i]:
            run.einsum(cascade.einsums[i], {})
            i += 1
            continue
        j = i
        while j < len(in_loop) and in_loop[j]:
            j += 1
        for step in range(binding.rank_sizes[loop_rank]):
            for einsum in cascade.einsums[i:j]:
                fixed = {v: step for v in einsum.space if cascade.var_ranks[v] == loop_rank}
                run.einsum(einsum, fixed)
        i = j
    return {e.name: tensors[e.name].reshape(binding.shape(e.name)) for e in cascade.einsums}


def _check_values(name: str, array: np.ndarray) -> None:
    """Refuse (SpecError naming the input) NaN or +inf in an input: either spreads through every sum it enters.
    -inf is taken: a score of -inf is a key masked out, which softmax weighs 0."""
    bad = np.isnan(array) | (array == np.inf)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise SpecError("<inputs>", name, f"expected finite values (or -inf), got {array[first]} at index {first} "
                                          f"({int(bad.sum())} of {array.size} values NaN or +inf)")


class _Run:
    def __init__(self, binding: Binding, tensors: dict[str, np.ndarray], unary_ops: Mapping[str, UnaryOp]):
        self.binding = binding
        self.cascade = binding.cascade
        self.tensors = tensors
        self.unary_ops = unary_ops

    def einsum(self, einsum: Einsum, fixed: dict[str, int]) -> None:
        self.fixed = fixed
        self.space = [v for v in einsum.space if v not in fixed]
        shape = tuple(self.binding.var_size(v) for v in self.space)
        params = self.binding.params
        with np.errstate(all="ignore"):
            value = np.broadcast_to(np.asarray(evaluate(einsum.body, self, params, self.unary_ops), float), shape)
            mask = None
            if einsum.mask is not None:
                mask = np.broadcast_to(
                    np.asarray(evaluate(einsum.mask.predicate, self, self.binding.predicate_values,
                                        self.unary_ops), bool), shape
                )
            carried = None
            if mask is not None and einsum.is_step:
                carried = self.tensors[einsum.name][self.index(einsum.output, step_back=1)]
            if einsum.reduce_op is None:
                result = value if mask is None else np.where(mask, value,
                                                             (einsum.fill or 0.0) if carried is None else carried)
            else:
                axes = tuple(range(len(self.space) - sum(v not in fixed for v in einsum.reduce_vars),
                                   len(self.space)))
                if mask is not None:
                    value = np.where(mask, value, REDUCE_IDENTITY[einsum.reduce_op])
                result = self.reduce(einsum, value, axes)
                if mask is not None and einsum.fill is not None:
                    result = np.where(mask.any(axis=axes), result, einsum.fill)
                if carried is not None:
                    result = np.where(mask.any(axis=axes), result, carried)
        self.tensors[einsum.name][self.index(einsum.output)] = result

    def reduce(self, einsum: Einsum, value: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        """`value` reduced over `axes` by the Einsum's reduction, from the start `init` gives it if any."""
        start = self.cascade.reduction_init.get(einsum.name)
        reduce = _REDUCE[einsum.reduce_op]
        return reduce(value, axis=axes) if start is None else reduce(value, axis=axes, initial=start)

    def index(self, ref: Ref, step_back: int = 0) -> tuple:
        """Integer positions for constants, final slots and fixed (loop) variables; slices for the rest.
        `step_back`: that many steps before an offset term's position (X[i+1] read as X[i])."""
        shape = self.tensors[ref.tensor].shape
        index: list[int | slice] = []
        for term, dim in zip(ref.terms, shape, strict=True):
            if term.const is not None:
                index.append(term.const)
            elif term.final:
                index.append(dim - 1)
            elif term.var in self.fixed:
                index.append(self.fixed[term.var] + term.offset - (step_back if term.offset else 0))
            else:
                index.append(slice(None))
        return tuple(index)

    def ref(self, ref: Ref) -> np.ndarray:
        """The operand laid out over the current space (size-1 axes where it is broadcast)."""
        sub = self.tensors[ref.tensor][self.index(ref)]
        kept = [t.var for t in ref.terms if t.var is not None and t.var not in self.fixed and t.const is None]
        letters = {v: chr(ord("a") + i) if i < 26 else chr(ord("A") + i - 26) for i, v in enumerate(self.space)}
        present = [v for v in self.space if v in kept]
        source, target = "".join(letters[v] for v in kept), "".join(letters[v] for v in present)
        if source != target:
            sub = np.einsum(f"{source}->{target}", sub)
        return sub.reshape([self.binding.var_size(v) if v in kept else 1 for v in self.space])

    def var(self, name: str) -> np.ndarray:
        """Value of an index variable over the space: mixed radix of its leaves (m = m1*M0 + m0)."""
        value: np.ndarray | int = 0
        for leaf in self.cascade.var_leaves[name]:
            size = self.binding.var_size(leaf)
            if leaf in self.fixed:
                leaf_value: np.ndarray | int = self.fixed[leaf]
            else:
                axis = self.space.index(leaf)
                leaf_value = np.arange(size).reshape([size if k == axis else 1 for k in range(len(self.space))])
            value = value * size + leaf_value
        return np.asarray(value)
