"""Serving mends from an audit: a prompt the GPU's attention kernel cannot run is one refused request, not an aborted
run, and eager attention's workspace is held to the memory the weights leave; MLA-only sizes without kv_lora_rank
are refused; simulate's missing-size error names no --set; trace token counts are ASCII digits; a TP or PP degree
with no link to time its messages says so."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_errors import one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.dse.store import read_records
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.library import load_workload_spec
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict
from archsim.systems import neupims
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.models import system_model
from archsim.systems.requests import Request, read_trace
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.step import UnrunnableOp
from archsim.systems.system_spec import load_system

EAGER = "PyTorch eager attention"
HEADER = "arrival_s,prompt_tokens,output_tokens\n"
# Llama-3-8B (HF config.json: hidden 4096, 32 layers, 32 heads, 8 KV heads, head_dim 128, ffn 14336, vocab 128256)
# holds 8.03e9 parameters, 16.06 GB in bf16; the gpu preset cuts them 4 ways (tp 4) on A100 40GB (40 GiB of DRAM).
LLAMA3_8B_BYTES = 2 * (32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 2 * 128256 * 4096)
A100_40GB_DRAM_BYTES = 40 * 2**30


def eager_prefill_bytes(tokens: int, heads: int = 8, kv_heads: int = 2) -> float:
    """What PyTorch eager holds for one fp16 prompt of `tokens` at tp 4 (8 of 32 query heads, 2 of 8 KV heads):
    Q, K, V, O, two score matrices of heads x N x N and the N x N causal mask, 2 bytes a word."""
    n = tokens
    return 2 * ((2 * heads + 2 * kv_heads) * n * 128 + 2 * heads * n * n + n * n)


def trace(tmp_path: Path, rows: str) -> str:
    path = tmp_path / "requests.csv"
    path.write_text(HEADER + rows)
    return str(path)


def test_a_prompt_eager_attention_cannot_hold_is_refused_and_the_run_goes_on(tmp_path, cli):
    """The audit's trace: a 60,000-token prompt beside a short one. Eager attention would hold
    2 x (20 x 60000 x 128 + 17 x 60000^2) = 122.7 GB for it, beyond the A100's 42.9 GB: the run used to stop with
    exit 2 naming devices.gpu.attention_kernel, a field gpu.yaml does not hold; now that request is rejected and the
    other one served."""
    path = trace(tmp_path, "0,100,10\n0,60000,5\n1,50000,3\n")  # the first two prefill in one iteration
    assert eager_prefill_bytes(50000) == pytest.approx(85.2e9, rel=1e-3)
    assert eager_prefill_bytes(60000) == pytest.approx(122.7e9, rel=1e-3)
    out = json.loads(cli("simulate", "--system", "gpu", "--workload", "llama3-8b", "--trace", path, "--json").output)
    assert (out["requests"], out["rejected"], out["output_tokens"]) == (1, 2, 10)
    shown = cli("simulate", "--system", "gpu", "--workload", "llama3-8b", "--trace", path).output
    assert "(2 rejected: 2 whose prefill the system cannot run)" in shown, shown
    assert "refused     the shortest such prefill: PyTorch eager attention cannot run fwd attention of 8 heads " \
           "(2 KV), head_dim 128, 50000 keys" in shown, shown


def test_eager_workspace_is_held_to_the_memory_the_weights_leave(tmp_path, cli):
    """A 35,000-token prompt makes eager attention hold 2 x (20 x 35000 x 128 + 17 x 35000^2) = 41.8 GB: within
    the A100's 42.9 GB of DRAM, so the GPU model alone runs it, but beyond the 42.9 - 16.06 / 4 = 38.9 GB
    Llama-3-8B's weights leave at tp 4, which the serving run used to ignore. Every request of the trace refused:
    one line, exit 2, naming the trace, the request, and the system file and field of the call it cannot run."""
    held = eager_prefill_bytes(35000)
    room = A100_40GB_DRAM_BYTES - LLAMA3_8B_BYTES / 4
    assert held == pytest.approx(41.83e9, rel=1e-3) and room == pytest.approx(38.93e9, rel=1e-3)
    assert room < held < A100_40GB_DRAM_BYTES
    gpu = load_gpu("a100-40gb-sxm4")
    alone = predict(EAGER, AttentionCase("fwd", 1, 8, 2, 128, 35000, True, "fp16"), gpu,
                    load_calibration().family_params("pytorch"))
    assert alone.feasible  # the GPU model's own check, against the whole DRAM, is unchanged

    model = neupims.system("gpu", "llama3-8b")
    assert model.devices["gpu"].call_memory_bytes == pytest.approx(room, rel=1e-3)
    path = trace(tmp_path, "0,35000,2\n")
    result = cli("simulate", "--system", "gpu", "--workload", "llama3-8b", "--trace", path, expect=2)
    one_line_error(result, f"{path}: no request can be served on gpu:llama3-8b tp4 pp1",
                   "the shortest prompt the KV cache holds, request 0 (35000 prompt",
                   f"cannot run: {load_system('gpu').source}: devices.gpu.attention_kernel: PyTorch eager attention",
                   "41.8 GB, beyond the 38.9 GB of a100-40gb-sxm4's DRAM its weights leave")


def test_a_run_whose_every_request_is_refused_reports_none_served():
    """simulate_serving with only unrunnable requests: none served, both rejected and counted as unrunnable, no
    tokens, throughput 0 and no TTFT (NaN), the shortest prefill's reason kept."""
    model = neupims.system("gpu", "llama3-8b")
    result = simulate_serving(model, [Request(0, 0.0, 60000, 5), Request(1, 0.5, 40000, 2)])
    assert (result.requests, result.rejected_ids, result.unrunnable_ids) == ((), (0, 1), (0, 1))
    assert (result.output_tokens, result.throughput_tok_s, result.iterations) == (0, 0.0, 0)
    assert math.isnan(result.ttft_p50_s) and "40000 keys" in result.unrunnable_reason


@dataclass
class RefusingToy:
    """One second an iteration; a prefill longer than `longest` tokens is a call the system cannot run (`refusal`,
    which a variant overrides). Counts the iterations it costs."""

    kv_capacity_bytes: float
    longest: int
    kv_bytes_per_token: float = 1.0
    static_w: float = 0.0
    name: str = "refusing toy"
    costed: list[Batch] = field(default_factory=list)

    def refusal(self, batch: Batch) -> str:
        return f"a prefill beyond {self.longest} tokens" if any(n > self.longest for n in batch.prefill_tokens) else ""

    def iteration(self, batch: Batch) -> IterationCost:
        if why := self.refusal(batch):
            raise UnrunnableOp("<toy>", "prefill", why)
        self.costed.append(batch)
        return IterationCost(1.0)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(1, 12), st.integers(1, 8)), max_size=30),
       longest=st.integers(1, 12), capacity_tokens=st.integers(12, 40), mix=st.booleans())
def test_every_request_is_served_or_rejected_once_under_refusals(rows, longest, capacity_tokens, mix):
    """Whatever the system refuses: each request is served or rejected, once; those refused for their prefill are
    those with a prompt beyond `longest`, or a recompute (prompt and emitted tokens, at most P + O - 1) beyond it;
    every request whose prompt is beyond it and which the cache could hold is refused; the output tokens are the
    served requests'."""
    requests = [Request(i, t, p, o) for i, (t, p, o) in enumerate(rows)]
    model = RefusingToy(capacity_tokens, longest)
    result = simulate_serving(model, requests, ServingConfig(max_batch=4, page_tokens=2, mix_prefill_decode=mix))
    served, rejected = [r.id for r in result.requests], list(result.rejected_ids)
    assert sorted(served + rejected) == [r.id for r in requests]
    assert set(result.unrunnable_ids) <= set(rejected)
    fits = {r.id for r in requests if -(-(r.prompt_tokens + r.output_tokens - 1) // 2) <= capacity_tokens // 2}
    assert {r.id for r in requests if r.id in fits and r.prompt_tokens > longest} <= set(result.unrunnable_ids)
    assert all(r.prompt_tokens + r.output_tokens - 1 > longest for r in requests if r.id in result.unrunnable_ids)
    assert result.output_tokens == sum(r.output_tokens for r in requests if r.id in served)
    assert result.iterations <= len(model.costed)  # the rest: lone prefills costed to find the refused ones


@pytest.mark.parametrize("size", ["rope_dim: 64", "q_lora_rank: 1536"])
def test_mla_sizes_without_kv_lora_rank_are_refused(tmp_path, size):
    """rope_dim and q_lora_rank are read by mla-projection only, which kv_lora_rank selects: on a GQA workload they
    changed nothing and passed, as sinks without window did before it was refused. The workload loader refuses them
    (`archsim.workload.NEEDS`), so every command does, a system too."""
    path = tmp_path / "gqa.yaml"
    path.write_text("name: gqa\nblock: llama\nparams: {hidden: 4096, heads: 32, kv_heads: 8, head_dim: 128, "
                    f"ffn_dim: 14336, layers: 32, vocab: 128256, word_bytes: 2, {size}}}\n")
    with pytest.raises(SpecError) as refused:
        system_model(load_system("vllm-h100"), load_workload_spec(str(path)))
    name = size.split(":")[0]
    meaning = {"rope_dim": "MLA decoupled RoPE width", "q_lora_rank": "MLA latent query width"}[name]
    assert (refused.value.source, refused.value.where, refused.value.message) == (
        str(path), f"params.{name}", f"only for an MLA model: give kv_lora_rank too ({meaning})")


def test_simulate_does_not_suggest_set_which_it_lacks(tmp_path, cli):
    """A workload without ffn_dim: simulate has no --set, so its error says only to add the size; analyze, which
    has --set, still suggests it."""
    path = tmp_path / "noffn.yaml"
    path.write_text("name: noffn\nblock: llama\nparams: {batch: 1, seq_len: 16, hidden: 4096, heads: 32, kv_heads: 8, "
                    "head_dim: 128, layers: 32, vocab: 128256, word_bytes: 2}\n")
    result = cli("simulate", "--system", "vllm-h100", "--workload", str(path), "--rate", "1", "--requests", "2",
                 expect=2)
    one_line_error(result, "params.ffn_dim: missing: cascade ffn-swiglu binds ffn_dim")
    assert result.stderr.strip().endswith("add it to the workload"), result.stderr
    analyzed = cli("analyze", "ffn-swiglu", "--workload", str(path), expect=2)
    assert analyzed.stderr.strip().endswith("add it to the workload or pass --set ffn_dim=N"), analyzed.stderr


@pytest.mark.parametrize("count", ["+10", "1_0", "\u0661\u0660"])
def test_trace_token_counts_are_ascii_digits(tmp_path, count):
    """int() reads "+10", "1_0" and Arabic-Indic "١٠" as 10: a trace's counts are digits 0-9, with spaces around
    them allowed."""
    with pytest.raises(SpecError) as refused:
        read_trace(trace(tmp_path, f"0,{count},10\n"))
    assert refused.value.where == "line 2: prompt_tokens" and "in the digits 0-9" in refused.value.message
    assert read_trace(trace(tmp_path, "0, 10 ,10\n"))[0].prompt_tokens == 10


@pytest.mark.parametrize(("options", "line"), [
    (("--tp", "4"), "  not timed   TP all-reduces at tp 4 (the system names no link tp)"),
    (("--tp", "1", "--pp", "2"), "  not timed   hops between 2 PP stages (the system names no link ep or tp)"),
])
def test_simulate_says_which_messages_no_link_times(tmp_path, cli, options, line):
    """Without a link named tp, `system_messages.allreduce_s` is 0 at any tp, and without ep or tp `stage_hops_s` is 0
    at any pp: on the gpu preset, which names no link, the messages cost nothing, which the human output now says in
    one line. vllm-h100 names an NVLink tp link, which times both: no such line."""
    path = trace(tmp_path, "0,10,10\n")

    def notes(system: str) -> list[str]:
        out = cli("simulate", "--system", system, "--workload", "llama3-8b", "--trace", path, *options).output
        return [shown for shown in out.splitlines() if shown.startswith("  not timed")]

    assert (notes("gpu"), notes("vllm-h100")) == ([line], [])


def test_a_sweep_point_names_the_prefill_it_cannot_run(tmp_path, cli):
    """A serving sweep point whose requests hold a prefill the system cannot run is infeasible with that reason; it
    had said every rejected request 'can never fit the KV cache'. 100 kimi-ta requests (seed 0) on `gpu`: 5 prompts
    are beyond what PyTorch eager attention holds beside Llama-3-8B's weights, none beyond the cache."""
    spec = tmp_path / "s.yaml"
    spec.write_text("name: gpu-long\nsystem: gpu\nworkload: llama3-8b\n"
                    "serving: {rate_per_s: 1.0, requests: 100, lengths: kimi-ta, seed: 0}\n"
                    "axes: {serving.max_batch: [32]}\nobjectives: [throughput_tok_s, energy_pj]\n")
    db = tmp_path / "s.sqlite"
    cli("sweep", str(spec), "--db", str(db), "--local")
    (reason,) = read_records(db).reason
    assert reason.startswith("5 of 100 requests ask for a prefill gpu:llama3-8b tp4 pp1 cannot run (PyTorch eager "
                             "attention cannot run fwd attention"), reason
    assert "never fit" not in reason


def test_the_device_checks_its_kernel_params_as_predict_does():
    """The GPU device's attention kernel parameters are checked by the GPU model's own check (`check_params`, which
    `predict` calls), not a copy of it: a parameter that is not the family's is the same SpecError from both."""
    from archsim.model.gpu_kernels import check_params
    from archsim.systems.gpu_device import GpuDevice

    params = {**load_calibration().family_params("pytorch"), "not_a_param": 1.0}
    with pytest.raises(SpecError) as checked:
        check_params(EAGER, params)
    model = neupims.system("gpu", "llama3-8b")
    device = model.devices["gpu"]
    bad = GpuDevice(device.name, device.spec, device.params, EAGER, params)
    with pytest.raises(SpecError) as costed:
        bad.cost([model.attention("prefill", 100)])
    assert (costed.value.where, costed.value.message) == (checked.value.where, checked.value.message)
    assert checked.value.where == "params.not_a_param"


def test_a_call_whose_ctas_fit_no_sm_is_unrunnable_not_a_stopped_run():
    """FlashAttention-2's forward at head_dim 128 holds Q and one stage of K and V in shared memory: at its smallest
    tile, 16 x 16 (`SMALLEST_BLOCK`), (16 + 2 x 16) x 128 x 2 B = 12 KB a CTA. On an A100 given 8 KB per SM its plan
    fits the memory the weights leave but no SM. Such a call is beyond the device as much as one that does not fit
    its memory: an UnrunnableOp (the serving run refuses the request), where it had been a plain SpecError that
    stopped the run."""
    from dataclasses import replace

    from archsim.systems.gpu_device import calibrated_gpu_device

    model = neupims.system("gpu", "llama3-8b")
    device = model.devices["gpu"]
    small = replace(device.spec, smem_bytes_per_sm=8 * 1024)
    fa2 = replace(calibrated_gpu_device(small, "FlashAttention-2", name="gpu"),
                  call_memory_bytes=device.call_memory_bytes)
    for ops in ([model.attention("prefill", 100)], [model.attention("prefill", 100), model.attention("prefill", 50)]):
        with pytest.raises(UnrunnableOp) as refused:
            fa2.cost(ops)
        assert refused.value.where == "devices.gpu.attention_kernel"
        assert "a CTA needs" in refused.value.message and "8192 B per SM" in refused.value.message
    served = simulate_serving(replace(model, devices={**model.devices, "gpu": fa2}), [Request(0, 0.0, 100, 2)])
    assert (served.rejected_ids, served.unrunnable_ids) == ((0,), (0,))


def test_simulate_json_says_what_was_refused_and_not_timed(tmp_path, cli):
    """--json carries what the human output says: of the rejected, how many ask for a prefill the system cannot
    run and why the shortest cannot (the 50,000-token prompt of the first test: 85.2 GB of eager attention, beyond
    the 38.9 GB the weights leave), and the messages no link times (the gpu preset at tp 4 names no link)."""
    path = trace(tmp_path, "0,100,10\n0,60000,5\n1,50000,3\n")
    out = json.loads(cli("simulate", "--system", "gpu", "--workload", "llama3-8b", "--trace", path, "--json").output)
    assert (out["rejected"], out["unrunnable"]) == (2, 2)
    assert out["unrunnable_reason"].startswith("PyTorch eager attention cannot run fwd attention of 8 heads (2 KV), "
                                               "head_dim 128, 50000 keys"), out["unrunnable_reason"]
    assert out["not_timed"] == ["TP all-reduces at tp 4 (the system names no link tp)"]
    fine = json.loads(cli("simulate", "--system", "vllm-h100", "--workload", "llama3-8b", "--trace",
                          trace(tmp_path, "0,10,10\n"), "--json").output)
    assert (fine["unrunnable"], fine["unrunnable_reason"], fine["not_timed"]) == (0, "", [])


def test_untimed_messages_are_the_system_models_rule():
    """Which TP/PP messages no link times is the system model's rule, beside `allreduce_s` and `stage_hops_s`: on
    the gpu preset (no link) both at tp 4, pp 2; the vllm-h100 preset's tp link times both."""
    from archsim.systems.system_messages import untimed_messages

    gpu = neupims.system("gpu", "llama3-8b", tp=4, pp=2)
    assert untimed_messages(gpu.system, gpu.parallelism) == [
        "TP all-reduces at tp 4 (the system names no link tp)",
        "hops between 2 PP stages (the system names no link ep or tp)"]
    h100 = neupims.system(load_system("vllm-h100"), "llama3-8b", tp=4, pp=2)
    assert untimed_messages(h100.system, h100.parallelism) == []


class BatchRefusingToy(RefusingToy):
    """`RefusingToy` refusing a batch of more than `longest` prefill tokens in all, though every prefill of the
    trace runs alone."""

    def refusal(self, batch: Batch) -> str:
        return f"prefills beyond {self.longest} tokens in all" if sum(batch.prefill_tokens) > self.longest else ""


def test_a_batch_refused_though_each_prefill_runs_alone_is_split():
    """serving.py's documented rule: when an iteration is refused, its prefills are costed alone and those that
    cannot run alone are refused; when each runs alone, the latest admitted goes back to the queue. Two 6-token
    prompts arriving together would prefill in one iteration of 12 tokens, beyond the toy's 10; each runs alone
    (6 <= 10), so the second waits for the next iteration and both are served."""
    model = BatchRefusingToy(kv_capacity_bytes=100, longest=10)
    result = simulate_serving(model, [Request(0, 0.0, 6, 2), Request(1, 0.0, 6, 2)], ServingConfig(page_tokens=2))
    assert [r.id for r in result.requests] == [0, 1] and result.rejected_ids == ()
    assert result.prefill_deferrals == 1
    assert model.costed[:2] == [Batch((6,), ()), Batch((6,), ())]  # the lone check, then request 0 alone
    assert result.requests[1].first_token_s > result.requests[0].first_token_s


def test_measure_refuses_an_interpreter_turned_on_in_code(tmp_path, monkeypatch):
    """Triton's interpreter knob set in code, with knobs.propagate_env off, leaves no TRITON_INTERPRET in the
    environment: measure still refuses with its one-line error and exit 2 (it had read os.environ[...], a KeyError,
    exit 1)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # as test_measure: set before triton is first imported
    torch = pytest.importorskip("torch")
    triton = pytest.importorskip("triton")
    from click.testing import CliRunner

    from archsim.commands.measure import measure

    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(triton.knobs, "propagate_env", False)
    triton.knobs.runtime.interpret = True
    try:
        result = CliRunner().invoke(measure, ["--kernels", "naive", "--out", str(tmp_path / "m.csv")])
    finally:
        del triton.knobs.runtime.interpret  # back to reading the environment
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith("error: TRITON_INTERPRET=1 is set: the kernels would run in Triton's "
                                    "interpreter"), result.output
    assert not (tmp_path / "m.csv").exists()
