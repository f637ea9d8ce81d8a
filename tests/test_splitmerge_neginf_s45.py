"""Split-merge cascades (Flash-Decoding's splits, DistAttention's holders, Lamina's history/new-token halves) fed a
split whose key scores are all -inf. Each split's max is a `max` reduction; from -inf (its identity) a split of only
-inf scores keeps max -inf, and exp(QK - LM) = exp(-inf - -inf) = NaN reaches the merged output although the other
splits' keys give the reference a finite answer. `init:` names the reduction's start, the lowest finite double (as
the recurrence cascades start RM, tests/test_neginf_cascades_s44.py): every finite score lies at or above it, the
dead split's weights are exp(-inf - start) = 0 and its merge weight exp(start - GM) = 0, so the cascade equals the
direct numpy reference. q > 0 and k = -inf on a key row give q·k = -inf for every query.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.references import REFERENCES, reference_shape
from archsim.errors import SpecError
from archsim.library import load_cascade_spec

EINSUM = Path(__file__).resolve().parents[1] / "einsum"
LOWEST = -1.7976931348623157e308  # the lowest finite double
# keys [start, start + count) scored -inf, each a whole split at the file's defaults: splitkv's 4 splits and
# DistAttention's 4 holders of 16 keys hold 4 keys each; Lamina's history is all 16 cached keys (the new token
# KN stays finite, so the reference is finite)
KILLED = {
    "attention-decode-splitkv": ((0, 4), (4, 4), (12, 4), (0, 8), (4, 12)),
    "distattention-decode": ((0, 4), (4, 4), (12, 4), (0, 8), (4, 12)),
    "attention-decode-divide-conquer": ((0, 16),),
}


def _reference_av(binding, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"):
        return REFERENCES[binding.cascade.reference](
            {k: v.reshape(reference_shape(binding, k)) for k, v in inputs.items()}, binding.params)["AV"]


@pytest.mark.parametrize("name", sorted(KILLED))
def test_a_split_of_minus_inf_scores_leaves_the_reference_output(name: str) -> None:
    binding = bind(load_cascade_spec(name))
    for start, count in KILLED[name]:
        inputs = random_inputs(binding, 0)
        inputs["Q"] = np.abs(inputs["Q"]) + 0.1
        inputs["K"][..., start:start + count, :] = -np.inf
        want = _reference_av(binding, inputs)
        got = execute(binding, inputs)["AV"].reshape(want.shape)
        assert np.isfinite(want).all(), (name, start, count)
        assert np.isfinite(got).all(), (name, start, count)
        assert np.abs(got - want).max() < 1e-12, (name, start, count)


def test_every_split_minus_inf_stays_non_finite_as_the_reference() -> None:
    """All keys -inf: no key to attend, the reference is 0/0 = NaN, and so is the cascade (the dead splits' starts
    merge to the same GM = start, weight 1 each over a sum of 0)."""
    binding = bind(load_cascade_spec("attention-decode-splitkv"))
    inputs = random_inputs(binding, 0)
    inputs["Q"] = np.abs(inputs["Q"]) + 0.1
    inputs["K"][:] = -np.inf
    assert np.isnan(_reference_av(binding, inputs)).all()
    assert np.isnan(execute(binding, inputs)["AV"]).all()


@pytest.mark.parametrize("name", sorted(KILLED))
def test_the_reduction_start_changes_no_operation_count(name: str) -> None:
    """`init` on a reduction is the accumulator's starting value, which a kernel sets as it sets -inf: no op."""
    data = yaml.safe_load((EINSUM / f"{name}.yaml").read_text())
    assert set(data["init"].values()) == {LOWEST}
    without = {key: value for key, value in data.items() if key != "init"}
    assert (analyze(bind(cascade_from_dict(data))).total_ops()
            == analyze(bind(cascade_from_dict(without))).total_ops())


def _small(init: dict, reduce: str = "max", mask: str = "j < i", fill: str = "") -> dict:
    """M[i] over X[i, j] (3 x 3) by `reduce` where `mask`, with `init` and an optional `else` value."""
    return {
        "name": "small", "params": {"n": 3, "word_bytes": 2}, "ranks": {"I": "n", "J": "n"},
        "inputs": {"X": ["I", "J"]}, "init": init,
        "einsums": [f"M[i] = {reduce}(j: X[i,j]) where {mask}{fill}", "Y[i] = M[i] - 1"], "outputs": ["Y"],
    }


X = np.array([[9.0, 9.0, 9.0], [-7.0, 9.0, 9.0], [2.0, -3.0, 9.0]])


def test_a_max_reduction_starts_at_its_init() -> None:
    """j < i keeps no point of row 0, X[1,0] = -7 of row 1, and X[2,0:2] = (2, -3) of row 2: from the start -5,
    M = (-5, max(-5, -7), max(-5, 2, -3)) = (-5, -5, 2), where the identity -inf would give (-inf, -7, 2)."""
    binding = bind(cascade_from_dict(_small({"M": -5})))
    assert execute(binding, {"X": X})["M"].tolist() == [-5.0, -5.0, 2.0]


def test_a_min_reduction_starts_at_its_init_and_else_fills_an_empty_row() -> None:
    """min from 4 over the same points: row 1 min(4, -7) = -7, row 2 min(4, 2, -3) = -3; row 0 keeps no point and
    takes its `else` value 0 (the fill wins over the start, as it wins over the identity)."""
    binding = bind(cascade_from_dict(_small({"M": 4}, reduce="min", fill=" else 0")))
    assert execute(binding, {"X": X})["M"].tolist() == [0.0, -7.0, -3.0]


@pytest.mark.parametrize(("init", "what"), [
    ({"Y": 0}, "Y is a map Einsum"),
    ({"X": 0}, "X is an input"),
    ({"Z": 0}, "Z is no tensor of the cascade"),
])
def test_init_on_no_recurrence_and_no_max_or_min_reduction_is_refused(init: dict, what: str) -> None:
    with pytest.raises(SpecError) as caught:
        cascade_from_dict(_small(init), source="small.yaml")
    error = caught.value
    assert (error.source, error.where) == ("small.yaml", f"init.{next(iter(init))}")
    assert "a recurrence" in error.message and "a max or min reduction" in error.message
    assert what in error.message


def test_init_on_a_sum_reduction_is_exit_2_naming_the_file_and_field(cli, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(_small({"M": 0}, reduce="sum")))
    result = cli("check", str(spec), expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{spec}: init.M:" in lines[0] and "M is a sum reduction" in lines[0], lines[0]


@pytest.mark.parametrize(("reduce", "start", "sign"), [("max", float("inf"), "-"), ("min", -float("inf"), "+")])
def test_a_start_no_value_can_pass_is_refused(reduce: str, start: float, sign: str) -> None:
    """+inf as a max's start (-inf as a min's) made every output that start: `analyze` took it, and only `execute
    --check` failed, on NaN (audit helper-546)."""
    with pytest.raises(SpecError) as caught:
        cascade_from_dict(_small({"M": start}, reduce=reduce), source="small.yaml")
    assert (caught.value.source, caught.value.where) == ("small.yaml", "init.M")
    assert caught.value.message == (f"expected a start a {reduce} reduction's values can pass (a number or "
                                     f"{sign}inf), got {start}")
