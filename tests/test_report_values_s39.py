"""A sweep report's CSVs hold the axis values as stored, its page and figures a label that never merges two values
(audit-cross 3: `parallel.seq_len` 1048576 printed `1.04858e+06` in summary.csv, the heat-map CSV and index.html, as
1048577 did, so two lengths became one heat-map row; summary.csv put `256 KiB` under `GlobalBuffer.capacity_bytes`).
"""

from __future__ import annotations

import pandas as pd
import pytest

from archsim.report import sweep_figures
from archsim.report.sweep import heatmap_table, value_label
from archsim.report.sweep_page import write_sweep_report

SEQ, BUFFER = "workload.seq_len", "arch.memories.GlobalBuffer.capacity_bytes"
CAPACITY = "GlobalBuffer.capacity_bytes"  # the buffer axis's column in summary.csv and the heat-map CSV
LENGTHS, BUFFERS = (1048576, 1048577), (262144, 16777216)


def _records() -> pd.DataFrame:
    """One feasible point per (seq_len, buffer): latency = seq_len x (1 + 2^20 / buffer) s, so the 16 MiB buffer at
    the shorter length is fastest; energy = seq_len x buffer / 2^20 pJ, so the 256 KiB buffer there is cheapest."""
    rows = [{"key": f"k{i}", "target_kind": "architecture", "target": "fusemax", SEQ: s, BUFFER: b, "feasible": True,
             "reason": None, "latency_s": s * (1 + 2**20 / b), "energy_pj": s * b / 2**20, "constraint_ok": True}
            for i, (s, b) in enumerate((s, b) for s in LENGTHS for b in BUFFERS)]
    return pd.DataFrame(rows)


def test_integer_labels_keep_every_digit() -> None:
    """1048576 and 1048577 both read `1.04858e+06`; 10 GB/s and one byte more both read `10 GB/s`."""
    assert [value_label(SEQ, n) for n in LENGTHS] == ["1048576", "1048577"]
    rate = "arch.memories.DRAM.bandwidth_bytes_per_s"
    assert [value_label(rate, v) for v in (10**10, 10**10 + 1)] == ["10 GB/s", "10.000000001 GB/s"]
    assert value_label(BUFFER, 1536) == "1.536 kB"  # 1.5 KiB: not a whole count of KiB, so decimal, exact
    assert value_label(BUFFER, 256 * 2**10) == "256 KiB"


def test_summary_and_heatmap_csvs_hold_the_exact_values_and_the_page_the_labels(tmp_path) -> None:
    out = tmp_path / "report"
    write_sweep_report(_records(), out, "exact", ("latency_s", "energy_pj"))
    summary = pd.read_csv(out / "summary.csv").set_index("objective")  # the best per objective per seq_len (s53)
    assert summary[["seq_len", CAPACITY]].to_numpy().tolist() == [[s, b] for s in LENGTHS for b in BUFFERS[::-1]]
    assert summary.best.tolist() == [v for s in LENGTHS for v in (s * (1 + 1 / 16), s * 262144 / 2**20)]
    cells = pd.read_csv(out / "heatmap_seq_len_GlobalBuffer-capacity_bytes.csv")
    assert list(zip(cells.seq_len, cells[CAPACITY], strict=True)) == [
        (s, b) for s in LENGTHS for b in BUFFERS]  # four cells: the two lengths are two rows
    assert cells.latency_s.tolist() == [s * (1 + 2**20 / b) for s in LENGTHS for b in BUFFERS]
    page = (out / "index.html").read_text()
    assert "<td>1048576</td>" in page and "<td>16 MiB</td>" in page and "1.04858e+06" not in page


def test_heatmap_figure_ticks_are_labels_of_distinct_values() -> None:
    heatmap = heatmap_table(_records(), SEQ, BUFFER)
    assert list(heatmap.best.index) == list(LENGTHS) and list(heatmap.best.columns) == list(BUFFERS)
    axes = sweep_figures.heatmap_figure(heatmap, "t").axes[0]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["1048576", "1048577"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["256 KiB", "16 MiB"]


def test_a_list_axis_is_one_heatmap_row_per_value() -> None:
    """A shape axis (lists, tuples once hashed) keys the rows as the value, its CSV cell the list as stored."""
    shape = "arch.units.array2d.shape"
    df = _records().drop(columns=SEQ).assign(**{shape: [[64, 64], [64, 64], [128, 128], [128, 128]]})
    heatmap = heatmap_table(df[["key", "target_kind", "target", shape, BUFFER, "feasible", "reason", "latency_s",
                                "energy_pj", "constraint_ok"]], shape, BUFFER)
    rows = heatmap.rows()
    assert rows["array2d.shape"].tolist() == [[64, 64], [64, 64], [128, 128], [128, 128]]
    assert rows.latency_s.tolist() == pytest.approx(_records().latency_s.tolist())
