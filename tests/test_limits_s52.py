"""Limits read exactly and refused before the work (the s52 audit).

1. A CSV trace's blank lines are no requests: the request-count guard counts only the rows read as requests.
2. The guard refuses a CSV trace once it has met one request past ARCHSIM_MAX_REQUESTS, not after parsing the whole
   file (a 10-million-row trace took 43 s and 2.3 GB before its refusal).
3. `--set` reads a whole number exactly (a float rounded 2^53 + 1 to 2^53, past a raised size limit), and a size
   refused shows its whole value exactly, not in %g (`1.67772e+07` read as the limit 16777216).
4. `archsim parallel`'s largest context stopped by the limit on one modelled attention call (ARCHSIM_MAX_GPU_ROWS)
   is a floor, which the point's note says, naming the variable (so a sweep's store recomputes it).
5. The advice for a length a tile does not divide offers no multiple past the size limit.
"""

from __future__ import annotations

import pytest

from archsim.cascade.bind import nearest_multiples
from archsim.commands.options import parse_sets
from archsim.errors import LimitError
from archsim.limits import advises_limit
from archsim.systems.requests import read_trace
from archsim.workload import check_size

HEADER = "arrival_s,prompt_tokens,output_tokens\n"
TINY_WORKLOAD = """name: tiny
description: all sizes 1
source: the s52 audit
block: llama
params: {batch: 1, seq_len: 1, hidden: 1, heads: 1, kv_heads: 1, head_dim: 1, ffn_dim: 1, layers: 1, vocab: 1,
         word_bytes: 2}
"""


def _trace(tmp_path, text: str):
    path = tmp_path / "trace.csv"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- 1, 2. a CSV trace's request count
def test_blank_lines_of_a_csv_trace_are_not_counted_as_requests(tmp_path, monkeypatch) -> None:
    """Two rows with blank lines between and after were '5 requests, beyond the limit of 2'."""
    monkeypatch.setenv("ARCHSIM_MAX_REQUESTS", "2")
    path = _trace(tmp_path, HEADER + "0,1,1\n\n  \n0.5,2,2\n\n\n")
    assert [(r.prompt_tokens, r.output_tokens) for r in read_trace(path)] == [(1, 1), (2, 2)]


def test_a_csv_trace_at_the_request_limit_with_a_trailing_blank_line_passes_check(tmp_path, monkeypatch,
                                                                                  invoke) -> None:
    """100,000 rows and a trailing blank line were '100001 requests' (here at a limit of 3)."""
    monkeypatch.setenv("ARCHSIM_MAX_REQUESTS", "3")
    path = _trace(tmp_path, HEADER + "0,1,1\n1,1,1\n2,1,1\n\n")
    code, output = invoke("check", str(path))
    assert code == 0, output


def test_a_csv_trace_past_the_request_limit_is_refused_before_the_rest_is_read(tmp_path, monkeypatch) -> None:
    """The rows after the first one past the limit are not read: a malformed row there (a cell longer than the CSV
    reader takes) is not what the refusal names, the count is, as at least limit + 1 requests."""
    monkeypatch.setenv("ARCHSIM_MAX_REQUESTS", "2")
    path = _trace(tmp_path, HEADER + "0,1,1\n\n1,1,1\n2,1,1\n3,1,1\n\"" + "x" * 200_000 + "\"\n")
    with pytest.raises(LimitError, match=r"at least 3 requests, beyond the limit of 2 .*ARCHSIM_MAX_REQUESTS"):
        read_trace(path)


def test_a_row_of_empty_cells_is_still_a_row_of_a_csv_trace(tmp_path) -> None:
    """Only a blank line is skipped; a row of empty cells is refused as before, naming its line."""
    path = _trace(tmp_path, HEADER + "0,1,1\n,,\n")
    with pytest.raises(Exception, match="line 3"):
        read_trace(path)


# ----------------------------------------------------------------------------- 3. --set reads whole numbers exactly
def test_set_reads_a_whole_number_exactly_and_a_fraction_as_a_float() -> None:
    sets = parse_sets(("seq_len=9007199254740993", "batch=4_096", "density=0.25", "M0=1e3"))
    assert sets == {"seq_len": 2**53 + 1, "batch": 4096, "density": 0.25, "M0": 1000.0}
    assert type(sets["seq_len"]) is int and type(sets["batch"]) is int and type(sets["density"]) is float


def test_set_past_a_raised_size_limit_is_refused_not_rounded(invoke, monkeypatch) -> None:
    """At ARCHSIM_MAX_SIZE = 2^53, --set seq_len=2^53 + 1 ran as 2^53 (exit 0), where a workload file's is refused."""
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", str(2**53))
    code, output = invoke("run", "-m", "fusemax", "-w", "bert-base", "--set", f"seq_len={2**53 + 1}", "--json")
    assert code == 2, output
    assert f"{2**53 + 1} is beyond the limit of {2**53} on sizes" in output


def test_a_whole_size_past_the_limit_is_shown_exactly(invoke) -> None:
    """'--set batch=16777217' said '1.67772e+07 is beyond the limit of 16777216'."""
    code, output = invoke("run", "-m", "fusemax", "-w", "bert-base", "--set", "batch=16777217")
    assert code == 2 and "batch: 16777217 is beyond the limit of 16777216 on sizes" in output, output
    with pytest.raises(LimitError, match=r"params\.batch: 16777217 is beyond"):
        check_size("batch", 16777217, "w.yaml", "params.batch")
    with pytest.raises(LimitError, match=r"params\.density: 1\.5e\+07 is beyond"):  # a float as written
        check_size("density", 1.5e7, "w.yaml", "params.density", limit=2**20)


# ----------------------------------------------------------------------------- 4. parallel's search at the rows limit
def test_parallels_largest_context_stopped_by_the_gpu_rows_limit_is_a_floor_its_note_says(tmp_path,
                                                                                         cli_json) -> None:
    """128 x 8388608 = 2^30 query rows, ARCHSIM_MAX_GPU_ROWS's default, while the memory there is 15 GB of 86 GB:
    the value is a floor, and the note advises raising the variable (the record is limit-decided)."""
    workload = tmp_path / "tiny.yaml"
    workload.write_text(TINY_WORKLOAD, encoding="utf-8")
    point, = cli_json("parallel", "-w", str(workload), "--scheme", "ulysses", "--devices", "1", "--seq-len", "4096",
                      "--batch", "128")["points"]
    assert point["max_context_tokens"] == 8388608
    assert "ARCHSIM_MAX_GPU_ROWS" in point["note"] and "at least 8388608 tokens fit" in point["note"], point["note"]
    assert advises_limit(point)


def test_parallels_largest_context_stopped_by_the_memory_has_no_note(cli_json) -> None:
    point, = cli_json("parallel", "-w", "llama3-8b", "--scheme", "ulysses", "--devices", "8", "--seq-len", "4096")[
        "points"]
    assert point["max_context_tokens"] > 0 and point["note"] == "", point


# ----------------------------------------------------------------------------- 5. the divisibility advice
def test_the_nearest_multiples_stay_within_the_size_limit(monkeypatch) -> None:
    """seq_len=16777215 with M0=1000 advised 16778000, beyond the limit of 2^24 and refused."""
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", str(2**24))
    advice = nearest_multiples(16777215, 1000)
    assert "16777000" in advice and "16778000, is beyond the limit of 16777216" in advice
    assert "ARCHSIM_MAX_SIZE" in advice
    assert "the nearest multiples are 3000 and 4000" in nearest_multiples(3500, 1000)
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "800")
    only = nearest_multiples(500, 1000)
    assert "1000" in only and "beyond the limit of 800" in only


def test_the_divisibility_error_of_run_offers_no_length_past_the_limit(invoke) -> None:
    code, output = invoke("run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=16777215", "--set", "M0=1000")
    assert code == 2 and "16777000" in output and "give 16778000" not in output, output
    assert "the nearest multiples are 16777000 and 16778000" not in output
