"""The CLI's start-up and error surface: `archsim --help` loads none of the heavy libraries, its command list
matches each command's own docstring, and usage errors come out as one `error:` line with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archsim.cli import COMMANDS, load_command, main

HEAVY = ("numpy", "pandas", "matplotlib", "dask", "distributed", "simpy", "networkx", "yaml", "torch")


def test_help_imports_no_heavy_library() -> None:
    probe = ("import sys\nfrom archsim.cli import main\nsys.argv = ['archsim', '--help']\ntry:\n    main()\n"
             f"except SystemExit:\n    pass\nprint(*sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "Commands:" in result.stdout
    assert result.stderr.strip() == "", f"archsim --help imported {result.stderr.strip()}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    short = COMMANDS[name][2]
    own = " ".join(load_command(name).help.split())
    assert own.startswith(short.removesuffix("...").removesuffix(".").rstrip(", ")), (short, own)


@pytest.mark.parametrize("args", [["nope"], ["run"], ["run", "--mapping"], ["analyze", "attention-1pass", "--bogus"],
                                  ["report", "--run"], ["execute", "attention-1pass", "--seed", "-3"]])
def test_usage_errors_are_one_line(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: archsim"), result.output
    assert "Traceback" not in result.output


def test_a_bug_is_one_line_with_exit_1(monkeypatch) -> None:
    import archsim.commands.listing as listing

    def broken() -> dict:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(listing, "_contents", broken)
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: internal error (ZeroDivisionError: boom); this is a bug in archsim, "
                                     "please report it (ARCHSIM_DEBUG=1 shows the traceback)")


@pytest.mark.parametrize("option", [["analyze", "attention-1pass", "--workload"], ["check"],
                                    ["report", "--library", "--out"]])
def test_paths_the_os_refuses_are_one_line_naming_them(option: list[str], tmp_path) -> None:
    too_long = str(tmp_path / ("x" * 300 + ".yaml"))  # over the 255-byte name limit of Linux file systems
    result = CliRunner().invoke(main, [*option, too_long])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(("error: ", "error: --out: ")) and too_long in result.output
    assert "File name too long" in result.output
    nul = CliRunner().invoke(main, [*option, "a\0b.yaml"])
    assert nul.exit_code == 2 and nul.output == "error: archsim: argument 'a\\x00b.yaml' contains a NUL byte\n"


def test_a_long_path_named_inside_a_spec_is_blamed_on_that_spec(tmp_path) -> None:
    mapping = Path(__file__).resolve().parents[1] / "mappings" / "flat.yaml"
    long_arch = tmp_path / "long.yaml"
    long_arch.write_text(mapping.read_text().replace("architecture: flat", f"architecture: /tmp/{'x' * 300}.yaml"))
    result = CliRunner().invoke(main, ["run", "--mapping", str(long_arch), "--workload", "bert-base"])
    assert result.exit_code == 2 and result.output.startswith(f"error: {long_arch}: architecture: ")
    assert "cannot use this path (File name too long)" in result.output
    empty = CliRunner().invoke(main, ["check", ""])
    assert empty.exit_code == 2 and empty.output == "error: '': an empty path names no file\n"


def test_an_output_that_is_an_input_is_refused(tmp_path) -> None:
    """`results STORE --csv STORE` replaced the store with its CSV; `calibrate --out` its measurements."""
    measurements = tmp_path / "m.csv"
    original = (Path(__file__).resolve().parents[1] / "archsim" / "gpu" / "reference" / "attention_measured.csv")
    measurements.write_bytes(original.read_bytes())
    result = CliRunner().invoke(main, ["calibrate", "--measurements", str(measurements), "--out", str(measurements)])
    assert result.exit_code == 2 and result.output == (
        f"error: --out: {measurements}: is an input of this command ({measurements}); writing the output there "
        "would destroy it\n")
    assert measurements.read_bytes() == original.read_bytes()
