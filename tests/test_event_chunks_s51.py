"""The event model's chunks (`max_tasks`) cut the run, not the design (s51 audit).

F1: a read re-done per iteration of a loop that the chunks do not unroll (FLAT's K and Q, re-read per key tile of
the GlobalBuffer M loop, under a DRAM loop of row blocks) was pinned at the first chunk, as if the tile were
stationary: at 64K tokens, batch 1, one head, chunk 0 of 128 read 2.164e9 B of K and Q, the run then 13.4 % above
the analytical model, and the excess swung with max_tasks (+11.7 % at 1000, +0.10 % at 8000).
F2: chunks below the DRAM loops split FuseMax's head-dim loop E (QK's reduction, which no other Einsum iterates),
so QK ran in four quarters and LM, SLN, SLD and SLNV each in one: uneven steps, +46.1 % at 2048 tokens under the
default max_tasks, +8.4 % at 1000.
F4: `max_tasks` had no upper bound (10**9 allocated until MemoryError).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from archsim.errors import LimitError, SpecError
from archsim.mapping.spec import Loop
from archsim.model.analytical import evaluate
from archsim.model.event import MAX_TASKS, MAX_TASKS_ENV, simulate
from archsim.model.event_tasks import _outer_nest
from archsim.point import prepare, simulate_point

FLAT_64K = {"workload": "bert-base", "sets": {"seq_len": 65536, "batch": 1, "heads": 1}}
FUSEMAX_2K = {"workload": "bert-base", "sets": {"seq_len": 2048, "batch": 1, "heads": 1}}
WORD_BYTES = 2


def _runs(mapping: str, point: dict, tasks: tuple[int, ...]) -> tuple[float, dict[int, object]]:
    p = prepare(mapping, **point)
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    return analytical.latency_s, {t: simulate(p.binding, p.analysis, p.arch, p.mapping, max_tasks=t) for t in tasks}


# --- F1: re-streamed reads go where they are re-done ----------------------------------------------------------------

def test_a_restreamed_read_is_spread_over_the_chunks() -> None:
    """FLAT at 64K tokens, one head: the DRAM loop walks 256 row blocks of 256 queries; inside, the GlobalBuffer
    loop over 256 key tiles reads each key tile of K (256 keys x 64 x 2 B) and the block's Q (256 x 64 x 2 B)
    once per key tile (E, innermost, indexes both). So every row block reads all of K, 65536 x 64 x 2 = 2^23 B,
    and its Q 256 times, 2^23 B: 2^24 B into QK per row block, 2^25 B per chunk of 2 (128 chunks at the default
    4000 tasks). Chunk 0 read 2^24 + 2^31 B (2.164e9) when K counted as stationary under the row-block loop."""
    p = prepare("flat", **FLAT_64K)
    run = simulate(p.binding, p.analysis, p.arch, p.mapping, max_tasks=4000)
    per_chunk: dict[int, float] = defaultdict(float)
    for span in run.timeline:
        if span.resource == "DRAM" and span.name.startswith("read QK["):
            per_chunk[span.args["chunk"]] += span.args["bytes"]
    row_block_bytes = 65536 * 64 * WORD_BYTES + 256 * (256 * 64 * WORD_BYTES)
    assert len(per_chunk) == 128
    assert max(per_chunk.values()) == pytest.approx(2 * row_block_bytes, rel=1e-9)
    assert min(per_chunk.values()) == pytest.approx(2 * row_block_bytes, rel=1e-9)


@pytest.mark.parametrize("max_tasks", [1000, 4000])
def test_no_chunk_moves_more_than_its_share_of_the_traffic(max_tasks: int) -> None:
    """Every DRAM transfer of FLAT at 64K is re-done per row block (Q and K per key tile, V likewise, the scores'
    spill and AV's rows once per block), and the chunks are equal runs of row blocks: each chunk moves the run's
    DRAM traffic over the number of chunks, none more."""
    p = prepare("flat", **FLAT_64K)
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    run = simulate(p.binding, p.analysis, p.arch, p.mapping, max_tasks=max_tasks)
    per_chunk: dict[int, float] = defaultdict(float)
    for span in run.timeline:
        if span.resource == "DRAM":
            per_chunk[span.args["chunk"]] += span.args["bytes"]
    share = analytical.dram_traffic_bytes / len(per_chunk)
    assert max(per_chunk.values()) <= share * (1 + 1e-9)


# --- F2: chunks never split a loop some Einsum does not share --------------------------------------------------------

FUSEMAX_LOOPS = [Loop("B", 1, "DRAM"), Loop("H", 1, "DRAM"), Loop("P", 1, "DRAM"), Loop("M1", 8, "DRAM"),
                 Loop("P", 8, "GlobalBuffer"), Loop("E", 64, "GlobalBuffer"), Loop("F", 64, "GlobalBuffer")]
LEVELS = {"DRAM": 0, "GlobalBuffer": 1}


@pytest.mark.parametrize("wanted", [66, 266, 1066])
def test_chunks_stop_at_a_loop_not_every_einsum_shares(wanted: int) -> None:
    """FuseMax at 2048 tokens: 8 key tiles x 8 query tiles (DRAM M1, GlobalBuffer P) give 64 tile steps; E (QK's
    reduction over the head dim) and F (only SLNV, SPNV, RNV, AV) below them are not unrolled, whatever the chunks
    wanted: 64 chunks of one tile each (E was split into 4 at 266 wanted, 16 at 1066)."""
    every = frozenset({"B", "H", "P"})  # the ranks every Einsum iterates and indexes its output by (AV has no M1)
    nest = _outer_nest(FUSEMAX_LOOPS, LEVELS, wanted, even_ranks=every)
    assert [(lp.level, lp.rank) for lp in nest.loops] == [("DRAM", "B"), ("DRAM", "H"), ("DRAM", "P"),
                                                          ("DRAM", "M1"), ("GlobalBuffer", "P")]
    assert np.diff(nest.bounds).tolist() == [1] * 64
    assert [lp.rank for lp in nest.inner] == ["E", "F"]


def test_the_outermost_loops_are_the_tiles_whatever_they_index() -> None:
    """The DRAM loops are the design's tiles, so they are unrolled even over a rank an Einsum does not iterate
    (AV runs at FuseMax's last key tile: the real drain); a loop of factor 1 splits nothing and is passed over."""
    loops = [Loop("M1", 8, "DRAM"), Loop("E", 1, "GlobalBuffer"), Loop("P", 8, "GlobalBuffer"),
             Loop("E", 64, "GlobalBuffer")]
    nest = _outer_nest(loops, LEVELS, 1000, even_ranks=frozenset({"P"}))
    assert [(lp.rank, lp.factor) for lp in nest.loops] == [("M1", 8), ("E", 1), ("P", 8)]
    assert nest.chunks == 64


def test_fusemax_small_problem_is_stable_in_max_tasks() -> None:
    """FuseMax, BERT-base at 2048 tokens, one head: +18.6 / +9.8 / +8.4 / +46.1 % at max_tasks 200 / 500 / 1000 /
    4000 when E was split. Now the same 64 one-tile chunks from 1000 tasks up, so the same latency, and the gap is
    the one-tile fill and drain. Its bound, by hand from the analytical figures: before array1d's first tile the
    DRAM reads Q (resident for the run, 2048 x 64 x 2 B), the first key tile of K and V (2 x 256 x 64 x 2 B) and
    array2d runs QK + LM + SLN + SLD + SLNV of one tile; after its last tile DRAM writes one query tile of AV
    (256 x 64 x 2 B). Under that fill and drain, plus one step of array1d's work (1/64 of it), the array1d-bound
    analytical latency (9344 cycles at 940 MHz = 9.940 us) is the rest."""
    analytical_s, runs = _runs("fusemax", FUSEMAX_2K, (1000, 4000, 16000))
    p = prepare("fusemax", **FUSEMAX_2K)
    result = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    dram_bps = next(m.bandwidth_bytes_per_s for m in p.arch.memories if m.name == "DRAM")
    cycles = {e.name: e.compute_cycles for e in result.einsums}
    fill_s = (2048 * 64 + 2 * 256 * 64) * WORD_BYTES / dram_bps + sum(
        cycles[e] for e in ("QK", "LM", "SLN", "SLD", "SLNV")) / 64 / p.arch.clock_hz
    drain_s = 256 * 64 * WORD_BYTES / dram_bps + analytical_s / 64
    latencies = [run.result.latency_s for run in runs.values()]
    assert max(latencies) == pytest.approx(min(latencies), rel=1e-12)
    assert analytical_s < latencies[0] <= analytical_s + fill_s + drain_s


def test_a_tile_kept_for_many_chunks_reads_when_its_own_buffer_frees() -> None:
    """Found checking F2 on Llama-3-8B GQA at 512 tokens, batch 1 (8 KV groups x 2 key tiles x 4 query heads x 2
    query tiles, one tile a chunk from 2000 tasks): QK read a KV group's Q (4 heads x 512 x 128 x 2 B = 524,288 B,
    kept for the group's 16 chunks) in one transfer with the group's first K tile (256 x 128 x 2 B = 65,536 B),
    gated by the K tile's buffer, which frees only at the previous key tile's last chunk: the AV writes of the
    previous group then queued behind it, and the run took +14.8 % at 2000-16000 tasks against +5.1 % at 1000. Each
    tensor has its buffers: Q reads apart, once the group two back is done, and the gap stays near +5 % (it was
    +29 % with E split)."""
    p = prepare("fusemax-gqa", workload="llama3-8b", sets={"seq_len": 512, "batch": 1})
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    runs = {t: simulate(p.binding, p.analysis, p.arch, p.mapping, max_tasks=t) for t in (1000, 4000, 16000)}
    q_reads = [s for s in runs[4000].timeline if s.resource == "DRAM" and s.name.startswith("read QK[")
               and s.args["bytes"] == 4 * 512 * 128 * WORD_BYTES]
    assert len(q_reads) == 7  # one per KV group after the first (whose Q and K tile both find a free buffer)
    ratios = [run.result.latency_s / analytical.latency_s for run in runs.values()]
    assert max(ratios) - min(ratios) < 0.006
    assert all(1.0 < r < 1.06 for r in ratios)


# --- F3: at large sizes the residual is a part of one chunk, not a tile ---------------------------------------------

@pytest.mark.parametrize("max_tasks", [1000, 4000, 16000])
def test_large_problem_residual_is_within_one_chunk(max_tasks: int) -> None:
    """FuseMax, BERT-base at 64K tokens (batch 64, 12 heads, 256 key tiles: 196,608 DRAM iterations): 64, 256 and
    768 chunks at 1000, 4000 and 16000 tasks, each thousands of tiles; the event model's fill and drain is then
    about half of one chunk (+0.75, +0.19, +0.06 %), not one tile (1/196,608 of the run)."""
    p = prepare("fusemax", workload="bert-base", sets={"seq_len": 65536})
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    run = simulate(p.binding, p.analysis, p.arch, p.mapping, max_tasks=max_tasks)
    chunks = len({s.args["chunk"] for s in run.timeline})
    gap_s = run.result.latency_s - analytical.latency_s
    assert 0.25 * analytical.latency_s / chunks < gap_s < analytical.latency_s / chunks


# --- F4: max_tasks has a limit ---------------------------------------------------------------------------------------

def test_max_tasks_beyond_the_limit_is_refused_before_any_work() -> None:
    """10**9 tasks allocated until MemoryError; now a LimitError naming max_tasks and the variable."""
    with pytest.raises(LimitError) as refused:
        simulate_point("fusemax", workload="bert-base", sets={"seq_len": 4096}, max_tasks=10**9)
    assert refused.value.where == "simulate.max_tasks"
    assert MAX_TASKS_ENV in refused.value.message and str(MAX_TASKS) in refused.value.message
    assert MAX_TASKS_ENV.startswith("ARCHSIM_MAX_")


def test_the_limit_is_raised_and_lowered_by_its_variable(monkeypatch) -> None:
    point = {"workload": "bert-base", "sets": {"seq_len": 1024, "batch": 1, "heads": 1}}
    monkeypatch.setenv(MAX_TASKS_ENV, "50")
    simulate_point("fusemax", **point, max_tasks=50)
    with pytest.raises(LimitError, match=rf"51 .*beyond the limit of 50.*{MAX_TASKS_ENV}"):
        simulate_point("fusemax", **point, max_tasks=51)
    monkeypatch.setenv(MAX_TASKS_ENV, "0")
    with pytest.raises(SpecError, match=MAX_TASKS_ENV):
        simulate_point("fusemax", **point, max_tasks=50)
