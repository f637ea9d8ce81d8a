"""The spec of a sequence-parallel run and its validation: which schemes, directions, scopes and kernels there are,
`ParallelSpec` (one point: a scheme, P devices of a GPU preset on a topology, a workload, the sequence length and
the direction), and the checks that refuse a point the models cannot time (`check_spec`, `check_workload`). The
timing of each scheme is `archsim.systems.seqpar_schemes`; the result with its memory `archsim.systems.seqpar`.

Rules of a spec:

- `usp` (Ulysses x Ring) needs the Ulysses degree u, a divisor of P; causal, N is a multiple of lcm(P, 2P/u)
  (`token_multiple`, the same rules as the memory's `seqpar_memory.token_multiple`). The LASP schemes are modelled
  for causal linear attention only (`--no-causal`, whose chunks would all take the total state, is refused), and
  their workload's attention is linear; a linear-attention workload runs them or ring's prefill (LASP-2's baseline)
  and no other scheme (`_check_attention_kind`). `lasp2h` (LASP-2H) runs a hybrid workload (`attention: hybrid`)
  and a hybrid workload runs nothing else: its linear layers as `lasp2`, its softmax layers as `allgather`
  (`HYBRID_SCHEMES`), causal only, N a multiple of 2P (allgather's zigzag chunks), the LASP rules on the head_dim and
  K/V heads and a softmax `kernel` for its softmax layers. Ulysses, Megatron-SP and usp cut each tp rank's heads
  over their degree (P; usp: u), which divides H and H_kv (Megatron-SP: or is a multiple of H_kv, each device
  keeping one KV head repeated over P / H_kv devices).
- A decode step (`direction: decode`) runs ring, megatron-sp or distattention at scope `attention`;
  distattention is a decode scheme only.
- `tp` puts each sequence-parallel rank's heads on tp devices of a node. A TP group lies inside a node (its
  all-reduces are timed over the innermost link): tp must divide the topology's devices per node, and the query
  heads; it divides the KV heads or is a multiple of them (each rank then keeps one KV head, repeated over
  tp / kv_heads ranks, as Megatron's tensor parallelism does). `check_tp` checks these alone, naming the field a
  caller gives: a tp a system file set is refused naming that file's field, not the caller's `tp`.
- `checkpointing` and `training_precision` set a training step (`TRAINING_SETS`): another value than the default
  needs direction fwd+bwd (`TRAINING_FIELDS`). `checkpointing` sets its memory and its time ("layer" recomputes each
  layer's forward before its backward, `seqpar._timing`); `training_precision` the memory only, so another value
  needs tp 1 too, where that memory is modelled (`MEMORY_ONLY`). The time is costed in 16-bit words at either
  precision (`check_workload`: the GPU kernels, the FFN's GEMMs and the blocks and states the schemes send are
  bf16's), so an fp32 step's time is a lower bound: its GEMMs would run at TF32 or FP32 rates and its activations
  travel in 4-byte words; mixed precision's bf16 compute is what is timed.
- On arrays (a topology's `device`, `topology.ArrayDevice`) only the forward's attention of the softmax prefills
  (`ARRAY_SCHEMES`) is modelled, with the arrays' mappings in place of a GPU kernel (`check_array`); a causal run
  needs the device's `causal_mapping` (`seqpar_compute.block_mapping`: every causal run has a diagonal block).

Errors are SpecErrors naming the field (`devices`, `seq_len`, `heads`, ...); a workload whose attention the GPU
kernels do not model (MLA's latent KV, a sliding window: `UNMODELLED_ATTENTION`) is refused rather than timed as
dense attention. A value that only some points model (`MODELLED`: the Ulysses degree, the prefill kernel, a
non-causal mask) is one that `archsim parallel` and a parallel sweep refuse when no point of theirs models it
(`unmodelled`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from archsim.arch.gpu import GPU
from archsim.errors import LimitError, SpecError, check_choice
from archsim.limits import env_limit
from archsim.model.gpu import refuse_other_word_bytes, refuse_unmodelled_attention
from archsim.model.gpu_baseline_plans import LIGHTNING_HEAD_DIMS
from archsim.model.gpu_kernels import kernel_attention
from archsim.systems import seqpar_memory as mem
from archsim.systems.gpu_device import refuse_workload_words
from archsim.systems.seqpar_compute import (
    DECODE_KERNEL,
    LINEAR_KERNEL,
    SOURCE,
    block_mapping,
    linear_head_dim,
)
from archsim.systems.sharding import kv_heads_per_device
from archsim.systems.step import block_of
from archsim.systems.system_checks import uncut_size
from archsim.systems.system_types import CONTEXT_PARALLEL_SCHEMES
from archsim.systems.topology import WORD_BYTES, ArrayDevice, Topology
from archsim.workload import Workload, refuse_linear_attention

LINEAR_SCHEMES = ("lasp1", "lasp2")
HYBRID_SCHEMES = mem.HYBRID_SCHEMES  # a hybrid model's scheme -> its layers' scheme by attention (LASP-2H)
LASP_SCHEMES = (*LINEAR_SCHEMES, *HYBRID_SCHEMES)  # whose chunks (on some layers) run LINEAR_KERNEL
# the softmax prefills (a context-parallel system's schemes), LASP's, and DistAttention's decode
SCHEMES = (*CONTEXT_PARALLEL_SCHEMES, *LASP_SCHEMES, "distattention")
DECODE_SCHEMES = ("ring", "megatron-sp", "distattention")
# the schemes whose blocks an array (`topology.ArrayDevice`) costs: the softmax prefills (`check_array`)
ARRAY_SCHEMES = CONTEXT_PARALLEL_SCHEMES
RING_SCHEMES = ("ring", "zigzag", "stripe")
DIRECTIONS = ("fwd", "fwd+bwd", "decode")
SCOPES = ("attention", "layer")
DEFAULT_KERNEL = "FlashAttention-2"
CHECKPOINTING = mem.CHECKPOINTING
TRAINING_PRECISIONS = tuple(mem.TRAINING_PRECISIONS)
# the fields of a training step and their defaults: another value needs direction fwd+bwd
TRAINING_FIELDS = {"checkpointing": mem.DEFAULT_CHECKPOINTING, "training_precision": mem.DEFAULT_PRECISION}
# what each sets (module docstring), and those that set the memory only: refused where it is not modelled (tp > 1)
TRAINING_SETS = {"checkpointing": "the training memory and the recomputed forward in the time",
                 "training_precision": "the training memory"}
MEMORY_ONLY = ("training_precision",)
MAX_DEVICES, MAX_DEVICES_ENV = 4096, "ARCHSIM_MAX_DEVICES"  # devices of one point: its per-device work is a loop


def attention_kernel(scheme: str, direction: str, kernel: str) -> str:
    """The kernel `scheme`'s attention runs at `direction`: LASP's chunks archsim's Lightning Attention-2
    (`LINEAR_KERNEL`), a decode step Flash-Decoding (`DECODE_KERNEL`), every other scheme's prefill `kernel` (a
    hybrid scheme's: its softmax layers', its linear layers running `LINEAR_KERNEL`)."""
    if scheme in LINEAR_SCHEMES:
        return LINEAR_KERNEL
    return DECODE_KERNEL if direction == "decode" else kernel


# field -> (whether a point of (scheme, direction) models the field's value, what the field sets): a value no point
# of a grid or sweep models is refused (`unmodelled`), a point that does not model it goes without it
MODELLED: dict[str, tuple[Callable[[str, str, Any], bool], str]] = {
    "ulysses": (lambda scheme, direction, value: scheme == "usp", "the Ulysses degree of usp"),
    "kernel": (lambda scheme, direction, value: attention_kernel(scheme, direction, value) == value,
               f"the softmax schemes' prefill kernel (a decode step runs {DECODE_KERNEL}, LASP's chunks "
               f"{LINEAR_KERNEL})"),
    "causal": (lambda scheme, direction, value: value or direction != "decode",
               "the prefill's mask (a decode step's one query attends every cached token: causal)"),
}


def unmodelled(field: str, values: Sequence[Any], points: Iterable[tuple[str, str]]) -> list[int]:
    """The indices of the `values` of `field` (`MODELLED`) that no (scheme, direction) of `points` models."""
    models = MODELLED[field][0]
    points = list(points)
    return [i for i, value in enumerate(values) if not any(models(*point, value) for point in points)]


@dataclass(frozen=True)
class ParallelSpec:
    """One sequence-parallel point: `scheme` over `devices` (P) devices of `gpu` on `topology`, each rank `tp`
    devices of a node, running `workload` on `batch` sequences of `seq_len` (N) tokens at `direction` and
    `scope` (module docstring: the rules `check_spec` enforces)."""

    scheme: str
    devices: int  # P: the sequence-parallel group
    workload: Workload
    seq_len: int  # N: tokens of each sequence
    gpu: GPU | ArrayDevice  # the devices: a GPU, or arrays through the analytical model (`check_array`)
    topology: Topology
    batch: int = 1  # sequences per step
    causal: bool = True
    direction: str = "fwd"
    scope: str = "attention"
    tp: int = 1  # tensor-parallel devices per sequence-parallel rank, inside a node
    ulysses: int | None = None  # usp: the Ulysses degree u (devices / u ring groups)
    kernel: str = DEFAULT_KERNEL
    # fwd+bwd only (`TRAINING_FIELDS`): activation checkpointing (the training memory, `seqpar._memory`, and the
    # recomputed forward, `seqpar._timing`) and the precision of the training memory
    checkpointing: str = mem.DEFAULT_CHECKPOINTING
    training_precision: str = mem.DEFAULT_PRECISION

    @property
    def block_tokens(self) -> int:
        """c: tokens per device."""
        return self.seq_len // self.devices

    @property
    def attention_kernel(self) -> str:
        """The kernel the scheme's attention runs (`attention_kernel`); on arrays, the mappings its blocks run."""
        if isinstance(self.gpu, ArrayDevice):
            return f"analytical model: {self.gpu.mappings}"
        return attention_kernel(self.scheme, self.direction, self.kernel)

    @property
    def label(self) -> str:
        return (f"{self.scheme} P{self.devices}{f' tp{self.tp}' if self.tp > 1 else ''} {self.workload.name} "
                f"N{self.seq_len} {'causal' if self.causal else 'full'} {self.direction} on {self.gpu.name}")


def check_workload(workload: Workload, memory: bool = True, layer: bool = False,
                   gpu: GPU | ArrayDevice | None = None) -> None:
    """Refuse a workload no scheme, P or N can run (`archsim parallel` checks it once, before its grid): a missing
    size, an attention the GPU kernels do not time (MLA's latent KV, a sliding window), a word size missing or
    other than the bf16 the attention kernels and the blocks and states the schemes send are costed in
    (`topology.WORD_BYTES`; in every direction and scope: one left out is not taken as 2), with `memory`
    (every direction but fwd+bwd at tp > 1, `seqpar._memory`) what the memory model cannot expand
    (`seqpar_memory.check_workload_sizes`), with `layer` (scope layer) a workload
    whose layer's other ops cannot be built (its block and word size), and with `gpu` a GPU an `ffn_word_bytes` its
    tensor cores do not compute (`gpu_device.refuse_workload_words`: 1-byte words at fp8, 2-byte at fp16), in every
    scope and direction: scope layer runs the FFN's GEMMs at it, the memory holds its weights at it, and a width no
    GPU computes is no FFN to train either (arrays, `ArrayDevice`, run no FFN and model no memory)."""
    params = workload.params
    for size in ("heads", "kv_heads", "head_dim", "hidden", "layers"):
        if size not in params:
            raise SpecError(workload.path, f"params.{size}", "missing: multi-device attention needs it")
    refuse_unmodelled_attention(params, workload.path, "params.{}".format,
                                "the schemes here cut dense multi-head or grouped-query attention over the devices "
                                "and time it with those GPU kernels, so this workload's times would be wrong")
    if memory:
        mem.check_workload_sizes(workload)
    if layer:
        block_of(workload, "the layer's other ops come from its block's cascades")
    if "word_bytes" not in params:
        raise SpecError(workload.path, "params.word_bytes", f"missing: expected {WORD_BYTES} (bf16), the words the "
                                                            "attention kernels, the blocks and states the schemes "
                                                            "send and the layer's other ops are costed in")
    refuse_other_word_bytes(params, workload.path, WORD_BYTES,
                            "(bf16, the papers' runs): the attention kernels and the blocks and states the schemes "
                            "send are costed in 16-bit words here, so {word_bytes:g}-byte times would be bf16's beside "
                            "{word_bytes:g}-byte memory")
    if isinstance(gpu, GPU):
        refuse_workload_words(gpu, workload)


def check_array(device: GPU | ArrayDevice, scheme: str, direction: str, scope: str, kernel: str) -> None:
    """On arrays (`device` an ArrayDevice; a GPU passes), refuse what has no array form (`seqpar_compute`'s
    "Arrays"): a SpecError naming the field, `direction` (fwd+bwd, decode), `scope` (layer), `scheme` (the LASP
    schemes, lasp2h, distattention: not in `ARRAY_SCHEMES`) or `kernel` (other than the default: an array's blocks
    run its mappings, no GPU kernel)."""
    if not isinstance(device, ArrayDevice):
        return
    on = f"not modelled on arrays ({device.name} through the analytical model)"
    if direction != "fwd":
        raise SpecError(SOURCE, "direction", f"{direction} is {on}: only the forward's attention blocks are; "
                                             "expected fwd")
    if scope != "attention":
        raise SpecError(SOURCE, "scope", f"{scope} (the layer's projections, FFN and norms) is {on}: expected "
                                         "attention")
    if scheme not in ARRAY_SCHEMES:
        raise SpecError(SOURCE, "scheme", f"{scheme} is {on}: expected one of {', '.join(ARRAY_SCHEMES)}")
    if kernel != DEFAULT_KERNEL:
        raise SpecError(SOURCE, "kernel", f"{kernel} is a GPU kernel: an array's blocks run its mappings "
                                          f"({device.mappings}); drop it")


def memory_modelled(direction: str, tp: int, device: GPU | ArrayDevice | None = None) -> bool:
    """Whether `seqpar._memory` models a point's memory: every direction but fwd+bwd at tp > 1, on a GPU (None: the
    device not known yet, taken as a GPU), not on arrays (`ArrayDevice.dram_bytes`: their outermost memory is
    unbounded)."""
    return not (direction == "fwd+bwd" and tp > 1) and not isinstance(device, ArrayDevice)


def max_devices() -> int:
    """The most devices of one point: `MAX_DEVICES`, or ARCHSIM_MAX_DEVICES where it is set."""
    return env_limit(MAX_DEVICES_ENV, MAX_DEVICES)


def check_spec(spec: ParallelSpec) -> None:
    """Refuse a point the models cannot time (module docstring): a SpecError naming the field. A topology is named
    by its name, not its file: a sweep stores the message as a point's reason, which holds no path."""
    check_choice("scheme", spec.scheme, SCHEMES)
    check_choice("direction", spec.direction, DIRECTIONS)
    check_choice("scope", spec.scope, SCOPES)
    _check_training_fields(spec)
    check_array(spec.gpu, spec.scheme, spec.direction, spec.scope, spec.kernel)
    if isinstance(spec.gpu, ArrayDevice):  # a causal run's diagonal blocks need the causal mapping
        block_mapping(spec.gpu, spec.causal)
    for name in ("devices", "seq_len", "batch", "tp"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(SOURCE, name, f"expected a whole number >= 1, got {value!r}")
    if not isinstance(spec.causal, bool):
        raise SpecError(SOURCE, "causal", f"expected true or false, got {spec.causal!r}")
    if spec.ulysses is not None and (isinstance(spec.ulysses, bool) or not isinstance(spec.ulysses, int)
                                     or spec.ulysses < 1):
        raise SpecError(SOURCE, "ulysses", f"expected a whole number >= 1 or None, got {spec.ulysses!r}")
    most_devices = max_devices()
    if spec.devices > most_devices:
        raise LimitError(SOURCE, "devices", f"expected at most {most_devices} (raise {MAX_DEVICES_ENV} for more), got "
                                            f"{spec.devices}")
    if spec.tp > 1 and spec.topology.capacity() is not None and spec.devices * spec.tp > spec.topology.capacity():
        unit = "arrays" if isinstance(spec.gpu, ArrayDevice) else "GPUs"
        raise SpecError(SOURCE, "devices", f"{spec.devices} devices x tp {spec.tp} = {spec.devices * spec.tp} {unit}, "
                                           f"beyond the {spec.topology.capacity()} of topology "
                                           f"{spec.topology.name!r}")
    spec.topology.check_devices(spec.devices * spec.tp, "devices", SOURCE)
    _check_tp_in_node(spec, SOURCE, "tp")
    if spec.direction == "decode":
        if spec.scheme not in DECODE_SCHEMES:
            raise SpecError(SOURCE, "scheme", f"decode runs {', '.join(DECODE_SCHEMES)} (head-parallel decode is "
                                              f"megatron-sp), got {spec.scheme!r}")
        if spec.scope != "attention":
            raise SpecError(SOURCE, "scope", "a decode step is timed for its attention only")
    elif spec.scheme == "distattention":
        raise SpecError(SOURCE, "direction", "distattention is a decode scheme: expected decode")
    p, n = spec.devices, spec.seq_len
    if spec.scheme == "usp" and (spec.ulysses is None or isinstance(spec.ulysses, bool)
                                 or not isinstance(spec.ulysses, int) or spec.ulysses < 1 or p % spec.ulysses):
        raise SpecError(SOURCE, "ulysses", f"usp needs the Ulysses degree: a divisor of devices {p}, got "
                                           f"{spec.ulysses!r}")
    multiple = token_multiple(spec)
    if n % multiple:
        cut = (f"2 x {p // spec.ulysses} zigzag chunks over its ring groups, each pair split over their "
               f"{spec.ulysses} devices" if spec.scheme == "usp" else f"{multiple} equal chunks over {p} devices")
        raise SpecError(SOURCE, "seq_len", f"{spec.scheme} cuts the sequence into {cut}: expected a multiple of "
                                           f"{multiple}, got {n}")
    if spec.scheme in LASP_SCHEMES and not spec.causal:
        hybrid = spec.scheme in HYBRID_SCHEMES
        raise SpecError(SOURCE, "causal", f"{spec.scheme} is modelled for causal {'hybrid' if hybrid else 'linear'} "
                                          f"attention (each chunk{' of its linear layers' if hybrid else ''} takes "
                                          "the prefix of the earlier chunks' states); non-causal is not: drop it")
    _check_attention_kind(spec)
    check_workload(spec.workload, memory_modelled(spec.direction, spec.tp, spec.gpu), spec.scope == "layer",
                   spec.gpu)
    _check_tp_cuts_heads(spec, SOURCE, "tp")
    params = spec.workload.params
    heads, kv_heads = int(params["heads"]) // spec.tp, kv_heads_per_device(int(params["kv_heads"]), spec.tp)
    degree = {"ulysses": p, "megatron-sp": p, "usp": spec.ulysses}.get(spec.scheme)
    # megatron-sp may repeat each KV head on degree / kv_heads devices (tensor parallelism's rule)
    field = None if degree is None else uncut_size({"heads": heads, "kv_heads": kv_heads}, degree,
                                                   ("heads", "kv_heads"), repeat_kv=spec.scheme == "megatron-sp")
    if field is not None:
        also = (" or dividing it (megatron-sp repeats a KV head)" if spec.scheme == "megatron-sp"
                and field == "kv_heads" else "")
        raise SpecError(spec.workload.path, f"params.{field}",
                        f"{spec.scheme} splits the heads over {degree} devices: expected {field} "
                        f"({heads if field == 'heads' else kv_heads} per tp rank) divisible by {degree}{also}")


def _check_training_fields(spec: ParallelSpec) -> None:
    """`checkpointing` and `training_precision` take their choices, and set a training step (`TRAINING_SETS`): a
    value other than the default needs direction fwd+bwd, and one that sets the memory only (`MEMORY_ONLY`) tp 1,
    where that memory is modelled (a SpecError naming the field)."""
    for name, choices in (("checkpointing", CHECKPOINTING), ("training_precision", TRAINING_PRECISIONS)):
        value = getattr(spec, name)
        check_choice(name, value, tuple(choices), SOURCE)
        if value != TRAINING_FIELDS[name] and spec.direction != "fwd+bwd":
            raise SpecError(SOURCE, name, f"sets {TRAINING_SETS[name]}: expected direction fwd+bwd, got "
                                          f"{spec.direction} (leave it {TRAINING_FIELDS[name]!r})")
        if value != TRAINING_FIELDS[name] and name in MEMORY_ONLY and not memory_modelled(spec.direction, spec.tp):
            raise SpecError(SOURCE, name, f"sets {TRAINING_SETS[name]}, which is not modelled at tp > 1: expected "
                                          f"tp 1, got {spec.tp} (leave it {TRAINING_FIELDS[name]!r})")


def token_multiple(spec: ParallelSpec) -> int:
    """What `seq_len` must be a multiple of (`seqpar_memory.token_multiple`, one set of rules for the timing and
    the memory)."""
    return mem.token_multiple(spec.scheme, spec.devices, causal=spec.causal, decode=spec.direction == "decode",
                              ulysses_degree=spec.ulysses)


def check_tp(spec: ParallelSpec, source: str = SOURCE, where: str = "tp") -> None:
    """The tp rules (module docstring) alone, a SpecError at `source`/`where`: `check_spec` checks them as the
    field `tp` (which `archsim parallel` names --tp); a caller whose tp a system file set checks them first with
    that file and field, as `System.blame` gives them (`parallelism.tp`, or a `by_workload` entry's), so the error
    names what the user wrote. tp is a whole number and the workload has its head counts (`check_workload`)."""
    _check_tp_in_node(spec, source, where)
    _check_tp_cuts_heads(spec, source, where)


def _check_tp_in_node(spec: ParallelSpec, source: str, where: str) -> None:
    """A tensor-parallel group lies inside a node (the TP all-reduces are timed over the innermost level's link):
    tp divides the devices of the topology's innermost level (any tp when that level is unbounded)."""
    node = spec.topology.span(0)
    if node is not None and node % spec.tp:
        raise SpecError(source, where, f"expected a divisor of the {node} devices per node of topology "
                                       f"{spec.topology.name!r} (a TP group inside a node), got {spec.tp}")


def _check_tp_cuts_heads(spec: ParallelSpec, source: str, where: str) -> None:
    """tp divides the query heads, and divides the KV heads or is a multiple of them (each rank then keeps one KV
    head, repeated over tp / kv_heads ranks)."""
    params = spec.workload.params
    if uncut_size(params, spec.tp, ("heads", "kv_heads")) is not None:
        raise SpecError(source, where, f"expected a divisor of heads {params['heads']:g} that divides kv_heads "
                                       f"{params['kv_heads']:g} or is a multiple of it (a KV head repeated over "
                                       f"tp / kv_heads devices), got {spec.tp}")


def single_device_scheme(scheme: str) -> str:
    """The scheme a one-device run of `scheme` is timed as: the prefill's one causal call (ring's P = 1 form, which
    pads nothing), LASP-2's for linear attention, a hybrid scheme's own (its parts' one-device runs: LASP-2's and
    allgather's, which gathers nothing)."""
    if scheme in HYBRID_SCHEMES:
        return scheme
    return "lasp2" if scheme in LINEAR_SCHEMES else "ring"


def _check_attention_kind(spec: ParallelSpec) -> None:
    """The LASP schemes run linear attention, so their workload's is linear (`Workload.attention`); a linear-attention
    workload runs them or Ring's prefill (LASP-2's baseline, costed as softmax blocks without the right-product
    trick), and no other scheme: those time softmax attention, so `kernel` (the softmax schemes' kernel) is not a
    linear-attention kernel. A hybrid scheme runs a hybrid workload, and a hybrid workload nothing else (its
    softmax layers take `kernel`, so that too is a softmax kernel). LASP's chunks run `LINEAR_KERNEL`, which holds a
    head of at most `max(LIGHTNING_HEAD_DIMS)` (the head_dim padded to a power of two, `linear_head_dim`), and the
    LASP cascades have a K/V head per query head, so a grouped-query linear or hybrid workload is refused for them."""
    workload = spec.workload
    if spec.scheme not in LINEAR_SCHEMES and spec.direction != "decode" and kernel_attention(spec.kernel) == "linear":
        raise SpecError(SOURCE, "kernel", f"{spec.kernel} computes linear attention (LASP's chunks run it); "
                                          f"expected a softmax attention kernel for {spec.scheme}")
    if spec.scheme in LINEAR_SCHEMES and workload.attention != "linear":
        hybrid = f"; a hybrid one runs {', '.join(HYBRID_SCHEMES)}" if workload.attention == "hybrid" else ""
        raise SpecError(workload.path, "attention", f"{spec.scheme} runs linear attention, but {workload.name} "
                                                    f"computes {workload.attention} attention (a workload of linear "
                                                    f"attention says attention: linear{hybrid})")
    if spec.scheme in HYBRID_SCHEMES and workload.attention != "hybrid":
        raise SpecError(workload.path, "attention", f"{spec.scheme} runs a hybrid model (linear layers as "
                                                    f"{HYBRID_SCHEMES[spec.scheme]['linear']}, softmax layers as "
                                                    f"{HYBRID_SCHEMES[spec.scheme]['softmax']}), but {workload.name} "
                                                    f"computes {workload.attention} attention (a hybrid workload "
                                                    "says attention: hybrid and softmax_every)")
    if spec.scheme in LASP_SCHEMES and linear_head_dim(int(workload.params.get("head_dim", 1))) is None:
        raise SpecError(workload.path, "params.head_dim", f"expected at most {max(LIGHTNING_HEAD_DIMS)} for "
                                                          f"{spec.scheme}: its chunks run {LINEAR_KERNEL}, one "
                                                          f"program per head, got {workload.params['head_dim']:g}")
    heads = workload.params.get("heads", 0)
    if spec.scheme in LASP_SCHEMES and workload.params.get("kv_heads", heads) != heads:
        raise SpecError(workload.path, "params.kv_heads",
                        f"{workload.params['kv_heads']:g} K/V heads for {heads:g} query heads: {spec.scheme}'s "
                        "cascades (lasp1- and lasp2-linear-attention) keep one d x d state per query head; states "
                        "of grouped K/V heads are not modelled")
    if spec.scheme not in LASP_SCHEMES and (spec.scheme != "ring" or spec.direction == "decode"
                                            or workload.attention == "hybrid"):
        refuse_linear_attention(workload, f"scheme {spec.scheme}"
                                + (" in decode" if spec.direction == "decode" else ""), spec.direction == "decode")
