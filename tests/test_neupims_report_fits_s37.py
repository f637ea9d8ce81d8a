"""The NeuPIMs report marks the points whose batch does not fit the memory (`neupims_reproduce.reproduce`'s `fits`
and `unfit_reason`): the CSVs carry both, the figures draw those bars hatched with a legend entry, summary.csv
carries `ours_fitting` beside `ours`, and the page says what the marking means.

GPT3-30B ShareGPT at batches 256 and 512 is a small subset with both kinds: at 512 the NPU modes' weights and KV
cache are beyond a device's memory (`memory_fit`), at 256 every mode fits.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from archsim.report import neupims as page
from archsim.systems import neupims_reproduce

MODEL, DATASET, BATCHES, SAMPLES = "gpt3-30b", "sharegpt", (256, 512), 2
KEYS = ["mode", "model", "dataset", "batch"]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return neupims_reproduce.reproduce(models=(MODEL,), datasets=(DATASET,), batches=BATCHES, samples=SAMPLES)


@pytest.fixture(scope="module")
def report(records, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("neupims") / "report"
    attribution = neupims_reproduce.attribution(models=(MODEL,), batches=BATCHES, samples=SAMPLES)
    index = page.write_neupims_report(records, out, page.mode_timelines(), neupims_reproduce.PAPER, attribution,
                                      neupims_reproduce.ablation(samples=SAMPLES))
    return {"html": index.read_text(), **{name: pd.read_csv(out / f"{name}.csv", keep_default_na=False)
                                          for name in ("throughput", "utilization", "summary")}}


def _unfit(records: list[dict]) -> dict[tuple, str]:
    return {tuple(r[k] for k in KEYS): r["unfit_reason"] for r in records if not r["fits"]}


def _hatched_heights(figure) -> list[list[float]]:
    """Per axes, the heights of its hatched bars (the legend's patches are not the axes')."""
    return [sorted(p.get_height() for p in ax.patches if p.get_hatch()) for ax in figure.axes]


def test_subset_has_points_that_do_not_fit(records) -> None:
    unfit = _unfit(records)
    assert unfit and len(unfit) < len(records)
    assert all(reason for reason in unfit.values())


def test_csvs_carry_fits_and_reason(records, report) -> None:
    unfit = _unfit(records)
    throughput = report["throughput"]
    assert len(throughput) == len(records)
    for _, row in throughput.iterrows():
        key = (row["mode"], row["model"], row["dataset"], row["batch"])
        assert row["fits"] == (key not in unfit) and row["unfit_reason"] == unfit.get(key, ""), key
    utilization = report["utilization"]
    assert len(utilization) == len(records)  # every record is MODEL x DATASET, Table 4's model and dataset
    for _, row in utilization.iterrows():
        key = (row["mode"], MODEL, DATASET, row["batch"])
        assert row["fits"] == (key not in unfit) and row["unfit_reason"] == unfit.get(key, ""), key


def test_unfit_bars_are_hatched_with_a_legend_entry(records) -> None:
    unfit = _unfit(records)
    rows = page.throughput_rows(records)
    figure = page.throughput_figure(rows)
    # left panel: batch 256, where every mode fits; right panel: every batch of MODEL x DATASET
    by_key = {tuple(r[k] for k in KEYS): r["throughput_tok_s"] for r in records}
    expected = sorted(by_key[k] for k in unfit)
    assert _hatched_heights(figure)[:2] == [[], pytest.approx(expected)]
    legend = figure.axes[1].get_legend()
    assert page.UNFIT_LABEL in [t.get_text() for t in legend.get_texts()]

    table = page.utilization_rows(records, neupims_reproduce.PAPER)
    figure = page.utilization_figure(table)
    npu = sorted(r["npu_util"] for r in records if not r["fits"])
    pim = sorted(r["pim_util"] for r in records if not r["fits"] and r["pim_util"] > 0)  # the PIM panel's modes
    assert _hatched_heights(figure)[:2] == [pytest.approx(npu), pytest.approx(pim)]
    for ax in figure.axes[:2]:
        assert page.UNFIT_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]


def test_summary_has_ours_fitting(records, report) -> None:
    """At batch 512 the NPU modes do not fit, so ours_fitting of NeuPIMs / NPU-only is the ratio at batch 256 alone,
    `ours` the geometric mean over both batches; Table 4's point (batch 256) fits, so its utilizations agree."""
    tok_s = {(r["mode"], r["batch"]): r["throughput_tok_s"] for r in records}
    summary = report["summary"].set_index("metric")
    assert list(summary.columns[:2]) == ["ours", "ours_fitting"]
    ratio = {b: tok_s["neupims", b] / tok_s["npu-only", b] for b in BATCHES}
    assert summary.loc["neupims/npu-only", "ours_fitting"] == pytest.approx(ratio[256], rel=1e-9)
    assert summary.loc["neupims/npu-only", "ours"] == pytest.approx(math.sqrt(ratio[256] * ratio[512]), rel=1e-9)
    for mode in ("npu+pim", "neupims"):
        metric = f"npu_util {mode}"
        assert summary.loc[metric, "ours_fitting"] == pytest.approx(summary.loc[metric, "ours"], rel=1e-12)


def test_page_says_what_the_marking_means(report) -> None:
    text = report["html"]
    assert "Hatched, unfilled bars are points whose batch does not fit the memory" in text
    assert "<code>ours_fitting</code> counts only the points that fit" in text
    assert "<th>ours_fitting</th>" in text
