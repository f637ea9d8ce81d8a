"""A context-parallel system's prompt memory is one rule at every cp (audit helper-520): cp 1 ran the rank's
serving-engine check (the FFN unfused over the prompt), cp 2 only `seqpar_memory`'s (a blockwise FFN), so one H100
refused a 300K prompt while two served 600K, 2.96x the longest prompt for 2x the GPUs. And `parallel --system`
read the whole DRAM where the spec gives the engine `memory_utilization` of it."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import UnrunnableOp
from archsim.systems.system_spec import load_system


def _spec(tmp_path, cp: int, **gpu) -> str:
    path = tmp_path / f"cp{cp}.yaml"
    path.write_text(yaml.safe_dump({
        "name": f"cp{cp}", "description": "one H100 a node", "source": "test",
        "devices": {"gpu": {"kind": "gpu", "count": 1, "preset": "h100-sxm5",
                            "attention_kernel": "FlashAttention-2", **gpu}},
        "links": {"tp": "nvlink4-h100", "cp": "ib-ndr-400g"},
        "parallelism": {"tp": 1, "pp": 1, "cp": cp},
        "placement": [{"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn",
                              "moe", "ffn_residual"], "device": "gpu"}],
        "schedule": {"kind": "context-parallel", "scheme": "ring"}}))
    return str(path)


def _longest_prompt(model) -> int:
    def fits(tokens: int) -> bool:
        try:
            model.iteration(Batch((tokens,)))
        except UnrunnableOp:
            return False
        return True

    low, high = 1, 4_000_000
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def test_the_longest_prompt_grows_with_cp_as_the_tokens_a_rank_holds(tmp_path) -> None:
    workload = library.load_workload_spec("llama3-8b")
    one, two = (_longest_prompt(system_model(load_system(_spec(tmp_path, cp)), workload)) for cp in (1, 2))
    assert 250_000 < one < 330_000
    assert two == 2 * one, (one, two)  # a rank holds ceil(tokens / 2): one token more is a share of one + 1


def test_parallel_system_reads_the_engine_share_of_each_gpu(tmp_path) -> None:
    def largest(path: str) -> int:
        result = CliRunner().invoke(main, ["parallel", "--system", path, "-w", "llama3-8b", "--seq-len", "64K",
                                           "--scope", "layer", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["points"][0]["max_context_tokens"]

    whole = largest(_spec(tmp_path, 2))
    (tmp_path / "half").mkdir()
    half = largest(_spec(tmp_path / "half", 2, memory_utilization=0.5))
    assert half < 0.5 * whole, (half, whole)  # the weights stay whole, so less than half the room for tokens
    text = CliRunner().invoke(main, ["parallel", "--system", str(tmp_path / "half" / "cp2.yaml"), "-w", "llama3-8b",
                                     "--seq-len", "64K", "--scope", "layer"]).output
    assert "with 42.9 GB (40 GiB) a GPU (memory_utilization 0.5)" in text.splitlines()[0]


@pytest.mark.parametrize("cp, tokens, says", [
    (1, 300_000, "a prompt of 300000 tokens on cp1:llama3-8b tp1 cp1"),
    (2, 600_000, r"a prompt of 600000 tokens \(a rank's share 300000\) on cp2:llama3-8b tp1 cp2")])
def test_equal_tokens_a_rank_are_refused_alike(tmp_path, cp: int, tokens: int, says: str) -> None:
    model = system_model(load_system(_spec(tmp_path, cp)), library.load_workload_spec("llama3-8b"))
    with pytest.raises(UnrunnableOp, match=says + r": memory per gpu device 88\.6 GB"):
        model.iteration(Batch((tokens,)))


@pytest.mark.parametrize("cp", [1, 2])
def test_an_iteration_whose_kv_shares_do_not_fit_a_rank_cannot_run(tmp_path, cp: int) -> None:
    """A prompt that fits alone beside decodes whose KV shares fill the rank (audit helper-523: at cp 2 only the
    prompt alone had been checked, so the iteration ran holding 100.8 GB of an 80 GiB H100)."""
    model = system_model(load_system(_spec(tmp_path, cp)), library.load_workload_spec("llama3-8b"))
    prompt, context = 144_495 * cp, 190_000 * cp
    model.iteration(Batch((prompt,), ()))
    with pytest.raises(UnrunnableOp, match=r"an iteration of 1 prompts .* and 2 decodes"):
        model.iteration(Batch((prompt,), (context, context)))


def _cp2(tmp_path):
    return system_model(load_system(_spec(tmp_path, 2)), library.load_workload_spec("llama3-8b"))


def test_every_prompt_of_an_iteration_keeps_its_kv_share(tmp_path) -> None:
    """Three 300K prompts fit one by one at cp 2, not together: each rank keeps 150K of every one's KV (audit
    helper-526: counting only the longest prompt's KV let them run at once)."""
    model = _cp2(tmp_path)
    model.iteration(Batch((300_000,), ()))
    with pytest.raises(UnrunnableOp, match=r"an iteration of 3 prompts \(900000 tokens\) and 0 decodes \(a rank's "
                                           r"share of their KV cache 450000 tokens\)"):
        model.iteration(Batch((300_000,) * 3, ()))


def test_decodes_and_waiting_requests_count_their_share(tmp_path) -> None:
    """A rank keeps 1/cp of each decode's and each waiting request's KV: two 300K decodes beside a prompt fit at
    cp 2 (150K each a rank), 1.2M tokens of waiting requests (600K a rank) do not, 700K (350K) do."""
    model = _cp2(tmp_path)
    model.iteration(Batch((1000,), (300_000, 300_000)))
    model.iteration(Batch((1000,), (), held_kv_tokens=700_000))
    with pytest.raises(UnrunnableOp, match=r"share of their KV cache 500 tokens beside 600000 tokens of waiting "
                                           r"requests"):
        model.iteration(Batch((1000,), (), held_kv_tokens=1_200_000))
