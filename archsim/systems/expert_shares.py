"""Routed experts dealt out: how many tokens each expert of a MoE layer receives (`tokens_per_expert`, uniform or
Zipf routing), each TP rank's share of whole experts (`rank_experts`, round-robin, with `rank_mean` for the ranks'
summed cost as one rank's), and a group of experts as one op of the layer's MoE cascade (`experts_op`). Shared by
Duplex's expert co-processing (`archsim.systems.coprocessing`) and the blocked schedule's whole experts per rank
(`archsim.systems.system_model.whole_experts`), so neither imports the other.

Assumptions: tokens routed uniformly at random to top_k distinct experts (the Duplex paper's evaluation, pim.md
§2.4), or by Zipf shares (`tokens_per_expert`); experts dealt to ranks round-robin (expert i to rank i mod ranks).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import replace

from archsim.cascade.bind import MOE_CASCADE
from archsim.cascade.ir import Cascade
from archsim.memo import per_object
from archsim.systems.device import OpCost
from archsim.systems.sharding import shard_workload
from archsim.systems.step import LayerCascades, Op, experts_reached, library_cascade, moe_op, rounded_experts
from archsim.workload import max_size


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


def rank_experts(counts: Sequence[int], ranks: int) -> list[list[int]]:
    """Each of `ranks` TP ranks' whole experts, dealt round-robin (expert i to rank i mod ranks): the token counts
    of those that receive tokens."""
    return [[n for i, n in enumerate(counts) if i % ranks == rank and n > 0] for rank in range(ranks)]


def rank_mean(total: OpCost, ranks: int, time_s: float) -> OpCost:
    """The ranks' summed cost as one rank's: memory seconds, energy and busy seconds averaged over them, at
    `time_s`."""
    return OpCost(time_s, total.memory_s / ranks, total.energy_j / ranks,
                  {unit: s / ranks for unit, s in total.busy_s.items()})


def experts_op(key: tuple, experts: int, pairs: int, ffn_dim: int, cascades: LayerCascades | None = None) -> Op:
    """The MoE op of `experts` experts of width `ffn_dim` over `pairs` routed (token, expert) pairs, bound as the
    plain layer's (`step.moe_op`, `step.moe_sizes`: ceil(pairs / k) tokens each routed to k = min(top_k, experts)
    of them), so all of a layer's experts and its tokens x top_k pairs are the layer's own MoE op (its tokens,
    router and activations, not top_k times them); a subset's router and activations are its tokens' share (the
    router runs once a layer: split, not repeated, between the units). `key` is the shard's
    (`SystemModel.shard_key`), `cascades` the layer's the model binds (`SystemModel.cascades`: the MoE cascade its
    layer's ops bind, so a cascade file edited during a run does not mix two MoE cascades in one model; without
    them, the library's as its file reads now, `library.library_cascade`). Remembered
    per shard, sizes, that MoE cascade and the limit on sizes (`workload.max_size`, which binding checks the sizes
    against, as `system_model._cached_ops` is)."""
    cascade = library_cascade(MOE_CASCADE) if cascades is None else cascades[MOE_CASCADE]
    return _experts_op(key, _moe_cascades(cascade), max_size(), experts, pairs, ffn_dim)


@per_object(maxsize=16)
def _moe_cascades(cascade: Cascade) -> LayerCascades:
    """The MoE cascade as the `LayerCascades` key `_experts_op` is remembered by, one per loaded cascade."""
    return LayerCascades({MOE_CASCADE: cascade})


# 16,384 ops: `archsim reproduce duplex`, the one user, asks for 10,920; an op with its analysis holds ~12 KB
# (65,536 had held up to ~0.8 GB).
@functools.lru_cache(maxsize=16384)
def _experts_op(key: tuple, cascades: LayerCascades, _size_limit: int, experts: int, pairs: int,
                ffn_dim: int) -> Op:
    workload, _, _ = shard_workload(key)
    return moe_op(replace(workload, params={**workload.params, "ffn_dim": ffn_dim}), experts, pairs, cascades)
