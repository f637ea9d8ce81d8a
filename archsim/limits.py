"""Resource limits read from the environment (ARCHSIM_MAX_*): each guard's default, raised by its variable.

The bottom layer, beside `archsim.errors`: spec loading, workloads, the interpreter, the GPU model and the serving
requests all read their limits here, so none of them imports another for it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from archsim.errors import SpecError

MAX_ENV_LIMIT = 10**30  # a limit beyond this is no limit
LIMIT_PREFIX = "ARCHSIM_MAX_"  # every limit's variable starts so


def env_limit(variable: str, default: int, most: int = MAX_ENV_LIMIT) -> int:
    """A resource limit: the environment variable's value (a positive integer up to `most`) if set, else
    `default`."""
    text = os.environ.get(variable)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= most:
        bound = "1e30" if most == MAX_ENV_LIMIT else str(most)
        raise SpecError(variable, "", f"expected a positive integer up to {bound} (environment variable), got "
                                      f"{text!r}")
    return value


def limits_set() -> dict[str, int]:
    """The limit variables set (`LIMIT_PREFIX`), each checked as `env_limit` checks it (a SpecError naming a
    malformed one), by name: what a stored answer keyed by its inputs must hold too, as a guard may decide it (a
    point beyond a limit is refused with the advice to raise it, which a record reused whatever the limit would
    never follow). A guard with a lower bound than `MAX_ENV_LIMIT` checks it when it reads it."""
    return {name: env_limit(name, 1) for name in sorted(os.environ) if name.startswith(LIMIT_PREFIX)}


def limits_key() -> tuple[tuple[str, int], ...]:
    """`limits_set` as a key for what is remembered in a process and a limit may decide (a binding, a device's
    result): read from the variables' text each call, checked and parsed only when that text changes."""
    return _parsed_limits(tuple(sorted((name, text) for name, text in os.environ.items()
                                       if name.startswith(LIMIT_PREFIX))))


@functools.lru_cache(maxsize=64)
def _parsed_limits(texts: tuple[tuple[str, str], ...]) -> tuple[tuple[str, int], ...]:
    return tuple(limits_set().items())


ADVICE_FIELDS = ("reason", "note")  # a record's fields a guard's advice to raise a limit is written into


def advises_limit(record: Mapping[str, Any]) -> bool:
    """Whether a limit decided part of `record` (a sweep point's): a guard refusing a point (a
    `archsim.errors.LimitError`), or a search stopped at a limit, says so with the advice to raise its variable
    (`LIMIT_PREFIX`), in the record's reason or note (`ADVICE_FIELDS`); a variable's name elsewhere (a workload's
    path, a target's name) is no advice. Such a record holds under the limits it was computed under only; any other
    holds whatever the limits. A stored record keeps text, not the exception, so the advice is read from the text:
    a model that catches a SpecError to try something else does not swallow a LimitError (it refuses with the
    limit's advice: `archsim.systems.architecture_device._padded_point`, a padded prompt beyond a limit;
    `archsim.systems.fusemax.attention_result`, a candidate mapping refused by one), and one that raises a refusal
    again in its own words keeps the refused message, the advice in it."""
    return any(isinstance(record.get(name), str) and LIMIT_PREFIX in record[name] for name in ADVICE_FIELDS)
