"""Every cascade in einsum/ executes and matches its direct numpy reference (max abs error < 1e-5, float64).

Generated over the library, so a new file is tested automatically; a cascade without a reference fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.references import REFERENCES
from archsim.spec_files import read_yaml

TOLERANCE = 1e-5


@pytest.mark.parametrize("name", library.names("cascades"))
def test_cascade_matches_reference(name: str) -> None:
    cascade = library.load_cascade_spec(name)
    assert cascade.reference in REFERENCES, f"{name} must name a reference in archsim.cascade.references"
    binding = bind(cascade)
    for seed in (0, 1):
        inputs = random_inputs(binding, seed)
        outputs = execute(binding, inputs)
        expected = REFERENCES[cascade.reference](inputs, binding.params)
        assert set(expected) <= set(cascade.outputs)
        for tensor, want in expected.items():
            got = outputs[tensor]
            assert got.shape == want.shape, (tensor, got.shape, want.shape)
            assert np.isfinite(got).all()
            assert np.max(np.abs(got - want)) < TOLERANCE


# Masked attention cascades whose running-state steps skip the key tiles a query does not see (`where tile`):
# sizes where many tiles are fully masked (no sinks, a short window, blocks not aligned with the tiles)
TILE_SKIPPING = [
    ("attention-1pass-causal", {"seq_len": 24, "tile_kv": 4}, lambda m, p, q: m <= p),
    ("attention-1pass-causal-gqa", {"seq_len": 24, "tile_kv": 8}, lambda m, p, q: m <= p),
    ("attention-sliding-window", {"seq_len": 24, "tile_kv": 4, "window": 3, "sinks": 0},
     lambda m, p, q: m <= p and (p - m < q["window"] or m < q["sinks"])),
    ("attention-sliding-window", {"seq_len": 24, "tile_kv": 2, "window": 5, "sinks": 3},
     lambda m, p, q: m <= p and (p - m < q["window"] or m < q["sinks"])),
    ("attention-block-sparse", {"seq_len": 24, "tile_kv": 4, "block": 3},
     lambda m, p, q: abs(m // q["block"] - p // q["block"]) <= 1 or m // q["block"] == 0),
    ("attention-block-sparse", {"seq_len": 24, "tile_kv": 2, "block": 4},
     lambda m, p, q: abs(m // q["block"] - p // q["block"]) <= 1 or m // q["block"] == 0),
]


@pytest.mark.parametrize(("name", "sets", "visible"), TILE_SKIPPING)
def test_skipped_key_tiles_keep_the_reference_and_count_the_tiles_seen(name, sets, visible) -> None:
    """The reference still holds where most tiles are skipped, and a state step is counted for each (tile,
    query) pair whose tile holds a key the query sees, by brute force over the keys."""
    from archsim.cascade.analysis import analyze

    cascade = library.load_cascade_spec(name)
    binding = bind(cascade, overrides=sets)
    inputs = random_inputs(binding, 3)
    got = execute(binding, inputs)["AV"]
    want = REFERENCES[cascade.reference](inputs, binding.params)["AV"]
    assert np.isfinite(got).all() and np.max(np.abs(got - want)) < TOLERANCE
    n, tile, q = int(sets["seq_len"]), int(sets["tile_kv"]), binding.params
    seen = sum(any(visible(m, p, q) for m in range(m1 * tile, (m1 + 1) * tile))
               for m1 in range(n // tile) for p in range(n))
    heads = binding.rank_sizes["B"] * binding.rank_sizes["H"]
    assert analyze(binding).points["RM"] == heads * seen < heads * (n // tile) * n


def test_library_covers_the_issue_list() -> None:
    wanted = {
        "attention-3pass", "attention-2pass", "attention-1pass", "attention-1pass-causal",
        "attention-decode-gqa", "attention-decode-splitkv", "attention-mla-decode", "attention-sliding-window",
        "linear-attention", "lightning-attention-2", "qkv-projection", "output-projection", "ffn", "moe-experts",
    }
    assert wanted <= set(library.names("cascades"))


def test_the_reference_check_can_fail() -> None:
    """Dropping the running-max correction (SPD = PRM * RD) from 1-pass attention must be caught."""
    data = read_yaml(library.find("cascades", "attention-1pass"))
    right = bind(cascade_from_dict(data))
    data["einsums"] = data["einsums"].replace("PRM[b,h,m1,p] * RD[b,h,m1,p]", "RD[b,h,m1,p]")
    wrong = bind(cascade_from_dict(data))
    inputs = random_inputs(right, 0)
    inputs["K"] = inputs["K"] * 3.0  # spread the scores so the per-tile maxima differ
    expected = REFERENCES["attention"](inputs, right.params)["AV"]
    assert np.max(np.abs(execute(right, inputs)["AV"] - expected)) < TOLERANCE
    assert np.max(np.abs(execute(wrong, inputs)["AV"] - expected)) > 1e-3
