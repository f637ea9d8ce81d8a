"""Bad spec files and sizes are SpecErrors naming the file (or option) and the YAML path, found before any work:
files that are not UTF-8, too deep, too large or not files at all; Einsums nested too deep; sizes that are NaN,
infinite, huge or not integers; workloads that leave a model size to the cascade's toy default; executions too
large to hold. The expected fragments are the messages' contracts (file, key, limit, how to raise it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.interpret import check_size, execute, random_inputs
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.syntax import MAX_DEPTH
from archsim.dse.spec import SWEEPS_PACKAGE, load_sweep_spec
from archsim.errors import SpecError
from archsim.point import prepare, run_point
from archsim.spec_files import MAX_YAML_DEPTH, finite_number, number, read_yaml
from archsim.workload import PARAMS

BERT = library.find("workloads", "bert-base")


def _error(call, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        call(*args, **kwargs)
    return info.value


def _write(tmp_path: Path, data: bytes | str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _bert_without(tmp_path: Path, **changes) -> Path:
    """bert-base.yaml with params changed (None drops one), written under tmp_path."""
    data = yaml.safe_load(BERT.read_text())
    params = {**data["params"], **changes}
    data["params"] = {k: v for k, v in params.items() if v is not None}
    return _write(tmp_path, yaml.safe_dump(data), "workload.yaml")


# ---------------------------------------------------------------- files


def test_non_utf8_file_names_the_byte(tmp_path: Path) -> None:
    path = _write(tmp_path, b"name: caf\xe9\nparams: {batch: 1}\n")  # Latin-1 e-acute at byte 9
    error = _error(read_yaml, path)
    assert (error.source, error.where) == (str(path), "line 1, byte 9")
    assert "not UTF-8" in error.message


def test_deep_yaml_is_refused_before_the_composer_recurses(tmp_path: Path) -> None:
    error = _error(read_yaml, _write(tmp_path, "[" * 5000 + "]" * 5000))
    assert f"nested deeper than {MAX_YAML_DEPTH} levels" in error.message
    assert read_yaml(_write(tmp_path, "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1))) is not None
    # Anchors cannot build deep (or recursive) data out of shallow text.
    chain = "l0: &l0 [1]\n" + "".join(f"l{i}: &l{i} [*l{i - 1}]\n" for i in range(1, MAX_YAML_DEPTH + 1))
    assert "through an alias" in _error(read_yaml, _write(tmp_path, chain)).message
    assert "recursive" in _error(read_yaml, _write(tmp_path, "a: &a [*a]\n")).message


def test_file_size_limit_reads_at_most_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHSIM_MAX_SPEC_BYTES", "16")
    assert read_yaml(_write(tmp_path, "a: 123456789012\n")) == {"a": 123456789012}  # 16 bytes
    error = _error(read_yaml, _write(tmp_path, "a: 1234567890123\n"))  # 17 bytes
    assert "limit of 16 bytes" in error.message and "ARCHSIM_MAX_SPEC_BYTES" in error.message
    # A sparse 16 GiB file: reading it whole would take minutes and all the memory; the default limit stops it.
    monkeypatch.delenv("ARCHSIM_MAX_SPEC_BYTES")
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as stream:
        stream.truncate(2**34)
    start = time.monotonic()
    assert "ARCHSIM_MAX_SPEC_BYTES" in _error(read_yaml, huge).message
    assert time.monotonic() - start < 30  # reading 16 GiB would take minutes; loaded CI machines, seconds
    monkeypatch.setenv("ARCHSIM_MAX_SPEC_BYTES", "lots")
    assert _error(read_yaml, huge).source == "ARCHSIM_MAX_SPEC_BYTES"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs and /dev/zero")
def test_devices_fifos_and_directories_are_not_spec_files(tmp_path: Path) -> None:
    """/dev/zero never ends and a FIFO without a writer blocks on open: both are refused before reading."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo, tmp_path):
        error = _error(read_yaml, path)
        assert error.source == str(path) and "not a regular file" in error.message


def test_nan_and_inf_in_spec_files(tmp_path: Path) -> None:
    cascade = library.find("cascades", "attention-3pass")
    text = cascade.read_text().replace("seq_len: 16", "seq_len: .nan")
    error = _error(library.load_cascade_spec, _write(tmp_path, text, "cascade.yaml"))
    assert (error.where, error.source) == ("params.seq_len", str(tmp_path / "cascade.yaml"))
    text = cascade.read_text().replace("seq_len: 16", "seq_len: .inf")
    assert "finite" in _error(library.load_cascade_spec, _write(tmp_path, text, "cascade.yaml")).message


# ---------------------------------------------------------------- Einsum expressions

TINY = {"name": "tiny", "params": {"n": 4, "word_bytes": 2}, "ranks": {"P": "n"}, "inputs": {"X": ["P"]},
        "outputs": ["Z"]}


@pytest.mark.parametrize("rhs", ["(" * 5000 + "X[p]" + ")" * 5000, "-" * 5000 + "X[p]",
                                 "exp(" * 500 + "X[p]" + ")" * 500, " + ".join(["X[p]"] * 5000)])
def test_deep_expressions_are_a_spec_error_at_the_einsum(rhs: str) -> None:
    error = _error(cascade_from_dict, {**TINY, "einsums": [f"Z[p] = {rhs}"]}, "tiny.yaml")
    assert (error.source, error.where) == ("tiny.yaml", "einsums[0]")
    assert f"nested deeper than {MAX_DEPTH} levels" in error.message
    assert len(str(error)) < 300  # the 10,000-character Einsum is quoted around the column only


def test_expressions_within_the_depth_load() -> None:
    nested = "(" * (MAX_DEPTH - 2) + "X[p]" + ")" * (MAX_DEPTH - 2)
    cascade = cascade_from_dict({**TINY, "einsums": [f"Z[p] = {nested} + 1"]})
    assert cascade.einsums[0].name == "Z"


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize("value", [1e308, 1e30, float("inf"), float("nan"), 100.5, 0, -4])
def test_bad_set_values_are_blamed_on_the_set(value: float) -> None:
    error = _error(bind, library.load_cascade_spec("attention-1pass"), None, {"seq_len": value}, source="--set")
    assert (error.source, error.where) == ("--set", "seq_len")


def test_checked_params_are_remembered_by_value_and_type() -> None:
    """bind remembers a layer's checked params: a bool after an equal int is still refused, a list (unhashable)
    too, and an int and a float of one value bind alike."""
    cascade = library.load_cascade_spec("attention-1pass")
    assert bind(cascade, {"seq_len": 256, "heads": 1}).rank_sizes["M"] == 256
    assert _error(bind, cascade, {"seq_len": 256, "heads": True}).where == "params.heads"
    assert "expected a number" in _error(bind, cascade, {"seq_len": 256, "heads": [1]}).message
    assert bind(cascade, {"seq_len": 256.0, "heads": 1}).params == bind(cascade, {"seq_len": 256, "heads": 1}).params


def test_huge_sizes_name_the_limit_and_how_to_raise_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cascade = library.load_cascade_spec("attention-1pass")
    assert "ARCHSIM_MAX_SIZE" in _error(bind, cascade, None, {"seq_len": 2**25}, source="--set").message
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", str(2**26))
    assert bind(cascade, None, {"seq_len": 2**25}).rank_sizes["M"] == 2**25


def test_rank_sizes_in_a_cascade_file_are_within_the_limit() -> None:
    cascade = cascade_from_dict({**TINY, "params": {"word_bytes": 2}, "ranks": {"P": 10**11},
                                 "einsums": ["Z[p] = X[p]"]}, "tiny.yaml")
    error = _error(bind, cascade)
    assert (error.source, error.where) == ("tiny.yaml", "ranks.P") and "ARCHSIM_MAX_SIZE" in error.message


def test_rank_sizes_are_integers() -> None:
    error = _error(bind, library.load_cascade_spec("attention-1pass"), None, {"M0": 2.5}, source="--set")
    assert (error.source, error.where) == ("--set", "M0")


@pytest.mark.parametrize(("value", "fragment"), [(".nan", "finite"), ("1.0e+30", "limit"), (".inf", "limit"),
                                                 ("2.5", "integer"), ("0", "at least 1"), ("abc", "number"),
                                                 ("1e30", "number")])  # YAML 1.1 reads 1e30 as text
def test_bad_workload_values_are_blamed_on_the_workload_file(tmp_path: Path, value: str, fragment: str) -> None:
    path = _write(tmp_path, BERT.read_text().replace("hidden: 768", f"hidden: {value}"), "workload.yaml")
    error = _error(library.load_workload_spec, path)
    assert (error.source, error.where) == (str(path), "params.hidden")
    assert fragment in error.message


def test_unknown_workload_params_list_the_vocabulary(tmp_path: Path) -> None:
    error = _error(library.load_workload_spec, _bert_without(tmp_path, hiden=768))
    assert error.where == "params.hiden" and all(name in error.message for name in PARAMS)


def test_shipped_workloads_use_only_the_vocabulary() -> None:
    for name in library.names("workloads"):
        workload = library.load_workload_spec(name)
        assert workload.path == str(library.find("workloads", name))
        assert set(workload.params) <= set(PARAMS)
    for name in library.names("sweeps", SWEEPS_PACKAGE):
        load_sweep_spec(name)


# ---------------------------------------------------------------- no fallback to a cascade's toy defaults


@pytest.mark.parametrize("size", ["head_dim", "batch", "word_bytes"])
def test_a_workload_missing_a_model_size_names_the_file_and_key(tmp_path: Path, size: str) -> None:
    """The silent wrong answer of the issue: BERT without head_dim took the cascade's head_dim 8 (0.37 ms)."""
    path = _bert_without(tmp_path, **{size: None})
    workload = library.load_workload_spec(path)
    for call, option in ((lambda: bind(library.load_cascade_spec("attention-1pass"), workload), True),
                         (lambda: prepare("fusemax", workload=str(path), sets={"seq_len": 1024}), False),
                         (lambda: run_point("fusemax", workload=workload, sets={"seq_len": 1024}), False)):
        error = _error(call)
        assert (error.source, error.where) == (str(path), f"params.{size}")
        assert "attention-1pass binds" in error.message and "add it to the workload" in error.message
        assert (f"--set {size}=N" in error.message) == option  # prepare's sets are no --set (the CLI passes it)
    # Given by the caller's sets instead, the size binds.
    point = prepare("fusemax", workload=workload, sets={"seq_len": 1024, size: 64 if size != "word_bytes" else 2})
    assert point.binding.rank_sizes["M"] == 1024


def test_complete_workload_binds_its_sizes() -> None:
    """bert-base's own numbers reach the ranks (heads 12, head_dim 64, batch 64 in workloads/bert-base.yaml)."""
    binding = bind(library.load_cascade_spec("attention-1pass"), library.load_workload_spec("bert-base"))
    assert (binding.rank_sizes["B"], binding.rank_sizes["H"], binding.rank_sizes["E"]) == (64, 12, 64)


def test_toy_defaults_that_do_not_fit_the_mapping_say_so(cli) -> None:
    result = cli("run", "--mapping", "fusemax", expect=2)
    assert "M=16 is not divisible by M0=256" in result.output
    assert "seq_len=16 is attention-1pass's small default" in result.output and "--workload" in result.output


# ---------------------------------------------------------------- execute


def test_execute_refuses_sizes_it_cannot_hold(cli) -> None:
    for args in (("--set", "seq_len=100000"), ("--set", "seq_len=1e30"),
                 ("--workload", "llama-65b", "--set", "M0=256")):
        start = time.monotonic()
        result = cli("execute", "attention-1pass-causal", *args, expect=2)
        assert time.monotonic() - start < 10
        assert "limit" in result.output and "Traceback" not in result.output


def test_execute_guard_names_the_tensor_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    binding = bind(library.load_cascade_spec("attention-3pass"))  # B=H=2, P=M=16, E=F=8: QK has 2*2*16*16
    monkeypatch.setenv("ARCHSIM_MAX_EXECUTE_ELEMENTS", str(2 * 2 * 16 * 16 * 8 - 1))  # QK's space has e too
    for call in (check_size, random_inputs):
        error = _error(call, binding)
        assert error.where == "QK" and "ARCHSIM_MAX_EXECUTE_ELEMENTS" in error.message
    monkeypatch.setenv("ARCHSIM_MAX_EXECUTE_ELEMENTS", str(2 * 2 * 16 * 16 * 8))
    assert set(execute(binding, random_inputs(binding))) >= {"QK", "AV"}


@pytest.mark.parametrize("line", ["layers: 12 ", "hidden: 768", "kv_heads: 12 "])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_inf_model_sizes_are_refused_at_load(tmp_path: Path, line: str, value: str) -> None:
    """Issue 12 found NaN/inf accepted for layers, hidden and kv_heads (exit 0)."""
    key = line.split(":")[0]
    path = _write(tmp_path, BERT.read_text().replace(line, f"{key}: {value} "), "workload.yaml")
    error = _error(library.load_workload_spec, path)
    assert (error.source, error.where) == (str(path), f"params.{key}")


def test_a_partition_that_does_not_divide_says_where_its_sizes_came_from(tmp_path: Path) -> None:
    """M0 from a mapping's set: and seq_len from a workload file: the error names both specs (it named only the
    cascade before, though neither value was the cascade's), by name, not by file (a sweep stores the message)."""
    from archsim.point import run_point

    mapping = tmp_path / "m.yaml"
    mapping.write_text(library.find("mappings", "fusemax").read_text().replace("set: {M0: 256}", "set: {M0: 255}"))
    workload = library.find("workloads", "bert-base")
    error = _error(run_point, str(mapping), workload=str(workload))
    assert error.where == "partition.M"
    assert error.message.endswith("(seq_len=1024 from workload bert-base, M0=255 from mapping m); the nearest "
                                  "multiples are 1020 and 1275 (to model a padded sequence, give one of them)")


@pytest.mark.parametrize(("mapping", "where", "multiples"), [
    ("fusemax", "partition.M: M=1000 is not divisible by M0=256", "nearest multiples are 768 and 1024"),
    ("flat", "rank M: size 1000 is not a multiple of the other factors (256)", "nearest multiples are 768 and 1024"),
    ("unfused", "rank M: size 1000 is not a multiple of the other factors (256)",
     "nearest multiples are 768 and 1024"),
])
def test_a_length_the_tiles_do_not_divide_names_the_multiples_around_it(cli, mapping, where, multiples) -> None:
    """A length the tiling does not divide is refused (the models need whole tiles), naming the nearest lengths
    that tile, for a user who means to model a padded sequence; nothing is padded for them."""
    result = cli("run", "--mapping", mapping, "--workload", "bert-base", "--set", "seq_len=1000", expect=2)
    assert where in result.output and multiples in result.output
    assert len(result.output.strip().splitlines()) == 1
    small = cli("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "seq_len=100", expect=2)
    assert "the smallest multiple is 256" in small.output


def test_a_finite_number_refused_says_finite() -> None:
    """`finite_number` had said "expected a number (or inf, -inf)" for a list, then refused `.inf` as not finite."""
    with pytest.raises(SpecError, match=r"x\.yaml: placement\[0\]\.op_per_byte_below: expected a finite number, got "
                                        r"\[16\]"):
        finite_number([16], "x.yaml", "placement[0].op_per_byte_below")
    with pytest.raises(SpecError, match="expected a finite number, got inf"):
        finite_number(float("inf"), "x.yaml", "op_per_byte_below")
    with pytest.raises(SpecError, match=r"expected a number \(or inf, -inf\), got \[16\]"):
        number([16], "x.yaml", "peak")
