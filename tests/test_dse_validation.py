"""Bad sweep inputs are refused before any work, each with one line naming the file or option and the YAML path
(exit 2): specs (objectives, sets, axes and their values, names, constraints, sampling), the point cap, the
results store, the scheduler, output paths and objectives options; a report's spec must be its store's; an
infeasible point stays a stored row with its reason and never reaches a Pareto front; a sweep report replaces
the old one whole.

Expected values come from the spec text itself (the path that holds the bad value, the product of the axis
lengths) or from the FuseMax preset (its 16 MiB global buffer holds the tiles, 1 KiB does not).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.dse.pareto import pareto_mask
from archsim.dse.points import expand
from archsim.dse.spec import DEFAULT_MAX_POINTS, SweepSpec, load_sweep, point_count, sweep_from_dict
from archsim.dse.store import read_records
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError
from archsim.outputs import MANIFEST
from archsim.report import sweep as sweep_tables
from archsim.report import sweep_page

BASE = {"name": "bad", "mapping": "fusemax", "workload": "bert-base", "axes": {"workload.seq_len": [1024]}}
BW = "arch.memories.DRAM.bandwidth_bytes_per_s"
BUFFER = "arch.memories.GlobalBuffer.capacity_bytes"


def _write(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    return path


def _one_line_error(result, source: str, where: str = "") -> str:
    """The CLI's whole output is one line `error: SOURCE: WHERE: message`; returns the message."""
    text = result.output.strip()
    assert "\n" not in text and "Traceback" not in text, text
    prefix = f"error: {source}: {where}: " if where else f"error: {source}: "
    assert text.startswith(prefix), text
    return text.removeprefix(prefix)


@pytest.mark.parametrize(("changes", "where", "says"), [
    ({"objectives": ["latency_s"]}, "objectives", "two or three"),
    ({"objectives": ["latency_s", "energy_pj", "area_um2", "edp"]}, "objectives", "two or three"),
    ({"objectives": ["latency_s", "latency_s"]}, "objectives[1]", "twice"),
    ({"sets": {"seq_len": "abc"}}, "sets.seq_len", "a number of at least 0"),
    ({"sets": {"seqlen": 1024}}, "sets.seqlen", "not a parameter or rank"),
    ({"axes": None}, "axes", "required"),
    ({"axes": []}, "axes", "non-empty mapping"),
    ({"mapping": None}, "mapping", "required"),
    ({"axes": {"workload.seq_len": ["abc"]}}, "axes.workload.seq_len[0]", "a number of at least 0"),
    ({"axes": {"workload.seq_len": [None]}}, "axes.workload.seq_len[0]", "a number of at least 0"),
    ({"axes": {"workload.seq_len": [1024, float("inf")]}}, "axes.workload.seq_len[1]", "inf"),
    ({"axes": {"workload.seq_len": [1024, 2048, float("nan")]}}, "axes.workload.seq_len[2]", "nan"),
    ({"axes": {"workload.seq_len": [0]}}, "axes.workload.seq_len[0]", "an integer of at least 1"),
    ({"axes": {"workload.seq_len": [1024, 1e30]}}, "axes.workload.seq_len[1]", "ARCHSIM_MAX_SIZE"),
    ({"sets": {"seq_len": 1024.5}}, "sets.seq_len", "integer"),
    ({"axes": {"workload.seqlen": [1024]}}, "axes.workload.seqlen", "not a parameter or rank"),
    ({"axes": {BW: [4e11, float("nan")]}}, f"axes.{BW}[1]", "finite number"),
    ({"axes": {BW: [4e11, "1e12"]}}, f"axes.{BW}[1]", "YAML reads this as text"),
    ({"axes": {BW: [4e11, -1]}}, f"axes.{BW}[1]", "-1"),  # the architecture's own range check, on every value
    ({"axes": {"arch.units.array2d.shape": [[64, 64], [64, None]]}}, "axes.arch.units.array2d.shape[1]", "list"),
    ({"axes": {"linked.pe_dim": {"values": [64, float("nan")], "set": {"workload.M0": "pe_dim"}}}},
     "axes.linked.pe_dim.values[1]", "finite number"),
    ({"axes": {"linked.pe_dim": {"values": [64], "set": {"workload.tile": "pe_dim"}}}},
     "axes.linked.pe_dim.set.workload.tile", "not a parameter or rank"),
    ({"constraints": ["area_um2 <= 1e999"]}, "constraints[0]", "finite"),
    ({"constraints": ["area_um2 <= abc"]}, "constraints[0]", "<metric> <op> <number>"),
    ({"constraints": "area_um2 <= 4e8"}, "constraints", "list"),
    ({"mapping": "fusemax2"}, "mapping", "not a mapping in the library"),
    ({"workload": "missing/bert.yaml"}, "workload", "no such file"),
    ({"arch": "tpu"}, "arch", "not an architecture in the library"),
    ({"name": "../outside"}, "name", "store file"),
    ({"sampling": {"kind": "random", "samples": 4, "seed": -1}}, "sampling.seed", "non-negative"),
    ({"gpus": {"presets": ["h100-sxm5"], "kernel": ["FlashAttention-2"]}}, "gpus.kernel", "no GPU model"),
    # GPU points time attention: not an output projection's sweep, nor MLA timed as dense attention
    ({"mapping": "linear-out-fusemax", "gpus": {"presets": ["h100-sxm5"]}}, "gpus", "not an attention"),
    ({"mapping": "fusemax-gqa", "workload": "deepseek-v3-mla", "gpus": {"presets": ["h100-sxm5"], "causal": True}},
     "gpus", "an MLA workload (latent KV) (kv_lora_rank)"),
    ({"cascade": "attention-sliding-window", "gpus": {"presets": ["h100-sxm5"], "causal": True}}, "gpus",
     "a sliding-window workload (window)"),
    # a causal cascade's GPU points were non-causal unless the sweep said otherwise: now it must say
    ({"mapping": "fusemax-gqa", "workload": "llama3-8b", "gpus": {"presets": ["h100-sxm5"]}}, "gpus.causal",
     "cascade attention-1pass-causal-gqa is masked"),
    # GPU blocks none of whose points could run were a sweep of infeasible GPU rows, exit 0 (helper-134's audit)
    ({"gpus": {"presets": ["h100-sxm5"], "precision": "fp8"}}, "gpus.precision",
     "FlashAttention-2 has no fp8 path modelled"),
    ({"gpus": {"presets": ["h100-sxm5"], "kernel": "Triton tutorial fused attention", "precision": "fp8"}},
     "gpus.precision", "fp8 times 1-byte words, but workload bert-base's are 2 bytes"),
])
def test_bad_sweep_spec_is_one_line_naming_file_and_path(tmp_path, cli, changes, where, says):
    spec = _write(tmp_path / "bad.yaml", **changes)
    result = cli("sweep", str(spec), "--db", str(tmp_path / "bad.sqlite"), "--local", expect=2)
    assert says in _one_line_error(result, str(spec), where)
    assert not (tmp_path / "bad.sqlite").exists()  # refused before the store is opened


def test_point_count_is_the_number_expand_draws():
    # 2 x 3 grid = 6 architecture points, plus 2 GPU presets x 3 lengths = 6: 12, as expand draws them.
    grid = sweep_from_dict({**BASE, "axes": {BW: [4e11, 8e11], "workload.seq_len": [1024, 2048, 4096]},
                            "gpus": {"presets": ["a100-80gb-sxm4", "h100-sxm5"]}})
    assert point_count(grid) == len(expand(grid)) == 12
    lhs = sweep_from_dict({**BASE, "axes": {BW: [4e11, 8e11]}, "sampling": {"kind": "lhs", "samples": 5}})
    assert point_count(lhs) == len(expand(lhs)) == 5


def test_a_huge_grid_or_sample_is_refused_at_once_naming_the_limit(tmp_path, cli):
    # Four axes of 1,000 values: 1e12 points, refused from the product of the lengths, before any is drawn.
    values = list(range(1, 1001))
    grid = _write(tmp_path / "grid.yaml", axes={"workload.seq_len": values, "workload.batch": values,
                                                "workload.heads": values, "workload.head_dim": values})
    start = time.perf_counter()
    message = _one_line_error(cli("sweep", str(grid), "--local", expect=2), str(grid), "axes")
    assert time.perf_counter() - start < 30  # drawing the points would take hours; a loaded CI machine, seconds
    assert message.startswith("1,000,000,000,000 points exceed the limit of 100,000")
    assert "--max-points" in message and "ARCHSIM_MAX_SWEEP_POINTS" in message
    samples = _write(tmp_path / "lhs.yaml", sampling={"kind": "lhs", "samples": 1_000_000_000})
    message = _one_line_error(cli("sweep", str(samples), "--local", expect=2), str(samples), "sampling.samples")
    assert message.startswith(f"1,000,000,000 points exceed the limit of {DEFAULT_MAX_POINTS:,}")


def test_the_point_limit_is_raised_or_lowered_by_option_or_environment(tmp_path, cli, monkeypatch):
    spec = _write(tmp_path / "four.yaml", axes={BW: [4e11, 8e11], "workload.seq_len": [256, 512]})  # 2 x 2 points
    db = tmp_path / "four.sqlite"
    refused = cli("sweep", str(spec), "--db", str(db), "--local", "--max-points", "3", expect=2)
    assert _one_line_error(refused, str(spec), "axes").startswith("4 points exceed the limit of 3")
    assert "4 points (4 new, 0 reused)" in cli("sweep", str(spec), "--db", str(db), "--local",
                                                "--max-points", "4").output
    monkeypatch.setenv("ARCHSIM_MAX_SWEEP_POINTS", "3")
    _one_line_error(cli("sweep", str(spec), "--db", str(db), "--local", expect=2), str(spec), "axes")
    monkeypatch.setenv("ARCHSIM_MAX_SWEEP_POINTS", "lots")
    _one_line_error(cli("sweep", str(spec), "--db", str(db), "--local", expect=2), "ARCHSIM_MAX_SWEEP_POINTS")


def _foreign_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (name TEXT)")
    return path


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def test_a_file_that_is_not_a_store_is_refused_naming_it_and_left_as_it_was(tmp_path, cli):
    spec = _write(tmp_path / "ok.yaml")
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database\n")
    for args in (("sweep", str(spec), "--db", str(text), "--local"),
                 ("results", str(text), "--csv", str(tmp_path / "out.csv")),
                 ("report", "--sweep", str(text), "--out", str(tmp_path / "report"))):
        assert "file is not a database" in _one_line_error(cli(*args, expect=2), str(text))
    assert text.read_text() == "not a database\n"
    other = _foreign_sqlite(tmp_path / "photos.sqlite")
    for args in (("sweep", str(spec), "--db", str(other), "--local"),
                 ("results", str(other), "--csv", str(tmp_path / "out.csv"))):
        assert "not a sweep store" in _one_line_error(cli(*args, expect=2), str(other))
    assert _tables(other) == ["photos"]  # no points table added to someone else's database
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "report").exists()


def test_a_store_path_that_cannot_be_created_is_refused_before_work(tmp_path, cli):
    spec = _write(tmp_path / "ok.yaml")
    (tmp_path / "plain").write_text("")
    under_a_file = tmp_path / "plain" / "s.sqlite"
    message = _one_line_error(cli("sweep", str(spec), "--db", str(under_a_file), "--local", expect=2), "--db",
                              str(under_a_file))
    assert "is not a folder" in message
    nested = tmp_path / "new" / "folder" / "s.sqlite"  # missing folders in a writable one are created
    assert "1 points (1 new" in cli("sweep", str(spec), "--db", str(nested), "--local").output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _not_a_scheduler() -> tuple[str, socket.socket]:
    """A TCP server on 127.0.0.1 that answers every connection with HTTP text and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 4)

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}", server


def test_a_bad_or_unreachable_scheduler_is_one_line_naming_the_option(tmp_path, cli):
    pytest.importorskip("distributed")
    spec = _write(tmp_path / "ok.yaml")
    address, server = _not_a_scheduler()
    try:
        for scheduler, says in (("garbage", "expected tcp://HOST:PORT"), ("tcp://127.0.0.1:99999", "expected"),
                                (f"tcp://127.0.0.1:{_closed_port()}", "cannot connect within 3 s"),
                                (address, "no Dask scheduler answers")):
            start = time.perf_counter()
            result = cli("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--scheduler", scheduler, expect=2)
            assert time.perf_counter() - start < 20, scheduler  # Dask's own connect timeout is 30 s
            assert says in _one_line_error(result, "--scheduler"), scheduler
    finally:
        server.close()
    assert not (tmp_path / "s.sqlite").exists()


def test_objectives_options_take_two_or_three_distinct_known_names(tmp_path, cli):
    spec = _write(tmp_path / "ok.yaml")
    db = tmp_path / "s.sqlite"
    cli("sweep", str(spec), "--db", str(db), "--local")
    for args, says in (
            (("sweep", str(spec), "--db", str(db), "--local", "--objectives", "latency_s,latency_s"),
             "--objectives: latency_s,latency_s: expected each value once, got latency_s twice"),
            (("results", str(db), "--csv", str(tmp_path / "x.csv"), "--front", "latency_s"),
             "--front: latency_s: expected two or three metrics, got 1"),
            (("results", str(db), "--csv", str(tmp_path / "x.csv"), "--front", "latency_s,energy_pj,throughput"),
             "--front: latency_s,energy_pj,throughput: unknown metric throughput; expected one of latency_s,"),
            (("report", "--sweep", str(db), "--objectives", "energy_pj,energy_pj", "--out", str(tmp_path / "r")),
             "--objectives: energy_pj,energy_pj: expected each value once")):
        text = cli(*args, expect=2).output.strip()
        assert "\n" not in text and text.startswith(f"error: {says}"), (args, text)


def test_results_output_path_is_checked_before_the_store_is_read(tmp_path, cli):
    (tmp_path / "plain").write_text("")
    out = tmp_path / "plain" / "out.csv"
    # the store does not exist either: the output path is what is named, since it is checked first
    result = cli("results", str(_foreign_sqlite(tmp_path / "photos.sqlite")), "--csv", str(out), expect=2)
    assert "is not a folder" in _one_line_error(result, "--csv", str(out))


def _store(root: Path, axis: str, values: list) -> tuple[dict, SweepSpec, Path]:
    """The sweep of `axis` x 1K, 4K tokens, written to root/tiny.yaml and run into root/tiny.sqlite."""
    data = {**BASE, "axes": {axis: values, "workload.seq_len": [1024, 4096]}, "objectives": ["latency_s", "area_um2"]}
    spec = load_sweep(_write(root / "tiny.yaml", **data))
    db = root / "tiny.sqlite"
    run_sweep(spec, db)
    return data, spec, db


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """A store of FuseMax over a 1 KiB and a 16 MiB global buffer at 1K and 4K tokens: the 1 KiB points cannot
    hold a tile (infeasible: a record with its reason and no metrics)."""
    return _store(tmp_path_factory.mktemp("store"), BUFFER, [1024, 2**24])


@pytest.mark.parametrize(("axis", "small", "large", "reason"), [
    (BUFFER, 1024, 2**24, "GlobalBuffer holds"),
    # FuseMax's mapping spreads P and M0 = 256 over the 2-D array: a 64 x 64 array cannot take that fan-out.
    ("arch.units.array2d.shape", [64, 64], [256, 256], "spreads 256 over unit array2d, which has 64 PEs"),
])
def test_infeasible_points_stay_rows_with_their_reason_and_never_reach_a_front(tmp_path, cli, axis, small, large,
                                                                              reason):
    _, spec, db = _store(tmp_path, axis, [small, large])
    df = read_records(db)
    values = df[axis].map(json.dumps)
    infeasible, feasible = df[values == json.dumps(small)], df[values == json.dumps(large)]
    assert len(df) == 4 and len(infeasible) == 2 and not infeasible.feasible.any() and feasible.feasible.all()
    assert infeasible.reason.str.contains(reason).all()
    # A design that does not fit has no numbers (the model would give the same latency and a smaller area, which
    # would dominate). Over both lengths the front is the feasible point at 1K tokens (4K takes longer, at the same
    # area); a sweep's fronts are per length (s53), so each length's front is its feasible point.
    assert infeasible[["latency_s", "energy_pj", "area_um2", "edp"]].isna().all().all()
    front = df[pareto_mask(df, spec.objectives)]
    assert list(zip(front[axis].map(json.dumps), front["workload.seq_len"], strict=True)) == [(json.dumps(large), 1024)]
    counts = sweep_tables.counts(df, spec.objectives)
    assert counts == {"points": 4, "feasible": 2, "infeasible": 2, "constraint_violated": 0, "on_front": 2}
    summary = cli("sweep", spec.source, "--db", str(db), "--local").output
    assert "4 points (0 new, 4 reused), 2 feasible" in summary
    assert "Pareto fronts over (latency_s, area_um2), one per workload.seq_len: 2 points" in summary
    cli("results", str(db), "--csv", str(tmp_path / "front.csv"), "--front", "latency_s,area_um2")
    exported = pd.read_csv(tmp_path / "front.csv")
    assert len(exported) == 2 and exported.feasible.all() and exported["workload.seq_len"].tolist() == [1024, 4096]
    assert (exported[axis].map(lambda v: json.dumps(json.loads(v) if isinstance(v, str) else v))
            == json.dumps(large)).all()


def test_a_report_spec_must_be_the_stores(tiny_store):
    data, spec, db = tiny_store
    df = read_records(db)
    assert len(sweep_tables.spec_records(spec, df, str(db))) == len(df)  # its own spec: every record
    other_axes = sweep_from_dict({**data, "axes": {BW: [4e11], "workload.seq_len": [1024]}}, "other.yaml")
    with pytest.raises(SpecError) as err:
        sweep_tables.spec_records(other_axes, df, str(db))
    assert err.value.source == str(db) and "other.yaml" in err.value.message and BW in err.value.message
    # Same axes, another design (the flat mapping): no stored key is one of its points.
    other_mapping = sweep_from_dict({**data, "mapping": "flat"}, "flat.yaml")
    with pytest.raises(SpecError) as err:
        sweep_tables.spec_records(other_mapping, df, str(db))
    assert "no stored point" in err.value.message


def test_report_sweep_refuses_a_spec_that_is_not_the_stores(tiny_store, tmp_path, cli):
    data, _, db = tiny_store
    other = tmp_path / "flat.yaml"
    other.write_text(yaml.safe_dump({**data, "mapping": "flat"}))
    result = cli("report", "--sweep", str(db), "--spec", str(other), "--out", str(tmp_path / "r"), expect=2)
    assert result.output.startswith(f"error: --spec: {other}: the store {db} holds the points of sweep ")
    assert "whose base differs" in result.output  # the reason `archsim sweep` gives (s38; was 'no stored point')
    assert result.output.count("\n") == 1 and not (tmp_path / "r").exists()


def test_a_report_of_a_smaller_spec_leaves_the_other_stored_points_out(tiny_store, tmp_path, cli):
    """A store of 4 points (2 buffers x 2 lengths); a spec of its 1K points reports those 2 only."""
    data, _, db = tiny_store
    smaller = tmp_path / "smaller.yaml"
    smaller.write_text(yaml.safe_dump({**data, "axes": {**data["axes"], "workload.seq_len": [1024]}}))
    result = CliRunner().invoke(main, ["report", "--sweep", str(db), "--spec", str(smaller),
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2 points:") and "2 stored points are not points of" in result.stderr


def test_a_sweep_report_replaces_the_old_one_whole_and_keeps_the_store(tiny_store, tmp_path, monkeypatch):
    _, spec, db = tiny_store
    df = read_records(db)
    out = tmp_path / "report"
    out.mkdir()
    (out / "tiny.sqlite").write_bytes(db.read_bytes())  # a store kept beside its report
    sweep_page.write_sweep_report(df, out, "old", spec.objectives, spec.axes)
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "index.html" in old and MANIFEST in old

    def broken(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(sweep_page.sweep_figures, "heatmap_figure", broken)  # the last figure written
    with pytest.raises(RuntimeError, match=r"^killed mid-write$"):
        sweep_page.write_sweep_report(df, out, "new", spec.objectives, spec.axes)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # the old report, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left behind


def test_relative_paths_in_a_sweep_are_taken_from_its_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    mapping = tmp_path / "sub" / "m.yaml"
    mapping.write_text(Path(__file__).resolve().parents[1].joinpath("mappings", "fusemax.yaml").read_text())
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump({"name": "rel", "mapping": "sub/m.yaml", "workload": "bert-base",
                                         "axes": {"workload.seq_len": [1024]}}))
    monkeypatch.chdir("/")  # not the sweep's folder
    spec = load_sweep(spec_file)
    assert spec.mapping == str(mapping) and spec.workload == "bert-base"  # a library name stays a name


def test_two_sweeps_of_one_base_share_a_store_and_each_reports(tmp_path, cli):
    """A store written by two sweeps of the same base (the README: "a sweep of the same base with other axis values
    shares it"): each spec's report reads its own points with its own axis values (both were refused: the store's
    axis columns were the union of the two). A point both sweeps reach (the base's buffer at 1K tokens) is one row."""
    db = tmp_path / "shared.sqlite"
    bw = _write(tmp_path / "bw.yaml", name="bw", axes={BW: [1e11, 4e11], "workload.seq_len": [1024, 2048]},
                objectives=["latency_s", "energy_pj"])
    buf = _write(tmp_path / "buf.yaml", name="buf", axes={BUFFER: [2**20, 2**25], "workload.seq_len": [1024]},
                 objectives=["latency_s", "energy_pj"])
    for spec in (bw, buf):
        cli("sweep", str(spec), "--db", str(db), "--local")
    df = read_records(db)
    for spec, axes, points in ((bw, {BW, "workload.seq_len"}, 4), (buf, {BUFFER, "workload.seq_len"}, 2)):
        sweep = load_sweep(spec)
        mine = sweep_tables.spec_records(sweep, df, str(db))
        assert len(mine) == points and set(sweep_tables.axis_columns(mine)) == axes
        stored = {tuple(mine[a].iloc[i] for a in sorted(axes)) for i in range(len(mine))}
        assert stored == {tuple(p[a] for a in sorted(axes)) for p in expand(sweep)}
        out = tmp_path / f"report-{sweep.name}"
        cli("report", "--sweep", str(db), "--spec", str(spec), "--out", str(out))
        assert (out / "index.html").exists()
    # the buffer axis is written as given, not as 1048576.0; the bw sweep's points, which have no buffer axis,
    # carry the base architecture's 16 MiB (s52: they had been blank, read as 'does not apply')
    cli("results", str(db), "--csv", str(tmp_path / "shared.csv"))
    buffers = pd.read_csv(tmp_path / "shared.csv", dtype=str)[BUFFER].dropna()
    assert set(buffers) == {str(2**20), str(2**24), str(2**25)}


def test_an_export_has_the_same_columns_in_the_same_order_whichever_point_comes_first(tmp_path, cli):
    """A sweep whose first point is infeasible (1000 tokens: no whole 256-key tile) exports its columns in the order
    of one whose first point is feasible (constraint_ok came before the utilization columns)."""
    orders = []
    for lengths in ([1000, 4096], [4096, 1000]):
        spec = _write(tmp_path / "s.yaml", name="order", axes={"workload.seq_len": lengths})
        db, out = tmp_path / f"{lengths[0]}.sqlite", tmp_path / f"{lengths[0]}.csv"
        cli("sweep", str(spec), "--db", str(db), "--local")
        cli("results", str(db), "--csv", str(out))
        orders.append(list(pd.read_csv(out).columns))
    assert orders[0] == orders[1] and orders[0][-1] == "constraint_ok"


def test_a_gpu_block_no_preset_has_the_rate_for_is_refused(tmp_path, cli):
    """A user GPU with an fp16 tensor rate only, asked for bf16: every GPU point infeasible, the sweep exit 0; now
    refused at load naming gpus.precision. A bad field of a user GPU file names that file and field."""
    gpu = yaml.safe_load((Path(library.__file__).parents[1] / "gpu" / "presets" / "l40s.yaml").read_text())
    gpu["tensor_flops_per_s"] = {"fp16": gpu["tensor_flops_per_s"]["fp16"]}
    (tmp_path / "fp16-only.yaml").write_text(yaml.safe_dump(gpu))
    spec = _write(tmp_path / "bf16.yaml", gpus={"presets": [str(tmp_path / "fp16-only.yaml")], "precision": "bf16"})
    message = _one_line_error(cli("sweep", str(spec), "--local", expect=2), str(spec), "gpus.precision")
    assert message.startswith("no GPU of gpus.presets has a tensor-core rate for bf16")
    gpu["dram_bytes_per_s"] = -1
    (tmp_path / "negative.yaml").write_text(yaml.safe_dump(gpu))
    spec = _write(tmp_path / "bad-gpu.yaml", gpus={"presets": [str(tmp_path / "negative.yaml")]})
    _one_line_error(cli("sweep", str(spec), "--local", expect=2), str(tmp_path / "negative.yaml"), "dram_bytes_per_s")


def test_gpu_points_of_another_word_width_are_infeasible_and_keyed_apart(tmp_path, cli):
    """An axis of word_bytes 1 and 2: the GPU points at 1 byte were keyed as the 2-byte ones (12 drawn, 8 distinct)
    and timed at fp16; now each is its own point, the 1-byte one infeasible saying why."""
    spec = _write(tmp_path / "widths.yaml", axes={"workload.word_bytes": [1, 2]}, gpus={"presets": ["h100-sxm5"]})
    db = tmp_path / "w.sqlite"
    cli("sweep", str(spec), "--db", str(db), "--local")
    gpu = read_records(db).query("target == 'h100-sxm5'").set_index("workload.word_bytes")
    assert len(gpu) == 2 and gpu.loc[2, "feasible"] and not gpu.loc[1, "feasible"]
    assert gpu.loc[1, "reason"] == "the workload's 1-byte words, but gpus.precision fp16 times 2-byte words"
