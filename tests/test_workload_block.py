"""The workload's `block` key: which decoder block (`archsim.systems.step.BLOCKS`) a model's layers are.

Expected blocks come from the model papers the library workload files cite: GPT-3 (Brown et al. 2020 §2.1) and OPT
(Zhang et al. 2022 §2.1) are LayerNorm decoders ("gpt"); Llama 3, Mixtral, DeepSeek-V3 and Qwen1.5-MoE use RMSNorm
and SwiGLU ("llama"), and GLaM's and Grok-1's gated FFNs are counted as SwiGLU ("llama", their workload files say
why). The encoders and older models of the FuseMax set (BERT, XLM, T5, Transformer-XL) say nothing.
"""

from __future__ import annotations

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.step import BLOCKS, Step, layer_ops
from archsim.workload import BLOCK_KINDS, workload_from_dict

SMALL = {"name": "small", "params": {"hidden": 64, "heads": 4, "kv_heads": 4, "head_dim": 16, "ffn_dim": 256}}
FAMILIES = {"gpt3-": "gpt", "opt-": "gpt", "llama": "llama", "mixtral-": "llama", "deepseek-": "llama",
            "glam-": "llama", "grok-": "llama", "linear-llama": "llama", "qwen": "llama"}
NO_BLOCK = ("bert-base", "t5-small", "trxl", "xlm")


def test_block_kinds_are_the_blocks_step_expands():
    assert tuple(BLOCKS) == BLOCK_KINDS


@pytest.mark.parametrize("block", BLOCK_KINDS)
def test_a_block_is_kept(block):
    assert workload_from_dict({**SMALL, "block": block}, "small.yaml").block == block


def test_no_block_is_none():
    assert workload_from_dict(SMALL, "small.yaml").block is None


@pytest.mark.parametrize("value", ["mamba", "GPT", None, 1, ["gpt"]])
def test_a_bad_block_names_the_file_field_and_choices(value):
    with pytest.raises(SpecError) as info:
        workload_from_dict({**SMALL, "block": value}, "small.yaml")
    assert (info.value.source, info.value.where) == ("small.yaml", "block")
    assert info.value.message == f"expected one of gpt, llama, got {value!r}"


def _family(name: str) -> str | None:
    return next((block for prefix, block in FAMILIES.items() if name.startswith(prefix)), None)


def test_every_library_workload_is_of_a_known_family_or_says_nothing():
    assert sorted(n for n in library.names("workloads") if _family(n) is None) == sorted(NO_BLOCK)


@pytest.mark.parametrize("name", library.names("workloads"))
def test_library_workload_block_is_its_familys(name):
    workload = library.load_workload_spec(name)
    assert workload.block == _family(name)
    if workload.block is not None:  # and step expands one of its layers with it
        ops = layer_ops(workload, Step("decode", batch=1, seq_len=16), workload.block)
        assert ops[0].cascade == BLOCKS[workload.block].norm
