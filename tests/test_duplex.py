"""Duplex (issue 15, ../shared/reference/pim.md §2): the `co-processing` schedule, expert co-processing (+PE) and
expert tensor parallelism (+ET).

Expected values are hand derivations from the schedule's definition (pim.md §2.3): a layer is its dependency
chain with max() where independent work runs on two units at once; the experts start on the xPU and those with
the fewest tokens move to the Logic-PIM while max(xPU time, Logic-PIM time) drops.
"""

from __future__ import annotations

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.coprocessing import expert_split, experts_op, tokens_per_expert
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.models import system_model
from archsim.systems.requests import Request, gaussian_requests
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import load_system, with_fields
from archsim.systems.system_types import OP_KINDS

MIXTRAL = library.load_workload_spec("mixtral-8x7b")


@pytest.fixture(scope="module")
def pe():
    return load_system("duplex-pe")


def test_uniform_routing_gives_each_expert_tokens_times_top_k_over_experts() -> None:
    assert tokens_per_expert(64, 2, 8, 0.0) == [16] * 8  # 64 x 2 / 8
    assert tokens_per_expert(33, 2, 8, 0.0) == [9, 9] + [8] * 6  # the 66 pairs as whole tokens: 8.25 each
    # Zipf s = 1 over 4 experts: picks p = 2 x (1, 1/2, 1/3, 1/4) / (25/12) = 0.96, 0.48, 0.32, 0.24; reached by 12
    # tokens with r = 1 - (1 - p)^12 = 1, 0.9996, 0.990, 0.963 (3.95: all four); when reached 12 p / r = 11.52,
    # 5.76, 3.88, 2.99 tokens: one each, the other 20 by 10.52 : 4.76 : 2.88 : 1.99 -> 10.44, 4.73, 2.86, 1.98
    assert tokens_per_expert(12, 2, 4, 1.0) == [11, 6, 4, 3]  # 10 + 1, 4 + 1 + 1, 2 + 1 + 1, 1 + 1 + 1: 24 pairs
    # uniform random routing: one token reaches top_k of them, three tokens 64 (1 - (62 / 64)^3) = 5.8 -> 6
    assert tokens_per_expert(1, 2, 8, 0.0) == [1, 1] + [0] * 6
    assert tokens_per_expert(3, 2, 64, 0.0) == [1] * 6 + [0] * 58
    assert tokens_per_expert(4, 2, 8, 0.0) == [2, 2, 2, 1, 1, 0, 0, 0]  # 8 (1 - 0.75^4) = 5.47 -> 5 of 8 pairs


def test_expert_split_moves_the_smallest_experts_until_the_time_is_least() -> None:
    """xPU: 10 + tokens; Logic-PIM: 4 x tokens. Experts of 1, 2, 3, 10 tokens: all on the xPU 26; move 1 -> max(25,
    4) = 25; move 1, 2 -> max(23, 12) = 23; move 1, 2, 3 -> max(20, 24) = 24; all -> 64: two moved, 23. Every
    split along the order is a candidate, the whole MoE on the Logic-PIM too (a Logic-PIM of 30 + 0.5 x tokens:
    all four moved, 38)."""
    def xpu_s(counts: tuple[int, ...]) -> float:
        return 10.0 + sum(counts) if counts else 0.0

    def pim_s(counts: tuple[int, ...]) -> float:
        return 4.0 * sum(counts)

    def cheap_pim_s(counts: tuple[int, ...]) -> float:
        return 30.0 + 0.5 * sum(counts) if counts else 0.0

    assert expert_split([10, 3, 1, 2], xpu_s, pim_s) == (2, 23.0)
    assert expert_split([], xpu_s, pim_s) == (0, 0.0)
    assert expert_split([10, 3, 1, 2], lambda c: 100.0 + sum(c) if c else 0.0, cheap_pim_s) == (4, 38.0)


def test_attention_co_processing_runs_decode_and_prefill_attention_at_once(pe) -> None:
    """Decode attention on the Logic-PIM beside the prompt's attention on the xPU: the layer is pre + max(prompt
    attention, decode attention) + post, where blocked adds both."""
    plain = with_fields(pe, {"schedule": {"kind": "co-processing"}})
    blocked = with_fields(pe, {"schedule": {"kind": "blocked"}})
    batch = Batch((512,), (300, 700, 900))
    co, seq = system_model(plain, MIXTRAL), system_model(blocked, MIXTRAL)
    p = layer_phases(co, [300, 700, 900], (512,))
    b = layer_phases(seq, [300, 700, 900], (512,))
    prompt = co.devices["xpu"].cost([co.attention("prefill", 512)]).time_s
    decode = co.devices["lp"].cost([co.attention("decode", c) for c in (300, 700, 900)]).time_s
    assert min(prompt, decode) > 0
    assert b.layer_s - p.layer_s == pytest.approx(min(prompt, decode), rel=1e-9)
    # the same ops' energy; the static power is drawn over each schedule's own wall time
    dynamic = [m.iteration(batch).energy_j - m.static_w * m.iteration(batch).time_s for m in (co, seq)]
    assert dynamic[0] == pytest.approx(dynamic[1], rel=1e-9)


def test_expert_co_processing_takes_the_best_split_of_each_rank(pe) -> None:
    """+PE without +ET: each of the 4 ranks holds 2 whole experts of 16 tokens each (64 decodes x 2 / 8); the MoE
    time is the best of all-xPU, one expert each side, both on the Logic-PIM, each priced as its device's grouped
    op."""
    model = system_model(pe, MIXTRAL)
    plain = system_model(with_fields(pe, {"schedule": {"kind": "co-processing"}}), MIXTRAL)
    contexts = [1000] * 64
    p, q = layer_phases(model, contexts), layer_phases(plain, contexts)
    moe = next(op for op in plain.ops("decode", 64, 1) if op.name == "moe")
    def unit_s(device: str, experts: int) -> float:
        if not experts:
            return 0.0
        op = experts_op(model.shard_key, experts, 16 * experts, 14336)
        return model.devices[device].cost([op]).time_s

    best = min(unit_s("xpu", 2), max(unit_s("xpu", 1), unit_s("lp", 1)), unit_s("lp", 2))
    placed = plain.devices[plain.system.device_for("moe", "decode", moe.op_per_byte).name].cost([moe]).time_s
    assert p.layer_s - q.layer_s == pytest.approx(best - placed, rel=1e-9, abs=1e-12)


def test_all_experts_and_pairs_are_the_layers_own_moe_op(pe) -> None:
    """+PE's op of every expert and every routed pair is the layer's MoE op: its tokens, router and activations once,
    not top_k times (bound as tokens x top_k tokens routed to one expert each, it cost 1014.6 us against the
    layer's 741.2 us on the GPU, and Duplex+PE+ET's prefills ran slower than Duplex's)."""
    model = system_model(pe, MIXTRAL)
    layer = next(op for op in model.ops("decode", 2048, 1) if op.name == "moe")
    grouped = experts_op(model.shard_key, 8, 2048 * 2, int(model.shard.params["ffn_dim"]))
    xpu = model.devices["xpu"]
    assert grouped.flops == layer.flops and grouped.tensor_bytes == layer.tensor_bytes
    assert xpu.cost([grouped]).time_s == pytest.approx(xpu.cost([layer]).time_s, rel=1e-12)


def test_expert_tensor_parallelism_splits_every_expert_on_every_rank(pe) -> None:
    """+ET: a rank holds 1/4 of each of the 8 experts, so it can split in eighths (not halves) of its expert work
    between its units. At 64 decodes (16 tokens per expert, Op/B ~16: the Logic-PIM is 4x the xPU's bandwidth and
    not yet compute-bound) +PE's best halves split is both experts on the Logic-PIM, the xPU idle; +ET moves a
    slice or more back to the xPU and finishes sooner. (At 64 tokens per expert the GPU model prices 4 slices of
    an expert above one whole expert, so +ET is not faster at every batch.)"""
    et = system_model(load_system("duplex-pe-et"), MIXTRAL)
    only = system_model(pe, MIXTRAL)
    assert layer_phases(et, [1000] * 64).layer_s < layer_phases(only, [1000] * 64).layer_s


def test_schedule_fields_are_checked(pe) -> None:
    with pytest.raises(SpecError, match=r"schedule.expert_coprocessing.*true or false"):
        with_fields(pe, {"schedule.expert_coprocessing": "yes"})
    with pytest.raises(SpecError, match=r"schedule.zipf_skew"):
        with_fields(pe, {"schedule.zipf_skew": -1})
    with pytest.raises(SpecError, match=r"schedule.zipf_skew: unknown key"):  # blocked reads expert_tp alone
        with_fields(pe, {"schedule": {"kind": "blocked", "zipf_skew": 1.0}})
    gpu_only = {"placement": [{"op": list(OP_KINDS), "device": "xpu"}], "devices": {"xpu": pe.data["devices"]["xpu"]}}
    with pytest.raises(SpecError, match=r"schedule.expert_coprocessing.*logic-pim"):
        with_fields(pe, gpu_only)
    with pytest.raises(SpecError, match=r"schedule.expert_tp.*divisor"):  # 8 experts over 16 TP ranks
        system_model(with_fields(pe, {"schedule.expert_tp": False, "parallelism": {"tp": 16, "pp": 1},
                                      "devices.xpu.count": 16}), MIXTRAL)


def _ep(system: str, tp: int, ep: int, link: bool = True):
    """`system` at tp x ep, its EP groups over NVLink (one node), or with its tp link alone."""
    links = {"tp": "nvlink4-h100", **({"ep": "nvlink4-h100"} if link else {})}
    return with_fields(load_system(system), {"parallelism": {"tp": tp, "pp": 1, "ep": ep}, "links": links})


@pytest.mark.parametrize("system", ["duplex-gpu", "duplex-pe-et"])
def test_expert_parallel_groups_split_the_experts_and_the_requests(system) -> None:
    """EP 2 over groups of TP 2: a device holds half the experts (each cut TP ways) and every non-expert weight;
    the KV room counts all four devices; an iteration of 32 decodes is the slower of two groups of 16, each with
    its MoE layers' dispatch and combine all-to-alls of 16 tokens x top_k 2 x hidden 4096 x 2 B / TP 2."""
    from archsim.systems.collectives import all_to_all_s
    from archsim.systems.links import load_link
    from archsim.systems.system_messages import expert_exchange_s
    from archsim.systems.system_model import layer_phases

    one, two = system_model(_ep(system, 2, 1), MIXTRAL), system_model(_ep(system, 2, 2), MIXTRAL)
    # Mixtral's experts on one TP-2 device, 32 layers, and their router columns (bound to the group's experts)
    experts_per_device = 8 * (3 * 4096 * (14336 // 2) + 4096) * 2 * 32
    assert one.weight_bytes_per_device - two.weight_bytes_per_device == experts_per_device / 2
    capacity = two.weight_device.capacity_bytes
    assert two.kv_capacity_bytes == pytest.approx(4 * (capacity - two.weight_bytes_per_device), rel=1e-12)
    contexts = tuple(range(1000, 1032))
    cost = two.iteration(Batch((), contexts))
    exchange = expert_exchange_s(two, 16)
    assert exchange == pytest.approx(2 * all_to_all_s(16 * 2 * 4096 * 2 / 2, 2, load_link("nvlink4-h100")))
    groups = [layer_phases(two, contexts[g::2]) for g in (0, 1)]
    head = two.lm_head_cost(16)  # each group's LM head over its 16 sequences, on its TP ranks
    assert cost.time_s == pytest.approx(max(32 * (p.device_s(1) + exchange) for p in groups) + head.time_s,
                                        rel=1e-9)
    assert cost.energy_j == pytest.approx(sum(2 * 32 * p.total.energy_j for p in groups) + 2 * 2 * head.energy_j
                                          + two.static_w * cost.time_s, rel=1e-9)


def test_grok_is_expert_parallel_across_nodes_where_experts_can_be_cut() -> None:
    """Grok-1 on 2 x 8: +ET cuts every expert over a node's 8 ranks, so the two nodes are EP groups of 4 experts;
    Duplex+PE without +ET holds whole experts per rank (8 experts for 8 ranks), so its nodes are pipeline stages."""
    grok = library.load_workload_spec("grok-1-314b")
    for name, cut in (("duplex-pe-et", (8, 1, 2)), ("duplex-pe", (8, 2, 1))):
        par = system_model(load_system(name), grok).parallelism
        assert (par.tp, par.pp, par.ep) == cut, name


def test_expert_parallelism_needs_its_link_and_no_offloading() -> None:
    with pytest.raises(SpecError, match=r"links\.ep: missing: parallelism\.ep = 2 exchanges"):
        system_model(_ep("duplex-gpu", 2, 2, link=False), MIXTRAL)
    with pytest.raises(SpecError, match=r"parallelism\.ep: expert parallelism with attention offloading"):
        system_model(with_fields(load_system("lamina"), {"parallelism.ep": 2, "links.ep": "nvlink4-h100"}), MIXTRAL)


def test_the_neupims_schedules_are_unchanged_by_the_new_kind() -> None:
    """Blocked, overlapped and SBI ignore the co-processing fields: their defaults leave a NeuPIMs layer as it was."""
    neupims = load_system("neupims")
    assert (neupims.schedule.expert_coprocessing, neupims.schedule.expert_tp, neupims.schedule.zipf_skew) == \
        (False, True, 0.0)


class _OneSecond:
    """An iteration model whose every iteration takes 1 s, whatever the batch."""

    name = "one-second"
    kv_bytes_per_token = 1.0
    static_w = 0.0
    kv_capacity_bytes = 1e9

    def iteration(self, batch: Batch) -> IterationCost:
        return IterationCost(1.0, 1.0)


def test_closed_loop_keeps_n_requests_in_flight() -> None:
    """Two in flight, four requests of 3 output tokens: requests 0 and 1 emit at 1, 2, 3 s and finish at 3 s, which
    releases 2 and 3; they emit at 4, 5, 6 s. Makespan 6 s, 12 tokens: 2 tokens/s; TBT always 1 s."""
    requests = [Request(i, 100.0 * i, 5, 3) for i in range(4)]  # arrival times are ignored
    result = simulate_serving(_OneSecond(), requests, ServingConfig(max_batch=8), trace=True, closed_loop=2)
    assert [(r.arrival_s, r.first_token_s, r.finish_s) for r in result.requests] == [
        (0.0, 1.0, 3.0), (0.0, 1.0, 3.0), (3.0, 4.0, 6.0), (3.0, 4.0, 6.0)]
    assert result.throughput_tok_s == 2.0 and result.tbt_p99_s == 1.0
    assert max(it.n_prefill + it.n_decode for it in result.timeline) == 2
    with pytest.raises(SpecError, match="closed_loop"):
        simulate_serving(_OneSecond(), requests, closed_loop=0)


def test_gaussian_lengths_keep_their_means() -> None:
    """Normal around (L_in, L_out) with a standard deviation of 10 % of each, clipped to [1, 2 x mean]: symmetric,
    so 4,000 draws average within 3 standard errors (0.1 x 1024 / sqrt(4000) = 1.6 tokens) of 1024 and 256."""
    requests = gaussian_requests(4000, 1024, 256, 0.1, seed=1)
    assert all(r.arrival_s == 0.0 for r in requests)
    assert abs(sum(r.prompt_tokens for r in requests) / 4000 - 1024) < 3 * 1.62
    assert abs(sum(r.output_tokens for r in requests) / 4000 - 256) < 3 * 0.405
    assert max(r.prompt_tokens for r in requests) <= 2048
    with pytest.raises(SpecError, match="std_fraction"):
        gaussian_requests(4, 1024, 256, -0.1, seed=1)


def test_a_headline_outside_its_tolerance_quotes_the_records() -> None:
    """Synthetic records 5x and 4x the GPU: mean and maximum are outside, so their reasons are filled from the
    records (each model's range, the largest gain and where), none left as a field."""
    from archsim.systems import duplex_reproduce

    def record(system: str, model: str, tok_s: float) -> dict:
        return {"model": model, "system": system, "lin": 256, "lout": 256, "batch": 32, "throughput_tok_s": tok_s,
                "tbt_p50_s": 0.01, "tbt_p99_s": 0.02, "e2e_s": 1.0, "energy_j_per_token": 1.0,
                "rank_s_per_token": 0.5}

    records = [record("duplex-gpu", "mixtral-8x7b", 100.0), record("duplex-pe-et", "mixtral-8x7b", 500.0),
               record("duplex-gpu", "opt-66b", 100.0), record("duplex-pe-et", "opt-66b", 400.0)]
    summary = duplex_reproduce.headline(records)
    assert not summary["throughput_mean"]["within"] and not summary["throughput_max"]["within"]
    assert "per model mixtral-8x7b 5.00x-5.00x, opt-66b 4.00x-4.00x" in summary["throughput_mean"]["reason"]
    assert "the largest gain (5.00x: mixtral-8x7b, (256, 256), batch 32)" in summary["throughput_max"]["reason"]
    assert "per model mixtral-8x7b 0%-0%" in summary["energy_reduction"]["reason"]
