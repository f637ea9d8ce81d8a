"""The memory a layer's ops hold while they run, beside the weights: the working set of a prefill.

An op holds its activations (inputs, outputs, the K and V it reads or writes) and, where the kernel writes them to
memory (`materialised`), its intermediates; each tensor at the share of its elements that exist (`held_share`: a
MoE's routed (token, expert) pairs). A layer holds its input, the residual stream, beside its largest op. This is
the accounting of the Ring Attention paper's Table 1 (../shared/reference/seqpar-sparse.md §2.1: vanilla attention
holds its s x s scores, a blockwise kernel only its inputs and outputs), read off the library's cascades bound to
one device's tokens and heads (`archsim.systems.step.layer_ops`). A caller that counts the layer's K and V in the KV
cache it holds (`kv_in_cache`) leaves every KV-cache tensor out, so they are not counted twice.
`archsim.systems.seqpar_memory` builds the sequence-parallel schemes' working sets on it, `archsim.systems.system_model`
a serving prompt's (K and V in), and `archsim.systems.sparse_prefill` a long prefill's (K and V the cache's).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from archsim.cascade.ir import Cascade, Einsum, Ref, Var
from archsim.cascade.syntax import walk
from archsim.systems.gemms import einsum_density, ref_vars, writer_of
from archsim.systems.step import INTERMEDIATE, KV_CACHE, WEIGHTS, Op
from archsim.workload import SHARED_EXPERTS

LAYER_INPUT = "X"  # the first op's (the attention norm's) input: the layer's input, the residual stream
# a layer's FFN ops (a MoE layer's shared experts among them): an unfused FFN writes their hidden activations to
# memory; a workload's ffn_word_bytes binds them (`archsim.systems.system_checks`)
FFN_OPS = ("ffn", "moe", SHARED_EXPERTS)


def live_bytes(op: Op, materialised: bool, *, kv_in_cache: bool = False) -> float:
    """Bytes of an op's activations (inputs, outputs, and K and V unless `kv_in_cache`: counted in the KV cache
    instead) and, when the kernel keeps them (`materialised`), intermediates, each at the share of its elements that
    exist (`held_share`)."""
    roles = op.tensor_roles
    left_out = {WEIGHTS, *(() if materialised else (INTERMEDIATE,)), *((KV_CACHE,) if kv_in_cache else ())}
    return float(sum(size * held_share(op, name) for name, size in op.tensor_bytes.items()
                     if roles[name] not in left_out))


def layer_working_bytes(ops: Sequence[Op], materialised: Collection[str], *, kv_in_cache: bool = False) -> float:
    """One layer's working set: its input (`LAYER_INPUT` of its first op) and its largest op's `live_bytes`, the
    ops named in `materialised` with their intermediates, K and V left out where `kv_in_cache`."""
    return float(ops[0].tensor_bytes[LAYER_INPUT]) + max(live_bytes(op, op.name in materialised,
                                                                    kv_in_cache=kv_in_cache) for op in ops)


def held_share(op: Op, tensor: str) -> float:
    """The share of `tensor`'s elements a device holds. A tensor written under a data-dependent mask over its own
    indices (MoE top-k routing: the experts' H1, H3, A and O, the gates) exists for the routed (token, expert)
    pairs only, the writing Einsum's kept points (`gemms.einsum_density`: top_k / experts, as the MACs count
    them), its tokens gathered per expert as grouped-GEMM MoE kernels hold them. Every other tensor is whole: one
    no Einsum writes, one unmasked, one under a positional mask (causal scores are held s x s, their masked
    points written as the fill: Ring Attention Table 1's vanilla 2·b·H·s²), and a reduction whose mask ranges
    over a reduced index (the gates' denominator GD[t]: every token has one)."""
    writer = writer_of(op, tensor)
    if writer is None or writer.mask is None or not writer.mask.data_dependent:
        return 1.0
    if not _mask_indices(op.binding.cascade, writer) <= set(ref_vars(writer.output)):
        return 1.0
    return einsum_density(op, writer)


def _mask_indices(cascade: Cascade, einsum: Einsum) -> set[str]:
    """The leaf index variables `einsum`'s mask predicate reads, directly or through the tensors it reads."""
    nodes = list(walk(einsum.mask.predicate))
    return ({var for node in nodes if isinstance(node, Ref) for var in ref_vars(node)}
            | {leaf for node in nodes if isinstance(node, Var) for leaf in cascade.var_leaves[node.name]})
