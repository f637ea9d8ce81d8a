"""Static analyses of a bound cascade: tensor shapes and bytes, operation counts per Einsum by op type,
the dependency DAG (networkx) and the pass analysis.

Counting conventions (those of Timeloop and the FuseMax artifact, where a reduction of N elements costs N
operations):
- every map operator costs one op of its type per point of the Einsum's iteration space;
- a reduction costs one op of its type per point; `sum` over a product is one `mac` per point;
- masked-out points cost nothing (a causal QK costs P(P+1)/2 * ... MACs, not P*M*...); a data-dependent
  mask (top-k routing) costs its declared density times the points;
- negation, index arithmetic in accesses (`m1+1`) and mask predicates are free (address generation and control);
- an index variable read as a value in a body (ALiBi's `SLOPE[h] * (m - p)`) is free, like a constant, and the
  arithmetic on it is counted like any map op (`m - p` is one `add` per point: the kernel computes the difference);
- a composite op (`ops:` in the cascade file) was expanded when the file loaded, so its ops are counted one by one
  under their own types.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import networkx as nx

from archsim.cascade import syntax as S
from archsim.cascade.bind import Binding, bind, eval_size
from archsim.cascade.ir import Cascade, Einsum, Value, Var
from archsim.cascade.mask_count import count_true, static_conjuncts
from archsim.cascade.ops import BINARY_CALLS, BINARY_OP_TYPES, COMPARE_OP_TYPE, DEFAULT_UNARY_OPS, REDUCE_OP_TYPES
from archsim.cascade.passes import PassAnalysis, pass_analysis, refs_of
from archsim.cascade.reference_check import CHECK_TOLERANCE, error_at_test_sizes
from archsim.cascade.references import CAUSAL_FORMS
from archsim.errors import SpecError
from archsim.memo import per_object


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a bound cascade: its kind (input, intermediate or output), ranks, shape and size in bytes
    (elements times the binding's word_bytes)."""

    name: str
    kind: str  # input | intermediate | output
    ranks: tuple[str, ...]
    shape: tuple[int, ...]
    bytes: int


@dataclass(frozen=True)
class Analysis:
    """What `analyze` finds in a bound cascade: rank sizes, tensors, points and ops per Einsum (module docstring's
    counting conventions) and the pass analysis."""

    cascade: str
    rank_sizes: dict[str, int]
    tensors: tuple[TensorInfo, ...]
    points: dict[str, int]  # Einsum -> points computed (after masks)
    ops: dict[str, dict[str, int]]  # Einsum -> op type -> count
    passes: PassAnalysis

    def total_ops(self) -> dict[str, int]:
        """Ops by type over every Einsum, in the order the types first appear."""
        return total_ops(self.ops)

    def bytes_by_kind(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for t in self.tensors:
            total[t.kind] += t.bytes
        return dict(total)

    def to_dict(self) -> dict:
        """The stable JSON form printed by `archsim analyze --json`."""
        return {
            "cascade": self.cascade,
            "ranks": dict(self.rank_sizes),
            "tensors": {t.name: {k: v for k, v in asdict(t).items() if k != "name"} for t in self.tensors},
            "points": dict(self.points),
            "ops": {name: dict(ops) for name, ops in self.ops.items()},
            "total_ops": self.total_ops(),
            "bytes": self.bytes_by_kind(),
            "passes": self.passes.passes,
            "pass_reasons": [b.explain() for b in self.passes.boundaries],
        }


def takes_exp(cascade: Cascade) -> bool:
    """Whether an Einsum of `cascade` takes an exp: the test the models use for softmax attention (a cascade of
    linear attention, with no softmax, takes none; a decayed linear attention's exp and a sigmoid attention's
    missing one make it only a test, which the callers' messages say)."""
    return any("exp" in point_ops(einsum) for einsum in cascade.einsums)


def point_ops(einsum: Einsum, unary_ops=DEFAULT_UNARY_OPS) -> Counter[str]:
    """Operations per point of the iteration space, by op type."""
    counts: Counter[str] = Counter()
    body = einsum.body
    if einsum.reduce_op == "sum" and isinstance(body, S.BinOp) and body.op == "*":
        counts["mac"] += 1
        nodes = [*S.walk(body.lhs), *S.walk(body.rhs)]
    else:
        if einsum.reduce_op is not None:
            counts[REDUCE_OP_TYPES[einsum.reduce_op]] += 1
        nodes = list(S.walk(body))
    for node in nodes:
        match node:
            case S.BinOp(op=op) if op in S.COMPARE_OPS:
                counts[COMPARE_OP_TYPE] += 1
            case S.BinOp(op=op):
                counts[BINARY_OP_TYPES[op]] += 1
            case S.Call(fn=fn, args=args) if fn in BINARY_CALLS and len(args) == 2:
                counts[BINARY_CALLS[fn]] += 1
            case S.Call(fn=fn):
                counts[unary_ops[fn].op_type] += 1
    return counts


_POINT_OPS_LIMIT = 65536
_point_ops_known: dict[int, tuple[Einsum, tuple[tuple[str, int], ...]]] = {}  # id -> (the Einsum, its counts)


def _sorted_point_ops(einsum: Einsum, unary_ops=DEFAULT_UNARY_OPS) -> tuple[tuple[str, int], ...]:
    """`point_ops` by op type in sorted order. With the default unary ops they depend on the Einsum's body alone,
    so they are remembered per Einsum (by identity, the Einsum kept beside them: a model binds one cascade many
    times)."""
    if unary_ops is not DEFAULT_UNARY_OPS:
        return tuple(sorted(point_ops(einsum, unary_ops).items()))
    found = _point_ops_known.get(id(einsum))
    if found is None or found[0] is not einsum:
        if len(_point_ops_known) >= _POINT_OPS_LIMIT:
            _point_ops_known.clear()
        found = _point_ops_known[id(einsum)] = (einsum, tuple(sorted(point_ops(einsum).items())))
    return found[1]


def einsum_points(binding: Binding, einsum: Einsum) -> int:
    """Points of the iteration space that are computed: all of them, less the masked-out ones."""
    sizes = {v: binding.var_size(v) for v in einsum.space}
    total = math.prod(sizes.values())
    mask = einsum.mask
    if mask is None:
        return total
    if mask.data_dependent:
        assert mask.density is not None
        return round(total * min(1.0, eval_size(mask.density, binding.params)))
    used = sorted({n.name for n in S.walk(mask.predicate) if isinstance(n, Var)})
    dims = {v: binding.var_size(v) for v in used}
    pairs = causal_points(mask.predicate, dims)
    count = count_true(mask.predicate, dims, binding.predicate_values) if pairs is None else pairs
    return count * (total // math.prod(dims.values()))


def causal_points(predicate: Value, dims: dict[str, int]) -> int | None:
    """Points of a causal mask `a <= b` (two different index variables, a in [0, A), b in [0, B)) in closed form:
    the sum over b of min(b + 1, A), B (B + 1) / 2 when B <= A, else A (A + 1) / 2 + (B - A) A, exact in integers
    (every causal prefill attention op would otherwise be counted box by box, `count_true`). None for any other
    predicate."""
    match predicate:
        case S.BinOp(op="<=", lhs=Var(name=a), rhs=Var(name=b)) if a != b:
            rows, cols = dims[a], dims[b]
            if cols <= rows:
                return cols * (cols + 1) // 2
            return rows * (rows + 1) // 2 + (cols - rows) * rows
    return None


TOKENS = "seq_len"  # self-attention's sequence length: it sizes both its token ranks, the queries' and the keys'
_ORDER = ("<", "<=", ">", ">=")


def token_ranks(cascade: Cascade) -> tuple[str, ...]:
    """The ranks of one sequence's tokens: the root ranks sized by `TOKENS` alone (self-attention's P and M, a
    sequence-parallel cascade's N, a decode step's M; their parts and aliases address the same tokens). Keys of
    another length (cross-attention's, sized by kv_len) are none."""
    return tuple(rank for rank, size in cascade.rank_sizes.items()
                 if size == S.Name(TOKENS) and cascade.root_of(rank) == rank)


@per_object(maxsize=1024)
def attends_every_key(cascade: Cascade) -> str | None:
    """Why `cascade` attends each query token to the keys after it in its own sequence (what a decoder's causal prefill
    drops), or None. Only a cascade returning tokens is asked (an output over a token rank, `token_ranks`: a decode
    step's one query has no rank). A position is an index variable over a token rank whose leaves all lie in an
    Einsum's space (p; m over m1 and m0; k over N's parts); the query is a position over an output's token rank, a
    key another position (P and M: p the query, m the key; q and k over one rank N: the key is the one an Einsum
    over both reduces, the softmax's max over keys, else either). An Einsum over a query and a key keeps a later key
    where its mask (the conjuncts that read no tensor; none: every point) holds at some point whose key comes after
    its query, at the cascade's test sizes (`count_true`, exact at those sizes): `p - m < window` keeps (p 0, m 1),
    `m <= p and p - m < window` keeps none. The cascade counts the keys after each query where every such Einsum
    keeps one: one that keeps none masks the scores causally (the first, QK, may carry the mask that the Einsums
    reading its -inf scores need not repeat). Einsums over two tokens where no key is a whole position (a ring's key
    t*C + j, its t routed by the mask `t == (d - s) % D`) pass where some such Einsum's mask orders one token
    against the other (a comparison <, <=, >, >= whose two sides together read both). Where no Einsum iterates two
    tokens (linear attention sums K V over every key before any query reads it), a reference with a causal form
    (`CAUSAL_FORMS`) on a cascade with two token ranks says so; a cascade of the user's of that shape without one
    passes unseen."""
    tokens = token_ranks(cascade)
    queries = {cascade.root_of(rank) for name in cascade.outputs
               for rank in cascade.tensors[name].leaf_ranks}.intersection(tokens)
    if not queries:
        return None
    pairs = [einsum for einsum in cascade.einsums if _two_tokens(cascade, tokens, einsum.space)]
    if not pairs:
        return "" if cascade.reference in CAUSAL_FORMS and _two_tokens(cascade, tokens, cascade.var_ranks) else None
    scores = {einsum: found for einsum in pairs if (found := _query_keys(cascade, tokens, queries, einsum))}
    if not scores:
        if any(einsum.mask is not None and _orders_tokens(cascade, tokens, einsum.mask.predicate) for einsum in pairs):
            return None
        return f"no mask of its Einsums over a query and a key, {_names(pairs)}, orders the two"
    if all(einsum.mask is None for einsum in scores):
        return f"no mask of its Einsums over a query and a key, {_names(list(scores))}, orders the two"
    binding = bind(cascade)
    if not all(any(all(_keeps_later_key(binding, einsum, query, key) for query, key in ways) for ways in found)
               for einsum, found in scores.items()):
        return None
    if cascade.reference is not None and cascade.reference not in CAUSAL_FORMS and _computes_reference(cascade):
        return None
    masks = " or ".join(dict.fromkeys(einsum.mask.text for einsum in scores if einsum.mask is not None))
    return f"its Einsums over a query and a key, {_names(list(scores))}, keep keys after their query where {masks}"


def _computes_reference(cascade: Cascade) -> bool:
    """Whether `cascade` computes its reference at its test sizes (`error_at_test_sizes`, as `archsim execute
    --check` shows it); sizes the reference refuses show nothing."""
    try:
        return error_at_test_sizes(cascade) < CHECK_TOLERANCE
    except SpecError:
        return False


def _names(einsums: list[Einsum]) -> str:
    """The first three Einsums' names, then `...` if there are more."""
    return ", ".join(einsum.name for einsum in einsums[:3]) + (", ..." if len(einsums) > 3 else "")


def _token_leaves(cascade: Cascade, tokens: Iterable[str], leaves: Iterable[str]) -> list[str]:
    """The leaf index variables among `leaves` over a token rank or its part."""
    return [v for v in leaves if cascade.root_of(cascade.var_ranks[v]) in tokens]


def _two_tokens(cascade: Cascade, tokens: tuple[str, ...], variables: Iterable[str]) -> bool:
    """Whether index variables (each taken as its leaves) address two tokens: leaves over two token ranks (p and
    m1), or two leaves over one leaf rank (d and t over N's part D)."""
    leaves = set(_token_leaves(cascade, tokens, {leaf for v in variables for leaf in cascade.var_leaves[v]}))
    ranks = [cascade.var_ranks[v] for v in leaves]
    return len({cascade.root_of(rank) for rank in ranks}) > 1 or len(ranks) > len(set(ranks))


def _orders_tokens(cascade: Cascade, tokens: tuple[str, ...], predicate: Value) -> bool:
    """Whether a mask predicate holds an order comparison whose sides together read two tokens (`_two_tokens`)."""
    return any(isinstance(node, S.BinOp) and node.op in _ORDER and _two_tokens(
        cascade, tokens, [var.name for var in S.walk(node) if isinstance(var, Var)]) for node in S.walk(predicate))


def _query_keys(cascade: Cascade, tokens: tuple[str, ...], queries: set[str],
                einsum: Einsum) -> list[list[tuple[str, str]]]:
    """The (query, key) positions of an Einsum (`attends_every_key`), per pair of positions the ways it may be read:
    one where the ranks or a reduction tell the query from the key, both where nothing does."""
    space = set(einsum.space)
    positions = list({cascade.var_leaves[v]: v for v, rank in reversed(cascade.var_ranks.items())
                      if rank in tokens and set(cascade.var_leaves[v]) <= space}.values())
    found = []
    for i, a in enumerate(positions):
        for b in positions[i + 1:]:
            ways = [(q, k) for q, k in ((a, b), (b, a)) if cascade.var_ranks[q] in queries]
            told = [(q, k) for q, k in ways if cascade.var_ranks[k] not in queries or _reduces(cascade, k, q)]
            if ways:
                found.append(told if len(told) == 1 else ways)
    return found


def _reduces(cascade: Cascade, key: str, query: str) -> bool:
    """Whether an Einsum over both positions reduces some leaf of `key` and none of `query` (max or sum over keys)."""
    key_leaves, query_leaves = set(cascade.var_leaves[key]), set(cascade.var_leaves[query])
    return any(key_leaves & set(e.reduce_vars) and not query_leaves & set(e.reduce_vars)
               and key_leaves | query_leaves <= set(e.space) for e in cascade.einsums)


def _keeps_later_key(binding: Binding, einsum: Einsum, query: str, key: str) -> bool:
    """Whether the Einsum's mask holds at a point of its space whose key position comes after its query position,
    every index variable read as its leaves (m as m1 * M0 + m0), at the binding's sizes."""
    cascade = binding.cascade

    def position(var: str) -> Value:
        leaves = cascade.var_leaves[var]
        value: Value = Var(leaves[0])
        for leaf in leaves[1:]:
            value = S.BinOp("+", S.BinOp("*", value, S.Num(binding.var_size(leaf))), Var(leaf))
        return value

    def in_leaves(node: Value) -> Value:
        match node:
            case Var(name=name):
                return position(name)
            case S.BinOp(lhs=lhs, rhs=rhs):
                return replace(node, lhs=in_leaves(lhs), rhs=in_leaves(rhs))
            case S.Call(args=args):
                return replace(node, args=tuple(in_leaves(arg) for arg in args))
            case S.Neg(arg=arg) | S.Not(arg=arg):
                return replace(node, arg=in_leaves(arg))
        return node

    test: Value = S.BinOp(">", position(key), position(query))
    kept = static_conjuncts(einsum.mask.predicate) if einsum.mask is not None else None
    if kept is not None:
        test = S.BinOp("and", in_leaves(kept), test)
    leaves = sorted({node.name for node in S.walk(test) if isinstance(node, Var)})
    return count_true(test, {v: binding.var_size(v) for v in leaves}, binding.predicate_values) > 0


def dependency_dag(cascade: Cascade) -> nx.DiGraph:
    """Tensors as nodes (kind, and the Einsum text for written ones), an edge per read. Reads of recurrence
    state from the previous step are loop-carried, not part of the DAG; they are listed in
    `graph.graph["carried"]` as (tensor, reader) pairs."""
    graph = nx.DiGraph(carried=[])
    for name, decl in cascade.tensors.items():
        graph.add_node(name, kind=decl.kind)
    for einsum in cascade.einsums:
        graph.nodes[einsum.name]["einsum"] = einsum.text
        for ref in refs_of(einsum):
            if ref.carried:
                graph.graph["carried"].append((ref.tensor, einsum.name))
            else:
                graph.add_edge(ref.tensor, einsum.name)
    return graph


def tensor_infos(binding: Binding) -> tuple[TensorInfo, ...]:
    """Kind, ranks, shape and bytes of each tensor of a bound cascade: `analyze`'s tensors, without counting any
    Einsum's points (a mask's count can cost far more than the shapes). Each shape is `Binding.shape` (and kept
    there), the bytes `Binding.bytes`, read off `_tensor_plan`."""
    sizes, word_bytes, shapes = binding.rank_sizes, binding.word_bytes, binding._shapes
    infos = []
    for name, kind, ranks, slots in _tensor_plan(binding.cascade):
        shape = shapes.get(name)
        if shape is None:
            shape = shapes[name] = tuple([sizes[rank] + extra for rank, extra in slots])
        infos.append(TensorInfo(name, kind, ranks, shape, math.prod(shape) * word_bytes))
    return tuple(infos)


@per_object(maxsize=1024)
def _tensor_plan(cascade: Cascade) -> tuple[tuple[str, str, tuple[str, ...], tuple[tuple[str, bool], ...]], ...]:
    """What `tensor_infos` reads of a cascade, which no binding changes: each tensor's name, kind, ranks, and per
    rank whether it is the recurrence's one slot longer (`Binding.shape`); remembered per cascade."""
    return tuple((name, decl.kind, decl.ranks, tuple((rank, rank == decl.iterative) for rank in decl.ranks))
                 for name, decl in cascade.tensors.items())


@per_object(maxsize=1024)
def _einsum_plan(cascade: Cascade) -> tuple[tuple[Einsum, tuple[str, ...] | None], ...]:
    """Each Einsum of a cascade with the ranks of its iteration space's variables (each variable once, as
    `einsum_points` counts them), or None for a masked one (`einsum_points` counts it); remembered per cascade."""
    return tuple((einsum, None if einsum.mask is not None
                  else tuple(cascade.var_ranks[v] for v in dict.fromkeys(einsum.space)))
                 for einsum in cascade.einsums)


def einsum_counts(binding: Binding, unary_ops=DEFAULT_UNARY_OPS) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """`analyze`'s points and ops per Einsum, without the tensors: what an op's operation counts need alone."""
    points, ops = {}, {}
    sizes = binding.rank_sizes
    for einsum, ranks in _einsum_plan(binding.cascade):  # unmasked: every point, the product of the space's sizes
        count = einsum_points(binding, einsum) if ranks is None else math.prod([sizes[rank] for rank in ranks])
        points[einsum.name] = count
        ops[einsum.name] = {op: n * count for op, n in _sorted_point_ops(einsum, unary_ops)}
    return points, ops


def total_ops(ops: dict[str, dict[str, int]]) -> dict[str, int]:
    """Ops by type over every Einsum of `ops` (Einsum -> op type -> count), in the order the types first appear."""
    total: dict[str, int] = {}
    for counts in ops.values():
        for kind, n in counts.items():
            total[kind] = total.get(kind, 0) + n
    return total


def analyze(binding: Binding, unary_ops=DEFAULT_UNARY_OPS, passes: PassAnalysis | None = None,
            tensors: tuple[TensorInfo, ...] | None = None,
            counts: tuple[dict[str, int], dict[str, dict[str, int]]] | None = None) -> Analysis:
    """Points, ops by type and tensor bytes of a bound cascade, and its passes (`passes`, when given, is the
    cascade's `pass_analysis`, which does not depend on the sizes: a caller binding one cascade many times passes
    it once; `tensors`, when given, is `tensor_infos` of the binding, and `counts` its `einsum_counts` with these
    unary ops, which a caller may already hold)."""
    cascade = binding.cascade
    tensors = tensor_infos(binding) if tensors is None else tensors
    points, ops = einsum_counts(binding, unary_ops) if counts is None else counts
    return Analysis(cascade.name, dict(binding.rank_sizes), tensors, points, ops, passes or pass_analysis(cascade))
