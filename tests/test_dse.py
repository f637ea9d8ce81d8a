"""Design-space sweeps: spec validation, point expansion, keys, the SQLite store and resumable local runs."""

from __future__ import annotations

import collections
import math

import pytest

from archsim.dse import fusemax_pareto
from archsim.dse import sweep as sweep_module
from archsim.dse.points import evaluate_point, evaluate_points, expand, load_base, point_key
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import done_keys, open_store
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict
from archsim.point import run_point

EXAMPLE = {
    "name": "fusemax-dram-seq",
    "description": "FuseMax under DRAM bandwidth and sequence length",
    "mapping": "fusemax",
    "workload": "bert-base",
    "axes": {
        "arch.memories.DRAM.bandwidth_bytes_per_s": [4e11, 8e11],
        "workload.seq_len": [1024, 4096],
    },
    "constraints": ["area_um2 <= 5e8"],
    "objectives": ["latency_s", "energy_pj", "edp"],
}


def _spec(**changes):
    return sweep_from_dict({**EXAMPLE, **changes}, "test.yaml")


def _sampled(kind: str, samples: int, seed: int = 7):
    return _spec(axes={"arch.units.array2d.shape": [[64, 64], [128, 128], [256, 256]],
                       "workload.seq_len": [1024, 2048, 4096, 8192]},
                 sampling={"kind": kind, "samples": samples, "seed": seed})


def test_grid_is_the_cartesian_product_in_axis_order():
    points = expand(_spec())
    assert points == [
        {"target": "fusemax", "arch.memories.DRAM.bandwidth_bytes_per_s": bw, "workload.seq_len": n}
        for bw in (4e11, 8e11) for n in (1024, 4096)
    ]


@pytest.mark.parametrize("kind", ["random", "lhs"])
def test_sampling_draws_samples_points_deterministically_per_seed(kind):
    points = expand(_sampled(kind, 12))
    assert len(points) == 12
    assert points == expand(_sampled(kind, 12))
    assert points != expand(_sampled(kind, 12, seed=8))
    assert all(p["workload.seq_len"] in (1024, 2048, 4096, 8192) for p in points)


def test_lhs_is_stratified_every_value_used_equally():
    # 12 samples over 3 and 4 values: one draw per 1/12 stratum, so each value gets exactly 12/3 = 4 and 12/4 = 3.
    points = expand(_sampled("lhs", 12))
    shapes = collections.Counter(tuple(p["arch.units.array2d.shape"]) for p in points)
    lengths = collections.Counter(p["workload.seq_len"] for p in points)
    assert sorted(shapes.values()) == [4, 4, 4]
    assert sorted(lengths.values()) == [3, 3, 3, 3]


def test_point_key_is_stable_and_distinct_and_spelling_blind():
    spec = _spec()
    base = load_base(spec)
    a, b = expand(spec)[:2]
    assert point_key(spec, base, a) == point_key(spec, base, dict(a))
    assert point_key(spec, base, a) != point_key(spec, base, b)
    # The same configuration spelled as an int instead of a float, or the size given in `sets`, keys alike.
    assert (point_key(spec, base, {**a, "arch.memories.DRAM.bandwidth_bytes_per_s": 400_000_000_000})
            == point_key(spec, base, a))
    in_sets = _spec(sets={"seq_len": 1024}, axes={"arch.memories.DRAM.bandwidth_bytes_per_s": [4e11]})
    point = {"target": "fusemax", "arch.memories.DRAM.bandwidth_bytes_per_s": 4e11}
    assert point_key(in_sets, load_base(in_sets), point) == point_key(spec, base, a)


def test_point_key_changes_with_the_model_version(monkeypatch):
    spec = _spec()
    base = load_base(spec)
    point = expand(spec)[0]
    before = point_key(spec, base, point)
    monkeypatch.setattr("archsim.dse.points.MODEL_VERSION", "0.0.0-other")
    assert point_key(spec, base, point) != before


def test_evaluate_point_record():
    spec = _spec()
    base = load_base(spec)
    small, large = (evaluate_point(spec, base, p) for p in expand(spec)[:2])
    assert small["feasible"] and small["reason"] == ""
    # DRAM traffic with all of Q, K, V, O streamed once (the 1-pass cascade keeps the rest on chip):
    # 4 tensors x batch 64 x heads 12 x seq_len 1024 x head_dim 64 x 2 bytes = 402,653,184 B; linear in seq_len.
    assert small["dram_traffic_bytes"] == 4 * 64 * 12 * 1024 * 64 * 2
    assert large["dram_traffic_bytes"] == 4 * small["dram_traffic_bytes"]
    assert small["edp"] == pytest.approx(small["latency_s"] * small["energy_pj"])
    assert small["constraint_ok"] is (small["area_um2"] <= 5e8)
    assert small["workload.seq_len"] == 1024 and small["key"] == point_key(spec, base, expand(spec)[0])


def _counting(monkeypatch):
    calls = []

    def counted(spec, base, points, keys):
        calls.extend(points)
        return evaluate_points(spec, base, points, keys)

    monkeypatch.setattr(sweep_module, "evaluate_points", counted)
    return calls


def test_sweep_stores_every_point_and_a_rerun_computes_nothing(tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    db = tmp_path / "sweep.sqlite"
    df = run_sweep(_spec(), db, batch_size=3)
    assert len(calls) == 4 and len(df) == 4 and df["key"].is_unique
    assert df["feasible"].all()
    df_again = run_sweep(_spec(), db)
    assert len(calls) == 4
    assert df_again.equals(df)


def test_killed_sweep_keeps_committed_batches_and_resumes_only_the_rest(tmp_path, monkeypatch):
    db = tmp_path / "sweep.sqlite"
    spec = _spec(axes={"arch.memories.DRAM.bandwidth_bytes_per_s": [4e11, 8e11, 1.6e12],
                       "workload.seq_len": [1024, 4096]})
    calls = []

    def dies_on_fifth(spec, base, points, keys):
        calls.extend(points)
        if len(calls) >= 5:
            raise KeyboardInterrupt
        return evaluate_points(spec, base, points, keys)

    monkeypatch.setattr(sweep_module, "evaluate_points", dies_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, db, batch_size=2)
    conn = open_store(db)
    assert len(done_keys(conn)) == 4  # two batches of two committed; the third died mid-batch
    conn.close()

    calls = _counting(monkeypatch)
    df = run_sweep(spec, db, batch_size=2)
    assert len(calls) == 2 and len(df) == 6


def test_infeasible_point_is_stored_with_its_reason(tmp_path):
    spec = _spec(axes={"arch.memories.GlobalBuffer.capacity_bytes": [1024, 2**25], "workload.seq_len": [1024]})
    df = run_sweep(spec, tmp_path / "sweep.sqlite").set_index("arch.memories.GlobalBuffer.capacity_bytes")
    assert not df.loc[1024, "feasible"] and "GlobalBuffer" in df.loc[1024, "reason"]
    assert not df.loc[1024, "constraint_ok"]
    assert df.loc[2**25, "feasible"]


def test_gpu_presets_run_the_same_attention_over_the_workload_axes():
    spec = _spec(gpus={"presets": ["a100-80gb-sxm4", "h100-sxm5"]})
    base = load_base(spec)
    gpu_points = [p for p in expand(spec) if p["target"] != "fusemax"]
    assert gpu_points == [{"target": g, "workload.seq_len": n}
                          for g in ("a100-80gb-sxm4", "h100-sxm5") for n in (1024, 4096)]
    record = evaluate_point(spec, base, gpu_points[0])
    a100 = load_gpu("a100-80gb-sxm4")
    # BERT-base attention (batch 64, 12 heads of 64) at 1K tokens, a non-causal fp16 forward of FlashAttention-2
    expected = predict("FlashAttention-2", AttentionCase("fwd", 64, 12, 12, 64, 1024, False, "fp16"), a100,
                       load_calibration().family_params("fa2"))
    assert record["feasible"] and record["latency_s"] == expected.time_s > 0
    assert record["energy_pj"] == pytest.approx(a100.power_w * expected.time_s * 1e12)
    # no die area in the presets: NaN, and the area constraint does not exclude the GPU
    assert math.isnan(record["area_um2"]) and record["constraint_ok"]
    assert point_key(spec, base, gpu_points[0]) != point_key(spec, base, gpu_points[2])  # another GPU


@pytest.mark.parametrize(("changes", "field"), [
    ({"axis": {}}, "axis"),
    ({"axes": {"mapping.M0": [1]}}, "axes.mapping.M0"),
    ({"axes": {"arch.memories.SRAM.capacity_bytes": [1024]}}, "axes.arch.memories.SRAM.capacity_bytes"),
    ({"axes": {"arch.clock_hz": "1e9"}}, "axes.arch.clock_hz"),
    ({"axes": {"workload.seq_len": []}}, "axes.workload.seq_len"),
    ({"sampling": {"kind": "sobol"}}, "sampling.kind"),
    ({"sampling": {"kind": "lhs", "samples": 0}}, "sampling.samples"),
    ({"constraints": ["area_um2 <<= 4e8"]}, "constraints[0]"),
    ({"constraints": ["power_w <= 4"]}, "constraints[0]"),
    ({"objectives": ["throughput"]}, "objectives[0]"),
    ({"gpus": {"presets": ["a100"]}}, "gpus.presets[0]"),
    ({"gpus": {"presets": []}}, "gpus.presets"),
    ({"gpus": {"presets": ["h100-sxm5"], "kernel": "cudnn"}}, "gpus.kernel"),
    ({"gpus": {"presets": ["h100-sxm5"], "cores": 4}}, "gpus.cores"),
    ({"gpus": {"presets": ["h100-sxm5"]}, "workload": None}, "gpus"),
])
def test_bad_specs_name_the_field(changes, field):
    with pytest.raises(SpecError) as err:
        _spec(**changes)
    assert err.value.where == field and err.value.source == "test.yaml"


PE_DIM = {"values": [64, 128], "set": {
    "arch.units.array2d.shape": ["pe_dim", "pe_dim"], "arch.units.array1d.shape": ["pe_dim"],
    "arch.memories.RF.instances": "pe_dim * pe_dim", "arch.memories.RF1D.instances": "pe_dim",
    "workload.M0": "pe_dim"}}


def test_linked_axis_sets_its_fields_together_like_the_fig12_resize():
    spec = _spec(axes={"linked.pe_dim": PE_DIM, "workload.seq_len": [4096]}, constraints=[])
    base = load_base(spec)
    points = expand(spec)
    assert points == [{"target": "fusemax", "linked.pe_dim": 64, "workload.seq_len": 4096},
                      {"target": "fusemax", "linked.pe_dim": 128, "workload.seq_len": 4096}]
    record = evaluate_point(spec, base, points[0])
    # the same design as FuseMax's Fig. 12 resize (64 x 64 array, 64 lanes, one RF per PE, M0 = 64)
    arch = fusemax_pareto.resized(base.arch, 64, 2**24)
    expected = run_point("fusemax", arch=arch, workload="bert-base", sets={"seq_len": 4096, "M0": 64})
    assert record["latency_s"] == expected.latency_s and record["area_um2"] == expected.area_um2
    # the key is the resolved configuration's: spelled as five single-valued axes it is the same point
    explicit = _spec(axes={"arch.units.array2d.shape": [[64, 64]], "arch.units.array1d.shape": [[64]],
                           "arch.memories.RF.instances": [4096], "arch.memories.RF1D.instances": [64],
                           "workload.M0": [64], "workload.seq_len": [4096]}, constraints=[])
    assert point_key(explicit, load_base(explicit), expand(explicit)[0]) == record["key"]


@pytest.mark.parametrize(("linked", "field"), [
    ({"values": []}, "axes.linked.pe_dim.values"),
    ({"values": [64]}, "axes.linked.pe_dim.set"),
    ({"values": [64], "set": {"units.array2d.shape": 1}}, "axes.linked.pe_dim.set.units.array2d.shape"),
    ({"values": [64], "set": {"workload.M0": "pe_dim **"}}, "axes.linked.pe_dim.set.workload.M0"),
    ({"values": [64], "set": {"workload.M0": "tile"}}, "axes.linked.pe_dim.set.workload.M0"),
    ({"values": [64], "set": {"arch.units.array3d.shape": ["pe_dim"]}},
     "axes.linked.pe_dim.set.arch.units.array3d.shape"),
    ({"values": [64], "set": {"workload.M0": "pe_dim"}, "step": 2}, "axes.linked.pe_dim.step"),
])
def test_bad_linked_axes_name_the_field(linked, field):
    with pytest.raises(SpecError) as err:
        _spec(axes={"linked.pe_dim": linked})
    assert err.value.where == field


def test_pareto_mask_is_the_set_no_candidate_dominates():
    """On random frames with ties, NaNs, infeasible rows and a maximised objective: a row is on the front iff it is
    a candidate (finite, feasible, within constraints) and no candidate is no worse in every objective and better
    in one (the definition, checked pair by pair here)."""
    import numpy as np
    import pandas as pd

    from archsim.dse.pareto import pareto_mask, sense

    rng = np.random.default_rng(5)
    for trial in range(100):
        n, objectives = int(rng.integers(0, 40)), ["throughput_tok_s", "latency_s", "energy_pj"][:2 + trial % 2]
        df = pd.DataFrame({o: rng.integers(0, 4, n).astype(float) for o in objectives}, index=rng.permutation(n) + 3)
        df.loc[df.index[rng.random(n) < 0.1], objectives[1]] = np.nan
        df["feasible"], df["constraint_ok"] = rng.random(n) < 0.9, rng.random(n) < 0.9
        cost = df[objectives].to_numpy() * np.array([sense(o) for o in objectives])
        ok = np.isfinite(cost).all(axis=1) & df["feasible"].to_numpy() & df["constraint_ok"].to_numpy()
        expected = [bool(ok[i]) and not any(ok[j] and (cost[j] <= cost[i]).all() and (cost[j] < cost[i]).any()
                                            for j in range(n)) for i in range(n)]
        assert pareto_mask(df, objectives).tolist() == expected
