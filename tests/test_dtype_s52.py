"""Word sizes in energy and in multi-device runs (audit s52, dtype):

1. Arithmetic energy scales with the width the arithmetic runs at. Every per-FLOP price (a gpu's or chip's
   `pj_per_flop`, an npu's `op_energy_pj`, a Logic-PIM's `pj_per_flop`) is a price at 2-byte (16-bit) operands and
   an op's FLOPs cost it x operand bytes / 2 (`archsim.systems.arithmetic_energy`), as the bank-PIM's MACs already
   scaled with their words: an fp8 FLOP on an H100's tensor cores had cost an fp16 one (Llama-3-8B's FFN prefill of
   16,384 tokens on duplex's xPU: 0.4812 J in fp8 against 0.4962 J in fp16; the reference's H100 bounds are 0.707
   pJ/FLOP in bf16, 0.354 in fp8), and the NeuPIMs NPU's arithmetic was 1.80 mJ at 1, 2 and 4 bytes. Units without
   an fp8 path (an A100's tensor cores, a TPU without an fp8 peak) run 1-byte words at 16 bits and price them so.
   An fp8 FFN on an H100 had drawn more than `gpu_device.action_power_w`, the power the per-action check bounds.
2. A topology of arrays whose architecture holds other words than the 2-byte blocks the sequence-parallel schemes
   bind (`topology.WORD_BYTES`) passed `archsim check` and failed every run with a message advising a workload
   width `archsim parallel` refuses: it is refused at load, naming the architecture's file and `word_bytes`.
3. `archsim parallel` took a workload without `word_bytes` as 2 where the memory is not modelled (fwd+bwd at tp 2):
   it is refused in every direction, naming the workload's file and field (a parallel sweep too:
   `test_sweep_word_bytes_s45.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from test_bad_input_s42 import _one_error_line

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.chip import load_chip
from archsim.systems.chip_device import ChipDevice
from archsim.systems.gpu_device import ActionEnergy, action_power_w, calibrated_gpu_device
from archsim.systems.models import system_model
from archsim.systems.step import Step
from archsim.systems.system_spec import load_system

FFN_PREFILL = Step("prefill", 1, 16384)  # the audit's Llama-3-8B FFN prefill
DECODE = Step("decode", 64, 2048)
PJ_PER_FLOP = 0.32  # the presets' ALU price (pim.md §5), the test's arithmetic-only prices below
ARITHMETIC_ONLY = ActionEnergy(hbm_pj_per_bit=0.0, pj_per_flop=PJ_PER_FLOP, sram_pj_per_byte=0.0, static_w=0.0)


def _workload(tmp_path: Path, drop: tuple[str, ...] = (), **params: int) -> Path:
    """A copy of Llama-3-8B with `params` laid over its own and the sizes `drop` left out."""
    data = yaml.safe_load(Path(library.find("workloads", "llama3-8b")).read_text())
    data["params"].update(params)
    for name in drop:
        del data["params"][name]
    data["name"] = "l8b-" + "-".join([*(f"{k}{v}" for k, v in params.items()), *(f"no-{d}" for d in drop)])
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _device(system: str, name: str):
    """Device `name` of system preset `system` as Llama-3-8B's model builds it."""
    return system_model(load_system(system), library.load_workload_spec("llama3-8b")).devices[name]


def _op(tmp_path: Path, name: str, step: Step, system: str = "duplex", **params: int):
    """Op `name` of one device's layer (system preset `system`'s shard) of Llama-3-8B with `params` in `step`."""
    workload = library.load_workload_spec(str(_workload(tmp_path, **params)))
    ops = system_model(load_system(system), workload).ops(step.phase, step.batch, step.seq_len)
    return next(op for op in ops if op.name == name)


# ----------------------------------------------------------------------------- 1. arithmetic energy by width
def test_an_h100_prices_an_fp8_flop_at_half_an_fp16_one(tmp_path) -> None:
    """The FFN at `pj_per_flop` alone: fp16 FLOPs x 0.32 pJ; fp8 half that (it was the same 0.4618 J)."""
    xpu = dataclasses.replace(_device("duplex", "xpu"), energy=ARITHMETIC_ONLY)
    fp16 = _op(tmp_path, "ffn", FFN_PREFILL)
    fp8 = _op(tmp_path, "ffn", FFN_PREFILL, ffn_word_bytes=1)
    assert fp8.flops == fp16.flops
    assert xpu.cost([fp16]).energy_j == pytest.approx(fp16.flops * PJ_PER_FLOP * 1e-12, rel=1e-12)
    assert xpu.cost([fp8]).energy_j == pytest.approx(fp16.flops * PJ_PER_FLOP * 1e-12 / 2, rel=1e-12)


def test_duplex_s_xpu_fp8_ffn_costs_its_half_priced_flops_and_fp8_bytes(tmp_path) -> None:
    """The audit's figure with duplex's own prices: 0.4962 J in fp16; in fp8 the FLOPs' half price plus the DRAM
    bytes the fp8 run moves (the fp8 cost at prices without arithmetic), near the reference's ~0.25 J."""
    xpu = _device("duplex", "xpu")
    fp16 = _op(tmp_path, "ffn", FFN_PREFILL)
    fp8 = _op(tmp_path, "ffn", FFN_PREFILL, ffn_word_bytes=1)
    assert xpu.cost([fp16]).energy_j == pytest.approx(0.4962, abs=5e-5)
    memory_j = dataclasses.replace(xpu, energy=dataclasses.replace(xpu.energy, pj_per_flop=0.0)).cost([fp8]).energy_j
    fp8_j = xpu.cost([fp8]).energy_j
    assert fp8_j == pytest.approx(memory_j + fp8.flops * xpu.energy.pj_per_flop * 1e-12 / 2, rel=1e-12)
    assert 0.24 < fp8_j < 0.26


def test_an_fp8_gemm_draws_no_more_than_the_action_power_bound(tmp_path) -> None:
    """The per-action check bounds a GEMM at fp16 (`action_power_w`): an fp8 FLOP at twice the rate and half the
    price draws the same arithmetic power, so the bound holds for fp8 too (it had drawn 475 W + 140 W static of
    the bound's 493 W)."""
    xpu = _device("duplex", "xpu")
    fp8 = _op(tmp_path, "ffn", FFN_PREFILL, ffn_word_bytes=1)
    cost = xpu.cost([fp8])
    assert xpu.energy.static_w + cost.energy_j / cost.time_s <= action_power_w(xpu.energy, xpu.spec)


def test_a_gpu_without_fp8_tensor_cores_prices_1_byte_words_at_fp16(tmp_path) -> None:
    """An A100 runs fp8 inputs on its fp16 path (a100-80gb-sxm4.yaml): at the fp16 rate and the fp16 price."""
    a100 = calibrated_gpu_device(load_gpu("a100-80gb-sxm4"), energy=ARITHMETIC_ONLY)
    fp16 = _op(tmp_path, "ffn", FFN_PREFILL)
    fp8 = _op(tmp_path, "ffn", FFN_PREFILL, ffn_word_bytes=1)
    assert a100.cost([fp8]).energy_j == pytest.approx(a100.cost([fp16]).energy_j, rel=1e-12)


@pytest.mark.parametrize("word_bytes", [1, 2, 4])
def test_the_npu_prices_its_arithmetic_by_operand_width(tmp_path, word_bytes) -> None:
    """NeuPIMs decode FFN at `op_energy_pj` alone (no HBM price): FLOPs x 0.32 pJ x word_bytes / 2 (it was the
    2-byte figure, 1.80 mJ, at every width)."""
    npu = _device("neupims", "npu")
    npu = dataclasses.replace(npu, memory=dataclasses.replace(npu.memory, offchip_pj_per_bit=0.0))
    ffn = _op(tmp_path, "ffn", DECODE, "neupims", word_bytes=word_bytes)
    expected_j = ffn.flops * npu.spec.op_energy_pj * 1e-12 * word_bytes / 2
    assert npu.cost([ffn]).energy_j == pytest.approx(expected_j, rel=1e-12)


@pytest.mark.parametrize("word_bytes", [1, 2, 4])
def test_the_logic_pim_prices_its_arithmetic_by_operand_width(tmp_path, word_bytes) -> None:
    """Duplex's Logic-PIM on decode attention at `pj_per_flop` alone (no buffer-die access price)."""
    pim = _device("duplex", "lp")
    pim = dataclasses.replace(pim, spec=dataclasses.replace(pim.spec, internal_pj_per_bit=0.0), _terms={})
    attention = _op(tmp_path, "attention", DECODE, "neupims", word_bytes=word_bytes)
    expected_j = attention.flops * pim.spec.pj_per_flop * 1e-12 * word_bytes / 2
    assert pim.cost([attention]).energy_j == pytest.approx(expected_j, rel=1e-12)


@pytest.mark.parametrize(("peaks", "fp8_share"), [({"fp8": 394e12}, 0.5), ({}, 1.0)])
def test_a_chip_prices_fp8_at_half_and_1_byte_words_on_its_bf16_units_at_bf16(tmp_path, peaks, fp8_share) -> None:
    """A chip with an fp8 peak prices a 1-byte FLOP at half a bf16 one; TPU v5e, without one, runs 1-byte words at
    its bf16 peak (`chip_device.word_problem`) and prices them as bf16."""
    chip = load_chip("tpu-v5e")
    chip = dataclasses.replace(chip, matmul_flops_per_s={**chip.matmul_flops_per_s, **peaks})
    device = ChipDevice("tpu", chip, 1.0, 1.0, energy=ARITHMETIC_ONLY)
    fp16 = _op(tmp_path, "ffn", FFN_PREFILL)
    fp8 = _op(tmp_path, "ffn", FFN_PREFILL, ffn_word_bytes=1)
    assert device.cost([fp8]).energy_j == pytest.approx(device.cost([fp16]).energy_j * fp8_share, rel=1e-12)


def test_a_2_byte_layer_s_flops_cost_the_price_as_given() -> None:
    """The rule's reference width: duplex's xPU prices a 2-byte decode layer's FLOPs (decode attention's one call
    included) at `pj_per_flop` (the NPU's and Logic-PIM's 2-byte cases are above)."""
    model = system_model(load_system("duplex"), library.load_workload_spec("llama3-8b"))
    xpu = dataclasses.replace(model.devices["xpu"], energy=ARITHMETIC_ONLY)
    ops = model.ops(DECODE.phase, DECODE.batch, DECODE.seq_len)
    assert xpu.cost(ops).energy_j == pytest.approx(sum(op.flops for op in ops) * PJ_PER_FLOP * 1e-12, rel=1e-12)


# ----------------------------------------------------------------------------- 2. array topologies' words
def _array_topology(tmp_path: Path, word_bytes: int) -> tuple[Path, Path]:
    """(a topology of FuseMax arrays, its architecture: the fusemax preset holding `word_bytes`-byte words)."""
    text = Path(library.find("architectures", "fusemax")).read_text()
    assert "\nword_bytes: 2 " in text
    arch = tmp_path / f"fm-w{word_bytes}.yaml"
    arch.write_text(text.replace("\nword_bytes: 2 ", f"\nword_bytes: {word_bytes} ", 1))
    topology = tmp_path / f"topo-w{word_bytes}.yaml"
    topology.write_text(yaml.safe_dump({
        "name": f"fusemax-w{word_bytes}", "source": "a test",
        "device": {"architecture": str(arch), "mapping": "fusemax-gqa-noncausal", "causal_mapping": "fusemax-gqa"},
        "levels": [{"link": "tpu-v3-ici", "devices": 8}]}, sort_keys=False))
    return topology, arch


def test_check_refuses_an_array_topology_whose_architecture_holds_1_byte_words(tmp_path, invoke) -> None:
    """It printed `ok` and every run then failed advising a 1-byte workload, which `archsim parallel` refuses."""
    topology, arch = _array_topology(tmp_path, 1)
    line = _one_error_line(*invoke("check", str(topology)))
    assert line.startswith(f"error: {topology}: device.architecture: {arch}: word_bytes: "), line
    assert "2-byte" in line and "expected 2" in line


def test_parallel_refuses_it_at_load_naming_the_architecture_s_field(tmp_path, invoke) -> None:
    topology, arch = _array_topology(tmp_path, 1)
    line = _one_error_line(*invoke("parallel", "--scheme", "ring", "--devices", "4", "-w", "llama3-8b",
                                   "--seq-len", "32768", "--topology", str(topology)))
    assert line.startswith(f"error: {topology}: device.architecture: {arch}: word_bytes: "), line
    assert "give both the same width" not in line


def test_an_array_topology_of_2_byte_words_loads(tmp_path, invoke) -> None:
    topology, _ = _array_topology(tmp_path, 2)
    code, output = invoke("check", str(topology))
    assert code == 0 and output.startswith("ok "), output


# ----------------------------------------------------------------------------- 3. a workload without word_bytes
@pytest.mark.parametrize(("direction", "tp"), [("fwd+bwd", "2"), ("fwd+bwd", "1"), ("fwd", "1"), ("decode", "1")])
def test_parallel_refuses_a_workload_without_word_bytes_in_every_direction(tmp_path, invoke, direction, tp) -> None:
    """fwd+bwd at tp 2 (no memory modelled) printed 28.4 ms, its K/V hops costed in 2-byte words."""
    workload = _workload(tmp_path, drop=("word_bytes",))
    line = _one_error_line(*invoke("parallel", "--scheme", "ring", "--devices", "4", "-w", str(workload),
                                   "--seq-len", "32768", "--direction", direction, "--tp", tp))
    assert line.startswith(f"error: {workload}: params.word_bytes: missing"), line


@pytest.mark.parametrize("word_bytes", [1, 2, 4])
def test_the_bank_pim_prices_its_arithmetic_by_operand_width(tmp_path, word_bytes) -> None:
    """NeuPIMs' bank-PIM on decode attention with its access prices zeroed: its MACs (two host ops) and softmax ops
    at the host's `op_energy_pj` x word_bytes / 2, as the NPU's (s52: the 16-bit price at every width)."""
    pim = _device("neupims", "pim")
    pim = dataclasses.replace(pim, spec=dataclasses.replace(pim.spec, bank_pim_pj_per_bit=0.0,
                                                             offchip_pj_per_bit=0.0))
    attention = _op(tmp_path, "attention", DECODE, "neupims", word_bytes=word_bytes)
    expected_j = attention.flops * pim.host.op_energy_pj * 1e-12 * word_bytes / 2
    assert pim.cost([attention]).energy_j == pytest.approx(expected_j, rel=1e-12)
