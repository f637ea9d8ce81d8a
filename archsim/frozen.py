"""Read-only mappings for the frozen specs (`ReadOnlyDict`, `read_only`): a frozen dataclass does not stop an edit
inside a dict it holds, and the library hands one loaded spec to every caller (`archsim.library`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import yaml


class ReadOnlyDict(dict):
    """A dict that refuses every change in place (a TypeError): the mappings inside the frozen specs
    (`archsim.workload.Workload.params`, `archsim.cascade.ir.Cascade`'s, `archsim.arch.gpu.GPU.tensor_flops_per_s`,
    an architecture's unit cycles and energy tables, a mapping's groups). The library's
    parse cache hands one spec object to every caller that loads its file, and caches above it key on that object's
    identity, so an edit in place would reach every later load and leave remembered results stale; a changed spec
    is built with `dataclasses.replace` and a new dict ({**spec.params, "head_dim": 256}). Otherwise a dict: equal
    to one, written as one (repr, JSON, YAML); `dict(...)` and `.copy()` give an editable dict, `copy.copy`,
    `copy.deepcopy` and `dataclasses.asdict` a read-only one; it pickles (Dask sends specs to workers), which
    `types.MappingProxyType` does not. Filled once, when built: calling `__init__` again is refused too."""

    __slots__ = ("_filled",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_filled", False):
            self._refuse()
        super().__init__(*args, **kwargs)
        self._filled = True

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Every in-place edit: refused."""
        raise TypeError("a spec's mapping is read-only: build a changed spec with dataclasses.replace and a new "
                        "dict ({**spec.field, key: value})")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type, tuple[dict]]:
        """Pickled (and copied) as its items, rebuilt by the constructor: pickle's default for a dict subclass
        would set the items one by one, which `__setitem__` refuses."""
        return type(self), (dict(self),)


yaml.SafeDumper.add_representer(ReadOnlyDict, yaml.SafeDumper.represent_dict)  # a mapping, as a dict is
yaml.Dumper.add_representer(ReadOnlyDict, yaml.Dumper.represent_dict)


def read_only(mapping: Mapping) -> ReadOnlyDict:
    """`mapping` as a `ReadOnlyDict`: itself when it is one (nothing can change it), else a copy of its items, which
    an edit of the caller's mapping afterwards does not reach."""
    return mapping if type(mapping) is ReadOnlyDict else ReadOnlyDict(mapping)


def as_tuple(items: Any) -> Any:
    """A list as a tuple (a list in a frozen spec could be edited in place); anything else as it is (a wrong type is
    the spec's checks' to name)."""
    return tuple(items) if isinstance(items, list) else items
