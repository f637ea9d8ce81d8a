"""Remembering results of pure functions over frozen specs that are not hashable by value (a `Binding` holds
dicts), keyed by the identity of the spec arguments.

`identity_cache(maxsize)` wraps f(*args): a call whose arguments are the very same objects (`is`) as a remembered
call's (strings, numbers, None and tuples of them: equal; an instance of a subclass of str or int: the same object)
returns its result. The remembered arguments are kept
alive with the result, so an identity is never reused by another object while its entry lives; the oldest entry
goes when more than `maxsize` are kept. Only for pure functions of frozen arguments: a result depends on nothing
but them. Exceptions are not remembered.

`remembered(table, keys, compute)` reads many keys from a dict a caller keeps, computing (and storing) only the
missing ones: the hot loops of serving runs (an op's cost terms, a context's decode op or sums) where every key is
usually known and one look-up per key is all the work.

`per_object(maxsize)` is `identity_cache` for a function of one object (a loaded cascade, say), with none of its
per-argument checks: one dictionary look-up by `id`, the object kept alive beside its result; the oldest entry
goes when more than `maxsize` are kept.

Both are safe under threads without a lock: each step on the entries is one call on a C `dict` (`OrderedDict`),
atomic under the GIL, and a step that finds its entry gone (another thread evicted it, or cleared the cache) goes
on: a hit keeps its result, an eviction takes the next oldest (`trim`). Two threads missing on the same arguments
may both compute the result (a pure function's: the same).

`kept` is `functools.cached_property` without the lock it takes on every first access before Python 3.12: for
objects built by the thousand in one thread (ops, bindings, a serving step's placement), each read once or twice.
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

R = TypeVar("R")
VALUE_TYPES = (str, int, float, bool, type(None))  # keyed by value (a location string built per call), not identity
_EXACT_VALUE_TYPES = frozenset(VALUE_TYPES)  # the common case, checked first by type alone


def _is_value(arg: Any) -> bool:
    """A string, number, bool or None, or a tuple of such (nested): keyed by value."""
    return (type(arg) in _EXACT_VALUE_TYPES or isinstance(arg, VALUE_TYPES)
            or (isinstance(arg, tuple) and all(map(_is_value, arg))))


def identity_cache(maxsize: int) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """A decorator: remember up to `maxsize` results of a pure function by the identity of its arguments (module
    docstring); the wrapped function has `cache_clear`."""
    def wrap(fn: Callable[..., R]) -> Callable[..., R]:
        entries: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], R]] = OrderedDict()

        @functools.wraps(fn)
        def cached(*args: Any) -> R:
            # inline checks, no call per argument; an instance of a subclass of str or int is keyed by identity
            key = tuple([a if type(a) in _EXACT_VALUE_TYPES or (type(a) is tuple and _is_value(a)) else id(a)
                         for a in args])
            hit = entries.get(key)
            # a value key may equal an object's id: both arguments must be values for equal keys to mean equal
            if hit is not None and all([a is b or (_is_value(a) and _is_value(b))
                                        for a, b in zip(hit[0], args, strict=True)]):
                try:  # noqa: SIM105 - contextlib.suppress costs 0.35 us, a third of a hit
                    entries.move_to_end(key)
                except KeyError:  # another thread evicted it since: the hit stands
                    pass
                return hit[1]
            result = fn(*args)
            entries[key] = (args, result)
            trim(entries, maxsize)
            return result

        cached.cache_clear = entries.clear  # type: ignore[attr-defined]
        return cached

    return wrap


def per_object(maxsize: int) -> Callable[[Callable[[Any], R]], Callable[[Any], R]]:
    """A decorator: remember up to `maxsize` results of a pure function of one object by its identity (module
    docstring)."""
    def wrap(fn: Callable[[Any], R]) -> Callable[[Any], R]:
        entries: dict[int, tuple[Any, R]] = {}

        @functools.wraps(fn)
        def cached(arg: Any) -> R:
            hit = entries.get(id(arg))
            if hit is not None and hit[0] is arg:
                return hit[1]
            result = fn(arg)
            entries.pop(id(arg), None)  # an object of a dead one's id: its entry goes
            entries[id(arg)] = (arg, result)
            trim(entries, maxsize)
            return result

        cached.cache_clear = entries.clear  # type: ignore[attr-defined]
        return cached

    return wrap


def trim(entries: dict, maxsize: int) -> None:
    """Evict the oldest entries (first in the dict's order) while more than `maxsize` are kept. Another thread may
    evict or clear at the same time: an entry it took first, or a dict it changed under the iterator, is tried
    again; a dict it emptied is done."""
    while len(entries) > maxsize:
        with contextlib.suppress(KeyError, StopIteration, RuntimeError):
            del entries[next(iter(entries))]


class kept:
    """A value worked out when first asked and kept in the instance's `__dict__` (which then shadows this
    descriptor), as `functools.cached_property` does, without its lock."""

    def __init__(self, func: Callable) -> None:
        self.func, self.name, self.__doc__ = func, func.__name__, func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


def remembered(table: dict, keys: Sequence, compute: Callable[[int], Any]) -> list:
    """The value of each key in `table`, in order; a key not in it gets `compute(i)` (i: its index in `keys`),
    stored first. One dictionary look-up per key when all are known."""
    try:
        return list(map(table.__getitem__, keys))
    except KeyError:
        for i, key in enumerate(keys):
            if key not in table:
                table[key] = compute(i)
        return list(map(table.__getitem__, keys))
