"""Writing outputs so that a killed run leaves the old output or the new one, never a mix.

- `check_writable(path, option)`: called before the work starts, so a bad `--out` fails at once, not after
  minutes of work. Raises a `SpecError` naming the option and the path. A folder output is never /, the current
  folder or one of its parents, however the path is written (`$PWD`, `../here`). A file written in place (a sweep
  store: `written_in_place`) must itself be writable where it exists; others are renamed over it.
- A file output replaces only an earlier output of its own kind (`check_writable`'s `kind`, an `OutputKind`: a
  Chrome/Perfetto trace, `CHROME_TRACE`; a calibration): an existing non-empty regular file (a link's target) that
  is no such output is refused, since it may be a spec file the run reads without the command line naming it (a
  system's base or link file, a mapping's architecture, a GPU's host link), which the output would destroy. A
  command's inputs named on its command line are refused whatever their content (`inputs`).
- `atomic_file(path)`: yields a temporary name beside `path` (same folder and suffix, so matplotlib and pandas
  infer the format); on success it is renamed over `path` (`os.replace`, atomic on POSIX), on failure removed. A
  link is followed: its target is replaced and the link stays. An existing path that is no regular file (/dev/null,
  a named pipe, /dev/stdout) is written through, not renamed over: the temporary file, in the system's temporary
  folder, is copied into it when the block finishes.
- `atomic_dir(path)`: yields an empty staging folder beside `path`; on success the staging folder takes the place
  of `path` in one atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere two renames). Files in the old
  folder that an earlier report did not write (a sweep's store beside its report, say) are hard-linked into the
  new folder first; what a report wrote is listed in its `MANIFEST` file, so an old report's files that the new
  one does not write are dropped, not mixed in.

Sizes in messages (the README's convention: a memory's size is binary, "80 GB" of a GPU is 80 GiB):
- `binary_size_text(size_bytes)`: "80 GiB", "31.5 GiB", "512 MiB" where the size is a whole binary one ('' where not).
- `capacity_text(size_bytes)`: a memory's capacity or room as decimal GB with its binary size beside, where it has
  one: "85.9 GB (80 GiB)", "42.4 GB (39.5 GiB)", "38.9 GB" (bytes below 0.1 GB: "5000 B").
- `beyond_text(size_bytes, limit_bytes)`: a need beyond a limit in the same units, its excess beside where the two
  read alike: "85.9 GB (152 kB more)".

Every OSError on the way out is a `SpecError` naming the path: the CLI prints one line and exits 2. A run killed
mid-write leaves its hidden staging entry (`.NAME.XXXX.new` beside a folder, `.STEM.XXXX.SUFFIX` beside a file, or
in the system's temporary folder for a path written through) and the output untouched; such leftovers are not
swept up automatically, since another run may be writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from archsim.errors import SpecError

MANIFEST = ".archsim-manifest"  # the files a report folder's writer produced, one name a line
_RENAME_EXCHANGE = 2  # linux/fs.h


@dataclass(frozen=True)
class OutputKind:
    """What a file output writes, for `check_writable`'s `kind`: `what` names it in a refusal ("a Chrome/Perfetto
    trace: JSON with traceEvents"), `is_one(path)` tells an existing file of that kind by its content (False for a
    file it cannot read or parse)."""

    what: str
    is_one: Callable[[Path], bool]


def is_chrome_trace(path: Path) -> bool:
    """`path` holds a Chrome/Perfetto trace as archsim writes one (`archsim.model.trace.chrome_trace`): a JSON
    object with `traceEvents`. A file that cannot be read or parsed as JSON is none."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):  # ValueError: not UTF-8, not JSON; RecursionError: nested too deep
        return False
    return isinstance(data, dict) and "traceEvents" in data


CHROME_TRACE = OutputKind("a Chrome/Perfetto trace: JSON with traceEvents", is_chrome_trace)


def check_writable(path: str | Path, option: str, *, directory: bool = False,
                   inputs: Sequence[str | Path | None] = (), written_in_place: str | None = None,
                   kind: OutputKind | None = None) -> Path:
    """The output `path` can be created: its nearest existing ancestor is a writable folder, `path` itself, if it
    exists, is a folder (`directory`) or a file (otherwise), writable where it is written in place (a file that
    `written_in_place` names, as the message says it: "a sweep store"; an output written whole is renamed over the
    old file, which need not be writable), and it is none of the command's `inputs` (writing the output would
    destroy them: `archsim results STORE --csv STORE`). Where `kind` is given, an existing regular file there (a
    link's target) is empty or an earlier output of that kind (`kind.is_one`): any other file may be one the run
    reads that no option names (a system's base or link file, a mapping's architecture), so it is refused, not
    replaced; a file that is no regular one (/dev/null, a named pipe) is written through as before. A file path may
    not end in a separator, `.` or `..` (a folder's name: `Path` would drop the separator or the `.` and write a
    file of that name)."""
    if not directory and (str(path).endswith(("/", os.sep)) or os.path.basename(str(path)) in (".", "..")):
        raise SpecError(option, str(path), "expected a file path, got a folder path (it ends in a separator, . or ..)")
    path = Path(path)
    try:
        return _check_writable(path, option, directory, inputs, written_in_place, kind)
    except (OSError, RuntimeError) as exc:  # a name the OS refuses (too long); a loop of links (pathlib.resolve)
        raise SpecError(option, str(path), f"cannot use this path ({getattr(exc, 'strerror', None) or exc})") from None


def _check_writable(path: Path, option: str, directory: bool, inputs: Sequence[str | Path | None],
                    written_in_place: str | None, kind: OutputKind | None) -> Path:
    if directory and str(path) == "-":
        raise SpecError(option, "-", "expected a folder path: a report folder cannot go to stdout ('-')")
    if directory and (path.name in ("", ".", "..") or _holds_cwd(path)):
        raise SpecError(option, str(path), "a report folder is replaced whole, so it cannot be the current "
                                           "folder, one of its parents or /: name a folder of its own")
    for given in inputs:
        if given is not None and path.exists() and Path(given).exists() and os.path.samefile(path, given):
            raise SpecError(option, str(path), f"is an input of this command ({given}); writing the output there "
                                               "would destroy it")
    if path.exists() and path.is_dir() != directory:
        raise SpecError(option, str(path), f"expected {'a folder' if directory else 'a file'} path, "
                                           f"got an existing {'folder' if path.is_dir() else 'file'}")
    if kind is not None and not directory and not _replaceable(path, kind):
        raise SpecError(option, str(path), f"exists and is not a previous output of this command ({kind.what}): it "
                                           "may be a file the run reads without naming it here (a spec's base, link "
                                           "or architecture), which the output would destroy; name a new file or "
                                           "remove this one")
    if written_in_place and path.exists() and not os.access(path, os.W_OK):
        raise SpecError(option, str(path), f"is not writable ({written_in_place} is written in place)")
    if not directory and _written_through(path):
        if not os.access(path, os.W_OK):
            raise SpecError(option, str(path), "is not writable")
        return path
    ancestor = path.parent  # a file is renamed into it, a folder staged beside it and swapped in
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SpecError(option, str(path), f"cannot write here: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SpecError(option, str(path), f"cannot write here: {ancestor} is not writable")
    try:  # what access() allows the file system may still refuse (/proc, a read-only mount): try it
        tempfile.TemporaryDirectory(dir=ancestor, prefix=".archsim-probe-").cleanup()
    except OSError as exc:
        raise SpecError(option, str(path), f"cannot write here: {ancestor} refuses a new entry "
                                           f"({exc.strerror or exc})") from None
    return path


def _replaceable(path: Path, kind: OutputKind) -> bool:
    """An output of `kind` may go to `path`: nothing is there, or no regular file (written through), or an empty
    file (nothing to lose), or an earlier output of `kind` (`kind.is_one`)."""
    return not path.is_file() or path.stat().st_size == 0 or kind.is_one(path)


def _holds_cwd(path: Path) -> bool:
    """`path`, resolved (however written: absolute, with `..`, through a link), is / or the current folder or one
    of its parents: swapping it away would leave the shell in a deleted folder."""
    resolved, cwd = path.resolve(), Path.cwd().resolve()
    return resolved.parent == resolved or resolved == cwd or resolved in cwd.parents


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fail(path: Path, exc: OSError) -> SpecError:
    return SpecError(str(path), "", f"cannot write: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Write to the yielded temporary path; it replaces `path` (a link's target) only when the block finishes, or
    is copied into it where `path` is no regular file (module docstring)."""
    path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    special = _written_through(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=None if special else path.parent)
        os.close(fd)
    except OSError as exc:
        raise _fail(path, exc) from None
    try:
        yield Path(tmp)
        if special:
            with open(tmp, "rb") as source, open(path, "wb") as target:
                shutil.copyfileobj(source, target)
            return
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600; an output gets the modes of an ordinary file
        os.replace(tmp, path)
    except OSError as exc:
        raise _fail(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _written_through(path: Path) -> bool:
    """Whether `path` exists and is neither a regular file nor a folder (/dev/null, a named pipe, /dev/stdout): an
    output there is written into it, not renamed over it."""
    return path.exists() and not path.is_file() and not path.is_dir()


def write_text(path: str | Path, text: str) -> None:
    """`Path.write_text`, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the OS cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd = -100
    return libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link into `new` what `old` holds that no earlier report wrote and the new one did not write."""
    manifest = old / MANIFEST
    ours = set(manifest.read_text(encoding="utf-8").split("\n")) if manifest.is_file() else set()
    for entry in old.iterdir():
        if entry.name in ours or entry.name == MANIFEST or (new / entry.name).exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, new / entry.name, copy_function=os.link)
        else:
            os.link(entry, new / entry.name)


def _swap_by_renames(stage: Path, path: Path) -> None:
    """Where the OS has no atomic exchange: the old folder aside, the new one in, the old one removed (or put
    back if the second rename fails)."""
    retired = stage.with_suffix(".old")
    retired.mkdir()
    try:
        os.replace(path, retired / path.name)
        try:
            os.replace(stage, path)
        except OSError:
            os.replace(retired / path.name, path)
            raise
        _carry_over(retired / path.name, path)
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def _replace_folder(stage: Path, path: Path) -> None:
    """`stage` in the place of the existing folder `path`, carrying over what an earlier report did not write."""
    _carry_over(path, stage)
    if _exchange(stage, path):
        _carry_over(stage, path)  # what appeared in the old folder while the new one was staged
    else:
        _swap_by_renames(stage, path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Write a whole folder into the yielded staging folder; it takes `path`'s place when the block finishes. Of two
    writers of one new folder, the second to finish finds it made by the first and replaces it as an existing one."""
    path = Path(path)
    if path.is_symlink():  # swap the folder the link points to, not the link
        path = path.resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stage = path.parent / f".{path.name}.{secrets.token_hex(6)}.new"
        stage.mkdir()  # not mkdtemp: the folder gets the umask's modes, as an ordinary folder would
    except OSError as exc:
        raise _fail(path, exc) from None
    try:
        yield stage
        (stage / MANIFEST).write_text("\n".join(sorted(e.name for e in stage.iterdir())), encoding="utf-8")
        if path.is_dir():
            _replace_folder(stage, path)
        else:
            try:
                os.replace(stage, path)
            except OSError as exc:  # another writer made the folder since: replace it as an existing one
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not path.is_dir():
                    raise
                _replace_folder(stage, path)
    except OSError as exc:
        raise _fail(path, exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def binary_size_text(size_bytes: float) -> str:
    """`size_bytes` as a binary size where it is a whole one ('' where not): hundredths of a GiB from 1 GiB up
    ("80 GiB", "31.5 GiB"), whole MiB below ("512 MiB"), so the text is exact."""
    for unit, scale, steps in (("GiB", 2**30, 100), ("MiB", 2**20, 1)):
        if size_bytes >= scale and size_bytes * steps % scale == 0:
            return f"{size_bytes / scale:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return ""


def beyond_text(size_bytes: float, limit_bytes: float) -> str:
    """`size_bytes`, a need beyond `limit_bytes` (which a message shows as `capacity_text` does), in the same decimal
    units, with the excess beside where the two read alike ("85.9 GB (152 kB more)" beside an 80 GiB limit, where
    "85.9 GB exceeds 85.9 GB" read as if it fitted, and 85.8995 against 85.9 as below it)."""
    text = _decimal_text(size_bytes)
    if size_bytes <= limit_bytes or text != _decimal_text(limit_bytes):
        return text
    excess = size_bytes - limit_bytes
    unit, scale = next(((u, f) for u, f in (("MB", 1e6), ("kB", 1e3)) if excess >= f), ("B", 1.0))
    return f"{text} ({excess / scale:.3g} {unit} more)"


def _decimal_text(size_bytes: float) -> str:
    """Decimal GB to 0.1, or bytes below 0.1 GB (which would read 0.0 GB)."""
    return f"{size_bytes / 1e9:.1f} GB" if size_bytes >= 1e8 else f"{size_bytes:.4g} B"


def capacity_text(size_bytes: float) -> str:
    """A memory's capacity or room in a message: decimal GB to 0.1 (bytes below 0.1 GB, which would read 0.0 GB),
    its binary size beside in parentheses where it is a whole one (`binary_size_text`)."""
    binary = binary_size_text(size_bytes)
    return _decimal_text(size_bytes) + (f" ({binary})" if binary else "")
