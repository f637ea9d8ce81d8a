"""`archsim measure`: the published shapes and FLOP convention, the interpreter run's CSV, and the no-GPU exit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.commands.benchmarks import attention_flops, benchmark_cases
from archsim.commands.measure import measure
from archsim.gpu.measurements import read_measurements

# The columns of the reference attention_measured.csv (shared/reference/gpu/), in order.
SCHEMA = ["source", "gpu", "kernel", "dtype", "causal", "batch", "heads", "head_dim", "seqlen", "direction",
          "metric", "value", "unit", "how_obtained", "note"]


def test_flop_convention_matches_gpu_md() -> None:
    # gpu.md §3: FA2 fwd+bwd at d=128, 16k tokens of one sequence (batch 1, 16 heads) is 7.7 TFLOP:
    # 3.5 · 4 · 1 · 16 · 16384² · 128 = 7.6965e12.
    assert attention_flops(1, 16, 16384, 128, False, "fwd+bwd") == pytest.approx(7.6965e12, rel=1e-4)
    # causal halves the count; the backward alone is 2.5x the forward: 2.5 · 4 · 2 · 64² · 16 / 2 = 655360.
    assert attention_flops(1, 2, 64, 16, True, "bwd") == 655360


def test_prefill_cases_follow_the_flashattention_benchmark() -> None:
    cases = benchmark_cases(("flash_fwd",), max_seqlen=None, tiny=False)
    # gpu.md §1.0: seqlen 512..16k x d 64/128 x causal off/on, batch·seqlen = 16384, heads·d = 2048.
    assert len(cases) == 6 * 2 * 2
    assert all(c.batch * c.seqlen == 16384 and c.heads * c.head_dim == 2048 for c in cases)
    assert {c.seqlen for c in benchmark_cases(("flash_fwd",), max_seqlen=2048, tiny=False)} == {512, 1024, 2048}


def test_interpret_run_writes_rows_in_the_reference_schema(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the command sets it too; this restores it afterwards. Set before
    pytest.importorskip("torch")  # triton is imported: triton 3.9 reads it at import
    pytest.importorskip("triton")
    out = tmp_path / "measurements.csv"
    result = CliRunner().invoke(measure, ["--interpret", "--max-seqlen", "32", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == SCHEMA
        rows = list(reader)
    assert {r["direction"] for r in rows} == {"fwd", "bwd", "fwd+bwd", "decode"}
    assert {r["source"] for r in rows} == {f"archsim measure (kernels/{k}.py)"
                                           for k in ("naive", "flash_fwd", "flash_bwd", "decode", "lightning")}
    for row in rows:
        assert row["how_obtained"] == "interpret (not a timing)"
        assert row["gpu"] == "CPU (Triton interpreter)" and "triton=" in row["note"] and "torch=" in row["note"]
        assert row["causal"] in {"True", "False"} and row["dtype"] == "fp16"
        assert int(row["seqlen"]) == 32 and int(row["batch"]) >= 1
        # a GQA decode names its KV heads in the schema's form, so validate models the case it ran
        assert row["heads"] == "16q/2kv" if row["direction"] == "decode" else int(row["heads"]) >= 1
        assert float(row["value"]) > 0
        expected_unit = {"throughput": "TFLOPs/s", "latency": "us" if row["direction"] == "decode" else "ms"}
        assert row["unit"] == expected_unit[row["metric"]], row
    # each throughput row is its FLOPs over the latency row of the same case, e.g. flash fwd at b=1, h=2, s=32,
    # d=64, non-causal: 4 · 1 · 2 · 32² · 64 = 524288 FLOPs.
    fwd = [r for r in rows
           if r["source"].endswith("flash_fwd.py)") and r["head_dim"] == "64" and r["causal"] == "False"]
    latency_s = float(next(r["value"] for r in fwd if r["metric"] == "latency")) * 1e-3
    throughput = float(next(r["value"] for r in fwd if r["metric"] == "throughput"))
    assert throughput == pytest.approx(524288 / latency_s / 1e12, rel=1e-5)

    measurements, skipped = read_measurements(out)  # interpreter rows are not timings: validate compares none
    assert not measurements
    assert {s.reason for s in skipped} == {"not a timing: run under the Triton interpreter on a CPU"}

    # a case whose rows the file holds is kept, not measured again (a repeated configuration makes the file
    # unreadable to validate; a killed run resumes); one it lacks is appended under the one header
    lines = out.read_text().splitlines()
    decode = [line for line in lines if "kernels/decode.py" in line]
    out.write_text("\n".join(line for line in lines if line not in decode) + "\n")
    args = ["--interpret", "--kernels", "decode", "--max-seqlen", "32", "--out", str(out)]
    again = CliRunner().invoke(measure, args)
    assert again.exit_code == 0, again.output
    after = out.read_text().splitlines()
    assert len(after) == len(lines) and after.count(",".join(SCHEMA)) == 1
    assert [line for line in after if "kernels/decode.py" in line] != []
    kept = CliRunner().invoke(measure, args)
    assert kept.exit_code == 0 and "kept" in kept.output and out.read_text().splitlines() == after


def test_without_a_gpu_it_says_so_and_exits_2(tmp_path: Path, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(measure, ["--out", str(out)])
    assert result.exit_code == 2
    assert "no GPU available" in result.output and result.output.count("error:") == 1
    assert not out.exists()


def test_unknown_kernel_is_bad_input() -> None:
    result = CliRunner().invoke(main, ["measure", "--interpret", "--kernels", "flash_fwd,nope"])
    assert result.exit_code == 2 and "unknown kernel nope" in result.output


def test_interpret_refuses_a_sequence_the_interpreter_would_take_minutes_on(tmp_path) -> None:
    from click.testing import CliRunner

    from archsim.cli import main

    result = CliRunner().invoke(main, ["measure", "--interpret", "--kernels", "naive", "--max-seqlen", "99999999999",
                                       "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 2
    assert result.output == ("error: --max-seqlen: 99999999999: at most 1024 with --interpret (the interpreter takes "
                             "seconds per kernel at 1K tokens); raise it with ARCHSIM_MAX_INTERPRET_SEQLEN\n")
    assert not (tmp_path / "m.csv").exists()


def test_pytorch_paths_are_timed_under_the_published_labels() -> None:
    """`--kernels sdpa_flash,pytorch` times PyTorch's paths at the FlashAttention benchmark's shapes (forward,
    backward and both) and eager decode at the Flash-Decoding shapes, under the labels of the published rows, so
    validate checks the FlashAttention-2 and eager PyTorch families (fitted on A100 rows) on the GPU measured."""
    from archsim.model.gpu_kernels import family_of, kernel_directions

    cases = benchmark_cases(("sdpa_flash", "pytorch"), max_seqlen=None, tiny=False)
    prefill = [c for c in cases if c.direction != "decode"]
    assert len(prefill) == 2 * 6 * 2 * 2 * 3  # two paths x seqlens x head dims x causal x directions
    assert all(c.batch * c.seqlen == 16384 and c.heads * c.head_dim == 2048 for c in prefill)
    decode = [c for c in cases if c.direction == "decode"]
    assert {(c.kernel, c.heads, c.kv_heads, c.head_dim) for c in decode} == {("pytorch", 16, 2, 128)}
    labels = {(c.kernel, c.direction): c.label for c in cases}
    assert labels[("sdpa_flash", "fwd")] == "FlashAttention-2"
    assert labels[("pytorch", "bwd")] == "PyTorch standard attention"
    assert labels[("pytorch", "decode")] == "PyTorch eager attention"
    for (_, direction), label in labels.items():  # every row has a family modelled in its direction
        assert family_of(label) in {"fa2", "pytorch"} and direction in kernel_directions(label)


def test_a_pytorch_path_that_cannot_run_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    """SDPA held to its flash backend raises where the GPU, dtype or head_dim has no flash kernel: exit 2 naming
    the kernel and PyTorch's reason, not a traceback."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the command sets it; this restores it afterwards
    pytest.importorskip("torch")
    from archsim.kernels import torch_attention

    def refuse(*args, **kwargs):
        raise RuntimeError("No available kernel. Aborting execution.\nmore detail")

    monkeypatch.setattr(torch_attention, "sdpa_flash", refuse)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(measure, ["--interpret", "--kernels", "sdpa_flash", "--max-seqlen", "32",
                                          "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--kernels sdpa_flash: PyTorch cannot run it here (fwd, fp16, head_dim 64): No available kernel." \
        in result.output and "Traceback" not in result.output


def test_the_heldout_grid_shares_no_case_with_the_published_one() -> None:
    """`--grid heldout` is there to check the model on shapes no calibration fitted: none of its cases is a
    published one, and it covers what the published grid lacks (GQA decode beyond batch 1, MHA and MQA decode,
    head dims 32, 96 and 256, 64K prefill, a length off every tile)."""
    from archsim.commands.benchmarks import KERNELS, heldout_cases

    heldout = heldout_cases(KERNELS, None, tiny=False)
    assert not set(heldout) & set(benchmark_cases(KERNELS, None, tiny=False))
    decode = {(c.batch, c.heads, c.kv_heads) for c in heldout if c.direction == "decode"}
    assert {(8, 32, 8), (64, 32, 8), (16, 32, 32), (32, 8, 1)} <= decode
    assert {32, 96, 256} <= {c.head_dim for c in heldout} and {3000, 65536} <= {c.seqlen for c in heldout}
    assert {c.seqlen for c in heldout_cases(("flash_fwd",), 4096, tiny=False)} == {3000, 4096}
    # a shape whose lengths are all above --max-seqlen runs at it, as the published grid does (`capped`)
    assert [c.seqlen for c in heldout_cases(("lightning",), 4096, tiny=False)] == [4096]


def test_an_interpreted_heldout_run_writes_its_own_shapes(tmp_path: Path) -> None:
    pytest.importorskip("triton")
    out = tmp_path / "h.csv"
    result = CliRunner().invoke(measure, ["--interpret", "--grid", "heldout", "--kernels", "decode", "--max-seqlen",
                                          "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert {r["heads"] for r in rows} == {"4q/1kv", "1q/1kv"} and {r["seqlen"] for r in rows} == {"32"}
    assert {r["head_dim"] for r in rows} == {"128", "64"}
