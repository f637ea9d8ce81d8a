"""The NeuPIMs report (`archsim.report.neupims`) and the block timeline it draws (`neupims.block_timeline`).

The block time a timeline must end at comes from the iteration time alone (`SystemModel.iteration`): a device
with one more decoder block takes one more block (blocked: QKV + MHA + projection/FFN; SBI: the steady-state stages
C + D, since a device takes A + B + (N-1)(C + D) + E + F, §1.4 of ../shared/reference/pim.md), so the block time is
the difference of two iterations divided by the pipeline stages.
"""

from __future__ import annotations

import html
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from archsim.report import neupims as page
from archsim.systems import neupims, neupims_reproduce
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.system_model import SystemModel, layer_phases

MODELS, BATCHES, SAMPLES = ("gpt3-7b", "gpt3-30b"), (64, 256), 2
MODES = (*neupims.MODES, "neupims-no-sbi")
SBI_ONE_ROW_BUFFER = "sbi-one-row-buffer"  # neupims with Newton's single row buffer (`_mode`)
FILES = ("index.html", "summary.csv", "throughput.png", "throughput.csv", "utilization.png", "utilization.csv",
         "timeline.png", "timeline.csv", "attribution.png", "attribution.csv",
         "ablation.png", "ablation.csv")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return neupims_reproduce.reproduce(models=MODELS, batches=BATCHES, samples=SAMPLES)


@pytest.fixture(scope="module")
def attribution() -> list[dict]:
    return neupims_reproduce.attribution(models=MODELS, batches=BATCHES, samples=SAMPLES)


@pytest.fixture(scope="module")
def timelines() -> dict:
    return page.mode_timelines()


def _contexts(dataset: str = "sharegpt", batch: int = 256) -> np.ndarray:
    return neupims_reproduce.sample_contexts((0, neupims_reproduce.DATASETS.index(dataset), batch, 0), batch, dataset)


def _mode(mode: str):
    if mode == SBI_ONE_ROW_BUFFER:
        return neupims.configure("neupims", {"devices.pim.row_buffers": 1}, SBI_ONE_ROW_BUFFER)
    return mode


def _block_s(system: SystemModel, contexts: np.ndarray) -> float:
    """One more layer per device (PP more layers) adds one layer to each PP stage (module docstring)."""
    pp, params = system.parallelism.pp, system.workload.params
    longer = system_model(system.system, replace(system.workload, params={**params, "layers": params["layers"] + pp}))
    batch = Batch(decode_context_tokens=contexts)
    return (longer.iteration(batch).time_s - system.iteration(batch).time_s) / pp


def _assert_no_overlap(spans) -> None:
    for resource in {s.resource for s in spans}:
        mine = sorted((s for s in spans if s.resource == resource), key=lambda s: s.start_s)
        assert all(s.end_s > s.start_s for s in mine)
        for before, after in pairwise(mine):
            assert after.start_s >= before.end_s * (1 - 1e-12), (resource, before.name, after.name)


@pytest.mark.parametrize("mode", [*page.TIMELINE_MODES, SBI_ONE_ROW_BUFFER])
@pytest.mark.parametrize("model, batch", [("gpt3-30b", 256), ("gpt3-7b", 64)])
def test_block_timeline_ends_at_the_model_block_time(mode, model: str, batch: int) -> None:
    system, contexts = neupims.system(_mode(mode), model), _contexts(batch=batch)
    spans = neupims.block_timeline(system, contexts)
    assert {s.resource for s in spans} <= set(neupims.TIMELINE_RESOURCES)
    assert min(s.start_s for s in spans) == 0.0
    block_s = _block_s(system, contexts)
    assert max(s.end_s for s in spans) == pytest.approx(block_s, rel=1e-9)
    assert layer_phases(system, contexts).layer_s == pytest.approx(block_s, rel=1e-9)
    _assert_no_overlap(spans)


def test_timeline_shows_each_mode_schedule(timelines) -> None:
    """§1.4: NeuPIMs at batch 256 interleaves sub-batches (stages C and D, MHA #2 beside the NPU's #1 work, then
    MHA #1 beside #2); npu-only reads K/V on HBM and has no PIM; the others run MHA on the PIM."""
    sbi = timelines["neupims"]
    assert [s.name for s in sbi if s.resource == "PIM"] == ["C: MHA #2", "D: MHA #1"]
    assert {s.args["stage"] for s in sbi} == {"C", "D"}
    assert not any(s.resource == "PIM" for s in timelines["npu-only"])
    assert [s.name for s in timelines["npu+pim"] if s.resource == "PIM"] == ["MHA logits", "MHA attend"]
    assert [s.name for s in timelines["neupims-no-sbi"] if s.resource == "PIM"] == ["MHA logits + attend"]


def test_report_writes_every_figure_with_its_table(records, timelines, attribution, tmp_path) -> None:
    ablation = neupims_reproduce.ablation(samples=SAMPLES)
    index = page.write_neupims_report(records, tmp_path, timelines, neupims_reproduce.PAPER, attribution, ablation)
    assert index == tmp_path / "index.html"
    for name in FILES:
        assert (tmp_path / name).stat().st_size > 0, name
    page_html = index.read_text()
    assert all(f"{name}.png" in page_html for name in ("throughput", "utilization", "timeline", "attribution",
                                                            "ablation"))
    explained = neupims_reproduce.explain(attribution, neupims_reproduce.HEADLINE_TOLERANCE)
    assert explained and all(html.escape(line) in page_html for line in explained)
    assert all(html.escape(v.choice) in page_html for v in neupims_reproduce.VARIANTS)
    gains = pd.read_csv(tmp_path / "ablation.csv")
    assert len(gains) == len(neupims_reproduce.ablation_pairs()) * len(neupims_reproduce.BATCHES)
    variants = pd.read_csv(tmp_path / "attribution.csv")
    assert len(variants) == len(attribution) and set(variants["variant"]) == {
        v.name for v in neupims_reproduce.VARIANTS}

    throughput = pd.read_csv(tmp_path / "throughput.csv")
    keys = ["mode", "model", "dataset", "batch"]
    assert len(throughput) == len(MODES) * len(MODELS) * len(neupims_reproduce.DATASETS) * len(BATCHES)
    assert not throughput.duplicated(keys).any() and set(throughput["mode"]) == set(MODES)

    utilization = pd.read_csv(tmp_path / "utilization.csv")
    assert len(utilization) == len(MODES) * len(BATCHES)  # one row per (mode, batch) of GPT3-30B ShareGPT
    assert not utilization.duplicated(["mode", "batch"]).any()
    marked = utilization.dropna(subset=["paper_npu_util"]).set_index("mode")
    assert marked["batch"].eq(256).all()
    # Table 4 (reference §1.6): NPU 28.0 % -> 64.9 %, PIM 17 % (§1.1) -> 26.4 %.
    assert marked.loc["npu+pim", "paper_npu_util"] == 0.28 and marked.loc["neupims", "paper_npu_util"] == 0.649
    assert marked.loc["npu+pim", "paper_pim_util"] == 0.17 and marked.loc["neupims", "paper_pim_util"] == 0.264

    timeline = pd.read_csv(tmp_path / "timeline.csv")
    assert timeline.groupby("mode").size().to_dict() == {m: len(s) for m, s in timelines.items()}

    summary = pd.read_csv(tmp_path / "summary.csv")
    # every mode and Table 4's point are in the records
    assert summary["metric"].tolist() == list(neupims_reproduce.PAPER)
