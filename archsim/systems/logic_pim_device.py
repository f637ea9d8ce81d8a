"""A Logic-PIM as a device: GEMM units on the logic die of HBM3 stacks (Duplex, Yun et al., MICRO'24;
../shared/reference/pim.md §2).

Hardware is `archsim.arch.logic_pim.LogicPIMSpec`, one stack. The device entry's `count` stacks work on an op
together (Duplex spreads each expert's columns and the requests' KV cache over all stacks, pim.md §2.3), so the
device's peak and internal bandwidth are `count` x one stack's, and so is its capacity.

An op costs a roofline, max(FLOPs / peak, bytes / internal bandwidth): the model Duplex's own simulator uses for
its Logic-PIM (pim.md §2.5, [DX-sim] `LOGIC`: op latency = max(compute, memory), no event queue).
- Bytes are what the op reads or writes in the stacks: weights (less what `streamed_fraction` says is still in the
  die's buffers), KV cache, activations in and out. Intermediates (scores, a softmax's running state, the SwiGLU
  product) stay in the die's buffers (pim.md §2.2: 8 KB per GEMM module, two 1 MB buffers, a 128 KB softmax unit).
- FLOPs: a MAC is two, every other op (exp, max, division, SiLU) one. Softmax and activations run on the die's own
  units, not in `peak_flops_per_s` (pim.md §2.2), but the reference gives no rate for them; assumption: they are
  counted at the GEMM units' rate, one op per FLOP of peak.
Ops of one call run one after another: times add. Busy unit `<name>`: FLOPs / peak. `memory_s`: bytes / internal
bandwidth less the time the stacks refresh (`streaming_bytes_per_s`; the stacks' own interface: the xPU reads other
bank bundles at the same time, pim.md §2.2).
Energy: FLOPs x `pj_per_flop` x the op's word bytes / 2 + bytes x 8 x `internal_pj_per_bit` (buffer-die access
energy, pim.md §5). `pj_per_flop` is a price at 16-bit operands (the stack's GEMM modules are 512 FP16 MACs,
pim.md §2.2; the presets' 0.32 pJ is §5's FP16 ALU), and an op of other words pays it x their width / 2
(`archsim.systems.arithmetic_energy`, every per-FLOP price's rule): the modules are assumed to compute the op's
words at their width, at the FP16 rate (`peak_flops_per_s` whatever the width).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from archsim.arch.logic_pim import LogicPIMSpec
from archsim.memo import remembered
from archsim.systems.arithmetic_energy import flops_at_16_bit
from archsim.systems.device import OpCost
from archsim.systems.step import Op


@dataclass(frozen=True)
class LogicPimDevice:
    """`count` Logic-PIM stacks working on each op together, an op costing the roofline of the module docstring
    (Duplex, pim.md §2)."""

    name: str
    spec: LogicPIMSpec  # one stack
    count: int  # stacks working on an op together
    kind: str = "logic-pim"
    # streamed fraction -> op -> the op's (time, memory time, energy, busy time): a serving run asks for the same
    # decode attention ops (one per context length) in many iterations
    _terms: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def peak_flops_per_s(self) -> float:
        return self.count * self.spec.peak_flops_per_s

    @property
    def internal_bytes_per_s(self) -> float:
        """The stacks' internal peak bandwidth."""
        return self.count * self.spec.internal_bytes_per_s

    @property
    def operand_bytes_per_s(self) -> float:
        """The bandwidth its operands come at, the roofline's (what the ridge point, FLOPs per byte, is read
        against): the stacks' internal peak."""
        return self.internal_bytes_per_s

    @property
    def streaming_bytes_per_s(self) -> float:
        """What an op's bytes stream at: the peak less refresh (`LogicPIMSpec.refresh_fraction`)."""
        return self.internal_bytes_per_s * (1 - self.spec.refresh_fraction)

    @property
    def capacity_bytes(self) -> float:
        return self.count * self.spec.capacity_bytes

    def cost(self, ops: Sequence[Op], streamed_fraction: float = 1.0) -> OpCost:
        if not ops:
            return OpCost()
        terms = self._terms.get(streamed_fraction)
        if terms is None:
            terms = self._terms[streamed_fraction] = {}
        found = remembered(terms, ops, lambda i: self._op_terms(ops[i], streamed_fraction))
        time_s = memory_s = energy_j = busy_s = 0.0
        for op_time_s, op_memory_s, op_energy_j, op_busy_s in found:  # the ops one after another, in op order
            time_s += op_time_s
            memory_s += op_memory_s
            energy_j += op_energy_j
            busy_s += op_busy_s
        return OpCost(time_s, memory_s, energy_j, {self.name: busy_s})

    def _op_terms(self, op: Op, streamed_fraction: float) -> tuple[float, float, float, float]:
        """One op's (time, memory time, energy, busy time): the roofline and prices of the module docstring."""
        flops, moved = op.flops, op.moved_bytes(streamed_fraction)
        compute_s, memory_s = flops / self.peak_flops_per_s, moved / self.streaming_bytes_per_s
        arithmetic_pj = flops_at_16_bit(flops, op.binding.word_bytes) * self.spec.pj_per_flop
        energy_j = (arithmetic_pj + moved * 8 * self.spec.internal_pj_per_bit) * 1e-12
        return max(compute_s, memory_s), memory_s, energy_j, compute_s
