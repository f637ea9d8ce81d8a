"""Review mends (s48): a stored record replaced under other limits lost the axis values earlier sweeps had added to
it; `advises_limit` took a limit variable's name anywhere in a record (a workload's path) for advice; the shared
experts' width rule was written twice, and a workload with shared experts but no ffn_dim passed the loader; the
training memory's layer rewrote every FFN dependency to the layer's first FFN op."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archsim import library
from archsim.dse.store import read_records
from archsim.errors import SpecError
from archsim.limits import advises_limit
from archsim.systems.seqpar_memory import layer_deps
from archsim.systems.step import Step, layer_ops
from archsim.workload import shared_ffn_dim, workload_from_dict

ROWS = "ARCHSIM_MAX_GPU_ROWS"


@pytest.fixture(autouse=True)
def _no_limits(monkeypatch):
    for name in [n for n in os.environ if n.startswith("ARCHSIM_MAX_")]:
        monkeypatch.delenv(name)


def _sweep(invoke, write_yaml, folder: Path, name: str, axes: dict) -> tuple[int, str]:
    spec = write_yaml(folder / f"{name}.yaml", {"name": name, "mapping": "fusemax", "workload": "bert-base",
                                                "axes": axes, "gpus": {"presets": ["h100-sxm5"]}})
    return invoke("sweep", str(spec), "--db", str(folder / "s.sqlite"), "--local")


def test_a_record_replaced_under_other_limits_keeps_the_axis_values_it_had(tmp_path, invoke, write_yaml,
                                                                           monkeypatch):
    """The H100 point at 4096 tokens (beyond 10^6 query rows) is stored with its batch axis; a sweep without that
    axis and without the limit recomputes and replaces it: its batch, 64, was NaN after."""
    monkeypatch.setenv(ROWS, str(10**6))
    code, out = _sweep(invoke, write_yaml, tmp_path, "a", {"workload.seq_len": [4096], "workload.batch": [64]})
    assert code == 0, out
    monkeypatch.delenv(ROWS)
    code, out = _sweep(invoke, write_yaml, tmp_path, "b", {"workload.seq_len": [1024, 4096]})
    assert code == 0, out
    df = read_records(tmp_path / "s.sqlite")
    replaced = df[(df.target == "h100-sxm5") & (df["workload.seq_len"] == 4096)]
    assert len(replaced) == 1 and replaced.feasible.all() and (replaced["workload.batch"] == 64).all(), df


def test_a_limit_name_in_a_path_is_no_advice():
    record = {"target": "h100-sxm5", "workload": "studies/ARCHSIM_MAX_SIZE-sweep/bert.yaml", "reason": ""}
    assert not advises_limit(record)


@pytest.mark.parametrize("field", ["reason", "note"])
def test_a_reason_or_note_advising_a_limit_is_advice(field):
    assert advises_limit({"target": "x", "reason": "", "note": "", field: "raise ARCHSIM_MAX_SIZE to search"})


def test_shared_ffn_dim_is_shared_experts_times_ffn_dim():
    assert shared_ffn_dim(library.load_workload_spec("qwen1.5-moe-a2.7b").params) == 4 * 1408
    assert shared_ffn_dim({"experts": 8, "ffn_dim": 14336}) == 0


def test_shared_experts_without_ffn_dim_is_refused_when_loaded():
    data = {"name": "moe", "params": {"hidden": 64, "heads": 2, "head_dim": 32, "layers": 2, "experts": 4,
                                      "top_k": 2, "shared_experts": 1}}
    with pytest.raises(SpecError) as err:
        workload_from_dict(data, "moe.yaml")
    assert err.value.where == "params.ffn_dim" and "shared_experts" in err.value.message


def test_a_moe_layers_residual_depends_on_both_its_ffn_ops():
    """The FFN residual of a MoE layer adds its routed and its shared experts' outputs: both stay its deps."""
    ops = layer_ops(library.load_workload_spec("qwen1.5-moe-a2.7b"), Step("prefill", 1, 512), "llama")
    residual = next(op for op in ops if op.name == "ffn_residual")
    assert layer_deps(residual, {op.name for op in ops}, "moe") == ("moe", "shared_experts", "attn_residual")
    # a dense layer of a model whose op list came from its MoE layer: the FFN ops it lacks are its own, once
    dense = {op.name for op in ops} - {"moe", "shared_experts"} | {"ffn"}
    assert layer_deps(residual, dense, "ffn") == ("ffn", "attn_residual")
