"""The spec library shipped inside the package, and loading any spec file by name or path.

The repository keeps the libraries at its top (`einsum/`, `mappings/`, `workloads/`); the wheel installs them
as the data packages `archsim.library.einsum`, `.mappings`, `.workloads`, found with importlib.resources
either way; the shipped sweeps live in `archsim/dse/sweeps/` (package `archsim.dse.sweeps`). A name
(`attention-1pass`) is looked up in the library; anything with a `/` or a `.yaml` suffix is a path.
"""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archsim.arch.load import architecture_from_dict
from archsim.arch.spec import Architecture
from archsim.cascade.ir import Cascade
from archsim.cascade.load import cascade_from_dict, is_file, is_spec_path, read_yaml
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
    if is_spec_path(text):
        path = Path(text)
        if not is_file(path, text):
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


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as f:
        first = f.readline(4096).decode("utf-8", errors="replace")
    return [cell.strip().strip('"') for cell in first.split(",")]


def _load_trace(path: Path) -> Any:
    from archsim.systems.requests import read_trace

    return read_trace(path)


def _load_measurements(path: Path) -> Any:
    from archsim.gpu.measurements import read_measurements

    return read_measurements(path)[0]


def _load_yaml_kind(loader: str):
    """A from_dict loader by dotted name, imported only when a file of that kind is checked."""
    module, _, function = loader.rpartition(".")

    def load(data: Any, source: str) -> Any:
        return getattr(importlib.import_module(module), function)(data, source)

    return load


# Spec kinds that `archsim check` tells apart by shape: (kind, the keys that mark it, its from_dict loader).
YAML_KINDS = (
    ("cascade", {"einsums"}, cascade_from_dict),
    ("mapping", {"groups"}, mapping_from_dict),
    ("sweep", {"axes"}, _load_yaml_kind("archsim.dse.spec.sweep_from_dict")),
    ("calibration", {"families"}, _load_yaml_kind("archsim.gpu.params.calibration_from_dict")),
    ("gpu", {"sm_count"}, _load_yaml_kind("archsim.gpu.load.gpu_from_dict")),
    ("architecture", {"units", "memories"}, architecture_from_dict),
    ("link", {"bytes_per_s_per_direction"}, _load_yaml_kind("archsim.systems.links.link_from_dict")),
    ("workload", {"params"}, workload_from_dict),
)
# CSV kinds, told apart by the header: (kind, columns that mark it, loader of the path).
CSV_KINDS = (
    ("trace", {"arrival_s", "prompt_tokens", "output_tokens"}, _load_trace),
    ("measurements", {"gpu", "kernel", "seqlen", "metric", "value"}, _load_measurements),
)


def load_any(path: str | Path) -> tuple[str, Any]:
    """Load a spec file of any kind, telling the kind from its keys (YAML) or its header (CSV)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), "", "no such file" if not path.exists() else "not a regular file")
    if path.suffix.lower() == ".csv":
        header = set(_csv_header(path))
        for kind, marks, loader in CSV_KINDS:
            if marks <= header:
                return kind, loader(path)
        raise SpecError(str(path), "line 1", "cannot tell the kind of CSV: expected a request trace ("
                        + ",".join(sorted(CSV_KINDS[0][1])) + ") or GPU measurements (with gpu, kernel, seqlen, "
                        "metric, value, ...)")
    data = read_yaml(path)
    if isinstance(data, dict):
        for kind, marks, loader in YAML_KINDS:
            if marks & set(data):
                return kind, loader(data, str(path))
    raise SpecError(str(path), "", "cannot tell the kind of spec: expected a mapping with one of "
                    + "; ".join(f"'{sorted(marks)[0]}' ({kind})" for kind, marks, _ in YAML_KINDS))
