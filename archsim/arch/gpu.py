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

Specs are built and validated by `archsim.gpu.load` (the presets). The spec is hardware description and sits in the
arch layer, under the GPU model (`archsim.model.gpu`) that reads it and the `archsim.gpu` package (presets, calibration,
validation) that runs that model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from archsim.errors import SpecError

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


@dataclass(frozen=True)
class GPU:
    """One GPU preset. `source` is the file it came from (for messages), `citation` where its numbers come from."""

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
