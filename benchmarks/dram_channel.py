"""Speed and figures of the command-level PIM channel (`archsim.model.dram`); prints figures, asserts nothing.

A mixed stream on one channel: full PIM GEMV tiles (32 banks x 32 COMPs) back to back beside the NPU streaming
64 B reads sequentially (address map `rorabgbachco`, closed loop, 32 in flight), with one row buffer per bank
(Newton, the npu+pim baseline) and with NeuPIMs' dual row buffers. Prints simulated commands per second, each
stream's finish, the achieved read bandwidth and the stalls.
Run: .venv/bin/python benchmarks/dram_channel.py
"""

from __future__ import annotations

import time
from dataclasses import replace

from archsim.model.dram import ChannelSpec, PIMTile, ReadStream, simulate_channel, streaming_addresses
from archsim.systems.pim import PIMSpec

TILES, READS = 100, 8192  # 15,000 PIM cycles beside ~16,400 cycles of reads: both cross several refreshes


def main() -> None:
    pim = PIMSpec()
    tiles, reads = [PIMTile()] * TILES, ReadStream(streaming_addresses(READS, pim))
    alone = {"PIM": simulate_channel(tiles).cycles, "NPU": simulate_channel(reads=reads).cycles}
    print(f"alone: {TILES} tiles {alone['PIM']:,} cycles; {READS} reads {alone['NPU']:,} cycles "
          f"({READS * 64 / alone['NPU']:.2f} B/cycle)")
    runs = {}
    for row_buffers in (1, 2):
        spec = ChannelSpec(pim=replace(pim, row_buffers=row_buffers))
        start = time.perf_counter()
        run = simulate_channel(tiles, reads, spec)
        wall_s = time.perf_counter() - start
        runs[row_buffers] = run
        commands = sum(run.commands.values())
        print(f"row_buffers={row_buffers}: {run.cycles:,} cycles (PIM done {run.pim_finish_cycle:,}, "
              f"NPU done {run.npu_finish_cycle:,}, {run.read_bytes_per_cycle:.2f} B/cycle); "
              f"{commands:,} commands in {wall_s:.2f} s = {commands / wall_s:,.0f} commands/s")
        for stream, causes in sorted(run.stream_stalls.items()):
            print(f"  {stream} stalls: " + ", ".join(f"{c} {n:,}" for c, n in sorted(causes.items())))
    single, dual = runs[1].cycles, runs[2].cycles
    print(f"combined throughput, dual / single row buffer: {single / dual:.2f}x "
          f"(serial bound {(alone['PIM'] + alone['NPU']) / max(alone.values()):.2f}x)")


if __name__ == "__main__":
    main()
