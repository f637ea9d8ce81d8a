"""FuseMax's area/latency design space (Nayak et al., MICRO'24, Fig. 12), from archsim's own specs.

For each PE-array dimension d (16 .. 512), the FuseMax architecture is resized: a d x d 2-D array, a d-lane
1-D array, one RF per PE, and M0 = d (square d x d tiles). Its global buffer starts at the minimum tile
footprint (one d-query tile resident, P1 = 1, as the model computes it) and doubles until the point is
compute bound (DRAM time <= compute time); every buffer size is a point. The mapper picks P1 for each. It is a
design-space sweep with a Pareto front (`archsim.dse.pareto`), so it sits in dse, above the systems.

Assumptions, stated because the artifact's Pareto data is not in our reference:
- Global-buffer area scales linearly with capacity from the preset's (94.2 mm2 for 16 MiB at 45 nm, the
  preset's `area_capacity_bytes`, see `archsim.arch.spec`); its per-access energy is kept (energy is reported,
  not plotted).
- PE and RF areas are the preset's per-instance areas times the instance count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pandas as pd

from archsim.arch.spec import Architecture
from archsim.dse.pareto import pareto_mask
from archsim.library import load_architecture_spec, load_mapping_spec
from archsim.mapping.spec import SEARCH
from archsim.model.analytical import evaluate
from archsim.point import prepare
from archsim.systems.fusemax import MODELS

PE_DIMS = (16, 32, 64, 128, 256, 512)
SEQ_LEN = 1 << 18  # 256K tokens
MAX_DOUBLINGS = 24


def resized(arch: Architecture, pe_dim: int, buffer_bytes: int) -> Architecture:
    """The FuseMax architecture with a pe_dim x pe_dim array and the given global buffer."""
    return arch.with_changes(**{
        "units.array2d.shape": [pe_dim, pe_dim],
        "units.array1d.shape": [pe_dim],
        "memories.RF.instances": pe_dim * pe_dim,
        "memories.RF1D.instances": pe_dim,
        "memories.GlobalBuffer.capacity_bytes": buffer_bytes,
    })


def min_footprint_bytes(model: str, pe_dim: int, seq_len: int = SEQ_LEN, mapping: str = "fusemax") -> float:
    """Global-buffer bytes of the mapping with every searched factor at 1 (one tile per level)."""
    spec = load_mapping_spec(mapping)
    ones = replace(spec, groups=tuple(g.with_factors({i: 1 for i, lp in enumerate(g.loops) if lp.factor == SEARCH})
                                      for g in spec.groups))
    base = load_architecture_spec(spec.architecture)
    point = prepare(ones, arch=resized(base, pe_dim, base.memory("GlobalBuffer").capacity_bytes),
                    workload=MODELS[model], sets={"seq_len": seq_len, "M0": pe_dim})
    return evaluate(point.binding, point.analysis, point.arch, point.mapping).footprint_bytes["GlobalBuffer"]


def pareto_points(model: str, pe_dim: int, seq_len: int = SEQ_LEN, mapping: str = "fusemax") -> list[dict]:
    """Every buffer size of one PE dimension, from the minimum tile footprint, doubling to compute bound."""
    base = load_architecture_spec(load_mapping_spec(mapping).architecture)
    records = []
    buffer_bytes = int(min_footprint_bytes(model, pe_dim, seq_len, mapping))
    for _ in range(MAX_DOUBLINGS):
        arch = resized(base, pe_dim, buffer_bytes)
        point = prepare(mapping, arch=arch, workload=MODELS[model], sets={"seq_len": seq_len, "M0": pe_dim})
        result = evaluate(point.binding, point.analysis, point.arch, point.mapping)
        compute_s = result.compute_cycles / arch.clock_hz
        records.append({
            "config": mapping, "model": model, "seq_len": seq_len, "pe_dim": pe_dim, "buffer_bytes": buffer_bytes,
            "area_um2": arch.area_um2(), "latency_s": result.latency_s, "energy_pj": result.energy_pj,
            "feasible": result.feasible, "compute_bound": result.memory_s.get("DRAM", 0.0) <= compute_s,
        })
        if records[-1]["compute_bound"]:
            break
        buffer_bytes *= 2
    return records


def pareto_records(models: Iterable[str] = MODELS, pe_dims: Iterable[int] = PE_DIMS,
                   seq_len: int = SEQ_LEN) -> list[dict]:
    """All points of every model and PE dimension, each flagged `on_front` (area and latency, per model)."""
    records = [r for m in models for d in pe_dims for r in pareto_points(m, d, seq_len)]
    df = pd.DataFrame(records)
    df["on_front"] = False
    for _, rows in df.groupby("model"):
        df.loc[rows.index, "on_front"] = pareto_mask(rows, ["area_um2", "latency_s"])
    return df.to_dict("records")
