"""A masked map Einsum writes only the tiles holding a point its mask keeps when every reader of its output applies
the same mask (so no reader ever reads a masked point's fill); otherwise it writes every tile
(`archsim.model.plan._fill_unread`). Before, causal attention on FLAT, FLAT-offchip and Unfused wrote the fully
masked score tiles (QK, A) although every reader skipped them: gpt3-7b at 4K on FLAT read and wrote its global
buffer as much as the dense prompt did.

Points: attention-3pass(-causal) alone (batch 1, 1 head, head_dim 128), tiles of 256 queries x 256 keys on the
arrays (the mappings' spatial loops), 2-byte words. At 1024 tokens a 4 x 4 grid of 256 x 256 tiles keeps
1 + 2 + 3 + 4 = 10 (the diagonal included, m1 <= p1); at 4096 a 16 x 16 grid keeps 136, and FLAT-offchip's
1024 x 256 global-buffer tiles of QK (4 x 16) keep 4 + 8 + 12 + 16 = 40."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from archsim import library
from archsim.cascade.load import cascade_from_dict
from archsim.model.analytical import evaluate
from archsim.model.event import simulate
from archsim.point import prepare, run_point

WORD = 2
TILE = 256 * 256  # elements of a score tile on the arrays
SETS = {"batch": 1, "heads": 1, "head_dim": 128, "word_bytes": WORD}
# GPT-3 7B's shapes without its decoder block, which the unmasked cascade refuses (`check_causal_form`)
GPT3_SHAPES = dataclasses.replace(library.load_workload_spec("gpt3-7b"), block=None)


def _causal(edit: tuple[str, str] | None = None):
    """attention-3pass-causal, with one Einsum line's text replaced (`edit`: old, new)."""
    spec = yaml.safe_load(library.find("cascades", "attention-3pass-causal").read_text())  # not the cwd's einsum/
    if edit is not None:
        assert edit[0] in spec["einsums"]
        spec["einsums"] = spec["einsums"].replace(*edit)
    return cascade_from_dict(copy.deepcopy(spec))


def _traffic(mapping: str, seq_len: int, cascade=None) -> dict[str, dict[str, float]]:
    r = run_point(mapping, cascade=cascade, sets={**SETS, "seq_len": seq_len})
    assert r.feasible, r.reason
    return r.traffic_bytes


def test_flat_in_place_score_block_moves_only_kept_tiles() -> None:
    """FLAT keeps QK's row block in the global buffer, written over in place by SN and A: each of its elements is
    accessed 3 times by writers (QK, SN, A) and 4 by readers (GM, SN, A, AV; SD takes SN streamed). Per access,
    16 tiles dense, 10 causal: 16 * 65536 * 7 * 2 B = 14,680,064 B against 9,175,040 B (0.625)."""
    dense = _traffic("flat", 1024)["GlobalBuffer"]["QK"]
    causal = _traffic("flat", 1024, _causal())["GlobalBuffer"]["QK"]
    assert dense == 16 * TILE * 7 * WORD
    assert causal == 10 * TILE * 7 * WORD


def test_flat_offchip_writes_only_kept_score_tiles() -> None:
    """At 4096 tokens QK crosses DRAM in 1024 x 256 tiles: 64 written and 64 read dense, 40 and 40 causal; the
    numerator SN (which A divides in the next pass, A streaming to AV) crosses between DRAM and the PEs in 256 x 256
    tiles: 256 and 256 dense, 136 and 136 causal. Before, QK and the score tensor to DRAM still wrote all 64 and
    256."""
    dense = _traffic("flat-offchip", 4096)["DRAM"]
    causal = _traffic("flat-offchip", 4096, _causal())["DRAM"]
    assert dense["QK"] == 128 * 1024 * 256 * WORD
    assert causal["QK"] == 80 * 1024 * 256 * WORD
    assert dense["SN"] == 512 * TILE * WORD
    assert causal["SN"] == 272 * TILE * WORD
    assert causal["QK"] / dense["QK"] == pytest.approx(0.625)
    assert causal["SN"] / dense["SN"] == pytest.approx(0.53125)


def test_unfused_writes_only_kept_score_tiles() -> None:
    """Unfused at 1024 tokens: group qk writes QK in 256 x 256 tiles (16 dense, 10 causal); group softmax reads
    QK's rows whole (every row keeps key 0: 1024 rows x 1024 keys either way) and writes A 256 keys of a row at a
    time (4096 dense, 256 * (1 + 2 + 3 + 4) = 2560 causal); group av reads A in 256 x 256 tiles (16, 10)."""
    dense = _traffic("unfused", 1024)["DRAM"]
    causal = _traffic("unfused", 1024, _causal())["DRAM"]
    assert dense["QK"] == (16 * TILE + 1024 * 1024) * WORD
    assert causal["QK"] == (10 * TILE + 1024 * 1024) * WORD
    assert dense["A"] == (4096 * 256 + 16 * TILE) * WORD
    assert causal["A"] == (2560 * 256 + 10 * TILE) * WORD


def test_gpt3_causal_write_energy_halves() -> None:
    """The audit's point (gpt3-7b at 4K): the causal global-buffer writes on FLAT and DRAM writes on
    FLAT-offchip and Unfused come to about half of dense's (136 of 256 score tiles kept), no longer all of it."""
    for mapping, key in (("flat", ("GlobalBuffer", "write")), ("flat-offchip", ("DRAM", "write")),
                         ("unfused", ("DRAM", "write"))):
        dense = run_point(mapping, workload=GPT3_SHAPES, sets={"seq_len": 4096})
        causal = run_point(mapping, cascade=_causal(), workload="gpt3-7b", sets={"seq_len": 4096})
        assert 0.5 < causal.energy_by[key] / dense.energy_by[key] < 0.6, mapping


@pytest.mark.parametrize(("mask", "read_tiles"), [("", 64), (" where m < p", 40)])
def test_a_reader_without_the_same_mask_keeps_the_dense_write(mask: str, read_tiles: int) -> None:
    """GM reading QK unmasked (it reads the -inf fill of the masked points: all 64 tiles) or under another mask
    (m < p: 40 tiles): QK's writer must write every tile, so FLAT-offchip writes QK's 64 tiles as before; SN, whose
    reader A still applies the causal mask, writes only its 136 kept tiles."""
    gm = "GM[b,h,p]   = max(m: QK[b,h,m,p])"
    causal = _traffic("flat-offchip", 4096, _causal((gm + " where causal", gm + mask)))["DRAM"]
    assert causal["QK"] == (64 + read_tiles) * 1024 * 256 * WORD
    assert causal["SN"] == 272 * TILE * WORD


def test_an_unmasked_reader_of_an_in_place_alias_keeps_the_block_dense() -> None:
    """FLAT's score block is written over by A, which AV here reads unmasked (A's masked points hold its fill,
    0): the block is accessed as densely as before, although QK's own readers all apply the mask."""
    av = "AV[b,h,p,f] = sum(m: A[b,h,m,p] * V[b,h,m,f])"
    edit = (av + " where causal", av)
    assert _traffic("flat", 1024, _causal(edit))["GlobalBuffer"]["QK"] == 16 * TILE * 7 * WORD


@pytest.mark.parametrize("mapping", ["flat", "flat-offchip", "unfused"])
def test_event_model_agrees_on_a_causal_point(mapping: str) -> None:
    """The event model takes the analytical traffic, so a causal point's latency agrees as a dense one's does
    (BERT-base at 4K: FLAT +0.15 %, FLAT-offchip 0.00 %, Unfused +0.31 %; dense +0.14, 0.00, +0.23 %), with
    the same traffic."""
    p = prepare(mapping, cascade=_causal(), workload="bert-base", sets={"seq_len": 4096})
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    run = simulate(p.binding, p.analysis, p.arch, p.mapping)
    assert run.result.traffic_bytes == analytical.traffic_bytes
    assert run.result.latency_s == pytest.approx(analytical.latency_s, rel=0.005)


def test_flat_spilled_score_block_accesses_only_kept_tiles() -> None:
    """At 16K tokens FLAT's 1024-row block (32 MiB) and its two 128 KiB hand-off tiles overflow the 32 MiB global
    buffer by 1/128 of the block, which lives in DRAM, each element accessed 7 times (3 writes, 4 reads): dense,
    16384^2 / 128 * 7 * 2 B = 29,360,128 B. Causal, only the kept tiles' elements are accessed: of the 64 x 64
    score tiles 64 * 65 / 2 = 2080 are kept, so 29,360,128 * 2080 / 4096 = 14,909,440 B. Before, the spill
    stayed dense (29,360,128 B), as at 1M tokens, where FLAT's causal latency was 0.907 of dense's."""
    dense = _traffic("flat", 16384)["DRAM"]["QK"]
    causal = _traffic("flat", 16384, _causal())["DRAM"]["QK"]
    assert dense == 16384 * 16384 // 128 * 7 * WORD
    assert causal == dense * 2080 // 4096
