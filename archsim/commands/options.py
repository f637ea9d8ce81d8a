"""Options and helpers shared by several commands: `--set`, `--workload`, comma lists of token counts and of names
(`names_among`), presets named by their option, showing a Result."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection
from typing import Any

import click

from archsim.errors import LimitError, SpecError, first_repeat

# 8K tokens = 8192, as Ring Attention and LASP count them (the sparse papers' 500K is 500,000)
SUFFIXES = {"K": 1024, "M": 1024**2}


def nonempty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback refusing an empty name or path (which would name no file in the error)."""
    if value is not None and not value.strip():
        raise click.BadParameter("expected a name or a path, got an empty value")
    return value


def whole_numbers(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int]:
    """A comma list of whole numbers >= 1 (a K or M suffix multiplies by 1024 or 1024^2), each within the size limit
    (`ARCHSIM_MAX_SIZE`), in order, each once (`once_each`); an option not given is an empty list."""
    if value is None:
        return []
    return once_each(param.opts[0], value, [_whole(param.opts[0], value, item.strip(),
                                                   "whole numbers >= 1 separated by commas")
                                            for item in value.split(",")])


def whole_number(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """One whole number >= 1 as `whole_numbers` reads one (8K = 8192, within the size limit); None when not given."""
    if value is None:
        return None
    if "," in value:
        raise SpecError(param.opts[0], value, "expected one whole number, got a list")
    return _whole(param.opts[0], value, value.strip(), "one whole number >= 1")


def names_among(option: str, value: str, known: Collection[str], what: str) -> tuple[str, ...]:
    """The option's comma list `value` of names, each one of `known` (a `what`: "kernel family", "scheme") and each
    once (`once_each`); an empty item or an unknown name is a SpecError naming the option and every choice."""
    names = [item.strip() for item in value.split(",")]
    for name in names:
        if name not in known:
            raise SpecError(option, value, f"unknown {what} {name or '(empty)'}; expected one of {', '.join(known)}, "
                                           "separated by commas")
    return tuple(once_each(option, value, names))


def once_each(option: str, value: str, items: list) -> list:
    """`items`, the values of the option's comma list `value`, when none is given twice: a repeat would be one point
    run once, silently (a sweep's axis refuses one too); otherwise a SpecError naming the option."""
    if repeat := first_repeat(items):
        raise SpecError(option, value, f"expected each value once, got {items[repeat[0]]} twice")
    return items


def _whole(option: str, value: str, item: str, expected: str) -> int:
    """`item` of the option's `value` as a whole number >= 1 (`option_number`'s digits; a K or M suffix multiplies
    by 1024 or 1024^2) within the size limit; otherwise a SpecError saying it expected `expected`."""
    text = item.upper()
    scale = SUFFIXES.get(text[-1:], 1)
    try:
        number = option_number(option, text[:-1] if scale > 1 else text, whole=True) * scale
    except SpecError:
        number = 0
    if number < 1:
        raise SpecError(option, value, f"expected {expected} (8K = 8192), got {item!r}")
    return _sized(option, item, number)


def _sized(option: str, where: str, number: int) -> int:
    """`number`, a size an option gives, when within the size limit (`archsim.workload.max_size`); otherwise a
    SpecError naming the option."""
    from archsim.workload import max_size, size_limit_problem

    if problem := size_limit_problem(number, max_size()):
        raise LimitError(option, where, problem)
    return number


def option_number(option: str, text: str, whole: bool = False) -> int | float:
    """The number an option's `text` writes, as Python reads an ASCII literal (int() where `whole`, else float()):
    `_` between digits is taken (4_096, as YAML 1.1 reads it in a spec file), other scripts' digits that int() and
    float() take too ('４０９６', '٤٠٩٦') are not, as no spec file reads them. A SpecError naming the option
    otherwise; ranges are the caller's."""
    if text.isascii():
        with contextlib.suppress(ValueError):
            return int(text) if whole else float(text)
    kind = "a whole number in ASCII digits (e.g. 4096 or 4_096)" if whole else "a number in ASCII digits (e.g. 0.5)"
    raise SpecError(option, "", f"expected {kind}, got {text!r}")


class _OptionNumber:
    """A click number type whose text `option_number` reads (every number option's, one rule), its range then
    checked by the click type it is mixed into."""

    whole = True

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            value = option_number(param.opts[0] if param else "value", value, self.whole)
        return super().convert(value, param, ctx)


class Whole(_OptionNumber, click.types.IntParamType):
    """click's int over `option_number`'s digits, unbounded (the caller checks the range: a method's own)."""


class Real(_OptionNumber, click.types.FloatParamType):
    """click's float over `option_number`'s digits, unbounded (the caller checks the range)."""

    whole = False


class WholeRange(_OptionNumber, click.IntRange):
    """click's IntRange over `option_number`'s digits."""


class RealRange(_OptionNumber, click.FloatRange):
    """click's FloatRange over `option_number`'s digits."""

    whole = False


class Size(WholeRange):
    """A size option (a batch, a token budget): a whole number >= 1 within the size limit (`ARCHSIM_MAX_SIZE`),
    as a workload's sizes."""

    def __init__(self) -> None:
        super().__init__(min=1)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return _sized(param.opts[0] if param else "value", "", super().convert(value, param, ctx))


def named(option: str, name: str, load):
    """`load(name)`; a name that finds no preset or file is named by its `option` (a bad file says where it is bad)."""
    try:
        return load(name)
    except SpecError as error:
        if error.source == name and not error.where:  # the name found nothing (a bad file says where it is bad)
            raise SpecError(option, name, error.message) from None
        raise


SET = click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
                   help="Override a parameter or a rank size (repeatable).")
WORKLOAD = click.option("--workload", "-w", metavar="W", callback=nonempty,
                        help="Workload name or YAML path binding the params.")


def set_number(text: str) -> int | float:
    """The number a `--set` value writes (`option_number`'s digits): a whole number (`4096`, `4_096`) as an int,
    exactly, so that the size limit sees the value given (a float rounds 2^53 + 1 to 2^53, within a raised limit);
    any other (`0.25`, `1e3`) as a float, for a fractional parameter (a density)."""
    try:
        return option_number("--set", text, whole=True)
    except SpecError:
        return option_number("--set", text)


def parse_sets(values: tuple[str, ...]) -> dict[str, int | float]:
    """`NAME=NUMBER` pairs, each name once; a number (`set_number`'s: a whole one an int) must be finite (the
    binding checks its range)."""
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            number = set_number(value)
        except SpecError:
            sep = ""
        if not sep or not name.strip():
            raise SpecError("--set", item, "expected NAME=NUMBER, e.g. --set seq_len=4096 or --set M0=256")
        if number != number or number in (float("inf"), float("-inf")):
            raise SpecError("--set", item, "expected a finite number")
        if name.strip() in out:
            earlier = out[name.strip()]
            shown = earlier if isinstance(earlier, int) else f"{earlier:g}"  # a whole number exactly
            raise SpecError("--set", item, f"{name.strip()} is set twice (also {name.strip()}={shown}); "
                                           "give each name once")
        out[name.strip()] = number
    return out


def show_result(result) -> None:
    """One design point's Result as the text `archsim run` prints; an infeasible point, its reason only."""
    click.echo(f"{result.mapping}: {result.cascade} on {result.architecture}"
               + ("" if result.feasible else f"  INFEASIBLE: {result.reason}"))
    if not result.feasible:  # its numbers are those of a mapping that cannot run: not shown as if they were a result
        click.echo("  no latency, energy or utilization: the point is infeasible (the reason above)")
        return
    click.echo(f"  latency   {result.latency_s:.6g} s (compute {result.compute_cycles:.6g} cycles; memory "
               + ", ".join(f"{lv} {s:.4g} s" for lv, s in result.memory_s.items()) + ")")
    click.echo(f"  traffic   {result.dram_traffic_bytes:.6g} B across DRAM")
    click.echo(f"  energy    {result.energy_pj:.6g} pJ, by component and action:")
    for line in energy_lines(result.energy_by):
        click.echo(f"    {line}")
    click.echo("  util      " + ", ".join(f"{u} {v:.4f}" for u, v in result.utilization.items()))
    kept = ", ".join(f"{lv} {b:.6g} B" for lv, b in result.footprint_bytes.items())
    click.echo(f"  footprint {kept} (what the mapping keeps, before any spill)")
    if result.stalls:
        click.echo("  stalls    " + ", ".join(f"{src} {s:.4g} s" for src, s in
                                             sorted(result.stalls.items(), key=lambda kv: -kv[1])))
    click.echo("\n  Einsum     unit       lanes   cycles        compute_pj")
    for e in result.einsums:
        click.echo(f"  {e.name:<10} {e.unit:<10} {e.lanes_used:<7} {e.compute_cycles:<13.6g} {e.energy_pj:.4g}")


def energy_lines(energy_by: dict[tuple[str, str], float]) -> list[str]:
    """A Result's `energy_by` as one line per component (its total, then its actions), components and actions largest
    first: the components' totals sum to the Result's energy, memory and leakage included."""
    by_component: dict[str, dict[str, float]] = {}
    for (component, action), pj in energy_by.items():
        by_component.setdefault(component, {})[action] = pj
    width = max((len(c) for c in by_component), default=0)
    lines = []
    for component, actions in sorted(by_component.items(), key=lambda kv: -sum(kv[1].values())):
        parts = ", ".join(f"{a} {pj:.4g}" for a, pj in sorted(actions.items(), key=lambda kv: -kv[1]))
        total = f"{sum(actions.values()):.4g} pJ"
        lines.append(f"{component:<{width}}  {total:<12} ({parts})")
    return lines


def nan_as_null(row: dict) -> dict:
    """A row with its NaN values as None, for `--json` (JSON has no NaN: `json.dumps` would write a bare NaN)."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}


def write_tables(out: str, tables: dict, texts: dict[str, str] | None = None) -> None:
    """Each table (a DataFrame or a list of records) as `<out>/<name>.csv`, and each of `texts` as `<out>/<file>`,
    written as one folder (`archsim.outputs.atomic_dir`): what an earlier run of any archsim command wrote there (a
    report's figures and index, tables of another schema) is replaced, not left beside them; other files stay. Text
    is UTF-8 whatever the locale (pandas writes CSV so too)."""
    import pandas as pd

    from archsim.outputs import atomic_dir

    with atomic_dir(out) as stage:
        for name, table in tables.items():
            (table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)).to_csv(stage / f"{name}.csv",
                                                                                      index=False)
        for name, text in (texts or {}).items():
            (stage / name).write_text(text, encoding="utf-8")
