"""Multi-device attention as a system: context parallelism serving a workload (Llama 3's context parallelism for
long prompts, Meta's inference CP, ../shared/reference/seqpar-sparse.md; the schemes of `archsim.systems.seqpar`).

A `context-parallel` system spec (`archsim.systems.system_spec`) has one gpu device of `count` GPUs per node, a link
named tp inside a node and one named cp between nodes, `parallelism.tp` and `parallelism.cp`, and a schedule naming
the prefill's `scheme`. `cp` ranks of `tp` GPUs each (TP inside a node, the ranks tp apart: a rank per node when
tp = count) serve one engine; `ContextParallelModel` is its `IterationModel`:

- Weights and KV cache. Every rank holds the whole model cut tp ways (`rank`, the one-rank `SystemModel` of the
  same spec at the same tp) and 1/cp of every sequence's KV cache, so the cache's room is cp times a rank's and a
  token's KV bytes are the model's (`kv_bytes_per_token`).
- Prefill. Each prompt is cut over the cp ranks by the scheme and timed by `seqpar.parallel_time` at scope
  `layer` (the attention's ring or all-to-alls, the layer's other ops on each rank's tokens, the TP all-reduces),
  times the layers, then the LM head over its last token on the rank holding it (`SystemModel.lm_head_cost`). A
  prompt is padded up to a whole number of the scheme's chunks (`seqpar_spec.token_multiple`: 2 cp for zigzag), as
  ring implementations pad; the padding is computed. At cp 1 the prompt is one causal call
  (`seqpar_spec.single_device_scheme`), unpadded. The prompts of one iteration run one after another (each
  occupies every rank). A prompt cannot run (`UnrunnableOp`, which the serving simulator turns into a refused
  request) when a rank's share of it, ceil(tokens / cp), needs more than the rank's engine holds by the rule of
  cp 1 (`check_rank_memory`: the weights, that share's KV and the FFN unfused over it, as a serving engine runs
  it), so the longest prompt grows with cp as the tokens a rank holds; nor can an iteration whose requests' KV
  shares and largest pass do not fit a rank (the simulator then prefills fewer prompts at once); nor a prompt
  whose memory per GPU by `seqpar`'s rule (the weights, its KV and the scheme's working set and buffers in
  flight) exceeds the engine's share of the GPU's.
- Decode. Every rank runs the decode batch's whole layer (its hidden vectors are on every rank, as in pass-Q
  decoding), attending its share of each sequence's cache: ceil(context / cp) keys, the busiest rank's
  (`rank.iteration` of those shares, which also times the dense ops, TP all-reduces and LM head). The ranks then
  all-gather each token's partial (o, max, sum-exp) per head over the cp group (`seqpar_schemes.distattention_messages`:
  the `distattention-decode` cascade's partials in fp32) and each merges the cp partials (an elementwise pass,
  `distattention_merge_s`).
  Assumptions: the decoded tokens' k and v are appended to the ranks in turn (round robin), so every rank keeps
  ceil(context / cp) of each sequence however many tokens it decoded; replicated dense ops cost a rank little at
  decode, where they read the weights once whatever the batch; their energy counts on every rank.
- An iteration's prompts, then its decodes; time is their sum (each pass reads the weights: a mixed iteration
  costs more than one engine batching them, by about a pass over a rank's weights). At cp 1 there is no context
  parallelism: an iteration is the rank's own (`SystemModel.iteration`, the blocked GPU system's).
- Energy: the GPUs' board power for the time (the gpu device's `tdp` model, the only one the spec accepts: the
  prefill's schemes are not priced per action): cp x tp GPUs over every prefill, and cp x the rank's own energy
  plus the merge's exchange at board power over decodes. Busy time is one GPU's tensor-core time at peak, as a gpu
  device reports it (`GpuDevice.peak_s`): at prefill the prompt's GEMMs and attention over the cp x tp GPUs (the
  padding and the ring's skipped blocks are not useful work), at decode the rank's (the merge is elementwise).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from archsim.errors import SpecError
from archsim.outputs import beyond_text, capacity_text
from archsim.systems import collectives
from archsim.systems.gpu_device import GpuDevice
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.seqpar import ParallelResult, parallel_time
from archsim.systems.seqpar_compute import SOURCE, DeviceCompute
from archsim.systems.seqpar_schemes import distattention_merge_s, distattention_messages
from archsim.systems.seqpar_spec import ParallelSpec, check_spec, single_device_scheme, token_multiple
from archsim.systems.step import UnrunnableOp
from archsim.systems.system_checks import context_parallel_gpu
from archsim.systems.system_model import SystemModel
from archsim.systems.system_types import CP_LINK, TP_LINK, Parallelism, System, board_power_w
from archsim.systems.topology import Level, Topology
from archsim.workload import Workload

# a `seqpar_spec.ParallelSpec` field -> the system spec's field that sets it (tp: `System.blame`, the spec's or --tp)
SPEC_FIELDS = {"devices": "parallelism.cp", "ulysses": "schedule.ulysses", "scheme": "schedule.scheme"}


@dataclass(frozen=True)
class ContextParallelModel:
    """A context-parallel system running one workload (module docstring); an `IterationModel`."""

    rank: SystemModel  # one rank: tp GPUs holding the weights, the schedule's spec
    topology: Topology  # the GPUs of every rank: nodes of `count` over tp, nodes over cp

    @property
    def system(self) -> System:
        return self.rank.system

    @property
    def parallelism(self) -> Parallelism:
        return self.rank.parallelism

    @property
    def workload(self) -> Workload:
        return self.rank.workload

    @property
    def cp(self) -> int:
        return self.parallelism.cp

    @property
    def name(self) -> str:
        return f"{self.system.name}:{self.workload.name} tp{self.parallelism.tp} cp{self.cp}"

    @property
    def weight_device(self) -> GpuDevice:
        """A rank's GPU device, which holds its share of the weights."""
        return self.rank.weight_device

    @property
    def kv_bytes_per_token(self) -> float:
        return self.rank.kv_bytes_per_token

    @property
    def kv_capacity_bytes(self) -> float:
        """Every rank holds 1/cp of each sequence's cache: cp ranks' room."""
        return self.cp * self.rank.kv_capacity_bytes

    @property
    def price_per_hour(self) -> float:
        return self.cp * self.rank.price_per_hour

    @property
    def static_w(self) -> float:
        return self.cp * self.rank.static_w

    @property
    def devices_counted(self) -> int:
        return self.cp * self.rank.devices_counted

    @property
    def layers(self) -> int:
        return int(self.workload.params["layers"])

    def prefill_spec(self, prompt_tokens: int) -> ParallelSpec:
        """The `seqpar` point of one prompt, padded to a whole number of the scheme's chunks."""
        gpu = context_parallel_gpu(self.system)
        scheme = self.system.schedule.scheme if self.cp > 1 else single_device_scheme(self.system.schedule.scheme)
        spec = ParallelSpec(scheme, self.cp, self.workload, 1, gpu.spec, self.topology,
                            scope="layer", tp=self.parallelism.tp,
                            ulysses=self.system.schedule.ulysses if scheme == "usp" else None,
                            kernel=gpu.attention_kernel)
        multiple = token_multiple(spec)
        return replace(spec, seq_len=multiple * math.ceil(prompt_tokens / multiple))

    def prefill(self, prompt_tokens: int) -> ParallelResult:
        """One layer of one prompt's prefill (`prefill_spec`), remembered per padded length; `UnrunnableOp` when
        its memory per GPU (`seqpar_memory`: the weights, the prompt's KV cache and its working set with the
        scheme's buffers in flight) exceeds the engine's share of the GPU's, `memory_utilization` of its DRAM, or
        when a kernel call of it exceeds the GPU's DRAM (`ParallelResult.refusal`). A rank's own rule is
        `check_rank_memory`'s."""
        spec = self.prefill_spec(prompt_tokens)
        found = self._prefills.get(spec.seq_len)
        if found is None:
            found = self._prefills[spec.seq_len] = parallel_time(spec, reference=False)
        device = self.rank.weight_device
        limit_bytes = device.engine_bytes
        if found.memory_bytes > limit_bytes:
            raise UnrunnableOp(self.system.source, "prefill",
                               f"a prompt of {prompt_tokens} tokens on {self.name}: memory per GPU "
                               f"{beyond_text(found.memory_bytes, limit_bytes)} "
                               f"({found.weights_bytes / 1e9:.1f} GB of weights, "
                               f"the prompt's KV cache and its working set) exceeds the {capacity_text(limit_bytes)} "
                               f"of {device.spec.name} the engine holds{device.share_text}")
        if found.refusal:  # a kernel call beyond the GPU's DRAM where the memory model counts less
            raise UnrunnableOp(self.system.source, "prefill", f"a prompt of {prompt_tokens} tokens on {self.name}: "
                                                              f"{found.refusal}")
        return found

    @functools.cached_property
    def _prefills(self) -> dict[int, ParallelResult]:
        return {}

    @functools.cached_property
    def _board_w(self) -> float:
        return board_power_w(context_parallel_gpu(self.system))

    def prefill_cost(self, prompt_tokens: int) -> IterationCost:
        """One prompt's prefill over every layer, and the LM head over its last token (module docstring)."""
        layer = self.prefill(prompt_tokens)
        head = self.rank.lm_head_cost(1)
        gpus = self.cp * self.parallelism.tp
        time_s = self.layers * layer.time_s + head.time_s
        energy_j = gpus * self._board_w * self.layers * layer.time_s + self.parallelism.tp * head.energy_j
        unit = self.weight_device.name
        peak_s = self.rank.weight_device.peak_s(self.rank.ops("prefill", 1, prompt_tokens)) / self.cp
        busy = {unit: self.layers * peak_s + head.busy_s.get(unit, 0.0)}
        return IterationCost(time_s, energy_j, busy)

    def merge_costs_s(self, decodes: int) -> tuple[float, float]:
        """(exchange, merge) seconds of one layer's decode merge for `decodes` sequences (module docstring)."""
        if self.cp == 1 or not decodes:
            return 0.0, 0.0
        found = self._merges.get(decodes)
        if found is None:
            compute = _decode_compute(self.rank, decodes)
            # one holder's partials do not depend on the keys it holds: any count the cascade binds (cp, one each)
            _, partial_bytes = distattention_messages(compute, self.cp, self.cp)
            members = [i * self.parallelism.tp for i in range(self.cp)]
            link = self.topology.collective_link(members)
            found = self._merges[decodes] = (collectives.all_gather_s(self.cp * partial_bytes, self.cp, link),
                                             distattention_merge_s(compute, partial_bytes, self.cp))
        return found

    @functools.cached_property
    def _merges(self) -> dict[int, tuple[float, float]]:
        return {}

    def decode_cost(self, contexts: Sequence[int]) -> IterationCost:
        """One decode step of these contexts over every layer (module docstring)."""
        shares = [math.ceil(int(c) / self.cp) for c in contexts]
        own = self.rank.iteration(Batch((), shares))
        exchange_s, merge_s = self.merge_costs_s(len(contexts))
        gpus = self.cp * self.parallelism.tp
        time_s = own.time_s + self.layers * (exchange_s + merge_s)
        energy_j = self.cp * own.energy_j + gpus * self._board_w * self.layers * (exchange_s + merge_s)
        return IterationCost(time_s, energy_j, dict(own.busy_s))

    def check_rank_memory(self, batch: Batch) -> None:
        """`UnrunnableOp` when a rank cannot hold its share of an iteration with prompts by its own engine's rule
        (`SystemModel.check_fits`, the rule of cp 1: weights, KV cache and one layer's working set, the FFN unfused):
        its longest prompt's share ceil(tokens / cp) alone (the serving simulator then refuses that request), then
        the whole iteration, every request's KV share (the decodes', the prompts', the held requests') beside the
        working set of the largest pass (the prompts run one after another: the largest share, or the decodes)."""
        prompts = [int(p) for p in batch.prefill_tokens]
        if not prompts:
            return
        shares = [math.ceil(p / self.cp) for p in prompts]
        decodes = [math.ceil(int(c) / self.cp) for c in batch.decode_context_tokens]
        longest, held = max(shares), batch.held_kv_tokens / self.cp
        kv_tokens = sum(decodes) + sum(shares) + held
        waiting = f" beside {math.ceil(held)} tokens of waiting requests" if held else ""
        self.rank.check_fits(
            [(f"a prompt of {max(prompts)} tokens (a rank's share {longest})",
              self.rank.iteration_memory(longest, longest)),
             (f"an iteration of {len(prompts)} prompts ({sum(prompts)} tokens) and {len(decodes)} decodes (a rank's "
              f"share of their KV cache {sum(decodes) + sum(shares)} tokens{waiting})",
              self.rank.iteration_memory(kv_tokens, max(longest, len(decodes))))], self.name)

    def iteration(self, batch: Batch) -> IterationCost:
        if self.cp == 1:  # no context parallelism: the rank's own engine (one pass over the weights a step)
            self.rank.check_memory(batch.decode_context_tokens, batch.prefill_tokens, batch.held_kv_tokens,
                                   name=self.name)  # its refusal names this system, tp and cp
            return self.rank.iteration(batch)
        self.check_rank_memory(batch)
        parts = [self.prefill_cost(int(p)) for p in batch.prefill_tokens]
        if len(batch.decode_context_tokens):
            parts.append(self.decode_cost(batch.decode_context_tokens))
        busy: dict[str, float] = {}
        for part in parts:
            for unit, s in part.busy_s.items():
                busy[unit] = busy.get(unit, 0.0) + s
        return IterationCost(sum(p.time_s for p in parts), sum(p.energy_j for p in parts), busy)


def _decode_compute(rank: SystemModel, decodes: int) -> DeviceCompute:
    """What one GPU of a rank holds at decode: the heads and KV heads of its shard, `decodes` sequences."""
    gpu = context_parallel_gpu(rank.system)
    p = rank.shard.params
    return DeviceCompute(gpu.spec, gpu.attention_kernel, decodes, int(p["heads"]), int(p["kv_heads"]),
                         int(p["head_dim"]), "decode")


def topology_of(system: System) -> Topology:
    """The system's GPUs as a `Topology`: nodes of the gpu device's `count` over the link named tp, the nodes over
    the link named cp (one level where the spec has one GPU to a node, or no cp link: then tp x cp fits a node,
    `system_checks.check_degrees`; none for one GPU without a cp link: one device, whose group of one talks over
    no link, `Topology.group_link`). Each GPU's memory is the engine's share, `memory_utilization` of its DRAM
    where the spec sets one, so `archsim parallel --system`'s memory checks and largest contexts read what the engine
    holds (the system's own prefill compares with `GpuDevice.engine_bytes`, `ContextParallelModel.prefill`)."""
    gpu = context_parallel_gpu(system)
    levels = [Level(system.links[TP_LINK], gpu.count)] if gpu.count > 1 else []
    if CP_LINK in system.links:
        levels.append(Level(system.links[CP_LINK], None))
    spec = gpu.spec
    if gpu.memory_utilization is not None:
        spec = replace(spec, dram_bytes=gpu.memory_utilization * spec.dram_bytes)
    return Topology(system.name, system.description, system.source, system.citation, spec, tuple(levels))


def context_parallel_model(system: System, rank: SystemModel) -> ContextParallelModel:
    """`rank` (the one-rank model of `system` at its workload's tp) as a context-parallel system; a SpecError naming
    the spec's field when the scheme cannot cut the workload at these degrees (heads against Ulysses' degree, a
    workload whose attention the schemes do not model)."""
    model = ContextParallelModel(rank, topology_of(system))
    spec = model.prefill_spec(1)
    try:
        check_spec(spec)
    except SpecError as error:
        cut = error.where in ("params.heads", "params.kv_heads")  # the heads against the scheme's degree
        if error.source != SOURCE and not cut:  # the workload's attention (a window), named in its file
            raise
        if cut:
            source, where = system.source, "schedule.ulysses" if spec.scheme == "usp" else "parallelism.cp"
        elif error.where == "tp":
            source, where = system.blame(rank.workload.name, "tp")
        else:
            source, where = system.source, SPEC_FIELDS.get(error.where, "schedule.scheme")
        named = cut or error.where == "tp" or error.where in SPEC_FIELDS
        # the workload by its name, not its file's path: a stored reason holds no path (README, Records)
        inner = "" if named and not cut else f"{error.where}: "
        raise SpecError(source, where, f"{spec.scheme} at tp {spec.tp} cp {spec.devices} on {rank.workload.name}: "
                                       f"{inner}{error.message}") from None
    return model
