"""Attention offloading (Lamina, model-attention disaggregation; ../shared/reference/pim.md §3): decode attention
and the KV cache on a pool of memory devices, every other op on compute devices, a network between them.

A system spec with a `staggered` (or `ping-pong`) schedule (`archsim.systems.system_spec`) is such a system:
- compute: the device the decode QKV projection is placed on, `parallelism.tp` devices per model replica (its
  weights cut by TP, two ring all-reduces per layer over the link `tp`, as `system_model`), `micro_batches` - 1
  replicas, or one for one micro-batch (`system_checks.offload_replicas`): the device's `count` must be tp x
  replicas;
- memory pool: the device decode attention is placed on, `parallelism.attention_pool` (b) of them, its `count`: a
  `memory-pool` device (a GPU used for its memory, the GPU model's decode kernel) or a `chip` (a TPU v6e pool, the
  roofline of `archsim.systems.chip_device`). Head-level partitioning (§3.4): each holds kv_heads / b KV heads and
  their query heads, so b must divide kv_heads. The KV cache is the pool's memory (b x a device's capacity), a
  token's K and V as the pool holds them (`OffloadModel.kv_bytes_per_token`: each KV head once, where the compute
  shard replicates a KV head over tp / kv_heads devices when tp > kv_heads; an MLA latent on each memory device);
  the compute devices hold weights;
- link `attention`: per token and layer q (d) and the new k, v (2d/G) go to the pool and the attention output (d)
  comes back (§3.3); the bytes are the cascades' tensors (the attention op's queries, its activations in: Q, and
  MLA's rope part QR beside it; its output AV; the pool's K and V: one copy of each new k, v however many compute
  devices replicate its head). The QKV projection's time is split between the queries and the K, V shares by
  their output bytes (the q share sent first under divide-and-conquer). Each compute and memory device has its
  own NIC (§3.5): a compute device's is the link `attention` (rate r_c), a memory device's the link
  `attention_pool` (r_m; the same link when the spec names none). A message between a replica and the pool, spread
  over its tp senders and b receivers, takes latency + bytes / min(tp x r_c, b x r_m), the slower end's NICs all
  busy (`OffloadModel.message_link`: the larger of the two links' latencies, assumption: a path is as slow to start
  as its slower end's measured path, and the wire rule, `Link.wire_s`, at that rate; `message_nics`, the NICs at
  that end: min(tp, b) when both ends have one NIC kind). A link direction carries b x r_m / min(tp x r_c, b x r_m)
  messages at once, a fraction, at most the replicas and at least 1 (`OffloadModel.link_lanes`: 1 in ping-pong
  or when the pool's end is the slower; with one NIC kind min(tp x replicas, b) / min(tp, b)), each replica's one
  at a time: min(replicas x tp x r_c, b x r_m) in all, so no NIC that gets slower makes it carry more. Assumption:
  the closed form charges a message its own rate (in the cycle) and a direction its capacity (its busy unit); the
  event model serves a direction's messages oldest first, each at most a message's rate, the i-th (0-based) at
  min(1, lanes - i) of it (`offload_events._SharedLink`), so a message alone runs at the closed form's rate, the
  messages together never above the capacity, and no message is faster as a NIC slows.
Prefill attention runs on the compute devices (prefill is not offloaded), which must hold the replica's weights and
one layer's working set over the iteration's prompt tokens, which run their own pass (`SystemModel.check_memory`
without a KV cache and without the decodes: an iteration that does not fit is `UnrunnableOp`, so the serving
simulator prefills fewer prompts, or refuses a prompt that cannot run alone); the prompts' K and V then go to the pool,
which holds the KV cache, layer by layer as the paper pulls them into its attention workers (§3.4, 'Prefill→decode'):
each layer's K and V of all the iteration's prompts (the pool's copy, `kv_bytes_per_token` / layers a token) is one
message from the prompts' replica, latency + bytes / `nic_bytes_per_s` over the link direction `attention` uses
for q, k and v, and each memory device writes its share (1 / b) as one DRAM pass (`elementwise_s`) as the bytes
arrive (a message holds the link for its wire time or the write, the longer). The prompts run before the
micro-batches, so their messages do not meet the decodes' on the link. A layer's message leaves when the layer's
attention has ended (assumption: K and V exist from the QKV projection on, but the prompts' layer is costed as two
parts, before and after its attention, so the send waits for the first), and the messages go one after another:
the transfer hides behind the rest of the layer, the later layers and the LM head, and the prompts' phase grows
only by what the last message arrives after the LM head ends (`prompt_phase_s`). Its wire time counts in
`link_out` and the writes in `memory_pool` either way.

One layer of one micro-batch (`OffloadLayer`, `OffloadModel.layer`): on its replica the attention norm, the QKV
projection, the ops after the attention (out_proj .. ffn_residual and the all-reduces); on the pool the decode
attention of its requests (one kernel call over a memory device's heads, `GpuDevice`); the transfers. The
critical path of the layer (`OffloadLayer.cycle_s`):
- without divide-and-conquer: norm, QKV, send q, k, v, attention over the keys each request reads (its context,
  or with a sliding window min(context, window + sinks): `SystemModel.decode_keys`), send the output back, the ops
  after it;
- with divide-and-conquer (§3.4, `einsum/attention-decode-divide-conquer.yaml`): q's share of the QKV projection is
  computed and sent first; attention over the keys read before the new token starts when q arrives, while the k, v
  share is computed and sent after q on the same link; the new token's part and the merge run when both are done, as
  one elementwise kernel on the memory device over the cascade's tensors that do not span the history rank M (q, the
  new k and v, the history's max, denominator and numerator, the merge's intermediates, the output). The Q share of
  the fused QKV GEMM is Q's share of the projection's output bytes (the cascade's Q against K and V:
  heads / (heads + 2 kv_heads)); assumption: the GEMM's time is proportional to its output columns, true of a
  weight-streaming decode GEMM and of a compute-bound one.

Rotational staggered pipelining (§3.4): n micro-batches (the decodes split round-robin in arrival order) on n - 1
replicas, all sharing the pool. In steady state a layer of every micro-batch takes the period
  P = max(the slowest micro-batch's cycle, the busiest replica's work, sum of pool work, sum of each link
      direction's wire time / its lanes)
(a cyclic pipeline is bound by its longest cycle and its busiest resource; slice k of micro-batch j, k counted
across tokens, runs on replica (j + k) mod `replicas`, n - 1 here, as `archsim.systems.offload_events` runs it). A
token of every micro-batch also runs its LM head (`SystemModel.lm_head_cost`, one token per request) after its last
layer, on the replica of its next slice: n heads on n - 1 replicas, two of them on one replica each token. The time
for all layers and the head (`token_s`) is the slowest micro-batch's layers x its cycle plus its head, or the
busiest resource's work: a replica's is its slices and heads as the rotation assigns them, averaged over the tokens
the assignment turns through (`replica_work_s`; the busiest replica of a single token is no bound: LLaMA3-8B, n = 4,
32 layers on 3 replicas, 256 requests of 64 tokens, no link latency, the event model runs 8.769 ms a token, 1.5 %
below it, and the closed form gives 8.596 ms). An iteration (one token for every request) takes that, plus the
prompts' layers and LM head on the compute devices (blocked, before the micro-batches).
One micro-batch (`micro_batches: 1`, AttAcc's GPUs and PIM, pim.md §4.1) runs on one replica without pipelining:
each layer's critical path has the replica and the pool in turn, so a token takes layers x the cycle plus the LM
head, the first term of `token_s` (every other term is a part of it). The event model runs the same time, with
divide-and-conquer and without (LLaMA-65B and GPT-3 175B on `attacc`, 64 requests of 1-1.5K tokens: within 1e-13).
`archsim.systems.offload_events` simulates the same pipeline, LM heads included, event by event and checks it.
`token_s` is a max of lower bounds: it leaves out the waits of one micro-batch behind the others' work, and the
event model is never faster. Without LM heads they agree within 0.03 % on LLaMA3-8B and -70B, n = 3 and 4, contexts
of 1K, 2K and 4K tokens, batches of 16, 64, 256 and 1024, over the preset's link (16.5 us); off that grid,
micro-batches of a few requests over a link of less latency wait on one another: LLaMA-2-7B, n = 4, 3 requests at 64
tokens, the event model is 6.5 % above at 0 us, 3.8 % at 4 us and equal at 8 and 16.5 us. With LM heads a
head holds its replica once a token and the others' slices queue behind it: in ping-pong the event model is above by
up to 1.5 % (DOP (2, 4), batches of 16-513 at 1024 and 3000 tokens, divide-and-conquer on and off: LLaMA3-8B 1.46 %
at 512 requests of 3000 tokens, 1.31 % at 257 requests of 1000 + 13i tokens, micro-batches of 129 and 128;
LLaMA3-70B and LLaMA-2-7B up to 0.6 %); staggered, over the grid above (24-token runs), the closed form is below the
event model's time by up to 2.8 % (n = 3) and 3.8 % (n = 4) on LLaMA3-8B, 0.7 % and 1.0 % on LLaMA3-70B,
divide-and-conquer on or off (on: 2.80, 3.82, 0.70 and 0.84 %; off: 2.75, 2.89, 0.67 and 0.96 %). Off that grid (one
H100 a replica, 2, 4 or 8 memory devices; LLaMA-2-7B, LLaMA3-8B and LLaMA-13B; batches of 16-1024 at 256, 1K and 4K
tokens) by up to 5.7 % (n = 3; LLaMA-13B, DOP (1, 8), 1024 requests of 256 tokens) and 8.5 % (n = 4; LLaMA-2-7B, the
same), and 10.8 % at LLaMA-2-7B, n = 4, DOP (1, 8), 256 requests of 512 tokens, with divide-and-conquer; without it
4.1 % (n = 3) and 4.9 % (n = 4; both LLaMA3-8B, DOP (1, 4), 256 requests of 4K tokens; measured again when the pool
came to start the micro-batches' attention in turn, `archsim.systems.offload_events`: served as they came, the
micro-batches without divide-and-conquer ran bunched, 14.0 % and 5.0 % above on the grid, 8.9 % on LLaMA3-70B at
n = 3, and 14.8 % and 8.8 % off it, and the two models disagreed on what divide-and-conquer is worth; with it 4.1 %
at n = 4 on the grid and 10.6 % at the point above. The 2.7, 3.9, 0.7, 0.9, 5.4, 7.8 and 9.6 % written before the
history's attention came to start at q's arrival were stale then): the heads shift the micro-batches'
phases, and their attention and messages then queue on the pool and the link, waits no term of `token_s` holds
(with the pool's work cut a thousandfold, 0.9 %). Where the replicas limit the pipeline and the layers divide among
them (n = 3 and 5 at 32 layers) the closed form is the event model's time within 0.01 %. (These gaps are the event
model's time over the closed form's, less 1; every lane count on these grids is whole.) With a fractional lane
count (two NIC kinds) the last lane is a fraction of a message's rate: LLaMA-2-7B, n = 4, 3 replicas of one H100 at
45.7 GB/s against 4 H20s at 17.75 GB/s (1.55 lanes), 1536 requests at 32 tokens, the event model is 12.7 % above
(22.8 % while it stretched every message by ceil(lanes) / lanes; 8.0 % over 35.5 GB/s NICs, 2 lanes). The closed
form falls or holds as any NIC slows; the event model's messages do too, but the pipeline can fall into a better
phase: over 50 GB/s compute NICs 73100 tokens/s at 4 x 23.3 GB/s pool NICs and 74911 at 4 x 18.0.

Energy: each op's device energy times the devices that run it (tp per replica slice and LM head, b for
attention), plus both pools' static power (`static_w`: a per-action energy's) over the iteration's wall time. A
pool priced by board power (`system_types.board_power_w`: TDP for an op's time) draws it over its whole time in the
iteration instead of over its ops': in the decode pipeline every device of both pools for `token_s` (all
micro-batches are in flight; a gap on a replica or on the pool is a wait on the link or on the other pool, at
board power), and the prompts' replica (tp devices) for their layers, all-reduces, LM head and any wait on their
last K/V message (the memory pool then draws its board power only over the writes of the prompts' K and V, and
nothing while idle, as an idle rank of `system_model`). A pool priced per action pays the prompts' K/V write as
DRAM bytes (`ActionEnergy.energy_j`); the link itself has no energy price, and the reads of what a device sends are
not priced (as for the decode's q, k and v). So a slower link costs energy as it costs time.
Busy units: `compute` (replica work over the replicas: the decodes' micro-batches and the prompts, which one
replica runs), `memory_pool` (attention and the prompts' K/V writes),
`link_out` (q, k and v, and the prompts' K and V, to the pool) and `link_back` (the output back), the wire time
over the (fractional) lanes: the link is rated per direction, so each direction is a unit (at most 1).

BW_min (§3.3): the least bandwidth at which the transfers add at most alpha to an unpipelined iteration,
(2 + 2/G) e d B L / (alpha (MTIME(B) + ATIME(B, l))), from the cascades' bytes and the device models' times, per NIC
at each end (`bw_min_per_nic_bytes_per_s`: over tp for a compute NIC, over b for a memory NIC); `bw_min_bytes_per_s`
is the one at the end that limits a message (`message_nics` NICs: min(tp, b) with one NIC kind, the paper's one
400 Gbps NIC). A link meets it when each end's NIC does (`link_feasibility`). Both refuse an empty batch and an
alpha not in (0, inf).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from archsim import library
from archsim.cascade.analysis import tensor_infos
from archsim.cascade.bind import bind
from archsim.errors import SpecError
from archsim.memo import trim
from archsim.record import Record
from archsim.systems.device import OpCost
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.links import Link
from archsim.systems.sharding import shard
from archsim.systems.step import ACTIVATIONS_IN, Op
from archsim.systems.system_checks import (
    ATTENTION_POOL_LINK,
    check_degrees,
    check_pool,
    offload_micro_batches,
    offload_replicas,
)
from archsim.systems.system_messages import allreduce_s
from archsim.systems.system_model import ATTENTION, SystemModel, dense_phase_costs, device_of, system_model_of
from archsim.systems.system_types import ATTENTION_LINK, Device, System, board_power_w
from archsim.workload import Workload

if TYPE_CHECKING:  # a served run's timeline, read by peak_batch_link_feasibility
    from archsim.systems.serving import IterationRecord


@dataclass(frozen=True)
class OffloadLayer:
    """One decoder layer of one micro-batch (module docstring): replica times, pool times, the link's one-way
    latency and each message's wire time (bytes over the NICs' bandwidth), and the energy of the layer."""

    requests: int
    norm_s: float
    q_s: float
    kv_s: float
    post_s: float
    attention_s: float  # over the keys each request reads, on one memory device
    history_s: float  # over the keys read before the new token (divide-and-conquer)
    merge_s: float  # the new token's part and the merge
    latency_s: float
    q_wire_s: float
    kv_wire_s: float
    out_wire_s: float
    compute_energy_j: float = 0.0  # the replica's ops, its tp devices
    pool_energy_j: float = 0.0  # the attention, the b memory devices
    wire_bytes: float = 0.0  # q, k, v and the output, all devices

    @property
    def compute_s(self) -> float:
        """Replica work: norm, QKV, the ops after attention."""
        return self.norm_s + self.q_s + self.kv_s + self.post_s

    def pool_s(self, divide_and_conquer: bool) -> float:
        return self.history_s + self.merge_s if divide_and_conquer else self.attention_s

    def attention_done_s(self, divide_and_conquer: bool) -> float:
        """When the layer's attention ends on the pool, from the start of its norm, nothing else running."""
        q_done = self.norm_s + self.q_s
        if not divide_and_conquer:
            arrive = q_done + self.kv_s + self.latency_s + self.q_wire_s + self.kv_wire_s
            return arrive + self.attention_s
        q_arrive = q_done + self.latency_s + self.q_wire_s
        kv_arrive = max(q_done + self.kv_s, q_done + self.q_wire_s) + self.kv_wire_s + self.latency_s
        return max(q_arrive + self.history_s, kv_arrive) + self.merge_s

    def cycle_s(self, divide_and_conquer: bool) -> float:
        """The layer's critical path: to the attention's end, the output back, the ops after it."""
        return self.attention_done_s(divide_and_conquer) + self.latency_s + self.out_wire_s + self.post_s


def replica_work_s(layers: Sequence[OffloadLayer], heads_s: Sequence[float], replicas: int, n_layers: int) -> float:
    """The busiest replica's work per token in the steady state (module docstring): slice k of micro-batch j (k
    counted across tokens) runs on replica (j + k) mod `replicas`, and its LM head in the next token's first slice,
    so in a token replica r runs n_layers // replicas slices of every micro-batch, one more of each j with
    (r - j) mod replicas < n_layers mod replicas, and the heads of the j with j mod replicas = r. Token t's
    assignment is the first's turned by t x n_layers replicas, so over the tokens a replica averages the first
    token's work of the replicas gcd(n_layers, replicas) apart from it; the busiest of these means is the bound (the
    busiest replica of one token is not one: a turning assignment lets the pipeline run below it)."""
    base, extra = divmod(n_layers, replicas)
    work = [base * sum(layer.compute_s for layer in layers)
            + sum(layer.compute_s for j, layer in enumerate(layers) if (r - j) % replicas < extra)
            + sum(head for j, head in enumerate(heads_s) if j % replicas == r) for r in range(replicas)]
    step = math.gcd(n_layers, replicas)
    return max(sum(work[r::step]) / (replicas // step) for r in range(step))


def token_s(layers: Sequence[OffloadLayer], heads_s: Sequence[float], replicas: int, divide_and_conquer: bool,
            n_layers: int, lanes: Fraction | int = 1) -> float:
    """Steady-state time for every micro-batch to pass `n_layers` layers and its LM head (`heads_s`, one per
    micro-batch, on a replica after its last layer): the slowest micro-batch's layers x cycle plus its head, or the
    busiest resource's work (a replica's as the rotation assigns slices and heads, `replica_work_s`; a link
    direction's wire time over its `lanes`, `OffloadModel.link_lanes`, a fraction; module docstring). A lower
    bound: the waits of one micro-batch's cycle on the others are not counted."""
    if not layers:
        return 0.0
    return max(max(n_layers * layer.cycle_s(divide_and_conquer) + head for layer, head in zip(layers, heads_s,
                                                                                             strict=True)),
               replica_work_s(layers, heads_s, replicas, n_layers),
               n_layers * sum(layer.pool_s(divide_and_conquer) for layer in layers),
               n_layers * sum(layer.q_wire_s + layer.kv_wire_s for layer in layers) / lanes,
               n_layers * sum(layer.out_wire_s for layer in layers) / lanes)


def prompt_phase_s(n_layers: int, layer_s: float, attention_done_s: float, head_s: float, send_s: float,
                   latency_s: float) -> float:
    """The prompts' `n_layers` layers (`layer_s` each) and LM head (`head_s`) on their replica while each layer's
    K and V go to the pool (module docstring): layer i's message (0-based) leaves at i x layer_s +
    `attention_done_s` or when the one before it has left the wire, holds the link `send_s`, and arrives
    `latency_s` later; the phase ends with the later of the LM head and the last message's arrival."""
    last_sent_s = attention_done_s + max(n_layers * send_s, (n_layers - 1) * layer_s + send_s)
    return max(n_layers * layer_s + head_s, last_sent_s + latency_s)


@dataclass(frozen=True)
class OffloadModel:
    """A system with attention offloading running one workload; an `IterationModel` of the serving simulator.
    `compute` is the workload cut for one compute device (tp), `pool` for one memory device (b); `link` is a
    compute device's NIC, `pool_link` a memory device's (module docstring)."""

    system: System
    workload: Workload
    compute: SystemModel
    pool: SystemModel
    pool_devices: int
    micro_batches: int  # the schedule's (`system_checks.offload_micro_batches`)
    link: Link
    pool_link: Link
    pool_device_name: str  # the memory-pool or chip device decode attention is placed on

    @property
    def name(self) -> str:
        par = self.compute.parallelism
        return f"{self.system.name}:{self.workload.name} dop({par.tp * self.replicas},{self.pool_devices})"

    @property
    def parallelism(self):
        """The compute replica's parallel degrees (tp; attention_pool = b)."""
        return self.compute.parallelism

    @property
    def pools(self) -> tuple[Device, Device]:
        """The system spec's compute device and memory-pool device (each with its `count`)."""
        return self.system.devices[self.compute.weight_device.name], self.system.devices[self.pool_device.name]

    @property
    def price_per_hour(self) -> float:
        """USD per hour of both pools' devices (count x price each); NaN when one has no `price_per_hour`."""
        prices = [d.price_per_hour for d in self.pools]
        return math.nan if None in prices else float(sum(d.count * d.price_per_hour for d in self.pools))

    @property
    def static_w(self) -> float:
        """Static power of both pools' devices (count x each one's `Device.static_w`, as `price_per_hour` counts
        them), charged over every iteration's wall time."""
        return float(sum(d.count * d.static_w for d in self.pools))

    @property
    def board_w(self) -> tuple[float | None, float | None]:
        """Board power of one compute and one memory device where they are priced by it (`board_power_w`), else
        None (module docstring)."""
        compute, pool = self.pools
        return board_power_w(compute), board_power_w(pool)

    @property
    def replicas(self) -> int:
        """The compute replicas the micro-batches run on (`system_checks.offload_replicas`)."""
        return offload_replicas(self.micro_batches)

    @property
    def divide_and_conquer(self) -> bool:
        return self.system.schedule.divide_and_conquer

    @property
    def layers(self) -> int:
        return int(self.workload.params["layers"])

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V of one token over all layers as the memory pool holds them (`SystemModel.kv_bytes_per_token`
        of the pool's shard, b devices): head-level partitioning (b divides kv_heads) keeps each KV head once,
        where the compute shard replicates a KV head over tp / kv_heads devices when tp > kv_heads (MQA, GQA over
        more devices than KV heads). A latent shared by all heads (MLA) is on each memory device."""
        return self.pool.kv_bytes_per_token

    @property
    def pool_device(self):
        return self.pool.devices[self.pool_device_name]

    @property
    def kv_capacity_bytes(self) -> float:
        return self.pool_devices * self.pool_device.capacity_bytes

    @property
    def nic_bytes_per_s(self) -> float:
        """What one message between a replica and the pool moves at: min(tp x r_c, b x r_m), a replica's tp NICs
        of `link` against the pool's b of `pool_link` (min(tp, b) x the link's rate with one NIC kind)."""
        tp, b = self.compute.parallelism.tp, self.pool_devices
        return min(tp * self.link.bytes_per_s_per_direction, b * self.pool_link.bytes_per_s_per_direction)

    @functools.cached_property
    def message_link(self) -> Link:
        """The path one message between a replica and the pool takes: the larger of the two ends' latencies (a
        NIC stack's, one way), its bytes at `nic_bytes_per_s`; its `wire_s` is a message's wire time."""
        tp, b = self.compute.parallelism.tp, self.pool_devices
        name = (f"{self.message_nics} x {self.link.name}" if self.pool_link == self.link else
                f"min({tp} x {self.link.name}, {b} x {self.pool_link.name})")
        return replace(self.link, name=name, latency_s=max(self.link.latency_s, self.pool_link.latency_s),
                       bytes_per_s_per_direction=self.nic_bytes_per_s)

    @property
    def message_end(self) -> str:
        """The end that limits a message's rate, its NICs all busy: `compute` where tp x r_c <= b x r_m, else
        `memory` (with one NIC rate the end with fewer NICs, compute at a tie)."""
        tp, b = self.compute.parallelism.tp, self.pool_devices
        r_c, r_m = self.link.bytes_per_s_per_direction, self.pool_link.bytes_per_s_per_direction
        return "compute" if (tp <= b if r_c == r_m else tp * r_c <= b * r_m) else "memory"

    @property
    def message_nics(self) -> int:
        """The NICs at `message_end`: tp or b (min(tp, b) with one NIC kind)."""
        return self.compute.parallelism.tp if self.message_end == "compute" else self.pool_devices

    @property
    def link_lanes(self) -> Fraction:
        """Messages each link direction carries at once, a fraction: the direction's capacity over one message's
        rate (`nic_bytes_per_s`), the pool's b NICs' rate over a replica's tp, at most the replicas (each sends one
        at a time), at least 1 (1 in ping-pong, or when the pool's end limits a message; with one NIC rate
        min(tp x replicas, b) / min(tp, b)). So the direction carries min(replicas x tp x r_c, b x r_m), as fast as
        the slower side of it, and no NIC that gets slower makes it faster (rounded down, a pool end 1.55
        messages' rate wide carried one: 3 replicas of one H100 at 45.7 GB/s against 4 x 17.75 GB/s served
        LLaMA-2-7B 16 % slower than over 35.5 GB/s NICs). Exact from the rates (`Fraction`), so a whole number of
        messages is whole. The event model serves a direction's messages oldest first, the i-th (0-based) at
        min(1, lanes - i) of a message's rate (`offload_events._SharedLink`)."""
        tp, b = self.compute.parallelism.tp, self.pool_devices
        r_c, r_m = self.link.bytes_per_s_per_direction, self.pool_link.bytes_per_s_per_direction
        if r_c == r_m:  # one NIC rate (an infinite one too): the ratio of the NICs' counts
            messages = Fraction(b, tp)
        elif math.isfinite(r_c) and math.isfinite(r_m):  # the pool's rate over a replica's
            messages = b * Fraction(r_m) / (tp * Fraction(r_c))
        else:  # one end infinitely fast: the other limits
            messages = Fraction(self.replicas if math.isinf(r_m) else 1)
        return max(Fraction(1), min(Fraction(self.replicas), messages))

    def layer_kv_bytes(self, tokens: int) -> float:
        """K and V of one layer of `tokens` new tokens as the pool holds them (`kv_bytes_per_token`: one copy of
        each), what one layer's message to the pool carries (module docstring): a decode step's new k, v or a
        prompt's."""
        return tokens * self.kv_bytes_per_token / self.layers

    def with_link(self, link: Link) -> OffloadModel:
        """This model over another link, both ends' NICs (its layers recomputed)."""
        return replace(self, link=link, pool_link=link)

    def layer(self, contexts: Sequence[int]) -> OffloadLayer:
        """One layer of a micro-batch decoding these contexts (the new token included); its dense and attention
        costs are remembered per request count (`dense_costs`)."""
        return _layer(self, tuple(int(c) for c in contexts))

    def dense_costs(self, requests: int) -> tuple[tuple[Op, ...], dict[str, OpCost]]:
        """The compute replica's layer ops for `requests` decodes and the cost of each but the attention,
        remembered per count."""
        found = self._dense.get(requests)
        if found is None:
            ops = self.compute.ops("decode", requests, 1)
            found = self._dense[requests] = (ops, {op.name: device_of(self.compute, op).cost([op]) for op in ops
                                                   if op.name != ATTENTION})
        return found

    def attention_cost(self, contexts: Sequence[int]) -> OpCost:
        """The memory device's cost of one decode attention op per context (its heads) as one kernel call, each
        over the keys it reads (`SystemModel.decode_ops`: with a sliding window min(context, window + sinks)), in
        the micro-batch's order (a GPU device's call walks each request's own keys: `GpuDevice.cost`). The latest
        `ATTENTION_MEMO_CALLS` are remembered: a layer's attention over the history is the previous token's."""
        key = tuple(contexts)
        found = self._attention.get(key)
        if found is None:
            found = self._attention[key] = self.pool_device.cost(self.pool.decode_ops(contexts))
            trim(self._attention, ATTENTION_MEMO_CALLS)
        return found

    @functools.cached_property
    def _dense(self) -> dict[int, tuple[tuple[Op, ...], dict[str, OpCost]]]:
        return {}

    @functools.cached_property
    def _attention(self) -> dict[tuple[int, ...], OpCost]:
        return {}

    def micro_batch_layers(self, contexts: Sequence[int], micro_batches: int | None = None) -> list[OffloadLayer]:
        """The decodes split round-robin into `micro_batches` (default the schedule's), one layer each; empty
        micro-batches are left out."""
        return [self.layer(part) for part in self.micro_batch_contexts(contexts, micro_batches)]

    def micro_batch_contexts(self, contexts: Sequence[int], micro_batches: int | None = None) -> list[Sequence[int]]:
        """The decodes split round-robin into `micro_batches` (default the schedule's), empty ones left out."""
        n = micro_batches or self.micro_batches
        return [contexts[j::n] for j in range(n) if len(contexts[j::n])]

    def heads(self, contexts: Sequence[int]) -> list[OpCost]:
        """Each micro-batch's LM head on a replica (one token per request), in `micro_batch_layers`' order."""
        return [self.compute.lm_head_cost(len(part)) for part in self.micro_batch_contexts(contexts)]

    def heads_s(self, contexts: Sequence[int]) -> list[float]:
        return [head.time_s for head in self.heads(contexts)]

    def iteration(self, batch: Batch) -> IterationCost:
        contexts = [int(c) for c in batch.decode_context_tokens]
        prompts = tuple(int(p) for p in batch.prefill_tokens)
        dc, layers = self.divide_and_conquer, self.micro_batch_layers(contexts)
        heads = self.heads(contexts)
        heads_s = [head.time_s for head in heads]
        n = self.layers
        lanes = self.link_lanes
        decode_s = token_s(layers, heads_s, self.replicas, dc, n, lanes)
        tp, b = self.compute.parallelism.tp, self.pool_devices
        prefill = pre = OpCost()
        prompt_head = self.compute.lm_head_cost(len(prompts))
        if prompts:
            # the prompts run their own pass: its working set is theirs, not the decodes' too
            self.compute.check_memory((), prompts, keeps_kv=False, name=f"{self.name}'s compute replica")
            pre, post = dense_phase_costs(self.compute, 0, prompts, 1.0)
            prefill = pre + post
        prefill_s = prefill.time_s + (allreduce_s(self.compute, sum(prompts)) if prompts else 0.0)
        kv_bytes = self.layer_kv_bytes(sum(prompts))  # a layer's, all memory devices
        kv_wire_s = self.message_link.wire_s(kv_bytes)
        kv_write_s = self.pool_device.elementwise_s(kv_bytes / b) if prompts else 0.0  # one memory device's
        busy = {"compute": (n * (sum(layer.compute_s for layer in layers) + prefill_s) + sum(heads_s)
                            + prompt_head.time_s) / self.replicas,  # the prompts run on one replica of them
                "memory_pool": n * (sum(layer.pool_s(dc) for layer in layers) + kv_write_s),
                "link_out": n * (sum(layer.q_wire_s + layer.kv_wire_s for layer in layers) + kv_wire_s) / lanes,
                "link_back": n * sum(layer.out_wire_s for layer in layers) / lanes}
        prompts_s = (prompt_phase_s(n, prefill_s, pre.time_s, prompt_head.time_s, max(kv_wire_s, kv_write_s),
                                    self.message_link.latency_s) if prompts else n * prefill_s + prompt_head.time_s)
        compute_w, pool_w = self.board_w
        compute_j = (n * (sum(layer.compute_energy_j for layer in layers) + tp * prefill.energy_j)
                     + tp * (sum(head.energy_j for head in heads) + prompt_head.energy_j)) if compute_w is None else (
            compute_w * (self.pools[0].count * decode_s + tp * prompts_s))
        pool_j = (n * sum(layer.pool_energy_j for layer in layers) if pool_w is None
                  else pool_w * self.pool_devices * decode_s)
        if prompts:
            pool_j += (n * self.pools[1].energy.energy_j(kv_bytes, 0.0) if pool_w is None
                       else pool_w * self.pool_devices * n * kv_write_s)
        time_s = decode_s + prompts_s
        return IterationCost(time_s, compute_j + pool_j + self.static_w * time_s, busy)

    def unpipelined_times_s(self, contexts: Sequence[int]) -> tuple[float, float]:
        """(MTIME, ATIME) of §3.3: all layers' compute work and attention for one batch of these contexts, one
        after the other (no micro-batches, no transfers)."""
        layer = self.layer(contexts)
        return self.layers * layer.compute_s, self.layers * layer.attention_s


def bw_min_per_nic_bytes_per_s(model: OffloadModel, contexts: Sequence[int], alpha: float) -> tuple[float, float]:
    """Lamina's minimum link bandwidth (§3.3) per NIC at each end, (a compute NIC's, a memory NIC's): the bytes of
    one iteration's transfers, (2 + 2/G) e d B L, over alpha x (MTIME(B) + ATIME(B, l)), for a batch decoding
    `contexts`, spread over a replica's tp NICs and over the pool's b."""
    tp, b = model.compute.parallelism.tp, model.pool_devices
    return _bw_min_per_nic(model, contexts, alpha, tp), _bw_min_per_nic(model, contexts, alpha, b)


def bw_min_bytes_per_s(model: OffloadModel, contexts: Sequence[int], alpha: float) -> float:
    """BW_min per NIC at the end that limits a message (`bw_min_per_nic_bytes_per_s` at `message_nics` NICs): the
    compute end's where tp x r_c <= b x r_m; with one NIC kind the busiest NIC's share, 1 / min(tp, b), as the paper
    sets it against one 400 Gbps NIC."""
    return _bw_min_per_nic(model, contexts, alpha, model.message_nics)


def _bw_min_per_nic(model: OffloadModel, contexts: Sequence[int], alpha: float, nics: int) -> float:
    if not 0 < alpha < math.inf:
        raise SpecError("<python>", "alpha", f"expected an allowed network overhead > 0 and finite, got {alpha!r}")
    if not len(contexts):
        raise SpecError("<python>", "contexts", "expected a batch of at least one decode context, got none")
    mtime, atime = model.unpipelined_times_s(contexts)
    return model.layers * model.layer(contexts).wire_bytes / nics / (alpha * (mtime + atime))


def link_feasibility(model: OffloadModel, contexts: Sequence[int], alpha: float) -> Record:
    """Whether the model's NICs meet BW_min for this batch at overhead `alpha`: a system-iteration record of the
    batch's iteration, infeasible (with the reason, each end short of it) when a compute NIC carries less than a
    compute NIC's BW_min or a memory NIC less than a memory NIC's (`bw_min_per_nic_bytes_per_s`). Its extras hold
    both ends' BW_min (`bw_min_compute_nic_bytes_per_s`, `bw_min_memory_nic_bytes_per_s`) and, as
    `bw_min_bytes_per_s`, the end's that limits a message (`message_nics`); its config what they are checked
    against (`compute_nic_bytes_per_s`, `memory_nic_bytes_per_s`, the limiting end's as `link_bytes_per_s`), alpha
    and the batch."""
    tp, b = model.compute.parallelism.tp, model.pool_devices
    ends = tuple(zip(("compute", "memory"), (model.link, model.pool_link), (tp, b),
                     bw_min_per_nic_bytes_per_s(model, contexts, alpha), strict=True))
    limit = ends[0] if model.message_end == "compute" else ends[1]
    cost = model.iteration(Batch((), tuple(contexts)))
    record = cost.record(model.name)
    config = {"alpha": alpha, "batch": len(contexts), "link_bytes_per_s": limit[1].bytes_per_s_per_direction,
              **{f"{end}_nic_bytes_per_s": link.bytes_per_s_per_direction for end, link, _, _ in ends}}
    extras = {"bw_min_bytes_per_s": limit[3], **{f"bw_min_{end}_nic_bytes_per_s": need for end, _, _, need in ends}}
    short = [end for end in ends if end[1].bytes_per_s_per_direction < end[3]]
    if not short:
        return replace(record, config=config, extras=extras)
    reason = "; ".join(f"link {link.name}: {have} GB/s per NIC is below BW_min {bw_min} GB/s per {end} NIC ({nics} "
                       "of them)" for end, link, nics, need in short
                       for have, bw_min in [_gb_per_s_apart(link.bytes_per_s_per_direction, need)])
    reason += f" for batch {len(contexts)} at network overhead alpha {alpha:g}"
    return replace(record, feasible=False, reason=reason, config=config, extras=extras)


def _gb_per_s_apart(low_bytes_per_s: float, high_bytes_per_s: float) -> tuple[str, str]:
    """Two different rates in GB/s written so they read apart: one decimal (with an exponent past 1e6 GB/s, where
    an alpha near 0 puts BW_min), more digits while the two read alike (a NIC a hair below BW_min), from the
    floats' exact decimals (`Decimal`), so their digits differ somewhere."""
    def shown(rate_bytes_per_s: float, digits: int) -> str:
        gb_per_s = Decimal(rate_bytes_per_s).scaleb(-9) if math.isfinite(rate_bytes_per_s) else rate_bytes_per_s
        return f"{gb_per_s:.{digits}f}" if abs(gb_per_s) < 1e6 else f"{gb_per_s:.{digits + 2}e}"

    digits = 1
    while shown(low_bytes_per_s, digits) == shown(high_bytes_per_s, digits):
        digits += 1
    return shown(low_bytes_per_s, digits), shown(high_bytes_per_s, digits)


def peak_batch_link_feasibility(model: OffloadModel, timeline: Sequence[IterationRecord], alpha: float) -> Record:
    """`link_feasibility` of a served run at its most demanding decode iteration, each request at that iteration's
    mean context (the formula's one length l: ATIME(B, l)). The pool's call walks each request's own keys, so a
    skewed iteration's ATIME is longer than at its mean, and its own contexts would usually ask a lower BW_min: the
    mean is the conservative stand-in. BW_min falls with
    the context (ATIME grows with it), so of the iterations of one batch size only the shortest mean context can ask
    the most; it does not always grow with the batch (ATIME steps up where the pool's decode kernel spills into another
    wave: LLaMA3-70B on `lamina` asks 53.2 GB/s at 234 requests of 100 tokens, 52.5 at 235), so every batch size's
    is checked, and the one asking the most is returned (its batch and context in the
    config). A run that never decoded a token after a request's first is a SpecError naming `timeline`, and an
    `alpha` too small for a finite BW_min one naming `alpha`: neither leaves a link to check."""
    shortest: dict[int, int] = {}  # batch size -> its shortest mean context
    for it in timeline:
        if it.n_decode:
            context = max(1, round(it.decode_kv_tokens / it.n_decode))
            shortest[it.n_decode] = min(context, shortest.get(it.n_decode, context))
    if not shortest:
        raise SpecError("<python>", "timeline", "no request decoded a token after its first: BW_min is a decode "
                                                "batch's, so there is nothing to check the link against")
    n, context = max(sorted(shortest.items(), reverse=True),
                     key=lambda batch: bw_min_bytes_per_s(model, [batch[1]] * batch[0], alpha))
    record = link_feasibility(model, [context] * n, alpha)  # the iteration costed once, for the worst batch
    if not math.isfinite(record.extras["bw_min_bytes_per_s"]):
        raise SpecError("<python>", "alpha", f"expected an overhead large enough for a finite BW_min, got {alpha:g}")
    return replace(record, config={**record.config, "context": context})


def offload_model(system: System, workload: Workload) -> OffloadModel:
    """`system` (a staggered or ping-pong schedule) running `workload`; a SpecError naming the system file and
    field when the pools or the head partitioning do not fit (module docstring; the loader made sure the spec has
    the link and a pool, `system_checks.check_system`)."""
    par = system.parallelism_for(workload.name)
    b = par.attention_pool
    kv_heads = int(workload.params.get("kv_heads", workload.params.get("heads", 0)))
    if kv_heads % b:
        raise SpecError(system.source, "parallelism.attention_pool",
                        f"{b} memory devices do not divide the {kv_heads} KV heads of {workload.name}: head-level "
                        "partitioning needs a divisor")
    compute = system_model_of(system, workload, par)
    pool = replace(compute, parallelism=replace(par, tp=b), shard=shard(workload, replace(par, tp=b)))
    # the placement alone decides decode attention's device: no rule that can place it has an Op/B threshold
    # (`system_checks._check_pool_rules`), so any Op/B finds it
    device = system.device_for(ATTENTION, "decode", math.inf)
    check_pool(system, device)
    holder = compute.weight_device
    check_degrees(system, par, system.devices[holder.name], functools.partial(system.blame, workload.name))
    link = system.links[ATTENTION_LINK]
    return OffloadModel(system, workload, compute, pool, b, offload_micro_batches(system), link,
                        system.links.get(ATTENTION_POOL_LINK, link), device.name)


def _layer(model: OffloadModel, contexts: tuple[int, ...]) -> OffloadLayer:
    compute, pool, tp, b = model.compute, model.pool, model.compute.parallelism.tp, model.pool_devices
    m = len(contexts)
    if m == 0:
        return OffloadLayer(0, *(0.0,) * 11)
    ops, costs = model.dense_costs(m)
    at = next(i for i, op in enumerate(ops) if op.name == ATTENTION)
    post = [costs[op.name] for op in ops[at + 1:]]
    post_s = sum(c.time_s for c in post) + allreduce_s(compute, m)
    one = pool.attention("decode", 1)  # q and the output do not depend on the context
    queries = [name for name, role in one.tensor_roles.items() if role == ACTIVATIONS_IN]  # Q (MLA: and QR)
    qkv = next(op for op in ops if op.name == "qkv")
    outputs = {t.name: t.bytes for t in qkv.tensors if t.kind == "output"}  # the queries, and the shard's K, V
    q_share = sum(outputs[name] for name in queries) / sum(outputs.values())
    qkv_s = costs["qkv"].time_s
    device = model.pool_device
    attention = model.attention_cost(contexts)
    history = [k - 1 for k in pool.decode_keys(contexts) if k > 1]  # the keys read before the new token
    history_s = model.attention_cost(history).time_s if history else 0.0
    merge_s = device.elementwise_s(_merge_bytes(pool.shard, m))
    kv_bytes = model.layer_kv_bytes(m)  # one copy of each new k, v: the pool's
    q_bytes = b * m * sum(one.tensor_bytes[name] for name in queries)
    out_bytes = b * m * one.tensor_bytes["AV"]
    link = model.message_link
    return OffloadLayer(m, costs["attn_norm"].time_s, q_share * qkv_s, (1 - q_share) * qkv_s, post_s,
                        attention.time_s, history_s, merge_s, link.latency_s, link.wire_s(q_bytes),
                        link.wire_s(kv_bytes), link.wire_s(out_bytes), tp * sum(c.energy_j for c in costs.values()),
                        b * attention.energy_j, q_bytes + kv_bytes + out_bytes)


ATTENTION_MEMO_CALLS = 64  # the latest pool attention calls an offload model remembers (`attention_cost`)
DIVIDE_AND_CONQUER = "attention-decode-divide-conquer"
HISTORY_RANK = "M"


@functools.lru_cache(maxsize=4096)
def _merge_bytes_of(params: tuple, requests: int) -> float:
    cascade = library.load_cascade_spec(DIVIDE_AND_CONQUER)
    binding = bind(cascade, dict(params), {"batch": requests, "seq_len": 1}, "<offload>")
    return float(sum(t.bytes for t in tensor_infos(binding) if HISTORY_RANK not in t.ranks))


def _merge_bytes(heads_of: Workload, requests: int) -> float:
    """Bytes of the divide-and-conquer cascade's tensors outside the history rank, for `requests` requests of a
    memory device's heads (`heads_of`: its shard)."""
    names = ("heads", "kv_heads", "head_dim", "word_bytes")
    return _merge_bytes_of(tuple((k, heads_of.params[k]) for k in names if k in heads_of.params), requests)
