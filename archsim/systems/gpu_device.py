"""A GPU as a device: layer ops through the calibrated GPU model (`archsim.model.gpu`, `archsim.model.gpu_kernels`).

Per op, as PyTorch eager runs a decoder layer (one kernel after another):
- GEMMs (`archsim.systems.gemms`, fused where they share an input) are cuBLAS launches, `gemm_launch_time`: the
  tensor/DRAM roofline derated by the family's calibrated efficiencies, plus a launch; their DRAM bytes are the
  stationary operands, the streamed input and the output, all at the op's word size but the op's own output (an
  activations_out tensor), written at `Op.output_word_bytes`: an fp8 dense FFN (`ffn_word_bytes` 1) reads fp8
  weights and inputs and its W2 GEMM writes the output in bf16 (the workload's `word_bytes`, as Llama 3's FP8
  serving); its intermediates stay fp8. An op's output that an elementwise Einsum writes, not a GEMM (a MoE
  op's Y, the combine of its experts' outputs; MLA prefill's AV, its scores' normalisation), is counted with the
  elementwise Einsums' bytes, written whole at the output's width.
- Attention ops of the cascades the GPU kernel model covers (`KERNEL_CASCADES`: GQA/MHA decode, causal prefill,
  sliding-window prefill) are the kernel `kernel` of `archsim.model.gpu_kernels` (a system spec names it where it
  places attention; `ATTENTION_KERNEL`, PyTorch eager attention, is the Python default): the decode requests of a
  batch as one call over each request's own keys, in batch order (`gpu_kernels.varlen_plans`: FlashAttention-2's
  decode kernels size their split-KV grid by the longest request and each CTA walks its own request's blocks;
  eager attention runs a ragged batch, its passes' bytes those of every request at the mean context; archsim's
  decode kernel pads every request to the longest); the
  prompts of a call (`cost`'s ops) as one varlen causal call where the kernel has a varlen path
  (`gpu_kernels.has_varlen`: FlashAttention-2, whose flash_attn_varlen_func vLLM calls once per layer): one launch,
  every prompt's CTAs in one grid, each prompt's causal tiles its own (`gpu_kernels.predict_varlen`), so k prompts
  of one length cost the batch-k call and a lone prompt its own call; otherwise (PyTorch eager attention) each
  prompt as one causal call, a launch each. The roofline timing prices each prompt's call on its own either way.
  A sliding-window prompt is that causal call too: eager attention computes and masks every score whatever the
  mask; FlashAttention-2's `window_size`, which skips the key tiles outside the window, is not modelled, so for it
  the time is an upper bound (the roofline timing counts the window's work).
- MLA's latent decode attention (`FUSED_DECODE_CASCADES`), which the kernel model does not cover, is one fused call
  for a batch's decode requests, as FlashMLA and FlashInfer's MLA decode kernel run a whole batch: one launch, and
  the roofline of the batch's bytes and FLOPs (`gemm_launch_time`, at the rates a GEMM launch runs at below: the
  copy fraction of the bandwidth, the preset's measured GEMM fraction or the prior of the tensor peak). Its bytes are
  a fused kernel's: each request's Q, QR, latent cache C and rope keys KR read once (not once for the keys and again
  for the values, as the Einsums read C) and its AV written; the absorbed up-projections WUK and WUV read once a
  call, shared by the batch. Its FLOPs are the ops' MACs, each request over its own keys (a ragged batch). Assumed:
  such a kernel streams and computes at a large GEMM's fractions (no MLA kernel is measured in the reference); the
  absorbed GEMMs are inside the call, where vLLM runs them as two batched GEMMs around it (two launches more); a
  decode whose few heads a device holds (a head shard) fills the kernel's MMA tiles as well as all 128 heads would,
  where FlashMLA pads each request's heads to 64 rows. MLA's prefill attention runs as its Einsums: GEMM launches
  and one elementwise kernel a prompt, like any other op.
- Every other Einsum of an op (a norm, a residual add, GELU between the FFN's GEMMs, a MoE router's softmax) is
  one elementwise kernel per op: a DRAM pass over the tensors it reads and writes (intermediates of GEMM ops
  included, weights and activations of GEMM-free ops) at the calibrated DRAM efficiency, plus a launch.
GEMM launches and elementwise kernels run at the calibrated efficiencies of the eager PyTorch family
(`GEMM_FAMILY`: cuBLAS and DRAM passes); the attention kernel at its own family's (`kernel_params`). One
exception: a GEMM's DRAM term streams at the GPU's copy bandwidth. A decode step's weight GEMMs read each weight
matrix once, front to back, as a copy does; the family's `hbm_efficiency` (0.54) was fitted to eager attention's
short softmax and score passes on an A100, and slowed weight streaming to half the HBM's bandwidth (issue 15's and
16's attributions). The copy fraction is the preset's `dram_copy_fraction` where it has one (H100 SXM5 and H200,
0.90, measured; MI300X 0.81, a low-confidence summary; ../shared/reference/gpu/gpu_measured_fractions.csv), else
the Hopper measurement (`archsim.model.gpu.copy_fraction`), assumed for a GPU without its own: a streaming read is
bound by the DRAM interface on every modern GPU, so the Hopper fraction transfers better than a value fitted to
another mechanism (an assumption; the reference has no A100, Ada or Blackwell copy measurement). Likewise a GEMM's
tensor term runs at the preset's measured `gemm_fraction` where it has one (H100 SXM5 0.807, H200 0.796: an
8192^3 bf16 matmul; MI300X 0.45, the low-confidence summary its copy fraction comes from;
gpu_measured_fractions.csv): weight GEMMs are large dense GEMMs, which the family's
`gemm_efficiency` (0.7, a prior: eager attention's data cannot identify it) does not describe on a GPU measured.
Elsewhere the prior stays: the reference has no other GPU's GEMM measured, and its suggested 0.75-0.85 is no
measurement.
Busy unit `<name>`: the tensor-core time the FLOPs would take at peak (GEMMs and attention).
Timing `roofline` (a compatibility option, not the default): every op as Duplex's simulator times its GPU (pim.md
§2.5, [DX-sim] `GPU`: the device's peak FLOPS and bandwidth, op latency = max(compute, memory), no launches): each
GEMM max(FLOPs / tensor peak, its DRAM bytes above / DRAM bandwidth), each elementwise kernel its bytes / DRAM
bandwidth, an attention call max(its ops' FLOPs / tensor peak, their tensors but the intermediates / DRAM
bandwidth) (Q, K, V read once and O written once, as a fused kernel does). `archsim reproduce duplex --as-artifact`
gives the GPU and the xPU this timing to show what the paper's simulator computes.
Energy, by `energy`:
- None (a spec's `energy_model: tdp`, the default): board power (TDP, an upper bound) for the op's time (the
  systems layer adds it over the rank's communication: `archsim.systems.system_types.board_power_w`);
- an `ActionEnergy` (`energy_model: per-action`): a price per action, as Duplex prices its xPU (pim.md §2.4: HBM
  energies from FGDRAM, arithmetic from a synthesized PDK; §5 tabulates them): the DRAM bytes the launches move
  above (GEMM operands and outputs, elementwise passes, the attention kernel's own traffic) x 8 x
  `hbm_pj_per_bit` + x `sram_pj_per_byte` (assumption: each byte to or from DRAM passes once through the on-chip
  caches, L2 and L1; reuse within shared memory and registers is not priced) + the ops' FLOPs (`Op.flops`: a MAC
  is two, as the Logic-PIM counts them) x `pj_per_flop`, a price at 16-bit operands that a FLOP pays x its width
  in bytes / 2 (`archsim.systems.arithmetic_energy`, the rule of every device priced per FLOP): an fp8 op on fp8
  tensor cores half of it, an op of 1-byte words on a GPU without them (run at the fp16 rate, `word_problem`) all
  of it (`arithmetic_word_bytes`); and `static_w`, the power the device draws busy or idle
  (leakage, clocks, idle HBM), which an op's cost leaves out: the systems layer charges it over every iteration's
  wall time on every rank (`archsim.systems.system_model`, `archsim.systems.offload`), since a device idle within
  an iteration (Duplex's xPU while its Logic-PIM runs attention) still draws it. The Logic-PIM's energy is dynamic
  only (`logic_pim_device`).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from archsim.arch.gpu import GPU
from archsim.cascade.bind import FFN_WORDS
from archsim.cascade.ir import Cascade
from archsim.errors import SpecError
from archsim.limits import limits_key
from archsim.memo import identity_cache, kept, trim
from archsim.model.gpu import (
    PRECISION_BYTES,
    WORD_PRECISIONS,
    AttentionCase,
    GemmLaunch,
    GpuResult,
    copy_fraction,
    gemm_launch_time,
)
from archsim.outputs import capacity_text
from archsim.systems.arithmetic_energy import flops_at_16_bit
from archsim.systems.device import OpCost
from archsim.systems.gemms import einsum_density, op_gemms, writer_of
from archsim.systems.step import (
    ACTIVATIONS_OUT,
    INTERMEDIATE,
    MLA_DECODE,
    WEIGHTS,
    DecodeOps,
    Op,
    UnrunnableOp,
    decode_total,
    decode_values,
    flops_of,
    tensor_roles_of,
)
from archsim.workload import Workload

# Memory kept from the KV cache for activations and workspace: the NeuPIMs HBM's activation buffer (pim.md §1.2),
# so the GPU baseline of the NeuPIMs comparison leaves the KV cache the same room beside its weights.
ACTIVATION_RESERVE_BYTES = 512 * 2**20
ATTENTION_KERNEL = "PyTorch eager attention"
GEMM_FAMILY = "pytorch"  # the calibrated family whose cuBLAS GEMM and DRAM-pass efficiencies every GEMM op uses
KERNEL_CASCADES = ("attention-decode-gqa", "attention-1pass-causal", "attention-1pass-causal-gqa",
                   "attention-sliding-window", "attention-sliding-window-gqa")
FUSED_DECODE_CASCADES = (MLA_DECODE,)  # decode attention as one fused call a batch (module docstring)
DECODE_MEMO_CALLS = 2**14  # the latest decode calls a table remembers (`GpuDevice._decode_terms`): 16 MB at 128
# requests a call
DECODE_MEMO_TABLES = 4  # decode tables kept for devices built apart (`_decode_table`): `reproduce lamina` fills 4
ENERGY_MODELS = ("tdp", "per-action")
CALIBRATED, ROOFLINE = "calibrated", "roofline"
TIMINGS = (CALIBRATED, ROOFLINE)  # module docstring
# The attention calls whose plans an attention kernel must have: one decode, one causal prefill (GQA, head_dim 128)
PROBE_CASES = (("decode", False), ("fwd", True))


@dataclass(frozen=True)
class ActionEnergy:
    """Prices of a GPU's actions (module docstring): DRAM access per bit, on-chip SRAM per DRAM byte, and per
    16-bit FLOP (`arithmetic_energy`); and its static power, which `energy_j` leaves out (charged per iteration by
    the systems layer)."""

    hbm_pj_per_bit: float
    pj_per_flop: float
    sram_pj_per_byte: float
    static_w: float

    def energy_j(self, dram_bytes: float, flops_16_bit: float) -> float:
        """The dynamic energy of moving `dram_bytes` and computing `flops_16_bit`, FLOPs counted at 16-bit operands
        (`arithmetic_energy.flops_at_16_bit`)."""
        return (dram_bytes * (8 * self.hbm_pj_per_bit + self.sram_pj_per_byte)
                + flops_16_bit * self.pj_per_flop) * 1e-12


def arithmetic_word_bytes(gpu: GPU, word_bytes: int) -> int:
    """The operand width `gpu`'s tensor cores compute `word_bytes`-byte words at, what their FLOPs are priced at
    (`arithmetic_energy`): the width of the precision they are computed at (`GPU.computed_precision` of the words'
    `WORD_PRECISIONS`), their own but 2 (fp16) for 1-byte words on a GPU without fp8 tensor cores, which runs them on
    its fp16 path; their own for a width with no precision."""
    precision = WORD_PRECISIONS.get(word_bytes)
    return word_bytes if precision is None else PRECISION_BYTES[gpu.computed_precision(precision)]


def word_problem(gpu: GPU, word_bytes: int) -> str | None:
    """Why `gpu`'s tensor cores do not run `word_bytes`-byte words, or None when they do (`WORD_PRECISIONS`: 1-byte
    words at fp8, at the fp16 rate on a GPU without fp8 tensor cores, `GPU.has_rate`; 2-byte at fp16). The one rule
    of a GPU device's widths: `GpuDevice.precision` and the system check of a workload's widths
    (`archsim.systems.system_checks`) read it."""
    precision = WORD_PRECISIONS.get(word_bytes)
    if precision is not None and gpu.has_rate(precision):
        return None
    return (f"GPU {gpu.name} has no tensor-core rate for {word_bytes}-byte words (it has "
            f"{', '.join(gpu.tensor_flops_per_s)}; 1-byte words run at fp8, 2-byte at fp16; 4-byte fp32 words have "
            "no tensor-core path, tf32 being another format): expected a workload of 1- or 2-byte words")


def kernel_word_problem(kernel: str, gpu: GPU, word_bytes: int, decode_only: bool = False) -> str | None:
    """Why attention kernel `kernel` does not run attention in `word_bytes`-byte words on `gpu`, or None when it
    does (`gpu_kernels.precision_problem`: fp8 is the Triton tutorial's alone, which serves no decode): the rule
    of a GPU device's attention words beside its tensor cores' (`word_problem`, checked first), naming the kernels
    a GPU device (a memory pool: `decode_only`) may serve attention with and those of them that have the path.
    `GpuDevice.precision` reads it for the attention ops its kernel runs (`KERNEL_CASCADES`, calibrated timing)."""
    from archsim.model.gpu_kernels import precision_problem

    precision = WORD_PRECISIONS[word_bytes]
    if not precision_problem(kernel, precision):
        return None
    serving = _serving_kernels(gpu, decode_only)
    with_path = [name for name in serving if not precision_problem(name, precision)]
    widths = [w for w, p in WORD_PRECISIONS.items() if gpu.has_rate(p) and not precision_problem(kernel, p)]
    device = "memory-pool device serves decode" if decode_only else "gpu device serves"
    return (f"its attention kernel {kernel} has no {word_bytes}-byte ({precision}) path modelled; of the kernels a "
            f"{device} attention with ({', '.join(serving)}), {', '.join(with_path) or 'none'} has one: expected "
            f"{' or '.join(f'{w}-byte' for w in widths)} words for its attention")


def refuse_workload_words(gpu: GPU, workload: Workload) -> None:
    """Refuse a workload whose `word_bytes` or `ffn_word_bytes` (where given) `gpu`'s tensor cores do not compute
    (`word_problem`): a SpecError at the workload's file and field, as the systems check names them
    (`archsim.systems.system_checks`), for a caller that builds its GPU devices itself (the layer's GPU: `archsim
    parallel`, `archsim sparse`), before a device's op names a file that holds no word size (`GpuDevice.precision`)."""
    for name in ("word_bytes", FFN_WORDS):
        value = workload.params.get(name)
        if value is None:
            continue
        problem = word_problem(gpu, int(value) if float(value).is_integer() else value)
        if problem:
            raise SpecError(workload.path, f"params.{name}", "the GPU the layer's FFN runs on does not compute these "
                                                             f"words: {problem}")


@dataclass(frozen=True)
class GpuDevice:
    """A GPU as a serving device (module docstring): GEMMs and elementwise kernels timed with the calibrated `params`,
    attention with the kernel `kernel` and its family's parameters; energy priced per action (`energy`) or as board
    power (TDP) for the time (None)."""

    name: str
    spec: GPU
    params: Mapping[str, float]  # the calibrated parameters of GEMM_FAMILY (GEMMs and elementwise kernels)
    kernel: str = ATTENTION_KERNEL
    kernel_params: Mapping[str, float] | None = None  # the attention kernel's family's; None: `params`
    energy: ActionEnergy | None = None  # None: board power (TDP) for the time
    kind: str = "gpu"
    timing: str = CALIBRATED  # one of TIMINGS (module docstring)
    memory_utilization: float = 1.0  # share of the DRAM the serving engine allocates (vLLM's gpu_memory_utilization)
    # The memory one attention call may hold at once (its operands and what its plan materialises, eager
    # attention's N x N scores): None, the whole DRAM (the GPU model's own check); the serving factory
    # (`archsim.systems.models`) gives the weight-holding device its share of the DRAM less the weights
    call_memory_bytes: float | None = None
    source: str = field(default="<python>", compare=False)  # the system spec's file (errors name its device's field)
    # The memo starts empty on every device, a `dataclasses.replace`d one included (its keys hold none of its
    # fields). An op (its GEMMs and elementwise kernel, or a prompt's attention call) or a calibrated attention
    # call's sizes -> (time, tensor-core time at peak, DRAM bytes): a serving run asks for the same ones in many
    # iterations
    _terms: dict = field(default_factory=dict, init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.capacity_bytes <= 0:
            share = f" x memory_utilization {self.memory_utilization:g}" if self.memory_utilization != 1 else ""
            raise SpecError(self.spec.source, "dram_bytes",
                            f"{self.spec.dram_bytes} B{share} (devices.{self.name} of {self.source}) is no more than "
                            f"the {ACTIVATION_RESERVE_BYTES} B the serving engine keeps for activations and "
                            "workspace: the device's memory is smaller than that reserve")

    @property
    def peak_flops_per_s(self) -> float:
        """The roofline's peak: the fp16 tensor-core peak (`GPU.tensor_peak_flops_per_s`)."""
        return self.spec.tensor_peak_flops_per_s("fp16")

    @property
    def operand_bytes_per_s(self) -> float:
        """The bandwidth its operands come at, the roofline's (what the ridge point is read against): the DRAM's."""
        return self.spec.dram_bytes_per_s

    @property
    def share_text(self) -> str:
        """" (memory_utilization U)" where the engine holds a share U of the DRAM below all of it, else ""."""
        return f" (memory_utilization {self.memory_utilization:g})" if self.memory_utilization != 1 else ""

    @property
    def engine_bytes(self) -> float:
        """The serving engine's share of the DRAM (`memory_utilization` of it)."""
        return self.memory_utilization * float(self.spec.dram_bytes)

    @property
    def capacity_bytes(self) -> float:
        """Memory for weights and the KV cache: the engine's share of the DRAM less the activation reserve."""
        return self.engine_bytes - ACTIVATION_RESERVE_BYTES

    def cost(self, ops: Sequence[Op], streamed_fraction: float = 1.0) -> OpCost:
        time_s = peak_s = dram_bytes = 0.0
        if isinstance(ops, DecodeOps) and ops and _runs_batched(ops[0]):
            # one decode call, its keys and FLOPs already summed (the loop below, without visiting each op)
            keys = ops.total("keys") if self.timing == ROOFLINE else None  # the calibrated call reads each op's
            time_s, peak_s, dram_bytes = self._decode_call(ops, keys)
            energy_j = (self.energy.energy_j(dram_bytes, self._flops_16_bit(ops[0], float(ops.total("flops"))))
                        if self.energy is not None else self.spec.power_w * time_s)
            return OpCost(time_s, 0.0, energy_j, {self.name: peak_s})
        decodes, terms, priced = [], self._terms, self.energy is not None
        calls = self._prompt_calls(ops) if self._varlen else None
        flops = keys = 0  # the ops' 16-bit FLOPs (per-action energy) and the decode ops' keys, summed in op order
        for i, op in enumerate(ops):
            if priced:
                flops += self._flops_16_bit(op, op.flops)
            kernel = op.cascade in KERNEL_CASCADES
            if op.phase == "decode" and _runs_batched(op):
                decodes.append(op)
                keys += op.binding.params["seq_len"]
                continue
            if kernel and calls is not None:  # a varlen call, priced where its first prompt is
                prompts = calls.get(i)
                if prompts is None:
                    continue
                if len(prompts) > 1:
                    t, p, b = self._varlen_attention(prompts)
                    time_s, peak_s, dram_bytes = time_s + t, peak_s + p, dram_bytes + b
                    continue
            found = terms.get(op)
            if found is None:
                found = terms[op] = self._attention(op, [op]) if kernel else self._dense(op)
            time_s, peak_s, dram_bytes = time_s + found[0], peak_s + found[1], dram_bytes + found[2]
        if decodes:
            t, p, b = self._decode_call(decodes, keys)
            time_s, peak_s, dram_bytes = time_s + t, peak_s + p, dram_bytes + b
        energy_j = self.energy.energy_j(dram_bytes, float(flops)) if priced else self.spec.power_w * time_s
        return OpCost(time_s, 0.0, energy_j, {self.name: peak_s})

    def _flops_16_bit(self, op: Op, flops: float) -> float:
        """`flops` of ops of `op`'s words as the 16-bit FLOPs their arithmetic costs (`arithmetic_word_bytes`)."""
        return flops_at_16_bit(flops, arithmetic_word_bytes(self.spec, op.binding.word_bytes))

    def _decode_call(self, ops: Sequence[Op], keys: float | None) -> tuple[float, float, float]:
        """(time, tensor-core time at peak, DRAM bytes) of a batch's decode attention ops (one cascade) as one
        call: the attention kernel's (`_attention`, `keys` the sum of their keys where the caller has it) or a fused
        MLA call's."""
        if ops[0].cascade in KERNEL_CASCADES:
            return self._attention(ops[0], ops, keys)
        return self._fused_decode(ops)

    def _fused_decode(self, ops: Sequence[Op]) -> tuple[float, float, float]:
        """(time, tensor-core time at peak, DRAM bytes) of one fused call over the decode ops `ops` (module
        docstring): every op's tensors but its intermediates, the weights once; its MACs on the tensor cores."""
        op = ops[0]
        dram_bytes = float(sum([o.bytes for o in ops]) - (len(ops) - 1) * op.bytes_by_role[WEIGHTS])
        macs = ops.total("macs") if isinstance(ops, DecodeOps) else sum([o.ops["mac"] for o in ops])
        mma_flops = float(flops_of({"mac": macs}))
        precision = self.precision(op)
        peak_s = mma_flops / self.spec.tensor_peak_flops_per_s(precision)
        if self.timing == ROOFLINE:
            return max(peak_s, dram_bytes / self.spec.dram_bytes_per_s), peak_s, dram_bytes
        launch = GemmLaunch(f"{op.cascade} of {len(ops)} requests", mma_flops, dram_bytes, precision)
        return gemm_launch_time(launch, self.spec, self._gemm_params).time_s, peak_s, dram_bytes

    @kept
    def _decode_terms(self) -> dict:
        """A decode call's sizes and its requests' keys -> its terms, the latest `DECODE_MEMO_CALLS` calls: a serving
        run's calls repeat the previous token's (an offloaded layer's attention over the history) and a run's of the
        same system (a reproduction's variants: Lamina with and without divide-and-conquer, each system's pool a
        device of its own). Each call holds a key per request. The table of every device that predicts a call as
        this one does (`_decode_table`), a `dataclasses.replace`d one included when its fields keep the key."""
        params = self.params if self.kernel_params is None else self.kernel_params
        return _decode_table((repr(self.spec), self.kernel, tuple(sorted(params.items())), self.call_memory_bytes,
                              self.timing, limits_key()))

    @kept
    def _varlen(self) -> bool:
        """Whether a layer's prompts run as varlen calls (module docstring): a kernel with a varlen path, timed by
        the GPU model (the roofline timing prices each prompt's call on its own, as Duplex's simulator does)."""
        from archsim.model.gpu_kernels import has_varlen

        return self.timing != ROOFLINE and has_varlen(self.kernel)

    @staticmethod
    def _prompt_calls(ops: Sequence[Op]) -> dict[int, list[Op]]:
        """The varlen calls of `ops`' prompt attention ops: the index of each call's first prompt -> its prompts,
        in op order; the prompts of a call share what an `AttentionCase` holds but their length."""
        calls: dict[tuple, list[int]] = {}
        for i, op in enumerate(ops):
            if op.phase == "prefill" and op.cascade in KERNEL_CASCADES:
                p = op.binding.params
                calls.setdefault((op.binding.word_bytes, p.get("heads"), p.get("kv_heads"), p["head_dim"]),
                                 []).append(i)
        return {at[0]: [ops[i] for i in at] for at in calls.values()}

    def _varlen_attention(self, prompts: Sequence[Op]) -> tuple[float, float, float]:
        """(time, tensor-core time at peak, DRAM bytes) of one varlen call of the attention kernel over the prompt
        ops `prompts` (`archsim.model.gpu_kernels.predict_varlen`), remembered by their lengths in order."""
        op, p = prompts[0], prompts[0].binding.params
        seqlens = tuple(math.ceil(o.binding.params["seq_len"]) for o in prompts)
        key = ("varlen", op.binding.word_bytes, p.get("heads"), p.get("kv_heads"), p["head_dim"], seqlens)
        found = self._terms.get(key)
        if found is not None:
            return found
        heads, kv_heads, head_dim = _head_sizes(p)
        case = AttentionCase("fwd", 1, heads, kv_heads, head_dim, sum(seqlens), True, self.precision(op))
        what = (f"the varlen prefill attention of {len(seqlens)} prompts ({sum(seqlens)} tokens, {heads} heads, "
                f"{kv_heads} KV, head_dim {head_dim})")
        return self._kept(key, self._predict(case, what, seqlens), what)

    @kept
    def _kernel_params(self) -> Mapping[str, float]:
        """The attention kernel's parameters: its family's, else the device's; a SpecError naming the parameter when
        they are not its family's or out of their bounds (`gpu_kernels.check_params`, as `predict` checks them)."""
        from archsim.model.gpu_kernels import check_params

        params = self.params if self.kernel_params is None else self.kernel_params
        check_params(self.kernel, params)
        return params

    @kept
    def _call_room(self) -> tuple[float, str] | None:
        """`call_memory_bytes` as the GPU model's memory check takes it (`plan_memory_problem`): (bytes, what they
        are), None for the whole DRAM."""
        room = self.call_memory_bytes
        if room is None:
            return None
        return room, f"the {capacity_text(room)} of {self.spec.name}'s DRAM its weights leave"

    def _predict(self, case: AttentionCase, what: str, seqlens: Sequence[int] = ()) -> GpuResult:
        """The GPU model's prediction of one call of the attention kernel (`seqlens`: a varlen call over prompts of
        these lengths, `case` their packed sequence, or a decode over requests of these keys, `case` at the longest,
        whose plans and check of the lengths are `predict_varlen`'s: `gpu_kernels.varlen_plans`), among the kernel's
        plans those that can run it (`runnable_plans`): whose operands and held tensors fit `call_memory_bytes` and
        whose CTAs fit an SM. When none can, the call is beyond the device (its memory, or a CTA no SM holds), not a
        malformed spec: an UnrunnableOp at the device's attention kernel (`what` the call is), which a serving run
        turns into the refusal of the request (`archsim.systems.serving`)."""
        from archsim.model.gpu import predict_plans, runnable_plans
        from archsim.model.gpu_kernels import plans, varlen_plans

        found = (varlen_plans(self.kernel, case, seqlens, self.spec) if seqlens
                 else plans(self.kernel, case, self.spec))
        if not isinstance(found, str):
            found = runnable_plans(case, self.spec, found, room=self._call_room, seqlens=seqlens)
            if isinstance(found, str):
                raise UnrunnableOp(self.source, f"devices.{self.name}.attention_kernel",
                                   f"{self.kernel} cannot run {what} on {self.spec.name}: {found}")
        return predict_plans(self.kernel, case, self.spec, found, self._kernel_params, check_memory=False,
                             seqlens=seqlens)  # `found` is what fits the room, no more than the DRAM

    def _kept(self, key: tuple, result: GpuResult, what: str, memo: dict | None = None) -> tuple[float, float, float]:
        """(time, tensor-core time at peak, DRAM bytes) of a kernel call the GPU model predicted, remembered under
        `key` in `memo` (default `_terms`), with the time at peak of its FLOPs (`GpuResult.flops`: a varlen call's
        its sequences'); a SpecError at the device's attention kernel when the kernel has no plan for the call
        (`what` it was; `_predict` refuses one whose plans cannot run as an UnrunnableOp)."""
        if not result.feasible:
            raise SpecError(self.source, f"devices.{self.name}.attention_kernel",
                            f"{self.kernel} cannot run {what} on {self.spec.name}: {result.reason}")
        peak_s = result.flops / self.spec.tensor_peak_flops_per_s(result.case.precision)
        found = (self._terms if memo is None else memo)[key] = (result.time_s, peak_s, result.total("dram_bytes"))
        return found

    def precision(self, op: Op) -> str:
        """The precision of the op's words: fp8 runs at the fp16 rate on a GPU without fp8 tensor cores
        (`GPU.tensor_peak_flops_per_s`). A word size with no tensor-core rate on this GPU (`word_problem`) is
        refused naming the device's preset, as `ChipDevice` does; one that the attention kernel has no path for, in
        an attention op the kernel runs (`KERNEL_CASCADES`; the roofline timing reads no kernel), naming its
        attention_kernel (`kernel_word_problem`), before any call of the kernel is sized. The message names the
        workload's field; the systems check and the commands that build devices themselves refuse such a workload
        first, naming its file (`refuse_workload_words`)."""
        word_bytes = op.binding.word_bytes
        problem = word_problem(self.spec, word_bytes)
        where = "preset"
        if not problem and op.cascade in KERNEL_CASCADES and self.timing != ROOFLINE:
            problem = kernel_word_problem(self.kernel, self.spec, word_bytes, self.kind == "memory-pool")
            where = "attention_kernel"
        if problem:
            field = "word_bytes" if op.activation_word_bytes is None else FFN_WORDS
            raise SpecError(self.source, f"devices.{self.name}.{where}",
                            f"{op.name} in {word_bytes}-byte words (the workload's params.{field}): {problem}")
        return WORD_PRECISIONS[word_bytes]

    def _attention_case(self, op: Op, calls: int, seqlen: int) -> AttentionCase:
        """The kernel call of `calls` attention ops of `op`'s sizes over `seqlen` keys (a prompt's call causal)."""
        heads, kv_heads, head_dim = _head_sizes(op.binding.params)
        direction = "decode" if op.phase == "decode" else "fwd"
        return AttentionCase(direction, calls, heads, kv_heads, head_dim, seqlen, op.phase == "prefill",
                             self.precision(op))

    def peak_s(self, ops: Sequence[Op]) -> float:
        """The tensor-core time at peak of `ops`, what `cost` reports as the device's busy time, without timing
        them (no call is checked against the memory): each op's GEMMs, each attention op's kernel call, at the
        op's precision."""
        total = 0.0
        for op in ops:
            if op.cascade in KERNEL_CASCADES:
                total += self._case_peak_s(self._attention_case(op, 1, math.ceil(op.binding.params["seq_len"])))
            else:
                total += sum(self._gemm_peak_s(gemm, self.precision(op)) for gemm in op_gemms(op))
        return total

    def _case_peak_s(self, case: AttentionCase) -> float:
        """An attention call's FLOPs at the tensor-core peak of its precision."""
        return case.flops() / self.spec.tensor_peak_flops_per_s(case.precision)

    def _gemm_peak_s(self, gemm, precision: str) -> float:
        """A GEMM's FLOPs at the tensor-core peak of `precision`."""
        return gemm.flops / self.spec.tensor_peak_flops_per_s(precision)

    def gemm_roofline(self, op: Op) -> list[tuple[object, float, float]]:
        """(GEMM launch, its FLOPs at the tensor-core peak of the op's precision in s, its DRAM bytes) of each of an
        op's GEMM launches: the stationary operand once, each streamed row's input and output (the output at the
        op's output word size where the launch writes the op's output)."""
        precision, wb = self.precision(op), op.binding.word_bytes
        launches = []
        for gemm in op_gemms(op):
            out_wb = op.output_word_bytes
            out_wb = out_wb if out_wb != wb and _writes_output(op, gemm.einsums) else wb
            dram = gemm.stationary_bytes + gemm.count * gemm.rows * (gemm.k * wb + gemm.n * out_wb)
            launches.append((gemm, self._gemm_peak_s(gemm, precision), dram))
        return launches

    def _dense(self, op: Op) -> tuple[float, float, float]:
        """(time, tensor-core time at peak, DRAM bytes) of an op's GEMM launches and elementwise kernel."""
        precision = self.precision(op)
        params = self._gemm_params
        time_s = peak_s = dram_bytes = 0.0
        in_gemms: set[str] = set()
        for gemm, peak, dram in self.gemm_roofline(op):
            in_gemms.update(gemm.einsums)
            if self.timing == ROOFLINE:
                time_s += max(peak, dram / self.spec.dram_bytes_per_s)
            else:
                launch = GemmLaunch(op.name, float(gemm.flops), float(dram), precision)
                time_s += gemm_launch_time(launch, self.spec, params).time_s
            peak_s += peak
            dram_bytes += dram
        elementwise = _elementwise_bytes(op, in_gemms)
        if elementwise:
            time_s += self.elementwise_s(elementwise)
            dram_bytes += elementwise
        return time_s, peak_s, dram_bytes

    @kept
    def _gemm_params(self) -> Mapping[str, float]:
        """The parameters a GEMM launch runs at (`gemm_launch_params`)."""
        return gemm_launch_params(self.spec, self.params)

    def elementwise_s(self, dram_bytes: float) -> float:
        """One elementwise kernel moving `dram_bytes`: a DRAM pass at the calibrated efficiency plus a launch (at
        the DRAM bandwidth alone with `roofline` timing)."""
        if self.timing == ROOFLINE:
            return dram_bytes / self.spec.dram_bytes_per_s
        return dram_bytes / (self.spec.dram_bytes_per_s * self.params["hbm_efficiency"]) + self.params["launch_s"]

    def triton_stream_s(self, dram_bytes: float) -> float:
        """One streaming Triton kernel moving `dram_bytes` (a fused pass a method ships as its own kernel, as
        TokenSelect's paged dot-product scoring): the bytes at `model.gpu.dram_efficiency` of the bandwidth, the
        DRAM bound of the Triton kernels the GPU model times (measured copies on H100 and H200, transferred to
        another GPU by its copy fraction), plus the launch of the archsim family, archsim's own Triton kernels, at
        the packaged calibration (fitted on H200 decode rows: Triton's Python launch path included). Assumed: the
        kernel streams its bytes as a copy does, not as eager PyTorch's passes (`elementwise_s`). At the DRAM
        bandwidth alone with `roofline` timing."""
        from archsim.gpu.params import load_calibration
        from archsim.model.gpu import StreamLaunch, stream_launch_time

        if self.timing == ROOFLINE:
            return dram_bytes / self.spec.dram_bytes_per_s
        launch = StreamLaunch("triton-stream", float(dram_bytes))
        return stream_launch_time(launch, self.spec, load_calibration().family_params("archsim")).time_s

    def _attention(self, op: Op, group: Sequence[Op], keys: float | None = None) -> tuple[float, float, float]:
        """(time, tensor-core time at peak, DRAM bytes) of one call of the attention kernel over `group`: a prompt's
        call, or a batch's decode requests each over its own keys (its `seq_len`, whole), in batch order (`keys`:
        the sum of the ops' `seq_len`, when the caller has it, which the roofline timing's busy time reads at their
        mean)."""
        if self.timing == ROOFLINE:
            if keys is None:
                keys = sum(decode_values(group, "keys"))
            case = self._attention_case(op, len(group), math.ceil(keys / len(group)))
            flops, moved = float(decode_total(group, "flops")), float(decode_total(group, "moved_bytes"))
            return (max(flops / self.spec.tensor_peak_flops_per_s(case.precision), moved / self.spec.dram_bytes_per_s),
                    self._case_peak_s(case), moved)
        p = op.binding.params
        decode = op.phase == "decode"
        seqlens = tuple(map(math.ceil, decode_values(group, "keys"))) if decode else ()
        longest = max(seqlens) if decode else math.ceil(p["seq_len"])
        # what the call's AttentionCase and lengths hold: the kernel model reads them alone
        lengths = np.array(seqlens, dtype=np.int64).tobytes() if decode else longest  # a compact key
        key = (op.phase, op.binding.word_bytes, lengths, p.get("heads"), p.get("kv_heads"), p["head_dim"])
        memo = self._decode_terms if decode else self._terms
        found = memo.get(key)
        if found is not None:
            return found
        case = self._attention_case(op, len(group), longest)
        heads, kv_heads, head_dim, direction = case.heads, case.kv_heads, case.head_dim, case.direction
        what = f"{direction} attention of {heads} heads ({kv_heads} KV), head_dim {head_dim}, {longest} keys"
        if len(group) > 1:
            what = (f"{direction} attention of {len(group)} requests, {heads} heads ({kv_heads} KV), head_dim "
                    f"{head_dim}, {sum(seqlens)} keys in all, the longest {longest}")
        found = self._kept(key, self._predict(case, what, seqlens), what, memo)
        if decode:
            trim(memo, DECODE_MEMO_CALLS)
        return found


@functools.lru_cache(maxsize=DECODE_MEMO_TABLES)
def _decode_table(device_key: tuple) -> OrderedDict:
    """The decode calls' table (`GpuDevice._decode_terms`) of the devices of `device_key`: all that a decode call's
    terms read of a device, by value (its GPU, every field of the frozen preset as `repr` writes it; its attention
    kernel and that kernel's parameters; `call_memory_bytes`; its timing), and the limits the GPU model checks a call
    against (`archsim.limits.limits_key`) when the device first asks. Devices built apart alike (a reproduction's
    systems of one pool) share their calls; another GPU, kernel, room or limits has a table of its own. A device
    keeps its table while it lives, so an evicted one only stops being shared. Ordered: evicting its oldest call
    (`memo.trim`) is one step, where a dict's first entry is found past every slot deleted before it."""
    return OrderedDict()


def gemm_launch_params(gpu: GPU, params: Mapping[str, float]) -> dict[str, float]:
    """The parameters a GEMM launch runs at on `gpu`: the family's `params`, its DRAM efficiency the GPU's copy
    fraction (its preset's or the Hopper one, `model.gpu.copy_fraction`), and its tensor efficiency the preset's
    measured GEMM fraction where it has one (module docstring)."""
    gemm = gpu.gemm_fraction
    return {**params, "hbm_efficiency": copy_fraction(gpu), **({} if gemm is None else {"gemm_efficiency": gemm})}


def action_power_w(energy: ActionEnergy, gpu: GPU, timing: str = CALIBRATED) -> float:
    """The most power `gpu` draws priced per action by `energy`: `static_w` plus the prices of a second of a GEMM
    launch whose FLOPs and DRAM bytes take equal time, each at the rate the model runs a GEMM at (the fp16 tensor
    peak x the preset's GEMM fraction or `GEMM_FAMILY`'s prior, the DRAM bandwidth x the copy fraction:
    `gemm_launch_params`; the whole peak and bandwidth with `roofline` timing): the bound such a GEMM approaches.
    Elementwise passes stream at the family's DRAM efficiency (0.54) and draw less. Not bounded here: an attention
    kernel above the GEMM's share of the peak (FlashAttention-2's forward on an A100, mma.sync at the full rate,
    reaches 0.74 of it at 128K tokens, above the 0.7 prior, with under 1 % of the bandwidth: it draws more only
    where a DRAM byte costs less than about 4 FLOPs, 14 at the kernel's MMA efficiency of 0.83; the shipped prices'
    is 101; on Hopper it runs at half rate). fp16 stays the binding width (`word_problem`'s widths): an fp8 FLOP
    costs half an fp16 one (`arithmetic_energy`), so fp8 tensor cores draw the fp16 arithmetic power x fp8 peak / (2
    x fp16 peak), 1 where a sheet doubles the rate (B200, H100 PCIe, H20) and at most 1.00014 on the other shipped
    presets but L40S (733 / 724.1 = 1.012: its fp8 GEMM's arithmetic 1.2 % above this bound's, the bound not
    raised for it); 1-byte words on a GPU without fp8 run at the fp16 rate and price."""
    from archsim.gpu.params import load_calibration

    if timing == ROOFLINE:
        tensor = dram = 1.0
    else:
        params = gemm_launch_params(gpu, load_calibration().family_params(GEMM_FAMILY))
        tensor, dram = params["gemm_efficiency"], params["hbm_efficiency"]
    return energy.static_w + energy.energy_j(gpu.dram_bytes_per_s * dram, gpu.tensor_peak_flops_per_s("fp16") * tensor)


def _runs_batched(op: Op) -> bool:
    """Whether a batch's decode attention ops of `op`'s cascade run as one call (module docstring)."""
    return op.cascade in KERNEL_CASCADES or op.cascade in FUSED_DECODE_CASCADES


def _head_sizes(params: Mapping[str, float]) -> tuple[int, int, int]:
    """(query heads, KV heads, head_dim) of an attention op's binding (KV heads = heads without GQA)."""
    return int(params["heads"]), int(params.get("kv_heads", params["heads"])), int(params["head_dim"])


def calibrated_gpu_device(gpu: GPU, kernel: str = ATTENTION_KERNEL, *, name: str | None = None,
                          energy: ActionEnergy | None = None, kind: str = "gpu", timing: str = CALIBRATED,
                          memory_utilization: float = 1.0, source: str = "<python>") -> GpuDevice:
    """`gpu` as a device with the packaged calibration: GEMMs and elementwise passes at `GEMM_FAMILY`'s parameters,
    attention by `kernel` at its family's (a SpecError at `kernel` for a kernel the GPU model has no family of)."""
    from archsim.gpu.params import load_calibration
    from archsim.model.gpu_kernels import family_of

    family = family_of(kernel)
    if family is None:
        raise SpecError("<python>", "kernel", f"no model for attention kernel {kernel!r}")
    calibration = load_calibration()
    return GpuDevice(name or gpu.name, gpu, calibration.family_params(GEMM_FAMILY), kernel,
                     calibration.family_params(family), energy, kind=kind, timing=timing,
                     memory_utilization=memory_utilization, source=source)


def attention_kernel_problem(kernel: object, gpu: GPU, decode_only: bool = False) -> str:
    """Why `kernel` cannot be a GPU device's attention kernel ("" when it can): it must be a kernel of
    `archsim.model.gpu_kernels` with a plan for decode and for causal prefill attention (`PROBE_CASES`), or for
    decode alone with `decode_only` (a memory-pool device runs decode attention only)."""
    from archsim.model.gpu_kernels import KERNELS

    if not isinstance(kernel, str) or kernel not in KERNELS:
        return f"{kernels_expected(gpu, decode_only)}, got {kernel!r}"
    usable = _serving_kernels(gpu, decode_only)
    missing = _missing_path(kernel, gpu, decode_only)
    paths = "a decode path, as a memory pool runs decode attention" if decode_only else \
        "decode and prefill paths, as a GPU device runs both"
    return f"expected a kernel with {paths} ({', '.join(usable)}); {kernel!r} has {missing}" if missing else ""


def kernels_expected(gpu: GPU, decode_only: bool = False) -> str:
    """What a GPU device's attention kernel is expected to be: the kernels with the paths it runs on `gpu`
    (`attention_kernel_problem`)."""
    usable = ", ".join(_serving_kernels(gpu, decode_only))
    return f"expected an attention kernel of archsim.model.gpu_kernels ({usable})"


def _serving_kernels(gpu: GPU, decode_only: bool = False) -> list[str]:
    """The kernels of `archsim.model.gpu_kernels` a GPU device may serve attention with on `gpu`: those with every
    probe case's path (`_missing_path`; `decode_only`: a memory pool's decode path alone)."""
    from archsim.model.gpu_kernels import KERNELS

    return [name for name in KERNELS if not _missing_path(name, gpu, decode_only)]


def _missing_path(kernel: str, gpu: GPU, decode_only: bool = False) -> str:
    """The first probe case `kernel` has no plan for, with the reason ("" when it has all)."""
    from archsim.model.gpu_kernels import plans

    for direction, causal in PROBE_CASES:
        if decode_only and direction != "decode":
            continue
        found = plans(kernel, AttentionCase(direction, 1, 8, 2, 128, 256, causal, "fp16"), gpu)
        if isinstance(found, str):
            return f"no {'decode' if direction == 'decode' else 'prefill'} path: {found}"
    return ""


def _writes_output(op: Op, einsums: tuple[str, ...]) -> bool:
    """Whether a GEMM of `einsums` writes the op's output (a tensor of role activations_out), which it writes at
    `Op.output_word_bytes` (an fp8 FFN's W2 GEMM writes bf16); a GEMM writing an intermediate writes it at the
    op's word size."""
    roles = op.tensor_roles
    return any(roles[e.output.tensor] == ACTIVATIONS_OUT for e in op.binding.cascade.einsums if e.name in einsums)


def _elementwise_bytes(op: Op, in_gemms: set[str]) -> float:
    """DRAM bytes of the op's Einsums outside its GEMMs (`_elementwise_tensors`): each tensor's bytes times the
    share of its elements its producer computes (a masked Einsum's kept points: the MoE experts' intermediates of
    the routed (token, expert) pairs only, top_k / experts of them, as the GEMMs count them)."""
    sizes, roles = op.tensor_bytes, op.tensor_roles
    # the op's output is written whole, at its own width (an fp8 FFN's: bf16): Y sums every token's routed experts
    out = op.output_word_bytes / op.binding.word_bytes
    return float(sum(sizes[t] * (out if roles[t] == ACTIVATIONS_OUT else _written_share(op, t))
                     for t in _elementwise_tensors(op.cascade, op.binding.cascade, tuple(sorted(in_gemms)))))


def _written_share(op: Op, tensor: str) -> float:
    """The share of `tensor`'s elements that the Einsum writing it computes (`gemms.einsum_density`); 1 for a
    tensor no Einsum of the op writes."""
    writer = writer_of(op, tensor)
    return 1.0 if writer is None else einsum_density(op, writer)


@identity_cache(4096)  # a serving run costs the same cascade at many sizes
def _elementwise_tensors(name: str, cascade: Cascade, in_gemms: tuple[str, ...]) -> tuple[str, ...]:
    """The tensors library cascade `name`'s Einsums outside its GEMMs (`in_gemms`) move through DRAM: with GEMMs in
    the op, the intermediates those Einsums read or write and the op's output where one of them writes it (a MoE
    layer's combine of its experts' outputs, Y; MLA prefill's normalised AV); without, every tensor of the op (a
    norm or a residual add); none without such Einsums. They depend on the cascade and its GEMMs alone. In name
    order: their bytes are summed in this order, which a set's (per process, by string hash) would change in the
    last digits."""
    einsums = [e for e in cascade.einsums if e.name not in in_gemms]
    if not einsums:
        return ()
    roles = tensor_roles_of(name, cascade)
    if not in_gemms:
        return tuple(t for t in cascade.tensors if roles[t] != INTERMEDIATE)
    from archsim.cascade.passes import refs_of

    touched = {e.name for e in einsums} | {r.tensor for e in einsums for r in refs_of(e)}
    written = {e.name for e in einsums}  # an Einsum's name is its output tensor's
    return tuple(sorted(t for t in touched
                        if roles[t] == INTERMEDIATE or (t in written and roles[t] == ACTIVATIONS_OUT)))
