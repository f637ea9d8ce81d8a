"""Outputs are written whole (`archsim.outputs`): a killed `archsim report --run` leaves the old report or the new
one, never a mix; a writer given a path it cannot write raises a SpecError naming the path; a point report of an
infeasible or non-finite point says so instead of drawing it.

The kill test runs the CLI as a subprocess (SIGKILL cannot be caught, so no clean-up code runs) and kills it at
set moments: as soon as its staging folder appears, once the staging folder holds some files, and after seeded
random delays. The old report is FuseMax at BERT-base with 512 tokens, the new one 1024 tokens, so their
summary.csv files differ.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.figures import write_roofline, write_scatter
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.gpu.validate import Validation
from archsim.model.trace import Span, write_chrome_trace
from archsim.outputs import MANIFEST, atomic_dir
from archsim.report.cascades import write_cascade_report
from archsim.report.labelled import Labelled, from_run
from archsim.report.neupims import write_neupims_report
from archsim.report.point import write_point_report

RUN = ("report", "--run", "--mapping", "fusemax", "--workload", "bert-base")
OLD_SEQ_LEN, NEW_SEQ_LEN = 512, 1024
RANDOM_KILLS = 2
POLL_S = 0.002
TEXT_FILES = ("summary.csv", "roofline.csv", "energy.csv", "utilization.csv", "index.html")
SPANS = (Span("array2d", "QK", 0.0, 1e-6, {"tiles": 4, "stall_s": math.nan}),
         Span("DRAM", "read Q", 0.0, 5e-7, {"bytes": 1024.0}))


def _report(seq_len: int, out: Path) -> subprocess.Popen:
    """`archsim report --run` as a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "archsim", *RUN, "--set", f"seq_len={seq_len}", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1])


def _finish(process: subprocess.Popen) -> None:
    assert process.wait(timeout=60) == 0, process.stderr.read().decode()


def _contents(folder: Path) -> dict[str, bytes]:
    """Every file of a report folder (the foreign one aside): text files by content, figures by name only."""
    return {p.name: p.read_bytes() if p.name in TEXT_FILES else b"" for p in folder.iterdir() if p.name != "notes.txt"}


def _stages(parent: Path, out: Path) -> list[Path]:
    """The staging folders of `atomic_dir(out)`."""
    return list(parent.glob(f".{out.name}.*.new"))


def _stage_sizes(parent: Path, out: Path) -> list[int]:
    """Files in each staging folder (one may vanish while counted: the run swapped it in)."""
    sizes = []
    for stage in _stages(parent, out):
        with contextlib.suppress(FileNotFoundError):
            sizes.append(len(os.listdir(stage)))
    return sizes


def _kill_when(process: subprocess.Popen, ready: Callable[[float], bool]) -> float:
    """SIGKILL `process` once `ready(seconds since it started)` holds (or let it finish if it ends first); returns
    the seconds it ran."""
    started = time.monotonic()
    while process.poll() is None and not ready(time.monotonic() - started):
        time.sleep(POLL_S)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return time.monotonic() - started


def test_killed_report_leaves_the_old_or_the_new(cli, tmp_path: Path) -> None:
    out, reference = tmp_path / "report", tmp_path / "reference"
    cli(*RUN, "--set", f"seq_len={OLD_SEQ_LEN}", "--out", str(out))
    (out / "notes.txt").write_text("mine")  # a file the report did not write stays through every run
    cli(*RUN, "--set", f"seq_len={NEW_SEQ_LEN}", "--out", str(reference))
    expected = {OLD_SEQ_LEN: _contents(out), NEW_SEQ_LEN: _contents(reference)}
    assert expected[OLD_SEQ_LEN]["summary.csv"] != expected[NEW_SEQ_LEN]["summary.csv"]
    assert set(expected[OLD_SEQ_LEN]) == set(expected[NEW_SEQ_LEN]) >= {*TEXT_FILES, MANIFEST}
    started = time.monotonic()
    _finish(_report(NEW_SEQ_LEN, out))  # a run that is not killed replaces the report whole
    full_run_s = time.monotonic() - started
    assert _contents(out) == expected[NEW_SEQ_LEN]
    current = NEW_SEQ_LEN

    def stage_holds(count: int) -> Callable[[float], bool]:
        return lambda _: any(n >= count for n in _stage_sizes(tmp_path, out))

    def after(delay_s: float) -> Callable[[float], bool]:
        return lambda elapsed_s: elapsed_s >= delay_s

    def kill(ready: Callable[[float], bool]) -> float:
        """Kill a run that writes the other report than the one in place; check what it leaves."""
        nonlocal current, killed_mid_write
        target = OLD_SEQ_LEN if current == NEW_SEQ_LEN else NEW_SEQ_LEN
        ran_s = _kill_when(_report(target, out), ready)
        for stage in _stages(tmp_path, out):  # a killed run cannot remove its staging folder
            shutil.rmtree(stage)
        now = _contents(out)
        assert now in (expected[current], expected[target]), sorted(now)
        assert (out / "notes.txt").read_text() == "mine"
        killed_mid_write += now == expected[current]
        current = target if now == expected[target] else current
        return ran_s

    killed_mid_write = 0
    writing_from_s = kill(stage_holds(0))  # the moment it starts writing
    kill(stage_holds(4))
    rng = random.Random(12)
    for _ in range(RANDOM_KILLS):  # anywhere from the start of writing to the end of a whole run
        kill(after(rng.uniform(writing_from_s, full_run_s)))
    assert killed_mid_write >= 2  # the staging-folder kills land mid-write


def test_atomic_dir_keeps_the_old_folder_when_the_writer_fails(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with atomic_dir(out) as stage:
        (stage / "summary.csv").write_text("old")
    with pytest.raises(RuntimeError, match="drawing failed"), atomic_dir(out) as stage:
        (stage / "summary.csv").write_text("new")
        raise RuntimeError("drawing failed")
    assert (out / "summary.csv").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging folder left behind


def test_atomic_dir_carries_foreign_files_over_and_drops_old_report_files(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "results.sqlite").write_text("store")  # a sweep's store lives in its report folder
    (out / "runs").mkdir()
    (out / "runs" / "log.txt").write_text("log")
    with atomic_dir(out) as stage:
        (stage / "pareto.png").write_text("old figure")
        (stage / "index.html").write_text("old")
    with atomic_dir(out) as stage:
        (stage / "index.html").write_text("new")
    assert (out / "results.sqlite").read_text() == "store" and (out / "runs" / "log.txt").read_text() == "log"
    assert (out / "index.html").read_text() == "new"
    assert not (out / "pareto.png").exists()  # the old report's figure that the new one did not write is gone


@pytest.fixture(scope="module")
def point() -> Labelled:
    return from_run("fusemax", workload="bert-base", sets={"seq_len": 1024})


@pytest.fixture
def unwritable(tmp_path: Path) -> Path:
    """A path under a regular file: no one, root included, can create it."""
    (tmp_path / "afile").write_text("")
    return tmp_path / "afile" / "out"


def _writers(point: Labelled) -> dict:
    gpu = load_gpu("h100-sxm5")
    validation = Validation("none", load_calibration(), (), ())
    return {
        "point": lambda path: write_point_report([point], path, "t"),
        "cascades": lambda path: write_cascade_report([{"cascade": "ffn"}], path, "t"),
        "neupims": lambda path: write_neupims_report([], path, {}, {}, [], []),
        "trace": lambda path: write_chrome_trace(SPANS, path / "trace.json"),
        "gpu scatter": lambda path: write_scatter(validation, path / "validation.png"),
        "gpu roofline": lambda path: write_roofline(gpu, [], path / "roofline.png"),
    }


@pytest.mark.parametrize("writer", ["point", "cascades", "neupims", "trace", "gpu scatter", "gpu roofline"])
def test_unwritable_path_is_a_spec_error_naming_it(writer: str, point: Labelled, unwritable: Path) -> None:
    with pytest.raises(SpecError) as error:
        _writers(point)[writer](unwritable)
    assert str(unwritable) in str(error.value)
    assert not any(p.name.startswith(".") for p in unwritable.parents[1].iterdir())  # nothing half-made


def test_trace_creates_its_folder_and_writes_strict_json(tmp_path: Path) -> None:
    path = write_chrome_trace(SPANS, tmp_path / "missing" / "dir" / "t.json")

    def reject(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    events = json.loads(path.read_text(), parse_constant=reject)["traceEvents"]
    assert [e["args"] for e in events if e["ph"] == "X"] == [{"tiles": 4, "stall_s": "nan"}, {"bytes": 1024.0}]


def test_point_report_writes_the_timeline_inside_the_folder(point: Labelled, tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_point_report([point], out, "t", timeline=SPANS)
    assert len(json.loads((out / "trace.json").read_text())["traceEvents"]) == len(SPANS) + 3  # + 2 threads, 1 process
    assert "trace.json" in (out / MANIFEST).read_text().split("\n")  # the report's own file, replaced with it


def test_infeasible_point_is_named_not_drawn(point: Labelled, tmp_path: Path) -> None:
    # FuseMax at 1024 tokens keeps 332288 B of tiles in the GlobalBuffer (the run above); 1024 B cannot hold them.
    small = library.load_architecture_spec("fusemax").with_changes(**{"memories.GlobalBuffer.capacity_bytes": 1024})
    infeasible = from_run("fusemax", arch=small, workload="bert-base", sets={"seq_len": 1024})
    assert not infeasible.result.feasible
    out = tmp_path / "alone"
    index = write_point_report([infeasible], out, "t", timeline=SPANS)
    page = index.read_text()
    assert "fusemax is not drawn</b>: infeasible: group attention: GlobalBuffer" in page
    assert "no figures" in page and not list(out.glob("*.png")) and not (out / "trace.json").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert not summary.feasible[0] and "GlobalBuffer" in summary.reason[0] and "1024 B" in summary.reason[0]

    both = tmp_path / "both"
    write_point_report([point, replace(infeasible, label="too small")], both, "t")
    assert set(pd.read_csv(both / "roofline.csv").label) == {"fusemax"}
    assert "too small is not drawn" in (both / "index.html").read_text()
    assert list(pd.read_csv(both / "summary.csv").feasible) == [True, False]


def test_non_finite_point_is_named_not_drawn(point: Labelled, tmp_path: Path) -> None:
    broken = replace(point, result=replace(point.result, latency_s=math.nan, energy_pj=math.inf))
    page = write_point_report([broken], tmp_path / "r", "t").read_text()
    assert "fusemax is not drawn</b>: latency and energy not finite" in page


def test_empty_point_report_has_the_summary_columns(tmp_path: Path) -> None:
    write_point_report([], tmp_path / "r", "t")
    assert list(pd.read_csv(tmp_path / "r" / "summary.csv").columns)[:6] == [
        "label", "mapping", "cascade", "architecture", "feasible", "reason"]


def test_report_folder_is_readable_by_others_like_any_new_folder(point: Labelled, tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_point_report([point], tmp_path / "r", "t", timeline=SPANS)
    finally:
        os.umask(umask)
    assert (tmp_path / "r").stat().st_mode & 0o777 == 0o755
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in (tmp_path / "r").iterdir())


def test_the_rename_fallback_swaps_whole_and_keeps_foreign_files(tmp_path: Path, monkeypatch) -> None:
    """Where renameat2's exchange is missing, two renames replace the folder; foreign files survive."""
    import archsim.outputs as outputs

    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    out = tmp_path / "r"
    with outputs.atomic_dir(out) as stage:
        (stage / "a.csv").write_text("old")
    (out / "store.sqlite").write_text("db")
    with outputs.atomic_dir(out) as stage:
        (stage / "b.csv").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "b.csv", "store.sqlite"]
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no staging or retired folder left


@pytest.mark.parametrize("folder", [".", "..", "/"])
def test_a_report_folder_cannot_be_the_current_folder_or_above(folder: str) -> None:
    from archsim.outputs import check_writable

    with pytest.raises(SpecError, match="cannot be the current folder, one of its parents or /"):
        check_writable(folder, "--out", directory=True)
