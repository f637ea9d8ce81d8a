"""Multi-device attention: one layer's attention (or whole layer) of one long sequence cut over P devices, timed.

A `ParallelSpec` (`archsim.systems.seqpar_spec`: the spec, its rules and its checks) names a scheme, P devices of a
GPU preset placed on a topology (`archsim.systems.topology`), a workload, the sequence length and the direction;
`parallel_time(spec)` returns a `ParallelResult`: time per layer, the busiest device's compute, the scheme's
communication and how much of it is exposed, the time that device waits on another's compute (LASP-1's chain;
`archsim.systems.seqpar_schemes`: each scheme's timing and its assumptions), memory per device and the largest
context that fits (`archsim.systems.seqpar_memory`, plus the attention kernel's own buffers: eager attention's
score matrices and mask; `_memory`).

Memory per device of a decode step is what it holds: the weights and the KV cache of
`seqpar_memory.inference_memory(..., decode=True)`, without the prefill's working set (a step's own activations,
one token per sequence, and a ring's K/V block in flight are not counted: megabytes beside the cache).

A training step (`fwd+bwd`) with `checkpointing` "layer" (the default: the Ring Attention paper's, each layer's
input kept) recomputes each layer's forward before its backward, its transfers included (a ring's forward hops run
again): the time adds the `fwd` twin's, reported as `recompute_s` (`_timing`); "none" keeps every activation and
recomputes nothing. The training precision sets the memory only: the time is the bf16 kernels' and transfers' at
either (`seqpar_spec`'s rules: for fp32 a lower bound).

A hybrid model under `lasp2h` (LASP-2H, `seqpar_spec.HYBRID_SCHEMES`) is timed layer by layer: its linear layers as
`lasp2` and its softmax layers as `allgather` (`Workload`'s `attention_view`: the same sizes, devices, topology,
kernel and direction), and a `ParallelResult` is one layer, so its time, compute, communication and wait are each
the mean over the model's layers weighted by their counts (`attention_layers`): (n_linear x lasp2's + n_softmax x
allgather's) / layers, and layers x the time per layer (reproduce's model time and throughput) is the sum over the
layers. Its memory is the whole model's (`seqpar_memory`'s lasp2h: each kind's KV cache or states, the larger
working set; the gathered K and V of its softmax layers, as allgather's).

On arrays (a topology whose devices are `topology.ArrayDevice`) the forward attention of the softmax schemes is
timed with each block through the analytical model (`seqpar_compute.ArrayCompute`), the same schedules and links;
memory is NaN where the array's DRAM is unbounded.

Energy (`ParallelResult.energy_j`, the record's `energy`) is every device's over the layer: P x tp devices for the
layer's whole time, a device waiting on a link counted too; the links' own energy is not counted. On a GPU, its board
power (`system_types.board_power_w`: the preset's TDP, `power_w`) x the time x P x tp (an upper bound: the GPU model has
no per-action energy). On arrays, each device's blocks' energies (each block's Result: the array's actions and its
memories' leakage over the block's cycles, all its heads and padded squares, as its time counts them;
`ArrayCompute.attention_j`) plus its leakage while it runs no block (`ArrayCompute.idle_w` x the layer's time less the
device's blocks' time), summed over the P devices (`_device_blocks`: each device's blocks, the schemes' layouts) and x
tp; compute units' leakage, which the architecture leaves out, is not in it.

`ideal_s` is the same work on one device divided by the devices (the issue's definition): the one-GPU run (ring's
P = 1 form, lasp2's for the LASP schemes, lasp2h's own for a hybrid model: lasp2's and allgather's one-device runs
per layer, count-weighted, no tensor parallelism) with the same kernel and scope, over P x tp GPUs,
at every P including 1 (allgather on one device is that run), so a TP group's all-reduces and replicated work count
against the efficiency. A one-device run of a length whose kernel call exceeds the
GPU's DRAM is still timed (`seqpar_compute.DeviceCompute`, `check_memory` False: only the DRAM check is left out);
the devices' own calls must fit. The reference is the kernel's real one-device call: with a kernel that computes
the masked scores of a causal call (eager "PyTorch standard attention" pays the upper triangle and builds the mask)
it costs a full call or more, while ring, zigzag, allgather and usp skip the blocks above the diagonal (stripe pays
them on P smaller calls), so their efficiency can exceed 1. The reference is kept the kernel's real one-device time,
not made "consistent", and such a point carries a `note` (text output: a line under the table) saying so, with the
share of a full call's time its one-device causal call takes.

The largest context that fits is searched up to the size limit (ARCHSIM_MAX_SIZE), P x it for ring, zigzag and
stripe, whose devices hold N / P tokens each (`seqpar_memory.size_limit_tokens`); a value the search stopped at the
limit, not at the GPU's memory, is a floor, and its point's `note` says so (joined to the efficiency's by "; ").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from archsim.arch.gpu import GPU
from archsim.errors import SpecError
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import causal_name_problem, plans
from archsim.outputs import beyond_text, capacity_text
from archsim.record import PJ_PER_J, Record
from archsim.systems import seqpar_memory as mem
from archsim.systems.seqpar_compute import (
    LINEAR_BLOCK,
    SOURCE,
    ArrayCompute,
    BeyondDram,
    DeviceCompute,
    one_word_size,
)
from archsim.systems.seqpar_schemes import (
    SCHEME_TIMINGS,
    Block,
    Timing,
    busy_s,
    decode,
    dense,
    device_blocks,
    distinct_blocks,
    group_members,
    kv_bytes,
    scheme_link,
)
from archsim.systems.seqpar_spec import (
    HYBRID_SCHEMES,
    LASP_SCHEMES,
    LINEAR_SCHEMES,
    ParallelSpec,
    check_spec,
    max_devices,
    memory_modelled,
    single_device_scheme,
    token_multiple,
)
from archsim.systems.sharding import kv_heads_per_device
from archsim.systems.system_types import Device, board_power_w
from archsim.systems.topology import ArrayDevice
from archsim.workload import attention_layers, attention_view, max_size


@dataclass(frozen=True)
class ParallelResult:
    """One layer. `compute_s` is the busiest device's compute; `comm_s` the scheme's transfers as if alone on the
    link; `wait_s` the time that device waits on another device's compute (a LASP-1 device waiting on the chain's
    earlier hops' products, `seqpar_schemes.chain_idle_s`; 0 for the other schemes); `exposed_comm_s` what the time
    has beyond that compute and wait, the transfers not hidden (no more than `comm_s`), and `hidden_comm_s` the
    rest of `comm_s`: time = compute + exposed + wait. A training step with layer checkpointing recomputes the
    layer's forward: `recompute_s` is that forward's time, its compute, transfers and wait counted in the others
    (`_timing`). Memory per device and the largest context from `seqpar_memory` and the kernel's buffers
    (`_memory`; NaN / 0 when that model does not cover the case), and of that memory the weights. A point whose
    memory per device exceeds the GPU's, or one of whose kernel calls the GPU model refuses for its DRAM
    (`refusal`), is infeasible, with the reason; its times are still those the model computes (as an analytical
    point whose tiles overflow a level; such calls timed without the DRAM check, `_timed`)."""

    spec: ParallelSpec
    time_s: float
    compute_s: float
    comm_s: float
    wait_s: float
    ideal_s: float
    memory_bytes: float
    max_context_tokens: float  # whole tokens; NaN where the memory is not modelled
    weights_bytes: float = math.nan
    # why the efficiency is above 1, or missing, and a largest context the size limit capped ('' when none; module
    # docstring)
    note: str = ""
    energy_j: float = math.nan  # every device's energy over the layer (module docstring, "Energy")
    recompute_s: float = 0.0  # of time_s, the recomputed forward of a training step (`_timing`; 0: none)
    refusal: str = ""  # why a kernel call of the point does not fit the GPU's DRAM ('' when all do; `_timed`)

    @classmethod
    def blank(cls, spec: ParallelSpec) -> ParallelResult:
        """`spec` with no numbers (every time, memory and context NaN): a point the model rejects."""
        nan = math.nan
        return cls(spec, time_s=nan, compute_s=nan, comm_s=nan, wait_s=nan, ideal_s=nan, memory_bytes=nan,
                   max_context_tokens=nan)

    @property
    def beyond_memory(self) -> bool:
        """Whether the memory per device exceeds the GPU's."""
        return self.memory_bytes > self.spec.gpu.dram_bytes  # NaN (memory not modelled) is not a refusal

    @property
    def feasible(self) -> bool:
        return not (self.beyond_memory or self.refusal)

    @property
    def reason(self) -> str:
        """Why the point is infeasible ('' when it is not): its memory per device against the GPU's, else the
        kernel call that does not fit the GPU's DRAM (where the memory is not modelled, or counts less)."""
        if not self.beyond_memory:
            return self.refusal
        fits = (f"the largest context that fits is {self.max_context_tokens} tokens" if self.max_context_tokens
                else "no context fits")
        return (f"memory per device {beyond_text(self.memory_bytes, self.spec.gpu.dram_bytes)} "
                f"({self.weights_bytes / 1e9:.1f} GB of "
                f"weights) exceeds {self.spec.gpu.name}'s {capacity_text(self.spec.gpu.dram_bytes)}; {fits}")

    @property
    def exposed_comm_s(self) -> float:
        return _above_rounding(self.time_s - self.compute_s - self.wait_s, self.time_s)

    @property
    def hidden_comm_s(self) -> float:
        return _above_rounding(self.comm_s - self.exposed_comm_s, self.time_s)

    @property
    def efficiency(self) -> float:
        return self.ideal_s / self.time_s if self.time_s > 0 else math.nan

    def record(self) -> Record:
        s = self.spec
        link = scheme_link_name(s)
        training = s.direction == "fwd+bwd"  # the training settings and the recomputed forward (null else)
        config = {"scheme": s.scheme, "devices": s.devices, "tp": s.tp, "ulysses": s.ulysses, "gpu": s.gpu.name,
                  "kernel": s.attention_kernel, "topology": s.topology.name, "link": link, "model": s.workload.name,
                  "seq_len": s.seq_len, "batch": s.batch,
                  "causal": s.causal, "direction": s.direction, "scope": s.scope,
                  "checkpointing": s.checkpointing if training else None,
                  "training_precision": s.training_precision if training else None}
        extras = {"compute_s": self.compute_s, "recompute_s": self.recompute_s if training else None,
                  "comm_s": self.comm_s, "exposed_comm_s": self.exposed_comm_s, "wait_s": self.wait_s,
                  "ideal_s": self.ideal_s,
                  "efficiency": self.efficiency, "memory_bytes": self.memory_bytes,
                  "max_context_tokens": self.max_context_tokens, "note": self.note}
        busy = {"compute": self.compute_s}  # the busiest device's compute, its unit named by role
        return Record("parallel", s.label, self.feasible, self.reason, self.time_s, self.energy_j * PJ_PER_J,
                      busy_s=busy, config=config, extras=extras)


def scheme_link_name(spec: ParallelSpec) -> str:
    """The link the sequence-parallel group talks over, as its timing takes it (`seqpar_schemes.scheme_link`: a
    collective scheme's NCCL channels, "ib-ndr-400g x 8"); for LASP-1's chain, whose hops each take their own link,
    the links and how many hops each ("nvlink3-a100 x 56, ib-hdr-200g x 7"); '' for a group the topology cannot
    hold or of more devices than a point may have (`seqpar_spec.max_devices`): the row of a refused point, whose
    reason names --devices, and whose group is not listed (16 million devices took 22 s); '' too on a topology of
    one device and no link."""
    if spec.devices > max_devices():
        return ""
    members = group_members(spec.devices, spec.tp)
    capacity = spec.topology.capacity()
    if capacity is not None and members[-1] >= capacity:
        return ""
    if spec.scheme == "lasp1" and spec.devices > 1:
        hops = Counter(link.name for link in spec.topology.chain_links(members))
        return ", ".join(f"{name} x {count}" for name, count in hops.items())
    link = scheme_link(spec)
    return "" if link is None else link.name


def _above_rounding(seconds: float, scale_s: float) -> float:
    """`seconds`, or 0 when it is below zero or within floating-point rounding of `scale_s` (a difference of sums)."""
    return seconds if seconds > 1e-12 * scale_s else 0.0


def parallel_time(spec: ParallelSpec, reference: bool = True) -> ParallelResult:
    """Time, communication and memory of one layer under `spec` (module docstring); `reference` False leaves out
    the one-device reference run (`ideal_s` NaN), for a caller that reads only the time and memory. One compute
    serves the point's timing, its causal-name check and its energy, so each block is costed once."""
    check_spec(spec)
    compute, timing, refusal = _timed(spec)
    one = replace(spec, devices=1, tp=1, scheme=single_device_scheme(spec.scheme), ulysses=None)
    ideal, note = math.nan, ""
    try:
        if reference:
            ideal = _timing(one, _compute(one, check_memory=False)).time_s / (spec.devices * spec.tp)
    except SpecError as error:  # the P-fold call is beyond what one prediction models: no ideal, the point stands
        ideal, note = math.nan, f"no one-device reference, so no efficiency: {error.message}"
    memory, max_context, call_limit = _memory(spec)
    if ideal > timing.time_s * (1 + 1e-9):
        note = _above_one_note(spec, one)
    note = "; ".join(text for text in (note, _capped_context_note(spec, max_context, call_limit)) if text)
    return ParallelResult(spec, timing.time_s, timing.compute_s, timing.comm_s, timing.wait_s, ideal,
                          memory.total_bytes, max_context, memory.weights_bytes, note,
                          _energy_j(spec, timing.time_s, compute), timing.recompute_s, refusal)


def _timed(spec: ParallelSpec) -> tuple[DeviceCompute | ArrayCompute, Timing, str]:
    """(the compute, `spec`'s timing on it, why a kernel call of it does not fit the GPU's DRAM: '' when all do).
    A call the GPU model refuses for its DRAM alone (`BeyondDram`) makes the point infeasible, not an error: its
    memory per device says so where `seqpar_memory` covers it and exceeds the GPU's (`ParallelResult.reason`, with
    the largest context that fits), else the refusal does; its times are then its calls' without the DRAM check,
    as the one-device reference's are, on a compute that checks none."""
    compute = _compute(spec)
    _check_causal_name(spec, compute)
    try:
        return compute, _timing(spec, compute), ""
    except BeyondDram as error:
        compute = _compute(spec, check_memory=False)
        return compute, _timing(spec, compute), error.message


def _check_causal_name(spec: ParallelSpec, compute: DeviceCompute | ArrayCompute) -> None:
    """Refuse, before any prediction, a causal point whose kernel is a causal-variant name (`causal_name_problem`)
    while its scheme's blocks include non-causal calls (`_device_blocks`: a ring device's earlier blocks,
    allgather's queries against the earlier keys; lasp2h's softmax layers are allgather's): a SpecError naming
    `kernel` with the first such call the timing would cost (devices and their blocks in order), and where it
    comes from. A scheme whose every call is causal (stripe, ulysses, megatron-sp, usp over one ring device, any
    scheme on one device) runs the name; LASP's chunks and a decode step run their own kernels."""
    problem = causal_name_problem(spec.kernel, False, spec.direction)
    if not (spec.causal and problem) or spec.scheme in LINEAR_SCHEMES:
        return
    off_diagonal = next((block for blocks in _device_blocks(spec, compute) for block in blocks if not block[2]),
                        None)
    if off_diagonal is not None:
        q_tokens, k_tokens = off_diagonal[:2]
        raise SpecError(SOURCE, "kernel", f"{compute.refusal(q_tokens, k_tokens, problem)} (the blocks off the "
                                          f"diagonal of a causal {spec.scheme} over {spec.devices} devices are "
                                          "non-causal calls)")


def _energy_j(spec: ParallelSpec, time_s: float, compute: DeviceCompute | ArrayCompute) -> float:
    """Every device's energy over a layer of `time_s` (module docstring, "Energy"), its blocks' from `compute`
    (the timing's, whose blocks are costed already)."""
    if not isinstance(spec.gpu, ArrayDevice):
        return board_power_w(Device(spec.gpu.name, "gpu", 1, spec.gpu)) * time_s * spec.devices * spec.tp
    total_j = 0.0
    for blocks in _device_blocks(spec, compute):
        blocks_j = sum(count * compute.attention_j(*block) for block, count in blocks.items())
        total_j += blocks_j + compute.idle_w * (time_s - busy_s(blocks, compute))
    return total_j * spec.tp


def _device_blocks(spec: ParallelSpec, compute: ArrayCompute) -> list[Counter]:
    """Each of the P devices' attention blocks (query tokens, key tokens, causal, heads, KV heads) and how many
    times it runs each, under `spec`'s softmax scheme for one tp rank (`seqpar_schemes.device_blocks`, the
    schemes' layouts). Its busiest device is the scheme's `compute_s`."""
    return device_blocks(spec, compute.heads, compute.kv_heads, spec.seq_len)


def lm_head_s(spec: ParallelSpec) -> float:
    """One device's LM head over the N / P tokens it holds of each sequence, its vocab cut `tp` ways (Megatron-SP's
    vocab-parallel head over all N tokens, the vocab cut P ways, does the same work), fwd or fwd+bwd: what a
    model's step adds to its layers (`DeviceCompute.lm_head_s`). A decode step's head (one token per sequence) is
    not this: a SpecError naming the direction."""
    if spec.direction == "decode":
        raise SpecError(SOURCE, "direction", "the LM head is modelled for a prefill or training step: expected fwd "
                                             "or fwd+bwd")
    if isinstance(spec.gpu, ArrayDevice):
        raise SpecError(SOURCE, "scope", "the LM head is not modelled on arrays (only the attention blocks are)")
    return _compute(spec).lm_head_s(spec.workload, spec.block_tokens, spec.tp)


# A causal call taking at least this share of a full one's time computes the masked scores (eager PyTorch: about
# 1); a kernel skipping the blocks above the diagonal takes about half, its diagonal blocks and fixed costs aside.
COMPUTES_MASKED_SHARE = 0.75


def _above_one_note(spec: ParallelSpec, one: ParallelSpec) -> str:
    """Why the one-device reference takes more than P times the scheme's time. A kernel that computes the masked
    scores of a causal call (eager PyTorch) pays for them on one device, while the block schemes skip the blocks
    above the diagonal: the share of a full call's time the causal one takes says how much the kernel skips."""
    if not spec.causal or spec.direction == "decode":
        return (f"efficiency above 1: the one-device call of {spec.attention_kernel} takes more than "
                f"{spec.devices} times {spec.scheme}'s time")
    single = replace(one, scope="attention")
    compute = _compute(single, check_memory=False)  # the mask is no field of it: one for both calls
    share = _timing(single, compute).time_s / _timing(replace(single, causal=False), compute).time_s
    why = ("a kernel that computes the masked scores" if share >= COMPUTES_MASKED_SHARE else
           "the kernel skips most masked scores: the rest is the one long call's own costs, its waves and traffic")
    return (f"efficiency above 1: the one-device reference's causal {spec.seq_len} x {spec.seq_len} call of "
            f"{spec.attention_kernel} takes {share:.2f} of a full call's time ({why}), more than {spec.devices} "
            f"times {spec.scheme}'s time, whose blocks skip or shrink them")


def _timing(spec: ParallelSpec, compute: DeviceCompute | ArrayCompute) -> Timing:
    """`spec`'s timing on `compute`, the `_compute` of `spec` (the one-device reference's with `check_memory` False:
    it times kernel calls beyond the GPU's DRAM too, `DeviceCompute`), which keeps the blocks it costs for the
    caller (`parallel_time`'s energy). A `fwd+bwd` step whose attention runs the softmax kernel's backward is one timed
    call: its blocks' backwards run inside one autograd backward, so the host gap before it
    (`DeviceCompute.autograd_gap_s`, less what the GPU still runs of the step's forward: the `fwd` twin of the same
    scope) is paid once, not per block, and counts as the device's time, not its communication. With `checkpointing`
    "layer" a training step runs that `fwd` twin once more, the layer's forward recomputed from its checkpointed input
    before its backward (`seqpar_memory`'s "layer": only the input is kept), with its own transfers (a ring's hops
    again) overlapped as the forward's: each part of the twin's timing is added to the step's, and its time is the
    step's `recompute_s`; "none" recomputes nothing. A training step runs the FFN at the workload's `word_bytes`, as
    its memory counts it (`one_word_size`; the compute reads only the heads and head_dim, which that leaves as they
    are), whatever the `training_precision`: the kernels and transfers are costed in 16-bit words
    (`seqpar_spec.check_workload`), so an fp32 step's time is its bf16 twin's, a lower bound (module docstring of
    `seqpar_spec`). A hybrid scheme's is its layers' count-weighted mean (`_hybrid_timing`)."""
    if spec.scheme in HYBRID_SCHEMES:
        return _hybrid_timing(spec, compute)
    if spec.direction != "fwd+bwd":
        return _pass_timing(spec, compute)
    spec = replace(spec, workload=one_word_size(spec.workload))
    step = _pass_timing(spec, compute)
    forward = _pass_timing(replace(spec, direction="fwd"), replace(compute, direction="fwd"))
    if spec.scheme not in LINEAR_SCHEMES:
        gap_s = compute.autograd_gap_s(forward.time_s)
        step = replace(step, time_s=step.time_s + gap_s, compute_s=step.compute_s + gap_s)
    return replace(_added(step, forward), recompute_s=forward.time_s) if spec.checkpointing == "layer" else step


def _pass_timing(spec: ParallelSpec, compute: DeviceCompute | ArrayCompute) -> Timing:
    """One pass of `spec`'s direction, without a training step's host gap or recomputation (`_timing`): the
    scheme's attention (or decode step), plus at scope `layer` the layer's other ops (`dense`)."""
    attention = (decode if spec.direction == "decode" else SCHEME_TIMINGS[spec.scheme])(spec, compute)
    return attention if spec.scope == "attention" else _added(attention, dense(spec, compute))


def _added(first: Timing, second: Timing) -> Timing:
    """Two timings run one after the other on the device: each part the sum."""
    return Timing(*(getattr(first, field.name) + getattr(second, field.name) for field in fields(Timing)))


def _hybrid_timing(spec: ParallelSpec, compute: DeviceCompute | ArrayCompute) -> Timing:
    """A hybrid model's time, compute and communication per layer (module docstring): each attention kind's layers
    timed under the scheme `HYBRID_SCHEMES` gives them, on that kind's view of the model (`attention_view`: the
    same heads and head_dim, so on the same `compute`), their mean weighted by the kind's layer count."""
    counts = attention_layers(spec.workload)
    parts = [(count, _timing(replace(spec, scheme=HYBRID_SCHEMES[spec.scheme][kind],
                                     workload=attention_view(spec.workload, kind)), compute))
             for kind, count in counts.items()]
    layers = sum(counts.values())
    return Timing(*(sum(count * getattr(part, field.name) for count, part in parts) / layers
                    for field in fields(Timing)))


def _compute(spec: ParallelSpec, check_memory: bool = True) -> DeviceCompute | ArrayCompute:
    """One tp rank's compute: heads / tp query heads and kv_heads / tp KV heads (one, repeated, when tp is a
    multiple of the KV heads); on arrays, their blocks through the analytical model (`ArrayCompute`)."""
    p = spec.workload.params
    if isinstance(spec.gpu, ArrayDevice):
        return ArrayCompute(spec.gpu, spec.batch, int(p["heads"]) // spec.tp,
                            kv_heads_per_device(int(p["kv_heads"]), spec.tp), int(p["head_dim"]), spec.direction)
    return DeviceCompute(spec.gpu, spec.kernel, spec.batch, int(p["heads"]) // spec.tp,
                         kv_heads_per_device(int(p["kv_heads"]), spec.tp), int(p["head_dim"]), spec.direction,
                         check_memory)


# --- memory ------------------------------------------------------------------------------------------------------


def _memory(spec: ParallelSpec) -> tuple[mem.DeviceMemory, float, str]:
    """One device's memory, the largest context (`seqpar_memory`) and why a limit on one modelled attention call
    stopped its search, if one did (`_call_limit_stop`): fwd as inference prefill, decode as the
    weights and KV cache the prefill left (module docstring), fwd+bwd as training (FSDP over the group) with
    `checkpointing` ("layer": each layer's input kept and one layer recomputed, as the Ring Attention paper trains;
    "none": every layer's activations kept, no recomputation) and `training_precision` ("fp32": the Ring Attention
    paper's full precision, 4 + 4 + 8 bytes per parameter, activations 4; "mixed": bf16 parameters and gradients,
    Adam's fp32 master copy and moments, ZeRO's 2 + 2 + 12 bytes per parameter, activations 2;
    `seqpar_memory.TRAINING_PRECISIONS`; LASP states fp32 at either: `seqpar_memory`'s "Training"). The activations
    add the transients `seqpar_memory` does not hold (`_transient_bytes`): `allgather`'s gathered K and V and the
    attention kernel's own buffers. Training with tp > 1 is not modelled there, nor the memory of arrays (their
    outermost memory is unbounded: `ArrayDevice.dram_bytes` NaN): NaN bytes and a NaN context (not
    0, which a sweep maximising it would take for an answer). The largest context is searched over the lengths the
    scheme takes (`_context_multiple`) up to its size limit (`_context_limit_tokens`: P x ARCHSIM_MAX_SIZE for a
    ring scheme) and as far as one prediction models each attention call (`_held_bytes`: ARCHSIM_MAX_GPU_ROWS); a
    value either limit stopped is a floor, which the point's note says (`_capped_context_note`)."""
    scheme = mem.memory_scheme(spec.scheme)  # allgather: ring's, `_transient_bytes` adding the gathered K, V
    ulysses = spec.ulysses if spec.scheme == "usp" else None
    if not memory_modelled(spec.direction, spec.tp, spec.gpu):
        return mem.DeviceMemory(*[math.nan] * 5), math.nan, ""
    if spec.direction in ("fwd", "decode"):
        def modelled_of(n: int):
            return mem.inference_memory(spec.workload, scheme, spec.devices, n, spec.batch, tp=spec.tp,
                                        ulysses_degree=ulysses, causal=spec.causal,
                                        decode=spec.direction == "decode")
    else:
        precision = mem.training_precision(spec.training_precision)  # once, not at every step of the search

        def modelled_of(n: int):
            return mem.training_memory(spec.workload, scheme, spec.devices, n, spec.batch, ulysses_degree=ulysses,
                                       causal=spec.causal, checkpointing=spec.checkpointing, **precision)
    compute = _compute(spec)

    def memory_of(n: int) -> mem.DeviceMemory:
        held = modelled_of(n)
        return replace(held, activations_bytes=held.activations_bytes + _transient_bytes(spec, compute, n))

    def least_memory_of(n: int) -> mem.DeviceMemory:  # without the kernel's buffers, which a call too large lacks
        held = modelled_of(n)
        return replace(held, activations_bytes=held.activations_bytes + _gathered_bytes(spec, compute, n))
    largest = mem.max_context_tokens(memory_of, float(spec.gpu.dram_bytes), _context_multiple(spec),
                                     limit_tokens=_context_limit_tokens(spec))
    return memory_of(spec.seq_len), largest, _call_limit_stop(spec, compute, least_memory_of, largest)


def _call_limit_stop(spec: ParallelSpec, compute: DeviceCompute,
                     least_memory_of: Callable[[int], mem.DeviceMemory], largest: int) -> str:
    """Why the largest context's search stopped at `largest` tokens at a limit on one modelled attention call, not
    at the GPU's memory, else "": the next length searched (`_context_multiple` more, within the size limit) has a
    call beyond what one prediction models (`_call_problem`: ARCHSIM_MAX_GPU_ROWS on its query rows or keys), which
    fits no GPU (`_held_bytes`), while its memory without the kernel's buffers (`least_memory_of`, a lower bound)
    fits: the memory did not decide, so `largest` is a floor. 0 (nothing fits) is no such value."""
    following = largest + _context_multiple(spec)
    if not largest > 0 or following > _context_limit_tokens(spec):
        return ""
    problem = _call_problem(spec, compute, following)
    if not problem or least_memory_of(following).total_bytes > spec.gpu.dram_bytes:
        return ""
    return problem


def _call_problem(spec: ParallelSpec, compute: DeviceCompute, seq_len: int) -> str:
    """Why one of the device's attention calls at `seq_len` tokens (`_attention_calls`) is beyond what one
    prediction models (`AttentionCase.size_problem`, naming the limit's variable), else "" (the first such call, in
    their order)."""
    for call in sorted(_attention_calls(spec, compute, seq_len)):
        if problem := compute.attention_case(*call)[0].size_problem()[1]:
            return problem
    return ""


def _context_multiple(spec: ParallelSpec) -> int:
    """The lengths the largest context is searched over are multiples of this: the scheme's (`token_multiple`;
    LASP: chunks of whole `LINEAR_BLOCK`-token blocks, P x 64 tokens, as the kernel takes them)."""
    multiple = token_multiple(spec)
    return math.lcm(multiple, spec.devices * LINEAR_BLOCK) if spec.scheme in LASP_SCHEMES else multiple


def _context_limit_tokens(spec: ParallelSpec) -> int:
    """The longest context searched (`seqpar_memory.size_limit_tokens` of the timed scheme): P x the size limit for
    ring, zigzag and stripe, whose devices' cascades hold N / P tokens (their prefill and decode alike), the limit
    itself for every other scheme, whose cascades bind N somewhere (allgather's gathered K and V, Ulysses' and
    Megatron-SP's calls over all N tokens, DistAttention's decode cascade, LASP's), as the timing does."""
    return mem.size_limit_tokens(spec.scheme, spec.devices)


def _capped_context_note(spec: ParallelSpec, max_context: float, call_limit: str) -> str:
    """'' unless the largest context is the last multiple within the search's limit (`_context_limit_tokens`), or
    the search stopped at a limit on one modelled attention call (`call_limit`, `_call_limit_stop`'s reason): then
    the search stopped there, not at the GPU's memory, and the value is a floor, which the note says, naming the
    limit's variable (a sweep maximising the largest context would otherwise take the limit for the answer, and
    its store reuse the record after the limit is raised: `archsim.limits.advises_limit`). NaN (memory not
    modelled) and 0 (nothing fits) are no such value."""
    if call_limit:
        return (f"the largest context is searched as far as one modelled attention call goes, and at least "
                f"{max_context:.0f} tokens fit: at {max_context + _context_multiple(spec):.0f} tokens {call_limit}")
    limit = _context_limit_tokens(spec)
    if not (max_context > 0 and max_context + _context_multiple(spec) > limit):
        return ""
    size_limit = max_size()
    ring = (f", {spec.devices} devices x the limit on sizes, {size_limit}: each ring device holds N / {spec.devices} "
            "tokens" if limit != size_limit else "")
    return (f"the largest context is searched up to the size limit, {limit} tokens (ARCHSIM_MAX_SIZE{ring}), and "
            f"at least {max_context:.0f} tokens fit: raise ARCHSIM_MAX_SIZE to search further")


def _transient_bytes(spec: ParallelSpec, compute: DeviceCompute, seq_len: int) -> float:
    """What a device holds at `seq_len` tokens beside `seqpar_memory`'s working set: `allgather`'s (and `lasp2h`'s
    softmax layers') one layer's gathered K and V of all N tokens (what a ring holds plus them; one device gathers
    nothing: the one-device run's memory), and the most any of its attention calls holds besides its operands
    (`_kernel_buffer_bytes`). Assumption: both are added to the layer's peak working set, as if live with its
    largest op (an upper bound when that op is not the attention, or, for lasp2h, a linear layer's)."""
    return _gathered_bytes(spec, compute, seq_len) + _kernel_buffer_bytes(spec, compute, seq_len)


def _gathered_bytes(spec: ParallelSpec, compute: DeviceCompute, seq_len: int) -> float:
    """`allgather`'s (and `lasp2h`'s softmax layers') one layer's gathered K and V of all `seq_len` tokens; nothing
    on one device, or for a scheme that gathers none."""
    return kv_bytes(seq_len, compute) if mem.gathers_kv(spec.scheme) and spec.devices > 1 else 0.0


def _kernel_buffer_bytes(spec: ParallelSpec, compute: DeviceCompute, seq_len: int) -> float:
    """The most one of the device's attention calls at `seq_len` tokens (`_attention_calls`) holds besides its Q, K,
    V and O: the GPU model's `Plan.held` of the call's case (eager attention's score matrices and causal mask, the
    naive kernel's scores; nothing for a fused kernel, whose O(N) statistics are not counted), 0 without calls (a
    GPU's: arrays' memory is not modelled, `memory_modelled`)."""
    return max((_held_bytes(spec.kernel, compute.attention_case(*call)[0], spec.gpu)
                for call in _attention_calls(spec, compute, seq_len)), default=0.0)


def _attention_calls(spec: ParallelSpec, compute: DeviceCompute, seq_len: int) -> set[Block]:
    """The distinct (query tokens, key tokens, causal, heads, KV heads) softmax-kernel calls of `spec`'s scheme at
    `seq_len` tokens that can hold the most (`seqpar_schemes.distinct_blocks`: every device's, the calls its timing
    makes; the memory takes the most any of them holds, so their union stands for the device that holds the most),
    of calls alike but for their keys the one over the most keys (assumption: a call over more keys holds no less;
    allgather's chunks against the earlier keys are 2P - 1 such calls). None for LASP's chunks or a decode step:
    their kernels (`LINEAR_KERNEL`, `DECODE_KERNEL`) are fused, holding nothing beyond their operands, and a decode
    step's memory counts no working set (module docstring)."""
    if spec.scheme in LINEAR_SCHEMES or spec.direction == "decode":
        return set()
    keys: dict[tuple[int, bool, int, int], int] = {}
    for q, k, causal, heads, kv_heads in distinct_blocks(spec, compute.heads, compute.kv_heads, seq_len):
        keys[q, causal, heads, kv_heads] = max(k, keys.get((q, causal, heads, kv_heads), 0))
    return {(q, k, causal, heads, kv_heads) for (q, causal, heads, kv_heads), k in keys.items()}


def _held_bytes(kernel: str, case: AttentionCase, gpu: GPU) -> float:
    """Bytes the plans of `kernel` for `case` hold besides its operands (`Plan.held`), the most of its alternatives
    (assumption: an autotuner's alternatives hold the same, as the modelled ones do); infinite for a case beyond
    what one prediction models (`AttentionCase.size_problem`: the timing refuses that length, so it fits no GPU),
    0 when the kernel has no plan for it (the timing refuses the point, naming why)."""
    if case.size_problem()[1]:
        return math.inf
    alternatives = plans(kernel, case, gpu)
    return 0.0 if isinstance(alternatives, str) else max(plan.held_bytes for plan in alternatives)
