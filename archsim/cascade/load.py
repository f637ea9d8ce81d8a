"""Load and validate cascade YAML into the typed IR (`ir.Cascade`).

File format (one cascade per file; `einsum/attention-1pass.yaml` is a full example)::

    name: attention-1pass
    description: one line
    source: the paper / artifact it follows
    params: {batch: 2, heads: 2, seq_len: 16, head_dim: 8, tile_kv: 4}   # defaults; workloads override
    ranks: {B: batch, H: heads, P: seq_len, M: seq_len, E: head_dim, F: head_dim, M0: tile_kv}
    partition: {M: [M1, M0]}          # m = m1*M0 + m0; one part's size may be left out (derived)
    aliases: {j: C}                   # extra index variables over a rank (default: m ranges over M)
    inputs: {Q: [B, H, P, E], K: [B, H, M, E], V: [B, H, M, F]}
    init: {RM: -inf, RD: 0, RNV: 0}   # recurrence state at step 0; or a max/min reduction's start (LM: ...)
    masks: {causal: "m <= p"}         # named predicates over index variables and params
    ops: {tanh: "1 - 2 / (exp(2 * x) + 1)"}   # composite unary ops, expanded where a body calls them
    einsums: |                        # one Einsum per line; `where` masks, `else` fills masked points
      QK[b,h,m1,m0,p] = sum(e: Q[b,h,p,e] * K[b,h,m1,m0,e]) where causal else -inf
      S[b,h,m1,m0,p]  = 50 * tanh(QK[b,h,m1,m0,p] / 50) + SLOPE[h] * (m - p)   # soft cap; ALiBi reads m, p
      LM[b,h,m1,p]    = max(m0: QK[b,h,m1,m0,p]) where causal else -inf
      RM[b,h,m1+1,p]  = max(RM[b,h,m1,p], LM[b,h,m1,p]) where tile   # a masked step carries: RM[m1+1] = RM[m1]
    outputs: [AV]
    reference: attention              # name in archsim.cascade.references; its tensors must fit the reference's

Composite ops (`ops:`): each is an expression of the one variable `x` over numbers, + - * /, comparisons, max(a, b),
min(a, b), the unary ops and the composite ops declared above it (so none recurses); never Python. A call `tanh(e)`
in an Einsum body is replaced when the file loads by that expression with e for x, so every later stage sees only
known ops: analysis counts the expanded ops under their own op types (which every architecture prices) and the
interpreter evaluates them. An op that reads x more than once takes only an argument that costs no op (a tensor read,
a number, a parameter, an index variable, or the negation of one): anything else would be computed and counted once
per read, so it is written into a tensor of its own first. Mask predicates call no composite op: they read abs, min
and max only, the functions the interval arithmetic counting masked points knows.

Index values: an Einsum body may read an index variable of its iteration space as a number (ALiBi's
`SLOPE[h] * (m - p)`; m = m1*M0 + m0 for a partitioned rank), as a mask predicate does, and an index variable takes
precedence over a parameter of the same name. Reading one is free, like a constant; arithmetic on it is counted like
any map op (m - p: one add per point).

Nothing is declared or computed for nothing: every Einsum leads to an output, every input is read, every mask is
named by a `where`, every parameter but word_bytes is read (`check_reads`, `check_params`). A mask predicate is a
condition: a comparison, or and/or/not of comparisons (`p - m` or a bare `where p` would be read for its truth).

Every error is a `SpecError` naming the file, the Einsum or YAML path, and what was expected.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from archsim.cascade import syntax as S
from archsim.cascade.ir import Cascade, Einsum, Mask, Param, Ref, TensorDecl, Term, Value, Var
from archsim.cascade.ops import (
    BINARY_CALLS,
    DEFAULT_UNARY_OPS,
    PREDICATE_CALLS,
    UnaryOp,
)
from archsim.errors import SpecError, kind_of
from archsim.spec_files import finite_number, number

TOP_KEYS = {
    "name", "description", "source", "params", "ranks", "partition", "aliases",
    "inputs", "init", "masks", "ops", "einsums", "outputs", "reference", "requires",
}
WORDS = ("inf", "and", "or", "not", "where", "else")  # the words of the syntax
RESERVED = ("x", *WORDS)  # an op's variable and the words of the syntax
_RANK_NAME = re.compile(r"^[A-Z][A-Z0-9]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def cascade_from_dict(
    data: Any, source: str = "<python>", unary_ops: Mapping[str, UnaryOp] = DEFAULT_UNARY_OPS
) -> Cascade:
    """Validate `data` (the YAML form, module docstring) into a Cascade blamed on `source`, with `unary_ops` the
    unary ops a body may call. Every problem is a SpecError naming the field."""
    return _Loader(data, source, unary_ops).cascade()


class _Loader:
    def __init__(self, data: Any, source: str, unary_ops: Mapping[str, UnaryOp]) -> None:
        self.data = data
        self.source = source
        self.unary_ops = unary_ops

    def error(self, where: str, message: str) -> SpecError:
        return SpecError(self.source, where, message)

    def mapping(self, key: str, required: bool = False) -> dict:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing (expected a mapping)")
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}")
        return value

    # ---------------------------------------------------------------- top level
    def cascade(self) -> Cascade:
        if not isinstance(self.data, dict):
            raise self.error("", "expected a mapping with name, ranks, inputs, einsums, outputs")
        unknown = sorted(str(k) for k in set(self.data) - TOP_KEYS)
        if unknown:
            raise self.error(unknown[0], f"unknown key (expected one of {', '.join(sorted(TOP_KEYS))})")
        name = self.data.get("name")
        if name is None or name == "":
            raise self.error("name", "missing (expected the cascade's name)")
        if not isinstance(name, str):
            raise self.error("name", f"expected the cascade's name as a string, got {kind_of(name)} {name!r}")
        self.params = {
            str(k): finite_number(v, self.source, f"params.{k}") for k, v in self.mapping("params").items()
        }
        self.load_ranks()
        self.load_aliases()
        self.tensors: dict[str, TensorDecl] = {}
        for tname, ranks in self.mapping("inputs", required=True).items():
            self.declare_input(str(tname), ranks)
        self.masks = self.mapping("masks")
        self.masks_named: set[str] = set()
        self.init = {str(k): number(v, self.source, f"init.{k}") for k, v in self.mapping("init").items()}
        self.iterative_rank: str | None = None
        parsed = self.parse_einsums()
        self.check_mask_names()
        self.composite: dict[str, Value] = {}
        self.load_ops()
        einsums = self.resolve_einsums(parsed)
        outputs = self.load_outputs()
        reduction_init = self.reduction_init(einsums)
        for decl in self.tensors.values():
            if decl.iterative and decl.name not in self.init:
                raise self.error("init", f"{decl.name} is a recurrence over {decl.iterative} but has no init value")
        self.check_params(einsums)
        self.check_reads(einsums, outputs)
        requires = self.load_requires()
        reference = self.data.get("reference")
        if reference is not None:
            from archsim.cascade.references import REFERENCES, check_fits

            if not isinstance(reference, str) or reference not in REFERENCES:
                raise self.error("reference", f"unknown reference {reference!r}: expected the name of one of "
                                              f"{', '.join(REFERENCES)}")
        cascade = Cascade(
            name=name,
            source=self.source,
            description=str(self.data.get("description", "")),
            citation=str(self.data.get("source", "")),
            params=self.params,
            rank_sizes=self.rank_sizes,
            partitions=self.partitions,
            var_ranks=self.var_ranks,
            var_leaves=self.var_leaves,
            tensors=self.tensors,
            einsums=tuple(einsums),
            outputs=outputs,
            init={tname: value for tname, value in self.init.items() if tname not in reduction_init},
            reduction_init=reduction_init,
            iterative_rank=self.iterative_rank,
            reference=reference,
            requires=requires,
        )
        if reference is not None:  # a reference the tensors cannot be is a spec error, whatever command loads it
            check_fits(cascade)
        return cascade

    def reduction_init(self, einsums: list[Einsum]) -> dict[str, float]:
        """The values `init:` gives max or min reductions: each starts there instead of at its identity, so the
        lowest finite double keeps a split of only -inf scores from a max of -inf (whose exp(QK - max) is NaN). Any
        other tensor in `init:` than these and the recurrences (whose slot 0 it fills) is refused, and so is a start
        no value can pass (+inf for a max, -inf for a min: every output would be it)."""
        reduce_ops = {einsum.name: einsum.reduce_op for einsum in einsums}
        starts = {}
        for tname, value in self.init.items():
            decl = self.tensors.get(tname)
            if decl is not None and decl.iterative:
                continue
            op = reduce_ops.get(tname)
            if op in ("max", "min"):
                if value == (float("inf") if op == "max" else -float("inf")):
                    raise self.error(f"init.{tname}", f"expected a start a {op} reduction's values can pass (a "
                                                      f"number or {'-' if op == 'max' else '+'}inf), got {value}")
                starts[tname] = value
                continue
            raise self.error(f"init.{tname}", f"init is for a recurrence (a tensor written as X[i+1,...]) or a max "
                                              f"or min reduction (its starting value); {tname} is "
                                              f"{_kind(decl, reduce_ops.get(tname))}")
        return starts

    # ---------------------------------------------------------------- ranks and variables
    def size_expr(self, value: Any, where: str) -> S.Expr:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.error(where, f"expected an integer or an expression of params, got {value!r}")
        if isinstance(value, int):
            if value <= 0:
                raise self.error(where, f"expected a positive size, got {value}")
            return S.Num(float(value))
        try:
            expr = S.parse_expr(value)
        except S.ParseError as exc:
            raise self.error(where, str(exc)) from None
        return self.check_size_expr(expr, value, where)

    def check_size_expr(self, expr: S.Expr, value: str, where: str, ranks: bool = False) -> S.Expr:
        """`expr` (written `value`) reads declared params (and, with `ranks`, rank sizes) with + - * // / % only."""
        names = {**self.params, **(self.rank_sizes if ranks else {})}
        for node in S.walk(expr):
            if isinstance(node, S.Name) and node.name not in names:
                known = ", ".join(names) or "none"
                raise self.error(where, f"unknown {'name' if ranks else 'parameter'} '{node.name}' "
                                        f"({'params and ranks' if ranks else 'params declared'}: {known})")
            if not isinstance(node, S.Name | S.Num | S.BinOp) or (
                isinstance(node, S.BinOp) and node.op not in ("+", "-", "*", "//", "/", "%")
            ):
                raise self.error(where, f"'{value}' is not a size expression (params, integers, + - * // / %)")
            if _by_zero(node):
                raise self.error(where, f"'{value}' divides by zero")
        return expr

    def load_requires(self) -> tuple[tuple[str, S.Expr], ...]:
        """`requires:`, comparisons of size expressions of params and rank sizes that the bound sizes must meet
        (`S <= J`: Quest's budget slots are among the cache's pages), or comparisons joined by `or`, one of which
        must hold (`sinks >= 1 or P < M + window`: every query sees a key), checked by `bind`."""
        raw = self.data.get("requires", [])
        if not isinstance(raw, list):
            raise self.error("requires", f"expected a list of comparisons of params, got {kind_of(raw)}")
        found = []
        for i, text in enumerate(raw):
            where = f"requires[{i}]"
            expr = self.parsed(text, where, S.parse_expr, "expected a comparison of params as a string")
            for comparison in S.disjuncts(expr):
                if not isinstance(comparison, S.BinOp) or comparison.op not in ("<", "<=", ">", ">=", "=="):
                    raise self.error(where, f"'{text}' is not a comparison (<, <=, >, >=, ==) of size expressions, "
                                            f"or comparisons joined by 'or'")
                for side in (comparison.lhs, comparison.rhs):
                    self.check_size_expr(side, text, where, ranks=True)
            found.append((text, expr))
        return tuple(found)

    def load_ranks(self) -> None:
        raw = self.mapping("ranks", required=True)
        self.rank_sizes: dict[str, S.Expr | None] = {}
        for rank, size in raw.items():
            if not isinstance(rank, str) or not _RANK_NAME.match(rank):
                raise self.error(f"ranks.{rank}", "rank names are upper case (letters and digits), e.g. M0")
            self.rank_sizes[rank] = self.size_expr(size, f"ranks.{rank}")
        self.partitions: dict[str, tuple[str, ...]] = {}
        for root, parts in self.mapping("partition").items():
            where = f"partition.{root}"
            if root not in raw:
                raise self.error(where, f"unknown rank '{root}' (ranks: {', '.join(raw)})")
            if not isinstance(parts, list) or len(parts) < 2:
                raise self.error(where, "expected a list of two or more part ranks, outer first, e.g. [M1, M0]")
            for part in parts:
                if not isinstance(part, str) or not _RANK_NAME.match(part):
                    raise self.error(where, f"part '{part}' is not an upper-case rank name")
                if part in self.partitions or any(part in p for p in self.partitions.values()):
                    raise self.error(where, f"rank '{part}' is already partitioned or a part elsewhere")
                self.rank_sizes.setdefault(part, None)
            derived = [p for p in parts if self.rank_sizes[p] is None]
            if len(derived) > 1:
                raise self.error(where, f"give the sizes of all parts but one in ranks (missing: {derived})")
            self.partitions[root] = tuple(parts)
        for root in self.partitions:
            if root in {p for parts in self.partitions.values() for p in parts}:
                raise self.error(f"partition.{root}", "nested partitions are not supported")

    def load_aliases(self) -> None:
        self.var_ranks: dict[str, str] = {}
        self.var_leaves: dict[str, tuple[str, ...]] = {}
        for rank in self.rank_sizes:
            self.add_var(rank.lower(), rank)
        for var, rank in self.mapping("aliases").items():
            where = f"aliases.{var}"
            if not isinstance(var, str) or not _IDENT.match(var) or var != var.lower():
                raise self.error(where, "an alias is a lower-case index variable name")
            if not isinstance(rank, str) or rank not in self.rank_sizes:
                raise self.error(where, f"unknown rank {rank!r} (ranks: {', '.join(self.rank_sizes)})")
            if var in self.var_ranks:
                raise self.error(where, f"'{var}' already ranges over rank {self.var_ranks[var]}")
            self.add_var(var, rank)

    def add_var(self, var: str, rank: str) -> None:
        self.var_ranks[var] = rank
        parts = self.partitions.get(rank)
        if parts is None:
            self.var_leaves[var] = (var,)
            return
        canonical = var == rank.lower()
        leaves = tuple(p.lower() if canonical else f"{var}.{p}" for p in parts)
        self.var_leaves[var] = leaves
        for leaf, part in zip(leaves, parts, strict=True):
            self.var_ranks.setdefault(leaf, part)
            self.var_leaves.setdefault(leaf, (leaf,))

    def leaf_ranks(self, ranks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(leaf for rank in ranks for leaf in self.partitions.get(rank, (rank,)))

    def declare_input(self, name: str, ranks: Any) -> None:
        where = f"inputs.{name}"
        if not isinstance(name, str) or not _IDENT.match(name):
            raise self.error(where, "a tensor name is an identifier")
        if not isinstance(ranks, list):
            raise self.error(where, "expected a list of ranks, e.g. [B, H, M, E]")
        for rank in ranks:
            if not isinstance(rank, str) or rank not in self.rank_sizes:
                raise self.error(where, f"unknown rank {rank!r} (ranks: {', '.join(self.rank_sizes)})")
        ranks = tuple(ranks)
        self.tensors[name] = TensorDecl(name, ranks, self.leaf_ranks(ranks), "input")

    def parsed(self, text: Any, where: str, parse: Callable[[str], Any], expected: str) -> Any:
        """`parse(text)` of the string at `where`; a SpecError saying `expected` and what was given otherwise."""
        if not isinstance(text, str):
            raise self.error(where, f"{expected}, got {kind_of(text)} {text!r}")
        try:
            return parse(text)
        except S.ParseError as exc:
            raise self.error(where, str(exc)) from None

    # ---------------------------------------------------------------- composite ops
    def load_ops(self) -> None:
        """`ops:` into `self.composite`, in the order declared: each op's expression over x (an `S.Name`), with the
        composite ops it calls already expanded. Called once every tensor is declared, so a clash with any is
        found."""
        raw = self.mapping("ops")
        self.op_names = {str(name) for name in raw}
        for name, text in raw.items():
            where = f"ops.{name}"
            clash = self.op_clash(name)
            if clash is not None:
                raise self.error(where, clash)
            node = self.parsed(text, where, S.parse_expr,
                               "expected an expression of x as a string (e.g. \"1 - 2 / (exp(2 * x) + 1)\")")
            self.composite[name] = self.within_limits(self.value(node, where, (), "op"), where)

    def op_clash(self, name: Any) -> str | None:
        """Why `name` cannot name a composite op: no identifier, a word of the language, an op already, or a name
        the cascade gives to a parameter, rank, index variable or tensor; None when it is free."""
        if not isinstance(name, str) or not _IDENT.match(name):
            return "an op's name is an identifier (letters, digits and _, not starting with a digit)"
        if name in RESERVED:
            return f"'{name}' is a word of the language ({', '.join(RESERVED)}); give the op another name"
        if name in {*self.unary_ops, *BINARY_CALLS, *PREDICATE_CALLS, *S.REDUCE_OPS}:
            return f"'{name}' is an op already; give the composite op a name of its own"
        taken = self.name_taken(name)
        return taken and f"'{name}' is {taken} of this cascade; give the op a name of its own"

    def name_taken(self, name: str) -> str | None:
        """What the cascade already calls `name` ("a parameter", "a rank", "an index variable", "a tensor"), or
        None."""
        for what, names in (("a parameter", self.params), ("a rank", self.rank_sizes),
                            ("an index variable", self.var_ranks), ("a tensor", self.tensors)):
            if name in names:
                return what
        return None

    def expand(self, fn: str, arg: Value, where: str) -> Value:
        """The composite op `fn` called on `arg`: its expression with `arg` for x. An op reading x more than once
        takes only an argument that costs no op, so that each op counted is one a kernel performs."""
        tree = self.composite[fn]
        reads = sum(isinstance(node, S.Name) for node in S.walk(tree))
        if reads > 1 and any(isinstance(node, S.BinOp | S.Call) for node in S.walk(arg)):
            raise self.error(where, f"{fn} reads x {reads} times, so its argument's ops would be computed and counted "
                                    f"{reads} times; pass a tensor read, number, parameter or index variable (in an "
                                    f"Einsum, write the argument into a tensor of its own first)")
        return _substitute(tree, arg)

    def within_limits(self, tree: Value, where: str) -> Value:
        """`tree`, refused when its composite ops expand it beyond what the passes over a tree accept."""
        reason = S.oversize(tree)
        if reason is not None:
            raise self.error(where, f"with its composite ops (ops:) expanded, the expression is {reason}")
        return tree

    # ---------------------------------------------------------------- einsums
    def parse_einsums(self) -> list[tuple[str, str, S.EinsumSyntax]]:
        """`einsums:` parsed, each output declared (so carried reads may name later recurrences): (where, text,
        syntax) per Einsum."""
        raw = self.data.get("einsums")
        if isinstance(raw, str):
            raw = [line.split("#")[0].strip() for line in raw.splitlines()]
            raw = [line for line in raw if line]
        if not isinstance(raw, list) or not raw:
            raise self.error("einsums", "expected Einsums, one per line in a block (einsums: |) or a list")
        parsed = []
        for i, text in enumerate(raw):
            where = f"einsums[{i}]"
            syntax = self.parsed(text, where, S.parse_einsum,
                                 "expected an Einsum string such as 'Z[m,n] = sum(k: A[k,m] * B[k,n])' (quote it, "
                                 "or write the Einsums in a block: einsums: |)")
            where = f"einsums[{i}] ({syntax.output.tensor})"
            self.declare_output(syntax.output, where)
            parsed.append((where, text, syntax))
        return parsed

    def resolve_einsums(self, parsed: list[tuple[str, str, S.EinsumSyntax]]) -> list[Einsum]:
        """The parsed Einsums resolved in order (a tensor is read after the Einsum writing it, or carried)."""
        self.defined: set[str] = set()
        einsums = []
        for where, text, syntax in parsed:
            einsums.append(self.einsum(where, text, syntax))
            self.defined.add(syntax.output.tensor)
        self.check_loop_contiguous(einsums)
        return einsums

    def check_params(self, einsums: list[Einsum]) -> None:
        """`word_bytes` is given (the bytes of every tensor follow from it: no default is assumed), and every other
        parameter is read by a rank size, an Einsum or a mask (one read by none is a misspelling or left over)."""
        read = set().union(*(S.names_in(e) for e in self.rank_sizes.values() if e is not None),
                           *(einsum.names_read for einsum in einsums))
        unread = sorted(set(self.params) - read - {"word_bytes"})
        if unread:
            raise self.error(f"params.{unread[0]}", "read by no rank size, Einsum or mask of the cascade (misspelled? "
                                                    f"read: {', '.join(sorted(read & set(self.params)))})")
        if "word_bytes" not in self.params:
            raise self.error("params.word_bytes", "missing: the bytes per element of the cascade's tensors (2 for "
                                                  "fp16 or bf16)")

    def check_reads(self, einsums: list[Einsum], outputs: tuple[str, ...]) -> None:
        """Every Einsum leads to an output (its tensor is one, or is read by an Einsum that leads to one; a
        recurrence's read of its own last state does not count), every input is read and every mask is named by a
        `where`: a dead Einsum's work and an unread input's bytes would be counted for nothing (`analyze`,
        `bytes.input`), and a mask no Einsum names masks nothing (a misspelled `where`?)."""
        writer = {einsum.name: einsum for einsum in einsums}
        live: set[str] = set()
        stack = list(outputs)
        while stack:
            tensor = stack.pop()
            if tensor not in live:
                live.add(tensor)
                stack.extend(ref.tensor for ref in (writer[tensor].refs if tensor in writer else ()))
        for i, einsum in enumerate(einsums):
            if einsum.name in live:
                continue
            readers = [e.name for e in einsums if e.name != einsum.name and einsum.name in {r.tensor for r in e.refs}]
            read = (f"is read only by {', '.join(readers)}, which lead{'s' if len(readers) == 1 else ''} to no output,"
                    if readers else "is written but never read,")
            raise self.error(f"einsums[{i}] ({einsum.name})", f"{einsum.name} {read} and is not an output (outputs: "
                                                              f"{', '.join(outputs)}): its work would be counted for "
                                                              "nothing; read it, list it in outputs or drop it")
        inputs = [name for name, decl in self.tensors.items() if decl.kind == "input"]
        for name in inputs:
            if name not in live:
                read = ", ".join(sorted(set(inputs) & live))
                raise self.error(f"inputs.{name}", f"read by no Einsum of the cascade (misspelled? read: {read}): "
                                                   "its bytes would be counted as read")
        for name in self.masks:
            if name not in self.masks_named:
                named = ", ".join(str(m) for m in self.masks if m in self.masks_named) or "none"
                raise self.error(f"masks.{name}", f"named by no Einsum's where (misspelled? masks named: {named}): a "
                                                  "mask applies only where an Einsum names it")

    def declare_output(self, out: S.Access, where: str) -> None:
        if out.tensor in self.tensors:
            kind = "an input" if self.tensors[out.tensor].kind == "input" else "already defined"
            raise self.error(where, f"tensor {out.tensor} is {kind}; each tensor is written by one Einsum")
        ranks, iterative, seen = [], None, set()
        for idx in out.indices:
            if idx.name is None or idx.name in self.rank_sizes:
                raise self.error(where, f"output indices are index variables (m, p, m1+1), not '{idx}'")
            rank = self.rank_of(idx.name, where)
            if idx.name in seen:
                raise self.error(where, f"index {idx.name} appears twice in the output")
            seen.add(idx.name)
            if idx.offset:
                if idx.offset != 1 or rank in self.partitions:
                    raise self.error(where, f"a recurrence is written X[i+1,...] on a leaf rank, not '{idx}'")
                if self.iterative_rank not in (None, rank):
                    raise self.error(where, f"only one iterative rank per cascade ({self.iterative_rank} and {rank})")
                self.iterative_rank = iterative = rank
            ranks.append(rank)
        ranks = tuple(ranks)
        self.tensors[out.tensor] = TensorDecl(out.tensor, ranks, self.leaf_ranks(ranks), "intermediate", iterative)

    def rank_of(self, var: str, where: str) -> str:
        if var not in self.var_ranks:
            raise self.error(
                where, f"unknown rank for index '{var}': no rank named {var.upper()} and no alias '{var}'"
            )
        return self.var_ranks[var]

    def einsum(self, where: str, text: str, syntax: S.EinsumSyntax) -> Einsum:
        out, rhs = syntax.output, syntax.rhs
        out_terms = tuple(
            Term(leaf, idx.offset if leaf == self.var_leaves[idx.name][-1] else 0)
            for idx in out.indices
            for leaf in self.var_leaves[idx.name]
        )
        out_vars = tuple(t.var for t in out_terms)
        reduce_op, reduce_vars, body_syntax = None, (), rhs
        if isinstance(rhs, S.Reduce):
            reduce_op, body_syntax = rhs.op, rhs.body
            leaves = []
            for var in rhs.vars:
                self.rank_of(var, where)
                if set(self.var_leaves[var]) & set(out_vars):
                    raise self.error(where, f"index {var} is both in the output and reduced")
                leaves.extend(self.var_leaves[var])
            reduce_vars = tuple(leaves)
        space = out_vars + reduce_vars
        body = self.within_limits(self.value(body_syntax, where, space, "body"), where)
        body_vars = {t.var for ref in _refs(body) for t in ref.terms if t.var is not None} | {
            leaf for node in S.walk(body) if isinstance(node, Var) for leaf in self.var_leaves[node.name]}
        for var in reduce_vars:
            if var not in body_vars:
                raise self.error(
                    where, f"{reduce_op} reduces over {var}, but no operand of the reduction has that rank"
                )
        unbound = sorted(body_vars - set(space))
        if unbound:
            raise self.error(where, f"index {unbound[0]} is neither in the output nor reduced "
                                    f"(write sum({unbound[0]}: ...))")
        if self.iterative_rank and any(self.var_ranks[v] == self.iterative_rank for v in reduce_vars):
            raise self.error(where, f"cannot reduce over the iterative rank {self.iterative_rank}; "
                                    f"read the recurrence's final value X[{self.iterative_rank},...]")
        mask = None
        if syntax.where is not None:
            mask = self.mask(syntax.where, syntax.where_text or "", where, space)
        einsum = Einsum(
            name=out.tensor, text=text, output=Ref(out.tensor, out_terms, str(out)), space=space,
            body=body, reduce_op=reduce_op, reduce_vars=reduce_vars, mask=mask, fill=syntax.fill,
        )
        if mask is not None and syntax.fill is not None and einsum.is_step:
            raise self.error(where, f"a masked step of the recurrence {out.tensor} carries its state "
                                    f"({out.tensor}[i+1] = {out.tensor}[i]); drop the else value")
        return einsum

    def value(self, node: S.Expr, where: str, space: tuple[str, ...], scope: str) -> Value:
        """Resolve the names of an expression in `scope`: "body" (an Einsum's right-hand side: tensors, parameters,
        the index variables of `space`, map ops, composite ops expanded), "predicate" (a mask: also rank sizes,
        abs/min/max only, and/or/not, // and %) or "op" (a composite op's expression: x, numbers, map ops and the
        composite ops declared above it)."""
        predicate = scope == "predicate"
        match node:
            case S.Num():
                return node
            case S.Name(name=name):
                return self.name_value(name, where, space, scope)
            case S.Access():
                if scope == "op":
                    raise self.error(where, f"an op reads x alone, not the tensor {node}")
                return self.ref(node, where)
            case S.Reduce(op=op):
                if scope == "op":
                    raise self.error(where, f"an op maps x; it reduces nothing ({op}(...: ...))")
                raise self.error(where, f"a reduction ({op}(...: ...)) must be the whole right-hand side")
            case S.Neg(arg=arg):
                return S.Neg(self.value(arg, where, space, scope))
            case S.Not(arg=arg):
                if not predicate:
                    raise self.error(where, "'not' belongs in mask predicates")
                return S.Not(self.value(arg, where, space, scope))
            case S.BinOp(op=op, lhs=lhs, rhs=rhs):
                if op in ("and", "or", "//", "%") and not predicate:
                    raise self.error(where, f"'{op}' belongs in mask predicates")
                if predicate and _by_zero(node):
                    raise self.error(where, f"the predicate divides by zero ('{op} 0')")
                return S.BinOp(op, self.value(lhs, where, space, scope), self.value(rhs, where, space, scope))
            case S.Call():
                return self.call(node, where, space, scope)
        raise self.error(where, f"unsupported expression {node!r}")

    def name_value(self, name: str, where: str, space: tuple[str, ...], scope: str) -> Value:
        """A bare name in `scope` (`value`): x in an op; an index variable of `space` (before a parameter of the same
        name), a parameter, or in a predicate a rank's size."""
        if scope == "op":
            if name == "x":
                return S.Name(name)
            raise self.error(where, f"unknown name '{name}' (an op is an expression of x alone, with numbers and ops)")
        if name in self.var_ranks:
            if not set(self.var_leaves[name]) <= set(space):
                what = "mask uses" if scope == "predicate" else "body reads"
                raise self.error(where, f"{what} index {name}, which this Einsum does not iterate")
            return Var(name)
        if name in self.params or (scope == "predicate" and name in self.rank_sizes):
            return Param(name)
        kind = ("an index variable, parameter or rank size" if scope == "predicate"
                else "a parameter or an index variable of this Einsum (or write X[...])")
        raise self.error(where, f"unknown name '{name}' (expected {kind})")

    def call(self, node: S.Call, where: str, space: tuple[str, ...], scope: str) -> Value:
        """A call in `scope` (`value`): a composite op expanded; a map op (abs/min/max in a predicate) resolved."""
        fn, args = node.fn, node.args
        composite = scope != "predicate" and fn in self.composite
        if scope == "predicate":
            known, arity = PREDICATE_CALLS, 1 if fn == "abs" else 2
        elif fn in BINARY_CALLS:
            known, arity = tuple(BINARY_CALLS), 2
        else:
            known, arity = (*self.unary_ops, *self.composite), 1
        if fn not in known:
            raise self.error(where, self.unknown_op(fn, scope))
        if len(args) != arity:
            raise self.error(where, f"{fn} takes {arity} argument(s), got {len(args)}")
        resolved = tuple(self.value(a, where, space, scope) for a in args)
        return self.expand(fn, resolved[0], where) if composite else S.Call(fn, resolved)

    def unknown_op(self, fn: str, scope: str) -> str:
        """Why a call names no op of `scope`: a composite op in a predicate, an op declared below (or as) the op
        calling it, or no op at all (listing those known)."""
        if scope == "predicate":
            if fn in self.composite:
                return (f"'{fn}' is a composite op (ops.{fn}); a mask predicate calls only abs, min and max, the "
                        f"functions the interval arithmetic counting masked points knows")
            return f"unknown op '{fn}' (known: {', '.join(sorted(PREDICATE_CALLS))})"
        if scope == "op" and fn in self.op_names:
            return (f"op '{fn}' is not declared above this one: an op calls only the ops declared above it, so "
                    f"none recurses")
        return f"unknown op '{fn}' (known: {', '.join(sorted({*self.unary_ops, *BINARY_CALLS, *self.composite}))})"

    def ref(self, access: S.Access, where: str) -> Ref:
        """Match the indices of an access to the tensor's declared ranks, producing one term per leaf.

        An index variable matches a rank it ranges over; a root variable (m) also matches the run of its
        parts (M1, M0), and the run of part variables (m1, m0) matches a partitioned rank (M).
        """
        decl = self.tensors.get(access.tensor)
        if decl is None:
            raise self.error(where, f"unknown tensor {access.tensor} (not an input and not written by an Einsum)")
        indices, terms, carried = access.indices, [], False
        pos = i = 0
        while pos < len(decl.ranks) and i < len(indices):
            rank, idx = decl.ranks[pos], indices[i]
            if idx.name is None:
                if rank in self.partitions:
                    raise self.error(where, f"{access}: a constant cannot index the partitioned rank {rank}")
                terms.append(Term(const=idx.const))
                pos, i = pos + 1, i + 1
                continue
            if idx.name in self.rank_sizes:  # the final slot of a recurrence: RNV[M1,f,p]
                if idx.offset:
                    raise self.error(where, f"{access}: '{idx}': the final slot of a recurrence is read as "
                                            f"{idx.name}, without an offset (an index variable takes +1)")
                if idx.name != rank or decl.iterative != rank:
                    raise self.error(where, f"{access}: '{idx.name}' names the final slot of a recurrence, but "
                                            f"position {pos + 1} of {decl.name} is rank {rank}"
                                            + ("" if decl.iterative else f" and {decl.name} is no recurrence"))
                terms.append(Term(final=True))
                pos, i = pos + 1, i + 1
                continue
            var_rank = self.rank_of(idx.name, where)
            parts = self.partitions.get(var_rank, ())
            rank_parts = self.partitions.get(rank, ())
            if var_rank == rank:
                leaves, pos, i = self.var_leaves[idx.name], pos + 1, i + 1
            elif parts and decl.ranks[pos : pos + len(parts)] == parts:  # K[e,m] for K written [E, M1, M0]
                leaves, pos, i = self.var_leaves[idx.name], pos + len(parts), i + 1
            elif rank_parts and tuple(
                self.var_ranks.get(j.name or "") for j in indices[i : i + len(rank_parts)]
            ) == rank_parts:  # K[e,m1,m0] for K declared [E, M]
                given = indices[i : i + len(rank_parts)]
                if any(j.offset for j in given):
                    raise self.error(where, f"{access}: offsets are only for the iterative rank")
                leaves, pos, i = tuple(j.name for j in given), pos + 1, i + len(rank_parts)
            else:
                raise self.error(where, f"shape mismatch in {access}: position {pos + 1} of {decl.name} is rank "
                                        f"{rank}, but index {idx.name} ranges over rank {var_rank}")
            if decl.iterative in (var_rank, *parts) and var_rank != decl.iterative:
                raise self.error(where, f"{access}: read the recurrence {decl.name} with its iterative index "
                                        f"{decl.iterative.lower()} (or {decl.iterative} for the final value)")
            if idx.offset:
                if decl.iterative != var_rank or idx.offset != 1:
                    raise self.error(where, f"{access}: an offset (i+1) reads the next state of a recurrence; "
                                            f"{decl.name} is not a recurrence over {var_rank}")
                terms.append(Term(idx.name, 1))
                continue
            carried = carried or decl.iterative == var_rank  # X[i] of a recurrence: the state before step i
            terms.extend(Term(v) for v in leaves)
        if pos < len(decl.ranks) or i < len(indices):
            raise self.error(where, f"shape mismatch: {access} has {len(indices)} indices but {decl.name} has "
                                    f"ranks [{', '.join(decl.ranks)}]")
        if decl.name not in self.defined and decl.kind != "input" and not carried:
            raise self.error(where, f"{decl.name} is used before the Einsum that writes it")
        return Ref(decl.name, tuple(terms), str(access), carried)

    def mask(self, node: S.Expr, text: str, where: str, space: tuple[str, ...]) -> Mask:
        """`where causal` names a predicate under `masks:`; anything else is an inline predicate."""
        density_raw = None
        if isinstance(node, S.Name) and node.name in self.masks:
            self.masks_named.add(node.name)
            where, raw = f"masks.{node.name}", self.masks[node.name]
            if isinstance(raw, dict):
                extra = set(raw) - {"predicate", "density"}
                if extra or not isinstance(raw.get("predicate"), str):
                    raise self.error(where, "expected a predicate string or {predicate: ..., density: ...}")
                density_raw, raw = raw.get("density"), raw["predicate"]
            if not isinstance(raw, str):
                raise self.error(where, "expected a predicate such as 'm <= p'")
            try:
                node, text = S.parse_expr(raw), raw
            except S.ParseError as exc:
                raise self.error(where, str(exc)) from None
        elif isinstance(node, S.Name) and not {node.name} & {*self.var_ranks, *self.params, *self.rank_sizes}:
            raise self.error(where, self.unknown_mask(node.name))
        predicate = self.value(node, where, space, "predicate")
        if not _is_condition(predicate):  # `p - m` (a forgotten >= 0), `where p`: truthiness, no condition
            raise self.error(where, f"'{text}' is no condition: expected a comparison, or and/or/not of comparisons "
                                    "(e.g. m <= p)")
        used = {node.name for node in S.walk(predicate) if isinstance(node, Var)}
        for var in sorted(used):  # in name order: the first such variable is named whatever the hash seed
            if len(self.var_leaves[var]) > 1 and set(self.var_leaves[var]) & used:
                raise self.error(where, f"the predicate uses both {var} and its parts; use one or the other")
        data_dependent = any(isinstance(node, Ref) for node in S.walk(predicate))
        density = None
        if density_raw is not None:
            density = self.size_expr(density_raw, f"{where}.density")
        elif data_dependent:
            raise self.error(where, "a predicate that reads tensors needs a density (expected fraction of "
                                    "true points, e.g. top_k / experts) for operation counts")
        return Mask(text, predicate, density, data_dependent)

    def check_mask_names(self) -> None:
        """No mask takes a name a parameter, rank, index variable or tensor has, or a word of the language:
        `where NAME` would read the mask and the name's other meaning would be shadowed (`masks: {heads: ...}` then
        `where heads`; `where inf` reads infinity). Called once every tensor is declared."""
        for name in self.masks:
            if name in WORDS:  # `where inf` reads the number, always true: the mask is lost
                raise self.error(f"masks.{name}", f"'{name}' is a word of the language ({', '.join(WORDS)}); "
                                                  "give the mask a name of its own")
            taken = self.name_taken(name)
            if taken:
                raise self.error(f"masks.{name}", f"'{name}' is {taken} of this cascade; give the mask a name of its "
                                                  "own")

    def unknown_mask(self, name: str) -> str:
        """Why `where NAME` names nothing: what it could name (the masks declared first) and the closest mask."""
        masks = [str(m) for m in self.masks]
        close = difflib.get_close_matches(name, masks, n=1)
        return (f"unknown name '{name}' (expected a mask (masks: {', '.join(masks) or 'none declared'}) or an index "
                f"variable, parameter or rank size)" + (f"; did you mean '{close[0]}'?" if close else ""))

    def check_loop_contiguous(self, einsums: list[Einsum]) -> None:
        if self.iterative_rank is None:
            return
        inside = [any(self.var_ranks[v] == self.iterative_rank for v in e.space) for e in einsums]
        first, last = inside.index(True), len(inside) - 1 - inside[::-1].index(True)
        for e, flag in zip(einsums[first:last], inside[first:last], strict=True):
            if not flag:
                raise self.error(f"einsums ({e.name})", f"the Einsums that iterate over the recurrence rank "
                                 f"{self.iterative_rank} must be consecutive; {e.name} breaks the run")

    def load_outputs(self) -> tuple[str, ...]:
        raw = self.data.get("outputs")
        if not isinstance(raw, list) or not raw:
            raise self.error("outputs", "expected a non-empty list of tensors written by the Einsums")
        for name in raw:
            decl = self.tensors.get(name) if isinstance(name, str) else None
            if decl is None or decl.kind == "input":
                raise self.error("outputs", f"'{name}' is not written by any Einsum")
            if decl.kind == "output":
                raise self.error("outputs", f"'{name}' is listed twice (expected each output once)")
            self.tensors[name] = replace(decl, kind="output")
        return tuple(raw)


def _kind(decl: TensorDecl | None, reduce_op: str | None) -> str:
    """What a tensor that is no recurrence is, in a refusal: none, an input, a reduction or a map Einsum."""
    if decl is None:
        return "no tensor of the cascade"
    if decl.kind == "input":
        return "an input"
    return f"a {reduce_op} reduction" if reduce_op else "a map Einsum"


def _refs(node: Value) -> list[Ref]:
    return [n for n in S.walk(node) if isinstance(n, Ref)]


def _substitute(node: Value, arg: Value) -> Value:
    """A composite op's expression with `arg` for x. Such an expression holds x (an `S.Name`), numbers, `S.Neg`,
    `S.BinOp` and `S.Call` only (`_Loader.value` in scope "op"); `arg` is shared, not copied."""
    match node:
        case S.Name():
            return arg
        case S.Neg(arg=inner):
            return S.Neg(_substitute(inner, arg))
        case S.BinOp(op=op, lhs=lhs, rhs=rhs):
            return S.BinOp(op, _substitute(lhs, arg), _substitute(rhs, arg))
        case S.Call(fn=fn, args=args):
            return S.Call(fn, tuple(_substitute(a, arg) for a in args))
    return node


def _is_condition(node: Value) -> bool:
    """A mask predicate's form: a comparison, or and/or/not of conditions (never arithmetic read for its truth)."""
    match node:
        case S.BinOp(op="and" | "or", lhs=lhs, rhs=rhs):
            return _is_condition(lhs) and _is_condition(rhs)
        case S.BinOp(op=op):
            return op in S.COMPARE_OPS
        case S.Not(arg=arg):
            return _is_condition(arg)
    return False


def _by_zero(node: S.Expr) -> bool:
    """A `/`, `//` or `%` by the literal 0 (or -0): a size that cannot be, a mask that is NaN everywhere."""
    if not isinstance(node, S.BinOp) or node.op not in ("/", "//", "%"):
        return False
    divisor = node.rhs.arg if isinstance(node.rhs, S.Neg) else node.rhs
    return isinstance(divisor, S.Num) and divisor.value == 0
