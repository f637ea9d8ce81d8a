"""LASP's state products are timed from the `lasp2-linear-attention` cascade's M = sum(c: K V), not from FLOPs counted
in the systems layer: a chunk of c tokens, B H heads of d, is 2 B H c d^2 FLOPs over bf16 K and V and an fp32 state
(worked by hand here)."""

from archsim.systems.seqpar_compute import _state_launch


def test_the_state_gemm_is_the_cascades_chunk_state() -> None:
    batch, heads, head_dim, tokens = 2, 16, 64, 4096
    launch = _state_launch(batch, heads, head_dim, tokens)
    assert launch.mma_flops == 2 * batch * heads * tokens * head_dim * head_dim  # 1,073,741,824
    # K and V: B H c d bf16 each; M: B H d d fp32
    assert launch.dram_bytes == 2 * batch * heads * tokens * head_dim * 2 + batch * heads * head_dim * head_dim * 4
    assert launch.precision == "bf16"
