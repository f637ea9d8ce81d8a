"""Top-k selection in the sparse cascades breaks ties by index, as the references (numpy's stable argsort) and the
systems (torch.topk) keep exactly k: a rank is the count of larger scores plus the count of equal scores before it,
summed from two halves, the scores before the item (larger or equal) and from it on (larger): NAME = NAMEL + NAMEU.

Expectations (hand-derived): with every candidate's score equal the ranks are the candidates' positions in order,
so MoE routes each token to experts 0 .. top_k - 1, Quest's slot s holds page s, TokenSelect keeps the first k
candidates; and each cascade equals its reference (error < 1e-9, float64) where Q = 0 makes the scores tie.
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.reference_check import reference_errors, worst_error

TOLERANCE = 1e-9  # float64, as tests/test_sparse_cascades.py


def _run(name: str, change) -> tuple:
    binding = bind(library.load_cascade_spec(name))
    inputs = random_inputs(binding, 0)
    change(inputs)
    results = execute(binding, inputs)
    return binding, inputs, results, worst_error(reference_errors(binding, inputs, results))


def _rank(results: dict, name: str) -> np.ndarray:
    """The rank NAME from its two halves (a mask reads their sum)."""
    return results[name + "L"] + results[name + "U"]


def _same_router_columns(inputs: dict) -> None:
    inputs["WR"][:] = inputs["WR"][:, :1]  # every expert's router logit equal, for every token


def test_moe_routes_each_token_to_exactly_top_k_experts_on_a_tie() -> None:
    binding, _, results, error = _run("moe-experts", _same_router_columns)
    rank = _rank(results, "RK")
    assert (rank == np.arange(rank.shape[1])).all()  # ranks 0, 1, 2, 3: ties go to the lower index
    assert ((rank < binding.params["top_k"]).sum(axis=1) == 2).all()  # top_k 2, not all 4 tied experts
    assert error < TOLERANCE


def _same_page_bounds(inputs: dict) -> None:
    for name in ("KMIN", "KMAX"):
        inputs[name][:] = inputs[name][:, :, :1]  # every page's bound equal


def test_quest_slot_s_holds_page_s_on_a_tie() -> None:
    _, inputs, results, error = _run("quest-decode", _same_page_bounds)
    rank = _rank(results, "PR")
    assert (rank == np.arange(rank.shape[-1])).all()  # a permutation: one page per slot, none added to another
    slots, page = results["KS"].shape[2:4]  # KS [B, H, S, T, E]: slot s, token t holds key s * page + t
    assert (results["KS"] == inputs["K"][:, :, :slots * page].reshape(results["KS"].shape)).all()
    assert error < TOLERANCE


def _same_keys(inputs: dict) -> None:
    inputs["K"][:] = inputs["K"][:, :, :1]  # every cached key equal: every vote equal


def test_tokenselect_keeps_exactly_k_candidates_on_a_tie() -> None:
    binding, _, results, error = _run("tokenselect-decode", _same_keys)
    p = binding.params
    sinks, local, k, n = int(p["sinks"]), int(p["local"]), int(p["k"]), int(p["seq_len"])
    candidates = _rank(results, "VR")[:, sinks:n - local]
    assert (candidates == np.arange(n - sinks - local)).all()  # ranked in position order
    assert ((candidates < k).sum(axis=1) == k).all()
    assert error < TOLERANCE


def _zero_queries(inputs: dict) -> None:
    inputs["Q"][:] = 0.0  # every score 0: uniform estimates, so columns, diagonals and blocks tie


@pytest.mark.parametrize("name", ["minference-vertical-slash", "minference-vertical-slash-kernel",
                                  "minference-block-sparse", "flexprefill", "quest-decode", "tokenselect-decode"])
def test_cascade_equals_its_reference_when_scores_tie(name: str) -> None:
    assert _run(name, _zero_queries)[3] < TOLERANCE


def test_flexprefill_keeps_the_fewest_tied_items_reaching_gamma() -> None:
    """Q = 0 at seq_len 48, block 8: the estimate's rows p = 40 .. 47 are uniform, 1 / (p + 1) on keys m <= p, so
    columns 0 .. 40 tie at v = sum_p 1 / (p + 1) (diagonals 0 .. 40 too) of a total of 8, and the pooled block
    scores of query block i tie at 1 / (i + 1). Kept in index order while the tied ones before sum below gamma:
    ceil(gamma * 8 / v) columns (and diagonals), ceil(gamma * (i + 1)) blocks of row i (gamma 0.55: no product is
    a whole number, so rounding cannot move the boundary)."""
    gamma = 0.55
    binding = bind(library.load_cascade_spec("flexprefill"), {"gamma": gamma})
    inputs = random_inputs(binding, 0)
    _zero_queries(inputs)
    results = execute(binding, inputs)
    tied = sum(1 / (p + 1) for p in range(40, 48))
    assert (results["VSEL"].sum(axis=-1) == np.ceil(gamma * 8 / tied)).all()  # 25 columns, not all 41 tied
    assert (results["SSEL"].sum(axis=-1) == np.ceil(gamma * 8 / tied)).all()
    rows = results["BSEL"].sum(axis=-1)  # [B, G, R, I]
    assert (rows == np.ceil(gamma * np.arange(1, 7))).all()  # 1, 2, 2, 3, 3, 4 of 1 .. 6 causal blocks
