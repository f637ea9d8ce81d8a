"""Extreme but legal inputs and determinism (the s24 audit of both): a limit that ends where float64 stops counting,
a serving run whose one request would take most of an hour, an error named the same whatever the hash seed, and a
kernel refusal that says how many sequences it was asked for."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from archsim.cli import main

REFERENCE_CSV = Path(__file__).parents[1] / "archsim/gpu/reference/attention_measured.csv"


def _run(*args: str, env: dict | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_the_size_limit_stops_where_float64_stops_counting_whole_numbers():
    """Sizes pass through float64: 2**53 + 1 tokens had read as 2**53 (a multiple of FuseMax's 256-token tiles)."""
    code, output = _run("analyze", "attention-1pass-causal", "-w", "gpt3-7b", env={"ARCHSIM_MAX_SIZE": str(10**22)})
    assert code == 2 and output == ("error: ARCHSIM_MAX_SIZE: expected a positive integer up to 9007199254740992 "
                                    "(environment variable), got '10000000000000000000000'\n"), output
    code, output = _run("analyze", "attention-1pass-causal", "-w", "gpt3-7b", "--set", "tile_kv=64",
                        env={"ARCHSIM_MAX_SIZE": str(2**53)})
    assert code == 0, output


def test_a_request_wanting_more_output_tokens_than_a_run_of_minutes_is_refused(tmp_path):
    trace = tmp_path / "long.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,16777216\n")
    code, output = _run("simulate", "-s", "gpu", "-w", "llama3-8b", "--trace", str(trace))
    assert code == 2 and output.startswith(f"error: {trace}: line 2: output_tokens: expected at most 1048576 "), \
        output
    assert "ARCHSIM_MAX_OUTPUT_TOKENS" in output
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,8\n")
    code, output = _run("simulate", "-s", "gpu", "-w", "llama3-8b", "--trace", str(trace),
                        env={"ARCHSIM_MAX_OUTPUT_TOKENS": "4"})
    assert code == 2 and "expected at most 4 " in output, output


def test_a_predicate_using_two_partitioned_ranks_and_their_parts_names_the_same_one_whatever_the_hash_seed(tmp_path):
    """`check` iterated a set of variables: which of m and p it named changed with PYTHONHASHSEED."""
    cascade = tmp_path / "twopart.yaml"
    cascade.write_text("""name: twopart
params: {seq_len: 16, tile: 4, word_bytes: 2}
ranks: {P: seq_len, M: seq_len, M0: tile, P0: tile}
partition: {M: [M1, M0], P: [P1, P0]}
inputs: {A: [P, M]}
einsums: |
  B[p,m] = A[p,m] where m1 + m + p1 + p <= 100 else 0
outputs: [B]
""")
    seen = set()
    for seed in ("0", "1", "2", "3", "12345"):
        done = subprocess.run([sys.executable, "-m", "archsim", "check", str(cascade)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONHASHSEED": seed}, check=False)
        seen.add(done.stdout + done.stderr)
    assert len(seen) == 1 and "the predicate uses both m and its parts" in seen.pop()


def test_a_kernel_refusal_says_how_many_sequences_it_was_asked_for():
    """Where the memory is not modelled (training at tp 2): the kernel's refusal is the row's reason (with the
    memory modelled, such a point is the memory row, tests/test_parallel_refusals_s37.py)."""
    code, output = _run("parallel", "--scheme", "ring", "--devices", "1,2", "-w", "llama3-8b", "--seq-len", "2",
                        "--batch", "16777216", "--direction", "fwd+bwd", "--tp", "2")
    assert code == 0 and "cannot run 16777216 sequences of 2 x 2 tokens" in output, output


def test_a_validation_row_keeps_text_that_is_no_plain_number():
    from archsim.gpu.validate import _typed

    assert [_typed(t) for t in ("512", "512.0", "True", "nan", "inf", "1_000", "\u0661\u0660", "A100")] == [
        512, 512.0, True, "nan", "inf", "1_000", "\u0661\u0660", "A100"]


def test_one_size_option_takes_one_number_even_repeated(tmp_path):
    code, output = _run("gpu-roofline", "--seq-len", "8K,8K", "--out", str(tmp_path / "r"))
    assert code == 2 and "expected one whole number, got a list" in output, output


def test_a_tile_the_user_set_that_does_not_divide_the_sequence_is_told_its_divisors():
    """--set M0=1000 against 1024 tokens: the padded lengths (1000 would cut the sequence) and the tiles that fit."""
    code, output = _run("analyze", "attention-1pass", "-w", "bert-base", "--set", "M0=1000")
    assert code == 2 and output.rstrip().endswith(
        "; or set M0 to a divisor of M=1024: the divisors of 1024 nearest 1000 are 512 and 1024"), output
    code, output = _run("run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=1000")
    assert code == 2 and "or set M0" not in output, output  # the mapping's tile: padding is the advice


def test_check_says_a_bare_name_was_looked_for_in_the_library_too():
    code, output = _run("check", "zzz")
    assert code == 2 and output == "error: zzz: no such file, and no library spec of that name (archsim list names " \
                                   "them)\n", output
    code, output = _run("check", "zzz.yaml")
    assert code == 2 and output == "error: zzz.yaml: no such file\n", output


def test_calibrate_with_nothing_to_fit_names_why_the_rows_were_skipped(tmp_path):
    """A measurements CSV whose GPU label no preset matches: calibrate said only that no row was a modelled kernel
    and GPU; validate named the label."""
    with REFERENCE_CSV.open(newline="") as f:
        header, *rows = csv.reader(f)
    at = header.index("gpu")
    labelled = [[*cells[:at], "NVIDIA L4", *cells[at + 1:]] for cells in rows[:24]]
    path = tmp_path / "l4.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *labelled])
    code, output = _run("calibrate", "--measurements", str(path))
    assert code == 1 and "of the split's rows: the GPU label 'NVIDIA L4' matches no preset" in output, output
