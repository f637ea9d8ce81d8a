"""Rules across fields that a valid system obeys: what the spec alone makes impossible, or leaves unread
(`check_system`), and what depends on the parallel degrees a run uses or on its workload (`check_degrees`,
`check_against_workload`, `check_tp_group`). A system spec is read by `archsim.systems.system_spec` into the
types of `archsim.systems.system_types`; every error is a `SpecError` naming the file and the YAML path.

Checks of the whole spec (`check_system`, run by `system_from_dict`: `archsim check`, `load_system`, `with_fields`
and sweeps refuse alike). What the spec alone makes impossible for every workload, or leaves unread, is refused,
naming the field:
- placement rules: each is matched first (`System.device_for`) by some op, phase and Op/B (`_first_rules`): one
  that earlier rules shadow at every Op/B it covers is never read; a `faster` rule (`op_per_byte_below: faster`,
  the op where the models time it faster than on the device holding the weights) names another device than that
  one, which is never faster than itself, and no bank-pim, where one op alone is one request on one channel while
  a batch runs on every channel (`_check_faster_rules`);
- outside attention offloading decode attention runs where the weights are (`weight_holder`) or on a bank-pim or
  logic-pim device computing in that HBM; under it the rules name the compute device and the pool alone (the
  offload model knows two pools); with `expert_coprocessing` the device decode moe goes to at every Op/B (the xPU
  the experts are split with) is not a logic-pim;
- devices: each is read, named by a placement rule or the HBM a placed npu streams from; a placed npu needs
  exactly one bank-pim device (its HBM) and a placed bank-pim exactly one npu (its softmax's host; `companion`);
  a bank-pim's `channel_policy` is given only where a rule puts attention on it (`system_spec._placement`);
- a bank-pim runs decode attention alone (a rule that can put another op, or prefill attention, on one is refused
  as the bank-PIM's cost model refuses it) and has its npu's `count` (one PIM HBM per NPU); outside attention
  offloading and context parallelism a gpu, npu or chip has the weight holder's `count` (a rank holds one device of
  every kind, a logic-pim's `count` stacks: `rank_devices`, what a rank's price counts);
- a logic-pim's count x `external_bytes_per_s` covers the HBM bandwidth of the gpu or chip whose HBM its stacks
  are (`MEMORY_FIELDS`), and is not given beside neither (an interface to nothing: give `internal_bytes_per_s`); a
  logic-pim does not hold the weights (its stacks are the HBM of the device beside it), and its count x
  `capacity_bytes` is at most the HBM capacity of the gpu or chip holding them;
- attention offloading (ping-pong, staggered) needs `attention_pool`, the link named attention, and a memory-pool
  or chip device of attention_pool devices for decode attention, placed there by rules without `op_per_byte_below`
  (the pool is chosen once per model, not per op); the pool, and every memory-pool device, runs decode attention
  only: a rule giving it another op, or attention in every phase, is refused (`_check_pool_ops`); no other schedule
  reads `attention_pool`, a memory-pool device or the links named attention and attention_pool (the memory
  devices' NICs), so each is refused under one (a memory-pool device by its kind, whatever the rules put on it);
- a gpu or memory-pool device a rule puts attention on names its `attention_kernel` (`system_spec._placement`),
  and one that names it is given attention;
- some device runs ops of both phases (no prefill/decode disaggregation);
- `resident_weight_bytes` fits the SRAM of each npu a rule names (`_check_resident_sram`; which devices hold
  weights is the workload's, below);
- overlapped and sub-batch-interleaving need a rule that can put decode attention on a bank-pim device, as the
  blocked schedule's `attention_sync` does; without one they would run blocked and it is not read;
- co-processing needs attention placed on two devices, or `expert_coprocessing` (which needs a logic-pim device):
  otherwise it is the blocked schedule; `expert_tp` and `zipf_skew` are read only with `expert_coprocessing`
  (`expert_tp` also by the blocked schedule, whole experts per TP rank);
- `parallelism.cp` above 1 and the link named cp are read by a context-parallel schedule alone; that schedule
  needs one gpu device, without a per-action energy model or roofline timing, and a link named tp when a node
  holds more than one GPU (`_check_context_parallel`).
What depends on the degrees a run uses (`check_degrees`, at the workload's parallelism after `--tp`/`--pp`, a
sweep's axes and its `by_workload` entry: a TP group the node of the device holding the weights cannot hold; ep > 1
without the link named ep; with attention offloading, pp or ep other than 1 or compute devices other than
tp x replicas (`offload_replicas`); context-parallel, pp or ep other than 1, or tp x cp GPUs beyond a node without
the link named cp) or on the workload (TP against its heads, PP its layers, EP its experts, weights against
memory, the Op/B a threshold reads) is refused when the model is built: `check_against_workload(system, workload)`
refuses parallelism (`System.parallelism_for` the workload) that the workload's sizes cannot be cut by, a rule
that can put an op reading weights in the workload's cascades on a device whose memory the weights are not checked
against (`_check_weight_devices`), and `resident_weight_bytes` where a rule can put an op that reads weights in
the workload's cascades on a device other than an npu (`_check_resident_weights`), and a word size that a device
the rules may give an op does not compute (`_check_word_sizes`: the workload's field blamed, or an architecture
preset's). `archsim check` runs the
degree checks at the spec's own degrees too (`check_spec_degrees`: its top-level parallelism and each `by_workload`
entry), which a spec whose degrees `--tp` or a sweep overrides need not pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping

from archsim.cascade.bind import FFN_WORDS
from archsim.errors import SpecError
from archsim.memo import identity_cache, per_object
from archsim.outputs import capacity_text
from archsim.systems.chip_device import word_problem as chip_word_problem
from archsim.systems.gpu_device import ROOFLINE, kernel_word_problem
from archsim.systems.gpu_device import word_problem as gpu_word_problem
from archsim.systems.pim import word_problem as pim_word_problem
from archsim.systems.pim_device import placement_problem
from archsim.systems.step import PHASES, WEIGHTS, Step, block_of, layer_kinds, layer_ops, resident_tokens
from archsim.systems.system_types import (
    ATTENTION_LINK,
    CONTEXT_PARALLEL,
    CP_LINK,
    EP_LINK,
    GPU_KINDS,
    OFFLOAD_SCHEDULES,
    OP_KINDS,
    PIM_KINDS,
    TP_LINK,
    Device,
    Parallelism,
    System,
)
from archsim.systems.working_set import FFN_OPS
from archsim.workload import PARAMS, Workload

SPLIT_SCHEDULES = ("overlapped", "sub-batch-interleaving")  # they overlap a bank-PIM's decode attention with its host
POOL_KINDS = ("memory-pool", "chip")  # the kinds an offloading system's memory pool may be
# the link role of an offloading system's memory devices' NICs (`archsim.systems.offload`; the link named
# attention, the compute devices' NICs, when a spec names none)
ATTENTION_POOL_LINK = "attention_pool"
EXPERT_KEYS = ("expert_tp", "zipf_skew")  # co-processing keys read only with expert_coprocessing (+PE)
BLOCKED_EXPERT_KEYS = ("expert_tp",)  # of those, the ones the blocked schedule reads too (whole experts per rank)
# kind -> (the kind it works with, why): an NPU streams from the system's HBM, a bank-pim device (plain memory where
# no op is placed on it); a bank-PIM runs its softmax on the NPU's vector units (`archsim.systems.devices`)
COMPANIONS = {"npu": ("bank-pim", "streams from an HBM"),
              "bank-pim": ("npu", "runs its softmax on an NPU's vector units")}
# kind -> its preset's (capacity, bandwidth) fields of its memory: a gpu's or memory-pool's DRAM, a chip's HBM
MEMORY_FIELDS = {"gpu": ("dram_bytes", "dram_bytes_per_s"), "memory-pool": ("dram_bytes", "dram_bytes_per_s"),
                 "chip": ("memory_bytes", "memory_bytes_per_s")}
HBM_KINDS = ("gpu", "chip")  # the kinds whose HBM a logic-pim's stacks can be (pim.md §2.4: Duplex's xPU's HBM)


def hbm_devices(devices: Iterable[Device]) -> list[Device]:
    """The devices whose HBM a logic-pim's stacks are (`HBM_KINDS`: every gpu and chip of a spec), in order."""
    return [device for device in devices if device.kind in HBM_KINDS]


def hbm_bytes(device: Device) -> float:
    """The capacity of an `hbm_devices` device's HBM, its preset's `MEMORY_FIELDS` capacity field, in bytes."""
    return float(getattr(device.spec, MEMORY_FIELDS[device.kind][0]))


def hbm_bytes_per_s(device: Device) -> float:
    """The bandwidth of an `hbm_devices` device's HBM, its preset's `MEMORY_FIELDS` bandwidth field, in bytes/s."""
    return float(getattr(device.spec, MEMORY_FIELDS[device.kind][1]))


def tp_cuts_kv_heads(kv_heads: int, tp: int) -> bool:
    """Whether TP degree `tp` can cut `kv_heads` KV heads: it divides them, or is a multiple of them and each KV head
    is replicated over tp / kv_heads ranks (Megatron's tensor parallelism; `sharding.shard`)."""
    return kv_heads % tp == 0 or tp % kv_heads == 0


def uncut_size(params: Mapping[str, float], degree: int, sizes: Iterable[str], repeat_kv: bool = True) -> str | None:
    """The first of `sizes` that `params` gives and `degree` devices cannot cut evenly, None when they all cut: the
    degree divides each, or, with `repeat_kv` (tensor parallelism's rule, `tp_cuts_kv_heads`), divides the KV heads
    or is a multiple of them. The rule the system, sequence-parallel and memory checks of a head / FFN / expert
    cut read, each naming its own field."""
    for size in sizes:
        if size not in params:
            continue
        value = int(params[size])
        if not (tp_cuts_kv_heads(value, degree) if repeat_kv and size == "kv_heads" else value % degree == 0):
            return size
    return None


def check_against_workload(system: System, workload: Workload) -> None:
    """Refuse the parallelism the system uses for the workload (`System.parallelism_for`) if the workload cannot be
    cut by it: TP must divide heads, ffn_dim and dense_ffn_dim (a device holds 1/TP of each) and divide kv_heads or
    be a multiple of it (each KV head then replicated, `sharding.shard`), EP must divide the experts, and PP
    be at most the layers (stages of ceil or floor of layers / pp layers each, vLLM's default partition:
    `sharding.pp_partition`). The error names the degree's field (`parallelism.tp` or
    `parallelism.by_workload.<name>.tp`, or the option that set it: `System.blame`) and the workload's value, the
    workload by its name (`32 in llama3-8b`), not its file, whose path a sweep's stored reason must not hold; a size
    TP or PP needs that the workload lacks is blamed on the workload file. Then `schedule.resident_weight_bytes`
    against the ops that read weights in the workload (`_check_resident_weights`), and the devices those ops may
    run on (`_check_weight_devices`)."""
    par, params = system.parallelism_for(workload.name), workload.params
    cuts = (("tp", par.tp, ("heads", "kv_heads", "ffn_dim", "dense_ffn_dim"), ("heads",)),
            ("pp", par.pp, (), ("layers",)),
            ("ep", par.ep, ("experts",), ("experts",) if par.ep > 1 else ()))
    for field, degree, sizes, needed in cuts:
        source, where = system.blame(workload.name, field)
        for size in needed:
            if size not in params:
                param = PARAMS[size]
                raise SpecError(workload.path, f"params.{size}", f"missing: expected {param.meaning} (a whole number "
                                                                 f">= {param.minimum}), which {where or field} = "
                                                                 f"{degree} in {source} cuts")
        if field == "pp":
            if degree > params["layers"]:
                raise SpecError(source, where, f"expected at most layers ({params['layers']:g} in {workload.name}: "
                                               f"a stage holds at least one), got {degree}")
            continue
        size = uncut_size(params, degree, sizes)
        if size is not None:
            also = " or a multiple of it" if size == "kv_heads" else ""
            raise SpecError(source, where, f"expected a divisor of {size}{also} ({params[size]:g} in "
                                           f"{workload.name}), got {degree}")
    _check_resident_weights(system, workload)
    _check_weight_devices(system, workload)
    _check_word_sizes(system, workload)


# the words an npu's or logic-pim's GEMM units compute: 8-, 16- or 32-bit (fp8/int8, fp16/bf16, fp32), at one MAC
# a PE a cycle whatever the width (`archsim.systems.npu`'s assumption; their bytes stream at the width)
ARRAY_WORD_BYTES = (1, 2, 4)


def _check_word_sizes(system: System, workload: Workload) -> None:
    """Each device a rule may give an op (`_reachable`) computes the op's words: the workload's `word_bytes`, or
    for an FFN op (`FFN_OPS`) its `ffn_word_bytes` where given, by the device model's own rule (`_word_problem`).
    A width a device does not compute (3 bytes anywhere, 4 on a GPU) is refused naming the workload's field, the
    file that holds it, where the device's model would blame the system file when an op is costed; then an
    architecture whose preset's `word_bytes` is not its ops' is refused naming the preset's."""
    runs = []
    for op in OP_KINDS:
        name = FFN_WORDS if op in FFN_OPS and FFN_WORDS in workload.params else "word_bytes"
        devices = {d.name: d for phase in PHASES for d in _reachable(system, op, phase)}
        runs += [(device, name, op) for device in devices.values() if name in workload.params]
    for device, name, op in sorted(runs, key=lambda run: run[0].kind == "architecture"):
        word_bytes = workload.params[name]
        if device.kind == "architecture":
            if word_bytes != device.spec.word_bytes:
                raise SpecError(device.spec.source, "word_bytes",
                                f"expected {word_bytes:g} (the words of ops that devices.{device.name} of "
                                f"{system.source} runs: {workload.path}'s params.{name}), got {device.spec.word_bytes}")
            continue
        words = int(word_bytes) if float(word_bytes).is_integer() else word_bytes
        problem = _word_problem(device, words) or _kernel_word_problem(device, op, words, workload)
        if problem:
            raise SpecError(workload.path, f"params.{name}",
                            f"{device.kind} devices.{device.name} of {system.source} does not compute these words: "
                            f"{problem}")


def _kernel_word_problem(device: Device, op: str, word_bytes: int, workload: Workload) -> str | None:
    """Why a gpu or memory-pool device's attention kernel does not run the attention op in `word_bytes`-byte words
    (`gpu_device.kernel_word_problem`), or None: only where the kernel times it (calibrated timing; an MLA model's
    attention is a fused call of its own, `gpu_device.FUSED_DECODE_CASCADES`, not the kernel's)."""
    if (op != "attention" or device.kind not in GPU_KINDS or device.timing == ROOFLINE
            or "kv_lora_rank" in workload.params):
        return None
    return kernel_word_problem(device.attention_kernel, device.spec, word_bytes, device.kind == "memory-pool")


def _word_problem(device: Device, word_bytes: int) -> str | None:
    """Why `device` does not compute `word_bytes`-byte words, or None when it does, by its model's own rule: a
    gpu's tensor cores (`gpu_device.word_problem`), a chip's matrix units (`chip_device.word_problem`), a bank-pim's
    COMP (`pim.word_problem`); an npu's or logic-pim's arrays compute `ARRAY_WORD_BYTES`."""
    if device.kind in GPU_KINDS:
        return gpu_word_problem(device.spec, word_bytes)
    if device.kind == "chip":
        return chip_word_problem(device.spec, word_bytes)
    if device.kind == "bank-pim":
        return pim_word_problem(device.spec, word_bytes)
    if word_bytes in ARRAY_WORD_BYTES:
        return None
    return f"its arrays compute 8-, 16- or 32-bit words: expected 1, 2 or 4 bytes, got {word_bytes:g}"


def check_tp_group(system: System, workload_name: str, device: str, tp: int) -> None:
    """Refuse a TP group the spec's devices cannot hold. `count` is the devices of a node; the device holding the
    weights (the one the decode QKV projection runs on: a rank of the model is one of them) must hold a TP group
    of `tp` in one node where the TP all-reduce runs on the spec's `tp` link (a node's link: NVLink in every
    preset), tp <= count. Without a tp link TP's messages are not modelled and a group may span whole nodes, tp a
    multiple of count (NeuPIMs' GPT-3 175B, TP8 over nodes of 4 NeuPIMs devices). PP stages and EP groups are
    further nodes of the same make-up. The error names the device's `count`, or the option that set tp."""
    source, where = system.blame(workload_name, "tp")
    count = system.devices[device].count
    linked = TP_LINK in system.links
    if tp <= count or (not linked and tp % count == 0):
        return
    why = (f"a TP group in one node: its all-reduce runs on the node's link {TP_LINK}" if linked else
           "a TP group over whole nodes")
    if not where:  # an option set tp
        bound = f"at most {count}" if linked else f"at most {count} or a multiple of it"
        raise SpecError(source, where, f"expected {bound} ({why}; {system.name} has {count} {device} devices per "
                                       f"node, devices.{device}.count in {system.source}), got {tp}")
    bound = f"at least {tp}" if linked else f"at least {tp} or a divisor of it"
    raise SpecError(system.source, f"devices.{device}.count",
                    f"expected {bound} ({why}; {where} = {tp}), got {count}")


def companion(system: System, device: Device) -> Device:
    """The one device an npu or bank-pim `device` works with (`COMPANIONS`: an NPU's HBM, a bank-PIM's host NPU); a
    SpecError naming the device when the system has none of that kind, or several."""
    kind, why = COMPANIONS[device.kind]
    found = [d for d in system.devices.values() if d.kind == kind]
    if len(found) != 1:
        raise SpecError(system.source, f"devices.{device.name}",
                        f"a {device.kind} device {why}: the system needs exactly one {kind} device, has {len(found)}")
    return found[0]


def check_system(system: System) -> None:
    """Refuse what the spec alone makes impossible for every workload, or leaves unread, naming the field (the
    module docstring's "Checks of the whole spec"). `system_from_dict` runs it, so `archsim check` and every
    loader (`load_system`, `with_fields`, sweeps) refuse the same specs. The parallel degrees (`check_degrees`: a
    TP group against its node, ep against its link, offloading's counts) are checked when a model is built, at the
    degrees it runs: `--tp`/`--pp`, a sweep's axes or the workload's `by_workload` entry may set them, and a
    `by_workload` entry for a model never run is not read; so is what depends on the workload (TP against its
    heads, weights against memory) (`archsim.systems.models.system_model`); `archsim check` runs the degree checks
    at the spec's own degrees too (`check_spec_degrees`)."""
    _check_rules_reached(system)
    _check_one_engine(system)
    _check_offloading(system)
    _check_logic_pim_memory(system)  # before _check_decode_attention_host, which takes the holder it finds
    _check_faster_rules(system)  # after it: a logic-pim holding the weights is the error to name first
    _check_decode_attention_host(system)
    _check_context_parallel(system)
    _check_split_schedule(system)
    _check_coprocessing(system)
    _check_devices_read(system)
    _check_kernels_read(system)
    _check_bank_pims(system)
    _check_device_counts(system)
    _check_logic_pim_interface(system)
    _check_resident_sram(system)


def check_degrees(system: System, par: Parallelism, holder: Device | None,
                  blame: Callable[[str], tuple[str, str]]) -> None:
    """Refuse parallel degrees the system cannot run whatever the workload (the TP group against its node is
    `check_tp_group`'s, run as the model is built): ep > 1 without the link named ep; and with attention offloading
    (`OFFLOAD_SCHEDULES`) pp or ep other than 1, or other than tp x `offload_replicas` devices of `holder`, the
    device that holds the weights (None where it is not known). `blame(degree)` is the (source, where) of a
    degree: the spec's field, or the option that set it (`System.blame`)."""
    if par.ep > 1 and EP_LINK not in system.links:
        source, where = blame("ep")
        raise SpecError(system.source, f"links.{EP_LINK}", f"missing: {where or source} = {par.ep} exchanges each "
                                                           "MoE layer's tokens between the expert-parallel groups "
                                                           "over a link named ep")
    kind = system.schedule.kind
    if kind == CONTEXT_PARALLEL:
        _check_context_parallel_degrees(system, par, blame)
    if kind not in OFFLOAD_SCHEDULES:
        return
    if par.pp != 1:
        raise SpecError(*blame("pp"), f"expected 1: pipeline stages are not modelled with attention offloading, "
                                      f"got {par.pp}")
    if par.ep != 1:
        raise SpecError(*blame("ep"), f"expert parallelism with attention offloading ({kind}) is not modelled: "
                                      "expected ep 1")
    micro_batches = offload_micro_batches(system)
    replicas = offload_replicas(micro_batches)
    if holder is None or holder.count == par.tp * replicas:
        return
    source, where = blame("tp")
    rule = "micro_batches - 1 replicas" if micro_batches > 1 else offload_replicas_text(micro_batches)
    if where:  # the spec's own tp
        raise SpecError(system.source, f"devices.{holder.name}.count",
                        f"expected tp x replicas = {par.tp} x {replicas} = {par.tp * replicas} compute devices "
                        f"({rule}), got {holder.count}")
    raise SpecError(source, where, f"expected devices.{holder.name}.count / replicas = {holder.count} / "
                                   f"{replicas} ({rule}, {system.source}), got {par.tp}")


def offload_micro_batches(system: System) -> int:
    """The micro-batches of an offloading schedule: a staggered one's `micro_batches`, ping-pong's two."""
    return system.schedule.micro_batches or 2


def offload_replicas(micro_batches: int) -> int:
    """The compute replicas `micro_batches` micro-batches run on: n - 1 for n >= 2 (Lamina's rotational staggered
    pipelining, pim.md §3.4: one micro-batch's attention on the pool while the others' dense work fills the
    replicas); one for one micro-batch, which then waits for its own attention (no pipelining: AttAcc, §4.1)."""
    return max(micro_batches - 1, 1)


def offload_replicas_text(micro_batches: int) -> str:
    """`3 micro-batches on 2 replicas`: `micro_batches` and the replicas they run on (`offload_replicas`)."""
    replicas = offload_replicas(micro_batches)
    return (f"{micro_batches} micro-batch{'es' if micro_batches > 1 else ''} on {replicas} "
            f"replica{'s' if replicas > 1 else ''}")


def check_spec_degrees(system: System) -> None:
    """Refuse the spec's own degrees (its top-level `parallelism` and each `by_workload` entry) that every run at
    them refuses whatever the workload, with the messages a model built at them gives (`system_model`'s order:
    `check_degrees` without the holder, `check_tp_group`, then offloading's count of the holder): what `archsim
    check` adds to `check_system`, which a spec that `--tp`, a sweep's axes or a `by_workload` entry overrides
    must pass."""
    holder = weight_holder(system)
    # "" names no workload: `System.blame` then names the top-level parallelism's fields
    for name, par in (("", system.parallelism), *system.parallelism.by_workload.items()):
        blame = functools.partial(system.blame, name)
        check_degrees(system, par, None, blame)
        check_tp_group(system, name, holder.name, par.tp)
        check_degrees(system, par, holder, blame)


def _check_context_parallel_degrees(system: System, par: Parallelism,
                                    blame: Callable[[str], tuple[str, str]]) -> None:
    """A context-parallel system runs pp 1 and ep 1, and its tp x cp GPUs beyond one node talk over the link named
    cp."""
    for degree in ("pp", "ep"):
        if getattr(par, degree) != 1:
            raise SpecError(*blame(degree), f"expected 1: a {CONTEXT_PARALLEL} system runs tp x cp GPUs, no pipeline "
                                            f"stages or expert groups, got {getattr(par, degree)}")
    count = context_parallel_gpu(system).count
    if par.tp * par.cp > count and CP_LINK not in system.links:
        raise SpecError(system.source, f"links.{CP_LINK}", f"missing: tp x cp = {par.tp} x {par.cp} GPUs span nodes "
                                                           f"of {count}, which talk over it")


def _check_devices_read(system: System) -> None:
    """Every device must be read: one a placement rule names, the HBM a placed NPU streams from, or a logic-pim
    (its stacks are the HBM of the device beside it, whose memory they bound, and +PE splits experts onto it
    whatever the placement); a placed npu or bank-pim needs its companion (`companion`). Every rule is read here:
    one that no op reaches first, whose device would run nothing, was refused (`_check_rules_reached`)."""
    placed = [system.devices[name] for name in dict.fromkeys(rule.device for rule in system.placement)]
    read = ({d.name for d in placed} | {companion(system, d).name for d in placed if d.kind in COMPANIONS}
            | {name for name, d in system.devices.items() if d.kind == "logic-pim"})
    for name, device in system.devices.items():
        if name not in read:
            raise SpecError(system.source, f"devices.{name}", f"no placement rule puts an op on this {device.kind} "
                                                              "device and no other device reads it: expected a "
                                                              "rule naming it, or remove it")


def _check_rules_reached(system: System) -> None:
    """A rule is read only for the (op, phase, Op/B) it matches first (`System.device_for`): one that no (op,
    phase) reaches first at any Op/B (`_first_rules`: the rules before it take all of its ops at every Op/B its
    threshold covers, a rule without a threshold first among them) would be ignored, and the device it names run
    nothing under it (yet be priced and drawn static power as a placed device), so it is refused."""
    reached = {i for op in OP_KINDS for phase in PHASES for i in _first_rules(system, op, phase)}
    for i, rule in enumerate(system.placement):
        if i in reached:
            continue
        below = rule.op_per_byte_below
        covers = ("at every Op/B" if below is None else "wherever it runs faster there" if rule.faster
                  else f"below Op/B {below:g}")
        before = [f"placement[{j}]" for j, earlier in enumerate(system.placement[:i])
                  if set(earlier.ops) & set(rule.ops) and (None in (earlier.phase, rule.phase)
                                                          or earlier.phase == rule.phase)
                  and (earlier.op_per_byte_below is None
                       or (below is not None and not earlier.faster and earlier.op_per_byte_below >= below))]
        raise SpecError(system.source, f"placement[{i}]",
                        f"never matched first: the rules before it ({', '.join(before)}) already take each of its ops "
                        f"({', '.join(rule.ops)}) {covers}, so it would be ignored and {rule.device} run nothing "
                        "under it; remove it, or move it before them")


def _check_faster_rules(system: System) -> None:
    """A `faster` rule takes an op where the models time it faster on the rule's device than on the device holding
    the weights (`weight_holder`, `system_model.runs_faster`, each op timed alone), so it is refused:
    - naming that device, which would never match;
    - naming a bank-pim: one op there is one request's attention on one of its channels (pinned by its
      `channel_policy`) while the batch's other requests run on the others at once, and the holder reads it over
      the whole HBM, so the op alone compares one channel with the whole memory: neupims given `faster` kept GPT-3
      7B's 256 x 1024 decodes on its NPU, 40.0 ms an iteration, where the PIM runs them in 7.4 ms. A comparison at
      the batch's level would place a batch, not an op, which the per-op placement does not model (a Logic-PIM's
      stacks all work on each op, so one op alone is how it runs)."""
    holder = weight_holder(system)
    for i, rule in enumerate(system.placement):
        if not rule.faster:
            continue
        where = f"placement[{i}].op_per_byte_below"
        if rule.device == holder.name:
            raise SpecError(system.source, where,
                            f"faster compares an op's time on the rule's device with its time on {holder.name}, the "
                            "device holding the weights, and this rule names that device: it would never match; "
                            "name the device to weigh against it, or give the threshold as a number or crossover")
        device = system.devices[rule.device]
        if device.kind == "bank-pim":
            raise SpecError(system.source, where,
                            f"faster times one op alone on each unit, and on bank-pim {device.name} one op is one "
                            f"request's attention on one of its {device.spec.channels} channels, while {holder.name} "
                            "reads it over the whole HBM and the batch's other requests run on the other channels at "
                            "once, so one op alone is not how a batch runs there (neupims given it kept its decode "
                            "attention on the NPU, 5.4x slower); give the threshold as a number, or drop it")


def _check_decode_attention_host(system: System) -> None:
    """Outside attention offloading (`OFFLOAD_SCHEDULES`) decode attention reads the KV cache where the weights
    are (`weight_holder`: the model sizes the cache by that device's memory and count, and sends no q, k, v or
    output anywhere): it may run there, or on a bank-pim or logic-pim device, which computes in that HBM. On a
    second device of another kind (a gpu beside the GPUs holding the weights) its count, its memory and the
    traffic to it would be ignored, so a rule that can put decode attention there is refused (a memory-pool is
    refused under these schedules by `_check_offloading`)."""
    kind = system.schedule.kind
    if kind in OFFLOAD_SCHEDULES:
        return
    holder = weight_holder(system)
    for i in _first_rules(system, "attention", "decode"):
        device = system.devices[system.placement[i].device]
        if device.name == holder.name or device.kind in PIM_KINDS:
            continue
        raise SpecError(system.source, f"placement[{i}].device",
                        f"puts decode attention on {device.name} ({device.kind}), which is neither {holder.name}, "
                        "the device holding the weights and the KV cache (the decode qkv runs there), nor a "
                        f"bank-pim or logic-pim device computing in its HBM: under a {kind} schedule {device.name}'s "
                        "count, memory and the q, k, v and output sent to it would be ignored; expected "
                        f"{holder.name}, or attention offloading ({' or '.join(OFFLOAD_SCHEDULES)}) to a memory pool")


def apart_from_weights(system: System) -> dict[str, tuple[str, ...]]:
    """Outside attention offloading (`OFFLOAD_SCHEDULES`, whose messages cross the link named attention), the
    devices other than `weight_holder` that the placement may put an op on (at some Op/B), each with the ops, as
    `op (phase)`, and not a bank-pim or logic-pim, which computes in the holder's HBM: such a device has a memory of
    its own, and the activations its ops read from the holder's ops and return to them cross between the two over
    no link a schedule models (decode attention there is refused, `_check_decode_attention_host`; a prompt's
    attention on an architecture device is allowed). `system_messages.untimed_messages` lists them."""
    if system.schedule.kind in OFFLOAD_SCHEDULES:
        return {}
    holder = weight_holder(system)
    apart: dict[str, list[str]] = {}
    for op in OP_KINDS:
        for phase in PHASES:
            for device in _reachable(system, op, phase):
                if device.name != holder.name and device.kind not in PIM_KINDS:
                    apart.setdefault(device.name, []).append(f"{op} ({phase})")
    return {name: tuple(ops) for name, ops in apart.items()}


def _check_kernels_read(system: System) -> None:
    """A device's `attention_kernel` is read for attention alone: one no placement rule gives attention is refused
    (after the placement's own checks, which say what is wrong with where attention went)."""
    given = {rule.device for rule in system.placement if "attention" in rule.ops}
    for name, device in system.devices.items():
        if device.attention_kernel is not None and name not in given:
            raise SpecError(system.source, f"devices.{name}.attention_kernel",
                            "read only for attention, which no placement rule puts on this device: it would be "
                            "ignored; remove it or place attention on the device")


def _check_one_engine(system: System) -> None:
    """Every schedule runs prefill and decode in one iteration of one engine, which holds the KV cache of both:
    a placement in which no device runs ops of both phases (prefill/decode disaggregation, Splitwise's or
    DistServe's) would need two serving instances and the KV cache's migration between them over a link, which
    are not modelled; it is refused rather than costed as one engine with free KV transfer."""
    devices = {phase: {d.name for op in OP_KINDS for d in _reachable(system, op, phase)} for phase in PHASES}
    prefill, decode = (devices[phase] for phase in PHASES)
    if not prefill & decode:
        raise SpecError(system.source, "placement",
                        f"prefill runs on {', '.join(sorted(prefill))} and decode on {', '.join(sorted(decode))}, no "
                        "device running both: prefill/decode disaggregation is not modelled (it needs two serving "
                        "instances and a KV-migration link); expected a device that runs ops of both phases")


def _check_bank_pims(system: System) -> None:
    """A bank-PIM runs decode attention's GEMVs alone: a rule that can put another op on one is refused by the
    check its cost model runs on every op (`pim_device.placement_problem`); its count is `_check_device_counts`'."""
    decided: set[tuple[str, str]] = set()  # (op, phase) a rule without an Op/B threshold placed before
    for i, rule in enumerate(system.placement):
        for op in rule.ops:
            for phase in (rule.phase,) if rule.phase else PHASES:
                if (op, phase) in decided:
                    continue
                if rule.op_per_byte_below is None:
                    decided.add((op, phase))
                problem = placement_problem(op, phase) if system.devices[rule.device].kind == "bank-pim" else None
                if problem:
                    raise SpecError(system.source, f"placement[{i}]", problem)


RANKED_KINDS = ("gpu", "npu", "chip")  # kinds whose `count` is the weight holder's under a ranked schedule


def rank_devices(device: Device) -> int:
    """How many of the spec's `device` one rank of an engine holds (`SystemModel`: TP x PP x EP ranks, whose price,
    static power and board power count this many of each device; `price_per_hour` is one such device's): a
    logic-pim's `count`, its stacks per xPU (pim.md §2.4, the spec's "a Logic-PIM's is its stacks per xPU"); one of
    every other kind. A bank-pim's `count` is its NPU's (one PIM HBM per NPU, with all its channels), a gpu's, npu's
    or chip's the weight holder's, its devices per node (`_check_device_counts`); an architecture device's `count`
    is not read (a rank holds one array). Attention offloading (`archsim.systems.offload`) and a context-parallel
    system count their own devices (a pool's `count`, tp x replicas; cp ranks of tp)."""
    return device.count if device.kind == "logic-pim" else 1


def _check_device_counts(system: System) -> None:
    """A device's `count` that the model would not read as given is refused, naming the count it reads:
    - a bank-PIM's is its NPU's: one PIM HBM per NPU (the presets' "one PIM HBM per NeuPIMs device"), each NPU
      streaming from and softmaxing for its own; the model reads the NPU's count alone;
    - a gpu's, npu's or chip's is the weight holder's: one engine's ranks (TP x PP x EP) each hold one device of
      every kind but a logic-pim (`rank_devices`: `SystemModel.static_w`, `price_per_hour` and `board_w` count them
      so), so another count would be read as one a rank (a lone auxiliary GPU charged at every rank's static power,
      price and board power). Attention offloading's pool and a context-parallel system count their own devices; a
      Logic-PIM's count is its stacks per xPU, each priced."""
    ranked = system.schedule.kind not in (*OFFLOAD_SCHEDULES, CONTEXT_PARALLEL)
    for device in system.devices.values():
        if device.kind == "bank-pim":  # one npu: `_check_devices_read` refused a bank-pim without it
            reads, why = companion(system, device), "one PIM HBM per NPU"
        elif device.kind in RANKED_KINDS and ranked:
            reads, why = weight_holder(system), ("each rank holds one device of every kind (its static power, price "
                                                 "and board power are counted a rank)")
        else:
            continue
        if device.count != reads.count:
            raise SpecError(system.source, f"devices.{device.name}.count",
                            f"expected {reads.count}, devices.{reads.name}.count: {why}, got {device.count}")


def _check_logic_pim_interface(system: System) -> None:
    """A logic-pim's stacks are the HBM of the gpu or chip beside it (`hbm_devices`: Duplex's xPU, pim.md §2.4),
    which streams at its own preset's bandwidth (`MEMORY_FIELDS`): count x `external_bytes_per_s`, what the stacks
    give it over the interposer (an HBM3 stack's unset, `LogicPIMSpec`), must cover it, beside a chip as beside a
    gpu. Beside neither the field is an interface to nothing: it would set only `internal_bytes_per_s` (4x,
    `LogicPIMSpec`), which is then to be given itself, so it is refused."""
    hbms = hbm_devices(system.devices.values())
    for device in system.devices.values():
        if device.kind != "logic-pim":
            continue
        where = f"devices.{device.name}.external_bytes_per_s"
        if not hbms and "external_bytes_per_s" in system.data["devices"][device.name]:
            raise SpecError(system.source, where, "the stacks' interface to the gpu or chip whose HBM they are, and "
                                                  "the system has no gpu or chip: remove it, and give "
                                                  "internal_bytes_per_s, the bandwidth the logic die reads, where it "
                                                  "is not 4x an HBM3 stack's")
        supplied = device.count * device.spec.external_bytes_per_s
        for hbm in hbms:
            needed = hbm_bytes_per_s(hbm)
            if supplied < needed:
                raise SpecError(system.source, where,
                                f"expected count x external_bytes_per_s at least {hbm.name}'s "
                                f"{MEMORY_FIELDS[hbm.kind][1]} ({needed:g}): the stacks are its HBM, and it streams at "
                                f"its preset's bandwidth (change the preset to model a slower {hbm.kind}), got "
                                f"{device.count} x {device.spec.external_bytes_per_s:g}")


def _check_logic_pim_memory(system: System) -> None:
    """A logic-pim's stacks are the HBM of the device beside it (Duplex's xPU, pim.md §2.4): the model counts them as
    the memory of the device holding the weights (`weight_holder`), each of its TP x PP x EP ranks with one device
    entry of every kind (`system_model.held_memory_bytes`, `SystemModel.price_per_hour`). So:
    - a logic-pim does not hold the weights itself (the rule giving it the decode qkv at every Op/B is refused; one
      by `op_per_byte_below` may send small batches there): its `count` would be read both as the stacks of a rank
      (their capacity, compute and price) and as the devices of a node bounding tp (`check_tp_group`), so 32 stacks
      at tp 32 held 1024 stacks' memory priced as 32 devices;
    - beside a gpu or chip holding the weights its stacks hold at most that device's HBM (`MEMORY_FIELDS`: a gpu's
      `dram_bytes`, a chip's `memory_bytes`; count x capacity_bytes: the model takes the smaller, so a larger
      capacity would not be read)."""
    holder = weight_holder(system)
    if holder.kind == "logic-pim":
        i = _first_rules(system, "qkv", "decode")[-1]
        hbms = hbm_devices(system.devices.values())
        beside = f"the {hbms[0].kind} whose HBM they are" if hbms else (
            "a gpu device or a chip, whose HBM they are (the system has neither)")
        raise SpecError(system.source, f"placement[{i}].device",
                        f"puts the decode qkv at every Op/B on logic-pim {holder.name}, making it the device that "
                        f"holds the weights: a logic-pim's stacks are the HBM of the device beside it (pim.md §2.4), "
                        f"and its count is stacks per rank, not devices per node; expected {beside}, with "
                        "op_per_byte_below on a rule sending small batches' qkv to the logic-pim")
    if holder.kind not in HBM_KINDS:
        return
    held_bytes = hbm_bytes(holder)
    for device in system.devices.values():
        stacks_bytes = device.count * device.spec.capacity_bytes if device.kind == "logic-pim" else 0.0
        # isclose: an unset capacity is the HBM's over count, which times count may round above it
        if stacks_bytes > held_bytes and not math.isclose(stacks_bytes, held_bytes):
            raise SpecError(system.source, f"devices.{device.name}.capacity_bytes",
                            f"expected count x capacity_bytes at most {holder.name}'s {MEMORY_FIELDS[holder.kind][0]} "
                            f"({capacity_text(held_bytes)}, its preset's memory): the stacks are its HBM, and the "
                            f"model holds no more than it, got {device.count} x "
                            f"{capacity_text(device.spec.capacity_bytes)} = {capacity_text(stacks_bytes)}")


def _check_resident_sram(system: System) -> None:
    """`schedule.resident_weight_bytes` (sub-batch interleaving) are one device's weights that stay on chip for the
    second sub-batch (`system_model.layer_phases`), in an npu's SRAM: they must fit the `sram_bytes` of each npu a
    rule names (the activations beside them are not counted: `archsim.systems.npu`). Which ops read weights comes
    from the workload's cascades, so the kind of the devices holding them is checked with the workload
    (`_check_resident_weights`). Without one this bound is already exact: such a system has one npu (its
    bank-PIM's host, `companion`), and every decoder layer reads weights (its projections' cascades hold them), so
    an npu whose SRAM is too small either holds some or leaves them all to another kind, refused with any
    workload."""
    kept = system.schedule.resident_weight_bytes
    if kept == 0:
        return
    for name in dict.fromkeys(rule.device for rule in system.placement):
        device = system.devices[name]
        if device.kind == "npu" and kept > device.spec.sram_bytes:
            raise SpecError(system.source, "schedule.resident_weight_bytes",
                            f"expected at most devices.{name}.sram_bytes = {device.spec.sram_bytes:.15g} (the SRAM "
                            f"the weights kept between sub-batches stay in; a rule puts ops on {name}), got "
                            f"{kept:.15g}")


@identity_cache(maxsize=64)
def _check_resident_weights(system: System, workload: Workload) -> None:
    """`schedule.resident_weight_bytes` are kept on chip by every device a rule can put an op that reads weights
    on (`_weight_ops` of the workload, in that op's phase): each must be an npu, whose SRAM `_check_resident_sram`
    bounded; another kind has no SRAM size in its spec to keep them in. An attention op reads weights only where
    its cascade holds them (multi-head latent attention's WUK and WUV), so where attention may run is checked for
    such a workload alone; a dense layer's ffn only in a workload with dense layers. A pass is remembered per
    (system, workload) objects: building a model of the same pair again costs a look-up."""
    kept = system.schedule.resident_weight_bytes
    if kept == 0:
        return
    for phase, op, cascade in _weight_ops(workload):
        for device in _reachable(system, op, phase):
            if device.kind != "npu":
                raise SpecError(system.source, "schedule.resident_weight_bytes",
                                f"expected 0: {device.name}, which a rule can put {op} on, is a {device.kind} device "
                                f"with no SRAM size in its spec to keep weights in ({op} reads weights in "
                                f"{workload.name}'s {phase}: {cascade}), got {kept:.15g}")


@identity_cache(maxsize=64)
def _check_weight_devices(system: System, workload: Workload) -> None:
    """The weights are held by one device kind (`weight_holder`): the model checks its memory against the
    per-device weights and cuts them by its TP group. A rule that can put an op reading weights in the workload's
    cascades (`_weight_ops`, in that op's phase) on another device would run it there with that device's memory
    never checked against them (24 GB RTX 4090s running a 70B model's prefill projections), so it is refused,
    unless that device computes in the holder's HBM (a logic-pim: its stacks; a bank-pim: an NPU's PIM HBM) or is
    an architecture device, whose analytical model refuses an op whose tensors do not fit one of its memories
    (`archsim.systems.architecture_device`; its outer memory is unbounded where its spec gives no capacity).
    Under attention offloading the memory pool runs decode attention, whose cascade may read weights (multi-head
    latent attention's up-projections): `archsim.systems.offload` models that pool. A pass is remembered per
    (system, workload) objects."""
    holder = weight_holder(system)
    pool = _decided(system, "attention", "decode") if system.schedule.kind in OFFLOAD_SCHEDULES else None
    for phase, op, cascade in _weight_ops(workload):
        for i in _first_rules(system, op, phase):
            device = system.devices[system.placement[i].device]
            if device.name == holder.name or device.kind in ("bank-pim", "logic-pim", "architecture"):
                continue
            if pool is not None and device.name == pool.name and (op, phase) == ("attention", "decode"):
                continue
            raise SpecError(system.source, f"placement[{i}].device",
                            f"can put {op} in {phase} on {device.name}, and {op} reads weights in {workload.name} "
                            f"({cascade}), which {holder.name} holds (the decode qkv runs there) and whose memory "
                            f"alone is checked against them: {device.name}'s memory would never be; expected "
                            f"{holder.name}, or a logic-pim or bank-pim device computing in its HBM")


@per_object(maxsize=64)
def _weight_ops(workload: Workload) -> tuple[tuple[str, str, str], ...]:
    """(phase, op, cascade) of each op of the workload's decoder layers that reads weights: its weight bytes
    (`Op.bytes_by_role`, by the cascade's `step.ROLES`) are above zero in `layer_ops` of its phase, over every
    layer kind (`layer_kinds`). Bound to a step of `resident_tokens` requests of one token each, which reaches
    every expert; whether an op reads weights does not depend on the step's sizes. Remembered per workload
    object."""
    block = block_of(workload, "which of its ops read weights comes from its block's cascades")
    found: dict[tuple[str, str], str] = {}
    for phase in PHASES:
        step = Step(phase, resident_tokens(workload), 1)
        for kind in dict.fromkeys(layer_kinds(workload)):
            for op in layer_ops(workload, step, block, kind):
                if op.bytes_by_role[WEIGHTS] > 0:
                    found.setdefault((phase, op.name), op.cascade)
    return tuple((phase, op, cascade) for (phase, op), cascade in found.items())


def _check_offloading(system: System) -> None:
    """`parallelism.attention_pool`, a memory-pool device and the links named attention and attention_pool are
    read by attention offloading alone (`OFFLOAD_SCHEDULES`): under another schedule decode attention placed on a
    memory pool would run as on a GPU beside the compute devices (the KV cache on them, the pool's count, memory and
    links unread), so each is refused there. Offloading needs the first three (the link attention_pool is optional):
    the pool (`POOL_KINDS`) of attention_pool devices that the placement puts decode attention on, whatever its Op/B
    (`_check_pool_rules`; `archsim.systems.offload`)."""
    kind, pool = system.schedule.kind, system.parallelism.attention_pool
    if kind not in OFFLOAD_SCHEDULES:
        needs = f"attention offloading, which needs a {' or '.join(OFFLOAD_SCHEDULES)} schedule; this one is {kind}"
        if pool is not None:
            raise SpecError(system.source, "parallelism.attention_pool",
                            f"read only by attention offloading ({', '.join(OFFLOAD_SCHEDULES)}), which a {kind} "
                            "schedule is not: it would be ignored; remove it or offload attention")
        for device in system.devices.values():
            if device.kind == "memory-pool":
                raise SpecError(system.source, f"devices.{device.name}.kind",
                                f"a memory-pool holds the KV cache and runs decode attention under {needs} (its "
                                "count, memory and link would be ignored): use kind gpu, or offload attention")
        for role in (ATTENTION_LINK, ATTENTION_POOL_LINK):
            if role in system.links:
                raise SpecError(system.source, f"links.{role}",
                                f"read only by {needs} (it would be ignored): remove it, or offload attention")
        return
    _check_pool_rules(system)
    _check_pool_ops(system)
    if ATTENTION_LINK not in system.links:
        raise SpecError(system.source, f"links.{ATTENTION_LINK}", "missing: attention offloading sends q, k, v and "
                                                                  "the output between the pools over it")
    if pool is None:
        raise SpecError(system.source, "parallelism.attention_pool", "missing: the number of memory devices decode "
                                                                     "attention is spread over")
    memory = _decided(system, "attention", "decode")
    if memory is not None:
        check_pool(system, memory)
        _check_two_pools(system, memory)


def _check_pool_ops(system: System) -> None:
    """Under attention offloading an attention pool runs decode attention only: every memory-pool device (its kernel
    has a decode path alone) and the memory-pool or chip device decode attention is placed on. The offload model
    costs decode attention alone on the pool (`archsim.systems.offload`: prefill attention runs on the compute
    devices), so a rule putting any other op, or attention in every phase, there is refused: AttAcc's PIM given the
    residuals had run them inside the GPUs' time, free of the link named attention and of the pool's time. Outside
    offloading a memory-pool device is refused by its kind first (`_check_offloading`)."""
    pool = _decided(system, "attention", "decode")
    pools = {d.name for d in system.devices.values() if d.kind == "memory-pool"}
    if pool is not None and pool.kind in POOL_KINDS:
        pools.add(pool.name)
    for i, rule in enumerate(system.placement):
        if rule.device not in pools or (rule.ops == ("attention",) and rule.phase == "decode"):
            continue
        device = system.devices[rule.device]
        raise SpecError(system.source, f"placement[{i}]",
                        f"puts {', '.join(rule.ops)} {'in ' + rule.phase if rule.phase else 'in every phase'} on "
                        f"{device.kind} {device.name}, the attention pool, which runs decode attention only (op: "
                        f"attention, phase: decode): under a {system.schedule.kind} schedule the offload model costs "
                        "decode attention alone there, and another op would be timed free of the link named "
                        "attention and of the pool")


def _check_two_pools(system: System, memory: Device) -> None:
    """Attention offloading models two pools (`archsim.systems.offload`: `OffloadModel.pools`), the compute devices
    (`weight_holder`) and the memory pool: a rule naming a third device would have its ops timed on the replica's
    line but left out of the energy, price, static power and busy time, so it is refused."""
    compute = weight_holder(system)
    for i, rule in enumerate(system.placement):
        if rule.device not in (compute.name, memory.name):
            raise SpecError(system.source, f"placement[{i}].device",
                            f"a {system.schedule.kind} schedule models two pools, the compute devices "
                            f"({compute.name}, where the decode qkv runs) and the memory pool ({memory.name}); "
                            f"{rule.device} would be timed with the replica but left out of its energy, price, "
                            f"static power and busy time: expected {compute.name} or {memory.name}, got "
                            f"{rule.device}")


def context_parallel_gpu(system: System) -> Device:
    """The one device of a context-parallel system, its GPUs (`_check_context_parallel` made sure it is one gpu)."""
    (gpu,) = system.devices.values()
    return gpu


def _check_context_parallel(system: System) -> None:
    """`parallelism.cp` and the link named cp are read by a context-parallel schedule alone, so each is refused under
    another (cp above 1). A context-parallel system is GPUs costed by the calibrated model
    (`archsim.systems.context_parallel`): one gpu device, a link named tp between its GPUs of a node (the ring's
    hops inside a node and the TP all-reduces run on it), and neither a per-action energy model nor roofline
    timing, which the prefill's schemes (`archsim.systems.seqpar_schemes`) do not read."""
    kind, cp = system.schedule.kind, system.parallelism.cp
    if kind != CONTEXT_PARALLEL:
        if cp != 1:
            raise SpecError(system.source, "parallelism.cp", f"read only by a {CONTEXT_PARALLEL} schedule, which a "
                                                             f"{kind} schedule is not: expected 1, got {cp}")
        if CP_LINK in system.links:
            raise SpecError(system.source, f"links.{CP_LINK}", f"read only by a {CONTEXT_PARALLEL} schedule, which "
                                                               f"a {kind} schedule is not: remove it")
        return
    if len(system.devices) != 1 or next(iter(system.devices.values())).kind != "gpu":
        kinds = ", ".join(f"{d.name} ({d.kind})" for d in system.devices.values())
        raise SpecError(system.source, "devices", f"a {CONTEXT_PARALLEL} system is one gpu device, the GPUs of every "
                                                  f"rank; got {kinds}")
    gpu = context_parallel_gpu(system)
    for field, refused, why in (("energy_model", gpu.energy is not None, "per-action"),
                                ("timing", gpu.timing == "roofline", "roofline")):
        if refused:
            raise SpecError(system.source, f"devices.{gpu.name}.{field}",
                            f"{why} is not read by a {CONTEXT_PARALLEL} system: its prefill schemes are timed by "
                            "the calibrated GPU model and priced at board power; remove it")
    if gpu.count > 1 and TP_LINK not in system.links:
        raise SpecError(system.source, f"links.{TP_LINK}", f"missing: the link between the {gpu.count} GPUs of a "
                                                           "node, which the ring's hops inside a node and the TP "
                                                           "all-reduces run on")
    ulysses = system.schedule.ulysses
    if ulysses is not None and cp % ulysses:
        raise SpecError(system.source, "schedule.ulysses", f"expected a divisor of parallelism.cp = {cp} (usp runs "
                                                           f"Ulysses over groups of this many ranks), got {ulysses}")


def _check_pool_rules(system: System) -> None:
    """An offloading schedule chooses the device of decode attention once per model (`archsim.systems.offload`),
    not per op, so an Op/B threshold on a rule that can place decode attention could not be read at each op's
    Op/B, nor a `faster` rule's comparison of each op's time on its device and on the weight holder's: each is
    refused."""
    for i, rule in enumerate(system.placement):
        if "attention" not in rule.ops or rule.phase not in (None, "decode"):
            continue
        if rule.op_per_byte_below is None:
            return
        if rule.faster:
            why = (f"its time on {rule.device} is not compared with its time on {weight_holder(system).name}, which "
                   "holds the weights): remove `op_per_byte_below: faster`")
        else:
            why = "the Op/B of each request's attention is not read): remove the threshold"
        raise SpecError(system.source, f"placement[{i}].op_per_byte_below",
                        f"a {system.schedule.kind} schedule places decode attention on its pool once per model, not "
                        f"per op ({why}")


def check_pool(system: System, memory: Device) -> None:
    """The device an offloading schedule puts decode attention on is a memory pool (`POOL_KINDS`) of
    `parallelism.attention_pool` devices: checked at load (the placement alone decides it, `_check_pool_rules`)
    and by `archsim.systems.offload` as it builds the model."""
    if memory.kind not in POOL_KINDS:
        raise SpecError(system.source, "placement", f"a {system.schedule.kind} schedule offloads decode attention to "
                                                    f"a {' or '.join(POOL_KINDS)} device; it is placed on "
                                                    f"{memory.name} ({memory.kind})")
    if memory.count != system.parallelism.attention_pool:
        raise SpecError(system.source, f"devices.{memory.name}.count",
                        f"expected parallelism.attention_pool = {system.parallelism.attention_pool} memory devices, "
                        f"got {memory.count}")


def _check_split_schedule(system: System) -> None:
    """A schedule that overlaps a bank-PIM's decode attention with its host (`SPLIT_SCHEDULES`), and the blocked
    schedule's `attention_sync` (how a bank-PIM's channels meet), need a rule that can put decode attention on a
    bank-pim device; without one the first would run blocked and the second is not read. `overlapped` needs that
    device's two row buffers (NeuPIMs' dual row buffers, pim.md §1.1): with one, the host's accesses wait for the
    PIM's commands and nothing overlaps (sub-batch interleaving models that wait, `system_model.sbi_stage_s`)."""
    kind = system.schedule.kind
    pims = [device for device in _reachable(system, "attention", "decode") if device.kind == "bank-pim"]
    if kind == "overlapped":
        for device in pims:
            if device.spec.row_buffers == 1:
                raise SpecError(system.source, f"devices.{device.name}.row_buffers",
                                "overlapped runs the host's softmax beside the PIM's GEMVs, its reads of the scores "
                                "during the PIM's commands, which one row buffer serialises (Newton's; NeuPIMs adds "
                                "the second for this): expected 2, or schedule blocked")
    if pims:
        return
    if kind in SPLIT_SCHEDULES:
        raise SpecError(system.source, "schedule.kind", f"{kind} overlaps decode attention on a bank-pim device "
                                                        "with its host's work, and no placement rule puts it on one: "
                                                        "expected blocked")
    if "attention_sync" in system.data["schedule"]:
        raise SpecError(system.source, "schedule.attention_sync", "read only where decode attention runs on a "
                                                                  "bank-pim device's channels, and no placement "
                                                                  "rule puts it on one: remove it")


def _check_coprocessing(system: System) -> None:
    """Co-processing runs a layer's attention on several devices at once, or (`expert_coprocessing`, +PE) a MoE
    op's experts on the xPU and a logic-pim device; with attention on one device and no +PE it is the blocked
    schedule. `expert_tp` and `zipf_skew` are read by +PE alone under co-processing (`expert_tp` by the blocked
    schedule too)."""
    schedule, source = system.schedule, system.source
    given = [key for key in EXPERT_KEYS if key in system.data["schedule"]
             and not (schedule.kind == "blocked" and key in BLOCKED_EXPERT_KEYS)]
    if given and not schedule.expert_coprocessing:
        raise SpecError(source, f"schedule.{given[0]}", "read only with expert_coprocessing: true (+PE), which this "
                                                        "schedule does not set: remove it or set that")
    if schedule.expert_coprocessing and not any(d.kind == "logic-pim" for d in system.devices.values()):
        raise SpecError(source, "schedule.expert_coprocessing", "expected a logic-pim device to share the experts "
                                                                "with; the system has none")
    if schedule.expert_coprocessing:
        _check_expert_xpu(system)
        for i, rule in enumerate(system.placement):
            if "moe" in rule.ops and rule.op_per_byte_below is not None:
                raise SpecError(source, f"placement[{i}].op_per_byte_below",
                                "not read for moe under expert_coprocessing (+PE): each MoE op's experts are split "
                                "between the xPU and the Logic-PIM by +PE's own search, whatever the Op/B; remove "
                                "moe from this rule")
    attention = {d.name for phase in PHASES for d in _reachable(system, "attention", phase)}
    if schedule.kind == "co-processing" and not schedule.expert_coprocessing and len(attention) == 1:
        raise SpecError(source, "schedule.kind", "co-processing runs decode and prefill attention on different "
                                                 f"devices at once, and the placement puts all attention on "
                                                 f"{attention.pop()}: it would run as blocked; expected blocked, or "
                                                 "a rule placing decode attention on a second device")


def _check_expert_xpu(system: System) -> None:
    """+PE splits a MoE op's experts between the xPU, the device the rules give decode moe at every Op/B
    (`coprocessing._experts_split`), and the system's logic-pim device: a rule making a logic-pim that xPU would
    split the experts between the Logic-PIM and itself, so it is refused."""
    i = _first_rules(system, "moe", "decode")[-1]  # the rule without a threshold
    xpu = system.devices[system.placement[i].device]
    if xpu.kind == "logic-pim":
        raise SpecError(system.source, f"placement[{i}].device",
                        "expert_coprocessing (+PE) splits each MoE op's experts between the xPU, the device this "
                        f"rule gives decode moe at every Op/B, and the Logic-PIM; it names logic-pim {xpu.name}, "
                        "which would share the experts with itself: expected the gpu device whose HBM its stacks "
                        "are")


def _first_rules(system: System, op: str, phase: str) -> tuple[int, ...]:
    """Indices of the rules `System.device_for` takes first for `op` in `phase` at some Op/B: a matching rule whose
    threshold (None: every Op/B) is above those of the matching rules before it, which take every Op/B below
    theirs, or a `faster` rule (which may take it at any Op/B, and takes none for sure); up to the first without a
    threshold (the loader made sure one matches)."""
    first: list[int] = []
    taken = 0.0  # the Op/B below which the rules before take the op
    for i, rule in enumerate(system.placement):
        if op not in rule.ops or rule.phase not in (None, phase):
            continue
        if rule.faster:  # may take the op at any Op/B, and at none for sure
            first.append(i)
            continue
        below = math.inf if rule.op_per_byte_below is None else rule.op_per_byte_below
        if below > taken:
            first.append(i)
            taken = below
        if taken == math.inf:
            break
    return tuple(first)


def _reachable(system: System, op: str, phase: str) -> tuple[Device, ...]:
    """The devices the placement may put `op` in `phase` on, at some Op/B: those the rules it matches first name
    (`_first_rules`), each once."""
    names = (system.placement[i].device for i in _first_rules(system, op, phase))
    return tuple(system.devices[name] for name in dict.fromkeys(names))


def roofline_crossover(peak_flops_per_s: float, bytes_per_s: float, holder_peak_flops_per_s: float,
                       holder_bytes_per_s: float) -> float | None:
    """The Op/B below which a device of roofline (`peak_flops_per_s`, `bytes_per_s`: the peak its ops reach and the
    bandwidth its operands come at) runs an op faster than the weight holder's roofline, and above which slower:
    where their times per byte, max(Op/B / peak, 1 / bandwidth), meet. For a device with more bandwidth and less
    peak than the holder that is its peak over the holder's bandwidth: below its own ridge both are memory-bound
    and its bandwidth wins; above it, compute-bound, it stays faster than the holder (memory-bound up to the
    holder's ridge, which is higher) until its compute time reaches the holder's memory time. Duplex's Logic-PIM:
    5 x 21.3 TFLOP/s over the H100's 3.35 TB/s = 31.8 (pim.md §2.1, "Op/B 1-32"). Peaks, as the ridge points are
    read (`duplex_reproduce.ridge_rows`): not the calibrated GPU model's rates nor the Logic-PIM's refresh. None
    where no Op/B separates them: a device with no more bandwidth is never faster at low Op/B, one with more
    bandwidth and at least the holder's peak is faster at every Op/B."""
    if bytes_per_s <= holder_bytes_per_s or peak_flops_per_s >= holder_peak_flops_per_s:
        return None
    return peak_flops_per_s / holder_bytes_per_s


def weight_holder(system: System) -> Device:
    """The device that holds the weights: the one the rules give the decode QKV projection at every Op/B (a rule
    by Op/B may send a small batch's projection to a Logic-PIM, whose stacks are this device's HBM), as
    `SystemModel.weight_device`."""
    return system.devices[system.device_for("qkv", "decode", math.inf).name]


def _decided(system: System, op: str, phase: str) -> Device | None:
    """The device `op` in `phase` runs on when the placement alone decides it (at every Op/B), else None."""
    devices = _reachable(system, op, phase)
    return devices[0] if len(devices) == 1 else None
