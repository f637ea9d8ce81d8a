"""Lamina's divide-and-conquer decode attention (`einsum/attention-decode-divide-conquer.yaml`, arXiv 2405.01814v2
§4, ../shared/reference/pim.md §3.4): attention over the seq_len history tokens merged with the new token's is
attention over all seq_len + 1 tokens, and its operation counts are those of the history's plain decode attention
plus a merge of a few operations per query head.

Expectations: (a) the plain `attention-decode-gqa` cascade bound to seq_len + 1 on the concatenated keys and values,
in float64 (error < 1e-9); (b) a merge with a term dropped misses it by > 1e-3; (c) hand formulas for the merge's
operations at Llama-3-70B's shapes (workloads/llama3-70b.yaml: B=16, H=64, G=8, M=4096, E=F=128).
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import Binding, bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.load import cascade_from_dict
from archsim.spec_files import read_yaml

NAME = "attention-decode-divide-conquer"
TOLERANCE = 1e-9  # float64 interpreter; both cascades subtract the maximum before exp


def _plain_on_all_tokens(split: Binding, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """AV of `attention-decode-gqa` bound to seq_len + 1, the new token appended to the history."""
    params = {**split.params, "seq_len": split.params["seq_len"] + 1}
    plain = bind(library.load_cascade_spec("attention-decode-gqa"), params)
    all_tokens = {
        "Q": inputs["Q"],
        "K": np.concatenate([inputs["K"], inputs["KN"][:, :, None, :]], axis=2),
        "V": np.concatenate([inputs["V"], inputs["VN"][:, :, None, :]], axis=2),
    }
    return execute(plain, all_tokens)["AV"]


def _inputs(binding: Binding, seed: int, new_key_scale: float, query_scale: float) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs; scaling KN makes the new token's score the maximum for more heads (the
    merge's rescaling of the history then matters), scaling Q makes scores far beyond exp's float64 range."""
    inputs = random_inputs(binding, seed)
    inputs["KN"] = inputs["KN"] * new_key_scale
    inputs["Q"] = inputs["Q"] * query_scale
    return inputs


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (8, 2)], ids=["mha", "gqa"])
@pytest.mark.parametrize("seq_len", [1, 2, 5, 16])
@pytest.mark.parametrize(("new_key_scale", "query_scale"), [(1.0, 1.0), (4.0, 1.0), (1.0, 300.0)],
                         ids=["plain", "new-token-max", "scores-over-exp-range"])
def test_equals_plain_decode_over_all_tokens(heads: int, kv_heads: int, seq_len: int, new_key_scale: float,
                                             query_scale: float) -> None:
    params = {"batch": 2, "heads": heads, "kv_heads": kv_heads, "seq_len": seq_len, "head_dim": 8}
    split = bind(library.load_cascade_spec(NAME), params)
    for seed in (0, 1):
        inputs = _inputs(split, seed, new_key_scale, query_scale)
        got = execute(split, inputs)["AV"]
        want = _plain_on_all_tokens(split, inputs)
        assert got.shape == want.shape == (2, heads, 8)
        assert np.isfinite(got).all()
        assert np.max(np.abs(got - want)) < TOLERANCE


@pytest.mark.parametrize(("right", "wrong"), [
    ("HW[b,g,r] * HD[b,g,r] + NW[b,g,r]", "HW[b,g,r] * HD[b,g,r]"),  # the new token left out of the denominator
    ("HW[b,g,r] * HNV[b,g,r,f]", "HNV[b,g,r,f]"),  # the history not rescaled to the common max
], ids=["denominator-without-new-token", "history-not-rescaled"])
def test_a_broken_merge_is_caught(right: str, wrong: str) -> None:
    data = read_yaml(library.find("cascades", NAME))
    assert data["einsums"].count(right) == 1
    data["einsums"] = data["einsums"].replace(right, wrong)
    split = bind(library.load_cascade_spec(NAME))
    broken = bind(cascade_from_dict(data))
    inputs = _inputs(split, 0, new_key_scale=4.0, query_scale=1.0)  # the new token is the max for some heads
    want = _plain_on_all_tokens(split, inputs)
    assert np.max(np.abs(execute(split, inputs)["AV"] - want)) < TOLERANCE
    assert np.max(np.abs(execute(broken, inputs)["AV"] - want)) > 1e-3


def test_history_costs_the_plain_decode_and_the_merge_is_per_head() -> None:
    """The history Einsums cost exactly what `attention-decode-gqa` costs at the same seq_len (QK B*H*M*E MACs,
    SNV B*H*M*F MACs, a max, subtract and exp per score, a sum per score, a divide per output); on top, the new
    token's score is B*H*E MACs, and the merge is per query head: GM a max, HW and NW a subtract and an exp each,
    D a multiply and an add, NV 2 multiplies and an add per output element (B*H*F)."""
    workload = library.load_workload_spec("llama3-70b")
    split = analyze(bind(library.load_cascade_spec(NAME), workload)).ops
    plain = analyze(bind(library.load_cascade_spec("attention-decode-gqa"), workload)).ops
    B, H, M, E, F = 16, 64, 4096, 128, 128
    BH = B * H

    assert plain["QK"] == {"mac": BH * M * E} and plain["SNV"] == {"mac": BH * M * F}
    for history, plain_einsum in (("HQK", "QK"), ("HM", "GM"), ("HSN", "SN"), ("HD", "SD"), ("HNV", "SNV"),
                                  ("AV", "AV")):
        assert split[history] == plain[plain_einsum], history
    assert split["NS"] == {"mac": BH * E}
    assert split["GM"] == {"max": BH}
    assert split["HW"] == split["NW"] == {"add": BH, "exp": BH}
    assert split["D"] == {"add": BH, "mul": BH}
    assert split["NV"] == {"add": BH * F, "mul": 2 * BH * F}

    macs = sum(ops.get("mac", 0) for ops in split.values())
    plain_macs = sum(ops.get("mac", 0) for ops in plain.values())
    assert macs == plain_macs + BH * E  # the history's MACs plus the new token's score
