"""Read a spec file or a data file safely: size and depth caps, paths beside a spec, numbers, CSV rows.

Reading: `read_yaml` (= `read_spec_bytes` then `parse_yaml`) refuses a path that is not a regular file (a
directory, FIFO or device), a file it cannot read, one larger than ARCHSIM_MAX_SPEC_BYTES (default MAX_SPEC_BYTES;
at most that many bytes plus one are read, by `read_capped`), bytes that are not UTF-8, YAML nested deeper than
MAX_YAML_DEPTH (an alias counts at the height of what it names; an alias inside what it names is refused), a key
written twice in one mapping, a number YAML 1.1 reads otherwise than a number option does (octal `010000`, hex,
binary, base 60: `_other_reading`), a word YAML 1.1 reads as a boolean where a name goes (`outputs: [NO]`, an input
`NO:`, `masks: {true: ...}`, `name: off`: `_boolean_name`), and malformed YAML; an integer beyond the largest
float reads as +-inf.
Paths: `is_spec_path` tells a path from a library name, `beside` takes a relative path written inside a spec file
from that file's folder (`spec_beside` a spec's name, leaving a library name as it is), `moved_beside` moves a
path of a base spec to the spec deriving from it, and `is_file` turns an OSError on a path into a SpecError.
Numbers: `number` (inf and -inf allowed, never NaN) and `finite_number`.
Derived specs: `laid_over` is the rule by which a spec with a `base` (a system spec, a GPU preset) is laid over
the data of its base.
Data files (GPU measurements, request traces): `read_text_file` refuses a path that is not a regular file, a file
it cannot read, one larger than ARCHSIM_MAX_CSV_BYTES (default MAX_CSV_BYTES; at most that many bytes plus one are
read) and bytes that are not UTF-8, and drops a UTF-8 byte-order mark; `csv_rows` splits such text into CSV rows
with the line each starts on, one at a time (`read_csv_records`: a file's, all of them).

Every error is a `SpecError` naming the file (or the source given) and, where there is one, the line or field.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from archsim.errors import LimitError, SpecError, field_path
from archsim.limits import env_limit

MAX_SPEC_BYTES = 2**18  # spec files are kilobytes; 256 KiB of YAML parses in 1-2 s (PyYAML in Python, which the
# nesting checks need; flow-style JSON is the slowest); ARCHSIM_MAX_SPEC_BYTES raises the limit
MAX_SPEC_BYTES_ENV = "ARCHSIM_MAX_SPEC_BYTES"
MAX_YAML_DEPTH = 64  # shipped specs nest 5 levels; PyYAML's composer recurses ~3 frames per level
MAX_CSV_BYTES = 64 * 2**20  # measurements and traces are kilobytes to megabytes; ARCHSIM_MAX_CSV_BYTES raises it
MAX_CSV_BYTES_ENV = "ARCHSIM_MAX_CSV_BYTES"


def is_file(path: Path, source: str) -> bool:
    """Whether `path` is a regular file: False where nothing is there (a missing file or folder on the way, a link
    to nothing, a name with a NUL byte, which no file has), a SpecError naming `source` where the OS refuses the
    path (a name over 255 bytes, a loop of links, which `Path.is_file()` would take as missing: "no such file",
    though the link is there)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return False
    except OSError as exc:
        raise SpecError(source, "", f"cannot use this path ({exc.strerror or exc})") from None


def beside(path: str, source: str) -> Path:
    """A path written in the spec at `source`: a relative path is taken from that file's folder; an absolute path,
    or any path of a spec not read from a file, as it is."""
    return Path(source).parent / path if _from_folder(path, source) else Path(path)


def spec_beside(name_or_path: str, source: str) -> str:
    """A spec named inside another spec file: a relative path is taken from that file's folder (`beside`); a
    library name, or any other value, as it is written."""
    if not is_spec_path(name_or_path) or not _from_folder(name_or_path, source):
        return name_or_path
    return str(beside(name_or_path, source))


def moved_beside(text: Any, written: str) -> Any:
    """A path inside a base spec as the spec deriving from it reads it, which names the base's file `written`: a
    relative path goes after `written`'s folder, so that it still names the file beside the base; a library name, an
    absolute path or any other value stays as it is."""
    if not isinstance(text, str) or not is_spec_path(text) or Path(text).is_absolute():
        return text
    return str(Path(written).parent / text)


def _from_folder(path: str, source: str) -> bool:
    """Whether a path written in the spec at `source` is taken from that file's folder: a relative path in a spec
    read from a file."""
    return not Path(path).is_absolute() and Path(source).is_file()


def laid_over(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s keys laid over it: mappings merge key by key, `None` removes a key, the rest replaces
    (a list is replaced whole). Neither argument is changed."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = laid_over(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_capped(stream: BinaryIO, limit: int) -> bytes:
    """At most `limit` + 1 bytes of `stream` (one more than allowed tells the caller the file is too large),
    read in 1 MiB chunks so a huge limit allocates nothing up front."""
    chunks, total = [], 0
    while total <= limit:
        chunk = stream.read(min(2**20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def is_spec_path(name_or_path: str) -> bool:
    """A spec is addressed by path when it has a `/` or a YAML suffix; anything else is a library name."""
    return "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))


def read_yaml(path: Path) -> Any:
    """Parse a YAML spec file. Every failure is a SpecError naming the file: unreadable, not a regular file (a
    directory, FIFO or device, which could block or never end), larger than ARCHSIM_MAX_SPEC_BYTES (at most that
    many bytes plus one are read), not UTF-8 (with the byte offset), nested deeper than MAX_YAML_DEPTH, or
    malformed (with the line)."""
    return parse_yaml(read_spec_bytes(path), path)


def read_spec_bytes(path: Path) -> bytes:
    """The bytes of a spec file, with `read_yaml`'s checks of the file itself (regular, readable, within the
    size limit)."""
    return _capped_bytes(path, MAX_SPEC_BYTES_ENV, MAX_SPEC_BYTES, "spec files", "a YAML spec file")


def _capped_bytes(path: str | Path, limit_env: str, default_limit: int, limited_files: str, expected: str) -> bytes:
    """The bytes of a file read whole (a spec, a data file), refused with a SpecError naming it where it is not a
    regular file (a directory; a FIFO or device could block or never end; `expected` says what it should be), cannot
    be read, or is larger than the limit (`limit_env`, default `default_limit`, the limit on `limited_files`: at
    most that many bytes plus one are read)."""
    source = str(path)
    limit = env_limit(limit_env, default_limit)
    try:
        mode = Path(path).stat().st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            raise SpecError(source, "", f"not a regular file ({kind}); expected {expected}")
        with open(path, "rb") as stream:
            data = read_capped(stream, limit)
    except OSError as exc:
        raise SpecError(source, "", f"cannot read the file ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise LimitError(source, "", f"larger than the limit of {limit} bytes on {limited_files} (raise it with the "
                                     f"environment variable {limit_env})")
    return data


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file


def parse_yaml(data: bytes, path: Path) -> Any:
    """`read_yaml`'s parse of a spec file's bytes (UTF-8, depth, syntax), its errors naming `path`; a SQLite file
    (a sweep store given where a spec goes) is said to be one, not "not UTF-8 text"."""
    if data.startswith(SQLITE_HEADER):
        raise SpecError(str(path), "", "a SQLite database (a sweep store?), not a YAML spec: read a store with "
                                       "archsim results or archsim report --sweep")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(str(path), f"line {line}, byte {exc.start}",
                        f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except _Refused as exc:
        raise SpecError(str(path), exc.where, exc.message) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(str(path), where, f"malformed YAML: {problem}") from None


class _Refused(Exception):
    """A document `_BoundedLoader` refuses: where (the field, or the line) and why."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested deeper than MAX_YAML_DEPTH before its recursive composer
    and the code walking the data run out of stack. An alias counts at the height of what it names (so anchors
    cannot build deep data out of shallow text) and may not name a node that contains it (recursive data).
    An integer beyond the largest float reads as +-inf, which every number check refuses with its field named
    (kept as an int it raised OverflowError wherever a check took its float). A key written twice in one mapping
    is refused (PyYAML keeps the last silently); keys a merge (`<<`) brings in may be overridden, as YAML allows.
    A number YAML 1.1 reads otherwise than a number option does, and a boolean word where a name goes, are refused
    naming the field (`_check_numbers`)."""

    def construct_yaml_int(self, node):
        if len(node.value.lstrip("+-").replace("_", "")) > _FLOAT_DIGITS:  # int() refuses past 4300 decimal digits
            return -math.inf if node.value.startswith("-") else math.inf
        value = super().construct_yaml_int(node)
        return value if abs(value) <= sys.float_info.max else (math.inf if value > 0 else -math.inf)

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._heights: dict[int, int] = {}  # id(node) -> its levels, itself included, for every finished node

    def construct_document(self, node):
        self._check_numbers(node, "", set())
        return super().construct_document(node)

    def _check_numbers(self, node, where: str, seen: set[int], name_goes: str = "") -> None:
        """Refuse a number YAML 1.1 reads otherwise than a number option does (`_other_reading`), naming its field
        (`params.seq_len`, `axes.seq_len[1]`; the line of a document that is a scalar alone), and where a name goes
        (`name_goes`: "item" for a list's item or a `name` field's value, "name" for a mapping's key) a word YAML 1.1
        reads as a boolean (`_boolean_name`). Each
        node is seen once: an alias is checked where its anchor is, and a document of aliases stays linear to
        walk."""
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            problem = _other_reading(self, node) or (_boolean_name(node, name_goes == "name") if name_goes else "")
            if problem:
                raise _Refused(where or f"line {node.start_mark.line + 1}", problem)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_numbers(item, f"{where}[{i}]", seen, name_goes="item")
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":  # what `<<` brings in: fields of this mapping
                    self._check_numbers(value, where, seen)
                    continue
                inner = field_path(where, key.value if isinstance(key, yaml.ScalarNode) else "?")
                self._check_numbers(key, inner, seen, name_goes="name")
                is_name = isinstance(key, yaml.ScalarNode) and key.value == "name"  # a `name` field expects a string
                self._check_numbers(value, inner, seen, name_goes="item" if is_name else "")

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, mark = self.construct_object(key_node, deep=deep), key_node.start_mark
                try:
                    earlier = first.setdefault(key, mark)
                except TypeError:  # an unhashable key: construct_mapping says so
                    continue
                if earlier is not mark:
                    raise _Refused(f"line {mark.line + 1}", f"duplicate key {key!r} (first at line "
                                                            f"{earlier.line + 1}, column {earlier.column + 1}); a key "
                                                            "is written once per mapping")
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent, index):
        line = self.peek_event().start_mark.line + 1
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._heights:
                raise _Refused(f"line {line}", "an alias names a node that contains it (recursive data)")
            if self._depth + self._heights[id(node)] > MAX_YAML_DEPTH:
                raise _Refused(f"line {line}", f"nested deeper than {MAX_YAML_DEPTH} levels (through an alias)")
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _Refused(f"line {line}", f"nested deeper than {MAX_YAML_DEPTH} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        self._heights[id(node)] = 1 + max((self._heights[id(c)] for c in children), default=0)
        return node


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)

# An integer as int() reads it (a number option's, `archsim.commands.options.option_number`): a sign, digits with
# no leading 0, one _ between two digits. YAML 1.1 also reads 0-led digits as octal, 0x and 0b as hex and binary,
# colon-separated digits as base 60 (as it does a float's whole part) and drops any _.
_DECIMAL_INTEGER = re.compile(r"[-+]?(0|[1-9][0-9]*(_[0-9]+)*)")
_FLOAT_DIGITS = len(str(int(sys.float_info.max)))  # 309: an integer of more digits is beyond the largest float
_INT, _FLOAT, _BOOL = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
# the words PyYAML's YAML 1.1 resolver reads as booleans besides true and false (which YAML 1.2 reads so too)
_BOOLEAN_WORDS = re.compile(r"yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF")
_OTHER_TAGS = {_BOOL: "a boolean", "tag:yaml.org,2002:timestamp": "a timestamp"}  # -> expected
_CONSTRUCTION_ERRORS = (ValueError, IndexError, KeyError, AttributeError, TypeError)  # PyYAML's on a bad scalar


def _other_reading(loader: _BoundedLoader, node: yaml.ScalarNode) -> str:
    """Why a scalar YAML 1.1 reads as a number is refused, else "": YAML reads it otherwise than a number option
    reads the same text (`010000` is octal 4096 to YAML, 10000 to `--set seq_len=010000`), or it is no number at
    all though tagged one (`!!int abc`); so too a boolean or a timestamp (tagged, or a plain date) PyYAML's
    constructor cannot build (`!!bool abc`, `2023-13-45`): the constructor is tried, and its failure refused."""
    if node.tag in _OTHER_TAGS:
        try:
            loader.yaml_constructors[node.tag](loader, node)
        except _CONSTRUCTION_ERRORS:
            return f"expected {_OTHER_TAGS[node.tag]}, got {node.value[:40]!r} (tagged {node.tag})"
        return ""
    if node.tag not in (_INT, _FLOAT):
        return ""
    text, kind = node.value, "integer" if node.tag == _INT else "number"
    shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}... ({len(text)} characters)"
    if node.tag == _INT and _DECIMAL_INTEGER.fullmatch(text):
        return ""
    try:
        value = loader.construct_yaml_int(node) if node.tag == _INT else loader.construct_yaml_float(node)
    except _CONSTRUCTION_ERRORS:
        return f"expected a decimal {kind}, got {shown}"
    if node.tag == _FLOAT and ":" not in text:
        return ""
    digits = text.lstrip("+-")
    form = ("base-60 " if ":" in text else "hexadecimal " if digits.startswith("0x") else
            "binary " if digits.startswith("0b") else "octal " if digits.startswith("0") else "")
    return f"expected a decimal {kind}, got {shown} (YAML 1.1 reads it as {form}{value})"


def _boolean_name(node: yaml.ScalarNode, every_word: bool) -> str:
    """Why a name is refused, else "": a plain word YAML 1.1 reads as a boolean and YAML 1.2 as a string (yes, no,
    on, off in PyYAML's spellings), where a name goes: a mapping's key (an input `NO:` became a tensor named False),
    a list's item (`outputs: [NO]`, a binding's `[QK, on]`) or a `name` field's value (`name: off`). A key is
    always a name (`every_word`): true and false are refused there too (`masks: {true: ...}`). A list of true and
    false stays a list of booleans, and `name: true` is left to the loader's "expected a string"."""
    if node.tag != _BOOL or node.style is not None or not (every_word or _BOOLEAN_WORDS.fullmatch(node.value)):
        return ""
    value = "true" if node.value.lower() in ("yes", "on", "true") else "false"
    return f"{node.value} was read by YAML 1.1 as {value}; quote it ('{node.value}')"


def number(value: Any, source: str, where: str, expected: str = "a number (or inf, -inf)") -> float:
    """A YAML number, accepting `inf`/`-inf` (also spelled as strings) but never NaN (`.nan`); a refusal says it
    expected `expected`."""
    if isinstance(value, bool):
        raise SpecError(source, where, f"expected a number, got {value!r}")
    if isinstance(value, int) and abs(value) > sys.float_info.max:
        raise SpecError(source, where, f"expected a number, got an integer of {len(str(abs(value)))} digits "
                                       "(beyond the largest float)")
    if isinstance(value, int | float) and not math.isnan(value):
        return float(value)
    if isinstance(value, str) and value.strip() in ("inf", "+inf", "-inf"):
        return float(value)
    raise SpecError(source, where, f"expected {expected}, got {value!r}")


def finite_number(value: Any, source: str, where: str) -> float:
    """A YAML number that is finite (not `.inf`, `-.inf` or `.nan`)."""
    if isinstance(value, float) and math.isnan(value):
        raise SpecError(source, where, "expected a finite number, got nan")
    result = number(value, source, where, "a finite number")
    if not math.isfinite(result):
        raise SpecError(source, where, f"expected a finite number, got {value!r}")
    return result


def read_text_file(path: str | Path, limited_files: str, expected: str) -> str:
    """The text of a file read as data (a CSV, a JSON Lines trace). Every failure is a SpecError naming the file:
    not a regular file (a FIFO or device could block or never end; `expected` says what it should be), larger than
    `MAX_CSV_BYTES` (ARCHSIM_MAX_CSV_BYTES; the message calls it the limit on `limited_files`; at most that many
    bytes plus one are read), not UTF-8 (with the line and byte); a UTF-8 byte-order mark is dropped."""
    source = str(path)
    data = _capped_bytes(path, MAX_CSV_BYTES_ENV, MAX_CSV_BYTES, limited_files, expected)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(source, f"line {line}, byte {exc.start}",
                        f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None


def read_csv_records(path: str | Path, expected: str) -> list[tuple[int, list[str]]]:
    """Every row of a CSV file's text (`read_text_file`), as `csv_rows` reads them, in a list (header first). Every
    failure is a SpecError naming the file: what `read_text_file` refuses, or what `csv_rows` does (`expected` says
    what the header should be)."""
    return list(csv_rows(read_text_file(path, "CSV files", f"a CSV file with {expected}"), str(path), expected))


def csv_rows(text: str, source: str, expected: str) -> Iterator[tuple[int, list[str]]]:
    """(the line it starts on, its cells) of each row of CSV text read from `source` (header first), one at a time:
    a caller that stops early (a trace past the request limit, `archsim.systems.requests.read_trace`) reads no
    further. Every failure is a SpecError naming `source`: malformed CSV (with the line; met when the reader gets
    there), or empty (`expected` says what the header should be), refused before any row is yielded."""
    reader = csv.reader(io.StringIO(text, newline=""))
    ended = 0
    try:
        for cells in reader:  # a row starts on the line after the one the row before it ended on
            if not ended and not any(cell.strip() for cell in cells):
                raise SpecError(source, "line 1", f"empty header (expected {expected})")
            yield ended + 1, cells
            ended = reader.line_num
    except csv.Error as exc:
        raise SpecError(source, f"line {reader.line_num}", f"malformed CSV ({exc})") from None
    if not ended:
        raise SpecError(source, "line 1", f"empty file (expected {expected})")
