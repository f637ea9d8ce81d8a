"""Sweep store and limits (audit s48): every point was stored twice once a sweep ran with a limit variable set and
once without (keys held the limits set, the store's base the version alone), and `results`, `report` and `--front`
counted both; `results` on an unfinished store said nothing of the points missing; a GPU preset named twice was
taken as one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archsim.dse import dask_run, points
from archsim.dse.points import expand, load_base, point_key
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import LIMITS_FIELD, open_store, read_records

ROWS = "ARCHSIM_MAX_GPU_ROWS"
# BERT-Base at 4096 tokens is 3.15e6 query rows: beyond a limit of 10^6, within the default
GPU_SWEEP = {"name": "rows", "mapping": "fusemax", "workload": "bert-base",
             "axes": {"workload.seq_len": [1024, 4096]}, "gpus": {"presets": ["h100-sxm5"]}}


@pytest.fixture(autouse=True)
def _no_limits(monkeypatch):
    for name in [n for n in os.environ if n.startswith("ARCHSIM_MAX_")]:
        monkeypatch.delenv(name)


def _sweep(invoke, write_yaml, folder: Path, data: dict) -> tuple[int, str, Path]:
    spec, db = write_yaml(folder / "s.yaml", data), folder / "s.sqlite"
    return (*invoke("sweep", str(spec), "--db", str(db), "--local"), db)


def _rows(db: Path) -> int:
    conn = open_store(db, read_only=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    finally:
        conn.close()


def test_a_limit_set_to_any_value_reuses_every_point_it_does_not_decide(tmp_path, invoke, write_yaml, monkeypatch):
    """With ARCHSIM_MAX_SWEEP_POINTS set (even to a value deciding nothing) the rerun computed all 4 points afresh
    and stored them again: 8 rows, `results` writing 8 records."""
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0 and "4 points (4 new, 0 reused)" in out, out
    monkeypatch.setenv("ARCHSIM_MAX_SWEEP_POINTS", "100000")
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0 and "4 points (0 new, 4 reused)" in out, out
    assert _rows(db) == 4
    code, out = invoke("results", str(db), "--csv", "-")
    assert code == 0 and "4 records written" in out, out


def test_a_point_a_limit_refused_is_recomputed_under_a_raised_limit_and_replaced(tmp_path, invoke, write_yaml,
                                                                                  monkeypatch):
    """The point beyond 10^6 rows is refused advising to raise the limit; rerun without the limit, it alone is
    computed afresh (feasible now), its row replaced: 4 rows, not 4 + 4."""
    monkeypatch.setenv(ROWS, str(10**6))
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0 and "4 points (4 new, 0 reused), 3 feasible" in out, out
    refused = read_records(db).query("not feasible")
    assert len(refused) == 1 and ROWS in refused.reason.iloc[0] and LIMITS_FIELD not in refused
    monkeypatch.delenv(ROWS)
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0 and "4 points (1 new, 3 reused), 4 feasible" in out, out
    assert _rows(db) == 4 and read_records(db).feasible.all()
    monkeypatch.setenv(ROWS, str(10**6))  # lowered again: the feasible record holds whatever the limits
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0 and "4 points (0 new, 4 reused), 4 feasible" in out, out


def test_keys_hold_the_version_alone_and_dask_workers_share_the_limits(monkeypatch):
    """A point's key is the same whatever limits are set; a worker's version still holds them (a worker under
    other limits is refused: `dask_run._check_batch`)."""
    spec = sweep_from_dict(GPU_SWEEP, "s.yaml")
    base, point = load_base(spec), expand(spec)[-1]
    plain = point_key(spec, base, point)
    monkeypatch.setenv(ROWS, "1000")
    assert point_key(spec, base, point) == plain
    assert points.computing_version() == {"model": points.MODEL_VERSION, "limits": {ROWS: 1000}}
    with pytest.raises(dask_run.OtherModel):
        dask_run._check_batch("tcp://10.0.0.2:40000", {"model": points.MODEL_VERSION, "limits": {}})


def test_results_warns_of_an_unfinished_store_as_report_does(tmp_path, invoke, write_yaml):
    """A store missing planned points (a sweep killed) exported "N records written" with no warning."""
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0, out
    conn = open_store(db)
    with conn:
        conn.execute("DELETE FROM points WHERE rowid = (SELECT MAX(rowid) FROM points)")
    conn.close()
    code, out = invoke("results", str(db), "--csv", str(tmp_path / "r.csv"))
    assert code == 0 and f"warning: 3 of 4 points stored (a sweep into it stopped, or is running); run `archsim " \
                          f"sweep SPEC --db {db}` again to finish" in out, out


def test_a_gpu_preset_named_twice_is_refused_as_an_axis_value_is(tmp_path, invoke, write_yaml):
    """`presets: [h100-sxm5, h100-sxm5]` gave "(3 drawn, 2 distinct)" points."""
    data = {**GPU_SWEEP, "gpus": {"presets": ["h100-sxm5", "h100-sxm5"]}}
    code, out, _ = _sweep(invoke, write_yaml, tmp_path, data)
    assert code == 2 and out.count("\n") == 1, out
    assert out.endswith("s.yaml: gpus.presets[1]: expected each value once, got 'h100-sxm5' twice (also "
                        "gpus.presets[0])\n"), out
