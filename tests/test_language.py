"""The cascade language, feature by feature, on small cascades written here."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.cascade.analysis import analyze, dependency_dag
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.ir import Param, Var
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.mask_count import count_true
from archsim.cascade.ops import DEFAULT_UNARY_OPS, UnaryOp
from archsim.cascade.syntax import parse_expr
from archsim.errors import SpecError


def _cascade(text: str, **kwargs):
    """The cascade of `text`, its elements 2 bytes wide (`params.word_bytes`, which every cascade states) unless
    the text says otherwise: the cascades here are about the language, not the bytes."""
    data = yaml.safe_load(text)
    data["params"] = {"word_bytes": 2, **(data.get("params") or {})}
    return cascade_from_dict(data, "<test>", **kwargs)


def test_partitioned_rank_reads_the_same_through_root_or_parts() -> None:
    """K[m,e] and K[m1,m0,e] are the same element when m = m1*M0 + m0; an output written with the root
    variable has the root's shape."""
    c = _cascade("""
name: t
params: {n: 12, t: 4}
ranks: {M: n, M0: t, E: 3}
partition: {M: [M1, M0]}
inputs: {K: [M, E]}
einsums: |
  A[m1,m0,e] = K[m1,m0,e] * 2
  B[m,e] = A[m,e] + K[m,e]
outputs: [B]
""")
    b = bind(c)
    assert b.rank_sizes["M1"] == 3
    x = random_inputs(b, 0)
    out = execute(b, x)
    assert out["B"].shape == (12, 3)
    np.testing.assert_allclose(out["B"], 3 * x["K"])
    assert out["A"].shape == (3, 4, 3)


def test_broadcasting_and_params_in_expressions() -> None:
    c = _cascade("""
name: t
params: {scale: 0.5}
ranks: {P: 4, F: 3}
inputs: {X: [P], Y: [F]}
einsums: |
  Z[p,f] = X[p] * scale + Y[f]
outputs: [Z]
""")
    b = bind(c)
    x = random_inputs(b, 1)
    np.testing.assert_allclose(execute(b, x)["Z"], x["X"][:, None] * 0.5 + x["Y"][None, :])


def test_registered_unary_op() -> None:
    """A user op is passed in a dict (no global registry) and counted under its own op type."""
    ops = {**DEFAULT_UNARY_OPS, "softplus": UnaryOp("softplus", lambda v: np.log1p(np.exp(v)), "softplus")}
    text = """
name: t
ranks: {P: 5}
inputs: {X: [P]}
einsums: |
  Y[p] = softplus(X[p])
outputs: [Y]
"""
    c = _cascade(text, unary_ops=ops)
    b = bind(c)
    x = random_inputs(b, 0)
    np.testing.assert_allclose(execute(b, x, unary_ops=ops)["Y"], np.log1p(np.exp(x["X"])))
    assert analyze(b, unary_ops=ops).ops["Y"] == {"softplus": 5}


def test_recurrence_runs_step_by_step() -> None:
    """A running sum written as a recurrence equals the cumulative sum; init seeds slot 0."""
    c = _cascade("""
name: t
ranks: {T: 6}
inputs: {X: [T]}
init: {S: 10}
einsums: |
  S[t+1] = S[t] + X[t]
  Y[t] = S[t+1]
  F[] = S[T] * 1
outputs: [Y, F]
""")
    b = bind(c)
    x = random_inputs(b, 0)
    out = execute(b, x)
    np.testing.assert_allclose(out["Y"], 10 + np.cumsum(x["X"]))
    np.testing.assert_allclose(out["F"], 10 + x["X"].sum())
    assert out["S"].shape == (7,)
    assert dependency_dag(c).graph["carried"] == [("S", "S")]


def test_masks_skip_points_and_fill() -> None:
    c = _cascade("""
name: t
ranks: {M: 5, P: 5}
inputs: {A: [M, P]}
masks: {causal: "m <= p"}
einsums: |
  L[m,p] = A[m,p] where causal else -inf
  R[p] = sum(m: A[m,p]) where m <= p
  E[p] = max(m: A[m,p]) where m > 10 else 7
outputs: [L, R, E]
""")
    b = bind(c)
    x = random_inputs(b, 0)
    out = execute(b, x)
    allowed = np.arange(5)[:, None] <= np.arange(5)[None, :]
    np.testing.assert_array_equal(out["L"], np.where(allowed, x["A"], -np.inf))
    np.testing.assert_allclose(out["R"], np.where(allowed, x["A"], 0).sum(axis=0))
    np.testing.assert_array_equal(out["E"], np.full(5, 7.0))  # every point masked: the fill
    a = analyze(b)
    assert a.points == {"L": 15, "R": 15, "E": 0}


def test_a_masked_recurrence_step_carries_its_state() -> None:
    """`S[t+1] = S[t] + X[t] where t < 3`: steps 3.. are skipped and carry S; a map recurrence and one with a
    reduction alike (the reduction's step is skipped when all its points are masked). Skipped steps cost nothing,
    and a predicate reads a rank's size as bound (`t * C < T`)."""
    c = _cascade("""
name: t
params: {n: 6}
ranks: {T: n, C: 2}
inputs: {X: [T], Z: [T, C]}
init: {S: 10, U: -inf}
einsums: |
  S[t+1] = S[t] + X[t] where t < 3
  U[t+1] = max(c: max(U[t], Z[t,c])) where t * C < T
  Y[t] = S[t+1]
outputs: [Y, U]
""")
    b = bind(c)
    x = random_inputs(b, 0)
    out = execute(b, x)
    head = 10 + np.cumsum(x["X"][:3])
    np.testing.assert_allclose(out["Y"], np.concatenate([head, np.full(3, head[-1])]))
    running = np.maximum.accumulate(x["Z"].max(axis=1)[:3])  # a running max over the rows of Z, then carried
    np.testing.assert_allclose(out["U"], np.concatenate([[-np.inf], running, np.full(3, running[-1])]))
    assert analyze(b).points["S"] == 3 and analyze(b).points["U"] == 3 * 2  # t * 2 < 6: t < 3, two c each
    wider = bind(c, overrides={"C": 1})
    assert analyze(wider).points["U"] == 6  # the predicate reads C as bound: t * 1 < 6 everywhere


def test_an_else_on_a_masked_recurrence_is_refused() -> None:
    with pytest.raises(SpecError, match=r"einsums\[0\] \(S\): a masked step of the recurrence S carries its state"):
        _cascade("""
name: t
ranks: {T: 4}
inputs: {X: [T]}
init: {S: 0}
einsums: |
  S[t+1] = S[t] + X[t] where t < 2 else 0
outputs: [S]
""")


def test_data_dependent_mask_counts_its_density() -> None:
    c = _cascade("""
name: t
params: {keep: 2, n: 4}
ranks: {T: 3, X: n}
aliases: {y: X}
inputs: {R: [T, X]}
masks: {top: {predicate: "RK[t,x] < keep", density: "keep / n"}}
einsums: |
  RK[t,x] = sum(y: R[t,y] > R[t,x])
  G[t,x] = R[t,x] where top
outputs: [G]
""")
    b = bind(c)
    x = random_inputs(b, 0)
    g = execute(b, x)["G"]
    assert ((g != 0).sum(axis=1) == 2).all()  # the two largest logits per row survive
    a = analyze(b)
    assert a.ops["RK"] == {"add": 3 * 4 * 4, "cmp": 3 * 4 * 4}
    assert a.points["G"] == 3 * 4 * 2 // 4


def test_dag_and_split_kv_passes() -> None:
    """Split-KV (Flash-Decoding): per-split partial softmax over m0, then a merge over the splits s. One pass
    over the keys M; the merge is a second pass over the split partials S only."""
    c = _cascade("""
name: t
params: {splits: 2}
ranks: {M: 8, S: splits, E: 2, F: 2}
partition: {M: [S, M0]}
inputs: {Q: [E], K: [M, E], V: [M, F]}
einsums: |
  QK[s,m0] = sum(e: Q[e] * K[s,m0,e])
  LM[s] = max(m0: QK[s,m0])
  SN[s,m0] = exp(QK[s,m0] - LM[s])
  SD[s] = sum(m0: SN[s,m0])
  SNV[s,f] = sum(m0: SN[s,m0] * V[s,m0,f])
  GM[] = max(s: LM[s])
  W[s] = exp(LM[s] - GM[])
  D[] = sum(s: W[s] * SD[s])
  NV[f] = sum(s: W[s] * SNV[s,f])
  AV[f] = NV[f] / D[]
outputs: [AV]
""")
    passes = analyze(bind(c)).passes.passes
    assert passes["M"] == 1 and passes["S"] == 2 and passes["M0"] == 2
    dag = dependency_dag(c)
    assert set(dag.predecessors("W")) == {"LM", "GM"}
    b = bind(c)
    x = random_inputs(b, 3)
    scores = x["K"] @ x["Q"]
    weights = np.exp(scores - scores.max())
    np.testing.assert_allclose(execute(b, x)["AV"], weights @ x["V"] / weights.sum())


def _pred(text: str):
    """Resolve a predicate over variables m, p and parameters W, S (as the loader does)."""
    from archsim.cascade import syntax as S

    def resolve(node):
        match node:
            case S.Name(name=name):
                return Var(name) if name in ("m", "p") else Param(name)
            case S.BinOp(op=op, lhs=lhs, rhs=rhs):
                return S.BinOp(op, resolve(lhs), resolve(rhs))
            case S.Call(fn=fn, args=args):
                return S.Call(fn, tuple(resolve(a) for a in args))
            case S.Not(arg=arg):
                return S.Not(resolve(arg))
        return node

    return resolve(parse_expr(text))


PREDICATES = [
    "m <= p", "m <= p and (p - m < W or m < S)", "abs(m // W - p // W) <= 1 or m // W == 0",
    "not (m % W == 0)", "min(m, p) >= S and max(m, p) < 3 * W", "m * 2 > p + S",
]


def _brute(which: str, m: np.ndarray, p: np.ndarray, w: int, s: int) -> np.ndarray:
    return {
        PREDICATES[0]: m <= p,
        PREDICATES[1]: (m <= p) & ((p - m < w) | (m < s)),
        PREDICATES[2]: (np.abs(m // w - p // w) <= 1) | (m // w == 0),
        PREDICATES[3]: ~(m % w == 0),
        PREDICATES[4]: (np.minimum(m, p) >= s) & (np.maximum(m, p) < 3 * w),
        PREDICATES[5]: m * 2 > p + s,
    }[which]


@settings(max_examples=60, deadline=None)
@given(n_m=st.integers(1, 300), n_p=st.integers(1, 300), w=st.integers(1, 40), s=st.integers(0, 20),
       which=st.sampled_from(PREDICATES))
def test_mask_count_equals_brute_force(n_m: int, n_p: int, w: int, s: int, which: str) -> None:
    """The interval quadtree count is exact: it equals enumerating every point."""
    brute = _brute(which, np.arange(n_m)[:, None], np.arange(n_p)[None, :], w, s)
    assert count_true(_pred(which), {"m": n_m, "p": n_p}, {"W": w, "S": s}) == int(np.broadcast_to(
        brute, (n_m, n_p)).sum())


@settings(max_examples=60, deadline=None)
@given(moves_m=st.integers(1, 40), tile_m=st.integers(1, 40), moves_p=st.integers(1, 40), tile_p=st.integers(1, 40),
       w=st.integers(1, 40), s=st.integers(0, 20), which=st.sampled_from(PREDICATES))
def test_moves_holding_a_point_equal_brute_force(moves_m, tile_m, moves_p, tile_p, w, s, which) -> None:
    """A grid of moves, each a box of tile_m keys x tile_p queries (a tile fetch of a masked Einsum): the moves
    whose box holds a kept point, counted by the block quadtree, equal checking every point of every box."""
    from archsim.cascade.mask_count import moves_holding_a_point

    m, p = np.arange(moves_m * tile_m), np.arange(moves_p * tile_p)
    kept = np.broadcast_to(_brute(which, m[:, None], p[None, :], w, s), (len(m), len(p)))
    brute = int(kept.reshape(moves_m, tile_m, moves_p, tile_p).any(axis=(1, 3)).sum())
    weights, spans = np.array([[tile_m, 0.0], [0.0, tile_p]]), np.array([tile_m - 1.0, tile_p - 1.0])
    got = moves_holding_a_point(_pred(which), ["m", "p"], weights, spans, (moves_m, moves_p), {"W": w, "S": s})
    assert got == brute


def test_arithmetic_reads_a_comparison_as_one_or_zero() -> None:
    """numpy adds booleans as a logical or: (A > 0) + (B > 0) summed to 15 where the count is 24, a difference or
    negation of comparisons crashed, and the mask (m <= p) + (m >= 50) >= 2 was counted as 0 points of 1275."""
    counted = bind(cascade_from_dict(yaml.safe_load("""
name: cmpv
params: {n: 4, word_bytes: 2}
ranks: {M: n, P: n}
inputs: {A: [M], B: [P]}
einsums: |
  X[m,p] = (A[m] > 0) + (B[p] > 0)
  Y[m,p] = (A[m] > 0) - (B[p] > 0)
  Z[m] = -(A[m] > 0)
  C[] = sum(m, p: X[m,p])
outputs: [X, Y, Z, C]
""")))
    inputs = random_inputs(counted, seed=0)
    out = execute(counted, inputs)
    a, b = inputs["A"] > 0, inputs["B"] > 0
    assert out["C"] == 4 * a.sum() + 4 * b.sum()
    np.testing.assert_array_equal(out["Y"], a[:, None] * 1.0 - b[None, :])
    np.testing.assert_array_equal(out["Z"], -1.0 * a)
    masked = bind(cascade_from_dict(yaml.safe_load("""
name: both
params: {n: 100, word_bytes: 2}
ranks: {M: n, P: n}
inputs: {A: [M]}
masks: {both: "(m <= p) + (m >= 50) >= 2"}
einsums: |
  X[m,p] = A[m] where both
outputs: [X]
""")))
    assert analyze(masked).points["X"] == sum(1 for m in range(100) for p in range(100) if 50 <= m <= p) == 1275
