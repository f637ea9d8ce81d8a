"""NeuPIMs (Heo et al., ASPLOS'24) and its baselines as system specs on the systems layer, and the decoder-layer
timeline its report draws.

The modes are library system specs (`archsim/systems/system_presets/`), nothing here models hardware:

    mode            attention        row buffers  schedule                              channels
    npu-only        NPU (HBM reads)  -            blocked                               -
    npu+pim         PIM GEMV         1 (Newton)   blocked: NPU and PIM never overlap    round-robin
    neupims         PIM GEMV         2            sub-batch interleaving, stages A..F   greedy min-load
                                                  (at batch >= 256, as the artifact)
    neupims-no-sbi  PIM GEMV         2            overlapped: softmax beside the GEMVs  greedy min-load (Fig. 13)
    gpu             A100 40GB        -            blocked, PyTorch eager                -

Each spec carries the artifact's parallelism per model (pim.md §1.5: 7B TP4, 13B TP4, 30B TP4 PP2, 175B TP8 PP4)
in `parallelism.by_workload`. `system(mode, model, changes)` builds one as the serving simulator's
`IterationModel` (`archsim.systems.system_model`): the decoder layer's ops come from the library's cascades, the
devices' cost models time them (`npu_device`, `pim_device`, `gpu_device`) and the spec's schedule composes them.
`changes` sets spec fields by dotted path (`with_fields`), e.g. {"schedule.min_batch": 2} for SBI at every batch.

Moving the hand-coded block onto the layer (issue 13) moved these results, all within 2 % of the snapshot in
tests/data/neupims_snapshot.json:
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

import numpy as np

from archsim import library
from archsim.model.trace import Span
from archsim.systems import pim as pim_model
from archsim.systems.device import OpCost
from archsim.systems.models import system_model
from archsim.systems.system_model import SystemModel, layer_phases
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
           pp: int | None = None) -> SystemModel:
    """The IterationModel of a mode (preset name or System, with `changes`) running a library model, with the
    spec's parallelism for it unless `tp`/`pp` say otherwise (`System.with_options`: errors about them name
    `--tp`/`--pp`)."""
    system = configure(mode, changes).with_options(tp=tp, pp=pp)
    return system_model(system, library.load_workload_spec(model))


# ------------------------------------------------------------------------------------------------ timeline
TIMELINE_RESOURCES = ("NPU arrays", "NPU vector", "PIM", "HBM (NPU)")


def block_timeline(model: SystemModel, contexts: np.ndarray) -> tuple[Span, ...]:
    """One decoder layer of one device in one decode iteration, as spans on `TIMELINE_RESOURCES`, drawn from
    `layer_phases` (the times the iteration charges), so the last span ends at `LayerPhases.layer_s`.

    - "NPU arrays": a phase's wall time on the NPU, its GEMMs and the norms, GELU and residual adds between them
      (the model runs those in sequence with the GEMMs, so they share the span); `args` keep its useful MAC, array
      and HBM seconds.
    - "HBM (NPU)": the phase's external-bandwidth transfers (weights, the new K/V; with attention on the NPU the
      K/V read), from the phase's start.
    - "PIM": the slowest channel's GEMVs. Blocked (npu+pim): logits, then softmax on the vector units, then attend
      (the slowest channel's split). Overlapped: one span, the softmax beside it per head.
    - "NPU vector": the attention's softmax.
    - Sub-batch interleaving: the steady-state layer, stages C then D (§1.4), whose sum is the per-layer time of
      A + B + (N-1)(C + D) + E + F; A, B, E and F fill and drain the pipeline once per device and are not drawn.
      C runs projection/FFN #1 of this layer and QKV #1 of the next beside MHA #2, D the same for #2 beside MHA
      #1. With one row buffer the NPU's HBM transfers and the PIM serialise: the stage's transfers come first,
      back to back, then the PIM.
    Spans of zero length are left out. `contexts` are the decode requests' KV-cache lengths; each reads
    `model.decode_keys(contexts)` keys (a sliding-window model at most window + sinks), as `layer_phases` costs it."""
    phases = layer_phases(model, contexts)
    spans: list[Span] = []
    pim = next((d for d in model.devices.values() if d.kind == "bank-pim"), None)

    def add(resource: str, name: str, start_s: float, length_s: float, phase: str, **args: object) -> float:
        if length_s > 0:
            spans.append(Span(resource, name, start_s, start_s + length_s, {"phase": phase, **args}))
        return start_s + length_s

    npu = next((d.name for d in model.devices.values() if d.kind == "npu"), "npu")

    def npu_phase(name: str, phase: str, start_s: float, work: OpCost, hbm_start_s: float, **args: object) -> float:
        add("HBM (NPU)", name, hbm_start_s, work.memory_s, phase, **args)
        return add("NPU arrays", name, start_s, work.time_s, phase, mac_s=work.busy_s.get(npu, 0.0),
                   array_s=work.busy_s.get(f"{npu}_array", 0.0), memory_s=work.memory_s, **args)

    if phases.sub_batch_interleaving:
        t, one_buffer = 0.0, pim.spec.row_buffers == 1
        for stage, stage_s, npu_sb, mha_sb in (("C", phases.stages_s[2], 0, 1), ("D", phases.stages_s[3], 1, 0)):
            post, pre = phases.post[npu_sb], phases.pre[npu_sb]
            tags = {"stage": stage, "sub_batch": npu_sb + 1}
            end = npu_phase(f"{stage}: proj+FFN #{npu_sb + 1}", "post", t, post, t, **tags)
            npu_phase(f"{stage}: QKV gen #{npu_sb + 1} (next block)", "qkv", end, pre,
                      t + post.memory_s if one_buffer else end, **tags)
            tags = {"stage": stage, "sub_batch": mha_sb + 1}
            pim_start_s = t + post.memory_s + pre.memory_s if one_buffer else t
            add("PIM", f"{stage}: MHA #{mha_sb + 1}", pim_start_s, phases.attention_s[mha_sb], "mha", **tags)
            add("NPU vector", f"{stage}: softmax #{mha_sb + 1}", t, phases.softmax_s[mha_sb], "softmax", **tags)
            t += stage_s
        return tuple(spans)
    t = npu_phase("QKV gen", "qkv", 0.0, phases.pre[0], 0.0)
    attention_s, softmax_s = phases.attention_s[0], phases.softmax_s[0]
    if phases.placement is None:
        add("HBM (NPU)", "MHA: K/V read", t, phases.attention.memory_s, "mha")
        add("NPU vector", "MHA: GEMVs + softmax", t, phases.attention.busy_s.get(f"{npu}_vector", 0.0), "mha")
    elif phases.overlap:
        add("PIM", "MHA logits + attend", t, attention_s, "mha")
        add("NPU vector", "softmax (per head)", t, softmax_s, "softmax")
    else:
        placement, spec = phases.placement, pim.spec
        slowest = int(np.argmax(placement.loads_s()))
        # the placement's own per-request logits times (the keys it costs: a sliding window caps each context)
        slowest_logits_s = float(pim_model.channel_loads(placement.logits_s, placement.channel, spec.channels)[slowest])
        end = add("PIM", "MHA logits", t, slowest_logits_s, "mha")
        end = add("NPU vector", "softmax", end, softmax_s, "softmax")
        add("PIM", "MHA attend", end, attention_s - slowest_logits_s, "mha")
    t += phases.mha_s[0]
    npu_phase("proj+FFN", "post", t, phases.post[0], t)
    return tuple(spans)
