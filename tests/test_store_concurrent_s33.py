"""Two sweeps of one base into one store at the same time, and the model version of an editable install and of a
wheel of the same source.

The sweeps' steps are taken in one process in the order two processes can take them (both claim the store, then
both write), so the test does not depend on timing. Expected values come from the specs: FuseMax on BERT-Base
(batch 64, `workloads/bert-base.yaml`) at 2 buffers x 2 lengths is 4 points; the same under `workload.batch: [64,
32]` is 8, of which the 4 at batch 64 are the first sweep's points (the same configuration, one key).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from archsim.dse import points
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import open_store, put, records
from archsim.dse.sweep import evaluate_batch, started

REPO = Path(__file__).resolve().parents[1]
BATCH = "workload.batch"
SMALL = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
         "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [262144, 1048576], "workload.seq_len": [1024, 4096]},
         "objectives": ["latency_s", "energy_pj"]}


def _spec(path: Path, axes: dict):
    data = {**SMALL, "axes": {**SMALL["axes"], **axes}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return sweep_from_dict(data, str(path))


def test_a_sweep_beside_another_of_fewer_axes_keeps_its_axis_values(tmp_path):
    """Sweep `b` (with a batch axis) claims the store before sweep `a` (without) has written: `a`'s 4 points, stored
    first, are 4 of `b`'s 8, whose batch values they gain when `b` writes them (its inserts ignored)."""
    a, b = _spec(tmp_path / "a.yaml", {}), _spec(tmp_path / "b.yaml", {BATCH: [64, 32]})
    db = tmp_path / "s.sqlite"
    with started(a, db) as (base_a, conn_a, _, todo_a), started(b, db) as (base_b, conn_b, _, todo_b):
        assert (len(todo_a), len(todo_b)) == (4, 8)  # both claimed an empty store
        put(conn_a, evaluate_batch(a, base_a, list(todo_a.items())))
        put(conn_b, evaluate_batch(b, base_b, list(todo_b.items())))
    conn = open_store(db, read_only=True)
    try:
        df = records(conn)
    finally:
        conn.close()
    assert len(df) == 8
    assert df[BATCH].notna().all(), df[["key", BATCH]]
    assert sorted(df[BATCH].value_counts().items()) == [(32, 4), (64, 4)]


def test_a_stored_point_put_again_gains_the_axis_values_it_lacks_and_keeps_its_results(tmp_path):
    """A record put under a key already stored adds its axis values after the stored key, target kind and target; the
    stored results stay (the latency 1.0 s, not the 2.0 s of the second put)."""
    stored = {"key": "k", "target_kind": "architecture", "target": "t", "workload.seq_len": 1024,
              "feasible": True, "constraint_ok": True, "latency_s": 1.0, "energy_pj": 3.0, "area_um2": 5.0}
    again = {**stored, BATCH: 32, "latency_s": 2.0}
    del again["workload.seq_len"]
    conn = open_store(tmp_path / "s.sqlite")
    try:
        put(conn, [stored])
        put(conn, [again])
        df = records(conn)
        (latency,) = conn.execute("SELECT latency_s FROM points").fetchone()
    finally:
        conn.close()
    assert list(df.columns[:5]) == ["key", "target_kind", "target", BATCH, "workload.seq_len"]
    assert df.loc[0, BATCH] == 32 and df.loc[0, "latency_s"] == 1.0 and latency == 1.0


def test_the_separately_mapped_packages_are_those_of_pyproject():
    """`points.MAPPED_PACKAGES` (left out of the source digest's walk of archsim/) names every package pyproject
    maps into `archsim` from outside its source folder."""
    mapped = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    outside = {name for name, folder in mapped.items() if name != "archsim" and not folder.startswith("archsim")}
    assert {name for name in outside if not any(name.startswith(f"{p}.") for p in points.MAPPED_PACKAGES)} == \
        set(points.MAPPED_PACKAGES)


def test_a_wheel_of_this_source_has_the_editable_install_s_model_version(tmp_path):
    """The wheel puts the library's and the kernels' packages under archsim/, the editable install leaves them at
    the top of the repository: the model version (its source digest) is the same in both."""
    source = tmp_path / "src"  # a copy: building writes build/ and an egg-info beside the source
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for name in ("archsim", "einsum", "mappings", "workloads", "kernels"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", "--no-cache-dir"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "d")],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "d").glob("archsim-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "t"), str(wheel)], check=True)
    assert (tmp_path / "t" / "archsim" / "kernels" / "__init__.py").is_file()  # the layout that differs
    shown = subprocess.run([sys.executable, "-c", "import archsim, archsim.dse.points as p; "
                                                  "print(archsim.__file__); print(p.MODEL_VERSION)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(tmp_path / "t")}).stdout.split()
    assert Path(shown[0]).is_relative_to(tmp_path / "t")
    assert shown[1] == points.MODEL_VERSION
