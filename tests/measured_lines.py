"""What the tests of measured runs share: the lines of a file under reports/measured/ that match a pattern."""

from __future__ import annotations

import re
from pathlib import Path

MEASURED = Path(__file__).resolve().parent.parent / "reports" / "measured"


def matches(name: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    """The matches of `pattern` (from the line's start) in reports/measured/`name`, in file order."""
    lines = (MEASURED / name).read_text(encoding="utf-8").splitlines()
    return [match for line in lines if (match := pattern.match(line))]
