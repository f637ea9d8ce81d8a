"""Bad input a fuzz audit found taken silently or refused late: YAML 1.1's integer forms (`010000` read as octal
4096, `1:08:16` as base-60 4096, `0x1000` as hex) where `--set seq_len=010000` reads 10000, a key written twice in a
JSON Lines request trace (the last one kept), a pattern map's sizes beyond the size limit (refused later naming
`--sinks`, an option never given), a mapping group's or a workload's name that is no name ({}, true, 5, ''), and a
GPU file's `host_link` naming no link preset taken by commands that never copy to the host."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import LimitError, SpecError
from archsim.spec_files import parse_yaml
from archsim.systems.requests import read_trace
from archsim.workload_patterns import load_pattern_map

SIZE_LIMIT = 2**24  # ARCHSIM_MAX_SIZE's default (archsim.workload.MAX_SIZE)


def _one_error_line(code: int, output: str) -> str:
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, output)
    return lines[0]


def _library_yaml(kind: str, name: str) -> str:
    return Path(library.find(kind, name)).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- 1. YAML 1.1's integer forms
@pytest.mark.parametrize(("written", "reading"), [
    ("010000", "octal 4096"),        # 0o10000 = 4096
    ("1:08:16", "base-60 4096"),     # 1 x 3600 + 8 x 60 + 16 = 4096
    ("0x1000", "hexadecimal 4096"),  # 16^3 = 4096
    ("0b1000000000000", "binary 4096"),  # 2^12 = 4096
    ("+0x1000", "hexadecimal 4096"),
    ("4__096", "4096"),  # YAML 1.1 drops every _, int() (the CLI's) takes one between two digits
    ("4096_", "4096"),
])
def test_a_yaml_integer_not_written_in_decimal_is_refused(invoke, tmp_path, written, reading) -> None:
    """The workload's seq_len (4096 in llama2-7b) written in a form YAML 1.1 reads otherwise than the CLI does
    (`--set seq_len=010000` is 10000): analyze ran a 4096-token attention from `010000`, silently."""
    text = _library_yaml("workloads", "llama2-7b")
    assert "\n  seq_len: 4096" in text
    path = tmp_path / "octal.yaml"
    path.write_text(text.replace("\n  seq_len: 4096", f"\n  seq_len: {written}", 1), encoding="utf-8")
    line = _one_error_line(*invoke("analyze", "attention-1pass-causal", "-w", str(path), "--set", "tile_kv=256",
                                   "--json"))
    assert line == (f"error: {path}: params.seq_len: expected a decimal integer, got {written!r} (YAML 1.1 reads it "
                    f"as {reading})")


def test_a_sexagesimal_float_is_refused(tmp_path) -> None:
    """`1:30.5` is 1 x 60 + 30.5 = 90.5 to YAML 1.1; a number option reads no such text."""
    path = tmp_path / "f.yaml"
    path.write_text("set:\n  scale: 1:30.5\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        parse_yaml(path.read_bytes(), path)
    assert str(caught.value) == (f"{path}: set.scale: expected a decimal number, got '1:30.5' (YAML 1.1 reads it "
                                 "as base-60 90.5)")


@pytest.mark.parametrize(("text", "where"), [
    ("axes:\n  seq_len: [1024, 02000]\n", "axes.seq_len[1]"),  # a list item (octal 1024)
    ("groups:\n- name: a\n  set: {M0: 0x100}\n", "groups[0].set.M0"),
    ("010: x\n", "010"),  # a key
    ("0x10\n", "line 1"),  # a document that is the number alone: no field, its line
])
def test_the_refusal_names_the_field(tmp_path, text, where) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        parse_yaml(path.read_bytes(), path)
    assert caught.value.where == where
    assert caught.value.message.startswith("expected a decimal integer")


def test_decimal_numbers_read_as_before(tmp_path) -> None:
    """What the CLI's numbers read too stays as YAML reads it: decimal integers (a sign, one _ between digits), 0,
    floats; `1e6` (no dot) is text to YAML 1.1, as before (its field's check says so)."""
    path = tmp_path / "ok.yaml"
    path.write_text("a: [4096, 4_096, -3, +5, 0, -0, 0.5, 1.5e+3, 010.5, .inf, 1e6, '010000', !!str 0x10]\n",
                    encoding="utf-8")
    assert parse_yaml(path.read_bytes(), path) == {"a": [4096, 4096, -3, 5, 0, 0, 0.5, 1500.0, 10.5, float("inf"),
                                                         "1e6", "010000", "0x10"]}


@pytest.mark.parametrize(("text", "message"), [
    ("a: !!int abc\n", "expected a decimal integer, got 'abc'"),  # was ValueError: an internal error, exit 1
    ("a: !!float abc\n", "expected a decimal number, got 'abc'"),
    ("a: 0x" + "f" * 300 + "\n", f"expected a decimal integer, got {'0x' + 'f' * 38!r}... (302 characters) (YAML "
                                 "1.1 reads it as hexadecimal inf)"),  # 16^300 > 1.8e308: beyond the largest float
    ("a: !!bool abc\n", "expected a boolean, got 'abc' (tagged tag:yaml.org,2002:bool)"),  # was KeyError, exit 1
    ("a: !!timestamp abc\n", "expected a timestamp, got 'abc' (tagged tag:yaml.org,2002:timestamp)"),  # AttributeError
    ("a: !!int ''\n", "expected a decimal integer, got ''"),  # IndexError in PyYAML's constructor
    ("a: 2023-13-45\n", "expected a timestamp, got '2023-13-45' (tagged tag:yaml.org,2002:timestamp)"),  # a plain date
])
def test_a_number_tag_on_no_number_is_refused(tmp_path, text, message) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        parse_yaml(path.read_bytes(), path)
    assert (caught.value.where, caught.value.message) == ("a", message)


def test_a_decimal_integer_past_int_s_digit_limit_reads_as_inf(tmp_path) -> None:
    """int() refuses a decimal string of more than 4300 digits (ValueError: an internal error, exit 1); beyond the
    largest float (309 digits) an integer reads as +-inf, which every number check refuses naming its field."""
    path = tmp_path / "big.yaml"
    path.write_text(f"a: {'1' * 5000}\nb: -{'9' * 310}\n", encoding="utf-8")
    assert parse_yaml(path.read_bytes(), path) == {"a": float("inf"), "b": float("-inf")}


def test_an_anchor_is_checked_once_and_an_alias_of_it_is_not_reported_again(tmp_path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("base: &b {seq_len: 4096}\nother: {<<: *b, heads: 010}\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        parse_yaml(path.read_bytes(), path)
    assert caught.value.where == "other.heads"


# ----------------------------------------------------------------------------- 2. a JSON trace's key written twice
def test_a_key_written_twice_in_a_json_lines_trace_is_refused(invoke, tmp_path) -> None:
    """json.loads keeps the last of two `input_length`s: the request read 9000 prompt tokens, the 12 written first
    dropped silently (a CSV trace refuses a column named twice, a YAML spec a key written twice)."""
    path = tmp_path / "dup.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 8, "output_length": 4}\n'
                    '{"timestamp": 0, "input_length": 12, "input_length": 9000, "output_length": 4}\n',
                    encoding="utf-8")
    line = _one_error_line(*invoke("check", str(path)))
    assert line == (f"error: {path}: line 2: input_length: written twice in one object (JSON keeps the last); "
                    "a key is written once per object")
    with pytest.raises(SpecError):
        read_trace(path)


# ----------------------------------------------------------------------------- 3. a pattern map's sizes
@pytest.mark.parametrize("key", ["sinks", "recent"])
def test_a_pattern_maps_size_beyond_the_limit_is_refused_by_the_map(invoke, tmp_path, key) -> None:
    """DuoAttention's streaming heads keep 128 sinks and 256 recent tokens; one beyond ARCHSIM_MAX_SIZE passed
    `archsim check` and was refused by `sparse` naming `--sinks` or `<kv-selection>: recent`, not the map."""
    data = yaml.safe_load(Path(library.find("pattern maps", "llama2-7b-duo-25",
                                            "archsim.library.workloads.patterns")).read_text(encoding="utf-8"))
    assert data["patterns"][1]["pattern"] == "streaming"
    data["patterns"][1][key] = SIZE_LIMIT + 1
    path = tmp_path / "duo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    expected = (f"error: {path}: patterns[1].{key}: {SIZE_LIMIT + 1} is beyond the limit of {SIZE_LIMIT} on sizes "
                "(raise it with the environment variable ARCHSIM_MAX_SIZE)")
    assert _one_error_line(*invoke("check", str(path))) == expected
    assert _one_error_line(*invoke("sparse", "--method", "duoattention", "--gpu", "h100-sxm5", "-w", "llama2-7b",
                                   "--context", "4096", "--patterns", str(path))) == expected
    with pytest.raises(LimitError):
        load_pattern_map(path)


# ----------------------------------------------------------------------------- 4. names that are no names
@pytest.mark.parametrize(("name", "shown"), [({}, "dict {}"), (True, "bool True"), (5, "int 5"), ("", "str ''")])
def test_a_mapping_groups_name_must_be_a_non_empty_string(invoke, tmp_path, name, shown) -> None:
    data = yaml.safe_load(_library_yaml("mappings", "fusemax"))
    data["groups"][0]["name"] = name
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    line = _one_error_line(*invoke("run", "-m", str(path), "-w", "bert-base"))
    assert line == f"error: {path}: groups[0].name: expected a non-empty string, got {shown}"


def test_a_workloads_empty_name_is_refused(invoke, tmp_path) -> None:
    data = yaml.safe_load(_library_yaml("workloads", "llama2-7b"))
    data["name"] = ""
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    line = _one_error_line(*invoke("simulate", "-s", "gpu", "-w", str(path), "--rate", "5", "--requests", "2"))
    assert line == f"error: {path}: name: expected a non-empty string"
