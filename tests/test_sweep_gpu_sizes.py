"""GPU points of a sweep take the point's sizes (rank overrides refused, linked workload fields applied), a NaN
metric meets a constraint only where the point's target does not model it, and numpy numbers are axis values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from archsim.dse.points import evaluate_point, expand, load_base, with_constraints
from archsim.dse.spec import Constraint, point_count, sweep_from_dict
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict

BASE = {"name": "g", "mapping": "fusemax", "workload": "bert-base"}
GPUS = {"presets": ["h100-sxm5"]}


def _spec(**changes):
    return sweep_from_dict({**BASE, **changes}, "g.yaml")


def _refusal(**changes) -> SpecError:
    with pytest.raises(SpecError) as exc:
        _spec(**changes)
    return exc.value


@pytest.mark.parametrize(("changes", "where", "parameter"), [
    ({"axes": {"workload.B": [1, 64]}}, "axes.workload.B", "workload.batch"),
    ({"axes": {"workload.seq_len": [4096], "workload.M": [8192, 16384]}}, "axes.workload.M", "workload.seq_len"),
    ({"axes": {"workload.seq_len": [4096]}, "sets": {"H": 8}}, "sets.H", "workload.heads"),
    ({"axes": {"linked.s": {"values": [1, 2], "set": {"workload.P": "s * 4096"}}}},
     "axes.linked.s.set.workload.P", "workload.seq_len"),
])
def test_a_rank_size_with_gpus_is_refused_naming_its_parameter(changes, where, parameter):
    # the GPU call is one square prefill over the workload's parameters (batch, heads, kv_heads, head_dim, seq_len):
    # a rank set alone (B=1 beside batch 64, M=8192 beside P=4096) is not what it would time
    error = _refusal(**changes, gpus=GPUS)
    assert error.where == where and parameter in error.message


def test_a_rank_size_without_gpus_is_still_a_sweep():
    spec = _spec(axes={"workload.seq_len": [4096], "workload.M": [8192]})
    assert [p["workload.M"] for p in expand(spec)] == [8192]


def test_a_rank_and_the_parameter_sizing_it_alone_are_one_field():
    # batch sizes rank B alone (fusemax's `ranks: {B: batch}`): B=64 overrides batch=1 entirely, so the record's
    # batch would not be the size the point ran at
    error = _refusal(axes={"workload.batch": [1], "workload.B": [64]})
    assert error.where == "axes.workload.B" and "axes.workload.batch" in error.message
    error = _refusal(sets={"B": 2}, axes={"workload.batch": [1]})
    assert error.where == "axes.workload.batch" and "sets.B" in error.message
    # seq_len sizes P as well as M: M beside it changes the keys' length only, both take effect
    assert len(expand(_spec(axes={"workload.seq_len": [4096], "workload.M": [8192]}))) == 1


def test_gpu_points_run_at_each_value_of_a_linked_workload_axis():
    spec = _spec(axes={"linked.s": {"values": [4096, 16384], "set": {
        "workload.seq_len": "s", "arch.memories.GlobalBuffer.capacity_bytes": "s * 256"}}}, gpus=GPUS)
    points = expand(spec)
    gpu_points = [p for p in points if p["target"] == "h100-sxm5"]
    assert gpu_points == [{"target": "h100-sxm5", "linked.s": 4096}, {"target": "h100-sxm5", "linked.s": 16384}]
    assert point_count(spec) == len(points) == 4
    base, h100 = load_base(spec), load_gpu("h100-sxm5")
    for point in gpu_points:
        # BERT-base attention (batch 64, 12 heads of 64) at the linked length, a non-causal fp16 forward
        case = AttentionCase("fwd", 64, 12, 12, 64, point["linked.s"], False, "fp16")
        expected = predict("FlashAttention-2", case, h100, load_calibration().family_params("fa2")).time_s
        assert evaluate_point(spec, base, point)["latency_s"] == expected > 0


def test_a_linked_axis_of_arch_fields_only_adds_no_gpu_point():
    spec = _spec(axes={"linked.s": {"values": [1, 2], "set": {"arch.memories.GlobalBuffer.capacity_bytes":
                                                                  "s * 1048576"}}}, gpus=GPUS)
    assert [p for p in expand(spec) if p["target"] == "h100-sxm5"] == [{"target": "h100-sxm5"}]
    assert point_count(spec) == 3


def test_the_gpu_check_reads_a_linked_word_width(tmp_path):
    # a workload of 1-byte words: fp16 GPU points are refused unless an axis gives the width (points of another
    # width are then infeasible); a linked axis giving it counts as one
    text = tmp_path / "w.yaml"
    text.write_text("name: w1\nparams: {batch: 64, seq_len: 1024, heads: 12, kv_heads: 12, head_dim: 64, "
                    "hidden: 768, ffn_dim: 3072, word_bytes: 1}\n")
    data = {**BASE, "workload": str(text), "gpus": GPUS}
    with pytest.raises(SpecError, match="1 bytes"):
        sweep_from_dict({**data, "axes": {"workload.seq_len": [4096]}}, str(tmp_path / "s.yaml"))
    spec = sweep_from_dict({**data, "axes": {"linked.w": {"values": [1, 2], "set": {"workload.word_bytes": "w"}}}},
                           str(tmp_path / "s.yaml"))
    base = load_base(spec)
    records = [evaluate_point(spec, base, p) for p in expand(spec) if p["target"] == "h100-sxm5"]
    assert [r["feasible"] for r in records] == [False, True]


def _table(kind: str, **metrics: float) -> pd.DataFrame:
    row = {"latency_s": 1.0, "energy_pj": 1.0, "area_um2": 1.0, "dram_traffic_bytes": 1.0, "edp": 1.0, **metrics}
    return pd.DataFrame([{"target_kind": kind, "feasible": True, **row}])


@pytest.mark.parametrize(("kind", "metric", "ok"), [
    ("gpu", "area_um2", True),  # a GPU preset has no die area (archsim.model.gpu.gpu_record)
    ("gpu", "latency_s", False),
    ("architecture", "area_um2", False),
    ("architecture", "energy_pj", False),
    ("parallel", "memory_bytes", False),
    ("system", "area_um2", True),  # UNMODELLED: a system's area
])
def test_a_nan_metric_meets_a_constraint_only_where_the_target_does_not_model_it(kind, metric, ok):
    df = _table(kind, **{metric: math.nan})
    assert bool(with_constraints(df, (Constraint(metric, "<=", 1000.0),))["constraint_ok"].iloc[0]) is ok


def test_numpy_numbers_are_axis_values():
    seq = np.arange(1, 3) * 4096
    spec = _spec(axes={"workload.seq_len": list(seq), "arch.clock_hz": np.array([9.4e8]),
                       "linked.s": {"values": [np.int64(1)], "set": {"arch.memories.GlobalBuffer.capacity_bytes":
                                                                         "s * 1048576"}}},
                 sets={"batch": np.int32(8)})
    assert spec.axes["workload.seq_len"] == [4096, 8192]
    assert all(type(v) is int for v in spec.axes["workload.seq_len"])
    assert spec.axes["arch.clock_hz"] == [9.4e8] and type(spec.axes["arch.clock_hz"][0]) is float
    assert type(spec.axes["linked.s"][0]) is int and type(spec.sets["batch"]) is int
    with pytest.raises(SpecError, match="a number of at least 0"):
        _spec(axes={"workload.seq_len": [np.bool_(True)]})
