"""Grouped-query attention on FuseMax (mapping `fusemax-gqa`), the refusal of a GQA workload by a multi-head
cascade, and of a Llama-block workload by the GPT block's FFN (`archsim.point`)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.model.analytical import plans
from archsim.point import prepare, run_point


def test_a_group_shares_each_key_value_tile():
    """Llama-3-8B (batch 16) at 4K tokens: the R = 4 query heads of a group read each K/V tile from the global
    buffer, so DRAM carries every tensor once (Q, K and V in, AV out: K and V of 8 KV heads, a quarter of Q's
    bytes each)."""
    point = prepare("fusemax-gqa", workload="llama3-8b")
    result = run_point("fusemax-gqa", workload="llama3-8b")
    dram, sizes = result.traffic_bytes["DRAM"], {t.name: t for t in point.analysis.tensors}
    for name in ("Q", "K", "V", "AV"):
        assert dram[name] == sizes[name].bytes
    assert dram["K"] == dram["Q"] / 4 == 16 * 32 * 4096 * 128 * 2 / 4


@pytest.mark.parametrize("seq_len", [1024, 8192, 65536])
def test_gqa_takes_the_causal_mha_time_with_at_most_its_traffic(seq_len):
    """The same MACs and exponentials as the causal multi-head cascade at the workload's query heads: the array
    time is the same; DRAM traffic is never more (K and V are shared by a group; at 64K the buffer holds a quarter
    of the query rows per head, so K and V stream as often as MHA's)."""
    gqa = run_point("fusemax-gqa", workload="llama3-8b", sets={"seq_len": seq_len})
    mha = run_point("fusemax", cascade="attention-1pass-causal", workload="bert-base",
                    sets={"seq_len": seq_len, "batch": 16, "heads": 32, "head_dim": 128})
    assert gqa.compute_cycles == mha.compute_cycles
    assert sum(gqa.traffic_bytes["DRAM"].values()) <= sum(mha.traffic_bytes["DRAM"].values())
    if seq_len <= 8192:  # the group's queries and state fit the buffer whole
        assert sum(gqa.traffic_bytes["DRAM"].values()) < sum(mha.traffic_bytes["DRAM"].values())


def test_a_multi_head_cascade_refuses_a_grouped_query_workload(cli):
    with pytest.raises(SpecError) as info:
        run_point("fusemax", workload="llama3-8b")
    assert info.value.where == "params.kv_heads" and info.value.source.endswith("llama3-8b.yaml")
    assert "8 K/V heads for 32 query heads" in info.value.message and "fusemax-gqa" in info.value.message
    assert run_point("fusemax", workload="bert-base").feasible  # MHA: kv_heads = heads
    result = cli("run", "--mapping", "fusemax", "--workload", "mixtral-8x7b", expect=2)
    assert "mixtral-8x7b.yaml: params.kv_heads" in result.output


def test_a_gpt_block_ffn_refuses_a_llama_block_workload(cli):
    """Llama-3-8B's FFN is SwiGLU (three GEMMs, cascade ffn-swiglu); the shipped linear-ffn mappings run GPT's GELU
    FFN (two). It was modelled silently as the GELU FFN; now the workload's `block` is named with the cascade to
    run. A GPT-block model (GPT-3 7B) and a workload without a block (BERT) run as before."""
    with pytest.raises(SpecError) as info:
        run_point("linear-ffn-fusemax", workload="llama3-8b")
    assert info.value.where == "block" and info.value.source.endswith("llama3-8b.yaml")
    assert "dense FFN is cascade ffn-swiglu" in info.value.message and "runs cascade ffn," in info.value.message
    assert run_point("linear-ffn-fusemax", workload="gpt3-7b").feasible
    assert run_point("linear-ffn-flat", workload="bert-base").feasible
    result = cli("run", "--mapping", "linear-ffn-flat", "--workload", "mixtral-8x7b", expect=2)
    assert "mixtral-8x7b.yaml: block: " in result.output and result.output.count("\n") == 1


@pytest.mark.parametrize("seq_len", [1024, 4096, 16384])
def test_fully_masked_key_tiles_are_skipped(seq_len):
    """The causal cascades' running-state Einsums are masked by tile (`m1 * M0 <= p`): query p works on the
    floor(p / M0) + 1 key tiles that hold a key it sees. Their points are that sum, in closed form; the 1-D array's
    cycles (the bound at E = 128) shrink with it against the non-causal cascade on the same mapping, and changing
    the tile size through the rank (M0) moves the count with it."""
    sets = {"seq_len": seq_len, "batch": 16, "heads": 32, "head_dim": 128}
    causal = prepare("fusemax", cascade="attention-1pass-causal", workload="bert-base", sets=sets)
    full = prepare("fusemax", cascade="attention-1pass", workload="bert-base", sets=sets)
    m0 = causal.binding.rank_sizes["M0"]
    tiles_seen = sum(p // m0 + 1 for p in range(seq_len))  # (m1, p) pairs with m1 * M0 <= p
    heads = 16 * 32
    assert causal.analysis.points["RM"] == heads * tiles_seen
    assert causal.analysis.points["RNV"] == heads * tiles_seen * 128
    assert full.analysis.points["RM"] == heads * (seq_len // m0) * seq_len
    fraction = tiles_seen / ((seq_len // m0) * seq_len)  # 0.53 at 4K: 8.5 of 16 tiles per query
    state = ("RM", "PRM", "SPD", "RD", "SPNV", "RNV")
    one_d = {name: sum(e.compute_cycles for e in run_point("fusemax", cascade=name, workload="bert-base",
                                                           sets=sets).einsums if e.name in state)
             for name in ("attention-1pass-causal", "attention-1pass")}
    assert one_d["attention-1pass-causal"] == pytest.approx(one_d["attention-1pass"] * fraction, rel=1e-9)
    smaller = prepare("fusemax", cascade="attention-1pass-causal", workload="bert-base", sets={**sets, "M0": 128})
    assert smaller.analysis.points["RM"] == heads * sum(p // 128 + 1 for p in range(seq_len))


@pytest.mark.parametrize("seq_len", [32768, 65536])
def test_a_causal_pass_fetches_no_key_tile_after_the_query_tile(seq_len):
    """Where the global buffer holds only part of the queries (n_p query tiles of T = N / n_p), FuseMax streams K
    and V once per query tile; a causal pass fetches, for query tile i, only the key tiles m1 with
    m1 * M0 <= (i + 1) T - 1 (the others hold no key its queries see). DRAM's K and V are that count of tiles,
    in closed form; Q and AV move once."""
    sets = {"seq_len": seq_len, "batch": 16, "heads": 32, "head_dim": 128}
    point = prepare("fusemax", cascade="attention-1pass-causal", workload="bert-base", sets=sets)
    result = run_point("fusemax", cascade="attention-1pass-causal", workload="bert-base", sets=sets)
    full = run_point("fusemax", cascade="attention-1pass", workload="bert-base", sets=sets)
    (plan,) = plans(point.binding, point.analysis, point.arch, point.mapping, None)  # factors resolved
    n_p = math.prod(lp.factor for lp in plan.group.loops if lp.level == "DRAM" and lp.rank == "P")
    m0 = point.binding.rank_sizes["M0"]
    tile = seq_len // n_p
    assert n_p > 1  # the point of the test: the queries do not fit the buffer whole
    tiles = sum(min(seq_len // m0, ((i + 1) * tile - 1) // m0 + 1) for i in range(n_p))
    tile_bytes = 16 * 32 * m0 * 128 * 2
    dram = result.traffic_bytes["DRAM"]
    assert dram["K"] == dram["V"] == tiles * tile_bytes
    assert full.traffic_bytes["DRAM"]["K"] == n_p * (seq_len // m0) * tile_bytes
    assert dram["Q"] == full.traffic_bytes["DRAM"]["Q"] and dram["AV"] == full.traffic_bytes["DRAM"]["AV"]


@pytest.mark.parametrize("mapping", ["fusemax", "fusemax-gqa", "linear-qkv-fusemax"])
def test_a_cascade_without_a_latent_refuses_a_latent_attention_workload(cli, mapping):
    """DeepSeek's multi-head latent attention on a cascade without kv_lora_rank would drop its RoPE dimensions
    and latent projections: exit 2 naming the workload's params.kv_lora_rank and the MLA cascades."""
    result = cli("run", "--mapping", mapping, "--workload", "deepseek-v3-mla", expect=2)
    assert ("deepseek-v3-mla.yaml: params.kv_lora_rank: deepseek-v3-mla uses multi-head latent attention"
            in result.output)
    assert "attention-mla-prefill" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_latent_attention_workload_keeps_its_output_projection(cli):
    """The output projection (heads x head_dim -> hidden) is the same cascade for MLA: not refused."""
    assert "latency" in cli("run", "--mapping", "linear-out-fusemax", "--workload", "deepseek-v3-mla").output


@pytest.mark.parametrize("mapping", ["unfused", "flat", "flat-offchip"])
def test_unfused_and_flat_run_the_causal_three_pass_cascade(mapping):
    """attention-3pass-causal has attention-3pass's Einsums, so the Unfused and FLAT mappings run it. Every
    Einsum's points are causal, N (N + 1) / 2 of N^2 per head, and so is the compute of these all-masked
    cascades; DRAM traffic falls too (a masked reader skips the tiles it keeps no point of)."""
    n = 4096
    causal = run_point(mapping, cascade="attention-3pass-causal", workload="gpt3-13b", sets={"seq_len": n})
    shapes = replace(library.load_workload_spec("gpt3-13b"), block=None)  # a decoder is refused unmasked
    full = run_point(mapping, workload=shapes, sets={"seq_len": n})
    assert causal.feasible and full.feasible
    assert causal.compute_cycles == pytest.approx(full.compute_cycles * (n + 1) / (2 * n), rel=1e-9)
    assert sum(causal.traffic_bytes["DRAM"].values()) < sum(full.traffic_bytes["DRAM"].values())
    assert causal.latency_s < full.latency_s
