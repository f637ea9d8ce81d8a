"""Word sizes on GPUs and chips (audit s45, audit-dtype):

- `archsim parallel` refuses an `ffn_word_bytes` its GPU's tensor cores do not compute (`gpu_device.word_problem`:
  1-byte words at fp8, 2-byte at fp16) in every scope, naming the workload's file and field, where scope layer
  blamed `<python>: devices.h100-sxm5.preset` and scope attention priced 3-byte FFN weights.
- a GPU device's attention kernel without an fp8 path refuses 1-byte attention words by the kernel's rule
  (`gpu_device.kernel_word_problem`), naming the serving kernels, not a probe call of a few keys.
- a chip runs 1-byte words at its fp8 peak where it lists one, else at its bf16 peak, as a GPU without fp8 runs
  them at its fp16 rate: never at an int8 peak (the workloads' 1-byte words are fp8, llama3-405b-fp8.yaml).

Expected numbers are the presets' own rates (archsim/systems/chip_presets/*.yaml: v5e bf16 197e12, int8 394e12;
v6e bf16 918e12; v3 bf16 123.20768e12; v4 bf16 275e12).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_bad_input_s42 import _one_error_line

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import chip as chip_module
from archsim.systems.chip import load_chip
from archsim.systems.chip_device import ChipDevice
from archsim.systems.gpu_device import calibrated_gpu_device, word_problem
from archsim.systems.models import system_model
from archsim.systems.seqpar_spec import ParallelSpec, check_spec
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_spec import load_system
from archsim.systems.topology import load_topology

CHIP_PRESETS = Path(chip_module.__file__).parent / "chip_presets"
NO_TENSOR_RATE = "GPU h100-sxm5 has no tensor-core rate for 3-byte words"


def _workload(tmp_path: Path, name: str = "llama3-8b", **params: int) -> Path:
    """A copy of library workload `name` with `params` laid over its own."""
    data = yaml.safe_load(Path(library.find("workloads", name)).read_text())
    data["params"].update(params)
    data["name"] = f"{name}-words"
    path = tmp_path / f"{name}-words.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("scope", ["layer", "attention"])
def test_parallel_refuses_an_ffn_width_no_gpu_computes_naming_the_workload(invoke, tmp_path, scope) -> None:
    """Scope layer blamed `<python>: devices.h100-sxm5.preset`; scope attention took the 3-byte FFN and priced its
    weights at 3 bytes (22.37 GB per device)."""
    workload = _workload(tmp_path, ffn_word_bytes=3)
    line = _one_error_line(*invoke("parallel", "--scheme", "ring", "--devices", "8", "-w", str(workload),
                                   "--seq-len", "32K", "--scope", scope))
    assert line.startswith(f"error: {workload}: params.ffn_word_bytes: "), line
    assert NO_TENSOR_RATE in line and line.endswith("expected a workload of 1- or 2-byte words")


@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
def test_check_spec_refuses_the_ffn_width_in_every_direction(tmp_path, direction) -> None:
    """Through the Python API: a SpecError at the workload's `params.ffn_word_bytes`."""
    workload = library.load_workload_spec(str(_workload(tmp_path, ffn_word_bytes=4)))
    topology = load_topology("hgx-h100")
    spec = ParallelSpec("ring", 8, workload, 32768, topology.gpu, topology, direction=direction)
    with pytest.raises(SpecError) as error:
        check_spec(spec)
    assert (error.value.source, error.value.where) == (workload.path, "params.ffn_word_bytes")


def test_an_fp8_ffn_still_runs_in_parallel(tmp_path) -> None:
    """1-byte FFN words are fp8 on an H100 (its fp8 rate): accepted in both scopes."""
    workload = library.load_workload_spec(str(_workload(tmp_path, ffn_word_bytes=1)))
    topology = load_topology("hgx-h100")
    for scope in ("attention", "layer"):
        check_spec(ParallelSpec("ring", 8, workload, 32768, topology.gpu, topology, scope=scope))


def test_the_kernel_rule_names_the_serving_kernels() -> None:
    """FlashAttention-2, PyTorch eager attention and the other kernels a GPU device serves with have no fp8 path
    (`gpu_kernels.FP8_FAMILIES`: the Triton tutorial's alone, which has no decode path): 1-byte attention words are
    refused by the kernel's rule, while a GPU's GEMMs take them (fp8)."""
    from archsim.systems.gpu_device import kernel_word_problem

    h100 = load_gpu("h100-sxm5")
    assert word_problem(h100, 1) is None and kernel_word_problem("FlashAttention-2", h100, 2) is None
    problem = kernel_word_problem("FlashAttention-2", h100, 1)
    assert problem.startswith("its attention kernel FlashAttention-2 has no 1-byte (fp8) path modelled"), problem
    assert "FlashAttention-2, FlashAttention-2 (causal), PyTorch eager attention" in problem
    assert problem.endswith("expected 2-byte words for its attention")
    pool = kernel_word_problem("Flash-Decoding", h100, 1, decode_only=True)
    assert "Flash-Decoding" in pool and "PyTorch eager attention" in pool


def test_a_one_byte_attention_is_refused_by_the_kernel_not_a_probe_call(tmp_path) -> None:
    """vllm-h100 (FlashAttention-2) with `word_bytes: 1`: the refusal was the kernel model's for a prompt of the
    trace ("fwd attention of 8 heads (2 KV), head_dim 128, 41 keys"), a size the user never gave."""
    workload = library.load_workload_spec(str(_workload(tmp_path, word_bytes=1)))
    system = load_system("vllm-h100")
    with pytest.raises(SpecError) as error:  # the systems check: the workload's field, by the kernel's rule
        system_model(system, workload)
    assert (error.value.source, error.value.where) == (workload.path, "params.word_bytes")
    assert "keys" not in error.value.message and "no 1-byte (fp8) path" in error.value.message
    attention = next(op for op in layer_ops(workload, Step("prefill", 1, 41), "llama") if op.name == "attention")
    device = calibrated_gpu_device(load_gpu("h100-sxm5"), "FlashAttention-2", name="gpu", source=system.source)
    with pytest.raises(SpecError) as error:  # the device's own rule, for an op built without the systems check
        device.cost([attention])
    assert (error.value.source, error.value.where) == (system.source, "devices.gpu.attention_kernel")
    assert "keys" not in error.value.message and "no 1-byte (fp8) path" in error.value.message


@pytest.mark.parametrize(("chip", "peak_flops_per_s"), [
    ("tpu-v5e", 197.0e12),  # its bf16 peak, not its int8 394e12
    ("tpu-v6e", 918.0e12),  # not its int8 1836e12
    ("tpu-v4", 275.0e12),   # bf16 and int8 alike
    ("tpu-v3", 123.20768e12),  # bf16 only: 1-byte words were refused, as an A100 runs them at fp16
])
def test_a_chip_without_fp8_runs_one_byte_words_at_its_bf16_peak(chip, peak_flops_per_s) -> None:
    assert ChipDevice("tpu", load_chip(chip), 1.0, 1.0).matmul_peak_flops_per_s(1) == peak_flops_per_s


def test_a_chip_with_fp8_runs_one_byte_words_at_its_fp8_peak(tmp_path) -> None:
    """A chip file listing fp8 (a test chip: v6e's rates with an fp8 peak of twice bf16)."""
    data = yaml.safe_load((CHIP_PRESETS / "tpu-v6e.yaml").read_text())
    data["matmul_flops_per_s"]["fp8"] = 1836.0e12
    data["matmul_flops_per_s"]["int8"] = 1000.0e12
    path = tmp_path / "fp8-chip.yaml"
    path.write_text(yaml.safe_dump(data))
    device = ChipDevice("tpu", load_chip(path), 1.0, 1.0)
    assert (device.matmul_peak_flops_per_s(1), device.matmul_peak_flops_per_s(2)) == (1836.0e12, 918.0e12)


def test_a_chip_refuses_a_width_it_has_no_precision_for() -> None:
    with pytest.raises(SpecError) as error:
        ChipDevice("tpu", load_chip("tpu-v5e"), 1.0, 1.0, "sys.yaml").matmul_peak_flops_per_s(3)
    assert (error.value.source, error.value.where) == ("sys.yaml", "devices.tpu.preset")
    assert "1 byte: fp8, at the bf16 peak on a chip without fp8" in error.value.message


@pytest.mark.parametrize("method", [["--method", "quest", "--budget", "2048"], ["--method", "tokenselect"]])
def test_sparse_refuses_an_ffn_width_no_gpu_computes_naming_the_workload(tmp_path, method) -> None:
    """`archsim sparse` had named `<python>: devices.h100-sxm5.preset` (the GPU device it builds itself)."""
    from click.testing import CliRunner

    from archsim.cli import main

    path = _workload(tmp_path, ffn_word_bytes=4)
    result = CliRunner().invoke(main, ["sparse", *method, "--gpu", "h100-sxm5", "-w", str(path), "--context", "32K"])
    line = _one_error_line(result.exit_code, result.output)
    assert line.startswith(f"error: {path}: params.ffn_word_bytes: the GPU the layer's FFN runs on does not compute")


def test_a_parallel_grid_no_point_of_which_computes_the_ffn_width_is_exit_2(tmp_path) -> None:
    """What no point of the grid could run is exit 2, not a grid of infeasible rows (review helper-551: a 4-point
    grid over a 4-byte FFN printed four infeasible rows and exited 0)."""
    from click.testing import CliRunner

    from archsim.cli import main

    path = _workload(tmp_path, ffn_word_bytes=4)
    result = CliRunner().invoke(main, ["parallel", "--scheme", "ring,zigzag", "--devices", "4,8", "-w", str(path),
                                       "--seq-len", "32K", "--scope", "layer"])
    line = _one_error_line(result.exit_code, result.output)
    assert line.startswith(f"error: {path}: params.ffn_word_bytes: the GPU the layer's FFN runs on does not compute")
