"""Workload sizes that some commands refused and others silently ignored (audit of Llama-3-8B with one size added):

- `top_k` without `experts`, `q_lora_rank` or `rope_dim` without `kv_lora_rank`: `archsim simulate` refused them
  (exit 2), while parallel, sparse, gpu-roofline and run printed the baseline's numbers. Every cascade that reads one
  binds the other too (moe-experts; mla-projection, attention-mla-*), so the workload loader refuses them, and every
  command with it (`archsim.workload.NEEDS`).
- `sinks` without `window` stays a workload's size: DuoAttention's and TokenSelect's cascades bind sinks alone. Only
  a system, whose decoder layer reads sinks beside a sliding window only, refuses it.
- `tokens`: `archsim simulate` replaced it with each step's batch x new tokens (`step.layer_ops`) and ran; a system
  now refuses it, while `analyze moe-experts` still reads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system
from archsim.workload import workload_from_dict

LLAMA3_8B = yaml.safe_load(Path(library.load_workload_spec("llama3-8b").path).read_text())
MEANINGS = {"top_k": ("a MoE model", "experts", "experts per token"),
            "q_lora_rank": ("an MLA model", "kv_lora_rank", "MLA latent query width"),
            "rope_dim": ("an MLA model", "kv_lora_rank", "MLA decoupled RoPE width")}


def _with(tmp_path: Path, size: str, value: int) -> Path:
    """Llama-3-8B's file with `size: value` added (as the audit appended it)."""
    path = tmp_path / f"llama3-8b-{size}.yaml"
    path.write_text(yaml.safe_dump({**LLAMA3_8B, "params": {**LLAMA3_8B["params"], size: value}}))
    return path


@pytest.mark.parametrize(("size", "value"), [("top_k", 2), ("q_lora_rank", 512), ("rope_dim", 64)])
def test_a_size_without_the_size_it_goes_with_is_refused_when_the_workload_loads(size: str, value: int) -> None:
    """In Python too: a workload built from a mapping passes the loader's checks."""
    kind, needed, meaning = MEANINGS[size]
    with pytest.raises(SpecError) as refused:
        workload_from_dict({**LLAMA3_8B, "params": {**LLAMA3_8B["params"], size: value}}, "mine.yaml")
    assert (refused.value.source, refused.value.where, refused.value.message) == (
        "mine.yaml", f"params.{size}", f"only for {kind}: give {needed} too ({meaning})")


@pytest.mark.parametrize("size", ["top_k", "q_lora_rank", "rope_dim"])
@pytest.mark.parametrize("command", [
    ["simulate", "--system", "vllm-h100", "--rate", "5", "--requests", "10", "--workload"],
    ["run", "--mapping", "fusemax-gqa", "--workload"],
    ["gpu-roofline", "--gpu", "h100-sxm5", "--workload"],
])
def test_every_command_refuses_the_workload_naming_file_and_field(cli, tmp_path: Path, command: list[str],
                                                                  size: str) -> None:
    """`run` and `gpu-roofline` printed Llama-3-8B's numbers with the size ignored; `simulate` refused it."""
    path = _with(tmp_path, size, 512)
    kind, needed, _ = MEANINGS[size]
    output = cli(*command, str(path), expect=2).output
    assert output.startswith(f"error: {path}: params.{size}: only for {kind}: give {needed} too")
    assert output.count("\n") == 1


def test_the_size_with_what_it_goes_with_still_loads() -> None:
    """DeepSeek-V3 (MLA: kv_lora_rank with q_lora_rank and rope_dim) and Mixtral (experts with top_k) load."""
    assert library.load_workload_spec("deepseek-v3-mla").params["q_lora_rank"] == 1536
    assert library.load_workload_spec("mixtral-8x7b").params["top_k"] == 2


def test_sinks_without_window_loads_for_duoattention_and_a_system_refuses_it(cli, tmp_path: Path) -> None:
    """DuoAttention's decode cascade binds sinks (its streaming heads' first keys) and no window: a workload giving
    sinks alone is its model. A system's decoder layer reads sinks only beside a sliding window."""
    path = _with(tmp_path, "sinks", 4)
    cli("analyze", "duoattention-decode", "--workload", str(path), "--set", "recent=256", "--set",
        "retrieval_fraction=0.5")
    with pytest.raises(SpecError) as refused:
        system_model(load_system("vllm-h100"), library.load_workload_spec(str(path)))
    assert (refused.value.source, refused.value.where) == (str(path), "params.sinks")


def test_a_system_refuses_a_workload_fixing_tokens(cli, tmp_path: Path) -> None:
    """`simulate` ran Llama-3-8B with `tokens: 64` as without it: each step's tokens are batch x new tokens. The
    moe-experts cascade under `analyze` still reads the workload's tokens."""
    path = _with(tmp_path, "tokens", 64)
    command = ["simulate", "--system", "vllm-h100", "--rate", "5", "--requests", "10", "--workload", str(path)]
    output = cli(*command, expect=2).output
    assert output.startswith(f"error: {path}: params.tokens: a system sets the tokens of each step itself")
    assert output.count("\n") == 1
    with pytest.raises(SpecError) as refused:
        system_model(load_system("vllm-h100"), library.load_workload_spec(str(path)))
    assert (refused.value.source, refused.value.where) == (str(path), "params.tokens")
    cli("analyze", "moe-experts", "--workload", str(path), "--set", "experts=8", "--set", "top_k=2")
