"""The factory of system models: a system spec running a workload as the serving simulator's `IterationModel`.

`system_model(system, workload)` checks the pair and returns the model of its schedule: an
`archsim.systems.offload.OffloadModel` for attention offloading (ping-pong, staggered), an
`archsim.systems.context_parallel.ContextParallelModel` over the one-rank model for context parallelism, otherwise an
`archsim.systems.system_model.SystemModel` (blocked, overlapped, sub-batch interleaving, and co-processing with
`archsim.systems.coprocessing`'s layer). It sits above the modules it chooses from, so none of them imports back.
It refuses what the model would not read (a workload's `sinks` without `window`; its `tokens`, which the serving
simulator sets per step; a size read only beside another without it, `top_k` without `experts` and MLA's sizes
without `kv_lora_rank`, was refused when the workload loaded, `archsim.workload.NEEDS`), the degrees the
workload, or options, set that the system cannot run (`system_checks.check_degrees`; what the spec alone makes
impossible was refused when it loaded, `system_checks.check_system`) and a KV cache that holds less than one token,
naming the memory field of the device that holds it. A bank-PIM is held to its channels' capacity
(`_with_channel_capacity`). A weight-holding GPU's attention calls are held to the memory its weights leave, and an
iteration with prompts to the engine's share of its DRAM (`_with_memory_bounds`).
"""

from __future__ import annotations

import functools
from dataclasses import replace

from archsim.errors import SpecError
from archsim.systems.context_parallel import ContextParallelModel, context_parallel_model
from archsim.systems.coprocessing import coprocessed_layer
from archsim.systems.gpu_device import GpuDevice
from archsim.systems.offload import OffloadModel, offload_model
from archsim.systems.pim_device import BankPimDevice
from archsim.systems.step import block_of
from archsim.systems.system_checks import MEMORY_FIELDS, check_against_workload, check_degrees
from archsim.systems.system_model import SystemModel, held_memory_bytes, system_model_of
from archsim.systems.system_types import CONTEXT_PARALLEL, System
from archsim.workload import Workload, refuse_linear_attention


def system_model(system: System, workload: Workload) -> SystemModel | OffloadModel | ContextParallelModel:
    """`system` running `workload` (module docstring): an `OffloadModel` for a ping-pong or staggered schedule; a
    SpecError when the workload cannot be cut by the parallelism (expert parallelism needs a link named ep, and no
    attention offloading), names no decoder block, or its weights do not fit a device."""
    for name, value, kind, loader in (("system", system, System, "archsim.systems.system_spec.load_system"),
                                      ("workload", workload, Workload, "archsim.library.load_workload_spec")):
        if not isinstance(value, kind):
            raise SpecError("<python>", name, f"expected a {kind.__name__} ({loader}), got {type(value).__name__} "
                                              f"{value!r}")
    refuse_linear_attention(workload, f"system {system.name}")
    check_against_workload(system, workload)
    par = system.parallelism_for(workload.name)
    check_degrees(system, par, None, functools.partial(system.blame, workload.name))
    block_of(workload, "a system runs the model's decoder layers")
    _check_read(workload)
    if system.schedule.kind in ("ping-pong", "staggered"):
        return _with_memory_bounds(_with_kv_room(system, offload_model(system, workload)))
    if system.schedule.kind == CONTEXT_PARALLEL:
        rank = _with_memory_bounds(system_model_of(system, workload, par))
        return _with_kv_room(system, context_parallel_model(system, rank))
    compose = coprocessed_layer if system.schedule.kind == "co-processing" else None
    model = system_model_of(system, workload, par, compose)
    if len(model.kinds) > 1 and system.schedule.kind == "sub-batch-interleaving":
        raise SpecError(system.source, "schedule.kind", f"{workload.name} mixes dense and MoE layers (moe_every); "
                                                        "sub-batch interleaving's pipeline over mixed layers is not "
                                                        "modelled: use blocked, overlapped or co-processing")
    if not system.schedule.expert_tp and "experts" in workload.params:
        local = int(model.shard.params["experts"])
        if local % par.tp:
            raise SpecError(system.source, "schedule.expert_tp", f"false spreads the {local} experts of a node over "
                                                                 f"its {par.tp} TP ranks: expected a divisor; set "
                                                                 "it true or change tp")
    return _with_memory_bounds(_with_kv_room(system, _with_channel_capacity(model)))


def _with_channel_capacity(model: SystemModel) -> SystemModel:
    """`model` with each bank-PIM device told the KV bytes a request keeps on its channel per token
    (`BankPimDevice.channel_kv_bytes_per_token`): K and V of one token (`kv_bytes_per_token_layer`) on each layer of
    the stage holding the most. One request longer than a channel holds is then refused: on arrival by the serving
    simulator (`SystemModel.request_kv_tokens`), as a prompt by `SystemModel.check_memory`, in a decode by the
    device's placement (`archsim.systems.pim_device`). A model has a bank-PIM device only where a rule places
    decode attention on it (`devices.device_models`; npu-only's HBM, plain memory, has none); offloading and
    context-parallel models are not given the bytes."""
    return with_channel_kv(model, model.kv_bytes_per_token_layer * model.layers_per_device)


def with_channel_kv(model: SystemModel, per_token: float | None) -> SystemModel:
    """`model` with its bank-PIMs' `channel_kv_bytes_per_token` set to `per_token` (None: their channels
    unchecked)."""
    pims = {name: replace(d, channel_kv_bytes_per_token=per_token) for name, d in model.devices.items()
            if isinstance(d, BankPimDevice)}
    return replace(model, devices={**model.devices, **pims}) if pims else model


def _check_read(workload: Workload) -> None:
    """Refuse a workload size a decoder layer would not read: `sinks` without `window` (a workload may give them
    apart, for DuoAttention's or TokenSelect's cascade, `archsim.workload`; a decoder layer reads sinks only beside
    a sliding window), and `tokens` (the MoE cascade's tokens at once, which `step.layer_ops` sets to each step's
    batch x new tokens)."""
    if "sinks" in workload.params and "window" not in workload.params:
        raise SpecError(workload.path, "params.sinks", "a decoder layer reads it only with window, which the "
                                                       "workload does not give")
    if "tokens" in workload.params:
        raise SpecError(workload.path, "params.tokens", "a system sets the tokens of each step itself (batch x new "
                                                        "tokens), so the workload's would not be read: remove it "
                                                        "(analyze and run read it, on moe-experts)")


def _with_memory_bounds(model: SystemModel | OffloadModel) -> SystemModel | OffloadModel:
    """`model` with its weight-holding GPU's attention calls held to the memory its weights leave
    (`GpuDevice.call_memory_bytes`): its share of the DRAM (the memory for weights and the KV cache, plus the
    activation reserve; with Logic-PIM stacks, no more than they hold) less the weights of the device holding the
    most. A prompt whose eager N x N scores exceed it cannot run (the serving simulator refuses its request), where
    the GPU model alone would have compared them with the whole DRAM. Assumption: the KV cache is sized to fill that
    same room (`kv_capacity_bytes`: only the fixed `gpu_device.ACTIVATION_RESERVE_BYTES` is kept beside it), so the
    check lets a call's workspace borrow the cache's room: optimistic, as vLLM sizes its cache after a profiling pass
    whose peak at its longest prompt would have shrunk the cache by that workspace. A GPU holding no weights keeps
    the whole-DRAM check. The same share of the DRAM bounds an iteration with prompts (`SystemModel.engine_bytes`,
    `check_memory`): the weights, the KV cache of its requests and one layer's working set over its new tokens; a
    prompt needing more alone cannot run at all. A weight holder of another kind (an NPU, with its own activation
    buffer, pim.md §1.2; a spatial-array chip) is not checked. Attention offloading's compute replica is checked
    without a KV cache (its prompts' K and V leave for the memory pool layer by layer: `OffloadModel.iteration`)."""
    if isinstance(model, OffloadModel):
        compute = _with_memory_bounds(model.compute)
        return replace(model, compute=compute, pool=replace(model.pool, devices=compute.devices))
    holder = model.weight_device
    if not isinstance(holder, GpuDevice):
        return model
    engine_bytes, _ = held_memory_bytes(model)  # Duplex: the xPU's HBM is the Logic-PIM stacks, which may hold less
    room = engine_bytes - model.weight_bytes_per_device
    return replace(model, devices={**model.devices, holder.name: replace(holder, call_memory_bytes=room)},
                   engine_bytes=engine_bytes)


def _with_kv_room(system: System, model: SystemModel | OffloadModel) -> SystemModel | OffloadModel:
    """`model`, refused when its KV cache cannot hold one token: the error names the memory of the device that
    holds the cache (its preset's capacity field, `system_checks.MEMORY_FIELDS`: `dram_bytes` or
    `memory_bytes`; the device entry of other kinds)."""
    per_token, room = model.kv_bytes_per_token, model.kv_capacity_bytes
    if room >= per_token:
        return model
    pool = isinstance(model, OffloadModel)
    device = system.devices[model.pool_device.name if pool else model.weight_device.name]
    fields = MEMORY_FIELDS.get(device.kind)
    source, where = (device.spec.source, fields[0]) if fields else (system.source, f"devices.{device.name}")
    held = "its memory" if pool else "its memory less the weights"
    raise SpecError(source, where, f"the KV cache of {model.name} on devices.{device.name} of {system.source} "
                                   f"({held}) holds {room:.4g} B, less than one token's {per_token:.4g} B")
