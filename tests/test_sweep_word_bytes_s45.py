"""Audit s45 (dtype): a sweep takes no word size its base workload does not give, and no base workload the CLI door
refuses. A `gpus:` sweep over a workload without `word_bytes` had timed its GPU points at fp16 (0.1914 s, the
2-byte run) while its architecture points were infeasible; a `parallel:` or `sparse:` sweep over a workload without
`word_bytes`, or of 1-byte words, exited 0 with every point infeasible, where `archsim parallel` and `archsim sparse`
exit 2. Now each is refused at load (exit 2, one line naming the workload file, `params.word_bytes` and the sweep
that named it; `archsim check` too), and a sweep whose axis varies the workload keeps its per-point records (README
"A base no point can run on").

The workloads are the library's Llama-3-8B and GPT-3 7B with `word_bytes` dropped or set to 1 (8-bit words: the
GPU kernels the parallel schemes and the sparse methods run are 16-bit, `topology.WORD_BYTES`,
`kv_selection.KERNEL_WORD_BYTES`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse.points import evaluate_point, load_base
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import read_records
from archsim.errors import SpecError

GPU = "h100-sxm5"
PARALLEL = {"seq_len": 65536, "topology": "hgx-h100-8"}
PARALLEL_AXES = {"parallel.scheme": ["ring"], "parallel.devices": [8]}
SPARSE = {"method": "quest", "gpu": GPU}
SPARSE_AXES = {"sparse.context": [32768], "sparse.budget": [2048]}


def _workload(folder: Path, model: str, word_bytes: int | None) -> Path:
    """The library's `model` with its `word_bytes` dropped (None) or set, written in `folder`."""
    data = yaml.safe_load(library.find("workloads", model).read_text())
    data["params"].pop("word_bytes")
    if word_bytes is not None:
        data["params"]["word_bytes"] = word_bytes
    path = folder / f"{model}-wb{word_bytes}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _refused(invoke, write_yaml, folder: Path, sweep: dict, workload: Path) -> str:
    """`archsim sweep` and `archsim check` of `sweep` exit 2 with one line naming the workload file, its
    params.word_bytes and the sweep file, the same line; no store is written. Returns the line."""
    path, db = write_yaml(folder / "s.yaml", {"name": "s", **sweep}), folder / "s.sqlite"
    lines = set()
    for args in (("sweep", str(path), "--db", str(db), "--local"), ("check", str(path))):
        code, output = invoke(*args)
        line = output.strip()
        assert code == 2 and "\n" not in line and "Traceback" not in line, (args, code, output)
        assert line.startswith(f"error: {workload}: params.word_bytes: ") and line.endswith(f"(named by {path})")
        lines.add(line)
    assert not db.exists() and len(lines) == 1
    return lines.pop()


# ------------------------------------------------------------------------------------------ 1. gpus: beside a mapping


def _gpu_sweep(workload: Path, **fields) -> dict:
    """`workload`, a decoder, on fusemax's mapping of its causal cascade, with causal GPU points."""
    return {"mapping": "fusemax", "cascade": "attention-1pass-causal", "workload": str(workload),
            "axes": {"workload.seq_len": [4096]},
            "gpus": {"presets": [GPU], "kernel": "FlashAttention-2", "causal": True},
            "objectives": ["latency_s", "energy_pj"], **fields}


def test_a_gpu_sweep_over_a_workload_without_word_bytes_is_refused_at_load(invoke, write_yaml, tmp_path):
    """The audit's sw5: the GPU row was feasible at fp16's time; the cascade's test size (word_bytes 2) had stood in
    for the workload's."""
    workload = _workload(tmp_path, "gpt3-7b", None)
    _refused(invoke, write_yaml, tmp_path, _gpu_sweep(workload), workload)


def test_a_word_bytes_the_sweep_gives_stands_for_the_workloads(tmp_path):
    """`sets` or an axis of word_bytes gives every point its word size: the sweep loads."""
    workload = _workload(tmp_path, "gpt3-7b", None)
    sweep_from_dict({"name": "s", **_gpu_sweep(workload, sets={"word_bytes": 2})}, str(tmp_path / "s.yaml"))
    axes = {"workload.seq_len": [4096], "workload.word_bytes": [2, 1]}
    sweep_from_dict({"name": "s", **_gpu_sweep(workload, axes=axes)}, str(tmp_path / "s.yaml"))


def test_a_gpu_point_without_a_word_size_is_infeasible_not_fp16(tmp_path):
    """A GPU point whose sizes give no word_bytes (a point without the sweep's word_bytes axis, through the Python
    API) is an infeasible record saying so: never timed at gpus.precision's 2 bytes."""
    workload = _workload(tmp_path, "gpt3-7b", None)
    axes = {"workload.seq_len": [4096], "workload.word_bytes": [2]}
    spec = sweep_from_dict({"name": "s", **_gpu_sweep(workload, axes=axes)}, str(tmp_path / "s.yaml"))
    record = evaluate_point(spec, load_base(spec), {"target": GPU, "workload.seq_len": 4096})
    assert not record["feasible"] and "no word_bytes" in record["reason"], record["reason"]


# ------------------------------------------------------------------------------------------ 2. parallel: and sparse:


@pytest.mark.parametrize("word_bytes, message", [
    (None, "missing: the memory model needs it"),  # the audit's sw7
    (1, "expected 2 (bf16, the papers' runs)"),  # sw8
])
def test_a_parallel_sweep_over_a_workload_archsim_parallel_refuses_is_refused_at_load(invoke, write_yaml, tmp_path,
                                                                                     word_bytes, message):
    workload = _workload(tmp_path, "llama3-8b", word_bytes)
    sweep = {"parallel": {"workload": str(workload), **PARALLEL}, "axes": PARALLEL_AXES,
             "objectives": ["latency_s", "efficiency"]}
    assert message in _refused(invoke, write_yaml, tmp_path, sweep, workload)


def test_a_parallel_sweep_needs_word_bytes_where_no_point_models_memory(tmp_path):
    """fwd+bwd at tp 2 has no memory model (`seqpar_spec.memory_modelled`), but its K/V hops are priced at the
    workload's word_bytes, so a workload without one is refused at load (s52: it had been priced at 2 bytes)."""
    workload = _workload(tmp_path, "llama3-8b", None)
    block = {"workload": str(workload), "direction": "fwd+bwd", "scheme": "ring", "devices": 2, **PARALLEL}
    with pytest.raises(SpecError, match=r"params\.word_bytes: missing"):
        sweep_from_dict({"name": "s", "parallel": block, "axes": {"parallel.tp": [1, 2]},
                         "objectives": ["latency_s", "efficiency"]}, str(tmp_path / "s.yaml"))


@pytest.mark.parametrize("word_bytes, message", [
    (1, "expected 2 (16-bit words)"),  # the audit's sw11
    (None, "missing: KV selection needs the model's word_bytes"),  # sw12
])
def test_a_sparse_sweep_over_a_workload_archsim_sparse_refuses_is_refused_at_load(invoke, write_yaml, tmp_path,
                                                                                 word_bytes, message):
    workload = _workload(tmp_path, "llama3-8b", word_bytes)
    sweep = {"sparse": {**SPARSE, "workload": str(workload)}, "axes": SPARSE_AXES,
             "objectives": ["latency_s", "memory_bytes"]}
    assert message in _refused(invoke, write_yaml, tmp_path, sweep, workload)


@pytest.mark.parametrize("root, block, axes, reason", [
    ("sparse", SPARSE, SPARSE_AXES, "params.word_bytes: expected 2 (16-bit words)"),
    ("parallel", PARALLEL, PARALLEL_AXES, "params.word_bytes: expected 2 (bf16, the papers' runs)"),
])
def test_a_workload_axis_keeps_its_per_point_records(invoke, write_yaml, tmp_path, root, block, axes, reason):
    """A workload an axis varies is each point's: the 1-byte one is an infeasible record with the door's reason, the
    library's Llama-3-8B beside it feasible."""
    workload = _workload(tmp_path, "llama3-8b", 1)
    sweep = {"name": "s", root: block, "axes": {**axes, f"{root}.workload": ["llama3-8b", str(workload)]},
             "objectives": ["latency_s", "memory_bytes"]}
    path, db = write_yaml(tmp_path / "s.yaml", sweep), tmp_path / "s.sqlite"
    code, output = invoke("sweep", str(path), "--db", str(db), "--local")
    assert code == 0, output
    rows = read_records(db).set_index(f"{root}.workload")
    assert bool(rows.loc["llama3-8b", "feasible"])
    assert not rows.loc[str(workload), "feasible"]
    assert rows.loc[str(workload), "reason"].startswith(reason)
