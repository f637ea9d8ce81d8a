"""Evaluate resolved expressions on numpy arrays over an iteration space.

Shared by the interpreter (Einsum bodies and masks over real tensors) and by the mask counter (predicates
over index values only). An `Env` supplies what names mean; the result broadcasts over the space's axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from archsim.cascade import syntax as S
from archsim.cascade.ir import Param, Ref, Value, Var
from archsim.cascade.ops import UnaryOp

_BINARY = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "//": np.floor_divide, "%": np.mod,
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal,
    "!=": np.not_equal, "and": np.logical_and, "or": np.logical_or,
}
_CALLS = {"max": np.maximum, "min": np.minimum, "abs": np.abs}
_ARITHMETIC = frozenset({"+", "-", "*", "/", "//", "%"})


class Env(Protocol):
    """What `evaluate` reads names from: an index variable's values (`var`) and a tensor access's (`ref`), each
    an array over the iteration space."""

    def var(self, name: str) -> np.ndarray: ...
    def ref(self, ref: Ref) -> np.ndarray: ...


def evaluate(node: Value, env: Env, params: Mapping[str, float], unary_ops: Mapping[str, UnaryOp]):
    """Comparisons yield booleans; arithmetic reads a boolean as 1.0/0.0 (`(m <= p) + (m >= 50)` counts, it is no
    logical or), and a predicate's caller casts its result."""
    match node:
        case S.Num(value=value):
            return value
        case Param(name=name):
            return params[name]
        case Var(name=name):
            return env.var(name)
        case Ref():
            return env.ref(node)
        case S.Neg(arg=arg):
            return np.negative(_number(evaluate(arg, env, params, unary_ops)))
        case S.Not(arg=arg):
            return np.logical_not(evaluate(arg, env, params, unary_ops))
        case S.BinOp(op=op, lhs=lhs, rhs=rhs):
            left, right = evaluate(lhs, env, params, unary_ops), evaluate(rhs, env, params, unary_ops)
            if op in _ARITHMETIC:
                left, right = _number(left), _number(right)
            return _BINARY[op](left, right)
        case S.Call(fn=fn, args=args):
            values = [evaluate(a, env, params, unary_ops) for a in args]
            if fn in _CALLS and (len(args) == 2 or fn == "abs"):
                return _CALLS[fn](*values)
            return unary_ops[fn].fn(np.asarray(values[0], dtype=float))
    raise TypeError(f"cannot evaluate {node!r}")


def _number(value):
    """A comparison's truth as 1.0/0.0 where arithmetic reads it (numpy adds booleans as a logical or)."""
    if isinstance(value, bool | np.bool_) or (isinstance(value, np.ndarray) and value.dtype == np.bool_):
        return np.asarray(value, dtype=float)
    return value
