"""The `archsim` command line: one verb per job. Exit codes: 0 ok, 1 evaluation error, 2 bad input, 141 stdout closed
by its reader (`archsim run ... | head -1`: `_stdout_closed`).

The commands live in `archsim.commands.*` and are imported only when invoked, so `archsim --help` loads click
and nothing else (numpy, pandas, matplotlib, dask and simpy load with the commands that use them). Every error
the user can cause comes out as one line, `error: ...`, on stderr: a `SpecError` (bad spec or option value),
click's usage errors (unknown option, missing argument), resource limits and paths the OS refuses (an
OSError naming its file; an argument with a NUL byte) all exit 2. An exception that is
none of these is a bug in archsim: one line saying so, exit 1 (ARCHSIM_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Iterator

import click

from archsim.errors import SpecError

# name -> (module, command object in it, the help line `archsim --help` shows without importing the module;
# tests/test_cli_startup.py checks that each is how the command's own docstring begins).
COMMANDS = {
    "list": ("archsim.commands.listing", "list_cmd", "List the library: cascades, architectures, mappings, ..."),
    "check": ("archsim.commands.listing", "check_cmd", "Validate spec files of any kind."),
    "analyze": ("archsim.commands.cascade_cmds", "analyze_cmd",
                "Shapes, bytes, operation counts and passes of a cascade."),
    "execute": ("archsim.commands.cascade_cmds", "execute_cmd",
                "Run a cascade on seeded random inputs with the numpy interpreter."),
    "run": ("archsim.commands.run", "run_cmd",
            "Evaluate one design point with the analytical model (or the event-driven one)."),
    "report": ("archsim.commands.report", "report_cmd", "Write a report (figures, CSV, index.html) under reports/."),
    "sweep": ("archsim.commands.sweep", "sweep_cmd", "Evaluate every point of a sweep spec ..."),
    "results": ("archsim.commands.sweep", "results_cmd", "Export a sweep store: one row per design point."),
    "simulate": ("archsim.commands.simulate", "simulate_cmd",
                 "Serve requests on a system with iteration-level continuous batching and a paged KV cache."),
    "reproduce": ("archsim.commands.reproduce", "reproduce_cmd",
                  "Run a paper's setup and print ours beside the paper's, with the error per metric."),
    "measure": ("archsim.commands.measure", "measure",
                "Time the Triton attention kernels at the published benchmark shapes and append rows to a CSV."),
    "calibrate": ("archsim.commands.gpu", "calibrate_cmd",
                  "Fit the GPU model's per-family parameters on the calibration split."),
    "validate": ("archsim.commands.gpu", "validate_cmd",
                 "Predict every supported row of a measurements CSV, beside the pure roofline."),
    "gpu-roofline": ("archsim.commands.gpu", "gpu_roofline_cmd",
                     "Roofline of a workload's attention kernels on a GPU."),
    "parallel": ("archsim.commands.parallel_cmd", "parallel_cmd",
                 "Time one layer's attention cut over P devices by a sequence-parallel scheme ..."),
    "sparse": ("archsim.commands.sparse_cmd", "sparse_cmd",
               "Time a sparse-attention method on a GPU against dense attention ..."),
}


def load_command(name: str) -> click.Command:
    """The click command registered as `name` in COMMANDS, importing its module on first use."""
    module, attribute, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), attribute)


# The exit status when stdout's reader has gone: 128 + SIGPIPE (13), what a shell reports for a tool SIGPIPE ended.
STDOUT_CLOSED_EXIT = 141


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _stdout_closed() -> int:
    """Stop as the standard Unix tools stop when the reader of their stdout has gone (`yes | head -1`): silently.
    Python's recipe (the `signal` module's "Note on SIGPIPE") points stdout at /dev/null, so that the flush at exit
    fails no more, and exits 1; 1 is archsim's status for a bug, so this returns the shell's for a tool that SIGPIPE
    ended, `STDOUT_CLOSED_EXIT`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return STDOUT_CLOSED_EXIT


class _LazyGroup(click.Group):
    """Commands imported on first use; every error turned into one line on stderr."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def invoke(self, ctx: click.Context):
        """click's `invoke`, with what the command wrote flushed: a reader that closed stdout meanwhile
        (BrokenPipeError) ends it by `_stdout_closed`'s status, where click's own handling would exit 1 silently."""
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            raise click.exceptions.Exit(_stdout_closed()) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's `main`. Standalone (the `archsim` command), every error is one line on stderr and an exit code
        (module docstring); with `standalone_mode=False`, as click has it: the command's return value, or the exit
        code of a command that exits (`--help`: 0), and errors raised to the caller."""
        args = list(sys.argv[1:] if args is None else args)
        for arg in args:
            if "\0" in arg:  # no file or name can hold one; the OS would refuse it deep inside
                message = f"archsim: argument {arg!r} contains a NUL byte"
                if not standalone_mode:
                    raise click.UsageError(message)
                _fail(message, 2)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        interrupts: list[int] = []
        try:
            with _noting_interrupts(interrupts):
                code = self._main(args, prog_name, complete_var, **extra)
        except KeyboardInterrupt:  # Ctrl-C after the command returned, before the handler was put back
            interrupts.append(signal.SIGINT)
        if interrupts:  # Ctrl-C whose KeyboardInterrupt Python dropped (`_noting_interrupts`): the command ran on
            _fail("interrupted (Ctrl-C); what the command wrote before it is complete", 130)
        sys.exit(code if isinstance(code, int) else 0)

    def _main(self, args, prog_name, complete_var, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "archsim"
            _fail(f"{where}: {exc.format_message()} (see '{where} --help')", 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), 2)
        except click.Abort:
            _fail("aborted", 1)
        except SpecError as exc:
            _fail(str(exc), 2)
        except OSError as exc:  # a path the OS refuses (name too long, a loop of links, ...), named by the OS
            where = exc.filename if exc.filename is not None else "archsim"
            _fail(f"{where}: {exc.strerror or exc}", 2)
        except RecursionError:
            _fail("input nested too deeply to process (a bug: the loaders should have said where)", 1)
        except MemoryError:
            _fail("out of memory (a bug: a resource guard should have refused this input first)", 1)
        except Exception as exc:  # the last line of defence: a bug, reported in one line
            if os.environ.get("ARCHSIM_DEBUG"):
                raise
            _fail(f"internal error ({type(exc).__name__}: {exc}); this is a bug in archsim, please report it "
                  "(ARCHSIM_DEBUG=1 shows the traceback)", 1)


@contextlib.contextmanager
def _noting_interrupts(noted: list[int]) -> Iterator[None]:
    """Within: Ctrl-C raises KeyboardInterrupt, as Python's own handler does, and is appended to `noted`. Python
    drops an exception raised inside a weakref or gc callback ("Exception ignored in ..."), so a command could run
    on and end as if never interrupted; the note lets the CLI exit as interrupted all the same. Where SIGINT is
    ignored (nohup) it stays ignored; outside the main thread, where no handler can be set, nothing is noted."""
    def handler(signum: int, frame: object) -> None:
        noted.append(signum)
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    try:
        if previous not in (signal.SIG_IGN, None):  # None: a handler set outside Python, left alone
            signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous not in (signal.SIG_IGN, None):
            signal.signal(signal.SIGINT, previous)


@click.group(cls=_LazyGroup, name="archsim")
def main() -> None:
    """archsim: attention as cascades of Einsums, mapped onto architectures and evaluated."""
