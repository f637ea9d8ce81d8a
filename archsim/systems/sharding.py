"""A workload cut over TP, EP and PP: one device's sizes, the layers per stage, the requests per expert-parallel
group. Pure functions: `archsim.systems.system_model` and the models built on it cost what they return.

- One device's sizes (`shard`): heads, kv_heads, ffn_dim and dense_ffn_dim / TP, experts / EP, and top_k at most
  those experts (an EP group holding fewer experts than top_k, as Mixtral at EP 8 or DeepSeek-V3 at EP 64: its
  tokens' pairs each reach all of them, the model's top_k kept as `step.ROUTED_TOP_K`). With TP a multiple of
  kv_heads each device holds one KV head, replicated over TP / kv_heads devices, as vLLM's `QKVParallelLinear` cuts
  the QKV projection (Megatron-LM instead requires TP to divide the query groups): its K and V weights, its KV cache
  and their projection are on every one of them.
- PP stages (`pp_partition`): vLLM's default partition, layers % pp stages hold ceil(layers / pp) layers, the others
  floor, so pp need only be at most the layers; the extra layers sit before the last stage (which holds the final
  norm and the LM head).
- Vocab tables (`vocab_tables`): the embedding table and the LM head, vocab-parallel over TP as vLLM's; both on a
  device with pp 1 (one table where the workload ties them, `params.vocab_tables: 1`), the embedding on the first
  stage and the LM head on the last otherwise (tied or not: each stage holds its own copy, as Megatron-LM and vLLM
  keep one), so with uneven stages a table and an extra layer need not share one.
- Expert-parallel groups (`ep_groups`): with `ep` > 1 each EP group serves its own requests as a data-parallel
  replica of the attention and dense layers (DeepSpeed-MoE's and vLLM's data-parallel attention with expert
  parallelism, SGLang's DP attention): those the scheduler assigned it (the serving simulator's, kept from
  admission until the request leaves, `archsim.systems.serving`), or, for a batch without assignments, 1/EP of
  them dealt round-robin by position; each group holds every non-expert weight (cut TP ways) and 1/EP of the
  experts (each cut TP ways: `shard`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import replace

from archsim.errors import SpecError
from archsim.systems.step import ROUTED_TOP_K
from archsim.systems.system_types import Parallelism
from archsim.workload import Workload


def shard(workload: Workload, par: Parallelism) -> Workload:
    """One device's sizes: heads, kv_heads, ffn_dim and dense_ffn_dim / TP, experts / EP. When TP is a multiple
    of kv_heads (MQA, or GQA over more devices than KV heads), each device holds one KV head, replicated over
    TP / kv_heads devices, as vLLM cuts the QKV projection (`QKVParallelLinear`: with TP at least the KV heads,
    one KV head per rank and TP / kv_heads replicas of each; Megatron-LM instead requires TP to divide the query
    groups): its K and V weights, its KV cache and their projection are on every one of them. An EP group holding
    fewer experts than top_k binds top_k to them and keeps the model's as `step.ROUTED_TOP_K`: under balanced
    routing its experts take its own tokens x top_k pairs (module docstring), which `step.moe_sizes` binds as that
    many pairs over more tokens, each reaching all of the group's experts."""
    params = dict(workload.params)
    for size, degree in (("heads", par.tp), ("kv_heads", par.tp), ("ffn_dim", par.tp), ("dense_ffn_dim", par.tp),
                         ("experts", par.ep)):
        if size in params:
            params[size] = kv_heads_per_device(params[size], degree) if size == "kv_heads" else params[size] // degree
    if params.get("top_k", 0) > params.get("experts", math.inf):
        params[ROUTED_TOP_K], params["top_k"] = params["top_k"], params["experts"]
    return replace(workload, params=params)


def kv_heads_per_device(kv_heads: int, degree: int) -> int:
    """The KV heads one of `degree` devices cutting the heads holds: kv_heads / degree, or one KV head, repeated,
    when the degree is a multiple of the KV heads (`shard`'s rule, for tensor parallelism and for a sequence-parallel
    scheme that cuts the heads)."""
    return max(1, kv_heads // degree)


@functools.lru_cache(maxsize=256)
def shard_workload(key: tuple) -> tuple[Workload, str, str | None]:
    """The shard, block and layer kind of a `SystemModel.shard_key`, one Workload per key (so what is remembered
    per workload object, such as `bind`'s checked params, serves every op of the shard)."""
    name, path, params, block, kind = key
    return Workload(name, "", "", dict(params), path), block, kind


def pp_partition(layers: int, pp: int) -> tuple[int, ...]:
    """Decoder layers of each of `pp` stages, first to last, as vLLM's default partition (`get_pp_indices` in
    vllm/distributed/utils.py, read in v0.8.5 without VLLM_PP_LAYER_PARTITION): floor(layers / pp) on every stage
    and the layers % pp left over one each on the stages before the last, from the second-to-last back (the last
    stage holds the final norm and the LM head), so layers % pp stages hold ceil(layers / pp). Megatron-LM splits
    evenly unless told the first and last stages' counts. pp must be at most `layers`
    (`system_checks.check_against_workload`)."""
    floor, extra = divmod(layers, pp)
    return tuple(floor + (pp - 1 - extra <= stage < pp - 1) for stage in range(pp))


def vocab_tables(pp: int, tables: int) -> tuple[int, ...]:
    """Vocab tables (the input embedding, the LM head) one device of each of `pp` stages holds, of a model with
    `tables` of them (`model_vocab_tables`: 1 where the LM head is the embedding): all of them with one stage, the
    embedding on the first stage and the LM head on the last otherwise (a tied model's last stage keeps a copy).
    Each is vocab x hidden words cut TP ways by vocab (vLLM's `VocabParallelEmbedding` and `ParallelLMHead`,
    `step.lm_head_op`); every EP group holds them (they are not experts)."""
    return (tables,) if pp == 1 else (1, *(0,) * (pp - 2), 1)


def model_vocab_tables(workload: Workload) -> int:
    """The model's vocab x hidden weight tables: `params.vocab_tables` (1 tied, 2 apart), 2 where not given (the
    input embedding and the LM head apart, as LLaMA 1-3 from 7B)."""
    return int(workload.params.get("vocab_tables", 2))


def ep_groups(contexts: Sequence[int], prompts: tuple[int, ...], ep: int, context_groups: Sequence[int] = (),
              prompt_groups: Sequence[int] = ()) -> list[tuple[Sequence[int], tuple]]:
    """The iteration's requests on each of the `ep` expert-parallel groups (module docstring), those with work, in
    the batch's order: by `context_groups` and `prompt_groups` (each request's group) where given, else dealt
    round-robin by position; one group, all of them, without EP. A group index beyond `ep` is a SpecError."""
    if ep == 1:
        return [(contexts, prompts)]
    if len(context_groups) or len(prompt_groups):
        beyond = [g for g in (*context_groups, *prompt_groups) if g >= ep]
        if beyond:
            raise SpecError("<python>", "ep_groups", f"expected EP groups below ep {ep}, got {beyond[0]}")
        groups = [([c for c, g in zip(contexts, context_groups, strict=True) if g == group],
                   tuple(p for p, g in zip(prompts, prompt_groups, strict=True) if g == group)) for group in range(ep)]
    else:
        groups = [(contexts[g::ep], prompts[g::ep]) for g in range(ep)]
    return [(c, p) for c, p in groups if len(c) + len(p)] or [groups[0]]
