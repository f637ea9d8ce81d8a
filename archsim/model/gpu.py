"""GPU model: attention kernels as mappings of cascades onto SMs, timed launch by launch.

A kernel family (`archsim.model.gpu_kernels`) turns one `AttentionCase` into a `Plan`: the launches the kernel makes.
This module times them on a `GPU` with a family's calibrated parameters, and returns a `GpuResult`.

A **tiled launch** is a grid of CTAs (thread blocks). Each CTA runs a main loop over tiles (BLOCK_M x BLOCK_N steps
of the cascade `attention-1pass`; `Segment`s give how many tiles of each kind each CTA runs, in launch order).
Assumptions, following the FlashAttention-2 paper's work partitioning (Dao 2023, §3) and the FlashAttention-3
paper's account of what stalls it (Shah et al. 2024, §2-3):
- Occupancy: CTAs per SM = min over shared memory (each CTA's plus the 1 KB CUDA reserves per block from compute
  capability 8.0, `GPU.smem_ctas_per_sm`; so no CTA above the SM's less 1 KB runs), registers (an estimate: a base
  of `REG_BASE_PER_THREAD` plus the CTA's accumulator words spread over its threads, capped at 255) and resident
  threads; at most `MAX_CTAS_PER_SM`. A CTA that does not fit makes the case infeasible.
- One tile with the SM to itself: an MMA phase, tensor time = MMA FLOPs / (per-SM tensor peak x
  `mma_efficiency` [x the GPU's `sync_mma_fraction` when the kernel issues warp-level mma.sync]) overlapping the
  tile's shared-memory traffic (bounded by the SMEM bandwidth); then a softmax phase, in which the SFU (exp) and
  the FP32 pipe (max, add, mul, masks, conversions) overlap, so it takes the longer of the two. Within a CTA the
  softmax follows the MMAs that produce its scores: FA2 does not overlap them (FA3 §3.1). Two exceptions
  (`tile_times_s`, `step_time_s`): chained products (`chained_mma`: each staged through SMEM from the one before)
  add their SMEM time to the tensor time instead of overlapping it, and a CTA keeping no tile in flight
  (`in_flight_tiles` 0) waits a whole DRAM latency every step.
- CTAs resident on one SM share its pipes (a grid smaller than the slots is spread one CTA per SM first): with
  k per SM a CTA's tile step takes k x MMA phase + one softmax phase, at least k x softmax phase, and never less
  than the DRAM latency divided by the tiles the CTA keeps in flight (Little's law: a lone CTA cannot stream
  faster). This is an empirical middle, not a derived schedule: if the other CTAs' MMAs hid a CTA's whole softmax
  the step would be max(k x MMA, MMA + softmax, k x softmax), and if co-resident warps ran in step (all MMA, then
  all softmax) it would be k x (MMA + softmax); the formula assumes the tensor pipe idles for one softmax phase per
  step, which the fitted rows favour over both (session 52, each refitted on the same rows: FlashAttention-2's
  forward on the H200 from the A100 fit, 4.9 % held-out against 6.4 % and 5.8 %, its d64-to-d128 error trend the
  flattest; the in-phase variant drove FA2's forward efficiency to 0.96 and a CTA overhead to its bound).
  A kernel that overlaps the softmax with the MMAs
  inside the CTA (`softmax_overlap`: FlashAttention-3's ping-pong of two consumer warpgroups and its intra-
  warpgroup pipelining, FA3 §3.1-3.2) takes the longer of k x MMA phase and k x softmax phase instead.
- A CTA's time = its tiles' time + its overhead: one DRAM latency (pipeline fill), its prologue and epilogue
  tiles (Q in and O out for a forward; K, V in and dK, dV out for a backward) at the SM's share of L2 bandwidth,
  and `cta_overhead_cycles` (the rest: setup, epilogue normalisation, synchronisation; a calibrated constant per
  family). It is not overlapped with the other resident CTAs.
- Waves: CTAs are dispatched in launch order, each to the SM slot that frees first (the slots are SMs x
  occupancy). Tail effects and causal imbalance come out of this schedule. Every CTA of a schedule shares its SM
  at one level, which overcharges co-residency that ends early (a long causal CTA beside short ones runs alone
  once they finish; a partial last wave runs less shared): the schedule bound is the best of those static
  schedules at occupancies 1..k (`schedule_s`), since the dynamic one at k is taken to be no slower than
  packing fewer CTAs per SM. So a GPU with more registers or shared memory is never slower on the same plan
  (at one level only, a doubled register file made 138 of 310 preset x kernel x shape pairs slower, by up to 30 %;
  now 3, by a change of plan).
- The launch takes max(schedule, DRAM bytes / (DRAM bandwidth x `dram_efficiency`), L2 bytes / L2 bandwidth,
  its atomic adds at the family's rate where it issues them: `atomic_rate`) plus `launch_s` (launch latency and the
  gap between back-to-back kernels).
A **stream launch** (an elementwise pass, a reduction, a copy) is bound by DRAM bandwidth, and a **GEMM launch**
(a vendor-library GEMM) by the larger of FLOPs at `gemm_efficiency` x peak and bytes at `hbm_efficiency` x
bandwidth. A plan issued op by op from Python (PyTorch eager) takes at least `host_op_s` per op issued. A
backward run through PyTorch autograd (`loss.backward()`, how every published backward was timed) starts its
first kernel `autograd_s` after the call (engine, Python wrapper, allocations); the GPU idles meanwhile unless a
forward of the same timed call is still running.
A family may offer alternative plans (an autotuner's configurations): the fastest of those that can run is taken
(`runnable_plans`). A plan cannot run when the call's operands and what the plan materialises besides them
(`Plan.held`: eager attention's score matrices, repeat_kv's expanded K and V) exceed the GPU's DRAM, or when a CTA
does not fit an SM; the case is then infeasible with that reason.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache

import numpy as np

from archsim.arch.gpu import GPU
from archsim.errors import LimitError, SpecError
from archsim.limits import env_limit
from archsim.memo import per_object, trim
from archsim.outputs import capacity_text
from archsim.record import NAN, PJ_PER_J, Record
from archsim.workload import max_size, shown_number, size_limit_problem

DRAM_EFFICIENCY = 0.90  # streaming copies reach 0.90 of DRAM peak on H100 and H200 (gpu_measured_fractions.csv)
# The H100 SXM5's and H200's measured device-to-device copy, 3.0 / 3.35 TB/s (gpu_measured_fractions.csv;
# h100-sxm5.yaml): what DRAM_EFFICIENCY rounds, and the copy fraction assumed for a GPU without its own
TRANSFERRED_COPY_FRACTION = 0.896
# A cap below every preset's hardware limit on resident CTAs per SM (CUDA programming guide, from memory, not in
# ../shared/reference: 32 for CC 8.0, 9.0 and 10.0, 24 for 8.9; 16 is CC 8.6/8.7's, which no preset has): a
# conservative cap, the one the calibration was fitted with. A CTA of 128 threads reaches it through the
# 2048 resident threads at the same 16
MAX_CTAS_PER_SM = 16
REG_BASE_PER_THREAD = 32  # registers a thread holds besides accumulators (addresses, indices, loop state)
MAX_REGS_PER_THREAD = 255
PRECISION_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "fp32": 4}
# The workload sizes an AttentionCase is built from (its shape, and its precision from the word width): what a
# roofline (`archsim.gpu.roofline`) and a sweep's GPU point (`archsim.dse.points`) read of a workload
CASE_SIZES = ("batch", "heads", "kv_heads", "head_dim", "seq_len", "word_bytes")
# A workload's word_bytes -> the precision its attention runs at (2 bytes: fp16, the published benchmarks' dtype).
WORD_PRECISIONS = {1: "fp8", 2: "fp16", 4: "fp32"}
DIRECTIONS = ("fwd", "bwd", "fwd+bwd", "decode")
ATTENTIONS = ("softmax", "linear")
FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}  # of the forward count (gpu.md §1.0)
# Most query rows one case may have, and most keys (`AttentionCase.limit_problem`): the kernels' grids hold a CTA per
# 16 to 128 query rows and are timed CTA by CTA, so this bounds the memory (~1 GB) and time (seconds) of one
# prediction. 2**30 is 64 times Llama-3-405B's 128 heads at batch 1 and 128K tokens. ARCHSIM_MAX_GPU_ROWS raises it.
MAX_QUERY_ROWS = 2**30
# The fewest rows a decode's query row (one per batch and head) is computed in: one m16n8k16 MMA tile. Every decode
# kernel pads the row to a tile (FlashAttention v2.0.9 gives each its own CTA), so it counts as that many rows.
DECODE_TILE_ROWS = 16
LIMIT_NAMING_ORDER = ("seqlen", "batch", "heads", "kv_heads")  # the field a product beyond the limit names on a tie
MAX_QUERY_ROWS_ENV = "ARCHSIM_MAX_GPU_ROWS"
# Largest CTA schedule remembered by its durations (8 bytes each): 1024 of them hold at most 32 MB.
MAKESPAN_MEMO_CTAS = 4096
# Schedules of grids of unequal CTAs remembered by what they read (`schedule_s`): a serving run's decode calls repeat
# their grids (each request's key blocks) while their lengths move within a block
WALKED_MEMO_LAUNCHES = 4096
# `_walked_key` -> the schedule; ordered, so evicting the oldest (`memo.trim`) is one step, where a dict's first
# entry is found past every slot deleted before it
_WALKED: OrderedDict[tuple, float] = OrderedDict()
# Most CTAs of one grid of unequal CTAs (a causal one, or a varlen call's prompts of several lengths) that `schedule_s`
# times one by one, a float64 duration each (8 bytes, and as many again in the float64 temporaries that sum and schedule
# them: about 16 bytes and 80 ns a CTA, 2.2 GB and 10 s at 2^27, FA2's causal forward on an H100). Within
# `MAX_QUERY_ROWS` a causal grid has at most 2 x 2^30 / 17 CTAs (blocks of 16 rows, `gpu_flash_plans.SMALLEST_BLOCK`,
# over heads of 17 tokens; the kernels' own blocks, 32 rows or more, give at most 2 x 2^30 / 33), so only a raised
# ARCHSIM_MAX_GPU_ROWS reaches 2^27; ARCHSIM_MAX_GPU_CTAS raises it. A grid of equal CTAs is timed in closed form
# (`_uniform_schedule_s`), whatever its size.
MAX_WALKED_CTAS = 2**27
MAX_WALKED_CTAS_ENV = "ARCHSIM_MAX_GPU_CTAS"
# Workload sizes that mean an attention the kernels here do not model: they time dense multi-head and grouped-query
# attention, so a caller holding such a workload refuses it rather than time it as dense MHA.
UNMODELLED_ATTENTION = {"kv_lora_rank": "an MLA workload (latent KV)", "window": "a sliding-window workload"}


def unmodelled_attention(sizes: Mapping[str, object]) -> tuple[str, str] | None:
    """(the size, what it means) of the first of `sizes` that asks for an attention these kernels do not model
    (`UNMODELLED_ATTENTION`), or None: what a caller refusing such a workload names."""
    return next(((size, what) for size, what in UNMODELLED_ATTENTION.items() if size in sizes), None)


def refuse_unmodelled_attention(sizes: Mapping[str, object], source: str, where: Callable[[str], str],
                                consequence: str) -> None:
    """A SpecError at `source`, `where(size)`, when `sizes` ask for an attention these kernels do not model: what the
    size means, then `consequence` (why the caller cannot time it)."""
    found = unmodelled_attention(sizes)
    if found:
        size, what = found
        raise SpecError(source, where(size), f"{what}: {consequence}")


def refuse_other_word_bytes(sizes: Mapping[str, object], source: str, expected: int, reason: str) -> None:
    """A SpecError at `source`, `params.word_bytes`, when `sizes` give a word size other than `expected` (none given
    is `expected`): "expected {expected} {reason}, got ...", `reason` formatted with the size as `word_bytes`."""
    word_bytes = sizes.get("word_bytes", expected)
    if word_bytes != expected:
        raise SpecError(source, "params.word_bytes", f"expected {expected} {reason.format(word_bytes=word_bytes)}, "
                                                     f"got {word_bytes:g}")


@dataclass(frozen=True)
class AttentionCase:
    """One attention call. Prefill: `seqlen` queries attend to `seqlen` keys; decode: one query per sequence
    attends to a KV cache of `seqlen` keys. `heads` are query heads; `kv_heads` < `heads` is GQA/MQA. `attention`
    is "softmax" or "linear" (`ATTENTIONS`: linear attention, no softmax, as Lightning Attention-2 computes it);
    a kernel computes one of them (`archsim.model.gpu_kernels.kernel_attention`)."""

    direction: str
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    seqlen: int
    causal: bool
    precision: str
    attention: str = "softmax"

    @property
    def element_bytes(self) -> int:
        return PRECISION_BYTES[self.precision]

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.heads // self.kv_heads

    def flops(self) -> float:
        """FLOPs by the FlashAttention benchmark convention (gpu.md §1.0): 4·B·H·N²·d forward, halved when causal,
        x2.5 backward, x3.5 forward+backward; decode 4·B·H·N·d (one query row). Linear attention: 4·B·H·N·d²
        forward (Q times the running state and Kᵀ·V into it, per token: the right product; a chunked kernel's
        block-local products are its own work beyond it), not halved."""
        if self.direction == "decode":
            return 4.0 * self.batch * self.heads * self.seqlen * self.head_dim
        if self.attention == "linear":
            return 4.0 * self.batch * self.heads * self.seqlen * self.head_dim**2 * FLOP_FACTOR[self.direction]
        forward = 4.0 * self.batch * self.heads * self.seqlen**2 * self.head_dim
        return forward * (0.5 if self.causal else 1.0) * FLOP_FACTOR[self.direction]

    def kv_bytes(self) -> float:
        """K and V of the call, each once, in bytes: 2·B·H_kv·N·d words (a decode's KV cache; a backward's dK and
        dV are as many), whatever the direction."""
        return 2 * self.batch * self.kv_heads * self.seqlen * self.head_dim * self.element_bytes

    def operand_bytes(self) -> float:
        """Q, K, V and O of the call (a decode's one query row per sequence), and their gradients for a backward:
        what it keeps in DRAM at the least, whatever the kernel. What a plan holds besides (eager attention's score
        matrices, repeat_kv's expanded K and V) is its `Plan.held`; `plan_memory_problem` counts both."""
        queries = 1 if self.direction == "decode" else self.seqlen
        q_o = 2 * self.batch * self.heads * queries * self.head_dim * self.element_bytes
        return (q_o + self.kv_bytes()) * (1 if self.direction in ("fwd", "decode") else 2)

    def size_problem(self) -> tuple[str, str]:
        """(field, why) when the case cannot be modelled, else ("", ""): its fields readable (`shape_problem`) and
        its size within what one prediction models (`limit_problem`). A precision no kernel takes is not a problem
        here: each kernel gives it as the reason it has no plan."""
        field, problem = self.shape_problem()
        return (field, problem) if problem else self.limit_problem()

    def shape_problem(self) -> tuple[str, str]:
        """(field, why) when a field cannot be read, else ("", ""): `direction` one of `DIRECTIONS`, `attention` one
        of `ATTENTIONS`, `causal` a boolean, every size a positive whole number."""
        if self.direction not in DIRECTIONS:
            return "direction", f"expected one of {', '.join(DIRECTIONS)}, got {self.direction!r}"
        if self.attention not in ATTENTIONS:
            return "attention", f"expected one of {', '.join(ATTENTIONS)}, got {self.attention!r}"
        if not isinstance(self.causal, bool | np.bool_):
            return "causal", f"expected True or False, got {self.causal!r}"
        for name in ("batch", "heads", "kv_heads", "head_dim", "seqlen"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                return name, f"expected a positive whole number, got {value!r}"
        return "", ""

    def limit_problem(self) -> tuple[str, str]:
        """(field, why) when a readable case (`shape_problem`) is larger than one prediction models, else ("", ""):
        its query rows and its keys each at most `MAX_QUERY_ROWS` (`ARCHSIM_MAX_GPU_ROWS`). A prefill has batch x
        heads x seqlen query rows; a decode batch x heads, each counted as the `DECODE_TILE_ROWS` it is computed in
        (a decode grid holds up to a CTA per query row, a prefill grid one per 16 or more), whatever its KV length.
        Its keys (batch x kv_heads x seqlen) bound what a plan sizes by the KV length. The field named is the
        largest factor of the product beyond the limit (`LIMIT_NAMING_ORDER` on a tie), the likeliest to be
        wrong. Its `head_dim` is a size within the size limit (`archsim.workload.max_size`), which keeps its FLOPs
        finite (a measured throughput is a time through them)."""
        queries = ((("batch", "heads"), DECODE_TILE_ROWS, f"query rows (a decode's row per batch and head, counted as "
                                                          f"the {DECODE_TILE_ROWS}-row tile it is computed in)")
                   if self.direction == "decode" else (("batch", "heads", "seqlen"), 1, "query rows"))
        limit = env_limit(MAX_QUERY_ROWS_ENV, MAX_QUERY_ROWS)
        for names, tile_rows, what in (queries, (("batch", "kv_heads", "seqlen"), 1, "keys")):
            sizes = [getattr(self, name) for name in names]
            count = math.prod(sizes) * tile_rows
            if count > limit:
                tile = f" x {tile_rows}" if tile_rows > 1 else ""
                largest = max((name for name in LIMIT_NAMING_ORDER if name in names), key=lambda n: getattr(self, n))
                shown = " x ".join(shown_number(size, "d") for size in sizes)
                return largest, (f"{' x '.join(names)}{tile} = {shown}{tile} = {shown_number(count, 'd')} "
                                 f"{what}, beyond the limit of {limit} on one modelled attention call (raise it with "
                                 f"the environment variable {MAX_QUERY_ROWS_ENV})")
        problem = size_limit_problem(self.head_dim, max_size())
        return ("head_dim", problem) if problem else ("", "")


@dataclass(frozen=True)
class Tile:
    """Work of one main-loop step of one CTA (one BLOCK_M x BLOCK_N tile)."""

    mma_flops: float  # tensor-core FLOPs, padded rows included
    exp_ops: float  # SFU exp2
    alu_ops: float  # FP32 pipe: max, add, mul, compares/selects of masks, conversions
    smem_bytes: float  # shared memory written and read
    load_bytes: float  # bytes the step brings in from L2/DRAM


@dataclass(frozen=True, eq=False, init=False)
class Segment:
    """`counts[i]` tiles of kind `tile` run by CTA i (CTAs in launch order). A grid that repeats one run of CTAs
    (one head's query blocks, for every head of the launch) is given as that run's counts and its `copies`
    (`Segment(tile, run, copies)`): the segment keeps the run (`run_counts`) and builds `counts` only when read. The
    timing reads the run (`tiled_launch_time`), so a grid of many copies is timed without a per-CTA array."""

    tile: Tile
    run_counts: np.ndarray = field(init=False)  # tiles of each CTA of one copy
    copies: int = field(init=False)  # copies of the run, end to end

    def __init__(self, tile: Tile, counts: np.ndarray, copies: int = 1) -> None:
        object.__setattr__(self, "tile", tile)
        object.__setattr__(self, "run_counts", counts)
        object.__setattr__(self, "copies", copies)

    @cached_property
    def counts(self) -> np.ndarray:
        """Tiles of each CTA of the launch: the run `copies` times end to end (the run itself for one copy)."""
        return self.run_counts if self.copies == 1 else np.tile(self.run_counts, self.copies)

    @property
    def ctas(self) -> int:
        return len(self.run_counts) * self.copies

    def tiles(self) -> float:
        """All its tiles, float(counts.sum()): whole-number counts summed over the run and multiplied by the copies
        (exact), others summed over `counts`."""
        if self.copies == 1 or self.run_counts.dtype.kind not in "iu":
            return float(self.counts.sum())
        return float(int(self.run_counts.sum()) * self.copies)


@dataclass(frozen=True, eq=False)
class TiledLaunch:
    """A kernel launch of CTAs that each step through tiles (FlashAttention's main loop): its `segments` (tile
    shapes and per-CTA counts), what one CTA holds on an SM (threads, shared memory, registers), and the DRAM and
    L2 bytes the whole launch moves; `tiled_launch_time` times it."""

    name: str
    segments: tuple[Segment, ...]
    threads: int  # per CTA
    smem_bytes: int  # per CTA
    register_words: float  # accumulator and fragment words (32-bit) per CTA
    mma: str  # "sync" (warp-level mma.sync) or "native" (the GPU's full-rate instruction)
    efficiency: str  # name of the family parameter: achieved fraction of the tensor peak in this main loop
    precision: str
    dram_bytes: float
    l2_bytes: float
    in_flight_tiles: int = 1  # tiles a CTA keeps loading ahead (pipeline stages); 0: none, a step waits its loads
    io_bytes: float = 0.0  # bytes a CTA loads before its main loop and stores after it (prologue, epilogue)
    softmax_overlap: bool = False  # the CTA runs one tile's softmax while the tensor cores run another's MMAs
    chained_mma: bool = False  # a tile's products each read the one before: its SMEM staging does not overlap them
    atomics: float = 0.0  # 32-bit atomic adds to global memory (resolved in L2), counted when `atomic_rate` is set
    atomic_rate: str | None = None  # family parameter: atomic adds the whole chip completes per clock

    @property
    def ctas(self) -> int:
        return self.segments[0].ctas


@dataclass(frozen=True)
class StreamLaunch:
    """A bandwidth-bound kernel; `efficiency` names a family parameter, or None for `DRAM_EFFICIENCY`."""

    name: str
    dram_bytes: float
    efficiency: str | None = None


@dataclass(frozen=True)
class GemmLaunch:
    """A vendor-library GEMM (cuBLAS), at the family's `gemm_efficiency` and `hbm_efficiency`."""

    name: str
    mma_flops: float
    dram_bytes: float
    precision: str


Launch = TiledLaunch | StreamLaunch | GemmLaunch


@dataclass(frozen=True)
class Plan:
    """The launches of one kernel call. `host_ops` > 0 for code issued op by op from Python (eager);
    `backward_from` is the index of the first launch of a backward run through PyTorch autograd; `held` names the
    (what, bytes) the plan keeps in DRAM at once besides the call's operands (`AttentionCase.operand_bytes`): the
    tensors a materialising plan allocates, none for a fused kernel."""

    name: str
    launches: tuple[Launch, ...]
    host_ops: int = 0
    backward_from: int | None = None
    held: tuple[tuple[str, float], ...] = ()

    @property
    def held_bytes(self) -> float:
        return sum(size for _, size in self.held)


@dataclass(frozen=True)
class LaunchResult:
    """One launch's time and what set it (`bound`), with its grid and the work it did (module docstring)."""

    name: str
    time_s: float
    bound: str  # what sets the time: schedule, dram, l2, compute, launch
    ctas: int = 0
    ctas_per_sm: int = 0
    mma_flops: float = 0.0
    exp_ops: float = 0.0
    alu_ops: float = 0.0
    smem_bytes: float = 0.0
    l2_bytes: float = 0.0
    dram_bytes: float = 0.0


def sequences_kv_bytes(case: AttentionCase, seqlens: Sequence[int] = ()) -> float:
    """K and V of a call (`AttentionCase.kv_bytes`), or of a varlen call's sequences of `seqlens` tokens (prompts
    packed as `case`, or a decode's requests each over its own keys, `case` at the longest), each sequence's own
    summed: linear in the tokens, a token's K and V (`case`'s over its batch x seqlen tokens) times theirs."""
    kv = case.kv_bytes()
    return kv // (case.batch * case.seqlen) * sum(seqlens) if seqlens else kv


@dataclass(frozen=True)
class GpuResult:
    """One prediction. `time_s` is the whole call; `flops` the benchmark-convention count (for TFLOPs/s): the
    case's, or for a varlen call (`seqlens`: the lengths of the prompts packed as `case`, or of a decode's requests)
    the sequences' own cases' summed, no attention across prompts, no padded keys counted."""

    kernel: str
    gpu: str
    case: AttentionCase
    feasible: bool
    reason: str
    time_s: float
    plan: str = ""
    launches: tuple[LaunchResult, ...] = field(default_factory=tuple)
    seqlens: tuple[int, ...] = ()

    @property
    def flops(self) -> float:
        if not self.seqlens:
            return self.case.flops()
        if self.case.direction == "decode":  # linear in each request's keys: a key's (exact) times theirs
            return self.case.flops() / (self.case.batch * self.case.seqlen) * sum(self.seqlens)
        return sum(replace(self.case, seqlen=n).flops() for n in self.seqlens)

    def total(self, attribute: str) -> float:
        return sum(getattr(lr, attribute) for lr in self.launches)


def gpu_record(result: GpuResult, gpu: GPU) -> Record:
    """The record every target writes (`archsim.record`) of one prediction on `gpu`. Energy is board power x time
    at the preset's TDP (`power_w`): an upper bound, the GPU model has no per-action energy. Area is not given
    (NaN): the presets carry no die area, and a die in a 5-7 nm node is not comparable with a 45 nm accelerator's
    without node scaling the model does not do. Busy: the tensor cores for the call's FLOPs at peak."""
    precision = result.case.precision
    rated = result.feasible and gpu.has_rate(precision)
    tensor_s = result.flops / gpu.tensor_peak_flops_per_s(precision) if rated else NAN
    return Record("gpu", gpu.name, result.feasible, result.reason, result.time_s,
                  gpu.power_w * result.time_s * PJ_PER_J, NAN, result.total("dram_bytes"), {"tensor_cores": tensor_s})


def infeasible(kernel: str, gpu: GPU, case: AttentionCase, reason: str, seqlens: Sequence[int] = ()) -> GpuResult:
    """The result of a kernel that cannot run the case (a varlen call's: `seqlens`, `GpuResult`) on `gpu`:
    infeasible, with the reason, its time NaN."""
    return GpuResult(kernel, gpu.name, case, False, reason, math.nan, seqlens=tuple(seqlens))


def ctas_per_sm(launch: TiledLaunch, gpu: GPU) -> int:
    """Occupancy: resident CTAs per SM by shared memory, registers and threads (0 = does not fit)."""
    return min(MAX_CTAS_PER_SM, *_ctas_by_resource(launch, gpu))


def _ctas_by_resource(launch: TiledLaunch, gpu: GPU) -> tuple[int, int, int]:
    """The CTAs an SM's shared memory (each CTA's own and the 1 KB CUDA reserves per block from compute capability
    8.0: `GPU.smem_ctas_per_sm`), registers and threads each hold."""
    return (gpu.smem_ctas_per_sm(launch.smem_bytes), gpu.regfile_bytes_per_sm // _register_bytes(launch),
            gpu.max_threads_per_sm // launch.threads)


def _register_bytes(launch: TiledLaunch) -> int:
    regs = min(MAX_REGS_PER_THREAD, REG_BASE_PER_THREAD + math.ceil(launch.register_words / launch.threads))
    return 4 * regs * launch.threads


def tile_times_s(tile: Tile, launch: TiledLaunch, gpu: GPU, efficiency: float) -> tuple[float, float]:
    """(MMA phase, softmax phase) of one tile with the SM to itself. The MMA phase is max(tensor, SMEM), or their
    sum for a launch whose products form a chain (`chained_mma`: each product's operands are staged through SMEM
    from the one before, so neither hides the other); the softmax phase the longer of the SFU (exp) and FP32 pipes,
    which overlap."""
    rate = gpu.tensor_peak_flops_per_s(launch.precision) / gpu.sm_count * efficiency
    if launch.mma == "sync":
        rate *= gpu.sync_mma_fraction
    tensor_s = tile.mma_flops / rate
    smem_s = tile.smem_bytes / (gpu.smem_bytes_per_clock_per_sm * gpu.clock_hz)
    softmax_s = max(tile.exp_ops / gpu.exp_per_clock_per_sm, tile.alu_ops / gpu.fp32_lanes_per_sm) / gpu.clock_hz
    return (tensor_s + smem_s if launch.chained_mma else max(tensor_s, smem_s)), softmax_s


def step_time_s(tile: Tile, launch: TiledLaunch, gpu: GPU, efficiency: float, resident: int) -> float:
    """One tile step of a CTA sharing its SM with `resident` - 1 others: the tensor cores (and SMEM) and the
    softmax pipes are each shared, and a CTA's softmax follows its own MMAs, not hidden by the others' (module
    docstring: the fitted rows favour this over full hiding); never faster than the DRAM latency
    over the tiles it keeps in flight, and a CTA that keeps none (`in_flight_tiles` 0: a one-stage pipeline) waits
    one latency every step. A launch with `softmax_overlap` hides the softmax under the MMAs (or the
    reverse): the busier of the two pipes sets the step."""
    mma_s, softmax_s = tile_times_s(tile, launch, gpu, efficiency)
    serial_s = 0.0 if launch.softmax_overlap else softmax_s
    if launch.in_flight_tiles == 0:  # nothing loaded ahead: each step waits one DRAM latency for its own tiles
        return max(resident * mma_s + serial_s, resident * softmax_s) + gpu.dram_latency_s
    return max(resident * mma_s + serial_s, resident * softmax_s, gpu.dram_latency_s / launch.in_flight_tiles)


def cta_overhead_s(launch: TiledLaunch, gpu: GPU, overhead_cycles: float) -> float:
    """Time of a CTA outside its main loop: the calibrated cycles, one DRAM latency to fill the pipeline, and the
    prologue/epilogue tiles moved at the SM's share of L2 bandwidth."""
    return (overhead_cycles / gpu.clock_hz + gpu.dram_latency_s
            + launch.io_bytes / (gpu.l2_bytes_per_s / gpu.sm_count))


def makespan_s(durations: np.ndarray, slots: int) -> float:
    """Finish time of CTAs dispatched in launch order, each to the slot that frees first (greedy list
    scheduling, what the block scheduler does). Uniform durations reduce to ceil(n / slots) x duration. A
    schedule of at most `MAKESPAN_MEMO_CTAS` float64 durations is remembered by their bytes (a serving run asks
    for the same decode grid at every context of a key block)."""
    if len(durations) <= MAKESPAN_MEMO_CTAS and durations.dtype == np.float64:
        return _remembered_makespan_s(durations.tobytes(), slots)
    return _list_schedule_s(durations, slots)


@lru_cache(maxsize=1024)
def _remembered_makespan_s(durations: bytes, slots: int) -> float:
    """`_list_schedule_s` of float64 durations given as their bytes (pure; memoised)."""
    return _list_schedule_s(np.frombuffer(durations), slots)


WAVE_MIN_CTAS = 64  # a wave of fewer CTAs is scheduled on the heap: numpy's calls cost more than its steps


def _list_schedule_s(durations: np.ndarray, slots: int) -> float:
    """Greedy list scheduling: each CTA in turn takes the slot that frees first. The slots' free times are a
    multiset that each CTA changes by taking out its least and putting back that plus its duration (which of equal
    slots it takes changes nothing), so CTAs are placed in waves: with the free times sorted f_1 <= f_2 <= ..., the
    next k CTAs take f_1..f_k in turn when every f_j + d_j (j < k) is at least f_k (none of them is less than the
    next one taken), the same sums as one CTA at a time; a wave of fewer than `WAVE_MIN_CTAS` runs on a heap."""
    n = len(durations)
    if n == 0:
        return 0.0
    if (durations == durations[0]).all():
        return math.ceil(n / slots) * float(durations[0])
    if slots < WAVE_MIN_CTAS or not np.isfinite(durations).all():  # NaN or inf: the heap, as before
        return max(_heap_schedule(np.zeros(min(slots, n)), durations))
    free = np.zeros(min(slots, n))  # sorted
    placed = 0
    while placed < n:
        m = min(len(free), n - placed)
        ends = free[:m] + durations[placed:placed + m]
        fits = np.minimum.accumulate(ends[:-1]) >= free[1:m]  # fits[k - 2]: the first k CTAs take f_1..f_k
        k = m if fits.all() else int(fits.argmin()) + 1
        if k < WAVE_MIN_CTAS:
            k = min(len(free), n - placed)
            free = np.sort(_heap_schedule(free, durations[placed:placed + k]))
        else:
            free = np.sort(np.concatenate((ends[:k], free[k:])))
        placed += k
    return float(free.max())


def _heap_schedule(free: np.ndarray, durations: np.ndarray) -> list[float]:
    """The slots' free times (`free`, sorted) after the CTAs of `durations` in turn each take the least."""
    heap = free.tolist()  # sorted, so a heap
    for duration in durations.tolist():
        heapq.heapreplace(heap, heap[0] + duration)
    return heap


def schedule_s(launch: TiledLaunch, gpu: GPU, params: Mapping[str, float], k: int, floor: float = 0.0) -> float:
    """The best of the launch's static schedules at occupancies k, k - 1, ..., 1 (module docstring): its CTAs
    list-scheduled over SMs x occupancy slots, each sharing its SM with the others resident (`step_time_s`; a grid
    smaller than the slots is spread one CTA per SM first). An occupancy whose lower bound (its longest CTA, or its
    work spread evenly over the slots) is no better than the best so far is not scheduled: the occupancies whose
    CTAs are timed one by one are scheduled in the order of their bounds, so the first is most often the best and
    the others are bounded out (the best is the least schedule whatever the order). A launch whose CTAs all run the
    same tiles (a rectangle timed as many square calls, say) is timed from one CTA (`_uniform_schedule_s`), and one
    whose segments repeat a run of CTAs (`Segment.copies`) from the run (`_cta_durations_s`), to the same floats.
    A schedule timed CTA by CTA is remembered by what it reads (`_walked_key`). `floor`: the longest of the
    launch's other bounds, which the caller sets against the schedule: where some occupancy's list schedule is
    shown shorter, being no longer than its work spread over the slots plus its longest CTA (Graham's bound: the
    CTA that ends last started when every slot had been busy since 0), that bound is returned, below `floor`,
    without scheduling."""
    ctas = launch.ctas
    if ctas == 0:
        return 0.0
    overhead_s = cta_overhead_s(launch, gpu, params["cta_overhead_cycles"])
    efficiency = params[launch.efficiency]
    uniform = _uniform_counts(launch)
    best = math.inf
    walked = []  # the occupancies timed CTA by CTA
    for occupancy in range(k, 0, -1):
        resident = min(occupancy, math.ceil(ctas / gpu.sm_count))
        if uniform is not None:
            one_s = overhead_s  # the same additions as each element of the per-CTA array below
            for seg, count in zip(launch.segments, uniform, strict=True):
                one_s = one_s + count * step_time_s(seg.tile, launch, gpu, efficiency, resident)
            if math.isfinite(one_s):
                best = _uniform_schedule_s(one_s, ctas, gpu.sm_count * occupancy, best)
                continue
        walked.append(occupancy)
    if not walked:
        return best
    _check_walked(launch)
    key = _walked_key(launch, gpu, params, k)
    found = _WALKED.get(key)
    if found is not None:
        return found
    times_at: dict[int, np.ndarray] = {}  # CTAs resident an SM -> the CTAs' times, kept for a grid of few CTAs

    def durations_at(occupancy: int) -> np.ndarray:
        resident = min(occupancy, math.ceil(ctas / gpu.sm_count))
        found = times_at.get(resident)
        if found is None:
            found = _cta_durations_s(launch, overhead_s, [step_time_s(seg.tile, launch, gpu, efficiency, resident)
                                                          for seg in launch.segments])
            if ctas <= MAKESPAN_MEMO_CTAS:
                times_at[resident] = found
        return found

    bounds = []  # (lower bound, occupancy)
    for occupancy in walked:
        durations = durations_at(occupancy)
        if durations.shape != (ctas,):
            durations = np.broadcast_to(durations, (ctas,))
        longest, spread = float(durations.max()), float(durations.sum()) / (gpu.sm_count * occupancy)
        if longest + spread < floor:
            return min(best, longest + spread)
        bounds.append((max(longest, spread), occupancy))
    for bound, occupancy in sorted(bounds):
        if bound >= best:
            break  # and every later one's
        best = min(best, makespan_s(durations_at(occupancy), gpu.sm_count * occupancy))
    _WALKED[key] = best
    trim(_WALKED, WALKED_MEMO_LAUNCHES)
    return best


def _walked_key(launch: TiledLaunch, gpu: GPU, params: Mapping[str, float], k: int) -> tuple:
    """What `schedule_s` reads of a launch whose CTAs it times one by one, of `gpu` (by value: `_gpu_key`), of
    `params` and of the occupancy `k`: a grid of the same tiles and counts, however built, has the same schedule."""
    return (_gpu_key(gpu), params["cta_overhead_cycles"], params[launch.efficiency], k, launch.io_bytes,
            launch.precision, launch.mma, launch.chained_mma, launch.softmax_overlap, launch.in_flight_tiles,
            tuple((seg.tile, seg.copies, seg.run_counts.dtype.str, len(seg.run_counts),
                   hashlib.blake2b(seg.run_counts.tobytes(), digest_size=32).digest()) for seg in launch.segments))


@per_object(64)
def _gpu_key(gpu: GPU) -> str:
    """A GPU preset by value (every field, as `repr` writes it; the spec is frozen): equal presets loaded apart
    share what is remembered of them."""
    return repr(gpu)


def _check_walked(launch: TiledLaunch) -> None:
    """Refuse a launch of more CTAs than `schedule_s` times one by one (`MAX_WALKED_CTAS`, ARCHSIM_MAX_GPU_CTAS)."""
    limit = env_limit(MAX_WALKED_CTAS_ENV, MAX_WALKED_CTAS)
    if launch.ctas > limit:
        raise LimitError("<python>", f"launch {launch.name}",
                         f"{shown_number(launch.ctas, 'd')} CTAs of unequal work (a causal grid's, say), timed one by "
                         f"one, beyond the limit of {limit} on one schedule (raise it with the environment variable "
                         f"{MAX_WALKED_CTAS_ENV})")


def _cta_durations_s(launch: TiledLaunch, overhead_s: float, steps_s: list[float]) -> np.ndarray:
    """Each CTA's time: `overhead_s` + each segment's tiles x its step (`steps_s`, one per segment), added segment by
    segment. Where every segment repeats a run of one length the same number of times (`Segment.copies`), the run's
    times copied end to end: the same additions, CTA by CTA."""
    runs = {(len(seg.run_counts), seg.copies) for seg in launch.segments}
    copied = len(runs) == 1 and launch.segments[0].copies > 1
    cta_s = overhead_s
    for seg, step_s in zip(launch.segments, steps_s, strict=True):
        cta_s = cta_s + (seg.run_counts if copied else seg.counts) * step_s
    return np.tile(cta_s, launch.segments[0].copies) if copied else cta_s


def _uniform_counts(launch: TiledLaunch) -> tuple[float, ...] | None:
    """Each segment's tiles per CTA as the float64 that `counts * step` multiplies, when every CTA runs the same
    (integer or float64 counts); else None. Read from each segment's run: its copies hold the same counts."""
    uniform = []
    for seg in launch.segments:
        counts = seg.run_counts
        if counts.dtype.kind not in "iu" and counts.dtype != np.float64:
            return None
        first = counts[0]
        if counts.min() != first or counts.max() != first:
            return None
        uniform.append(float(first))
    return tuple(uniform)


UNIFORM_SUM_MARGIN = 1e-6  # above the relative error of numpy's sum of fewer than UNIFORM_SUM_CTAS equal terms
UNIFORM_SUM_CTAS = 10**9  # (n - 1) x 2^-53 < 1.2e-7


def _uniform_schedule_s(cta_s: float, ctas: int, slots: int, best: float) -> float:
    """`schedule_s`'s best after an occupancy of `ctas` CTAs of `cta_s` each on `slots` slots, without the per-CTA
    array: the same bound test and `_list_schedule_s`'s closed form ceil(n / slots) x cta_s. The bound's sum (numpy's
    of the n equal durations) decides only when this occupancy would improve on `best` and n x cta_s / slots comes
    within `UNIFORM_SUM_MARGIN` of it; then it is summed over the array as the loop sums it."""
    makespan = math.ceil(ctas / slots) * cta_s
    if cta_s >= best or makespan >= best:  # bounded out, or no better: best stays either way
        return best
    if ctas < UNIFORM_SUM_CTAS and ctas * cta_s / slots * (1 + UNIFORM_SUM_MARGIN) < best:
        return makespan
    return best if float(np.full(ctas, cta_s).sum()) / slots >= best else makespan


def tiled_launch_time(launch: TiledLaunch, gpu: GPU, params: Mapping[str, float]) -> LaunchResult:
    """The slowest of the launch's bounds, plus the launch overhead `launch_s`: its CTAs' schedule at the best
    occupancy (`schedule_s`), its DRAM bytes at `dram_efficiency` of the peak, its L2 bytes, and its atomics where
    it has any; with the work its tiles did."""
    k = ctas_per_sm(launch, gpu)
    totals = {"mma_flops": 0.0, "exp_ops": 0.0, "alu_ops": 0.0, "smem_bytes": 0.0}
    for seg in launch.segments:
        tiles = seg.tiles()
        for name in totals:
            totals[name] += tiles * getattr(seg.tile, name)
    others = {"dram": launch.dram_bytes / (gpu.dram_bytes_per_s * dram_efficiency(gpu)),
              "l2": launch.l2_bytes / gpu.l2_bytes_per_s}
    if launch.atomic_rate:
        others["atomics"] = launch.atomics / (params[launch.atomic_rate] * gpu.clock_hz)
    # a schedule shown shorter than another bound is not worked out (`schedule_s`'s floor): that bound is the time
    bounds = {"schedule": schedule_s(launch, gpu, params, k, max(others.values())), **others}
    bound = max(bounds, key=bounds.get)
    return LaunchResult(launch.name, bounds[bound] + params["launch_s"], bound, launch.ctas, k,
                        l2_bytes=launch.l2_bytes, dram_bytes=launch.dram_bytes, **totals)


def copy_fraction(gpu: GPU) -> float:
    """The share of DRAM peak a copy reaches on `gpu`: its preset's measured `dram_copy_fraction`, else the H100/H200
    measurement (`TRANSFERRED_COPY_FRACTION`)."""
    return TRANSFERRED_COPY_FRACTION if gpu.dram_copy_fraction is None else gpu.dram_copy_fraction


def dram_efficiency(gpu: GPU) -> float:
    """The share of DRAM peak a kernel's streams reach on `gpu`: `DRAM_EFFICIENCY`, measured on H100 and H200, scaled
    by the GPU's copy fraction over theirs (MI300X's 0.81: 0.81 x 0.90 / 0.896; a GPU without a measured fraction
    takes the H100/H200 value, so 0.90), and never above 1: no kernel streams faster than the DRAM's peak, whatever a
    file's measured copy fraction (one above 0.896 had scaled 0.90 past it: 1.0045 at a fraction of 1)."""
    return min(1.0, DRAM_EFFICIENCY * (copy_fraction(gpu) / TRANSFERRED_COPY_FRACTION))


def stream_launch_time(launch: StreamLaunch, gpu: GPU, params: Mapping[str, float]) -> LaunchResult:
    """A bandwidth-bound launch (a copy, an eager elementwise op, a backward preprocess): its DRAM bytes at
    `dram_efficiency` of the peak or at the family's fitted fraction, plus `launch_s`."""
    efficiency = dram_efficiency(gpu) if launch.efficiency is None else params[launch.efficiency]
    dram_s = launch.dram_bytes / (gpu.dram_bytes_per_s * efficiency)
    return LaunchResult(launch.name, dram_s + params["launch_s"], "dram", dram_bytes=launch.dram_bytes)


def gemm_launch_time(launch: GemmLaunch, gpu: GPU, params: Mapping[str, float]) -> LaunchResult:
    """A library GEMM (cuBLAS, an eager matmul): the longer of its FLOPs at `gemm_efficiency` of the tensor peak
    and its DRAM bytes at `hbm_efficiency` of the bandwidth (a roofline), plus `launch_s`."""
    compute_s = launch.mma_flops / (gpu.tensor_peak_flops_per_s(launch.precision) * params["gemm_efficiency"])
    dram_s = launch.dram_bytes / (gpu.dram_bytes_per_s * params["hbm_efficiency"])
    return LaunchResult(launch.name, max(compute_s, dram_s) + params["launch_s"],
                        "compute" if compute_s >= dram_s else "dram", mma_flops=launch.mma_flops,
                        dram_bytes=launch.dram_bytes)


def launch_time(launch: Launch, gpu: GPU, params: Mapping[str, float]) -> LaunchResult:
    """Time one launch by its kind: tiled, streaming or GEMM."""
    if isinstance(launch, TiledLaunch):
        return tiled_launch_time(launch, gpu, params)
    if isinstance(launch, StreamLaunch):
        return stream_launch_time(launch, gpu, params)
    return gemm_launch_time(launch, gpu, params)


def plan_feasibility(plan: Plan, gpu: GPU) -> str:
    """Why a plan cannot run on `gpu` ("" when it can)."""
    for launch in plan.launches:
        if isinstance(launch, TiledLaunch) and ctas_per_sm(launch, gpu) == 0:
            needs = (f"{launch.smem_bytes} B of shared memory; {_smem_limit_text(gpu)}",
                     f"{_register_bytes(launch)} B of registers; {gpu.name} has {gpu.regfile_bytes_per_sm} B per SM",
                     f"{launch.threads} threads; {gpu.name} has {gpu.max_threads_per_sm} per SM")
            short = [need for fits, need in zip(_ctas_by_resource(launch, gpu), needs, strict=True) if not fits]
            return f"{launch.name}: a CTA needs {', and '.join(short)}"
    return ""


def _smem_limit_text(gpu: GPU) -> str:
    """What shared memory `gpu` gives a CTA, for a refusal: its per-block maximum and why, where CUDA reserves some
    per block (`GPU.smem_bytes_per_block`), else its per-SM size."""
    reserved = gpu.smem_reserved_bytes_per_block
    per_sm = f"{gpu.name} has {gpu.smem_bytes_per_sm} B per SM"
    if not reserved:
        return per_sm
    return f"{per_sm}, at most {gpu.smem_bytes_per_block} B a block (CUDA reserves {reserved} B per block)"


def plan_memory_problem(plan: Plan, case: AttentionCase, gpu: GPU, room: tuple[float, str] | None = None,
                        seqlens: Sequence[int] = ()) -> str:
    """Why `plan` cannot hold what it needs at once in `gpu`'s DRAM, or in `room` when given ((bytes, what they
    are): a serving engine's memory its weights leave, `archsim.systems.gpu_device`) ("" when it can): the call's
    operands (`AttentionCase.operand_bytes`; a varlen call's, `seqlens`, Q and O the case's and K and V its
    sequences' own, `sequences_kv_bytes`) plus what the plan holds besides (`Plan.held`: a padded batch's padding
    among them). A lower bound: allocator slack, workspaces and the framework's own buffers come on top."""
    operands = case.operand_bytes() - case.kv_bytes() + sequences_kv_bytes(case, seqlens)
    held = plan.held_bytes
    if operands + held <= (gpu.dram_bytes if room is None else room[0]):
        return ""
    grads = " and their gradients" if case.direction in ("bwd", "fwd+bwd") else ""
    beyond = f"beyond {gpu.name}'s {capacity_text(gpu.dram_bytes)} of DRAM" if room is None else f"beyond {room[1]}"
    if not plan.held:
        return f"its Q, K, V and O{grads} alone take {operands / 1e9:.1f} GB, {beyond}"
    parts = [f"{what} ({size / 1e9:.1f} GB)" for what, size in (("its Q, K, V and O" + grads, operands), *plan.held)]
    return (f"{plan.name} holds at once {', '.join(parts[:-1])} and {parts[-1]}: {(operands + held) / 1e9:.1f} GB, "
            f"{beyond}")


def plan_problem(plan: Plan, case: AttentionCase, gpu: GPU, room: tuple[float, str] | None = None,
                 seqlens: Sequence[int] = ()) -> str:
    """Why `plan` cannot run `case` (a varlen call's: `seqlens`) on `gpu` ("" when it can): what it holds at once
    does not fit the DRAM, or `room` when given (`plan_memory_problem`), or a CTA does not fit an SM
    (`plan_feasibility`)."""
    return plan_memory_problem(plan, case, gpu, room, seqlens) or plan_feasibility(plan, gpu)


def runnable_plans(case: AttentionCase, gpu: GPU, plans: tuple[Plan, ...], check_memory: bool = True,
                   room: tuple[float, str] | None = None, seqlens: Sequence[int] = ()) -> tuple[Plan, ...] | str:
    """The alternatives among `plans` that can run `case` (a varlen call's: `seqlens`) on `gpu` (`plan_problem`,
    within `room` when given), or why the first cannot; without `check_memory`, those whose CTAs fit an SM
    (`plan_feasibility`), however much DRAM the call holds (a reference time of a call no one GPU holds)."""
    if check_memory:
        runnable = tuple(p for p in plans if not plan_problem(p, case, gpu, room, seqlens))
        return runnable or plan_problem(plans[0], case, gpu, room, seqlens)
    runnable = tuple(p for p in plans if not plan_feasibility(p, gpu))
    return runnable or plan_feasibility(plans[0], gpu)


def plan_time(plan: Plan, gpu: GPU, params: Mapping[str, float]) -> tuple[float, tuple[LaunchResult, ...]]:
    """A plan's launches one after another (the GPU idling until autograd reaches the backward, `autograd_s`),
    or the host's op issue time when that is longer; with each launch's result."""
    results = tuple(launch_time(launch, gpu, params) for launch in plan.launches)
    device_s = sum(r.time_s for r in results)
    if plan.backward_from is not None:  # the GPU idles until autograd reaches the backward, unless still busy
        device_s += max(0.0, params["autograd_s"] - sum(r.time_s for r in results[:plan.backward_from]))
    return max(device_s, plan.host_ops * params.get("host_op_s", 0.0)), results


def predict_plans(kernel: str, case: AttentionCase, gpu: GPU, plans: tuple[Plan, ...] | str,
                  params: Mapping[str, float], check_memory: bool = True, seqlens: Sequence[int] = ()) -> GpuResult:
    """Time the alternatives a family offers that can run (`runnable_plans`; a reason string when there are none,
    or when the family has none) and keep the fastest. `seqlens`: the sequences of a varlen call (`case` packing
    its prompts, or a decode's requests at the longest: `gpu_kernels.varlen_plans`), whose own K and V the memory
    check and whose own FLOPs the result count."""
    runnable = plans if isinstance(plans, str) else runnable_plans(case, gpu, plans, check_memory, seqlens=seqlens)
    if isinstance(runnable, str):
        return infeasible(kernel, gpu, case, runnable, seqlens)
    timed = [(plan_time(p, gpu, params), p) for p in runnable]
    (time_s, results), best = min(timed, key=lambda item: item[0][0])
    return GpuResult(kernel, gpu.name, case, True, "", time_s, best.name, results, tuple(seqlens))
