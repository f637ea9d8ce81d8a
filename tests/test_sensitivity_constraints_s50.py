"""The sensitivity page ranks the points the front and the heat map rank (audit 646): a point that breaks a
constraint is counted beside, never a panel's best or median (the demo's 16 MiB panel had read 0.0297 s, its pe_dim
256 design over the area bound; 0.1171 s within it)."""

from __future__ import annotations

import math

import pandas as pd
import yaml

from archsim.dse.spec import load_sweep_spec
from archsim.dse.store import read_records
from archsim.dse.sweep import run_sweep
from archsim.report.sweep import sensitivity_rows

SPEC = {"name": "tight", "mapping": "fusemax", "workload": "bert-base", "sets": {"seq_len": 1024},
        "axes": {"arch.memories.DRAM.bandwidth_bytes_per_s": [26843545600, 107374182400]},
        "constraints": ["latency_s <= 1e-9"], "objectives": ["latency_s", "energy_pj"]}


def _rows(tmp_path, constraint: str) -> pd.DataFrame:
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "constraints": [constraint]}))
    run_sweep(load_sweep_spec(path), tmp_path / "tight.sqlite")
    return sensitivity_rows(read_records(tmp_path / "tight.sqlite"), ["latency_s"])


def test_a_point_breaking_a_constraint_is_not_a_panels_best(tmp_path) -> None:
    rows = _rows(tmp_path, "latency_s <= 1e-9")  # no point meets it
    assert len(rows) == 2 and all(math.isnan(best) for best in rows.best) and set(rows.points) == {0}
    assert set(rows.points_breaking_constraints) == {1}


def test_points_meeting_the_constraints_are_ranked_as_before(tmp_path) -> None:
    rows = _rows(tmp_path, "latency_s <= 1e9")
    assert all(best > 0 for best in rows.best) and set(rows.points) == {1}
    assert set(rows.points_breaking_constraints) == {0}


def test_the_logic_pims_ridge_at_the_rate_it_streams_at_is_beside_its_peaks() -> None:
    """Audit 646: the Op/B figure's Logic-PIM ridge is at its peaks (7.94, the placement's convention), where its
    model streams at the peak less refresh; the MoE at batch 32 (Op/B 8.0) is memory-bound there. The ridge at the
    streaming rate is listed beside (peak / (peak bandwidth x (1 - refresh)))."""
    from archsim.arch.logic_pim import HBM_REFRESH_FRACTION
    from archsim.systems.duplex_reproduce import ridge_rows

    rows = {r["unit"]: r for r in ridge_rows()}
    lp = rows["Logic-PIM"]
    assert lp["streaming_ridge_op_per_byte"] == lp["ridge_op_per_byte"] / (1 - HBM_REFRESH_FRACTION)
    assert lp["ridge_op_per_byte"] < 8.0 < lp["streaming_ridge_op_per_byte"]
    assert rows["xPU (H100)"]["streaming_ridge_op_per_byte"] == rows["xPU (H100)"]["ridge_op_per_byte"]
