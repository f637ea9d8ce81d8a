"""A tensor spilled from a level (`spill:`, its tiles over the level's capacity) has the overflow's share of its
tiles live one level out, and every access the level served to that share goes there instead: the level's own
traffic for the tensor through its inner boundary (reads, writes, partial sums read back), once per reuse, as the
model counts it at that level; the level no longer fills that share from above nor writes it back (audit
s47, /tmp/s47/aud1/spill1.py). Before, the share was charged once per Einsum touching it (`storage_accesses`) on
top of the level's unchanged traffic: an input the level served 16 times reached DRAM once, and the level's own
accesses to it were counted too.

Toy GEMM Z[m,n] = sum(k: A[m,k] * B[k,n]), M = 64, N = 16, K = 16, 2-byte words, on a 4 x 4 array, loops
`DRAM M:16 / L2 K:16, N:4 / spatial M:4, N:4`; one access per 16-bit word at every level, DRAM 100 / 200 pJ per
read / write, L2 1 / 2 pJ."""

from __future__ import annotations

import pytest

from archsim.arch.load import architecture_from_dict
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.cascade.load import cascade_from_dict
from archsim.mapping.load import mapping_from_dict
from archsim.model.analytical import evaluate
from archsim.model.batch import evaluate_points
from archsim.model.result import Result
from archsim.point import run_point

WORD = 2
ENERGY = {"node_nm": 45, "source": "test"}
GEMM = {"name": "gemm", "description": "d", "source": "s", "params": {"word_bytes": WORD},
        "ranks": {"M": 64, "N": 16, "K": 16}, "inputs": {"A": ["M", "K"], "B": ["K", "N"]},
        "einsums": "Z[m,n] = sum(k: A[m,k] * B[k,n])", "outputs": ["Z"]}
LOOPS = [{"level": "DRAM", "ranks": {"M": 16}}, {"level": "L2", "ranks": {"K": 16, "N": 4}},
         {"spatial": "arr", "ranks": {"M": 4, "N": 4}}]


def _memory(capacity: int | None, read_pj: float) -> dict:
    return {"capacity_bytes": capacity, "bandwidth_bytes_per_s": None, "access_bits": 16, "area_um2": 0.0,
            "energy": {**ENERGY, "actions_pj": {"read": read_pj, "write": 2 * read_pj}}}


def _arch(l2_bytes: int):
    return architecture_from_dict({
        "name": "toy", "description": "d", "source": "s", "clock_hz": 1.0e9, "word_bytes": WORD, "node_nm": 45,
        "memories": {"DRAM": _memory(None, 100), "L2": _memory(l2_bytes, 1)},
        "units": {"arr": {"shape": [4, 4], "op_cycles": {"mac": 1}, "area_um2": 1.0,
                          "energy": {**ENERGY, "actions_pj": {"mac": 1}}}}})


def _points(kept: str, l2_bytes: tuple[int, ...]):
    binding = bind(cascade_from_dict(GEMM), {})
    analysis = analyze(binding)
    mapping = mapping_from_dict({"name": "spill", "cascade": "gemm", "architecture": "toy", "groups": [
        {"name": "g", "binding": {"arr": ["Z"]}, "loops": LOOPS, "keep": {"L2": [kept]}, "spill": [kept],
         "overlap": "max"}]})
    return [(binding, analysis, _arch(b), mapping) for b in l2_bytes]


def _run(kept: str, l2_bytes: int) -> Result:
    return evaluate(*_points(kept, (l2_bytes,))[0])


def test_a_spilled_input_reaches_dram_once_per_reuse_and_leaves_the_level() -> None:
    """B (K x N = 256 elements, 512 B) kept at L2: L2's tile is all of B, filled once (512 B from DRAM); the PEs
    re-read it whole under each of the 16 DRAM M tiles: 16 x 512 = 8,192 B from L2. With 256 B of L2 half of B
    spills: that half is read from DRAM by each of the 16 M tiles (16 x 256 = 4,096 B) and never filled into L2;
    the other half is filled once (256 B) and served 16 times (4,096 B). DRAM: 256 + 4,096 = 4,352 B (it was
    768 B: 512 + 256 x 1 read); L2: 4,096 B (it was 8,192 B). Energy in words (2 B): L2 reads 2,048 x 1 pJ, L2
    writes (fills) 128 x 2 pJ; DRAM reads of B 2,176 where they were 256, 1,920 more x 100 pJ."""
    whole, half = _run("B", 1 << 30), _run("B", 256)
    assert whole.feasible and half.feasible, half.reason
    assert (whole.traffic_bytes["DRAM"]["B"], whole.traffic_bytes["L2"]["B"]) == (512, 8192)
    assert (half.traffic_bytes["DRAM"]["B"], half.traffic_bytes["L2"]["B"]) == (256 + 4096, 4096)
    assert half.energy_by[("L2", "read")] == 2048 * 1
    assert half.energy_by[("L2", "write")] == 128 * 2
    assert half.energy_by[("DRAM", "read")] - whole.energy_by[("DRAM", "read")] == (2176 - 256) * 100
    assert half.energy_by[("DRAM", "write")] == whole.energy_by[("DRAM", "write")]


def test_a_spilled_output_takes_its_partial_sums_to_dram_and_back() -> None:
    """Z kept at L2: L2's tile is M 4 x N 16 = 64 elements (128 B), written to DRAM once per M tile (1,024
    elements, 2,048 B). Under each M tile the PEs' 4 x 4 tile is visited K 16 x N 4 = 64 times, written each time
    and read back each time but the first of each of its 4 tiles: 64 - 4 = 60 read-backs; over 16 M tiles
    16 x 64 x 16 = 16,384 elements written and 16 x 60 x 16 = 15,360 read back, 63,488 B at L2. With 64 B of L2
    half spills: DRAM takes half of L2's 63,488 B (31,744 B) and half its write-back (1,024 B): 32,768 B (it was
    3,072 B: 2,048 + 1,024 elements x 1 write); L2 keeps 31,744 B."""
    whole, half = _run("Z", 1 << 30), _run("Z", 64)
    assert half.feasible, half.reason
    assert (whole.traffic_bytes["DRAM"]["Z"], whole.traffic_bytes["L2"]["Z"]) == (2048, (16384 + 15360) * WORD)
    assert (half.traffic_bytes["DRAM"]["Z"], half.traffic_bytes["L2"]["Z"]) == (31744 + 1024, 31744)
    # L2's accesses to Z, in words: 16,384 writes and 15,360 + 1,024 reads (read-backs and write-backs), halved
    assert half.energy_by[("L2", "write")] == 16384 / 2 * 2
    assert half.energy_by[("L2", "read")] == (15360 + 1024) / 2 * 1


def test_spilling_points_in_a_column_are_priced_as_each_point_alone() -> None:
    """The batch pricing spills per point: a column of L2 sizes (no spill, half, a quarter) gives each point's
    own Result."""
    points = _points("B", (1 << 30, 256, 384))
    batch = evaluate_points(points)
    for i, point in enumerate(points):
        single = evaluate(*point)
        assert batch.result(i).traffic_bytes == single.traffic_bytes
        assert batch.result(i).energy_by == pytest.approx(single.energy_by)
    # a quarter spills (384 B of 512): 3/4 x 512 + 1/4 x 8,192 from DRAM, 3/4 x 8,192 from L2
    assert evaluate(*points[2]).traffic_bytes["DRAM"]["B"] == 384 + 2048


def test_flat_spilled_score_block_leaves_the_global_buffer() -> None:
    """FLAT at 16K tokens (one head, head_dim 128): 1/128 of its 1024-row score block overflows the 32 MiB
    buffer (`tests/test_causal_writes_s32.py`). Each score is accessed 7 times (3 writes, 4 reads), all through
    the buffer when it fits: 16,384^2 x 7 x 2 B. Spilled, DRAM takes 1/128 of them and the buffer the other
    127/128 (it had kept all of them as well)."""
    r = run_point("flat", sets={"batch": 1, "heads": 1, "head_dim": 128, "word_bytes": WORD, "seq_len": 16384})
    accesses = 16384 * 16384 * 7 * WORD
    assert r.traffic_bytes["DRAM"]["QK"] == accesses // 128
    assert r.traffic_bytes["GlobalBuffer"]["QK"] == accesses // 128 * 127
