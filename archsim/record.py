"""`Record`: what every evaluated target writes, so the store, the sweep runner and the reports read one schema.

A target is a spatial-array point (`archsim.model.result.Result.record`, target_kind `architecture`), a GPU kernel
call (`archsim.model.gpu.gpu_record`, `gpu`), one system iteration (`archsim.systems.iteration.IterationCost.record`,
`system-iteration`), a serving run (`archsim.systems.serving.ServingResult.record`, `serving`), multi-device
attention (`archsim.systems.seqpar.ParallelResult.record`, `parallel`) or a sparse-attention method on a GPU
(`archsim.systems.sparse_points.point_record`, `sparse`). Each says, in the same fields:
- `time_s`: the target's latency: a point's or a kernel's time, an iteration's time, a serving run's p99 time
  between tokens (the latency a user of the service sees; a run has no single iteration time);
- `energy_pj`: its energy in pJ (a serving run: per output token, as its time is per token), the row's `energy_pj`
  as the target computed it; a target that computes joules gives them x `PJ_PER_J` (a spatial-array point's pJ,
  held in joules, came back one ulp off: J x 1e12 does not always undo pJ / 1e12);
- `area_um2`, `traffic_bytes` (bytes across the off-chip memory boundary): NaN where the target does not model
  them (GPU presets carry no die area; the serving simulator does not count DRAM traffic);
- `busy_s`: seconds each unit was busy within `busy_window_s` (the target's time; a serving run's makespan), so
  utilization = busy / window for every kind alike;
- `config`: what was evaluated, where the record names more than its target (a multi-device point's scheme,
  devices and sequence length; a link check's alpha, batch and NIC rates; a Quest point's budget);
- `extras`: the target's own metrics (a serving run's throughput, TTFT/TBT percentiles, cost per token, counts).

`flat()` is the row the store and the reports read: `latency_s`, `energy_pj`, `area_um2`, `dram_traffic_bytes`,
`edp` (latency x energy in pJ), `utilization.<unit>`, the config and the extras, whatever the kind, with every metric
of an infeasible target NaN (its extras too, whatever their type: a count is no answer either) and its config kept.
`row()` is that row after what the target is and whether it runs (`target_kind`, `target`, `feasible`, `reason`):
the `record` that `archsim run --json`, `archsim simulate --json` and `archsim parallel --json` print. A sweep
stores the same columns for a point (`archsim.dse.points`: its row adds the point's key and fields, sets
`target_kind` to the sweep's kind of point, architecture, gpu, system, parallel or sparse, and `target` to the
point's, a system sweep's `system` as the spec names it, and names the config's columns, which its store keeps on
an infeasible row: `archsim.dse.store.CONFIG_FIELDS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

PJ_PER_J = 1e12
NAN = math.nan
METRICS = ("latency_s", "energy_pj", "area_um2", "dram_traffic_bytes", "edp")  # every kind's columns of `flat()`


@dataclass(frozen=True)
class Record:
    """What every target writes, whatever its kind (module docstring): whether it is feasible and why not, its
    time and energy, and per-unit busy times; kind-specific values go in `config` (what was evaluated) and
    `extras` (what was measured)."""

    target_kind: str  # architecture | gpu | system-iteration | serving | parallel | sparse (module docstring)
    target: str
    feasible: bool
    reason: str
    time_s: float
    energy_pj: float
    area_um2: float = NAN
    traffic_bytes: float = NAN
    busy_s: Mapping[str, float] = field(default_factory=dict)
    busy_window_s: float | None = None  # what `busy_s` is a share of; None = time_s
    config: Mapping[str, Any] = field(default_factory=dict)  # what was evaluated: kept on an infeasible row
    extras: Mapping[str, Any] = field(default_factory=dict)  # the target's metrics: NaN on an infeasible row

    @property
    def energy_j(self) -> float:
        """The energy in joules (`energy_pj` / `PJ_PER_J`), for a reader in SI units; the row holds `energy_pj`."""
        return self.energy_pj / PJ_PER_J

    @property
    def utilization(self) -> dict[str, float]:
        """busy / window per unit (NaN when the window is not positive)."""
        window = self.time_s if self.busy_window_s is None else self.busy_window_s
        return {unit: busy / window if window > 0 else NAN for unit, busy in self.busy_s.items()}

    def failing(self, reason: str) -> Record:
        """This record made infeasible for `reason`, after its own reason if it has one (a serving run whose link
        falls short of BW_min: `archsim simulate --alpha`, a system sweep's point)."""
        return replace(self, feasible=False, reason="; ".join(r for r in (self.reason, reason) if r))

    def flat(self) -> dict[str, Any]:
        """The record as one flat row: its metrics, config and extras, an infeasible target's metrics and extras
        NaN, whatever their type (they are no answer), its config kept (module docstring)."""
        metrics, extras = self._metrics(), self.extras
        if not self.feasible:
            metrics, extras = dict.fromkeys(metrics, NAN), dict.fromkeys(extras, NAN)
        return {**metrics, **self.config, **extras}

    def row(self) -> dict[str, Any]:
        """`flat()` after `target_kind`, `target`, `feasible` and `reason` (module docstring)."""
        return {"target_kind": self.target_kind, "target": self.target, "feasible": self.feasible,
                "reason": self.reason, **self.flat()}

    def _metrics(self) -> dict[str, float]:
        """Every kind's metrics (`METRICS`) and the utilization per unit."""
        return {"latency_s": self.time_s, "energy_pj": self.energy_pj, "area_um2": self.area_um2,
                "dram_traffic_bytes": self.traffic_bytes, "edp": self.time_s * self.energy_pj,
                **{f"utilization.{unit}": value for unit, value in self.utilization.items()}}
