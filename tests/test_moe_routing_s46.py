"""MoE routing under uniform random routing (Duplex evaluates under "uniform expert routing", pim.md §2.4): a step
of T tokens, each routed to top_k distinct of E experts, touches E (1 - (1 - k / E)^T) distinct experts on average,
not min(E, T k); +PE's per-expert tokens sum to exactly the T k routed pairs; an EP group holding fewer experts than
top_k binds its MoE op to them (one Mixtral expert per device under EP 8)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from archsim import library
from archsim.systems.coprocessing import tokens_per_expert
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import Step, layer_op, resident_tokens
from archsim.systems.system_spec import load_system

MOE_WORKLOADS = ("mixtral-8x7b", "glam-143b", "grok-1-314b")


def expected_distinct(tokens: int, top_k: int, experts: int) -> float:
    """Uniform random routing: an expert is missed by one token with probability 1 - k / E, by all T with that
    to the T-th power."""
    return experts * (1 - (1 - top_k / experts) ** tokens)


def _moe(name: str, tokens: int):
    workload = library.load_workload_spec(name)
    return workload, layer_op(workload, Step("decode", tokens, 64), workload.block, "moe", "moe")


@pytest.mark.parametrize(("name", "tokens"), [("mixtral-8x7b", 3), ("mixtral-8x7b", 4), ("mixtral-8x7b", 6),
                                              ("glam-143b", 8), ("glam-143b", 32), ("glam-143b", 64)])
def test_a_step_binds_the_experts_uniform_routing_is_expected_to_reach(name: str, tokens: int) -> None:
    """Mixtral, 4 tokens: 8 (1 - 0.75^4) = 5.47 experts expected, 5 read (min(8, 4 x 2) = 8 before); GLaM, 32
    tokens: 64 (1 - (31/32)^32) = 40.8, 41 read (64 before). The routed pairs (T x top_k) and so the experts' MACs
    stay; only the weights read and the router's columns follow the experts bound."""
    workload, moe = _moe(name, tokens)
    d, S, E, k = (int(workload.params[p]) for p in ("hidden", "ffn_dim", "experts", "top_k"))
    reached = math.floor(expected_distinct(tokens, k, E) + 0.5)
    bound = moe.binding.params
    assert bound["experts"] == reached
    assert bound["tokens"] * bound["top_k"] == tokens * k
    assert moe.bytes_by_role["weights"] == 2 * (d * reached + 3 * reached * d * S)
    # router d MACs per (token, expert bound), three d x S GEMMs per routed pair, the gates' product per pair
    assert moe.ops["mac"] == tokens * d * reached + tokens * k * (3 * d * S + d)


@pytest.mark.parametrize("name", MOE_WORKLOADS)
def test_resident_tokens_reach_every_expert_and_one_fewer_does_not(name: str) -> None:
    workload = library.load_workload_spec(name)
    E = int(workload.params["experts"])
    n = resident_tokens(workload)
    full = layer_op(workload, Step("decode", n, 1), workload.block, "moe", "moe")
    short = layer_op(workload, Step("decode", n - 1, 1), workload.block, "moe", "moe")
    assert full.binding.params["experts"] == E > short.binding.params["experts"]


@pytest.mark.parametrize(("tokens", "top_k", "experts"), [(5, 2, 8), (33, 2, 64), (4, 2, 8), (9, 2, 8),
                                                         (64, 2, 8), (1, 2, 8), (3, 2, 64), (100, 8, 256)])
def test_uniform_tokens_per_expert_sum_to_the_routed_pairs(tokens: int, top_k: int, experts: int) -> None:
    """Mixtral B = 5: 10 pairs (16 counted before, ceil(10 / 8) = 2 each); GLaM B = 33: 66 (128 before). Spread as
    evenly as whole tokens allow over the experts expected to be reached."""
    counts = tokens_per_expert(tokens, top_k, experts, 0.0)
    assert sum(counts) == tokens * top_k
    used = [c for c in counts if c]
    assert len(used) == math.floor(expected_distinct(tokens, top_k, experts) + 0.5)
    assert max(used) - min(used) <= 1 and max(used) <= tokens


@pytest.mark.parametrize("tokens", range(1, 41))
def test_the_plus_pe_door_reads_the_experts_the_plain_door_binds(tokens: int) -> None:
    _, moe = _moe("mixtral-8x7b", tokens)
    counts = tokens_per_expert(tokens, 2, 8, 0.0)
    assert sum(1 for c in counts if c) == moe.binding.params["experts"]


@pytest.mark.parametrize(("tokens", "skew"), [(10, 2.0), (12, 1.0), (3, 0.5), (40, 1.2)])
def test_skewed_tokens_per_expert_sum_to_the_routed_pairs(tokens: int, skew: float) -> None:
    counts = tokens_per_expert(tokens, 2, 8, skew)
    assert sum(counts) == 2 * tokens and max(counts) <= tokens
    assert counts == sorted(counts, reverse=True)  # expert 0 the most popular


def _ep8(tmp_path: Path) -> Path:
    """duplex-gpu with Mixtral at tp 1, ep 8: one expert per device, as the auditor's sed made it."""
    text = Path(load_system("duplex-gpu").source).read_text()
    assert "mixtral-8x7b: {tp: 4, pp: 1}" in text
    copy = tmp_path / "duplex-gpu-ep8.yaml"
    copy.write_text(text.replace("mixtral-8x7b: {tp: 4, pp: 1}", "mixtral-8x7b: {tp: 1, pp: 1, ep: 8}"))
    return copy


def test_one_expert_per_device_under_ep_8_binds_top_1_over_the_same_pairs(tmp_path: Path) -> None:
    """Mixtral at EP 8: each group's one expert takes its own requests' B_g x 2 pairs (balanced routing), bound as
    2 B_g tokens routed to its one expert (top_k 2 over one expert was refused, blaming the workload)."""
    mixtral = library.load_workload_spec("mixtral-8x7b")
    model = system_model(load_system(str(_ep8(tmp_path))), mixtral)
    assert (model.parallelism.tp, model.parallelism.ep) == (1, 8)
    moe = next(op for op in model.ops("decode", 4, 1024) if op.name == "moe")
    assert (moe.binding.params["experts"], moe.binding.params["top_k"], moe.binding.params["tokens"]) == (1, 1, 8)
    d, S = 4096, 14336
    assert moe.bytes_by_role["weights"] == 2 * (d + 3 * d * S)
    assert model.iteration(Batch((), (1024,) * 32)).time_s > 0


def test_simulate_runs_mixtral_at_ep_8(tmp_path: Path, invoke) -> None:
    code, output = invoke("simulate", "-s", str(_ep8(tmp_path)), "-w", "mixtral-8x7b", "--rate", "5",
                          "--requests", "20")
    assert code == 0, output
    assert "20 requests served" in output
