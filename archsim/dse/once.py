"""Each field of a sweep set in one place: a field that two places set (a `sets` entry and an axis, an axis and
a linked axis's template, two linked axes, a block field and its axis, a rank and the parameter that alone sizes
it) would be resolved silently by one of them while the record names the other, so it is refused at load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from archsim.errors import SpecError


def check_set_once(settings: Iterable[tuple[str, str]], source: str, same: Mapping[str, str] | None = None) -> None:
    """`settings`: (field path, the YAML path that sets it) in the spec's order. A field set where an earlier one is
    set, or inside it or around it (`arch.units.array2d` and `arch.units.array2d.shape`), is a SpecError at the
    later YAML path naming the earlier. `same`: field path -> the field it sets (`workload.B` -> `workload.batch`
    where parameter batch sizes rank B and nothing else: an override of B replaces batch entirely)."""
    same = same or {}
    seen: list[tuple[str, str]] = []
    for given, where in settings:
        path = same.get(given, given)
        for other, other_where in seen:
            if path == other or path.startswith(f"{other}.") or other.startswith(f"{path}."):
                raise SpecError(source, where, f"also set by {other_where}: give it in one place")
        seen.append((path, where))
