"""Every cascade in einsum/ executes and matches its direct numpy reference (max abs error < 1e-5, float64).

Generated over the library, so a new file is tested automatically; a cascade without a reference fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.load import cascade_from_dict, read_yaml
from archsim.cascade.references import REFERENCES

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
