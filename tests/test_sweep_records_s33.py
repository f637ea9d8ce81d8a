"""A system point is keyed by the system as it resolves, not by how its axes spell it (audit helper s33): an axis
value equal to the preset's own (`neupims`' HBM bus is 128 bits) keys as the point without it, as a spatial size
does, so it is computed once, not stored twice; schedule and parallelism axes still key distinct points, and a
point the system spec refuses keys on why. And what a store and a sweep say of their records: a store of
architecture and GPU points lists `constraint_ok` last, the summary names the points off the front in a sentence,
and a store of another kind of sweep is refused naming the two kinds, not every part of their bases."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import yaml

from archsim.dse.points import keyed, load_base
from archsim.dse.serving_spec import ServingSettings
from archsim.dse.spec import load_sweep
from archsim.dse.store import open_store, put, records
from archsim.dse.system_points import system_config
from archsim.library import load_workload_spec
from archsim.systems.system_spec import load_system

BUS = "system.devices.pim.bus_bits"  # 128 bits in the neupims preset (system_presets/neupims.yaml via PIMSpec)
SERVING = {"rate_per_s": 2000.0, "requests": 12, "lengths": "alpaca", "seed": 0}


def _spec(tmp_path: Path, name: str, axes: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "system": "neupims", "workload": "gpt3-7b", "serving": SERVING,
                                    "axes": axes, "sampling": {"kind": "grid"},
                                    "objectives": ["throughput_tok_s", "tbt_p99_s"]}, sort_keys=False))
    return path


def _keys(path: Path, points: list[dict]) -> list[str]:
    spec = load_sweep(path)
    return [key for key, _ in keyed(spec, load_base(spec), [{"target": "neupims", **p} for p in points])]


def test_the_presets_own_bus_width_keys_as_the_point_without_the_axis(tmp_path) -> None:
    """`bus_bits: 128` is the preset's value: the same system, so the same key as the point that leaves the bus
    alone; 256 bits is another system. It had keyed on the raw changes, so 128 was a new point."""
    fixed = _keys(_spec(tmp_path, "fixed", {"serving.max_batch": [64]}), [{"serving.max_batch": 64}])
    grown = _keys(_spec(tmp_path, "grown", {BUS: [128, 256], "serving.max_batch": [64]}),
                  [{BUS: 128, "serving.max_batch": 64}, {BUS: 256, "serving.max_batch": 64}])
    assert grown[0] == fixed[0]
    assert grown[1] != fixed[0]


def test_growing_a_sweep_by_the_presets_value_reuses_its_stored_point(tmp_path, cli) -> None:
    """The neupims sweep grown by `bus_bits: [128, 256]` reuses the point stored without the axis (its row gains
    bus_bits 128) and computes one: two rows in the store, not three (the 128 point had been run and stored
    again, the same numbers in two rows)."""
    db = tmp_path / "s.sqlite"
    first = cli("sweep", str(_spec(tmp_path, "fixed", {"serving.max_batch": [64]})), "--local", "--db", str(db))
    assert "1 points (1 new, 0 reused)" in first.output
    grown = cli("sweep", str(_spec(tmp_path, "grown", {BUS: [128, 256], "serving.max_batch": [64]})), "--local",
                "--db", str(db))
    assert "2 points (1 new, 1 reused)" in grown.output, grown.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM points").fetchone()[0] == 2
    with closing(open_store(db, read_only=True)) as conn:
        assert sorted(records(conn)[BUS]) == [128, 256]


def test_schedule_and_parallelism_axes_still_key_distinct_points(tmp_path) -> None:
    """The key holds the whole resolved system, its schedule and parallel degrees with its devices and links: a
    schedule or parallelism axis keys one point per value (four here), the preset's values (min_batch 256, TP 4
    for gpt3-7b) as the point without the axes."""
    tp = "system.parallelism.by_workload.gpt3-7b.tp"
    path = _spec(tmp_path, "schedule", {"system.schedule.min_batch": [256, 128], tp: [4, 2],
                                        "serving.max_batch": [64]})
    keys = _keys(path, [{"system.schedule.min_batch": m, tp: t, "serving.max_batch": 64}
                        for m in (256, 128) for t in (4, 2)])
    assert len(set(keys)) == 4
    assert keys[0] == _keys(_spec(tmp_path, "fixed", {"serving.max_batch": [64]}), [{"serving.max_batch": 64}])[0]


def test_a_refused_point_keys_on_why_and_its_values() -> None:
    """A point whose values the system spec refuses (a PIM of 3 row buffers: 1 or 2) keys on the refusal, so an
    edit that changes why is another point, and on the values it asked for, so two refused points are two rows."""
    system, workload = load_system("neupims"), load_workload_spec("gpt3-7b")
    settings = ServingSettings(**SERVING, max_batch=64)

    def config(fields: dict) -> dict:
        return system_config(system, workload, settings, {**fields, "serving.max_batch": 64}, ())

    refused = config({"system.devices.pim.row_buffers": 3})
    assert "expected one of 1, 2, got 3" in str(refused)
    assert refused != config({"system.devices.pim.channels": 0})
    assert refused != config({"system.devices.pim.row_buffers": 3, "system.devices.pim.channels": 16})
    assert refused != config({})


def _record(key: str, kind: str, target: str, utilization: dict) -> dict:
    return {"key": key, "target_kind": kind, "target": target, "feasible": True, "reason": "", "latency_s": 1.0,
            "energy_pj": 2.0, "area_um2": 3.0 if kind == "architecture" else float("nan"),
            "dram_traffic_bytes": 4.0, "edp": 2.0, **utilization, "constraint_ok": True}


def test_a_store_of_architecture_and_gpu_points_lists_constraint_ok_last(tmp_path) -> None:
    """An architecture point's record has no tensor-core utilization, a GPU's has: `constraint_ok`, every record's
    last column, stays last (it had sat before `utilization.tensor_cores`, ordered by the first feasible record)."""
    with closing(open_store(tmp_path / "s.sqlite")) as conn:
        put(conn, [_record("a", "architecture", "fusemax", {"utilization.pe_array": 0.5}),
                   _record("g", "gpu", "h100", {"utilization.tensor_cores": 0.25})])
        columns = list(records(conn).columns)
    assert columns[-1] == "constraint_ok", columns
    assert columns.index("utilization.pe_array") < columns.index("utilization.tensor_cores")


def test_a_store_of_another_kind_is_refused_naming_the_two_kinds(tmp_path, cli) -> None:
    """A system sweep, then an architecture sweep, into a store of a parallel sweep: the kinds differ, so every part
    of the base does; the refusal says the kinds (it had listed every part: parallel, calibration, kind, system,
    resolved, workload, serving)."""
    db = tmp_path / "s.sqlite"
    cli("sweep", "seqpar-scaling", "--local", "--db", str(db))
    system = cli("sweep", str(_spec(tmp_path, "fixed", {"serving.max_batch": [64]})), "--local", "--db", str(db),
                 expect=2).output.strip()
    held = f"error: --db: {db}: holds the points of a parallel sweep, seqpar-scaling ("
    assert "\n" not in system and system.startswith(held), system
    assert system.endswith(f"; sweep fixed ({tmp_path / 'fixed.yaml'}) is a system sweep: give this sweep a store "
                           "of its own"), system
    spatial = cli("sweep", "demo", "--local", "--db", str(db), expect=2).output.strip()
    assert spatial.startswith(held) and "is an architecture sweep: give this sweep" in spatial, spatial
