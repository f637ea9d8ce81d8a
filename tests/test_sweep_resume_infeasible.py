"""A sweep resumed over its store reuses the infeasible points it holds as it reuses the feasible ones: an
infeasible record is a finished result (`archsim.dse.store.done_keys` is every stored key), not a point to run
again (a mutant counting only feasible keys as done survived the suite)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from archsim.cli import main

# FuseMax on BERT-Base at 1024 tokens: a 1 KiB global buffer holds no tile (infeasible), 1 MiB does
SPEC = {"name": "resume", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [1024, 1048576], "workload.seq_len": [1024]},
        "objectives": ["latency_s", "energy_pj"]}


def test_a_resumed_sweep_reuses_its_infeasible_points(tmp_path: Path) -> None:
    spec, db = tmp_path / "resume.yaml", tmp_path / "resume.sqlite"
    spec.write_text(yaml.safe_dump(SPEC))
    first = CliRunner().invoke(main, ["sweep", str(spec), "--db", str(db), "--local"])
    assert first.exit_code == 0 and "2 points (2 new, 0 reused), 1 feasible" in first.output, first.output
    again = CliRunner().invoke(main, ["sweep", str(spec), "--db", str(db), "--local"])
    assert again.exit_code == 0 and "2 points (0 new, 2 reused), 1 feasible" in again.output, again.output
    assert "executor:" not in again.output and "points/s" not in again.output, again.output  # nothing evaluated
