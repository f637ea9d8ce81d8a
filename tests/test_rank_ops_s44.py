"""A top-k rank costs one compare and one add per candidate pair (a (score, index) key compare; n^2 of them, above
a sort's n log n and a GPU radix top-k's linear passes, which `archsim.model.gpu_sparse` times), while breaking ties
by index: the rank is split by the static order of the two positions, larger
or equal scores before the item (NAMEL) and larger ones from it on (NAMEU), each Einsum's positional mask free.

Expectations by hand at each cascade's defaults (the file's params): pairs are (item, candidate) points, a half's
points split them; a rank an Einsum reads is summed in its own Einsum, one add per candidate item.
- moe-experts: tokens 6 x experts 4 x 4 = 96 pairs, the only compares.
- quest-decode: batch 2 x heads 2 x pages (64 / 4 = 16) x 16 = 1024 pairs, the only compares.
- tokenselect-decode: batch 2 x 48 tokens x 42 candidates (48 - sinks 2 - local 4) = 4032 pairs, the only compares.
- minference-block-sparse: batch 1 x heads 4, 6 query blocks, row i ranks i + 1 blocks among i + 1:
  4 x (1 + 4 + 9 + 16 + 25 + 36) = 364 pairs; BR adds the halves on the 4 x 21 causal blocks, which BSEL compares:
  448 compares in all.
- minference-vertical-slash(-kernel): 4 heads x 48 columns x 46 candidates (sink_columns 2) = 8832 pairs, as many
  for diagonals (local_diagonals 2); VR and SR add on 4 x 46 candidates each, VSEL and SSEL compare there:
  2 x 8832 + 2 x 184 = 18032 compares.
- flexprefill: BG 364 pairs (as block-sparse), VG and SG 4 x 48 x 48 = 9216 each, weighted sums (a mac per pair);
  BG adds on 84 causal blocks, VG and SG on 4 x 48 = 192 items; BSEL, VSEL, SSEL compare as many, FLAG 4 heads:
  364 + 2 x 9216 + 84 + 2 x 192 + 4 = 19268 compares. The four-compare tie-break (larger, or equal + lower index
  > 1) counted 4 compares a pair.
"""

from __future__ import annotations

import pytest

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind

# cascade -> ({rank: (pairs, reduce op type, candidate items its own add Einsum sums, or 0)}, all compares)
RANKS = {
    "moe-experts": ({"RK": (96, "add", 0)}, 96),
    "quest-decode": ({"PR": (1024, "add", 0)}, 1024),
    "tokenselect-decode": ({"VR": (4032, "add", 0)}, 4032),
    "minference-block-sparse": ({"BR": (364, "add", 84)}, 448),
    "minference-vertical-slash": ({"VR": (8832, "add", 184), "SR": (8832, "add", 184)}, 18032),
    "minference-vertical-slash-kernel": ({"VR": (8832, "add", 184), "SR": (8832, "add", 184)}, 18032),
    "flexprefill": ({"BG": (364, "mac", 84), "VG": (9216, "mac", 192), "SG": (9216, "mac", 192)}, 19268),
}


def _analysis(name: str):
    return analyze(bind(library.load_cascade_spec(name)))


@pytest.mark.parametrize("name", list(RANKS))
def test_each_candidate_pair_costs_one_compare_and_one_add(name: str) -> None:
    analysis = _analysis(name)
    for rank, (pairs, reduce_op, items) in RANKS[name][0].items():
        halves = (rank + "L", rank + "U")
        for half in halves:
            assert analysis.ops[half] == {reduce_op: analysis.points[half], "cmp": analysis.points[half]}, half
        assert sum(analysis.points[half] for half in halves) == pairs, rank
        if items:
            assert analysis.ops[rank] == {"add": items}, rank


@pytest.mark.parametrize("name", list(RANKS))
def test_the_cascade_compares_once_per_pair(name: str) -> None:
    assert _analysis(name).total_ops()["cmp"] == RANKS[name][1]
