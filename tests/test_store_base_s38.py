"""A store's base holds the content of every input its points' results read (audit s38, finding 2, each test failing
before its fix): an input edited between two sweeps into one store had left two rows per point, the old input's
and the new one's, with no column telling them apart, instead of refusing the store.

1. an architecture sweep's GPU points after a calibration refit (the base held the GPU presets, not the
   calibrated parameters their points are timed with);
2. a system sweep serving a CSV trace, the trace edited (the base held the trace's name, not its requests);
3. a sparse and 4. a parallel sweep naming a user GPU file, the file edited (the base held the block as written:
   file names, not the GPU, topology, workload or pattern map they load).

Expected counts come from the specs: a grid's point count is the product of its axes' lengths, and a refused sweep
leaves the store's rows as they were.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from archsim.dse import points
from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.points import GPU_PRESETS_PART, MODEL_VERSION
from archsim.dse.spec import sweep_from_dict
from archsim.errors import SpecError
from archsim.gpu import params
from archsim.gpu.load import load_gpu
from archsim.systems.topology import load_topology

# FuseMax on BERT-Base at one buffer and length, and H100 with FlashAttention-2 at that length: 1 + 1 points
ARCH = {"name": "arch", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [1048576], "workload.seq_len": [1024]},
        "gpus": {"presets": ["h100-sxm5"], "kernel": "FlashAttention-2"}, "objectives": ["latency_s", "energy_pj"]}
# three requests of a CSV trace served by NeuPIMs at one batch: 1 point
TRACE = "arrival_s,prompt_tokens,output_tokens\n0.0,64,8\n0.001,32,4\n0.002,48,6\n"
SYSTEM = {"name": "trs", "system": "neupims", "workload": "gpt3-7b", "serving": {"lengths": "trace.csv"},
          "axes": {"serving.max_batch": [32]}, "objectives": ["throughput_tok_s", "energy_per_token_j"]}


def _run(data: dict, db: Path, source: Path):
    """Sweep `data`, written at `source` (its relative paths taken from there), into the store `db`."""
    source.write_text(yaml.safe_dump(data))
    return run_sweep_dask(sweep_from_dict(data, str(source)), db, executor="in-process")


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]


def _user_gpu(path: Path, **changes: float) -> str:
    """The H100 preset's file copied to `path`, with `changes` over its fields; returns its path."""
    data = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text())
    path.write_text(yaml.safe_dump({**data, **changes}))
    return str(path)


def _refit(monkeypatch: pytest.MonkeyPatch, family: str, factor: float) -> None:
    """Load the packaged calibration with `family`'s parameters x `factor`, as an edited calibration file gives."""
    packaged = params.load_calibration()
    refit = {name: ({k: v * factor for k, v in p.items()} if name == family else p)
             for name, p in packaged.params.items()}
    edited = dataclasses.replace(packaged, params=refit)
    monkeypatch.setattr(params, "load_calibration", lambda *_: edited)
    monkeypatch.setattr(points, "load_calibration", lambda *_: edited)


def test_a_calibration_refit_refuses_a_store_of_gpu_points(tmp_path, monkeypatch):
    """The refit re-times the GPU point (the key holds the fa2 parameters): the store of the old timing refuses it,
    naming the calibration; before, the sweep added a second H100 row at seq 1024."""
    db = tmp_path / "d.sqlite"
    assert _run(ARCH, db, tmp_path / "a.yaml").new == 2
    _refit(monkeypatch, "fa2", 0.8)
    with pytest.raises(SpecError, match=r"^--db: .*on GPU h100-sxm5 timed under other settings \(calibration "
                                        r"[0-9a-f]{16}, now [0-9a-f]{16}\)"):
        _run(ARCH, db, tmp_path / "a.yaml")
    assert _rows(db) == 2


def test_a_gpus_block_still_joins_a_store_swept_without_one(tmp_path):
    """The calibration is the GPU presets' (their timing), not a part of every architecture store: a store swept
    without GPUs takes them later (README), the 1 architecture point reused."""
    db = tmp_path / "d.sqlite"
    assert _run({k: v for k, v in ARCH.items() if k != "gpus"}, db, tmp_path / "a.yaml").new == 1
    run = _run(ARCH, db, tmp_path / "a.yaml")
    assert (run.new, run.reused) == (1, 1)


def test_an_edited_trace_refuses_the_store_of_the_old_one(tmp_path):
    """The trace's requests are the serving run's: another trace under the same name is another base."""
    db, trace = tmp_path / "s.sqlite", tmp_path / "trace.csv"
    trace.write_text(TRACE)
    assert _run(SYSTEM, db, tmp_path / "s.yaml").new == 1
    trace.write_text(TRACE.replace("0.002,48,6", "0.002,480,60"))
    with pytest.raises(SpecError, match=r"^--db: .*whose base differs from sweep trs's .* in trace: give this sweep"):
        _run(SYSTEM, db, tmp_path / "s.yaml")
    assert _rows(db) == 1
    trace.write_text(TRACE)  # the trace as it was: the same base, its point reused
    assert _run(SYSTEM, db, tmp_path / "s.yaml").reused == 1


def test_an_edited_gpu_file_refuses_the_store_of_a_sparse_sweep(tmp_path):
    """Quest on a user H100 file at two budgets; the file's DRAM bandwidth halved is another GPU, refused as an
    edited GPU preset is; a budget added with the file as it was shares the store."""
    db, gpu = tmp_path / "sp.sqlite", tmp_path / "g.yaml"
    data = {"name": "spg", "sparse": {"method": "quest", "gpu": _user_gpu(gpu), "workload": "llama2-7b",
                                      "context": 8192},
            "axes": {"sparse.budget": [512, 1024]}}
    assert _run(data, db, tmp_path / "sp.yaml").new == 2
    grown = {**data, "axes": {"sparse.budget": [512, 1024, 2048]}}
    assert _run(grown, db, tmp_path / "sp.yaml").new == 1
    _user_gpu(gpu, dram_bytes_per_s=1.675e12)
    refused = rf"^--db: .*on GPU {re.escape(str(gpu))} as its file then read, and sweep spg's .* reads another GPU"
    with pytest.raises(SpecError, match=refused):
        _run(data, db, tmp_path / "sp.yaml")
    assert _rows(db) == 3


def test_an_edited_gpu_file_refuses_the_store_of_a_parallel_sweep(tmp_path):
    """Ring attention over 2 devices of a user H100 file whose clock is then lowered: refused, as in a sparse sweep."""
    db, gpu = tmp_path / "pp.sqlite", tmp_path / "g.yaml"
    data = {"name": "ppg", "parallel": {"workload": "llama3-8b", "seq_len": 65536, "topology": "hgx-h100-8",
                                        "gpu": _user_gpu(gpu), "scheme": "ring"},
            "axes": {"parallel.devices": [2]}}
    assert _run(data, db, tmp_path / "pp.yaml").new == 1
    _user_gpu(gpu, clock_hz=1.2e9)
    with pytest.raises(SpecError, match=rf"^--db: .*on GPU {re.escape(str(gpu))} as its file then read"):
        _run(data, db, tmp_path / "pp.yaml")
    assert _rows(db) == 1


def test_an_edited_topology_file_refuses_the_store_of_a_parallel_sweep(tmp_path):
    """The topology the block names, its file's GPU changed (A100 for H100), is another base, named as the block's
    field."""
    db, topology = tmp_path / "pp.sqlite", tmp_path / "t.yaml"
    shutil.copyfile(load_topology("hgx-h100-8").source, topology)
    data = {"name": "ppt", "parallel": {"workload": "llama3-8b", "seq_len": 65536, "topology": str(topology),
                                        "scheme": "ring"},
            "axes": {"parallel.devices": [2]}}
    assert _run(data, db, tmp_path / "pp.yaml").new == 1
    text = topology.read_text()
    assert "gpu: h100-sxm5\n" in text
    topology.write_text(text.replace("gpu: h100-sxm5\n", "gpu: a100-80gb-sxm4\n"))
    with pytest.raises(SpecError, match=r"^--db: .*whose base differs from sweep ppt's .* in topology: give"):
        _run(data, db, tmp_path / "pp.yaml")
    assert _rows(db) == 1


def test_a_store_written_before_is_refused_as_another_version(tmp_path):
    """A store of GPU points whose base holds the presets without their calibration (its part named as before) is
    refused for its version, not as a GPU timed under other settings."""
    db = tmp_path / "d.sqlite"
    _run(ARCH, db, tmp_path / "a.yaml")
    old = MODEL_VERSION.split("+")[0] + "+0000000000000000"
    with sqlite3.connect(db) as conn:
        base = json.loads(conn.execute("SELECT value FROM meta WHERE name = 'base'").fetchone()[0])
        presets = json.loads(base.pop(GPU_PRESETS_PART))
        for entry in presets.values():
            entry.pop("calibration", None)
        base.update({"gpu_targets": json.dumps(presets), "version": json.dumps(old)})
        conn.execute("UPDATE meta SET value = ? WHERE name = 'base'", (json.dumps(base, sort_keys=True),))
    with pytest.raises(SpecError, match=re.escape(f"version (the store's {old}, now {MODEL_VERSION}):")) as refused:
        _run(ARCH, db, tmp_path / "a.yaml")
    assert "whose base differs" in str(refused.value) and "timed under" not in str(refused.value)
