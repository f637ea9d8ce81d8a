"""Collective communication times over one link kind and a group of p devices, as alpha-beta formulas.

Every function is pure: (message bytes, group size p, `Link`, algorithm where there is a choice) -> seconds. With
alpha = `link.latency_s` and beta = `link.bytes_per_s_per_direction`, a step that sends m bytes costs alpha + m/beta.
The formulas count steps and the bytes of each step, as in Thakur, Rabenseifner & Gropp, "Optimization of collective
communication operations in MPICH", IJHPCA 19(1), 2005 (Thakur 2005 below), and in NCCL's ring algorithms
(Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC 69(2), 2009).

Conventions and assumptions (the link's own are in `archsim.systems.links`):
- `message_bytes` is the size of the whole buffer on each device: the vector being all-reduced; the gathered
  output of an all-gather; the input of a reduce-scatter; the send buffer of an all-to-all, its own slice included.
- Links are full duplex and each device has its own (an NVSwitch box, one NIC per GPU): in a ring step every device
  sends to one neighbour and receives from the other at once, so a step costs one message, not two.
- Reduction arithmetic is free (Thakur 2005's gamma = 0): a GPU adds at memory speed, well above any link's rate,
  and NCCL fuses the add into the copy.
- No overlap of steps, no pipelining of one message into chunks, no contention with other traffic; but the sends
  of a one-to-all or all-to-one exchange (`scatter_s`, `gather_s`) are independent and issued as one group, so
  their latencies overlap (below).
- A group of one, or an empty message, moves nothing and costs nothing (no synchronisation is charged).
- A tree's depth is ceil(log2 p), so p need not be a power of two.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from archsim.errors import SpecError, check_choice
from archsim.systems.links import Link

ALL_REDUCE_ALGORITHMS = ("ring", "tree")
MAX_GROUP = 2**53  # beyond it a float (n/p) no longer tells group sizes apart


def send_recv_s(message_bytes: float, link: Link) -> float:
    """Point to point: alpha + n/beta (one message; Thakur 2005's cost model)."""
    _check_bytes(message_bytes, "send_recv_s")
    return 0.0 if message_bytes == 0 else link.transfer_s(message_bytes)


def all_reduce_s(message_bytes: float, p: int, link: Link, *, algorithm: str) -> float:
    """Every device ends with the sum of all devices' n-byte vectors.

    - `ring` (Patarasuk & Yuan 2009; NCCL's ring): a ring reduce-scatter then a ring all-gather (the split of
      Rabenseifner's algorithm in Thakur 2005, with rings for the halves), 2(p-1) steps of n/p bytes:
      2(p-1)·alpha + 2(p-1)/p · n/beta. Bandwidth-optimal; the latency term grows linearly in p.
    - `tree` (Thakur 2005's binomial-tree reduce to a root, then its binomial-tree broadcast): each of
      2·ceil(log2 p) rounds forwards the whole vector: 2·ceil(log2 p)·(alpha + n/beta). The latency term grows as
      log2 p: wins for small messages (e.g. a decode step's activations), loses for large ones.
    """
    check_choice("all_reduce_s.algorithm", algorithm, ALL_REDUCE_ALGORITHMS)
    if _trivial(message_bytes, p, "all_reduce_s"):
        return 0.0
    if algorithm == "ring":
        return 2 * (p - 1) * link.transfer_s(message_bytes / p)
    return 2 * _tree_depth(p) * link.transfer_s(message_bytes)


def all_gather_s(message_bytes: float, p: int, link: Link) -> float:
    """Every device ends with all p slices of n/p bytes (n = the gathered output). Ring (Thakur 2005's ring
    all-gather; NCCL's ring): each device starts with its own slice and lacks p-1, and each step passes on the
    slice it last received, so p-1 steps of one n/p slice (`_slice_steps_s`): (p-1)·alpha + (p-1)/p · n/beta."""
    return _slice_steps_s(message_bytes, p, link, "all_gather_s")


def reduce_scatter_s(message_bytes: float, p: int, link: Link) -> float:
    """Every device ends with one n/p slice of the sum of all devices' n-byte inputs. Ring (NCCL's ring; the
    same steps and bytes as Thakur 2005's pairwise-exchange reduce-scatter): a slice's sum gathers one device's
    contribution per hop, so it travels p-1 hops to hold all p, and every step passes one partially reduced n/p
    slice on: p-1 steps of one n/p slice (`_slice_steps_s`): (p-1)·alpha + (p-1)/p · n/beta."""
    return _slice_steps_s(message_bytes, p, link, "reduce_scatter_s")


def all_to_all_s(message_bytes: float, p: int, link: Link) -> float:
    """Every device sends a distinct n/p slice of its n-byte buffer to each other device (e.g. MoE dispatch,
    Ulysses' sequence <-> head re-sharding). Pairwise exchange (Thakur 2005's long-message algorithm): in step
    k = 1..p-1 device i sends to i+k and receives from i-k, one slice for each of its p-1 peers, so p-1 steps of one
    n/p slice (`_slice_steps_s`): (p-1)·alpha + (p-1)/p · n/beta. Assumption: any two devices are one hop apart
    over their own links (a non-blocking switch: NVSwitch, a NIC switch), so a step costs one slice on each
    device's link. On a physical ring step k's slices would travel k hops and share links (p/2 times the bytes on
    each link of a one-way ring); that is not modelled."""
    return _slice_steps_s(message_bytes, p, link, "all_to_all_s")


def _slice_steps_s(message_bytes: float, p: int, link: Link, what: str) -> float:
    """The cost shared by `all_gather_s`, `reduce_scatter_s` and `all_to_all_s` (the reasons for p-1 steps are
    theirs): p-1 steps, in each every device sends one n/p slice and receives one, over its own full-duplex link:
    (p-1)·alpha + (p-1)/p · n/beta. `what` names the collective in an argument's error."""
    if _trivial(message_bytes, p, what):
        return 0.0
    return (p - 1) * link.transfer_s(message_bytes / p)


def scatter_s(message_bytes: float, p: int, link: Link) -> float:
    """One root sends a distinct n/p slice of its n-byte buffer to each of the other p-1 devices (one-to-all; a
    message the same for every peer, as DistAttention's query, is n = p copies of it). The p-1 sends are issued as
    one group (NCCL's grouped point-to-point, ncclGroupStart/ncclGroupEnd, its documentation's one-to-all example):
    no send waits on another (unlike a ring's steps), so their latencies overlap, paid once, while their bytes
    serialise on the root's port: alpha + (p-1)/p · n/beta. Assumption: the peers are distinct ports of a
    non-blocking switch (an NVSwitch, a NIC switch), so nothing but the root's port limits the bytes; not Thakur
    2005's binomial tree (ceil(log2 p) rounds), which MPI runs for short messages to avoid the root's p-1 sends."""
    return _fan_s(message_bytes, p, link, "scatter_s")


def gather_s(message_bytes: float, p: int, link: Link) -> float:
    """Each of p-1 devices sends its n/p slice to one root (all-to-one; `scatter_s` reversed, each peer's message
    n/p): grouped the same way, the latencies overlap and the bytes serialise on the root's receiving port:
    alpha + (p-1)/p · n/beta."""
    return _fan_s(message_bytes, p, link, "gather_s")


def _fan_s(message_bytes: float, p: int, link: Link, what: str) -> float:
    """The one grouped exchange of `scatter_s` and `gather_s`: p-1 messages of n/p bytes through the root's port."""
    if _trivial(message_bytes, p, what):
        return 0.0
    return link.transfer_s((p - 1) * (message_bytes / p))


def hierarchical_all_reduce_s(message_bytes: float, levels: Sequence[tuple[Link, int]], *, algorithm: str) -> float:
    """All-reduce over nested groups, innermost first: e.g. [(nvlink, 8), (nic, 4)] is 4 nodes of 8 GPUs.

    At each level but the outermost: a ring reduce-scatter among the level's g devices (each ends with n/g), an
    all-reduce of that n/g slice over the remaining levels, then a ring all-gather among the g devices. The g
    slices are all-reduced at the outer levels at once, each device over its own link of the outer kind (one NIC
    per GPU, as in Lamina's testbed; devices sharing a NIC are a link with the shared bandwidth). The outermost
    level runs `algorithm` (see `all_reduce_s`). With levels (L1, g) and (L2, m):
    RS(n, g, L1) + AR(n/g, m, L2) + AG(n, g, L1).

    This is the hierarchical (2D) all-reduce of Jia et al., "Highly scalable deep learning training system with
    mixed-precision", arXiv:1807.11205, 2018, and ASTRA-sim's per-dimension decomposition of a collective (Rashidi
    et al., ISPASS 2020; seqpar-sparse.md §4).
    """
    check_choice("hierarchical_all_reduce_s.algorithm", algorithm, ALL_REDUCE_ALGORITHMS)
    if isinstance(levels, str | bytes) or not isinstance(levels, Sequence) or not levels:
        raise SpecError("<python>", "hierarchical_all_reduce_s.levels",
                        f"expected a non-empty list of (link, group size), innermost first, got {levels!r}")
    for index, level in enumerate(levels):
        if not (isinstance(level, tuple) and len(level) == 2 and isinstance(level[0], Link)):
            raise SpecError("<python>", f"hierarchical_all_reduce_s.levels[{index}]",
                            f"expected a (Link, group size) pair, got {level!r}")
        _check_p(level[1], f"hierarchical_all_reduce_s.levels[{index}]")
    (link, group), outer = levels[0], levels[1:]
    if not outer:
        return all_reduce_s(message_bytes, group, link, algorithm=algorithm)
    _check_bytes(message_bytes, "hierarchical_all_reduce_s")
    return (reduce_scatter_s(message_bytes, group, link)
            + hierarchical_all_reduce_s(message_bytes / group, outer, algorithm=algorithm)
            + all_gather_s(message_bytes, group, link))


def _tree_depth(p: int) -> int:
    """ceil(log2 p) for p >= 1, exactly (no floating-point log)."""
    return int(p - 1).bit_length()


def _trivial(message_bytes: float, p: int, what: str) -> bool:
    """Validate a collective's arguments; True when it moves nothing (a group of one or an empty message)."""
    _check_bytes(message_bytes, what)
    _check_p(p, what)
    return p == 1 or message_bytes == 0


MAX_MESSAGE_BYTES = 1e30  # beyond any memory; with it, times over the presets' bandwidths stay finite


def _check_bytes(message_bytes: float, what: str) -> None:
    if (isinstance(message_bytes, bool) or not isinstance(message_bytes, numbers.Real)
            or not _finite(message_bytes) or not 0 <= message_bytes <= MAX_MESSAGE_BYTES):
        raise SpecError("<python>", f"{what}.message_bytes", f"expected a number of bytes from 0 to "
                                                             f"{MAX_MESSAGE_BYTES:g}, got {message_bytes!r}")


def _check_p(p: int, what: str) -> None:
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or not 1 <= p <= MAX_GROUP:
        raise SpecError("<python>", f"{what}.p", f"expected a group size (a whole number from 1 to 2**53), "
                                                 f"got {p!r}")


def _finite(value: numbers.Real) -> bool:
    """math.isfinite, with an integer beyond the largest float not finite (instead of an OverflowError)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
