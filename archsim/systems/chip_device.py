"""A chip archsim has no microarchitectural model of (a TPU, `archsim.systems.chip.Chip`) as a roofline device.

An op costs max(FLOPs / (matrix peak x `matmul_efficiency`), bytes / (HBM bandwidth x `memory_efficiency`)), the
roofline of Williams, Waterman & Patterson (CACM 2009) derated by two efficiencies. Assumptions:
- FLOPs are the op's cascade analysis (`Op.flops`: a MAC is two, every other op one) and all of them run at the
  matrix units' peak for the op's word size (2 bytes: bf16; 1 byte: fp8, at the bf16 peak on a chip without an fp8
  peak, as a GPU without fp8 tensor cores runs them at its fp16 rate, `gpu_device.word_problem`; any other word size
  is refused). A 1-byte word is fp8 (the workloads' fp8 FFN, `ffn_word_bytes`): a chip's int8 peak (TPU v5e's and
  v6e's, twice bf16) is an integer format's, not read. Softmax, norms and activations run on a TPU's vector units,
  whose rate this roofline does not model (a chip file may not give it): it is optimistic for ops rich in non-MAC
  work.
- Bytes are the op's tensors but its intermediates, each moved once, less the share of its weights that
  `streamed_fraction` says is still on chip (`Op.moved_bytes`): no tiling, so no re-reads, and intermediates stay
  on chip.
- The two efficiencies are the system spec's (`matmul_efficiency`, `memory_efficiency`, both required, in
  (0, 1]); there are no defaults, since the reachable fraction of a chip's peaks depends on the software stack.
- No launch or dispatch cost, no overlap between ops: the ops of one call run one after another, times add.
- Energy, by `energy`: priced per action where the system spec gives the device `energy_model: per-action` (an
  `ActionEnergy`, the gpu device's prices and rule, `archsim.systems.gpu_device`): the op's moved bytes x 8 x
  `hbm_pj_per_bit` + x `sram_pj_per_byte` + its FLOPs x `pj_per_flop` x the width its matrix units compute at /
  2 bytes (`archsim.systems.arithmetic_energy`: a price at 16-bit operands; an fp8 peak's FLOPs half of it, 1-byte
  words on a chip without one, run at its bf16 peak, all of it: `_energy_j`), a derated op costing
  what it moves and computes, not its time; its `static_w`, which an op's cost leaves out, the systems layer
  charges over the wall time. Otherwise `power_w` x time when the chip has a power figure (a constant power, as the
  GPU device's TDP model; as an attention pool, `archsim.systems.offload`, drawn over the whole decode time, idle
  included); unknown (NaN) when it has none, a known gap rather than a guessed number: NaN carries through every
  sum, so a system with such a device has unknown energy per token (`archsim simulate` prints n/a, null in JSON).
`memory_s` is bytes / (bandwidth x memory_efficiency); busy unit `<name>` is FLOPs / the matrix peak (not derated),
the compute time at peak. Capacity is the chip's whole HBM (`memory_bytes`, no reserve for activations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archsim.errors import SpecError
from archsim.model.gpu import PRECISION_BYTES
from archsim.systems.arithmetic_energy import flops_at_16_bit
from archsim.systems.chip import Chip
from archsim.systems.device import OpCost
from archsim.systems.step import Op

if TYPE_CHECKING:
    from archsim.systems.gpu_device import ActionEnergy

PRECISIONS_BY_WORD_BYTES = {2: ("bf16",), 1: ("fp8", "bf16")}  # the first precision the chip has is used
UNKNOWN_ENERGY_J = math.nan  # a chip without a power figure or prices: not modelled, so not 0


def word_problem(chip: Chip, word_bytes: int) -> str | None:
    """Why `chip`'s matrix units do not run `word_bytes`-byte words, or None when they do: it has a peak for one of
    `PRECISIONS_BY_WORD_BYTES[word_bytes]`. The one rule of a chip device's widths (`ChipDevice` and the system
    check of a workload's widths read it)."""
    peaks = chip.matmul_flops_per_s
    if any(p in peaks for p in PRECISIONS_BY_WORD_BYTES.get(word_bytes, ())):
        return None
    return (f"chip {chip.name} has no matrix peak for {word_bytes}-byte words (it has {', '.join(peaks)}): expected "
            "words of a precision it has a peak for (2 bytes: bf16; 1 byte: fp8, at the bf16 peak on a chip without "
            "fp8)")


@dataclass(frozen=True)
class ChipDevice:
    """A chip as a roofline device (module docstring): ops cost at its matrix peak and HBM bandwidth, each derated by
    the system spec's efficiency."""

    name: str
    spec: Chip
    matmul_efficiency: float  # of the matrix peak, in (0, 1]
    memory_efficiency: float  # of the HBM bandwidth, in (0, 1]
    source: str = "<python>"  # the system file, for errors
    kind: str = "chip"
    energy: ActionEnergy | None = None  # per-action prices; None: the chip's power for the time (module docstring)

    @property
    def capacity_bytes(self) -> float:
        return self.spec.memory_bytes

    def matmul_peak_flops_per_s(self, word_bytes: int) -> float:
        """The matrix units' dense peak for operands of `word_bytes` bytes (module docstring)."""
        return self.spec.matmul_flops_per_s[self.matmul_precision(word_bytes)]

    def matmul_precision(self, word_bytes: int) -> str:
        """The precision the matrix units run `word_bytes`-byte words at (module docstring), or a SpecError naming
        the device's preset where they do not run them."""
        problem = word_problem(self.spec, word_bytes)
        if problem:
            raise SpecError(self.source, f"devices.{self.name}.preset", problem)
        return next(p for p in PRECISIONS_BY_WORD_BYTES[word_bytes] if p in self.spec.matmul_flops_per_s)

    def elementwise_s(self, dram_bytes: float) -> float:
        """One elementwise pass moving `dram_bytes` at the derated bandwidth (no launch cost, as every op here)."""
        return dram_bytes / (self.spec.memory_bytes_per_s * self.memory_efficiency)

    def cost(self, ops: Sequence[Op], streamed_fraction: float = 1.0) -> OpCost:
        total = OpCost()
        for op in ops:
            precision = self.matmul_precision(op.binding.word_bytes)
            peak = self.spec.matmul_flops_per_s[precision]
            moved = op.moved_bytes(streamed_fraction)
            compute_s = op.flops / (peak * self.matmul_efficiency)
            memory_s = moved / (self.spec.memory_bytes_per_s * self.memory_efficiency)
            time_s = max(compute_s, memory_s)
            energy_j = self._energy_j(moved, op.flops, PRECISION_BYTES[precision], time_s)
            total = total + OpCost(time_s, memory_s, energy_j, {self.name: op.flops / peak})
        return total

    def _energy_j(self, moved_bytes: float, flops: float, operand_bytes: int, time_s: float) -> float:
        """An op's energy (module docstring): per action where priced, its FLOPs at the width the matrix units
        compute them at (`operand_bytes`: 1 at an fp8 peak, 2 at the bf16 peak a chip without one runs 1-byte words
        at; `arithmetic_energy`), else the chip's power for its time."""
        if self.energy is not None:
            return self.energy.energy_j(moved_bytes, flops_at_16_bit(flops, operand_bytes))
        return UNKNOWN_ENERGY_J if self.spec.power_w is None else self.spec.power_w * time_s
