"""Multi-device attention: one layer's attention (or whole layer) of one long sequence cut over P devices, timed.

A `ParallelSpec` names a scheme, P devices of a GPU preset placed on a topology (`archsim.systems.topology`), a
workload, the sequence length and the direction; `parallel_time(spec)` returns a `ParallelResult`: time per layer,
the busiest device's compute, the scheme's communication and how much of it is exposed, memory per device and
the largest context that fits (`archsim.systems.seqpar_memory`, plus the attention kernel's own buffers: eager
attention's score matrices and mask; `_memory`). What each device computes is costed by the GPU
model (`archsim.systems.seqpar_compute`); transfers are alpha-beta over the link the group spans
(`archsim.systems.collectives`, `Topology`). The schemes, as their papers and reference code run them
(../shared/reference/seqpar-sparse.md §1, §4; the executable form of each is a library cascade, `einsum/*ring*`,
`ulysses-attention`, `lasp*`):

- `ring` (Ring Attention, Liu et al. 2023; ring-flash-attention): contiguous chunks of c = N/P tokens; in step
  s = 0..P-1 device d holds the K/V block of device (d - s) mod P and sends it on while computing. Causal: a block
  from an earlier device is a full c x c call, its own block a causal one, a later device's block is skipped, so
  the last device works every step and the first one step: the load imbalance the model computes.
- `zigzag`: 2P chunks of c/2, device d holding chunks d and 2P-1-d (ring-flash-attention's zigzag): step 0 is a
  causal c x c call, a block from an earlier device c queries x c/2 keys, from a later one c/2 x c: balanced.
- `stripe`: device d holds tokens t with t mod P = d (Striped Attention): every step is a causal-shaped c x c call.
- Ring timing: the steps advance as a dependency chain, not a barrier: device d starts step s+1 when its step-s
  compute is done, its own send of the block is done, and the block from d-1 (sent when d-1 started step s) has
  arrived: start[d][s+1] = max(start[d][s] + compute[d][s], start[d][s] + t_hop, start[d-1][s] + t_hop). The time
  is the last device's finish: per step max(compute, transfer) with the pipeline's fill and drain, and each
  device's own work pattern. Backward (`fwd+bwd`): the same ring again with the backward kernel, K and V plus the
  dK and dV accumulators travelling (fp32, as ring-flash-attention accumulates them; one more hop brings dK, dV
  home).
- `ulysses` (DeepSpeed-Ulysses): an all-to-all of Q, K, V from sequence to head shards, attention over all N tokens
  on H/P query and H_kv/P KV heads, an all-to-all of O back; the backward the same with dO and dQ, dK, dV. Nothing
  overlaps. P must divide H and H_kv.
- `usp` (Ulysses x Ring, `ulysses` = u devices of a node, P/u ring groups): the all-to-alls inside the u group,
  then zigzag ring attention over the P/u groups with H/u heads and N/(P/u) tokens per block; causal, N a
  multiple of lcm(P, 2P/u) (`token_multiple`).
- `megatron-sp` (Megatron-LM sequence parallelism): an all-gather of the sequence-sharded N x h input, attention on
  H/P heads over all N tokens, a reduce-scatter of the N x h output; the backward the reverse pair. With P
  beyond the KV heads each device keeps one KV head, repeated over P / H_kv devices (P must then be a multiple of
  H_kv), in the timing and the memory alike.
- `allgather` (Llama 3's context parallelism; LASP-2H's softmax layers): an all-gather of K and V, then each device's
  queries (zigzag chunks) against every earlier key; exposed. One device gathers nothing and runs the one call of
  the one-device run.
- `lasp1` / `lasp2` (linear attention; Sun et al. 2024, 2025): each device's chunk runs causal linear attention on
  its own tokens; the state before the chunk (B H d x d fp32 per device, as the LASP code keeps it) comes from the
  earlier devices. LASP-1 passes it along the ring serially, as its code runs a hop (seqpar-sparse.md §1: critical
  path (P-1)(alpha + state / beta + compute)), which the first device's K^T V GEMM starts (a state is computed
  before it is sent): receive the state, multiply Q by it (backward: K and V by dM), add the chunk's own K^T V,
  send; each device's intra-chunk work and own K^T V run beside the chain and count in its compute. Only causal
  linear attention is modelled (`--no-causal`, whose chunks would all take the total state, is refused). LASP-2
  computes its chunk's state first, then all-gathers every device's state at once, overlapped with the intra-chunk
  work, then sums the earlier states (a prefix sum), then multiplies Q by the sum. The backward passes dM the other way
  (LASP-1) or all-gathers it (LASP-2). `ring` on a linear-attention workload is LASP-2's baseline, ring attention
  without the right-product trick (left products over K/V blocks), costed as softmax attention blocks.

Decode (`direction: decode`, one new token per sequence over `seq_len` cached tokens; the attention only):
`ring` passes the K/V blocks around the ring while each device reads its block for the query (Ring Attention's
inference: the transfers dominate); `megatron-sp` is head-parallel decode (each device reads all tokens of H/P
heads; any `seq_len`, since it cuts no sequence), whose heads' outputs are combined as its prefill's are, an
all-gather and a reduce-scatter of the new tokens' hidden vectors (the row-parallel output projection's
all-reduce; latency-bound at one token); `distattention` (Infinite-LLM's DistAttention) sends the query to
each of the P holders of N/P tokens, each returns its partial (o, max, sum-exp) in fp32, and the owner merges them:
(P-1) queries out and partials in over its port, one decode call over N/P tokens and a merge pass. The decode
kernel is Flash-Decoding. Memory per device is what a decode step holds: the weights and the KV cache of
`seqpar_memory.inference_memory(..., decode=True)`, without the prefill's working set (a step's own activations,
one token per sequence, and a ring's K/V block in flight are not counted: megabytes beside the cache).

Scope `attention` times the attention and the scheme's communication; `layer` adds the device's other ops of the
decoder layer (projections, FFN, norms; `seqpar_compute.dense_s`) on its tokens (Megatron-SP: all N tokens with 1/P
of the weights, and the FFN's all-gather and reduce-scatter too), and with `tp` > 1 the TP all-reduces. `tp` puts
each sequence-parallel rank's heads on tp devices of a node (Meta's context parallelism across nodes with TP8
inside): the group's members are tp apart, so a ring of nodes runs over the NICs. A TP group lies inside a node
(its all-reduces are timed over the innermost link): tp must divide the topology's devices per node, and the
query heads; it divides the KV heads or is a multiple of them (each rank then keeps one KV head, repeated over
tp / kv_heads ranks, as Megatron's tensor parallelism does).

`ideal_s` is the same work on one device divided by P (the issue's definition): the one-device run (ring's P = 1
form, lasp2's for the LASP schemes) with the same kernel and scope, at every P including 1 (allgather on one device
is that run). A one-device run of a length whose kernel call exceeds the
GPU's DRAM is still timed (`seqpar_compute.DeviceCompute`, `check_memory` False: only the DRAM check is left out);
the devices' own calls must fit. The reference is the kernel's real one-device call: with a kernel that computes
the masked scores of a causal call (eager "PyTorch standard attention" pays the upper triangle and builds the mask)
it costs a full call or more, while ring, zigzag, allgather and usp skip the blocks above the diagonal (stripe pays
them on P smaller calls), so their efficiency can exceed 1. The reference is kept the kernel's real one-device time,
not made "consistent", and such a point carries a `note` (text output: a line under the table) saying so, with the
share of a full call's time its one-device causal call takes.

Errors are SpecErrors naming the field (`devices`, `seq_len`, `heads`, ...); a workload whose attention the GPU
kernels do not model (MLA's latent KV, a sliding window: `UNMODELLED_ATTENTION`) is refused rather than timed as
dense attention. A value that only some points model (`MODELLED`: the Ulysses degree, the prefill kernel, a
non-causal mask) is one that `archsim parallel` and a parallel sweep refuse when no point of theirs models it
(`unmodelled`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from archsim.arch.gpu import GPU
from archsim.errors import SpecError, check_choice
from archsim.model.gpu import AttentionCase, refuse_other_word_bytes, refuse_unmodelled_attention
from archsim.model.gpu_baseline_plans import LIGHTNING_HEAD_DIMS
from archsim.model.gpu_kernels import kernel_attention, plans
from archsim.record import Record
from archsim.systems import collectives
from archsim.systems import seqpar_memory as mem
from archsim.systems.links import Link
from archsim.systems.seqpar_compute import (
    DECODE_KERNEL,
    LINEAR_BLOCK,
    LINEAR_KERNEL,
    SOURCE,
    WORD_BYTES,
    DeviceCompute,
    linear_head_dim,
    shard,
)
from archsim.systems.step import block_of
from archsim.systems.system_checks import tp_cuts_kv_heads
from archsim.systems.system_types import CONTEXT_PARALLEL_SCHEMES
from archsim.systems.topology import Topology
from archsim.workload import Workload, refuse_linear_attention

LINEAR_SCHEMES = ("lasp1", "lasp2")
# the softmax prefills (a context-parallel system's schemes), LASP's, and DistAttention's decode
SCHEMES = (*CONTEXT_PARALLEL_SCHEMES, *LINEAR_SCHEMES, "distattention")
DECODE_SCHEMES = ("ring", "megatron-sp", "distattention")
RING_SCHEMES = ("ring", "zigzag", "stripe")
DIRECTIONS = ("fwd", "fwd+bwd", "decode")
SCOPES = ("attention", "layer")
ACCUMULATOR_BYTES = 4  # fp32 dK/dV accumulators and linear-attention states
DEFAULT_KERNEL = "FlashAttention-2"
CHECKPOINTING = mem.CHECKPOINTING
TRAINING_PRECISIONS = tuple(mem.TRAINING_PRECISIONS)
# the fields that set the training memory only, and their defaults: another value needs direction fwd+bwd
TRAINING_FIELDS = {"checkpointing": mem.DEFAULT_CHECKPOINTING, "training_precision": mem.DEFAULT_PRECISION}
MAX_DEVICES = 4096


def attention_kernel(scheme: str, direction: str, kernel: str) -> str:
    """The kernel `scheme`'s attention runs at `direction`: LASP's chunks archsim's Lightning Attention-2
    (`LINEAR_KERNEL`), a decode step Flash-Decoding (`DECODE_KERNEL`), every other scheme's prefill `kernel`."""
    if scheme in LINEAR_SCHEMES:
        return LINEAR_KERNEL
    return DECODE_KERNEL if direction == "decode" else kernel


# field -> (whether a point of (scheme, direction) models the field's value, what the field sets): a value no point
# of a grid or sweep models is refused (`unmodelled`), a point that does not model it goes without it
MODELLED: dict[str, tuple[Callable[[str, str, Any], bool], str]] = {
    "ulysses": (lambda scheme, direction, value: scheme == "usp", "the Ulysses degree of usp"),
    "kernel": (lambda scheme, direction, value: attention_kernel(scheme, direction, value) == value,
               f"the softmax schemes' prefill kernel (a decode step runs {DECODE_KERNEL}, LASP's chunks "
               f"{LINEAR_KERNEL})"),
    "causal": (lambda scheme, direction, value: value or direction != "decode",
               "the prefill's mask (a decode step's one query attends every cached token: causal)"),
}


def unmodelled(field: str, values: Sequence[Any], points: Iterable[tuple[str, str]]) -> list[int]:
    """The indices of the `values` of `field` (`MODELLED`) that no (scheme, direction) of `points` models."""
    models = MODELLED[field][0]
    points = list(points)
    return [i for i, value in enumerate(values) if not any(models(*point, value) for point in points)]


@dataclass(frozen=True)
class ParallelSpec:
    scheme: str
    devices: int  # P: the sequence-parallel group
    workload: Workload
    seq_len: int  # N: tokens of each sequence
    gpu: GPU
    topology: Topology
    batch: int = 1  # sequences per step
    causal: bool = True
    direction: str = "fwd"
    scope: str = "attention"
    tp: int = 1  # tensor-parallel devices per sequence-parallel rank, inside a node
    ulysses: int | None = None  # usp: the Ulysses degree u (devices / u ring groups)
    kernel: str = DEFAULT_KERNEL
    # fwd+bwd only (`TRAINING_FIELDS`): activation checkpointing and precision of the training memory (`_memory`)
    checkpointing: str = mem.DEFAULT_CHECKPOINTING
    training_precision: str = mem.DEFAULT_PRECISION

    @property
    def block_tokens(self) -> int:
        """c: tokens per device."""
        return self.seq_len // self.devices

    @property
    def attention_kernel(self) -> str:
        """The kernel the scheme's attention runs (`attention_kernel`)."""
        return attention_kernel(self.scheme, self.direction, self.kernel)

    @property
    def label(self) -> str:
        return (f"{self.scheme} P{self.devices}{f' tp{self.tp}' if self.tp > 1 else ''} {self.workload.name} "
                f"N{self.seq_len} {'causal' if self.causal else 'full'} {self.direction} on {self.gpu.name}")


@dataclass(frozen=True)
class ParallelResult:
    """One layer. `compute_s` is the busiest device's compute; `comm_s` the scheme's transfers as if alone on the
    link; `exposed_comm_s` what the time has beyond that compute: transfers not hidden and the waits they cause (a
    LASP-1 device waiting on the chain's earlier hops' products too, so it can exceed `comm_s`); memory per device
    and the largest context from `seqpar_memory` and the kernel's buffers (`_memory`; NaN / 0 when that model does
    not cover the case), and of that memory the weights. A point whose memory per device exceeds the GPU's is
    infeasible, with the reason; its times are still those the model computes (as an analytical point whose tiles
    overflow a level)."""

    spec: ParallelSpec
    time_s: float
    compute_s: float
    comm_s: float
    ideal_s: float
    memory_bytes: float
    max_context_tokens: float  # whole tokens; NaN where the memory is not modelled
    weights_bytes: float = math.nan
    note: str = ""  # why the efficiency is above 1, or missing ('' when neither; module docstring)

    @property
    def feasible(self) -> bool:
        return not self.memory_bytes > self.spec.gpu.dram_bytes  # NaN (memory not modelled) is not a refusal

    @property
    def reason(self) -> str:
        """Why the point is infeasible ('' when it is not): its memory per device against the GPU's."""
        if self.feasible:
            return ""
        fits = (f"the largest context that fits is {self.max_context_tokens} tokens" if self.max_context_tokens
                else "no context fits")
        return (f"memory per device {self.memory_bytes / 1e9:.1f} GB ({self.weights_bytes / 1e9:.1f} GB of "
                f"weights) exceeds {self.spec.gpu.name}'s {self.spec.gpu.dram_bytes / 1e9:.1f} GB "
                f"({self.spec.gpu.dram_bytes / 2**30:.0f} GiB); {fits}")

    @property
    def exposed_comm_s(self) -> float:
        return _above_rounding(self.time_s - self.compute_s, self.time_s)

    @property
    def hidden_comm_s(self) -> float:
        return _above_rounding(self.comm_s - self.exposed_comm_s, self.time_s)

    @property
    def efficiency(self) -> float:
        return self.ideal_s / self.time_s if self.time_s > 0 else math.nan

    def record(self) -> Record:
        s = self.spec
        link = _link_name(s)
        extras = {"scheme": s.scheme, "devices": s.devices, "tp": s.tp, "ulysses": s.ulysses, "gpu": s.gpu.name,
                  "kernel": s.attention_kernel, "topology": s.topology.name, "link": link, "model": s.workload.name,
                  "seq_len": s.seq_len, "batch": s.batch,
                  "causal": s.causal, "direction": s.direction, "scope": s.scope,
                  "checkpointing": s.checkpointing, "training_precision": s.training_precision,
                  "compute_s": self.compute_s,
                  "comm_s": self.comm_s, "exposed_comm_s": self.exposed_comm_s, "ideal_s": self.ideal_s,
                  "efficiency": self.efficiency, "memory_bytes": self.memory_bytes,
                  "max_context_tokens": self.max_context_tokens, "note": self.note}
        busy = {"compute": self.compute_s}  # the busiest device's compute, its unit named by role
        return Record("parallel", s.label, self.feasible, self.reason, self.time_s,
                      s.gpu.power_w * self.time_s * s.devices * s.tp, busy_s=busy, extras=extras)


def _link_name(spec: ParallelSpec) -> str:
    """The link the sequence-parallel group talks over; for LASP-1's chain, whose hops each take their own link,
    the links and how many hops each ("nvlink3-a100 x 56, ib-hdr-200g x 7"); '' for a group the topology cannot
    hold (the row of a refused point, whose reason names --devices)."""
    members = _members(spec.devices, spec.tp)
    capacity = spec.topology.capacity()
    if capacity is not None and members[-1] >= capacity:
        return ""
    if spec.scheme == "lasp1" and spec.devices > 1:
        hops = Counter(link.name for link in spec.topology.chain_links(members))
        return ", ".join(f"{name} x {count}" for name, count in hops.items())
    return spec.topology.group_link(members).name


def _above_rounding(seconds: float, scale_s: float) -> float:
    """`seconds`, or 0 when it is below zero or within floating-point rounding of `scale_s` (a difference of sums)."""
    return seconds if seconds > 1e-12 * scale_s else 0.0


@dataclass(frozen=True)
class _Timing:
    time_s: float
    compute_s: float
    comm_s: float


def parallel_time(spec: ParallelSpec, reference: bool = True) -> ParallelResult:
    """Time, communication and memory of one layer under `spec` (module docstring); `reference` False leaves out
    the one-device reference run (`ideal_s` NaN), for a caller that reads only the time and memory."""
    check_spec(spec)
    timing = _timing(spec)
    one = replace(spec, devices=1, scheme=single_device_scheme(spec.scheme), ulysses=None)
    ideal, note = math.nan, ""
    try:
        if reference:
            ideal = _timing(one, check_memory=False).time_s / spec.devices
    except SpecError as error:  # the P-fold call is beyond what one prediction models: no ideal, the point stands
        ideal, note = math.nan, f"no one-device reference, so no efficiency: {error.message}"
    memory, max_context = _memory(spec)
    if ideal > timing.time_s * (1 + 1e-9):
        note = _above_one_note(spec, one)
    return ParallelResult(spec, timing.time_s, timing.compute_s, timing.comm_s, ideal, memory.total_bytes,
                          max_context, memory.weights_bytes, note)


def lm_head_s(spec: ParallelSpec) -> float:
    """One device's LM head over the N / P tokens it holds of each sequence, its vocab cut `tp` ways (Megatron-SP's
    vocab-parallel head over all N tokens, the vocab cut P ways, does the same work), fwd or fwd+bwd: what a
    model's step adds to its layers (`DeviceCompute.lm_head_s`). A decode step's head (one token per sequence) is
    not this: a SpecError naming the direction."""
    if spec.direction == "decode":
        raise SpecError(SOURCE, "direction", "the LM head is modelled for a prefill or training step: expected fwd "
                                             "or fwd+bwd")
    return _compute(spec).lm_head_s(spec.workload, spec.block_tokens, spec.tp)


def _above_one_note(spec: ParallelSpec, one: ParallelSpec) -> str:
    """Why the one-device reference takes more than P times the scheme's time. A kernel that computes the masked
    scores of a causal call (eager PyTorch) pays for them on one device, while the block schemes skip the blocks
    above the diagonal: the share of a full call's time the causal one takes says how much the kernel skips."""
    if not spec.causal or spec.direction == "decode":
        return (f"efficiency above 1: the one-device call of {spec.attention_kernel} takes more than "
                f"{spec.devices} times {spec.scheme}'s time")
    single = replace(one, scope="attention")
    share = (_timing(single, check_memory=False).time_s
             / _timing(replace(single, causal=False), check_memory=False).time_s)
    return (f"efficiency above 1: the one-device reference's causal {spec.seq_len} x {spec.seq_len} call of "
            f"{spec.attention_kernel} takes {share:.2f} of a full call's time (a kernel that computes the masked "
            f"scores), more than {spec.devices} times {spec.scheme}'s time, whose blocks skip or shrink them")


def check_workload(workload: Workload, memory: bool = True, layer: bool = False) -> None:
    """Refuse a workload no scheme, P or N can run (`archsim parallel` checks it once, before its grid): a missing
    size, an attention the GPU kernels do not time (MLA's latent KV, a sliding window), a word size other than the
    bf16 the attention kernels and the blocks and states the schemes send are costed in
    (`seqpar_compute.WORD_BYTES`), with `memory` (every direction but fwd+bwd at tp > 1, `_memory`) what the
    memory model cannot expand (`seqpar_memory.check_workload_sizes`), and with `layer` (scope layer) a workload
    whose layer's other ops cannot be built (its block and word size)."""
    params = workload.params
    for size in ("heads", "kv_heads", "head_dim", "hidden", "layers"):
        if size not in params:
            raise SpecError(workload.path, f"params.{size}", "missing: multi-device attention needs it")
    refuse_unmodelled_attention(params, workload.path, "params.{}".format,
                                "the schemes here cut dense multi-head or grouped-query attention over the devices "
                                "and time it with those GPU kernels, so this workload's times would be wrong")
    if memory:
        mem.check_workload_sizes(workload)
    if layer:
        block_of(workload, "the layer's other ops come from its block's cascades")
        if "word_bytes" not in params:
            raise SpecError(workload.path, "params.word_bytes", "missing: the layer's other ops are costed in it")
    refuse_other_word_bytes(params, workload.path, WORD_BYTES,
                            "(bf16, the papers' runs): the attention kernels and the blocks and states the schemes "
                            "send are costed in 16-bit words here, so {word_bytes:g}-byte times would be bf16's beside "
                            "{word_bytes:g}-byte memory")


def memory_modelled(direction: str, tp: int) -> bool:
    """Whether `_memory` models a point's memory: every direction but fwd+bwd at tp > 1."""
    return not (direction == "fwd+bwd" and tp > 1)


def check_spec(spec: ParallelSpec) -> None:
    check_choice("scheme", spec.scheme, SCHEMES)
    check_choice("direction", spec.direction, DIRECTIONS)
    check_choice("scope", spec.scope, SCOPES)
    _check_training_fields(spec)
    for name in ("devices", "seq_len", "batch", "tp"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(SOURCE, name, f"expected a whole number >= 1, got {value!r}")
    if not isinstance(spec.causal, bool):
        raise SpecError(SOURCE, "causal", f"expected true or false, got {spec.causal!r}")
    if spec.ulysses is not None and (isinstance(spec.ulysses, bool) or not isinstance(spec.ulysses, int)
                                     or spec.ulysses < 1):
        raise SpecError(SOURCE, "ulysses", f"expected a whole number >= 1 or None, got {spec.ulysses!r}")
    if spec.devices > MAX_DEVICES:
        raise SpecError(SOURCE, "devices", f"expected at most {MAX_DEVICES}, got {spec.devices}")
    if spec.tp > 1 and spec.topology.capacity() is not None and spec.devices * spec.tp > spec.topology.capacity():
        raise SpecError(SOURCE, "devices", f"{spec.devices} devices x tp {spec.tp} = {spec.devices * spec.tp} GPUs, "
                                           f"beyond the {spec.topology.capacity()} of topology "
                                           f"{spec.topology.name!r} ({spec.topology.source})")
    spec.topology.check_devices(spec.devices * spec.tp, "devices", SOURCE)
    _check_tp_in_node(spec)
    if spec.direction == "decode":
        if spec.scheme not in DECODE_SCHEMES:
            raise SpecError(SOURCE, "scheme", f"decode runs {', '.join(DECODE_SCHEMES)} (head-parallel decode is "
                                              f"megatron-sp), got {spec.scheme!r}")
        if spec.scope != "attention":
            raise SpecError(SOURCE, "scope", "a decode step is timed for its attention only")
    elif spec.scheme == "distattention":
        raise SpecError(SOURCE, "direction", "distattention is a decode scheme: expected decode")
    p, n = spec.devices, spec.seq_len
    if spec.scheme == "usp" and (spec.ulysses is None or isinstance(spec.ulysses, bool)
                                 or not isinstance(spec.ulysses, int) or spec.ulysses < 1 or p % spec.ulysses):
        raise SpecError(SOURCE, "ulysses", f"usp needs the Ulysses degree: a divisor of devices {p}, got "
                                           f"{spec.ulysses!r}")
    multiple = token_multiple(spec)
    if n % multiple:
        cut = (f"2 x {p // spec.ulysses} zigzag chunks over its ring groups, each pair split over their "
               f"{spec.ulysses} devices" if spec.scheme == "usp" else f"{multiple} equal chunks over {p} devices")
        raise SpecError(SOURCE, "seq_len", f"{spec.scheme} cuts the sequence into {cut}: expected a multiple of "
                                           f"{multiple}, got {n}")
    if spec.scheme in LINEAR_SCHEMES and not spec.causal:
        raise SpecError(SOURCE, "causal", f"{spec.scheme} is modelled for causal linear attention (each chunk takes "
                                          "the prefix of the earlier chunks' states); non-causal is not: drop it")
    _check_attention_kind(spec)
    check_workload(spec.workload, memory_modelled(spec.direction, spec.tp), spec.scope == "layer")
    params = spec.workload.params
    heads, kv_heads = int(params["heads"]) // spec.tp, max(1, int(params["kv_heads"]) // spec.tp)
    if int(params["heads"]) % spec.tp or not tp_cuts_kv_heads(int(params["kv_heads"]), spec.tp):
        raise SpecError(SOURCE, "tp", f"expected a divisor of heads {params['heads']:g} that divides kv_heads "
                                      f"{params['kv_heads']:g} or is a multiple of it (a KV head repeated over "
                                      f"tp / kv_heads devices), got {spec.tp}")
    degree = {"ulysses": p, "megatron-sp": p, "usp": spec.ulysses}.get(spec.scheme)
    # megatron-sp may repeat each KV head on degree / kv_heads devices (tensor parallelism's rule)
    cuts_kv = degree is not None and (tp_cuts_kv_heads(kv_heads, degree) if spec.scheme == "megatron-sp"
                                      else kv_heads % degree == 0)
    if degree is not None and (heads % degree or not cuts_kv):
        field = "heads" if heads % degree else "kv_heads"
        also = (" or dividing it (megatron-sp repeats a KV head)" if spec.scheme == "megatron-sp"
                and field == "kv_heads" else "")
        raise SpecError(spec.workload.path, f"params.{field}",
                        f"{spec.scheme} splits the heads over {degree} devices: expected {field} "
                        f"({heads if field == 'heads' else kv_heads} per tp rank) divisible by {degree}{also}")


def _check_training_fields(spec: ParallelSpec) -> None:
    """`checkpointing` and `training_precision` take their choices, and set only the training memory: a value other
    than the default needs direction fwd+bwd and tp 1, where that memory is modelled (a SpecError naming the
    field)."""
    for name, choices in (("checkpointing", CHECKPOINTING), ("training_precision", TRAINING_PRECISIONS)):
        value = getattr(spec, name)
        check_choice(name, value, tuple(choices), SOURCE)
        if value != TRAINING_FIELDS[name] and spec.direction != "fwd+bwd":
            raise SpecError(SOURCE, name, f"sets the training memory: expected direction fwd+bwd, got "
                                          f"{spec.direction} (leave it {TRAINING_FIELDS[name]!r})")
        if value != TRAINING_FIELDS[name] and not memory_modelled(spec.direction, spec.tp):
            raise SpecError(SOURCE, name, f"sets the training memory, which is not modelled at tp > 1: expected "
                                          f"tp 1, got {spec.tp} (leave it {TRAINING_FIELDS[name]!r})")


def token_multiple(spec: ParallelSpec) -> int:
    """What `seq_len` must be a multiple of (`seqpar_memory.token_multiple`, one set of rules for the timing and
    the memory)."""
    return mem.token_multiple(spec.scheme, spec.devices, causal=spec.causal, decode=spec.direction == "decode",
                              ulysses_degree=spec.ulysses)


def _check_tp_in_node(spec: ParallelSpec) -> None:
    """A tensor-parallel group lies inside a node (the TP all-reduces are timed over the innermost level's link):
    tp divides the devices of the topology's innermost level (any tp when that level is unbounded)."""
    node = spec.topology.span(0)
    if node is not None and node % spec.tp:
        raise SpecError(SOURCE, "tp", f"expected a divisor of the {node} devices per node of topology "
                                      f"{spec.topology.name!r} (a TP group inside a node), got {spec.tp}")


def single_device_scheme(scheme: str) -> str:
    """The scheme a one-device run of `scheme` is timed as: the prefill's one causal call (ring's P = 1 form, which
    pads nothing), LASP-2's for linear attention."""
    return "lasp2" if scheme in LINEAR_SCHEMES else "ring"


def _timing(spec: ParallelSpec, check_memory: bool = True) -> _Timing:
    """`spec`'s timing; `check_memory` False times kernel calls beyond the GPU's DRAM too (the one-device
    reference, `DeviceCompute`)."""
    compute = _compute(spec, check_memory)
    attention = (_decode if spec.direction == "decode" else SCHEME_TIMINGS[spec.scheme])(spec, compute)
    if spec.scope == "attention":
        return attention
    dense = _dense(spec, compute)
    return _Timing(attention.time_s + dense.time_s, attention.compute_s + dense.compute_s,
                   attention.comm_s + dense.comm_s)


def _compute(spec: ParallelSpec, check_memory: bool = True) -> DeviceCompute:
    """One tp rank's compute: heads / tp query heads and kv_heads / tp KV heads (one, repeated, when tp is a
    multiple of the KV heads)."""
    p = spec.workload.params
    return DeviceCompute(spec.gpu, spec.kernel, spec.batch, int(p["heads"]) // spec.tp,
                         max(1, int(p["kv_heads"]) // spec.tp), int(p["head_dim"]), spec.direction, check_memory)


def _members(count: int, stride: int) -> list[int]:
    """The ranks of a group of `count` devices `stride` apart (one per tensor-parallel group or node)."""
    return [i * stride for i in range(count)]


def _kv_bytes(tokens: int, compute: DeviceCompute) -> float:
    """K and V of `tokens` tokens of the device's KV heads (the attention cascade's tensors)."""
    sizes = compute.attention_bytes(tokens)
    return float(sizes["K"] + sizes["V"])


# --- ring family -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RingWork:
    """compute[d][s] of a ring of `devices` devices, which holds at most three values: device d's own block at step
    0 (`diagonal_s`), an earlier device's block at steps 1..d (`below_s`) and a later one's at steps d+1..P-1
    (`above_s`). Kept as the three values, not the P x P matrix: its columns and row sums are built in numpy, the
    same additions in the same order as over the matrix."""

    devices: int
    diagonal_s: float
    below_s: float
    above_s: float

    def column(self, s: int) -> np.ndarray:
        """compute[d][s] of every device d."""
        if s == 0:
            return np.full(self.devices, self.diagonal_s)
        return np.where(np.arange(self.devices) >= s, self.below_s, self.above_s)

    def row_sums(self) -> np.ndarray:
        """sum(compute[d]) of every device d, added left to right (as Python's `sum` of the row)."""
        total = self.column(0)
        for s in range(1, self.devices):
            total = total + self.column(s)
        return total

    def minus(self, other: RingWork) -> RingWork:
        """compute[d][s] - other's, element by element."""
        return RingWork(self.devices, self.diagonal_s - other.diagonal_s, self.below_s - other.below_s,
                        self.above_s - other.above_s)


def _ring_work(layout: str, p: int, c: int, causal: bool, compute: DeviceCompute) -> RingWork:
    """compute[d][s]: device d's kernel time at ring step s, when it holds device (d - s) mod p's K/V block (j): its
    own (j == d, step 0), an earlier device's (j < d, steps 1..d) or a later one's (j > d). The kernel calls are
    timed in the order the matrix first meets them (own, later, earlier), so a refused call is the same one."""
    if not causal:
        full = compute.attention_s(c, c, False)
        return RingWork(p, full, full, full)
    diagonal = compute.attention_s(c, c, True)
    if layout == "stripe" or p == 1:  # stripe: every block is causal-shaped (the diagonal kept or not)
        return RingWork(p, diagonal, diagonal, diagonal)
    if layout == "ring":
        return RingWork(p, diagonal, compute.attention_s(c, c, False), 0.0)
    above = compute.attention_s(c // 2, c, False)
    return RingWork(p, diagonal, compute.attention_s(c, c // 2, False), above)


def ring_schedule_s(work: RingWork | Sequence[Sequence[float]], hop_s: float, last_hop_s: float = 0.0) -> float:
    """The finish of a ring of P devices whose device d computes work[d][s] in step s while passing its block on
    (each hop `hop_s`); `last_hop_s` is a final transfer after the last step (dK, dV going home). `work` is a
    `RingWork` or any P x P matrix; the P devices of a step advance together in numpy."""
    if isinstance(work, RingWork):
        p, column = work.devices, work.column
    else:
        matrix = np.asarray(work, dtype=np.float64)
        p, column = len(matrix), (lambda s: matrix[:, s])
    if p == 1:
        return float(column(0)[0]) + last_hop_s
    start = np.zeros(p)
    for s in range(p - 1):  # start[d] = max(start[d] + work[d][s], start[d] + hop, start[d - 1] + hop)
        start = np.maximum(np.maximum(start + column(s), start + hop_s), np.roll(start, 1) + hop_s)
    return float((start + np.maximum(column(p - 1), last_hop_s)).max())


def _ring(spec: ParallelSpec, compute: DeviceCompute, layout: str, p: int, members: list[int], c: int) -> _Timing:
    link = spec.topology.group_link(members)
    kv = _kv_bytes(c, compute)
    forward = replace(compute, direction="fwd")
    work = _ring_work(layout, p, c, spec.causal, forward)
    hop = collectives.send_recv_s(kv, link) if p > 1 else 0.0
    time_s = ring_schedule_s(work, hop)
    busiest = float(work.row_sums().max())
    comm = (p - 1) * hop
    if spec.direction == "fwd+bwd":
        backward = replace(compute, direction="fwd+bwd")
        back = _ring_work(layout, p, c, spec.causal, backward).minus(work)
        grads = kv * ACCUMULATOR_BYTES / WORD_BYTES
        back_hop = (collectives.send_recv_s(kv, link) + collectives.send_recv_s(grads, link)) if p > 1 else 0.0
        home = collectives.send_recv_s(grads, link) if p > 1 else 0.0
        time_s += ring_schedule_s(back, back_hop, home)
        busiest = float((work.row_sums() + back.row_sums()).max())
        comm += (p - 1) * back_hop + home
    return _Timing(time_s, busiest, comm)


def _ring_scheme(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    p = spec.devices
    return _ring(spec, compute, spec.scheme, p, _members(p, spec.tp), spec.seq_len // p)


# --- head-sharding schemes ---------------------------------------------------------------------------------------


def _ulysses(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    p, n = spec.devices, spec.seq_len
    members = _members(p, spec.tp)
    qkv, o = _a2a_bytes(compute, n // p)
    comm = spec.topology.all_to_all_s(qkv, members) + spec.topology.all_to_all_s(o, members)
    if spec.direction == "fwd+bwd":
        comm *= 2  # dO in, dQ, dK, dV back
    attn = compute.attention_s(n, n, spec.causal, compute.heads // p, compute.kv_heads // p)
    return _Timing(attn + comm, attn, comm)


def _a2a_bytes(compute: DeviceCompute, tokens: int) -> tuple[float, float]:
    """(Q, K, V) and O bytes one device holds for `tokens` tokens of its heads: the all-to-alls' buffers (the
    attention cascade's tensors)."""
    sizes = compute.attention_bytes(tokens)
    return float(sizes["Q"] + sizes["K"] + sizes["V"]), float(sizes["AV"])


def _usp(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    p, n, u = spec.devices, spec.seq_len, spec.ulysses
    r = p // u
    inner = _members(u, spec.tp)
    qkv, o = _a2a_bytes(compute, n // p)
    a2a = spec.topology.all_to_all_s(qkv, inner) + spec.topology.all_to_all_s(o, inner)
    if spec.direction == "fwd+bwd":
        a2a *= 2
    heads = replace(compute, heads=compute.heads // u, kv_heads=compute.kv_heads // u)
    ring = _ring(spec, heads, "zigzag" if spec.causal else "ring", r, _members(r, u * spec.tp), n // r)
    return _Timing(ring.time_s + a2a, ring.compute_s, ring.comm_s + a2a)


def _head_parallel_comm_s(spec: ParallelSpec, compute: DeviceCompute, tokens: int, link: Link) -> float:
    """Megatron-SP's combine of `tokens` tokens' hidden vectors over the devices: an all-gather before the heads and
    a reduce-scatter after the output projection (0 on one device, as the collectives are)."""
    hidden = compute.hidden_bytes(tokens, int(spec.workload.params["hidden"]))
    return (collectives.all_gather_s(hidden, spec.devices, link)
            + collectives.reduce_scatter_s(hidden, spec.devices, link))


def _megatron_sp(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    p, n = spec.devices, spec.seq_len
    members = _members(p, spec.tp)
    link = spec.topology.group_link(members)
    comm = _head_parallel_comm_s(spec, compute, n, link)
    if spec.direction == "fwd+bwd":
        comm *= 2
    if spec.scope == "layer":
        comm *= 2  # the FFN's all-gather and reduce-scatter
    attn = compute.attention_s(n, n, spec.causal, compute.heads // p, max(1, compute.kv_heads // p))
    return _Timing(attn + comm, attn, comm)


def _allgather(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    p, n = spec.devices, spec.seq_len
    members = _members(p, spec.tp)
    if p == 1:  # nothing to gather: the one call of the one-device run
        work = compute.attention_s(n, n, spec.causal)
        return _Timing(work, work, 0.0)
    gathered = _kv_bytes(n, compute)
    comm = collectives.all_gather_s(gathered, p, spec.topology.group_link(members))
    if spec.direction == "fwd+bwd":
        comm += collectives.reduce_scatter_s(gathered * ACCUMULATOR_BYTES / WORD_BYTES, p,
                                             spec.topology.group_link(members))
    half = n // (2 * p) if spec.causal else n // p
    busiest = 0.0
    for d in range(p):
        if not spec.causal:
            work = compute.attention_s(half, n, False)
        else:
            work = sum(compute.attention_s(half, chunk * half, False) + compute.attention_s(half, half, True)
                       for chunk in (d, 2 * p - 1 - d))
        busiest = max(busiest, work)
    return _Timing(busiest + comm, busiest, comm)


def _check_attention_kind(spec: ParallelSpec) -> None:
    """The LASP schemes run linear attention, so their workload's is linear (`Workload.attention`); a linear-attention
    workload runs them or Ring's prefill (LASP-2's baseline, costed as softmax blocks without the right-product
    trick), and no other scheme: those time softmax attention, so `kernel` (the softmax schemes' kernel) is not a
    linear-attention kernel. LASP's chunks run `LINEAR_KERNEL`, which holds a head of at most
    `max(LIGHTNING_HEAD_DIMS)` (the head_dim padded to a power of two, `linear_head_dim`), and the LASP cascades have
    a K/V head per query head, so a grouped-query linear workload is refused for them."""
    workload = spec.workload
    if spec.scheme not in LINEAR_SCHEMES and spec.direction != "decode" and kernel_attention(spec.kernel) == "linear":
        raise SpecError(SOURCE, "kernel", f"{spec.kernel} computes linear attention (LASP's chunks run it); "
                                          f"expected a softmax attention kernel for {spec.scheme}")
    if spec.scheme in LINEAR_SCHEMES and workload.attention != "linear":
        raise SpecError(workload.path, "attention", f"{spec.scheme} runs linear attention, but {workload.name} "
                                                    f"computes {workload.attention} attention (a workload of linear "
                                                    "attention says attention: linear)")
    if spec.scheme in LINEAR_SCHEMES and linear_head_dim(int(workload.params.get("head_dim", 1))) is None:
        raise SpecError(workload.path, "params.head_dim", f"expected at most {max(LIGHTNING_HEAD_DIMS)} for "
                                                          f"{spec.scheme}: its chunks run {LINEAR_KERNEL}, one "
                                                          f"program per head, got {workload.params['head_dim']:g}")
    heads = workload.params.get("heads", 0)
    if spec.scheme in LINEAR_SCHEMES and workload.params.get("kv_heads", heads) != heads:
        raise SpecError(workload.path, "params.kv_heads",
                        f"{workload.params['kv_heads']:g} K/V heads for {heads:g} query heads: {spec.scheme}'s "
                        "cascades (lasp1- and lasp2-linear-attention) keep one d x d state per query head; states "
                        "of grouped K/V heads are not modelled")
    if spec.scheme not in LINEAR_SCHEMES and (spec.scheme != "ring" or spec.direction == "decode"):
        refuse_linear_attention(workload, f"scheme {spec.scheme}"
                                + (" in decode" if spec.direction == "decode" else ""))


# --- linear attention --------------------------------------------------------------------------------------------


def _state_bytes(spec: ParallelSpec, compute: DeviceCompute) -> float:
    """One device's chunk state M (K^T V per head) of the `lasp2-linear-attention` cascade, in fp32 as LASP keeps
    it."""
    return compute.lasp_state_bytes(spec.seq_len, spec.devices) * ACCUMULATOR_BYTES / WORD_BYTES


def _lasp(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    p, c = spec.devices, spec.seq_len // spec.devices
    members = _members(p, spec.tp)
    state = _state_bytes(spec, compute)
    local = compute.linear_chunk_s(c)
    kv_state = compute.state_gemm_s(c)  # the chunk's K^T V, what the others need
    inter = compute.state_gemm_s(c)  # Q times the earlier chunks' state
    passes = 2 if spec.direction == "fwd+bwd" else 1  # the backward's dM chain or all-gather
    if p == 1:
        return _Timing(local + kv_state, local + kv_state, 0.0)
    if spec.scheme == "lasp1":
        # the first device's K^T V GEMM (backward: the last one's dM), then each hop: send, receive the state, the
        # products that need it (forward: Q times it; backward: K and V times the received dM, twice the forward's),
        # add the chunk's own K^T V, send on: seqpar-sparse.md §1's critical path (P-1) (alpha + state / beta +
        # compute), here the state's GEMM, then the P-1 hops one after another, each over the link joining its two
        # devices (NVLink inside a node, the NIC between nodes; a lock-step ring would step all at the slowest), and
        # P-2 hops' compute beside them plus the last device's own; each device's intra-chunk work and own K^T V
        # (computed before its state arrives) run beside the chain
        hops_s = sum(collectives.send_recv_s(state, link) for link in spec.topology.chain_links(members)) * passes
        hop_compute = inter + compute.elementwise_s(3 * state) * passes
        arrival = kv_state + hops_s + (p - 2) * hop_compute
        own = local + kv_state
        return _Timing(max(own, arrival) + hop_compute, own + hop_compute, hops_s)
    # LASP-2 (its Algorithm 1): the chunk's state first, then its all-gather beside the intra-chunk attention (one
    # GPU: the state GEMM and the intra-chunk work take turns, the transfer overlaps the latter), then the prefix
    # sum and Q times it
    gather = collectives.all_gather_s(p * state, p, spec.topology.group_link(members)) * passes
    prefix = compute.elementwise_s((p + 1) * state) * passes
    time_s = kv_state + max(local, gather) + prefix + inter
    return _Timing(time_s, local + kv_state + prefix + inter, gather)


# --- decode ------------------------------------------------------------------------------------------------------


def _decode(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    """One decode step over a context of `seq_len` cached tokens (module docstring, "decode")."""
    p, n = spec.devices, spec.seq_len
    members = _members(p, spec.tp)
    link = spec.topology.group_link(members)
    if spec.scheme == "megatron-sp":  # head-parallel: every device reads all tokens of its heads
        attn = compute.decode_s(n, compute.heads // p, max(1, compute.kv_heads // p))
        comm = _head_parallel_comm_s(spec, compute, 1, link)  # the new token of each sequence
        return _Timing(attn + comm, attn, comm)
    block = compute.decode_s(n // p)
    if spec.scheme == "ring":
        hop = collectives.send_recv_s(_kv_bytes(n // p, compute), link) if p > 1 else 0.0
        return _Timing(ring_schedule_s(RingWork(p, block, block, block), hop), p * block, (p - 1) * hop)
    query, partial = distattention_messages(compute, n, p)
    send = (p - 1) * (collectives.send_recv_s(query, link) + collectives.send_recv_s(partial, link))
    merge = compute.elementwise_s(p * partial) if p > 1 else 0.0
    return _Timing(send + block + merge, block + merge, send)


def distattention_messages(compute: DeviceCompute, keys: int, p: int) -> tuple[float, float]:
    """(query, partial) bytes one of `p` KV holders exchanges per decode step of `compute.batch` sequences over
    `keys` cached tokens: the `distattention-decode` cascade's query QD to each holder, and each holder's partial
    (o, max, sum-exp: PNV, PM, PD) back, in fp32 (`ACCUMULATOR_BYTES`) as the merge reads them."""
    sizes = compute.distattention_bytes(keys, p)  # the cascade's transfers, summed over the p holders
    partial = (sizes["PM"] + sizes["PD"] + sizes["PNV"]) / p * ACCUMULATOR_BYTES / WORD_BYTES
    return sizes["QD"] / p, partial


SCHEME_TIMINGS: dict[str, Callable[[ParallelSpec, DeviceCompute], _Timing]] = {
    "ring": _ring_scheme, "zigzag": _ring_scheme, "stripe": _ring_scheme, "ulysses": _ulysses, "usp": _usp,
    "megatron-sp": _megatron_sp, "allgather": _allgather, "lasp1": _lasp, "lasp2": _lasp,
    "distattention": _decode,
}


# --- the rest of the layer ---------------------------------------------------------------------------------------


def _dense(spec: ParallelSpec, compute: DeviceCompute) -> _Timing:
    """The layer's other ops on one device, and the TP all-reduces (module docstring)."""
    p, n = spec.devices, spec.seq_len
    tokens = n if spec.scheme == "megatron-sp" else n // p
    degree = spec.tp * (p if spec.scheme == "megatron-sp" else 1)
    cut_by = "tp x P (megatron-sp's devices)" if spec.scheme == "megatron-sp" else "tp"
    ops_s = compute.dense_s(shard(spec.workload, degree, cut_by), tokens)
    comm = 0.0
    if spec.tp > 1:
        node = spec.topology.group_link(list(range(spec.tp)))
        message = compute.hidden_bytes(tokens, int(spec.workload.params["hidden"]))
        comm = 2 * collectives.all_reduce_s(message, spec.tp, node, algorithm="ring")
        if spec.direction == "fwd+bwd":
            comm *= 2
    return _Timing(ops_s + comm, ops_s, comm)


# --- memory ------------------------------------------------------------------------------------------------------


def _memory(spec: ParallelSpec) -> tuple[mem.DeviceMemory, float]:
    """One device's memory and the largest context (`seqpar_memory`): fwd as inference prefill, decode as the
    weights and KV cache the prefill left (module docstring), fwd+bwd as training (FSDP over the group) with
    `checkpointing` ("layer": each layer's input kept and one layer recomputed, as the Ring Attention paper trains;
    "none": every layer's activations kept, no recomputation) and `training_precision` ("fp32": the Ring Attention
    paper's full precision, 4 + 4 + 8 bytes per parameter, activations 4; "mixed": bf16 parameters and gradients,
    Adam's fp32 master copy and moments, ZeRO's 2 + 2 + 12 bytes per parameter, activations 2;
    `seqpar_memory.TRAINING_PRECISIONS`; LASP states fp32 at either: `seqpar_memory`'s "Training"). The activations
    add the transients `seqpar_memory` does not hold (`_transient_bytes`): `allgather`'s gathered K and V and the
    attention kernel's own buffers. Training with tp > 1 is not modelled there: NaN bytes and a NaN context (not 0,
    which a sweep maximising it would take for an answer). The largest context is searched over the lengths the
    scheme takes (`token_multiple`; LASP: chunks of whole `LINEAR_BLOCK`-token blocks, P x 64 tokens)."""
    scheme = spec.scheme if spec.scheme in mem.SCHEMES else "ring"
    ulysses = spec.ulysses if spec.scheme == "usp" else None
    if not memory_modelled(spec.direction, spec.tp):
        return mem.DeviceMemory(*[math.nan] * 5), math.nan
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
    multiple = token_multiple(spec)
    if spec.scheme in LINEAR_SCHEMES:  # each chunk whole LINEAR_BLOCK-token blocks, as the kernel takes them
        multiple = math.lcm(multiple, spec.devices * LINEAR_BLOCK)
    compute = _compute(spec)

    def memory_of(n: int) -> mem.DeviceMemory:
        held = modelled_of(n)
        return replace(held, activations_bytes=held.activations_bytes + _transient_bytes(spec, compute, n))
    return memory_of(spec.seq_len), mem.max_context_tokens(memory_of, float(spec.gpu.dram_bytes), multiple)


def _transient_bytes(spec: ParallelSpec, compute: DeviceCompute, seq_len: int) -> float:
    """What a device holds at `seq_len` tokens beside `seqpar_memory`'s working set: `allgather`'s one layer's
    gathered K and V of all N tokens (what a ring holds plus them; one device gathers nothing: the one-device run's
    memory), and the most any of its attention calls holds besides its operands (`_kernel_buffer_bytes`). Assumption:
    both are added to the layer's peak working set, as if live with its largest op (an upper bound when that op is
    not the attention)."""
    gathered = _kv_bytes(seq_len, compute) if spec.scheme == "allgather" and spec.devices > 1 else 0.0
    return gathered + _kernel_buffer_bytes(spec, compute, seq_len)


def _kernel_buffer_bytes(spec: ParallelSpec, compute: DeviceCompute, seq_len: int) -> float:
    """The most one of the device's attention calls at `seq_len` tokens (`_attention_calls`) holds besides its Q, K,
    V and O: the GPU model's `Plan.held` of the call's case (eager attention's score matrices and causal mask, the
    naive kernel's scores; nothing for a fused kernel, whose O(N) statistics are not counted), 0 without calls."""
    return max((_held_bytes(spec.kernel, compute.attention_case(*call)[0], spec.gpu)
                for call in _attention_calls(spec, compute, seq_len)), default=0.0)


def _attention_calls(spec: ParallelSpec, compute: DeviceCompute,
                     seq_len: int) -> tuple[tuple[int, int, bool, int, int], ...]:
    """The (query tokens, key tokens, causal, heads, KV heads) of the softmax-kernel calls one device of `spec`'s
    scheme runs at `seq_len` tokens (the schemes' `DeviceCompute.attention_s` calls), for allgather the largest of
    them (its last chunk against every earlier key, and its causal diagonal). None for LASP's chunks or a decode
    step: their kernels (`LINEAR_KERNEL`, `DECODE_KERNEL`) are fused, holding nothing beyond their operands, and a
    decode step's memory counts no working set (module docstring)."""
    p, n, causal = spec.devices, seq_len, spec.causal
    heads, kv_heads = compute.heads, compute.kv_heads
    if spec.scheme in LINEAR_SCHEMES or spec.direction == "decode":
        return ()
    if spec.scheme in RING_SCHEMES:
        return tuple((q, k, c, heads, kv_heads) for q, k, c in _ring_calls(spec.scheme, p, n // p, causal))
    if spec.scheme == "usp":
        u = spec.ulysses
        r = p // u
        return tuple((q, k, c, heads // u, kv_heads // u)
                     for q, k, c in _ring_calls("zigzag" if causal else "ring", r, n // r, causal))
    if spec.scheme in ("ulysses", "megatron-sp"):
        return ((n, n, causal, heads // p, max(1, kv_heads // p)),)
    if p == 1:  # allgather on one device: the one-device run's call
        return ((n, n, causal, heads, kv_heads),)
    if not causal:
        return ((n // p, n, False, heads, kv_heads),)
    half = n // (2 * p)
    return ((half, (2 * p - 1) * half, False, heads, kv_heads), (half, half, True, heads, kv_heads))


def _ring_calls(layout: str, p: int, c: int, causal: bool) -> set[tuple[int, int, bool]]:
    """The distinct (query tokens, key tokens, causal) blocks of `_ring_work` over a ring of `p` devices with `c`
    tokens each: a diagonal block, then an earlier device's (and, zigzag, a later one's) block."""
    if not causal:
        return {(c, c, False)}
    if layout == "stripe" or p == 1:
        return {(c, c, True)}
    if layout == "ring":
        return {(c, c, True), (c, c, False)}
    return {(c, c, True), (c, c // 2, False), (c // 2, c, False)}


def _held_bytes(kernel: str, case: AttentionCase, gpu: GPU) -> float:
    """Bytes the plans of `kernel` for `case` hold besides its operands (`Plan.held`), the most of its alternatives
    (assumption: an autotuner's alternatives hold the same, as the modelled ones do); infinite for a case beyond
    what one prediction models (`AttentionCase.size_problem`: the timing refuses that length, so it fits no GPU),
    0 when the kernel has no plan for it (the timing refuses the point, naming why)."""
    if case.size_problem()[1]:
        return math.inf
    alternatives = plans(kernel, case, gpu)
    return 0.0 if isinstance(alternatives, str) else max(plan.held_bytes for plan in alternatives)
