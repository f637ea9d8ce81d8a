"""Read a measurements CSV in the schema of the published `attention_measured.csv`.

Required columns: gpu, kernel, dtype, causal, batch, heads, head_dim, seqlen, direction, metric, value, unit
(others, such as source, how_obtained and note, are kept and passed through). A row is a kernel time when its
metric is `throughput` (TFLOPs/s by the FlashAttention convention, gpu.md §1.0) or `latency` (s, ms, us); its
direction must then be fwd, bwd, fwd+bwd or decode and its dtype one archsim knows (`KNOWN_DTYPES`, or an alias:
float16 for fp16, float32 for fp32, `DTYPE_ALIASES`). Other rows (a fraction of peak, a training step's model
TFLOPs) are skipped with the reason, and so are rows without a measured value (`OOM`, empty) and rows `archsim
measure --interpret` wrote (`how_obtained` "interpret (not a timing)"); a known dtype a GPU or kernel has no rate or
path for is skipped later, with that reason (`archsim.gpu.cases`). `heads` is a count, or `16q/2kv` for 16 query
heads sharing 2 KV heads (GQA); decode rows give the KV length as `seqlen`, and are read as non-causal whatever
their `causal` (one query row has no causal mask).

A column named twice, or a row with another number of cells than the header, is a `SpecError` naming the file and
the column or line. A malformed field of a kernel-time row is a `SpecError` naming the file, the line the row
starts on (blank lines counted) and the field, and so is a case too large to model (`AttentionCase.size_problem`).
Rows are numbered as in the file (1-based data rows, skipped rows included; `row`), and each keeps the line it
starts on (`line`), which messages name. Two kernel-time rows of one configuration (GPU label, kernel, dtype,
causal, batch, heads, head_dim, seqlen, direction and metric) are a `SpecError` naming both lines, whether their
values differ (which one is right is not ours to choose) or not (a repeated row would count twice in the fit and in
the error). A case timed as a latency row and a throughput row (`archsim measure` writes both) is one timing:
`one_per_case` keeps its latency row and skips the other (`ONE_TIMING`), so that a fit and an error count each
timing once. The file must be UTF-8 text within ARCHSIM_MAX_CSV_BYTES
(`archsim.spec_files.read_csv_records`, which reads the request traces of `archsim.systems.requests` too).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from archsim.arch.gpu import PRECISIONS
from archsim.errors import SpecError
from archsim.model.gpu import DIRECTIONS, PRECISION_BYTES, AttentionCase
from archsim.model.gpu_kernels import kernel_attention
from archsim.spec_files import read_csv_records

INTERPRETED = "interpret (not a timing)"  # `how_obtained` of rows `archsim measure --interpret` wrote
MIN_KERNEL_S = 1e-7  # a kernel launch alone takes microseconds; a row below this is a typo or a unit error
ROW_DIGEST_HEX = 16  # hex digits of a row's digest (`row_digest`)
DIGEST_DIGITS = 12  # significant digits of the time a row's digest reads: one time in any unit, whatever the float
ONE_TIMING = "throughput of a case also timed as latency: one entry per measured case, its latency row"
SKIPPED_LINES_SHOWN = 5  # lines named per skip reason (`skip_reasons`); the rest are counted

REQUIRED = ("gpu", "kernel", "dtype", "causal", "batch", "heads", "head_dim", "seqlen", "direction", "metric",
            "value", "unit")
NO_VALUE = ("", "oom", "nan", "n/a", "na", "-")
UNITS = {  # metric -> unit -> scale to FLOP/s or s
    "throughput": {"tflops/s": 1e12, "tflop/s": 1e12, "gflops/s": 1e9, "gflop/s": 1e9},
    "latency": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9},
}
# The dtypes archsim knows: a GPU's tensor-core precisions and the model's word widths (a known dtype a GPU or kernel
# has no rate or path for is skipped with that reason; any other is a malformed field). Then the aliases of each.
KNOWN_DTYPES = tuple(dict.fromkeys((*PRECISIONS, *PRECISION_BYTES)))
DTYPE_ALIASES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "fp8_e5m2": "fp8", "float8_e5m2": "fp8",
                 "fp8_e4m3": "fp8", "float8_e4m3fn": "fp8", "float32": "fp32"}
DTYPES = {**{dtype: dtype for dtype in KNOWN_DTYPES}, **DTYPE_ALIASES}
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")
GQA_HEADS = re.compile(r"^\s*(\d+)\s*q\s*/\s*(\d+)\s*kv\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Measurement:
    """One kernel-time row: the case it ran and its measured value in the row's own metric and unit."""

    row: int
    columns: dict[str, str]
    gpu: str
    kernel: str
    case: AttentionCase
    metric: str
    value: float
    unit: str
    line: int  # the file's line the row starts on

    @property
    def group(self) -> str:
        return f"{self.gpu} | {self.kernel} | {self.case.direction}"

    @property
    def time_s(self) -> float:
        return self.to_time_s(self.value)

    def to_time_s(self, value: float) -> float:
        scale = UNITS[self.metric][self.unit.lower()]
        return self.case.flops() / (value * scale) if self.metric == "throughput" else value * scale

    def in_metric(self, time_s: float) -> float:
        """A time expressed in this row's metric and unit."""
        scale = UNITS[self.metric][self.unit.lower()]
        return self.case.flops() / time_s / scale if self.metric == "throughput" else time_s / scale


@dataclass(frozen=True)
class Skipped:
    """A measured row the model does not take: its row number (`Measurement.row`), its cells by column, why
    (`cases`), and the file's line it starts on (None where not known: rows given without their lines)."""

    row: int
    columns: dict[str, str]
    reason: str
    line: int | None = None


def skip_reasons(skipped: Iterable[Skipped]) -> list[tuple[str, int]]:
    """(reason, rows) of the rows skipped, most rows first, each reason followed by the lines of its rows (the first
    `SKIPPED_LINES_SHOWN`, then how many more): how `archsim validate` and `archsim check` list them."""
    lines: dict[str, list[int]] = {}
    for s in skipped:
        lines.setdefault(s.reason, [])
        if s.line is not None:
            lines[s.reason].append(s.line)
    return [(reason + _lines_note(lines[reason]), n)
            for reason, n in Counter(s.reason for s in skipped).most_common()]


def _lines_note(lines: list[int]) -> str:
    """": line 4" or ": lines 3, 5, 7, 9, 11 and 2 more" ("" for none)."""
    if not lines:
        return ""
    shown = ", ".join(map(str, sorted(lines)[:SKIPPED_LINES_SHOWN]))
    more = len(lines) - SKIPPED_LINES_SHOWN
    return f": line{'s' if len(lines) > 1 else ''} {shown}" + (f" and {more} more" if more > 0 else "")


def read_csv_rows(path: str | Path, expected: str) -> list[list[str]]:
    """The rows of a CSV file (header first), as `read_csv_records` reads them."""
    return [cells for _, cells in read_csv_records(path, expected)]


def read_measurements(path: str | Path) -> tuple[list[Measurement], list[Skipped]]:
    """Parse a CSV file; a missing or repeated column, a row of another number of cells than the header (a blank
    line is no row) or a bad field raises a SpecError naming the file, the column or line, and the field."""
    source = str(path)
    (_, header), *body = read_csv_records(path, f"the columns {', '.join(REQUIRED)}")
    header = [name.strip() for name in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SpecError(source, f"column '{missing[0]}'",
                        f"missing (required: {', '.join(REQUIRED)}; the header has: {', '.join(header)})")
    _refuse_repeated_columns(header, source)
    kept = [(line, cells) for line, cells in body if any(cell.strip() for cell in cells)]
    for line, cells in kept:
        if len(cells) != len(header):
            raise SpecError(source, f"line {line}", f"{len(cells)} cells; expected {len(header)}, one per column of "
                                                    "the header")
    rows = [dict(zip(header, cells, strict=True)) for _, cells in kept]
    return parse_rows(rows, source, [line for line, _ in kept])


def _refuse_repeated_columns(header: list[str], source: str) -> None:
    """A SpecError naming the first column named twice (1-based positions): a row would keep its last cell alone.
    Unnamed columns (a spreadsheet's trailing commas) are not compared."""
    first: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name and first.setdefault(name, position) != position:
            raise SpecError(source, f"column '{name}'", f"named twice in the header (columns {first[name]} and "
                                                        f"{position}); expected each column once")


def parse_rows(rows: list[dict[str, str]], source: str, lines: list[int] | None = None
               ) -> tuple[list[Measurement], list[Skipped]]:
    """Measurements and skipped rows of data rows (`lines`: the line each starts on; default row + 1); a SpecError
    for a malformed kernel-time row or two of one configuration (`refuse_repeats`)."""
    measurements, skipped = [], []
    for index, raw in enumerate(rows, start=1):
        columns = {k: "" if v is None else str(v) for k, v in raw.items() if k is not None}
        parsed = _parse(index, columns, source, lines[index - 1] if lines else index + 1)
        (skipped if isinstance(parsed, Skipped) else measurements).append(parsed)
    refuse_repeats(measurements, source)
    return measurements, skipped


def refuse_repeats(measurements: list[Measurement], source: str) -> None:
    """A SpecError naming the lines of the first two measurements of one configuration (`configuration`)."""
    first: dict[tuple, Measurement] = {}
    for m in measurements:
        seen = first.setdefault(configuration(m), m)
        if seen is m:
            continue
        values = (f"the same value ({m.value:g} {m.unit}): a repeated row" if seen.time_s == m.time_s else
                  f"{seen.value:g} {seen.unit} and {m.value:g} {m.unit}")
        raise SpecError(source, f"lines {seen.line} and {m.line}",
                        f"one configuration ({m.gpu}, {m.kernel}, {m.case.direction}, {m.case.precision}, causal "
                        f"{m.case.causal}, batch {m.case.batch}, heads {m.case.heads}/{m.case.kv_heads} kv, head_dim "
                        f"{m.case.head_dim}, seqlen {m.case.seqlen}, {m.metric}) measured twice, at {values}; "
                        "expected one row per configuration")


def configuration(m: Measurement) -> tuple:
    """What a row measured: the GPU label (case and spacing aside), the kernel, the case and the metric."""
    return " ".join(m.gpu.lower().split()), m.kernel, m.case, m.metric


def one_per_case(measurements: list[Measurement]) -> tuple[list[Measurement], list[Skipped]]:
    """(one row per measured case, the others skipped with `ONE_TIMING`): a case timed as a latency row and a
    throughput row (what `archsim measure` writes) is one timing, kept as its latency row (the time measured; the
    throughput is derived from it), so that a fit weighs and an error counts it once. Assumes what `refuse_repeats`
    checked: a case has at most one row per metric."""
    latency = {configuration(m)[:3]: m for m in measurements if m.metric == "latency"}
    kept, skipped = [], []
    for m in measurements:
        timed = latency.get(configuration(m)[:3])
        if timed is None or timed is m:
            kept.append(m)
        else:
            skipped.append(Skipped(m.row, m.columns, ONE_TIMING, m.line))
    return kept, skipped


def row_digest(m: Measurement) -> str:
    """What a fit reads of a row, as the first `ROW_DIGEST_HEX` hex digits of a SHA-256: its configuration
    (`configuration`; the case by the fields a row gives, not `attention`, which the kernel's name sets) and its
    measured time in s to `DIGEST_DIGITS` significant digits. The same row in another file, with other line
    endings, spacing, `120.0` for `120`, `tflops/s` for `TFLOPs/s` or its time in another unit (657.088 us for
    0.657088 ms, which differ as floats in their last bit) has the same digest; another value (to 12 digits) or
    configuration has another. 64 bits: two of a file's thousands of rows share one by chance with a probability
    below 1e-12."""
    gpu, kernel, case, metric = configuration(m)
    fields = [gpu, kernel, case.direction, case.batch, case.heads, case.kv_heads, case.head_dim, case.seqlen,
              case.causal, case.precision, metric, f"{m.time_s:.{DIGEST_DIGITS}g}"]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:ROW_DIGEST_HEX]


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a measurements file's bytes, as a calibration records the file it was fitted on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _parse(row: int, c: dict[str, str], source: str, line: int) -> Measurement | Skipped:
    def bad(field: str, message: str) -> SpecError:
        return SpecError(source, f"line {line}, field '{field}'", message)

    metric, direction = c["metric"].strip().lower(), c["direction"].strip().lower()
    # a row `archsim measure --interpret` wrote is no timing, but its fields are checked as a timing's are
    interpreted = c.get("how_obtained", "").strip() == INTERPRETED

    def skipped(reason: str) -> Skipped:
        return Skipped(row, c, "not a timing: run under the Triton interpreter on a CPU" if interpreted else reason,
                       line)

    if metric not in UNITS:
        return skipped(f"metric '{c['metric']}' is not a kernel time (modelled: {', '.join(UNITS)})")
    if direction not in DIRECTIONS:
        raise bad("direction", f"expected one of {', '.join(DIRECTIONS)}, got '{c['direction']}'")
    text = c["value"].strip()
    if text.lower() in NO_VALUE:
        return skipped(f"no measured value ('{text}')")
    value = _float(text)
    if value is None or value <= 0:
        raise bad("value", f"expected a positive number, got '{text}'")
    unit = c["unit"].strip()
    if unit.lower() not in UNITS[metric]:
        raise bad("unit", f"'{unit}' is not a unit of {metric} (expected one of {', '.join(UNITS[metric])})")
    heads, kv_heads = _heads(c["heads"], bad)
    case = AttentionCase(
        direction=direction,
        batch=_count(c["batch"], "batch", bad),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=_count(c["head_dim"], "head_dim", bad),
        seqlen=_count(c["seqlen"], "seqlen", bad),
        # a decode step's one query row sees every cached key: no causal mask, so True and False are one case
        causal=_bool(c["causal"], bad) and direction != "decode",
        precision=_dtype(c["dtype"], bad),
        attention=kernel_attention(c["kernel"].strip()),
    )
    field, problem = case.size_problem()
    if problem:
        raise bad(field, problem)
    measurement = Measurement(row, c, c["gpu"].strip(), c["kernel"].strip(), case, metric, value, unit, line)
    if not MIN_KERNEL_S <= measurement.time_s < math.inf:
        raise bad("value", f"'{text}' {unit} is a kernel time of {measurement.time_s:g} s; expected at least "
                           f"{MIN_KERNEL_S:g} s (no GPU kernel launches faster) and finite")
    return skipped("") if interpreted else measurement


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _count(text: str, field: str, bad) -> int:
    value = _float(text.strip())
    if value is None or value <= 0 or value != int(value):
        raise bad(field, f"expected a positive whole number, got '{text}'")
    return int(value)


def _heads(text: str, bad) -> tuple[int, int]:
    match = GQA_HEADS.match(text)
    if match:
        heads, kv_heads = int(match[1]), int(match[2])
        if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
            raise bad("heads", f"expected positive query and KV head counts, query heads a multiple of KV heads, "
                                f"got '{text}'")
        return heads, kv_heads
    value = _float(text.strip())
    if value is None or value <= 0 or value != int(value):
        raise bad("heads", f"expected a head count or 'Hq/Hkv' as in '16q/2kv', got '{text}'")
    return int(value), int(value)


def _dtype(text: str, bad) -> str:
    """The precision a row's dtype names (`DTYPES`: a known dtype or an alias of one, case aside)."""
    dtype = DTYPES.get(text.strip().lower())
    if dtype is None:
        raise bad("dtype", f"expected one of {', '.join(KNOWN_DTYPES)} (or an alias: {', '.join(DTYPE_ALIASES)}), "
                           f"got '{text}'")
    return dtype


def _bool(text: str, bad) -> bool:
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise bad("causal", f"expected True or False, got '{text}'")
