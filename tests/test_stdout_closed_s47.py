"""`archsim run ... | head -1`: a reader that closes stdout early ended archsim with exit 1 and no word (click's
own handling of EPIPE), the status archsim gives a bug. It now ends as the standard Unix tools end when their
reader goes away: silently (no traceback, no `error:` line), status 141 (128 + SIGPIPE, what a shell reports for
`yes | head -1`'s yes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

STDOUT_CLOSED = 141


def _with_stdout_closed(*args: str) -> tuple[int, str]:
    """(exit status, stderr) of `archsim ARGS` whose stdout is a pipe whose reader has already closed it."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before archsim writes its first line
    try:
        done = subprocess.run([sys.executable, "-m", "archsim", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120, check=False)
    finally:
        os.close(write)
    return done.returncode, done.stderr


@pytest.mark.parametrize("args", [
    ("run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=4096"),  # click.echo, line by line
    ("list",),
])
def test_a_closed_stdout_ends_silently_with_status_141(args) -> None:
    code, stderr = _with_stdout_closed(*args)
    assert code == STDOUT_CLOSED and stderr == "", (code, stderr)


def test_a_refusal_still_reaches_stderr_with_stdout_closed() -> None:
    code, stderr = _with_stdout_closed("run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=0")
    assert code == 2 and stderr.startswith("error: --set: seq_len") and len(stderr.splitlines()) == 1, stderr
