"""Links between devices as latency + bandwidth (the alpha-beta model), loaded from YAML presets and validated.

A `Link` is one point-to-point path a device uses to talk to a peer: NVLink through an NVSwitch, PCIe, a NIC.
Moving a message of n bytes over it takes `latency_s + n / bytes_per_s_per_direction` (Hockney's alpha-beta
model; Thakur, Rabenseifner & Gropp 2005 use the same). Assumptions the collectives built on it rely on:
- the link is full duplex: a device sends and receives `bytes_per_s_per_direction` at once (NVLink, PCIe and
  Ethernet/InfiniBand all are), so datasheets' bidirectional totals are halved in the presets;
- every device of a group has its own link of this kind (as in an NVSwitch box, or one NIC per GPU); devices that
  share one link are modelled by a link with the shared bandwidth;
- `latency_s` is the per-message startup cost (alpha), whatever it includes: a preset says whether it is the
  hardware's alone or also a software stack's (e.g. NCCL's). A latency of 0 is allowed and means a
  bandwidth-only model (as Calculon's and SimAI's analytical modes); a bandwidth of 0 is refused.

File format (the presets in `archsim/systems/link_presets/` carry each number's source in a comment)::

    name: nvlink4-h100
    description: one line
    source: where the numbers come from
    latency_s: 8.0e-7
    bytes_per_s_per_direction: 450.0e+9

YAML reads `450e9` (no dot, no exponent sign) as text: write `450.0e+9`. A latency above 10 ms or a bandwidth
below 1 MB/s is refused as written in another unit (`LATENCY_S`, `BYTES_PER_S`). Every error is a `SpecError`
naming the file and the field. The key `bytes_per_s_per_direction` marks a link spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsim import library
from archsim.arch.gpu import GPU
from archsim.errors import Plausible, check_header, field_path, loaded_for, ranged_number
from archsim.gpu.load import load_gpu
from archsim.spec_files import finite_number

PRESETS_PACKAGE = "archsim.systems.link_presets"
TEXT = ("name", "description", "source")
KEYS = (*TEXT, "latency_s", "bytes_per_s_per_direction")
OPTIONAL = ("description",)
# The ranges every real link lies in, from a slow serial line to a rack-scale fabric of the next decade: a latency
# above 10 ms is no link's startup cost (a WAN round trip, or microseconds written as seconds: 0.8 for 0.8 us), a
# bandwidth below 1 MB/s none of a machine's (GB/s written as B/s: 900.0); beyond 1e18, products overflow floats.
LATENCY_S = Plausible(1e-12, 1e-2, 8.0e-7, "s")
BYTES_PER_S = Plausible(1e6, 1e18, 450.0e9, "B/s")


@dataclass(frozen=True)
class Link:
    """One link kind. `source` is the file it came from (for messages), `citation` where its numbers come from."""

    name: str
    description: str
    source: str
    citation: str
    latency_s: float
    bytes_per_s_per_direction: float

    def wire_s(self, message_bytes: float) -> float:
        """The time `message_bytes` hold the link, n / beta: a transfer less its latency (a pipeline that overlaps
        messages holds the link for this alone, `archsim.systems.offload`)."""
        return message_bytes / self.bytes_per_s_per_direction

    def transfer_s(self, message_bytes: float) -> float:
        """One message of `message_bytes` from one end to the other: alpha + n / beta."""
        return self.latency_s + self.wire_s(message_bytes)


@dataclass(frozen=True)
class SlowestHop(Link):
    """Several links a lock-step ring crosses (hops within a node and between nodes): each step waits for the slowest
    hop, `max(alpha + n / beta)` over `hops`. Its own latency and bandwidth are the worst of each, what a step costs
    for a message of no size and in the limit of a huge one (its `wire_s`, at the worst bandwidth)."""

    hops: tuple[Link, ...] = ()

    def transfer_s(self, message_bytes: float) -> float:
        return max(hop.transfer_s(message_bytes) for hop in self.hops)


def slowest_hop(links: Sequence[Link]) -> Link:
    """The link a lock-step step over `links` runs at: the one link where it is the slowest in both latency and
    bandwidth (so at every message size), else a `SlowestHop` named after them all."""
    latency = max(link.latency_s for link in links)
    bandwidth = min(link.bytes_per_s_per_direction for link in links)
    worst = [lk for lk in links if lk.latency_s == latency and lk.bytes_per_s_per_direction == bandwidth]
    if worst:
        return worst[-1]
    return SlowestHop(" + ".join(lk.name for lk in links), "a ring step over several links: the slowest hop",
                      links[-1].source, links[-1].citation, latency, bandwidth, tuple(links))


def link_from_dict(data: Any, source: str = "<python>", where: str = "") -> Link:
    """Validate a parsed link spec; `source` names the file in errors and `where` the YAML path of the link inside
    it (e.g. `links.nvlink` when a system spec holds the link inline; empty for a link file)."""
    check_header(data, KEYS, OPTIONAL, TEXT, source, where)
    return Link(
        name=data["name"],
        description=data.get("description", ""),
        source=source,
        citation=data["source"],
        latency_s=ranged_number(data["latency_s"], source, field_path(where, "latency_s"), "a latency in seconds",
                                LATENCY_S, read=finite_number, zero=True),
        bytes_per_s_per_direction=ranged_number(data["bytes_per_s_per_direction"], source,
                                                field_path(where, "bytes_per_s_per_direction"),
                                                "a bandwidth in bytes/s per direction", BYTES_PER_S,
                                                read=finite_number),
    )


def link_to_dict(link: Link) -> dict[str, Any]:
    """The spec `link_from_dict` reads back as `link` (its `KEYS`), to write a link inline. A `SlowestHop` is
    refused (TypeError): a spec holds one alpha-beta link, and its worst latency and bandwidth together would time
    a step slower than its slowest hop does (at 1 MB, 21.0 us for 20.1 us over a 1 us, 450 GB/s hop and a
    0.1 us, 50 GB/s one)."""
    if isinstance(link, SlowestHop):
        raise TypeError(f"SlowestHop {link.name!r} (a ring step over {len(link.hops)} links) has no link spec: "
                        "write each of its hops instead")
    return {"name": link.name, "description": link.description, "source": link.citation,
            "latency_s": link.latency_s, "bytes_per_s_per_direction": link.bytes_per_s_per_direction}


def load_link(name_or_path: str | Path) -> Link:
    """A preset by name (`nvlink4-h100`, see `link_names()`) or a YAML file by path."""
    return library.load_preset("link presets", name_or_path, PRESETS_PACKAGE, link_from_dict)


def check_host_link(gpu: GPU) -> GPU:
    """`gpu`, refused where its `host_link` is no link (its error blamed on the preset's field). GPU presets load
    below the systems layer, which owns the links, so the systems layer checks them here."""
    if gpu.host_link is not None:
        loaded_for(gpu.source, "host_link", load_link, gpu.host_link)
    return gpu


def load_gpu_with_host_link(name_or_path: str | Path) -> GPU:
    """A GPU preset by name or a YAML file by path (`archsim.gpu.load.load_gpu`), its `host_link` checked: how
    every system, command and sweep loads the GPU a user names, so that a file whose host link is no link is
    refused by each of them, not only by those that copy over it."""
    return check_host_link(load_gpu(name_or_path))


def link_names() -> list[str]:
    """The link presets, by name."""
    return library.names("link presets", PRESETS_PACKAGE)
