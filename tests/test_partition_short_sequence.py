"""A sequence shorter than the block a cascade splits it into (`I: seq_len // block`, the partition `P: [I, P0]`) has
no whole block: the error names the two params, their values and where each came from, not the rank's empty size.

Expectations (the cascades' rank sizes): minference-block-sparse and flexprefill size their query and key blocks
`seq_len // block`, quest-decode its pages `seq_len // page`; with seq_len below block (page) that is 0, refused as
"seq_len: expected at least block (64), got 32", blamed on where seq_len came from (`--set`, a workload, the cascade's
default), with exit code 2 and one line from the CLI.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cascade.bind import bind
from archsim.cli import main
from archsim.errors import SpecError


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_mapping_run_below_its_block_names_seq_len_and_the_block() -> None:
    """fusemax-minference-block-sparse sets block 64; seq_len 32 from --set has no whole block."""
    code, output = cli("run", "-m", "fusemax-minference-block-sparse", "-w", "llama3-8b", "--set", "seq_len=32")
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
    assert output.startswith("error: --set: seq_len: expected at least block (64), got 32"), output
    assert "minference-block-sparse splits seq_len into whole blocks (ranks.I: seq_len // block)" in output, output
    assert "block=64 from mapping fusemax-minference-block-sparse" in output, output
    assert "positive integer size" not in output, output


@pytest.mark.parametrize("cascade", ["minference-block-sparse", "flexprefill"])
def test_executing_a_cascade_below_its_default_block_says_how_to_set_it(cascade: str) -> None:
    """The cascades' test default block is 8: seq_len 4 from --set, the block's default named with its option."""
    code, output = cli("execute", cascade, "--set", "seq_len=4")
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
    assert output.startswith("error: --set: seq_len: expected at least block (8), got 4"), output
    assert f"{cascade} splits seq_len" in output and f"block=8 is {cascade}'s default: pass --set block=N" in output, \
        output


def test_a_block_above_the_default_sequence_blames_the_cascades_default() -> None:
    """--set block=64 over the cascade's seq_len 48: the short side is the cascade's default, so the error is the
    cascade file's and says how to give the sizes."""
    code, output = cli("execute", "minference-block-sparse", "--set", "block=64")
    assert code == 2, output
    assert "minference-block-sparse.yaml: seq_len: expected at least block (64), got 48" in output, output
    assert "block=64 from --set" in output and "small default" in output, output


def test_pages_of_a_decode_cascade() -> None:
    """quest-decode's pages: seq_len // page, page 4 by default."""
    code, output = cli("execute", "quest-decode", "--set", "seq_len=2")
    assert code == 2, output
    assert output.startswith("error: --set: seq_len: expected at least page (4), got 2"), output


def test_bind_blames_the_params_source() -> None:
    """Binding a plain mapping: the error is the mapping's source and names seq_len."""
    cascade = library.load_cascade_spec("minference-block-sparse")
    with pytest.raises(SpecError) as caught:
        bind(cascade, {"seq_len": 32, "block": 64})
    assert (caught.value.source, caught.value.where) == ("<params>", "seq_len")
    assert caught.value.message.startswith("expected at least block (64), got 32"), caught.value.message
