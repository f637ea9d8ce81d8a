"""Load a mapping from YAML (or a plain dict) into `archsim.mapping.spec` types, checking its shape.

```yaml
name: fusemax
description: one line                # optional, as is source: (the citation)
cascade: attention-1pass
architecture: fusemax
set: {M0: 256}                       # optional: tiling and algorithm choices (cascade params or rank sizes)
groups:
  - name: attention                  # optional: groups[i] by default; no two groups alike (`Mapping`)
    binding: {array2d: [QK, LM, SLN, SLD, SLNV], array1d: [RM, PRM, SPD, RD, SPNV, RNV, AV]}
    loops:                           # outermost first; ~ = the residual factor, search = the mapper's choice
      - {level: DRAM, ranks: {B: ~, H: ~, P: ~, M1: ~}}
      - {level: GlobalBuffer, ranks: {P: search, E: ~, F: ~}}
      - {spatial: array2d, ranks: {P: 256, M0: 256}}
      - {spatial: array1d, ranks: {P: 256}}
    keep: {GlobalBuffer: [Q, K, V, RM, RD, RNV]}
    overlap: max(QK+LM, RD+RNV+AV) + RM + max(SLN+SLD, PRM+SPD) + max(SLNV, SPNV)
    # optional, each a list of names (in_place: owner -> [tensor, ...]); `archsim.mapping.spec` says what they mean
    # double_buffered: [...], pipelined: [...], in_place: {QK: [SN]}, spill: [...]
```
The group's Einsums are those named in its binding, in the order the binding lists them (unit by unit, then each
unit's list: FLAT's `array2d: [QK, AV], array1d: [GM, ...]` gives QK, AV, GM, ...), not the cascade's; no Einsum
may be bound by two groups.
Every group says its `overlap` (`sequential`, `max` or a pipeline expression): there is no default, since `max`,
the most optimistic, had been taken silently (fusemax-arch without its line ran 3x fast). `set:` gives no model
size (a name of `archsim.workload.PARAMS`: batch, seq_len, heads, ...): those come from the workload or `--set`, and
one the mapping fixed would hold for its accelerator points only (a sweep's GPU points read the workload's).
Checked here, without the cascade: the shape of every field, factors (positive integers, `~`, `search` or an
expression that parses: `check_factor`), `set:` values (positive finite numbers: `archsim.mapping.spec.set_value`)
and the overlap's syntax (`archsim.mapping.overlap.check_overlap_written`). Whether names (levels, units, ranks,
Einsums, tensors) exist, whether the groups bind every Einsum of the cascade, whether each group's temporal loops
go outermost level first (each level's after those of the levels above it), and then whether each overlap names
its group's Einsums once, is checked against the cascade and architecture by `archsim.mapping.resolve`, which runs
the checks of this loader again on a mapping changed in Python. A `cascade:` or `architecture:` that is a path (it
has a `/` or a .yaml suffix, as `archsim.library.find` tells them) is taken relative to the mapping file's folder; a
name stays a library name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from numbers import Integral
from typing import Any

from archsim.cascade.syntax import Expr, ParseError, parse_expr
from archsim.errors import SpecError, check_keys, given, kind_of
from archsim.mapping.overlap import check_overlap_written
from archsim.mapping.spec import SEARCH, Group, Loop, Mapping, set_value
from archsim.spec_files import spec_beside

TOP_KEYS = {"name", "description", "source", "cascade", "architecture", "set", "groups"}
GROUP_KEYS = {"name", "binding", "loops", "keep", "overlap", "double_buffered", "pipelined", "in_place", "spill"}


def mapping_from_dict(data: Any, source: str = "<python>") -> Mapping:
    """Validate `data` (the YAML form) into a Mapping blamed on `source`; every problem is a SpecError naming the
    field."""
    if not isinstance(data, dict):
        raise SpecError(source, "", "expected a mapping with name, cascade, architecture, groups")
    check_keys(data, sorted(TOP_KEYS), source)
    for key in ("name", "cascade", "architecture"):
        if data.get(key) is None or data[key] == "":
            raise SpecError(source, key, "missing (expected a string)")
        if not isinstance(data[key], str):
            raise SpecError(source, key, f"expected a string, got {kind_of(data[key])} {data[key]!r}")
    sets = given(data, "set", {})
    if not isinstance(sets, dict):
        raise SpecError(source, "set", f"expected a mapping of parameter or rank -> value, got {sets!r}")
    groups_raw = data.get("groups")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise SpecError(source, "groups", "missing (expected a non-empty list of fusion groups)")
    groups = tuple(_group(g, source, f"groups[{i}]") for i, g in enumerate(groups_raw))
    check_bound_once(groups, source)
    return Mapping(
        name=data["name"], description=str(data.get("description", "")), source=source,
        citation=str(data.get("source", "")), cascade=spec_beside(data["cascade"], source),
        architecture=spec_beside(data["architecture"], source),
        sets={str(k): set_value(v, source, f"set.{k}") for k, v in sets.items()},
        groups=groups,
    )


def check_bound_once(groups: Sequence[Group], source: str) -> None:
    """No Einsum is bound by two groups (it would run twice): the loader's check, which `archsim.mapping.resolve`
    runs again on groups changed in Python."""
    bound_by: dict[str, int] = {}
    for i, group in enumerate(groups):
        for e in group.einsums:
            if e in bound_by:
                first = bound_by[e]
                raise SpecError(source, f"groups[{i}].binding.{group.binding[e]}",
                                f"Einsum {e} is already bound by groups[{first}] ({groups[first].name}); "
                                "each Einsum runs in exactly one group")
            bound_by[e] = i


def _group(data: Any, source: str, where: str) -> Group:
    if not isinstance(data, dict):
        raise SpecError(source, where, "expected a mapping with name, binding, loops")
    check_keys(data, sorted(GROUP_KEYS), source, where)
    name = given(data, "name", where)
    if not isinstance(name, str) or not name:
        raise SpecError(source, f"{where}.name", f"expected a non-empty string, got {kind_of(name)} {name!r}")
    binding_raw = data.get("binding")
    if not isinstance(binding_raw, dict) or not binding_raw:
        raise SpecError(source, f"{where}.binding", "missing (expected unit -> [Einsum, ...])")
    binding: dict[str, str] = {}
    for unit, einsums in binding_raw.items():
        if not isinstance(einsums, list) or not all(isinstance(e, str) for e in einsums):
            raise SpecError(source, f"{where}.binding.{unit}", "expected a list of Einsum names")
        for e in einsums:
            if e in binding:
                raise SpecError(source, f"{where}.binding.{unit}", f"Einsum {e} is bound twice")
            binding[e] = str(unit)
    if not binding:
        raise SpecError(source, f"{where}.binding", "binds no Einsum (expected unit -> [Einsum, ...])")
    loops_raw = data.get("loops")
    if not isinstance(loops_raw, list) or not loops_raw:
        raise SpecError(source, f"{where}.loops", "missing (expected a list of {level|spatial, ranks})")
    loops = [loop for i, raw in enumerate(loops_raw) for loop in _loops(raw, source, f"{where}.loops[{i}]")]
    keep = _lists(given(data, "keep", {}), source, f"{where}.keep")
    in_place = _lists(given(data, "in_place", {}), source, f"{where}.in_place")
    overlap = data.get("overlap")
    check_overlap_written(overlap, source, f"{where}.overlap")
    return Group(name=name, einsums=tuple(binding), binding=binding, loops=tuple(loops),
                 keep=keep, overlap=overlap, double_buffered=_names(data, "double_buffered", source, where),
                 pipelined=_names(data, "pipelined", source, where), in_place=in_place,
                 spill=_names(data, "spill", source, where))


def _lists(raw: Any, source: str, where: str) -> dict[str, tuple[str, ...]]:
    """`{key: [name, ...]}` (keep: level -> tensors; in_place: owner -> tensors over it)."""
    if not isinstance(raw, dict):
        raise SpecError(source, where, f"expected a mapping of name -> [name, ...], got {raw!r}")
    out = {}
    for key, names in raw.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SpecError(source, f"{where}.{key}", "expected a list of names")
        out[str(key)] = tuple(names)
    return out


def _names(data: dict, key: str, source: str, where: str) -> tuple[str, ...]:
    value = given(data, key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(source, f"{where}.{key}", f"expected a list of names, got {value!r}")
    return tuple(value)


def _loops(raw: Any, source: str, where: str) -> list[Loop]:
    if isinstance(raw, dict):
        check_keys(raw, ("level", "spatial", "ranks"), source, where)
    if not isinstance(raw, dict) or set(raw) not in ({"level", "ranks"}, {"spatial", "ranks"}):
        raise SpecError(source, where, "expected {level: LEVEL, ranks: {...}} or {spatial: UNIT, ranks: {...}}")
    kind = "level" if "level" in raw else "spatial"
    if not isinstance(raw[kind], str) or not raw[kind]:
        raise SpecError(source, f"{where}.{kind}", f"expected a {'level' if kind == 'level' else 'unit'} name, "
                                                   f"got {raw[kind]!r}")
    ranks = raw["ranks"]
    if not isinstance(ranks, dict) or not ranks:
        raise SpecError(source, f"{where}.ranks", "expected rank -> factor (an integer, ~ or search)")
    loops = []
    for rank, factor in ranks.items():
        at = f"{where}.ranks.{rank}"
        check_factor(factor, "spatial" in raw, source, at)
        loops.append(Loop(rank=str(rank), factor=factor, level=raw.get("level"), spatial=raw.get("spatial"),
                          origin=at.split(".", 1)[1]))
    return loops


def check_factor(factor: Any, spatial: bool, source: str, at: str) -> None:
    """A loop's factor as written: a positive integer, the residual (`~`, None in Python), `search` or an expression
    that parses; a `spatial` loop's is fixed (an integer or an expression). An integer is any `numbers.Integral`
    but a bool (a Python caller's numpy integer counts as the number it is). The loader's check, which
    `archsim.mapping.resolve` runs again on a group changed in Python (`dataclasses.replace`)."""
    expected = "expected a positive integer, ~ (None in Python: the residual), search or an expression"
    if isinstance(factor, str) and factor.strip() == "~":
        raise SpecError(source, at, f"{expected}, got {factor!r} (a string: the residual is ~ in YAML, None in "
                                    "Python)")
    if isinstance(factor, str) and factor != SEARCH:
        try:
            parse_factor(factor)
        except ParseError as exc:
            raise SpecError(source, at, f"not a factor expression: {exc}") from None
    elif factor is not None and factor != SEARCH and (isinstance(factor, bool) or not isinstance(factor, Integral)
                                                       or factor < 1):
        raise SpecError(source, at, f"{expected}, got {factor!r}")
    if spatial and (factor is None or factor == SEARCH):
        raise SpecError(source, at, "a spatial loop needs a fixed factor (the fan-out it uses)")


@functools.lru_cache(maxsize=1024)
def parse_factor(text: str) -> Expr:
    """A factor expression's syntax tree, parsed once per text (a mapper evaluates the same few per point, and
    `archsim.mapping.resolve` checks them again on every group it resolves)."""
    return parse_expr(text)
