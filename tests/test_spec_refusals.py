"""Spec values that used to be read silently as something else, each now refused naming its file and field: an
offset on a recurrence's final slot, a constant slot beyond its rank, a key written twice, a cascade parameter no
rank, Einsum or mask reads (or no `word_bytes`), an overflowing number, `/` in a mapping factor rounding down,
falsy wrong-typed optional fields of a mapping, an architecture word other than the tensors', a capacity on the
outermost level, a `--set` name given twice, a `--set` parameter that sizes only a rank the mapping fixes or that
the cascade does not read, a cascade's `requires:` not met. Found by fuzzing the CLI with mutated library files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.load import cascade_from_dict
from archsim.errors import SpecError
from archsim.spec_files import read_yaml

LIBRARY = Path(__file__).resolve().parents[1]  # the repository: einsum/, mappings/, archsim/arch/presets/
RECURRENCE = LIBRARY / "einsum" / "attention-1pass.yaml"  # AV reads the final slot RNV[b,h,M1,f,p]
FINAL_READ = "RNV[b,h,M1,f,p]"


def _error(fn, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        fn(*args, **kwargs)
    return info.value


def _cascade_text(old: str, new: str) -> dict:
    text = RECURRENCE.read_text()
    assert old in text
    return yaml.safe_load(text.replace(old, new))


@pytest.mark.parametrize("index", ["M1-3", "M1+1"])
def test_an_offset_on_a_final_slot_is_refused(index: str) -> None:
    """`RNV[b,h,M1-3,...]` read M1's slot as if the offset were not there (the result equal to the cascade's)."""
    error = _error(cascade_from_dict, _cascade_text(FINAL_READ, FINAL_READ.replace("M1", index)), "c.yaml")
    assert (error.source, error.where) == ("c.yaml", "einsums[11] (AV)")
    assert f"'{index}'" in error.message and "without an offset" in error.message


def test_a_constant_slot_beyond_its_rank_is_refused_when_bound() -> None:
    """Slot 5 of a recurrence over M1 = 4 (slots 0..4) raised an IndexError inside the interpreter."""
    cascade = cascade_from_dict(_cascade_text(FINAL_READ, "RNV[b,h,5,f,p]"), "c.yaml")
    error = _error(bind, cascade)
    assert (error.source, error.where) == ("c.yaml", "einsums[11] (AV)")
    assert "slot 5 is out of range: rank M1 has 5 slots (0 to 4) with M1=4" in error.message
    assert bind(cascade_from_dict(_cascade_text(FINAL_READ, "RNV[b,h,4,f,p]"), "c.yaml")).rank_sizes["M1"] == 4


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("name: a\nparams: {batch: 2, batch: 4}\n", 2, "duplicate key 'batch' (first at line 2, column 10)"),
    ("name: a\nx: 1\nname: b\n", 3, "duplicate key 'name' (first at line 1, column 1)"),
])
def test_a_key_written_twice_is_refused(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    error = _error(read_yaml, path)
    assert (error.source, error.where) == (str(path), f"line {line}") and fragment in error.message


def test_a_merge_key_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n")
    assert read_yaml(path)["m"] == {"x": 3, "y": 2}


def test_cascade_params_are_each_read_and_word_bytes_is_given() -> None:
    """A misspelled `word_byte: 4` left the width at a default of 2; now the unread name, or the missing width,
    is refused."""
    misspelled = _cascade_text("word_bytes: 2", "word_byte: 4")
    error = _error(cascade_from_dict, misspelled, "c.yaml")
    assert error.where == "params.word_byte" and "read by no rank size, Einsum or mask" in error.message
    assert _error(cascade_from_dict, _cascade_text(", word_bytes: 2", ""), "c.yaml").where == "params.word_bytes"
    for name in library.names("cascades"):  # every shipped cascade states its width and reads every parameter
        assert "word_bytes" in library.load_cascade_spec(name).params


def test_an_overflowing_number_literal_is_refused() -> None:
    error = _error(cascade_from_dict, _cascade_text("/ RD[b,h,M1,p]", "/ RD[b,h,M1,p] * 1e400"), "c.yaml")
    assert error.where == "einsums[11]" and "the number 1e400 is beyond the largest float" in error.message


def test_a_cascade_name_of_another_type_is_not_called_missing() -> None:
    error = _error(cascade_from_dict, _cascade_text("name: attention-1pass", "name: 5"), "c.yaml")
    assert (error.where, error.message) == ("name", "expected the cascade's name as a string, got int 5")


def test_a_factor_division_is_exact(cli, tmp_path: Path) -> None:
    """`P / 1000` at P = 4096 ran as 4 row blocks; `/` is now exact, and `//` rounds down."""
    data = yaml.safe_load((LIBRARY / "mappings" / "flat.yaml").read_text())
    path = tmp_path / "m.yaml"
    for factor, expect in (("P / 1000", 2), ("P // 1000", 0)):
        data["groups"][0]["loops"][0]["ranks"]["P"] = factor
        path.write_text(yaml.safe_dump(data, sort_keys=False))  # loops nest in the order their ranks are written
        result = cli("run", "--mapping", str(path), "--workload", "bert-base", "--set", "seq_len=4096",
                     expect=expect)
    assert "INFEASIBLE" not in result.output
    path.write_text(yaml.safe_dump({**data, "groups": [{**data["groups"][0], "loops": [
        {**data["groups"][0]["loops"][0], "ranks": {**data["groups"][0]["loops"][0]["ranks"], "P": "P / 1000"}},
        *data["groups"][0]["loops"][1:]]}]}))
    result = cli("run", "--mapping", str(path), "--workload", "bert-base", "--set", "seq_len=4096", expect=2)
    assert "groups[0].loops[0].ranks.P: 'P / 1000' gives 4.096, expected a positive integer ('//' rounds a " \
           "division down)" in result.output


@pytest.mark.parametrize(("field", "value", "where", "expected"), [
    ("keep", "0", "groups[0].keep", "expected a mapping of name -> [name, ...], got 0"),
    ("keep", "false", "groups[0].keep", "expected a mapping of name -> [name, ...], got False"),
    ("double_buffered", "0", "groups[0].double_buffered", "expected a list of names, got 0"),
])
def test_falsy_optional_mapping_fields_are_not_read_as_empty(cli, tmp_path: Path, field: str, value: str,
                                                             where: str, expected: str) -> None:
    """`keep: 0` ran as keeping nothing (0.00305 s and 1.31 GB of DRAM traffic against 0.00201 s and 0.40 GB)."""
    data = yaml.safe_load((LIBRARY / "mappings" / "fusemax.yaml").read_text())
    data["groups"][0][field] = yaml.safe_load(value)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    result = cli("run", "--mapping", str(path), "--workload", "bert-base", expect=2)
    assert f"{where}: {expected}" in result.output


def test_the_architecture_word_is_the_tensors(cli, tmp_path: Path) -> None:
    """A 4-byte architecture ran a 2-byte workload as if its word_bytes were not there."""
    arch = tmp_path / "a.yaml"
    arch.write_text((LIBRARY / "archsim" / "arch" / "presets" / "fusemax.yaml").read_text()
                    .replace("word_bytes: 2", "word_bytes: 4"))
    result = cli("run", "--arch", str(arch), "--mapping", "fusemax", "--workload", "bert-base", expect=2)
    assert f"{arch}: word_bytes: fusemax holds and computes 4-byte words, but the tensors of attention-1pass are " \
           "bound with 2-byte elements" in result.output
    result = cli("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "word_bytes=1", expect=2)
    assert "bound with 1-byte elements" in result.output


def test_the_outermost_level_has_no_capacity(cli, tmp_path: Path) -> None:
    """A DRAM of 1024 B ran as if unbounded: the model does not bound the tensors' home."""
    arch = tmp_path / "a.yaml"
    text = (LIBRARY / "archsim" / "arch" / "presets" / "fusemax.yaml").read_text()
    old = "capacity_bytes: null                  # off chip, unbounded"
    assert old in text
    arch.write_text(text.replace(old, "capacity_bytes: 1024"))
    result = cli("run", "--arch", str(arch), "--mapping", "fusemax", "--workload", "bert-base", expect=2)
    assert f"{arch}: memories.DRAM.capacity_bytes: expected null" in result.output


def test_a_set_name_given_twice_is_refused(cli) -> None:
    result = cli("analyze", "attention-1pass", "--set", "seq_len=32", "--set", "seq_len=64", expect=2)
    assert "--set: seq_len=64: seq_len is set twice (also seq_len=32)" in result.output


def test_a_set_parameter_a_mapping_overrides_is_refused(cli) -> None:
    """fusemax's `set: {M0: 256}` fixes the key tile, so `--set tile_kv=128` printed the 256-key result unchanged;
    `--set M0=128` changes it."""
    result = cli("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "tile_kv=128", expect=2)
    assert ("--set: tile_kv: changes nothing: " in result.output
            and "changes nothing: mapping fusemax sets rank M0 = 256 (its set:), the only size tile_kv gives; set "
                "M0 instead" in result.output), result.output
    default, smaller = (cli("run", "--mapping", "fusemax", "--workload", "bert-base", *sets, "--json").output
                        for sets in ((), ("--set", "M0=128")))
    assert default != smaller


def test_a_set_parameter_a_mapping_factor_reads_is_not_refused(cli, tmp_path: Path) -> None:
    """A mapping whose loop factor reads tile_kv (`P // (tile_kv * 256)`) is changed by `--set tile_kv`, though its
    `set:` fixes M0, the only rank tile_kv sizes: it was refused as changing nothing."""
    text = (LIBRARY / "mappings" / "fusemax.yaml").read_text()
    path = tmp_path / "m.yaml"
    path.write_text(text.replace("{P: search, E: ~, F: ~}", '{P: "P // (tile_kv * 256)", E: ~, F: ~}')
                    .replace("cascade: attention-1pass", f"cascade: {LIBRARY / 'einsum' / 'attention-1pass.yaml'}")
                    .replace("architecture: fusemax", "architecture: "
                             f"{LIBRARY / 'archsim' / 'arch' / 'presets' / 'fusemax.yaml'}"))
    one, four = (cli("run", "--mapping", str(path), "--workload", "bert-base", "--set", "seq_len=4096", "--set",
                     f"tile_kv={k}", "--json").output for k in (1, 4))
    assert one != four


def test_a_requirement_on_a_tile_the_mapping_fixes_reads_the_fixed_tile(cli, tmp_path: Path) -> None:
    """fusemax's `set: {M0: 256}` fixes the tile tile_kv sizes: a cascade's `requires: [tile_kv <= 64]` is checked
    at 256, the tile the point runs at (and reports), not at the cascade's test default 4."""
    cascade = tmp_path / "c.yaml"
    cascade.write_text((LIBRARY / "einsum" / "attention-1pass.yaml").read_text()
                       .replace("name: attention-1pass", "name: attention-1pass-req")
                       + 'requires: ["tile_kv <= 64"]\n')
    mapping = tmp_path / "m.yaml"
    mapping.write_text((LIBRARY / "mappings" / "fusemax.yaml").read_text()
                       .replace("cascade: attention-1pass", f"cascade: {cascade}")
                       .replace("architecture: fusemax", "architecture: "
                                f"{LIBRARY / 'archsim' / 'arch' / 'presets' / 'fusemax.yaml'}"))
    result = cli("run", "--mapping", str(mapping), "--workload", "bert-base", "--set", "seq_len=4096", expect=2)
    assert f"{mapping}: tile_kv: expected tile_kv <= 64" in result.output and "got 256 against 64" in result.output
    assert result.output.count(str(tmp_path)) == 1  # the line's file alone: the tile is the mapping's by name


def test_a_workload_size_the_cascade_does_not_read_is_refused(cli) -> None:
    """`--set kv_heads=4` on BERT (12 heads) with the multi-head fusemax ran as 12 K/V heads (the check read only
    the workload file); `--set ffn_dim` on an attention cascade changed nothing."""
    grouped = cli("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "kv_heads=4", expect=2)
    assert "--set: kv_heads: 4 K/V heads for 12 query heads (grouped-query), but cascade attention-1pass" in (
        grouped.output)
    unread = cli("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "ffn_dim=5", expect=2)
    assert "--set: ffn_dim: changes nothing: cascade attention-1pass reads no 'ffn_dim'" in unread.output
    cli("run", "--mapping", "fusemax", "--cascade", "attention-1pass-causal", "--workload", "llama3-8b", "--set",
        "kv_heads=32")  # multi-head: it runs


def test_a_cascade_requirement_is_checked_when_bound(cli) -> None:
    """Quest's budget of 100 pages over a 16-page cache counted 400 tokens of attention and failed its own check
    when executed (empty slots scoring 0 entered the softmax). Every size set: budget_pages alone would leave the
    others at their test defaults (`point.refuse_partial_model`)."""
    sizes = {"batch": 2, "heads": 2, "seq_len": 64, "head_dim": 8, "page": 4, "word_bytes": 2, "budget_pages": 100}
    result = cli("analyze", "quest-decode", *[a for k, v in sizes.items() for a in ("--set", f"{k}={v}")], expect=2)
    assert ("--set: budget_pages: expected S <= J (cascade quest-decode, requires[0]), got 100 against 16 with "
            "S=100, J=16 (budget_pages=100 from --set") in result.output
    rank = cli("analyze", "quest-decode", "--set", "S=100", expect=2)  # the rank set directly: checked too
    assert "--set: S: expected S <= J (cascade quest-decode, requires[0]), got 100 against 16" in rank.output
    cli("execute", "quest-decode", "--set", "budget_pages=16", "--check")  # every page: within the cache


@pytest.mark.parametrize(("requires", "fragment"), [
    ("budget_pages", "'budget_pages' is not a comparison (<, <=, >, >=, ==) of size expressions"),
    ("budget_pages <= pages", "unknown name 'pages' (params and ranks: "),
    ("budget_pages <= exp(page)", "is not a size expression"),
])
def test_a_bad_cascade_requirement_names_it(requires: str, fragment: str) -> None:
    data = read_yaml(LIBRARY / "einsum" / "quest-decode.yaml")
    data["requires"] = [requires]
    error = _error(cascade_from_dict, data, source="q.yaml")
    assert error.where == "requires[0]" and fragment in error.message, error


def test_execute_counts_values_that_are_not_finite(cli, tmp_path: Path) -> None:
    """A division by zero printed `mean nan, std nan` under numpy's warnings, line by line."""
    path = tmp_path / "c.yaml"
    path.write_text(RECURRENCE.read_text().replace("/ RD[b,h,M1,p]", "/ (RD[b,h,M1,p] * 0)"))
    result = cli("execute", str(path))
    assert "no finite value (512 of 512 values not finite)" in result.output
    assert "RuntimeWarning" not in result.output


def test_a_test_default_under_a_workload_is_refused(cli, tmp_path) -> None:
    """With a workload, a cascade choice nobody gave would run at the cascade's test size: block-sparse's 4-key
    blocks under BERT at 16K ran at 3.8 % of dense (0.0179 s); a mapping without its `set: M0` would tile keys by
    4. Each is refused naming where to give it; given, the point runs."""
    out = cli("run", "--mapping", "fusemax", "--cascade", "attention-block-sparse", "--workload", "bert-base",
              "--set", "seq_len=16384", expect=2).output
    assert "attention-block-sparse.yaml: params.block: missing: attention-block-sparse's block would be its test " \
           "default (4) under bert-base's sizes; give it (--set block=N)" in out
    cli("run", "--mapping", "fusemax", "--cascade", "attention-block-sparse", "--workload", "bert-base",
        "--set", "seq_len=16384", "--set", "block=256")
    mapping = library.load_mapping_spec("fusemax")
    text = Path(mapping.source).read_text().replace("set: {M0: 256}", "set: {}")
    assert text != Path(mapping.source).read_text()
    (tmp_path / "m.yaml").write_text(text)
    out = cli("run", "--mapping", str(tmp_path / "m.yaml"), "--workload", "bert-base", expect=2).output
    assert "m.yaml: set: missing: attention-1pass's tile_kv would be its test default (4)" in out and "set M0" in out
    cli("run", "--mapping", str(tmp_path / "m.yaml"), "--workload", "bert-base", "--set", "M0=256")  # the rank
