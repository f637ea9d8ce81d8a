"""`pareto_mask` over one objective (the front is every point of the best value, ties included) and over none (a
clear error, not an IndexError from the scan)."""

import numpy as np
import pandas as pd
import pytest

from archsim.dse.pareto import pareto_mask
from archsim.dse.spec import MAXIMISED


def _brute_force(costs: np.ndarray) -> list[bool]:
    """No other row is no worse in every cost and better in one."""
    return [not any((other <= row).all() and (other < row).any() for other in costs) for row in costs]


def test_one_objective_keeps_every_tie_of_the_best():
    df = pd.DataFrame({"latency_s": [3.0, 1.0, 1.0, 2.0]})
    assert pareto_mask(df, ["latency_s"]).tolist() == [False, True, True, False]


@pytest.mark.parametrize("objective", ["latency_s", "throughput_tok_s"])
def test_one_objective_equals_brute_force(objective):
    rng = np.random.default_rng(7)
    values = rng.integers(0, 6, size=40).astype(float)  # few distinct values: many ties
    df = pd.DataFrame({objective: values})
    sign = -1.0 if objective in MAXIMISED else 1.0
    assert pareto_mask(df, [objective]).tolist() == _brute_force(sign * values[:, None])


def test_no_objectives_is_refused():
    df = pd.DataFrame({"latency_s": [1.0, 2.0]})
    with pytest.raises(ValueError, match="objective"):
        pareto_mask(df, [])
