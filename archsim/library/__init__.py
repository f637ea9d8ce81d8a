"""The spec library shipped inside the package, and loading any spec file by name or path.

The repository keeps the libraries at its top (`einsum/`, `mappings/`, `workloads/`); the wheel installs them
as the data packages `archsim.library.einsum`, `.mappings`, `.workloads`, found with importlib.resources
either way. A name (`attention-1pass`) is looked up in the library; anything with a `/` or a `.yaml` suffix is a
path. Other layers keep their own YAML packages and find in them with `find(kind, name, package)` (the shipped
sweeps: `archsim.dse.spec.load_sweep_spec`). Telling the kind of any spec file (`archsim check`) needs every kind's
loader, so it is `archsim.commands.spec_kinds.load_any`, in the top layer.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from archsim.arch.load import architecture_from_dict
from archsim.arch.quoted import leaves, settled
from archsim.arch.spec import Architecture
from archsim.cascade.ir import Cascade
from archsim.cascade.load import cascade_from_dict
from archsim.errors import SpecError, kind_of
from archsim.mapping.load import mapping_from_dict
from archsim.mapping.spec import Mapping
from archsim.spec_files import (
    is_file,
    is_spec_path,
    laid_over,
    moved_beside,
    parse_yaml,
    read_spec_bytes,
    spec_beside,
)
from archsim.workload import Workload, workload_from_dict

# Library kind -> package holding its YAML files.
PACKAGES = {
    "cascades": "archsim.library.einsum",
    "architectures": "archsim.arch.presets",
    "mappings": "archsim.library.mappings",
    "workloads": "archsim.library.workloads",
}


def _files(package: str) -> dict[str, Path]:
    """A package's YAML files by stem. A package that cannot be imported is an error, not an empty library: the
    shipped ones are missing only when `archsim` is imported from a source checkout that is not installed, whose
    top folders (`einsum/`, ...) only an install maps into the package (a non-editable install run from the
    checkout's root imports the checkout)."""
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        package_dir = Path(__file__).resolve().parents[1]
        raise SpecError(package, "", f"not found: archsim is imported from {package_dir}, a source checkout's "
                        f"folder that is not installed; install it (pip install -e {package_dir.parent}) or run "
                        "archsim from another folder") from None
    return dict(_listing(package, _stamp(Path(str(root)))))


@functools.lru_cache(maxsize=64)
def _listing(package: str, stamp: tuple[int, int]) -> tuple[tuple[str, Path], ...]:
    """A package's YAML files by stem, remembered per folder stamp (a file added or removed changes it)."""
    root = importlib.resources.files(package)
    return tuple((Path(e.name).stem, Path(str(e))) for e in root.iterdir() if e.name.endswith(".yaml"))


def _stamp(path: Path) -> tuple[int, int]:
    """What says a file or folder changed: its modification time (ns) and size; (0, 0) if it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


def _read(path: Path, from_dict):
    """`from_dict` of the YAML at `path`, remembered per file content: a spec loaded again (every point of a sweep,
    every `run_point` call by name) is read, but not parsed and validated again until its bytes change, or the
    bytes of a file it loaded while it was parsed (a system's GPU preset named by path). Specs are frozen
    dataclasses, shared by the callers that load the same file (and caches above keep results per spec object), so
    none may be edited in place: the mappings of a workload, cascade, GPU preset, architecture and mapping refuse it
    (`archsim.frozen.ReadOnlyDict`); a changed spec is a `dataclasses.replace` with a new dict."""
    data = read_spec_bytes(path)
    key = (str(path), data, from_dict)
    with _LOCK:
        found = _PARSED.get(key)
        if found is not None:
            _PARSED.move_to_end(key)  # least recently loaded goes first
    if found is not None and all(_bytes_or_none(p) == d for p, d in found[1]):
        spec, read = found
    else:
        reading = _reading()
        reading.append([])
        try:
            spec = from_dict(parse_yaml(data, path), str(path))
        finally:
            read = tuple(dict(reading.pop()).items())  # each file once
        with _LOCK:
            _PARSED[key] = (spec, read)
            _PARSED.move_to_end(key)
            if len(_PARSED) > PARSED_SPECS:
                _PARSED.popitem(last=False)
    depends_on(path, data, *read)  # a spec being parsed loaded this one: it depends on it and on what it read
    return spec


def depends_on(path: Path, data: bytes, *read: tuple[Path, bytes]) -> None:
    """Record, for the spec being parsed on this thread (if any), that it read `data` from `path` (and the files of
    `read`), so its remembered parse is used only while they hold the same bytes: a loader that reads a file
    itself (a system's `base`) calls this."""
    reading = _reading()
    if reading:
        reading[-1].extend(((path, data), *read))


PARSED_SPECS = 512  # specs remembered (the least recently loaded dropped first)
_PARSED: OrderedDict[tuple, tuple[object, tuple[tuple[Path, bytes], ...]]] = OrderedDict()
_LOCK = threading.Lock()  # sweeps may load specs from several threads
_THREAD = threading.local()


def _bytes_or_none(path: Path) -> bytes | None:
    """A loaded file's bytes as they are now, None when it cannot be read (its spec is parsed again and says why)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _reading() -> list[list[tuple[Path, bytes]]]:
    """This thread's specs being parsed, innermost last, each with the files it has loaded so far."""
    if not hasattr(_THREAD, "reading"):
        _THREAD.reading = []
    return _THREAD.reading


def names(kind: str, package: str | None = None) -> list[str]:
    """The names of a kind's YAML files, in `package` (default: the library's package for `kind`)."""
    return sorted(_files(package or PACKAGES[kind]))


def find(kind: str, name_or_path: str | Path, package: str | None = None) -> Path:
    """The file of a name in `package` (default: the library's package for `kind`), or a path."""
    text = str(name_or_path)
    if is_spec_path(text):
        path = Path(text)
        if not is_file(path, text):
            raise SpecError(text, "", "no such file" if not path.exists() else
                            f"a folder or other non-file, expected {_article(kind[:-1])} YAML file")
        return path
    files = _files(package or PACKAGES[kind])
    if text not in files:
        where = "" if package else " in the library"
        raise SpecError(text, "", f"not {_article(kind[:-1])}{where} (known: {', '.join(sorted(files))})")
    return files[text]


def _article(noun: str) -> str:
    """`noun` after "a" or "an" (by its first letter: the library's kinds are plain English nouns)."""
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def find_named(kind: str, name: str, source: str, key: str) -> Path:
    """The file that the spec at `source` names at `key` (a mapping's cascade, a sweep's workload, ...); a name
    that finds no spec is a SpecError at `key` of `source`, the file that holds the name."""
    try:
        return find(kind, name)
    except SpecError as exc:
        raise SpecError(source, key, f"{name!r}: {exc.message}") from None


def base_file(kind: str, value: object, source: str, bases: tuple[str, ...], package: str,
              max_bases: int) -> tuple[Path, tuple[str, ...], bytes]:
    """The file the spec at `source` names as its `base` (a preset of `package` by name, or a path relative to
    `source`), the chain of deriving files with `source` added, and the file's bytes, recorded as a dependency of
    the deriving spec (parsed again when the base's file changes). `bases` are the files deriving from `source`; a
    value that is no name or path, names no file, or closes a cycle or a chain of more than `max_bases` is a
    SpecError at `base` of `source`. The one rule of system specs' and GPU presets' bases."""
    if not isinstance(value, str) or not value:
        raise SpecError(source, "base", f"expected {_article(kind[:-1])} name or a YAML path, got {kind_of(value)}")
    try:
        path = find(kind, spec_beside(value, source), package)
    except SpecError as exc:
        raise SpecError(source, "base", f"{spec_beside(value, source)!r}: {exc.message}") from None
    chain = (*bases, str(Path(source).resolve()) if Path(source).is_file() else source)
    if str(path.resolve()) in chain or len(chain) > max_bases:
        raise SpecError(source, "base", f"a cycle of bases (or more than {max_bases}): "
                                        f"{' -> '.join((*chain, str(path.resolve())))}")
    data = read_spec_bytes(path)
    depends_on(path, data)
    return path, chain, data


def load_preset(kind: str, name_or_path: str | Path, package: str, from_dict):
    """A preset of `package` by name, or a YAML file by path, read by `from_dict` (GPU presets, links, ...);
    `kind` names the plural in errors ("GPU presets")."""
    return _read(find(kind, name_or_path, package), from_dict)


def _load(kind: str, name_or_path: str | Path, from_dict):
    return _read(find(kind, name_or_path), from_dict)


def load_cascade_spec(name_or_path: str | Path) -> Cascade:
    """A cascade by library name or a YAML file by path; every problem is a SpecError naming the file."""
    return _load("cascades", name_or_path, cascade_from_dict)


class _Loaded(NamedTuple):
    package: object  # the library's cascade package (its module) the file was found in
    path: Path
    stamp: tuple[int, ...]
    cascade: Cascade


_CURRENT: dict[str, _Loaded] = {}  # library name -> its latest load; one entry per library cascade asked for


def library_cascade(name: str) -> Cascade:
    """The library cascade `name` as its file reads now. The library's loader (`load_cascade_spec`) is the
    authority: it reads the file and parses it again when its bytes change. It costs ~43 us a call, most of it
    finding the name's file, and the models ask per op and per kernel tile (~2 x 10^5 times in `archsim reproduce
    duplex`), so it is asked only when the file's stat (`_file_stamp`: modification and change times in ns, size,
    inode) or the library's cascade package differs from what the name's last load saw; otherwise that load's
    Cascade is returned (~2 us: one stat). The stat is taken before the load, so an edit made during it is seen at
    the next call. Assumes a file's content changes only with its stat (Linux's nanosecond, multigrain timestamps:
    every write observed apart moves them; a file system with coarser times could miss an edit that keeps the size
    within one tick until the next change). The systems (`archsim.systems.step`) and the GPU model
    (`archsim.model.gpu_tiles`) take their library cascades here. Safe under threads: each step is one dict
    operation."""
    package = sys.modules.get(PACKAGES["cascades"])
    known = _CURRENT.get(name)
    if known is not None and known.package is package:
        stamp = _file_stamp(known.path)
        if stamp is not None and stamp == known.stamp:
            return known.cascade
    path = find("cascades", name)
    stamp = _file_stamp(path)
    cascade = load_cascade_spec(path)
    if stamp is not None:
        _CURRENT[name] = _Loaded(sys.modules.get(PACKAGES["cascades"]), path, stamp, cascade)
    return cascade


def _file_stamp(path: Path) -> tuple[int, ...] | None:
    """What says a file changed: its modification and change times (ns), size and inode; None if it cannot be read
    (the library's loader then says why)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)


def load_architecture_spec(name_or_path: str | Path) -> Architecture:
    """An architecture by library name or a YAML file by path (`architecture_from_data`: it may have a base); every
    problem is a SpecError naming the file."""
    return _load("architectures", name_or_path, architecture_from_data)


MAX_ARCHITECTURE_BASES = 8  # bases of bases, as GPU presets allow


def architecture_from_data(data: object, source: str = "<python>") -> Architecture:
    """`archsim.arch.load.architecture_from_dict` of a parsed architecture file, which may derive from another, as
    a GPU preset does (`archsim.gpu.load`): `base: fusemax` (a library architecture's name, or a YAML path relative
    to the file's folder) loads and validates the base first (its errors name its file), then lays the file's own
    keys over the base's (`archsim.spec_files.laid_over`: `memories` and `units` merge level by level and key by
    key, `null` removes a key, any other value replaces the base's; a level the base lacks goes after its levels,
    innermost). The derived file must give its `name`; `description` and `source` are the base's when it leaves
    them out. The base's memory prices stay quoted at its widths and clock unless the file restates them
    (`archsim.arch.quoted.settled`: a width or a clock changed alone keeps the energy per bit and the leak power).
    A chain of more than `MAX_ARCHITECTURE_BASES` bases, or a cycle, is refused at `base`."""
    if isinstance(data, dict) and "base" in data:
        data = derived_data("architectures", data, source, (), PACKAGES["architectures"], MAX_ARCHITECTURE_BASES,
                            marker="units", validate=architecture_from_dict,
                            settle=lambda base, layer: settled(base, dict(leaves("", layer))))
    return architecture_from_dict(data, source)


def derived_data(kind: str, data: dict[str, Any], source: str, bases: tuple[str, ...], package: str,
                 max_bases: int, *, marker: str, validate: Callable[[dict, str], object],
                 uninherited: tuple[str, ...] = (), paths: tuple[str, ...] = (),
                 settle: Callable[[dict, dict], dict] | None = None) -> dict[str, Any]:
    """The spec of `kind` at `source`, which has a `base` (`base_file`), laid over its base's data
    (`archsim.spec_files.laid_over`), less the base's `uninherited` keys. The base is resolved the same way when it
    has a base itself, and validated alone by `validate`, so its errors name its file; a base without the `marker`
    key every spec of `kind` gives (a system where a GPU preset was meant, ...) is refused at `base`. `bases` are
    the files deriving from `source`, for cycles. The base's `paths` keys, paths relative to its folder, are moved
    to `source` (`moved_beside`), so they still name the files beside the base. `settle(base, layer)`, where given,
    makes the validated base's data ready for the deriving file's own keys (architectures: where their prices are
    quoted). The derived spec must give its `name`. The one rule of architectures' and GPU presets' bases (a
    system's base also moves its paths: `archsim.systems.system_spec`)."""
    noun = _article(kind[:-1])
    if "name" not in data:
        raise SpecError(source, "name", f"missing: {noun} with a base names itself")
    path, chain, raw = base_file(kind, data["base"], source, bases, package, max_bases)
    base = parse_yaml(raw, path)
    if isinstance(base, dict) and "base" in base:
        base = derived_data(kind, base, str(path), chain, package, max_bases, marker=marker, validate=validate,
                            uninherited=uninherited, paths=paths, settle=settle)
    if not isinstance(base, dict) or marker not in base:
        raise SpecError(source, "base", f"{str(path)!r}: not {noun} (it gives no {marker})")
    validate(base, str(path))
    layer = {key: v for key, v in data.items() if key != "base"}
    if settle is not None:
        base = settle(base, layer)
    written = data["base"] if is_spec_path(data["base"]) else str(path.absolute())  # the base as `source` names it
    inherited = {key: moved_beside(v, written) if key in paths else v for key, v in base.items()
                 if key not in uninherited}
    return laid_over(inherited, layer)


def load_workload_spec(name_or_path: str | Path) -> Workload:
    """A workload by library name or a YAML file by path; every problem is a SpecError naming the file."""
    return _load("workloads", name_or_path, workload_from_dict)


def load_mapping_spec(name_or_path: str | Path) -> Mapping:
    """A mapping by library name or a YAML file by path; every problem is a SpecError naming the file."""
    return _load("mappings", name_or_path, mapping_from_dict)
