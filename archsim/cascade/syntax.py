"""Surface syntax of one extended Einsum, a mask predicate, or a size expression.

Grammar (precedence from loose to tight)::

    einsum     := access '=' expr ('where' expr ('else' ['-'] NUMBER | 'inf')?)?
    access     := NAME '[' index (',' index)* ']'  |  NAME '[' ']'
    index      := NAME (('+' | '-') INT)?  |  INT          # m, m1+1, M1 (a rank name: the final slot), 0
    expr       := or
    or         := and ('or' and)*
    and        := not ('and' not)*
    not        := 'not' not | compare
    compare    := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?
    sum        := product (('+' | '-') product)*
    product    := unary (('*' | '/' | '//' | '%') unary)*
    unary      := '-' unary | atom
    atom       := NUMBER | 'inf' | access | reduce | call | NAME | '(' expr ')'
    reduce     := ('sum' | 'max' | 'min') '(' NAME (',' NAME)* ':' expr ')'
    call       := NAME '(' expr (',' expr)* ')'

`where` masks the Einsum with a predicate (or the name of a predicate under the file's `masks:`); `else`
gives the value of masked points. Einsums are usually written one per line in a YAML block scalar (`|`),
which keeps `sum(e: ...)` free of YAML quoting. The parser only builds the tree; what names mean (ranks,
tensors, parameters, ops) is decided by the loader.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

REDUCE_OPS = ("sum", "max", "min")
# Deepest expression tree accepted (parentheses, calls, '-', 'not', and each operator of a chain a + b + ...
# count a level). Real Einsums nest under 10; the parser and the passes over the tree recurse once or a few
# times per level, so this keeps them far from Python's recursion limit.
MAX_DEPTH = 64
# Most nodes in one expression tree: a body written out stays far below (the library's largest has 17); the limit
# bounds a body whose composite ops (`ops:`) expand into one another, and so the work of every walk over it.
MAX_NODES = 4096
COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")


class ParseError(ValueError):
    """A syntax error in an Einsum, predicate or size expression: `message`, the `text` and the 0-based `column`
    where it was found; its string quotes the text around the column."""

    def __init__(self, message: str, text: str, column: int) -> None:
        self.message = message
        self.text = text
        self.column = column
        start, end = max(0, column - 40), column + 40  # long text is quoted around the column
        shown = ("..." if start else "") + text[start:end] + ("..." if end < len(text) else "")
        super().__init__(f"{message} at column {column + 1} of '{shown}'")


@dataclass(frozen=True)
class Index:
    """One index of an access: a variable with an offset (`m1+1`), a rank name (`M1`) or an integer."""

    name: str | None = None
    offset: int = 0
    const: int | None = None

    def __str__(self) -> str:
        if self.name is None:
            return str(self.const)
        return self.name + (f"{self.offset:+d}" if self.offset else "")


@dataclass(frozen=True)
class Num:
    """A numeric literal (`inf` included)."""

    value: float


@dataclass(frozen=True)
class Name:
    """A bare name: a parameter in an Einsum, an index variable or a parameter in a predicate."""

    name: str


@dataclass(frozen=True)
class Access:
    """A tensor access, `tensor[index, ...]` (or `tensor[]`, with no index)."""

    tensor: str
    indices: tuple[Index, ...]

    def __str__(self) -> str:
        return f"{self.tensor}[{','.join(str(i) for i in self.indices)}]"


@dataclass(frozen=True)
class Call:
    """A call `fn(args)`: a unary op, a composite op, or a binary call such as max(a, b)."""

    fn: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class BinOp:
    """A binary operator: arithmetic, a comparison, `and` or `or`."""

    op: str
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    arg: Expr


@dataclass(frozen=True)
class Not:
    """Logical `not` of a predicate."""

    arg: Expr


@dataclass(frozen=True)
class Reduce:
    """A reduction `op(vars: body)`, op one of REDUCE_OPS (`sum(e: Q[p,e] * K[m,e])`)."""

    op: str
    vars: tuple[str, ...]
    body: Expr


Expr = Num | Name | Access | Call | BinOp | Neg | Not | Reduce

_TOKEN = re.compile(
    r"(?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|==|!=|//|[-+*/%()\[\],:=<>])"
)
_SPACE = re.compile(r"\s*")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], _SPACE.match(text).end()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ParseError(f"unexpected character '{text[pos]}'", text, pos)
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind), pos))
        pos = _SPACE.match(text, match.end()).end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def parse(self, rule) -> Expr:
        """Parse one expression by `rule` one level deeper, refusing nesting beyond MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return rule()
        finally:
            self.depth -= 1

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def fail(self, message: str) -> ParseError:
        return ParseError(message, self.text, self.peek()[2])

    def accept(self, value: str) -> bool:
        kind, tok, _ = self.peek()
        if kind in ("op", "name") and tok == value:
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            found = self.peek()[1] or "end of text"
            raise self.fail(f"expected '{value}' but found '{found}'")

    def name(self) -> str:
        kind, tok, _ = self.peek()
        if kind != "name":
            raise self.fail(f"expected a name but found '{tok or 'end of text'}'")
        self.pos += 1
        return tok

    def integer(self) -> int:
        kind, tok, _ = self.peek()
        if kind != "num" or not tok.isdigit():
            raise self.fail(f"expected an integer but found '{tok or 'end of text'}'")
        self.pos += 1
        return int(tok)

    def starts_reduction(self) -> bool:
        """`sum(i, j: ...)` as opposed to the map op `max(a, b)`: names and commas, then a colon."""
        offset = 0
        while self.peek(offset)[0] == "name":
            if self.peek(offset + 1)[1] == ":":
                return True
            if self.peek(offset + 1)[1] != ",":
                return False
            offset += 2
        return False

    def end(self) -> None:
        if self.peek()[0] != "end":
            raise self.fail(f"unexpected '{self.peek()[1]}'")

    def access(self, tensor: str) -> Access:
        self.expect("[")
        indices: list[Index] = []
        if not self.accept("]"):
            while True:
                indices.append(self.index())
                if self.accept("]"):
                    break
                self.expect(",")
        return Access(tensor, tuple(indices))

    def index(self) -> Index:
        if self.peek()[0] == "num":
            return Index(const=self.integer())
        name = self.name()
        if self.accept("+"):
            return Index(name, self.integer())
        if self.accept("-"):
            return Index(name, -self.integer())
        return Index(name)

    def expr(self) -> Expr:
        return self.parse(self.disjunction)

    def disjunction(self) -> Expr:
        node = self.conjunction()
        while self.accept("or"):
            node = BinOp("or", node, self.conjunction())
        return node

    def conjunction(self) -> Expr:
        node = self.negation()
        while self.accept("and"):
            node = BinOp("and", node, self.negation())
        return node

    def negation(self) -> Expr:
        if self.accept("not"):
            return Not(self.parse(self.negation))
        return self.compare()

    def compare(self) -> Expr:
        node = self.sum()
        kind, tok, _ = self.peek()
        if kind == "op" and tok in COMPARE_OPS:
            self.pos += 1
            node = BinOp(tok, node, self.sum())
        return node

    def sum(self) -> Expr:
        node = self.product()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            op = self.peek()[1]
            self.pos += 1
            node = BinOp(op, node, self.product())
        return node

    def product(self) -> Expr:
        node = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in ("*", "/", "//", "%"):
            op = self.peek()[1]
            self.pos += 1
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Expr:
        if self.accept("-"):
            return Neg(self.parse(self.unary))
        return self.atom()

    def atom(self) -> Expr:
        kind, tok, _ = self.peek()
        if kind == "num":
            if not math.isfinite(float(tok)):  # 1e400: beyond the largest float (write inf for infinity)
                raise self.fail(f"the number {tok} is beyond the largest float (write inf for an infinity)")
            self.pos += 1
            return Num(float(tok))
        if self.accept("("):
            node = self.expr()
            self.expect(")")
            return node
        if kind != "name":
            raise self.fail(f"expected a value but found '{tok or 'end of text'}'")
        self.pos += 1
        if tok == "inf":
            return Num(float("inf"))
        if self.peek()[1] == "[":
            return self.access(tok)
        if self.accept("("):
            if tok in REDUCE_OPS and self.starts_reduction():
                names = [self.name()]
                while self.accept(","):
                    names.append(self.name())
                self.expect(":")
                body = self.expr()
                self.expect(")")
                return Reduce(tok, tuple(names), body)
            args = [self.expr()]
            while self.accept(","):
                args.append(self.expr())
            self.expect(")")
            return Call(tok, tuple(args))
        return Name(tok)


@dataclass(frozen=True)
class EinsumSyntax:
    """One parsed Einsum: the output access, the right-hand side, and an optional `where` predicate (with its text)
    and `else` fill value for masked points."""

    output: Access
    rhs: Expr
    where: Expr | None = None
    where_text: str | None = None
    fill: float | None = None


def parse_einsum(text: str) -> EinsumSyntax:
    """Parse `OUT[i,j] = expr [where predicate [else value]]`."""
    parser = _Parser(text)
    output = parser.access(parser.name())
    parser.expect("=")
    rhs = parser.expr()
    where = where_text = fill = None
    if parser.accept("where"):
        start = parser.peek()[2]
        where = parser.expr()
        where_text = text[start : parser.peek()[2]].strip()
        if parser.accept("else"):
            sign = -1.0 if parser.accept("-") else 1.0
            value = parser.atom()
            if not isinstance(value, Num):
                raise parser.fail("expected a number after 'else'")
            fill = sign * value.value
    parser.end()
    for node in (rhs, where):
        _check_tree(node, text)
    return EinsumSyntax(output, rhs, where, where_text, fill)


def parse_expr(text: str) -> Expr:
    """Parse a predicate (`m <= p`) or a size expression (`heads // kv_heads`)."""
    parser = _Parser(text)
    node = parser.expr()
    parser.end()
    _check_tree(node, text)
    return node


def _check_tree(node: Expr | None, text: str) -> None:
    """Refuse a parsed tree beyond `oversize`'s bounds: the parser bounds nesting, but a long chain (a + b + c ...)
    builds a tree one level deeper per operator."""
    reason = oversize(node) if node is not None else None
    if reason is not None:
        raise ParseError(reason, text, 0)


def oversize(node: Expr) -> str | None:
    """Why the passes over a tree (which recurse once or a few times per level) must refuse it: nested deeper than
    MAX_DEPTH, or more than MAX_NODES nodes; None when it is within both. Walks at most MAX_NODES + 1 nodes."""
    stack, count = [(node, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels (each operator of a chain is a level)"
        if count > MAX_NODES:
            return f"more than {MAX_NODES} operators and operands"
        stack.extend((child, depth + 1) for child in _children(node))
    return None


def _children(node: Expr) -> tuple[Expr, ...]:
    match node:
        case Call(args=args):
            return args
        case BinOp(lhs=lhs, rhs=rhs):
            return (lhs, rhs)
        case Neg(arg=arg) | Not(arg=arg):
            return (arg,)
        case Reduce(body=body):
            return (body,)
    return ()


def disjuncts(node: Expr) -> tuple[Expr, ...]:
    """The terms an `or` chain joins, left to right (`a < b or c < d`: both comparisons); any other node alone."""
    if isinstance(node, BinOp) and node.op == "or":
        return disjuncts(node.lhs) + disjuncts(node.rhs)
    return (node,)


def names_in(node: Expr) -> frozenset[str]:
    """The bare names an expression reads (a rank size's parameters)."""
    return frozenset(n.name for n in walk(node) if isinstance(n, Name))


def walk(node: Expr):
    """Yield every node of an expression tree, parents before children (left to right)."""
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(_children(node)))
