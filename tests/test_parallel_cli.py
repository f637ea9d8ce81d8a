"""`archsim parallel` (issue 18's CLI): the grid of schemes x devices x lengths, its text and JSON rows, infeasible
points as rows in a grid and as exit 2 alone, and the --out report. Llama3-8B (32 heads, 8 KV heads) at 8K-32K
tokens on 1..8 H100s of the default hgx-h100 topology: small points the GPU model times in milliseconds."""

from __future__ import annotations

import csv
import json

import pytest

from archsim.commands.parallel_cmd import TEXT_COLUMNS

BASE = ("parallel", "--workload", "llama3-8b")
COLUMNS = ("feasible", "reason", "scheme", "devices", "seq_len", "latency_s", "compute_s", "comm_s",
           "exposed_comm_s", "hidden_comm_s", "ideal_s", "efficiency", "memory_bytes", "max_context_tokens")


def _points(cli, *args: str) -> list[dict]:
    return json.loads(cli(*BASE, *args, "--json").output)["points"]


def test_text_rows_have_the_columns_one_per_point(cli):
    lines = cli(*BASE, "--scheme", "ring,zigzag", "--devices", "1,2,8", "--seq-len", "8K").output.splitlines()
    assert "hgx-h100 (default)" in lines[0] and "h100-sxm5" in lines[0] and "per layer" in lines[0]
    for header in ("scheme", "P", "N", *(h for h, _, _ in TEXT_COLUMNS)):
        assert header in lines[1]
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], int(r[1]), int(r[2])) for r in rows] == [(s, p, 8192) for s in ("ring", "zigzag")
                                                            for p in (1, 2, 8)]
    assert all(len(r) == 3 + len(TEXT_COLUMNS) for r in rows)


@pytest.fixture(scope="module")
def causal_grid():
    from click.testing import CliRunner

    from archsim.cli import main

    result = CliRunner().invoke(main, [*BASE, "--scheme", "ring,zigzag", "--devices", "2,4,8", "--seq-len", "32K",
                                       "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["points"]


def test_grid_points_carry_the_columns(causal_grid):
    assert len(causal_grid) == 6  # 2 schemes x 3 device counts
    assert [(p["scheme"], p["devices"]) for p in causal_grid] == [(s, d) for s in ("ring", "zigzag") for d in (2, 4, 8)]
    for point in causal_grid:
        assert set(COLUMNS) <= set(point) and point["feasible"] and point["reason"] == ""
        assert point["seq_len"] == 32768 and point["causal"] and point["topology"] == "hgx-h100"


def test_efficiency_is_ideal_over_time(causal_grid):
    for point in causal_grid:
        assert point["efficiency"] == pytest.approx(point["ideal_s"] / point["latency_s"], rel=1e-12)
        # the time is the busiest device's compute plus what the schedule does not hide
        assert point["latency_s"] == pytest.approx(point["compute_s"] + point["exposed_comm_s"], rel=1e-9)


def test_causal_zigzag_beats_the_ring_at_eight_devices(causal_grid):
    """Causal, in blocks of c x c: the plain ring's last device computes P - 1 full blocks and its own causal (half)
    one, P - 1/2 blocks, while the ideal is the N x N / 2 causal work over P devices, P / 2 blocks: efficiency
    P / (2P - 1) = 8/15 at P = 8 when the hops hide (they do here: 0.3 ms of comm against 6 ms). Zigzag gives
    every device P / 2 blocks: near 1, below it by the kernel's lower efficiency on half blocks."""
    at8 = {p["scheme"]: p["efficiency"] for p in causal_grid if p["devices"] == 8}
    assert at8["ring"] == pytest.approx(8 / 15, rel=0.1)
    assert at8["zigzag"] > at8["ring"] + 0.25
    assert at8["zigzag"] == pytest.approx(1.0, abs=0.15)


def test_ulysses_on_three_devices_alone_exits_2_naming_heads(cli):
    result = cli(*BASE, "--scheme", "ulysses", "--devices", "3", "--seq-len", "12K", expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "params.heads" in lines[0] and "divisible by 3" in lines[0]


def test_ulysses_on_three_devices_in_a_grid_is_an_infeasible_row(cli):
    points = _points(cli, "--scheme", "ring,ulysses", "--devices", "3", "--seq-len", "12K")
    ring, ulysses = points
    assert ring["feasible"] and ring["latency_s"] > 0
    assert not ulysses["feasible"] and "params.heads" in ulysses["reason"]
    assert ulysses["latency_s"] is None and ulysses["efficiency"] is None and ulysses["devices"] == 3
    text = cli(*BASE, "--scheme", "ring,ulysses", "--devices", "3", "--seq-len", "12K").output
    assert "infeasible: " in text.splitlines()[-1] and "params.heads" in text.splitlines()[-1]


def test_seq_len_not_divisible_exits_2_naming_seq_len(cli):
    """zigzag cuts N into 2P chunks: 8K + 8 over 8 devices is not a multiple of 16."""
    result = cli(*BASE, "--scheme", "zigzag", "--devices", "8", "--seq-len", "8200", expect=2)
    assert result.output.startswith("error: --seq-len: ") and "multiple of 16" in result.output


@pytest.mark.parametrize(("args", "option"), [
    (("--scheme", "tree", "--devices", "2"), "--scheme"),
    (("--scheme", "ring", "--devices", "2", "--topology", "no-such-cluster"), "--topology"),
    (("--scheme", "ring", "--devices", "2", "--gpu", "no-such-gpu"), "--gpu"),
    (("--scheme", "ring", "--devices", "2,0"), "--devices"),
    (("--scheme", "ring", "--devices", "2", "--kernel", "no-such-kernel"), "--kernel"),
    (("--scheme", "usp", "--devices", "2"), "--ulysses"),
])
def test_bad_options_exit_2_naming_the_option(cli, args, option):
    result = cli(*BASE, *args, "--seq-len", "8K", expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0]


def test_unknown_workload_exits_2_naming_it(cli):
    result = cli("parallel", "--scheme", "ring", "--devices", "2", "--workload", "no-such-model", "--seq-len", "8K",
                 expect=2)
    assert result.output.startswith("error: --workload: no-such-model: ")


@pytest.mark.parametrize(("extra", "field"), [("word_bytes: 2\n  kv_lora_rank: 512\n  rope_dim: 64",
                                              "params.kv_lora_rank"),
                                             ("word_bytes: 2\n  window: 4096", "params.window"),
                                             ("word_bytes: 1", "params.word_bytes"),
                                             ("word_bytes: 4", "params.word_bytes")])
@pytest.mark.parametrize("grid", [("--devices", "2"), ("--devices", "1,2", "--scheme", "ring,zigzag")])
def test_an_attention_the_kernels_do_not_model_exits_2_naming_it(cli, tmp_path, extra, field, grid):
    """An MLA or sliding-window workload was timed as dense GQA attention (the latent, the RoPE dimensions and the
    window dropped), an fp8 or fp32 one at bf16 beside its own word size's memory; it is refused, in one line naming
    the file and the field, for a grid too (every row was infeasible, exit 0)."""
    path = tmp_path / "model.yaml"
    path.write_text("name: m\ndescription: d\nsource: s\nblock: llama\nparams:\n  hidden: 4096\n  heads: 32\n"
                    f"  kv_heads: 8\n  head_dim: 128\n  ffn_dim: 14336\n  layers: 32\n  vocab: 128256\n"
                    f"  {extra}\n")
    result = cli("parallel", "--scheme", "ring", *grid, "--workload", str(path), "--seq-len", "8K", expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {field}: ")


def test_out_writes_the_rows_figures_and_page(cli, tmp_path):
    out = tmp_path / "report"
    text = cli(*BASE, "--scheme", "ring,zigzag", "--devices", "2,4", "--seq-len", "8K,16K", "--out", str(out)).output
    assert f"{out}/index.html" in text
    with open(out / "parallel.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and set(COLUMNS) <= set(rows[0])
    for axis in ("devices", "seq_len"):
        for kind in ("time", "efficiency"):
            assert (out / f"{kind}_vs_{axis}.png").stat().st_size > 0
            with open(out / f"{kind}_vs_{axis}.csv") as f:
                assert len(list(csv.DictReader(f))) == 8  # every feasible point on each figure
    page = (out / "index.html").read_text()
    assert all(f"{kind}_vs_{axis}.png" in page for kind in ("time", "efficiency") for axis in ("devices", "seq_len"))


def test_a_point_over_the_gpus_memory_is_infeasible_with_its_reason(cli):
    """Llama-3 405B in bf16 cut TP8 puts 810 GB / 8 of weights on each 80 GiB H100: an infeasible row naming its
    memory, the weights and the GPU's capacity (a record, not an exit 2: the inputs are well formed), with no numbers,
    as a sweep stores it (its time and memory were printed beside a false `feasible`, and a report's CSV showed the
    time and an efficiency of 1.0). With the FFN in FP8 (Meta's serving, llama3-405b-fp8) the weights fit and so
    does the point."""
    args = ("--scheme", "zigzag", "--devices", "2", "--seq-len", "8K", "--tp", "8")
    bf16, = json.loads(cli("parallel", "--workload", "llama3-405b", *args, "--json").output)["points"]
    assert not bf16["feasible"] and bf16["latency_s"] is None and bf16["memory_bytes"] is None
    assert bf16["max_context_tokens"] is None and bf16["efficiency"] is None
    assert float(bf16["reason"].split("memory per device ")[1].split(" GB")[0]) * 1e9 > 80 * 2**30
    assert "exceeds h100-sxm5's 85.9 GB (80 GiB)" in bf16["reason"] and "GB of weights" in bf16["reason"]
    assert "no context fits" in bf16["reason"]
    text = cli("parallel", "--workload", "llama3-405b", *args).output.splitlines()
    assert text[-1].split()[:3] == ["zigzag", "2", "8192"] and "infeasible: memory per device" in text[-1]
    fp8, = json.loads(cli("parallel", "--workload", "llama3-405b-fp8", *args, "--json").output)["points"]
    assert fp8["feasible"] and fp8["reason"] == "" and fp8["memory_bytes"] <= 80 * 2**30
    assert fp8["max_context_tokens"] >= 8192


def test_decode_holds_the_weights_and_the_kv_cache(cli):
    """A decode step's memory is the weights and the KV cache, not the prefill's working set: Llama-3 405B (FP8
    FFN) at 1M cached tokens on 8 TP8 nodes holds 1M / 8 tokens of one KV head per GPU for 126 layers beside its
    weights, and fits; on 2 nodes the cache alone is over the rest of the 80 GiB."""
    base = ("parallel", "--workload", "llama3-405b-fp8", "--seq-len", "1M", "--tp", "8", "--direction", "decode",
            "--scheme", "distattention", "--json")
    eight, = json.loads(cli(*base, "--devices", "8").output)["points"]
    two, = json.loads(cli(*base, "--devices", "2").output)["points"]
    kv = 1048576 // 8 * 126 * 1 * 128 * 2 * 2  # tokens x layers x KV heads per GPU x head_dim x (K, V) x bf16
    prefill, = json.loads(cli("parallel", "--workload", "llama3-405b-fp8", "--seq-len", "1M", "--tp", "8",
                              "--scheme", "zigzag", "--devices", "8", "--json").output)["points"]
    assert eight["feasible"] and eight["memory_bytes"] < prefill["memory_bytes"]
    two_bytes = float(two["reason"].split("memory per device ")[1].split(" GB")[0]) * 1e9  # its reason's figure
    weights = eight["memory_bytes"] - kv
    assert two_bytes == pytest.approx(weights + 4 * kv, abs=0.05e9)  # 2 nodes: four times the tokens per GPU
    assert not two["feasible"] and "exceeds h100-sxm5's 85.9 GB (80 GiB)" in two["reason"]


def test_a_workload_the_memory_model_cannot_expand_exits_2_unless_no_point_reads_its_memory(cli):
    """BERT names no decoder block: a grid of its points was every row infeasible with exit 0. Training at tp > 1
    models no memory, so there it runs."""
    args = ("parallel", "--scheme", "ring,zigzag", "--devices", "2", "--workload", "bert-base", "--seq-len", "8K")
    result = cli(*args, expect=2)
    assert result.output.startswith("error: ") and "bert-base.yaml: block: missing" in result.output
    assert "zigzag" in cli(*args, "--direction", "fwd+bwd", "--tp", "2").output


def test_a_layer_grid_of_a_workload_without_a_block_exits_2_where_no_memory_is_modelled(cli):
    """Training at tp > 1 models no memory, but the layer scope builds the layer's other ops from the block:
    BERT's grid there was every row infeasible with exit 0."""
    result = cli("parallel", "--scheme", "ring,zigzag", "--devices", "2,4", "--workload", "bert-base",
                 "--seq-len", "8K", "--direction", "fwd+bwd", "--tp", "2", "--scope", "layer", expect=2)
    assert result.output.startswith("error: ") and "bert-base.yaml: block: missing" in result.output


def test_allgather_runs_at_the_largest_context_it_prints(cli):
    """The GPU model's operand check counted the gathered call's Q and O once per square it is timed as (P times),
    so allgather refused the largest context its memory model printed (3557312 tokens: '143.4 GB' of operands)."""
    args = ("parallel", "--scheme", "allgather", "--devices", "32", "--workload", "llama3-8b", "--direction",
            "fwd+bwd", "--json")
    (row,) = json.loads(cli(*args, "--seq-len", "1M").output)["points"]
    largest = row["max_context_tokens"]
    assert largest > 1024 * 1024
    (at,) = json.loads(cli(*args, "--seq-len", str(largest)).output)["points"]
    assert at["feasible"] and at["max_context_tokens"] == largest


def test_json_points_are_record_rows(cli):
    """Each `--json` point is the point's `Record.row()` (target_kind, target, feasible, reason, then the record's
    columns), as `run --json` and `simulate --json` print theirs, with `hidden_comm_s` added; an infeasible point
    keeps the row's keys with no numbers."""
    from archsim import library
    from archsim.systems.seqpar import parallel_time
    from archsim.systems.seqpar_spec import ParallelSpec
    from archsim.systems.topology import load_topology

    fits, refused = _points(cli, "--scheme", "ring,ulysses", "--devices", "16", "--seq-len", "8192",
                            "--topology", "hgx-h100")
    hgx = load_topology("hgx-h100")
    row = parallel_time(ParallelSpec("ring", 16, library.load_workload_spec("llama3-8b"), 8192, hgx.gpu,
                                     hgx)).record().row()
    assert list(fits)[:4] == ["target_kind", "target", "feasible", "reason"]
    assert list(fits) == [*row, "hidden_comm_s"]
    assert fits["target_kind"] == "parallel" and fits["latency_s"] == pytest.approx(row["latency_s"], rel=1e-12)
    assert refused["feasible"] is False and "divisible by 16" in refused["reason"]
    assert list(refused) == list(fits) and refused["latency_s"] is None
