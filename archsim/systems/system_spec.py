"""A system as data: devices, links, parallelism, placement rules and a schedule, loaded from YAML and validated.

This module reads a system spec into a `System` and has it checked; it runs nothing (the devices' cost models and
the schedules that compose op costs into an iteration read the `System` it returns). File format (the presets in
`archsim/systems/system_presets/` carry each value's source in a comment)::

    name: neupims
    description: one line
    source: where the configuration comes from
    devices:                    # name -> kind, count per node, and the kind's fields
      npu: {kind: npu, count: 4}
      pim: {kind: bank-pim, count: 4, row_buffers: 2, channel_policy: greedy}
    links:                      # role (LINK_ROLES) -> a link preset name, or a link's fields inline (below)
      tp: pcie5-x16
    parallelism:                # and ep (default 1), attention_pool (default: none)
      tp: 4
      pp: 1
      by_workload:              # optional: a workload's own tp, pp (required) and ep (default 1)
        gpt3-175b: {tp: 8, pp: 4}
    placement:                  # first matching rule wins; every op of both phases must find a device
      - {op: attention, phase: decode, device: pim}
      - {op: [attn_norm, qkv, attention, out_proj, attn_residual, ffn_norm, ffn, moe, ffn_residual], device: npu}
    schedule: {kind: sub-batch-interleaving, sub_batches: 2, min_batch: 256}

Devices. `kind` is one of `DEVICE_KINDS`; the other keys are the kind's fields:
- `npu`: any field of `archsim.systems.npu.NPUSpec` (unset fields keep the NeuPIMs NPU's, pim.md §1.2) but
  `element_bytes`, which no op reads (a GEMM streams the workload's `word_bytes`): it is refused;
- `bank-pim`: any field of `archsim.arch.pim.PIMSpec` but `tCCD_S_cycles`, `tRTP_cycles` and `tRRD_L_cycles`,
  which only the command-level channel reads (refused: `UNREAD_FIELDS`), with `banks_per_activation` at a bank
  group's 4 (the GEMV model times no other: `FIXED_FIELDS`), and `channel_policy` (`rr` round-robin, `greedy`
  NeuPIMs' Algorithm 2: how requests are pinned to channels; required where attention is placed on the device);
  `row_buffers` is read only under `sub-batch-interleaving` (with one buffer a stage's NPU HBM reads and PIM
  commands serialise); `overlapped` requires 2 (`system_checks._check_split_schedule`), and `blocked`, where
  nothing overlaps, leaves it unread;
- `gpu` and `memory-pool` (a GPU used for its memory, e.g. an H20 attention pool): `preset`, a GPU preset name or
  file (`archsim.gpu.load`), and `attention_kernel` (a kernel of `archsim.model.gpu_kernels` with decode and
  prefill paths, a decode path on a memory pool), required where a placement rule puts attention on the device
  and read only there: there is no default, as the kernels' times differ several-fold (PyTorch eager attention
  against Flash-Decoding at decode). Either may also set `energy_model` (`tdp`, the default: board
  power for the time; `per-action`: priced per action, which then requires `hbm_pj_per_bit`, `pj_per_flop`,
  `sram_pj_per_byte` and `static_w`, the static power drawn busy or idle, see `archsim.systems.gpu_device`), and
  `timing` (`calibrated`, the default: the calibrated
  GPU model; `roofline`: every op at the device's peaks, as Duplex's simulator times its GPU, pim.md §2.5, a
  compatibility option for `archsim reproduce duplex --as-artifact`), and `memory_utilization` (the share of the
  device's memory the serving engine allocates to weights, KV cache and activations, in (0, 1]; default all of it;
  vLLM's `gpu_memory_utilization`, whose own default is 0.9);
- `architecture`: `preset`, a library architecture name or file, and `mapping`, a library mapping name or file;
- `logic-pim`: any field of `archsim.arch.logic_pim.LogicPIMSpec` (one HBM3 stack with Duplex's GEMM units on its
  logic die; unset fields keep Duplex's, pim.md §2.2, but `internal_bytes_per_s`, 4x `external_bytes_per_s`, and,
  beside a gpu or chip, `capacity_bytes`, its HBM's capacity over `count` stacks (a gpu's `dram_bytes`, a chip's
  `memory_bytes`: `_logic_pim_stacks`); `pj_per_flop` has no default and is required); `area_mm2` is refused: no
  model or record of a system reads an area. Its stacks are the HBM of the device beside it (pim.md §2.4), so it
  does not hold the weights (a rule giving it the decode qkv at every Op/B is refused), beside a gpu or chip
  holding them count x `capacity_bytes` is at most that HBM's capacity (`system_checks._check_logic_pim_memory`),
  and count x `external_bytes_per_s` at least the bandwidth of every gpu or chip beside it, which it is refused
  without (`system_checks._check_logic_pim_interface`: give `internal_bytes_per_s` there);
- `chip` (an accelerator without a microarchitectural model, e.g. a TPU, costed as a roofline by
  `archsim.systems.chip_device`): `preset`, a chip preset name or file (`archsim.systems.chip.load_chip`), and
  `matmul_efficiency` and `memory_efficiency`, the fractions of its matrix peak and HBM bandwidth an op reaches,
  each in (0, 1] and required (no default: they depend on the software stack); and `energy_model` with its prices
  as a gpu's (`tdp`, the default: the chip's `power_w` for the time, unknown energy where it has none;
  `per-action`: the same four prices required, each op's moved bytes and FLOPs priced, `static_w` at most the
  chip's `power_w` where it has one).
`count` is the number of such devices per node (a whole number >= 1); for the device holding the weights it bounds
the TP degree (`system_checks.check_tp_group`: a TP group within a node where the spec has a `tp` link, over whole
nodes where it has none; PP stages and EP groups are further nodes), a Logic-PIM's is its stacks per xPU, a memory
pool's is `parallelism.attention_pool` and an offloading system's compute devices' tp x its replicas (below); a
bank-pim's is its npu's (one PIM HBM per NPU, its `channels` inside the one device), a gpu's, npu's or chip's
beside the weight holder the holder's (`system_checks._check_device_counts`), and an architecture device's is not
read (each rank holds one array). Any kind may carry `price_per_hour`, what one such device costs in USD per
device-hour (a positive number; optional, read by sweeps' cost per token): a run is priced at every device it holds
(`system_checks.rank_devices`), TP x PP x EP ranks each of one device of every kind and a logic-pim's `count`
stacks (a Logic-PIM's price is one stack's), an offloading system's two pools at their `count`s, a
context-parallel one's cp ranks of tp GPUs.

Links, by role (`LINK_ROLES`, the only names read; any other is refused): `tp`, the TP all-reduce; `ep`, the EP
groups' token exchange; `attention`, attention offloading's messages, the compute devices' NIC (refused under
another schedule); `attention_pool`, the memory devices' NIC there, where it differs from the compute devices'
(optional: `attention` when left out; a message is charged both ends, `archsim.systems.offload`); `cp`, the link
between the nodes a context-parallel group spans (refused under another schedule). A link is a
preset's name or file (`archsim.systems.links`), or a link spec's fields inline, which include its `name` and
`source` as a link file's do (`latency_s` and `bytes_per_s_per_direction`; `description` optional).

Parallelism: `tp`, `pp` and `ep` are the degrees a workload is cut by unless `by_workload` names it (a key is a
library workload's name, or a workload file's path, relative to the spec's folder, standing for the name in it; a
key naming neither is refused, so a misspelt one cannot leave its workload on the top-level degrees); an entry
there replaces all three (its ep defaults to 1, not to the top-level one; ep > 1 makes expert-parallel groups,
`archsim.systems.system_model`, which exchange tokens over a link named `ep`), and `attention_pool`, a property
of the devices, is the system's for every workload, as is `cp` (default 1), the context-parallel degree: the
ranks of tp devices each that one sequence is cut over (read by a context-parallel schedule alone, refused above 1
under another). `System.parallelism_for` picks, with any degree given as an
option (`System.with_options`, `archsim simulate --tp/--pp`) in place of the spec's; an error about such a degree
names the option (`System.blame`).

Placement rules: `op` is one op name of `archsim.systems.step.layer_ops` (`OP_KINDS`) or a list of them;
`phase` (optional) is prefill or decode; `op_per_byte_below` (optional) makes the rule match only ops whose
arithmetic intensity (FLOPs per byte, `Op.op_per_byte`) is below it (Duplex's Op/B dispatch): a number, or
`crossover`, the Op/B below which the rule's device's roofline is faster than that of the device holding the
weights (`system_checks.roofline_crossover`: the device's peak FLOP/s over the holder's operand bandwidth, where it
has more bandwidth and less peak; refused otherwise, or where either is not a gpu, memory-pool or logic-pim), read
off their cost models' peaks as the spec loads (`_with_crossovers`), so a derived spec changing either moves it;
or `faster`, wherever the models time the op faster on the rule's device than on the device holding the
weights (each op's cost on both, `system_model.runs_faster`: Duplex's artifact tries an op on each unit and
keeps the fastest, pim.md §2.5), which a unit's fixed costs and derated rates move off the peaks' crossover
(refused on a rule naming that device, never faster than itself, and on one naming a bank-pim, where one op alone
is one request on one channel while a batch's requests run on every channel: `system_checks._check_faster_rules`);
`device` names a device of the spec. Rules
are tried in order and the first that matches places the op. At load every (op kind, phase) must be matched by a
rule with no Op/B threshold, so no op is ever left without a device.
Some device must run ops of both phases: every schedule is one engine whose iterations hold prompts and decodes,
and prefill/decode disaggregation (prefill on some devices, decode on others) is refused, as its two serving
instances and the KV cache's migration between them are not modelled.

Schedules (`SCHEDULE_KINDS`): `blocked` (ops one after another; devices never overlap), `overlapped` (an op on one
device overlaps the next op's work on another at op granularity, as NeuPIMs without SBI overlaps softmax with the
PIM GEMVs per head), `sub-batch-interleaving` (NeuPIMs' SBI: `sub_batches` sub-batches pipelined across the devices,
2, the count modelled (NeuPIMs' two, Algorithm 3's halves; any other is refused); optional `min_batch`, below which
the batch runs overlapped, NeuPIMs without SBI (the artifact's 256), `only_when_faster` (true/false, default false:
from `min_batch` on, SBI runs only an iteration whose decoder layers it runs faster than overlapped), and
`resident_weight_bytes`, weight bytes of one device kept on chip between sub-batches, default 0, at most the
`sram_bytes` of every npu a rule can put a weight-holding op on (another kind has no SRAM size in its spec and keeps
none)), `staggered` (attention offloading,
Lamina's rotational staggered pipelining, pim.md §3.4: `micro_batches` n micro-batches over n - 1 replicas of the
compute devices, decode attention on a `memory-pool` or `chip` device of `parallelism.attention_pool` devices over
the link named `attention`; see `archsim.systems.offload`; `micro_batches: 1` is one batch on one replica, no
pipelining: the compute devices wait while the pool runs attention, as AttAcc's GPUs wait on its PIM, pim.md §4.1)
and `ping-pong` (the same with two). Both take
`divide_and_conquer` (true/false, default false): attention over the history starts as soon as q arrives, the new
token's k and v join by the online-softmax merge. Two named timing variants reproduce the NeuPIMs artifact
(../shared/reference/neupims-artifact.md): `blocked` takes `attention_sync` (`per-channel`, default: each PIM
channel runs a request's logits and attend back to back; `barrier`: all channels' logits, the host's softmax, then
all channels' attend, the npu+pim branch's op dependency, §4.2); `sub-batch-interleaving` takes `layer_time`
(`pipeline`, default: a device's N layers take A + B + (N-1)(C + D) + E + F; `steady-state`: N (C + D), the
artifact's one layer of a frozen batch, §3) and `split` (`arrival`, default: Algorithm 3 halves each channel's
requests in arrival order; `longest-first`: in decreasing length, as the artifact halves its near-sorted clb traces
by count, §6). Every kind takes `lm_head` (`timed`, default: the LM head after the last layer,
`archsim.systems.system_model`; `left-out`: the decoder layers only, the artifact's throughput, §0). `co-processing`
(Duplex, pim.md §2.3): ops of one layer that do not depend on each other run at once on their devices (decode
attention on a Logic-PIM beside prefill attention on the xPU). Optional: `expert_coprocessing` (true/false, default
false: "+PE", a MoE op's experts split between the xPU and the system's one Logic-PIM device), `expert_tp`
(true/false, default true: "+ET", every TP rank holds 1/TP of each expert; false: each rank holds experts / TP whole
experts, expert parallelism within the node; `blocked` takes it too, `system_model.whole_experts`) and `zipf_skew`
(the Zipf exponent of the tokens each expert receives, default 0: uniform routing). `context-parallel`
(multi-device attention as a system, `archsim.systems.context_parallel`): `parallelism.cp` ranks of `tp` GPUs
each, every rank holding the weights (1/tp
per GPU) and 1/cp of every sequence's KV cache. A prompt is prefilled by `scheme` (required: one of
`CONTEXT_PARALLEL_SCHEMES`, as `archsim parallel` times it, `archsim.systems.seqpar_schemes`; `ulysses`, the Ulysses
degree, required with usp and refused otherwise) across the cp ranks; decode attends each rank's share of the cache and
merges the ranks' partial results. Its one device is a gpu (the calibrated model; `energy_model: per-action` and
`timing: roofline` are refused, as the prefill's schemes are timed by the calibrated model and priced at board
power), with a `tp` link inside a node when it holds more than one GPU and a `cp` link between nodes when tp x cp
exceeds its count; pp and ep are 1.

Derived specs. A spec with `base` (a system preset name, or a YAML path, relative to the spec's own file) is that
system's spec with this file's keys laid over it: a mapping merges key by key (recursively), a `null` removes the
base's key, any other value replaces it; `name` must be given (a derived spec never inherits its base's name),
`description` and `source` are inherited when left out. The base is loaded and validated on its own first, so an
error in it names its file; one on a value the merged spec holds from the base, refused beside this file's changes
(neupims' `min_batch` under a derived `schedule: {kind: blocked}`), names this file and the path, and says the
value comes from the base and how to drop it (`min_batch: null` under schedule, offered only where the spec
without the key is not refused at it, `_removal_error`: a device's `count` is only to be set; a list, replaced
whole, written here: `_from_base`); a cycle of bases is refused. A relative path in the base (a device's `preset` or
`mapping`, a link, a `by_workload` key) is read from the base's folder, one in the derived spec from its own. The
merged spec, the base's paths put as the derived file would write them, is what `System.data` holds (what sweeps
hash and `with_fields` changes). A spec is remembered per file content (`archsim.library`), its base's file and
every file the two load included, so a base edited while a process runs reaches the specs derived from it at their
next load.

Checks across fields (`check_system`, run by `system_from_dict`: `archsim check`, `load_system`, `with_fields`
and sweeps refuse alike) and those at the degrees a run uses or its workload are `archsim.systems.system_checks`'s;
its docstring lists them. The types a spec loads into (`System`, `Device`, `Parallelism`, `PlacementRule`,
`Schedule`) are `archsim.systems.system_types`'s.

Every error is a `SpecError` naming the file and the YAML path. The keys `devices`, `placement` and `base` mark a
system spec.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from archsim import library
from archsim.arch.logic_pim import LogicPIMSpec
from archsim.arch.pim import PIMSpec
from archsim.errors import (
    SpecError,
    UnknownField,
    check_header,
    check_keys,
    kind_of,
    loaded_for,
    refuse_unread,
    text_number_hint,
)
from archsim.spec_files import (
    beside,
    finite_number,
    is_spec_path,
    laid_over,
    moved_beside,
    parse_yaml,
    spec_beside,
)
from archsim.systems.chip import load_chip
from archsim.systems.links import Link, link_from_dict, link_to_dict, load_gpu_with_host_link, load_link
from archsim.systems.npu import NPUSpec
from archsim.systems.step import PHASES
from archsim.systems.system_checks import (
    ATTENTION_POOL_LINK,
    check_system,
    hbm_bytes,
    hbm_devices,
    roofline_crossover,
    weight_holder,
)
from archsim.systems.system_types import (
    ATTENTION_LINK,
    CONTEXT_PARALLEL_SCHEMES,
    CP_LINK,
    EP_LINK,
    GPU_KINDS,
    MAX_COUNT,
    OP_KINDS,
    TP_LINK,
    WORKLOAD_PARALLELISM_KEYS,
    Device,
    Parallelism,
    PlacementRule,
    Schedule,
    System,
)

PRESETS_PACKAGE = "archsim.systems.system_presets"
TEXT = ("name", "description", "source")
BASE = "base"  # a derived spec's base system (see the module docstring)
MAX_BASES = 8  # bases of bases: a preset derives from one or two; a longer chain is a mistake
KEYS = (*TEXT, "devices", "links", "parallelism", "placement", "schedule")
OPTIONAL = ("description", "links")
MEANINGS = {  # what a missing required field is, for its error (`check_header`)
    "name": "the system's name",
    "source": "a citation string (where the system's numbers come from: a paper, a datasheet, an artifact)",
    "devices": "a mapping of device names to devices, each with a kind and a count",
    "parallelism": "a mapping with the degrees tp and pp",
    "placement": "a list of rules, each putting ops on a device",
    "schedule": "a mapping with a kind",
}
MAX_NUMBER = 1e18  # the top of the GPU, link and chip loaders' ranges (`errors.Plausible`): products stay finite

DEVICE_KINDS = ("npu", "bank-pim", "gpu", "logic-pim", "memory-pool", "chip", "architecture")
CHANNEL_POLICIES = ("rr", "greedy")
SPEC_CLASSES = {"npu": NPUSpec, "bank-pim": PIMSpec, "logic-pim": LogicPIMSpec}  # kinds whose fields are a spec's
PRESET_KINDS = {"gpu": "a GPU preset", "memory-pool": "a GPU preset", "chip": "a chip preset",
                "architecture": "a library architecture"}
CHIP_EFFICIENCIES = ("matmul_efficiency", "memory_efficiency")  # a chip device's required fractions of its peaks
# kind -> spec-class fields a system spec may not set, and why: no model of a system reads them
UNREAD_FIELDS = {
    "npu": {"element_bytes": "not read: every op streams the workload's word_bytes (archsim.systems.npu); remove "
                             "it and set word_bytes in the workload"},
    "logic-pim": {"area_mm2": "not read: no model or record of a system reads an area (a system's area_um2 is "
                              "NaN); remove it, or keep the number in a comment"},
    "bank-pim": {name: "not read by a system: only the command-level channel (archsim.model.dram) spaces ordinary "
                       "reads by it, where a system's PIM GEMVs take tRRD_S between G_ACTs and tCCD_L between COMPs "
                       "(archsim.systems.pim); remove it"
                 for name in ("tCCD_S_cycles", "tRTP_cycles", "tRRD_L_cycles")},
}
# kind -> spec-class fields a system spec may give only at one value, (that value, why): the system's model times
# no other
FIXED_FIELDS = {
    "bank-pim": {"banks_per_activation": (4, "a G_ACT opens one bank group's 4 banks (pim.md §1.3), and a system's "
                                             "PIM GEMVs space every G_ACT of a tile tRRD_S apart "
                                             "(archsim.systems.pim.tile_cycles), right only where consecutive "
                                             "G_ACTs open different bank groups: fewer banks put two in one group "
                                             "(tRRD_L apart), more open several groups in one command, and neither "
                                             "is timed")},
}
ENERGY_PRICES = ("hbm_pj_per_bit", "pj_per_flop", "sram_pj_per_byte", "static_w")  # required by per-action
ENERGY_FIELDS = ("energy_model", *ENERGY_PRICES)  # a gpu's, memory pool's or chip's energy model (`_energy`)
GPU_OPTIONAL = ("attention_kernel", "timing", "memory_utilization", *ENERGY_FIELDS)  # a gpu device's optional fields

# the link roles a model reads (`system_types.TP_LINK`, `system_checks.ATTENTION_POOL_LINK`)
LINK_ROLES = (TP_LINK, EP_LINK, ATTENTION_LINK, ATTENTION_POOL_LINK, CP_LINK)
PARALLELISM_KEYS = ("tp", "pp", "ep", "attention_pool", "cp", "by_workload")
DEVICE_FILE_FIELDS = ("preset", "mapping")  # a device's fields that may name a file (a link may too: `names_file`)


def names_file(field: str) -> bool:
    """Whether the dotted path `field` of a system spec is one that may name a file, relative to the spec that
    writes it: a device's `preset` or `mapping` (`devices.gpu.preset`) or a link (`links.tp`)."""
    keys = field.split(".")
    return (keys[0] == "devices" and len(keys) == 3 and keys[2] in DEVICE_FILE_FIELDS) or \
        (keys[0] == "links" and len(keys) == 2)
RULE_KEYS = ("op", "phase", "op_per_byte_below", "device")
CROSSOVER = "crossover"  # op_per_byte_below: the Op/B where the rule's device's roofline meets the weight holder's
FASTER = "faster"  # op_per_byte_below: where the models time the op faster on the rule's device than on the holder
ROOFLINE_KINDS = ("gpu", "memory-pool", "logic-pim")  # kinds whose models give a roofline (peak, operand bandwidth)
SCHEDULE_KINDS = ("blocked", "overlapped", "sub-batch-interleaving", "co-processing", "ping-pong", "staggered",
                  "context-parallel")
SCHEDULE_CHOICES = {"attention_sync": ("per-channel", "barrier"), "layer_time": ("pipeline", "steady-state"),
                    "split": ("arrival", "longest-first"), "lm_head": ("timed", "left-out"),
                    "scheme": CONTEXT_PARALLEL_SCHEMES}
MODELLED_SUB_BATCHES = 2  # sub-batch-interleaving: NeuPIMs' two (system_model.layer_phases); others are refused
SCHEDULE_KEYS = {  # kind -> (required keys, optional keys)
    "blocked": ((), ("attention_sync", "expert_tp", "lm_head")),
    "overlapped": ((), ("lm_head",)),
    "sub-batch-interleaving": (("sub_batches",), ("min_batch", "only_when_faster", "resident_weight_bytes",
                                                    "layer_time", "split", "lm_head")),
    "co-processing": ((), ("expert_coprocessing", "expert_tp", "zipf_skew", "lm_head")),
    "ping-pong": ((), ("divide_and_conquer", "lm_head")),
    "staggered": (("micro_batches",), ("divide_and_conquer", "lm_head")),
    "context-parallel": (("scheme",), ("ulysses", "lm_head")),
}
ACTION_PJ = ("hbm_pj_per_bit", "pj_per_flop", "sram_pj_per_byte")  # per-action energy prices, in pJ
ACTION_PJ_MAX = 1000.0  # pJ per bit, FLOP or byte: 50x the costliest off-chip bit (DDR, ~20 pJ); beyond, another unit
STATIC_W_MAX = 25_000.0  # W: a chip preset without a power figure; a wafer-scale system draws about 23 kW in all


def system_from_dict(data: Any, source: str = "<python>", bases: tuple[str, ...] = ()) -> System:
    """Validate a parsed system spec; `source` names the file in errors. A spec with `base` is laid over its base
    first (the module docstring); `bases` are the files of the specs that derive from this one, for cycles."""
    if isinstance(data, Mapping) and BASE in data:
        if "name" not in data:
            raise SpecError(source, "name", "missing: a spec with a base names itself")
        over = {k: v for k, v in data.items() if k != BASE}
        base = _base(data[BASE], source, bases, over)
        _unpriced(base, _device_changes(over), source)  # a device given another preset leaves the base's price
        try:
            return _validated(laid_over(base, over), source)
        except SpecError as error:
            raise _from_base(error, data[BASE], base, over, source) from None
    return _validated(data, source)


def _validated(data: Any, source: str) -> System:
    """A system spec's data, a base's merged in, validated (`system_from_dict`)."""
    check_header(data, KEYS, OPTIONAL, TEXT, source, meanings=MEANINGS)
    devices = {name: _device(name, value, source) for name, value in _named(data["devices"], source, "devices")}
    if not devices:
        raise SpecError(source, "devices", "expected at least one device")
    devices = _logic_pim_stacks(devices, data["devices"], source)
    links = {name: _link(value, source, f"links.{name}") for name, value in _named(data.get("links", {}), source,
                                                                                      "links")}
    for name in links:
        if name not in LINK_ROLES:
            raise SpecError(source, f"links.{name}", f"unknown link role (expected one of {', '.join(LINK_ROLES)})")
    system = System(
        name=data["name"],
        description=data.get("description", ""),
        source=source,
        citation=data["source"],
        devices=devices,
        links=links,
        parallelism=_parallelism(data["parallelism"], source),
        placement=_placement(data["placement"], devices, source),
        schedule=_schedule(data["schedule"], source),
        data=copy.deepcopy(data),
    )
    system, unresolved = _with_crossovers(system)
    check_system(system)  # first: what the spec makes impossible at any threshold (a logic-pim holding the weights)
    if unresolved is not None:
        raise unresolved
    return system


PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")  # a YAML path's keys and list indices: placement[0].device


def _from_base(error: SpecError, named: Any, base: Mapping[str, Any], over: Mapping[str, Any],
               source: str) -> SpecError:
    """`error`, raised validating the spec at `source` laid over its base (`named` as the spec writes it, `base`
    its data, `over` the spec's own keys), with a note where its path holds a value this file does not write: it
    is the base's (which was validated on its own, so it is refused beside this file's changes, as neupims'
    `min_batch` under a derived `kind: blocked`), and how to drop it (`null` removes a base's key; a list is
    replaced whole). Any other error, and one of another type (a limit, an unrunnable op), is returned as it is."""
    parts = PATH_PART.findall(error.where)
    depth = _inherited_from(parts, base, over)
    if error.source != source or depth is None or type(error) not in (SpecError, UnknownField):
        return error
    if any(index for _, index in parts[depth:]):
        listed = error.where[:error.where.index("[")]
        advice = f"give {listed} here to replace the base's (a list is replaced whole)"
    else:
        keys = [key for key, _ in parts]
        parent = ".".join(keys[:-1])
        drop = f"`{keys[-1]}: null`" + (f" under {parent}" if parent else "")
        removed = None if type(error) is UnknownField else _removal_error(keys, base, over, source)
        advice = (f"remove it here with {drop}" if type(error) is UnknownField else
                  f"set it here, or remove it with {drop}" if removed is None else
                  f"set it here (removed, it is refused too: {removed.message})")
        others = [key for key in _kept_keys(keys[:-1], base, over) if key != keys[-1]]
        if type(error) is UnknownField and parent and others:
            advice += f" (the base's {parent} also gives {', '.join(others)})"
    return type(error)(error.source, error.where, f"{error.message}; it comes from base {named}, not this file: "
                                                  f"{advice}")


def _removal_error(keys: list[str], base: Mapping[str, Any], over: Mapping[str, Any],
                   source: str) -> SpecError | None:
    """The error at the YAML path `keys` (a key the merged spec holds from its `base`) once the derived spec's own
    keys `over` remove it with `null`, None where there is none: `null` is advice (`_from_base`) only then. A
    required key's removal is refused as missing (a device's `count`), an optional one's where its default is
    refused as the base's value was (a Logic-PIM stack's bandwidth beside a faster xPU)."""
    removal: Any = None
    for key in reversed(keys):
        removal = {key: removal}
    try:
        _validated(laid_over(laid_over(base, over), removal), source)
    except SpecError as error:
        return error if error.where == ".".join(keys) else None
    return None


def _inherited_from(parts: list[tuple[str, str]], base: Any, over: Any) -> int | None:
    """The depth in a YAML path (`PATH_PART`'s (key, index) pairs) from which the merged spec holds the base's value
    (the first key the derived spec's own keys `over` do not write, the base's do), None where it holds the derived
    spec's (or neither's)."""
    for depth, (key, index) in enumerate(parts):
        if index or not isinstance(over, Mapping) or not isinstance(base, Mapping) or key not in base:
            return None
        if key not in over:
            return depth
        if not isinstance(over[key], Mapping):
            return None  # the derived spec writes the value: a list or a scalar replaces the base's
        base, over = base[key], over[key]
    return None  # a mapping both write: the error is about it as a whole


def _kept_keys(path: list[str], base: Any, over: Any) -> list[str]:
    """The keys of the base's mapping at `path` that the derived spec's own keys `over` do not write, sorted."""
    for key in path:
        base = base.get(key) if isinstance(base, Mapping) else None
        over = over.get(key) if isinstance(over, Mapping) else None
    if not isinstance(base, Mapping):
        return []
    return sorted(str(key) for key in base if not (isinstance(over, Mapping) and key in over))


def _with_crossovers(system: System) -> tuple[System, SpecError | None]:
    """`system` with the threshold of each rule whose `op_per_byte_below` is `crossover` (held at infinity by
    `_rule` until now) set to the Op/B where the roofline of the rule's device meets that of the device holding the
    weights (`system_checks.roofline_crossover`), each read off its cost model (`peak_flops_per_s`,
    `operand_bytes_per_s`), so a spec that changes either device's peaks, or derives from one that does, moves the
    threshold with them; and the error refusing it where a device has no roofline (`ROOFLINE_KINDS`) or no Op/B
    separates them (None where all resolve), which the caller raises after `check_system`: the system is then
    returned with its thresholds unresolved, at infinity (the spec is refused either way; they can only make
    `check_system` refuse it first)."""
    crossing = [i for i, rule in enumerate(system.data["placement"]) if rule.get("op_per_byte_below") == CROSSOVER]
    if not crossing:
        return system, None
    holder = weight_holder(system)
    for i in crossing:
        for named in (system.devices[system.placement[i].device], holder):
            if named.kind not in ROOFLINE_KINDS:
                return system, SpecError(system.source, f"placement[{i}].op_per_byte_below",
                                         f"{CROSSOVER} reads the rooflines of the rule's device and of the device "
                                         f"holding the weights ({holder.name}), which {', '.join(ROOFLINE_KINDS)} "
                                         f"devices have; {named.kind} {named.name} has none: give the threshold as a "
                                         "number")
    from archsim.systems.devices import device_models  # the cost models, which import this layer's checks

    models, placement = device_models(system), list(system.placement)
    for i in crossing:
        model, held = models[placement[i].device], models[holder.name]
        below = roofline_crossover(model.peak_flops_per_s, model.operand_bytes_per_s, held.peak_flops_per_s,
                                   held.operand_bytes_per_s)
        if below is None:
            return system, SpecError(system.source, f"placement[{i}].op_per_byte_below",
                                     f"{CROSSOVER}: no Op/B below which {model.name} ({_roofline(model)}) is faster "
                                     f"than {held.name} holding the weights ({_roofline(held)}) and above which "
                                     "slower: it needs more bandwidth and less peak; give the threshold as a number, "
                                     "or drop it")
        placement[i] = dataclasses.replace(placement[i], op_per_byte_below=below)
    return dataclasses.replace(system, placement=tuple(placement)), None


def _roofline(model: Any) -> str:
    return f"{model.peak_flops_per_s / 1e12:.4g} TFLOP/s, {model.operand_bytes_per_s / 1e12:.4g} TB/s"


def with_fields(system: System, changes: Mapping[str, Any]) -> System:
    """`system` with the fields at these dotted paths (`devices.pim.channels`, `schedule.min_batch`,
    `links.tp.bytes_per_s_per_direction`, `parallelism.by_workload.gpt3-7b.tp`) set, validated again as a spec: a
    bad value is a SpecError naming the system file and the path. Options given by `with_options` (--tp, --pp)
    stay; the fields are the spec's (`system.data`), so a System changed with `dataclasses.replace` is not. A
    path's parent must exist in the spec; its last key may be new (a device field the file left at its default). A
    link the spec names by preset (`links.tp: nvlink4-h100`) is written inline, the preset's fields, before one of
    its fields is set (`_inline_link`); it keeps the preset's name. A device whose `preset` the changes set to
    another preset, and whose `price_per_hour` they do not set, has no price (`_unpriced`): the spec's was written
    for its own preset, so a cost per token is then unknown (NaN), never the old device's."""
    if not isinstance(changes, Mapping):
        raise SpecError("<python>", "changes", f"expected a mapping of dotted path -> value, got {changes!r}")
    data = copy.deepcopy(dict(system.data))
    _unpriced(data, changes, system.source)
    for path, value in changes.items():
        keys = path.split(".") if isinstance(path, str) else []
        if len(keys) == 3 and keys[0] == "links" and isinstance(data.get("links"), dict):
            _inline_link(data["links"], keys[1], system)
        node: Any = data
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node, Mapping) or key not in node:
                raise UnknownField(system.source, path,
                                   f"not a field of this system: it has no {'.'.join(keys[:i + 1])}")
            node = node[key]
        if not keys or not all(keys) or not isinstance(node, dict):
            raise UnknownField(system.source, str(path), "expected a dotted path to a field of the system spec")
        node[keys[-1]] = value
    return dataclasses.replace(system_from_dict(data, system.source), options=system.options)


def repriced_devices(data: Mapping[str, Any], changes: Mapping[str, Any], source: str) -> list[str]:
    """The devices of the spec `data` (read from `source`) whose `preset` `changes` set to another preset without
    setting their `price_per_hour`, which the spec gives: their price is then unknown (`with_fields`). A preset is
    another where it names another file (`_preset_named`: the spec's own file by another path is not)."""
    devices = data.get("devices") if isinstance(data.get("devices"), Mapping) else {}
    return [name for name, device in devices.items()
            if isinstance(device, Mapping) and "price_per_hour" in device
            and f"devices.{name}.preset" in changes
            and _preset_named(changes[f"devices.{name}.preset"], source) != _preset_named(device.get("preset"), source)
            and f"devices.{name}.price_per_hour" not in changes]


def _preset_named(value: Any, source: str) -> Any:
    """What a device's `preset` written in the spec at `source` names: a path's file, resolved; a library name, or
    any other value, as written."""
    return _file_of(value, source) if isinstance(value, str) and is_spec_path(value) else value


def _device_changes(over: Mapping[str, Any]) -> dict[str, Any]:
    """The device presets and prices a derived spec's own keys `over` write, as `with_fields`' dotted changes: a
    device it gives another preset without a price has no price (`_unpriced`), as a sweep's or `with_fields`' has."""
    devices = over.get("devices") if isinstance(over.get("devices"), Mapping) else {}
    return {f"devices.{name}.{key}": device[key] for name, device in devices.items() if isinstance(device, Mapping)
            for key in ("preset", "price_per_hour") if key in device}


def _unpriced(data: dict[str, Any], changes: Mapping[str, Any], source: str) -> None:
    """Drop the price of each device `repriced_devices` names, in place."""
    for name in repriced_devices(data, changes, source):
        del data["devices"][name]["price_per_hour"]


def _inline_link(links: dict[str, Any], role: str, system: System) -> None:
    """Replace the link preset named at `links[role]` (if that is a name) by the fields of `system`'s validated link
    of that role written inline (`link_to_dict`), so that `with_fields` can set one of them."""
    if isinstance(links.get(role), str) and role in system.links:
        links[role] = link_to_dict(system.links[role])


def _base(value: Any, source: str, bases: tuple[str, ...], over: Mapping[str, Any]) -> dict[str, Any]:
    """The data of the validated system a spec at `source` derives from, its paths moved to `source` (`_moved`);
    `over` is the derived spec's own keys."""
    path, chain, data = library.base_file("system presets", value, source, bases, PRESETS_PACKAGE, MAX_BASES)
    base = system_from_dict(parse_yaml(data, path), str(path), chain)
    return _moved(base.data, value if is_spec_path(value) else str(path.absolute()), source, over)


def _moved(data: Mapping[str, Any], written: str, source: str, over: Mapping[str, Any]) -> dict[str, Any]:
    """A base's validated `data` as the derived spec at `source`, which names the base's file `written`, reads it:
    each relative path in it (a device's `preset` or `mapping`, a link, a `by_workload` key), relative to the
    base's folder, is put as the derived spec would write it (`written`'s folder, then the path), so it still
    names the file beside the base; a path the derived spec's own keys (`over`) write stays relative to its file.
    A `by_workload` key naming the same file as one of `over`'s takes `over`'s text, so that entry is laid over
    the base's."""
    moved = functools.partial(moved_beside, written=written)
    data = copy.deepcopy(dict(data))
    for device in data["devices"].values():
        for key in DEVICE_FILE_FIELDS:
            if key in device:
                device[key] = moved(device[key])
    for role, link in data.get("links", {}).items():
        data["links"][role] = moved(link)
    parallelism = over.get("parallelism")
    keys = parallelism.get("by_workload") if isinstance(parallelism, Mapping) else None
    theirs = {_file_of(key, source): key for key in (keys if isinstance(keys, Mapping) else ())
              if isinstance(key, str) and is_spec_path(key)}
    if "by_workload" in data["parallelism"]:
        data["parallelism"]["by_workload"] = {
            theirs.get(_file_of(moved(key), source), moved(key)) if is_spec_path(key) else key: entry
            for key, entry in data["parallelism"]["by_workload"].items()}
    return data


def _file_of(path: str, source: str) -> Path:
    """The file a spec path written in the spec at `source` names."""
    return Path(spec_beside(path, source)).resolve()


def load_system(name_or_path: str | Path) -> System:
    """A preset by name (`neupims`, see `system_names()`) or a YAML file by path."""
    return library.load_preset("system presets", name_or_path, PRESETS_PACKAGE, system_from_dict)


def system_names() -> list[str]:
    """The system presets, by name."""
    return library.names("system presets", PRESETS_PACKAGE)


def _named(value: Any, source: str, where: str) -> list[tuple[str, Any]]:
    if not isinstance(value, Mapping):
        raise SpecError(source, where, f"expected a mapping of names to entries, got {kind_of(value)}")
    for name in value:
        if not isinstance(name, str) or not name:
            raise SpecError(source, where, f"expected names as non-empty strings, got {name!r}")
    return list(value.items())


def _device(name: str, data: Any, source: str) -> Device:
    where = f"devices.{name}"
    if not isinstance(data, Mapping):
        raise SpecError(source, where, f"expected a mapping with kind and count, got {kind_of(data)}")
    if "kind" not in data:
        raise SpecError(source, f"{where}.kind", f"missing (one of {', '.join(DEVICE_KINDS)})")
    kind = data["kind"]
    if kind not in DEVICE_KINDS:
        raise SpecError(source, f"{where}.kind", f"expected one of {', '.join(DEVICE_KINDS)}, got {kind!r}")
    fields = _fields(kind)
    refuse_unread(data, UNREAD_FIELDS.get(kind, {}), source, where)
    gpu_like = kind in GPU_KINDS
    check_keys(data, ("kind", "count", "price_per_hour", *fields, *(GPU_OPTIONAL if gpu_like else ()),
                      *((*CHIP_EFFICIENCIES, *ENERGY_FIELDS) if kind == "chip" else ())), source, where)
    if "count" not in data:
        raise SpecError(source, f"{where}.count", "missing: the number of such devices per node")
    count = _whole(data["count"], source, f"{where}.count", "a device count per node")
    price = (None if "price_per_hour" not in data else
             _positive(data["price_per_hour"], source, f"{where}.price_per_hour", "a price in USD per device-hour"))
    if kind in SPEC_CLASSES:
        spec = _dataclass_spec(kind, data, source, where)
        _refuse_other_values(spec, FIXED_FIELDS.get(kind, {}), source, where)
        return Device(name, kind, count, spec,
                      channel_policy=_channel_policy(data, source, where) if kind == "bank-pim" else None,
                      price_per_hour=price)
    if kind in PRESET_KINDS:
        for key in fields:
            if key not in data:
                raise SpecError(source, f"{where}.{key}", f"missing: a {kind} device names {PRESET_KINDS[kind]}"
                                                          + (" and a library mapping" if key == "mapping" else ""))
        spec = _preset(kind, data["preset"], source, f"{where}.preset")
        mapping = _preset("mapping", data["mapping"], source, f"{where}.mapping") if "mapping" in fields else None
        gpu = _gpu_fields(data, spec, source, where) if gpu_like else {}
        chip = _chip_fields(data, spec, source, where) if kind == "chip" else {}
        return Device(name, kind, count, spec, mapping, price_per_hour=price, **gpu, **chip)
    return Device(name, kind, count, None, price_per_hour=price)


def _logic_pim_stacks(devices: dict[str, Device], data: Mapping, source: str) -> dict[str, Device]:
    """`devices` with the capacity of each logic-pim that leaves `capacity_bytes` unset beside gpu or chip devices
    (`system_checks.hbm_devices`): its stacks are their HBM (Duplex's xPU, pim.md §2.4), so each holds its capacity
    (a gpu's `dram_bytes`, a chip's `memory_bytes`) over `count` stacks (the H100's 80 GiB over 5 is Duplex's 16 GiB
    per stack, `LogicPIMSpec`'s default, kept beside neither). Beside devices whose HBM differs a stack's capacity
    is not known and must be given. A stack's bandwidth is not derived: `external_bytes_per_s` is the stack's own
    (an HBM3 stack's unset), and count x it must carry the HBM's bandwidth (`system_checks`)."""
    hbms = hbm_devices(devices.values())
    for name, device in devices.items():
        if device.kind != "logic-pim" or "capacity_bytes" in data[name] or not hbms:
            continue
        sizes = {hbm.name: hbm_bytes(hbm) for hbm in hbms}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{hbm} {size:g} B" for hbm, size in sizes.items())
            raise SpecError(source, f"devices.{name}.capacity_bytes",
                            f"missing: beside gpu or chip devices of different DRAM ({listed}) a stack's capacity is "
                            "not known from theirs: give it")
        per_stack = next(iter(sizes.values())) / device.count
        devices[name] = dataclasses.replace(device, spec=dataclasses.replace(device.spec, capacity_bytes=per_stack))
    return devices


def _fields(kind: str) -> tuple[str, ...]:
    if kind in SPEC_CLASSES:
        names = tuple(f.name for f in dataclasses.fields(SPEC_CLASSES[kind]))
        return (*names, "channel_policy") if kind == "bank-pim" else names
    if kind == "architecture":
        return ("preset", "mapping")
    return ("preset",) if kind in PRESET_KINDS else ()


def _refuse_other_unit(price_pj: float | None, source: str, where: str) -> None:
    """A per-action price no device pays (above `ACTION_PJ_MAX`): written in another unit (fJ for pJ, J for pJ)."""
    if price_pj is not None and price_pj > ACTION_PJ_MAX:
        raise SpecError(source, where, f"expected at most {ACTION_PJ_MAX:g} pJ (a device's are 0.1-20), got "
                                       f"{price_pj:g}: a value in fJ?")


def _dataclass_spec(kind: str, data: Mapping, source: str, where: str) -> Any:
    """A spec of `SPEC_CLASSES` from the device's fields: whole numbers >= 1 for int fields, positive finite numbers
    for float fields (>= 0 where the field's metadata says `zero`), text for str fields (whose choices the spec
    class checks); a field with no default is required."""
    values = {}
    for field in dataclasses.fields(SPEC_CLASSES[kind]):
        if field.name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise SpecError(source, f"{where}.{field.name}", f"missing: a {kind} device has no default for it")
            continue
        at, value = f"{where}.{field.name}", data[field.name]
        if field.type == "int":
            values[field.name] = _whole(value, source, at, f"a whole number for {field.name}")
        elif field.type in ("float", "float | None"):  # None: a default the spec class derives (PIMSpec's capacity)
            zero = field.metadata.get("zero", False)  # a float a spec may set to 0 (e.g. no refresh)
            values[field.name] = _number(value, source, at, f"a {'' if zero else 'positive '}number for {field.name}",
                                         zero)
            if "pj" in field.name:  # a per-action price (op_energy_pj, *_pj_per_bit, pj_per_flop), as a gpu's
                _refuse_other_unit(values[field.name], source, at)
        elif not isinstance(value, str):
            raise SpecError(source, at, f"expected a string, got {kind_of(value)}")
        else:
            values[field.name] = value
    try:
        return SPEC_CLASSES[kind](**values)
    except SpecError as error:  # a value the spec class refuses, blamed on e.g. "NPUSpec.fold_timing"
        field = error.where.rpartition(".")[2]
        raise SpecError(source, f"{where}.{field}", error.message) from None


def _refuse_other_values(spec: Any, fixed: Mapping[str, tuple[Any, str]], source: str, where: str) -> None:
    """Refuse the first field of `spec` that `fixed` names (field -> (the one value a system reads, why)) holding
    another value, naming the field, the value expected and why."""
    for name, (expected, why) in fixed.items():
        value = getattr(spec, name)
        if value != expected:
            raise SpecError(source, f"{where}.{name}", f"expected {expected}: {why}; got {value}")


def _gpu_fields(data: Mapping, gpu: Any, source: str, where: str) -> dict[str, Any]:
    """A gpu device's `attention_kernel` (which `_placement` requires where attention is placed on the device),
    and its optional timing, memory utilization and energy model (`_energy`), as `Device` fields."""
    from archsim.systems.gpu_device import CALIBRATED, TIMINGS, attention_kernel_problem

    values: dict[str, Any] = {}
    if "timing" in data:
        if data["timing"] not in TIMINGS:
            raise SpecError(source, f"{where}.timing", f"expected one of {', '.join(TIMINGS)}, got {data['timing']!r}")
        values["timing"] = data["timing"]
    if "memory_utilization" in data:
        share = _positive(data["memory_utilization"], source, f"{where}.memory_utilization",
                          "the share of the device's memory the serving engine allocates, in (0, 1]")
        if share > 1:
            raise SpecError(source, f"{where}.memory_utilization", f"expected a share in (0, 1], got {share}")
        values["memory_utilization"] = share
    if "attention_kernel" in data:
        problem = attention_kernel_problem(data["attention_kernel"], gpu, decode_only=data["kind"] == "memory-pool")
        if problem:
            raise SpecError(source, f"{where}.attention_kernel", problem)
        values["attention_kernel"] = data["attention_kernel"]
    energy = _energy(data, gpu.name, gpu.power_w, source, where)
    if energy is None:
        return values
    _refuse_beyond_board_power(energy, gpu, values.get("timing", CALIBRATED), source, where)
    return {**values, "energy": energy}


def _refuse_beyond_board_power(energy: Any, gpu: Any, timing: str, source: str, where: str) -> None:
    """Per-action prices under which the GPU would draw more than its board power (`gpu_device.action_power_w`),
    refused at the price whose term is the largest."""
    from archsim.systems.gpu_device import action_power_w

    most_w = action_power_w(energy, gpu, timing)
    if most_w <= gpu.power_w:
        return
    bare = dataclasses.replace(energy, hbm_pj_per_bit=0.0, pj_per_flop=0.0, sram_pj_per_byte=0.0, static_w=0.0)
    terms = {key: action_power_w(dataclasses.replace(bare, **{key: getattr(energy, key)}), gpu, timing)
             for key in ACTION_PJ}
    key = max(terms, key=terms.get)
    parts = " + ".join(f"{name} {watts:.0f} W" for name, watts in terms.items())
    raise SpecError(source, f"{where}.{key}",
                    f"expected prices under which the GPU draws at most its board power: a GEMM at its {timing} "
                    f"timing's rates draws {most_w:.0f} W (static_w {energy.static_w:g} W + {parts}), above the board "
                    f"power of {gpu.name}, {gpu.power_w:g} W")


def _energy(data: Mapping, name: str, power_w: float | None, source: str, where: str) -> Any:
    """A gpu's, memory pool's or chip's energy model: None for `energy_model: tdp` (the default: its preset's power
    for the time), an `archsim.systems.gpu_device.ActionEnergy` for `per-action`, which requires every price of
    `ENERGY_PRICES`. `name` and `power_w` are the preset's (None: a chip without a power figure), whose power holds
    the static power."""
    from archsim.systems.gpu_device import ENERGY_MODELS, ActionEnergy

    model = data.get("energy_model", "tdp")
    if model not in ENERGY_MODELS:
        raise SpecError(source, f"{where}.energy_model", f"expected one of {', '.join(ENERGY_MODELS)}, got {model!r}")
    given = [key for key in ENERGY_PRICES if key in data]
    if model == "tdp":
        if given:
            raise SpecError(source, f"{where}.{given[0]}", "a price per action is read only with energy_model: "
                                                           "per-action (tdp prices board power for the time)")
        return None
    for key in ENERGY_PRICES:
        if key not in data:
            raise SpecError(source, f"{where}.{key}", "missing: energy_model per-action prices every action and has "
                                                      "no default for it")
    energy = ActionEnergy(
        _positive(data["hbm_pj_per_bit"], source, f"{where}.hbm_pj_per_bit", "DRAM access energy in pJ per bit"),
        _positive(data["pj_per_flop"], source, f"{where}.pj_per_flop", "arithmetic energy in pJ per FLOP"),
        _number(data["sram_pj_per_byte"], source, f"{where}.sram_pj_per_byte",
                "on-chip SRAM energy in pJ per DRAM byte", zero=True),
        _number(data["static_w"], source, f"{where}.static_w",
                "the device's static power in W, drawn busy or idle (0 leaves it out)", zero=True))
    for key in ACTION_PJ:
        _refuse_other_unit(getattr(energy, key), source, f"{where}.{key}")
    if power_w is not None and energy.static_w > power_w:
        raise SpecError(source, f"{where}.static_w", f"expected at most the board power of {name}, "
                                                     f"{power_w:g} W (static power is part of it), got "
                                                     f"{energy.static_w:g}")
    if power_w is None and energy.static_w > STATIC_W_MAX:
        raise SpecError(source, f"{where}.static_w", f"expected at most {STATIC_W_MAX:g} W ({name} has no board "
                                                     "power to bound it, and no accelerator draws more), got "
                                                     f"{energy.static_w:g}: a value in another unit?")
    return energy


def _chip_fields(data: Mapping, chip: Any, source: str, where: str) -> dict[str, Any]:
    """A chip device's required efficiencies, each a fraction in (0, 1], and its energy model (`_energy`)."""
    values: dict[str, Any] = {}
    for key in CHIP_EFFICIENCIES:
        if key not in data:
            raise SpecError(source, f"{where}.{key}", "missing: a chip device's fraction of its peak in (0, 1] "
                                                      "(no default: it depends on the software stack)")
        what = f"a fraction in (0, 1] for {key}"
        values[key] = _positive(data[key], source, f"{where}.{key}", what)
        if values[key] > 1:
            raise SpecError(source, f"{where}.{key}", f"expected {what}, got {data[key]!r}")
    energy = _energy(data, chip.name, chip.power_w, source, where)
    return values if energy is None else {**values, "energy": energy}


def _channel_policy(data: Mapping, source: str, where: str) -> str | None:
    policy = data.get("channel_policy")
    if policy is not None and policy not in CHANNEL_POLICIES:
        raise SpecError(source, f"{where}.channel_policy", f"expected one of {', '.join(CHANNEL_POLICIES)}, "
                                                           f"got {policy!r}")
    return policy


def _preset(kind: str, value: Any, source: str, where: str) -> Any:
    """A GPU preset, chip preset, library architecture or library mapping by name or path (relative to this file),
    its errors blamed on this file."""
    if not isinstance(value, str) or not value:
        raise SpecError(source, where, f"expected a {kind} name or path, got {value!r}")
    loaders = {"gpu": load_gpu_with_host_link, "memory-pool": load_gpu_with_host_link, "chip": load_chip,
               "architecture": library.load_architecture_spec, "mapping": library.load_mapping_spec}
    return loaded_for(source, where, loaders[kind], spec_beside(value, source))


def _link(value: Any, source: str, where: str) -> Link:
    if isinstance(value, Mapping):
        return link_from_dict(value, source, where)
    if not isinstance(value, str) or not value:
        got = "an empty name" if value == "" else kind_of(value)
        raise SpecError(source, where, f"expected a link preset name or a link's fields, got {got}")
    return loaded_for(source, where, load_link, spec_beside(value, source))


def _parallelism(data: Any, source: str) -> Parallelism:
    degrees = _degrees(data, PARALLELISM_KEYS, source, "parallelism")
    entries = _named(data.get("by_workload", {}), source, "parallelism.by_workload")
    by_workload: dict[str, Parallelism] = {}
    for key, value in entries:
        where = f"parallelism.by_workload.{key}"
        name = _workload_key(key, source, where)
        if name in by_workload:
            raise SpecError(source, where, f"a second entry for the workload {name!r}")
        by_workload[name] = Parallelism(**_degrees(value, WORKLOAD_PARALLELISM_KEYS, source, where),
                                        attention_pool=degrees.get("attention_pool"), cp=degrees.get("cp", 1))
    return Parallelism(**degrees, by_workload=MappingProxyType(by_workload))


def _workload_key(key: str, source: str, where: str) -> str:
    """The workload name a `by_workload` key stands for: a library workload's name, or a workload file's path
    (relative to the spec's folder; anything with a `/` or a `.yaml` suffix) for the name inside it. A name of no
    library workload is refused: a misspelt entry would otherwise leave its workload on the top-level degrees."""
    if is_spec_path(key):
        return loaded_for(source, where, library.load_workload_spec, beside(key, source)).name
    known = library.names("workloads")
    if key not in known:
        raise SpecError(source, where, f"not a library workload (known: {', '.join(known)}); key a workload of your "
                                       "own by its file's path")
    return key


def _degrees(data: Any, keys: tuple[str, ...], source: str, where: str) -> dict[str, int]:
    """The parallel degrees of a `parallelism` mapping or one of its by_workload entries: tp and pp required."""
    _entry(data, keys, ("tp", "pp"), source, where, "missing (1 for none)")
    return {key: _whole(value, source, f"{where}.{key}", f"a parallel degree ({key})")
            for key, value in data.items() if key != "by_workload"}


def _entry(data: Any, keys: tuple[str, ...], required: tuple[str, ...], source: str, where: str,
           missing: str) -> None:
    """Check that the entry at `where` is a mapping of only `keys` holding every `required` one (`missing` says
    what a missing one means)."""
    if not isinstance(data, Mapping):
        raise SpecError(source, where, f"expected a mapping with {', '.join(keys)}, got {kind_of(data)}")
    check_keys(data, keys, source, where)
    for key in required:
        if key not in data:
            raise SpecError(source, f"{where}.{key}", missing)


def _placement(data: Any, devices: Mapping[str, Device], source: str) -> tuple[PlacementRule, ...]:
    if not isinstance(data, list) or not data:
        raise SpecError(source, "placement", f"expected a list of rules ({', '.join(RULE_KEYS)}), got "
                                             f"{kind_of(data) if data != [] else 'an empty list'}")
    rules = tuple(_rule(value, devices, source, f"placement[{i}]") for i, value in enumerate(data))
    for op in OP_KINDS:
        for phase in PHASES:
            if not any(r.op_per_byte_below is None and r.matches(op, phase, 0.0) for r in rules):
                raise SpecError(source, "placement", f"no rule places {op} in {phase} at every Op/B: add a rule "
                                                     "for it without op_per_byte_below")
    for i, rule in enumerate(rules):
        device = devices[rule.device]
        if "attention" in rule.ops and device.kind == "bank-pim" and device.channel_policy is None:
            raise SpecError(source, f"devices.{device.name}.channel_policy",
                            f"missing: placement[{i}] puts attention on it, and requests are pinned to its "
                            f"channels by a policy ({', '.join(CHANNEL_POLICIES)})")
        if "attention" in rule.ops and device.kind in GPU_KINDS and device.attention_kernel is None:
            raise SpecError(source, f"devices.{device.name}.attention_kernel",
                            f"missing: placement[{i}] puts attention on it, and its time is the kernel's, which has no "
                            f"default (kernels' times differ several-fold); {_kernels(device)}")
    pinned = {rule.device for rule in rules if "attention" in rule.ops}
    for device in devices.values():
        if device.channel_policy is not None and device.name not in pinned:
            raise SpecError(source, f"devices.{device.name}.channel_policy", "read only where a placement rule puts "
                                                                             "attention on the device, and none "
                                                                             "does: remove it")
    return rules


def _kernels(device: Device) -> str:
    """The attention kernels a gpu or memory-pool device can run, as an error's expectation."""
    from archsim.systems.gpu_device import kernels_expected

    return kernels_expected(device.spec, decode_only=device.kind == "memory-pool")


def _rule(data: Any, devices: Mapping[str, Device], source: str, where: str) -> PlacementRule:
    _entry(data, RULE_KEYS, ("op", "device"), source, where, "missing")
    ops = data["op"] if isinstance(data["op"], list) else [data["op"]]
    for i, op in enumerate(ops):
        if op not in OP_KINDS:
            at = f"{where}.op[{i}]" if isinstance(data["op"], list) else f"{where}.op"
            raise SpecError(source, at, f"expected an op kind ({', '.join(OP_KINDS)}), got {op!r}")
    if not ops:
        raise SpecError(source, f"{where}.op", "expected at least one op kind")
    if not isinstance(data["device"], str) or data["device"] not in devices:
        raise SpecError(source, f"{where}.device", f"expected a device of this system ({', '.join(devices)}), "
                                                   f"got {data['device']!r}")
    phase = data.get("phase")
    if phase is not None and phase not in PHASES:
        raise SpecError(source, f"{where}.phase", f"expected one of {', '.join(PHASES)}, got {phase!r}")
    below = data.get("op_per_byte_below")
    if below == CROSSOVER:  # resolved once the devices' models are built (`_with_crossovers`)
        return PlacementRule(tuple(ops), data["device"], phase, math.inf)
    if below == FASTER:  # decided op by op as the models time it (`system_model.placed_device`)
        return PlacementRule(tuple(ops), data["device"], phase, math.inf, faster=True)
    return PlacementRule(tuple(ops), data["device"], phase,
                         None if below is None else _positive(below, source, f"{where}.op_per_byte_below",
                                                              "an Op/B threshold in FLOPs per byte, "
                                                              f"{CROSSOVER} or {FASTER}"))


def _schedule(data: Any, source: str) -> Schedule:
    if not isinstance(data, Mapping) or "kind" not in data:
        raise SpecError(source, "schedule", f"expected a mapping with a kind ({', '.join(SCHEDULE_KINDS)}), "
                                            f"got {kind_of(data) if not isinstance(data, Mapping) else 'no kind'}")
    kind = data["kind"]
    if kind not in SCHEDULE_KINDS:
        raise SpecError(source, "schedule.kind", f"expected one of {', '.join(SCHEDULE_KINDS)}, got {kind!r}")
    required, optional = SCHEDULE_KEYS[kind]
    check_keys(data, ("kind", *required, *optional), source, "schedule")
    for key in required:
        if key not in data:
            raise SpecError(source, f"schedule.{key}", f"missing: a {kind} schedule needs it")
    values: dict[str, Any] = {}
    for key in ("sub_batches", "micro_batches"):
        if key in data:
            values[key] = _whole(data[key], source, f"schedule.{key}", f"a number of {key.replace('_', '-')}")
    if values.get("sub_batches", MODELLED_SUB_BATCHES) < 2:  # 1 micro-batch is offloading without pipelining
        raise SpecError(source, "schedule.sub_batches", f"expected at least 2 (1 is a blocked schedule), "
                                                        f"got {data['sub_batches']!r}")
    if values.get("sub_batches", MODELLED_SUB_BATCHES) != MODELLED_SUB_BATCHES:
        raise SpecError(source, "schedule.sub_batches", f"expected {MODELLED_SUB_BATCHES}: sub-batch interleaving is "
                                                        "modelled as NeuPIMs' two sub-batches (Algorithm 3 halves "
                                                        f"each channel, stages A..F), got {data['sub_batches']!r}")
    if "min_batch" in data:
        values["min_batch"] = _whole(data["min_batch"], source, "schedule.min_batch", "a batch size")
    if "resident_weight_bytes" in data:
        values["resident_weight_bytes"] = _number(data["resident_weight_bytes"], source,
                                                  "schedule.resident_weight_bytes", "a byte count", zero=True)
    for key in ("only_when_faster", "expert_coprocessing", "expert_tp", "divide_and_conquer"):
        if key in data:
            if not isinstance(data[key], bool):
                raise SpecError(source, f"schedule.{key}", f"expected true or false, got {data[key]!r}")
            values[key] = data[key]
    if "zipf_skew" in data:
        values["zipf_skew"] = _number(data["zipf_skew"], source, "schedule.zipf_skew", "a Zipf exponent", zero=True)
    for key, choices in SCHEDULE_CHOICES.items():
        if key in data:
            if data[key] not in choices:
                raise SpecError(source, f"schedule.{key}", f"expected one of {', '.join(choices)}, got {data[key]!r}")
            values[key] = data[key]
    if "ulysses" in data:
        values["ulysses"] = _whole(data["ulysses"], source, "schedule.ulysses", "a Ulysses degree")
        if values.get("scheme") != "usp":
            raise SpecError(source, "schedule.ulysses", f"read only by scheme usp (the Ulysses x ring hybrid), got "
                                                        f"scheme {data.get('scheme')!r}: remove it")
    if values.get("scheme") == "usp" and "ulysses" not in values:
        raise SpecError(source, "schedule.ulysses", "missing: usp runs Ulysses inside groups of this many devices "
                                                    "and a ring across the groups")
    return Schedule(kind, **values)


def _whole(value: Any, source: str, where: str, what: str) -> int:
    """A whole number from 1 to MAX_COUNT (YAML `4` or `4.0`)."""
    number = _number(value, source, where, what, zero=False)
    if number != int(number) or number > MAX_COUNT:
        raise SpecError(source, where, f"expected {what}: a whole number from 1 to {MAX_COUNT}, got {value!r}")
    return int(number)


def _positive(value: Any, source: str, where: str, what: str) -> float:
    return _number(value, source, where, what, zero=False)


def _number(value: Any, source: str, where: str, what: str, zero: bool) -> float:
    if isinstance(value, str):
        raise SpecError(source, where, f"expected {what}, got the text {value!r}{text_number_hint(value)}")
    number = finite_number(value, source, where)
    if number < 0 or (number == 0 and not zero) or not math.isfinite(number) or number > MAX_NUMBER:
        bound = "a number >= 0" if zero else "a positive number"
        raise SpecError(source, where, f"expected {what} ({bound} up to {MAX_NUMBER:g}), got {value!r}")
    return number + 0.0  # -0.0 reads as 0.0
