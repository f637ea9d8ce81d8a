"""Operation counts, bytes and passes against hand formulas (the formula is the expectation, written here).

Sizes: BERT-base from the FuseMax artifact (B=64, H=12, E=F=64) at P = M = 1024 tokens.
"""

from __future__ import annotations

import pytest

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
    r = cli_json("analyze", "attention-1pass-causal", "--set", f"seq_len={n}", "--set", "M0=256")
    b, h, e = r["ranks"]["B"], r["ranks"]["H"], r["ranks"]["E"]
    assert r["ops"]["QK"] == {"mac": b * h * e * n * (n + 1) // 2}


def test_sliding_window_count(cli_json) -> None:
    """Keys m <= p with p - m < W (the window) or m < S (sinks), counted row by row."""
    window, sinks = 128, 4
    r = cli_json("analyze", "attention-sliding-window", *BERT, "--set", f"window={window}",
                 "--set", f"sinks={sinks}")
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
    assert r["ops"]["RK"] == {"add": tokens * x * x, "cmp": tokens * x * x}  # rank of each logit among X
