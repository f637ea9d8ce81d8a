"""A sweep's batch evaluates its points together (`archsim.dse.points.evaluate_points`: the points binding the same
sizes share the mapper's candidates and plans) and its records are those of each point evaluated alone
(`evaluate_point`, i.e. `archsim.point.prepare` then `evaluate`), on the shipped demo sweep and on points that
do not fit or that the model rejects."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse import grouped
from archsim.dse.points import (
    MODEL_VERSION,
    _canonical,
    _resolve,
    evaluate_point,
    evaluate_points,
    expand,
    keyed,
    load_base,
    point_key,
    target_kind,
)
from archsim.dse.spec import load_sweep, sweep_from_dict

DEMO = Path(__file__).resolve().parent.parent / "archsim" / "dse" / "sweeps" / "demo.yaml"


def _text(records: list[dict]) -> list[str]:
    """Records as their JSON text (NaN metrics compare equal this way)."""
    return [json.dumps(r) for r in records]


@pytest.mark.parametrize("columns_from", [1, grouped.COLUMNS_FROM], ids=["all-columns", "default"])
def test_demo_batch_records_equal_the_single_path(columns_from, monkeypatch) -> None:
    """With every shared candidate and choice priced as numpy columns, and with the default threshold (the demo's
    12 points per binding are then priced one by one)."""
    monkeypatch.setattr(grouped, "COLUMNS_FROM", columns_from)
    spec = load_sweep(DEMO)
    base = load_base(spec)
    points = expand(spec)
    together = evaluate_points(spec, base, points)
    alone = [evaluate_point(spec, base, p) for p in points]
    assert _text(together) == _text(alone)
    assert [r["key"] for r in together] == [point_key(spec, base, p) for p in points]
    assert {r["target_kind"] for r in together} == {"architecture", "gpu"}


def test_infeasible_and_rejected_points_keep_their_own_reasons() -> None:
    """A buffer too small for any tile is an infeasible record naming the buffer; a sequence length that FuseMax's
    256-key tiles do not divide is rejected when the sizes are bound, a record whose reason says so; the records
    are those of each point alone."""
    spec = sweep_from_dict({
        "name": "mixed", "mapping": "fusemax", "workload": "bert-base",
        "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [1024, 2**22, 2**24],
                 "arch.memories.DRAM.bandwidth_bytes_per_s": [1e11, 4e11],
                 "workload.seq_len": [1000, 4096, 16384]},
    })
    base = load_base(spec)
    points = expand(spec)
    together = evaluate_points(spec, base, points)
    assert _text(together) == _text([evaluate_point(spec, base, p) for p in points])
    small = [r for r in together if r["arch.memories.GlobalBuffer.capacity_bytes"] == 1024
             and r["workload.seq_len"] != 1000]
    assert len(small) == 4 and all(not r["feasible"] and "GlobalBuffer" in r["reason"] for r in small)
    rejected = [r for r in together if r["workload.seq_len"] == 1000]
    assert len(rejected) == 6 and all(not r["feasible"] and "not divisible by M0=256" in r["reason"] for r in rejected)
    assert sum(r["feasible"] for r in together) == 8  # the two larger buffers x 2 bandwidths x 2 lengths


def test_keys_are_the_hash_of_the_resolved_configuration() -> None:
    """A key is the sha256 of the canonical JSON (sorted keys, no spaces, integral floats as ints) of the archsim
    version, the mapping's and cascade's files as parsed, the workload as loaded, the architecture after the
    point's changes and the sizes it binds (the workload's under the mapping's set: under the point's) with those
    given that the cascade does not read (none here; the module
    docstring of archsim.dse.points): what stores written with this scheme hold, so they resume."""
    spec = load_sweep(DEMO)
    base = load_base(spec)
    mapping = library.load_mapping_spec(spec.mapping)
    workload = library.load_workload_spec(spec.workload)
    files = {kind: yaml.safe_load(library.find(kind, name).read_text())
             for kind, name in (("mappings", spec.mapping), ("cascades", mapping.cascade))}
    points = [p for p in expand(spec) if p["target"] == "fusemax"][::7]
    for point, (key, _) in zip(points, keyed(spec, base, points), strict=True):
        arch, sets = _resolve(spec, base, point)
        config = {"version": MODEL_VERSION, "mapping": files["mappings"], "cascade": files["cascades"],
                  "workload": {"name": workload.name, "params": workload.params, "block": workload.block,
                               "attention": workload.attention},
                  "arch": arch.to_dict(), "sizes": {"sizes": {**workload.params, **mapping.sets, **sets},
                                                    "unread": []}}  # sizes given that the cascade does not read
        text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
        assert key == hashlib.sha256(text.encode()).hexdigest() == point_key(spec, base, point)


def test_a_gpu_points_key_does_not_hold_where_its_preset_file_lies(tmp_path) -> None:
    """A store resumes after the checkout or install moves: the key holds what the GPU computes, not its path."""
    spec = load_sweep(DEMO)
    base = load_base(spec)
    gpu_point = next(p for p in expand(spec) if target_kind(base, p) == "gpu")
    moved = dataclasses.replace(base, gpus={name: dataclasses.replace(g, source=str(tmp_path / "elsewhere.yaml"))
                                            for name, g in base.gpus.items()})
    assert point_key(spec, moved, gpu_point) == point_key(spec, base, gpu_point)
