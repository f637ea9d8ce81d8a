"""Sweep store keys that follow the resolved configuration, and writers that do not race (audit s27, each test
failing before its fix):

1. an architecture point was keyed on the sweep's explicit `workload.` overrides, not on the sizes they resolve
   to: a `workload.batch` axis holding the workload's own batch recomputed every stored point beside its twin.
2. the key's fixed part hashed the mapping, cascade and workload as written: naming them by path, or spelling out
   the mapping's own cascade, keyed every point afresh (a store then listed each design twice).
3. the base held `gpus: {kernel, causal, precision}`, so GPU presets added to a store swept without them were
   refused; a preset whose points were timed under another kernel is still refused.
4. the base hashed the mapping file's text: a comment added to a user mapping locked its store out.
5. two `archsim measure --out same.csv` at once each read the file's rows once and wrote every case: each row twice.
6. two writers of one new report folder: the second to finish failed ("Directory not empty") after its work.
7. a store locked by another process said only "database is locked"; a sweep's "N new" counted points it evaluated,
   not rows it stored.

Expected numbers come from the specs: a grid's point count is the product of its axes' lengths.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from archsim import library, outputs
from archsim.dse import dask_run
from archsim.dse.dask_run import run_sweep_dask
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import open_store, read_records
from archsim.errors import SpecError
from archsim.outputs import MANIFEST, atomic_dir

BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"
# FuseMax on BERT-Base at two buffer sizes x two lengths: 4 architecture points
SMALL = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
         "axes": {BUFFER: [262144, 1048576], "workload.seq_len": [1024, 4096]},
         "objectives": ["latency_s", "energy_pj"]}
GPUS = {"presets": ["h100-sxm5"], "kernel": "FlashAttention-2"}


def _run(data: dict, db: Path, source: str = "s.yaml"):
    return run_sweep_dask(sweep_from_dict(data, source), db, executor="in-process")


@pytest.mark.parametrize("order", [("unread", "plain"), ("plain", "unread")])
def test_a_size_the_cascade_does_not_read_keys_apart_from_its_absence(tmp_path, order):
    """Given, a size the cascade does not read is refused ("changes nothing"); left out, the point runs. Keyed on
    the resolved sizes alone, the two had shared a key (review helper-244): the plain sweep after the other read back
    its refusals, and the other after the plain one its feasible rows."""
    own = library.load_workload_spec("bert-base").params["ffn_dim"]
    specs = {"plain": SMALL, "unread": {**SMALL, "axes": {**SMALL["axes"], "workload.ffn_dim": [own]}}}
    db = tmp_path / "d.sqlite"
    for name in order:
        run = _run(specs[name], db)
        assert run.new == 4
        assert list(run.records["feasible"]) == [name == "plain"] * 4
        if name == "unread":
            assert run.records["reason"].str.contains("ffn_dim: changes nothing").all()


def test_an_axis_at_the_workloads_own_size_reuses_the_stored_points(tmp_path):
    db = tmp_path / "d.sqlite"
    assert _run(SMALL, db).new == 4
    own = int(library.load_workload_spec("bert-base").params["batch"])  # 64
    grown = {**SMALL, "axes": {**SMALL["axes"], "workload.batch": [own, own // 2]}}
    run = _run(grown, db)
    # the 4 points at the workload's own batch are the stored ones; only the 4 at half the batch are new
    assert (run.new, run.reused) == (4, 4)
    stored = read_records(db)
    assert len(stored) == 8 and stored["key"].is_unique
    # the reused rows gain the new axis's value (`store.add_axis_values`): they lie at the workload's own batch
    assert sorted(stored["workload.batch"].tolist()) == [own // 2] * 4 + [own] * 4


def test_the_mapping_workload_and_cascade_named_by_path_key_the_same_points(tmp_path):
    db = tmp_path / "d.sqlite"
    assert _run(SMALL, db).new == 4
    mapping = library.load_mapping_spec("fusemax")
    by_path = {**SMALL, "mapping": str(library.find("mappings", "fusemax")),
               "workload": str(library.find("workloads", "bert-base")), "cascade": mapping.cascade}
    run = _run(by_path, db)
    assert (run.new, run.reused) == (0, 4)
    assert len(read_records(db)) == 4


def test_gpu_presets_join_a_store_swept_without_them_but_not_under_another_kernel(tmp_path):
    db = tmp_path / "d.sqlite"
    assert _run(SMALL, db).new == 4
    run = _run({**SMALL, "gpus": GPUS}, db)
    assert (run.new, run.reused) == (2, 4)  # one GPU preset at the 2 lengths
    with pytest.raises(SpecError, match=r"^--db: .*on GPU h100-sxm5 timed under other settings \(kernel "
                                        r"FlashAttention-2, now FlashAttention-3\)") as refused:
        _run({**SMALL, "gpus": {**GPUS, "kernel": "FlashAttention-3"}}, db)
    assert "\n" not in str(refused.value)
    assert len(read_records(db)) == 6


def test_a_comment_added_to_a_user_mapping_keeps_its_store(tmp_path):
    db, mapping = tmp_path / "d.sqlite", tmp_path / "mine.yaml"
    shutil.copyfile(library.find("mappings", "fusemax"), mapping)
    spec = {**SMALL, "mapping": str(mapping)}
    assert _run(spec, db).new == 4
    mapping.write_text("# my copy of FuseMax\n" + mapping.read_text())
    run = _run(spec, db)
    assert (run.new, run.reused) == (0, 4)


def test_a_store_of_another_key_scheme_is_refused_in_one_line_naming_db(tmp_path):
    db = tmp_path / "d.sqlite"
    _run(SMALL, db)
    with sqlite3.connect(db) as conn:  # a store written by an earlier archsim: another version in its base
        base = json.loads(conn.execute("SELECT value FROM meta WHERE name = 'base'").fetchone()[0])
        conn.execute("UPDATE meta SET value = ? WHERE name = 'base'",
                     (json.dumps({**base, "version": json.dumps("0.1.0+0123456789abcdef")}),))
    with pytest.raises(SpecError, match=r"^--db: .* as archsim 0\.1\.0\+0123456789abcdef computed them") as refused:
        _run(SMALL, db)
    assert "\n" not in str(refused.value)


def test_a_sweep_says_how_many_rows_it_stored_not_how_many_it_evaluated(tmp_path, monkeypatch):
    db = tmp_path / "d.sqlite"
    put = dask_run.put
    raced = []

    def another_sweep_stores_them_first(conn, batch):  # an identical sweep in another process wins the race
        if not raced:
            raced.append(True)
            other = open_store(db)
            put(other, batch)
            other.close()
        put(conn, batch)

    monkeypatch.setattr(dask_run, "put", another_sweep_stores_them_first)
    monkeypatch.setattr("archsim.dse.sweep.put", another_sweep_stores_them_first)
    run = _run(SMALL, db)
    assert run.new + run.reused == 4 and run.new < 4  # the rows the other sweep stored are not this run's
    assert len(read_records(db)) == 4


def test_a_store_locked_by_another_process_says_so(tmp_path):
    db = tmp_path / "d.sqlite"
    _run(SMALL, db)
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")
    try:
        conn = open_store(db)
        conn.execute("PRAGMA busy_timeout = 0")  # fail at once, not after 5 s
        from archsim.dse.store import claiming

        with pytest.raises(SpecError, match="another process") as refused, claiming(conn):
            pass
        assert "retry" in str(refused.value)
        conn.close()
    finally:
        holder.rollback()
        holder.close()


def test_two_writers_of_one_new_report_folder_both_finish(tmp_path, monkeypatch):
    out = tmp_path / "report"
    replace, raced = outputs.os.replace, []

    def the_other_writer_finishes_first(src, dst):  # between this writer's look at `out` and its rename
        if not raced:
            raced.append(True)
            with atomic_dir(out) as other:
                (other / "a.txt").write_text("other")
        replace(src, dst)

    with atomic_dir(out) as stage:
        (stage / "a.txt").write_text("mine")
        monkeypatch.setattr(outputs.os, "replace", the_other_writer_finishes_first)
    assert raced and (out / "a.txt").read_text() == "mine"  # the last to finish wins, whole
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.txt", MANIFEST])
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left


def test_two_measure_runs_into_one_csv_write_each_row_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # before triton is imported: triton reads it at import
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    from archsim.commands import measure as command

    monkeypatch.setattr(command, "_runner", lambda case, device: lambda: None)  # no kernel: the race is the file's

    def slow_time_ms(fn, interpret):  # long enough that both runs are measuring at once
        time.sleep(0.1)
        return 1.0

    monkeypatch.setattr(command, "_time_ms", slow_time_ms)
    out = tmp_path / "same.csv"
    errors = []

    def run():
        try:
            command.measure.callback(kernel_names=("naive",), out=out, interpret=True, max_seqlen=None,
                                     grid="published")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    keys = [command._row_key(row) for row in _csv_rows(out)]
    cases = command.GRIDS["published"](("naive",), command.INTERPRET_MAX_SEQLEN, tiny=True)
    expected = sum(len(command._rows(case, 1.0, {"gpu": "x", "how_obtained": "x"}, "")) for case in cases)
    assert len(keys) == len(set(keys)) == expected


def _csv_rows(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))
