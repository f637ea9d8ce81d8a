"""Architectures: storage levels, compute units, per-action energy tables with technology scaling, and the
presets of the FuseMax artifact (`fusemax`, `flat`, `unfused` in `archsim/arch/presets/`)."""

from archsim.arch.energy import AREA_FACTORS, ENERGY_FACTORS, EnergyTable, area_scale, energy_scale
from archsim.arch.load import OP_TYPES, architecture_from_dict, load_architecture
from archsim.arch.spec import Architecture, ComputeUnit, Memory

__all__ = [
    "AREA_FACTORS",
    "ENERGY_FACTORS",
    "OP_TYPES",
    "Architecture",
    "ComputeUnit",
    "EnergyTable",
    "Memory",
    "architecture_from_dict",
    "area_scale",
    "energy_scale",
    "load_architecture",
]
