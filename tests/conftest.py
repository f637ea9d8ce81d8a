"""Shared helpers for the tests: run the CLI in-process and parse its JSON; write a spec as YAML; record the
attention calls a sequence-parallel timing makes; compute a reproduction once for the whole run."""

from __future__ import annotations

import importlib
import json
import os
import pickle
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from filelock import FileLock

from archsim.cli import main
from archsim.systems.seqpar_compute import DeviceCompute


@pytest.fixture
def cli():
    runner = CliRunner()

    def run(*args: str, expect: int = 0):
        result = runner.invoke(main, list(args))
        assert result.exit_code == expect, (result.exit_code, result.output, result.exception)
        return result

    return run


@pytest.fixture
def cli_json(cli):
    def run(*args: str):
        return json.loads(cli(*args, "--json").output)

    return run


@pytest.fixture(scope="session")
def invoke():
    """Run the CLI in-process: (exit code, output), whatever the code."""
    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, list(args))
        return result.exit_code, result.output

    return run


@pytest.fixture(scope="session")
def write_yaml():
    """Write `data` as YAML at `path` (its folder made), keys in their given order (a sweep's axes in theirs);
    returns the path."""
    def write(path: Path, data: dict) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def attention_calls(monkeypatch: pytest.MonkeyPatch) -> set[tuple]:
    """The (q_tokens, k_tokens, causal, heads, kv_heads) of every non-empty `DeviceCompute.attention_s` call made
    while the test runs (the calls still timed as before)."""
    made: set[tuple] = set()
    timed = DeviceCompute.attention_s

    def record(self, q_tokens, k_tokens, causal, heads=None, kv_heads=None):
        if q_tokens and k_tokens:
            made.add((q_tokens, k_tokens, causal, self.heads if heads is None else heads,
                      self.kv_heads if kv_heads is None else kv_heads))
        return timed(self, q_tokens, k_tokens, causal, heads, kv_heads)

    monkeypatch.setattr(DeviceCompute, "attention_s", record)
    return made


@pytest.fixture(scope="session")
def computed_once(tmp_path_factory: pytest.TempPathFactory):
    """`get(name, compute)`: `compute()`'s value, computed once for the whole run. The first pytest-xdist worker to
    ask computes it and pickles it beside the workers' temporary folders (the run's own, so never a stale value;
    without xdist, in the process's own), under a file lock, written whole before it is named; the other worker
    waits for it rather than computing it again. Each ask unpickles a copy (the session fixtures below ask once per
    worker, so the tests of a worker share theirs: read, never change it). For the reproductions several test files
    read: pure functions of the shipped specs, the same value in every worker (so never ask inside a test that
    patches the models)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent

    def get(name: str, compute):
        path = shared / f"computed-once-{name}.pickle"
        with FileLock(f"{path}.lock"):
            if not path.is_file():
                partial = path.with_suffix(".partial")
                partial.write_bytes(pickle.dumps(compute()))
                partial.replace(path)
        return pickle.loads(path.read_bytes())

    return get


@pytest.fixture(scope="session")
def lamina_grid(computed_once) -> list[dict]:
    """`archsim reproduce lamina`'s points: 3 models x 4 traces, every system (`lamina_reproduce.reproduce()`, about
    a minute)."""
    from archsim.systems import lamina_reproduce

    return computed_once("lamina-grid", lamina_reproduce.reproduce)


@pytest.fixture(scope="session")
def run_all_once(computed_once):
    """`get(paper)`: a copy of `archsim.systems.<paper>_reproduce.run_all()` (seqpar: about 10 s, sparse: 4 s),
    computed once for the run by `computed_once`."""
    originals = {}

    def get(paper: str):
        module = importlib.import_module(f"archsim.systems.{paper}_reproduce")
        return computed_once(paper, originals.setdefault(paper, module.run_all))

    return get


@pytest.fixture(scope="session")
def read_once(run_all_once):
    """`read(patch, paper)`: make `archsim reproduce PAPER` and `archsim report --reproduction PAPER` read the run's
    one result (a copy per call) under the monkeypatch `patch`; returns that result."""
    def read(patch: pytest.MonkeyPatch, paper: str):
        result = run_all_once(paper)
        patch.setattr(importlib.import_module(f"archsim.systems.{paper}_reproduce"), "run_all",
                      lambda: run_all_once(paper))
        return result

    return read


@pytest.fixture(scope="session")
def seqpar_all(run_all_once) -> dict:
    """`archsim reproduce seqpar`'s result."""
    return run_all_once("seqpar")


@pytest.fixture
def seqpar_cli(read_once, monkeypatch: pytest.MonkeyPatch) -> dict:
    """`archsim reproduce seqpar` prints, writes and dumps the run's one result in this test."""
    return read_once(monkeypatch, "seqpar")


@pytest.fixture
def sparse_cli(read_once, monkeypatch: pytest.MonkeyPatch) -> dict:
    """`archsim reproduce sparse` prints and dumps the run's one result in this test."""
    return read_once(monkeypatch, "sparse")


@pytest.fixture(scope="session")
def fusemax_end2end(computed_once) -> list[dict]:
    """FuseMax's linear-layer records (`fusemax_linear.end2end_records()`, about 12 s)."""
    from archsim.systems import fusemax_linear

    return computed_once("fusemax-end2end", fusemax_linear.end2end_records)


@pytest.fixture
def fusemax_end2end_cli(fusemax_end2end, monkeypatch: pytest.MonkeyPatch) -> None:
    """`archsim reproduce fusemax` reads `fusemax_end2end` in this test (its attention and Pareto records it still
    computes)."""
    from archsim.systems import fusemax_linear

    monkeypatch.setattr(fusemax_linear, "end2end_records", lambda: fusemax_end2end)

