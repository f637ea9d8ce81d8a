"""The event model reads a spilled intermediate only once its producer has written it (s52 audit).

A read task of a tensor that an Einsum of the group writes to a memory level waited only for its input buffer
(or the group's start), never for that write: on FLAT with its scores off chip (`flat-offchip`, BERT-base 1K tokens,
batch 1, one head) GM, SN, SD and A finished reading their shares of QK and SN from DRAM by 1.2-2.4 us while the
first write of QK started at 5.49 us, and the one-chunk run (`max_tasks=1`) took 22.69 us, under the 33.5 us chain
its own task times make. Same on the global buffer when that level has a bandwidth (FLAT's in-place score block).

Expected orders come from the cascade's data (FLAT's 3-pass softmax: GM and SN read QK, SD and A read SN, AV reads
A), never from the model's output; durations are the run's own task times.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from archsim.library import load_architecture_spec
from archsim.model.analytical import evaluate
from archsim.model.event import simulate
from archsim.model.event_tasks import _matched_writes, _read_after
from archsim.point import prepare, simulate_point

SMALL = {"workload": "bert-base", "sets": {"seq_len": 1024, "batch": 1, "heads": 1}}
# reader -> the Einsum whose output it reads, per level where FLAT's mappings move it (attention-3pass)
OFFCHIP_READS = {"GM": "QK", "SN": "QK", "SD": "SN", "A": "SN"}  # flat-offchip: QK and SN to DRAM and back
IN_PLACE_READS = {**OFFCHIP_READS, "AV": "A"}  # flat: the score block written over in place in the global buffer
GLOBAL_BUFFER_BPS = 2e12


def _flat_with_buffer_bandwidth():
    return load_architecture_spec("flat").with_changes(
        **{"memories.GlobalBuffer.bandwidth_bytes_per_s": GLOBAL_BUFFER_BPS})


CASES = [case for max_tasks in (1, 4000) for case in (
    pytest.param("flat-offchip", None, "DRAM", OFFCHIP_READS, max_tasks, id=f"offchip-DRAM-{max_tasks}"),
    pytest.param("flat", "bandwidth", "GlobalBuffer", IN_PLACE_READS, max_tasks,
                 id=f"in-place-GlobalBuffer-{max_tasks}"))]


@pytest.mark.parametrize(("mapping", "arch", "level", "reads", "max_tasks"), CASES)
def test_a_spilled_intermediate_is_read_after_its_producer_writes_it(mapping, arch, level, reads,
                                                                      max_tasks) -> None:
    """Every read of chunk c of a written intermediate at `level` starts once its producer's write of chunk c
    there has ended: the shares match in order, and a read the reuse rule puts before the write of its tile moves
    to that write's chunk (flat-offchip at 4000 tasks: QK's tile written at the last of 4 row-tile chunks, read at
    the first, had no write in the chunk of its read)."""
    arch = _flat_with_buffer_bandwidth() if arch == "bandwidth" else arch
    _, run = simulate_point(mapping, arch=arch, max_tasks=max_tasks, **SMALL)
    spans = [s for s in run.timeline if s.resource == level]
    write_end_s = {(s.args["einsum"], s.args["chunk"]): s.end_s for s in spans if s.name.startswith("write ")}
    checked = defaultdict(int)
    for s in spans:
        reader = s.args.get("einsum")
        if not s.name.startswith("read ") or reader not in reads:
            continue
        written = write_end_s[(reads[reader], s.args["chunk"])]
        assert s.start_s >= written - 1e-15, (s.name, s.start_s, "before the write of", reads[reader], written)
        checked[reader] += 1
    assert set(checked) == set(reads), checked  # every reader's reads were seen


def test_one_chunk_runs_at_least_the_causal_chain() -> None:
    """One chunk (`max_tasks=1`): the Q and K read, QK, its write to DRAM, GM's read of it, GM, SN (its read beside
    GM), SN's write, SD's read of it, SD, A, AV and AV's write follow one another through data, so the run takes at
    least the sum of their times (33.5 us; it took 22.69 us, every read of a score before its write)."""
    _, run = simulate_point("flat-offchip", max_tasks=1, **SMALL)
    chain = ["read QK[0]", "QK[0]", "write QK[0]", "read GM[0]", "GM[0]", "SN[0]", "write SN[0]", "read SD[0]",
             "SD[0]", "A[0]", "AV[0]", "write AV[0]"]
    seconds = defaultdict(float)
    for s in run.timeline:
        seconds[s.name] += s.end_s - s.start_s
    assert all(seconds[name] > 0 for name in chain), seconds
    chain_s = sum(seconds[name] for name in chain)
    assert run.result.latency_s >= chain_s * (1 - 1e-12)


def test_a_read_waits_for_the_write_of_its_share_and_moves_after_it() -> None:
    """`_matched_writes` pairs the k-th share read with the k-th share written; `_read_after` moves a read the
    reuse rule put before that write (flat-offchip at 1K, one head: QK's tile staged in the global buffer over
    4 row tiles, read at the first, written at the last) to the write's chunk, so that no compute waits on a write
    of a later chunk (whose producer waits, through its output buffers, on that compute)."""
    every = np.full(3, 1 / 3)
    assert _matched_writes(every, every).tolist() == [0, 1, 2]
    first = np.array([0.5, 0, 0, 0, 0.5, 0, 0, 0])
    last = np.array([0, 0, 0, 0.5, 0, 0, 0, 0.5])
    matched = _matched_writes(first, last)
    assert matched.tolist() == [3, -1, -1, -1, 7, -1, -1, -1]
    moved, waits = _read_after(first, {"QK": matched})
    assert moved.tolist() == last.tolist()
    assert waits["QK"].tolist() == [-1, -1, -1, 3, -1, -1, -1, 7]
    assert _read_after(first, {})[0] is first  # inputs: the shares stay
    # twice the chunks written as read: a read waits for the write of its whole share
    assert _matched_writes(np.array([0.5, 0.0, 0.5, 0.0]), np.full(4, 0.25)).tolist() == [1, -1, 3, -1]


def test_waiting_for_the_writes_costs_a_stable_part_of_one_chunk() -> None:
    """flat-offchip at 4K tokens (BERT-base), DRAM-bound: the event model had run at the analytical latency to the
    last digit, its score reads fetched before the scores existed; reading after the writes adds the fill and
    drain of one chunk, the same share of a chunk at every `max_tasks` (0.32 of one: +0.506, +0.126, +0.042 % at
    64, 256, 768 chunks), so it shrinks as max_tasks grows and never swings."""
    p = prepare("flat-offchip", workload="bert-base", sets={"seq_len": 4096})
    analytical = evaluate(p.binding, p.analysis, p.arch, p.mapping).latency_s
    chunk_shares = []
    for max_tasks in (1000, 4000, 16000):
        run = simulate(p.binding, p.analysis, p.arch, p.mapping, max_tasks=max_tasks)
        chunks = len({s.args["chunk"] for s in run.timeline})
        gap = run.result.latency_s / analytical - 1
        assert gap > 0
        chunk_shares.append(gap * chunks)
    assert max(chunk_shares) == pytest.approx(min(chunk_shares), rel=0.05), chunk_shares
