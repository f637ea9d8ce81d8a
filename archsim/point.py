"""One design point: (cascade, architecture, mapping, workload, overrides) -> Result.

This is the Python API users call, and what `archsim run`, `archsim reproduce` and sweeps build on:

    from archsim.point import run_point
    result = run_point("fusemax", workload="bert-base", sets={"seq_len": 65536})
    result.latency_s, result.energy_pj, result.utilization["array2d"]

Sizes are bound in this order, later winning: the cascade's defaults, the workload's params, the mapping's
`set:` (tile sizes such as M0), the caller's `sets`. With a workload, every model size the cascade binds must
come from it or from the sets (`archsim.cascade.bind.bind`): the defaults are small test sizes. Without one, the
test sizes bind unless the sets give a size it binds (a model size or a parameter that sizes a rank); then they give
every one the mapping's `set:` does not (`refuse_partial_model`). `bound` binds
a cascade with these checks and no mapping (what `archsim analyze` does):

    binding, analysis = bound("attention-1pass-causal-gqa", "llama3-8b", {"M0": 128})

A grouped-query workload (kv_heads below heads) is refused by a cascade with one K/V head per query head (no
`kv_heads` param), which would count its K and V heads/kv_heads times over: its cascade is a grouped-query one (e.g.
mapping `fusemax-gqa`). A cascade whose K and V have no head rank (one K/V head every query head reads) computes
multi-query attention: it takes a workload of kv_heads 1 and refuses any other. A multi-head latent attention workload
(`kv_lora_rank`, DeepSeek) is refused by a cascade of attention (K an input) or of the K/V projection (a `kv_heads`
param) without a latent (no `kv_lora_rank` param), which would drop its decoupled RoPE dimensions and latent
projections: its cascades are `attention-mla-prefill`, `attention-mla-decode` and the projection of its queries
(`mla_projection_for`): `mla-projection` through a query latent (`q_lora_rank`), `mla-projection-direct-q` straight
from the hidden state (a model without `q_lora_rank`, DeepSeek-V2-Lite); each refuses the other's model
(`check_query_projection`), where the query latent's missing size would otherwise ask for one. A sliding-window
workload (`window`) is refused by an attention cascade without a window, which would count every key the window drops:
its cascade is `attention-sliding-window`. A linear-attention workload (`attention: linear`) is refused by a softmax
attention cascade (one whose Einsums take an exp). A decoder workload (one naming its `block`: its prefill is
causal) is refused by an attention cascade without a causal mask, which would count the keys after each query
(`check_causal_form`: an Einsum over a query and a key of `seq_len`'s tokens whose mask keeps a key after its query,
by the mask's values at the cascade's test sizes, so cross-attention over another length passes); a workload without
`block` runs unmasked. A mixture-of-experts workload (`experts` above 1) is refused by a dense FFN cascade (one of
`ffn_dim` without `experts`), which would count one expert per token instead of `top_k`, unless it is the width of
the model's dense layers (`moe_every` above 1): its cascade is `moe-experts`. A norm or dense FFN cascade of another
decoder block than the workload's is refused (`check_block_form`). `bound`, `archsim analyze` and `execute` apply
the same checks and, with a workload, refuse a tiling or algorithm parameter left at its test default
(`refuse_test_defaults`).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, replace
from os import PathLike
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from archsim import library
from archsim.arch.spec import Architecture
from archsim.cascade import syntax as S
from archsim.cascade.analysis import Analysis, analyze, attends_every_key, takes_exp, token_ranks
from archsim.cascade.bind import (
    FFN_WORDS,
    Binding,
    bind,
    binds_ffn_words,
    cascade_sizes,
    fixed_tiles,
    how_to_set,
    model_sizes,
    nearest_divisors,
    params_masked_by,
    ranks_sized_by,
)
from archsim.cascade.ir import Cascade
from archsim.cascade.references import CAUSAL_FORMS
from archsim.errors import SpecError
from archsim.limits import limits_key
from archsim.mapping.load import check_factor, parse_factor
from archsim.mapping.mapper import search
from archsim.mapping.spec import SEARCH, Mapping
from archsim.memo import identity_cache
from archsim.model.analytical import evaluate
from archsim.model.result import Result
from archsim.workload import (
    BLOCK_CASCADES,
    PARAMS,
    Workload,
    plain_number,
    refuse_linear_attention,
    shared_ffn_dim,
)

if TYPE_CHECKING:
    from archsim.model.event import EventRun

T = TypeVar("T")
SIMULATE_OPTIONS = ("max_tasks", "buffers")  # what simulate_point passes on to the event model


@dataclass(frozen=True)
class Point:
    """A design point ready to evaluate (`prepare`): the cascade bound to its sizes, its analysis, the
    architecture and the mapping with every searched factor filled."""

    binding: Binding
    analysis: Analysis
    arch: Architecture
    mapping: Mapping  # every `search` factor filled by the mapper


def prepare(mapping: str | PathLike | Mapping, *, cascade: str | PathLike | Cascade | None = None,
            arch: str | PathLike | Architecture | None = None, workload: str | PathLike | Workload | None = None,
            sets: MappingType[str, float] | None = None, sets_source: str = "sets") -> Point:
    """Load (names and paths) or take (specs already loaded) everything, bind the sizes, analyse the cascade and
    run the mapper. `cascade` and `arch` default (None) to the ones the mapping names, `workload` to none;
    `sets` is a mapping of name -> number. `sets_source` is where `sets` came from, for messages: the argument
    `sets` by default, "--set" from the CLI (whose messages then suggest the option), a sweep's file and its axes.
    An argument of another type is a SpecError naming it."""
    spec = _spec("mapping", mapping, Mapping, library.load_mapping_spec)
    architecture = (_named_by(spec, "architecture") if arch is None
                    else _spec("arch", arch, Architecture, library.load_architecture_spec))
    cascade_spec = _named_by(spec, "cascade") if cascade is None else cascade
    binding, analysis = bound(cascade_spec, workload, sets, spec, sets_source)
    return Point(binding, analysis, architecture, _searched(binding, analysis, architecture, spec))


def _spec(argument: str, value: object, kind: type[T], load: Callable[[str | PathLike], T]) -> T:
    """`value` of prepare's (or bound's) `argument`: a spec of `kind` as it is, a library name or a path loaded by
    `load`; any other value a SpecError naming the argument (not an AttributeError from deep inside)."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str | PathLike):
        return load(value)
    raise SpecError("<python>", argument, f"expected a library name, a path or {kind.__name__}, got {_shown(value)}")


def _shown(value: object) -> str:
    """A value of the wrong type as an error shows it: its type and a short repr."""
    return f"{type(value).__name__} {reprlib.repr(value)}"


def bound(cascade: str | PathLike | Cascade, workload: str | PathLike | Workload | None = None,
          sets: MappingType[str, float] | None = None, spec: Mapping | None = None,
          sets_source: str = "sets") -> tuple[Binding, Analysis]:
    """The cascade bound to the workload (none: the cascade's test sizes) and `sets` (name -> number, later
    winning), and its analysis, after every check `archsim run` and `archsim analyze` apply (the module
    docstring): the checked way to bind from Python, where `archsim.cascade.bind.bind` alone checks only values
    and sizes. `cascade` and `workload` are specs, library names or paths; `spec` is the point's mapping (as
    `prepare` passes it), whose `set:` binds between the workload and `sets`; None binds without one, as
    `archsim analyze` does. `sets_source` names where `sets` came from, for messages (as `prepare`'s). An argument
    of another type is a SpecError naming it. One object pair per equal input, read-only (see `_bound`; numbers
    are keyed as Python numbers (`plain_number`: numpy's int64 4096 is 4096, and so is 4096.0), and whether a
    value is no plain number is part of the key: `True == 1`, but only 1 is a size)."""
    cascade = _spec("cascade", cascade, Cascade, library.load_cascade_spec)
    if workload is not None:
        workload = _spec("workload", workload, Workload, library.load_workload_spec)
    if sets is not None and not isinstance(sets, MappingType):
        raise SpecError("<python>", "sets", f"expected a mapping of name -> number, got {_shown(sets)}")
    items = tuple(sorted((_keyed(str(k), plain_number(v)) for k, v in (sets or {}).items()), key=lambda i: i[0]))
    return _bound(cascade, workload, items, spec, sets_source, limits_key())


def _keyed(name: str, value: object) -> tuple[str, bool, object]:
    """A set value's part of `_bound`'s key: whether it is no plain number (a bool, numpy's too, a string: equal
    to a number it must not share a binding with) and the value."""
    return name, type(value) not in (int, float), value


@identity_cache(maxsize=256)
def _bound(cascade: Cascade, workload: Workload | None, sets: tuple, spec: Mapping | None,
           sets_source: str, _limits: tuple[tuple[str, int], ...]) -> tuple[Binding, Analysis]:
    """The binding and analysis of a point, remembered for the same cascade, workload and mapping objects, equal
    sets (specs loaded by name are shared objects, `archsim.library`) and equal limit variables set
    (`archsim.limits.limits_set`: the size limit refuses a binding): what they depend on."""
    values = {k: v for k, _, v in sets}
    check_sets_read(cascade, workload, values, sets_source)
    mapping_name = spec.name if spec is not None else None
    if spec is not None:
        _refuse_tiling_sets(cascade, spec, values, sets_source)
    refuse_partial_model(cascade, workload, values, sets_source, spec)
    check_attention_form(cascade, workload, values, sets_source, spec)
    check_causal_form(cascade, workload, mapping_name)
    check_query_projection(cascade, workload, values, sets_source)
    check_block_form(cascade, workload, mapping_name)
    check_ffn_form(cascade, workload, values, mapping_name)
    binding = bind(cascade, workload, values, source=sets_source,
                   fixed=(spec.source, spec.sets) if spec is not None else None, set_option=sets_source == "--set")
    refuse_test_defaults(cascade, workload, values, spec)
    return (_shown_tiles(binding, spec) if spec is not None else binding), _read_only(analyze(binding))


def refuse_partial_model(cascade: Cascade, workload: Workload | None, sets: MappingType[str, float],
                         sets_source: str, spec: Mapping | None = None) -> None:
    """Without a workload, sets that give one size the cascade binds (`bind.cascade_sizes`: a model size, or another
    parameter that sizes a rank) give every one (`sizes_unset`), as a workload must (`bind`): the others would stay
    the cascade's test defaults under the sizes given (seq_len 4096, batch 64 and heads 12 over head_dim 8, not
    BERT's 64: 5x too fast; a user's `rows` and `cols` over `depth` 64). A missing one is refused, naming it and its
    default. Sets of no size (none, ranks such as M0, or a parameter that sizes nothing, a mask's `density`) keep the
    cascade's test sizes. `spec`: the point's mapping, whose `set:` gives what it sets."""
    if workload is not None:
        return
    given = [name for name in cascade_sizes(cascade) if name in sets]
    missing = sizes_unset(cascade, sets, spec)
    if given and missing:
        defaults = f"{defaults_shown(cascade, missing)} would be its test default{'s' if len(missing) > 1 else ''}"
        workload = ", or give a workload" if all(name in PARAMS for name in missing) else ""  # it gives only those
        raise SpecError(sets_source, missing[0], f"missing: {', '.join(given)} set without a workload, so every size "
                                                 f"cascade {cascade.name} binds must be set ({defaults}); set "
                                                 f"{how_to_set(cascade, missing)}{workload}")


def sizes_unset(cascade: Cascade, given: Iterable[str], spec: Mapping | None) -> list[str]:
    """The sizes the cascade binds (`bind.cascade_sizes`) that a binding without a workload would take from its test
    defaults: those that `given` (the names set) does not name, nor the mapping's `set:` (`spec`, None without a
    mapping; a tile it fixes, `mapping_tiling`); a parameter other than a model size whose every rank is given by
    name (`--set M0=256`) is given."""
    given = {*given, *({*mapping_tiling(cascade, spec), *spec.sets} if spec is not None else ())}
    models = model_sizes(cascade)
    return [name for name in cascade_sizes(cascade) if name not in given
            and (name in models or not given.issuperset(ranks_sized_by(cascade, name)))]


def defaults_shown(cascade: Cascade, names: list[str]) -> str:
    """`depth 64, word_bytes 2`: the sizes `names` (`sizes_unset`), each at the cascade's test default."""
    return ", ".join(f"{name} {cascade.params[name]:g}" if name in cascade.params else name for name in names)


def _shown_tiles(binding: Binding, spec: Mapping) -> Binding:
    """`binding` with each parameter whose only effect the mapping overrides (`mapping_tiling`) and that is its one
    rank's size (`M0: tile_kv`) at that rank's size, so the point's params say the tile it runs at (fusemax's
    `set: {M0: 256}`: tile_kv 256, not the cascade's test default 4). Nothing reads those parameters but the rank
    sizes the mapping fixed, so no number moves."""
    shown = fixed_tiles(binding.cascade, mapping_tiling(binding.cascade, spec), binding.rank_sizes)
    return replace(binding, params=MappingProxyType({**binding.params, **shown})) if shown else binding


def _read_only(analysis: Analysis) -> Analysis:
    """`analysis` with read-only views of its dicts: `prepare` hands one Analysis to every call with equal inputs,
    so a caller writing into `point.analysis.ops["QK"]` would change what later calls (and their models) read."""
    return replace(analysis, rank_sizes=MappingProxyType(analysis.rank_sizes),
                   points=MappingProxyType(analysis.points),
                   ops=MappingProxyType({e: MappingProxyType(counts) for e, counts in analysis.ops.items()}))


def mapping_tiling(cascade: Cascade, spec: Mapping) -> dict[str, list[str]]:
    """Parameter -> ranks, for each cascade parameter whose only effect the mapping overrides: it sizes only ranks
    the mapping's `set:` fixes (`tile_kv` under fusemax's `set: {M0: 256}`: `params_masked_by`), and no loop
    factor expression of the mapping reads it."""
    read = set()
    for g, group in enumerate(spec.groups):
        for i, loop in enumerate(group.loops):
            if isinstance(loop.factor, str) and loop.factor != SEARCH:
                # a factor set in Python (dataclasses.replace), which no loader checked: the loader's check
                check_factor(loop.factor, loop.is_spatial, spec.source, f"groups[{g}].{loop.path or f'loops[{i}]'}")
                read |= S.names_in(parse_factor(loop.factor))
    return {k: ranks for k, ranks in params_masked_by(cascade, spec.sets).items() if k not in read}


def _refuse_tiling_sets(cascade: Cascade, spec: Mapping, sets: dict[str, float], sets_source: str) -> None:
    """A set parameter whose only effect the mapping overrides (`mapping_tiling`) changes nothing: refused,
    naming the rank to set instead, rather than ignored."""
    tiling = mapping_tiling(cascade, spec)
    for key in sorted(sets.keys() & tiling.keys()):
        ranks = ", ".join(f"{r} = {spec.sets[r]:g}" for r in tiling[key])
        raise SpecError(sets_source, key, f"changes nothing: mapping {spec.name} sets rank {ranks} (its set:), the "
                                          f"only size {key} gives; set {', '.join(tiling[key])} instead")


def refuse_test_defaults(cascade: Cascade, workload: Workload | None, sets: MappingType[str, float],
                         spec: Mapping | None = None) -> None:
    """With a workload, a cascade parameter that is no model size (a tiling or algorithm choice: `tile_kv`,
    block-sparse's `block`) and that neither the sets nor the mapping's `set:` give would run at the cascade's
    default, a test size (4-key blocks under a model of 16K tokens): refused, naming the mapping's `set` when the
    parameter sizes a rank it could set, else the cascade's parameter and the `--set` that gives it (or the rank it
    sizes). Model sizes come from the workload (`bind`). `spec`: the point's mapping; None for a cascade bound
    without one (`archsim analyze` and `execute`), where only the sets give such a parameter."""
    if workload is None:
        return
    given = {**mapping_tiling(cascade, spec), **spec.sets} if spec is not None else {}
    for name, value in cascade.params.items():
        if name in PARAMS or name in sets or name in given:
            continue
        ranks = ranks_sized_by(cascade, name)
        if ranks and all(r in sets for r in ranks):  # every rank it sizes is set directly (--set M0=256)
            continue
        default = f"{cascade.name}'s {name} would be its test default ({value:g}) under {workload.name}'s sizes"
        if ranks and spec is not None:
            raise SpecError(spec.source, "set", f"missing: {default}; set {' or '.join(ranks)} here or pass "
                                                f"--set {name}=N")
        options = " or ".join(f"--set {n}=N" for n in (name, *ranks))
        raise SpecError(cascade.source, f"params.{name}", f"missing: {default}; give it ({options})")


def check_sets_read(cascade: Cascade, workload: Workload | None, sets: dict[str, float], sets_source: str) -> None:
    """Refuse a set workload size the cascade neither reads nor checks (`unread_sets`)."""
    for name in unread_sets(cascade, workload, sets):
        raise SpecError(sets_source, name, f"changes nothing: cascade {cascade.name} reads no '{name}' "
                                           f"(its parameters: {', '.join(cascade.params)}; ranks: "
                                           f"{', '.join(cascade.rank_sizes)})")


def unread_sets(cascade: Cascade, workload: Workload | None, names: Iterable[str]) -> list[str]:
    """The set workload sizes among `names` the cascade neither reads nor checks: `ffn_dim` on an attention cascade
    would change nothing (`bind` refuses a name neither has). `kv_heads` is read by `check_attention_form`, and
    `ffn_word_bytes` by a layer's FFN (`binds_ffn_words`: its word size). Given, such a size is refused where left
    out it is not, so a sweep's key holds them (`archsim.dse.points`)."""
    given = workload.params if workload is not None else {}
    read = {"kv_heads", *((FFN_WORDS,) if binds_ffn_words(cascade) else ())}
    return [name for name in names if name in given and name not in cascade.params
            and name not in cascade.rank_sizes and name not in read]


def check_attention_form(cascade: Cascade, workload: Workload | None, sets: dict[str, float], sets_source: str,
                         mapping: Mapping | None = None) -> None:
    """Refuse a workload whose attention the cascade does not compute (module docstring): a grouped-query workload
    on a multi-head cascade, one of more than one K/V head on a multi-query cascade, a latent-attention (MLA) one on
    an attention cascade without a latent, a sliding-window one on a cascade without a window, a linear-attention one
    on softmax attention, and K/V heads that do not divide the query heads (before any advice to group them); `sets`
    (from `sets_source`)
    over the workload's sizes. `prepare` checks it against the mapping's cascade, `archsim analyze` and `execute`
    against theirs; `mapping`: the mapping running the cascade (`prepare`'s), None for a cascade bound without one."""
    mapping_name = mapping.name if mapping is not None else None
    own = workload.params if workload is not None else {}
    params = {**own, **sets}
    what = f"cascade {cascade.name}" + (f" (mapping {mapping_name})" if mapping_name else "")
    instead = " with a mapping of yours (--cascade, --mapping FILE)" if mapping_name else ""
    keys = "K" in cascade.inputs or "kv_heads" in cascade.params  # attention over keys, or their projection
    if workload is not None and "K" in cascade.inputs and takes_exp(cascade):
        refuse_linear_attention(workload, what)
    if keys and "kv_lora_rank" in params and "kv_lora_rank" not in cascade.params:
        rope = f", rope_dim {params['rope_dim']:g}" if "rope_dim" in params else ""
        source, where = ((sets_source, "kv_lora_rank") if "kv_lora_rank" in sets
                         else (workload.path, "params.kv_lora_rank"))
        model = workload.name if workload is not None else "the model"
        raise SpecError(source, where,
                        f"{model} uses multi-head latent attention (kv_lora_rank {params['kv_lora_rank']:g}"
                        f"{rope}), but {what} has no latent K/V: it would drop the RoPE dimensions and the latent "
                        f"projections; use the MLA cascades (attention-mla-prefill, attention-mla-decode, "
                        f"{mla_projection_for(params)}){instead}")
    if "K" in cascade.inputs and "window" in params and "window" not in cascade.params:
        source, where = (sets_source, "window") if "window" in sets else (workload.path, "params.window")
        sinks = f" and {params['sinks']:g} sink tokens" if "sinks" in params else ""
        grouped = params.get("kv_heads", params.get("heads")) != params.get("heads")
        raise SpecError(source, where, f"sliding-window attention ({params['window']:g} keys per query{sinks}), but "
                                       f"{what} attends to every key: it would count the keys the window drops; use "
                                       f"the cascade attention-sliding-window{'-gqa' if grouped else ''}{instead}")
    if "heads" not in cascade.params or "kv_heads" in cascade.params or "K" not in cascade.inputs:
        return  # no K/V heads to match (the output projection reads heads x head_dim, and no key)
    # grouped-query: `--set kv_heads` against the heads bound, else the workload's own K/V heads against its heads
    # (a `--set heads` alone resizes a multi-head model)
    shared = _shares_one_kv_head(cascade)
    if "kv_heads" in sets:
        kv_heads, heads, source, where = sets["kv_heads"], params.get("heads", 0), sets_source, "kv_heads"
    elif "kv_heads" in own:
        kv_heads, heads, source, where = own["kv_heads"], own.get("heads", 0), workload.path, "params.kv_heads"
    elif workload is not None and "heads" in params and shared:
        # a workload without kv_heads has one K/V head per query head (workload.PARAMS): no multi-query cascade's
        kv_heads = heads = params["heads"]
        source, where = (sets_source, "heads") if "heads" in sets else (workload.path, "params.heads")
    else:
        return
    if kv_heads == (1 if shared else heads):
        return
    if kv_heads == int(kv_heads) >= 1 and heads == int(heads) >= 1 and heads % kv_heads:
        raise SpecError(source, where, f"{kv_heads:g} K/V heads for {heads:g} query heads: kv_heads must divide heads "
                                       f"(each K/V head serves heads / kv_heads query heads; the model's own split, "
                                       f"nothing to pad): {nearest_divisors(int(heads), int(kv_heads))}")
    example = ("attention-sliding-window-gqa" if "window" in cascade.params else
               "--mapping fusemax-gqa" if mapping_name else "attention-1pass-causal-gqa")
    form = ("multi-query" if kv_heads == 1 else "multi-head" if kv_heads == heads else "grouped-query")
    has = ("one K/V head that every query head reads (its K and V have no head rank: multi-query, kv_heads 1)"
           if shared else "one K/V head per query head")
    advice = (_grouped_version_advice(cascade, mapping) if mapping is not None else None) or (
        f"use a grouped-query cascade{' and its mapping' if mapping_name else ''} (e.g. {example})")
    raise SpecError(source, where, f"{kv_heads:g} K/V heads for {heads:g} query heads ({form}), but {what} has "
                                   f"{has}; {advice}")


def check_causal_form(cascade: Cascade, workload: Workload | None, mapping_name: str | None = None,
                      advice: Callable[[str], str] | None = None) -> None:
    """Refuse a decoder workload (one naming its `block`: its prefill attention is causal) on a cascade that attends
    each query to the keys after it in its own sequence (`archsim.cascade.analysis.attends_every_key`), which would
    count the keys after each query that the mask drops (twice a causal softmax attention's work), naming the
    library's causal version of the cascade (`_causal_version`) or, for a cascade of the user's, the mask to add. A
    workload without `block` (an encoder, or a decoder's shapes run unmasked on purpose), a decode step's cascade
    (one query, every cached key) and cross-attention (keys sized by another parameter than `seq_len`) pass.
    `mapping_name`: the mapping running the cascade, None for a cascade bound without one; `advice`: how the
    caller's input names the causal version (the command line's `--cascade` by default; a sweep's YAML fields,
    `archsim.dse.spec`)."""
    if workload is None or workload.block is None:
        return
    unmasked = attends_every_key(cascade)
    if unmasked is None:
        return
    what = f"cascade {cascade.name}" + (f" (mapping {mapping_name})" if mapping_name else "")
    version = _causal_version(cascade)
    if cascade.reference not in CAUSAL_FORMS:  # a cascade of the user's: its own Einsums say what is unmasked
        told = f"mask its scores (where {_causal_example(cascade)}; --cascade FILE)"
    elif version is None:
        told = f"the library has no causal version of {cascade.name}: write one (--cascade FILE)"
    elif advice is not None:
        told = f"run its causal version ({advice(version)})"
    else:
        told = f"run its causal version ({'--cascade ' if mapping_name else ''}{version})"
    shown = "" if cascade.reference in CAUSAL_FORMS else f" ({unmasked})"
    raise SpecError(workload.path, "block", f"{workload.name} is a decoder (block {workload.block}), whose prefill "
                                            f"attention is causal, but {what} attends to every key{shown}: it would "
                                            f"count the keys after each query, which the causal mask drops; {told}; "
                                            f"for unmasked attention on its shapes, a workload file without block")


def _causal_example(cascade: Cascade) -> str:
    """A causal mask in the cascade's own index names: its output's token rank is the query's, another token rank
    the key's (m <= p); `key <= query` where one rank holds both."""
    outputs = [cascade.tensors[name] for name in cascade.outputs]
    tokens = token_ranks(cascade)
    query = next((rank for rank in tokens for decl in outputs if rank in decl.ranks), None)
    key = next((rank for rank in tokens if rank != query), None)
    return f"{key.lower()} <= {query.lower()}" if query and key else "key <= query"


def _causal_version(cascade: Cascade) -> str | None:
    """The library cascade computing `cascade`'s attention with the causal mask (its reference's `CAUSAL_FORMS`)
    whose name shares the longest start with `cascade`'s (attention-1pass: attention-1pass-causal; the first by
    name on a tie), or None where the library has none (or the cascade's reference has no causal form)."""
    wanted = CAUSAL_FORMS.get(cascade.reference or "")
    if wanted is None:
        return None
    versions = [name for name in library.names("cascades") if library.load_cascade_spec(name).reference == wanted]
    return max(sorted(versions), key=lambda name: _shared_start(name, cascade.name), default=None)


def _shared_start(a: str, b: str) -> int:
    """How many characters `a` and `b` start with alike."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def mla_projection_for(params: MappingType[str, float]) -> str:
    """The projection cascade of a multi-head latent attention model of these sizes: `mla-projection` when its queries
    go through their own latent (`q_lora_rank`: DeepSeek-V2, V3), else `mla-projection-direct-q` (projected straight
    from the hidden state: DeepSeek-V2-Lite, HF config q_lora_rank null)."""
    return "mla-projection" if "q_lora_rank" in params else "mla-projection-direct-q"


def check_query_projection(cascade: Cascade, workload: Workload | None, sets: MappingType[str, float],
                           sets_source: str) -> None:
    """Refuse an MLA projection cascade (one writing Q, with `kv_lora_rank`) whose queries are not the workload's
    (`mla_projection_for`, over `sets` from `sets_source`): `mla-projection` on a model without `q_lora_rank` would
    add a query down-projection it does not have (a GEMM and its weights; bind would ask for the missing size), and
    `mla-projection-direct-q` on one with it would drop that latent. Without a workload the test sizes bind."""
    if workload is None or "Q" not in cascade.outputs or "kv_lora_rank" not in cascade.params:
        return
    params = {**workload.params, **sets}
    if "kv_lora_rank" not in params or ("q_lora_rank" in params) == ("q_lora_rank" in cascade.params):
        return
    needed = mla_projection_for(params)
    if "q_lora_rank" in cascade.params:
        raise SpecError(workload.path, "params.q_lora_rank",
                        f"missing: {workload.name} has kv_lora_rank {params['kv_lora_rank']:g} and no q_lora_rank, "
                        f"an MLA model projecting its queries straight from the hidden state (as DeepSeek-V2-Lite), "
                        f"but cascade {cascade.name} projects them through a q_lora_rank latent; use {needed}, or "
                        f"give q_lora_rank if the model has a query latent")
    source, where = (sets_source, "q_lora_rank") if "q_lora_rank" in sets else (workload.path, "params.q_lora_rank")
    raise SpecError(source, where, f"{workload.name} projects its queries through a latent (q_lora_rank "
                                   f"{params['q_lora_rank']:g}), but cascade {cascade.name} projects them straight "
                                   f"from the hidden state: it would drop the query down-projection; use {needed}")


def _grouped_version_advice(cascade: Cascade, mapping: Mapping) -> str | None:
    """What a grouped-query workload lacks when `mapping` is itself grouped-query (its own cascade has `kv_heads`)
    but runs a multi-head `cascade` (`--cascade`): a grouped-query version of that cascade, the library's
    `<name>-gqa` where it has one. None where the mapping is not grouped-query, or its own cascade does not load
    (the general advice then)."""
    try:
        grouped = "kv_heads" in _named_by(mapping, "cascade").params
    except SpecError:
        return None
    if not grouped:
        return None
    version = f"{cascade.name}-gqa"
    missing = (f"use {version}, its grouped-query version (--cascade {version})"
               if version in library.names("cascades") else
               f"the library has no grouped-query version of {cascade.name}: write one (--cascade FILE)")
    return f"mapping {mapping.name} is grouped-query, so what is missing is the cascade's: {missing}"


def _shares_one_kv_head(cascade: Cascade) -> bool:
    """Whether the cascade's K and V have no head rank (none sized by `heads` or `kv_heads`, nor a part of such a
    rank): every query head reads their one head (multi-query attention, K declared [B, M, E]). A cascade without K
    (a projection) shares none."""
    kv = [cascade.tensors[name] for name in ("K", "V") if name in cascade.inputs]
    sizes = [cascade.rank_sizes[r] for decl in kv for rank in decl.ranks for r in (rank, cascade.root_of(rank))]
    return bool(kv) and not any({"heads", "kv_heads"} & S.names_in(size) for size in sizes if size is not None)


def check_block_form(cascade: Cascade, workload: Workload | None, mapping_name: str | None = None) -> None:
    """Refuse a norm or dense FFN cascade of another decoder block than the workload's (`BLOCK_CASCADES`): a
    Llama-block model's FFN is SwiGLU (three GEMMs), not the GPT block's GELU FFN (two), and its norm is RMSNorm.
    `mapping_name`: the mapping running the cascade (`prepare`); None for a cascade bound without one (`archsim
    analyze` and `execute`)."""
    block = workload.block if workload is not None else None
    if block is None:
        return
    for part, names in (("norm", {c[0] for c in BLOCK_CASCADES.values()}),
                        ("dense FFN", {c[1] for c in BLOCK_CASCADES.values()})):
        own = BLOCK_CASCADES[block][0 if part == "norm" else 1]
        if cascade.name in names and cascade.name != own:
            runs = (f"mapping {mapping_name} runs cascade {cascade.name}, another block's: run {own} with a mapping "
                    "of it (--cascade, --mapping FILE)" if mapping_name else
                    f"cascade {cascade.name} is another block's: run {own}")
            raise SpecError(workload.path, "block", f"{workload.name} is a {block} block, whose {part} is cascade "
                                                    f"{own}, but {runs}")


def check_ffn_form(cascade: Cascade, workload: Workload | None, sets: MappingType[str, float],
                   mapping_name: str | None = None) -> None:
    """Refuse a dense FFN cascade (one of `ffn_dim` without `experts`) on a mixture-of-experts workload (`experts`
    above 1): it would count one expert's FFN per token where the model routes each token to top_k of them. A model
    whose dense layers (`moe_every` above 1) are as wide as the FFN bound (`dense_ffn_dim`, default `ffn_dim`, or
    `sets`' ffn_dim) may run them on it, and a model's shared experts (`shared_experts` S: one dense FFN of S x
    `ffn_dim`, every token's) may run at that width. `mapping_name` as for `check_block_form`."""
    if workload is None or "ffn_dim" not in cascade.params or "experts" in cascade.params:
        return
    params = {**workload.params, **sets}
    if params.get("experts", 1) <= 1:
        return
    every = params.get("moe_every", 1)
    dense_dim = workload.params.get("dense_ffn_dim", workload.params.get("ffn_dim"))  # the model's, not a --set
    if every > 1 and params.get("ffn_dim") == dense_dim:
        return  # the dense layers' FFN
    shared_dim = shared_ffn_dim(workload.params)
    if shared_dim and params.get("ffn_dim") == shared_dim:
        return  # the shared experts' FFN
    what = f"cascade {cascade.name}" + (f" (mapping {mapping_name})" if mapping_name else "")
    top_k = f"top_k {params['top_k']:g}" if "top_k" in params else "top_k"
    dense = (f"; its dense layers (those between its MoE layers, moe_every {every:g}) are {dense_dim:g} wide: --set "
             f"ffn_dim={dense_dim:g} runs one on {cascade.name}" if every > 1 else "")
    shared = (f"; its {workload.params['shared_experts']:g} shared experts are one dense FFN every token runs, "
              f"{shared_dim:g} wide: --set ffn_dim={shared_dim:g} runs it on {cascade.name}" if shared_dim else "")
    tokens = (f" with --set tokens={int(params['batch'] * params['seq_len'])} (batch x seq_len)"
              if "batch" in params and "seq_len" in params else "")
    raise SpecError(workload.path, "params.experts",
                    f"{workload.name} routes each token to {top_k} of {params['experts']:g} experts, but {what} is "
                    f"one dense FFN: it would count one expert per token; use the moe-experts cascade{tokens}{dense}"
                    f"{shared}")


@identity_cache(maxsize=256)
def _searched(binding: Binding, analysis: Analysis, architecture: Architecture, spec: Mapping) -> Mapping:
    """The mapper's choice for this binding, architecture and mapping spec, remembered for the same objects."""

    def evaluate_group(trial: Mapping, group: int) -> Result:
        return evaluate(binding, analysis, architecture, trial, only_group=group)

    return search(binding, architecture, spec, evaluate_group)


def _named_by(spec: Mapping, field: str) -> Cascade | Architecture:
    """The cascade or architecture a mapping names; an error in that file says which mapping named it."""
    kind, load = (("cascades", library.load_cascade_spec) if field == "cascade"
                  else ("architectures", library.load_architecture_spec))
    path = library.find_named(kind, getattr(spec, field), spec.source, field)
    try:
        return load(path)
    except SpecError as exc:
        raise SpecError(exc.source, exc.where, f"{exc.message} (the {field} of {spec.source})") from None


def answered(point: Point) -> Result:
    """The analytical model's `Result.answered()` for a prepared `point`: an infeasible point has its reason and
    footprint, and no latency, energy or utilization (NaN)."""
    return evaluate(point.binding, point.analysis, point.arch, point.mapping).answered()


def run_point(mapping: str | Mapping, **kwargs) -> Result:
    """`prepare` the point (its arguments), then `answered`."""
    return answered(prepare(mapping, **kwargs))


def simulate_point(mapping: str | Mapping, **kwargs) -> tuple[Point, EventRun]:
    """`prepare` the point, then run the event-driven model on it (`archsim.model.event.simulate`, which loads
    only here). Takes `prepare`'s arguments and `simulate`'s options `max_tasks` and `buffers` (whole numbers
    >= 1; by default simulate's). An infeasible point's run holds `Result.answered()`, as `run_point` returns."""
    from archsim.model.event import simulate

    options = {name: kwargs.pop(name) for name in SIMULATE_OPTIONS if name in kwargs}
    point = prepare(mapping, **kwargs)
    run = simulate(point.binding, point.analysis, point.arch, point.mapping, **options)
    return point, run if run.result.feasible else replace(run, result=run.result.answered())
