"""An iteration with prompts must fit the serving engine's share of a GPU's memory (`SystemModel.check_memory`): the
weights, its requests' KV cache and one layer's working set over its new tokens (`archsim.systems.working_set`); a
prompt that cannot fit alone is refused, a batch that cannot is split (`archsim.systems.serving`)."""

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
    memory = model.iteration_memory(1000, 1000)
    assert memory.kv_bytes == 1000 * KV_BYTES_PER_TOKEN
    assert memory.working_bytes == 1000 * WORKING_BYTES_PER_TOKEN
    assert memory.weights_bytes == model.weight_bytes_per_device
    # a batch: the KV of every request it holds (decodes' contexts, prompts), the working set of its new tokens
    batch = model.iteration_memory(kv_tokens=3000 + 1000, new_tokens=2 + 1000)
    assert (batch.kv_bytes, batch.working_bytes) == (4000 * KV_BYTES_PER_TOKEN, 1002 * WORKING_BYTES_PER_TOKEN)
    assert model.engine_bytes == pytest.approx(H100_ENGINE_BYTES)


def test_the_longest_prompt_that_fits_runs_and_one_token_more_does_not():
    model = _one_h100()
    per_token = KV_BYTES_PER_TOKEN + WORKING_BYTES_PER_TOKEN
    longest = int((model.engine_bytes - model.weight_bytes_per_device) // per_token)
    assert 250_000 < longest < 256_000  # 253K on an H100 at 0.9
    assert model.iteration(Batch((longest,), ())).time_s > 0
    with pytest.raises(UnrunnableOp, match=f"a prompt of {longest + 1} tokens .* exceeds the 77.3 GB"):
        model.iteration(Batch((longest + 1,), ()))
    with pytest.raises(UnrunnableOp, match="a prompt of"):  # the longest prompt alone first, beside decodes
        model.iteration(Batch((10, longest + 1), (500, 600)))
    half = longest // 2 + 1  # two prompts that each fit alone, together not
    with pytest.raises(UnrunnableOp, match=f"an iteration of 2 prompts \\({2 * half} tokens\\) and 0 decodes"):
        model.iteration(Batch((half, half), ()))


def test_the_working_set_is_linear_in_the_tokens():
    """`working_bytes_per_token` scales the one-token layer: it equals the layer bound to T tokens, for a dense and a
    MoE model (every tensor it counts has a token rank)."""
    from archsim.systems.working_set import FFN_OPS, layer_working_bytes

    for model in (_one_h100(), system("vllm-h100", "mixtral-8x7b", changes={"parallelism.by_workload": {}})):
        for tokens, rel in ((1, 1e-3), (17, 1e-12), (1000, 1e-12), (300_000, 1e-12)):
            bound = max(layer_working_bytes(m.ops("prefill", 1, tokens), FFN_OPS) for m in model.by_kind.values())
            assert bound == pytest.approx(model.working_bytes_per_token * tokens, rel=rel)
            assert bound <= model.working_bytes_per_token * tokens  # never more than the check counts


def test_a_serving_run_refuses_the_prompt_and_serves_the_rest():
    model = _one_h100()
    requests = [Request(0, 0.0, 300_000, 4), Request(1, 0.1, 1000, 4)]
    result = simulate_serving(model, requests)
    assert result.rejected_ids == (0,) and result.unrunnable_ids == (0,)
    assert "a prompt of 300000 tokens" in result.unrunnable_reason and "working set" in result.unrunnable_reason
    assert [r.id for r in result.requests] == [1]
    # the refused prompt's 18750 pages were given back before any iteration ran: the peak is request 1's
    assert result.peak_pages == -(-(1000 + 4 - 1) // 16)


def test_a_burst_the_gpu_cannot_hold_at_once_is_prefilled_over_several_iterations():
    """Eight 100K-token prompts at once: each fits alone (253K do), all eight do not (nor the KV of all): the engine
    sends the latest admitted back to the queue until the iteration fits, and every request is served."""
    model = _one_h100()
    requests = [Request(i, 0.0, 100_000, 2) for i in range(8)]
    result = simulate_serving(model, requests)
    assert [r.id for r in result.requests] == list(range(8)) and result.rejected_ids == ()
    assert result.prefill_deferrals > 0
    first_tokens = sorted({r.first_token_s for r in result.requests})
    assert len(first_tokens) > 1  # not all prefilled in one iteration
    per_token = KV_BYTES_PER_TOKEN + WORKING_BYTES_PER_TOKEN
    at_once = int((model.engine_bytes - model.weight_bytes_per_device) // (100_000 * per_token))
    assert at_once == 2  # by hand: two 100K prompts fit beside the weights, three do not
    assert max(sum(1 for r in result.requests if r.first_token_s == t) for t in first_tokens) <= at_once


def test_a_prompt_that_cannot_run_is_refused_at_the_front_of_the_queue_not_when_admitted():
    """A prompt whose pages fit the cache but not beside request 0's, and whose prefill cannot run at all, is refused
    while request 0 runs: request 2 behind it is not held up until request 0 finishes."""
    model = _one_h100()
    requests = [Request(0, 0.0, 200_000, 50), Request(1, 0.01, 300_000, 2), Request(2, 0.01, 100, 5)]
    result = simulate_serving(model, requests)
    assert result.unrunnable_ids == (1,)
    first = {r.id: r for r in result.requests}
    assert first[2].first_token_s < first[0].finish_s


def test_pipeline_stages_hold_their_own_layers_and_weights():
    """At pp 2 each stage holds half the layers' KV; the stage filling most (weights + KV) is the one reported."""
    one, two = _one_h100(), system("vllm-h100", "llama3-8b", changes={**ONE_H100, "devices.gpu.count": 2,
                                                                       "parallelism.pp": 2})
    assert two.iteration_memory(1000, 1000).kv_bytes == one.iteration_memory(1000, 1000).kv_bytes / 2
    assert two.iteration_memory(1000, 1000).weights_bytes == max(two.stage_weight_bytes) < one.weight_bytes_per_device


def test_a_moe_prompt_holds_the_routed_share_of_its_experts_activations():
    """Mixtral routes each token to 2 of 8 experts: its FFN's hidden activations (H1, H3, A: 8 experts x 3584 at
    tp 4) and the experts' outputs (8 x 4096) are held for the routed pairs only, a quarter."""
    model = system("vllm-h100", "mixtral-8x7b", changes={"parallelism.by_workload": {}})
    routed = 2 * (3 * 4096 + 3 * 8 * 3584 * 2 // 8 + 8 * 4096 * 2 // 8)  # layer input, X, Y; H1, H3, A; O
    working = model.iteration_memory(1000, 1000).working_bytes / 1000
    assert routed <= working < routed + 64  # and the router's few logits and gates a token


def test_a_system_without_a_gpu_holding_the_weights_is_not_checked():
    model = system("npu-only", "gpt3-7b")
    assert model.engine_bytes is None
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


def test_expert_parallel_groups_each_hold_their_share_of_the_batch():
    """duplex-gpu serving Grok-1 at tp 8, ep 2 deals the requests round-robin to two groups of devices: a prompt
    beside 200 decodes holding 55 % of the cache fits each group's share (review helper-215: the whole batch had
    been charged to one device, 89.9 GB against 85.9 GB, and the prompt deferred)."""
    model = system("duplex-gpu", "grok-1-314b")
    assert model.parallelism.ep == 2
    tokens = int(0.55 * model.kv_capacity_bytes / model.kv_bytes_per_token) // 200
    contexts = (tokens,) * 200
    whole = model.iteration_memory(sum(contexts) + 100, len(contexts) + 100)
    assert whole.total_bytes > model.engine_bytes  # the batch on one device would not fit
    assert model.iteration(Batch((100,), contexts)).time_s > 0


def test_an_unmixed_prefill_counts_the_kv_of_the_requests_it_holds_back():
    """With prefills not mixed into decodes (vLLM's original scheduler) the running requests keep their KV on the
    GPU while a prefill runs: `Batch.held_kv_tokens` counts it (review helper-215: 95.9 GB had run on 77.3)."""
    model = _one_h100()
    assert model.iteration(Batch((60_000,), ())).time_s > 0
    with pytest.raises(UnrunnableOp, match="an iteration of 1 prompts"):
        model.iteration(Batch((60_000,), (), held_kv_tokens=400_000))
