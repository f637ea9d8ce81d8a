"""What a sweep stores under a point's key holds only what the key holds (audit s45): a Dask worker whose limit
variables differ from this process's is refused (a guard may decide a point, so the limits are keyed); a stored
reason names no file path (neither the sweep's nor an installed preset's); and a point its model rejects keeps its
config, as `archsim parallel --json` prints the same point."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from archsim.dse import dask_run, points
from archsim.dse.points import evaluate_points, expand, load_base
from archsim.dse.spec import load_sweep, sweep_from_dict
from archsim.dse.store import CONFIG_FIELDS
from archsim.errors import SpecError

SCHEDULER = "tcp://127.0.0.1:8786"
GPU_ROWS = "ARCHSIM_MAX_GPU_ROWS"

# BERT-Base on FuseMax at 1000 tokens: 1000 is not a multiple of its 256-key tiles (M0), so that point is refused
# with a reason quoting where seq_len came from; 1024 runs.
UNEVEN = {"name": "uneven", "mapping": "fusemax", "workload": "bert-base",
          "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [1048576], "workload.seq_len": [1000, 1024]},
          "objectives": ["latency_s", "energy_pj"]}
# Ring attention on one HGX H100 board (8 GPUs, `topology_presets/hgx-h100-8.yaml`): 8 devices fit, 64 do not.
RING = {"name": "ring", "parallel": {"workload": "llama3-8b", "seq_len": 65536, "topology": "hgx-h100-8"},
        "axes": {"parallel.scheme": ["ring"], "parallel.devices": [8, 64]}, "objectives": ["latency_s", "efficiency"]}


class _OneWorkerScheduler:
    """A stand-in for a Dask client whose scheduler has one worker, running with `environment` set: `run` calls the
    function there, as `Client.run` calls it on each worker."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]):
        self.monkeypatch, self.environment = monkeypatch, environment

    def run(self, function):
        with self.monkeypatch.context() as worker:
            for name, value in self.environment.items():
                worker.setenv(name, value)
            return {"tcp://10.0.0.2:40000": function()}


def test_a_worker_with_another_limit_is_refused_naming_the_variable(monkeypatch):
    """The auditor's worker ran with ARCHSIM_MAX_GPU_ROWS=10000000, this process without it: its GPU points beyond
    the worker's limit were stored as infeasible ('raise it with ARCHSIM_MAX_GPU_ROWS') under keys this process
    computes without the limit, and a local run reused them (6 of 12 feasible instead of 10). Before: only the model
    version was compared, so the worker passed."""
    monkeypatch.delenv(GPU_ROWS, raising=False)
    with pytest.raises(SpecError) as refused:
        dask_run._check_worker_versions(_OneWorkerScheduler(monkeypatch, {GPU_ROWS: "10000000"}), SCHEDULER)
    assert (refused.value.source, refused.value.where) == ("--scheduler", SCHEDULER)
    assert (f"worker tcp://10.0.0.2:40000 runs archsim {points.MODEL_VERSION} with {GPU_ROWS}=10000000, this "
            f"process {points.MODEL_VERSION} with {GPU_ROWS} unset") in refused.value.message
    assert "ARCHSIM_MAX_* variables" in refused.value.message


def test_a_worker_with_this_process_s_limits_is_accepted(monkeypatch):
    monkeypatch.setenv(GPU_ROWS, "10000000")
    dask_run._check_worker_versions(_OneWorkerScheduler(monkeypatch, {GPU_ROWS: "10000000"}), SCHEDULER)


def test_a_batch_computed_under_another_limit_is_not_stored(monkeypatch):
    """Each batch carries its worker's keyed version (limits included): one computed after the worker's limits
    changed is refused as a batch from another archsim is."""
    monkeypatch.delenv(GPU_ROWS, raising=False)
    theirs = {"model": points.MODEL_VERSION, "limits": {GPU_ROWS: 10000000}}
    with pytest.raises(dask_run.OtherModel) as refused:
        dask_run._check_batch("tcp://10.0.0.2:40000", theirs)
    assert refused.value.version == theirs
    dask_run._check_batch("tcp://10.0.0.2:40000", points.computing_version())  # this process's: stored


def _reasons(spec_path: Path, db: Path) -> list[str]:
    from archsim.dse.store import read_records
    from archsim.dse.sweep import run_sweep

    run_sweep(load_sweep(spec_path), db)
    return read_records(db).sort_values("key").reason.tolist()


def test_a_sweep_moved_to_another_folder_stores_the_same_reasons(tmp_path, write_yaml):
    """The refused point's reason said 'seq_len=1000 from <the sweep's path> (sets and axes)': the same key gave
    other bytes from another folder. Now it names the sweep's sets and axes, not the file."""
    here, there = (write_yaml(tmp_path / folder / "uneven.yaml", UNEVEN) for folder in ("here", "moved/away"))
    reasons = _reasons(here, tmp_path / "here.sqlite")
    assert reasons == _reasons(there, tmp_path / "there.sqlite")
    refused = next(reason for reason in reasons if reason)
    assert "seq_len=1000 from the sweep's sets and axes" in refused and str(tmp_path) not in refused


def test_the_moved_sweep_exports_the_same_csv(tmp_path, write_yaml, cli):
    """README: 'a store reused from a moved spec exports the same bytes'."""
    exported = []
    for folder in ("here", "moved"):
        spec = write_yaml(tmp_path / folder / "uneven.yaml", UNEVEN)
        cli("sweep", str(spec), "--db", str(tmp_path / folder / "s.sqlite"), "--local")
        exported.append(cli("results", str(tmp_path / folder / "s.sqlite"), "--csv", "-").stdout)
    assert exported[0] == exported[1]


def _records(data: dict) -> list[dict]:
    spec = sweep_from_dict(data)
    base = load_base(spec)
    return evaluate_points(spec, base, expand(spec))


def test_a_parallel_point_beyond_its_topology_names_it_without_its_file():
    """64 devices on an 8-GPU board: the reason named the preset's installed path, another on every install."""
    fits, beyond = _records(RING)
    assert fits["feasible"] and not beyond["feasible"]
    assert beyond["reason"] == ("parallel.devices: expected at most 8 devices, the size of topology 'hgx-h100-8', "
                                "got 64")


def test_a_parallel_point_its_model_rejects_keeps_its_config():
    """The rejected point's record had no config (`config_fields` [], no scheme, devices or topology column), where
    `archsim parallel --json` prints that point with its config (`ParallelResult.blank`). Its config columns are now
    the feasible point's, with its own values, and every metric NaN."""
    fits, beyond = _records(RING)
    assert beyond[CONFIG_FIELDS] == fits[CONFIG_FIELDS] and "topology" in fits[CONFIG_FIELDS]
    assert {name: beyond[name] for name in ("scheme", "devices", "tp", "gpu", "topology", "model", "seq_len")} == {
        "scheme": "ring", "devices": 64, "tp": 1, "gpu": "h100-sxm5", "topology": "hgx-h100-8", "model": "llama3-8b",
        "seq_len": 65536}
    assert beyond["link"] == ""  # no group of 64 on 8 GPUs: no link (as `archsim parallel` prints it)
    assert all(math.isnan(beyond[name]) for name in ("latency_s", "efficiency", "exposed_comm_s", "compute_s"))
