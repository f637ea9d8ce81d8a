"""Cost models for a system spec's devices (`archsim.systems.device`), one per device kind.

- `npu`: `NpuDevice` over the system's HBM: the one `bank-pim` device (a PIM HBM, or plain HBM when no op is placed
  on it), with the PIM's row buffers as the spec says;
- `bank-pim`: `BankPimDevice`, its softmax on the system's NPU;
- `gpu`, `memory-pool`: `GpuDevice` with the packaged calibration's parameters for its GEMMs (`GEMM_FAMILY`) and for
  its attention kernel's family (a gpu's `attention_kernel`, which the spec names where attention is placed;
  `ATTENTION_KERNEL` only for a device given no attention, whose kernel is never read), and its energy model;
- `logic-pim`: `LogicPimDevice`, the entry's `count` stacks working on an op together;
- `chip`: `ChipDevice`, a roofline over the chip preset's peaks derated by the entry's efficiencies, and its energy
  model;
- `architecture`: `ArchitectureDevice`, the architecture and mapping through the analytical model.
"""

from __future__ import annotations

from archsim.systems.device import DeviceModel
from archsim.systems.system_checks import companion
from archsim.systems.system_types import GPU_KINDS, Device, System


def device_models(system: System) -> dict[str, DeviceModel]:
    """A cost model per device the placement uses, by device name."""
    used = {rule.device for rule in system.placement}
    return {name: _model(system, device) for name, device in system.devices.items() if name in used}


def _model(system: System, device: Device) -> DeviceModel:
    if device.kind == "npu":
        from archsim.systems.npu_device import NpuDevice

        return NpuDevice(device.name, device.spec, companion(system, device).spec)
    if device.kind == "bank-pim":
        from archsim.systems.pim_device import BankPimDevice

        return BankPimDevice(device.name, device.spec, device.channel_policy, companion(system, device).spec,
                             system.source)
    if device.kind in GPU_KINDS:
        from archsim.systems.gpu_device import ATTENTION_KERNEL, CALIBRATED, calibrated_gpu_device

        return calibrated_gpu_device(device.spec, device.attention_kernel or ATTENTION_KERNEL, name=device.name,
                                     energy=device.energy, kind=device.kind, timing=device.timing or CALIBRATED,
                                     memory_utilization=device.memory_utilization or 1.0, source=system.source)
    if device.kind == "logic-pim":
        from archsim.systems.logic_pim_device import LogicPimDevice

        return LogicPimDevice(device.name, device.spec, device.count)
    if device.kind == "chip":
        from archsim.systems.chip_device import ChipDevice

        return ChipDevice(device.name, device.spec, device.matmul_efficiency, device.memory_efficiency, system.source,
                          energy=device.energy)
    from archsim.systems.architecture_device import ArchitectureDevice  # the last of DEVICE_KINDS

    return ArchitectureDevice(device.name, device.spec, device.mapping, system.source)
