"""An input file that only an axis names is in its store's base, by name (s39, each test failing before its fix):
a CSV trace on `serving.lengths`, a topology or workload on `parallel.topology`/`parallel.workload`, a workload
or pattern map on `sparse.workload`/`sparse.patterns`. One of them edited between two sweeps into one store had
given its points new keys (they hold its content) and left the old rows beside the new, two rows per point with
the same axis value and nothing telling them apart; the store is now refused naming the axis and the file, as an
edited GPU preset is (`points.GPU_PRESETS_PART`). A name added to the axis later shares the store.

Expected counts come from the specs: a grid's point count is the product of its axes' lengths (each file here
differs from the others, so each is its own point), and a refused sweep leaves the store's rows as they were.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from test_kill_sweep import stored_rows
from test_store_base_s38 import TRACE, _run

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems.topology import load_topology
from archsim.workload_patterns import PACKAGE as PATTERNS


def _copies(original: Path, folder: Path, old: str, edits: tuple[str, str, str]) -> Path:
    """`original` copied to one.yaml, two.yaml and three.yaml, `old` replaced by each of `edits` (three different
    files); returns two.yaml."""
    text = original.read_text()
    assert old in text
    for name, edit in zip(("one", "two", "three"), edits, strict=True):
        (folder / f"{name}.yaml").write_text(text.replace(old, edit))
    return folder / "two.yaml"


def _edited_is_refused(data: dict, axis: str, edited: Path, old: str, new: str, tmp_path: Path) -> None:
    """Sweep `data` (its `axis` over one.yaml and two.yaml) into a store: 2 points; `edited` (two.yaml) with `old`
    replaced by `new` is refused, naming the axis and the file, the 2 rows kept; put back, both points reused; the
    axis grown by three.yaml shares the store (1 new point), and the axis at one.yaml alone reuses its point."""
    db, source = tmp_path / "d.sqlite", tmp_path / "s.yaml"
    assert _run(data, db, source).new == 2
    text = edited.read_text()
    edited.write_text(text.replace(old, new))
    refused = (rf"^--db: .*holds the points of sweep {data['name']} .*on .* {re.escape(edited.name)} "
               rf"\(axes\.{re.escape(axis)}\) as its file then read, and sweep {data['name']}'s .* reads another ")
    with pytest.raises(SpecError, match=refused):
        _run(data, db, source)
    assert stored_rows(db) == 2
    edited.write_text(text)
    run = _run(data, db, source)
    assert (run.new, run.reused) == (0, 2)
    grown = {**data, "axes": {axis: ["one.yaml", "two.yaml", "three.yaml"]}}
    assert _run(grown, db, source).new == 1
    run = _run({**data, "axes": {axis: ["one.yaml"]}}, db, source)
    assert (run.new, run.reused) == (0, 1)


def test_an_edited_trace_on_the_lengths_axis_refuses_the_store(tmp_path):
    """NeuPIMs serving two CSV traces (an axis): the second's last request made ten times longer is another
    trace; its store refused it only where the serving block named the trace (s38)."""
    (tmp_path / "one.csv").write_text(TRACE)
    (tmp_path / "two.csv").write_text(TRACE.replace("0.002,48,6", "0.002,96,12"))
    (tmp_path / "three.csv").write_text(TRACE.replace("0.001,32,4", "0.001,16,2"))
    data = {"name": "trs", "system": "neupims", "workload": "gpt3-7b", "serving": {"max_batch": 32},
            "axes": {"serving.lengths": ["one.csv", "two.csv"]},
            "objectives": ["throughput_tok_s", "energy_per_token_j"]}
    db, source, axis = tmp_path / "d.sqlite", tmp_path / "s.yaml", "serving.lengths"
    assert _run(data, db, source).new == 2
    (tmp_path / "two.csv").write_text(TRACE.replace("0.002,48,6", "0.002,480,60"))
    with pytest.raises(SpecError, match=r"^--db: .* on trace two\.csv \(axes\.serving\.lengths\) as its file then "
                                        r"read, and sweep trs's .* reads another trace there: give this sweep"):
        _run(data, db, source)
    assert stored_rows(db) == 2
    (tmp_path / "two.csv").write_text(TRACE.replace("0.002,48,6", "0.002,96,12"))
    assert _run(data, db, source).reused == 2
    assert _run({**data, "axes": {axis: ["one.csv", "two.csv", "three.csv"]}}, db, source).new == 1


def test_an_edited_topology_on_an_axis_refuses_the_store_of_a_parallel_sweep(tmp_path):
    """Ring attention over 2 devices of topologies of 8, 4 and 2 H100s; the 4 made 3."""
    two = _copies(Path(load_topology("hgx-h100-8").source), tmp_path, "devices: 8",
                  ("devices: 8", "devices: 4", "devices: 2"))
    data = {"name": "ppt", "parallel": {"workload": "llama3-8b", "seq_len": 65536, "scheme": "ring", "devices": 2},
            "axes": {"parallel.topology": ["one.yaml", "two.yaml"]}}
    _edited_is_refused(data, "parallel.topology", two, "devices: 4", "devices: 3", tmp_path)


def test_an_edited_workload_on_an_axis_refuses_the_store_of_a_parallel_sweep(tmp_path):
    """Ring attention over 2 H100s of Llama-3-8B with 8, 4 and 2 KV heads; the 4 made 16."""
    two = _copies(library.find("workloads", "llama3-8b"), tmp_path, "kv_heads: 8 ",
                  ("kv_heads: 8 ", "kv_heads: 4 ", "kv_heads: 2 "))
    data = {"name": "ppw", "parallel": {"topology": "hgx-h100-8", "seq_len": 65536, "scheme": "ring", "devices": 2},
            "axes": {"parallel.workload": ["one.yaml", "two.yaml"]}}
    _edited_is_refused(data, "parallel.workload", two, "kv_heads: 4 ", "kv_heads: 16 ", tmp_path)


def test_an_edited_workload_on_an_axis_refuses_the_store_of_a_sparse_sweep(tmp_path):
    """Quest at a 512-token budget on an H100 over Llama-2-7B of 32, 16 and 8 layers; the 16 made 4."""
    two = _copies(library.find("workloads", "llama2-7b"), tmp_path, "layers: 32 ",
                  ("layers: 32 ", "layers: 16 ", "layers: 8 "))
    data = {"name": "spw", "sparse": {"method": "quest", "gpu": "h100-sxm5", "context": 8192, "budget": 512},
            "axes": {"sparse.workload": ["one.yaml", "two.yaml"]}}
    _edited_is_refused(data, "sparse.workload", two, "layers: 16 ", "layers: 4 ", tmp_path)


def test_an_edited_pattern_map_on_an_axis_refuses_the_store_of_a_sparse_sweep(tmp_path):
    """DuoAttention on Llama-2-7B at 4K tokens with streaming heads of 256, 512 and 128 recent tokens; the 512
    made 1024."""
    original = library.find("pattern maps", "llama2-7b-duo-25", PATTERNS)
    two = _copies(original, tmp_path, "recent: 256", ("recent: 256", "recent: 512", "recent: 128"))
    data = {"name": "spp", "sparse": {"method": "duoattention", "gpu": "h100-sxm5", "workload": "llama2-7b",
                                      "context": 4096},
            "axes": {"sparse.patterns": ["one.yaml", "two.yaml"]}}
    _edited_is_refused(data, "sparse.patterns", two, "recent: 512", "recent: 1024", tmp_path)


def test_the_cli_refuses_an_edited_axis_file_with_exit_2_and_one_line(cli, tmp_path):
    """`archsim sweep` into the store of the topology as it was: exit 2, one line naming --db, the store, the axis
    and the file; no row added."""
    one = tmp_path / "one.yaml"
    shutil.copyfile(load_topology("hgx-h100-8").source, one)
    data = {"name": "ppt", "parallel": {"workload": "llama3-8b", "seq_len": 65536, "scheme": "ring", "devices": 2},
            "axes": {"parallel.topology": ["one.yaml"]}}
    source, db = tmp_path / "s.yaml", tmp_path / "d.sqlite"
    source.write_text(yaml.safe_dump(data))
    cli("sweep", str(source), "--db", str(db))
    one.write_text(one.read_text().replace("devices: 8", "devices: 4"))
    text = cli("sweep", str(source), "--db", str(db), expect=2).output.strip()
    assert "\n" not in text and "Traceback" not in text, text
    assert text.startswith(f"error: --db: {db}: holds the points of sweep ppt ({source}) on topology one.yaml "
                           f"(axes.parallel.topology) as its file then read, and sweep ppt's ({source}) reads "
                           "another topology there: give this sweep a store of its own"), text
    assert stored_rows(db) == 1


def test_an_edited_gpu_file_on_a_system_axis_refuses_the_store(tmp_path):
    """vLLM on 4 GPUs serving one trace, the GPUs an axis over the H100 preset and a user file of it at a 1.5 GHz
    clock; the file's clock lowered to 1.2 GHz is another GPU, where its store had added its point again (the file
    named by its full path; a relative one is read beside the sweep file: test_sweep_system_axis_paths_s39)."""
    (tmp_path / "t.csv").write_text(TRACE)
    gpu = tmp_path / "g.yaml"
    data = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text())
    gpu.write_text(yaml.safe_dump({**data, "clock_hz": 1.5e9}))
    sweep = {"name": "sysg", "system": "vllm-h100", "workload": "llama3-8b",
             "serving": {"max_batch": 32, "lengths": "t.csv"},
             "axes": {"system.devices.gpu.preset": ["h100-sxm5", str(gpu)]},
             "objectives": ["throughput_tok_s", "energy_per_token_j"]}
    db, source = tmp_path / "d.sqlite", tmp_path / "s.yaml"
    assert _run(sweep, db, source).new == 2
    gpu.write_text(yaml.safe_dump({**data, "clock_hz": 1.2e9}))
    with pytest.raises(SpecError, match=rf"^--db: .* on file {re.escape(str(gpu))} \(axes\.system\.devices\.gpu\."
                                        r"preset\) as its file then read, and sweep sysg's .* reads another file"):
        _run(sweep, db, source)
    assert stored_rows(db) == 2
    run = _run({**sweep, "axes": {"system.devices.gpu.preset": ["h100-sxm5"]}}, db, source)
    assert (run.new, run.reused) == (0, 1)


def test_a_store_whose_axis_files_are_no_object_is_refused_naming_the_part(cli, tmp_path):
    """A damaged store (its trace axis's part a list, not the traces by name) is refused naming the part, as a
    damaged GPU presets part is, not read as if it were one."""
    (tmp_path / "one.csv").write_text(TRACE)
    data = {"name": "trs", "system": "neupims", "workload": "gpt3-7b", "serving": {"max_batch": 32},
            "axes": {"serving.lengths": ["one.csv"]}, "objectives": ["throughput_tok_s", "energy_per_token_j"]}
    db, source = tmp_path / "d.sqlite", tmp_path / "s.yaml"
    _run(data, db, source)
    with sqlite3.connect(db) as conn:
        base = json.loads(conn.execute("SELECT value FROM meta WHERE name = 'base'").fetchone()[0])
        base["axes.serving.lengths"] = "[]"
        conn.execute("UPDATE meta SET value = ? WHERE name = 'base'", (json.dumps(base),))
    text = cli("sweep", str(source), "--db", str(db), expect=2).output.strip()
    assert "\n" not in text and "meta.base.axes.serving.lengths" in text and "a JSON object of the trace" in text, text
