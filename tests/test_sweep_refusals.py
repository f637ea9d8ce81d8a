"""Sweep, store and sweep-report refusals found by fuzzing: each input that used to give a silent wrong answer.

Expected values come from the inputs themselves: a constraint bound set below the smallest stored area (so no
point meets it) or above the largest (so every feasible one does), a store with one of its rows deleted (3 of 4),
the YAML path of the second place that sets a field, and the metrics a system's records leave NaN (its devices
model no area: `archsim.dse.system_points`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from archsim import library
from archsim.dse.points import MODEL_VERSION, source_digest
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import open_store, put, read_records
from archsim.errors import SpecError
from archsim.outputs import check_writable

BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"
# FuseMax on BERT-Base at two buffer sizes x two lengths; the 1 KiB buffer cannot hold a tile (infeasible).
SMALL = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
         "axes": {BUFFER: [262144, 1048576], "workload.seq_len": [1024, 4096]},
         "objectives": ["latency_s", "energy_pj"]}


def _spec(path: Path, **changes) -> str:
    path.write_text(yaml.safe_dump({**SMALL, **changes}))
    return str(path)


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]


def _error(result) -> str:
    """The output is one line, `error: ...`: returns it without the prefix."""
    text = result.output.strip()
    assert text.count("\n") == 0 and text.startswith("error: "), text
    return text.removeprefix("error: ")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """SMALL run into its store with no constraint: (folder, store, the stored areas)."""
    from click.testing import CliRunner

    from archsim.cli import main

    root = tmp_path_factory.mktemp("small")
    db = root / "s.sqlite"
    result = CliRunner().invoke(main, ["sweep", _spec(root / "a.yaml"), "--db", str(db), "--local"])
    assert result.exit_code == 0, result.output
    return root, db, read_records(db).area_um2.to_numpy()


def test_a_changed_constraint_is_judged_again_on_reuse_report_and_results(stored, tmp_path, cli):
    _, original, areas = stored
    db = tmp_path / "s.sqlite"
    db.write_bytes(original.read_bytes())
    assert areas.min() > 0
    loose = _spec(tmp_path / "loose.yaml", constraints=[f"area_um2 <= {areas.max() * 2:.6e}"])
    tight = _spec(tmp_path / "tight.yaml", constraints=[f"area_um2 <= {areas.min() / 2:.6e}"])
    assert "4 points (0 new, 4 reused), 4 feasible, 4 within constraints" in cli("sweep", loose, "--db", str(db)).stdout
    # every stored area is above the tight bound: no point meets it, whatever the stored verdict says
    assert "4 points (0 new, 4 reused), 4 feasible, 0 within constraints" in cli("sweep", tight, "--db", str(db)).stdout
    report = cli("report", "--sweep", str(db), "--spec", loose, "--out", str(tmp_path / "r"))
    assert "0 break a constraint" in report.stdout
    report = cli("report", "--sweep", str(db), "--spec", tight, "--out", str(tmp_path / "r"))
    assert "4 break a constraint, 0 on the Pareto front" in report.stdout
    # results judges by the last sweep's constraints (tight), and says so
    exported = cli("results", str(db), "--csv", str(tmp_path / "all.csv"))
    assert "constraint_ok by the last sweep's constraints: area_um2 <= " in exported.stdout
    assert not pd.read_csv(tmp_path / "all.csv").constraint_ok.any()
    front = cli("results", str(db), "--csv", str(tmp_path / "front.csv"), "--front", "latency_s,energy_pj")
    assert front.stdout.startswith("0 records written")


def test_a_store_of_another_base_is_refused_and_the_same_base_grows(stored, tmp_path, cli):
    _, original, _ = stored
    db = tmp_path / "s.sqlite"
    db.write_bytes(original.read_bytes())
    other = _spec(tmp_path / "trxl.yaml", workload="trxl")
    message = _error(cli("sweep", other, "--db", str(db), expect=2))
    assert message.startswith(f"--db: {db}: holds the points of sweep small (")
    assert "whose base differs from sweep" in message and "in workload:" in message
    assert _rows(db) == 4
    message = _error(cli("sweep", "seqpar-scaling", "--db", str(db), expect=2))
    assert "version" not in message and "is a parallel sweep" in message
    # the same base with an axis grown by one value: 2 more points (1 value x 2 lengths), the 4 reused
    grown = _spec(tmp_path / "grown.yaml", axes={BUFFER: [262144, 1048576, 4194304], "workload.seq_len": [1024, 4096]})
    assert "6 points (2 new, 4 reused)" in cli("sweep", grown, "--db", str(db)).stdout


def test_a_store_of_another_model_version_is_refused(stored, tmp_path, cli):
    """A store written by another archsim (its source changed, the package version the same) is refused, not served:
    the model version in its base carries a digest of the source (`points.MODEL_VERSION`)."""
    _, original, _ = stored
    db = tmp_path / "s.sqlite"
    db.write_bytes(original.read_bytes())
    with sqlite3.connect(db) as conn:
        base = json.loads(conn.execute("SELECT value FROM meta WHERE name = 'base'").fetchone()[0])
        assert json.loads(base["version"]) == MODEL_VERSION  # each part is canonical JSON
        base["version"] = json.dumps(MODEL_VERSION.split("+")[0] + "+0000000000000000")
        conn.execute("UPDATE meta SET value = ? WHERE name = 'base'", (json.dumps(base, sort_keys=True),))
    message = _error(cli("sweep", _spec(tmp_path / "a.yaml"), "--db", str(db), expect=2))
    old = MODEL_VERSION.split("+")[0] + "+0000000000000000"
    assert (f" as archsim {old} computed them (now "
            f"{MODEL_VERSION}), none of which it would reuse (delete the store, or sweep with "
            "--replace-other-version, to start it afresh)") in message


def test_the_model_version_follows_the_source(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text("RATE = 1.0\n")
    (tmp_path / "notes.txt").write_text("not source")
    before = source_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("still not source")
    assert source_digest(tmp_path) == before
    (tmp_path / "pkg" / "model.py").write_text("RATE = 2.0\n")
    assert source_digest(tmp_path) != before


def test_a_store_written_before_stores_named_their_base(stored, tmp_path, cli):
    """A store without `meta` is claimed by a sweep with a point in it (it resumes), refused by one without."""
    _, original, _ = stored
    db = tmp_path / "old.sqlite"
    db.write_bytes(original.read_bytes())
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE meta")
    message = _error(cli("sweep", _spec(tmp_path / "trxl.yaml", workload="trxl"), "--db", str(db), expect=2))
    assert message.startswith(f"--db: {db}: holds 4 points of another sweep (none is a point of sweep small")
    assert "4 points (0 new, 4 reused)" in cli("sweep", _spec(tmp_path / "a.yaml"), "--db", str(db)).stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'sweep'").fetchone() == (f"small ({tmp_path}/a.yaml)",)


def test_a_report_of_an_unfinished_store_says_how_much_is_missing(stored, tmp_path, cli):
    root, original, _ = stored
    db = tmp_path / "part.sqlite"
    db.write_bytes(original.read_bytes())
    with sqlite3.connect(db) as conn:  # as a sweep killed before its last point
        conn.execute("DELETE FROM points WHERE rowid = (SELECT MAX(rowid) FROM points)")
    spec = str(root / "a.yaml")
    result = cli("report", "--sweep", str(db), "--spec", spec, "--out", str(tmp_path / "r"))
    note = f"3 of 4 points stored; run `archsim sweep {spec} --db {db}` to finish"
    assert f"warning: {note}" in result.stderr and result.stdout.startswith("3 points:")
    assert note in (tmp_path / "r" / "index.html").read_text()


@pytest.mark.parametrize("changes, where, first", [
    # a linked axis and a direct axis both set the array's shape
    ({"axes": {"linked.pe_dim": {"values": [64, 128], "set": {"arch.units.array2d.shape": ["pe_dim", "pe_dim"]}},
               "arch.units.array2d.shape": [[64, 64]]}},
     "axes.arch.units.array2d.shape", "axes.linked.pe_dim.set.arch.units.array2d.shape"),
    ({"sets": {"seq_len": 2048}}, "axes.workload.seq_len", "sets.seq_len"),
    ({"sets": {"M0": 128}, "axes": {"linked.pe_dim": {"values": [64], "set": {"workload.M0": "pe_dim"}}}},
     "axes.linked.pe_dim.set.workload.M0", "sets.M0"),
    ({"axes": {"linked.a": {"values": [64], "set": {"workload.M0": "a"}},
               "linked.b": {"values": [128], "set": {"workload.M0": "b"}}}},
     "axes.linked.b.set.workload.M0", "axes.linked.a.set.workload.M0"),
    # a field and one inside it
    ({"axes": {"arch.units.array2d": [1], "arch.units.array2d.shape": [[64, 64]]}},
     "axes.arch.units.array2d.shape", "axes.arch.units.array2d"),
])
def test_a_field_set_in_two_places_is_refused_naming_both(changes, where, first):
    with pytest.raises(SpecError) as err:
        sweep_from_dict({**SMALL, **changes}, "two.yaml")
    assert (err.value.source, err.value.where) == ("two.yaml", where)
    assert err.value.message == f"also set by {first}: give it in one place"


def test_a_report_folder_is_not_the_current_folder_however_written(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for path in (str(here), "../here", str(tmp_path), "./../here/."):
        with pytest.raises(SpecError, match="cannot be the current folder, one of its parents or /"):
            check_writable(path, "--out", directory=True)
    assert check_writable("sub", "--out", directory=True) == Path("sub")


@pytest.mark.parametrize("db", ["", ":memory:", "file:x?mode=memory", "file:x.sqlite"])
def test_a_store_that_is_not_a_file_is_refused_naming_db(tmp_path, monkeypatch, cli, db):
    monkeypatch.chdir(tmp_path)
    result = cli("sweep", _spec(tmp_path / "a.yaml"), "--db", db, expect=2)
    assert "--db" in _error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml"]  # no store written anywhere


def test_an_objective_no_point_models_is_refused(tmp_path, cli):
    """A system's records carry area as NaN: a front over area would be empty, not an answer."""
    db = tmp_path / "system.sqlite"
    conn = open_store(db)
    put(conn, [{"key": str(i), "target_kind": "system", "target": "neupims", "serving.max_batch": 2**i,
                "feasible": True, "reason": "", "latency_s": 0.01 * i, "energy_pj": 1e9 / i, "area_um2": math.nan,
                "dram_traffic_bytes": math.nan, "edp": 1e7, "constraint_ok": True} for i in (1, 2)])
    conn.close()
    expected = "--objectives: area_um2 is not modelled for target system (no feasible stored point has it)"
    result = cli("report", "--sweep", str(db), "--objectives", "latency_s,area_um2", "--out", str(tmp_path / "r"),
                 expect=2)
    assert _error(result) == expected
    result = cli("results", str(db), "--csv", str(tmp_path / "f.csv"), "--front", "latency_s,area_um2", expect=2)
    assert _error(result) == expected.replace("--objectives", "--front")
    assert "2 records" in cli("results", str(db), "--csv", str(tmp_path / "f.csv"), "--front",
                              "latency_s,energy_pj").stdout
    system = {"name": "np", "system": "neupims", "workload": "gpt3-7b", "axes": {"serving.max_batch": [8]},
              "serving": {"rate_per_s": 1.0, "requests": 4, "lengths": "alpaca", "seed": 0}}
    for key, value, where in (("objectives", ["latency_s", "area_um2"], "objectives[1]"),
                              ("constraints", ["area_um2 <= 1e8"], "constraints[0]")):
        with pytest.raises(SpecError) as err:
            sweep_from_dict({**system, key: value}, "np.yaml")
        assert err.value.where == where and err.value.message.startswith("area_um2 is not modelled for target system")


def test_infeasible_points_are_listed_with_reasons_and_exported_without_metrics(tmp_path, cli):
    """A 1 KiB global buffer holds no tile: 2 infeasible points (1 KiB x 2 lengths) of 4."""
    spec = _spec(tmp_path / "inf.yaml", axes={BUFFER: [1024, 2**24], "workload.seq_len": [1024, 4096]})
    db = tmp_path / "inf.sqlite"
    cli("sweep", spec, "--db", str(db), "--local")
    cli("report", "--sweep", str(db), "--spec", spec, "--out", str(tmp_path / "r"))
    listed = pd.read_csv(tmp_path / "r" / "infeasible.csv")
    assert len(listed) == 2 and (listed[BUFFER] == 1024).all() and listed.reason.str.contains("GlobalBuffer").all()
    page = (tmp_path / "r" / "index.html").read_text()
    assert "<h2>Infeasible points</h2>" in page and "infeasible.csv" in page
    cli("results", str(db), "--csv", str(tmp_path / "all.csv"))
    exported = pd.read_csv(tmp_path / "all.csv")
    infeasible = exported[~exported.feasible]
    assert len(infeasible) == 2 and infeasible[["latency_s", "energy_pj", "area_um2", "edp"]].isna().all().all()
    assert exported[exported.feasible][["latency_s", "energy_pj"]].notna().all().all()


def test_a_store_written_with_numbers_for_infeasible_points_reads_them_as_empty(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = open_store(db)
    put(conn, [{"key": "k", "target_kind": "architecture", "target": "fusemax", BUFFER: 1024, "feasible": False,
                "reason": "does not fit", "latency_s": 0.5, "energy_pj": 2.0, "area_um2": 3.0,
                "utilization.array2d": 0.5, "constraint_ok": False}])
    conn.close()
    row = read_records(db).iloc[0]
    assert row[BUFFER] == 1024 and row.reason == "does not fit"
    assert all(math.isnan(row[c]) for c in ("latency_s", "energy_pj", "area_um2", "utilization.array2d"))
    assert json.loads(sqlite3.connect(db).execute("SELECT record FROM points").fetchone()[0])["latency_s"] == 0.5


@pytest.mark.parametrize("key", ["samples", "seed"])
def test_grid_sampling_refuses_what_it_would_ignore(key):
    with pytest.raises(SpecError) as err:
        sweep_from_dict({**SMALL, "sampling": {"kind": "grid", key: 3}}, "grid.yaml")
    assert err.value.where == f"sampling.{key}" and "takes no samples or seed" in err.value.message


def test_a_random_draw_repeated_is_counted_once_and_said(tmp_path, cli):
    """3 random draws over one buffer x one length: one distinct point, drawn 3 times."""
    spec = _spec(tmp_path / "r.yaml", axes={BUFFER: [262144], "workload.seq_len": [1024]},
                 sampling={"kind": "random", "samples": 3, "seed": 0})
    result = cli("sweep", spec, "--db", str(tmp_path / "r.sqlite"), "--local")
    assert "sweep small: 1 points (3 drawn, 1 distinct; 1 new, 0 reused)" in result.stdout


def test_a_size_from_an_axis_is_blamed_on_the_sweep_file(tmp_path, cli):
    """BERT at 1000 tokens on FuseMax's 256-key tiles: the reason said `seq_len=1000 from --set`, an option the
    user never gave; the size came from the sweep file's axis."""
    spec = _spec(tmp_path / "s.yaml", axes={BUFFER: [2**20], "workload.seq_len": [1000]})
    db = tmp_path / "s.sqlite"
    cli("sweep", spec, "--db", str(db), "--local")
    reason = read_records(db).reason.iloc[0]
    assert "seq_len=1000 from the sweep's sets and axes" in reason and "--set" not in reason


def test_a_store_in_a_folder_this_process_cannot_write_is_read(tmp_path, monkeypatch):
    """SQLite's WAL mode needs its shared-memory file beside the store even to read: `results` and `report` of a
    store in a read-only folder failed with "attempt to write a readonly database". The store is read from a copy,
    with the batches its log holds (the writer below is still open, so nothing is folded into the file yet)."""
    import archsim.dse.store as store

    db = tmp_path / "s.sqlite"
    writer = open_store(db)
    put(writer, [{"key": f"k{i}", "target_kind": "architecture", "target": "fusemax", BUFFER: 1024 * (i + 1),
                  "feasible": True, "reason": "", "latency_s": 0.1 * (i + 1), "energy_pj": 1.0, "area_um2": 2.0,
                  "constraint_ok": True} for i in range(3)])
    assert Path(f"{db}-wal").stat().st_size > 0
    monkeypatch.setattr(store.os, "access", lambda path, mode: False)
    assert list(read_records(db)[BUFFER]) == [1024, 2048, 3072]
    writer.close()


def test_dask_workers_start_with_interrupts_ignored():
    """A terminal's Ctrl-C reaches every process of its group: Dask's worker processes printed their own
    KeyboardInterrupt tracebacks beside `error: aborted`. They are started with SIGINT ignored (inherited), and the
    sweep's own handler is back afterwards."""
    import signal

    from archsim.dse.dask_run import _interrupts_ignored

    before = signal.getsignal(signal.SIGINT)
    with _interrupts_ignored():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is before


def test_a_parallel_sweep_of_a_workload_no_scheme_times_is_refused_at_load(tmp_path):
    """An MLA workload in a `parallel:` block ran every point to an infeasible row; a `gpus:` block refused it."""
    spec = {"name": "p", "parallel": {"workload": "deepseek-v3-mla", "seq_len": 32768, "topology": "hgx-h100-8",
                                      "scheme": "ring"},
            "axes": {"parallel.devices": [2, 4]}, "objectives": ["latency_s", "efficiency"]}
    with pytest.raises(SpecError) as error:
        sweep_from_dict(spec, "p.yaml")
    assert (error.value.source, error.value.where) == ("p.yaml", "parallel.workload")
    assert "an MLA workload (latent KV): workload 'deepseek-v3-mla'" in error.value.message


def test_a_sweep_name_is_the_librarys_whatever_the_current_folder(cli, tmp_path: Path, monkeypatch) -> None:
    """`archsim sweep demo` from a folder holding a folder named demo read that folder ("not a regular file"); a
    file named demo there would have run instead of the library's sweep."""
    (tmp_path / "demo").mkdir()
    monkeypatch.chdir(tmp_path)
    result = cli("sweep", "demo", "--db", str(tmp_path / "d.sqlite"), "--max-points", "3", expect=2)
    assert "archsim/dse/sweeps/demo.yaml: axes: 160 points exceed the limit of 3" in result.output, result.output


def test_the_demo_constraint_leaves_out_the_largest_design(tmp_path: Path) -> None:
    """The demo's area bound excluded nothing (its comment put the 256 x 256, 16 MiB design at 4.85e8 um^2; the
    model gives 4.38e8): it now leaves that design's 12 points out. In a fresh process, as `make demo` runs it (in
    this one it would leave the demo's points remembered, and test_fuzz_cli's Ctrl-C 0.3 s into `sweep demo` would
    find it finished)."""
    db = tmp_path / "d.sqlite"
    archsim = [sys.executable, "-m", "archsim"]
    subprocess.run([*archsim, "sweep", "demo", "--db", str(db)], check=True, capture_output=True, cwd=tmp_path)
    report = subprocess.run([*archsim, "report", "--sweep", str(db), "--spec", "demo", "--out", str(tmp_path / "r")],
                            check=True, capture_output=True, text=True, cwd=tmp_path)
    assert "160 points: 158 feasible, 2 infeasible, 12 break a constraint" in report.stdout, report.stdout


def test_a_point_reused_under_a_new_axis_shows_its_value_there(stored, tmp_path, cli):
    """A sweep adding an axis whose values include the base's reuses the stored points at the base's value: their
    rows get that axis's value (they had none: the sweep that stored them had no such axis), their results as they
    were, and `archsim results` shows every point's value."""
    _, original, _ = stored
    db = tmp_path / "s.sqlite"
    db.write_bytes(original.read_bytes())
    before = read_records(db).set_index("key")
    clock = "arch.clock_hz"
    grown = _spec(tmp_path / "clock.yaml", axes={**SMALL["axes"], clock: [940e6, 470e6]})
    assert "8 points (4 new, 4 reused)" in cli("sweep", grown, "--db", str(db)).stdout
    after = read_records(db).set_index("key")
    assert after[clock].notna().all() and set(after[clock]) == {940e6, 470e6}
    reused = after.loc[before.index]
    assert (reused[clock] == 940e6).all()
    pd.testing.assert_frame_equal(reused[before.columns], before)
    table = tmp_path / "r.csv"
    cli("results", str(db), "--csv", str(table))
    assert pd.read_csv(table)[clock].notna().all()


def test_a_user_gpu_file_edited_between_sweeps_is_refused_and_a_preset_added_is_not(tmp_path, cli):
    """A user GPU file edited between two sweeps into one store: its points got new keys and the store took them,
    so `results` exported the old GPU's rows beside the new and `--front` could pick an old one (helper-140). A
    preset added to the list still shares the store, as a grown axis does."""
    gpu = yaml.safe_load((Path(library.__file__).parents[1] / "gpu" / "presets" / "h100-sxm5.yaml").read_text())
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({**gpu, "name": "mine", "aliases": [], "power_w": 350}))
    db = tmp_path / "g.sqlite"
    one = _spec(tmp_path / "one.yaml", gpus={"presets": [str(mine)]})
    assert "6 points (6 new, 0 reused)" in cli("sweep", one, "--db", str(db), "--local").stdout  # 4 + 2 on mine
    both = _spec(tmp_path / "both.yaml", gpus={"presets": [str(mine), "h100-sxm5"]})
    assert "8 points (2 new, 6 reused)" in cli("sweep", both, "--db", str(db), "--local").stdout
    rows = _rows(db)
    mine.write_text(yaml.safe_dump({**gpu, "name": "mine", "aliases": [], "power_w": 500}))
    message = _error(cli("sweep", both, "--db", str(db), "--local", expect=2))
    assert message.startswith(f"--db: {db}: holds the points of sweep ") and "on GPU " + str(mine) in message
    assert _rows(db) == rows


def test_the_model_version_follows_the_library_cascades(tmp_path):
    """A library cascade edited in place (a system, parallel or sparse point binds it without its content in the
    point's key) is a new model version: its stores are refused, not served the old cascade's records."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text("RATE = 1.0\n")
    cascades = tmp_path / "einsum"
    cascades.mkdir()
    (cascades / "decode.yaml").write_text("einsums: [a]\n")
    before = source_digest(tmp_path / "pkg", cascades)
    assert before != source_digest(tmp_path / "pkg")
    (cascades / "notes.txt").write_text("not a cascade")
    assert source_digest(tmp_path / "pkg", cascades) == before
    (cascades / "decode.yaml").write_text("einsums: [a, b]\n")
    assert source_digest(tmp_path / "pkg", cascades) != before
