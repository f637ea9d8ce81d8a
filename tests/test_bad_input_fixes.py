"""Bad input that reached an internal error or was silently ignored (found by fuzzing the CLI with mutated specs):
each is now exit 2 with one line naming the file or option and the field."""

from __future__ import annotations

from pathlib import Path

import yaml

from archsim import library


def test_a_cascade_reference_that_is_no_name_is_refused(cli, tmp_path: Path) -> None:
    text = Path(library.load_cascade_spec("attention-1pass").source).read_text()
    for bad in ("[1]", "{a: 1}"):
        path = tmp_path / "c.yaml"
        path.write_text(text.replace("reference: attention", f"reference: {bad}  # was attention", 1))
        assert f"reference: {bad}" in path.read_text()
        out = cli("check", str(path), expect=2).output
        assert "c.yaml: reference: unknown reference" in out and "internal error" not in out, out


def test_serving_lengths_that_is_no_name_is_refused(cli, tmp_path: Path) -> None:
    sweep = Path(__file__).resolve().parent.parent / "archsim" / "dse" / "sweeps" / "neupims-channels.yaml"
    data = yaml.safe_load(sweep.read_text())
    data["serving"]["lengths"] = [1]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    out = cli("check", str(path), expect=2).output
    assert "s.yaml: serving.lengths: expected one of" in out and "internal error" not in out, out


def test_simulate_refuses_poisson_options_beside_a_trace(cli, tmp_path: Path) -> None:
    """--lengths and --seed shape Poisson requests; with --trace they changed nothing and were ignored."""
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,128,32\n")
    base = ("simulate", "--system", "neupims", "--workload", "gpt3-7b", "--trace", str(trace))
    for extra in (("--lengths", "kimi-ta"), ("--seed", "99")):
        out = cli(*base, *extra, expect=2).output
        assert "--lengths and --seed draw Poisson requests (--rate); a --trace gives them" in out
    cli(*base, "--json")


def test_check_reads_a_trace_as_simulate_does(cli, tmp_path: Path) -> None:
    """check could not tell a trace with a byte-order mark (simulate reads it), and passed an arrival at 1e308 s
    that simulate refuses."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfarrival_s,prompt_tokens,output_tokens\n0,10,10\n")
    assert cli("check", str(bom)).output == f"ok  {bom}: trace, 1 rows\n"
    late = tmp_path / "late.csv"
    late.write_text("arrival_s,prompt_tokens,output_tokens\n1e308,10,10\n")
    out = cli("check", str(late), expect=2).output
    assert out.startswith(f"error: {late}: line 2: arrival_s: expected a number of seconds from 0 to"), out


def test_a_folder_given_as_a_spec_is_named_as_a_folder(cli, tmp_path: Path) -> None:
    """A folder given for --workload said "no such file", though it exists."""
    out = cli("run", "-m", "fusemax", "-w", f"{tmp_path}/", expect=2).output
    assert out == f"error: {tmp_path}/: a folder or other non-file, expected a workload YAML file\n", out


def test_analyze_and_execute_refuse_a_size_the_cascade_does_not_read(cli) -> None:
    """run refused --set ffn_dim on an attention cascade (it changes nothing); analyze and execute with a workload
    accepted it."""
    said = "error: --set: ffn_dim: changes nothing: cascade attention-1pass reads no 'ffn_dim'"
    for command in (("analyze", "attention-1pass", "--workload", "bert-base", "--set", "M0=256"),
                    ("execute", "attention-1pass", "--workload", "bert-base", "--set", "seq_len=64", "--set",
                     "batch=1", "--set", "tile_kv=16")):
        assert cli(*command, "--set", "ffn_dim=4096", expect=2).output.startswith(said)
        cli(*command)  # without it the same command runs
