"""Why a reproduction misses a target: a modelling reason whose numbers the run fills in.

A reason quotes what the model computed (an iteration time, a bandwidth, a range of errors). Typed into the text,
such a number goes stale when the model moves; so a `Reason` holds a `str.format` template and the reproduction
fills its fields from the run (`Reason.filled`). Read before a run (a strict xfail's reason at import), it shows
each field by name: `str(reason)` prints "<field>" where the run's number goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIELD = re.compile(r"\{(\w+)[^{}]*\}")


@dataclass(frozen=True)
class Reason:
    """A modelling reason: `template`, with `str.format` fields for the run's numbers."""

    template: str

    def filled(self, **values: float | str) -> str:
        """The reason with the run's numbers in it."""
        return self.template.format(**values)

    def __str__(self) -> str:
        return _FIELD.sub(r"<\1>", self.template)
