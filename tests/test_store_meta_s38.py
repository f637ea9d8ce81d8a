"""A store's `meta` damaged, a report's --spec of another base, an empty file (audit s38, each test failing before
its fix):

- a `meta.base` that is not JSON (or not the JSON object of JSON texts a sweep writes) made `archsim sweep` crash
  (exit 1, "bug in archsim"); a `meta.constraints` that is not a list of [metric, op, bound] made `archsim results`
  and `archsim report --sweep` crash (ValueError: not enough values to unpack). Each is now one line naming the
  store and the field, exit 2, as a damaged record already was (`archsim.dse.store`).
- `archsim report --sweep DB --spec SPEC`, SPEC's base differing from the store's (its GPU timed under another
  kernel), reported the points the two share and advised running `archsim sweep SPEC --db DB`, which is refused;
  the report now refuses with the sweep's reason, naming --spec.
- an empty file given as a store said `no such table: points`.

Expected values come from the inputs: the text written into the meta, the kernels of the two specs.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from archsim.dse.points import GPU_PRESETS_PART
from archsim.dse.spec import sweep_from_dict
from archsim.dse.sweep import read_judged, run_sweep
from archsim.errors import SpecError

# FuseMax on BERT-Base at two buffer sizes x two lengths, and an H100 at the two lengths: 6 points
SMALL = {"name": "small", "mapping": "fusemax", "workload": "bert-base",
         "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [262144, 1048576], "workload.seq_len": [1024, 4096]},
         "gpus": {"presets": ["h100-sxm5"], "kernel": "FlashAttention-2"},
         "constraints": ["area_um2 <= 4.2e8"], "objectives": ["latency_s", "energy_pj"]}


def _spec(path: Path, **changes) -> str:
    path.write_text(yaml.safe_dump({**SMALL, **changes}))
    return str(path)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, bytes]:
    """SMALL swept into a store: (its spec's path, the store's bytes)."""
    root = tmp_path_factory.mktemp("small")
    spec = _spec(root / "small.yaml")
    run_sweep(sweep_from_dict(SMALL, spec), root / "s.sqlite")
    return Path(spec), (root / "s.sqlite").read_bytes()


def _damaged(stored, tmp_path: Path, name: str, value: str | bytes) -> Path:
    """A copy of the store whose meta `name` is `value`."""
    db = tmp_path / "d.sqlite"
    db.write_bytes(stored[1])
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name)).rowcount == 1
    return db


def _contents(db: Path) -> tuple[list, list, list]:
    """The store's meta, points and positions, each table's rows in order."""
    with sqlite3.connect(db) as conn:
        return tuple(conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
                     for table in ("meta", "points", "positions"))


def _error(result) -> str:
    """The output is one line, `error: ...`: returns it without the prefix."""
    text = result.output.strip()
    assert text.count("\n") == 0 and text.startswith("error: "), text
    return text.removeprefix("error: ")


@pytest.mark.parametrize(("value", "field", "says"), [
    ("{not json", "meta.base", "sweep store: not JSON (Expecting property name"),
    ("[1, 2]", "meta.base", "sweep store: expected a JSON object of its base's parts, each a JSON text, found [1, 2]"),
    ('{"kind": 5}', "meta.base", "expected a JSON object of its base's parts, each a JSON text, found {\"kind\": 5}"),
    ('{"kind": "architecture"}', "meta.base.kind", "sweep store: not JSON (Expecting value"),
    ('{"kind": "5"}', "meta.base.kind", "sweep store: expected a sweep kind (a JSON string), found 5"),
    (json.dumps({"kind": '"architecture"', GPU_PRESETS_PART: "[1]"}), f"meta.base.{GPU_PRESETS_PART}",
     "sweep store: expected a JSON object of GPU presets, each an object of its fields, found [1]"),
])
def test_a_damaged_meta_base_is_refused_naming_the_store_and_field(stored, tmp_path, cli, value, field, says):
    db = _damaged(stored, tmp_path, "base", value)
    before = _contents(db)
    message = _error(cli("sweep", str(stored[0]), "--db", str(db), expect=2))
    assert message.startswith(f"{db}: {field}: ") and says in message, message
    assert _contents(db) == before
    with pytest.raises(SpecError) as raised:
        run_sweep(sweep_from_dict(SMALL, str(stored[0])), db)
    assert (raised.value.source, raised.value.where) == (str(db), field)


@pytest.mark.parametrize("value", ["[[1,2]]", "nope", "5", '[["latency_s", "<>", 1]]', '[["speed", "<=", 1]]',
                                   '[["latency_s", "<=", "1"]]', '[["latency_s", "<=", true]]',
                                   '[["latency_s", "<=", NaN]]'])
def test_damaged_meta_constraints_are_refused_by_results_and_report(stored, tmp_path, cli, value):
    db = _damaged(stored, tmp_path, "constraints", value)
    for args in (("results", str(db), "--csv", str(tmp_path / "x.csv")),
                 ("report", "--sweep", str(db), "--out", str(tmp_path / "r"))):
        message = _error(cli(*args, expect=2))
        assert message.startswith(f"{db}: meta.constraints: sweep store: "), message
    with pytest.raises(SpecError) as raised:
        read_judged(db)
    assert raised.value.where == "meta.constraints"


def test_a_meta_value_that_is_no_text_is_refused(stored, tmp_path, cli):
    db = _damaged(stored, tmp_path, "sweep", b"small (small.yaml)")
    message = _error(cli("results", str(db), "--csv", str(tmp_path / "x.csv"), expect=2))
    assert message == f"{db}: meta.sweep: sweep store: expected text, found a blob of 18 bytes"


def test_undamaged_meta_is_read_back(stored, tmp_path):
    db = tmp_path / "s.sqlite"
    db.write_bytes(stored[1])
    df, constraints, objectives, name = read_judged(db)
    assert len(df) == 6 and name == "small" and objectives == ("latency_s", "energy_pj")
    assert [(c.metric, c.op, c.bound) for c in constraints] == [("area_um2", "<=", 4.2e8)]


def test_a_report_whose_spec_is_of_another_base_is_refused_as_its_sweep_would_be(stored, tmp_path, cli):
    db = tmp_path / "s.sqlite"
    db.write_bytes(stored[1])
    other = _spec(tmp_path / "fa3.yaml", gpus={**SMALL["gpus"], "kernel": "FlashAttention-3"})
    swept = _error(cli("sweep", other, "--db", str(db), expect=2))
    timed = "timed under other settings (kernel FlashAttention-2, now FlashAttention-3)"
    assert timed in swept
    message = _error(cli("report", "--sweep", str(db), "--spec", other, "--out", str(tmp_path / "r"), expect=2))
    assert message.startswith(f"--spec: {other}: the store {db} holds the points of sweep small ") and timed in message
    assert not (tmp_path / "r").exists()
    trxl = _spec(tmp_path / "trxl.yaml", workload="trxl")
    message = _error(cli("report", "--sweep", str(db), "--spec", trxl, "--out", str(tmp_path / "r"), expect=2))
    assert "whose base differs from sweep small's" in message and "in workload" in message


@pytest.mark.parametrize("command", ["results", "report"])
def test_an_empty_file_holds_no_sweep_store(tmp_path, cli, command):
    db = tmp_path / "empty.sqlite"
    db.write_bytes(b"")
    args = ("results", str(db), "--csv", str(tmp_path / "x.csv")) if command == "results" else (
        "report", "--sweep", str(db), "--out", str(tmp_path / "r"))
    message = _error(cli(*args, expect=2))
    assert message == f"{db}: holds no sweep store (no tables: run `archsim sweep SPEC --db DB` first)"
