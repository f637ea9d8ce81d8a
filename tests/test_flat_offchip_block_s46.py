"""FLAT's off-chip row block (`mappings/flat-offchip.yaml`): at most 4 array tiles of query rows, as FLAT's own
dataflow table picks on both of its platforms, and fewer whole tiles where the global buffer cannot hold 4.

Expected numbers come from the sources and by hand, never from the model's output:
- `flat_validation.csv` (FLAT's own dataflow choices, which the artifact reads its P1 from; the copy the package
  ships in `archsim/systems/reference/fusemax/`, read as `fusemax.read_reference` reads the artifact's CSVs there,
  identical to ../shared/reference/fusemax/'s, so that a clean checkout runs it) lists, with the scores off chip,
  P1 = 1,024 rows on the 256 x 256 cloud platform (32 MiB) and P1 = 128 rows on the 32 x 32 edge platform
  (512 KiB, 50 GiB/s) at every length: 4 array tiles on both, not a buffer-sized block (the buffers differ 64x,
  the blocks 8x, as the arrays' widths do).
- DRAM words per (batch, head) with the scores off chip (docs/fusemax-artifact-model.md section 4):
  4 P M (QK and the numerator out and back) + P E + P F (Q read, AV written once) + (M E + M F) P / R (K and V
  streamed once per block of R rows); bytes = batch x heads x 2 x words.
- Global-buffer footprint on a w x w array, T tiles a block (R = T w rows), 2-byte words: per block row its Q and
  AV rows (E + F words), row max GM and sum SD (2 words) and its row of the key tile's scores QK (w words); the
  K and V tiles (w keys x E, w keys x F) and one w x w score tile handed to the 1-D array. BERT (E = F = 64) on the
  32 x 32 array: 10,240 + 10,368 T bytes (20,608 for one tile, 30,976 for two, 51,712 for four).
"""

from __future__ import annotations

import csv
import importlib.resources

import pytest

from archsim.library import load_architecture_spec
from archsim.point import run_point

# the packaged copy: present on any checkout, as the reproduction's other artifact CSVs (`fusemax.read_reference`)
REFERENCE = importlib.resources.files("archsim.systems") / "reference" / "fusemax" / "flat_validation.csv"
BATCH, HEADS, HEAD_DIM, WORD_BYTES = 64, 12, 64, 2  # bert-base as the reproduction runs it (flat_validation.csv)
EDGE_WIDTH, EDGE_BANDWIDTH_BPS = 32, 50 * 2**30  # FLAT's edge platform (reference/fusemax.md s1.3)


def _edge(capacity_bytes: int):
    return load_architecture_spec("flat").with_changes(**{
        "units.array2d.shape": (EDGE_WIDTH, EDGE_WIDTH), "units.array1d.shape": (EDGE_WIDTH,),
        "memories.DRAM.bandwidth_bytes_per_s": EDGE_BANDWIDTH_BPS,
        "memories.GlobalBuffer.capacity_bytes": capacity_bytes})


def _offchip_dram_bytes(n: int, rows: int) -> float:
    e = f = HEAD_DIM
    words = 4 * n * n + n * e + n * f + (n * e + n * f) * n / rows
    return BATCH * HEADS * WORD_BYTES * words


def _footprint_bytes(tiles: int, width: int = EDGE_WIDTH) -> int:
    e = f = HEAD_DIM
    per_tile = width * (e + f + 2 + width) * WORD_BYTES
    fixed = (width * (e + f) + width * width) * WORD_BYTES
    return fixed + tiles * per_tile


def _table_p1(platform: str, seq_len: str) -> int:
    with REFERENCE.open(encoding="utf-8") as rows:
        (row,) = [r for r in csv.DictReader(rows) if (r["platform"], r["models"], r["seq_len"]) ==
                  (platform, "BERT", seq_len)]
    assert row["QK_loc"] == "offchip"
    return int(row["P1"])


@pytest.mark.parametrize(("platform", "seq_len", "n"), [("cloud", "256K", 262144), ("edge", "16K", 16384)])
def test_the_block_is_flat_validation_p1_on_both_platforms(platform: str, seq_len: str, n: int) -> None:
    """The table's P1: 1,024 rows (cloud), 128 rows (edge), 4 array tiles each. A buffer-sized block (`P: search`)
    would read K and V once per ~1,000 rows on the edge (31.7 s at 16K against 38.5 s with the table's 128 rows)."""
    rows = _table_p1(platform, seq_len)
    arch = "flat" if platform == "cloud" else _edge(512 * 2**10)
    r = run_point("flat-offchip", arch=arch, workload="bert-base", sets={"seq_len": n})
    assert r.feasible, r.reason
    assert sum(r.traffic_bytes["DRAM"].values()) == pytest.approx(_offchip_dram_bytes(n, rows), rel=1e-9)
    if platform == "edge":  # memory bound: 1.65e12 B at 50 GiB/s, the 1-D array's 27.4 s below it
        assert r.latency_s == pytest.approx(_offchip_dram_bytes(n, rows) / EDGE_BANDWIDTH_BPS, rel=1e-6)


@pytest.mark.parametrize(("capacity_bytes", "tiles"), [
    (_footprint_bytes(4), 4), (_footprint_bytes(4) - 1, 2), (32 * 2**10, 2), (_footprint_bytes(1), 1)])
def test_a_buffer_short_of_four_tiles_gets_the_whole_tiles_it_holds(capacity_bytes: int, tiles: int) -> None:
    """Below 51,712 B the 4-tile block no longer fits the 32 x 32 array's buffer: FLAT's block shrinks to the whole
    tiles that fit (3 does not divide the 32 query tiles of 1K tokens, so 2), as its on-chip rule's min(4 x width,
    capacity / N) does. At 32 KiB: 64 rows, 9.87e9 B, 0.184 s (it was infeasible, 51,712 B over 32,768 B)."""
    n = 1024
    r = run_point("flat-offchip", arch=_edge(capacity_bytes), workload="bert-base", sets={"seq_len": n})
    assert r.feasible, r.reason
    assert r.footprint_bytes["GlobalBuffer"] == _footprint_bytes(tiles)
    expected = _offchip_dram_bytes(n, tiles * EDGE_WIDTH)
    assert sum(r.traffic_bytes["DRAM"].values()) == pytest.approx(expected, rel=1e-9)
    assert r.latency_s == pytest.approx(expected / EDGE_BANDWIDTH_BPS, rel=1e-6)


def test_a_buffer_short_of_one_tile_is_infeasible() -> None:
    """20 KiB (the low end of the FLAT paper's 20-200 KB range) is 128 B short of one tile's 20,608 B."""
    r = run_point("flat-offchip", arch=_edge(20 * 2**10), workload="bert-base", sets={"seq_len": 1024})
    assert not r.feasible
    assert "GlobalBuffer" in r.reason and f"{_footprint_bytes(1)} B" in r.reason
