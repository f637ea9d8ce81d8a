"""Answers that depended on the environment (audit s41): a sweep stored a point beyond a resource guard
(ARCHSIM_MAX_GPU_ROWS) as an infeasible record, keyed without the limit, so raising the limit as its reason advised
changed nothing on a rerun, and a malformed limit variable became 16 infeasible records (exit 0); report
pages were written in the locale's encoding under a `charset='utf-8'` declaration (a crash under LC_ALL=C);
sensitivity.csv wrote 64.0 for 64 without --spec; a sampling without `samples` said "got 0"; gaussian_requests took
any seed (None drew from the OS, -1 and True gave seed 1's requests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archsim.dse import points
from archsim.dse.points import expand, load_base, point_key
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import read_records
from archsim.errors import SpecError
from archsim.report.sweep import sensitivity_rows
from archsim.systems.requests import gaussian_requests

ROWS = "ARCHSIM_MAX_GPU_ROWS"
# BERT-Base is batch 64 x 12 heads: 786,432 query rows at 1024 tokens, 3,145,728 at 4096; a limit of 10^6 takes
# the first GPU point and refuses the second
GPU_SWEEP = {"name": "rows", "mapping": "fusemax", "workload": "bert-base",
             "axes": {"workload.seq_len": [1024, 4096]}, "gpus": {"presets": ["h100-sxm5"]}}
BEYOND = ("batch x heads x seqlen = 64 x 12 x 4096 = 3145728 query rows, beyond the limit of 1000000 on one "
          "modelled attention call (raise it with the environment variable ARCHSIM_MAX_GPU_ROWS)")

def _sweep(invoke, write_yaml, folder: Path, data: dict, *options: str) -> tuple[int, str, Path]:
    spec, db = write_yaml(folder / "s.yaml", data), folder / "s.sqlite"
    return (*invoke("sweep", str(spec), "--db", str(db), "--local", *options), db)


def test_a_point_beyond_the_row_limit_is_computed_afresh_once_the_limit_is_raised(tmp_path, invoke, write_yaml,
                                                                                monkeypatch):
    """The GPU point at 4096 tokens is beyond a limit of 10^6 rows: an infeasible record advising to raise it. Run
    again without the limit, it was reused ("0 new, 4 reused", still infeasible): the key held no limit. Now the
    limits set are keyed, so the rerun computes the sweep afresh (every point's key held the limit)."""
    monkeypatch.setenv(ROWS, str(10**6))
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0 and "4 points (4 new, 0 reused), 3 feasible" in out, out
    assert list(read_records(db).query("not feasible").reason) == [f"AttentionCase.seqlen: {BEYOND}"]
    monkeypatch.delenv(ROWS)
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert code == 0 and "4 points (1 new, 3 reused), 4 feasible" in out, out  # s48: the refused point alone


def test_the_limits_set_are_keyed_and_no_limit_keys_as_before(monkeypatch):
    """A point's key with no limit variable set is the key as it was (stores stay reusable); with one set, another
    key per value (a parallel point too: its one-device reference may be beyond the limit, a note)."""
    spec = sweep_from_dict({"name": "ring", "parallel": {"workload": "llama3-8b", "seq_len": 4096,
                                                         "topology": "hgx-h100"},
                            "axes": {"parallel.scheme": ["ring"], "parallel.devices": [2]}}, "ring.yaml")
    base, (point,) = load_base(spec), expand(spec)
    for name in [n for n in os.environ if n.startswith("ARCHSIM_MAX_")]:
        monkeypatch.delenv(name)
    plain = point_key(spec, base, point)
    assert plain == points._digest(points._json_text({"version": points.MODEL_VERSION,
                                                      **points._config(spec, base, point, "parallel")}, {}))
    for rows in ("1000", "2000"):  # s48: limits are not keyed (a record a limit decided holds them instead)
        monkeypatch.setenv(ROWS, rows)
        assert point_key(spec, base, point) == plain


def test_a_malformed_limit_variable_is_refused_before_any_point(tmp_path, invoke, write_yaml, monkeypatch):
    """`abc` became an infeasible record per GPU point, reason "expected a positive integer ..." without the
    variable's name, and the sweep exited 0."""
    monkeypatch.setenv(ROWS, "abc")
    code, out, db = _sweep(invoke, write_yaml, tmp_path, GPU_SWEEP)
    assert (code, out) == (2, "error: ARCHSIM_MAX_GPU_ROWS: expected a positive integer up to 1e30 (environment "
                              "variable), got 'abc'\n")
    assert not db.exists()


PAGES = """
import sys
from pathlib import Path
import pandas as pd
from archsim.commands.options import write_tables
from archsim.report.cascades import write_cascade_report
from archsim.report.point import write_index
out, text = Path(sys.argv[1]), "gpu.md \\u00a7 1.0: 5 \\u00b5s \\u2264 6"
out.mkdir()
write_index(out, text, "<p>" + text + "</p>", pd.DataFrame({"reason": [text]}), ["<p>" + text + "</p>"])
write_cascade_report([{"cascade": text}], out / "cascades", text)
write_tables(str(out / "tables"), {}, {"note.txt": text})
"""


def test_pages_and_texts_are_written_as_utf8_whatever_the_locale(tmp_path):
    """Under the C locale (no UTF-8 mode, no locale coercion) Python's default encoding is ASCII: write_index,
    the cascades page and write_tables' texts raised UnicodeEncodeError on a '§' (report --reproduction sparse,
    duplex, --library)."""
    env = {**os.environ, "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C"}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", PAGES, str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = "gpu.md \u00a7 1.0: 5 \u00b5s \u2264 6"
    for page in (out / "index.html", out / "cascades" / "index.html", out / "tables" / "note.txt"):
        assert text in page.read_text(encoding="utf-8")


def test_sensitivity_values_are_those_archsim_results_writes_with_or_without_the_spec():
    """A GPU point has no `arch.` value: NaN in the column made it float, so sensitivity.csv wrote 64.0 and
    26843545600.0 without --spec, 64 with it; a column of 1.0 and 2.5 stays as it is (results writes 1.0)."""
    whole, half = "arch.units.array2d.shape_side", "arch.memories.DRAM.bandwidth_scale"
    df = pd.DataFrame({"key": ["a", "b", "g"], "target_kind": ["architecture", "architecture", "gpu"],
                       "target": ["fusemax", "fusemax", "h100-sxm5"], "feasible": [True, True, True],
                       "constraint_ok": [True, True, True], whole: [64.0, 26843545600.0, np.nan],
                       half: [1.0, 2.5, np.nan], "latency_s": [1.0, 2.0, 3.0]})
    without = sensitivity_rows(df, ["latency_s"])
    with_spec = sensitivity_rows(df, ["latency_s"], {whole: [64, 26843545600], half: [1.0, 2.5]})
    assert without.to_csv(index=False) == with_spec.to_csv(index=False)
    assert [str(v) for v in without.value] == ["64", "26843545600", "1.0", "2.5"]


@pytest.mark.parametrize("kind", ["random", "lhs"])
def test_sampling_without_samples_says_missing(kind):
    """It said "random sampling needs a positive integer, got 0", a 0 the user never wrote."""
    with pytest.raises(SpecError) as refused:
        sweep_from_dict({"name": "s", "mapping": "fusemax", "workload": "bert-base",
                         "axes": {"workload.seq_len": [1024]}, "sampling": {"kind": kind, "seed": 3}}, "s.yaml")
    assert refused.value.where == "sampling.samples"
    assert refused.value.message == f"missing: {kind} sampling draws this many points (a positive integer)"


@pytest.mark.parametrize("seed", [None, -1, True, 1.0, "1"])
def test_gaussian_requests_refuse_a_seed_poisson_requests_refuses(seed):
    """random.Random(None) seeds from the OS (other requests each call), Random(-1) and Random(True) as Random(1)."""
    with pytest.raises(SpecError) as refused:
        gaussian_requests(4, 100, 10, 0.5, seed)
    assert refused.value.where == "seed" and "whole number >= 0" in refused.value.message
    assert gaussian_requests(4, 100, 10, 0.5, 1) == gaussian_requests(4, 100, 10, 0.5, 1)
