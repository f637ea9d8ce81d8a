"""Held-out cascades of an audit (session 51) that the language accepted and counted, or refused for the wrong reason.

1. Dead parts: an Einsum whose tensor no Einsum on the way to an output reads and that is no output (its work was
   counted by `analyze`), an input no Einsum reads (its bytes entered `bytes.input`), a mask no `where` names: each
   is exit 2 naming it, as an unread parameter already is (README "The cascade language").
2. A mask predicate is a condition: a comparison, or and/or/not of comparisons. `masks: {plm: "p - m"}` (a
   forgotten `>= 0`) was evaluated for truthiness and kept every off-diagonal pair; `where p` (a bare index) and
   `where seq_len` (a bare parameter) were predicates too.
3. A name YAML 1.1 reads as a boolean (`NO`, `yes`, `on`, `Off`) where a name goes (a mapping's key, a list's item)
   is refused when the file is read, saying so and to quote it; it had become a tensor named False, or been refused
   as "'False' is not written by any Einsum" or "expected a list of Einsum names".
4. The decoder guard is decided by structure: an unmasked self-attention cascade that names no reference
   (Gemma-2's soft cap) ran on a decoder workload silently, while cross-attention (keys sized by kv_len) was
   refused because it names the reference `attention`.
5. The decoder guard is decided by the mask's values: it took any comparison reading both tokens for a causal mask,
   so `p - m < 4` (a window without the causal bound), `m < p + 1000000` and `m >= p` ran a decoder counting the keys
   after each query; an Einsum over a query and a key now passes where its mask keeps no key after its query.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library, point
from archsim.cascade.analysis import TOKENS, token_ranks
from archsim.cascade.ir import Cascade
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.references import CAUSAL_FORMS
from archsim.dse.spec import GPU_ROLE_SIZES
from archsim.errors import SpecError
from archsim.point import check_causal_form
from archsim.spec_files import parse_yaml

BASE = """\
name: base
params: {batch: 1, heads: 2, seq_len: 8, head_dim: 4, word_bytes: 2}
ranks: {B: batch, H: heads, P: seq_len, M: seq_len, E: head_dim, F: head_dim}
inputs: {Q: [B, H, P, E], K: [B, H, M, E], V: [B, H, M, F]}
einsums: |
  QK[b,h,m,p] = sum(e: Q[b,h,p,e] * K[b,h,m,e])
  GM[b,h,p]   = max(m: QK[b,h,m,p])
  SN[b,h,m,p] = exp(QK[b,h,m,p] - GM[b,h,p])
  SD[b,h,p]   = sum(m: SN[b,h,m,p])
  A[b,h,m,p]  = SN[b,h,m,p] / SD[b,h,p]
  AV[b,h,p,f] = sum(m: A[b,h,m,p] * V[b,h,m,f])
outputs: [AV]
"""

SOFTCAP = """\
name: softcap-1pass
description: Gemma-2 soft-capped online-softmax attention
params: {batch: 1, heads: 2, seq_len: 8, head_dim: 4, tile_kv: 4, cap: 5, word_bytes: 2}
ranks: {B: batch, H: heads, P: seq_len, M: seq_len, E: head_dim, F: head_dim, M0: tile_kv}
partition: {M: [M1, M0]}
inputs: {Q: [B, H, P, E], K: [B, H, M, E], V: [B, H, M, F]}
ops: {tanh: "1 - 2 / (exp(2 * x) + 1)"}
init: {RM: -1.7976931348623157e+308, RD: 0, RNV: 0}
einsums: |
  QQ[b,h,m1,m0,p]  = sum(e: Q[b,h,p,e] * K[b,h,m1,m0,e])
  QK[b,h,m1,m0,p]  = cap * tanh(QQ[b,h,m1,m0,p] / cap)
  LM[b,h,m1,p]     = max(m0: QK[b,h,m1,m0,p])
  RM[b,h,m1+1,p]   = max(RM[b,h,m1,p], LM[b,h,m1,p])
  SLN[b,h,m1,m0,p] = exp(QK[b,h,m1,m0,p] - RM[b,h,m1+1,p])
  SLD[b,h,m1,p]    = sum(m0: SLN[b,h,m1,m0,p])
  SLNV[b,h,m1,f,p] = sum(m0: SLN[b,h,m1,m0,p] * V[b,h,m1,m0,f])
  PRM[b,h,m1,p]    = exp(RM[b,h,m1,p] - RM[b,h,m1+1,p])
  SPD[b,h,m1,p]    = PRM[b,h,m1,p] * RD[b,h,m1,p]
  RD[b,h,m1+1,p]   = SPD[b,h,m1,p] + SLD[b,h,m1,p]
  SPNV[b,h,m1,f,p] = PRM[b,h,m1,p] * RNV[b,h,m1,f,p]
  RNV[b,h,m1+1,f,p] = SPNV[b,h,m1,f,p] + SLNV[b,h,m1,f,p]
  AV[b,h,p,f]      = RNV[b,h,M1,f,p] / RD[b,h,M1,p]
outputs: [AV]
"""

MAP_SOFTCAP = """\
name: fusemax-softcap
cascade: softcap.yaml
architecture: fusemax
set: {M0: 256}
groups:
  - name: attention
    binding:
      array2d: [QQ, LM, SLN, SLD, SLNV]
      array1d: [QK, RM, PRM, SPD, RD, SPNV, RNV, AV]
    loops:
      - {level: DRAM, ranks: {B: ~, H: ~, P: ~, M1: ~}}
      - {level: GlobalBuffer, ranks: {P: search, E: ~, F: ~}}
      - {spatial: array2d, ranks: {P: M0, M0: M0}}
      - {spatial: array1d, ranks: {P: M0}}
    keep: {GlobalBuffer: [Q, K, V, RM, RD, RNV]}
    overlap: max(QQ+LM, RD+RNV+AV) + QK + RM + max(SLN+SLD, PRM+SPD) + max(SLNV, SPNV)
"""

GPT3 = "gpt3-7b"  # a decoder workload (block: gpt), seq_len 1024


def _cascade(text: str, **changes: object) -> dict:
    data = yaml.safe_load(text)
    data.update(changes)
    return data


def _one_line(result) -> str:
    text = result.output.strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


def _refusal(data: dict) -> SpecError:
    with pytest.raises(SpecError) as caught:
        cascade_from_dict(data, "c.yaml")
    return caught.value


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- 1. dead parts


def test_the_base_cascade_loads() -> None:
    """The cascade the refusals below change by one line loads (so each refusal is that line's)."""
    assert [e.name for e in cascade_from_dict(_cascade(BASE), "c.yaml").einsums] == ["QK", "GM", "SN", "SD", "A", "AV"]


def test_an_einsum_that_no_one_reads_is_refused(cli, folder: Path) -> None:
    """DEAD[b,h,p] = max(m: QK[b,h,m,p]) after QK, read by nothing and no output: `check` said ok and `analyze`
    counted its B*H*P*M max ops."""
    (folder / "dead.yaml").write_text(BASE.replace("  GM[", "  DEAD[b,h,p] = max(m: QK[b,h,m,p])\n  GM["))
    text = _one_line(cli("check", "dead.yaml", expect=2))
    assert text == ("error: dead.yaml: einsums[1] (DEAD): DEAD is written but never read, and is not an output "
                    "(outputs: AV): its work would be counted for nothing; read it, list it in outputs or drop "
                    "it"), text


def test_an_einsum_read_only_by_dead_einsums_is_refused() -> None:
    """A chain that reaches no output: the first of it is named, saying who reads it."""
    data = _cascade(BASE)
    data["einsums"] += "D1[b,h,p] = max(m: QK[b,h,m,p])\nD2[b,h,p] = D1[b,h,p] * 2\n"
    error = _refusal(data)
    assert error.where == "einsums[6] (D1)", error
    assert error.message == ("D1 is read only by D2, which leads to no output, and is not an output (outputs: AV): "
                             "its work would be counted for nothing; read it, list it in outputs or drop it"), error


def test_a_recurrence_reading_only_itself_is_dead() -> None:
    """A recurrence reads its own last state; that read does not make it live."""
    text = SOFTCAP.replace("  AV[", "  X[b,h,m1+1,p] = X[b,h,m1,p] + LM[b,h,m1,p]\n  AV[")
    data = _cascade(text, init={"RM": -1e308, "RD": 0, "RNV": 0, "X": 0})
    error = _refusal(data)
    assert error.where == "einsums[12] (X)" and error.message.startswith("X is written but never read,"), error


def test_an_input_no_einsum_reads_is_refused(cli, folder: Path) -> None:
    """W: [B, H, M, M] read by nothing: `check` said ok and its bytes entered bytes.input."""
    data = _cascade(BASE)
    data["inputs"]["W"] = ["B", "H", "M", "M"]
    (folder / "unread.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    text = _one_line(cli("check", "unread.yaml", expect=2))
    assert text == ("error: unread.yaml: inputs.W: read by no Einsum of the cascade (misspelled? read: K, Q, V): its "
                    "bytes would be counted as read"), text


def test_a_mask_no_einsum_names_is_refused(cli, folder: Path) -> None:
    """`masks: {c: 5}` was ok while unused (refused as no predicate once a `where c` named it)."""
    (folder / "unused.yaml").write_text(yaml.safe_dump(_cascade(BASE, masks={"c": 5}), sort_keys=False))
    text = _one_line(cli("check", "unused.yaml", expect=2))
    assert text == ("error: unused.yaml: masks.c: named by no Einsum's where (misspelled? masks named: none): "
                    "a mask applies only where an Einsum names it"), text


def test_a_mask_named_by_one_einsum_is_used() -> None:
    data = _cascade(BASE, masks={"causal": "m <= p", "spare": "m < p"})
    data["einsums"] = data["einsums"].replace("K[b,h,m,e])\n", "K[b,h,m,e]) where causal else -inf\n", 1)
    error = _refusal(data)
    assert (error.where, error.message) == ("masks.spare", "named by no Einsum's where (misspelled? masks named: "
                                                           "causal): a mask applies only where an Einsum names it")


@pytest.mark.parametrize("name", library.names("cascades"))
def test_no_library_cascade_has_dead_parts(name: str) -> None:
    """Every shipped cascade loads under the rules above: each Einsum leads to an output, each input is read and
    each mask named."""
    cascade = library.load_cascade_spec(name)
    read = {ref.tensor for einsum in cascade.einsums for ref in einsum.refs}
    assert set(cascade.inputs) <= read


# ---------------------------------------------------------------- 2. mask predicates are conditions


def test_an_arithmetic_mask_is_refused(cli, folder: Path) -> None:
    """`plm: "p - m"` (a forgotten `>= 0`) kept every pair with p != m, the keys after each query included."""
    data = _cascade(BASE, masks={"plm": "p - m"})
    data["einsums"] = data["einsums"].replace("K[b,h,m,e])\n", "K[b,h,m,e]) where plm else -inf\n", 1)
    (folder / "plm.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    text = _one_line(cli("check", "plm.yaml", expect=2))
    assert text == ("error: plm.yaml: masks.plm: 'p - m' is no condition: expected a comparison, or and/or/not of "
                    "comparisons (e.g. m <= p)"), text


@pytest.mark.parametrize(("where", "shown"), [("p", "p"), ("seq_len", "seq_len"), ("m <= p and p", "m <= p and p"),
                                               ("not (p - m)", "not (p - m)"), ("abs(p - m)", "abs(p - m)")])
def test_an_inline_predicate_that_is_no_condition_is_refused(where: str, shown: str) -> None:
    """`where p` (a bare index) and `where seq_len` (a bare parameter) were predicates; so was any arithmetic."""
    data = _cascade(BASE)
    data["einsums"] = data["einsums"].replace("K[b,h,m,e])\n", f"K[b,h,m,e]) where {where} else -inf\n", 1)
    error = _refusal(data)
    assert error.where == "einsums[0] (QK)", error
    assert error.message == (f"'{shown}' is no condition: expected a comparison, or and/or/not of comparisons "
                             "(e.g. m <= p)"), error


@pytest.mark.parametrize("predicate", ["m <= p or m < prefix", "not (m > p)", "abs(m - p) <= 2 and m != p",
                                       "(m <= p) == (m < prefix)"])
def test_conditions_load(predicate: str) -> None:
    data = _cascade(BASE, masks={"plm": predicate})
    if "prefix" in predicate:
        data["params"]["prefix"] = 3
    data["einsums"] = data["einsums"].replace("K[b,h,m,e])\n", "K[b,h,m,e]) where plm else -inf\n", 1)
    assert cascade_from_dict(data, "c.yaml").einsums[0].mask.text == predicate


# ---------------------------------------------------------------- 3. YAML 1.1 booleans where a name goes


def test_an_output_named_no_is_explained(cli, folder: Path) -> None:
    """`outputs: [NO]` said "'False' is not written by any Einsum"."""
    text = BASE.replace("AV[b,h,p,f]", "NO[b,h,p,f]").replace("outputs: [AV]", "outputs: [NO]")
    (folder / "no.yaml").write_text(text)
    out = _one_line(cli("check", "no.yaml", expect=2))
    assert out == "error: no.yaml: outputs[0]: NO was read by YAML 1.1 as false; quote it ('NO')", out
    (folder / "no.yaml").write_text(text.replace("outputs: [NO]", "outputs: ['NO']"))
    assert "ok" in cli("check", "no.yaml").output


def test_an_input_named_no_is_explained(folder: Path) -> None:
    """An input key `NO:` became a tensor named False."""
    with pytest.raises(SpecError) as caught:
        parse_yaml(b"inputs: {Q: [B, E], NO: [B, E]}\n", Path("c.yaml"))
    assert (caught.value.where, caught.value.message) == (
        "inputs.NO", "NO was read by YAML 1.1 as false; quote it ('NO')")


def test_a_mapping_binding_no_is_explained(cli, folder: Path) -> None:
    """`array1d: [GM, W, NO, O]` said "expected a list of Einsum names"."""
    (folder / "softcap.yaml").write_text(SOFTCAP)
    (folder / "map.yaml").write_text(MAP_SOFTCAP.replace("[QK, RM,", "[QK, on, RM,"))
    out = _one_line(cli("check", "map.yaml", expect=2))
    assert out == ("error: map.yaml: groups[0].binding.array1d[1]: on was read by YAML 1.1 as true; quote it "
                   "('on')"), out


@pytest.mark.parametrize(("text", "value"), [(b"causal: no\n", {"causal": False}),
                                             (b"axes: [true, false]\n", {"axes": [True, False]}),
                                             (b"names: ['NO', 'yes']\n", {"names": ["NO", "yes"]})])
def test_booleans_where_booleans_go_still_read(text: bytes, value: dict) -> None:
    """A mapping's value may be a boolean however YAML 1.1 spells it; a list of true/false is a list of booleans."""
    assert parse_yaml(text, Path("c.yaml")) == value


# ---------------------------------------------------------------- 4. the decoder guard, by structure


def test_unmasked_self_attention_without_a_reference_is_refused_on_a_decoder(cli, folder: Path) -> None:
    """Gemma-2's soft-capped attention with no mask and no `reference`: P and M both sized by seq_len, no mask
    orders a key index against a query index. It ran gpt3-7b (a decoder) unmasked, exit 0."""
    (folder / "softcap.yaml").write_text(SOFTCAP)
    (folder / "map-softcap.yaml").write_text(MAP_SOFTCAP)
    text = _one_line(cli("run", "-m", "map-softcap.yaml", "-w", "gpt3-7b", "--set", "cap=50", expect=2))
    assert text.startswith(f"error: {library.find('workloads', 'gpt3-7b')}: block: gpt3-7b is a decoder (block "
                           "gpt), whose prefill attention is causal, but cascade softcap-1pass (mapping "
                           "fusemax-softcap) attends to every key"), text
    assert ("attends to every key (no mask of its Einsums over a query and a key, QQ, QK, LM, ..., orders the "
            "two): it would count the keys after each query, which the causal mask drops; mask its scores (where "
            "m <= p; --cascade FILE);") in text, text
    assert text.endswith("for unmasked attention on its shapes, a workload file without block"), text


def test_masked_self_attention_without_a_reference_runs_on_a_decoder(cli, folder: Path) -> None:
    """The same cascade masked causally (the mask ordering m against p) binds on the decoder."""
    data = _cascade(SOFTCAP, masks={"causal": "m <= p"})
    data["einsums"] = data["einsums"].replace("K[b,h,m1,m0,e])\n", "K[b,h,m1,m0,e]) where causal else -inf\n", 1)
    (folder / "softcap.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (folder / "map-softcap.yaml").write_text(MAP_SOFTCAP)
    cli("run", "-m", "map-softcap.yaml", "-w", "gpt3-7b", "--set", "cap=50")


def test_cross_attention_is_not_refused_on_a_decoder(cli) -> None:
    """Queries sized by q_len, keys by kv_len (the encoder's): no causal mask applies, so the decoder guard does not
    refuse it, though it names the reference `attention` (it was refused, advised to run a self-attention cascade)."""
    data = yaml.safe_load(library.find("cascades", "attention-1pass").read_text())
    data["params"] = {**data["params"], "q_len": 8, "kv_len": 16}
    del data["params"]["seq_len"]
    data["ranks"] = {**data["ranks"], "P": "q_len", "M": "kv_len"}
    cascade = cascade_from_dict(data, "cross.yaml")
    check_causal_form(cascade, library.load_workload_spec(GPT3))  # no refusal


def test_the_library_refusals_are_its_unmasked_cascades() -> None:
    """On a decoder workload, the library's cascades refused are those computing attention over every key of
    their own sequence: the ones whose reference has a causal form (`CAUSAL_FORMS`, the hand classification:
    attention, attention_gqa, attention_mqa, linear_attention, megatron_sp_attention_noncausal); decode steps,
    masked prefill, the dense layers and the norms run."""
    workload = library.load_workload_spec(GPT3)
    for name in library.names("cascades"):
        cascade = library.load_cascade_spec(name)
        try:
            check_causal_form(cascade, workload)
            refused = False
        except SpecError:
            refused = True
        assert refused == (cascade.reference in CAUSAL_FORMS), name


# ---------------------------------------------------------------- 5. the decoder guard, by the mask's values


def _masked(predicate: str, **params: float) -> Cascade:
    """BASE (three-pass attention, P the query rank its output keeps, M the key rank GM reduces) with every Einsum
    over a query and a key (each of its six) masked by `predicate`, as a user writes a causal cascade."""
    data = _cascade(BASE, masks={"mask": predicate})
    data["params"] = {**data["params"], **params}
    data["einsums"] = "".join(line + " where mask" + (" else -inf" if line.startswith("QK") else "") + "\n"
                              for line in data["einsums"].splitlines())
    return cascade_from_dict(data, "c.yaml")


@pytest.mark.parametrize("predicate", ["p - m < 4", "m < p + 1000000", "m >= p", "p - m < 4 or m == p + 1"])
def test_a_mask_that_keeps_a_later_key_is_refused_on_a_decoder(predicate: str) -> None:
    """Each mask compares a key with its query but keeps a key after it (at the test sizes, seq_len 8): `p - m < 4`
    (a window without the causal bound) keeps (p 0, m 1), since 0 - 1 < 4; `m < p + 1000000` keeps every pair;
    `m >= p` (anti-causal) keeps (0, 1); the last keeps (0, 1) by its second term. Each passed the structural guard
    (a comparison reading both tokens), so a decoder counted the keys after each query."""
    cascade = _masked(predicate)
    with pytest.raises(SpecError) as caught:
        check_causal_form(cascade, library.load_workload_spec(GPT3))
    assert (f"attends to every key (its Einsums over a query and a key, QK, GM, SN, ..., keep keys after their "
            f"query where {predicate}): ") in caught.value.message, caught.value.message
    assert "mask its scores (where m <= p; --cascade FILE)" in caught.value.message, caught.value.message


@pytest.mark.parametrize("predicate", ["m <= p", "m <= p and p - m < window", "p - m >= 0 and p - m < window",
                                       "m < p + 1", "not (m > p)", "m <= p and (p - m < window or m < 2)"])
def test_a_mask_that_drops_every_later_key_runs_on_a_decoder(predicate: str) -> None:
    """Causal masks, sliding-window ones among them (window 3 of seq_len 8), however written: none keeps an (p, m)
    with m > p, so the decoder guard passes them."""
    window = {"window": 3} if "window" in predicate else {}
    check_causal_form(_masked(predicate, **window), library.load_workload_spec(GPT3))  # no refusal


def test_the_token_ranks_are_one_statement() -> None:
    """Self-attention's two token ranks, P (queries) and M (keys), are both sized by seq_len: `token_ranks` reads
    the cascade's ranks so for the decoder guard, and the GPU points' roles P and M read the same parameter."""
    assert token_ranks(library.load_cascade_spec("attention-1pass")) == ("P", "M")
    assert token_ranks(library.load_cascade_spec("ring-attention")) == ("N",)  # N partitioned [D, C]: its parts no
    assert token_ranks(library.load_cascade_spec("attention-decode-gqa")) == ("M",)  # one query, no rank
    assert GPU_ROLE_SIZES["P"] == GPU_ROLE_SIZES["M"] == TOKENS == "seq_len"
    assert not hasattr(point, "_root") and not hasattr(point, "_TOKENS")  # one statement, in archsim.cascade


def test_a_named_reference_passes_later_keys_only_where_the_cascade_computes_it() -> None:
    """Block-sparse attention keeps the next key block after each query on purpose (BigBird's band, reference
    `attention_block_sparse`, outside `CAUSAL_FORMS`), and runs on a decoder as it did; a cascade naming the causal
    reference whose mask keeps later keys (`p - m < 4`) does not compute it at its test sizes, and is refused."""
    workload = library.load_workload_spec(GPT3)
    check_causal_form(library.load_cascade_spec("attention-block-sparse"), workload)  # no refusal
    data = _cascade(BASE, masks={"mask": "p - m < 4"}, reference="attention_causal")
    data["einsums"] = "".join(line + " where mask" + (" else -inf" if line.startswith("QK") else "") + "\n"
                              for line in data["einsums"].splitlines())
    with pytest.raises(SpecError, match="keep keys after their query where p - m < 4"):
        check_causal_form(cascade_from_dict(data, "c.yaml"), workload)
    check_causal_form(_masked("m <= p"), workload)  # the causal mask: no refusal


def test_a_mask_named_true_is_explained() -> None:
    """`masks: {true: "m <= p"}` then `where true` said "unknown name 'true' ... did you mean 'True'?": the key was
    the boolean True. A mapping's key is a name, so true and false get the hint yes/no/on/off get there."""
    with pytest.raises(SpecError) as caught:
        parse_yaml(b"masks: {true: 'm <= p'}\n", Path("c.yaml"))
    assert (caught.value.where, caught.value.message) == (
        "masks.true", "true was read by YAML 1.1 as true; quote it ('true')")
    assert parse_yaml(b"masks: {'true': 'm <= p'}\nflags: [true, false]\n", Path("c.yaml")) == {
        "masks": {"true": "m <= p"}, "flags": [True, False]}  # quoted, a name; a list's item, still a boolean


@pytest.mark.parametrize(("text", "where", "word", "value"), [
    (b"name: off\n", "name", "off", "false"),
    (b"groups:\n  - name: on\n", "groups[0].name", "on", "true"),
    (b"name: YES\n", "name", "YES", "true")])
def test_a_name_field_given_a_boolean_is_explained(text: bytes, where: str, word: str, value: str) -> None:
    """`name: off` said "expected the cascade's name as a string, got bool False" (a cascade, a workload, a
    mapping's group alike): a `name` field expects a string, so its value gets the hint a list's item gets."""
    with pytest.raises(SpecError) as caught:
        parse_yaml(text, Path("c.yaml"))
    assert (caught.value.where, caught.value.message) == (
        where, f"{word} was read by YAML 1.1 as {value}; quote it ('{word}')")


def test_a_workload_named_off_is_explained(cli, folder: Path) -> None:
    """The auditor's workload: gpt3-7b renamed `off`, checked from the command line."""
    text = library.find("workloads", GPT3).read_text()
    (folder / "w.yaml").write_text(text.replace(f"name: {GPT3}", "name: off", 1))
    out = _one_line(cli("check", "w.yaml", expect=2))
    assert out == "error: w.yaml: name: off was read by YAML 1.1 as false; quote it ('off')", out


# ---------------------------------------------------------------- 5. a limit its variable sets is named so


def test_an_event_task_limit_set_by_its_variable_is_named(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ARCHSIM_MAX_EVENT_TASKS=1 archsim run ... --model event` said "4000 tasks, beyond the limit of 1 ... raise
    it with the environment variable": the user gave no max_tasks (4000 is simulate's default) and set the limit
    themselves, so the message names the variable as what set it. The default limit keeps the advice to raise it."""
    monkeypatch.setenv("ARCHSIM_MAX_EVENT_TASKS", "1")
    out = _one_line(cli("run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=1024", "--model", "event",
                        expect=2))
    assert out == ("error: <python>: simulate.max_tasks: 4000 tasks, beyond the limit of 1 set by the environment "
                   "variable ARCHSIM_MAX_EVENT_TASKS (about 1 KB and 5 events a task, up to twice max_tasks of "
                   "them; raise it there)"), out
