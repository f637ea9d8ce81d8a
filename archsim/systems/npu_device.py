"""The NPU as a device: layer ops on weight-stationary systolic arrays and SIMD vector units, over an HBM.

Timing of the units is `archsim.systems.npu` (the NeuPIMs NPU, ../shared/reference/pim.md §1.2); this module says
which unit runs what of an op (`archsim.systems.step.Op`) and what crosses the HBM interface:
- GEMMs (`archsim.systems.gemms`) run on the arrays, `npu.gemm_time` (a GEMM's `count` independent products, its
  heads or experts, dealt to the arrays together), each taking max(array time, its stationary operand's HBM
  stream): weights always come from HBM (less what `streamed_fraction` says is still in SRAM); a K/V operand is on
  chip in prefill (this step's own K and V, just projected). The stream is of the op's words
  (`op.binding.word_bytes`, as every other byte here), not the preset's FP16.
- A decode op's products with a K/V operand (its attention: each request reads its own K and V, so the call's
  requests are independent of each other) run beside the call's HBM traffic and vector work: with one row per fold
  (multi-head attention's GEMVs, ~1 FLOP per byte, far below the arrays' ridge) on the vector units, one MAC an op
  (a lane-cycle; priced as two ops, below), as does every other Einsum of the cascade (exp, max, add, division,
  GELU, a norm's sum of squares): `npu.vector_time_s` of their op count; with more rows (grouped-query attention,
  a KV head's group of query rows) on the arrays, each Einsum's folds over the whole call dealt to them at once
  (`npu.dealt_cycles`, one fill and drain an array), one Einsum after another (all the logits, then all the
  attends, which read the softmax's output); their K and V stream from HBM. Under the artifact's fold timings
  (one array streaming 8x faster, ops one at a time) they are GEMMs in order instead.
- The HBM streams at the interface's peak (`npu.NPUSpec`'s channels x width x rate; no efficiency factor, an
  assumption: the NeuPIMs artifact's cycle-level DRAM reached 0.56-0.91 of it on weight streams: neupims-artifact.md).
- Other HBM traffic, beside the vector work: the KV cache an op reads outside an array GEMM (decode attention on
  the vector units) or writes (the new tokens' K and V), and weights outside GEMMs (a norm's gain). Activations
  and intermediates stay in SRAM (a 512 x 28672 FP16 activation is 29 MB of 128 MiB; assumed, not checked
  against `NPUSpec.sram_bytes`).
- With `NPUSpec.attention_timing = "artifact-fused-mha"` (the NeuPIMs npu-only branch, a named compatibility
  option) a decode attention with such GEMVs runs instead as the artifact's FusedMHA on the arrays,
  `npu.fused_mha_cycles` per query head, its softmax at the vector units' rate inside the chain, each request taking
  max(that latency chain, its K/V bytes / bandwidth); the arrays count as occupied for the whole chain.
The ops of one call run in order: time = the GEMMs' times (and fused MHAs') + max(vector time, the decode K/V
products' array time, other HBM traffic / bandwidth). Before, a GQA decode product ran alone on one array with its
fill and drain (Llama-3-8B, 64 requests of 128 tokens at TP 4: 98.1 us of attention a layer against 8.8 us of K/V;
now the K/V stream's 8.8, as MHA's).
Busy units: `<name>` the arrays' useful MAC time (GEMM FLOPs / peak, so its utilization is MAC utilization),
`<name>_array` their occupancy (fill and drain included), `<name>_vector` the vector units' time, `hbm` the HBM
transfer time.
Energy (pim.md §5, "ALU 0.32 pJ per op"): every arithmetic op at `op_energy_pj`, a MAC two, on the arrays and on
the vector units alike (a decode GEMV's MACs, a fused MHA's softmax, a norm's ops), so a MAC costs the same on every
unit and path; x the op's word bytes / 2: `op_energy_pj` is a price at 16-bit operands (the NPU is FP16, pim.md §1.2
and §5, and so is the AttAcc ALU the price comes from) and an op of other words pays it x their width / 2
(`archsim.systems.arithmetic_energy`, every per-FLOP price's rule; the arrays are assumed to compute an op's words
at their width, at the FP16 rate). A bank-PIM's MACs cost two host ops by the same rule
(`archsim.systems.pim_device`), the same as here at every width. HBM traffic at the memory's off-chip access energy.
SRAM and static energy are not modelled.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from archsim.arch.pim import PIMSpec
from archsim.systems import npu as npu_model
from archsim.systems import pim as pim_model
from archsim.systems.arithmetic_energy import flops_at_16_bit
from archsim.systems.device import OpCost
from archsim.systems.gemms import op_gemms
from archsim.systems.npu import NPUSpec
from archsim.systems.step import KV_CACHE, WEIGHTS, Op, flops_of

# what an op adds to a call's sums (`_terms`): per GEMM (time, HBM time, array time, MAC time); per decode K/V
# product ((einsums, rows), folds, HBM time, MAC time); vector ops; vector FLOPs; other HBM bytes (None: a fused MHA)
_Terms = tuple[tuple[tuple[float, float, float, float], ...],
               tuple[tuple[tuple[tuple[str, ...], int], int, float, float], ...], int, int, float | None]


@dataclass(frozen=True)
class NpuDevice:
    """The NeuPIMs NPU over the HBM `memory` as a serving device (module docstring): GEMMs on the arrays, GEMVs and
    elementwise work on the vector units."""

    name: str
    spec: NPUSpec
    memory: PIMSpec  # the HBM it streams from (a bank-PIM HBM, used as memory or beside its PIM units)
    kind: str = "npu"

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return pim_model.external_bytes_per_s(self.memory)

    @property
    def capacity_bytes(self) -> float:
        """The HBM less its activation buffer (pim.md §1.2)."""
        return self.memory.capacity_bytes - self.memory.activation_buffer_bytes

    def cost(self, ops: Sequence[Op], streamed_fraction: float = 1.0) -> OpCost:
        return _cost(self, tuple(ops), streamed_fraction)

    @functools.cached_property
    def _op_terms(self) -> dict[tuple[Op, float], _Terms]:
        """(op, streamed fraction) -> `_terms` of the op: a decode batch's attention ops repeat across iterations."""
        return {}


# 4,096 calls: `archsim reproduce neupims` makes 4,283 (3,905 hits, none lost at this bound); a sweep point ~470.
# Each entry keeps its device alive, with every op's terms the device remembers (`_op_terms`): 65,536 had kept
# ~140 points' devices.
@functools.lru_cache(maxsize=4096)
def _cost(device: NpuDevice, ops: tuple[Op, ...], streamed_fraction: float) -> OpCost:
    """`NpuDevice.cost`, remembered: modes and sub-batches of one size run the same dense ops. Each op's terms are
    remembered too (`_terms`) and summed in the ops' order, as they were found. Every caller gets the one OpCost,
    so its `busy_s` is read-only (a caller's edit would change every later cost of these ops)."""
    npu, bw = device.spec, device.bandwidth_bytes_per_s
    gemm_s = gemm_memory_s = mac_s = array_s = vector_ops = other_bytes = kv_memory_s = 0.0
    kv_folds: dict[tuple[tuple[str, ...], int], int] = {}  # (einsums, rows) -> the call's decode K/V folds
    by_width: dict[int, list[float]] = {}  # word bytes -> [MAC time, vector FLOPs] of the ops of those words
    known = device._op_terms
    for op in ops:
        terms = known.get((op, streamed_fraction))
        if terms is None:
            terms = known[(op, streamed_fraction)] = _terms(device, op, streamed_fraction)
        gemms, kv_products, op_vector_ops, op_vector_flops, op_other_bytes = terms
        arithmetic = by_width.setdefault(op.binding.word_bytes, [0.0, 0.0])
        for time_s, memory_s, op_array_s, op_mac_s in gemms:
            gemm_s += time_s
            gemm_memory_s += memory_s
            array_s += op_array_s
            mac_s += op_mac_s
            arithmetic[0] += op_mac_s
        for key, folds, memory_s, op_mac_s in kv_products:
            kv_folds[key] = kv_folds.get(key, 0) + folds
            kv_memory_s += memory_s
            mac_s += op_mac_s
            arithmetic[0] += op_mac_s
        arithmetic[1] += op_vector_flops
        if op_other_bytes is not None:
            vector_ops += op_vector_ops
            other_bytes += op_other_bytes
    kv_array_s = sum(npu_model.dealt_cycles(npu, folds, rows) for (_, rows), folds in kv_folds.items()) / npu.clock_hz
    array_s += kv_array_s
    other_s = other_bytes / bw + kv_memory_s
    memory_s = gemm_memory_s + other_s
    vector_s = npu_model.vector_time_s(npu, vector_ops)
    time_s = gemm_s + max(vector_s, kv_array_s, other_s)
    flops_16_bit = sum(flops_at_16_bit(width_mac_s * npu.peak_flops_per_s + width_vector_flops, word_bytes)
                       for word_bytes, (width_mac_s, width_vector_flops) in by_width.items())
    energy_pj = flops_16_bit * npu.op_energy_pj + memory_s * bw * 8 * device.memory.offchip_pj_per_bit
    busy = {device.name: mac_s, f"{device.name}_array": array_s, f"{device.name}_vector": vector_s,
            f"{device.name}_hbm": memory_s}  # every unit under its device's name: a device named hbm stays apart
    return OpCost(time_s, memory_s, energy_pj * 1e-12, MappingProxyType(busy))


def _terms(device: NpuDevice, op: Op, streamed_fraction: float) -> _Terms:
    """What `op` adds to `_cost`'s sums (`_Terms`): per GEMM (or the fused MHA) its (time, HBM time, array time, MAC
    time); per decode K/V product on the arrays its (einsums, rows), folds, HBM time and MAC time, which the call
    deals to the arrays with its other requests' (module docstring); its vector ops (timed), the vector units'
    arithmetic ops (priced: a MAC two) and other HBM bytes (None for a fused MHA, which has none; its softmax is
    priced, its time inside the chain)."""
    npu, bw = device.spec, device.bandwidth_bytes_per_s
    if npu.attention_timing == "artifact-fused-mha" and _is_decode_gemv_attention(op):
        fused_s, kv_s = _fused_mha_s(npu, op), _other_hbm_bytes(op, set(), streamed_fraction) / bw
        macs = op.ops.get("mac", 0)
        return (((max(fused_s, kv_s), kv_s, fused_s, 2.0 * macs / npu.peak_flops_per_s),), (), 0,
                op.flops - 2 * macs, None)
    on_arrays: set[str] = set()
    streamed: set[str] = set()
    gemms, kv_products = [], []
    for gemm in op_gemms(op):
        if gemm.role == KV_CACHE and gemm.rows <= 1:
            continue
        on_arrays.update(gemm.einsums)
        from_hbm = gemm.role == WEIGHTS or op.phase == "decode"
        if from_hbm:
            streamed.update(gemm.tensors)
        mac_s = gemm.flops / npu.peak_flops_per_s
        if gemm.role == KV_CACHE and from_hbm and npu.fold_timing in npu_model.DEALT_FOLD_TIMINGS:
            kv_products.append(((gemm.einsums, gemm.rows), gemm.count * npu_model.gemm_folds(npu, gemm.k, gemm.n),
                                gemm.stationary_bytes / bw, mac_s))
            continue
        timed = npu_model.gemm_time(npu, gemm.rows, gemm.k, gemm.n, bw if from_hbm else math.inf,
                                    streamed_fraction if gemm.role == WEIGHTS else 1.0, op.binding.word_bytes,
                                    gemm.count)
        gemms.append((timed.time_s, timed.memory_s, timed.array_s, mac_s))
    on_vectors = [counts for einsum, counts in op.analysis.ops.items() if einsum not in on_arrays]
    vector_ops = sum(n for counts in on_vectors for n in counts.values())
    vector_flops = sum(flops_of(counts) for counts in on_vectors)
    return tuple(gemms), tuple(kv_products), vector_ops, vector_flops, _other_hbm_bytes(op, streamed,
                                                                                         streamed_fraction)


def _is_decode_gemv_attention(op: Op) -> bool:
    """A decode op with a K/V operand of one row per fold: multi-head attention's GEMVs."""
    return op.phase == "decode" and any(g.role == KV_CACHE and g.rows <= 1 for g in op_gemms(op))


def _fused_mha_s(npu: NPUSpec, op: Op) -> float:
    """The artifact's FusedMHA of one request's attention op: `npu.fused_mha_cycles` per query head, its softmax
    (the op's non-MAC ops of one head) at the vector units' rate."""
    params = op.binding.params
    heads = int(params["heads"])
    softmax_cycles = npu_model.vector_time_s(npu, sum(n for kind, n in op.ops.items() if kind != "mac")) \
        * npu.clock_hz / heads
    cycles = npu_model.fused_mha_cycles(npu, int(params["seq_len"]), int(params["head_dim"]), softmax_cycles)
    return heads * cycles / npu.clock_hz


def _other_hbm_bytes(op: Op, streamed: set[str], weight_fraction: float) -> float:
    """HBM bytes of `op` outside its GEMM streams: KV cache written, KV cache read in decode, and `weight_fraction`
    of its other weights (a norm's gain)."""
    total = 0.0
    roles = op.tensor_roles
    for tensor in op.tensors:
        if tensor.name in streamed:
            continue
        role = roles[tensor.name]
        written = tensor.kind == "output"
        if role == WEIGHTS:
            total += tensor.bytes * weight_fraction
        elif role == KV_CACHE and (written or op.phase == "decode"):
            total += tensor.bytes
    return total
