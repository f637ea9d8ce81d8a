"""A data-dependent mask's moves are counted under its static conjuncts (review a7, session 36).

MInference's block-sparse mask is `j * block + m0 <= i * block + p0 and BSEL[...] > 0`: which key blocks a query
block keeps is data, that none lies after the query is not. Before, a mask that reads a tensor counted every move,
so on `fusemax-minference-block-sparse` (Llama-3-8B, 16K tokens, batch 1) SNV's partial sums were written and read
back in the global buffer on every key block, above the causal diagonal too: 512 x |SNV| (256 key steps, 256 writes
+ 255 read-backs + AV's read), whatever k_b. Under the causal conjunct a 256-query tile reaches only the key steps
up to its diagonal, about half of them."""

from __future__ import annotations

from archsim.cascade import syntax as S
from archsim.cascade.ir import Ref, Term, Var
from archsim.cascade.mask_count import static_conjuncts
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
