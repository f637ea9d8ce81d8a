"""`archsim report --run` and `--reproduction`: the files, their columns, and the numbers behind the figures.

Sizes: FuseMax's mapping at BERT-base with 1K tokens (batch 64, 12 heads, head_dim 64, 2-byte words), where
the mapping reads Q, K, V and writes AV across DRAM exactly once (100663296 B = 64 x 12 x 1024 x 64 x 2 each).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from archsim import library
from archsim.point import run_point
from archsim.report import labelled, tables

RUN = ("--mapping", "fusemax", "--workload", "bert-base", "--set", "seq_len=1024")
CLOCK_HZ = 940e6  # the FuseMax preset's clock
FIGURES = ("roofline", "energy", "utilization")


@pytest.fixture(scope="module")
def run_report(tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from archsim.cli import main

    out = tmp_path_factory.mktemp("run")
    result = CliRunner().invoke(main, ["report", "--run", *RUN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(str(out / "index.html"))
    return out


def test_run_report_writes_every_file(run_report: Path) -> None:
    for name in FIGURES:
        assert (run_report / f"{name}.png").stat().st_size > 10_000
        assert (run_report / f"{name}.csv").stat().st_size > 0
    page = (run_report / "index.html").read_text()
    assert all(f"'{name}.png'" in page and f"'{name}.csv'" in page for name in FIGURES)
    summary = pd.read_csv(run_report / "summary.csv")
    assert list(summary.label) == ["fusemax"]
    assert {"latency_s", "energy_pj", "dram_traffic_bytes", "area_mm2"} <= set(summary.columns)
    assert summary.dram_traffic_bytes[0] == 4 * 64 * 12 * 1024 * 64 * 2  # Q, K, V in and AV out, once each


def test_roofline_rows(run_report: Path) -> None:
    rows = pd.read_csv(run_report / "roofline.csv")
    assert {"label", "einsum", "unit", "ops", "dram_bytes", "intensity_ops_per_byte", "time_s", "bound",
            "attained_ops_per_s", "peak_ops_per_s"} <= set(rows.columns)
    einsums = [e.name for e in library.load_cascade_spec("attention-1pass").einsums]
    assert sorted(rows.einsum) == sorted(einsums)  # one row per Einsum
    assert (rows.attained_ops_per_s <= rows.peak_ops_per_s * (1 + 1e-12)).all()
    # Unit ceilings: lanes x clock at one cycle per MAC: 256 x 256 and 256 PEs.
    peaks = rows.groupby("unit").peak_ops_per_s.first()
    assert peaks["array2d"] == pytest.approx(256 * 256 * CLOCK_HZ)
    assert peaks["array1d"] == pytest.approx(256 * CLOCK_HZ)
    # QK reads Q and K (no other Einsum does) once: 64*12*1024*1024*64 MACs over 2 x 64*12*1024*64*2 bytes,
    # i.e. seq_len / (2 x word_bytes) = 256 ops per byte.
    qk = rows.set_index("einsum").loc["QK"]
    assert qk.dram_bytes == 2 * 64 * 12 * 1024 * 64 * 2
    assert qk.intensity_ops_per_byte == pytest.approx(1024 / 4)
    assert math.isnan(rows.set_index("einsum").loc["LM"].intensity_ops_per_byte)  # LM moves no DRAM bytes


def test_energy_rows_sum_to_the_result(run_report: Path) -> None:
    rows = pd.read_csv(run_report / "energy.csv")
    assert list(rows.columns) == ["label", "component", "action", "energy_pj", "share", "stack"]
    result = run_point("fusemax", workload="bert-base", sets={"seq_len": 1024})
    assert rows.energy_pj.sum() == pytest.approx(result.energy_pj, rel=1e-9)
    assert len(rows) == len(result.energy_by)
    assert set(rows["stack"][rows.share < tables.OTHER_SHARE]) <= {"other"}


def test_utilization_rows(run_report: Path) -> None:
    rows = pd.read_csv(run_report / "utilization.csv")
    assert list(rows.columns) == ["label", "unit", "utilization"]
    assert set(rows.unit) == {"array2d", "array1d"} and rows.utilization.between(0, 1).all()


def test_pipelined_chain_has_its_own_ceiling() -> None:
    """FLAT pipelines SN's subtract into its exp unit: two ops per point, one point per cycle per PE, so SN
    beats the 1-D array's one-op ceiling and is bounded by twice it."""
    point = labelled.from_run("flat", workload="bert-base", sets={"seq_len": 1024})
    rows = tables.roofline_rows([point]).set_index("einsum")
    assert rows.loc["SN"].pipelined and rows.loc["SN"].peak_ops_per_s == pytest.approx(2 * 256 * CLOCK_HZ)
    assert (rows.attained_ops_per_s <= rows.peak_ops_per_s * (1 + 1e-12)).all()
    ceilings = tables.ceiling_rows([point])
    assert "array1d add+exp pipelined" in set(ceilings.name)


def test_reproduction_report(cli, tmp_path: Path) -> None:
    out = tmp_path / "fusemax"
    result = cli("report", "--reproduction", "fusemax", "--seq-len", "1024", "--out", str(out))
    assert str(out / "index.html") in result.output
    assert list(pd.read_csv(out / "summary.csv").label) == ["unfused", "flat", "cascade", "arch", "fusemax"]
    paper = pd.read_csv(out / "paper.csv")
    assert len(paper) == 3 * 90  # latency, traffic, energy at the 90 points the artifact has results for
    assert (out / "paper.png").stat().st_size > 10_000


@pytest.mark.parametrize(("args", "message"), [
    ((), "choose exactly one of --library, --run, --reproduction"),
    (("--library", "--run", *RUN), "(got --library and --run)"),
    (("--run", "--workload", "bert-base"), "--run needs --mapping"),
    (("--library", "--mapping", "fusemax"), "--mapping does not apply to --library"),
    (("--reproduction", "fusemax", "--set", "seq_len=1024"), "--set does not apply to --reproduction"),
])
def test_bad_choices_exit_2(cli, args: tuple[str, ...], message: str) -> None:
    result = cli("report", *args, expect=2)
    assert message in result.output
