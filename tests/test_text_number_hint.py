"""A number YAML 1.1 reads as text (no dot, or an unsigned exponent) is refused with a hint that writes the user's
own value as YAML reads a float: it named a fixed 1.0e+9 whatever the value (found by fuzzing sweep specs)."""

from __future__ import annotations

import pytest
import yaml

from archsim.errors import SpecError, text_number_hint
from archsim.spec_files import finite_number


@pytest.mark.parametrize("text", ["1e9", "1.0e10", "123e12", "4.57e10", "1e-3", "1.2345678e9"])
def test_the_hint_writes_the_same_value_as_a_yaml_float(text: str) -> None:
    written = text_number_hint(text).split("write ")[1].rstrip(")")
    assert yaml.safe_load(written) == float(text) and isinstance(yaml.safe_load(written), float)


def test_no_hint_for_what_is_no_number() -> None:
    assert text_number_hint("abc") == text_number_hint(7) == text_number_hint("inf") == ""


@pytest.mark.parametrize("text", ["4", "+12", "-3"])
def test_a_quoted_whole_number_is_hinted_as_itself(text: str) -> None:
    """A count written "4" is the integer 4 without its quotes, not the float 4.0e+0."""
    assert text_number_hint(text) == f" (YAML reads this as text: write {int(text)} without quotes)"
    assert yaml.safe_load(str(int(text))) == int(text)


def test_a_finite_field_refuses_nan_without_offering_inf() -> None:
    """`finite_number` took NaN to `number`, whose message offered inf, which the field then refused."""
    with pytest.raises(SpecError) as info:
        finite_number(float("nan"), "s.yaml", "devices.gpu.price_per_hour")
    assert info.value.message == "expected a finite number, got nan"
