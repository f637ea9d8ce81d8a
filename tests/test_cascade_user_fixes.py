"""Cascades written as a user would (found by fuzzing): a `reference:` the cascade's tensors cannot be, a multi-query
cascade under a multi-query workload, a misspelled mask name. Each mistake is exit 2 with one line naming the file
and the field; a sound cascade runs."""

from __future__ import annotations

from pathlib import Path

import pytest

# Two-pass softmax attention, the way a user writes it; its layouts, last Einsum and reference are filled in per test.
LAZY = """\
name: lazy-2pass
params: {{batch: 2, heads: 2, seq_len: 16, head_dim: 8, word_bytes: 2}}
ranks: {{B: batch, H: heads, P: seq_len, M: seq_len, E: head_dim, F: head_dim}}
inputs:
  Q: {q}
  K: {k}
  V: {v}{more_inputs}
einsums: |
  QK[b,h,m,p] = sum(e: {q_read} * {k_read})
  GM[b,h,p]   = max(m: QK[b,h,m,p])
  SN[b,h,m,p] = exp(QK[b,h,m,p] - GM[b,h,p])
  SD[b,h,p]   = sum(m: SN[b,h,m,p])
  NV[b,h,p,f] = sum(m: SN[b,h,m,p] * {v_read})
  {out}
outputs: [{out_name}]
{ref}"""
NORMALIZE = "NV[b,h,p,f] / SD[b,h,p]"
MHA = {"q": "[B, H, P, E]", "k": "[B, H, M, E]", "v": "[B, H, M, F]", "q_read": "Q[b,h,p,e]",
       "k_read": "K[b,h,m,e]", "v_read": "V[b,h,m,f]", "more_inputs": "", "out": f"AV[b,h,p,f] = {NORMALIZE}",
       "out_name": "AV", "ref": "reference: attention\n"}
MQA = {**MHA, "k": "[B, M, E]", "v": "[B, M, F]", "k_read": "K[b,m,e]", "v_read": "V[b,m,f]"}
EXPECTS = "expects Q[B,H,P,E] K[B,H,M,E] V[B,H,M,F] -> AV[B,H,P,F]; the cascade has "


def _write(tmp_path: Path, **fields: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(LAZY.format(**fields))
    return str(path)


def _one_error(output: str) -> str:
    """The single error line of a refusal (no internal error)."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "internal error" not in output, output
    return lines[0]


MISFITS = {  # cascade fields -> what the refusal says after "reference: reference ..."
    "output-named-O": ({**MHA, "out": f"O[b,h,p,f] = {NORMALIZE}", "out_name": "O"},
                       f"attention {EXPECTS}Q[B,H,P,E] K[B,H,M,E] V[B,H,M,F] -> O[B,H,P,F]: no output AV"),
    "q-transposed": ({**MHA, "q": "[B, H, E, P]", "q_read": "Q[b,h,e,p]"},
                     f"attention {EXPECTS}Q[B,H,E,P] K[B,H,M,E] V[B,H,M,F] -> AV[B,H,P,F]: the reference's E is rank "
                     "P in Q but rank E in K"),
    "output-transposed": ({**MHA, "out": f"AV[b,h,f,p] = {NORMALIZE}"},
                          f"attention {EXPECTS}Q[B,H,P,E] K[B,H,M,E] V[B,H,M,F] -> AV[B,H,F,P]: the reference's P is "
                          "rank P in Q but rank F in AV"),
    "mqa-on-attention": (MQA, f"attention {EXPECTS}Q[B,H,P,E] K[B,M,E] V[B,M,F] -> AV[B,H,P,F]: K has 3 ranks, the "
                              "reference's 4"),
    "mqa-on-attention-gqa": ({**MQA, "ref": "reference: attention_gqa\n"},
                             "attention_gqa expects Q[B,H,P,E] K[B,G,M,E] V[B,G,M,F] -> AV[B,H,P,F]; the cascade has "
                             "Q[B,H,P,E] K[B,M,E] V[B,M,F] -> AV[B,H,P,F]: K has 3 ranks, the reference's 4"),
    "input-not-read": ({**MHA, "more_inputs": "\n  S: [B, H, P]", "out": f"AV[b,h,p,f] = S[b,h,p] * {NORMALIZE}"},
                       "-> AV[B,H,P,F]; the cascade has Q[B,H,P,E] K[B,H,M,E] V[B,H,M,F] S[B,H,P] -> AV[B,H,P,F]: an "
                       "input S the reference does not read"),
    "param-not-given": ({**MHA, "ref": "reference: attention_sliding_window\n"},
                        "-> AV[B,H,P,F] with params window, sinks; the cascade has Q[B,H,P,E] K[B,H,M,E] V[B,H,M,F] "
                        "-> AV[B,H,P,F]: no param window"),
}


@pytest.mark.parametrize("fields, says", MISFITS.values(), ids=MISFITS.keys())
@pytest.mark.parametrize("command", [("check",), ("execute", "--check")], ids=["check", "execute"])
def test_a_reference_the_cascade_cannot_be_is_refused_when_it_loads(cli, tmp_path: Path, command, fields,
                                                                    says) -> None:
    """execute --check ran the reference on whatever the cascade declared: a missing output was KeyError 'AV', a
    transposed Q or K/V without a head rank a numpy ValueError (internal errors), a transposed output was reshaped
    and reported as a FAIL (error 3.35); check said ok to all of them."""
    path = _write(tmp_path, **fields)
    line = _one_error(cli(command[0], path, *command[1:], expect=2).output)
    assert line.startswith(f"error: {path}: reference: reference ") and line.endswith(says), line


def test_a_partitioned_layout_and_an_output_the_reference_lacks_are_compared_as_far_as_they_go(cli,
                                                                                             tmp_path: Path) -> None:
    """Q declared over the parts of P (P1, P0) and the output written over them are the reference's [B,H,P,E] and
    [B,H,P,F] (p = p1*P0 + p0): compared, not refused; an output the reference does not give is said uncompared."""
    path = tmp_path / "c.yaml"
    path.write_text(LAZY.format(**{**MHA, "q": "[B, H, P1, P0, E]", "out": f"AV[b,h,p1,p0,f] = {NORMALIZE}",
                                   "out_name": "AV, SD"})
                    .replace("head_dim: 8,", "head_dim: 8, tile: 4,").replace("F: head_dim}", "F: head_dim, P0: tile}")
                    .replace("inputs:", "partition: {P: [P1, P0]}\ninputs:"))
    out = cli("execute", str(path), "--check").output
    assert "AV vs reference attention: max abs error" in out and out.endswith("ok\n"), out
    assert "SD: not compared (reference attention gives AV)" in out


def test_sizes_a_reference_reads_as_one_are_checked_before_it_runs(cli) -> None:
    """minference-a-shape's reference reads as many keys as queries; `--set M=32` beside P=48 was a numpy broadcast
    error (internal) after the cascade had run."""
    line = _one_error(cli("execute", "minference-a-shape", "--check", "--set", "M=32", expect=2).output)
    assert line.endswith("minference-a-shape.yaml: reference: reference minference_a_shape expects Q[B,H,P,E] "
                         "K[B,G,P,E] V[B,G,P,F] -> AV[B,H,P,F] with params sinks, window: its P is 48 in Q but 32 in "
                         "K at B=1 H=4 G=2 P=48 M=32 E=8 F=8 R=2"), line


def test_query_heads_a_reference_cannot_group_are_refused_before_it_runs(cli) -> None:
    """Ulysses' reference groups H query heads onto G K/V heads; `--set H=5` beside G=2 was a numpy error. It is
    refused at binding now: HL and the Einsums QH and AV read heads, which H set alone would leave at 4."""
    line = _one_error(cli("execute", "ulysses-attention", "--check", "--set", "H=5", expect=2).output)
    assert line.startswith("error: --set: H: H is sized by heads (ranks.H: heads), which ranks.HL, einsum QH, einsum "
                           "AV also read: H=5 would leave them reading heads=4 (from "), line
    assert line.endswith("(from cascade ulysses-attention); set heads instead"), line


def test_vertical_slash_estimates_from_every_query_when_there_are_fewer_than_last_q(cli) -> None:
    """The cascade's estimate mask takes all queries when seq_len < last_q; the reference indexed past them (an
    internal IndexError)."""
    assert cli("execute", "minference-vertical-slash", "--check", "--set", "seq_len=3").output.endswith("ok\n")


MQA_CASCADE = {**MQA, "ref": ""}


def test_a_cascade_without_a_kv_head_rank_runs_a_multi_query_workload(cli, cli_json, tmp_path: Path) -> None:
    """K and V declared without a head rank are one K/V head every query head reads: multi-query attention, which
    `kv_heads=1` asks for. It was refused as having 'one K/V head per query head'. Its scores are masked causally:
    llama3-8b is a decoder, whose guard refuses unmasked self-attention (tests/test_cascade_lang_s51.py)."""
    path = _write(tmp_path, **MQA_CASCADE)
    Path(path).write_text(Path(path).read_text().replace("K[b,m,e])\n", "K[b,m,e]) where m <= p else -inf\n"))
    analysis = cli_json("analyze", path, "--workload", "llama3-8b", "--set", "kv_heads=1")
    assert analysis["ranks"]["H"] == 32 and analysis["tensors"]["K"]["ranks"] == ["B", "M", "E"]


@pytest.mark.parametrize("workload, form", [("llama3-8b", "8 K/V heads for 32 query heads (grouped-query)"),
                                            ("bert-base", "12 K/V heads for 12 query heads (multi-head)")])
def test_a_multi_query_cascade_says_so_when_it_refuses_another_workload(cli, tmp_path: Path, workload, form) -> None:
    """The refusal said the cascade 'has one K/V head per query head', which it has not; and under a multi-head
    workload it was run, counting the K/V bytes of one head where the model has one per query head."""
    line = _one_error(cli("analyze", _write(tmp_path, **MQA_CASCADE), "--workload", workload, expect=2).output)
    assert line.endswith(f"workloads/{workload}.yaml: params.kv_heads: {form}, but cascade lazy-2pass has one K/V "
                         "head that every query head reads (its K and V have no head rank: multi-query, kv_heads 1); "
                         "use a grouped-query cascade (e.g. attention-1pass-causal-gqa)"), line


def test_a_multi_head_cascade_refuses_a_multi_query_workload_as_such(cli) -> None:
    line = _one_error(cli("analyze", "attention-3pass", "--workload", "llama3-8b", "--set", "kv_heads=1",
                          expect=2).output)
    assert line == ("error: --set: kv_heads: 1 K/V heads for 32 query heads (multi-query), but cascade attention-3pass "
                    "has one K/V head per query head; use a grouped-query cascade (e.g. attention-1pass-causal-gqa)")


def test_a_misspelled_mask_name_lists_the_masks_and_the_closest(cli, tmp_path: Path) -> None:
    text = LAZY.format(**{**MHA, "out": f"AV[b,h,p,f] = {NORMALIZE}", "ref": ""})
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("einsums:", "masks: {causal: 'm <= p', window: 'p - m < 4'}\neinsums:")
                    .replace("sum(e: Q[b,h,p,e] * K[b,h,m,e])", "sum(e: Q[b,h,p,e] * K[b,h,m,e]) where causl"))
    line = _one_error(cli("check", str(path), expect=2).output)
    assert line == (f"error: {path}: einsums[0] (QK): unknown name 'causl' (expected a mask (masks: causal, window) or "
                    "an index variable, parameter or rank size); did you mean 'causal'?")


def test_a_cascade_without_keys_is_not_refused_for_a_grouped_query_workload(cli) -> None:
    """The output projection reads heads x head_dim and no key: it was refused for Llama-3-8B's 8 K/V heads."""
    assert "cascade output-projection" in cli("analyze", "output-projection", "--workload", "llama3-8b").output


def test_check_tells_to_edit_a_default_it_has_no_set_for(cli, tmp_path) -> None:
    """check has no --set: a default the partition does not divide says to edit params (run and analyze keep
    their --set)."""
    path = tmp_path / "c.yaml"
    path.write_text("""name: a
params: {n: 18, word_bytes: 2}
ranks: {M: n, M0: 4}
partition: {M: [M1, M0]}
inputs: {A: [M]}
einsums: |
  X[m] = A[m] * 2
outputs: [X]
""")
    out = cli("check", str(path), expect=2).output
    assert "edit params.n" in out and "--set" not in out, out


def test_a_multi_query_cascade_refuses_a_workload_that_leaves_kv_heads_out(cli, tmp_path: Path) -> None:
    """kv_heads left out means one K/V head per query head: BERT-base without the line ran the multi-query cascade,
    counting one K/V head where the model has 12."""
    text = (Path(__file__).resolve().parents[1] / "workloads" / "bert-base.yaml").read_text()
    workload = tmp_path / "bert-no-kv.yaml"
    workload.write_text("\n".join(line for line in text.splitlines() if "kv_heads" not in line) + "\n")
    assert "kv_heads" not in workload.read_text()
    line = _one_error(cli("analyze", _write(tmp_path, **MQA_CASCADE), "--workload", str(workload), expect=2).output)
    assert line.endswith(
        "bert-no-kv.yaml: params.heads: 12 K/V heads for 12 query heads (multi-head), but cascade lazy-2pass has one "
        "K/V head that every query head reads (its K and V have no head rank: multi-query, kv_heads 1); use a "
        "grouped-query cascade (e.g. attention-1pass-causal-gqa)"), line


def test_a_multi_query_cascade_checks_against_the_multi_query_reference(cli, tmp_path: Path) -> None:
    """No reference took K/V without a head rank, so a multi-query cascade could not be checked at all."""
    assert cli("execute", _write(tmp_path, **{**MQA, "ref": "reference: attention_mqa\n"}), "--check").output \
        .strip().endswith("ok")
    causal = cli("execute", _write(tmp_path, **{**MQA, "ref": "reference: attention_causal_mqa\n"}), "--check",
                 expect=1).output  # the cascade is not causal: the reference tells them apart
    assert "vs reference attention_causal_mqa: max abs error" in causal and not causal.strip().endswith("ok")


def test_chunked_prefill_checks_against_the_bottom_right_causal_reference(cli, tmp_path: Path) -> None:
    """The last 6 of 16 positions as queries over all 16 keys (a prefill chunk): query p sees keys m <= p + 10.
    attention_causal aligns the mask top-left, so such a cascade could not be checked."""
    text = LAZY.format(**{**MHA, "ref": "reference: attention_causal_bottom_right\n"})
    text = (text.replace("params: {batch: 2,", "params: {q_len: 6, batch: 2,")
            .replace("P: seq_len", "P: q_len")
            .replace("QK[b,h,m,p] = sum(e: Q[b,h,p,e] * K[b,h,m,e])",
                     "QK[b,h,m,p] = sum(e: Q[b,h,p,e] * K[b,h,m,e]) where m <= p + seq_len - q_len else -inf"))
    path = tmp_path / "chunk.yaml"
    path.write_text(text)
    assert cli("execute", str(path), "--check").output.strip().endswith("ok")
    path.write_text(text.replace("attention_causal_bottom_right", "attention_causal"))
    cli("execute", str(path), "--check", expect=1)  # top-left alignment is another mask
