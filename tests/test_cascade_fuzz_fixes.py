"""Cascade-language defects found by fuzzing (/tmp/fz/casc): causal multi-device cascades that counted the row max
and the softmax denominator over every key, ring steps that updated their state where the step's block holds no key
a query sees, a mask density above 1, a mask named like a parameter, index, rank or tensor, a duplicate output.

Expected counts are closed forms. A causal attention over N tokens has N (N + 1) / 2 (query, key) pairs per batch
and query head: the row max, the exponentials and the denominator each take one op per pair, as
`attention-3pass-causal` counts them (masked scores are -inf and cost nothing). A ring step updates a query's
running state only when its block holds a key the query sees (its first key at or before the query: the state of
the others is carried, as attention-1pass-causal's `tile` mask skips a fully masked key tile)."""

from __future__ import annotations

import pytest
import yaml

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.passes import pass_analysis

B, H, G, N, E = 1, 4, 2, 32, 4  # batch, query heads, KV heads, tokens, head dim
CAUSAL_PAIRS = B * H * N * (N + 1) // 2

# cascade -> (the row max, the exponentials, the denominator) Einsums, and the sizes that shard it
CAUSAL_SOFTMAX = {
    "attention-3pass-causal": (("GM", "SN", "SD"), {"heads": H}),
    "attention-mla-prefill": (("GM", "SN", "SD"), {"heads": H}),
    "ulysses-attention": (("MX", "SN", "SD"), {"heads": H, "kv_heads": G, "devices": 2}),
    "megatron-sp-attention": (("MX", "SN", "SD"), {"heads": H, "kv_heads": G, "devices": 2}),
    "allgather-cp-attention": (("MX", "SN", "SD"), {"heads": H, "kv_heads": G, "devices": 4}),
    "ring-attention-causal": (("LM", "SLN", "SLD"), {"heads": H, "kv_heads": G, "devices": 4}),
    "ring-attention-zigzag": (("LM", "SLN", "SLD"), {"heads": H, "kv_heads": G, "devices": 4}),
    "ring-attention-stripe": (("LM", "SLN", "SLD"), {"heads": H, "kv_heads": G, "devices": 4}),
    "usp-attention": (("LM", "SLN", "SLD"), {"heads": H, "kv_heads": G, "ulysses": 2, "ring": 2}),
}


def _analysis(name: str, **sizes: float):
    return analyze(bind(library.load_cascade_spec(name), {"batch": B, "seq_len": N, "head_dim": E, **sizes}))


@pytest.mark.parametrize("name", CAUSAL_SOFTMAX)
def test_causal_row_max_and_denominator_count_only_the_keys_a_query_sees(name: str) -> None:
    """ulysses-attention at 64 tokens, 4 heads, one device counted MX and SD at 4 * 64 * 64 = 16384 points where
    attention-3pass-causal counts 4 * 64 * 65 / 2 = 8320; the rings, USP, all-gather CP, Megatron-SP and MLA prefill
    likewise: their max and sum lacked the causal mask their scores carry."""
    (row_max, exponentials, denominator), sizes = CAUSAL_SOFTMAX[name]
    analysis = _analysis(name, **sizes)
    assert analysis.points[row_max] == analysis.points[exponentials] == analysis.points[denominator] == CAUSAL_PAIRS
    assert analysis.ops[row_max] == {"max": CAUSAL_PAIRS}
    assert analysis.ops[denominator] == {"add": CAUSAL_PAIRS}


P, Y, U = 4, 2, 2  # ring devices; USP's ring and Ulysses degrees
RING_STATE = {  # cascade -> its sizes, and the (query, ring step) pairs whose block holds a key the query sees
    # contiguous chunks of C = N/P: device d's queries see the blocks of devices t <= d, d + 1 steps
    "ring-attention-causal": ({"devices": P}, B * H * (N // P) * P * (P + 1) // 2),
    # chunks d and 2P-1-d of C = N/2P: the second sees every pair (P steps), the first the pairs t <= d
    "ring-attention-zigzag": ({"devices": P}, B * H * (N // (2 * P)) * (P * P + P * (P + 1) // 2)),
    # stripes n = c*P + d: a query of stripe row c >= 1 sees a key of every stripe, row 0 the stripes t <= d
    "ring-attention-stripe": ({"devices": P}, B * H * (P * (P + 1) // 2 + (N // P - 1) * P * P)),
    # spans of U chunks of C = N/(YU): ring position y's queries see the spans x <= y, y + 1 steps
    "usp-attention": ({"ulysses": U, "ring": Y}, B * H * U * (N // (Y * U)) * Y * (Y + 1) // 2),
}


@pytest.mark.parametrize("name", RING_STATE)
def test_a_ring_step_holding_no_visible_key_carries_the_state_uncounted(name: str) -> None:
    """The online-softmax state updates (RM, PRM, SPD, RD; SPNV, RNV per value dim) were counted at every (query,
    step), B * H * N * P = 512 for the causal ring here, where only 320 steps hold a key the query sees."""
    sizes, steps = RING_STATE[name]
    analysis = _analysis(name, heads=H, kv_heads=G, **sizes)
    for einsum in ("RM", "PRM", "SPD", "RD"):
        assert analysis.points[einsum] == steps, einsum
    for einsum in ("SPNV", "RNV"):
        assert analysis.points[einsum] == steps * E, einsum


def _one_error(output: str) -> str:
    """The single error line of a refusal (no internal error)."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "internal error" not in output, output
    return lines[0]


FRACTION = "expected a fraction in [0, 1], got {} ({} is a share; a mask's density above 1 would count more points " \
           "than its space holds)"


@pytest.mark.parametrize("cascade, setting, value", [("flexprefill", "density", "1.5"),
                                                     ("minference-vertical-slash", "density", "2"),
                                                     ("duoattention-prefill", "retrieval_fraction", "1.25")])
def test_a_share_above_1_is_refused_naming_it(cli, cascade: str, setting: str, value: str) -> None:
    """flexprefill's QK counted 56448 points at density 1.5, 1.5x the causal 37632 (density 1), and
    minference-vertical-slash at density 2 the full square: a share of the causal points above 1."""
    line = _one_error(cli("analyze", cascade, "--set", f"{setting}={value}", expect=2).output)
    assert line == f"error: --set: {setting}: " + FRACTION.format(value, setting)


def test_density_1_keeps_every_causal_point(cli_json) -> None:
    """flexprefill's defaults (1 batch, 4 heads, 48 tokens, head dim 8) at density 1: QK counts the causal
    4 * 48 * 49 / 2 * 8 = 37632 MACs, the most a density may keep."""
    assert cli_json("analyze", "flexprefill", "--set", "density=1")["points"]["QK"] == 4 * 48 * 49 // 2 * 8


def test_a_cascade_file_with_a_density_above_1_is_refused(cli, tmp_path) -> None:
    text = (library.find("cascades", "minference-vertical-slash")).read_text()
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("density: 0.31", "density: 1.5"))
    for command in ("check", "analyze"):
        line = _one_error(cli(command, str(path), expect=2).output)
        assert line == f"error: {path}: params.density: " + FRACTION.format("1.5", "density")


CAUSAL = """\
name: c
params: {batch: 2, heads: 2, seq_len: 16, head_dim: 8, word_bytes: 2}
ranks: {B: batch, H: heads, P: seq_len, M: seq_len, E: head_dim, F: head_dim}
inputs: {Q: [B, H, P, E], K: [B, H, M, E], V: [B, H, M, F]}
masks: {MASK: "m <= p"}
einsums: |
  QK[b,h,m,p] = sum(e: Q[b,h,p,e] * K[b,h,m,e]) where MASK else -inf
  GM[b,h,p]   = max(m: QK[b,h,m,p]) where MASK
  SN[b,h,m,p] = exp(QK[b,h,m,p] - GM[b,h,p]) where MASK
  SD[b,h,p]   = sum(m: SN[b,h,m,p]) where MASK
  AV[b,h,p,f] = sum(m: SN[b,h,m,p] * V[b,h,m,f] / SD[b,h,p]) where MASK
outputs: [AV]
"""


@pytest.mark.parametrize("name, what", [("heads", "a parameter"), ("P", "a rank"), ("p", "an index variable"),
                                        ("QK", "a tensor"), ("K", "a tensor")])
@pytest.mark.parametrize("command", ["check", "analyze"])
def test_a_mask_named_like_another_name_is_refused(cli, tmp_path, command: str, name: str, what: str) -> None:
    """`masks: {heads: "m <= 3"}` then `where heads` was accepted: the mask shadowed the parameter (and `p`, `QK`
    likewise), as ops: already refuses."""
    path = tmp_path / "c.yaml"
    path.write_text(CAUSAL.replace("MASK", name))
    line = _one_error(cli(command, str(path), expect=2).output)
    assert line == f"error: {path}: masks.{name}: '{name}' is {what} of this cascade; give the mask a name of its own"


@pytest.mark.parametrize("word", ["inf", "and", "where"])
def test_a_mask_named_like_a_word_of_the_language_is_refused(cli, tmp_path, word: str) -> None:
    """`masks: {inf: ...}` then `where inf` read the number infinity, always true: the mask was lost and the
    causal attention counted dense."""
    path = tmp_path / "c.yaml"
    path.write_text(CAUSAL.replace("MASK", word))
    line = _one_error(cli("check", str(path), expect=2).output)
    assert line.startswith(f"error: {path}: masks.{word}: '{word}' is a word of the language (")


def test_a_mask_of_its_own_name_loads(cli, tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CAUSAL.replace("MASK", "causal"))
    assert cli("check", str(path)).output.startswith("ok")


def test_an_output_listed_twice_is_refused(cli, tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CAUSAL.replace("MASK", "causal").replace("outputs: [AV]", "outputs: [AV, AV]"))
    line = _one_error(cli("check", str(path), expect=2).output)
    assert line == f"error: {path}: outputs: 'AV' is listed twice (expected each output once)"


SHIFTED = """\
name: shifted
params: {batch: 1, heads: 2, seq_len: 8, head_dim: 2, word_bytes: 2}
ranks: {B: batch, H: heads, P: seq_len, M: seq_len, E: head_dim, F: head_dim}
inputs: {Q: [B, H, P, E], K: [B, H, M, E], V: [B, H, M, F]}
einsums: |
  QK[b,h,m,p]  = sum(e: Q[b,h,p,e] * K[b,h,m,e])
  SHIFT
  SD[b,h,p]    = sum(m: SN[b,h,m,p])
  SNV[b,h,p,f] = sum(m: SN[b,h,m,p] * V[b,h,m,f])
  AV[b,h,p,f]  = SNV[b,h,p,f] / SD[b,h,p]
outputs: [AV]
"""


@pytest.mark.parametrize("shift, passes", [
    # the first score as the shift: reading slot 0 of M needs its first element only, one pass
    ("GM[b,h,p] = max(m: QK[b,h,m,p])\n  X[b,h,p] = QK[b,h,0,p] + GM[b,h,p] * 0\n"
     "  SN[b,h,m,p] = exp(QK[b,h,m,p] - X[b,h,p])", 2),
    ("X[b,h,p] = QK[b,h,0,p]\n  SN[b,h,m,p] = exp(QK[b,h,m,p] - X[b,h,p])", 1),
    ("SN[b,h,m,p] = exp(QK[b,h,m,p] - QK[b,h,0,p])", 1),
    ("X[b,h,p] = QK[b,h,0,p]\n  Y[b,h,p] = X[b,h,p] * 2\n  SN[b,h,m,p] = exp(QK[b,h,m,p] - Y[b,h,p])", 1),
    # the row max: all of M reduced first, a second pass (attention-2pass)
    ("GM[b,h,p] = max(m: QK[b,h,m,p])\n  SN[b,h,m,p] = exp(QK[b,h,m,p] - GM[b,h,p])", 2),
], ids=["slot-and-max", "slot-in-a-tensor", "slot-read-directly", "slot-through-two-tensors", "max"])
def test_a_read_at_a_constant_slot_needs_a_prefix_of_the_rank_not_all_of_it(shift: str, passes: int) -> None:
    """/tmp/fz/casc/y/firstref.yaml (`X[b,h,p] = QK[b,h,0,p]`, then `exp(QK - X)`) gave M=2: X reads element 0 of
    M, a prefix of fixed size, and nothing reduced M, so SN runs in the traversal computing QK (FuseMax's pass:
    forced only by a value that needs all of the rank). Reading GM as well (the first case) needs all of M."""
    data = yaml.safe_load(SHIFTED.replace("SHIFT", shift))
    analysis = pass_analysis(cascade_from_dict(data, "shifted.yaml"))
    assert analysis.passes["M"] == passes
