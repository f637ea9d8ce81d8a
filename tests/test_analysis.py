"""Operation counts, bytes and passes against hand formulas (the formula is the expectation, written here).

Sizes: BERT-base from the FuseMax artifact (B=64, H=12, E=F=64) at P = M = 1024 tokens.
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim.cascade import mask_count
from archsim.cascade import syntax as S
from archsim.cascade.ir import Param, Var
from archsim.cascade.mask_count import count_true

B, H, E, F, N = 64, 12, 64, 64, 1024
BERT = ("--workload", "bert-base", "--set", f"seq_len={N}")


@pytest.mark.parametrize(("cascade", "passes"), [("attention-3pass", 3), ("attention-2pass", 2),
                                                 ("attention-1pass", 1), ("attention-1pass-causal", 1)])
def test_passes_over_the_key_rank(cli_json, cascade: str, passes: int) -> None:
    """FuseMax's taxonomy: 3-pass (Cascade 4) = 3 on M, deferred division = 2, online softmax = 1."""
    result = cli_json("analyze", cascade)
    assert result["passes"]["M"] == passes
    assert result["passes"]["P"] == 1 and result["passes"]["E"] == 1
    assert len(result["pass_reasons"]) >= passes - 1


def test_3pass_op_counts(cli_json) -> None:
    r = cli_json("analyze", "attention-3pass", *BERT)
    M = P = N
    assert r["ranks"] == {"B": B, "H": H, "P": P, "M": M, "E": E, "F": F}
    assert r["ops"]["QK"] == {"mac": B * H * P * M * E}
    assert r["ops"]["GM"] == {"max": B * H * M * P}
    assert r["ops"]["SN"] == {"add": B * H * M * P, "exp": B * H * M * P}  # subtract the max, then exp
    assert r["ops"]["SD"] == {"add": B * H * M * P}
    assert r["ops"]["A"] == {"div": B * H * M * P}
    assert r["ops"]["AV"] == {"mac": B * H * P * M * F}
    word = 2
    assert r["tensors"]["QK"]["bytes"] == B * H * M * P * word
    assert r["bytes"]["input"] == (B * H * P * E + B * H * M * E + B * H * M * F) * word


def test_1pass_op_counts(cli_json) -> None:
    """Cascade 5 with M0 = 256 (FuseMax's tile): per-tile work over (m1, m0), per-tile corrections over m1."""
    M0 = 256
    r = cli_json("analyze", "attention-1pass", *BERT, "--set", f"M0={M0}")
    M = P = N
    M1 = M // M0
    ops = r["ops"]
    assert ops["QK"] == {"mac": B * H * P * M * E}
    assert ops["LM"] == {"max": B * H * M * P}
    assert ops["RM"] == {"max": B * H * M1 * P}
    assert ops["SLN"] == {"add": B * H * M * P, "exp": B * H * M * P}
    assert ops["SLD"] == {"add": B * H * M * P}
    assert ops["SLNV"] == {"mac": B * H * M * P * F}
    assert ops["PRM"] == {"add": B * H * M1 * P, "exp": B * H * M1 * P}
    assert ops["SPD"] == {"mul": B * H * M1 * P}
    assert ops["RD"] == {"add": B * H * M1 * P}
    assert ops["SPNV"] == {"mul": B * H * M1 * F * P}
    assert ops["RNV"] == {"add": B * H * M1 * F * P}
    assert ops["AV"] == {"div": B * H * F * P}
    assert r["passes"]["M"] == 1 and r["passes"]["M1"] == 1
    assert r["passes"]["M0"] == 2  # inside a tile: local max first, then exp (buffered tile, FuseMax §IV)
    # recurrence state is one slot longer than the tiles: RM[M1+1, P]
    assert r["tensors"]["RM"]["shape"] == [B, H, M1 + 1, P]


def test_causal_mask_halves_the_work(cli_json) -> None:
    """Causal QK computes only m <= p: P(P+1)/2 points per (b, h), each E MACs."""
    r = cli_json("analyze", "attention-1pass-causal", *BERT, "--set", "M0=256")
    assert r["ops"]["QK"] == {"mac": B * H * E * N * (N + 1) // 2}
    assert r["ops"]["SLNV"] == {"mac": B * H * F * N * (N + 1) // 2}


def test_causal_count_is_exact_at_a_million_tokens(cli_json) -> None:
    n = 1 << 20
    sizes = [arg for name in ("batch=2", "heads=2", "head_dim=8", "word_bytes=2") for arg in ("--set", name)]
    r = cli_json("analyze", "attention-1pass-causal", "--set", f"seq_len={n}", *sizes, "--set", "M0=256")
    b, h, e = r["ranks"]["B"], r["ranks"]["H"], r["ranks"]["E"]
    assert r["ops"]["QK"] == {"mac": b * h * e * n * (n + 1) // 2}


def test_sliding_window_count(cli_json) -> None:
    """Keys m <= p with p - m < W (the window) or m < S (sinks), counted row by row."""
    window, sinks = 128, 4
    r = cli_json("analyze", "attention-sliding-window", *BERT, "--set", f"window={window}",
                 "--set", f"sinks={sinks}", "--set", "M0=256")
    per_head = sum(min(p + 1, window) + max(0, min(sinks, p + 1 - window)) for p in range(N))
    assert r["ops"]["QK"] == {"mac": B * H * E * per_head}


def test_decode_gqa_counts(cli_json) -> None:
    """Llama-3-70B decode: every query head reads its group's KV head; K/V bytes count G heads, not H."""
    r = cli_json("analyze", "attention-decode-gqa", "--workload", "llama3-70b")
    b, h, g, m, e = (r["ranks"][k] for k in ("B", "H", "G", "M", "E"))
    assert (b, h, g, m, e) == (16, 64, 8, 4096, 128)
    assert r["ops"]["QK"] == {"mac": b * h * m * e}
    assert r["ops"]["SNV"] == {"mac": b * h * m * e}
    assert r["ops"]["AV"] == {"div": b * h * e}
    assert r["bytes"]["input"] == (b * h * e + 2 * b * g * m * e) * 2
    assert r["passes"]["M"] == 2  # max first, then exp + sum + SN*V with the division deferred


def test_splitkv_merge_counts(cli_json) -> None:
    """Flash-Decoding: the splits' partials are merged with one rescale per split; the KV rank is read once."""
    splits = 8
    r = cli_json("analyze", "attention-decode-splitkv", "--workload", "llama3-70b", "--set", f"splits={splits}")
    b, h, m, f = (r["ranks"][k] for k in ("B", "H", "M", "F"))
    assert r["ops"]["QK"] == {"mac": b * h * m * f}
    assert r["ops"]["W"] == {"add": b * h * splits, "exp": b * h * splits}
    assert r["ops"]["NV"] == {"mac": b * h * splits * f}
    assert r["passes"]["M0"] == 2 and r["passes"]["S"] == 2 and r["passes"]["M"] == 1


def test_mla_absorbed_counts(cli_json) -> None:
    """DeepSeek-V3 MLA decode, absorbed: scores read the latent cache (L) and the RoPE keys (R)."""
    r = cli_json("analyze", "attention-mla-decode", "--workload", "deepseek-v3-mla")
    b, h, m, e, lat, rope = (r["ranks"][k] for k in ("B", "H", "M", "E", "L", "R"))
    assert (lat, rope) == (512, 64)
    assert r["ops"]["QL"] == {"mac": b * h * e * lat}
    assert r["ops"]["S1"] == {"mac": b * h * m * lat}
    assert r["ops"]["S2"] == {"mac": b * h * m * rope}
    assert r["ops"]["AVL"] == {"mac": b * h * m * lat}
    assert r["tensors"]["C"]["bytes"] == b * m * lat * 2


def test_projection_and_moe_counts(cli_json) -> None:
    r = cli_json("analyze", "qkv-projection", "--workload", "llama3-70b")
    b, p, d, h, g, e = (r["ranks"][k] for k in ("B", "P", "D", "H", "G", "E"))
    assert r["ops"] == {"Q": {"mac": b * p * d * h * e}, "K": {"mac": b * p * d * g * e},
                        "V": {"mac": b * p * d * g * e}}
    tokens = 16
    r = cli_json("analyze", "moe-experts", "--workload", "mixtral-8x7b", "--set", f"tokens={tokens}")
    d, s, x = r["ranks"]["D"], r["ranks"]["S"], r["ranks"]["X"]
    top_k = 2
    assert r["ops"]["R"] == {"mac": tokens * d * x}
    assert r["ops"]["H1"] == {"mac": tokens * top_k * d * s}  # experts run only for routed pairs
    assert r["ops"]["O"] == {"mac": tokens * top_k * s * d}
    # rank of each logit among X, ties to the lower expert: the X(X-1)/2 pairs below it (>=) and X(X+1)/2 from it (>)
    assert r["ops"]["RKL"] == {"add": tokens * x * (x - 1) // 2, "cmp": tokens * x * (x - 1) // 2}
    assert r["ops"]["RKU"] == {"add": tokens * x * (x + 1) // 2, "cmp": tokens * x * (x + 1) // 2}


def _predicate(text: str):
    """A mask predicate over index variables m, p, q and parameters W, S, resolved as the loader does."""

    def resolve(node):
        match node:
            case S.Name(name=name):
                return Var(name) if name in ("m", "p", "q") else Param(name)
            case S.BinOp(op=op, lhs=lhs, rhs=rhs):
                return S.BinOp(op, resolve(lhs), resolve(rhs))
            case S.Call(fn=fn, args=args):
                return S.Call(fn, tuple(resolve(a) for a in args))
            case S.Not(arg=arg) | S.Neg(arg=arg):
                return type(node)(resolve(arg))
        return node

    return resolve(S.parse_expr(text))


# Each predicate beside the same predicate written with numpy on the whole grid (the brute force).
MASKS = {
    "causal": ("m <= p", lambda m, p, w, s: m <= p),
    "sliding window with sinks": ("m <= p and (p - m < W or m < S)",
                                  lambda m, p, w, s: (m <= p) & ((p - m < w) | (m < s))),
    "block-sparse": ("abs(m // W - p // W) <= 1", lambda m, p, w, s: np.abs(m // w - p // w) <= 1),
    "compound": ("not (m % W == 1) and (min(m, p) // 3 >= S or max(m - S, -p) % W < 2) or m * 2 > p + W * W",
                 lambda m, p, w, s: (~(m % w == 1) & ((np.minimum(m, p) // 3 >= s) | (np.maximum(m - s, -p) % w < 2)))
                 | (m * 2 > p + w * w)),
    "fractional remainder": ("(m * 0.5) % 2 > 1.2 or p // 2.5 == 3", lambda m, p, w, s: ((m * 0.5) % 2 > 1.2)
                             | (p // 2.5 == 3)),
}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mask", list(MASKS))
def test_mask_count_equals_brute_force_on_random_sizes(mask: str, seed: int) -> None:
    """The batched interval count equals summing the predicate over every point, at sizes that take every
    path (one dense box, dense batches, splitting down to small boxes)."""
    rng = np.random.default_rng(seed)
    n_m, n_p = (int(n) for n in rng.integers(1, 1500, size=2))
    w, s = int(rng.integers(1, 64)), int(rng.integers(0, 32))
    text, brute = MASKS[mask]
    m, p = np.arange(n_m)[:, None], np.arange(n_p)[None, :]
    expected = int(np.broadcast_to(brute(m, p, w, s), (n_m, n_p)).sum())
    assert count_true(_predicate(text), {"m": n_m, "p": n_p}, {"W": w, "S": s}) == expected


@pytest.mark.parametrize("mask", list(MASKS))
def test_mask_count_in_tiny_batches_equals_brute_force(monkeypatch, mask: str) -> None:
    """With batches of 8 boxes and dense boxes of at most 4 points, the stack, the batching and the grouping of
    dense boxes by shape all run on a small grid; the count is still the brute force's."""
    for name, value in [("SMALL_BOX_POINTS", 1), ("SMALL_BATCH_POINTS", 1), ("DENSE_POINTS", 4),
                        ("BATCH_BOXES", 8), ("DENSE_BATCH_POINTS", 16)]:
        monkeypatch.setattr(mask_count, name, value)
    mask_count._count.cache_clear()
    n_m, n_p, w, s = 37, 53, 5, 3
    text, brute = MASKS[mask]
    m, p = np.arange(n_m)[:, None], np.arange(n_p)[None, :]
    expected = int(np.broadcast_to(brute(m, p, w, s), (n_m, n_p)).sum())
    assert count_true(_predicate(text), {"m": n_m, "p": n_p}, {"W": w, "S": s}) == expected
    mask_count._count.cache_clear()


def test_causal_count_is_exact_at_the_size_limit() -> None:
    """m <= p over 2**24 x 2**24 points: N(N+1)/2 (row p holds p + 1 keys)."""
    n = 2**24
    assert count_true(_predicate("m <= p"), {"m": n, "p": n}, {}) == n * (n + 1) // 2


def test_mask_count_is_exact_beyond_int64() -> None:
    """m < W or p < W over three ranks of 2**22 (2**66 points): all but the (2**22 - W)**2 * 2**22 points with
    both m and p at least W = 2**21, i.e. 2**66 - 2**64, past int64."""
    n, w = 2**22, 2**21
    expected = n**3 - (n - w) ** 2 * n
    assert expected == 3 * 2**64
    assert count_true(_predicate("m < W or p < W"), {"m": n, "p": n, "q": n}, {"W": w, "S": 0}) == expected


def test_a_predicate_of_parameters_only_counts_one_point_true_or_not() -> None:
    """A mask with no rank in it (a fuzzed cascade's `where window`) is one point; a number holds where it is
    nonzero, as the interpreter's np.where reads it (the batched counter raised IndexError on it)."""
    from archsim.cascade import syntax as S
    from archsim.cascade.ir import Param
    from archsim.cascade.mask_count import count_true

    assert count_true(Param("w"), {}, {"w": 3.0}) == 1
    assert count_true(S.BinOp("<", Param("w"), S.Num(1.0)), {}, {"w": 3.0}) == 0
    assert count_true(Param("w"), {"m": 10}, {"w": 0.5}) == 10


def test_analyze_without_a_workload_takes_every_model_size_or_none(cli) -> None:
    """`archsim analyze` binds as `archsim run` does (`point.bound`): a --set of seq_len alone counted attention at
    4096 tokens over the test batch 2, heads 2 and head_dim 8; now every size or none (the test sizes)."""
    out = cli("analyze", "attention-1pass", "--set", "seq_len=4096", expect=2).output
    assert out.startswith("error: --set: batch: missing: seq_len set without a workload")
    assert "ranks" in cli("analyze", "attention-1pass").output


def test_a_set_size_the_cascade_does_not_bind_is_named_as_such_without_a_workload(cli) -> None:
    """`--set window=4` on ffn (which binds no window) had been taken as a model size given, asking for every other
    one; the cascade has no such parameter (review helper-196)."""
    out = cli("analyze", "ffn", "--set", "window=4", expect=2).output
    assert out.startswith("error: --set: window: not a parameter or rank of ffn")
