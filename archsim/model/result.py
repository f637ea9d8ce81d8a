"""`Result`: one evaluated point, the row that the store, pandas and the reports read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from archsim.record import PJ_PER_J, Record

T = TypeVar("T")


@dataclass(frozen=True)
class EinsumResult:
    name: str
    group: str
    unit: str
    ops: dict[str, int]  # op type -> count
    lanes_used: int  # PEs the spatial loops give this Einsum
    compute_cycles: float  # ops x cycles per op / lanes used
    energy_pj: float  # its compute energy (memory energy is per tensor and level, see Result.energy_by)


@dataclass(frozen=True)
class Result:
    cascade: str
    architecture: str
    mapping: str
    params: dict[str, float]
    feasible: bool
    reason: str  # why not feasible ("" when it is)
    latency_s: float
    compute_cycles: float  # the groups' compute (overlap formulas applied), before memory stalls
    memory_s: dict[str, float]  # level -> time its transfers take at its bandwidth
    traffic_bytes: dict[str, dict[str, float]]  # level -> tensor -> bytes moved between it and the next level in
    energy_pj: float
    energy_by: dict[tuple[str, str], float]  # (component, action) -> pJ
    utilization: dict[str, float]  # unit -> busy lane-cycles / (lanes x latency cycles); at most 1 when feasible
    footprint_bytes: dict[str, float]  # level -> bytes of the tiles resident there, before any spill
    area_um2: float
    einsums: tuple[EinsumResult, ...] = field(default_factory=tuple)
    # stall source -> unit-seconds the compute units sat idle for it ("DRAM bandwidth", "waiting on QK"); only the
    # event model sees stalls, so the analytical model leaves this empty
    stalls: dict[str, float] = field(default_factory=dict)

    def record(self) -> Record:
        """The record every target writes (`archsim.record`): busy seconds per unit = utilization x latency."""
        return Record("architecture", self.architecture, self.feasible, self.reason, self.latency_s,
                      self.energy_pj / PJ_PER_J, self.area_um2, self.dram_traffic_bytes(),
                      {unit: u * self.latency_s for unit, u in self.utilization.items()})

    def dram_traffic_bytes(self) -> float:
        """Bytes moved across the outermost level (DRAM) boundary."""
        outer = next(iter(self.traffic_bytes), None)
        return sum(self.traffic_bytes[outer].values()) if outer else 0.0

    def to_dict(self) -> dict:
        """A flat, JSON-ready record (energy keys as 'component.action')."""
        return {
            "cascade": self.cascade,
            "architecture": self.architecture,
            "mapping": self.mapping,
            "params": self.params,
            "feasible": self.feasible,
            "reason": self.reason,
            "latency_s": self.latency_s,
            "compute_cycles": self.compute_cycles,
            "memory_s": self.memory_s,
            "traffic_bytes": self.traffic_bytes,
            "dram_traffic_bytes": self.dram_traffic_bytes(),
            "energy_pj": self.energy_pj,
            "energy_by": {f"{c}.{a}": v for (c, a), v in self.energy_by.items()},
            "utilization": self.utilization,
            "footprint_bytes": self.footprint_bytes,
            "area_um2": self.area_um2,
            "einsums": [e.__dict__ for e in self.einsums],
            "stalls": self.stalls,
        }


def built(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance of the frozen dataclass `cls` holding `fields` (every field, by name): the same object its
    `__init__` makes, without that `__init__`'s per-field `object.__setattr__`, which took a third of an
    analytical evaluation's time. For the models' own values, already typed."""
    instance = object.__new__(cls)
    object.__setattr__(instance, "__dict__", fields)
    return instance
