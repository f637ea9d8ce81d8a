"""Edges of archsim's Triton kernels and of what measures and models them: inputs the launchers refuse with a
ValueError naming the argument, int64 score offsets past 2³¹, and rows the model and
`archsim measure` must not take for what they are not.

Kernels run on the CPU under the Triton interpreter (tests/triton_cpu.py switches it on before they are imported).
Each expected value is derived in its test.
"""

from __future__ import annotations

import pytest
from triton_cpu import DEVICE, INTERPRET, torch

# isort: split
# the kernel modules after triton_cpu has switched the Triton interpreter on
import triton
import triton.language as tl
from archsim.kernels import decode, flash_bwd, flash_fwd, lightning, naive
from click.testing import CliRunner

from archsim.commands.measure import measure
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.measurements import parse_rows
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import plans


def _randn(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype=dtype, device=DEVICE)


@pytest.mark.parametrize("kernel", ["archsim FlashAttention-2 (Triton)", "archsim naive 3-pass (Triton)"])
def test_the_model_refuses_grouped_query_prefill_the_kernels_refuse(kernel: str) -> None:
    # flash_fwd and naive_attention take q, k, v of one shape (`attention_dims`): 16 query heads over 2 KV heads
    # is no call they make, so there is no time to predict for it
    case = AttentionCase("fwd", 4, 16, 2, 128, 4096, False, "fp16")
    reason = plans(kernel, case, load_gpu("h100-sxm5"))
    assert isinstance(reason, str) and "a K and V per query head" in reason and "16 query heads over 2" in reason
    assert not isinstance(plans(kernel, AttentionCase("fwd", 4, 16, 16, 128, 4096, False, "fp16"),
                                 load_gpu("h100-sxm5")), str)


@triton.jit
def _offsets_of_rows(Out, row0, seqlen, BLOCK: tl.constexpr):
    rows = row0 + tl.arange(0, BLOCK)
    cols = tl.arange(0, BLOCK)
    offsets = naive._score_offsets(tl.program_id(0).to(tl.int64), rows, cols, seqlen)
    tl.store(Out + tl.arange(0, BLOCK)[:, None] * BLOCK + cols[None, :], offsets)


def test_naive_score_offsets_stay_int64_past_two_to_the_31() -> None:
    # S[0, p, m] of a 50000-token head is at p * 50000 + m: row 49999 at 2,499,950,000 > 2³¹ - 1 = 2,147,483,647,
    # which an int32 rows * seqlen wraps to a negative offset
    seqlen, block = 50000, 16
    row0 = seqlen - block
    out = torch.zeros(block * block, dtype=torch.int64, device=DEVICE)
    _offsets_of_rows[(1,)](out, row0, seqlen, BLOCK=block)
    rows, cols = torch.arange(row0, seqlen)[:, None], torch.arange(block)[None, :]
    assert out.view(block, block)[-1, 0].item() == 2_499_950_000
    assert torch.equal(out.view(block, block).cpu(), rows * seqlen + cols)


@pytest.mark.skipif(not INTERPRET, reason="bf16 runs compiled on a GPU")
def test_bf16_is_refused_under_the_interpreter() -> None:
    q = _randn(1, 1, 16, 16, dtype=torch.bfloat16)
    for call in (lambda: flash_fwd.flash_fwd(q, q, q), lambda: naive.naive_attention(q, q, q),
                 lambda: lightning.lightning_attention(q, q, q), lambda: decode.decode_attention(q[:, :, :1], q, q)):
        with pytest.raises(ValueError, match=r"bf16 is broken in Triton's interpreter.*use fp16 or fp32"):
            call()


def test_decode_refuses_an_empty_cache_and_a_3d_query() -> None:
    q, kv = _randn(1, 2, 1, 64), _randn(1, 2, 0, 64)
    with pytest.raises(ValueError, match="KV length must be at least 1"):
        decode.decode_attention(q, kv, kv)
    with pytest.raises(ValueError, match=r"q must be 4-D .* got shape \(2, 1, 64\)"):
        decode.decode_attention(q[0], _randn(1, 2, 20, 64), _randn(1, 2, 20, 64))


def test_flash_bwd_names_a_dout_out_or_lse_of_the_wrong_dtype() -> None:
    q, k, v, do = (_randn(1, 2, 17, 64) for _ in range(4))
    out, lse = flash_fwd.flash_fwd(q, k, v)
    with pytest.raises(ValueError, match=r"^dout must be torch.float32 .* got torch.float16"):
        flash_bwd.flash_bwd(do.half(), q, k, v, out, lse)
    with pytest.raises(ValueError, match=r"^out must be torch.float32 .* got torch.float16"):
        flash_bwd.flash_bwd(do, q, k, v, out.half(), lse)
    with pytest.raises(ValueError, match=r"^lse must be torch.float32 .*flash_fwd returns it.* got torch.float16"):
        flash_bwd.flash_bwd(do, q, k, v, out, lse.half())


def test_a_decode_row_is_one_configuration_causal_or_not() -> None:
    # one query row sees every cached key: causal True and False are the same decode step
    row = {"gpu": "NVIDIA H200", "kernel": "archsim Flash-Decoding split-KV GQA (Triton)", "dtype": "fp16",
           "causal": "True", "batch": "4", "heads": "16q/2kv", "head_dim": "128", "seqlen": "4096",
           "direction": "decode", "metric": "latency", "value": "100", "unit": "us"}
    (measurement,), _ = parse_rows([row], "m.csv")
    assert measurement.case.causal is False
    with pytest.raises(SpecError, match=r"lines 2 and 3.*measured twice"):
        parse_rows([row, {**row, "causal": "False", "value": "101"}], "m.csv")


def test_measure_refuses_an_interpreter_left_on_in_the_environment(tmp_path, monkeypatch) -> None:
    # without --interpret a run on a GPU writes timings: TRITON_INTERPRET=1 would make them interpreted runs
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(measure, ["--kernels", "flash_fwd", "--out", str(out)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.count("\n") == 1 and result.output.startswith("error: TRITON_INTERPRET=1 is set")
    assert not out.exists()
