"""Sweep specs (audit helper-527): a count the cascade allows at 0 (a sliding window's sinks) is a valid `sets`
or axis value, as `archsim run --set sinks=0` takes it; and a sparse sweep over methods of different primary
phases, no phase given, is refused: its points' latency_s would rank a whole prefill against one decode step."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from archsim.cli import main


def _sweep(tmp_path, spec: dict):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    return CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--db", str(tmp_path / "s.sqlite")])


def test_a_count_of_zero_is_a_sweep_value(tmp_path) -> None:
    result = _sweep(tmp_path, {"name": "sinks0", "mapping": "fusemax", "cascade": "attention-sliding-window",
                               "workload": "bert-base", "sets": {"window": 512, "sinks": 0},
                               "axes": {"workload.seq_len": [1024, 2048]}})
    assert result.exit_code == 0 and "2 feasible" in result.output, result.output


def test_methods_of_different_phases_need_a_phase(tmp_path) -> None:
    spec = {"name": "mixed", "sparse": {"workload": "llama3-8b", "gpu": "h100-sxm5", "context": 4096,
                                        "budget": 2048, "density": 0.2},
            "axes": {"sparse.method": ["flexprefill", "quest"]}}
    result = _sweep(tmp_path, spec)
    assert result.exit_code == 2, result.output
    assert "axes.sparse.method: methods of different primary phases (flexprefill prefill, quest decode)" in (
        result.output)
