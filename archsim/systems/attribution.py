"""Why a reproduction misses a target: a modelling reason whose numbers the run fills in.

A reason quotes what the model computed (an iteration time, a bandwidth, a range of errors). Typed into the text,
such a number goes stale when the model moves; so a `Reason` holds a `str.format` template and the reproduction
fills its fields from the run (`Reason.filled`). Read before a run (a strict xfail's reason at import), it shows
each field by name: `str(reason)` prints "<field>" where the run's number goes. `by_reason` groups the targets a
reproduction misses under the reason they share, for its printout and its report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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


def by_reason(missed: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(label, reason) pairs of missed targets -> each reason once, with the labels it explains, in first-seen
    order."""
    grouped: dict[str, list[str]] = {}
    for label, reason in missed:
        grouped.setdefault(reason, []).append(label)
    return grouped
