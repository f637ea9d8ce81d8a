"""The contract between the serving simulator and a system model: what one iteration of a batch costs.

An iteration is one step of iteration-level (Orca/vLLM-style) continuous batching: some requests prefill their
prompts, the others decode one token each. A system model (NeuPIMs, a GPU, an NPU) answers with the time the step
takes and what it spent, so the serving simulator never needs to know the hardware.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Protocol

from archsim.errors import SpecError, kind_of
from archsim.record import PJ_PER_J, Record

_SEQUENCE_TYPES = (tuple, list)  # sequences by their type alone: the check through the Iterator ABC costs more
_INT_TYPES = frozenset((int,))  # whole numbers by their type alone (bool is refused, through the ABCs)


@dataclass(frozen=True)
class IterationCost:
    """One iteration: `time_s` wall time, `energy_j` energy, `busy_s` per unit (e.g. "npu", "pim") the time that
    unit was busy within `time_s` (utilization = busy_s / time_s)."""

    time_s: float
    energy_j: float = 0.0
    busy_s: Mapping[str, float] = field(default_factory=dict)

    def record(self, system: str) -> Record:
        """The record every target writes (`archsim.record`); an iteration models no area or DRAM traffic count."""
        return Record("system-iteration", system, True, "", self.time_s, self.energy_j * PJ_PER_J,
                      busy_s=dict(self.busy_s))


@dataclass(frozen=True)
class Batch:
    """The work of one iteration: the prompt lengths (tokens) of the requests prefilling, and the context lengths
    (tokens already in the KV cache, the new token included) of the requests decoding one token; the KV the other
    running requests hold meanwhile (a system bounding an iteration's memory counts it); with expert parallelism,
    the EP group of each prompt and each decode where the scheduler assigned them (`prefill_ep_groups`,
    `decode_ep_groups`: one group index per request, in the same order; empty: the system deals them round-robin by
    position, `sharding.ep_groups`).

    Each length is a whole number of tokens, at least 1 (held KV at least 0): a Python or numpy integer, or a float
    whose value is whole (the NeuPIMs reproduction draws its contexts as a float array); anything else is a
    SpecError naming the field (e.g. "prefill_tokens[0]"). The sequences are kept as given."""

    prefill_tokens: Sequence[int] = ()
    decode_context_tokens: Sequence[int] = ()
    held_kv_tokens: int = 0  # KV tokens of running requests outside the batch (they wait while it prefills)
    prefill_ep_groups: Sequence[int] = ()  # per prompt, the EP group it runs on (empty: dealt by position)
    decode_ep_groups: Sequence[int] = ()  # per decode, the EP group holding its KV (empty: dealt by position)

    def __post_init__(self) -> None:
        _check_lengths("prefill_tokens", self.prefill_tokens)
        _check_lengths("decode_context_tokens", self.decode_context_tokens)
        refused = _not_tokens(self.held_kv_tokens, 0)
        if refused:
            raise SpecError("<python>", "held_kv_tokens", refused)
        if len(self.prefill_ep_groups) or len(self.decode_ep_groups):
            _check_groups("prefill_ep_groups", self.prefill_ep_groups, len(self.prefill_tokens))
            _check_groups("decode_ep_groups", self.decode_ep_groups, len(self.decode_context_tokens))


def _check_groups(name: str, groups: Sequence[int], requests: int) -> None:
    """Refuse `groups` unless one whole number >= 0 (a group's index) for each of the `requests` (a batch assigning
    groups assigns every request one)."""
    if len(groups) != requests:
        raise SpecError("<python>", name, f"expected one EP group per request ({requests}) or none, got {len(groups)}")
    for i, group in enumerate(groups):
        if isinstance(group, bool) or not isinstance(group, Integral) or group < 0:
            raise SpecError("<python>", f"{name}[{i}]", f"expected an EP group's index >= 0, got {group!r}")


def _check_lengths(name: str, lengths: Sequence[int]) -> None:
    """Refuse `lengths` unless a sequence of whole numbers >= 1, naming the first bad entry. A batch is built per
    iteration with up to a batch's entries, so the common case (a tuple or list of ints, as the serving simulator
    builds) is checked by the entries' types and their least alone, other whole numbers in passes the interpreter
    runs in C, and only a refused batch is walked entry by entry for its message. An iterator is refused (it would
    be spent here)."""
    if type(lengths) not in _SEQUENCE_TYPES and (isinstance(lengths, Iterator) or not hasattr(lengths, "__len__")):
        raise SpecError("<python>", name, f"expected a sequence of token counts, got {kind_of(lengths)}")
    kinds = set(map(type, lengths))
    if not len(lengths) or ((kinds <= _INT_TYPES or _whole(kinds, lengths)) and min(lengths) >= 1):
        return
    for i, tokens in enumerate(lengths):
        refused = _not_tokens(tokens, 1)
        if refused:
            raise SpecError("<python>", f"{name}[{i}]", refused)


def _whole(kinds: set[type], lengths: Sequence[int]) -> bool:
    """Entries of these `kinds` (their types) are all whole numbers: integers, or floats whose values are whole
    (NaN and inf are not)."""
    if bool in kinds or not all(issubclass(kind, Real) for kind in kinds):
        return False
    return all(issubclass(kind, Integral) for kind in kinds) or all(map(float.is_integer, map(float, lengths)))


def _not_tokens(tokens: object, least: int) -> str:
    """Why `tokens` is not a whole number of tokens >= `least` ("" when it is)."""
    expected = f"expected a whole number of tokens >= {least}, got"
    if type(tokens) is int:  # the common case, without the checks through the number ABCs
        whole = True
    elif isinstance(tokens, bool) or not isinstance(tokens, Real):
        return f"{expected} {kind_of(tokens)}" + ("" if tokens is None else f" {tokens!r}")
    else:
        whole = isinstance(tokens, Integral) or (math.isfinite(tokens) and float(tokens).is_integer())
    return "" if whole and tokens >= least else f"{expected} {tokens!r}"


class IterationModel(Protocol):
    """A system as the serving simulator sees it."""

    name: str
    kv_bytes_per_token: float  # KV-cache bytes one token of one request holds (all layers on this system)
    kv_capacity_bytes: float  # memory left for the KV cache after weights and activations
    static_w: float  # power drawn busy or idle (W), charged between iterations too; 0 where none is modelled

    def iteration(self, batch: Batch) -> IterationCost: ...
