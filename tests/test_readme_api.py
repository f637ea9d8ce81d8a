"""The README's Python example of changing an architecture and a mapping runs and says what the README says:
the unchanged mapping on a 128x128 array is infeasible with the fan-out reason; resized with it, it runs."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_changing_an_architecture_and_a_mapping(capsys) -> None:
    text = README.read_text()
    section = text[text.index("### Changing an architecture and a mapping from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    exec(compile(code, "README.md", "exec"), {})
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("False group attention: loops[2].ranks.P = 256 spreads 256 over unit array2d, which "
                            "has 128 PEs along dimension 0")
    assert second.startswith("True 1.85")  # the README's printed latency, 1.854 s
