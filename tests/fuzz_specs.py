"""Inputs and the contract check of the CLI fuzz suite (`tests/test_fuzz_cli.py`, issue 12 "Must show").

- The shipped spec files of every kind (`SPEC_FILES`), and hypothesis strategies that mutate them: a YAML tree edit
  (a key deleted, renamed or added; a value replaced by another type, an odd number, odd text, a deep nest; an
  Einsum line or an expression rewritten), a CSV edit (a column dropped, a cell made odd, a row cut short) and a
  byte edit of the file (non-UTF-8 bytes, truncation, an empty file, a deep bracket nest, an alias bomb).
- `run_case(args)`: one `archsim` call in-process through click's CliRunner under two timer guards, returning the
  ways it broke the contract: exit code 0, 1 or 2 only; no "Traceback" in its output and no exception other than
  SystemExit; on exit 2 one non-empty stderr line `error: ...` (`check`: one per bad file) that names a file or an
  option; a result within `TIME_BOUND_S` of CPU time (SIGPROF: the bound holds on a loaded machine, where a wall
  clock bound failed a 3 s calibration at 10 s) and `WALL_BOUND_S` of wall time (SIGALRM: a call waiting without
  computing). (`archsim sweep`'s progress line, also on stderr, is not counted as a
  message line.)

Assumptions: SIGPROF and SIGALRM exist (POSIX) and the tests run in the main thread (pytest's default), so an alarm can
interrupt a call that runs Python code; a call stuck inside one long C call is interrupted when that call returns.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import strategies as st

from archsim.cli import main

REPO = Path(__file__).resolve().parents[1]
TIME_BOUND_S = 10.0  # CPU s per case; issue 12 asks for "a time bound", 10 s is ~100x a normal small call here
WALL_BOUND_S = 60.0  # wall s per case: what a call may wait (a store's lock) on a machine loaded by other jobs
TIMERS = ((signal.ITIMER_PROF, signal.SIGPROF, TIME_BOUND_S, "s of CPU"), (signal.ITIMER_REAL, signal.SIGALRM,
                                                                           WALL_BOUND_S, "s"))

SPEC_FILES: dict[str, list[Path]] = {
    "cascade": sorted((REPO / "einsum").glob("*.yaml")),
    "workload": sorted((REPO / "workloads").glob("*.yaml")),
    "mapping": sorted((REPO / "mappings").glob("*.yaml")),
    "architecture": sorted((REPO / "archsim/arch/presets").glob("*.yaml")),
    "gpu": sorted((REPO / "archsim/gpu/presets").glob("*.yaml")),
    "calibration": sorted((REPO / "archsim/gpu/calibration").glob("*.yaml")),
    "sweep": sorted((REPO / "archsim/dse/sweeps").glob("*.yaml")),
    "link": sorted((REPO / "archsim/systems/link_presets").glob("*.yaml")),
    "system": sorted((REPO / "archsim/systems/system_presets").glob("*.yaml")),
}
MEASUREMENTS_CSV = REPO / "archsim/gpu/reference/attention_measured.csv"
MEASUREMENT_ROWS = 24  # the head of the published CSV: several GPUs, kernels, directions; ~0.03 s to validate
# The cascade a mapping evaluates (each mapping file's `cascade:`), to run a mutated cascade under a mapping of it.
MAPPING_OF_CASCADE = {"attention-1pass": "fusemax", "attention-3pass": "flat", "ffn": "linear-ffn-flat",
                      "output-projection": "linear-out-flat", "qkv-projection": "linear-qkv-flat"}
# A request trace in the schema of archsim/systems/requests.py (TRACE_COLUMNS), short enough to serve in < 0.1 s.
TRACE_CSV = "arrival_s,prompt_tokens,output_tokens\n0.0,12,4\n0.001,30,8\n0.5,7,3\n"

# Every case run, by test name (a test may stop early when hypothesis exhausts its strategy).
CASES: Counter[str] = Counter()

# ---------------------------------------------------------------------------------------------------------------
# Odd values

NAN, INF = float("nan"), float("inf")
ODD_NUMBERS = (0, -1, 1, 0.5, -0.0, 1e-300, 1e30, 1e308, -1e308, NAN, INF, -INF, 10**40, 2**63, -(2**63) - 1,
               10**400)
ODD_TEXT = ("", " ", "abc", "null", "NaN", "1e999", "\u2135\u2080 \u2211\u222b \U0001d518\U0001d52b",
            "\u202eevil\u202c", "a\u0000b", "\U0001f40d\U0001f525", "x" * 5000, "../../etc/passwd", "~", "{{}}",
            "%s %n", "${HOME}", "\u0130\u0131\u017f", "-1", "0", "1e30", "nan", "inf", "yes", "2**64",
            "latency_s", "seq_len", "DRAM", "GlobalBuffer", "array2d")
ODD_STRUCTURES = (None, True, False, [], [1, 2], [[1]], [None], {}, {"a": 1},
                  {"nested": {"deeper": [None, {"x": []}]}}, ["abc", 1e308], {"1": None, "": ""})
DEEP_TOKEN = "@@DEEP@@"  # replaced after dumping by a bracket nest of the drawn depth
DEEP_DEPTHS = (40, 400, 5000)
# Whole Einsum lines and expressions: syntax errors, deep nests the parser recurses into, huge or odd numbers,
# names that do not exist, and arithmetic that would take forever if evaluated with Python ints.
EXPRESSIONS = (
    "", "=", "[]=[]", "X = Q", "X[p]] = Q[[p]", "X[p] = ", "X[p] = max()", "X[p] = 1/0", "X[p] = 1e999",
    "X[p] = nan", "X[p] = Q[p,e]**2", "X[\u00e4] = Q[\u00e4]", "X[p] = Q[p] where causal else",
    "X[p] = Q[p] where nosuchmask else -inf", "X[m1+99999999999999999999] = Q[p]", "X[p] = sum(p: Q[p])",
    "X[p] = sum(e, e: Q[p,e])", "\t", "X[p] = Q[p] # comment", "QK[b,h,m1,m0,p] = sum(e: Q[b,h,p,e] * K[b,h,m1,m0,e]",
    "X[p] = " + "(" * 3000 + "Q[p]" + ")" * 3000,
    "X[p] = " + "exp(" * 2000 + "Q[p]" + ")" * 2000,
    "X[p] = " + " + ".join(["Q[p]"] * 3000),
    "X[p] = " + "-" * 3000 + "Q[p]",
    "QK * LM", "max(" * 2000, "P // 0", "capacity(Nope)", "P ** 99999999", "10**10**10", "min(P, )",
    "max(max, max)", "P // 256 // 0", "seq_len * 1e308", "__import__('os')", "P if M else E",
)
CSV_VALUES = ("", "abc", "0", "-1", "1e30", "1e308", "nan", "inf", "-inf", "9" * 400, "1.5", " 3 ", "OOM", "True",
              "\u2135", "\u0000", '"', "1,2", "0x10", "1e-300", "-0", "1_000", "\u0661\u0662",
              "2049", "100000", "10000000", "100000000")  # sizes past a context, or long to simulate or time
BAD_BYTES = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xfe\xff\x00", b"\x80\x80\x80", b"\x00")


def _alias_bomb(levels: int, width: int) -> bytes:
    """YAML whose aliases expand to width**levels leaves when walked (the 'billion laughs' shape)."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return ("\n".join(lines) + "\n").encode()


WHOLE_FILES = (  # replacements of the whole file
    b"", b"\n\n", b"# only a comment\n", b"42\n", b"- a\n- b\n", b"~\n", b"'just text'\n", b"[" * 100000,
    b"{" * 50000, b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n", _alias_bomb(7, 9),
    b"!!python/object/apply:os.system ['echo hi']\n", b"\xef\xbb\xbfname: x\n", b"\x00" * 64,
    b"key: value\n\tindented: tab\n", b"a: 1\na: 2\n", b"? [a, b]\n: c\n", b"--- \n--- \n", b"%YAML 9.9\n---\na: 1\n",
)

# ---------------------------------------------------------------------------------------------------------------
# YAML tree mutations


def node_paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """The path (keys and indices) of every node below the root."""
    if isinstance(tree, dict):
        items = list(tree.items())
    elif isinstance(tree, list):
        items = list(enumerate(tree))
    else:
        return []
    out = []
    for key, value in items:
        out.append((*prefix, key))
        out.extend(node_paths(value, (*prefix, key)))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _odd_value(draw) -> tuple[Any, str]:
    choice = draw(st.sampled_from(("number", "text", "structure", "deep", "generated")))
    if choice == "number":
        value = draw(st.sampled_from(ODD_NUMBERS))
    elif choice == "text":
        value = draw(st.sampled_from(ODD_TEXT + EXPRESSIONS))
    elif choice == "structure":
        value = copy.deepcopy(draw(st.sampled_from(ODD_STRUCTURES)))  # later edits change the tree in place
    elif choice == "deep":
        return DEEP_TOKEN, f"a bracket nest {draw(st.sampled_from(DEEP_DEPTHS))} deep"
    else:
        value = draw(st.one_of(st.integers(), st.floats(), st.text(max_size=12), st.booleans()))
    shown = repr(value)
    return value, shown if len(shown) < 60 else shown[:57] + "..."


def _edit_text(draw, text: str) -> tuple[str, str]:
    """A line of a multi-line text (an Einsum block) replaced, cut, duplicated or moved; or characters edited."""
    lines = text.splitlines()
    op = draw(st.sampled_from(("replace line", "delete line", "duplicate line", "swap lines", "characters")))
    if op != "characters" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        if op == "replace line":
            new = draw(st.sampled_from(EXPRESSIONS))
            lines[i] = new
            label = f"line {i} := {new[:40]!r}"
        elif op == "delete line":
            del lines[i]
            label = f"line {i} deleted"
        elif op == "duplicate line":
            lines.insert(i, lines[i])
            label = f"line {i} duplicated"
        else:
            lines[i], lines[j] = lines[j], lines[i]
            label = f"lines {i} and {j} swapped"
        return "\n".join(lines) + "\n", label
    at = draw(st.integers(0, len(text)))
    cut = draw(st.integers(0, 3))
    insert = draw(st.sampled_from(("", "(", ")", "[", "]", ",", ":", "*", "-", "+", "/", " ", "=", "x", "9" * 30,
                                   "\u00e4", "\n", "\u0000", "1e999", "inf")))
    return text[:at] + insert + text[at + cut:], f"chars {at}..{at + cut} := {insert[:12]!r}"


@st.composite
def tree_edit(draw, tree: Any) -> tuple[Any, str]:
    """One edit of a parsed YAML tree (changed in place where possible); returns (tree, label)."""
    paths = node_paths(tree)
    if not paths:
        value, shown = _odd_value(draw)
        return value, f"root := {shown}"
    numbers = [p for p in paths if _is_number(_get(tree, p))]
    path = draw(st.sampled_from(numbers if numbers and draw(st.booleans()) else paths))  # numbers half the time
    parent, key = _get(tree, path[:-1]), path[-1]
    where = ".".join(map(str, path))
    value = parent[key]
    ops = ["delete", "replace", "replace", "add"]
    if isinstance(parent, dict):
        ops.append("rename")
    if isinstance(value, str):
        ops += ["edit text", "edit text"]
    if _is_number(value):
        ops += ["number", "number", "scale"]
    op = draw(st.sampled_from(ops))
    if op == "delete":
        del parent[key]
        return tree, f"{where} deleted"
    if op == "rename":
        new_key = draw(st.sampled_from((f"{key}x", str(key).upper(), f" {key}", "\u2135", 1, None, "")))
        parent[new_key] = parent.pop(key)
        return tree, f"{where} renamed to {new_key!r}"
    if op == "add":
        value, shown = _odd_value(draw)
        if isinstance(parent, list):
            parent.append(value)
            return tree, f"{'.'.join(map(str, path[:-1])) or 'root'} += {shown}"
        parent[draw(st.sampled_from(("unknown_key", "kind", "name", "params", "Einsum", "\u00fcber")))] = value
        return tree, f"{'.'.join(map(str, path[:-1])) or 'root'} gets a key := {shown}"
    if op == "edit text":
        parent[key], label = _edit_text(draw, value)
        return tree, f"{where}: {label}"
    if op == "number":
        parent[key] = draw(st.sampled_from(ODD_NUMBERS))
        return tree, f"{where} := {parent[key]!r}"[:100]
    if op == "scale":  # a plausible-looking size: far larger or smaller, off by one, negated, fractional
        factor, step = draw(st.sampled_from((1024, 2**20, 1e-3, -1, 0.5))), draw(st.sampled_from((1, -1, 0.5)))
        if isinstance(value, int) and abs(value) > 2**1000:  # an earlier mutation's 10**400: no float holds it
            factor, step = int(factor) or 1024, int(step) or 1
        parent[key] = value * factor if draw(st.booleans()) else value + step
        return tree, f"{where} := {parent[key]!r} (was {value!r})"[:100]
    parent[key], shown = _odd_value(draw)
    return tree, f"{where} := {shown}"


def dump_yaml(tree: Any, depth: int) -> bytes:
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=10**6)
    nest = "[" * depth + "]" * depth
    for quoted in (f"'{DEEP_TOKEN}'", f'"{DEEP_TOKEN}"', DEEP_TOKEN):
        text = text.replace(quoted, nest)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def byte_edit(draw, data: bytes) -> tuple[bytes, str]:
    """An edit of the file's bytes: bad UTF-8 inserted, truncation, CRLF, a whole-file replacement."""
    op = draw(st.sampled_from(("bad bytes", "bad bytes", "truncate", "whole file", "crlf", "repeat")))
    if op == "bad bytes":
        at = draw(st.integers(0, len(data)))
        bad = draw(st.sampled_from(BAD_BYTES))
        return data[:at] + bad + data[at:], f"bytes {bad!r} inserted at {at}"
    if op == "truncate":
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        return data[:at], f"truncated to {at} bytes"
    if op == "crlf":
        return data.replace(b"\n", b"\r\n"), "CRLF line ends"
    if op == "repeat":
        return data + data, "the file twice over (duplicate keys)"
    whole = draw(st.sampled_from(WHOLE_FILES))
    return whole, f"whole file := {whole[:30]!r}" + ("..." if len(whole) > 30 else "")


@dataclass(frozen=True)
class Mutant:
    """A mutated spec file: its base, what was done, and the bytes to write."""

    base: Path
    edits: tuple[str, ...]
    data: bytes

    @property
    def label(self) -> str:
        base = self.base.relative_to(REPO) if self.base.is_relative_to(REPO) else self.base.name
        return f"{base}: " + "; ".join(self.edits)


def unchanged(base: Path) -> Mutant:
    """The base file as it is: the baseline a test's command must pass with."""
    return Mutant(base, ("unchanged",), base.read_bytes())


@st.composite
def yaml_mutant(draw, files: Sequence[Path]) -> Mutant:
    """1-3 tree edits of one of `files`, then sometimes a byte edit."""
    base = draw(st.sampled_from(list(files)))
    tree = yaml.safe_load(base.read_text())
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        tree, label = draw(tree_edit(tree))
        edits.append(label)
    data = dump_yaml(tree, draw(st.sampled_from(DEEP_DEPTHS)))
    if draw(st.integers(0, 4)) == 0:
        data, label = draw(byte_edit(data))
        edits.append(label)
    return Mutant(base, tuple(edits), data)


# ---------------------------------------------------------------------------------------------------------------
# CSV mutations (request traces, measurements)


@st.composite
def csv_edit(draw, rows: list[list[str]]) -> tuple[list[list[str]], str]:
    width = max(len(r) for r in rows)
    op = draw(st.sampled_from(("cell", "cell", "cell", "drop column", "rename column", "short row", "long row",
                               "drop row", "header only", "duplicate column")))
    i = draw(st.integers(0, len(rows) - 1))
    j = draw(st.integers(0, width - 1))
    if op == "cell" and j < len(rows[i]):
        value = draw(st.one_of(st.sampled_from(CSV_VALUES), st.text(max_size=8)))
        rows[i][j] = value
        return rows, f"row {i} col {j} := {value[:30]!r}"
    if op == "drop column":
        return [[c for k, c in enumerate(r) if k != j] for r in rows], f"column {j} dropped"
    if op == "rename column":
        rows[0][j % len(rows[0])] += "x"
        return rows, f"header {j} renamed"
    if op == "short row" and len(rows[i]) > 1:
        rows[i] = rows[i][:-1]
        return rows, f"row {i} one cell short"
    if op == "long row":
        rows[i].append("extra")
        return rows, f"row {i} one cell long"
    if op == "drop row" and len(rows) > 1:
        del rows[i]
        return rows, f"row {i} dropped"
    if op == "duplicate column":
        return [[*r, r[j]] if j < len(r) else r for r in rows], f"column {j} duplicated"
    return rows[:1], "header only"


@st.composite
def csv_mutant(draw, base: Path, text: str) -> Mutant:
    """1-3 edits of a CSV's cells and shape, then sometimes a byte edit."""
    rows = list(csv.reader(io.StringIO(text)))
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        rows, label = draw(csv_edit(rows))
        edits.append(label)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    data = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        data, label = draw(byte_edit(data))
        edits.append(label)
    return Mutant(base, tuple(edits), data)


def measurements_head() -> str:
    with MEASUREMENTS_CSV.open(newline="") as f:
        return "".join(next(f) for _ in range(MEASUREMENT_ROWS + 1))


# ---------------------------------------------------------------------------------------------------------------
# Running one case


class CaseTimeout(BaseException):
    """Raised by the alarm inside a case that ran past TIME_BOUND_S; carries where it was. A BaseException, so
    that CliRunner and the code under test (`except Exception`) let it through."""


def _archsim_frame(frames: Sequence[traceback.FrameSummary]) -> str:
    """The innermost frame inside the archsim package (where a failure comes from), else the innermost one."""
    inside = [f for f in frames if "/archsim/" in f.filename and "/tests/" not in f.filename]
    frame = (inside or list(frames) or [None])[-1]
    if frame is None:
        return "?"
    name = Path(frame.filename)
    shown = name.relative_to(REPO) if name.is_relative_to(REPO) else name
    return f"{shown}:{frame.lineno} in {frame.name}"


def _on_alarm(signum, frame) -> None:
    raise CaseTimeout(_archsim_frame(traceback.extract_stack(frame)))


_OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")
_FILE = re.compile(r"[\w.-]+\.(?:ya?ml|csv|sqlite|json|png|db)\b")
# `archsim sweep`'s status lines on stderr: its progress and which executor it chose
_PROGRESS = re.compile(r"^(\d+/\d+ points, .* points/s, ETA .*|executor: .*)$")
# click names a missing argument by its metavar (Missing argument 'SPEC'); a limit names its environment variable
_ARGUMENT = re.compile(r"'[A-Z_]+'|\bARCHSIM_[A-Z_]+\b")


def message_lines(stderr: str) -> list[str]:
    """The non-empty lines of stderr, `archsim sweep`'s status lines (progress, executor) left out."""
    return [line for line in stderr.splitlines() if line.strip() and not _PROGRESS.match(line)]


def names_input(line: str, args: Sequence[str]) -> bool:
    """The error line names a file or an option: an option, a spec file, a click argument, a value the call gave
    (a library name; as the line's source `error: SOURCE: ...`, also an empty one shown as '')."""
    if _OPTION.search(line) or _FILE.search(line) or _ARGUMENT.search(line):
        return True
    source = line.removeprefix("error: ").split(": ", 1)[0]
    given = [a.split("=", 1)[0] for a in args]
    if source in {a for a in given if a} | {repr(a) for a in given}:
        return True
    return any(len(a) >= 3 and a in line for a in given)


@contextlib.contextmanager
def _scratch_folder(parent: Path | None) -> Iterator[None]:
    """Run in a fresh folder under `parent` (removed afterwards), so relative output paths start empty."""
    if parent is None:
        yield
        return
    folder = tempfile.mkdtemp(dir=parent)
    try:
        with contextlib.chdir(folder):
            yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Outcome:
    args: list[str]
    label: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    origin: str = ""  # file:line in function of the exception or the hang
    problems: list[str] = field(default_factory=list)
    input_path: str = ""  # the argument that is the mutated input file, if any
    input_data: bytes = b""

    def record(self, test: str) -> dict:
        return {"test": test, "args": self.args, "input": self.label, "exit_code": self.exit_code,
                "stderr": self.stderr[-600:], "stdout_tail": self.stdout[-300:], "seconds": round(self.seconds, 2),
                "origin": self.origin, "problems": self.problems}


def run_case(test: str, args: list[str], label: str = "", cwd: Path | None = None,
             check_output: Callable[[Outcome], list[str]] | None = None, env: dict[str, str] | None = None) -> Outcome:
    """Run `archsim ARGS` in-process (in `cwd`) and list how it broke the contract (module docstring)."""
    CASES[test] += 1
    outcome = Outcome(list(args), label)
    runner = CliRunner()
    previous = {signum: signal.signal(signum, _on_alarm) for _, signum, _, _ in TIMERS}
    environment = dict(os.environ)  # a command may set variables (measure sets TRITON_INTERPRET): undone below
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        for timer, _, bound_s, _ in TIMERS:
            signal.setitimer(timer, bound_s)
        with _scratch_folder(cwd):
            result = runner.invoke(main, args, catch_exceptions=True, env=env)
    except CaseTimeout as exc:
        outcome.seconds = time.perf_counter() - start
        outcome.origin = str(exc)
        bounds = " or ".join(f"{bound_s:g} {unit}" for _, _, bound_s, unit in TIMERS)
        outcome.problems.append(f"no result within {bounds} (interrupted at {exc})")
        return outcome
    finally:
        for timer, signum, _, _ in TIMERS:
            signal.setitimer(timer, 0)
            signal.signal(signum, previous[signum])
        os.environ.clear()
        os.environ.update(environment)
    outcome.seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    outcome.exit_code, outcome.stdout, outcome.stderr = result.exit_code, result.stdout, result.stderr
    problems = outcome.problems
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        outcome.origin = _archsim_frame(traceback.extract_tb(result.exc_info[2]))
        problems.append(f"{type(result.exception).__name__}: {str(result.exception)[:300]}")
    if result.exit_code not in (0, 1, 2):
        problems.append(f"exit code {result.exit_code}")
    if "Traceback" in result.stdout or "Traceback" in result.stderr:
        problems.append("traceback text in the output")
    if result.exit_code == 2:
        lines = message_lines(result.stderr)
        most = len(args) - 1 if args[0] == "check" else 1  # `check` says one line per bad file
        if not 1 <= len(lines) <= most:
            expected = "1" if most == 1 else f"1 to {most}"
            problems.append(f"exit 2 with {len(lines)} non-empty stderr lines (expected {expected})")
        elif not all(line.startswith("error: ") for line in lines):
            problems.append("exit 2 with a message not starting with 'error: '")
        elif not all(names_input(line, args) for line in lines):
            problems.append("exit 2 with a message naming no file or option")
    if cpu_s > TIME_BOUND_S:  # CPU, as the timer's bound: wall time on a loaded machine failed a 4 s calibration
        problems.append(f"took {cpu_s:.1f} s of CPU > {TIME_BOUND_S:g} s")
    if check_output and result.exit_code == 0:
        problems.extend(check_output(outcome))
    return outcome


def result_json_is_sound(outcome: Outcome) -> list[str]:
    """`archsim run --json` at exit 0: a feasible Result has a finite positive latency and a finite energy; an
    infeasible one says why (issue 12: no silent wrong answer)."""
    try:
        record = json.loads(outcome.stdout)
    except ValueError as exc:
        return [f"--json output is not JSON ({exc})"]
    if not record.get("feasible", True):
        return [] if record.get("reason") else ["infeasible Result without a reason"]
    latency, energy = record.get("latency_s"), record.get("energy_pj")
    bad = []
    if not (isinstance(latency, int | float) and math.isfinite(latency) and latency > 0):
        bad.append(f"feasible Result with latency_s {latency!r}")
    if not (isinstance(energy, int | float) and math.isfinite(energy) and energy >= 0):
        bad.append(f"feasible Result with energy_pj {energy!r}")
    return bad
