"""Guards for mutants a second mutation audit found surviving the suite, each pinned against a hand derivation or
the model's own building blocks:

- the event model charges leakage over its own latency and counts utilization per lane (`event._collect`);
- a bank-PIM tile closes its row no earlier than tRAS, and a K^T.q tile returns one partial logit per head slice
  it touches, a partial slice included (`pim.tile_cycles`, `pim.logits_cycles`);
- an NPU GEMM deals its folds to the arrays, the busiest taking ceil(folds / arrays) (`npu.gemm_time`);
- Duplex routing: an expert gets a token at most once, and a grouped MoE op runs ceil(pairs / top_k) tokens
  (`coprocessing.tokens_per_expert`, `coprocessing.experts_op`);
- MInference's key tiles per query block: the a-shape band, the vertical columns rounded up, block-sparse's
  one masked (diagonal) block, the index sizes clamped to the query length, and the host time when it is the
  longer (`gpu_sparse`);
- a context-parallel decode step's energy counts every rank (`ContextParallelModel.decode_cost`).
"""

from __future__ import annotations

import pytest

from archsim import library
from archsim.arch.pim import PIMSpec
from archsim.gpu.load import load_gpu
from archsim.model.analytical import evaluate
from archsim.model.event import simulate
from archsim.model.gpu_sparse import SparseParams, SparsePattern, call_time_s, head_launches, key_tiles
from archsim.point import prepare
from archsim.systems import npu, pim
from archsim.systems.coprocessing import experts_op, tokens_per_expert
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.neupims import system
from archsim.systems.system_checks import context_parallel_gpu
from archsim.systems.system_spec import load_system
from archsim.systems.system_types import board_power_w

PIM = PIMSpec()
REFRESH = 3900 / 3640  # tREFI / (tREFI - tRFC)


# --- the event model's time-dependent figures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fusemax_1k():
    p = prepare("fusemax", workload="bert-base", sets={"seq_len": 1024})
    return p, simulate(p.binding, p.analysis, p.arch, p.mapping), evaluate(p.binding, p.analysis, p.arch, p.mapping)


def test_event_leakage_is_the_analytical_leakage_over_the_simulated_latency(fusemax_1k) -> None:
    _, run, analytical = fusemax_1k
    ratio = run.result.latency_s / analytical.latency_s
    assert ratio != 1.0  # the event run adds fill and drain: leakage must follow
    for key, pj in analytical.energy_by.items():
        want = pj * ratio if key[1] == "leak" else pj
        assert run.result.energy_by[key] == pytest.approx(want, rel=1e-12), key


def test_event_utilization_is_busy_lane_cycles_over_every_lane(fusemax_1k) -> None:
    p, run, _ = fusemax_1k
    groups = [evaluate(p.binding, p.analysis, p.arch, p.mapping, only_group=i) for i in range(len(p.mapping.groups))]
    lanes_used = {(e.group, e.name): e.lanes_used for g in groups for e in g.einsums}
    for unit in p.arch.units:
        busy = sum((s.end_s - s.start_s) * lanes_used[(s.args["group"], s.args["einsum"])]
                   for s in run.timeline if s.resource == unit.name)
        want = busy / (unit.lanes * run.result.latency_s)
        assert 0.0 < want <= 1.0
        assert run.result.utilization[unit.name] == pytest.approx(want, rel=1e-9), unit.name


# --- PIM command timing ------------------------------------------------------------------------------------------


def test_a_short_pim_tile_waits_for_tras_before_its_precharge() -> None:
    # one bank, one COMP, one 2-byte result: READRES ends at 0 + tRCD 14 + tCCD_L 2 + CL 14 + 1 burst = 31 < tRAS 34
    assert pim.tile_cycles(PIM, 1, 1, 2) == 34 + 14
    # K^T.q of one token over a 16-element embedding: a GWRITE and that tile, stretched by refresh
    assert pim.logits_cycles(PIM, 1, 1, 16) == pytest.approx((100 + 48) * REFRESH, rel=1e-12)


def test_a_logits_tile_returns_a_partial_logit_per_head_slice_it_touches() -> None:
    # 6 heads of 96: the first 512-element row slice touches 6 heads (5 1/3), the remaining 64 elements one head.
    # 32 keys fill one tile per slice. First: 8 G_ACTs tRRD_S 4 apart (two tFAW windows: 30 + 3 x 4 = 42), tRCD 14,
    # 32 COMPs x 2, CL 14, 32 banks x 6 x 2 B = 384 B = 12 bursts, tRP 14 -> 160; second: 4 COMPs, 64 B = 2 bursts
    # -> 42 + 14 + 8 + 14 + 2 + 14 = 94
    assert pim.tile_cycles(PIM, 32, 32, 32 * 6 * 2) == 160
    assert pim.tile_cycles(PIM, 32, 4, 32 * 1 * 2) == 94
    assert pim.logits_cycles(PIM, 32, 6, 96) == pytest.approx((100 + 160 + 100 + 94) * REFRESH, rel=1e-12)


# --- NPU GEMM folds ----------------------------------------------------------------------------------------------


def test_npu_gemm_folds_beyond_the_arrays_take_a_second_round() -> None:
    # 1 x 9 folds of 128 x 128 on 8 arrays: one array runs 2 folds of 512 rows, plus fill and drain 128 + 128 - 2
    time = npu.gemm_time(npu.NPUSpec(), 512, 128, 9 * 128, 1e12)
    assert time.array_s == pytest.approx((2 * 512 + 254) / 1e9, rel=1e-12)


# --- Duplex routing ----------------------------------------------------------------------------------------------


def test_a_skewed_expert_gets_each_token_at_most_once() -> None:
    # 10 tokens, top 2 of 8, Zipf 2: expert 0's share 1 / sum(1 / i^2, i = 1..8) of 20 picks is 13.1 > 10 tokens;
    # held at 10, the other 10 pairs go to the rest, none above 10
    counts = tokens_per_expert(10, 2, 8, 2.0)
    assert counts[0] == 10
    assert sum(counts) == 20 and max(counts[1:]) < 10


def test_a_grouped_moe_op_runs_pairs_over_top_k_tokens_rounded_up() -> None:
    model = system_model(load_system("duplex-pe"), library.load_workload_spec("mixtral-8x7b"))
    three = experts_op(model.shard_key, 2, 3, 14336)  # 3 (token, expert) pairs, top 2: ceil(3 / 2) = 2 tokens
    four = experts_op(model.shard_key, 2, 4, 14336)  # 4 pairs: 2 tokens
    two = experts_op(model.shard_key, 2, 2, 14336)  # 2 pairs: 1 token
    assert three.binding.rank_sizes == four.binding.rank_sizes != two.binding.rank_sizes


# --- MInference key tiles ----------------------------------------------------------------------------------------


def _tiles(pattern: SparsePattern, n: int) -> tuple[list[int], list[int]]:
    unmasked, masked = key_tiles(pattern, n)
    return unmasked.tolist(), masked.tolist()


def test_a_shape_band_covers_the_window_and_the_diagonal_block() -> None:
    # 8 query blocks; 1 sink block + a band of ceil(64 / 64) + 1 = 2 blocks: at most 3, the diagonal and one masked
    assert _tiles(SparsePattern("a_shape", sinks=64, window=64), 512) == ([0, 0, 1, 1, 1, 1, 1, 1],
                                                                           [1, 2, 2, 2, 2, 2, 2, 2])


def test_vertical_columns_left_of_the_band_round_up_to_a_tile() -> None:
    # band = min(i + 1, ceil(64 / 64) + 1); 10 verticals in the 64 or 128 keys left of it: one tile
    assert _tiles(SparsePattern("vertical_slash", k_v=10, k_s=64), 256) == ([0, 0, 1, 1], [1, 2, 2, 2])


def test_block_sparse_masks_only_the_diagonal_block() -> None:
    assert _tiles(SparsePattern("block_sparse", k_b=3), 256) == ([0, 1, 2, 2], [1, 1, 1, 1])


def test_vertical_slash_indices_clamp_to_the_query_length() -> None:
    eager, _ = head_launches(SparsePattern("vertical_slash", k_v=1000, k_s=64), 256, 128, load_gpu("h200-sxm"),
                             "bf16", 2)
    sort = next(launch for launch in eager if launch.name == "sort the indices")
    assert sort.dram_bytes == 2 * (256 + 64) * 4


def test_a_head_call_takes_the_host_time_when_it_is_longer() -> None:
    params = SparseParams(kernel={}, eager={"host_op_s": 1e-5})
    assert call_time_s([], [], None, params) == (pytest.approx(6 * 1e-5, rel=1e-12), 0.0)  # VIEW_OPS = 6


# --- context parallelism -----------------------------------------------------------------------------------------


def test_a_context_parallel_decode_charges_every_ranks_energy() -> None:
    model = system("context-parallel-h100", "llama3-8b", changes={"parallelism.cp": 2})
    own = model.rank.iteration(Batch((), [50001] * 16))
    exchange_s, merge_s = model.merge_costs_s(16)
    gpus = 2 * model.parallelism.tp
    board_w = board_power_w(context_parallel_gpu(model.system))
    want = 2 * own.energy_j + gpus * board_w * 32 * (exchange_s + merge_s)
    assert model.iteration(Batch((), [100001] * 16)).energy_j == pytest.approx(want, rel=1e-12)
