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
    names: dict = {}
    exec(compile(code, "README.md", "exec"), names)
    # as its comment says: the spatial loops are written M0 wide, so its `sets` resize them (no loop left at 256)
    assert {lp.factor for lp in names["mine"].groups[0].loops if lp.is_spatial} == {"M0"}
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("False group attention: loops[2].ranks.P = 256 spreads 256 over unit array2d, which "
                            "has 128 PEs along dimension 0")
    assert second.startswith("True 1.85")  # the README's printed latency, 1.854 s


def test_readme_python_api_examples_run_and_print_what_they_say(capsys) -> None:
    """The "Python API" section's examples: the checked binding, and the event model and serving entry points,
    whose printed numbers the comments state."""
    text = README.read_text()
    section = text[text.index("## Python API"):text.index("## Architectures, mappings and the analytical model")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("{'B': 1, 'H': 1,") and "'mac': 1099780063232" in lines[0]
    assert lines[1].startswith("0.0297")  # "0.02976 s"
    assert lines[2].startswith("3644.") and "'target_kind': 'serving'" in lines[2]
    assert lines[3] == "['TP all-reduces at tp 4 (the system names no link tp)']"
