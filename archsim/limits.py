"""Resource limits read from the environment (ARCHSIM_MAX_*): each guard's default, raised by its variable.

The bottom layer, beside `archsim.errors`: spec loading, workloads, the interpreter, the GPU model and the serving
requests all read their limits here, so none of them imports another for it.
"""

from __future__ import annotations

import os

from archsim.errors import SpecError

MAX_ENV_LIMIT = 10**30  # a limit beyond this is no limit


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
