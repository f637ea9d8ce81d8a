"""Accelerator chips that archsim has no microarchitectural model of (TPUs), as datasheet peaks, loaded from YAML.

A `Chip` is what a roofline needs of one chip: its dense matrix-unit peak per precision, its memory capacity and
bandwidth, and optionally its power. Assumptions a model built on it may rely on:
- peaks are the vendor's **dense** per-chip peaks (a TPU chip with two TensorCores counts both);
- `matmul_flops_per_s` always has `bf16` (the matrix units' native input type on every TPU); `fp8` and `int8`
  are optional (int8 in OP/s, counted as FLOP/s); a precision absent from a chip is not run on it;
- `memory_bytes` and `memory_bytes_per_s` are the chip's HBM, the whole of it (no reserve is taken here);
- `power_w`, where given, is a per-chip power the vendor or a paper states; it is optional because several chips
  have no sourced figure, and a model without it prices no energy (it says so) rather than invent one, unless the
  system spec prices the chip device per action (`energy_model: per-action`, `archsim.systems.system_spec`).
Prices per hour belong to a system spec's device (`price_per_hour`), not to the chip.

File format (the presets in `archsim/systems/chip_presets/` carry each number's source in a comment)::

    name: tpu-v4
    description: one line
    source: where the numbers come from
    matmul_flops_per_s: {bf16: 275.0e+12, int8: 275.0e+12}
    memory_bytes: 34359738368          # 32 GiB
    memory_bytes_per_s: 1.2e+12

and optionally `power_w`. `vector_flops_per_s` is refused: the roofline (`archsim.systems.chip_device`) runs every
op at the matrix peak and reads no vector-unit rate; a datasheet's figure belongs in the file's comments.

YAML reads `275e12` (no dot, no exponent sign) as text: write `275.0e+12`. A number outside the range every real
chip's lies in (`NUMBERS`, `MATMUL_FLOPS_PER_S`) is refused as written in another unit (1640.0 for 1640 GB/s).
Every error is a `SpecError` naming the file and the field. The key `matmul_flops_per_s` marks a chip spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsim import library
from archsim.errors import Plausible, SpecError, check_header, kind_of, ranged_number, refuse_unread
from archsim.spec_files import finite_number

PRESETS_PACKAGE = "archsim.systems.chip_presets"
TEXT = ("name", "description", "source")
# field -> (what it is, the range every real chip's value lies in, from a mobile NPU to a rack-scale part of the
# next decade: outside, the number is in another unit than the field's, e.g. 1640.0 for 1640 GB/s)
NUMBERS = {
    "memory_bytes": ("the HBM capacity in bytes (a spec sheet's \"32 GB\" is taken as 32 GiB: 34359738368)",
                     Plausible(2**26, 2**50, 34359738368, "B")),
    "memory_bytes_per_s": ("the HBM bandwidth in bytes/s", Plausible(1e8, 1e18, 1.64e12, "B/s")),
    "power_w": ("the chip's power in W", Plausible(0.1, 1e6)),
}
MATMUL_FLOPS_PER_S = Plausible(1e9, 1e18, 918.0e12, "FLOP/s")  # a dense peak of a matmul_flops_per_s precision
KEYS = (*TEXT, "matmul_flops_per_s", *NUMBERS)
OPTIONAL = ("description", "power_w")
UNREAD = {"vector_flops_per_s": "not read: the chip roofline runs every op at the matrix peak "
                                "(archsim.systems.chip_device); remove it, or keep the number in a comment"}
MATMUL_PRECISIONS = ("bf16", "fp8", "int8")


@dataclass(frozen=True)
class Chip:
    """One chip. `source` is the file it came from (for messages), `citation` where its numbers come from."""

    name: str
    description: str
    source: str
    citation: str
    matmul_flops_per_s: Mapping[str, float]  # precision (MATMUL_PRECISIONS) -> dense peak; bf16 always present
    memory_bytes: float
    memory_bytes_per_s: float
    power_w: float | None = None  # None: not given (no energy is priced)


def chip_from_dict(data: Any, source: str = "<python>") -> Chip:
    """Validate a parsed chip spec; `source` names the file in errors."""
    refuse_unread(data, UNREAD, source)
    check_header(data, KEYS, OPTIONAL, TEXT, source)
    numbers = {key: _positive(data[key], source, key, what, bounds) for key, (what, bounds) in NUMBERS.items()
               if key in data}
    return Chip(
        name=data["name"],
        description=data.get("description", ""),
        source=source,
        citation=data["source"],
        matmul_flops_per_s=_matmul(data["matmul_flops_per_s"], source),
        **numbers,
    )


def load_chip(name_or_path: str | Path) -> Chip:
    """A preset by name (`tpu-v4`, see `chip_names()`) or a YAML file by path."""
    return library.load_preset("chip presets", name_or_path, PRESETS_PACKAGE, chip_from_dict)


def chip_names() -> list[str]:
    """The chip presets, by name."""
    return library.names("chip presets", PRESETS_PACKAGE)


def _matmul(data: Any, source: str) -> dict[str, float]:
    where = "matmul_flops_per_s"
    if not isinstance(data, Mapping) or "bf16" not in data:
        got = kind_of(data) if not isinstance(data, Mapping) else f"{', '.join(map(str, data)) or 'nothing'}"
        raise SpecError(source, where, f"expected a mapping precision -> dense FLOP/s with at least bf16 "
                                       f"(precisions: {', '.join(MATMUL_PRECISIONS)}), got {got}")
    out = {}
    for precision, value in data.items():
        if precision not in MATMUL_PRECISIONS:
            raise SpecError(source, f"{where}.{precision}",
                            f"unknown precision (known: {', '.join(MATMUL_PRECISIONS)})")
        out[precision] = _positive(value, source, f"{where}.{precision}", "a dense matrix-unit peak in FLOP/s",
                                   MATMUL_FLOPS_PER_S)
    return out


def _positive(value: Any, source: str, where: str, what: str, bounds: Plausible) -> float:
    """A chip number: 0 and below are refused by `bounds` (every low end is positive)."""
    return ranged_number(value, source, where, what, bounds, read=finite_number, sign_check=False)
