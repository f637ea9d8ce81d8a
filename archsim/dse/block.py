"""What the sweeps whose target is a block of their own (`parallel:`, `sparse:`; `archsim.dse.parallel_spec`,
`archsim.dse.sparse_spec`) check alike: the block's shape and the fields set once, the values of a field that
chooses from a list, names a spec or counts, and the specs it names, loaded once; and what of those specs and of the
GPU calibration their points' keys hash. Pure but for reading the named files and the packaged calibration.

Each problem is a `SpecError` naming the sweep file and the YAML path: `<root>.<field>` for the block's value,
`axes.<root>.<field>[i]` for an axis's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archsim.dse.once import check_set_once
from archsim.errors import SpecError, check_choice, check_keys
from archsim.gpu import params as gpu_params
from archsim.record import NAN
from archsim.spec_files import spec_beside
from archsim.workload import check_size

TEXT_KEYS = frozenset({"path", "source", "citation", "description"})  # files and prose: not in a point's key


@dataclass(frozen=True)
class BlockTargets:
    """What a block sweep's points are built from, loaded once: the block, each spec the sweep names (`load_specs`)
    and the GPU calibration's parameters the models read (`calibration_params`)."""

    block: dict[str, Any]
    specs: dict[str, dict[str, Any]]  # field -> the name the sweep gives -> loaded spec
    calibration: dict[str, dict[str, float]]  # kernel family -> fitted parameters


def check_block(data: Any, root: str, fields: Sequence[str], required: Collection[str], source: str,
                axes: Mapping[str, Any], check_value: Callable[[str, Any, str, str], None]) -> None:
    """The block `root` of the sweep at `source`: a mapping of `fields`, each field set once (in the block or by its
    axis `<root>.<field>`), each of `required` set, and each value the block gives as `check_value(field, value,
    source, where)` accepts it."""
    if not isinstance(data, dict):
        raise SpecError(source, root, f"expected a mapping of {', '.join(fields)}, got {data!r}")
    check_keys(data, fields, source, root)
    check_set_once([*((f"{root}.{name}",) * 2 for name in data), *((a, f"axes.{a}") for a in axes)], source)
    for name in required:
        if name not in data and f"{root}.{name}" not in axes:
            raise SpecError(source, f"{root}.{name}", f"missing (or give the axis {root}.{name})")
    for name, value in data.items():
        check_value(name, value, source, f"{root}.{name}")


def check_axis(path: str, root: str, fields: Sequence[str], source: str, where: str) -> str:
    """The field an axis `<root>.<field>` sets; a SpecError at `where` when it is not one of the block's `fields`."""
    name = path.removeprefix(f"{root}.")
    if name not in fields:
        raise SpecError(source, where, f"{name!r} is not a field of the {root} block (fields: {', '.join(fields)})")
    return name


def block_values(root: str, name: str, block: Mapping[str, Any], axes: Mapping[str, Any],
                 default: Sequence[Any] = ()) -> list[Any]:
    """The values field `name` takes in the sweep: the block's, or its axis's `<root>.<name>` (`default` when
    neither sets it)."""
    return [block[name]] if name in block else list(axes.get(f"{root}.{name}", default))


def block_where(root: str, name: str, block: Mapping[str, Any], index: int | None = None) -> str:
    """The YAML path of field `name`'s value: the block's `<root>.<name>` when the block gives it, else its axis's
    (`axes.<root>.<name>`, the value at `index` when one is given)."""
    if name in block:
        return f"{root}.{name}"
    return f"axes.{root}.{name}" + ("" if index is None else f"[{index}]")


def block_fields(root: str, block: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """A point's fields: the block's, with the point's `<root>.<field>` axis values over them."""
    prefix = f"{root}."
    return {**block, **{p.removeprefix(prefix): v for p, v in point.items() if p.startswith(prefix)}}


def applying_point(root: str, block: Mapping[str, Any], point: Mapping[str, Any],
                   applies: Callable[[str, Mapping[str, Any]], bool]) -> dict[str, Any]:
    """A point's axis values, NaN (the store's "does not apply") for an axis `<root>.<field>` over a field the point
    does not take (`applies(field, fields)` false, `fields` the point's `block_fields`): the row of a sparse method
    that has no budget, or of a parallel scheme without a Ulysses degree, says so, where it had shown the value of
    a setting it did not run. Points differing only there are one point, their keys being alike."""
    fields = block_fields(root, block, point)
    prefix = f"{root}."
    return {path: NAN if path.startswith(prefix) and not applies(path.removeprefix(prefix), fields) else value
            for path, value in point.items()}


def check_choice_or_name(name: str, value: Any, choices: Mapping[str, Sequence[Any]], named: Collection[str],
                         source: str, where: str) -> bool:
    """Check a value of field `name` when the field chooses from `choices[name]` or names a spec (`named`: a
    non-empty preset name or file, whose loading `load_specs` checks); False, checking nothing, for another field."""
    if name in choices:
        check_choice(where, value, choices[name], source)
        return True
    if name in named:
        if not isinstance(value, str) or not value:
            raise SpecError(source, where, f"expected a {name} preset name or file, got {value!r}")
        return True
    return False


def check_whole(name: str, value: Any, source: str, where: str) -> None:
    """A value of a count `name`: a whole number >= 1 within ARCHSIM_MAX_SIZE (`check_size`)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(source, where, f"expected a whole number >= 1, got {value!r}")
    check_size(name, value, source, where)


def load_specs(named: Mapping[str, Callable[[str], Any]], root: str, block: Mapping[str, Any],
               axes: Mapping[str, Sequence[Any]], source: str,
               check: Callable[[str, str, Any, str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Field -> name -> spec: each spec that the block or an axis of the sweep at `source` names in a field of
    `named` (field -> its loader), loaded once (`load_named`); `check(field, name, spec, where)` sees each as it
    is loaded, to refuse one no point could use."""
    specs: dict[str, dict[str, Any]] = {name: {} for name in named}
    for name, load in named.items():
        axis = f"{root}.{name}"
        given = [(block[name], axis)] if name in block else []
        given += [(value, f"axes.{axis}[{i}]") for i, value in enumerate(axes.get(axis, []))]
        for value, where in given:
            if value not in specs[name]:
                specs[name][value] = load_named(load, value, source, where)
                if check is not None:
                    check(name, value, specs[name][value], where)
    return specs


def load_named(load: Callable[[str], Any], name: str, source: str, where: str) -> Any:
    """`load` of a preset name or a file beside the sweep (`source`); a name that finds nothing is a SpecError at
    `where` naming it."""
    try:
        return load(spec_beside(name, source))
    except SpecError as exc:
        if exc.source in (name, spec_beside(name, source)) and not exc.where:  # the name found nothing
            raise SpecError(source, where, f"{name!r}: {exc.message}") from None
        raise


def without_text(value: Any) -> Any:
    """A spec's plain values (`dataclasses.asdict`) without its files and prose (`TEXT_KEYS`, at any depth): what a
    point's key hashes of it, so the same spec at another path or with other words is one point."""
    if isinstance(value, dict):
        return {k: without_text(v) for k, v in value.items() if k not in TEXT_KEYS}
    if isinstance(value, list | tuple):
        return [without_text(v) for v in value]
    return value


def calibration_params() -> dict[str, dict[str, float]]:
    """Kernel family -> the packaged GPU calibration's fitted parameters, which the GPU models read: a point's key
    holds them, as a refit changes every time (it is a YAML file, not the source `MODEL_VERSION` digests)."""
    return {family: dict(params) for family, params in gpu_params.load_calibration().params.items()}


def refuse_on_every(check: Callable[[Any], None], devices: Sequence[Any]) -> None:
    """Raise the first device's SpecError from `check(device)` where every one of `devices` (each GPU a sweep
    takes) raises one: an error every point would meet. Where some device passes, its points run and the others'
    refusals are their records' reasons."""
    errors = []
    for device in devices:
        try:
            check(device)
        except SpecError as error:
            errors.append(error)
    if errors and len(errors) == len(devices):  # no device: nothing refused here
        raise errors[0]
