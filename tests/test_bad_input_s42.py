"""Bad input a fuzz audit found taken as good or blamed on the wrong file: a word size no device of a system
computes blamed on the system file (it is the workload's, or the architecture preset's), option numbers in other
scripts' digits ('４０９６', which int() and float() take), a serving batch beyond any size, a value given twice in a
list option or a sweep axis (one point, silently), and a loop of symbolic links reported as a missing file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse.spec import load_sweep_spec
from archsim.errors import SpecError
from archsim.systems.system_checks import check_against_workload
from archsim.systems.system_spec import load_system

PRESETS = Path(library.__file__).resolve().parents[1] / "arch" / "presets"


def _workload(tmp_path: Path, name: str = "gpt3-7b", **params: int) -> Path:
    """A copy of library workload `name` with `params` laid over its own."""
    data = yaml.safe_load(Path(library.find("workloads", name)).read_text())
    data["params"].update(params)
    path = tmp_path / f"{name}-words.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _one_error_line(code: int, output: str) -> str:
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, output)
    return lines[0]


# ----------------------------------------------------------------------------- 1. word sizes: the file holding them
@pytest.mark.parametrize(("system", "params", "field", "gpu"), [
    ("gpu", {"word_bytes": 3}, "word_bytes", "a100-40gb-sxm4"),
    ("vllm-h100", {"word_bytes": 4}, "word_bytes", "h100-sxm5"),
    ("duplex-gpu", {"ffn_word_bytes": 3}, "ffn_word_bytes", "h100-sxm5"),
    ("context-parallel-h100", {"ffn_word_bytes": 3}, "ffn_word_bytes", "h100-sxm5"),
])
def test_a_width_no_gpu_computes_is_blamed_on_the_workload(invoke, tmp_path, system, params, field, gpu) -> None:
    """GPUs run 1- and 2-byte words (fp8, fp16; fp32 has no tensor-core path): a 3- or 4-byte workload was blamed on
    the system file's `devices.gpu.preset` (context-parallel-h100's on '<python>'), which holds no word size."""
    workload = _workload(tmp_path, **params)
    line = _one_error_line(*invoke("simulate", "-s", system, "-w", str(workload), "--rate", "1", "--requests", "2"))
    assert line.startswith(f"error: {workload}: params.{field}: gpu devices."), line
    assert f"GPU {gpu} has no tensor-core rate for {params[field]}-byte words" in line
    assert line.endswith("expected a workload of 1- or 2-byte words")


def test_a_width_no_chip_computes_is_blamed_on_the_workload(tmp_path) -> None:
    """1-byte words were blamed on the system's `devices.memory.preset` (a TPU v3, bf16 matrix units only; it now
    runs them at its bf16 peak, as a GPU without fp8 does): the refusal is the workload's, here by the H100's
    attention kernel, which has no fp8 path."""
    path = tmp_path / "sys.yaml"
    path.write_text(yaml.safe_dump({"base": "lamina-tpu-v6e", "name": "v3-pool",
                                    "devices": {"memory": {"preset": "tpu-v3"}}}))
    workload = library.load_workload_spec(str(_workload(tmp_path, "llama3-70b", word_bytes=1)))
    with pytest.raises(SpecError) as error:
        check_against_workload(load_system(str(path)), workload)
    assert (error.value.source, error.value.where) == (workload.path, "params.word_bytes")
    assert "its attention kernel FlashAttention-2 has no 1-byte (fp8) path" in error.value.message


def test_an_architecture_of_other_words_is_blamed_on_its_preset(tmp_path) -> None:
    """An architecture device computes its preset's `word_bytes`: a 3-byte FuseMax under 2-byte ops was blamed on
    the system's `devices.fx.mapping`, when the model was costed."""
    arch = yaml.safe_load((PRESETS / "fusemax.yaml").read_text())
    arch["word_bytes"] = 3
    (tmp_path / "fx3.yaml").write_text(yaml.safe_dump(arch, sort_keys=False))
    gpu = {"kind": "gpu", "count": 4, "preset": "h100-sxm5", "attention_kernel": "FlashAttention-2"}
    (tmp_path / "sys.yaml").write_text(yaml.safe_dump({
        "name": "fx", "source": "a test",
        "devices": {"gpu": gpu, "fx": {"kind": "architecture", "count": 1, "preset": "fx3.yaml",
                                       "mapping": "linear-qkv-fusemax"}},
        "parallelism": {"tp": 4, "pp": 1},
        "placement": [{"op": "qkv", "phase": "prefill", "device": "fx"},
                      {"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe",
                              "ffn_residual"], "device": "gpu"}],
        "schedule": {"kind": "blocked"}}))
    with pytest.raises(SpecError) as error:
        check_against_workload(load_system(str(tmp_path / "sys.yaml")), library.load_workload_spec("gpt3-7b"))
    assert (error.value.source, error.value.where) == (str(tmp_path / "fx3.yaml"), "word_bytes")
    assert error.value.message.startswith("expected 2 ") and error.value.message.endswith("got 3")


# ------------------------------------------------------------------------------------ 2. option numbers: one parser
@pytest.mark.parametrize(("args", "option"), [
    (["run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=４０９６"], "--set"),
    (["parallel", "--scheme", "ring", "--devices", "2", "-w", "llama3-8b", "--seq-len", "４K"], "--seq-len"),
    (["parallel", "--scheme", "ring", "--devices", "2", "-w", "llama3-8b", "--seq-len", "²"], "--seq-len"),
    (["parallel", "--scheme", "ring", "--devices", "2", "-w", "llama3-8b", "--seq-len", "4K", "--batch", "２"],
     "--batch"),
    (["simulate", "-s", "npu-only", "-w", "gpt3-7b", "--rate", "５", "--requests", "2"], "--rate"),
    (["simulate", "-s", "npu-only", "-w", "gpt3-7b", "--rate", "5", "--requests", "２"], "--requests"),
    (["sparse", "--method", "tokenselect", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "8K", "--top-k",
      "５"], "--top-k"),
])
def test_an_option_number_in_other_digits_is_refused(invoke, args, option) -> None:
    """int() and float() read '４０９６' (full-width) as 4096, and `--seq-len ²` was an internal error (isdigit()
    passed it, int() did not); a spec file's YAML reads neither as a number."""
    line = _one_error_line(*invoke(*args))
    assert line.startswith(f"error: {option}: "), line


def test_an_option_number_takes_underscores_as_yaml_does(invoke) -> None:
    """4_096 is 4096 in a YAML spec and in `--set` (int() reads it); `--seq-len` refused it."""
    args = ["parallel", "--scheme", "ring", "--devices", "2", "-w", "llama3-8b", "--json", "--seq-len"]
    assert invoke(*args, "4_096") == invoke(*args, "4096")


# ---------------------------------------------------------------------------------- 3. serving batch: a size's bound
def _system_sweep(tmp_path: Path, serving: dict, axes: dict | None = None) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({
        "name": "serve", "system": "npu-only", "workload": "gpt3-7b",
        "axes": axes or {"system.devices.npu.count": [4]},
        "serving": {"rate_per_s": 5.0, "requests": 10, "lengths": "alpaca", "seed": 0, **serving}}))
    return path


@pytest.mark.parametrize(("serving", "axes", "where"), [
    ({"max_batch": 10**30}, None, "serving.max_batch"),
    ({"max_batch": 8, "max_prefill_tokens": 10**30}, None, "serving.max_prefill_tokens"),
    ({}, {"serving.max_batch": [8, 10**30]}, "axes.serving.max_batch[1]"),
])
def test_a_serving_batch_beyond_the_size_limit_is_refused(tmp_path, serving, axes, where) -> None:
    """A batch of 10^30 requests (or a prefill budget of 10^30 tokens) was taken: a batch is a size, within the
    size limit (ARCHSIM_MAX_SIZE) as a workload's batch is."""
    with pytest.raises(SpecError) as error:
        load_sweep_spec(str(_system_sweep(tmp_path, serving, axes)))
    assert error.value.where == where and "beyond the limit of" in error.value.message


@pytest.mark.parametrize("option", ["--max-batch", "--max-prefill-tokens"])
def test_a_serving_batch_option_beyond_the_size_limit_is_refused(invoke, option) -> None:
    line = _one_error_line(*invoke("simulate", "-s", "npu-only", "-w", "gpt3-7b", "--rate", "5", "--requests", "2",
                                   option, str(10**20)))
    assert line.startswith(f"error: {option}: ") and "beyond the limit of" in line, line


# ----------------------------------------------------------------------------------- 4. a value given twice in a list
@pytest.mark.parametrize(("args", "option"), [
    (["--scheme", "ring", "--devices", "2", "--seq-len", "32K,32768"], "--seq-len"),
    (["--scheme", "ring", "--devices", "2,2", "--seq-len", "4K"], "--devices"),
    (["--scheme", "ring,ring", "--devices", "2", "--seq-len", "4K"], "--scheme"),
])
def test_a_list_option_value_given_twice_is_refused(invoke, args, option) -> None:
    """`--seq-len 32K,32K` ran one point, silently."""
    line = _one_error_line(*invoke("parallel", "-w", "llama3-8b", *args))
    assert line.startswith(f"error: {option}: ") and "twice" in line, line


def test_a_sweep_axis_value_given_twice_is_refused(tmp_path) -> None:
    """`workload.seq_len: [4096, 4096, 8192]` ran two points ("3 drawn, 2 distinct"), as a list option's
    duplicate ran one: both are refused, naming the second."""
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump({"name": "dup", "mapping": "fusemax", "workload": "bert-base",
                                    "axes": {"workload.seq_len": [4096, 4096, 8192]}}))
    with pytest.raises(SpecError) as error:
        load_sweep_spec(str(path))
    assert error.value.where == "axes.workload.seq_len[1]" and "twice" in error.value.message


# ------------------------------------------------------------------------------------------ 5. a loop of symlinks
@pytest.mark.parametrize("args", [
    ["run", "-m", "fusemax", "-w", "FILE"],
    ["simulate", "-s", "FILE", "-w", "gpt3-7b", "--rate", "1", "--requests", "2"],
    ["check", "FILE"],
    ["results", "FILE", "--csv", "-"],
    ["sweep", "demo", "--db", "FILE"],
])
def test_a_loop_of_symlinks_is_not_called_missing(invoke, tmp_path, args) -> None:
    """A loop read as "no such file" (Path.is_file() is False on ELOOP), though the link is there; as a sweep's
    store it was an internal error (Path.resolve() raises RuntimeError on a loop), and `results` said "does not
    exist"."""
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    loop = str(tmp_path / "a.yaml")
    line = _one_error_line(*invoke(*(loop if a == "FILE" else a for a in args)))
    assert line.startswith(f"error: {loop}: cannot use this path (") and "symbolic links" in line, line


def test_no_help_shows_an_unbounded_range() -> None:
    """Unbounded number options (sparse's --density, --top-k, ...) showed click's "[x<=None]" (helper-506): their
    range is the method's, checked when it runs."""
    from click.testing import CliRunner

    from archsim.cli import main

    for name in main.commands:
        text = CliRunner().invoke(main, [name, "--help"]).output
        assert "None]" not in text, name
