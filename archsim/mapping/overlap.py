"""A fusion group's overlap policy, checked when the mapping loads (`check_overlap_written`) and against its group's
Einsums once they are checked against the cascade (`check_overlap`; see `archsim.mapping.spec` for its meaning).

`sequential`, `max`, or a pipeline expression over the group's Einsums (each standing for its compute cycles)::

    expr  := term ('+' term)*
    term  := EINSUM | 'max(' expr (',' expr)* ')' | delay
    delay := factor ('*' factor)*      exactly one factor an EINSUM, the others positive numbers or rank names

A delay term is a stall of that many times an Einsum's cycles (+Architecture's `M0*LM`: the 2-D array waits
M0 cycles per cycle of LM). Every Einsum of the group appears exactly once outside delay terms: one left out
would cost no time and one written twice would count twice. A product of two Einsums (`QK * LM`) means
nothing and is refused. Rank names in delay terms are checked against the bound cascade by
`archsim.mapping.resolve` (`delay_names` lists them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache, reduce

import numpy as np

from archsim.cascade.syntax import BinOp, Call, Expr, Name, Num, ParseError, parse_expr, walk
from archsim.errors import SpecError

Number = float | np.ndarray  # one point's value, or a column of values over points (`archsim.model.batch`)
Cycles = Callable[[Mapping[str, Number]], Number]  # a pipeline expression's value given each name's cycles

POLICIES = ("sequential", "max")
EXPECTED = ("expected sequential, max, or the group's Einsums joined by + and max(...) with delay terms "
            "size * Einsum (e.g. M0*LM)")
EXAMPLE = "max(QK+LM, RD+RNV+AV) + RM + max(SLN+SLD, PRM+SPD) + max(SLNV, SPNV) (FuseMax's waterfall)"


def check_overlap_written(text: object, source: str, where: str) -> None:
    """Raise a SpecError at `where` unless `text` is given and a policy or an expression that parses: what the
    loader checks without the cascade. Its Einsums are checked by `check_overlap`, once the group's binding is
    checked against the cascade (`archsim.mapping.resolve`), so that a binding's mistake is blamed on the binding."""
    if text is None:
        raise SpecError(source, where, f"missing: sequential, max or a pipeline expression such as {EXAMPLE} (a "
                                       "group without it had run as max: write overlap: max to keep its earlier "
                                       "results)")
    if not isinstance(text, str):
        raise SpecError(source, where, f"expected sequential, max or a pipeline expression, got {text!r}")
    if text in POLICIES:
        return
    try:
        parse_pipeline(text)
    except ParseError as exc:
        raise SpecError(source, where, f"not a pipeline expression: {exc}") from None


def check_overlap(text: str, einsums: Collection[str], source: str, where: str) -> None:
    """Raise a SpecError at `where` unless `text` is a policy or a pipeline expression over `einsums`
    (`check_overlap_written`, then each of `einsums` exactly once outside delay terms)."""
    check_overlap_written(text, source, where)
    if text in POLICIES:
        return
    plain: list[str] = []
    _collect(parse_pipeline(text), set(einsums), plain, source, where)
    twice = next((e for e in plain if plain.count(e) > 1), None)
    if twice:
        raise SpecError(source, where, f"Einsum {twice} appears {plain.count(twice)} times outside delay terms "
                                       "(each Einsum of the group exactly once, or its time counts twice)")
    missing = [e for e in einsums if e not in plain]
    if missing:
        raise SpecError(source, where, f"leaves out {', '.join(missing)}: their compute time would not count "
                                       "(each Einsum of the group exactly once)")


@lru_cache(maxsize=256)
def parse_pipeline(text: str) -> Expr:
    """`text` parsed (cached: the mapper evaluates a group, and so reads its overlap, once per candidate)."""
    return parse_expr(text)


def maximum_of(values: Sequence[Number]) -> Number:
    """The largest of `values` (`max`'s: the first of equals), elementwise where one is a column."""
    for v in values:
        if isinstance(v, np.ndarray):
            return reduce(np.maximum, values)
    return max(values)


@lru_cache(maxsize=1024)
def compile_pipeline(node: Expr) -> Cycles:
    """The value of a pipeline expression (`+`, `*`, `max` over Einsum names and rank sizes) as a function of each
    name's cycles, one point's or columns over points (`max` elementwise), built once per expression: the
    analytical and event models evaluate it on every point. The operations and their order are the expression's,
    so the value is the one the tree itself gives."""
    match node:
        case Name(name=name):
            return lambda cycles: cycles[name]  # an Einsum's compute cycles, or a rank size (+Arch's LM x M0 stall)
        case Num(value=value):
            return lambda cycles: value
        case BinOp(op="+", lhs=lhs, rhs=rhs):
            left, right = compile_pipeline(lhs), compile_pipeline(rhs)
            return lambda cycles: left(cycles) + right(cycles)
        case BinOp(op="*", lhs=lhs, rhs=rhs):
            left, right = compile_pipeline(lhs), compile_pipeline(rhs)
            return lambda cycles: left(cycles) * right(cycles)
        case Call(fn="max", args=args):
            terms = tuple(map(compile_pipeline, args))
            return lambda cycles: maximum_of([term(cycles) for term in terms])
    raise ValueError(f"not a pipeline expression: {node!r}")


@lru_cache(maxsize=256)
def side_by_side(text: str) -> tuple[tuple[Expr, str, tuple[str, ...]], ...]:
    """Each `max(...)` of a checked pipeline expression: (its node, its text, the Einsums its arguments run, not
    counting delay terms, which stall rather than compute). The models check that a unit's Einsums in one
    `max` fit its PEs for that max's cycles (`archsim.model.analytical`)."""
    if text in POLICIES:
        return ()
    found = []
    for node in walk(parse_pipeline(text)):
        if isinstance(node, Call) and node.fn == "max":
            names: list[str] = []
            _plain(node, names)
            found.append((node, f"max({', '.join(_text(a) for a in node.args)})", tuple(names)))
    return tuple(found)


def _plain(node: Expr, names: list[str]) -> None:
    match node:
        case Name(name=name):
            names.append(name)
        case BinOp(op="+", lhs=lhs, rhs=rhs):
            _plain(lhs, names)
            _plain(rhs, names)
        case Call(args=args):
            for arg in args:
                _plain(arg, names)


def _text(node: Expr) -> str:
    """A pipeline term as written (names, numbers, +, * and max)."""
    match node:
        case Name(name=name):
            return name
        case Num(value=value):
            return f"{value:g}"
        case BinOp(op=op, lhs=lhs, rhs=rhs):
            return f"{_text(lhs)}{op}{_text(rhs)}" if op == "*" else f"{_text(lhs)} {op} {_text(rhs)}"
        case Call(fn=fn, args=args):
            return f"{fn}({', '.join(map(_text, args))})"
    return repr(node)


def delay_names(text: str, einsums: Collection[str]) -> set[str]:
    """Names in a checked overlap expression that are not Einsums: the rank sizes its delay terms use."""
    if text in POLICIES:
        return set()
    return {n.name for n in walk(parse_pipeline(text)) if isinstance(n, Name) and n.name not in einsums}


def _collect(node: Expr, einsums: set[str], plain: list[str], source: str, where: str) -> None:
    match node:
        case Name(name=name) if name in einsums:
            plain.append(name)
        case Name(name=name):
            raise SpecError(source, where, f"'{name}' is not an Einsum of this group "
                                           f"({', '.join(sorted(einsums))}); a size goes in a delay term "
                                           f"({name}*EINSUM)")
        case BinOp(op="+", lhs=lhs, rhs=rhs):
            _collect(lhs, einsums, plain, source, where)
            _collect(rhs, einsums, plain, source, where)
        case Call(fn="max", args=args):
            for arg in args:
                _collect(arg, einsums, plain, source, where)
        case BinOp(op="*"):
            _check_delay(node, einsums, source, where)
        case BinOp(op=op):
            raise SpecError(source, where, f"'{op}' is not allowed: {EXPECTED}")
        case Call(fn=fn):
            raise SpecError(source, where, f"{fn}(...) is not allowed: {EXPECTED}")
        case _:
            raise SpecError(source, where, f"a {type(node).__name__.lower()} term is not allowed: {EXPECTED}")


def _check_delay(node: Expr, einsums: set[str], source: str, where: str) -> None:
    factors = list(_factors(node))
    named = [f.name for f in factors if isinstance(f, Name) and f.name in einsums]
    if len(named) > 1:
        raise SpecError(source, where, f"{' * '.join(named)} multiplies Einsums, which means nothing: a delay "
                                       "term is a size times one Einsum (e.g. M0*LM)")
    if not named:
        raise SpecError(source, where, "a product without an Einsum: a delay term is a size times one Einsum "
                                       "(e.g. M0*LM)")
    for f in factors:
        if isinstance(f, Num) and not (math.isfinite(f.value) and f.value > 0):
            raise SpecError(source, where, f"delay factor {f.value:g}: expected a positive finite number")
        if not isinstance(f, Name | Num):
            raise SpecError(source, where, "a delay term multiplies numbers, rank names and one Einsum only "
                                           "(e.g. M0*LM)")


def _factors(node: Expr):
    if isinstance(node, BinOp) and node.op == "*":
        yield from _factors(node.lhs)
        yield from _factors(node.rhs)
    else:
        yield node

