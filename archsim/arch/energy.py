"""Per-action energy tables and their scaling between technology nodes.

An `EnergyTable` holds one component's energy per action (pJ) at one node, with the table it came from. Some
actions are composites of others (an exp done on a MAC unit as a chain of 6 MACs): `composed_of` keeps the
recipe, `actions_pj` the resolved value, so the loader and `Architecture.with_changes` can re-derive it.

Scaling follows Stillmaker & Baas, "Scaling equations for the accurate prediction of CMOS device performance from
180 nm to 7 nm", Integration 58 (2017), at Vdd = 0.8 V, as tabulated in AccelForge's
`hwcomponents/scaling/techscaling.py` (see /work/shared/reference/fusemax.md §3.3). Assumptions:
- Energy and area multipliers are relative to 45 nm; scaling a->b multiplies by factor(b) / factor(a). It is
  exact at tabulated nodes.
- Between tabulated nodes the factor is interpolated linearly in log(node) vs log(factor) (a power law between
  neighbours). Nodes outside the table are refused, not extrapolated.
- Area has three tabulated points only (45, 16, 7 nm), so area scaling is limited to 7..45 nm.
- Every action of a component scales by the same factor (dynamic and leakage alike); clock is not scaled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from archsim.frozen import ReadOnlyDict, read_only

# Energy multiplier relative to 45 nm (Stillmaker & Baas 2017, Vdd 0.8 V).
ENERGY_FACTORS: Mapping[float, float] = MappingProxyType({
    130.0: 3.07, 90.0: 1.90, 65.0: 1.24, 45.0: 1.0, 32.0: 0.66, 20.0: 0.22,
    16.0: 0.174, 14.0: 0.139, 10.0: 0.118, 7.0: 0.094,
})
# Area multiplier relative to 45 nm (same source; only these points are tabulated in our reference).
AREA_FACTORS: Mapping[float, float] = MappingProxyType({45.0: 1.0, 16.0: 0.19, 7.0: 0.059})


def _factor(table: Mapping[float, float], node_nm: float, what: str) -> float:
    if node_nm in table:
        return table[node_nm]
    nodes = sorted(table)
    if not nodes[0] < node_nm < nodes[-1]:
        raise ValueError(f"{what} scaling to {node_nm:g} nm: outside the tabulated range "
                         f"{nodes[0]:g}..{nodes[-1]:g} nm (Stillmaker & Baas 2017); no extrapolation")
    hi = next(n for n in nodes if n > node_nm)
    lo = nodes[nodes.index(hi) - 1]
    t = (math.log(node_nm) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return math.exp(math.log(table[lo]) + t * (math.log(table[hi]) - math.log(table[lo])))


def energy_scale(from_nm: float, to_nm: float) -> float:
    """Multiplier for an energy taken at `from_nm` to hold at `to_nm`."""
    if from_nm == to_nm:
        return 1.0
    return _factor(ENERGY_FACTORS, to_nm, "energy") / _factor(ENERGY_FACTORS, from_nm, "energy")


def area_scale(from_nm: float, to_nm: float) -> float:
    """Multiplier for an area taken at `from_nm` to hold at `to_nm` (tabulated for 7..45 nm only)."""
    if from_nm == to_nm:
        return 1.0
    return _factor(AREA_FACTORS, to_nm, "area") / _factor(AREA_FACTORS, from_nm, "area")


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action (pJ) of one component at `node_nm`, from `source` (a file name or citation).

    Memories use the actions read, write (pJ per access, quoted at the memory's `energy_access_bits`) and leak (pJ
    per cycle per instance, quoted at its `leak_clock_hz`: `archsim.arch.quoted`);
    compute units use op names (pJ per op). `composed_of[action]` = {other action: count} for an action priced
    as a chain of others; its `actions_pj` entry is sum(count x energy of the other action), also once scaled (the
    parts are scaled, the composite re-derived from them: `resolved_actions`).
    """

    node_nm: float
    source: str
    actions_pj: Mapping[str, float]
    composed_of: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Read-only copies (frozen: set once, here): `actions_pj`, `composed_of` and each recipe in it."""
        object.__setattr__(self, "actions_pj", read_only(self.actions_pj))
        recipes = self.composed_of
        if not (type(recipes) is ReadOnlyDict and all(type(r) is ReadOnlyDict for r in recipes.values())):
            object.__setattr__(self, "composed_of", ReadOnlyDict({a: read_only(r) for a, r in recipes.items()}))

    def scaled_to(self, node_nm: float) -> EnergyTable:
        """This table at `node_nm`, every action multiplied by the Stillmaker-Baas energy factor."""
        if node_nm == self.node_nm:
            return self
        factor = energy_scale(self.node_nm, node_nm)
        plain = {a: e * factor for a, e in self.actions_pj.items() if a not in self.composed_of}
        return EnergyTable(
            node_nm=float(node_nm),
            source=f"{self.source}, scaled {self.node_nm:g}->{node_nm:g} nm (Stillmaker & Baas 2017)",
            actions_pj=resolved_actions(list(self.actions_pj), plain, self.composed_of),
            composed_of=self.composed_of,
        )


def resolved_actions(actions: Sequence[str], plain: Mapping[str, float],
                     composed_of: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each of `actions` in order (pJ): a plain one's energy, a composite's sum of count x its parts' plain energy.
    The loader and `EnergyTable.scaled_to` both price composites here, so a scaled table written out and read back
    is the same to the last bit."""
    return {a: plain[a] if a in plain else sum(count * plain[p] for p, count in composed_of[a].items())
            for a in actions}
