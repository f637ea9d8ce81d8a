"""The report's architecture-vs-GPU table holds every other work axis at one value (as the heat map does), so a
target's best at a length is never that of a smaller batch; before, the best over a batch axis was taken without
naming it, and every target's latency was its batch-1 point's."""

from __future__ import annotations

import pandas as pd
import yaml
from click.testing import CliRunner
from test_sweep_report import SPEC

from archsim.cli import main
from archsim.dse.spec import load_sweep_spec
from archsim.dse.sweep import run_sweep


def test_targets_hold_the_batch_axis(tmp_path) -> None:
    spec = {**SPEC, "axes": {"workload.seq_len": [1024, 4096], "workload.batch": [1, 8, 8 * 8]},
            "gpus": {"presets": ["h100-sxm5"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))  # seq_len first
    df = run_sweep(load_sweep_spec(tmp_path / "s.yaml"), tmp_path / "s.sqlite")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["report", "--sweep", str(tmp_path / "s.sqlite"), "--spec",
                                       str(tmp_path / "s.yaml"), "--out", str(out), "--objectives",
                                       "latency_s,energy_pj"])
    assert result.exit_code == 0, result.output
    targets = pd.read_csv(out / "targets.csv")
    assert set(targets["workload.batch"]) == {1}  # the work with the most feasible points, the first on a tie
    h100 = df[(df.target == "h100-sxm5") & (df["workload.batch"] == 1)].set_index("workload.seq_len").latency_s
    got = targets[targets.target == "h100-sxm5"].set_index("workload.seq_len").best_latency_s
    assert got.to_dict() == h100.to_dict()
    assert "the other work held at batch 1" in (out / "index.html").read_text()
