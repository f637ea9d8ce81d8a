"""Where a memory's prices are quoted, and what a change that does not restate them keeps.

A memory's read and write energies (pJ per access) are quoted at a width, `energy_access_bits`, and its leak (pJ
per cycle per instance) at a clock, `leak_clock_hz`; a file that leaves them out quotes its prices at its own
`access_bits` and the architecture's `clock_hz`. The model prices at the quoted point (`Memory`,
`archsim.model.analytical`): an access of another width costs the quoted price x access_bits / energy_access_bits
(the energy per bit is kept: Accelergy's SRAM `dynamic_energy_scale` = widthscale x depthscale^0.78, with its depth
term left out as capacity's is for energy, fusemax-energy.md s4), and the leak is a power, leak x leak_clock_hz,
whatever the clock.

The one rule of a change (a `base:` file's own keys, `Architecture.with_changes`, a sweep's `arch.` axes and the
batch path's columns, `archsim.model.arch_columns`): the base's prices stay quoted where they were (so a width or a
clock changed alone keeps the energy per bit and the leak power), except prices the change restates: those are taken
as given at the width and clock it gives (`energy_access_bits`, `leak_clock_hz`), or, where it gives none, at the
memory's `access_bits` and the architecture's `clock_hz`. Read and write share one width: where a change restates
one of them, the other is carried to that width at its energy per bit (`rescaled`), so it keeps its meaning; a width
given with neither restated quotes the base's read and write there as they are. The area a memory quotes at a
capacity (`area_capacity_bytes`) is the same kind of field, kept by a change the same way.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Collection, Iterator, Mapping
from typing import Any

WIDTH_ACTIONS = ("read", "write")  # pJ per access, quoted at `energy_access_bits`
CLOCK_ACTIONS = ("leak",)  # pJ per cycle per instance, quoted at `leak_clock_hz`


def leaves(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of each of `value`'s leaves under `prefix` (a mapping's keys, recursively; anything
    else a leaf), what a change sets: `dict(leaves("", layer))` for a `base:` file's own keys."""
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from leaves(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def restated(changed: Collection[str], memory: str) -> tuple[set[str], bool]:
    """What of `memory`'s prices the change setting the leaf paths `changed` restates: the width actions it restates
    (quoted at the width it gives, `energy_access_bits`, else at the memory's `access_bits`), and whether it
    restates the leak without saying where it quotes it (not where it gives `leak_clock_hz`)."""
    at = f"memories.{memory}."
    actions = {path.split(".")[4] for path in changed
               if path.startswith(f"{at}energy.actions_pj.") and len(path.split(".")) > 4}
    leak = f"{at}leak_clock_hz" not in changed and bool(actions & set(CLOCK_ACTIONS))
    return actions & set(WIDTH_ACTIONS), leak


def rescaled(actions_pj: Mapping[str, Any], factor: Any, restated_actions: Collection[str]) -> dict[str, Any]:
    """`actions_pj` with the width actions not in `restated_actions` multiplied by `factor` (the new width over the
    width they were quoted at: each keeps its energy per bit); a composite ({other action: count}) follows its
    parts. `factor` is a number or a numpy column (1 where the width is kept, so those values stay exact)."""
    return {a: e * factor if a in WIDTH_ACTIONS and a not in restated_actions and not isinstance(e, Mapping) else e
            for a, e in actions_pj.items()}


def settled(base: Mapping[str, Any], changed: Mapping[str, Any]) -> dict[str, Any]:
    """A valid architecture's YAML form `base` made ready for a change that sets the leaf paths of `changed` (path
    -> value, the module docstring's rule): each memory's `energy_access_bits` and `leak_clock_hz` written in, as
    quoted in `base`, but where the change restates prices: its restated width actions are quoted at the width it
    gives, else at its `access_bits` (the key left out, for the loader's default), the other of read and write
    carried there (`rescaled`); its restated leak, where it gives no clock, at its clock (the key left out). A value
    the change gives that is no number is left for the loader to refuse."""
    data = copy.deepcopy(dict(base))
    clock_hz = data.get("clock_hz")
    for name, level in data.get("memories", {}).items():
        if not isinstance(level, dict):
            continue
        width, leak = restated(changed, name)
        at = f"memories.{name}."
        quoted = level.setdefault("energy_access_bits", level.get("access_bits"))  # kept, unless the change gives it
        if width:  # quoted at the width the change gives, else the memory's after it (the loader's default)
            if f"{at}energy_access_bits" not in changed:
                del level["energy_access_bits"]
            new = changed.get(f"{at}energy_access_bits", changed.get(f"{at}access_bits", level.get("access_bits")))
            table = level.get("energy")
            if _number(new) and _number(quoted) and isinstance(table, dict) and isinstance(
                    table.get("actions_pj"), dict):
                table["actions_pj"] = rescaled(table["actions_pj"], new / quoted, width)
        if leak:
            level.pop("leak_clock_hz", None)
        else:
            level.setdefault("leak_clock_hz", clock_hz)
    return data


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0
