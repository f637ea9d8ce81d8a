"""Multi-head latent attention without query compression (fixer-mla, s45): DeepSeek-V2-Lite projects its queries
straight from the hidden state (HF config q_lora_rank null; DeepSeek-V2 Appendix B.1), so its projections are the
cascade `mla-projection-direct-q`, not `mla-projection` with a made-up query latent.

Sizes: HF deepseek-ai/DeepSeek-V2-Lite config.json: hidden 2048, 16 heads, qk_nope_head_dim = v_head_dim 128,
qk_rope_head_dim 64, kv_lora_rank 512, 64 routed experts (moe_intermediate_size 1408) top-6; the shared experts and
the dense first layer are left out here (one block per workload holds neither)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.errors import SpecError
from archsim.point import bound
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_model import sizes_model
from archsim.workload import workload_from_dict

D, H, E, R, L, W = 2048, 16, 128, 64, 512, 2  # hidden, heads, head_dim, rope_dim, kv_lora_rank, word_bytes
DSV2_LITE = {
    "name": "dsv2-lite", "description": "DeepSeek-V2-Lite, MLA without q_lora_rank",
    "source": "HF deepseek-ai/DeepSeek-V2-Lite config.json", "block": "llama",
    "params": {"batch": 16, "seq_len": 4096, "hidden": D, "heads": H, "kv_heads": H, "head_dim": E, "rope_dim": R,
               "kv_lora_rank": L, "ffn_dim": 1408, "layers": 27, "vocab": 102400, "experts": 64, "top_k": 6,
               "word_bytes": W},
}
# MACs (and weight words) per token of the projections: queries H*(E+R)*D (HF q_proj, 2048 -> 16 x 192), the
# latent and the shared RoPE key D*(L+R) (HF kv_a_proj_with_mqa, 2048 -> 576)
PROJECTION_MACS_PER_TOKEN = H * (E + R) * D + D * (L + R)  # 6,291,456 + 1,179,648 = 7,471,104


@pytest.fixture
def dsv2_lite(tmp_path: Path) -> Path:
    path = tmp_path / "dsv2-lite.yaml"
    path.write_text(yaml.safe_dump(DSV2_LITE))
    return path


def test_direct_q_cascade_executes_to_its_reference(cli) -> None:
    """Each output within 1e-5 of the numpy reference `mla_projection_direct_q` (exit 1 otherwise)."""
    result = cli("execute", "mla-projection-direct-q", "--check")
    assert "Q vs reference mla_projection_direct_q" in result.output and result.output.rstrip().endswith("ok")


def test_direct_q_macs_per_token_are_the_hand_count(dsv2_lite: Path) -> None:
    """Bound to DeepSeek-V2-Lite at batch 16 x 4096 tokens: 7,471,104 MACs a token, no query latent."""
    binding, analysis = bound("mla-projection-direct-q", str(dsv2_lite))
    tokens = 16 * 4096
    assert sum(counts.get("mac", 0) for counts in analysis.ops.values()) == tokens * PROJECTION_MACS_PER_TOKEN
    assert "q_lora_rank" not in binding.params


def test_layer_of_a_model_without_query_latent_projects_queries_directly(dsv2_lite: Path) -> None:
    """One decode token per request over 5 requests: the projection's weights are the 7,471,104 words above (2 B
    each), it writes 5 x (512 + 64) latent words to the KV cache and does 5 x 7,471,104 MACs."""
    workload = workload_from_dict(DSV2_LITE, str(dsv2_lite))
    qkv = next(op for op in layer_ops(workload, Step("decode", 5, 200), "llama") if op.name == "qkv")
    assert qkv.cascade == "mla-projection-direct-q"
    assert qkv.bytes_by_role["weights"] == PROJECTION_MACS_PER_TOKEN * W
    assert qkv.bytes_by_role["kv_cache"] == 5 * (L + R) * W
    assert qkv.ops["mac"] == 5 * PROJECTION_MACS_PER_TOKEN


def test_layer_weights_and_kv_per_token_are_the_hand_count(dsv2_lite: Path) -> None:
    """One layer's weights (every layer MoE here): projections 7,471,104 words, the absorbed up-projections
    W_UK, W_UV 2 x 16 x 128 x 512 = 2,097,152 (HF kv_b_proj 512 -> 16 x 256), the output projection 16 x 128 x 2048
    = 4,194,304, two RMSNorm weights 2 x 2048, the router 2048 x 64 and 64 SwiGLU experts 64 x 3 x 2048 x 1408:
    567,545,856 words, 1,135,091,712 B. KV cache per token and layer: 512 + 64 words, 1,152 B."""
    model = sizes_model(workload_from_dict(DSV2_LITE, str(dsv2_lite)))
    words = PROJECTION_MACS_PER_TOKEN + 2 * H * E * L + H * E * D + 2 * D + D * 64 + 64 * 3 * D * 1408
    assert words == 567_545_856
    assert model.weight_bytes_per_layer == words * W
    assert model.kv_bytes_per_token_layer == (L + R) * W


def test_simulate_serves_a_model_without_query_latent(cli, dsv2_lite: Path) -> None:
    """`archsim simulate` had stopped at `params.q_lora_rank: missing`, exit 2 (the `cli` fixture asserts exit 0)."""
    result = cli("simulate", "--system", "vllm-h100", "-w", str(dsv2_lite), "--rate", "1", "--requests", "2")
    assert "2 requests served" in result.output


def test_mla_projection_points_a_model_without_query_latent_to_direct_q(invoke, dsv2_lite: Path) -> None:
    code, output = invoke("analyze", "mla-projection", "--workload", str(dsv2_lite))
    assert code == 2 and len(output.strip().splitlines()) == 1
    assert "params.q_lora_rank" in output and "mla-projection-direct-q" in output
    assert "--set q_lora_rank" not in output  # no made-up query latent for a model that has none


def test_direct_q_refuses_a_model_that_compresses_its_queries() -> None:
    """DeepSeek-V3 compresses its queries (q_lora_rank 1536): the direct projection would drop W_DQ and count
    128 x 192 x 7168 query weights where it has 7168 x 1536 + 1536 x 128 x 192."""
    with pytest.raises(SpecError) as refused:
        bound("mla-projection-direct-q", "deepseek-v3-mla")
    assert refused.value.where == "params.q_lora_rank" and "use mla-projection" in refused.value.message


def test_latent_refusal_names_the_projection_the_model_needs(dsv2_lite: Path) -> None:
    """qkv-projection on an MLA model is refused (no latent); the advice names the projection of its queries."""
    with pytest.raises(SpecError) as refused:
        bound("qkv-projection", str(dsv2_lite))
    assert refused.value.where == "params.kv_lora_rank" and "mla-projection-direct-q" in refused.value.message
    with pytest.raises(SpecError) as refused:
        bound("qkv-projection", "deepseek-v3-mla")
    assert "mla-projection-direct-q" not in refused.value.message and "mla-projection" in refused.value.message
