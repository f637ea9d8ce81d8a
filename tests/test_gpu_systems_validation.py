"""Bad input to the GPU and serving commands (gpu-roofline, validate, calibrate, measure, simulate, reproduce neupims)
and to the GPU preset and calibration loaders: each is exit 2 with one line naming the file or option (issue 12),
or a resource guard naming its limit and the environment variable that raises it. Every case is refused before
the work it guards, so the file runs in seconds.

Expected values come from the specs: the CLI prints `error: source: where: message` (archsim/cli.py), the limits
are the module constants named in each test, and the measurement columns are those of attention_measured.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from archsim.errors import SpecError
from archsim.gpu.calibrate import calibrate
from archsim.gpu.cases import distinct, resolve
from archsim.gpu.load import gpu_from_dict, load_gpu
from archsim.gpu.measurements import REQUIRED, read_measurements
from archsim.gpu.params import calibration_from_dict, load_calibration
from archsim.model.gpu import MAX_QUERY_ROWS, AttentionCase
from archsim.model.gpu_kernels import plans
from archsim.systems.requests import MAX_REQUESTS, poisson_requests

PRESETS = Path(__file__).resolve().parents[1] / "archsim" / "gpu" / "presets"
HEADER = ",".join(REQUIRED)
ROW = "A100 80GB SXM4,FlashAttention-2,fp16,False,4,32,64,{seqlen},fwd,throughput,120,TFLOPs/s"
TUTORIAL = ("A100 80GB SXM4,Triton tutorial fused attention,fp16,{causal},4,32,64,{seqlen},fwd,throughput,{value},"
            "TFLOPs/s")


def _error_line(result, *fragments: str) -> str:
    """The one line a refused command prints, checked to name each fragment."""
    message = result.output.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def _under_a_file(tmp_path: Path, name: str) -> Path:
    """An output path whose parent is a regular file: unwritable for any user, root included."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / name


def _workload(tmp_path: Path, params: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(f"name: w\nparams: {{{params}}}\n")
    return path


# ------------------------------------------------------------------------------------------------ gpu-roofline
@pytest.mark.parametrize(("value", "fragment"), [  # as --seq-len of parallel and sparse: 8K = 8192, no float
    ("0", "one whole number >= 1"), ("-1", "one whole number >= 1"), ("4096.5", "one whole number >= 1"),
    ("nan", "one whole number >= 1"), ("1e12", "one whole number >= 1"), ("1000000000000", "ARCHSIM_MAX_SIZE"),
    ("8K,16K", "expected one whole number"),
])
def test_roofline_seq_len_is_checked(cli, tmp_path: Path, value: str, fragment: str) -> None:
    result = cli("gpu-roofline", "--seq-len", value, "--out", str(tmp_path / "r"), expect=2)
    _error_line(result, "--seq-len", fragment)
    assert not (tmp_path / "r").exists()


def test_roofline_takes_a_seq_len_as_parallel_and_sparse_do(cli, tmp_path: Path) -> None:
    cli("gpu-roofline", "--seq-len", "8K", "--out", str(tmp_path / "k"))
    cli("gpu-roofline", "--seq-len", "8192", "--out", str(tmp_path / "n"))
    assert (tmp_path / "k" / "roofline.csv").read_text() == (tmp_path / "n" / "roofline.csv").read_text()


def test_roofline_names_a_missing_workload_size(cli, tmp_path: Path) -> None:
    path = _workload(tmp_path, "batch: 1, seq_len: 128, head_dim: 64")
    result = cli("gpu-roofline", "-w", str(path), "--out", str(tmp_path / "r"), expect=2)
    _error_line(result, str(path), "params.heads", "missing")


def test_roofline_caps_the_query_rows_of_one_call(cli, tmp_path: Path, monkeypatch) -> None:
    """llama3-8b at its 4096 tokens is 16 x 32 x 4096 = 2.1 M query rows: over a limit of 1000."""
    monkeypatch.setenv("ARCHSIM_MAX_GPU_ROWS", "1000")
    result = cli("gpu-roofline", "--out", str(tmp_path / "r"), expect=2)
    _error_line(result, "llama3-8b.yaml", "params.seq_len", "2097152 query rows", "ARCHSIM_MAX_GPU_ROWS")


def test_roofline_unknown_gpu_and_unwritable_out(cli, tmp_path: Path) -> None:
    _error_line(cli("gpu-roofline", "--gpu", "nope", "--out", str(tmp_path / "r"), expect=2),
                "nope", "not a GPU preset")
    _error_line(cli("gpu-roofline", "--out", str(_under_a_file(tmp_path, "r")), expect=2), "--out", "not a folder")


def test_attention_case_too_large_for_the_model() -> None:
    case = AttentionCase("fwd", 1024, 128, 128, 128, 2**20, True, "fp16")  # 2**37 query rows
    assert case.batch * case.heads * case.seqlen > MAX_QUERY_ROWS
    with pytest.raises(SpecError, match=r"AttentionCase\.seqlen: .*ARCHSIM_MAX_GPU_ROWS"):
        plans("FlashAttention-2", case, load_gpu("h100-sxm5"))


# ------------------------------------------------------------------------------------------------ validate, calibrate
@pytest.mark.parametrize(("content", "fragments"), [
    (HEADER.encode() + b"\nA100,\xff\xfe\n", ["line 2, byte", "not UTF-8"]),
    (b"", ["line 1", "empty file"]),
    (b"gpu,kernel\nA100,FlashAttention-2\n", ["column 'dtype'", "missing"]),
    ((HEADER + "\n" + ROW.format(seqlen="1e30") + "\n").encode(), ["line 2, field 'seqlen'", "ARCHSIM_MAX_GPU_ROWS"]),
    ((HEADER + "\n" + ROW.format(seqlen="1024") + "\n" + ROW.format(seqlen="nan") + "\n").encode(),
     ["line 3, field 'seqlen'", "'nan'"]),
    ((HEADER + "\n" + ROW.format(seqlen="-512") + "\n").encode(), ["line 2, field 'seqlen'", "'-512'"]),
    ((HEADER + "\n" + ROW.format(seqlen="1024").replace(",120,", ",1e-320,") + "\n").encode(),
     ["line 2, field 'value'", "expected at least 1e-07 s"]),
    # A latency row of 1e-320 s (a subnormal) made calibrate fit on an infinite error and write a calibration.
    ((HEADER.replace("throughput", "latency") + "\n" + ROW.format(seqlen="1024").replace(",120,", ",1e-320,")
      .replace("throughput", "latency").replace("TFLOPs/s", "s") + "\n").encode(),
     ["line 2, field 'value'", "'1e-320' s is a kernel time", "expected at least 1e-07 s"]),
])
def test_bad_measurements_exit_2_naming_file_row_and_column(cli, tmp_path: Path, content: bytes,
                                                            fragments: list[str]) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    for command in ("validate", "calibrate"):
        _error_line(cli(command, "--measurements", str(path), expect=2), str(path), *fragments)


def test_measurements_that_are_not_a_regular_file(cli) -> None:
    _error_line(cli("validate", "--measurements", "/dev/null", expect=2), "/dev/null", "not a regular file")


def test_repeated_cases_are_timed_once_and_fit_alike(tmp_path: Path) -> None:
    """A file giving each of its 4 cases in both metrics (throughput and the same time as a latency in ms, as
    `archsim measure` writes them) is 4 distinct cases, and calibrates to the same parameters as the file with
    each case once (the soft-L1 loss doubles; its minimum does not move). A row repeated verbatim is refused
    (tests/test_gpu_refusals.py)."""
    measured = ((True, 2048, 136.5), (False, 2048, 159.7), (True, 8192, 160.4), (False, 8192, 163.4))
    rows = [TUTORIAL.format(causal=c, seqlen=n, value=v) for c, n, v in measured]
    latencies = [TUTORIAL.format(causal=c, seqlen=n, value=repr(
        AttentionCase("fwd", 4, 32, 32, 64, n, c, "fp16").flops() / (v * 1e12) * 1e3)).replace(
        "throughput", "latency").replace("TFLOPs/s", "ms") for c, n, v in measured]
    once, repeated = tmp_path / "once.csv", tmp_path / "repeated.csv"
    once.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    repeated.write_text(HEADER + "\n" + "\n".join(rows + latencies) + "\n")
    modelled, _ = resolve(read_measurements(repeated)[0])
    cases, index = distinct(modelled)
    assert len(modelled) == 8 and len(cases) == 4 and np.array_equal(index, np.tile(np.arange(4), 2))
    single, many = calibrate(once), calibrate(repeated)
    for name in single.fitted["triton_tutorial"]:
        assert many.params["triton_tutorial"][name] == pytest.approx(single.params["triton_tutorial"][name],
                                                                    rel=1e-6)


def test_calibration_work_is_capped(cli, tmp_path: Path, monkeypatch) -> None:
    """The packaged file's calibration split launches 0.3 M CTAs: over a limit of 1000."""
    monkeypatch.setenv("ARCHSIM_MAX_CALIBRATION_CTAS", "1000")
    _error_line(cli("calibrate", expect=2), "the calibration split", "more than 1000 CTAs",
                "ARCHSIM_MAX_CALIBRATION_CTAS")
    monkeypatch.setenv("ARCHSIM_MAX_VALIDATION_CTAS", "1000")
    _error_line(cli("validate", expect=2), "the modelled rows", "ARCHSIM_MAX_VALIDATION_CTAS")


def test_calibrate_and_validate_check_out_before_the_work(cli, tmp_path: Path) -> None:
    _error_line(cli("calibrate", "--out", str(_under_a_file(tmp_path, "c.yaml")), expect=2), "--out", "not a folder")
    _error_line(cli("validate", "--out", str(_under_a_file(tmp_path, "v")), expect=2), "--out", "not a folder")


# ------------------------------------------------------------------------------------------------ measure --out
@pytest.mark.parametrize(("content", "fragments"), [
    (b"\xff\xfe,a\n1,2\n", ["line 1, byte 0", "not UTF-8"]),
    (b"a,b\n1,2\n", ["line 1", "columns a,b"]),
])
def test_measure_out_existing_file_is_checked_first(cli, tmp_path: Path, content: bytes,
                                                    fragments: list[str]) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    _error_line(cli("measure", "--interpret", "--out", str(path), expect=2), str(path), *fragments)
    assert path.read_bytes() == content


def test_measure_out_unwritable(cli, tmp_path: Path) -> None:
    _error_line(cli("measure", "--interpret", "--out", str(_under_a_file(tmp_path, "m.csv")), expect=2),
                "--out", "not a folder")


# ------------------------------------------------------------------------------------------------ simulate
SIMULATE = ("simulate", "-s", "neupims")


def test_simulate_caps_requests(cli) -> None:
    result = cli(*SIMULATE, "-w", "gpt3-7b", "--rate", "1", "--requests", "1000000000", expect=2)
    _error_line(result, "--requests", f"limit of {MAX_REQUESTS}", "ARCHSIM_MAX_REQUESTS")
    with pytest.raises(SpecError, match="ARCHSIM_MAX_REQUESTS"):
        poisson_requests(rate_per_s=1.0, n=MAX_REQUESTS + 1, lengths="sharegpt", seed=0)
    for rate in ("inf", "nan"):
        _error_line(cli(*SIMULATE, "-w", "gpt3-7b", "--rate", rate, "--requests", "3", expect=2), "--rate", "finite")


@pytest.mark.parametrize(("content", "fragments"), [
    (b"arrival_s,prompt_tokens,output_tokens\n0,\xff,3\n", ["line 2, byte", "not UTF-8"]),
    (b"arrival_s,prompt_tokens,output_tokens\nnan,3,3\n", ["line 2: arrival_s", "'nan'"]),
    (b"arrival_s,prompt_tokens,output_tokens\n0,3,4\n1,-5,3\n", ["line 3: prompt_tokens", "'-5'"]),
    (b"arrival_s,prompt_tokens,output_tokens\n0,3\n", ["line 2", "expected 3 fields"]),
    (b"arrival_s,prompt_tokens,output_tokens\n0,3,1e400\n", ["line 2: output_tokens"]),
    (b"", ["line 1", "empty file"]),
])
def test_simulate_bad_trace_names_file_and_line(cli, tmp_path: Path, content: bytes, fragments: list[str]) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(content)
    _error_line(cli(*SIMULATE, "-w", "gpt3-7b", "--trace", str(path), expect=2), str(path), *fragments)


@pytest.mark.parametrize(("params", "fragments"), [
    ("hidden: .nan, heads: 32, head_dim: 128, ffn_dim: 16384, layers: 32, word_bytes: 2",
     ["params.hidden", "finite"]),
    ("hidden: 4096, heads: 32, head_dim: 128, ffn_dim: 16384, layers: 32", ["params.word_bytes", "missing"]),
    ("hidden: 4096, heads: 32, head_dim: 128, ffn_dim: 16384, word_bytes: 2", ["params.layers", "missing"]),
])
def test_simulate_names_the_workload_file_and_key(cli, tmp_path: Path, params: str, fragments: list[str]) -> None:
    path = _workload(tmp_path, params)
    path.write_text(path.read_text() + "block: gpt\n")
    _error_line(cli(*SIMULATE, "-w", str(path), "--rate", "1", "--requests", "3", expect=2), str(path), *fragments)


def test_simulate_trace_out_creates_folders_and_refuses_unwritable(cli, tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "trace.json"
    cli(*SIMULATE, "-w", "gpt3-7b", "--rate", "50", "--requests", "3", "--trace-out", str(out))
    assert out.read_text().startswith("{")
    result = cli(*SIMULATE, "-w", "gpt3-7b", "--rate", "50", "--requests", "3",
                 "--trace-out", str(_under_a_file(tmp_path, "t.json")), expect=2)
    _error_line(result, "--trace-out", "not a folder")


@pytest.mark.parametrize(("args", "option"), [
    (("gpu-roofline", "--gpu", ""), "--gpu"), (("gpu-roofline", "-w", " "), "--workload"),
    (("gpu-roofline", "--calibration", ""), "--calibration"), (("validate", "--measurements", ""), "--measurements"),
    (("calibrate", "--out", ""), "--out"), (("validate", "--out", ""), "--out"),
    (("simulate", "-s", "neupims", "-w", "", "--rate", "1", "--requests", "1"), "--workload"),
    (("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", ""), "--trace"),
])
def test_an_empty_name_is_refused_naming_the_option(cli, args, option: str) -> None:
    """An empty --measurements used to fall back to the packaged file, an empty --out to printing."""
    _error_line(cli(*args, expect=2), "got an empty value", f"'{option}'")


# ------------------------------------------------------------------------------------------------ reproduce neupims
def test_reproduce_neupims_checks_out_before_the_work(cli, tmp_path: Path) -> None:
    _error_line(cli("reproduce", "neupims", "--out", str(_under_a_file(tmp_path, "np")), expect=2),
                "--out", "not a folder")


# ------------------------------------------------------------------------------------------------ presets, calibration
def _preset() -> dict:
    return yaml.safe_load((PRESETS / "h100-sxm5.yaml").read_text())


@pytest.mark.parametrize(("key", "value"), [
    ("clock_hz", float("nan")), ("dram_bytes_per_s", float("inf")), ("sm_count", 0), ("power_w", -400),
    ("l2_bytes_per_s", 1e30), ("dram_latency_s", 1e-300), ("sm_count", 132.5), ("sync_mma_fraction", 1.5),
])
def test_preset_numbers_finite_positive_and_in_range(key: str, value: float) -> None:
    with pytest.raises(SpecError, match=rf"^p\.yaml: {key}: expected"):
        gpu_from_dict({**_preset(), key: value}, "p.yaml")


def test_preset_files_go_through_the_hardened_reader(tmp_path: Path) -> None:
    binary, deep = tmp_path / "binary.yaml", tmp_path / "deep.yaml"
    binary.write_bytes(b"name: x\nsource: \xff\n")
    deep.write_text("name: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(SpecError, match=r"binary\.yaml: line 2, byte \d+: not UTF-8"):
        load_gpu(binary)
    with pytest.raises(SpecError, match=r"deep\.yaml: line 1: .*deeper than"):
        load_gpu(deep)
    with pytest.raises(SpecError, match=r"deep\.yaml: line 1: .*deeper than"):
        load_calibration(deep)


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d.update(version=True), "version"),
    (lambda d: d["families"]["fa2"].update(fitted=5), "families.fa2.fitted"),
    (lambda d: d["families"]["fa2"].update(fitted=["nope"]), "families.fa2.fitted"),
    (lambda d: d["families"]["fa2"].update(fit=5), "families.fa2.fit"),
    (lambda d: d.update(measurements="x"), "measurements"),
    (lambda d: d["families"]["fa2"]["params"].update(launch_s=float("nan")), "families.fa2.params.launch_s"),
    (lambda d: d["split"].update(calibration_seqlens=[True]), "split.calibration_seqlens"),
])
def test_calibration_file_types_are_checked(change, where: str) -> None:
    data = yaml.safe_load(Path(load_calibration("v1").source).read_text())
    change(data)
    with pytest.raises(SpecError, match=rf"^cal\.yaml: {where}: "):
        calibration_from_dict(data, "cal.yaml")


def test_gpu_roofline_refuses_an_mla_workload_it_would_model_as_dense_attention(cli, tmp_path: Path) -> None:
    """DeepSeek's latent KV (kv_lora_rank) was drawn as 128 dense heads of KV (review finding)."""
    result = cli("gpu-roofline", "--workload", "deepseek-v3-mla", "--out", str(tmp_path / "g"), expect=2)
    assert "params.kv_lora_rank: an MLA workload (latent KV)" in result.output and result.output.count("\n") == 1
