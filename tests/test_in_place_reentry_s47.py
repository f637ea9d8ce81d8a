"""In-place storage (FLAT's score block, `in_place: {QK: [SN, A]}`) is accessed once per element by each Einsum
producing or consuming it (`plan.storage_accesses`), and the writer's partial sums re-entered (a reduction loop
over E above the loop over the scores' key tiles M: `plan._output_moves`) are the writer's alone. The count per
element had been multiplied by the most any one Einsum moves, the writer's re-entries included, so every reader
and writer of the block was charged E times (BERT-base at 4K, E = 64: global-buffer QK traffic x64).

The FLAT mapping on 4 x 4 arrays at the cascade's own sizes (attention-3pass: B = H = 2, P = M = 16, E = F = 8,
2-byte words): 2 x 2 x 16 x 16 = 1,024 scores; the global buffer keeps only QK (Q, K and V stream from DRAM), so
its traffic is QK's. Accesses per score, by hand:
- writes: QK, SN and A (written over it) = 3; reads: GM and SN read QK (array1d, QK made on array2d), A reads SN
  (a later pass than SN, after SD's sum), AV reads A (array2d) = 4; SD reads SN streamed (array1d, SN's pass): 0.
- E innermost (the shipped order, `P, F, M, E`): QK's tile stays in the PEs across E: 3 + 4 = 7 per score.
- E above M (`P, F, E, M`): QK writes each score's partial sum E = 8 times and reads it back E - 1 = 7 times, the
  other Einsums' 2 writes and 4 reads once each: writes 8 + 2 = 10, reads 7 + 4 = 11, 21 per score."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim.library import load_architecture_spec, load_mapping_spec
from archsim.model.analytical import evaluate
from archsim.point import prepare

SCORES = 2 * 2 * 16 * 16  # B x H x P x M
WORD_BYTES = 2
ARCH = load_architecture_spec("flat").with_changes(**{"units.array2d.shape": (4, 4), "units.array1d.shape": (4,)})


def _flat(order: tuple[str, ...]):
    """The FLAT mapping, its global-buffer loops in `order`, evaluated: (global-buffer QK bytes, read pJ, write pJ)."""
    mapping = load_mapping_spec("flat")
    group = mapping.groups[0]
    by_rank = {lp.rank: lp for lp in group.loops if lp.level == "GlobalBuffer"}
    loops = (*(lp for lp in group.loops if lp.level == "DRAM"), *(by_rank[r] for r in order),
             *(lp for lp in group.loops if lp.is_spatial))
    point = prepare(replace(mapping, groups=(replace(group, loops=loops),)), arch=ARCH)
    assert point.binding.rank_sizes == {"B": 2, "H": 2, "P": 16, "M": 16, "E": 8, "F": 8}
    result = evaluate(point.binding, point.analysis, point.arch, point.mapping)
    assert result.feasible, result.reason
    assert set(result.traffic_bytes["GlobalBuffer"]) == {"QK"}
    return (result.traffic_bytes["GlobalBuffer"]["QK"], result.energy_by[("GlobalBuffer", "read")],
            result.energy_by[("GlobalBuffer", "write")])


def test_e_innermost_charges_each_einsum_once() -> None:
    traffic, _, _ = _flat(("P", "F", "M", "E"))
    assert traffic == 7 * SCORES * WORD_BYTES  # 3 writes + 4 reads a score


def test_a_reduction_loop_above_the_scores_is_charged_to_its_writer_only() -> None:
    """Before: 7 x E = 56 accesses a score (114,688 B), 8x the shipped order's reads and writes."""
    traffic, read_pj, write_pj = _flat(("P", "F", "E", "M"))
    assert traffic == 21 * SCORES * WORD_BYTES  # 8 + 7 QK's, 6 the others'
    _, read_inner, write_inner = _flat(("P", "F", "M", "E"))
    assert read_pj / read_inner == pytest.approx(11 / 4)  # reads: 7 read-backs + 4, against 4
    assert write_pj / write_inner == pytest.approx(10 / 3)  # writes: 8 + 2, against 3
