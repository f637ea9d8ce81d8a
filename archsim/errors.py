"""Errors raised for bad input. The CLI turns a `SpecError` into one line on stderr and exit code 2. `Plausible`
is the range a hardware number lies in on every real device, which tells a unit slip (MHz for Hz) from a value."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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

    @property
    def reason(self) -> str:
        """The field and the message, without the source: what a sweep stores and a report shows."""
        return f"{self.where}: {self.message}" if self.where else self.message

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def loaded_for(source: str, where: str, load: Callable[[Any], Any], arg: Any) -> Any:
    """`load(arg)`, a spec that `source` names at `where`; a SpecError it raises is raised again against that
    field, with the loaded spec's own file and field in the message (`sys.yaml: links.tp: nv.yaml: latency_s:
    missing`)."""
    try:
        return load(arg)
    except SpecError as error:
        raise SpecError(source, where, str(error)) from None


class UnknownField(SpecError):
    """A path that names no field of the spec (an unknown key, a dotted path into nothing): what is wrong is the
    key, whatever its value (a sweep blames the axis that names it, not the axis's value)."""


class LimitError(SpecError):
    """A point refused beyond a resource limit (`archsim.limits.env_limit`, an ARCHSIM_MAX_* variable), its message
    advising to raise the variable: what is wrong is the limit, not the input, so a model that catches a SpecError to
    try something else (a padded prompt, another candidate mapping) does not swallow one, and what it decides
    advises the limit too (`archsim.limits.advises_limit`)."""


def _one_line(text: str) -> str:
    """Messages are one line: a line break inside a quoted value or a parser's excerpt becomes ' / '."""
    return " / ".join(part.strip() for part in str(text).splitlines() if part.strip())


def field_path(where: str, key: str) -> str:
    """The YAML path of `key` inside the mapping at `where` (`where.key`; `key` at the top)."""
    return f"{where}.{key}" if where else key


def first_repeat(values: Sequence[Any]) -> tuple[int, int] | None:
    """(index of the first value seen before, index of its first occurrence) in `values`, or None when each value
    is there once: a list option's or a sweep axis's repeat (`archsim.commands.options.once_each`,
    `archsim.dse.spec`), each refused with its own message. A true/false is never the same value as a number
    (`_same`: Python's True == 1), so `[true, 1]` goes on to its field's check, which says what it takes."""
    for i, value in enumerate(values):
        for j in range(i):
            if _same(values[j], value):
                return i, j
    return None


def _same(a: Any, b: Any) -> bool:
    """`a == b`, where a bool equals only a bool (in lists and mappings too)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def check_keys(data: Mapping, allowed: Sequence[str], source: str, where: str = "") -> None:
    """Reject the first key of `data` not in `allowed` (listed in the given order in the message)."""
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        at = f"{where}.{unknown[0]}" if where else unknown[0]
        raise UnknownField(source, at, f"unknown key (expected one of {', '.join(allowed)})")


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
    if not isinstance(data, Mapping):
        raise SpecError(source, where, f"expected a mapping with {', '.join(keys)}, got {kind_of(data)}")
    check_keys(data, keys, source, where)
    for key in keys:
        if key not in data and key not in optional:
            meaning = (meanings or {}).get(key)
            raise SpecError(source, field_path(where, key), f"missing: expected {meaning}" if meaning else "missing")
    for key in text:
        if key in data and not isinstance(data[key], str):
            raise SpecError(source, field_path(where, key), f"expected a string, got {kind_of(data[key])}")
    for key in ("name", "source"):
        if key in keys and not data[key]:
            raise SpecError(source, field_path(where, key), "expected a non-empty string")


def refuse_unread(data: object, unread: Mapping[str, str], source: str, where: str = "") -> None:
    """Refuse the first field of `data` (a mapping; anything else is left to the caller's checks) that `unread`
    names: a field no model reads is refused with why (`unread[field]`), never ignored."""
    if not isinstance(data, Mapping):
        return
    for key, why in unread.items():
        if key in data:
            raise SpecError(source, field_path(where, key), why)


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


UP_PREFIXES = (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15))  # a value written too small
DOWN_PREFIXES = (("m", 1e-3), ("u", 1e-6), ("n", 1e-9))  # a value written too large (0.8 for 0.8 us)
BYTE_PREFIXES = (("K", 2**10), ("M", 2**20), ("G", 2**30), ("T", 2**40))  # a capacity: KiB, MiB, GiB, TiB


@dataclass(frozen=True)
class Plausible:
    """The range a hardware quantity lies in on every real device, from a mobile NPU or an old GPU to a rack-scale
    part of the next decade, and a typical value (`example`; None: none to give). A number outside is no device's:
    it was written in another unit (MHz for Hz, TB/s for B/s, GB for bytes, us for s), and `problem` names the
    unit that puts it in range, the one nearest the example. `unit` "" is a count or a per-clock rate (no unit
    hint); "B" is a capacity, whose "GB" the presets take as GiB (a spec sheet's 80 GB: 80 x 2**30 bytes)."""

    low: float
    high: float
    example: float | None = None
    unit: str = ""

    def problem(self, value: float, what: str) -> str | None:
        """Why the positive `value` is no such quantity (`what`, for the message), or None when it lies in range."""
        if self.low <= value <= self.high:
            return None
        show = "{:.0f}" if self.unit == "B" else "{:g}"  # bytes as whole numbers, as the presets write them
        example = f" (e.g. {show.format(self.example)})" if self.example else ""
        return (f"expected {what} between {show.format(self.low)} and {show.format(self.high)}{example}, got "
                f"{value!r}{self._slip(value)}")

    def _slip(self, value: float) -> str:
        """': a value in MHz?' when a unit prefix puts `value` in range, else ''."""
        if not self.unit or not self.example:
            return ""
        prefixes = BYTE_PREFIXES if self.unit == "B" else UP_PREFIXES if value < self.low else DOWN_PREFIXES
        fits = [(abs(math.log10(value * factor / self.example)), prefix, factor) for prefix, factor in prefixes
                if self.low <= value * factor <= self.high]
        if not fits:
            return ""
        _, prefix, factor = min(fits)
        if self.unit == "B":
            return (f": a value in {prefix}B? (write bytes; a spec sheet's {value:g} {prefix}B is taken as "
                    f"{value:g} {prefix}iB = {value * factor:.0f})")
        return f": a value in {prefix}{self.unit}?"


def ranged_number(value: Any, source: str, where: str, what: str, bounds: Plausible, *,
                  read: Callable[[Any, str, str], float] | None = None, zero: bool = False, sign_check: bool = True,
                  integer: bool = False) -> Any:
    """A hardware number (`what`, for messages) at `where` that is no text (a YAML string gets `text_number_hint`),
    positive (or 0 when `zero`: 0 skips `bounds`, whose message then says "(or 0)") and inside `bounds`.
    `read` turns a non-text value into a finite float, refusing anything else in its own words (e.g.
    `archsim.spec_files.finite_number`); None: anything but a finite int or float is refused like a sign slip.
    `sign_check` False leaves 0 and below to `bounds` (whose low end is positive). An `integer` is returned as an
    int (a fraction refused), anything else as a float."""
    if isinstance(value, str):
        raise SpecError(source, where, f"expected {what}, got the text {value!r}{text_number_hint(value)}")
    sign = "a number >= 0" if zero else "a positive number"
    if read is None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SpecError(source, where, f"expected {what} ({sign}), got {value!r}")
        number = value
    else:
        number = read(value, source, where)
    if sign_check and (number < 0 or (number == 0 and not zero)):
        raise SpecError(source, where, f"expected {what} ({sign}), got {value!r}")
    problem = None if zero and number == 0 else bounds.problem(number, f"{what}{' (or 0)' if zero else ''}")
    if problem:
        raise SpecError(source, where, problem)
    if integer:
        if number != int(number):
            raise SpecError(source, where, f"expected {what} (a whole number), got {value!r}")
        return int(number)
    return number + 0.0  # a float; -0.0 reads as 0.0
