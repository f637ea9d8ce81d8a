"""The serving assumptions README states beside the serving simulator ("Not modelled in serving") and beside
AttAcc's gap attribution (the TP all-reduce's small-message latency): each number the README quotes is computed
here by the code and compared with the README's text, so the sentences follow the model.

What is derived by hand: a ring all-reduce of n bytes over p devices is 2(p-1) steps of alpha + n/p/beta
(`collectives.all_reduce_s`), so a decode's all-reduce time is that times two a layer. The published figures the
README sets beside them (vLLM's Fig. 13 batches, NCCL's tuning model, nvidia-smi's H100 size) are quoted from
memory, not in ../shared/reference, and are not checked here.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from archsim.library import load_workload_spec
from archsim.systems import neupims
from archsim.systems.collectives import all_reduce_s
from archsim.systems.iteration import Batch
from archsim.systems.links import load_link
from archsim.systems.models import system_model
from archsim.systems.requests import LengthDistribution, poisson_requests
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.system_spec import load_system

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SERVING = README[README.index("Not modelled in serving"):README.index("**NeuPIMs** runs on the systems layer")]
ATTACC = README[README.index("### AttAcc: offloading without pipelining"):README.index("## Multi-device attention")]
ROW_BYTES = 8192 * 2  # one 8,192-wide fp16 row: a 70B model's decode activation of one request
FAST_HOP_S = 0.86e-6  # a what-if NVLink 3 hop: 14 of them give 12 us at p = 8, NCCL's order (README)

OPT_13B = """name: opt-13b
description: OPT-13B (HF facebook/opt-13b config, quoted from memory)
source: test
block: gpt
params: {batch: 1, seq_len: 2048, hidden: 5120, heads: 40, kv_heads: 40, head_dim: 128, ffn_dim: 20480, layers: 40,
         vocab: 50272, vocab_tables: 1, word_bytes: 2}
"""
LLAMA2_70B = """name: llama2-70b
description: Llama-2-70B (HF config, quoted from memory)
source: test
block: llama
params: {batch: 1, seq_len: 4096, hidden: 8192, heads: 64, kv_heads: 8, head_dim: 128, ffn_dim: 28672, layers: 80,
         vocab: 32000, word_bytes: 2}
"""


def _gpu_system(path: Path, preset: str, count: int, link: str = "nvlink3-a100") -> Path:
    path.write_text(f"name: {path.stem}\nbase: vllm-h100\ndevices:\n  gpu:\n    kind: gpu\n    count: {count}\n"
                    f"    preset: {preset}\n    attention_kernel: FlashAttention-2\n    memory_utilization: 0.9\n"
                    f"    price_per_hour: 1.0\nlinks:\n  tp: {link}\n"
                    "parallelism: {tp: 1, pp: 1, by_workload: null}\n")
    return path


def _fast_link(tmp_path: Path) -> Path:
    path = tmp_path / "nvl3-fast.yaml"
    path.write_text(f"name: nvl3-fast\ndescription: what-if\nsource: test\nlatency_s: {FAST_HOP_S}\n"
                    "bytes_per_s_per_direction: 300.0e+9\n")
    return path


def _in(text: str, phrase: str) -> None:
    assert phrase in " ".join(text.split()), phrase


def test_ring_all_reduce_of_a_row_is_2_p_minus_1_hops_and_the_readme_quotes_it() -> None:
    for name in ("nvlink3-a100", "nvlink4-h100"):
        link = load_link(name)
        times_s = [all_reduce_s(ROW_BYTES, p, link, algorithm="ring") for p in (2, 4, 8)]
        for p, t in zip((2, 4, 8), times_s, strict=True):
            assert t == pytest.approx(2 * (p - 1) * (link.latency_s + ROW_BYTES / p / link.bytes_per_s_per_direction))
        _in(ATTACC, f"{'/'.join(f'{t * 1e6:.1f}' for t in times_s)} us")


def test_llama2_70b_tp8_decode_and_its_all_reduces(tmp_path: Path) -> None:
    workload = tmp_path / "llama2-70b.yaml"
    workload.write_text(LLAMA2_70B)
    times_s = {}
    for link in ("nvlink3-a100", str(_fast_link(tmp_path))):
        system = load_system(str(_gpu_system(tmp_path / f"a100-80-{len(times_s)}.yaml", "a100-80gb-sxm4", 8, link)))
        model = system_model(system.with_options(tp=8, pp=None), load_workload_spec(str(workload)))
        times_s[link] = model.iteration(Batch((), (2048,))).time_s
    slow_s, fast_s = times_s.values()
    one_s = all_reduce_s(ROW_BYTES, 8, load_link("nvlink3-a100"), algorithm="ring")
    fast_one_s = all_reduce_s(ROW_BYTES, 8, load_link(_fast_link(tmp_path)), algorithm="ring")
    # two all-reduces a layer (after attention, after the FFN), 80 layers: the only term the link changes
    assert slow_s - fast_s == pytest.approx(160 * (one_s - fast_one_s), rel=1e-9)
    _in(ATTACC, f"from {slow_s * 1e3:.2f} to {fast_s * 1e3:.2f} ms, of which the 160 all-reduces were "
                f"{160 * one_s * 1e3:.2f} ms")
    _in(ATTACC, f"({fast_one_s * 1e6:.1f} us at p = 8)")


def test_attacc_speedup_with_a_faster_all_reduce(tmp_path: Path) -> None:
    link = _fast_link(tmp_path)
    for workload in ("llama-65b", "gpt3-175b"):
        speedups = []
        for spec in ("preset", "fast"):
            tok_s = {}
            for name in ("dgx-base", "attacc"):
                if spec == "fast":
                    path = tmp_path / f"{name}-fast.yaml"
                    path.write_text(f"name: {name}-fast\nbase: {name}\nlinks:\n  tp: {link}\n")
                model = system_model(load_system(name if spec == "preset" else str(path)), load_workload_spec(workload))
                batch = int(model.kv_capacity_bytes // (model.kv_bytes_per_token * 2048))
                tok_s[name] = batch / model.iteration(Batch((), (2048,) * batch)).time_s
            speedups.append(tok_s["attacc"] / tok_s["dgx-base"])
        _in(ATTACC, f"from {speedups[0]:.2f}x to {speedups[1]:.2f}x on {workload}")


def test_kv_room_of_llama3_70b_on_vllm_h100_against_a_larger_profiled_peak() -> None:
    smaller_hbm_b = 0.9 * (85_899_345_920 - 85.52e9)  # the preset's 80 GiB against nvidia-smi's 81,559 MiB, at 0.9
    quoted = []
    for tp in (2, 4):
        model = neupims.system("vllm-h100", "llama3-70b", tp=tp)
        tokens = [(model.kv_capacity_bytes - tp * less) / model.kv_bytes_per_token
                  for less in (0.0, 1.5e9, 1.5e9 + smaller_hbm_b)]
        quoted.append(f"{tokens[0]:,.0f} at tp {tp} ({tokens[1]:,.0f} and {tokens[2]:,.0f}: "
                      f"+{tokens[0] / tokens[1] * 100 - 100:.0f} % and +{tokens[0] / tokens[2] * 100 - 100:.0f} %)")
    for text in quoted:
        _in(SERVING, text)


def test_a_workloads_maximum_context_is_not_enforced() -> None:
    requests = poisson_requests(rate_per_s=2, n=200, lengths="azure-conv", seed=0)
    result = simulate_serving(neupims.system("vllm-h100", "llama2-7b", tp=1), requests, ServingConfig())
    longer = [q for q in requests if q.prompt_tokens + q.output_tokens > 4096]
    assert load_workload_spec("llama2-7b").params["seq_len"] == 4096
    assert len(result.requests) == 200 and not result.rejected_ids
    _in(SERVING, f"serves all 200, {len(longer)} of them longer than 4,096 tokens (prompt and output; "
                 f"{sum(q.prompt_tokens > 4096 for q in requests)} prompts alone, the longest "
                 f"{max(q.prompt_tokens + q.output_tokens for q in requests):,})")


def test_opt_13b_batches_on_one_a100_40gb(tmp_path: Path) -> None:
    workload = tmp_path / "opt-13b.yaml"
    workload.write_text(OPT_13B)
    model = system_model(load_system(str(_gpu_system(tmp_path / "a100-40.yaml", "a100-40gb-sxm4", 1))),
                         load_workload_spec(str(workload)))
    batches = []
    for name, rate, means, caps, n in (("sharegpt", 2.0, (161.3, 338.0), (1024, 1024), 1000),
                                       ("alpaca", 30.0, (19.3, 58.5), (256, 512), 3000)):
        lengths = LengthDistribution(name, *means, *caps)
        run = simulate_serving(model, poisson_requests(rate_per_s=rate, n=n, lengths=lengths, seed=1),
                               ServingConfig(mix_prefill_decode=False), trace=True)
        batches.append(statistics.mean(i.n_decode + i.n_prefill for i in run.timeline if i.start_s < run.steady_end_s))
    _in(SERVING, f"batches {batches[0]:.1f} requests an iteration at 2 req/s ShareGPT and {batches[1]:.1f} at "
                 "30 req/s Alpaca")
    assert re.search(r"30\.42 and 132\.44", " ".join(SERVING.split()))
