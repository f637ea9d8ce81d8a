"""A bank-PIM HBM as a device: decode attention's GEMVs inside the banks (NeuPIMs, Heo et al., ASPLOS'24).

Timing is `archsim.systems.pim` (Newton/NeuPIMs commands on one channel, ../shared/reference/pim.md §1.2-§1.4);
this module places a batch's decode attention on the channels:
- Each request's attention (one `attention-decode-gqa` op bound to its context) runs on one channel, chosen by
  the device's policy: `rr` round-robin in arrival order, or `greedy` (Algorithm 2, on Algorithm 1's estimate).
  A channel runs its requests one after another; the attention takes the slowest channel.
- Word size: each request's GEMVs are timed at its op's words (`pim.at_word_bytes`: the row and COMP column hold
  as many of them as fit), not the spec's FP16.
- Grouped-query attention: each of the heads / kv_heads query heads that share a K/V head is one more GEMV pass
  over the same rows (the global buffer holds one query vector), so a request costs that many times the
  kv_heads-head command sequence; with heads = kv_heads it is the MHA sequence of `pim.gemv_parts_cycles`.
  So GQA costs at least MHA of as many query heads, and fewer KV heads can cost more. The artifact runs MHA only
  (GPT-3); its K layout, kept here (neupims-artifact.md §5, `PIMTensor.cc`), puts one token's key slice
  (all the device's KV heads, at most a 512-word row) in one bank's row, 32 tokens a tile, ceil(kv_heads x
  head_dim / 512) rows a token. Below 512 words a row is part-filled, yet a pass still opens ceil(L/32) tiles,
  each with fewer COMPs: per pass, fewer KV heads read the same rows, and more passes read them again. V has
  one dimension per bank and 512 tokens a row, so it costs the same per query head. Example: Llama-3-8B on
  TP4 (8 query heads, head_dim 128 per device) at L = 2048 takes 42,568 cycles as MHA (1 pass), 53,520 at 8 KV
  heads (2 per device, 4 passes) and 75,424 at 2 or 1 (1 per device, replicated, 8 passes), each x 15/14 for
  refresh; 4 per device fill the row and equal MHA (tests/test_pim_gqa_cost.py).
- Only the products run in the banks. The op's other Einsums (max, exp, sum, the division: the softmax) run on the
  host, whose vector units `host_ops` counts for the schedule to place beside or after the GEMVs.
- A GEMV phase of a batch (`PimPlacement.gemv_s`) takes its slowest channel, or with the spec's `command_issue =
  "one-per-cycle"` (the npu+pim branch) at least its Newton command count in host cycles; with a barrier
  (schedule `attention_sync: barrier`) all channels' logits finish before any attend starts.
Busy unit `<name>`: the channels' command time averaged over channels (its utilization is the fraction of time a
channel executes GEMV commands). Energy (pim.md §5): every MAC reads one K/V element inside its bank at the
bank-PIM access energy and costs two ops at the host's op energy (a PIM MAC is assumed to cost an NPU MAC); the
host's softmax ops cost one op each, as on the NPU's vector units (`archsim.systems.npu_device`), each op priced
at 16 bits and scaled to the words' width (`archsim.systems.arithmetic_energy`); and the vectors
crossing the HBM bus (`bus_words`: q and the probabilities GWRITten in, the logits and the outputs READRES out, as
`archsim.systems.pim` times them) cost the off-chip access energy, as the NPU's HBM stream does. The words are the
command model's layout whatever `PIMSpec.gemv_timing` times them by.
Other attention cascades (MLA's latent attention, prefill) are not modelled in the banks: placing one here is a
SpecError naming the cascade.
Channel capacity: a request's whole KV cache (every layer of the device's PP stage, K and V of its whole context) lives
on its channel, as the GEMVs run where the KV is. Neither policy is capacity-aware: `rr` deals requests out by arrival
order and `greedy` balances Algorithm 1's time estimate, neither looks at a channel's free room (the artifact's `rr`
traces are "round-robin first-fit by free KV tiles", neupims-artifact.md §6, so its placement moves a request on where
ours does not). Where the device knows the KV bytes a request keeps on its channel per token
(`channel_kv_bytes_per_token`, which `archsim.systems.models.system_model` sets from the model: the device alone does
not know its stage's layers), one request longer than a channel holds (`request_kv_tokens`: the channel's capacity,
`PIMSpec.capacity_bytes` / channels, 1 GiB, §1.2, over those bytes) can never be placed: the serving simulator rejects
it on arrival (its prompt and outputs would outgrow the channel), the model's `check_memory` refuses such a prompt, and
a placement holding one is an `UnrunnableOp`. Several requests that together overflow a channel are not refused: a
capacity-aware placement (the artifact's) would move one on, which ours does not model; `channel_overflow` says which
channel overflows, and the NeuPIMs reproduction marks such points (`neupims_reproduce.memory_fit`). The bound is
optimistic: a channel's share of the weights and of the activation buffer is not taken off it (the device's memory as a
whole is the KV cache's own check). Not modelled: splitting a request's KV over channels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from archsim.arch.pim import PIMSpec
from archsim.errors import SpecError
from archsim.memo import kept
from archsim.outputs import beyond_text, capacity_text
from archsim.systems import pim as pim_model
from archsim.systems.arithmetic_energy import flops_at_16_bit
from archsim.systems.device import OpCost
from archsim.systems.npu import NPUSpec
from archsim.systems.step import MLA_DECODE, DecodeOps, Op, UnrunnableOp

PIM_ATTENTION = "attention-decode-gqa"


@dataclass(frozen=True)
class PimPlacement:
    """Requests pinned to channels: each request's GEMV seconds (and of it the logits'), its channel, its sub-batch
    (Algorithm 3, over each channel's requests in arrival order or in `order`; worked out when first asked, as only
    sub-batch interleaving asks) and the seconds the host takes to issue its (logits, attend) commands (zero unless
    the PIM's commands are issued one per cycle). Per request as Python sequences (a serving step places a few
    dozen requests, where numpy's per-call overhead outweighs a loop); as arrays (`request_s`, `channel`,
    `logits_s`) when first asked."""

    requests_s: Sequence[float]
    request_channels: Sequence[int]
    channels: int
    requests_logits_s: Sequence[float]
    issue_s: tuple[np.ndarray, np.ndarray]
    issue_bound: bool = True  # False: every issue time is zero (commands not issued one per cycle), none bounds
    order: np.ndarray | None = None

    @kept
    def request_s(self) -> np.ndarray:
        return np.array(self.requests_s, dtype=float)

    @kept
    def channel(self) -> np.ndarray:
        return np.array(self.request_channels, dtype=int)

    @kept
    def logits_s(self) -> np.ndarray:
        return np.array(self.requests_logits_s, dtype=float)

    @kept
    def sub_batch(self) -> np.ndarray:
        return pim_model.sub_batch_partition(self.channel, self.channels, self.order)

    @kept
    def _channel_loads_s(self) -> list[float]:
        """Every channel's summed request seconds, each request's added in turn (as `pim.channel_loads`' bincount
        adds them)."""
        loads_s = [0.0] * max(self.channels, max(self.request_channels, default=-1) + 1)
        for ch, seconds in zip(self.request_channels, self.requests_s, strict=True):
            loads_s[ch] += seconds
        return loads_s

    @kept
    def _loads_s(self) -> np.ndarray:
        """`_channel_loads_s` as an array (`loads_s()`, which `gemv_s()` reads too)."""
        return np.array(self._channel_loads_s, dtype=float)

    def mean_load_s(self) -> float:
        """`loads_s().mean()`: the channels' summed seconds (numpy's sum) over the channels."""
        loads_s = self._loads_s
        return float(np.add.reduce(loads_s)) / len(loads_s)

    def _mask(self, sub_batch: int | None) -> np.ndarray | None:
        return None if sub_batch is None else self.sub_batch == sub_batch

    def sub_batches_gemv_s(self) -> tuple[float, float]:
        """`gemv_s(0)` and `gemv_s(1)` (no barrier) in one pass where no issue bound applies: one bincount over
        (sub-batch, channel) adds each bin's requests in the same order as the masked sums."""
        if self.issue_bound:
            return self.gemv_s(0), self.gemv_s(1)
        loads = np.bincount(self.channel + self.channels * self.sub_batch, weights=self.request_s,
                            minlength=2 * self.channels)
        return float(loads[:self.channels].max()), float(loads[self.channels:].max())

    def loads_s(self, sub_batch: int | None = None) -> np.ndarray:
        mask = self._mask(sub_batch)
        if mask is None:
            return self._loads_s
        return pim_model.channel_loads(self.request_s[mask], self.channel[mask], self.channels)

    def gemv_s(self, sub_batch: int | None = None, barrier: bool = False) -> float:
        """The GEMVs of the (sub-)batch: the slowest channel, no shorter than issuing every command; with a
        barrier, the logits phase then the attend phase, each so."""
        if sub_batch is None and not barrier and not self.issue_bound:
            loads_s = self._channel_loads_s
            if math.isfinite(sum(loads_s)):  # no NaN: the slowest channel as numpy's max finds it
                return max(loads_s)
        mask = self._mask(sub_batch)
        channel = self.channel if mask is None else self.channel[mask]

        def phase_s(request_s: np.ndarray, issue_s: np.ndarray) -> float:
            if mask is not None:
                request_s = request_s[mask]
            if request_s is self.request_s:  # the whole batch: its channel loads are summed once
                loads_s = self._loads_s
            else:
                loads_s = pim_model.channel_loads(request_s, channel, self.channels)
            slowest = float(loads_s.max())
            if not self.issue_bound:  # max(slowest, 0.0) is slowest: channel loads are sums of times >= 0
                return slowest
            return max(slowest, float((issue_s if mask is None else issue_s[mask]).sum()))

        if barrier:
            return (phase_s(self.logits_s, self.issue_s[0])
                    + phase_s(self.request_s - self.logits_s, self.issue_s[1]))
        return phase_s(self.request_s, self.issue_s[0] + self.issue_s[1] if self.issue_bound else self.issue_s[0])


@dataclass(frozen=True)
class BankPimDevice:
    """A bank-PIM HBM running decode attention in its banks (module docstring): `channel_policy` "rr" places
    requests round-robin, any other greedily; `host`'s vector units run the softmax."""

    name: str
    spec: PIMSpec
    channel_policy: str | None
    host: NPUSpec  # the compute device beside it: its vector units run the softmax, its op energy prices a MAC
    source: str = "<python>"  # the system file, which errors blame
    kind: str = "bank-pim"
    # K and V bytes a request keeps on its channel per token of context (its stage's layers); None: unchecked
    channel_kv_bytes_per_token: float | None = None
    # (word bytes, heads, kv_heads, head_dim, table size) -> `_placement_tables`: a serving run places every iteration
    _tables: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def capacity_bytes(self) -> float:
        return self.spec.capacity_bytes - self.spec.activation_buffer_bytes

    @property
    def channel_bytes(self) -> float:
        """One channel's capacity: the HBM's over its channels (module docstring)."""
        return self.spec.capacity_bytes / self.spec.channels

    @property
    def request_kv_tokens(self) -> int | None:
        """The most tokens of KV cache one request can keep on its channel (`channel_bytes` over
        `channel_kv_bytes_per_token`; None when the bytes per token are not known)."""
        per_token = self.channel_kv_bytes_per_token
        return None if per_token is None else math.floor(self.channel_bytes / per_token)

    def request_overflow(self, tokens: int) -> str:
        """Why a request of `tokens` tokens (a prompt, or a decode's context) cannot keep its KV cache on one
        channel, as a clause ("keeps ... GB of
        KV cache ... on one channel of devices.NAME, beyond the channel's ..."), "" when it fits or when the bytes
        per token are not known."""
        per_token = self.channel_kv_bytes_per_token
        if per_token is None or tokens * per_token <= self.channel_bytes:
            return ""
        return (f"keeps {beyond_text(tokens * per_token, self.channel_bytes)} of KV cache ({per_token:.4g} B a token) "
                f"on one channel of devices.{self.name}, beyond the channel's {capacity_text(self.channel_bytes)}: "
                "each request's KV stays on one channel")

    def channel_overflow(self, request_channels: Sequence[int], kv_tokens: Sequence[float]) -> str:
        """Why the channels cannot hold the KV cache of requests holding `kv_tokens` placed on `request_channels`:
        the fullest channel's tokens x `channel_kv_bytes_per_token` beyond `channel_bytes` ("" when they fit, or
        when the bytes per token are not known)."""
        if self.channel_kv_bytes_per_token is None:
            return ""
        tokens = [0.0] * self.spec.channels
        for ch, held in zip(request_channels, kv_tokens, strict=True):
            tokens[ch] += held
        fullest = max(range(len(tokens)), key=tokens.__getitem__)
        need_bytes = tokens[fullest] * self.channel_kv_bytes_per_token
        if need_bytes <= self.channel_bytes:
            return ""
        requests = sum(ch == fullest for ch in request_channels)
        policy = "round-robin" if self.channel_policy == "rr" else "greedy"
        return (f"channel {fullest} of devices.{self.name} holds the KV cache of {requests} request(s), "
                f"{tokens[fullest]:.0f} tokens x {self.channel_kv_bytes_per_token:.4g} B = {need_bytes / 1e9:.3f} GB, "
                f"beyond the channel's {self.channel_bytes / 1e9:.3f} GB: each request's KV stays on one channel "
                f"and the {policy} placement does not look at a channel's room")

    def placement(self, ops: Sequence[Op], split: str = "arrival",
                  contexts: Sequence[float] | None = None) -> PimPlacement:
        """Each request's GEMV time, channel (the device's policy) and sub-batch (Algorithm 3, each channel's
        requests halved in arrival order, or with `split = "longest-first"` in decreasing length, as the artifact's
        near-sorted clb traces list them, neupims-artifact.md §6). `contexts`: the ops' `seq_len` (whole numbers, a
        sequence or an array), when the caller has them."""
        pim = self.spec
        found, heads, kv_heads, head_dim = self._sizes(ops, contexts is None)
        contexts = found if contexts is None else contexts
        at = contexts.astype(int).tolist() if isinstance(contexts, np.ndarray) else contexts
        word_bytes = ops[0].binding.word_bytes
        key = (word_bytes, heads, kv_heads, head_dim, _table_size(int(max(0, max(at, default=0))) + 1))
        tables = self._tables.get(key)
        if tables is None:
            words_pim = pim_model.at_word_bytes(pim, word_bytes, self.source, f"devices.{self.name}")
            tables = self._tables[key] = _placement_tables(words_pim, *key[1:])
        request_table, logits_table, estimate_table, issue_tables = tables
        try:  # whole numbers as ints index the tables as given
            requests_s = tuple(map(request_table.__getitem__, at))
        except TypeError:  # as floats: made ints first
            at = list(map(int, at))
            requests_s = tuple(map(request_table.__getitem__, at))
        if self.channel_policy == "rr":
            channel = pim_model.round_robin(len(at), pim.channels).tolist()
        else:
            channel = pim_model.greedy_channels(list(map(estimate_table.__getitem__, at)), pim.channels)
        if self.channel_kv_bytes_per_token is not None:  # a request longer than a channel can never be placed
            held = ops.contexts if isinstance(ops, DecodeOps) else at  # a request per context, as given
            overflow = self.request_overflow(int(max(held, default=0)))
            if overflow:
                raise UnrunnableOp(self.source, f"devices.{self.name}", f"a request of {int(max(held))} tokens "
                                   f"{overflow}")
        if issue_tables is not None:
            index = np.array(at, dtype=int)
            issue_s = (issue_tables[0][index], issue_tables[1][index])
        else:
            issue_s = (np.zeros(len(at)),) * 2
        order = np.argsort(-np.asarray(contexts, dtype=float), kind="stable") if split == "longest-first" else None
        return PimPlacement(requests_s, channel, pim.channels, tuple(map(logits_table.__getitem__, at)), issue_s,
                            issue_tables is not None, order)

    def cost(self, ops: Sequence[Op], streamed_fraction: float = 1.0) -> OpCost:
        if not ops:
            return OpCost()
        placement = self.placement(ops)
        return self.cost_of(ops, placement.gemv_s(), placement.mean_load_s())

    def cost_of(self, ops: Sequence[Op], slowest_s: float, mean_s: float) -> OpCost:
        """The OpCost of `ops` whose channels took `slowest_s` (the slowest) and `mean_s` (on average)."""
        if isinstance(ops, DecodeOps):
            macs, flops = ops.total("macs"), ops.total("flops")
        else:
            macs, flops = sum([op.ops.get("mac", 0) for op in ops]), sum([op.flops for op in ops])
        word_bytes = ops[0].binding.word_bytes if ops else 0
        op_pj = self.host.op_energy_pj  # a 16-bit op's: `arithmetic_energy` scales it to the words' width
        energy_pj = (macs * (8 * word_bytes * self.spec.bank_pim_pj_per_bit + flops_at_16_bit(2, word_bytes) * op_pj)
                     + flops_at_16_bit(flops - 2 * macs, word_bytes) * op_pj  # `host_ops`: a flop is an op, a MAC two
                     + self.bus_bytes(ops) * 8 * self.spec.offchip_pj_per_bit)
        return OpCost(slowest_s, 0.0, energy_pj * 1e-12, {self.name: mean_s})

    def bus_bytes(self, ops: Sequence[Op]) -> float:
        """Bytes the GEMVs of `ops` move over the HBM bus: `bus_words` of each pass at the ops' words."""
        if not ops:
            return 0.0
        contexts, heads, kv_heads, head_dim = self._sizes(ops)
        word_bytes = ops[0].binding.word_bytes
        pim = pim_model.at_word_bytes(self.spec, word_bytes, self.source, f"devices.{self.name}")
        return word_bytes * (heads // kv_heads) * float(np.sum(bus_words(pim, contexts, kv_heads, head_dim)))

    def host_ops(self, ops: Sequence[Op]) -> float:
        """Ops of the attention the host's vector units run: everything but the MACs."""
        return float(sum(n for op in ops for kind, n in op.ops.items() if kind != "mac"))

    def _sizes(self, ops: Sequence[Op], with_contexts: bool = True) -> tuple[np.ndarray | None, int, int, int]:
        for op in ops[:1] if isinstance(ops, DecodeOps) else ops:  # a DecodeOps' ops share one cascade
            problem = placement_problem(op.name, op.phase, op.cascade)
            if problem:
                raise SpecError(self.source, f"devices.{self.name}", problem)
        params = ops[0].binding.params
        contexts = None if not with_contexts else np.asarray(
            ops.contexts if isinstance(ops, DecodeOps) else [op.binding.params["seq_len"] for op in ops], dtype=float)
        return contexts, int(params["heads"]), int(params["kv_heads"]), int(params["head_dim"])


def placement_problem(op: str, phase: str, cascade: str | None = None) -> str | None:
    """Why a bank-PIM cannot run the op `op` of `phase` bound to `cascade`, or None: it runs `PIM_ATTENTION`'s GEMVs
    alone. The cost model asks it of every op placed on the device; `system_checks.check_system` asks it of an op kind
    before a workload binds a cascade (`cascade` None), refusing what no workload makes `PIM_ATTENTION` (any op but
    attention, or attention in prefill), so `check` refuses what every run would."""
    if cascade == PIM_ATTENTION or (cascade is None and (op, phase) == ("attention", "decode")):
        return None
    bound = f"{cascade}, " if cascade is not None else ""
    hint = (" (the workload's kv_lora_rank makes its decode attention MLA's latent attention: place it on another "
            "device, or run it on a system without a bank-PIM)" if cascade == MLA_DECODE else "")
    return f"a bank-PIM runs {PIM_ATTENTION} GEMVs; the placement puts {op} ({bound}{phase}) on it{hint}"


def bus_words(pim: PIMSpec, seq_tokens, heads: int, head_dim: int):
    """Words one request's pass over `heads` heads moves over the HBM bus, in `pim.logits_cycles`' and
    `pim.attend_cycles`' layout: K^T.q GWRITEs q a 512-word slice at a time (heads x head_dim words in) and READRES
    one partial logit per head of the slice per key (seq x the slices' heads out); logits.V GWRITEs each head's
    probabilities (seq words in) and READRES its head_dim outputs per 512-token row of V (out). Elementwise over
    `seq_tokens` (a number or a numpy array)."""
    seq = np.asarray(seq_tokens)
    embed, row = heads * head_dim, pim.row_elements
    slice_heads = sum(pim_model.heads_in_slice(start, min(row, embed - start), head_dim)
                      for start in range(0, embed, row))
    return embed + seq * slice_heads + heads * (seq + head_dim * np.ceil(seq / row))


MIN_TABLE = 4096


def _table_size(needed: int) -> int:
    """A table length covering `needed` contexts: the next power of two from MIN_TABLE up, so a growing context
    rebuilds it a few times, not every step."""
    return max(MIN_TABLE, 1 << (needed - 1).bit_length())


def _placement_tables(pim: PIMSpec, heads: int, kv_heads: int, head_dim: int, size: int) -> tuple:
    """Per context 0 .. size - 1, what a placement reads of one request of `heads` query heads: its GEMV seconds,
    its logits' seconds, the greedy policy's estimate, and its (logits, attend) command issue seconds when the PIM
    issues commands one per cycle (else None): per request, passes x (logits + attend) / clock, passes x logits /
    clock, passes x Algorithm 1 and passes x Newton commands / clock, evaluated once over the table (a context is
    a whole number of tokens), then indexed per iteration. The first three as lists, the issue seconds as arrays."""
    passes = heads // kv_heads
    logits, attend, estimate = _gemv_tables(pim, kv_heads, head_dim, size)
    issue = None
    if pim.command_issue == "one-per-cycle":
        commands = pim_model.newton_commands(pim, np.arange(size, dtype=float), kv_heads, head_dim)
        issue = (passes * commands[0] / pim.clock_hz, passes * commands[1] / pim.clock_hz)
    tables = (passes * (logits + attend) / pim.clock_hz, passes * logits / pim.clock_hz, passes * estimate)
    return (*(table.tolist() for table in tables), issue)


@functools.lru_cache(maxsize=64)
def _gemv_tables(pim: PIMSpec, kv_heads: int, head_dim: int, size: int) -> tuple[np.ndarray, ...]:
    """`pim.gemv_parts_cycles` (logits, attend) and `pim.algorithm1_cycles` (the greedy policy's estimate) of one
    request at every context 0 .. size - 1: the same elementwise functions evaluated once, then indexed per
    iteration (the serving loop asks for them at every step)."""
    seq = np.arange(size, dtype=float)
    logits, attend = pim_model.gemv_parts_cycles(pim, seq, kv_heads, head_dim)
    return (np.broadcast_to(logits, seq.shape).copy(), np.broadcast_to(attend, seq.shape).copy(),
            np.broadcast_to(pim_model.algorithm1_cycles(pim, seq, kv_heads, head_dim), seq.shape).copy())
