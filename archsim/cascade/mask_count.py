"""Exact count of the points where a mask predicate holds, without enumerating huge spaces.

The predicate's variables span a box (e.g. m, p in [0, 1M)). The box is split in halves recursively; interval
arithmetic decides whether a sub-box is all-true, all-false or mixed, and only small mixed boxes (the band
along a causal diagonal, say) are evaluated point by point. Both steps are vectorised: a batch of boxes is
decided at once (each node of the predicate yields arrays of bounds, one entry per box), and the small mixed
boxes of a batch are evaluated with one broadcast evaluation per box shape. A causal mask over 16M x 16M keys
and queries costs ~1.5M interval verdicts and ~512K dense boxes of 32 x 32 points (under a second) instead of
10^14 points. The thresholds keep small spaces as cheap as they were: they are evaluated point by point at once.

Assumptions: the interval arithmetic is sound (a box said to be all-true or all-false is so point by point),
so the count equals evaluating every point, however the boxes are split; sizes are below 2**53, so box bounds
are exact as float64. Nodes it does not know (unary ops, `/`, tensor reads) are undecided: their boxes are split
down to the dense evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache, reduce

import numpy as np

from archsim.cascade import syntax as S
from archsim.cascade.evaluate import evaluate
from archsim.cascade.ir import Param, Ref, Value, Var
from archsim.cascade.ops import DEFAULT_UNARY_OPS

DENSE_POINTS = 1024  # mixed boxes at most this big are evaluated point by point
SMALL_BOX_POINTS = 4096  # a whole box this small is evaluated point by point
SMALL_BATCH_POINTS = 1 << 17  # mixed boxes of a batch this small in all are evaluated point by point
BATCH_BOXES = 1 << 12  # boxes decided per vectorised step (bounds memory: a few MB per array)
DENSE_BATCH_POINTS = 1 << 18  # points per broadcast evaluation of small boxes
SHORT_AXIS = 64  # an axis of at most this many points is split before the long ones (`_halve`)

# Verdicts per box. With this order `and` is the minimum, `or` the maximum and `not` is TRUE - verdict.
FALSE, MIXED, TRUE = 0, 1, 2

Bounds = tuple[np.ndarray, np.ndarray]  # inclusive lower and upper bounds per box (float64, or scalars)


def count_true(predicate: Value, dims: Mapping[str, int], params: Mapping[str, float]) -> int:
    """Number of points of the box prod(range(dims[v])) where `predicate` holds. Memoised: the Einsums of a
    cascade usually share a mask, and a sweep revisits the same sizes."""
    used = sorted({node.name for node in S.walk(predicate) if isinstance(node, Param)})
    return _count(predicate, tuple(dims.items()), tuple((name, params[name]) for name in used))


@lru_cache(maxsize=1024)
def _count(predicate: Value, dims: tuple[tuple[str, int], ...], params: tuple[tuple[str, float], ...]) -> int:
    names, sizes = [name for name, _ in dims], [size for _, size in dims]
    if math.prod(sizes) == 0:
        return 0
    if not names:  # a predicate of parameters only (no rank): one point, counted through a dummy rank of size 1
        names, sizes = ["_"], [1]
    # Disjoint boxes' volumes sum to at most the whole box's: int64 is exact below 2**63.
    volume_type = np.int64 if math.prod(sizes) < 2**63 else object
    stack = [np.array([[[0.0] for _ in sizes], [[size - 1.0] for size in sizes]])]
    param_values = dict(params)
    if math.prod(sizes) <= SMALL_BOX_POINTS:  # one evaluation costs less than the numpy calls of an interval step
        return _dense(predicate, names, stack[0], param_values)
    total = 0
    while stack:
        boxes = _pop_batch(stack)
        verdict = _decide(predicate, names, boxes, param_values)
        widths = boxes[1] - boxes[0] + 1
        total += int(np.prod(widths[:, verdict == TRUE].astype(np.int64).astype(volume_type), axis=0).sum())
        mixed = verdict == MIXED
        volume = np.prod(widths, axis=0)
        # Few points in all are cheaper to evaluate than more steps of numpy calls on a few boxes.
        dense = mixed if volume[mixed].sum() <= SMALL_BATCH_POINTS else mixed & (volume <= DENSE_POINTS)
        total += _dense(predicate, names, boxes[:, :, dense], param_values)
        if (mixed & ~dense).any():
            stack.append(_halve(boxes[:, :, mixed & ~dense]))
    return total


def boxes_holding_a_point(predicate: Value, names: list[str], lows: np.ndarray, highs: np.ndarray,
                          params: Mapping[str, float]) -> int:
    """How many of the boxes hold a point where `predicate` holds: box i spans, along variable names[k], the
    whole numbers lows[k, i]..highs[k, i]. Exact, as `count_true`: a box is decided by interval arithmetic, a
    mixed one halved until its pieces are decided or small enough to evaluate point by point. A mixed piece whose
    corners hold a point is decided at once (`_corner_holds`): a causal predicate, monotone in each variable, holds
    at a corner of any box where it holds at all, and halving its short axes first would cut a box of 5M points
    into thousands of mixed pieces before reaching one that holds."""
    total = 0
    for start in range(0, lows.shape[1], BATCH_BOXES):
        boxes = np.array([lows[:, start:start + BATCH_BOXES], highs[:, start:start + BATCH_BOXES]], dtype=float)
        found = np.zeros(boxes.shape[2], dtype=bool)
        owner = np.arange(boxes.shape[2])  # the box of the batch each piece is cut from
        while boxes.shape[2]:
            verdict = _decide(predicate, names, boxes, params)
            found[owner[verdict == TRUE]] = True
            mixed = (verdict == MIXED) & ~found[owner]
            if mixed.any():  # a round may leave none: every piece decided
                found[owner[mixed][_corner_holds(predicate, names, boxes[:, :, mixed], params)]] = True
            open_ = (verdict == MIXED) & ~found[owner]
            boxes, owner = boxes[:, :, open_], owner[open_]
            small = np.prod(boxes[1] - boxes[0] + 1, axis=0) <= DENSE_POINTS
            _any_point(predicate, names, boxes[:, :, small], owner[small], found, params)
            boxes, owner = _halve(boxes[:, :, ~small]), np.tile(owner[~small], 2)
        total += int(found.sum())
    return total


def static_conjuncts(predicate: Value) -> Value | None:
    """The conjuncts of `predicate` that read no tensor, joined by `and`; None when each reads one. Where they
    fail the predicate fails, so a count under them bounds the predicate's from above (a block-sparse mask's
    causal part without its selected blocks)."""
    if isinstance(predicate, S.BinOp) and predicate.op == "and":
        parts = [p for p in (static_conjuncts(predicate.lhs), static_conjuncts(predicate.rhs)) if p is not None]
        return reduce(lambda a, b: S.BinOp("and", a, b), parts) if parts else None
    return None if any(isinstance(node, Ref) for node in S.walk(predicate)) else predicate


def moves_holding_a_point(predicate: Value, names: list[str], weights: np.ndarray, spans: np.ndarray,
                          moves: tuple[int, ...], params: Mapping[str, float]) -> int:
    """How many points of the grid prod(range(moves[a])) hold, in their box, a point where `predicate` holds. The
    box of grid point d spans, along variable names[k], weights[k] . d .. weights[k] . d + spans[k] (weights >= 0,
    so a block of the grid spans the hull of its points' boxes). Blocks of the grid are decided by interval
    arithmetic on that hull and halved while mixed; a single grid point left mixed goes to
    `boxes_holding_a_point`. A causal grid of n x n moves costs O(n) decisions, not n^2. Memoised: a group's
    readers of one mask (K and V), and the mapper's candidates, ask the same grid again."""
    used = sorted({node.name for node in S.walk(predicate) if isinstance(node, Param)})
    return _moves(predicate, tuple(names), tuple(map(tuple, np.asarray(weights, float).tolist())),
                  tuple(np.asarray(spans, float).tolist()), tuple(moves), tuple((n, params[n]) for n in used))


@lru_cache(maxsize=1024)
def _moves(predicate: Value, names: tuple[str, ...], weight_rows: tuple[tuple[float, ...], ...],
           span_values: tuple[float, ...], moves: tuple[int, ...], params: tuple[tuple[str, float], ...]) -> int:
    names, weights, spans, params = list(names), np.array(weight_rows), np.array(span_values), dict(params)
    total = 0
    single: list[np.ndarray] = []
    stack = [np.array([[[0.0] for _ in moves], [[m - 1.0] for m in moves]])]
    while stack:
        blocks = _pop_batch(stack)
        lows, highs = weights @ blocks[0], weights @ blocks[1] + spans[:, None]
        verdict = _decide(predicate, names, np.array([lows, highs]), params)
        size = np.prod(blocks[1] - blocks[0] + 1, axis=0)
        total += int(size[verdict == TRUE].sum())
        mixed = verdict == MIXED
        one = mixed & (size == 1)
        if one.any():
            single.append(np.array([lows[:, one], highs[:, one]]))
        if (mixed & ~one).any():
            stack.append(_halve(blocks[:, :, mixed & ~one]))
    if single:
        boxes = np.concatenate(single, axis=2)
        total += boxes_holding_a_point(predicate, names, boxes[0], boxes[1], params)
    return total


def _corner_holds(predicate: Value, names: list[str], boxes: np.ndarray, params) -> np.ndarray:
    """Whether the predicate holds at one of the 2^k corners of each box (k variables; one evaluation)."""
    lows, widths = boxes[0].astype(np.int64), (boxes[1] - boxes[0]).astype(np.int64)
    points = _Points(names, np.zeros_like(lows), (2,) * len(names))  # offsets 0 and 1 along each axis
    column = [-1] + [1] * len(names)
    for axis, name in enumerate(names):
        points.values[name] = lows[axis].reshape(column) + points.values[name] * widths[axis].reshape(column)
    values = np.broadcast_to(evaluate(predicate, points, params, DEFAULT_UNARY_OPS), points.shape)
    return values.reshape(values.shape[0], -1).any(axis=1)


def _any_point(predicate: Value, names: list[str], boxes: np.ndarray, owner: np.ndarray, found: np.ndarray,
               params) -> None:
    """Mark found[owner[i]] where small box i holds a point where the predicate holds: one broadcast evaluation
    per box shape."""
    first, widths = boxes[0].astype(np.int64), (boxes[1] - boxes[0] + 1).astype(np.int64)
    while first.shape[1]:
        shape = tuple(widths[:, 0].tolist())
        same = (widths == widths[:, :1]).all(axis=0)
        points = _Points(names, first[:, same], shape)
        values = np.broadcast_to(evaluate(predicate, points, params, DEFAULT_UNARY_OPS), points.shape)
        np.logical_or.at(found, owner[same], values.reshape(values.shape[0], -1).any(axis=1))
        first, widths, owner = first[:, ~same], widths[:, ~same], owner[~same]


def _pop_batch(stack: list[np.ndarray]) -> np.ndarray:
    """At most BATCH_BOXES boxes from the top of the stack (the rest stays there)."""
    boxes = stack.pop()
    if boxes.shape[2] > BATCH_BOXES:
        stack.append(boxes[:, :, BATCH_BOXES:])
    return boxes[:, :, :BATCH_BOXES]


def _halve(boxes: np.ndarray) -> np.ndarray:
    """Split each box in halves across its longest axis (the first if tied), or first across a short axis
    (at most `SHORT_AXIS` points, more than one) when it has one: a predicate of a few devices and steps
    (`(d - s) % devices`) is decided only once those take single values, so splitting the token axes first
    would multiply mixed boxes along the whole diagonal band before the short axes are cut."""
    columns = np.arange(boxes.shape[2])
    widths = boxes[1] - boxes[0]
    short = np.where((widths >= 1) & (widths < SHORT_AXIS), widths, np.inf)
    axis = np.where(np.isfinite(short).any(axis=0), np.argmin(short, axis=0), np.argmax(widths, axis=0))
    mid = np.floor((boxes[0, axis, columns] + boxes[1, axis, columns] + 1) / 2)
    left, right = boxes.copy(), boxes
    left[1, axis, columns] = mid - 1
    right[0, axis, columns] = mid
    return np.concatenate([left, right], axis=2)


def _decide(predicate: Value, names: list[str], boxes: np.ndarray, params) -> np.ndarray:
    """Verdict (FALSE/MIXED/TRUE, int8) of each box."""
    bounds = {name: (boxes[0, k], boxes[1, k]) for k, name in enumerate(names)}
    with np.errstate(all="ignore"):  # inf - inf and 0 * inf give NaN bounds, which decide nothing
        verdict = _truth(predicate, bounds, params)
    return np.broadcast_to(np.asarray(verdict, dtype=np.int8), boxes.shape[2:])


class _Points:
    """Points of equally shaped boxes: each variable has a leading box axis, then one axis per variable."""

    def __init__(self, names: list[str], first: np.ndarray, shape: tuple[int, ...]) -> None:
        self.values = {}
        for axis, name in enumerate(names):
            offsets = np.arange(shape[axis]).reshape([1] + [-1 if k == axis else 1 for k in range(len(shape))])
            self.values[name] = first[axis].reshape([-1] + [1] * len(shape)) + offsets
        self.shape = (first.shape[1], *shape)

    def var(self, name: str) -> np.ndarray:
        return self.values[name]

    def ref(self, ref):  # data-dependent masks are never counted here
        raise TypeError("a predicate that reads tensors has no exact count; it carries a density")


def _dense(predicate: Value, names: list[str], boxes: np.ndarray, params) -> int:
    """Sum of the predicate over every point of the boxes, one broadcast evaluation per shape (and per
    DENSE_BATCH_POINTS points)."""
    first, widths = boxes[0].astype(np.int64), (boxes[1] - boxes[0] + 1).astype(np.int64)
    total = 0
    while first.shape[1]:
        shape = tuple(widths[:, 0].tolist())
        same = (widths == widths[:, :1]).all(axis=0)
        members, first, widths = first[:, same], first[:, ~same], widths[:, ~same]
        step = max(1, DENSE_BATCH_POINTS // math.prod(shape))
        for start in range(0, members.shape[1], step):
            points = _Points(names, members[:, start : start + step], shape)
            total += _dense_sum(predicate, points, params)
    return total


def _dense_sum(predicate: Value, points: _Points, params) -> int:
    """The points where the predicate holds: where its value is true or nonzero, as the interpreter's
    `np.where(mask, ...)` reads it."""
    values = np.broadcast_to(evaluate(predicate, points, params, DEFAULT_UNARY_OPS), points.shape)
    return int(np.count_nonzero(values))


def _truth(node: Value, bounds: Mapping[str, Bounds], params):
    """FALSE/TRUE where the predicate fails/holds on the whole box, MIXED where it is mixed or unknown."""
    match node:
        case S.Not(arg=arg):
            return TRUE - _truth(arg, bounds, params)
        case S.BinOp(op="and", lhs=lhs, rhs=rhs):
            return np.minimum(_truth(lhs, bounds, params), _truth(rhs, bounds, params))
        case S.BinOp(op="or", lhs=lhs, rhs=rhs):
            return np.maximum(_truth(lhs, bounds, params), _truth(rhs, bounds, params))
        case S.BinOp(op=op, lhs=lhs, rhs=rhs) if op in S.COMPARE_OPS:
            return _compare(op, _range(lhs, bounds, params), _range(rhs, bounds, params))
    return MIXED


def _verdict(true: np.ndarray, false: np.ndarray) -> np.ndarray:
    return np.where(true, TRUE, np.where(false, FALSE, MIXED))


def _compare(op: str, a: Bounds, b: Bounds) -> np.ndarray:
    """Verdict of `a op b` from the bounds of both sides."""
    if op in (">", ">="):
        op, a, b = op.replace(">", "<"), b, a
    (alo, ahi), (blo, bhi) = a, b
    if op == "<":
        return _verdict(ahi < blo, alo >= bhi)
    if op == "<=":
        return _verdict(ahi <= blo, alo > bhi)
    same = (alo == ahi) & (ahi == blo) & (blo == bhi)
    disjoint = (ahi < blo) | (bhi < alo)
    return _verdict(same, disjoint) if op == "==" else _verdict(disjoint, same)


def _range(node: Value, bounds: Mapping[str, Bounds], params) -> Bounds:
    """Bounds of a numeric expression over each box; (-inf, inf) when unknown."""
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
            return (np.negative(hi), np.negative(lo))
        case S.Call(fn="abs", args=(arg,)):
            lo, hi = _range(arg, bounds, params)
            return (np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0)),
                    np.where(lo >= 0, hi, np.where(hi <= 0, -lo, np.maximum(-lo, hi))))
        case S.Call(fn=fn, args=(a, b)) if fn in ("min", "max"):
            (alo, ahi), (blo, bhi) = _range(a, bounds, params), _range(b, bounds, params)
            pick = np.minimum if fn == "min" else np.maximum
            return (pick(alo, blo), pick(ahi, bhi))
        case S.BinOp(op=op, lhs=lhs, rhs=rhs) if op in ("+", "-", "*", "//", "%"):
            return _arithmetic(op, _range(lhs, bounds, params), _range(rhs, bounds, params), _integral(lhs, params))
    return unknown


def _arithmetic(op: str, a: Bounds, b: Bounds, a_integral: bool) -> Bounds:
    """Bounds of `a op b`. `//` and `%` are bounded only by a constant positive divisor (per box); the
    remainder of an integer by an integer is at most the divisor minus one, of anything else below the divisor."""
    (alo, ahi), (blo, bhi) = a, b
    if op == "+":
        return (alo + blo, ahi + bhi)
    if op == "-":
        return (alo - bhi, ahi - blo)
    if op == "*":
        products = [alo * blo, alo * bhi, ahi * blo, ahi * bhi]
        lo, hi = reduce(np.minimum, products), reduce(np.maximum, products)
        nan = reduce(np.logical_or, map(np.isnan, products))
        return (np.where(nan, -math.inf, lo), np.where(nan, math.inf, hi))
    divisor = (blo == bhi) & (blo > 0)
    if op == "//":  # floor division is monotone in the dividend; infinite dividends stay infinite
        lo = np.where(np.isfinite(alo), np.floor_divide(alo, blo), alo)
        hi = np.where(np.isfinite(ahi), np.floor_divide(ahi, blo), ahi)
        return (np.where(divisor, lo, -math.inf), np.where(divisor, hi, math.inf))
    divisor &= np.isfinite(alo) & np.isfinite(ahi)
    one_period = np.floor_divide(alo, blo) == np.floor_divide(ahi, blo)
    top = np.where(a_integral & (np.mod(blo, 1) == 0), blo - 1, blo)
    lo = np.where(one_period, np.mod(alo, blo), 0)
    hi = np.where(one_period, np.mod(ahi, blo), top)
    return (np.where(divisor, lo, -math.inf), np.where(divisor, hi, math.inf))


def _integral(node: Value, params) -> bool:
    """Whether the expression takes integer values only (index variables, integer constants, and what +, -, *,
    //, %, min, max, abs and negation make of them)."""
    match node:
        case S.Num(value=v):
            return float(v).is_integer()
        case Param(name=name):
            return float(params[name]).is_integer()
        case Var():
            return True
        case S.Neg(arg=arg):
            return _integral(arg, params)
        case S.Call(fn=fn, args=args) if fn in ("abs", "min", "max"):
            return all(_integral(arg, params) for arg in args)
        case S.BinOp(op=op, lhs=lhs, rhs=rhs) if op in ("+", "-", "*", "//", "%"):
            return _integral(lhs, params) and _integral(rhs, params)
    return False
