"""What one device of a sequence-parallel group computes, and how long it takes: the GPU model's costs of attention
blocks, linear-attention chunks and a layer's dense ops, for `archsim.systems.seqpar_schemes`.

- Softmax-attention blocks (`DeviceCompute.attention_s`): one call of the GPU attention kernel
  (`archsim.model.gpu_kernels`, FlashAttention-2 by default) per block of q query tokens against k key tokens, the
  heads and KV heads one device holds. A causal block is a square one with the causal mask (the diagonal block of a
  ring). The kernel model takes square problems, so a rectangular full block of q x k (a zigzag half chunk, a
  query chunk against every earlier key) is modelled as m = max/min calls' worth of square min x min blocks in one
  launch (batch x m): the same tiles and bytes, spread over m times the CTAs (assumption: the wave quantisation of
  a long key loop inside fewer CTAs is not modelled). `fwd+bwd` is the kernel's forward and backward, each block
  timed without the host gap before a backward (`autograd_s`): a layer's blocks run inside one timed call, whose
  one gap `autograd_gap_s` adds (`archsim.systems.seqpar`). A call
  whose operands (and what the kernel materialises) exceed the GPU's DRAM is refused (`BeyondDram`, a SpecError
  naming the kernel, the sequences and their tokens on the GPU, which `seqpar.parallel_time` makes an infeasible
  point), unless the device is the one-device reference (`check_memory` False: `seqpar`'s ideal of a length one
  GPU cannot hold): that call is timed by the same plans with only the DRAM check left out
  (`archsim.model.gpu.plan_memory_problem`; a CTA that does not fit an SM still refuses it, a plain SpecError).
  The same holds for the decode kernel's and the linear-attention chunks' calls.
- Linear-attention chunks (`linear_chunk_s`): one call of archsim's Lightning Attention-2 Triton kernel
  (`LINEAR_KERNEL`, kernels/lightning.py: the library cascade `lightning-attention-2`, Qin et al. 2024, no decay,
  `LINEAR_BLOCK` tokens per block) on the chunk's tokens and the device's heads, timed by the GPU kernel model
  (`archsim.model.gpu_baseline_plans`, validated on H200 runs of that kernel): a program per head and 64 value columns
  walking the chunk's blocks in order, at the next power of two of the head_dim, at least 16 (`linear_head_dim`: an
  extrapolation beyond the 16-128 the kernel itself runs). A grouped-query model's K and V are read per query head
  (repeated). The backward, which the kernel lacks, is taken as twice the forward (dQ, dK, dV need two products
  for each forward one), an assumption: Lightning Attention-2's published backward takes 3.1-4.1x its forward
  (../shared/reference/gpu.md §1.7), a kernel this model does not describe.
- State products (`state_gemm_s`): one device's d x d state per head (a chunk's K^T V, or Q times a received
  state) is a GEMM launch of the `lasp2-linear-attention` cascade's M over the chunk (2 B H c d^2 FLOPs), its K, V
  and the fp32 state.
- The LM head (`lm_head_s`): the `output-projection` cascade from hidden onto the vocab over the device's tokens
  (`archsim.systems.step.lm_head_op`), costed by the GPU device; its backward as twice the forward.
- Dense ops (`dense_s`): the decoder layer's other ops (`archsim.systems.step.layer_ops` of the device's shard:
  heads, KV heads and FFN width / tp) for the device's tokens, costed by the GPU device; the backward as twice
  the forward (dX and dW). Its norms and residual adds (`SEQUENCE_PARALLEL_OPS`) may run on fewer tokens than its
  GEMMs: Megatron-SP's sequence-parallel regions, each device's N / P tokens beside GEMMs over all N. A model
  mixing dense and MoE layers (`moe_every` > 1) is its mean layer, each kind's ops weighted by its count of layers
  (`step.non_attention_kinds`), as `seqpar` makes a hybrid model's layer.
Precision bf16 (the papers' runs); FLOPs, bytes and tiles come from the cascades and the kernel model, nothing is
counted here.

Arrays (`ArrayCompute`, a topology whose devices are `topology.ArrayDevice`: an architecture and library mappings,
not a GPU): each softmax-attention block a scheme runs is one design point of the analytical model
(`archsim.systems.architecture_device.ArchitectureDevice`: `archsim.point.prepare` and
`archsim.model.analytical.evaluate`, so a block costs what `archsim run -m MAPPING --set ...` prints for its sizes),
bound to the block's sizes: `batch` sequences, the device's heads and K/V heads, `head_dim`, the block's tokens as
`seq_len`, bf16. A causal (diagonal) block runs the array's `causal_mapping` (FuseMax's: fusemax-gqa,
attention-1pass-causal-gqa, whose tile mask skips the key tiles above the diagonal), a full block its `mapping`
(FuseMax's: fusemax-gqa-noncausal, attention-1pass-gqa, each K/V tile serving its group's query heads; a mapping of
an MHA cascade, such as fusemax's attention-1pass, refuses a grouped-query block naming `device.mapping`, not
costing it as repeated heads). The cascades are square (queries and keys both `seq_len`), so a block
is first padded on both sides to the mapping's sequence tile (`architecture_device.sequence_tile`: FuseMax's 256
keys), as the array pads a block once (a 128 x 256 block is one padded 256 x 256 square, not two), and the padded
rectangle is then covered exactly by squares (`square_cover`, Euclid's: as many squares of the short side as fit,
then the remaining strip likewise; a padded 512 x 768 block is a 512 x 512 square and two 256 x 256 ones, every
side a multiple of the tile), the squares of one side one point (batch x their count), the points run one after
another: the same MACs and exps as the padded block. Assumptions: each square reads its own operands from DRAM
where one resident copy of the block's would do (an upper bound on its DRAM traffic: a small square is DRAM-bound,
so a rectangle costs more than a one-pass block of the same tiles, a causal diagonal's), and merging the squares'
partial softmaxes (O(q d) per square against its O(q k d)) is not costed. A block's energy (`attention_j`) is its
points' Results' (all its heads and squares); an array running no block draws its memories' leakage (`idle_w`):
what `archsim.systems.seqpar` sums into the devices' energy. Forward attention only: the backward,
decode, LASP's chunks and a layer's other ops have no array form here (`seqpar_spec.check_array` refuses them,
naming the field).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from archsim import library
from archsim.arch.gpu import GPU
from archsim.cascade.analysis import einsum_counts, tensor_infos
from archsim.cascade.bind import bind
from archsim.cascade.ir import Cascade
from archsim.errors import SpecError
from archsim.mapping.spec import Mapping as MappingSpec
from archsim.memo import identity_cache
from archsim.model.analytical import numbers_of
from archsim.model.gpu import AttentionCase, GemmLaunch, GpuResult, gemm_launch_time
from archsim.model.gpu_baseline_plans import LIGHTNING_HEAD_DIMS
from archsim.model.gpu_flash_plans import compiled_head_dim
from archsim.model.gpu_kernels import predict
from archsim.model.result import Result
from archsim.record import PJ_PER_J
from archsim.spec_files import spec_beside
from archsim.systems.architecture_device import ArchitectureDevice, sequence_tile
from archsim.systems.gpu_device import GpuDevice, calibrated_gpu_device
from archsim.systems.sharding import shard as tp_shard
from archsim.systems.step import Op, Step, library_cascade, lm_head_op, non_attention_kinds
from archsim.systems.system_checks import uncut_size
from archsim.systems.system_types import Parallelism
from archsim.systems.topology import WORD_BYTES, ArrayDevice  # WORD_BYTES: bf16, every block's and send's words
from archsim.workload import Workload, max_size

PRECISION = "bf16"
STATE_BYTES = 4  # fp32: a linear-attention state, as LASP's code keeps it
DECODE_KERNEL = "Flash-Decoding"  # FlashAttention-2's split-KV decode
LINEAR_KERNEL = "archsim Lightning Attention-2 (Triton)"  # kernels/lightning.py, the linear-attention chunk
LINEAR_BLOCK = 64  # tokens per intra-chunk block of the linear-attention kernel (Lightning Attention-2's BLOCK)
LASP_CASCADE = "lasp2-linear-attention"  # a LASP chunk's state products and state bytes
BACKWARD_FACTOR = 2.0  # a backward's work over its forward's, for ops without a modelled backward kernel
SOURCE = "<parallel>"
# A layer's norms and residual adds (`step.layer_ops`' names): Megatron-SP's sequence-parallel regions (Korthikanti et
# al. 2022 §4.2.2: LayerNorm, dropout and the residual on each device's N / P shard; its all-gather after the norm,
# its reduce-scatter before the residual), where the GEMMs between them run all N tokens on 1/P of the weights
SEQUENCE_PARALLEL_OPS = ("attn_norm", "attn_residual", "ffn_norm", "ffn_residual")


class BeyondDram(SpecError):
    """A kernel call the GPU model refuses for the GPU's DRAM alone (without that check it would time it): the point
    does not fit in memory, which `seqpar.parallel_time` records as an infeasible point rather than an error."""


class HeldTensors:
    """The bytes of what a device of `batch` sequences holding `heads` query heads and `kv_heads` K/V heads of
    `head_dim` sends, from library cascades (bf16): shared by `DeviceCompute` and `ArrayCompute`, whose fields
    these are."""

    batch: int
    heads: int
    kv_heads: int
    head_dim: int

    def attention_bytes(self, tokens: int) -> dict[str, int]:
        """Bytes of Q, K, V and the output AV of the device's heads over `tokens` tokens: the tensors of the library
        cascade `attention-1pass-causal-gqa` bound to them (bf16), what the schemes move between devices."""
        cascade = library.load_cascade_spec("attention-1pass-causal-gqa")
        binding = bind(cascade, {"batch": self.batch, "heads": self.heads, "kv_heads": self.kv_heads,
                                 "seq_len": tokens, "head_dim": self.head_dim, "tile_kv": tokens,
                                 "word_bytes": WORD_BYTES})
        return {t.name: t.bytes for t in tensor_infos(binding) if t.kind != "intermediate"}

    def hidden_bytes(self, tokens: int, hidden: int) -> int:
        """Bytes of a layer's input X of `tokens` tokens (the `qkv-projection` cascade's X, bf16)."""
        cascade = library.load_cascade_spec("qkv-projection")
        binding = bind(cascade, {"batch": self.batch, "seq_len": tokens, "hidden": hidden, "heads": self.heads,
                                 "kv_heads": self.kv_heads, "head_dim": self.head_dim, "word_bytes": WORD_BYTES})
        return binding.bytes("X")


@dataclass(frozen=True)
class DeviceCompute(HeldTensors):
    """One device's compute: a GPU, its attention kernel, and the sizes it holds (heads / tp). `check_memory` False
    times kernel calls whose operands exceed the GPU's DRAM (the one-device reference; module docstring)."""

    gpu: GPU
    kernel: str
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    direction: str  # fwd | fwd+bwd
    check_memory: bool = True

    @functools.cached_property
    def device(self) -> GpuDevice:
        return calibrated_gpu_device(self.gpu, self.kernel)

    @functools.cached_property
    def _blocks(self) -> dict[tuple, float]:
        """Kernel calls already timed, by (kind, sizes)."""
        return {}

    @functools.cached_property
    def _chunks(self) -> dict[int, float]:
        return {}

    @functools.cached_property
    def _block_params(self) -> Mapping[str, float]:
        """The attention kernel's parameters for one block: a backward's host gap (`autograd_s`) left out, since a
        scheme's blocks of one layer run inside one autograd backward (`autograd_gap_s` adds it once)."""
        params = self.device.kernel_params
        return {**params, "autograd_s": 0.0} if "autograd_s" in params else params

    def autograd_gap_s(self, forward_s: float) -> float:
        """The GPU's idle time before a timed call's backward starts: the host's `autograd_s` from
        `loss.backward()` to its first kernel, less the `forward_s` the GPU still runs of the same call (the GPU
        model's rule, `archsim.model.gpu.plan_time`); 0 for a forward."""
        if self.direction != "fwd+bwd":
            return 0.0
        return max(0.0, self.device.kernel_params.get("autograd_s", 0.0) - forward_s)

    def attention_s(self, q_tokens: int, k_tokens: int, causal: bool, heads: int | None = None,
                    kv_heads: int | None = None) -> float:
        """One kernel call: q query tokens against k keys (causal: q == k, the diagonal block), 0 for no work."""
        if q_tokens == 0 or k_tokens == 0:
            return 0.0
        heads = self.heads if heads is None else heads
        kv_heads = self.kv_heads if kv_heads is None else kv_heads
        key = ("block", q_tokens, k_tokens, causal, heads, kv_heads)
        if key not in self._blocks:
            self._blocks[key] = self._attention(q_tokens, k_tokens, causal, heads, kv_heads)
        return self._blocks[key]

    def attention_case(self, q_tokens: int, k_tokens: int, causal: bool, heads: int, kv_heads: int
                       ) -> tuple[AttentionCase, int]:
        """(the GPU model's case of one call over a q x k block of `heads` heads, the square calls it is timed as):
        a rectangle is max/min square calls of its short side in one launch, a ragged last block counted whole
        (its CTAs run)."""
        small, large = min(q_tokens, k_tokens), max(q_tokens, k_tokens)
        calls = -(-large // small)
        return AttentionCase(self.direction, self.batch * calls, heads, kv_heads, self.head_dim, small, causal,
                             PRECISION), calls

    def _attention(self, q_tokens: int, k_tokens: int, causal: bool, heads: int, kv_heads: int) -> float:
        if causal and q_tokens != k_tokens:
            raise SpecError(SOURCE, "seq_len", f"a causal block must be square, got {q_tokens} x {k_tokens}")
        case, calls = self.attention_case(q_tokens, k_tokens, causal, heads, kv_heads)
        # a rectangle timed as `calls` squares holds its short side's Q and O once, not `calls` times: the GPU
        # model's operand check would overcount them, so only a square call is checked here (the memory model,
        # `seqpar_memory`, holds the rectangle's real bytes)
        return self._call_s(self.kernel, case, self._block_params, "kernel",
                            lambda reason: self.refusal(q_tokens, k_tokens, reason), check_memory=calls == 1)

    def refusal(self, q_tokens: int, k_tokens: int, reason: str) -> str:
        """Why the kernel does not run a q x k call, `reason` being the GPU model's (`GpuResult.reason`)."""
        return (f"{self.kernel} cannot run {self._sequences()}{q_tokens} x {k_tokens} tokens on {self.gpu.name}: "
                f"{reason}")

    def _sequences(self) -> str:
        """'64 sequences of ' for a batch above one, as a refusal names the call's rows."""
        return f"{self.batch} sequences of " if self.batch > 1 else ""

    def _call_s(self, kernel: str, case: AttentionCase, params: Mapping[str, float], where: str,
                refusal: Callable[[str], str], check_memory: bool = True) -> float:
        """The time of one call of `kernel` on `case` (`_predict`). A call it refuses is a SpecError at `where`, the
        field the refusal blames, saying `refusal(reason)`: a `BeyondDram` when the GPU's DRAM alone refuses it
        (timed without that check it runs), which the point records as not fitting rather than blaming a field."""
        result = self._predict(kernel, case, params, check_memory)
        if result.feasible:
            return result.time_s
        dram_alone = self._predict(kernel, case, params, check_memory=False).feasible
        raise (BeyondDram if dram_alone else SpecError)(SOURCE, where, refusal(result.reason))

    def _predict(self, kernel: str, case: AttentionCase, params: Mapping[str, float],
                 check_memory: bool = True) -> GpuResult:
        """The GPU model's call of `kernel` on `case`; without `check_memory` (the device's or the call's), a call it
        would refuse for DRAM alone is timed by the fastest of its plans whose CTAs fit an SM (`runnable_plans`)."""
        return predict(kernel, case, self.gpu, params, check_memory=self.check_memory and check_memory)

    def decode_s(self, keys: int, heads: int | None = None, kv_heads: int | None = None) -> float:
        """One decode step's attention (a query per sequence) over `keys` cached tokens: the `DECODE_KERNEL` call."""
        heads = self.heads if heads is None else heads
        kv_heads = self.kv_heads if kv_heads is None else kv_heads
        key = ("decode", keys, heads, kv_heads)
        if key not in self._blocks:
            case = AttentionCase("decode", self.batch, heads, kv_heads, self.head_dim, keys, False, PRECISION)
            decoder = calibrated_gpu_device(self.gpu, DECODE_KERNEL)
            self._blocks[key] = self._call_s(DECODE_KERNEL, case, decoder.kernel_params, "seq_len",
                                             lambda reason: f"{DECODE_KERNEL} cannot read {self._sequences()}{keys} "
                                                            f"keys on {self.gpu.name}: {reason}")
        return self._blocks[key]

    def distattention_bytes(self, keys: int, devices: int) -> dict[str, float]:
        """Bytes of each tensor of the `distattention-decode` cascade bound to `keys` cached tokens over `devices`
        holders of the device's heads (bf16): its transfers QD (the query to each holder) and PM, PD, PNV (each
        holder's partial back) cover all `devices` holders."""
        cascade = library.load_cascade_spec("distattention-decode")
        binding = bind(cascade, {"batch": self.batch, "heads": self.heads, "kv_heads": self.kv_heads,
                                 "seq_len": keys, "head_dim": self.head_dim, "devices": devices,
                                 "word_bytes": WORD_BYTES})
        return {t.name: float(t.bytes) for t in tensor_infos(binding)}

    def lasp_state_bytes(self, tokens: int, devices: int) -> float:
        """Bytes of one device's chunk state M of the `lasp2-linear-attention` cascade bound to `tokens` over
        `devices` (bf16; M holds every device's, so one device's is 1/devices of it)."""
        cascade = library.load_cascade_spec(LASP_CASCADE)
        binding = bind(cascade, {"batch": self.batch, "heads": self.heads, "seq_len": tokens,
                                 "head_dim": self.head_dim, "devices": devices, "word_bytes": WORD_BYTES})
        return binding.bytes("M") / devices

    def _factor(self) -> float:
        return 1.0 + (BACKWARD_FACTOR if self.direction == "fwd+bwd" else 0.0)

    def linear_chunk_s(self, tokens: int) -> float:
        """Causal linear attention inside one chunk of `tokens` (the chunk's own keys only), fwd or fwd+bwd."""
        if tokens not in self._chunks:
            if tokens % min(LINEAR_BLOCK, tokens):
                raise SpecError(SOURCE, "seq_len", f"a linear-attention chunk of {tokens} tokens is not a whole "
                                                   f"number of {LINEAR_BLOCK}-token blocks")
            head_dim = linear_head_dim(self.head_dim) or self.head_dim  # beyond them: the kernel model's refusal
            case = AttentionCase("fwd", self.batch, self.heads, self.heads, head_dim, tokens, True, PRECISION,
                                 "linear")
            # the chunk's kernel is LASP's, not --kernel: a refusal blames what the user can change
            self._chunks[tokens] = self._call_s(
                LINEAR_KERNEL, case, calibrated_gpu_device(self.gpu, LINEAR_KERNEL).kernel_params, "head_dim",
                lambda reason: f"LASP's chunks run {LINEAR_KERNEL}, which cannot run a chunk of {self._sequences()}"
                               f"{tokens} tokens of head_dim {self.head_dim} on {self.gpu.name}: {reason}")
        return self._chunks[tokens] * self._factor()

    def state_gemm_s(self, tokens: int) -> float:
        """One d x d state product per head over `tokens` tokens (K^T V, or Q times a state: the same shapes), fwd
        or fwd+bwd: a GEMM launch of the `lasp2-linear-attention` cascade's chunk state M = sum(c: K V) on one
        device's chunk, its FLOPs and the bytes of K, V (bf16) and M (fp32, `STATE_BYTES`)."""
        launch = _state_launch(self.batch, self.heads, self.head_dim, tokens)
        return gemm_launch_time(launch, self.gpu, self.device.params).time_s * self._factor()

    def lm_head_s(self, workload: Workload, tokens: int, tp: int = 1) -> float:
        """The LM head over `tokens` tokens of each of `batch` sequences on one of `tp` ranks (`step.lm_head_op`:
        hidden onto the vocab, cut tp ways; every token's logits, as a training loss needs), fwd or fwd+bwd."""
        op = lm_head_op(workload, self.batch * tokens, tp)
        return self.device.cost([op]).time_s * self._factor()

    def elementwise_s(self, dram_bytes: float) -> float:
        """An elementwise pass (a state add, a prefix sum) over `dram_bytes`."""
        return self.device.elementwise_s(dram_bytes) if dram_bytes else 0.0

    def dense_s(self, shard: Workload, tokens: int, region_tokens: int | None = None) -> float:
        """The layer's ops but attention (norms, projections, FFN, residuals) for `tokens` tokens of `batch`
        sequences on the device's shard, fwd or fwd+bwd, its norms and residual adds (`SEQUENCE_PARALLEL_OPS`) for
        `region_tokens` (None: `tokens`; Megatron-SP's N / P): of a model mixing dense and MoE layers the mean
        layer, each kind's weighted by its count (`step.non_attention_kinds`; a result is one layer, `seqpar`)."""
        kinds = non_attention_kinds(shard, Step("prefill", self.batch, tokens))
        if region_tokens is not None and region_tokens != tokens:
            regions = non_attention_kinds(shard, Step("prefill", self.batch, region_tokens))
            kinds = tuple((kind, [region if op.name in SEQUENCE_PARALLEL_OPS else op
                                  for op, region in zip(ops, region_ops, strict=True)], count)
                          for (kind, ops, count), (_, region_ops, _) in zip(kinds, regions, strict=True))
        layers = sum(count for *_, count in kinds)
        return sum(count / layers * self.device.cost(ops).time_s for _, ops, count in kinds) * self._factor()


@dataclass(frozen=True)
class ArrayCompute(HeldTensors):
    """One device's compute on an array (`topology.ArrayDevice`): each attention block the scheme runs, of the
    device's heads, through the analytical model under the array's mappings (module docstring, "Arrays"). Forward
    only: `direction` is there for the schemes' `replace(compute, direction=...)`, and another than fwd is
    refused (`seqpar_spec.check_array` refuses it first, naming the field)."""

    array: ArrayDevice
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    direction: str = "fwd"
    # blocks already costed, by sizes: the analytical model's Results of each one's points. `replace` hands the one
    # dict on, so the schemes' views of this compute (`seqpar_schemes`: fwd again, usp's heads / u, held in the key)
    # cost into it, and the energy (`seqpar._energy_j`) finds every block the timing costed
    costed: dict[tuple, tuple[Result, ...]] = field(default_factory=dict, compare=False, repr=False)

    def attention_s(self, q_tokens: int, k_tokens: int, causal: bool, heads: int | None = None,
                    kv_heads: int | None = None) -> float:
        """One block: q query tokens against k keys (causal: q == k, the diagonal block), its points one after
        another; 0 for no work."""
        return sum((result.latency_s for result in self._block(q_tokens, k_tokens, causal, heads, kv_heads)), 0.0)

    def attention_j(self, q_tokens: int, k_tokens: int, causal: bool, heads: int | None = None,
                    kv_heads: int | None = None) -> float:
        """The energy of the block `attention_s` times (its points' Results' `energy_pj`: the array's actions and
        its memories' leakage over the points' cycles), 0 for no work."""
        results = self._block(q_tokens, k_tokens, causal, heads, kv_heads)
        return sum((result.energy_pj for result in results), 0.0) / PJ_PER_J

    @property
    def idle_w(self) -> float:
        """The array's power while it runs no block (waiting on a link): its memories' leakage power, as the
        analytical model charges it (`archsim.model.analytical`: leak per instance x instances x the clock it is
        quoted at); the compute units' leakage is not modelled there, so not here either."""
        numbers = numbers_of(self.array.arch)
        return sum(level.leak_pj_per_cycle * level.leak_clock_hz for level in numbers.levels) / PJ_PER_J

    def _block(self, q_tokens: int, k_tokens: int, causal: bool, heads: int | None,
               kv_heads: int | None) -> tuple[Result, ...]:
        """The Results of one block's points (none for no work), costed once per sizes."""
        if q_tokens == 0 or k_tokens == 0:
            return ()
        if self.direction != "fwd":
            raise SpecError(SOURCE, "direction", f"{self.direction} is not modelled on arrays: expected fwd")
        heads = self.heads if heads is None else heads
        kv_heads = self.kv_heads if kv_heads is None else kv_heads
        key = (self.batch, self.head_dim, q_tokens, k_tokens, causal, heads, kv_heads)
        if key not in self.costed:
            self.costed[key] = self._attention(q_tokens, k_tokens, causal, heads, kv_heads)
        return self.costed[key]

    def _attention(self, q_tokens: int, k_tokens: int, causal: bool, heads: int, kv_heads: int
                   ) -> tuple[Result, ...]:
        if causal and q_tokens != k_tokens:
            raise SpecError(SOURCE, "seq_len", f"a causal block must be square, got {q_tokens} x {k_tokens}")
        where, mapping = block_mapping(self.array, causal)
        cascade = library.load_cascade_spec(spec_beside(mapping.cascade, mapping.source))
        if "kv_heads" not in cascade.params and kv_heads != heads:
            raise SpecError(self.array.source, where, f"{mapping.name} maps {cascade.name}, one K/V head per query "
                                                      f"head: a block of {heads} query heads over {kv_heads} K/V "
                                                      f"heads (grouped-query) is not modelled on it")
        # both sides padded to the mapping's tile once (a 128 x 256 block on 256-token tiles is one padded square,
        # not two), the padded rectangle covered exactly by squares, those of one side one point (module docstring)
        tile = sequence_tile(cascade, mapping.sets)
        q_padded, k_padded = (-(-side // tile) * tile for side in (q_tokens, k_tokens))
        device = ArchitectureDevice(self.array.name, self.array.arch, mapping, self.array.source)
        results = []
        for side, count in square_cover(q_padded, k_padded):
            sizes = {"batch": self.batch * count, "heads": heads, "kv_heads": kv_heads, "seq_len": side,
                     "head_dim": self.head_dim, "tile_kv": side, "word_bytes": WORD_BYTES}
            op = Op("attention", mapping.cascade,
                    bind(cascade, {k: v for k, v in sizes.items() if k in cascade.params}), (), "prefill")
            try:
                results.append(device.result(op))
            except SpecError as error:  # re-raised where the spec names the array, a limit's as a `LimitError`
                raise type(error)(self.array.source, where, error.message) from None
        return tuple(results)


def block_mapping(array: ArrayDevice, causal: bool) -> tuple[str, MappingSpec]:
    """The field and the mapping of `array` that its causal (diagonal) or full blocks run (module docstring,
    "Arrays"). A causal block without `device.causal_mapping` is a SpecError naming that field of the topology file:
    every causal run has such a block (a ring's diagonal, each scheme's causal call), so `seqpar_spec.check_spec`
    and `archsim parallel` refuse it before any block is costed."""
    where = "device.causal_mapping" if causal else "device.mapping"
    mapping = array.causal_mapping if causal else array.mapping
    if mapping is None:
        raise SpecError(array.source, where, "missing: a causal block (a ring's diagonal, a causal prefill) needs a "
                                             "mapping of a causal attention cascade")
    return where, mapping


def square_cover(a: int, b: int) -> list[tuple[int, int]]:
    """An exact cover of an a x b rectangle by squares, [(side, count)], largest first: as many squares of the short
    side as fit along the long one, then the strip left over (the short side x the remainder) likewise, until
    nothing is left (Euclid's algorithm: every side a multiple of gcd(a, b), the last side gcd(a, b) itself)."""
    cover = []
    small, large = sorted((a, b))
    while small:
        cover.append((small, large // small))
        small, large = large % small, small
    return cover


Compute = DeviceCompute | ArrayCompute  # what the softmax schemes cost their blocks on (`seqpar_schemes`)

def one_word_size(workload: Workload) -> Workload:
    """The workload with its FFN at `word_bytes` too: training counts every element at its training precision
    (`seqpar_memory`: `param_bytes` and `activation_bytes` by cascade bytes over `word_bytes`) and runs its GEMMs
    at the attention's, so a serving quantisation (`ffn_word_bytes`) has no part in it."""
    if "ffn_word_bytes" not in workload.params:
        return workload
    return replace(workload, params={k: v for k, v in workload.params.items() if k != "ffn_word_bytes"})


def _state_launch(batch: int, heads: int, head_dim: int, tokens: int) -> GemmLaunch:
    """`DeviceCompute.state_gemm_s`'s launch: `LASP_CASCADE`, as its file reads now (`library.library_cascade`), bound
    to one device holding all `tokens`; remembered per cascade, limit on sizes (`workload.max_size`: the binding
    checks the sizes against it) and sizes, the `STATE_LAUNCHES` latest (a sweep over token counts asks for one per
    count)."""
    return _launch_of(library_cascade(LASP_CASCADE), max_size(), batch, heads, head_dim, tokens)


STATE_LAUNCHES = 4096  # `_state_launch`es remembered: a launch holds a few numbers


@identity_cache(maxsize=STATE_LAUNCHES)
def _launch_of(cascade: Cascade, _size_limit: int, batch: int, heads: int, head_dim: int,
               tokens: int) -> GemmLaunch:
    binding = bind(cascade, {"batch": batch, "heads": heads, "seq_len": tokens, "head_dim": head_dim, "devices": 1,
                             "word_bytes": WORD_BYTES})
    _, ops = einsum_counts(binding)
    dram = binding.bytes("K") + binding.bytes("V") + binding.bytes("M") * STATE_BYTES // WORD_BYTES
    return GemmLaunch("state", 2.0 * ops["M"]["mac"], dram, PRECISION)  # a MAC is two FLOPs


def shard(workload: Workload, tp: int, cut_by: str = "tp") -> Workload:
    """One tensor-parallel rank's sizes (`sharding.shard`), after checking that tp divides the heads, KV heads
    and FFN width (a SpecError naming the size that it does not, and `cut_by`, what the degree is: "tp", or
    Megatron-SP's "tp x P"); a tp that is a multiple of the KV heads keeps one KV head per rank, repeated
    (`sharding.shard`, as Megatron-SP over more devices than KV heads)."""
    size = uncut_size(workload.params, tp, ("heads", "kv_heads", "ffn_dim"))
    if size is not None:
        raise SpecError(workload.path, f"params.{size}", f"expected a multiple of {cut_by} = {tp}, got "
                                                         f"{workload.params[size]:g}")
    return tp_shard(workload, Parallelism(tp=tp, pp=1))


def linear_head_dim(head_dim: int) -> int | None:
    """The head_dim a LASP chunk is timed at: the smallest the Lightning model takes that holds it (the next power
    of two, at least 16; `gpu_baseline_plans.LIGHTNING_HEAD_DIMS`), None beyond them. An extrapolation:
    kernels/lightning.py itself refuses a head_dim other than 16, 32, 64 or 128 (`tl.arange` takes powers of two,
    and its launcher does not pad, as the FlashAttention Triton kernel does); the model times a head as that kernel
    would run it padded."""
    return compiled_head_dim(head_dim, LIGHTNING_HEAD_DIMS)
