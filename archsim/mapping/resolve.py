"""Check a mapping group against a bound cascade and an architecture, and fill in residual factors.

Errors name the mapping file, the YAML path (`groups[0].loops[3]`) and what was expected. Capacity and
fan-out are not checked here: a tile that overflows its level, or spatial factors beyond a unit's PEs, make an
infeasible point (a `Result` with a reason, see `archsim.model.analytical`), not an error, so a sweep that
shrinks the hardware keeps the point as a row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import replace

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import point_ops
from archsim.cascade.bind import Binding, nearest_multiples
from archsim.cascade.syntax import BinOp, Call, Expr, Name, Num, parse_expr, walk
from archsim.errors import SpecError
from archsim.mapping.overlap import check_overlap, delay_names
from archsim.mapping.spec import SEARCH, Group, Loop, Mapping
from archsim.memo import identity_cache


def group_ranks(binding: Binding, group: Group) -> dict[str, set[str]]:
    """Einsum -> the leaf ranks of its iteration space."""
    cascade = binding.cascade
    return {e: {cascade.var_ranks[v] for v in cascade.einsum(e).space} for e in group.einsums}


@identity_cache(maxsize=1024)
def check_bindings(binding: Binding, mapping: Mapping) -> None:
    """Every Einsum the groups bind is one of the cascade's, and every Einsum of the cascade is bound by a group
    (the loader already refused one bound by two): one left out would run in no group and cost nothing. Groups
    run one after another, so no Einsum may read a tensor a later group writes (`_check_group_order`)."""
    for i, group in enumerate(mapping.groups):
        _check_einsums(binding, group, mapping.source, f"groups[{i}]")
    bound = {e for group in mapping.groups for e in group.einsums}
    unbound = [e.name for e in binding.cascade.einsums if e.name not in bound]
    if unbound:
        raise SpecError(mapping.source, "groups", f"{', '.join(unbound)} of {binding.cascade.name} bound by no "
                                                  "group (each Einsum of the cascade runs in exactly one group)")
    _check_group_order(binding, mapping)


def _check_group_order(binding: Binding, mapping: Mapping) -> None:
    """An Einsum reading (in its body or mask, at any step of a recurrence) a tensor that a later group writes
    could not run: that group has not started. Refused naming both, whichever the order of two groups that read
    each other (a cycle no order runs)."""
    group_of = {e: i for i, group in enumerate(mapping.groups) for e in group.einsums}
    for i, group in enumerate(mapping.groups):
        for name in group.einsums:
            later = next((ref.tensor for ref in binding.cascade.einsum(name).refs
                          if group_of.get(ref.tensor, i) > i), None)
            if later is not None:
                writer = mapping.groups[group_of[later]].name
                raise SpecError(mapping.source, f"groups[{i}].binding.{name}",
                                f"{name} reads {later}, which group {writer} writes after group {group.name} has run "
                                "(groups run one after another): put the two in one group, or order the groups so "
                                "that every tensor is written before it is read")


def _check_einsums(binding: Binding, group: Group, source: str, where: str) -> None:
    known = [e.name for e in binding.cascade.einsums]
    for e in group.einsums:
        if e not in known:
            raise SpecError(source, f"{where}.binding.{group.binding[e]}",
                            f"'{e}' is not an Einsum of {binding.cascade.name} (known: {', '.join(known)})")


def check_group(binding: Binding, arch: Architecture, group: Group, source: str, where: str) -> None:
    """The architecture's word is the tensors' (`word_bytes`), and every name the group uses exists: units (with the
    ops of the Einsums bound to them), levels, tensors, ranks, and the rank sizes of its overlap's delay terms.
    Raises SpecError naming the YAML path."""
    cascade = binding.cascade
    if arch.word_bytes != binding.word_bytes:
        raise SpecError(arch.source, "word_bytes",
                        f"{arch.name} holds and computes {arch.word_bytes}-byte words, but the tensors of "
                        f"{cascade.name} are bound with {binding.word_bytes}-byte elements (params.word_bytes of the "
                        "workload, the cascade or --set): give both the same width")
    levels = [m.name for m in arch.memories]
    units = {u.name: u for u in arch.units}
    _check_einsums(binding, group, source, where)
    for e in group.einsums:
        unit_name = group.binding[e]
        if unit_name not in units:
            raise SpecError(source, f"{where}.binding.{e}", f"unknown unit '{unit_name}' "
                                                               f"(units of {arch.name}: {', '.join(units)})")
        lacking = sorted(set(point_ops(cascade.einsum(e))) - set(units[unit_name].op_cycles))
        if lacking:
            raise SpecError(source, f"{where}.binding.{e}", f"unit {unit_name} has no {', '.join(lacking)} "
                                                               f"(it has {', '.join(units[unit_name].op_cycles)})")
    for level, tensors in group.keep.items():
        if level not in levels:
            raise SpecError(source, f"{where}.keep.{level}", f"unknown level (levels: {', '.join(levels)})")
        for t in tensors:
            if t not in cascade.tensors:
                raise SpecError(source, f"{where}.keep.{level}", f"unknown tensor '{t}'")
    named = [("double_buffered", t) for t in group.double_buffered] + [("spill", t) for t in group.spill]
    named += [(f"in_place.{owner}", t) for owner, ts in group.in_place.items() for t in (owner, *ts)]
    for key, t in named:
        if t not in cascade.tensors:
            raise SpecError(source, f"{where}.{key}", f"unknown tensor '{t}'")
    for t in group.spill:
        if not any(t in ts for ts in group.keep.values()):
            raise SpecError(source, f"{where}.spill", f"'{t}' is not kept at any level, so it cannot spill")
    for e in group.pipelined:
        if e not in group.einsums:
            raise SpecError(source, f"{where}.pipelined", f"'{e}' is not an Einsum of this group")
    leaf_ranks = set(binding.rank_sizes)
    for i, loop in enumerate(group.loops):
        at = _loop_at(where, group.loops, i)
        if isinstance(loop.factor, bool) or not isinstance(loop.factor, int | str | None) or (
                isinstance(loop.factor, int) and loop.factor < 1):  # the loader refuses these; groups built in Python
            raise SpecError(source, at, f"expected a positive integer, None (the residual), search or an expression, "
                                        f"got {loop.factor!r}")
        if loop.rank not in leaf_ranks:
            raise SpecError(source, at, f"unknown rank '{loop.rank}' (leaf ranks: {', '.join(sorted(leaf_ranks))})")
        if loop.is_spatial and loop.spatial not in units:
            raise SpecError(source, at, f"unknown unit '{loop.spatial}' (units of {arch.name}: {', '.join(units)})")
        if not loop.is_spatial and loop.level not in levels:
            raise SpecError(source, at, f"unknown level '{loop.level}' (levels: {', '.join(levels)})")
    check_overlap(group.overlap, group.einsums, source, f"{where}.overlap")  # again, for groups built in Python
    unknown = sorted(delay_names(group.overlap, group.einsums) - leaf_ranks)
    if unknown:
        raise SpecError(source, f"{where}.overlap", f"'{unknown[0]}' in a delay term is neither an Einsum of "
                                                    f"this group nor a rank (ranks: {', '.join(sorted(leaf_ranks))})")


@identity_cache(maxsize=1024)
def resolve_group(binding: Binding, arch: Architecture, group: Group, source: str, where: str) -> Group:
    """The group with every factor an int. Raises SpecError on anything that cannot run. Remembered per the
    same binding, architecture and group objects (`archsim.memo`): evaluating a chosen mapping again (a sweep's
    repeated point, a benchmark) does not check and resolve it again."""
    check_group(binding, arch, group, source, where)
    group = concrete_factors(binding, arch, group, source, where)
    for i, loop in enumerate(group.loops):
        if loop.factor == SEARCH:
            raise SpecError(source, _loop_at(where, group.loops, i),
                            "factor is 'search': run the mapper (archsim.mapping.mapper.search) first")
    return replace(group, loops=_fill_residuals(binding, group, source, where))


def concrete_factors(binding: Binding, arch: Architecture, group: Group, source: str, where: str) -> Group:
    """The group with every factor expression evaluated (names: the cascade's parameters and rank sizes;
    `capacity(LEVEL)` in bytes; `min`, `max`; `//` rounds down, `/` does not: a factor that is not a whole number is
    refused, never rounded). `search` and residuals stay as they are."""
    names = {**binding.params, **binding.rank_sizes}
    loops = []
    for i, loop in enumerate(group.loops):
        if isinstance(loop.factor, str) and loop.factor != SEARCH:
            at = _loop_at(where, group.loops, i)
            value = _factor_value(_parsed(loop.factor), names, arch, source, at)
            if not math.isfinite(value) or value < 1 or value != int(value):
                hint = " ('//' rounds a division down)" if "/" in loop.factor and value >= 1 else ""
                read = dict.fromkeys(n.name for n in walk(_parsed(loop.factor))
                                     if isinstance(n, Name) and n.name in names)
                values = ", ".join(f"{name}={names[name]:g}" for name in read)
                raise SpecError(source, at, f"'{loop.factor}' gives {value:g}, expected a positive integer{hint}"
                                            + (f" (with {values})" if values else ""))
            loop = replace(loop, factor=int(value))
        loops.append(loop)
    return replace(group, loops=tuple(loops))


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Expr:
    """A factor expression's syntax tree, parsed once per text (a mapper evaluates the same few per point)."""
    return parse_expr(text)


def _factor_value(node: Expr, names: dict[str, float], arch: Architecture, source: str, at: str) -> float:
    match node:
        case Num(value=value):
            return value
        case Name(name=name) if name in names:
            return names[name]
        case Name(name=name):
            raise SpecError(source, at, f"unknown name '{name}' (parameters and ranks: {', '.join(names)})")
        case Call(fn="capacity", args=(Name(name=level),)):
            levels = [m.name for m in arch.memories]
            if level not in levels:
                raise SpecError(source, at, f"unknown level '{level}' (levels: {', '.join(levels)})")
            capacity = arch.memory(level).capacity_bytes
            if capacity is None:
                raise SpecError(source, at, f"level {level} has no capacity")
            return capacity
        case Call(fn="min" | "max" as fn, args=args) if args:
            values = [_factor_value(a, names, arch, source, at) for a in args]
            return min(values) if fn == "min" else max(values)
        case BinOp(op="+" | "-" | "*" | "/" | "//" as op, lhs=lhs, rhs=rhs):
            a, b = _factor_value(lhs, names, arch, source, at), _factor_value(rhs, names, arch, source, at)
            if op in ("/", "//") and not b:
                raise SpecError(source, at, "division by zero")
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "//": a // b}[op]
    raise SpecError(source, at, "expected numbers, names, + - * / //, min(...), max(...) or capacity(LEVEL)")


def _fill_residuals(binding: Binding, group: Group, source: str, where: str) -> tuple[Loop, ...]:
    loops = list(group.loops)
    ranks_by_unit: dict[str, set[str]] = {}
    for e, ranks in group_ranks(binding, group).items():
        ranks_by_unit.setdefault(group.binding[e], set()).update(ranks)
    for rank in sorted(set().union(*ranks_by_unit.values())):
        size = binding.rank_sizes[rank]
        temporal = [i for i, lp in enumerate(loops) if lp.rank == rank and not lp.is_spatial]
        if not temporal and not any(lp.rank == rank for lp in loops):
            raise SpecError(source, f"{where}.loops", f"rank {rank} (size {size}) has no loop; add one")
        open_ = [i for i in temporal if loops[i].factor is None]
        if len(open_) > 1:
            raise SpecError(source, _loop_at(where, loops, open_[1]), f"rank {rank}: only one loop may leave its "
                                                                     "factor out (the residual)")
        for unit, ranks in ranks_by_unit.items():
            if rank not in ranks:
                continue
            spatial = _spatial_extent(loops, rank, unit)
            fixed = math.prod(loops[i].factor for i in temporal if loops[i].factor is not None) * spatial
            if open_:
                if size % fixed:
                    looped = [f"{_loop_at(where, loops, i)} = {loops[i].factor}" for i in temporal
                              if loops[i].factor not in (None, 1)]  # a factor an expression gave shows its value
                    parts = f": {' x '.join([*looped, f'{spatial} spatial'])}" if looped else ""
                    raise SpecError(source, _loop_at(where, loops, open_[0]),
                                    f"rank {rank}: size {size} is not a multiple of the other factors ({fixed}"
                                    f"{parts}); {nearest_multiples(size, fixed)}")
                loops[open_[0]] = replace(loops[open_[0]], factor=size // fixed)
                open_ = []
                fixed = size
            if fixed != size:
                raise SpecError(source, f"{where}.loops", f"rank {rank}: factors on unit {unit} multiply to "
                                                             f"{fixed}, expected the rank size {size}")
    return tuple(loops)


def _loop_at(where: str, loops: Sequence[Loop], i: int) -> str:
    """The YAML path of loop `i` (`groups[0].loops[1].ranks.M`; a loop over several ranks is one per rank here)."""
    return f"{where}.{loops[i].origin or f'loops[{i}]'}"


def _spatial_extent(loops: list[Loop], rank: str, unit: str) -> int:
    """The part of `rank` spread over `unit`; a split made only on another unit's fan-out is walked
    temporally, innermost, on this one (the 1-D array steps through the 2-D array's M0 columns)."""
    own = [lp.factor for lp in loops if lp.rank == rank and lp.spatial == unit]
    if own:
        return math.prod(own)
    by_unit: dict[str, int] = {}
    for lp in loops:
        if lp.rank == rank and lp.is_spatial:
            by_unit[lp.spatial] = by_unit.get(lp.spatial, 1) * lp.factor
    return max(by_unit.values(), default=1)
