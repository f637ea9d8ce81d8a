"""Audit s51 (sweeps): GPU points beside a cascade whose ranks the GPU call does not read, a sweep killed in its
first batch, a parallel sweep's axis value on a scheme that ignores it, and an in-process sweep's batches after a
probe of cheap points."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse import dask_run
from archsim.dse import sweep as sweep_module
from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.points import evaluate_points, expand, keyed, load_base
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import done_keys, open_store
from archsim.dse.sweep import next_batch_size, run_sweep
from archsim.errors import SpecError

BW = "arch.memories.DRAM.bandwidth_bytes_per_s"
GPUS = {"presets": ["h100-sxm5"], "kernel": "FlashAttention-2", "causal": False}


def _one_line(result) -> str:
    text = result.output.strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


# ---------------------------------------------------------------- 1. GPU points time the cascade's own ranks


def _sized(tmp_path: Path, ranks: dict[str, str], params: dict[str, int]) -> Path:
    """attention-1pass with some ranks sized by other parameters (the auditor's cross1p.yaml: P by q_len, M by
    kv_len), and FuseMax's mapping over it; returns the mapping's path."""
    cascade = yaml.safe_load(library.find("cascades", "attention-1pass").read_text())
    sized = {**cascade["ranks"], **ranks}
    kept = {k: v for k, v in cascade["params"].items() if k in sized.values() or k == "word_bytes"}
    cascade = {**cascade, "name": "resized-1pass", "params": {**kept, **params}, "ranks": sized}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cascade, sort_keys=False))
    mapping = yaml.safe_load(library.find("mappings", "fusemax").read_text())
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**mapping, "name": "fusemax-resized", "cascade": "c.yaml"}, sort_keys=False))
    return path


def test_cross_attention_beside_gpus_is_refused_naming_the_rank_and_parameter(cli, tmp_path: Path) -> None:
    """The auditor's sweep: 512 queries over 65536 keys (bert-base: batch 64, 12 heads, head_dim 64). The GPU call
    is one square prefill over the workload's seq_len (1024), so the H100 point read 0.000705 s and 4.058e8 B, Q K V
    O at 1024 tokens (4 x 64 x 12 x 1024 x 64 x 2 B = 4.03e8 B), where the cascade's problem is
    4 x 64 x 12 x 512 x 65536 x 64 = 6.6e12 FLOP. README "Design-space exploration": exit 2 at gpus, no store."""
    mapping = _sized(tmp_path, {"P": "q_len", "M": "kv_len"}, {"q_len": 8, "kv_len": 16})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "cross-sweep", "mapping": str(mapping), "workload": "bert-base",
                                    "sets": {"q_len": 512, "kv_len": 65536}, "axes": {BW: [1e11, 4e11]},
                                    "gpus": GPUS, "objectives": ["latency_s", "energy_pj"]}))
    db = tmp_path / "x.sqlite"
    text = _one_line(cli("sweep", str(path), "--db", str(db), expect=2))
    assert text.startswith(f"error: {path}: gpus: ")
    assert "rank P" in text and "q_len" in text and "seq_len" in text, text
    assert not db.exists()


@pytest.mark.parametrize(("ranks", "params", "rank", "parameter", "reads"), [
    ({"M": "kv_len"}, {"kv_len": 16}, "M", "kv_len", "seq_len"),      # keys of another length than the queries
    ({"F": "v_dim"}, {"v_dim": 8}, "F", "v_dim", "head_dim"),         # values wider than the keys
    ({"H": "q_heads"}, {"q_heads": 2}, "H", "q_heads", "heads"),       # heads by another name
    ({"B": "rows"}, {"rows": 2}, "B", "rows", "batch"),
])
def test_each_rank_the_gpu_call_reads_must_be_sized_by_its_parameter(tmp_path, ranks, params, rank, parameter,
                                                                     reads) -> None:
    """AttentionCase (archsim/model/gpu.py) takes batch, heads, kv_heads, head_dim and one seqlen for queries and
    keys, which a GPU point reads from the workload's parameters (points._gpu_call): a Q, K or V rank sized by any
    other parameter is a problem the GPU point does not time."""
    mapping = _sized(tmp_path, ranks, params)
    with pytest.raises(SpecError) as caught:
        sweep_from_dict({"name": "s", "mapping": str(mapping), "workload": "bert-base",
                         "sets": {parameter: 1024 if rank == "M" else 64 if rank == "F" else 12 if rank == "H"
                                  else 64},
                         "axes": {BW: [1e11]}, "gpus": GPUS, "objectives": ["latency_s", "energy_pj"]},
                        str(tmp_path / "s.yaml"))
    error = caught.value
    assert error.where == "gpus", error
    assert f"rank {rank} " in error.message and parameter in error.message and reads in error.message, error.message


def test_the_shipped_attention_cascades_still_take_gpus() -> None:
    """MHA (fusemax, bert-base) and GQA (fusemax-gqa, llama3-8b: G sized by kv_heads) size every rank by the
    parameter the GPU call reads."""
    sweep_from_dict({"name": "s", "mapping": "fusemax", "workload": "bert-base", "axes": {BW: [1e11]},
                     "gpus": GPUS, "objectives": ["latency_s", "energy_pj"]}, "s.yaml")
    sweep_from_dict({"name": "s", "mapping": "fusemax-gqa", "workload": "llama3-8b", "axes": {BW: [1e11]},
                     "gpus": {**GPUS, "causal": True}, "objectives": ["latency_s", "energy_pj"]}, "s.yaml")


# ---------------------------------------------------------------- 2. a sweep killed in its first batch


def _killed_after(monkeypatch, points: int) -> list:
    """Point evaluation that dies (KeyboardInterrupt, as a kill mid-batch) once `points` points have been asked
    for; returns the list of points asked for."""
    asked = []

    def dies(spec, base, batch, keys):
        asked.extend(batch)
        if len(asked) >= points:
            raise KeyboardInterrupt
        return evaluate_points(spec, base, batch, keys)

    monkeypatch.setattr(sweep_module, "evaluate_points", dies)
    return asked


def _stored(db: Path) -> int:
    conn = open_store(db)
    try:
        return len(done_keys(conn))
    finally:
        conn.close()


# 4 bandwidths x 12 lengths = 48 FuseMax points, a quarter being 12: the probe had evaluated the first 12 in one
# batch (min(PROBE_POINTS 32, 12)), stored when all were done, so a kill at the 6th point stored none. The auditor's
# 96-point serving sweep (0.5-1 s a point) killed after 13 s stored 0 points the same way.
KILL_SPEC = {"name": "kill", "mapping": "fusemax", "workload": "bert-base",
             "axes": {BW: [1e11 * k for k in range(1, 5)], "workload.seq_len": [256 * k for k in range(1, 13)]},
             "objectives": ["latency_s", "energy_pj"]}


def test_a_sweep_killed_in_its_probe_keeps_the_points_it_finished(tmp_path, monkeypatch) -> None:
    """The probe starts at one point and doubles (1, 2, 4, ...), each chunk stored as it finishes: killed while
    asking for its 6th point (inside the chunk of 4, points 4-7), the sweep has stored the chunks of 1 and 2. At
    most about PROBE_S of finished work (and the chunk running) is lost; PROBE_S and the batch target (a chunk
    doubles while it took under half of it, `next_batch_size`) are raised here so the probe's clock does not end
    it or slow its growth first on a slow machine."""
    monkeypatch.setattr(dask_run, "PROBE_S", 60.0)
    asked = _killed_after(monkeypatch, 6)
    db = tmp_path / "k.sqlite"
    with pytest.raises(KeyboardInterrupt):
        run_sweep_dask(sweep_from_dict(KILL_SPEC, "k.yaml"), db, executor="in-process", target_batch_s=120.0)
    assert len(asked) == 7 and _stored(db) == 1 + 2
    monkeypatch.setattr(sweep_module, "evaluate_points", evaluate_points)
    resumed = run_sweep_dask(sweep_from_dict(KILL_SPEC, "k.yaml"), db, executor="in-process")
    assert (resumed.new, resumed.reused) == (48 - 3, 3)


@pytest.mark.parametrize(("size", "batch_s", "grown"), [
    (1, 0.001, 2),    # far under the target: at most doubles
    (64, 0.5, 128),   # half the target: doubles
    (64, 2.0, 32),    # twice the target: halves
    (1, 30.0, 1),     # one slow point: stays at one
])
def test_next_batch_size_aims_at_the_target_work(size, batch_s, grown) -> None:
    assert next_batch_size(size, batch_s, 1.0) == grown


# ---------------------------------------------------------------- 3. a parallel axis that does not apply


PARALLEL = {"workload": "llama3-8b", "seq_len": 65536, "topology": "hgx-h100-8", "devices": 8}


def _parallel(axes: dict) -> dict:
    return {"name": "pu", "parallel": {k: v for k, v in PARALLEL.items() if f"parallel.{k}" not in axes},
            "axes": axes}


def test_a_ring_point_stores_no_ulysses_degree(tmp_path) -> None:
    """The auditor's sweep: scheme [ring, usp] x ulysses [2, 4]. Ulysses is usp's degree alone
    (`seqpar_spec.MODELLED`), so the ring run is one point (keyed without it, "4 drawn, 3 distinct") whose row had
    read parallel.ulysses=2 beside its record's own ulysses NaN. As a sparse sweep stores an axis over a setting its
    method does not take: NaN, "does not apply"."""
    spec = sweep_from_dict(_parallel({"parallel.scheme": ["ring", "usp"], "parallel.ulysses": [2, 4]}), "pu.yaml")
    drawn = [(p["parallel.scheme"], p["parallel.ulysses"]) for p in expand(spec)]
    assert [scheme for scheme, _ in drawn[:2]] == ["ring", "ring"] and all(math.isnan(u) for _, u in drawn[:2])
    assert drawn[2:] == [("usp", 2), ("usp", 4)]
    df = run_sweep(spec, tmp_path / "pu.sqlite").set_index("parallel.scheme")
    assert len(df) == 3 and math.isnan(df.loc["ring", "parallel.ulysses"])
    assert sorted(df.loc["usp", "parallel.ulysses"]) == [2, 4]


def test_a_decode_point_stores_no_mask_axis_value() -> None:
    """`causal: false` is no decode step's (its one query attends every cached token, `MODELLED`): the decode
    point of causal false is the decode point of causal true (one key), its axis value NaN."""
    spec = sweep_from_dict(_parallel({"parallel.scheme": ["ring"], "parallel.direction": ["fwd", "decode"],
                                      "parallel.causal": [False, True]}), "pc.yaml")
    base = load_base(spec)
    points = expand(spec)
    causal = [p["parallel.causal"] for p in points]
    assert causal[:2] == [False, True] and math.isnan(causal[2]) and causal[3] is True
    keys = [key for key, _ in keyed(spec, base, points)]
    assert keys[2] == keys[3] and len(set(keys)) == 3


def test_a_lasp_point_stores_no_kernel_axis_value() -> None:
    """LASP's chunks run Lightning Attention-2 whatever `kernel` says (`MODELLED`): its one point under two
    kernels (already one key) stores the kernel axis as NaN, the ring points the kernel each ran."""
    spec = sweep_from_dict({"name": "k", "parallel": {"workload": "linear-llama3-1b", "seq_len": 65536,
                                                      "topology": "dgx-a100", "devices": 8},
                            "axes": {"parallel.scheme": ["ring", "lasp2"],
                                     "parallel.kernel": ["FlashAttention-2", "PyTorch eager attention"]},
                            "objectives": ["latency_s", "memory_bytes"]}, "k.yaml")
    kernels = [p["parallel.kernel"] for p in expand(spec)]
    assert kernels[:2] == ["FlashAttention-2", "PyTorch eager attention"] and all(map(math.isnan, kernels[2:]))


# ---------------------------------------------------------------- 4. the in-process sweep grows its batches


def test_an_in_process_sweep_whose_probe_was_cheap_keeps_its_batches_near_a_second(monkeypatch) -> None:
    """400 pending points, the first 100 at 1/1024 s each, the rest at 1/8 s (a fake clock: costs in powers of two
    add exactly). The probe stops at a quarter of the sweep: chunks 1, 2, 4, 8, 16, 32, 37 (100 points, 0.1 s).
    Its batches had then been `batch_size_for(1/1024 s, 300, 1)` = min(1024, ceil(300 / 4)) = 75 points each,
    9.4 s of work lost to a kill. They grow as `run_sweep`'s do (`next_batch_size`): one point (1/8 s), doubling
    to 8 (1 s = TARGET_BATCH_S at 1/8 s a point), then 8 each: 1 + 2 + 4 + 36 x 8 + 5 = 300, none over 1 s."""
    clock = [0.0]
    sizes: list[int] = []

    def timed(spec, base, batch):
        sizes.append(len(batch))
        clock[0] += sum(1 / 1024 if int(key) < 100 else 1 / 8 for key, _ in batch)
        return [{"key": key} for key, _ in batch]

    fake_time = type("FakeTime", (), {"perf_counter": staticmethod(lambda: clock[0])})
    for module in (dask_run, sweep_module):
        monkeypatch.setattr(module, "evaluate_batch", timed)
        monkeypatch.setattr(module, "put", lambda conn, batch: None)
        monkeypatch.setattr(module, "time", fake_time)
    todo = [(str(i), {"target": "t"}) for i in range(400)]
    chosen = dask_run._evaluate(None, None, todo, None, None, None, None, 1.0, ("in-process", "as asked"), None,
                                lambda line: None, 0, 400)
    assert chosen == "in-process"
    assert sizes[:7] == [1, 2, 4, 8, 16, 32, 37]
    assert sizes[7:] == [1, 2, 4] + [8] * 36 + [5]
