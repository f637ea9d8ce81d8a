"""A decoder's prefill attention is causal: a workload naming a decoder block (`block: gpt` or `llama`) on an
attention cascade with no causal mask (attention-1pass under mapping fusemax, attention-3pass under flat) ran
unmasked attention silently, about twice the causal work, under `archsim run`, `report --run`, a sweep (its GPU
points too, non-causal after the unmasked cascade) and the Python API. It is refused in `archsim.point.bound`, as
the other cascade/workload mismatches are, and by a sweep's check, naming the workload's `block` and the causal
cascade to run; a workload without `block` (an encoder, or a decoder's shapes on purpose) runs as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.point import bound, run_point


def _one_error_line(code: int, output: str) -> str:
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, output)
    return lines[0]


def _workload_path(name: str) -> str:
    return library.load_workload_spec(name).path


@pytest.mark.parametrize(("mapping", "workload", "cascade", "causal"), [
    ("fusemax", "gpt3-7b", "attention-1pass", "attention-1pass-causal"),
    ("flat", "llama2-7b", "attention-3pass", "attention-3pass-causal"),
    ("unfused", "opt-66b", "attention-3pass", "attention-3pass-causal"),
])
def test_run_refuses_a_decoder_on_an_unmasked_cascade(invoke, mapping, workload, cascade, causal) -> None:
    line = _one_error_line(*invoke("run", "-m", mapping, "-w", workload))
    assert line.startswith(f"error: {_workload_path(workload)}: block: "), line
    assert f"cascade {cascade} (mapping {mapping})" in line
    assert f"--cascade {causal}" in line


def test_report_run_refuses_it(invoke, tmp_path) -> None:
    line = _one_error_line(*invoke("report", "--run", "-m", "fusemax", "-w", "gpt3-7b", "--out", str(tmp_path / "r")))
    assert line.startswith(f"error: {_workload_path('gpt3-7b')}: block: "), line


def test_the_python_api_and_analyze_refuse_it() -> None:
    with pytest.raises(SpecError) as caught:
        run_point("fusemax", workload="gpt3-7b", sets={"seq_len": 4096})
    assert caught.value.where == "block" and "attention-1pass-causal" in caught.value.message
    with pytest.raises(SpecError, match="attention-1pass-causal-gqa"):
        bound("attention-1pass-gqa", "llama3-8b")
    with pytest.raises(SpecError, match="lightning-attention-2"):  # causal linear attention
        bound("linear-attention", "linear-llama3-1b")


def test_the_causal_forms_and_encoders_run_as_before() -> None:
    causal = run_point("fusemax", cascade="attention-1pass-causal", workload="gpt3-7b", sets={"seq_len": 4096})
    assert causal.feasible
    assert run_point("fusemax", workload="bert-base", sets={"seq_len": 4096}).feasible
    bound("attention-decode-gqa", "llama3-8b")  # a decode step's one query attends every cached key: no mask


def test_a_decoders_shapes_without_its_block_run_unmasked_on_purpose(tmp_path) -> None:
    """The way to unmasked attention on a decoder's shapes: a workload file that names no decoder block."""
    data = yaml.safe_load(Path(_workload_path("gpt3-7b")).read_text())
    del data["block"]
    path = tmp_path / "gpt3-7b-unmasked.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert run_point("fusemax", workload=str(path), sets={"seq_len": 2048}).feasible


def test_a_sweep_of_it_is_refused_before_any_point(invoke, tmp_path, write_yaml) -> None:
    """Its GPU points would have been non-causal FlashAttention-2 (gpus.causal resolves to false on an unmasked
    cascade): the sweep is refused, saying the GPU points' setting too."""
    spec = write_yaml(tmp_path / "sw.yaml", {
        "name": "decoder-unmasked", "mapping": "fusemax", "workload": "gpt3-7b",
        "axes": {"workload.seq_len": [2048]}, "gpus": {"presets": ["h100-sxm5"]},
        "objectives": ["latency_s", "energy_pj"]})
    for args in (("check", str(spec)), ("sweep", str(spec), "--db", str(tmp_path / "sw.sqlite"))):
        line = _one_error_line(*invoke(*args))
        assert line.startswith(f"error: {_workload_path('gpt3-7b')}: block: "), line
        assert "cascade: attention-1pass-causal" in line and "gpus.causal: true" in line
        assert line.endswith(f"(named by {spec})")
    assert not (tmp_path / "sw.sqlite").exists()
