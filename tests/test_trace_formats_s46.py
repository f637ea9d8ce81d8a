"""Request traces in the public formats of Lamina's traces (pim.md §3.5): Azure's LLM inference trace CSV
(`TIMESTAMP,ContextTokens,GeneratedTokens`) and Mooncake's JSON Lines (`timestamp` in ms, `input_length`,
`output_length`), read as the equivalent archsim CSV (`arrival_s,prompt_tokens,output_tokens`), told apart by
content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from archsim.dse.serving_spec import is_trace, request_lengths
from archsim.dse.system_points import requests_digest
from archsim.errors import SpecError
from archsim.systems.requests import Request, read_trace

# The same four requests in each format. Their arrivals, from the earliest request (the second row): 0.35 s
# (23:59:59.9 to 00:00:00.25, across midnight), 0, 1.2 s and 2.1 s; the rows are not in time order.
ARCHSIM = "arrival_s,prompt_tokens,output_tokens\n0.35,64,8\n0,32,4\n1.2,128,16\n2.1,16,2\n"
AZURE = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
         "2023-11-17 00:00:00.2500000,64,8\n"  # Azure's seven fractional digits
         "2023-11-16 23:59:59.900000000,32,4\n"  # nine
         "2023-11-17 00:00:01.1,128,16\n"  # one
         "2023-11-17 00:00:02,16,2\n")  # none
MOONCAKE = ('{"timestamp": 27832, "input_length": 64, "output_length": 8, "hash_ids": [0, 1, 2]}\n'
            '{"timestamp": 27482, "input_length": 32, "output_length": 4, "hash_ids": [3]}\n'
            '\n'
            '{"hash_ids": [], "output_length": 16, "input_length": 128, "timestamp": 28682}\n'
            '{"timestamp": 29582, "input_length": 16, "output_length": 2, "hash_ids": [4, 5]}\n')
EXPECTED = (Request(0, 0.35, 64, 8), Request(1, 0.0, 32, 4), Request(2, 1.2, 128, 16), Request(3, 2.1, 16, 2))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "text"), [("archsim.csv", ARCHSIM), ("azure.csv", AZURE),
                                            ("mooncake.jsonl", MOONCAKE), ("mooncake.txt", MOONCAKE)])
def test_each_format_reads_as_the_same_requests(tmp_path, name, text):
    """Told apart by content (a .txt of JSON Lines too), arrivals in seconds from the earliest request, ids in row
    order."""
    assert read_trace(_write(tmp_path, name, text)) == EXPECTED


def test_simulate_serves_each_format_alike(tmp_path, cli):
    runs = []
    for name, text in (("archsim.csv", ARCHSIM), ("azure.csv", AZURE), ("mooncake.jsonl", MOONCAKE)):
        path = _write(tmp_path, name, text)
        out = json.loads(cli("simulate", "--system", "vllm-h100", "--workload", "llama3-8b", "--trace", str(path),
                             "--json").output)
        assert out.pop("served_requests") == {"trace": str(path)}
        runs.append(out)
    assert runs[0]["requests"] == 4 and runs[0]["output_tokens"] == 8 + 4 + 16 + 2
    assert runs[1] == runs[0] and runs[2] == runs[0]


def test_the_csv_digest_a_sweep_keys_on_stays_the_same(tmp_path):
    """A sweep keys a trace's point on its requests' digest: the sha256 of the JSON of [id, arrival_s,
    prompt_tokens, output_tokens] rows, the archsim CSV's as it reads (arrivals as written, not moved to the first);
    the other formats give the same requests, so the same digest."""
    archsim = _write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens\n0.5,80,296\n0.25,12,56\n")
    rows = [[0, 0.5, 80, 296], [1, 0.25, 12, 56]]
    assert requests_digest(read_trace(archsim)) == hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    digests = {requests_digest(read_trace(_write(tmp_path, name, text)))
               for name, text in (("a.csv", ARCHSIM), ("b.csv", AZURE), ("c.jsonl", MOONCAKE))}
    assert len(digests) == 1


def test_a_sweep_takes_a_json_lines_trace(tmp_path):
    _write(tmp_path, "kimi.jsonl", MOONCAKE)
    sweep = str(_write(tmp_path, "sweep.yaml", "axes: {}\n"))  # its traces are taken from its folder
    assert is_trace("kimi.jsonl") and is_trace("azure.csv") and not is_trace("kimi-ta")
    assert request_lengths("kimi.jsonl", sweep, "serving.lengths") == "kimi.jsonl"
    _write(tmp_path, "bad.jsonl", '{"timestamp": 0, "input_length": 5}\n')
    with pytest.raises(SpecError, match="line 1: output_length"):
        request_lengths("bad.jsonl", sweep, "serving.lengths")


def test_azure_timestamps_to_the_nanosecond_across_a_day_and_a_year(tmp_path):
    path = _write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                     "2023-12-31 23:59:59.999999999,5,1\n"
                                     "2024-01-01 00:00:00.000000001,5,1\n"
                                     "2023-12-31T23:59:59.9999999,5,1\n"
                                     " 2024-01-02 00:00:00 ,5,1\n")
    arrivals = [r.arrival_s for r in read_trace(path)]
    # from the earliest, 2023-12-31 23:59:59.9999999: 99 ns, 101 ns, 0, and a day and 100 ns
    assert arrivals == [99e-9, 101e-9, 0.0, 86400.0000001]


def test_mooncake_timestamps_are_milliseconds(tmp_path):
    path = _write(tmp_path, "t.jsonl", '{"timestamp": 27482, "input_length": 6955, "output_length": 52, '
                                       '"hash_ids": [46, 47, 48]}\n'
                                       '{"timestamp": 30535, "input_length": 6472, "output_length": 26}\n'
                                       '{"timestamp": 27482.5, "input_length": 1, "output_length": 1}\n')
    assert read_trace(path) == (Request(0, 0.0, 6955, 52), Request(1, 3.053, 6472, 26), Request(2, 0.0005, 1, 1))


def test_check_recognises_both_formats(tmp_path, cli):
    azure, mooncake = _write(tmp_path, "azure.csv", AZURE), _write(tmp_path, "kimi.jsonl", MOONCAKE)
    out = cli("check", str(azure), str(mooncake)).output
    assert f"ok  {azure}: trace, 4 rows" in out and f"ok  {mooncake}: trace, 4 rows" in out
    bad = _write(tmp_path, "bad.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 0}\n')
    result = cli("check", str(bad), expect=2)
    assert f"error: {bad}: line 1: output_length: expected an integer >= 1" in result.output



def test_check_tells_a_json_lines_trace_by_content_and_a_json_spec_by_its_name(tmp_path, cli):
    """A JSON Lines trace is one by its content, whatever its name (as `simulate --trace` reads it); a file named
    .json (or .yaml) is one document, a spec, though it starts with `{` as a trace does."""
    trace = _write(tmp_path, "kimi.txt", MOONCAKE)
    spec = _write(tmp_path, "w.json", json.dumps({"name": "w", "params": {"seq_len": 8, "heads": 2, "head_dim": 4}}))
    out = cli("check", str(trace), str(spec)).output
    assert f"ok  {trace}: trace, 4 rows" in out and f"ok  {spec}: workload w" in out


AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize(("name", "text", "where", "expected"), [
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46.6805900,5,1\n2023-11-16 24:00:00,5,1\n", "line 3: TIMESTAMP",
     "expected a date and time"),
    ("a.csv", AZURE_HEADER + "2023-13-01 00:00:00,5,1\n", "line 2: TIMESTAMP", "expected a date and time"),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46.6805900001,5,1\n", "line 2: TIMESTAMP", "up to 9"),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46+00:00,5,1\n", "line 2: TIMESTAMP", "expected a date and time"),
    ("a.csv", AZURE_HEADER + "1700000000,5,1\n", "line 2: TIMESTAMP", "expected a date and time"),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46,-5,1\n", "line 2: ContextTokens", "expected an integer >= 1"),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46,5,0\n", "line 2: GeneratedTokens", "expected an integer >= 1"),
    ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens,Extra\n2023-11-16 18:15:46,5,1,x\n", "line 1",
     "expected the header arrival_s,prompt_tokens,output_tokens"),
    ("a.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1, "input_length": 5}\n',
     "line 2: output_length", "missing"),
    ("a.jsonl", '{"timestamp": 0, "input_length": -5, "output_length": 1}\n', "line 1: input_length",
     "expected an integer >= 1"),
    ("a.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": -1}\n', "line 1: output_length",
     "expected an integer >= 1"),
    ("a.jsonl", '{"timestamp": 0, "input_length": "5", "output_length": 1}\n', "line 1: input_length",
     "expected an integer >= 1"),
    ("a.jsonl", '{"timestamp": 0, "input_length": 5.0, "output_length": 1}\n', "line 1: input_length",
     "expected an integer >= 1"),
    ("a.jsonl", '{"timestamp": 0, "input_length": true, "output_length": 1}\n', "line 1: input_length",
     "expected an integer >= 1"),
    ("a.jsonl", '{"timestamp": "27482", "input_length": 5, "output_length": 1}\n', "line 1: timestamp",
     "milliseconds"),
    ("a.jsonl", '{"timestamp": -1, "input_length": 5, "output_length": 1}\n', "line 1: timestamp", "milliseconds"),
    ("a.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1' + "0" * 400
     + ', "input_length": 5, "output_length": 1}\n', "line 2: timestamp", "milliseconds from 0 to 2^53"),
    ("a.jsonl", '{"timestamp": NaN, "input_length": 5, "output_length": 1}\n', "line 1", "JSON"),
    ("a.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n\n{"timestamp": 1,\n', "line 3", "JSON"),
    ("a.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n[1, 2, 3]\n', "line 2",
     "expected a JSON object"),
    ("a.jsonl", "{}\n", "line 1: timestamp", "missing"),
    ("a.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n' + "\n" * 3, None,
     None),  # blank lines after the last request are skipped
    ("a.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1e13, "input_length": 5, '
                '"output_length": 1}\n', "line 2: timestamp", "expected a number of seconds from 0 to"),
])
def test_bad_traces_exit_2_naming_the_line_and_the_field(tmp_path, invoke, name, text, where, expected):
    path = _write(tmp_path, name, text)
    if where is None:
        assert len(read_trace(path)) == 1
        return
    code, output = invoke("simulate", "--system", "vllm-h100", "--workload", "llama3-8b", "--trace", str(path))
    assert code == 2 and output.count("\n") == 1, output
    assert output.startswith(f"error: {path}: {where}: ") and expected in output, output


@pytest.mark.parametrize("name", ["a.csv", "a.jsonl"])
def test_the_limits_apply_alike(tmp_path, monkeypatch, name):
    text = AZURE if name == "a.csv" else MOONCAKE
    output = "GeneratedTokens" if name == "a.csv" else "output_length"
    prompt = "ContextTokens" if name == "a.csv" else "input_length"
    path = _write(tmp_path, name, text)
    monkeypatch.setenv("ARCHSIM_MAX_OUTPUT_TOKENS", "8")
    with pytest.raises(SpecError, match=f"line 4: {output}: expected at most 8"):
        read_trace(path)
    monkeypatch.delenv("ARCHSIM_MAX_OUTPUT_TOKENS")
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "64")
    with pytest.raises(SpecError, match=f"line 4: {prompt}: expected an integer >= 1 and at most 64"):
        read_trace(path)
    monkeypatch.delenv("ARCHSIM_MAX_SIZE")
    monkeypatch.setenv("ARCHSIM_MAX_REQUESTS", "3")
    with pytest.raises(SpecError, match="4 requests, beyond the limit of 3"):
        read_trace(path)
    monkeypatch.delenv("ARCHSIM_MAX_REQUESTS")
    monkeypatch.setenv("ARCHSIM_MAX_CSV_BYTES", "16")
    with pytest.raises(SpecError, match="larger than the limit of 16 bytes"):
        read_trace(path)


def test_a_sweep_of_a_trace_moved_or_in_another_format_resumes_in_its_store(tmp_path, cli):
    """The serving block's trace is its requests (the base's "trace" part, as the points' keys hold it), not the
    path it lies at nor its format: the same requests moved or in Mooncake's JSON Lines are the same sweep, and
    its store resumes with every point reused (it had been refused as another base, "differs ... in serving")."""
    spec = ("name: moved\nsystem: vllm-h100\nworkload: llama3-8b\nserving: {{max_batch: 8, lengths: {trace}}}\n"
            "axes:\n  serving.batching: [mixed, prefill-first]\nsampling: {{kind: grid}}\n")
    first = tmp_path / "a"
    first.mkdir()
    _write(first, "tr.csv", ARCHSIM)
    db = tmp_path / "s.sqlite"
    assert "2 new" in cli("sweep", str(_write(first, "s.yaml", spec.format(trace="tr.csv"))), "--db", str(db),
                          "--local").output
    second = tmp_path / "b"
    second.mkdir()
    _write(second, "kimi.jsonl", MOONCAKE)
    out = cli("sweep", str(_write(second, "s.yaml", spec.format(trace="kimi.jsonl"))), "--db", str(db),
              "--local").output
    assert "0 new, 2 reused" in out
