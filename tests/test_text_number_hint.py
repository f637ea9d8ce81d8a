"""A number YAML 1.1 reads as text (no dot, or an unsigned exponent) is refused with a hint that writes the user's
own value as YAML reads a float: it named a fixed 1.0e+9 whatever the value (found by fuzzing sweep specs)."""

from __future__ import annotations

import pytest
import yaml

from archsim.cascade.load import text_number_hint


@pytest.mark.parametrize("text", ["1e9", "1.0e10", "123e12", "4.57e10", "1e-3", "1.2345678e9"])
def test_the_hint_writes_the_same_value_as_a_yaml_float(text: str) -> None:
    written = text_number_hint(text).split("write ")[1].rstrip(")")
    assert yaml.safe_load(written) == float(text) and isinstance(yaml.safe_load(written), float)


def test_no_hint_for_what_is_no_number() -> None:
    assert text_number_hint("abc") == text_number_hint(7) == text_number_hint("inf") == ""
