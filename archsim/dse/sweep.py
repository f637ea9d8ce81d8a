"""Running a sweep in this process: refuse a base that every point fails on, expand the points, skip those already
stored, evaluate the rest batch by batch.

`evaluate_batch` is pure (spec, its loaded base and keyed points in, records out) so a distributed runner can ship it
to workers; `evaluate_serial` and `run_sweep` own the only side effect, writing each finished batch to the store
(one transaction per batch, so a sweep killed at any moment loses at most the batch in flight). Nothing here
imports Dask: `archsim sweep` takes this path for small sweeps, and Dask's import alone costs about a second.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from archsim.dse.points import (
    GPU_PRESETS_PART,
    LINKED_PART,
    TIMED_AT,
    Base,
    Point,
    base_error,
    base_identity,
    base_value,
    computing_version,
    evaluate_points,
    expand,
    input_noun,
    keyed,
    load_base,
    with_constraints,
)
from archsim.dse.spec import (
    CONSTRAINT_OPS,
    STORED_METRICS,
    WORK_AXES_ATTR,
    Constraint,
    SweepSpec,
    axis_missing,
    is_axis,
    named_by,
    work_axes,
)
from archsim.dse.store import (
    StoreConnection,
    add_axis_values,
    add_positions,
    axis_updates,
    claiming,
    done_keys,
    empty_store,
    meta_json,
    open_store,
    put,
    read_meta,
    read_store,
    records,
    stale_keys,
    stored_feasible,
    unfinished_note,
    write_meta,
)
from archsim.errors import SpecError
from archsim.limits import limits_set

Progress = Callable[[int, int, float, float], None]  # (points done, points total, points per s, ETA in s)
# Work per batch of a sweep run here without a batch size (`evaluate_serial`): what a kill may lose at most
TARGET_BATCH_S = 1.0


Keyed = tuple[str, Point]  # a point with its key (`plan` computed it)
Started = tuple[Base, StoreConnection, list[str], dict[str, Point]]  # what `started` gives a runner
# what `read_judged` reads: the records, the last sweep's constraints and objectives, and its name
Judged = tuple[pd.DataFrame, tuple[Constraint, ...] | None, tuple[str, ...] | None, str | None]
# the attribute of `read_judged`'s records holding the points the store's sweeps planned that it lacks, read with
# them (`store.Missing`, None where the store does not say): `store.unfinished_note` warns of them
MISSING_ATTR = "missing"


def evaluate_batch(spec: SweepSpec, base: Base, batch: list[Keyed]) -> list[dict[str, Any]]:
    """The records of the points of `batch`, in order (`archsim.dse.points.evaluate_points`: the points of a batch
    that bind the same sizes share the mapper's work)."""
    return evaluate_points(spec, base, [point for _, point in batch], [key for key, _ in batch])


def plan(spec: SweepSpec, base: Base, done: set[str]) -> tuple[list[str], dict[str, Point], dict[str, Point]]:
    """The sweep's distinct keys in point order; the points (by key) missing from `done`, those that bind the
    same sizes next to each other (in point order otherwise), so that a batch holds many that share the mapper's
    work (`archsim.dse.points.evaluate_points`); and the points (by key) `done` holds, which the sweep reuses."""
    keys: dict[str, None] = {}
    todo: dict[Any, dict[str, Point]] = {}
    reused: dict[str, Point] = {}
    points = expand(spec)
    for point, (key, shared) in zip(points, keyed(spec, base, points), strict=True):
        keys[key] = None
        if key not in done:
            todo.setdefault(shared, {}).setdefault(key, point)
        else:
            reused.setdefault(key, point)
    pending: dict[str, Point] = {}
    for points in todo.values():
        for key, point in points.items():
            pending.setdefault(key, point)
    return list(keys), pending, reused


def claim_store(conn: StoreConnection, spec: SweepSpec, base: Base, keys: list[str], done: set[str],
                pending: list[str], reused: dict[str, Point]) -> None:
    """Make the store `conn` the store of `spec`'s base (`archsim.dse.points.base_identity`), recording the sweep
    and its constraints; a SpecError naming --db when it holds another base's points: a store that says so, or one
    that does not (written before stores recorded their base) of whose points none is one of `keys`, the sweep's.
    GPU presets, and the input files an axis names, may be added to a store's base, as an axis grows, but one whose
    file now describes another GPU (or holds other content) than the one its stored points were computed on is
    refused (`points.input_noun`: the parts holding inputs by name). The `pending` keys
    take their places in the store's row order (`store.add_positions`), and the `reused` points' records gain the
    axis values they lack (`store.add_axis_values`).

    All in one write transaction taken before the meta is read (`store.claiming`): a sweep of another base started
    at the same time reads this claim and is refused (or this one reads its claim), never both taking the store;
    and a refusal leaves the store as it was. The reused records are read and merged before the transaction
    (`store.axis_updates`), so the claim holds the store's write lock only to write them (0.5-0.7 s for 100,000 or
    180,000 records gaining an axis, where parsing them too took 4.6-5.3 s, about the 5 s a sweep's batch waiting
    beside it waits), and a stored record that is not JSON is refused before the store is claimed."""
    identity = base_identity(spec, base)
    read = axis_updates(conn, reused)
    with claiming(conn):
        _claim(conn, spec, identity, keys, done)
        add_positions(conn, pending, sweep_label(spec))
        add_axis_values(conn, reused, read)


def _claim(conn: StoreConnection, spec: SweepSpec, identity: dict[str, Any], keys: list[str], done: set[str]) -> None:
    """`claim_store`'s meta: refuse a store of another base (`other_base`), else record this sweep's, its inputs
    held by name (its GPU presets, its axes' files) joined to the store's (in its transaction)."""
    meta = read_meta(conn)
    held = stored_base(conn.path, meta)
    refusal = other_base(meta, held, spec, identity)
    if refusal is not None:
        raise SpecError("--db", conn.path, f"{refusal}: give this sweep a store of its own")
    if held is None and done and done.isdisjoint(keys):
        raise SpecError("--db", conn.path, f"holds {len(done)} points of another sweep (none is a point of sweep "
                                           f"{spec.name}, {spec.source}): give this sweep a store of its own")
    if held is not None:
        for part in _by_name(held, identity):
            identity[part] = _merged(held.get(part, "{}"), identity.get(part, "{}"))
    work = list(dict.fromkeys([*stored_work_axes(conn.path, meta), *work_axes(spec)]))
    write_meta(conn, {"base": json.dumps(identity, sort_keys=True), "sweep": sweep_label(spec),
                      "constraints": json.dumps([[c.metric, c.op, c.bound] for c in spec.constraints]),
                      "objectives": json.dumps(list(spec.objectives)), "work_axes": json.dumps(work)})


def sweep_label(spec: SweepSpec) -> str:
    """How a store names a sweep into it (its meta's `sweep`, the sweep planning each of its `positions`): its
    name and its spec's source, `demo (/path/demo.yaml)`."""
    return f"{spec.name} ({spec.source})"


# How a store's base part is checked where `stored_base` reads one: (what it should be, the check); another part
# holding inputs by name (`points.input_noun`) need be a JSON object, any other part only JSON
_BASE_PARTS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "kind": ("a sweep kind (a JSON string)", lambda kind: isinstance(kind, str) and kind != ""),
    GPU_PRESETS_PART: ("a JSON object of GPU presets, each an object of its fields",
                       lambda gpus: isinstance(gpus, dict) and all(isinstance(gpu, dict) for gpu in gpus.values())),
    LINKED_PART: ("a JSON object of linked axes, each an object of the templates it sets",
                  lambda axes: isinstance(axes, dict) and all(isinstance(sets, dict) for sets in axes.values())),
}


def _part_check(part: str) -> tuple[str, Callable[[Any], bool] | None]:
    """What a store's base part should be, and its check (`_BASE_PARTS`)."""
    if part in _BASE_PARTS:
        return _BASE_PARTS[part]
    if input_noun(part) is not None:
        return f"a JSON object of the {input_noun(part)} files its axis names, by name", lambda v: isinstance(v, dict)
    return "JSON", None


def stored_base(path: str, meta: Mapping[str, str]) -> dict[str, str] | None:
    """The base of the points the store `path` holds (its meta `base`: part -> canonical JSON,
    `archsim.dse.points.base_identity`), None where the store does not say; a SpecError naming the store and the
    field (`meta.base`, `meta.base.kind`, ...) where it is damaged: not a JSON object of JSON texts, its kind no
    string, its GPU presets no object of presets' fields, an axis's files no object."""
    held = _base_texts(path, meta)
    for part, text in (held or {}).items():
        meta_json(path, f"meta.base.{part}", text, *_part_check(part))
    return held


def _base_texts(path: str, meta: Mapping[str, str]) -> dict[str, str] | None:
    """The store's meta `base` as a JSON object of its parts' JSON texts, none of them read (`stored_base` checks
    them); None where the store does not say; a SpecError where it is no such object."""
    return meta_json(path, "meta.base", meta.get("base"), "a JSON object of its base's parts, each a JSON text",
                     lambda base: isinstance(base, dict) and all(isinstance(text, str) for text in base.values()))


def stored_version(path: str, meta: Mapping[str, str]) -> str | None:
    """The archsim version that computed the points of the store `path` (its meta `base`'s `version`), read
    without the base's other parts, whose form another version may have changed; None where it does not say."""
    text = (_base_texts(path, meta) or {}).get("version")
    return meta_json(path, "meta.base.version", text, "a version (a JSON string)", lambda v: isinstance(v, str))


def stored_serving(path: str, meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The `serving:` block of the system sweeps whose points the store `path` (its `meta`) holds: its base's
    `serving` part (`archsim.dse.points.base_identity`: `ServingSettings`' fields, one an axis sets null or, the
    batching, its default), None for a store of another kind or one that does not say."""
    held = stored_base(path, meta) or {}
    serving = json.loads(held["serving"]) if "serving" in held else None
    return serving if isinstance(serving, dict) else None


def other_base(meta: Mapping[str, str], held: dict[str, str] | None, spec: SweepSpec,
               identity: dict[str, Any]) -> str | None:
    """Why a store whose meta is `meta`, holding points of the base `held` (`stored_base`), cannot take those of
    `spec`, of base `identity` (`archsim.dse.points.base_identity`), or None where it can (or does not say its
    base): it holds another kind of sweep's (the two kinds named, as every other part then differs too), a GPU
    preset's now another GPU or timed at other settings, or an axis's file's now other content (`_input_change`:
    these may be added to a store's base, as an axis grows, or left out of a sweep into it; a linked axis's
    templates likewise), or a base differing in some other part (named), or only in archsim's version (the store to
    be deleted, started afresh by `--replace-other-version`, or another given; said first, before the inputs held
    by name, whose form or timing settings an upgrade may change too)."""
    if held is None:
        return None
    sweep = meta.get("sweep", "?")
    if "kind" in held and held["kind"] != identity["kind"]:  # so every other part differs
        return (f"holds the points of {_a_sweep(json.loads(held['kind']))}, {sweep}; sweep {spec.name} "
                f"({spec.source}) is {_a_sweep(spec.kind)}")
    by_name = _by_name(held, identity)
    differ = [part for part in dict.fromkeys([*held, *identity])
              if part not in by_name and held.get(part) != identity.get(part)]
    if differ == ["version"] and "version" in held:  # an edited or upgraded archsim: no stored point is reusable
        return (f"holds the points of sweep {sweep} as archsim {json.loads(held['version'])} computed them (now "
                f"{json.loads(identity['version'])}), none of which it would reuse (delete the store, or sweep "
                f"with --replace-other-version, to start it afresh)")
    for part in by_name:
        change = _input_change(sweep, spec, part, held.get(part, "{}"), identity.get(part, "{}"))
        if change is not None:
            return change
    if not differ:
        return None
    named = [f"version (the store's {json.loads(held[part])}, now {json.loads(identity[part])})"
             if part == "version" and part in held and part in identity else part for part in differ]
    return (f"holds the points of sweep {sweep}, whose base differs from sweep {spec.name}'s ({spec.source}) in "
            f"{', '.join(named)}")


def empty_other_version(db_path: str | Path) -> str | None:
    """Empty the store at `db_path` where it says another archsim version computed its points (`stored_version`:
    an upgrade, or an edited source, `points.MODEL_VERSION`), whatever else its base holds: every key holds the
    version, so a sweep would reuse none of them, and `claim_store` refuses the store. Its points, positions and
    meta are deleted in one write transaction (`store.claiming`), the file kept: a sweep claims it then as a new
    store. Returns a line saying so; None where the store is kept: missing, of this version (a killed sweep's,
    which resumes), or not saying its version (written before stores recorded their base: refused or claimed as
    before). A file that is no store, or a damaged `meta.base`, is a SpecError naming it."""
    if not Path(db_path).exists():
        return None
    now = computing_version()["model"]
    with contextlib.closing(open_store(db_path)) as conn, claiming(conn):
        meta = read_meta(conn)
        version = stored_version(conn.path, meta)
        if version is None or version == now:
            return None
        emptied = empty_store(conn)
    return (f"store {db_path}: held {emptied} points of sweep {meta.get('sweep', '?')} as archsim {version} "
            f"computed them (now {now}), none reusable: emptied, the sweep starts afresh")


def _a_sweep(kind: str) -> str:
    """`an architecture sweep`, `a system sweep`."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} sweep"


def _by_name(*bases: Mapping[str, str]) -> list[str]:
    """The parts of `bases` that hold inputs by name (`points.input_noun`), each once."""
    return [part for part in dict.fromkeys(part for base in bases for part in base) if input_noun(part) is not None]


def _input_change(sweep: str, spec: SweepSpec, part: str, held: str, new: str) -> str | None:
    """Why the inputs of base part `part` (held by name: `points.input_noun`) that a store holds the points of
    (`held`, canonical JSON; the store's sweep `sweep`) cannot take those of `spec`'s (`new`): an input of both is
    now another (its file edited), or a GPU is timed under other settings (`_timed_change`); None where none is.
    An axis's part is named by its path in the sweep (`axes.parallel.topology`); a linked axis whose templates
    changed is said by `_linked_change`."""
    stored, given = json.loads(held), json.loads(new)
    changed = sorted(name for name in stored.keys() & given.keys() if stored[name] != given[name])
    if part == LINKED_PART and changed:
        return _linked_change(sweep, spec, changed[0], stored[changed[0]], given[changed[0]])
    timed = _timed_change(sweep, stored, given, changed) if part == GPU_PRESETS_PART else None
    if timed is not None or not changed:
        return timed
    noun, axis = input_noun(part), "" if part == GPU_PRESETS_PART else f" ({part})"
    return (f"holds the points of sweep {sweep} on {noun} {', '.join(changed)}{axis} as its file then read, and "
            f"sweep {spec.name}'s ({spec.source}) reads another {noun} there")


def _linked_change(sweep: str, spec: SweepSpec, axis: str, stored: dict[str, Any], given: dict[str, Any]) -> str:
    """Why linked axis `axis` of `spec` cannot share a store whose points (of its sweep `sweep`) it set by the
    templates `stored` (field path -> template; `given` now): the fields it sets otherwise, as each was written."""
    fields = [field for field in dict.fromkeys([*stored, *given]) if stored.get(field) != given.get(field)]
    return (f"holds the points of sweep {sweep}, whose axes.{axis} sets "
            f"{'; '.join(f'{field}: {_template_text(stored.get(field))}' for field in fields)}; sweep {spec.name}'s "
            f"({spec.source}) sets {'; '.join(f'{field}: {_template_text(given.get(field))}' for field in fields)}, "
            f"other designs under the same {axis} values")


def _template_text(template: Any) -> str:
    """A linked template as a spec writes it in flow style (`[pe_dim, pe_dim]`); `nothing` for none."""
    if template is None:
        return "nothing"
    if isinstance(template, list):
        return f"[{', '.join(_template_text(t) for t in template)}]"
    return str(template)


def _timed_change(sweep: str, stored: dict[str, Any], given: dict[str, Any], changed: list[str]) -> str | None:
    """Why a GPU preset of `changed` (by name, in the store's base `stored` and the sweep's `given`) cannot take the
    sweep's points: the same GPU timed under other settings (`TIMED_AT`); None where none is."""
    for name in changed:
        timed = [f"{field} {stored[name].get(field)}, now {given[name].get(field)}" for field in TIMED_AT
                 if stored[name].get(field) != given[name].get(field)]
        if timed and all(stored[name].get(f) == given[name].get(f) for f in stored[name].keys() - set(TIMED_AT)):
            return f"holds the points of sweep {sweep} on GPU {name} timed under other settings ({'; '.join(timed)})"
    return None


def _merged(held: str, new: str) -> str:
    """The inputs by name of a store's base part and of the sweep claiming it, together (canonical JSON)."""
    return json.dumps({**json.loads(held), **json.loads(new)}, sort_keys=True, separators=(",", ":"))


def _are_constraints(value: Any) -> bool:
    """`value` is a list of [metric, op, bound] as a sweep stores its constraints (`_claim`)."""
    return isinstance(value, list) and all(
        isinstance(c, list) and len(c) == 3 and c[0] in STORED_METRICS and c[1] in CONSTRAINT_OPS
        and isinstance(c[2], int | float) and not isinstance(c[2], bool) and math.isfinite(c[2]) for c in value)


def stored_constraints(path: str, meta: Mapping[str, str]) -> tuple[Constraint, ...] | None:
    """The constraints of the last sweep into the store `path` (its `meta`), or None where it does not say; a
    SpecError naming the store and `meta.constraints` where they are not a list of [metric, op, bound]."""
    triples = meta_json(path, "meta.constraints", meta.get("constraints"),
                        f"a JSON list of [metric, op, bound] (a metric archsim stores, op one of "
                        f"{' '.join(CONSTRAINT_OPS)}, a finite bound)", _are_constraints)
    return None if triples is None else tuple(Constraint(metric, op, bound) for metric, op, bound in triples)


def stored_objectives(path: str, meta: Mapping[str, str]) -> tuple[str, ...] | None:
    """The objectives of the last sweep into the store `path` (its `meta`), or None where it does not say (a store
    written before stores recorded them); a SpecError naming the store and `meta.objectives` where they are not a
    list of two or three metrics archsim stores."""
    names = meta_json(path, "meta.objectives", meta.get("objectives"),
                      "a JSON list of two or three metrics archsim stores", _are_objectives)
    return None if names is None else tuple(names)


def stored_work_axes(path: str, meta: Mapping[str, str]) -> list[str]:
    """The axes that change the work (`spec.work_axes`) of every sweep into the store `path` (its `meta`), in the
    order they first came: a linked axis's fields are in no record, so a report read from the store alone holds a
    linked length by this (an axis one sweep links to a length and another to a tile is held). Empty where the
    store does not say (written before stores recorded them); a SpecError naming the store and `meta.work_axes`
    where they are not a list of axis paths."""
    return meta_json(path, "meta.work_axes", meta.get("work_axes"), "a JSON list of axis paths",
                     lambda axes: isinstance(axes, list) and all(isinstance(a, str) and is_axis(a) for a in axes)) or []


def with_base_values(df: pd.DataFrame, identity: dict[str, str] | None) -> pd.DataFrame:
    """`df` (a store's records) with each axis value that a point lacks only because the sweep storing it did not
    have the axis given the base's (`points.base_value`, from `identity`, the store's base): the point ran at it
    (a point of bert-base's 1024 tokens, stored by a sweep without a seq_len axis, is at seq_len 1024 beside a
    later sweep's 4096). NaN in an axis column then says that the axis does not apply to the point's kind of
    target (a GPU preset has no `arch.` value and no tile, TokenSelect no budget), or, for a linked axis (no field:
    no base value), that the sweep storing the point did not have it. `df` as it is where the store does not say
    its base."""
    if not identity or df.empty or "target_kind" not in df:
        return df
    filled = {}
    for axis in (c for c in df.columns if is_axis(c)):
        missing = df[axis].map(axis_missing)
        values = {kind: base_value(identity, kind, axis) for kind in set(df.target_kind[missing])}
        if any(v is not None for v in values.values()):
            filled[axis] = pd.Series([values[kind] if gap and values[kind] is not None else value
                                      for value, gap, kind in zip(df[axis], missing, df.target_kind, strict=True)],
                                     index=df.index)
    return df.assign(**filled) if filled else df


def _are_objectives(value: Any) -> bool:
    """`value` is a list of objectives as a sweep stores them (`_claim`)."""
    return isinstance(value, list) and 2 <= len(value) <= 3 and all(name in STORED_METRICS for name in value)


def read_judged(path: str | Path, spec: SweepSpec | None = None) -> Judged:
    """The store's records, each axis value its base gives filled in (`with_base_values`), `constraint_ok` judged
    by the constraints of the last sweep into it (returned; None for a store that does not record them, whose
    verdicts are then the stored ones), its work axes in `attrs[WORK_AXES_ATTR]` (`stored_work_axes`), the points
    its sweeps planned that it lacks, read in the same snapshot, in `attrs[MISSING_ATTR]` (`store.read_store`),
    that sweep's objectives (`stored_objectives`) and its name (None for a store that does not say). With `spec`
    (a report's --spec), a store of another base than its is refused (`_refuse_other_spec`)."""
    df, meta, lacking = read_store(path)
    if spec is not None:
        _refuse_other_spec(str(path), meta, spec)
    constraints = stored_constraints(str(path), meta)
    name = meta["sweep"].split(" (")[0] if "sweep" in meta else None
    judged = with_base_values(df, stored_base(str(path), meta))
    judged = judged if constraints is None else with_constraints(judged, constraints)
    judged.attrs[WORK_AXES_ATTR] = stored_work_axes(str(path), meta)
    judged.attrs[MISSING_ATTR] = lacking
    return judged, constraints, stored_objectives(str(path), meta), name


def unfinished(path: str | Path, judged: pd.DataFrame) -> str:
    """The warning (`store.unfinished_note`) of the store at `path` whose records `read_judged` read as `judged`,
    lacking points its sweeps planned: its count and what it lacks are of one snapshot; '' where it lacks none."""
    return unfinished_note(path, len(judged), judged.attrs.get(MISSING_ATTR))


def require_points(path: str | Path, judged: pd.DataFrame) -> None:
    """A SpecError naming the store `path` where its records `judged` (`read_judged`) are none, with what its
    sweeps planned (`unfinished`: a sweep killed before its first batch, or running): no export or report of an
    empty store (a store created, not yet claimed, plans nothing)."""
    if judged.empty:
        note = unfinished(path, judged)
        raise SpecError(str(path), "", "the sweep store holds no points" + (f": {note}" if note else ""))


def _refuse_other_spec(path: str, meta: Mapping[str, str], spec: SweepSpec) -> None:
    """A SpecError naming --spec where the store `path` (its `meta`) holds the points of another base than
    `spec`'s, with the reason a sweep of `spec` into it would be refused for (`other_base`)."""
    refusal = other_base(meta, stored_base(path, meta), spec, base_identity(spec, load_base(spec)))
    if refusal is not None:
        raise SpecError("--spec", spec.source, f"the store {path} {refusal}: report it without --spec, or give "
                                               f"sweep {spec.name} a store of its own")


def evaluate_serial(spec: SweepSpec, base: Base, todo: list[Keyed], conn, batch_size: int | None,
                    progress: Progress | None = None, done_before: int = 0, total: int | None = None,
                    target_batch_s: float = TARGET_BATCH_S) -> int:
    """Evaluate `todo` in this process in batches of `batch_size`, committing each batch as it finishes; returns
    the number of records written. `batch_size` None: batches of one point, then of `next_batch_size` (about
    `target_batch_s` of work as the last batch ran, at most twice its size), so that a kill loses at most about
    that much finished work, however slow a point is. `progress` is told after each batch (`done_before` points of
    `total` were stored before this call)."""
    total = len(todo) + done_before if total is None else total
    written, done, size, start = 0, 0, batch_size or 1, time.perf_counter()
    while done < len(todo):
        batch_start = time.perf_counter()
        batch = evaluate_batch(spec, base, todo[done:done + size])
        put(conn, batch)
        done += size
        written += len(batch)
        if progress:
            rate = written / max(time.perf_counter() - start, 1e-9)
            progress(done_before + written, total, rate, (total - done_before - written) / rate)
        if batch_size is None:
            size = next_batch_size(size, time.perf_counter() - batch_start, target_batch_s)
    return written


def next_batch_size(size: int, batch_s: float, target_batch_s: float) -> int:
    """The points of the next batch after one of `size` points that took `batch_s`: about `target_batch_s` of work
    at its pace, at least one point and at most twice `size` (a batch's first points pay for plans the rest reuse,
    so a pace measured on few points may understate the next batch's)."""
    return max(1, min(2 * size, int(size * target_batch_s / max(batch_s, 1e-9))))


@contextlib.contextmanager
def started(spec: SweepSpec, db_path: str | Path) -> Iterator[Started]:
    """The sweep's base, the store at `db_path` open and claimed for it (`claim_store`; closed on leaving), the
    sweep's keys and its points not yet stored (`plan`). A point the store holds from a sweep without some of this
    one's axes gets their values (`add_axis_values`), so its row shows where it lies on them.

    A base that every point fails on (`base_error`) is refused with its error, saying which sweep named its file:
    before a new store is created, or before an existing one is claimed or a point written. A store holding a feasible
    point of the sweep is not checked again: that point met no error. A limit variable that is not a positive
    integer (`limits.limits_set`) is refused first: a point may read it only midway through the sweep."""
    limits = limits_set()
    base = load_base(spec)
    new = not Path(db_path).exists()
    if new:
        _refuse_base_error(spec, base)
    conn = open_store(db_path)
    try:
        done = done_keys(conn) - stale_keys(conn, limits)
        keys, todo_by_key, reused = plan(spec, base, done)
        if not new and not stored_feasible(conn, keys):
            _refuse_base_error(spec, base)
        claim_store(conn, spec, base, keys, done, list(todo_by_key), reused)
        yield base, conn, keys, todo_by_key
    finally:
        conn.close()


def _refuse_base_error(spec: SweepSpec, base: Base) -> None:
    """Raise the base's error (`base_error`), if any, saying which sweep named its file."""
    error = base_error(spec, base)
    if error is not None:
        raise named_by(spec, error)


def sweep_records(conn: StoreConnection, spec: SweepSpec, base: Base, keys: list[str]) -> pd.DataFrame:
    """The records of the sweep's own points (`keys`, those it computed and those the store held), in store order,
    with the base's values of axes other sweeps into the store added (`with_base_values`), its work axes in
    `attrs[WORK_AXES_ATTR]`, `constraint_ok` by `spec`'s constraints: what `run_sweep` and `run_sweep_dask` return
    and `archsim sweep` summarises, so its front and best describe this sweep, never the points other sweeps left in
    a store it shares (`archsim report --sweep STORE` reports them all)."""
    df = records(conn)
    mine = df[df["key"].isin(set(keys))].reset_index(drop=True) if len(df) else df
    identity = base_identity(spec, base) if spec.kind == "architecture" else None  # no other kind's is filled
    mine = with_constraints(with_base_values(mine, identity), spec.constraints)
    mine.attrs[WORK_AXES_ATTR] = work_axes(spec)
    return mine


def run_sweep(spec: SweepSpec, db_path: str | Path, batch_size: int | None = None) -> pd.DataFrame:
    """Evaluate every point of `spec` missing from the store at `db_path` (`started`: a store of its base, a base
    some point can be evaluated on), committing each batch as it finishes (batches of `batch_size`, by default
    growing from one point towards TARGET_BATCH_S of work each: `evaluate_serial`), and return the sweep's records
    (`sweep_records`)."""
    with started(spec, db_path) as (base, conn, keys, todo_by_key):
        evaluate_serial(spec, base, list(todo_by_key.items()), conn, batch_size)
        return sweep_records(conn, spec, base, keys)
