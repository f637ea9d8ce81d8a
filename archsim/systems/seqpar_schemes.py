"""The timing of each sequence-parallel scheme: one layer's attention (`SCHEME_TIMINGS`, `decode`) and the rest of
the layer (`dense`) on the busiest device, with the scheme's communication, for a `seqpar_spec.ParallelSpec` and
the `seqpar_compute.DeviceCompute` of one tp rank. What each device computes is costed by the GPU model
(`archsim.systems.seqpar_compute`), or on arrays by the analytical model (`seqpar_compute.ArrayCompute`: the
softmax prefills' forward attention blocks, the same schedules); transfers are alpha-beta over the link the group spans
(`archsim.systems.collectives`, `Topology`): a ring's K/V hop, one device's send, at the group's slowest hop
(`Topology.group_link`); a ring collective (all-gather, reduce-scatter) over nodes as NCCL's rings, one channel a
device of a node, each crossing the nodes on its own device's NIC (`Topology.collective_link`). The result with its
memory is `archsim.systems.seqpar`.

The schemes, as their papers and reference code run them (../shared/reference/seqpar-sparse.md §1, §4; the
executable form of each is a library cascade, `einsum/*ring*`, `ulysses-attention`, `lasp*`):

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
  dK and dV accumulators travelling (fp32, as ring-flash-attention accumulates them), each step's transfer as
  ring-flash-attn 0.1.8's backward posts it (`backward_hops_s`): step s's dK, dV leave after its compute and the
  next device adds them after its step s + 1, so step 0 carries K/V, steps 1..P-2 K/V and the previous step's dK,
  dV, step P-1 only those, and one more hop, after the last step's compute whose gradients it carries, brings dK,
  dV home.
- `ulysses` (DeepSpeed-Ulysses): an all-to-all of Q, K, V from sequence to head shards, attention over all N tokens
  on H/P query and H_kv/P KV heads, an all-to-all of O back; the backward the same with dO and dQ, dK, dV. Nothing
  overlaps. P must divide H and H_kv.
- `usp` (Ulysses x Ring, `ulysses` = u devices, best inside a node): P/u Ulysses groups of u consecutive ranks
  run the all-to-alls, then u ring groups (the ranks u apart) run zigzag ring attention over P/u devices with H/u
  heads and N/(P/u) tokens per block; causal, N a multiple of lcm(P, 2P/u) (`seqpar_spec.token_multiple`). Every
  group is timed over its own links, the slowest sets the time: each all-to-all the slowest Ulysses group's (a
  ring needs every group's heads, the O all-to-all every ring's output), the ring the slowest ring group's. With u
  not lining up with a node's devices, a Ulysses group spanning two nodes exchanges over the NIC, and so do the ring
  groups whose neighbours sit in different nodes.
- `megatron-sp` (Megatron-LM sequence parallelism): an all-gather of the sequence-sharded N x h input, attention on
  H/P heads over all N tokens, a reduce-scatter of the N x h output; the backward the reverse pair. With P
  beyond the KV heads each device keeps one KV head, repeated over P / H_kv devices (P must then be a multiple of
  H_kv), in the timing and the memory alike. With `tp` > 1 the heads are cut over tp x P devices and the pair
  (as many bytes as one ring all-reduce) runs hierarchically (`collectives.hierarchical_all_reduce_s`; Jia et al.
  2018): a reduce-scatter over the tp group's link, each device's n/tp slice over the P devices' link, an
  all-gather over the tp group's link, so each GPU's NIC carries n/tp, not the n the whole tp group holds (8
  redundant copies at tp 8); its TP all-reduces are this pair's tp level, which `dense` does not charge again.
- `allgather` (Llama 3's context parallelism; LASP-2H's softmax layers): an all-gather of K and V, then each device's
  queries (zigzag chunks) against every earlier key; exposed. One device gathers nothing and runs the one call of
  the one-device run.
- `lasp1` / `lasp2` (linear attention; Sun et al. 2024, 2025): each device's chunk runs causal linear attention on
  its own tokens; the state before the chunk (B H d x d fp32 per device, as the LASP code keeps it) comes from the
  earlier devices. LASP-1 passes it along the ring serially (seqpar-sparse.md §1: critical path (P-1)(alpha +
  state / beta + compute)), a chain the first device's K^T V GEMM starts (a state is computed before it is sent):
  receive the state, multiply Q by it (backward: K and V by dM), add the chunk's own K^T V, send. A chunk's K^T V
  does not depend on the received state, so it and the intra-chunk work run beside the chain and count in the
  device's compute, an order LASP-1's Algorithm 2 (arXiv 2404.02882) allows, though it writes the update after the
  receive. Two other orders were measured and not taken (README, "Multi-device attention"): Algorithm 2 read
  literally (every device's intra-chunk work first, then two d x d GEMMs a hop, three backward) takes 12.065 ms a
  layer on 8 H100s at 1M against this schedule's 4.871 and put LASP-2 +70.8 % / +84.7 % over LASP-1 in LASP-2's
  Fig. 3 when its all-gather crossed the nodes on one NIC (paper +7.3 % / +15.2 %); LASP's code (lasp 0.0.1
  receives the state before any of the chunk's compute, so a layer's chain carries every device's whole chunk)
  takes 2.84 s a Fig. 3 step at 512K against the 1.84 s
  LASP-1's own plot shows. The last device, done with its own work before the state arrives, waits: of that idle
  time, what the chain spends on hops is exposed communication and what it spends on the earlier devices' products
  is `Timing.wait_s` (`chain_idle_s`: the chain's segments in order, the idle time its last stretch). Only causal
  linear attention is modelled (`--no-causal`, whose chunks would all take the total state, is refused). LASP-2
  computes its chunk's state first, then all-gathers every device's state at once, overlapped with the intra-chunk
  work, then sums the earlier states (a prefix sum), then multiplies Q by the sum; its backward all-gathers dM
  beside the backward's own intra-chunk work, so each pass hides its own gather: max(L, G) + max(2L, G), not the
  two merged. The backward passes dM the other way (LASP-1) or all-gathers it (LASP-2). `ring` on a
  linear-attention workload is LASP-2's baseline, ring attention without the right-product trick (left products
  over K/V blocks), costed as softmax attention blocks.
- `lasp2h` (LASP-2H, LASP-2 §3.5, a hybrid model) has no timing of its own here: its linear layers are `lasp2`'s and
  its softmax layers `allgather`'s, combined per layer by `archsim.systems.seqpar` (count-weighted mean).

Decode (`direction: decode`, one new token per sequence over `seq_len` cached tokens; the attention only):
`ring` passes the K/V blocks around the ring while each device reads its block for the query (Ring Attention's
inference: the transfers dominate); `megatron-sp` is head-parallel decode (each device reads all tokens of H/P
heads; any `seq_len`, since it cuts no sequence), whose heads' outputs are combined as its prefill's are, an
all-gather and a reduce-scatter of the new tokens' hidden vectors (the row-parallel output projection's
all-reduce; latency-bound at one token); `distattention` (Infinite-LLM's DistAttention) sends the query to
each of the P holders of N/P tokens, each returns its partial (o, max, sum-exp) in fp32, and the owner merges them:
(P-1) queries out and partials in over its port, one decode call over N/P tokens and a merge pass. Assumption: the
P-1 sends out, and the P-1 partials back, are each issued as one group (NCCL's grouped send/recv: the collectives'
`scatter_s` and `gather_s`): the holders are distinct peers behind a switch (NVSwitch in a node, a NIC switch
across nodes) and no send waits on another (unlike a ring's steps, each needing the last), so their latencies
overlap and only their bytes serialise on the owner's port: alpha + (P-1) x query / beta out, alpha + (P-1) x
partial / beta back, each level's peers over that level's link, the levels' ports at once (`_owner_exchange_s`).
(As 2(P-1) serial messages, each paying alpha, DistAttention ran at 0.90x head-parallel decode's speed at 4K tokens
on 4 A100s, its exposed time growing by 2 alpha a device; Infinite-LLM reports it 1.01-1.25x faster.) The decode
kernel is Flash-Decoding.

Scope `attention` times the attention and the scheme's communication; `layer` adds the device's other ops of the
decoder layer (projections, FFN, norms; `seqpar_compute.dense_s`) on its tokens (Megatron-SP: its GEMMs over all N
tokens with 1/P of the weights, its norms and residual adds on its own N / (tp x P) tokens, the sequence-parallel
regions of Korthikanti et al. 2022 §4.2.2, and the FFN's all-gather and reduce-scatter too), and with `tp` > 1 the
TP all-reduces (megatron-sp's are its pairs' tp level). The other schemes send what each tp rank holds of its own
heads (K, V, Q, O, states, partials), distinct on every GPU of the tp group, so their transfers are each GPU's own
over its own port (but for tp beyond the KV heads: the GPUs keeping one KV head each send their copy, as each tp
rank's own ring would). `tp` puts each sequence-parallel rank's heads on tp devices of a node (Meta's context
parallelism across nodes with TP8 inside): the group's members are tp apart (`group_members`), so a ring of nodes
runs over the NICs; the TP group's all-reduces are timed over the innermost link (a TP group lies inside a node:
`seqpar_spec`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from archsim.systems import collectives
from archsim.systems.links import Link
from archsim.systems.seqpar_compute import Compute, DeviceCompute, shard
from archsim.systems.seqpar_spec import RING_SCHEMES, ParallelSpec
from archsim.systems.sharding import kv_heads_per_device
from archsim.systems.topology import WORD_BYTES, Topology

ACCUMULATOR_BYTES = 4  # fp32 dK/dV accumulators and linear-attention states

Call = tuple[int, int, bool]  # one softmax-attention kernel call: (query tokens, key tokens, causal)
Block = tuple[int, int, bool, int, int]  # a call of some heads: (query tokens, key tokens, causal, heads, KV heads)
# the schemes whose sequence-parallel group talks in ring collectives (all-gather, reduce-scatter): NCCL's channels
# (`Topology.collective_link`); lasp2h's linear layers are lasp2's and its softmax layers allgather's
COLLECTIVE_SCHEMES = frozenset({"megatron-sp", "allgather", "lasp2", "lasp2h"})


@dataclass(frozen=True)
class Timing:
    """One scheme's time of a layer (or its attention) on the busiest device: `time_s`, of which `compute_s` is the
    device's compute and `comm_s` the scheme's transfers as if alone on the link; `wait_s` the part of the time
    the device waits on another device's compute (LASP-1's chain; 0 for the other schemes), so the time less the
    compute and the wait is the communication it exposes. `recompute_s`: of the time, a training step's recomputed
    forward (layer checkpointing, `seqpar._timing`), whose compute, transfers and wait are in the other parts."""

    time_s: float
    compute_s: float
    comm_s: float
    wait_s: float = 0.0
    recompute_s: float = 0.0


def group_members(count: int, stride: int) -> list[int]:
    """The ranks of a group of `count` devices `stride` apart (one per tensor-parallel group or node)."""
    return [i * stride for i in range(count)]


def scheme_link(spec: ParallelSpec) -> Link | None:
    """The link `spec`'s sequence-parallel group (its P ranks, `tp` apart) communicates over, as its timing takes it
    and its row names it: a ring collective's over NCCL's channels for `COLLECTIVE_SCHEMES`
    (`Topology.collective_link`: "ib-ndr-400g x 8" for 16 H100s over two nodes), else the group's slowest hop
    (`Topology.group_link`: a ring's K/V hop; the link Ulysses' and usp's all-to-alls, LASP-1's chain and
    DistAttention's exchanges, each timed level by level or hop by hop, are named by). None: a topology of one
    device and no link."""
    members = group_members(spec.devices, spec.tp)
    if spec.scheme in COLLECTIVE_SCHEMES:
        return spec.topology.collective_link(members)
    return spec.topology.group_link(members)


def kv_bytes(tokens: int, compute: Compute) -> float:
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


@dataclass(frozen=True)
class RingLayout:
    """The calls of a ring device d holding device (d - s) mod P's K/V block j at step s: its own block (j == d,
    step 0: `diagonal`), an earlier device's (j < d, steps 1..d: `below`) and a later one's (j > d, steps
    d+1..P-1: `above`, None where the ring skips it). The one statement of the ring layouts (module docstring):
    their timing (`_ring_work`) and each device's blocks (`device_blocks`) read it."""

    diagonal: Call
    below: Call
    above: Call | None

    def calls(self, p: int) -> tuple[Call, ...]:
        """The distinct calls a ring of `p` devices runs: every device its own block, an earlier device's where
        there is one (P > 1) and a later one's where the ring runs it."""
        return (self.diagonal, *((self.below,) if p > 1 else ()),
                *((self.above,) if p > 1 and self.above is not None else ()))


def ring_layout(layout: str, p: int, c: int, causal: bool) -> RingLayout:
    """The calls of a ring of `p` devices of `c` tokens each under `layout` (ring, zigzag or stripe; the module
    docstring): not causal, every block a full c x c call; causal, the own block a causal c x c call, and a
    stripe's (or a lone device's) every block too; a ring's earlier block a full c x c call and its later one
    skipped; zigzag's earlier block c queries x c/2 keys, its later one c/2 x c."""
    if not causal:
        return RingLayout((c, c, False), (c, c, False), (c, c, False))
    diagonal = (c, c, True)
    if layout == "stripe" or p == 1:  # stripe: every block is causal-shaped (the diagonal kept or not)
        return RingLayout(diagonal, diagonal, diagonal)
    if layout == "ring":
        return RingLayout(diagonal, (c, c, False), None)
    return RingLayout(diagonal, (c, c // 2, False), (c // 2, c, False))


def _ring_work(layout: str, p: int, c: int, causal: bool, compute: Compute) -> RingWork:
    """compute[d][s]: device d's kernel time at ring step s (`ring_layout`'s calls; 0 for a skipped block). The
    kernel calls are timed in the order the matrix first meets them (own, later, earlier), so a refused call is the
    same one."""
    calls = ring_layout(layout, p, c, causal)
    diagonal = compute.attention_s(*calls.diagonal)
    above = 0.0 if calls.above is None else compute.attention_s(*calls.above)
    return RingWork(p, diagonal, compute.attention_s(*calls.below), above)


def ring_schedule_s(work: RingWork | Sequence[Sequence[float]], hop_s: float | Sequence[float],
                    last_hop_s: float = 0.0) -> float:
    """The finish of a ring of P devices whose device d computes work[d][s] in step s while passing data on.
    `hop_s`: the transfer each device starts to the next at step s and the next needs by the end of its step s, one
    per step s = 0..P-1 (a backward's `backward_hops_s`), or one float, the forward's K/V hop at steps 0..P-2 and
    none in the last step. `last_hop_s` is a final transfer after the last step (dK, dV going home): it carries that
    step's gradients, so it starts when the step's compute ends. `work` is a `RingWork` or any P x P matrix; the P
    devices of a step advance together in numpy."""
    if isinstance(work, RingWork):
        p, column = work.devices, work.column
    else:
        matrix = np.asarray(work, dtype=np.float64)
        p, column = len(matrix), (lambda s: matrix[:, s])
    hops = [hop_s] * (p - 1) + [0.0] if isinstance(hop_s, float | int) else list(hop_s)
    if p == 1:
        return float(column(0)[0]) + last_hop_s
    start = np.zeros(p)
    for s in range(p - 1):  # start[d] = max(start[d] + work[d][s], start[d] + hop, start[d - 1] + hop)
        start = _after_hops(start + column(s), start, hops[s])
    finish = start + column(p - 1)
    if hops[-1]:  # a transfer in the last step (a backward's dK, dV) arrives before the step ends
        finish = _after_hops(finish, start, hops[-1])
    return float((finish + last_hop_s).max())


def _after_hops(ready: np.ndarray, start: np.ndarray, hop_s: float) -> np.ndarray:
    """Per device, `ready` or, if later, the end of a step's transfers: its own to the next device and the one it
    receives from the previous (d - 1), each taking `hop_s` from the step's `start`."""
    return np.maximum(np.maximum(ready, start + hop_s), np.roll(start, 1) + hop_s)


def backward_hops_s(p: int, kv_hop_s: float, grads_hop_s: float) -> list[float]:
    """A ring backward's transfer at each step s = 0..P-1 (`ring_schedule_s`), as ring-flash-attn runs it
    (`ring_flash_attn_backward`, `zigzag_ring_flash_attn_backward`, stripe's and yunchang's the same): step s
    sends the K/V block for step s + 1 (none after the last) and, posted when step s - 1's compute ended, step s -
    1's dK, dV (none before step 1), which the next device adds to after its step s compute; both are on its link at
    once, so a step carries the two in turn. Step 0: K/V; steps 1..P-2: K/V and dK, dV; step P-1: dK, dV."""
    return [(kv_hop_s if s < p - 1 else 0.0) + (grads_hop_s if s > 0 else 0.0) for s in range(p)]


def _ring(spec: ParallelSpec, compute: Compute, layout: str, p: int, link: Link | None, c: int) -> Timing:
    """A ring of `p` devices of `c` tokens each under `layout` whose every hop goes over `link` (module
    docstring); one device sends nothing, over no link (None: `Topology.group_link` of a topology of one device)."""
    kv = kv_bytes(c, compute)
    forward = replace(compute, direction="fwd")
    work = _ring_work(layout, p, c, spec.causal, forward)
    hop = collectives.send_recv_s(kv, link) if p > 1 else 0.0
    time_s = ring_schedule_s(work, hop)
    busiest = float(work.row_sums().max())
    comm = (p - 1) * hop
    if spec.direction == "fwd+bwd":
        backward = replace(compute, direction="fwd+bwd")
        back = _ring_work(layout, p, c, spec.causal, backward).minus(work)
        grads = collectives.send_recv_s(kv * ACCUMULATOR_BYTES / WORD_BYTES, link) if p > 1 else 0.0
        back_hops = backward_hops_s(p, hop, grads)
        time_s += ring_schedule_s(back, back_hops, grads)  # dK, dV home after the last step
        busiest = float((work.row_sums() + back.row_sums()).max())
        comm += (p - 1) * (hop + grads) + grads  # each step's K/V and dK, dV once, and the hop home
    return Timing(time_s, busiest, comm)


def _ring_scheme(spec: ParallelSpec, compute: Compute) -> Timing:
    p = spec.devices
    return _ring(spec, compute, spec.scheme, p, scheme_link(spec), spec.seq_len // p)


# --- each device's blocks -----------------------------------------------------------------------------------------


def device_blocks(spec: ParallelSpec, heads: int, kv_heads: int, seq_len: int) -> list[Counter[Block]]:
    """Each of the P devices' softmax-attention calls under `spec`'s scheme at `seq_len` tokens, for one tp rank of
    `heads` query and `kv_heads` KV heads, and how many times it runs each (empty blocks left out): a ring device's
    own, earlier and later blocks (`ring_layout`); usp's rings of N/(P/u) tokens and u-fold fewer heads, each ring
    device's blocks on its u Ulysses devices; ulysses' and megatron-sp's one call over all N tokens of their heads
    (megatron-sp beyond the KV heads: one, repeated); allgather's (and lasp2h's softmax layers') one call on one
    device, else each device's queries against every key (not causal) or its two zigzag chunks of N/2P tokens, each
    against the earlier keys and its causal diagonal. The one statement of the schemes' layouts: their timings
    read it (`busy_s`; a ring's schedule `ring_layout`), as do the memory's calls and the arrays' energy
    (`archsim.systems.seqpar`). The busiest device's time is the scheme's compute; LASP's chunks and a decode step
    have no such calls (the caller leaves them out)."""
    p, n, causal = spec.devices, seq_len, spec.causal
    if spec.scheme in RING_SCHEMES or spec.scheme == "usp":
        layout, r, u = _ring_of(spec)
        ring = _ring_blocks(ring_layout(layout, r, n // r, causal), r, heads // u, kv_heads // u)
        return [blocks for blocks in ring for _ in range(u)]
    if spec.scheme == "ulysses":
        return [Counter({(n, n, causal, heads // p, kv_heads // p): 1}) for _ in range(p)]
    if spec.scheme == "megatron-sp":
        return [Counter({(n, n, causal, heads // p, kv_heads_per_device(kv_heads, p)): 1}) for _ in range(p)]
    if p == 1:  # allgather on one device: nothing to gather, the one-device run's call
        return [Counter({(n, n, causal, heads, kv_heads): 1})]
    if not causal:
        return [Counter({(n // p, n, False, heads, kv_heads): 1}) for _ in range(p)]
    return [Counter([earlier for earlier, _ in chunks if earlier[1]] + [diagonal for _, diagonal in chunks])
            for chunks in _allgather_chunks(p, n, heads, kv_heads)]


def _allgather_chunks(p: int, n: int, heads: int, kv_heads: int) -> list[tuple[tuple[Block, Block], ...]]:
    """Each of a causal allgather's `p` devices' two zigzag chunks (d and 2P-1-d, N/2P queries each): per chunk,
    its call against the keys before it (no keys for the first chunk) and its causal diagonal."""
    half = n // (2 * p)
    diagonal = (half, half, True, heads, kv_heads)
    return [tuple(((half, chunk * half, False, heads, kv_heads), diagonal) for chunk in (d, 2 * p - 1 - d))
            for d in range(p)]


def distinct_blocks(spec: ParallelSpec, heads: int, kv_heads: int, seq_len: int) -> set[Block]:
    """The calls any device runs under `spec`'s scheme (the union of `device_blocks`' devices), for a ring (and
    usp's rings) read off its layout (`RingLayout.calls`) instead of counting each of the P devices' blocks (the
    memory's search over lengths asks this at every step: 4096 devices' counts a step had been most of `archsim
    parallel`'s time at P = 4096)."""
    if spec.scheme not in RING_SCHEMES and spec.scheme != "usp":
        return set().union(*device_blocks(spec, heads, kv_heads, seq_len))
    layout, r, u = _ring_of(spec)
    return {(*call, heads // u, kv_heads // u) for call in ring_layout(layout, r, seq_len // r, spec.causal).calls(r)}


def _ring_of(spec: ParallelSpec) -> tuple[str, int, int]:
    """(layout, ring devices, Ulysses degree u) of a ring scheme's ring: the scheme's own over all P devices; usp's
    zigzag (causal) or plain ring over P / u devices, each ring device's heads on u Ulysses devices."""
    if spec.scheme == "usp":
        return "zigzag" if spec.causal else "ring", spec.devices // spec.ulysses, spec.ulysses
    return spec.scheme, spec.devices, 1


def _ring_blocks(calls: RingLayout, p: int, heads: int, kv_heads: int) -> list[Counter[Block]]:
    """`device_blocks` of a ring of `p` devices: device d's own block once, an earlier device's d times and a later
    one's p - 1 - d times (none where skipped), of `heads` and `kv_heads` heads."""
    def of(call: Call) -> Block:
        return (*call, heads, kv_heads)

    def device(d: int) -> Counter[Block]:
        blocks = Counter({of(calls.diagonal): 1})
        blocks[of(calls.below)] += d
        if calls.above is not None:
            blocks[of(calls.above)] += p - 1 - d
        return +blocks  # without the blocks run no time
    return [device(d) for d in range(p)]


def busy_s(blocks: Counter[Block], compute: Compute) -> float:
    """The time a device runs `blocks` (each block's `attention_s` x its count), summed in their order."""
    return sum(count * compute.attention_s(*block) for block, count in blocks.items())


# --- head-sharding schemes ---------------------------------------------------------------------------------------


def _ulysses(spec: ParallelSpec, compute: Compute) -> Timing:
    p, n = spec.devices, spec.seq_len
    members = group_members(p, spec.tp)
    qkv, o = _a2a_bytes(compute, n // p)
    comm = spec.topology.all_to_all_s(qkv, members) + spec.topology.all_to_all_s(o, members)
    if spec.direction == "fwd+bwd":
        comm *= 2  # dO in, dQ, dK, dV back
    attn = max(busy_s(blocks, compute) for blocks in device_blocks(spec, compute.heads, compute.kv_heads, n))
    return Timing(attn + comm, attn, comm)


def _a2a_bytes(compute: Compute, tokens: int) -> tuple[float, float]:
    """(Q, K, V) and O bytes one device holds for `tokens` tokens of its heads: the all-to-alls' buffers (the
    attention cascade's tensors)."""
    sizes = compute.attention_bytes(tokens)
    return float(sizes["Q"] + sizes["K"] + sizes["V"]), float(sizes["AV"])


def _usp(spec: ParallelSpec, compute: Compute) -> Timing:
    """Every Ulysses group's all-to-alls, then every ring group's ring (module docstring): each all-to-all as long
    as the slowest of the P/u Ulysses groups' (a ring group holds one device of each, so its ring starts when they
    all have their heads, and the O all-to-all waits on every ring), the ring as the slowest ring group's (a group
    whose hops cross a node steps at the NIC). The groups' compute is the same; they differ only in their links."""
    p, n = spec.devices, spec.seq_len
    layout, r, u = _ring_of(spec)
    ulysses_groups, ring_groups = _usp_groups(spec)
    a2a = sum(max(spec.topology.all_to_all_s(size, group) for group in ulysses_groups)
              for size in _a2a_bytes(compute, n // p))
    if spec.direction == "fwd+bwd":
        a2a *= 2
    heads = replace(compute, heads=compute.heads // u, kv_heads=compute.kv_heads // u)
    links = {spec.topology.group_link(group) for group in ring_groups}
    ring = max((_ring(spec, heads, layout, r, link, n // r) for link in links),
               key=lambda timing: (timing.time_s, timing.comm_s))  # of rings as fast, the one with the slower hops
    return Timing(ring.time_s + a2a, ring.compute_s, ring.comm_s + a2a)


def _usp_groups(spec: ParallelSpec) -> tuple[list[list[int]], list[list[int]]]:
    """(Ulysses groups, ring groups) of a usp spec's ranks: P/u Ulysses groups of u consecutive sequence-parallel
    ranks (group g: ranks g u .. g u + u - 1), and u ring groups of the ranks u apart (group j: ranks j, j + u, ...),
    each rank `tp` devices apart (`group_members`)."""
    _, r, u = _ring_of(spec)
    tp = spec.tp
    ulysses = [[g * u * tp + member for member in group_members(u, tp)] for g in range(r)]
    rings = [[j * tp + member for member in group_members(r, u * tp)] for j in range(u)]
    return ulysses, rings


def _head_parallel_comm_s(spec: ParallelSpec, compute: Compute, tokens: int) -> float:
    """Megatron-SP's combine of `tokens` tokens' hidden vectors (N x h) over its tp x P devices: an all-gather before
    the heads and a reduce-scatter after the output projection, as many steps and bytes as one ring all-reduce
    (a reduce-scatter, then an all-gather). With tp > 1, hierarchically (`collectives.hierarchical_all_reduce_s`;
    module docstring): the all-gather over the P devices' link of each tp device's own 1/tp slice, then over the
    tp group's link, and the reduce-scatter the reverse, so each GPU's NIC carries n/tp, not the n every GPU of
    the tp group holds. Each level's ring runs NCCL's channels where its group spans nodes (`collective_link`: 16
    ranks over two nodes cross them on all 8 NICs at once). A level of one device takes no step (0 on one device, as
    the collectives are)."""
    hidden = compute.hidden_bytes(tokens, int(spec.workload.params["hidden"]))
    levels = [(spec.topology.collective_link(group_members(spec.tp, 1)), spec.tp)] if spec.tp > 1 else []
    levels += [(scheme_link(spec), spec.devices)] if spec.devices > 1 else []  # megatron-sp's P ranks
    return collectives.hierarchical_all_reduce_s(hidden, levels, algorithm="ring") if levels else 0.0


def _megatron_sp(spec: ParallelSpec, compute: Compute) -> Timing:
    n = spec.seq_len
    comm = _head_parallel_comm_s(spec, compute, n)
    if spec.direction == "fwd+bwd":
        comm *= 2
    if spec.scope == "layer":
        comm *= 2  # the FFN's all-gather and reduce-scatter
    attn = max(busy_s(blocks, compute) for blocks in device_blocks(spec, compute.heads, compute.kv_heads, n))
    return Timing(attn + comm, attn, comm)


def _allgather(spec: ParallelSpec, compute: Compute) -> Timing:
    p, n = spec.devices, spec.seq_len
    if spec.causal and p > 1:  # chunk by chunk (`device_blocks`' chunks, each chunk's two calls added first)
        busiest = max(sum(sum(compute.attention_s(*call) for call in chunk) for chunk in chunks)
                      for chunks in _allgather_chunks(p, n, compute.heads, compute.kv_heads))
    else:
        busiest = max(busy_s(blocks, compute) for blocks in device_blocks(spec, compute.heads, compute.kv_heads, n))
    if p == 1:  # nothing to gather: the one call of the one-device run
        return Timing(busiest, busiest, 0.0)
    gathered = kv_bytes(n, compute)
    link = scheme_link(spec)
    comm = collectives.all_gather_s(gathered, p, link)
    if spec.direction == "fwd+bwd":
        comm += collectives.reduce_scatter_s(gathered * ACCUMULATOR_BYTES / WORD_BYTES, p, link)
    return Timing(busiest + comm, busiest, comm)


# --- linear attention --------------------------------------------------------------------------------------------


def _state_bytes(spec: ParallelSpec, compute: DeviceCompute) -> float:
    """One device's chunk state M (K^T V per head) of the `lasp2-linear-attention` cascade, in fp32 as LASP keeps
    it."""
    return compute.lasp_state_bytes(spec.seq_len, spec.devices) * ACCUMULATOR_BYTES / WORD_BYTES


def _lasp(spec: ParallelSpec, compute: DeviceCompute) -> Timing:
    p, c = spec.devices, spec.seq_len // spec.devices
    members = group_members(p, spec.tp)
    state = _state_bytes(spec, compute)
    local = compute.linear_chunk_s(c)
    kv_state = compute.state_gemm_s(c)  # the chunk's K^T V, what the others need
    inter = compute.state_gemm_s(c)  # Q times the earlier chunks' state
    if p == 1:
        return Timing(local + kv_state, local + kv_state, 0.0)
    passes = 2 if spec.direction == "fwd+bwd" else 1  # the backward's dM chain or all-gather
    if spec.scheme == "lasp1":
        # the first device's K^T V GEMM (backward: the last one's dM), then each hop: send, receive the state, the
        # products that need it (forward: Q times it; backward: K and V times the received dM, twice the forward's),
        # add the chunk's own K^T V, send on: seqpar-sparse.md §1's critical path (P-1) (alpha + state / beta +
        # compute), here the state's GEMM, then the P-1 hops one after another, each over the link joining its two
        # devices (NVLink inside a node, the NIC between nodes; a lock-step ring would step all at the slowest), and
        # P-2 hops' compute beside them plus the last device's own; each device's intra-chunk work and own K^T V
        # (which do not need the received state) run beside the chain
        hops = [collectives.send_recv_s(state, link) * passes for link in spec.topology.chain_links(members)]
        hops_s = sum(hops)
        hop_compute = inter + compute.elementwise_s(3 * state) * passes
        arrival = kv_state + hops_s + (p - 2) * hop_compute
        own = local + kv_state
        # the chain as the last device waits on it: which of its idle time is a hop in flight (exposed
        # communication) and which an earlier device's products (its wait)
        chain = [(kv_state, False), (hops[0], True)] + [segment for hop in hops[1:]
                                                        for segment in ((hop_compute, False), (hop, True))]
        _, wait_s = chain_idle_s(chain, own)
        return Timing(max(own, arrival) + hop_compute, own + hop_compute, hops_s, wait_s)
    # LASP-2 (its Algorithm 1): the chunk's state first, then its all-gather beside the intra-chunk attention (one
    # GPU: the state GEMM and the intra-chunk work take turns, the transfer overlaps the latter), then the prefix
    # sum and Q times it; a backward all-gathers dM beside the backward's own intra-chunk work
    gather = collectives.all_gather_s(p * state, p, scheme_link(spec))
    local_fwd = replace(compute, direction="fwd").linear_chunk_s(c)
    overlapped = max(local_fwd, gather)
    if spec.direction == "fwd+bwd":
        overlapped += max(local - local_fwd, gather)
    prefix = compute.elementwise_s((p + 1) * state) * passes
    time_s = kv_state + overlapped + prefix + inter
    return Timing(time_s, local + kv_state + prefix + inter, gather * passes)


def chain_idle_s(segments: Sequence[tuple[float, bool]], ready_s: float) -> tuple[float, float]:
    """How a device ready at `ready_s` and waiting for the end of a chain of `segments` (each a duration and
    whether it is a transfer, one after another from 0) spends its idle time, from `ready_s` to the chain's end:
    (transfer, compute) seconds, what of each segment lies after `ready_s`. LASP-1's last device: the transfers
    in flight are its exposed communication, the other devices' products of the chain its wait."""
    idle = {True: 0.0, False: 0.0}
    start_s = 0.0
    for duration_s, transfer in segments:
        idle[transfer] += max(0.0, start_s + duration_s - max(start_s, ready_s))
        start_s += duration_s
    return idle[True], idle[False]


# --- decode ------------------------------------------------------------------------------------------------------


def decode(spec: ParallelSpec, compute: DeviceCompute) -> Timing:
    """One decode step over a context of `seq_len` cached tokens (module docstring, "decode")."""
    p, n = spec.devices, spec.seq_len
    members = group_members(p, spec.tp)
    if spec.scheme == "megatron-sp":  # head-parallel: every device reads all tokens of its heads
        attn = compute.decode_s(n, compute.heads // p, kv_heads_per_device(compute.kv_heads, p))
        comm = _head_parallel_comm_s(spec, compute, 1)  # the new token of each sequence
        return Timing(attn + comm, attn, comm)
    block = compute.decode_s(n // p)
    if spec.scheme == "ring":
        hop = collectives.send_recv_s(kv_bytes(n // p, compute), scheme_link(spec)) if p > 1 else 0.0
        return Timing(ring_schedule_s(RingWork(p, block, block, block), hop), p * block, (p - 1) * hop)
    query, partial = distattention_messages(compute, n, p)
    send = (_owner_exchange_s(spec.topology, members, query, collectives.scatter_s)
            + _owner_exchange_s(spec.topology, members, partial, collectives.gather_s))
    merge = distattention_merge_s(compute, partial, p)
    return Timing(send + block + merge, block + merge, send)


def _owner_exchange_s(topology: Topology, members: Sequence[int], peer_bytes: float,
                      exchange: Callable[[float, int, Link], float]) -> float:
    """DistAttention's one grouped exchange of `peer_bytes` between a query's owner and each other of `members`
    (`exchange`: `collectives.scatter_s` out, `gather_s` back; module docstring, "decode"): the peers the owner
    reaches over each level's link (`Topology.peers_by_level`) take that level's port, alpha + peers x
    `peer_bytes` / beta, and the levels' ports work at once (a GPU's NVSwitch port beside its own NIC), so the
    slowest level sets the time, as `Topology.all_to_all_s` times its levels; the owner is the member for whom that
    takes longest (a node holding fewer of the members sends more of its owner's messages over the NIC)."""
    slowest_s = 0.0
    for peers_by_level in topology.peers_by_level(members):
        for level, peers in peers_by_level.items():
            slowest_s = max(slowest_s, exchange((peers + 1) * peer_bytes, peers + 1, topology.levels[level].link))
    return slowest_s


def distattention_messages(compute: DeviceCompute, keys: int, p: int) -> tuple[float, float]:
    """(query, partial) bytes one of `p` KV holders exchanges per decode step of `compute.batch` sequences over
    `keys` cached tokens: the `distattention-decode` cascade's query QD to each holder, and each holder's partial
    (o, max, sum-exp: PNV, PM, PD) back, in fp32 (`ACCUMULATOR_BYTES`) as the merge reads them."""
    sizes = compute.distattention_bytes(keys, p)  # the cascade's transfers, summed over the p holders
    partial = (sizes["PM"] + sizes["PD"] + sizes["PNV"]) / p * ACCUMULATOR_BYTES / WORD_BYTES
    return sizes["QD"] / p, partial


def distattention_merge_s(compute: DeviceCompute, partial_bytes: float, p: int) -> float:
    """The merge of `p` holders' partials (`distattention_messages`' `partial_bytes` each) into the output: one
    elementwise pass over all p; nothing to merge on one device."""
    return compute.elementwise_s(p * partial_bytes) if p > 1 else 0.0


SCHEME_TIMINGS: dict[str, Callable[[ParallelSpec, Compute], Timing]] = {
    "ring": _ring_scheme, "zigzag": _ring_scheme, "stripe": _ring_scheme, "ulysses": _ulysses, "usp": _usp,
    "megatron-sp": _megatron_sp, "allgather": _allgather, "lasp1": _lasp, "lasp2": _lasp,
    "distattention": decode,
}


# --- the rest of the layer ---------------------------------------------------------------------------------------


def dense(spec: ParallelSpec, compute: DeviceCompute) -> Timing:
    """The layer's other ops on one device, and the TP all-reduces (module docstring; megatron-sp's are the tp level
    of its own all-gathers and reduce-scatters, `_head_parallel_comm_s`)."""
    p, n = spec.devices, spec.seq_len
    megatron = spec.scheme == "megatron-sp"
    tokens = n if megatron else n // p
    degree = spec.tp * (p if megatron else 1)
    cut_by = "tp x P (megatron-sp's devices)" if megatron else "tp"
    # megatron-sp's norms and residual adds run on the device's own shard of the sequence, cut over all tp x P
    # devices as its all-gathers and reduce-scatters cut it (`SEQUENCE_PARALLEL_OPS`; the busiest device's, ceil)
    ops_s = compute.dense_s(shard(spec.workload, degree, cut_by), tokens, -(-n // degree) if megatron else tokens)
    comm = 0.0
    if spec.tp > 1 and not megatron:  # megatron-sp's are its combine's tp level (its own comm)
        node = spec.topology.collective_link(list(range(spec.tp)))
        message = compute.hidden_bytes(tokens, int(spec.workload.params["hidden"]))
        comm = 2 * collectives.all_reduce_s(message, spec.tp, node, algorithm="ring")
        if spec.direction == "fwd+bwd":
            comm *= 2
    return Timing(ops_s + comm, ops_s, comm)
