"""Partial sums read back, factor-1 loops, intermediates kept nowhere, reads per pass and masked output writes
(`archsim.model.plan`, `archsim.model.reuse`).

- An output tile that a loop nest leaves and re-enters (a reduction loop above one indexing the output) is written
  out on every visit and its partial sum read back on every visit but the first. Before, the writes were counted
  and the read-backs were not.
- A loop of factor 1 walks nothing, so a non-indexing loop above it does not make a tensor move again. Before, a
  DRAM `P: 1` under `M: 2` truncated the reuse there and Q moved twice.
- An intermediate kept at no level lives in the PEs' registers, which hold one tile: one whose tiles must outlive
  a loop (SN waiting for its row sum in the next pass over M) is refused, whether or not it is a recurrence's state.
  Before, only a running state was checked and SN's row was free.
- Readers in different passes over a tile each read it, unless the tile stays at the level across the passes.
  Before, GM's and SN's passes over QK shared one read. A reader in its writer's pass on its unit (SD summing SN as
  the exp makes it) reads nothing.
- A masked reduction writes its output only on the moves holding a kept point. Before, it was written on every
  move, its masked ones included.

Small points: `attention-3pass` at 16 tokens, head_dim 8, one head, 2-byte words, on the `unfused` preset with a
4 x 4 2-D array and a 4-lane 1-D array, so every tensor over (P, M) is 16 x 16 = 256 elements, a PE tile 4 x 4.
"""

from __future__ import annotations

from dataclasses import replace

from archsim.library import load_architecture_spec, load_mapping_spec
from archsim.mapping.load import mapping_from_dict
from archsim.model.analytical import evaluate, plans
from archsim.point import prepare, run_point

WORD = 2
SETS = {"batch": 1, "heads": 1, "seq_len": 16, "head_dim": 8, "word_bytes": WORD}
ARCH = load_architecture_spec("unfused").with_changes(**{"units.array2d.shape": (4, 4), "units.array1d.shape": (4,)})
SOFTMAX = {"name": "softmax", "binding": {"array1d": ["GM", "SN", "SD", "A"]},
           "loops": [{"level": "DRAM", "ranks": {"B": None, "H": None, "P": None}},
                     {"level": "GlobalBuffer", "ranks": {"M": None}}, {"spatial": "array1d", "ranks": {"M": 4}}],
           "keep": {"GlobalBuffer": ["QK", "SN"]}, "overlap": "max"}
AV = {"name": "av", "binding": {"array2d": ["AV"]},
      "loops": [{"level": "DRAM", "ranks": {"B": None, "H": None, "P": None}},
                {"level": "GlobalBuffer", "ranks": {"M": None, "F": None}},
                {"spatial": "array2d", "ranks": {"P": 4, "M": 4}}],
      "keep": {"GlobalBuffer": ["V", "AV"]}, "overlap": "max"}


def _qk(dram: dict, buffer: dict) -> dict:
    """Group qk: QK on the 2-D array (4 queries x 4 keys), Q and K kept in the global buffer."""
    return {"name": "qk", "binding": {"array2d": ["QK"]},
            "loops": [{"level": "DRAM", "ranks": {"B": None, "H": None, **dram}},
                      {"level": "GlobalBuffer", "ranks": buffer}, {"spatial": "array2d", "ranks": {"P": 4, "M": 4}}],
            "keep": {"GlobalBuffer": ["Q", "K"]}, "overlap": "max"}


def _mapping(*groups: dict):
    return mapping_from_dict({"name": "s36", "description": "d", "source": "s", "cascade": "attention-3pass",
                              "architecture": "unfused", "groups": list(groups)}, "<s36>")


def _traffic(mapping, group: int, cascade: str | None = None) -> dict[str, dict[str, float]]:
    """Bytes per level and tensor of one group of `mapping` at the small point."""
    p = prepare(mapping, arch=ARCH, sets=SETS, cascade=cascade)
    result = evaluate(p.binding, p.analysis, p.arch, p.mapping, only_group=group)
    assert result.feasible, result.reason
    return result.traffic_bytes


def test_partial_sums_written_out_are_read_back() -> None:
    """QK kept at no level moves between the PEs and DRAM. With E (the reduction) outside M in the global buffer,
    the loops above a 4 x 4 tile are P 4 (DRAM), E 8 and M 4: 128 moves of 16 = 2048 elements written out. Of
    each tile's 8 visits the first finds it new (16 tiles, 256 elements) and 7 read the partial sum back: 1792."""
    mapping = _mapping(_qk({"M": 1, "P": None}, {"P": 1, "E": None, "M": None}), SOFTMAX, AV)
    assert _traffic(mapping, 0)["DRAM"]["QK"] == (2048 + 1792) * WORD


def test_a_factor_one_loop_does_not_break_reuse() -> None:
    """DRAM M 2 above P 1: the global buffer keeps all 16 rows of Q (P 4 x 4 lanes), so Q (16 x 8) is read once,
    128 elements, not once per key half."""
    mapping = _mapping(_qk({"M": 2, "P": 1}, {"P": 4, "M": None, "E": None}), SOFTMAX, AV)
    assert _traffic(mapping, 0)["DRAM"]["Q"] == 128 * WORD


def test_a_factor_one_loop_does_not_reread_the_projection_input() -> None:
    """Llama-3-8B's Q projection at 256 tokens, batch 1: WQ (32 MiB) is tiled 4 ways over H at DRAM, above P 1;
    X (256 x 4096 x 2 B = 2 MiB) stays whole in the global buffer, so each of the three GEMM groups reads it once."""
    r = run_point("linear-qkv-fusemax", workload="llama3-8b", sets={"seq_len": 256, "batch": 1})
    assert r.traffic_bytes["DRAM"]["X"] == 3 * 256 * 4096 * WORD


def test_an_unkept_row_waiting_for_a_later_pass_is_refused() -> None:
    """QK and the softmax fused, SN kept at no level: A divides SN by its row sum SD in the pass after SD's, so the
    4 tiles of a row (the global buffer's M loop) live in the registers at once. Kept in the buffer, it runs."""
    fused = {"name": "qksm", "binding": {"array2d": ["QK"], "array1d": ["GM", "SN", "SD", "A"]},
             "loops": [{"level": "DRAM", "ranks": {"B": None, "H": None, "P": None}},
                       {"level": "GlobalBuffer", "ranks": {"M": None, "E": None}},
                       {"spatial": "array2d", "ranks": {"P": 4, "M": 4}}, {"spatial": "array1d", "ranks": {"P": 4}}],
             "keep": {"GlobalBuffer": ["Q", "K", "QK"]}, "overlap": "max"}
    refused = run_point(_mapping(fused, AV), arch=ARCH, sets=SETS)
    assert not refused.feasible
    assert "SN is kept at no level (keep:), but 4 of its tiles live at once across loop M at GlobalBuffer" in (
        refused.reason)
    assert "a later pass reads them again after a reduction over M" in refused.reason
    kept = {**fused, "keep": {"GlobalBuffer": ["Q", "K", "QK", "SN"]}}
    assert run_point(_mapping(kept, AV), arch=ARCH, sets=SETS).feasible


def test_unkept_partial_sums_across_a_loop_are_refused() -> None:
    """FFN1's reduction tiles of D sit outside its output columns S in the global buffer, so every column's
    partial sum of H1 outlives the D loop: kept at no level (and the weight untiled at DRAM, S 1 there), the
    registers would hold them all."""
    spec = load_mapping_spec("linear-ffn-fusemax")
    ffn1 = spec.groups[0]
    loops = tuple(replace(lp, factor=1) if (lp.level, lp.rank) == ("DRAM", "S") else lp for lp in ffn1.loops)
    unkept = replace(spec, groups=(replace(ffn1, loops=loops, keep={"GlobalBuffer": ("X", "W1", "A")}),
                                   *spec.groups[1:]))
    r = run_point(unkept, workload="bert-base", sets={"seq_len": 1024})
    assert not r.feasible
    assert "H1 is kept at no level" in r.reason and "which they are not indexed by" in r.reason


def test_each_pass_reads_the_row_again() -> None:
    """The softmax keeps a query row of QK (16 scores) and of SN in the global buffer; the 1-D array takes 4 of a
    row at a time. GM's pass and SN's pass each read QK's 256 scores; SN writes its 256 and A's pass reads them,
    SD summing them as the exp makes them. QK comes from DRAM once: the row stays in the buffer for both passes."""
    traffic = _traffic(_mapping(_qk({"P": None}, {"M": None, "E": None}), SOFTMAX, AV), 1)
    assert traffic["GlobalBuffer"]["QK"] == 2 * 256 * WORD
    assert traffic["GlobalBuffer"]["SN"] == (256 + 256) * WORD
    assert traffic["DRAM"]["QK"] == 256 * WORD


def test_a_masked_reduction_writes_only_its_kept_moves() -> None:
    """Causal AV: the 2-D array's 4 x 4 (query, key) tiles keep 1 + 2 + 3 + 4 = 10 of 16 (the diagonal included),
    each walking F's 8 columns: 80 moves of a 4-query tile of AV, 320 elements written into the global buffer (512
    dense). The global buffer's other writes are V's 16 x 8 = 128 elements from DRAM."""
    p = prepare(_mapping(_qk({"P": None}, {"M": None, "E": None}), SOFTMAX, AV), arch=ARCH, sets=SETS,
                cascade="attention-3pass-causal")
    av = plans(p.binding, p.analysis, p.arch, p.mapping, 2)[0]
    write = av.energy_keys.index(("GlobalBuffer", "write"))
    written_bits = sum(bits for slot, _, _, bits in av.actions if slot == write)
    assert written_bits == (128 + 320) * WORD * 8


def test_unfused_reads_the_operand_again_not_the_output() -> None:
    """Unfused at BERT-base 1M tokens (the artifact's r = 8, docs/fusemax-artifact-model.md s5): the global buffer
    (32 MiB) holds an eighth of a head's queries (16 MiB) beside a 16 MiB tile of its keys; a quarter (32 MiB)
    leaves no room. So group qk reads Q once and K 8 times and writes QK once; group av reads V 8 times and
    writes AV once, whose partial sums never leave the buffer for DRAM."""
    p = prepare("unfused", workload="bert-base", sets={"seq_len": 1 << 20})
    head_bytes = 64 * 12 * (1 << 20) * 64 * WORD  # B x H x N x E x 2 B
    qk = evaluate(p.binding, p.analysis, p.arch, p.mapping, only_group=0).traffic_bytes["DRAM"]
    av = evaluate(p.binding, p.analysis, p.arch, p.mapping, only_group=2).traffic_bytes["DRAM"]
    assert (qk["Q"], qk["K"]) == (head_bytes, 8 * head_bytes)
    assert (av["V"], av["AV"]) == (8 * head_bytes, head_bytes)
