"""The PIM HBM spec of NeuPIMs (Heo et al., ASPLOS'24): organisation, HBM2 timing and the artifact's Algorithm 1
constants, as data. The command-latency model and the channel policies that read it are `archsim.systems.pim`; the
command-level channel that checks them is `archsim.model.dram`.

It is hardware description, like `archsim.arch.spec.Architecture`, and sits in the arch layer so that both the model
(`model/dram.py`) and the systems read it without the model importing the systems.

Source of every number: ../shared/reference/pim.md §1.2 (artifact `neupims.json` and `HBM2_8Gb_x128_dualpim.ini`),
§1.3 (command interface), §1.4 (Algorithm 1 constants) and §5 (access energy); tRRD and tRTP, which pim.md leaves
out, from the same ini as ../shared/reference/neupims-artifact.md §5 lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim.errors import SpecError, check_choice

GEMV_TIMINGS = ("command", "algorithm1")
COMMAND_ISSUES = ("per-channel", "one-per-cycle")
# §1.2: "each memory channel ... provides 1 GB"; the artifact's channel_size 1024 MB (16 banks x 32768 rows x 1 KB x
# 2 ranks). Per channel, not from banks_per_channel and row_bytes: the spec has no rows per bank, and a page size
# or bank count changed alone says nothing about the die's bits.
CHANNEL_BYTES = 2**30


@dataclass(frozen=True)
class PIMSpec:
    """PIM HBM: organisation, HBM2 timing (cycles of tCK) and the artifact's Algorithm 1 constants. Refused, as no
    command model or memory can be built from them: a refresh (tRFC) as long as its interval (tREFI), a row that is
    not whole COMP columns, an HBM no larger than its activation buffer."""

    channels: int = 32  # §1.2
    banks_per_channel: int = 32  # §1.2: 2 ranks x 4 BG x 4 banks
    macs_per_bank: int = 16  # §1.2 pim_comp_coverage
    row_bytes: int = 1024  # §1.2 dram_page_size
    bus_bits: int = 128  # §1.2 HBM2 x128
    clock_hz: float = 1.0e9  # §1.2 tCK 1 ns
    element_bytes: int = 2  # FP16
    tCL_cycles: int = 14  # §1.2
    tRCD_cycles: int = 14
    tRP_cycles: int = 14
    tRAS_cycles: int = 34
    tFAW_cycles: int = 30
    tCCD_S_cycles: int = 1
    tCCD_L_cycles: int = 2
    # neupims-artifact.md §5 (the same HBM2_8Gb_x128 ini): ACT to ACT of another bank group / of the same group
    tRRD_S_cycles: int = 4
    tRRD_L_cycles: int = 6
    # the ini's tRTP_L, RD to PRE of the bank read (its tRTP_S 4, to another bank group, constrains no precharge)
    tRTP_cycles: int = 6
    tREFI_cycles: int = 3900
    tRFC_cycles: int = 260
    banks_per_activation: int = 4  # §1.3: G_ACT opens 4 banks at a time
    activations_per_tFAW: int = 4  # JEDEC four-activate window
    row_buffers: int = 2  # §1.1: 2 = NeuPIMs dual row buffer, 1 = Newton
    gemv_timing: str = "command"  # command = the HBM2 command model; algorithm1 = the artifact's estimate (§1.4)
    # per-channel = each channel's controller is fed as fast as it runs; one-per-cycle = the npu+pim branch's host
    # issues one Newton command per core cycle for the whole device (neupims-artifact.md §4.2, NeuPIMSystolicWS.cc:153)
    command_issue: str = "per-channel"
    gwrite_cycles: int = 100  # §1.4 artifact gwrite_latency
    algorithm1_tile_cycles: int = 184  # §1.4 artifact gemv_latency per tile
    # None: channels x CHANNEL_BYTES (§1.2: 32 x 1 GB = HBM_size 32 GB), set by __post_init__
    capacity_bytes: float | None = None
    activation_buffer_bytes: float = 512 * 2**20  # §1.2 HBM_act_buf_size
    offchip_pj_per_bit: float = 3.59  # §5 derived access energy, off chip (cell, muxes, TSV, interposer) [AA-repo]
    bank_pim_pj_per_bit: float = 0.55  # §5 derived access energy of a bank-level PIM (cell and bank mux only)

    def __post_init__(self) -> None:
        check_choice("PIMSpec.gemv_timing", self.gemv_timing, GEMV_TIMINGS)
        check_choice("PIMSpec.row_buffers", self.row_buffers, (1, 2))
        check_choice("PIMSpec.command_issue", self.command_issue, COMMAND_ISSUES)
        if self.tRFC_cycles >= self.tREFI_cycles:  # else refresh_factor is negative or divides by zero
            raise SpecError("<python>", "PIMSpec.tRFC_cycles",
                            f"expected below tREFI_cycles ({self.tREFI_cycles}): a refresh takes tRFC of every "
                            f"tREFI, got {self.tRFC_cycles}")
        column_bytes = self.macs_per_bank * self.element_bytes
        if self.row_bytes < column_bytes or self.row_bytes % column_bytes:
            raise SpecError("<python>", "PIMSpec.row_bytes",
                            f"expected a positive multiple of the {column_bytes}-byte COMP column (macs_per_bank x "
                            f"element_bytes): a tile's COMPs read whole columns of a row, got {self.row_bytes}")
        given = self.capacity_bytes is not None
        capacity_bytes = self.channels * CHANNEL_BYTES if self.capacity_bytes is None else self.capacity_bytes
        # frozen: set once here, so readers see a number (a `replace` of channels alone keeps the old one)
        object.__setattr__(self, "capacity_bytes", capacity_bytes)
        if capacity_bytes <= self.activation_buffer_bytes:  # the HBM holds it beside the weights and KV cache
            if given:
                raise SpecError("<python>", "PIMSpec.capacity_bytes",
                                f"expected above activation_buffer_bytes ({self.activation_buffer_bytes:g}), which "
                                f"the HBM holds beside the weights and KV cache, got {capacity_bytes:g}")
            raise SpecError("<python>", "PIMSpec.activation_buffer_bytes",
                            f"expected below the HBM's capacity (channels x {CHANNEL_BYTES} = {capacity_bytes:g} "
                            f"without capacity_bytes), got {self.activation_buffer_bytes:g}")

    @property
    def row_elements(self) -> int:
        return self.row_bytes // self.element_bytes

    @property
    def bus_bytes_per_cycle(self) -> float:
        return self.bus_bits / 8 * 2  # DDR

    @property
    def refresh_factor(self) -> float:
        return self.tREFI_cycles / (self.tREFI_cycles - self.tRFC_cycles)
