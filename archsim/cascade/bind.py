"""Bind a cascade's ranks to sizes: cascade defaults, then a workload's params, then explicit overrides.

Every value is checked (`archsim.workload.check_size`) and an error blames where it came from: the cascade
file's `params.X`, the workload file's `params.X`, or the overrides' source ("--set") and the name. A message
saying where a value came from names a spec by what it is (`M0=256 from mapping fusemax`, `_Named`), not by its
file: a sweep stores the message without the blamed file, and a path is another on every install and folder.

An override names either a parameter (`seq_len=4096`) or a rank (`M0=256`). Partition parts whose size is
left out are derived (M1 = M / M0) and must divide exactly. A rank is set directly only where nothing else reads the
parameters its size reads (`_check_rank_overrides`), and a data-dependent mask's density must be a finite share of at
least 0 (`_check_densities`). Whole sizes below 2^53 in messages are written exactly (`number_text`).

A layer's FFN (`binds_ffn_words`) is bound to `ffn_word_bytes` wherever a layer of values gives it (an FFN
quantised apart from the rest, as Llama 3 405B's FP8 serving): it is the FFN's `word_bytes`, whatever layer gives
`word_bytes`, and an override of it (`--set ffn_word_bytes=1`) is read so; every other cascade ignores it.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from archsim.cascade import syntax as S
from archsim.cascade.ir import Cascade
from archsim.errors import SpecError
from archsim.memo import identity_cache, kept, per_object
from archsim.workload import BLOCK_CASCADES, PARAMS, Workload, check_size, max_size

FFN_WORDS = "ffn_word_bytes"  # the FFN's element width where the workload quantises it apart (archsim.workload)
MOE_CASCADE = "moe-experts"  # a MoE layer's FFN (archsim.systems.step)


@dataclass(frozen=True)
class Binding:
    """Concrete sizes of one cascade instance. `bind` makes its dicts read-only views: a binding is shared by every
    `archsim.point.prepare` call of equal inputs, so a caller writing into one would change later results."""

    cascade: Cascade
    params: Mapping[str, float]
    rank_sizes: Mapping[str, int]
    word_bytes: int

    def var_size(self, var: str) -> int:
        return self.rank_sizes[self.cascade.var_ranks[var]]

    def leaf_shape(self, tensor: str) -> tuple[int, ...]:
        """Shape over leaf ranks; a recurrence is one slot longer along its iterative rank."""
        decl = self.cascade.tensors[tensor]
        return tuple(self.rank_sizes[r] + (r == decl.iterative) for r in decl.leaf_ranks)

    def shape(self, tensor: str) -> tuple[int, ...]:
        """Shape over the ranks as declared (a partitioned rank is one axis), remembered per tensor: analysis asks
        for it many times."""
        found = self._shapes.get(tensor)
        if found is None:
            decl = self.cascade.tensors[tensor]
            found = self._shapes[tensor] = tuple(self.rank_sizes[r] + (r == decl.iterative) for r in decl.ranks)
        return found

    @kept
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def bytes(self, tensor: str) -> int:
        return math.prod(self.shape(tensor)) * self.word_bytes

    @kept
    def predicate_values(self) -> dict[str, float]:
        """The names a mask predicate may read besides index variables: the params and the rank sizes (a tile
        mask `m1 * M0 <= p` reads the tile's size as bound, however it was set); a param wins over a rank of the
        same name, as the loader resolves the name."""
        return {**self.rank_sizes, **self.params}


def nearest_multiples(size: int, factor: int) -> str:
    """What a size that a tiling does not divide could be instead: the multiples of `factor` around it (the
    models need whole tiles; a padded length is the user's choice, never made for them). One past the size limit
    (`max_size()`: ARCHSIM_MAX_SIZE) is not offered as a length to give: the advice says it is beyond the limit, and
    that giving it takes raising ARCHSIM_MAX_SIZE."""
    limit = max_size()
    below, above = size // factor * factor, -(-size // factor) * factor
    if above <= limit:
        return (f"the nearest multiples are {below} and {above} (to model a padded sequence, give one of them)"
                if below else f"the smallest multiple is {above} (to model a padded sequence, give it)")
    beyond = f"{above}, is beyond the limit of {limit} on sizes: raise ARCHSIM_MAX_SIZE to give it"
    return (f"the nearest multiple within the size limit is {below} (to model a padded sequence, give it); the next, "
            f"{beyond}" if below else f"the smallest multiple, {beyond}")


def nearest_divisors(size: int, near: int) -> str:
    """The divisors of `size` nearest `near` (one below and one above, where there are), as advice where a model size
    must divide another (each K/V head serves heads / kv_heads query heads)."""
    divisors = {d for i in range(1, math.isqrt(size) + 1) if size % i == 0 for d in (i, size // i)}
    nearest = [str(d) for d in (max((d for d in divisors if d < near), default=None),
                                min((d for d in divisors if d > near), default=None)) if d is not None]
    return (f"the {'divisors' if len(nearest) > 1 else 'divisor'} of {size} nearest {near} "
            f"{'are' if len(nearest) > 1 else 'is'} {' and '.join(nearest)}")


def _partition_advice(cascade: Cascade, root: str, parts: list[str], rank_overrides: Mapping[str, int], size: int,
                      product: int) -> str:
    """What to change where a partition's parts do not divide its root. Where the root and the parts are each a
    model size (`archsim.workload.PARAMS`) other than a length, such as GQA's `H: [G, R]` over heads and kv_heads,
    the split is the model's own: the workload's sizes must divide (each KV head serves heads / kv_heads query
    heads), and the nearest divisors of the root are the advice, not a padded sequence. Otherwise (a length over a
    tile, `M: [M1, M0]`) the nearest multiples of the parts (`nearest_multiples`)."""
    behind = {r: e.name for r in (root, *parts) if r not in rank_overrides
              and isinstance(e := cascade.rank_sizes.get(r), S.Name) and e.name in PARAMS}
    if len(behind) < len(parts) + 1 or behind[root] in ("seq_len", "tokens"):
        return nearest_multiples(size, product)
    return (f"a workload's {'*'.join(behind[p] for p in parts)} must divide its {behind[root]} (the model's own "
            f"split, nothing to pad): {nearest_divisors(size, product)}")


def _tile_advice(known: list[str], rank_overrides: Mapping[str, int], origin: Mapping[str, str], source: str,
                 root: str, size: int, tile: int) -> str:
    """Where the one part given is a tile the user set (`--set M0=1000`, not a mapping's `set:`), the other way out:
    a tile that divides the size (`nearest_divisors`) rather than a sequence padded to the tile."""
    if len(known) != 1 or known[0] not in rank_overrides or origin.get(known[0]) != source:
        return ""
    return f"; or set {known[0]} to a divisor of {root}={size}: {nearest_divisors(size, tile)}"


_SIZE_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
             "//": operator.floordiv, "%": operator.mod}
_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def eval_size(expr: S.Expr, params: Mapping[str, float]) -> float:
    """Evaluate a size/density expression of parameters. A `/`, `//` or `%` by 0 is NaN, which every later
    operation keeps (inf would not: `1 // inf` is 0) and every range check refuses (`zero_divisor` names it)."""
    match expr:
        case S.Num(value=value):
            return value
        case S.Name(name=name):
            return params[name]
        case S.BinOp(op=op, lhs=lhs, rhs=rhs):
            a, b = eval_size(lhs, params), eval_size(rhs, params)
            if op in ("/", "//", "%") and not b:
                return math.nan
            try:
                return _SIZE_OPS[op](a, b)
            except OverflowError:
                return math.inf  # beyond any float: the range checks on the result refuse it
    raise TypeError(f"not a size expression: {expr!r}")


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def size_text(expr: S.Expr) -> str:
    """A size expression written out, with the parentheses its operators' precedence needs (left to right)."""
    match expr:
        case S.Num(value=value):
            return number_text(value)
        case S.Name(name=name):
            return name
        case S.BinOp(op=op, lhs=lhs, rhs=rhs):
            return f"{_operand_text(lhs, _PRECEDENCE[op])} {op} {_operand_text(rhs, _PRECEDENCE[op] + 1)}"
    raise TypeError(f"not a size expression: {expr!r}")


def number_text(value: float) -> str:
    """A size or parameter written out for a message: a whole value exactly (`1000001`, where `:g` wrote `1e+06`),
    any other to 15 significant digits (`0.5`; a float past 2^53, 1e300 say, too: its int would print hundreds of
    digits), infinity and NaN as Python writes them."""
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return f"{value:.15g}"


def _operand_text(expr: S.Expr, least: int) -> str:
    """An operand written out, in parentheses where its operator binds less tightly than `least`."""
    text = size_text(expr)
    return f"({text})" if isinstance(expr, S.BinOp) and _PRECEDENCE[expr.op] < least else text


def zero_divisor(expr: S.Expr, params: Mapping[str, float]) -> str | None:
    """The first operation of `expr` (left to right, innermost first) that divides or takes a remainder by 0 with
    `params`, written out (`size_text`), or None."""
    if not isinstance(expr, S.BinOp):
        return None
    inner = zero_divisor(expr.lhs, params) or zero_divisor(expr.rhs, params)
    if inner is None and expr.op in ("/", "//", "%") and eval_size(expr.rhs, params) == 0:
        return size_text(expr)
    return inner


def bind(
    cascade: Cascade,
    params: Workload | Mapping[str, float] | None = None,
    overrides: Mapping[str, float] | None = None,
    source: str = "<params>",
    *,
    fixed: tuple[str, Mapping[str, float]] | None = None,
    set_option: bool = True,
) -> Binding:
    """Resolve every rank size from values layered, later winning: the cascade's defaults, `params`, `overrides`.

    Only values and sizes are checked here. Whether the workload's attention, decoder block and FFN are the
    cascade's, whether a tiling or algorithm parameter (`tile_kv`) is left at its test default, and whether sets
    without a workload give every size the cascade binds (`point.sizes_unset`), are checked by `archsim.point.bound`
    (the checks of `archsim run` and `archsim analyze`): a user binding a cascade to a workload calls that, not
    this.

    `params` is a workload or a plain mapping, and may carry names the cascade does not use (a workload is generic),
    but no rank of the cascade (`_refuse_ranks`: a rank's size is an override, never a param quietly ignored).
    A workload must give every model size (`archsim.workload.PARAMS`) the cascade binds, unless `overrides` does: a
    missing one is a SpecError naming the workload's file, never a silent use of the cascade's small default. A
    plain mapping (a workload's `.params` too; an internal caller stating the sizes it cares about, such as the GPU
    tile model) is not checked so: sizes it leaves out take the defaults. `overrides` (from `source`, e.g. "--set")
    must each name a parameter or a rank of the cascade. `fixed` is (source, values) set between `params` and
    `overrides`, e.g. a mapping's `set:` (tile sizes). Every value passes `check_size`, blamed on where it came
    from, and a partition that does not divide says where its sizes came from. `set_option` False: the caller's
    command has no `--set` (simulate, a system's decoder layer), so a missing model size's error does not suggest
    one."""
    limit = max_size()  # the environment read once per binding, not per value
    if isinstance(params, Workload):
        values, origin = (dict(layered) for layered in _workload_layers(cascade, params, limit))
    else:
        values, origin = _layers(cascade, [("<params>", params)] if params else [], limit)
    mapping = _Named(fixed[0], f"mapping {Path(fixed[0]).stem}") if fixed else None
    override_layers = [(mapping, fixed[1], "set.")] if fixed else []
    override_layers.append((source, overrides or {}, ""))
    rank_overrides, rank_given = _apply_overrides(cascade, values, origin, override_layers, limit)
    _ffn_words(cascade, values, origin)
    if isinstance(params, Workload):
        _check_model_sizes(cascade, params, overrides or {}, set_option)
    if values.get("top_k", 0) > values.get("experts", math.inf):  # as a workload file is checked (archsim.workload)
        raise SpecError(origin.get("top_k", cascade.source), "top_k", f"expected at most experts "
                                                                      f"({number_text(values['experts'])}), got "
                                                                      f"{number_text(values['top_k'])}")
    # a requirement on a parameter whose one rank the mapping fixes reads the tile the point runs at
    tiles = fixed_tiles(cascade, params_masked_by(cascade, fixed[1]), rank_overrides) if fixed else {}
    _check_rank_overrides(cascade, rank_overrides, rank_given, values, origin, tiles)
    sizes = _rank_sizes(cascade, values, origin, rank_overrides, source, limit)
    _partition_sizes(cascade, sizes, values, origin, rank_overrides, source)
    _check_constant_slots(cascade, sizes, values, origin)
    _check_requires(cascade, {**values, **tiles}, sizes, {**origin, **dict.fromkeys(tiles, mapping)})
    _check_densities(cascade, values, origin)
    word_bytes = _positive_int(values["word_bytes"], origin.get("word_bytes", cascade.source),
                               "params.word_bytes")
    return Binding(cascade, MappingProxyType(values), MappingProxyType(sizes), word_bytes)


def _apply_overrides(cascade: Cascade, values: dict[str, float], origin: dict[str, str],
                     layers: list[tuple[str, Mapping[str, float], str]], limit: int
                     ) -> tuple[dict[str, int], dict[str, tuple[str, str]]]:
    """Apply the override `layers` ((source, values, prefix of the field path), later winning) to the params
    `values` and their `origin`: a parameter's value replaces it; a rank's size is returned apart, with the
    (source, where) of the value that won, as (rank sizes set directly, where each was set). A name neither a
    parameter nor a rank of the cascade, or a word size the FFN does not bind at, is a SpecError."""
    rank_overrides: dict[str, int] = {}
    rank_given: dict[str, tuple[str, str]] = {}
    ffn = binds_ffn_words(cascade)
    for layer_source, layer, prefix in layers:
        for key, value in layer.items():
            where = f"{prefix}{key}"
            if ffn and key == "word_bytes" and (FFN_WORDS in values or FFN_WORDS in layer):
                raise SpecError(layer_source, where, f"{cascade.name} is bound at ffn_word_bytes, which "
                                                     f"{_shown(origin.get(FFN_WORDS, layer_source))} gives: set "
                                                     "ffn_word_bytes for the FFN's width")
            if key in cascade.rank_sizes:
                rank_overrides[key] = _positive_int(check_size(key, value, layer_source, where, limit), layer_source,
                                                   where)
                origin[key], rank_given[key] = layer_source, (layer_source, where)
            elif key in values or (ffn and key == FFN_WORDS):
                values[key] = check_param(key, value, layer_source, where, limit)
                origin[key] = layer_source
            else:
                known = ", ".join([*values, *cascade.rank_sizes])
                raise SpecError(layer_source, where, f"not a parameter or rank of {cascade.name} ({cascade.source}; "
                                                     f"known: {known})")
    return rank_overrides, rank_given


def _rank_sizes(cascade: Cascade, values: Mapping[str, float], origin: Mapping[str, str],
                rank_overrides: Mapping[str, int], source: str, limit: int) -> dict[str, int]:
    """Each rank's size: set directly (`rank_overrides`), else its expression over the params `values`, a whole
    positive number within the size limit, else a SpecError saying which params made it so. Ranks a partition
    derives (no expression) are `_partition_sizes`'."""
    sizes: dict[str, int] = {}
    for rank, expr in cascade.rank_sizes.items():
        if rank in rank_overrides:
            sizes[rank] = rank_overrides[rank]
        elif expr is not None:
            where = f"ranks.{rank}"
            if divisor := zero_divisor(expr, values):
                raise SpecError(cascade.source, where, f"{rank} = {size_text(expr)} divides by zero at {divisor} "
                                                       f"(with params {_values_text(values, values)})"
                                + _origins(cascade, [rank], values, origin))
            try:
                sizes[rank] = _positive_int(check_size(rank, eval_size(expr, values), cascade.source, where, limit),
                                            cascade.source, where)
            except SpecError as exc:
                raise (_no_whole_part(cascade, rank, values, origin, source)
                       or _no_even_split(cascade, rank, values, origin, source)
                       or SpecError(exc.source, exc.where, f"{exc.message} (with params {_values_text(values, values)})"
                                    + _defaults_hint(cascade, [rank], values, origin, source))) from None
    return sizes


def _partition_sizes(cascade: Cascade, sizes: dict[str, int], values: Mapping[str, float],
                     origin: Mapping[str, str], rank_overrides: Mapping[str, int], source: str) -> None:
    """Complete `sizes` with each partition's missing part (its root over the known parts), or check that the
    parts multiply to the root where all are known; a SpecError where they do not divide or multiply to it."""
    for root, parts in cascade.partitions.items():
        known = [p for p in parts if p in sizes]
        product = math.prod(sizes[p] for p in known)
        bound_by_params = [r for r in (root, *known) if r not in rank_overrides]
        if len(known) == len(parts):
            if product != sizes[root]:
                raise SpecError(cascade.source, f"partition.{root}",
                                f"parts {parts} multiply to {product}, not {root}={sizes[root]}"
                                + _defaults_hint(cascade, bound_by_params, values, origin, source)
                                + _origins(cascade, [root, *parts], {**values, **sizes}, origin))
            continue
        missing = next(p for p in parts if p not in sizes)
        if sizes[root] % product:
            raise SpecError(cascade.source, f"partition.{root}",
                            f"{root}={sizes[root]} is not divisible by {'*'.join(known)}={product}"
                            + _defaults_hint(cascade, bound_by_params, values, origin, source)
                            + _origins(cascade, [root, *known], {**values, **sizes}, origin)
                            + f"; {_partition_advice(cascade, root, known, rank_overrides, sizes[root], product)}"
                            + _tile_advice(known, rank_overrides, origin, source, root, sizes[root], product))
        sizes[missing] = sizes[root] // product


def _check_constant_slots(cascade: Cascade, sizes: Mapping[str, int], values: Mapping[str, float],
                          origin: Mapping[str, str]) -> None:
    """Each constant index of the cascade's expressions within its rank's slots at the bound sizes."""
    for where, text, rank, const, slots_over_size in _constant_slots(cascade):
        if const >= sizes[rank] + slots_over_size:
            raise SpecError(cascade.source, where, f"{text}: slot {const} is out of range: rank {rank} has "
                                                   f"{sizes[rank] + slots_over_size} slots (0 to "
                                                   f"{sizes[rank] + slots_over_size - 1}) with {rank}={sizes[rank]}"
                                                   + _origins(cascade, [rank], {**values, **sizes}, origin))


def _check_requires(cascade: Cascade, values: Mapping[str, float], sizes: Mapping[str, int],
                    origin: Mapping[str, str]) -> None:
    """Each of the cascade's `requires:` rules holds for the bound params and rank sizes (a comparison, or one of
    comparisons joined by `or`); else a SpecError blaming the first size in it that was given (a workload, --set: a
    rank set directly, or a param a rank's size reads), or the cascade file when all are its defaults."""
    bound = {**values, **sizes}
    for i, (text, expr) in enumerate(cascade.requires):
        sides = [(eval_size(c.lhs, bound), eval_size(c.rhs, bound), c.op,
                  zero_divisor(c.lhs, bound) or zero_divisor(c.rhs, bound)) for c in S.disjuncts(expr)]
        if any(not divisor and _COMPARISONS[op](lhs, rhs) for lhs, rhs, op, divisor in sides):
            continue
        names = list(dict.fromkeys(n.name for n in S.walk(expr) if isinstance(n, S.Name)))
        behind = list(dict.fromkeys(p for n in names for p in (
            [n] if n in origin or cascade.rank_sizes.get(n) is None else sorted(S.names_in(cascade.rank_sizes[n])))))
        given = next((n for n in behind if origin.get(n, cascade.source) != cascade.source), None)
        shown = _values_text(names, bound)
        sources = _values_text([n for n in behind if n not in names], bound, origin, cascade.source)
        got = ", ".join(f"divides by zero at {divisor}" if divisor else
                        f"got {number_text(lhs)} against {number_text(rhs)}" for lhs, rhs, _, divisor in sides)
        raise SpecError(origin[given] if given else cascade.source, given or f"requires[{i}]",
                        f"expected {text} (cascade {cascade.name}, requires[{i}]), {got}"
                        + (f" with {shown}" if shown else "") + (f" ({sources})" if sources else ""))


def _check_rank_overrides(cascade: Cascade, rank_overrides: Mapping[str, int],
                          given: Mapping[str, tuple[str, str]], values: Mapping[str, float],
                          origin: Mapping[str, str], tiles: Mapping[str, float]) -> None:
    """A rank set directly (`--set M=65536`) leaves the parameters its size reads at their values, so whatever else
    reads one would count the old value beside the rank's new one: an Einsum's body, mask or mask density
    (tokenselect's `(k + sinks + local) / seq_len` over a cache set apart, 16x the kept keys), a `requires:`, or
    another rank not set (`J: seq_len // page` beside `M: seq_len`). Such a rank is a SpecError blaming the value
    (`given`: rank -> its source and field), naming the parameter's value and its `origin`, and saying to set the
    parameter instead. Left alone: a rank set to what its size gives anyway; two ranks each sized by the parameter
    alone (`P: seq_len` beside `M: seq_len`, keys of another length than the queries: the parameter is each one's
    default, not a shared size); and a `requires:` on a parameter in `tiles` (`fixed_tiles`: it reads the tile the
    mapping fixes)."""
    for rank, (source, where) in given.items():
        expr = cascade.rank_sizes[rank]
        if expr is None or eval_size(expr, values) == rank_overrides[rank]:
            continue
        for param in sorted(S.names_in(expr)):
            readers = [f"ranks.{other}" for other, size in cascade.rank_sizes.items()
                       if other not in rank_overrides and size is not None and param in S.names_in(size)
                       and not (isinstance(expr, S.Name) and isinstance(size, S.Name))]
            readers += [f"einsum {einsum.name}" for einsum in cascade.einsums if param in einsum.names_read]
            readers += [f"requires[{i}]" for i, (_, check) in enumerate(cascade.requires)
                        if param in S.names_in(check) and param not in tiles]
            if readers:
                raise SpecError(source, where, f"{rank} is sized by {param} (ranks.{rank}: {size_text(expr)}), which "
                                               f"{', '.join(readers)} also read: {rank}={rank_overrides[rank]} "
                                               f"would leave them reading {param}={number_text(values[param])} "
                                               f"(from {_shown(origin[param])}); set {param} instead")


@per_object(maxsize=1024)
def _densities(cascade: Cascade) -> tuple[tuple[str, S.Expr], ...]:
    """(`masks.NAME.density`, expression) of each data-dependent mask an Einsum reads, once per mask: a mask with a
    density is one named under `masks:` (an inline predicate has none), `where NAME` in the Einsum's text."""
    found = {}
    for einsum in cascade.einsums:
        if einsum.mask is not None and einsum.mask.density is not None:
            where = S.parse_einsum(einsum.text).where
            assert isinstance(where, S.Name)  # the loader refuses a density on anything but a named mask
            found[f"masks.{where.name}.density"] = einsum.mask.density
    return tuple(found.items())


def _check_densities(cascade: Cascade, values: Mapping[str, float], origin: Mapping[str, str]) -> None:
    """Each data-dependent mask's density (`_densities`), the share of its space's points counted
    (`archsim.cascade.analysis.einsum_points`), is finite and at least 0: a division by zero (NaN, which `min(1.0,
    nan)` read as every point) or a negative share (negative points) is a SpecError naming the field, the zero divisor
    (`zero_divisor`) and the params it read, with where each given one came from. A share above 1 stays allowed and
    counts every point: a library density may pass 1 (duoattention's streaming window holding the whole cache)."""
    for where, expr in _densities(cascade):
        divisor = zero_divisor(expr, values)
        density = eval_size(expr, values)
        if not divisor and math.isfinite(density) and density >= 0:
            continue
        names = list(dict.fromkeys(n.name for n in S.walk(expr) if isinstance(n, S.Name)))
        shown = _values_text(names, values)
        sources = _values_text(names, values, origin, cascade.source)
        got = (f"{size_text(expr)} divides by zero at {divisor}" if divisor else
               f"expected a finite share of points of at least 0, got {number_text(density)} ({size_text(expr)})")
        raise SpecError(cascade.source, where, f"{got} with {shown}" + (f" ({sources})" if sources else ""))


def params_masked_by(cascade: Cascade, fixed: Mapping[str, float]) -> dict[str, list[str]]:
    """Parameter -> the ranks it sizes, for each parameter that sizes only ranks in `fixed` (a mapping's `set:`)
    and is read by no Einsum or mask: setting it changes nothing (`tile_kv` under `set: {M0: 256}`)."""
    read_by_einsums = set().union(*(e.names_read for e in cascade.einsums))
    masked = {}
    for key in cascade.params.keys() - read_by_einsums:
        sized = ranks_sized_by(cascade, key)
        if sized and set(sized) <= fixed.keys():
            masked[key] = sized
    return masked


def fixed_tiles(cascade: Cascade, masked: Mapping[str, list[str]], sizes: Mapping[str, int]) -> dict[str, float]:
    """The size each parameter of `masked` (parameter -> the ranks a mapping fixes, `params_masked_by`) stands for:
    its one rank's size, where that rank is sized by the parameter alone (`M0: tile_kv`: fusemax's 256)."""
    return {name: float(sizes[ranks[0]]) for name, ranks in masked.items()
            if len(ranks) == 1 and isinstance(cascade.rank_sizes[ranks[0]], S.Name)
            and cascade.rank_sizes[ranks[0]].name == name}


def ranks_sized_by(cascade: Cascade, param: str) -> list[str]:
    """The ranks whose size expression reads `param` (`tile_kv` sizes M0)."""
    return [r for r, expr in cascade.rank_sizes.items() if expr is not None and param in S.names_in(expr)]


@per_object(maxsize=1024)
def _constant_slots(cascade: Cascade) -> tuple[tuple[str, str, str, int, int], ...]:
    """(where, access, leaf rank, constant, 1 for a recurrence's extra slot else 0) of every constant index an Einsum
    of the cascade reads or writes (`X[b,h,0,p]`): its range is known once the ranks are bound."""
    found = []
    for i, einsum in enumerate(cascade.einsums):
        for ref in (einsum.output, *einsum.refs):
            decl = cascade.tensors[ref.tensor]
            found.extend((f"einsums[{i}] ({einsum.output.tensor})", ref.text, rank, term.const,
                          int(rank == decl.iterative))
                         for term, rank in zip(ref.terms, decl.leaf_ranks, strict=True) if term.const is not None)
    return tuple(found)


def _layers(cascade: Cascade, given: list[tuple[str, Mapping[str, float]]],
            limit: int) -> tuple[dict[str, float], dict[str, str]]:
    """The cascade's params, then each (source, params) layer over them, checked: the values and each one's
    source."""
    values: dict[str, float] = {}
    origin: dict[str, str] = {}  # param -> the source of its value
    for layer_source, layer in given:
        _refuse_ranks(cascade, layer_source, layer)
    for layer_source, layer in [(_Named(cascade.source, f"cascade {cascade.name}"), cascade.params), *given]:
        values.update(_checked_params(layer_source, layer, limit))
        origin.update(dict.fromkeys(layer, layer_source))
    _ffn_words(cascade, values, origin)
    return values, origin


def _refuse_ranks(cascade: Cascade, source: str, layer: Mapping[str, float]) -> None:
    """A name of a params `layer` that is a rank of the cascade and none of its parameters is a SpecError saying where
    a rank's size goes: params give parameters only, so the size would be ignored for what the cascade's own
    params give (its test tile, M0 = tile_kv = 4)."""
    for key in layer:
        if key in cascade.rank_sizes and key not in cascade.params:
            raise SpecError(source, f"params.{key}", f"{key} is a rank of {cascade.name}, not a parameter: give its "
                                                     f"size as an override (bind(cascade, params, {{'{key}': N}}), "
                                                     f"--set {key}=N or a mapping's set:)")


def binds_ffn_words(cascade: Cascade) -> bool:
    """Whether `ffn_word_bytes` binds the cascade's words: it is a decoder layer's FFN as `archsim.systems.step`
    picks one, a block's dense FFN (`archsim.workload.BLOCK_CASCADES`) or a MoE layer's experts (`MOE_CASCADE`)."""
    return cascade.name == MOE_CASCADE or any(cascade.name == ffn for _, ffn in BLOCK_CASCADES.values())


def _ffn_words(cascade: Cascade, values: dict[str, float], origin: dict[str, str]) -> None:
    """A layer's FFN (`binds_ffn_words`) given `ffn_word_bytes` anywhere is bound at that width, whatever layer gave
    `word_bytes` (as the systems layer binds it: the rest of the layer keeps `word_bytes`); any other cascade as it
    is."""
    if FFN_WORDS in values and binds_ffn_words(cascade):
        values["word_bytes"], origin["word_bytes"] = values[FFN_WORDS], origin[FFN_WORDS]


@identity_cache(maxsize=4096)
def _workload_layers(cascade: Cascade, workload: Workload, limit: int) -> tuple[dict[str, float], dict[str, str]]:
    """`_layers` of a cascade under a workload's params, remembered per (cascade, workload) object (both frozen
    specs): a system model binds every op of a layer, and every size it meets, under one workload. Callers copy
    the dicts before changing them."""
    return _layers(cascade, [(_Named(workload.path, f"workload {workload.name}"), workload.params)], limit)


def _checked_params(source: str, layer: Mapping[str, float], limit: int) -> dict[str, float]:
    """`check_size` of each `params.X` of a layer (blamed on `source`), remembered per layer's items: a system
    model binds one workload's parameters for every op and size it meets."""
    items = tuple((key, type(value), value) for key, value in layer.items())
    try:
        return dict(_checked_items(source, items, limit))
    except TypeError:  # an unhashable value, which check_size refuses by name
        return {key: check_param(key, value, source, f"params.{key}", limit) for key, value in layer.items()}


@functools.lru_cache(maxsize=1024)
def _checked_items(source: str, items: tuple[tuple[str, type, float], ...],
                   limit: int) -> tuple[tuple[str, float], ...]:
    # keyed by each value's type too: True, 1 and 1.0 are equal keys, and check_size refuses a bool
    return tuple((key, check_param(key, value, source, f"params.{key}", limit)) for key, _, value in items)


def is_fraction(name: str) -> bool:
    """Whether parameter `name` is a share of something (`density`, the kept share of a data-dependent mask's
    points; `retrieval_fraction`, `window_fraction`): a value in [0, 1]. A mask's density counts points as that share
    of a space (flexprefill's `density * (seq_len + 1) / (2 * seq_len)` of its square is `density` of the causal
    points), so a share above 1 would count more points than the space holds."""
    return name == "density" or name.endswith("_fraction")


def check_param(name: str, value: object, source: str, where: str, limit: int) -> float:
    """`check_size` of a parameter's value; a share (`is_fraction`) must moreover lie in [0, 1]."""
    checked = check_size(name, value, source, where, limit)
    if is_fraction(name) and checked > 1:
        raise SpecError(source, where, f"expected a fraction in [0, 1], got {checked:.10g} ({name} is a share; a "
                                       f"mask's density above 1 would count more points than its space holds)")
    return checked


def model_sizes(cascade: Cascade) -> tuple[str, ...]:
    """The model sizes the cascade binds: its params in the vocabulary (`archsim.workload.PARAMS`), and the element
    width, which every cascade binds."""
    return tuple(name for name in dict.fromkeys([*cascade.params, "word_bytes"]) if name in PARAMS)


def cascade_sizes(cascade: Cascade) -> tuple[str, ...]:
    """The sizes the cascade binds, in its params' order: its model sizes (`model_sizes`) and every other parameter
    that sizes a rank (`ranks_sized_by`: `tile_kv` sizes M0; a user's `depth` sizes K under `K: depth`). Its other
    parameters (a mask's `density`, block-sparse's `k_b`) size nothing."""
    models = model_sizes(cascade)
    return tuple(name for name in dict.fromkeys([*cascade.params, *models])
                 if name in models or ranks_sized_by(cascade, name))


def how_to_set(cascade: Cascade, names: list[str]) -> str:
    """How to give the sizes `names` the cascade binds (`cascade_sizes`) by name: `batch=N, tile_kv=N (or the rank
    it sizes: M0)`, a parameter other than a model size also by the ranks it sizes (a set of each gives it,
    `archsim.point.sizes_unset`). Where a workload would give them is the caller's to say."""
    ranks = [rank for name in names if name not in PARAMS for rank in ranks_sized_by(cascade, name)]
    by_rank = f" (or the rank{'s they size' if len(ranks) > 1 else ' it sizes'}: {', '.join(ranks)})" if ranks else ""
    return f"{', '.join(f'{name}=N' for name in names)}{by_rank}"


def _check_model_sizes(cascade: Cascade, workload: Workload, overrides: Mapping[str, float],
                       set_option: bool) -> None:
    """Every model size the cascade binds (`model_sizes`) is given; the error suggests `--set` only to a caller
    whose command has it (`set_option`)."""
    for name in model_sizes(cascade):
        if name not in workload.params and name not in overrides:
            flag = f" or pass --set {name}=N" if set_option else ""
            raise SpecError(workload.path, f"params.{name}", f"missing: cascade {cascade.name} binds {name}; add "
                                                             f"it to the workload{flag}")  # by name: no path


def _defaults_hint(cascade: Cascade, ranks: list[str], values: Mapping[str, float], origin: Mapping[str, str],
                   source: str, *, workload_helps: bool = True) -> str:
    """A note when the failing ranks' sizes come from the cascade's defaults (params whose `origin` is the cascade
    file), saying how to give them: on the command line (`source` "--set": run, analyze, execute), else (`archsim
    check`, a Python caller binding the defaults) by editing the cascade's `params`. `workload_helps` False: the
    failure is a relation that a workload's model sizes need not mend (a split that does not divide), so a default
    model size is only named, with no "pass --workload"."""
    used = list(dict.fromkeys(n.name for rank in ranks if cascade.rank_sizes.get(rank) is not None
                              for n in S.walk(cascade.rank_sizes[rank]) if isinstance(n, S.Name)
                              and origin.get(n.name) == cascade.source))
    if not used:
        return ""
    shown = _values_text(used, values)
    model = [name for name in used if name in PARAMS]
    if source != "--set":
        return f"; {shown} {'is' if len(used) == 1 else 'are'} {cascade.name}'s default: edit params.{used[0]}"
    if model and not workload_helps:
        return f"; {shown} {'is' if len(used) == 1 else 'are'} {cascade.name}'s small default (a test size)"
    if model:  # the sizes of a model, which a workload gives, or --set every one it binds still unset, as
        # `archsim.point.sizes_unset` asks (one whose every rank is given, by --set or a mapping's `set:`, is given)
        models = model_sizes(cascade)
        unset = [name for name in cascade_sizes(cascade) if origin.get(name) == cascade.source
                 and (name in models or not all(rank in origin for rank in ranks_sized_by(cascade, name)))]
        return (f"; {shown} {'is' if len(used) == 1 else 'are'} {cascade.name}'s small default (a test size, "
                f"used when no workload gives it): pass --workload W, or --set each size it binds still unset: "
                f"{how_to_set(cascade, unset)}")
    return f"; {shown} {'is' if len(used) == 1 else 'are'} {cascade.name}'s default: pass --set {used[0]}=N"


def _origins(cascade: Cascade, ranks: list[str], values: Mapping[str, float], origin: Mapping[str, str]) -> str:
    """Where the sizes of `ranks` came from, when not from the cascade file: `(seq_len=1025 from workload w)`."""
    named = []
    for rank in ranks:
        if rank in origin:  # a rank set directly
            named.append(rank)
        elif cascade.rank_sizes.get(rank) is not None:
            named += [n.name for n in S.walk(cascade.rank_sizes[rank]) if isinstance(n, S.Name) and n.name in origin]
    shown = _values_text(dict.fromkeys(named), values, origin, cascade.source)
    return f" ({shown})" if shown else ""


def _no_whole_part(cascade: Cascade, rank: str, values: Mapping[str, float], origin: Mapping[str, str],
                   source: str) -> SpecError | None:
    """The error of a rank sized `a // b` of two params (`I: seq_len // block`, a sequence's blocks; `seq_len //
    page`) with a below b: no whole part, so the rank would be empty. It names both params and where each came from,
    blamed on a's source (as `_check_requires` blames a given size); None for any other rank."""
    match cascade.rank_sizes[rank]:
        case S.BinOp(op="//", lhs=S.Name(name=a), rhs=S.Name(name=b)) if 0 < values[a] < values[b]:
            return SpecError(origin.get(a, cascade.source), a,
                             f"expected at least {b} ({number_text(values[b])}), got {number_text(values[a])}: "
                             f"{cascade.name} splits {a} into whole {b}s (ranks.{rank}: {a} // {b})"
                             + _origins(cascade, [rank], values, origin)
                             + _defaults_hint(cascade, [rank], values, origin, source))
    return None


def _no_even_split(cascade: Cascade, rank: str, values: Mapping[str, float], origin: Mapping[str, str],
                   source: str) -> SpecError | None:
    """The error of a rank sized `a / b` of two whole params (`HL: heads / devices`, the heads a device holds) where
    b does not divide a: the rank would be fractional. It names both params and where each came from, blamed on b's
    source (the divisor, usually the degree the user chose); a default model size is named without suggesting a
    workload, whose sizes need not divide either. None for any other rank."""
    match cascade.rank_sizes[rank]:
        case S.BinOp(op="/", lhs=S.Name(name=a), rhs=S.Name(name=b)) if (
                values[b] > 0 and float(values[a]).is_integer() and float(values[b]).is_integer()
                and values[a] % values[b]):
            return SpecError(origin.get(b, cascade.source), b,
                             f"expected a divisor of {a} ({number_text(values[a])}), got {number_text(values[b])}: "
                             f"{cascade.name} splits {a} over {b} (ranks.{rank}: {a} / {b})"
                             + _origins(cascade, [rank], values, origin)
                             + _defaults_hint(cascade, [rank], values, origin, source, workload_helps=False))
    return None


def _positive_int(value: float, source: str, where: str) -> int:
    if not math.isfinite(value) or value != int(value) or value <= 0:
        raise SpecError(source, where, f"expected a positive integer size, got {number_text(value)}")
    return int(value)


def _values_text(names: Iterable[str], values: Mapping[str, float], origin: Mapping[str, str] | None = None,
                 cascade_source: str = "") -> str:
    """`names` with their `values` for a message, `seq_len=1025, page=64`; given `origin` (name -> where its value
    came from), only those not from `cascade_source`, each with where (`_shown`): `seq_len=1025 from workload w`."""
    return ", ".join(f"{n}={number_text(values[n])}" + (f" from {_shown(origin[n])}" if origin is not None else "")
                     for n in names if origin is None or origin.get(n, cascade_source) != cascade_source)


class _Named(str):
    """A spec's file as the source of its values: an error blames the file (`error: <file>: field: ...`), and a
    message saying where a value came from names the spec by what it is (`_shown`: `mapping fusemax`, `workload
    bert-base`, `cascade attention-1pass`). A sweep stores a point's refusal without the blamed file (`archsim.dse.
    points._reason`), so its reason holds no path, which the point's key does not hold: the library's is another
    in a wheel than in a checkout, a user's spec moves with the sweep. A mapping is named by its file's stem (`bind`
    is given its file and `set:`, not its name), which is a library mapping's name."""

    name: str

    def __new__(cls, path: str, name: str) -> _Named:
        named = super().__new__(cls, path)
        named.name = name
        return named

    def __getnewargs__(self) -> tuple[str, str]:  # pickled and copied whole (a Dask worker's error)
        return str(self), self.name


def _shown(source: str) -> str:
    """Where a value came from, for a message: a spec's name (`_Named`), else the source as given (`--set`)."""
    return source.name if isinstance(source, _Named) else source
