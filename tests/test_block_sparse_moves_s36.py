"""A data-dependent mask's moves are counted under its static conjuncts (review a7, session 36).

MInference's block-sparse mask is `j * block + m0 <= i * block + p0 and BSEL[...] > 0`: which key blocks a query
block keeps is data, that none lies after the query is not. Before, a mask that reads a tensor counted every move,
so on `fusemax-minference-block-sparse` (Llama-3-8B, 16K tokens, batch 1) SNV's partial sums were written and read
back in the global buffer on every key block, above the causal diagonal too: 512 x |SNV| (256 key steps, 256 writes
+ 255 read-backs + AV's read), whatever k_b. Under the causal conjunct a 256-query tile reaches only the key steps
up to its diagonal, about half of them."""

from __future__ import annotations

import numpy as np

from archsim.cascade import syntax as S
from archsim.cascade.ir import Param, Ref, Term, Var
from archsim.cascade.mask_count import boxes_holding_a_point, static_conjuncts
from archsim.point import run_point

SNV_BYTES = 32 * 16384 * 128 * 2  # heads x tokens x head dim x 2 B


def test_static_conjuncts_drop_the_tensor_reads() -> None:
    causal = S.BinOp("<=", Var("m"), Var("p"))
    selected = S.BinOp(">", Ref("BSEL", (Term("p"), Term("m")), "BSEL[p,m]"), S.Num(0))
    assert static_conjuncts(S.BinOp("and", causal, selected)) == causal
    assert static_conjuncts(S.BinOp("and", selected, causal)) == causal
    assert static_conjuncts(selected) is None
    assert static_conjuncts(S.BinOp("or", causal, selected)) is None  # an `or` with a tensor read bounds nothing


def test_block_sparse_partial_sums_move_only_up_to_the_diagonal() -> None:
    traffic = [run_point("fusemax-minference-block-sparse", workload="llama3-8b",
                         sets={"seq_len": 16384, "batch": 1, "k_b": k_b}).traffic_bytes["GlobalBuffer"]["SNV"]
               for k_b in (1, 100)]
    assert traffic[0] == traffic[1]  # the selection is data: its positions are not counted, only the causal part
    assert traffic[0] <= 0.55 * 512 * SNV_BYTES  # was 512 x |SNV|: every key step of every query tile
    assert traffic[0] >= 0.5 * 512 * SNV_BYTES  # the causal half and the diagonal steps, no fewer


def test_a_spilling_block_sparse_point_is_counted_without_enumerating_its_diagonal_boxes() -> None:
    """At 64K each diagonal move's box holds 4 x 1024 x 64 x 64 points of (i, j, m0, p0); halving its short axes
    first cut it into thousands of mixed pieces before one held a point (5 GB at 20K, out of memory at 64K). A
    corner of the box decides a causal predicate, so the point runs as it did before the causal conjunct was
    counted (1.69 s, DRAM-bound: the kept score rows, K and V spill, and the spilled share of K and V is read from
    DRAM by every query tile, `tests/test_spill_accesses_s47.py`; 1.451 s while it was read once)."""
    result = run_point("fusemax-minference-block-sparse", workload="llama3-8b",
                       sets={"seq_len": 65536, "batch": 1, "k_b": 8})
    assert result.feasible and 1.68 < result.latency_s < 1.70


def test_a_round_that_decides_every_piece_leaves_no_corners_to_check() -> None:
    """Review a8: a ring step mask (`t == (d - s + devices) % devices`) over the box d 60..73, s 65..67, t 4..40 is
    mixed, no corner holds, and its halves are all decided; the corner check was then asked about no boxes and
    crashed (numpy cannot reshape an empty array to (0, -1)). The box holds a point, by brute force."""
    d, s, t, devices = Var("d"), Var("s"), Var("t"), Param("devices")
    ring = S.BinOp("==", t, S.BinOp("%", S.BinOp("+", S.BinOp("-", d, s), devices), devices))
    lows, highs = np.array([[60.0], [65.0], [4.0]]), np.array([[73.0], [67.0], [40.0]])
    brute = any(int(tt) == (dd - ss + 8) % 8 for dd in range(60, 74) for ss in range(65, 68) for tt in range(4, 41))
    assert boxes_holding_a_point(ring, ["d", "s", "t"], lows, highs, {"devices": 8}) == int(brute) == 1
