"""The spec library shipped inside the package, and loading any spec file by name or path.

The repository keeps the libraries at its top (`einsum/`, `mappings/`, `workloads/`); the wheel installs them
as the data packages `archsim.library.einsum`, `.mappings`, `.workloads`, found with importlib.resources
either way; the shipped sweeps live in `archsim/dse/sweeps/` (package `archsim.dse.sweeps`). A name
(`attention-1pass`) is looked up in the library; anything with a `/` or a `.yaml` suffix is a path.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archsim.arch.load import architecture_from_dict
from archsim.arch.spec import Architecture
from archsim.cascade.ir import Cascade
from archsim.cascade.load import cascade_from_dict, read_yaml
from archsim.errors import SpecError
from archsim.mapping.load import mapping_from_dict
from archsim.mapping.spec import Mapping
from archsim.workload import Workload, workload_from_dict

if TYPE_CHECKING:
    from archsim.dse.spec import SweepSpec

# Library kind -> package holding its YAML files.
PACKAGES = {
    "cascades": "archsim.library.einsum",
    "architectures": "archsim.arch.presets",
    "mappings": "archsim.library.mappings",
    "workloads": "archsim.library.workloads",
}
# Every kind found by name: the specs above (what `archsim list` shows) and the shipped sweeps.
_DATA_PACKAGES = {**PACKAGES, "sweeps": "archsim.dse.sweeps"}


def _files(kind: str) -> dict[str, Path]:
    try:
        root = importlib.resources.files(_DATA_PACKAGES[kind])
    except ModuleNotFoundError:
        return {}
    return {Path(e.name).stem: Path(str(e)) for e in root.iterdir() if e.name.endswith(".yaml")}


def names(kind: str) -> list[str]:
    return sorted(_files(kind))


def find(kind: str, name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise SpecError(text, "", "no such file")
        return path
    files = _files(kind)
    if text not in files:
        raise SpecError(text, "", f"not a {kind[:-1]} in the library (known: {', '.join(sorted(files))})")
    return files[text]


def _load(kind: str, name_or_path: str | Path, from_dict):
    path = find(kind, name_or_path)
    return from_dict(read_yaml(path), str(path))


def load_cascade_spec(name_or_path: str | Path) -> Cascade:
    return _load("cascades", name_or_path, cascade_from_dict)


def load_architecture_spec(name_or_path: str | Path) -> Architecture:
    return _load("architectures", name_or_path, architecture_from_dict)


def load_workload_spec(name_or_path: str | Path) -> Workload:
    return _load("workloads", name_or_path, workload_from_dict)


def load_mapping_spec(name_or_path: str | Path) -> Mapping:
    return _load("mappings", name_or_path, mapping_from_dict)


def load_sweep_spec(name_or_path: str | Path) -> SweepSpec:
    """A sweep of `archsim/dse/sweeps/` by name (`demo`), or a sweep YAML by path."""
    from archsim.dse.spec import sweep_from_dict  # imported here: archsim.dse.spec imports this module

    return _load("sweeps", name_or_path, sweep_from_dict)


def load_any(path: str | Path) -> tuple[str, Any]:
    """Load a spec file of any kind, telling the kind from its keys."""
    data = read_yaml(Path(path))
    if isinstance(data, dict) and "einsums" in data:
        return "cascade", cascade_from_dict(data, str(path))
    if isinstance(data, dict) and "params" in data and "ranks" not in data:
        return "workload", workload_from_dict(data, str(path))
    raise SpecError(str(path), "", "cannot tell the kind of spec: expected a cascade (with 'einsums') "
                                   "or a workload (with 'params')")
