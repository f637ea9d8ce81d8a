"""The rotational staggered pipeline of attention offloading (Lamina, pim.md §3.4) event by event, in SimPy.

`archsim.systems.offload` composes an iteration in closed form (a period per layer: the longest cycle or the
busiest resource); this model runs the same layers as processes over resources and measures it, and records every
task as a `Span` for a Perfetto trace, where the overlap and the idle gaps show.

Resources: the compute replicas (`replicas`, `system_checks.offload_replicas`: n - 1 for n micro-batches, or 1 for
one micro-batch), the memory pool (all its devices work on one micro-batch's attention at a time: heads are
partitioned, so each device holds a share of every request), and the link in each direction (`link out`,
`link back`), a fluid server of the direction's capacity, `lanes` messages' rate (`OffloadModel.link_lanes`, a
fraction), oldest message first, each at most one message's rate (`_SharedLink`): the i-th oldest message on it
(0-based) runs at min(1, lanes - i) of a message's rate, so with 1.55 lanes the oldest at a message's rate, the next
at 0.55 of it, a third waits. Each message also holds its replica's NICs for that direction (one message at a time:
the sender's going out, the next slice's replica coming back) for its wire time, then travels its latency without
holding them. Assumption: a message alone, or within the whole lanes, runs at a message's rate (the closed form's
cycle), the messages together never above the capacity (its busy unit), and no message's rate rises as a NIC
slows; with whole lanes this is first come, first served over that many lanes. (Processor sharing, every message
at min(1, lanes / n) of the rate with n on the link, was tried: the messages on a direction finish together and the
micro-batches then bunch, so the pipeline ran 49.8 % above the closed form at LLaMA-2-7B, n = 4, 3 replicas of one
H100 at 45.7 GB/s against 4 H20s at 17.75 GB/s, 1536 requests at 32 tokens, and 32.8 % over 35.5 GB/s compute
NICs, against 12.7 % and 8.0 % here.) The old stop-gap, ceil(lanes) lanes each at lanes / ceil(lanes) of the
rate, slowed a message alone and sped the other lanes up when a slower pool NIC dropped one. With more than one
replica (more than one message at once) each message's span is on a lane track (`link out lane 0`, ...): the
lowest free one when the message starts to move (not when it comes and waits at rate 0), so no two overlap on a
track and a direction of `lanes` lanes has at most ceil(lanes) tracks (a moving message's rate never falls, so at
most ceil(lanes) move at once). A lane track's busy time (`layer_replay.busy_s`) is its occupancy, the sum of its
messages' spans, first moving to done: with a fractional last lane a message's span is stretched while it runs at
part of the rate, so a direction's lane busy times sum to more than its wire time (LLaMA3-70B staggered, 300
requests at 1024 tokens, wire times ten-fold, 3/2 lanes: `link out` 12 % more, `link back` 6 %).
Micro-batch j runs `tokens` tokens of `layers` layers. Slice k of its work, the ops after attention k - 1 and
before attention k (the paper's min-cut slices), runs on replica (j + k) mod `replicas` (§3.4; the count k runs on
across tokens). A slice: the ops after the previous attention, the norm and the Q share of the QKV projection;
then, with divide-and-conquer, q is sent while the K/V share is computed on the replica and sent after it; the pool
runs attention over the history when q arrives (a process of its own, beside the replica's K/V share) and the new
token's part with the merge when k, v have arrived too, as two tasks (the pool is free for another micro-batch's
task while k, v are on their way); without it, q, k and v go together after the whole projection and the pool runs
the whole attention. The output goes back over `link back` and the next slice starts; after a token's last layer
the next slice also runs the micro-batch's LM head (`heads_s[j]`). Slice k of micro-batch j has turn j + k n (n
micro-batches): in the steady state it starts at (j + k n) x t_m / (n - 1), t_m a slice's time on its replica, so
consecutive turns of one replica are t_m apart.
Each replica takes its slices in increasing turn, a turn-taking sequencer (`_Turns`), not a priority queue: a
slice starts once the replica's turn before it has finished, and a replica whose turn's slice has not come waits
idle (as a priority queue, micro-batch 0's short first slice, without the ops after an attention, let its slice 1
take replica 1 before micro-batch 1 came, and micro-batches 1 and 2 ran swapped for the whole run: LLaMA3-70B,
n = 4, 31 requests at 2000 tokens, first slices at 0, 413, 217 and 627 us, not 0, 109, 218 and 326; the steady
time per token was the same, 35.4024 ms). In ping-pong (one replica) the turns alternate the two micro-batches; with
one micro-batch on one replica (`micro_batches: 1`, no pipelining) they are its slices in order.
A micro-batch that has stopped gives up its turns. The pool starts the micro-batches' attention in turn as well
(`_Turns` of one unit, every turn its): a turn's whole attention, or with divide-and-conquer its history's part,
once q (without it q, k and v) has arrived and the turn before's has ended (while the turn's q is on its way the
pool runs no other turn's, only merges); a merge goes when its k, v have arrived, oldest first
(`simpy.PriorityResource` by turn), so before a younger micro-batch's history. (Served oldest first among the
micro-batches that had come, work-conserving, a younger one whose q, k, v came under 1 us before an older one's took
the pool for a whole attention, and the two ran bunched for the whole run, as the replicas did under a priority
queue: LLaMA3-8B, n = 3, DOP (2, 4), 256 requests at 2K tokens, without divide-and-conquer micro-batch 0's layer 1
(turn 3) went 0.5 us ahead of micro-batch 2's layer 0 (turn 2), and the pipeline ran 13.96 % above the closed form,
1.61 % in turn; 1.85 % and 1.73 % with divide-and-conquer. First come, first served, with the pool held from the
history to the merge, a faster link could make the pipeline slower: LLaMA3-8B, n = 3, 257 requests, 10.31 ms a token
at 8 GB/s and 10.41 ms at 10 GB/s over 5 us, the LM heads bunching the micro-batches.) The pipeline is not monotone
in every case: a slower pool NIC can put the micro-batches in a better phase (`archsim.systems.offload`'s
docstring); the same 257 requests at n = 4 took 8.993 ms over 2 us and 8.988 ms over 5 us at 12 GB/s, and 8.978 ms
at 30 GB/s and 8.979 ms at 45.7 GB/s over 16.5 us, while the pool served as they came (in turn: 9.017, 9.023, 9.019
and 9.013 ms). The links serve first come, first served.
Micro-batch j starts j x t_m / (n - 1) after micro-batch 0 (§3.4's stagger): its first slice is the first turn of
replica j (micro-batch n - 1's the second of replica 0, after micro-batch 0's first slice, which is shorter than t_m),
so it starts when the micro-batch comes. A micro-batch that has its tokens runs on until all have theirs (those tokens
are not recorded, nor their spans), so no measured token has the drain in it; `PipelineRun.token_s` is the mean time
between tokens over the second half of the run.
Spans: each replica's slices, in up to three parts: `mb{j} t{t} L{k - 1} post`, the ops after the previous
attention (out-projection, residual, FFN; at k = 0 the previous token's last layer's, `mb{j} t{t - 1} L{last}
post`), `mb{j} t{t - 1} LM head` after a token's last layer (where the head runs, at the next token's first slice),
then `mb{j} t{t} L{k} dense`, the norm and the QKV projection of layer k (a micro-batch's first slice has only this
part); the pool's tasks (`attention`, or `attention over the history` and `new token + merge`: they sum to the
pool's busy time), each message's wire time on its link lane. The parts of a slice are one timeout of the engine;
their bounds are labels, start + post_s and start + post_s + head_s. The spans of a token past `tokens` are not
kept, so the last recorded token's tail (its last layer's post and its LM head, run in the next token's first
slice) is in no span, and the micro-batch that gets its last token last stops before that token's tail
(`PipelineRun.token_done_s` is each token's last output back, before its tail).
`model_pipeline` runs an `OffloadModel`'s own schedule (its micro-batches, LM heads and link lanes) on a batch.

Assumption: the layers of a token are alike (one `OffloadLayer` per micro-batch); the last slice's ops after the
last attention are not run (they start the next token's first slice).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import simpy

from archsim.model.trace import Span
from archsim.systems.offload import OffloadLayer, OffloadModel

SPANS_NOTE = ("A replica's slice of layer k: 'L{k-1} post' (the ops after the previous attention; at k = 0 the "
              "previous token's last layer's), 'LM head' after a token's last layer, then 'L{k} dense' (norm and "
              "QKV). The last token's tail (its last layer's post and its LM head) is in no span: not kept, and not "
              "run for the micro-batch that finishes last (archsim.systems.offload_events).")  # a trace's reader


@dataclass(frozen=True)
class PipelineRun:
    """An event-model run: when each micro-batch finished each token (`token_done_s[j][t]`), the spans."""

    token_done_s: tuple[tuple[float, ...], ...]
    spans: tuple[Span, ...]

    @property
    def token_s(self) -> float:
        """Steady-state time per token: the mean over micro-batches of `steady_gap_s`; NaN with fewer than 2
        tokens, and not steady with 2 (`steady_gap_s`: the one gap holds the start-up)."""
        gaps = [steady_gap_s(done) for done in self.token_done_s if len(done) >= 2]
        return sum(gaps) / len(gaps) if gaps else float("nan")


class _SharedLink:
    """One link direction as a fluid server of `lanes` messages' rate (module docstring), oldest message first,
    each at most one message's rate: a message needs `wire_s` seconds at one message's rate; the messages on the
    link at a moment run at `rates` of it, in arrival order. On every arrival and
    departure each message whose rate changes has its remaining wire time advanced at the old rate and a fresh
    timer at the new (its process interrupted off the old one; a message at rate 0 waits on no timer). A message
    whose rate stays keeps the timer set when it started, `wire_s` after it, so one message at a time is exactly a
    timeout of its wire time. Slots: a message takes the lowest free one for its trace track when it starts to
    move (at most ceil(lanes) move at once) and frees it when done."""

    def __init__(self, env: simpy.Environment, lanes: Fraction | int) -> None:
        if not lanes >= 1:  # fewer, and a message would wait for ever
            raise ValueError(f"a link direction carries at least one message's rate, got {lanes} lanes")
        self.env, self.lanes = env, Fraction(lanes)
        self.active: list[_Message] = []
        self.slots: set[int] = set()

    def rates(self, messages: int) -> list[float]:
        """Each of `messages` messages' rate, in one message's rate, oldest first: min(1, lanes - i) for the i-th
        (0-based), 0 once the lanes are used up."""
        return [float(min(Fraction(1), max(Fraction(0), self.lanes - i))) for i in range(messages)]

    def transfer(self, wire_s: float) -> Generator[simpy.Event, None, tuple[int, float]]:
        """Carry a message of `wire_s` wire seconds (at one message's rate) from now; returns its trace slot and
        when it started to move (after any wait behind the older messages)."""
        message = _Message(self.env.active_process, wire_s, self.env.now)
        self._reschedule([*self.active, message])
        while True:
            try:
                yield message.timer
                break
            except simpy.Interrupt:  # the rate changed: a fresh timer is set
                pass
        self.slots.remove(message.slot)
        self._reschedule([m for m in self.active if m is not message])
        return message.slot, message.moving_since_s

    def _reschedule(self, active: list[_Message]) -> None:
        """The link now carries `active`, oldest first: each message whose rate changes is advanced at its old
        rate and given a fresh timer at its new one (a new message gets its first)."""
        now = self.env.now
        for message, rate in zip(active, self.rates(len(active)), strict=True):
            if message.timer is not None and rate == message.rate:
                continue
            message.remaining_s = max(0.0, message.remaining_s - (now - message.since_s) * message.rate)
            message.since_s, message.rate = now, rate
            if rate > 0 and message.moving_since_s is None:  # starts to move: it takes a lane's track
                message.moving_since_s = now
                message.slot = next(k for k in itertools.count() if k not in self.slots)
                self.slots.add(message.slot)
            fresh = message.timer is None
            message.timer = self.env.timeout(message.remaining_s / rate) if rate > 0 else self.env.event()
            if not fresh:
                message.process.interrupt()
        self.active = active


@dataclass
class _Message:
    """A message on a `_SharedLink`: its process, wire seconds left (at one message's rate) as of `since_s`, its
    rate since then, its completion timer, when it first moved (its span's start) and its trace slot (from then)."""

    process: simpy.Process
    remaining_s: float
    since_s: float
    rate: float = 0.0
    timer: simpy.Event | None = None
    moving_since_s: float | None = None
    slot: int | None = None


class _Turns:
    """One replica's turn-taking sequencer (module docstring): slice k of micro-batch j (k counted across tokens)
    has turn j + k n, n the micro-batches; the replica runs the turns of its slices (those with (j + k) mod
    `replicas` = `replica`) in increasing order, one at a time, each once the one before has finished, and waits
    idle for a turn whose slice has not come. A micro-batch that has stopped (`stop`) has no more turns. The pool's
    is replica 0 of 1: every turn, for the start of each slice's attention."""

    def __init__(self, env: simpy.Environment, replica: int, replicas: int, micro_batches: int) -> None:
        self.env, self.replica, self.replicas, self.n = env, replica, replicas, micro_batches
        self.stopped: set[int] = set()
        self.waiting: dict[int, simpy.Event] = {}
        self.busy = False
        self.turn = -1
        self._advance()

    def request(self, turn: int) -> simpy.Event:
        """An event that fires when the replica is the slice of `turn`'s."""
        granted = self.env.event()
        self.waiting[turn] = granted
        self._grant()
        return granted

    def release(self) -> None:
        """The running slice has finished: the next turn may start."""
        self.busy = False
        self._advance()
        self._grant()

    def stop(self, j: int) -> None:
        """Micro-batch `j` runs no more slices: its turns are skipped."""
        self.stopped.add(j)
        if not self.busy and self.turn % self.n in self.stopped:
            self._advance()
            self._grant()

    def _advance(self) -> None:
        if len(self.stopped) == self.n:  # every micro-batch has stopped: no turn left
            return
        turn = self.turn + 1
        while (turn % self.n + turn // self.n) % self.replicas != self.replica or turn % self.n in self.stopped:
            turn += 1
        self.turn = turn

    def _grant(self) -> None:
        if not self.busy and self.turn in self.waiting:
            self.busy = True
            self.waiting.pop(self.turn).succeed()


def steady_gap_s(done_s: Sequence[float]) -> float:
    """One micro-batch's mean time between tokens over the second half of its run (at least the last gap): the
    start-up (the stagger, the first slice without the ops after an attention, the queues filling) fades over the
    first tokens, and `simulate_pipeline` keeps every micro-batch running until all have their tokens, so no
    measured gap has the drain in it. Assumption: the run is long enough for its second half to be steady, at
    least 3 tokens: with 2 the one gap read is token 0 -> 1's, which holds the start-up (LLaMA3-70B staggered, n =
    3 on 2 replicas, 300 requests at 1024 tokens: 42.765, 42.834 and 42.765 ms, a mean below the closed form's
    replica bound, 42.834 ms, which every later gap meets). A 2-token run is not refused (one micro-batch has no
    start-up between its tokens: `lamina_reproduce.bw_min_cross_check`'s run), so the caller picks the tokens
    (`lamina_reproduce.TRACE_TOKENS`, `schedule_events.OFFLOAD_TOKENS`: 4). In a ping-pong pipeline the gaps
    settle by the third token (gap 1 -> 2); in a staggered one (n >= 3) whose LM heads queue the
    other micro-batches they could repeat over several tokens while the replicas and the pool served first come,
    first served (six in LLaMA3-8B at n = 3, 256 requests at 2K tokens), and the mean of a second half that is not
    whole periods was off their mean by a few per cent. Served in turn (the replicas, and the pool's attention
    starts), the gaps of the second half agree within 0.02 % over offload.py's grid, divide-and-conquer on and off
    (8- and 24-token runs too; taking turns moved the time per token there by under 1e-15 from replicas served
    oldest first); a longer pattern would need a few periods."""
    first = (len(done_s) - 1) // 2
    return (done_s[-1] - done_s[first]) / (len(done_s) - 1 - first)


def model_pipeline(model: OffloadModel, contexts: Sequence[int], tokens: int, trace: bool = False) -> PipelineRun:
    """`simulate_pipeline` of `model`'s own schedule on these decodes for `tokens` tokens: its micro-batches
    (`OffloadModel.micro_batch_layers`), replicas, layers, divide-and-conquer, LM heads and link lanes; spans kept
    when `trace`."""
    return simulate_pipeline(model.micro_batch_layers(contexts), model.replicas, model.layers, tokens,
                             model.divide_and_conquer, trace=trace, heads_s=model.heads_s(contexts),
                             lanes=model.link_lanes)


def simulate_pipeline(layers: Sequence[OffloadLayer], replicas: int, n_layers: int, tokens: int,
                      divide_and_conquer: bool, trace: bool = False,
                      heads_s: Sequence[float] | None = None, lanes: Fraction | int = 1) -> PipelineRun:
    """Run `tokens` tokens of `n_layers` layers for each micro-batch (one `OffloadLayer` each) on `replicas`
    replicas (module docstring); `heads_s`: each micro-batch's LM head (none by default); `lanes`: the messages each
    link direction carries at once, at least 1 (`OffloadModel.link_lanes`, a fraction; 1 by default, as in
    ping-pong): the oldest on a direction at a message's rate, the next at the fraction left (`_SharedLink`)."""
    heads = list(heads_s) if heads_s is not None else [0.0] * len(layers)
    env = simpy.Environment()
    turns = [_Turns(env, r, replicas, len(layers)) for r in range(replicas)]
    pool = simpy.PriorityResource(env, 1)
    pool_turns = _Turns(env, 0, 1, len(layers))  # the start of each turn's attention, every turn in order
    links = {name: _SharedLink(env, lanes) for name in ("link out", "link back")}
    nics_out, nics_back = ([simpy.Resource(env, 1) for _ in range(replicas)] for _ in range(2))
    spans: list[Span] = []
    done: list[list[float]] = [[] for _ in layers]

    def hold(resource: simpy.PriorityResource, name: str, task: str, seconds: float, age: int,
             keep: bool) -> Generator:
        with resource.request(priority=age) as request:
            yield request
            start = env.now
            yield env.timeout(seconds)
            if keep and seconds > 0:
                spans.append(Span(name, task, start, env.now))

    def start_attention(task: str, seconds: float, turn: int, keep: bool) -> Generator:
        """The pool's first task of a micro-batch's attention (the whole, or the history's part) in turn order."""
        yield pool_turns.request(turn)
        yield from hold(pool, "memory pool", task, seconds, turn, keep)
        pool_turns.release()

    def send(name: str, nics: simpy.Resource, task: str, wire_s: float, latency_s: float, arrived: simpy.Event,
             keep: bool) -> Generator:
        with nics.request() as request:  # the replica's NICs, then its share of the link
            yield request
            slot, start = yield from links[name].transfer(wire_s)
            if keep and wire_s > 0:
                spans.append(Span(f"{name} lane {slot}" if replicas > 1 else name, task, start, env.now))
        yield env.timeout(latency_s)
        arrived.succeed()

    def attend(layer: OffloadLayer, tag: str, turn: int, q_sent: simpy.Event, kv_sent: simpy.Event,
               keep: bool) -> Generator:
        """Divide-and-conquer on the pool: the history's part once q has arrived, while the replica computes the
        k, v share; the new token's part and the merge once k, v have arrived too."""
        yield q_sent
        yield from start_attention(f"{tag} attention over the history", layer.history_s, turn, keep)
        yield kv_sent
        yield from hold(pool, "memory pool", f"{tag} new token + merge", layer.merge_s, turn, keep)

    def micro_batch(j: int, layer: OffloadLayer, head_s: float) -> Generator:
        yield env.timeout(j * layer.compute_s / replicas)
        slice_k = t = 0
        while min(len(d) for d in done) < tokens:  # until every micro-batch has its tokens: no drain measured
            for k in range(n_layers):
                r = (j + slice_k) % replicas
                turn = slice_k * len(layers) + j  # the rotation's order (module docstring)
                slice_k += 1
                tag, keep = f"mb{j} t{t} L{k}", trace and t < tokens  # a token past `tokens`: no spans
                first = t == 0 and k == 0
                q_sent, kv_sent = env.event(), env.event()
                yield turns[r].request(turn)
                start = env.now
                after = 0.0 if first else layer.post_s + (head_s if k == 0 else 0.0)  # a new token: the head
                yield env.timeout(after + layer.norm_s + layer.q_s)
                if keep and not first:  # the slice's share of the last one's layer and token: labels, not timing
                    post_tag = f"mb{j} t{t} L{k - 1}" if k else f"mb{j} t{t - 1} L{n_layers - 1}"
                    spans.append(Span(f"replica {r}", f"{post_tag} post", start, start + layer.post_s))
                    if k == 0 and head_s > 0:
                        spans.append(Span(f"replica {r}", f"mb{j} t{t - 1} LM head", start + layer.post_s,
                                          start + after))
                if divide_and_conquer:
                    env.process(send("link out", nics_out[r], f"{tag} q", layer.q_wire_s, layer.latency_s, q_sent,
                                     keep))
                    attended = env.process(attend(layer, tag, turn, q_sent, kv_sent, keep))  # beside the k, v share
                    yield env.timeout(layer.kv_s)
                    env.process(send("link out", nics_out[r], f"{tag} k,v", layer.kv_wire_s, layer.latency_s,
                                     kv_sent, keep))
                else:
                    yield env.timeout(layer.kv_s)
                    env.process(send("link out", nics_out[r], f"{tag} q,k,v", layer.q_wire_s + layer.kv_wire_s,
                                     layer.latency_s, q_sent, keep))
                if keep:
                    spans.append(Span(f"replica {r}", f"{tag} dense", start + after, env.now))
                turns[r].release()
                if divide_and_conquer:
                    yield attended
                else:
                    yield q_sent
                    yield from start_attention(f"{tag} attention", layer.attention_s, turn, keep)
                returned = env.event()
                to = (j + slice_k) % replicas  # the next slice's replica
                env.process(send("link back", nics_back[to], f"{tag} output", layer.out_wire_s, layer.latency_s,
                                 returned, keep))
                yield returned
            done[j].append(env.now)
            t += 1
        for sequencer in (*turns, pool_turns):
            sequencer.stop(j)

    for j, (layer, head_s) in enumerate(zip(layers, heads, strict=True)):
        env.process(micro_batch(j, layer, head_s))
    env.run()
    return PipelineRun(tuple(tuple(d[:tokens]) for d in done), tuple(spans))
