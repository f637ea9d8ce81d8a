"""Duplex's co-processing (Yun et al., MICRO'24; ../shared/reference/pim.md §2.3) on the systems layer: the
`co-processing` schedule's layer (`coprocessed_layer`) and expert co-processing (+PE: `tokens_per_expert`,
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
from dataclasses import replace

import numpy as np

from archsim.systems.device import DeviceModel, OpCost
from archsim.systems.sharding import shard_workload
from archsim.systems.step import Op, experts_reached, moe_op, rounded_experts
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


def tokens_per_expert(tokens: int, top_k: int, experts: int, zipf_skew: float) -> list[int]:
    """Tokens each of `experts` experts (the model's, or an EP group's) receives from `tokens` tokens routed to
    `top_k` distinct experts each: whole tokens summing to exactly the tokens x top_k routed pairs, over the experts
    they are expected to reach, at most `seen` an expert (a token picks an expert once; seen = the tokens, or, for
    an EP group holding fewer experts than top_k, pairs / experts rounded up, each token reaching all of them, as
    `step.moe_sizes` binds it). Uniform random routing (`zipf_skew` 0): the `step.experts_reached` experts, those
    of the plain layer's MoE op, each taking pairs / reached, the remainder one more each to the first (Mixtral, 5
    tokens: 10 pairs over 6 experts, 2, 2, 2, 2, 1, 1; rounding every expert up to ceil(10 / 8) = 2 had counted 16
    pairs). Zipf (s > 0): a token picks expert i with probability p_i = k (1 / (i + 1)^s) / sum (those above 1
    held at 1 and the rest spread again) and reaches it with probability r_i = 1 - (1 - p_i)^seen; the first
    round(sum r_i) experts (`step.rounded_experts`), the most popular, are reached and share the pairs as their
    expected tokens when reached, seen p_i / r_i: one each, the rest in proportion to seen p_i / r_i - 1
    (`_apportion`)."""
    pairs = tokens * top_k
    k = min(top_k, experts)
    seen = math.ceil(pairs / k) if k else 0
    if zipf_skew:
        picks = _apportion_real(k, [1.0 / (i + 1) ** zipf_skew for i in range(experts)], 1.0)
        reach = [1.0 - (1.0 - p) ** seen for p in picks]
        reached = rounded_experts(sum(reach), tokens, top_k, experts)
        extra = [max(0.0, seen * p / r - 1.0) for p, r in zip(picks[:reached], reach[:reached], strict=True)]
    else:
        reached = experts_reached(tokens, top_k, experts)
        extra = [1.0] * reached
    counts = [1 + n for n in _apportion(pairs - reached, extra, seen - 1)] if reached else []
    return counts + [0] * (experts - reached)


def _apportion_real(total: float, weights: Sequence[float], cap: float) -> list[float]:
    """`total` over the positive `weights` in proportion, each at most `cap` (total at most cap x their number):
    those above it held at `cap` and the rest spread again over the others, until none is above. Some weight is
    positive wherever total is (`tokens_per_expert`: every Zipf share; and the most popular expert's extra tokens
    wherever two tokens can meet at an expert, the only case with pairs left over)."""
    quotas = [0.0] * len(weights)
    free = [i for i, w in enumerate(weights) if w > 0]
    left = total
    while free and left > 0:
        scale = left / sum(weights[i] for i in free)
        over = {i for i in free if scale * weights[i] >= cap}
        for i in free:
            quotas[i] = cap if i in over else scale * weights[i]
        if not over:
            break
        left -= cap * len(over)
        free = [i for i in free if i not in over]
    return quotas


def _apportion(total: int, weights: Sequence[float], cap: int) -> list[int]:
    """`total` whole units over `weights`, each at most `cap` (`_apportion_real`'s quotas; `tokens_per_expert`'s
    total is at most cap x their number): each quota's floor, then one more to the largest remainders, the lower
    index first on a tie (the largest-remainder method), so they sum to `total`."""
    quotas = _apportion_real(total, weights, cap)
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(quotas)), key=lambda i: (counts[i] - quotas[i], i))
    short = total - sum(counts)  # the remainders' sum, but for float drift
    room = [i for i in order if counts[i] < cap][:short]
    assert len(room) == short, f"{total} units over {len(weights)} of at most {cap} each"
    for i in room:
        counts[i] += 1
    return counts


def expert_split(counts: Sequence[int], xpu_s: Callable[[tuple[int, ...]], float],
                 pim_s: Callable[[tuple[int, ...]], float]) -> tuple[int, float]:
    """Expert co-processing's placement (pim.md §2.3): experts sorted by tokens, all on the xPU at first, the ones
    with the fewest tokens moved to the Logic-PIM "until the time is minimised": of the n + 1 splits along that
    order (the m fewest-token experts moved, m = 0..n), the fastest, so a time that rises before it falls (a
    unit's fixed costs) does not stop the moves early, and all n moved (the whole MoE on the Logic-PIM) is a
    candidate. `xpu_s` and `pim_s` give a unit's time for a sorted tuple of token counts. Returns (experts moved,
    max(xPU time, Logic-PIM time))."""
    ordered = tuple(sorted(counts))
    moved, best_s = 0, xpu_s(ordered)
    for m in range(1, len(ordered) + 1):
        time_s = max(xpu_s(ordered[m:]), pim_s(ordered[:m]))
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


def rank_experts(counts: Sequence[int], ranks: int) -> list[list[int]]:
    """Each of `ranks` TP ranks' whole experts, dealt round-robin (expert i to rank i mod ranks): the token counts
    of those that receive tokens."""
    return [[n for i, n in enumerate(counts) if i % ranks == rank and n > 0] for rank in range(ranks)]


def rank_mean(total: OpCost, ranks: int, time_s: float) -> OpCost:
    """The ranks' summed cost as one rank's: memory seconds, energy and busy seconds averaged over them, at
    `time_s`."""
    return OpCost(time_s, total.memory_s / ranks, total.energy_j / ranks,
                  {unit: s / ranks for unit, s in total.busy_s.items()})


def whole_experts(model: SystemModel, tokens: int, streamed: float) -> tuple[str, OpCost]:
    """The blocked schedule's MoE op without `expert_tp` (expert parallelism within the node, Duplex and its PIM
    baselines, pim.md §2.3): each TP rank runs its round-robin share of whole experts (`rank_experts`, tokens as
    under uniform routing, `tokens_per_expert`) as one grouped op at the model's ffn_dim, on the unit the placement
    rules give that op (its Op/B), and the layer waits for the slowest rank; energy and busy seconds averaged over
    the ranks. Returns (the slowest rank's device, that cost) (`system_model.call_costs`)."""
    params, ranks = model.workload.params, model.parallelism.tp
    counts = tokens_per_expert(tokens, int(params["top_k"]), int(model.shard.params["experts"]), 0.0)
    total, slowest_s, slowest = OpCost(), 0.0, ""
    for mine in rank_experts(counts, ranks):
        if mine:
            op = experts_op(model.shard_key, len(mine), sum(mine), int(params["ffn_dim"]))
            device = device_of(model, op)
            cost = device.cost([op], streamed)
            total = total + cost
            if not slowest or cost.time_s > slowest_s:
                slowest_s, slowest = cost.time_s, device.name
    return slowest, rank_mean(total, ranks, slowest_s)


def _experts_cost_s(model: SystemModel, device: DeviceModel, ffn_dim: int, counts: tuple[int, ...]) -> float:
    return _experts_cost(model, device, ffn_dim, counts).time_s


def _experts_cost(model: SystemModel, device: DeviceModel, ffn_dim: int, counts: tuple[int, ...]) -> OpCost:
    """These experts (their token counts) on `device` as one grouped MoE op, each expert given the mean tokens."""
    if not counts:
        return OpCost()
    key = (device.name, ffn_dim, len(counts), sum(counts))
    cost = model._expert_costs.get(key)
    if cost is None:
        op = experts_op(model.shard_key, len(counts), sum(counts), ffn_dim)
        cost = model._expert_costs[key] = device.cost([op])
    return cost


# 16,384 ops: `archsim reproduce duplex`, the one user, asks for 10,920; an op with its analysis holds ~12 KB
# (65,536 had held up to ~0.8 GB).
@functools.lru_cache(maxsize=16384)
def experts_op(key: tuple, experts: int, pairs: int, ffn_dim: int) -> Op:
    """The MoE op of `experts` experts of width `ffn_dim` over `pairs` routed (token, expert) pairs, bound as the
    plain layer's (`step.moe_op`, `step.moe_sizes`: ceil(pairs / k) tokens each routed to k = min(top_k, experts)
    of them), so all of a layer's experts and its tokens x top_k pairs are the layer's own MoE op (its tokens,
    router and activations, not top_k times them); a subset's router and activations are its tokens' share (the
    router runs once a layer: split, not repeated, between the units)."""
    workload, _, _ = shard_workload(key)
    return moe_op(replace(workload, params={**workload.params, "ffn_dim": ffn_dim}), experts, pairs)
