"""Bind a cascade's ranks to sizes: cascade defaults, then a workload's params, then explicit overrides.

An override names either a parameter (`seq_len=4096`) or a rank (`M0=256`). Partition parts whose size is
left out are derived (M1 = M / M0) and must divide exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from archsim.cascade import syntax as S
from archsim.cascade.ir import Cascade
from archsim.errors import SpecError


@dataclass(frozen=True)
class Binding:
    """Concrete sizes of one cascade instance."""

    cascade: Cascade
    params: dict[str, float]
    rank_sizes: dict[str, int]
    word_bytes: int

    def var_size(self, var: str) -> int:
        return self.rank_sizes[self.cascade.var_ranks[var]]

    def leaf_shape(self, tensor: str) -> tuple[int, ...]:
        """Shape over leaf ranks; a recurrence is one slot longer along its iterative rank."""
        decl = self.cascade.tensors[tensor]
        return tuple(self.rank_sizes[r] + (r == decl.iterative) for r in decl.leaf_ranks)

    def shape(self, tensor: str) -> tuple[int, ...]:
        """Shape over the ranks as declared (a partitioned rank is one axis)."""
        decl = self.cascade.tensors[tensor]
        return tuple(self.rank_sizes[r] + (r == decl.iterative) for r in decl.ranks)

    def bytes(self, tensor: str) -> int:
        return math.prod(self.shape(tensor)) * self.word_bytes


def eval_size(expr: S.Expr, params: Mapping[str, float]) -> float:
    """Evaluate a size/density expression of parameters."""
    match expr:
        case S.Num(value=value):
            return value
        case S.Name(name=name):
            return params[name]
        case S.BinOp(op=op, lhs=lhs, rhs=rhs):
            a, b = eval_size(lhs, params), eval_size(rhs, params)
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else math.inf,
                    "//": a // b if b else math.inf}[op]
    raise TypeError(f"not a size expression: {expr!r}")


def bind(
    cascade: Cascade,
    params: Mapping[str, float] | None = None,
    overrides: Mapping[str, float] | None = None,
    source: str = "<params>",
) -> Binding:
    """Resolve every rank size. `params` may carry names the cascade does not use (a workload is generic);
    `overrides` must each name a parameter or a rank of the cascade."""
    values = dict(cascade.params)
    values.update({k: float(v) for k, v in (params or {}).items()})
    rank_overrides: dict[str, int] = {}
    for key, value in (overrides or {}).items():
        if key in cascade.rank_sizes:
            rank_overrides[key] = _positive_int(value, source, key)
        elif key in values:
            values[key] = float(value)
        else:
            known = ", ".join([*values, *cascade.rank_sizes])
            raise SpecError(source, key, f"not a parameter or rank of {cascade.name} (known: {known})")
    sizes: dict[str, int] = {}
    for rank, expr in cascade.rank_sizes.items():
        if rank in rank_overrides:
            sizes[rank] = rank_overrides[rank]
        elif expr is not None:
            where = f"ranks.{rank}"
            try:
                sizes[rank] = _positive_int(eval_size(expr, values), cascade.source, where)
            except SpecError as exc:
                raise SpecError(exc.source, exc.where, f"{exc.message} (with params {_show(values)})") from None
    for root, parts in cascade.partitions.items():
        known = [p for p in parts if p in sizes]
        product = math.prod(sizes[p] for p in known)
        if len(known) == len(parts):
            if product != sizes[root]:
                raise SpecError(cascade.source, f"partition.{root}",
                                f"parts {parts} multiply to {product}, not {root}={sizes[root]}")
            continue
        missing = next(p for p in parts if p not in sizes)
        if sizes[root] % product:
            raise SpecError(cascade.source, f"partition.{root}",
                            f"{root}={sizes[root]} is not divisible by {'*'.join(known)}={product}")
        sizes[missing] = sizes[root] // product
    word_bytes = _positive_int(values.get("word_bytes", 2), source, "word_bytes")
    return Binding(cascade, values, sizes, word_bytes)


def _positive_int(value: float, source: str, where: str) -> int:
    if not math.isfinite(value) or value != int(value) or value <= 0:
        raise SpecError(source, where, f"expected a positive integer size, got {value:g}")
    return int(value)


def _show(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in values.items())
