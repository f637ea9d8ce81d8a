"""What the tests of CLI refusals share: the command's stderr is one line `error: ...` holding the fragments."""

from __future__ import annotations


def one_line_error(result, *fragments: str) -> None:
    """`result` (a click CliRunner result) printed one line starting `error: ` on stderr, holding every fragment."""
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, result.output
    for fragment in fragments:
        assert fragment in message, message
