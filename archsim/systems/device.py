"""Devices behind one protocol: what a group of layer ops costs on a device.

A device model answers `cost(ops, streamed_fraction)` for ops (`archsim.systems.step.Op`) that run on it together,
one after another (the GEMMs) or side by side (vector work beside memory traffic), with an `OpCost`: wall time,
the time its external memory interface is busy, energy, and busy seconds per unit. `streamed_fraction` < 1 says
that part of the ops' weights is still on chip from an earlier pass over the same weights (sub-batch
interleaving).

Kinds (`archsim.systems.system_spec.DEVICE_KINDS`) and their models:
- `npu`: `archsim.systems.npu_device.NpuDevice` (systolic arrays and vector units over an HBM);
- `bank-pim`: `archsim.systems.pim_device.BankPimDevice` (attention GEMVs in the banks, softmax on a host);
- `gpu`, `memory-pool`: `archsim.systems.gpu_device.GpuDevice` (the calibrated GPU model);
- `logic-pim`: `archsim.systems.logic_pim_device.LogicPimDevice` (Duplex's GEMM units on the HBM logic die, a
  roofline over the stacks' internal bandwidth);
- `architecture`: `archsim.systems.architecture_device.ArchitectureDevice` (an Architecture and a library mapping
  through the analytical model).
Each kind has one GEMM timing: the NPU's fold model, the GPU model's GEMM launch, the Logic-PIM's roofline, the
analytical model's mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from archsim.systems.step import Op


@dataclass(frozen=True)
class OpCost:
    """A device's cost of some ops: `time_s` wall time; `memory_s` the time its external memory interface is busy
    within it; `energy_j`; `busy_s` per unit (e.g. "npu" useful MAC time, "npu_array" array occupancy, "npu_hbm"
    its HBM transfers)."""

    time_s: float = 0.0
    memory_s: float = 0.0
    energy_j: float = 0.0
    busy_s: Mapping[str, float] = field(default_factory=dict)

    def __add__(self, other: OpCost) -> OpCost:
        return summed(self, (other,))


def summed(first: OpCost, rest: Iterable[OpCost]) -> OpCost:
    """`first` with each of `rest` added in turn (what `first + a + b ...` gives), building one OpCost, not one per
    addition: a serving run sums a layer's parts every iteration."""
    time_s, memory_s, energy_j, busy = first.time_s, first.memory_s, first.energy_j, dict(first.busy_s)
    for part in rest:
        time_s, memory_s, energy_j = time_s + part.time_s, memory_s + part.memory_s, energy_j + part.energy_j
        for unit, seconds in part.busy_s.items():
            busy[unit] = busy.get(unit, 0.0) + seconds
    return OpCost(time_s, memory_s, energy_j, busy)


class DeviceModel(Protocol):
    """A device as the systems layer sees it."""

    name: str
    kind: str
    # memory for weights and the KV cache: 0 for a device that holds neither; math.inf for a memory its spec leaves
    # unbounded (an architecture's outermost memory, which therefore never holds a served model's weights:
    # `system_model.check_bounded_holder`)
    capacity_bytes: float

    def cost(self, ops: Sequence[Op], streamed_fraction: float = 1.0) -> OpCost: ...
