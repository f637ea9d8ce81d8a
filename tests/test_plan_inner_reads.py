"""A tensor a fusion group writes and reads itself, and that another group reads too (so its home is DRAM), is
read by the group's own Einsums from the level that keeps its tile while the tile is resident there: only the
write crosses the DRAM boundary (`archsim.model.plan._stays_at`). Before, the in-group reader's fetch was counted
as a DRAM read too, doubling the tensor's traffic in that group (the deferred-normalisation 3-pass softmax on
BERT at 4K tokens moved SN 51.54 GB through DRAM in its softmax group; by hand 25.77 GB, the write).

The architecture is the `unfused` preset (2-byte words, DRAM and a 32 MiB global buffer, a 256-lane 1-D array);
traffic is each group's `Result.traffic_bytes["DRAM"]`."""

from __future__ import annotations

import copy

import yaml

from archsim import library
from archsim.cascade.load import cascade_from_dict
from archsim.mapping.load import mapping_from_dict
from archsim.model.analytical import evaluate
from archsim.point import prepare

WORD_BYTES = 2
ROWS, COLS = 8, 16  # P x M: each tensor over both is 8 * 16 * 2 = 256 B, a row of it 16 * 2 = 32 B

ROW_SCALE = {
    "name": "row-scale",
    "description": "exp of a matrix, its column sums, the matrix over them",
    "source": "hand-built test cascade",
    "params": {"rows": ROWS, "cols": COLS, "word_bytes": WORD_BYTES},
    "ranks": {"P": "rows", "M": "cols"},
    "inputs": {"X": ["M", "P"]},
    "einsums": "Y[m,p] = exp(X[m,p])\nS[p] = sum(m: Y[m,p])\nZ[m,p] = Y[m,p] / S[p]\n",
    "outputs": ["Z"],
}


def _group(name: str, einsums: list[str], key_tiles: int, keep: dict) -> dict:
    """One group on the 1-D array: rows outermost at DRAM, the key rank M split into `key_tiles` tiles at DRAM
    and the rest at the global buffer, spread over the lanes."""
    return {"name": name, "binding": {"array1d": einsums},
            "loops": [{"level": "DRAM", "ranks": {"P": None, "M": key_tiles}},
                      {"level": "GlobalBuffer", "ranks": {"M": None}},
                      {"spatial": "array1d", "ranks": {"M": COLS // key_tiles}}],
            "keep": keep, "overlap": "max"}


def _dram_bytes(groups: list[dict], cascade: dict = ROW_SCALE, **point) -> list[dict[str, float]]:
    """Per group, tensor -> bytes through the DRAM boundary."""
    mapping = mapping_from_dict({"name": "row-scale-map", "description": "d", "source": "s",
                                 "cascade": "row-scale", "architecture": "unfused", "groups": groups})
    p = prepare(mapping, cascade=cascade_from_dict(copy.deepcopy(cascade)), **point)
    results = [evaluate(p.binding, p.analysis, p.arch, p.mapping, only_group=i) for i in range(len(groups))]
    assert all(r.feasible for r in results), [r.reason for r in results]
    return [r.traffic_bytes["DRAM"] for r in results]


def test_a_row_kept_in_the_global_buffer_is_read_there_by_its_groups_own_reader() -> None:
    """Group `rowsum` makes Y and sums it (S); group `scale` reads Y again, so Y lives in DRAM. The global buffer
    keeps a whole 16-element row of Y (32 B), which S reads in the same iteration over P that Y wrote it:
    rowsum moves X in once (8 * 16 * 2 = 256 B), Y out once (256 B, not 512 B: S reads none back) and S out
    once (8 * 2 = 16 B); scale reads Y (256 B) and S (16 B) and writes Z (256 B)."""
    rowsum, scale = _dram_bytes([_group("rowsum", ["Y", "S"], 1, {"GlobalBuffer": ["Y"]}),
                                 _group("scale", ["Z"], 1, {})])
    assert rowsum == {"X": 256, "Y": 256, "S": 16}
    assert scale == {"Y": 256, "S": 16, "Z": 256}


def test_a_tile_evicted_before_its_later_pass_is_read_back_from_dram() -> None:
    """The same Einsums in one group, Y kept in DRAM and the global buffer, with M split into 2 tiles at DRAM:
    Z waits for S, the sum over all of M, so it reads Y in a later pass over M, after the second half-row tile
    has replaced the first in the global buffer (one 8-element tile of Y lives there). Y is written out once
    (256 B) and read back once (256 B): 512 B. With the row whole in the global buffer (1 tile at DRAM), Z reads
    it there and only the write moves: 256 B. X moves in once (256 B), Z out once (256 B); S stays on chip."""
    keep = {"DRAM": ["Y"], "GlobalBuffer": ["Y"]}
    (split,) = _dram_bytes([_group("all", ["Y", "S", "Z"], 2, keep)])
    (whole,) = _dram_bytes([_group("all", ["Y", "S", "Z"], 1, keep)])
    assert split == {"X": 256, "Y": 512, "Z": 256}
    assert whole == {"X": 256, "Y": 256, "Z": 256}


def test_deferred_normalisation_softmax_moves_sn_once_per_group_on_bert_4k() -> None:
    """The audit's case: attention-3pass with the division deferred after AV (SNV = sum(m: SN * V), AV = SNV /
    SD), on the unfused mapping with the softmax group binding GM, SN, SD and keeping a whole 4096-key row of QK
    and SN (8 KiB each) in the global buffer; a later group (SNV) reads SN. BERT-base at 4096 tokens: SN is
    64 batch x 12 heads x 4096 x 4096 x 2 B = 25,769,803,776 B. The softmax group writes it once and SD reads
    it in the buffer: 25,769,803,776 B (51,539,607,552 B before); the SNV group reads it once: the same."""
    cascade = yaml.safe_load(library.find("cascades", "attention-3pass").read_text())
    cascade["einsums"] = ("QK[b,h,m,p] = sum(e: Q[b,h,p,e] * K[b,h,m,e])\nGM[b,h,p] = max(m: QK[b,h,m,p])\n"
                          "SN[b,h,m,p] = exp(QK[b,h,m,p] - GM[b,h,p])\nSD[b,h,p] = sum(m: SN[b,h,m,p])\n"
                          "SNV[b,h,p,f] = sum(m: SN[b,h,m,p] * V[b,h,m,f])\nAV[b,h,p,f] = SNV[b,h,p,f] / SD[b,h,p]\n")
    groups = yaml.safe_load(library.find("mappings", "unfused").read_text())["groups"]
    groups[1].update(binding={"array1d": ["GM", "SN", "SD"]}, keep={"GlobalBuffer": ["QK", "SN"]})
    groups[2].update(binding={"array2d": ["SNV"]}, keep={"GlobalBuffer": ["V", "SNV"]})
    groups.append({"name": "norm", "binding": {"array1d": ["AV"]},
                   "loops": [{"level": "DRAM", "ranks": {"B": None, "H": None, "P": None}},
                             {"level": "GlobalBuffer", "ranks": {"F": None}},
                             {"spatial": "array1d", "ranks": {"F": 64}}], "overlap": "max"})
    sn_bytes = 64 * 12 * 4096 * 4096 * 2
    assert sn_bytes == 25_769_803_776
    _, softmax, snv, _ = _dram_bytes(groups, cascade, workload="bert-base", sets={"seq_len": 4096})
    assert softmax["SN"] == sn_bytes
    assert snv["SN"] == sn_bytes
