"""Errors raised for bad input. The CLI turns a `SpecError` into one line on stderr and exit code 2."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


class SpecError(ValueError):
    """A spec (YAML file or Python value) is malformed.

    `source` names the file (or "<python>" for specs built in code, or the CLI option), `where` the YAML path or
    the Einsum, and the message says what was expected. Each part is kept to one line.
    """

    def __init__(self, source: str, where: str, message: str) -> None:
        self.source = _one_line(source) or "''"
        self.where = _one_line(where)
        self.message = _one_line(message)
        # args are the constructor's, so code that rebuilds an exception as type(e)(*e.args) (SimPy does, when a
        # process fails) gets the same SpecError back, not a TypeError
        super().__init__(self.source, self.where, self.message)

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.message}" if self.where else f"{self.source}: {self.message}"


def _one_line(text: str) -> str:
    """Messages are one line: a line break inside a quoted value or a parser's excerpt becomes ' / '."""
    return " / ".join(part.strip() for part in str(text).splitlines() if part.strip())


def check_keys(data: Mapping, allowed: Sequence[str], source: str, where: str = "") -> None:
    """Reject the first key of `data` not in `allowed` (listed in the given order in the message)."""
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        at = f"{where}.{unknown[0]}" if where else unknown[0]
        raise SpecError(source, at, f"unknown key (expected one of {', '.join(allowed)})")


def given(data: Mapping, key: str, empty: object) -> object:
    """An optional field's value: `empty` when it is absent or null (`keep:` with nothing after it); any other value,
    0, false and '' included, goes to the field's check as written (never read as empty)."""
    value = data.get(key)
    return empty if value is None else value


def check_choice(where: str, value: object, allowed: Sequence[object], source: str = "<python>") -> None:
    """Reject a spec whose `where` field (e.g. "NPUSpec.fold_timing") is not one of `allowed`, naming `source` (a
    spec built in code by default)."""
    if value not in allowed:
        raise SpecError(source, where, f"expected one of {', '.join(map(str, allowed))}, got {value!r}")


def kind_of(value: object) -> str:
    """A value's type as an error message names it (`nothing` for a YAML null)."""
    return "nothing" if value is None else type(value).__name__


def check_header(data: object, keys: Sequence[str], optional: Sequence[str], text: Sequence[str], source: str,
                 where: str = "", meanings: Mapping[str, str] | None = None) -> None:
    """The common head of a preset spec (GPU, link, system): a mapping with only `keys`, each present unless
    `optional`, the `text` keys strings, and `name` and `source` not empty; a missing key's error says what it
    is where `meanings` does (a datasheet names the quantity, not the field)."""
    def at(key: str) -> str:
        return f"{where}.{key}" if where else key

    if not isinstance(data, Mapping):
        raise SpecError(source, where, f"expected a mapping with {', '.join(keys)}, got {kind_of(data)}")
    check_keys(data, keys, source, where)
    for key in keys:
        if key not in data and key not in optional:
            meaning = (meanings or {}).get(key)
            raise SpecError(source, at(key), f"missing: expected {meaning}" if meaning else "missing")
    for key in text:
        if key in data and not isinstance(data[key], str):
            raise SpecError(source, at(key), f"expected a string, got {kind_of(data[key])}")
    for key in ("name", "source"):
        if key in keys and not data[key]:
            raise SpecError(source, at(key), "expected a non-empty string")


def text_number_hint(value: Any) -> str:
    """Why a number came out as text: YAML 1.1 reads `1e9` (no dot, no exponent sign) as a string."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    if value.strip().lstrip("+-").isdigit():  # a quoted whole number
        return f" (YAML reads this as text: write {int(value)} without quotes)"
    mantissa, _, exponent = f"{number:.16e}".partition("e")  # the value as YAML reads a float: a dot, a signed exponent
    return f" (YAML reads this as text: write {float(mantissa)!r}e{int(exponent):+d})"
