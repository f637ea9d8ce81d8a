"""`archsim.cascade.interpret.execute` refuses an input holding NaN or +inf with a SpecError naming the tensor, as it
refuses a wrong shape: either spreads through every sum it enters, so the outputs would be NaN with no word of why.
-inf is taken: a score of -inf is a key masked out, which softmax weighs 0 (tests/test_neginf_cascades_s44.py runs
the online-softmax cascades on keys scored -inf)."""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.errors import SpecError


@pytest.mark.parametrize(("tensor", "value"), [("Q", np.nan), ("K", np.inf), ("V", np.nan)])
def test_nan_or_plus_inf_in_an_input_is_refused_naming_it(tensor: str, value: float) -> None:
    binding = bind(library.load_cascade_spec("attention-1pass-causal"))
    inputs = random_inputs(binding, 0)
    inputs[tensor][0, 1, 2, 3] = value
    with pytest.raises(SpecError, match=rf"<inputs>: {tensor}: expected finite values .* at index \(0, 1, 2, 3\)"):
        execute(binding, inputs)


def test_minus_inf_in_an_input_runs() -> None:
    """q > 0 and one key of -inf: query p >= 1 scores it -inf and attends its other keys (weights finite)."""
    binding = bind(library.load_cascade_spec("attention-1pass-causal"))
    inputs = random_inputs(binding, 0)
    inputs["Q"] = np.abs(inputs["Q"]) + 0.1
    inputs["K"][:, :, 1, :] = -np.inf
    assert np.isfinite(execute(binding, inputs)["AV"]).all()
