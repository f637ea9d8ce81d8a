"""Exact count of the points where a mask predicate holds, without enumerating huge spaces.

The predicate's variables span a box (e.g. m, p in [0, 1M)). The box is split in halves recursively; interval
arithmetic decides whether a sub-box is all-true, all-false or mixed, and only small mixed boxes (the band
along a causal diagonal, say) are evaluated point by point with numpy. A causal mask over 1M x 1M keys and
queries costs ~16K small dense evaluations instead of 10^12 points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from archsim.cascade import syntax as S
from archsim.cascade.evaluate import evaluate
from archsim.cascade.ir import Param, Value, Var
from archsim.cascade.ops import DEFAULT_UNARY_OPS

DENSE_POINTS = 4096  # boxes at most this big are evaluated point by point

Interval = tuple[float, float]  # inclusive bounds


def count_true(predicate: Value, dims: Mapping[str, int], params: Mapping[str, float]) -> int:
    """Number of points of the box prod(range(dims[v])) where `predicate` holds."""
    names = list(dims)
    stack = [tuple((0, dims[v]) for v in names)]
    total = 0
    while stack:
        box = stack.pop()
        volume = math.prod(hi - lo for lo, hi in box)
        if volume == 0:
            continue
        bounds = {v: (lo, hi - 1) for v, (lo, hi) in zip(names, box, strict=True)}
        verdict = _truth(predicate, bounds, params)
        if verdict is True:
            total += volume
        elif verdict is None and volume <= DENSE_POINTS:
            total += _dense(predicate, names, box, params)
        elif verdict is None:
            axis = max(range(len(box)), key=lambda k: box[k][1] - box[k][0])
            lo, hi = box[axis]
            mid = (lo + hi) // 2
            stack.append((*box[:axis], (lo, mid), *box[axis + 1 :]))
            stack.append((*box[:axis], (mid, hi), *box[axis + 1 :]))
    return total


class _Grid:
    def __init__(self, names: list[str], box: tuple[tuple[int, int], ...]) -> None:
        self.values = {}
        for axis, (name, (lo, hi)) in enumerate(zip(names, box, strict=True)):
            self.values[name] = np.arange(lo, hi).reshape([-1 if k == axis else 1 for k in range(len(box))])
        self.shape = tuple(hi - lo for lo, hi in box)

    def var(self, name: str) -> np.ndarray:
        return self.values[name]

    def ref(self, ref):  # data-dependent masks are never counted here
        raise TypeError("a predicate that reads tensors has no exact count; it carries a density")


def _dense(predicate: Value, names: list[str], box, params) -> int:
    grid = _Grid(names, box)
    return int(np.broadcast_to(evaluate(predicate, grid, params, DEFAULT_UNARY_OPS), grid.shape).sum())


def _truth(node: Value, bounds: Mapping[str, Interval], params) -> bool | None:
    """True/False when the predicate holds/fails on the whole box, None when it is mixed or unknown."""
    match node:
        case S.Not(arg=arg):
            inner = _truth(arg, bounds, params)
            return None if inner is None else not inner
        case S.BinOp(op="and", lhs=lhs, rhs=rhs):
            a, b = _truth(lhs, bounds, params), _truth(rhs, bounds, params)
            return False if False in (a, b) else (True if a is True and b is True else None)
        case S.BinOp(op="or", lhs=lhs, rhs=rhs):
            a, b = _truth(lhs, bounds, params), _truth(rhs, bounds, params)
            return True if True in (a, b) else (False if a is False and b is False else None)
        case S.BinOp(op=op, lhs=lhs, rhs=rhs) if op in S.COMPARE_OPS:
            (alo, ahi), (blo, bhi) = _range(lhs, bounds, params), _range(rhs, bounds, params)
            if op in ("<", ">"):
                (alo, ahi), (blo, bhi) = ((alo, ahi), (blo, bhi)) if op == "<" else ((blo, bhi), (alo, ahi))
                return True if ahi < blo else (False if alo >= bhi else None)
            if op in ("<=", ">="):
                (alo, ahi), (blo, bhi) = ((alo, ahi), (blo, bhi)) if op == "<=" else ((blo, bhi), (alo, ahi))
                return True if ahi <= blo else (False if alo > bhi else None)
            same = alo == ahi == blo == bhi
            disjoint = ahi < blo or bhi < alo
            if op == "==":
                return True if same else (False if disjoint else None)
            return False if same else (True if disjoint else None)
    return None


def _range(node: Value, bounds: Mapping[str, Interval], params) -> Interval:
    """Interval of a numeric expression over the box; (-inf, inf) when unknown."""
    unknown = (-math.inf, math.inf)
    match node:
        case S.Num(value=v):
            return (v, v)
        case Param(name=name):
            return (params[name], params[name])
        case Var(name=name):
            return bounds[name]
        case S.Neg(arg=arg):
            lo, hi = _range(arg, bounds, params)
            return (-hi, -lo)
        case S.Call(fn="abs", args=(arg,)):
            lo, hi = _range(arg, bounds, params)
            return (lo, hi) if lo >= 0 else ((-hi, -lo) if hi <= 0 else (0, max(-lo, hi)))
        case S.Call(fn=fn, args=(a, b)) if fn in ("min", "max"):
            (alo, ahi), (blo, bhi) = _range(a, bounds, params), _range(b, bounds, params)
            pick = min if fn == "min" else max
            return (pick(alo, blo), pick(ahi, bhi))
        case S.BinOp(op=op, lhs=lhs, rhs=rhs):
            (alo, ahi), (blo, bhi) = _range(lhs, bounds, params), _range(rhs, bounds, params)
            if op == "+":
                return (alo + blo, ahi + bhi)
            if op == "-":
                return (alo - bhi, ahi - blo)
            if op == "*":
                products = [alo * blo, alo * bhi, ahi * blo, ahi * bhi]
                return unknown if any(map(math.isnan, products)) else (min(products), max(products))
            if op == "//" and blo == bhi and blo > 0:
                return (math.floor(alo / blo), math.floor(ahi / blo))
            if op == "%" and blo == bhi and blo > 0 and math.isfinite(alo) and math.isfinite(ahi):
                if math.floor(alo / blo) == math.floor(ahi / blo):
                    return (alo % blo, ahi % blo)
                return (0, blo - 1)
    return unknown
