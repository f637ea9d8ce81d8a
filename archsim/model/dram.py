"""One HBM2 PIM channel at command level (NeuPIMs / Newton): banks with row-buffer state, the HBM2 timing, refresh,
and two request streams, PIM GEMV tiles and the NPU's 64 B reads, on one command bus. Specs in, `ChannelRun` out.

Sources: ../shared/reference/pim.md §1.2 (organisation and HBM2 timing of `HBM2_8Gb_x128_dualpim.ini`, via
`archsim.arch.pim.PIMSpec`; its tRRD and tRTP from ../shared/reference/neupims-artifact.md §5), §1.3 (Newton
commands; the controller interleaves memory and PIM commands on the C/A bus and prioritises PIM commands), §1.1
(dual row buffers: a MEM and a PIM row buffer per bank).

Channel
- 32 banks; bank b is in bank group (b // 4) % 4 and rank b // 16 (2 ranks x 4 BG x 4 banks, §1.2). Rank switching
  costs nothing (no tRTRS in pim.md).
- One command per cycle (tCK 1 ns) on one command bus: HBM2's separate row and column buses are not modelled, so
  ACT/PRE compete with RD/COMP for slots.
- A bank has a MEM and a PIM row buffer (`PIMSpec.row_buffers = 2`, NeuPIMs) with independent state and timing, or
  one shared buffer (`row_buffers = 1`, Newton): there a PIM tile's open rows block the NPU's reads to those banks
  until the tile precharges, and the NPU's open rows must be precharged before a tile's G_ACT.
- Timing per row buffer: ACT -> column command tRCD; ACT -> PRE tRAS; PRE -> ACT tRP; RD -> PRE of its bank tRTP
  (the ini's tRTP_L 6, counted from the RD command as JEDEC and DRAMsim3 do, not from the end of its burst). The
  PIM precharge waits instead for READRES's results to be out (`pim.tile_cycles` does the same): READRES reads the
  result latches, not the row, and ../shared/reference/neupims-artifact.md §4.2 gives the artifact's
  `pim_to_precharge` no value (and DUAL timing removes it), so no tRTP of a READRES is taken from it. Column commands
  of one kind (RD after RD; COMP/READRES after COMP/READRES) are spaced tCCD_L in one bank group, tCCD_S across
  groups, the group read without the rank (`_bank_group`: banks 0 and 16 are spaced tCCD_L, a conservative
  simplification; activations' tRRD does tell the ranks apart); a COMP touches every group, so PIM columns are always
  tCCD_L apart. A MEM and a PIM column command do not constrain each other (independent data paths, §1.1) except
  through the data bus: a RD or READRES drives it from tCL after the command for ceil(bytes / 32) cycles (128-bit DDR,
  §1.2), bursts never overlap.
- tFAW: at most 4 activations in any window of tFAW cycles; an ACT and a G_ACT (4 banks of one bank group, §1.3,
  counted as one activation as in `pim.tile_cycles`) both count, in either row buffer. tRRD: an activation waits
  tRRD_L after the last one of its bank group (same rank), tRRD_S after any other. Both are counted over the whole
  channel, both ranks together (DRAMsim3 keeps them per rank).
- Refresh: all-bank, due every tREFI cycles. When due, the controller starts nothing new (no NPU command, no new
  tile; a tile already activated finishes, like NeuPIMs' PIM_HEADER dodging refresh), precharges every open row
  buffer (PREA), issues REF tRP later, and no bank activates for tRFC after it.

Streams (requests are data with arrival cycles; the controller is the one SimPy process and sleeps with
`env.timeout` until a command can issue, a read arrives or a refresh falls due)
- PIM: GEMV tiles back to back, the command sequence of `pim.tile_cycles`: G_ACT x ceil(banks / 4) (banks 4k..4k+3
  per G_ACT), COMP x columns from tRCD after the last G_ACT, READRES tCCD_L after the last COMP, then the PIM
  precharge; the tile is done tRP after it. GWRITEs are not modelled.
- NPU: 64 B reads (`dram_req_size`, §1.2) to (bank, row) addresses, open loop (read i arrives at i x interval) or
  closed loop (`outstanding` reads in flight, the next is issued when one's data returns). The controller's read
  queue holds `queue_entries` reads; open-page policy (a row stays open until a read to another row needs the bank).
- Scheduler, every cycle, of the commands whose timing is met: refresh, then the PIM tile's next command (PIM
  priority, §1.3), then FR-FCFS over the read queue (row hits first, then oldest first).

Stalls (`ChannelRun.stalls`, cycles): every cycle in which a stream has work queued and issues no command is blamed
on the last-met constraint of the command it would issue first, or on losing the command bus. Waiting on
constraints its own stream set (tRCD after its ACT, tFAW and tRRD among its own activations, tCCD, its data
bursts) is service, not a stall. Named: "row-buffer conflict" (a PRE to close another row, the tRAS / tRTP it waits for,
the tRP after it, and any wait on a buffer the other stream holds or timed), "tFAW", "tRRD" and "data bus" (the other
stream's activations / bursts), "refresh", "PIM priority" (an NPU command ready but a PIM command took the slot),
"command bus" (ready but another command took the slot). A command held back by a pending refresh is blamed on the
refresh (whatever its own timing). Ties between constraints go to the first listed.

What it sees that `pim.tile_cycles` and `system_model.sbi_stage_s` cannot: per-bank tRAS of a tile's last G_ACT (a
tile of <= 2 columns ends up to 3 cycles later than `tile_cycles`, which counts tRAS from the first G_ACT); the
NPU's reads competing with COMPs for command slots, with G_ACTs for tFAW windows and with READRES for the data bus;
and with one row buffer the NPU's reads serialised behind whole tiles.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import simpy

from archsim.arch.pim import PIMSpec
from archsim.arch.spec import ceil_div
from archsim.model.trace import Span

NPU, PIM, CONTROLLER = "NPU", "PIM", "controller"
CONFLICT, FAW, RRD, DATA_BUS, REFRESH = "row-buffer conflict", "tFAW", "tRRD", "data bus", "refresh"
PRIORITY, COMMAND_BUS = "PIM priority", "command bus"
PIM_ROW = -1  # the row a PIM tile holds open
LONG_AGO = -(10**9)


@dataclass(frozen=True)
class ChannelSpec:
    """One channel: the PIM HBM spec (timing, `row_buffers`), the NPU request size and the controller's read queue."""

    pim: PIMSpec = field(default_factory=PIMSpec)
    read_bytes: int = 64  # §1.2 dram_req_size
    queue_entries: int = 32  # assumption: reads the scheduler sees at once

    def __post_init__(self) -> None:
        _check_count("ChannelSpec.read_bytes", self.read_bytes, "bytes a read returns")
        _check_count("ChannelSpec.queue_entries", self.queue_entries, "reads the scheduler sees (with none, no read "
                     "is ever queued)")


@dataclass(frozen=True)
class PIMTile:
    """One all-bank row pass (`pim.tile_cycles`): `banks` banks from bank 0, `columns` COMPs, one READRES."""

    banks: int = 32
    columns: int = 32
    result_bytes: int = 64


@dataclass(frozen=True)
class ReadStream:
    """The NPU's 64 B reads, in issue order. Open loop when `interval_cycles` > 0, else closed loop."""

    addresses: tuple[tuple[int, int], ...]  # (bank, row) per read
    interval_cycles: float = 0.0
    outstanding: int = 32

    def __post_init__(self) -> None:
        interval = self.interval_cycles
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval < math.inf:
            raise ValueError(f"ReadStream.interval_cycles: expected a finite number of cycles >= 0 (0: closed loop), "
                             f"got {interval!r}")
        _check_count("ReadStream.outstanding", self.outstanding, "reads in flight (with none, no read is ever "
                     "issued)")


@dataclass(frozen=True)
class ChannelRun:
    """What `simulate_channel` returns for one channel (module docstring): when it finished, when each PIM tile and
    each NPU read finished, the NPU's read rate, the stall cycles by cause and stream, the commands issued by kind, and
    the timeline."""

    cycles: int  # last read's data returned or last tile's banks precharged (+tRP)
    pim_finish_cycles: tuple[int, ...]  # per tile
    read_finish_cycles: tuple[int, ...]  # per read, data returned
    read_bytes_per_cycle: float  # NPU bytes / cycle of its last data
    stalls: dict[str, int]  # cause -> cycles, summed over the streams
    stream_stalls: dict[str, dict[str, int]]  # stream -> cause -> cycles
    commands: dict[str, int]  # command -> count
    timeline: tuple[Span, ...]

    @property
    def pim_finish_cycle(self) -> int:
        return max(self.pim_finish_cycles, default=0)

    @property
    def npu_finish_cycle(self) -> int:
        return max(self.read_finish_cycles, default=0)


def streaming_addresses(n_reads: int, pim: PIMSpec, first_row: int = 0,
                        read_bytes: int = ChannelSpec.read_bytes) -> tuple[tuple[int, int], ...]:
    """Sequential reads (64 B by default) under the artifact's address map `rorabgbachco` (§1.2) on one channel:
    the 16 reads of a 1 KB row, then the next bank, bank group, rank, then the next row."""
    per_row = pim.row_bytes // read_bytes
    return tuple(((i // per_row) % pim.banks_per_channel, first_row + i // (per_row * pim.banks_per_channel))
                 for i in range(n_reads))


def simulate_channel(tiles: Sequence[PIMTile] = (), reads: ReadStream | None = None,
                     spec: ChannelSpec | None = None) -> ChannelRun:
    """Run the channel until every tile and read is done."""
    spec = spec or ChannelSpec()
    banks = spec.pim.banks_per_channel
    max_columns = spec.pim.row_bytes // (spec.pim.macs_per_bank * spec.pim.element_bytes)
    for tile in tiles:
        if not (1 <= tile.banks <= banks and 1 <= tile.columns <= max_columns and tile.result_bytes > 0):
            raise ValueError(f"PIMTile {tile}: want 1..{banks} banks, 1..{max_columns} columns, result_bytes > 0")
    for bank, row in reads.addresses if reads else ():
        if not (0 <= bank < banks and row >= 0):
            raise ValueError(f"read address (bank {bank}, row {row}): want bank in 0..{banks - 1}, row >= 0")
    env = simpy.Environment()
    channel = _Channel(spec, tiles, reads)
    env.process(channel.run(env))
    env.run()
    return channel.result()


class _Wait(NamedTuple):
    cycle: int
    cause: str  # the stall's name when it is one
    stream: str  # who set the constraint
    always: bool = False  # a stall even when set by the waiting stream (conflict, refresh)


@dataclass(eq=False)
class _Buffer:
    row: int | None = None
    act_cycle: int = LONG_AGO
    act_stream: str = ""
    read_cycle: int = LONG_AGO  # the last RD from the open row
    pre_cycle: int = LONG_AGO
    pre_wait: tuple[str, str, bool] = (CONFLICT, "", False)  # cause, stream, always of the tRP after it


@dataclass(frozen=True)
class _Read:
    index: int
    bank: int
    row: int
    arrival_cycle: int


@dataclass(eq=False, slots=True)
class _Cand:
    command: str
    stream: str
    waits: tuple[_Wait, ...] = ()
    blocked: str | None = None  # cannot issue until another command changes state
    issue: Callable[[int], None] | None = None
    conflict: bool = False
    rank: int = 0  # scheduler order among ready commands, lower first
    ready_cycle: float = field(init=False)  # when every wait is met

    def __post_init__(self) -> None:
        self.ready_cycle = math.inf if self.blocked else max((w.cycle for w in self.waits), default=LONG_AGO)


class _Channel:
    """The controller's state while it runs (internal)."""

    def __init__(self, spec: ChannelSpec, tiles: Sequence[PIMTile], reads: ReadStream | None):
        self.spec, self.p = spec, spec.pim
        self.banks: list[tuple[_Buffer, _Buffer]] = []
        for _ in range(self.p.banks_per_channel):
            mem = _Buffer()
            self.banks.append((mem, mem if self.p.row_buffers == 1 else _Buffer()))
        self.buffers = list({id(b): b for pair in self.banks for b in pair}.values())
        self.acts: deque[tuple[int, str]] = deque(maxlen=self.p.activations_per_tFAW)
        self.last_act: tuple[int, str] = (LONG_AGO, "")  # cycle, stream
        self.group_acts: dict[tuple[int, int], tuple[int, str]] = {}  # (rank, bank group) -> its last activation
        self.data_free_cycle, self.data_stream = 0, ""
        self.last_rd: tuple[int, int] = (LONG_AGO, -1)  # cycle, bank group
        self.refresh_due_cycle, self.refresh_pending, self.refresh_end_cycle = self.p.tREFI_cycles, False, 0
        self.tiles, self.tile = list(tiles), 0
        self.gacts = self.comps = 0
        self.readres_issued = False
        self.last_gact = self.last_pim_column = self.tile_start = self.tile_data_end = LONG_AGO
        self.tile_finish: list[int] = []
        addresses = reads.addresses if reads else ()
        self.closed = reads is not None and reads.interval_cycles <= 0
        first = min(reads.outstanding, len(addresses)) if self.closed else len(addresses)
        self.future = deque(_Read(i, *addresses[i], 0 if self.closed else int(i * reads.interval_cycles))
                            for i in range(first))
        self.unadmitted = deque(enumerate(addresses[first:], start=first))
        self.queue: list[_Read] = []
        self.read_finish = [0] * len(addresses)
        self.stalls: dict[str, Counter[str]] = defaultdict(Counter)
        self.commands: Counter[str] = Counter()
        self.spans: list[list] = []  # [resource, name, start_cycle, end_cycle, args]

    def run(self, env: simpy.Environment):
        while self.queue or self.future or self.unadmitted or self.tile < len(self.tiles):
            now = int(env.now)
            while self.future and len(self.queue) < self.spec.queue_entries and self.future[0].arrival_cycle <= now:
                self.queue.append(self.future.popleft())
            if not self.refresh_pending and now >= self.refresh_due_cycle:
                self.refresh_pending = True
            cands = self._candidates()
            ready = sorted((c for group in cands.values() for c in group if c.ready_cycle <= now),
                           key=lambda c: c.rank)
            winner = ready[0] if ready else None
            if winner:
                step = 1
            else:
                wake = min((c.ready_cycle for group in cands.values() for c in group), default=math.inf)
                if self.future and len(self.queue) < self.spec.queue_entries:
                    wake = min(wake, self.future[0].arrival_cycle)
                if not self.refresh_pending:
                    wake = min(wake, self.refresh_due_cycle)
                step = int(wake) - now
            for stream in (PIM, NPU):
                if cands[stream]:
                    self._blame(stream, cands[stream], winner, now, step)
            if winner:
                winner.issue(now)
                self.commands[winner.command] += 1
                self.spans.append(["command bus", winner.command, now, now + 1, {"stream": winner.stream}])
            yield env.timeout(step)

    def _candidates(self) -> dict[str, list[_Cand]]:
        in_flight = self.gacts > 0
        cands: dict[str, list[_Cand]] = {CONTROLLER: [], PIM: [], NPU: []}
        if self.refresh_pending and not in_flight:
            cands[CONTROLLER].append(self._refresh_cand())
        if self.tile < len(self.tiles):
            cands[PIM].append(_Cand("wait", PIM, blocked=REFRESH) if self.refresh_pending and not in_flight
                              else self._tile_cand())
        if self.refresh_pending and self.queue:
            cands[NPU].append(_Cand("wait", NPU, blocked=REFRESH))
            return cands
        seen = set()  # reads to one (bank, row) want the same command: the oldest stands for them
        for age, read in enumerate(self.queue):
            if (read.bank, read.row) in seen:
                continue
            seen.add((read.bank, read.row))
            cand = self._read_cand(read)
            cand.rank = 2 + age + (0 if cand.command == "RD" else len(self.queue))
            cands[NPU].append(cand)
        return cands

    def _blame(self, stream: str, cands: list[_Cand], winner: _Cand | None, now: int, cycles: int) -> None:
        if winner and winner.stream == stream:
            cause = CONFLICT if winner.conflict else None
        elif any(c.ready_cycle <= now for c in cands):
            assert winner is not None
            cause = {CONTROLLER: REFRESH, PIM: PRIORITY}.get(winner.stream, COMMAND_BUS)
        else:
            first = min(cands, key=lambda c: c.ready_cycle)
            if first.blocked:
                cause = first.blocked
            else:
                binding = max(first.waits, key=lambda w: w.cycle)
                cause = binding.cause if binding.always or binding.stream != stream else None
        if cause is None:
            return
        self.stalls[stream][cause] += cycles
        last = self.spans[-1] if self.spans and self.spans[-1][0] == f"{stream} stall" else None
        if last and last[1] == cause and last[3] == now:
            last[3] = now + cycles
        else:
            self.spans.append([f"{stream} stall", cause, now, now + cycles, {}])

    # -- waits shared by the commands

    def _trp(self, buffers: Sequence[_Buffer]) -> _Wait:
        last = max(buffers, key=lambda b: b.pre_cycle)
        return _Wait(last.pre_cycle + self.p.tRP_cycles, *last.pre_wait)

    def _activation_waits(self, buffers: Sequence[_Buffer], bank: int) -> tuple[_Wait, ...]:
        waits = [self._trp(buffers), _Wait(self.refresh_end_cycle, REFRESH, CONTROLLER, True)]
        if len(self.acts) == self.acts.maxlen:
            waits.append(_Wait(self.acts[0][0] + self.p.tFAW_cycles, FAW, self.acts[0][1]))
        last_cycle, last_stream = self.last_act
        waits.append(_Wait(last_cycle + self.p.tRRD_S_cycles, RRD, last_stream))
        group_cycle, group_stream = self.group_acts.get(_rank_group(bank), (LONG_AGO, ""))
        waits.append(_Wait(group_cycle + self.p.tRRD_L_cycles, RRD, group_stream))
        return tuple(waits)

    def _close_waits(self, buffers: Sequence[_Buffer], stream: str, conflict: bool) -> tuple[_Wait, ...]:
        opened = max(buffers, key=lambda b: b.act_cycle)
        read = max(buffers, key=lambda b: b.read_cycle)
        return (_Wait(opened.act_cycle + self.p.tRAS_cycles, CONFLICT, stream, conflict),
                _Wait(read.read_cycle + self.p.tRTP_cycles, CONFLICT, stream, conflict))

    def _data_bus_wait(self) -> _Wait:
        return _Wait(self.data_free_cycle - self.p.tCL_cycles, DATA_BUS, self.data_stream)

    def _burst(self, t: int, nbytes: int, stream: str, name: str) -> int:
        end = t + self.p.tCL_cycles + math.ceil(nbytes / self.p.bus_bytes_per_cycle)
        self.data_free_cycle, self.data_stream = end, stream
        self.spans.append(["data bus", name, t + self.p.tCL_cycles, end, {"stream": stream}])
        return end

    def _activate(self, buffers: Sequence[_Buffer], bank: int, row: int, stream: str, t: int) -> None:
        for b in buffers:
            b.row, b.act_cycle, b.act_stream, b.read_cycle = row, t, stream, LONG_AGO
        self.acts.append((t, stream))
        self.last_act = self.group_acts[_rank_group(bank)] = (t, stream)

    def _precharge(self, buffers: Sequence[_Buffer], t: int, pre_wait: tuple[str, str, bool]) -> None:
        for b in buffers:
            b.row, b.pre_cycle, b.pre_wait = None, t, pre_wait

    # -- NPU reads

    def _read_cand(self, read: _Read) -> _Cand:
        p, buf = self.p, self.banks[read.bank][0]
        if buf.row == PIM_ROW:
            return _Cand("RD", NPU, blocked=CONFLICT)
        if buf.row == read.row:
            last_cycle, last_group = self.last_rd
            ccd = p.tCCD_L_cycles if last_group == _bank_group(read.bank) else p.tCCD_S_cycles
            waits = (_Wait(buf.act_cycle + p.tRCD_cycles, CONFLICT, buf.act_stream),
                     _Wait(last_cycle + ccd, "tCCD", NPU), self._data_bus_wait())
            return _Cand("RD", NPU, waits, issue=lambda t: self._read(read, buf, t))
        if buf.row is None:
            return _Cand("ACT", NPU, self._activation_waits([buf], read.bank),
                         issue=lambda t: self._activate([buf], read.bank, read.row, NPU, t))
        return _Cand("PRE", NPU, self._close_waits([buf], NPU, True), conflict=True,
                     issue=lambda t: self._precharge([buf], t, (CONFLICT, NPU, True)))

    def _read(self, read: _Read, buf: _Buffer, t: int) -> None:
        end = self._burst(t, self.spec.read_bytes, NPU, f"RD b{read.bank} r{read.row}")
        buf.read_cycle = t
        self.last_rd = (t, _bank_group(read.bank))
        self.queue.remove(read)
        self.read_finish[read.index] = end
        if self.closed and self.unadmitted:
            index, (bank, row) = self.unadmitted.popleft()
            self.future.append(_Read(index, bank, row, end))

    # -- PIM tiles

    def _tile_cand(self) -> _Cand:
        p, tile = self.p, self.tiles[self.tile]
        per = p.banks_per_activation
        if self.gacts < ceil_div(tile.banks, per):
            first = self.gacts * per
            group = [self.banks[b][1] for b in range(first, min(first + per, tile.banks))]
            held = [b for b in group if b.row is not None]
            if held:
                return _Cand("PRE", PIM, self._close_waits(held, PIM, True), conflict=True, rank=1,
                             issue=lambda t: self._precharge(held, t, (CONFLICT, PIM, True)))
            return _Cand("G_ACT", PIM, self._activation_waits(group, first), rank=1,
                         issue=lambda t: self._group_activate(group, first, t))
        column_wait = _Wait(self.last_pim_column + p.tCCD_L_cycles, "tCCD", PIM)
        if self.comps < tile.columns:
            return _Cand("COMP", PIM, (_Wait(self.last_gact + p.tRCD_cycles, CONFLICT, PIM), column_wait), rank=1,
                         issue=self._comp)
        if not self.readres_issued:
            return _Cand("READRES", PIM, (column_wait, self._data_bus_wait()), rank=1, issue=self._readres)
        used = [self.banks[b][1] for b in range(tile.banks)]
        waits = (*self._close_waits(used, PIM, False), _Wait(self.tile_data_end, DATA_BUS, PIM))
        return _Cand("PIM_PRECHARGE", PIM, waits, rank=1, issue=lambda t: self._end_tile(used, t))

    def _group_activate(self, group: list[_Buffer], first_bank: int, t: int) -> None:
        self._activate(group, first_bank, PIM_ROW, PIM, t)
        if self.gacts == 0:
            self.tile_start = t
        self.gacts, self.last_gact = self.gacts + 1, t

    def _comp(self, t: int) -> None:
        self.comps, self.last_pim_column = self.comps + 1, t

    def _readres(self, t: int) -> None:
        self.readres_issued, self.last_pim_column = True, t
        self.tile_data_end = self._burst(t, self.tiles[self.tile].result_bytes, PIM, "READRES")

    def _end_tile(self, used: list[_Buffer], t: int) -> None:
        self._precharge(used, t, (CONFLICT, PIM, False))
        finish = t + self.p.tRP_cycles
        tile = self.tiles[self.tile]
        self.spans.append(["PIM", f"tile {self.tile}", self.tile_start, finish,
                           {"banks": tile.banks, "columns": tile.columns}])
        self.tile_finish.append(finish)
        self.tile, self.gacts, self.comps, self.readres_issued = self.tile + 1, 0, 0, False

    # -- refresh

    def _refresh_cand(self) -> _Cand:
        open_buffers = [b for b in self.buffers if b.row is not None]
        if open_buffers:
            return _Cand("PREA", CONTROLLER, self._close_waits(open_buffers, CONTROLLER, True),
                         issue=lambda t: self._precharge(open_buffers, t, (REFRESH, CONTROLLER, True)))
        return _Cand("REF", CONTROLLER, (self._trp(self.buffers),), issue=self._refresh)

    def _refresh(self, t: int) -> None:
        self.refresh_end_cycle = t + self.p.tRFC_cycles
        self.spans.append(["refresh", "REF", self.refresh_due_cycle, self.refresh_end_cycle, {}])
        self.refresh_pending, self.refresh_due_cycle = False, self.refresh_due_cycle + self.p.tREFI_cycles

    def result(self) -> ChannelRun:
        finish = max(self.read_finish, default=0)
        clock = self.p.clock_hz
        timeline = tuple(Span(r, n, s / clock, e / clock, a) for r, n, s, e, a in self.spans)
        total: Counter[str] = Counter()
        for causes in self.stalls.values():
            total.update(causes)
        return ChannelRun(
            cycles=max(finish, max(self.tile_finish, default=0)),
            pim_finish_cycles=tuple(self.tile_finish),
            read_finish_cycles=tuple(self.read_finish),
            read_bytes_per_cycle=len(self.read_finish) * self.spec.read_bytes / finish if finish else 0.0,
            stalls=dict(total),
            stream_stalls={s: dict(c) for s, c in self.stalls.items()},
            commands=dict(self.commands),
            timeline=timeline,
        )


def _bank_group(bank: int) -> int:
    """The bank group of a channel's bank: 4 banks per group, 4 groups per rank (§1.2)."""
    return (bank // 4) % 4


def _rank_group(bank: int) -> tuple[int, int]:
    """The (rank, bank group) of a channel's bank, whose activations are tRRD_L apart: 16 banks per rank (§1.2)."""
    return bank // 16, _bank_group(bank)


def _check_count(where: str, value: object, what: str) -> None:
    """A ValueError naming `where` unless `value` is a whole number >= 1 of `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: expected a whole number >= 1 of {what}, got {value!r}")
