"""Duplex's co-processing (Yun et al., MICRO'24; ../shared/reference/pim.md §2.3) on the systems layer: the
`co-processing` schedule's layer (`coprocessed_layer`) and expert co-processing (+PE: `expert_shares.tokens_per_expert`,
`expert_split`, the MoE op split between the xPU and the Logic-PIM), with expert tensor parallelism (+ET) and one
all-reduce after the experts; the rest of an iteration (PP stages, the LM head, energy) is
`archsim.systems.system_model`'s.

Assumptions:
- The layer is its dependency chain in order, each op on its device, with max() where the work is split between
  devices that do not wait on each other: the attention stage is the prompts' attention and the decode attention
  grouped by device, each device's share in order, the stage the slowest device (attention co-processing: decode
  attention on the Logic-PIM beside prefill attention on the xPU).
- With `expert_coprocessing` ("+PE") a MoE op's experts are split between the xPU (the device the MoE op goes to
  at any Op/B) and the system's Logic-PIM: the tokens x top_k routed pairs over the experts they are expected to
  reach (`tokens_per_expert`), as whole tokens summing to exactly the pairs: under uniform random routing the
  plain layer's experts (`step.experts_reached`), each taking tokens x top_k / reached, or under Zipf shares of
  exponent `zipf_skew` (expert i of the model picked in proportion to 1 / (i + 1)^s). A device's experts start on
  the xPU and those with the fewest tokens
  move to the Logic-PIM one by one while max(xPU time, Logic-PIM time) drops (the paper's lookup table of expert
  time vs tokens, here the devices' cost of the experts as one grouped op whose experts each get the group's mean
  tokens).
- `expert_tp` ("+ET", default) cuts every expert across the TP ranks, so each rank splits all of its node's
  experts (1/TP of each); without it a rank holds experts / TP whole experts (round-robin) and, with skew, the
  layer waits for the slowest rank.
- The xPU and the Logic-PIM read different bank bundles of the shared HBM (pim.md §2.2): both run at their full
  bandwidth at once, no contention is modelled.
- The MoE all-reduce after the experts is `system_model`'s TP all-reduce.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from archsim.systems.device import DeviceModel, OpCost
from archsim.systems.expert_shares import experts_op, rank_experts, rank_mean, tokens_per_expert
from archsim.systems.step import Op
from archsim.systems.system_messages import allreduce_s
from archsim.systems.system_model import (
    ATTENTION,
    LayerPhases,
    SystemModel,
    cost_in_order,
    dense_ops,
    device_of,
    logic_pim_of,
    ops_by_device,
    prompt_attention_ops,
)


def coprocessed_layer(model: SystemModel, contexts: np.ndarray, prompts: tuple[int, ...],
                 decode_ops: Sequence[Op]) -> LayerPhases:
    """The `co-processing` schedule's layer (module docstring): pre holds the ops before the attention and the
    prompts' attention, `attention` the decode attention, post the ops after it (the MoE op's split halves
    included); `coprocessed_s` the layer's time."""
    prefill = prompt_attention_ops(model, len(contexts), prompts)
    pre, post, post_s = _chain_ends(model, len(contexts), tuple(prompts))
    chain_s = pre.time_s
    stage: dict[str, list[list[Op]]] = {}  # device -> [prompt attention ops, decode attention ops]
    for at, ops in enumerate((prefill, decode_ops)):
        groups = ops_by_device(model, ops)
        for name, indices in groups.items():  # the usual case, every op on one device, keeps `ops` whole
            stage.setdefault(name, [[], []])[at] = ops if len(groups) == 1 else [ops[i] for i in indices]
    attention, stage_s = OpCost(), 0.0
    for name, (prompt_ops, decode) in stage.items():  # each device's prompt attention, then its decode attention
        device, device_s = model.devices[name], 0.0
        if prompt_ops:
            prompt_cost = device.cost(prompt_ops)
            pre, device_s = pre + prompt_cost, prompt_cost.time_s
        if decode:
            decode_cost = device.cost(decode)
            attention, device_s = attention + decode_cost, device_s + decode_cost.time_s
        stage_s = max(stage_s, device_s)
    chain_s += stage_s
    for time_s in post_s:
        chain_s += time_s
    tokens = len(contexts) + sum(prompts)
    return LayerPhases((pre,), (post,), attention, (attention.time_s,), (0.0,), (attention.time_s,), (), None,
                       allreduce_s(model, tokens), True, coprocessed_s=chain_s)


def _chain_ends(model: SystemModel, decodes: int,
                prompts: tuple[int, ...]) -> tuple[OpCost, OpCost, tuple[float, ...]]:
    """The layer's chain around its attention stage, which depends on the batch only through whether a request
    decodes and the new tokens (the layer's ops, `SystemModel.ops`, and the MoE split): the cost of the ops before
    the attention (the prompts' attention left out), the cost of the ops after it and each one's time in the
    chain, in order. Remembered per model by those two."""
    key = (decodes > 0, decodes + sum(prompts))
    found = model._chain_ends.get(key)
    if found is not None:
        return found
    pre_ops, post_ops = dense_ops(model, decodes, prompts)
    pre = cost_in_order(model, [op for op in pre_ops if op.name != ATTENTION], 1.0)
    post, post_s = OpCost(), []
    tokens = decodes + sum(prompts)
    for op in post_ops:
        if op.name == "moe" and model.system.schedule.expert_coprocessing:
            cost, time_s = _experts_split(model, tokens)
            post_s.append(time_s)
        else:
            cost = device_of(model, op).cost([op])
            post_s.append(cost.time_s)
        post = post + cost
    found = model._chain_ends[key] = (pre, post, tuple(post_s))
    return found


def expert_split(counts: Sequence[int], xpu_s: Callable[[tuple[int, ...]], float],
                 pim_s: Callable[[tuple[int, ...]], float]) -> tuple[int, float]:
    """Expert co-processing's placement (pim.md §2.3): experts sorted by tokens, all on the xPU at first, the ones
    with the fewest tokens moved to the Logic-PIM "until the time is minimised": of the n + 1 splits along that
    order (the m fewest-token experts moved, m = 0..n), the fastest, so a time that rises before it falls (a
    unit's fixed costs) does not stop the moves early, and all n moved (the whole MoE on the Logic-PIM) is a
    candidate. `xpu_s` and `pim_s` give a unit's time for a sorted tuple of token counts. Returns (experts moved,
    max(xPU time, Logic-PIM time)). A split whose Logic-PIM time alone is no better than the best so far is passed
    over without the xPU's time, which could only make it slower."""
    ordered = tuple(sorted(counts))
    moved, best_s = 0, xpu_s(ordered)
    for m in range(1, len(ordered) + 1):
        pim_time_s = pim_s(ordered[:m])
        if pim_time_s >= best_s:
            continue
        time_s = max(xpu_s(ordered[m:]), pim_time_s)
        if time_s < best_s:
            moved, best_s = m, time_s
    return moved, best_s


def _experts_split(model: SystemModel, tokens: int) -> tuple[OpCost, float]:
    """+PE: the MoE op of one rank as its experts split between the xPU and the Logic-PIM (module docstring):
    (energy and busy seconds averaged over the ranks, the slowest rank's time)."""
    params, schedule, par = model.workload.params, model.system.schedule, model.parallelism
    # the EP group's experts (all of them without EP) and its own tokens: balanced routing brings it as many
    counts = tokens_per_expert(tokens, int(params["top_k"]), int(model.shard.params["experts"]), schedule.zipf_skew)
    ranks = 1 if schedule.expert_tp else par.tp
    ffn_dim = int(params["ffn_dim"]) // (par.tp if schedule.expert_tp else 1)
    xpu = model.devices[model.system.device_for("moe", "decode", math.inf).name]
    pim = logic_pim_of(model)
    total, slowest_s = OpCost(), 0.0
    for mine in rank_experts(counts, ranks):
        moved, time_s = expert_split(mine, functools.partial(_experts_cost_s, model, xpu, ffn_dim),
                                     functools.partial(_experts_cost_s, model, pim, ffn_dim))
        ordered = sorted(mine)
        cost = _experts_cost(model, xpu, ffn_dim, tuple(ordered[moved:])) + _experts_cost(model, pim, ffn_dim,
                                                                                            tuple(ordered[:moved]))
        total, slowest_s = total + cost, max(slowest_s, time_s)
    return rank_mean(total, ranks, total.time_s / ranks), slowest_s


def _experts_cost_s(model: SystemModel, device: DeviceModel, ffn_dim: int, counts: tuple[int, ...]) -> float:
    return _experts_cost(model, device, ffn_dim, counts).time_s


def _experts_cost(model: SystemModel, device: DeviceModel, ffn_dim: int, counts: tuple[int, ...]) -> OpCost:
    """These experts (their token counts) on `device` as one grouped MoE op, each expert given the mean tokens."""
    if not counts:
        return OpCost()
    key = (device.name, ffn_dim, len(counts), sum(counts))
    cost = model._expert_costs.get(key)
    if cost is None:
        op = experts_op(model.shard_key, len(counts), sum(counts), ffn_dim, model.cascades("decode"))
        cost = model._expert_costs[key] = device.cost([op])
    return cost


