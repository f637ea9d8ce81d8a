"""Telling the kind of any spec file, for `archsim check`: YAML by its keys, CSV by its header, and a request trace in
JSON Lines (Mooncake's) by its content, as `archsim.systems.requests.read_trace` tells it (`is_json_lines`: a file
whose first character that is not blank is `{`), unless it is named as one document, .yaml, .yml or .json: a spec.

It needs every kind's loader (cascades to sweeps, GPU presets, calibrations, links, request traces, measurements),
so it sits in the top layer; the library below finds and loads only the cascade, architecture, mapping and workload
kinds. The loaders of the higher layers are imported when a file of their kind is checked, so `archsim --help`
stays fast. A mapping is also resolved against the cascade and architecture it names (`_load_mapping`), so a unit,
level, tensor or rank that `archsim run` would refuse is refused here with run's message.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from archsim import library
from archsim.cascade.load import cascade_from_dict
from archsim.errors import SpecError
from archsim.mapping.load import mapping_from_dict
from archsim.spec_files import is_file, is_spec_path, read_yaml, spec_beside
from archsim.systems.requests import AZURE_COLUMNS, TRACE_COLUMNS, is_json_lines
from archsim.workload import workload_from_dict


def _is_json_lines(path: Path) -> bool:
    """Whether a file's text is a JSON Lines trace by `is_json_lines`, told from its first 64 KiB (a UTF-8
    byte-order mark dropped, as the readers drop it); a file that cannot be read is not (its reader says why)."""
    try:
        with path.open("rb") as f:
            start = f.read(2**16).decode("utf-8-sig", errors="replace")
    except OSError:
        return False
    return is_json_lines(start)


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as f:
        first = f.readline(4096).decode("utf-8-sig", errors="replace")  # a byte-order mark, as the readers skip it
    return [cell.strip().strip('"') for cell in first.split(",")]


def _load_trace(path: Path) -> Any:
    """The requests as `archsim simulate --trace` reads and checks them."""
    from archsim.systems.requests import check_requests, read_trace

    requests = read_trace(path)
    check_requests(requests, str(path))
    return requests


def _load_measurements(path: Path) -> Any:
    from archsim.gpu.measurements import read_measurements

    return read_measurements(path)  # (the timed rows, the rows skipped as no timings, each with its reason)


def _load_gpu(data: Any, source: str) -> Any:
    """A GPU preset, its `host_link` checked against the link presets (the systems layer's, above the GPU's)."""
    from archsim.gpu.load import gpu_from_dict
    from archsim.systems.links import check_host_link

    return check_host_link(gpu_from_dict(data, source))


def _load_mapping(data: Any, source: str) -> Any:
    """A mapping, its names resolved against the cascade and architecture its `cascade:` and `architecture:` name
    (`archsim.mapping.resolve.check_names`: what `archsim run` checks before it binds a size); an error in one of
    those files says which mapping named it, as run's does."""
    from archsim.mapping.resolve import check_names

    mapping = mapping_from_dict(data, source)
    named = []
    for field, kind, load in (("cascade", "cascades", library.load_cascade_spec),
                              ("architecture", "architectures", library.load_architecture_spec)):
        path = library.find_named(kind, getattr(mapping, field), source, field)
        try:
            named.append(load(path))
        except SpecError as exc:
            raise SpecError(exc.source, exc.where, f"{exc.message} (the {field} of {source})") from None
    check_names(*named, mapping)
    return mapping


def _load_yaml_kind(loader: str):
    """A from_dict loader by dotted name, imported only when a file of that kind is checked."""
    module, _, function = loader.rpartition(".")

    def load(data: Any, source: str) -> Any:
        return getattr(importlib.import_module(module), function)(data, source)

    return load


# Spec kinds that `archsim check` tells apart by shape: (kind, the keys that mark it, its from_dict loader).
YAML_KINDS = (
    ("cascade", {"einsums", "ranks", "inputs", "outputs"}, cascade_from_dict),
    ("mapping", {"groups"}, _load_mapping),
    ("sweep", {"axes"}, _load_yaml_kind("archsim.dse.spec.sweep_from_dict")),
    ("calibration", {"families"}, _load_yaml_kind("archsim.gpu.params.calibration_from_dict")),
    ("gpu", {"sm_count"}, _load_gpu),
    ("architecture", {"units", "memories"}, library.architecture_from_data),
    ("system", {"devices", "placement", "base"}, _load_yaml_kind("archsim.systems.system_spec.system_from_dict")),
    ("link", {"bytes_per_s_per_direction"}, _load_yaml_kind("archsim.systems.links.link_from_dict")),
    ("chip", {"matmul_flops_per_s"}, _load_yaml_kind("archsim.systems.chip.chip_from_dict")),
    ("topology", {"levels"}, _load_yaml_kind("archsim.systems.topology.topology_from_dict")),
    ("pattern map", {"patterns", "head_kind"}, _load_yaml_kind("archsim.workload_patterns.pattern_map_from_dict")),
    ("workload", {"params"}, workload_from_dict),
)


def _derives_a_gpu(data: dict, source: str, depth: int = 0) -> bool:
    """Whether the spec at `source`, which may have a `base`, derives a GPU preset: its own keys (besides `base`
    and the name, description and source every spec has) are all GPU preset keys, or, where it has none of its
    own, its base is a GPU preset: a packaged one's name, or a file (relative to `source`) with `sm_count` or
    itself deriving from one. A derived GPU preset need not repeat `sm_count`, and its `base` would otherwise tell
    it as a system (a misspelt GPU base named no system preset); a base that cannot be read tells nothing (the
    loader says why)."""
    base = data.get("base")
    if not isinstance(base, str):
        return False
    from archsim.gpu.load import KEYS, MAX_BASES, PRESETS_PACKAGE, TEXT

    own = set(data) - {"base", *TEXT}
    if own:
        return own <= set(KEYS)
    if not is_spec_path(base):
        return base in library.names("GPU presets", PRESETS_PACKAGE)
    path, parsed = _base_spec(base, source, depth < MAX_BASES)
    return parsed is not None and ("sm_count" in parsed or _derives_a_gpu(parsed, path, depth + 1))


def _derives_an_architecture(data: dict, source: str, depth: int = 0) -> bool:
    """Whether the spec at `source` derives an architecture (`archsim.arch.load`): its `base` is a packaged
    architecture's name, or a file (relative to `source`) with `units` or itself deriving one. Told by the base, as
    a derived architecture that changes only its clock has no key of its own that marks the kind (`clock_hz` is a
    GPU preset's key too, and `base` a system's)."""
    base = data.get("base")
    if not isinstance(base, str):
        return False
    if not is_spec_path(base):
        return base in library.names("architectures")
    path, parsed = _base_spec(base, source, depth < library.MAX_ARCHITECTURE_BASES)
    return parsed is not None and ("units" in parsed or _derives_an_architecture(parsed, path, depth + 1))


def _base_spec(base: str, source: str, within_chain: bool) -> tuple[str, dict | None]:
    """The path a `base` path names (relative to `source`) and its parsed mapping; None for the mapping where the
    chain of bases is too long (`within_chain` false), or the file cannot be read or holds no mapping (the loader
    says why)."""
    path = spec_beside(base, source)
    try:
        parsed = read_yaml(Path(path)) if within_chain and is_file(Path(path), path) else None
    except SpecError:
        parsed = None
    return path, parsed if isinstance(parsed, dict) else None


# CSV kinds, told apart by the header: (kind, columns that mark it, loader of the path). A header is of the kind
# whose marks it shares most of, so that a file missing one of them hears from its loader which (as `archsim
# validate` or `simulate --trace` would say), not that its kind is unknown.
CSV_KINDS = (
    ("trace", set(TRACE_COLUMNS), _load_trace),
    ("trace", set(AZURE_COLUMNS), _load_trace),  # Azure's LLM inference traces
    ("measurements", {"gpu", "kernel", "seqlen", "metric", "value"}, _load_measurements),
)
# a file so named is one YAML or JSON document, a spec, even one written as a JSON object ("{")
DOCUMENT_SUFFIXES = (".yaml", ".yml", ".json")


def load_any(path: str | Path) -> tuple[str, Any]:
    """Load a spec file of any kind, telling the kind from its content (a JSON Lines trace, `_is_json_lines`),
    its header (CSV) or its keys (YAML)."""
    path = Path(path)
    if not is_file(path, str(path)):
        raise SpecError(str(path), "", "no such file" if not path.exists() else "not a regular file")
    if path.suffix.lower() not in DOCUMENT_SUFFIXES and _is_json_lines(path):
        return "trace", _load_trace(path)
    if path.suffix.lower() == ".csv":
        header = set(_csv_header(path))
        kind, marks, loader = max(CSV_KINDS, key=lambda k: len(k[1] & header))
        if marks & header:
            return kind, loader(path)
        raise SpecError(str(path), "line 1", f"cannot tell the kind of CSV: expected a request trace "
                        f"({','.join(TRACE_COLUMNS)}, or Azure's {','.join(AZURE_COLUMNS)}) or GPU measurements "
                        f"(with gpu, kernel, seqlen, metric, value, ...)")
    data = read_yaml(path)
    if isinstance(data, dict) and _derives_an_architecture(data, str(path)):
        return "architecture", library.architecture_from_data(data, str(path))
    if isinstance(data, dict):
        for kind, marks, loader in YAML_KINDS:
            if marks & set(data) or (kind == "gpu" and _derives_a_gpu(data, str(path))):
                return kind, loader(data, str(path))
    raise SpecError(str(path), "", "cannot tell the kind of spec: expected a mapping with one of "
                    + "; ".join("/".join(f"'{m}'" for m in sorted(marks)) + f" ({kind})"
                                for kind, marks, _ in YAML_KINDS))
