"""`sizes_model`: a `SystemModel` of a workload's byte counts with no system. Its byte counts read only the workload;
the members that need a system refuse with a ValueError that names `sizes_model` (they had failed with an
AttributeError on None)."""

from __future__ import annotations

import pytest

from archsim.library import load_workload_spec
from archsim.systems.iteration import Batch
from archsim.systems.system_model import SIZES_MEMBERS, sizes_model

GPT3_7B = load_workload_spec("gpt3-7b")  # hidden 4096, ffn_dim 16384, 32 layers, 2-byte words


def test_sizes_model_counts_bytes_from_the_workload_alone() -> None:
    """GPT3-7B: K and V of one token are 2 x 4096 x 2 bytes a layer, x 32 layers = 524288 bytes, the whole model's
    at any tp. A layer's weights are 4 h^2 (QKV, output projection) + 2 h ffn_dim (FFN) = 201326592 parameters of
    2 bytes, cut TP ways, and its two LayerNorms' gamma and beta, 4 x 4096 x 2 bytes, whole on every rank."""
    one, two = sizes_model(GPT3_7B), sizes_model(GPT3_7B, tp=2)
    assert one.kv_bytes_per_token == two.kv_bytes_per_token == 524288
    cut_bytes, norm_bytes = (4 * 4096**2 + 2 * 4096 * 16384) * 2, 4 * 4096 * 2
    assert one.layer_weight_bytes_per_device == 32 * (cut_bytes + norm_bytes)
    assert two.layer_weight_bytes_per_device == 32 * (cut_bytes / 2 + norm_bytes)
    for member in SIZES_MEMBERS:  # every member the docstring calls safe reads without a system
        value = getattr(two, member)
        if callable(value):
            value = value("decode", 4, 1) if member == "ops" else value(1024, 16)
        assert value is not None


@pytest.mark.parametrize("member", ["name", "price_per_hour", "static_w", "board_w", "weight_device",
                                    "memory_bytes_per_device", "kv_capacity_bytes"])
def test_sizes_model_refuses_what_needs_a_system(member: str) -> None:
    with pytest.raises(ValueError, match=rf"SystemModel\.{member} needs a system.*sizes_model"):
        getattr(sizes_model(GPT3_7B), member)


def test_sizes_model_refuses_to_run_an_iteration() -> None:
    model = sizes_model(GPT3_7B)
    with pytest.raises(ValueError, match=r"SystemModel\.iteration needs a system.*sizes_model"):
        model.iteration(Batch(decode_context_tokens=(128,)))
    with pytest.raises(ValueError, match=r"SystemModel\.lm_head_cost needs a system.*sizes_model"):
        model.lm_head_cost(1)
