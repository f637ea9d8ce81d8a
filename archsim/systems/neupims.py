"""NeuPIMs (Heo et al., ASPLOS'24): an NPU beside PIM HBM for LLM decoding, with its baselines as configurations.

A mode is data (`NeuPIMsConfig`), the presets are named configs (`PRESETS`):

    mode            attention        row buffers  schedule                              channels
    npu-only        NPU (HBM reads)  -            blocked                               -
    npu+pim         PIM GEMV         1 (Newton)   blocked: NPU and PIM never overlap    round-robin
    neupims         PIM GEMV         2            sub-batch interleaving, stages A..F   greedy min-load
                                                  (at batch >= 256, as the artifact)
    neupims-no-sbi  PIM GEMV         2            blocked, softmax overlapped per head  greedy min-load (Fig. 13)
    gpu             A100 40GB        -            blocked, PyTorch eager                -

Model of one decode iteration on one device (sources: ../shared/reference/pim.md §1; units in `npu`, `pim`):
- Models and parallelism per §1.5 (7B TP4, 13B TP4, 30B TP4 PP2, 175B TP8 PP4); a device holds heads/TP heads,
  the matching weight shards and layers/PP decoder blocks. TP all-reduces and the LM head are not modelled (the
  artifact simulates one device's decoder blocks, §1.5); one batch is in flight, so PP stages run one after the
  other and the iteration takes PP x a device's blocks.
- Per block: QKV generation, MHA, projection and FFN. GEMMs on the systolic arrays with weights streamed at the
  external bandwidth (`npu.gemm_time`); layer norms, GELU, residuals and softmax on the vector units.
- MHA on the NPU (npu-only): the K and V of every request are read once at the external bandwidth, the GEMVs run
  on the vector units (one query row per head is ~1 FLOP per byte, far below the arrays' ridge).
- MHA on the PIM: requests are pinned to channels (round-robin or Algorithm 2); a channel runs its requests' GEMVs
  one after another (`pim.gemv_cycles`); the MHA takes the slowest channel.
- Blocked (npu_pim_overlap off): QKV, then PIM logits, softmax, attend, then projection and FFN, in sequence.
  With overlap but no SBI, softmax hides under the PIM GEMVs at head granularity (§6.1 of the paper).
- Sub-batch interleaving (Algorithm 3 split, §1.4 stages A..F): each sub-batch streams the block's weights, less
  what `sbi_resident_weight_bytes` keeps in SRAM for the second one (0 by default, like the artifact's
  double-buffered SRAM). A stage takes max(NPU work, PIM work) when the dual
  row buffers let the NPU's weight reads proceed beside PIM commands; with one row buffer the NPU's HBM time and
  the PIM time serialise: max(NPU time, NPU HBM time + PIM time). The N blocks of a device take
  A + B + (N-1)(C + D) + E + F. The C/A bus is not modelled as contended (HBM's column command bus has a slot per
  cycle: NPU reads need one per 2 cycles at full bandwidth, COMPs one per tCCD_L = 2).
- Utilization: `busy_s["npu"]` is the systolic arrays' useful MAC time (GEMM FLOPs / peak), so npu_util is MAC
  utilization; `busy_s["pim"]` is the channels' command time averaged over channels, so pim_util is the fraction
  of time a PIM channel is executing GEMV commands. Also reported: `npu_array` (array occupancy, fill and drain
  included) and `hbm` (external-bandwidth transfer time).
- GPU baseline: decode attention by `archsim.model.gpu_kernels` ("PyTorch eager attention" at the batch's mean
  context, i.e. a ragged or length-bucketed batch with negligible padding; padding every request to the longest
  context, as a naive eager batch does, makes it 3-6x slower on ShareGPT) with the calibrated `pytorch` family
  parameters; GEMMs and
  elementwise ops at the tensor/DRAM roofline derated by the same calibrated efficiencies, plus a launch each.
- Prefill (for the serving simulator only; NeuPIMs runs prefill on standalone NPUs, §1.1): prompt tokens join the
  GEMM rows (selective batching) and their causal attention runs on the arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from archsim.arch.pim import PIMSpec
from archsim.errors import SpecError
from archsim.model.trace import Span
from archsim.systems import npu as npu_model
from archsim.systems import pim as pim_model
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.npu import GemmTime, NPUSpec

MODES = ("gpu", "npu-only", "npu+pim", "neupims")
MODELS = {"gpt3-7b": (4, 1), "gpt3-13b": (4, 1), "gpt3-30b": (4, 2), "gpt3-175b": (8, 4)}  # (TP, PP), §1.5
GPU_PRESET = "a100-40gb-sxm4"  # §1.6 GPU-only baseline
GPU_KERNEL = "PyTorch eager attention"
GPU_ELEMENTWISE_KERNELS = 6  # 2 layer norms, GELU, 2 residual adds, bias/scale: one DRAM pass each


@dataclass(frozen=True)
class NeuPIMsConfig:
    """One system configuration. `attention_on="npu"` means the compute device (the GPU when device="gpu")."""

    mode: str
    device: str = "npu"  # npu | gpu
    attention_on: str = "pim"  # npu | pim
    row_buffers: int = 2  # 1 = Newton single row buffer, 2 = NeuPIMs dual row buffers
    sub_batch_interleaving: bool = False
    sbi_min_batch: int = 256  # §5: the artifact enables SBI only at batch >= 256
    channel_policy: str = "greedy"  # rr | greedy
    npu_pim_overlap: bool = True  # False = blocked: NPU and PIM work never overlap
    # SBI: bytes of a block's weights the NPU keeps in SRAM from one sub-batch's GEMMs to the other's; 0 = every
    # weight is streamed once per sub-batch (the artifact's SRAM double-buffers tiles, §1.2)
    sbi_resident_weight_bytes: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "device": self.device in ("npu", "gpu"),
            "attention_on": self.attention_on in ("npu", "pim") and not (self.device == "gpu"
                                                                          and self.attention_on == "pim"),
            "row_buffers": self.row_buffers in (1, 2),
            "channel_policy": self.channel_policy in ("rr", "greedy"),
            "sub_batch_interleaving": not self.sub_batch_interleaving or (self.npu_pim_overlap
                                                                          and self.attention_on == "pim"),
            "sbi_resident_weight_bytes": self.sbi_resident_weight_bytes >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"NeuPIMsConfig {self.mode!r}: invalid {name}={getattr(self, name)!r}")


PRESETS: dict[str, NeuPIMsConfig] = {
    "gpu": NeuPIMsConfig("gpu", device="gpu", attention_on="npu", npu_pim_overlap=False),
    "npu-only": NeuPIMsConfig("npu-only", attention_on="npu", npu_pim_overlap=False),
    "npu+pim": NeuPIMsConfig("npu+pim", row_buffers=1, channel_policy="rr", npu_pim_overlap=False),
    "neupims": NeuPIMsConfig("neupims", sub_batch_interleaving=True),
    "neupims-no-sbi": NeuPIMsConfig("neupims-no-sbi"),
}


@dataclass(frozen=True)
class ModelShard:
    """One device's share of a GPT-3 model: heads/TP heads, FFN/TP columns, layers/PP blocks."""

    name: str
    hidden: int
    heads: int
    head_dim: int
    ffn_dim: int
    layers: int
    tp: int
    pp: int
    word_bytes: int = 2
    source: str = "<python>"  # the workload file, which errors blame

    @property
    def label(self) -> str:
        """The model's name, with its parallelism when it is not the artifact's (e.g. gpt3-30b tp8 pp1)."""
        default = MODELS.get(self.name, (1, 1))
        return self.name if default == (self.tp, self.pp) else f"{self.name} tp{self.tp} pp{self.pp}"

    @property
    def heads_per_device(self) -> int:
        return self.heads // self.tp

    @property
    def embed_per_device(self) -> int:
        return self.heads_per_device * self.head_dim

    @property
    def ffn_per_device(self) -> int:
        return self.ffn_dim // self.tp

    @property
    def layers_per_device(self) -> int:
        return self.layers // self.pp

    @property
    def weight_bytes_per_block(self) -> float:
        """QKV, projection and FFN weights of one decoder block on one device."""
        return float((4 * self.hidden * self.embed_per_device + 2 * self.hidden * self.ffn_per_device)
                     * self.word_bytes)

    @property
    def weight_bytes_per_device(self) -> float:
        return self.weight_bytes_per_block * self.layers_per_device

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V of one token of one request, over every layer (all devices together)."""
        return 2.0 * self.layers * self.hidden * self.word_bytes

    def kv_capacity_bytes(self, device_bytes: float, reserved_bytes: float) -> float:
        """KV-cache room over the TP x PP devices: each device's memory less its reserve and its weights."""
        return self.tp * self.pp * max(0.0, device_bytes - reserved_bytes - self.weight_bytes_per_device)


SERVED_SIZES = ("hidden", "heads", "head_dim", "ffn_dim", "layers", "word_bytes")


def model_shard(name: str, tp: int | None = None, pp: int | None = None) -> ModelShard:
    """A library workload (gpt3-7b ...) cut by the artifact's parallelism (or the given TP/PP, which must divide
    the heads and FFN columns, and the layers). Every size in `SERVED_SIZES` must be in the workload (a whole
    number >= 1, as the workload loader checks): none is taken from a default."""
    from archsim.library import load_workload_spec

    spec = load_workload_spec(name)
    p, source = spec.params, spec.path
    for size in SERVED_SIZES:
        value = p.get(size)
        if value is None:
            raise SpecError(source, f"params.{size}", f"missing: a served model needs {', '.join(SERVED_SIZES)}")
        if not (math.isfinite(value) and value >= 1 and value == int(value)):
            raise SpecError(source, f"params.{size}", f"expected a whole number >= 1, got {value!r}")
    heads = p["heads"]
    if p.get("kv_heads", heads) != heads or p.get("experts", 1) != 1:
        raise SpecError(source, "params", "the NeuPIMs model covers dense multi-head decoders (GPT-3 family); this "
                                          f"workload has kv_heads={p.get('kv_heads', heads):g}, "
                                          f"experts={p.get('experts', 1):g}")
    default_tp, default_pp = MODELS.get(name, (1, 1))
    tp, pp = tp or default_tp, pp or default_pp
    if p["heads"] % tp or p["ffn_dim"] % tp:
        raise SpecError(source, "tp", f"expected a divisor of heads ({p['heads']:g}) and ffn_dim "
                                      f"({p['ffn_dim']:g}), got {tp}")
    if p["layers"] % pp:
        raise SpecError(source, "pp", f"expected a divisor of layers ({p['layers']:g}), got {pp}")
    return ModelShard(name, int(p["hidden"]), int(p["heads"]), int(p["head_dim"]), int(p["ffn_dim"]),
                      int(p["layers"]), tp, pp, int(p["word_bytes"]), source)


# ------------------------------------------------------------------------------------------------ NPU work
@dataclass(frozen=True)
class NpuWork:
    """NPU work of one phase: wall time, HBM transfer time, useful MAC time and array occupancy (seconds)."""

    time_s: float = 0.0
    memory_s: float = 0.0
    mac_s: float = 0.0
    array_s: float = 0.0

    def __add__(self, other: NpuWork) -> NpuWork:
        return NpuWork(self.time_s + other.time_s, self.memory_s + other.memory_s, self.mac_s + other.mac_s,
                       self.array_s + other.array_s)


def _work(npu: NPUSpec, gemms: Iterable[GemmTime], vector_ops: float = 0.0, extra_bytes: float = 0.0,
          bandwidth: float = 1.0) -> NpuWork:
    gemms = list(gemms)
    extra_s = extra_bytes / bandwidth
    return NpuWork(sum(g.time_s for g in gemms) + npu_model.vector_time_s(npu, vector_ops) + extra_s,
                   sum(g.memory_s for g in gemms) + extra_s,
                   sum(g.flops for g in gemms) / npu.peak_flops_per_s, sum(g.array_s for g in gemms))


def _prefill_attention(npu: NPUSpec, shard: ModelShard, prompts: Sequence[int]) -> tuple[list[GemmTime], float]:
    """Causal prompt attention per head on the arrays (Q·K^T and P·V with K, V on chip) and its softmax ops."""
    gemms, ops = [], 0.0
    for p in prompts:
        qk = npu_model.gemm_time(npu, p, shard.head_dim, p, math.inf)
        pv = npu_model.gemm_time(npu, p, p, shard.head_dim, math.inf)
        gemms += [qk, pv] * shard.heads_per_device
        ops += npu_model.SOFTMAX_OPS_PER_ELEMENT * p * p * shard.heads_per_device
    return gemms, ops


def qkv_phase(npu: NPUSpec, shard: ModelShard, decodes: int, prompts: Sequence[int], bandwidth: float,
              streamed_fraction: float = 1.0) -> NpuWork:
    """Layer norm, QKV generation, the new tokens' K/V appended to HBM, and prompt attention; `streamed_fraction`
    of the weights comes from HBM (the rest is still in SRAM)."""
    tokens = decodes + int(sum(prompts))
    gemms = [npu_model.gemm_time(npu, tokens, shard.hidden, 3 * shard.embed_per_device, bandwidth,
                                 streamed_fraction)]
    attention, attention_ops = _prefill_attention(npu, shard, prompts)
    ops = npu_model.LAYERNORM_OPS_PER_ELEMENT * tokens * shard.hidden + attention_ops
    kv_append = 2.0 * tokens * shard.embed_per_device * shard.word_bytes
    return _work(npu, gemms + attention, ops, kv_append, bandwidth)


def post_phase(npu: NPUSpec, shard: ModelShard, tokens: int, bandwidth: float,
               streamed_fraction: float = 1.0) -> NpuWork:
    """Projection, residual, layer norm, FFN up, GELU, FFN down, residual (`streamed_fraction` as in qkv_phase)."""
    e, h, f = shard.embed_per_device, shard.hidden, shard.ffn_per_device
    gemms = [npu_model.gemm_time(npu, tokens, k, n, bandwidth, streamed_fraction) for k, n in ((e, h), (h, f), (f, h))]
    ops = tokens * (h * (2 * npu_model.RESIDUAL_OPS_PER_ELEMENT + npu_model.LAYERNORM_OPS_PER_ELEMENT)
                    + f * npu_model.GELU_OPS_PER_ELEMENT)
    return _work(npu, gemms, ops)


def npu_attention_parts_s(npu: NPUSpec, shard: ModelShard, contexts: np.ndarray,
                          bandwidth: float) -> tuple[float, float]:
    """Decode MHA on the NPU: (K and V read at the external bandwidth, GEMVs and softmax on the vector units)."""
    total = float(np.sum(contexts))
    kv_bytes = 2.0 * total * shard.embed_per_device * shard.word_bytes
    ops = total * shard.heads_per_device * (2 * shard.head_dim + npu_model.SOFTMAX_OPS_PER_ELEMENT)
    return kv_bytes / bandwidth, npu_model.vector_time_s(npu, ops)


def softmax_s(npu: NPUSpec, shard: ModelShard, contexts: np.ndarray) -> float:
    ops = npu_model.SOFTMAX_OPS_PER_ELEMENT * float(np.sum(contexts)) * shard.heads_per_device
    return npu_model.vector_time_s(npu, ops)


# ------------------------------------------------------------------------------------------------ PIM work
@dataclass(frozen=True)
class PimPlacement:
    """Requests pinned to channels: each request's GEMV seconds, its channel and its sub-batch."""

    request_s: np.ndarray
    channel: np.ndarray
    sub_batch: np.ndarray

    def loads_s(self, channels: int, sub_batch: int | None = None) -> np.ndarray:
        mask = np.ones(len(self.request_s), bool) if sub_batch is None else self.sub_batch == sub_batch
        return pim_model.channel_loads(self.request_s[mask], self.channel[mask], channels)


def place_requests(pim: PIMSpec, shard: ModelShard, contexts: np.ndarray, policy: str) -> PimPlacement:
    """Command-model GEMV time of each request, its channel (rr or Algorithm 2 on Algorithm 1's estimate) and its
    sub-batch (Algorithm 3)."""
    h, d = shard.heads_per_device, shard.head_dim
    request_s = pim_model.gemv_cycles(pim, contexts, h, d) / pim.clock_hz
    if policy == "rr":
        channel = pim_model.round_robin(len(contexts), pim.channels)
    else:
        channel = pim_model.greedy_min_load(pim_model.algorithm1_cycles(pim, contexts, h, d), pim.channels)
    return PimPlacement(request_s, channel, pim_model.sub_batch_partition(channel, pim.channels))


# ------------------------------------------------------------------------------------------------ iteration
@dataclass(frozen=True)
class NpuSystem:
    """NPU + PIM HBM devices running one model shard per device under one configuration."""

    config: NeuPIMsConfig
    shard: ModelShard
    npu: NPUSpec = field(default_factory=NPUSpec)
    pim: PIMSpec = field(default_factory=PIMSpec)

    @property
    def name(self) -> str:
        return f"{self.config.mode}:{self.shard.label}"

    @property
    def bandwidth(self) -> float:
        return pim_model.external_bytes_per_s(self.pim)

    @property
    def kv_bytes_per_token(self) -> float:
        return self.shard.kv_bytes_per_token

    @property
    def kv_capacity_bytes(self) -> float:
        return self.shard.kv_capacity_bytes(self.pim.capacity_bytes, self.pim.activation_buffer_bytes)

    def iteration(self, batch: Batch) -> IterationCost:
        return npu_iteration(self, np.asarray(batch.decode_context_tokens, dtype=float),
                             tuple(int(p) for p in batch.prefill_tokens))


def _stage(config: NeuPIMsConfig, work: NpuWork, pim_s: float) -> float:
    if config.row_buffers == 2:
        return max(work.time_s, pim_s)
    return max(work.time_s, work.memory_s + pim_s)


@dataclass(frozen=True)
class BlockPhases:
    """The phase times of one decoder block on one device for one decode iteration: the single computation that
    `npu_iteration` (the iteration's time and busy times) and `block_timeline` (its picture) share.

    Per sub-batch (one when blocked, two under SBI): the NPU work of QKV generation and of projection + FFN, the
    PIM GEMVs (the slowest channel's), the softmax on the vector units, and the MHA as the schedule charges it.
    Under SBI `stages_s` holds the stage times A..F (§1.4); a blocked schedule has none."""

    qkv: tuple[NpuWork, ...]
    post: tuple[NpuWork, ...]
    pim_s: tuple[float, ...]  # slowest channel's GEMV time; 0 when MHA runs on the NPU
    softmax_s: tuple[float, ...]  # vector units; with MHA on the NPU, its GEMVs and softmax
    kv_read_s: float  # MHA on the NPU: every request's K and V read at the external bandwidth
    mha_s: tuple[float, ...]
    stages_s: tuple[float, ...]  # A..F under SBI, () when blocked
    placement: PimPlacement | None  # requests on channels (and sub-batches) when MHA runs on the PIM
    pim_busy_s: float  # PIM channels' command time in one block, averaged over channels
    npu: NpuWork  # the block's NPU work, all sub-batches (and, MHA on the NPU, its K/V reads) included

    @property
    def sub_batch_interleaving(self) -> bool:
        return bool(self.stages_s)

    @property
    def block_s(self) -> float:
        """One block in steady state: QKV + MHA + projection/FFN when blocked, stages C + D under SBI."""
        if self.sub_batch_interleaving:
            return self.stages_s[2] + self.stages_s[3]
        return self.qkv[0].time_s + self.mha_s[0] + self.post[0].time_s

    def device_s(self, blocks: int) -> float:
        """A device's `blocks` decoder blocks: blocks x block when blocked, A + B + (N-1)(C + D) + E + F under SBI."""
        if self.sub_batch_interleaving:
            a, b, c, d, e, f = self.stages_s
            return a + b + (blocks - 1) * (c + d) + e + f
        return blocks * self.block_s


def block_phases(system: NpuSystem, contexts: np.ndarray, prompts: tuple[int, ...] = ()) -> BlockPhases:
    """The phase (and, under SBI, stage) times of one decoder block of `system` for these decode contexts."""
    config, shard, npu, pim, bw = system.config, system.shard, system.npu, system.pim, system.bandwidth
    if config.sub_batch_interleaving and len(contexts) >= max(2, config.sbi_min_batch):
        placement = place_requests(pim, shard, contexts, config.channel_policy)
        resident = min(1.0, config.sbi_resident_weight_bytes / shard.weight_bytes_per_block)
        q, p, pim_s, vector_s, m = [], [], [], [], []
        for sb, streamed in ((0, 1.0), (1, 1.0 - resident)):
            mine = contexts[placement.sub_batch == sb]
            sb_prompts = prompts[sb::2]
            q.append(qkv_phase(npu, shard, len(mine), sb_prompts, bw, streamed))
            p.append(post_phase(npu, shard, len(mine) + int(sum(sb_prompts)), bw, streamed))
            pim_s.append(float(placement.loads_s(pim.channels, sb).max()))
            vector_s.append(softmax_s(npu, shard, mine))
            m.append(max(pim_s[-1], vector_s[-1]))
        stages = (q[0].time_s, _stage(config, q[1], m[0]), _stage(config, p[0] + q[0], m[1]),
                  _stage(config, p[1] + q[1], m[0]), _stage(config, p[0], m[1]), p[1].time_s)
        return BlockPhases(tuple(q), tuple(p), tuple(pim_s), tuple(vector_s), 0.0, tuple(m), stages, placement,
                           float(placement.loads_s(pim.channels).mean()), q[0] + q[1] + p[0] + p[1])
    q = qkv_phase(npu, shard, len(contexts), prompts, bw)
    p = post_phase(npu, shard, len(contexts) + int(sum(prompts)), bw)
    per_block = q + p
    pim_s = vector_s = kv_read_s = mha_s = pim_busy_s = 0.0
    placement = None
    if len(contexts) and config.attention_on == "npu":
        kv_read_s, vector_s = npu_attention_parts_s(npu, shard, contexts, bw)
        mha_s = max(kv_read_s, vector_s)
        per_block = per_block + NpuWork(memory_s=kv_read_s)
    elif len(contexts):
        placement = place_requests(pim, shard, contexts, config.channel_policy)
        loads = placement.loads_s(pim.channels)
        pim_s, vector_s = float(loads.max()), softmax_s(npu, shard, contexts)
        mha_s = max(pim_s, vector_s) if config.npu_pim_overlap else pim_s + vector_s
        pim_busy_s = float(loads.mean())
    return BlockPhases((q,), (p,), (pim_s,), (vector_s,), kv_read_s, (mha_s,), (), placement, pim_busy_s, per_block)


def npu_iteration(system: NpuSystem, contexts: np.ndarray, prompts: tuple[int, ...] = ()) -> IterationCost:
    """One iteration of `system` for decodes with these contexts (and prompts to prefill)."""
    phases = block_phases(system, contexts, prompts)
    blocks, pp = system.shard.layers_per_device, system.shard.pp
    busy = {"npu": blocks * phases.npu.mac_s, "pim": blocks * phases.pim_busy_s,
            "npu_array": blocks * phases.npu.array_s, "hbm": blocks * phases.npu.memory_s}
    busy = {k: pp * v for k, v in busy.items()}
    return IterationCost(pp * phases.device_s(blocks), iteration_energy_j(system, busy, contexts), busy)


def iteration_energy_j(system: NpuSystem, busy: Mapping[str, float], contexts: np.ndarray) -> float:
    """Dynamic energy of one iteration over the TP x PP devices, from pim.md §5's per-action energies: the NPU's
    MACs (2 ops each) at `op_energy_pj`, its external HBM traffic (busy "hbm" x bandwidth) at the off-chip access
    energy, and with MHA on the PIM the K and V read inside the banks at the bank-PIM access energy plus one MAC
    per element. Assumptions: SRAM, vector-unit and static energy are not modelled; a PIM MAC costs what an NPU
    MAC does. `busy` is one device's over its PP stages; the TP devices do the same work on their shards."""
    npu, pim, shard = system.npu, system.pim, system.shard
    macs = busy["npu"] * npu.peak_flops_per_s / 2
    energy_pj = 2 * macs * npu.op_energy_pj + busy["hbm"] * system.bandwidth * 8 * pim.offchip_pj_per_bit
    if system.config.attention_on == "pim":
        kv_elements = 2.0 * float(np.sum(contexts)) * shard.embed_per_device * shard.layers_per_device * shard.pp
        energy_pj += kv_elements * (shard.word_bytes * 8 * pim.bank_pim_pj_per_bit + 2 * npu.op_energy_pj)
    return shard.tp * energy_pj * 1e-12


# ------------------------------------------------------------------------------------------------ timeline
TIMELINE_RESOURCES = ("NPU arrays", "NPU vector", "PIM", "HBM (NPU)")


def block_timeline(system: NpuSystem, contexts: np.ndarray) -> tuple[Span, ...]:
    """One decoder block of one device in one decode iteration, as spans on `TIMELINE_RESOURCES`, drawn from
    `block_phases` (the times `npu_iteration` charges), so the last span ends at `BlockPhases.block_s`.

    - "NPU arrays": a phase's wall time on the NPU, its GEMMs and the layer norms, GELU and residual adds between
      them (the model runs those in sequence with the GEMMs, so they share the span); `args` keep its useful MAC,
      array and HBM seconds.
    - "HBM (NPU)": the phase's external-bandwidth transfers (weights, the new K/V; with MHA on the NPU the K/V
      read), from the phase's start.
    - "PIM": the slowest channel's GEMVs. Blocked without overlap (npu+pim): logits, then softmax on the vector
      units, then attend (the slowest channel's split). With overlap: one span, the softmax beside it per head.
    - "NPU vector": the attention's softmax (with MHA on the NPU, its GEMVs and softmax).
    - Sub-batch interleaving: the steady-state block, stages C then D (§1.4), whose sum is the per-block time of
      A + B + (N-1)(C + D) + E + F; A, B, E and F fill and drain the pipeline once per device and are not drawn.
      C runs projection/FFN #1 of this block and QKV #1 of the next beside MHA #2, D the same for #2 beside MHA
      #1. With one row buffer the NPU's HBM transfers and the PIM serialise: the stage's transfers come first,
      back to back, then the PIM.
    Spans of zero length are left out."""
    phases = block_phases(system, contexts)
    spans: list[Span] = []

    def add(resource: str, name: str, start_s: float, length_s: float, phase: str, **args: object) -> float:
        if length_s > 0:
            spans.append(Span(resource, name, start_s, start_s + length_s, {"phase": phase, **args}))
        return start_s + length_s

    def npu_phase(name: str, phase: str, start_s: float, work: NpuWork, hbm_start_s: float, **args: object) -> float:
        add("HBM (NPU)", name, hbm_start_s, work.memory_s, phase, **args)
        return add("NPU arrays", name, start_s, work.time_s, phase, mac_s=work.mac_s, array_s=work.array_s,
                   memory_s=work.memory_s, **args)

    if phases.sub_batch_interleaving:
        t, one_buffer = 0.0, system.config.row_buffers == 1
        for stage, stage_s, npu_sb, mha_sb in (("C", phases.stages_s[2], 0, 1), ("D", phases.stages_s[3], 1, 0)):
            post, qkv = phases.post[npu_sb], phases.qkv[npu_sb]
            tags = {"stage": stage, "sub_batch": npu_sb + 1}
            end = npu_phase(f"{stage}: proj+FFN #{npu_sb + 1}", "post", t, post, t, **tags)
            npu_phase(f"{stage}: QKV gen #{npu_sb + 1} (next block)", "qkv", end, qkv,
                      t + post.memory_s if one_buffer else end, **tags)
            tags = {"stage": stage, "sub_batch": mha_sb + 1}
            pim_start_s = t + post.memory_s + qkv.memory_s if one_buffer else t
            add("PIM", f"{stage}: MHA #{mha_sb + 1}", pim_start_s, phases.pim_s[mha_sb], "mha", **tags)
            add("NPU vector", f"{stage}: softmax #{mha_sb + 1}", t, phases.softmax_s[mha_sb], "softmax", **tags)
            t += stage_s
        return tuple(spans)
    t = npu_phase("QKV gen", "qkv", 0.0, phases.qkv[0], 0.0)
    pim_s, vector_s = phases.pim_s[0], phases.softmax_s[0]
    if phases.placement is None:
        add("HBM (NPU)", "MHA: K/V read", t, phases.kv_read_s, "mha")
        add("NPU vector", "MHA: GEMVs + softmax", t, vector_s, "mha")
    elif system.config.npu_pim_overlap:
        add("PIM", "MHA logits + attend", t, pim_s, "mha")
        add("NPU vector", "softmax (per head)", t, vector_s, "softmax")
    else:
        pim, shard, placement = system.pim, system.shard, phases.placement
        slowest = int(np.argmax(placement.loads_s(pim.channels)))
        logits_s = pim_model.gemv_parts_cycles(pim, contexts, shard.heads_per_device, shard.head_dim)[0] / pim.clock_hz
        slowest_logits_s = float(pim_model.channel_loads(logits_s, placement.channel, pim.channels)[slowest])
        end = add("PIM", "MHA logits", t, slowest_logits_s, "mha")
        end = add("NPU vector", "softmax", end, vector_s, "softmax")
        add("PIM", "MHA attend", end, pim_s - slowest_logits_s, "mha")
    t += phases.mha_s[0]
    npu_phase("proj+FFN", "post", t, phases.post[0], t)
    return tuple(spans)


# ------------------------------------------------------------------------------------------------ GPU baseline
@dataclass(frozen=True)
class GpuSystem:
    """The GPU-only baseline: the same shards on A100 40GB GPUs, eager PyTorch decode."""

    config: NeuPIMsConfig
    shard: ModelShard
    gpu: object  # archsim.arch.gpu.GPU
    params: Mapping[str, float] = field(default_factory=dict)  # calibrated `pytorch` family parameters

    @property
    def name(self) -> str:
        return f"{self.config.mode}:{self.shard.label}"

    @property
    def kv_bytes_per_token(self) -> float:
        return self.shard.kv_bytes_per_token

    @property
    def kv_capacity_bytes(self) -> float:
        return self.shard.kv_capacity_bytes(self.gpu.dram_bytes, PIMSpec().activation_buffer_bytes)

    def iteration(self, batch: Batch) -> IterationCost:
        return gpu_iteration(self, np.asarray(batch.decode_context_tokens, dtype=float),
                             tuple(int(p) for p in batch.prefill_tokens))


def _gpu_gemm_s(system: GpuSystem, m: int, k: int, n: int) -> tuple[float, float]:
    """(time, tensor-peak time) of one GEMM: a cuBLAS launch of the GPU model (derated roofline plus a launch)."""
    from archsim.model.gpu import GemmLaunch, gemm_launch_time

    wb = system.shard.word_bytes
    gemm = GemmLaunch("gemm", 2.0 * m * k * n, (k * n + m * (k + n)) * wb, "fp16")
    return (gemm_launch_time(gemm, system.gpu, system.params).time_s,
            gemm.mma_flops / system.gpu.tensor_peak_flops_per_s("fp16"))


def gpu_iteration(system: GpuSystem, contexts: np.ndarray, prompts: tuple[int, ...] = ()) -> IterationCost:
    """One iteration of the GPU baseline (see the module docstring)."""
    from archsim.model.gpu import AttentionCase
    from archsim.model.gpu_kernels import predict

    shard, gpu, params = system.shard, system.gpu, system.params
    tokens = len(contexts) + int(sum(prompts))
    h, e, f, wb = shard.hidden, shard.embed_per_device, shard.ffn_per_device, shard.word_bytes
    gemms = [_gpu_gemm_s(system, tokens, h, 3 * e), _gpu_gemm_s(system, tokens, e, h),
             _gpu_gemm_s(system, tokens, h, f), _gpu_gemm_s(system, tokens, f, h)] if tokens else []
    block_s = sum(g[0] for g in gemms)
    peak_s = sum(g[1] for g in gemms)
    elementwise_bytes = 2.0 * tokens * (4 * h + f) * wb  # read + write of the activations they touch
    if tokens:
        block_s += (elementwise_bytes / (gpu.dram_bytes_per_s * params["hbm_efficiency"])
                    + GPU_ELEMENTWISE_KERNELS * params["launch_s"])
    cases = []
    if len(contexts):
        cases.append(AttentionCase("decode", len(contexts), shard.heads_per_device, shard.heads_per_device,
                                   shard.head_dim, math.ceil(float(np.mean(contexts))), False,
                                   "fp16"))
    cases += [AttentionCase("fwd", 1, shard.heads_per_device, shard.heads_per_device, shard.head_dim, p, True,
                            "fp16") for p in prompts]
    for case in cases:
        result = predict(GPU_KERNEL, case, gpu, params)
        block_s += result.time_s
        peak_s += case.flops() / gpu.tensor_peak_flops_per_s("fp16")
    blocks = shard.layers_per_device * shard.pp
    time_s = blocks * block_s
    # energy: board power (TDP, an upper bound) of the TP GPUs at work at any moment (PP stages take turns)
    return IterationCost(time_s, shard.tp * gpu.power_w * time_s, {"gpu": blocks * peak_s})


# ------------------------------------------------------------------------------------------------ factories
def system(config: NeuPIMsConfig | str, model: str, npu: NPUSpec | None = None, pim: PIMSpec | None = None,
           tp: int | None = None, pp: int | None = None) -> NpuSystem | GpuSystem:
    """An IterationModel for a preset name or config and a library model (gpt3-7b ...), with the artifact's
    parallelism unless `tp`/`pp` say otherwise."""
    config = PRESETS[config] if isinstance(config, str) else config
    shard = model_shard(model, tp, pp)
    if config.device == "gpu":
        from archsim.gpu.load import load_gpu
        from archsim.gpu.params import load_calibration
        from archsim.model.gpu_kernels import family_of

        return GpuSystem(config, shard, load_gpu(GPU_PRESET), load_calibration().family_params(family_of(GPU_KERNEL)))
    pim = replace(pim or PIMSpec(), row_buffers=config.row_buffers)
    return NpuSystem(config, shard, npu or NPUSpec(), pim)
