"""Arithmetic energy by operand width: the one rule of every device priced per FLOP or per arithmetic op (a gpu's
or chip's `pj_per_flop`, `gpu_device.ActionEnergy`; an npu's `op_energy_pj`, `npu_device`; a Logic-PIM's
`pj_per_flop`, `logic_pim_device`; a bank-PIM's MACs and softmax at its host's `op_energy_pj`, `pim_device`).

Rule: a device's price per FLOP is its price at 2-byte (16-bit) operands, and a FLOP on w-byte operands costs it
x w / 2: linear in the operand width, as a bank-PIM's MACs already read their words at `bank_pim_pj_per_bit` per
bit (`pim_device`). Sources: every price shipped is a 16-bit one (../shared/reference/pim.md §5 "ALU 0.32 pJ per
op", the AttAcc artifact's FP16 ALU, which NeuPIMs' FP16 NPU, Duplex's FP16 xPU and its Logic-PIM of 512 FP16 MACs
a module are priced with); the reference's tensor-core MAC energy is "~0.2-0.4 pJ/FLOP for fp16/bf16, half that for
fp8" (gpu.md §5, suggested defaults), and its H100 chip bounds are 0.707 pJ/FLOP in BF16 and 0.354 in FP8
(energy_defaults.csv, TDP over peak): half at half the width. Assumption: linear on the other side too, a 4-byte
FLOP at twice the 2-byte price, and for every FLOP of an op, its softmax, norms and activations as its MACs. Horowitz
(ISSCC 2014, 45 nm: FP16 multiply 1.1 pJ, FP32 3.7) has a multiplier's energy growing faster than its width, so a
4-byte price here is a lower bound.

The width is the one the arithmetic runs at, which each device's width rule says: a unit without a 1-byte path
that computes 1-byte words on its 16-bit one (an A100's tensor cores, `gpu_device`; a chip without an fp8 peak,
`chip_device`) pays the 16-bit price.
"""

from __future__ import annotations

PRICED_WORD_BYTES = 2  # the operand width every per-FLOP price is quoted at (16-bit: fp16 or bf16)


def flops_at_16_bit(flops: float, operand_bytes: float) -> float:
    """`flops` on `operand_bytes`-byte operands as the 16-bit FLOPs that cost the same (module docstring: x
    operand_bytes / 2), what a price per 16-bit FLOP multiplies; 16-bit FLOPs are returned as given (an integer
    count stays one, so a 16-bit run's sums are what they were before widths were priced)."""
    if operand_bytes == PRICED_WORD_BYTES:
        return flops
    return flops * operand_bytes / PRICED_WORD_BYTES
