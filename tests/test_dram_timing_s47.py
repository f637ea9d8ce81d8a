"""HBM2 timing rules of the PIM channel that the DRAM auditor's differential found missing or wrong (session 47):
tRRD between activations, tRTP from a read to its bank's precharge, and stream / queue sizes that hung the
channel. Every expectation is derived by hand below from the artifact's `HBM2_8Gb_x128` ini
(../shared/reference/neupims-artifact.md §5: tCK 1 ns; CL 14, tRCD 14, tRP 14, tRAS 34, tRRD_S/L 4/6, tFAW 30,
tCCD_S/L 1/2, tRTP_L/S 6/4; a 64 B burst on the 128-bit DDR bus is 2 cycles).
"""

from __future__ import annotations

import math

import pytest

from archsim.arch.pim import PIMSpec
from archsim.model.dram import ChannelSpec, PIMTile, ReadStream, simulate_channel
from archsim.systems.pim import tile_cycles

P = PIMSpec()
CL, TRCD, TRP, TRAS, TFAW = 14, 14, 14, 34, 30
TRRD_S, TRRD_L, TRTP_L = 4, 6, 6  # neupims-artifact.md §5, the ini's tRRD_S/L and tRTP_L
TCCD_L, BURST = 2, 2


def lone_tile_cycles(columns: int) -> int:
    """An all-bank tile (32 banks, 64 B of results) by hand: 8 G_ACTs, each one bank group (banks 4k..4k+3), so
    consecutive G_ACTs are of different groups and tRRD_S apart: 0, 4, 8, 12; the fifth waits tFAW after the first:
    30, 34, 38, 42. COMPs from 42 + tRCD = 56, tCCD_L apart; READRES tCCD_L after the last; its data out
    CL + 2 cycles later; the precharge then (tRAS after 42 = 76 is earlier for 8 or more columns), free tRP later."""
    last_gact = TFAW + 3 * TRRD_S  # 42
    last_comp = last_gact + TRCD + (columns - 1) * TCCD_L
    readres = last_comp + TCCD_L
    precharge = max(readres + CL + BURST, last_gact + TRAS)
    return precharge + TRP


def test_lone_tile_spaces_its_group_activations_by_trrd_s() -> None:
    # 32 columns: last COMP 56 + 62 = 118, READRES 120, data out 136, + tRP = 150 (was 141: G_ACTs 1 cycle apart).
    # 8 columns (K^T.q, one head of 128 words): last COMP 70, READRES 72, data out 88, + 14 = 102 (was 93).
    assert lone_tile_cycles(32) == 150 and lone_tile_cycles(8) == 102
    for columns in (32, 8):
        assert float(tile_cycles(P, 32, columns, 64)) == lone_tile_cycles(columns)
        run = simulate_channel([PIMTile(32, columns, 64)])
        assert run.cycles == lone_tile_cycles(columns)
        assert run.stalls == {}  # its own tRRD is service, not a stall


@pytest.mark.parametrize(("second_bank", "gap_cycles"), [
    (1, TRRD_L),   # bank 1: bank group 0 of rank 0, as bank 0
    (4, TRRD_S),   # bank 4: bank group 1
    (16, TRRD_S),  # bank 16: rank 1 (tRRD is counted over the channel, like tFAW)
])
def test_reads_to_two_banks_activate_trrd_apart(second_bank: int, gap_cycles: int) -> None:
    # ACT bank 0 at 0, ACT of the second bank tRRD later; RD bank 0 at tRCD = 14, its data out at 14 + CL + 2 = 30;
    # RD of the second bank at gap + 14 (tCCD and the data bus, free from 32 - CL = 18, do not bind), data out
    # gap + 30.
    run = simulate_channel(reads=ReadStream(((0, 0), (second_bank, 0))))
    assert run.read_finish_cycles == (TRCD + CL + BURST, gap_cycles + TRCD + CL + BURST)


def test_precharge_waits_trtp_from_the_last_read_not_its_burst() -> None:
    # 16 reads to row 0 of bank 0, then 16 to row 1: ACT 0, RDs at 14, 16, .., 44 (the data bus: 2 cycles each);
    # PRE at max(tRAS 34, last RD 44 + tRTP_L 6) = 50 (not at the end of its burst, 44 + CL + 2 = 60); ACT at
    # 50 + tRP = 64, RDs at 78, .., 108; the last read's data out at 108 + 16 = 124 (was 134).
    last_rd_row0 = TRCD + 15 * BURST
    precharge = max(TRAS, last_rd_row0 + TRTP_L)
    last_rd_row1 = precharge + TRP + TRCD + 15 * BURST
    run = simulate_channel(reads=ReadStream(((0, 0),) * 16 + ((0, 1),) * 16))
    assert precharge == 50 and last_rd_row1 + CL + BURST == 124
    assert run.cycles == last_rd_row1 + CL + BURST


@pytest.mark.parametrize(("make", "field"), [
    (lambda: ReadStream(((0, 0),) * 4, outstanding=0), "outstanding"),
    (lambda: ReadStream(((0, 0),) * 4, outstanding=-1), "outstanding"),
    (lambda: ReadStream(((0, 0),) * 4, interval_cycles=math.nan), "interval_cycles"),
    (lambda: ReadStream(((0, 0),) * 4, interval_cycles=math.inf), "interval_cycles"),
    (lambda: ReadStream(((0, 0),) * 4, interval_cycles=-1.0), "interval_cycles"),
    (lambda: ChannelSpec(queue_entries=0), "queue_entries"),
    (lambda: ChannelSpec(read_bytes=0), "read_bytes"),
])
def test_sizes_that_hung_the_channel_are_refused_naming_the_field(make, field: str) -> None:
    # outstanding 0 left no read ever issued and queue_entries 0 no read ever queued: simulate_channel never
    # returned; a NaN interval reached int() deep in the controller. Refused where the stream or spec is built.
    with pytest.raises(ValueError, match=field):
        make()
