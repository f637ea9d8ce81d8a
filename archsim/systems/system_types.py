"""What a system is: the typed `System` a system spec loads into (`archsim.systems.system_spec` reads the YAML) and
its parts (devices, parallel degrees, placement rules, a schedule), with the names the loader, the checks across
fields (`archsim.systems.system_checks`) and the models share: op kinds, link roles, schedule kinds, and the board
power a device's op energy is priced at (`board_power_w`).

This module reads no file and checks no rule across fields; a `System` built by `system_from_dict` has passed
`check_system`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from archsim.errors import SpecError
from archsim.systems.links import Link
from archsim.workload import SHARED_EXPERTS

MAX_COUNT = 2**20  # devices per node, parallel degrees, sub-batches: beyond it a spec is a typo
# The op names of `archsim.systems.step.layer_ops`, in layer order (ffn for dense layers, moe for MoE ones).
OP_KINDS = ("attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe", "ffn_residual")
# An op a layer may hold beyond them -> the op kind whose placement rules place it: a MoE layer's shared experts, a
# dense FFN every token runs through (`step`), go where the rules put a dense layer's FFN
PLACED_AS = {SHARED_EXPERTS: "ffn"}
# The links a model reads, by role: the TP all-reduce (`archsim.systems.system_messages.allreduce_s`), the EP
# groups' token exchange (`expert_exchange_s`) and attention offloading's messages (`archsim.systems.offload`)
TP_LINK, EP_LINK, ATTENTION_LINK, CP_LINK = "tp", "ep", "attention", "cp"
WORKLOAD_PARALLELISM_KEYS = ("tp", "pp", "ep")  # an entry of parallelism.by_workload
# the prefill schemes a context-parallel system runs: archsim.systems.seqpar_schemes' softmax-attention prefills
CONTEXT_PARALLEL_SCHEMES = ("ring", "zigzag", "stripe", "ulysses", "usp", "megatron-sp", "allgather")
CONTEXT_PARALLEL = "context-parallel"
OFFLOAD_SCHEDULES = ("ping-pong", "staggered")  # attention offloading (`archsim.systems.offload`)
GPU_KINDS = ("gpu", "memory-pool")  # kinds costed by the calibrated GPU model (`archsim.systems.gpu_device`)
PIM_KINDS = ("bank-pim", "logic-pim")  # kinds computing in the HBM of the device holding the weights


@dataclass(frozen=True)
class Device:
    """One device kind of a system. `spec` is the typed spec its cost model reads: an `NPUSpec`, a `PIMSpec`, a
    `GPU` (gpu, memory-pool), a `Chip` (chip), an `Architecture` (architecture; its mapping in `mapping`) or a
    `LogicPIMSpec`."""

    name: str
    kind: str
    count: int  # per node
    spec: Any
    mapping: Any = None
    channel_policy: str | None = None  # bank-pim: rr | greedy; None only where no attention is placed on it
    price_per_hour: float | None = None  # USD per device-hour; None = not given
    attention_kernel: str | None = None  # gpu, memory-pool: a kernel of archsim.model.gpu_kernels; None only where
    # no placement rule puts attention on the device (it is read for attention alone)
    energy: Any = None  # gpu, memory-pool or chip: an archsim.systems.gpu_device.ActionEnergy (energy_model:
    # per-action); None = board power (a chip: its power_w, or unknown without one)
    timing: str | None = None  # gpu: one of archsim.systems.gpu_device.TIMINGS; None = the calibrated model
    memory_utilization: float | None = None  # gpu: share of the DRAM the serving engine allocates; None = all of it
    matmul_efficiency: float | None = None  # chip: fraction of the matrix peak reached, in (0, 1]
    memory_efficiency: float | None = None  # chip: fraction of the HBM bandwidth reached, in (0, 1]

    @property
    def static_w(self) -> float:
        """Static power of one such device beside its ops' energy: a per-action energy's `static_w`; 0 otherwise
        (board power for the time already holds it; the other kinds' energies are dynamic only)."""
        return 0.0 if self.energy is None else self.energy.static_w


BOARD_POWERED = ("gpu", "memory-pool", "chip")  # kinds whose op energy can be a board power for the op's time


def board_power_w(device: Device) -> float | None:
    """The board power a device's op energy is priced at (its power for the op's time): a `gpu` or `memory-pool`
    with `energy_model: tdp` (the preset's TDP) or a `chip` (its `power_w`, NaN where the chip has none: its energy
    is unknown); None for a device priced otherwise (per action, dynamic only)."""
    if device.kind not in BOARD_POWERED or device.energy is not None:
        return None
    power = device.spec.power_w
    return math.nan if power is None else float(power)


@dataclass(frozen=True)
class Parallelism:
    """Parallel degrees. `by_workload` maps a workload name to its own (whose by_workload is empty); it is read-only
    and left out of the hash, so a Parallelism stays hashable."""

    tp: int
    pp: int
    ep: int = 1
    attention_pool: int | None = None  # devices in a separate attention pool (Lamina); None = no pool
    cp: int = 1  # context-parallel ranks one sequence is cut over (a context-parallel schedule)
    by_workload: Mapping[str, Parallelism] = dataclasses.field(default_factory=lambda: MappingProxyType({}),
                                                                hash=False)


@dataclass(frozen=True)
class PlacementRule:
    """One placement rule of a system spec: it puts the op kinds `ops` (of `OP_KINDS`) on the device named `device`,
    in `phase` (prefill or decode; None: both) and, where `op_per_byte_below` is set, only for ops whose arithmetic
    intensity (FLOPs per byte) is below it; with `faster` (the spec's `op_per_byte_below: faster`, its threshold
    then infinite: a finite Op/B may match, none is read as every Op/B) only for ops that run faster on `device`
    than on the device holding the weights, as the models time them. `System.device_for` takes the first rule that
    `matches` (and, for a `faster` one, that its caller finds faster)."""

    ops: tuple[str, ...]
    device: str
    phase: str | None = None  # None = both phases
    op_per_byte_below: float | None = None  # None = any arithmetic intensity
    faster: bool = False  # only where `device` runs the op faster than the weight holder (`System.device_for`)

    def matches(self, op: str, phase: str, op_per_byte: float) -> bool:
        return (op in self.ops and self.phase in (None, phase)
                and (self.op_per_byte_below is None or op_per_byte < self.op_per_byte_below))


@dataclass(frozen=True)
class Schedule:
    """How a system composes its ops' costs into an iteration: `kind` (one of `system_spec.SCHEDULE_KINDS`) and that
    kind's options, each field's comment naming the kinds that read it (the loader refuses a key its kind does not
    read, so the other fields keep their defaults)."""

    kind: str
    sub_batches: int | None = None  # sub-batch-interleaving
    min_batch: int = 1  # sub-batch-interleaving: smaller batches run overlapped (`system_model.layer_phases`)
    resident_weight_bytes: float = 0.0  # sub-batch-interleaving
    # sub-batch-interleaving: run SBI only where it is faster than overlapped (`system_model.layer_phases`)
    only_when_faster: bool = False
    micro_batches: int | None = None  # staggered (ping-pong is two)
    attention_sync: str = "per-channel"  # blocked: per-channel | barrier (`system_spec.SCHEDULE_CHOICES`)
    layer_time: str = "pipeline"  # sub-batch-interleaving: pipeline | steady-state
    split: str = "arrival"  # sub-batch-interleaving: arrival | longest-first
    expert_coprocessing: bool = False  # co-processing: a MoE op's experts split between the xPU and a Logic-PIM
    expert_tp: bool = True  # co-processing, blocked: every TP rank holds 1/TP of each expert (False: whole experts)
    zipf_skew: float = 0.0  # co-processing: Zipf exponent of the tokens per expert (0: uniform routing)
    divide_and_conquer: bool = False  # ping-pong, staggered: history attention starts when q arrives (Lamina)
    scheme: str | None = None  # context-parallel: the prefill's scheme (CONTEXT_PARALLEL_SCHEMES)
    ulysses: int | None = None  # context-parallel with scheme usp: the Ulysses degree
    lm_head: str = "timed"  # every kind: the LM head after the last layer, timed | left-out (decoder layers only)


@dataclass(frozen=True)
class System:
    """A validated system spec. `source` is the file it came from (for messages), `citation` where it comes from."""

    name: str
    description: str
    source: str
    citation: str
    devices: dict[str, Device]
    links: dict[str, Link]
    parallelism: Parallelism
    placement: tuple[PlacementRule, ...]
    schedule: Schedule
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)  # as loaded
    # parallel degrees given as options (`archsim simulate --tp/--pp`: {"tp": 8}), over the spec's for every
    # workload; errors about them name the option (`blame`), not a field of the file. Not in `data` (the spec as
    # written, whose own degrees must pass its checks): a system written out as `data` is read back without them
    # (`with_options(**options)` gives them again). Compared, so a system with options is not the spec without
    # them, and a sweep's point key (`archsim.dse.system_points.system_content`, the compared fields) holds them.
    options: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def device_for(self, op: str, phase: str, op_per_byte: float,
                   faster: Callable[[str], bool] | None = None) -> Device:
        """The device the first matching placement rule names (the loader made sure one matches); an op of
        `PLACED_AS` as its kind. A `faster` rule matches where `faster(its device's name)` says the op runs faster
        there than on the device holding the weights (the models time it: `system_model.placed_device`); without
        `faster`, nowhere (what the spec alone decides, as at an Op/B of infinity: the device at every Op/B)."""
        kind = PLACED_AS.get(op, op)
        rule = next(r for r in self.placement if r.matches(kind, phase, op_per_byte)
                    and (not r.faster or (faster is not None and faster(r.device))))
        return self.devices[rule.device]

    def parallelism_for(self, workload_name: str) -> Parallelism:
        """The workload's entry of `parallelism.by_workload`, or the top-level degrees when it has none, with the
        degrees of `options` in place of the spec's."""
        par = self.parallelism.by_workload.get(workload_name, self.parallelism)
        return dataclasses.replace(par, **self.options) if self.options else par

    def parallelism_path(self, workload_name: str) -> str:
        """Where in the spec `parallelism_for` reads the workload's degrees."""
        if workload_name in self.parallelism.by_workload:
            return f"parallelism.by_workload.{workload_name}"
        return "parallelism"

    def blame(self, workload_name: str, *degrees: str) -> tuple[str, str]:
        """(source, where) of an error about these degrees of the workload's parallelism: the options that set any
        of them (`--tp`, or `--tp/--pp`), else the spec's field (`parallelism.tp`; the entry itself for several)."""
        options = [f"--{d}" for d in degrees if d in self.options]
        if options:
            return "/".join(options), ""
        at = self.parallelism_path(workload_name)
        return self.source, f"{at}.{degrees[0]}" if len(degrees) == 1 else at

    def with_options(self, **degrees: int | None) -> System:
        """This system with parallel degrees given as options (`options`); None leaves the spec's."""
        given = {name: value for name, value in degrees.items() if value is not None}
        for name, value in given.items():
            if name not in WORKLOAD_PARALLELISM_KEYS or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
                raise SpecError(f"--{name}", "", f"expected a parallel degree from 1 to {MAX_COUNT}, got {value!r}")
        return dataclasses.replace(self, options=MappingProxyType({**self.options, **given}))
