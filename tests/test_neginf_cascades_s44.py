"""Online-softmax recurrences (running max RM over key tiles, ring steps or spans) fed a stretch of keys whose
scores are all -inf: with RM starting at -inf, a row whose first tiles score only -inf keeps RM = -inf, and both
exp(QK - RM) and the rescale exp(RM[i] - RM[i+1]) read exp(-inf - -inf) = NaN, which reaches the output. RM starts
at the lowest finite double instead (as vLLM's paged attention starts its max at -FLT_MAX), every finite score lies
at or above it, so the cascade is the direct numpy reference wherever that is finite, and non-finite where it is (a
causal row whose visible keys are all -inf). q > 0 and k = -inf on a key row give q·k = -inf for every query.
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.references import REFERENCES, reference_shape
from archsim.library import load_cascade_spec

RECURRENCES = ("attention-1pass", "attention-1pass-gqa", "attention-1pass-causal", "attention-1pass-causal-gqa",
               "attention-block-sparse", "ring-attention", "ring-attention-causal", "ring-attention-stripe",
               "ring-attention-zigzag", "usp-attention", "usp-attention-noncausal", "attention-sliding-window",
               "attention-sliding-window-gqa")
# keys [start, start + count) scored -inf: whole tiles (4 keys at the defaults), a ring device's block (4) and a
# USP ring span (8), first or later in a row's walk
KILLED = ((0, 4), (0, 8), (4, 4), (4, 8), (8, 8))


@pytest.mark.parametrize("name", RECURRENCES)
def test_a_stretch_of_minus_inf_scores_leaves_the_reference_output(name: str) -> None:
    binding = bind(load_cascade_spec(name))
    for start, count in KILLED:
        inputs = random_inputs(binding, 0)
        inputs["Q"] = np.abs(inputs["Q"]) + 0.1
        inputs["K"][..., start:start + count, :] = -np.inf
        got = execute(binding, inputs)["AV"]
        with np.errstate(all="ignore"):
            want = REFERENCES[binding.cascade.reference](
                {k: v.reshape(reference_shape(binding, k)) for k, v in inputs.items()}, binding.params)["AV"]
        got = got.reshape(want.shape)
        finite = np.isfinite(want)
        assert finite.any(), (name, start, count)
        assert np.array_equal(np.isfinite(got), finite), (name, start, count)
        assert np.abs(got[finite] - want[finite]).max() < 1e-12, (name, start, count)
