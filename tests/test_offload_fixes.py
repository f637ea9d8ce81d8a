"""Attention offloading (Lamina, ../shared/reference/pim.md §3), the audit's fixes: the KV cache and the k, v sent
per token are the pool's, each KV head once, when the compute shard replicates KV heads (tp > kv_heads: GQA, MQA,
MLA); the link carries min(tp x replicas, b) // min(tp, b) messages at once, in the closed form and the event model
alike; BW_min refuses an empty batch and an infinite alpha; the event model's time per token is a steady state, no
drain in it."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems.gpu_device import ACTIVATION_RESERVE_BYTES
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, link_feasibility, token_s
from archsim.systems.offload_events import simulate_pipeline
from archsim.systems.system_spec import load_system, with_fields
from archsim.workload import workload_from_dict

NODE_LINK = {"name": "nvl", "description": "one node's NVLink", "source": "test", "latency_s": 8.0e-7,
             "bytes_per_s_per_direction": 450.0e9}  # a TP group wider than the nvlink4-h100 preset's 8 GPUs


def _lamina(workload, **fields) -> OffloadModel:
    """The `lamina` preset (DOP (2, 4), H100 compute, H20 pool) with these fields, running `workload`."""
    spec = workload if not isinstance(workload, str) else library.load_workload_spec(workload)
    return system_model(with_fields(load_system("lamina"), fields), spec)


def _wide_tp(workload, tp: int, pool: int = 4, **fields) -> OffloadModel:
    """One replica over `tp` compute GPUs, `pool` memory devices."""
    return _lamina(workload, **{"devices.compute.count": tp, "parallelism.tp": tp, "links.tp": NODE_LINK,
                                "devices.memory.count": pool, "parallelism.attention_pool": pool, **fields})


MQA = workload_from_dict({"name": "mqa", "description": "one KV head", "source": "test", "block": "llama",
                          "params": {"batch": 16, "seq_len": 4096, "hidden": 4096, "heads": 32, "kv_heads": 1,
                                     "head_dim": 128, "ffn_dim": 11008, "layers": 32, "vocab": 32000,
                                     "word_bytes": 2}})


# ------------------------------------------------------------------------------------------------ KV bytes
def test_kv_capacity_with_tp_above_kv_heads_is_the_pools(tmp_path) -> None:
    """LLaMA3-70B on DOP (16, 4): the 4 H20s hold 4 x (their DRAM - the activation reserve) of KV at 80 layers x
    2 x 8 heads x 128 x 2 B a token, 78,233 pages of 16 tokens, as DOP (8, 4) does; TP 16 replicated each KV head
    twice and gave half."""
    pages = {}
    for tp in (8, 16):
        spec = tmp_path / f"dop-{tp}-4.yaml"
        spec.write_text(f"base: lamina\nname: lamina-dop-{tp}-4\ndevices: {{compute: {{count: {tp}}}}}\n"
                        f"parallelism: {{tp: {tp}}}\nlinks: {{tp: {{name: nvl, description: d, source: s, "
                        "latency_s: 8.0e-7, bytes_per_s_per_direction: 450.0e+9}}\n")
        result = CliRunner().invoke(main, ["simulate", "--system", str(spec), "--workload", "llama3-70b", "--rate",
                                           "2", "--requests", "5", "--json"])
        assert result.exit_code == 0, result.output
        pages[tp] = json.loads(result.output)["kv_pages_capacity"]
    hand = 4 * (load_gpu("h20").dram_bytes - ACTIVATION_RESERVE_BYTES) / (80 * 2 * 8 * 128 * 2) / 16
    assert pages[16] == pages[8] == math.floor(hand) == 78233


def test_kv_bytes_per_token_of_mqa_and_mla_are_one_copy_per_pool_device() -> None:
    """MQA (1 KV head) over TP 2 and DeepSeek-V3's MLA (one 512 + 64 latent shared by all heads) over TP 16, one
    memory device each: a token's K and V over all layers, once."""
    mqa = _wide_tp(MQA, tp=2, pool=1)
    assert mqa.kv_bytes_per_token == 32 * 2 * 1 * 128 * 2
    mla = _wide_tp("deepseek-v3-mla", tp=16, pool=1, **{"devices.compute.preset": "h200-sxm"})
    assert mla.kv_bytes_per_token == 61 * (512 + 64) * 2
    assert mla.layer([1024] * 16).kv_wire_s * mla.nic_bytes_per_s == pytest.approx(16 * (512 + 64) * 2)


@pytest.mark.parametrize(("workload", "tp", "pool"), [("llama3-70b", 16, 4), ("mqa", 2, 1), ("mqa", 4, 1)])
def test_wire_bytes_per_layer_are_the_papers_with_tp_above_kv_heads(workload: str, tp: int, pool: int) -> None:
    """§3.3: per token and layer q (d) and the new k, v (2d/G) go out, the output (d) comes back: (2 + 2/G) e d B,
    one copy of each KV head however many compute devices replicate it."""
    spec = MQA if workload == "mqa" else library.load_workload_spec(workload)
    model = _wide_tp(spec, tp=tp, pool=pool)
    p = spec.params
    g = p["heads"] // p["kv_heads"]
    assert model.layer([1000] * 37).wire_bytes == (2 + 2 / g) * p["word_bytes"] * p["heads"] * p["head_dim"] * 37


# ------------------------------------------------------------------------------------------------ link lanes
def _staggered(micro_batches: int, tp: int, pool: int, link_bytes_per_s: float) -> OffloadModel:
    """LLaMA3-8B, `micro_batches` - 1 replicas of `tp` H100s, `pool` H20s, an attention link this slow."""
    return _lamina("llama3-8b", **{
        "schedule": {"kind": "staggered", "micro_batches": micro_batches, "divide_and_conquer": True},
        "devices.compute.count": tp * (micro_batches - 1), "parallelism.tp": tp,
        "devices.memory.count": pool, "parallelism.attention_pool": pool,
        "links.attention.bytes_per_s_per_direction": link_bytes_per_s})


@pytest.mark.parametrize(("micro_batches", "tp", "pool", "lanes"),
                         [(2, 1, 8, 1), (3, 2, 4, 2), (4, 1, 8, 3), (5, 1, 8, 4), (3, 4, 4, 1), (3, 8, 4, 1)])
def test_link_lanes_are_the_nics_over_a_messages(micro_batches: int, tp: int, pool: int, lanes: int) -> None:
    """min(tp x replicas, b) // min(tp, b): ping-pong and tp >= b have one."""
    assert _staggered(micro_batches, tp, pool, 50e9).link_lanes == lanes


def test_a_link_bound_pipeline_gets_faster_with_replicas_in_both_models() -> None:
    """tp 2, b 4, a 0.5 GB/s link, batch 256: ping-pong is link-bound on its one lane; 3 replicas carry 2 messages at
    once (6 compute NICs, 4 pool NICs, 2 a message), still link-bound, in half the time. The closed form and the
    event model agree (within 1 %), and each link direction stays one unit (busy time at most the iteration's)."""
    contexts = [1024] * 256
    times = []
    for micro_batches in (2, 4):
        model = _staggered(micro_batches, 2, 4, 0.5e9)
        cost = model.iteration(Batch((), tuple(contexts)))
        assert cost.busy_s["link_out"] == pytest.approx(cost.time_s)  # link-bound
        layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
        run = simulate_pipeline(layers, model.replicas, model.layers, 4, True, heads_s=heads_s,
                                lanes=model.link_lanes)
        assert run.token_s == pytest.approx(cost.time_s, rel=0.01)
        times.append(cost.time_s)
    assert times[0] / times[1] == pytest.approx(2)


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(("contexts", "alpha", "where"), [([], 0.2, "contexts"), ([1024] * 8, math.inf, "alpha"),
                                                          ([1024] * 8, math.nan, "alpha"), ([1024] * 8, 0, "alpha")])
def test_link_feasibility_refuses_an_empty_batch_and_an_infinite_alpha(contexts: list, alpha: float,
                                                                       where: str) -> None:
    with pytest.raises(SpecError) as error:
        link_feasibility(_lamina("llama3-70b"), contexts, alpha)
    assert error.value.where == where


# ------------------------------------------------------------------------------------------------ steady state
def test_the_event_models_token_is_at_least_the_replicas_work() -> None:
    """Ping-pong, LLaMA3-8B, batch 7 at 300 tokens: the one replica runs both micro-batches' layers and LM heads
    each token, so no steady-state token is shorter (the last gap, with the other micro-batch drained, was 1.6 %
    shorter); the replica-bound closed form is the event model's time."""
    model = _lamina("llama3-8b")
    contexts = [300] * 7
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    work_s = model.layers * sum(layer.compute_s for layer in layers) + sum(heads_s)
    for tokens in (2, 4, 8):
        run = simulate_pipeline(layers, model.replicas, model.layers, tokens, True, heads_s=heads_s)
        assert all(len(done) == tokens for done in run.token_done_s)
        assert run.token_s >= work_s * (1 - 1e-9)
        assert run.token_s == pytest.approx(model.iteration(Batch((), tuple(contexts))).time_s, rel=1e-6)


def test_the_closed_form_is_a_lower_bound_of_a_staggered_pipeline_within_the_readmes_residual() -> None:
    """A staggered pipeline (n = 3, LLaMA3-8B, 256 requests at 2K tokens, the preset's link): the closed form is
    at most the event model's time per token (24 tokens: two periods of the gaps in the second half) and below it
    by at most the 2.8 % of it that offload.py's docstring gives for n = 3 (13.7 % before the replicas and the pool
    served oldest first), the LM heads queueing the other micro-batches; without heads they agree."""
    model = _lamina("llama3-8b", **{
        "schedule": {"kind": "staggered", "micro_batches": 3, "divide_and_conquer": True},
        "devices.compute.count": 4})
    contexts = [2048] * 256
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    for heads, bound in ((heads_s, 0.028), ([0.0] * len(heads_s), 0.001)):
        closed = token_s(layers, heads, model.replicas, True, model.layers, model.link_lanes)
        event = simulate_pipeline(layers, model.replicas, model.layers, 24, True, heads_s=heads,
                                  lanes=model.link_lanes).token_s
        assert closed <= event * (1 + 1e-9)
        assert 1 - closed / event <= bound
