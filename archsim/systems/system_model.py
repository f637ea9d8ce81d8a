"""A system spec running a workload: the serving simulator's `IterationModel`, built from devices, placement and a
schedule over the ops of the library's cascades.

`archsim.systems.models.system_model(system, workload)`, the factory above this module and the ones built on it
(offloading, co-processing), cuts the workload for one device (heads, kv_heads and ffn_dim / TP, experts / EP,
the layers over PP stages: `archsim.systems.sharding`, which states its assumptions; the parallelism of
`System.parallelism_for`), builds a cost model per device (`archsim.systems.device`) and checks that one device's
share of the weights fits its memory. An iteration (`Batch`: prompts to prefill, contexts to decode) is one pass
over the model's decoder layers:
- ops: one decoder layer of `archsim.systems.step.layer_ops` with every new token of the iteration in its
  projections, FFN, norms and residuals (Orca's selective batching), and one attention op per request (a decode
  op bound to the keys its context has it read, `step.decode_keys`: the context, or with a sliding window at most
  window + sinks; a prefill op to its prompt); FLOPs and bytes are `analyze()` of each bound cascade. A bank-PIM,
  whose placement reads per-request times off per-length tables, is given those keys (`SystemModel.decode_keys`),
  as every other device reads them off the ops.
- placement: the system's rules, op by op (the dense ops in the decode phase when any request decodes), a
  `faster` rule's by timing the op on its device and on the weight holder (`runs_faster`); a rule that reads Op/B
  or times the op can put the decode attention of one batch's requests on two devices (their contexts move it:
  `decode_groups`), and then each device runs its share as its own call, one after the other, and the batch
  runs `overlapped` under sub-batch interleaving (whose sub-batches alternate one attention device with the host);
- layer time (`layer_phases`): the ops before the decode attention (`pre`: norm, QKV projection, prompt attention),
  the decode attention, the ops after it (`post`), each costed by its device. The schedule composes them:
  - `blocked`: one after another; attention split between a bank-PIM and its host runs GEMVs, then softmax (with
    `attention_sync: barrier`, the naive artifact's: every channel's logits, the softmax, every channel's attend);
  - `overlapped`: as blocked, but the host's softmax overlaps the PIM GEMVs at head granularity (NeuPIMs without
    SBI, §6.1): max of the two;
  - `sub-batch-interleaving` (NeuPIMs, pim.md §1.4; `schedule.sub_batches` is 2, the only count the spec accepts):
    the decodes split in two sub-batches by the PIM's Algorithm 3 (the prompts longest first, each to the
    sub-batch with fewer prompt tokens so far: `_split_prompts`, whatever their order); stages A..F run one
    sub-batch's NPU work beside the other's PIM attention. A stage takes max(NPU time, PIM time) with two row
    buffers, max(NPU time, NPU HBM time + PIM time) with one (the NPU's reads and PIM commands then serialise:
    `sbi_stage_s`). The N layers of a stage take A + B + (N-1)(C + D) + E + F, or N (C + D) with `layer_time:
    steady-state` (the artifact's one layer of a frozen batch). The second sub-batch streams the weights less
    `resident_weight_bytes` kept on chip (at most the NPU's `sram_bytes`: `system_checks` refuses more). Below
    `min_batch` decodes the schedule is `overlapped` (the artifact's 256), and so it is where the batch's decode
    attention is not all on one bank-PIM (`decode_groups`). With `only_when_faster` it is also `overlapped` where
    that is no slower: the iteration's decoder layers (every PP stage's, SBI with its fill and drain) are timed both
    ways and SBI runs only if it takes less time (`_decoder_layers_s`; time alone, not energy: SBI's second weight
    stream costs energy where it wins time).
  - `co-processing` (Duplex, pim.md §2.3): the layer's dependency chain in order, each op on its device, with
    max() where devices do not wait on each other, and expert co-processing (+PE, +ET): its assumptions are in
    `archsim.systems.coprocessing`'s docstring, beside its code.
  - `ping-pong` and `staggered` (attention offloading, Lamina): the factory returns the
    `archsim.systems.offload.OffloadModel` of the system, which composes its own iteration.
- Messages between devices (`archsim.systems.system_messages`, which states their assumptions): a layer's TP
  all-reduces (`allreduce_s`, blocked, in `LayerPhases.allreduce_s`), a MoE layer's expert exchange and the hops
  between PP stages (below).
- PP stages (`sharding.pp_partition`: vLLM's default partition, which may leave the stages uneven): one batch is
  in flight, so the stages run one after another and an iteration runs every layer of the model once
  (`SystemModel.stage_runs`: each stage its own layers, its own SBI fill and drain), with pp - 1 hops of the new
  tokens' activations between them (`system_messages.stage_hops_s`). PP never shortens an iteration: it cuts the
  weights per device and adds KV room.
- The LM head (`step.lm_head_op`: hidden onto the vocabulary, vLLM's vocab-parallel head cut TP ways) follows the
  last layer once per iteration, on the device holding the weights, over one token per sequence: a decode's new
  token and a prompt's last position (vLLM computes logits only there); every TP rank of the last stage runs its
  share, so its energy counts TP times (`lm_head_cost`). `schedule.lm_head: left-out` times the decoder layers
  only (the NeuPIMs artifact's throughput: batch over the layers' time).
- Expert parallelism (`ep` > 1; the Duplex paper's EP across nodes, DeepSpeed-MoE's and vLLM's data-parallel
  attention with expert parallelism): EP groups of TP x PP devices each. A group holds every non-expert weight
  and 1/EP of the experts (`sharding.shard`), and serves its own requests (`sharding.ep_groups`: those the batch
  assigns it, `Batch.decode_ep_groups` and `prefill_ep_groups`, the serving simulator's from admission until each
  leaves; else 1/EP of them dealt round-robin by position), as a data-parallel replica of the attention and dense
  layers; its experts take the tokens routed to them from every group, under balanced routing as many as its own
  requests route (so a group's MoE op is its own tokens over its E/EP experts; its router's logits are then over
  those experts too, under 0.1 % of the op). Each MoE
  layer adds the tokens' exchange (`system_messages.expert_exchange_s`: a dispatch and a combine all-to-all over
  the link named `ep`). The iteration takes the slowest group; energy sums every group's devices; price counts
  TP x PP x EP ranks (each with `system_checks.rank_devices` of every device: one, a Logic-PIM's `count` stacks),
  and the KV capacity TP x PP x EP devices with even stages (below).
- A model that mixes dense and MoE layers (`moe_every` > 1: GLaM) runs each kind as its own layer: each stage
  holds the layers of each kind it holds (`SystemModel.stage_kind_counts`: the model's layers in order cut by the
  stages, GLaM's every other layer MoE), which an iteration runs (`stage_runs`) and its weights count. Sub-batch
  interleaving over mixed layers is refused.
Energy is every device's op energy over the TP x PP devices, plus their static power (`static_w`: a per-action energy's,
`archsim.systems.gpu_device`) over the iteration's wall time, plus, for a device priced by board power
(`system_types.board_power_w`: a `gpu` or `memory-pool` with `energy_model: tdp`, a `chip` with a power figure, whose op
energy is that power for the op's time), that power over the time its rank spends in the iteration's communication
(`SystemModel.board_w` x `communication_rank_s`): the GPU runs the collective's kernels or waits in it at board power
(TDP stays an upper bound), so a slower link costs energy as it costs time. A rank's communication: its layers'
all-reduces and expert exchanges, with EP the wait in the exchange for the slowest group (each kind of layer's slowest:
the all-to-all is where the groups meet), and the stage hops it sends or receives (2 x TP ranks a hop). A rank idle
while another PP stage runs, or while a device beside it in the rank works (co-processing), draws nothing, as before.
Busy seconds are one device's, over its PP stages. An engine waiting for requests between iterations draws nothing.
Weights (`weight_bytes_per_device`): a device's decoder layers plus its share of the embedding table and the LM
head (`sharding.vocab_tables`: which stages hold them), the heaviest stage's (`stage_weight_bytes`: each stage its
own layers of each kind, `stage_kind_counts`, and its tables), against which the fit is checked. The LM head's GEMM
is not in an iteration's ops (the ops are the decoder layers'): its time and energy are added once per iteration
by `lm_head_cost`, unless `schedule.lm_head: left-out`.
KV cache: `kv_bytes_per_token` is K and V of one token over all layers and TP ranks (the QKV op's KV-cache
outputs), and a request holds its whole context's (a sliding window sets the keys read, not the keys kept, on
every system alike: the serving simulator's pages grow with the context); `kv_capacity_bytes` the memory of the
TP x PP weight-holding devices less their weights (the heaviest device's on every one, as vLLM sizes every
worker's cache by the smallest room) with even stages; with uneven ones each stage's room holds tokens at its own
layers' share of the KV, and the cache holds the fewest any stage can (vLLM takes the minimum of the workers'
blocks, a worker's block its own layers'): the minimum over the stages, as bytes of `kv_bytes_per_token`, of a
stage's room x layers / its layers on each TP x EP rank. A
Logic-PIM's stacks are the HBM of the device beside it (Duplex's xPU), so with one a rank's memory is the smaller
of the two (`SystemModel.memory_bytes_per_device`); the factory checks that the weights fit it (else it advises
raising tp or pp, or, with attention offloading, whose tp is the compute devices over the replicas and whose pp
is 1, the compute pool's `count` with tp; where the weights would fit the device's whole memory, the error names
its `memory_utilization`, the share that leaves them out), and that a TP group fits the weight-holding device's
`count` (`system_checks.check_tp_group`).
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from archsim.errors import SpecError
from archsim.memo import remembered
from archsim.outputs import beyond_text, binary_size_text, capacity_text
from archsim.systems import npu as npu_model
from archsim.systems.device import DeviceModel, OpCost, summed
from archsim.systems.expert_shares import experts_op, rank_experts, rank_mean, tokens_per_expert
from archsim.systems.gpu_device import ACTIVATION_RESERVE_BYTES, GpuDevice
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.npu_device import NpuDevice
from archsim.systems.pim_device import BankPimDevice, PimPlacement
from archsim.systems.sharding import (
    ep_groups,
    model_vocab_tables,
    pp_partition,
    shard,
    shard_workload,
    vocab_tables,
)
from archsim.systems.step import (
    DECODE_SUMS,
    KV_CACHE,
    WEIGHTS,
    DecodeOps,
    LayerCascades,
    Op,
    Step,
    UnrunnableOp,
    block_of,
    decode_keys_limit,
    layer_cascades,
    layer_kinds,
    layer_op,
    layer_ops,
    lm_head_op,
    resident_tokens,
)
from archsim.systems.system_checks import (
    check_tp_group,
    offload_micro_batches,
    offload_replicas,
    offload_replicas_text,
    rank_devices,
    weight_holder,
)
from archsim.systems.system_messages import allreduce_s, expert_exchange_s, stage_hops_s
from archsim.systems.system_types import CONTEXT_PARALLEL, OFFLOAD_SCHEDULES, Parallelism, System, board_power_w
from archsim.systems.working_set import FFN_OPS, layer_working_bytes
from archsim.workload import Workload, max_size

ATTENTION = "attention"
LOGIC_PIM = "logic-pim"
WORKING_SET_TOKENS = 1024  # the layer `SystemModel.working_bytes_per_token` is read off
SPLIT_KINDS = ("bank-pim",)  # devices whose attention leaves its softmax to a host
# the members of a `sizes_model` (no system, no devices) that read only the workload, its shard and the parallelism
SIZES_MEMBERS = ("ops", "kv_bytes_per_token", "kv_bytes_per_token_layer", "weight_bytes_per_layer",
                 "layer_weight_bytes_per_device", "stage_weight_bytes", "weight_bytes_per_device",
                 "working_bytes_per_token", "iteration_memory", "stage_layers", "devices_counted")


@dataclass(frozen=True)
class LayerPhases:
    """One decoder layer of one device in one iteration, per sub-batch (one unless SBI): the work before the
    decode attention (`pre`), after it (`post`), the attention's device time (`attention_s`, a bank-PIM's slowest
    channel; the devices' times added where its requests run on two, `decode_groups`), its host softmax
    (`softmax_s`), the attention as the schedule charges it (`mha_s`), SBI's stage
    times A..F (`stages_s`, empty otherwise), the requests' PIM placement, and the sums every unit was busy;
    `costed`: per sub-batch, the (decodes, prompts, streamed weight fraction) its `pre` and `post` are
    `dense_phase_costs` of (empty for a layer a schedule composes), from which a replay draws their ops by device."""

    pre: tuple[OpCost, ...]
    post: tuple[OpCost, ...]
    attention: OpCost  # all sub-batches
    attention_s: tuple[float, ...]
    softmax_s: tuple[float, ...]
    mha_s: tuple[float, ...]
    stages_s: tuple[float, ...]
    placement: PimPlacement | None
    allreduce_s: float
    overlap: bool  # the attention's softmax overlaps its GEMVs
    steady_state: bool = False  # SBI: a device's layers take N (C + D), the pipeline's fill and drain left out
    coprocessed_s: float | None = None  # co-processing: the layer's time as the schedule composes it
    costed: tuple[tuple[int, tuple[int, ...], float], ...] = ()

    @property
    def sub_batch_interleaving(self) -> bool:
        """The layer ran under sub-batch interleaving: it has stage times A..F."""
        return bool(self.stages_s)

    @property
    def layer_s(self) -> float:
        """One layer in steady state: pre + attention + post when blocked, stages C + D under SBI."""
        if self.sub_batch_interleaving:
            return self.stages_s[2] + self.stages_s[3] + self.allreduce_s
        if self.coprocessed_s is not None:
            return self.coprocessed_s + self.allreduce_s
        return self.pre[0].time_s + self.mha_s[0] + self.post[0].time_s + self.allreduce_s

    def device_s(self, layers: int) -> float:
        """A device's `layers` layers: layers x layer when blocked, A + B + (N-1)(C + D) + E + F under SBI."""
        if self.sub_batch_interleaving and not self.steady_state:
            a, b, c, d, e, f = self.stages_s
            return a + b + (layers - 1) * (c + d) + e + f + layers * self.allreduce_s
        return layers * self.layer_s

    @property
    def total(self) -> OpCost:
        """Everything the layer spent, all sub-batches: the attention, then each part added in turn."""
        return summed(self.attention, (*self.pre, *self.post))


@dataclass(frozen=True)
class IterationMemory:
    """What an iteration holds on a device (`SystemModel.iteration_memory`), in bytes."""

    weights_bytes: float
    kv_bytes: float  # the KV cache of the batch's requests, every layer of the device
    working_bytes: float  # one layer's activations while it runs

    @property
    def total_bytes(self) -> float:
        """Weights, KV cache and working set together."""
        return self.weights_bytes + self.kv_bytes + self.working_bytes


@dataclass(frozen=True)
class SystemModel:
    """A system running one workload; an `IterationModel` of the serving simulator. `system` is None only in a
    `sizes_model`, whose members other than `SIZES_MEMBERS` refuse (`system_of`)."""

    system: System | None
    workload: Workload
    parallelism: Parallelism
    shard: Workload  # one device's sizes
    block: str
    devices: Mapping[str, DeviceModel]
    layer_kind: str | None = None  # moe | dense for one kind of a model mixing them; None: the model's one kind
    # a co-processing schedule's layer (archsim.systems.coprocessing.coprocessed_layer), given by the factory
    # archsim.systems.models.system_model, which knows the modules built on this one
    compose_layer: Callable[..., LayerPhases] | None = None
    # the memory an iteration with prompts may fill on the weight-holding device (`check_memory`): None, not
    # checked; the factory gives a GPU's the serving engine's share of its DRAM
    engine_bytes: float | None = None

    def system_of(self, member: str) -> System:
        """`system`, or a ValueError naming `member` where there is none (a `sizes_model`)."""
        if self.system is None:
            raise ValueError(f"SystemModel.{member} needs a system: this is sizes_model({self.workload.name}), "
                             f"which has none and reads only {', '.join(SIZES_MEMBERS)}")
        return self.system

    @property
    def name(self) -> str:
        """The system, the workload and the parallel degrees, for messages."""
        par, system = self.parallelism, self.system_of("name")
        return f"{system.name}:{self.workload.name} tp{par.tp} pp{par.pp}" + (f" ep{par.ep}" if par.ep > 1 else "")

    @property
    def devices_counted(self) -> int:
        """Ranks of each device kind the model runs on: TP x PP x EP."""
        par = self.parallelism
        return par.tp * par.pp * par.ep

    @property
    def price_per_hour(self) -> float:
        """USD per hour of the devices the model runs on: TP x PP x EP ranks, each with `rank_devices` of every
        device of the spec (one; a Logic-PIM's `count` stacks), each at its `price_per_hour` (as energy is counted);
        NaN when a device has no `price_per_hour`."""
        devices = self.system_of("price_per_hour").devices.values()
        if any(d.price_per_hour is None for d in devices):
            return math.nan
        return self.devices_counted * float(sum(rank_devices(d) * d.price_per_hour for d in devices))

    @functools.cached_property
    def static_w(self) -> float:
        """Static power of the devices the model runs on (counted as `price_per_hour` counts them), charged over
        every iteration's wall time (`archsim.systems.gpu_device`: busy or idle within it); worked out once."""
        devices = self.system_of("static_w").devices.values()
        return self.devices_counted * sum(rank_devices(d) * d.static_w for d in devices)

    @functools.cached_property
    def board_w(self) -> float:
        """Board power of one rank's devices priced by it (`board_power_w`, `rank_devices` of each), drawn over the
        rank's communication (module docstring); 0 without such a device. Worked out once."""
        devices = self.system_of("board_w").devices.values()
        return sum(rank_devices(d) * w for d in devices if (w := board_power_w(d)) is not None)

    @functools.cached_property
    def stage_layers(self) -> tuple[int, ...]:
        """Decoder layers of each PP stage, first to last (`pp_partition`: vLLM's default)."""
        return pp_partition(int(self.workload.params["layers"]), self.parallelism.pp)

    @property
    def layers_per_device(self) -> int:
        """The most decoder layers a device holds: ceil(layers / pp)."""
        return max(self.stage_layers)

    @functools.cached_property
    def shard_key(self) -> tuple:
        """The shard's identity and layer kind, for the op cache."""
        return (self.shard.name, self.shard.path, tuple(sorted(self.shard.params.items())), self.block,
                self.layer_kind)

    @functools.cached_property
    def kinds(self) -> dict[str | None, int]:
        """Layers of each kind on the stage holding the most layers (`stage_kind_counts`): {None: its layers} for a
        model of one kind of layer, {"moe": n, "dense": m} for one that mixes them (`moe_every` > 1)."""
        return self.stage_kind_counts[self.stage_layers.index(self.layers_per_device)]

    @functools.cached_property
    def stage_kind_counts(self) -> tuple[dict[str | None, int], ...]:
        """Layers of each kind on each PP stage, first to last: the model's layers in order (`step.layer_kinds`)
        cut by `stage_layers`, so a stage holds the kinds of the layers it holds ({None: n} for one kind)."""
        kinds = layer_kinds(self.workload)
        if self.layer_kind is not None or len(set(kinds)) == 1:
            return tuple({None: n} for n in self.stage_layers)
        bounds = itertools.accumulate(self.stage_layers, initial=0)
        return tuple({kind: kinds[start:end].count(kind) for kind in dict.fromkeys(kinds)}
                     for start, end in itertools.pairwise(bounds))

    @functools.cached_property
    def stage_runs(self) -> dict[str | None, tuple[tuple[int, int], ...]]:
        """Per kind of layer (the keys of `kinds`), the stages an iteration runs one after another as (layers of the
        kind on a stage, stages holding that many), largest first: `stage_kind_counts` grouped, so every layer of
        the model runs once, each stage with its own layers (its own SBI fill and drain)."""
        runs: dict[str | None, collections.Counter] = {}
        for counts in self.stage_kind_counts:
            for kind, layers in counts.items():
                if layers:
                    runs.setdefault(kind, collections.Counter())[layers] += 1
        return {kind: tuple(sorted(by_size.items(), reverse=True)) for kind, by_size in runs.items()}

    @property
    def by_kind(self) -> dict[str | None, SystemModel]:
        """This model per kind of layer, with the number of such layers on a device (`kinds`): {None: this model}
        for a model of one kind, built per call, so the model holds no reference to itself (a reference cycle
        outlives a serving run until a full pass of the garbage collector, which a sweep seldom runs)."""
        return {None: self} if None in self.kinds else self._kind_models

    @functools.cached_property
    def _kind_models(self) -> dict[str | None, SystemModel]:
        """A model mixing layer kinds as one model per kind (`by_kind`)."""
        return {kind: replace(self, layer_kind=kind) for kind in self.kinds}

    def ops(self, phase: str, batch: int, seq_len: int) -> tuple[Op, ...]:
        """One device's decoder layer in a step (`layer_ops` of the shard, bound to the model's `cascades`),
        remembered per sizes and the size limit (`_cached_ops`)."""
        return _cached_ops(self.shard_key, self.cascades(phase), max_size(), phase, batch, seq_len)

    def attention(self, phase: str, seq_len: int) -> Op:
        """One request's attention op (`layer_op` of the shard, bound to the model's `cascades`), remembered per
        length: an iteration asks for one per request."""
        known = self._attention_ops.setdefault(phase, {})
        op = known.get(seq_len)
        if op is None:
            op = known[seq_len] = _cached_attention(self.shard_key, self.cascades(phase), max_size(), phase, seq_len)
        return op

    def cascades(self, phase: str) -> LayerCascades:
        """The library cascades the shard's layer binds in `phase` (`step.layer_cascades`), loaded as their files read
        when the model first asks for the phase's ops and kept by the model with the ops it derives from them (as a
        model keeps its attention ops and byte counts): a model built after a cascade file is edited binds the edit,
        one built before keeps what it has bound, and the shared op caches are keyed by the cascades bound, not by
        their names."""
        found = self._cascades.get(phase)
        if found is None:
            found = self._cascades[phase] = layer_cascades(self.shard, phase, self.block, (self.layer_kind,))
        return found

    @functools.cached_property
    def _cascades(self) -> dict[str, LayerCascades]:
        """Phase -> the layer's library cascades (`cascades`)."""
        return {}

    def decode_attention(self, contexts: Sequence[int]) -> list[Op]:
        """`attention("decode", c)` of each context (whole numbers, ints or floats): one dictionary look-up per
        request once the lengths are known."""
        known = self._attention_ops.setdefault("decode", {})
        return remembered(known, contexts, lambda i: self.attention("decode", int(contexts[i])))

    def decode_keys(self, contexts: Sequence[int]) -> Sequence[int]:
        """Keys each decode request reads (`step.decode_keys` of the shard): `contexts` themselves (the same object)
        without a sliding window, else each context capped at window + sinks (an array for an array). A bank-PIM's
        placement reads these: its GEMV tables, Algorithm 2's estimate and Algorithm 3's longest-first order (where
        requests past the window tie and keep their arrival order)."""
        limit = decode_keys_limit(self.shard)
        if limit is None:
            return contexts
        if isinstance(contexts, np.ndarray):
            return np.minimum(contexts, limit)
        return [min(c, limit) for c in contexts]

    def decode_ops(self, contexts: Sequence[int]) -> DecodeOps:
        """`decode_attention` of these contexts (whole numbers: ints, floats or an array) as `DecodeOps`, whose values
        and totals (`_decode_values`) are worked out only when a device asks (an op's FLOPs need its analysis)."""
        at = contexts.tolist() if isinstance(contexts, np.ndarray) else contexts
        ops = self.decode_attention(at)
        return DecodeOps(ops, functools.partial(self._decode_values, at, ops), at)

    def _decode_values(self, at: Sequence[int], ops: Sequence[Op], name: str) -> list[float]:
        """`DECODE_SUMS[name]` of each of `ops` (whose contexts are `at`), in order: read off the table `name`
        (context -> the value of that context's op, filled from the ops for contexts not yet in it)."""
        table = self._decode_tables.get(name)
        if table is None:
            table = self._decode_tables[name] = {}
        return remembered(table, at, lambda i: DECODE_SUMS[name](ops[i]))

    @functools.cached_property
    def _decode_tables(self) -> dict[str, dict[int, float]]:
        """Table name -> context -> the value of that context's decode op."""
        return {}

    @functools.cached_property
    def _attention_ops(self) -> dict[str, dict[int, Op]]:
        """Phase -> length -> the attention op."""
        return {}

    @functools.cached_property
    def _expert_costs(self) -> dict[tuple, OpCost]:
        return {}

    @functools.cached_property
    def _lm_head_costs(self) -> dict[int, OpCost]:
        return {}

    def lm_head_cost(self, sequences: int) -> OpCost:
        """One TP rank's LM head over one token of each of `sequences` sequences (module docstring), on the device
        holding the weights; nothing for none or with `schedule.lm_head: left-out`. Remembered per count. The head is
        an `output-projection` op: an `architecture` device holding the weights must map that cascade (it maps
        one; another is refused naming its mapping)."""
        found = self._lm_head_costs.get(sequences)
        if found is None:
            timed = sequences and self.system_of("lm_head_cost").schedule.lm_head == "timed"
            op = lm_head_op(self.workload, sequences, self.parallelism.tp) if timed else None
            found = self._lm_head_costs[sequences] = self.weight_device.cost([op]) if op else OpCost()
        return found

    @functools.cached_property
    def _bank_pims(self) -> tuple[BankPimDevice, ...]:
        """The bank-PIM devices, in the spec's order: an iteration with prompts checks each (`check_memory`)."""
        return tuple(d for d in self.devices.values() if isinstance(d, BankPimDevice))

    @functools.cached_property
    def _placed(self) -> dict[Op, DeviceModel]:
        """Op -> the device the placement rules put it on (`device_of`), remembered: an iteration asks per op."""
        return {}

    @functools.cached_property
    def _placement_varies_by_op(self) -> bool:
        """Whether a rule may place two ops of one kind apart: one with an Op/B threshold (a `faster` rule's is
        infinite, so it counts: the models' timing decides it per op)."""
        return any(rule.op_per_byte_below is not None for rule in self.system.placement)

    @functools.cached_property
    def _dense_costs(self) -> dict[tuple, tuple[OpCost, OpCost]]:
        """(decodes, prompts, streamed fraction) -> `dense_phase_costs`'s costs: decode-only iterations of one batch
        size repeat them."""
        return {}

    @functools.cached_property
    def _chain_ends(self) -> dict[tuple, tuple[OpCost, OpCost, tuple[float, ...]]]:
        """(decodes, prompts) -> co-processing's costs before and after the attention stage
        (`archsim.systems.coprocessing`)."""
        return {}

    @functools.cached_property
    def allreduces_s_by_tokens(self) -> dict[int, float]:
        """New tokens -> `system_messages.allreduce_s`, remembered there."""
        return {}

    @functools.cached_property
    def _host_ops(self) -> dict[Op, float]:
        """Decode attention op -> the ops its host's vector units run (`host_ops` of the op alone)."""
        return {}

    @functools.cached_property
    def _one_token(self) -> tuple[Op, ...]:
        return self.ops("decode", 1, 1)

    @property
    def weight_bytes_per_layer(self) -> float:
        """One device's weights of one layer: those a step of `resident_tokens` tokens reads (every expert's)."""
        ops = self.ops("decode", resident_tokens(self.shard), 1)
        return float(sum(op.bytes_by_role[WEIGHTS] for op in ops))

    def _layer_weight_bytes(self, counts: Mapping[str | None, int]) -> float:
        """One device's weights of a stage holding `counts` layers of each kind."""
        return sum(count * self.by_kind[kind].weight_bytes_per_layer for kind, count in counts.items())

    @property
    def layer_weight_bytes_per_device(self) -> float:
        """The decoder-layer weights of the stage holding the most of them (`stage_kind_counts`)."""
        return max(self._layer_weight_bytes(counts) for counts in self.stage_kind_counts)

    @functools.cached_property
    def stage_weight_bytes(self) -> tuple[float, ...]:
        """One device's weights in each PP stage, first to last: its decoder layers (`stage_layers`) and its vocab
        tables (`vocab_tables`: the embedding on the first stage, the LM head on the last, both with one stage)."""
        table = lm_head_op(self.workload, 1, self.parallelism.tp).bytes_by_role[WEIGHTS]
        stage_tables = vocab_tables(self.parallelism.pp, model_vocab_tables(self.workload))
        return tuple(self._layer_weight_bytes(counts) + float(tables * table)
                     for counts, tables in zip(self.stage_kind_counts, stage_tables, strict=True))

    @property
    def weight_bytes_per_device(self) -> float:
        """The weights of the device holding the most (`stage_weight_bytes`): its decoder layers, its embedding
        table and LM head."""
        return max(self.stage_weight_bytes)

    @property
    def kv_bytes_per_token(self) -> float:
        """The whole model's KV cache per token: `kv_bytes_per_token_layer` x layers x TP ranks."""
        return self.kv_bytes_per_token_layer * int(self.workload.params["layers"]) * self.parallelism.tp

    @functools.cached_property
    def kv_bytes_per_token_layer(self) -> float:
        """One device's KV cache per token and layer: the K and V its QKV projection writes."""
        qkv = next(op for op in self._one_token if op.name == "qkv")
        roles = qkv.tensor_roles
        return float(sum(t.bytes for t in qkv.tensors if roles[t.name] == KV_CACHE and t.kind == "output"))

    @functools.cached_property
    def working_bytes_per_token(self) -> float:
        """One layer's working set per new token of an iteration: `working_set.layer_working_bytes` of a prefill
        layer of `WORKING_SET_TOKENS` tokens over them, the FFN's hidden activations in memory as an unfused FFN
        writes them (the larger kind's in a model mixing MoE and dense layers). Every tensor it counts has a token
        rank, so T new tokens hold T times it (tests/test_prompt_memory.py checks it against the layer bound to T
        tokens; below a few dozen tokens a MoE router's top-k tensors hold a little less, under 0.1 %). The
        attention kernel's own buffers (eager attention's N x N scores) are its call's check,
        `GpuDevice.call_memory_bytes`."""
        return layer_working_bytes_per_token(self, FFN_OPS)

    def iteration_memory(self, kv_tokens: float, new_tokens: int) -> IterationMemory:
        """What an iteration holds on the device it fills most: that PP stage's weights, the KV cache of the
        batch's `kv_tokens` tokens for the stage's layers, and one layer's working set over its `new_tokens`."""
        kv_bytes = self.kv_bytes_per_token_layer * kv_tokens
        working_bytes = self.working_bytes_per_token * new_tokens
        return max((IterationMemory(weights, layers * kv_bytes, working_bytes)
                    for layers, weights in zip(self.stage_layers, self.stage_weight_bytes, strict=True)),
                   key=lambda memory: memory.total_bytes)

    def check_memory(self, contexts: Sequence[int], prompts: Sequence[int], held_kv_tokens: int = 0, *,
                     keeps_kv: bool = True, name: str | None = None, context_groups: Sequence[int] = (),
                     prompt_groups: Sequence[int] = ()) -> None:
        """`UnrunnableOp` when an iteration with prompts needs more memory than it has: first its longest prompt's
        KV cache against one channel of each bank-PIM (`BankPimDevice.request_overflow`: a request's KV stays on one
        channel; unchecked where the device does not know its bytes per token), then, against `engine_bytes`
        (nothing when that is None), its longest prompt alone (the serving simulator then refuses that request
        either way), then each expert-parallel group's share of the batch (`ep_groups`, by `context_groups` and
        `prompt_groups` where the batch assigns them; the whole batch without EP), its requests' KV cache, the
        `held_kv_tokens` of requests outside the batch (an unmixed prefill's waiting decodes, spread evenly over the
        groups) and the working set of all its new tokens (the simulator then
        prefills fewer prompts at once). Without `keeps_kv` (attention offloading's compute replica, whose K and V
        leave for the memory pool layer by layer) no KV cache is counted: the weights and the working set. `name`:
        the system's, where this model is a part of it (default its own)."""
        longest, ep, limit = max(prompts, default=0), self.parallelism.ep, self.engine_bytes
        shown = name or self.name
        for device in self._bank_pims:
            overflow = device.request_overflow(longest)
            if overflow:
                raise UnrunnableOp(device.source, f"devices.{device.name}",
                                   f"a prompt of {longest} tokens on {shown} {overflow}")
        if limit is None or not prompts:
            return
        checks = [(f"a prompt of {longest} tokens", self.iteration_memory(longest if keeps_kv else 0, longest))]
        for group_contexts, group_prompts in ep_groups(contexts, tuple(prompts), ep, context_groups, prompt_groups):
            prompt_tokens = sum(group_prompts)
            checks.append((f"an iteration of {len(group_prompts)} prompts ({prompt_tokens} tokens) and "
                           f"{len(group_contexts)} decodes" + (" on an expert-parallel group" if ep > 1 else ""),
                           self.iteration_memory((sum(group_contexts) + prompt_tokens + held_kv_tokens / ep
                                                  if keeps_kv else 0), len(group_contexts) + prompt_tokens)))
        self.check_fits(checks, shown, keeps_kv)

    def check_fits(self, checks: Sequence[tuple[str, IterationMemory]], name: str, keeps_kv: bool = True) -> None:
        """`UnrunnableOp` for the first of `checks` (what is run, what it holds) beyond `engine_bytes`, naming what
        and the system `name` runs on; nothing when `engine_bytes` is None. Without `keeps_kv` the KV cache is the
        memory pool's (attention offloading)."""
        device, limit = self.weight_device, self.engine_bytes
        if limit is None:
            return
        share = device.share_text if isinstance(device, GpuDevice) else ""
        stacks = logic_pim_of(self)
        if stacks is not None and stacks.capacity_bytes == limit:  # Duplex: the Logic-PIM stacks are its HBM
            share = f" (devices.{stacks.name}'s capacity_bytes, the stacks it uses as HBM)"
        for what, need in checks:
            if need.total_bytes > limit:
                kv = f"{need.kv_bytes / 1e9:.1f} GB of KV cache" if keeps_kv else "its KV cache in the memory pool"
                raise UnrunnableOp(self.system.source, "prefill",
                                   f"{what} on {name}: memory per {device.name} device "
                                   f"{beyond_text(need.total_bytes, limit)} "
                                   f"({need.weights_bytes / 1e9:.1f} GB of weights, "
                                   f"{kv}, {need.working_bytes / 1e9:.1f} GB of one layer's working set) exceeds the "
                                   f"{capacity_text(limit)} of it the serving engine holds{share}")

    @property
    def weight_device(self) -> DeviceModel:
        """The device that holds the weights: the one the rules give the decode QKV projection at any Op/B (a rule
        by Op/B may send a small batch's projection to a Logic-PIM, whose stacks are this device's HBM; it had
        then been taken for the holder, its memory share and TP group misread and the LM head run there)."""
        return self.devices[weight_holder(self.system_of("weight_device")).name]

    @property
    def memory_bytes_per_device(self) -> float:
        """Memory for one rank's weights and KV cache: the memory the engine holds on the weight-holding device
        (`held_memory_bytes`, no more than a Logic-PIM's stacks hold) less what it keeps for activations."""
        self.system_of("memory_bytes_per_device")
        held, reserve = held_memory_bytes(self)
        return held - reserve

    @property
    def kv_capacity_bytes(self) -> float:
        """The KV cache's room as bytes of `kv_bytes_per_token` (the whole model's per token): each stage's room
        (memory less its weights) holds tokens at its own layers' KV, and every stage holds the same tokens (vLLM
        sizes every worker's cache by the fewest blocks), so the room of the stage holding the fewest tokens, times
        the model's layers over its layers (pp with even stages), on each of the TP x EP ranks of a stage. With EP
        it is `kv_groups` pools of equal room, one per group: a group's requests' KV lives in its own memory."""
        self.system_of("kv_capacity_bytes")
        par, memory, layers = self.parallelism, self.memory_bytes_per_device, int(self.workload.params["layers"])
        return min(par.tp * (layers / n) * par.ep * max(0.0, memory - weights)
                   for n, weights in zip(self.stage_layers, self.stage_weight_bytes, strict=True))

    @property
    def kv_groups(self) -> int:
        """The KV cache's separate pools: one per expert-parallel group (ep), each `kv_capacity_bytes` / ep, holding
        the KV of the requests assigned the group (the serving simulator pages each apart and assigns each request
        its group, `Batch.decode_ep_groups`)."""
        return self.parallelism.ep

    @property
    def request_kv_tokens(self) -> int | None:
        """The most tokens of KV cache one request can hold here beyond what the cache as a whole limits: a
        bank-PIM channel's (`BankPimDevice.request_kv_tokens`, the fewest over the devices; None without one). The
        serving simulator rejects a longer request on arrival."""
        limits = [d.request_kv_tokens for d in self._bank_pims]
        known = [limit for limit in limits if limit is not None]
        return min(known) if known else None

    def iteration(self, batch: Batch) -> IterationCost:
        """One iteration of `batch` (module docstring): its time, energy and each unit's busy seconds, the slowest
        EP group's layers of each kind over the PP stages, the stage hops and the LM head one after another; an
        `UnrunnableOp` where a batch with prompts exceeds `engine_bytes` (`check_memory`)."""
        self.system_of("iteration")
        contexts = batch.decode_context_tokens
        prompts = tuple(int(p) for p in batch.prefill_tokens)
        context_groups, prompt_groups = batch.decode_ep_groups, batch.prefill_ep_groups
        self.check_memory(contexts, prompts, batch.held_kv_tokens, context_groups=context_groups,
                          prompt_groups=prompt_groups)
        par = self.parallelism
        time_s = energy_j = communication_rank_s = 0.0  # rank-seconds (module docstring)
        busy: dict[str, float] = {}
        groups = ep_groups(contexts, prompts, par.ep, context_groups, prompt_groups)
        for kind, runs in self.stage_runs.items():
            model = self.by_kind[kind]
            slowest_s, slowest_busy, groups_s = -1.0, {}, []
            for group_contexts, group_prompts in groups:
                phases = layer_phases(model, group_contexts, group_prompts)
                total = phases.total
                exchange_s = expert_exchange_s(model, len(group_contexts) + sum(group_prompts))  # one layer's
                group_s = _decoder_layers_s(runs, phases, exchange_s)
                group_j = group_rank_s = 0  # each a sum over the runs, added in their order
                for layers, stages in runs:
                    group_j += par.tp * stages * layers * total.energy_j
                    group_rank_s += par.tp * stages * (layers * phases.allreduce_s + layers * exchange_s)
                energy_j += group_j
                communication_rank_s += group_rank_s
                groups_s.append(group_s)
                if group_s > slowest_s:
                    slowest_s, slowest_busy = group_s, total.busy_s
            # each group's TP x PP ranks wait in the exchange for the slowest, 1/PP of the gap each (none with one)
            communication_rank_s += par.tp * sum([slowest_s - group_s for group_s in groups_s])
            layer_runs = [stages * layers for layers, stages in runs]
            for unit, s in slowest_busy.items():
                busy[unit] = busy.get(unit, 0.0) + sum([n * s for n in layer_runs])
            time_s += slowest_s
        hops_s = [stage_hops_s(self, len(c) + sum(p)) for c, p in groups]
        time_s += max(hops_s)
        communication_rank_s += 2 * par.tp * sum(hops_s)  # each hop: the sending and the receiving stage's TP ranks
        heads = [self.lm_head_cost(len(group) + len(group_prompts)) for group, group_prompts in groups]
        slowest_head = max(heads, key=lambda head: head.time_s)
        for unit, s in slowest_head.busy_s.items():
            busy[unit] = busy.get(unit, 0.0) + s
        energy_j += par.tp * sum(head.energy_j for head in heads)
        time_s += slowest_head.time_s
        board_j = self.board_w * communication_rank_s if communication_rank_s else 0.0
        return IterationCost(time_s, energy_j + board_j + self.static_w * time_s, busy)


def system_model_of(system: System, workload: Workload, par: Parallelism,
                    compose_layer: Callable[..., LayerPhases] | None = None) -> SystemModel:
    """The `SystemModel` of `workload` cut by `par` on `system`'s devices (`compose_layer`: a co-processing
    schedule's layer, `archsim.systems.coprocessing.coprocessed_layer`); a SpecError when one device's share of the
    weights does not fit the device that holds them."""
    from archsim.systems.devices import device_models

    model = SystemModel(system, workload, par, shard(workload, par), workload.block, device_models(system),
                        compose_layer=compose_layer)
    holder = model.weight_device
    check_bounded_holder(system, workload, holder)
    check_tp_group(system, workload.name, holder.name, par.tp)
    memory, weights = model.memory_bytes_per_device, model.weight_bytes_per_device
    if weights > memory and memory < holder.capacity_bytes:  # a Logic-PIM's stacks are the smaller memory
        stacks, (_, reserve) = logic_pim_of(model), held_memory_bytes(model)
        kept = (f", {capacity_text(max(memory, 0.0))} of room beside the engine's {_size_text(reserve)} activation "
                "reserve" if reserve else "")
        raise SpecError(system.source, f"devices.{stacks.name}.capacity_bytes",
                        f"{stacks.name}'s stacks are the memory of each {holder.name} device and hold "
                        f"{capacity_text(stacks.capacity_bytes)} (count x capacity_bytes){kept}: less than the "
                        f"{weights / 1e9:.1f} GB of {workload.name}'s weights on it at tp {par.tp} pp {par.pp}")
    if weights > memory:
        where, advice = system.blame(workload.name, "tp", "pp"), "raise tp or pp for it"
        if system.schedule.kind in OFFLOAD_SCHEDULES:  # tp is the compute devices over the replicas, pp is 1
            if "tp" not in system.options:  # else --tp is blamed
                where = (system.source, f"devices.{holder.name}.count")
            micro_batches = offload_micro_batches(system)
            replicas = offload_replicas(micro_batches)
            advice = (f"give the compute pool more devices (devices.{holder.name}.count) and raise parallelism.tp "
                      f"with it: attention offloading runs pp 1 and tp = count / {replicas}, its "
                      f"{offload_replicas_text(micro_batches)}")
        if system.schedule.kind == CONTEXT_PARALLEL:
            where = system.blame(workload.name, "tp")
            node = system.devices[holder.name].count
            advice = ("raise tp: a context-parallel rank holds the whole model on its tp GPUs (pp is 1)"
                      if par.tp < node else
                      f"a context-parallel rank holds the whole model on its tp GPUs (pp is 1) and tp is already "
                      f"a node's {node} GPUs: it needs GPUs with more memory or a smaller model")
        share = system.devices[holder.name].memory_utilization
        needed = None if share is None else share + (weights - memory) / holder.spec.dram_bytes
        if needed is not None and needed <= 1:  # the share the spec gives the engine is what leaves them out
            where = (system.source, f"devices.{holder.name}.memory_utilization")
            advice = f"expected at least {math.ceil(needed * 1000) / 1000:g} for them, or {advice}"
        raise SpecError(*where, f"{workload.name} at tp {par.tp} pp {par.pp} puts {weights / 1e9:.1f} GB of weights on "
                                f"each {holder.name} device, {_room_text(model, share)}: {advice}")
    return model


def layer_working_bytes_per_token(model: SystemModel, materialised: Collection[str], *,
                                  kv_in_cache: bool = False) -> float:
    """One layer's working set (`working_set.layer_working_bytes`, the ops named in `materialised` with their
    intermediates, K and V left out where `kv_in_cache`) per new token of a prefill: read off a layer of
    `WORKING_SET_TOKENS` tokens of each kind of `model`'s layers (`by_kind`), the larger, over them (every tensor it
    counts has a token rank: `SystemModel.working_bytes_per_token`)."""
    return max(layer_working_bytes(kind.ops("prefill", 1, WORKING_SET_TOKENS), materialised, kv_in_cache=kv_in_cache)
               for kind in model.by_kind.values()) / WORKING_SET_TOKENS


def check_bounded_holder(system: System, workload: Workload, holder: DeviceModel) -> None:
    """A SpecError naming the system's placement where the device holding the weights (`weight_holder`: the one the
    rules give the decode qkv) has an unbounded memory (`capacity_bytes` math.inf: an architecture device, whose
    outermost memory has no capacity, `archsim.systems.architecture_device`): serving pages the KV cache by the
    room beside the weights, which an unbounded memory does not give."""
    if math.isinf(holder.capacity_bytes):
        raise SpecError(system.source, "placement",
                        f"{holder.name} ({holder.kind}) would hold {workload.name}'s weights and KV cache (the rules "
                        f"give it the decode qkv), and its memory is unbounded (an architecture's outermost memory "
                        f"has no capacity): serving pages the KV cache by the room beside the weights, which an "
                        f"unbounded memory does not give; place the decode qkv on a device with a memory of its "
                        f"own size (a gpu, npu or chip)")


def _size_text(size_bytes: float) -> str:
    """A memory or a reserve in a message: its binary size where it is a whole one ("32 GiB"), else decimal GB."""
    return binary_size_text(size_bytes) or f"{size_bytes / 1e9:.1f} GB"


def _room_text(model: SystemModel, share: float | None) -> str:
    """The room the weight-holding device has for weights and the KV cache (`memory_bytes_per_device`), and, where a
    reserve is taken off for activations, the memory it is taken from and the reserve: a GPU's engine share
    (`memory_utilization`, when the spec gives one) less `ACTIVATION_RESERVE_BYTES`, an NPU's HBM less its
    activation buffer (pim.md §1.2)."""
    holder, room = model.weight_device, model.memory_bytes_per_device
    at = "" if share is None else f" at memory_utilization {share:g}"
    held, reserve = held_memory_bytes(model)
    name = "activation reserve"
    if isinstance(holder, NpuDevice):
        held, reserve, name = holder.memory.capacity_bytes, holder.memory.activation_buffer_bytes, "activation buffer"
    if not reserve:
        return f"which holds {capacity_text(room)}{at}"
    return f"which has {capacity_text(room)} of room{at}, {_size_text(held)} less its {_size_text(reserve)} {name}"


def held_memory_bytes(model: SystemModel) -> tuple[float, float]:
    """(bytes the serving engine holds on the weight-holding device, bytes of them it keeps for activations): a GPU's
    share of its DRAM (`GpuDevice.engine_bytes`) with `ACTIVATION_RESERVE_BYTES` kept, another kind's
    `capacity_bytes` (its own activation buffer already left out) with none; no more than a Logic-PIM's stacks hold
    when the system has one (its stacks are the HBM of the device beside it, Duplex's xPU: pim.md §2.4, 5 x 16 GiB =
    the H100's 80 GiB), the reserve kept out of whichever memory binds. The spec's checks make the stacks no larger
    than a gpu or chip holder's HBM and never the holder themselves (`system_checks._check_logic_pim_memory`)."""
    holder = model.weight_device
    held, reserve = ((holder.engine_bytes, ACTIVATION_RESERVE_BYTES) if isinstance(holder, GpuDevice)
                     else (holder.capacity_bytes, 0.0))
    stacks = logic_pim_of(model)
    return (held if stacks is None else min(held, stacks.capacity_bytes)), reserve


def logic_pim_of(model: SystemModel) -> DeviceModel | None:
    """The system's Logic-PIM device (None without one), whose stacks are the memory of the device beside it
    (Duplex's xPU) and with which that device shares the experts (`archsim.systems.coprocessing`)."""
    return next((d for d in model.devices.values() if d.kind == LOGIC_PIM), None)


# Shared by the models of one shard (a sweep's points, a reproduction's systems), keyed by what decides the ops: the
# shard (`SystemModel.shard_key`), the library cascades bound (`SystemModel.cascades`: the same objects while their
# files are unchanged), the limit on sizes (`workload.max_size`, ARCHSIM_MAX_SIZE: the one resource limit a binding
# and a workload's sizes are checked against, so an op bound under a higher limit never answers a call that a lower
# one refuses; read per call, 0.7 us, where `archsim.limits.limits_key`'s scan of the environment takes 20 us) and
# the step's sizes.
@functools.lru_cache(maxsize=4096)
def _cached_ops(key: tuple, cascades: LayerCascades, _size_limit: int, phase: str, batch: int,
                seq_len: int) -> tuple[Op, ...]:
    workload, block, kind = shard_workload(key)
    return layer_ops(workload, Step(phase, batch, seq_len), block, kind, cascades)


# 32,768 ops: `archsim reproduce lamina`, which fills any bound, finds 62 of its 70,907 hits beyond it (duplex asks
# for 22,896 ops, neupims 4,664), and an op with its analysis holds ~7 KB (65,536 had held up to ~0.5 GB).
@functools.lru_cache(maxsize=32768)
def _cached_attention(key: tuple, cascades: LayerCascades, _size_limit: int, phase: str, seq_len: int) -> Op:
    workload, block, kind = shard_workload(key)
    return layer_op(workload, Step(phase, 1, seq_len), block, ATTENTION, kind, cascades)


def sizes_model(workload: Workload, tp: int = 1) -> SystemModel:
    """A `SystemModel` of `workload` cut `tp` ways and no system or devices (`system` None): its weight and KV byte
    counts read only the workload, its shard and the parallelism (memory models of the systems above use it). Only
    `SIZES_MEMBERS` are safe on it (the layer's ops, the byte counts, `iteration_memory`, the stages' layers); a
    member that reads the system (`name`, `price_per_hour`, `static_w`, `board_w`, `weight_device`,
    `memory_bytes_per_device`, `kv_capacity_bytes`, `lm_head_cost`, `iteration`) raises a ValueError naming it."""
    block_of(workload, "its byte counts come from the decoder layer's cascades")
    return SystemModel(None, workload, Parallelism(tp=tp, pp=1), shard(workload, Parallelism(tp=tp, pp=1)),
                       workload.block, {})


def layer_phases(model: SystemModel, contexts: Sequence[int], prompts: tuple[int, ...] = ()) -> LayerPhases:
    """The phases of one decoder layer of one device for these decode contexts (whole numbers: ints, floats or an
    array) and prompts (module docstring)."""
    schedule = model.system.schedule
    decode_ops = model.decode_ops(contexts)
    if schedule.kind == "co-processing":
        if model.compose_layer is None:
            raise SpecError(model.system.source, "schedule.kind", "co-processing's layer comes with the model: build "
                                                                  "it with archsim.systems.models.system_model")
        return model.compose_layer(model, contexts, prompts, decode_ops)
    groups = decode_groups(model, contexts, decode_ops)
    attention_device = groups[0][0] if len(groups) == 1 else None
    split = attention_device is not None and attention_device.kind in SPLIT_KINDS
    if not (schedule.kind == "sub-batch-interleaving" and split and len(contexts) >= max(2, schedule.min_batch)):
        return _one_batch_phases(model, contexts, prompts, groups)
    interleaved = _interleaved_phases(model, contexts, prompts, decode_ops, attention_device)
    if not schedule.only_when_faster:
        return interleaved
    overlapped = _one_batch_phases(model, contexts, prompts, groups)
    (runs,) = model.stage_runs.values()  # one kind of layer: `models.system_model` refuses SBI over mixed kinds
    return interleaved if _decoder_layers_s(runs, interleaved) < _decoder_layers_s(runs, overlapped) else overlapped


def _decoder_layers_s(runs: Sequence[tuple[int, int]], phases: LayerPhases, exchange_s: float = 0.0) -> float:
    """An iteration's decoder layers of one kind at its `phases`: its `stage_runs` (layers on a stage, stages
    holding that many) one stage after another, each stage with its own SBI fill and drain (`LayerPhases.device_s`)
    and `exchange_s` after each layer (EP's expert exchange), summed in the runs' order. It assumes one layer kind:
    `SystemModel.iteration` calls it per kind with that kind's phases, and SBI's choice (`layer_phases`) on a
    model's only kind (`models.system_model` refuses sub-batch interleaving over mixed dense and MoE layers)."""
    return sum(stages * (phases.device_s(layers) + layers * exchange_s) for layers, stages in runs)


def _interleaved_phases(model: SystemModel, contexts: Sequence[int], prompts: tuple[int, ...], decode_ops: DecodeOps,
                        attention_device: DeviceModel) -> LayerPhases:
    """The layer under sub-batch interleaving (module docstring): two sub-batches by the PIM's Algorithm 3, their
    stages A..F on `attention_device` (a bank-PIM holding every decode attention op) and the host."""
    schedule = model.system.schedule
    placement = attention_device.placement(decode_ops, schedule.split, model.decode_keys(contexts))
    resident = min(1.0, schedule.resident_weight_bytes / model.weight_bytes_per_layer)
    pre, post, pim_s, softmax, mha = [], [], list(placement.sub_batches_gemv_s()), [], []
    costed = []
    sub_batch = placement.sub_batch.tolist()
    halves = _split_prompts(prompts)
    for sb, streamed in ((0, 1.0), (1, 1.0 - resident)):
        mine = [op for op, s in zip(decode_ops, sub_batch, strict=True) if s == sb]
        sb_prompts = halves[sb]
        costed.append((len(mine), sb_prompts, streamed))
        p, q = dense_phase_costs(model, *costed[-1])
        pre.append(p)
        post.append(q)
        softmax.append(_host_softmax_s(model, attention_device, mine))
        mha.append(max(pim_s[sb], softmax[-1]))
    attention = attention_device.cost_of(decode_ops, placement.gemv_s(), placement.mean_load_s())
    stage = functools.partial(sbi_stage_s, attention_device.spec.row_buffers)
    stages = (pre[0].time_s, stage(pre[1], mha[0]), stage(post[0] + pre[0], mha[1]),
              stage(post[1] + pre[1], mha[0]), stage(post[0], mha[1]), post[1].time_s)
    return LayerPhases(tuple(pre), tuple(post), attention, tuple(pim_s), tuple(softmax), tuple(mha), stages,
                       placement, allreduce_s(model, len(contexts) + sum(prompts)), True,
                       schedule.layer_time == "steady-state", costed=tuple(costed))


def _one_batch_phases(model: SystemModel, contexts: Sequence[int], prompts: tuple[int, ...],
                      groups: list[tuple[DeviceModel, Sequence[int], Sequence[Op]]]) -> LayerPhases:
    """The layer as one batch (module docstring): blocked, or overlapped (also sub-batch interleaving's schedule
    where it does not interleave); the decode attention's `groups` (`decode_groups`) one device's after another."""
    schedule = model.system.schedule
    pre, post = dense_phase_costs(model, len(contexts), prompts, 1.0)
    attention, attention_s, softmax_s, mha_s, placement = None, 0.0, 0.0, 0.0, None
    overlap = schedule.kind in ("overlapped", "sub-batch-interleaving")
    for device, group_contexts, ops in groups:  # one device's share after another (one, unless a rule reads Op/B)
        if device.kind in SPLIT_KINDS:
            placement = device.placement(ops, contexts=model.decode_keys(group_contexts))
            barrier = schedule.kind == "blocked" and schedule.attention_sync == "barrier"
            cost = device.cost_of(ops, placement.gemv_s(barrier=barrier), placement.mean_load_s())
            softmax = _host_softmax_s(model, device, ops)
            attention_s, softmax_s = attention_s + cost.time_s, softmax_s + softmax
            mha_s += max(cost.time_s, softmax) if overlap else cost.time_s + softmax
        else:
            cost = device.cost(ops)
            attention_s, mha_s = attention_s + cost.time_s, mha_s + cost.time_s
        attention = cost if attention is None else attention + cost
    return LayerPhases((pre,), (post,), attention or OpCost(), (attention_s,), (softmax_s,), (mha_s,), (), placement,
                       allreduce_s(model, len(contexts) + sum(prompts)), overlap,
                       costed=((len(contexts), tuple(prompts), 1.0),))


def decode_groups(model: SystemModel, contexts: Sequence[int],
                  decode_ops: Sequence[Op]) -> list[tuple[DeviceModel, Sequence[int], Sequence[Op]]]:
    """The decode attention of these contexts (`decode_ops`: `SystemModel.decode_ops` of them) by the device the
    rules put each request's op on: (device, its requests' contexts, their ops), in order of first appearance; none
    without decodes. One group, the arguments themselves, unless a rule reads Op/B, which a request's context moves
    (GQA decode attention of Llama 3 405B at TP 8: 15.9 Op/B at 1K tokens, 16.1 at 8K, against Duplex's 16): its
    requests may then go to two devices, and each device's share is its own call."""
    if not decode_ops:
        return []
    if not model._placement_varies_by_op:  # the rules put every decode attention op on one device
        return [(device_of(model, decode_ops[0]), contexts, decode_ops)]
    by_device = ops_by_device(model, decode_ops)
    if len(by_device) == 1:
        return [(model.devices[next(iter(by_device))], contexts, decode_ops)]
    groups = []
    for name, at in by_device.items():
        shared = [contexts[i] for i in at]
        groups.append((model.devices[name], shared, model.decode_ops(shared)))
    return groups


def ops_by_device(model: SystemModel, ops: Sequence[Op]) -> dict[str, list[int]]:
    """The indices of `ops` by the name of the device each runs on (`device_of`), devices in order of first
    appearance. The usual case, every op on one device, is found without a step per op in Python (an iteration
    asks for each request's decode attention)."""
    devices = remembered(model._placed, ops, lambda i: placed_device(model, ops[i]))
    if len(set(map(id, devices))) == 1:
        return {devices[0].name: list(range(len(ops)))}
    by_device: dict[str, list[int]] = {}
    for i, device in enumerate(devices):
        by_device.setdefault(device.name, []).append(i)
    return by_device


def _split_prompts(prompts: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """SBI's two sub-batches' prompts: longest first, each to the one with fewer prompt tokens so far (the first
    on a tie), so a batch's prompts cost the same in any order (they had alternated by position: +9.7 % for one
    order of the same four prompts)."""
    halves: tuple[list[int], list[int]] = ([], [])
    for prompt in sorted(prompts, reverse=True):
        halves[int(sum(halves[1]) < sum(halves[0]))].append(prompt)
    return tuple(halves[0]), tuple(halves[1])


def dense_ops(model: SystemModel, decodes: int, prompts: Sequence[int]) -> tuple[list[Op], list[Op]]:
    """The layer's ops other than the decode attention, for `decodes` decoding requests and these prompts: the ops
    before the attention and the prompts' attention, then the ops after it."""
    tokens = decodes + int(sum(prompts))
    if tokens == 0:
        return [], []
    ops = model.ops("decode" if decodes else "prefill", tokens, 1)
    at = next(i for i, op in enumerate(ops) if op.name == ATTENTION)
    return [*ops[:at], *prompt_attention_ops(model, decodes, prompts)], list(ops[at + 1:])


def prompt_attention_ops(model: SystemModel, decodes: int, prompts: Sequence[int]) -> list[Op]:
    """The prompts' attention ops, one per prompt (`dense_ops` puts them before the decode attention); none in an
    iteration without tokens."""
    return [model.attention("prefill", p) for p in prompts] if decodes + sum(prompts) else []


def dense_phase_costs(model: SystemModel, decodes: int, prompts: Sequence[int],
                      streamed: float) -> tuple[OpCost, OpCost]:
    """(pre, post) costs of `dense_ops`, remembered per model by what they depend on. Without `expert_tp` (a
    blocked schedule's whole experts per TP rank) the MoE op is `whole_experts`."""
    key = (decodes, tuple(prompts), streamed)
    found = model._dense_costs.get(key)
    if found is None:
        tokens = decodes + int(sum(prompts))
        found = model._dense_costs[key] = tuple(summed(OpCost(), [cost for _, cost in call_costs(model, ops, streamed,
                                                                                                  tokens)])
                                                for ops in dense_ops(model, decodes, prompts))
    return found


def call_costs(model: SystemModel, ops: Sequence[Op], streamed: float, tokens: int) -> list[tuple[str, OpCost]]:
    """`device_calls`' calls of `ops` (of a layer of `tokens` new tokens), each as (device name, its cost on it):
    what `cost_in_order` adds, but without `expert_tp` (a blocked schedule's whole experts per TP rank) a MoE op
    is `whole_experts`, on the slowest rank's device."""
    whole = not model.system.schedule.expert_tp and "experts" in model.shard.params
    return [whole_experts(model, tokens, streamed) if whole and call[0].name == "moe"
            else (name, model.devices[name].cost(call, streamed)) for name, call in device_calls(model, ops)]


def whole_experts(model: SystemModel, tokens: int, streamed: float) -> tuple[str, OpCost]:
    """The blocked schedule's MoE op without `expert_tp` (expert parallelism within the node, Duplex and its PIM
    baselines, pim.md §2.3): each TP rank runs its round-robin share of whole experts (`rank_experts`, tokens as
    under uniform routing, `tokens_per_expert`) as one grouped op at the model's ffn_dim, on the unit the placement
    rules give that op (its Op/B), and the layer waits for the slowest rank; energy and busy seconds averaged over
    the ranks. Returns (the slowest rank's device, that cost) (`call_costs`)."""
    params, ranks = model.workload.params, model.parallelism.tp
    counts = tokens_per_expert(tokens, int(params["top_k"]), int(model.shard.params["experts"]), 0.0)
    total, slowest_s, slowest = OpCost(), 0.0, ""
    for mine in rank_experts(counts, ranks):
        if mine:
            op = experts_op(model.shard_key, len(mine), sum(mine), int(params["ffn_dim"]), model.cascades("decode"))
            device = device_of(model, op)
            cost = device.cost([op], streamed)
            total = total + cost
            if not slowest or cost.time_s > slowest_s:
                slowest_s, slowest = cost.time_s, device.name
    return slowest, rank_mean(total, ranks, slowest_s)


def cost_in_order(model: SystemModel, ops: Sequence[Op], streamed: float) -> OpCost:
    """Ops one after another: the `device_calls` of them, each on its device, added in order."""
    return summed(OpCost(), [model.devices[name].cost(call, streamed) for name, call in device_calls(model, ops)])


def device_calls(model: SystemModel, ops: Sequence[Op]) -> list[tuple[str, list[Op]]]:
    """The calls `cost_in_order` costs `ops` by, in order, as (device name, the call's ops): each op on its device;
    the prompts' attention ops (consecutive) as one call per device, in order of its first (a rule reading Op/B can
    put a short prompt's on another device than a long one's)."""
    calls, i = [], 0
    while i < len(ops):
        if ops[i].name != ATTENTION:
            calls.append((device_of(model, ops[i]).name, [ops[i]]))
            i += 1
            continue
        end = i
        while end < len(ops) and ops[end].name == ATTENTION:
            end += 1
        calls += [(name, [ops[i + j] for j in at]) for name, at in ops_by_device(model, ops[i:end]).items()]
        i = end
    return calls


def device_of(model: SystemModel, op: Op) -> DeviceModel:
    """The device model `op` runs on (`placed_device`), remembered per op."""
    device = model._placed.get(op)
    if device is None:
        device = model._placed[op] = placed_device(model, op)
    return device


def placed_device(model: SystemModel, op: Op) -> DeviceModel:
    """The device model the first placement rule matching `op` names (`System.device_for`, a `faster` rule's where
    `runs_faster`); the op's Op/B (its analysis and tensor bytes) is worked out only when a placement rule reads it."""
    op_per_byte = op.op_per_byte if model._placement_varies_by_op else math.nan
    return model.devices[model.system.device_for(op.name, op.phase, op_per_byte,
                                                 functools.partial(runs_faster, model, op)).name]


def runs_faster(model: SystemModel, op: Op, name: str) -> bool:
    """Whether `op` alone runs faster on the device `name` than on the device holding the weights
    (`SystemModel.weight_device`), each unit's time its cost model's (`DeviceModel.cost([op])`, every weight
    streamed): a `faster` placement rule's test, Duplex's artifact trying an op on each unit and keeping the
    fastest (pim.md §2.5). It is +PE's comparison (`coprocessing.expert_split` times the units by the same call,
    on a rank's experts as one MoE op built as `whole_experts` builds it): work leaves the xPU only where its time
    drops, so a tie keeps it there. One op alone is how a Logic-PIM runs it (every stack works on each op); a
    bank-PIM runs one request on one channel beside the batch's others, so a `faster` rule naming one is refused
    (`system_checks._check_faster_rules`)."""
    return model.devices[name].cost([op]).time_s < model.weight_device.cost([op]).time_s


def _host_softmax_s(model: SystemModel, device: DeviceModel, ops: Sequence[Op]) -> float:
    """The host's softmax of `ops`: their host ops summed per op (whole numbers, so the float sum is exact and
    equals `host_ops` of them all)."""
    if not ops:
        return 0.0
    host_ops = sum(remembered(model._host_ops, ops, lambda i: device.host_ops([ops[i]])))
    return npu_model.vector_time_s(device.host, host_ops)


def sbi_stage_s(row_buffers: int, work: OpCost, pim_s: float) -> float:
    """One stage of sub-batch interleaving: one sub-batch's NPU `work` beside the other's PIM attention (`pim_s`).
    max(NPU, PIM) with two row buffers, max(NPU, NPU HBM + PIM) with one: the NPU's HBM reads then wait for the
    PIM's commands (NeuPIMs' dual row buffers, pim.md §1.1; its stages A..F, §1.4)."""
    if row_buffers == 2:
        return max(work.time_s, pim_s)
    return max(work.time_s, work.memory_s + pim_s)
