"""Pipeline stages that do not divide the layers (`sharding.pp_partition`, vLLM's default partition): every
layer still runs once an iteration, the heaviest stage's weights are checked against memory, and the KV cache is
sized by the stage that holds the fewest tokens."""

from dataclasses import replace

import pytest

from archsim.errors import SpecError
from archsim.library import load_workload_spec
from archsim.systems.collectives import send_recv_s
from archsim.systems.iteration import Batch
from archsim.systems.links import load_link
from archsim.systems.models import system_model
from archsim.systems.sharding import pp_partition
from archsim.systems.step import WEIGHTS, lm_head_op
from archsim.systems.system_checks import check_against_workload
from archsim.systems.system_spec import load_system, with_fields

BATCH = Batch(prefill_tokens=(96,), decode_context_tokens=(300, 1200, 2500))
TOKENS = 3 + 96  # new tokens of BATCH: one per decode, a prompt's every token
LLAMA3_8B_VOCAB_TABLE_BYTES = 128256 * 4096 * 2  # vocab x hidden x word_bytes: one of the embedding and LM head
LLAMA3_8B_KV_BYTES_PER_LAYER = 2 * 8 * 128 * 2  # K and V x kv_heads x head_dim x word_bytes, one token


@pytest.fixture(scope="module")
def seven_layers():
    """Llama-3-8B cut to 7 decoder layers: 7 is prime, so every pp from 2 to 6 splits it unevenly."""
    llama = load_workload_spec("llama3-8b")
    return replace(llama, name="llama3-8b-7-layers", params={**llama.params, "layers": 7})


def _model(workload, pp: int, system: str = "vllm-h100", tp: int = 1):
    return system_model(load_system(system).with_options(tp=tp, pp=pp), workload)


@pytest.mark.parametrize(("layers", "pp", "stages"), [
    # vLLM v0.8.5 get_pp_indices: [L // pp] * pp, then partitions[-i] += 1 for i in 2 .. L % pp + 1
    (61, 2, (31, 30)),
    (61, 4, (15, 15, 16, 15)),
    (61, 8, (7, 7, 8, 8, 8, 8, 8, 7)),
    (7, 3, (2, 3, 2)),
    (7, 4, (2, 2, 2, 1)),
    (64, 4, (16, 16, 16, 16)),
    (7, 7, (1,) * 7),
])
def test_partition_is_vllms_default(layers, pp, stages):
    assert pp_partition(layers, pp) == stages


@pytest.mark.parametrize("pp", [2, 4, 61])
def test_deepseek_v3_61_layers_accepted_at_pp_that_does_not_divide_them(pp):
    """The old check refused pp 2 and 4 (61 is prime: only pp 1 and 61 divided it). The model then runs vLLM's
    partition: pp stages of 61 // pp or one more layer, 61 in all. At pp 2 and 4 the 671B weights fit the H100s
    only with the experts spread over 8 EP groups, so the model is built with an EP link added."""
    deepseek = load_workload_spec("deepseek-v3-mla")
    check_against_workload(load_system("vllm-h100").with_options(tp=4, pp=pp), deepseek)
    stages = pp_partition(61, pp)
    assert len(stages) == pp and sum(stages) == 61 and set(stages) <= {61 // pp, 61 // pp + 1}
    system = with_fields(load_system("vllm-h100"), {"links.ep": "ib-ndr-400g"}).with_options(tp=4, pp=pp, ep=8)
    assert system_model(system, deepseek).stage_layers == stages


def test_pp_above_the_layers_is_refused_naming_the_field(tmp_path):
    deepseek = load_workload_spec("deepseek-v3-mla")
    with pytest.raises(SpecError) as info:
        check_against_workload(with_fields(load_system("vllm-h100"), {"parallelism.pp": 62}), deepseek)
    assert info.value.where == "parallelism.pp"
    assert "expected at most layers (61 in" in info.value.message and info.value.message.endswith("got 62")
    with pytest.raises(SpecError) as info:
        check_against_workload(load_system("vllm-h100").with_options(pp=62), deepseek)
    assert (info.value.source, info.value.where) == ("--pp", "")


@pytest.mark.parametrize("pp", [2, 4])
def test_iteration_is_every_layer_once_plus_the_stage_hops(seven_layers, pp):
    """Same ops as pp 1 (7 layers, however split), plus pp - 1 sends of the new tokens' hidden activations
    (tokens x hidden x word_bytes) over the tp link (vllm-h100 names no ep link)."""
    one, staged = _model(seven_layers, 1), _model(seven_layers, pp)
    hop_s = send_recv_s(TOKENS * 4096 * 2, load_link("nvlink4-h100"))
    base, cost = one.iteration(BATCH), staged.iteration(BATCH)
    assert cost.time_s == pytest.approx(base.time_s + (pp - 1) * hop_s, rel=1e-12)
    assert cost.busy_s == pytest.approx(base.busy_s, rel=1e-12)  # no compute added or lost
    # energy: the same op energy; board power over each hop on the sending and the receiving rank
    assert cost.energy_j == pytest.approx(base.energy_j + 2 * (pp - 1) * hop_s * staged.board_w, rel=1e-12)


@pytest.mark.parametrize(("pp", "heaviest", "tables"), [
    (2, 4, 1),  # (4, 3): the first stage holds the extra layer and the embedding
    (4, 2, 1),  # (2, 2, 2, 1)
    (7, 1, 1),  # (1, ..., 1): an end stage, its one table
])
def test_weights_per_device_are_the_ceil_share(seven_layers, pp, heaviest, tables):
    model, one = _model(seven_layers, pp), _model(seven_layers, 1)
    layer = one.weight_bytes_per_layer  # TP 1 at either pp: the same layer
    assert model.layers_per_device == heaviest == -(-7 // pp)
    assert model.weight_bytes_per_device == pytest.approx(heaviest * layer + tables * LLAMA3_8B_VOCAB_TABLE_BYTES,
                                                          rel=1e-12)
    assert one.weight_bytes_per_device == pytest.approx(7 * layer + 2 * LLAMA3_8B_VOCAB_TABLE_BYTES, rel=1e-12)


def test_heaviest_stage_follows_vllms_placement(seven_layers):
    """pp 3: (2, 3, 2), the extra layer on the middle stage, which holds no vocab table: the heaviest device is an
    end stage's 2 layers + a table (2 x 436 MB + 1.05 GB), above the middle's 3 layers (1.31 GB)."""
    model = _model(seven_layers, 3)
    layer = model.weight_bytes_per_layer
    assert 2 * layer + LLAMA3_8B_VOCAB_TABLE_BYTES > 3 * layer
    assert model.stage_weight_bytes == pytest.approx(
        (2 * layer + LLAMA3_8B_VOCAB_TABLE_BYTES, 3 * layer, 2 * layer + LLAMA3_8B_VOCAB_TABLE_BYTES), rel=1e-12)
    assert model.weight_bytes_per_device == max(model.stage_weight_bytes)


@pytest.mark.parametrize(("pp", "fewest_tokens_stage"), [(2, 0), (3, 1), (4, 0)])
def test_kv_capacity_is_the_stage_holding_the_fewest_tokens(seven_layers, pp, fewest_tokens_stage):
    """Each stage's room over its own layers' KV per token; every stage keeps the same tokens, so the cache holds
    the fewest of them (vLLM: the minimum of the workers' blocks). At pp 3 the middle stage (3 layers, no table)
    holds fewer tokens than the first (2 layers + a table, the heaviest weights): on an H100's ~72 GB the room
    differs by under 2 %, the layers by 3 / 2."""
    model = _model(seven_layers, pp)
    memory = model.memory_bytes_per_device
    tokens = [(memory - weights) / (layers * LLAMA3_8B_KV_BYTES_PER_LAYER)
              for layers, weights in zip(model.stage_layers, model.stage_weight_bytes, strict=True)]
    assert min(range(pp), key=tokens.__getitem__) == fewest_tokens_stage
    assert model.kv_bytes_per_token == 7 * LLAMA3_8B_KV_BYTES_PER_LAYER
    assert model.kv_capacity_bytes / model.kv_bytes_per_token == pytest.approx(min(tokens), rel=1e-12)


def test_even_pp_keeps_the_cache_of_pp_devices(seven_layers):
    """pp dividing the layers: (memory - the heaviest's weights) on each of the pp stages, as before."""
    fourteen = replace(seven_layers, name="llama3-8b-14-layers", params={**seven_layers.params, "layers": 14})
    model = _model(fourteen, 2)
    assert model.kv_capacity_bytes == 2 * (model.memory_bytes_per_device - model.weight_bytes_per_device)


def test_mixed_dense_and_moe_layers_run_unevenly_each_stage_weighing_its_own_layers():
    """GLaM (32 layers, MoE every other one: layers 2, 4, ... are MoE) at pp 3, (11, 11, 10): each stage weighs
    the kinds of the layers it holds, layers 1-11 (5 MoE, 6 dense) plus the embedding, 12-22 (6 MoE, 5 dense),
    23-32 (5 MoE, 5 dense) plus the LM head; the heaviest is the second (the model's mix averaged over the stages
    put 11 / 32 of every layer on each and missed it by 0.8 GB). The iteration runs 16 layers of each kind, as at
    pp 1, plus two hops."""
    glam = load_workload_spec("glam-143b")
    system = load_system("duplex")
    one = system_model(system.with_options(tp=8, pp=1), glam)
    staged = system_model(system.with_options(tp=8, pp=3), glam)
    moe, dense = (staged.by_kind[kind].weight_bytes_per_layer for kind in ("moe", "dense"))
    table = lm_head_op(glam, 1, 8).bytes_by_role[WEIGHTS]
    assert staged.stage_layers == (11, 11, 10)
    assert staged.stage_kind_counts == ({"dense": 6, "moe": 5}, {"dense": 5, "moe": 6}, {"dense": 5, "moe": 5})
    assert staged.stage_weight_bytes == pytest.approx(
        (5 * moe + 6 * dense + table, 6 * moe + 5 * dense, 5 * moe + 5 * dense + table), rel=1e-12)
    assert staged.weight_bytes_per_device == pytest.approx(6 * moe + 5 * dense, rel=1e-12)
    hops_s = staged.iteration(BATCH).time_s - one.iteration(BATCH).time_s
    assert hops_s == pytest.approx(2 * send_recv_s(TOKENS * int(glam.params["hidden"]) * 2, load_link("ib-ndr-400g")),
                                   rel=1e-9)  # over duplex's ep link: stages are further nodes
