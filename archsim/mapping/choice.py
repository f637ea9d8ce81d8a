"""The mapper's choice in the mapping's own YAML form, for `archsim run` to show: what to write in place of `search`
to fix the tiles (README, "fix the tiles in the mapping instead of searching them").

Assumes `chosen` is `spec` as the mapper returns it (`archsim.mapping.mapper.search`): the same groups and loops in
the same order, `search` factors filled. A loop entry is a run of consecutive loops written in one YAML list item
(each loop's `Loop.entry`; for loops built in Python, at one level or unit), named by its place among the group's
runs (`loops[1]`: the list item's own index, the loops being in written order); only entries holding a `search`
factor are shown, every other factor as written (None: the residual, `~`; an expression as its text).
"""

from __future__ import annotations

import itertools
import json

from archsim.mapping.spec import SEARCH, Loop, Mapping

# group name -> loop entry (`loops[1]`) -> {level: name, ranks: {rank: factor}} (a `search` loop is temporal)
Choice = dict[str, dict[str, dict]]


def searched_entries(spec: Mapping, chosen: Mapping) -> Choice:
    """The loop entries of `spec` that hold a `search` factor, with `chosen`'s factors there, per group."""
    out: Choice = {}
    for group, filled in zip(spec.groups, chosen.groups, strict=True):
        indexed = list(enumerate(group.loops))
        for k, (_, entry) in enumerate(itertools.groupby(indexed, key=lambda item: _entry_key(item[1]))):
            entry = list(entry)
            if any(loop.factor == SEARCH for _, loop in entry):
                ranks = {loop.rank: filled.loops[i].factor if loop.factor == SEARCH else loop.factor
                         for i, loop in entry}
                out.setdefault(group.name, {})[f"loops[{k}]"] = {"level": entry[0][1].level, "ranks": ranks}
    return out


def _entry_key(loop: Loop) -> tuple:
    """What the loops of one YAML entry share: where they were written, else their level or unit."""
    return (loop.entry,) if loop.origin else (loop.level, loop.spatial)


def choice_lines(choice: Choice) -> list[str]:
    """`choice` as lines `GROUP loops[k]: {level: L, ranks: {R: F, ...}}`, flow YAML to paste over the entry."""
    lines = []
    for group, entries in choice.items():
        for where, entry in entries.items():
            ranks = ", ".join(f"{rank}: {_factor(f)}" for rank, f in entry["ranks"].items())
            lines.append(f"{group} {where}: {{level: {entry['level']}, ranks: {{{ranks}}}}}")
    return lines


def _factor(factor: int | str | None) -> str:
    """A factor as YAML writes it: `~`, a number, or an expression quoted."""
    if factor is None:
        return "~"
    return json.dumps(factor) if isinstance(factor, str) else str(factor)
