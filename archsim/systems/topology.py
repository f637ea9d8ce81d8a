"""A cluster's network as nested levels of links (ASTRA-sim's per-dimension topology), and which link a group of
devices talks over.

A topology is a list of levels, innermost first. Level i joins `devices` groups of level i-1 (single devices at
level 0) over its `link` (`archsim.systems.links`): e.g. 8 GPUs of a node over NVLink, then nodes over one NIC per
GPU. The outermost level may leave `devices` out: any number of its groups. A topology file has a level at least;
one built from a one-GPU system without a link between nodes has none (`context_parallel.topology_of`): one device,
whose group of one talks over no link (`Topology.group_link`). Devices are numbered rank-major (device r is in node
r // 8 of an 8-GPU node), as launchers number ranks. File format (presets in
`archsim/systems/topology_presets/`)::

    name: dgx-a100
    description: one line
    source: where the numbers come from
    gpu: a100-80gb-sxm4                    # the devices: a GPU preset name or file (archsim.gpu.load)
    levels:
      - {link: nvlink3-a100, devices: 8}   # a link preset name, or a link's fields inline
      - {link: ib-hdr-200g}                # nodes; no `devices`: as many as a run asks for

Instead of `gpu`, a topology may hold arrays run through the analytical model (`ArrayDevice`)::

    device: {mapping: fusemax-gqa-noncausal, causal_mapping: fusemax-gqa}   # architecture: the mappings' own

`mapping` maps a full (non-causal) attention cascade (its `reference` is `attention`: attention-1pass, one K/V head
per query head, or `attention_gqa`: attention-1pass-gqa, grouped-query, which also runs an MHA block as G = H
query-head groups of one), which costs every full block; `causal_mapping`, optional, a causal one
(`attention_causal` or `attention_causal_gqa`: attention-1pass-causal-gqa), which costs the causal diagonal blocks
(without it a causal block is refused naming `device.causal_mapping`). A grouped-query block on a mapping of an MHA
cascade is refused naming the field (`seqpar_compute.ArrayCompute`). The architecture holds 2-byte words
(`WORD_BYTES`, the bf16 blocks every scheme binds and sends): one of other words could run no block, and is refused
at load (`archsim check` too), naming its `word_bytes`. Each mapping's cascade takes a block's sizes
only (`BLOCK_PARAMS`). One of `gpu` and `device` is given. The devices of a topology are in `Topology.gpu`, a GPU
or an ArrayDevice.

Assumptions (seqpar-sparse.md §4 "implication for us"; ASTRA-sim's analytical backend and SimAI's busbw do the same):
- every device has its own port on each level's link (one NIC per GPU; an NVSwitch port), full duplex;
- a message between two devices goes over the link of the outermost level at which their groups differ, at that
  link's alpha-beta cost; no congestion beyond a device's own port (a non-blocking switch per level);
- a ring of point-to-point sends over a group (ring attention's K/V blocks, one device's send a hop) advances in
  lock step, so its slowest hop, over any level it crosses, sets every step (`group_link`);
- a ring collective (all-gather, reduce-scatter, a ring all-reduce) over a group spanning several groups of its
  outermost level runs as NCCL runs it: one ring per channel, each carrying 1/channels of every step and crossing
  that level on a different device's port, so the channels are the group's devices in one group of the level
  below (the fewest, where they differ: each channel needs its own crossing device in every one), the level's
  link taking 1/channels of a step per device, and each inner level's link, conservatively, the whole step
  (`collective_link`; SimAI's busbw min(NIC x nics, NVLink x g / (g - 1)) credits the g / (g - 1) a crossing
  device's own channel saves on NVLink: not taken, so a collective bound by an inner link is up to that factor
  slow; the presets' NICs x 8 are below NVLink, so no preset is). Each step keeps its latency, alpha of the
  slowest link. A level's link is each device's own port (above); devices sharing one are written as a link of
  each one's share (`links`), so the channels together cross at the shared port's rate, not more;
- an all-to-all sends to every peer, each level's peers over that level's link, the levels' links working at once
  (`all_to_all_s`).
Errors are SpecErrors naming the file and the field. The key `levels` marks a topology spec.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from archsim import library
from archsim.arch.gpu import GPU
from archsim.arch.spec import Architecture
from archsim.errors import SpecError, check_header, check_keys, loaded_for
from archsim.mapping.spec import Mapping
from archsim.spec_files import spec_beside
from archsim.systems import collectives
from archsim.systems.links import Link, link_from_dict, load_gpu_with_host_link, load_link, slowest_hop

PRESETS_PACKAGE = "archsim.systems.topology_presets"
TEXT = ("name", "description", "source")
KEYS = (*TEXT, "gpu", "device", "levels")
OPTIONAL = ("description", "gpu", "device")  # one of gpu and device
DEVICE_KEYS = ("architecture", "mapping", "causal_mapping")
# the `reference` of the cascade each mapping of an ArrayDevice maps: full blocks, causal (diagonal) blocks
FULL_REFERENCES = ("attention", "attention_gqa")
CAUSAL_REFERENCES = ("attention_causal", "attention_causal_gqa")
# the parameters an array block binds (`seqpar_compute.ArrayCompute`): a mapping's cascade takes no others
BLOCK_PARAMS = ("batch", "heads", "kv_heads", "seq_len", "head_dim", "tile_kv", "word_bytes")
# bf16: the words every block of the sequence-parallel schemes is bound at and sends (`seqpar_compute`), so the
# architecture of a topology's arrays holds them (`_array`)
WORD_BYTES = 2
MAX_DEVICES = 2**20


@dataclass(frozen=True)
class ArrayDevice:
    """Devices that are an `Architecture` run through the analytical model: `mapping` costs full attention blocks,
    `causal_mapping` (None: not given) causal ones (module docstring). `source` is the topology file, which errors
    blame. `dram_bytes` is NaN: an architecture's outermost memory is unbounded (`archsim.arch.load` refuses a size
    there: it is the home of every tensor), so no memory per device is modelled on arrays."""

    arch: Architecture
    mapping: Mapping
    causal_mapping: Mapping | None
    source: str

    @property
    def name(self) -> str:
        return self.arch.name

    @property
    def dram_bytes(self) -> float:
        return math.nan

    @property
    def mappings(self) -> str:
        """The mappings, as a record shows them in place of a GPU kernel."""
        causal = f", {self.causal_mapping.name} (causal)" if self.causal_mapping is not None else ""
        return f"{self.mapping.name}{causal}"


@dataclass(frozen=True)
class Level:
    """One level: `devices` groups of the level below joined by `link` (None: unbounded, the outermost only)."""

    link: Link
    devices: int | None


@dataclass(frozen=True)
class Topology:
    """A cluster's network (module docstring): `gpu`, the devices (a GPU, or arrays: `ArrayDevice`), and `levels`,
    innermost first. `source` is the file errors blame and `citation` the spec's own `source` field (where the
    numbers come from)."""

    name: str
    description: str
    source: str
    citation: str
    gpu: GPU | ArrayDevice
    levels: tuple[Level, ...]

    def span(self, level: int) -> int | None:
        """Devices in one group of `level` (None for an unbounded outermost level)."""
        size = 1
        for lv in self.levels[:level + 1]:
            if lv.devices is None:
                return None
            size *= lv.devices
        return size

    def capacity(self) -> int | None:
        """The most devices the topology holds (None: unbounded)."""
        return self.span(len(self.levels) - 1)

    def level_between(self, a: int, b: int) -> int:
        """The level whose link joins devices `a` and `b` (-1 for the same device)."""
        if a == b:
            return -1
        for index in range(len(self.levels)):
            span = self.span(index)
            if span is None or a // span == b // span:
                return index
        raise SpecError(self.source, "levels", f"devices {a} and {b} are beyond its {self.capacity()} devices")

    def link_between(self, a: int, b: int) -> Link:
        """The link of the level joining devices `a` and `b` (two distinct devices)."""
        return self.levels[self.level_between(a, b)].link

    def chain_links(self, members: Sequence[int]) -> list[Link]:
        """The link of each hop of a chain over `members` in their order (the first to the second, ...), each the
        link joining its two devices."""
        return [self.link_between(a, b) for a, b in itertools.pairwise(members)]

    def group_link(self, members: Sequence[int]) -> Link | None:
        """The link a lock-step ring over `members` (in their order, the last back to the first) steps at: its
        slowest hop (`links.slowest_hop`). The hops between consecutive members go over the links of the levels
        that join them: a ring of 12 devices with 6 to a node takes ten hops within the nodes and two between. A
        group of one device has no hop and moves nothing (the collectives' rule at p = 1): it is named by the
        innermost level's link, and by none (None) on a topology of no level, one device with no link
        (`context_parallel.topology_of` of a one-GPU system without a link named cp)."""
        hops = [self.levels[level].link for level in self._ring_levels(members)]
        hops = hops or [level.link for level in self.levels[:1]]
        return slowest_hop(hops) if hops else None

    def collective_link(self, members: Sequence[int]) -> Link | None:
        """The link a step of a ring collective over `members` runs at (NCCL's channels; module docstring): the
        outermost level the ring crosses with the bandwidth of as many of its links as the channels (each
        channel's ring crossing on its own device's port), beside each inner level's link carrying the whole step,
        the slowest setting the step (`links.slowest_hop`, as `group_link`'s hops). The ring runs in rank order,
        as NCCL's, whatever the order of `members`. 16 GPUs of two 8-GPU nodes: 8 channels, 8 NICs' bandwidth at
        one NIC's latency, beside NVLink; one GPU a node: one channel, the NIC's ring; within one level, or a group
        of one, `group_link`'s link."""
        ranks = sorted(members)
        levels = self._ring_levels(ranks)
        if not levels:
            return self.group_link(ranks)
        *inner, outer = levels
        span = self.span(outer - 1) if outer else 1
        channels = min(Counter(rank // span for rank in ranks).values())
        crossing = self.levels[outer].link
        if channels > 1:
            crossing = replace(crossing, name=f"{crossing.name} x {channels}",
                               description=f"{channels} channels' rings, each crossing on its own device's "
                                           f"{crossing.name}",
                               bytes_per_s_per_direction=channels * crossing.bytes_per_s_per_direction)
        return slowest_hop([*(self.levels[level].link for level in inner), crossing])

    def _ring_levels(self, members: Sequence[int]) -> list[int]:
        """The levels whose links a ring over `members` (in their order, the last back to the first) crosses,
        innermost first; none for a group of one. Refused as `check_devices` refuses the group's size."""
        self.check_devices(max(members) + 1, "devices")
        return sorted({self.level_between(a, b)
                       for a, b in zip(members, [*members[1:], members[0]], strict=True)} - {-1})

    def check_devices(self, count: int, field: str, source: str = "<python>") -> None:
        """Refuse (a SpecError at `source`/`field`) a run of `count` devices beyond the topology's capacity. The
        message names the topology by its name, not its file: a sweep stores it as a point's reason, which holds no
        path (an installed preset's lies elsewhere on every install)."""
        capacity = self.capacity()
        if capacity is not None and count > capacity:
            raise SpecError(source, field, f"expected at most {capacity} devices, the size of topology "
                                           f"{self.name!r}, got {count}")

    def all_to_all_s(self, message_bytes: float, members: Sequence[int]) -> float:
        """Each member sends a distinct 1/p of its `message_bytes` buffer to every other member (pairwise
        exchange, `collectives.all_to_all_s`): the peers a device reaches over each level's link take their
        steps over that link, the levels at once; the slowest level sets the time."""
        p = len(members)
        if p == 1 or message_bytes == 0:
            return 0.0
        slowest = 0.0
        for peers_by_level in self.peers_by_level(members):
            for level, peers in peers_by_level.items():
                step = collectives.send_recv_s(message_bytes / p, self.levels[level].link)
                slowest = max(slowest, peers * step)
        return slowest

    def peers_by_level(self, members: Sequence[int]) -> list[Counter[int]]:
        """For each of `members` (in their order), how many of the others each level's link joins it to (the
        others at `level_between` that level): those in its group at the level less those in its group one level
        in, the groups counted once for all members. Refused as `level_between` refuses, naming a member's first
        other beyond the topology's groups."""
        spans = [1] + [self.span(level) for level in range(len(self.levels))]  # 1: the member itself
        groups = [Counter(member // span if span else 0 for member in members) for span in spans]
        counts: list[Counter[int]] = []
        for member in members:
            within = [group[member // span if span else 0] for group, span in zip(groups, spans, strict=True)]
            if within[-1] < len(members):  # an other in no outermost group with it: `level_between` refuses the pair
                self.level_between(member, next(o for o in members if o // spans[-1] != member // spans[-1]))
            counts.append(Counter({level: outer - inner
                                   for level, (inner, outer) in enumerate(itertools.pairwise(within))
                                   if outer > inner}))
        return counts


def topology_from_dict(data: Any, source: str = "<python>") -> Topology:
    """Validate `data` (the YAML form) into a Topology. Refused, each a SpecError naming the field: a missing or unknown
    header key, an empty `levels`, a level that is not `{link, devices}`, a `devices` left out below the outermost
    level or not a whole number from 1 to MAX_DEVICES, an unknown link or GPU preset, both or neither of `gpu` and
    `device`, and a `device` that is not a mapping of a full attention cascade and optionally one of a causal one
    (`_array`)."""
    check_header(data, KEYS, OPTIONAL, TEXT, source, "")
    if ("gpu" in data) == ("device" in data):
        raise SpecError(source, "gpu", "expected one of gpu (a GPU preset) and device ({mapping, causal_mapping, "
                                       "architecture}: arrays through the analytical model), got "
                                       f"{'both' if 'gpu' in data else 'neither'}")
    levels = data["levels"]
    if not isinstance(levels, list) or not levels:
        raise SpecError(source, "levels", f"expected a non-empty list of {{link, devices}}, innermost first, "
                                          f"got {levels!r}")
    parsed = []
    for index, entry in enumerate(levels):
        where = f"levels[{index}]"
        if not isinstance(entry, dict) or "link" not in entry or set(entry) - {"link", "devices"}:
            raise SpecError(source, where, f"expected {{link: a link preset or a link's fields, devices: a whole "
                                           f"number}}, got {entry!r}")
        link = entry["link"]
        link = (link_from_dict(link, source, f"{where}.link") if isinstance(link, dict)
                else _preset_link(link, source, f"{where}.link"))
        devices = entry.get("devices")
        last = index == len(levels) - 1
        if devices is None and not last:
            raise SpecError(source, f"{where}.devices", "missing: only the outermost level may leave its number "
                                                        "of groups open")
        if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int)
                                    or not 1 <= devices <= MAX_DEVICES):
            raise SpecError(source, f"{where}.devices", f"expected a whole number from 1 to {MAX_DEVICES}, "
                                                        f"got {devices!r}")
        parsed.append(Level(link, devices))
    devices = _gpu(data["gpu"], source) if "gpu" in data else _array(data["device"], source)
    return Topology(data["name"], data.get("description", ""), source, data["source"], devices, tuple(parsed))


def _array(data: Any, source: str) -> ArrayDevice:
    """The `device` entry (module docstring): each mapping a library mapping or file, the architecture the
    mapping's own unless named; a SpecError naming `device.<key>` for an unknown key, a missing `mapping`, a
    mapping of another cascade than its kind's (`FULL_REFERENCES`, `CAUSAL_REFERENCES`) or whose cascade takes a
    parameter a block does not set (`BLOCK_PARAMS`), two mappings of different architectures, and an architecture
    whose words are not the blocks' (`block_word_problem`)."""
    if not isinstance(data, dict) or "mapping" not in data:
        raise SpecError(source, "device", f"expected {{mapping, causal_mapping, architecture}} (mapping required), "
                                          f"got {data!r}")
    check_keys(data, DEVICE_KEYS, source, "device")
    mapping = _mapping(data["mapping"], source, "device.mapping", FULL_REFERENCES)
    causal = data.get("causal_mapping")
    causal = None if causal is None else _mapping(causal, source, "device.causal_mapping", CAUSAL_REFERENCES)
    if causal is not None and causal.architecture != mapping.architecture and "architecture" not in data:
        raise SpecError(source, "device.causal_mapping", f"targets {causal.architecture}, mapping "
                                                         f"{mapping.name} {mapping.architecture}: name the "
                                                         "architecture both run on")
    arch = _loaded("architecture", library.load_architecture_spec, data.get("architecture", mapping.architecture),
                   source, "device.architecture")
    problem = block_word_problem(arch)
    if problem:
        raise SpecError(source, "device.architecture", problem)
    return ArrayDevice(arch, mapping, causal, source)


def block_word_problem(arch: Architecture) -> str | None:
    """Why the sequence-parallel schemes cannot run their blocks on `arch`, or None where they can: it holds words
    of other than `WORD_BYTES` bytes, the width every block is bound at (the analytical model refuses a binding of
    other words than its architecture's), and no workload or option sets another."""
    if arch.word_bytes == WORD_BYTES:
        return None
    return (f"{arch.source}: word_bytes: {arch.name} holds {arch.word_bytes}-byte words, but the sequence-parallel "
            f"schemes run {WORD_BYTES}-byte (bf16) attention blocks on arrays (the words they bind, send and a "
            f"workload must have): expected {WORD_BYTES}")


def _mapping(name: Any, source: str, where: str, references: tuple[str, ...]) -> Mapping:
    mapping = _loaded("mapping", library.load_mapping_spec, name, source, where)
    cascade = library.load_cascade_spec(spec_beside(mapping.cascade, mapping.source))
    if cascade.reference not in references:
        raise SpecError(source, where, f"{mapping.name} maps {cascade.name}, whose reference is "
                                       f"{cascade.reference}: expected a cascade of {' or '.join(references)}")
    other = sorted(set(cascade.params) - set(BLOCK_PARAMS))
    if other:
        raise SpecError(source, where, f"{mapping.name} maps {cascade.name}, which takes {', '.join(other)}: an "
                                       f"array's block sets only {', '.join(BLOCK_PARAMS)}")
    return mapping


def _loaded(kind: str, load: Any, name: Any, source: str, where: str) -> Any:
    if not isinstance(name, str) or not name:
        raise SpecError(source, where, f"expected a library {kind} name or file, got {name!r}")
    return loaded_for(source, where, load, spec_beside(name, source))


def _gpu(name: Any, source: str) -> GPU:
    if not isinstance(name, str):
        raise SpecError(source, "gpu", f"expected a GPU preset name or file, got {name!r}")
    return loaded_for(source, "gpu", load_gpu_with_host_link, spec_beside(name, source))


def _preset_link(name: Any, source: str, where: str) -> Link:
    if not isinstance(name, str):
        raise SpecError(source, where, f"expected a link preset name or a link's fields, got {name!r}")
    return loaded_for(source, where, load_link, spec_beside(name, source))


def load_topology(name_or_path: str | Path) -> Topology:
    """A preset by name (`dgx-a100`, see `archsim list`) or a YAML file by path."""
    return library.load_preset("topology presets", name_or_path, PRESETS_PACKAGE, topology_from_dict)
