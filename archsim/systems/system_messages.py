"""The messages a system model's iteration sends between its devices (`archsim.systems.system_model`), and their time:
- TP all-reduce: with a link named `tp`, a ring all-reduce of each row-parallel op's output per layer
  (`TP_REDUCED_OPS`: the output projection and the FFN or MoE, Megatron's two; the new tokens' hidden activations,
  their bytes from the ops' cascades), blocked; without one they are not modelled (the NeuPIMs artifact simulates
  one device's decoder blocks).
- PP stages: pp - 1 hops of the new tokens' activations between them (`stage_hops_s`: over the link named ep, else
  tp; none without either), one batch in flight (vLLM's PP).
- Expert parallelism (the Duplex paper's EP across nodes, DeepSpeed-MoE's and vLLM's data-parallel attention with
  expert parallelism): each MoE layer adds the tokens' exchange (`expert_exchange_s`): a dispatch and a combine
  all-to-all over the system's link named `ep` (required), each device sending its 1/TP share of its group's
  tokens x top_k hidden activations.
- Ops placed on a device with a memory of its own (an architecture device, a second GPU kind: not the weight
  holder nor a PIM computing in its HBM; `system_checks.apart_from_weights`) outside attention offloading: the
  activations sent to it and back are not modelled (no link role carries them).
A message the system names no link for is left out, time and energy (`untimed_messages` lists them). Links carry no
energy of their own: the system model charges the ranks' board power over their communication.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from archsim.systems.collectives import all_reduce_s, all_to_all_s, send_recv_s
from archsim.systems.links import Link
from archsim.systems.step import ACTIVATIONS_IN, ACTIVATIONS_OUT, Op
from archsim.systems.system_checks import apart_from_weights, weight_holder
from archsim.systems.system_types import EP_LINK, TP_LINK, Parallelism, System

if TYPE_CHECKING:  # system_model imports this module
    from archsim.systems.system_model import SystemModel

TP_REDUCED_OPS = ("out_proj", "ffn", "moe")  # row-parallel under TP: each device holds a partial sum of the output
STAGE_LINKS = (EP_LINK, TP_LINK)  # the link a PP stage's hop crosses: the first of these the spec names


def expert_exchange_s(model: SystemModel, tokens: int) -> float:
    """A MoE layer's token exchange between the EP groups: the dispatch of each of a group's `tokens` tokens to its
    top_k experts and the combine back, two all-to-alls over the `ep` link, each device sending its 1/TP share of
    the group's tokens x top_k hidden activations (module docstring); 0 without EP or in a dense layer. The
    dispatch sends the MoE op's input as its cascade is bound, at the experts' word size (an fp8 FFN,
    `ffn_word_bytes` 1, dispatches fp8 tokens, as DeepSeek-V3 serves); the combine sends the experts' outputs at
    the activations' word size, as an all-reduce does (`_reduced_bytes`: bf16 under an fp8 FFN)."""
    par, params = model.parallelism, model.shard.params
    if par.ep == 1 or tokens == 0 or "experts" not in params or model.layer_kind == "dense":
        return 0.0
    moe = next(op for op in model.ops("decode", tokens, 1) if op.name == "moe")
    link, share = model.system.links[EP_LINK], int(params["top_k"]) / par.tp
    return (all_to_all_s(moe.bytes_by_role[ACTIVATIONS_IN] * share, par.ep, link)
            + all_to_all_s(_reduced_bytes(moe) * share, par.ep, link))


def stage_link(links: Mapping[str, Link]) -> Link | None:
    """The link a PP stage's hop crosses (`stage_hops_s`): the first of `STAGE_LINKS` in `links`, None without."""
    return next((links[role] for role in STAGE_LINKS if role in links), None)


def stage_hops_s(model: SystemModel, tokens: int) -> float:
    """An iteration's hops between its PP stages: pp - 1 sends of the `tokens` new tokens' hidden activations (the
    layer's output, its last op's from its cascade), one stage after another as the batch is (one batch in
    flight); every TP rank sends its copy to its peer in the next stage at once (vLLM's PP), so a hop is one
    message. The link is the spec's first of `STAGE_LINKS`: stages are further nodes, so the nodes' network named
    ep (InfiniBand in the Duplex presets); else the TP link, assuming the nodes are joined at its rate (optimistic
    where they are joined by a slower network). 0 with one stage, no token or neither link: a spec that names no
    link (the NeuPIMs presets) models no messages, as it leaves out the TP all-reduce. Time only: links carry no
    energy in this model."""
    par, link = model.parallelism, stage_link(model.system.links)
    if par.pp == 1 or link is None or tokens == 0:
        return 0.0
    layer_output = model.ops("decode", tokens, 1)[-1].bytes_by_role[ACTIVATIONS_OUT]
    return (par.pp - 1) * send_recv_s(layer_output, link)


def allreduce_s(model: SystemModel, tokens: int) -> float:
    """The tensor-parallel all-reduces of a layer over the `tp` link for `tokens` new tokens: one ring all-reduce
    of each row-parallel op's output (`TP_REDUCED_OPS`, Megatron's two per layer), its bytes the op's output in its
    cascade; 0 without a tp link, one device or no token. Remembered per model and token count
    (`SystemModel.allreduces_s_by_tokens`)."""
    found = model.allreduces_s_by_tokens.get(tokens)
    if found is None:
        link, degree = model.system.links.get(TP_LINK), model.parallelism.tp
        found = 0.0
        if link is not None and degree > 1 and tokens:
            found = sum(all_reduce_s(_reduced_bytes(op), degree, link, algorithm="ring")
                        for op in model.ops("decode", tokens, 1) if op.name in TP_REDUCED_OPS)
        model.allreduces_s_by_tokens[tokens] = found
    return found


def _reduced_bytes(op: Op) -> float:
    """A row-parallel op's output as its all-reduce moves it: the cascade's output elements at the activations'
    word size, `Op.output_word_bytes` (an FFN in fp8, `ffn_word_bytes`, writes bf16 outputs, as Llama 3's FP8
    serving does; `archsim.systems.seqpar_schemes` all-reduces the same bf16 hidden vectors)."""
    return op.bytes_by_role[ACTIVATIONS_OUT] * op.output_word_bytes / op.binding.word_bytes


def untimed_messages(system: System, parallelism: Parallelism) -> list[str]:
    """The messages of `parallelism` that `system` names no link for, which its model therefore leaves out (no
    time, no energy): the TP all-reduces without a link named tp (`allreduce_s`), the hops between PP stages
    without one named ep or tp (`stage_hops_s`), and the activations to and from a device with a memory apart from
    the weight holder's (`system_checks.apart_from_weights`). An offloading model (`archsim.systems.offload`) times
    its TP all-reduces by `allreduce_s` too."""
    untimed = []
    if parallelism.tp > 1 and TP_LINK not in system.links:
        untimed.append(f"TP all-reduces at tp {parallelism.tp} (the system names no link {TP_LINK})")
    if parallelism.pp > 1 and stage_link(system.links) is None:
        untimed.append(f"hops between {parallelism.pp} PP stages (the system names no link "
                       f"{' or '.join(STAGE_LINKS)})")
    apart = apart_from_weights(system)
    if apart:
        holder = weight_holder(system)
        for name, ops in apart.items():
            untimed.append(f"activations to and from {name} ({system.devices[name].kind}) for {', '.join(ops)}: its "
                           f"memory is apart from {holder.name}'s, which holds the weights, and no link carries them")
    return untimed
