"""The contract between the serving simulator and a system model: what one iteration of a batch costs.

An iteration is one step of iteration-level (Orca/vLLM-style) continuous batching: some requests prefill their
prompts, the others decode one token each. A system model (NeuPIMs, a GPU, an NPU) answers with the time the step
takes and what it spent, so the serving simulator never needs to know the hardware.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from archsim.record import Record


@dataclass(frozen=True)
class IterationCost:
    """One iteration: `time_s` wall time, `energy_j` energy, `busy_s` per unit (e.g. "npu", "pim") the time that
    unit was busy within `time_s` (utilization = busy_s / time_s)."""

    time_s: float
    energy_j: float = 0.0
    busy_s: Mapping[str, float] = field(default_factory=dict)

    def record(self, system: str) -> Record:
        """The record every target writes (`archsim.record`); an iteration models no area or DRAM traffic count."""
        return Record("system-iteration", system, True, "", self.time_s, self.energy_j, busy_s=dict(self.busy_s))


@dataclass(frozen=True)
class Batch:
    """The work of one iteration: the prompt lengths (tokens) of the requests prefilling, and the context lengths
    (tokens already in the KV cache, the new token included) of the requests decoding one token; the KV the other
    running requests hold meanwhile (a system bounding an iteration's memory counts it)."""

    prefill_tokens: Sequence[int] = ()
    decode_context_tokens: Sequence[int] = ()
    held_kv_tokens: int = 0  # KV tokens of running requests outside the batch (they wait while it prefills)


class IterationModel(Protocol):
    """A system as the serving simulator sees it."""

    name: str
    kv_bytes_per_token: float  # KV-cache bytes one token of one request holds (all layers on this system)
    kv_capacity_bytes: float  # memory left for the KV cache after weights and activations
    static_w: float  # power drawn busy or idle (W), charged between iterations too; 0 where none is modelled

    def iteration(self, batch: Batch) -> IterationCost: ...
