"""The factory of system models: a system spec running a workload as the serving simulator's `IterationModel`.

`system_model(system, workload)` checks the pair and returns the model of its schedule: an
`archsim.systems.offload.OffloadModel` for attention offloading (ping-pong, staggered), otherwise an
`archsim.systems.system_model.SystemModel` (blocked, overlapped, sub-batch interleaving, and co-processing with
`archsim.systems.coprocessing`'s layer). It sits above the modules it chooses from, so none of them imports back.
"""

from __future__ import annotations

from archsim.errors import SpecError
from archsim.systems.coprocessing import coprocessed_layer
from archsim.systems.offload import OffloadModel, offload_model
from archsim.systems.step import block_of
from archsim.systems.system_model import EP_LINK, SystemModel, system_model_of
from archsim.systems.system_spec import System, check_against_workload
from archsim.workload import Workload


def system_model(system: System, workload: Workload) -> SystemModel | OffloadModel:
    """`system` running `workload` (module docstring): an `OffloadModel` for a ping-pong or staggered schedule; a
    SpecError when the workload cannot be cut by the parallelism (expert parallelism needs a link named ep, and no
    attention offloading), names no decoder block, or its weights do not fit a device."""
    check_against_workload(system, workload)
    par = system.parallelism_for(workload.name)
    if par.ep > 1 and system.schedule.kind in ("ping-pong", "staggered"):
        raise SpecError(system.source, f"{system.parallelism_path(workload.name)}.ep",
                        f"expert parallelism with attention offloading ({system.schedule.kind}) is not modelled: "
                        "expected ep 1")
    if par.ep > 1 and EP_LINK not in system.links:
        raise SpecError(system.source, f"links.{EP_LINK}", f"missing: {system.parallelism_path(workload.name)}.ep "
                                                           f"= {par.ep} exchanges each MoE layer's tokens between "
                                                           "the expert-parallel groups over a link named ep")
    if system.schedule.expert_coprocessing and not any(d.kind == "logic-pim" for d in system.devices.values()):
        raise SpecError(system.source, "schedule.expert_coprocessing", "expected a logic-pim device to share the "
                                                                       "experts with; the system has none")
    block_of(workload, "a system runs the model's decoder layers")
    if system.schedule.kind in ("ping-pong", "staggered"):
        return offload_model(system, workload)
    compose = coprocessed_layer if system.schedule.kind == "co-processing" else None
    model = system_model_of(system, workload, par, compose)
    if len(model.kinds) > 1 and system.schedule.kind == "sub-batch-interleaving":
        raise SpecError(system.source, "schedule.kind", f"{workload.name} mixes dense and MoE layers (moe_every); "
                                                        "sub-batch interleaving's pipeline over mixed layers is not "
                                                        "modelled: use blocked, overlapped or co-processing")
    if system.schedule.expert_coprocessing and not system.schedule.expert_tp and "experts" in workload.params:
        local = int(model.shard.params["experts"])
        if local % par.tp:
            raise SpecError(system.source, "schedule.expert_tp", f"false spreads the {local} experts of a node over "
                                                                 f"its {par.tp} TP ranks: expected a divisor; set "
                                                                 "it true or change tp")
    return model
