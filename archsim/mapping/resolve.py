"""Check a mapping group against a bound cascade and an architecture, and fill in residual factors.

Errors name the mapping file, the YAML path (`groups[0].loops[3]`) and what was expected. A size the factors do
not tile is refused with the nearest sizes that do: the multiples of the other factors where they are constant,
else (a factor expression that reads the rank's own size, as FLAT's row blocks read P) the nearest sizes at which
the expression, evaluated there, tiles the rank, and, where the expression is what fails, its value and what it
had to divide. Capacity and
fan-out are not checked here: a tile that overflows its level, or spatial factors beyond a unit's PEs, make an
infeasible point (a `Result` with a reason, see `archsim.model.analytical`), not an error, so a sweep that
shrinks the hardware keeps the point as a row.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from numbers import Integral

from archsim.arch.spec import Architecture
from archsim.cascade.analysis import point_ops
from archsim.cascade.bind import Binding, binds_ffn_words, nearest_multiples
from archsim.cascade.ir import Cascade
from archsim.cascade.syntax import BinOp, Call, Expr, Name, Num, walk
from archsim.errors import SpecError
from archsim.mapping.factors import divisors
from archsim.mapping.load import check_bound_once, check_factor, parse_factor
from archsim.mapping.overlap import check_overlap, delay_names
from archsim.mapping.spec import SEARCH, Group, Loop, Mapping
from archsim.memo import identity_cache
from archsim.workload import PARAMS, max_size

VOCABULARY = ("numbers, names, + - * / //, min(...), max(...), divisor_at_least(n, k), divisor_at_most(n, k), "
              "capacity(LEVEL) or fanout(UNIT, AXIS)")
ADVICE_STEPS = 1024  # sizes tried each way for the nearest that a rule of the rank's own size tiles


def group_ranks(binding: Binding, group: Group) -> dict[str, set[str]]:
    """Einsum -> the leaf ranks of its iteration space."""
    return _einsum_ranks(binding.cascade, group)


def _einsum_ranks(cascade: Cascade, group: Group) -> dict[str, set[str]]:
    """`group_ranks` from the cascade alone: the ranks need no size."""
    return {e: {cascade.var_ranks[v] for v in cascade.einsum(e).space} for e in group.einsums}


def _check_looped(cascade: Cascade, group: Group, source: str, where: str, binding: Binding | None = None) -> None:
    """Every leaf rank of the group's Einsums has a loop, temporal or spatial: what a rank has no loop over is
    run for none of its indices, at any size. `binding` (a run's, of `cascade`) adds the rank's size to the message;
    `archsim check`, with no size bound, names the rank alone."""
    looped = {loop.rank for loop in group.loops}
    unlooped = sorted(set().union(*_einsum_ranks(cascade, group).values()) - looped)
    if unlooped:
        rank = unlooped[0]
        size = f" (size {binding.rank_sizes[rank]})" if binding else ""
        raise SpecError(source, f"{where}.loops", f"rank {rank}{size} has no loop; add one")


@identity_cache(maxsize=1024)
def check_bindings(binding: Binding, mapping: Mapping) -> None:
    """Every Einsum the groups bind is one of the cascade's, and every Einsum of the cascade is bound by exactly one
    group (`_check_bound`, which runs the loader's checks again for groups changed in Python): one left out would
    run in no group and cost nothing, one bound by two would run twice. Groups run one after another, so no Einsum
    may read a tensor a later group writes (`_check_group_order`)."""
    _check_bound(binding.cascade, mapping)


def check_names(cascade: Cascade, arch: Architecture, mapping: Mapping) -> None:
    """Every name the mapping uses, resolved against a cascade and architecture without binding any size (what
    `archsim check` runs on a mapping file, with the cascade and architecture it names): the Einsums it binds and
    their order (`check_bindings`), each group's units, levels, tensors and ranks (`check_group`, whose errors these
    are, word for word), a loop for each rank its Einsums use (`_check_looped`, run's message without the rank's
    size), the names its factor expressions read and call, and its `set:` keys. What needs sizes (the
    element width against the architecture's word, factors that tile, capacities) is left to a run."""
    for key in mapping.sets:
        if key not in cascade.params and key not in cascade.rank_sizes and key not in PARAMS:
            known = ", ".join([*cascade.params, *cascade.rank_sizes])
            raise SpecError(mapping.source, f"set.{key}", f"not a parameter or rank of {cascade.name} "
                                                          f"({cascade.source}; known: {known})")
    _check_bound(cascade, mapping)
    names = {*cascade.params, *cascade.rank_sizes, *PARAMS}  # a workload's sizes are names too (bind reads them)
    for i, group in enumerate(mapping.groups):
        where = f"groups[{i}]"
        check_group_names(cascade, arch, group, mapping.source, where)
        _check_looped(cascade, group, mapping.source, where)
        for j, loop in enumerate(group.loops):
            if loop.expression:
                at = _loop_at(where, group.loops, j)
                _check_expression(parse_factor(loop.expression), names, arch, mapping.source, at)


def _check_expression(node: Expr, names: set[str], arch: Architecture, source: str, at: str) -> None:
    """The names a factor expression reads and the functions it calls exist, as `_factor_value` would find."""
    match node:
        case Num():
            return
        case Name(name=name):
            _known_name(name, names, source, at)
            return
        case Call(fn="capacity", args=(Name(name=level),)):
            _known_level(level, arch, source, at)
            return
        case Call(fn="fanout", args=(Name(name=unit), Num(value=axis))):
            _unit_axis(unit, axis, arch, source, at)
            return
        case (Call(fn="divisor_at_least" | "divisor_at_most", args=(_, _)) | Call(fn="min" | "max", args=(_, *_))
              | BinOp(op="+" | "-" | "*" | "/" | "//")):
            for child in (node.args if isinstance(node, Call) else (node.lhs, node.rhs)):
                _check_expression(child, names, arch, source, at)
            return
    raise SpecError(source, at, f"expected {VOCABULARY}")


def _check_bound(cascade: Cascade, mapping: Mapping) -> None:
    """Each group's Einsums are its binding's keys (`_check_binding_keys`, the loader's check, for a mapping changed
    in Python) and the cascade's (`_check_einsums`), every Einsum of the cascade is bound, the groups' order runs
    (`_check_group_order`), and no Einsum is bound by two groups (`archsim.mapping.load.check_bound_once`)."""
    for i, group in enumerate(mapping.groups):
        _check_binding_keys(group, mapping.source, f"groups[{i}]")
        _check_einsums(cascade, group, mapping.source, f"groups[{i}]")
    bound = {e for group in mapping.groups for e in group.einsums}
    unbound = [e.name for e in cascade.einsums if e.name not in bound]
    if unbound:
        raise SpecError(mapping.source, "groups", f"{', '.join(unbound)} of {cascade.name} bound by no "
                                                  "group (each Einsum of the cascade runs in exactly one group)")
    _check_group_order(cascade, mapping)
    check_bound_once(mapping.groups, mapping.source)


def _check_group_order(cascade: Cascade, mapping: Mapping) -> None:
    """An Einsum reading (in its body or mask, at any step of a recurrence) a tensor that a later group writes
    could not run: that group has not started. Refused naming both, whichever the order of two groups that read
    each other (a cycle no order runs)."""
    group_of = {e: i for i, group in enumerate(mapping.groups) for e in group.einsums}
    for i, group in enumerate(mapping.groups):
        for name in group.einsums:
            later = next((ref.tensor for ref in cascade.einsum(name).refs
                          if group_of.get(ref.tensor, i) > i), None)
            if later is not None:
                writer = mapping.groups[group_of[later]].name
                raise SpecError(mapping.source, f"groups[{i}].binding.{name}",
                                f"{name} reads {later}, which group {writer} writes after group {group.name} has run "
                                "(groups run one after another): put the two in one group, or order the groups so "
                                "that every tensor is written before it is read")


def _check_einsums(cascade: Cascade, group: Group, source: str, where: str) -> None:
    """The Einsums the group lists (its binding's keys, `_check_binding_keys`) are the cascade's."""
    known = [e.name for e in cascade.einsums]
    for e in group.einsums:
        if e not in known:
            raise SpecError(source, f"{where}.binding.{group.binding[e]}",
                            f"'{e}' is not an Einsum of {cascade.name} (known: {', '.join(known)})")


def _check_binding_keys(group: Group, source: str, where: str) -> None:
    """A group's `einsums` are its `binding`'s keys, each listed once, as the loader builds them: a group changed
    in Python (`dataclasses.replace`) may list an Einsum twice, or one its binding gives no unit, or bind one it does
    not list (which would run nowhere)."""
    seen: set[str] = set()
    for e in group.einsums:
        if e not in group.binding:
            raise SpecError(source, f"{where}.binding", f"Einsum {e} is one of the group's einsums but its binding "
                                                        "gives it no unit: expected the einsums to be the binding's "
                                                        "keys")
        if e in seen:
            raise SpecError(source, f"{where}.binding.{group.binding[e]}", f"Einsum {e} is bound twice")
        seen.add(e)
    extra = [e for e in group.binding if e not in seen]
    if extra:
        raise SpecError(source, f"{where}.binding.{group.binding[extra[0]]}",
                        f"Einsum {extra[0]} is bound but not one of the group's einsums "
                        f"({', '.join(group.einsums)}): expected the einsums to be the binding's keys")


def check_group(binding: Binding, arch: Architecture, group: Group, source: str, where: str) -> None:
    """The architecture's word is the tensors' (`word_bytes`), and every name the group uses exists: units (with the
    ops of the Einsums bound to them), levels, tensors, ranks, and the rank sizes of its overlap's delay terms.
    Raises SpecError naming the YAML path."""
    cascade = binding.cascade
    if arch.word_bytes != binding.word_bytes:
        raise SpecError(arch.source, "word_bytes",
                        f"{arch.name} holds and computes {arch.word_bytes}-byte words, but the tensors of "
                        f"{cascade.name} are bound with {binding.word_bytes}-byte elements ({_word_fields(cascade)} "
                        "of the workload, the cascade or --set): give both the same width")
    check_group_names(cascade, arch, group, source, where)


def _word_fields(cascade: Cascade) -> str:
    """The params that set `cascade`'s word size: `word_bytes`, and for a layer's FFN `ffn_word_bytes` too."""
    return "params.ffn_word_bytes or word_bytes" if binds_ffn_words(cascade) else "params.word_bytes"


def check_group_names(cascade: Cascade, arch: Architecture, group: Group, source: str, where: str) -> None:
    """`check_group` without sizes: its Einsums its binding's keys (`_check_binding_keys`), the names of units (with
    the ops of the Einsums bound to them), levels, tensors and ranks; what a per-PE level keeps
    (`_check_per_pe_keep`) and what is written in place (`_check_in_place`); each loop temporal or spatial, not
    both, and its factor as the loader checks it (`archsim.mapping.load.check_factor`, again for a group changed
    in Python); the temporal loops outermost level first (`_check_level_order`); each spatial loop on a unit
    running an Einsum of the group over its rank (`_check_spreading_units`); the overlap naming each of the
    group's Einsums once (`check_overlap`, after the Einsums are found in the cascade, so that a binding's mistake
    is blamed on the binding) and the rank sizes of its delay terms."""
    levels = [m.name for m in arch.memories]
    units = {u.name: u for u in arch.units}
    _check_binding_keys(group, source, where)
    _check_einsums(cascade, group, source, where)
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
    _check_per_pe_keep(cascade, arch, group, source, where)
    _check_in_place(cascade, levels, group, source, where)
    for e in group.pipelined:
        if e not in group.einsums:
            raise SpecError(source, f"{where}.pipelined", f"'{e}' is not an Einsum of this group")
    leaf_ranks = set(cascade.rank_sizes)  # a binding's rank sizes have these keys
    for i, loop in enumerate(group.loops):
        at = _loop_at(where, group.loops, i)
        if loop.level is not None and loop.spatial is not None:  # the loader's {level: ...} or {spatial: ...}
            raise SpecError(source, at, f"a loop sits at a memory level (temporal) or spreads over a unit's PEs "
                                        f"(spatial), not both: got level {loop.level} and spatial {loop.spatial}")
        check_factor(loop.factor, loop.is_spatial, source, at)  # the loader's check, for a group changed in Python
        if loop.rank not in leaf_ranks:
            raise SpecError(source, at, f"unknown rank '{loop.rank}' (leaf ranks: {', '.join(sorted(leaf_ranks))})")
        if loop.is_spatial and loop.spatial not in units:
            raise SpecError(source, _loop_key_at(where, group.loops, i, "spatial"),
                            f"unknown unit '{loop.spatial}' (units of {arch.name}: {', '.join(units)})")
        if not loop.is_spatial and loop.level not in levels:
            raise SpecError(source, _loop_key_at(where, group.loops, i, "level"),
                            f"unknown level '{loop.level}' (levels: {', '.join(levels)})")
    _check_level_order(group.loops, levels, source, where)
    _check_spreading_units(cascade, group, source, where)
    check_overlap(group.overlap, group.einsums, source, f"{where}.overlap")  # the loader checked its syntax only
    unknown = sorted(delay_names(group.overlap, group.einsums) - leaf_ranks)
    if unknown:
        raise SpecError(source, f"{where}.overlap", f"'{unknown[0]}' in a delay term is neither an Einsum of "
                                                    f"this group nor a rank (ranks: {', '.join(sorted(leaf_ranks))})")


def _check_spreading_units(cascade: Cascade, group: Group, source: str, where: str) -> None:
    """A spatial loop spreads a rank over the PEs of a unit that runs an Einsum of the group iterating that rank:
    those PEs run its points along the rank. A unit running no Einsum of the group, or none iterating the rank,
    runs nothing along it, yet its factor had counted as a view of the rank's split (the largest view sizes the
    tiles: `reuse.tile_elems`), so it had inflated every tile over the rank (Unfused's QK group with the 1-D array
    spreading P at 256 beside a 128-wide 2-D array: QK's DRAM traffic 51.54 -> 77.31 GB). Refused, naming the
    loop."""
    ranks_on: dict[str, set[str]] = {}
    for e, ranks in _einsum_ranks(cascade, group).items():
        ranks_on.setdefault(group.binding[e], set()).update(ranks)
    for i, loop in enumerate(group.loops):
        if not loop.is_spatial:
            continue
        unit, at = loop.spatial, _loop_at(where, group.loops, i)
        if unit not in ranks_on:
            raise SpecError(source, at, f"unit {unit} runs no Einsum of this group, so it spreads nothing: expected "
                                        f"a spatial loop on a unit the group binds ({', '.join(ranks_on)})")
        if loop.rank not in ranks_on[unit]:
            mine = ", ".join(e for e in group.einsums if group.binding[e] == unit)
            raise SpecError(source, at, f"unit {unit} spreads rank {loop.rank}, which none of its Einsums here "
                                        f"({mine}) iterates: expected one of their ranks "
                                        f"({', '.join(sorted(ranks_on[unit]))})")


def _check_per_pe_keep(cascade: Cascade, arch: Architecture, group: Group, source: str, where: str) -> None:
    """A level with one instance per PE of a unit (`per_pe_of`) feeds that unit's PEs alone, so it keeps only a
    tensor that an Einsum of the group on that unit reads or writes: one touched on other units only would add fills
    and reads on a path that does not exist."""
    for level, tensors in group.keep.items():
        unit = arch.memory(level).per_pe_of
        if unit is None:
            continue
        for t in tensors:
            touching = [e for e in group.einsums if _touches(cascade, e, t)]
            if not any(group.binding[e] == unit for e in touching):
                users = ", ".join(f"{e} on {group.binding[e]}" for e in touching) or "no Einsum of this group"
                raise SpecError(source, f"{where}.keep.{level}",
                                f"{level} has one instance per PE of unit {unit} (per_pe_of), but no Einsum of this "
                                f"group on {unit} reads or writes {t} (touched by {users}): expected a tensor of "
                                f"{unit}'s Einsums here, or a level shared by the units that touch it")


def _touches(cascade: Cascade, einsum: str, tensor: str) -> bool:
    """Whether `einsum` reads (in its body or mask) or writes `tensor`."""
    e = cascade.einsum(einsum)
    return e.output.tensor == tensor or any(r.tensor == tensor for r in e.refs)


def _check_in_place(cascade: Cascade, levels: Sequence[str], group: Group, source: str, where: str) -> None:
    """`in_place: {OWNER: [T, ...]}`: each T is written over OWNER's storage on chip (FLAT's numerator and A over the
    score block), so takes no room and moves no tile of its own: the plan counts each of its accesses as one to
    OWNER's storage (`archsim.model.plan.storage_accesses`) and no traffic, footprint or energy for T itself. That
    is the group's storage only where the group owns it whole: OWNER and each T are intermediates an Einsum of
    the group writes and only the group's Einsums read (an input, an output, or a tensor written or read by
    another group lives in the outermost level and crosses the group's boundary there: its traffic had vanished),
    OWNER is kept on chip (keep: at a level inside the outermost, and not in it: else there is no storage to write
    over), and each T has OWNER's shape (its leaf ranks and recurrence rank), is neither OWNER nor an owner itself,
    is written over one storage once, and is not kept or double-buffered on its own. Refused otherwise, naming
    `in_place.OWNER`."""
    placed: dict[str, str] = {}  # tensor -> the owner it is written over
    for owner, tensors in group.in_place.items():
        at = f"{where}.in_place.{owner}"
        expected = (f"expected in_place: {{{owner}: [...]}} to name on-chip storage the group owns: intermediates "
                    "of the group's own, of the owner's shape")
        problem = _not_owned(cascade, group, owner, levels[0])
        if problem:
            raise SpecError(source, at, f"{problem}; {expected}")
        kept = [lv for lv, ts in group.keep.items() if owner in ts]
        if not kept or levels[0] in kept:
            raise SpecError(source, at, f"{owner} is kept {f'in {levels[0]}' if kept else 'at no level'}, so it "
                                        f"has no storage on chip to write over; expected {owner} kept at a level "
                                        f"inside {levels[0]} (keep:)")
        for t in tensors:
            problem = (f"{t} is the owner itself" if t == owner
                       else f"{t} is already written over {placed[t]}'s storage" if t in placed
                       else f"{t} owns storage of its own here (in_place.{t})" if t in group.in_place
                       else _not_owned(cascade, group, t, levels[0]) or _not_shaped_as(cascade, t, owner))
            if problem:
                raise SpecError(source, at, f"{problem}; {expected}")
            if t in group.double_buffered or any(t in ts for ts in group.keep.values()):
                raise SpecError(source, at, f"{t} is written over {owner}'s storage, so it has no tiles of its own "
                                            f"to keep or double-buffer: expected those keys to name {owner}")
            placed[t] = owner


def _not_owned(cascade: Cascade, group: Group, tensor: str, home: str) -> str:
    """Why the group does not own `tensor`'s storage whole (`_check_in_place`), or "": it is an intermediate an
    Einsum of the group writes and no Einsum of another group reads (`home`: the outermost level, where the others
    live)."""
    kind = cascade.tensors[tensor].kind
    if kind != "intermediate":
        return f"{tensor} is an {kind} of {cascade.name}, which lives in {home}"
    writer = next((e.name for e in cascade.einsums if e.output.tensor == tensor), None)
    if writer not in group.einsums:
        return f"{tensor} is written by Einsum {writer}, of another group"
    reader = next((e.name for e in cascade.einsums if e.name not in group.einsums
                   and any(r.tensor == tensor for r in e.refs)), None)
    if reader is not None:
        return f"{tensor} is read by Einsum {reader}, of another group (it crosses groups through {home})"
    return ""


def _not_shaped_as(cascade: Cascade, tensor: str, owner: str) -> str:
    """Why `tensor` does not fit `owner`'s storage element for element, or "": the same leaf ranks and recurrence
    rank."""
    mine, theirs = cascade.tensors[tensor], cascade.tensors[owner]
    if set(mine.leaf_ranks) != set(theirs.leaf_ranks) or mine.iterative != theirs.iterative:
        return (f"{tensor} [{', '.join(mine.leaf_ranks)}] does not have the shape of {owner} "
                f"[{', '.join(theirs.leaf_ranks)}]")
    return ""


def _check_level_order(loops: Sequence[Loop], levels: Sequence[str], source: str, where: str) -> None:
    """The temporal loops go outermost first: each level's after those of the levels above it (`levels`, the
    architecture's, outermost first). The reuse model sizes a tile by its loops' levels (`reuse.tile_elems`) but
    counts refetches in the order they are listed (`reuse.refetches`), so a nest out of order would mean neither
    order. Spatial loops sit inside every level wherever they are written. The first loop at a level above one
    already listed is refused, naming that one."""
    deepest: int | None = None  # index in `loops` of the listed temporal loop at the innermost level so far
    for i, loop in enumerate(loops):
        if loop.is_spatial:
            continue
        if deepest is not None and levels.index(loop.level) < levels.index(loops[deepest].level):
            raise SpecError(source, _loop_at(where, loops, i),
                            f"a loop at level {loop.level} comes after {_loop_at(where, loops, deepest)} at "
                            f"{loops[deepest].level}, a level inside it: expected each level's loops after those "
                            f"of the levels above it, outermost first ({', '.join(levels)})")
        if deepest is None or levels.index(loop.level) > levels.index(loops[deepest].level):
            deepest = i


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
    return replace(group, loops=_fill_residuals(binding, arch, group, source, where))


def concrete_factors(binding: Binding, arch: Architecture, group: Group, source: str, where: str) -> Group:
    """The group with every factor expression evaluated (names: the cascade's parameters and rank sizes;
    `capacity(LEVEL)` in bytes; `fanout(UNIT, AXIS)`, the unit's PEs along axis AXIS of its shape (0 first);
    `min`, `max`; `divisor_at_least(n, k)`, the smallest divisor of the whole number n
    that is at least k (n when k > n; FLAT's row blocks: a block count that divides the query tiles);
    `divisor_at_most(n, k)`, the largest divisor of the whole number n that is at most k >= 1 (1 when n is a prime
    above k; the linear layers' spatial tiles: the largest that fits the array's side and tiles the rank); `//` rounds
    down, `/` does not: a factor that is not a whole number is refused, never rounded). Each evaluated loop keeps its
    expression as `rule`, for messages; a numpy integer factor becomes the int it is. `search` and residuals stay as
    they are."""
    names = {**binding.params, **binding.rank_sizes}
    loops = []
    for i, loop in enumerate(group.loops):
        if isinstance(loop.factor, str) and loop.factor != SEARCH:
            at = _loop_at(where, group.loops, i)
            value = _factor_value(parse_factor(loop.factor), names, arch, source, at)
            if not math.isfinite(value) or value < 1 or value != int(value):
                hint = " ('//' rounds a division down)" if "/" in loop.factor and value >= 1 else ""
                read = dict.fromkeys(n.name for n in walk(parse_factor(loop.factor))
                                     if isinstance(n, Name) and n.name in names)
                values = ", ".join(f"{name}={names[name]:g}" for name in read)
                raise SpecError(source, at, f"'{loop.factor}' gives {value:g}, expected a positive integer{hint}"
                                            + (f" (with {values})" if values else ""))
            loop = replace(loop, factor=int(value), rule=loop.factor)
        elif isinstance(loop.factor, Integral) and type(loop.factor) is not int:  # a numpy integer: its value
            loop = replace(loop, factor=int(loop.factor))
        loops.append(loop)
    return replace(group, loops=tuple(loops))


@identity_cache(maxsize=1024)
def numbers_read(mapping: Mapping) -> tuple[frozenset[str], frozenset[str]]:
    """The levels whose capacity and the units whose shape the mapping's factor expressions read
    (`capacity(GlobalBuffer)`, `fanout(array2d, 0)`): all that `concrete_factors` reads of an architecture's numbers,
    so architectures of the same names agreeing on these resolve its groups to the same factors."""
    calls = [n for g in mapping.groups for lp in g.loops if lp.expression for n in walk(parse_factor(lp.expression))
             if isinstance(n, Call) and n.args and isinstance(n.args[0], Name)]
    return (frozenset(n.args[0].name for n in calls if n.fn == "capacity"),
            frozenset(n.args[0].name for n in calls if n.fn == "fanout"))


def numbers_key(arch: Architecture, mapping: Mapping) -> tuple:
    """What the mapping's factor expressions read of `arch` (`numbers_read`), as (name, value) pairs: the capacity
    of each level and the shape of each unit they name. Architectures with equal keys (and names) get the same
    concrete factors."""
    levels, units = numbers_read(mapping)
    return (tuple((m.name, m.capacity_bytes) for m in arch.memories if m.name in levels),
            tuple((u.name, tuple(u.shape)) for u in arch.units if u.name in units))


def _factor_value(node: Expr, names: dict[str, float], arch: Architecture, source: str, at: str) -> float:
    match node:
        case Num(value=value):
            return value
        case Name(name=name):
            _known_name(name, names, source, at)
            return names[name]
        case Call(fn="capacity", args=(Name(name=level),)):
            _known_level(level, arch, source, at)
            capacity = arch.memory(level).capacity_bytes
            if capacity is None:
                raise SpecError(source, at, f"level {level} has no capacity")
            return capacity
        case Call(fn="fanout", args=(Name(name=unit), Num(value=axis))):
            return _unit_axis(unit, axis, arch, source, at)
        case Call(fn="divisor_at_least" | "divisor_at_most" as fn, args=(n_arg, k_arg)):
            n, k = _factor_value(n_arg, names, arch, source, at), _factor_value(k_arg, names, arch, source, at)
            _check_whole(fn, n, source, at)
            return (_divisor_at_least if fn == "divisor_at_least" else _divisor_at_most)(n, k, source, at)
        case Call(fn="min" | "max" as fn, args=args) if args:
            values = [_factor_value(a, names, arch, source, at) for a in args]
            return min(values) if fn == "min" else max(values)
        case BinOp(op="+" | "-" | "*" | "/" | "//" as op, lhs=lhs, rhs=rhs):
            a, b = _factor_value(lhs, names, arch, source, at), _factor_value(rhs, names, arch, source, at)
            if op in ("/", "//") and not b:
                raise SpecError(source, at, "division by zero")
            return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "//": a // b}[op]
    raise SpecError(source, at, f"expected {VOCABULARY}")


def _known_name(name: str, names: Collection[str], source: str, at: str) -> None:
    """A name a factor expression reads is a parameter or rank (`names`), else a SpecError listing them."""
    if name not in names:
        raise SpecError(source, at, f"unknown name '{name}' (parameters and ranks: {', '.join(sorted(names))})")


def _known_level(level: str, arch: Architecture, source: str, at: str) -> None:
    """A level `capacity(...)` names is one of the architecture's memories, else a SpecError listing them."""
    levels = [m.name for m in arch.memories]
    if level not in levels:
        raise SpecError(source, at, f"unknown level '{level}' (levels: {', '.join(levels)})")


def _unit_axis(unit: str, axis: float, arch: Architecture, source: str, at: str) -> int:
    """The fan-out of `unit` along `axis` (0: rows, 1: columns), else a SpecError naming the units and axes."""
    units = {u.name: u for u in arch.units}
    if unit not in units or axis != int(axis) or not 0 <= axis < len(units[unit].shape):
        raise SpecError(source, at, f"fanout(UNIT, AXIS): unknown unit or axis '{unit}', {axis:g} (units: "
                                    + ", ".join(f"{n} {list(u.shape)}" for n, u in units.items()) + ")")
    return units[unit].shape[int(axis)]


def _check_whole(fn: str, n: float, source: str, at: str) -> None:
    """The `n` of `fn(n, k)` (a divisor function) is a whole number."""
    if not math.isfinite(n) or n != int(n):
        raise SpecError(source, at, f"{fn}(n, k): n gives {n:g}, expected a whole number ('//' rounds a division "
                                    "down)")


def _divisor_at_least(n: float, k: float, source: str, at: str) -> float:
    """The smallest divisor of the whole number `n` that is at least `k`; `n` itself when `k` > `n`, and when
    `n` < 1 (the factor check then refuses the value with the sizes it read). Divisors come from
    `archsim.mapping.factors` (exact for a number with up to 4096 of them, every `n` below 2^24 included)."""
    if n < 1 or k > n:
        return n
    return min(d for d in divisors(int(n), 4096) if d >= k)


def _divisor_at_most(n: float, k: float, source: str, at: str) -> float:
    """The largest divisor of the whole number `n` that is at most `k` (1 for a prime `n` above `k`, `n` itself when
    `k` >= `n`), and `n` when `n` < 1 (the factor check then refuses the value with the sizes it read). `k` below 1
    has no such divisor and is refused. Divisors come from `archsim.mapping.factors`, as for `_divisor_at_least`."""
    if not k >= 1:
        raise SpecError(source, at, f"divisor_at_most(n, k): k gives {k:g}, expected a number >= 1")
    if k >= n:  # an `n` below 1 too, as k >= 1
        return n
    return max(d for d in divisors(int(n), 4096) if d <= k)


def _fill_residuals(binding: Binding, arch: Architecture, group: Group, source: str,
                    where: str) -> tuple[Loop, ...]:
    _check_looped(binding.cascade, group, source, where, binding)
    loops = list(group.loops)
    ranks_by_unit = _ranks_by_unit(binding, group)
    for rank in sorted(set().union(*ranks_by_unit.values())):
        size = binding.rank_sizes[rank]
        temporal = [i for i, lp in enumerate(loops) if lp.rank == rank and not lp.is_spatial]
        open_ = [i for i in temporal if loops[i].factor is None]
        if len(open_) > 1:
            raise SpecError(source, _loop_at(where, loops, open_[1]), f"rank {rank}: only one loop may leave its "
                                                                     "factor out (the residual)")
        _check_equal_spreads(loops, rank, [unit for unit, ranks in ranks_by_unit.items() if rank in ranks], source,
                             where)
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
                                    f"{parts})" + _advice(binding, arch, group, rank, fixed, source, where, True))
                loops[open_[0]] = replace(loops[open_[0]], factor=size // fixed)
                open_ = []
                fixed = size
            if fixed != size:
                raise SpecError(source, f"{where}.loops", f"rank {rank}: factors on unit {unit} multiply to "
                                                             f"{fixed}, expected the rank size {size}"
                                + (_advice(binding, arch, group, rank, fixed, source, where, False)
                                   if _own_rules(binding, group, rank) else ""))
    return tuple(loops)


def _check_equal_spreads(loops: list[Loop], rank: str, units: list[str], source: str, where: str) -> None:
    """The `units` reading `rank` spread it equally (`_spatial_extent`): the group's temporal loops are theirs
    together, so a unit spreading more than another would cover more than the rank (and be told a product of
    factors the mapping never wrote)."""
    spreads = [(unit, _spatial_extent(loops, rank, unit)) for unit in units]
    for unit, spread in spreads[1:]:
        if spread != spreads[0][1]:
            raise SpecError(source, f"{where}.loops", f"rank {rank} is spread {spreads[0][1]} on {spreads[0][0]} but "
                                                      f"{spread} on {unit}: the units of one group share its temporal "
                                                      "loops, so each must spread a rank equally")


def _ranks_by_unit(binding: Binding, group: Group) -> dict[str, set[str]]:
    """Unit -> the leaf ranks of the Einsums bound to it."""
    out: dict[str, set[str]] = {}
    for e, ranks in group_ranks(binding, group).items():
        out.setdefault(group.binding[e], set()).update(ranks)
    return out


def _moves_with(binding: Binding, rank: str) -> set[str]:
    """The names whose values change with `rank`'s size: the rank, the parameter its size is (P: seq_len) and
    the other ranks that parameter sizes (M)."""
    sizes = binding.cascade.rank_sizes
    expr = sizes.get(rank)
    if not isinstance(expr, Name):
        return {rank}
    return {rank, expr.name, *(r for r, e in sizes.items() if e == expr)}


def _own_rules(binding: Binding, group: Group, rank: str) -> list[int]:
    """The loops whose factor a rule (an expression, kept as `Loop.rule`) reading `rank`'s own size gave, over any
    rank that size moves (FLAT's row blocks over P read P and M, both seq_len): their value is another at
    another size."""
    moving = _moves_with(binding, rank)
    return [i for i, lp in enumerate(group.loops) if lp.rule
            and any(isinstance(n, Name) and n.name in moving for n in walk(parse_factor(lp.rule)))]


def _tiles_at(binding: Binding, arch: Architecture, group: Group, moving: set[str], size: int, source: str,
              where: str) -> bool:
    """Whether the group's loops tile every rank in `moving` when those names are all `size`: each rule
    evaluated there, then, as `_fill_residuals` checks, per unit the fixed factors divide the size (with a
    residual loop) or equal it (without)."""
    names = {**binding.params, **binding.rank_sizes, **dict.fromkeys(moving, size)}
    factors = []
    for i, lp in enumerate(group.loops):
        if lp.rule:
            try:
                value = _factor_value(parse_factor(lp.rule), names, arch, source, _loop_at(where, group.loops, i))
            except SpecError:
                return False
            if not math.isfinite(value) or value < 1 or value != int(value):
                return False
            lp = replace(lp, factor=int(value))
        factors.append(lp)
    for unit, ranks in _ranks_by_unit(binding, group).items():
        for rank in ranks & moving:
            temporal = [lp.factor for lp in factors if lp.rank == rank and not lp.is_spatial]
            fixed = math.prod(f for f in temporal if f is not None) * _spatial_extent(factors, rank, unit)
            if size % fixed if None in temporal else fixed != size:
                return False
    return True


def _advice(binding: Binding, arch: Architecture, group: Group, rank: str, fixed: int, source: str, where: str,
            residual: bool) -> str:
    """What to give instead of a size of `rank` that its factors (multiplying to `fixed`; with a `residual` loop
    taking the rest, else alone) do not tile. Constant factors: the nearest multiples of `fixed`. Where a loop's
    factor comes from a rule of the rank's own size (`_own_rules`), its value is another at another size, so those
    multiples are the advice only where the group, its rules evaluated there, tiles them (FLAT's row blocks at a
    length not of whole 256-token tiles); else the nearest sizes at which it does (`_tiles_at`; within
    `ADVICE_STEPS` multiples of the constant factors either way, and the size limit), and, where a rule over this
    rank is what fails (with a residual, the constant factors dividing the size), which rule, its value and what
    it had to divide."""
    size = binding.rank_sizes[rank]
    rules = _own_rules(binding, group, rank)
    if not rules:
        return f"; {nearest_multiples(size, fixed)}"
    moving = _moves_with(binding, rank)
    multiples = [n for n in (size // fixed * fixed, -(-size // fixed) * fixed) if n]
    if residual and all(_tiles_at(binding, arch, group, moving, n, source, where) for n in multiples):
        return f"; {nearest_multiples(size, fixed)}"  # the rules tile there too (FLAT's at a length not of 256s)
    loops = group.loops
    here = [i for i in rules if loops[i].rank == rank and not loops[i].is_spatial]
    const = fixed // math.prod(loops[i].factor for i in here)
    first_below, first_above = (size - 1) // const * const, size // const * const + const
    below = next((n for n in range(first_below, max(0, first_below - ADVICE_STEPS * const), -const)
                  if n > 0 and _tiles_at(binding, arch, group, moving, n, source, where)), None)
    above = next((n for n in range(first_above, min(max_size(), first_above + ADVICE_STEPS * const) + 1, const)
                  if _tiles_at(binding, arch, group, moving, n, source, where)), None)
    found = [str(n) for n in (below, above) if n is not None]
    several = len(rules) > 1
    named = (f"the rule{'s' * several} of "
             + ", ".join(f"{_loop_at(where, loops, i)} ('{loops[i].rule}')" for i in rules)
             + f" read{'' if several else 's'} the size of {rank}")
    if found:
        nearest = (f"with {'them' if several else 'it'} evaluated at each, the nearest sizes of {rank} that tile are "
                   f"{' and '.join(found)} (to model a padded sequence, give one of them)")
    else:
        nearest = (f"no size of {rank} within {ADVICE_STEPS} multiples of {const} either way tiles with "
                   f"{'them' if several else 'it'} evaluated there")
    if not (residual and here) or size % const:
        return f"; {named}: {nearest}"
    values = " x ".join(str(loops[i].factor) for i in here)
    return (f": {named}, and {'their' if len(here) > 1 else 'its'} {values} does not divide the {size // const} "
            f"the other factors leave ({size} / {const}), so multiples of {fixed} are no advice; a rule of the "
            "rank's own size must give a divisor of what the others leave, at every size (divisor_at_least(n, k): "
            f"the smallest divisor of n at least k); {nearest}")


def _loop_at(where: str, loops: Sequence[Loop], i: int) -> str:
    """The YAML path of loop `i` (`groups[0].loops[1].ranks.M`; a loop over several ranks is one per rank here)."""
    return f"{where}.{loops[i].path or f'loops[{i}]'}"


def _loop_key_at(where: str, loops: Sequence[Loop], i: int, key: str) -> str:
    """The YAML path of loop `i`'s `key` (`groups[0].loops[2].spatial`), which its ranks share."""
    return f"{where}.{loops[i].entry or f'loops[{i}]'}.{key}"


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
