"""Typed GPU specs: the numbers of a datasheet that a kernel-level attention model needs.

A `GPU` is one device: streaming multiprocessors (SMs; compute units on AMD) that each hold tensor cores, special
function units (SFU, the MUFU pipe that computes exp2), an FP32 ALU pipe, shared memory (SMEM) and a register file,
above an L2 cache and the off-chip memory (HBM or GDDR, called `dram` here). Units are in the field names.

Assumptions the GPU model built on these specs relies on:
- Peak rates are datasheet **dense** peaks at `clock_hz`; a per-SM rate is the peak divided by `sm_count`.
- Tensor-core throughput is per precision (`tensor_flops_per_s`: fp16, bf16, tf32, fp8); fp8 absent from the
  mapping (before Hopper/Ada) runs on the fp16 path after a conversion; any other absent precision is refused.
- `sync_mma_fraction` is the fraction of the tensor peak that warp-level `mma.sync` (Ampere-style code) can reach;
  on Hopper the full peak needs the asynchronous warpgroup `wgmma`, on Blackwell `tcgen05`.
- SMEM bandwidth, SFU exp rate and FP32 lane count are per SM per clock; L2 and DRAM bandwidths are whole-chip.
- `dram_copy_fraction` and `gemm_fraction`, where a preset has them, are measurements on that GPU (a device-to-device
  copy's bandwidth, a large dense GEMM's FLOP/s, over the peaks): what streaming and weight GEMMs reach there.

Specs are built and validated by `archsim.gpu.load` (the presets); a GPU however built checks itself
(`check_gpu`: no negative bandwidth, no SM count of 0, whether loaded or `dataclasses.replace`d), and its
`tensor_flops_per_s` is read-only (`archsim.frozen.ReadOnlyDict`: one loaded preset is shared by every caller).
The spec is hardware description and sits in the arch layer, under the GPU model (`archsim.model.gpu`) that reads it
and the `archsim.gpu` package (presets, calibration, validation) that runs that model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from archsim.errors import Plausible, SpecError, kind_of, ranged_number
from archsim.frozen import read_only

PRECISIONS = ("fp16", "bf16", "tf32", "fp8")
# Shared memory CUDA reserves for the system per resident thread block from compute capability 8.0 on
# (cudaDevAttrReservedSharedMemoryPerBlock; CUDA C++ Programming Guide, compute capability 8.x and 9.0 sections: "the
# 1 KB of shared memory not made available to a thread block is reserved for system use"; quoted from memory, not in
# ../shared/reference): a block gets at most the SM's less 1 KB (163 KB of 164 on 8.0, 99 of 100 on 8.6 and 8.9, 227
# of 228 on 9.0), and each resident block takes 1 KB more than it asks for. Before 8.0 (Volta, Turing) a block may
# take the whole SM and none is reserved; AMD's LDS reserves none either.
SMEM_RESERVED_BYTES_PER_BLOCK = 1024
SMEM_RESERVE_FROM_MAJOR = 8
MIN_HELD_FRACTION = 0.1  # of clock_hz: a held clock below it is taken for a unit slip (MHz for Hz), not a clock
ANY = Plausible(1e-12, 1e18)  # a number with no narrower physical range; beyond it, products overflow floats
# field -> (what it is, integer?, the range a real GPU's value lies in) for every plain number of a GPU. A GPU file's
# (`archsim.gpu.load`) lies in that range; every GPU's, one built in Python too (`check_gpu`), is a positive finite
# number, whole where it is an integer but for `SHARES`.
NUMBERS = {
    "sm_count": ("the number of SMs (compute units)", True, Plausible(1, 1e6, 132)),
    "clock_hz": ("a clock frequency in Hz", False, Plausible(1e7, 1e11, 1.98e9, "Hz")),
    "sync_mma_fraction": ("the fraction of the tensor peak warp-level mma.sync reaches, in (0, 1] (1 on Ampere "
                          "and Ada, 0.5 on Hopper)", False, ANY),
    "fp32_flops_per_s": ("the non-tensor FP32 peak in FLOP/s", False, Plausible(1e9, 1e18, 6.69e13, "FLOP/s")),
    "exp_per_clock_per_sm": ("SFU exp results per clock per SM", False, Plausible(1, 1024, 16)),
    "smem_bytes_per_sm": ("shared memory per SM in bytes", True, Plausible(2**10, 2**26, 233472, "B")),
    "smem_bytes_per_clock_per_sm": ("shared-memory bandwidth in bytes per clock per SM", False,
                                    Plausible(4, 8192, 128)),
    "regfile_bytes_per_sm": ("register file per SM in bytes", True, Plausible(2**10, 2**26, 262144, "B")),
    "max_threads_per_sm": ("resident threads per SM", True, Plausible(1, 2**20, 2048)),
    "l2_bytes": ("the L2 capacity in bytes", True, Plausible(2**16, 2**40, 52428800, "B")),
    "l2_bytes_per_s": ("the L2 bandwidth in bytes/s", False, Plausible(1e9, 1e18, 1.01e13, "B/s")),
    "dram_bytes": ("the DRAM (HBM/GDDR) capacity in bytes (a spec sheet's \"80 GB\" is taken as 80 GiB: "
                   "85899345920)", True, Plausible(2**26, 2**50, 85899345920, "B")),
    "dram_bytes_per_s": ("the DRAM bandwidth in bytes/s", False, Plausible(1e8, 1e18, 3.35e12, "B/s")),
    "dram_latency_s": ("the DRAM load latency in seconds", False, Plausible(1e-9, 1e-3, 5.0e-7, "s")),
    "power_w": ("the board power (TDP) in W", False, Plausible(0.1, 1e6, 700, "W")),
}
# Capacities a GPU built in Python may hold a share of, no whole number of bytes (an engine's memory_utilization of
# the DRAM: `archsim.systems.context_parallel.topology_of`); a file's are whole.
SHARES = ("l2_bytes", "dram_bytes")
MEASURED = {"dram_copy_fraction": "a measured fraction of the DRAM bandwidth in (0, 1]",
            "gemm_fraction": "a measured fraction of the dense tensor peak in (0, 1]"}  # optional
FRACTIONS = ("sync_mma_fraction", *MEASURED)  # each in (0, 1]
POSITIVE = Plausible(0.0, math.inf)  # any positive number: the bounds of a GPU built in Python (`check_gpu`)
TENSOR_RATE = "a dense tensor-core peak in FLOP/s"
COMPUTE_CAPABILITY = re.compile(r"\d+\.\d+")


@dataclass(frozen=True)
class GPU:
    """One GPU preset. `source` is the file it came from (for messages), `citation` where its numbers come from.
    However built, it is checked (`check_gpu`, a SpecError naming the field) and its `tensor_flops_per_s` made a
    read-only copy (`archsim.frozen.ReadOnlyDict`)."""

    name: str
    description: str
    source: str
    citation: str
    aliases: tuple[str, ...]
    sm_count: int
    clock_hz: float
    tensor_flops_per_s: Mapping[str, float]
    sync_mma_fraction: float
    fp32_flops_per_s: float
    exp_per_clock_per_sm: float
    smem_bytes_per_sm: int
    smem_bytes_per_clock_per_sm: float
    regfile_bytes_per_sm: int
    max_threads_per_sm: int
    l2_bytes: int
    l2_bytes_per_s: float
    dram_bytes: int
    dram_bytes_per_s: float
    dram_latency_s: float
    power_w: float
    dram_copy_fraction: float | None = None  # a measured copy's bandwidth / dram_bytes_per_s; None: not measured
    gemm_fraction: float | None = None  # a measured large dense GEMM's FLOP/s / the tensor peak; None: not measured
    compute_capability: str | None = None  # NVIDIA's "major.minor" (9.0: Hopper); None: an AMD GPU (its file's vendor)
    # the link preset of its host interface (PCIe generation x lanes), or a link file's path (a GPU file's, read
    # beside that file: archsim.gpu.load); None: not stated
    host_link: str | None = None

    def __post_init__(self) -> None:
        check_tensor_mapping(self.tensor_flops_per_s, self.source)
        object.__setattr__(self, "tensor_flops_per_s", read_only(self.tensor_flops_per_s))  # frozen: set once, here
        check_gpu(self)

    def tensor_peak_flops_per_s(self, precision: str) -> float:
        """Dense tensor-core peak for `precision`: the rate of the precision it is computed at (`computed_precision`:
        fp8 without fp8 tensor cores runs at the fp16 rate)."""
        if self.has_rate(precision):
            return self.tensor_flops_per_s[self.computed_precision(precision)]
        raise SpecError(self.source, "tensor_flops_per_s",
                        f"no tensor-core rate for {precision} (known: {', '.join(self.tensor_flops_per_s)})")

    def rate_problem(self, precision: str) -> str:
        """Why no attention kernel runs `precision` on this GPU ("" when one may: `has_rate`): its
        `tensor_flops_per_s` has no rate for it (a V100's or T4's bf16). Every kernel's plan is refused with it
        (`archsim.model.gpu_kernels.plans`), and a measurements row skipped (`archsim.gpu.cases`), where
        `tensor_peak_flops_per_s` would raise from inside planning."""
        if self.has_rate(precision):
            return ""
        return (f"{self.name} has no tensor-core rate for {precision} (its tensor_flops_per_s: "
                f"{', '.join(self.tensor_flops_per_s)})")

    def has_native(self, precision: str) -> bool:
        return precision in self.tensor_flops_per_s

    def computed_precision(self, precision: str) -> str:
        """The precision the tensor cores compute `precision` at: its own, but fp16 for fp8 on a GPU without fp8
        tensor cores, which runs fp8 inputs on its fp16 path (a100-80gb-sxm4.yaml). The one rule of that path: the
        rate (`tensor_peak_flops_per_s`, `has_rate`) and the width FLOPs are priced at
        (`archsim.systems.gpu_device.arithmetic_word_bytes`) read it."""
        return "fp16" if precision == "fp8" and not self.has_native("fp8") else precision

    def has_rate(self, precision: str) -> bool:
        """Whether `tensor_peak_flops_per_s` has a rate for `precision`: a rate for the precision it is computed at
        (`computed_precision`: its own, or fp16's for fp8 without fp8 tensor cores)."""
        return self.has_native(self.computed_precision(precision))

    @property
    def capability(self) -> tuple[int, int] | None:
        """`compute_capability` as (major, minor) (its file's major.minor, `archsim.gpu.load`); None for an AMD GPU."""
        if self.compute_capability is None:
            return None
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor)

    @property
    def smem_reserved_bytes_per_block(self) -> int:
        """Shared memory the system reserves per resident CTA (`SMEM_RESERVED_BYTES_PER_BLOCK`: an NVIDIA GPU of
        compute capability 8.0 and later); 0 before 8.0 and on an AMD GPU."""
        capability = self.capability
        return SMEM_RESERVED_BYTES_PER_BLOCK if capability and capability[0] >= SMEM_RESERVE_FROM_MAJOR else 0

    @property
    def smem_bytes_per_block(self) -> int:
        """The most shared memory one CTA may use (cudaDevAttrMaxSharedMemoryPerBlockOptin): the SM's less the
        per-block reserve (`smem_reserved_bytes_per_block`), as CUDA documents it for every capability from 8.0; none
        on an SM smaller than the reserve."""
        return max(0, self.smem_bytes_per_sm - self.smem_reserved_bytes_per_block)

    def smem_ctas_per_sm(self, cta_smem_bytes: int) -> int:
        """The CTAs of `cta_smem_bytes` each that one SM's shared memory holds: each takes its own and the per-block
        reserve (`smem_reserved_bytes_per_block`), so none above `smem_bytes_per_block` fits (0)."""
        return self.smem_bytes_per_sm // (cta_smem_bytes + self.smem_reserved_bytes_per_block)

    @property
    def exp_per_s(self) -> float:
        """Whole-chip SFU exp2 rate."""
        return self.exp_per_clock_per_sm * self.sm_count * self.clock_hz

    @property
    def fp32_lanes_per_sm(self) -> float:
        """FP32 operations per clock per SM (an FMA counts once): the non-tensor ALU rate."""
        return self.fp32_flops_per_s / (2 * self.sm_count * self.clock_hz)


def check_gpu(gpu: GPU) -> None:
    """What every GPU must be, however built (a file, `dataclasses.replace` of a preset, `at_sm_clock`), each a
    SpecError naming the field as the loader's (`archsim.gpu.load.gpu_from_dict`) for the same value: every number
    of `NUMBERS` and `MEASURED` (where given) positive and finite, whole for an integer (but `SHARES`), the
    `FRACTIONS` at most 1, each tensor-core peak a positive rate of a known precision (fp16 among them), and a
    compute capability NVIDIA's major.minor or None. A file's numbers must moreover lie where a real GPU's do (the
    loader's ranges and per-SM-clock check, which catch a unit slip); a what-if built in Python may leave them (a tiny
    SM, to test a refusal)."""
    for key, (what, integer, _) in NUMBERS.items():
        ranged_number(getattr(gpu, key), gpu.source, key, what, POSITIVE, integer=integer and key not in SHARES)
    for key, what in MEASURED.items():
        if getattr(gpu, key) is not None:
            ranged_number(getattr(gpu, key), gpu.source, key, what, POSITIVE)
    for key in FRACTIONS:
        check_fraction(key, getattr(gpu, key), gpu.source)
    for precision, rate in gpu.tensor_flops_per_s.items():
        tensor_rate(precision, rate, gpu.source, POSITIVE)
    check_compute_capability(gpu.compute_capability, gpu.source)


def check_fraction(key: str, value: float | None, source: str) -> None:
    """A fraction of a peak (`FRACTIONS`), already a positive number or None (not measured), is at most 1."""
    if value is not None and value > 1:
        raise SpecError(source, key, f"expected a fraction in (0, 1], got {value}")


def check_tensor_mapping(data: Any, source: str) -> None:
    """`tensor_flops_per_s` is a mapping with at least fp16's peak (each peak: `tensor_rate`)."""
    where = "tensor_flops_per_s"
    if not isinstance(data, Mapping):
        raise SpecError(source, where, f"expected a mapping precision -> dense FLOP/s with at least fp16 "
                                       f"(precisions: {', '.join(PRECISIONS)}), got {kind_of(data)}")
    if "fp16" not in data:
        got = ", ".join(map(str, data)) or "no precision"
        raise SpecError(source, f"{where}.fp16", f"missing: expected the dense fp16 tensor-core peak in FLOP/s "
                                                 f"(got {got})")


def tensor_rate(precision: Any, value: Any, source: str, bounds: Plausible) -> float:
    """One peak of `tensor_flops_per_s`: a known precision's (`PRECISIONS`), a positive number within `bounds`."""
    where = f"tensor_flops_per_s.{precision}"
    if precision not in PRECISIONS:
        raise SpecError(source, where, f"unknown precision (known: {', '.join(PRECISIONS)})")
    return ranged_number(value, source, where, TENSOR_RATE, bounds)


def check_compute_capability(capability: Any, source: str) -> None:
    """A compute capability is NVIDIA's "major.minor" as text, or None (an AMD GPU's: `archsim.gpu.load` says which
    a file's vendor needs)."""
    if capability is not None and not (isinstance(capability, str) and COMPUTE_CAPABILITY.fullmatch(capability)):
        raise SpecError(source, "compute_capability", f"expected NVIDIA's major.minor as text (quoted), e.g. \"9.0\", "
                                                      f"or None for an AMD GPU, got {capability!r}")


LABELS = ("name", "description", "source", "citation", "aliases")  # what names a GPU; the rest is what it computes


def same_hardware(gpu: GPU, other: object) -> bool:
    """Whether `other` is a GPU computing as `gpu` does: equal but for their `LABELS` (a preset copied into a file
    of one's own and renamed is the same GPU); a device of another kind (an array) is not."""
    return isinstance(other, GPU) and replace(gpu, **{label: getattr(other, label) for label in LABELS}) == other


def at_sm_clock(gpu: GPU, clock_hz: float) -> GPU:
    """`gpu` with its SMs held at `clock_hz`, between `MIN_HELD_FRACTION` of the preset's `clock_hz` (its boost) and
    that clock: a clock locked for benchmarking, or the one a long run settles at under the power cap. What the SM
    clock sets scales by clock_hz / gpu.clock_hz: the tensor and FP32 peaks, the per-clock rates (exp, shared memory)
    and cycle counts through `clock_hz`, and the L2 bandwidth (the presets derive it per clock); DRAM bandwidth and
    latency do not (the memory has its own clock).
    Assumptions: the kernels' efficiencies at a lower clock are those at boost, as an H200 measured
    FlashAttention-2 from 8K to 1M tokens (`benchmarks/long_prefill_clocks.py`: the model at the sampled clock within
    1.2 %). The scale is relative to the preset's `clock_hz` also where its tensor peak is quoted at a lower clock
    (Hopper's at 1830 MHz, the H20's an export cap): the model runs that peak at `clock_hz`, which is what the H200
    measurement checks. A preset's `gemm_fraction` scales with the clock as its tensor peak does, as if measured at
    boost; the H200's (measured at a clock not recorded) is not: its SwiGLU GEMMs held 0.73-0.76 of boost at every
    length, where the model is 14-15 % fast at boost and 11-16 % slow at that clock, so the fraction carries part of
    the cap and a held clock overstates such a GEMM's time."""
    if (not isinstance(clock_hz, int | float) or isinstance(clock_hz, bool)
            or not MIN_HELD_FRACTION * gpu.clock_hz <= clock_hz <= gpu.clock_hz):
        raise SpecError(gpu.source, "held_clock_hz",
                        f"a held SM clock of {gpu.name} must lie in [{MIN_HELD_FRACTION * gpu.clock_hz / 1e6:.0f}, "
                        f"{gpu.clock_hz / 1e6:.0f}] MHz ({MIN_HELD_FRACTION:g} to 1 x its clock_hz), given in Hz "
                        f"(1.6e+9 for 1600 MHz), got {clock_hz!r}")
    scale = clock_hz / gpu.clock_hz
    return replace(gpu, clock_hz=clock_hz,
                   tensor_flops_per_s={precision: rate * scale for precision, rate in gpu.tensor_flops_per_s.items()},
                   fp32_flops_per_s=gpu.fp32_flops_per_s * scale, l2_bytes_per_s=gpu.l2_bytes_per_s * scale)
