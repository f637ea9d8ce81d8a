"""NeuPIMs (Heo et al., ASPLOS'24) and its baselines as system specs on the systems layer, and the decoder-layer
timeline its report draws (`layer_timeline`, the event replay's).

The modes are library system specs (`archsim/systems/system_presets/`), nothing here models hardware:

    mode            attention        row buffers  schedule                              channels
    npu-only        NPU (HBM reads)  -            blocked                               -
    npu+pim         PIM GEMV         1 (Newton)   blocked: NPU and PIM never overlap    round-robin
    neupims         PIM GEMV         2            sub-batch interleaving, stages A..F   greedy min-load
                                                  (at batch >= 256 where faster than
                                                  overlapped; the artifact: batch alone)
    neupims-no-sbi  PIM GEMV         2            overlapped: softmax beside the GEMVs  greedy min-load (Fig. 13)
    gpu             A100 40GB        -            blocked, PyTorch eager                -

Each spec carries the artifact's parallelism per model (pim.md §1.5: 7B TP4, 13B TP4, 30B TP4 PP2, 175B TP8 PP4)
in `parallelism.by_workload`. `system(mode, model, changes)` builds one as the serving simulator's
`IterationModel` (`archsim.systems.system_model`): the decoder layer's ops come from the library's cascades, the
devices' cost models time them (`npu_device`, `pim_device`, `gpu_device`) and the spec's schedule composes them.
`changes` sets spec fields by dotted path (`with_fields`), e.g. {"schedule.min_batch": 2, "schedule.only_when_faster":
False} for SBI at every batch.

`system` builds it with the factory (`archsim.systems.models.system_model`), which holds one request to a bank-PIM
channel's capacity: each request's KV cache lives on one channel (`archsim.systems.pim_device`), so a served request
longer than a channel holds is rejected on arrival, and an iteration holding one is an `UnrunnableOp`; several
requests that together overflow a channel are not refused (the placement is not capacity-aware).
`without_channel_check` lifts the check, for the paper's protocol.

Moving the hand-coded block onto the layer (issue 13) moved these results, all within 2 % of the snapshot as it
was taken at 1a0bd8b (tests/data/neupims_snapshot.json has since been regenerated):
- softmax: the `attention-decode-gqa` cascade counts 4 vector ops per score (max, subtract, exp, sum) and a division
  per output element; the hand count was 5 per score (a scale by 1/sum per score). PIM modes, whose softmax runs on
  the NPU's vector units beside or after the GEMVs, are up to 1.6 % faster at batch 512;
- layer norm: 6 ops per element in the cascade (sum, subtract, square-accumulate, scale, gain, bias) against the
  hand's 7;
- GPU baseline: residual adds read two tensors and write one (3 passes where the hand count had 2), the FFN's GELU
  is its one elementwise kernel and the cascades have no bias add, so 5 elementwise launches a layer instead of 6:
  within 0.6 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from archsim import library
from archsim.model.trace import Span
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model, with_channel_kv
from archsim.systems.schedule_events import replay_iteration
from archsim.systems.system_model import SystemModel
from archsim.systems.system_spec import load_system, with_fields
from archsim.systems.system_types import System

MODES = ("gpu", "npu-only", "npu+pim", "neupims")
MODELS = ("gpt3-7b", "gpt3-13b", "gpt3-30b", "gpt3-175b")  # §1.5


def configure(mode: str | System, changes: Mapping[str, object] | None = None, name: str | None = None) -> System:
    """A mode (a preset name, or a System) with spec fields changed by dotted path, optionally renamed."""
    system = load_system(mode) if isinstance(mode, str) else mode
    changes = {**(changes or {}), **({"name": name} if name else {})}
    return with_fields(system, changes) if changes else system


def system(mode: str | System, model: str, changes: Mapping[str, object] | None = None, tp: int | None = None,
           pp: int | None = None, channel_check: bool = True) -> SystemModel:
    """The IterationModel of a mode (preset name or System, with `changes`) running a library model, with the
    spec's parallelism for it unless `tp`/`pp` say otherwise (`System.with_options`: errors about them name
    `--tp`/`--pp`); its bank-PIM channels held to their capacity (module docstring) unless `channel_check` is False
    (`without_channel_check`: the paper's protocol times a frozen batch without asking whether it fits)."""
    system = configure(mode, changes).with_options(tp=tp, pp=pp)
    built = system_model(system, library.load_workload_spec(model))
    return built if channel_check else without_channel_check(built)


def without_channel_check(model: SystemModel) -> SystemModel:
    """`model` with its bank-PIMs' channel capacity unchecked (`channel_kv_bytes_per_token` None): a batch whose
    channel overflows is timed all the same, as the paper's protocol times a frozen batch."""
    return with_channel_kv(model, None)


# ------------------------------------------------------------------------------------------------ timeline
# `layer_timeline` replays layers 0 to 3 and shows one period of layer 2 (the third), past the fill and before the
# drain. Blocked and overlapped schedules: from layer 2's sub-batch-1 `pre` (its QKV generation) to layer 3's.
# Sub-batch interleaving: from layer 1's sub-batch-1 `post`, one NPU task with layer 2's `pre` (stage C), to layer
# 2's (with layer 3's `pre`).
TIMELINE_LAYERS = 4
WINDOW_LAYER = 2


def layer_timeline(model: SystemModel, contexts: np.ndarray) -> tuple[Span, ...]:
    """One steady-state decoder layer of one device in one decode iteration, as the event replay runs it
    (`schedule_events.replay_iteration` of `TIMELINE_LAYERS` layers on one device's units: the device holding the
    weights, the attention's device where it is another, and the HBM a one-row-buffer PIM shares with the NPU's
    transfers, each a track): its spans within one period, clipped to it and shifted to start at 0.

    The period runs from sub-batch 1's weight-device task that starts layer `WINDOW_LAYER`'s work to the same task
    of the next layer: blocked and overlapped schedules, its QKV generation (`pre`), so the window is that layer's
    QKV generation, attention and projection/FFN in turn; sub-batch interleaving, its projection/FFN of the layer
    before with this layer's QKV generation (one NPU task, stage C of §1.4), so the window is stages C and D, each
    sub-batch's NPU work beside the other's attention. Spans crossing an edge of the window (a sub-batch's attention
    running on into the next period) are clipped. The attention's span holds its device for the time the schedule
    charges it (`LayerPhases.mha_s`: the PIM's GEMVs and the softmax after or beside them; on the NPU, its K/V
    read). Where the replay equals the closed form (two row buffers, or one sub-batch) the window is
    `LayerPhases.layer_s`; with one row buffer under sub-batch interleaving it is longer by the contention on the
    shared HBM the closed form's stage sums leave out (`archsim.systems.schedule_events`). `contexts` are the
    decode requests' KV-cache lengths (a sliding-window model reads at most window + sinks keys of each)."""
    run = replay_iteration(model, Batch(decode_context_tokens=contexts), TIMELINE_LAYERS)
    interleaved = any(s.args["sub_batch"] > 1 for s in run.spans)  # only sub-batch interleaving splits the batch
    phase, first = ("post", WINDOW_LAYER - 1) if interleaved else ("pre", WINDOW_LAYER)
    starts = {s.args["layer"]: s.start_s for s in run.spans
              if s.resource == model.weight_device.name and s.args["sub_batch"] == 1 and s.args["phase"] == phase}
    begin_s, end_s = starts[first], starts[first + 1]
    return tuple(replace(s, start_s=max(s.start_s, begin_s) - begin_s, end_s=min(s.end_s, end_s) - begin_s)
                 for s in run.spans if s.end_s > begin_s and s.start_s < end_s)
