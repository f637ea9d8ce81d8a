"""What a sweep store says of itself (audit s53, tests 1-5 each failing before its fix):

1. a linked axis's `set:` templates changed between two sweeps into one store was taken as the same base: the
   store then held two designs under each `linked.pe_dim` label, no column telling them apart (and a report
   pooled both in every cell). Its sweep is now refused, naming `axes.linked.<name>` and the store.
2. `results` and `report --sweep` read the records, then the planned and stored counts on another connection: a
   sweep writing between the two made the warning disagree with the records read.
3. the warning of a store lacking points named the last sweep into it, not the one whose points are missing.
4. a point's `target` was its architecture's path as resolved against the current directory: one spec swept from
   its folder and by its absolute path from another gave two labels of one architecture.
5. `results` of a store holding no points wrote "0 records" (exit 0) where `report --sweep` exits 2.
6. `make demo` on a store written by another archsim version was refused: `--replace-other-version` starts it
   afresh, while a store of this version resumes.

Expected values come from the specs: a grid's point count is the product of its axes' lengths.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import yaml

from archsim import library
from archsim.dse import points, store, sweep
from archsim.dse.spec import load_sweep, sweep_from_dict, target_name
from archsim.dse.store import open_store, put, read_records

PE_DIM = "linked.pe_dim"
LINKED = {"values": [64, 128], "set": {"arch.units.array2d.shape": ["pe_dim", "pe_dim"],
                                       "arch.units.array1d.shape": ["pe_dim"], "workload.M0": "pe_dim"}}
# FuseMax on BERT-Base at two array sizes x one length: 2 architecture points
LINKED_SWEEP = {"name": "lk", "mapping": "fusemax", "workload": "bert-base",
                "axes": {PE_DIM: LINKED, "workload.seq_len": [1024]}, "objectives": ["latency_s", "energy_pj"]}
BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"
# FuseMax on BERT-Base at two buffer sizes x two lengths: 4 points; OTHER is 2 more of the same base
SMALL = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
         "axes": {BUFFER: [262144, 1048576], "workload.seq_len": [1024, 4096]},
         "objectives": ["latency_s", "energy_pj"]}
OTHER = {**SMALL, "name": "other", "axes": {BUFFER: [524288], "workload.seq_len": [1024, 4096]}}


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _killed_after_one_batch(data: dict, db: Path, source: str) -> None:
    """The store of `data`'s sweep killed after its first batch of one point: its points all listed in
    `positions` when it claimed the store, one stored."""
    spec = sweep_from_dict(data, source)
    with sweep.started(spec, db) as (base, conn, _, todo_by_key):
        put(conn, sweep.evaluate_batch(spec, base, list(todo_by_key.items())[:1]))


def _warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


# ------------------------------------------------------------------------------------------------ 1: linked template
def test_a_linked_axis_whose_templates_changed_is_refused_naming_the_axis_and_the_store(tmp_path, invoke):
    db = tmp_path / "l.sqlite"
    first = _write(tmp_path / "l1.yaml", LINKED_SWEEP)
    wider = {**LINKED, "set": {**LINKED["set"], "arch.units.array1d.shape": [256]}}
    changed = _write(tmp_path / "l2.yaml", {**LINKED_SWEEP, "axes": {**LINKED_SWEEP["axes"], PE_DIM: wider}})
    assert invoke("sweep", first, "--db", str(db), "--local")[0] == 0
    code, output = invoke("sweep", changed, "--db", str(db), "--local")
    assert code == 2 and "axes.linked.pe_dim" in output and str(db) in output, output
    assert len(read_records(db)) == 2  # nothing of the changed sweep stored
    code, output = invoke("report", "--sweep", str(db), "--spec", changed, "--out", str(tmp_path / "r"))
    assert code == 2 and "axes.linked.pe_dim" in output, output


def test_a_linked_axis_may_grow_or_be_left_out_and_share_the_store(tmp_path, invoke):
    db = tmp_path / "l.sqlite"
    assert invoke("sweep", _write(tmp_path / "l1.yaml", LINKED_SWEEP), "--db", str(db), "--local")[0] == 0
    grown = {**LINKED_SWEEP, "axes": {**LINKED_SWEEP["axes"], PE_DIM: {**LINKED, "values": [64, 128, 32]}}}
    code, output = invoke("sweep", _write(tmp_path / "l3.yaml", grown), "--db", str(db), "--local")
    assert code == 0 and "3 points (1 new, 2 reused)" in output, output
    without = {**SMALL, "axes": {"workload.seq_len": [1024]}}
    code, output = invoke("sweep", _write(tmp_path / "s.yaml", without), "--db", str(db), "--local")
    assert code == 0, output


# ------------------------------------------------------------------------------------------------ 2: one snapshot
def test_the_warning_counts_the_records_read_though_a_sweep_writes_between_the_reads(tmp_path, invoke,
                                                                                      monkeypatch):
    """A batch of the killed sweep stored (by a sweep resumed beside it) just after the records were read: the
    warning and the records written agree (1 stored of 4), where the counts had been read afterwards (2 of 4)."""
    db = tmp_path / "k.sqlite"
    _killed_after_one_batch(SMALL, db, "small.yaml")
    spec = sweep_from_dict(SMALL, "small.yaml")
    writer = open_store(db)  # its log beside the store, as a running sweep keeps it
    base = points.load_base(spec)
    _, pending, _ = sweep.plan(spec, base, store.done_keys(writer))
    next_batch = sweep.evaluate_batch(spec, base, list(pending.items())[:1])
    read, written = store.records, []

    def a_batch_lands_after_the_records_are_read(conn):
        df = read(conn)
        if not written:
            written.append(put(writer, next_batch))
        return df

    monkeypatch.setattr(store, "records", a_batch_lands_after_the_records_are_read)
    try:
        code, output = invoke("results", str(db), "--csv", "-")
    finally:
        writer.close()
    assert written and code == 0, output
    assert "1 records written" in output and _warnings(output)[0].startswith("warning: 1 of 4 points stored"), output


# ------------------------------------------------------------------------------------------------ 3: which sweep
def test_the_warning_names_the_sweep_whose_points_are_missing_not_the_last_one(tmp_path, invoke):
    db = tmp_path / "sp.sqlite"
    _killed_after_one_batch(SMALL, db, "small.yaml")
    assert invoke("sweep", _write(tmp_path / "other.yaml", OTHER), "--db", str(db), "--local")[0] == 0
    for command in (["results", str(db), "--csv", "-"], ["report", "--sweep", str(db), "--out", str(tmp_path / "r")]):
        code, output = invoke(*command)
        [warning] = _warnings(output)
        assert code == 0 and warning.startswith("warning: 3 of 6 points stored"), output
        assert "3 of sweep small (small.yaml)" in warning and "other" not in warning, warning


# ------------------------------------------------------------------------------------------------ 4: target label
def _own_architecture(folder: Path) -> Path:
    """A sweep in `folder` of the fusemax mapping copied beside it, naming a copy of its architecture `a.yaml`."""
    mapping = yaml.safe_load(library.find("mappings", "fusemax").read_text())
    _write(folder / "m.yaml", {**mapping, "architecture": "a.yaml"})
    shutil.copyfile(library.find("architectures", "fusemax"), folder / "a.yaml")
    return Path(_write(folder / "s.yaml", {**SMALL, "mapping": "m.yaml"}))


def test_a_target_is_named_as_its_spec_writes_it_whatever_the_current_directory(tmp_path, monkeypatch):
    spec_path = _own_architecture(tmp_path)
    monkeypatch.chdir(tmp_path)
    from_its_folder = target_name(load_sweep(spec_path.name))
    sweep.run_sweep(sweep_from_dict({**SMALL, "mapping": "m.yaml", "axes": {BUFFER: [262144]}}, spec_path.name),
                    tmp_path / "t.sqlite")
    monkeypatch.chdir("/")
    by_absolute_path = load_sweep(spec_path)
    assert from_its_folder == target_name(by_absolute_path) == "a.yaml"
    sweep.run_sweep(by_absolute_path, tmp_path / "t.sqlite")
    stored = read_records(tmp_path / "t.sqlite")
    assert len(stored) == 4 and set(stored.target) == {"a.yaml"}


# ------------------------------------------------------------------------------------------------ 5: empty store
def test_results_and_report_of_a_store_without_points_agree(tmp_path, invoke):
    db = tmp_path / "empty.sqlite"
    open_store(db).close()  # created, not yet claimed: what a sweep starting leaves for a moment
    results = invoke("results", str(db), "--csv", "-")
    report = invoke("report", "--sweep", str(db), "--out", str(tmp_path / "r"))
    assert results[0] == report[0] == 2, (results, report)
    assert f"{db}: the sweep store holds no points" in results[1] and results[1] == report[1], (results, report)


# ------------------------------------------------------------------------------------------------ 6: another version
def test_replace_other_version_starts_afresh_a_store_of_another_archsim_but_resumes_one_of_this(tmp_path, invoke,
                                                                                            monkeypatch):
    db, spec = tmp_path / "d.sqlite", _write(tmp_path / "small.yaml", SMALL)
    with monkeypatch.context() as older:
        older.setattr(points, "MODEL_VERSION", "0.0.1+0000000000000000")
        assert invoke("sweep", spec, "--db", str(db), "--local")[0] == 0
    code, output = invoke("sweep", spec, "--db", str(db), "--local")
    assert code == 2 and "0.0.1+0000000000000000" in output and "--replace-other-version" in output, output
    code, output = invoke("sweep", spec, "--db", str(db), "--local", "--replace-other-version")
    assert code == 0 and "archsim 0.0.1+0000000000000000" in output and "4 points (4 new, 0 reused)" in output, output
    stored = read_records(db)
    _killed_after_one_batch({**SMALL, "axes": {**SMALL["axes"], BUFFER: [2097152]}}, db, spec)
    code, output = invoke("sweep", spec, "--db", str(db), "--local", "--replace-other-version")
    assert code == 0 and "4 points (0 new, 4 reused)" in output and "afresh" not in output, output
    assert len(read_records(db)) == 5  # the killed sweep's one point kept beside the 4
    pd.testing.assert_frame_equal(read_records(db).query("key in @stored.key").reset_index(drop=True), stored)
