"""Bad cascades get exit code 2 and one line naming the file, the Einsum (or YAML path) and what was
expected; never a traceback. Each case is a small edit of a good cascade."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """\
name: tiny-attention
params: {seq_len: 8, head_dim: 4, word_bytes: 2}
ranks: {P: seq_len, M: seq_len, E: head_dim, F: head_dim}
inputs: {Q: [P, E], K: [M, E], V: [M, F]}
einsums: |
  QK[m,p] = sum(e: Q[p,e] * K[m,e])
  GM[p]   = max(m: QK[m,p])
  SN[m,p] = exp(QK[m,p] - GM[p])
  SD[p]   = sum(m: SN[m,p])
  SNV[p,f] = sum(m: SN[m,p] * V[m,f])
  AV[p,f] = SNV[p,f] / SD[p]
outputs: [AV]
"""

CASES = {
    # name: (old text, new text, fragments the message must contain)
    "unknown rank": ("inputs: {Q: [P, E]", "inputs: {Q: [P, X]", ["inputs.Q", "unknown rank 'X'"]),
    "unknown index": ("GM[p]   = max(m: QK[m,p])", "GM[z]   = max(m: QK[m,p])",
                      ["einsums[1] (GM)", "unknown rank for index 'z'"]),
    "shape mismatch": ("Q[p,e] * K[m,e]", "Q[p,e] * K[e,m]",
                       ["einsums[0] (QK)", "shape mismatch in K[e,m]", "position 1 of K is rank M",
                        "index e ranges over rank E"]),
    "arity mismatch": ("SD[p]   = sum(m: SN[m,p])", "SD[p]   = sum(m: SN[m])",
                       ["einsums[3] (SD)", "SN[m] has 1 indices but SN has ranks [M, P]"]),
    "reduction over a missing rank": ("GM[p]   = max(m: QK[m,p])", "GM[p]   = max(m, f: QK[m,p])",
                                      ["einsums[1] (GM)", "reduces over f", "no operand"]),
    "unknown op": ("exp(QK[m,p] - GM[p])", "expo(QK[m,p] - GM[p])",
                   ["einsums[2] (SN)", "unknown op 'expo'", "known:", "exp"]),
    "malformed YAML": ("inputs: {Q: [P, E], K: [M, E], V: [M, F]}", "inputs: {Q: [P, E], K: [M, E",
                       ["line", "malformed YAML"]),
    "syntax error": ("SD[p]   = sum(m: SN[m,p])", "SD[p]   = sum(m: SN[m,p]",
                     ["einsums[3]", "expected ')'", "column"]),
    "use before definition": ("SN[m,p] = exp(QK[m,p] - GM[p])", "SN[m,p] = exp(QK[m,p] - SD[p])",
                              ["einsums[2] (SN)", "SD is used before the Einsum that writes it"]),
    "unbound index": ("SD[p]   = sum(m: SN[m,p])", "SD[p]   = SN[m,p]",
                      ["einsums[3] (SD)", "index m is neither in the output nor reduced"]),
}


def _archsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archsim", *args], capture_output=True, text=True, timeout=120)


def test_the_good_cascade_is_good(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = _archsim("check", str(path))
    assert result.returncode == 0, result.stderr
    assert "passes M=2" in result.stdout


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cascade(tmp_path: Path, case: str) -> None:
    old, new, fragments = CASES[case]
    assert old in GOOD
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(old, new))
    for verb in (("check",), ("analyze",), ("execute", "--check")):
        result = _archsim(*verb, str(path))
        assert result.returncode == 2, (verb, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(path) in lines[0]
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])


def test_bad_set_and_unknown_names(cli) -> None:
    result = cli("analyze", "attention-3pass", "--set", "seq_len", expect=2)
    assert "expected NAME=NUMBER" in result.output
    result = cli("analyze", "attention-3pass", "--set", "nonsense=3", expect=2)
    assert "not a parameter or rank of attention-3pass" in result.output
    result = cli("analyze", "no-such-cascade", expect=2)
    assert "not a cascade in the library" in result.output
    sizes = [arg for name in ("batch=2", "heads=2", "head_dim=8", "word_bytes=2", "tile_kv=4")
             for arg in ("--set", name)]
    result = cli("analyze", "attention-1pass", "--set", "seq_len=10", *sizes, expect=2)
    assert "partition.M" in result.output and "not divisible" in result.output


def test_a_spec_error_survives_being_rebuilt_from_its_args() -> None:
    """SimPy re-raises a failed process's exception as type(e)(*e.args): a SpecError raised inside a serving run
    must come out as itself (exit 2), not as a TypeError from its constructor."""
    import pickle

    from archsim.errors import SpecError

    error = SpecError("w.yaml", "params.heads", "expected a number,\ngot True")
    for rebuilt in (type(error)(*error.args), pickle.loads(pickle.dumps(error))):
        assert isinstance(rebuilt, SpecError) and str(rebuilt) == str(error)
        assert str(rebuilt) == "w.yaml: params.heads: expected a number, / got True"


def test_an_error_inside_a_serving_run_exits_2_with_its_message(cli, tmp_path: Path) -> None:
    """An fp32 model on an H100 xPU: the GPU has no fp32 tensor-core rate, found while serving (the device's first
    GEMM)."""
    workload = tmp_path / "fp32.yaml"
    workload.write_text(
        "name: fp32-model\ndescription: d\nsource: s\nblock: llama\nparams: {batch: 1, seq_len: 128, hidden: 1024, "
        "heads: 8, kv_heads: 8, head_dim: 128, ffn_dim: 2816, layers: 2, vocab: 32000, word_bytes: 4}\n")
    result = cli("simulate", "--system", "duplex", "--workload", str(workload), "--rate", "4", "--requests", "3",
                 expect=2)
    assert f"{workload}: params.word_bytes: gpu devices.xpu of " in result.output  # the file holding the width
    assert "GPU h100-sxm5 has no tensor-core rate for 4-byte words" in result.output
    assert "expected a workload of 1- or 2-byte words" in result.output  # not "4-byte at fp32", which no preset has
