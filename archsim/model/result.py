"""`Result`: one evaluated point, the row that the store, pandas and the reports read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from archsim.record import Record

T = TypeVar("T")

# What an infeasible point leaves empty (`Result.answered`, `Result.to_dict`): the times, traffic, energy and
# utilization of a mapping that cannot run are no answer (a utilization above 1 among them); its footprint, which
# says what overflows, and the architecture's area stay
NO_ANSWER = ("latency_s", "compute_cycles", "memory_s", "traffic_bytes", "dram_traffic_bytes", "energy_pj",
             "energy_by", "utilization", "einsums", "stalls")


@dataclass(frozen=True)
class EinsumResult:
    """One Einsum of a Result: its group and unit, op counts, lanes used, compute cycles and compute energy."""

    name: str
    group: str
    unit: str
    ops: dict[str, int]  # op type -> count
    lanes_used: int  # PEs the spatial loops give this Einsum
    compute_cycles: float  # ops x cycles per op / lanes used
    energy_pj: float  # its compute energy (memory energy is per tensor and level, see Result.energy_by)


@dataclass(frozen=True)
class Result:
    """One point's numbers. As the model (`archsim.model.analytical.evaluate`) returns it, an infeasible point keeps
    the numbers of its mapping that cannot run, which the mapper ranks (the candidate closest to fitting, then the
    fastest: `archsim.mapping.mapper.score_of`); what a user is handed (`archsim.point.run_point`,
    `simulate_point`, `archsim run`) is `answered()`, whose infeasible point has none (NaN), and `to_dict()` leaves
    them null in any case. `reason`, `footprint_bytes` (what overflows) and `area_um2` stay."""

    cascade: str
    architecture: str
    mapping: str
    params: dict[str, float]
    feasible: bool
    reason: str  # why not feasible ("" when it is)
    latency_s: float
    compute_cycles: float  # the groups' compute (overlap formulas applied), before memory stalls
    memory_s: dict[str, float]  # level -> time its transfers take at its bandwidth
    # level -> tensor -> bytes moved, reads and writes together, across the level's inner boundary: to and from the
    # next level inward that keeps the tensor (or the PEs), plus the accesses of tiles spilled to the level; the
    # outermost level's are the DRAM traffic (`dram_traffic_bytes`)
    traffic_bytes: dict[str, dict[str, float]]
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
                      self.energy_pj, self.area_um2, self.dram_traffic_bytes,
                      {unit: u * self.latency_s for unit, u in self.utilization.items()})

    @property
    def dram_traffic_bytes(self) -> float:
        """Bytes moved across the outermost level (DRAM) boundary (read-only, from `traffic_bytes`)."""
        outer = next(iter(self.traffic_bytes), None)
        return sum(self.traffic_bytes[outer].values()) if outer else 0.0

    def answered(self) -> Result:
        """This Result, or for an infeasible point a copy without its answers (`NO_ANSWER`): each time, traffic,
        energy, utilization and stall NaN, under the same keys (`utilization["array2d"]` is NaN, not a KeyError), and
        each Einsum's cycles and energy NaN (its op counts and lanes stay: the cascade's and the mapping's)."""
        if self.feasible:
            return self
        nan = math.nan
        return replace(self, latency_s=nan, compute_cycles=nan, memory_s=dict.fromkeys(self.memory_s, nan),
                       traffic_bytes={level: dict.fromkeys(by_tensor, nan)
                                      for level, by_tensor in self.traffic_bytes.items()},
                       energy_pj=nan, energy_by=dict.fromkeys(self.energy_by, nan),
                       utilization=dict.fromkeys(self.utilization, nan),
                       einsums=tuple(replace(e, compute_cycles=nan, energy_pj=nan) for e in self.einsums),
                       stalls=dict.fromkeys(self.stalls, nan))

    def to_dict(self) -> dict:
        """A flat, JSON-ready record (energy keys as 'component.action'): `model_dict()` with the `NO_ANSWER` keys
        null when the point is infeasible, as a sweep stores it."""
        record = self.model_dict()
        return record if self.feasible else {**record, **dict.fromkeys(NO_ANSWER)}

    def model_dict(self) -> dict:
        """`to_dict()` with the model's numbers even for an infeasible point (what the mapper ranks; a guard of the
        model's arithmetic, tests/test_eval_speed_equal.py, compares them): not an answer to show."""
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
            "dram_traffic_bytes": self.dram_traffic_bytes,
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
