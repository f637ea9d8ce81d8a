"""Issue 13 part 7: one record for every target. A spatial point, a GPU kernel call, a system iteration and a
serving run each write `archsim.record.Record`; its flat row has the same metric columns whatever the kind, and
utilization is busy / window for every kind, so the store, the sweep runner and the reports read them alike."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from archsim import library
from archsim.dse.pareto import pareto_mask
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.analytical import evaluate
from archsim.model.gpu import AttentionCase, gpu_record
from archsim.model.gpu_kernels import family_of, predict
from archsim.point import prepare
from archsim.record import METRICS, PJ_PER_J, Record
from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.requests import poisson_requests
from archsim.systems.serving import SERVING_METRICS, ServingConfig, simulate_serving


@pytest.fixture(scope="module")
def records() -> dict[str, Record]:
    mapping = library.load_mapping_spec("fusemax")
    p = prepare(mapping, workload=library.load_workload_spec("bert-base"))
    spatial = evaluate(p.binding, p.analysis, p.arch, p.mapping).record()
    gpu = load_gpu("h100-sxm5")
    kernel = "FlashAttention-2"
    case = AttentionCase("fwd", 1, 16, 16, 64, 1024, False, "fp16")
    kernel_record = gpu_record(predict(kernel, case, gpu, load_calibration().family_params(family_of(kernel))), gpu)
    model = neupims.system("neupims", "gpt3-7b")
    iteration = model.iteration(Batch(decode_context_tokens=(100, 200, 300))).record(model.name)
    requests = poisson_requests(rate_per_s=20.0, n=8, lengths="alpaca", seed=0)
    served = simulate_serving(model, requests, ServingConfig(max_batch=8)).record(2.0)
    return {"architecture": spatial, "gpu": kernel_record, "system-iteration": iteration, "serving": served}


def test_every_kind_writes_the_same_metric_columns(records):
    for kind, record in records.items():
        assert record.target_kind == kind and record.feasible, (kind, record.reason)
        row = record.flat()
        assert set(METRICS) <= set(row), kind
        assert row["latency_s"] == record.time_s > 0
        assert row["energy_pj"] == pytest.approx(record.energy_j * PJ_PER_J) and row["energy_pj"] > 0
        assert row["edp"] == pytest.approx(row["latency_s"] * row["energy_pj"])
        utilization = {k: v for k, v in row.items() if k.startswith("utilization.")}
        assert utilization and all(0 < v <= 1 + 1e-9 for v in utilization.values()), (kind, utilization)


def test_what_each_kind_models_and_does_not(records):
    assert records["architecture"].area_um2 > 0 and records["architecture"].traffic_bytes > 0
    assert math.isnan(records["gpu"].area_um2) and records["gpu"].traffic_bytes > 0
    for kind in ("system-iteration", "serving"):
        assert math.isnan(records[kind].area_um2) and math.isnan(records[kind].traffic_bytes)
    served = records["serving"].flat()
    assert set(SERVING_METRICS) <= set(served)
    assert served["latency_s"] == served["tbt_p99_s"]
    # cost per token = price per hour x makespan / output tokens
    assert served["cost_per_token_usd"] == pytest.approx(2.0 * served["makespan_s"] / 3600 / served["output_tokens"])


def test_one_frame_of_every_kind_is_read_without_branching(records):
    """The rows of all four kinds stack into one frame and a Pareto front over the shared metrics runs on it."""
    frame = pd.DataFrame([{"target_kind": kind, "target": r.target, **r.flat()} for kind, r in records.items()])
    mask = pareto_mask(frame, ["latency_s", "energy_pj"])
    assert mask.any() and len(mask) == 4
