"""The GPU model times the launches archsim's dense kernels make (s40 audit; the sparse kernels' counterpart is
tests/test_sparse_kernel_model.py::test_the_model_times_the_launch_the_kernels_make).

Each launcher of `kernels/` (shipped as `archsim.kernels`) is called as `archsim measure` calls it (its default
block sizes) with each Triton kernel it launches replaced by a recorder: the launcher's own code (checks, grid,
launch arguments) runs, the kernel does not. What it launched (block sizes, num_warps, num_stages, grid) is
compared with the model's constants (`ARCHSIM_FWD`, `ARCHSIM_BWD`, `ARCHSIM_DECODE`, `ARCHSIM_LIGHTNING` in
`archsim.model.gpu_baseline_plans`) and with the launch the model builds for the same case: its CTAs (the grid)
and threads (32 per warp: the warps rule). A launch that passes no num_stages gets the NVIDIA backend's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from triton_cpu import torch

# isort: split
# the kernel modules after triton_cpu has switched the Triton interpreter on
from archsim.kernels import decode, flash_bwd, flash_fwd, lightning

from archsim.gpu.load import load_gpu
from archsim.model.gpu import AttentionCase, TiledLaunch
from archsim.model.gpu_baseline_plans import (
    ARCHSIM_BWD,
    ARCHSIM_DECODE,
    ARCHSIM_FWD,
    ARCHSIM_HEAD_DIMS,
    ARCHSIM_LIGHTNING,
)
from archsim.model.gpu_kernels import plans

BATCH, HEADS, SEQLEN = 2, 3, 200  # 200 rows: a partial last tile for every block size


@dataclass
class Recorded:
    """A kernel's launches: the grid and the keyword arguments (constexprs, num_warps, num_stages) of each."""

    launches: list[tuple[tuple[int, ...], dict]] = field(default_factory=list)

    def __getitem__(self, grid: tuple[int, ...]):
        return lambda *args, **kwargs: self.launches.append((tuple(grid), kwargs))

    @property
    def only(self) -> tuple[int, dict]:
        """(CTAs of the grid, keyword arguments) of its one launch."""
        (grid, kwargs), = self.launches
        ctas = 1
        for size in grid:
            ctas *= size
        return ctas, kwargs


def _record(monkeypatch: pytest.MonkeyPatch, module, name: str) -> Recorded:
    recorded = Recorded()
    monkeypatch.setattr(module, name, recorded)
    return recorded


def _model_launch(kernel: str, case: AttentionCase, name: str) -> TiledLaunch:
    """The model's tiled launch named `name...` of `kernel` for `case` on an H100."""
    (plan,) = plans(kernel, case, load_gpu("h100-sxm5"))
    (launch,) = [launch for launch in plan.launches if isinstance(launch, TiledLaunch) and launch.name.startswith(name)]
    return launch


def _triton_default_stages() -> int:
    from triton.backends.nvidia.compiler import CUDAOptions

    return CUDAOptions.num_stages


def _zeros(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float16)


@pytest.mark.parametrize("head_dim", ARCHSIM_HEAD_DIMS)
def test_the_flash_forward_launches_the_model_tiles(monkeypatch: pytest.MonkeyPatch, head_dim: int) -> None:
    kernel = _record(monkeypatch, flash_fwd, "_flash_fwd_kernel")
    q = _zeros(BATCH, HEADS, SEQLEN, head_dim)
    flash_fwd.flash_fwd(q, q, q, causal=True)
    ctas, kwargs = kernel.only
    assert (kwargs["BLOCK_M"], kwargs["BLOCK_N"], kwargs["num_stages"]) == ARCHSIM_FWD
    model = _model_launch("archsim FlashAttention-2 (Triton)",
                          AttentionCase("fwd", BATCH, HEADS, HEADS, head_dim, SEQLEN, True, "fp16"), "fwd")
    assert (model.ctas, model.threads) == (ctas, 32 * kwargs["num_warps"])


@pytest.mark.parametrize("head_dim", ARCHSIM_HEAD_DIMS)
def test_the_flash_backward_launches_the_model_tiles(monkeypatch: pytest.MonkeyPatch, head_dim: int) -> None:
    kernel = _record(monkeypatch, flash_bwd, "_flash_bwd_kernel")
    row_dot = _record(monkeypatch, flash_bwd, "_row_dot_kernel")
    q = _zeros(BATCH, HEADS, SEQLEN, head_dim)
    flash_bwd.flash_bwd(q, q, q, q, q, torch.zeros((BATCH, HEADS, SEQLEN)), causal=True)
    ctas, kwargs = kernel.only
    assert (kwargs["BLOCK_M"], kwargs["BLOCK_N"], kwargs["num_stages"]) == ARCHSIM_BWD
    assert len(row_dot.launches) == 1  # the model's "bwd row dot" stream launch
    model = _model_launch("archsim FlashAttention-2 (Triton)",
                          AttentionCase("bwd", BATCH, HEADS, HEADS, head_dim, SEQLEN, True, "fp16"), "bwd")
    assert model.name == "bwd" and (model.ctas, model.threads) == (ctas, 32 * kwargs["num_warps"])


def test_the_decode_splits_the_keys_as_the_model_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch 2, 8 query heads over 2 KV heads, 19,000 keys (297 tiles of 64) on an H100's 132 SMs: the launcher
    asks for ceil(2 x 132 / 4) = 66 splits, 5 tiles each, so 60 splits (`default_num_splits` as on a GPU)."""
    kernel = _record(monkeypatch, decode, "_partials_kernel")
    _record(monkeypatch, decode, "_merge_kernel")
    h100 = load_gpu("h100-sxm5")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: type("Properties", (), {"multi_processor_count": h100.sm_count}))
    on_gpu = decode.default_num_splits
    monkeypatch.setattr(decode, "default_num_splits", lambda b, kv, device: on_gpu(b, kv, torch.device("cuda")))
    decode.decode_attention(_zeros(2, 8, 1, 128), _zeros(2, 2, 19_000, 128), _zeros(2, 2, 19_000, 128))
    ctas, kwargs = kernel.only
    block_n, warps, stages, programs_per_sm = ARCHSIM_DECODE
    assert (kwargs["BLOCK_N"], kwargs["num_warps"], programs_per_sm) == (block_n, warps, decode.PROGRAMS_PER_SM)
    assert "num_stages" not in kwargs and stages == _triton_default_stages()
    model = _model_launch("archsim Flash-Decoding split-KV GQA (Triton)",
                          AttentionCase("decode", 2, 8, 2, 128, 19_000, False, "fp16"), "decode split-KV")
    assert model.name == "decode split-KV (60 splits)" and ctas == model.ctas == 60 * 2 * 2
    assert model.threads == 32 * kwargs["num_warps"]


@pytest.mark.parametrize("head_dim", ARCHSIM_HEAD_DIMS)
def test_lightning_launches_the_model_tiles(monkeypatch: pytest.MonkeyPatch, head_dim: int) -> None:
    kernel = _record(monkeypatch, lightning, "_lightning_fwd_kernel")
    q = _zeros(BATCH, HEADS, SEQLEN, head_dim)
    lightning.lightning_attention(q, q, q)
    ctas, kwargs = kernel.only
    block, block_f, stages = ARCHSIM_LIGHTNING
    assert (kwargs["BLOCK"], kwargs["BLOCK_F"]) == (block, min(block_f, head_dim))
    assert "num_stages" not in kwargs and stages == _triton_default_stages()
    model = _model_launch("archsim Lightning Attention-2 (Triton)",
                          AttentionCase("fwd", BATCH, HEADS, HEADS, head_dim, SEQLEN, True, "fp16", "linear"),
                          "lightning")
    assert (model.ctas, model.threads) == (ctas, 32 * kwargs["num_warps"])
