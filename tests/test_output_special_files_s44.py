"""An output path that is a link or no regular file is written through, never renamed over (audit helper-524:
`--trace-out` on a named pipe replaced it with a regular file, the reader getting nothing, and as root turned
/dev/null into a file; a link was replaced by a file and its target left stale)."""

from __future__ import annotations

import os
import stat
import threading

from archsim.outputs import check_writable, write_text


def test_a_link_keeps_pointing_at_the_output(tmp_path) -> None:
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target.name)
    write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_a_named_pipe_is_written_through(tmp_path) -> None:
    pipe = tmp_path / "p.json"
    os.mkfifo(pipe)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()), daemon=True)
    reader.start()
    assert check_writable(pipe, "--trace-out") == pipe
    write_text(pipe, "trace")
    reader.join(timeout=10)
    assert got == ["trace"] and stat.S_ISFIFO(os.stat(pipe).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p.")]  # no staging file beside it
