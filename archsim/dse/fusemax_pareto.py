"""FuseMax's area/latency design space (Nayak et al., MICRO'24, Fig. 12), from archsim's own specs.

For each PE-array dimension d (16 .. 512), the FuseMax architecture is resized: a d x d 2-D array, a d-lane
1-D array, one RF per PE, and M0 = d (square d x d tiles). Its global buffer is sized as the artifact sizes it
(`src/utils/pareto.py` `get_l3_sz` L35-44): 16 x d x E x m bytes (d-wide rows, 8 x E x m of them), m = 1, 2,
4, ... doubling until the point is compute bound (DRAM time <= compute time); every buffer size is a point. The
mapper picks P1 for each. It is a design-space sweep with a Pareto front (`archsim.dse.pareto`), so it sits in
dse, above the systems.

Area (`fig12_area_um2`) is the artifact's Fig. 12 area (../shared/reference/fusemax-area.md s3-s4), which its
Accelergy run computes at 45 nm from per-component areas:
- each register file is a full 32-bit x max(64, depth) file (Accelergy @ c7e26d2 ignores `area_share`):
  262.36 x max(64, depth) + 11.63484 x max(1, ceil(log2 depth)) um^2, depth 2t per 2-D PE and 8t per 1-D lane,
  t = 2 max(1, d // E) (`pareto.py` L17-33);
- a 2-D PE is RF + max 49.28944 + mac 1545.0 (`add` excluded, `cascade.py` L244-246); a 1-D lane adds divide
  23740.9375; the networks count 1 um^2 per instance (d for the 2-D array, plus two single ones);
- the global buffer is CACTI's area for a 16d-bit x 8Em-row SRAM (1 RW port, 1 bank, 45 nm) plus two address
  generators of ceil(log2 rows) bits at 5.81742 um^2 per bit. CACTI is not run here: its areas at the sizes the
  artifact uses are tabulated (`CACTI_BUFFER_UM2`, fusemax-area.md s3); another size is refused.
The architecture's own `area_um2()` (the preset's per-instance areas) is reported beside it as `spec_area_um2`.
Per-access energies are the preset's, whatever the buffer size (energy is reported, not plotted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from archsim.arch.spec import Architecture
from archsim.dse.pareto import pareto_mask_by
from archsim.library import load_architecture_spec, load_mapping_spec
from archsim.model.analytical import evaluate
from archsim.point import prepare
from archsim.systems.fusemax import MODELS

PE_DIMS = (16, 32, 64, 128, 256, 512)
SEQ_LEN = 1 << 18  # 256K tokens
MAX_DOUBLINGS = 24

# CACTI (45 nm, 1 RW port, 1 bank) area in um^2 of the artifact's global buffers, (row bits, bytes) -> area,
# before the address generators (fusemax-area.md s3, the run-time CACTI of accelergy-cacti-plug-in @ b07bec5).
CACTI_BUFFER_UM2 = {
    (256, 16 << 10): 53741.5, (256, 32 << 10): 103395.0,
    (512, 32 << 10): 115480.0, (512, 64 << 10): 221984.0,
    (1024, 64 << 10): 268744.0, (1024, 128 << 10): 438107.0,
    (2048, 128 << 10): 710656.0, (2048, 256 << 10): 1042380.0,
    (4096, 256 << 10): 2140930.0, (4096, 512 << 10): 2797370.0,
    (8192, 512 << 10): 18704000.0, (8192, 1 << 20): 20019200.0, (8192, 2 << 20): 22647000.0,
}
ADDRESS_GEN_UM2_PER_BIT = 2 * 5.81742  # two NeuroSim intadders (smartbuffer_*.yaml), per address bit
REG_BIT_UM2, REG_COMPARATOR_UM2 = 5.98, 71.0  # Aladdin register per bit, comparator per entry (regfile.yaml)
MAC_UM2, MAX_UM2, DIVIDE_UM2 = 1545.0, 49.28944, 23740.9375  # fpmac, mac_max, fpmac_divide at 16 b, 45 nm


def artifact_buffer_bytes(pe_dim: int, head_dim: int, multiplier: int = 1) -> int:
    """The artifact's global buffer for a d x d array: 16 x d x E x m bytes (`get_l3_sz`, P1 = 1)."""
    return 16 * pe_dim * head_dim * multiplier


def _rf_um2(depth: int) -> float:
    entries = max(64, depth)
    return 32 * REG_BIT_UM2 * entries + REG_COMPARATOR_UM2 * entries + ADDRESS_GEN_UM2_PER_BIT * max(
        1, math.ceil(math.log2(depth)))


def fig12_area_um2(pe_dim: int, head_dim: int, buffer_bytes: int) -> float:
    """The artifact's Fig. 12 area of a d x d FuseMax with this buffer (see the module docstring)."""
    row_bits = 16 * pe_dim
    rows = buffer_bytes * 8 // row_bits
    if (row_bits, buffer_bytes) not in CACTI_BUFFER_UM2:
        raise ValueError(f"no CACTI area for a {buffer_bytes} B buffer of {row_bits}-bit rows (tabulated: "
                         f"{', '.join(f'{w} b x {b} B' for w, b in CACTI_BUFFER_UM2)})")
    buffer = CACTI_BUFFER_UM2[row_bits, buffer_bytes] + ADDRESS_GEN_UM2_PER_BIT * math.ceil(math.log2(rows))
    tiles = 2 * max(1, pe_dim // head_dim)
    pe_2d = _rf_um2(2 * tiles) + MAX_UM2 + MAC_UM2
    lane_1d = _rf_um2(8 * tiles) + MAX_UM2 + MAC_UM2 + DIVIDE_UM2
    return pe_dim * pe_dim * pe_2d + pe_dim + 1.0 + buffer + 1.0 + pe_dim * lane_1d


def resized(arch: Architecture, pe_dim: int, buffer_bytes: int) -> Architecture:
    """The FuseMax architecture with a pe_dim x pe_dim array and the given global buffer."""
    return arch.with_changes(**{
        "units.array2d.shape": [pe_dim, pe_dim],
        "units.array1d.shape": [pe_dim],
        "memories.RF.instances": pe_dim * pe_dim,
        "memories.RF1D.instances": pe_dim,
        "memories.GlobalBuffer.capacity_bytes": buffer_bytes,
    })


def pareto_points(model: str, pe_dim: int, seq_len: int = SEQ_LEN, mapping: str = "fusemax") -> list[dict]:
    """Every buffer size of one PE dimension, from the artifact's 16 x d x E bytes, doubling to compute bound."""
    base = load_architecture_spec(load_mapping_spec(mapping).architecture)
    head_dim = prepare(mapping, workload=MODELS[model], sets={"seq_len": seq_len}).binding.rank_sizes["E"]
    records = []
    buffer_bytes = artifact_buffer_bytes(pe_dim, head_dim)
    for _ in range(MAX_DOUBLINGS):
        arch = resized(base, pe_dim, buffer_bytes)
        point = prepare(mapping, arch=arch, workload=MODELS[model], sets={"seq_len": seq_len, "M0": pe_dim})
        result = evaluate(point.binding, point.analysis, point.arch, point.mapping)
        compute_s = result.compute_cycles / arch.clock_hz
        records.append({
            "config": mapping, "model": model, "seq_len": seq_len, "pe_dim": pe_dim, "buffer_bytes": buffer_bytes,
            "area_um2": fig12_area_um2(pe_dim, head_dim, buffer_bytes), "spec_area_um2": arch.area_um2(),
            "latency_s": result.latency_s, "energy_pj": result.energy_pj,
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
    df["on_front"] = pareto_mask_by(df, ["area_um2", "latency_s"], ["model"])
    return df.to_dict("records")
