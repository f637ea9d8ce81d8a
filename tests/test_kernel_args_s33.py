"""Arguments the Triton launchers refuse with a ValueError naming them, before Triton's interpreter or driver fails
on them with a message about its own internals; batch 0 at decode as at prefill; the file `archsim measure` names as
a row's source; and the local check of kernels/measure_on_device.sh its header documents.

Kernels run on the CPU under the Triton interpreter (tests/triton_cpu.py switches it on before they are imported).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from triton_cpu import DEVICE, INTERPRET, torch

# isort: split
# the kernel modules after triton_cpu has switched the Triton interpreter on
import triton
from archsim.kernels import block_sparse, decode, flash_bwd, flash_fwd, lightning, naive, vertical_slash

from archsim.commands.benchmarks import KERNELS, benchmark_cases
from archsim.commands.measure import _rows

REPO = Path(__file__).resolve().parents[1]


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device=DEVICE)


def _block_calls(block: int) -> dict[str, object]:
    """One call per block argument of every launcher, with that argument set to `block` and the others valid."""
    q, qd, kv = _randn(1, 2, 32, 16), _randn(1, 2, 1, 16), _randn(1, 2, 32, 16)
    out, lse = flash_fwd.flash_fwd(q, q, q, block_m=16, block_n=16)
    index, count = block_sparse.random_block_list(1, 2, 32, 2, 16)
    pattern = vertical_slash.random_pattern(1, 2, 32, 4, 4)
    built = vertical_slash.vertical_slash_index(*pattern, 32, 16)
    return {
        "block_m": lambda: flash_fwd.flash_fwd(q, q, q, block_m=block),
        "block_n": lambda: flash_fwd.flash_fwd(q, q, q, block_n=block),
        "bwd block_m": lambda: flash_bwd.flash_bwd(q, q, q, q, out, lse, block_m=block),
        "bwd block_n": lambda: flash_bwd.flash_bwd(q, q, q, q, out, lse, block_n=block),
        "decode block_n": lambda: decode.decode_attention(qd, kv, kv, block_n=block),
        "block": lambda: lightning.lightning_attention(q, q, q, block=block),
        "block_f": lambda: lightning.lightning_attention(q, q, q, block_f=block),
        "sparse block": lambda: block_sparse.block_sparse_attention(q, q, q, index, count, block=block),
        "vs block": lambda: vertical_slash.vertical_slash_attention(q, q, q, *pattern, block=block),
        "indexed block": lambda: vertical_slash.indexed_attention(q, q, q, built, block=block),
        "naive block_m": lambda: naive.naive_attention(q, q, q, block_m=block),
        "naive block_n": lambda: naive.naive_attention(q, q, q, block_n=block),
    }


@pytest.mark.parametrize("block", [48, 8, 0, 24])
@pytest.mark.parametrize("call", list(_block_calls(16)))
def test_a_block_that_is_no_power_of_two_of_at_least_16_is_refused_by_name(call: str, block: int) -> None:
    # 48 and 24 are no powers of two (tl.arange's range must be one); 8 is one, under tl.dot's 16; 0 divides nothing
    name = call.split()[-1]
    with pytest.raises(ValueError, match=rf"^{name} must be a power of two >= 16 .*got {block}$"):
        _block_calls(block)[call]()


def test_every_block_of_16_runs() -> None:
    for call in _block_calls(16).values():
        call()


def test_decode_at_batch_0_returns_an_empty_output_as_the_prefill_kernels_do() -> None:
    q = _randn(0, 2, 16, 16)
    assert flash_fwd.flash_fwd(q, q, q)[0].shape == (0, 2, 16, 16)  # prefill at batch 0: an empty output
    qd, kv = _randn(0, 4, 1, 16), _randn(0, 2, 16, 16)
    assert decode.decode_attention(qd, kv, kv).shape == (0, 4, 1, 16)
    assert decode.decode_attention(qd, kv, kv, num_splits=3).shape == (0, 4, 1, 16)


def test_lightning_block_f_0_is_refused_by_name() -> None:
    q = _randn(1, 1, 16, 16)
    with pytest.raises(ValueError, match=r"^block_f must be a power of two >= 16 .*got 0$"):
        lightning.lightning_attention(q, q, q, block_f=0)


@pytest.mark.skipif(not INTERPRET, reason="the interpreter's switch is flipped off on CPU tensors")
def test_cpu_tensors_without_the_interpreter_are_refused_clearly(monkeypatch) -> None:
    # the kernels were decorated under the interpreter; the launch checks read its switch at call time
    monkeypatch.setattr(triton.knobs.runtime, "interpret", False)
    q = _randn(1, 1, 16, 16)
    message = r"^CPU tensors need TRITON_INTERPRET=1 \(Triton's interpreter\) or a GPU"
    for call in (lambda: flash_fwd.flash_fwd(q, q, q), lambda: lightning.lightning_attention(q, q, q),
                 lambda: decode.decode_attention(q[:, :, :1], q, q)):
        with pytest.raises(ValueError, match=message):
            call()


def test_a_2d_vertical_is_named_against_q_not_its_own_shape() -> None:
    # q is [3, 4, 32, 16]: the pattern must be [3, 4, k]; a [1, 2] vertical is no [1, 2, k] one
    q = _randn(3, 4, 32, 16)
    vertical, slash = torch.zeros(1, 2, dtype=torch.int32), torch.zeros(3, 4, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"vertical must be an int32/int64 \[batch, heads, k\] = \[3, 4, k\] tensor, "
                                         r"got torch.int32 \(1, 2\)"):
        vertical_slash.vertical_slash_attention(q, q, q, vertical, slash)
    with pytest.raises(ValueError, match=r"^vertical must be an int32/int64 \[batch, heads, k\] tensor, got "
                                         r"torch.int32 \(1, 2\)$"):
        vertical_slash.vertical_slash_index(vertical, slash, 32)


@pytest.mark.parametrize("kernel", KERNELS)
def test_measure_names_the_file_that_defines_the_kernel(kernel: str) -> None:
    for case in benchmark_cases((kernel,), 32, tiny=True):
        source = _rows(case, 1.0, {}, "")[0]["source"]
        path = source.removeprefix("archsim measure (").removesuffix(")")
        assert path.startswith("kernels/") and (REPO / path).is_file(), source


@pytest.mark.skipif(not INTERPRET or shutil.which("sh") is None, reason="the interpreter run of the script")
def test_the_documented_local_check_of_measure_on_device_runs(tmp_path: Path) -> None:
    # the header's command, with a relative PYTHON as documented and the cheapest kernel only
    python = os.path.relpath(sys.executable, REPO)
    env = {**os.environ, "OUT": str(tmp_path / "m"), "PYTHON": python, "MEASURE_FLAGS": "--interpret",
           "KERNELS": "lightning", "TMPDIR": str(tmp_path)}
    run = subprocess.run(["sh", "kernels/measure_on_device.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    left = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"measure.txt", "measured-cpu.csv", "validate.txt"} <= left, left
    assert not [name for name in left if name.endswith(".lock")]  # the lock of `archsim measure` is removed
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # the install site is removed
