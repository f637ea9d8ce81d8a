"""A prompt's prefill alone must fit the serving engine's share of a GPU's memory (`SystemModel.prompt_memory`):
the weights, the prompt's own KV cache and one layer's working set (`archsim.systems.working_set`)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.systems.iteration import Batch
from archsim.systems.neupims import system
from archsim.systems.requests import Request
from archsim.systems.serving import simulate_serving
from archsim.systems.step import UnrunnableOp

ONE_H100 = {"devices.gpu.count": 1, "parallelism.tp": 1, "parallelism.by_workload": {}}
H100_ENGINE_BYTES = 0.9 * 80 * 2**30  # vllm-h100: gpu_memory_utilization 0.9 of an H100's 80 GiB
# Llama-3-8B per token, 2-byte words: K and V of 8 heads x 128 over 32 layers; the working set is the layer input
# (hidden 4096) beside the FFN, its input and output (4096 each) and hidden H1, H3 and A (14336 each)
KV_BYTES_PER_TOKEN = 2 * 8 * 128 * 2 * 32
WORKING_BYTES_PER_TOKEN = 2 * (3 * 4096 + 3 * 14336)


def _one_h100(workload: str = "llama3-8b"):
    return system("vllm-h100", workload, changes=ONE_H100)


def test_a_prompts_memory_is_weights_its_kv_and_one_layers_working_set():
    model = _one_h100()
    memory = model.prompt_memory(1000)
    assert memory.kv_bytes == 1000 * KV_BYTES_PER_TOKEN
    assert memory.working_bytes == 1000 * WORKING_BYTES_PER_TOKEN
    assert memory.weights_bytes == model.weight_bytes_per_device
    assert model.prompt_memory_bytes == pytest.approx(H100_ENGINE_BYTES)


def test_the_longest_prompt_that_fits_runs_and_one_token_more_does_not():
    model = _one_h100()
    per_token = KV_BYTES_PER_TOKEN + WORKING_BYTES_PER_TOKEN
    longest = int((model.prompt_memory_bytes - model.weight_bytes_per_device) // per_token)
    assert 250_000 < longest < 256_000  # 253K on an H100 at 0.9
    assert model.iteration(Batch((longest,), ())).time_s > 0
    with pytest.raises(UnrunnableOp, match=f"a prompt of {longest + 1} tokens .* exceeds the 77.3 GB"):
        model.iteration(Batch((longest + 1,), ()))
    with pytest.raises(UnrunnableOp):  # the longest prompt of a batch decides, beside decodes
        model.iteration(Batch((10, longest + 1), (500, 600)))


def test_a_serving_run_refuses_the_prompt_and_serves_the_rest():
    model = _one_h100()
    requests = [Request(0, 0.0, 300_000, 4), Request(1, 0.1, 1000, 4)]
    result = simulate_serving(model, requests)
    assert result.rejected_ids == (0,) and result.unrunnable_ids == (0,)
    assert "a prompt of 300000 tokens" in result.unrunnable_reason and "working set" in result.unrunnable_reason
    assert [r.id for r in result.requests] == [1]
    # the refused prompt's 18750 pages were given back before any iteration ran: the peak is request 1's
    assert result.peak_pages == -(-(1000 + 4 - 1) // 16)


def test_pipeline_stages_hold_their_own_layers_and_weights():
    """At pp 2 each stage holds half the layers' KV; the stage filling most (weights + KV) is the one reported."""
    one, two = _one_h100(), system("vllm-h100", "llama3-8b", changes={**ONE_H100, "devices.gpu.count": 2,
                                                                       "parallelism.pp": 2})
    assert two.prompt_memory(1000).kv_bytes == one.prompt_memory(1000).kv_bytes / 2
    assert two.prompt_memory(1000).weights_bytes == max(two.stage_weight_bytes) < one.weight_bytes_per_device


def test_a_moe_prompt_holds_the_routed_share_of_its_experts_activations():
    """Mixtral routes each token to 2 of 8 experts: its FFN's hidden activations (H1, H3, A: 8 experts x 3584 at
    tp 4) and the experts' outputs (8 x 4096) are held for the routed pairs only, a quarter."""
    model = system("vllm-h100", "mixtral-8x7b", changes={"parallelism.by_workload": {}})
    routed = 2 * (3 * 4096 + 3 * 8 * 3584 * 2 // 8 + 8 * 4096 * 2 // 8)  # layer input, X, Y; H1, H3, A; O
    working = model.prompt_memory(1000).working_bytes / 1000
    assert routed <= working < routed + 64  # and the router's few logits and gates a token


def test_a_system_without_a_gpu_holding_the_weights_is_not_checked():
    model = system("npu-only", "gpt3-7b")
    assert model.prompt_memory_bytes is None
    assert model.iteration(Batch((200_000,), ())).time_s > 0


def test_simulate_prints_why_a_prompt_was_refused(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,300000,4\n0.1,1000,4\n")
    spec = tmp_path / "one.yaml"
    spec.write_text("name: one-h100\nbase: vllm-h100\ndevices: {gpu: {count: 1}}\nlinks: {tp: null}\n"
                    "parallelism: {tp: 1, by_workload: {}}\n")
    result = CliRunner().invoke(main, ["simulate", "--system", str(spec), "--workload", "llama3-8b",
                                       "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    assert "1 whose prefill the system cannot run" in result.output
    assert "memory per gpu device 88.6 GB" in result.output
