"""The Logic-PIM of Duplex (Yun et al., MICRO'24): GEMM units on the logic (base) die of an HBM3 stack.

One `LogicPIMSpec` is one stack. Duplex's device is an H100 whose five HBM3 stacks are Logic-PIM stacks (80 GB per
device, ../shared/reference/pim.md §2.4), so a Duplex device is five of these beside its xPU.

Assumptions, all from pim.md §2.2 and §5 unless a field says otherwise:
- The logic die reads its stack through four times the TSVs of a plain HBM3 stack (22 µm pitch), so it sees 4x the
  stack's external bandwidth; the xPU and the Logic-PIM read different bank bundles, so both streams run at once.
- The GEMM units are sized to about 8 FLOPs per byte of that internal bandwidth (§2.2; [DX-sim] logic_op_b = 8,
  Duplex's Op/B target for MoE and GQA attention): 21.3 TFLOPS over 2.68 TB/s is 7.9 (`op_per_byte`). Softmax and
  activations have their own units on the die, not counted in `peak_flops_per_s`.
- Internal access energy is a buffer-die PIM's: a bit is activated, read from the cell, goes through the column and
  bank-group muxes and the TSVs, but not over the interposer to the xPU. Duplex's own per-bit figure is not in the
  reference; AttAcc's buffer-die figure is built from the same FGDRAM energies Duplex cites.
- The DRAM refreshes: for tRFC of every tREFI no bank is read (`refresh_fraction`), the reference's HBM timing
  (pim.md §1.2, NeuPIMs' HBM2: tRFC 260 of tREFI 3900 cycles, as `archsim.arch.pim.PIMSpec` holds it: 6.7 % of
  read time). Duplex's own HBM3 timing is not in the reference; the HBM3 preset it lists (pim.md §4.1, AttAcc's
  Ramulator `HBM3_5.2Gbps`: nRFCsb 260 of nREFI 5070, 5.1 %) refreshes per bank, which a whole-device fraction
  does not model, so it is not used: at most 1.6 % of a Logic-PIM read's time rides on the choice. The xPU's
  measured DRAM efficiency already holds its share (`archsim.model.gpu.dram_efficiency`); bank-bundle conflicts and
  activation limits are not modelled.
- Area is not a field: no cost model or record of a system reads one (a system spec's `area_mm2` is refused).
  Duplex's PIM adds 17.80 mm2 per stack, 14.71 % of its 121 mm2 HBM3 logic die (§2.2: TSVs 10.89, GEMM modules
  3.02, 1 MB buffers 2.26, softmax 1.64 mm2).
The paper's alternatives are the same spec with other values (the duplex-bank-pim and duplex-bankgroup-pim system
presets): Bank-PIM, 16x the stack bandwidth at 1 Op/B with bank-level access energy; BankGroup-PIM, Logic-PIM's
bandwidth and compute on the DRAM dies with bank-group-level access energy (§2.2, §5).
It is hardware description, like `archsim.arch.pim.PIMSpec`; the cost model that reads it is not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archsim.arch.pim import PIMSpec
from archsim.errors import SpecError

HBM3_STACK_BYTES_PER_S = 670.4e9  # §5: H100's 3.352 TB/s over its 5 stacks [AA-repo; DX-sim]
TSV_BANDWIDTH_FACTOR = 4  # §2.2 target "4x HBM bandwidth"; [DX-sim] logic_x = 4
STACK_CAPACITY_BYTES = 16 * 2**30  # §2.4 "16 GB per stack, 8-Hi": the H100's 80 GiB over its 5 stacks
HBM_REFRESH_FRACTION = PIMSpec.tRFC_cycles / PIMSpec.tREFI_cycles  # §1.2 HBM timing: tRFC 260 of tREFI 3900


@dataclass(frozen=True)
class LogicPIMSpec:
    """One Logic-PIM HBM3 stack: compute, the bandwidth the logic die and the xPU see, capacity and energy."""

    # Required: Duplex synthesises its arithmetic in ASAP7 7 nm (§2.4) but the reference gives no energy per op.
    pj_per_flop: float
    peak_flops_per_s: float = 2 * 32 * 512 * 650e6  # §2.2: 32 GEMM modules x 512 FP16 MACs at 650 MHz = 21.3 TFLOPS
    # None: TSV_BANDWIDTH_FACTOR x external_bytes_per_s (§2.2, the docstring; 2.68 TB/s at §5's stack), set by
    # __post_init__, so a stack given another external bandwidth keeps the 4x rule rather than the H100's figure
    internal_bytes_per_s: float | None = None
    external_bytes_per_s: float = HBM3_STACK_BYTES_PER_S  # §5 HBM3 stack: what the xPU reads over the interposer
    # §2.4 "16 GB per stack, 8-Hi"; §2.5 [DX-sim] H100 80 GiB over 5 stacks. Beside a gpu or chip a system spec that
    # leaves it unset gives the stacks that device's HBM capacity instead (`archsim.systems.system_spec`: they are
    # its HBM)
    capacity_bytes: float = STACK_CAPACITY_BYTES
    # §5 buffer-die PIM access energy [AA-repo]: ACT, cell read, column-to-BG mux, BG-to-GIO, TSV (0.11 + 0.44 + 1.01
    # + 1.23 + 0.5 pJ/bit), the FGDRAM energies (O'Connor et al., MICRO'17) Duplex also prices HBM with (§2.4)
    internal_pj_per_bit: float = 3.29
    # of the time the stack refreshes and reads nothing (docstring); 0: no refresh, as Duplex's simulator
    refresh_fraction: float = field(default=HBM_REFRESH_FRACTION, metadata={"zero": True})

    def __post_init__(self) -> None:
        if self.internal_bytes_per_s is None:  # frozen: set once here, so readers see a number
            object.__setattr__(self, "internal_bytes_per_s", TSV_BANDWIDTH_FACTOR * self.external_bytes_per_s)
        if not 0 <= self.refresh_fraction < 1:
            raise SpecError("<python>", "LogicPIMSpec.refresh_fraction",
                            f"expected a fraction in [0, 1), got {self.refresh_fraction:g}")
        if self.internal_bytes_per_s < self.external_bytes_per_s:
            raise SpecError("<python>", "LogicPIMSpec.internal_bytes_per_s",
                            f"expected at least external_bytes_per_s ({self.external_bytes_per_s:g}): the logic die "
                            f"sees all of its stack's bandwidth, got {self.internal_bytes_per_s:g}")

    @property
    def op_per_byte(self) -> float:
        """The ridge point: FLOPs per byte of internal bandwidth at which compute and memory time are equal."""
        return self.peak_flops_per_s / self.internal_bytes_per_s
