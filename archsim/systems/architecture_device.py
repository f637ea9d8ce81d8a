"""Any `Architecture` with a library mapping as a device, through the analytical model (e.g. a FuseMax array as an
attention engine).

An op runs as a design point: `archsim.point.prepare` binds the op's library cascade to the op's own sizes (its
binding's params that the cascade declares), the mapper fills the mapping's `search` factors, and
`archsim.model.analytical.evaluate` gives the Result. So everything the analytical model assumes holds here (see
`archsim.model.analytical`), and what the op costs is what `archsim run` prints for the same sizes.
- The mapping names the Einsums of one cascade: an op of another cascade placed on the device is a SpecError
  naming the system file and `devices.<name>.mapping`. A mapping that cannot run at the op's sizes, or a Result
  that does not fit the architecture, is a SpecError naming the device and the reason.
- A prompt's attention whose length the mapping's tiles do not divide (any length a serving run draws) runs padded,
  as an array pads a ragged tile: its `seq_len` rounded up to a multiple of the mapping's `set:` tiles of the
  sequence's ranks (their least common multiple; FuseMax's M0 = 256), the padded queries and keys costing as real
  ones. Only where the unpadded length is refused and the padded one binds; other ops (bound as tokens x 1) are
  never padded. A padded length beyond a resource limit (a `LimitError`: the size limit) refuses the op with that
  limit's advice beside the unpadded refusal, as a limit decides it: raised, the prompt runs padded.
- The mapping decides what crosses the architecture's outermost level; `streamed_fraction` is not applied.
OpCost per op: time = `latency_s`; energy = `energy_pj`; busy `<name>_<unit>` = utilization x latency per compute
unit; `memory_s` = the outermost level's memory time. Ops of one call run one after another: costs add.
Capacity: the outermost memory's, unbounded (math.inf): an architecture's outermost level is the home of every
tensor and its spec gives it no capacity (`null`, which `archsim.arch.load` requires there), the one meaning the
architecture spec, the analytical model and the system checks give it. So an architecture device never holds a
served model's weights: the serving simulator pages the KV cache by the room the weight holder's memory leaves
beside the weights, whole pages of a finite memory, and an unbounded memory has no number of pages (nor would a
memory admitting every request model one); `system_model.system_model_of` refuses such a holder.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping as MappingType
from collections.abc import Sequence
from dataclasses import dataclass

from archsim.arch.spec import Architecture
from archsim.cascade import syntax as S
from archsim.cascade.ir import Cascade
from archsim.errors import LimitError, SpecError
from archsim.limits import limits_key
from archsim.mapping.spec import Mapping
from archsim.model.analytical import evaluate
from archsim.model.result import Result
from archsim.point import Point, mapping_tiling, prepare
from archsim.systems.device import OpCost
from archsim.systems.step import Op


@dataclass(frozen=True, eq=False)  # compared by identity, so its Results can be remembered per (device, op)
class ArchitectureDevice:
    """A serving device that runs each op as a design point of `arch` under `mapping`, through the analytical model
    (module docstring); compared by identity, so its Results are remembered per (device, op)."""

    name: str
    arch: Architecture
    mapping: Mapping
    source: str = "<python>"  # the system file, which errors blame
    kind: str = "architecture"

    @property
    def capacity_bytes(self) -> float:
        """The outermost memory's capacity: math.inf, as its spec gives none (module docstring)."""
        capacity = self.arch.memories[0].capacity_bytes
        return math.inf if capacity is None else float(capacity)

    def result(self, op: Op) -> Result:
        """The analytical model's Result of `op` on the architecture under the mapping (module docstring): a copy of
        the remembered one, so a caller's edit changes no later cost."""
        return copy.deepcopy(_result(self, op, limits_key()))

    def cost(self, ops: Sequence[Op], streamed_fraction: float = 1.0) -> OpCost:
        total, limits = OpCost(), limits_key()
        for op in ops:
            r = _result(self, op, limits)
            busy = {f"{self.name}_{unit}": u * r.latency_s for unit, u in r.utilization.items()}
            total = total + OpCost(r.latency_s, next(iter(r.memory_s.values()), 0.0), r.energy_pj * 1e-12, busy)
        return total


@functools.lru_cache(maxsize=4096)
def _result(device: ArchitectureDevice, op: Op, _limits: tuple[tuple[str, int], ...]) -> Result:
    # `_limits` (`archsim.limits.limits_key`): a result is remembered under the limits it was worked out under
    where = f"devices.{device.name}"
    if op.cascade != device.mapping.cascade:
        raise SpecError(device.source, f"{where}.mapping",
                        f"maps {device.mapping.cascade}; the placement puts {op.name} ({op.cascade}) on it")
    tiling = mapping_tiling(op.binding.cascade, device.mapping)  # the mapping's tiles, not the op's
    sets = {k: v for k, v in op.binding.params.items() if k in op.binding.cascade.params and k not in tiling}
    try:
        point = prepare(device.mapping, arch=device.arch, cascade=op.cascade, sets=sets)
    except SpecError as error:
        refused = f"cannot run {op.name} ({op.cascade}, {op.phase}) at its sizes: {error}"
        try:
            point = _padded_point(device, op, sets)
        except LimitError as limit:
            raise LimitError(device.source, f"{where}.mapping",
                             f"{refused}; padded to the mapping's tiles: {limit}") from None
        if point is None:  # a limit's refusal stays one (`LimitError`)
            raise type(error)(device.source, f"{where}.mapping", refused) from None
    result = evaluate(point.binding, point.analysis, point.arch, point.mapping)
    if not result.feasible:
        raise SpecError(device.source, where, f"{op.name} ({op.cascade}, {op.phase}) does not fit "
                                              f"{device.arch.name} under {device.mapping.name}: {result.reason}")
    return result


def _padded_point(device: ArchitectureDevice, op: Op, sets: dict[str, float]) -> Point | None:
    """The prompt attention `op` prepared at its `seq_len` rounded up to the mapping's tiles (module docstring), or
    None: another op, a mapping without integer tiles of the sequence, a length they divide, or a padded length still
    refused, other than by a resource limit (a `LimitError`, raised: the limit decides the op)."""
    tile = sequence_tile(op.binding.cascade, device.mapping.sets)
    length = sets.get("seq_len")
    if op.name != "attention" or op.phase != "prefill" or tile == 1 or length is None:
        return None
    if length % tile == 0:
        return None
    try:
        return prepare(device.mapping, arch=device.arch, cascade=op.cascade,
                       sets={**sets, "seq_len": -(-int(length) // tile) * tile})
    except LimitError:
        raise
    except SpecError:
        return None


def sequence_tile(cascade: Cascade, sets: MappingType[str, float]) -> int:
    """The tokens a prompt's attention is padded to a multiple of on a mapping whose `set:` is `sets`: the least common
    multiple of `_sequence_tiles`, 1 where it has none."""
    return math.lcm(*_sequence_tiles(cascade, sets)) if _sequence_tiles(cascade, sets) else 1


def _sequence_tiles(cascade: Cascade, sets: MappingType[str, float]) -> list[int]:
    """The mapping's `set:` tiles of ranks that partition a rank sized by `seq_len` (FuseMax's M0 of the keys M), not
    its other tiles (a head-dimension tile does not pad the sequence)."""
    tiles = []
    for rank, value in sets.items():
        root = cascade.root_of(rank)  # the rank itself where it is no part
        size = cascade.rank_sizes.get(root) if root != rank else None
        if size is not None and "seq_len" in S.names_in(size) and float(value).is_integer() and value > 0:
            tiles.append(int(value))
    return tiles
