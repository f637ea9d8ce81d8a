"""Guards for formulas a mutation audit found no test pinning (the survivors left after session 41's guards): each
test recomputes the quantity from the docstring's reasoning and the inputs, independently of the line it guards.

- FA2's split heuristic (`_split_heuristic`): no split when the grid already fills 80 % of its 2 x SM slots
  (the bound included).
- FA2's backward (`bwd_launch`): its main kernel reads the fp32 log-sum-exp and D of every query row.
- A GPU device's varlen prefill call (`GpuDevice._varlen_attention`): its tensor-core time at peak is each prompt's
  causal FLOPs, not the packed sequence's nor a full mask's.
- LASP-1's in-flight states (`seqpar_memory._scheme_ops`): a device holds its own state and, on more than one
  device, the one received from its predecessor; never more.
- The serving watermark (`_Engine.watermark_pages`): `watermark_fraction` of the cache's pages stays free, rounded
  down to whole pages as vLLM's `int(watermark * num_gpu_blocks)`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_flash_plans import fa2_plans
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.models import system_model
from archsim.systems.requests import Request
from archsim.systems.seqpar_memory import training_memory
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.system_model import device_of
from archsim.systems.system_spec import load_system

H100 = load_gpu("h100-sxm5")  # 132 SMs
FP16_BYTES, FP32_BYTES = 2, 4


# --- FA2's split heuristic: 80 % of the slots --------------------------------------------------------------------


@pytest.mark.parametrize(("sm_count", "ctas"), [(132, 211), (132, 212), (60, 95), (60, 96)])
def test_flash_decoding_splits_only_a_grid_below_80_percent_of_twice_the_sms(sm_count: int, ctas: int) -> None:
    """FA2's num_splits_heuristic (flash_api.cpp) is given 2 x the SM count as its slots and returns one split when
    the grid fills at least 80 % of them: 0.8 x 264 = 211.2 CTAs on the H100's 132 SMs, exactly 96 on a what-if
    60-SM H100 (the bound itself runs unsplit). An MHA decode (no GQA packing) has a CTA per (batch, head): 212 (96)
    of them run unsplit, one launch writing O directly; 211 (95) split, a combine kernel after them. Splitting pays
    below the bound here: 64 key blocks of 128 leave room, and one split fills 211 / 264 = 0.80 (95 / 120 = 0.79)
    of a wave where 5 splits fill 1055 / 1056 (475 / 480), so the heuristic's 85 %-of-the-best rule refuses one."""
    gpu = replace(H100, sm_count=sm_count)
    case = AttentionCase("decode", ctas, 1, 1, 128, 8192, False, "fp16")
    (plan,) = fa2_plans("flash-decoding", case, gpu)
    names = [launch.name for launch in plan.launches]
    if ctas >= 0.8 * 2 * sm_count:
        assert names == ["decode split-KV (1 splits)"]
    else:
        assert names[0] != "decode split-KV (1 splits)" and names[1:] == ["decode combine splits"]


# --- FA2's backward: the log-sum-exp and D per query row ---------------------------------------------------------


def test_fa2_backward_main_kernel_reads_the_fp32_lse_and_d_of_every_query_row() -> None:
    """FA2's backward (Algorithm 2), B = 1, H = 2 heads (MHA), N = 1024, head_dim 80 run at its compiled 96, fp16.
    Its main kernel reads Q, K, V and dO and writes dK and dV (6 x 80 x 2 bytes per row), reads each query row's
    fp32 log-sum-exp (saved by the forward, to recompute P = exp(S - LSE)) and fp32 D = rowsum(dO * O) (the
    preprocessing kernel's; 4 + 4 bytes) and adds into the row's fp32 dQ accumulator, allocated at the compiled width
    (96 x 4 bytes in DRAM). The preprocessing kernel's bytes are pinned in `test_gpu_generality`."""
    batch, heads, n, d, width = 1, 2, 1024, 80, 96
    rows = batch * heads * n
    case = AttentionCase("bwd", batch, heads, heads, d, n, False, "fp16")
    (plan,) = fa2_plans("fa2", case, H100)
    _, main, _ = plan.launches
    lse, delta = FP32_BYTES, FP32_BYTES
    assert main.dram_bytes == rows * (6 * d * FP16_BYTES + lse + delta + width * FP32_BYTES)


# --- A varlen prefill call's tensor-core time: each prompt causal ------------------------------------------------


def test_a_varlen_calls_tensor_time_is_each_prompts_causal_flops_at_peak() -> None:
    """vllm-h100 runs Llama-3-8B at TP 4: 8 query heads of 128 per GPU, fp16, FlashAttention-2, whose prompts of a
    layer run as one varlen call. Its busy time is the call's FLOPs at the fp16 tensor peak, the FlashAttention
    convention per prompt: 4 H n^2 d halved by the causal mask, each prompt attending only to itself (not the packed
    sum(n) tokens to each other)."""
    model = system_model(load_system("vllm-h100"), library.load_workload_spec("llama3-8b"))
    seqlens, heads, head_dim = (100, 300, 1000), 8, 128
    prompts = [model.attention("prefill", n) for n in seqlens]
    device = device_of(model, prompts[0])
    flops = sum(4 * heads * n * n * head_dim / 2 for n in seqlens)
    cost = device.cost(prompts)
    assert cost.busy_s[device.name] == pytest.approx(flops / device.spec.tensor_flops_per_s["fp16"], rel=1e-12)


# --- LASP-1: its own state and the one received ------------------------------------------------------------------


def test_lasp1_holds_its_own_state_and_one_received_whatever_the_ring() -> None:
    """LASP-1 passes each device's d x d state per head to the next device in a ring: a device holds its own and
    the one it received, so one device (receiving nothing) holds one state, any P >= 2 holds two. Training without
    recomputation, 64 tokens per device (so a state, 16 heads x 128^2 x 4 B = 1 MiB, outweighs any op's transient
    64 x 2048 x 4 B = 0.5 MiB): the same tokens per device keep the same tensors, so the activations grow by one
    state from P = 1 to 2 and not at all from 2 to 4 or 8."""
    workload = library.load_workload_spec("linear-llama3-1b")  # 16 heads of 128, hidden 2048
    tokens = 64
    state = int(workload.params["heads"]) * int(workload.params["head_dim"]) ** 2 * FP32_BYTES

    def activations(devices: int) -> float:
        return training_memory(workload, "lasp1", devices, tokens * devices, checkpointing="none").activations_bytes

    one, two = activations(1), activations(2)
    assert two - one == state
    assert activations(4) == two and activations(8) == two


# --- The serving watermark: a fraction of a page keeps the whole page free ---------------------------------------


@dataclass
class _Toy:
    """An IterationModel of one KV byte per token, 1 s per iteration."""

    kv_capacity_bytes: float
    name: str = "toy"
    kv_bytes_per_token: float = 1.0
    static_w: float = 0.0

    def iteration(self, batch: Batch) -> IterationCost:
        return IterationCost(1.0, energy_j=1.0, busy_s={})


@pytest.mark.parametrize(("second_prompt", "first_token_s"), [(89, 1.0), (90, 2.0)])
def test_the_watermark_keeps_whole_pages_rounded_down(second_prompt: int, first_token_s: float) -> None:
    """100 one-token pages, watermark 1.9 %: vLLM keeps int(1.9) = 1 page free. A (10 tokens) is admitted into the
    empty cache (no watermark then); B beside it leaves 100 - 10 - 89 = 1 page free (admitted in the same 1 s
    iteration: its first token at 1 s) or 100 - 10 - 90 = 0 < 1 (it waits for A, of one output token, to finish:
    its first token at 2 s). Rounding 1.9 up or to the nearest would keep 2 pages and make B of 89 wait."""
    requests = [Request(0, 0.0, 10, 1), Request(1, 0.0, second_prompt, 1)]
    result = simulate_serving(_Toy(kv_capacity_bytes=100), requests,
                              ServingConfig(page_tokens=1, watermark_fraction=0.019))
    assert [(r.id, r.first_token_s) for r in result.requests] == [(0, 1.0), (1, first_token_s)]
