"""`archsim reproduce seqpar` / `archsim report --reproduction seqpar` polish (issue 18): the grid's points say their
TP and Ulysses degrees and the printed grid ends with `archsim parallel` commands that re-run its rows; the report
has LASP-2 Table 2 and draws Table 3's TPU rows; the LASP-1 reason sets its fitted cost against the per-step costs
the model prices; the README's Ring block sizes are the model's. The reproduction runs once (module fixture); the
CLI tests read it through a patched `run_all`."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.report import seqpar as report
from archsim.systems import seqpar_reproduce as seqpar
from archsim.systems.seqpar_memory import TABLE3_TPUS

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def data(seqpar_all: dict) -> dict:
    return seqpar_all


@pytest.fixture
def patched(data: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(seqpar, "run_all", lambda: data)
    return data


def test_grid_points_carry_tp_and_ulysses(data: dict) -> None:
    """`devices` stays the GPU count; `tp` and `ulysses` say how the GPUs are used: TP 8 on the 405B rows, USP at
    Ulysses degree USP_ULYSSES."""
    for p in data["points"]:
        assert {"tp", "ulysses", "topology"} <= set(p), p
        assert p["tp"] == (seqpar.CP_TP if p["model"] == seqpar.CP_MODEL else 1), p
        assert p["ulysses"] == (seqpar.USP_ULYSSES if p["scheme"] == "usp" else None), p
        assert p["devices"] % p["tp"] == 0
    assert sorted(p["devices"] // p["tp"] for p in data["points"] if p["model"] == seqpar.CP_MODEL) == sorted(
        2 * seqpar.CP_NODES)


@pytest.mark.parametrize("which", ["405b", "usp"])
def test_parallel_command_reruns_a_grid_row(data: dict, which: str) -> None:
    """The command `parallel_command` builds from a point's fields gives the point's time through `archsim
    parallel` (the 405B row: --devices 2 --tp 8, not --devices 16)."""
    point = next(p for p in data["points"]
                 if (p["model"] == seqpar.CP_MODEL if which == "405b" else p["scheme"] == "usp"))
    command = seqpar.parallel_command(point)
    words = shlex.split(command)
    assert words[:2] == ["archsim", "parallel"]
    if which == "405b":
        assert "--devices 2 --tp 8" in command
    else:
        assert f"--ulysses {seqpar.USP_ULYSSES}" in command
    result = CliRunner().invoke(main, [*words[1:], "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["points"]
    assert row["latency_s"] == pytest.approx(point["time_s"], rel=1e-12)
    assert (row["devices"], row["tp"], row["ulysses"]) == (point["devices"] // point["tp"], point["tp"],
                                                           point["ulysses"])


def test_printed_grid_shows_tp_ulysses_and_the_commands(patched: dict) -> None:
    result = CliRunner().invoke(main, ["reproduce", "seqpar"])
    assert result.exit_code == 0, result.output
    grid = result.output[result.output.index("\nGrid"):]
    header = grid.splitlines()[2].split()
    assert header[:4] == ["scheme", "GPUs", "tp", "U"]
    rows = [line.split() for line in grid.splitlines()[3:] if line.split()[:1] in (["usp"], ["zigzag"])]
    assert ["usp", "8", "1", str(seqpar.USP_ULYSSES)] in [r[:4] for r in rows]
    assert ["zigzag", "16", str(seqpar.CP_TP), "-"] in [r[:4] for r in rows]
    big = next(p for p in patched["points"] if p["model"] == seqpar.CP_MODEL)
    usp = next(p for p in patched["points"] if p["scheme"] == "usp")
    after = grid[grid.index("Re-run a row"):]
    assert seqpar.parallel_command(big) in after and seqpar.parallel_command(usp) in after


def test_report_has_lasp2_table2_and_table3_tpu_rows(patched: dict, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--reproduction", "seqpar", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "lasp2_table2.csv")
    assert list(table["scheme"]) == [scheme for scheme, _ in seqpar.TABLE2_LASP_ROWS]
    assert list(table["throughput_tok_s"]) == pytest.approx([r["throughput_tok_s"]
                                                            for r in patched["lasp2_table2"]["rows"]])
    assert list(table["paper_high_tok_s"]) == [16549.5, 17834.3, 17395.0]
    page = (tmp_path / "index.html").read_text()
    section = page[page.index("<h2>LASP-2 Table 2"):]
    assert "'lasp2_table2.csv'" in section and "<table" in section.split("<h2>")[1]
    assert f"hybrid over linear {patched['lasp2_table2']['hybrid_over_linear']:.3f}" in section
    # Table 3's figure: an A100 panel and a TPU panel whose bars are the TPU rows' contexts on each slice reading
    rows = report.table3_table(patched["table3"])
    a100_axes, tpu_axes = report.table3_figure(rows).axes
    tpu = rows[rows["hardware"].isin({t.hardware for t in TABLE3_TPUS})].reset_index(drop=True)
    names = [text.get_text() for text in tpu_axes.get_legend().get_texts()]
    assert names == ["ours, tpu-v3-core / tpu-v4 / tpu-v5e", "ours, tpu-v3", "paper"]
    first = [bar.get_height() for bar in tpu_axes.containers[0]]
    expected = [r[f"max_context_tokens_{next(t.device for t in TABLE3_TPUS if t.hardware == r['hardware'])}"]
                for _, r in tpu.iterrows()]
    assert first == expected and all(height > 0 for height in first)
    assert len(a100_axes.containers[0]) == len(rows) - len(tpu)
    assert "both A100 presets)" not in report.__doc__


def test_lasp1_reason_sets_the_fitted_cost_against_the_priced_costs(data: dict) -> None:
    """The fitted 1.34 s is about 23x the gradient all-reduce and Adam step the model prices (~57 ms: 1.34 B
    parameters, Llama-3.2-1B's LM head tied to its embedding) and grows 15 % from 512K to 2048K: the reason says
    both, from the computed numbers."""
    costs = seqpar.lasp_step_costs()
    reading = data["lasp2"]["step_overhead_reading"]
    ratio = reading["step_overhead_s"] / costs["step_s"]
    assert 15 < ratio < 25
    assert costs["step_s"] == pytest.approx(costs["all_reduce_s"] + costs["adam_s"])
    assert 1.3e9 < costs["params"] < 1.4e9 and costs["nodes"] == seqpar.LASP_DEVICES // 8
    gaps = {int(n): gap for n, gap in reading["gaps_s"].items()}
    growth = gaps[max(gaps)] / gaps[min(gaps)] - 1
    reasons = [g["reason"] for g in data["lasp2"]["gains"] if g["baseline"] == "lasp1" and g["reason"]]
    assert reasons
    for reason in reasons:
        assert f"It is {ratio:.0f}x the per-step costs the model can account for ({costs['step_s'] * 1e3:.0f} ms" in (
            reason)
        assert f"grows {growth:.0%} from 512K to 2048K" in reason


def test_readme_ring_blocks_are_the_models() -> None:
    """At 512K a device's K/V block is 8192 tokens x 2048 x 2 x 2 B = 67 MB; a ring hop of a training step moves it
    forward and backward with fp32 dK, dV: 4 blocks, 268 MB, what the model's Ring moves per hop."""
    text = README.read_text()
    assert "268 MB K/V blocks" not in text
    block = 524288 // seqpar.LASP_DEVICES * 2048 * 2 * 2
    assert f"= {block / 1e6:.0f} MB" in text and f"{4 * block / 1e6:.0f} MB\na hop per step" in text
    ring = {r["seq_len"]: r for r in seqpar.lasp2_rows() if r["scheme"] == "ring"}[524288]
    nic = 25e9  # ib-hdr-200g per direction
    assert ring["comm_s"] / (seqpar.LASP_DEVICES - 1) * nic == pytest.approx(4 * block, rel=0.02)
    assert "about\n60 ms" not in text and re.search(r"Adam step at HBM rate, \d+ ms: \d+ ms", text)
