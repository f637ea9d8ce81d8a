"""Composite ops declared in the cascade file (`ops:`, Gemma-2's soft cap through tanh) and index variables read as
values in Einsum bodies (ALiBi's bias SLOPE[h] * (m - p)): executed against numpy written here, counted by hand, and
the ways to write them wrong refused as exit 2 naming the YAML path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from archsim.cascade.analysis import analyze, dependency_dag
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.load import cascade_from_dict
from archsim.errors import SpecError

ROOT = Path(__file__).parents[1]
CAP = 50.0
# Three-pass attention whose scores are soft-capped (Gemma-2: cap * tanh(scores / cap)), tanh written as an op.
SOFTCAP = """\
name: softcap-attention
params: {batch: 1, heads: 2, seq_len: 8, head_dim: 4, cap: 50, word_bytes: 2}
ranks: {B: batch, H: heads, P: seq_len, M: seq_len, E: head_dim, F: head_dim}
inputs: {Q: [B, H, P, E], K: [B, H, M, E], V: [B, H, M, F]}
ops:
  tanh: "1 - 2 / (exp(2 * x) + 1)"
einsums: |
  QK[b,h,m,p] = sum(e: Q[b,h,p,e] * K[b,h,m,e])
  S[b,h,m,p]  = cap * tanh(QK[b,h,m,p] / cap)
  GM[b,h,p]   = max(m: S[b,h,m,p])
  SN[b,h,m,p] = exp(S[b,h,m,p] - GM[b,h,p])
  SD[b,h,p]   = sum(m: SN[b,h,m,p])
  NV[b,h,p,f] = sum(m: SN[b,h,m,p] * V[b,h,m,f])
  AV[b,h,p,f] = NV[b,h,p,f] / SD[b,h,p]
outputs: [AV]
"""


def _edit(text: str, *edits: tuple[str, str]) -> str:
    """`text` with each (old, new) replaced; every old must be there (an edit that misses would test nothing)."""
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


# The same three passes with ALiBi's bias on the scores instead of the cap.
ALIBI = _edit(SOFTCAP, ("softcap-attention", "alibi-attention"), (" cap: 50,", ""),
              ("V: [B, H, M, F]}", "V: [B, H, M, F], SLOPE: [H]}"), ('ops:\n  tanh: "1 - 2 / (exp(2 * x) + 1)"\n', ""),
              ("cap * tanh(QK[b,h,m,p] / cap)", "QK[b,h,m,p] + SLOPE[h] * (m - p)"))
# FuseMax's one-pass cascade (attention-1pass) with the bias where LM and SLN read the scores: m = m1*M0 + m0 is read
# inside the recurrence over m1.
ALIBI_1PASS = _edit((ROOT / "einsum" / "attention-1pass.yaml").read_text(),
                    ("name: attention-1pass", "name: alibi-1pass"), ("reference: attention\n", ""),
                    ("  V: [B, H, M, F]\n", "  V: [B, H, M, F]\n  SLOPE: [H]\n"),
                    ("max(m0: QK[b,h,m1,m0,p])", "max(m0: QK[b,h,m1,m0,p] + SLOPE[h] * (m - p))"),
                    ("exp(QK[b,h,m1,m0,p] - RM", "exp(QK[b,h,m1,m0,p] + SLOPE[h] * (m - p) - RM"))


def _softmax_av(scores: np.ndarray, v: np.ndarray) -> np.ndarray:
    """softmax over the keys (axis 2 of scores [b,h,m,p]) times V [b,h,m,f], as [b,h,p,f]."""
    weights = np.exp(scores - scores.max(axis=2, keepdims=True))
    return np.einsum("bhmp,bhmf->bhpf", weights / weights.sum(axis=2, keepdims=True), v)


def _scores(x: dict[str, np.ndarray]) -> np.ndarray:
    return np.einsum("bhpe,bhme->bhmp", x["Q"], x["K"])


def _alibi_bias(slope: np.ndarray, seq_len: int) -> np.ndarray:
    """SLOPE[h] * (m - p) as [1, h, m, p]."""
    m, p = np.arange(seq_len)[:, None], np.arange(seq_len)[None, :]
    return slope[None, :, None, None] * (m - p)[None, None]


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _one_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "internal error" not in output, output
    return lines[0]


def test_soft_capped_attention_matches_numpy() -> None:
    """tanh(x) = 1 - 2 / (exp(2x) + 1) exactly; the expansion differs from np.tanh by rounding alone."""
    binding = bind(cascade_from_dict(yaml.safe_load(SOFTCAP)))
    x = random_inputs(binding, 3)
    expected = _softmax_av(CAP * np.tanh(_scores(x) / CAP), x["V"])
    np.testing.assert_allclose(execute(binding, x)["AV"], expected, rtol=0, atol=1e-12)


def test_soft_cap_counts_the_expanded_ops() -> None:
    """S = cap * (1 - 2 / (exp(2 * (QK / cap)) + 1)) per point: mul 2 (cap *, 2 *), div 2 (QK / cap, 2 / ...),
    add 2 (1 -, + 1), exp 1, over B*H*M*P = 1*2*8*8 = 128 points; the other Einsums are those of 3-pass attention."""
    analysis = analyze(bind(cascade_from_dict(yaml.safe_load(SOFTCAP))))
    assert analysis.ops["S"] == {"add": 256, "div": 256, "exp": 128, "mul": 256}
    assert analysis.points["S"] == 128


def test_check_and_analyze_accept_a_file_with_ops(cli, cli_json, tmp_path: Path) -> None:
    path = _write(tmp_path, SOFTCAP)
    assert cli("check", path).output.startswith(f"ok  {path}: cascade softcap-attention, 7 Einsums")
    assert cli_json("analyze", path)["ops"]["S"] == {"add": 256, "div": 256, "exp": 128, "mul": 256}
    assert "AV shape (1, 2, 8, 4)" in cli("execute", path).output


def test_an_op_calls_the_ops_declared_above_it() -> None:
    """softcap(x) = 50 * tanh(x / 50) inlines tanh: the same seven ops per point as writing it out."""
    data = yaml.safe_load(SOFTCAP)
    data["ops"]["softcap"] = "50 * tanh(x / 50)"
    data["einsums"] = data["einsums"].replace("cap * tanh(QK[b,h,m,p] / cap)", "softcap(QK[b,h,m,p])")
    data["params"].pop("cap")
    binding = bind(cascade_from_dict(data))
    assert analyze(binding).ops["S"] == {"add": 256, "div": 256, "exp": 128, "mul": 256}
    x = random_inputs(binding, 1)
    expected = _softmax_av(CAP * np.tanh(_scores(x) / CAP), x["V"])
    np.testing.assert_allclose(execute(binding, x)["AV"], expected, rtol=0, atol=1e-12)


def test_an_op_reading_x_twice_takes_a_free_argument() -> None:
    """swish(x) = x * sigmoid(x) on a tensor read costs mul 1 and sigmoid 1 per point (5 points); the negation of a
    read costs nothing either. On X[p] / 2 its division would be computed and counted twice: refused."""
    text = """
name: t
params: {word_bytes: 2}
ranks: {P: 5}
inputs: {X: [P]}
ops: {swish: "x * sigmoid(x)"}
einsums: |
  Y[p] = swish(X[p])
  Z[p] = swish(-X[p])
outputs: [Y, Z]
"""
    binding = bind(cascade_from_dict(yaml.safe_load(text)))
    x = random_inputs(binding, 0)["X"]
    out = execute(binding, {"X": x})
    np.testing.assert_allclose(out["Y"], x / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(out["Z"], -x / (1 + np.exp(x)), rtol=1e-15)
    assert analyze(binding).ops["Y"] == {"mul": 5, "sigmoid": 5}
    with pytest.raises(SpecError, match=r"einsums\[0\] \(Y\): swish reads x 2 times, so its argument's ops would be "
                                        r"computed and counted 2 times"):
        cascade_from_dict(yaml.safe_load(text.replace("swish(X[p])", "swish(X[p] / 2)")))


OP_REFUSALS = {  # ops: entry -> what the one error line says after "ops.NAME: "
    "clashes-with-a-unary-op": ('exp: "x"', "ops.exp: 'exp' is an op already"),
    "clashes-with-a-map-op": ('max: "x"', "ops.max: 'max' is an op already"),
    "clashes-with-abs": ('abs: "max(x, -x)"', "ops.abs: 'abs' is an op already"),
    "clashes-with-a-param": ('cap: "x"', "ops.cap: 'cap' is a parameter of this cascade"),
    "clashes-with-a-rank": ('M: "x"', "ops.M: 'M' is a rank of this cascade"),
    "clashes-with-an-index": ('m: "x"', "ops.m: 'm' is an index variable of this cascade"),
    "clashes-with-an-input": ('Q: "x"', "ops.Q: 'Q' is a tensor of this cascade"),
    "clashes-with-a-written-tensor": ('GM: "x"', "ops.GM: 'GM' is a tensor of this cascade"),
    "not-an-identifier": ('soft-cap: "x"', "ops.soft-cap: an op's name is an identifier"),
    "the-variable": ('x: "x"', "ops.x: 'x' is a word of the language"),
    "a-keyword": ('where: "x"', "ops.where: 'where' is a word of the language"),
    "another-name": ('soft: "x * y"', "ops.soft: unknown name 'y' (an op is an expression of x alone"),
    "a-param": ('soft: "x * cap"', "ops.soft: unknown name 'cap' (an op is an expression of x alone"),
    "a-tensor": ('soft: "x * Q[0,0,0,0]"', "ops.soft: an op reads x alone, not the tensor Q[0,0,0,0]"),
    "unknown-op": ('soft: "expo(x)"', "ops.soft: unknown op 'expo' (known: "),
    "recursion": ('soft: "1 + soft(x)"', "ops.soft: op 'soft' is not declared above this one: an op calls only the "
                                         "ops declared above it, so none recurses"),
    "declared-below": ('soft: "hard(x)"\n  hard: "x"', "ops.soft: op 'hard' is not declared above this one"),
    "a-number": ("soft: 2", "ops.soft: expected an expression of x as a string"),
    "a-list": ("soft: [x]", "ops.soft: expected an expression of x as a string"),
    "a-predicate-op": ('soft: "x > 0 and x < 1"', "ops.soft: 'and' belongs in mask predicates"),
    "a-reduction": ('soft: "sum(e: x)"', "ops.soft: an op maps x; it reduces nothing (sum(...: ...))"),
    "malformed": ('soft: "x +"', "ops.soft: expected a value but found 'end of text'"),
    "two-arguments": ('soft: "tanh(x, 1)"', "ops.soft: tanh takes 1 argument(s), got 2"),
}


@pytest.mark.parametrize("entry, says", OP_REFUSALS.values(), ids=OP_REFUSALS.keys())
@pytest.mark.parametrize("command", ["check", "analyze"])
def test_a_bad_op_is_exit_2_naming_it(cli, tmp_path: Path, command: str, entry: str, says: str) -> None:
    path = _write(tmp_path, SOFTCAP.replace('  tanh: "1 - 2 / (exp(2 * x) + 1)"\n',
                                            f'  tanh: "1 - 2 / (exp(2 * x) + 1)"\n  {entry}\n'))
    line = _one_error(cli(command, path, expect=2).output)
    assert line.startswith(f"error: {path}: {says}"), line


def test_ops_that_must_be_a_mapping(cli, tmp_path: Path) -> None:
    path = _write(tmp_path, SOFTCAP.replace('ops:\n  tanh: "1 - 2 / (exp(2 * x) + 1)"', 'ops: ["tanh"]'))
    assert _one_error(cli("check", path, expect=2).output) == f"error: {path}: ops: expected a mapping, got list"


def test_a_mask_predicate_calls_no_composite_op(cli, tmp_path: Path) -> None:
    """Predicates are counted by interval arithmetic over abs, min and max: a composite op there is refused."""
    path = _write(tmp_path, SOFTCAP.replace("sum(e: Q[b,h,p,e] * K[b,h,m,e])",
                                            "sum(e: Q[b,h,p,e] * K[b,h,m,e]) where tanh(m) < p"))
    line = _one_error(cli("check", path, expect=2).output)
    assert line == (f"error: {path}: einsums[0] (QK): 'tanh' is a composite op (ops.tanh); a mask predicate calls only "
                    "abs, min and max, the functions the interval arithmetic counting masked points knows")


def _balanced(levels: int) -> str:
    """A sum of 2^levels ones as a balanced tree: 2^(levels+1) - 1 nodes, `levels` + 1 deep."""
    return "1" if levels == 0 else f"({_balanced(levels - 1)} + {_balanced(levels - 1)})"


def test_ops_expanding_into_one_another_beyond_the_limit_are_refused(cli, tmp_path: Path) -> None:
    """big = x + (2047 nodes) has 2049 nodes; twice(x) = big(big(x)) puts one inside the other for 2 * 2049 - 1 =
    4097, over MAX_NODES (4096), while 13 deep only."""
    ops = f'  big: "x + {_balanced(10)}"\n  twice: "big(big(x))"\n'
    path = _write(tmp_path, SOFTCAP.replace("ops:\n", f"ops:\n{ops}"))
    line = _one_error(cli("check", path, expect=2).output)
    assert line == (f"error: {path}: ops.twice: with its composite ops (ops:) expanded, the expression is more than "
                    "4096 operators and operands")


def test_alibi_attention_matches_numpy_and_counts_the_bias() -> None:
    """S = QK + SLOPE[h] * (m - p): add 2 (the +, the m - p) and mul 1 per point of B*H*M*P = 128; reading m and p is
    free. The pass analysis (2 over M) and the dependency DAG (S reads QK and SLOPE) see tensors only."""
    cascade = cascade_from_dict(yaml.safe_load(ALIBI))
    binding = bind(cascade)
    x = random_inputs(binding, 5)
    expected = _softmax_av(_scores(x) + _alibi_bias(x["SLOPE"], 8), x["V"])
    np.testing.assert_allclose(execute(binding, x)["AV"], expected, rtol=0, atol=1e-12)
    analysis = analyze(binding)
    assert analysis.ops["S"] == {"add": 256, "mul": 128}
    assert analysis.passes.passes["M"] == 2
    assert set(dependency_dag(cascade).predecessors("S")) == {"QK", "SLOPE"}


def test_alibi_in_the_one_pass_cascade_reads_m_across_its_tiles() -> None:
    """m = m1 * M0 + m0 inside the recurrence over m1 (M0 = 4 of 16 keys). LM per point: max 1, add 2, mul 1; SLN:
    exp 1, add 3 (the two of the bias, the - RM), mul 1; over B*H*M*P = 2*2*16*16 = 1024 points."""
    binding = bind(cascade_from_dict(yaml.safe_load(ALIBI_1PASS)))
    x = random_inputs(binding, 2)
    expected = _softmax_av(_scores(x) + _alibi_bias(x["SLOPE"], 16), x["V"])
    np.testing.assert_allclose(execute(binding, x)["AV"], expected, rtol=0, atol=1e-12)
    ops = analyze(binding).ops
    assert ops["LM"] == {"add": 2048, "max": 1024, "mul": 1024}
    assert ops["SLN"] == {"add": 3072, "exp": 1024, "mul": 1024}


def test_an_index_read_may_be_all_a_reduction_has_of_its_rank() -> None:
    """sum(m: A[p] * m) = A[p] * (0 + 1 + ... + 5) = 15 A[p]: one mac per point of P*M = 4*6."""
    text = """
name: t
params: {word_bytes: 2}
ranks: {P: 4, M: 6}
inputs: {A: [P]}
einsums: |
  R[p] = sum(m: A[p] * m)
outputs: [R]
"""
    binding = bind(cascade_from_dict(yaml.safe_load(text)))
    a = random_inputs(binding, 0)["A"]
    np.testing.assert_allclose(execute(binding, {"A": a})["R"], 15 * a, rtol=1e-15)
    assert analyze(binding).ops["R"] == {"mac": 24}


def test_a_body_reads_only_the_indices_its_einsum_iterates(cli, tmp_path: Path) -> None:
    path = _write(tmp_path, ALIBI.replace("AV[b,h,p,f] = NV[b,h,p,f] / SD[b,h,p]",
                                          "AV[b,h,p,f] = NV[b,h,p,f] / SD[b,h,p] * m"))
    line = _one_error(cli("check", path, expect=2).output)
    assert line == f"error: {path}: einsums[6] (AV): body reads index m, which this Einsum does not iterate"


def test_alibi_runs_on_fusemax_with_the_bias_split_between_its_arrays(cli, cli_json, tmp_path: Path) -> None:
    """fusemax's 2-D array has no mul (mac, add, max, exp, cmp), so the library mapping refuses the one-pass ALiBi
    cascade. Split as SLOPE[h] * m and SLOPE[h] * p on the 1-D array, the 2-D array adds: LM is max + 2 adds, three
    times attention-1pass's LM (max alone) in cycles, its ops 3 x B*H*M*P = 3 * 64*12*1024*1024. SP and SM, computed
    once and read for every batch element, are kept in the global buffer: kept nowhere, the point is infeasible."""
    alibi = _write(tmp_path, ALIBI_1PASS, "alibi-1pass.yaml")
    line = _one_error(cli("run", "--mapping", "fusemax", "--cascade", alibi, "--workload", "bert-base",
                          expect=2).output)
    assert line.endswith("mappings/fusemax.yaml: groups[0].binding.LM: unit array2d has no mul (it has mac, add, max, "
                         "exp, cmp)"), line
    split = _write(tmp_path, _edit(ALIBI_1PASS, ("einsums: |\n", "einsums: |\n  SP[h,p] = SLOPE[h] * p\n"),
                                   ("  LM[b,h,m1,p]", "  SM[h,m1,m0] = SLOPE[h] * m\n  LM[b,h,m1,p]"),
                                   ("SLOPE[h] * (m - p)", "SM[h,m1,m0] - SP[h,p]")), "alibi-split.yaml")
    mapping = _edit((ROOT / "mappings" / "fusemax.yaml").read_text(), ("name: fusemax", "name: fusemax-alibi"),
                    ("cascade: attention-1pass", f"cascade: {split}"), ("array1d: [RM,", "array1d: [SP, SM, RM,"),
                    ("overlap: max(", "overlap: SP + SM + max("),
                    ("keep: {GlobalBuffer: [", "keep: {GlobalBuffer: [SP, SM, "))  # read for every b: kept (s36)
    ours = {e["name"]: e for e in cli_json("run", "--mapping", _write(tmp_path, mapping, "m.yaml"),
                                           "--workload", "bert-base")["einsums"]}
    library = {e["name"]: e for e in cli_json("run", "--mapping", "fusemax", "--workload", "bert-base")["einsums"]}
    assert ours["LM"]["ops"] == {"add": 2 * 64 * 12 * 1024 * 1024, "max": 64 * 12 * 1024 * 1024}
    assert ours["LM"]["compute_cycles"] == 3 * library["LM"]["compute_cycles"]
    assert ours["SP"]["ops"] == {"mul": 12 * 1024}

