"""A sweep whose base no point can be evaluated on is bad input: `archsim sweep` exits 2 with one line naming the
file and field (the base's SpecError), before any point is evaluated or a store is written. It exited 0, every point
stored as an infeasible record with that error as its reason. An error that a point's axis values cause stays that
point's infeasible record.

Each broken base below is a library spec with one field changed, so the expected file and field are that change:
a `sets` length that FuseMax's 256-key tiles do not divide (1000), BERT-Base without `head_dim`, the FuseMax
architecture with 4-byte words under BERT's 2-byte tensors, and NeuPIMs serving a linear-attention workload. The
axes of each change nothing the error depends on (buffer size, DRAM bandwidth, PIM channels).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.spec import load_sweep
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError

BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"
DRAM = "arch.memories.DRAM.bandwidth_bytes_per_s"
FUSEMAX = {"name": "base", "mapping": "fusemax", "workload": "bert-base",
           "axes": {BUFFER: [262144, 1048576], DRAM: [26843545600, 107374182400]}}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _changed(kind: str, name: str, folder: Path, change) -> Path:
    """The library spec `name` of `kind` with `change` applied to its YAML, written into `folder`."""
    data = yaml.safe_load(library.find(kind, name).read_text())
    change(data)
    return _write(folder / f"{name}-changed.yaml", data)


def _uneven_length(tmp_path: Path) -> tuple[dict, str, str]:
    return {**FUSEMAX, "sets": {"seq_len": 1000}}, "attention-1pass.yaml: partition.M: M=1000 is not divisible", \
        "seq_len=1000 from the sweep's sets and axes"


def _no_head_dim(tmp_path: Path) -> tuple[dict, str, str]:
    workload = _changed("workloads", "bert-base", tmp_path, lambda data: data["params"].pop("head_dim"))
    return {**FUSEMAX, "workload": str(workload)}, f"{workload}: params.head_dim: missing", "(named by {spec})"


def _wide_words(tmp_path: Path) -> tuple[dict, str, str]:
    arch = _changed("architectures", "fusemax", tmp_path, lambda data: data.update(word_bytes=4))
    return {**FUSEMAX, "arch": str(arch)}, f"{arch}: word_bytes: fusemax holds and computes 4-byte words", \
        "(named by {spec})"


def _linear_attention_on_pim(tmp_path: Path) -> tuple[dict, str, str]:
    spec = {"name": "base", "system": "neupims", "workload": "linear-llama3-1b",
            "serving": {"rate_per_s": 2000.0, "requests": 20, "lengths": "alpaca", "seed": 0, "max_batch": 64},
            "axes": {"system.devices.pim.channels": [16, 32]},
            "objectives": ["throughput_tok_s", "energy_per_token_j"]}
    return spec, "linear-llama3-1b.yaml: attention: linear-llama3-1b computes linear attention", "(named by {spec})"


BROKEN = [_uneven_length, _no_head_dim, _wide_words, _linear_attention_on_pim]


@pytest.mark.parametrize("broken", BROKEN, ids=lambda f: f.__name__.lstrip("_"))
def test_a_base_no_point_can_run_exits_2_naming_its_file_and_field_and_stores_nothing(tmp_path, cli, broken):
    data, names, also = broken(tmp_path)
    spec, db = _write(tmp_path / "sweep.yaml", data), tmp_path / "s.sqlite"
    text = cli("sweep", str(spec), "--db", str(db), "--local", expect=2).output.strip()
    assert text.count("\n") == 0 and text.startswith("error: ") and "Traceback" not in text, text
    assert names in text and also.format(spec=spec) in text, text
    assert not list(tmp_path.glob("s.sqlite*"))


@pytest.mark.parametrize("runner", [run_sweep, lambda spec, db: run_sweep_dask(spec, db, executor="in-process")],
                         ids=["run_sweep", "run_sweep_dask"])
def test_the_python_runners_refuse_a_broken_base_before_opening_the_store(tmp_path, runner):
    data, names, _ = _no_head_dim(tmp_path)
    db = tmp_path / "s.sqlite"
    with pytest.raises(SpecError) as error:
        runner(load_sweep(_write(tmp_path / "sweep.yaml", data)), db)
    assert names in str(error.value) and error.value.where == "params.head_dim"
    assert not db.exists()


def test_an_error_an_axis_value_causes_stays_that_points_infeasible_record(tmp_path, cli):
    """1000 tokens on 256-key tiles is the axis's value, not the base's (BERT-Base has 1024): exit 0, that point
    infeasible with its reason, the other feasible."""
    from archsim.dse.store import read_records

    spec = _write(tmp_path / "sweep.yaml", {**FUSEMAX, "axes": {BUFFER: [1048576], "workload.seq_len": [1000, 1024]}})
    db = tmp_path / "s.sqlite"
    assert "2 points (2 new, 0 reused), 1 feasible" in cli("sweep", str(spec), "--db", str(db), "--local").stdout
    df = read_records(db).set_index("workload.seq_len")
    assert df.feasible.to_dict() == {1000: False, 1024: True}
    assert "M=1000 is not divisible by M0=256 (seq_len=1000 from the sweep's sets and axes" in df.reason[1000]


def test_a_size_the_base_lacks_but_every_point_sets_is_no_error(tmp_path, cli):
    """BERT-Base without seq_len cannot run as given, but every point takes seq_len from the axis: not refused."""
    workload = _changed("workloads", "bert-base", tmp_path, lambda data: data["params"].pop("seq_len"))
    spec = _write(tmp_path / "sweep.yaml", {**FUSEMAX, "workload": str(workload),
                                            "axes": {"workload.seq_len": [1024, 4096]}})
    result = cli("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local")
    assert "2 points (2 new, 0 reused), 2 feasible" in result.stdout


def test_a_store_of_a_broken_base_written_before_the_check_is_refused_and_left_as_it_was(tmp_path, cli, monkeypatch):
    """A store that an unchecked run filled with the base's error as every point's reason: the rerun exits 2 and
    stores nothing more."""
    import archsim.dse.sweep as sweep_module
    from archsim.dse.store import read_records

    data, names, _ = _no_head_dim(tmp_path)
    spec, db = _write(tmp_path / "sweep.yaml", {**data, "axes": {BUFFER: [262144, 1048576]}}), tmp_path / "s.sqlite"
    with monkeypatch.context() as patched:
        patched.setattr(sweep_module, "base_error", lambda spec, base: None)
        cli("sweep", str(spec), "--db", str(db), "--local")
    before = read_records(db)
    assert len(before) == 2 and not before.feasible.any()
    spec.write_text(yaml.safe_dump({**data, "axes": {BUFFER: [262144, 1048576, 4194304]}}))  # one point more
    assert names in cli("sweep", str(spec), "--db", str(db), "--local", expect=2).output
    assert read_records(db).equals(before)


def test_the_base_is_evaluated_once_for_a_new_store_and_not_again_beside_a_stored_feasible_point(tmp_path, cli,
                                                                                                  monkeypatch):
    import archsim.dse.sweep as sweep_module

    calls = []
    checked = sweep_module.base_error
    monkeypatch.setattr(sweep_module, "base_error", lambda spec, base: calls.append(spec.name) or checked(spec, base))
    spec, db = _write(tmp_path / "sweep.yaml", FUSEMAX), tmp_path / "s.sqlite"
    cli("sweep", str(spec), "--db", str(db), "--local")
    assert calls == ["base"]
    assert "4 points (0 new, 4 reused)" in cli("sweep", str(spec), "--db", str(db), "--local").stdout
    assert calls == ["base"]


def test_a_base_the_gpu_points_can_run_is_no_error(tmp_path, cli):
    """fusemax's multi-head causal cascade refuses Llama-3-8B's grouped-query attention at every length, but the
    sweep's H100 points run it: refused as a broken base, though it ran before the check, with two feasible GPU
    points."""
    spec = _write(tmp_path / "g.yaml", {
        "name": "g", "mapping": "fusemax", "cascade": "attention-1pass-causal", "workload": "llama3-8b",
        "axes": {"workload.seq_len": [4096, 8192]}, "sampling": {"kind": "grid"},
        "gpus": {"presets": ["h100-sxm5"], "kernel": "FlashAttention-2", "causal": True},
        "objectives": ["latency_s", "energy_pj"]})
    out = cli("sweep", str(spec), "--local", "--db", str(tmp_path / "g.sqlite")).output
    assert "4 points (4 new, 0 reused), 2 feasible" in out, out


def test_gpu_points_of_a_workload_without_batch_are_refused_not_run_at_batch_1(tmp_path, cli):
    """A workload with no `batch` had its GPU points timed at batch 1 while its architecture points refused it, so
    the sweep exited 0 with only batch-1 GPU answers; every point now needs the batch the workload leaves out."""
    workload = _changed("workloads", "bert-base", tmp_path, lambda data: data["params"].pop("batch"))
    spec = _write(tmp_path / "g.yaml", {**FUSEMAX, "workload": str(workload), "axes": {"workload.seq_len": [4096]},
                                         "gpus": {"presets": ["h100-sxm5"], "kernel": "FlashAttention-2"}})
    db = tmp_path / "g.sqlite"
    out = cli("sweep", str(spec), "--local", "--db", str(db), expect=2).output
    assert f"{workload}: params.batch:" in out and len(out.strip().splitlines()) == 1, out
    assert not db.exists()
