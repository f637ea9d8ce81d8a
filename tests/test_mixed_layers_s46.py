"""A model mixing dense and MoE layers (`moe_every` 2: half its layers each kind) costs each kind of layer as itself
in the doors that time the layers' other ops their own way (KV selection, sparse prefill, sequence parallelism),
not every layer as a MoE one.

The workloads are built here from Mixtral-8x7B's sizes: `ALL_MOE` itself (every layer MoE), `DENSE` without its
experts (every layer a SwiGLU FFN of ffn_dim 14336), and `HALF` with `moe_every: 2` and `dense_ffn_dim: 14336`, whose
16 dense layers are `DENSE`'s and whose 16 MoE layers are `ALL_MOE`'s. Their attention, LM head and KV cache are the
same, so by counting alone a time summed over the layers of `HALF` is the mean of the other two's, and so is a time
per layer that is the count-weighted mean of the kinds (`seqpar`'s rule for a model of several layer kinds)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems import kv_selection, sparse_prefill
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.step import DENSE, MOE, Step, non_attention_kinds
from archsim.systems.topology import load_topology

ALL_MOE = library.load_workload_spec("mixtral-8x7b")
DENSE_MODEL = replace(ALL_MOE, name="mixtral-8x7b-dense",
                      params={k: v for k, v in ALL_MOE.params.items() if k not in ("experts", "top_k")})
HALF = replace(ALL_MOE, name="mixtral-8x7b-half", params={**ALL_MOE.params, "moe_every": 2, "dense_ffn_dim": 14336})
H200 = load_gpu("h200-sxm")
CONTEXT = 32768


def _mean(f) -> float:
    return (f(ALL_MOE) + f(DENSE_MODEL)) / 2


def test_non_attention_kinds_are_the_layers_of_each_kind():
    step = Step("decode", 1, 1)
    kinds = {kind: (ops, count) for kind, ops, count in non_attention_kinds(HALF, step)}
    assert {kind: count for kind, (_, count) in kinds.items()} == {DENSE: 16, MOE: 16}
    assert "moe" in {op.name for op in kinds[MOE][0]} and "ffn" in {op.name for op in kinds[DENSE][0]}
    assert [(kind, count) for kind, _, count in non_attention_kinds(ALL_MOE, step)] == [(MOE, 32)]
    assert [(kind, count) for kind, _, count in non_attention_kinds(DENSE_MODEL, step)] == [(DENSE, 32)]


def test_quest_decode_weighs_dense_and_moe_layers():
    def decode_s(workload):
        return kv_selection.quest_decode(workload, H200, CONTEXT, 2048).time_s

    assert decode_s(ALL_MOE) > 1.2 * decode_s(DENSE_MODEL)  # the two kinds differ: the test can tell them apart
    assert decode_s(HALF) == pytest.approx(_mean(decode_s), rel=1e-9)


def test_flexprefill_other_ops_weigh_dense_and_moe_layers():
    def other_s(workload):
        return sparse_prefill.flex_prefill(workload, H200, CONTEXT, 0.1)[0].other_ops_s

    assert other_s(ALL_MOE) > 1.2 * other_s(DENSE_MODEL)
    assert other_s(HALF) == pytest.approx(_mean(other_s), rel=1e-9)
    assert sparse_prefill.dense_prefill(HALF, H200, CONTEXT).other_ops_s == pytest.approx(other_s(HALF), rel=1e-12)


def test_parallel_layer_scope_is_the_count_weighted_layer():
    hgx = load_topology("hgx-h100")

    def layer(workload):
        return parallel_time(ParallelSpec("megatron-sp", 2, workload, CONTEXT, hgx.gpu, hgx, scope="layer"))

    assert layer(ALL_MOE).compute_s > 1.2 * layer(DENSE_MODEL).compute_s
    half = layer(HALF)
    assert half.compute_s == pytest.approx(_mean(lambda w: layer(w).compute_s), rel=1e-9)
    assert half.time_s == pytest.approx(_mean(lambda w: layer(w).time_s), rel=1e-9)
    assert half.ideal_s == pytest.approx(_mean(lambda w: layer(w).ideal_s), rel=1e-9)
