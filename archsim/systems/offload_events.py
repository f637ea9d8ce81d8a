"""The rotational staggered pipeline of attention offloading (Lamina, pim.md §3.4) event by event, in SimPy.

`archsim.systems.offload` composes an iteration in closed form (a period per layer: the longest cycle or the
busiest resource); this model runs the same layers as processes over resources and measures it, and records every
task as a `Span` for a Perfetto trace, where the overlap and the idle gaps show.

Resources: the n - 1 compute replicas, the memory pool (all its devices work on one micro-batch's attention at a
time: heads are partitioned, so each device holds a share of every request), and the link in each direction
(`link out`, `link back`; a message holds it for its wire time, then travels its latency without holding it).
Micro-batch j runs `tokens` tokens of `layers` layers. Slice k of its work, the ops after attention k - 1 and
before attention k (the paper's min-cut slices), runs on replica (j + k) mod (n - 1) (§3.4; the count k runs on
across tokens). A slice: the ops after the previous attention, the norm and the Q share of the QKV projection;
then, with divide-and-conquer, q is sent while the K/V share is computed on the replica and sent after it; the
pool runs attention over the history when q arrives and the new token's part with the merge when k, v arrive
(holding the pool in between, so another micro-batch's attention does not slip between a history and its
merge); without it, q, k and v go together after the whole projection and the pool runs
the whole attention. The output goes back over `link back` and the next slice starts; after a token's last layer
the next slice also runs the micro-batch's LM head (`heads_s[j]`). Tasks queue FIFO on their resource.
Micro-batch j starts j x t_m / (n - 1) after micro-batch 0 (§3.4's stagger).

Assumption: the layers of a token are alike (one `OffloadLayer` per micro-batch); the last slice's ops after the
last attention are not run (they start the next token's first slice).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import simpy

from archsim.model.trace import Span
from archsim.systems.offload import OffloadLayer


@dataclass(frozen=True)
class PipelineRun:
    """An event-model run: when each micro-batch finished each token (`token_done_s[j][t]`), the spans."""

    token_done_s: tuple[tuple[float, ...], ...]
    spans: tuple[Span, ...]

    @property
    def token_s(self) -> float:
        """Steady-state time per token: the mean over micro-batches of the time between their last two
        tokens."""
        gaps = [done[-1] - done[-2] for done in self.token_done_s if len(done) >= 2]
        return sum(gaps) / len(gaps) if gaps else float("nan")


def simulate_pipeline(layers: Sequence[OffloadLayer], replicas: int, n_layers: int, tokens: int,
                      divide_and_conquer: bool, trace: bool = False,
                      heads_s: Sequence[float] | None = None) -> PipelineRun:
    """Run `tokens` tokens of `n_layers` layers for each micro-batch (one `OffloadLayer` each) on `replicas`
    replicas (module docstring); `heads_s`: each micro-batch's LM head (none by default)."""
    heads = list(heads_s) if heads_s is not None else [0.0] * len(layers)
    env = simpy.Environment()
    replica = [simpy.Resource(env, 1) for _ in range(replicas)]
    pool, out, back = simpy.Resource(env, 1), simpy.Resource(env, 1), simpy.Resource(env, 1)
    spans: list[Span] = []
    done: list[list[float]] = [[] for _ in layers]

    def hold(resource: simpy.Resource, name: str, task: str, seconds: float) -> Generator:
        with resource.request() as request:
            yield request
            start = env.now
            yield env.timeout(seconds)
            if trace and seconds > 0:
                spans.append(Span(name, task, start, env.now))

    def send(name: str, resource: simpy.Resource, task: str, wire_s: float, latency_s: float,
             arrived: simpy.Event) -> Generator:
        yield from hold(resource, name, task, wire_s)
        yield env.timeout(latency_s)
        arrived.succeed()

    def micro_batch(j: int, layer: OffloadLayer, head_s: float) -> Generator:
        yield env.timeout(j * layer.compute_s / replicas)
        slice_k = 0
        for t in range(tokens):
            for k in range(n_layers):
                r = (j + slice_k) % replicas
                slice_k += 1
                tag = f"mb{j} t{t} L{k}"
                first = t == 0 and k == 0
                q_sent, kv_sent = env.event(), env.event()
                with replica[r].request() as request:
                    yield request
                    start = env.now
                    after = 0.0 if first else layer.post_s + (head_s if k == 0 else 0.0)  # a new token: the head
                    yield env.timeout(after + layer.norm_s + layer.q_s)
                    if divide_and_conquer:
                        env.process(send("link out", out, f"{tag} q", layer.q_wire_s, layer.latency_s, q_sent))
                        yield env.timeout(layer.kv_s)
                        env.process(send("link out", out, f"{tag} k,v", layer.kv_wire_s, layer.latency_s, kv_sent))
                    else:
                        yield env.timeout(layer.kv_s)
                        env.process(send("link out", out, f"{tag} q,k,v", layer.q_wire_s + layer.kv_wire_s,
                                         layer.latency_s, q_sent))
                    if trace:
                        spans.append(Span(f"replica {r}", f"{tag} dense", start, env.now))
                yield q_sent
                if divide_and_conquer:
                    with pool.request() as request:
                        yield request
                        start = env.now
                        yield env.timeout(layer.history_s)
                        yield kv_sent
                        yield env.timeout(layer.merge_s)
                        if trace:
                            spans.append(Span("memory pool", f"{tag} attention (history, then new token + merge)",
                                              start, env.now))
                else:
                    yield from hold(pool, "memory pool", f"{tag} attention", layer.attention_s)
                returned = env.event()
                env.process(send("link back", back, f"{tag} output", layer.out_wire_s, layer.latency_s, returned))
                yield returned
            done[j].append(env.now)

    for j, (layer, head_s) in enumerate(zip(layers, heads, strict=True)):
        env.process(micro_batch(j, layer, head_s))
    env.run()
    return PipelineRun(tuple(tuple(d) for d in done), tuple(spans))
