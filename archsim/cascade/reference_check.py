"""Whether a cascade computes what its reference says: the cascade run by the numpy interpreter (`interpret`) on
seeded standard-normal inputs, against its textbook numpy reference (`references`) on the same inputs, output by
output, in float64. `archsim execute --check` shows these errors; a sweep's GPU points (`archsim.dse.spec`) need the
cascade to be shown to compute the attention a GPU kernel times, so they run it at the cascade's test sizes (its
params' defaults, a few thousand points: milliseconds)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from archsim.cascade.bind import Binding, bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.ir import Cascade
from archsim.cascade.references import REFERENCES, check_sizes, reference_shape

CHECK_TOLERANCE = 1e-5  # max abs error vs the reference, float64


def reference_errors(binding: Binding, inputs: Mapping[str, np.ndarray],
                     results: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Max abs error of each output of the cascade's reference against the cascade's `results` on `inputs`, the
    arrays in the reference's layout (`references.reference_shape`: a partitioned rank's parts as one axis); NaN or
    inf where either is not finite there."""
    shaped = {name: array.reshape(reference_shape(binding, name)) for name, array in inputs.items()}
    expected = REFERENCES[binding.cascade.reference](shaped, binding.params)
    return {name: float(np.max(np.abs(results[name].reshape(reference_shape(binding, name)) - want)))
            for name, want in expected.items()}


def worst_error(errors: Mapping[str, float]) -> float:
    """The largest of `reference_errors`' errors, NaN if any is (Python's `max` would skip a NaN after a number)."""
    return float(np.max(list(errors.values())))


def error_at_test_sizes(cascade: Cascade, seed: int = 0) -> float:
    """`worst_error` of `reference_errors` for `cascade` bound at its test sizes (its params' own values) on inputs of
    `seed`: below `CHECK_TOLERANCE` when it computes its reference (a cascade that names one, `Cascade.reference`;
    its layouts were checked when it loaded, `references.check_fits`); NaN fails any comparison with it."""
    binding = bind(cascade, None, {}, source=cascade.source)
    check_sizes(binding)
    inputs = random_inputs(binding, seed)
    with np.errstate(all="ignore"):  # an overflow or a division by zero makes the error NaN, which fails
        results = execute(binding, inputs)
    return worst_error(reference_errors(binding, inputs, results))
