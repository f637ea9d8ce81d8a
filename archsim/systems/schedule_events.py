"""A `SystemModel` schedule's decoder layers event by event, in SimPy: the replay DESIGN §6 asks of the systems layer.

`archsim.systems.system_model.layer_phases` costs one decoder layer of one device per sub-batch (`LayerPhases`:
`pre` and `post` on the weight-holding device, the attention as the schedule charges it, `mha_s`) and
`LayerPhases.device_s` composes a device's layers in closed form. This model runs the same costs as processes over
the units they occupy and measures them, recording every task as a `Span` for a Perfetto trace
(`archsim.model.trace.write_chrome_trace`), where the overlap and the idle gaps show. It follows NeuPIMs (Heo et
al., ASPLOS'24; ../shared/reference/pim.md §1.4: sub-batch interleaving, the artifact's stages A..F, one vs two row
buffers); `archsim.systems.neupims.layer_timeline` draws one steady-state layer of this replay for the NeuPIMs
report.

Units (a `simpy.PriorityResource` each, one task at a time): the weight-holding device (NPU, GPU or xPU: `pre`,
`post`), the attention device (a bank-PIM, or the weight-holding device itself where the attention runs there), the
TP link (`allreduce_s`), and, where the PIM has one row buffer (`shared_hbm`: `row_buffers == 1`, as
`system_model.sbi_stage_s` reads it), the HBM the NPU's transfers and the PIM's commands share; a unit per device
name, so a device that runs an op of `pre` or `post` and the attention (Duplex's Logic-PIM) is one unit.
- An op of `pre` or `post` the rules place on another device (Duplex's MoE on the Logic-PIM below the crossover) is
  on that device's track, its unit held for the op's time (`device_runs`: the phase's ops as runs on one device
  each, their costs the closed form's calls), as the closed form's `busy_s` charges it; the weight-holding device
  stays held across its task, waiting for the op's result (blocked: the closed form adds the op's time to the
  phase's), and draws no span meanwhile.
- One sub-batch (blocked, overlapped, and SBI below `min_batch` or, with `only_when_faster`, where `layer_phases`
  found it slower): each layer `pre` -> attention -> `post` -> the TP all-reduce, one after another, so the replay
  equals `device_s` (a consistency check, not a finding). The replay runs the schedule `layer_phases` chose.
- Sub-batch interleaving (two sub-batches): each sub-batch is a chain, `pre` -> attention -> `post` with the next
  layer's `pre` -> attention ... -> the last `post`; a `post` and the next `pre` of one sub-batch are one task on
  the NPU, the artifact's "Proj/FFNs #1 + QKVgen #1" (pim.md §1.4, stages C and D). The chains compete for the NPU
  and the PIM; no barrier synchronises stages A..F.
- The attention holds its device for `mha_s`, the attention as the closed form charges it (on a bank-PIM the
  GEMVs with the host softmax after them, blocked, or beside them; the softmax runs on the host's vector units,
  which the `pre` and `post` work is taken not to need, as the closed form's stages take it).
- Priority: the program's order. A sub-batch's k-th task is in stage k + its index (sub-batch 1's k-th task and
  sub-batch 2's (k-1)-th share a stage, as the artifact's stages A..F pair them, pim.md §1.4), and within a stage
  the NPU's task comes before the attention's. A unit serves its queue in that order (oldest first: the
  `simpy.PriorityResource`s of `archsim.systems.offload_events`); two chains alternating over two units leave each
  unit's queue at most one task of each, so the order acts on the shared HBM: a task that finds it free takes it
  (work-conserving), and the requests of one instant are served in that order (`_EndOfInstant`: SimPy would grant
  the first to ask), so there the NPU's transfers go before the PIM's GEMVs, the order the closed form's stage sums.
- One row buffer: each phase of an NPU task (`pre`, `post`) holds the HBM for its `memory_s` (weights, activations,
  the new K/V) and the NPU for its `time_s`, both from its start once it has both (its compute overlaps its
  transfers); the NPU stays held across the phases of its task. A PIM task holds the PIM for `mha_s` and the HBM
  for its GEMVs (`attention_s`), both from its start. The NPU's transfers and the PIM's commands so serialise on the
  HBM, and only an NPU phase's compute beyond its transfers overlaps the PIM; the closed form's stage,
  max(work, work.memory_s + pim), overlaps all of it, as if the stage's transfers ran back to back before the PIM.
- PP stages run one after another (one batch in flight), each on its own units (`stage s ...` tracks), each with its
  own fill and drain, as the closed form runs them. The hops between stages and the LM head are left out: the
  replay is the iteration's decoder layers.
Measured (tests/test_schedule_events.py; the NeuPIMs reproduction's GPT-3 7B..175B, ShareGPT and Alpaca, batches
64..512, three sampled batches each, `neupims` and SBI at every batch): with two row buffers the replay equals the
closed form to rounding (6e-15): with two chains over two units, each task waits for the same two tasks as the stage
barrier does, so the barrier costs nothing. With one row buffer (the ablation's "SBI, one row buffer") the replay is
slower, by +0.3 % (30B, batch 64) to +3.8 % (7B, Alpaca, batch 512), growing with the PIM's share: in a stage the
NPU's `post` transfers, then the PIM's GEMVs take the banks while the NPU finishes the `post`, and the next layer's
`pre` waits for the GEMVs to end before its own transfers, so its compute beyond them overlaps nothing, where the
closed form overlaps all the stage's compute with the GEMVs (contention it cannot see). The same with the requests of
an instant served first come, first served (the PIM's GEMVs first) was +0.9 % to +9.9 %.
Letting a sub-batch go on to the next PP stage at once (not modelled) was 0.3 to 2.6 % faster on 30B and 175B (two
row buffers).

Attention offloading (Lamina's ping-pong and staggered schedules) composes its own iteration; `replay_iteration`
hands it to its own event model, `archsim.systems.offload_events` (`replay_offload`: the decode's steady-state time
per token against `offload.token_s`).
Refused (a SpecError naming the field), where a replay would not be the schedule's: context parallelism (its
iteration is its ranks' in closed form), co-processing (its layer is
Duplex's dependency chain composed in closed form), `layer_time: steady-state` (the closed form leaves out the fill
and drain a replay runs), sub-batch interleaving with a TP all-reduce (the closed form charges it blocked beside
both sub-batches), expert parallelism (groups and the expert exchange) and a model mixing dense and MoE layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import simpy

from archsim.errors import SpecError
from archsim.model.trace import Span
from archsim.systems.device import OpCost, summed
from archsim.systems.iteration import Batch, IterationCost, IterationModel
from archsim.systems.offload import OffloadModel, token_s
from archsim.systems.offload_events import model_pipeline
from archsim.systems.step import Op
from archsim.systems.system_model import (
    SPLIT_KINDS,
    LayerPhases,
    SystemModel,
    call_costs,
    decode_groups,
    dense_ops,
    layer_phases,
)
from archsim.systems.system_types import TP_LINK

SUB_BATCH_INTERLEAVING = "sub-batch-interleaving"
DeviceRuns = tuple[tuple[str | None, OpCost], ...]  # a phase's ops as runs on one device each, in order (None: the
# weight-holding device's unit), with their cost


@dataclass(frozen=True)
class ScheduleRun:
    """A replay: its time (`replay_s`: when a `SystemModel`'s last decoder-layer task ended; attention
    offloading's steady-state time per token), what the closed form charges the same work (`closed_form_s`:
    `LayerPhases.device_s` summed over the PP stages; `offload.token_s`), every task's span, and what the time
    covers (`covers`, for a printout)."""

    replay_s: float
    closed_form_s: float
    spans: tuple[Span, ...]
    covers: str = "of decoder layers"

    @property
    def difference(self) -> float:
        """(replay - closed form) / closed form: negative where the replay is faster; NaN for no work."""
        return self.replay_s / self.closed_form_s - 1.0 if self.closed_form_s else float("nan")

    def busy_s(self) -> dict[str, float]:
        """Seconds each track was busy: its spans' lengths summed (`simulate --layer-trace --json` reports it as
        `layer_replay.busy_s`)."""
        busy: dict[str, float] = {}
        for span in self.spans:
            busy[span.resource] = busy.get(span.resource, 0.0) + span.end_s - span.start_s
        return busy


@dataclass
class _Step:
    """One task of a sub-batch's chain on PP stage `stage`: on the weight-holding device (`unit` "weight": `parts`,
    (phase, layer, device, cost) in order, more than one where a `post` and the next `pre` are one task or where a
    phase's ops run on two devices, `device` None for the weight-holding device's), the attention device
    ("attention") or the TP link ("link")."""

    unit: str
    stage: int
    parts: list[tuple[str, int, str | None, OpCost]] = field(default_factory=list)


def replay_layers(phases: LayerPhases, layers: int | Sequence[int], *, weight_unit: str = "npu",
                  attention_unit: str = "pim", shared_hbm: bool = False, source: str = "<python>",
                  runs: Sequence[tuple[DeviceRuns, DeviceRuns]] | None = None) -> ScheduleRun:
    """Replay a device's `layers` decoder layers of `phases` (or, a sequence, each PP stage's layers, first to last,
    on its own units); `weight_unit` and `attention_unit` name the tracks (one unit where they are the same name);
    `shared_hbm`: the PIM has one row buffer, so its commands and the NPU's transfers share the HBM (module
    docstring; give the phases of such a PIM, whose closed form charges the sharing); `runs`: per sub-batch, its
    `pre`'s and `post`'s ops by device (`device_runs`), None for all of them on `weight_unit`. A schedule the
    replay does not model is a SpecError naming `source`'s field."""
    stage_layers = (layers,) if isinstance(layers, int) else tuple(layers)
    if not stage_layers or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in stage_layers):
        raise SpecError(source, "layers", f"expected layers >= 1 (an int, or one per PP stage), got {layers!r}")
    _check_phases(phases, source)
    sub_batches = len(phases.pre)
    if runs is None:
        runs = [(((None, pre),), ((None, post),)) for pre, post in zip(phases.pre, phases.post, strict=True)]
    if len(runs) != sub_batches:
        raise ValueError(f"runs: expected one (pre, post) per sub-batch ({sub_batches}), got {len(runs)}")
    env = simpy.Environment()
    stages = len(stage_layers)
    tracks = {"weight": weight_unit, "attention": attention_unit, "hbm": "shared HBM", "link": f"{TP_LINK} link"}
    prefixes = [f"stage {s} " if stages > 1 else "" for s in range(stages)]
    units: list[dict[str, simpy.PriorityResource]] = [{} for _ in range(stages)]

    def unit_of(stage: int, name: str) -> tuple[simpy.PriorityResource, str]:
        """A stage's unit of the device (or link, or HBM) `name`, and its track: one per name."""
        return units[stage].setdefault(name, simpy.PriorityResource(env, 1)), prefixes[stage] + name

    spans: list[Span] = []

    def tag(sb: int, phase: str, layer: int) -> tuple[str, dict]:
        label = (f"sb{sb + 1} " if sub_batches > 1 else "") + f"L{layer} {phase}"
        return label, {"sub_batch": sb + 1, "layer": layer, "phase": phase}

    def hold(track: str, seconds: float, label: str, args: dict) -> Generator:
        start = env.now
        yield env.timeout(seconds)
        if seconds > 0:
            spans.append(Span(track, label, start, env.now, args))

    def with_hbm(stage: int, track: str, seconds: float, hbm_s: float, label: str, args: dict,
                 age: int) -> Generator:
        """Hold the unit for `seconds` and the shared HBM for its first `hbm_s`, starting together."""
        hbm, hbm_track = unit_of(stage, tracks["hbm"])
        yield _EndOfInstant(env, age)  # the instant's requests for the HBM, in program order
        with hbm.request(priority=age) as request:
            yield request
            busy = env.process(hold(track, seconds, label, args))
            yield from hold(hbm_track, hbm_s, f"{label} on the HBM", args)
        yield busy

    def part(step: _Step, sb: int, age: int, phase: str, layer: int, cost: OpCost, track: str) -> Generator:
        """One part of a task whose unit is held, on `track`."""
        label, args = tag(sb, phase, layer)
        seconds, hbm_s = {"weight": (cost.time_s, cost.memory_s),
                          "attention": (phases.mha_s[sb], phases.attention_s[sb]),
                          "link": (phases.allreduce_s, 0.0)}[step.unit]
        if shared_hbm and step.unit != "link":
            yield from with_hbm(step.stage, track, seconds, hbm_s, label, args, age)
        else:
            yield from hold(track, seconds, label, args)

    def run(step: _Step, sb: int, age: int) -> Generator:
        unit, track = unit_of(step.stage, tracks[step.unit])
        with unit.request(priority=age) as request:
            yield request
            for phase, layer, device, cost in step.parts:
                if device is None or device == tracks[step.unit]:
                    yield from part(step, sb, age, phase, layer, cost, track)
                    continue
                placed, placed_track = unit_of(step.stage, device)  # an op placed on another device: its unit too
                with placed.request(priority=age) as placed_request:
                    yield placed_request
                    yield from part(step, sb, age, phase, layer, cost, placed_track)

    def chain(sb: int, stage: int, first_layer: int) -> Generator:
        for k, step in enumerate(_chain(phases, runs[sb], stage, first_layer, stage_layers[stage])):
            yield from run(step, sb, 2 * (k + sb) + (step.unit == "attention"))  # its program stage, NPU first

    def stages_in_turn() -> Generator:
        for stage in range(stages):
            yield env.all_of([env.process(chain(sb, stage, sum(stage_layers[:stage]))) for sb in range(sub_batches)])

    done = env.process(stages_in_turn())
    env.run()
    if not done.triggered:  # every task waits only on tasks before it in program order, so this is a defect
        raise RuntimeError(f"the replay stopped at {env.now} s with tasks still waiting on a unit")
    return ScheduleRun(env.now, sum(phases.device_s(n) for n in stage_layers), tuple(spans))


class _EndOfInstant(simpy.Event):
    """An event processed at the current instant after every ordinary one (SimPy's URGENT 0 and NORMAL 1), lower
    `order` first: requests made on it are arbitrated among the instant's, where SimPy grants a free resource to the
    first to ask."""

    def __init__(self, env: simpy.Environment, order: int) -> None:
        super().__init__(env)
        self._ok, self._value = True, None  # triggered as a Timeout is: scheduled at once
        env.schedule(self, priority=2 + order)


def _check_phases(phases: LayerPhases, source: str) -> None:
    """A SpecError naming `source`'s field for phases whose schedule the replay does not model (`_refused_schedule`,
    as `unreplayable` reads it off a spec)."""
    refused = _refused_schedule(phases.coprocessed_s is not None, phases.sub_batch_interleaving, phases.steady_state,
                                bool(phases.allreduce_s))
    if refused is not None:
        raise SpecError(source, refused[0], f"replay is not modelled for it: {refused[1]}")


def _refused_schedule(coprocessing: bool, sub_batch_interleaving: bool, steady_state: bool,
                      allreduces: bool) -> tuple[str, str] | None:
    """(spec field, why) for the schedules of the module docstring the replay does not model, None for the others:
    `unreplayable` reads the conditions off a spec before a run, `_check_phases` off the phases given to
    `replay_layers`."""
    if coprocessing:
        return "schedule.kind", "co-processing's layer is Duplex's dependency chain composed in closed form"
    if sub_batch_interleaving and steady_state:
        return "schedule.layer_time", "steady-state leaves out the fill and drain a replay runs (expected pipeline)"
    if sub_batch_interleaving and allreduces:
        return f"links.{TP_LINK}", (f"the closed form charges {SUB_BATCH_INTERLEAVING}'s TP all-reduces blocked "
                                    "beside both sub-batches")
    return None


def _chain(phases: LayerPhases, runs: tuple[DeviceRuns, DeviceRuns], stage: int, first_layer: int,
           layers: int) -> list[_Step]:
    """A sub-batch's tasks in order on PP stage `stage`, whose layers are `first_layer` on (module docstring): per
    layer `pre`, attention, `post`, the all-reduce (where there is one), `pre` and `post` as the sub-batch's `runs`;
    under SBI a `post` and the next layer's `pre` are one task."""
    steps: list[_Step] = []
    own = ((None, OpCost()),)  # the attention's and the link's time is read off `phases` on their own unit
    for layer in range(first_layer, first_layer + layers):
        for unit, phase, parts in (("weight", "pre", runs[0]), ("attention", "mha", own), ("weight", "post", runs[1]),
                                   ("link", "all-reduce", own)):
            if unit == "link" and not phases.allreduce_s:
                continue
            if not (phases.sub_batch_interleaving and unit == "weight" and steps and steps[-1].unit == "weight"):
                steps.append(_Step(unit, stage))
            steps[-1].parts += [(phase, layer, device, cost) for device, cost in parts]
    return steps


def device_runs(model: SystemModel, phases: LayerPhases) -> tuple[tuple[DeviceRuns, DeviceRuns], ...]:
    """Per sub-batch, its `pre`'s and `post`'s ops (`dense_ops` of what `phases.costed` says they were costed for)
    as runs of consecutive calls on one device (`call_costs`): (device name, the calls' costs added in order), so
    a phase on one device is one run that costs what the phase does (`cost_in_order`'s sum) and the runs of a phase
    on several add up to it (to rounding)."""
    return tuple(tuple(_runs(model, ops, streamed, decodes + int(sum(prompts)))
                       for ops in dense_ops(model, decodes, prompts))
                 for decodes, prompts, streamed in phases.costed)


def _runs(model: SystemModel, ops: Sequence[Op], streamed: float, tokens: int) -> DeviceRuns:
    """`ops`' consecutive calls on one device (`call_costs`), each such run's costs added in order (`device_runs`)."""
    return tuple((name, summed(OpCost(), [cost for _, cost in calls]))
                 for name, calls in itertools.groupby(call_costs(model, ops, streamed, tokens),
                                                      key=lambda call: call[0]))


def unreplayable(model: IterationModel) -> tuple[str, str] | None:
    """(spec field, why) when `replay_iteration` does not model `model`'s schedule, None when it does: a
    context-parallel model (its iteration is its ranks', composed in closed form), and the refusals of the module
    docstring, read off the spec so that a run can be refused before it is served. Attention offloading is
    replayed by its own event model (`replay_offload`)."""
    schedule = model.system.schedule
    if isinstance(model, OffloadModel):
        return None
    if not isinstance(model, SystemModel):
        return "schedule.kind", f"{schedule.kind} composes its own iteration, not layer_phases'"
    par = model.parallelism
    refused = _refused_schedule(schedule.kind == "co-processing", schedule.kind == SUB_BATCH_INTERLEAVING,
                                schedule.layer_time == "steady-state", par.tp > 1 and TP_LINK in model.system.links)
    if refused is not None:
        return refused
    if par.ep > 1:
        return "parallelism.ep", "expert-parallel groups and their token exchange are not replayed"
    if len(model.stage_runs) > 1:
        return "params.moe_every", f"{model.workload.name} mixes dense and MoE layers, which are not replayed"
    return None


def replay_iteration(model: SystemModel | OffloadModel, batch: Batch, layers: int | None = None) -> ScheduleRun:
    """Replay one iteration of `model` for `batch`: attention offloading's decode by `replay_offload`; otherwise
    the decoder layers, `layer_phases` of the batch on every PP
    stage's layers (`SystemModel.stage_layers`, the stages one after another, as `SystemModel.iteration` runs
    them), the attention's device and the PIM's row buffers read off the model; `closed_form_s` is then the
    iteration's decoder layers as it charges them. The LM head and the hops between stages are left out. A model
    `unreplayable` refuses is a SpecError naming the spec's field. `layers`: replay that many decoder layers of one
    device instead (one PP stage's units: `neupims.layer_timeline`'s look at a layer); an attention-offloading
    model, whose replay runs tokens, refuses it (a ValueError: the caller's argument, no field of the spec)."""
    refused = unreplayable(model)
    if refused is None and isinstance(model, OffloadModel):
        if layers is not None:
            raise ValueError(f"layers={layers!r} is not read: an attention-offloading replay ({model.system.name}) "
                             "runs tokens, not layers")
        return replay_offload(model, batch)
    if refused is not None:
        source = model.workload.path if refused[0].startswith("params.") else model.system.source
        raise SpecError(source, refused[0], f"replay is not modelled for it: {refused[1]}")
    contexts, prompts = batch.decode_context_tokens, tuple(int(p) for p in batch.prefill_tokens)
    phases = layer_phases(model, contexts, prompts)
    weight = model.weight_device
    groups = decode_groups(model, contexts, model.decode_ops(contexts))
    attention = groups[0][0] if len(groups) == 1 else None
    names = " + ".join(group[0].name for group in groups) or weight.name  # two devices: their shares in turn
    shared_hbm = attention is not None and attention.kind in SPLIT_KINDS and attention.spec.row_buffers == 1
    return replay_layers(phases, model.stage_layers if layers is None else layers, weight_unit=weight.name,
                         attention_unit=names, shared_hbm=shared_hbm, source=model.system.source,
                         runs=device_runs(model, phases))


OFFLOAD_TOKENS = 4  # tokens per micro-batch in an offloading replay: its steady state settles by the third


def replay_offload(model: OffloadModel, batch: Batch, tokens: int = OFFLOAD_TOKENS) -> ScheduleRun:
    """Replay the decode of one iteration of an attention-offloading model (Lamina) for `batch`: its micro-batches
    (`OffloadModel.micro_batch_layers`) through `archsim.systems.offload_events.model_pipeline` for `tokens`
    tokens, with their LM heads and the link's lanes, against the closed form's steady-state time per token
    (`offload.token_s`, what `OffloadModel.iteration` charges the decodes). The prompts' phase, blocked before the
    micro-batches, is left out."""
    contexts = [int(c) for c in batch.decode_context_tokens]
    run = model_pipeline(model, contexts, tokens, trace=True)
    closed = token_s(model.micro_batch_layers(contexts), model.heads_s(contexts), model.replicas,
                     model.divide_and_conquer, model.layers, model.link_lanes)
    return ScheduleRun(run.token_s, closed, run.spans, "a token in steady state (every micro-batch's layers and "
                                                       "LM head)")


class LongestDecode:
    """An `IterationModel` that passes `model` through and keeps the batch of its longest iteration with decodes
    (`batch`, None before one; the first of equal ones) and how many iterations with decodes came before it
    (`decodes_before`): the serving simulator's timeline records an iteration's counts, not its contexts."""

    def __init__(self, model: IterationModel) -> None:
        self.model = model
        self.batch: Batch | None = None
        self.decodes_before = -1
        self._longest_s = -1.0
        self._decodes = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def iteration(self, batch: Batch) -> IterationCost:
        """The model's cost of `batch`, noting the batch if it decodes and is the longest yet."""
        cost = self.model.iteration(batch)
        if len(batch.decode_context_tokens):
            if cost.time_s > self._longest_s:
                self.batch, self.decodes_before, self._longest_s = batch, self._decodes, cost.time_s
            self._decodes += 1
        return cost
