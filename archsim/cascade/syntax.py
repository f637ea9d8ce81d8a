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

import re
from dataclasses import dataclass

REDUCE_OPS = ("sum", "max", "min")
COMPARE_OPS = ("<", "<=", ">", ">=", "==", "!=")


class ParseError(ValueError):
    def __init__(self, message: str, text: str, column: int) -> None:
        self.message = message
        self.text = text
        self.column = column
        super().__init__(f"{message} at column {column + 1} of '{text}'")


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
    value: float


@dataclass(frozen=True)
class Name:
    """A bare name: a parameter in an Einsum, an index variable or a parameter in a predicate."""

    name: str


@dataclass(frozen=True)
class Access:
    tensor: str
    indices: tuple[Index, ...]

    def __str__(self) -> str:
        return f"{self.tensor}[{','.join(str(i) for i in self.indices)}]"


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class BinOp:
    op: str
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True)
class Neg:
    arg: Expr


@dataclass(frozen=True)
class Not:
    arg: Expr


@dataclass(frozen=True)
class Reduce:
    op: str
    vars: tuple[str, ...]
    body: Expr


Expr = Num | Name | Access | Call | BinOp | Neg | Not | Reduce

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|==|!=|//|[-+*/%()\[\],:=<>]))"
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            column = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ParseError(f"unexpected character '{text[column]}'", text, column)
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

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
            return Not(self.negation())
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
            return Neg(self.unary())
        return self.atom()

    def atom(self) -> Expr:
        kind, tok, _ = self.peek()
        if kind == "num":
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
    return EinsumSyntax(output, rhs, where, where_text, fill)


def parse_expr(text: str) -> Expr:
    """Parse a predicate (`m <= p`) or a size expression (`heads // kv_heads`)."""
    parser = _Parser(text)
    node = parser.expr()
    parser.end()
    return node


def walk(node: Expr):
    """Yield every node of an expression tree, parents before children."""
    yield node
    match node:
        case Call(args=args):
            for arg in args:
                yield from walk(arg)
        case BinOp(lhs=lhs, rhs=rhs):
            yield from walk(lhs)
            yield from walk(rhs)
        case Neg(arg=arg) | Not(arg=arg):
            yield from walk(arg)
        case Reduce(body=body):
            yield from walk(body)
