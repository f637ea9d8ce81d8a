"""Traces and serving settings through sweeps and their reports (auditor's run, s46): a point several values of
one axis are (one trace in three formats) is filed under the first value by `results` and the report alike, the
page saying which values were the same point; trace suffixes in any case; the serving block's settings on the
page; Mooncake's fractional milliseconds read exactly; true and 1 two values of an axis; the trace formats named
in `simulate --help` and in an empty trace's message."""

from __future__ import annotations

import csv
import datetime
import html
import random
from fractions import Fraction
from pathlib import Path

import pytest

from archsim.dse.serving_spec import is_trace, request_lengths
from archsim.dse.system_points import requests_digest
from archsim.errors import SpecError, first_repeat
from archsim.report.sweep import SameValue, reported_axes, same_values, same_values_text
from archsim.systems.requests import Request, read_trace

# The same three requests in archsim's CSV, Azure's CSV and Mooncake's JSON Lines: arrivals 0, 7.056 s and 0.5 s
# from the earliest (whole milliseconds, so the three were one point before s46 too; fractions: the microsecond test)
ARCHSIM = "arrival_s,prompt_tokens,output_tokens\n0,40,4\n7.056,30,3\n0.5,20,2\n"
AZURE = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.0000000,40,4\n"
         "2023-11-16 18:15:53.0560000,30,3\n2023-11-16 18:15:46.5000000,20,2\n")
MOONCAKE = ('{"timestamp": 1700000000000, "input_length": 40, "output_length": 4}\n'
            '{"timestamp": 1700000007056, "input_length": 30, "output_length": 3}\n'
            '{"timestamp": 1700000000500, "input_length": 20, "output_length": 2}\n')
TRACES = {"tr.csv": ARCHSIM, "tr_azure.csv": AZURE, "tr.jsonl": MOONCAKE}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _sweep(tmp_path: Path, write_yaml, serving: dict, axes: dict) -> Path:
    tmp_path.mkdir(exist_ok=True)
    for name, text in TRACES.items():
        _write(tmp_path, name, text)
    return write_yaml(tmp_path / "s.yaml", {"name": "s46", "system": "neupims", "workload": "gpt3-7b",
                                            "serving": serving, "axes": axes, "sampling": {"kind": "grid"},
                                            "objectives": ["throughput_tok_s", "tbt_p99_s"]})


def _page(folder: Path) -> str:
    """A report's index.html as text (its entities unescaped)."""
    return html.unescape((folder / "index.html").read_text())


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# 1. Several values of one axis that are one point


@pytest.mark.parametrize("lengths", [["tr.csv", "tr_azure.csv", "tr.jsonl"], ["tr.jsonl", "tr.csv", "tr_azure.csv"]])
def test_results_and_report_file_a_point_of_several_values_under_the_first(tmp_path, cli, write_yaml, lengths):
    """The three traces are the same requests, so each (lengths, batching) point is one key per batching: the sweep
    evaluates it once, as drawn first, with lengths = the first value. `results` and the report both show that
    value; the page says the others were the same points, and no value has a row or a column of 0 points."""
    spec = _sweep(tmp_path, write_yaml, {"max_batch": 8},
                  {"serving.lengths": lengths, "serving.batching": ["mixed", "prefill-first"]})
    db, out = tmp_path / "s.sqlite", tmp_path / "rep"
    cli("sweep", str(spec), "--db", str(db), "--local")
    cli("results", str(db), "--csv", str(tmp_path / "r.csv"))
    cli("report", "--sweep", str(db), "--spec", str(spec), "--out", str(out))
    first, others = lengths[0], lengths[1:]
    results = _rows(tmp_path / "r.csv")
    assert len(results) == 2 and {r["serving.lengths"] for r in results} == {first}
    pareto = _rows(out / "pareto.csv")
    assert {r["key"]: r["serving.lengths"] for r in pareto} == {r["key"]: first for r in results}
    sensitivity = [r for r in _rows(out / "sensitivity.csv") if r["axis"] == "serving.lengths"]
    assert {r["value"] for r in sensitivity} == {first} and {r["points"] for r in sensitivity} == {"2"}
    heatmap = _rows(out / "heatmap_lengths_batching.csv")
    assert {r["lengths"] for r in heatmap} == {first} and {r["points"] for r in heatmap} == {"1"}
    page = _page(out)
    for other in others:
        assert f"serving.lengths {other} as {first}" in page, page


def test_a_value_only_some_of_whose_points_are_another_values_keeps_its_row():
    """Four drawn points, three keys: the third is the first's point (key k1) with b = y for x, so b = y has 1 of
    its 2 points shown under x; it keeps its place in the tables (its other point is its own), true apart from 1."""
    drawn = [("k1", {"a": 1, "b": "x"}), ("k2", {"a": True, "b": "x"}), ("k1", {"a": 1, "b": "y"}),
             ("k3", {"a": True, "b": "y"})]
    same = same_values(drawn, ["a", "b"])
    assert same == [SameValue("b", "y", ("x",), 1, 2)]
    assert same_values_text(same).endswith(": b y as x (1 of its 2 points).")
    assert reported_axes({"a": [1, True], "b": ["x", "y"]}, same) == {"a": [1, True], "b": ["x", "y"]}
    whole = same_values(drawn[:3], ["a", "b"])
    assert whole == [SameValue("b", "y", ("x",), 1, 1)]
    assert reported_axes({"a": [1, True], "b": ["x", "y"]}, whole) == {"a": [1, True], "b": ["x"]}


# 2. Trace suffixes


def test_a_trace_suffix_is_read_in_any_case(tmp_path):
    sweep = str(_write(tmp_path, "s.yaml", "axes: {}\n"))
    _write(tmp_path, "up.JSONL", MOONCAKE)
    _write(tmp_path, "up.CSV", AZURE)
    assert is_trace("up.JSONL") and is_trace("up.CSV") and is_trace("a.Csv")
    assert request_lengths("up.JSONL", sweep, "serving.lengths") == "up.JSONL"
    assert request_lengths("up.CSV", sweep, "serving.lengths") == "up.CSV"
    assert not is_trace("alpaca") and not is_trace("tr.ndjson")


def test_an_existing_file_of_another_suffix_is_told_a_trace_must_end_in_csv_or_jsonl(tmp_path, invoke, write_yaml):
    _write(tmp_path, "tr.ndjson", MOONCAKE)
    spec = _sweep(tmp_path, write_yaml, {"max_batch": 8}, {"serving.lengths": ["tr.csv", "tr.ndjson"]})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local")
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith(f"error: {spec}: axes.serving.lengths[1]: "), output
    assert "a trace's file must end in .csv or .jsonl" in output and "'tr.ndjson'" in output, output
    with pytest.raises(SpecError, match="expected one of sharegpt") as refused:  # no such file: a preset misnamed?
        request_lengths("nope.ndjson", str(spec), "serving.lengths")
    assert "must end in" not in str(refused.value)


# 3. The serving block's settings


def test_the_page_states_the_serving_block_with_or_without_the_spec(tmp_path, cli, write_yaml):
    """`batching: prefill-first` in the block (no axis) is on the page, read from the spec or from the store's base
    (its meta, which holds the block); an axis's field is not stated as the block's."""
    spec = _sweep(tmp_path, write_yaml, {"max_batch": 8, "lengths": "tr.csv", "batching": "prefill-first"},
                  {"system.schedule.min_batch": [2, 8]})
    db = tmp_path / "s.sqlite"
    cli("sweep", str(spec), "--db", str(db), "--local")
    block = "Every point's serving block: lengths {}, max_batch 8, batching prefill-first."
    cli("report", "--sweep", str(db), "--spec", str(spec), "--out", str(tmp_path / "a"))
    cli("report", "--sweep", str(db), "--out", str(tmp_path / "b"))
    # the store holds a trace by its requests, not its file (moved, it resumes the store), so alone it says so
    assert block.format("tr.csv") in _page(tmp_path / "a") and block.format("a trace") in _page(tmp_path / "b")
    mixed = _sweep(tmp_path / "m", write_yaml, {"max_batch": 8, "lengths": "tr.csv"},
                   {"serving.batching": ["mixed", "prefill-first"]})
    cli("sweep", str(mixed), "--db", str(tmp_path / "m.sqlite"), "--local")
    cli("report", "--sweep", str(tmp_path / "m.sqlite"), "--out", str(tmp_path / "c"))
    page = _page(tmp_path / "c")
    assert "Every point's serving block: lengths a trace, max_batch 8." in page, page  # the store's alone


# 5. Mooncake's fractional milliseconds


def test_the_three_formats_give_the_same_requests_to_the_microsecond(tmp_path):
    """Random arrivals in whole microseconds, written exactly in each format: archsim's CSV in seconds (its first
    request at 0, so its arrivals are the seconds from the earliest too), Azure's TIMESTAMP to 7 digits and
    Mooncake's milliseconds with 3 decimals. Each arrival is the float nearest the exact decimal (one rounding),
    in every format, so the requests and their digest (a sweep's point key) are the same."""
    rng = random.Random(46)
    micros = [0, 7_056_021, *(rng.randrange(0, 10**10) for _ in range(300))]
    start = datetime.datetime(2023, 11, 16, 18, 15, 46)
    base_ms = 1_700_000_000_000
    archsim = "arrival_s,prompt_tokens,output_tokens\n" + "".join(
        f"{t // 10**6}.{t % 10**6:06d},{i + 1},2\n" for i, t in enumerate(micros))
    azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"{(start + datetime.timedelta(microseconds=t)):%Y-%m-%d %H:%M:%S.%f}0,{i + 1},2\n"
        for i, t in enumerate(micros))
    mooncake = "".join(f'{{"timestamp": {base_ms + t // 1000}.{t % 1000:03d}, "input_length": {i + 1}, '
                       f'"output_length": 2}}\n' for i, t in enumerate(micros))
    expected = tuple(Request(i, float(Fraction(t, 10**6)), i + 1, 2) for i, t in enumerate(micros))
    assert expected[1].arrival_s == 7.056021
    read = [read_trace(_write(tmp_path, name, text))
            for name, text in (("a.csv", archsim), ("b.csv", azure), ("c.jsonl", mooncake))]
    assert read[0] == expected and read[1] == expected and read[2] == expected
    assert len({requests_digest(requests) for requests in read}) == 1


def test_a_fractional_timestamp_still_refuses_what_it_did(tmp_path, invoke):
    """Exact parsing keeps the checks: a fraction beyond 2^53 ms, and a float where a token count goes (shown as
    written)."""
    for text, where, expected in (
            ('{"timestamp": 9007199254740992.5, "input_length": 5, "output_length": 1}\n', "line 1: timestamp",
             "expected a number of milliseconds from 0 to 2^53 (a JSON number), got 9007199254740992.5"),
            ('{"timestamp": 0.5, "input_length": 5.0, "output_length": 1}\n', "line 1: input_length",
             "a JSON integer, got 5.0")):
        path = _write(tmp_path, "t.jsonl", text)
        code, output = invoke("simulate", "--system", "vllm-h100", "--workload", "llama3-8b", "--trace", str(path))
        assert code == 2 and output.count("\n") == 1, output
        assert output.startswith(f"error: {path}: {where}: ") and expected in output, output


def test_a_timestamp_is_exact_to_40_places_then_rounded(tmp_path):
    """Past EXACT_MS_PLACES = 40 decimal places of a millisecond a timestamp is rounded (half to even) before the
    exact difference, so `1e-99999999` (a hundred-million-digit denominator, exactly) reads at once as 0. In
    units of 1e-40 ms: 1 stays 1; 1.5 and 2.5 round to 2, 0.5 to 0, 2.6 to 3; each then 1e-3 s a ms."""
    stamps = ["1e-99999999", "1e-40", "1.5e-40", "2.5e-40", "0.5e-40", "2.6e-40"]
    path = _write(tmp_path, "t.jsonl", "".join(f'{{"timestamp": {t}, "input_length": 5, "output_length": 1}}\n'
                                               for t in ["0", *stamps]))
    assert [r.arrival_s for r in read_trace(path)][1:] == [0.0, 1e-43, 2e-43, 2e-43, 0.0, 3e-43]


# 6. true and 1 are two values


@pytest.mark.parametrize(("values", "shown"), [([True, 1], "1"), ([False, 0], "0"), ([0, 1], "0")])
def test_true_and_1_are_two_values_the_field_then_refuses(tmp_path, invoke, write_yaml, values, shown):
    spec = _sweep(tmp_path, write_yaml, {"max_batch": 8, "lengths": "tr.csv"},
                  {"system.schedule.only_when_faster": values})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local")
    at = next(i for i, v in enumerate(values) if not isinstance(v, bool))  # (values.index(1) finds true)
    assert code == 2 and output == (f"error: {spec}: axes.system.schedule.only_when_faster[{at}]: expected true "
                                    f"or false, got {shown}\n"), output


def test_a_repeat_is_still_a_repeat():
    assert first_repeat([True, True]) == (1, 0) and first_repeat([1, 2, 1]) == (2, 0)
    assert first_repeat([True, 1]) is None and first_repeat([[1, True], [1, 1]]) is None
    assert first_repeat([[1, True], [1, True]]) == (1, 0) and first_repeat([1, 1.0]) == (1, 0)


# 7. The formats, named


def test_simulate_help_and_an_empty_trace_name_the_three_formats(tmp_path, cli, invoke):
    text = " ".join(cli("simulate", "--help").output.split())
    assert "arrival_s,prompt_tokens,output_tokens" in text and "TIMESTAMP,ContextTokens,GeneratedTokens" in text
    assert "JSON Lines" in text and "timestamp, input_length, output_length" in text, text
    path = _write(tmp_path, "empty.jsonl", "")
    code, output = invoke("simulate", "--system", "vllm-h100", "--workload", "llama3-8b", "--trace", str(path))
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith(f"error: {path}: line 1: empty file (expected "), output
    for named in ("arrival_s,prompt_tokens,output_tokens", "TIMESTAMP,ContextTokens,GeneratedTokens",
                  "JSON Lines", "timestamp, input_length, output_length"):
        assert named in output, output
